/**
 * The CRL `GET /v1/crl` answers: ca/crl.pem (what `mtlskit apply` and this server's revocations
 * sign) when it lists every revocation there is, else one signed here in memory that does.
 * "Every revocation" is ca/revoked.json (this host's) plus the ledger's revoked rows (every
 * replica's, shared through the database: Ledger.revoked), so a certificate revoked through
 * replica A is in replica B's CRL on B's next /v1/crl. The number of a CRL signed here comes
 * from the ledger's shared counter (Ledger.nextCrlNumber, at least one past the local
 * ca/crl-number), so no two replicas sign two different CRLs with one number.
 *
 * Bounded cost: each request asks the ledger one indexed query (revoked rows not yet expired)
 * and stats two files; a CRL is signed only when that set grew beyond what the served CRL lists,
 * the CA changed, or half of its lifetime passed; concurrent requests share one signing.
 */
import { statSync } from "node:fs";
import { BACKDATE_MS } from "../ca/policy.ts";
import type { Ledger, Revoked } from "../ledger/ledger.ts";
import type { LoadedManifest } from "../manifest/index.ts";
import { type CrlInfo, crlSignedBy, decodeCrl, type RevocationReason, signCrl } from "../pki/crl.ts";
import { crlEntries, DEFAULT_CRL_NEXT_UPDATE_MS } from "../plan/crl.ts";
import type { CaMaterial } from "../state/read.ts";
import { abs, LAYOUT } from "../state/layout.ts";
import { type Revocation, readCrl, readCrlNumber, readRevocations } from "../state/revocations.ts";

/** SharedCrlContext: what the CRL is made of. */
export interface SharedCrlContext {
  loaded: LoadedManifest;
  dir: string;
  ledger: Ledger;
  /** root: the CA that signs CRLs (the trust anchor, as apply signs them). */
  root(): CaMaterial;
}

/** Served is a CRL to answer with, and where it came from. */
export interface ServedCrl {
  der: Buffer;
  source: "disk" | "signed";
  number: bigint | undefined;
}

const toRevocation = (r: Revoked): Revocation => ({
  serial: r.serial,
  reason: r.reason as RevocationReason,
  revokedAt: r.revokedAt.toISOString(),
  service: r.service,
});

/** stampOf is a file's identity (inode, size, mtime), `-` when absent: a changed stamp means read again. */
function stampOf(file: string): string {
  try {
    const st = statSync(file);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return "-";
  }
}

/** signedBy: the CRL is `root`'s (issuer and signature); asked once per CRL and root (a WeakMap), not per request. */
const SIGNED = new WeakMap<CrlInfo, WeakMap<CaMaterial, boolean>>();
function signedBy(crl: CrlInfo, root: CaMaterial): boolean {
  let byRoot = SIGNED.get(crl);
  if (!byRoot) SIGNED.set(crl, (byRoot = new WeakMap()));
  let ok = byRoot.get(root);
  if (ok === undefined)
    byRoot.set(root, (ok = crl.issuer.equals(root.cert.subject) && crlSignedBy(crl, root.publicKey)));
  return ok;
}

/** covers: signed by `root`, lists every serial of `want`, and less than half of its lifetime old at `now`. */
function covers(crl: CrlInfo, root: CaMaterial, want: readonly string[], now: Date): boolean {
  if (crl.nextUpdate === undefined || !signedBy(crl, root)) return false;
  const half = crl.thisUpdate.getTime() + (crl.nextUpdate.getTime() - crl.thisUpdate.getTime()) / 2;
  if (now.getTime() >= half) return false;
  const listed = new Set(crl.entries.map((e) => e.serial));
  return want.every((s) => listed.has(s));
}

/** SharedCrl keeps the CRL /v1/crl serves (see the file's comment). */
export class SharedCrl {
  private signed: CrlInfo | undefined;
  private signing: Promise<CrlInfo> | undefined;
  /** disk: ca/crl.pem as last read, re-read only when its stat (inode, size, mtime) changes. */
  private disk: { stamp: string; crl: CrlInfo | undefined } = { stamp: "", crl: undefined };
  /** local: ca/revoked.json as last read, likewise. */
  private local: { stamp: string; list: Revocation[] } = { stamp: "", list: [] };

