/**
 * The dashboard's read model (issue 17): one Snapshot (snapshot.ts) from what check, status, the
 * rotation record and the ledger already know. `snapshotOf` is pure (facts in, Snapshot out, no
 * clock, no I/O); `readFacts` is the I/O edge that reads them; `buildSnapshot` is both;
 * `Versions` numbers snapshots by content.
 *
 * Certificates' SANs and usages come from pki/x509.ts's structural decoding of the DER check
 * already parsed (never Node's subjectaltname string: CVE-2021-44532). No private key, token
 * secret or ledger password is ever read into a Snapshot: keys are read by check only for their
 * public half, tokens are listed by id, and the ledger is named by ledgerName (redacted).
 */
import { createHash } from "node:crypto";
import { aboutLabel, checkPkiRead, isProblem, type Cert, type CheckReport, type Finding } from "../check/index.ts";
import type { Inventory } from "../check/inventory.ts";
import { onlineFactsOf } from "../check/online.ts";
import type { OnlineFacts } from "../state/online.ts";
import type { IssuedRecord, Ledger, TokenRecord } from "../ledger/index.ts";
import type { Manifest } from "../manifest/index.ts";
import { serialHex } from "../pki/crl.ts";
import { rotationOf } from "../status/index.ts";
import { abs, LAYOUT } from "../state/layout.ts";
import { readRevocations, type Revocation } from "../state/revocations.ts";
import { readRotation } from "../state/rotation.ts";
import type { Snapshot, UiCa, UiCertificate, UiOnline, Verdict } from "./snapshot.ts";

const DAY_MS = 86_400_000;

/** RotationSummary: status's summary of the rotation record (ca/rotation.ts summarize). */
type RotationSummary = NonNullable<ReturnType<typeof rotationOf>>;

/** RECENT: the newest issuances a snapshot lists (UiOnline.recent). */
export const RECENT = 100;

/** LeafFacts is what a certificate says of itself, decoded structurally (pki/x509.ts). */
export interface LeafFacts {
  serial: string;
  subject: string;
  sans: UiCertificate["sans"];
  usages: string[];
  notBefore: Date;
  notAfter: Date;
}

/** CaFacts is one CA certificate's own dates and what it is to this PKI. */
export interface CaFacts {
  notBefore: Date;
  role: UiCa["role"];
}

/** OnlineInput is what the ledger holds, as read (tokens without secrets: TokenRecord keeps only a hash, and none is copied here). */
export interface OnlineInput {
  /** ledger: redacted (ledgerName). */
  ledger: string;
  stats: { certificates: number; revoked: number; tokensOutstanding: number };
  recent: Pick<IssuedRecord, "serial" | "service" | "issuedAt" | "notAfter" | "requester" | "how">[];
  tokens: Pick<TokenRecord, "id" | "kind" | "service" | "expiresAt" | "usedAt" | "revokedAt">[];
  /** revocations: the ledger's revoked rows. */
  revocations: { serial: string; service: string | undefined; reason: string | undefined; at: Date }[];
  /** refusals: serve's refusals by reason (the dashboard mounted inside serve). */
  refusals?: { reason: string; count: number }[];
}

/** Facts are everything a Snapshot is made of. */
export interface Facts {
  manifest: Manifest;
  pkiDir: string;
  now: Date;
  report: CheckReport;
  /** leaves: per certificate slot id (`core`, `core/client`), its decoded leaf, when it could be read. */
  leaves: ReadonlyMap<string, LeafFacts>;
  /** cas: per CA SHA-256, its notBefore and role. */
  cas: ReadonlyMap<string, CaFacts>;
  /** revoked: serials revoked (ca/revoked.json and the ledger). */
  revoked: ReadonlySet<string>;
  /** fileRevocations: ca/revoked.json's entries (shown with the ledger's when there is one). */
  fileRevocations: readonly Revocation[];
  rotation: RotationSummary | undefined;
  online: OnlineInput | undefined;
}

const iso = (d: Date | undefined) => (d === undefined ? undefined : d.toISOString());
const daysUntil = (d: Date, now: Date) => Math.floor((d.getTime() - now.getTime()) / DAY_MS);

