/**
 * Descriptions shared by certificates, CSRs and keys: key type in words, fingerprints in
 * openssl's colon hex, SANs, the usage a set of extended key usages amounts to, the identity,
 * and extensions with their values.
 */
import { createHash } from "node:crypto";
import { decodeParts } from "../pki/csr.ts";
import type { CertInfo, PublicKeyInfo } from "../pki/x509.ts";
import type { ExtensionItem, Identity, KeyInfo, Requested, SanItem } from "./item.ts";

/** colonHex renders bytes as `AB:CD:...`, the way openssl prints fingerprints. */
export const colonHex = (bytes: Uint8Array): string =>
  (Buffer.from(bytes).toString("hex").toUpperCase().match(/../g) ?? []).join(":");

/** sha256 is the SHA-256 of `der` in colon hex. */
export const sha256 = (der: Uint8Array): string => colonHex(createHash("sha256").update(der).digest());

/** keyInfo describes a public key from its decoded form and its SPKI DER. */
export function keyInfo(k: PublicKeyInfo, spki: Buffer): KeyInfo {
  const type =
    k.algorithm === "ec"
      ? `ECDSA ${k.curve}`
      : k.algorithm === "rsa"
        ? `RSA ${k.bits}`
        : k.algorithm === "ed25519"
          ? "Ed25519"
          : k.algorithm === "ed448"
            ? "Ed448"
            : `unknown algorithm ${k.algorithm}`;
  return { type, algorithm: k.algorithm, bits: k.bits, curve: k.curve, spkiSha256: sha256(spki) };
}

/** keyInfoOfSpki describes a SubjectPublicKeyInfo DER. */
export const keyInfoOfSpki = (spki: Buffer): KeyInfo => keyInfo(decodeParts({ spki }).publicKey, spki);

/** usageOf says what extended key usages amount to: server, client, dual, any, or the other purposes. */
export function usageOf(eku: readonly string[] | undefined): string {
  if (eku === undefined) return "any (no extendedKeyUsage)";
  const server = eku.includes("serverAuth");
  const client = eku.includes("clientAuth");
  const rest = eku.filter((u) => u !== "serverAuth" && u !== "clientAuth");
  const base = server && client ? "dual" : server ? "server" : client ? "client" : undefined;
  if (base === undefined)
    return rest.includes("anyExtendedKeyUsage")
      ? "any (anyExtendedKeyUsage)"
      : `other: ${rest.join(", ") || "(empty extendedKeyUsage)"}`;
  return rest.length > 0 ? `${base} (also ${rest.join(", ")})` : base;
}

/** identityOf is the single URI SAN, or a note saying why there is none. */
export function identityOf(sans: readonly SanItem[]): Identity {
  const uris = sans.filter((s) => s.type === "uri").map((s) => s.value);
  if (uris.length === 1) return { uri: uris[0], note: undefined };
  if (uris.length === 0) return { uri: undefined, note: "none: no URI SAN" };
  return {
    uri: undefined,
    note: `ambiguous: ${uris.length} URI SANs (${uris.join(", ")}); an identity is exactly one`,
  };
}

const SAN_PREFIX = { dns: "DNS", ip: "IP", uri: "URI", email: "email", other: "other" } as const;

/** sanText renders a SAN as openssl does: `DNS:api`, `IP:127.0.0.1`. */
export const sanText = (s: SanItem): string => `${SAN_PREFIX[s.type]}:${s.value}`;

/** extensionValue puts a known extension's value in words. */
function extensionValue(name: string | undefined, i: CertInfo): string | undefined {
  switch (name) {
    case "basicConstraints":
      return i.isCA ? `CA:TRUE${i.pathLen === undefined ? "" : `, pathlen:${i.pathLen}`}` : "CA:FALSE";
    case "keyUsage":
      return i.keyUsage?.join(", ") || "(none)";
    case "extKeyUsage":
      return i.extKeyUsage?.join(", ") || "(none)";
    case "subjectAltName":
      return i.sans.map((s) => sanText(s)).join(", ") || "(none)";
    case "subjectKeyIdentifier":
      return i.subjectKeyId === undefined ? undefined : colonHex(Buffer.from(i.subjectKeyId, "hex"));
    case "authorityKeyIdentifier":
      return i.authorityKeyId === undefined ? "(no key identifier)" : colonHex(Buffer.from(i.authorityKeyId, "hex"));
    default:
      return undefined;
  }
}

/** requestedOf is what a certificate or CSR names and allows: SANs, usages, identity, extensions. */
export function requestedOf(i: CertInfo): Requested {
  const sans: SanItem[] = i.sans.map((s) => ({ type: s.type, value: s.value }));
  return {
    sans,
    usage: usageOf(i.extKeyUsage),
    keyUsage: i.keyUsage,
    extKeyUsage: i.extKeyUsage,
    identity: identityOf(sans),
    extensions: i.extensions.map(
      (x): ExtensionItem => ({
        oid: x.oid,
        name: x.name ?? x.oid,
        critical: x.critical,
        value: extensionValue(x.name, i),
      }),
    ),
  };
}
