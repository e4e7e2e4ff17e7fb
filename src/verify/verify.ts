/**
 * judgeVerify (pure apart from signature checks): one certificate file against a trust bundle, the
 * way `openssl verify -x509_strict` and Go's crypto/x509 judge it, with check's chain builder
 * (check/chain.ts) and check's finding codes. Where the two verifiers differ, verify refuses what
 * either refuses (check's rule: the strictest peer's view), and test/verify.test.ts and
 * test/interop/verify.interop.ts name every such case:
 * - the rest of CERT is read as intermediates (a TLS server sends its file that way); `openssl
 *   verify` reads only the first certificate of CERT, so the equivalent command passes CERT again
 *   as `-untrusted`;
 * - a bundle without the self-signed root (an intermediate, or the leaf itself): OpenSSL refuses
 *   it, Go accepts it (anchor-not-root);
 * - -x509_strict's rules (a CA without keyUsage, a certificate without authorityKeyIdentifier, a
 *   CA without subjectKeyIdentifier): OpenSSL refuses, Go accepts;
 * - a host matched by the subject CN alone: OpenSSL accepts, Go refuses (Go 1.15 dropped it);
 * - extendedKeyUsage of CAs: both check it along the chain; anyExtendedKeyUsage alone passes Go,
 *   not OpenSSL;
 * - keyUsage without digitalSignature on the leaf: check's rule (the handshake signs with it).
 */
import { buildChain, purposeProblem, type ChainFailure, type Purpose } from "../check/chain.ts";
import type { Code } from "../check/codes.ts";
import { covers } from "../check/lint.ts";
import type { Cert, Material } from "../check/material.ts";
import { crlProblems, revocationOf, revokedMessage } from "../check/revocation.ts";
import type { CrlInfo } from "../pki/crl.ts";
import { addressOf } from "../pki/names.ts";

/** Usage is the TLS end the certificate is judged for (`--usage`). */
export type Usage = "server" | "client";

/** USAGES maps `--usage` to the extendedKeyUsage purpose and its check code. */
export const USAGES: Record<Usage, { purpose: Purpose; code: Code }> = {
  server: { purpose: "serverAuth", code: "eku-server" },
  client: { purpose: "clientAuth", code: "eku-client" },
};

/** VerifyInput is what `mtlskit verify` judges: certificates already parsed, file names for messages. */
export interface VerifyInput {
  /** certs: CERT's certificates, the leaf first, then intermediates. */
  certs: readonly Cert[];
  /** untrusted: `--untrusted` intermediates (never anchors). */
  untrusted: readonly Cert[];
  /** anchors: the trust bundle. */
  anchors: readonly Cert[];
  /** files: the names of CERT, the bundle and the intermediates, for messages and fixes. */
  files: { cert: string; ca: string; untrusted?: string | undefined };
  /** host: a DNS name or IP the certificate must carry as a SAN. */
  host?: string | undefined;
  usage?: Usage | undefined;
  /** at: when validity is judged. */
  at: Date;
  /** crl: the issuer's CRL (--crl), with its file name; the leaf must not be on it, and it must be the issuer's and current. Default: no revocation check. */
  crl?: { info: CrlInfo; file: string } | undefined;
}

/** Reason is one reason the certificate is not valid: a check code, what is wrong, and the fix. */
export interface Reason {
  code: Code;
  /** subject: the certificate the reason is about. */
  subject: string;
  message: string;
  fix: string;
}

/** Verdict is judgeVerify's answer: the path it built (leaf first, anchor last; empty when none) and every reason it is refused. */
export interface Verdict {
  ok: boolean;
  path: Cert[];
  reasons: Reason[];
}

const DAY = 86_400_000;
const when = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");
/** name names a certificate by its CN when it has one. */
const name = (c: Cert) =>
  c.info.subjectAttributes.CN !== undefined ? `CN=${c.info.subjectAttributes.CN}` : c.info.subject || "(empty subject)";
const issuerCn = (c: Cert) =>
  /(?:^|, )CN=([^,]*)/.exec(c.info.issuer)?.[0]?.replace(/^, /, "") ?? (c.info.issuer || "(empty issuer)");
const selfIssued = (c: Cert) => c.fields.subject.equals(c.fields.issuer);

