/**
 * The agent's HTTPS client for the online CA's API (docs/online-ca.md): node:https over one
 * keep-alive Agent, the server verified against a PEM bundle (`ca`), or bootstrapped from the
 * SHA-256 fingerprint of its root (`fingerprint`, as step-ca's `--fingerprint` does).
 *
 * The bootstrap. The first connection is made without Node's verification, and this module
 * verifies the presented chain itself: a certificate with the given SHA-256 must be in it and be
 * a CA, every link from the leaf up to it must be issued by the next (X509Certificate.checkIssued)
 * and signed by it (X509Certificate.verify), all must be within their validity, and the leaf must
 * name the server (checkHost without the CN fallback, or checkIP). The socket is destroyed without
 * sending a byte of HTTP, whatever the verdict; from then on that root is the `ca` and Node
 * verifies every connection as usual. Verification is never skipped: a chain that fails any of
 * these checks is an error, and no request is made.
 *
 * Problem documents (`{"error","message","fix"}`) become ServerError with the code, message and
 * fix, so callers decide on the code and users read the server's own fix.
 */
import { createHash, X509Certificate } from "node:crypto";
import * as https from "node:https";
import { isIP } from "node:net";
import * as tls from "node:tls";
import { EXIT, FailedError, MtlskitError } from "../errors.ts";
import { encodePem, parsePem } from "../pki/pem.ts";

/** Issued is the server's answer to enroll and renew (docs/online-ca.md, "Issued"). */
export interface Issued {
  serial: string;
  /** certificate: the PEM leaf. */
  certificate: string;
  /** chain: the PEM leaf and intermediates (cert.pem's content). */
  chain: string;
  /** bundle: the PEM trust bundle (ca.pem's content). */
  bundle: string;
  notBefore: string;
  notAfter: string;
  renewAfter: string;
}

/** BundleInfo is GET /v1/bundle's answer. */
export interface BundleInfo {
  bundle: string;
  sha256: string[];
  phase: string;
}

/** Refusal is one field a policy refusal names. */
export interface Refusal {
  field: string;
  message: string;
  fix?: string;
}

/**
 * ServerError is a problem document the server answered with: `code` is its error code
 * (`token-used`, `cert-expired`, `policy`, ...), `status` the HTTP status. Exit 3.
 */
export class ServerError extends FailedError {
  readonly status: number;
  readonly code: string;
  readonly fix: string | undefined;
  readonly refusals: readonly Refusal[];
  constructor(
    what: string,
    status: number,
    problem: { error: string; message: string; fix?: string; refusals?: Refusal[] },
  ) {
    const refusals = problem.refusals ?? [];
    const detail = refusals.map((r) => `\n    ${r.field}: ${r.message}${r.fix ? ` (fix: ${r.fix})` : ""}`).join("");
    super(
      `agent: the server refused ${what} (${status} ${problem.error}): ${problem.message}${detail}${problem.fix ? `\n    fix: ${problem.fix}` : ""}`,
    );
    this.status = status;
    this.code = problem.error;
    this.fix = problem.fix;
    this.refusals = refusals;
  }
}

/**
 * UnreachableError is a server that could not be asked: refused connection, timeout, a TLS
 * failure, a reply that is not the API's. `code` is `unreachable`, `tls` or `bad-reply`. Exit 3.
 */
