/**
 * The CA to trust: one certificate from a PEM file, judged before it goes anywhere near a trust
 * store (a CA, not a leaf; not expired), with the fingerprints each store names it by.
 */
import { createHash, X509Certificate } from "node:crypto";
import { EXIT, MtlskitError, UsageError } from "../errors.ts";
import { encodePem, parsePem } from "../pki/pem.ts";
import { decodeCertificate } from "../pki/x509.ts";

/** TrustAnchor is a CA certificate ready for a trust store. */
export interface TrustAnchor {
  /** file is where it was read from, as the user named it. */
  file: string;
  /** source is that file's text; pem is the certificate alone, re-encoded (what stores receive). */
  source: string;
  pem: string;
  der: Buffer;
  /** sha256 and sha1 are lowercase hex of the DER (SHA-1: the thumbprint macOS and Windows name certificates by). */
  sha256: string;
  sha1: string;
  subject: string;
  commonName: string | undefined;
  notBefore: Date;
  notAfter: Date;
  /** selfSigned: a root. OpenSSL-based clients trust only roots by default (no partial chains). */
  selfSigned: boolean;
}

/** colonHex writes hex as colon-separated uppercase pairs, as openssl and browsers show fingerprints. */
export const colonHex = (hex: string): string => hex.toUpperCase().replace(/(..)(?!$)/g, "$1:");

/** sha256Hex is the lowercase hex SHA-256 of bytes (a certificate's DER). */
export const sha256Hex = (der: Uint8Array): string => createHash("sha256").update(der).digest("hex");

/**
 * parseAnchor reads the CA certificate in `text` (from `file`). Refuses (exit 2) anything but
 * exactly one CERTIFICATE block holding a CA (basicConstraints cA, and keyCertSign when key usage
 * is present): a leaf in a trust store would be trusted to sign nothing, and a bundle would be
 * half-trusted by tools that read only its first certificate.
 */
export function parseAnchor(text: string, file: string): TrustAnchor {
  let blocks;
  try {
    blocks = parsePem(text);
  } catch (e) {
    throw new UsageError(
      `trust: ${file} is not readable PEM (${(e as Error).message}); give the CA certificate, e.g. PKI/ca/ca.pem`,
    );
  }
  const certs = blocks.filter((b) => b.label === "CERTIFICATE");
  if (certs.length !== 1) {
    throw new UsageError(
      certs.length === 0
        ? `trust: ${file} holds no CERTIFICATE block${blocks.length ? ` (found ${blocks.map((b) => b.label).join(", ")})` : ""}; give the CA certificate, e.g. PKI/ca/ca.pem`
        : `trust: ${file} holds ${certs.length} certificates; a trust anchor is one CA certificate: split the file and install the root`,
    );
  }
  const der = certs[0]!.der;
  let info;
  try {
    info = decodeCertificate(der);
  } catch (e) {
    throw new UsageError(`trust: ${file} is not a readable certificate (${(e as Error).message})`);
  }
  if (!info.isCA) {
    throw new UsageError(
      `trust: ${file} is not a CA certificate (basicConstraints CA:TRUE is not set; it is ${info.subject}): installing it would trust nothing it signs. Give the CA, e.g. PKI/ca/ca.pem, not a service's cert.pem`,
    );
  }
  if (info.keyUsage && !info.keyUsage.includes("keyCertSign")) {
    throw new UsageError(
      `trust: ${file} is marked CA but its key usage lacks keyCertSign, so no verifier accepts what it signs; give a CA certificate that may sign certificates`,
    );
  }
  const x = new X509Certificate(der);
  return {
    file,
    source: text,
    pem: encodePem("CERTIFICATE", der),
    der,
    sha256: sha256Hex(der),
    sha1: createHash("sha1").update(der).digest("hex"),
    subject: info.subject,
    commonName: info.subjectAttributes.CN,
    notBefore: info.notBefore,
    notAfter: info.notAfter,
    selfSigned: x.checkIssued(x) && x.verify(x.publicKey),
  };
}

/** refuseExpired throws (exit 1) when `a` is past its notAfter at `now`: a store would hold a CA nothing can verify against. */
export function refuseExpired(a: TrustAnchor, now: Date): void {
  if (a.notAfter.getTime() <= now.getTime()) {
    throw new MtlskitError(
      `trust: ${a.file} (${a.subject}) expired on ${a.notAfter.toISOString()}; nothing it signed verifies any more. Renew the CA (a new CA: move PKI/ca away and run mtlskit apply) and install the new ca.pem`,
      EXIT.findings,
    );
  }
}

/** TRUST_NAME is the rule for the NAME in mtlskit-NAME (a file name and an NSS nickname). */
export const TRUST_NAME = /^(?=.{1,64}$)[a-z0-9](?:[a-z0-9]|[-.](?=[a-z0-9]))*$/;

/** trustName is the file name stem and NSS nickname of a CA: `mtlskit-` and the cluster (or --name); every store entry mtlskit touches carries the prefix. */
export function trustName(name: string): string {
  if (!TRUST_NAME.test(name))
    throw new UsageError(
      `trust: name ${JSON.stringify(name)} must be lowercase letters, digits and single inner hyphens or dots (at most 64): it becomes a file name; give --name`,
    );
  return `mtlskit-${name}`;
}

/** nameFromSubject turns a CA's common name into a trust name (`Example Root CA` -> `example-root-ca`), or undefined. */
export function nameFromSubject(cn: string | undefined): string | undefined {
  const slug = (cn ?? "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 64)
    .replace(/-+$/, "");
  return TRUST_NAME.test(slug) ? slug : undefined;
}
