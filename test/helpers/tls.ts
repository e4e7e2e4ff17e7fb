/**
 * Test helpers: a real mutual-TLS handshake over loopback, an independent judge of what
 * `mtlskit check` says about a connection. Node's TLS is OpenSSL (libssl), so the verdicts are
 * OpenSSL's (chain building, the sslserver/sslclient purposes, validity dates) plus Node's
 * `tls.checkServerIdentity` for the dialed address.
 *
 * Both ends load their files the way a service does: certificate file (leaf, then any
 * intermediates), private key, trust bundle. A file that cannot be read, or a pair the TLS library
 * refuses (`key values mismatch`), fails that end at setup, before any connection. The server
 * listens on 127.0.0.1 port 0 only; the client always dials 127.0.0.1, sending `servername` when
 * the address is a DNS name.
 */
import { readFileSync } from "node:fs";
import { isIP, type AddressInfo, type Socket } from "node:net";
import * as tls from "node:tls";

/** TlsEnd names one end's files: certificate (leaf first, then intermediates), private key, trust bundle. */
export interface TlsEnd {
  cert: string;
  key: string;
  ca: string;
}

/** EndVerdict is how one end saw the handshake. */
export interface EndVerdict {
  ok: boolean;
  /** setup: the end could not even start (a file missing, the key does not match the certificate). */
  setup: boolean;
  /**
   * own: the failure was raised at this end (setup, its verdict on the peer's certificate such as
   * `CERT_HAS_EXPIRED` or `ERR_TLS_CERT_ALTNAME_INVALID`, or a local TLS error such as
   * `ERR_SSL_NO_SHARED_CIPHER`), not the peer's alert or a connection the peer dropped.
   */
  own: boolean;
  /** error: the error code (or message) this end saw, when it failed. */
  error: string | undefined;
}

/** HandshakeResult is the outcome of one mutual-TLS handshake. */
export interface HandshakeResult {
  /** ok: both ends accepted each other and the server's first byte reached the client. */
  ok: boolean;
  server: EndVerdict;
  client: EndVerdict;
  /** protocol negotiated (`TLSv1.3`), when the handshake got that far. */
  protocol: string | undefined;
}

/** HandshakeOptions tune one handshake. */
export interface HandshakeOptions {
  /** address the client dials: an IP (compared with IP SANs) or a DNS name (sent as servername). Default 127.0.0.1. */
  address?: string;
  /** timeoutMs bounds the whole handshake; an end without a verdict by then fails with `timeout`. Default 5000. */
  timeoutMs?: number;
  /** maxVersion: the highest protocol both ends offer (minVersion is always TLSv1.2). Default TLSv1.3. */
  maxVersion?: tls.SecureVersion;
}

/**
 * isPeerTalking tells an error that comes from the other end (an alert it sent: `ERR_SSL_*ALERT*`;
 * a connection it dropped: an errno such as `ECONNRESET`; the harness's own notes, in lower case)
 * from one this end raised.
 */
const isPeerTalking = (code: string) => /ALERT/.test(code) || /^E[A-Z]+$/.test(code) || /^[a-z]/.test(code);

const errCode = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? (e as Error).message;

const OK: EndVerdict = { ok: true, setup: false, own: false, error: undefined };
const failed = (error: string): EndVerdict => ({ ok: false, setup: false, own: !isPeerTalking(error), error });

/** Material is an end's PEM texts, as tls options take them. */
type Material = { cert: Buffer; key: Buffer; ca: Buffer };

/**
 * materialOf reads an end's files and loads them into a secure context once, so that a missing
 * file or a key that does not match fails this end at setup (tls.createServer builds its own
 * context from the texts; it does not take a `secureContext` option).
 */
function materialOf(end: TlsEnd): Material | EndVerdict {
  try {
    const m = { cert: readFileSync(end.cert), key: readFileSync(end.key), ca: readFileSync(end.ca) };
    tls.createSecureContext(m);
    return m;
  } catch (e) {
    return { ok: false, setup: true, own: true, error: errCode(e) };
  }
}

