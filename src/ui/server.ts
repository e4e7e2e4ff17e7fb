/**
 * The dashboard's server (`mtlskit ui`, issue 17): the page, its assets, the Snapshot and its
 * change events, served by serve's HTTP door (src/server/http.ts). Read-only: every route is GET.
 *
 * Security model (README "Dashboard"): bound to loopback it is plain HTTP without authentication,
 * and requests must name a loopback host (a DNS-rebinding page cannot read it through its own
 * name); bound to any other address it is HTTPS with a client certificate required and judged as
 * serve judges /v1/revoke's (src/server/routes.ts authenticateAdmin: chains to the bundle, valid,
 * not revoked, one of serve.admins), the server's own certificate issued in memory from the CA as
 * serve's is (src/server/tls.ts). Every answer carries a strict Content-Security-Policy.
 */
import { existsSync, lstatSync } from "node:fs";
import * as path from "node:path";
import { PassThrough, type Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { FailedError, UsageError } from "../errors.ts";
import { ledgerExists, ledgerName, openLedger, type Ledger } from "../ledger/index.ts";
import { loadManifest, type LoadedManifest, type Manifest } from "../manifest/index.ts";
import { readFileBounded } from "../read-file.ts";
import { caFilesStamp, loadAuthority, RevokedSet, type Authority } from "../server/authority.ts";
import { listenHttps, type HttpReply, type HttpRequest, type Route } from "../server/http.ts";
import { ServeProblem } from "../server/problem.ts";
import { authenticateAdmin } from "../server/routes.ts";
import type { MountContext, Mounted, ServeOptions } from "../server/index.ts";
import { issueServerCredentials } from "../server/tls.ts";
import { inThreadBuilder, type SnapshotBuilder, workerBuilder } from "./builder.ts";
import { readLedgerPart, servedJson, Versions } from "./model.ts";
import type { Snapshot } from "./snapshot.ts";

/** CSP: the page loads its own scripts, styles and images only, talks only to its own origin, and is framed by nothing. */
export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** SECURITY_HEADERS are on every answer of the dashboard, refusals included. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

/** UI_LIMITS: the dashboard's bounds. */
export const UI_LIMITS = {
  /** streams: open /api/events connections at once; one more is 503 busy. */
  streams: 32,
  /** heartbeatMs: a comment on every event stream this often (proxies and the 30 s idle timeout close a silent one). */
  heartbeatMs: 15_000,
  /** refreshMs: the snapshot is rebuilt at least this often, changes or not (renewal windows open with time). */
  refreshMs: 5 * 60_000,
  /** assetBytes: the largest asset served. */
  assetBytes: 16 * 1024 * 1024,
} as const;

/** DEFAULT_POLL_MS: how often the PKI directory's files (and the ledger's counts) are looked at. */
export const DEFAULT_POLL_MS = 2000;

/** defaultAssetsDir: the front end's build output, dist/ui/web/ under the package root (this file is src/ui/ or dist/ui/). */
export const defaultAssetsDir = (): string => fileURLToPath(new URL("../../dist/ui/web/", import.meta.url));

/** CONTENT_TYPES by extension; anything else is application/octet-stream (and nosniff). */
const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".woff": "font/woff",
  ".txt": "text/plain; charset=utf-8",
};

/** HASHED: a bundler's content-hashed name (`app-3F2A9C1B.js`, `chunk.a1b2c3d4.css`): immutable, cached for a year. */
const HASHED = /[.-](?=[A-Za-z0-9_]*\d)(?=[A-Za-z0-9_]*[A-Za-z])[A-Za-z0-9_]{8,}\.[a-z0-9]+$/;

