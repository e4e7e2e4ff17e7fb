/**
 * Durable file operations: atomic writes (temp file created with its final mode, fsync, rename,
 * directory fsync), and the apply lock. Every write under a PKI directory goes through here.
 */
import { execFileSync } from "node:child_process";
import {
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  linkSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  readlinkSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { hostname } from "node:os";
import * as path from "node:path";
import { isMainThread } from "node:worker_threads";
import { FailedError } from "../errors.ts";
import { readTextBounded } from "../read-file.ts";
import { TEMP_MARK } from "./layout.ts";

let counter = 0;
/** TEMP_PREFIX starts the name of every temp file this process writes (TEMP_MARK and the pid). */
const TEMP_PREFIX = `${TEMP_MARK}${process.pid}-`;

/**
 * CrashStage is a moment of a durable write: a temp file created (empty), written (not yet
 * fsynced), fsynced, renamed into place; a directory fsynced (after its renames).
 */
type CrashStage = "created" | "written" | "synced" | "renamed" | "dirsynced";

/**
 * CRASH_AT is a test seam (test/crash.test.ts), never set outside that test: with
 * MTLSKIT_TEST_CRASH_AT=STAGE:N[:main|worker], the process kills itself with SIGKILL the N-th time
 * a thread (of that kind; each thread counts its own) reaches STAGE, so every kill of the crash
 * test lands inside a write, whatever the machine's speed. Unset, it costs one comparison per
 * stage.
 */
const CRASH_AT = ((spec) => {
  const m =
    spec === undefined
      ? null
      : /^(created|written|synced|renamed|dirsynced):([1-9][0-9]*)(?::(main|worker))?$/.exec(spec);
  if (!m || (m[3] !== undefined && (m[3] === "main") !== isMainThread)) return undefined;
  return { stage: m[1] as CrashStage, n: Number(m[2]), seen: 0 };
})(process.env.MTLSKIT_TEST_CRASH_AT);

/** crashPoint kills the process at the moment MTLSKIT_TEST_CRASH_AT names (see CRASH_AT). */
function crashPoint(stage: CrashStage): void {
  if (CRASH_AT?.stage === stage && ++CRASH_AT.seen === CRASH_AT.n) process.kill(process.pid, "SIGKILL");
}

/** FileWrite is one file of a durable batch: its path, its new content and its mode. */
export interface FileWrite {
  file: string;
  data: string | Uint8Array;
  mode: number;
}

/**
 * writeFileAtomic replaces `file` with `data` so that readers see the old bytes or the new,
 * never a mix, even across a crash (k3s#405, certinel#23). The temp file is created with `mode`
 * (so a key is never readable by others, not even for a moment), fsynced, then renamed.
 * The caller fsyncs the directory once after a batch of renames (syncDir).
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, mode: number): void {
  writeFilesAtomic([{ file, data, mode }], { syncDirs: false });
}

/**
 * MEMORY_FS: file systems held in memory (statfs f_type: tmpfs, ramfs), where fsync costs
 * microseconds and nothing survives a power loss anyway: a batch fsyncs each file there.
 */
const MEMORY_FS = new Set([0x01021994, 0x858458f6]);

/**
 * SYNC_BIN: coreutils' sync, whose `sync -f FILE` calls syncfs(2) on FILE's file system (Node has
 * no binding for it). One syncfs makes a whole batch's temp files durable in one journal commit
 * where an fsync per file pays one each (measured on ext4: a batch of 64 services' files with
 * syncfs took about as long as no fsync at all; an fsync per file 2-3x that). Only on Linux, only
 * by absolute path; undefined (an fsync per file) when missing, or for this thread once it failed.
 */
let SYNC_BIN: string | undefined | null = null;

/**
 * syncFileSystems flushes the file systems holding `dirs` (syncfs through SYNC_BIN); false when it
 * could not, so the caller fsyncs each file instead (and surfaces the I/O error, if that was it).
 */
function syncFileSystems(dirs: readonly string[]): boolean {
  if (SYNC_BIN === null)
    SYNC_BIN = process.platform === "linux" ? ["/usr/bin/sync", "/bin/sync"].find((f) => existsSync(f)) : undefined;
  if (SYNC_BIN === undefined) return false;
  try {
    execFileSync(SYNC_BIN, ["-f", ...dirs], { stdio: "ignore", timeout: 120_000, env: { LC_ALL: "C" } });
    return true;
  } catch {
    SYNC_BIN = undefined;
    return false;
  }
}

/** isInMemory says whether `dir` lies on a file system held in memory (MEMORY_FS). */
export function isInMemory(dir: string): boolean {
  try {
    return MEMORY_FS.has(statfsSync(dir).type);
  } catch {
    return false;
  }
}

/**
 * writeFilesAtomic replaces every file of `files` as writeFileAtomic replaces one, with the
 * durability work batched: every temp file is created (with its final mode) and written, then all
 * are made durable (one syncfs of the file system for a batch of several files on disk, else an
 * fsync per file), then they are renamed into place in the order given (a key listed before its
 * certificate is renamed first), then each directory that holds one is fsynced once (unless
 * `syncDirs` is false: the caller does it). A kill at any moment leaves each file whole, old or
 * new, and temp files that removeTempFiles sweeps; a power loss after this returns loses none of
 * the new files. A failure before the renames removes every temp file and replaces nothing; one
 * while renaming leaves the files before it replaced (each whole) and removes the temp files after.
 * At most one file descriptor is open at a time.
 */
export function writeFilesAtomic(
  files: readonly FileWrite[],
  opts: { syncDirs?: boolean; inMemory?: (dir: string) => boolean; umask?: number | null } = {},
): void {
  // Plain loops rather than map/filter/spread over a Set: those, inlined, were re-optimised after
  // "wrong map" bailouts in every worker thread (issue 12).
  const dirOf: [string, string][] = [];
  const dirs: string[] = []; // each folder once, in the order first seen
  const seen = new Set<string>();
  for (let i = 0; i < files.length; i++) {
    const pair = splitPath(files[i]!.file);
    dirOf.push(pair);
    if (!seen.has(pair[0])) {
      seen.add(pair[0]);
      dirs.push(pair[0]);
    }
  }
  // In memory (tmpfs, ramfs) nothing survives a power loss, so there is nothing to fsync: a kill
  // -9 leaves each file whole through the rename alone. On disk: an fsync per file when there is
  // one file, else one syncfs for all.
  const inMemory = opts.inMemory ?? isInMemory;
  const memory = new Set<string>();
  for (const d of dirs) if (inMemory(d)) memory.add(d);
  const fsyncEach = files.length < 2 || memory.size > 0;
  // One read of the umask per batch (or per apply: opts.umask) saves an fchmod per file (a single file just sets its mode).
  const umask = files.length > 1 ? (opts.umask === undefined ? readUmask() : opts.umask) : null;
  const temps: { tmp: string; file: string }[] = [];
  let renamed = 0;
  let doing: string | undefined; // the file being replaced when a step fails
  const fsyncFile = (tmp: string, fd?: number) => {
    const own = fd ?? openSync(tmp, constants.O_WRONLY | constants.O_NOFOLLOW);
    try {
      fsyncSync(own);
    } finally {
      if (fd === undefined) closeSync(own);
    }
    crashPoint("synced");
  };
  try {
    for (let i = 0; i < files.length; i++) {
      const f = files[i]!;
      const [dir, base] = dirOf[i]!;
      doing = f.file;
      const tmp = tempPath(f.file, dir, base);
      const fd = openSync(
        tmp,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        f.mode,
      );
      temps.push({ tmp, file: f.file });
      try {
        // Set exactly what the umask removed, before any byte is written (nothing to set when it removed nothing).
        if (umask === null || (f.mode & umask) !== 0) fchmodSync(fd, f.mode);
        crashPoint("created");
        // A string is written as UTF-8 straight from the string (no Buffer made for it).
        if (typeof f.data === "string") writeSync(fd, f.data);
        else writeSync(fd, f.data);
        crashPoint("written");
        if (fsyncEach) {
          if (memory.has(dir)) crashPoint("synced");
          else fsyncFile(tmp, fd);
        }
      } finally {
        closeSync(fd);
      }
    }
    if (!fsyncEach) {
      doing = undefined;
      // One directory per file system (a service folder may be a mount of its own).
      const devices = new Map(dirs.map((d) => [statSync(d).dev, d]));
      if (syncFileSystems([...devices.values()]))
        for (const _ of temps) crashPoint("synced"); // each file is durable now
      else
        for (const t of temps) {
          doing = t.file;
          fsyncFile(t.tmp);
        }
    }
    for (const t of temps) {
      doing = t.file;
      renameSync(t.tmp, t.file);
      renamed++;
      crashPoint("renamed");
    }
  } catch (e) {
    for (const t of temps.slice(renamed)) rmSync(t.tmp, { force: true });
    (e as NodeJS.ErrnoException).path ??= doing; // a failed write names no file: name the one being replaced
    throw e;
  }
  if (opts.syncDirs !== false) for (const d of dirs) syncDir(d, memory.has(d));
}

/**
 * splitPath is [path.dirname(file), path.basename(file)] for the file paths apply writes (absolute,
 * or below a directory), by one search for the last separator: path's own pair cost ~60 ms of
 * CPU per worker thread at 10,000 services (issue 12). Anything else goes through path.
 */
function splitPath(file: string): [string, string] {
  const i = path.sep === "/" ? file.lastIndexOf("/") : -1;
  if (i <= 0 || i === file.length - 1) return [path.dirname(file), path.basename(file)];
  return [file.slice(0, i), file.slice(i + 1)];
}

/**
 * tempPath names the temp file written for `file` (in `dir`, as `base`) before its rename: in the
 * same folder, marked with TEMP_MARK, unique in this process. When `file` is `dir/base` (what
 * splitPath's fast path found) the name is put together from it; path.join cost ~30 ms of CPU
 * per worker thread at 10,000 services (issue 12).
 */
function tempPath(file: string, dir: string, base: string): string {
  const name = `${TEMP_PREFIX}${counter++}-${base}`;
  return path.sep === "/" && file.length === dir.length + 1 + base.length
    ? file.slice(0, dir.length + 1) + name
    : path.join(dir, name);
}

/**
 * syncDir fsyncs a directory so renames and creations in it survive a power loss; in memory
 * (`inMemoryFs`, or when the directory lies on tmpfs or ramfs) there is no power loss to survive.
 */
export function syncDir(dir: string, inMemoryFs = isInMemory(dir)): void {
  if (inMemoryFs) return crashPoint("dirsynced");
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  crashPoint("dirsynced");
}

/**
 * ensureDir creates `dir` with exactly `mode` if it is missing, and reports whether it did.
 * With `parents`, missing parent directories are created first, as `mkdir -p` does (with the
 * umask's modes: they are the user's folders, not the PKI's). With `umask` (readUmask, read by the
 * caller once for many folders) the mode is set again only when the umask removed some of its
 * bits; without it (or null: unknown), always.
 */
export function ensureDir(dir: string, mode: number, opts: { parents?: boolean; umask?: number | null } = {}): boolean {
  try {
    if (opts.parents) mkdirSync(path.dirname(dir), { recursive: true });
    mkdirSync(dir, { mode });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const what = code === "EEXIST" ? pathKind(dir) : undefined;
    if (what === "directory") return false;
    if (what === "other") throw new FailedError(`pki: ${dir} exists and is not a directory; move it away`);
    if (what === "dangling")
      throw new FailedError(
        `pki: ${dir} is a symbolic link to ${readlinkSync(dir)}, which does not exist\n    fix: create the directory it points to (mkdir -p ${path.resolve(path.dirname(dir), readlinkSync(dir))}), or remove the link and let apply create ${dir}`,
      );
    if (code === "EEXIST" || code === "ENOTDIR")
      throw new FailedError(
        `pki: cannot create ${dir}: part of its path is a file, not a directory; choose another --pki or move that file away`,
      );
    if (code === "ENOENT")
      throw new FailedError(`pki: cannot create ${dir}: its parent ${path.dirname(dir)} does not exist`);
    if (code === "EACCES" || code === "EPERM" || code === "EROFS")
      throw new FailedError(
        `pki: cannot create ${dir}: ${code === "EROFS" ? "the file system is read-only" : "permission denied"}; choose a writable --pki DIR or run as a user who may write there`,
      );
    throw ioFailure(e, dir) ?? e;
  }
  if (opts.umask !== undefined && opts.umask !== null && (mode & opts.umask) === 0) return true; // mkdir gave it exactly `mode`
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fchmodSync(fd, mode); // a fresh, empty directory: set exactly what the umask may have narrowed
  } finally {
    closeSync(fd);
  }
  return true;
}

