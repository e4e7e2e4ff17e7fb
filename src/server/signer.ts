/**
 * The signer threads of `mtlskit serve`: a small pool of worker threads that do a certificate's
 * CPU work off the event loop (docs/online-ca.md, "Where a certificate's CPU goes"). Per request,
 * synchronously inside a thread: the CSR decoded (parseCsrText / parseCsrDer), the one policy
 * with its self-signature check (csrPolicy), the TBSCertificate and the CA's signature
 * (encodeTbs, signTbs), its SHA-256 and PEM (issue.ts judgeAndSign, the same code issueOnline runs
 * in-process). The event loop keeps HTTP, the token, the ledger row and the answer.
 *
 * Measured, not assumed: one postMessage per request costs tens of microseconds on each side, so
 * the requests that arrive in one event-loop turn leave as one message (flushed by setImmediate,
 * after the turn's I/O callbacks) and each thread answers a batch with one message, the
 * certificates' DER in one transferred ArrayBuffer. The issuing CAs (their keys as KeyObjects,
 * structured-cloned; never written anywhere) go to each thread once, by an id assigned the first
 * time a CaMaterial is met, so a CA re-read after a rotation step is sent once more, never per
 * request. A thread that dies refuses what it held (503 busy: nothing was issued or recorded) and
 * is started again (after a second when it died within five seconds of its start); every queue is
 * bounded. This file is also the thread's entry.
 */
import { isMainThread, parentPort, type Worker, workerData } from "node:worker_threads";
import type { Manifest, Service } from "../manifest/index.ts";
import { newSerial } from "../pki/issue.ts";
import type { CaMaterial } from "../state/read.ts";
import { startThread } from "../thread.ts";
import { judgeAndSign, signingCa, type SignOptions, type Signed, type SigningCa } from "./issue.ts";
import { type ProblemDoc, ServeProblem } from "./problem.ts";

/** DEFAULT_SIGNER_THREADS: serve's signer threads unless told (measured 1 vs 2: docs/online-ca.md). */
export const DEFAULT_SIGNER_THREADS = 1;
/** MAX_SIGNER_THREADS bounds signerThreads. */
export const MAX_SIGNER_THREADS = 16;
/** MAX_PENDING: requests queued or held by the threads at once; more are refused busy (503). */
const MAX_PENDING = 8192;
/** MAX_ISSUERS: the issuing CAs a thread keeps (a rotation has two; each re-read of the CA files adds its own). */
const MAX_ISSUERS = 8;
/** MAX_BATCH: requests in one message to a thread at most (about 0.4 ms of its CPU each). */
const MAX_BATCH = 256;
/** BATCH_DEADLINE_MS: a thread that holds a batch this long is stopped (its requests refused busy) and started again. */
const BATCH_DEADLINE_MS = 30_000;
const RESTART_QUICK_MS = 5_000;
const RESTART_DELAY_MS = 1_000;

/** SignerOptions configure startSigner. */
export interface SignerOptions {
  /** manifest: whose csr services the threads judge requests for (sent to each thread once). */
  manifest: Manifest;
  /** threads: how many signer threads. Default: DEFAULT_SIGNER_THREADS. */
  threads?: number;
  /** exitAt: test seam: the first generation of threads exits (as a crashed thread does) on its exitAt-th request. Default: never. */
  exitAt?: number;
}

/** ThreadData is a signer thread's workerData. */
interface ThreadData {
  mtlskitSigner: { services: Service[]; exitAt: number | undefined };
}

/** Job is one request on the wire: service index, CSR (PEM text or DER), issuer id, now, lifetime, serial, ACME's narrowing. */
interface Job {
  id: number;
  s: number;
  c: string | Uint8Array;
  i: number;
  t: number;
  o: SignOptions;
  n: Uint8Array | undefined;
}

/** IssuerMessage sends one issuing CA to the threads (its key a KeyObject: structured-cloned, never exported). */
interface IssuerMessage {
  issuer: number;
  ca: Omit<SigningCa, "subject" | "keyId"> & { subject: Uint8Array; keyId: Uint8Array };
}

