/**
 * `npm run bench`: apply throughput and memory.
 *
 * For each size N (default 1,000 and 10,000 ecdsa-p256 services, each with one IP and one DNS
 * address and the identity spiffe://bench.local/{role}/{name}) a FRESH child process parses the
 * manifest and applies it into a new temporary directory, durably written, then applies it again
 * unchanged (everything kept). Each size runs in its own process so the RSS of one size cannot
 * pollute the next. Peak RSS is sampled every 20 ms (worker threads share the process) and
 * cross-checked with getrusage's maxRSS, which also covers synchronous stretches the sampler
 * cannot see (parsing, in-process issuing).
 *
 * The floor is measured first, in this process, in the same run: node:crypto P-256 key generation
 * plus one ECDSA signature per certificate, no encoding, no I/O, single-threaded. The floor divided
 * by the number of cores is the "ideal parallel floor". A micro section (its own child process)
 * then times the pieces of one certificate: key generation (also the JWK path generateKey used
 * before ECDH, P-256 and P-384, for the before/after ratio), TBS encoding and signing, PEM, and
 * the durable I/O, with two comparisons (no fsync at all; fsyncs batched per 100 services).
 *
 * Children report progress on stdout; one that reports nothing for --stall seconds is killed and
 * reported as HUNG (a hang is a result too: Node 20's EC JWK export once deadlocked apply).
 *
 * Target (the issue): 10,000 services in at most 5 s wall and at most 300 MB peak RSS on 2 cores.
 * This is a benchmark, not a test: it exits 0 whether or not the target is met, and 1 only when a
 * run crashed or hung, i.e. when it could not measure.
 *
 *   npm run bench [-- --sizes 1000,10000] [--workers N[,M...]] [--mix mixed|dual]
 *                 [--from src|dist] [--micro 1000] [--stall 60] [--dir DIR]
 *
 *   --workers   ApplyOptions.workers; a list runs every size with each value. Default: apply's own.
 *   --mix       mixed: services cycle server, client, dual; dual: every service dual. Default: mixed.
 *   --from      src: apply from the TypeScript sources (workers register tsx themselves, which adds
 *               their start-up to wall time and RSS); dist: the built package (`npm run build`).
 *   --micro     iterations of each micro measurement; 0 skips the section. Default: 1000.
 *   --stall     seconds without progress after which a child counts as hung. Default: 60.
 *   --dir       where temporary directories are made. Default: os.tmpdir().
 */
import { spawn } from "node:child_process";
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
  writeSync,
} from "node:fs";
import { availableParallelism, cpus, loadavg, tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import type { CertSpec, Issuer } from "../src/pki/issue.ts";

type ApplyModule = Pick<typeof import("../src/index.ts"), "apply" | "parseManifest">;

const SELF = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(SELF), "..");
const TARGET = { n: 10_000, wallS: 5, rssMb: 300 } as const;
const MB = 2 ** 20;

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "1000,10000" },
    workers: { type: "string" },
    mix: { type: "string", default: "mixed" },
    from: { type: "string", default: "src" },
    micro: { type: "string", default: "1000" },
    stall: { type: "string", default: "60" },
    dir: { type: "string", default: tmpdir() },
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
// Child: one size, in a fresh process

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
  const { apply, parseManifest } = await loadApply(values.from);
  const text = manifestText(n, values.mix);
  const pki = path.join(dir, "pki");
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
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const loaded = parseManifest(text, "bench.yaml");
    const t1 = performance.now();
    const r = await apply(loaded, pki, opts);
    const t2 = performance.now();
    const cpu1 = process.cpuUsage(cpu0);
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
    const cpu2 = process.cpuUsage();
    const t3 = performance.now();
    const again = parseManifest(text, "bench.yaml");
    const t4 = performance.now();
    const r2 = await apply(again, pki, opts);
    const t5 = performance.now();
    const cpu3 = process.cpuUsage(cpu2);
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
      reSampledPeakMb: reSampledPeak / MB,
      maxRssEndMb: (process.resourceUsage().maxRSS * 1024) / MB,
    };
    say("result", out);
  } finally {
    clearInterval(sampler);
  }
}

// ---------------------------------------------------------------------------------------------
// The floor (parent process)

/** floorSeconds: N × (P-256 key generation + one ECDSA-SHA256 signature over 300 bytes), one thread. */
function floorSeconds(n: number): number {
  const ca = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  const tbs = Buffer.alloc(300, 0x5a);
  for (let i = 0; i < 100; i++) {
    // warm-up
    generateKeyPairSync("ec", { namedCurve: "P-256" });
    sign("sha256", tbs, ca);
  }
  const t = performance.now();
  for (let i = 0; i < n; i++) {
    generateKeyPairSync("ec", { namedCurve: "P-256" });
    sign("sha256", tbs, ca);
  }
  return (performance.now() - t) / 1000;
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

  // Durable I/O per service, as runJob does it: mkdir, key, cert, bundle (each: temp file,
  // fsync, rename), then one fsync of the service directory. Timed by part.
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
function cleanup(): void {
  for (const d of made) rmSync(d, { recursive: true, force: true });
  made.clear();
}
process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});

