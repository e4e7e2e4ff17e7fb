/**
 * Worker thread entry, started by apply before it plans (module loading overlaps planning). It
 * waits for its orders: `start` (the PKI directory and the issuer), then chunks of ServiceJobs, one
 * at a time; after writing a chunk it reports the certificates done, which also asks for the next
 * chunk. `end` lets the thread exit. A throw reaches apply as the worker's error event.
 */
import { parentPort } from "node:worker_threads";
import { runJobs, toIssuer, type FromWorker, type ToWorker } from "./jobs.ts";

const port = parentPort!;
let dir = "";
let signer: ReturnType<typeof toIssuer> | undefined;
port.on("message", (m: ToWorker) => {
  if ("start" in m) {
    dir = m.start.dir;
    signer = toIssuer(m.start.issuer);
  } else if ("jobs" in m) {
    const done: FromWorker = { done: runJobs(dir, m.jobs, signer!) };
    port.postMessage(done);
  } else port.close();
});
