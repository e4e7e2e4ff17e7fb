/**
 * Certificate revocation lists (RFC 5280 section 5): a v2 CertificateList encoded over der.ts and
 * signed by the issuing CA through issue.ts's signTbs, the one signer; and decoded, for check,
 * verify and the tests. A CertificateList has the Certificate's outer shape (TBS, algorithm,
 * signature), so the same signing code makes both.
 *
 * What mtlskit writes: version v2, the CA's signature algorithm, its subject copied byte for byte
 * as the issuer, thisUpdate and nextUpdate (which RFC 5280 5.1.2.5 makes mandatory for conforming
 * CAs), one entry per revoked serial with its revocationDate and, unless unspecified, a reasonCode
 * entry extension (5.3.1: "unspecified" SHOULD be absent), and the CRL extensions
 * authorityKeyIdentifier (5.2.1) and cRLNumber (5.2.3), both MUST for conforming CAs.
 */
import type { KeyObject } from "node:crypto";
import { DecodeError } from "../errors.ts";
import { parseTime, verifySignedBy } from "./cert.ts";
import {
  bytesOf,
  children,
  contentsOf,
  implicit,
  octetString,
  oid,
  readTlv,
  seq,
  TAG,
  time,
  tlv,
  uint,
  type Tlv,
} from "./der.ts";
import { signTbs, type Issuer } from "./issue.ts";
import { KEY_TYPE_NAMES, KEY_TYPES } from "./keys.ts";
import { EXTENSION_OID } from "./oids.ts";
import { decodeOid } from "./x509.ts";

/** REVOCATION_REASONS maps the RFC 5280 5.3.1 reason names mtlskit accepts to their CRLReason codes. certificateHold and removeFromCRL are left out: a revocation here is final. */
export const REVOCATION_REASONS = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  privilegeWithdrawn: 9,
  aACompromise: 10,
} as const;

/** RevocationReason is a name of REVOCATION_REASONS. */
export type RevocationReason = keyof typeof REVOCATION_REASONS;

const REASON_BY_CODE = new Map<number, RevocationReason>(
  Object.entries(REVOCATION_REASONS).map(([name, code]) => [code, name as RevocationReason]),
);

/** CRL_OID names the CRL and CRL entry extensions mtlskit writes or reads (RFC 5280 5.2, 5.3). */
export const CRL_OID = {
  cRLNumber: "2.5.29.20",
  reasonCode: "2.5.29.21",
  authorityKeyIdentifier: EXTENSION_OID.authorityKeyIdentifier,
} as const;

/** RevokedEntry is one revoked certificate as a CRL lists it. */
export interface RevokedEntry {
  /** serial is the certificate's serial number in lowercase hex, minimal (no leading 00 octet). */
  serial: string;
  revocationDate: Date;
  reason: RevocationReason;
}

/** CrlSpec is everything a CRL says, apart from its issuer and signature. */
export interface CrlSpec {
  thisUpdate: Date;
  nextUpdate: Date;
  /** number is the cRLNumber: monotonic per CA, never reused (RFC 5280 5.2.3). */
  number: bigint;
  entries: readonly RevokedEntry[];
}

/** normalizeSerial turns a serial as users and tools write it (hex, optional colons, 0x, leading zeros) into minimal lowercase hex, or undefined when it is not one. */
export function normalizeSerial(text: string): string | undefined {
  const hex = text.trim().replace(/^0x/i, "").replace(/:/g, "").toLowerCase();
  if (!/^[0-9a-f]{1,40}$/.test(hex)) return undefined; // RFC 5280 4.1.2.2: at most 20 octets
  const trimmed = hex.replace(/^0+(?=.)/, "");
  return trimmed.length % 2 === 1 ? `0${trimmed}` : trimmed;
}

/** serialHex renders a serial INTEGER's magnitude bytes as normalizeSerial does. */
export const serialHex = (magnitude: Uint8Array): string => normalizeSerial(Buffer.from(magnitude).toString("hex"))!;

function bigintBytes(n: bigint): Buffer {
  if (n < 0n) throw new RangeError("pki: a CRL number is never negative");
  const hex = n.toString(16);
  return Buffer.from(hex.length % 2 ? `0${hex}` : hex, "hex");
}

const ext = (id: string, value: Buffer): Buffer => seq(oid(id), octetString(value));

