/**
 * What a DER object really is, read from its structure rather than trusted from its PEM label,
 * and the LABELS table of what each PEM label promises. A label that promises one thing around
 * DER of another (a key inside CERTIFICATE) is reported as such, never decoded as the label says.
 */
import { bytesOf, children, readTlv, TAG } from "../pki/der.ts";

/** Shape is a structure inspect decodes. */
export type Shape =
  | "certificate"
  | "csr"
  | "pkcs8"
  | "encrypted-pkcs8"
  | "sec1"
  | "pkcs1-private"
  | "spki"
  | "pkcs1-public";

/** SHAPES names each shape in messages: `a CERTIFICATE block holds a private key (PKCS#8)`. */
export const SHAPES: Readonly<Record<Shape, string>> = {
  certificate: "a certificate",
  csr: "a certificate request (PKCS#10)",
  pkcs8: "a private key (PKCS#8)",
  "encrypted-pkcs8": "an encrypted private key (PKCS#8)",
  sec1: "an EC private key (SEC1)",
  "pkcs1-private": "an RSA private key (PKCS#1)",
  spki: "a public key (SubjectPublicKeyInfo)",
  "pkcs1-public": "an RSA public key (PKCS#1)",
};

/** LABELS maps the PEM labels inspect decodes to the shape they promise (RFC 7468, OpenSSL's traditional labels). */
export const LABELS: Readonly<Record<string, Shape>> = {
  CERTIFICATE: "certificate",
  "X509 CERTIFICATE": "certificate",
  "TRUSTED CERTIFICATE": "certificate",
  "CERTIFICATE REQUEST": "csr",
  "NEW CERTIFICATE REQUEST": "csr",
  "PRIVATE KEY": "pkcs8",
  "ENCRYPTED PRIVATE KEY": "encrypted-pkcs8",
  "EC PRIVATE KEY": "sec1",
  "RSA PRIVATE KEY": "pkcs1-private",
  "PUBLIC KEY": "spki",
  "RSA PUBLIC KEY": "pkcs1-public",
};

/** OTHER_LABELS describes blocks inspect recognises but does not decode. */
export const OTHER_LABELS: Readonly<Record<string, string>> = {
  "EC PARAMETERS": "EC curve parameters (written by `openssl ecparam`; not a key)",
  "X509 CRL": "a certificate revocation list (not decoded)",
  PKCS7: "a PKCS#7 bundle (not decoded; `openssl pkcs7 -print_certs` extracts its certificates)",
  CMS: "a CMS message (not decoded)",
  "DH PARAMETERS": "Diffie-Hellman parameters (not a key)",
  "OPENSSH PRIVATE KEY": "an OpenSSH private key (not decoded; `ssh-keygen -p -m PKCS8 -f FILE` converts it to PKCS#8)",
  "ENCRYPTED PRIVATE KEY INFO": "an encrypted private key in an unusual wrapper (not decoded)",
};

/** PKCS12 describes a PKCS#12 (PFX) bundle, which inspect recognises by its outline but does not open (it needs the password). */
export const PKCS12 =
  "a PKCS#12 bundle (not decoded; use openssl pkcs12 -in FILE -nodes to extract it; OpenSSL 3 needs -legacy for bundles made with RC2 by older tools)";

// PKCS#7 content types a PFX's authSafe may carry: data (password integrity) or signedData (RFC 7292 4).
const PKCS7_DATA = Buffer.from("06092a864886f70d010701", "hex");
const PKCS7_SIGNED_DATA = Buffer.from("06092a864886f70d010702", "hex");

/**
 * isPkcs12 tells whether DER is a PFX (RFC 7292): SEQUENCE { version INTEGER 3, authSafe
 * ContentInfo (data or signedData), macData optional }. `openssl pkcs12 -export` writes it.
 */
export function isPkcs12(der: Buffer): boolean {
  try {
    const top = readTlv(der, 0);
    if (top.tag !== TAG.sequence) return false;
    const [version, authSafe, ...rest] = children(der, top);
    if (
      version?.tag !== TAG.integer ||
      authSafe?.tag !== TAG.sequence ||
      rest.length > 1 ||
      rest.some((t) => t.tag !== TAG.sequence)
    )
      return false;
    if (!bytesOf(der, version).equals(Buffer.from([TAG.integer, 1, 3]))) return false;
    const type = children(der, authSafe)[0];
    const oid = type === undefined ? undefined : bytesOf(der, type);
    return oid !== undefined && (oid.equals(PKCS7_DATA) || oid.equals(PKCS7_SIGNED_DATA));
  } catch {
    return false;
  }
}

/**
 * shapeOf tells what a complete DER object is by its outline, or undefined. Only the outline is
 * read (tags of the top element's children); the decoders judge the rest.
 */
export function shapeOf(der: Buffer): Shape | undefined {
  try {
    const top = readTlv(der, 0);
    if (top.tag !== TAG.sequence) return undefined;
    const parts = children(der, top);
    const tags = parts.map((p) => p.tag);
    const [a, b, c] = tags;
    if (tags.length === 3 && a === TAG.sequence && b === TAG.sequence && c === TAG.bitString) {
      // TBSCertificate starts with [0] version (v3) or has at least six fields (v1);
      // CertificationRequestInfo is version, subject, key, [0] attributes.
      const inner = children(der, parts[0]!).map((p) => p.tag);
      if (inner[0] === 0xa0 || inner.length >= 6) return "certificate";
      if (inner[0] === TAG.integer && inner[1] === TAG.sequence && inner[2] === TAG.sequence) return "csr";
      return undefined;
    }
    if (tags.length === 2 && a === TAG.sequence && b === TAG.bitString) return "spki";
    if (tags.length === 2 && a === TAG.sequence && b === TAG.octetString) return "encrypted-pkcs8";
    if (a === TAG.integer && b === TAG.sequence && c === TAG.octetString) return "pkcs8";
    if (a === TAG.integer && b === TAG.octetString && tags.slice(2).every((t) => t === 0xa0 || t === 0xa1))
      return "sec1";
    if (tags.length >= 9 && tags.every((t) => t === TAG.integer)) return "pkcs1-private";
    if (tags.length === 2 && a === TAG.integer && b === TAG.integer) return "pkcs1-public";
    return undefined;
  } catch {
    return undefined;
  }
}
