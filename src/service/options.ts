/**
 * TLS options for mutual TLS, for `tls`, `https` and `http2`: client certificates required and
 * verified, TLS 1.2 minimum with 1.3 preferred, strong suites only, names matched against typed
 * SANs only (no CN fallback), CA certificates refused as leaves, and an authorizer run on every
 * peer.
 *
 * How server-side authorization cannot be forgotten. Node has no hook in a server's options that
 * sees the client's certificate (go-spiffe uses Go's VerifyPeerCertificate; Node's SNICallback and
 * ALPNCallback run before the client certificate arrives, and only when the client sends SNI or
 * ALPN). So a server is *bound*: `serverOptions` returns options that hold no certificate and
 * refuse every handshake (an SNI handshake with an error that says to bind, any other for want of
 * a certificate), and `authorizeServer(server, options)` gives the server its credentials and
 * intercepts the server's own `secureConnection` emit, which `tls`, `https` and `http2` all start
 * from: a refused peer's socket is destroyed before any listener, including the HTTP parser, sees
 * it, so no application data is read. `createMtlsServer` does both in one call. Forgetting the
 * binding therefore fails closed on the first test, never open.
 *
 * Each handshake asks the source for `current()` credentials (SNI handshakes through SNICallback,
 * others when the connection arrives), and builds a secure context only when they change: a
 * hot-reloading source rotates new handshakes without a restart and leaves existing connections
 * alone.
 */
import * as tls from "node:tls";
import { addressOf, sansCover } from "../pki/names.ts";
import { EXIT, MtlskitError } from "../errors.ts";
import { AuthorizationError, type Authorizer } from "./authorize.ts";
import { describePeer, peerFromDer, peerFromSocket, type Peer } from "./peer.ts";
import type { CredentialSource, Credentials } from "./source.ts";
import { assertReady, type SelfCheckOptions } from "./self-check.ts";

/**
 * CIPHERS is the cipher list of both ends. TLS 1.3: its three AEAD suites (all of RFC 8446's
 * that OpenSSL enables). TLS 1.2: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only, the
 * set Go offers by default and Mozilla's "intermediate" profile keeps: forward secrecy (no static
 * RSA key exchange: ROBOT, no secrecy after a key leak), AEAD (no CBC: Lucky13, POODLE-style
 * padding oracles), no DHE (slow, and Logjam's weak groups). ECDSA suites also carry Ed25519
 * certificates in OpenSSL.
 */
