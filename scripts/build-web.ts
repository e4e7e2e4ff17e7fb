/**
 * Build step of the dashboard's front end (`npm run build`, issue 17): src/ui/web/ bundled by
 * esbuild (the one file that imports it) into dist/ui/web/: index.html, app.js (the page, Preact
 * included), app.css. No hashed names: `mtlskit ui` serves whatever is in that folder, index.html
 * at `/`, the rest under `/assets/`. `node --import tsx scripts/build-web.ts [OUTDIR]`; the browser
 * tests call buildWeb into a folder of their own (the sources of this run, never a stale dist/).
 */
import { copyFileSync, mkdirSync, rmSync, statSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { build } from "esbuild";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SRC = path.join(REPO, "src/ui/web");
const OUT = path.join(REPO, "dist/ui/web");

/** buildWeb bundles the front end into `out` (emptied first) and returns each file's size in bytes. */
export async function buildWeb(out = OUT): Promise<Record<string, number>> {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  await build({
    entryPoints: [
      { in: path.join(SRC, "main.tsx"), out: "app" },
      { in: path.join(SRC, "app.css"), out: "app" },
    ],
    outdir: out,
    bundle: true,
    minify: true,
    format: "esm",
    target: ["chrome109", "firefox115", "safari16"],
    jsx: "transform",
    jsxFactory: "h",
    jsxFragment: "Fragment",
    tsconfig: path.join(REPO, "tsconfig.web.json"),
    legalComments: "eof",
    logLevel: "warning",
  });
  copyFileSync(path.join(SRC, "index.html"), path.join(out, "index.html"));
  return Object.fromEntries(["index.html", "app.js", "app.css"].map((f) => [f, statSync(path.join(out, f)).size]));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const out = path.resolve(process.argv[2] ?? OUT);
  const sizes = await buildWeb(out);
  console.log(
    `build-web: ${path.relative(REPO, out) || out}: ${Object.entries(sizes)
      .map(([f, n]) => `${f} ${n} B`)
      .join(", ")}`,
  );
}
