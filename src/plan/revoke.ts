/**
 * revoke: record that certificates are revoked, in DIR/ca/revoked.json, under apply's lock.
 * The next apply signs a CRL listing them and re-issues the revoked services (plan says
 * "revoked (keyCompromise) on DATE"). A service is revoked by name (each of its current
 * certificates) or any certificate by serial (one of the CA's earlier ones, say).
 */
import { existsSync } from "node:fs";
import { FailedError, UsageError } from "../errors.ts";
import { managedServices, type LoadedManifest } from "../manifest/index.ts";
import { readCertFields } from "../pki/cert.ts";
import { normalizeSerial, REVOCATION_REASONS, serialHex, type RevocationReason } from "../pki/crl.ts";
import { parseCertificatesPem } from "../pki/pem.ts";
import { readTextBounded } from "../read-file.ts";
import { acquireLock, ioFailure } from "../state/fs.ts";
import { abs, LAYOUT } from "../state/layout.ts";
import { readRevocations, writeRevocations, type Revocation } from "../state/revocations.ts";

/** RevokeOptions: what to revoke, why and when. */
export interface RevokeOptions {
  /** reason: an RFC 5280 reason name. Default: unspecified. */
  reason?: string;
  /** now: the revocation time. Default: the current time. */
  now?: Date;
  /** lockWaitMs: how long to wait for a running apply. Default: 5000. */
  lockWaitMs?: number;
}

/** RevokeResult: what was newly recorded, and what was revoked already. */
export interface RevokeResult {
  added: Revocation[];
  already: Revocation[];
}

/** parseReason checks a --reason against REVOCATION_REASONS (exit 2 naming them). */
export function parseReason(text: string | undefined): RevocationReason {
  if (text === undefined) return "unspecified";
  if (Object.hasOwn(REVOCATION_REASONS, text)) return text as RevocationReason;
  throw new UsageError(
    `mtlskit revoke: --reason must be one of ${Object.keys(REVOCATION_REASONS).join(", ")} (RFC 5280 5.3.1); got ${JSON.stringify(text)}`,
  );
}

function readCert(file: string): { serial: string; notAfter: Date } | undefined {
  try {
    const der = parseCertificatesPem(readTextBounded(file, { noFollow: true }))[0];
    if (!der) return undefined;
    const f = readCertFields(der);
    return { serial: serialHex(f.serial), notAfter: f.notAfter };
  } catch {
    return undefined;
  }
}

/** targetsOf turns NAME|SERIAL into the revocations to record (without their time), or refuses (exit 2). */
function targetsOf(
  loaded: LoadedManifest,
  dir: string,
  target: string,
  reason: RevocationReason,
): Omit<Revocation, "revokedAt">[] {
  const m = loaded.manifest;
  const service = m.services.find((s) => s.name === target);
  if (service) {
    if (service.files)
      throw new UsageError(
        `mtlskit revoke: services.${service.name} names its own files (${service.files.cert}), which mtlskit's CA did not issue; revoke a certificate of this CA by its serial instead`,
      );
    const out = service.slots.flatMap((slot) => {
      const c = readCert(abs(dir, LAYOUT.cert(slot)));
      return c
        ? [{ serial: c.serial, reason, service: service.name, slot: slot.id, notAfter: c.notAfter.toISOString() }]
        : [];
    });
    if (out.length === 0)
      throw new UsageError(
        `mtlskit revoke: ${service.name} has no certificate in ${abs(dir, LAYOUT.serviceDir(service.name))}; there is nothing to revoke (run mtlskit apply first)`,
      );
    return out;
  }
  const serial = normalizeSerial(target);
  if (serial === undefined)
    throw new UsageError(
      `mtlskit revoke: ${JSON.stringify(target)} is neither a service of ${m.file} (${managedServices(m)
        .map((s) => s.name)
        .join(", ")}) nor a certificate serial in hex (such as 4a:0b:11 or 4A0B11, as openssl x509 -serial prints it)`,
    );
  // A serial of a managed service's current certificate is recorded with the service's name.
  for (const s of managedServices(m))
    for (const slot of s.slots) {
      const c = readCert(abs(dir, LAYOUT.cert(slot)));
      if (c?.serial === serial)
        return [{ serial, reason, service: s.name, slot: slot.id, notAfter: c.notAfter.toISOString() }];
    }
  return [{ serial, reason }];
}

/**
 * revoke records the revocation of `target` (a service name or a serial) in DIR/ca/revoked.json,
 * atomically and under apply's lock. Revoking again is a no-op (the first record stands).
 */
export function revoke(loaded: LoadedManifest, dir: string, target: string, opts: RevokeOptions = {}): RevokeResult {
  const reason = parseReason(opts.reason);
  if (!existsSync(abs(dir, LAYOUT.caDir)))
    throw new FailedError(
      `mtlskit revoke: ${dir} holds no CA (${abs(dir, LAYOUT.caDir)} is missing)\n    fix: run mtlskit apply -f ${loaded.manifest.file} --pki ${dir} first, or name the right --pki`,
    );
  const caSerial = readCert(abs(dir, LAYOUT.caCert))?.serial;
  const now = new Date(Math.floor((opts.now ?? new Date()).getTime() / 1000) * 1000);
  const wanted = targetsOf(loaded, dir, target, reason);
  if (wanted.some((w) => w.serial === caSerial))
    throw new UsageError(
      `mtlskit revoke: ${target} is the CA's own certificate; a CA is not revoked on its own CRL. Start a new CA instead`,
    );
  let lock;
  try {
    lock = acquireLock(abs(dir, LAYOUT.lock), { waitMs: opts.lockWaitMs ?? 5000 });
  } catch (e) {
    throw ioFailure(e, dir) ?? e;
  }
  try {
    const list = readRevocations(dir);
    const known = new Map(list.map((r) => [r.serial, r]));
    const added: Revocation[] = [];
    const already: Revocation[] = [];
    for (const w of wanted) {
      const have = known.get(w.serial);
      if (have) already.push(have);
      else added.push({ ...w, revokedAt: now.toISOString() });
    }
    if (added.length > 0) writeRevocations(dir, [...list, ...added]);
    return { added, already };
  } finally {
    lock.release();
  }
}
