/**
 * Worker thread entry, started by apply before it plans, or by the CLI before it parses the
 * manifest (warmApply): module loading overlaps parsing and planning. The first worker of a pool
 * is the key maker: until the start it makes keys ahead (`keysAhead`: of a type, up to a number;
 * see ReadyKey), a few at a time so that messages still arrive, on the core the parsing main
 * thread leaves free (one maker, not one per worker, so the main thread keeps a core of its own).
 * At the start it keeps its own part and sends each other worker its part through the port
 * between them (`peers`). Then, in every worker: `start` (the PKI directory and the issuer), then
 * chunks of ServiceJobs, one at a time, each certificate taking a key made ahead while there is
 * one; after writing a chunk a worker reports the certificates done, which also asks for the next
 * chunk. `end` lets the thread exit, dropping any key not taken. A throw reaches apply as the
 * worker's error event.
 */
import { setImmediate } from "node:timers";
import { parentPort, type MessagePort } from "node:worker_threads";
import type { KeyTypeName } from "../pki/keys.ts";
import {
  makeReadyKey,
  runJobs,
  toIssuer,
  type FromWorker,
  type KeyShare,
  type ReadyKey,
  type ToWorker,
} from "./jobs.ts";

/** AHEAD_SLICE_MS: how long one turn of making keys ahead may hold the thread before it looks at its messages. */
const AHEAD_SLICE_MS = 4;

const port = parentPort!;
let dir = "";
let signer: ReturnType<typeof toIssuer> | undefined;
let umask: number | null = null;
let bundle: Buffer = Buffer.alloc(0);
let peers: MessagePort[] = [];
const ready: ReadyKey[] = [];
let readyType: KeyTypeName | undefined;
let readyMax = 0;
let making = false;

/** makeAhead makes keys for one slice of time, then yields to the messages and comes back until it holds readyMax. */
function makeAhead(): void {
  making = false;
  if (signer !== undefined || readyType === undefined) return;
  const until = performance.now() + AHEAD_SLICE_MS;
  while (ready.length < readyMax && performance.now() < until) ready.push(makeReadyKey(readyType));
  if (ready.length < readyMax) {
    making = true;
    setImmediate(makeAhead);
  }
}

/** shareKeys gives each peer an equal part of the keys made ahead, keeping one part. */
function shareKeys(): void {
  if (readyType === undefined) return;
  const part = Math.floor(ready.length / (peers.length + 1));
  for (const peer of peers) {
    const share: KeyShare = { keyType: readyType, keys: ready.splice(ready.length - part, part) };
    peer.postMessage(share);
  }
}

let taken = 0;
const takeKey = (type: KeyTypeName): ReadyKey | undefined => {
  const key = type === readyType ? ready.pop() : undefined;
  if (key) taken++;
  return key;
};

port.on("message", (m: ToWorker) => {
  if ("peers" in m) {
    peers = m.peers;
    // A peer's port brings the maker's share: kept for the certificates to come.
    for (const peer of peers)
      peer.on("message", (s: KeyShare) => {
        if (readyType === undefined || readyType === s.keyType) {
          readyType = s.keyType;
          for (const k of s.keys) ready.push(k);
        }
      });
  } else if ("keysAhead" in m) {
    // Keys beyond the new number, or of another type, are dropped, never used.
    ready.length = m.keysAhead.keyType === readyType ? Math.min(ready.length, m.keysAhead.max) : 0;
    readyType = m.keysAhead.keyType;
    readyMax = m.keysAhead.max;
    if (!making) makeAhead();
  } else if ("start" in m) {
    dir = m.start.dir;
    signer = toIssuer(m.start.issuer);
    umask = m.start.umask;
    bundle = Buffer.from(m.start.bundlePem); // written as bytes into every ca.pem of this worker's chunks
    shareKeys();
  } else if ("jobs" in m) {
    taken = 0;
    const done: FromWorker = { done: runJobs(dir, m.jobs, signer!, bundle, { takeKey, umask }), ahead: taken };
    port.postMessage(done);
  } else {
    ready.length = 0;
    for (const peer of peers) peer.close();
    port.close();
  }
});