/** encodeCrlTbs builds the TBSCertList DER of `spec` issued by `issuer` (RFC 5280 5.1.2). */
export function encodeCrlTbs(spec: CrlSpec, issuer: Pick<Issuer, "subject" | "keyId" | "keyType">): Buffer {
  const entries = spec.entries.map((e) => {
    const code = REVOCATION_REASONS[e.reason];
    const extensions = code === 0 ? [] : [seq(ext(CRL_OID.reasonCode, tlv(0x0a, Buffer.from([code]))))];
    return seq(uint(Buffer.from(e.serial, "hex")), time(e.revocationDate), ...extensions);
  });
  return seq(
    uint(Buffer.from([1])), // v2
    KEY_TYPES[issuer.keyType].signatureAlgorithm,
    issuer.subject,
    time(spec.thisUpdate),
    time(spec.nextUpdate),
    // An empty revokedCertificates is omitted, not written as an empty SEQUENCE (5.1.2.6).
    ...(entries.length > 0 ? [seq(...entries)] : []),
    tlv(
      0xa0,
      seq(
        ext(CRL_OID.authorityKeyIdentifier, seq(implicit(0, issuer.keyId))),
        ext(CRL_OID.cRLNumber, uint(bigintBytes(spec.number))),
      ),
    ),
  );
}

/** signCrl returns the CertificateList DER of `spec`, signed by `issuer` with issue.ts's signer. */
export const signCrl = (spec: CrlSpec, issuer: Issuer): Buffer => signTbs(encodeCrlTbs(spec, issuer), issuer);

/** CrlInfo is a decoded CRL. */
export interface CrlInfo {
  der: Buffer;
  tbs: Buffer;
  /** issuer is the Name DER, to compare with a CA certificate's subject byte for byte. */
  issuer: Buffer;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  entries: RevokedEntry[];
  number: bigint | undefined;
  authorityKeyId: Buffer | undefined;
  signatureAlgorithm: Buffer;
  signature: Buffer;
}

function expectTag(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new DecodeError(`crl: ${what} is missing or has the wrong type`);
  return t;
}

function uintOf(der: Buffer, t: Tlv, what: string): Buffer {
  const c = contentsOf(der, t);
  if (c.length === 0 || c[0]! & 0x80) throw new DecodeError(`crl: ${what} is not a non-negative INTEGER`);
  return c;
}

const isTime = (t: Tlv | undefined): t is Tlv => t?.tag === TAG.utcTime || t?.tag === TAG.generalizedTime;
const timeOf = (der: Buffer, t: Tlv): Date => parseTime(t.tag, contentsOf(der, t).toString("latin1"));

/** extensionsOf reads an Extensions SEQUENCE into OID -> value, refusing an unknown critical one (RFC 5280 5.2). */
function extensionsOf(der: Buffer, t: Tlv, known: readonly string[], what: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const e of children(der, expectTag(t, TAG.sequence, what))) {
    const parts = children(der, expectTag(e, TAG.sequence, what));
    const id = decodeOid(contentsOf(der, expectTag(parts[0], TAG.oid, `${what} OID`)));
    const critical = parts.length === 3 && contentsOf(der, expectTag(parts[1], TAG.boolean, what))[0] !== 0;
    const value = contentsOf(der, expectTag(parts[parts.length - 1], TAG.octetString, `${what} value`));
    if (critical && !known.includes(id)) throw new DecodeError(`crl: unknown critical ${what} ${id}`);
    out.set(id, value);
  }
  return out;
}

