/**
 * judgeProbe: what two connection attempts to a live endpoint showed, judged. Pure apart from
 * signature checks: observations (connect.ts), the service's trust bundle, the manifest and the
 * time go in; a ProbeReport comes out. The server's chain is judged with check's own chain
 * building and usage rules (buildChain, invalidAt, purposeProblem, covers), so probe and check
 * never disagree about a certificate; failed handshakes are worded by explain's catalogue.
 */
import { covers, type Cert, type Material } from "../check/index.ts";
import { keyUsageVerdict, sanList } from "../check/lint.ts";
import { buildChain, invalidAt, purposeProblem, type ChainFailure } from "../check/chain.ts";
import { explain, type Match } from "../explain/index.ts";
import type { Manifest } from "../manifest/index.ts";
import { addressOf } from "../pki/names.ts";
import { peerFromDer } from "../service/peer.ts";
import { PROBE_CODES, type ProbeCode } from "./codes.ts";
import type { Observation } from "./connect.ts";

/** ProbeFinding is one thing probe found. */
export interface ProbeFinding {
  code: ProbeCode;
  severity: "error" | "warning";
  message: string;
  fix: string;
}

/** PresentedCert is one certificate of the chain the server sent, in order. */
export interface PresentedCert {
  subject: string;
  issuer: string;
  notAfter: Date;
  /** daysLeft: whole days until notAfter (negative once expired). */
  daysLeft: number;
  sha256: string;
  sans: string;
}

/** Diagnosis is a failed attempt: the error as Node reported it and explain's reading of it. */
export interface Diagnosis {
  code: string;
  message: string;
  /** explained: the catalogue entry recognised in the message, with its cause and fix; undefined when none. */
  explained: { id: string; title: string; meaning: string | undefined; cause: string; fix: string } | undefined;
}

/** ProbeInput is everything the judgement needs. */
export interface ProbeInput {
  host: string;
  port: number;
  /** servername: the DNS name sent as SNI and verified instead of `host` (a name dialed through an IP, a proxy or a tunnel). */
  servername?: string;
  /** as: the service probed as (its name), or undefined with explicit files. */
  as: string | undefined;
  /** bundle: the service's trust anchors, and where they were read from. */
  bundle: readonly Cert[];
  bundlePath: string;
  /** manifest: to name the server's identity and the declared connection; undefined with explicit files. */
  manifest: Manifest | undefined;
  /** anonymous: the attempt without a client certificate. */
  anonymous: Observation;
  /** authenticated: the attempt with the service's certificate. */
  authenticated: Observation;
  now: Date;
  material: Material;
}

/** ProbeReport is everything probe found about one endpoint. */
export interface ProbeReport {
  host: string;
  port: number;
  /** servername: the SNI name sent and verified instead of host, when one was given. */
  servername: string | undefined;
  as: string | undefined;
  now: Date;
  /** unreachable: no TCP connection could be made at all; nothing else was judged. */
  unreachable: Diagnosis | undefined;
  /** clientCertificate: what the server did with a client that presented none. */
  clientCertificate: { demanded: boolean; how: string };
  /** session: the authenticated attempt's outcome. */
  session: {
    ok: boolean;
    protocol: string | undefined;
    cipher: string | undefined;
    alpn: string | undefined;
    failure: Diagnosis | undefined;
  };
  chain: PresentedCert[];
  /** verification: the presented chain against the service's bundle. */
  verification: { trusted: boolean; path: string[]; reason: string | undefined } | undefined;
  /** identity: the server's single URI SAN and the declared service it names. */
  identity: { uri: string | undefined; problem: string | undefined; service: string | undefined } | undefined;
  findings: ProbeFinding[];
  errors: number;
  warnings: number;
}

const DAY = 86_400_000;
const date = (d: Date) => d.toISOString().slice(0, 10);
const cn = (c: Cert) =>
  c.info.subjectAttributes.CN !== undefined ? `CN=${c.info.subjectAttributes.CN}` : c.info.subject || "(empty subject)";

