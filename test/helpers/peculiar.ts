/**
 * Test helper: @peculiar/asn1-x509 as an independent judge of src/pki/x509.ts. Since x509.ts
 * decodes by hand over der.ts, the @peculiar packages are test-only devDependencies and this is
 * the only file that imports them. Nothing here uses mtlskit's own DER code or tables: names come
 * from @peculiar's constants, RFC 5280 and node:crypto, and the view below is built the way a
 * reader of @peculiar's objects would build it.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { AsnConvert, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes } from "@peculiar/asn1-schema";
import * as x from "@peculiar/asn1-x509";

/** PeculiarSan is one GeneralName as @peculiar reads it; `bytes` are an IP address's octets. */
export interface PeculiarSan {
  type: "dns" | "ip" | "uri" | "email" | "other";
  value: string;
  bytes?: Buffer;
}

/** PeculiarView is a certificate as @peculiar/asn1-x509 (plus node:crypto for the key) reads it. */
export interface PeculiarView {
  version: number;
  /** subject and issuer: RFC 4514 strings, most specific RDN first, ", " between RDNs, "+" inside one. */
  subject: string;
  issuer: string;
  /** subjectAttributes: the first value of each attribute, by short name (or OID). */
  subjectAttributes: Record<string, string>;
  /** serial is the signed value of the serialNumber INTEGER. */
  serial: bigint;
  notBefore: Date;
  notAfter: Date;
  signatureOid: string;
  /** publicKey is undefined when node:crypto refuses the key (the decoders under test do not validate keys). */
  publicKey: { algorithm: string; curve: string | undefined; bits: number } | undefined;
  isCA: boolean;
  pathLen: number | undefined;
  basicConstraintsCritical: boolean | undefined;
  /** keyUsage: RFC 5280 names in bit order (contentCommitment is @peculiar's nonRepudiation). */
  keyUsage: string[] | undefined;
  keyUsageCritical: boolean | undefined;
  /** extKeyUsage: RFC 5280 names of the purposes @peculiar knows, OIDs of the rest. */
  extKeyUsage: string[] | undefined;
  sans: PeculiarSan[];
  subjectKeyId: string | undefined;
  authorityKeyId: string | undefined;
  extensions: { oid: string; name: string | undefined; critical: boolean }[];
}

/** ATTRIBUTE is the short name OpenSSL prints for each name attribute type (RFC 4519, PKCS #9). */
const ATTRIBUTE: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.4": "SN",
  "2.5.4.5": "serialNumber",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.9": "street",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "2.5.4.12": "title",
  "2.5.4.42": "GN",
  "0.9.2342.19200300.100.1.1": "UID",
  "0.9.2342.19200300.100.1.25": "DC",
  "1.2.840.113549.1.9.1": "emailAddress",
};

/** EKU names the purposes by @peculiar's own constants. */
const EKU: Record<string, string> = {
  [x.id_kp_serverAuth]: "serverAuth",
  [x.id_kp_clientAuth]: "clientAuth",
  [x.id_kp_codeSigning]: "codeSigning",
  [x.id_kp_emailProtection]: "emailProtection",
  [x.id_kp_timeStamping]: "timeStamping",
  [x.id_kp_OCSPSigning]: "OCSPSigning",
  [x.anyExtendedKeyUsage]: "anyExtendedKeyUsage",
};

/** EXTENSION names the extensions by @peculiar's own constants. */
const EXTENSION: Record<string, string> = {
  [x.id_ce_basicConstraints]: "basicConstraints",
  [x.id_ce_keyUsage]: "keyUsage",
  [x.id_ce_extKeyUsage]: "extKeyUsage",
  [x.id_ce_subjectAltName]: "subjectAltName",
  [x.id_ce_subjectKeyIdentifier]: "subjectKeyIdentifier",
  [x.id_ce_authorityKeyIdentifier]: "authorityKeyIdentifier",
  [x.id_ce_certificatePolicies]: "certificatePolicies",
  [x.id_ce_cRLDistributionPoints]: "cRLDistributionPoints",
  [x.id_ce_nameConstraints]: "nameConstraints",
  [x.id_ce_issuerAltName]: "issuerAltName",
  [x.id_pe_authorityInfoAccess]: "authorityInfoAccess",
};

