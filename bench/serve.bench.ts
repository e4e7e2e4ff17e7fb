/**
 * `npm run bench:serve`: the online CA's issuance throughput and latency (`mtlskit serve`: enroll
 * and renew) against Debian's `cfssl serve` signing the same CSRs, and against a floor (a bare
 * Node CA), in the same run (issue 14).
 *
 * One PKI directory made by `mtlskit apply` (an ECDSA P-256 CA; a csr service `web`, dual; a
 * server certificate for cfssl's TLS): every CA signs with the same key. Requests are pre-made:
 * a pool of P-256 CSRs (what `mtlskit csr --service web` makes), and for enroll one bootstrap
 * token per request, created in the ledger before serve starts. Every server is a child process
 * on 127.0.0.1; the load generator is this process, the same client for every target
 * (bench/serve-client.ts): --concurrency loops, each with its own keep-alive TLS 1.3 connection
 * (node:tls, verified against ca/ca.pem; renew's presenting the loop's certificate), each waiting
 * for its answer before the next request, the requests pre-built HTTP/1.1 bytes (the JSON body a
 * prepared CSR string plus the token), the answers read by a minimal parser. An answer counts as
 * a certificate by its status and a PEM certificate in its body; each slice's first answer and
 * one in 64 are checked in full (JSON parsed, the certificate decoded, signed by the CA, for the
 * CSR's key), so a wrong answer still counts as an error. --seconds per target and round; the
 * targets, each round in a rotated order so drift in the machine's speed spreads over all:
 *
 *   cfssl    POST /api/v1/cfssl/sign {"certificate_request": CSR}; cfssl 1.2 over TLS
 *            (-tls-cert/-tls-key), a signing profile with a 1 h expiry, -loglevel 2 (warnings: less
 *            logging than its default, the stronger baseline). It records nothing (no -db-config),
 *            and copies the CSR's DNS/IP SANs but not its URI SAN (cfssl 1.2 predates Go's URI SANs):
 *            it does less per certificate than mtlskit.
 *   cfssl-db the same writing each certificate to its SQLite certdb (`cfssl+db`).
 *   floor    bench/serve-floor.ts: a bare node:https server doing only what any online CA must per
 *            certificate (JSON body, the CSR's PEM decoded, its key imported as a JWK, its signature
 *            verified, a certificate signed from a fixed template, JSON answered): no policy, no
 *            ledger, no framework. One process, its crypto in libuv's thread pool (its faster form
 *            for one process). `floor-2`: two processes on one port (node:cluster), crypto on their
 *            event loops (their faster form). The best of them is the ceiling any Node online CA
 *            reaches on this machine with this client; opt-in `floor-sync` and `floor-2-async` are
 *            the other forms.
 *   enroll   POST /v1/enroll {"service","token","csr"}: a token checked, the CSR judged by the
 *            manifest's policy, the certificate signed and its row (consuming the token) committed
 *            to the SQLite ledger, durable (WAL, synchronous=FULL, group commit) before the answer.
 *   renew    POST /v1/renew {"csr"} over mTLS with a certificate each loop enrolled beforehand.
 *
 * Reported per target: certificates/s, p50 and p99 latency, errors (any answer but the success
 * status with a certificate, or a sampled one that fails the full check; the first is printed),
 * the server's CPU (its process tree, from /proc, as cores busy) and ms of server CPU per
 * certificate, this process's CPU (the load generator shares the 2 cores) as cores and ms per
 * certificate, and the 1-minute load average at the end; how many answers were checked in full,
 * how many TLS connections were made (--concurrency while keep-alive holds) and whether any answer
 * came chunked. Then each target's bill on the machine (server cores + load generator cores, of
 * how many); whether each floor reaches 2,000/s and beats cfssl; and for each mtlskit target the
 * issue's targets (>= 2,000 certificates/s, p99 <= 50 ms, faster than cfssl) and the rate ratio
 * against cfssl+db (the durable like-for-like peer) with both CPU costs per certificate, each PASS
 * or FAIL as measured, and its rate as a fraction of the best floor's. A benchmark, not a test: it
 * exits 0 whatever the numbers, 1 only when it could not measure (a server would not start, cfssl
 * is missing).
 *
 *   npm run bench:serve [-- --seconds 5] [--rounds 2] [--concurrency 16] [--csrs 500]
 *                       [--only cfssl,cfssl-db,floor,floor-2,enroll,renew] [--tokens N] [--dir DIR]
 *                       [--workers N[,M]] [--signer-threads N[,M]] [--client-ab]
 *
 *   --client-ab  every target also driven by the node:https client the bench used before
 *           serve-client.ts (test/helpers/serve-load.ts's requestJson over keep-alive https.Agents,
 *           every answer parsed), as `NAME/https`, in the same rounds: the two clients' CPU per
 *           certificate, rate and p99 side by side, target by target.
 *
 *   --workers N[,M...]  serve's --workers (HTTP worker processes; default: serve's own default).
 *           Several values: one serve each (own PKI copy and ledger), each a target of this run
 *           (`mtlskit enroll w1`, `... w2`). The server CPU counted is the whole process tree:
 *           the primary (the ledger) and its workers.
 *
 *   --signer-threads N[,M...]  serve's --signer-threads (0: sign on the event loop; default: serve's
 *           own default). Several values: one serve each, as --workers (`mtlskit enroll s1`, `... s2`).
 *
 *   --only pg,pg-2 (not in the default list: they need PostgreSQL, apt-get install postgresql)
 *           serve with a PostgreSQL ledger (issue 15): a throw-away cluster on loopback with fsync
 *           and synchronous_commit on (test/helpers/postgres.ts, its data in os.tmpdir()), the
 *           enroll load of `enroll` above. `pg`: one replica; `pg-2`: two replicas (the PKI
 *           directory copied, as operators distribute it) on the same database, loop k's connection
 *           to replica k % 2. Their server CPU counts every serve process and PostgreSQL's (the
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
import { createPublicKey, X509Certificate } from "node:crypto";
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
  requestJson,
  type Served,
  seedLedger,
  startServe,
  type Target,
  trustAgent,
  within,
} from "../test/helpers/serve-load.ts";
import { type Answer, LeanConnection } from "./serve-client.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    rounds: { type: "string", default: "2" },
    concurrency: { type: "string", default: "16" },
    csrs: { type: "string", default: "500" },
    only: { type: "string", default: "cfssl,cfssl-db,floor,floor-2,enroll,renew" },
    "client-ab": { type: "boolean", default: false },
    tokens: { type: "string" },
    dir: { type: "string" },
    profile: { type: "string" },
    workers: { type: "string" },
    "signer-threads": { type: "string" },
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
/** CLIENTS: how many clients drive each target (2 with --client-ab: lean and node:https). */
const CLIENTS = values["client-ab"] ? 2 : 1;
const TOKENS = Number(values.tokens ?? Math.ceil(4_000 * (SECONDS * ROUNDS + WARMUP_SECONDS) * CLIENTS) + CONCURRENCY);
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

