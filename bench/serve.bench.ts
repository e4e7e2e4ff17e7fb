/**
 * `npm run bench:serve`: the online CA's issuance throughput and latency (`mtlskit serve`: enroll
 * and renew) against Debian's `cfssl serve` signing the same CSRs, in the same run (issue 14).
 *
 * One PKI directory made by `mtlskit apply` (an ECDSA P-256 CA; a csr service `web`, dual; a
 * server certificate for cfssl's TLS): both CAs sign with the same key. Requests are pre-made:
 * a pool of P-256 CSRs (what `mtlskit csr --service web` makes), and for enroll one bootstrap
 * token per request, created in the ledger before serve starts. Both servers are child processes
 * on 127.0.0.1; the load generator is this process: --concurrency loops, each waiting for its
 * answer before the next request, over keep-alive HTTPS connections (TLS 1.3, verified against
 * ca/ca.pem), for --seconds per target and round. The targets, each round in a rotated order so
 * drift in the machine's speed spreads over all:
 *
 *   cfssl    POST /api/v1/cfssl/sign {"certificate_request": CSR}; cfssl 1.2 over TLS
 *            (-tls-cert/-tls-key), a signing profile with a 1 h expiry, -loglevel 2 (warnings: less
 *            logging than its default, the stronger baseline). It records nothing (no -db-config),
 *            and copies the CSR's DNS/IP SANs but not its URI SAN (cfssl 1.2 predates Go's URI SANs):
 *            it does less per certificate than mtlskit.
 *   enroll   POST /v1/enroll {"service","token","csr"}: a token checked, the CSR judged by the
 *            manifest's policy, the certificate signed and its row (consuming the token) committed
 *            to the SQLite ledger, durable (WAL, synchronous=FULL, group commit) before the answer.
 *   renew    POST /v1/renew {"csr"} over mTLS with a certificate each loop enrolled beforehand.
 *
 * Reported per target: certificates/s, p50 and p99 latency, errors (any answer but the success
 * status with a certificate; the first is printed), the server's CPU (its process tree, from
 * /proc, as cores busy) and ms of server CPU per certificate, this process's CPU (the load
 * generator shares the 2 cores), and the 1-minute load average at the end. Then each target's
 * bill on the machine (server cores + load generator cores, of how many), and for each mtlskit
 * target the issue's targets (>= 2,000 certificates/s, p99 <= 50 ms, faster than cfssl) and the
 * rate ratio against cfssl+db (the durable like-for-like peer) with both CPU costs per
 * certificate, each PASS or FAIL as measured. A benchmark, not a test: it exits 0 whatever the
 * numbers, 1 only when it could not measure (a server would not start, cfssl is missing).
 *
 *   npm run bench:serve [-- --seconds 5] [--rounds 2] [--concurrency 16] [--csrs 500]
 *                       [--only cfssl,cfssl-db,enroll,renew] [--tokens N] [--dir DIR] [--workers N[,M]]
 *
 *   --workers N[,M...]  serve's --workers (HTTP worker processes; default: serve's own default).
 *           Several values: one serve each (own PKI copy and ledger), each a target of this run
 *           (`mtlskit enroll w1`, `... w2`). The server CPU counted is the whole process tree:
 *           the primary (the ledger) and its workers.
 *
 *   --only pg,pg-2 (not in the default list: they need PostgreSQL, apt-get install postgresql)
 *           serve with a PostgreSQL ledger (issue 15): a throw-away cluster on loopback with fsync
 *           and synchronous_commit on (test/helpers/postgres.ts, its data in os.tmpdir()), the
 *           enroll load of `enroll` above. `pg`: one replica; `pg-2`: two replicas (the PKI
 *           directory copied, as operators distribute it) on the same database, request i to
 *           replica i % 2. Their server CPU counts every serve process and PostgreSQL's (the
 *           postmaster and its backends): the whole server side on this machine. Run with
 *           `--only enroll,pg,pg-2` to compare SQLite and PostgreSQL in the same run.
 *
 *   --base BIN  also run each serve from another build's bin/mtlskit.js (e.g. the previous commit's,
 *           built with tsconfig.build.json): targets `... base`, measured in the same rounds, so a
 *           change's CPU per certificate is compared on the same machine load.
 *
 *   --profile DIR  run serve with --cpu-prof (written to DIR when serve exits on SIGTERM at the end)
 *           and print the functions that took the most of its CPU (self time; the whole run,
 *           warm-up and start-up included).
 *   --dir   where the PKI directory and the ledgers go. Default: os.tmpdir(). A tmpfs (/dev/shm)
 *           shows what the server does without fsync cost; the run then says so and judges nothing.
 *
 * cfssl: `apt-get install golang-cfssl` (scripts/install-interop.sh installs it).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import type * as http from "node:http";
import { cpus, loadavg, tmpdir } from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { buildPackage, runBuilt } from "../test/helpers/built.ts";
import { type Pg, startPostgres } from "../test/helpers/postgres.ts";
import {
  type Csr,
  exited,
  freePort,
  makeCsrs,
  onlineManifest,
  percentile,
  type Reply,
  requestJson,
  type Served,
  seedLedger,
  startServe,
  type Target,
  trustAgent,
  within,
} from "../test/helpers/serve-load.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    rounds: { type: "string", default: "2" },
    concurrency: { type: "string", default: "16" },
    csrs: { type: "string", default: "500" },
    only: { type: "string", default: "cfssl,cfssl-db,enroll,renew" },
    tokens: { type: "string" },
    dir: { type: "string" },
    profile: { type: "string" },
    workers: { type: "string" },
    base: { type: "string" },
  },
  strict: true,
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const CONCURRENCY = Number(values.concurrency);
const CSRS = Number(values.csrs);
const ONLY = new Set(values.only.split(","));
const WARMUP_SECONDS = 1;
/** TOKENS: one per enroll request; enough for 4,000/s. A loop that finds none left stops, and the run says so. */
const TOKENS = Number(values.tokens ?? Math.ceil(4_000 * (SECONDS * ROUNDS + WARMUP_SECONDS)) + CONCURRENCY);
const TARGET = { rate: 2_000, p99Ms: 50 } as const;