/** KEY_USAGE: RFC 5280 4.2.1.3 names of @peculiar's KeyUsageFlags (X.509 renamed nonRepudiation). */
const KEY_USAGE: [number, string][] = Object.entries(x.KeyUsageFlags)
  .filter((e): e is [string, number] => typeof e[1] === "number")
  .sort((a, b) => a[1] - b[1])
  .map(([n, flag]) => [flag, n === "nonRepudiation" ? "contentCommitment" : n]);

/** NamedCurve is ECParameters' namedCurve choice (RFC 5480 2.1.1), declared with @peculiar's decorators called as functions. */
class NamedCurve {
  namedCurve = "";
}
AsnProp({ type: AsnPropTypes.ObjectIdentifier })(NamedCurve.prototype, "namedCurve");
AsnType({ type: AsnTypeTypes.Choice })(NamedCurve);

/** NODE_CURVE maps node:crypto's curve names to the NIST names. */
const NODE_CURVE: Record<string, string> = { prime256v1: "P-256", secp384r1: "P-384", secp521r1: "P-521" };

/** escapeValue escapes a string value character by character as RFC 4514 2.4 (and OpenSSL's esc_2253, esc_ctrl) do. */
function escapeValue(v: string): string {
  const chars = [...v];
  return chars
    .map((c, i) => {
      const code = c.codePointAt(0)!;
      if (code < 0x20 || code === 0x7f) return `\\${code.toString(16).toUpperCase().padStart(2, "0")}`;
      const special =
        '\\"+,;<>'.includes(c) || (i === 0 && (c === "#" || c === " ")) || (i === chars.length - 1 && c === " ");
      return special ? `\\${c}` : c;
    })
    .join("");
}

/**
 * ONE_OCTET_STRINGS: X.680 string types @peculiar's AttributeValue has no choice for (Numeric,
 * Videotex, Graphic, Visible, General), so it hands them over as ANY; the view reads their
 * octets as text, one per character, as OpenSSL prints them.
 */
const ONE_OCTET_STRINGS = new Set([0x12, 0x15, 0x19, 0x1a, 0x1b]);

/** valueText is an attribute value's text: a string type's characters, or `#` and the DER of anything else. */
function valueText(v: x.AttributeValue): { text: string; isString: boolean } {
  if (v.anyValue === undefined) return { text: v.toString(), isString: true };
  // asn1js hands a NULL over as null.
  const der = v.anyValue === null ? Buffer.from([5, 0]) : Buffer.from(v.anyValue);
  if (ONE_OCTET_STRINGS.has(der[0]!))
    return { text: der.subarray(der[1]! < 0x80 ? 2 : 2 + (der[1]! & 0x7f)).toString("latin1"), isString: true };
  return { text: `#${der.toString("hex").toUpperCase()}`, isString: false };
}

function nameView(name: x.Name): { text: string; first: Record<string, string> } {
  const first: Record<string, string> = {};
  const rdns = name.map((rdn) =>
    rdn
      .map((atv) => {
        const type = ATTRIBUTE[atv.type] ?? atv.type;
        const value = valueText(atv.value);
        first[type] ??= value.text;
        return `${type}=${value.isString ? escapeValue(value.text) : value.text}`;
      })
      .join("+"),
  );
  return { text: rdns.reverse().join(", "), first };
}

function signedInteger(bytes: ArrayBuffer): bigint {
  const b = Buffer.from(bytes);
  if (b.length === 0) throw new Error("empty INTEGER");
  const unsigned = BigInt(`0x${b.toString("hex")}`);
  return b[0]! & 0x80 ? unsigned - (1n << BigInt(b.length * 8)) : unsigned;
}

function publicKeyView(spki: x.SubjectPublicKeyInfo): PeculiarView["publicKey"] {
  const algorithm = spki.algorithm.algorithm;
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(AsnConvert.serialize(spki)), format: "der", type: "spki" });
  } catch {
    return undefined;
  }
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case "ec": {
      const params = spki.algorithm.parameters;
      const curveOid = params ? AsnConvert.parse(params, NamedCurve).namedCurve : "(none)";
      const curve = NODE_CURVE[d.namedCurve ?? ""];
      return { algorithm: "ec", curve: curve ?? curveOid, bits: curve ? Number(curve.slice(2)) : 0 };
    }
    case "rsa":
      return { algorithm: "rsa", curve: undefined, bits: d.modulusLength ?? 0 };
    case "ed25519":
    case "ed448":
      // The public key's length in bits: 256 and 456, as OpenSSL's EVP_PKEY_get_bits says.
      return { algorithm: key.asymmetricKeyType, curve: undefined, bits: spki.subjectPublicKey.byteLength * 8 };
    default:
      return { algorithm, curve: undefined, bits: 0 };
  }
}