/** Load is one target's load: what request number i is, what counts as a certificate, where each loop connects, and the server's pid. */
interface Load {
  name: string;
  pid: number;
  /** morePids: other processes (with their descendants) whose CPU is the server's too: replicas, PostgreSQL. */
  morePids?: number[];
  /** mainThread: `pid` is a single serve, whose main thread (the event loop) is measured apart: one core is its ceiling. */
  mainThread?: boolean;
  route: string;
  /** body: request i's JSON text (ASCII), built from prepared pieces; undefined when no token is left. */
  body: (i: number) => string | undefined;
  /** status: the success status (201 mtlskit and the floor, 200 cfssl). */
  status: number;
  /** extract: the certificate's PEM in a parsed answer (the sample check), or undefined. */
  extract: (json: unknown) => string | undefined;
  /** connection: loop k's connection (lean client), made once. */
  connection: (k: number) => LeanConnection;
  /** target: loop k's keep-alive https.Agent target (the node:https client: --client-ab). */
  target: (k: number) => Target;
  /** client: which client drives this load: `lean` (serve-client.ts) or `https` (serve-load.ts's requestJson). */
  client: "lean" | "https";
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
  /** checked: answers fully checked (JSON parsed, the certificate decoded and verified): the first and one in SAMPLE_EVERY. */
  checked: number;
  /** connections: TLS connections the lean client made for this target so far (CONCURRENCY while keep-alive holds). */
  connections: number;
  /** chunked: answers that came with chunked encoding so far (the others had a Content-Length). */
  chunked: number;
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
  checked: 0,
  connections: 0,
  chunked: 0,
  exhausted: false,
});

