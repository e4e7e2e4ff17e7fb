/**
 * A certificate in plain terms, with the lints that apply to it alone: check's lints of a leaf
 * with no expectations, or for a CA certificate the lints that concern any certificate plus what
 * only matters for a CA (expired, may it sign).
 */
import { CODES, lintCertificate, type Cert, type Code, type Lint, type Material } from "../check/index.ts";
import { keyInfo, requestedOf, sha256 } from "./describe.ts";
import type { CaFacts, CertificateItem, ItemLint, Validity, Where } from "./item.ts";

const DAY = 86_400_000;

/** LEAF_ONLY are lints about serving or connecting as a service, which do not concern a CA. */
const LEAF_ONLY: ReadonlySet<Code> = new Set<Code>([
  "eku-absent",
  "eku-server",
  "eku-client",
  "key-usage",
  "key-usage-strict",
  "key-usage-extra",
  "san-missing",
  "san-ip-as-dns",
  "cn-not-san",
  "identity-count",
  "identity-mismatch",
  "leaf-is-ca",
]);

const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;

/** validityAt judges a certificate's dates at `now`. */
export function validityAt(notBefore: Date, notAfter: Date, now: Date): Validity {
  const t = now.getTime();
  const daysLeft = Math.floor((notAfter.getTime() - t) / DAY);
  if (notAfter.getTime() < t)
    return {
      notBefore,
      notAfter,
      status: "expired",
      daysLeft,
      text: `expired ${plural(Math.floor((t - notAfter.getTime()) / DAY), "day")} ago`,
    };
  if (notBefore.getTime() > t)
    return {
      notBefore,
      notAfter,
      status: "not-yet-valid",
      daysLeft,
      text: `not yet valid: starts in ${plural(Math.ceil((notBefore.getTime() - t) / DAY), "day")}`,
    };
  return { notBefore, notAfter, status: "valid", daysLeft, text: `valid, ${plural(daysLeft, "day")} left` };
}

/** caLints are the lints of a CA certificate: the ones about any certificate, and whether it may sign. */
function caLints(c: Cert, lints: Lint[]): Lint[] {
  const out = lints
    .filter((l) => !LEAF_ONLY.has(l.code))
    .map(
      (l): Lint =>
        l.code === "expired"
          ? {
              code: "ca-expired",
              message: `${l.message}; every certificate it signed is refused`,
              change: "create a new CA, re-issue what it signed and distribute the new bundle",
            }
          : l,
    );
  const ku = c.info.keyUsage;
  if (ku && !ku.includes("keyCertSign"))
    out.push({
      code: "ca-not-ca",
      message: `is a CA (basicConstraints cA=TRUE) but its keyUsage (${ku.join(", ") || "empty"}) lacks keyCertSign, so verifiers refuse what it signs`,
      change: "issue it with keyUsage keyCertSign, cRLSign",
    });
  return out;
}

/** describeCertificate describes a parsed certificate at `now`. */
export function describeCertificate(material: Material, c: Cert, where: Where, now: Date): CertificateItem {
  const i = c.info;
  const lints = lintCertificate(c, {}, now);
  const ca: CaFacts | undefined = i.isCA
    ? {
        pathLen: i.pathLen,
        keyCertSign: !i.keyUsage || i.keyUsage.includes("keyCertSign"),
        cRLSign: !i.keyUsage || i.keyUsage.includes("cRLSign"),
      }
    : undefined;
  return {
    kind: "certificate",
    ...where,
    version: i.version,
    subject: i.subject,
    issuer: i.issuer,
    serial: (i.serialNegative ? "-" : "") + i.serialHex.toUpperCase(),
    signatureAlgorithm: i.signatureAlgorithm.name,
    key: keyInfo(i.publicKey, c.fields.spki),
    validity: validityAt(i.notBefore, i.notAfter, now),
    sha256: sha256(c.der),
    ...requestedOf(i),
    ca,
    selfSigned: c.fields.issuer.equals(c.fields.subject) && material.signedBy(c, c),
    signedByNext: undefined,
    lints: (ca ? caLints(c, lints) : lints).map(
      (l): ItemLint => ({ code: l.code, severity: CODES[l.code].severity, message: l.message, change: l.change }),
    ),
  };
}
