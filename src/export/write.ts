/**
 * The export layer's one writer. Each file is replaced atomically (state/fs.ts writeFileAtomic:
 * created with its final mode, fsynced, renamed), a file whose bytes, mode and owner already
 * match is left alone (so re-exporting unchanged material touches nothing), directories it
 * creates get 0700 when they hold a secret and 0755 otherwise, and owner and group are applied
 * only when running as root. It never removes anything: files it did not write, and files an
 * earlier export wrote for a service since removed, stay where they are.
 */
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  constants,
  fchmodSync,
  closeSync,
  lstatSync,
  mkdirSync,
  openSync,
  type Stats,
} from "node:fs";
import * as path from "node:path";
import { FailedError } from "../errors.ts";
import { readFileBounded, readTextBounded } from "../read-file.ts";
import { syncDir, writeFileAtomic } from "../state/fs.ts";
import { isSecret, type ExportFile } from "./file.ts";

/** Ownership is who should own the files (names or decimal ids), as written. */
export interface Ownership {
  owner?: string | undefined;
  group?: string | undefined;
}

/** Ids are resolved ownership; -1 leaves that part unchanged (chown's convention). */
export interface Ids {
  uid: number;
  gid: number;
  /** unknown: names that are no user or group on this host (left unapplied; see resolveIds). */
  unknown: string[];
}

/** WriteResult says what the writer did, file paths relative to the output directory. */
export interface WriteResult {
  dir: string;
  written: string[];
  unchanged: string[];
  /** ownerSkipped says why owner or group were not (all) applied: not root, or names unknown on this host. */
  ownerSkipped: string | undefined;
}

/** isRoot says whether chown may give files away. */
export const isRoot = (): boolean => process.getuid?.() === 0;

function lookup(file: string, name: string): number | undefined {
  let text: string;
  try {
    text = readTextBounded(file);
  } catch {
    return undefined;
  }
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f[0] === name && f[2] !== undefined && /^[0-9]+$/.test(f[2])) return Number(f[2]);
  }
  return undefined;
}

function viaCommand(args: string[]): number | undefined {
  try {
    const out = execFileSync(args[0]!, args.slice(1), {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 5000,
    });
    const m = /^(?:[^:\n]*:[^:\n]*:)?([0-9]+)/.exec(out.trim());
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * resolveIds turns names into ids: /etc/passwd and /etc/group first, then `id -u NAME` and
 * `getent group NAME` (users from LDAP or sssd). A name unknown here is left unapplied and
 * reported, not an error: exports are often built on one machine for hosts that have the user
 * (ServiceRadar's `serviceradar`): there, `rsync --chown=serviceradar:serviceradar` or a `chown -R`
 * on arrival applies them.
 */
export function resolveIds(o: Ownership): Ids {
  const unknown: string[] = [];
  const one = (value: string | undefined, kind: "owner" | "group"): number => {
    if (value === undefined) return -1;
    if (/^[0-9]+$/.test(value)) return Number(value);
    const id =
      kind === "owner"
        ? (lookup("/etc/passwd", value) ?? viaCommand(["id", "-u", value]))
        : (lookup("/etc/group", value) ?? viaCommand(["getent", "group", value]));
    if (id === undefined) unknown.push(`${kind === "owner" ? "user" : "group"} ${value}`);
    return id ?? -1;
  };
  return { uid: one(o.owner, "owner"), gid: one(o.group, "group"), unknown };
}

function statOrUndefined(p: string): Stats | undefined {
  try {
    return lstatSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

const ownedRight = (st: Stats, ids: Ids | undefined) =>
  !ids || ((ids.uid === -1 || st.uid === ids.uid) && (ids.gid === -1 || st.gid === ids.gid));

/** makeDir creates one directory with exactly `mode` (and owner), or checks that what is there is a directory. */
function makeDir(dir: string, mode: number, ids: Ids | undefined): void {
  const st = statOrUndefined(dir);
  if (st) {
    if (!st.isDirectory())
      throw new FailedError(`export: ${dir} exists and is not a directory; move it away or choose another --out`);
    return; // an existing directory is the user's: its mode and owner stay as they are
  }
  try {
    mkdirSync(dir, { mode });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FailedError(
      `export: cannot create ${dir}: ${code === "EACCES" || code === "EPERM" ? "permission denied; choose a writable --out or run as a user who may write there" : (code ?? (e as Error).message)}`,
      { cause: e },
    );
  }
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fchmodSync(fd, mode); // the umask may have narrowed it
  } finally {
    closeSync(fd);
  }
  if (ids) chownSync(dir, ids.uid, ids.gid);
}

/**
 * writeExport writes `files` under `dir`. `ids` (from resolveIds) are applied when running as
 * root; otherwise files belong to the user running mtlskit and `ownerSkipped` says so.
 */
export function writeExport(dir: string, files: readonly ExportFile[], own: Ownership = {}, ids?: Ids): WriteResult {
  const root = isRoot();
  const wantOwner = own.owner !== undefined || own.group !== undefined;
  const resolved = root && wantOwner ? (ids ?? resolveIds(own)) : undefined;
  const apply = resolved && (resolved.uid !== -1 || resolved.gid !== -1) ? resolved : undefined;
  const out = path.resolve(dir);
  // Directories: 0700 when they hold a private key directly, else 0755.
  const dirs = new Map<string, number>();
  for (const f of files) {
    let d = path.dirname(path.join(out, f.path));
    const secret = isSecret(f.mode);
    dirs.set(d, secret ? 0o700 : (dirs.get(d) ?? 0o755));
    while (d !== out && d.startsWith(out + path.sep)) {
      d = path.dirname(d);
      if (!dirs.has(d)) dirs.set(d, 0o755);
    }
  }
  if (!dirs.has(out)) dirs.set(out, 0o755);
  if (!statOrUndefined(out)) mkdirSync(path.dirname(out), { recursive: true });
  for (const d of [...dirs.keys()].sort((a, b) => a.length - b.length)) makeDir(d, dirs.get(d)!, apply);

  const ownerSkipped = !wantOwner
    ? undefined
    : !root
      ? "mtlskit is not running as root; the files belong to you"
      : resolved!.unknown.length
        ? `no ${resolved!.unknown.join(" and no ")} on this host`
        : undefined;
  const result: WriteResult = { dir: out, written: [], unchanged: [], ownerSkipped };
  const touched = new Set<string>();
  for (const f of files) {
    const file = path.join(out, f.path);
    const st = statOrUndefined(file);
    if (st?.isDirectory())
      throw new FailedError(`export: ${file} is a directory, where export writes a file; move it away`);
    let same = false;
    if (st?.isFile() && st.size === f.bytes.length) {
      try {
        same = readFileBounded(file, { noFollow: true }).equals(f.bytes);
      } catch {
        same = false;
      }
    }
    if (same && (st!.mode & 0o7777) === f.mode && ownedRight(st!, apply)) {
      result.unchanged.push(f.path);
      continue;
    }
    if (!same) {
      writeFileAtomic(file, f.bytes, f.mode);
      touched.add(path.dirname(file));
    } else chmodSync(file, f.mode);
    if (apply) chownSync(file, apply.uid, apply.gid);
    result.written.push(f.path);
  }
  for (const d of touched) syncDir(d);
  return result;
}