export const CIPHERS = [
  "TLS_AES_128_GCM_SHA256",
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

/** MinVersion is the lowest protocol an end accepts; the highest is always TLSv1.3. */
export type MinVersion = "TLSv1.2" | "TLSv1.3";

/** ServerOptions tune serverOptions. */
export interface ServerOptions {
  /** authorize decides about each verified client; required (deny by default: there is no implicit "any"). */
  authorize: Authorizer;
  /** minVersion: default "TLSv1.2"; TLS 1.3 is negotiated whenever the client offers it. */
  minVersion?: MinVersion;
  /** onRefused is told about each refused client after its socket is destroyed (the library itself logs nothing). */
  onRefused?: (error: AuthorizationError, socket: tls.TLSSocket) => void;
}

/** ClientOptions tune clientOptions. */
export interface ClientOptions {
  /** authorize decides about the server's verified certificate; required. */
  authorize: Authorizer;
  /** servername: the DNS name to send (SNI) and to find among the server's DNS SANs; default: the host dialed. */
  servername?: string;
  /** minVersion: default "TLSv1.2". */
  minVersion?: MinVersion;
}

const GUARD = Symbol("mtlskit.serverGuard");

/** Guard is what serverOptions hands to authorizeServer through the options object. */
interface Guard {
  source: CredentialSource;
  authorize: Authorizer;
  contextFor: (creds: Credentials) => tls.SecureContext;
  tlsParams: TlsParams;
  onRefused: ServerOptions["onRefused"];
  bound: boolean;
}

/** MtlsServerOptions are tls.TlsOptions carrying their authorizer for authorizeServer. */
export type MtlsServerOptions = tls.TlsOptions & { readonly [GUARD]: Guard };

type TlsParams = { minVersion: MinVersion; maxVersion: "TLSv1.3"; ciphers: string };

function tlsParams(minVersion: MinVersion | undefined): TlsParams {
  const v = minVersion ?? "TLSv1.2";
  if (v !== "TLSv1.2" && v !== "TLSv1.3") throw new MtlskitError(`service: minVersion must be "TLSv1.2" or "TLSv1.3"; got ${JSON.stringify(v)}`, EXIT.invalid);
  return { minVersion: v, maxVersion: "TLSv1.3", ciphers: CIPHERS };
}

/** contextCache builds one secure context per Credentials object (a source returns the same object until it changes). */
function contextCache(params: TlsParams, server: boolean): (creds: Credentials) => tls.SecureContext {
  const cache = new WeakMap<Credentials, tls.SecureContext>();
  return (creds) => {
    let ctx = cache.get(creds);
    if (!ctx) {
      ctx = tls.createSecureContext({ key: creds.key, cert: creds.cert, ca: creds.ca, ...params, ...(server ? { honorCipherOrder: true } : {}) });
      cache.set(creds, ctx);
    }
    return ctx;
  };
}

/**
 * leafProblem refuses a leaf that is a CA certificate (go-spiffe's SVID rules): OpenSSL and Go
 * accept a CA certificate as a peer's own when its usages allow, which lets anyone holding an
 * intermediate's key pose as any service.
 */
function leafProblem(peer: Peer): AuthorizationError | undefined {
  if (peer.info.isCA) return new AuthorizationError(peer, "it presented a CA certificate (basicConstraints CA:TRUE) as its own; a peer must present a leaf");
  const signing = (peer.info.keyUsage ?? []).filter((u) => u === "keyCertSign" || u === "cRLSign");
  if (signing.length > 0) return new AuthorizationError(peer, `its certificate may sign certificates (keyUsage ${signing.join(", ")}); a peer must present a leaf`);
  return undefined;
}

/** judge runs the leaf rule and the authorizer; an authorizer that throws refuses (fail closed). Shared with grpc.ts. */
export function judge(peer: Peer, authorize: Authorizer): AuthorizationError | undefined {
  const leaf = leafProblem(peer);
  if (leaf) return leaf;
  try {
    return authorize(peer);
  } catch (e) {
    return new AuthorizationError(peer, `the authorizer threw: ${(e as Error).message}`);
  }
}

/**
 * serverOptions builds options for tls.createServer, https.createServer and
 * http2.createSecureServer: client certificates required and verified against the source's
 * bundle, TLS 1.2+ with CIPHERS. They serve nothing until `authorizeServer(server, options)`
 * binds the server (see the file comment); `createMtlsServer` does both.
 *
 * @example
 * const options = serverOptions(source, { authorize: authorizeMemberOf("spiffe://example.org") });
 * const server = authorizeServer(https.createServer(options, app), options);
 */
export function serverOptions(source: CredentialSource, opts: ServerOptions): MtlsServerOptions {
  if (typeof opts?.authorize !== "function") throw new MtlskitError("service: serverOptions needs an authorize function (e.g. authorizeId(...), or authorizeAny() to admit every verified client)", EXIT.invalid);
  const params = tlsParams(opts.minVersion);
  const guard: Guard = { source, authorize: opts.authorize, contextFor: contextCache(params, true), tlsParams: params, onRefused: opts.onRefused, bound: false };
  source.current(); // a source that cannot produce credentials fails here, at startup
  return {
    requestCert: true,
    rejectUnauthorized: true,
    ...params,
    honorCipherOrder: true,
    SNICallback: (_servername, cb) => {
      if (!guard.bound) return cb(new Error("mtlskit: this server was built from serverOptions() but never bound; call authorizeServer(server, options) or use createMtlsServer()"), undefined);
      try {
        cb(null, guard.contextFor(source.current()));
      } catch (e) {
        cb(e as Error, undefined);
      }
    },
    [GUARD]: guard,
  };
}

/**
 * authorizeServer binds a server made from serverOptions' options: it installs the current
 * credentials, refreshes them as connections arrive, and authorizes every client before the
 * server's own listeners see the socket. It returns the server; binding twice is harmless.
 *
 * @example
 * const options = serverOptions(source, { authorize: authorizeId("spiffe://example.org/web") });
 * authorizeServer(tls.createServer(options, (socket) => socket.end("hello")), options).listen(8443);
 */
export function authorizeServer<S extends tls.Server>(server: S, options: tls.TlsOptions): S {
  const guard = (options as Partial<MtlsServerOptions>)[GUARD];
  if (!guard) throw new MtlskitError("service: authorizeServer needs the options object serverOptions() returned (or a spread copy of it)", EXIT.invalid);
  const bound = server as S & { [GUARD]?: Guard };
  if (bound[GUARD] === guard) return server;
  if (bound[GUARD]) throw new MtlskitError("service: this server is already bound to other serverOptions()", EXIT.invalid);
  bound[GUARD] = guard;
  guard.bound = true;

  // The default context, for handshakes without SNI: refreshed when the source's credentials change.
  let installed: Credentials | undefined;
  const refresh = () => {
    const creds = guard.source.current();
    if (creds === installed) return;
    server.setSecureContext({ key: creds.key, cert: creds.cert, ca: creds.ca, ...guard.tlsParams, honorCipherOrder: true });
    installed = creds;
  };
  refresh();
  server.prependListener("connection", () => {
    try {
      refresh();
    } catch {
      // Keep serving the installed credentials; a reloading source reports its own errors.
    }
  });

  // Every listener of a tls/https/http2 server starts from this emit; a refused socket never reaches them.
  const emit = server.emit;
  server.emit = function (this: S, event: string | symbol, ...args: unknown[]): boolean {
    if (event === "secureConnection") {
      const socket = args[0] as tls.TLSSocket;
      const refused = clientRefusal(socket, guard.authorize);
      if (refused) {
        socket.destroy();
        guard.onRefused?.(refused, socket);
        return false;
      }
    }
    return (emit as (...a: unknown[]) => boolean).apply(this, [event, ...args]);
  } as S["emit"];
  return server;
}

/** clientRefusal judges a server-side socket's client. */
function clientRefusal(socket: tls.TLSSocket, authorize: Authorizer): AuthorizationError | undefined {
  if (!socket.authorized) return new AuthorizationError("(unverified)", `its certificate did not verify: ${String(socket.authorizationError ?? "no certificate")}`);
  let peer: Peer | undefined;
  try {
    peer = peerFromSocket(socket);
  } catch (e) {
    return new AuthorizationError("(undecodable certificate)", (e as Error).message);
  }
  if (!peer) return new AuthorizationError("(no certificate)", "a client certificate is required");
  return judge(peer, authorize);
}

/** ServerFactory is tls.createServer, https.createServer or http2.createSecureServer. */
export type ServerFactory<S extends tls.Server, L> = (options: MtlsServerOptions, listener?: L) => S;

/**
 * createMtlsServer makes and binds a server in one call: `create` is tls.createServer,
 * https.createServer or http2.createSecureServer, `extra` any further options for it
 * (e.g. `{ allowHTTP1: true }`). With `selfCheck` (see self-check.ts) it first judges its own
 * certificate and throws a SelfCheckError naming each problem and its fix instead of starting.
 *
 * @example
 * const server = createMtlsServer(https.createServer, source, { authorize: authorizeAny() }, (req, res) => res.end("ok"));
 * server.listen(8443);
 */
export function createMtlsServer<S extends tls.Server, L>(create: ServerFactory<S, L>, source: CredentialSource, opts: ServerOptions & { extra?: object; selfCheck?: SelfCheckOptions }, listener?: L): S {
  if (opts?.selfCheck) assertReady(source, opts.selfCheck);
  const options = serverOptions(source, opts);
  const merged = { ...opts.extra, ...options } as MtlsServerOptions;
  return authorizeServer(listener === undefined ? create(merged) : create(merged, listener), merged);
}

/** nameProblem checks the dialed host against the server's typed SANs only (no CN fallback, as Go). */
function nameProblem(host: string, peer: Peer): Error | undefined {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  const address = addressOf(bare);
  if (sansCover(peer.info.sans, address)) return undefined;
  const sans = peer.info.sans.filter((s) => s.type === "dns" || s.type === "ip").map((s) => `${s.type.toUpperCase()}:${s.value}`);
  const cn = peer.info.subjectAttributes.CN;
  const e = new Error(
    `mtlskit: server ${describePeer(peer)} is not valid for ${bare}: ${sans.length === 0 ? "it has no DNS or IP SAN" : `its ${address.kind === "ip" ? "IP" : "DNS"} names are ${sans.join(", ")}`}` +
      `${cn === undefined ? "" : `; its CN ${cn} does not count (no CN fallback)`}; the server needs ${address.kind === "ip" ? "IP" : "DNS"}:${bare} in its subjectAltName`,
  );
  return Object.assign(e, { code: "ERR_TLS_CERT_ALTNAME_INVALID", host: bare, reason: e.message });
}

/**
 * clientOptions builds options for tls.connect, https.request and http2.connect: the source's
 * current credentials (read at each connection: spread the options per request), the server's
 * chain verified against the bundle, its name checked against typed SANs only, and `authorize`
 * run on its certificate. A refusal is the connection's error: an AuthorizationError, or an
 * ERR_TLS_CERT_ALTNAME_INVALID error naming the SANs.
 *
 * Node skips checkServerIdentity on resumed sessions: an https.Agent shared by clients with
 * different authorizers could resume a session another authorizer admitted; give each
 * authorizer its own Agent.
 *
 * @example
 * const socket = tls.connect({ ...clientOptions(source, { authorize: authorizeId("spiffe://example.org/api") }), host: "10.0.0.5", port: 8443 });
 */
export function clientOptions(source: CredentialSource, opts: ClientOptions): tls.ConnectionOptions {
  if (typeof opts?.authorize !== "function") throw new MtlskitError("service: clientOptions needs an authorize function (e.g. authorizeId(...), or authorizeAny() to admit every verified server)", EXIT.invalid);
  const contextFor = contextCache(tlsParams(opts.minVersion), false);
  source.current();
  const options: tls.ConnectionOptions = {
    rejectUnauthorized: true,
    ...(opts.servername === undefined ? {} : { servername: opts.servername }),
    checkServerIdentity: (host, cert) => {
      let peer: Peer;
      try {
        peer = peerFromDer(cert.raw);
      } catch (e) {
        return e as Error;
      }
      return nameProblem(opts.servername ?? host, peer) ?? judge(peer, opts.authorize);
    },
  };
  // A getter, so that every tls.connect (which spreads its options) takes the source's current credentials.
  Object.defineProperty(options, "secureContext", { enumerable: true, get: () => contextFor(source.current()) });
  return options;
}