/**
 * readUmask reads the process's umask from /proc/self/status (Linux; race-free, unlike
 * process.umask() without an argument); null where it cannot be read. Read afresh by each batch:
 * an application may change the umask between two applies.
 */
export function readUmask(): number | null {
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(readFileSync("/proc/self/status", "latin1"));
    return m ? Number.parseInt(m[1]!, 8) : null;
  } catch {
    return null;
  }
}

/** pathKind says what `p` is; "blocked" when a file stands where a parent directory should be; "dangling" for a link to nothing. */
function pathKind(p: string): "directory" | "other" | "missing" | "blocked" | "dangling" {
  try {
    return statSync(p).isDirectory() ? "directory" : "other";
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOTDIR") return "blocked";
    try {
      return lstatSync(p).isSymbolicLink() ? "dangling" : "missing";
    } catch {
      return "missing";
    }
  }
}

/** removeTempFiles deletes temp files a killed apply left in `dir` (call under the lock). */
export function removeTempFiles(dir: string): number {
  let n = 0;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    if (name.includes(TEMP_MARK)) {
      rmSync(path.join(dir, name), { force: true, recursive: true });
      n++;
    }
  }
  return n;
}

/** Lock is a held apply lock. */
export interface Lock {
  release(): void;
}

/** LockInfo is the content of DIR/.lock: who holds it, where, since when. */
export interface LockInfo {
  pid: number;
  host: string;
  since: string;
}

