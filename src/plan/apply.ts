/**
 * apply: the only writer of a PKI directory. Under the directory's lock it reads the state,
 * plans, creates the CA if needed, then issues and writes every certificate the plan says to,
 * spreading the work over worker threads when there is enough of it.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { existsSync, rmSync } from "node:fs";
import { availableParallelism } from "node:os";
import * as path from "node:path";
import { MessageChannel, type Worker } from "node:worker_threads";
import { FailedError, MtlskitError, UsageError } from "../errors.ts";
import { readTextBounded } from "../read-file.ts";
import { keyedServices, managedServices, type LoadedManifest } from "../manifest/index.ts";
import { DEFAULTS } from "../manifest/normalize.ts";
import { readCertFields } from "../pki/cert.ts";
import { keyIdOf, newSerial, encodeTbs, signTbs, type CertSpec } from "../pki/issue.ts";
import { generateKey, type KeyTypeName } from "../pki/keys.ts";
import { encodeName } from "../pki/name.ts";
import { encodePem } from "../pki/pem.ts";
import { guardDirs } from "../state/dirs.ts";
import {
  acquireLock,
  ensureDir,
  ioFailure,
  readUmask,
  removeTempFiles,
  syncDir,
  writeFileAtomic,
  type Lock,
} from "../state/fs.ts";
import { abs, LAYOUT, MODES, type CaFiles, type FileSpec } from "../state/layout.ts";
import { writeLayoutVersion } from "../state/layout-version.ts";
import { readState, serviceDirsIn, withCaKey, type CaMaterial, type State } from "../state/read.ts";
import { applyRecordFor, manifestId, writeApplyRecord, type ApplyRecord, type HookRecord } from "../state/record.ts";
import { runHooks, type HookJob } from "./hooks.ts";
import {
  runJobs,
  toIssuer,
  type FromWorker,
  type IssuerData,
  type ServiceJob,
  type Signer,
  type ToWorker,
} from "./jobs.ts";
import {
  bundleOf,
  caKeyRequest,
  changedServices,
  checkReissueNames,
  planApply,
  type Plan,
  type PlanOptions,
} from "./plan.ts";
import { writeCrl } from "./crl.ts";
import { loadCaSource } from "./read.ts";
import { startThread, threadEntry } from "../thread.ts";

/** ApplyOptions tune how apply runs. */
export interface ApplyOptions extends PlanOptions {
  /** workers: threads issuing certificates. Default: up to 4 (the machine's cores) for 64 or more services, else none. */
  workers?: number;
  /** lockWaitMs: how long to wait for another apply to finish. Default: 5000. */
  lockWaitMs?: number;
  /** breakLock: take over the lock whoever holds it (a lock left on a shared volume by another host). Default: false. */
  breakLock?: boolean;
  /** onNote is told what apply repaired on the way (a service folder's mode set back to 0700). */
  onNote?: (text: string) => void;
  /** onPlan is called with the plan before anything is written. */
  onPlan?: (plan: Plan) => void;
  /** onProgress is called as certificates are issued. */
  onProgress?: (done: number, total: number) => void;
  /**
   * afterWrite runs under the lock once the PKI is written and before the reload hooks, so that
   * what the hooks reload is complete (the CLI writes the manifest's outputs here). A throw fails
   * the apply (recorded) and leaves the hooks pending for the next run.
   */
  afterWrite?: (result: ApplyResult) => void | Promise<void>;
  /** underLock runs under the lock before the state is read (`mtlskit ca rotate` moves the rotation's phase here); a throw writes nothing more. */
  underLock?: () => void;
  /** reloadAlso names services whose reload hooks run even if this run changes none of their files (a rotation's owed reloads). Called after underLock. */
  reloadAlso?: () => readonly string[];
  /** afterHooks runs under the lock after the reload hooks (a rotation records its phase finished here). */
  afterHooks?: (result: ApplyResult) => void;
  /** hooks: run the services' reload hooks. Default: true. */
  hooks?: boolean;
  /** hookTimeoutMs bounds each hook. Default: HOOK_TIMEOUT_MS (60 s). */
  hookTimeoutMs?: number;
  /**
   * pool: worker threads started before the manifest was parsed (warmApply), used when the plan
   * needs threads; apply closes it however it ends (and a pool already closed is not used).
   * Default: apply starts its own.
   */
  pool?: WarmPool;
  /**
   * caKey: the root CA's key kept offline (`apply --ca-key FILE`, read by loadCaKeyFile), used in
   * memory only when the plan needs it and never written. Default: the key in DIR/ca (or ca.import.key).
   */
  caKey?: { key: KeyObject; file: string };
}

