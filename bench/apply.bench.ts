/**
 * `npm run bench:apply`: apply against its floor, on tmpfs and on the root disk, in the same run.
 *
 * By default 10,000 ecdsa-p256 dual services (each with one IP and one DNS address and the identity
 * spiffe://bench.local/{role}/{name}) are applied from the built package (dist/, rebuilt with tsc
 * when a source file is newer) on two file systems: a tmpfs (/dev/shm when it is one; otherwise,
 * as root, a tmpfs mounted for the run) and the root disk (os.tmpdir() when it is on disk). On each:
 *
 *   1. the floor, measured right before the apply on the same file system;
 *   2. a FRESH child process parses the manifest and applies it into a new directory (wall = parse +
 *      apply, not process start-up or module loading; as `mtlskit apply` does, warmApply starts the
 *      worker threads before the parse, inside the timed part), then applies it again unchanged (everything
 *      kept); peak RSS is sampled every 20 ms (worker threads share the process) and cross-checked
 *      with getrusage's maxRSS;
 *   3. the floor again, right after (a VM disk's metadata speed swings several-fold within minutes);
 *   ratio = apply wall / the mean of the two floors.
 *
 * The floor (the issue's definition) = crypto + file system, each part really spread over the
 * cores: its work split between one warmed-up worker thread per core (2 here), timed from "go"
 * until the last thread is done (not a single-thread time divided by the cores):
 *   - crypto: node:crypto P-256 generateKeyPairSync plus one ECDSA-SHA256 signature over 300 bytes
 *     per certificate. A stricter variant, keygen through a reused createECDH, is printed too.
 *   - file system: the layout's least work: per service a mkdir and three files (key, cert,
 *     bundle, with their real sizes) each created (O_EXCL), written, closed and renamed. Apply
 *     fsyncs, so this is measured twice: without any fsync, and with as many fsyncs as apply makes
 *     (counted in every thread of a 500-service calibration apply through a -r preload that wraps
 *     fs.fsyncSync and fs.fdatasyncSync; each measured apply counts its own too), issued on the
 *     files just written, then their directory. The ratio against the latter is the one judged;
 *     the ratio against the no-fsync floor is printed next to it.
 * A CPU ratio is printed too (apply's CPU seconds in all threads, parse included, over the judged
 * floor's): on a machine shared with other work, wall times swing with their load, CPU less so.
 * The target (the issue): both ratios <= 2.0 and peak RSS <= 300 MB at 10,000 services.
 *
 * A micro section (its own child process, on the tmpfs) then times the pieces of one certificate:
 * key generation (also the JWK path generateKey used before ECDH), TBS encoding and signing, PEM,
 * and the durable I/O, with two comparisons (no fsync at all; fsyncs batched per 100 services).
 *
 * Children report progress on stdout; one that reports nothing for --stall seconds is killed and
 * reported as HUNG (a hang is a result too: Node 20's EC JWK export once deadlocked apply). Steps
 * that would start after --max-minutes are skipped and reported. This is a benchmark, not a test:
 * it exits 0 whether or not the targets are met, and 1 only when it could not measure (a run
 * crashed or hung, or a file system could not be found).
 *
 *   npm run bench:apply [-- --sizes 10000] [--fs tmpfs,disk] [--tmpfs DIR] [--disk DIR]
 *                       [--workers N[,M...]] [--mix dual|mixed] [--from dist|src] [--micro 1000]
 *                       [--stall 90] [--max-minutes 15]
 *
 *   --fs        which file systems to run on, in order. Default: tmpfs,disk.
 *   --tmpfs     a directory on a tmpfs. Default: /dev/shm if it is a tmpfs, else one mounted for the run (root only).
 *   --disk      a directory on a disk file system. Default: os.tmpdir() if it is not a tmpfs.
 *   --workers   ApplyOptions.workers; a list runs every size with each value. Default: apply's own.
 *   --mix       dual: every service dual; mixed: services cycle server, client, dual. Default: dual.
 *   --from      dist: the built package (rebuilt with tsc -p tsconfig.build.json when src/ is newer);
 *               src: the TypeScript sources (workers register tsx themselves, which adds their start-up).
 *   --micro     iterations of each micro measurement; 0 skips the section. Default: 1000.
 *   --stall     seconds without progress after which a child counts as hung. Default: 90.
 *   --max-minutes  steps that would start later than this are skipped. Default: 15.
 */
import { spawn, spawnSync } from "node:child_process";
import { createECDH, createPrivateKey, generateKeyPairSync, sign } from "node:crypto";
import {
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { availableParallelism, cpus, loadavg, tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import type { CertSpec, Issuer } from "../src/pki/issue.ts";

type ApplyModule = Pick<typeof import("../src/index.ts"), "apply" | "parseManifest" | "warmApply">;

const SELF = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(SELF), "..");
const TARGET = { n: 10_000, ratio: 2, rssMb: 300 } as const;
const MB = 2 ** 20;
const TMPFS_MAGIC = 0x01021994;
const CALIBRATION_N = 500;

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "10000" },
    fs: { type: "string", default: "tmpfs,disk" },
    tmpfs: { type: "string" },
    disk: { type: "string" },
    workers: { type: "string" },
    mix: { type: "string", default: "dual" },
    from: { type: "string", default: "dist" },
    micro: { type: "string", default: "1000" },
    stall: { type: "string", default: "90" },
    "max-minutes": { type: "string", default: "15" },
    // internal: what a child process runs, and where
    child: { type: "string" },
    "child-micro": { type: "string" },
    "child-dir": { type: "string" },
    "child-workers": { type: "string" },
  },
  strict: true,
});

function fail(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(1);
}

if (values.mix !== "mixed" && values.mix !== "dual") fail(`--mix must be mixed or dual; got ${values.mix}`);
if (values.from !== "src" && values.from !== "dist") fail(`--from must be src or dist; got ${values.from}`);

/** say writes one protocol line to stdout synchronously: it must get out even if a thread then hangs. */
const say = (kind: "progress" | "result", payload: unknown) => writeSync(1, `${kind} ${JSON.stringify(payload)}\n`);

// ---------------------------------------------------------------------------------------------
// The manifest

const USAGE_CYCLE = ["server", "client", "dual"] as const;

