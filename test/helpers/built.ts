/**
 * The built package, for tests that run the CLI as plain JavaScript child processes (no tsx
 * start-up in the child, so a child's time goes to mtlskit's own work). buildPackage compiles
 * src/ with the build's tsconfig into a private folder laid out as npm installs the package
 * (bin/, dist/, package.json): it always matches the sources of this run (no stale dist/ after an
 * edit without `npm run build`), and no other test file that rebuilds dist/ meanwhile (`npm pack`
 * runs `prepare`) can change files under a running child. The folder sits under the repository's
 * node_modules/.cache, so the package's dependencies resolve from node_modules as they do for dist/.
 */
import { execFileSync, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import * as path from "node:path";

const REPO = path.resolve(import.meta.dirname, "../..");

const built: string[] = [];
process.on("exit", () => {
  for (const d of built) rmSync(d, { recursive: true, force: true });
});

/** buildPackage compiles the package into a fresh private folder (removed at exit) and returns the path of its bin/mtlskit.js. */
export function buildPackage(): string {
  const cache = path.join(REPO, "node_modules", ".cache");
  mkdirSync(cache, { recursive: true });
  const root = mkdtempSync(path.join(cache, "mtlskit-built-"));
  built.push(root);
  const tsc = path.join(REPO, "node_modules", "typescript", "bin", "tsc");
  execFileSync(
    process.execPath,
    [tsc, "-p", path.join(REPO, "tsconfig.build.json"), "--outDir", path.join(root, "dist"), "--declaration", "false"],
    { cwd: REPO, stdio: "pipe", timeout: 180_000 },
  );
  mkdirSync(path.join(root, "bin"));
  copyFileSync(path.join(REPO, "bin", "mtlskit.js"), path.join(root, "bin", "mtlskit.js"));
  copyFileSync(path.join(REPO, "package.json"), path.join(root, "package.json")); // "type": "module", and the version
  // The native P-256 verifier (src/pki/native.ts), where `npm ci` built it: at the same place under the root.
  const addon = path.join("build", "Release", "p256.node");
  if (existsSync(path.join(REPO, addon))) {
    mkdirSync(path.join(root, "build", "Release"), { recursive: true });
    copyFileSync(path.join(REPO, addon), path.join(root, addon));
  }
  return path.join(root, "bin", "mtlskit.js");
}

/** BuiltRun is how a run of the built CLI ended. */
export interface BuiltRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
  /** ms from spawn to exit. */
  ms: number;
}

/** runBuilt runs `node BIN ARGV...` with `env` added to this process's environment; throws when it has not exited within `timeoutMs` (default 60 s). */
export function runBuilt(
  bin: string,
  argv: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<BuiltRun> {
  return runNode([bin, ...argv], opts.env ?? {}, opts.timeoutMs);
}

/** runNode runs `node ARGV...` (plain, no tsx) with `env` added to this process's environment; throws when it has not exited within `timeoutMs`. */
export async function runNode(argv: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<BuiltRun> {
  const t0 = performance.now();
  const child = spawn(process.execPath, argv, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => void (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => void (err = (err + d.toString()).slice(-20_000)));
  let timedOut = false;
  const guard = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, timeoutMs);
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("close", (c, s) => resolve({ code: c, signal: s })),
  );
  clearTimeout(guard);
  if (timedOut) throw new Error(`mtlskit ${argv.join(" ")} did not finish within ${timeoutMs} ms; stderr: ${err}`);
  return { code, signal, out, err, ms: performance.now() - t0 };
}