/** ApplyResult is what apply did. */
export interface ApplyResult {
  plan: Plan;
  /** issued counts certificates created or re-issued (the CA not included). */
  issued: number;
  kept: number;
  caCreated: boolean;
  /** changed: services whose files this run wrote. */
  changed: string[];
  /** hooks: the reload hooks run, in order (a failed one is also in the record, and retried next run). */
  hooks: HookRecord[];
  /** keysAhead counts the certificates whose key the worker threads made ahead, while apply parsed and planned (warmApply); the others' keys were made as they were issued. */
  keysAhead: number;
}

/**
 * writeNewCa generates a key, signs `spec` with it (a root) or with `signer` (an intermediate),
 * and writes the pair into `files` (DIR/ca, or a rotation's DIR/ca/next): key first, so a crash before the certificate is written leaves
 * a key alone, which reads as missing (root) or unusable (intermediate), and is made again.
 */
function writeNewCa(
  dir: string,
  spec: CertSpec,
  files: { dir: FileSpec; cert: FileSpec; key: FileSpec },
  signer: CaMaterial | undefined,
): Omit<CaMaterial, "chainPem" | "bundlePem"> & { pem: string } {
  const key = generateKey(spec.keyType);
  const privateKey = createPrivateKey({ key: key.pkcs8, format: "der", type: "pkcs8" });
  const keyId = keyIdOf(key.spki);
  const self = { subject: encodeName(spec.subject), keyId, keyType: spec.keyType, privateKey };
  const issuer = signer
    ? { subject: signer.cert.subject, keyId: signer.keyId, keyType: signer.keyType, privateKey: signer.privateKey! }
    : self;
  const der = signTbs(encodeTbs(spec, issuer, key.spki, newSerial()), issuer);
  ensureDir(abs(dir, LAYOUT.caDir), LAYOUT.caDir.mode);
  ensureDir(abs(dir, files.dir), files.dir.mode);
  // Key first: a crash before the certificate is written leaves a key alone, which reads as "missing".
  writeFileAtomic(abs(dir, files.key), encodePem("PRIVATE KEY", key.pkcs8), files.key.mode);
  const pem = encodePem("CERTIFICATE", der);
  writeFileAtomic(abs(dir, files.cert), pem, files.cert.mode);
  syncDir(abs(dir, files.dir));
  if (files.dir.rel !== LAYOUT.caDir.rel) syncDir(abs(dir, LAYOUT.caDir));
  return {
    cert: readCertFields(der),
    keyType: spec.keyType,
    keyId,
    publicKey: createPublicKey({ key: key.spki, format: "der", type: "spki" }),
    privateKey,
    pem,
  };
}

/** createCa generates a root (or lone) CA from `spec` into one CA generation (DIR/ca, or a rotation's DIR/ca/next). */
export function createCa(dir: string, spec: CertSpec, files: CaFiles = LAYOUT.currentCa): CaMaterial {
  const { pem, ...m } = writeNewCa(dir, spec, files, undefined);
  return { ...m, chainPem: "", bundlePem: pem };
}

/** createIntermediate signs a new intermediate CA with `root` into DIR/ca: it is appended to every leaf; bundles keep the root. */
function createIntermediate(dir: string, spec: CertSpec, root: CaMaterial): CaMaterial {
  if (!root.privateKey)
    throw new FailedError("apply: the root's key is needed to sign the intermediate; this is a bug");
  const files = { dir: LAYOUT.caDir, cert: LAYOUT.caIntermediate, key: LAYOUT.caIntermediateKey };
  const { pem, ...m } = writeNewCa(dir, spec, files, root);
  return { ...m, chainPem: pem + root.chainPem, bundlePem: root.bundlePem };
}