/** manifestText declares n ecdsa-p256 services, each with one IP and one DNS address. */
function manifestText(n: number, mix: string): string {
  const lines = [
    "version: 1",
    "cluster: bench",
    'identity: { uri: "spiffe://bench.local/{role}/{name}" }',
    "ca: { key: ecdsa-p256 }",
    "defaults: { key: ecdsa-p256 }",
    "services:",
  ];
  for (let i = 0; i < n; i++) {
    const usage = mix === "dual" ? "dual" : USAGE_CYCLE[i % 3]!;
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    lines.push(`  s${i}: { usage: ${usage}, addresses: [${ip}, s${i}.bench.internal] }`);
  }
  return lines.join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------
// Counting fsyncs in every thread of a child: a -r preload (it runs in worker threads too) wraps
// fs.fsyncSync and fs.fdatasyncSync before any module imports them; each thread appends its count
// to FSYNC_LOG when it exits, and the main thread's running count is on globalThis.

const FSYNC_PRELOAD = `"use strict";
const fs = require("node:fs");
const { threadId } = require("node:worker_threads");
let n = 0;
for (const name of ["fsyncSync", "fdatasyncSync"]) {
  const orig = fs[name];
  fs[name] = function (...args) { n++; return orig.apply(this, args); };
}
require("node:module").syncBuiltinESMExports();
globalThis.__benchFsyncs = () => n;
process.on("exit", () => { if (threadId !== 0 && process.env.BENCH_FSYNC_LOG) fs.appendFileSync(process.env.BENCH_FSYNC_LOG, n + "\\n"); });
`;

/** workerFsyncs sums the counts worker threads that exited have logged so far, and empties the log. */
function workerFsyncs(log: string): number {
  if (!existsSync(log)) return 0;
  const n = readFileSync(log, "utf8")
    .split("\n")
    .filter(Boolean)
    .reduce((a, x) => a + Number(x), 0);
  rmSync(log);
  return n;
}
const mainFsyncs = () => (globalThis as { __benchFsyncs?: () => number }).__benchFsyncs?.() ?? Number.NaN;

// ---------------------------------------------------------------------------------------------
// Child: one apply, in a fresh process

interface ChildResult {
  n: number;
  workers: string;
  warnings: number;
  parseS: number;
  applyS: number;
  /** cpuS is user + system CPU of the whole process (all threads) during parse + apply. */
  cpuS: number;
  /** sysS is the system (kernel) part of cpuS: file system work, fsync included. */
  sysS: number;
  /** fsyncs: fsyncSync + fdatasyncSync calls of every thread during the apply. */
  fsyncs: number;
  rssBaseMb: number;
  /** sampledPeakMb: highest process.memoryUsage.rss() seen every 20 ms during parse + apply. */
  sampledPeakMb: number;
  samples: number;
  maxRssBeforeMb: number;
  maxRssAfterMb: number;
  /** peakMb: the larger of the sampled peak and getrusage maxRSS after apply. */
  peakMb: number;
  reParseS: number;
  reApplyS: number;
  reCpuS: number;
  reKept: number;
  reFsyncs: number;
  reSampledPeakMb: number;
  maxRssEndMb: number;
}

async function loadApply(from: string): Promise<ApplyModule> {
  if (from === "dist") {
    const entry = path.join(REPO, "dist", "index.js");
    if (!existsSync(entry)) fail(`--from dist: ${entry} does not exist; run npm run build`);
    return (await import(pathToFileURL(entry).href)) as ApplyModule;
  }
  return await import("../src/index.ts");
}

async function childApply(n: number, dir: string, workersArg: string): Promise<void> {
  const { apply, parseManifest, warmApply } = await loadApply(values.from);
  const text = manifestText(n, values.mix);
  const pki = path.join(dir, "pki");
  const log = process.env.BENCH_FSYNC_LOG ?? path.join(dir, "fsyncs.log");
  const cpuSeconds = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1e6;
  let reported = 0;
  const onProgress = (done: number, total: number) => {
    if (done - reported >= 250 || done === total) {
      reported = done;
      say("progress", { phase: "apply", done, total });
    }
  };
  const opts = { onProgress, ...(workersArg === "default" ? {} : { workers: Number(workersArg) }) };

  // Let start-up settle so the baseline is the loaded process, not its start.
  await new Promise((r) => setTimeout(r, 50));
  const rssBase = process.memoryUsage.rss();
  const maxRssBefore = process.resourceUsage().maxRSS * 1024;

  let peak = rssBase;
  let samples = 0;
  const sampler = setInterval(() => {
    samples++;
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 20);
  try {
    say("progress", { phase: "parse", done: 0, total: n });
    workerFsyncs(log);
    const sync0 = mainFsyncs();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    // As `mtlskit apply` does: the worker threads start before the manifest is parsed (timed).
    const pool = warmApply(text, { ...opts, dir: pki });
    const loaded = parseManifest(text, "bench.yaml");
    const t1 = performance.now();
    const r = await apply(loaded, pki, { ...opts, pool });
    const t2 = performance.now();
    const cpu1 = process.cpuUsage(cpu0);
    const fsyncs = mainFsyncs() - sync0 + workerFsyncs(log);
    peak = Math.max(peak, process.memoryUsage.rss());
    const sampledPeak = peak;
    const maxRssAfter = process.resourceUsage().maxRSS * 1024;

    const made = readdirSync(path.join(pki, "services"));
    if (r.issued !== n || !r.caCreated || made.length !== n)
      throw new Error(
        `expected ${n} certificates and a new CA, got ${r.issued} issued, ${made.length} service directories, caCreated ${r.caCreated}`,
      );
    for (const f of ["cert.pem", "key.pem", "ca.pem"])
      if (!existsSync(path.join(pki, "services", "s0", f))) throw new Error(`services/s0/${f} was not written`);

    // No-op re-apply: the same manifest, parsed again as a user's second run would.
    say("progress", { phase: "re-apply", done: 0, total: n });
    peak = process.memoryUsage.rss();
    const sync2 = mainFsyncs();
    const cpu2 = process.cpuUsage();
    const t3 = performance.now();
    const pool2 = warmApply(text, { ...opts, dir: pki });
    const again = parseManifest(text, "bench.yaml");
    const t4 = performance.now();
    const r2 = await apply(again, pki, { ...opts, pool: pool2 });
    const t5 = performance.now();
    const cpu3 = process.cpuUsage(cpu2);
    const reFsyncs = mainFsyncs() - sync2 + workerFsyncs(log);
    const reSampledPeak = Math.max(peak, process.memoryUsage.rss());
    if (r2.issued !== 0 || r2.kept !== n || r2.caCreated)
      throw new Error(`re-apply: expected 0 issued and ${n} kept, got ${r2.issued} issued, ${r2.kept} kept`);

    const out: ChildResult = {
      n,
      workers: workersArg,
      warnings: loaded.warnings.length,
      parseS: (t1 - t0) / 1000,
      applyS: (t2 - t1) / 1000,
      cpuS: cpuSeconds(cpu1),
      sysS: cpu1.system / 1e6,
      fsyncs,
      rssBaseMb: rssBase / MB,
      sampledPeakMb: sampledPeak / MB,
      samples,
      maxRssBeforeMb: maxRssBefore / MB,
      maxRssAfterMb: maxRssAfter / MB,
      peakMb: Math.max(sampledPeak, maxRssAfter) / MB,
      reParseS: (t4 - t3) / 1000,
      reApplyS: (t5 - t4) / 1000,
      reCpuS: cpuSeconds(cpu3),
      reKept: r2.kept,
      reFsyncs,
      reSampledPeakMb: reSampledPeak / MB,
      maxRssEndMb: (process.resourceUsage().maxRSS * 1024) / MB,
    };
    say("result", out);
  } finally {
    clearInterval(sampler);
  }
}

// ---------------------------------------------------------------------------------------------
// The floor (parent process, in worker threads)

/**
 * FLOOR_WORKER runs in each floor thread. Warmed up at start, it answers each message with its
 * share of one part of the floor:
 *   crypto: k × (P-256 keygen + one ECDSA-SHA256 signature over 300 bytes), keygen through
 *           generateKeyPairSync or (viaEcdh) a reused createECDH;
 *   fs:     for the services `first`, `first + step`, ... below n: mkdir services/sI, then three
 *           files (key, cert, bundle, with their real sizes) each created (O_EXCL), written, closed
 *           and renamed; `fsyncsPer` fsyncs per service on average, on the files just written,
 *           then their directory.
 */
const FLOOR_WORKER = `"use strict";
const { parentPort } = require("node:worker_threads");
const { createECDH, generateKeyPairSync, sign } = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const { O_WRONLY, O_CREAT, O_EXCL, O_RDONLY, O_DIRECTORY } = fs.constants;
const ca = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
const tbs = Buffer.alloc(300, 0x5a);
const ecdh = createECDH("prime256v1");
const FILES = ${JSON.stringify([
  ["key.pem", 241, 0o600],
  ["cert.pem", 790, 0o644],
  ["ca.pem", 570, 0o644],
])}.map(([name, size, mode]) => ({ name, data: Buffer.alloc(size, 0x41), mode }));
const crypto = (k, viaEcdh) => {
  for (let i = 0; i < k; i++) {
    if (viaEcdh) ecdh.generateKeys();
    else generateKeyPairSync("ec", { namedCurve: "P-256" });
    sign("sha256", tbs, ca);
  }
};
const files = (services, first, step, n, fsyncsPer) => {
  let owed = 0;
  for (let i = first; i < n; i += step) {
    const sd = path.join(services, "s" + i);
    fs.mkdirSync(sd, { mode: 0o700 });
    owed += fsyncsPer;
    for (const f of FILES) {
      const tmp = path.join(sd, ".tmp-" + f.name);
      const fd = fs.openSync(tmp, O_WRONLY | O_CREAT | O_EXCL, f.mode);
      fs.writeSync(fd, f.data);
      if (owed >= 1) { fs.fsyncSync(fd); owed--; }
      fs.closeSync(fd);
      fs.renameSync(tmp, path.join(sd, f.name));
    }
    if (owed >= 1) {
      const fd = fs.openSync(sd, O_RDONLY | O_DIRECTORY);
      while (owed >= 1) { fs.fsyncSync(fd); owed--; }
      fs.closeSync(fd);
    }
  }
};
crypto(200, false);
crypto(200, true);
parentPort.on("message", (m) => {
  if (m.part === "crypto") crypto(m.k, m.viaEcdh);
  else files(m.services, m.first, m.step, m.n, m.fsyncsPer);
  parentPort.postMessage("done");
});
parentPort.postMessage("ready");
`;

interface Floor {
  /** cryptoS: n × (generateKeyPairSync P-256 + sign), spread over the threads. */
  cryptoS: number;
  /** cryptoEcdhS: the same with createECDH keygen (stricter). */
  cryptoEcdhS: number;
  /** fsS: the layout's least file-system work without any fsync, spread over the threads. */
  fsS: number;
  /** fsSyncS: the same with as many fsyncs as apply makes. */
  fsSyncS: number;
  /** cpuS: CPU seconds (all threads of this process) of the judged floor: crypto + fsSync. */
  cpuS: number;
}

/**
 * measureFloor times each part of the floor for n services on the file system of `base`, spread
 * over `threads` warmed-up worker threads: seconds from "go" until the last thread is done.
 * Directories are created and removed outside the timing.
 */
async function measureFloor(base: string, n: number, fsyncsPer: number, threads: number): Promise<Floor> {
  const workers = Array.from({ length: threads }, () => new Worker(FLOOR_WORKER, { eval: true }));
  const next = (w: Worker) =>
    new Promise<void>((resolve, reject) => {
      w.once("message", () => resolve());
      w.once("error", reject);
    });
  let cpu = 0; // of the parts timed last (crypto, fs with fsyncs): the judged floor's CPU
  const timed = async (message: (i: number) => object) => {
    const c = process.cpuUsage();
    const t = performance.now();
    await Promise.all(
      workers.map((w, i) => {
        const done = next(w);
        w.postMessage(message(i));
        return done;
      }),
    );
    const used = process.cpuUsage(c);
    cpu = (used.user + used.system) / 1e6;
    return (performance.now() - t) / 1000;
  };
  const files = async (fsyncs: number) => {
    const root = mkdtempSync(path.join(base, "mtlskit-floor-"));
    made.add(root);
    try {
      const services = path.join(root, "services");
      mkdirSync(services, { mode: 0o755 });
      return await timed((i) => ({ part: "fs", services, first: i, step: threads, n, fsyncsPer: fsyncs }));
    } finally {
      rmSync(root, { recursive: true, force: true });
      made.delete(root);
    }
  };
  try {
    await Promise.all(workers.map(next));
    const share = (i: number) => Math.floor(n / threads) + (i < n % threads ? 1 : 0);
    const cryptoEcdhS = await timed((i) => ({ part: "crypto", k: share(i), viaEcdh: true }));
    const cryptoS = await timed((i) => ({ part: "crypto", k: share(i), viaEcdh: false }));
    const cryptoCpu = cpu;
    const fsS = await files(0);
    const fsSyncS = fsyncsPer > 0 ? await files(fsyncsPer) : fsS;
    return { cryptoS, cryptoEcdhS, fsS, fsSyncS, cpuS: cryptoCpu + cpu };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

// ---------------------------------------------------------------------------------------------
// Micro (a child process: mtlskit's own key generation has hung before)

interface Micro {
  iterations: number;
  rawKeygenUs: number;
  rawSignUs: number;
  ecdhKeygenUs: number;
  generateKeyUs: number;
  jwkKeygenUs: number;
  generateKeyP384Us: number;
  jwkKeygenP384Us: number;
  tbsSignUs: number;
  tbsOnlyUs: number;
  signOnlyUs: number;
  pemUs: number;
  ioUs: number;
  ioMkdirUs: number;
  ioWritesUs: number;
  ioSyncDirUs: number;
  ioNoFsyncUs: number;
  ioBatchedUs: number;
}

/** perOpUs runs fn `iterations` times (after a short warm-up) and returns microseconds per call. */
function perOpUs(label: string, iterations: number, fn: (i: number) => void): number {
  say("progress", { phase: `micro: ${label}`, done: 0, total: iterations });
  for (let i = 0; i < Math.min(50, iterations); i++) fn(i);
  const t = performance.now();
  for (let i = 0; i < iterations; i++) fn(i);
  return ((performance.now() - t) * 1000) / iterations;
}

/**
 * jwkKeyMaker returns generateKey's EC path before it used ECDH (kept here only to compare in the same
 * run): generateKeyPairSync with JWK encodings, then PKCS#8 and SPKI built from the JWK with der.ts.
 */
async function jwkKeyMaker(): Promise<(curve: "P-256" | "P-384") => { pkcs8: Buffer; spki: Buffer }> {
  const { bitString, explicit, octetString, oid, seq, uint } = await import("../src/pki/der.ts");
  const curveOid = { "P-256": "1.2.840.10045.3.1.7", "P-384": "1.3.132.0.34" } as const;
  const gen = generateKeyPairSync as unknown as (type: "ec", options: object) => { privateKey: Record<string, string> };
  return (curve) => {
    const jwk = gen("ec", {
      namedCurve: curve,
      privateKeyEncoding: { format: "jwk" },
      publicKeyEncoding: { format: "jwk" },
    }).privateKey;
    const b = (k: string) => Buffer.from(jwk[k]!, "base64url");
    const point = Buffer.concat([Buffer.from([4]), b("x"), b("y")]);
    const alg = seq(oid("1.2.840.10045.2.1"), oid(curveOid[curve]));
    const ecPrivateKey = seq(uint(Buffer.from([1])), octetString(b("d")), explicit(1, bitString(point)));
    return { pkcs8: seq(uint(Buffer.from([0])), alg, octetString(ecPrivateKey)), spki: seq(alg, bitString(point)) };
  };
}

async function childMicro(iterations: number, dir: string): Promise<void> {
  const { generateKey } = await import("../src/pki/keys.ts");
  const ecKeyViaJwk = await jwkKeyMaker();
  const { encodeTbs, signTbs, keyIdOf, newSerial } = await import("../src/pki/issue.ts");
  const { encodeName } = await import("../src/pki/name.ts");
  const { encodePem } = await import("../src/pki/pem.ts");
  const { ensureDir, syncDir, writeFileAtomic } = await import("../src/state/fs.ts");
  const { LAYOUT, MODES } = await import("../src/state/layout.ts");

  const tbs300 = Buffer.alloc(300, 0x5a);
  const caRaw = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  const rawKeygenUs = perOpUs("keygen", iterations, () => void generateKeyPairSync("ec", { namedCurve: "P-256" }));
  const rawSignUs = perOpUs("sign", iterations, () => void sign("sha256", tbs300, caRaw));
  const ecdhKeygenUs = perOpUs("ecdh", iterations, () => {
    const e = createECDH("prime256v1");
    e.generateKeys();
    e.getPrivateKey();
    e.getPublicKey();
  });
  const generateKeyUs = perOpUs("generateKey", iterations, () => void generateKey("ecdsa-p256"));
  // The path generateKey took before ECDH, in the same run: this process has the watchdog above it.
  const jwkKeygenUs = perOpUs("generateKey via JWK (before)", iterations, () => void ecKeyViaJwk("P-256"));
  const generateKeyP384Us = perOpUs("generateKey P-384", iterations, () => void generateKey("ecdsa-p384"));
  const jwkKeygenP384Us = perOpUs("P-384 via JWK (before)", iterations, () => void ecKeyViaJwk("P-384"));

  const caKey = generateKey("ecdsa-p256");
  const issuer: Issuer = {
    subject: encodeName({ CN: "bench CA" }),
    keyId: keyIdOf(caKey.spki),
    keyType: "ecdsa-p256",
    privateKey: createPrivateKey({ key: caKey.pkcs8, format: "der", type: "pkcs8" }),
  };
  const leaf = generateKey("ecdsa-p256");
  const now = Date.now();
  const spec: CertSpec = {
    profile: "dual",
    subject: { CN: "s1" },
    dns: ["s1", "s1.bench.internal"],
    ips: [Buffer.from([10, 0, 0, 1])],
    uris: ["spiffe://bench.local/dual/s1"],
    keyType: "ecdsa-p256",
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(now + 90 * 86_400_000),
  };
  let der: Buffer = Buffer.alloc(0);
  const tbsSignUs = perOpUs("encodeTbs+signTbs", iterations, () => {
    der = signTbs(encodeTbs(spec, issuer, leaf.spki, newSerial()), issuer);
  });
  const tbsOnlyUs = perOpUs("encodeTbs", iterations, () => void encodeTbs(spec, issuer, leaf.spki, newSerial()));
  const tbs = encodeTbs(spec, issuer, leaf.spki, newSerial());
  const signOnlyUs = perOpUs("signTbs", iterations, () => void signTbs(tbs, issuer));
  let keyPem = "";
  let certPem = "";
  const pemUs = perOpUs("pem", iterations, () => {
    keyPem = encodePem("PRIVATE KEY", leaf.pkcs8);
    certPem = encodePem("CERTIFICATE", der);
  });
  const caPem = encodePem(
    "CERTIFICATE",
    signTbs(
      encodeTbs({ ...spec, profile: "ca", subject: { CN: "bench CA" } }, issuer, caKey.spki, newSerial()),
      issuer,
    ),
  );

  // Durable I/O per service, file by file (writeFileAtomic: temp file, fsync, rename), then one
  // fsync of the service directory: the scheme before apply's batches (jobs.ts runJobs, one syncfs
  // per 64 services), kept as the reference the batched comparison below is read against.
  say("progress", { phase: "micro: durable I/O", done: 0, total: iterations });
  const services = path.join(dir, "services");
  mkdirSync(services);
  let ioMkdir = 0;
  let ioWrites = 0;
  let ioSync = 0;
  const tAll = performance.now();
  for (let i = 0; i < iterations; i++) {
    const sd = path.join(services, `s${i}`);
    const a = performance.now();
    ensureDir(sd, MODES.privateDir);
    const b = performance.now();
    const slot = { service: `s${i}`, kind: "main" as const };
    writeFileAtomic(path.join(dir, LAYOUT.key(slot).rel), keyPem, LAYOUT.key(slot).mode);
    writeFileAtomic(path.join(dir, LAYOUT.cert(slot).rel), certPem, LAYOUT.cert(slot).mode);
    writeFileAtomic(path.join(dir, LAYOUT.bundle(slot.service).rel), caPem, LAYOUT.bundle(slot.service).mode);
    const c = performance.now();
    syncDir(sd);
    const d = performance.now();
    ioMkdir += b - a;
    ioWrites += c - b;
    ioSync += d - c;
  }
  const ioUs = ((performance.now() - tAll) * 1000) / iterations;

  // Comparison 1: the same files without any fsync (what durability costs).
  say("progress", { phase: "micro: I/O without fsync", done: 0, total: iterations });
  const files = (sd: string) =>
    [
      ["key.pem", keyPem, 0o600],
      ["cert.pem", certPem, 0o644],
      ["ca.pem", caPem, 0o644],
    ].map(([name, data, mode]) => ({
      file: path.join(sd, name as string),
      tmp: path.join(sd, `.tmp-${name as string}`),
      data: Buffer.from(data as string),
      mode: mode as number,
    }));
  const plain = path.join(dir, "plain");
  mkdirSync(plain);
  const tPlain = performance.now();
  for (let i = 0; i < iterations; i++) {
    const sd = path.join(plain, `s${i}`);
    mkdirSync(sd, { mode: 0o700 });
    for (const f of files(sd)) {
      const fd = openSync(f.tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, f.mode);
      writeSync(fd, f.data);
      closeSync(fd);
      renameSync(f.tmp, f.file);
    }
  }
  const ioNoFsyncUs = ((performance.now() - tPlain) * 1000) / iterations;

  // Comparison 2: equally durable, fsyncs batched: for 100 services at a time, create and write
  // every temp file, then fsync them all, rename them all, and fsync each directory once.
  say("progress", { phase: "micro: I/O, fsyncs batched", done: 0, total: iterations });
  const batched = path.join(dir, "batched");
  mkdirSync(batched);
  const tBatch = performance.now();
  for (let start = 0; start < iterations; start += 100) {
    const open: { fd: number; tmp: string; file: string }[] = [];
    const dirs: string[] = [];
    for (let i = start; i < Math.min(start + 100, iterations); i++) {
      const sd = path.join(batched, `s${i}`);
      mkdirSync(sd, { mode: 0o700 });
      dirs.push(sd);
      for (const f of files(sd)) {
        const fd = openSync(f.tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, f.mode);
        writeSync(fd, f.data);
        open.push({ fd, tmp: f.tmp, file: f.file });
      }
    }
    for (const o of open) {
      fsyncSync(o.fd);
      closeSync(o.fd);
    }
    for (const o of open) renameSync(o.tmp, o.file);
    for (const sd of dirs) syncDir(sd);
  }
  syncDir(batched);
  const ioBatchedUs = ((performance.now() - tBatch) * 1000) / iterations;

  const out: Micro = {
    iterations,
    rawKeygenUs,
    rawSignUs,
    ecdhKeygenUs,
    generateKeyUs,
    jwkKeygenUs,
    generateKeyP384Us,
    jwkKeygenP384Us,
    tbsSignUs,
    tbsOnlyUs,
    signOnlyUs,
    pemUs,
    ioUs,
    ioMkdirUs: (ioMkdir * 1000) / iterations,
    ioWritesUs: (ioWrites * 1000) / iterations,
    ioSyncDirUs: (ioSync * 1000) / iterations,
    ioNoFsyncUs,
    ioBatchedUs,
  };
  say("result", out);
}

// ---------------------------------------------------------------------------------------------
// Parent: runs children under a progress watchdog

const made = new Set<string>();
const mounted: string[] = [];
function cleanup(): void {
  for (const d of made) rmSync(d, { recursive: true, force: true });
  made.clear();
  for (const m of mounted.splice(0)) {
    spawnSync("umount", [m], { stdio: "ignore" });
    rmSync(m, { recursive: true, force: true });
  }
}
process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});

type Outcome<T> = { ok: T } | { hung: string } | { error: string };

/**
 * CHILD_LAUNCHER starts a child: it registers tsx through its API, in the main thread only, then
 * imports this file (the argument after it). A child started with `--import tsx` instead hands that flag to every
 * worker thread apply starts (execArgv is inherited), and each then loads tsx (measured: ~130 ms
 * of CPU per worker), which `mtlskit apply` (plain JavaScript) never pays. The -r preload that
 * counts fsyncs is still inherited, as it must be.
 */
const CHILD_LAUNCHER = `import { register } from ${JSON.stringify(import.meta.resolve("tsx/esm/api"))};
import { pathToFileURL } from "node:url";
register();
process.argv.splice(1, 1); // argv[1] is this file's as a direct start's would be
await import(pathToFileURL(process.argv[1]).href);
`;

/** The -r preload that counts fsyncs in a child's threads, and the child launcher, written once per run. */
let preloadFile: string | undefined;
let launcherFile: string | undefined;
function preload(): string {
  if (preloadFile === undefined) {
    const d = mkdtempSync(path.join(tmpdir(), "mtlskit-bench-preload-"));
    made.add(d);
    preloadFile = path.join(d, "count-fsyncs.cjs");
    writeFileSync(preloadFile, FSYNC_PRELOAD);
    launcherFile = path.join(d, "launch-child.mjs");
    writeFileSync(launcherFile, CHILD_LAUNCHER);
  }
  return preloadFile;
}

/**
 * runChild runs this file with `args` in a fresh process and a fresh temporary directory under
 * `base`, and returns its `result` line. A child silent for --stall seconds is killed and reported
 * as hung, with the last progress it reported.
 */
function runChild<T>(args: string[], base: string, stallS: number): Promise<Outcome<T>> {
  const dir = mkdtempSync(path.join(base, "mtlskit-bench-"));
  made.add(dir);
  return new Promise<Outcome<T>>((resolve) => {
    const c = spawn(
      process.execPath,
      ["-r", preload(), launcherFile!, SELF, ...args, "--child-dir", dir, "--mix", values.mix, "--from", values.from],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, BENCH_FSYNC_LOG: path.join(dir, "fsyncs.log") } },
    );
    let out = "";
    let err = "";
    let last = "started";
    let result: T | undefined;
    let hung = false;
    const started = performance.now();
    let timer = setTimeout(onStall, stallS * 1000);
    function onStall() {
      hung = true;
      c.kill("SIGKILL"); // a thread stuck on a lock ignores everything gentler
    }
    c.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      clearTimeout(timer);
      timer = setTimeout(onStall, stallS * 1000);
      out += chunk;
      let nl: number;
      while ((nl = out.indexOf("\n")) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        if (line.startsWith("progress ")) {
          const p = JSON.parse(line.slice(9)) as { phase: string; done: number; total: number };
          last = `${p.phase} ${p.done}/${p.total}`;
        } else if (line.startsWith("result ")) result = JSON.parse(line.slice(7)) as T;
      }
    });
    c.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
    c.on("close", (code, signal) => {
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      made.delete(dir);
      const secs = ((performance.now() - started) / 1000).toFixed(0);
      if (hung) resolve({ hung: `no progress for ${stallS} s, killed after ${secs} s; last progress: ${last}` });
      else if (code === 0 && result !== undefined) resolve({ ok: result });
      else
        resolve({
          error: `exited with ${signal ?? `code ${code}`} after ${secs} s; last progress: ${last}; stderr: ${err.trim().split("\n").slice(-6).join(" | ") || "(empty)"}`,
        });
    });
  });
}