/** chainReason words a chain failure with its fix. */
function chainReason(f: ChainFailure, leaf: Cert, files: VerifyInput["files"]): Reason {
  const { ca } = files;
  const inter = files.untrusted
    ? `after the leaf in ${files.cert} or in ${files.untrusted}`
    : `after the leaf in ${files.cert} (or with --untrusted FILE)`;
  switch (f.kind) {
    case "unknown-issuer":
      if (f.cert === leaf && selfIssued(leaf)) {
        return {
          code: "untrusted",
          subject: name(leaf),
          message: `${name(leaf)} is self-signed and not in ${ca}: a self-signed certificate is trusted only as itself (OpenSSL: self-signed certificate; Go: certificate signed by unknown authority)`,
          fix: `add ${files.cert} to ${ca} if this certificate is meant to be trusted as it is, or issue it from the CA in ${ca}`,
        };
      }
      return {
        code: "untrusted",
        subject: name(f.cert),
        message: `${name(f.cert)} was issued by ${issuerCn(f.cert)}, which is neither in ${ca} nor among the intermediates (OpenSSL: unable to get local issuer certificate; Go: certificate signed by unknown authority)`,
        fix: `if ${issuerCn(f.cert)} is an intermediate CA, put it ${inter}; if it is a root, add it to ${ca}; otherwise re-issue from a CA ${ca} trusts`,
      };
    case "bad-signature":
      return {
        code: "bad-signature",
        subject: name(f.cert),
        message: `${name(f.issuer)} has the issuer's name but not the key that signed ${name(f.cert)} (a CA re-created under the same name, or an altered file)`,
        fix: `find the CA certificate whose key signed it (compare authority key identifiers with \`mtlskit inspect\`), or re-issue ${name(f.cert)} from ${name(f.issuer)}`,
      };
    case "issuer-not-ca":
      return {
        code: "untrusted",
        subject: name(f.issuer),
        message: `${name(f.issuer)}, the issuer of ${name(f.cert)}, may not sign certificates: ${f.reason}`,
        fix: /pathLen/.test(f.reason)
          ? `re-issue ${name(f.issuer)} with a larger pathLenConstraint (or none), or issue ${name(f.cert)} closer to the root`
          : `issue certificates only from a CA certificate (basicConstraints cA=TRUE, keyUsage keyCertSign)`,
      };
    case "weak-signature":
      return {
        code: "weak-signature",
        subject: name(f.cert),
        message: `${name(f.cert)} is signed with ${f.cert.info.signatureAlgorithm.name}: Go refuses ${f.hash.toUpperCase()} (insecure algorithm) and OpenSSL 3 refuses it (ca md too weak)`,
        fix: `re-issue ${name(f.cert)} with a SHA-256 signature`,
      };
    case "critical-extension":
      return {
        code: "critical-extension",
        subject: name(f.cert),
        message: `${name(f.cert)} has the critical extension ${f.extension}, which Go and OpenSSL do not process (unhandled critical extension)`,
        fix: `re-issue ${name(f.cert)} without ${f.extension}, or with it not critical`,
      };
    case "anchor-not-root":
      return {
        code: "untrusted",
        subject: name(f.anchor),
        message: `the chain reaches ${ca} only at ${name(f.anchor)}, which is not a self-signed root, and its issuer ${issuerCn(f.anchor)} is nowhere: OpenSSL refuses it (unable to get issuer certificate), Go accepts it`,
        fix: `add the root CA ${issuerCn(f.anchor)} to ${ca}`,
      };
  }
}

/**
 * strictReasons are what `openssl verify -x509_strict` refuses on a built path and Go accepts
 * (OpenSSL 3.0 crypto/x509/x509_vfy.c check_extensions, X509_V_FLAG_X509_STRICT).
 */
