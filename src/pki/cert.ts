/**
 * The few fields of a Certificate that issuance and planning need, read straight from its DER:
 * the TBSCertificate bytes, serial, validity and public key. Planning compares an existing
 * certificate with the one it would issue by re-encoding the spec with these fields.
 */
import { verify, type KeyObject } from "node:crypto";
import { bytesOf, children, contentsOf, readTlv, TAG } from "./der.ts";
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

function parseTime(tag: number, text: string): Date {
  const m = (tag === TAG.utcTime ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/ : /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/).exec(text);
  if (!m) throw new Error(`der: unsupported time ${JSON.stringify(text)}`);
  let year = Number(m[1]);
  if (tag === TAG.utcTime) year += year < 50 ? 2000 : 1900;
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}

/** readCertFields decodes the outer structure of a v3 Certificate; it throws on malformed DER. */
export function readCertFields(der: Buffer): CertFields {
  const top = readTlv(der, 0);
  if (top.tag !== TAG.sequence || top.end !== der.length) throw new Error("der: not a single Certificate SEQUENCE");
  const [tbsT, algT, sigT] = children(der, top);
  if (!tbsT || !algT || !sigT) throw new Error("der: Certificate needs tbsCertificate, signatureAlgorithm, signature");
  const f = children(der, tbsT);
  const off = f[0]?.tag === 0xa0 ? 1 : 0; // [0] version is optional (v1)
  const [serialT, , issuerT, validityT, subjectT, spkiT] = f.slice(off);
  if (!serialT || !issuerT || !validityT || !subjectT || !spkiT) throw new Error("der: TBSCertificate is missing fields");
  const [nb, na] = children(der, validityT);
  if (!nb || !na) throw new Error("der: Validity needs notBefore and notAfter");
  const sig = contentsOf(der, sigT);
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
export function verifySignedBy(cert: CertFields, issuerKey: KeyObject, issuerType: KeyTypeName): boolean {
  const kt = KEY_TYPES[issuerType];
  if (!cert.signatureAlgorithm.equals(kt.signatureAlgorithm)) return false;
  try {
    return verify(kt.hash ?? null, cert.tbs, issuerKey, cert.signature);
  } catch {
    return false;
  }
}
