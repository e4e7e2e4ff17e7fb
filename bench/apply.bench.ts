/**
 * `npm run bench`: apply throughput. For 1,000 and 10,000 ecdsa-p256 services, each size in a
 * fresh child process, it measures parse + apply (durably written) and a no-op re-apply, peak
 * RSS, and the ratio to a floor measured in the same run: node:crypto P-256 key generation plus
 * one ECDSA signature per certificate, no encoding, no I/O, divided by the cores in use.
 *
 *   npm run bench [-- --sizes 1000,10000] [--dir /tmp] [--workers N]
 */
import { spawnSync } from "node:child_process";
import { generateKeyPairSync, sign } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
// The built package (npm ci builds it), so workers run the same JavaScript users run.
import { apply, parseManifest } from "../dist/index.js";

const { values } = parseArgs({
  options: { sizes: { type: "string", default: "1000,10000" }, dir: { type: "string", default: tmpdir() }, workers: { type: "string" }, child: { type: "string" } },
});

/** manifestText declares n dual services with one IP and one DNS address each. */
function manifestText(n: number): string {
  const lines = ["version: 1", "cluster: bench", 'identity: { uri: "spiffe://bench.local/{role}/{name}" }', "services:"];
  for (let i = 0; i < n; i++) lines.push(`  s${i}: { usage: dual, addresses: [10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}, s${i}.bench.internal] }`);
  return lines.join("\n") + "\n";
}

/** floorSeconds: key generation plus one signature per certificate, single-threaded. */
function floorSeconds(n: number): number {
  const ca = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  const tbs = Buffer.alloc(300, 7);
  const t = performance.now();
  for (let i = 0; i < n; i++) {
    generateKeyPairSync("ec", { namedCurve: "P-256" });
    sign("sha256", tbs, ca);
  }
  return (performance.now() - t) / 1000;
}

interface ChildResult {
  n: number;
  parse: number;
  apply: number;
  reapply: number;
  /** peakRssMb: during parse and the first apply; reapplyPeakRssMb: over the whole run. */
  peakRssMb: number;
  reapplyPeakRssMb: number;
}

async function child(n: number): Promise<void> {
  const dir = mkdtempSync(path.join(values.dir, "mtlskit-bench-"));
  let peak = process.memoryUsage.rss();
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
  try {
    const workers = values.workers === undefined ? {} : { workers: Number(values.workers) };
    const t0 = performance.now();
    const loaded = parseManifest(manifestText(n), "bench.yaml");
    const t1 = performance.now();
    const r = await apply(loaded, path.join(dir, "pki"), workers);
    const t2 = performance.now();
    const applyPeak = Math.max(peak, process.memoryUsage.rss());
    const again = await apply(loaded, path.join(dir, "pki"), workers);
    const t3 = performance.now();
    if (r.issued !== n || again.issued !== 0) throw new Error(`bench: expected ${n} issued then 0, got ${r.issued} then ${again.issued}`);
    peak = Math.max(peak, process.memoryUsage.rss(), process.resourceUsage().maxRSS * 1024);
    const out: ChildResult = { n, parse: (t1 - t0) / 1000, apply: (t2 - t1) / 1000, reapply: (t3 - t2) / 1000, peakRssMb: applyPeak / 2 ** 20, reapplyPeakRssMb: peak / 2 ** 20 };
    process.stdout.write(JSON.stringify(out) + "\n");
  } finally {
    clearInterval(sampler);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (values.child) return child(Number(values.child));
  const sizes = values.sizes.split(",").map(Number);
  const cores = availableParallelism();
  console.log(`mtlskit apply benchmark: ${cores} cores, node ${process.version}, writing under ${values.dir}`);
  const rows: string[] = [];
  for (const n of sizes) {
    const floor = floorSeconds(n);
    const args = ["--import", "tsx", fileURLToPath(import.meta.url), "--child", String(n), "--dir", values.dir, ...(values.workers ? ["--workers", values.workers] : [])];
    const c = spawnSync(process.execPath, args, { encoding: "utf8", timeout: 300_000 });
    if (c.status !== 0) throw new Error(`bench child for ${n} failed: ${c.stderr}`);
    const r = JSON.parse(c.stdout.trim().split("\n").pop()!) as ChildResult;
    const wall = r.parse + r.apply;
    const ideal = floor / cores;
    rows.push(
      [
        String(n).padStart(6),
        wall.toFixed(2).padStart(7),
        Math.round(n / wall).toString().padStart(8),
        r.peakRssMb.toFixed(0).padStart(7),
        floor.toFixed(2).padStart(7),
        (wall / ideal).toFixed(1).padStart(6) + "x",
        r.parse.toFixed(2).padStart(6),
        r.reapply.toFixed(2).padStart(8),
        r.reapplyPeakRssMb.toFixed(0).padStart(9),
      ].join("  "),
    );
    if (n === 10000) rows.push(`        target 10,000 in <= 5 s wall: ${wall <= 5 ? "PASS" : "FAIL"} (${wall.toFixed(2)} s); peak RSS <= 300 MB: ${r.peakRssMb <= 300 ? "PASS" : "FAIL"} (${r.peakRssMb.toFixed(0)} MB)`);
  }
  console.log("     N   wall s   certs/s  RSS MB  floor s  /floor  parse s  reapply s  reapply RSS MB");
  for (const row of rows) console.log(row);
  console.log(`floor: P-256 keygen + 1 ECDSA signature per certificate, single-threaded; /floor = wall / (floor / ${cores} cores).`);
}

await main();
