/**
 * What importing each package entry costs an app, measured from the built dist/ through the
 * package's own "exports" (a child `node` per measurement, so nothing is cached): the number of
 * modules loaded (ES modules through a resolve hook, CommonJS ones through require.cache) and the
 * import's wall time, the median of five runs. Issue 12: `mtlskit/service` is the service
 * library without the rest of the tool.
 *
 *   npm run build && npm run bench:entries
 */
import { execFileSync } from "node:child_process";
import { cpus, loadavg } from "node:os";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";

const REPO = path.resolve(import.meta.dirname, "..");
const ENTRIES = ["mtlskit", "mtlskit/service", "mtlskit/grpc"];
const RUNS = 5;

/** HOOK logs every module URL resolved (node:* left out) to the file in $MODLOG. */
const HOOK = `import { appendFileSync } from "node:fs";
export async function resolve(spec, ctx, next) {
  const r = await next(spec, ctx);
  if (!r.url.startsWith("node:")) appendFileSync(process.env.MODLOG, r.url + "\\n");
  return r;
}`;
const dataUrl = (source: string) => `data:text/javascript,${encodeURIComponent(source)}`;
const REGISTER = dataUrl(`import { register } from "node:module"; register(${JSON.stringify(dataUrl(HOOK))});`);

function modules(spec: string): number {
  const dir = mkdtempSync(path.join(tmpdir(), "mtlskit-entries-"));
  try {
    const code = `import { createRequire } from "node:module"; import { readFileSync } from "node:fs";
      await import(${JSON.stringify(spec)});
      const esm = new Set(readFileSync(process.env.MODLOG, "utf8").split("\\n").filter(Boolean));
      const cjs = Object.keys(createRequire(process.cwd() + "/x.js").cache).filter((f) => !esm.has("file://" + f));
      console.log(esm.size + cjs.length);`;
    return Number(
      execFileSync(process.execPath, ["--import", REGISTER, "--input-type=module", "-e", code], {
        cwd: REPO,
        env: { ...process.env, MODLOG: path.join(dir, "log") },
      }).toString(),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function millis(spec: string): number[] {
  const code = `const t = performance.now(); await import(${JSON.stringify(spec)}); console.log(performance.now() - t);`;
  return Array.from({ length: RUNS }, () =>
    Number(execFileSync(process.execPath, ["--input-type=module", "-e", code], { cwd: REPO }).toString()),
  ).sort((a, b) => a - b);
}

console.log(
  `bench: importing each entry from dist/; ${cpus().length} cores, load ${loadavg()
    .map((l) => l.toFixed(1))
    .join(" ")}`,
);
for (const spec of ENTRIES) {
  const t = millis(spec);
  console.log(
    `${spec.padEnd(16)} ${String(modules(spec)).padStart(4)} modules  ${t[RUNS >> 1]!.toFixed(0).padStart(4)} ms (median of ${RUNS}; min ${t[0]!.toFixed(0)})`,
  );
}
