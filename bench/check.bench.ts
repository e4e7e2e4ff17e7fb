/**
 * `npm run bench:check`: how fast `mtlskit check` judges a large cluster.
 *
 * Builds (once, with `mtlskit apply`) a PKI of N dual ecdsa-p256 services, each with one IP
 * address and the identity spiffe://bench.local/{role}/{name}, and C connections per service
 * (service i dials i+1, i+2, ...). Then, in this process and the same run:
 *
 *   floor   node:crypto only: `new X509Certificate(der)` and `verify(caKey)` for every leaf,
 *           from DER already in memory (no file I/O, no PEM, no judging);
 *   read    the same leaf files read from disk and PEM-decoded, as a second, I/O floor;
 *   check   loadManifest + checkPki (read every cert, key and bundle, lint, simulate every
 *           connection), reported per phase, best of --runs.
 *
 * Target (issue 3): 10,000 services and 20,000 connections in at most 5 s on a 2-core machine.
 * A benchmark, not a test: it always exits 0 unless it could not measure.
 *
 *   npm run bench:check [-- --services 10000] [--per 2] [--runs 3] [--pki DIR] [--from src|dist]
 *
 *   --pki   reuse (or create) the PKI at DIR; without it a temporary one is made and removed.
 */
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { apply } from "../src/plan/apply.ts";
import { loadManifest } from "../src/manifest/index.ts";
import { checkInventory, Material, readInventory } from "../src/check/index.ts";
import { parseCertificatesPem } from "../src/pki/pem.ts";

const { values } = parseArgs({
  options: {
    services: { type: "string", default: "10000" },
    per: { type: "string", default: "2" },
    runs: { type: "string", default: "3" },
    pki: { type: "string" },
  },
  strict: true,
});
const N = Number(values.services);
const PER = Number(values.per);
const RUNS = Number(values.runs);

function manifestText(n: number, per: number): string {
  const lines = [
    "version: 1",
    "cluster: bench",
    "identity:",
    '  uri: "spiffe://bench.local/{role}/{name}"',
    "defaults: { key: ecdsa-p256, validity: 90d }",
    "services:",
  ];
  for (let i = 0; i < n; i++)
    lines.push(`  s${i}: { usage: dual, addresses: [10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}] }`);
  lines.push("connections:");
  for (let i = 0; i < n; i++) for (let k = 1; k <= per; k++) lines.push(`  - { from: s${i}, to: s${(i + k) % n} }`);
  return lines.join("\n") + "\n";
}

const ms = (t: number) => `${t.toFixed(0).padStart(6)} ms`;
const time = <T>(f: () => T): [T, number] => {
  const t = performance.now();
  const r = f();
  return [r, performance.now() - t];
};

const root = values.pki ?? mkdtempSync(path.join(tmpdir(), "mtlskit-bench-check-"));
const file = path.join(root, "mtlskit.yaml");
const dir = path.join(root, "pki");
console.log(
  `bench: check of ${N} services, ${N * PER} connections; ${cpus().length} cores, load ${loadavg()
    .map((l) => l.toFixed(1))
    .join(" ")}`,
);
const text = manifestText(N, PER);
if (!existsSync(file) || readFileSync(file, "utf8") !== text) writeFileSync(file, text);
{
  const t = performance.now();
  const r = await apply(loadManifest(file), dir, {});
  console.log(`setup: apply (${r.issued} issued, ${r.kept} kept) in ${ms(performance.now() - t)}`);
}

// Floors, on the same certificates.
const leafFiles = Array.from({ length: N }, (_, i) => path.join(dir, "services", `s${i}`, "cert.pem"));
const [ders, readMs] = time(() => leafFiles.map((f) => parseCertificatesPem(readFileSync(f, "utf8"))[0]!));
const caKey = new X509Certificate(readFileSync(path.join(dir, "ca", "ca.pem"))).publicKey;
let floorMs = Infinity;
for (let r = 0; r < RUNS; r++) {
  const [ok, t] = time(() => ders.every((d) => new X509Certificate(d).verify(caKey)));
  if (!ok) throw new Error("bench: a leaf did not verify");
  floorMs = Math.min(floorMs, t);
}

// check, best of RUNS, per phase.
let best = { total: Infinity, load: 0, read: 0, judge: 0, errors: 0, warnings: 0, rss: 0 };
for (let r = 0; r < RUNS; r++) {
  const t0 = performance.now();
  const [loaded, load] = time(() => loadManifest(file));
  const material = new Material();
  const [inv, read] = time(() => readInventory(material, loaded.manifest, dir));
  const [report, judge] = time(() => checkInventory(material, loaded.manifest, inv));
  const total = performance.now() - t0;
  if (report.connections.length !== N * PER) throw new Error("bench: connection count differs");
  if (total < best.total)
    best = {
      total,
      load,
      read,
      judge,
      errors: report.errors,
      warnings: report.warnings,
      rss: process.memoryUsage().rss,
    };
}
console.log(
  `floor: node:crypto parse + verify of ${N} leaves      ${ms(floorMs)}  (${((floorMs / N) * 1000).toFixed(0)} µs per certificate)`,
);
console.log(`floor: read + PEM-decode the same ${N} files          ${ms(readMs)}`);
console.log(`check: load manifest                                 ${ms(best.load)}`);
console.log(`check: read inventory (certs, keys, bundles)         ${ms(best.read)}`);
console.log(`check: judge (lints, chains, ${N * PER} connections)  ${ms(best.judge)}`);
console.log(
  `check: total                                         ${ms(best.total)}  = ${(best.total / floorMs).toFixed(2)}x the crypto floor, ${(best.total / (floorMs + readMs)).toFixed(2)}x crypto + I/O floor`,
);
console.log(
  `check: ${best.errors} errors, ${best.warnings} warnings (expect 0, 0); RSS ${(best.rss / 2 ** 20).toFixed(0)} MB`,
);
console.log(
  `target: ${N === 10_000 && PER === 2 ? (best.total <= 5000 ? "met" : "NOT met") : "n/a at this size"} (10,000 services and 20,000 connections in at most 5 s)`,
);
if (!values.pki) rmSync(root, { recursive: true, force: true });
