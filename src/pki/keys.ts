/**
 * KEY_TYPES: the closed table of key types mtlskit issues, how each is generated and encoded,
 * and which signature algorithm a CA of that type signs with.
 */
import {
  createECDH,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type ECDH,
  type KeyObject,
} from "node:crypto";
import {
  bitString,
  bytesOf,
  children,
  contentsOf,
  explicit,
  octetString,
  oid,
  readTlv,
  seq,
  tlv,
  TAG,
  uint,
} from "./der.ts";

/** KeyTypeName is a key type as written in the manifest. */
export type KeyTypeName = "ecdsa-p256" | "ecdsa-p384" | "rsa-2048" | "rsa-3072" | "rsa-4096" | "ed25519";

/** KeyType describes one row of KEY_TYPES. */
export interface KeyType {
  name: KeyTypeName;
  /** family decides key usage bits: RSA keys also get keyEncipherment (RFC 5280 4.2.1.3). */
  family: "ec" | "rsa" | "ed25519";
  /** hash used when a key of this type signs (undefined: the algorithm hashes itself, Ed25519). */
  hash: "sha256" | "sha384" | undefined;
  /** signatureAlgorithm is the DER AlgorithmIdentifier a CA of this type puts in certificates. */
  signatureAlgorithm: Buffer;
  /** describe is how reports name the type. */
  describe: string;
}

const EC_PUBLIC_KEY = "1.2.840.10045.2.1";
const CURVE_OID = { "P-256": "1.2.840.10045.3.1.7", "P-384": "1.3.132.0.34" } as const;

/** KEY_TYPES is the table code and docs read; unknown names are manifest errors. */
export const KEY_TYPES: Readonly<Record<KeyTypeName, KeyType>> = {
  "ecdsa-p256": {
    name: "ecdsa-p256",
    family: "ec",
    hash: "sha256",
    signatureAlgorithm: seq(oid("1.2.840.10045.4.3.2")),
    describe: "ECDSA P-256",
  },
  "ecdsa-p384": {
    name: "ecdsa-p384",
    family: "ec",
    hash: "sha384",
    signatureAlgorithm: seq(oid("1.2.840.10045.4.3.3")),
    describe: "ECDSA P-384",
  },
  "rsa-2048": {
    name: "rsa-2048",
    family: "rsa",
    hash: "sha256",
    signatureAlgorithm: seq(oid("1.2.840.113549.1.1.11"), tlv(TAG.null)),
    describe: "RSA 2048",
  },
  "rsa-3072": {
    name: "rsa-3072",
    family: "rsa",
    hash: "sha256",
    signatureAlgorithm: seq(oid("1.2.840.113549.1.1.11"), tlv(TAG.null)),
    describe: "RSA 3072",
  },
  "rsa-4096": {
    name: "rsa-4096",
    family: "rsa",
    hash: "sha256",
    signatureAlgorithm: seq(oid("1.2.840.113549.1.1.11"), tlv(TAG.null)),
    describe: "RSA 4096",
  },
  ed25519: {
    name: "ed25519",
    family: "ed25519",
    hash: undefined,
    signatureAlgorithm: seq(oid("1.3.101.112")),
    describe: "Ed25519",
  },
};

/** KEY_TYPE_NAMES lists the manifest's key type names in table order. */
export const KEY_TYPE_NAMES = Object.keys(KEY_TYPES) as KeyTypeName[];

/** KeyPair is a freshly generated key in the encodings mtlskit writes. */
export interface KeyPair {
  type: KeyTypeName;
  /** pkcs8 is the private key as PKCS#8 DER (RFC 5208). */
  pkcs8: Buffer;
  /** spki is the public key as SubjectPublicKeyInfo DER (RFC 5280 4.1.2.7). */
  spki: Buffer;
}

const EC_ALG = {
  "ecdsa-p256": { alg: seq(oid(EC_PUBLIC_KEY), oid(CURVE_OID["P-256"])), ecdh: "prime256v1" },
  "ecdsa-p384": { alg: seq(oid(EC_PUBLIC_KEY), oid(CURVE_OID["P-384"])), ecdh: "secp384r1" },
} as const;