  constructor(private readonly ctx: SharedCrlContext) {}

  /**
   * current answers the CRL to serve at `now`: undefined when there is none and none can be
   * signed (no ca/crl.pem and the root's key offline). A ledger that cannot be read serves
   * ca/crl.pem as it is (a CRL a little behind beats none); revocations are never dropped.
   */
  async current(now: Date): Promise<ServedCrl | undefined> {
    const { ledger } = this.ctx;
    const root = this.ctx.root();
    const onDisk = this.readDisk();
    let shared: Revoked[];
    try {
      shared = await ledger.revoked(now);
    } catch {
      return onDisk && { der: onDisk.der, source: "disk", number: onDisk.number };
    }
    const local = this.readLocal();
    const want = [...new Set([...local.map((r) => r.serial), ...shared.map((r) => r.serial)])];
    if (onDisk && covers(onDisk, root, want, now)) return { der: onDisk.der, source: "disk", number: onDisk.number };
    if (this.signed && covers(this.signed, root, want, now))
      return { der: this.signed.der, source: "signed", number: this.signed.number };
    if (!root.privateKey) return onDisk && { der: onDisk.der, source: "disk", number: onDisk.number };
    this.signing ??= this.sign(root, [...local, ...shared.map(toRevocation)], onDisk, now).finally(() => {
      this.signing = undefined;
    });
    const made = await this.signing;
    return { der: made.der, source: "signed", number: made.number };
  }

  /** readLocal reads ca/revoked.json when it changed (a damaged file throws, as everywhere). */
  private readLocal(): Revocation[] {
    const stamp = stampOf(abs(this.ctx.dir, LAYOUT.revoked));
    if (stamp !== this.local.stamp) this.local = { stamp, list: readRevocations(this.ctx.dir) };
    return this.local.list;
  }

  /** readDisk reads ca/crl.pem when it changed (undefined: missing or damaged). */
  private readDisk(): CrlInfo | undefined {
    const stamp = stampOf(abs(this.ctx.dir, LAYOUT.crl));
    if (stamp !== this.disk.stamp) {
      const read = readCrl(this.ctx.dir);
      this.disk = { stamp, crl: read !== undefined && !("error" in read) ? read : undefined };
    }
    return this.disk.crl;
  }

  /** sign makes a CRL of `revocations` (and what ca/crl.pem lists) numbered by the shared counter. */
  private async sign(
    root: CaMaterial,
    revocations: Revocation[],
    disk: CrlInfo | undefined,
    now: Date,
  ): Promise<CrlInfo> {
    const local = readCrlNumber(this.ctx.dir) ?? 0n;
    const seen = [local, disk?.number ?? 0n, this.signed?.number ?? 0n].reduce((a, b) => (a > b ? a : b));
    const number = await this.ctx.ledger.nextCrlNumber(seen + 1n);
    // ca/crl.pem's entries stay listed too (an expired certificate's revocation may have left the ledger's list).
    const fromDisk: Revocation[] = (disk?.entries ?? []).map((e) => ({
      serial: e.serial,
      reason: e.reason,
      revokedAt: e.revocationDate.toISOString(),
    }));
    const nextUpdateMs = this.ctx.loaded.manifest.ca.crlNextUpdateMs ?? DEFAULT_CRL_NEXT_UPDATE_MS;
    const thisUpdate = new Date(now.getTime() - BACKDATE_MS);
    const der = signCrl(
      {
        thisUpdate,
        nextUpdate: new Date(thisUpdate.getTime() + BACKDATE_MS + nextUpdateMs),
        number,
        entries: crlEntries([...revocations, ...fromDisk]),
      },
      { subject: root.cert.subject, keyId: root.keyId, keyType: root.keyType, privateKey: root.privateKey! },
    );
    this.signed = decodeCrl(der);
    return this.signed;
  }
}