/** diagnose words a failed attempt with explain; we are the client, so its client-side reading is the one shown. */
export function diagnose(error: { code: string; message: string }): Diagnosis {
  // "could not connect" is a client-side clue in explain's CONTEXTS: the side is ours.
  const m: Match | undefined = explain(`could not connect: ${error.code}: ${error.message}`).matches[0];
  const meaning = m?.meaning?.replace(/^The client logged this: /, "");
  return { ...error, explained: m && { id: m.entry.id, title: m.entry.title, meaning, cause: m.cause, fix: m.fix } };
}

/** briefly shortens an OpenSSL error line to its code and reason: `ERR_SSL_TLSV1_ALERT_UNKNOWN_CA (tlsv1 alert unknown ca)`. */
export function briefly(e: { code: string; message: string }): string {
  const reason = /SSL routines:[^:\n]*:([^:\n]+):/.exec(e.message)?.[1];
  return reason ? `${e.code} (${reason})` : e.message.split("\n")[0]!;
}

/** failureWords says why a chain does not reach the bundle, in the words check uses for the same failure. */
export function failureWords(f: ChainFailure, bundle: string): string {
  switch (f.kind) {
    case "unknown-issuer":
      return `its issuer ${f.cert.info.issuer} is not in ${bundle}, nor among the certificates the server sent: it was signed by a CA this service does not trust`;
    case "bad-signature":
      return `${cn(f.issuer)} in ${bundle} has the issuer's name but not the key that signed ${cn(f.cert)} (a CA re-created under the same name?)`;
    case "issuer-not-ca":
      return `${cn(f.cert)}'s issuer ${cn(f.issuer)} may not sign certificates: ${f.reason}`;
    case "weak-signature":
      return `${cn(f.cert)} is signed with ${f.cert.info.signatureAlgorithm.name}, which Go and OpenSSL 3 refuse`;
    case "critical-extension":
      return `${cn(f.cert)} has the critical extension ${f.extension}, which Go and OpenSSL do not process`;
    case "anchor-not-root":
      return `it reaches ${bundle} only at ${cn(f.anchor)}, which is not a self-signed root; OpenSSL and Node refuse such a chain`;
  }
}

/** REFUSALS: explain entries that mean the server refused the client's certificate (its alert, or its hang-up). */
const REFUSALS = new Set([
  "peer-bad-certificate",
  "peer-unknown-ca",
  "peer-expired",
  "certificate-required",
  "peer-closed",
  "handshake-failure",
]);

