/**
 * SnapshotBuilder: where a snapshot's PKI part is judged and where the poll's file stamp is taken,
 * on this thread or in a worker thread (build-worker.ts). Both give the same JSON and hash for the
 * same input (test/ui.test.ts).
 */
import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import type { Worker } from "node:worker_threads";
import type { Manifest } from "../manifest/index.ts";
import { startThread, threadEntry } from "../thread.ts";
import { type LedgerPart, readPkiFacts, snapshotOf, snapshotText, stampFiles } from "./model.ts";

/** Built is a snapshot's content as served (its JSON, generatedAt first) and its content hash (all but generatedAt). */
export interface Built {
  json: string;
  hash: string;
}

/** SnapshotBuilder builds a snapshot's text from the PKI directory and the ledger's part, and stamps the watched files. */
export interface SnapshotBuilder {
  build(now: Date, ledger: LedgerPart | undefined): Promise<Built>;
  /** stamp hashes the stat (inode, size, mtime) of every file model.ts stampFiles names: two services' files each. */
  stamp(): Promise<string>;
  close(): Promise<void>;
}

/**
 * revive turns the Uint8Arrays a structured clone made of Buffers back into Buffers (without a
 * copy), through objects, arrays and Maps: the manifest's IP bytes and the ledger's DER are read
 * with Buffer's methods.
 */
export function revive(x: unknown, seen = new WeakSet<object>()): unknown {
  if (x instanceof Uint8Array && !Buffer.isBuffer(x)) return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  if (typeof x !== "object" || x === null || x instanceof Date || Buffer.isBuffer(x) || seen.has(x)) return x;
  seen.add(x);
  if (x instanceof Map) {
    for (const [k, v] of x) x.set(k, revive(v, seen));
    return x;
  }
  if (Array.isArray(x)) {
    for (let i = 0; i < x.length; i++) x[i] = revive(x[i], seen);
    return x;
  }
  const o = x as Record<string, unknown>;
  for (const k of Object.keys(o)) o[k] = revive(o[k], seen);
  return o;
}

/** fileStamp hashes the stat of each file (absent: "-"). */
export function fileStamp(files: readonly string[]): string {
  const h = createHash("sha256");
  for (const f of files) {
    const s = statSync(f, { throwIfNoEntry: false });
    h.update(s ? `${f}\0${s.ino}:${s.size}:${s.mtimeMs}\n` : `${f}\0-\n`);
  }
  return h.digest("hex");
}

/** buildText is one build: judge, shape, serialize. */
export function buildText(manifest: Manifest, pkiDir: string, now: Date, ledger: LedgerPart | undefined): Built {
  const { json, hash } = snapshotText(snapshotOf(readPkiFacts(manifest, pkiDir, now, ledger)));
  return { json, hash };
}

/** inThreadBuilder judges on the calling thread (small PKIs, tests). */
export function inThreadBuilder(manifest: Manifest, pkiDir: string): SnapshotBuilder {
  const files = stampFiles(manifest, pkiDir);
  return {
    build: async (now, ledger) => buildText(manifest, pkiDir, now, ledger),
    stamp: async () => fileStamp(files),
    close: async () => {},
  };
}

/** spawn starts build-worker.ts (src/thread.ts: under tsx it registers tsx first). */
function spawn(data: unknown): Worker {
  return startThread(threadEntry(import.meta.url, "./build-worker"), { workerData: data });
}

/** WorkerAnswer is what build-worker.ts posts back. */
export type WorkerAnswer = { id: number; built?: Built; stamp?: string; error?: string };

/**
 * workerBuilder judges and stamps in a worker thread, so neither the seconds of check at 10,000
 * services nor the 20,000 stats of a poll run on the thread that answers requests (`serve --ui`:
 * the online CA's). Only the JSON text crosses back. A worker that dies fails what it had pending
 * and is started again for the next request. It keeps the process alive only while a request is
 * pending.
 */
export function workerBuilder(manifest: Manifest, pkiDir: string): SnapshotBuilder {
  let worker: Worker | undefined;
  let nextId = 0;
  const pending = new Map<number, { resolve(a: WorkerAnswer): void; reject(e: Error): void }>();
  const failAll = (e: Error) => {
    for (const p of pending.values()) p.reject(e);
    pending.clear();
  };
  const started = () => {
    if (worker) return worker;
    const w = spawn({ manifest, pkiDir });
    w.on("message", (m: WorkerAnswer) => {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (pending.size === 0) w.unref();
      if (m.error === undefined) p.resolve(m);
      else p.reject(new Error(`ui: the snapshot could not be built: ${m.error}`));
    });
    w.on("error", (e) => failAll(e));
    w.on("exit", (code) => {
      if (worker === w) worker = undefined;
      failAll(new Error(`ui: the snapshot builder thread exited (${code})`));
    });
    w.unref();
    worker = w;
    return w;
  };
  const ask = (msg: { kind: "build"; now: Date; ledger: LedgerPart | undefined } | { kind: "stamp" }) =>
    new Promise<WorkerAnswer>((resolve, reject) => {
      const id = ++nextId;
      pending.set(id, { resolve, reject });
      const w = started();
      w.ref();
      w.postMessage({ id, ...msg });
    });
  return {
    build: async (now, ledger) => (await ask({ kind: "build", now, ledger })).built!,
    stamp: async () => (await ask({ kind: "stamp" })).stamp!,
    close: async () => {
      const w = worker;
      worker = undefined;
      if (w) await w.terminate();
    },
  };
}