function readTextOrUndefined(file: string): string | undefined {
  try {
    return readTextBounded(file, { noFollow: true });
  } catch {
    return undefined;
  }
}

function spawnWorker(): Worker {
  return startThread(threadEntry(import.meta.url, "./worker")); // src/thread.ts: registers tsx under sources
}

/** workerCount: threads issuing `n` services. Default: up to 4 (the machine's cores) for 64 or more, else none (0 or 1: in-process). */
function workerCount(opts: Pick<ApplyOptions, "workers">, n: number): number {
  return Math.min(opts.workers ?? (n >= 64 ? Math.min(availableParallelism(), 4) : 0), n);
}

/** PoolWorker is a started worker thread: the first error it raised, and its exit. */
interface PoolWorker {
  worker: Worker;
  error: unknown;
  exited: Promise<number>;
}

/**
 * Pool: worker threads started when apply starts, idle until runInWorkers feeds them, so that
 * their start-up (loading modules) overlaps reading the state and planning. An idle worker has
 * nothing to write. `close` terminates and awaits every worker; it is called however apply ends.
 */
interface Pool {
  workers: PoolWorker[];
  /** closed: close was called; the pool serves no apply any more. */
  closed: boolean;
  /** keysAhead tells the key maker (the first worker) to hold up to `max` keys of `keyType` made ahead, for every worker (worker.ts). */
  keysAhead(keyType: KeyTypeName, max: number): void;
  close(): Promise<void>;
}

/**
 * KEYS_AHEAD_MAX bounds the keys made ahead (about 1 KB each), whatever a manifest's size suggests.
 */
const KEYS_AHEAD_MAX = 16_384;

function startPool(n: number): Pool {
  const workers = Array.from({ length: n }, (): PoolWorker => {
    const worker = spawnWorker();
    const w: PoolWorker = { worker, error: undefined, exited: new Promise((r) => worker.once("exit", r)) };
    worker.on("error", (e) => void (w.error ??= e)); // an idle worker's error (it failed to load) is kept, not thrown
    return w;
  });
  // The first worker makes the keys ahead and, at the start, sends each other worker its part.
  const [maker, ...others] = workers;
  const toOthers = others.map((w) => {
    const { port1, port2 } = new MessageChannel();
    const order: ToWorker = { peers: [port2] };
    w.worker.postMessage(order, [port2]);
    return port1;
  });
  if (maker && toOthers.length > 0) {
    const order: ToWorker = { peers: toOthers };
    maker.worker.postMessage(order, toOthers);
  }
  const pool: Pool = {
    workers,
    closed: false,
    keysAhead: (keyType, max) => {
      const order: ToWorker = { keysAhead: { keyType, max: Math.min(max, KEYS_AHEAD_MAX) } };
      maker?.worker.postMessage(order);
    },
    close: async () => {
      pool.closed = true;
      for (const w of workers) void w.worker.terminate();
      await Promise.all(workers.map((w) => w.exited));
    },
  };
  return pool;
}

/**
 * WarmPool is apply's worker threads started before the manifest is parsed (warmApply), so that
 * their start-up and the keys they make ahead overlap parsing and planning. Give it to apply
 * (ApplyOptions.pool), which closes it; close it yourself when apply is not called.
 */
export interface WarmPool {
  close(): Promise<void>;
}

/** WARM: the pools warmApply made (apply uses no other object as a pool). */
const WARM = new WeakMap<WarmPool, Pool>();

/**
 * warmApply starts apply's worker threads for a manifest not yet parsed, judged by its `text`: a
 * service takes at least a line, so one of fewer than 64 lines gets none (undefined; apply decides
 * again once the manifest is parsed, as it does without a pool). The first thread starts making
 * keys of the default type ahead (up to one per line, less one per service folder already in
 * `dir`, the PKI directory, when given: most of those are kept), which apply narrows once it knows
 * which keys its plan needs; any key not taken ends with the pool.
 */
