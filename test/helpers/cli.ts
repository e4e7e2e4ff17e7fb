/** Test helpers: temporary directories and in-process CLI runs with captured output. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { run } from "../../src/cli/main.ts";
import type { Io } from "../../src/cli/output.ts";

const made: string[] = [];
process.on("exit", () => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/**
 * tempDir makes a fresh directory, removed when the test process exits (node:test's `after`
 * would run too early when called from a `before` hook).
 */
export function tempDir(prefix = "mtlskit-test-"): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** writeManifest writes YAML text into `dir` and returns its path. */
export function writeManifest(dir: string, text: string, name = "mtlskit.yaml"): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** CliResult is a captured CLI run. */
export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** runCli runs the CLI in-process with `argv`, capturing output (no TTY, no colour). */
export async function runCli(argv: string[]): Promise<CliResult> {
  let out = "";
  let err = "";
  const io: Io = { out: (t) => void (out += t), err: (t) => void (err += t), tty: false, color: false };
  const code = await run(argv, io);
  return { code, out, err };
}

/** REPO is the repository root. */
export const REPO = path.resolve(import.meta.dirname, "../..");