/**
 * LOCK_STALE_MS: a lock older than this is stale whoever holds it. A lock on a shared volume may
 * come from another host, whose pids cannot be checked from here, so age is the only rule that
 * works across hosts (issue 11). An hour is far longer than apply holds the lock: issuing
 * thousands of certificates takes minutes and each reload hook is bounded at 60 s.
 */
export const LOCK_STALE_MS = 60 * 60_000;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

const ago = (ms: number) =>
  ms < 120_000
    ? `${Math.max(0, Math.round(ms / 1000))}s`
    : ms < 7_200_000
      ? `${Math.round(ms / 60_000)} min`
      : `${Math.round(ms / 3_600_000)} h`;

/** readLockInfo reads a lock file; undefined when it vanished or does not hold a lock record. */
function readLockInfo(file: string): LockInfo | undefined {
  try {
    const info = JSON.parse(readTextBounded(file, { limit: 4096, noFollow: true })) as LockInfo;
    return typeof info.pid === "number" && typeof info.host === "string" && typeof info.since === "string"
      ? info
      : undefined;
  } catch {
    return undefined;
  }
}

/** staleReason says why the holder's lock may be taken over, or undefined while it is held. */
function staleReason(holder: LockInfo, me: LockInfo, now: number, breakLock: boolean): string | undefined {
  if (breakLock) return "--break-lock";
  if (holder.host === me.host && !isAlive(holder.pid)) return "its process has exited";
  const age = now - Date.parse(holder.since);
  if (age > LOCK_STALE_MS) return `it is older than ${LOCK_STALE_MS / 60_000} min`;
  return undefined;
}

