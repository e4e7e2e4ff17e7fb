/**
 * The one door to @peculiar/asn1-x509: structural decoding of certificates mtlskit did not
 * necessarily write (imported CAs, existing files, tests). SANs, usages and constraints are read
 * from the DER structure, never from Node's `subjectaltname` string (Node CVE-2021-44532).
 * Errors from the library are translated into plain `x509: ...` messages.
 */
import { AsnConvert } from "@peculiar/asn1-schema";
import * as x from "@peculiar/asn1-x509";
import { EXT_KEY_USAGE_OID, KEY_USAGE_BIT, type ExtKeyUsageName, type KeyUsageBit } from "./profiles.ts";

/** SanEntry is one subject alternative name with its type. */
export type SanEntry = { type: "dns"; value: string } | { type: "ip"; value: string } | { type: "uri"; value: string } | { type: "other"; value: string };

/** CertInfo is a decoded certificate in plain terms. */
export interface CertInfo {
  /** subject and issuer as `CN=..., O=...` strings (most specific first). */
  subject: string;
  issuer: string;
  /** subjectAttributes maps short attribute names (CN, O, ...) to their first value. */
  subjectAttributes: Record<string, string>;
  serialHex: string;
  /** serialNegative is true when the serial's DER INTEGER is negative. */
  serialNegative: boolean;
  notBefore: Date;
  notAfter: Date;
  isCA: boolean;
  pathLen: number | undefined;
  basicConstraintsCritical: boolean | undefined;
  /** keyUsage is undefined when the extension is absent. */
  keyUsage: KeyUsageBit[] | undefined;
  keyUsageCritical: boolean | undefined;
  /** extKeyUsage lists known purposes by name and unknown ones by OID; undefined when absent. */
  extKeyUsage: (ExtKeyUsageName | string)[] | undefined;
  sans: SanEntry[];
  subjectKeyId: string | undefined;
  authorityKeyId: string | undefined;
}

const ATTR: Record<string, string> = { "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU" };
const EKU_NAME = Object.fromEntries(Object.entries(EXT_KEY_USAGE_OID).map(([k, v]) => [v, k]));

function nameAttributes(name: x.Name): [string, string][] {
  const out: [string, string][] = [];
  for (const rdn of name) for (const atv of rdn) out.push([ATTR[atv.type] ?? atv.type, atv.value.toString()]);
  return out;
}
function firstValues(attrs: [string, string][]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of attrs) out[k] ??= v;
  return out;
}
const formatName = (name: x.Name) => nameAttributes(name).reverse().map(([k, v]) => `${k}=${v}`).join(", ");

function ext<T>(cert: x.Certificate, id: string, type: new () => T): { value: T; critical: boolean } | undefined {
  const e = cert.tbsCertificate.extensions?.find((e) => e.extnID === id);
  return e ? { value: AsnConvert.parse(e.extnValue, type), critical: e.critical } : undefined;
}

/** decodeCertificate decodes a DER certificate; it throws `x509: ...` on malformed input. */
export function decodeCertificate(der: Uint8Array): CertInfo {
  let cert: x.Certificate;
  try {
    cert = AsnConvert.parse(der, x.Certificate);
  } catch (e) {
    throw new Error(`x509: not a valid certificate: ${(e as Error).message}`, { cause: e });
  }
  try {
    const tbs = cert.tbsCertificate;
    const bc = ext(cert, x.id_ce_basicConstraints, x.BasicConstraints);
    const ku = ext(cert, x.id_ce_keyUsage, x.KeyUsage);
    const eku = ext(cert, x.id_ce_extKeyUsage, x.ExtendedKeyUsage);
    const san = ext(cert, x.id_ce_subjectAltName, x.SubjectAlternativeName);
    const ski = ext(cert, x.id_ce_subjectKeyIdentifier, x.SubjectKeyIdentifier);
    const aki = ext(cert, x.id_ce_authorityKeyIdentifier, x.AuthorityKeyIdentifier);
    const serial = Buffer.from(tbs.serialNumber);
    const kuBits = ku ? (Object.keys(KEY_USAGE_BIT) as KeyUsageBit[]).filter((b) => (ku.value.toNumber() & (1 << KEY_USAGE_BIT[b])) !== 0) : undefined;
    return {
      subject: formatName(tbs.subject),
      issuer: formatName(tbs.issuer),
      subjectAttributes: firstValues(nameAttributes(tbs.subject)),
      serialHex: serial.toString("hex"),
      serialNegative: (serial[0]! & 0x80) !== 0,
      notBefore: tbs.validity.notBefore.getTime(),
      notAfter: tbs.validity.notAfter.getTime(),
      isCA: bc?.value.cA ?? false,
      pathLen: bc?.value.pathLenConstraint,
      basicConstraintsCritical: bc?.critical,
      keyUsage: kuBits,
      keyUsageCritical: ku?.critical,
      extKeyUsage: eku?.value.map((o) => EKU_NAME[o] ?? o),
      sans: (san?.value ?? []).map((g): SanEntry =>
        g.dNSName !== undefined ? { type: "dns", value: g.dNSName } : g.iPAddress !== undefined ? { type: "ip", value: g.iPAddress } : g.uniformResourceIdentifier !== undefined ? { type: "uri", value: g.uniformResourceIdentifier } : { type: "other", value: "(unsupported name type)" },
      ),
      subjectKeyId: ski ? Buffer.from(ski.value.buffer).toString("hex") : undefined,
      authorityKeyId: aki?.value.keyIdentifier ? Buffer.from(aki.value.keyIdentifier.buffer).toString("hex") : undefined,
    };
  } catch (e) {
    throw new Error(`x509: cannot decode certificate extensions: ${(e as Error).message}`, { cause: e });
  }
}
