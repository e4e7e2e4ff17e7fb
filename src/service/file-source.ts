/**
 * fileSource: credentials read from files and reloaded when they change, without a restart.
 *
 * What it watches. The DIRECTORIES holding the files, not the files: a rename-over write (temp
 * file, then rename, as mtlskit apply and most tools write) replaces the file's inode, and a
 * Kubernetes Secret volume swaps a `..data` symlink to a new timestamped directory, so a watch on
 * the file itself goes silent after the first rotation (kubernetes#111947). fs.watch is not
 * reliable everywhere (network filesystems, some containers), so a periodic stat of the three
 * files backs it up; the poll stats three paths and reads nothing unless they changed.
 *
 * What it loads. Key, certificate chain and bundle as one snapshot: the three files are stat'ed,
 * read and stat'ed again, and parsed together (parseCredentials: everything parses, the key is the
 * leaf's). A snapshot that changed while being read is read again. A pair that is refused (a
 * half-written PEM, a key of another certificate, a missing file) leaves the previous credentials
 * in use. Since a rotation writes the certificate and the key one after the other, a refusal is
 * first taken for a rotation in progress and looked at again once the files have been still for
 * `debounceMs`; only a refusal that persists is reported, once, through `onError`. Any later
 * change (or poll that sees one) tries again.
 *
 * Node builds a secure context per Credentials object (options.ts), so new handshakes take the
 * new credentials as soon as `current()` returns them; established connections keep theirs.
 */
import { watch, statSync, type FSWatcher } from "node:fs";
import * as path from "node:path";
import { EXIT, FailedError, MtlskitError } from "../errors.ts";
import { readCredentials, type CredentialSource, type Credentials, type StaticFiles } from "./source.ts";

/** FileSourceDir names a directory and the three file names in it (default: mtlskit's cert.pem, key.pem, ca.pem; Kubernetes TLS Secrets use tls.crt, tls.key, ca.crt). */
export interface FileSourceDir {
  dir: string;
  /** cert: the certificate chain's file name in dir; default "cert.pem". */
  cert?: string;
  /** key: the private key's file name in dir; default "key.pem". */
  key?: string;
  /** ca: the trust bundle's file name in dir; default "ca.pem". */
  ca?: string;
  /** crl: the CA's CRL, relative to dir or absolute (mtlskit's layout: "../../ca/crl.pem"); reloaded with the rest. Default: none. */
  crl?: string;
}

/** Reload is what onReload is told: the credentials replaced and the ones now served. */
export interface Reload {
  previous: Credentials;
  current: Credentials;
}

/** FileSourceOptions: every field optional; the source itself never logs. */
export interface FileSourceOptions {
  /** onReload is called after new credentials take effect (new handshakes use them from then on). A throw from it (or onError) becomes a process warning, code MTLSKIT_CALLBACK_THREW, not an uncaught exception. */
  onReload?: (event: Reload) => void;
  /** onError is called, once per state of the files, when changed files are refused; the previous credentials stay in use. */
  onError?: (error: Error) => void;
  /** debounceMs: how long the files must be still before a change is loaded, and before a refusal is reported; default 100. */
  debounceMs?: number;
  /** pollMs: the interval of the stat fallback for when directory events are lost; default 1000, at least 10. */
  pollMs?: number;
}

/** FileCredentialSource is a CredentialSource that can be stopped. */
export interface FileCredentialSource extends CredentialSource {
  /** close stops watching and polling; current() keeps returning the last credentials. Idempotent. */
  close(): void;
}

const invalid = (message: string) => new MtlskitError(`service: fileSource: ${message}`, EXIT.invalid);

function filesOf(spec: StaticFiles | FileSourceDir): StaticFiles {
  if (spec === null || typeof spec !== "object") throw invalid("give { certFile, keyFile, caFile } or { dir }");
  if ("dir" in spec) {
    if (typeof spec.dir !== "string" || spec.dir === "") throw invalid("dir must be a directory path");
    return {
      certFile: path.join(spec.dir, spec.cert ?? "cert.pem"),
      keyFile: path.join(spec.dir, spec.key ?? "key.pem"),
      caFile: path.join(spec.dir, spec.ca ?? "ca.pem"),
      ...(spec.crl === undefined ? {} : { crlFile: path.resolve(spec.dir, spec.crl) }),
    };
  }
  for (const k of ["certFile", "keyFile", "caFile"] as const)
    if (typeof spec[k] !== "string" || spec[k] === "") throw invalid(`${k} must be a file path`);
  if (spec.crlFile !== undefined && (typeof spec.crlFile !== "string" || spec.crlFile === ""))
    throw invalid("crlFile must be a file path");
  return {
    certFile: spec.certFile,
    keyFile: spec.keyFile,
    caFile: spec.caFile,
    ...(spec.crlFile === undefined ? {} : { crlFile: spec.crlFile }),
  };
}

function millis(value: number | undefined, fallback: number, min: number, name: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value < min)
    throw invalid(`${name} must be a number of milliseconds >= ${min}; got ${String(value)}`);
  return value;
}