type Outcome<T> = { ok: T } | { hung: string } | { error: string };

/**
 * runChild runs this file with `args` in a fresh process and a fresh temporary directory, and
 * returns its `result` line. A child silent for --stall seconds is killed and reported as hung,
 * with the last progress it reported.
 */
function runChild<T>(args: string[], stallS: number): Promise<Outcome<T>> {
  const dir = mkdtempSync(path.join(values.dir, "mtlskit-bench-"));
  made.add(dir);
  return new Promise<Outcome<T>>((resolve) => {
    const c = spawn(
      process.execPath,
      ["--import", "tsx", SELF, ...args, "--child-dir", dir, "--mix", values.mix, "--from", values.from],
      { stdio: ["ignore", "pipe", "pipe"] },
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
    let best = { mount: "", type: "?" };
    for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
      const [, mount, type] = line.split(" ");
      if (
        mount &&
        type &&
        (p === mount || p.startsWith(mount.endsWith("/") ? mount : mount + "/")) &&
        mount.length > best.mount.length
      )
        best = { mount, type };
    }
    return `${best.type} on ${best.mount}`;
  } catch {
    return "unknown file system";
  }
}

const loadLine = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
const pad = (s: string | number, w: number) => String(s).padStart(w);
const f2 = (x: number) => x.toFixed(2);

async function main(): Promise<void> {
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
  const cores = availableParallelism();
  const defaultWorkers = Math.min(cores, 4);

  console.log(`mtlskit apply benchmark`);
  console.log(
    `  machine: ${cores} cores (${cpus()[0]?.model.trim() ?? "unknown CPU"}), node ${process.version}, ${process.platform}; load average ${loadLine()}`,
  );
  console.log(
    `  temp dirs under ${values.dir} (${fsTypeOf(path.resolve(values.dir))}); apply from ${values.from === "src" ? "src/ (TypeScript via tsx, also in workers)" : "dist/ (built JavaScript)"}`,
  );
  console.log(
    `  manifest: ${values.mix === "dual" ? "all dual" : "server/client/dual mix"}, ecdsa-p256 CA and leaves, 1 IP + 1 DNS address and a spiffe:// identity each`,
  );
  console.log(
    `  workers: ${workerList.map((w) => (w === "default" ? `apply's default (min(cores, 4) = ${defaultWorkers} for >= 64 services)` : w)).join(", ")}`,
  );
  console.log();

  // 1. The floor, in this process, before anything else.
  console.log(
    `floor: node:crypto P-256 keygen + 1 ECDSA-SHA256 signature (300 B) per certificate; no encoding, no I/O; 1 thread`,
  );
  const floors = new Map<number, number>();
  for (const n of sizes) {
    const s = floorSeconds(n);
    floors.set(n, s);
    console.log(
      `  N=${pad(n, 6)}  floor ${f2(s)} s  (${((s * 1e6) / n).toFixed(0)} µs/cert)  ideal parallel floor (÷ ${cores} cores) ${f2(s / cores)} s`,
    );
  }
  console.log();

  // 2. Each size (and worker count) in a fresh child process.
  type Row = { n: number; workers: string } & ({ r: ChildResult } | { problem: string; hung: boolean });
  const rows: Row[] = [];
  for (const workers of workerList) {
    for (const n of sizes) {
      process.stdout.write(`  running N=${n} workers=${workers} ...`);
      const o = await runChild<ChildResult>(["--child", String(n), "--child-workers", workers], stallS);
      if ("ok" in o) {
        console.log(` ${f2(o.ok.parseS + o.ok.applyS)} s (+ re-apply ${f2(o.ok.reParseS + o.ok.reApplyS)} s)`);
        rows.push({ n, workers, r: o.ok });
      } else {
        const problem = "hung" in o ? o.hung : o.error;
        console.log(` ${"hung" in o ? "HUNG" : "FAILED"}: ${problem}`);
        rows.push({ n, workers, problem, hung: "hung" in o });
      }
    }
  }
  console.log();

  const head = [
    "N",
    "workers",
    "wall s",
    "certs/s",
    "peak RSS MB",
    "floor s",
    "ideal s",
    "wall/floor",
    "wall/ideal",
    "re-apply s",
    `target (${TARGET.n.toLocaleString("en")}: <= ${TARGET.wallS} s, <= ${TARGET.rssMb} MB)`,
  ];
  const widths = [6, 7, 7, 8, 11, 7, 7, 10, 10, 10, 0];
  const line = (cells: string[]) => "  " + cells.map((c, i) => (widths[i] ? pad(c, widths[i]!) : c)).join("  ");
  const wname = (w: string) => (w === "default" ? `def(${defaultWorkers})` : w);
  console.log(line(head));
  const verdicts: string[] = [];
  for (const row of rows) {
    const floor = floors.get(row.n)!;
    const ideal = floor / cores;
    if (!("r" in row)) {
      const what = row.hung ? "HUNG" : "FAILED";
      console.log(
        line([
          String(row.n),
          wname(row.workers),
          what,
          "-",
          "-",
          f2(floor),
          f2(ideal),
          "-",
          "-",
          "-",
          row.n === TARGET.n ? `FAIL (${what.toLowerCase()})` : "-",
        ]),
      );
      if (row.n === TARGET.n)
        verdicts.push(`  N=${TARGET.n} workers=${row.workers}: FAIL, apply ${what.toLowerCase()}: ${row.problem}`);
      continue;
    }
    const r = row.r;
    const wall = r.parseS + r.applyS;
    let target = "-";
    if (r.n === TARGET.n) {
      const w = wall <= TARGET.wallS ? "PASS" : "FAIL";
      const m = r.peakMb <= TARGET.rssMb ? "PASS" : "FAIL";
      target = `wall ${w}, RSS ${m}`;
      verdicts.push(
        `  N=${TARGET.n} workers=${r.workers}: wall ${f2(wall)} s ${w === "PASS" ? "<=" : ">"} ${TARGET.wallS} s: ${w}; peak RSS ${r.peakMb.toFixed(0)} MB ${m === "PASS" ? "<=" : ">"} ${TARGET.rssMb} MB: ${m}`,
      );
    }
    console.log(
      line([
        String(r.n),
        wname(r.workers),
        f2(wall),
        Math.round(r.n / wall).toString(),
        r.peakMb.toFixed(0),
        f2(floor),
        f2(ideal),
        (wall / floor).toFixed(1) + "x",
        (wall / ideal).toFixed(1) + "x",
        f2(r.reParseS + r.reApplyS),
        target,
      ]),
    );
  }
  console.log();
  console.log(
    `  details (wall = parse + apply; cpu = user + system of all threads; busy = cpu / wall, out of ${cores} cores)`,
  );
  for (const row of rows) {
    if (!("r" in row)) {
      console.log(`  N=${pad(row.n, 6)} w=${row.workers}: ${row.hung ? "HUNG" : "FAILED"}: ${row.problem}`);
      continue;
    }
    const r = row.r;
    const wall = r.parseS + r.applyS;
    console.log(
      `  N=${pad(r.n, 6)} w=${r.workers}: parse ${f2(r.parseS)} s, apply ${f2(r.applyS)} s, cpu ${f2(r.cpuS)} s (of which system ${f2(r.sysS)} s; busy ${(r.cpuS / wall).toFixed(2)}); ` +
        `RSS base ${r.rssBaseMb.toFixed(0)} MB, sampled peak ${r.sampledPeakMb.toFixed(0)} MB (${r.samples} samples), maxRSS ${r.maxRssBeforeMb.toFixed(0)} -> ${r.maxRssAfterMb.toFixed(0)} MB (delta ${(r.maxRssAfterMb - r.maxRssBeforeMb).toFixed(0)})`,
    );
    console.log(
      `  ${" ".repeat(8)} re-apply: parse ${f2(r.reParseS)} s, apply ${f2(r.reApplyS)} s, cpu ${f2(r.reCpuS)} s, ${r.reKept} kept, sampled peak ${r.reSampledPeakMb.toFixed(0)} MB, maxRSS at end ${r.maxRssEndMb.toFixed(0)} MB` +
        (r.warnings > 0 ? `; ${r.warnings} manifest warnings` : ""),
    );
  }
  console.log();
  if (verdicts.length > 0) {
    console.log(
      `target, 10,000 services on 2 cores in <= ${TARGET.wallS} s wall and <= ${TARGET.rssMb} MB peak RSS (this machine: ${cores} cores):`,
    );
    for (const v of verdicts) console.log(v);
  } else {
    console.log(`target: not checked (N=${TARGET.n} was not run)`);
  }
  console.log();

  // 3. Micro: where one certificate's time goes.
  let microFailed = false;
  if (microIterations > 0) {
    const o = await runChild<Micro>(["--child-micro", String(microIterations)], stallS);
    if (!("ok" in o)) {
      microFailed = true;
      console.log(`micro: ${"hung" in o ? `HUNG: ${o.hung}` : `FAILED: ${o.error}`}`);
    } else {
      const m = o.ok;
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
      console.log(
        `  encodePem key + cert                                               ${us(m.pemUs)}  ${pct(m.pemUs)}`,
      );
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
  }

  console.log(`\nload average at the end: ${loadLine()} (other processes on this machine skew every number above)`);
  const broken = rows.filter((r) => !("r" in r)).length + (microFailed ? 1 : 0);
  if (broken > 0) {
    console.log(
      `\n${broken} run(s) crashed or hung: see above. Exit status 1 (targets alone never fail the benchmark).`,
    );
    process.exitCode = 1;
  }
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