/** ASSET_NAME: what an asset path may be: plain segments, none starting with a dot (no `..`, no hidden files). */
const ASSET_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*(?:\/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$/;

/** isLoopback: 127.0.0.0/8, ::1 (and ::ffff:127.x), localhost. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  return (
    h === "localhost" ||
    h === "::1" ||
    /^(?:::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) ||
    /^0{0,4}(?::0{0,4}){6}:0{0,3}1$/.test(h)
  );
}

/** hostOfHeader is the host of a Host header (`127.0.0.1:8080`, `[::1]:8080`, `localhost`), without its port. */
function hostOfHeader(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^\[([^\]]+)\](?::\d+)?$/.exec(header) ?? /^([^:]+)(?::\d+)?$/.exec(header);
  return m?.[1];
}

/** LiveOptions configure a LiveSnapshot. */
export interface LiveOptions {
  manifest: Manifest;
  pkiDir: string;
  /** ledger: an open ledger to read (serve's own, when mounted); it is not closed. Default: opened here, read-only, when it exists. */
  ledger?: Ledger;
  /** ledgerSpec: `--ledger` (sqlite:PATH, postgres://...). Default: DIR/ca/ledger.db. */
  ledgerSpec?: string;
  /** pollMs: how often the files are looked at. Default: DEFAULT_POLL_MS. */
  pollMs?: number;
  /** refusals: serve's refusals by reason (mounted inside serve). */
  refusals?(): Promise<{ reason: string; count: number }[]>;
  /** now: the clock. Default: the current time. */
  now?(): Date;
  /** thread: judge the PKI in a worker thread (check takes seconds of CPU at 10,000 services); false: on this thread. Default: true. */
  thread?: boolean;
}

/**
 * LiveSnapshot keeps the current Snapshot: each poll stats the files apply, rotate and revoke
 * change (model.ts stampFiles) and asks the ledger's counts; only when that stamp changed (or
 * UI_LIMITS.refreshMs passed) is the snapshot rebuilt, and only a content change raises its version.
 */
export class LiveSnapshot {
  private readonly versions = new Versions();
  private current: Snapshot | undefined;
  private json = "";
  private version = 0;
  private readonly builder: SnapshotBuilder;
  private stamp = "";
  private builtAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private ledger: Ledger | undefined;
  private readonly ownLedger: boolean;
  private readonly listeners = new Set<(version: number) => void>();
  private closed = false;
  private running: Promise<void> | undefined;
  /** builds: how many times the snapshot was rebuilt (tests: polls without a change rebuild nothing). */
  builds = 0;

  constructor(private readonly opts: LiveOptions) {
    this.ledger = opts.ledger;
    this.ownLedger = opts.ledger === undefined;
    this.builder =
      opts.thread === false ? inThreadBuilder(opts.manifest, opts.pkiDir) : workerBuilder(opts.manifest, opts.pkiDir);
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  /** start builds the first snapshot and starts polling. */
  async start(): Promise<void> {
    await this.tick(true);
    this.schedule();
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      this.running = this.tick(false)
        .catch(() => {
          // A PKI caught mid-write, or a ledger down: the last snapshot stays; the next poll tries again.
        })
        .finally(() => {
          this.running = undefined;
          this.schedule();
        });
    }, this.opts.pollMs ?? DEFAULT_POLL_MS);
    this.timer.unref();
  }

  /** openLedger opens the ledger once it exists (apply or serve may create it after the dashboard started). */
  private async openLedger(): Promise<Ledger | undefined> {
    if (this.ledger || !this.ownLedger) return this.ledger;
    if (!ledgerExists(this.opts.pkiDir, this.opts.ledgerSpec)) return undefined;
    this.ledger = await openLedger(this.opts.pkiDir, this.opts.ledgerSpec, { create: false });
    return this.ledger;
  }

  private async tick(first: boolean): Promise<void> {
    const now = this.now();
    const ledger = await this.openLedger();
    const counts = ledger ? JSON.stringify(await ledger.stats(now)) : "-";
    const refusals = this.opts.refusals ? await this.opts.refusals() : undefined;
    const stamp = `${await this.builder.stamp()}/${counts}/${JSON.stringify(refusals ?? null)}`;
    if (!first && stamp === this.stamp && Date.now() - this.builtAt < UI_LIMITS.refreshMs) return;
    const part = ledger
      ? await readLedgerPart(ledger, this.opts.manifest, {
          name: this.ownLedger ? ledgerName(this.opts.pkiDir, this.opts.ledgerSpec) : ledger.kind,
          now,
          refusals,
        })
      : undefined;
    const built = await this.builder.build(now, part);
    this.builds += 1;
    this.stamp = stamp;
    this.builtAt = Date.now();
    const before = this.version;
    this.version = this.versions.number(built.hash);
    this.json = servedJson(this.version, built.json);
    this.current = undefined;
    if (this.version !== before) for (const l of this.listeners) l(this.version);
  }

  /** currentVersion is the current snapshot's version. */
  currentVersion(): number {
    return this.version;
  }

  /** snapshot is the current Snapshot (parsed from its JSON on first use: requests are answered with the text). */
  snapshot(): Snapshot {
    if (this.version === 0) throw new Error("ui: LiveSnapshot.start() was not awaited");
    this.current ??= JSON.parse(this.json) as Snapshot;
    return this.current;
  }

  /** snapshotJson is the current Snapshot as served (serialized once per build). */
  snapshotJson(): string {
    if (this.version === 0) throw new Error("ui: LiveSnapshot.start() was not awaited");
    return this.json;
  }

  /** subscribe calls `fn` with each new version; the returned function unsubscribes. */
  subscribe(fn: (version: number) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** close stops polling and closes the ledger it opened. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.running;
    await this.builder.close();
    if (this.ownLedger) await this.ledger?.close();
  }
}