/** stamp is the state of the three files as stat sees it through symlinks: identity, size and times, or the error. */
function stamp(files: StaticFiles): string {
  return [files.certFile, files.keyFile, files.caFile, ...(files.crlFile === undefined ? [] : [files.crlFile])]
    .map((f) => {
      try {
        const s = statSync(f, { bigint: true });
        return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
      } catch (e) {
        return `!${(e as NodeJS.ErrnoException).code ?? "error"}`;
      }
    })
    .join("|");
}

const same = (a: Credentials, b: Credentials) =>
  a.cert === b.cert && a.key === b.key && a.ca === b.ca && a.crl === b.crl;

/**
 * fileSource serves a service's certificate, key and trust bundle from files and reloads them when
 * they change (rename-over writes, Kubernetes `..data` symlink swaps, in-place writes), keeping
 * the previous credentials while the files are refused. The first load is synchronous and throws
 * a FailedError naming the file and the fix. Call `close()` when done.
 *
 * @example
 * const source = fileSource({ dir: "/etc/tls", cert: "tls.crt", key: "tls.key", ca: "ca.crt" }, { onError: (e) => log.warn(e.message) });
 * const server = createMtlsServer(https.createServer, source, { authorize: authorizeAny() }, app);
 * server.on("close", () => source.close());
 */
export function fileSource(spec: StaticFiles | FileSourceDir, opts: FileSourceOptions = {}): FileCredentialSource {
  const files = filesOf(spec);
  const debounceMs = millis(opts.debounceMs, 100, 0, "debounceMs");
  const pollMs = millis(opts.pollMs, 1000, 10, "pollMs");

  let loadedStamp = stamp(files);
  let creds = readCredentials(files);
  let closed = false;
  /** suspect: the stamp of files refused once and due another look once still; reported: the stamp last reported to onError. */
  let suspect: string | undefined;
  let reported: string | undefined;
  let timer: NodeJS.Timeout | undefined;

  /**
   * notify calls a user callback from a timer or watcher, where a throw would be an uncaught
   * exception and end the process: a failing log line must not take down a server that is serving
   * correctly (the credentials are already in place). The throw becomes a process warning.
   */
  const notify = <T>(name: string, callback: ((arg: T) => void) | undefined, arg: T): void => {
    try {
      callback?.(arg);
    } catch (e) {
      process.emitWarning(`fileSource's ${name} callback threw: ${(e as Error)?.message ?? String(e)}`, {
        code: "MTLSKIT_CALLBACK_THREW",
        detail: (e as Error)?.stack,
      });
    }
  };

  const schedule = () => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(attempt, debounceMs);
    timer.unref();
  };

  function attempt(): void {
    timer = undefined;
    if (closed) return;
    const before = stamp(files);
    if (before === loadedStamp || before === reported) return;
    let next: Credentials;
    try {
      next = readCredentials(files);
    } catch (e) {
      if (stamp(files) !== before || before !== suspect) {
        // Still being written, or refused for the first time: perhaps a rotation in progress.
        suspect = before;
        schedule();
        return;
      }
      suspect = undefined;
      reported = before;
      const message = (e as Error).message.replace(/^service: /, "");
      notify(
        "onError",
        opts.onError,
        new FailedError(
          `service: fileSource: not reloaded, still serving ${creds.leaf.subject} (serial ${creds.leaf.serialHex}): ${message}`,
          { cause: e },
        ),
      );
      return;
    }
    if (stamp(files) !== before) return schedule(); // torn snapshot: the files changed while being read
    suspect = undefined;
    reported = undefined;
    loadedStamp = before;
    if (same(next, creds)) return;
    const previous = creds;
    creds = next;
    notify("onReload", opts.onReload, { previous, current: next });
  }

  // One watcher per directory holding a file; a watcher that fails is dropped and made again at a later poll.
  const watched = [
    files.certFile,
    files.keyFile,
    files.caFile,
    ...(files.crlFile === undefined ? [] : [files.crlFile]),
  ];
  const dirs = [...new Set(watched.map((f) => path.dirname(path.resolve(f))))];
  const watchers = new Map<string, FSWatcher>();
  const watchAll = () => {
    for (const dir of dirs) {
      if (watchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: false }, schedule);
        w.on("error", () => {
          w.close();
          watchers.delete(dir);
          schedule();
        });
        watchers.set(dir, w);
      } catch {
        // The poll covers a directory that cannot be watched (gone, not permitted, no inotify left).
      }
    }
  };
  watchAll();
  const poll = setInterval(() => {
    watchAll();
    const now = stamp(files);
    if (now !== loadedStamp && now !== reported && timer === undefined) schedule();
  }, pollMs);
  poll.unref();

  return {
    current: () => creds,
    close: () => {
      if (closed) return;
      closed = true;
      clearInterval(poll);
      clearTimeout(timer);
      for (const w of watchers.values()) w.close();
      watchers.clear();
    },
  };
}
