/**
 * startServer: the online CA (`mtlskit serve`). Reads the CA, issues the server's own
 * certificate in memory, listens, and keeps both current: the server's certificate is renewed at
 * 2/3 of its lifetime and the CA is re-read when its files change (a rotation's bundle and
 * issuer reach new connections through setSecureContext).
 */
import type { Writable } from "node:stream";
import { acmeRoutes, type AcmeOptions } from "../acme/routes.ts";
import { openLedger } from "../ledger/index.ts";
import type { Ledger } from "../ledger/ledger.ts";
import type { LoadedManifest } from "../manifest/index.ts";
import { caFilesStamp, loadAuthority, RevokedSet, type Authority } from "./authority.ts";
import { SharedCrl } from "./crl.ts";
import { listenHttps, type HttpRequest, type HttpServer, type Route } from "./http.ts";
import { createMetrics, type ServeMetrics } from "./metrics.ts";
import { DEFAULT_SIGNER_THREADS, startSigner } from "./signer.ts";
import { authenticateAdmin, routes } from "./routes.ts";
import { issueServerCredentials, type ServerCredentials } from "./tls.ts";

export { LIMITS } from "./http.ts";
export { type ClusterOptions, type ClusterServer, startCluster } from "./cluster.ts";
export { PROBLEMS, type ProblemCode, type ProblemDoc } from "./problem.ts";
export type { Issued } from "./issue.ts";

/** DEFAULT_LISTEN: loopback only; serving other hosts is a choice (`--listen 0.0.0.0:8443`). */
export const DEFAULT_LISTEN = { host: "127.0.0.1", port: 8443 } as const;

/** ServeOptions configure startServer. */
export interface ServeOptions {
  manifest: LoadedManifest;
  pkiDir: string;
  /** listen: the address. Default: 127.0.0.1:8443; port 0 picks a free port. */
  listen?: { host: string; port: number };
  /** ledger: where certificates and tokens are recorded; the server closes it on close(). Default: openLedger(pkiDir, ledgerSpec) with the group commit in its own thread (committerThread). */
  ledger?: Ledger;
  /** ledgerSpec: the ledger to open when `ledger` is not given (`--ledger`): sqlite:PATH or postgres://... Default: SQLite at DIR/ca/ledger.db. */
  ledgerSpec?: string;
  /** now: the clock. Default: the current time. */
  now?: () => Date;
  /** log: JSON log lines (never a token, key or CSR). Default: none. */
  log?: { stream: Writable; level?: "info" | "debug" | "warn" | "error" };
  /** checkMs: how often the CA files are looked at for a change, and the server's certificate for its renewal time. Default: 5000. */
  checkMs?: number;
  /** acme: the ACME server under /acme/ (src/acme/), on when the ledger keeps ACME state (Ledger.acme); false turns it off. Default: on, default options. */
  acme?: AcmeOptions | false;
  /**
   * signerThreads: worker threads that decode, judge and sign each request off the event loop
   * (signer.ts); 0 signs on the event loop (the CSR's and the CA's signatures in libuv's pool).
   * Default: DEFAULT_SIGNER_THREADS (1).
   */
  signerThreads?: number;
  /** mount: more routes on the same listener (`serve --ui`: the dashboard under /ui/, src/ui/server.ts serveMount). Default: none. */
  mount?(ctx: MountContext): Promise<Mounted>;
}

/** MountContext is what a mounted part of serve gets: the manifest, the PKI directory, the ledger, serve's refusals, and the admin check. */
export interface MountContext {
  loaded: LoadedManifest;
  pkiDir: string;
  ledger: Ledger;
  /** refusals: serve's refusals so far, by reason (its metrics). */
  refusals(): Promise<{ reason: string; count: number }[]>;
  /** requireAdmin refuses a request without the client certificate of one of serve.admins (401, 403 not-admin). */
  requireAdmin(req: HttpRequest): Promise<void>;
}

/** Mounted is a mounted part: its routes, the headers for its paths, and its close (before the listener's). */
export interface Mounted {
  routes: Route[];
  headersFor?(path: string): Record<string, string> | undefined;
  close(): Promise<void>;
}

/** RunningServer is a listening online CA. */
export interface RunningServer {
  url: string;
  host: string;
  port: number;
  /** rootSha256: the SHA-256 of the trust anchor (lowercase hex): what agents pass as --fingerprint (a retired rotation changes it). */
  readonly rootSha256: string;
  ledger: Ledger;
  /** serverCertificate: the server's own current certificate (leaf first). */
  serverCertificate(): ServerCredentials["certPem"];
  /** reload re-reads the CA now and issues the server a new certificate. */
  reload(): void;
  /** close stops listening, finishes in-flight requests, closes the ledger. */
  close(): Promise<void>;
}

/**
 * startServer starts the online CA. No CA, a damaged one, or an issuing key kept offline is a
 * FailedError (exit 3) raised before anything listens.
 */
export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const now = opts.now ?? (() => new Date());
  const listen = opts.listen ?? DEFAULT_LISTEN;
  // The CA first: a directory without a usable CA gets no ledger created in it.
  const authority = loadAuthority(opts.manifest, opts.pkiDir);
  // The group commit in its own thread: the COMMIT's fsync no longer stops the event loop (11-17%
  // more certificates/s for 4-7% more CPU per certificate: docs/online-ca.md, SQLite).
  const ledger = opts.ledger ?? (await openLedger(opts.pkiDir, opts.ledgerSpec, { committerThread: true }));
  try {
    return await listenWith(opts, ledger, now, listen, authority);
  } catch (e) {
    if (!opts.ledger) await ledger.close();
    throw e;
  }
}