/** UiRoutesOptions: what the routes serve and who may see it. */
export interface UiRoutesOptions {
  live: LiveSnapshot;
  /** prefix: where the routes are mounted: "" (`mtlskit ui`) or "/ui" (`serve --ui`). */
  prefix: string;
  /** assetsDir: the front end's files (index.html, app.js, app.css, ...). Default: defaultAssetsDir(). */
  assetsDir?: string;
  /** guard: runs before every route (admin mTLS); throws a ServeProblem to refuse. */
  guard?(req: HttpRequest): Promise<void>;
}

/** UiRoutes are the dashboard's routes, the headers for its paths, and what closes its event streams. */
export interface UiRoutes {
  routes: Route[];
  /** headersFor: SECURITY_HEADERS for the dashboard's paths (http.ts HttpOptions.headersFor). */
  headersFor(path: string): Record<string, string> | undefined;
  /** closeStreams ends every open event stream. */
  closeStreams(): void;
}

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mtlskit dashboard: not built</title></head>
<body><h1>The dashboard's page is not built</h1>
<p>This mtlskit has no front end in <code>dist/ui/web/</code>. In a clone of the repository, run
<code>npm run build</code> (or <code>npm ci</code>), then reload. The data is already served:
<a href="api/snapshot">api/snapshot</a>.</p></body></html>
`;

/** uiRoutes builds the dashboard's routes under `prefix`. */
export function uiRoutes(opts: UiRoutesOptions): UiRoutes {
  const { live, prefix } = opts;
  const assetsDir = path.resolve(opts.assetsDir ?? defaultAssetsDir());
  const streams = new Set<PassThrough>();
  const guarded =
    (handle: (req: HttpRequest) => Promise<HttpReply>) =>
    async (req: HttpRequest): Promise<HttpReply> => {
      await opts.guard?.(req);
      return handle(req);
    };

  const file = (rel: string, cache: string): HttpReply | undefined => {
    const full = path.join(assetsDir, rel);
    if (!full.startsWith(assetsDir + path.sep)) return undefined;
    const st = lstatSync(full, { throwIfNoEntry: false });
    if (!st?.isFile()) return undefined;
    const body = readFileBounded(full, { limit: UI_LIMITS.assetBytes, noFollow: true });
    return {
      status: 200,
      body,
      type: CONTENT_TYPES[path.extname(full).toLowerCase()] ?? "application/octet-stream",
      headers: { "cache-control": cache },
    };
  };
  const notFound = (what: string) =>
    new ServeProblem("not-found", `the dashboard has no ${what}`, `open ${prefix}/ and follow its links`);

  const routes: Route[] = [
    {
      method: "GET",
      url: `${prefix}/`,
      handle: guarded(async () => {
        const page = file("index.html", "no-cache");
        return page ?? { status: 503, body: NOT_BUILT, type: "text/html; charset=utf-8" };
      }),
    },
    {
      method: "GET",
      url: `${prefix}/assets/*`,
      handle: guarded(async (req) => {
        const rel = req.params["*"] ?? "";
        if (!ASSET_NAME.test(rel) || rel.length > 200) throw notFound(`asset ${JSON.stringify(rel.slice(0, 100))}`);
        const asset = file(rel, HASHED.test(rel) ? "public, max-age=31536000, immutable" : "no-cache");
        if (!asset) throw notFound(`asset ${JSON.stringify(rel)}`);
        return asset;
      }),
    },
    {
      method: "GET",
      url: `${prefix}/api/snapshot`,
      handle: guarded(async () => ({
        status: 200,
        body: live.snapshotJson(),
        type: "application/json",
        headers: { "cache-control": "no-store" },
      })),
    },
    {
      method: "GET",
      url: `${prefix}/api/events`,
      handle: guarded(async () => {
        if (streams.size >= UI_LIMITS.streams)
          throw new ServeProblem(
            "busy",
            `the dashboard already has ${UI_LIMITS.streams} open event streams`,
            "close other dashboard tabs, or poll /api/snapshot",
          );
        const stream = new PassThrough();
        const send = (version: number) => stream.write(`event: snapshot\ndata: {"version":${version}}\n\n`);
        const unsubscribe = live.subscribe(send);
        const beat = setInterval(() => stream.write(": keep-alive\n\n"), UI_LIMITS.heartbeatMs);
        beat.unref();
        streams.add(stream);
        stream.once("close", () => {
          clearInterval(beat);
          unsubscribe();
          streams.delete(stream);
        });
        send(live.currentVersion());
        return {
          status: 200,
          stream,
          type: "text/event-stream; charset=utf-8",
          headers: { "cache-control": "no-store", "x-accel-buffering": "no" },
        };
      }),
    },
  ];
  if (prefix !== "")
    routes.push({
      method: "GET",
      url: prefix,
      handle: async () => ({ status: 308, empty: true, headers: { location: `${prefix}/` } }),
    });
  return {
    routes,
    headersFor: (p) =>
      prefix === "" || p === prefix || p.startsWith(`${prefix}/`) ? { ...SECURITY_HEADERS } : undefined,
    closeStreams: () => {
      for (const s of streams) s.end();
    },
  };
}

/** UiOptions configure startUi. */
export interface UiOptions {
  /** manifestFile: the manifest's path (`-f`). */
  manifestFile: string;
  /** loaded: the manifest already loaded from manifestFile (the CLI loads it first). Default: loadManifest(manifestFile). */
  loaded?: LoadedManifest;
  pkiDir: string;
  /** listen: the address; port 0 picks a free one. */
  listen: { host: string; port: number };
  /** ledgerSpec: `--ledger`. Default: DIR/ca/ledger.db when it exists. */
  ledgerSpec?: string;
  /** assetsDir: the front end's files. Default: dist/ui/web/ of the package. */
  assetsDir?: string;
  /** pollMs: how often the PKI directory is looked at. Default: DEFAULT_POLL_MS (2 s). */
  pollMs?: number;
  /** requireMtls: HTTPS with an admin's client certificate required. Default: on unless `listen.host` is a loopback address. */
  requireMtls?: boolean;
  /** log: JSON request log lines (pino). Default: none. */
  log?: { stream: Writable; level?: "info" | "debug" | "warn" | "error" };
  /** now: the clock. Default: the current time. */
  now?(): Date;
}

