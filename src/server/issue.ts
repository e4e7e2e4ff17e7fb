/**
 * The online issuance path: a PEM request is decoded (pki/csr.ts), judged by the one policy
 * (ca/policy.ts csrPolicy: the manifest's SANs, identity, usage and key type; the lifetime the
 * service's ttl, capped by serve.maxTtl and the CA's own notAfter), signed by pki/issue.ts's
 * encodeTbs/signTbs (apply's and sign's signer), and recorded in the ledger with the token it
 * consumes. Only once the ledger says the row is durable does the certificate leave: a crash
 * before that loses a certificate nobody holds, never a row.
 */
import { createHash, type KeyObject } from "node:crypto";
import { csrPolicy, csrPolicyAsync, sanWords, type CsrPolicyOptions, type Refusal } from "../ca/policy.ts";
import { DecodeError } from "../errors.ts";
import { LedgerUnavailableError, type IssuedRecord, type Ledger, type RecordOutcome } from "../ledger/ledger.ts";
import type { Manifest, Service } from "../manifest/index.ts";
import { serialHex } from "../pki/crl.ts";
import { readCertFields } from "../pki/cert.ts";
import { csrSignature, decodeCsr, type CsrFields } from "../pki/csr.ts";
import { encodeTbs, newSerial, signTbs, signTbsAsync, type CertSpec, type Issuer } from "../pki/issue.ts";
import type { KeyTypeName } from "../pki/keys.ts";
import { encodePem, parsePem } from "../pki/pem.ts";
import type { CaMaterial } from "../state/read.ts";
import type { Authority } from "./authority.ts";
import { ServeProblem } from "./problem.ts";
import type { SignerPool } from "./signer.ts";

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
  if (fast !== undefined) return parseCsrDer(fast);
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
  return parseCsrDer(reqs[0]!.der);
}

/** parseCsrDer decodes a request's DER; a damaged one is csr-malformed. */
export function parseCsrDer(der: Buffer): CsrFields {
  try {
    return decodeCsr(der);
  } catch (e) {
    if (e instanceof DecodeError) throw new ServeProblem("csr-malformed", `csr is damaged: ${e.message}`, REMAKE);
    throw new ServeProblem("csr-malformed", "csr is not a PKCS#10 request", REMAKE);
  }
}

/** CsrInput is a request as issueOnline takes it: decoded, or the body's text (decoded where it is judged: a signer thread when there is one). */
export type CsrInput = CsrFields | { pem: string };

/** IssueRequest is one online issuance: for whom, with what, paid by what. */
export interface IssueRequest {
  service: Service;
  /** csr: the request; as `{pem}` it is read as parseCsrText reads it (csr-malformed refusals the same). */
  csr: CsrInput;
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
  /** signer: the signer threads (signer.ts) that judge and sign off the event loop. Default: none, in this thread (csrPolicyAsync, signTbsAsync). */
  signer?: SignerPool;
}

/** Signed is a judged and signed request: what the ledger row and the answer need, before the row is recorded. */
export interface Signed {
  serial: string;
  der: Buffer;
  /** sha256 of der, lowercase hex. */
  sha256: string;
  /** sans: sanWords of the certificate. */
  sans: string[];
  notBefore: Date;
  notAfter: Date;
  /** certificate: der as PEM. */
  certificate: string;
}

/** SigningCa is what signing needs of the issuing CA (a CaMaterial, or its copy in a signer thread). */
export interface SigningCa {
  subject: Buffer;
  keyId: Buffer;
  keyType: KeyTypeName;
  /** privateKey: undefined when kept offline (ca-offline). */
  privateKey: KeyObject | undefined;
  notAfter: Date;
}

/** refusalOf words csrPolicy's refusals: csr-signature when the self-signature alone failed, else policy (422) with every refusal. */
export function refusalOf(service: string, refusals: Refusal[]): ServeProblem {
  const sig = refusals.find((r) => r.field === "signature");
  if (sig && refusals.length === 1)
    return new ServeProblem("csr-signature", `csr signature ${sig.message}`, sig.fix, refusals);
  return new ServeProblem(
    "policy",
    `the request asks for what the manifest does not declare for ${service}: ${refusals.map((r) => `${r.field} ${r.message}`).join("; ")}`,
    refusals[0]!.fix,
    refusals,
  );
}