/** worst is the verdict of a set of findings: error, else warning, else ok (info is ok). */
function worst(findings: readonly Finding[], indexes: readonly number[]): Verdict {
  let v: Verdict = "ok";
  for (const i of indexes) {
    const s = findings[i]!.severity;
    if (s === "error") return "error";
    if (s === "warning") v = "warning";
  }
  return v;
}

/** SnapshotContent is a Snapshot before it is numbered. */
export type SnapshotContent = Omit<Snapshot, "version">;

/** snapshotOf turns facts into a Snapshot's content (pure). */
export function snapshotOf(f: Facts): SnapshotContent {
  const { report, manifest, now } = f;
  const findings = report.findings;
  const byCert = new Map<string, number[]>();
  const byService = new Map<string, number[]>();
  const byConnection = new Map<number, number[]>();
  const push = <K>(m: Map<K, number[]>, k: K, i: number) => {
    const list = m.get(k);
    if (list) list.push(i);
    else m.set(k, [i]);
  };
  findings.forEach((x, i) => {
    const a = x.about;
    if (a.kind === "certificate") {
      push(byCert, a.id, i);
      push(byService, a.service, i);
    } else if (a.kind === "service") push(byService, a.service, i);
    else if (a.kind === "connection") push(byConnection, a.index, i);
  });

  const servicesByName = new Map(manifest.services.map((s) => [s.name, s]));
  const certsOf = new Map<string, string[]>();
  const certificates: UiCertificate[] = report.certificates.map((c) => {
    const leaf = f.leaves.get(c.id);
    const service = servicesByName.get(c.service);
    const list = certsOf.get(c.service);
    if (list) list.push(c.id);
    else certsOf.set(c.service, [c.id]);
    const own = byCert.get(c.id) ?? [];
    const uris = leaf?.sans.filter((s) => s.type === "uri") ?? [];
    const serial = leaf?.serial ?? c.online?.serial;
    return {
      id: c.id,
      service: c.service,
      file: c.file,
      serial,
      subject: leaf?.subject ?? c.subject,
      sans: leaf?.sans ?? [],
      usages: leaf?.usages ?? [],
      identity: uris.length === 1 ? uris[0]!.value : undefined,
      notBefore: iso(leaf?.notBefore ?? c.online?.notBefore),
      notAfter: iso(c.notAfter),
      renewAt: iso(c.renewAt),
      daysLeft: c.notAfter === undefined ? undefined : daysUntil(c.notAfter, now),
      issuer: c.ca?.subject,
      sha256: c.sha256,
      source: c.online ? "online" : service?.files ? "files" : "apply",
      revoked: serial !== undefined && f.revoked.has(serial),
      verdict: worst(findings, own),
      findings: own,
    };
  });

  const services: Snapshot["services"] = manifest.services.map((s) => {
    const own = byService.get(s.name) ?? [];
    return {
      name: s.name,
      usage: s.usage,
      role: s.role,
      identity: s.identity,
      addresses: [...s.dns, ...s.ips.map((a) => a.text)],
      certificates: certsOf.get(s.name) ?? [],
      issuance: s.files ? "files" : s.csr ? "online" : "apply",
      verdict: worst(findings, own),
      findings: own,
    };
  });

  const seenCa = new Set<string>();
  const cas: UiCa[] = [];
  for (const c of report.cas) {
    if (seenCa.has(c.sha256)) continue;
    seenCa.add(c.sha256);
    const facts = f.cas.get(c.sha256);
    cas.push({
      subject: c.subject,
      role: facts?.role ?? "other",
      notBefore: (facts?.notBefore ?? c.notAfter).toISOString(),
      notAfter: c.notAfter.toISOString(),
      daysLeft: daysUntil(c.notAfter, now),
      sha256: c.sha256,
    });
  }

  const connections: Snapshot["connections"] = report.connections.map((c) => {
    const own = byConnection.get(c.index) ?? [];
    const v = worst(findings, own);
    return {
      index: c.index,
      from: c.from,
      to: c.to,
      address: c.address,
      verdict: c.ok ? (v === "error" ? "warning" : v) : "error",
      findings: own,
    };
  });

  const r = f.rotation;
  const rotation =
    r && r.phase !== "none"
      ? {
          phase: r.phase,
          since: r.since,
          next: r.phase === "retired" && r.reloadPending.length === 0 ? undefined : r.text,
        }
      : undefined;

  return {
    generatedAt: now.toISOString(),
    cluster: manifest.cluster,
    manifest: manifest.file,
    pki: f.pkiDir,
    counts: {
      services: manifest.services.length,
      certificates: report.certificates.length,
      errors: report.errors,
      warnings: report.warnings,
      renewalDue: report.certificates.filter(
        (c) => (c.renewAt !== undefined && c.renewAt <= now) || (c.notAfter !== undefined && c.notAfter <= now),
      ).length,
      connections: report.connections.length,
      failingConnections: report.connections.filter((c) => !c.ok).length,
    },
    services,
    certificates,
    cas,
    connections,
    findings: findings.map((x) => ({
      code: x.code,
      severity: x.severity,
      about: aboutLabel(x.about),
      message: x.message,
      fix: x.fix,
    })),
    ...(rotation ? { rotation } : {}),
    ...(f.online ? { online: onlineOf(f.online, f.fileRevocations, now) } : {}),
  };
}