/** RunningUi is a listening dashboard. */
export interface RunningUi {
  url: string;
  /** mtls: whether clients must present an admin's certificate. */
  mtls: boolean;
  /** live: the snapshot it serves. */
  live: LiveSnapshot;
  close(): Promise<void>;
}

/**
 * mtlsRefusal says why the dashboard cannot require admin mTLS for `loaded` (no serve.admins), or
 * undefined; `why` says why mTLS is required (`--listen 0.0.0.0:8443 is not a loopback address`).
 * The CLI asks before anything is read or bound (exit 2).
 */
export function mtlsRefusal(loaded: LoadedManifest, why: string): string | undefined {
  const admins = loaded.manifest.serve?.admins ?? [];
  if (admins.length > 0) return undefined;
  return `mtlskit ui: ${why}, so the dashboard requires mTLS with an admin's client certificate, and ${loaded.manifest.file} declares no serve.admins\n    fix: list the client service whose certificate the operator's browser presents in serve.admins (serve: { admins: [ops] }) and run \`mtlskit apply\`; or listen on 127.0.0.1 (the default, no --mtls) and reach it through an SSH tunnel`;
}

/**
 * startUi starts the dashboard. With mTLS (any non-loopback address, or requireMtls), a manifest
 * without serve.admins is a UsageError (exit 2) and a CA whose key is not in DIR a FailedError
 * (exit 3), both raised before anything listens.
 */