/** SAMPLE_EVERY: one answer in this many (and each slice's first) is checked in full; the others by status and a PEM in the body. */
const SAMPLE_EVERY = 64;
const PEM_BEGIN = Buffer.from("-----BEGIN CERTIFICATE-----");

/** Sampling is what a full check of an answer needs: the CA, and the SubjectPublicKeyInfo of request i's key. */
interface Sampling {
  ca: X509Certificate;
  spkiOf: (i: number) => Buffer;
}

/**
 * fullCheck is the sample check: the body parsed as JSON, the certificate taken from it, decoded,
 * signed by the CA and for the key of the CSR sent; its PEM, or why not (a wrong answer is caught
 * even though most answers are judged by their status and a PEM in the body).
 */
function fullCheck(l: Load, a: Answer, i: number, s: Sampling): { pem: string } | { error: string } {
  let json: unknown;
  try {
    json = JSON.parse(a.body.toString());
  } catch {
    return { error: `${a.status} not JSON: ${a.body.toString().slice(0, 300)}` };
  }
  const pem = l.extract(json);
  if (pem === undefined) return { error: `${a.status} no certificate in ${a.body.toString().slice(0, 300)}` };
  let c: X509Certificate;
  try {
    c = new X509Certificate(pem);
  } catch (e) {
    return { error: `${a.status} a certificate that does not decode: ${(e as Error).message}` };
  }
  if (!c.checkIssued(s.ca) || !c.verify(s.ca.publicKey)) return { error: "a certificate not signed by the CA" };
  if (!c.publicKey.export({ type: "spki", format: "der" }).equals(s.spkiOf(i)))
    return { error: "a certificate for another key than the CSR's" };
  return { pem };
}

/**
 * drive runs `CONCURRENCY` loops against `l` for `seconds` and adds what they did to `t`. Loop k
 * sends over its own connection (l.connection(k), or l.target(k) for the https client), waiting
 * for each answer before the next request; request numbers are shared by all loops.
 */
async function drive(l: Load, seconds: number, t: Tally, s: Sampling): Promise<void> {
  let next = 0;
  let first = true;
  const serverCpu = () => [l.pid, ...(l.morePids ?? [])].reduce((sum, pid) => sum + treeCpuSeconds(pid), 0);
  const mainCpu = () => (l.mainThread ? threadCpuSeconds(l.pid, l.pid) : 0);
  const s0 = serverCpu();
  const m0 = mainCpu();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const error = (why: string) => {
    t.errors++;
    t.firstError ??= why;
  };
  const lean = async (k: number) => {
    const connection = l.connection(k);
    while (performance.now() < end) {
      const i = next++;
      const body = l.body(i);
      if (body === undefined) {
        t.exhausted = true;
        return;
      }
      const a = await connection.post(l.route, body);
      if (a.status !== l.status || a.body.indexOf(PEM_BEGIN) === -1) {
        error(`${a.status} ${a.error?.message ?? a.body.toString().slice(0, 300)}`);
        continue;
      }
      if (first || i % SAMPLE_EVERY === 0) {
        first = false;
        t.checked++;
        const c = fullCheck(l, a, i, s);
        if ("error" in c) {
          error(c.error);
          continue;
        }
        t.sample ??= c.pem;
      }
      t.count++;
      t.latencies.push(a.ms);
    }
  };
  // The node:https client the bench had before serve-client.ts: requestJson, every answer parsed and its certificate
  // taken (the prepared body parsed back into the object requestJson stringifies: a few us of its ~0.3 ms).
  const https = async (k: number) => {
    const target = l.target(k);
    while (performance.now() < end) {
      const i = next++;
      const body = l.body(i);
      if (body === undefined) {
        t.exhausted = true;
        return;
      }
      const r = await requestJson(target, "POST", l.route, JSON.parse(body));
      const pem = r.status === l.status ? l.extract(r.body) : undefined;
      if (pem === undefined) {
        error(`${r.status} ${r.error?.message ?? JSON.stringify(r.body).slice(0, 300)}`);
        continue;
      }
      t.count++;
      t.latencies.push(r.ms);
      t.sample ??= pem;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, (_, k) => (l.client === "lean" ? lean(k) : https(k))));
  t.seconds += (performance.now() - t0) / 1000;
  const cu = process.cpuUsage(c0);
  t.clientCpu += (cu.user + cu.system) / 1e6;
  t.serverCpu += serverCpu() - s0;
  t.mainCpu += mainCpu() - m0;
  t.load1 = loadavg()[0]!;
  if (l.client === "lean")
    for (let k = 0; k < CONCURRENCY; k++) {
      t.connections += l.connection(k).connects;
      t.chunked += l.connection(k).chunked;
    }
}