function strictReasons(path: readonly Cert[]): Reason[] {
  const out: Reason[] = [];
  path.forEach((c, i) => {
    const isCaHere = i > 0;
    const root = i === path.length - 1 && selfIssued(c);
    if (isCaHere && c.info.keyUsage === undefined)
      out.push({
        code: "ca-key-usage",
        subject: name(c),
        message: `the CA ${name(c)} has no keyUsage extension: openssl verify -x509_strict refuses it (CA cert does not include key usage extension), Go accepts it`,
        fix: `re-issue ${name(c)} with keyUsage = critical, keyCertSign, cRLSign`,
      });
    if (!root && !selfIssued(c) && c.info.authorityKeyId === undefined)
      out.push({
        code: "key-ids",
        subject: name(c),
        message: `${name(c)} has no authorityKeyIdentifier: openssl verify -x509_strict refuses it (Missing Authority Key Identifier), Go accepts it`,
        fix: `re-issue ${name(c)} with authorityKeyIdentifier = keyid (RFC 5280 4.2.1.1)`,
      });
    if (isCaHere && c.info.subjectKeyId === undefined)
      out.push({
        code: "key-ids",
        subject: name(c),
        message: `the CA ${name(c)} has no subjectKeyIdentifier: openssl verify -x509_strict refuses it (Missing Subject Key Identifier), Go accepts it`,
        fix: `re-issue ${name(c)} with subjectKeyIdentifier = hash (RFC 5280 4.2.1.2)`,
      });
  });
  return out;
}

/** timeReasons: every certificate of `path` not valid at `at`. */
function timeReasons(path: readonly Cert[], at: Date): Reason[] {
  const t = at.getTime();
  return path.flatMap((c): Reason[] => {
    const who = c === path[0] ? name(c) : `the CA ${name(c)}`;
    if (c.fields.notAfter.getTime() < t)
      return [
        {
          code: "expired",
          subject: name(c),
          message: `${who} expired at ${when(c.fields.notAfter)}, ${Math.floor((t - c.fields.notAfter.getTime()) / DAY)} days before ${when(at)} (OpenSSL: certificate has expired; Go: certificate has expired or is not yet valid)`,
          fix:
            c === path[0]
              ? `issue a new certificate`
              : `renew the CA ${name(c)} (same key and name) or move to a new CA, and re-issue below it`,
        },
      ];
    if (c.fields.notBefore.getTime() > t)
      return [
        {
          code: "not-yet-valid",
          subject: name(c),
          message: `${who} is not valid until ${when(c.fields.notBefore)}, after ${when(at)} (OpenSSL: certificate is not yet valid; Go: certificate has expired or is not yet valid)`,
          fix: `check the clock of the host that issued it and of this one; issue it with notBefore in the past`,
        },
      ];
    return [];
  });
}

/** usageReason: the path may not be used for `usage`. */
function usageReason(path: readonly Cert[], usage: Usage): Reason | undefined {
  const { purpose, code } = USAGES[usage];
  const p = purposeProblem(path, purpose);
  if (!p) return undefined;
  if (p.kind === "key-usage")
    return {
      code: "key-usage",
      subject: name(p.cert),
      message: `${name(p.cert)} ${p.reason}`,
      fix: `re-issue it with keyUsage digitalSignature`,
    };
  if (p.kind === "ca-eku")
    return {
      code,
      subject: name(p.cert),
      message: `${name(path[0]!)} may not be used as a ${usage}: ${p.reason}; OpenSSL refuses it too (unsuitable certificate purpose)`,
      fix: `re-issue the CA ${name(p.cert)} without extendedKeyUsage (or with ${purpose}), or issue ${name(path[0]!)} from a CA without the restriction`,
    };
  return {
    code,
    subject: name(p.cert),
    message: `${name(p.cert)} may not be used as a ${usage}: ${p.reason} (OpenSSL: unsuitable certificate purpose; Go: certificate specifies an incompatible key usage)`,
    fix: `re-issue it with extendedKeyUsage ${purpose}`,
  };
}

