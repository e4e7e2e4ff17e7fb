/**
 * `npm run test:interop`: runs every test/interop/*.interop.ts file under node:test and prints
 * one line per case (PASS or FAIL with the reason) and a summary line. Exit 0 when every case
 * passed, 1 when one failed, 3 when a tool is missing (the message names the install script).
 * Server logs, configs and PKIs live in one run directory: removed after a green run, kept (and
 * named) after a red one.
 *
 *   npm run test:interop                      # everything
 *   npm run test:interop -- nginx etcd        # only files whose names contain these words
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { run } from "node:test";

const here = import.meta.dirname;
const only = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith(".interop.ts"))
  .filter((f) => only.length === 0 || only.some((w) => f.includes(w)))
  .sort()
  .map((f) => path.join(here, f));
if (files.length === 0) {
  console.error(`interop: no test file matches ${only.join(", ")}`);
  process.exit(2);
}

const runDir = mkdtempSync(path.join(tmpdir(), "mtlskit-interop-"));
process.env.MTLSKIT_INTEROP_DIR = runDir;
// Each file runs in its own node process, which needs tsx to load TypeScript.
process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ""} --import tsx`.trim();

const started = Date.now();
let passed = 0;
let failed = 0;
let missingTool = false;

/** reason is the first line of a failure's message, with its cause when it has one. */
function reason(error: unknown): string {
  let e = error as { cause?: unknown; message?: string; code?: string } | undefined;
  if (e?.code === "ERR_TEST_FAILURE" && e.cause !== undefined) e = e.cause as typeof e;
  const msg = (e?.message ?? String(error)).trim();
  if (/is not installed; run/.test(msg)) missingTool = true;
  return msg.split("\n").slice(0, 12).join("\n      ");
}

const stream = run({ files, concurrency: 2, timeout: 600_000 });
for await (const ev of stream) {
  if (ev.type !== "test:pass" && ev.type !== "test:fail") continue;
  const d = ev.data as {
    name: string;
    nesting: number;
    file?: string;
    details: { duration_ms: number; type?: string; error?: unknown };
    skip?: unknown;
    todo?: unknown;
  };
  const file = path.basename(d.file ?? "?").replace(/\.interop\.ts$/, "");
  if (d.details.type === "suite") {
    if (ev.type === "test:fail" && d.nesting === 0) {
      const r = reason(d.details.error);
      if (!/subtests? failed/.test(r)) {
        failed++;
        console.log(`FAIL ${file} › ${d.name}: ${r}`);
      }
    }
    continue;
  }
  const ms = Math.round(d.details.duration_ms);
  if (ev.type === "test:pass") {
    if (d.skip !== undefined || d.todo !== undefined) {
      failed++; // the suite keeps no skipped cases: a skip is a failure to run
      console.log(`FAIL ${file} › ${d.name}: skipped`);
    } else {
      passed++;
      console.log(`PASS ${file} › ${d.name} (${ms} ms)`);
    }
  } else {
    failed++;
    console.log(`FAIL ${file} › ${d.name}: ${reason(d.details.error)}`);
  }
}

const secs = ((Date.now() - started) / 1000).toFixed(1);
console.log(`\ninterop: ${passed} passed, ${failed} failed, in ${secs} s (${files.length} files)`);
if (failed === 0) {
  rmSync(runDir, { recursive: true, force: true });
  process.exit(0);
}
console.log(`interop: server logs, configs and PKIs kept in ${runDir}`);
process.exit(missingTool && passed === 0 ? 3 : 1);