export async function startUi(opts: UiOptions): Promise<RunningUi> {
  const loaded = opts.loaded ?? loadManifest(opts.manifestFile);
  const mtls = opts.requireMtls ?? !isLoopback(opts.listen.host);
  const now = () => opts.now?.() ?? new Date();
  let authority: Authority | undefined;
  if (mtls) {
    const refusal = mtlsRefusal(
      loaded,
      isLoopback(opts.listen.host) ? "requireMtls is set" : `${opts.listen.host} is not a loopback address`,
    );
    if (refusal) throw new UsageError(refusal);
    authority = loadAuthority(loaded, opts.pkiDir, "mtlskit ui");
  } else if (!existsSync(opts.pkiDir))
    throw new FailedError(
      `mtlskit ui: the PKI directory ${opts.pkiDir} does not exist\n    fix: run \`mtlskit apply -f ${loaded.manifest.file} --pki ${opts.pkiDir}\` first, or name the right --pki`,
    );
  const live = new LiveSnapshot({
    manifest: loaded.manifest,
    pkiDir: opts.pkiDir,
    ...(opts.ledgerSpec === undefined ? {} : { ledgerSpec: opts.ledgerSpec }),
    ...(opts.pollMs === undefined ? {} : { pollMs: opts.pollMs }),
    ...(opts.now ? { now: opts.now } : {}),
  });
  try {
    await live.start();
  } catch (e) {
    await live.close();
    throw e;
  }
  let ledgerForAuth: Ledger | undefined;
  const revoked = mtls ? new RevokedSet(opts.pkiDir) : undefined;
  const guard = async (req: HttpRequest) => {
    if (!authority) {
      // Plain HTTP on loopback: the Host must be a loopback name too, or a page on another site
      // could rebind its own name to 127.0.0.1 and read the dashboard as same-origin.
      const host = hostOfHeader(req.host);
      if (host === undefined || !isLoopback(host))
        throw new ServeProblem(
          "bad-request",
          "the dashboard answers only requests addressed to a loopback name (127.0.0.1, [::1], localhost)",
          "open the URL mtlskit ui printed",
        );
      return;
    }
    if (!ledgerForAuth && ledgerExists(opts.pkiDir, opts.ledgerSpec))
      ledgerForAuth = await openLedger(opts.pkiDir, opts.ledgerSpec, { create: false }).catch(() => undefined);
    await authenticateAdmin(
      { loaded, authority: () => authority!, revoked: revoked!, ledger: ledgerForAuth },
      req,
      new Date(Math.floor(now().getTime() / 1000) * 1000),
      "open the dashboard with the client certificate of a service listed in serve.admins",
    );
  };
  const ui = uiRoutes({ live, prefix: "", ...(opts.assetsDir ? { assetsDir: opts.assetsDir } : {}), guard });
  let creds = authority
    ? issueServerCredentials(authority.current, authority.anchorPem, opts.listen.host, now())
    : undefined;
  let http: Awaited<ReturnType<typeof listenHttps>>;
  try {
    http = await listenHttps({
      host: opts.listen.host,
      port: opts.listen.port,
      ...(authority && creds
        ? { tls: { keyPem: creds.keyPem, certPem: creds.certPem, caPem: authority.bundlePem } }
        : {}),
      routes: ui.routes,
      headersFor: ui.headersFor,
      notFoundFix: "the dashboard is GET /, /assets/*, /api/snapshot and /api/events",
      ...(opts.log ? { log: opts.log } : {}),
    });
  } catch (e) {
    await live.close();
    throw e;
  }
  // As serve's tick: a changed CA is read again (and the certificate re-issued under it), else the
  // certificate is renewed at 2/3 of its lifetime.
  const timer = authority
    ? setInterval(() => {
        try {
          if (caFilesStamp(opts.pkiDir) !== authority!.stamp) {
            authority = loadAuthority(loaded, opts.pkiDir, "mtlskit ui");
            creds = undefined;
          }
          if (!creds || now() >= creds.renewAt) {
            creds = issueServerCredentials(authority!.current, authority!.anchorPem, opts.listen.host, now());
            http.setTls({ keyPem: creds.keyPem, certPem: creds.certPem, caPem: authority!.bundlePem });
          }
        } catch {
          // A CA caught mid-change: the last good one keeps serving; the next tick reads it again.
        }
      }, 5000).unref()
    : undefined;
  let closed: Promise<void> | undefined;
  return {
    url: `${http.url}/`,
    mtls,
    live,
    close: () => {
      closed ??= (async () => {
        clearInterval(timer);
        ui.closeStreams();
        await http.close();
        await live.close();
        await ledgerForAuth?.close();
      })();
      return closed;
    },
  };
}

