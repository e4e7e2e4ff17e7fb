/**
 * The reverse probe (`mtlskit probe --listen`): a TLS server with the service's certificate that
 * requests, but does not require or verify, a client certificate (requestCert: true,
 * rejectUnauthorized: false), so that it SEES whatever a client presents; `judgeClient` then
 * judges it with check's chain rules for clientAuth (buildChain, invalidAt, purposeProblem) and the
 * manifest's identities and connections. Each connection is closed after the handshake; nothing
 * is sent.
 */
import type { AddressInfo } from "node:net";
import * as tls from "node:tls";
import { keyUsageVerdict, sanList } from "../check/lint.ts";
import { buildChain, invalidAt, purposeProblem } from "../check/chain.ts";
import type { Cert, Material } from "../check/index.ts";
import type { Manifest } from "../manifest/index.ts";
import { HANDSHAKE_TIMEOUT_MS } from "../service/options.ts";
import { peerFromDer } from "../service/peer.ts";
import { PROBE_CODES, type ProbeCode } from "./codes.ts";
import { peerChain, type Credentials } from "./connect.ts";
import { failureWords, type PresentedCert, type ProbeFinding } from "./probe.ts";

/** ClientObservation is what one connecting client showed, as data. */
export interface ClientObservation {
  remote: string;
  protocol: string | undefined;
  cipher: string | undefined;
  /** servername: the SNI name the client sent, undefined when none. */
  servername: string | undefined;
  /** alpn: the client's first offered ALPN protocol (the server selects it), undefined when it offered none. */
  alpn: string | undefined;
  /** chain: the DER certificates the client presented, leaf first; empty when it presented none. */
  chain: Buffer[];
}

/** Listener is a started probe server. */
export interface Listener {
  host: string;
  port: number;
  /** next resolves with the next client's observation, or undefined after `timeoutMs` without one. */
  next(timeoutMs: number | undefined): Promise<ClientObservation | undefined>;
  close(): Promise<void>;
}

/**
 * listen starts the probe server on host:port (port 0: any free port). A client that does not
 * finish its handshake within `handshakeTimeout` ms (default HANDSHAKE_TIMEOUT_MS, the service
 * library's, 10 s) is dropped: Node 20 only reports that deadline and leaves the socket open.
 */
