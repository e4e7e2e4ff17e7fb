/**
 * Certificate issuance: a certificate specification plus an issuer become signed DER.
 * Everything that varies (time, serial, keys) is a parameter, so tests pin it.
 */
import { createHash, randomBytes, sign, type KeyObject } from "node:crypto";
import {
  bitString,
  bool,
  children,
  contentsOf,
  explicit,
  implicit,
  octetString,
  oid,
  readTlv,
  seq,
  time,
  tlv,
  TAG,
  uint,
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

/**
 * encodeTbs builds the TBSCertificate DER. For a self-signed CA pass the CA's own subject and
 * key id as the issuer. The extensions follow PROFILES[spec.profile] and nothing else. `ski` is
 * keyIdOf(spki), passed when the caller computed it already.
 */
export function encodeTbs(
  spec: CertSpec,
  issuer: Pick<Issuer, "subject" | "keyId" | "keyType">,
  spki: Buffer,
  serial: Buffer,
  ski: Buffer = keyIdOf(spki),
): Buffer {
  const exts: Buffer[] = [constantExtensions(spec.profile, KEY_TYPES[spec.keyType].family === "rsa")];
  exts.push(extension(EXT.subjectKeyId, false, octetString(ski)));
  // Every certificate names its issuer's key, except a self-signed root (RFC 5280 4.2.1.1).
  if (!issuer.keyId.equals(ski)) exts.push(extension(EXT.authorityKeyId, false, seq(implicit(0, issuer.keyId))));
  const names = [
    ...spec.dns.map((d) => implicit(2, Buffer.from(d, "ascii"))),
    ...spec.ips.map((ip) => implicit(7, ip)),
    ...spec.uris.map((u) => implicit(6, Buffer.from(u, "ascii"))),
  ];
  // The subject always has a CN, so the SAN extension is not critical (RFC 5280 4.2.1.6).
  if (names.length > 0) exts.push(extension(EXT.subjectAltName, false, seq(...names)));
  return seq(
    V3,
    uint(serial),
    KEY_TYPES[issuer.keyType].signatureAlgorithm,
    issuer.subject,
    seq(timeOf(spec.notBefore), timeOf(spec.notAfter)),
    encodeName(spec.subject),
    spki,
    explicit(3, seq(...exts)),
  );
}

/**
 * signTbs signs a to-be-signed structure (a TBSCertificate, a CRL's TBSCertList, a request's
 * CertificationRequestInfo) with the issuer's key: the structure, the algorithm and the signature.
 */
export function signTbs(tbs: Buffer, issuer: Pick<Issuer, "keyType" | "privateKey">): Buffer {
  const kt = KEY_TYPES[issuer.keyType];
  const signature = sign(kt.hash ?? null, tbs, issuer.privateKey);
  return seq(tbs, kt.signatureAlgorithm, bitString(signature));
}

/** signTbsAsync is signTbs with the signature computed in libuv's thread pool (crypto.sign's callback form), off the event loop. */
export function signTbsAsync(tbs: Buffer, issuer: Pick<Issuer, "keyType" | "privateKey">): Promise<Buffer> {
  const kt = KEY_TYPES[issuer.keyType];
  return new Promise((resolve, reject) =>
    sign(kt.hash ?? null, tbs, issuer.privateKey, (err, signature) =>
      err ? reject(err) : resolve(seq(tbs, kt.signatureAlgorithm, bitString(signature))),
    ),
  );
}
