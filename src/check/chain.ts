/**
 * Chain building and verification the way strict TLS peers do it (OpenSSL with -x509_strict, Go's
 * crypto/x509): from the leaf, through the intermediates the certificate file carries, to an
 * anchor of the verifier's bundle; every issuer must be a CA allowed to sign certificates, every
 * signature must verify with an algorithm they still accept (not SHA-1 or MD5), no certificate may
 * carry a critical extension they do not process, and every certificate must be valid at the time
 * of the check (see `invalidAt`). Extended key usage is checked along the whole chain, as Go does:
 * an intermediate restricted to clientAuth cannot vouch for a server.
 */
import { KNOWN_CRITICAL, keyUsageVerdict } from "./lint.ts";
import type { Cert, Material } from "./material.ts";

/** MAX_DEPTH bounds chain building (leaf, intermediates, anchor). */
const MAX_DEPTH = 8;

/** ChainFailure says why no trusted path exists. */
export type ChainFailure =
  /** no certificate in the bundle or the file's intermediates is named as the issuer. */
  | { kind: "unknown-issuer"; cert: Cert }
  /** a certificate named as the issuer exists, but its key did not make the signature. */
  | { kind: "bad-signature"; cert: Cert; issuer: Cert }
  /** the issuer is not a CA, or its keyUsage lacks keyCertSign, or its pathLen is exceeded. */
  | { kind: "issuer-not-ca"; cert: Cert; issuer: Cert; reason: string }
  /** the issuer's key made the signature, but with SHA-1 or MD5, which Go and OpenSSL 3 refuse. */
  | { kind: "weak-signature"; cert: Cert; issuer: Cert; hash: string }
  /** a certificate of the path has a critical extension neither Go nor OpenSSL processes. */
  | { kind: "critical-extension"; cert: Cert; extension: string }
  /** the path reaches the bundle only at a CA that is not a self-signed root, and its issuer is nowhere. */
  | { kind: "anchor-not-root"; cert: Cert; anchor: Cert };

/** ChainResult is a trusted path (leaf first, anchor last) or why there is none. */
export type ChainResult = { ok: true; path: Cert[] } | { ok: false; failure: ChainFailure };

const sameName = (a: Buffer, b: Buffer) => a.equals(b);

/** issuerProblem says why `issuer` may not sign at `depth` (number of CAs below it), or undefined. */
function issuerProblem(issuer: Cert, casBelow: number): string | undefined {
  const i = issuer.info;
  if (!i.isCA) return "it is not a CA (basicConstraints cA is not set)";
  if (i.keyUsage && !i.keyUsage.includes("keyCertSign")) return "its keyUsage lacks keyCertSign";
  if (i.pathLen !== undefined && casBelow > i.pathLen)
    return `its pathLenConstraint ${i.pathLen} allows ${i.pathLen} CA${i.pathLen === 1 ? "" : "s"} below it, the chain has ${casBelow}`;
  return undefined;
}

/**
 * WEAK_HASHES sign nothing a peer accepts below the anchor: Go refuses SHA-1 signatures since 1.18
 * (x509: cannot verify signature: insecure algorithm SHA1-ECDSA), and OpenSSL 3 at security level 1
 * and above (Node's default) refuses even to load such a certificate (`ca md too weak`). An
 * anchor's own self-signature is never checked, so a SHA-1 root still works.
 */
const WEAK_HASHES = new Set(["sha1", "md5"]);

/** unhandledCritical names a critical extension of `c` that Go or OpenSSL would refuse, or undefined. */
function unhandledCritical(c: Cert): string | undefined {
  const x = c.info.extensions.find((e) => e.critical && !KNOWN_CRITICAL.has(e.name ?? ""));
  return x && (x.name ?? x.oid);
}

/** trusted ends a path: a certificate on it with an unhandled critical extension fails it (OpenSSL, Go). */
function trusted(path: Cert[]): ChainResult {
  for (const cert of path) {
    const extension = unhandledCritical(cert);
    if (extension !== undefined) return { ok: false, failure: { kind: "critical-extension", cert, extension } };
  }
  return { ok: true, path };
}

/** candidates orders possible issuers: key identifier matches first (a CA rollover keeps the name). */
function candidates(cert: Cert, pool: readonly Cert[]): Cert[] {
  const named = pool.filter((c) => sameName(c.fields.subject, cert.fields.issuer));
  const aki = cert.info.authorityKeyId;
  return aki === undefined
    ? named
    : [...named.filter((c) => c.info.subjectKeyId === aki), ...named.filter((c) => c.info.subjectKeyId !== aki)];
}

/**
 * buildChain finds a trusted path from `leaf` to one of `anchors`, using `intermediates` (the
 * rest of the leaf's file). Validity dates are not judged here (see `invalidAt`).
 */