/** judgeProbe judges the two attempts. */
export function judgeProbe(p: ProbeInput): ProbeReport {
  const findings: ProbeFinding[] = [];
  const add = (code: ProbeCode, message: string, fix: string) =>
    findings.push({ code, severity: PROBE_CODES[code].severity, message, fix });
  const where = `${p.host}:${p.port}`;
  const base = { host: p.host, port: p.port, servername: p.servername, as: p.as, now: p.now };
  const unreached = [p.anonymous, p.authenticated].find((o) => !o.reached);
  if (unreached) {
    return {
      ...base,
      unreachable: diagnose(unreached.error!),
      clientCertificate: { demanded: false, how: "not reached" },
      session: { ok: false, protocol: undefined, cipher: undefined, alpn: undefined, failure: undefined },
      chain: [],
      verification: undefined,
      identity: undefined,
      findings,
      errors: 0,
      warnings: 0,
    };
  }

  // 1. Without a client certificate.
  const a = p.anonymous;
  let clientCertificate: ProbeReport["clientCertificate"];
  if (a.accepted) {
    clientCertificate = {
      demanded: false,
      how: `the server completed a ${a.protocol} handshake with no client certificate and kept the connection open`,
    };
    add(
      "server-accepts-anonymous",
      `${where} accepted a client that presented no certificate (${a.protocol}, kept open after the handshake): anyone who reaches the port is served`,
      "require and verify client certificates on the server: Node `requestCert: true, rejectUnauthorized: true`, Go `ClientAuth: tls.RequireAndVerifyClientCert`, nginx `ssl_verify_client on`, openssl s_server `-Verify 1`",
    );
  } else {
    const d = diagnose(a.error!);
    const byAlert = d.explained && d.explained.id !== "plaintext-mismatch" && d.explained.id !== "timeout";
    clientCertificate = {
      demanded: Boolean(byAlert),
      how: byAlert
        ? `the server refused the handshake: ${d.explained!.title} (${a.error!.code})`
        : `the attempt failed: ${a.error!.message.split("\n")[0]}`,
    };
  }

  // 2. With the service's certificate.
  const s = p.authenticated;
  const refusal = s.accepted ? undefined : diagnose(s.error!);
  const session = { ok: s.accepted, protocol: s.protocol, cipher: s.cipher, alpn: s.alpn, failure: refusal };
  if (refusal) {
    const e = refusal.explained;
    const refused = s.handshake || (e !== undefined && REFUSALS.has(e.id));
    const words = e ? ` ${e.meaning ?? e.cause}` : "";
    if (refused && e?.id !== "plaintext-mismatch") {
      add(
        "client-refused",
        `${where} refused ${p.as ?? "our"}${p.as ? "'s" : ""} certificate: ${briefly(refusal)}.${words}`,
        e?.fix ?? `read the server's log for its reason, and run \`mtlskit check\``,
      );
    } else {
      add(
        "handshake-failed",
        `no TLS session with ${where}: ${briefly(refusal)}.${words}`,
        e?.fix ?? "check that the port serves TLS: `openssl s_client -connect HOST:PORT`",
      );
    }
  }

  // The server's certificate: from the authenticated attempt, else what the anonymous one saw.
  const ders = s.chain.length > 0 ? s.chain : a.chain;
  const certs = ders.map((d) => p.material.cert(d));
  const chain: PresentedCert[] = certs.map((c) => ({
    subject: c.info.subject,
    issuer: c.info.issuer,
    notAfter: c.fields.notAfter,
    daysLeft: Math.floor((c.fields.notAfter.getTime() - p.now.getTime()) / DAY),
    sha256: c.sha256,
    sans: sanList(c),
  }));
  let verification: ProbeReport["verification"];
  let identity: ProbeReport["identity"];
  const leaf = certs[0];
  if (leaf) {
    const r = buildChain(p.material, leaf, certs.slice(1), p.bundle);
    verification = r.ok
      ? { trusted: true, path: r.path.map((c) => c.info.subject), reason: undefined }
      : { trusted: false, path: [], reason: failureWords(r.failure, p.bundlePath) };
    if (!r.ok)
      add(
        "server-untrusted",
        `the server's certificate ${cn(leaf)} does not chain to ${p.bundlePath}: ${verification.reason}`,
        `give the server a certificate issued by the CA in ${p.bundlePath} (\`mtlskit apply\` for a managed service), or put its CA in the bundle if it is meant to be trusted`,
      );
    const path = r.ok ? r.path : [leaf];
    const usage = purposeProblem(path, "serverAuth");
    if (usage)
      add(
        "server-usage",
        `the server's certificate ${usage.cert === leaf ? cn(leaf) : `chain (${cn(usage.cert)})`} may not serve: ${usage.reason}`,
        usage.kind === "ca-eku"
          ? `re-issue the CA ${usage.cert.info.subject} without the extendedKeyUsage restriction`
          : usage.kind === "key-usage"
            ? `re-issue the server's certificate: ${usage.change} (\`mtlskit apply\` re-issues a managed service's; its profiles always set digitalSignature)`
            : `issue the server a certificate with extendedKeyUsage serverAuth (usage: server or dual in the manifest, then \`mtlskit apply\`)`,
      );
    const strict = usage ? undefined : keyUsageVerdict(leaf, "serverAuth");
    if (strict?.strict)
      add(
        "server-usage-strict",
        `the server's certificate ${cn(leaf)} works with OpenSSL and Go clients, but ${strict.reason}`,
        `re-issue the server's certificate: ${strict.change} (\`mtlskit apply\` re-issues a managed service's)`,
      );
    const bad = invalidAt(path, p.now);
    if (bad)
      add(
        "server-validity",
        `${bad.cert === leaf ? "the server's certificate" : `the CA ${cn(bad.cert)} in the server's chain`} ${bad.how === "expired" ? `expired on ${date(bad.cert.fields.notAfter)}` : `is not valid until ${bad.cert.fields.notBefore.toISOString()}`}`,
        bad.cert === leaf
          ? "issue the server a new certificate (`mtlskit apply` re-issues managed ones) and restart it"
          : "renew the CA and distribute the new bundle",
      );
    const name = p.servername ?? p.host;
    const address = addressOf(name);
    const asked = p.servername === undefined ? `we dialed ${name}` : `we dialed ${p.host} as ${name} (--servername)`;
    if (!covers(leaf, address))
      add(
        "server-address",
        `${asked}, but the server's certificate has ${address.kind === "ip" ? "no IP SAN" : "no DNS SAN matching"} ${name} (SANs: ${sanList(leaf)})`,
        `add ${name} to the server's addresses (services.NAME.addresses, then \`mtlskit apply\`), or dial an address it lists`,
      );
    identity = judgeIdentity(p, leaf, add);
    if (!bad) {
      const server =
        identity?.service === undefined ? undefined : p.manifest?.services.find((x) => x.name === identity!.service);
      const windowMs = server?.renewBeforeMs ?? 30 * DAY;
      const left = leaf.fields.notAfter.getTime() - p.now.getTime();
      if (left < windowMs)
        add(
          "server-expiring",
          `the server's certificate expires on ${date(leaf.fields.notAfter)}, in ${Math.floor(left / DAY)} days, inside ${server ? `${server.name}'s renewal window` : "30 days"}`,
          server && !server.files ? "run `mtlskit apply` and restart the server" : "renew the server's certificate",
        );
    }
  }
  const errors = findings.filter((f) => f.severity === "error").length;
  return {
    ...base,
    unreachable: undefined,
    clientCertificate,
    session,
    chain,
    verification,
    identity,
    findings,
    errors,
    warnings: findings.length - errors,
  };
}

