/**
 * Certificate issuance: a certificate specification plus an issuer become signed DER.
 * Everything that varies (time, serial, keys) is a parameter, so tests pin it.
 */
import { createHash, randomBytes, sign, type KeyObject } from "node:crypto";
import {
  bool,
  children,
  contentsOf,
  explicit,
  headerLength,
  implicit,
  octetString,
  oid,
  readTlv,
  seq,
  time,
  tlv,
  TAG,
  uint,
  writeHeader,
} from "./der.ts";
import { KEY_TYPES, type KeyTypeName } from "./keys.ts";
import { encodeName, type Subject } from "./name.ts";
import { EXTENSION_OID } from "./oids.ts";
import { EXT_KEY_USAGE_OID, KEY_USAGE_BIT, PROFILES, type KeyUsageBit, type ProfileName } from "./profiles.ts";

/** CertSpec is everything that decides a certificate's content except serial, key and issuer. */
export interface CertSpec {
  profile: ProfileName;
  subject: Subject;
  /** dns SANs, in order. */
  dns: readonly string[];
  /** ip SANs as 4 or 16 bytes each, in order. */
  ips: readonly Uint8Array[];
  /** uri SANs (the identity), in order; at most one is written by mtlskit. */
  uris: readonly string[];
  /** keyType of the subject's key: decides RSA-only key usage bits. */
  keyType: KeyTypeName;
  notBefore: Date;
  notAfter: Date;
}

/** Issuer is what signing needs from the CA. */
export interface Issuer {
  /** subject is the issuer's Name DER, copied byte for byte from its certificate. */
  subject: Buffer;
  /** keyId is the issuer's subject key identifier, written as the leaf's authority key id. */
  keyId: Buffer;
  keyType: KeyTypeName;
  privateKey: KeyObject;
}

const EXT = {
  basicConstraints: oid(EXTENSION_OID.basicConstraints),
  keyUsage: oid(EXTENSION_OID.keyUsage),
  extKeyUsage: oid(EXTENSION_OID.extKeyUsage),
  subjectKeyId: oid(EXTENSION_OID.subjectKeyIdentifier),
  authorityKeyId: oid(EXTENSION_OID.authorityKeyIdentifier),
  subjectAltName: oid(EXTENSION_OID.subjectAltName),
};
const V3 = explicit(0, uint(Buffer.from([2])));
const EKU_DER = Object.fromEntries(Object.entries(EXT_KEY_USAGE_OID).map(([k, v]) => [k, oid(v)])) as Record<
  keyof typeof EXT_KEY_USAGE_OID,
  Buffer
>;

function extension(id: Buffer, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(id, bool(true), octetString(value)) : seq(id, octetString(value));
}

/** encodeKeyUsage encodes the KeyUsage BIT STRING, trailing zero bits dropped as DER requires. */
export function encodeKeyUsage(bits: readonly KeyUsageBit[]): Buffer {
  let mask = 0;
  for (const b of bits) mask |= 0x8000 >> KEY_USAGE_BIT[b];
  const bytes = mask & 0xff ? [mask >> 8, mask & 0xff] : [mask >> 8];
  const last = bytes[bytes.length - 1]!;
  let unused = 0;
  while (unused < 7 && !(last & (1 << unused))) unused++;
  return tlv(TAG.bitString, Buffer.from([unused, ...bytes]));
}

/** keyIdOf computes a key identifier: SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 (1)). */
export function keyIdOf(spki: Uint8Array): Buffer {
  const top = readTlv(spki, 0);
  const bits = children(spki, top)[1];
  if (!bits || bits.tag !== TAG.bitString) throw new Error("pki: SubjectPublicKeyInfo has no BIT STRING");
  return createHash("sha1").update(contentsOf(spki, bits).subarray(1)).digest();
}

/**
 * pooledRandom returns `n` fresh bytes from the CSPRNG, drawn 4 KB at a time: one
 * randomBytes call per 256 serials instead of one each (measured: 86 of 1,420 ms of a worker's
 * CPU at 10,000 services went to randomBytes(16)). Each byte is handed out once.
 */
function pooledRandom(n: number): Buffer {
  if (n > RANDOM_POOL_SIZE) return randomBytes(n);
  if (randomAt + n > randomPool.length) {
    randomPool = randomBytes(RANDOM_POOL_SIZE);
    randomAt = 0;
  }
  const out = Buffer.from(randomPool.subarray(randomAt, randomAt + n));
  randomPool.fill(0, randomAt, randomAt + n);
  randomAt += n;
  return out;
}
const RANDOM_POOL_SIZE = 4096;
let randomPool = Buffer.alloc(0);
let randomAt = 0;

/** newSerial returns 16 octets: positive, 126 random bits, minimal DER (CA/B BR 7.1 asks >= 64). */
export function newSerial(random: (n: number) => Buffer = pooledRandom): Buffer {
  const s = random(16);
  s[0] = (s[0]! & 0x3f) | 0x40;
  return s;
}

const CONSTANT_EXTENSIONS = new Map<string, Buffer>();

