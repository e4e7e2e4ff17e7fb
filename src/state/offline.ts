/**
 * Taking the CA key offline (`mtlskit ca offline --to FILE`): the key leaves the PKI directory for
 * a file the operator keeps elsewhere. The order makes every crash safe: the new file is written
 * whole and fsynced under a temporary name, linked to FILE (which never replaces anything), read
 * back and matched against the CA certificate; only then is DIR/ca/ca-key.pem removed and DIR/ca
 * fsynced. A crash leaves the key in the PKI directory, at FILE, or both, never nowhere.
 */
import {
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fsyncSync,
  linkSync,
  lstatSync,
  openSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import * as path from "node:path";
import { FailedError, UsageError } from "../errors.ts";
import { readTextBounded } from "../read-file.ts";
import { readCertFields } from "../pki/cert.ts";
import { parsePrivateKey, spkiOfPrivateKey } from "../pki/keys.ts";
import { parseCertificatesPem } from "../pki/pem.ts";
import { decodeCertificate } from "../pki/x509.ts";
import { acquireLock, syncDir } from "./fs.ts";
import { abs, LAYOUT, MODES, TEMP_MARK } from "./layout.ts";

/** OfflineResult says where the key went. */
export interface OfflineResult {
  /** from: the key file removed from the PKI directory. */
  from: string;
  /** to: the absolute path of the file now holding the key. */
  to: string;
  /** subject of the CA certificate the key belongs to. */
  subject: string;
  /** mode of FILE as read back: 0600, unless its file system ignores modes (FAT). */
  mode: number;
  /** intermediate: DIR/ca holds an intermediate CA, which keeps signing the services with its own key. */
  intermediate: boolean;
}

/** insideDir tells whether `file` (whose parent exists) lies inside `dir`, both resolved through symbolic links. */
function insideDir(dir: string, file: string): boolean {
  const real = realpathSync(dir);
  const target = path.join(realpathSync(path.dirname(file)), path.basename(file));
  const rel = path.relative(real, target);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

/** spkiOfText is the public key of a PEM private key, or undefined when it is not one. */
function spkiOfText(text: string): Buffer | undefined {
  try {
    return spkiOfPrivateKey(parsePrivateKey(text));
  } catch {
    return undefined;
  }
}

/**
 * writeNewFile writes `data` to `file`, which must not exist, with `mode`: a temporary file in the
 * same directory is written and fsynced, then hard-linked to `file` (link never replaces an
 * existing file) and unlinked; the directory is fsynced. File systems without hard links (FAT)
 * get a rename after a last existence check.
 */
function writeNewFile(file: string, data: string, mode: number): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `${TEMP_MARK}${process.pid}-${path.basename(file)}`);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    fchmodSync(fd, mode);
    writeSync(fd, Buffer.from(data));
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  try {
    try {
      linkSync(tmp, file);
      rmSync(tmp);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP") throw e;
      if (existsSync(file)) throw Object.assign(new Error(`${file} exists`), { code: "EEXIST" });
      renameSync(tmp, file);
    }
  } finally {
    rmSync(tmp, { force: true });
  }
  syncDir(dir);
}

/**
 * moveCaKeyOffline moves DIR/ca/ca-key.pem to `to` (see the file's comment for the order). It
 * refuses (exit 2, nothing written) a `to` that exists or lies inside DIR, and fails (exit 3) when
 * DIR has no CA key or the key is not the CA certificate's. It holds apply's lock meanwhile.
 */
export function moveCaKeyOffline(dir: string, to: string, opts: { lockWaitMs?: number } = {}): OfflineResult {
  const target = path.resolve(to);
  let exists = true;
  try {
    lstatSync(target);
  } catch {
    exists = false;
  }
  if (exists)
    throw new UsageError(
      `mtlskit ca offline: --to ${to} exists; the key is never written over a file: name a new file (e.g. on removable media)`,
    );
  if (!existsSync(path.dirname(target)))
    throw new UsageError(
      `mtlskit ca offline: --to ${to}: directory ${path.dirname(target)} does not exist; create it first`,
    );
  if (!existsSync(dir)) throw new FailedError(`mtlskit ca offline: the PKI directory ${dir} does not exist`);
  if (insideDir(dir, target))
    throw new UsageError(
      `mtlskit ca offline: --to ${to} is inside the PKI directory ${dir}; the point is to take the key out of it: name a file elsewhere (removable media, a vault)`,
    );
  const keyFile = abs(dir, LAYOUT.caKey);
  const certFile = abs(dir, LAYOUT.caCert);
  const lock = acquireLock(abs(dir, LAYOUT.lock), { waitMs: opts.lockWaitMs ?? 5000 });
  try {
    let keyText: string;
    try {
      keyText = readTextBounded(keyFile);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT")
        throw new FailedError(
          `mtlskit ca offline: ${keyFile} does not exist: the CA key is already offline (or the CA is imported, and ca.import names its key); nothing to move`,
        );
      throw new FailedError(`mtlskit ca offline: cannot read ${keyFile}: ${(e as Error).message}`, { cause: e });
    }
    let certDer: Buffer;
    try {
      const certs = parseCertificatesPem(readTextBounded(certFile));
      if (certs.length !== 1) throw new Error(`it holds ${certs.length} certificates`);
      certDer = certs[0]!;
    } catch (e) {
      throw new FailedError(
        `mtlskit ca offline: ${certFile} is not a readable CA certificate (${(e as Error).message}); the key stays in ${keyFile}. Fix the CA first (mtlskit check)`,
        { cause: e },
      );
    }
    const spki = readCertFields(certDer).spki;
    const subject = decodeCertificate(certDer).subject;
    if (!spkiOfText(keyText)?.equals(spki))
      throw new FailedError(
        `mtlskit ca offline: ${keyFile} is not the key of ${certFile} (${subject}); nothing was moved. Fix the CA first (mtlskit check)`,
      );
    try {
      writeNewFile(target, keyText, MODES.key);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EEXIST")
        throw new UsageError(`mtlskit ca offline: --to ${to} appeared meanwhile; nothing was moved. Name a new file`);
      throw new FailedError(
        `mtlskit ca offline: cannot write ${target} (${code ?? (e as Error).message}); the key stays in ${keyFile}`,
        { cause: e },
      );
    }
    // Read back what the media holds before the only other copy goes.
    let back: string | undefined;
    try {
      back = readTextBounded(target);
    } catch {
      back = undefined;
    }
    if (back === undefined || !spkiOfText(back)?.equals(spki))
      throw new FailedError(
        `mtlskit ca offline: ${target} does not read back as the CA key; the key stays in ${keyFile}. Check the media, remove ${target}, and run the command again`,
      );
    rmSync(keyFile);
    syncDir(abs(dir, LAYOUT.caDir));
    return {
      from: keyFile,
      to: target,
      subject,
      mode: statSync(target).mode & 0o777,
      intermediate: existsSync(abs(dir, LAYOUT.caIntermediate)),
    };
  } finally {
    lock.release();
  }
}
