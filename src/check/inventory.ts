/**
 * The I/O edge of check: every file a manifest's services use, read once into an Inventory.
 * Managed services are read from the PKI layout (state/layout.ts); external services from the
 * paths in `services.NAME.files`. Reading never throws for a missing or damaged file: each
 * becomes a FileProblem that the rules report with the path.
 */
import { existsSync, lstatSync, readdirSync, statSync } from "node:fs";
import * as path from "node:path";
import type { CertSlot, Manifest, Service } from "../manifest/index.ts";
import { type ReadFileError, readTextBounded } from "../read-file.ts";
import { parsePrivateKey, spkiOfPkcs8, spkiOfPrivateKey } from "../pki/keys.ts";
import { encodePem, keyEncryption, parsePem } from "../pki/pem.ts";
import { judgeDir, ownersOf, type DirProblem } from "../state/dirs.ts";
import { abs, LAYOUT } from "../state/layout.ts";
import type { OnlineFacts, OnlineService } from "../state/online.ts";
import { CertParseError, type Cert, type Material } from "./material.ts";

/** FileProblem is a file that could not be used: missing, unreadable or unparseable. */
export interface FileProblem {
  path: string;
  missing: boolean;
  /** error says what is wrong, as a phrase after the path: "does not exist", "holds a PRIVATE KEY block but no certificate". */
  error: string;
  /** labels: the PEM blocks of a file that holds PEM but no certificate (see CertParseError). */
  labels?: string[];
}

/** CertFile is a parsed certificate file: the leaf (or first anchor) first. */
export interface CertFile {
  path: string;
  certs: Cert[];
}

/** KeyFile is a private key file: where, its mode and owner, and the public key it belongs to. */
export interface KeyFile {
  path: string;
  mode: number;
  uid: number;
  /** spki of the matching public key; undefined when the key is encrypted and cannot be compared. */
  spki: Buffer | undefined;
  /** encryption: how the key is encrypted (pki/pem.ts keyEncryption: `AES-256-CBC`, `PKCS#8 AES-256-CBC`); undefined when it is not. */
  encryption: string | undefined;
  /** onHost: a csr service's key, made on its own host and never in the PKI directory (path says so; spki is the certificate's). */
  onHost?: true;
}

/** SlotFiles are the files of one certificate slot. */
export interface SlotFiles {
  slot: CertSlot;
  cert: CertFile | FileProblem;
  key: KeyFile | FileProblem;
  /** online: the certificate is the newest unrevoked one the online CA issued (from the ledger, not a file); serial undefined when every one is revoked. */
  online?: OnlineSlot;
}

/** OnlineSlot says where an online-issued certificate was read: its serial, its validity start, the ledger file. */
export interface OnlineSlot {
  serial: string | undefined;
  notBefore: Date | undefined;
  ledger: string;
}

/** ServiceFiles is everything read for one service. */
export interface ServiceFiles {
  service: Service;
  /** external: the files are named in the manifest (services.NAME.files), not managed by apply. */
  external: boolean;
  slots: SlotFiles[];
  /** bundle: the CA certificates this service trusts its peers with (its ca.pem). */
  bundle: CertFile | FileProblem;
  /** bundleOfCa: the bundle is not a file of this service but the CA's (an online service's agent gets it from the server): not compared with the others. */
  bundleOfCa?: true;
  /** otherKeys: private keys found in the service's folders besides its own (a copied CA key, say). */
  otherKeys: { path: string; spki: Buffer }[];
  /** ownerUid: the uid the manifest's files.owner names, or why it cannot be resolved. */
  ownerUid: number | { error: string } | undefined;
}

/** Inventory is the whole deployment as read. */
export interface Inventory {
  /** dir: the PKI directory, when one is used (managed services, or its ca/). */
  dir: string | undefined;
  /** ca: the PKI directory's ca/ca.pem, when it exists. */
  ca: CertFile | FileProblem | undefined;
  /** caKey: the generated CA's key file, when it exists. */
  caKey: KeyFile | FileProblem | undefined;
  /** intermediate: the PKI directory's ca/intermediate.pem (ca.intermediate), when it exists. */
  intermediate: CertFile | FileProblem | undefined;
  /** intermediateKey: its key file, ca/intermediate-key.pem, when it exists. */
  intermediateKey: KeyFile | FileProblem | undefined;
  services: ServiceFiles[];
  /** looseKeys: private keys lying directly in DIR/services/, outside any service's folder. */
  looseKeys: { path: string; spki: Buffer }[];
  /** dirs: what is wrong with DIR/ca, DIR/services and the managed services' folders (symlinks, owners, modes), with the service concerned. */
  dirs: (DirProblem & { service: string | undefined; folder: "ca" | "services" | "service" })[];
}