/**
 * constantExtensions is the start of a profile's extensions, the same for every certificate of
 * that profile and key family: basicConstraints, keyUsage and, when the profile has one,
 * extKeyUsage, encoded once and reused (encodeTbs writes them first, in this order).
 */
function constantExtensions(name: ProfileName, rsa: boolean): Buffer {
  const cacheKey = `${name}:${rsa}`;
  let der = CONSTANT_EXTENSIONS.get(cacheKey);
  if (der) return der;
  const profile = PROFILES[name];
  const ku = rsa ? [...profile.keyUsage, ...profile.rsaKeyUsage] : profile.keyUsage;
  const exts = [
    extension(
      EXT.basicConstraints,
      true,
      profile.isCA
        ? seq(bool(true), ...(profile.pathLen === undefined ? [] : [uint(Buffer.from([profile.pathLen]))]))
        : seq(),
    ),
    extension(EXT.keyUsage, true, encodeKeyUsage(ku)),
  ];
  if (profile.extKeyUsage.length > 0)
    exts.push(extension(EXT.extKeyUsage, false, seq(...profile.extKeyUsage.map((u) => EKU_DER[u]))));
  der = Buffer.concat(exts);
  CONSTANT_EXTENSIONS.set(cacheKey, der);
  return der;
}

/** lastTimes holds the last few encoded certificate times: a plan gives most certificates the same validity. */
const lastTimes = new Map<number, Buffer>();
function timeOf(d: Date): Buffer {
  const ms = d.getTime();
  let der = lastTimes.get(ms);
  if (der) return der;
  der = time(d);
  if (lastTimes.size >= 8) lastTimes.clear();
  lastTimes.set(ms, der);
  return der;
}

/** lastValidity: the last Validity encoded (most certificates of a plan share one). */
let lastValidity: { from: number; to: number; der: Buffer } = {
  from: Number.NaN,
  to: Number.NaN,
  der: Buffer.alloc(0),
};
function validityOf(notBefore: Date, notAfter: Date): Buffer {
  const from = notBefore.getTime();
  const to = notAfter.getTime();
  if (from !== lastValidity.from || to !== lastValidity.to)
    lastValidity = { from, to, der: seq(timeOf(notBefore), timeOf(notAfter)) };
  return lastValidity.der;
}

/** lastAki: the last authorityKeyIdentifier extension encoded (one per issuer). */
let lastAki: { keyId: Buffer; der: Buffer } = { keyId: Buffer.alloc(0), der: Buffer.alloc(0) };
function authorityKeyIdOf(keyId: Buffer): Buffer {
  if (!lastAki.keyId.equals(keyId))
    lastAki = { keyId: Buffer.from(keyId), der: extension(EXT.authorityKeyId, false, seq(implicit(0, keyId))) };
  return lastAki.der;
}

const NO_BYTES = Buffer.alloc(0);

/** sized: an element's whole length (header and contents) for `length` content octets. */
const sized = (length: number): number => headerLength(length) + length;

/** put copies `bytes` into `out` at `at` and returns the offset after them. */
function put(out: Buffer, at: number, bytes: Uint8Array): number {
  out.set(bytes, at);
  return at + bytes.length;
}

/** GENERAL_NAME_TAG: the GeneralName choices mtlskit writes, as implicit context tags (RFC 5280 4.2.1.6). */
const GENERAL_NAME_TAG = { dns: 0x82, uri: 0x86, ip: 0x87 } as const;

/**
 * encodeTbs builds the TBSCertificate DER. For a self-signed CA pass the CA's own subject and
 * key id as the issuer. The extensions follow PROFILES[spec.profile] and nothing else. `ski` is
 * keyIdOf(spki), passed when the caller computed it already.
 *
 * The lengths are added up first and the whole structure is written into one buffer (parts the
 * same for many certificates, the validity, the issuer's key id and the profile's extensions,
 * encoded once): apply issues thousands, and an element per allocation (about 35 of them), with
 * arrays spread into variadic calls, cost each worker thread ~30 young-generation collections and
 * several re-optimisations of this function at 10,000 services (issue 12).
 */