/** onlineOf shapes the ledger's part: outstanding tokens (unused, unrevoked, unexpired), the revocations of both records. */
function onlineOf(o: OnlineInput, fileRevocations: readonly Revocation[], now: Date): UiOnline {
  const revocations = new Map<string, UiOnline["revocations"][number]>();
  for (const r of o.revocations)
    revocations.set(r.serial, { serial: r.serial, service: r.service, reason: r.reason, at: r.at.toISOString() });
  for (const r of fileRevocations)
    if (!revocations.has(r.serial))
      revocations.set(r.serial, { serial: r.serial, service: r.service, reason: r.reason, at: r.revokedAt });
  return {
    ledger: o.ledger,
    issued: o.stats.certificates,
    revoked: o.stats.revoked,
    recent: o.recent.slice(0, RECENT).map((r) => ({
      serial: r.serial,
      service: r.service,
      issuedAt: r.issuedAt.toISOString(),
      notAfter: r.notAfter.toISOString(),
      requester: r.requester || undefined,
      how: r.how,
    })),
    ...(o.refusals ? { refusals: o.refusals } : {}),
    tokens: o.tokens
      .filter((t) => t.usedAt === undefined && t.revokedAt === undefined && t.expiresAt > now)
      .map((t) => ({ id: t.id, service: t.service, expiresAt: t.expiresAt.toISOString(), acme: t.kind === "acme" })),
    revocations: [...revocations.values()].sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0)),
  };
}

/** leafFacts decodes what the dashboard shows of a certificate (check parsed it already: Cert.info is pki/x509.ts's). */
export function leafFacts(c: Cert): LeafFacts {
  const sans: LeafFacts["sans"] = [];
  for (const s of c.info.sans) if (s.type !== "other") sans.push({ type: s.type, value: s.value });
  return {
    serial: serialHex(c.fields.serial),
    subject: c.info.subject,
    sans,
    usages: c.info.extKeyUsage ?? [],
    notBefore: c.fields.notBefore,
    notAfter: c.fields.notAfter,
  };
}

