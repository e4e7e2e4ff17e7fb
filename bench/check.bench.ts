/**
 * `npm run bench:check`: how fast, and in how much memory, `mtlskit check` judges a large cluster.
 *
 * Builds (once, with apply, reused with --pki) a PKI of N ecdsa-p256 services per mix, each with
 * one IP address, one DNS name and the identity spiffe://bench.local/{role}/{name}:
 *   dual    every service dual; service i dials i+1 ... i+C (C = --per);
 *   mixed   services cycle server, client, dual; each client or dual service dials the next C
 *           services that accept (server or dual), so about 2/3 N x C connections.
 * Then, per mix and in the same run, each measurement in a FRESH child process (so the RSS of one
 * cannot pollute another, and apply's none of them):
 *
 *   floor   node:crypto only: `new X509Certificate(der)` and `verify(caKey)` for every leaf, from
 *           DER already in memory (no file I/O, no PEM, no judging), best of --runs;
 *   read    the same leaf files read from disk and PEM-decoded, as a second, I/O floor;
 *   check   what `mtlskit check --json` does: loadManifest, checkPki (read every cert, key and
 *           bundle, lint, simulate every connection), the JSON text written out (to a file here);
 *           timed per phase.
 * The floors are measured before and after the check runs and the lower of each is used. The
 * time ratio is check's total (manifest + check + JSON, best of --runs) over the crypto floor,
 * and over crypto + read floors; the same ratios of CPU time (user + system) are printed too, as
 * they are less swayed by other processes on a loaded machine.
 *
 * Peak RSS of a check child: its VmRSS sampled every 20 ms from /proc by this process, and its
 * own getrusage maxRSS (which also sees the peaks between samples); "peak" is the larger.
 *
 * --code DIR,DIR compares checkouts in the same run (each DIR/src is measured, runs alternate
 * between them so load hits both alike): e.g. `mkdir /tmp/base && git archive REV src package.json
 * | tar -x -C /tmp/base && ln -s "$PWD/node_modules" /tmp/base/`, then --code /tmp/base,. (a
 * snapshot of the working tree the same way keeps edits out of a run). Each child writes the
 * JSON report (judged at one fixed time), and the bench says whether every checkout's output is
 * byte-identical to the first one's.
 *
 * Measured at 10,000 services (2 cores, load 7-11, same run, before -> after issue 12's memory
 * work): peak RSS dual 239 -> 205 MB, mixed 232 -> 206 MB; CPU time over the crypto floor's
 * 2.78 -> 2.71x (dual), 2.75 -> 2.67x (mixed); JSON byte-identical.
 *
 * Targets: 10,000 services and 20,000 connections in at most 5 s (issue 3); peak RSS at most
 * 300 MB (issue 12). A benchmark, not a test: it exits 0 unless it could not measure.
 *
 *   npm run bench:check [-- --services 10000] [--per 2] [--runs 3] [--mix dual,mixed]
 *                       [--pki DIR] [--code DIR[,DIR]] [--from src|dist]
 *
 *   --pki   reuse (or create) the PKIs under DIR (DIR/MIX/); without it temporary ones are made and removed.
 *   --from  src: the TypeScript sources through tsx; dist: the built package (`npm run build`).
 */
import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const SELF = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(SELF), "..");
const MB = 2 ** 20;
const TARGET = { n: 10_000, per: 2, totalMs: 5000, rssMb: 300 } as const;
/** NOW: the time every child judges at, so that outputs of different checkouts can be compared byte for byte. */
const NOW = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10) + "T00:00:00.000Z";

const { values } = parseArgs({
  options: {
    services: { type: "string", default: "10000" },
    per: { type: "string", default: "2" },
    runs: { type: "string", default: "3" },
    mix: { type: "string", default: "dual,mixed" },
    pki: { type: "string" },
    code: { type: "string", default: REPO },
    from: { type: "string", default: "src" },
    // internal: what a child process runs
    child: { type: "string" },
    dir: { type: "string" },
    out: { type: "string" },
    now: { type: "string" },
  },
  strict: true,
});
const N = Number(values.services);
const PER = Number(values.per);
const RUNS = Number(values.runs);

function fail(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(1);
}
if (values.from !== "src" && values.from !== "dist") fail(`--from must be src or dist; got ${values.from}`);