const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim() || 100);

/** treeCpuSeconds is the user + system CPU of process `root` and every descendant still running, from /proc. */
function treeCpuSeconds(root: number): number {
  const stats = new Map<number, { ppid: number; ticks: number }>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    const f = text.slice(text.lastIndexOf(")") + 2).split(" "); // fields from 3 (state) on
    stats.set(Number(name), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) }); // utime 14, stime 15
  }
  let ticks = 0;
  const inTree = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
      if (p === root) return true;
      p = stats.get(p)?.ppid ?? 0;
    }
    return false;
  };
  for (const [pid, s] of stats) if (inTree(pid)) ticks += s.ticks;
  return ticks / CLK_TCK;
}

/** threadCpuSeconds is the user + system CPU of thread `tid` of process `pid` (its main thread: tid = pid), from /proc; 0 once gone. */
function threadCpuSeconds(pid: number, tid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** Load is one target's load: how a loop sends request number i, what counts as a certificate, and the server's pid. */
interface Load {
  name: string;
  pid: number;
  /** morePids: other processes (with their descendants) whose CPU is the server's too: replicas, PostgreSQL. */
  morePids?: number[];
  /** mainThread: `pid` is a single serve, whose main thread (the event loop) is measured apart: one core is its ceiling. */
  mainThread?: boolean;
  send: (i: number) => Promise<Reply> | undefined;
  certificate: (r: Reply) => string | undefined;
}

/** Tally is what a target did over its slices. */
interface Tally {
  count: number;
  errors: number;
  firstError: string | undefined;
  seconds: number;
  serverCpu: number;
  /** mainCpu: the CPU of the server's main thread (Load.mainThread), else 0. */
  mainCpu: number;
  clientCpu: number;
  latencies: number[];
  load1: number;
  sample: string | undefined;
  exhausted: boolean;
}

const tally = (): Tally => ({
  count: 0,
  errors: 0,
  firstError: undefined,
  seconds: 0,
  serverCpu: 0,
  mainCpu: 0,
  clientCpu: 0,
  latencies: [],
  load1: 0,
  sample: undefined,
  exhausted: false,
});

/** drive runs `CONCURRENCY` loops against `l` for `seconds` and adds what they did to `t`. */
async function drive(l: Load, seconds: number, t: Tally): Promise<void> {
  let next = 0;
  const serverCpu = () => [l.pid, ...(l.morePids ?? [])].reduce((sum, pid) => sum + treeCpuSeconds(pid), 0);
  const mainCpu = () => (l.mainThread ? threadCpuSeconds(l.pid, l.pid) : 0);
  const s0 = serverCpu();
  const m0 = mainCpu();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const loop = async () => {
    while (performance.now() < end) {
      const pending = l.send(next++);
      if (pending === undefined) {
        t.exhausted = true;
        return;
      }
      const r = await pending;
      const cert = l.certificate(r);
      if (cert === undefined) {
        t.errors++;
        t.firstError ??= `${r.status} ${r.error?.message ?? JSON.stringify(r.body).slice(0, 300)}`;
        continue;
      }
      t.count++;
      t.latencies.push(r.ms);
      t.sample ??= cert;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, loop));
  t.seconds += (performance.now() - t0) / 1000;
  const cu = process.cpuUsage(c0);
  t.clientCpu += (cu.user + cu.system) / 1e6;
  t.serverCpu += serverCpu() - s0;
  t.mainCpu += mainCpu() - m0;
  t.load1 = loadavg()[0]!;
}

/** CFSSL_SCHEMA: cfssl 1.2's certdb tables for SQLite (its certdb/sqlite/migrations), which `cfssl serve -db-config` writes each signed certificate to. */
const CFSSL_SCHEMA = `CREATE TABLE certificates (
  serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, ca_label blob, status blob NOT NULL,
  reason int, expiry timestamp, revoked_at timestamp, pem blob NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier));
CREATE TABLE ocsp_responses (
  serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, body blob NOT NULL, expiry timestamp,
  PRIMARY KEY(serial_number, authority_key_identifier));`;

/**
 * startCfssl runs `cfssl serve` over TLS with DIR's CA and a 1 h profile, with `db` its certdb in
 * an SQLite file made by the sqlite3 CLI (SQLite's defaults: rollback journal, synchronous=FULL);
 * ready once a sign request succeeds (at most 15 s).
 */
async function startCfssl(
  work: string,
  pki: string,
  csr: Csr,
  db: boolean,
): Promise<{ child: ChildProcess; port: number; target: Target }> {
  const dbArgs: string[] = [];
  if (db) {
    const file = path.join(work, "cfssl-certdb.sqlite");
    const made = spawnSync("sqlite3", [file], { input: CFSSL_SCHEMA, encoding: "utf8" });
    if (made.status !== 0)
      throw new Error(`sqlite3 could not make cfssl's certdb: ${made.error?.message ?? made.stderr}`);
    writeFileSync(path.join(work, "cfssl-db.json"), JSON.stringify({ driver: "sqlite3", data_source: file }));
    dbArgs.push("-db-config", path.join(work, "cfssl-db.json"));
  }
  const config = path.join(work, "cfssl.json");
  writeFileSync(
    config,
    JSON.stringify({
      signing: {
        default: { expiry: "1h", usages: ["digital signature", "server auth", "client auth"] },
      },
    }),
  );
  const port = await freePort();
  const child = spawn(
    "cfssl",
    [
      "serve",
      "-address",
      "127.0.0.1",
      "-port",
      String(port),
      "-ca",
      path.join(pki, "ca", "ca.pem"),
      "-ca-key",
      path.join(pki, "ca", "ca-key.pem"),
      "-config",
      config,
      "-tls-cert",
      path.join(pki, "services", "cfssl", "cert.pem"),
      "-tls-key",
      path.join(pki, "services", "cfssl", "key.pem"),
      "-loglevel",
      "2",
      ...dbArgs,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let tail = "";
  child.stderr?.on("data", (d: Buffer) => void (tail = (tail + d.toString()).slice(-4_000)));
  child.once("error", (e) => void (tail += `\n${e.message}`));
  const target: Target = {
    port,
    agent: trustAgent(path.join(pki, "ca", "ca.pem"), { maxSockets: CONCURRENCY }),
    tls: true,
  };
  const deadline = performance.now() + 15_000;
  for (;;) {
    const r = await requestJson({ ...target, timeoutMs: 2_000 }, "POST", "/api/v1/cfssl/sign", {
      certificate_request: csr.pem,
    });
    if (cfsslCertificate(r) !== undefined) return { child, port, target };
    if (child.exitCode !== null || performance.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(
        `cfssl serve did not sign within 15 s (last: ${r.status} ${r.error?.message ?? JSON.stringify(r.body)}):\n${tail}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** cfsslCertificate is the certificate in a cfssl answer ({"success": true, "result": {"certificate": PEM}}). */
function cfsslCertificate(r: Reply): string | undefined {
  const b = r.body as { success?: boolean; result?: { certificate?: unknown } } | undefined;
  return r.status === 200 && b?.success === true && typeof b.result?.certificate === "string"
    ? b.result.certificate
    : undefined;
}

/** issuedCertificate is the leaf in an mtlskit Issued answer (201), or undefined. */
function issuedCertificate(r: Reply): string | undefined {
  const b = r.body as { certificate?: unknown } | undefined;
  return r.status === 201 && typeof b?.certificate === "string" ? b.certificate : undefined;
}

/** describeSample is a sample certificate's issuer check and SANs, so the report shows both CAs issued what they claim. */
function describeSample(pem: string | undefined, ca: X509Certificate): string {
  if (pem === undefined) return "no certificate";
  const c = new X509Certificate(pem);
  return `${c.checkIssued(ca) && c.verify(ca.publicKey) ? "signed by the CA" : "NOT signed by the CA"}; SANs ${c.subjectAltName ?? "none"}; ${Math.round((Date.parse(c.validTo) - Date.parse(c.validFrom)) / 60_000)} min`;
}

/** createTokens makes `n` enroll tokens for `service` in DIR's ledger before serve starts (seedLedger: made on a tmpfs, copied in). */
function createTokens(pki: string, service: string, n: number): Promise<string[]> {
  return seedLedger(pki, async (ledger) => {
    const now = new Date();
    const tokens: string[] = [];
    for (let i = 0; i < n; i++) tokens.push((await ledger.createToken(service, "enroll", 3_600_000, now)).token);
    return tokens;
  });
}

/** printProfiles prints printProfile for each serve (`pids`) and for every other process that wrote a profile to `dir` during the run (their workers). */
function printProfiles(dir: string, pids: number[], since: number): void {
  for (const pid of pids) printProfile(dir, pid);
  for (const f of readdirSync(dir)) {
    const m = /\.(\d+)\.\d+\.\d+\.cpuprofile$/.exec(f);
    if (m && !pids.includes(Number(m[1])) && statSync(path.join(dir, f)).mtimeMs >= since)
      printProfile(dir, Number(m[1]));
  }
}

/** printProfile prints the top self-time functions of the .cpuprofile node wrote for `pid` in `dir`. */
function printProfile(dir: string, pid: number): void {
  const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile") && f.includes(`.${pid}.`));
  if (file === undefined) {
    console.log(
      `profile: serve (pid ${pid}) wrote no .cpuprofile to ${dir} (it writes one only when it exits on its own)`,
    );
    return;
  }
  type Node = { id: number; callFrame: { functionName: string; url: string; lineNumber: number } };
  const p = JSON.parse(readFileSync(path.join(dir, file), "utf8")) as {
    nodes: Node[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const f = byId.get(id)!.callFrame;
    const key = `${f.functionName || "(anonymous)"} ${f.url === "" ? "(native)" : `${path.basename(f.url)}:${f.lineNumber + 1}`}`;
    self.set(key, (self.get(key) ?? 0) + p.timeDeltas[i]!);
    total += p.timeDeltas[i]!;
  });
  console.log(
    `\nprofile of process ${pid} (${path.join(dir, file)}), self time, top 20 of ${(total / 1e6).toFixed(1)} s:`,
  );
  for (const [key, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 20))
    console.log(`  ${((us / total) * 100).toFixed(1).padStart(5)}%  ${key}`);
}

/** PG_TARGETS: the PostgreSQL targets (--only pg,pg-2) and how many replicas each spreads its load over. */
const PG_TARGETS = [
  ["pg", "enroll pg", 1],
  ["pg-2", "enroll pg x2", 2],
] as const;

/**
 * pgTokens inserts `n` enroll tokens for `service` into the PostgreSQL ledger's tokens table with
 * one SQL statement (the tokens table src/ledger/postgres.ts creates) and
 * returns their printable forms: ids from `base` on, secrets derived from the id (a benchmark's
 * throw-away database; real tokens come from `mtlskit token create`). createToken would be one
 * durable commit per token with fsync on: minutes for the tens of thousands a run needs.
 */
function pgTokens(pg: Pg, service: string, base: number, n: number): string[] {
  pg.admin(
    `insert into tokens (id, kind, service, secret_sha256, created_at, expires_at)
     select lpad(to_hex(i), 16, '0'), 'enroll', '${service}', sha256(convert_to(rpad('s' || to_hex(i), 43, 'x'), 'UTF8')), now(), now() + interval '1 hour'
     from generate_series(${base}, ${base + n - 1}) as i`,
  );
  return Array.from({ length: n }, (_, k) => {
    const hex = (base + k).toString(16);
    return `mtk_${hex.padStart(16, "0")}_${`s${hex}`.padEnd(43, "x")}`;
  });
}

/**
 * startPgLoads starts PostgreSQL (fsync on), the replicas the `wanted` PG_TARGETS need on it (each
 * on its own copy of the PKI directory), and returns their loads; `stop` ends all of it.
 */
async function startPgLoads(o: {
  bin: string;
  manifest: string;
  pki: string;
  wanted: (typeof PG_TARGETS)[number][];
  csrAt: (i: number) => Csr;
  agents: http.Agent[];
}): Promise<{ loads: Load[]; pg: Pg; stop: () => Promise<void> }> {
  const pg = await startPostgres({ fsync: true });
  const replicas: Served[] = [];
  const stop = async () => {
    await Promise.all(replicas.map((r) => r.stop().catch(() => {})));
    await pg.destroy();
  };
  try {
    const most = Math.max(...o.wanted.map(([, , n]) => n));
    for (let k = 0; k < most; k++) {
      const pki = k === 0 ? o.pki : `${o.pki}-replica${k + 1}`;
      if (k > 0) cpSync(o.pki, pki, { recursive: true });
      // serve applies the schema on start; the first replica makes it before the others start.
      replicas.push(
        await startServe(o.bin, { manifest: o.manifest, pki, args: ["--ledger", pg.url], readyMs: 60_000 }),
      );
    }
    const caFile = path.join(o.pki, "ca", "ca.pem");
    const targets = replicas.map((r) => {
      const target: Target = { port: r.port, agent: trustAgent(caFile, { maxSockets: CONCURRENCY }), tls: true };
      o.agents.push(target.agent);
      return target;
    });
    const perTarget = Math.ceil(2_500 * (SECONDS * ROUNDS + WARMUP_SECONDS)) + CONCURRENCY;
    const loads = o.wanted.map(([, name, n], w): Load => {
      const tokens = pgTokens(pg, "web", 1 + w * perTarget, perTarget);
      let used = 0;
      return {
        name,
        pid: replicas[0]!.child.pid!,
        morePids: [...replicas.slice(1, n).map((r) => r.child.pid!), pg.pid!],
        send: (i) => {
          const token = tokens[used++];
          return token === undefined
            ? undefined
            : requestJson(targets[i % n]!, "POST", "/v1/enroll", { service: "web", token, csr: o.csrAt(i).pem });
        },
        certificate: issuedCertificate,
      };
    });
    return { loads, pg, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** printPgComparison sets the PostgreSQL targets against the SQLite ledger's enroll and one replica against two, measured in this run. */
function printPgComparison(loads: Load[], totals: Map<Load, Tally>): void {
  const byName = (name: string) => {
    const l = loads.find((x) => x.name === name);
    return l === undefined ? undefined : totals.get(l);
  };
  const rate = (t: Tally) => t.count / t.seconds;
  const p99 = (t: Tally) => percentile(Float64Array.from(t.latencies).sort(), 99);
  const sqlite = byName("mtlskit enroll");
  const one = byName("enroll pg");
  const two = byName("enroll pg x2");
  const pairs: [string, Tally | undefined, string, Tally | undefined][] = [
    ["enroll pg", one, "SQLite enroll", sqlite],
    ["enroll pg x2", two, "SQLite enroll", sqlite],
    ["enroll pg x2", two, "enroll pg", one],
  ];
  const lines = pairs
    .filter(([, a, , b]) => a !== undefined && b !== undefined && a.count > 0 && b.count > 0)
    .map(
      ([an, a, bn, b]) =>
        `${an} vs ${bn}: ${(rate(a!) / rate(b!)).toFixed(2)}x the rate, p99 ${p99(a!).toFixed(1)} vs ${p99(b!).toFixed(1)} ms, ${((a!.serverCpu / a!.count) * 1000).toFixed(3)} vs ${((b!.serverCpu / b!.count) * 1000).toFixed(3)} ms server CPU per certificate`,
    );
  if (lines.length === 0) return;
  console.log(`\n${lines.join("\n")}`);
  console.log(
    `(${cpus().length} CPUs shared by the load generator, every serve and PostgreSQL: two replicas on one machine add no cores; load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")} at the end)`,
  );
}

async function main(): Promise<number> {
  const started = Date.now();
  if (spawnSync("cfssl", ["version"]).status !== 0 && ONLY.has("cfssl")) {
    console.error("bench:serve: cfssl is not installed: apt-get install golang-cfssl (or scripts/install-interop.sh)");
    return 1;
  }
  const work = mkdtempSync(path.join(values.dir ?? tmpdir(), "mtlskit-serve-bench-"));
  const fsType = spawnSync("stat", ["-f", "-c", "%T", work], { encoding: "utf8" }).stdout.trim();
  const durable = !["tmpfs", "ramfs"].includes(fsType);
  const children: ChildProcess[] = [];
  const servedAll: Served[] = [];
  let stopPg: (() => Promise<void>) | undefined;
  const agents: http.Agent[] = [];
  try {
    const bin = buildPackage();
    const pki = path.join(work, "pki");
    const manifest = path.join(work, "mtlskit.yaml");
    writeFileSync(
      manifest,
      onlineManifest({
        cluster: "bench",
        services: ["web"],
        extra: ["  cfssl: { usage: server, addresses: [127.0.0.1, localhost] }"],
      }),
    );
    const applied = await runBuilt(bin, ["apply", "-f", manifest, "--pki", pki]);
    if (applied.code !== 0) throw new Error(`mtlskit apply failed: ${applied.err}`);
    const ca = new X509Certificate(readFileSync(path.join(pki, "ca", "ca.pem")));
    const csrs = await makeCsrs(manifest, "web", CSRS);
    const csrAt = (i: number) => csrs[i % csrs.length]!;

    const loads: Load[] = [];
    for (const [key, name, db] of [
      ["cfssl", "cfssl", false],
      ["cfssl-db", "cfssl+db", true],
    ] as const) {
      if (!ONLY.has(key)) continue;
      if (db && spawnSync("sqlite3", ["-version"]).status !== 0) {
        console.log("cfssl+db: not measured: the sqlite3 CLI (Debian's sqlite3) is needed to make cfssl's certdb");
        continue;
      }
      const cfssl = await startCfssl(work, pki, csrs[0]!, db);
      children.push(cfssl.child);
      agents.push(cfssl.target.agent);
      loads.push({
        name,
        pid: cfssl.child.pid!,
        send: (i) => requestJson(cfssl.target, "POST", "/api/v1/cfssl/sign", { certificate_request: csrAt(i).pem }),
        certificate: cfsslCertificate,
      });
    }
    // One serve per --workers value (`--workers 1,2`: both measured in this run, each a target),
    // each on its own copy of the PKI directory (its own ledger: two servers on one SQLite file
    // would measure its write lock), the tokens made once and copied.
    const workerCounts = (values.workers ?? "").split(",").filter((w) => w !== "");
    // --base BIN: each serve again from another build (an A/B of two commits in one run, rounds interleaved).
    const variants: { w: string | undefined; bin: string; tag: string }[] = (
      workerCounts.length === 0 ? [undefined] : workerCounts
    ).flatMap((w) => [
      { w, bin, tag: "" },
      ...(values.base === undefined ? [] : [{ w, bin: path.resolve(values.base), tag: " base" }]),
    ]);
    const suffix = (v: { w: string | undefined; tag: string }) => (workerCounts.length > 1 ? ` w${v.w}` : "") + v.tag;
    const tokens =
      ONLY.has("enroll") || ONLY.has("renew")
        ? await createTokens(pki, "web", ONLY.has("enroll") ? TOKENS : CONCURRENCY)
        : [];
    const copyOf = (n: number) => (n === 0 ? pki : path.join(work, `pki-${n}`));
    for (let n = 1; n < variants.length; n++) cpSync(pki, copyOf(n), { recursive: true }); // before any serve uses a token
    for (const [n, variant] of variants.entries()) {
      if (!ONLY.has("enroll") && !ONLY.has("renew")) break;
      const { w } = variant;
      // One process (no --workers, or 1): its main thread answers every request; with more, the workers do.
      const single = w === undefined || w === "1";
      const dir = copyOf(n);
      const one = await startServe(variant.bin, {
        manifest,
        pki: dir,
        ...(w === undefined ? {} : { args: ["--workers", w] }),
        ...(values.profile === undefined
          ? {}
          : { nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${path.resolve(values.profile)}`] }),
      });
      servedAll.push(one);
      const caFile = path.join(dir, "ca", "ca.pem");
      const target: Target = { port: one.port, agent: trustAgent(caFile, { maxSockets: CONCURRENCY }), tls: true };
      agents.push(target.agent);
      let used = 0;
      const enroll = (i: number): Promise<Reply> | undefined => {
        const token = tokens[used++];
        return token === undefined
          ? undefined
          : requestJson(target, "POST", "/v1/enroll", { service: "web", token, csr: csrAt(i).pem });
      };
      if (ONLY.has("renew")) {
        // One identity per loop: loop k renews with the certificate enrolled here with CSR k's key.
        const renewers: Target[] = [];
        for (let k = 0; k < CONCURRENCY; k++) {
          const r = await enroll(k)!;
          const cert = issuedCertificate(r);
          if (cert === undefined)
            throw new Error(`enroll for the renew loops failed: ${r.status} ${JSON.stringify(r.body)}`);
          const chain = (r.body as { chain: string }).chain;
          const agent = trustAgent(caFile, { cert: chain, key: csrAt(k).keyPem, maxSockets: 1 });
          agents.push(agent);
          renewers.push({ port: one.port, agent, tls: true });
        }
        loads.push({
          name: `mtlskit renew${suffix(variant)}`,
          pid: one.child.pid!,
          mainThread: single,
          send: (i) => requestJson(renewers[i % CONCURRENCY]!, "POST", "/v1/renew", { csr: csrAt(i).pem }),
          certificate: issuedCertificate,
        });
      }
      if (ONLY.has("enroll"))
        loads.push({
          name: `mtlskit enroll${suffix(variant)}`,
          pid: one.child.pid!,
          mainThread: single,
          send: enroll,
          certificate: issuedCertificate,
        });
    }

    const pgWanted = PG_TARGETS.filter(([key]) => ONLY.has(key));
    if (pgWanted.length > 0) {
      const pgStarted = await startPgLoads({ bin, manifest, pki, wanted: pgWanted, csrAt, agents });
      stopPg = pgStarted.stop;
      loads.push(...pgStarted.loads);
      const pgFs = spawnSync("stat", ["-f", "-c", "%T", tmpdir()], { encoding: "utf8" }).stdout.trim();
      console.log(
        `PostgreSQL ledger: a throw-away cluster on 127.0.0.1, fsync=on, synchronous_commit=on, data in ${tmpdir()} on ${pgFs || "?"}; server CPU of its targets counts serve and postgres`,
      );
    }

    console.log(
      `serve bench: ${ROUNDS} rounds x ${SECONDS} s per target, ${CONCURRENCY} concurrent keep-alive HTTPS connections, ${csrs.length} P-256 CSRs; mtlskit serve --workers ${values.workers ?? "not given (its default: 1)"}; node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? "?"}), load average ${loadavg()[0]!.toFixed(2)} at start`,
    );
    console.log(
      `ledgers (mtlskit's, cfssl's certdb) in ${work} on ${fsType || "?"}: ${durable ? "durable (fsync reaches the disk)" : "NOT durable: a tmpfs, fsync costs nothing; the targets below are judged only on a disk"}`,
    );
    for (const l of loads) await drive(l, WARMUP_SECONDS, tally()); // warm-up: JIT, connections
    const totals = new Map<Load, Tally>(loads.map((l) => [l, tally()]));
    for (let r = 0; r < ROUNDS; r++) {
      const order = loads.map((_, i) => loads[(i + r) % loads.length]!);
      const line: string[] = [];
      for (const l of order) {
        const t = tally();
        await drive(l, SECONDS, t);
        const sum = totals.get(l)!;
        sum.count += t.count;
        sum.errors += t.errors;
        sum.firstError ??= t.firstError;
        sum.seconds += t.seconds;
        sum.serverCpu += t.serverCpu;
        sum.mainCpu += t.mainCpu;
        sum.clientCpu += t.clientCpu;
        sum.latencies.push(...t.latencies);
        sum.load1 = t.load1;
        sum.sample ??= t.sample;
        sum.exhausted ||= t.exhausted;
        line.push(`${l.name} ${(t.count / t.seconds).toFixed(0)}/s`);
      }
      console.log(`  round ${r + 1}: ${line.join(", ")}`);
    }

    const rate = (t: Tally) => t.count / t.seconds;
    console.log("");
    console.log(
      `${"target".padEnd(15)} ${"certs/s".padStart(8)} ${"p50 ms".padStart(7)} ${"p99 ms".padStart(7)} ${"errors".padStart(7)} ${"server CPU".padStart(11)} ${"ms CPU/cert".padStart(11)} ${"main ms/cert".padStart(12)} ${"client CPU".padStart(11)} ${"load1".padStart(6)}`,
    );
    for (const l of loads) {
      const t = totals.get(l)!;
      const sorted = Float64Array.from(t.latencies).sort();
      console.log(
        `${l.name.padEnd(15)} ${rate(t).toFixed(0).padStart(8)} ${percentile(sorted, 50).toFixed(1).padStart(7)} ${percentile(sorted, 99).toFixed(1).padStart(7)} ${String(t.errors).padStart(7)} ${`${(t.serverCpu / t.seconds).toFixed(2)} cores`.padStart(11)} ${((t.serverCpu / t.count) * 1000).toFixed(3).padStart(11)} ${(l.mainThread ? ((t.mainCpu / t.count) * 1000).toFixed(3) : "-").padStart(12)} ${`${(t.clientCpu / t.seconds).toFixed(2)} cores`.padStart(11)} ${t.load1.toFixed(2).padStart(6)}`,
      );
    }
    console.log("");
    for (const l of loads) {
      const t = totals.get(l)!;
      console.log(`${l.name}: sample certificate ${describeSample(t.sample, ca)}`);
      if (t.firstError !== undefined) console.log(`${l.name}: first error: ${t.firstError}`);
      if (t.exhausted) console.log(`${l.name}: ran out of pre-made tokens (${TOKENS}): raise --tokens`);
    }
    const cfssl = loads.find((l) => l.name === "cfssl");
    const cfsslDb = loads.find((l) => l.name === "cfssl+db");
    const mine = loads.filter((l) => !l.name.startsWith("cfssl"));
    const cpuPerCert = (t: Tally) => `${((t.serverCpu / t.count) * 1000).toFixed(3)} ms`;
    const verdict = (ok: boolean) => (ok ? "PASS" : "FAIL");
    // Each target's whole bill on this machine: the server's cores and the load generator's, of cpus().length.
    console.log("");
    for (const l of loads) {
      const t = totals.get(l)!;
      console.log(
        `${l.name}: server ${(t.serverCpu / t.seconds).toFixed(2)} + load generator ${(t.clientCpu / t.seconds).toFixed(2)} = ${((t.serverCpu + t.clientCpu) / t.seconds).toFixed(2)} of ${cpus().length} cores; server CPU per certificate ${t.count > 0 ? cpuPerCert(t) : "n/a"}, load generator's ${t.count > 0 ? `${((t.clientCpu / t.count) * 1000).toFixed(3)} ms` : "n/a"}`,
      );
    }
    if (mine.length > 0) console.log("");
    for (const l of mine) {
      const t = totals.get(l)!;
      const p99 = percentile(Float64Array.from(t.latencies).sort(), 99);
      // Against each cfssl measured: the rate ratio (the issue's "faster than cfssl": PASS when > 1) and both CPU costs.
      const vs = (peer: Load | undefined, label: string) => {
        if (peer === undefined) return `${label}: not measured`;
        const p = totals.get(peer)!;
        return `${(rate(t) / rate(p)).toFixed(2)}x ${label}'s rate (${rate(p).toFixed(0)}/s): ${verdict(rate(t) > rate(p))}, CPU per certificate ${cpuPerCert(t)} vs ${cpuPerCert(p)}`;
      };
      if (!durable) {
        console.log(
          `${l.name}: ${rate(t).toFixed(0)}/s, p99 ${p99.toFixed(1)} ms: not judged (the ledger is not durable here); ${vs(cfssl, "cfssl")}; ${vs(cfsslDb, "cfssl+db")}`,
        );
        continue;
      }
      console.log(
        `${l.name}: ${rate(t).toFixed(0)}/s >= ${TARGET.rate}/s: ${verdict(rate(t) >= TARGET.rate)}; p99 ${p99.toFixed(1)} ms <= ${TARGET.p99Ms} ms: ${verdict(p99 <= TARGET.p99Ms)}; errors ${t.errors}: ${verdict(t.errors === 0)}; ${vs(cfssl, "cfssl")}; ${vs(cfsslDb, "cfssl+db")}`,
      );
    }
    console.log(
      `(load average ${loadavg()
        .map((x) => x.toFixed(2))
        .join(
          " ",
        )} at the end, on ${cpus().length} CPUs${loadavg()[0]! > cpus().length ? ": other processes shared these cores, and every rate above is lower for it" : ""})`,
    );
    printPgComparison(loads, totals);
    return 0;
  } finally {
    for (const a of agents) a.destroy();
    for (const c of children) {
      c.kill("SIGKILL");
      await within(exited(c), 10_000, "cfssl after SIGKILL").catch(() => {});
    }
    for (const one of servedAll) await one.stop().catch(() => {});
    await stopPg?.().catch(() => {});
    if (values.profile !== undefined)
      printProfiles(
        path.resolve(values.profile),
        servedAll.map((one) => one.child.pid!),
        started,
      );
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`bench:serve could not measure: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