/** inventoryFacts collects the leaves by slot and every CA certificate's notBefore and role from what check read. */
export function inventoryFacts(
  inv: Inventory,
  rotation: { oldCa: string; newCa: string } | undefined,
): { leaves: Map<string, LeafFacts>; cas: Map<string, CaFacts> } {
  const leaves = new Map<string, LeafFacts>();
  const cas = new Map<string, CaFacts>();
  const root = inv.ca && !isProblem(inv.ca) ? inv.ca.certs[0]?.sha256 : undefined;
  const intermediate = inv.intermediate && !isProblem(inv.intermediate) ? inv.intermediate.certs[0]?.sha256 : undefined;
  const roleOf = (sha: string): UiCa["role"] => {
    if (sha === root) return "root";
    if (sha === intermediate) return "intermediate";
    if (rotation && sha === rotation.newCa) return "next";
    if (rotation && sha === rotation.oldCa) return "retired";
    return "other";
  };
  const addCa = (c: Cert) => {
    if (!c.info.isCA || cas.has(c.sha256)) return;
    cas.set(c.sha256, { notBefore: c.fields.notBefore, role: roleOf(c.sha256) });
  };
  for (const f of [inv.ca, inv.intermediate]) if (f && !isProblem(f)) f.certs.forEach(addCa);
  const seenBundles = new Set<object>();
  for (const s of inv.services) {
    for (const slot of s.slots) {
      if (isProblem(slot.cert) || slot.cert.certs.length === 0) continue;
      leaves.set(slot.slot.id, leafFacts(slot.cert.certs[0]!));
      slot.cert.certs.slice(1).forEach(addCa);
    }
    if (!isProblem(s.bundle) && !seenBundles.has(s.bundle.certs)) {
      seenBundles.add(s.bundle.certs);
      s.bundle.certs.forEach(addCa);
    }
  }
  return { leaves, cas };
}

/** BuildOptions: the ledger (open, read-only is enough) and the clock. */
export interface BuildOptions {
  /** ledger: the online CA's ledger; undefined: nothing online (no ledger file). */
  ledger?: Ledger | undefined;
  /** ledgerName: how the ledger is shown (ledger/index.ts ledgerName: the file, or the redacted URL). Default: its kind. */
  ledgerName?: string;
  /** refusals: serve's refusals by reason, when mounted inside serve. */
  refusals?: { reason: string; count: number }[];
  now: Date;
}

/** LedgerPart is what the ledger says, read on the thread that holds the ledger: check's online facts and the dashboard's lists. */
export interface LedgerPart {
  facts: OnlineFacts;
  online: OnlineInput;
}

/** readLedgerPart reads the ledger's part of a snapshot (async: the ledger's own calls). */
export async function readLedgerPart(
  ledger: Ledger,
  manifest: Manifest,
  opts: { name: string; now: Date; refusals?: { reason: string; count: number }[] | undefined },
): Promise<LedgerPart> {
  const facts = await onlineFactsOf(ledger, manifest, opts.name, opts.now);
  const [recent, tokens, revoked] = await Promise.all([
    ledger.list({ limit: RECENT }),
    ledger.tokens(),
    ledger.revoked(new Date(0)),
  ]);
  return {
    facts,
    online: {
      ledger: opts.name,
      stats: facts.stats,
      recent: recent.map((r) => ({
        serial: r.serial,
        service: r.service,
        issuedAt: r.issuedAt,
        notAfter: r.notAfter,
        requester: r.requester,
        how: r.how,
      })),
      tokens: tokens.map((t) => ({
        id: t.id,
        kind: t.kind,
        service: t.service,
        expiresAt: t.expiresAt,
        usedAt: t.usedAt,
        revokedAt: t.revokedAt,
      })),
      revocations: revoked.map((r) => ({ serial: r.serial, service: r.service, reason: r.reason, at: r.revokedAt })),
      ...(opts.refusals ? { refusals: opts.refusals } : {}),
    },
  };
}

/** readPkiFacts is the PKI directory's part of the I/O edge (synchronous: check, the rotation record, the revocations), with the ledger's part already read. */
export function readPkiFacts(manifest: Manifest, pkiDir: string, now: Date, ledger: LedgerPart | undefined): Facts {
  const { report, inventory } = checkPkiRead(manifest, pkiDir, { now, ...(ledger ? { online: ledger.facts } : {}) });
  const read = readRotation(pkiDir);
  const { leaves, cas } = inventoryFacts(inventory, read.status === "ok" ? read.record : undefined);
  let fileRevocations: Revocation[] = [];
  try {
    fileRevocations = readRevocations(pkiDir);
  } catch {
    // A damaged ca/revoked.json is check's finding (in the report); nothing is shown as revoked from it.
  }
  const online = ledger?.online;
  const revokedSerials = new Set([
    ...fileRevocations.map((r) => r.serial),
    ...(online?.revocations.map((r) => r.serial) ?? []),
  ]);
  return {
    manifest,
    pkiDir,
    now,
    report,
    leaves,
    cas,
    revoked: revokedSerials,
    fileRevocations,
    rotation: rotationOf(manifest, pkiDir, now),
    online,
  };
}