/** isProblem tells a FileProblem from what was read. */
export const isProblem = (x: object): x is FileProblem => "error" in x;

const MANAGED_NAMES = new Set(["cert.pem", "key.pem", "ca.pem", "client.pem", "client-key.pem"]);
/** Files larger than this are not PEM keys; the scan for stray keys skips them. */
const MAX_SCAN_BYTES = 1 << 20;

function readText(file: string): string | FileProblem {
  try {
    return readTextBounded(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOTREG" || code === "EFBIG")
      return { path: file, missing: false, error: `cannot be read: it ${(e as ReadFileError).reason}` };
    if (code === "ENOENT") return { path: file, missing: true, error: "does not exist" };
    if (code === "EISDIR") return { path: file, missing: false, error: "is a directory, not a file" };
    if (code === "ENOTDIR")
      return { path: file, missing: false, error: `cannot be read: ${path.dirname(file)} is not a directory` };
    if (code === "EACCES") return { path: file, missing: false, error: "cannot be read (permission denied)" };
    return { path: file, missing: false, error: `cannot be read (${code ?? (e as Error).message})` };
  }
}

/** readCertFile reads a PEM file of certificates. */
export function readCertFile(material: Material, file: string): CertFile | FileProblem {
  const text = readText(file);
  if (typeof text !== "string") return text;
  const certs = material.certsOfPem(text);
  if (certs instanceof CertParseError)
    return { path: file, missing: false, error: certs.message, ...(certs.labels ? { labels: certs.labels } : {}) };
  return { path: file, certs };
}

/** spkiOfKeyText derives the public key of a PEM private key; undefined for an encrypted one. */
export function spkiOfKeyText(text: string): Buffer | undefined {
  const blocks = parsePem(text);
  const pkcs8 = blocks.find((b) => b.label === "PRIVATE KEY");
  if (pkcs8) return spkiOfPkcs8(pkcs8.der);
  // PKCS#8 encryption, or OpenSSL's traditional encryption (RFC 1421 headers inside the block).
  if (blocks.some((b) => keyEncryption(b) !== undefined)) return undefined;
  // SEC1 (EC PRIVATE KEY) or PKCS#1 (RSA PRIVATE KEY), alone or next to certificates in one file.
  const traditional = blocks.find((b) => b.label === "EC PRIVATE KEY" || b.label === "RSA PRIVATE KEY");
  if (traditional) return spkiOfPrivateKey(parsePrivateKey(encodePem(traditional.label, traditional.der)));
  if (!blocks.some((b) => b.label.endsWith("PRIVATE KEY"))) {
    if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text))
      throw new Error("truncated: a -----BEGIN line without its -----END line");
    throw new Error(
      blocks.length === 0
        ? "holds no PEM block (expected -----BEGIN PRIVATE KEY-----)"
        : `holds ${blocks.map((b) => b.label).join(", ")}, not a private key`,
    );
  }
  return spkiOfPrivateKey(parsePrivateKey(text));
}

/** readKeyFile reads a private key file and its mode and owner. */
export function readKeyFile(file: string): KeyFile | FileProblem {
  const text = readText(file);
  if (typeof text !== "string") return text;
  try {
    const st = statSync(file);
    const spki = spkiOfKeyText(text);
    return {
      path: file,
      mode: st.mode & 0o777,
      uid: st.uid,
      spki,
      encryption: spki
        ? undefined
        : parsePem(text)
            .map(keyEncryption)
            .find((x) => x !== undefined),
    };
  } catch (e) {
    return { path: file, missing: false, error: `is not a usable private key (${(e as Error).message})` };
  }
}

