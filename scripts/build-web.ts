/**
 * Build step of the dashboard's front end (`npm run build`, issue 17): src/ui/web/ bundled by
 * esbuild (the one file that imports it) into dist/ui/web/: index.html, app.js (the page, Preact
 * included), app.css. No hashed names: `mtlskit ui` serves whatever is in that folder, index.html
 * at `/`, the rest under `/assets/`, and sends them with `Cache-Control: no-cache`.
 */
import { copyFileSync, mkdirSync, rmSync, statSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SRC = path.join(REPO, "src/ui/web");
const OUT = path.join(REPO, "dist/ui/web");

rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });
await build({
  entryPoints: [
    { in: path.join(SRC, "main.tsx"), out: "app" },
    { in: path.join(SRC, "app.css"), out: "app" },
  ],
  outdir: OUT,
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
copyFileSync(path.join(SRC, "index.html"), path.join(OUT, "index.html"));
const sizes = ["index.html", "app.js", "app.css"].map((f) => `${f} ${statSync(path.join(OUT, f)).size} B`);
console.log(`build-web: dist/ui/web: ${sizes.join(", ")}`);