/** decodeCrl decodes a CertificateList (v1 or v2); it throws DecodeError on malformed DER or misplaced fields. */
export function decodeCrl(der: Buffer): CrlInfo {
  const top = readTlv(der, 0);
  if (top.tag !== TAG.sequence || top.end !== der.length)
    throw new DecodeError("crl: not a single CertificateList SEQUENCE");
  const [tbsT, algT, sigT, ...extra] = children(der, top);
  if (extra.length > 0 || tbsT?.tag !== TAG.sequence || algT?.tag !== TAG.sequence || sigT?.tag !== TAG.bitString)
    throw new DecodeError(
      "crl: a CertificateList is a tbsCertList SEQUENCE, a signatureAlgorithm SEQUENCE and a signature BIT STRING",
    );
  const f = children(der, tbsT);
  let i = 0;
  if (f[i]?.tag === TAG.integer) i++; // version, present in v2
  const sigAlgT = expectTag(f[i++], TAG.sequence, "signature algorithm");
  if (!bytesOf(der, sigAlgT).equals(bytesOf(der, algT)))
    throw new DecodeError(
      "crl: the signature algorithm inside tbsCertList differs from the one outside (RFC 5280 5.1.1.2)",
    );
  const issuerT = expectTag(f[i++], TAG.sequence, "issuer");
  const thisT = f[i++];
  if (!isTime(thisT)) throw new DecodeError("crl: thisUpdate is missing or not a time");
  const nextT = isTime(f[i]) ? f[i++] : undefined;
  const entries: RevokedEntry[] = [];
  if (f[i]?.tag === TAG.sequence) {
    for (const e of children(der, f[i++]!)) {
      const [serialT, dateT, extT] = children(der, expectTag(e, TAG.sequence, "revoked certificate"));
      const serial = serialHex(uintOf(der, expectTag(serialT, TAG.integer, "userCertificate"), "userCertificate"));
      if (!isTime(dateT)) throw new DecodeError("crl: revocationDate is missing or not a time");
      let reason: RevocationReason = "unspecified";
      if (extT) {
        const code = extensionsOf(der, extT, [CRL_OID.reasonCode], "CRL entry extension").get(CRL_OID.reasonCode);
        if (code) {
          const enumT = readTlv(code, 0);
          if (enumT.tag !== 0x0a || enumT.end !== code.length || enumT.end - enumT.contentStart !== 1)
            throw new DecodeError("crl: a reasonCode is not a one-octet ENUMERATED");
          // certificateHold (6) and removeFromCRL (8) are read as unspecified: mtlskit never writes them.
          reason = REASON_BY_CODE.get(contentsOf(code, enumT)[0]!) ?? "unspecified";
        }
      }
      entries.push({ serial, revocationDate: timeOf(der, dateT), reason });
    }
  }
  let number: bigint | undefined;
  let authorityKeyId: Buffer | undefined;
  if (f[i]?.tag === 0xa0) {
    const [extsT] = children(der, f[i++]!);
    const exts = extensionsOf(
      der,
      expectTag(extsT, TAG.sequence, "crlExtensions"),
      Object.values(CRL_OID),
      "CRL extension",
    );
    const n = exts.get(CRL_OID.cRLNumber);
    if (n) {
      const t = readTlv(n, 0);
      number = BigInt(`0x${uintOf(n, expectTag(t, TAG.integer, "cRLNumber"), "cRLNumber").toString("hex")}`);
    }
    const aki = exts.get(CRL_OID.authorityKeyIdentifier);
    if (aki) {
      const akiT = readTlv(aki, 0);
      const keyIdT = children(aki, expectTag(akiT, TAG.sequence, "authorityKeyIdentifier")).find((c) => c.tag === 0x80);
      authorityKeyId = keyIdT ? Buffer.from(contentsOf(aki, keyIdT)) : undefined;
    }
  }
  if (i !== f.length) throw new DecodeError("crl: tbsCertList has unexpected fields after its extensions");
  const sig = contentsOf(der, sigT);
  if (sig[0] !== 0) throw new DecodeError("crl: the signature BIT STRING is empty or has unused bits");
  return {
    der,
    tbs: bytesOf(der, tbsT),
    issuer: bytesOf(der, issuerT),
    thisUpdate: timeOf(der, thisT),
    nextUpdate: nextT ? timeOf(der, nextT) : undefined,
    entries,
    number,
    authorityKeyId,
    signatureAlgorithm: bytesOf(der, algT),
    signature: sig.subarray(1),
  };
}

/** crlSignedBy tells whether `crl` carries a valid signature by `key`, a CA key of one of KEY_TYPES (cert.ts's verifySignedBy). */
export function crlSignedBy(crl: Pick<CrlInfo, "tbs" | "signatureAlgorithm" | "signature">, key: KeyObject): boolean {
  const type = KEY_TYPE_NAMES.find((k) => KEY_TYPES[k].signatureAlgorithm.equals(crl.signatureAlgorithm));
  return type !== undefined && verifySignedBy(crl, key, type);
}

/** revokedSerials indexes a CRL's entries by serial. */
export const revokedSerials = (crl: Pick<CrlInfo, "entries">): Map<string, RevokedEntry> =>
  new Map(crl.entries.map((e) => [e.serial, e]));