export function warmApply(
  text: string,
  opts: Pick<ApplyOptions, "workers"> & { dir?: string } = {},
): WarmPool | undefined {
  let lines = 0;
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) lines++;
  const n = workerCount(opts, lines);
  if (n < 2) return undefined;
  const pool = startPool(n);
  const present = opts.dir === undefined ? 0 : (serviceDirsIn(opts.dir)?.size ?? 0);
  pool.keysAhead(DEFAULTS.key, Math.max(0, lines - present));
  const warm: WarmPool = { close: () => pool.close() };
  WARM.set(warm, pool);
  return warm;
}

/**
 * aimKeysAhead tells the pool which keys to make ahead: those of the services with no folder yet
 * (or re-issued by name), of their most common key type; every other key is made when its
 * certificate is issued.
 */
function aimKeysAhead(
  pool: Pool,
  loaded: LoadedManifest,
  present: ReadonlySet<string> | undefined,
  opts: PlanOptions,
): void {
  const again = new Set(opts.reissue ?? []);
  const counts = new Map<KeyTypeName, number>();
  for (const s of keyedServices(loaded.manifest))
    if (present === undefined || !present.has(s.name) || opts.reissueAll === true || again.has(s.name))
      counts.set(s.keyType, (counts.get(s.keyType) ?? 0) + s.slots.length);
  const [keyType, count] = [...counts].reduce((a, b) => (b[1] > a[1] ? b : a), [DEFAULTS.key as KeyTypeName, 0]);
  pool.keysAhead(keyType, count);
}

/**
 * CHUNK_MAX: the most services sent to a worker at once, written as one durable batch
 * (writeFilesAtomic). Chunks are guided (the remaining work over twice the workers, at most this),
 * so they shrink towards the end and no worker holds the tail.
 */
const CHUNK_MAX = 64;

/** chunkSize: how many of `remaining` services the next chunk takes when `n` threads share them. */
const chunkSize = (remaining: number, n: number) => Math.max(1, Math.min(CHUNK_MAX, Math.ceil(remaining / (2 * n))));

/**
 * runInWorkers feeds `jobs` to `n` of the pool's workers in chunks: each worker holds up to two
 * chunks (the one it writes, the next queued) and asks for another by reporting one written (work
 * stealing: a slow worker does not hold the tail). This returns once every chunk is written, each worker told to end (apply awaits
 * their exit, pool.close, while it finishes: a worker that wrote its last chunk writes nothing
 * more). After a failure the others are terminated and awaited before this throws, so nothing is
 * written once apply has released the lock.
 */
async function runInWorkers(
  pool: Pool,
  dir: string,
  jobs: readonly ServiceJob[],
  issuer: IssuerData,
  bundlePem: string,
  n: number,
  progress: (k: number, ahead: number) => void,
  umask: number | null,
): Promise<void> {
  const active = pool.workers.slice(0, n);
  for (const idle of pool.workers.slice(n)) void idle.worker.terminate();
  let next = 0;
  let chunks = 0;
  let written = 0;
  let failed = false;
  let allWritten = () => {};
  const everyChunkWritten = new Promise<"written">((resolve) => (allWritten = () => resolve("written")));
  const stopAll = () => {
    failed = true;
    for (const w of pool.workers) void w.worker.terminate();
  };
  const feed = (w: PoolWorker) => {
    if (failed) return;
    const order: ToWorker =
      next < jobs.length ? { jobs: jobs.slice(next, (next += chunkSize(jobs.length - next, n))) } : { end: true };
    if ("jobs" in order) chunks++;
    w.worker.postMessage(order);
  };
  for (const w of active) {
    if (w.error !== undefined) stopAll(); // it failed while apply was planning
    w.worker.on("message", (m: FromWorker) => {
      written++;
      progress(m.done, m.ahead);
      feed(w);
      if (!failed && next >= jobs.length && written === chunks) allWritten();
    });
    w.worker.on("error", stopAll);
    void w.exited.then((code) => {
      if (code !== 0 && w.error === undefined) stopAll();
    });
    const start: ToWorker = { start: { dir, issuer, bundlePem, umask } };
    w.worker.postMessage(start);
    // Two chunks ahead: the next is already queued when a worker reports one written, so it never
    // waits for this thread (which, with every core busy issuing, the OS may not run at once).
    feed(w);
    feed(w);
  }
  const exited = Promise.all(active.map((w) => w.exited));
  if ((await Promise.race([everyChunkWritten, exited])) === "written") return;
  const codes = await exited;
  await Promise.all(pool.workers.map((w) => w.exited)); // the idle ones too
  const error = active.find((w) => w.error !== undefined)?.error;
  if (error !== undefined) throw error;
  const code = codes.find((c) => c !== 0);
  if (code !== undefined || written < chunks || next < jobs.length)
    throw new FailedError(
      `apply: a worker thread stopped (exit code ${code ?? 0}) before its certificates were written; every file is whole, old or new\n    fix: run apply again`,
    );
}