/**
 * takeOver removes the stale lock of `holder`: renamed aside first and compared, so two waiters
 * cannot both take it over, and a fresh lock that replaced it meanwhile is put back.
 */
function takeOver(file: string, holder: LockInfo): void {
  const aside = path.join(path.dirname(file), `${TEMP_MARK}stale-lock-${process.pid}`);
  try {
    renameSync(file, aside);
    const moved = readLockInfo(aside);
    if (moved?.pid === holder.pid && moved.since === holder.since && moved.host === holder.host)
      rmSync(aside, { force: true });
    else linkSync(aside, file); // we moved a live waiter's fresh lock: put it back
  } catch {
    /* someone else took it over first */
  }
  rmSync(aside, { force: true });
}

/** createLock writes `me` aside and hard-links it to `file`; false when another lock is there. */
function createLock(file: string, me: LockInfo): boolean {
  // The lock appears with its content or not at all: written aside, then hard-linked into
  // place (link fails if the lock exists), so a kill never leaves an empty lock behind.
  const tmp = path.join(path.dirname(file), `${TEMP_MARK}lock-${process.pid}-${counter++}`);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
  try {
    try {
      writeSync(fd, JSON.stringify(me) + "\n");
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    linkSync(tmp, file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    (e as NodeJS.ErrnoException).path ??= file; // a failed write names no file
    throw e;
  } finally {
    rmSync(tmp, { force: true }); // also after ENOSPC: a full disk must not keep our temp file
  }
}

/**
 * acquireLock takes `file` exclusively. When another apply holds it, waits up to `waitMs`, then
 * fails naming the holder (host, pid, age) and how to break the lock. A stale lock is taken over:
 * one whose holder died on this host (kill -9), one older than LOCK_STALE_MS (from any host), or
 * any with `breakLock`. Every path of the wait is bounded by the deadline (issue 11: a lock file
 * that kept vanishing spun forever at 100 % CPU).
 */
export function acquireLock(file: string, opts: { waitMs?: number; now?: () => Date; breakLock?: boolean } = {}): Lock {
  const waitMs = opts.waitMs ?? 5000;
  const deadline = Date.now() + waitMs;
  const dir = path.dirname(file);
  const me: LockInfo = { pid: process.pid, host: hostname(), since: (opts.now?.() ?? new Date()).toISOString() };
  let holder: LockInfo | undefined;
  let vanished = 0;
  let takeovers = 0;
  for (;;) {
    try {
      if (createLock(file, me)) {
        return {
          release: () => {
            try {
              unlinkSync(file);
            } catch {
              /* already gone: nothing to release */
            }
          },
        };
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "ENOENT") throw e; // a full disk, a read-only file system: the caller words and records it (ioFailure)
      // The holder may sweep our temp file away as a leftover (once, rarely); a directory that
      // is gone, or that refuses new files (/proc), fails now instead of spinning.
      if (pathKind(dir) !== "directory")
        throw new FailedError(
          `pki: ${dir} was removed while apply was waiting for its lock; nothing was written\n    fix: run apply again`,
        );
      if (++vanished > 3)
        throw new FailedError(
          `pki: cannot create files in ${dir} (ENOENT): it does not accept new files (a virtual file system such as /proc?); nothing was written\n    fix: choose another --pki DIR`,
        );
      continue;
    }
    const found = readLockInfo(file);
    if (found) {
      holder = found;
      // Taken over at once, even with no wait; a bounded number of times, so that locks that keep
      // coming back stale cannot loop past the deadline either.
      if (staleReason(found, me, Date.now(), opts.breakLock === true) && takeovers++ < 10) {
        takeOver(file, found);
        continue;
      }
    } else {
      // An unreadable lock older than a minute was left by an older or killed writer: take it over.
      try {
        if (Date.now() - statSync(file).mtimeMs > 60_000 || opts.breakLock) rmSync(file, { force: true });
      } catch {
        // vanished: try again, within the deadline
      }
    }
    if (Date.now() >= deadline) throw lockHeld(file, holder, waitMs, me);
    sleep(50);
  }
}

/** lockHeld is the error for a lock still held at the deadline: who holds it, and how to break it. */
function lockHeld(file: string, holder: LockInfo | undefined, waitMs: number, me: LockInfo): FailedError {
  const waited = waitMs < 10_000 ? Number((waitMs / 1000).toFixed(1)) : Math.round(waitMs / 1000);
  const age = holder ? Date.now() - Date.parse(holder.since) : NaN;
  const who = holder
    ? `mtlskit (pid ${holder.pid} on ${holder.host}, since ${holder.since}, ${Number.isFinite(age) ? ago(age) : "unknown time"} ago)`
    : "another mtlskit";
  const where =
    holder && holder.host !== me.host
      ? `on ${holder.host} (another host sharing this directory; a lock from another host is taken over once it is ${LOCK_STALE_MS / 60_000} min old)`
      : "on this host";
  return new FailedError(
    `pki: ${who} is applying to this directory and holds ${file}; waited ${waited}s. Run apply again when it finishes.\n    fix: if no apply is running ${where}, run apply with --break-lock (or remove ${file})`,
  );
}

/** IO_ERRORS words the ordinary I/O failures of a write: what happened and what to do. */
const IO_ERRORS: Record<string, { what: string; fix: (dir: string) => string }> = {
  ENOSPC: {
    what: "the file system is full",
    fix: (d) => `free space on the file system that holds ${d} (df ${d}), then run apply again`,
  },
  EDQUOT: {
    what: "the disk quota is exhausted",
    fix: (d) => `free space within your quota on the file system that holds ${d}, then run apply again`,
  },
  EROFS: {
    what: "the file system is read-only",
    fix: (d) => `remount the file system that holds ${d} read-write, or choose a writable --pki DIR`,
  },
  EACCES: {
    what: "permission denied",
    fix: (d) => `run apply as the user that owns ${d} (ls -ld ${d}), or give that user write access`,
  },
  EPERM: {
    what: "operation not permitted",
    fix: (d) => `run apply as the user that owns ${d} (ls -ld ${d}); check for immutable files (lsattr)`,
  },
  EIO: {
    what: "an I/O error (the disk may be failing)",
    fix: (d) => `check the disk that holds ${d} (dmesg), then run apply again`,
  },
  EMFILE: { what: "too many open files", fix: () => "raise the open-file limit (ulimit -n), then run apply again" },
  ENFILE: {
    what: "too many open files on this system",
    fix: () => "close other programs' files or raise fs.file-max, then run apply again",
  },
};

/**
 * ioFailure turns an ordinary I/O error of a write (full disk, read-only file system, permission
 * denied) into a FailedError naming the path, the cause and the fix: these are not bugs (issue
 * 11). `dir` is the directory the fix names; `who` starts the message. Undefined for anything else.
 */
export function ioFailure(e: unknown, dir: string, who = "pki"): FailedError | undefined {
  const err = e as NodeJS.ErrnoException;
  const known = typeof err?.code === "string" ? IO_ERRORS[err.code] : undefined;
  if (!known) return undefined;
  const verb =
    err.syscall === "rename"
      ? "replace"
      : err.syscall === "mkdir"
        ? "create"
        : err.syscall === "open" || err.syscall === "write" || err.syscall === "link"
          ? "write"
          : (err.syscall ?? "write");
  const target = err.path ?? dir;
  return new FailedError(
    `${who}: cannot ${verb} ${target}: ${known.what} (${err.code}); every file is whole, old or new\n    fix: ${known.fix(dir)}`,
    { cause: e },
  );
}
