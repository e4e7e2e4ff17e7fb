/**
 * Test helper: a throw-away PostgreSQL cluster on loopback, for the PostgreSQL ledger (issue 15).
 *
 * Debian's server binaries (/usr/lib/postgresql/N/bin: `apt-get install postgresql`, which
 * scripts/install-interop.sh and .ci/run do) run as the `postgres` system user when this process
 * is root (postgres refuses root). The cluster lives in a fresh directory: initdb, then
 * `postgres -D DATA -p PORT -c listen_addresses=127.0.0.1` with password authentication
 * (scram-sha-256) for the role `mtlskit`, which owns the database `mtlskit`. Nothing listens
 * beyond 127.0.0.1; the unix socket is in the cluster's own folder.
 *
 * The handle can stop the server gracefully, kill -9 it, and start it again on the same port and
 * data (a restart mid-issuance), and run SQL as the superuser over the unix socket (psql).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";

/** pgBin returns the absolute path of a PostgreSQL server tool (newest installed major), or throws saying how to install it. */
export function pgBin(tool: string): string {
  const root = "/usr/lib/postgresql";
  const majors = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+$/.test(v))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  for (const v of majors) {
    const p = path.join(root, v, "bin", tool);
    if (existsSync(p)) return p;
  }
  throw new Error(
    `postgres: ${tool} is not installed; run \`sudo bash scripts/install-interop.sh\` (installs Debian's postgresql)`,
  );
}

/** PgOptions configure startPostgres. */
export interface PgOptions {
  /** fsync: keep PostgreSQL's fsync on (benchmarks). Default: false: tests survive kill -9 of postgres without it (synchronous_commit stays on, so a COMMIT's WAL is in the OS, which keeps the pages), and run faster. */
  fsync?: boolean;
  /** maxConnections: postgres's max_connections. Default: 100. */
  maxConnections?: number;
}

