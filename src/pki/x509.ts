/**
 * Structural decoding of X.509 certificates, including ones mtlskit did not write (imported CAs,
 * files named in the manifest, whatever `inspect` is given). SANs, usages and constraints are
 * read from the DER structure, never from Node's `subjectaltname` string (Node CVE-2021-44532).
 *
 * Why hand-written over der.ts rather than @peculiar/asn1-x509: `check` decodes every
 * certificate of a cluster, and on the 2-core reference machine @peculiar took 0.7 ms per
 * certificate against 0.08 ms for Node's own signature verification underneath it (10,000
 * services would spend 7 s in the decoder alone). This decoder reads only what mtlskit judges
 * and takes about 0.02 ms. test/x509.test.ts checks it against @peculiar/asn1-x509 and openssl
 * on certificates from both, including ones crafted with unusual encodings.
 */
import { isUtf8 } from "node:buffer";
import { DecodeError } from "../errors.ts";
import { readCertFields, type CertFields } from "./cert.ts";
import { bytesOf, children, contentsOf, readTlv, TAG, type Tlv } from "./der.ts";
import { formatIp } from "./ip.ts";
import { KEY_TYPES, type KeyTypeName } from "./keys.ts";
import { EXTENSION_NAMES, NAME_ATTRIBUTE_SHORT } from "./oids.ts";
import { EXT_KEY_USAGE_OID, type ExtKeyUsageName } from "./profiles.ts";

/** KeyUsageName names the nine KeyUsage bits of RFC 5280 4.2.1.3, in bit order. */
export type KeyUsageName =
  | "digitalSignature"
  | "contentCommitment"
  | "keyEncipherment"
  | "dataEncipherment"
  | "keyAgreement"
  | "keyCertSign"
  | "cRLSign"
  | "encipherOnly"
  | "decipherOnly";

/** KEY_USAGE_NAMES lists KeyUsageName by bit number. */
export const KEY_USAGE_NAMES: readonly KeyUsageName[] = [
  "digitalSignature",
  "contentCommitment",
  "keyEncipherment",
  "dataEncipherment",
  "keyAgreement",
  "keyCertSign",
  "cRLSign",
  "encipherOnly",
  "decipherOnly",
];

/** SanEntry is one subject alternative name with its type; `ip` values are canonical text (RFC 5952). */
export type SanEntry =
  | { type: "dns"; value: string }
  | { type: "ip"; value: string; bytes: Buffer }
  | { type: "uri"; value: string }
  | { type: "email"; value: string }
  | { type: "other"; value: string };

/** PublicKeyInfo describes a certificate's public key. */
export interface PublicKeyInfo {
  /** algorithm: `ec`, `rsa`, `ed25519`, `ed448`, or the OID of anything else. */
  algorithm: string;
  /** curve of an EC key: `P-256`, `P-384`, `P-521`, or the curve's OID. */
  curve: string | undefined;
  /** bits: the RSA modulus size, the EC field size, 256 for Ed25519, 456 for Ed448, 0 when unknown. */
  bits: number;
  /** keyType is the KEY_TYPES row when mtlskit issues keys of this kind. */
  keyType: KeyTypeName | undefined;
}

/** SignatureAlgorithmInfo names a certificate's signature algorithm. */
export interface SignatureAlgorithmInfo {
  oid: string;
  /** name such as `ecdsa-with-SHA256`, or the OID when unknown. */
  name: string;
  /** hash for node:crypto verify: `sha256`, ..., null for EdDSA, undefined when unknown (RSASSA-PSS, others). */
  hash: string | null | undefined;
}

/** ExtensionInfo is one extension as present in the certificate. */
export interface ExtensionInfo {
  oid: string;
  /** name for known extensions, e.g. `subjectAltName`. */
  name: string | undefined;
  critical: boolean;
}

