/**
 * Issuing and writing a chunk of services' certificates: the unit of work apply hands to worker
 * threads (or runs in-process for small plans). A chunk's files are written as one durable batch
 * (state/fs.ts writeFilesAtomic: temp files written, fsynced, renamed, directories fsynced), keys
 * renamed before their certificates, so a crash between the two leaves a pair that planning sees
 * as "key does not match" and re-issues.
 */
import { createPrivateKey } from "node:crypto";
import * as path from "node:path";
import type { MessagePort } from "node:worker_threads";
import { encodeTbs, keyIdOf, newSerial, signTbs, type CertSpec, type Issuer } from "../pki/issue.ts";
import { generateKey, type KeyTypeName } from "../pki/keys.ts";
import { encodePem, encodePemBytes } from "../pki/pem.ts";
import { ensureDir, isInMemory, readUmask, writeFilesAtomic, type FileWrite } from "../state/fs.ts";
import { abs, LAYOUT, MODES, type FileSpec } from "../state/layout.ts";

/** ServiceJob is everything needed to bring one service's directory up to date. */
export interface ServiceJob {
  service: string;
  /** certs to issue, each with its file names. */
  certs: { spec: CertSpec; kind: "main" | "client" }[];
  /** bundle: ca.pem is written (with the chunk's bundle, runJobs' `bundle`: one for every service of an apply's group). */
  bundle: boolean;
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

/**
 * ToWorker is what apply sends a worker thread (worker.ts): ports to the other workers (to the
 * first worker, the key maker) or to the maker (to the others); what keys to make ahead (to the
 * maker, any number of times while apply parses and plans); the start, then chunks, then the end.
 */
export type ToWorker =
  | { peers: MessagePort[] }
  | { keysAhead: KeysAhead }
  | { start: { dir: string; issuer: IssuerData; bundlePem: string; umask: number | null } }
  | { jobs: ServiceJob[] }
  | { end: true };

/** KeysAhead tells the maker to hold up to `max` keys of `keyType` made ahead (0: make no more, drop the rest). */
export interface KeysAhead {
  keyType: KeyTypeName;
  max: number;
}

/** KeyShare is what the maker sends each other worker through its port at the start: its part of the keys made ahead. */
export interface KeyShare {
  keyType: KeyTypeName;
  keys: ReadyKey[];
}

/**
 * ReadyKey is a key made before its certificate was planned (worker.ts makes them while apply
 * parses the manifest and plans, when a core would otherwise idle), in the form runJobs writes.
 * Each is taken once, by one certificate, and exists only in the memory of the pool's threads
 * (the maker's and, once shared, one other's): those not taken end with the threads, so no key
 * ever serves two certificates or outlives its apply.
 */
export interface ReadyKey {
  /**
   * pub is the SubjectPublicKeyInfo DER followed by the 20-octet subject key identifier (keyIdOf
   * of it), as a latin1 string: held by the thousand, a string costs a fraction of two buffers.
   */
  pub: string;
  /** pem is the PKCS#8 private key as key.pem holds it. */
  pem: string;
}

/** makeReadyKey generates a new key of `type` as a ReadyKey; the DER private key is zeroed once encoded. */
export function makeReadyKey(type: KeyTypeName): ReadyKey {
  const key = generateKey(type);
  const pem = encodePem("PRIVATE KEY", key.pkcs8);
  key.pkcs8.fill(0);
  return { pub: key.spki.toString("latin1") + keyIdOf(key.spki).toString("latin1"), pem };
}

/** SEP_IS_SLASH: the platform's paths are joined with "/", as the layout's relative paths are written. */
const SEP_IS_SLASH = path.sep === "/";

/** KEY_ID_LENGTH: a subject key identifier's octets (SHA-1). */
const KEY_ID_LENGTH = 20;

/** RunOptions tune runJobs. */
export interface RunOptions {
  /** serial makes each certificate's serial number. Default: newSerial. */
  serial?: () => Buffer;
  /** takeKey hands over a key made ahead of `type`, removing it from its store; undefined: a new one is made. Default: none. */
  takeKey?: (type: KeyTypeName) => ReadyKey | undefined;
  /**
   * umask: the process's umask (readUmask), read once per apply by the caller: reading
   * /proc/self/status costs ~0.5 ms in a process with threads, twice per chunk was ~0.1 s of
   * CPU per worker at 10,000 services (issue 12). Default: read here, once per call.
   */
  umask?: number | null;
}
/** FromWorker is a worker's answer after each chunk is written: the certificates done, how many of them took a key made ahead (and a request for more). */
export type FromWorker = { done: number; ahead: number };

/** Signer is a signing Issuer with the chain its leaves' certificate files end with, as bytes. */
export type Signer = Issuer & { chain: Buffer };

/** toIssuer rebuilds a Signer from IssuerData. */
export function toIssuer(d: IssuerData): Signer {
  return {
    subject: Buffer.from(d.subject),
    keyId: Buffer.from(d.keyId),
    keyType: d.keyType,
    privateKey: createPrivateKey({ key: Buffer.from(d.pkcs8), format: "der", type: "pkcs8" }),
    chain: Buffer.from(d.chainPem),
  };
}

/**
 * runJobs issues every certificate of `jobs` and durably writes their files under `dir` as one
 * batch (each service directory fsynced once), `bundle` as the ca.pem of each job that asks for
 * it; returns the number of certificates issued.
 */
export function runJobs(
  dir: string,
  jobs: readonly ServiceJob[],
  issuer: Signer,
  bundle: string | Uint8Array,
  opts: RunOptions = {},
): number {
  const serial = opts.serial ?? newSerial;
  const files: FileWrite[] = [];
  let issued = 0;
  // A service folder made here lies on the file system of services/ (a fresh folder is no mount
  // point): one statfs for the chunk instead of one per folder; an existing folder is asked itself.
  const servicesDir = abs(dir, LAYOUT.servicesDir);
  const memory = new Map<string, boolean>([[servicesDir, isInMemory(servicesDir)]]);
  const umask = opts.umask === undefined ? readUmask() : opts.umask; // a folder's fchmod is skipped when the umask removed none of its bits
  for (const job of jobs) {
    const folder = LAYOUT.serviceDir(job.service);
    const serviceDir = abs(dir, folder);
    // A file of the folder is the folder's path and its name: path.join for each of 30,000 files cost
    // ~35 ms of CPU per worker thread at 10,000 services (issue 12).
    const under = (f: FileSpec) =>
      SEP_IS_SLASH && f.rel.startsWith(`${folder.rel}/`) ? serviceDir + f.rel.slice(folder.rel.length) : abs(dir, f);
    if (ensureDir(serviceDir, MODES.privateDir, { umask })) memory.set(serviceDir, memory.get(servicesDir)!); // apply fsyncs services/ once at the end
    for (const c of job.certs) {
      const key = opts.takeKey?.(c.spec.keyType) ?? makeReadyKey(c.spec.keyType);
      const slot = { service: job.service, kind: c.kind };
      const keyFile = LAYOUT.key(slot);
      const certFile = LAYOUT.cert(slot);
      files.push(
        { file: under(keyFile), data: key.pem, mode: keyFile.mode },
        { file: under(certFile), data: issueLeaf(c.spec, key, issuer, serial), mode: certFile.mode },
      );
      issued++;
    }
    if (job.bundle) {
      const bundleFile = LAYOUT.bundle(job.service);
      files.push({ file: under(bundleFile), data: bundle, mode: bundleFile.mode });
    }
  }
  writeFilesAtomic(files, { inMemory: (d) => memory.get(d) ?? isInMemory(d), umask });
  return issued;
}

/**
 * issueLeaf signs `spec` for `key` and returns the certificate file: its PEM, then the issuer's
 * chain. The spec is used as it came (a job that crossed to a worker thread holds its dates as
 * Dates and its IP addresses as Uint8Arrays, which encodeTbs takes).
 */
function issueLeaf(spec: CertSpec, key: ReadyKey, issuer: Signer, serial: () => Buffer): Buffer {
  const pub = Buffer.from(key.pub, "latin1");
  const spki = pub.subarray(0, pub.length - KEY_ID_LENGTH);
  const der = signTbs(encodeTbs(spec, issuer, spki, serial(), pub.subarray(spki.length)), issuer);
  return encodePemBytes("CERTIFICATE", der, issuer.chain);
}
