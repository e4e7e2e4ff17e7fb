/**
 * The online issuance path: a PEM request is decoded (pki/csr.ts), judged by the one policy
 * (ca/policy.ts csrPolicy: the manifest's SANs, identity, usage and key type; the lifetime the
 * service's ttl, capped by serve.maxTtl and the CA's own notAfter), signed by pki/issue.ts's
 * encodeTbs/signTbs (apply's and sign's signer), and recorded in the ledger with the token it
 * consumes. Only once the ledger says the row is durable does the certificate leave: a crash
 * before that loses a certificate nobody holds, never a row.
 */
import { createHash } from "node:crypto";
import { csrPolicyAsync, sanWords, type CsrPolicyOptions } from "../ca/policy.ts";
import { DecodeError } from "../errors.ts";
import { LedgerUnavailableError, type IssuedRecord, type Ledger, type RecordOutcome } from "../ledger/ledger.ts";
import type { Manifest, Service } from "../manifest/index.ts";
import { serialHex } from "../pki/crl.ts";
import { readCertFields } from "../pki/cert.ts";
import { csrSignature, decodeCsr, type CsrFields } from "../pki/csr.ts";
import { encodeTbs, newSerial, signTbsAsync } from "../pki/issue.ts";
import { encodePem, parsePem } from "../pki/pem.ts";
import type { Authority } from "./authority.ts";
import { ServeProblem } from "./problem.ts";

/** DEFAULT_TTL_MS: an online certificate's lifetime when the service declares no ttl. */
export const DEFAULT_TTL_MS = 3_600_000;
/** DEFAULT_MAX_TTL_MS: serve.maxTtl when the manifest has no serve section. */
export const DEFAULT_MAX_TTL_MS = 24 * 3_600_000;

/** lifetimeOf is the lifetime an online certificate of `service` gets: its ttl (default 1h), at most serve.maxTtl (default 24h). */
export function lifetimeOf(m: Manifest, service: Service): number {
  return Math.min(service.ttlMs ?? DEFAULT_TTL_MS, m.serve?.maxTtlMs ?? DEFAULT_MAX_TTL_MS);
}

/** Issued is the 201 body of enroll and renew (docs/online-ca.md). */
export interface Issued {
  serial: string;
  certificate: string;
  chain: string;
  bundle: string;
  notBefore: string;
  notAfter: string;
  renewAfter: string;
}

const REMAKE = "send the PEM request `mtlskit agent` or `mtlskit csr` makes (-----BEGIN CERTIFICATE REQUEST-----)";

/**
 * CSR_PEM: the text `mtlskit agent` and openssl send, exactly one CERTIFICATE REQUEST block and
 * nothing else (no RFC 1421 headers). It is decoded without parsePem's general pass over lines
 * (split, join, header scan); any other text takes that pass and gets its precise refusal.
 */
const CSR_PEM = /^-----BEGIN CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END CERTIFICATE REQUEST-----\s*$/;

/** csrDer is the DER of a CSR_PEM text whose body is canonical base64, else undefined. */
function csrDer(text: string): Buffer | undefined {
  const m = CSR_PEM.exec(text);
  if (!m) return undefined;
  const body = m[1]!.replace(/\r?\n/g, "");
  return /^[A-Za-z0-9+/]*={0,2}$/.test(body) && body.length % 4 === 0 ? Buffer.from(body, "base64") : undefined;
}

/** parseCsrText reads the body's `csr`: exactly one PEM CERTIFICATE REQUEST, decoded; anything else is csr-malformed. */
export function parseCsrText(text: string): CsrFields {
  const fast = csrDer(text);
  if (fast !== undefined) return decodeCsrOrRefuse(fast);
  let blocks: ReturnType<typeof parsePem>;
  try {
    blocks = parsePem(text);
  } catch (e) {
    throw new ServeProblem("csr-malformed", `csr is not PEM: ${(e as Error).message.replace(/^pem: /, "")}`, REMAKE);
  }
  const reqs = blocks.filter((b) => b.label === "CERTIFICATE REQUEST" || b.label === "NEW CERTIFICATE REQUEST");
  if (reqs.length !== 1 || blocks.length !== 1)
    throw new ServeProblem(
      "csr-malformed",
      blocks.some((b) => b.label === "CERTIFICATE")
        ? "csr holds a CERTIFICATE, not a certificate request: the CA makes the certificate from a request"
        : blocks.length === 0
          ? "csr holds no PEM block"
          : `csr holds ${blocks.map((b) => b.label).join(", ")}; exactly one CERTIFICATE REQUEST is expected`,
      REMAKE,
    );
  return decodeCsrOrRefuse(reqs[0]!.der);
}

