/**
 * startThread: the one way mtlskit starts a worker thread (apply's workers, the SQLite ledger's
 * committer, the dashboard's builder, serve's signer threads). From the built package the entry
 * is a .js file and starts as is. From TypeScript sources (tests, benches under tsx) Node 20 does
 * not hand the parent's --import loader to workers, so the thread registers tsx itself first
 * (tsx/esm/api's register()) and then imports the .ts entry.
 */
import { Worker, type WorkerOptions } from "node:worker_threads";

/** threadEntry is the URL of `name` (without extension) beside the module `importMetaUrl`: .ts from sources, .js once built. */
export function threadEntry(importMetaUrl: string, name: string): URL {
  return new URL(`${name}${importMetaUrl.endsWith(".ts") ? ".ts" : ".js"}`, importMetaUrl);
}

/** startThread starts a worker thread running the module at `entry` (a file: URL; see the file's comment for .ts entries). */
export function startThread(entry: URL, options: WorkerOptions = {}): Worker {
  if (!entry.href.endsWith(".ts")) return new Worker(entry, options);
  const src = `import { register } from ${JSON.stringify(import.meta.resolve("tsx/esm/api"))}; register(); await import(${JSON.stringify(entry.href)});`;
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(src)}`), options);
}