/** CertInfo is a decoded certificate in plain terms. */
export interface CertInfo {
  /** version: 1, 2 or 3. */
  version: number;
  /**
   * subject and issuer as RFC 4514 strings, as `openssl x509 -nameopt RFC2253` writes them but
   * with ", " between RDNs: `CN=a+UID=b, O=x\, y` (most specific RDN first, a multi-valued RDN's
   * attributes joined by "+", specials escaped, a non-string value as `#` and its DER in hex).
   */
  subject: string;
  issuer: string;
  /** subjectAttributes maps short attribute names (CN, O, ...) to their first value, unescaped. */
  subjectAttributes: Record<string, string>;
  /** serialHex is the serial's magnitude in hex (no sign octet). */
  serialHex: string;
  /** serialNegative is true when the serial's DER INTEGER is negative. */
  serialNegative: boolean;
  /** serialBits is the bit length of the serial's magnitude. */
  serialBits: number;
  notBefore: Date;
  notAfter: Date;
  signatureAlgorithm: SignatureAlgorithmInfo;
  publicKey: PublicKeyInfo;
  isCA: boolean;
  pathLen: number | undefined;
  basicConstraintsCritical: boolean | undefined;
  /** keyUsage is undefined when the extension is absent. */
  keyUsage: KeyUsageName[] | undefined;
  keyUsageCritical: boolean | undefined;
  /** extKeyUsage lists known purposes by name and unknown ones by OID; undefined when absent. */
  extKeyUsage: (ExtKeyUsageName | string)[] | undefined;
  sans: SanEntry[];
  subjectKeyId: string | undefined;
  authorityKeyId: string | undefined;
  /** extensions in certificate order. */
  extensions: ExtensionInfo[];
}

const EKU_NAMES: Record<string, string> = {
  ...Object.fromEntries(Object.entries(EXT_KEY_USAGE_OID).map(([k, v]) => [v, k])),
  "1.3.6.1.5.5.7.3.3": "codeSigning",
  "1.3.6.1.5.5.7.3.4": "emailProtection",
  "1.3.6.1.5.5.7.3.8": "timeStamping",
  "1.3.6.1.5.5.7.3.9": "OCSPSigning",
  "2.5.29.37.0": "anyExtendedKeyUsage",
};

/** SIGNATURE_ALGORITHMS maps signature OIDs to names and the hash node:crypto verifies with. */
const SIGNATURE_ALGORITHMS: Record<string, { name: string; hash: string | null | undefined }> = {
  "1.2.840.10045.4.3.2": { name: "ecdsa-with-SHA256", hash: "sha256" },
  "1.2.840.10045.4.3.3": { name: "ecdsa-with-SHA384", hash: "sha384" },
  "1.2.840.10045.4.3.4": { name: "ecdsa-with-SHA512", hash: "sha512" },
  "1.2.840.10045.4.1": { name: "ecdsa-with-SHA1", hash: "sha1" },
  "1.2.840.113549.1.1.11": { name: "sha256WithRSAEncryption", hash: "sha256" },
  "1.2.840.113549.1.1.12": { name: "sha384WithRSAEncryption", hash: "sha384" },
  "1.2.840.113549.1.1.13": { name: "sha512WithRSAEncryption", hash: "sha512" },
  "1.2.840.113549.1.1.14": { name: "sha224WithRSAEncryption", hash: "sha224" },
  "1.2.840.113549.1.1.5": { name: "sha1WithRSAEncryption", hash: "sha1" },
  "1.2.840.113549.1.1.4": { name: "md5WithRSAEncryption", hash: "md5" },
  "1.2.840.113549.1.1.10": { name: "RSASSA-PSS", hash: undefined },
  "1.3.101.112": { name: "Ed25519", hash: null },
  "1.3.101.113": { name: "Ed448", hash: null },
};

const CURVES: Record<string, { name: string; bits: number }> = {
  "1.2.840.10045.3.1.7": { name: "P-256", bits: 256 },
  "1.3.132.0.34": { name: "P-384", bits: 384 },
  "1.3.132.0.35": { name: "P-521", bits: 521 },
};