/** decodeCsrOrRefuse decodes a request's DER; a damaged one is csr-malformed. */
function decodeCsrOrRefuse(der: Buffer): CsrFields {
  try {
    return decodeCsr(der);
  } catch (e) {
    if (e instanceof DecodeError) throw new ServeProblem("csr-malformed", `csr is damaged: ${e.message}`, REMAKE);
    throw new ServeProblem("csr-malformed", "csr is not a PKCS#10 request", REMAKE);
  }
}

/** IssueRequest is one online issuance: for whom, with what, paid by what. */
export interface IssueRequest {
  service: Service;
  csr: CsrFields;
  how: "enroll" | "renew" | "acme";
  /** policy: what an ACME order narrows (csrPolicy's names and cnMayBeASan). Default: none. */
  policy?: Pick<CsrPolicyOptions, "names" | "cnMayBeASan" | "cn">;
  /** tokenId: the enrollment's token, consumed with the row. */
  tokenId?: string;
  /** renewedFrom: the serial the renewal authenticated with. */
  renewedFrom?: string;
  requester: string;
}

/** IssueContext is what the path reads: the manifest, the CA, the ledger, the clock. */
export interface IssueContext {
  manifest: Manifest;
  authority: Authority;
  ledger: Ledger;
  /** now: whole seconds (certificate times have no fraction). */
  now: Date;
  /** serial makes serials. Default: newSerial. */
  serial?: () => Buffer;
}

/** OUTCOME_PROBLEM words a ledger refusal; nothing was written. */
const OUTCOME_PROBLEM: Record<Exclude<RecordOutcome, { ok: true }>["reason"], () => ServeProblem> = {
  "token-used": () =>
    new ServeProblem(
      "token-used",
      "the token was used already",
      "ask the operator for a new token (`mtlskit token create`)",
    ),
  "token-expired": () =>
    new ServeProblem(
      "token-expired",
      "the token has expired",
      "ask the operator for a new token (`mtlskit token create`)",
    ),
  "token-revoked": () =>
    new ServeProblem(
      "token-revoked",
      "the token was revoked",
      "ask the operator for a new token (`mtlskit token create`)",
    ),
  "token-unknown": () =>
    new ServeProblem(
      "token-unknown",
      "the token is not known to this CA",
      "ask the operator for a new token (`mtlskit token create`)",
    ),
  "duplicate-serial": () =>
    new ServeProblem("internal", "the ledger already holds a certificate with this serial", "retry the request"),
};

/** ledgerDown is the 503 for a ledger that failed. */
export function ledgerDown(e: unknown): ServeProblem {
  return new ServeProblem(
    "ledger-unavailable",
    `the ledger cannot record certificates now${e instanceof LedgerUnavailableError ? `: ${e.message}` : ""}; nothing was issued`,
    "retry later; the operator should check the ledger (DIR/ca/ledger.db and its disk, or the PostgreSQL database `serve --ledger` names)",
  );
}

/**
 * reissued answers an enrollment retried after an ambiguous commit (the ledger committed the row
 * and consumed the token, but the answer was lost: a 503, a dropped connection): when the token
 * `tokenId` paid for `serial`, that row is this service's enrollment, still valid and unrevoked,
 * and its public key is the request's (whose self-signature verifies: the presenter holds the
 * key), the same certificate is the answer. Anything else: undefined, and the caller refuses the
 * used token as before. Nothing is signed or written.
 */
