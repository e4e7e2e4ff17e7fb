/**
 * The CA's revocation records: DIR/ca/revoked.json lists every certificate `mtlskit revoke`
 * revoked (serial, reason, when, and the service it belonged to), DIR/ca/crl-number the last
 * cRLNumber used, and DIR/ca/crl.pem the CRL apply signed from them. A damaged record is never
 * read as "nothing revoked": that would quietly un-revoke a compromised key, so it is an error.
 */
import { DecodeError, FailedError } from "../errors.ts";
import { readTextBounded } from "../read-file.ts";
import { decodeCrl, normalizeSerial, REVOCATION_REASONS, type CrlInfo, type RevocationReason } from "../pki/crl.ts";
import { parsePem } from "../pki/pem.ts";
import { syncDir, writeFileAtomic } from "./fs.ts";
import { abs, LAYOUT } from "./layout.ts";

/** Revocation is one revoked certificate as recorded. */
export interface Revocation {
  /** serial: minimal lowercase hex (pki/crl.ts normalizeSerial). */
  serial: string;
  reason: RevocationReason;
  /** revokedAt: when `mtlskit revoke` ran (ISO 8601, whole seconds): the CRL's revocationDate. */
  revokedAt: string;
  /** service and slot: whose certificate it was, when it was a managed service's. */
  service?: string;
  slot?: string;
  /** notAfter: the certificate's expiry, when known (ISO 8601). */
  notAfter?: string;
}

const FIX = "restore ca/revoked.json from a backup (it lists every revoked certificate), or fix the JSON by hand";

/** readRevocations returns the recorded revocations ([] when none were ever recorded); a damaged file throws FailedError (exit 3). */
export function readRevocations(dir: string): Revocation[] {
  const file = abs(dir, LAYOUT.revoked);
  let text: string;
  try {
    text = readTextBounded(file, { noFollow: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new FailedError(`pki: cannot read ${file}: ${(e as Error).message}\n    fix: ${FIX}`, { cause: e });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new FailedError(`pki: ${file} is not valid JSON (${(e as Error).message})\n    fix: ${FIX}`, { cause: e });
  }
  const list = (data as { revoked?: unknown })?.revoked;
  if (!Array.isArray(list)) throw new FailedError(`pki: ${file} has no "revoked" list\n    fix: ${FIX}`);
  return list.map((r: Partial<Revocation>, i) => {
    const serial = typeof r?.serial === "string" ? normalizeSerial(r.serial) : undefined;
    const when = typeof r?.revokedAt === "string" ? new Date(r.revokedAt) : undefined;
    if (
      serial === undefined ||
      !(typeof r.reason === "string" && Object.hasOwn(REVOCATION_REASONS, r.reason)) ||
      when === undefined ||
      Number.isNaN(when.getTime())
    )
      throw new FailedError(
        `pki: ${file}: revoked[${i}] needs a hex serial, a reason (${Object.keys(REVOCATION_REASONS).join(", ")}) and an ISO 8601 revokedAt\n    fix: ${FIX}`,
      );
    return { ...r, serial, reason: r.reason as RevocationReason, revokedAt: when.toISOString() } as Revocation;
  });
}

/** writeRevocations replaces ca/revoked.json atomically and makes the rename durable. */
export function writeRevocations(dir: string, list: readonly Revocation[]): void {
  writeFileAtomic(abs(dir, LAYOUT.revoked), `${JSON.stringify({ revoked: list }, null, 2)}\n`, LAYOUT.revoked.mode);
  syncDir(abs(dir, LAYOUT.caDir));
}

/** readCrlNumber returns the last cRLNumber recorded (0n when none), or undefined when the record is unreadable. */
export function readCrlNumber(dir: string): bigint | undefined {
  let text: string;
  try {
    text = readTextBounded(abs(dir, LAYOUT.crlNumber), { limit: 4096, noFollow: true });
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOENT" ? 0n : undefined;
  }
  return /^(0|[1-9][0-9]{0,40})\n?$/.test(text) ? BigInt(text.trim()) : undefined;
}

/**
 * writeCrlNumber records `n` durably. apply calls it before the CRL carrying `n` is written, so a
 * crash between the two skips a number and never reuses one (RFC 5280 5.2.3: monotonically increasing).
 */
export function writeCrlNumber(dir: string, n: bigint): void {
  writeFileAtomic(abs(dir, LAYOUT.crlNumber), `${n}\n`, LAYOUT.crlNumber.mode);
  syncDir(abs(dir, LAYOUT.caDir));
}

/** CrlState is ca/crl.pem as read: decoded, missing (undefined), or why it cannot be used. */
export type CrlState = CrlInfo | { error: string } | undefined;

/** parseCrlPem decodes the first X509 CRL block of PEM text (or says why not). */
export function parseCrlPem(text: string): CrlInfo | { error: string } {
  const block = parsePem(text).find((b) => b.label === "X509 CRL");
  if (!block) return { error: "holds no X509 CRL PEM block" };
  try {
    return decodeCrl(block.der);
  } catch (e) {
    if (e instanceof DecodeError) return { error: `is damaged (${e.message})` };
    throw e;
  }
}

/** readCrl reads ca/crl.pem. */
export function readCrl(dir: string): CrlState {
  try {
    return parseCrlPem(readTextBounded(abs(dir, LAYOUT.crl), { noFollow: true }));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    return { error: `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` };
  }
}