/**
 * apply brings the PKI directory `dir` in line with the manifest. Invalid input throws before
 * anything is written (when `dir` does not exist it is not even created). Services with `files`
 * are external: nothing is read, written or removed for them; when every service is external,
 * apply still creates (or keeps) the CA and writes nothing else.
 */
export async function apply(loaded: LoadedManifest, dir: string, opts: ApplyOptions = {}): Promise<ApplyResult> {
  // Worker threads start now (unless warmApply started them earlier), so their start-up overlaps
  // reading and planning; idle, they write nothing.
  const n = workerCount(opts, managedServices(loaded.manifest).length);
  const warm = opts.pool === undefined ? undefined : WARM.get(opts.pool);
  const useWarm = n > 1 && warm !== undefined && !warm.closed && warm.workers.length >= n;
  if (warm && !useWarm) void warm.close(); // awaited below
  const pool = useWarm ? warm : n > 1 ? startPool(n) : undefined;
  try {
    return await applyWith(loaded, dir, opts, pool);
  } finally {
    await pool?.close();
    await warm?.close();
  }
}

async function applyWith(
  loaded: LoadedManifest,
  dir: string,
  opts: ApplyOptions,
  pool: Pool | undefined,
): Promise<ApplyResult> {
  const imported = loadCaSource(loaded);
  checkReissueNames(loaded, opts); // before anything is created
  // A directory that does not exist yet is planned before it is created, so invalid input
  // (e.g. a leaf that would outlive an imported CA) creates nothing.
  if (!existsSync(dir)) planWithKey(loaded, readStateWithKey(loaded, dir, imported, opts), opts);
  ensureDir(dir, MODES.publicDir, { parents: true });
  const started = opts.now ?? new Date();
  let lock: Lock;
  try {
    lock = acquireLock(abs(dir, LAYOUT.lock), { waitMs: opts.lockWaitMs ?? 5000, breakLock: opts.breakLock === true });
  } catch (e) {
    // A lock held by another apply is its business, not a failure of the PKI; a full disk or a
    // read-only file system is, and metrics must not go on saying the last apply succeeded.
    const io = ioFailure(e, dir);
    if (!io) throw e;
    throw recordFailure(dir, io, {
      time: started.toISOString(),
      manifest: manifestId(loaded.manifest.file),
      ok: false,
      issued: 0,
      kept: 0,
      caCreated: false,
      changed: [],
      hooks: [],
      pending: applyRecordFor(dir, loaded.manifest.file).record?.pending ?? [],
    });
  }
  // Services whose reload did not happen last time (a hook failed, or the run failed before its
  // hooks): their files already changed, so no later plan would name them again. Only this
  // manifest's: another manifest sharing the directory owes reloads of its own services.
  const owed = applyRecordFor(dir, loaded.manifest.file).record?.pending ?? [];
  let written: ApplyResult | undefined;
  try {
    opts.underLock?.();
    const also = opts.reloadAlso?.() ?? [];
    const result = await applyLocked(loaded, dir, imported, opts, pool);
    written = result;
    await opts.afterWrite?.(result);
    // result.changed is sorted and unique: most runs owe nothing more, and 10,000 names need no second sort.
    const due = hookJobs(
      loaded,
      dir,
      owed.length + also.length === 0 ? result.changed : [...new Set([...result.changed, ...owed, ...also])].sort(),
    );
    result.hooks = await runHooks(opts.hooks === false ? [] : due, opts.hookTimeoutMs);
    opts.afterHooks?.(result);
    const reloaded = new Set(result.hooks.filter((h) => h.ok).map((h) => h.service)); // not a search per service
    const pending = due.map((j) => j.service).filter((name) => !reloaded.has(name));
    writeApplyRecord(dir, {
      time: started.toISOString(),
      manifest: manifestId(loaded.manifest.file),
      ok: true,
      issued: result.issued,
      kept: result.kept,
      caCreated: result.caCreated,
      changed: result.changed,
      hooks: result.hooks,
      pending,
    });
    return result;
  } catch (caught) {
    // Unattended renewals (cron, a systemd timer) fail silently unless the failure is recorded:
    // status and metrics read this. Every file is whole, old or new: each write is atomic.
    const e = asFailure(caught, dir);
    const pending = hookJobs(loaded, dir, [...new Set([...(written?.changed ?? []), ...owed])].sort()).map(
      (j) => j.service,
    );
    throw recordFailure(dir, e, {
      time: started.toISOString(),
      manifest: manifestId(loaded.manifest.file),
      ok: false,
      issued: written?.issued ?? 0,
      kept: written?.kept ?? 0,
      caCreated: written?.caCreated ?? false,
      changed: written?.changed ?? [],
      hooks: [],
      pending,
    });
  } finally {
    lock.release();
  }
}