/**
 * handshake runs one mutual-TLS handshake between `server` and `client` over 127.0.0.1 and
 * reports each end's verdict; it never throws for TLS failures, and closes everything it opened.
 *
 * The server requests a client certificate; both ends refuse a peer certificate they cannot
 * verify, and the client one that does not name the dialed address. Each end judges exactly as
 * Node's `rejectUnauthorized: true` does (lib/_tls_wrap.js: after the handshake, OpenSSL's
 * `verifyError()`, then on the client `tls.checkServerIdentity` against the servername, else the
 * IP), but refuses by hand: Node would destroy the socket at once, without telling the server's
 * side why, and the reset can reach the peer before the peer has judged in turn. Here a refusing
 * end records its reason (`INVALID_PURPOSE`, `CERT_HAS_EXPIRED`) and closes gracefully, so both
 * ends judge every time, and a case where both refuse shows both reasons.
 *
 * The server writes one byte after accepting; the client counts as done only when it arrives,
 * because under TLS 1.3 the client finishes its handshake before the server has judged the
 * client's certificate.
 */
export async function handshake(server: TlsEnd, client: TlsEnd, opts: HandshakeOptions = {}): Promise<HandshakeResult> {
  const address = opts.address ?? "127.0.0.1";
  const maxVersion = opts.maxVersion ?? "TLSv1.3";
  const sm = materialOf(server);
  const cm = materialOf(client);
  if ("ok" in sm || "ok" in cm) {
    const idle = failed("not started: the other end could not start");
    return { ok: false, server: "ok" in sm ? sm : idle, client: "ok" in cm ? cm : idle, protocol: undefined };
  }
  let serverVerdict: EndVerdict | undefined;
  let clientVerdict: EndVerdict | undefined;
  let protocol: string | undefined;
  let settle = () => {};
  const sockets = new Set<Socket>();
  // rejectUnauthorized: false, then `authorized` by hand (see above): the same verdict, with its reason.
  const srv = tls.createServer({
    ...sm,
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: "TLSv1.2",
    maxVersion,
  });
  srv.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("error", () => {});
  });
  srv.on("secureConnection", (s: tls.TLSSocket) => {
    s.on("error", () => {});
    if (s.authorized) {
      serverVerdict ??= OK;
      s.end("k");
    } else {
      serverVerdict ??= failed(String(s.authorizationError ?? "NO_CLIENT_CERTIFICATE"));
      s.end();
    }
    settle();
  });
  srv.on("tlsClientError", (e) => {
    serverVerdict ??= failed(errCode(e));
    settle();
  });
  try {
    await new Promise<void>((resolve, reject) => {
      srv.once("error", reject);
      srv.listen(0, "127.0.0.1", resolve);
    });
    const port = (srv.address() as AddressInfo).port;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, opts.timeoutMs ?? 5000);
      settle = () => {
        if (serverVerdict && clientVerdict) {
          clearTimeout(timer);
          resolve();
        }
      };
      const sock = tls.connect({
        ...cm,
        host: "127.0.0.1",
        port,
        ...(isIP(address) ? {} : { servername: address }),
        rejectUnauthorized: false,
        minVersion: "TLSv1.2",
        maxVersion,
      });
      sockets.add(sock);
      sock.on("secureConnect", () => {
        protocol = sock.getProtocol() ?? undefined;
        // With rejectUnauthorized: false Node still runs verifyError() and checkServerIdentity and
        // records the first failure in authorizationError; refuse on it as rejectUnauthorized would.
        if (!sock.authorized) {
          clientVerdict ??= failed(String(sock.authorizationError));
          sock.end();
          settle();
        }
      });
      sock.on("data", () => {
        clientVerdict ??= OK;
        settle();
      });
      sock.on("error", (e) => {
        clientVerdict ??= failed(errCode(e));
        settle();
      });
      sock.on("close", () => {
        clientVerdict ??= failed("closed before the server's first byte");
        settle();
      });
    });
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  }
  const s = serverVerdict ?? failed("timeout");
  const c = clientVerdict ?? failed("timeout");
  return { ok: s.ok && c.ok, server: s, client: c, protocol };
}