export async function listen(opts: {
  host: string;
  port: number;
  credentials: Credentials;
  bundlePem: string;
  handshakeTimeout?: number;
}): Promise<Listener> {
  const queue: ClientObservation[] = [];
  let waiter: ((o: ClientObservation) => void) | undefined;
  const server = tls.createServer({
    cert: opts.credentials.cert,
    key: opts.credentials.key,
    ca: opts.bundlePem,
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: "TLSv1.2",
    handshakeTimeout: opts.handshakeTimeout ?? HANDSHAKE_TIMEOUT_MS,
    // Select whatever the client offers first, so its ALPN shows; nothing is ever sent on it.
    ALPNCallback: ({ protocols }) => protocols[0],
  });
  const sockets = new Set<tls.TLSSocket>();
  server.on("tlsClientError", (e: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
    if (e?.code === "ERR_TLS_HANDSHAKE_TIMEOUT") socket.destroy();
  });
  server.on("secureConnection", (s: tls.TLSSocket) => {
    sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
    const c = s.getCipher();
    const o: ClientObservation = {
      remote: `${s.remoteAddress}:${s.remotePort}`,
      protocol: s.getProtocol() ?? undefined,
      cipher: c.standardName ?? c.name,
      servername:
        typeof (s as { servername?: unknown }).servername === "string"
          ? ((s as { servername?: string }).servername as string)
          : undefined,
      alpn: typeof s.alpnProtocol === "string" ? s.alpnProtocol : undefined,
      chain: peerChain(s),
    };
    s.destroy();
    if (waiter) {
      const w = waiter;
      waiter = undefined;
      w(o);
    } else queue.push(o);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => (server.off("error", reject), resolve()));
  });
  const port = (server.address() as AddressInfo).port;
  return {
    host: opts.host,
    port,
    next(timeoutMs) {
      const ready = queue.shift();
      if (ready) return Promise.resolve(ready);
      return new Promise((resolve) => {
        const timer =
          timeoutMs === undefined ? undefined : setTimeout(() => ((waiter = undefined), resolve(undefined)), timeoutMs);
        waiter = (o) => (clearTimeout(timer), resolve(o));
      });
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** ClientReport is everything judged about one connecting client. */
export interface ClientReport {
  remote: string;
  as: string | undefined;
  now: Date;
  session: {
    protocol: string | undefined;
    cipher: string | undefined;
    servername: string | undefined;
    alpn: string | undefined;
  };
  /** presented: the client sent a certificate. */
  presented: boolean;
  chain: PresentedCert[];
  verification: { trusted: boolean; path: string[]; reason: string | undefined } | undefined;
  /** identity: the client's single URI SAN, the service it names, and whether `service -> as` is declared. */
  identity:
    | {
        uri: string | undefined;
        problem: string | undefined;
        service: string | undefined;
        declared: boolean | undefined;
      }
    | undefined;
  findings: ProbeFinding[];
  errors: number;
  warnings: number;
}

const DAY = 86_400_000;
const cn = (c: Cert) =>
  c.info.subjectAttributes.CN !== undefined ? `CN=${c.info.subjectAttributes.CN}` : c.info.subject || "(empty subject)";

/** judgeClient judges one client as the listening service `as` would with a verifying server. */
export function judgeClient(p: {
  seen: ClientObservation;
  as: string | undefined;
  bundle: readonly Cert[];
  bundlePath: string;
  manifest: Manifest | undefined;
  now: Date;
  material: Material;
}): ClientReport {
  const findings: ProbeFinding[] = [];
  const add = (code: ProbeCode, message: string, fix: string) =>
    findings.push({ code, severity: PROBE_CODES[code].severity, message, fix });
  const o = p.seen;
  const certs = o.chain.map((d) => p.material.cert(d));
  const chain: PresentedCert[] = certs.map((c) => ({
    subject: c.info.subject,
    issuer: c.info.issuer,
    notAfter: c.fields.notAfter,
    daysLeft: Math.floor((c.fields.notAfter.getTime() - p.now.getTime()) / DAY),
    sha256: c.sha256,
    sans: sanList(c),
  }));
  let verification: ClientReport["verification"];
  let identity: ClientReport["identity"];
  const leaf = certs[0];
  if (!leaf) {
    add(
      "client-anonymous",
      `the client ${o.remote} presented no certificate`,
      "configure the client with its certificate and key (Node: `cert` and `key` in tls.connect; curl: --cert/--key; openssl s_client: -cert/-key)",
    );
  } else {
    const r = buildChain(p.material, leaf, certs.slice(1), p.bundle);
    verification = r.ok
      ? { trusted: true, path: r.path.map((c) => c.info.subject), reason: undefined }
      : {
          trusted: false,
          path: [],
          reason: failureWords(r.failure, p.bundlePath).replace("the server sent", "the client sent"),
        };
    if (!r.ok)
      add(
        "client-untrusted",
        `the client's certificate ${cn(leaf)} does not chain to ${p.bundlePath}: ${verification.reason}`,
        `give the client a certificate issued by the CA in ${p.bundlePath} (\`mtlskit apply\` for a managed service), or put its CA in the bundle if it is meant to be trusted`,
      );
    const path = r.ok ? r.path : [leaf];
    const usage = purposeProblem(path, "clientAuth");
    if (usage)
      add(
        "client-usage",
        `the client's certificate may not authenticate a client: ${usage.reason}`,
        usage.kind === "key-usage"
          ? `re-issue the client's certificate: ${usage.change} (\`mtlskit apply\` re-issues a managed service's)`
          : usage.kind === "ca-eku"
            ? `re-issue the CA ${usage.cert.info.subject} without the extendedKeyUsage restriction`
            : "issue it with clientAuth (usage: client or dual in the manifest, then `mtlskit apply`)",
      );
    const strict = usage ? undefined : keyUsageVerdict(leaf, "clientAuth");
    if (strict?.strict)
      add(
        "client-usage-strict",
        `the client's certificate ${cn(leaf)} works with OpenSSL and Go servers, but ${strict.reason}`,
        `re-issue the client's certificate: ${strict.change} (\`mtlskit apply\` re-issues a managed service's)`,
      );
    const bad = invalidAt(path, p.now);
    if (bad)
      add(
        "client-validity",
        `${bad.cert === leaf ? "the client's certificate" : `the CA ${cn(bad.cert)} in the client's chain`} ${bad.how === "expired" ? `expired on ${bad.cert.fields.notAfter.toISOString().slice(0, 10)}` : `is not valid until ${bad.cert.fields.notBefore.toISOString()}`}`,
        bad.cert === leaf
          ? "issue the client a new certificate (`mtlskit apply` re-issues managed ones)"
          : "renew the CA and distribute the new bundle",
      );
    const peer = peerFromDer(leaf.der);
    const uri = peer.identity?.uri;
    const problem = peer.noIdentity?.message;
    const m = p.manifest;
    if (m && m.identityTemplate !== undefined) {
      const service = uri === undefined ? undefined : m.services.find((s) => s.identity === uri)?.name;
      const declared =
        service === undefined || p.as === undefined
          ? undefined
          : m.connections.some((c) => c.from === service && c.to === p.as);
      identity = { uri, problem, service, declared };
      if (uri === undefined)
        add(
          "client-identity",
          `the client's certificate has ${problem}; its identity must be exactly one URI SAN naming a service of ${m.file}`,
          "issue the client's certificate from the manifest (`mtlskit apply`)",
        );
      else if (service === undefined)
        add(
          "client-identity",
          `the client presents the identity ${uri}, which is no service of ${m.file}`,
          `declare the client as a service of ${m.file}, or give it its own service's certificate`,
        );
      else if (declared === false)
        add(
          "connection-undeclared",
          `the client is ${service} (${uri}), but ${m.file} declares no connection from ${service} to ${p.as}`,
          `add \`{ from: ${service}, to: ${p.as}, address: ... }\` to connections, so \`mtlskit check\` judges it`,
        );
    } else identity = { uri, problem, service: undefined, declared: undefined };
  }
  const errors = findings.filter((f) => f.severity === "error").length;
  return {
    remote: o.remote,
    as: p.as,
    now: p.now,
    session: { protocol: o.protocol, cipher: o.cipher, servername: o.servername, alpn: o.alpn },
    presented: Boolean(leaf),
    chain,
    verification,
    identity,
    findings,
    errors,
    warnings: findings.length - errors,
  };
}