/**
 * asFailure words an ordinary I/O error (full disk, read-only, permission denied) as a
 * FailedError, and restores a FailedError that crossed a worker thread as a plain Error.
 */
function asFailure(e: unknown, dir: string): unknown {
  if (e instanceof FailedError) return e;
  const io = ioFailure(e, dir);
  if (io) return io;
  if (e instanceof Error && e.name === "FailedError") return new FailedError(e.message, { cause: e });
  return e;
}

/**
 * recordFailure writes the failed run into last-apply.json and returns the error to throw. On a
 * full disk the atomic write can fail too: the old record is removed (which needs no space, and
 * frees its own) and the write tried once more, so metrics never go on saying the last apply
 * succeeded; when even that fails, the error says the record could not be written.
 */
function recordFailure(dir: string, e: unknown, record: Omit<ApplyRecord, "error">): unknown {
  const full: ApplyRecord = { ...record, error: (e as Error).message };
  try {
    writeApplyRecord(dir, full);
    return e;
  } catch {
    try {
      rmSync(abs(dir, LAYOUT.lastApply), { force: true });
      writeApplyRecord(dir, full);
      return e;
    } catch (again) {
      if (!(e instanceof MtlskitError)) return e; // a bug: its own message says more
      const removed = !existsSync(abs(dir, LAYOUT.lastApply));
      const why = (again as NodeJS.ErrnoException).code ?? (again as Error).message;
      return new FailedError(
        `${e.message}\n    and the failure could not be recorded in ${abs(dir, LAYOUT.lastApply)} (${why})${removed ? "; the previous record was removed, so status and metrics report no last apply" : ""}`,
        { cause: e },
      );
    }
  }
}

/** hookJobs are the reload hooks of the named services that have one (and still exist, managed). */
function hookJobs(loaded: LoadedManifest, dir: string, names: readonly string[]): HookJob[] {
  if (names.length === 0 || !loaded.manifest.services.some((s) => s.reload !== undefined)) return [];
  const byName = new Map(managedServices(loaded.manifest).map((s) => [s.name, s]));
  return names.flatMap((name) => {
    const s = byName.get(name);
    if (s?.reload === undefined) return [];
    const main = s.slots.find((x) => x.kind === "main")!;
    const client = s.slots.find((x) => x.kind === "client");
    const env: Record<string, string> = {
      MTLSKIT_SERVICE: s.name,
      MTLSKIT_PKI: path.resolve(dir),
      MTLSKIT_CERT: path.resolve(abs(dir, LAYOUT.cert(main))),
      MTLSKIT_KEY: path.resolve(abs(dir, LAYOUT.key(main))),
      MTLSKIT_CA: path.resolve(abs(dir, LAYOUT.bundle(s.name))),
      ...(client
        ? {
            MTLSKIT_CLIENT_CERT: path.resolve(abs(dir, LAYOUT.cert(client))),
            MTLSKIT_CLIENT_KEY: path.resolve(abs(dir, LAYOUT.key(client))),
          }
        : {}),
    };
    return [{ service: s.name, reload: s.reload, env }];
  });
}

