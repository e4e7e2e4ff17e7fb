/**
 * The few fields of a Certificate that issuance and planning need, read straight from its DER:
 * the TBSCertificate bytes, serial, validity and public key. Planning compares an existing
 * certificate with the one it would issue by re-encoding the spec with these fields.
 */
import { verify, type KeyObject } from "node:crypto";
import { DecodeError } from "../errors.ts";
import { bytesOf, children, contentsOf, readTlv, TAG, type Tlv } from "./der.ts";
import { KEY_TYPES, type KeyTypeName } from "./keys.ts";

/** CertFields is what `readCertFields` extracts. */
export interface CertFields {
  der: Buffer;
  tbs: Buffer;
  /** serial is the INTEGER's magnitude bytes. */
  serial: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** issuer and subject are the Name DERs. */
  issuer: Buffer;
  subject: Buffer;
  spki: Buffer;
  signatureAlgorithm: Buffer;
  signature: Buffer;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** parseTime reads a UTCTime or GeneralizedTime in RFC 5280's form (Zulu, seconds, no fraction), refusing impossible dates. */
export function parseTime(tag: number, text: string): Date {
  const m =
    tag === TAG.utcTime
      ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
      : tag === TAG.generalizedTime
        ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
        : null;
  if (!m) throw new DecodeError(`der: unsupported time ${JSON.stringify(text)}`);
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const fullYear = tag === TAG.utcTime ? year + (year < 50 ? 2000 : 1900) : year;
  const leap = fullYear % 4 === 0 && (fullYear % 100 !== 0 || fullYear % 400 === 0);
  const monthDays = month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1];
  if (monthDays === undefined || day < 1 || day > monthDays || hour > 23 || minute > 59 || second > 59)
    throw new DecodeError(`der: impossible time ${JSON.stringify(text)}`);
  // setUTCFullYear, not Date.UTC: Date.UTC reads the years 0 to 99 as 1900 to 1999.
  const d = new Date(Date.UTC(2000, month - 1, day, hour, minute, second));
  d.setUTCFullYear(fullYear);
  return d;
}

/** readCertFields decodes the outer structure of a Certificate (v1 to v3); it throws on malformed DER or misplaced fields. */
export function readCertFields(der: Buffer): CertFields {
  const top = readTlv(der, 0);
  if (top.tag !== TAG.sequence || top.end !== der.length)
    throw new DecodeError("der: not a single Certificate SEQUENCE");
  const parts = children(der, top);
  const [tbsT, algT, sigT] = parts;
  if (parts.length !== 3 || tbsT?.tag !== TAG.sequence || algT?.tag !== TAG.sequence || sigT?.tag !== TAG.bitString)
    throw new DecodeError(
      "der: a Certificate is a tbsCertificate SEQUENCE, a signatureAlgorithm SEQUENCE and a signature BIT STRING",
    );
  const f = children(der, tbsT);
  const off = f[0]?.tag === 0xa0 ? 1 : 0; // [0] version is optional (v1)
  const [serialT, sigAlgT, issuerT, validityT, subjectT, spkiT, ...rest] = f.slice(off);
  const isSeq = (t: Tlv | undefined): t is Tlv => t?.tag === TAG.sequence;
  if (
    serialT?.tag !== TAG.integer ||
    !isSeq(sigAlgT) ||
    !isSeq(issuerT) ||
    !isSeq(validityT) ||
    !isSeq(subjectT) ||
    !isSeq(spkiT)
  )
    throw new DecodeError("der: TBSCertificate is missing fields or has fields of the wrong type");
  // After the key: issuerUniqueID [1], subjectUniqueID [2], extensions [3], each optional, in that order.
  let last = 0;
  for (const t of rest) {
    const n = t.tag === 0x81 ? 1 : t.tag === 0x82 ? 2 : t.tag === 0xa3 ? 3 : 0;
    if (n <= last)
      throw new DecodeError(
        `der: TBSCertificate has an unexpected field (tag 0x${t.tag.toString(16)}) after subjectPublicKeyInfo`,
      );
    last = n;
  }
  const validity = children(der, validityT);
  const [nb, na] = validity;
  if (validity.length !== 2 || !nb || !na) throw new DecodeError("der: Validity needs notBefore and notAfter");
  // The signature algorithm: an OBJECT IDENTIFIER and optional parameters, the same inside and outside (as Go insists).
  const [id, ...params] = children(der, algT);
  if (id?.tag !== TAG.oid || params.length > 1)
    throw new DecodeError("der: an AlgorithmIdentifier is an OBJECT IDENTIFIER and optional parameters");
  if (!bytesOf(der, sigAlgT).equals(bytesOf(der, algT)))
    throw new DecodeError(
      "der: the signature algorithm inside the TBSCertificate differs from the one outside (RFC 5280 4.1.1.2)",
    );
  const sig = contentsOf(der, sigT);
  if (sig[0] !== 0) throw new DecodeError("der: the signature BIT STRING is empty or has unused bits");
  return {
    der,
    tbs: bytesOf(der, tbsT),
    serial: contentsOf(der, serialT),
    notBefore: parseTime(nb.tag, contentsOf(der, nb).toString("latin1")),
    notAfter: parseTime(na.tag, contentsOf(der, na).toString("latin1")),
    issuer: bytesOf(der, issuerT),
    subject: bytesOf(der, subjectT),
    spki: bytesOf(der, spkiT),
    signatureAlgorithm: bytesOf(der, algT),
    signature: sig.subarray(1),
  };
}

/** verifySignedBy tells whether `cert` carries a valid signature by `issuerKey` of `issuerType`. */
export function verifySignedBy(
  cert: Pick<CertFields, "signatureAlgorithm" | "tbs" | "signature">,
  issuerKey: KeyObject,
  issuerType: KeyTypeName,
): boolean {
  const kt = KEY_TYPES[issuerType];
  if (!cert.signatureAlgorithm.equals(kt.signatureAlgorithm)) return false;
  try {
    return verify(kt.hash ?? null, cert.tbs, issuerKey, cert.signature);
  } catch {
    return false;
  }
}
