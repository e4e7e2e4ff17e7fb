/**
 * Keys described by their public half: type, size and SPKI fingerprint. A private key is opened
 * only to derive its public key; nothing private is kept or printed. An encrypted key is named
 * with its cipher, since its type is sealed with it.
 */
import { createPrivateKey, createPublicKey } from "node:crypto";
import { children, contentsOf, readTlv, TAG } from "../pki/der.ts";
import { decodeOid } from "../pki/x509.ts";
import type { Shape } from "./classify.ts";
import { keyInfoOfSpki } from "./describe.ts";
import { CODES, keyWeakness, WEAK_KEY_CHANGE } from "../check/index.ts";
import type { ItemLint, KeyInfo, PrivateKeyItem, PublicKeyItem, Where } from "./item.ts";
import { legacyEncrypted } from "../pki/pem.ts";

/** CIPHERS names the encryption OIDs of PKCS#5/PKCS#12 that tools write. */
const CIPHERS: Record<string, string> = {
  "1.2.840.113549.1.5.13": "PBES2",
  "1.2.840.113549.1.5.12": "PBKDF2",
  "1.3.6.1.4.1.11591.4.11": "scrypt",
  "2.16.840.1.101.3.4.1.2": "aes-128-cbc",
  "2.16.840.1.101.3.4.1.22": "aes-192-cbc",
  "2.16.840.1.101.3.4.1.42": "aes-256-cbc",
  "1.2.840.113549.3.7": "des-ede3-cbc",
  "1.3.14.3.2.7": "des-cbc",
  "1.2.840.113549.1.12.1.3": "pbeWithSHAAnd3-KeyTripleDES-CBC",
  "1.2.840.113549.1.12.1.6": "pbeWithSHAAnd40BitRC2-CBC",
  "1.2.840.113549.1.5.3": "pbeWithMD5AndDES-CBC",
};

const FORMATS: Partial<Record<Shape, { format: string; type: "pkcs8" | "sec1" | "pkcs1" }>> = {
  pkcs8: { format: "PKCS#8", type: "pkcs8" },
  sec1: { format: "SEC1", type: "sec1" },
  "pkcs1-private": { format: "PKCS#1", type: "pkcs1" },
};

/** cryptoReason shortens an OpenSSL error (`error:1E08010C:DECODER routines::unsupported`) to its words. */
export const cryptoReason = (e: unknown): string =>
  String((e as Error).message ?? e)
    .replace(/^error:[0-9A-F]+:/, "")
    .replace(/ routines::/, ": ");

/** encryptionOf names the scheme of an EncryptedPrivateKeyInfo: `PBES2 (PBKDF2, aes-256-cbc)`. */
function encryptionOf(der: Buffer): string {
  const name = (o: string) => CIPHERS[o] ?? o;
  const [alg] = children(der, readTlv(der, 0));
  const [schemeT, paramsT] = children(der, alg!);
  const scheme = decodeOid(contentsOf(der, schemeT!));
  if (name(scheme) !== "PBES2" || paramsT?.tag !== TAG.sequence) return name(scheme);
  const parts = children(der, paramsT).map((p) => name(decodeOid(contentsOf(der, children(der, p)[0]!))));
  return `PBES2 (${parts.join(", ")})`;
}

/** algorithmHint names a PKCS#8 key's algorithm OID, which is what OpenSSL most often cannot open. */
function algorithmHint(der: Buffer): string {
  try {
    const alg = children(der, readTlv(der, 0))[1]!;
    return ` (key algorithm ${decodeOid(contentsOf(der, children(der, alg)[0]!))})`;
  } catch {
    return "";
  }
}

/** keyLints judges a key on its own: weak-key when TLS peers refuse its type or size (a key file is judged as its certificate would be). */
function keyLints(key: KeyInfo): ItemLint[] {
  const weak = keyWeakness(key);
  return weak === undefined
    ? []
    : [
        {
          code: "weak-key",
          severity: CODES["weak-key"].severity,
          message: weak.replace(/^has (an?) /, "is $1 "),
          change: WEAK_KEY_CHANGE.replace("issue it with", "use"),
        },
      ];
}

/** describePrivateKey describes a private key of `shape`; it throws the crypto layer's reason when the key does not open. */
export function describePrivateKey(
  der: Buffer,
  shape: Shape,
  where: Where,
  headers: Record<string, string>,
): PrivateKeyItem {
  const base = { kind: "private-key" as const, ...where, matches: undefined };
  if (legacyEncrypted(headers)) {
    const cipher = (headers["DEK-Info"] ?? "").split(",")[0] || "unknown cipher";
    return {
      ...base,
      format: "PEM-encrypted (legacy OpenSSL)",
      encrypted: true,
      encryption: cipher,
      key: undefined,
      lints: [],
    };
  }
  if (shape === "encrypted-pkcs8") {
    let encryption: string;
    try {
      encryption = encryptionOf(der);
    } catch (e) {
      throw new Error(`its encryption parameters do not decode (${(e as Error).message.replace(/^der: /, "")})`, {
        cause: e,
      });
    }
    return { ...base, format: "PKCS#8, encrypted", encrypted: true, encryption, key: undefined, lints: [] };
  }
  const f = FORMATS[shape]!;
  let spki: Buffer;
  try {
    spki = createPublicKey(createPrivateKey({ key: der, format: "der", type: f.type })).export({
      type: "spki",
      format: "der",
    });
  } catch (e) {
    throw new Error(`${cryptoReason(e)}${shape === "pkcs8" ? algorithmHint(der) : ""}`, { cause: e });
  }
  const key = keyInfoOfSpki(spki);
  return { ...base, format: f.format, encrypted: false, encryption: undefined, key, lints: keyLints(key) };
}

/** describePublicKey describes a SubjectPublicKeyInfo or PKCS#1 RSA public key. */
export function describePublicKey(der: Buffer, shape: Shape, where: Where): PublicKeyItem {
  let spki = der;
  if (shape === "pkcs1-public") {
    try {
      spki = createPublicKey({ key: der, format: "der", type: "pkcs1" }).export({ type: "spki", format: "der" });
    } catch (e) {
      throw new Error(cryptoReason(e), { cause: e });
    }
  }
  const key = keyInfoOfSpki(spki);
  return {
    kind: "public-key",
    ...where,
    format: shape === "spki" ? "SPKI" : "PKCS#1",
    key,
    lints: keyLints(key),
    matches: undefined,
  };
}
