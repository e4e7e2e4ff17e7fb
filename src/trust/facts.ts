/**
 * The I/O edge that reads the machine for the planner: which platform, which tools, what the
 * system store and the NSS database hold now, and who owns that database (under sudo, the user
 * who ran sudo, so their browser's database is the one changed, and by them).
 */
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { homedir } from "node:os";
import * as path from "node:path";
import { FailedError } from "../errors.ts";
import { readTextBounded } from "../read-file.ts";
import { sha256Hex } from "./anchor.ts";
import { parsePem } from "../pki/pem.ts";
import { NSS_PACKAGE_HINT, nssExport, nssList, parseNssList, type NssFacts, type NssState, type RunAs } from "./nss.ts";
import { detectPlatform, parseOsRelease, PLATFORMS, type PlatformName } from "./platform.ts";
import type { SystemFacts } from "./plan.ts";

const SBIN = ["/usr/sbin", "/sbin", "/usr/local/sbin"];

/** which finds `tool` on PATH or in the sbin folders (where update-ca-certificates lives, off a user's PATH). */
export function which(tool: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? "").split(path.delimiter).filter(Boolean), ...SBIN]) {
    const p = path.join(dir, tool);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

const readOrUndefined = (file: string): string | undefined => {
  try {
    return readTextBounded(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new FailedError(`trust: ${(e as Error).message}`, { cause: e });
  }
};

/** machinePlatform detects this machine's trust store family, or undefined. */
export function machinePlatform(): PlatformName | undefined {
  return detectPlatform({
    os: process.platform,
    tools: { "update-ca-certificates": which("update-ca-certificates"), "update-ca-trust": which("update-ca-trust") },
    osRelease: parseOsRelease(readOrUndefined("/etc/os-release") ?? ""),
  });
}

/** systemFacts reads what the system store holds for `name` now. */
export function systemFacts(
  platform: PlatformName,
  name: string,
  sha256: string | undefined,
): SystemFacts & { bundleText: string | undefined } {
  const store = PLATFORMS[platform];
  if (store.kind !== "system")
    throw new FailedError(`trust: ${store.label} has no system store mtlskit reads (this is a bug)`);
  const bundleText = readOrUndefined(store.bundle);
  let inBundle = false;
  if (sha256 !== undefined && bundleText !== undefined) {
    try {
      inBundle = parsePem(bundleText).some((b) => b.label === "CERTIFICATE" && sha256Hex(b.der) === sha256);
    } catch (e) {
      throw new FailedError(
        `trust: cannot read ${store.bundle}: ${(e as Error).message}; rebuild it with ${store.install.join(" ")}`,
        { cause: e },
      );
    }
  }
  return {
    anchorFileNow: readOrUndefined(`${store.anchorDir}/${name}${store.ext}`),
    anchorDirExists: existsSync(store.anchorDir),
    tool: which(store.tool),
    inBundle,
    bundleText,
  };
}

/** parsePasswd finds a user's uid, gid and home in /etc/passwd text. */
export function parsePasswd(text: string, user: string): RunAs | undefined {
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f[0] === user && f.length >= 7) return { user, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! };
  }
  return undefined;
}

/** sudoUser is the user who ran `sudo mtlskit ...`, when this process is root under sudo. */
export function sudoUser(): RunAs | undefined {
  const user = process.env.SUDO_USER;
  if (process.getuid?.() !== 0 || !user || user === "root") return undefined;
  return parsePasswd(readOrUndefined("/etc/passwd") ?? "", user);
}

/** defaultNssDb is the NSS database of the user: `~/.pki/nssdb`, the sudo user's under sudo. */
export function defaultNssDb(): string {
  return path.join(sudoUser()?.home ?? homedir(), ".pki", "nssdb");
}

/** runCertutil runs certutil (as the database's owner when that is someone else). */
export function runCertutil(
  certutil: string,
  argv: string[],
  as: RunAs | undefined,
): { code: number | null; out: string } {
  const r = spawnSync(certutil, argv.slice(1), {
    encoding: "utf8",
    timeout: 30_000,
    ...(as
      ? { uid: as.uid, gid: as.gid, env: { ...process.env, HOME: as.home, USER: as.user, LOGNAME: as.user } }
      : {}),
  });
  if (r.error) throw new FailedError(`trust: cannot run ${certutil}: ${r.error.message}`, { cause: r.error });
  return { code: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

/**
 * nssFacts looks at the NSS database `db` (`--nssdb`, default ~/.pki/nssdb): skipped, with the
 * reason, when certutil is missing, the database does not exist (mtlskit never creates one:
 * Chrome does on first start), or `--no-nss`; otherwise what it holds under `name`.
 */
export function nssFacts(db: string, name: string, opts: { skip?: string } = {}): NssFacts {
  if (opts.skip) return { use: false, reason: opts.skip };
  const certutil = which("certutil");
  if (!certutil)
    return {
      use: false,
      reason: `certutil is not installed (${NSS_PACKAGE_HINT}); Chrome and Chromium on Linux will not trust the CA until it is added`,
    };
  if (!existsSync(path.join(db, "cert9.db"))) {
    return {
      use: false,
      reason: `no NSS database at ${db} (Chrome and Chromium create it on first start; certutil -d sql:${db} -N --empty-password creates an empty one)`,
    };
  }
  const st = statSync(db);
  const me = process.getuid?.();
  let as: RunAs | undefined;
  if (me === 0 && st.uid !== 0) {
    const owner = sudoUser();
    as =
      owner && owner.uid === st.uid
        ? owner
        : { uid: st.uid, gid: st.gid, user: `#${st.uid}`, home: path.dirname(path.dirname(db)) };
  }
  const exported = runCertutil(certutil, nssExport(db, name), as);
  let current: NssState | undefined;
  if (exported.code === 0) {
    const der = parsePem(exported.out).find((b) => b.label === "CERTIFICATE")?.der;
    const listed = runCertutil(certutil, nssList(db), as);
    current = der ? { sha256: sha256Hex(der), trust: parseNssList(listed.out).get(name) } : undefined;
  }
  return { use: true, certutil, db, as, current };
}