function sanView(g: x.GeneralName): PeculiarSan {
  if (g.dNSName !== undefined) return { type: "dns", value: g.dNSName };
  if (g.uniformResourceIdentifier !== undefined) return { type: "uri", value: g.uniformResourceIdentifier };
  if (g.rfc822Name !== undefined) return { type: "email", value: g.rfc822Name };
  if (g.iPAddress !== undefined) {
    // @peculiar's text of other lengths than 4, 8, 16 and 32 octets is their hex.
    if (/^[0-9a-f]*$/.test(g.iPAddress))
      return { type: "other", value: `IP address of ${g.iPAddress.length / 2} octets` };
    // The octets as @peculiar writes them back from its own text (a GeneralName [7] of at most 32 octets: a 2-octet header).
    const bytes = Buffer.from(AsnConvert.serialize(g)).subarray(2);
    return bytes.length === 4 || bytes.length === 16
      ? { type: "ip", value: g.iPAddress, bytes }
      : { type: "other", value: `IP address of ${bytes.length} octets` };
  }
  if (g.otherName !== undefined) return { type: "other", value: "otherName" };
  if (g.directoryName !== undefined) return { type: "other", value: "directoryName" };
  if (g.registeredID !== undefined) return { type: "other", value: "registeredID" };
  return { type: "other", value: "(another GeneralName)" };
}

/**
 * peculiarView decodes a DER certificate with @peculiar/asn1-x509, including the extensions
 * mtlskit judges; it throws whatever @peculiar throws on malformed input. `key: false` leaves
 * the key to @peculiar alone (its algorithm OID; no node:crypto), as bench/x509.bench.ts times it.
 */
export function peculiarView(der: Uint8Array, o: { key?: boolean } = {}): PeculiarView {
  const cert = AsnConvert.parse(der, x.Certificate);
  const tbs = cert.tbsCertificate;
  const exts = tbs.extensions ?? [];
  /** read parses the first extension `id` as `type` (a certificate with it twice is refused by the decoder under test). */
  const read = <T>(id: string, type: new () => T): { value: T; critical: boolean } | undefined => {
    const e = exts.find((e) => e.extnID === id);
    return e && { value: AsnConvert.parse(e.extnValue.buffer, type), critical: e.critical };
  };
  const bc = read(x.id_ce_basicConstraints, x.BasicConstraints);
  const ku = read(x.id_ce_keyUsage, x.KeyUsage);
  const flags = ku?.value.toNumber() ?? 0;
  const eku = read(x.id_ce_extKeyUsage, x.ExtendedKeyUsage);
  const san = read(x.id_ce_subjectAltName, x.SubjectAlternativeName);
  const ski = read(x.id_ce_subjectKeyIdentifier, x.SubjectKeyIdentifier);
  const akid = read(x.id_ce_authorityKeyIdentifier, x.AuthorityKeyIdentifier)?.value.keyIdentifier;
  const subject = nameView(tbs.subject);
  return {
    version: tbs.version + 1,
    subject: subject.text,
    issuer: nameView(tbs.issuer).text,
    subjectAttributes: subject.first,
    serial: signedInteger(tbs.serialNumber),
    notBefore: tbs.validity.notBefore.getTime(),
    notAfter: tbs.validity.notAfter.getTime(),
    signatureOid: cert.signatureAlgorithm.algorithm,
    publicKey:
      o.key === false
        ? { algorithm: tbs.subjectPublicKeyInfo.algorithm.algorithm, curve: undefined, bits: 0 }
        : publicKeyView(tbs.subjectPublicKeyInfo),
    isCA: bc?.value.cA ?? false,
    pathLen: bc?.value.pathLenConstraint,
    basicConstraintsCritical: bc?.critical,
    keyUsage: ku && KEY_USAGE.filter(([flag]) => (flags & flag) !== 0).map(([, n]) => n),
    keyUsageCritical: ku?.critical,
    extKeyUsage: eku && Array.from(eku.value, (id) => EKU[id] ?? id),
    sans: san ? Array.from(san.value, sanView) : [],
    subjectKeyId: ski && Buffer.from(ski.value.buffer).toString("hex"),
    authorityKeyId: akid && Buffer.from(akid.buffer).toString("hex"),
    extensions: Array.from(exts, (e) => ({ oid: e.extnID, name: EXTENSION[e.extnID], critical: e.critical })),
  };
}
