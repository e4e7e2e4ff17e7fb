/**
 * The CA's CRL in the plan: planCrl (pure) decides whether ca/crl.pem is re-signed and why;
 * writeCrl signs it with the CA through pki/crl.ts (issue.ts's signer) and writes it, the
 * cRLNumber recorded first so a crash never lets a number be used twice.
 */
import { FailedError } from "../errors.ts";
import { formatDuration, type Manifest } from "../manifest/index.ts";
import { crlSignedBy, serialHex, signCrl, type RevokedEntry } from "../pki/crl.ts";
import { encodePem } from "../pki/pem.ts";
import { writeFileAtomic, syncDir } from "../state/fs.ts";
import { abs, LAYOUT } from "../state/layout.ts";
import type { CaMaterial, LeafState, State } from "../state/read.ts";
import { writeCrlNumber, type Revocation } from "../state/revocations.ts";

/** DEFAULT_CRL_NEXT_UPDATE_MS: a CRL's lifetime when the manifest has no ca.crl.nextUpdate (7 days; refreshed after 3.5). */
export const DEFAULT_CRL_NEXT_UPDATE_MS = 7 * 86_400_000;

/** CrlStep is the plan for ca/crl.pem. */
export interface CrlStep {
  action: "write" | "keep";
  /** reason: "missing", "revocation list changed: +4a0b11 (web, keyCompromise)", "due for refresh: ...". */
  reason: string;
  /** entries: what the CRL lists, oldest revocation first. */
  entries: RevokedEntry[];
  /** lifetimeMs: nextUpdate - thisUpdate of the CRL to write (the manifest's nextUpdate plus the backdate). */
  lifetimeMs: number;
  /** backdateMs: thisUpdate lies this far before issuance, as certificates' notBefore does. */
  backdateMs: number;
}

const day = (d: Date) => d.toISOString().slice(0, 10);
const entryKey = (e: RevokedEntry) => `${e.serial}/${e.reason}/${e.revocationDate.getTime()}`;

/** crlEntries are the CRL entries of the recorded revocations: one per serial (the first recorded), oldest first. */
export function crlEntries(revocations: readonly Revocation[]): RevokedEntry[] {
  const seen = new Set<string>();
  const out: RevokedEntry[] = [];
  for (const r of revocations) {
    if (seen.has(r.serial)) continue;
    seen.add(r.serial);
    out.push({ serial: r.serial, reason: r.reason, revocationDate: new Date(r.revokedAt) });
  }
  return out.sort(
    (a, b) => a.revocationDate.getTime() - b.revocationDate.getTime() || a.serial.localeCompare(b.serial),
  );
}

/** revocationOf finds the recorded revocation of a slot's current certificate. */
export function revocationOf(leaf: LeafState | undefined, revocations: readonly Revocation[]): Revocation | undefined {
  const cert = leaf?.cert;
  if (cert === undefined || "error" in cert || revocations.length === 0) return undefined;
  const serial = serialHex(cert.serial);
  return revocations.find((r) => r.serial === serial);
}

/** revokedReason is the plan's reason for re-issuing a revoked certificate: "revoked (keyCompromise) on 2026-12-07". */
export const revokedReason = (r: Revocation): string => `revoked (${r.reason}) on ${r.revokedAt.slice(0, 10)}`;

/**
 * planCrl decides whether ca/crl.pem is (re-)written: when it is missing or damaged, not signed by
 * the current CA, lists other revocations than ca/revoked.json, was made with another nextUpdate,
 * or half of its lifetime has passed (so a CRL is never stale while apply runs on its timer).
 */
export function planCrl(m: Manifest, state: State, ca: CaMaterial | undefined, now: Date, backdateMs: number): CrlStep {
  const entries = crlEntries(state.revocations ?? []);
  const nextUpdateMs = m.ca.crlNextUpdateMs ?? DEFAULT_CRL_NEXT_UPDATE_MS;
  const step = (action: CrlStep["action"], reason: string): CrlStep => ({
    action,
    reason,
    entries,
    lifetimeMs: nextUpdateMs + backdateMs,
    backdateMs,
  });
  const crl = state.crl;
  if (ca === undefined) return step("write", "CA is new");
  if (crl === undefined) return step("write", "missing");
  if ("error" in crl) return step("write", `ca/crl.pem ${crl.error}`);
  if (!crl.issuer.equals(ca.cert.subject) || !crlSignedBy(crl, ca.publicKey))
    return step("write", "not signed by the current CA");
  const have = new Set(crl.entries.map(entryKey));
  const want = new Set(entries.map(entryKey));
  const added = entries.filter((e) => !have.has(entryKey(e)));
  const removed = crl.entries.filter((e) => !want.has(entryKey(e)));
  if (added.length > 0 || removed.length > 0) {
    const service = new Map((state.revocations ?? []).map((r) => [r.serial, r.service]));
    const words = [
      ...added.map((e) => `+${e.serial} (${service.get(e.serial) ? `${service.get(e.serial)}, ` : ""}${e.reason})`),
      ...removed.map((e) => `-${e.serial}`),
    ];
    return step("write", `revocation list changed: ${words.join(" ")}`);
  }
  if (crl.nextUpdate === undefined) return step("write", "it has no nextUpdate");
  const lifetime = crl.nextUpdate.getTime() - crl.thisUpdate.getTime();
  if (lifetime !== nextUpdateMs + backdateMs)
    return step(
      "write",
      `nextUpdate changed: ${formatDuration(lifetime - backdateMs)} -> ${formatDuration(nextUpdateMs)}`,
    );
  const refreshAt = new Date(crl.thisUpdate.getTime() + backdateMs + nextUpdateMs / 2);
  if (now >= refreshAt)
    return step(
      "write",
      `due for refresh: next update ${crl.nextUpdate.toISOString()} (half of ${formatDuration(nextUpdateMs)} has passed)`,
    );
  return step("keep", `valid until ${day(crl.nextUpdate)}, refreshed from ${refreshAt.toISOString()}`);
}

/**
 * writeCrl signs and writes ca/crl.pem for a "write" step. The number is one past both the
 * recorded number and the current CRL's, and is recorded (fsynced) before the CRL is written.
 */
export function writeCrl(dir: string, step: CrlStep, ca: CaMaterial, state: State, now: Date): bigint {
  const privateKey = ca.privateKey;
  // The plan asked for the offline key (caKeyNeed) before anything was written, so this cannot happen.
  if (!privateKey) throw new FailedError("apply: the CRL's signing key is offline; this is a bug");
  const current = state.crl !== undefined && !("error" in state.crl) ? (state.crl.number ?? 0n) : 0n;
  const recorded = state.crlNumber ?? 0n;
  const number = (recorded > current ? recorded : current) + 1n;
  writeCrlNumber(dir, number);
  const der = signCrl(
    {
      thisUpdate: new Date(now.getTime() - step.backdateMs),
      nextUpdate: new Date(now.getTime() - step.backdateMs + step.lifetimeMs),
      number,
      entries: step.entries,
    },
    { subject: ca.cert.subject, keyId: ca.keyId, keyType: ca.keyType, privateKey },
  );
  writeFileAtomic(abs(dir, LAYOUT.crl), encodePem("X509 CRL", der), LAYOUT.crl.mode);
  syncDir(abs(dir, LAYOUT.caDir));
  return number;
}