export class UnreachableError extends FailedError {
  readonly code: "unreachable" | "tls" | "bad-reply";
  constructor(message: string, code: "unreachable" | "tls" | "bad-reply", options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** CaClientOptions configure createCaClient. Exactly one of `ca` and `fingerprint` is required. */
export interface CaClientOptions {
  /** server: the CA's base URL, `https://HOST:PORT`. */
  server: string;
  /** ca: the PEM bundle the server's certificate must chain to. */
  ca?: string;
  /** fingerprint: SHA-256 of the server's root certificate, hex, colons and case ignored (the bootstrap). */
  fingerprint?: string;
  /** timeoutMs: each request's deadline, from connecting to the whole reply; default 10 000. */
  timeoutMs?: number;
  /** connectTimeoutMs: the deadline of a new connection's TCP and TLS handshakes (at most timeoutMs); default 5 000, so a silent server is left for the next one soon. */
  connectTimeoutMs?: number;
  /** now: the clock the bootstrap judges validity by; default Date.now. */
  now?: () => number;
}

/** CaClient speaks the online CA's API; it holds a keep-alive connection pool until close(). */
export interface CaClient {
  /** enroll: POST /v1/enroll with a bootstrap token and a CSR. */
  enroll(service: string, token: string, csr: string): Promise<Issued>;
  /** renew: POST /v1/renew over mTLS with the current key and chain, and a CSR for the new key. */
  renew(current: { key: string; cert: string }, csr: string): Promise<Issued>;
  /** bundle: GET /v1/bundle. */
  bundle(): Promise<BundleInfo>;
  /** trust returns the PEM bundle the server is verified against now (after a bootstrap: its root). */
  trust(): Promise<string>;
  /** close ends the pooled connections. */
  close(): void;
}

/** MAX_REPLY_BYTES bounds a reply: a chain and a bundle are kilobytes. */
const MAX_REPLY_BYTES = 1024 * 1024;

const invalid = (message: string) => new MtlskitError(`agent: ${message}`, EXIT.invalid);

/** parseFingerprint reads a SHA-256 fingerprint (64 hex digits, colons allowed, any case) as lowercase hex. */
export function parseFingerprint(text: string): string {
  const hex = text.trim().replace(/:/g, "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex))
    throw invalid(
      `--fingerprint must be the SHA-256 of the CA's root certificate, 64 hex digits (colons allowed); got ${JSON.stringify(text)}\n    fix: on the CA's host, run: openssl x509 -noout -fingerprint -sha256 -in PKI/ca/ca.pem`,
    );
  return hex;
}

/** parseServerUrl reads the server's base URL: https only, no path beyond "/", no credentials. */
export function parseServerUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid(`--server must be a URL such as https://ca.example:8443; got ${JSON.stringify(text)}`);
  }
  if (url.protocol !== "https:")
    throw invalid(`--server must be an https:// URL (the API is served over TLS only); got ${JSON.stringify(text)}`);
  if (url.username || url.password || url.search || url.hash || (url.pathname !== "/" && url.pathname !== ""))
    throw invalid(
      `--server must be the server's base URL, https://HOST[:PORT], nothing after it; got ${JSON.stringify(text)}`,
    );
  return url;
}

/** hostOf is the URL's host as dialed and as the certificate must name it: IPv6 without brackets. */
const hostOf = (url: URL) => url.hostname.replace(/^\[(.*)\]$/, "$1");

/** sha256Of is a DER certificate's SHA-256, lowercase hex. */
const sha256Of = (der: Uint8Array) => createHash("sha256").update(der).digest("hex");

/**
 * judgeBootstrapChain verifies a chain the server presented (leaf first, as DER) against a pinned
 * root fingerprint, and returns the pinned certificate as PEM; it throws an UnreachableError
 * (code `tls`) naming the first check that failed. Pure apart from signature checks.
 */
export function judgeBootstrapChain(
  chain: readonly Uint8Array[],
  fingerprint: string,
  host: string,
  now: number,
): string {
  const refuse = (why: string) =>
    new UnreachableError(
      `agent: the server's certificate chain is not trusted by --fingerprint ${fingerprint.slice(0, 16)}…: ${why}; nothing was sent\n    fix: check --fingerprint against the CA's root (openssl x509 -noout -fingerprint -sha256 -in PKI/ca/ca.pem) and --server`,
      "tls",
    );
  if (chain.length === 0) throw refuse("it presented no certificate");
  let certs: X509Certificate[];
  try {
    certs = chain.map((der) => new X509Certificate(der));
  } catch (e) {
    throw refuse(`a certificate cannot be decoded (${(e as Error).message})`);
  }
  const at = chain.findIndex((der) => sha256Of(der) === fingerprint);
  if (at < 0)
    throw refuse(
      `no certificate in it has that SHA-256 (it presented ${certs.map((c) => c.subject.replace(/\n/g, ", ")).join(" -> ")}; the server must send its root in its chain)`,
    );
  const root = certs[at]!;
  if (!root.ca) throw refuse(`the certificate with that SHA-256 (${root.subject.replace(/\n/g, ", ")}) is not a CA`);
  if (at === 0) throw refuse("the pinned CA certificate is the server's own certificate, not its issuer");
  for (let i = 0; i <= at; i++) {
    const c = certs[i]!;
    const from = Date.parse(c.validFrom);
    const to = Date.parse(c.validTo);
    if (!(now >= from && now <= to))
      throw refuse(`${c.subject.replace(/\n/g, ", ")} is not valid now (valid ${c.validFrom} to ${c.validTo})`);
    if (i === at) break;
    const issuer = certs[i + 1]!;
    if (i > 0 && !c.ca) throw refuse(`${c.subject.replace(/\n/g, ", ")} issues the leaf's chain but is not a CA`);
    if (!c.checkIssued(issuer) || !c.verify(issuer.publicKey))
      throw refuse(
        `${c.subject.replace(/\n/g, ", ")} is not signed by the next certificate, ${issuer.subject.replace(/\n/g, ", ")}`,
      );
  }
  if (root.checkIssued(root) && !root.verify(root.publicKey))
    throw refuse("the pinned root's self-signature does not verify");
  const leaf = certs[0]!;
  const named = isIP(host) ? leaf.checkIP(host) : leaf.checkHost(host, { subject: "never" });
  if (named === undefined) throw refuse(`the server's certificate does not name ${host} in its subjectAltName`);
  return encodePem("CERTIFICATE", chain[at]!);
}

/** presentedChain reads the chain a TLS peer sent, leaf first, as DER (Node links it by issuer). */
function presentedChain(socket: tls.TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  const seen = new Set<string>();
  let c: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (c?.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    out.push(c.raw);
    c = c.issuerCertificate;
  }
  return out;
}

/**
 * bootstrapTrust makes one TLS connection to `url` without Node's verification, verifies the
 * presented chain against `fingerprint` (judgeBootstrapChain), destroys the socket, and returns the
 * pinned root as PEM.
 */
export function bootstrapTrust(
  url: URL,
  fingerprint: string,
  opts: { timeoutMs?: number; now?: () => number } = {},
): Promise<string> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const host = hostOf(url);
  const port = Number(url.port || 443);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      ...(isIP(host) ? {} : { servername: host }),
      // The one place verification is Node's to skip: judgeBootstrapChain does it, and no request follows on this socket.
      rejectUnauthorized: false,
      ALPNProtocols: ["http/1.1"],
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new UnreachableError(
          `agent: ${url.origin} did not finish a TLS handshake within ${timeoutMs} ms`,
          "unreachable",
        ),
      );
    }, timeoutMs);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      let chain: Buffer[];
      try {
        chain = presentedChain(socket);
      } finally {
        socket.destroy();
      }
      try {
        resolve(judgeBootstrapChain(chain, fingerprint, host, (opts.now ?? Date.now)()));
      } catch (e) {
        reject(e);
      }
    });
    socket.once("error", (e) => {
      clearTimeout(timer);
      socket.destroy();
      reject(unreachable(url, e));
    });
  });
}

