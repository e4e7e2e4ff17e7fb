/**
 * startServer: the online CA (`mtlskit serve`). Reads the CA, issues the server's own
 * certificate in memory, listens, and keeps both current: the server's certificate is renewed at
 * 2/3 of its lifetime and the CA is re-read when its files change (a rotation's bundle reaches
 * new connections through setSecureContext).
 */
import { createHash } from "node:crypto";
import type { Writable } from "node:stream";
import type { Ledger } from "../ledger/ledger.ts";
import type { LoadedManifest } from "../manifest/index.ts";
import { parseCertificatesPem } from "../pki/pem.ts";
import { caFilesStamp, loadAuthority, RevokedSet, type Authority } from "./authority.ts";
import { listenHttps, type HttpServer } from "./http.ts";
import { createMetrics } from "./metrics.ts";
import { routes } from "./routes.ts";
import { issueServerCredentials, type ServerCredentials } from "./tls.ts";

export { LIMITS } from "./http.ts";
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
  /** ledger: where certificates and tokens are recorded; the server closes it on close(). */
  ledger: Ledger;
  /** now: the clock. Default: the current time. */
  now?: () => Date;
  /** log: JSON log lines (never a token, key or CSR). Default: none. */
  log?: { stream: Writable; level?: "info" | "debug" | "warn" | "error" };
  /** caCheckMs: how often the CA files are looked at for a change. Default: 5000. */
  caCheckMs?: number;
}

/** RunningServer is a listening online CA. */
export interface RunningServer {
  url: string;
  host: string;
  port: number;
  /** rootSha256: the SHA-256 of the trust anchor (lowercase hex): what agents pass as --fingerprint. */
  rootSha256: string;
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
  let authority: Authority = loadAuthority(opts.manifest, opts.pkiDir);
  let creds = issueServerCredentials(authority.current, listen.host, now());
  const metrics = createMetrics();
  metrics.caNotAfter(authority.current.cert.notAfter);
  const ctx = {
    loaded: opts.manifest,
    dir: opts.pkiDir,
    ledger: opts.ledger,
    authority: () => authority,
    revoked: new RevokedSet(opts.pkiDir),
    metrics,
    now,
  };
  const http: HttpServer = await listenHttps({
    host: listen.host,
    port: listen.port,
    tls: { keyPem: creds.keyPem, certPem: creds.certPem, caPem: authority.bundlePem },
    routes: routes(ctx),
    ...(opts.log ? { log: opts.log } : {}),
    onResponse: (route, seconds) => metrics.observe(route, seconds),
    onProblem: (code) => metrics.refused(code),
  });

  let renewTimer: NodeJS.Timeout | undefined;
  const renewCredentials = () => {
    creds = issueServerCredentials(authority.current, listen.host, now());
    http.setTls({ keyPem: creds.keyPem, certPem: creds.certPem, caPem: authority.bundlePem });
    schedule();
  };
  const schedule = () => {
    clearTimeout(renewTimer);
    const wait = Math.min(Math.max(creds.renewAt.getTime() - now().getTime(), 1000), 2 ** 31 - 1);
    renewTimer = setTimeout(renewCredentials, wait).unref();
  };
  schedule();
  const reload = () => {
    authority = loadAuthority(opts.manifest, opts.pkiDir);
    metrics.caNotAfter(authority.current.cert.notAfter);
    renewCredentials();
  };
  const caTimer = setInterval(() => {
    if (caFilesStamp(opts.pkiDir) === authority.stamp) return;
    try {
      reload();
    } catch {
      // A CA caught mid-change (or damaged) is read again at the next tick; the last good one keeps serving.
    }
  }, opts.caCheckMs ?? 5000).unref();

  const anchor = parseCertificatesPem(authority.root.bundlePem)[0] ?? authority.root.cert.der;
  let closed: Promise<void> | undefined;
  return {
    url: http.url,
    host: http.host,
    port: http.port,
    rootSha256: createHash("sha256").update(anchor).digest("hex"),
    ledger: opts.ledger,
    serverCertificate: () => creds.certPem,
    reload,
    close: () => {
      closed ??= (async () => {
        clearTimeout(renewTimer);
        clearInterval(caTimer);
        await http.close();
        await opts.ledger.close();
      })();
      return closed;
    },
  };
}
