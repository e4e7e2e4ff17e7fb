/**
 * The CA as the online server holds it: the issuing CA of each service (through a rotation, as
 * apply's plan and `mtlskit sign` choose it: plan/plan.ts issuingCa), the trust bundle (both CAs
 * while a rotation overlaps: trustBundle), and the recorded revocations. Read from the PKI
 * directory at start and again when its CA files change, never per request.
 */
import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { FailedError } from "../errors.ts";
import type { LoadedManifest, Service } from "../manifest/index.ts";
import { encodePem, parseCertificatesPem } from "../pki/pem.ts";
import { issuingCa, trustBundle } from "../plan/plan.ts";
import { loadCaSource } from "../plan/read.ts";
import { abs, LAYOUT } from "../state/layout.ts";
import { readState, type CaMaterial, type State } from "../state/read.ts";
import { readRevocations } from "../state/revocations.ts";

/** Authority is one reading of the PKI directory's CA. */
export interface Authority {
  /** state: the directory as read (the CRL's writer needs it). */
  state: State;
  /** current: the issuing CA outside a rotation (the intermediate when declared). */
  current: CaMaterial;
  /** root: the trust anchor's CA (signs the CRL). */
  root: CaMaterial;
  /** anchorPem: the root certificate above `current` (PEM), presented last in the server's own chain. */
  anchorPem: string;
  /** anchorSha256: its SHA-256, lowercase hex: what agents pass as --fingerprint. */
  anchorSha256: string;
  /** bundlePem: what every service's ca.pem holds now. */
  bundlePem: string;
  /** bundleSha256: SHA-256 of each certificate of the bundle, lowercase hex. */
  bundleSha256: string[];
  /** phase: the rotation's phase, or `none`. */
  phase: string;
  /** issuerFor: the CA that signs `service`'s certificates now. */
  issuerFor(service: string): CaMaterial;
  /** stamp: the CA files' sizes and times when read; a different caFilesStamp means read again. */
  stamp: string;
}

/** CA_FILES: the files whose change means the CA (or the bundle) changed. */
const CA_FILES = [
  LAYOUT.caCert.rel,
  LAYOUT.caKey.rel,
  LAYOUT.caIntermediate.rel,
  LAYOUT.caIntermediateKey.rel,
  LAYOUT.rotation.rel,
  LAYOUT.nextCa.cert.rel,
  LAYOUT.nextCa.key.rel,
];

/** caFilesStamp summarizes the CA files' identity (inode, size, mtime); cheap enough to ask every few seconds. */
export function caFilesStamp(dir: string): string {
  return CA_FILES.map((rel) => {
    try {
      const s = statSync(abs(dir, rel));
      return `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch {
      return "-";
    }
  }).join("/");
}

const sha256 = (der: Buffer) => createHash("sha256").update(der).digest("hex");

/**
 * loadAuthority reads the CA of `dir` for the manifest's csr services. No CA, a damaged one or an
 * issuing key kept offline is FailedError (exit 3) with the fix: an online CA needs its key online.
 */
export function loadAuthority(loaded: LoadedManifest, dir: string, command = "mtlskit serve"): Authority {
  const stamp = caFilesStamp(dir);
  const state = readState(dir, loaded.manifest, loadCaSource(loaded));
  const m = loaded.manifest;
  if (!state.exists || state.ca.status === "missing")
    throw new FailedError(
      `${command}: ${dir} holds no CA to issue with\n    fix: run \`mtlskit apply -f ${m.file} --pki ${dir}\` first (it creates the CA), or name the right --pki`,
    );
  if (state.ca.status === "broken") throw new FailedError(`pki: ${state.ca.reason}\n    fix: ${state.ca.fix}`);
  const current = state.ca.ca;
  const root = state.ca.root ?? current;
  const rotation = state.rotation;
  const online: Service[] = m.services.filter((s) => s.csr === true && s.files === undefined);
  const offline = [current, ...online.map((s) => issuingCa(current, rotation, s.name))].find((ca) => !ca.privateKey);
  if (offline)
    throw new FailedError(
      `${command}: the issuing CA's key is not in ${dir} (kept offline by \`mtlskit ca offline\`), and an online CA signs every request with it\n    fix: declare ca.intermediate in ${m.file} and run \`mtlskit apply\` (the intermediate's key stays online while the root's stays offline), or copy the key back to ${abs(dir, LAYOUT.caKey)} (mode 0600)`,
    );
  const bundlePem = trustBundle(root, rotation);
  // The anchor is the bundle's certificate of the root generation: the first of root.bundlePem.
  const anchor = parseCertificatesPem(root.bundlePem)[0] ?? root.cert.der;
  return {
    state,
    current,
    root,
    anchorPem: encodePem("CERTIFICATE", anchor),
    anchorSha256: sha256(anchor),
    bundlePem,
    bundleSha256: parseCertificatesPem(bundlePem).map(sha256),
    phase: rotation?.record.phase ?? "none",
    issuerFor: (service) => issuingCa(current, rotation, service),
    stamp,
  };
}

/**
 * RevokedSet answers "is this serial in ca/revoked.json": each answer first looks at the file (one
 * stat) and re-reads it only when it changed, so a serial `mtlskit revoke` recorded on the CA's
 * host is refused by the very next renewal (a keyCompromise revocation cannot wait for a tick).
 */
export class RevokedSet {
  private stamp = "";
  private serials = new Set<string>();
  /** broken: why the last refresh could not read the file; has() then throws it (a renewal fails closed, as it did reading per request). */
  private broken: unknown;
  private readonly file: string;
  constructor(private readonly dir: string) {
    this.file = abs(dir, LAYOUT.revoked);
    this.refresh();
  }
  has(serial: string): boolean {
    this.refresh();
    if (this.broken !== undefined) throw this.broken;
    return this.serials.has(serial);
  }
  refresh(): void {
    try {
      this.read();
      this.broken = undefined;
    } catch (e) {
      this.stamp = "";
      this.broken = e;
    }
  }
  private read(): void {
    let stamp = "-";
    try {
      // No file (no revocation yet: the usual case) is an answer, not an exception: building an
      // ENOENT error with its stack on every renewal cost more than the stat itself.
      const s = statSync(this.file, { throwIfNoEntry: false });
      if (s !== undefined) stamp = `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch {}
    if (stamp !== this.stamp) {
      this.serials = new Set(readRevocations(this.dir).map((r) => r.serial));
      this.stamp = stamp;
    }
  }
}
