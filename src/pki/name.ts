/** Distinguished names: the attributes mtlskit writes, their order, OIDs and string types. */
import { oid, seq, tlv, TAG } from "./der.ts";
import { NAME_ATTRIBUTE_OID } from "./oids.ts";

/** SUBJECT_ATTRIBUTES is the closed table of DN attributes, in the order they are encoded. */
export const SUBJECT_ATTRIBUTES = {
  C: { oid: NAME_ATTRIBUTE_OID.C, max: 2, describe: "country (two letters)" },
  ST: { oid: NAME_ATTRIBUTE_OID.ST, max: 128, describe: "state or province" },
  L: { oid: NAME_ATTRIBUTE_OID.L, max: 128, describe: "locality" },
  O: { oid: NAME_ATTRIBUTE_OID.O, max: 64, describe: "organization" },
  OU: { oid: NAME_ATTRIBUTE_OID.OU, max: 64, describe: "organizational unit" },
  CN: { oid: NAME_ATTRIBUTE_OID.CN, max: 64, describe: "common name" },
} as const;

/** SubjectKey is one DN attribute name. */
export type SubjectKey = keyof typeof SUBJECT_ATTRIBUTES;

/** Subject maps attribute names to values; absent attributes are not encoded. */
export type Subject = Partial<Record<SubjectKey, string>>;

const ORDER = Object.keys(SUBJECT_ATTRIBUTES) as SubjectKey[];
const OID_DER = Object.fromEntries(ORDER.map((k) => [k, oid(SUBJECT_ATTRIBUTES[k].oid)])) as Record<SubjectKey, Buffer>;

/**
 * encodeName encodes a Name as one attribute per RDN, in C, ST, L, O, OU, CN order.
 * C is a PrintableString (RFC 5280 appendix A), everything else UTF8String (RFC 5280 4.1.2.6).
 */
export function encodeName(subject: Subject): Buffer {
  const rdns: Buffer[] = [];
  for (const k of ORDER) {
    const v = subject[k];
    if (v === undefined) continue;
    const value = tlv(k === "C" ? TAG.printableString : TAG.utf8String, Buffer.from(v, "utf8"));
    rdns.push(tlv(TAG.set, seq(OID_DER[k], value)));
  }
  return seq(...rdns);
}

/** formatSubject renders a subject the way people read DNs: `CN=core, O=Demo, C=US`. */
export function formatSubject(subject: Subject): string {
  return [...ORDER]
    .reverse()
    .filter((k) => subject[k] !== undefined)
    .map((k) => `${k}=${subject[k]}`)
    .join(", ");
}