/** readFacts is the I/O edge: the ledger's part, then the PKI directory's. */
export async function readFacts(manifest: Manifest, pkiDir: string, opts: BuildOptions): Promise<Facts> {
  const { now, ledger } = opts;
  const part = ledger
    ? await readLedgerPart(ledger, manifest, { name: opts.ledgerName ?? ledger.kind, now, refusals: opts.refusals })
    : undefined;
  return readPkiFacts(manifest, pkiDir, now, part);
}

/** buildSnapshot reads the PKI directory (and the ledger) and returns the Snapshot's content; number it with Versions. */
export async function buildSnapshot(manifest: Manifest, pkiDir: string, opts: BuildOptions): Promise<SnapshotContent> {
  return snapshotOf(await readFacts(manifest, pkiDir, opts));
}

/** SnapshotText is a snapshot's content as served: its JSON (generatedAt first) and its content hash (all but generatedAt). */
export interface SnapshotText {
  content: SnapshotContent;
  /** json: JSON.stringify(content), generatedAt its first member. */
  json: string;
  hash: string;
}

/** snapshotText serializes content once: the hash is over the JSON after generatedAt, so nothing is stringified twice. */
export function snapshotText(content: SnapshotContent): SnapshotText {
  const { generatedAt, ...rest } = content;
  const body = JSON.stringify(rest);
  const hash = createHash("sha256").update(body).digest("hex");
  const json =
    body === "{}"
      ? `{"generatedAt":${JSON.stringify(generatedAt)}}`
      : `{"generatedAt":${JSON.stringify(generatedAt)},${body.slice(1)}`;
  return { content, json, hash };
}

/** contentHash is a snapshot's SHA-256 over everything but generatedAt (and version). */
export function contentHash(s: SnapshotContent | Snapshot): string {
  const { version: _v, ...content } = s as Snapshot;
  return snapshotText(content).hash;
}

/** Versions numbers snapshots: the version goes up by one only when the content (all but generatedAt) changes. */
export class Versions {
  private version = 0;
  private hash = "";
  /** number gives the version of a content hash (snapshotText's): the last one again when the content did not change. */
  number(hash: string): number {
    if (hash !== this.hash || this.version === 0) {
      this.hash = hash;
      this.version += 1;
    }
    return this.version;
  }
  /** next numbers `content`. */
  next(content: SnapshotContent): Snapshot {
    return { version: this.number(snapshotText(content).hash), ...content };
  }
}

/** servedJson is a snapshot's JSON as served: the version first, then snapshotText's JSON. */
export const servedJson = (version: number, json: string): string => `{"version":${version},${json.slice(1)}`;

/** stampFiles: the files whose stat says a snapshot may have changed (apply, rotate, revoke, a renewal). */
export function stampFiles(manifest: Manifest, pkiDir: string): string[] {
  const files = [
    abs(pkiDir, LAYOUT.lastApply),
    abs(pkiDir, LAYOUT.caDir),
    abs(pkiDir, LAYOUT.caCert),
    abs(pkiDir, LAYOUT.caIntermediate),
    abs(pkiDir, LAYOUT.rotation),
    abs(pkiDir, LAYOUT.revoked),
    abs(pkiDir, LAYOUT.crl),
    abs(pkiDir, LAYOUT.nextCa.cert),
  ];
  for (const s of manifest.services) {
    if (s.files) {
      files.push(s.files.cert, s.files.ca);
      if (s.files.clientCert) files.push(s.files.clientCert);
      continue;
    }
    for (const slot of s.slots) files.push(abs(pkiDir, LAYOUT.cert(slot)));
    files.push(abs(pkiDir, LAYOUT.bundle(s.name)));
  }
  return files;
}