/** ListenHooks let a `serve --workers` worker (worker.ts) join its primary: /metrics across workers, its certificate reported. */
export interface ListenHooks {
  /** metrics: the registry to count in. Default: a new one. */
  metrics?: ServeMetrics;
  /** exposition renders /metrics from this server's registry (a worker: every worker's, through the primary). */
  exposition?(metrics: ServeMetrics): Promise<string>;
  /** onCredentials: the server's certificate was issued anew (leaf first, PEM). */
  onCredentials?(certPem: string): void;
}

/** listenWith issues the server's certificate, listens and starts the tick; the ledger is open. */
export async function listenWith(
  opts: ServeOptions,
  ledger: Ledger,
  now: () => Date,
  listen: { host: string; port: number },
  first: Authority,
  hooks: ListenHooks = {},
): Promise<RunningServer> {
  let authority = first;
  let creds = issueServerCredentials(authority.current, authority.anchorPem, listen.host, now());
  const metrics = hooks.metrics ?? createMetrics();
  metrics.caNotAfter(authority.current.cert.notAfter);
  const revoked = new RevokedSet(opts.pkiDir);
  const threads = opts.signerThreads ?? DEFAULT_SIGNER_THREADS;
  // No csr service, nothing to sign online: no thread.
  const online = opts.manifest.manifest.services.some((s) => s.csr === true && s.files === undefined);
  const signer = threads > 0 && online ? startSigner({ manifest: opts.manifest.manifest, threads }) : undefined;
  const ctx = {
    loaded: opts.manifest,
    dir: opts.pkiDir,
    ledger,
    authority: () => authority,
    revoked,
    crl: new SharedCrl({ loaded: opts.manifest, dir: opts.pkiDir, ledger, root: () => authority.root }),
    metrics,
    now,
    ...(hooks.exposition ? { exposition: () => hooks.exposition!(metrics) } : {}),
    ...(signer ? { signer } : {}),
  };
  // ACME (issue 16) mounts beside the API when the ledger keeps its state.
  const acme = opts.acme !== false && ledger.acme ? acmeRoutes(ctx, ledger.acme, opts.acme || {}) : undefined;
  let mounted: Mounted | undefined;
  let http: HttpServer;
  try {
    mounted = await opts.mount?.({
      loaded: opts.manifest,
      pkiDir: opts.pkiDir,
      ledger,
      refusals: () => metrics.refusals(),
      requireAdmin: async (req) => {
        await authenticateAdmin(
          ctx,
          req,
          new Date(Math.floor(now().getTime() / 1000) * 1000),
          "open it with the client certificate of a service listed in serve.admins",
        );
      },
    });
    http = await listenHttps({
      host: listen.host,
      port: listen.port,
      tls: { keyPem: creds.keyPem, certPem: creds.certPem, caPem: authority.bundlePem },
      routes: [...routes(ctx), ...(acme?.routes ?? []), ...(mounted?.routes ?? [])],
      ...(mounted?.headersFor ? { headersFor: mounted.headersFor } : {}),
      ...(acme ? { renderProblem: acme.renderProblem, joseJsonPrefix: "/acme/" } : {}),
      ...(opts.log ? { log: opts.log } : {}),
      onResponse: (route, seconds) => metrics.observe(route, seconds),
      onProblem: (code) => metrics.refused(code),
    });
  } catch (e) {
    await mounted?.close();
    await signer?.close();
    throw e;
  }

  const renewCredentials = () => {
    creds = issueServerCredentials(authority.current, authority.anchorPem, listen.host, now());
    http.setTls({ keyPem: creds.keyPem, certPem: creds.certPem, caPem: authority.bundlePem });
    hooks.onCredentials?.(creds.certPem);
  };
  const reload = () => {
    authority = loadAuthority(opts.manifest, opts.pkiDir);
    metrics.caNotAfter(authority.current.cert.notAfter);
    renewCredentials();
  };
  // One tick does both: a change of the CA files re-reads the CA (and re-issues the server's
  // certificate under it, with the new bundle); else the certificate is renewed once 2/3 of its
  // lifetime has passed by `now` (a clock the tests can move).
  const timer = setInterval(() => {
    try {
      if (caFilesStamp(opts.pkiDir) !== authority.stamp) reload();
      else if (now() >= creds.renewAt) renewCredentials();
    } catch {
      // A CA caught mid-change (or damaged) is read again at the next tick; the last good one keeps serving.
    }
  }, opts.checkMs ?? 5000).unref();

  let closed: Promise<void> | undefined;
  return {
    url: http.url,
    host: http.host,
    port: http.port,
    get rootSha256() {
      return authority.anchorSha256;
    },
    ledger,
    serverCertificate: () => creds.certPem,
    reload,
    close: () => {
      closed ??= (async () => {
        clearInterval(timer);
        await mounted?.close();
        await http.close();
        await signer?.close();
        await ledger.close();
      })();
      return closed;
    },
  };
}
