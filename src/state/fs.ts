/**
 * Durable file operations: atomic writes (temp file created with its final mode, fsync, rename,
 * directory fsync), and the apply lock. Every write under a PKI directory goes through here.
 */
import { closeSync, constants, fchmodSync, linkSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import * as path from "node:path";
import { FailedError } from "../errors.ts";
import { TEMP_MARK } from "./layout.ts";

let counter = 0;

/**
 * writeFileAtomic replaces `file` with `data` so that readers see the old bytes or the new,
 * never a mix, even across a crash (k3s#405, certinel#23). The temp file is created with `mode`
 * (so a key is never readable by others, not even for a moment), fsynced, then renamed.
 * The caller fsyncs the directory once after a batch of renames (syncDir).
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, mode: number): void {
  const tmp = path.join(path.dirname(file), `${TEMP_MARK}${process.pid}-${counter++}-${path.basename(file)}`);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    fchmodSync(fd, mode); // the umask may have removed bits; set exactly, before any byte is written
    writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, file);
}

/** syncDir fsyncs a directory so renames and creations in it survive a power loss. */
export function syncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * ensureDir creates `dir` with exactly `mode` if it is missing, and reports whether it did.
 * With `parents`, missing parent directories are created first, as `mkdir -p` does (with the
 * umask's modes: they are the user's folders, not the PKI's).
 */
export function ensureDir(dir: string, mode: number, opts: { parents?: boolean } = {}): boolean {
  try {
    if (opts.parents) mkdirSync(path.dirname(dir), { recursive: true });
    mkdirSync(dir, { mode });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const what = code === "EEXIST" ? pathKind(dir) : undefined;
    if (what === "directory") return false;
    if (what === "other") throw new FailedError(`pki: ${dir} exists and is not a directory; move it away`);
    if (code === "EEXIST" || code === "ENOTDIR") throw new FailedError(`pki: cannot create ${dir}: part of its path is a file, not a directory; choose another --pki or move that file away`);
    if (code === "ENOENT") throw new FailedError(`pki: cannot create ${dir}: its parent ${path.dirname(dir)} does not exist`);
    if (code === "EACCES" || code === "EPERM" || code === "EROFS") throw new FailedError(`pki: cannot create ${dir}: ${code === "EROFS" ? "the file system is read-only" : "permission denied"}; choose a writable --pki DIR or run as a user who may write there`);
    throw e;
  }
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fchmodSync(fd, mode); // a fresh, empty directory: set exactly what the umask may have narrowed
  } finally {
    closeSync(fd);
  }
  return true;
}

/** pathKind says what `p` is; "blocked" when a file stands where a parent directory should be. */
function pathKind(p: string): "directory" | "other" | "missing" | "blocked" {
  try {
    return statSync(p).isDirectory() ? "directory" : "other";
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOTDIR" ? "blocked" : "missing";
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

interface LockInfo {
  pid: number;
  host: string;
  since: string;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * acquireLock takes `file` exclusively (O_EXCL). When another apply holds it, waits up to
 * `waitMs`, then fails naming the holder. A lock whose holder died on this host (kill -9) is
 * taken over: it is renamed aside first, so two waiters cannot both take it over.
 */
export function acquireLock(file: string, opts: { waitMs?: number; now?: () => Date } = {}): Lock {
  const waitMs = opts.waitMs ?? 5000;
  const deadline = Date.now() + waitMs;
  const me: LockInfo = { pid: process.pid, host: hostname(), since: (opts.now?.() ?? new Date()).toISOString() };
  for (;;) {
    try {
      // The lock appears with its content or not at all: written aside, then hard-linked into
      // place (link fails if the lock exists), so a kill never leaves an empty lock behind.
      const tmp = path.join(path.dirname(file), `${TEMP_MARK}lock-${process.pid}-${counter++}`);
      const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
      try {
        writeSync(fd, JSON.stringify(me) + "\n");
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      try {
        linkSync(tmp, file);
      } finally {
        rmSync(tmp, { force: true });
      }
      return {
        release: () => {
          try {
            unlinkSync(file);
          } catch {
            /* already gone: nothing to release */
          }
        },
      };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOENT") continue; // the holder swept our temp file away as a leftover: try again
      if (code !== "EEXIST") throw e;
    }
    let holder: LockInfo | undefined;
    try {
      holder = JSON.parse(readFileSync(file, "utf8")) as LockInfo;
    } catch {
      holder = undefined; // vanished, or unreadable
      // An unreadable lock older than a minute was left by an older or killed writer: take it over.
      try {
        if (Date.now() - statSync(file).mtimeMs > 60_000) {
          rmSync(file, { force: true });
          continue;
        }
      } catch {
        continue; // vanished: try again at once
      }
    }
    if (holder && holder.host === me.host && !isAlive(holder.pid)) {
      const aside = path.join(path.dirname(file), `${TEMP_MARK}stale-lock-${process.pid}`);
      try {
        renameSync(file, aside);
        const moved = JSON.parse(readFileSync(aside, "utf8")) as LockInfo;
        if (moved.pid === holder.pid && moved.since === holder.since) rmSync(aside, { force: true });
        else linkSync(aside, file); // we moved a live waiter's fresh lock: put it back
      } catch {
        /* someone else took it over first */
      }
      rmSync(aside, { force: true });
      continue;
    }
    if (Date.now() >= deadline) {
      const who = holder ? `mtlskit (pid ${holder.pid} on ${holder.host}, since ${holder.since})` : "another mtlskit";
      throw new FailedError(
        `pki: ${who} is applying to this directory and holds ${file}; waited ${waitMs < 10_000 ? Number((waitMs / 1000).toFixed(1)) : Math.round(waitMs / 1000)}s. Run apply again when it finishes. If no apply is running, remove ${file}.`,
      );
    }
    sleep(50);
  }
}
