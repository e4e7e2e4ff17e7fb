/**
 * The object identifiers that name things in a certificate, in one table each: DN attribute types
 * (read by x509.ts, written by name.ts, parsed from RFC 4514 text by service/dn.ts) and
 * extensions (read by x509.ts, written by issue.ts). Decoding side: plain data, no imports, so the
 * service library may load it.
 */

/** NameAttribute is one row of NAME_ATTRIBUTES. */
export interface NameAttribute {
  /** oid is the attribute type's dotted OID. */
  oid: string;
  /** short is the name OpenSSL prints (`CN`, `serialNumber`, `emailAddress`); x509.ts writes subjects with it. */
  short: string;
  /** long is the X.520 / RFC 4519 name (`commonName`), accepted when a DN is parsed. */
  long: string;
  /** also lists other spellings accepted when a DN is parsed (`S` for ST, `E` for emailAddress). */
  also?: readonly string[];
}

/** NAME_ATTRIBUTES is the closed table of DN attribute types mtlskit names; any other type is shown by its OID. */
export const NAME_ATTRIBUTES = [
  { oid: "2.5.4.3", short: "CN", long: "commonName" },
  { oid: "2.5.4.6", short: "C", long: "countryName" },
  { oid: "2.5.4.7", short: "L", long: "localityName" },
  { oid: "2.5.4.8", short: "ST", long: "stateOrProvinceName", also: ["S"] },
  { oid: "2.5.4.10", short: "O", long: "organizationName" },
  { oid: "2.5.4.11", short: "OU", long: "organizationalUnitName" },
  { oid: "2.5.4.5", short: "serialNumber", long: "serialNumber" },
  { oid: "2.5.4.4", short: "SN", long: "surname" },
  { oid: "2.5.4.42", short: "GN", long: "givenName" },
  { oid: "2.5.4.12", short: "title", long: "title" },
  { oid: "2.5.4.9", short: "street", long: "streetAddress" },
  { oid: "1.2.840.113549.1.9.1", short: "emailAddress", long: "emailAddress", also: ["E"] },
  { oid: "0.9.2342.19200300.100.1.25", short: "DC", long: "domainComponent" },
  { oid: "0.9.2342.19200300.100.1.1", short: "UID", long: "userId" },
] as const satisfies readonly NameAttribute[];

/** NameAttributeShort is the short name of one row of NAME_ATTRIBUTES. */
export type NameAttributeShort = (typeof NAME_ATTRIBUTES)[number]["short"];

/** NAME_ATTRIBUTE_OID maps a short name (`CN`) to its OID. */
export const NAME_ATTRIBUTE_OID = Object.fromEntries(NAME_ATTRIBUTES.map((a) => [a.short, a.oid])) as Readonly<
  Record<NameAttributeShort, string>
>;

/** NAME_ATTRIBUTE_SHORT maps an attribute type's OID to its short name. */
export const NAME_ATTRIBUTE_SHORT: Readonly<Record<string, string>> = Object.fromEntries(
  NAME_ATTRIBUTES.map((a) => [a.oid, a.short]),
);

/** EXTENSION_OID maps the certificate extensions mtlskit names to their OIDs (RFC 5280 4.2 and others). */
export const EXTENSION_OID = {
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  subjectAltName: "2.5.29.17",
  subjectKeyIdentifier: "2.5.29.14",
  authorityKeyIdentifier: "2.5.29.35",
  certificatePolicies: "2.5.29.32",
  cRLDistributionPoints: "2.5.29.31",
  nameConstraints: "2.5.29.30",
  issuerAltName: "2.5.29.18",
  authorityInfoAccess: "1.3.6.1.5.5.7.1.1",
  signedCertificateTimestampList: "1.3.6.1.4.1.11129.2.4.2",
  nsCertType: "2.16.840.1.113730.1.1",
  nsComment: "2.16.840.1.113730.1.13",
} as const;

/** EXTENSION_NAMES maps an extension's OID to its name (EXTENSION_OID inverted). */
export const EXTENSION_NAMES: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries(EXTENSION_OID).map(([name, o]) => [o, name]),
);
