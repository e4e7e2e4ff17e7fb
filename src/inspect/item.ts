/**
 * Item: one thing found in an input, as plain data (what `--json` prints). An input yields one
 * item per PEM block or DER object, in order; a block that cannot be read is a `problem` item
 * and the other items of the input are still shown.
 */
import type { Code, Severity } from "../check/index.ts";

/** Where says where an item was found: a PEM block's BEGIN line, or a DER object's byte offset. */
export interface Where {
  /** index is the item's 1-based position in its input. */
  index: number;
  /** line of the BEGIN line (PEM input). */
  line: number | undefined;
  /** offset of the object's first byte (DER input). */
  offset: number | undefined;
  /** label of the PEM block, e.g. `CERTIFICATE`; undefined for DER input. */
  label: string | undefined;
}

/** KeyInfo describes a public key; a private key is described by its public half only. */
export interface KeyInfo {
  /** type in words: `ECDSA P-256`, `RSA 2048`, `Ed25519`. */
  type: string;
  /** algorithm: `ec`, `rsa`, `ed25519`, `ed448`, or the OID of anything else. */
  algorithm: string;
  /** bits: RSA modulus size, EC field size, 256 for Ed25519; 0 when unknown. */
  bits: number;
  curve: string | undefined;
  /** spkiSha256 is the SHA-256 of the SubjectPublicKeyInfo DER, colon hex as openssl prints it. */
  spkiSha256: string;
}

/** SanItem is one subject alternative name. */
export interface SanItem {
  type: "dns" | "ip" | "uri" | "email" | "other";
  value: string;
}

/** ExtensionItem is one extension with its criticality and, for known ones, its value in words. */
export interface ExtensionItem {
  oid: string;
  /** name for known extensions, e.g. `subjectAltName`; else the OID. */
  name: string;
  critical: boolean;
  value: string | undefined;
}

/** Identity is the certificate's identity: the one URI SAN, or why there is none. */
export interface Identity {
  uri: string | undefined;
  /** note says why `uri` is undefined: no URI SAN, or several. */
  note: string | undefined;
}

/** Validity is a certificate's validity judged at the time of inspection. */
export interface Validity {
  notBefore: Date;
  notAfter: Date;
  status: "valid" | "expired" | "not-yet-valid";
  /** daysLeft: whole days until notAfter; negative once expired. */
  daysLeft: number;
  /** text: `valid, 89 days left`, `expired 3 days ago`, `not yet valid: starts in 2 days`. */
  text: string;
}

/** ItemLint is a lint with its severity: a certificate's own lints, leaf-is-ca on the first certificate of a chain file that starts with a CA (links.ts), weak-key on a key. */
export interface ItemLint {
  code: Code;
  severity: Severity;
  message: string;
  /** change is what a corrected certificate needs (the fix). */
  change: string;
}

/** CaFacts are what a CA certificate may do. */
export interface CaFacts {
  /** pathLen: how many CAs may follow below it; undefined means no limit. */
  pathLen: number | undefined;
  /** keyCertSign: its keyUsage allows signing certificates (true when keyUsage is absent). */
  keyCertSign: boolean;
  cRLSign: boolean;
}

/** Requested is what a certificate or CSR asks for: names and usages. */
export interface Requested {
  sans: SanItem[];
  /** usage: `server`, `client`, `dual`, `any (no extendedKeyUsage)`, or `other: codeSigning`. */
  usage: string;
  keyUsage: string[] | undefined;
  extKeyUsage: string[] | undefined;
  identity: Identity;
  extensions: ExtensionItem[];
}

/** CertificateItem is a decoded certificate. */
export interface CertificateItem extends Where, Requested {
  kind: "certificate";
  version: number;
  subject: string;
  issuer: string;
  /** serial in upper-case hex as `openssl x509 -serial` prints it; `-` first when negative. */
  serial: string;
  signatureAlgorithm: string;
  key: KeyInfo;
  validity: Validity;
  /** sha256 of the certificate's DER, colon hex (`openssl x509 -fingerprint -sha256`). */
  sha256: string;
  /** ca: what the CA may do; undefined for a certificate that is not a CA. */
  ca: CaFacts | undefined;
  /** selfSigned: issuer and subject are the same name and its own key made the signature. */
  selfSigned: boolean;
  /** signedByNext: whether the next certificate of the same input signed it; undefined for the last. */
  signedByNext: boolean | undefined;
  lints: ItemLint[];
}

/** PrivateKeyItem is a private key, described by its public half; no private material is kept. */
export interface PrivateKeyItem extends Where {
  kind: "private-key";
  /** format: `PKCS#8`, `SEC1`, `PKCS#1`, `PKCS#8, encrypted`, `PEM-encrypted (legacy OpenSSL)`. */
  format: string;
  encrypted: boolean;
  /** encryption names the cipher of an encrypted key, e.g. `PBES2 (PBKDF2, aes-256-cbc)`. */
  encryption: string | undefined;
  /** key is undefined for an encrypted key (its type is sealed with it). */
  key: KeyInfo | undefined;
  /** lints: weak-key when the key is too weak or too large for TLS peers (none for an encrypted key). */
  lints: ItemLint[];
  /** matches lists the certificates given whose public key is this key's; undefined when none was given. */
  matches: string[] | undefined;
}

/** PublicKeyItem is a bare public key. */
export interface PublicKeyItem extends Where {
  kind: "public-key";
  /** format: `SPKI` or `PKCS#1`. */
  format: string;
  key: KeyInfo;
  /** lints: weak-key when the key is too weak or too large for TLS peers. */
  lints: ItemLint[];
  matches: string[] | undefined;
}

/** CsrItem is a certificate signing request (PKCS#10). */
export interface CsrItem extends Where, Requested {
  kind: "csr";
  subject: string;
  key: KeyInfo;
  signatureAlgorithm: string;
  /** signature: `valid`, `invalid`, or `not checked (...)` for algorithms node:crypto cannot verify plainly. */
  signature: string;
  /** attributes other than extensionRequest, by name or OID. */
  attributes: string[];
  matches: string[] | undefined;
}

/** OtherItem is a PEM block inspect recognises but does not decode (EC PARAMETERS, X509 CRL, ...). */
export interface OtherItem extends Where {
  kind: "other";
  description: string;
}

/** ProblemItem is a block or object that could not be read, and exactly why. */
export interface ProblemItem extends Where {
  kind: "problem";
  /** message is a sentence with its place first: `line 12: the CERTIFICATE block is not valid base64 ...`. */
  message: string;
}

/** Item is anything found in an input. */
export type Item = CertificateItem | PrivateKeyItem | PublicKeyItem | CsrItem | OtherItem | ProblemItem;

/** Inspection is everything found in one input. */
export interface Inspection {
  /** name: the path as given, or `-` for stdin. */
  name: string;
  /** error: why the input could not be read at all (missing, a directory); then `items` is empty. */
  error: string | undefined;
  items: Item[];
  /** notes about the input as a whole: a chain in the wrong order, a missing link. */
  notes: string[];
}