export function buildChain(
  material: Material,
  leaf: Cert,
  intermediates: readonly Cert[],
  anchors: readonly Cert[],
): ChainResult {
  const path: Cert[] = [leaf];
  let firstFailure: ChainFailure | undefined;
  // OpenSSL (and so Node) ends a path only at a self-signed root in the bundle: an intermediate
  // alone in the bundle fails with "unable to get issuer certificate" unless partial chains are
  // enabled, which neither Node nor the seeds' servers do. Go stops at any bundle certificate;
  // check follows the stricter of the two.
  let reachedAnchor: Cert | undefined;
  for (let cur = leaf; path.length <= MAX_DEPTH; ) {
    if (anchors.some((a) => a.sha256 === cur.sha256)) {
      if (cur.fields.subject.equals(cur.fields.issuer)) return trusted(path);
      reachedAnchor ??= cur;
    }
    const casBelow = path.length - 1;
    let next: Cert | undefined;
    for (const pool of [anchors, intermediates]) {
      for (const cand of candidates(cur, pool)) {
        if (path.some((p) => p.sha256 === cand.sha256)) continue;
        if (!material.signedBy(cur, cand)) {
          firstFailure ??= { kind: "bad-signature", cert: cur, issuer: cand };
          continue;
        }
        const hash = cur.info.signatureAlgorithm.hash;
        if (typeof hash === "string" && WEAK_HASHES.has(hash)) {
          firstFailure ??= { kind: "weak-signature", cert: cur, issuer: cand, hash };
          continue;
        }
        const problem = issuerProblem(cand, casBelow);
        if (problem) {
          firstFailure ??= { kind: "issuer-not-ca", cert: cur, issuer: cand, reason: problem };
          continue;
        }
        next = cand;
        break;
      }
      if (next) break;
    }
    if (!next)
      return {
        ok: false,
        failure: reachedAnchor
          ? { kind: "anchor-not-root", cert: leaf, anchor: reachedAnchor }
          : (firstFailure ?? { kind: "unknown-issuer", cert: cur }),
      };
    path.push(next);
    cur = next;
  }
  return { ok: false, failure: firstFailure ?? { kind: "unknown-issuer", cert: path[path.length - 1]! } };
}

/** invalidAt returns the first certificate of `path` that is not valid at `now`, and how. */
export function invalidAt(
  path: readonly Cert[],
  now: Date,
): { cert: Cert; how: "expired" | "not-yet-valid" } | undefined {
  const t = now.getTime();
  for (const c of path) {
    if (c.fields.notAfter.getTime() < t) return { cert: c, how: "expired" };
    if (c.fields.notBefore.getTime() > t) return { cert: c, how: "not-yet-valid" };
  }
  return undefined;
}

/** Purpose is the TLS role a certificate is presented in. */
export type Purpose = "serverAuth" | "clientAuth";

/** UsageProblem says which certificate of a path may not be used for a purpose, why, and the change that fixes it. */
export interface UsageProblem {
  cert: Cert;
  /** kind: the leaf's extendedKeyUsage, its keyUsage, or a CA's extendedKeyUsage above it. */
  kind: "eku" | "key-usage" | "ca-eku";
  reason: string;
  /** change: for key-usage, what the corrected leaf needs (add digitalSignature). */
  change?: string;
}

/**
 * purposeProblem says why `path` may not be used for `purpose`, or undefined. The leaf needs the
 * purpose in its extendedKeyUsage (or no extendedKeyUsage at all) and a keyUsage OpenSSL accepts
 * for it (see keyUsageVerdict; what only strict peers refuse is a warning on the certificate, not
 * a refused connection); CAs above it that carry extendedKeyUsage must include the purpose too
 * (anyExtendedKeyUsage does not stand for it: OpenSSL refuses such a CA, Go accepts it).
 * OpenSSL and Go both check the leaf's extendedKeyUsage; Go checks it along the chain.
 */
export function purposeProblem(path: readonly Cert[], purpose: Purpose): UsageProblem | undefined {
  const leaf = path[0]!;
  const eku = leaf.info.extKeyUsage;
  if (eku && !eku.includes(purpose))
    return {
      cert: leaf,
      kind: "eku",
      reason: `its extendedKeyUsage is ${eku.join(", ") || "empty"}, without ${purpose}`,
    };
  const ku = keyUsageVerdict(leaf, purpose);
  if (ku && !ku.strict) return { cert: leaf, kind: "key-usage", reason: ku.reason, change: ku.change };
  for (const ca of path.slice(1)) {
    const e = ca.info.extKeyUsage;
    // anyExtendedKeyUsage alone does not do: Go accepts it, OpenSSL's purpose check of the CA does
    // not count it (`openssl verify -purpose sslserver`: unsuitable certificate purpose at depth 1).
    if (e && !e.includes(purpose))
      return {
        cert: ca,
        kind: "ca-eku",
        reason: `the CA ${ca.info.subject} above it restricts extendedKeyUsage to ${e.join(", ")}${e.includes("anyExtendedKeyUsage") ? ` (OpenSSL does not count anyExtendedKeyUsage for ${purpose}; Go does)` : " (Go and OpenSSL check usage along the chain)"}`,
      };
  }
  return undefined;
}