/** Identity is a client certificate (PEM chain) and its key, for loops that renew over mTLS. */
type Identity = { cert: string; key: string };

/**
 * Pools makes each load's per-loop connections, trusting the CA (every PKI copy in a run holds
 * the same CA), each made on its first use (in the warm-up), and closes them all at the end:
 * lean connections (serve-client.ts) and, for --client-ab, node:https agents as serve-load.ts's
 * trustAgent makes them (one per target with CONCURRENCY sockets, or one per loop with an identity).
 */
class Pools {
  private readonly ca: Buffer;
  private readonly leans: LeanConnection[] = [];
  private readonly agents: http.Agent[] = [];
  constructor(private readonly caFile: string) {
    this.ca = readFileSync(caFile);
  }
  lean(port: number, identity?: (k: number) => Identity): (k: number) => LeanConnection {
    const made: LeanConnection[] = [];
    return (k) => {
      let c = made[k];
      if (c === undefined) {
        c = new LeanConnection({ port, ca: this.ca, ...identity?.(k) });
        made[k] = c;
        this.leans.push(c);
      }
      return c;
    };
  }
  https(port: number, identity?: (k: number) => Identity): (k: number) => Target {
    const made: Target[] = [];
    return (k) => {
      const at = identity === undefined ? 0 : k;
      let t = made[at];
      if (t === undefined) {
        const agent = trustAgent(
          this.caFile,
          identity === undefined ? { maxSockets: CONCURRENCY } : { ...identity(k), maxSockets: 1 },
        );
        t = { port, agent, tls: true };
        made[at] = t;
        this.agents.push(agent);
      }
      return t;
    };
  }
  close(): void {
    for (const c of this.leans) c.close();
    for (const a of this.agents) a.destroy();
  }
}