/**
 * readStateWithKey reads the directory (and the imported CA), with the key of `apply --ca-key`
 * given to the root once it is checked against the root's certificate.
 */
function readStateWithKey(
  loaded: LoadedManifest,
  dir: string,
  imported: ReturnType<typeof loadCaSource>,
  opts: ApplyOptions,
): State {
  const state = readState(dir, loaded.manifest, imported);
  if (!opts.caKey) return state;
  const certFile = loaded.manifest.ca.import?.cert ?? abs(dir, LAYOUT.caCert);
  return { ...state, ca: withCaKey(state.ca, opts.caKey.key, opts.caKey.file, certFile) };
}

/** planWithKey plans, and refuses (exit 2, nothing written) a plan that needs the offline root key, saying what needs it. */
function planWithKey(loaded: LoadedManifest, state: State, opts: ApplyOptions): Plan {
  const plan = planApply(loaded, state, opts);
  const request = caKeyRequest(plan);
  if (request) throw new UsageError(`mtlskit apply: ${request}.`);
  return plan;
}

/** OFFLINE_ISSUER stands for an issuing CA whose key is offline in a run that only writes bundles: signing with it is a bug. */
const OFFLINE_ISSUER = new Proxy({} as Signer, {
  get: () => {
    throw new FailedError("apply: tried to sign with an offline CA key; this is a bug");
  },
});