/** fsTypeOf names the file system holding `p`, from /proc/mounts (Linux); best effort. */
function fsTypeOf(p: string): string {
  try {
    let best = { mount: "", type: "?", dev: "" };
    for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
      const [dev, mount, type] = line.split(" ");
      if (
        dev &&
        mount &&
        type &&
        (p === mount || p.startsWith(mount.endsWith("/") ? mount : mount + "/")) &&
        mount.length >= best.mount.length
      )
        best = { mount, type, dev };
    }
    return `${best.type} ${best.dev} on ${best.mount}`;
  } catch {
    return "unknown file system";
  }
}

const isTmpfs = (p: string) => statfsSync(p).type === TMPFS_MAGIC;

/** tmpfsDir: --tmpfs, else /dev/shm when it is a tmpfs, else (as root) a tmpfs mounted for this run. */
function tmpfsDir(): { dir: string; how: string } {
  if (values.tmpfs !== undefined) {
    if (!isTmpfs(values.tmpfs)) fail(`--tmpfs ${values.tmpfs} is not on a tmpfs (${fsTypeOf(values.tmpfs)})`);
    return { dir: values.tmpfs, how: "--tmpfs" };
  }
  if (existsSync("/dev/shm") && isTmpfs("/dev/shm")) return { dir: "/dev/shm", how: "/dev/shm is a tmpfs" };
  if (process.getuid?.() !== 0)
    fail("/dev/shm is not a tmpfs; pass --tmpfs DIR (a directory on a tmpfs), or run as root");
  const m = mkdtempSync(path.join(tmpdir(), "mtlskit-bench-tmpfs-"));
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", "size=2g,mode=0700", "tmpfs", m], { encoding: "utf8" });
  if (r.status !== 0) fail(`/dev/shm is not a tmpfs and mounting one on ${m} failed: ${r.stderr.trim()}`);
  mounted.push(m);
  return { dir: m, how: `/dev/shm is not a tmpfs: mounted a 2 GB tmpfs on ${m} for this run` };
}