/** Bodies builds requests' JSON text from prepared pieces: each CSR's PEM as a JSON string, made once. */
class Bodies {
  private readonly csrJson: string[];
  constructor(csrs: Csr[]) {
    this.csrJson = csrs.map((c) => JSON.stringify(c.pem));
  }
  private csr(i: number): string {
    return this.csrJson[i % this.csrJson.length]!;
  }
  cfssl = (i: number): string => `{"certificate_request":${this.csr(i)}}`;
  csrOnly = (i: number): string => `{"csr":${this.csr(i)}}`;
  /** enroll takes the next of `tokens` (undefined when none is left): one per request. */
  enroll(tokens: string[]): (i: number) => string | undefined {
    let used = 0;
    return (i) => {
      const token = tokens[used++];
      return token === undefined ? undefined : `{"service":"web","token":"${token}","csr":${this.csr(i)}}`;
    };
  }
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
    if (r.status === 200 && cfsslCertificate(r.body) !== undefined) return { child, port, target };
    if (child.exitCode !== null || performance.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(
        `cfssl serve did not sign within 15 s (last: ${r.status} ${r.error?.message ?? JSON.stringify(r.body)}):\n${tail}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** cfsslCertificate is the certificate in a parsed cfssl answer ({"success": true, "result": {"certificate": PEM}}). */
function cfsslCertificate(json: unknown): string | undefined {
  const b = json as { success?: boolean; result?: { certificate?: unknown } } | undefined;
  return b?.success === true && typeof b.result?.certificate === "string" ? b.result.certificate : undefined;
}

/** issuedCertificate is the leaf in a parsed mtlskit Issued answer (and the floor's), or undefined. */
function issuedCertificate(json: unknown): string | undefined {
  const b = json as { certificate?: unknown } | undefined;
  return typeof b?.certificate === "string" ? b.certificate : undefined;
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

/**
 * FLOOR_TARGETS: the floor (bench/serve-floor.ts), each in its faster crypto form (measured in one
 * run, 3 rounds: one process 1,970/s async against 1,311/s sync, its event loop then the bound and
 * the thread pool a second core's worth; two 2,517/s sync against 2,304/s async, the two processes
 * already filling both cores and the thread pool's hand-offs costing 0.1 ms a certificate):
 * `floor` one process, the verification and signature in libuv's thread pool; `floor-2` two
 * processes on one port (node:cluster), on their event loops. Opt-in: `floor-sync`, `floor-2-async`.
 */
const FLOOR_TARGETS = [
  ["floor", 1, "async"],
  ["floor-2", 2, "sync"],
  ["floor-sync", 1, "sync"],
  ["floor-2-async", 2, "async"],
] as const;

/**
 * startFloor runs bench/serve-floor.ts (`processes` of it on one port, `crypto` sync or async) with DIR's
 * CA and cfssl's TLS certificate; ready once it says every process listens (at most 20 s).
 */
async function startFloor(
  pki: string,
  processes: number,
  crypto: "sync" | "async",
): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      path.join(import.meta.dirname, "serve-floor.ts"),
      "--port",
      String(port),
      "--pki",
      pki,
      "--processes",
      String(processes),
      "--crypto",
      crypto,
    ],
    { cwd: path.join(import.meta.dirname, ".."), stdio: ["ignore", "pipe", "pipe"] },
  );
  let tail = "";
  const keep = (d: Buffer) => void (tail = (tail + d.toString()).slice(-4_000));
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const deadline = performance.now() + 20_000;
  while (!tail.includes("floor listening")) {
    if (child.exitCode !== null || performance.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`the floor server did not listen within 20 s:\n${tail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { child, port };
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
  pools: Pools;
  bodies: Bodies;
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
    // Loop k connects to replica k % n: the load spread evenly, each loop on one keep-alive connection.
    const leans = replicas.map((r) => o.pools.lean(r.port));
    const targets = replicas.map((r) => o.pools.https(r.port));
    const perTarget = Math.ceil(2_500 * (SECONDS * ROUNDS + WARMUP_SECONDS) * CLIENTS) + CONCURRENCY;
    const loads = o.wanted.map(
      ([, name, n], w): Load => ({
        name,
        pid: replicas[0]!.child.pid!,
        morePids: [...replicas.slice(1, n).map((r) => r.child.pid!), pg.pid!],
        route: "/v1/enroll",
        body: o.bodies.enroll(pgTokens(pg, "web", 1 + w * perTarget, perTarget)),
        status: 201,
        extract: issuedCertificate,
        connection: (k) => leans[k % n]!(k),
        target: (k) => targets[k % n]!(k),
        client: "lean",
      }),
    );
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
  let closePools = () => {};
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

    const pools = new Pools(path.join(pki, "ca", "ca.pem"));
    closePools = () => pools.close();
    const bodies = new Bodies(csrs);
    const spkis = new Map<number, Buffer>();
    const sampling: Sampling = {
      ca,
      spkiOf: (i) => {
        const at = i % csrs.length;
        let spki = spkis.get(at);
        if (spki === undefined) {
          spki = createPublicKey(csrAt(at).keyPem).export({ type: "spki", format: "der" });
          spkis.set(at, spki);
        }
        return spki;
      },
    };

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
        route: "/api/v1/cfssl/sign",
        body: bodies.cfssl,
        status: 200,
        extract: cfsslCertificate,
        connection: pools.lean(cfssl.port),
        target: pools.https(cfssl.port),
        client: "lean",
      });
    }
    for (const [name, processes, crypto] of FLOOR_TARGETS) {
      if (!ONLY.has(name)) continue;
      const floor = await startFloor(pki, processes, crypto);
      children.push(floor.child);
      loads.push({
        name,
        pid: floor.child.pid!,
        route: "/v1/floor",
        body: bodies.csrOnly,
        status: 201,
        extract: issuedCertificate,
        connection: pools.lean(floor.port),
        target: pools.https(floor.port),
        client: "lean",
      });
    }
    // One serve per --workers value (`--workers 1,2`: both measured in this run, each a target),
    // each on its own copy of the PKI directory (its own ledger: two servers on one SQLite file
    // would measure its write lock), the tokens made once and copied.
    const workerCounts = (values.workers ?? "").split(",").filter((w) => w !== "");
    // --base BIN: each serve again from another build (an A/B of two commits in one run, rounds interleaved).
    // --signer-threads N[,M]: serve's signer threads, each value a serve of its own (as --workers).
    const signerCounts = (values["signer-threads"] ?? "").split(",").filter((s) => s !== "");
    const variants: { w: string | undefined; s: string | undefined; bin: string; tag: string }[] = (
      workerCounts.length === 0 ? [undefined] : workerCounts
    ).flatMap((w) =>
      (signerCounts.length === 0 ? [undefined] : signerCounts).flatMap((s) => [
        { w, s, bin, tag: "" },
        ...(values.base === undefined ? [] : [{ w, s, bin: path.resolve(values.base), tag: " base" }]),
      ]),
    );
    const suffix = (v: { w: string | undefined; s: string | undefined; tag: string }) =>
      (workerCounts.length > 1 ? ` w${v.w}` : "") + (signerCounts.length > 1 ? ` s${v.s}` : "") + v.tag;
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
        args: [
          ...(w === undefined ? [] : ["--workers", w]),
          ...(variant.s === undefined ? [] : ["--signer-threads", variant.s]),
        ],
        ...(values.profile === undefined
          ? {}
          : { nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${path.resolve(values.profile)}`] }),
      });
      servedAll.push(one);
      const enrollBody = bodies.enroll(tokens);
      if (ONLY.has("renew")) {
        // One identity per loop: loop k renews with the certificate enrolled here with CSR k's key.
        const setup = pools.https(one.port);
        const identities: Identity[] = [];
        for (let k = 0; k < CONCURRENCY; k++) {
          const r = await requestJson(setup(0), "POST", "/v1/enroll", JSON.parse(enrollBody(k)!));
          if (r.status !== 201 || issuedCertificate(r.body) === undefined)
            throw new Error(`enroll for the renew loops failed: ${r.status} ${JSON.stringify(r.body)}`);
          identities.push({ cert: (r.body as { chain: string }).chain, key: csrAt(k).keyPem });
        }
        loads.push({
          name: `mtlskit renew${suffix(variant)}`,
          pid: one.child.pid!,
          mainThread: single,
          route: "/v1/renew",
          body: bodies.csrOnly,
          status: 201,
          extract: issuedCertificate,
          connection: pools.lean(one.port, (k) => identities[k]!),
          target: pools.https(one.port, (k) => identities[k]!),
          client: "lean",
        });
      }
      if (ONLY.has("enroll"))
        loads.push({
          name: `mtlskit enroll${suffix(variant)}`,
          pid: one.child.pid!,
          mainThread: single,
          route: "/v1/enroll",
          body: enrollBody,
          status: 201,
          extract: issuedCertificate,
          connection: pools.lean(one.port),
          target: pools.https(one.port),
          client: "lean",
        });
    }

    const pgWanted = PG_TARGETS.filter(([key]) => ONLY.has(key));
    if (pgWanted.length > 0) {
      const pgStarted = await startPgLoads({ bin, manifest, pki, wanted: pgWanted, pools, bodies });
      stopPg = pgStarted.stop;
      loads.push(...pgStarted.loads);
      const pgFs = spawnSync("stat", ["-f", "-c", "%T", tmpdir()], { encoding: "utf8" }).stdout.trim();
      console.log(
        `PostgreSQL ledger: a throw-away cluster on 127.0.0.1, fsync=on, synchronous_commit=on, data in ${tmpdir()} on ${pgFs || "?"}; server CPU of its targets counts serve and postgres`,
      );
    }
    // --client-ab: every target also driven by node:https (serve-load.ts's requestJson), as NAME/https, in the same rounds.
    if (values["client-ab"])
      loads.push(...loads.map((l): Load => ({ ...l, name: `${l.name}/https`, client: "https" })));

    console.log(
      `serve bench: ${ROUNDS} rounds x ${SECONDS} s per target, ${CONCURRENCY} loops, each on its own keep-alive TLS 1.3 connection (bench/serve-client.ts${values["client-ab"] ? "; and node:https: --client-ab" : ""}), ${csrs.length} P-256 CSRs; mtlskit serve --workers ${values.workers ?? "not given (its default: 1)"}, --signer-threads ${values["signer-threads"] ?? "not given (its default)"}; node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? "?"}), load average ${loadavg()[0]!.toFixed(2)} at start`,
    );
    console.log(
      `ledgers (mtlskit's, cfssl's certdb) in ${work} on ${fsType || "?"}: ${durable ? "durable (fsync reaches the disk)" : "NOT durable: a tmpfs, fsync costs nothing; the targets below are judged only on a disk"}`,
    );
    for (const l of loads) await drive(l, WARMUP_SECONDS, tally(), sampling); // warm-up: JIT, connections
    const totals = new Map<Load, Tally>(loads.map((l) => [l, tally()]));
    for (let r = 0; r < ROUNDS; r++) {
      const order = loads.map((_, i) => loads[(i + r) % loads.length]!);
      const line: string[] = [];
      for (const l of order) {
        const t = tally();
        await drive(l, SECONDS, t, sampling);
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
        sum.checked += t.checked;
        sum.connections = t.connections;
        sum.chunked = t.chunked;
        sum.exhausted ||= t.exhausted;
        line.push(`${l.name} ${(t.count / t.seconds).toFixed(0)}/s`);
      }
      console.log(`  round ${r + 1}: ${line.join(", ")}`);
    }

    const rate = (t: Tally) => t.count / t.seconds;
    const NAME_WIDTH = Math.max(15, ...loads.map((l) => l.name.length));
    console.log("");
    console.log(
      `${"target".padEnd(NAME_WIDTH)} ${"certs/s".padStart(8)} ${"p50 ms".padStart(7)} ${"p99 ms".padStart(7)} ${"errors".padStart(7)} ${"server CPU".padStart(11)} ${"ms CPU/cert".padStart(11)} ${"main ms/cert".padStart(12)} ${"client CPU".padStart(11)} ${"client ms/cert".padStart(14)} ${"load1".padStart(6)}`,
    );
    for (const l of loads) {
      const t = totals.get(l)!;
      const sorted = Float64Array.from(t.latencies).sort();
      console.log(
        `${l.name.padEnd(NAME_WIDTH)} ${rate(t).toFixed(0).padStart(8)} ${percentile(sorted, 50).toFixed(1).padStart(7)} ${percentile(sorted, 99).toFixed(1).padStart(7)} ${String(t.errors).padStart(7)} ${`${(t.serverCpu / t.seconds).toFixed(2)} cores`.padStart(11)} ${((t.serverCpu / t.count) * 1000).toFixed(3).padStart(11)} ${(l.mainThread ? ((t.mainCpu / t.count) * 1000).toFixed(3) : "-").padStart(12)} ${`${(t.clientCpu / t.seconds).toFixed(2)} cores`.padStart(11)} ${((t.clientCpu / t.count) * 1000).toFixed(3).padStart(14)} ${t.load1.toFixed(2).padStart(6)}`,
      );
    }
    console.log("");
    for (const l of loads) {
      const t = totals.get(l)!;
      console.log(
        `${l.name}: sample certificate ${describeSample(t.sample, ca)}${l.client === "lean" ? `; ${t.checked} answers checked in full (JSON, decoded, signed by the CA, the CSR's key), the other ${t.count + t.errors - t.checked} by status and PEM; ${t.connections} TLS connections made; ${t.chunked === 0 ? "every answer framed by Content-Length" : `${t.chunked} answers chunked`}` : ""}`,
      );
      if (t.firstError !== undefined) console.log(`${l.name}: first error: ${t.firstError}`);
      if (t.exhausted) console.log(`${l.name}: ran out of pre-made tokens (${TOKENS}): raise --tokens`);
    }
    const cfssl = loads.find((l) => l.name === "cfssl");
    const cfsslDb = loads.find((l) => l.name === "cfssl+db");
    const lean = loads.filter((l) => l.client === "lean");
    const floors = lean.filter((l) => l.name.startsWith("floor"));
    const mine = lean.filter((l) => !l.name.startsWith("cfssl") && !floors.includes(l));
    const bestFloor = floors.reduce<Load | undefined>(
      (best, l) => (best === undefined || rate(totals.get(l)!) > rate(totals.get(best)!) ? l : best),
      undefined,
    );
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
    // --client-ab: the load generator's CPU per certificate, lean against node:https, target by target.
    const clientLines = loads
      .filter((l) => l.client === "https")
      .flatMap((h) => {
        const l = lean.find((x) => `${x.name}/https` === h.name);
        const a = l && totals.get(l)!;
        const b = totals.get(h)!;
        if (a === undefined || a.count === 0 || b.count === 0) return [];
        const ms = (t: Tally) => (t.clientCpu / t.count) * 1000;
        return [
          `${l!.name}: load generator CPU per certificate ${ms(a).toFixed(3)} ms (lean) vs ${ms(b).toFixed(3)} ms (node:https): ${(ms(b) / ms(a)).toFixed(2)}x less; rate ${rate(a).toFixed(0)} vs ${rate(b).toFixed(0)}/s, p99 ${percentile(Float64Array.from(a.latencies).sort(), 99).toFixed(1)} vs ${percentile(Float64Array.from(b.latencies).sort(), 99).toFixed(1)} ms`,
        ];
      });
    if (clientLines.length > 0) console.log(`\n${clientLines.join("\n")}`);
    // Against each cfssl measured: the rate ratio (the issue's "faster than cfssl": PASS when > 1) and both CPU costs.
    const vs = (t: Tally, peer: Load | undefined, label: string) => {
      if (peer === undefined) return `${label}: not measured`;
      const p = totals.get(peer)!;
      return `${(rate(t) / rate(p)).toFixed(2)}x ${label}'s rate (${rate(p).toFixed(0)}/s): ${verdict(rate(t) > rate(p))}, CPU per certificate ${cpuPerCert(t)} vs ${cpuPerCert(p)}`;
    };
    // The floor: what a bare Node server reaches with this client, the ceiling of any Node online CA here.
    const ofFloor = (t: Tally) =>
      bestFloor === undefined
        ? "the floor: not measured"
        : `${(rate(t) / rate(totals.get(bestFloor)!)).toFixed(2)} of the best floor's rate (${bestFloor.name}, ${rate(totals.get(bestFloor)!).toFixed(0)}/s)`;
    if (floors.length > 0) console.log("");
    for (const l of floors) {
      const t = totals.get(l)!;
      const p99 = percentile(Float64Array.from(t.latencies).sort(), 99);
      console.log(
        `${l.name} (a bare node:https CA): ${rate(t).toFixed(0)}/s reaches ${TARGET.rate}/s: ${rate(t) >= TARGET.rate ? "yes" : "no"}; p99 ${p99.toFixed(1)} ms; beats cfssl: ${cfssl === undefined ? "not measured" : rate(t) > rate(totals.get(cfssl)!) ? "yes" : "no"} (${vs(t, cfssl, "cfssl")}); ${vs(t, cfsslDb, "cfssl+db")}`,
      );
    }
    if (mine.length > 0) console.log("");
    for (const l of mine) {
      const t = totals.get(l)!;
      const p99 = percentile(Float64Array.from(t.latencies).sort(), 99);
      if (!durable) {
        console.log(
          `${l.name}: ${rate(t).toFixed(0)}/s, p99 ${p99.toFixed(1)} ms: not judged (the ledger is not durable here); ${vs(t, cfssl, "cfssl")}; ${vs(t, cfsslDb, "cfssl+db")}; ${ofFloor(t)}`,
        );
        continue;
      }
      console.log(
        `${l.name}: ${rate(t).toFixed(0)}/s >= ${TARGET.rate}/s: ${verdict(rate(t) >= TARGET.rate)}; p99 ${p99.toFixed(1)} ms <= ${TARGET.p99Ms} ms: ${verdict(p99 <= TARGET.p99Ms)}; errors ${t.errors}: ${verdict(t.errors === 0)}; ${vs(t, cfssl, "cfssl")}; ${vs(t, cfsslDb, "cfssl+db")}; ${ofFloor(t)}`,
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
    closePools();
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