/** decodeOid renders OBJECT IDENTIFIER contents in dotted form. */
export function decodeOid(bytes: Uint8Array): string {
  if (bytes.length === 0) throw new DecodeError("der: empty OBJECT IDENTIFIER");
  const arcs: number[] = [];
  let v = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (v === 0 && b === 0x80) throw new DecodeError("der: non-minimal OBJECT IDENTIFIER arc");
    v = v * 128 + (b & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER / 128) throw new DecodeError("der: OBJECT IDENTIFIER arc too large");
    if (!(b & 0x80)) {
      if (arcs.length === 0) arcs.push(v < 40 ? 0 : v < 80 ? 1 : 2, v < 80 ? v % 40 : v - 80);
      else arcs.push(v);
      v = 0;
    } else if (i === bytes.length - 1) throw new DecodeError("der: truncated OBJECT IDENTIFIER");
  }
  return arcs.join(".");
}

function expect(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new DecodeError(`${what} has the wrong type`);
  return t;
}

const oidAt = (der: Uint8Array, t: Tlv | undefined, what: string) =>
  decodeOid(contentsOf(der, expect(t, TAG.oid, what)));

/** ONE_OCTET_STRINGS: string types read one octet per character (Latin-1), as OpenSSL reads them (and @peculiar those it knows). */
const ONE_OCTET_STRINGS = new Set([0x12, 0x13, 0x14, 0x15, 0x16, 0x19, 0x1a, 0x1b]); // Numeric, Printable, Teletex, Videotex, IA5, Graphic, Visible, General

/**
 * attributeValue reads a name attribute's value to text: a string type's characters, or `#` and
 * the hex of the whole DER element for anything else (RFC 4514 2.4, as OpenSSL prints it).
 */
function attributeValue(der: Uint8Array, t: Tlv): { text: string; isString: boolean } {
  const c = contentsOf(der, t);
  switch (t.tag) {
    case 0x0c: // UTF8String
      if (!isUtf8(c)) throw new DecodeError("a UTF8String is not valid UTF-8");
      return { text: c.toString("utf8"), isString: true };
    case 0x1e: // BMPString: UTF-16BE
      if (c.length % 2 !== 0) throw new DecodeError("a BMPString has an odd number of octets");
      return { text: Buffer.from(c).swap16().toString("utf16le"), isString: true };
    case 0x1c: {
      // UniversalString: UTF-32BE
      if (c.length % 4 !== 0) throw new DecodeError("a UniversalString's length is not a multiple of 4");
      let text = "";
      for (let i = 0; i < c.length; i += 4) {
        const cp = c.readUInt32BE(i);
        if (cp > 0x10ffff) throw new DecodeError("a UniversalString holds a character past U+10FFFF");
        text += String.fromCodePoint(cp);
      }
      return { text, isString: true };
    }
    default:
      if (ONE_OCTET_STRINGS.has(t.tag)) return { text: c.toString("latin1"), isString: true };
      if (t.tag & 0x20) children(der, t); // a constructed value must hold whole elements
      return { text: `#${bytesOf(der, t).toString("hex").toUpperCase()}`, isString: false };
  }
}