/** ServeMountOptions configure the dashboard inside serve. */
export interface ServeMountOptions {
  /** assetsDir: the front end's files. Default: dist/ui/web/ of the package. */
  assetsDir?: string;
  /** pollMs: how often the PKI directory is looked at. Default: DEFAULT_POLL_MS. */
  pollMs?: number;
}

/** UI_PREFIX: where `serve --ui` mounts the dashboard. */
export const UI_PREFIX = "/ui";

/**
 * serveMount is `serve --ui`: the dashboard's routes under /ui/ on serve's HTTPS listener, every
 * one for serve.admins' client certificates only, reading serve's own ledger, with serve's
 * refusals by reason in Snapshot.online.refusals.
 */
export function serveMount(o: ServeMountOptions = {}): NonNullable<ServeOptions["mount"]> {
  return async (ctx: MountContext): Promise<Mounted> => {
    const live = new LiveSnapshot({
      manifest: ctx.loaded.manifest,
      pkiDir: ctx.pkiDir,
      ledger: ctx.ledger,
      refusals: ctx.refusals,
      ...(o.pollMs === undefined ? {} : { pollMs: o.pollMs }),
    });
    try {
      await live.start();
    } catch (e) {
      await live.close();
      throw e;
    }
    const ui = uiRoutes({
      live,
      prefix: UI_PREFIX,
      ...(o.assetsDir ? { assetsDir: o.assetsDir } : {}),
      guard: ctx.requireAdmin,
    });
    return {
      routes: ui.routes,
      headersFor: ui.headersFor,
      close: async () => {
        ui.closeStreams();
        await live.close();
      },
    };
  };
}
