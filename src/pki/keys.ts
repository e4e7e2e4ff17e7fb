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

const b64u = (s: string): Buffer => Buffer.from(s, "base64url");
const EC_ALG = {
  "ecdsa-p256": { alg: seq(oid(EC_PUBLIC_KEY), oid(CURVE_OID["P-256"])), ecdh: "prime256v1" },
  "ecdsa-p384": { alg: seq(oid(EC_PUBLIC_KEY), oid(CURVE_OID["P-384"])), ecdh: "secp384r1" },
} as const;

/**
 * encodeEcKey builds PKCS#8 and SPKI DER from a JWK. Exporting the JWK is about five times
 * cheaper than OpenSSL's PKCS#8 and SPKI encoders (bench/), and EC keys are the hot path.
 */
function encodeEcKey(
  curve: "P-256" | "P-384",
  jwk: { d?: string; x?: string; y?: string },
): { pkcs8: Buffer; spki: Buffer } {
  const point = Buffer.concat([Buffer.from([4]), b64u(jwk.x!), b64u(jwk.y!)]);
  const alg = seq(oid(EC_PUBLIC_KEY), oid(CURVE_OID[curve]));
  // ECPrivateKey (RFC 5915): version 1, the scalar, and the public point; curve named in `alg`.
  const ecPrivateKey = seq(uint(Buffer.from([1])), octetString(b64u(jwk.d!)), explicit(1, bitString(point)));
  return {
    pkcs8: seq(uint(Buffer.from([0])), alg, octetString(ecPrivateKey)),
    spki: seq(alg, bitString(point)),
  };
}

/** generateEcJwk generates an EC key pair returned as JWKs (@types/node lacks this overload). */
const generateEcJwk = (curve: "P-256" | "P-384"): { d?: string; x?: string; y?: string } =>
  (
    generateKeyPairSync as unknown as (
      type: "ec",
      options: object,
    ) => { privateKey: { d?: string; x?: string; y?: string } }
  )("ec", {
    namedCurve: curve,
    privateKeyEncoding: { format: "jwk" },
    publicKeyEncoding: { format: "jwk" },
  }).privateKey;

/** generateKey creates a new key pair of the given type. */
export function generateKey(type: KeyTypeName): KeyPair {
  switch (type) {
    case "ecdsa-p256":
    case "ecdsa-p384": {
      const curve = type === "ecdsa-p256" ? "P-256" : "P-384";
      // Ask for the JWK at generation: on Node 20.20, exporting a generated EC KeyObject as JWK
      // can deadlock when garbage collection runs during the export (found by test/pki.test.ts;
      // the thread waits on a lock it already holds).
      return { type, ...encodeEcKey(curve, generateEcJwk(curve)) };
    }
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

const ECDH_BY_CURVE: Partial<Record<string, ECDH>> = {};

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
      // One ECDH object per curve, reused: creating one costs as much as the point multiplication.
      const ecdh = (ECDH_BY_CURVE[ec.ecdh] ??= createECDH(ec.ecdh));
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