/** ECDH_BY_CURVE holds one ECDH object per curve, reused: creating one costs as much as a key. */
const ECDH_BY_CURVE: Partial<Record<string, ECDH>> = {};
const ecdhFor = (curve: string): ECDH => (ECDH_BY_CURVE[curve] ??= createECDH(curve));

/** EC_SIZES are a curve's scalar length, ceiling(log2(n)/8) (RFC 5915 3), and uncompressed point length. */
const EC_SIZES = { "ecdsa-p256": { d: 32, point: 65 }, "ecdsa-p384": { d: 48, point: 97 } } as const;

/** EcTemplate is a key's PKCS#8 and SPKI DER with a zero scalar and point, and where they go. */
interface EcTemplate {
  pkcs8: Buffer;
  spki: Buffer;
  /** dAt and pointAt are the offsets of the scalar and the point in pkcs8; in spki the point ends it. */
  dAt: number;
  pointAt: number;
}

/**
 * ecTemplate encodes PKCS#8 (RFC 5208) holding an ECPrivateKey (RFC 5915: version 1, the scalar
 * and the public point; the curve is named in the AlgorithmIdentifier) and SPKI (RFC 5480) once,
 * with zeros in place of the key. Every length is fixed per curve, so each key only copies its
 * scalar and point in: about 10 µs cheaper per key than encoding the DER again.
 */
function ecTemplate(type: "ecdsa-p256" | "ecdsa-p384"): EcTemplate {
  const { alg } = EC_ALG[type];
  const size = EC_SIZES[type];
  const point = Buffer.alloc(size.point);
  const ecPrivateKey = seq(uint(Buffer.from([1])), octetString(Buffer.alloc(size.d)), explicit(1, bitString(point)));
  const pkcs8 = seq(uint(Buffer.from([0])), alg, octetString(ecPrivateKey));
  // After the scalar: [1] (2 octets), BIT STRING header and unused-bits octet (3), the point.
  const pointAt = pkcs8.length - size.point;
  return { pkcs8, spki: seq(alg, bitString(point)), dAt: pointAt - 5 - size.d, pointAt };
}

const EC_TEMPLATES: Partial<Record<"ecdsa-p256" | "ecdsa-p384", EcTemplate>> = {};

/**
 * generateEcKey generates an EC key with ECDH and fills in its PKCS#8 and SPKI DER here. ECDH
 * keeps OpenSSL's random scalar and point multiplication but needs no KeyObject and no OpenSSL
 * encoder: a P-256 key in about a fifth of the time of generateKeyPairSync with a JWK export
 * (19-26 µs against 91-190 µs in bench/apply.bench.ts's micro section; P-384 gains about 10%,
 * its point multiplication dominates), and it cannot meet Node 20.20's deadlock between
 * KeyObject.export({ format: "jwk" }) and a GC finalizing the key-generation job
 * (test/pki.test.ts runs 12,000 keys under GC pressure).
 */
function generateEcKey(type: "ecdsa-p256" | "ecdsa-p384"): KeyPair {
  const t = (EC_TEMPLATES[type] ??= ecTemplate(type));
  const ecdh = ecdhFor(EC_ALG[type].ecdh);
  ecdh.generateKeys();
  const point = ecdh.getPublicKey(); // uncompressed: 04 || X || Y, fixed length
  const d = ecdh.getPrivateKey(); // big-endian without leading zero octets (1 key in 256 is shorter)
  const pkcs8 = Buffer.from(t.pkcs8);
  const spki = Buffer.from(t.spki);
  d.copy(pkcs8, t.dAt + EC_SIZES[type].d - d.length); // left-padded with the template's zeros
  point.copy(pkcs8, t.pointAt);
  point.copy(spki, spki.length - point.length);
  return { type, pkcs8, spki };
}