/** diskDir: --disk, else os.tmpdir() when it is not a tmpfs. */
function diskDir(): { dir: string; how: string } {
  const d = values.disk ?? tmpdir();
  if (isTmpfs(d)) fail(`${d} is on a tmpfs; pass --disk DIR (a directory on the root disk)`);
  return { dir: d, how: values.disk !== undefined ? "--disk" : "os.tmpdir()" };
}

/** ensureDist rebuilds dist/ with tsc when a file under src/ is newer than dist/index.js. */
function ensureDist(): string {
  const entry = path.join(REPO, "dist", "index.js");
  const built = existsSync(entry) ? statSync(entry).mtimeMs : 0;
  const newest = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce(
      (m, e) =>
        Math.max(m, e.isDirectory() ? newest(path.join(dir, e.name)) : statSync(path.join(dir, e.name)).mtimeMs),
      0,
    );
  if (built >= newest(path.join(REPO, "src"))) return "dist/ is up to date";
  const r = spawnSync(path.join(REPO, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"], {
    cwd: REPO,
    encoding: "utf8",
  });
  if (r.status !== 0) fail(`building dist/ failed (tsc -p tsconfig.build.json):\n${r.stdout}${r.stderr}`);
  return "dist/ rebuilt with tsc -p tsconfig.build.json (src/ was newer)";
}

