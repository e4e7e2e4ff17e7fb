/**
 * The PKI directory's own folders judged: ca/, services/ and services/NAME/ must be real
 * directories (not symbolic links), owned by the directory's owner (or root), and not writable
 * by group or others. Issue 11: a symlinked services/api made apply write a new private key into
 * /tmp/evil, and a world-writable ca/ let another local user swap in their own CA, under which
 * the next apply re-issued everything. Apply refuses or repairs (guardDirs); check reports the
 * same judgement as findings (judgeDir).
 */
import { chmodSync, lstatSync, readlinkSync, statSync } from "node:fs";
import { FailedError } from "../errors.ts";
import { abs, LAYOUT, type FileSpec } from "./layout.ts";

/** DirProblem is what is wrong with one of the PKI directory's folders, as data. */
export interface DirProblem {
  /** kind: symlink (never followed), owner (another user owns it), writable (group/other may write), mode (readable by others where 0700 is the layout). */
  kind: "symlink" | "owner" | "writable" | "mode";
  path: string;
  /** mode found (permission bits). */
  mode: number;
  message: string;
  fix: string;
}

const octal = (m: number) => `0${m.toString(8)}`;

/**
 * judgeDir judges the folder `spec` of the PKI directory `dir`: undefined when it is missing or
 * right. `owners` are the uids that may own it (the PKI directory's owner and root; apply adds
 * its own). Only the first problem is returned: each hides the next (a link has no mode of its own).
 */
export function judgeDir(dir: string, spec: FileSpec, owners: readonly number[]): DirProblem | undefined {
  const p = abs(dir, spec);
  let st;
  try {
    st = lstatSync(p);
  } catch {
    return undefined; // missing (created by apply) or unreadable (reported where its files are read)
  }
  const mode = st.mode & 0o777;
  if (st.isSymbolicLink()) {
    let target = "";
    try {
      target = ` (to ${readlinkSync(p)})`;
    } catch {
      /* the target is not needed to refuse it */
    }
    return {
      kind: "symlink",
      path: p,
      mode,
      message: `${p} is a symbolic link${target}: mtlskit never writes keys through a link, which may lead anywhere`,
      fix: `remove the link (rm ${p}) and run apply, which creates the directory with mode ${octal(spec.mode)}; if the link was yours, move the real directory to ${p}`,
    };
  }
  if (!st.isDirectory()) return undefined; // a file where a directory belongs: reported by the reads and ensureDir
  if (process.platform !== "win32" && !owners.includes(st.uid)) {
    return {
      kind: "owner",
      path: p,
      mode,
      message: `${p} is owned by uid ${st.uid}, not by the PKI directory's owner (uid ${owners.join(" or uid ")}): that user can replace what is in it`,
      fix: `check what is in ${p}, then run chown -R ${owners[0]} ${p}`,
    };
  }
  if (mode & 0o022) {
    const who = mode & 0o002 ? "every user" : "its group";
    const ca = spec.rel === LAYOUT.caDir.rel;
    return {
      kind: "writable",
      path: p,
      mode,
      message: `${p} has mode ${octal(mode)}: ${who} may write in it${ca ? ", and so could have replaced the CA with their own" : ""}`,
      fix: ca
        ? `check that ${abs(dir, LAYOUT.caCert)} is your CA (mtlskit inspect ${abs(dir, LAYOUT.caCert)}), then run chmod ${octal(spec.mode)} ${p}`
        : `run chmod ${octal(spec.mode)} ${p}`,
    };
  }
  if (spec.mode === 0o700 && mode & 0o077) {
    return {
      kind: "mode",
      path: p,
      mode,
      message: `${p} has mode ${octal(mode)}: readable by ${mode & 0o007 ? "every user" : "its group"}, where mtlskit keeps private directories ${octal(spec.mode)}`,
      fix: `run chmod ${octal(spec.mode)} ${p} (apply does it)`,
    };
  }
  return undefined;
}

/** ownersOf: the uids that may own the PKI directory's folders: its owner and root (plus `extra`). */
export function ownersOf(dir: string, extra: readonly number[] = []): number[] {
  let uid: number | undefined;
  try {
    uid = statSync(dir).uid;
  } catch {
    uid = undefined;
  }
  return [...new Set([...(uid === undefined ? [] : [uid]), 0, ...extra])];
}

/**
 * guardDirs is apply's rule for the folders it writes into, before it writes: a symbolic link,
 * another owner, or a group/other-writable ca/ or services/ is refused (exit 3, naming the path
 * and the fix); a service folder with any other mode, or a ca/ that is only readable by others,
 * is set back to 0700 and `note` says so. (A writable service folder is repaired rather than
 * refused: apply verifies every certificate and key in it against the CA and the manifest
 * before keeping it, and replaces anything else.)
 */
export function guardDirs(dir: string, services: readonly string[], note: (text: string) => void): void {
  const owners = ownersOf(dir, process.geteuid ? [process.geteuid()] : []);
  const specs: FileSpec[] = [LAYOUT.caDir, LAYOUT.servicesDir, ...services.map((s) => LAYOUT.serviceDir(s))];
  for (const spec of specs) {
    const problem = judgeDir(dir, spec, owners);
    if (!problem) continue;
    const repairable =
      problem.kind === "mode" || (problem.kind === "writable" && spec.rel.startsWith(`${LAYOUT.servicesDir.rel}/`));
    if (!repairable) throw new FailedError(`pki: ${problem.message}; nothing was written\n    fix: ${problem.fix}`);
    try {
      chmodSync(problem.path, spec.mode);
    } catch (e) {
      throw new FailedError(
        `pki: ${problem.message}, and it could not be set to ${octal(spec.mode)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n    fix: ${problem.fix}`,
        { cause: e },
      );
    }
    note(`${problem.path} had mode ${octal(problem.mode)}; set to ${octal(spec.mode)} (the layout's mode for it)`);
  }
}