/** modulePath: a module of checkout `code`, from its sources or its build. */
const modulePath = (code: string, mod: string) =>
  pathToFileURL(path.join(code, values.from === "src" ? `src/${mod}.ts` : `dist/${mod}.js`)).href;

// ---------------------------------------------------------------------------------------------
// The manifests

const USAGE_CYCLE = ["server", "client", "dual"] as const;

function manifestText(n: number, per: number, mix: string): string {
  const lines = [
    "version: 1",
    "cluster: bench",
    "identity:",
    '  uri: "spiffe://bench.local/{role}/{name}"',
    "defaults: { key: ecdsa-p256, validity: 90d }",
    "services:",
  ];
  const usage = (i: number) => (mix === "dual" ? "dual" : USAGE_CYCLE[i % 3]!);
  for (let i = 0; i < n; i++)
    lines.push(
      `  s${i}: { usage: ${usage(i)}, addresses: [10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}, s${i}.bench.internal] }`,
    );
  lines.push("connections:");
  const accepts = Array.from({ length: n }, (_, i) => i).filter((i) => usage(i) !== "client");
  const next = (i: number) => accepts.findIndex((j) => j > i);
  for (let i = 0; i < n; i++) {
    if (usage(i) === "server") continue;
    const from = next(i);
    for (let k = 0; k < per; k++) {
      const to = accepts[(Math.max(from, 0) + k) % accepts.length]!;
      if (to !== i) lines.push(`  - { from: s${i}, to: s${to} }`);
    }
  }
  return lines.join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------
// Children

interface CheckResult {
  manifestMs: number;
  checkMs: number;
  outputMs: number;
  totalMs: number;
  /** cpuMs: user + system CPU time of manifest + check + JSON (less swayed by other load than wall time). */
  cpuMs: number;
  errors: number;
  warnings: number;
  connections: number;
  /** rss after each phase, MB. */
  rss: { manifest: number; check: number; output: number };
  maxRssMb: number;
}

interface FloorResult {
  readMs: number;
  cryptoMs: number;
  /** cryptoCpuMs: CPU time of the best crypto floor run. */
  cryptoCpuMs: number;
  readCpuMs: number;
}

const say = (payload: unknown) => writeOut(`result ${JSON.stringify(payload)}\n`);
const writeOut = (t: string) => process.stdout.write(t);

async function childCheck(code: string, dir: string, out: string): Promise<void> {
  const { loadManifest } = (await import(
    modulePath(code, "manifest/index")
  )) as typeof import("../src/manifest/index.ts");
  const checkModule = (await import(modulePath(code, "check/index"))) as typeof import("../src/check/index.ts");
  const { checkPki, reportJson } = checkModule;
  const rss = () => Math.round(process.memoryUsage.rss() / MB);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const loaded = loadManifest(path.join(dir, "mtlskit.yaml"));
  const t1 = performance.now();
  const r1 = rss();
  const report = checkPki(loaded.manifest, path.join(dir, "pki"), { now: new Date(values.now ?? NOW) });
  const t2 = performance.now();
  const r2 = rss();
  // As `mtlskit check --json` writes it: in pieces where the checkout has reportJsonText, else one string.
  const fd = openSync(out, "w");
  if (typeof checkModule.reportJsonText === "function")
    for (const p of checkModule.reportJsonText(report)) writeSync(fd, p);
  else writeSync(fd, JSON.stringify(reportJson(report), null, 2) + "\n");
  closeSync(fd);
  const t3 = performance.now();
  const cpu = process.cpuUsage(c0);
  const result: CheckResult = {
    manifestMs: t1 - t0,
    checkMs: t2 - t1,
    outputMs: t3 - t2,
    totalMs: t3 - t0,
    cpuMs: (cpu.user + cpu.system) / 1000,
    errors: report.errors,
    warnings: report.warnings,
    connections: report.connections.length,
    rss: { manifest: r1, check: r2, output: rss() },
    maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
  };
  say(result);
}

async function childFloor(dir: string): Promise<void> {
  const { parseCertificatesPem } = (await import(modulePath(REPO, "pki/pem"))) as typeof import("../src/pki/pem.ts");
  const n = readFileSync(path.join(dir, "mtlskit.yaml"), "utf8").match(/^ {2}s\d+:/gm)?.length ?? 0;
  const files = Array.from({ length: n }, (_, i) => path.join(dir, "pki", "services", `s${i}`, "cert.pem"));
  const cpuOf = (c: NodeJS.CpuUsage) => (c.user + c.system) / 1000;
  const c0 = process.cpuUsage();
  const t = performance.now();
  const ders = files.map((f) => parseCertificatesPem(readFileSync(f, "utf8"))[0]!);
  const readMs = performance.now() - t;
  const readCpuMs = cpuOf(process.cpuUsage(c0));
  const caKey = new X509Certificate(readFileSync(path.join(dir, "pki", "ca", "ca.pem"))).publicKey;
  let cryptoMs = Infinity;
  let cryptoCpuMs = Infinity;
  for (let r = 0; r < RUNS; r++) {
    const c = process.cpuUsage();
    const t = performance.now();
    if (!ders.every((d) => new X509Certificate(d).verify(caKey))) fail("a leaf did not verify");
    cryptoMs = Math.min(cryptoMs, performance.now() - t);
    cryptoCpuMs = Math.min(cryptoCpuMs, cpuOf(process.cpuUsage(c)));
  }
  say({ readMs, cryptoMs, cryptoCpuMs, readCpuMs } satisfies FloorResult);
}

if (values.child !== undefined) {
  if (values.child === "check") await childCheck(values.code, values.dir!, values.out!);
  else if (values.child === "floor") await childFloor(values.dir!);
  else fail(`unknown child ${values.child}`);
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// Parent

/** vmRss reads a process's resident set from /proc (Linux), in MB; undefined when it cannot. */
function vmRss(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** runChild runs this file as a child; returns its result line and the highest RSS sampled every 20 ms. */
function runChild<T>(args: string[]): Promise<{ result: T; sampledMb: number; samples: number; wallMs: number }> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn(process.execPath, [...(values.from === "src" ? ["--import", "tsx"] : []), SELF, ...args], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    let sampledMb = 0;
    let samples = 0;
    const timer = setInterval(() => {
      const r = vmRss(child.pid!);
      if (r !== undefined) (sampledMb = Math.max(sampledMb, r)), samples++;
    }, 20);
    child.stdout.on("data", (d: Buffer) => void (out += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      clearInterval(timer);
      const line = out.split("\n").find((l) => l.startsWith("result "));
      if (code !== 0 || !line) return reject(new Error(`child ${args.join(" ")} exited ${code}`));
      resolve({ result: JSON.parse(line.slice(7)) as T, sampledMb, samples, wallMs: performance.now() - t });
    });
  });
}

const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
const ms = (t: number) => `${t.toFixed(0).padStart(6)} ms`;
const codes = values.code.split(",").map((c) => path.resolve(c));
const root = values.pki ?? mkdtempSync(path.join(tmpdir(), "mtlskit-bench-check-"));
const outDir = mkdtempSync(path.join(tmpdir(), "mtlskit-bench-check-out-"));

console.log(
  `bench: check of ${N} services (--per ${PER}, --runs ${RUNS}, --from ${values.from}); ${cpus().length} cores, load ${load()}`,
);
const { apply } = (await import(modulePath(REPO, "plan/apply"))) as typeof import("../src/plan/apply.ts");
const { loadManifest } = (await import(
  modulePath(REPO, "manifest/index")
)) as typeof import("../src/manifest/index.ts");

for (const mix of values.mix.split(",")) {
  if (mix !== "dual" && mix !== "mixed") fail(`--mix takes dual and mixed; got ${mix}`);
  const dir = path.join(root, mix);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "mtlskit.yaml");
  const text = manifestText(N, PER, mix);
  if (!existsSync(file) || readFileSync(file, "utf8") !== text) writeFileSync(file, text);
  const t = performance.now();
  const r = await apply(loadManifest(file), path.join(dir, "pki"), {});
  const conns = text.split("\n").filter((l) => l.startsWith("  - {")).length;
  console.log(
    `\n[${mix}] ${N} services, ${conns} connections; setup: apply (${r.issued} issued, ${r.kept} kept) in ${ms(performance.now() - t)}`,
  );

  const floors: FloorResult[] = [];
  const floor = async () =>
    floors.push((await runChild<FloorResult>(["--child", "floor", "--dir", dir, "--runs", String(RUNS)])).result);
  await floor();
  const runs = new Map<
    string,
    { r: CheckResult; sampledMb: number; samples: number; wallMs: number; load: string }[]
  >();
  for (let i = 0; i < RUNS; i++)
    for (const code of codes) {
      const out = path.join(outDir, `${mix}-${codes.indexOf(code)}.json`);
      const l = load();
      const c = await runChild<CheckResult>([
        "--child",
        "check",
        "--code",
        code,
        "--dir",
        dir,
        "--out",
        out,
        "--now",
        NOW,
      ]);
      if (c.result.connections !== conns) fail(`${code}: ${c.result.connections} connections judged, not ${conns}`);
      runs.set(code, [
        ...(runs.get(code) ?? []),
        { r: c.result, sampledMb: c.sampledMb, samples: c.samples, wallMs: c.wallMs, load: l },
      ]);
    }
  await floor();
  const cryptoMs = Math.min(...floors.map((f) => f.cryptoMs));
  const readMs = Math.min(...floors.map((f) => f.readMs));
  const cryptoCpuMs = Math.min(...floors.map((f) => f.cryptoCpuMs));
  const readCpuMs = Math.min(...floors.map((f) => f.readCpuMs));
  console.log(
    `floor: node:crypto parse + verify of ${N} leaves   ${ms(cryptoMs)}  (${((cryptoMs / N) * 1000).toFixed(0)} µs per certificate; before/after ${floors.map((f) => f.cryptoMs.toFixed(0)).join("/")})`,
  );
  console.log(`floor: read + PEM-decode the same ${N} files       ${ms(readMs)}`);
  console.log(`floor: CPU time of the same                        ${ms(cryptoCpuMs)} crypto, ${ms(readCpuMs)} read`);
  const first = readFileSync(path.join(outDir, `${mix}-0.json`));
  for (const code of codes) {
    const rs = runs.get(code)!;
    const best = rs.reduce((a, b) => (b.r.totalMs < a.r.totalMs ? b : a));
    const bestCpu = Math.min(...rs.map((x) => x.r.cpuMs));
    const peak = Math.max(...rs.map((x) => Math.max(x.sampledMb, x.r.maxRssMb)));
    const label = codes.length > 1 ? `check ${path.relative(process.cwd(), code) || "."}` : "check";
    console.log(`${label}:`);
    for (const x of rs)
      console.log(
        `  run: total ${ms(x.r.totalMs)}, CPU ${ms(x.r.cpuMs)} (manifest ${x.r.manifestMs.toFixed(0)}, check ${x.r.checkMs.toFixed(0)}, json ${x.r.outputMs.toFixed(0)}; process ${x.wallMs.toFixed(0)} ms)  RSS sampled ${x.sampledMb.toFixed(0)} MB (${x.samples} samples), maxRSS ${x.r.maxRssMb} MB; after phases ${x.r.rss.manifest}/${x.r.rss.check}/${x.r.rss.output} MB; load ${x.load}`,
      );
    console.log(
      `  best total ${ms(best.r.totalMs)}  = ${(best.r.totalMs / cryptoMs).toFixed(2)}x the crypto floor, ${(best.r.totalMs / (cryptoMs + readMs)).toFixed(2)}x crypto + I/O floor; by CPU time ${(bestCpu / cryptoCpuMs).toFixed(2)}x, ${(bestCpu / (cryptoCpuMs + readCpuMs)).toFixed(2)}x; peak RSS ${peak.toFixed(0)} MB; ${best.r.errors} errors, ${best.r.warnings} warnings (expect 0, 0)`,
    );
    if (codes.indexOf(code) > 0) {
      const same = readFileSync(path.join(outDir, `${mix}-${codes.indexOf(code)}.json`)).equals(first);
      console.log(`  JSON output ${same ? "byte-identical to" : "DIFFERS from"} ${codes[0]}'s (${first.length} bytes)`);
    }
    if (N === TARGET.n && PER === TARGET.per)
      console.log(
        `  target: time ${best.r.totalMs <= TARGET.totalMs ? "met" : "NOT met"} (at most 5 s), RSS ${peak <= TARGET.rssMb ? "met" : "NOT met"} (at most 300 MB)`,
      );
  }
}
console.log(`load at the end: ${load()}`);
rmSync(outDir, { recursive: true, force: true });
if (!values.pki) rmSync(root, { recursive: true, force: true });
