/**
 * Interop harness: the real programs mtlskit's certificates must satisfy, run on loopback.
 *
 * - Tools are found on PATH or in Debian's own folders (`need`), with the install command when
 *   missing. Nothing is mocked: every verdict comes from the program itself.
 * - Servers are started by the suite on free loopback ports (`freePort`), waited for with a
 *   deadline (`waitForPort`, `waitFor`), and stopped at the end (`stopAll`, also at exit).
 * - Everything a run writes (PKIs, configs, data directories, server logs) lives under one run
 *   directory, `RUN_DIR`: the runner (main.ts) removes it when every case passed and keeps it,
 *   printing its path, when one failed.
 * - PKIs come from mtlskit's own library (`makePki`), and `check` judges them in-process, so a
 *   case can assert that a real server's verdict and check's agree.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import {
  copyFileSync,
  cpSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { checkPki, type CheckReport } from "../../src/check/index.ts";
import { loadManifest, type LoadedManifest } from "../../src/manifest/index.ts";
import { apply } from "../../src/plan/apply.ts";

/** RUN_DIR holds everything one interop run writes; main.ts sets it for every test file. */
export const RUN_DIR: string = process.env.MTLSKIT_INTEROP_DIR ?? mkdtempSync(path.join(tmpdir(), "mtlskit-interop-"));
mkdirSync(RUN_DIR, { recursive: true });

/** REPO is the repository root. */
export const REPO = path.resolve(import.meta.dirname, "../..");

/** INSTALL names the script that installs every tool the suite needs. */
export const INSTALL = "scripts/install-interop.sh";

const EXTRA_DIRS = ["/usr/sbin", "/sbin", "/usr/local/sbin", ...postgresBinDirs()];

function postgresBinDirs(): string[] {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => path.join(root, v, "bin"));
}

/** need returns the absolute path of `tool`, or throws saying how to install it. */
export function need(tool: string): string {
  for (const dir of [...(process.env.PATH ?? "").split(":").filter(Boolean), ...EXTRA_DIRS]) {
    const p = path.join(dir, tool);
    if (existsSync(p)) return p;
  }
  throw new Error(`interop: ${tool} is not installed; run \`sudo ${INSTALL}\` (Debian packages) first`);
}

/** subdir makes (and returns) a fresh folder under RUN_DIR named after `name`. */
export function subdir(name: string): string {
  mkdirSync(RUN_DIR, { recursive: true });
  return mkdtempSync(path.join(RUN_DIR, `${name.replace(/[^a-z0-9-]+/gi, "-")}-`));
}

/** freePort asks the kernel for a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** sleep waits `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** waitFor polls `probe` every 100 ms until it returns true, or throws after `timeoutMs` naming `what` (and the server's log tail). */
export async function waitFor(
  what: string,
  probe: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
  server?: Server,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (server?.exited)
      throw new Error(
        `interop: ${server.name} exited (${server.exited}) while waiting for ${what}; log ${server.log}:\n${server.tail()}`,
      );
    if (await probe()) return;
    if (Date.now() > deadline)
      throw new Error(
        `interop: ${what} not ready after ${timeoutMs} ms${server ? `; log ${server.log}:\n${server.tail()}` : ""}`,
      );
    await sleep(100);
  }
}

/** portOpen tells whether something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

/** waitForPort waits until `server` accepts connections on `port`. */
export function waitForPort(port: number, server?: Server, timeoutMs = 20_000): Promise<void> {
  return waitFor(`127.0.0.1:${port}`, () => portOpen(port), timeoutMs, server);
}

/** Server is a program the suite started; its stdout and stderr go to `log`. */
export interface Server {
  name: string;
  log: string;
  child: ChildProcess;
  /** exited is the exit code or signal once the process has ended. */
  exited: string | undefined;
  /** tail returns the end of the log. */
  tail(lines?: number): string;
  /** stop ends the process: SIGTERM, then SIGKILL after 5 s. */
  stop(): Promise<void>;
}