/** Pg is a running throw-away cluster. */
export interface Pg {
  /** url: `postgres://mtlskit:PASSWORD@127.0.0.1:PORT/mtlskit`, what `serve --ledger` takes. */
  url: string;
  port: number;
  password: string;
  /** admin runs SQL as the superuser over the unix socket and returns psql's unaligned, tuples-only output; throws on error. */
  admin(sql: string): string;
  /** adminDb is admin in another database of the cluster (one a test created). */
  adminDb(db: string, sql: string): string;
  /** stop shuts the server down ("fast": sessions rolled back, checkpoint) and waits for it. */
  stop(): Promise<void>;
  /** kill sends SIGKILL to the backends and the postmaster and waits for them: a crash (restart recovers from the WAL). */
  kill(): Promise<void>;
  /** start starts it again on the same port and data (after stop or kill). */
  start(): Promise<void>;
  /** running: whether the server process is alive. */
  readonly running: boolean;
  /** pid: the postmaster's process id while it runs (its backends are its children: a benchmark counts their CPU). */
  readonly pid: number | undefined;
  /** destroy stops the server (if running) and removes the cluster's directory. */
  destroy(): Promise<void>;
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => {
    const r = spawnSync("id", [flag, "postgres"], { encoding: "utf8" });
    if (r.status !== 0) throw new Error("postgres: the postgres system user is missing (apt-get install postgresql)");
    return Number(r.stdout.trim());
  };
  return { uid: id("-u"), gid: id("-g") };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** childrenOf lists the pids whose parent is `pid` (from /proc: the postmaster's backends and workers). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** alive: the process exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** startPostgres makes and starts a throw-away cluster; call destroy() when done (an `after` hook). */
export async function startPostgres(opts: PgOptions = {}): Promise<Pg> {
  const user = postgresUser();
  const work = mkdtempSync(path.join(tmpdir(), "mtlskit-pg-"));
  chmodSync(work, 0o711);
  const own = (p: string) => {
    if (user) chownSync(p, user.uid, user.gid);
    return p;
  };
  const data = path.join(work, "data");
  const sock = path.join(work, "sock");
  for (const dir of [data, sock]) {
    mkdirSync(dir, { mode: 0o700 });
    own(dir);
  }
  const password = `pw${Math.random().toString(36).slice(2)}${Date.now().toString(36)}`;
  const pwfile = path.join(work, "pwfile");
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  own(pwfile);
  const asPg = { ...(user ?? {}), cwd: work, env: { ...process.env, HOME: work, LC_ALL: "C" } };
  const init = spawnSync(
    pgBin("initdb"),
    [
      "-D",
      data,
      "-U",
      "postgres",
      "-E",
      "UTF8",
      "--locale=C",
      "--no-sync",
      "--auth-local=peer",
      "--auth-host=scram-sha-256",
      "--pwfile",
      pwfile,
    ],
    { ...asPg, encoding: "utf8", timeout: 120_000 },
  );
  if (init.status !== 0) throw new Error(`postgres: initdb failed:\n${init.stdout}\n${init.stderr}`);
  rmSync(pwfile);
  writeFileSync(path.join(data, "pg_hba.conf"), "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\n");
  const port = await freePort();
  let child: ChildProcess | undefined;
  let exited: Promise<void> | undefined;
  let log = "";

  const psql = (sql: string, db = "postgres") => {
    const r = spawnSync(
      pgBin("psql"),
      [
        "-X",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        sock,
        "-p",
        String(port),
        "-U",
        "postgres",
        "-d",
        db,
        "-c",
        sql,
      ],
      { ...asPg, encoding: "utf8", timeout: 30_000, maxBuffer: 256 * 1024 * 1024 },
    );
    return r;
  };

  const start = async () => {
    if (child && child.exitCode === null && child.signalCode === null) return;
    log = "";
    const c = spawn(
      pgBin("postgres"),
      [
        "-D",
        data,
        "-k",
        sock,
        "-p",
        String(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        `fsync=${opts.fsync ? "on" : "off"}`,
        // Always on: a COMMIT returns once its WAL is written to the OS, which keeps it across a
        // kill -9 of postgres even with fsync off (off, the last commits are lost on a kill: a
        // migration's tables vanished in the kill test).
        "-c",
        "synchronous_commit=on",
        "-c",
        `max_connections=${opts.maxConnections ?? 100}`,
        "-c",
        "shared_buffers=32MB",
      ],
      { ...asPg, stdio: ["ignore", "pipe", "pipe"] },
    );
    child = c;
    const keep = (b: Buffer) => {
      log = (log + b.toString()).slice(-20_000);
    };
    c.stdout?.on("data", keep);
    c.stderr?.on("data", keep);
    exited = new Promise((r) => c.once("exit", () => r()));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`postgres: exited at start:\n${log}`);
      if (psql("select 1").status === 0) break;
      if (Date.now() > deadline) throw new Error(`postgres: not accepting connections after 60 s:\n${log}`);
      await sleep(100);
    }
  };

  const waitExit = async (signal: NodeJS.Signals) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    // A crash takes the backends with it: after SIGKILL of the postmaster alone, a backend still
    // holding a client's connection could answer one more statement before it noticed (a test saw a
    // record() succeed "after the kill"). Its children are killed first, then the postmaster.
    const backends = signal === "SIGKILL" && c.pid !== undefined ? childrenOf(c.pid) : [];
    for (const pid of backends) killQuietly(pid);
    c.kill(signal);
    const timer = setTimeout(() => c.kill("SIGKILL"), 30_000);
    await exited;
    clearTimeout(timer);
    // Bounded: the killed backends are gone before the caller goes on (start() reuses the port).
    for (let i = 0; i < 100 && backends.some(alive); i++) await sleep(50);
  };

  await start();
  const setup = psql(`create role mtlskit login password '${password}'`);
  if (setup.status !== 0) throw new Error(`postgres: create role failed: ${setup.stderr}`);
  const db = psql("create database mtlskit owner mtlskit");
  if (db.status !== 0) throw new Error(`postgres: create database failed: ${db.stderr}`);

  return {
    url: `postgres://mtlskit:${password}@127.0.0.1:${port}/mtlskit`,
    port,
    password,
    admin(sql: string) {
      const r = psql(sql, "mtlskit");
      if (r.status !== 0) throw new Error(`postgres: ${sql}: ${r.stderr}`);
      return r.stdout.trim();
    },
    adminDb(db: string, sql: string) {
      const r = psql(sql, db);
      if (r.status !== 0) throw new Error(`postgres: ${sql}: ${r.stderr}`);
      return r.stdout.trim();
    },
    stop: () => waitExit("SIGINT"),
    kill: () => waitExit("SIGKILL"),
    start,
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
    get pid() {
      return child !== undefined && child.exitCode === null && child.signalCode === null ? child.pid : undefined;
    },
    async destroy() {
      await waitExit("SIGINT");
      rmSync(work, { recursive: true, force: true });
    },
  };
}