/** escapeValue escapes a string value as RFC 4514 2.4 and OpenSSL's esc_2253 and esc_ctrl do. */
function escapeValue(v: string): string {
  if (!/[\\"+,;<>\x00-\x1f\x7f]|^[# ]| $/.test(v)) return v;
  const trail = v.endsWith(" ") ? "\\ " : "";
  const body = trail ? v.slice(0, -1) : v;
  const lead = body.startsWith("#") || body.startsWith(" ") ? "\\" : "";
  return (
    lead +
    body
      .replace(/[\\"+,;<>]/g, "\\$&")
      .replace(/[\x00-\x1f\x7f]/g, (ch) => `\\${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`) +
    trail
  );
}

/** Rdn is one RelativeDistinguishedName: its attributes as [short name, value text, value escaped]. */
type Rdn = [string, string, string][];

function nameRdns(der: Uint8Array): Rdn[] {
  const top = readTlv(der, 0);
  const out: Rdn[] = [];
  for (const rdnT of children(der, expect(top, TAG.sequence, "Name"))) {
    const rdn: Rdn = [];
    for (const atv of children(der, expect(rdnT, TAG.set, "RelativeDistinguishedName"))) {
      const parts = children(der, expect(atv, TAG.sequence, "AttributeTypeAndValue"));
      if (parts.length !== 2) throw new DecodeError("an AttributeTypeAndValue is a type and one value");
      const o = oidAt(der, parts[0], "attribute type");
      const v = attributeValue(der, parts[1]!);
      rdn.push([NAME_ATTRIBUTE_SHORT[o] ?? o, v.text, v.isString ? escapeValue(v.text) : v.text]);
    }
    if (rdn.length === 0) throw new DecodeError("a RelativeDistinguishedName is empty");
    out.push(rdn);
  }
  return out;
}

/** formatName writes RFC 4514 text: most specific RDN first, ", " between RDNs, "+" inside a multi-valued one. */
const formatName = (rdns: Rdn[]) =>
  rdns
    .map((rdn) => rdn.map(([k, , v]) => `${k}=${v}`).join("+"))
    .reverse()
    .join(", ");

/** boolAt reads a BOOLEAN (readTlv has checked it is one octet). */
const boolAt = (der: Uint8Array, t: Tlv | undefined, what: string): boolean =>
  contentsOf(der, expect(t, TAG.boolean, what))[0] !== 0;

/** isMinimal tells whether INTEGER contents are minimal two's complement (X.690 8.3.2). */
const isMinimal = (c: Uint8Array) =>
  c.length > 0 && !(c.length > 1 && ((c[0] === 0 && c[1]! < 0x80) || (c[0] === 0xff && c[1]! >= 0x80)));

/** serialOf reads the serial's sign and magnitude from its INTEGER contents. */
function serialOf(c: Buffer): { hex: string; negative: boolean; bits: number } {
  if (!isMinimal(c)) throw new DecodeError("serialNumber is not a minimal INTEGER");
  const negative = (c[0]! & 0x80) !== 0;
  let m = c;
  if (negative) {
    // The magnitude of a negative two's complement number: invert and add one.
    m = Buffer.alloc(c.length);
    let carry = 1;
    for (let i = c.length - 1; i >= 0; i--) {
      const v = (~c[i]! & 0xff) + carry;
      m[i] = v & 0xff;
      carry = v >> 8;
    }
  }
  let i = 0;
  while (i < m.length - 1 && m[i] === 0) i++;
  m = m.subarray(i);
  return { hex: m.toString("hex"), negative, bits: m[0] === 0 ? 0 : (m.length - 1) * 8 + (32 - Math.clz32(m[0]!)) };
}

/** smallUint reads a non-negative INTEGER that fits 31 bits (pathLenConstraint). */
function smallUint(der: Uint8Array, t: Tlv | undefined, what: string): number {
  const c = contentsOf(der, expect(t, TAG.integer, what));
  if (!isMinimal(c)) throw new DecodeError(`${what} is not a minimal INTEGER`);
  if (c[0]! & 0x80) throw new DecodeError(`${what} is negative`);
  if (c.length > 4) throw new DecodeError(`${what} is too large`);
  return c.reduce((n, x) => n * 256 + x, 0);
}

/** only reads the single element that must fill `buf` (an extension's value, an RSA key). */
function only(buf: Uint8Array, tag: number, what: string): Tlv {
  if (buf.length === 0) throw new DecodeError(`${what} is missing`);
  const t = readTlv(buf, 0);
  if (t.end !== buf.length) throw new DecodeError(`${what} is followed by ${buf.length - t.end} stray octets`);
  return expect(t, tag, what);
}

function publicKeyOf(spki: Buffer): PublicKeyInfo {
  const parts = children(spki, readTlv(spki, 0));
  const [alg, bits] = parts;
  if (parts.length !== 2) throw new DecodeError("a SubjectPublicKeyInfo is an algorithm and a key");
  const [algOid, params] = children(spki, expect(alg, TAG.sequence, "AlgorithmIdentifier"));
  const o = oidAt(spki, algOid, "public key algorithm");
  const keyBits = contentsOf(spki, expect(bits, TAG.bitString, "subjectPublicKey"));
  if (keyBits[0] !== 0) throw new DecodeError("subjectPublicKey is empty or has unused bits");
  const key = keyBits.subarray(1);
  if (o === "1.2.840.10045.2.1") {
    if (params && params.tag !== TAG.oid && params.tag !== TAG.sequence)
      throw new DecodeError("EC parameters are neither a named curve nor explicit parameters");
    if (params?.tag === TAG.sequence) children(spki, params);
    const curveOid =
      params?.tag === TAG.oid
        ? decodeOid(contentsOf(spki, params))
        : params
          ? "(explicit parameters)"
          : "(no parameters)";
    const c = CURVES[curveOid];
    const keyType = c?.name === "P-256" ? "ecdsa-p256" : c?.name === "P-384" ? "ecdsa-p384" : undefined;
    return { algorithm: "ec", curve: c?.name ?? curveOid, bits: c?.bits ?? 0, keyType };
  }
  if (o === "1.2.840.113549.1.1.1") {
    const [n] = children(key, only(key, TAG.sequence, "RSAPublicKey"));
    const m = contentsOf(key, expect(n, TAG.integer, "RSA modulus"));
    let i = 0;
    while (i < m.length && m[i] === 0) i++;
    const size = i === m.length ? 0 : (m.length - i - 1) * 8 + (32 - Math.clz32(m[i]!));
    const name = `rsa-${size}`;
    return {
      algorithm: "rsa",
      curve: undefined,
      bits: size,
      keyType: name in KEY_TYPES ? (name as KeyTypeName) : undefined,
    };
  }
  if (o === "1.3.101.112") return { algorithm: "ed25519", curve: undefined, bits: 256, keyType: "ed25519" };
  if (o === "1.3.101.113") return { algorithm: "ed448", curve: undefined, bits: 456, keyType: undefined };
  return { algorithm: o, curve: undefined, bits: 0, keyType: undefined };
}

function generalName(der: Uint8Array, t: Tlv): SanEntry {
  const c = contentsOf(der, t);
  switch (t.tag) {
    case 0x82:
      return { type: "dns", value: c.toString("latin1") };
    case 0x86:
      return { type: "uri", value: c.toString("latin1") };
    case 0x81:
      return { type: "email", value: c.toString("latin1") };
    case 0x87:
      return c.length === 4 || c.length === 16
        ? { type: "ip", value: formatIp(c), bytes: Buffer.from(c) }
        : { type: "other", value: `IP address of ${c.length} octets` };
    case 0xa0: {
      // otherName: type-id and an [0] EXPLICIT value
      const [typeId, value, ...rest] = children(der, t);
      oidAt(der, typeId, "otherName type-id");
      if (value?.tag !== 0xa0 || rest.length > 0 || children(der, value).length !== 1)
        throw new DecodeError("an otherName is a type-id and an [0] value");
      return { type: "other", value: "otherName" };
    }
    case 0xa4: {
      // directoryName: [4] EXPLICIT Name
      const inner = children(der, t);
      if (inner.length !== 1) throw new DecodeError("a directoryName holds one Name");
      nameRdns(bytesOf(der, inner[0]!));
      return { type: "other", value: "directoryName" };
    }
    case 0x88:
      return { type: "other", value: "registeredID" };
    case 0xa3: // x400Address, ediPartyName: not read, but they must hold whole elements
    case 0xa5:
      children(der, t);
      return { type: "other", value: `GeneralName tag 0x${t.tag.toString(16)}` };
    default:
      throw new DecodeError(`a GeneralName has the tag 0x${t.tag.toString(16)}, which is none of RFC 5280's`);
  }
}

/**
 * EXTENSION_DECODERS read the extensions mtlskit judges into CertInfo. Each value must be exactly
 * one DER element of its type; every other extension's value stays opaque, as it does to OpenSSL
 * and @peculiar/asn1-x509.
 */
const EXTENSION_DECODERS: Record<string, (v: Buffer, info: CertInfo, critical: boolean) => void> = {
  basicConstraints(v, info, critical) {
    const parts = children(v, only(v, TAG.sequence, "BasicConstraints"));
    let i = 0;
    if (parts[i]?.tag === TAG.boolean) info.isCA = boolAt(v, parts[i++], "cA");
    if (parts[i]) info.pathLen = smallUint(v, parts[i++], "pathLenConstraint");
    if (i !== parts.length) throw new DecodeError("BasicConstraints holds more than cA and pathLenConstraint");
    info.basicConstraintsCritical = critical;
  },
  keyUsage(v, info, critical) {
    const c = contentsOf(v, only(v, TAG.bitString, "KeyUsage"));
    const unused = c[0];
    if (unused === undefined || unused > 7 || (c.length === 1 && unused !== 0))
      throw new DecodeError("KeyUsage is not a valid BIT STRING");
    // The unused bits of the last octet are masked off, as OpenSSL and @peculiar do.
    const at = (j: number) => (c[j + 1] ?? 0) & (j + 2 === c.length ? 0xff << unused : 0xff);
    info.keyUsage = KEY_USAGE_NAMES.filter((_, i) => (at(i >> 3) & (0x80 >> (i & 7))) !== 0);
    info.keyUsageCritical = critical;
  },
  extKeyUsage(v, info) {
    info.extKeyUsage = children(v, only(v, TAG.sequence, "ExtKeyUsageSyntax")).map((t) => {
      const u = oidAt(v, t, "KeyPurposeId");
      return EKU_NAMES[u] ?? u;
    });
  },
  subjectAltName(v, info) {
    info.sans = children(v, only(v, TAG.sequence, "GeneralNames")).map((t) => generalName(v, t));
  },
  subjectKeyIdentifier(v, info) {
    info.subjectKeyId = contentsOf(v, only(v, TAG.octetString, "SubjectKeyIdentifier")).toString("hex");
  },
  authorityKeyIdentifier(v, info) {
    // keyIdentifier [0], authorityCertIssuer [1] GeneralNames, authorityCertSerialNumber [2], each optional, in order.
    let last = -1;
    for (const t of children(v, only(v, TAG.sequence, "AuthorityKeyIdentifier"))) {
      const n = t.tag === 0x80 ? 0 : t.tag === 0xa1 ? 1 : t.tag === 0x82 ? 2 : -1;
      if (n <= last)
        throw new DecodeError(`AuthorityKeyIdentifier has an unexpected field (tag 0x${t.tag.toString(16)})`);
      last = n;
      if (n === 0) info.authorityKeyId = contentsOf(v, t).toString("hex");
      else if (n === 1) for (const g of children(v, t)) generalName(v, g);
      else if (!isMinimal(contentsOf(v, t)))
        throw new DecodeError("authorityCertSerialNumber is not a minimal INTEGER");
    }
  },
};

/** decodeFields decodes what `readCertFields` left as bytes: names, key, extensions. */
export function decodeFields(f: CertFields): CertInfo {
  const tbs = f.tbs;
  const fieldTlvs = children(tbs, readTlv(tbs, 0));
  const hasVersion = fieldTlvs[0]?.tag === 0xa0;
  let version = 1;
  if (hasVersion) {
    const inner = children(tbs, fieldTlvs[0]!);
    if (inner.length !== 1) throw new DecodeError("version is not one INTEGER");
    const v = contentsOf(tbs, expect(inner[0], TAG.integer, "version"));
    version = v.length === 1 ? v[0]! + 1 : 0;
    if (version < 1 || version > 3) throw new DecodeError("version is not 1, 2 or 3");
  }
  const sigOid = oidAt(
    f.signatureAlgorithm,
    children(f.signatureAlgorithm, readTlv(f.signatureAlgorithm, 0))[0],
    "signature algorithm",
  );
  const sig = SIGNATURE_ALGORITHMS[sigOid];
  const subjectRdns = nameRdns(f.subject);
  const subjectAttributes: Record<string, string> = {};
  for (const rdn of subjectRdns) for (const [k, v] of rdn) subjectAttributes[k] ??= v;
  const serial = serialOf(f.serial);

  const info: CertInfo = {
    version,
    subject: formatName(subjectRdns),
    issuer: formatName(nameRdns(f.issuer)),
    subjectAttributes,
    serialHex: serial.hex,
    serialNegative: serial.negative,
    serialBits: serial.bits,
    notBefore: f.notBefore,
    notAfter: f.notAfter,
    signatureAlgorithm: { oid: sigOid, name: sig?.name ?? sigOid, hash: sig?.hash },
    publicKey: publicKeyOf(f.spki),
    isCA: false,
    pathLen: undefined,
    basicConstraintsCritical: undefined,
    keyUsage: undefined,
    keyUsageCritical: undefined,
    extKeyUsage: undefined,
    sans: [],
    subjectKeyId: undefined,
    authorityKeyId: undefined,
    extensions: [],
  };

  const extsWrapper = fieldTlvs.find((t) => t.tag === 0xa3);
  if (!extsWrapper) return info;
  const wrapped = children(tbs, extsWrapper);
  if (wrapped.length !== 1) throw new DecodeError("[3] does not hold exactly one Extensions SEQUENCE");
  const seen = new Set<string>();
  for (const e of children(tbs, expect(wrapped[0], TAG.sequence, "Extensions"))) {
    const parts = children(tbs, expect(e, TAG.sequence, "Extension"));
    const o = oidAt(tbs, parts[0], "extension id");
    const name = EXTENSION_NAMES[o];
    const label = `extension ${name ?? o}`;
    if (parts.length < 2 || parts.length > 3) throw new DecodeError(`${label} is not extnID, critical, extnValue`);
    if (seen.has(o)) throw new DecodeError(`${label} appears twice (RFC 5280 4.2)`);
    seen.add(o);
    const critical = parts.length === 3 ? boolAt(tbs, parts[1], `${label} critical`) : false;
    const value = contentsOf(tbs, expect(parts[parts.length - 1], TAG.octetString, `${label} value`));
    info.extensions.push({ oid: o, name, critical });
    const decode = name === undefined ? undefined : EXTENSION_DECODERS[name];
    if (!decode) continue;
    try {
      decode(value, info, critical);
    } catch (err) {
      throw new DecodeError(`${label}: ${(err as Error).message.replace(/^der: /, "")}`, { cause: err });
    }
  }
  return info;
}

/** decodeCertificate decodes a DER certificate; it throws `x509: ...` naming what is malformed. */
export function decodeCertificate(der: Uint8Array): CertInfo {
  let fields: CertFields;
  try {
    fields = readCertFields(Buffer.isBuffer(der) ? der : Buffer.from(der.buffer, der.byteOffset, der.byteLength));
  } catch (e) {
    throw new DecodeError(`x509: not a valid certificate: ${(e as Error).message}`, { cause: e });
  }
  try {
    return decodeFields(fields);
  } catch (e) {
    throw new DecodeError(`x509: malformed certificate: ${(e as Error).message.replace(/^der: /, "")}`, { cause: e });
  }
}
