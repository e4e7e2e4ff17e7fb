/**
 * signRequest: `mtlskit sign`'s writer. A request made on a service's host (csr: true) is judged
 * by ca/policy.ts against the manifest, then signed with the CA through pki/issue's encodeTbs and
 * signTbs, the path apply's jobs take, and written under the PKI directory's lock as
 * services/NAME/cert.pem (leaf and chain) and ca.pem, so plan, check, status and metrics see it.
 * No key is ever written: the key stays on the service's host.
 */
import type { KeyObject } from "node:crypto";
import { csrPolicy } from "../ca/policy.ts";
import { FailedError, InvalidInputError, UsageError, type Problem } from "../errors.ts";
import { formatDuration, problemAt, type LoadedManifest, type Service } from "../manifest/index.ts";
import type { CsrFields } from "../pki/csr.ts";
import { encodeTbs, newSerial, signTbs } from "../pki/issue.ts";
import { encodePem } from "../pki/pem.ts";
import { guardDirs } from "../state/dirs.ts";
import { acquireLock, ensureDir, syncDir, writeFileAtomic } from "../state/fs.ts";
import { abs, LAYOUT } from "../state/layout.ts";
import { readState, withCaKey } from "../state/read.ts";
import { issuingCa, trustBundle } from "./plan.ts";
import { loadCaSource } from "./read.ts";

/** SignOptions are the choices `mtlskit sign` passes through. */
export interface SignOptions {
  /** now is the issuance time. Default: the current time. */
  now?: Date;
  /** lockWaitMs: how long to wait for an apply to finish. Default: 5000. */
  lockWaitMs?: number;
  /** serial makes the certificate's serial. Default: newSerial (16 random octets). */
  serial?: () => Buffer;
  /** caKey: the CA's key kept offline (`sign --ca-key FILE`, read by loadCaKeyFile), checked against the CA, never copied. */
  caKey?: { key: KeyObject; file: string };
}

/** SignResult is what was signed and where it was written. */
export interface SignResult {
  /** chainPem: the leaf, then the CA chain (what cert.pem holds). */
  chainPem: string;
  /** der of the leaf. */
  der: Buffer;
  certFile: string;
  bundleFile: string;
  notAfter: Date;
  notes: string[];
}

/**
 * judgeRequest applies the policy and words its refusals as problems of the CSR file (exit 2):
 * each names the request's field and the fix. Pure; throws InvalidInputError.
 */
export function judgeRequest(service: Service, csr: CsrFields, csrFile: string, now: Date) {
  const r = csrPolicy(service, csr, now);
  if (r.ok) return r;
  const problems: Problem[] = r.refusals.map((x) => ({
    file: csrFile,
    path: x.field,
    message: x.message,
    fix: x.fix,
  }));
  throw new InvalidInputError(problems);
}

/**
 * signRequest signs `csr` (read from `csrFile`) for `service` into the PKI directory `dir`.
 * Refusals (the policy, a certificate that would outlive the CA) are InvalidInputError (exit 2)
 * raised before anything is written; a PKI directory without a usable CA is FailedError (exit 3).
 */
export function signRequest(
  loaded: LoadedManifest,
  dir: string,
  service: Service,
  csr: CsrFields,
  csrFile: string,
  opts: SignOptions = {},
): SignResult {
  const now = new Date(Math.floor((opts.now ?? new Date()).getTime() / 1000) * 1000);
  const judged = judgeRequest(service, csr, csrFile, now);
  const imported = loadCaSource(loaded);
  const before = readState(dir, loaded.manifest, imported);
  if (!before.exists || before.ca.status === "missing")
    throw new FailedError(
      `mtlskit sign: ${dir} holds no CA to sign with; nothing was written\n    fix: run \`mtlskit apply -f ${loaded.manifest.file} --pki ${dir}\` first (it creates the CA)`,
    );
  const lock = acquireLock(abs(dir, LAYOUT.lock), { waitMs: opts.lockWaitMs ?? 5000 });
  try {
    guardDirs(dir, [service.name], () => {});
    const read = readState(dir, loaded.manifest, imported);
    const caCertFile = loaded.manifest.ca.import?.cert ?? abs(dir, LAYOUT.caCert);
    const state = opts.caKey ? { ...read, ca: withCaKey(read.ca, opts.caKey.key, opts.caKey.file, caCertFile) } : read;
    if (state.ca.status === "broken")
      throw new FailedError(`pki: ${state.ca.reason}; nothing was written\n    fix: ${state.ca.fix}`);
    if (state.ca.status === "missing")
      throw new FailedError(`mtlskit sign: ${dir} holds no CA to sign with; nothing was written`);
    // During a CA rotation the service's issuer and bundle follow the phase, as apply's would.
    const ca = issuingCa(state.ca.ca, state.rotation, service.name);
    const bundle = trustBundle(state.ca.root ?? state.ca.ca, state.rotation);
    if (!ca.privateKey)
      throw new UsageError(
        `mtlskit sign: the CA key is not in ${dir} (kept offline), and it must sign ${service.name}'s certificate; nothing was written. Run \`mtlskit sign ${csrFile} --service ${service.name} --ca-key FILE\` with the key \`mtlskit ca offline\` moved out (read in place, never copied), or declare ca.intermediate, whose key stays online`,
      );
    const privateKey = ca.privateKey;
    if (judged.spec.notAfter > ca.cert.notAfter)
      throw new InvalidInputError([
        problemAt(
          loaded,
          ["services", service.name, "validity"],
          `a ${formatDuration(service.validityMs)} certificate issued now would outlive the CA, which expires ${ca.cert.notAfter.toISOString().slice(0, 10)}`,
          "shorten the validity, or roll the CA over first",
        ),
      ]);
    const issuer = { subject: ca.cert.subject, keyId: ca.keyId, keyType: ca.keyType, privateKey };
    const der = signTbs(encodeTbs(judged.spec, issuer, judged.spki, (opts.serial ?? newSerial)()), issuer);
    const chainPem = encodePem("CERTIFICATE", der) + ca.chainPem;
    const slot = service.slots[0]!;
    ensureDir(abs(dir, LAYOUT.servicesDir), LAYOUT.servicesDir.mode);
    const serviceDir = abs(dir, LAYOUT.serviceDir(service.name));
    ensureDir(serviceDir, LAYOUT.serviceDir(service.name).mode);
    const certFile = abs(dir, LAYOUT.cert(slot));
    const bundleFile = abs(dir, LAYOUT.bundle(service.name));
    writeFileAtomic(certFile, chainPem, LAYOUT.cert(slot).mode);
    writeFileAtomic(bundleFile, bundle, LAYOUT.bundle(service.name).mode);
    syncDir(serviceDir);
    syncDir(abs(dir, LAYOUT.servicesDir));
    return { chainPem, der, certFile, bundleFile, notAfter: judged.spec.notAfter, notes: judged.notes };
  } finally {
    lock.release();
  }
}