/** generateKey creates a new key pair of the given type. */
export function generateKey(type: KeyTypeName): KeyPair {
  switch (type) {
    case "ecdsa-p256":
    case "ecdsa-p384":
      return generateEcKey(type);
    case "rsa-2048":
    case "rsa-3072":
    case "rsa-4096": {
      const { privateKey, publicKey } = generateKeyPairSync("rsa", {
        modulusLength: Number(type.slice(4)),
        publicExponent: 0x10001,
        publicKeyEncoding: { type: "spki", format: "der" },
        privateKeyEncoding: { type: "pkcs8", format: "der" },
      });
      return { type, pkcs8: privateKey, spki: publicKey };
    }
    case "ed25519": {
      const { privateKey, publicKey } = generateKeyPairSync("ed25519", {
        publicKeyEncoding: { type: "spki", format: "der" },
        privateKeyEncoding: { type: "pkcs8", format: "der" },
      });
      return { type, pkcs8: privateKey, spki: publicKey };
    }
  }
}

/** keyTypeOf names the table row of a key, or undefined for a type mtlskit does not issue. */
export function keyTypeOf(key: KeyObject): KeyTypeName | undefined {
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case "ec":
      return d.namedCurve === "prime256v1" ? "ecdsa-p256" : d.namedCurve === "secp384r1" ? "ecdsa-p384" : undefined;
    case "rsa": {
      const name = `rsa-${d.modulusLength}`;
      return name in KEY_TYPES ? (name as KeyTypeName) : undefined;
    }
    case "ed25519":
      return "ed25519";
    default:
      return undefined;
  }
}

/** keyTypeOfSpki names the key type of a SubjectPublicKeyInfo, or undefined when mtlskit does not issue it. */
export function keyTypeOfSpki(spki: Buffer): KeyTypeName | undefined {
  try {
    const alg = bytesOf(spki, children(spki, readTlv(spki, 0))[0]!);
    for (const [name, ec] of Object.entries(EC_ALG)) if (alg.equals(ec.alg)) return name as KeyTypeName;
    return keyTypeOf(createPublicKey({ key: spki, format: "der", type: "spki" }));
  } catch {
    return undefined;
  }
}

/**
 * spkiOfPkcs8 derives the SubjectPublicKeyInfo that belongs to a PKCS#8 private key. For EC keys
 * the public point is recomputed from the private scalar with ECDH (about 0.05 ms) rather than
 * through OpenSSL's key decoder (about 0.6 ms): re-running apply checks every key this way.
 * The point stored in the file is not trusted; it is recomputed.
 */
export function spkiOfPkcs8(der: Buffer): Buffer {
  const top = readTlv(der, 0);
  const [version, alg, priv] = children(der, top);
  if (version && alg && priv && priv.tag === TAG.octetString) {
    const algBytes = bytesOf(der, alg);
    for (const ec of Object.values(EC_ALG)) {
      if (!algBytes.equals(ec.alg)) continue;
      const inner = contentsOf(der, priv);
      const d = children(inner, readTlv(inner, 0))[1];
      if (!d || d.tag !== TAG.octetString) break;
      const ecdh = ecdhFor(ec.ecdh);
      ecdh.setPrivateKey(contentsOf(inner, d));
      return seq(ec.alg, bitString(ecdh.getPublicKey()));
    }
  }
  return spkiOfPrivateKey(createPrivateKey({ key: der, format: "der", type: "pkcs8" }));
}

/** spkiOfPrivateKey derives the SubjectPublicKeyInfo DER that belongs to a private key. */
export function spkiOfPrivateKey(key: KeyObject): Buffer {
  return createPublicKey(key).export({ type: "spki", format: "der" });
}

/** parsePrivateKey reads a PEM or DER private key; it throws the crypto layer's error as is. */
export function parsePrivateKey(data: Buffer | string): KeyObject {
  if (typeof data !== "string" && data[0] === 0x30)
    return createPrivateKey({ key: data, format: "der", type: "pkcs8" });
  return createPrivateKey(data);
}