/** Reply is one answer on the wire: the signed certificate (its DER at `at`, `len` octets of the batch's buffer) or the problem. */
type Reply =
  | {
      id: number;
      serial: string;
      sha256: string;
      sans: string[];
      nb: number;
      na: number;
      pem: string;
      at: number;
      len: number;
    }
  | { id: number; problem: ProblemDoc };

/** Waiting is a request's promise, held until its reply (or its thread's death). */
interface Waiting {
  resolve(s: Signed): void;
  reject(e: unknown): void;
}

/** Slot is one thread's place in the pool. */
interface Slot {
  worker: Worker | undefined;
  startedAt: number;
  /** held: the requests posted to this thread and not answered. */
  held: Map<number, Waiting>;
  restart: NodeJS.Timeout | undefined;
  /** deadline: the held batch's; the thread is stopped when it passes. */
  deadline: NodeJS.Timeout | undefined;
}

const busy = (why: string) => new ServeProblem("busy", `${why}; nothing was issued`, "retry the request");

/**
 * SignerPool is the signer threads. sign() queues one request and resolves with its Signed (or
 * rejects with its ServeProblem, worded as issueOnline words it in-process); it answers undefined
 * for a service the threads were not given (the caller signs in-process).
 */
export class SignerPool {
  private readonly slots: Slot[];
  private readonly serviceIndex = new Map<Service, number>();
  private readonly services: Service[];
  private readonly issuerIds = new WeakMap<CaMaterial, number>();
  /** issuers: the last MAX_ISSUERS issuers sent, for a thread started later. */
  private readonly issuers: IssuerMessage[] = [];
  private nextIssuer = 0;
  private nextId = 0;
  private queue: { job: Job; waiting: Waiting }[] = [];
  private scheduled = false;
  private pending = 0;
  private closed = false;
  private exitAt: number | undefined;

  constructor(opts: SignerOptions) {
    this.services = opts.manifest.services.filter((s) => s.csr === true && s.files === undefined);
    this.services.forEach((s, i) => this.serviceIndex.set(s, i));
    this.exitAt = opts.exitAt;
    const n = Math.max(1, Math.min(MAX_SIGNER_THREADS, opts.threads ?? DEFAULT_SIGNER_THREADS));
    this.slots = Array.from({ length: n }, () => ({
      worker: undefined,
      startedAt: 0,
      held: new Map(),
      restart: undefined,
      deadline: undefined,
    }));
    for (const slot of this.slots) this.start(slot);
  }

  /** threads: how many threads the pool runs. */
  get threads(): number {
    return this.slots.length;
  }