async function applyLocked(
  loaded: LoadedManifest,
  dir: string,
  imported: ReturnType<typeof loadCaSource>,
  opts: ApplyOptions,
  pool: Pool | undefined,
): Promise<ApplyResult> {
  const managed = managedServices(loaded.manifest); // an external service's files are never touched
  // Only the service folders services/ lists are judged and swept: a new directory's 10,000
  // services would each cost an lstat and a readdir that fail (issue 12).
  const present = serviceDirsIn(dir);
  if (pool) aimKeysAhead(pool, loaded, present, opts);
  const onDisk = present === undefined ? managed : managed.filter((s) => present.has(s.name));
  // Before anything is read or removed: never through a symlinked folder, never under a CA others may replace.
  guardDirs(
    dir,
    onDisk.map((s) => s.name),
    opts.onNote ?? (() => {}),
  );
  removeTempFiles(dir);
  removeTempFiles(abs(dir, LAYOUT.caDir));
  for (const s of onDisk) removeTempFiles(abs(dir, LAYOUT.serviceDir(s.name)));
  const state = readStateWithKey(loaded, dir, imported, opts);
  const plan = planWithKey(loaded, state, opts);
  opts.onPlan?.(plan);
  let ca: CaMaterial;
  if (plan.ca.action === "create") ca = createCa(dir, plan.ca.spec);
  else if (state.ca.status === "ok") {
    ca = state.ca.root ?? state.ca.ca;
    // An imported CA's key stays where it is; its trust anchor is published as ca/ca.pem.
    if (plan.ca.action === "import" && readTextOrUndefined(abs(dir, LAYOUT.caCert)) !== ca.bundlePem) {
      ensureDir(abs(dir, LAYOUT.caDir), LAYOUT.caDir.mode);
      writeFileAtomic(abs(dir, LAYOUT.caCert), ca.bundlePem, LAYOUT.caCert.mode);
      syncDir(abs(dir, LAYOUT.caDir));
    }
  } else throw new FailedError("apply: the plan kept a CA that could not be read; this is a bug");
  // During a rotation every bundle holds the CAs its phase names, and activated services are issued by the next CA.
  const bundle = plan.rotation?.bundlePem ?? bundleOf(ca); // the root: an intermediate never enters a bundle
  const next = plan.rotation?.next;
  // The issuing CA: the intermediate (kept, or signed now by the root), else the root itself.
  if (plan.intermediate && plan.intermediate.action !== "keep")
    ca = createIntermediate(dir, plan.intermediate.spec, ca);
  else if (plan.intermediate && state.ca.status === "ok") ca = state.ca.ca;
  const byService = new Map<string, ServiceJob>(
    managed.map((s) => [s.name, { service: s.name, certs: [], bundle: false }]),
  );
  const fromNext = new Set<string>();
  for (const c of plan.certs) {
    if (c.action !== "keep") byService.get(c.slot.service)!.certs.push({ spec: c.spec, kind: c.slot.kind });
    if (c.issuer === "next") fromNext.add(c.slot.service);
  }
  for (const b of plan.bundles)
    if (b.action === "write" || plan.ca.action === "create") byService.get(b.service)!.bundle = true;
  const jobs = [...byService.values()].filter((j) => j.certs.length > 0 || j.bundle);
  const total = jobs.reduce((n, j) => n + j.certs.length, 0);
  let done = 0;
  let ahead = 0;
  const progress = (k: number, fromAhead = 0) => {
    ahead += fromAhead;
    done += k;
    opts.onProgress?.(done, total);
  };
  if (jobs.length > 0) ensureDir(abs(dir, LAYOUT.servicesDir), LAYOUT.servicesDir.mode);
  // The result's lists are worked out while the worker threads issue (this thread waits for them
  // anyway); after them, this thread alone would hold up the end of the run.
  let outcome: { kept: number; changed: string[] } | undefined;
  const workOutResult = () =>
    (outcome ??= { kept: plan.certs.filter((c) => c.action === "keep").length, changed: changedServices(plan) });
  let spare = pool;
  const umask = readUmask(); // once for every chunk of this apply (RunOptions.umask)
  for (const [issuing, group] of [
    [ca, jobs.filter((j) => !fromNext.has(j.service))],
    [next, jobs.filter((j) => fromNext.has(j.service))],
  ] as const) {
    if (group.length === 0) continue;
    if (!issuing) throw new FailedError("apply: the plan names the next CA, which could not be read; this is a bug");
    const due = group.reduce((n, j) => n + j.certs.length, 0);
    // An offline key signs nothing here: planWithKey refused any plan that needs it, so only bundles are written.
    if (due > 0 && !issuing.privateKey) throw new FailedError("apply: the issuing CA's key is offline; this is a bug");
    const issuerData: IssuerData = {
      subject: issuing.cert.subject,
      keyId: issuing.keyId,
      keyType: issuing.keyType,
      pkcs8: issuing.privateKey?.export({ type: "pkcs8", format: "der" }) ?? new Uint8Array(0),
      chainPem: issuing.chainPem,
    };
    const workers = due === 0 ? 0 : workerCount(opts, group.length);
    if (workers > 1) {
      // The pool started with apply serves the first group that needs threads; a rotation's second
      // group (the next CA's services) gets its own, ended like the first.
      const threads = spare ?? startPool(workers);
      spare = undefined;
      try {
        const writing = runInWorkers(threads, dir, group, issuerData, bundle, workers, progress, umask);
        workOutResult();
        await writing;
      } finally {
        if (threads !== pool) await threads.close();
      }
    } else {
      const issuer = due === 0 ? OFFLINE_ISSUER : toIssuer(issuerData);
      for (let i = 0; i < group.length; ) {
        const chunk = group.slice(i, (i += CHUNK_MAX));
        progress(runJobs(dir, chunk, issuer, bundle, { umask }));
      }
    }
  }
  if (plan.crl.action === "write") writeCrl(dir, plan.crl, ca, state, plan.now);
  if (jobs.length > 0) syncDir(abs(dir, LAYOUT.servicesDir));
  // Recorded last: a crash before this line leaves the old number, and the next apply re-issues again.
  writeLayoutVersion(dir, plan.layoutVersion);
  syncDir(dir);
  return {
    plan,
    issued: total,
    ...workOutResult(),
    caCreated: plan.ca.action === "create",
    hooks: [],
    keysAhead: ahead,
  };
}