const loadLine = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
const pad = (s: string | number, w: number) => String(s).padStart(w);
const f2 = (x: number) => x.toFixed(2);
const int = (x: number) => Math.round(x).toLocaleString("en");

interface Run {
  fs: string;
  n: number;
  workers: string;
  before?: Floor;
  after?: Floor;
  loadBefore: string;
  loadAfter?: string;
  r?: ChildResult;
  problem?: string;
  hung?: boolean;
}

async function main(): Promise<void> {
  const started = performance.now();
  const sizes = values.sizes.split(",").map((s) => Number(s.trim()));
  if (sizes.some((n) => !Number.isInteger(n) || n < 1))
    fail(`--sizes must be positive integers separated by commas; got ${values.sizes}`);
  const workerList = values.workers === undefined ? ["default"] : values.workers.split(",").map((w) => w.trim());
  if (values.workers !== undefined && workerList.some((w) => !/^[0-9]+$/.test(w)))
    fail(`--workers must be whole numbers separated by commas; got ${values.workers}`);
  const microIterations = Number(values.micro);
  if (!Number.isInteger(microIterations) || microIterations < 0)
    fail(`--micro must be a whole number; got ${values.micro}`);
  const stallS = Number(values.stall);
  if (!(stallS > 0)) fail(`--stall must be a positive number of seconds; got ${values.stall}`);
  const maxS = Number(values["max-minutes"]) * 60;
  if (!(maxS > 0)) fail(`--max-minutes must be a positive number; got ${values["max-minutes"]}`);
  const fsList = values.fs.split(",").map((s) => s.trim());
  if (fsList.some((f) => f !== "tmpfs" && f !== "disk")) fail(`--fs takes tmpfs and/or disk; got ${values.fs}`);
  const cores = availableParallelism();
  const defaultWorkers = Math.min(cores, 4);
  const overTime = () => (performance.now() - started) / 1000 > maxS;

  const places = new Map<string, { dir: string; how: string }>();
  for (const f of fsList) places.set(f, f === "tmpfs" ? tmpfsDir() : diskDir());
  const built = values.from === "dist" ? ensureDist() : "";

  console.log(`mtlskit apply benchmark`);
  console.log(
    `  machine: ${cores} cores (${cpus()[0]?.model.trim() ?? "unknown CPU"}), node ${process.version}, ${process.platform}; load average ${loadLine()}`,
  );
  console.log(
    `  apply from ${values.from === "src" ? "src/ (TypeScript via tsx, also in workers)" : `dist/ (built JavaScript; ${built})`}`,
  );
  console.log(
    `  manifest: ${values.mix === "dual" ? "all dual" : "server/client/dual mix"}, ecdsa-p256 CA and leaves, 1 IP + 1 DNS address and a spiffe:// identity each`,
  );
  console.log(
    `  workers: ${workerList.map((w) => (w === "default" ? `apply's default (min(cores, 4) = ${defaultWorkers} for >= 64 services)` : w)).join(", ")}`,
  );
  for (const [f, p] of places) console.log(`  ${f}: ${p.dir} (${fsTypeOf(path.resolve(p.dir))}; ${p.how})`);
  console.log(
    `  floor = crypto (P-256 generateKeyPairSync + 1 ECDSA-SHA256 signature per certificate) + file system (per service mkdir + 3 files created, written, closed, renamed; with apply's fsync count, and without); each part split over ${cores} worker threads`,
  );

  // Calibration: how many fsyncs apply makes per service (every thread counted), on the tmpfs.
  const calBase = places.get("tmpfs")?.dir ?? places.get("disk")!.dir;
  const cal = await runChild<ChildResult>(
    ["--child", String(CALIBRATION_N), "--child-workers", "default"],
    calBase,
    stallS,
  );
  if (!("ok" in cal)) {
    console.log(
      `  calibration apply (${CALIBRATION_N} services): ${"hung" in cal ? `HUNG: ${cal.hung}` : `FAILED: ${cal.error}`}`,
    );
    process.exitCode = 1;
    return;
  }
  const fsyncsPer = cal.ok.fsyncs / CALIBRATION_N;
  console.log(
    `  apply's fsyncs: ${cal.ok.fsyncs} for ${CALIBRATION_N} services (${fsyncsPer.toFixed(3)} per service; calibration apply on ${calBase}); the floor "with fsyncs" makes as many`,
  );
  console.log();

  const runs: Run[] = [];
  for (const [fsName, place] of places) {
    for (const workers of workerList) {
      for (const n of sizes) {
        const run: Run = { fs: fsName, n, workers, loadBefore: loadLine() };
        runs.push(run);
        if (overTime()) {
          run.problem = `skipped: over --max-minutes ${values["max-minutes"]}`;
          console.log(`  ${fsName} N=${n} workers=${workers}: ${run.problem}`);
          continue;
        }
        process.stdout.write(`  ${fsName} N=${n} workers=${workers}: floor before ...`);
        run.before = await measureFloor(place.dir, n, fsyncsPer, cores);
        process.stdout.write(` ${f2(floorOf(run.before))} s; apply ...`);
        const o = await runChild<ChildResult>(["--child", String(n), "--child-workers", workers], place.dir, stallS);
        if ("ok" in o) {
          run.r = o.ok;
          process.stdout.write(` ${f2(o.ok.parseS + o.ok.applyS)} s (re-apply ${f2(o.ok.reParseS + o.ok.reApplyS)} s)`);
        } else {
          run.problem = "hung" in o ? o.hung : o.error;
          run.hung = "hung" in o;
          process.stdout.write(` ${run.hung ? "HUNG" : "FAILED"}`);
        }
        process.stdout.write("; floor after ...");
        run.after = await measureFloor(place.dir, n, fsyncsPer, cores);
        run.loadAfter = loadLine();
        console.log(` ${f2(floorOf(run.after))} s`);
      }
    }
  }
  console.log();
  report(runs, cores);

  // Micro: where one certificate's time goes.
  let microFailed = false;
  if (microIterations > 0 && !overTime()) {
    const o = await runChild<Micro>(["--child-micro", String(microIterations)], calBase, stallS);
    if (!("ok" in o)) {
      microFailed = true;
      console.log(`micro: ${"hung" in o ? `HUNG: ${o.hung}` : `FAILED: ${o.error}`}`);
    } else printMicro(o.ok, cores, defaultWorkers, workerList);
  } else if (microIterations > 0) console.log(`micro: skipped (over --max-minutes ${values["max-minutes"]})`);

  console.log(
    `\nload average at the end: ${loadLine()} (other processes on this machine skew every number above); ${((performance.now() - started) / 1000).toFixed(0)} s in all`,
  );
  const broken =
    runs.filter((r) => r.problem !== undefined && !r.problem.startsWith("skipped")).length + (microFailed ? 1 : 0);
  if (broken > 0) {
    console.log(
      `\n${broken} run(s) crashed or hung: see above. Exit status 1 (targets alone never fail the benchmark).`,
    );
    process.exitCode = 1;
  }
}

