/**
 * Bounded reads of user files: the one way mtlskit reads a file someone named (a manifest, a
 * certificate, a key, a log, a PKI directory's files) or standard input. `/dev/zero` or a FIFO
 * named as a certificate used to hang or grow to gigabytes (issue 11): a size taken from stat
 * is no bound (devices and /proc report 0, a file can grow), so the bound is enforced while
 * reading, and anything but a regular file is refused by name before a byte is read.
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from "node:fs";
import { FailedError } from "./errors.ts";

/** MAX_FILE_BYTES: the default bound; certificates, keys, manifests and logs are kilobytes to megabytes. */
export const MAX_FILE_BYTES = 64 * 1024 * 1024;

/**
 * ReadFileError is a file that could not be read. `code` is the errno code (ENOENT, EACCES,
 * EISDIR, ...) or ENOTREG (a FIFO, device or socket) or EFBIG (over the bound); `reason` is a
 * phrase after the path ("is a FIFO, not a regular file"). It is a FailedError (exit 3); callers
 * that know better (a missing manifest is exit 2) look at `code`.
 */
export class ReadFileError extends FailedError {
  readonly code: string;
  readonly path: string;
  readonly reason: string;
  constructor(file: string, code: string, reason: string, options?: { cause?: unknown }) {
    super(`cannot read ${file}: it ${reason}`, options);
    this.code = code;
    this.path = file;
    this.reason = reason;
  }
}

/** ReadOptions bound a read. */
export interface ReadOptions {
  /** limit: the most bytes accepted. Default: MAX_FILE_BYTES (64 MB). */
  limit?: number;
  /** noFollow: refuse a symbolic link as the last component (O_NOFOLLOW). Default: false. */
  noFollow?: boolean;
  /** onStat is given the fstat of the regular file being read (its mode, owner), before it is read. */
  onStat?: (stats: Stats) => void;
}

const KINDS: [(s: Stats) => boolean, string][] = [
  [(s) => s.isDirectory(), "a directory"],
  [(s) => s.isFIFO(), "a FIFO (named pipe)"],
  [(s) => s.isCharacterDevice(), "a character device"],
  [(s) => s.isBlockDevice(), "a block device"],
  [(s) => s.isSocket(), "a socket"],
];

/** kindOf names what a non-regular file is, for messages. */
const kindOf = (s: Stats) => KINDS.find(([is]) => is(s))?.[1] ?? "not a regular file";

const megabytes = (n: number) => (n >= 1024 * 1024 ? `${Math.round(n / 1024 / 1024)} MB` : `${n} bytes`);

/** reasonOf is the phrase for an errno code, after "it". */
function reasonOf(code: string | undefined, e: unknown): string {
  switch (code) {
    case "ENOENT":
      return "does not exist";
    case "EACCES":
    case "EPERM":
      return "is not readable (permission denied)";
    case "ELOOP":
      return "is a symbolic link, which is not followed here";
    case "ENOTDIR":
      return "is under a path component that is not a directory";
    case "EISDIR":
      return "is a directory";
    default:
      return `could not be read (${code ?? (e as Error).message})`;
  }
}

/**
 * readFileBounded reads the regular file `file` whole, refusing anything else and anything over
 * `opts.limit` bytes while reading. The open is non-blocking, so a FIFO with no writer does not
 * block; fstat of the open descriptor (not the path) decides what it is. Throws ReadFileError.
 */
export function readFileBounded(file: string, opts: ReadOptions = {}): Buffer {
  return readBounded(file, opts, undefined);
}

/**
 * scratch is the buffer readTextBounded reads into: its bytes leave only as a string, so one
 * buffer serves every read (check reads 30,000 files at 10,000 services; a fresh buffer of 8 KB
 * or more for each cost about 0.2 s of allocation and garbage collection).
 */
const scratch = Buffer.allocUnsafeSlow(64 * 1024);

/** readBounded reads as readFileBounded says; the first chunk goes into `into` when it fits, so the result may be a view of `into`. */
function readBounded(file: string, opts: ReadOptions, into: Buffer | undefined): Buffer {
  const limit = opts.limit ?? MAX_FILE_BYTES;
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | (opts.noFollow ? constants.O_NOFOLLOW : 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ReadFileError(file, code ?? "EIO", reasonOf(code, e), { cause: e });
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new ReadFileError(file, "EISDIR", "is a directory");
    if (!st.isFile()) throw new ReadFileError(file, "ENOTREG", `is ${kindOf(st)}, not a regular file`);
    if (st.size > limit)
      throw new ReadFileError(file, "EFBIG", `is ${megabytes(st.size)}, over the ${megabytes(limit)} mtlskit reads`);
    opts.onStat?.(st);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      // As much as stat promises plus one byte (a small file fits Node's shared pool: re-reading a
      // PKI directory reads 30,000 files of under 1 KB), then 8 KB at a time for a file that grew
      // or reports no size (/proc).
      const room = total < st.size ? st.size - total + 1 : 8192;
      const want = Math.min(room, limit - total + 1);
      const buf =
        into && chunks.length === 0 && want <= into.length ? into.subarray(0, want) : Buffer.allocUnsafe(want);
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new ReadFileError(file, code ?? "EIO", reasonOf(code, e), { cause: e });
      }
      if (n === 0) break;
      total += n;
      if (total > limit) throw new ReadFileError(file, "EFBIG", `grew over the ${megabytes(limit)} mtlskit reads`);
      chunks.push(n === buf.length ? buf : buf.subarray(0, n));
      // Exactly the size stat gave, and short of the byte more asked for: the end of a regular
      // file, without a second read that returns nothing.
      if (n < buf.length && total === st.size) break;
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
  } finally {
    closeSync(fd);
  }
}

/** readTextBounded is readFileBounded decoded as UTF-8. */
export function readTextBounded(file: string, opts: ReadOptions = {}): string {
  return readBounded(file, opts, scratch).toString("utf8");
}

/**
 * readStreamBounded reads a stream (standard input) to its end, refusing more than `limit` bytes
 * as they arrive: `mtlskit inspect - < /dev/zero` stops at the bound instead of exhausting memory.
 */
export async function readStreamBounded(
  stream: AsyncIterable<Buffer | string>,
  name = "standard input",
  limit = MAX_FILE_BYTES,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of stream) {
    const b = typeof c === "string" ? Buffer.from(c) : c;
    total += b.length;
    if (total > limit) {
      (stream as { destroy?: () => void }).destroy?.();
      throw new ReadFileError(name, "EFBIG", `holds more than the ${megabytes(limit)} mtlskit reads`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks, total);
}