const running = new Set<Server>();
process.on("exit", () => {
  for (const s of running) s.child.kill("SIGKILL");
});

/** StartOptions are the extras of `startServer`. */
export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  uid?: number;
  gid?: number;
}

/** startServer starts `cmd args` in the background, logging to RUN_DIR/logs/NAME.log. */
export function startServer(name: string, cmd: string, args: string[], opts: StartOptions = {}): Server {
  const logs = path.join(RUN_DIR, "logs");
  mkdirSync(logs, { recursive: true });
  const log = path.join(logs, `${name}.log`);
  const out = createWriteStream(log, { flags: "a" });
  out.write(`$ ${cmd} ${args.join(" ")}\n`);
  const child = spawn(cmd, args, {
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
    uid: opts.uid,
    gid: opts.gid,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.pipe(out, { end: false });
  child.stderr.pipe(out, { end: false });
  const server: Server = {
    name,
    log,
    child,
    exited: undefined,
    tail: (lines = 30) => (existsSync(log) ? readFileSync(log, "utf8").split("\n").slice(-lines).join("\n") : ""),
    stop: async () => {
      if (server.exited === undefined) {
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await new Promise<void>((r) => (server.exited !== undefined ? r() : child.once("exit", () => r())));
        clearTimeout(killer);
      }
      running.delete(server);
    },
  };
  child.once("error", (e) => {
    server.exited = `spawn error: ${e.message}`;
  });
  child.once("exit", (code, signal) => {
    server.exited = signal ?? String(code);
    running.delete(server);
  });
  running.add(server);
  return server;
}

/** logMark is where a server's log ends now; logSince and waitForLog read only what came after it. */
export const logMark = (s: Server): number => (existsSync(s.log) ? statSync(s.log).size : 0);

/** logSince returns what `s` logged after byte `mark`. */
export const logSince = (s: Server, mark: number): string =>
  existsSync(s.log) ? readFileSync(s.log).subarray(mark).toString("utf8") : "";

/**
 * waitForLog waits (bounded) until `pattern` appears in what `s` logged after `mark`, and returns
 * that text. Read logs this way, never at once: a server's output reaches its log file through
 * this process's event loop, which synchronous `exec` calls keep busy.
 */
export async function waitForLog(s: Server, mark: number, pattern: RegExp | string, ms = 10_000): Promise<string> {
  const seen = () => {
    const text = logSince(s, mark);
    return typeof pattern === "string" ? text.includes(pattern) : pattern.test(text);
  };
  await waitFor(`${s.name} logging ${pattern}`, seen, ms).catch((e: Error) => {
    throw new Error(`${e.message}; ${s.name} logged since:\n${logSince(s, mark).split("\n").slice(-15).join("\n")}`);
  });
  return logSince(s, mark);
}

/** stopAll stops every server still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
}

/** Ran is a finished command. */
export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  /** out is stdout and stderr together, for messages. */
  out: string;
}

/** ExecOptions are the extras of `exec`. */
export interface ExecOptions extends StartOptions {
  input?: string;
  timeoutMs?: number;
}

/** exec runs a command to completion (bounded by `timeoutMs`, default 30 s). */
export function exec(cmd: string, args: string[], opts: ExecOptions = {}): Ran {
  const r = spawnSync(cmd, args, {
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
    uid: opts.uid,
    gid: opts.gid,
    input: opts.input,
    encoding: "utf8",
    timeout: opts.timeoutMs ?? 30_000,
  });
  if (r.error) throw new Error(`interop: ${cmd} ${args.join(" ")}: ${r.error.message}`);
  return { code: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "", out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

/**
 * mtlskit returns the node arguments that run the CLI from the sources (cwd: REPO), for programs
 * the suite starts as processes: `startServer("metrics", process.execPath, mtlskit(["metrics", ...]), { cwd: REPO })`.
 */
export function mtlskit(args: string[]): string[] {
  return [
    "--import",
    "tsx",
    "-e",
    'process.argv.splice(1, 0, "mtlskit"); import("./src/cli/main.ts").then((m) => m.main());',
    ...args,
  ];
}

/** ServiceFiles are a managed service's files. */
export interface ServiceFiles {
  dir: string;
  cert: string;
  key: string;
  ca: string;
}

/** Pki is a manifest applied into a fresh PKI directory under RUN_DIR. */
export interface Pki {
  dir: string;
  file: string;
  pki: string;
  loaded: LoadedManifest;
  /** svc returns a service's files in the managed layout. */
  svc(name: string): ServiceFiles;
  /** check runs `mtlskit check` in-process (optionally at another time). */
  check(now?: Date): CheckReport;
}

/** PkiOptions: `now` issues as if at that time (for certificates already expired, or not yet valid). */
export interface PkiOptions {
  now?: Date;
}

/** makePki writes `manifest` (YAML text, or the path of an existing manifest) and applies it. */
export async function makePki(name: string, manifest: string, opts: PkiOptions = {}): Promise<Pki> {
  const dir = subdir(name);
  let file = manifest;
  if (!existsSync(manifest)) {
    file = path.join(dir, "mtlskit.yaml");
    writeFileSync(file, manifest);
  }
  const pki = path.join(dir, "pki");
  const loaded = loadManifest(file);
  await apply(loaded, pki, { now: opts.now });
  const svc = (s: string): ServiceFiles => {
    const d = path.join(pki, "services", s);
    return { dir: d, cert: path.join(d, "cert.pem"), key: path.join(d, "key.pem"), ca: path.join(d, "ca.pem") };
  };
  return { dir, file, pki, loaded, svc, check: (now?: Date) => checkPki(loaded.manifest, pki, { now }) };
}

/** clonePki copies a PKI (same manifest) so a case can break the copy and leave the original intact. */
export function clonePki(from: Pki, name: string): Pki {
  const dir = subdir(name);
  const pki = path.join(dir, "pki");
  cpSync(from.pki, pki, { recursive: true, preserveTimestamps: true });
  const svc = (s: string): ServiceFiles => {
    const d = path.join(pki, "services", s);
    return { dir: d, cert: path.join(d, "cert.pem"), key: path.join(d, "key.pem"), ca: path.join(d, "ca.pem") };
  };
  return {
    dir,
    file: from.file,
    pki,
    loaded: from.loaded,
    svc,
    check: (now?: Date) => checkPki(from.loaded.manifest, pki, { now }),
  };
}

/**
 * giveCertificate copies service `from`'s certificate and key over service `to`'s: the
 * runbooks' commonest mistake (a host handed another component's files), used for broken cases.
 */
export function giveCertificate(pki: Pki, from: string, to: string): void {
  for (const f of ["cert", "key"] as const) copyFileSync(pki.svc(from)[f], pki.svc(to)[f]);
}

/** errorsAbout lists `code about` for every error-level finding of a report that concerns `service` or a connection naming it. */
export function errorsAbout(report: CheckReport, service: string): string[] {
  return report.findings
    .filter((f) => f.severity === "error")
    .flatMap((f) => {
      const a = f.about;
      if (a.kind === "connection")
        return a.from === service || a.to === service ? [`${f.code} ${a.from} -> ${a.to}`] : [];
      return a.kind !== "ca" && a.service === service ? [`${f.code} ${a.service}`] : [];
    });
}

/**
 * buildGoverify builds the Go verifier offline (stdlib only) into a folder of the run directory. CGO_ENABLED=0:
 * Go 1.19 needs a C compiler for cgo, which golang-go only recommends. Without cgo, Go rebuilds
 * net and its kin: about 4 s with an empty cache, 0.1 s with Go's own cache in HOME, so that one
 * is used when there is a HOME (else a cache in the run directory).
 */
export function buildGoverify(): string {
  // Its own folder per call: two test files building at once do not write one binary.
  const go = subdir("go");
  const out = path.join(go, "goverify");
  const cache = process.env.HOME ? path.join(process.env.HOME, ".cache", "go-build") : path.join(go, "cache");
  const r = exec(need("go"), ["build", "-o", out, "."], {
    cwd: path.join(import.meta.dirname, "goverify"),
    env: {
      GOFLAGS: "-mod=mod",
      GOPROXY: "off",
      GOTOOLCHAIN: "local",
      CGO_ENABLED: "0",
      GOCACHE: cache,
      GOPATH: path.join(go, "path"),
    },
    timeoutMs: 120_000,
  });
  if (r.code !== 0) throw new Error(`go build of test/interop/goverify failed:\n${r.out}`);
  return out;
}

// ── nginx (shared by nginx.interop.ts and intermediate.interop.ts) ─────────────────────────────

/** Site is one TLS server block: a port, the certificate and key nginx presents, and the bundle that judges clients. */
export interface Site {
  port: number;
  cert: string;
  key: string;
  ca: string;
}

/** Nginx is a running nginx and its error log. */
export interface Nginx {
  server: Server;
  /** mark returns the error log's current length, for `logSince`. */
  mark(): number;
  /** logSince returns what the error log gained after `mark`. */
  logSince(mark: number): string;
}

const BODY = 'return 200 "verify=$ssl_client_verify dn=$ssl_client_s_dn\\n";';

/** nginxConf renders a self-contained config: every path under `dir`, one mutual-TLS server block per site. */
function nginxConf(dir: string, errorLog: string, sites: Site[]): string {
  const server = (s: Site) => `
  server {
    listen 127.0.0.1:${s.port} ssl;
    ssl_certificate ${s.cert};
    ssl_certificate_key ${s.key};
    ssl_client_certificate ${s.ca};
    ssl_verify_client on;
    ssl_verify_depth 2;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { ${BODY} }
  }`;
  return nginxFrame(dir, errorLog, sites.map(server).join("\n"));
}

/**
 * nginxFrame wraps server blocks in a self-contained nginx.conf: the pid file, logs and temp paths
 * under `dir`; `head` goes first (user, worker_processes), `pid` replaces the default pid file.
 */
export function nginxFrame(
  dir: string,
  errorLog: string,
  servers: string,
  opts: { head?: string; pid?: string } = {},
): string {
  const p = (f: string) => path.join(dir, f);
  return `${opts.head ?? ""}pid ${opts.pid ?? p("nginx.pid")};
error_log ${errorLog} info;
events { worker_connections 64; }
http {
  access_log ${p("access.log")};
  client_body_temp_path ${p("body")};
  proxy_temp_path ${p("proxy")};
  fastcgi_temp_path ${p("fastcgi")};
  uwsgi_temp_path ${p("uwsgi")};
  scgi_temp_path ${p("scgi")};
  default_type text/plain;
${servers}
}
`;
}

/** startNginx validates the config with `nginx -t`, starts nginx in the foreground (optionally under libfaketime) and waits for every port. */
export async function startNginx(name: string, sites: Site[], env: NodeJS.ProcessEnv = {}): Promise<Nginx> {
  const nginx = need("nginx");
  const dir = subdir(name);
  const conf = path.join(dir, "nginx.conf");
  const errorLog = path.join(dir, "error.log");
  writeFileSync(conf, nginxConf(dir, errorLog, sites));
  const args = ["-p", dir, "-c", conf, "-e", errorLog, "-g", "daemon off; master_process off;"];
  const t = exec(nginx, ["-t", ...args]);
  if (t.code !== 0) throw new Error(`nginx -t refused ${conf}:\n${t.out}`);
  const server = startServer(name, nginx, args, { env });
  for (const s of sites) await waitForPort(s.port, server);
  const size = () => statSync(errorLog).size;
  return { server, mark: size, logSince: (m) => readFileSync(errorLog).subarray(m).toString("utf8") };
}
