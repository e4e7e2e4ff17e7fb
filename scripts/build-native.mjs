#!/usr/bin/env node
// `npm ci` / `npm install`'s install step: builds native/p256.cc (the online CA's P-256 request
// verifier, src/pki/native.ts) with node-gyp against Node's own headers. It is optional: where it
// cannot build (no compiler, no headers) mtlskit verifies through node:crypto, about three times
// slower per request, and this says so in one line and exits 0. MTLSKIT_NATIVE=require (CI) makes
// a failed build fail the install; MTLSKIT_NATIVE=0 skips the build.
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import * as path from "node:path";

const want = process.env.MTLSKIT_NATIVE;
if (want === "0") process.exit(0);

/** nodeGyp: npm's own node-gyp (npm names it to install scripts), else the one installed with npm beside node. */
function nodeGyp() {
  if (process.env.npm_config_node_gyp) return process.env.npm_config_node_gyp;
  const npmDirs = [
    ...(process.env.npm_execpath ? [path.dirname(path.dirname(process.env.npm_execpath))] : []),
    path.join(path.dirname(process.execPath), "..", "lib", "node_modules", "npm"),
  ];
  for (const dir of npmDirs)
    try {
      return createRequire(path.join(dir, "package.json")).resolve("node-gyp/bin/node-gyp.js");
    } catch {}
  return undefined;
}

const gyp = nodeGyp();
const run = gyp
  ? spawnSync(process.execPath, [gyp, "rebuild"], { stdio: ["ignore", "inherit", "inherit"] })
  : { status: 1, error: new Error("node-gyp was not found beside npm") };
if (run.status === 0) process.exit(0);
const why = run.error ? run.error.message : `node-gyp exited ${run.status}`;
console.error(
  `mtlskit: the native P-256 verifier was not built (${why}); mtlskit works without it, verifying requests through node:crypto (slower).` +
    "\n    fix: install python3, make and g++ (Debian: apt-get install python3 make g++), then run `npm rebuild mtlskit`",
);
process.exit(want === "require" ? 1 : 0);