export async function reissued(
  ctx: Omit<IssueContext, "serial">,
  req: { service: Service; csr: CsrFields; tokenId: string; serial: string | undefined },
): Promise<Issued | undefined> {
  if (req.serial === undefined || csrSignature(req.csr) !== "valid") return undefined;
  let row: IssuedRecord | undefined;
  try {
    row = await ctx.ledger.get(req.serial);
  } catch (e) {
    throw ledgerDown(e);
  }
  if (
    row === undefined ||
    row.how !== "enroll" ||
    row.tokenId !== req.tokenId ||
    row.service !== req.service.name ||
    row.revokedAt !== undefined ||
    row.notAfter <= ctx.now
  )
    return undefined;
  if (!readCertFields(row.der).spki.equals(req.csr.spki)) return undefined;
  const certificate = encodePem("CERTIFICATE", row.der);
  const lifetime = row.notAfter.getTime() - row.issuedAt.getTime();
  return {
    serial: row.serial,
    certificate,
    chain: certificate + ctx.authority.issuerFor(req.service.name).chainPem,
    bundle: ctx.authority.bundlePem,
    notBefore: row.notBefore.toISOString(),
    notAfter: row.notAfter.toISOString(),
    renewAfter: new Date(row.issuedAt.getTime() + Math.floor((lifetime * 2) / 3)).toISOString(),
  };
}

/**
 * issueOnline judges, signs and records one request; it resolves with the 201 body only after the
 * ledger holds the row (and consumed the token). Refusals are ServeProblems; nothing is recorded.
 */
export async function issueOnline(ctx: IssueContext, req: IssueRequest): Promise<Issued> {
  const { service, csr } = req;
  const ca = ctx.authority.issuerFor(service.name);
  const now = ctx.now;
  // The signature checks (the request's, then the CA's own) run in libuv's thread pool: the
  // event loop, which bounds serve's rate, only imports the key and encodes (docs/online-ca.md).
  const judged = await csrPolicyAsync(service, csr, now, {
    ...req.policy,
    lifetimeMs: lifetimeOf(ctx.manifest, service),
    notAfterMax: ca.cert.notAfter,
  });
  if (!judged.ok) {
    const sig = judged.refusals.find((r) => r.field === "signature");
    if (sig && judged.refusals.length === 1)
      throw new ServeProblem("csr-signature", `csr signature ${sig.message}`, sig.fix, judged.refusals);
    throw new ServeProblem(
      "policy",
      `the request asks for what the manifest does not declare for ${service.name}: ${judged.refusals.map((r) => `${r.field} ${r.message}`).join("; ")}`,
      judged.refusals[0]!.fix,
      judged.refusals,
    );
  }
  const privateKey = ca.privateKey;
  if (!privateKey)
    throw new ServeProblem(
      "ca-offline",
      "the issuing CA's key is not in the PKI directory",
      "the operator must put the issuing key back, or declare ca.intermediate",
    );
  if (judged.spec.notAfter <= now)
    throw new ServeProblem("ca-offline", "the issuing CA has expired", "the operator must renew or rotate the CA");
  const issuer = { subject: ca.cert.subject, keyId: ca.keyId, keyType: ca.keyType, privateKey };
  const serialBytes = (ctx.serial ?? newSerial)();
  const der = await signTbsAsync(encodeTbs(judged.spec, issuer, judged.spki, serialBytes), issuer);
  const serial = serialHex(serialBytes);
  const row: IssuedRecord = {
    serial,
    service: service.name,
    sans: sanWords(judged.spec),
    notBefore: judged.spec.notBefore,
    notAfter: judged.spec.notAfter,
    sha256: createHash("sha256").update(der).digest("hex"),
    der,
    how: req.how,
    tokenId: req.tokenId,
    renewedFrom: req.renewedFrom,
    requester: req.requester,
    issuedAt: now,
    revokedAt: undefined,
    revokedReason: undefined,
  };
  let outcome: RecordOutcome;
  try {
    outcome = await ctx.ledger.record(row, req.tokenId === undefined ? undefined : { tokenId: req.tokenId, now });
  } catch (e) {
    throw ledgerDown(e);
  }
  if (!outcome.ok) throw OUTCOME_PROBLEM[outcome.reason]();
  const certificate = encodePem("CERTIFICATE", der);
  const lifetime = judged.spec.notAfter.getTime() - now.getTime();
  return {
    serial,
    certificate,
    chain: certificate + ca.chainPem,
    bundle: ctx.authority.bundlePem,
    notBefore: judged.spec.notBefore.toISOString(),
    notAfter: judged.spec.notAfter.toISOString(),
    renewAfter: new Date(now.getTime() + Math.floor((lifetime * 2) / 3)).toISOString(),
  };
}