/** scanKeys finds private keys in `dir` other than `known` files (a copied CA key, say). */
function scanKeys(dir: string, known: ReadonlySet<string>, depth = 0): { path: string; spki: Buffer }[] {
  let names: string[];
  try {
    // Names only: most folders hold just the files mtlskit wrote, which need no stat at all.
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: { path: string; spki: Buffer }[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    if (known.has(file)) continue;
    try {
      const st = lstatSync(file);
      // Subfolders (a backup/ someone made) are searched too, without following symlinked folders.
      if (st.isDirectory()) {
        if (depth > 0) out.push(...scanKeys(file, known, depth - 1));
        continue;
      }
      const real = st.isSymbolicLink() ? statSync(file) : st;
      if (!real.isFile() || real.size > MAX_SCAN_BYTES) continue;
      const text = readTextBounded(file, { limit: MAX_SCAN_BYTES });
      if (!text.includes("PRIVATE KEY-----")) continue;
      const spki = spkiOfKeyText(text);
      if (spki) out.push({ path: file, spki });
    } catch {
      // Unreadable or not a key: the scan looks for keys, it does not judge other files.
    }
  }
  return out;
}

/** resolveOwner maps a user name or decimal uid to a uid, reading /etc/passwd for names. */
function resolveOwner(owner: string, passwd: () => string | undefined): number | { error: string } {
  if (/^[0-9]+$/.test(owner)) return Number(owner);
  const text = passwd();
  const line = text?.split("\n").find((l) => l.split(":")[0] === owner);
  const uid = line?.split(":")[2];
  return uid !== undefined && /^[0-9]+$/.test(uid)
    ? Number(uid)
    : { error: `user ${JSON.stringify(owner)} does not exist on this host` };
}

/**
 * pair keeps a slot's files. A key that matches its certificate keeps the certificate's own
 * public key bytes, none of its own: nothing read from the key file outlives the match.
 */
function pair(slot: CertSlot, cert: CertFile | FileProblem, key: KeyFile | FileProblem): SlotFiles {
  const leaf = isProblem(cert) ? undefined : cert.certs[0];
  if (leaf && !isProblem(key) && key.spki?.equals(leaf.fields.spki)) key.spki = leaf.fields.spki;
  return { slot, cert, key };
}

/**
 * PAIR_SETTLE_MS is how long one inventory read may wait, in all, for pairs an apply is
 * rewriting (re-read every PAIR_PAUSE_MS). The budget is shared by every pair: after a crash, a
 * stale lock and hundreds of torn pairs must not make check wait 2 s for each.
 */
export const PAIR_SETTLE_MS = 2000;
const PAIR_PAUSE_MS = 20;
const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** ReadHooks are test seams: onRead runs after each file of a pair is read (to inject an apply's writes between reads). */
export interface ReadHooks {
  onRead?: (file: string) => void;
}

/** Settle is one inventory read's deadline for re-reading pairs (see PAIR_SETTLE_MS). */
interface Settle {
  until: number;
}

/**
 * managedSlot reads one managed certificate and its key. Apply replaces the key first, then the
 * certificate (each atomically), so a check that reads between the two renames sees the old
 * certificate with the new key: a false key-mismatch (issue 11: 1 run in 6 during --reissue-all
 * on 300 services). A pair that does not match is read again until it matches, or until it is
 * the same twice while no apply holds the lock (a real mismatch), or until the read's shared
 * deadline (`settle`) has passed.
 */
function managedSlot(material: Material, dir: string, slot: CertSlot, hooks: ReadHooks, settle: Settle): SlotFiles {
  const certPath = abs(dir, LAYOUT.cert(slot));
  const keyPath = abs(dir, LAYOUT.key(slot));
  let last = "";
  for (;;) {
    const cert = readCertFile(material, certPath);
    hooks.onRead?.(certPath);
    const key = readKeyFile(keyPath);
    hooks.onRead?.(keyPath);
    if (
      isProblem(cert) ||
      isProblem(key) ||
      key.spki === undefined ||
      cert.certs.length === 0 ||
      cert.certs[0]!.fields.spki.equals(key.spki) ||
      Date.now() >= settle.until
    )
      return pair(slot, cert, key);
    const seen = `${cert.certs[0]!.sha256}/${key.spki.toString("hex")}`;
    if (seen === last && !existsSync(abs(dir, LAYOUT.lock))) return pair(slot, cert, key);
    if (seen === last) pause(PAIR_PAUSE_MS);
    last = seen;
  }
}

/**
 * hostSlot reads a csr service's certificate: its key is on the service's host by design, so the
 * key stands in as the certificate's own public key (nothing to compare, nothing missing).
 */
function hostSlot(material: Material, dir: string, slot: CertSlot): SlotFiles {
  const cert = readCertFile(material, abs(dir, LAYOUT.cert(slot)));
  const spki = isProblem(cert) ? undefined : cert.certs[0]?.fields.spki;
  const key: KeyFile = {
    path: `${slot.service}'s key (on its host: csr: true)`,
    mode: 0o600,
    uid: -1,
    spki,
    encryption: undefined,
    onHost: true,
  };
  return { slot, cert, key };
}

/**
 * onlineSlot reads a csr service the online CA issues to (the ledger has its rows): its agent holds
 * the key and the files on its own host, so the certificate judged is its newest unrevoked one in
 * the ledger, followed by the intermediate (ca.intermediate) as the server sends it.
 */
function onlineSlot(
  material: Material,
  dir: string,
  manifest: Manifest,
  slot: CertSlot,
  ledger: string,
  online: OnlineService,
): SlotFiles {
  const newest = online.newest;
  const where = { ledger, serial: newest?.serial, notBefore: newest?.notBefore };
  const label = newest
    ? `${slot.service}'s online certificate ${newest.serial} (${ledger})`
    : `${slot.service}'s online certificate (${ledger})`;
  let cert: CertFile | FileProblem;
  if (!newest) cert = { path: label, missing: true, error: "is revoked: every certificate the ledger holds for it is" };
  else {
    try {
      const leaf = material.cert(newest.der);
      const inter = manifest.ca.intermediate ? readCertFile(material, abs(dir, LAYOUT.caIntermediate)) : undefined;
      cert = { path: label, certs: [leaf, ...(inter && !isProblem(inter) ? inter.certs : [])] };
    } catch (e) {
      cert = { path: label, missing: false, error: `does not parse (${(e as Error).message})` };
    }
  }
  const key: KeyFile = {
    path: `${slot.service}'s key (held by its agent on its host)`,
    mode: 0o600,
    uid: -1,
    spki: isProblem(cert) ? undefined : cert.certs[0]?.fields.spki,
    encryption: undefined,
    onHost: true,
  };
  return { slot, cert, key, online: where };
}

/**
 * caBundle is what an online service's agent trusts when `mtlskit sign` wrote no ca.pem for it:
 * the bundle the server hands out, the CA's ca.pem, and during a CA rotation the next CA's too
 * (the overlap both CAs' certificates verify under).
 */
function caBundle(material: Material, dir: string): CertFile | FileProblem {
  const current = readText(abs(dir, LAYOUT.caCert));
  if (typeof current !== "string") return current;
  const next = readText(abs(dir, LAYOUT.nextCa.cert));
  const text = typeof next === "string" ? `${current}${current.endsWith("\n") ? "" : "\n"}${next}` : current;
  const certs = material.certsOfPem(text);
  return certs instanceof CertParseError
    ? { path: abs(dir, LAYOUT.caCert), missing: false, error: certs.message }
    : { path: abs(dir, LAYOUT.caCert), certs };
}

function managedFiles(
  material: Material,
  dir: string,
  manifest: Manifest,
  s: Service,
  hooks: ReadHooks,
  settle: Settle,
  online: OnlineFacts | undefined,
): ServiceFiles {
  const issuedOnline = s.csr ? online?.services.get(s.name) : undefined;
  const slots = s.slots.map((slot) =>
    issuedOnline
      ? onlineSlot(material, dir, manifest, slot, online!.ledger, issuedOnline)
      : s.csr
        ? hostSlot(material, dir, slot)
        : managedSlot(material, dir, slot, hooks, settle),
  );
  const folder = abs(dir, LAYOUT.serviceDir(s.name));
  const known = new Set([...MANAGED_NAMES].map((n) => path.join(folder, n)));
  const own = readCertFile(material, abs(dir, LAYOUT.bundle(s.name)));
  const bundle = issuedOnline && isProblem(own) && own.missing ? caBundle(material, dir) : undefined;
  return {
    service: s,
    external: false,
    slots,
    ...(bundle ? { bundle, bundleOfCa: true as const } : { bundle: own }),
    otherKeys: scanKeys(folder, known, 2),
    ownerUid: undefined,
  };
}

function externalFiles(
  material: Material,
  s: Service,
  files: NonNullable<Service["files"]>,
  scanned: Set<string>,
  passwd: () => string | undefined,
): ServiceFiles {
  const slots = s.slots.map((slot) => {
    const certPath = slot.kind === "main" ? files.cert : (files.clientCert ?? files.cert);
    const keyPath = slot.kind === "main" ? files.key : (files.clientKey ?? files.key);
    return pair(slot, readCertFile(material, certPath), readKeyFile(keyPath));
  });
  const known = new Set(
    [files.cert, files.key, files.ca, files.clientCert, files.clientKey].filter((f): f is string => f !== undefined),
  );
  // Scan each folder once per run: services sharing /etc/app/certs share its findings.
  const otherKeys = [...new Set([...known].map((f) => path.dirname(f)))]
    .filter((d) => !scanned.has(d))
    .flatMap((d) => (scanned.add(d), scanKeys(d, known)));
  return {
    service: s,
    external: true,
    slots,
    bundle: readCertFile(material, files.ca),
    otherKeys,
    ownerUid: files.owner === undefined ? undefined : resolveOwner(files.owner, passwd),
  };
}

/**
 * readInventory reads every file the manifest's services use. `dir` is the PKI directory of the
 * managed services; it may be undefined when every service is external.
 */
export function readInventory(
  material: Material,
  manifest: Manifest,
  dir: string | undefined,
  hooks: ReadHooks = {},
  online?: OnlineFacts,
): Inventory {
  let passwdText: string | undefined | null = null;
  const passwd = () => {
    if (passwdText === null) {
      const t = readText("/etc/passwd");
      passwdText = typeof t === "string" ? t : undefined;
    }
    return passwdText;
  };
  const scanned = new Set<string>();
  const settle: Settle = { until: Date.now() + PAIR_SETTLE_MS };
  const services = manifest.services.map((s) =>
    s.files
      ? externalFiles(material, s, s.files, scanned, passwd)
      : managedFiles(material, dir!, manifest, s, hooks, settle, online),
  );
  let ca: Inventory["ca"];
  let caKey: Inventory["caKey"];
  let intermediate: Inventory["intermediate"];
  let intermediateKey: Inventory["intermediateKey"];
  let looseKeys: Inventory["looseKeys"] = [];
  const dirs: Inventory["dirs"] = [];
  if (dir !== undefined) {
    const owners = ownersOf(dir);
    const folders = [
      { spec: LAYOUT.caDir, service: undefined, folder: "ca" as const },
      { spec: LAYOUT.servicesDir, service: undefined, folder: "services" as const },
      ...manifest.services
        .filter((s) => !s.files)
        .map((s) => ({ spec: LAYOUT.serviceDir(s.name), service: s.name, folder: "service" as const })),
    ];
    for (const f of folders) {
      const problem = judgeDir(dir, f.spec, owners);
      if (problem) dirs.push({ ...problem, service: f.service, folder: f.folder });
    }
    looseKeys = scanKeys(abs(dir, LAYOUT.servicesDir), new Set());
    const caPath = abs(dir, LAYOUT.caCert);
    const c = readCertFile(material, caPath);
    ca = isProblem(c) && c.missing ? undefined : c;
    const k = readKeyFile(abs(dir, LAYOUT.caKey));
    caKey = isProblem(k) && k.missing ? undefined : k;
    const i = readCertFile(material, abs(dir, LAYOUT.caIntermediate));
    intermediate = isProblem(i) && i.missing ? undefined : i;
    const ik = readKeyFile(abs(dir, LAYOUT.caIntermediateKey));
    intermediateKey = isProblem(ik) && ik.missing && intermediate === undefined ? undefined : ik;
  }
  return { dir, ca, caKey, intermediate, intermediateKey, services, looseKeys, dirs };
}
