/**
 * Issuing and writing a chunk of services' certificates: the unit of work apply hands to worker
 * threads (or runs in-process for small plans). A chunk's files are written as one durable batch
 * (state/fs.ts writeFilesAtomic: temp files written, fsynced, renamed, directories fsynced), keys
 * renamed before their certificates, so a crash between the two leaves a pair that planning sees
 * as "key does not match" and re-issues.
 */
import { createPrivateKey } from "node:crypto";
import { encodeTbs, newSerial, signTbs, type CertSpec, type Issuer } from "../pki/issue.ts";
import { generateKey, type KeyTypeName } from "../pki/keys.ts";
import { encodePem } from "../pki/pem.ts";
import { ensureDir, writeFilesAtomic, type FileWrite } from "../state/fs.ts";
import { abs, LAYOUT, MODES } from "../state/layout.ts";

/** ServiceJob is everything needed to bring one service's directory up to date. */
export interface ServiceJob {
  service: string;
  /** certs to issue, each with its file names. */
  certs: { spec: CertSpec; kind: "main" | "client" }[];
  /** bundlePem is written to ca.pem when set. */
  bundlePem: string | undefined;
}

/** IssuerData is an Issuer in a form that crosses a worker boundary (the key as PKCS#8 DER). */
export interface IssuerData {
  subject: Uint8Array;
  keyId: Uint8Array;
  keyType: KeyTypeName;
  pkcs8: Uint8Array;
  /** chainPem is appended to every leaf in its certificate file. */
  chainPem: string;
}

/** ToWorker is what apply sends a worker thread (worker.ts): the start, then chunks, then the end. */
export type ToWorker = { start: { dir: string; issuer: IssuerData } } | { jobs: ServiceJob[] } | { end: true };
/** FromWorker is a worker's answer after each chunk is written: the certificates done (and a request for more). */
export type FromWorker = { done: number };

/** toIssuer rebuilds a signing Issuer from IssuerData. */
export function toIssuer(d: IssuerData): Issuer & { chainPem: string } {
  return {
    subject: Buffer.from(d.subject),
    keyId: Buffer.from(d.keyId),
    keyType: d.keyType,
    privateKey: createPrivateKey({ key: Buffer.from(d.pkcs8), format: "der", type: "pkcs8" }),
    chainPem: d.chainPem,
  };
}

/**
 * runJobs issues every certificate of `jobs` and durably writes their files under `dir` as one
 * batch (each service directory fsynced once); returns the number of certificates issued.
 */
export function runJobs(
  dir: string,
  jobs: readonly ServiceJob[],
  issuer: Issuer & { chainPem: string },
  serial: () => Buffer = newSerial,
): number {
  const files: FileWrite[] = [];
  let issued = 0;
  for (const job of jobs) {
    ensureDir(abs(dir, LAYOUT.serviceDir(job.service)), MODES.privateDir); // apply fsyncs services/ once at the end
    for (const c of job.certs) {
      const spec: CertSpec = {
        ...c.spec,
        notBefore: new Date(c.spec.notBefore),
        notAfter: new Date(c.spec.notAfter),
        ips: c.spec.ips.map((b) => Buffer.from(b)),
      };
      const key = generateKey(spec.keyType);
      const der = signTbs(encodeTbs(spec, issuer, key.spki, serial()), issuer);
      const slot = { service: job.service, kind: c.kind };
      files.push(
        { file: abs(dir, LAYOUT.key(slot)), data: encodePem("PRIVATE KEY", key.pkcs8), mode: LAYOUT.key(slot).mode },
        {
          file: abs(dir, LAYOUT.cert(slot)),
          data: encodePem("CERTIFICATE", der) + issuer.chainPem,
          mode: LAYOUT.cert(slot).mode,
        },
      );
      issued++;
    }
    if (job.bundlePem !== undefined)
      files.push({
        file: abs(dir, LAYOUT.bundle(job.service)),
        data: job.bundlePem,
        mode: LAYOUT.bundle(job.service).mode,
      });
  }
  writeFilesAtomic(files);
  return issued;
}