/** floorOf is the judged floor: crypto over both cores + the file-system work with apply's fsyncs. */
const floorOf = (f: Floor) => f.cryptoS + f.fsSyncS;
const mean = (a: number, b: number) => (a + b) / 2;

function report(runs: Run[], cores: number): void {
  const head = [
    "fs",
    "N",
    "workers",
    "wall s",
    "floor s",
    "before",
    "after",
    "RATIO",
    "no-fsync",
    "ecdh",
    "cpu",
    "peak MB",
    "fsyncs",
    "re-apply s",
    `target (ratio <= ${TARGET.ratio}, <= ${TARGET.rssMb} MB at ${TARGET.n.toLocaleString("en")})`,
  ];
  const widths = [5, 6, 7, 7, 7, 6, 6, 6, 8, 5, 5, 7, 7, 10, 0];
  const line = (cells: string[]) => "  " + cells.map((c, i) => (widths[i] ? pad(c, widths[i]!) : c)).join("  ");
  console.log(
    `apply wall (parse + apply, fresh process) against the floor (mean of right before and right after, same file system):`,
  );
  console.log(line(head));
  const verdicts: string[] = [];
  for (const run of runs) {
    const b = run.before;
    const a = run.after;
    const floor = b && a ? mean(floorOf(b), floorOf(a)) : Number.NaN;
    if (!run.r) {
      console.log(
        line([
          run.fs,
          String(run.n),
          run.workers,
          run.hung ? "HUNG" : run.problem?.startsWith("skipped") ? "skip" : "FAIL",
          f2(floor),
          "-",
          "-",
          "-",
          "-",
          "-",
          "-",
          "-",
          "-",
          "-",
          run.problem ?? "",
        ]),
      );
      if (run.n === TARGET.n) verdicts.push(`  ${run.fs}: not measured: ${run.problem}`);
      continue;
    }
    const r = run.r;
    const wall = r.parseS + r.applyS;
    const noSync = mean(b!.cryptoS + b!.fsS, a!.cryptoS + a!.fsS);
    const ecdh = mean(b!.cryptoEcdhS + b!.fsSyncS, a!.cryptoEcdhS + a!.fsSyncS);
    let target = "-";
    if (r.n === TARGET.n) {
      const ok = wall / floor <= TARGET.ratio;
      const m = r.peakMb <= TARGET.rssMb;
      target = `ratio ${ok ? "PASS" : "FAIL"}, RSS ${m ? "PASS" : "FAIL"}`;
      verdicts.push(
        `  ${run.fs}: ${f2(wall)} s / ${f2(floor)} s = ${(wall / floor).toFixed(2)} ${ok ? "<=" : ">"} ${TARGET.ratio}: ${ok ? "PASS" : "FAIL"}; peak RSS ${r.peakMb.toFixed(0)} MB ${m ? "<=" : ">"} ${TARGET.rssMb} MB: ${m ? "PASS" : "FAIL"}`,
      );
    }
    console.log(
      line([
        run.fs,
        String(r.n),
        run.workers,
        f2(wall),
        f2(floor),
        f2(floorOf(b!)),
        f2(floorOf(a!)),
        (wall / floor).toFixed(2),
        (wall / noSync).toFixed(2),
        (wall / ecdh).toFixed(2),
        (r.cpuS / mean(b!.cpuS, a!.cpuS)).toFixed(2),
        r.peakMb.toFixed(0),
        int(r.fsyncs),
        f2(r.reParseS + r.reApplyS),
        target,
      ]),
    );
  }
  console.log(
    `  RATIO = wall / floor with apply's fsyncs (the judged one); no-fsync = against the floor without any fsync; ecdh = against a floor whose keygen is createECDH (stricter); cpu = apply's CPU seconds (all threads, parse included) / the judged floor's (less swayed by other processes' load than wall time)`,
  );
  console.log();
  console.log(`  details (cpu = user + system of all threads; busy = cpu / wall, out of ${cores} cores):`);
  for (const run of runs) {
    const fl = (f: Floor | undefined, label: string) =>
      f
        ? `${label}: crypto ${f2(f.cryptoS)} s (createECDH keygen ${f2(f.cryptoEcdhS)} s) + fs ${f2(f.fsSyncS)} s with fsyncs (${f2(f.fsS)} s without); CPU ${f2(f.cpuS)} s`
        : `${label}: -`;
    console.log(
      `  ${run.fs} N=${run.n} w=${run.workers}: load average before ${run.loadBefore}, after ${run.loadAfter ?? "-"}`,
    );
    console.log(`    ${fl(run.before, "floor before")}`);
    console.log(`    ${fl(run.after, "floor after ")}`);
    const r = run.r;
    if (!r) {
      console.log(`    apply: ${run.problem}`);
      continue;
    }
    const wall = r.parseS + r.applyS;
    console.log(
      `    apply: parse ${f2(r.parseS)} s + apply ${f2(r.applyS)} s, cpu ${f2(r.cpuS)} s (system ${f2(r.sysS)} s; busy ${(r.cpuS / wall).toFixed(2)}), ${int(r.fsyncs)} fsyncs; ` +
        `RSS base ${r.rssBaseMb.toFixed(0)} MB, sampled peak ${r.sampledPeakMb.toFixed(0)} MB (${r.samples} samples), maxRSS ${r.maxRssBeforeMb.toFixed(0)} -> ${r.maxRssAfterMb.toFixed(0)} MB` +
        (r.warnings > 0 ? `; ${r.warnings} manifest warnings` : ""),
    );
    console.log(
      `    unchanged re-apply: parse ${f2(r.reParseS)} s + apply ${f2(r.reApplyS)} s, cpu ${f2(r.reCpuS)} s, ${r.reKept} kept, ${int(r.reFsyncs)} fsyncs, sampled peak ${r.reSampledPeakMb.toFixed(0)} MB, maxRSS at end ${r.maxRssEndMb.toFixed(0)} MB`,
    );
  }
  console.log();
  if (verdicts.length > 0) {
    console.log(
      `target (issue 12): apply / floor <= ${TARGET.ratio} on tmpfs and on disk, peak RSS <= ${TARGET.rssMb} MB, at ${TARGET.n.toLocaleString("en")} services:`,
    );
    for (const v of verdicts) console.log(v);
  } else console.log(`target: not checked (N=${TARGET.n} was not run)`);
  console.log();
}

