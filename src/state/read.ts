/**
 * Reading a PKI directory (and an imported CA) into State: what exists, parsed, with every
 * defect recorded as data for the planner. Reading never writes and never throws for a damaged
 * file: a damaged leaf is a reason to re-issue it.
 */
import { X509Certificate, createHash, createPublicKey, type KeyObject } from "node:crypto";
import { readdirSync, statSync, type Stats } from "node:fs";
import * as path from "node:path";
import { FailedError, UsageError } from "../errors.ts";
import { type ReadFileError, readTextBounded } from "../read-file.ts";
import type { CaImport, Manifest } from "../manifest/index.ts";
import { readCertFields, type CertFields } from "../pki/cert.ts";
import { keyIdOf } from "../pki/issue.ts";
import { keyTypeOf, parsePrivateKey, spkiOfPkcs8, spkiOfPrivateKey, type KeyTypeName } from "../pki/keys.ts";
import { encodePem, keyEncryption, parseCertificatesPem, parsePem } from "../pki/pem.ts";
import { decodeCertificate } from "../pki/x509.ts";
import { abs, LAYOUT, type CaFiles } from "./layout.ts";
import { readLayoutVersion } from "./layout-version.ts";
import { readRotation, type ImportFiles, type RotationRecord } from "./rotation.ts";
import { readCrl, readCrlNumber, readRevocations, type CrlState, type Revocation } from "./revocations.ts";

/** CaMaterial is a usable CA: its certificate, key and the trust bundle peers install. */
export interface CaMaterial {
  cert: CertFields;
  keyType: KeyTypeName;
  /** keyId is the CA's subject key identifier (the leaves' authority key id). */
  keyId: Buffer;
  publicKey: KeyObject;
  /** privateKey: undefined while the key is kept offline (`mtlskit ca offline`; ca.import without key): apply asks for it with --ca-key FILE when something must be signed. */
  privateKey: KeyObject | undefined;
  /** chainPem: certificates appended to every leaf in cert.pem (mtlskit's or an imported intermediate and those above it, not the root). */
  chainPem: string;
  /** bundlePem: the trust anchors written to ca/ca.pem and each service's ca.pem. */
  bundlePem: string;
}

/**
 * IntermediateState is mtlskit's intermediate CA (ca.intermediate) as read: usable, or why apply
 * must sign a new one with the root (missing, damaged, its key unusable). Whether it is still
 * signed by the root and outside its renewal window is the planner's judgement.
 */
export type IntermediateState = { status: "ok"; ca: CaMaterial } | { status: "missing"; reason: string };

/**
 * CaState is what the PKI directory says about its CA. `ca` is the issuing CA: the intermediate
 * when the manifest declares one and it is usable, else the root. `root` is the trust anchor's CA
 * (the signer of the intermediate; the same as `ca` without one); `intermediate` is set when the
 * manifest declares one.
 */
export type CaState =
  | { status: "missing" }
  | { status: "ok"; ca: CaMaterial; root?: CaMaterial; intermediate?: IntermediateState }
  | { status: "broken"; reason: string; fix: string };

/** LeafState is what is on disk for one certificate slot. */
export interface LeafState {
  /** cert is the parsed leaf, or why it could not be used; undefined when the file is missing. */
  cert: CertFields | { error: string } | undefined;
  /** certFile is the whole cert file (leaf and chain), to compare with what would be written. */
  certFile: string | undefined;
  /** keySpki is the public half of key.pem, or why it could not be used; undefined when missing. */
  keySpki: Buffer | { error: string } | undefined;
}