/** hostReason: the leaf's SANs do not carry `host` (the CN never counts). */
function hostReason(leaf: Cert, host: string): Reason | undefined {
  const address = addressOf(host);
  if (covers(leaf, address)) return undefined;
  const sans = leaf.info.sans
    .filter((s) => s.type === "dns" || s.type === "ip")
    .map((s) => (s.type === "ip" ? `IP:${s.value}` : `DNS:${s.value}`));
  const asDns = address.kind === "ip" && leaf.info.sans.some((s) => s.type === "dns" && s.value === host);
  const cnOnly = address.kind === "dns" && leaf.info.subjectAttributes.CN?.toLowerCase() === host.toLowerCase();
  const note = asDns
    ? `; ${host} is there as a DNS SAN, which never matches an IP`
    : cnOnly
      ? `; it is the subject CN, which Go ignores (OpenSSL still accepts a CN when there is no DNS SAN)`
      : "";
  return {
    code: asDns ? "san-ip-as-dns" : "san-missing",
    subject: name(leaf),
    message: `${name(leaf)} is not valid for ${host}: its SANs are ${sans.join(", ") || "none"}${note} (OpenSSL: ${address.kind === "ip" ? "IP address" : "hostname"} mismatch; Go: certificate is valid for ..., not ${host})`,
    fix: `re-issue it with the SAN ${address.kind === "ip" ? "IP" : "DNS"}:${host}`,
  };
}

/** orderReason: CERT starts with a CA and holds a leaf further down. */
function orderReason(certs: readonly Cert[], file: string): { reason: Reason; leaf: number } | undefined {
  const leafAt = certs.findIndex((c) => !c.info.isCA);
  if (!certs[0]?.info.isCA || leafAt < 1) return undefined;
  const leaf = certs[leafAt]!;
  return {
    leaf: leafAt,
    reason: {
      code: "chain-order",
      subject: name(leaf),
      message: `${file} starts with the CA certificate ${name(certs[0])}; the leaf ${name(leaf)} is certificate ${leafAt + 1}, so a server presents the CA (openssl verify and Go judge that first certificate instead)`,
      fix: `put the leaf first, then the intermediates: e.g. \`cat leaf.pem intermediate.pem > ${file}\``,
    },
  };
}

/**
 * crlReasons: with --crl, as `openssl verify -crl_check` judges the leaf: the CRL must be its
 * issuer's (signed by it) and current at `at`, and must not list the leaf's serial.
 */
function crlReasons(leaf: Cert, issuer: Cert | undefined, crl: { info: CrlInfo; file: string }, at: Date): Reason[] {
  const out: Reason[] = [];
  const subject = leaf.info.subject;
  if (issuer)
    for (const p of crlProblems(crl.info, issuer, at))
      out.push({
        code: p.code,
        subject,
        message: `${crl.file}: ${p.message}`,
        fix:
          p.code === "crl-expired"
            ? "fetch the CA's current CRL (mtlskit apply re-signs DIR/ca/crl.pem before half its lifetime has passed)"
            : `give the CRL of the leaf's issuer ${issuer.info.subject} (mtlskit apply writes it to DIR/ca/crl.pem)`,
      });
  const entry = revocationOf(leaf, crl.info);
  if (entry)
    out.push({
      code: "revoked",
      subject,
      message: `${revokedMessage(entry)} (${crl.file})`,
      fix: "replace the certificate: a revoked one is never valid again (for a managed service, mtlskit apply re-issues it)",
    });
  return out;
}

/** judgeVerify judges CERT against the bundle at `input.at`, for the usage and host when given. */
export function judgeVerify(material: Material, input: VerifyInput): Verdict {
  const reasons: Reason[] = [];
  const order = orderReason(input.certs, input.files.cert);
  if (order) reasons.push(order.reason);
  const leafAt = order?.leaf ?? 0;
  const leaf = input.certs[leafAt]!;
  const intermediates = [...input.certs.filter((_, i) => i !== leafAt), ...input.untrusted];
  const r = buildChain(material, leaf, intermediates, input.anchors);
  const path = r.ok ? r.path : [];
  if (!r.ok) reasons.push(chainReason(r.failure, leaf, input.files));
  else reasons.push(...strictReasons(path));
  // Without a path, what the leaf alone shows is still worth saying.
  const judged = r.ok ? path : [leaf];
  reasons.push(...timeReasons(judged, input.at));
  if (input.usage) {
    const u = usageReason(judged, input.usage);
    if (u) reasons.push(u);
  }
  if (input.host !== undefined) {
    const h = hostReason(leaf, input.host);
    if (h) reasons.push(h);
  }
  if (input.crl) reasons.push(...crlReasons(leaf, r.ok ? path[1] : undefined, input.crl, input.at));
  return { ok: reasons.length === 0, path, reasons };
}