function printMicro(m: Micro, cores: number, defaultWorkers: number, workerList: string[]): void {
  const cpuUs = m.generateKeyUs + m.tbsSignUs + m.pemUs;
  const totalUs = cpuUs + m.ioUs;
  const pct = (x: number) => `${((x / totalUs) * 100).toFixed(0)}%`.padStart(4);
  const us = (x: number) => `${x.toFixed(1)} µs`.padStart(10);
  console.log(
    `micro: ${m.iterations} iterations each, a fresh process, 1 thread (per operation; % of one certificate)`,
  );
  console.log(`  node:crypto generateKeyPairSync P-256, KeyObject (floor part)      ${us(m.rawKeygenUs)}`);
  console.log(`  node:crypto sign sha256, 300 B (floor part)                        ${us(m.rawSignUs)}`);
  console.log(`  node:crypto createECDH P-256 generateKeys (comparison)             ${us(m.ecdhKeygenUs)}`);
  console.log(
    `  generateKey('ecdsa-p256') from src/pki/keys.ts                     ${us(m.generateKeyUs)}  ${pct(m.generateKeyUs)}`,
  );
  console.log(
    `    before (generateKeyPairSync + JWK + der.ts), same run: P-256 ${m.jwkKeygenUs.toFixed(1)} µs (now ${(m.jwkKeygenUs / m.generateKeyUs).toFixed(1)}x faster); P-384 ${m.jwkKeygenP384Us.toFixed(1)} µs -> ${m.generateKeyP384Us.toFixed(1)} µs (${(m.jwkKeygenP384Us / m.generateKeyP384Us).toFixed(1)}x)`,
  );
  console.log(
    `  encodeTbs + signTbs                                                ${us(m.tbsSignUs)}  ${pct(m.tbsSignUs)}`,
  );
  console.log(
    `    of which encodeTbs ${m.tbsOnlyUs.toFixed(1)} µs, signTbs ${m.signOnlyUs.toFixed(1)} µs (timed apart)`,
  );
  console.log(`  encodePem key + cert                                               ${us(m.pemUs)}  ${pct(m.pemUs)}`);
  console.log(`  durable I/O per service: mkdir + 3 x writeFileAtomic + syncDir     ${us(m.ioUs)}  ${pct(m.ioUs)}`);
  console.log(
    `    of which mkdir ${m.ioMkdirUs.toFixed(1)} µs, 3 writes ${m.ioWritesUs.toFixed(1)} µs (${(m.ioWritesUs / 3).toFixed(1)} per file), syncDir ${m.ioSyncDirUs.toFixed(1)} µs`,
  );
  console.log(`  same files, no fsync at all (comparison)                           ${us(m.ioNoFsyncUs)}`);
  console.log(`  same files, as durable, fsyncs batched per 100 services (comp.)    ${us(m.ioBatchedUs)}`);
  console.log(
    `  one certificate, 1 thread: ${totalUs.toFixed(0)} µs = CPU ${cpuUs.toFixed(0)} µs + durable I/O ${m.ioUs.toFixed(0)} µs (of which fsyncs ~${Math.max(0, m.ioUs - m.ioNoFsyncUs).toFixed(0)} µs)`,
  );
  const counts = [...new Set([1, cores, defaultWorkers, ...workerList.filter((x) => x !== "default").map(Number)])]
    .filter((x) => x > 0)
    .sort((a, b) => a - b);
  for (const w of counts) {
    const par = Math.min(w, cores);
    console.log(
      `  projection, ${TARGET.n.toLocaleString("en")} with ${w} worker(s), CPU over ${par} core(s), I/O over ${w} thread(s): ` +
        `CPU ${f2((cpuUs * TARGET.n) / 1e6 / par)} s + I/O ${f2((m.ioUs * TARGET.n) / 1e6 / w)} s (batched fsyncs ${f2((m.ioBatchedUs * TARGET.n) / 1e6 / w)} s, no fsync ${f2((m.ioNoFsyncUs * TARGET.n) / 1e6 / w)} s)`,
    );
  }
  console.log(
    `  (projections ignore parsing, planning, worker start-up and fsyncs sharing one journal; compare with the table)`,
  );
}

try {
  if (values.child !== undefined || values["child-micro"] !== undefined) {
    const dir = values["child-dir"] ?? fail("a child needs --child-dir");
    if (values.child !== undefined) await childApply(Number(values.child), dir, values["child-workers"] ?? "default");
    else await childMicro(Number(values["child-micro"]), dir);
  } else {
    await main();
  }
} finally {
  cleanup();
}