/** State is a PKI directory as read. */
export interface State {
  dir: string;
  /** exists is false when the directory does not exist yet. */
  exists: boolean;
  ca: CaState;
  /** leaves by slot id (`core`, `core/client`). */
  leaves: Map<string, LeafState>;
  /** bundles by service name: the current ca.pem bytes, or undefined when missing. */
  bundles: Map<string, string | undefined>;
  /**
   * rotation: a CA rotation under way (DIR/ca/rotation.json in phase prepared or active): `ca` is
   * then the CA being replaced and `next` the one prepared in DIR/ca/next. In phase retiring `ca`
   * is already the next CA (DIR/ca/next while it exists, then DIR/ca) and `next` is undefined.
   */
  rotation?: { record: RotationRecord; next: CaMaterial | undefined } | undefined;
  /** layoutVersion the certificates were issued under (DIR/layout-version; 1 when absent); undefined when unreadable or the directory is new. */
  layoutVersion?: number | undefined;
  /** revocations: ca/revoked.json (none when absent). */
  revocations?: Revocation[];
  /** crl: ca/crl.pem as read; crlNumber: the last cRLNumber used (ca/crl-number; 0n when absent, undefined when unreadable). */
  crl?: CrlState;
  crlNumber?: bigint | undefined;
}

/** readText reads a file of the PKI directory; missing is undefined, anything else a FailedError naming the path. */
function readText(file: string, onStat?: (stats: Stats) => void): string | undefined {
  try {
    return readTextBounded(file, onStat ? { onStat } : {});
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    if (code === "ENOTDIR") {
      throw new FailedError(
        `pki: cannot read ${file}: ${path.dirname(file)} is not a directory\n    fix: move ${path.dirname(file)} away (apply creates the directory), then run apply again`,
        { cause: e },
      );
    }
    if (code === "EISDIR")
      throw new FailedError(
        `pki: ${file} is a directory, where a file belongs\n    fix: move ${file} away, then run apply again`,
        { cause: e },
      );
    if (code === "ENOTREG" || code === "EFBIG")
      throw new FailedError(
        `pki: ${file} ${(e as ReadFileError).reason}, where mtlskit keeps a PEM file\n    fix: move ${file} away, then run apply again`,
        { cause: e },
      );
    throw new FailedError(
      `pki: cannot read ${file}: ${code ?? (e as Error).message}${code === "EACCES" || code === "EPERM" ? "\n    fix: run apply as the user that owns the PKI directory" : ""}`,
      { cause: e },
    );
  }
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

function caMaterial(
  certDer: Buffer,
  privateKey: KeyObject | undefined,
  chainPem: string,
  bundlePem: string,
): CaMaterial | { reason: string; fix: string } {
  const cert = readCertFields(certDer);
  const info = decodeCertificate(certDer);
  if (!info.isCA)
    return {
      reason: "is not a CA certificate (basicConstraints cA is not set)",
      fix: "point at the CA's certificate, not a leaf",
    };
  if (info.keyUsage && !info.keyUsage.includes("keyCertSign"))
    return {
      reason: "has no keyCertSign key usage, so it may not sign certificates",
      fix: "use a CA certificate that allows certificate signing",
    };
  const publicKey = createPublicKey({ key: cert.spki, format: "der", type: "spki" });
  const keyType = keyTypeOf(publicKey);
  if (!keyType)
    return {
      reason: `has a key type mtlskit cannot sign with (${publicKey.asymmetricKeyType})`,
      fix: "use an ECDSA P-256/P-384, RSA 2048/3072/4096 or Ed25519 CA",
    };
  if (privateKey && !spkiOfPrivateKey(privateKey).equals(cert.spki))
    return { reason: "does not match its private key", fix: "restore the CA key that belongs to this certificate" };
  const keyId = info.subjectKeyId ? Buffer.from(info.subjectKeyId, "hex") : keyIdOf(cert.spki);
  return { cert, keyType, keyId, publicKey, privateKey, chainPem, bundlePem };
}

/**
 * lostCaCert judges a CA key found without its certificate. Apply writes the key first, so a key
 * alone in a directory where nothing was issued yet is an interrupted creation: missing, and the
 * CA is created afresh. Once services were issued, the certificate was deleted, and replacing the
 * CA silently would break every peer: refuse, and name the exact copy to restore when a service's
 * bundle holds the certificate of this key.
 */
function lostCaCert(dir: string, keyText: string): CaState {
  const servicesDir = abs(dir, LAYOUT.servicesDir);
  let names: string[] = [];
  try {
    names = readdirSync(servicesDir).sort();
  } catch {
    // no services/ yet: nothing was issued
  }
  const issued = names.filter((n) => readText(path.join(servicesDir, n, "cert.pem")) !== undefined);
  if (issued.length === 0) return { status: "missing" };
  const where = abs(dir, LAYOUT.caCert);
  const copy = caCertCopy(dir, names, keyText);
  const n = issued.length;
  return {
    status: "broken",
    reason: `${where} is missing, but its key ${abs(dir, LAYOUT.caKey)} is there and ${n} service${n === 1 ? " was" : "s were"} issued (${issued.slice(0, 3).join(", ")}${n > 3 ? ", ..." : ""}): the CA certificate was deleted`,
    fix: copy
      ? `restore it from a service's bundle, which holds the same certificate (its key matches): cp ${copy} ${where}`
      : `restore ${where} from backup; or, to start a new CA (every service is re-issued and peers must trust the new ca.pem), move ${abs(dir, LAYOUT.caDir)} away`,
  };
}

/** caCertCopy finds a service bundle holding the certificate of the CA key `keyText` (its public key matches). */
function caCertCopy(dir: string, names: readonly string[], keyText: string): string | undefined {
  try {
    const spki = spkiOfPrivateKey(parsePrivateKey(keyText));
    return names
      .map((n) => abs(dir, LAYOUT.bundle(n)))
      .find((b) => {
        try {
          return parseCertificatesPem(readText(b) ?? "").some((der) => readCertFields(der).spki.equals(spki));
        } catch {
          return false;
        }
      });
  } catch {
    return undefined; // an unreadable key: no copy can be matched to it
  }
}

/**
 * damagedCaCert judges a ca/ca.pem that cannot be used while its key is fine: the certificate is
 * what to restore (issue 11 found the fix "restore ca-key.pem from backup" for a damaged ca.pem),
 * and a service's bundle holds a copy.
 */
function damagedCaCert(dir: string, files: CaFiles, keyText: string, what: string): CaState {
  const where = abs(dir, files.cert);
  let names: string[] = [];
  try {
    names = readdirSync(abs(dir, LAYOUT.servicesDir)).sort();
  } catch {
    // no services/ yet
  }
  const copy = caCertCopy(dir, names, keyText);
  return {
    status: "broken",
    reason: `${where} ${what}: the CA certificate is damaged (its key ${abs(dir, files.key)} is fine)`,
    fix: copy
      ? `restore it from a service's bundle, which holds the same certificate (its key matches): cp ${copy} ${where}`
      : `restore ${where} from backup (any service's ca.pem issued by this CA holds a copy); or, to start a new CA (every service is re-issued and peers must trust the new ca.pem), move ${abs(dir, files.dir)} away`,
  };
}

/**
/**
 * readCa reads one generated CA generation (default DIR/ca; a rotation's next CA is
 * LAYOUT.nextCa). In DIR/ca a key alone is an interrupted creation or a deleted certificate
 * (lostCaCert), and a certificate without its key is a CA whose key is kept offline (privateKey
 * undefined); in any other generation a key alone is an interrupted creation (missing, made
 * again) and a certificate alone is broken. With `intermediate` (DIR/ca only), the intermediate
 * is read too and returned as the issuing CA (see CaState).
 */
export function readCa(dir: string, files: CaFiles = LAYOUT.currentCa, opts: { intermediate?: boolean } = {}): CaState {
  const root = readRoot(dir, files);
  return opts.intermediate && root.status === "ok" ? withIntermediate(root.ca, readIntermediate(dir, root.ca)) : root;
}

function readRoot(dir: string, files: CaFiles): CaState {
  const current = files.dir.rel === LAYOUT.currentCa.dir.rel;
  const certText = readText(abs(dir, files.cert));
  if (certText === undefined) {
    const keyText = readText(abs(dir, files.key));
    return keyText === undefined || !current ? { status: "missing" } : lostCaCert(dir, keyText);
  }
  const where = abs(dir, files.cert);
  const keyFile = abs(dir, files.key);
  const keyText = readText(keyFile);
  const restore = `restore ${keyFile} from backup; or, to start a new CA (every service is re-issued and peers must trust the new ca.pem), move ${abs(dir, files.dir)} away`;
  if (keyText === undefined && !current)
    return { status: "broken", reason: `${where} exists but its key ${keyFile} is missing`, fix: restore };
  try {
    let privateKey: KeyObject | undefined;
    // No key: kept offline (`mtlskit ca offline`); apply asks for it when something must be signed.
    if (keyText !== undefined) {
      const mode = statSync(keyFile).mode & 0o777;
      if (mode & 0o077)
        return {
          status: "broken",
          reason: `${keyFile} has mode 0${mode.toString(8)}, readable by others`,
          fix: `run chmod 600 ${keyFile}, and consider the CA key exposed`,
        };
      try {
        privateKey = parsePrivateKey(keyText);
      } catch (e) {
        return { status: "broken", reason: `${keyFile} is not a readable private key (${errorText(e)})`, fix: restore };
      }
    }
    const damaged = (what: string): CaState =>
      keyText === undefined
        ? {
            status: "broken",
            reason: `${where} ${what}: the CA certificate is damaged`,
            fix: `restore ${where} from backup (any service's ca.pem issued by this CA holds a copy)`,
          }
        : damagedCaCert(dir, files, keyText, what);
    let certs: Buffer[];
    try {
      certs = parseCertificatesPem(certText);
      if (certs.length === 1) readCertFields(certs[0]!);
    } catch (e) {
      return damaged(`cannot be parsed (${errorText(e)})`);
    }
    if (certs.length !== 1) return damaged(`must hold exactly one certificate, found ${certs.length}`);
    const m = caMaterial(certs[0]!, privateKey, "", certText);
    if ("reason" in m) return { status: "broken", reason: `${where} ${m.reason}`, fix: restore };
    return { status: "ok", ca: m };
  } catch (e) {
    return {
      status: "broken",
      reason: `cannot read the CA in ${abs(dir, files.dir)}: ${errorText(e)}`,
      fix: restore,
    };
  }
}

/**
 * readIntermediate reads mtlskit's intermediate CA in DIR/ca, signed by `root`: usable (a CA whose
 * key matches; chainPem is the intermediate and what the root's chain holds, bundlePem the root's)
 * or why not, in words. A key readable by others is unusable: apply signs a new one.
 */
export function readIntermediate(dir: string, root: CaMaterial): IntermediateState {
  const certFile = abs(dir, LAYOUT.caIntermediate);
  const keyFile = abs(dir, LAYOUT.caIntermediateKey);
  const certText = readText(certFile);
  const keyText = readText(keyFile);
  if (certText === undefined && keyText === undefined) return { status: "missing", reason: "missing" };
  if (certText === undefined) return { status: "missing", reason: `${certFile} is missing` };
  if (keyText === undefined) return { status: "missing", reason: `its key ${keyFile} is missing` };
  try {
    const mode = statSync(keyFile).mode & 0o777;
    if (mode & 0o077)
      return {
        status: "missing",
        reason: `its key ${keyFile} has mode 0${mode.toString(8)}, readable by others: the key may be exposed`,
      };
    const certs = parseCertificatesPem(certText);
    if (certs.length !== 1)
      return { status: "missing", reason: `${certFile} must hold exactly one certificate, found ${certs.length}` };
    const m = caMaterial(certs[0]!, parsePrivateKey(keyText), certText + root.chainPem, root.bundlePem);
    return "reason" in m ? { status: "missing", reason: `${certFile} ${m.reason}` } : { status: "ok", ca: m };
  } catch (e) {
    return { status: "missing", reason: `${certFile} or its key cannot be read (${errorText(e)})` };
  }
}

/** withIntermediate is the CaState of a root and its intermediate: the intermediate issues when usable. */
export function withIntermediate(root: CaMaterial, intermediate: IntermediateState): CaState {
  return { status: "ok", ca: intermediate.status === "ok" ? intermediate.ca : root, root, intermediate };
}

/**
 * withCaKey gives the root of `state` the key `apply --ca-key FILE` read (kept in memory only,
 * never written). A key that is not the root's is refused (exit 2), naming both files.
 */
export function withCaKey(state: CaState, key: KeyObject, keyFile: string, certFile: string): CaState {
  if (state.status !== "ok") return state;
  const root = state.root ?? state.ca;
  if (!spkiOfPrivateKey(key).equals(root.cert.spki))
    throw new UsageError(
      `--ca-key ${keyFile} is not the private key of the CA certificate ${certFile} (${decodeCertificate(root.cert.der).subject}); give the key that belongs to it`,
    );
  const rootWithKey = { ...root, privateKey: key };
  if (state.intermediate === undefined) return { status: "ok", ca: rootWithKey };
  return withIntermediate(rootWithKey, state.intermediate);
}

/**
 * loadCaKeyFile reads the key `apply --ca-key FILE` names: unencrypted PEM, not readable by others
 * (it is the root's). Problems are usage errors (exit 2) with the fix.
 */
export function loadCaKeyFile(file: string): KeyObject {
  let text: string;
  try {
    text = readTextBounded(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(
      `--ca-key ${file}: ${code === "ENOENT" ? "no such file" : code === "ENOTREG" || code === "EISDIR" || code === "EFBIG" ? (e as ReadFileError).reason : `cannot be read (${code ?? errorText(e)})`}; name the CA's private key file`,
    );
  }
  const sealed = parsePem(text)
    .map(keyEncryption)
    .find((x) => x !== undefined);
  if (sealed)
    throw new UsageError(
      `--ca-key ${file} is encrypted (${sealed}); decrypt it to a file only you can read (openssl pkey -in ${file} -out KEY.pem, mode 0600) and pass that`,
    );
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077)
    throw new UsageError(
      `--ca-key ${file} has mode 0${mode.toString(8)}, readable by others; run chmod 600 ${file}, and consider the CA key exposed`,
    );
  try {
    return parsePrivateKey(text);
  } catch (e) {
    throw new UsageError(`--ca-key ${file} is not a readable private key (${errorText(e)}); give the CA's key as PEM`);
  }
}

/**
 * loadImportedCa reads an organisation's CA named by ca.import. The issuing certificate must be a
 * CA matching the key; its chain must lead, signature by signature, to a self-signed root.
 * Returns a problem sentence for the manifest's ca.import field instead of throwing.
 */
export function loadImportedCa(
  imp: CaImport,
): CaMaterial | { field: "cert" | "key" | "chain"; reason: string; fix: string } {
  const read = (field: "cert" | "key" | "chain", file: string) => {
    try {
      return readTextBounded(file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const notFile = code === "ENOTREG" || code === "EISDIR" || code === "EFBIG";
      throw {
        field,
        reason: notFile ? `${file} ${(e as ReadFileError).reason}` : `cannot read ${file}: ${code ?? errorText(e)}`,
        fix: notFile ? `name a PEM file (relative to the manifest)` : "correct the path (relative to the manifest)",
      };
    }
  };
  try {
    const certs = (() => {
      try {
        return parseCertificatesPem(read("cert", imp.cert));
      } catch (e) {
        if ((e as { field?: string }).field) throw e;
        throw { field: "cert", reason: `${imp.cert}: ${errorText(e)}`, fix: "give a PEM file with the CA certificate" };
      }
    })();
    if (certs.length !== 1)
      return {
        field: "cert",
        reason: `${imp.cert} must hold exactly one certificate, found ${certs.length}`,
        fix: "put the issuing CA in cert and the certificates above it in chain",
      };
    let key: KeyObject | undefined;
    if (imp.key !== undefined)
      try {
        const keyText = read("key", imp.key);
        const blocks = parsePem(keyText);
        const sealed = blocks.map(keyEncryption).find((x) => x !== undefined);
        if (sealed)
          throw {
            field: "key",
            reason: `${imp.key} is encrypted (${sealed}); mtlskit signs with the CA key unattended, so it must be unencrypted`,
            fix: `decrypt it, keeping mode 0600: openssl pkey -in ${imp.key} -out ${imp.key}.plain (it asks for the passphrase), then point ca.import.key at ${imp.key}.plain`,
          };
        if (!blocks.some((b) => b.label.endsWith("PRIVATE KEY"))) throw new Error("no PRIVATE KEY block");
        key = parsePrivateKey(keyText);
      } catch (e) {
        if ((e as { field?: string }).field) throw e;
        return {
          field: "key",
          reason: `${imp.key} is not a readable unencrypted private key (${errorText(e)})`,
          fix: "give the CA key as unencrypted PEM (PKCS#8 or traditional), mode 0600",
        };
      }
    const mode = imp.key === undefined ? 0 : statSync(imp.key).mode & 0o777;
    if (mode & 0o077)
      return {
        field: "key",
        reason: `${imp.key} has mode 0${mode.toString(8)}, readable by others`,
        fix: `run chmod 600 ${imp.key}`,
      };
    const chain = imp.chain === undefined ? [] : parseCertificatesPem(read("chain", imp.chain));
    const path = [certs[0]!, ...chain].map((d) => new X509Certificate(d));
    for (let i = 0; i + 1 < path.length; i++) {
      if (!path[i]!.checkIssued(path[i + 1]!) || !path[i]!.verify(path[i + 1]!.publicKey)) {
        return {
          field: "chain",
          reason: `certificate ${i + 1} of the chain (${path[i + 1]!.subject.replace(/\n/g, ", ")}) did not issue ${path[i]!.subject.replace(/\n/g, ", ")}`,
          fix: "order the chain from the issuing CA's issuer up to the root",
        };
      }
    }
    const root = path[path.length - 1]!;
    if (!root.checkIssued(root) || !root.verify(root.publicKey)) {
      return imp.chain === undefined
        ? {
            field: "cert",
            reason: `${imp.cert} is an intermediate CA, and peers need its root to trust it`,
            fix: "add ca.import.chain: a PEM file with the certificates above it, up to the root",
          }
        : {
            field: "chain",
            reason: `the chain does not end in a self-signed root`,
            fix: "append the root certificate to the chain file",
          };
    }
    const m = caMaterial(
      certs[0]!,
      key,
      path
        .slice(0, -1)
        .map((c) => encodePem("CERTIFICATE", c.raw))
        .join(""),
      encodePem("CERTIFICATE", root.raw),
    );
    return "reason" in m ? { field: "cert", reason: `${imp.cert} ${m.reason}`, fix: m.fix } : m;
  } catch (e) {
    if (typeof e === "object" && e !== null && "field" in e)
      return e as { field: "cert" | "key" | "chain"; reason: string; fix: string };
    return { field: "cert", reason: errorText(e), fix: "check the imported CA files" };
  }
}

function readLeaf(dir: string, slot: Manifest["services"][number]["slots"][number]): LeafState {
  const certFile = readText(abs(dir, LAYOUT.cert(slot)));
  let cert: LeafState["cert"];
  if (certFile !== undefined) {
    try {
      const der = parseCertificatesPem(certFile)[0];
      cert = der ? readCertFields(der) : { error: "holds no certificate" };
    } catch (e) {
      cert = { error: `cannot be parsed (${errorText(e)})` };
    }
  }
  const keyPath = abs(dir, LAYOUT.key(slot));
  let mode = 0;
  const keyText = readText(keyPath, (st) => (mode = st.mode & 0o777)); // the mode of the file read, not of another stat
  let keySpki: LeafState["keySpki"];
  if (keyText !== undefined) {
    try {
      const block = parsePem(keyText).find((b) => b.label === "PRIVATE KEY");
      keySpki =
        mode & 0o077
          ? { error: `has mode 0${mode.toString(8)}, readable by others: the key may be exposed` }
          : block
            ? spkiOfPkcs8(block.der)
            : spkiOfPrivateKey(parsePrivateKey(keyText));
    } catch (e) {
      keySpki = { error: `cannot be parsed (${errorText(e)})` };
    }
  }
  return { cert, certFile, keySpki };
}

/**
 * serviceDirsIn lists the names in DIR/services: one readdir, where a new directory's 10,000
 * services would each cost three failed opens (about 0.7 s of CPU; issue 12). Empty when
 * services/ does not exist; undefined when it cannot be listed for another reason (not a
 * directory, permission denied): then every file is read, and fails with its own message.
 * A name listed is only a hint to read: what is read decides.
 */
export function serviceDirsIn(dir: string): ReadonlySet<string> | undefined {
  try {
    // Lower-cased: service names are, and on a case-insensitive file system services/Api is api's.
    return new Set(readdirSync(abs(dir, LAYOUT.servicesDir)).map((n) => n.toLowerCase()));
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOENT" ? new Set() : undefined;
  }
}

const NOTHING: LeafState = Object.freeze({ cert: undefined, certFile: undefined, keySpki: undefined });

/**
 * readState reads the PKI directory for `manifest`. The CA comes from ca.import when the manifest
 * has one. Services with `files` (external) are not read: apply does not manage them; nor are
 * the files of a service whose folder services/ does not list (missing, as a read would find).
 */
export function readState(dir: string, manifest: Manifest, importedCa?: CaMaterial): State {
  let exists = true;
  try {
    statSync(dir);
  } catch {
    exists = false;
  }
  const leaves = new Map<string, LeafState>();
  const bundles = new Map<string, string | undefined>();
  if (exists) {
    const present = serviceDirsIn(dir);
    for (const s of manifest.services) {
      if (s.files) continue;
      if (present !== undefined && !present.has(s.name)) {
        for (const slot of s.slots) leaves.set(slot.id, NOTHING);
        bundles.set(s.name, undefined);
        continue;
      }
      for (const slot of s.slots) leaves.set(slot.id, readLeaf(dir, slot));
      bundles.set(s.name, readText(abs(dir, LAYOUT.bundle(s.name))));
    }
  }
  const revocation = {
    revocations: exists ? readRevocations(dir) : [],
    crl: exists ? readCrl(dir) : undefined,
    crlNumber: exists ? readCrlNumber(dir) : 0n,
  };
  // A CA with an intermediate does not rotate yet (`mtlskit ca rotate` refuses it): its state is
  // DIR/ca alone, the intermediate read beside the root.
  if (manifest.ca.intermediate !== undefined) {
    const ca: CaState = importedCa
      ? withIntermediate(
          importedCa,
          exists ? readIntermediate(dir, importedCa) : { status: "missing", reason: "missing" },
        )
      : exists
        ? readCa(dir, LAYOUT.currentCa, { intermediate: true })
        : { status: "missing" };
    return {
      dir,
      exists,
      ca,
      leaves,
      bundles,
      layoutVersion: exists ? readLayoutVersion(dir) : undefined,
      ...revocation,
    };
  }
  if (importedCa && exists) {
    const { ca, rotation } = readImportedRotation(dir, importedCa);
    return { dir, exists, ca, rotation, leaves, bundles, layoutVersion: readLayoutVersion(dir), ...revocation };
  }
  if (importedCa || !exists)
    return {
      dir,
      exists,
      ca: importedCa ? { status: "ok", ca: importedCa } : { status: "missing" },
      leaves,
      bundles,
      layoutVersion: exists ? readLayoutVersion(dir) : undefined,
      ...revocation,
    };
  const { ca, rotation } = readRotatingCa(dir);
  return { dir, exists, ca, rotation, leaves, bundles, layoutVersion: readLayoutVersion(dir), ...revocation };
}

/**
 * readImportedRotation reads the CA of a manifest with ca.import through a rotation of imported
 * CAs: while prepared or active, the old and the next CA come from the files the record names
 * (the keys stay where they are), whichever of the two the manifest names meanwhile; otherwise
 * the manifest's CA.
 */
export function readImportedRotation(
  dir: string,
  importedCa: CaMaterial,
): { ca: CaState; rotation: State["rotation"] } {
  const read = readRotation(dir);
  if (read.status === "broken")
    return { ca: { status: "broken", reason: read.reason, fix: read.fix }, rotation: undefined };
  if (read.status === "none") return { ca: { status: "ok", ca: importedCa }, rotation: undefined };
  const record = read.record;
  if (!record.imported || (record.phase !== "prepared" && record.phase !== "active"))
    return { ca: { status: "ok", ca: importedCa }, rotation: { record, next: undefined } };
  const load = (f: ImportFiles, which: string): CaMaterial | CaState => {
    const m = loadImportedCa({ cert: f.cert, key: f.key, chain: f.chain });
    if ("reason" in m)
      return {
        status: "broken",
        reason: `the ${which} CA of the rotation in ${abs(dir, LAYOUT.rotation)} cannot be read: ${m.reason}`,
        fix: `put its files back (${f.cert}, ${f.key}); ${m.fix}`,
      };
    return m;
  };
  const old = load(record.imported.old, "old");
  const next = load(record.imported.next, "next");
  if ("status" in old) return { ca: old, rotation: undefined };
  if ("status" in next) return { ca: next, rotation: undefined };
  if (fingerprintOf(old) !== record.oldCa || fingerprintOf(next) !== record.newCa)
    return {
      ca: {
        status: "broken",
        reason: `the CA files ${abs(dir, LAYOUT.rotation)} names are not the CAs the rotation started with (replaced during a rotation?)`,
        fix: `put back the CAs the rotation started with (SHA-256 ${record.oldCa.slice(0, 16)}... and ${record.newCa.slice(0, 16)}...)`,
      },
      rotation: undefined,
    };
  return { ca: { status: "ok", ca: old }, rotation: { record, next } };
}

/** fingerprintOf is a CA's SHA-256 (lowercase hex), as DIR/ca/rotation.json names it. */
export const fingerprintOf = (ca: CaMaterial): string => createHash("sha256").update(ca.cert.der).digest("hex");

/**
 * readRotatingCa reads the CA apply issues from, through a rotation: no record (or phase
 * retired) is DIR/ca alone; prepared and active are DIR/ca plus DIR/ca/next, each checked against
 * the record's fingerprints; retiring is DIR/ca/next while it exists (retire copies it over DIR/ca,
 * key then certificate, and removes it), else DIR/ca.
 */
export function readRotatingCa(dir: string): { ca: CaState; rotation: State["rotation"] } {
  const read = readRotation(dir);
  if (read.status === "broken")
    return { ca: { status: "broken", reason: read.reason, fix: read.fix }, rotation: undefined };
  if (read.status === "none") return { ca: readCa(dir), rotation: undefined };
  const record = read.record;
  const nextFiles = LAYOUT.nextCa;
  if (record.phase === "retired") return { ca: readCa(dir), rotation: { record, next: undefined } };
  if (record.phase === "retiring") {
    const next = readCa(dir, nextFiles);
    return { ca: next.status === "missing" ? readCa(dir) : next, rotation: { record, next: undefined } };
  }
  const ca = readCa(dir);
  const next = readCa(dir, nextFiles);
  const where = abs(dir, nextFiles.dir);
  if (next.status !== "ok")
    return {
      ca: {
        status: "broken",
        reason: `${abs(dir, LAYOUT.rotation)} says the rotation is ${record.phase}, but the next CA in ${where} ${next.status === "missing" ? "is missing" : `cannot be used: ${next.reason}`}`,
        fix: `restore ${where} from backup; the services' bundles (ca.pem) hold its certificate, not its key`,
      },
      rotation: undefined,
    };
  if (ca.status === "missing")
    return {
      ca: {
        status: "broken",
        reason: `${abs(dir, LAYOUT.rotation)} says the rotation is ${record.phase}, but the CA it replaces (${abs(dir, LAYOUT.caCert)}) is missing`,
        fix: `restore ${abs(dir, LAYOUT.caDir)} from backup`,
      },
      rotation: undefined,
    };
  if (ca.status === "ok" && (fingerprintOf(ca.ca) !== record.oldCa || fingerprintOf(next.ca) !== record.newCa))
    return {
      ca: {
        status: "broken",
        reason: `the CAs in ${abs(dir, LAYOUT.caDir)} and ${where} are not the ones ${abs(dir, LAYOUT.rotation)} names (replaced by hand during a rotation?)`,
        fix: `put back the CAs the rotation started with (SHA-256 ${record.oldCa.slice(0, 16)}... and ${record.newCa.slice(0, 16)}...)`,
      },
      rotation: undefined,
    };
  return { ca, rotation: { record, next: next.ca } };
}