  /** sign queues a request for the threads; undefined when the pool cannot take it (a service it was not given, or closed). */
  sign(
    service: Service,
    csr: string | Buffer,
    now: Date,
    opts: SignOptions,
    ca: CaMaterial,
    serial?: () => Buffer,
  ): Promise<Signed> | undefined {
    const s = this.serviceIndex.get(service);
    if (s === undefined || this.closed) return undefined;
    if (this.pending >= MAX_PENDING) return Promise.reject(busy(`the CA is signing ${this.pending} requests already`));
    // Bytes are copied into their own small buffers: a clone of a Buffer carved from Node's shared
    // pool would carry the whole 8 KiB pool along.
    const n = serial?.();
    const job: Job = {
      id: ++this.nextId,
      s,
      c: typeof csr === "string" ? csr : new Uint8Array(csr),
      i: this.issuerOf(ca),
      t: now.getTime(),
      o: opts,
      n: n && new Uint8Array(n),
    };
    this.pending++;
    return new Promise<Signed>((resolve, reject) => {
      this.queue.push({ job, waiting: { resolve, reject } });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** close stops the threads; what they held or was queued is refused busy. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const stops: Promise<number>[] = [];
    for (const slot of this.slots) {
      clearTimeout(slot.restart);
      if (slot.worker) stops.push(slot.worker.terminate());
    }
    this.flush();
    await Promise.all(stops);
  }

  /** threadIds: the live threads' ids (tests). */
  threadIds(): number[] {
    return this.slots.flatMap((s) => (s.worker ? [s.worker.threadId] : []));
  }

  /** issuerOf is the id of `ca` on the threads, sent to them the first time it is met. */
  private issuerOf(ca: CaMaterial): number {
    let id = this.issuerIds.get(ca);
    if (id !== undefined) return id;
    id = ++this.nextIssuer;
    this.issuerIds.set(ca, id);
    const c = signingCa(ca);
    const m: IssuerMessage = {
      issuer: id,
      ca: { ...c, subject: new Uint8Array(c.subject), keyId: new Uint8Array(c.keyId) },
    };
    this.issuers.push(m);
    if (this.issuers.length > MAX_ISSUERS) this.issuers.shift();
    for (const slot of this.slots) slot.worker?.postMessage(m);
    return id;
  }

  /** start starts a slot's thread: its services in workerData, then every recent issuer. */
  private start(slot: Slot): void {
    slot.restart = undefined;
    if (this.closed) return;
    const data: ThreadData = { mtlskitSigner: { services: this.services, exitAt: this.exitAt } };
    const worker = startThread(new URL(import.meta.url), { workerData: data });
    slot.worker = worker;
    slot.startedAt = Date.now();
    worker.unref();
    worker.on("error", () => {}); // an uncaught exception in the thread: its 'exit' follows
    worker.on("message", (m: { replies: Reply[]; der: ArrayBuffer }) => this.answer(slot, m));
    worker.on("exit", () => this.exited(slot, worker));
    for (const m of this.issuers) worker.postMessage(m);
    this.flush();
  }

  /** exited refuses what a thread held and starts another, unless the pool is closing. */
  private exited(slot: Slot, worker: Worker): void {
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    clearTimeout(slot.deadline);
    const held = [...slot.held.values()];
    slot.held = new Map();
    this.pending -= held.length;
    const e = busy("the signer thread holding the request stopped");
    for (const w of held) w.reject(e);
    if (this.closed) return;
    this.exitAt = undefined; // the test seam ends with the first generation
    if (Date.now() - slot.startedAt < RESTART_QUICK_MS) {
      slot.restart = setTimeout(() => this.start(slot), RESTART_DELAY_MS).unref();
      this.flush(); // what waited for this thread: to another one, or refused while none runs
    } else this.start(slot); // which flushes
  }

  /**
   * flush posts what is queued to the idle threads, one message each, shared evenly. A thread
   * holds one batch at a time: what arrives while it works waits here and leaves as the next
   * batch the moment it answers (answer calls flush), so batches grow with the load, and a
   * request waits no longer than it would in the thread's own queue.
   */
  private flush(): void {
    this.scheduled = false;
    if (this.queue.length === 0) return;
    const live = this.slots.filter((s) => s.worker !== undefined);
    if (this.closed || live.length === 0) {
      const queue = this.queue;
      this.queue = [];
      this.pending -= queue.length;
      const e = busy(this.closed ? "the CA is shutting down" : "no signer thread is running (one is being restarted)");
      for (const q of queue) q.waiting.reject(e);
      return;
    }
    const idle = live.filter((s) => s.held.size === 0);
    for (let k = 0; k < idle.length && this.queue.length > 0; k++) {
      const slot = idle[k]!;
      const take = Math.min(MAX_BATCH, Math.ceil(this.queue.length / (idle.length - k)));
      const queue = this.queue.splice(0, take);
      const jobs: Job[] = [];
      for (const q of queue) {
        slot.held.set(q.job.id, q.waiting);
        jobs.push(q.job);
      }
      const worker = slot.worker!;
      worker.ref(); // while it holds requests the process waits for it
      worker.postMessage({ jobs });
      // A thread that does not answer (stuck) is stopped: its requests are refused, another starts.
      slot.deadline = setTimeout(() => void worker.terminate(), BATCH_DEADLINE_MS);
    }
  }

  /** answer settles a batch's requests from a thread's reply, after posting it the next batch. */
  private answer(slot: Slot, m: { replies: Reply[]; der: ArrayBuffer }): void {
    clearTimeout(slot.deadline);
    const held = slot.held;
    slot.held = new Map();
    this.pending -= held.size;
    if (this.queue.length > 0) this.flush();
    if (slot.held.size === 0) slot.worker?.unref();
    for (const r of m.replies) {
      const w = held.get(r.id);
      if (!w) continue;
      held.delete(r.id);
      if ("problem" in r)
        w.reject(new ServeProblem(r.problem.error, r.problem.message, r.problem.fix, r.problem.refusals));
      else
        w.resolve({
          serial: r.serial,
          der: Buffer.from(m.der, r.at, r.len),
          sha256: r.sha256,
          sans: r.sans,
          notBefore: new Date(r.nb),
          notAfter: new Date(r.na),
          certificate: r.pem,
        });
    }
    // Never left waiting: a reply without one of the batch's requests (a bug) refuses it.
    for (const w of held.values())
      w.reject(
        new ServeProblem(
          "internal",
          "the signer thread did not answer the request; this is a bug",
          "retry the request",
        ),
      );
  }
}

/** startSigner starts the signer threads for `opts.manifest`'s csr services. */
export function startSigner(opts: SignerOptions): SignerPool {
  return new SignerPool(opts);
}

/** buf is a structured clone's Uint8Array as the Buffer pki/ expects (no copy). */
const buf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** runThread is a signer thread: issuers kept by id, each batch signed in order and answered with one message. */
function runThread({ services: cloned, exitAt }: ThreadData["mtlskitSigner"]): void {
  const port = parentPort!;
  // Structured clones hold Uint8Arrays where the manifest held Buffers (the IP SANs' bytes).
  const services = cloned.map((s) => ({ ...s, ips: s.ips.map((ip) => ({ ...ip, bytes: buf(ip.bytes) })) }));
  const issuers = new Map<number, SigningCa>();
  let count = 0;
  port.on("message", (m: IssuerMessage | { jobs: Job[] }) => {
    if ("issuer" in m) {
      const ca = m.ca;
      issuers.set(m.issuer, { ...ca, subject: buf(ca.subject), keyId: buf(ca.keyId) });
      for (const id of issuers.keys()) if (issuers.size > MAX_ISSUERS) issuers.delete(id);
      return;
    }
    const replies: Reply[] = [];
    const ders: Buffer[] = [];
    let at = 0;
    for (const job of m.jobs) {
      if (exitAt !== undefined && ++count >= exitAt) process.exit(1); // the test seam: a thread dying mid-batch
      try {
        const ca = issuers.get(job.i);
        if (!ca) throw busy("the CA changed while the request waited");
        const csr = typeof job.c === "string" ? job.c : buf(job.c);
        const s = judgeAndSign(services[job.s]!, csr, new Date(job.t), job.o, ca, job.n ? buf(job.n) : newSerial());
        replies.push({
          id: job.id,
          serial: s.serial,
          sha256: s.sha256,
          sans: s.sans,
          nb: s.notBefore.getTime(),
          na: s.notAfter.getTime(),
          pem: s.certificate,
          at,
          len: s.der.length,
        });
        ders.push(s.der);
        at += s.der.length;
      } catch (e) {
        const problem =
          e instanceof ServeProblem
            ? e.doc()
            : new ServeProblem(
                "internal",
                `signing failed: ${e instanceof Error ? e.message : String(e)}; this is a bug`,
                "retry the request; report it if it persists",
              ).doc();
        replies.push({ id: job.id, problem });
      }
    }
    // One fresh ArrayBuffer (not Buffer's shared pool) holding every DER, moved to the main thread.
    const der = new Uint8Array(at);
    let p = 0;
    for (const d of ders) {
      der.set(d, p);
      p += d.length;
    }
    port.postMessage({ replies, der: der.buffer }, [der.buffer]);
  });
}

if (!isMainThread && (workerData as ThreadData | undefined)?.mtlskitSigner)
  runThread((workerData as ThreadData).mtlskitSigner);