/** judgeIdentity reads the server's one URI SAN and finds the declared service and connection it should be. */
function judgeIdentity(
  p: ProbeInput,
  leaf: Cert,
  add: (code: ProbeCode, message: string, fix: string) => void,
): ProbeReport["identity"] {
  const peer = peerFromDer(leaf.der);
  const uri = peer.identity?.uri;
  const problem = peer.noIdentity?.message;
  const m = p.manifest;
  if (!m || m.identityTemplate === undefined) return { uri, problem, service: undefined };
  const host = (p.servername ?? p.host).toLowerCase();
  const declared = m.connections.filter((c) => c.from === p.as && c.address.text.toLowerCase() === host);
  const expected = declared.map((c) => c.to);
  const service = uri === undefined ? undefined : m.services.find((s) => s.identity === uri)?.name;
  const fix =
    expected.length > 0
      ? `deploy ${expected.join(" or ")}'s own certificate on the server at ${p.host}:${p.port}, or dial the address the manifest names for it`
      : `check which service listens on ${p.host}:${p.port}`;
  if (uri === undefined)
    add(
      "server-identity",
      `the server's certificate has ${problem}; its identity must be exactly one URI SAN${expected.length ? ` (${m.services.find((s) => s.name === expected[0])?.identity})` : ""}`,
      fix,
    );
  else if (service === undefined)
    add("server-identity", `the server presents the identity ${uri}, which is no service of ${m.file}`, fix);
  else if (expected.length > 0 && !expected.includes(service))
    add(
      "server-identity",
      `the server at ${p.host} is ${service} (${uri}), but ${m.file} says ${p.as} dials ${expected.join(" or ")} there`,
      fix,
    );
  else if (expected.length === 0)
    add(
      "connection-undeclared",
      `the server is ${service} (${uri}), but ${m.file} declares no connection from ${p.as} to ${service} at ${p.host}`,
      `add \`{ from: ${p.as}, to: ${service}, address: ${p.host} }\` to connections (and ${p.host} to ${service}'s addresses if it is missing), so \`mtlskit check\` judges it`,
    );
  return { uri, problem, service };
}