export function encodeTbs(
  spec: CertSpec,
  issuer: Pick<Issuer, "subject" | "keyId" | "keyType">,
  spki: Buffer,
  serial: Buffer,
  ski: Buffer = keyIdOf(spki),
): Buffer {
  const constant = constantExtensions(spec.profile, KEY_TYPES[spec.keyType].family === "rsa");
  // Every certificate names its issuer's key, except a self-signed root (RFC 5280 4.2.1.1).
  const aki = issuer.keyId.equals(ski) ? NO_BYTES : authorityKeyIdOf(issuer.keyId);
  // The serial as a minimal INTEGER (uint's encoding), written in place: leading zero octets
  // dropped, one 0x00 put back when the first remaining octet has its top bit set.
  let serialAt = 0;
  while (serialAt < serial.length - 1 && serial[serialAt] === 0) serialAt++;
  const serialPad = serial[serialAt]! & 0x80 ? 1 : 0;
  const serialLength = serialPad + serial.length - serialAt;
  const validity = validityOf(spec.notBefore, spec.notAfter);
  const subject = encodeName(spec.subject);
  const algorithm = KEY_TYPES[issuer.keyType].signatureAlgorithm;
  const { dns, ips, uris } = spec;
  // subjectKeyIdentifier: SEQUENCE { OID, OCTET STRING { OCTET STRING ski } }
  const skiValue = sized(ski.length);
  const skiExtension = EXT.subjectKeyId.length + sized(skiValue);
  // subjectAltName: SEQUENCE { OID, OCTET STRING { SEQUENCE OF GeneralName } }; the subject
  // always has a CN, so it is not critical (RFC 5280 4.2.1.6). Names are ASCII (the manifest's rules).
  let names = 0;
  for (let i = 0; i < dns.length; i++) names += sized(dns[i]!.length);
  for (let i = 0; i < ips.length; i++) names += sized(ips[i]!.length);
  for (let i = 0; i < uris.length; i++) names += sized(uris[i]!.length);
  const hasSan = dns.length + ips.length + uris.length > 0;
  const sanValue = sized(names);
  const sanExtension = EXT.subjectAltName.length + sized(sanValue);
  const extensions = constant.length + sized(skiExtension) + aki.length + (hasSan ? sized(sanExtension) : 0);
  const body =
    V3.length +
    sized(serialLength) +
    algorithm.length +
    issuer.subject.length +
    validity.length +
    subject.length +
    spki.length +
    sized(sized(extensions));
  const out = Buffer.allocUnsafe(sized(body));
  let p = writeHeader(out, 0, TAG.sequence, body);
  p = put(out, p, V3);
  p = writeHeader(out, p, TAG.integer, serialLength);
  if (serialPad) out[p++] = 0;
  p = put(out, p, serial.subarray(serialAt));
  p = put(out, p, algorithm);
  p = put(out, p, issuer.subject);
  p = put(out, p, validity);
  p = put(out, p, subject);
  p = put(out, p, spki);
  p = writeHeader(out, p, 0xa3, sized(extensions));
  p = writeHeader(out, p, TAG.sequence, extensions);
  p = put(out, p, constant);
  p = writeHeader(out, p, TAG.sequence, skiExtension);
  p = put(out, p, EXT.subjectKeyId);
  p = writeHeader(out, p, TAG.octetString, skiValue);
  p = writeHeader(out, p, TAG.octetString, ski.length);
  p = put(out, p, ski);
  p = put(out, p, aki);
  if (hasSan) {
    p = writeHeader(out, p, TAG.sequence, sanExtension);
    p = put(out, p, EXT.subjectAltName);
    p = writeHeader(out, p, TAG.octetString, sanValue);
    p = writeHeader(out, p, TAG.sequence, names);
    for (let i = 0; i < dns.length; i++) {
      p = writeHeader(out, p, GENERAL_NAME_TAG.dns, dns[i]!.length);
      p += out.write(dns[i]!, p, "latin1");
    }
    for (let i = 0; i < ips.length; i++) {
      p = writeHeader(out, p, GENERAL_NAME_TAG.ip, ips[i]!.length);
      p = put(out, p, ips[i]!);
    }
    for (let i = 0; i < uris.length; i++) {
      p = writeHeader(out, p, GENERAL_NAME_TAG.uri, uris[i]!.length);
      p += out.write(uris[i]!, p, "latin1");
    }
  }
  if (p !== out.length) throw new Error(`pki: encodeTbs wrote ${p} of ${out.length} octets; this is a bug`);
  return out;
}

/**
 * signTbs signs a to-be-signed structure (a TBSCertificate, a CRL's TBSCertList, a request's
 * CertificationRequestInfo) with the issuer's key: the structure, the algorithm and the signature.
 */
export function signTbs(tbs: Buffer, issuer: Pick<Issuer, "keyType" | "privateKey">): Buffer {
  const kt = KEY_TYPES[issuer.keyType];
  return signed(tbs, kt.signatureAlgorithm, sign(kt.hash ?? null, tbs, issuer.privateKey));
}

/** signed writes SEQUENCE { tbs, algorithm, BIT STRING { 0 unused bits, signature } } into one buffer. */
function signed(tbs: Buffer, algorithm: Buffer, signature: Buffer): Buffer {
  const bits = signature.length + 1;
  const body = tbs.length + algorithm.length + sized(bits);
  const out = Buffer.allocUnsafe(sized(body));
  let p = writeHeader(out, 0, TAG.sequence, body);
  p = put(out, p, tbs);
  p = put(out, p, algorithm);
  p = writeHeader(out, p, TAG.bitString, bits);
  out[p] = 0;
  put(out, p + 1, signature);
  return out;
}

/** signTbsAsync is signTbs with the signature computed in libuv's thread pool (crypto.sign's callback form), off the event loop. */
export function signTbsAsync(tbs: Buffer, issuer: Pick<Issuer, "keyType" | "privateKey">): Promise<Buffer> {
  const kt = KEY_TYPES[issuer.keyType];
  return new Promise((resolve, reject) =>
    sign(kt.hash ?? null, tbs, issuer.privateKey, (err, signature) =>
      err ? reject(err) : resolve(signed(tbs, kt.signatureAlgorithm, signature)),
    ),
  );
}
