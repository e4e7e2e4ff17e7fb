/**
 * Revocation, judged: the CA's CRL against the CA (crl-untrusted, crl-expired) and each deployed
 * certificate against the CRL of its issuer (revoked). Pure: the CRL is read by the caller
 * (check/index.ts from DIR/ca/crl.pem, verify from --crl).
 */
import { createPublicKey } from "node:crypto";
import { crlSignedBy, revokedSerials, serialHex, type CrlInfo, type RevokedEntry } from "../pki/crl.ts";
import type { Cert } from "./material.ts";

/** CrlProblem is what is wrong with a CRL for a CA: a code and the words for it. */
export interface CrlProblem {
  code: "crl-expired" | "crl-untrusted";
  message: string;
}

const when = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

function signedBy(crl: CrlInfo, ca: Cert): boolean {
  try {
    return crlSignedBy(crl, createPublicKey({ key: ca.fields.spki, format: "der", type: "spki" }));
  } catch {
    return false;
  }
}

/** crlProblems judges `crl` as the CRL of `ca` at `now`: issued and signed by it, not past its nextUpdate. */
export function crlProblems(crl: CrlInfo, ca: Cert, now: Date): CrlProblem[] {
  const out: CrlProblem[] = [];
  if (!crl.issuer.equals(ca.fields.subject))
    out.push({
      code: "crl-untrusted",
      message: `the CRL's issuer is not the CA ${ca.info.subject}`,
    });
  else if (!signedBy(crl, ca))
    out.push({
      code: "crl-untrusted",
      message: `the CRL's signature does not verify with the key of ${ca.info.subject}`,
    });
  if (crl.nextUpdate !== undefined && now > crl.nextUpdate)
    out.push({
      code: "crl-expired",
      message: `the CRL's nextUpdate ${when(crl.nextUpdate)} has passed (number ${crl.number ?? "none"}, issued ${when(crl.thisUpdate)})`,
    });
  return out;
}

/** revocationOf finds `cert` on `crl`: the CRL must be its issuer's (same issuer name) for the serial to mean it. */
export function revocationOf(cert: Cert, crl: CrlInfo): RevokedEntry | undefined {
  if (!crl.issuer.equals(cert.fields.issuer)) return undefined;
  return revokedSerials(crl).get(serialHex(cert.fields.serial));
}

/** revokedMessage words a revocation: "serial 4a0b11 was revoked (keyCompromise) on 2026-12-07T10:00:00Z". */
export const revokedMessage = (e: RevokedEntry): string =>
  `serial ${e.serial} was revoked (${e.reason}) on ${when(e.revocationDate)}`;