/** unreachable words a connection failure: what, where, and the next step. */
function unreachable(url: URL, e: unknown): UnreachableError {
  const err = e as NodeJS.ErrnoException;
  const code = err?.code ?? "";
  if (
    /^(ERR_TLS|CERT_|UNABLE_TO|SELF_SIGNED|DEPTH_ZERO|ERR_SSL)/.test(code) ||
    /certificate|altname/i.test(err?.message ?? "")
  )
    return new UnreachableError(
      `agent: the TLS connection to ${url.origin} failed: ${err.message}\n    fix: give the CA's bundle with --ca (PKI/ca/ca.pem) or its root's SHA-256 with --fingerprint, and a --server address the server's certificate names`,
      "tls",
      { cause: e },
    );
  return new UnreachableError(`agent: cannot reach ${url.origin}: ${err?.message ?? String(e)}`, "unreachable", {
    cause: e,
  });
}

/**
 * createCaClient makes an API client. With `fingerprint`, the first request bootstraps the trust
 * (bootstrapTrust) and keeps the root for every later one.
 */
export function createCaClient(opts: CaClientOptions): CaClient {
  const url = parseServerUrl(opts.server);
  if ((opts.ca === undefined) === (opts.fingerprint === undefined))
    throw invalid("give exactly one of ca (a PEM bundle) and fingerprint (the root's SHA-256) to trust the server by");
  const fingerprint = opts.fingerprint === undefined ? undefined : parseFingerprint(opts.fingerprint);
  if (opts.ca !== undefined && !parsePem(opts.ca).some((b) => b.label === "CERTIFICATE"))
    throw invalid("the ca bundle holds no PEM CERTIFICATE block");
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const connectTimeoutMs = Math.min(timeoutMs, opts.connectTimeoutMs ?? 5_000);
  const host = hostOf(url);
  let trusted: Promise<string> | undefined = opts.ca === undefined ? undefined : Promise.resolve(opts.ca);
  let pool: https.Agent | undefined;

  const trust = () => {
    trusted ??= bootstrapTrust(url, fingerprint!, {
      timeoutMs: connectTimeoutMs,
      ...(opts.now ? { now: opts.now } : {}),
    }).catch((e) => {
      trusted = undefined; // a failed bootstrap is tried again at the next request
      throw e;
    });
    return trusted;
  };

  const tlsFor = (ca: string): https.AgentOptions => ({
    ca,
    ...(isIP(host) ? {} : { servername: host }),
    minVersion: "TLSv1.2",
    rejectUnauthorized: true,
  });

  async function call<T>(
    what: string,
    method: string,
    path: string,
    body: unknown,
    clientCert?: { key: string; cert: string },
  ): Promise<T> {
    const ca = await trust();
    // The pool for plain requests; a renewal presents a client certificate on a connection of its own.
    const agent = clientCert
      ? new https.Agent({ ...tlsFor(ca), key: clientCert.key, cert: clientCert.cert, keepAlive: false })
      : (pool ??= new https.Agent({ ...tlsFor(ca), keepAlive: true, maxSockets: 4 }));
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    try {
      return await new Promise<T>((resolve, reject) => {
        const req = https.request(
          {
            host,
            port: Number(url.port || 443),
            method,
            path,
            agent,
            headers: {
              accept: "application/json",
              ...(payload ? { "content-type": "application/json", "content-length": payload.length } : {}),
            },
            timeout: timeoutMs,
          },
          (res) => {
            const parts: Buffer[] = [];
            let size = 0;
            res.on("data", (d: Buffer) => {
              size += d.length;
              if (size > MAX_REPLY_BYTES) {
                req.destroy(
                  new UnreachableError(
                    `agent: ${url.origin}${path} replied with more than ${MAX_REPLY_BYTES} bytes`,
                    "bad-reply",
                  ),
                );
                return;
              }
              parts.push(d);
            });
            res.on("end", () => {
              clearTimeout(deadline);
              const text = Buffer.concat(parts).toString("utf8");
              let json: unknown;
              try {
                json = JSON.parse(text);
              } catch {
                return reject(
                  new UnreachableError(
                    `agent: ${url.origin}${path} answered ${res.statusCode} with a body that is not JSON (is --server an mtlskit serve?)`,
                    "bad-reply",
                  ),
                );
              }
              const status = res.statusCode ?? 0;
              if (status >= 200 && status < 300) return resolve(json as T);
              const p = json as { error?: unknown; message?: unknown; fix?: unknown; refusals?: unknown };
              if (typeof p?.error !== "string" || typeof p.message !== "string")
                return reject(
                  new UnreachableError(
                    `agent: ${url.origin}${path} answered ${status} without a problem document`,
                    "bad-reply",
                  ),
                );
              reject(
                new ServerError(what, status, {
                  error: p.error,
                  message: p.message,
                  ...(typeof p.fix === "string" ? { fix: p.fix } : {}),
                  ...(Array.isArray(p.refusals) ? { refusals: p.refusals as Refusal[] } : {}),
                }),
              );
            });
            res.on("error", (e) => {
              clearTimeout(deadline);
              reject(e instanceof MtlskitError ? e : unreachable(url, e));
            });
          },
        );
        // The whole exchange, not only socket idleness, is bounded.
        const deadline = setTimeout(
          () =>
            req.destroy(
              new UnreachableError(`agent: ${url.origin}${path} did not answer within ${timeoutMs} ms`, "unreachable"),
            ),
          timeoutMs,
        );
        // A new connection has a shorter deadline of its own: a server that does not even handshake is left soon.
        req.on("socket", (socket) => {
          if (req.reusedSocket) return;
          const connecting = setTimeout(
            () =>
              req.destroy(
                new UnreachableError(
                  `agent: ${url.origin} did not accept a TLS connection within ${connectTimeoutMs} ms`,
                  "unreachable",
                ),
              ),
            connectTimeoutMs,
          );
          socket.once("secureConnect", () => clearTimeout(connecting));
          socket.once("close", () => clearTimeout(connecting));
        });
        req.on("timeout", () =>
          req.destroy(
            new UnreachableError(`agent: ${url.origin}${path} did not answer within ${timeoutMs} ms`, "unreachable"),
          ),
        );
        req.on("error", (e) => {
          clearTimeout(deadline);
          reject(e instanceof MtlskitError ? e : unreachable(url, e));
        });
        req.end(payload);
      });
    } finally {
      if (clientCert) agent.destroy();
    }
  }

  return {
    enroll: (service, token, csr) =>
      call<Issued>("the enrollment", "POST", "/v1/enroll", { service, token, csr }).then(checkIssued),
    renew: (current, csr) => call<Issued>("the renewal", "POST", "/v1/renew", { csr }, current).then(checkIssued),
    bundle: () =>
      call<BundleInfo>("the bundle", "GET", "/v1/bundle", undefined).then((b) => {
        if (typeof b?.bundle !== "string")
          throw new UnreachableError("agent: /v1/bundle answered without a bundle", "bad-reply");
        return b;
      }),
    trust,
    close: () => pool?.destroy(),
  };
}

/** checkIssued refuses an Issued reply missing a field the agent writes. */
function checkIssued(i: Issued): Issued {
  for (const k of ["serial", "chain", "bundle", "notBefore", "notAfter"] as const)
    if (typeof i?.[k] !== "string") throw new UnreachableError(`agent: the server's reply lacks ${k}`, "bad-reply");
  return i;
}