/** signerOf is the CA as a signer for a judged spec; an offline key or an expired CA is ca-offline. */
function signerOf(ca: SigningCa, spec: CertSpec, now: Date): Issuer {
  const privateKey = ca.privateKey;
  if (!privateKey)
    throw new ServeProblem(
      "ca-offline",
      "the issuing CA's key is not in the PKI directory",
      "the operator must put the issuing key back, or declare ca.intermediate",
    );
  if (spec.notAfter <= now)
    throw new ServeProblem("ca-offline", "the issuing CA has expired", "the operator must renew or rotate the CA");
  return { subject: ca.subject, keyId: ca.keyId, keyType: ca.keyType, privateKey };
}

/** signedOf is the signed certificate's facts. */
function signedOf(der: Buffer, serialBytes: Buffer, spec: CertSpec): Signed {
  return {
    serial: serialHex(serialBytes),
    der,
    sha256: createHash("sha256").update(der).digest("hex"),
    sans: sanWords(spec),
    notBefore: spec.notBefore,
    notAfter: spec.notAfter,
    certificate: encodePem("CERTIFICATE", der),
  };
}

/** SignOptions: csrPolicy's options of one request (the lifetime, an ACME order's narrowing). */
export type SignOptions = Pick<CsrPolicyOptions, "names" | "cnMayBeASan" | "cn" | "lifetimeMs">;

/**
 * judgeAndSign is issueOnline's judging and signing, synchronously (a signer thread's work): the
 * request decoded (text as parseCsrText, bytes as parseCsrDer), csrPolicy (its self-signature
 * checked here), the CA's checks, encodeTbs and signTbs. Refusals are thrown as ServeProblems.
 */
export function judgeAndSign(
  service: Service,
  input: string | Buffer,
  now: Date,
  opts: SignOptions,
  ca: SigningCa,
  serialBytes: Buffer,
): Signed {
  const csr = typeof input === "string" ? parseCsrText(input) : parseCsrDer(input);
  const judged = csrPolicy(service, csr, now, { ...opts, notAfterMax: ca.notAfter });
  if (!judged.ok) throw refusalOf(service.name, judged.refusals);
  const issuer = signerOf(ca, judged.spec, now);
  return signedOf(signTbs(encodeTbs(judged.spec, issuer, judged.spki, serialBytes), issuer), serialBytes, judged.spec);
}

/** signingCa is a CaMaterial as signing reads it. */
export const signingCa = (ca: CaMaterial): SigningCa => ({
  subject: ca.cert.subject,
  keyId: ca.keyId,
  keyType: ca.keyType,
  privateKey: ca.privateKey,
  notAfter: ca.cert.notAfter,
});

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
  const { service } = req;
  const ca = ctx.authority.issuerFor(service.name);
  const now = ctx.now;
  const opts: SignOptions = { ...req.policy, lifetimeMs: lifetimeOf(ctx.manifest, service) };
  // With signer threads the request is decoded, judged and signed there (signer.ts): the event
  // loop, which bounds serve's rate, keeps HTTP, the token, the ledger and the answer.
  const threaded = ctx.signer?.sign(service, "pem" in req.csr ? req.csr.pem : req.csr.der, now, opts, ca, ctx.serial);
  const s = await (threaded ?? signHere(service, req.csr, now, opts, ca, ctx.serial ?? newSerial));
  const row: IssuedRecord = {
    serial: s.serial,
    service: service.name,
    sans: s.sans,
    notBefore: s.notBefore,
    notAfter: s.notAfter,
    sha256: s.sha256,
    der: s.der,
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
  const lifetime = s.notAfter.getTime() - now.getTime();
  return {
    serial: s.serial,
    certificate: s.certificate,
    chain: s.certificate + ca.chainPem,
    bundle: ctx.authority.bundlePem,
    notBefore: s.notBefore.toISOString(),
    notAfter: s.notAfter.toISOString(),
    renewAfter: new Date(now.getTime() + Math.floor((lifetime * 2) / 3)).toISOString(),
  };
}

/**
 * signHere judges and signs on this thread, with the signature checks (the request's, then the
 * CA's own) in libuv's thread pool: the event loop only imports the key and encodes.
 */
async function signHere(
  service: Service,
  input: CsrInput,
  now: Date,
  opts: SignOptions,
  ca: CaMaterial,
  serial: () => Buffer,
): Promise<Signed> {
  const csr = "pem" in input ? parseCsrText(input.pem) : input;
  const judged = await csrPolicyAsync(service, csr, now, { ...opts, notAfterMax: ca.cert.notAfter });
  if (!judged.ok) throw refusalOf(service.name, judged.refusals);
  const issuer = signerOf(signingCa(ca), judged.spec, now);
  const serialBytes = serial();
  const der = await signTbsAsync(encodeTbs(judged.spec, issuer, judged.spki, serialBytes), issuer);
  return signedOf(der, serialBytes, judged.spec);
}
