/**
 * The I/O edge of probe: one TLS connection attempt to a live endpoint, recorded as plain data
 * (Observation) for probe.ts to judge. The client never verifies (rejectUnauthorized: false, an
 * empty trust store) so that it always SEES what the server presents; the judging is mtlskit's
 * own (check's chain building), not Node's. It sends no application data: it waits, after the
 * handshake, for the server's verdict on the client (TLS 1.3 servers judge the client's
 * certificate after the client has finished its handshake, RFC 8446 4.4.2), then closes.
 */
import * as net from "node:net";
import * as tls from "node:tls";

/** Credentials are the PEM texts a client presents: certificate (leaf, then intermediates) and key. */
export interface Credentials {
  cert: string;
  key: string;
}

/** AttemptOptions say where to connect and how long to wait. */
export interface AttemptOptions {
  host: string;
  port: number;
  /** servername: the SNI name sent (DNS names only; never an IP, RFC 6066 3). Default: none. */
  servername?: string;
  /** credentials: the client certificate and key; undefined connects without one. */
  credentials?: Credentials;
  /** timeoutMs bounds the TCP connect and the handshake together. Default 5000. */
  timeoutMs?: number;
  /**
   * settleMs: how long the connection must stay open after the handshake for the server to count
   * as accepting the client. A refusing TLS 1.3 server's alert (or hang-up) arrives one round trip
   * after the client's Finished. Default 500, at most half of timeoutMs.
   */
  settleMs?: number;
  /** alpn: the protocols offered. Default h2, http/1.1. */
  alpn?: readonly string[];
}

/** Observation is what one attempt showed, as data. */
export interface Observation {
  /** reached: the TCP connection was made. When false, `error` says why (ECONNREFUSED, ETIMEDOUT, ENOTFOUND ...). */
  reached: boolean;
  /** handshake: the client finished the TLS handshake. */
  handshake: boolean;
  /** accepted: after the handshake the server kept the connection open for settleMs. */
  accepted: boolean;
  protocol: string | undefined;
  /** cipher: the IANA name, e.g. TLS_AES_128_GCM_SHA256. */
  cipher: string | undefined;
  /** alpn: the negotiated protocol, undefined when none was. */
  alpn: string | undefined;
  /** chain: the DER certificates the server presented, leaf first. Empty when the handshake did not get that far. */
  chain: Buffer[];
  /** error: the Node/OpenSSL error, when the attempt failed. */
  error: { code: string; message: string } | undefined;
}

/** peerChain collects the peer's certificates as Node links them (the trust store is empty, so nothing is added); listen.ts uses it too. */
export function peerChain(sock: tls.TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let c: tls.DetailedPeerCertificate | undefined = sock.getPeerCertificate(true);
  while (c?.raw && !out.some((d) => d.equals(c!.raw))) {
    out.push(c.raw);
    c = c.issuerCertificate;
  }
  return out;
}

const errOf = (e: unknown) => ({ code: (e as NodeJS.ErrnoException).code ?? "ERROR", message: (e as Error).message });

/** attempt makes one connection; it never throws and closes everything it opened. */
export function attempt(opts: AttemptOptions): Promise<Observation> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const settleMs = Math.min(opts.settleMs ?? 500, Math.floor(timeoutMs / 2));
  const o: Observation = {
    reached: false,
    handshake: false,
    accepted: false,
    protocol: undefined,
    cipher: undefined,
    alpn: undefined,
    chain: [],
    error: undefined,
  };
  return new Promise((resolve) => {
    let done = false;
    let settle: NodeJS.Timeout | undefined;
    let secure: tls.TLSSocket | undefined;
    const raw = net.connect({ host: opts.host, port: opts.port });
    const finish = (error?: { code: string; message: string }) => {
      if (done) return;
      done = true;
      if (error && !o.accepted) o.error ??= error;
      clearTimeout(timer);
      clearTimeout(settle);
      secure?.destroy();
      raw.destroy();
      resolve(o);
    };
    const timer = setTimeout(() => {
      const s = timeoutMs / 1000;
      finish(
        o.reached
          ? {
              code: "ETIMEDOUT",
              message: `no TLS handshake within ${s} s: the server does not answer a TLS ClientHello`,
            }
          : { code: "ETIMEDOUT", message: `no TCP connection within ${s} s` },
      );
    }, timeoutMs);
    raw.once("error", (e) => finish(errOf(e)));
    raw.once("connect", () => {
      o.reached = true;
      secure = tls.connect({
        socket: raw,
        ...(opts.servername ? { servername: opts.servername } : {}),
        ...(opts.credentials ? { cert: opts.credentials.cert, key: opts.credentials.key } : {}),
        // An empty store: Node adds no issuer to the presented chain, and verifies nothing we rely on.
        ca: [],
        rejectUnauthorized: false,
        // Probe as strict services connect: TLS 1.2 at least (the service library's floor).
        minVersion: "TLSv1.2",
        ALPNProtocols: [...(opts.alpn ?? ["h2", "http/1.1"])],
      });
      secure.on("secureConnect", () => {
        const s = secure!;
        o.handshake = true;
        o.protocol = s.getProtocol() ?? undefined;
        const c = s.getCipher();
        o.cipher = c.standardName ?? c.name;
        o.alpn = typeof s.alpnProtocol === "string" ? s.alpnProtocol : undefined;
        o.chain = peerChain(s);
        settle = setTimeout(() => {
          o.accepted = true;
          finish();
        }, settleMs);
      });
      // Reading keeps the socket flowing, so a post-handshake alert is processed; data is not kept.
      secure.on("data", () => {});
      secure.on("error", (e) => finish(errOf(e)));
      secure.on("close", () =>
        finish(
          o.handshake
            ? {
                code: "ECLOSED",
                message: "the server closed the connection right after the handshake, without a TLS alert",
              }
            : {
                code: "ECLOSED",
                message: "the server closed the connection during the handshake, without a TLS alert",
              },
        ),
      );
    });
  });
}

/** Observations are the two attempts probe makes: without a client certificate, then with the service's. */
export interface Observations {
  anonymous: Observation;
  authenticated: Observation;
}

/**
 * observe makes the two attempts one after the other: first without a client certificate (does
 * the server demand one?), then with `credentials`. When nothing answers the first, the second is
 * not tried (it would only wait for the same timeout).
 */
export async function observe(
  opts: Omit<AttemptOptions, "credentials">,
  credentials: Credentials,
): Promise<Observations> {
  const anonymous = await attempt(opts);
  const authenticated = anonymous.reached ? await attempt({ ...opts, credentials }) : anonymous;
  return { anonymous, authenticated };
}
