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

/** MinVersion is the lowest protocol an end accepts. */
export type MinVersion = "TLSv1.2" | "TLSv1.3";

/** MaxVersion is the highest protocol an end offers; TLSv1.2 pins a peer that mishandles 1.3. */
export type MaxVersion = "TLSv1.2" | "TLSv1.3";

/**
 * HANDSHAKE_TIMEOUT_MS is the server's default handshake deadline, 10 s: a client that connects
 * and then sends nothing, or stalls mid-handshake, is dropped then, so idle sockets cannot pile
 * up (a slowloris on the handshake). Node's default is 120 s, and at its deadline Node 20 only
 * emits tlsClientError and keeps the socket open; authorizeServer closes it. Ten seconds is far
 * above a loopback or LAN handshake (milliseconds) and a slow WAN one (a few round trips).
 */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** ServerOptions tune serverOptions. */
export interface ServerOptions {
  /** authorize decides about each verified client; required (deny by default: there is no implicit "any"). */
  authorize: Authorizer;
  /** minVersion: default "TLSv1.2"; TLS 1.3 is negotiated whenever the client offers it. */
  minVersion?: MinVersion;
  /** maxVersion: default "TLSv1.3". Give it here: set next to the options (spread), Node would ignore it, and binding refuses that. */
  maxVersion?: MaxVersion;
  /**
   * handshakeTimeout: milliseconds a client has from connecting to finishing the handshake, else
   * its socket is destroyed (the server emits `tlsClientError` with ERR_TLS_HANDSHAKE_TIMEOUT);
   * default HANDSHAKE_TIMEOUT_MS, 10 000 (Node's own default is 120 000).
   */
  handshakeTimeout?: number;
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
  /** maxVersion: default "TLSv1.3". Give it here: set next to the options (spread), Node would ignore it, and the connection is refused saying so. */
  maxVersion?: MaxVersion;
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

type TlsParams = { minVersion: MinVersion; maxVersion: MaxVersion; ciphers: string };

function tlsParams(opts: { minVersion?: MinVersion; maxVersion?: MaxVersion }): TlsParams {
  const version = (field: string, v: string) => {
    if (v !== "TLSv1.2" && v !== "TLSv1.3")
      throw new MtlskitError(
        `service: ${field} must be "TLSv1.2" or "TLSv1.3"; got ${JSON.stringify(v)}`,
        EXIT.invalid,
      );
    return v;
  };
  const minVersion = version("minVersion", opts.minVersion ?? "TLSv1.2");
  const maxVersion = version("maxVersion", opts.maxVersion ?? "TLSv1.3");
  if (minVersion > maxVersion)
    throw new MtlskitError(
      `service: minVersion ${minVersion} is above maxVersion ${maxVersion}; no protocol is left`,
      EXIT.invalid,
    );
  return { minVersion, maxVersion, ciphers: CIPHERS };
}

/**
 * CONTEXT_FIELDS are the TLS options Node reads only when it builds a secure context itself. The
 * library hands Node a built context (the client's `secureContext`; the server's
 * setSecureContext and SNICallback), so any of these placed beside its options would be
 * silently ignored: `{ ...clientOptions(...), maxVersion: "TLSv1.2" }` still negotiated TLS 1.3
 * (issue 11). overridden finds them so the library can refuse instead.
 */
const CONTEXT_FIELDS = [
  "key",
  "cert",
  "ca",
  "pfx",
  "passphrase",
  "crl",
  "ciphers",
  "minVersion",
  "maxVersion",
  "secureProtocol",
  "secureOptions",
  "ecdhCurve",
  "sigalgs",
  "dhparam",
  "honorCipherOrder",
  "privateKeyEngine",
  "privateKeyIdentifier",
  "clientCertEngine",
  "sessionIdContext",
  "ticketKeys",
  "sessionTimeout",
] as const;

/** overridden lists the context fields of `given` that differ from what the library set (`ours`): each would be ignored. */
function overridden(given: Record<string, unknown>, ours: Record<string, unknown>): string[] {
  return CONTEXT_FIELDS.filter((f) => given[f] !== undefined && given[f] !== ours[f]);
}

/** overrideAdvice says why the fields are ignored and where each belongs. */
function overrideAdvice(fields: string[], fn: "clientOptions" | "serverOptions"): string {
  const shown = fields.join(", ");
  const versions = fields.filter((f) => f === "minVersion" || f === "maxVersion");
  const where =
    versions.length > 0
      ? `; pass ${versions.join(" and ")} to ${fn}(source, { ${versions.map((f) => `${f}: ...`).join(", ")} })`
      : "";
  const rest = fields.some((f) => f !== "minVersion" && f !== "maxVersion")
    ? "; the certificate, key and bundle come from the source and the ciphers are CIPHERS, so give another source instead of files or ciphers"
    : "";
  return `${shown} given next to ${fn}() would be ignored, because the library hands Node a secure context built from the source${where}${rest}`;
}

/** BUILT holds every secure context the library built, to tell its own from another's (grpc-js passes its own). */
const BUILT = new WeakSet<tls.SecureContext>();

/** contextCache builds one secure context per Credentials object (a source returns the same object until it changes). */
function contextCache(params: TlsParams, server: boolean): (creds: Credentials) => tls.SecureContext {
  const cache = new WeakMap<Credentials, tls.SecureContext>();
  return (creds) => {
    let ctx = cache.get(creds);
    if (!ctx) {
      ctx = tls.createSecureContext({
        key: creds.key,
        cert: creds.cert,
        ca: creds.ca,
        ...(creds.crl === undefined ? {} : { crl: creds.crl }),
        ...params,
        ...(server ? { honorCipherOrder: true } : {}),
      });
      cache.set(creds, ctx);
      BUILT.add(ctx);
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
  if (peer.info.isCA)
    return new AuthorizationError(
      peer,
      "it presented a CA certificate (basicConstraints CA:TRUE) as its own; a peer must present a leaf",
    );
  const signing = (peer.info.keyUsage ?? []).filter((u) => u === "keyCertSign" || u === "cRLSign");
  if (signing.length > 0)
    return new AuthorizationError(
      peer,
      `its certificate may sign certificates (keyUsage ${signing.join(", ")}); a peer must present a leaf`,
    );
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
 * bundle, TLS 1.2+ with CIPHERS, a handshake deadline (handshakeTimeout, default 10 s). TLS
 * parameters go in `opts`: the server is given contexts built from them, so binding refuses
 * options carrying another key, cert, ca, ciphers or version. They serve nothing until `authorizeServer(server, options)`
 * binds the server (see the file comment); `createMtlsServer` does both.
 *
 * @example
 * const options = serverOptions(source, { authorize: authorizeMemberOf("spiffe://example.org") });
 * const server = authorizeServer(https.createServer(options, app), options);
 */
export function serverOptions(source: CredentialSource, opts: ServerOptions): MtlsServerOptions {
  if (typeof opts?.authorize !== "function")
    throw new MtlskitError(
      "service: serverOptions needs an authorize function (e.g. authorizeId(...), or authorizeAny() to admit every verified client)",
      EXIT.invalid,
    );
  const params = tlsParams(opts);
  const guard: Guard = {
    source,
    authorize: opts.authorize,
    contextFor: contextCache(params, true),
    tlsParams: params,
    onRefused: opts.onRefused,
    bound: false,
  };
  const handshakeTimeout = opts.handshakeTimeout ?? HANDSHAKE_TIMEOUT_MS;
  if (typeof handshakeTimeout !== "number" || !Number.isFinite(handshakeTimeout) || handshakeTimeout <= 0) {
    throw new MtlskitError(
      `service: handshakeTimeout must be a positive number of milliseconds; got ${JSON.stringify(opts.handshakeTimeout)}`,
      EXIT.invalid,
    );
  }
  source.current(); // a source that cannot produce credentials fails here, at startup
  return {
    requestCert: true,
    rejectUnauthorized: true,
    ...params,
    honorCipherOrder: true,
    handshakeTimeout,
    SNICallback: (_servername, cb) => {
      if (!guard.bound)
        return cb(
          new Error(
            "mtlskit: this server was built from serverOptions() but never bound; call authorizeServer(server, options) or use createMtlsServer()",
          ),
          undefined,
        );
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
  if (!guard)
    throw new MtlskitError(
      "service: authorizeServer needs the options object serverOptions() returned (or a spread copy of it)",
      EXIT.invalid,
    );
  const ignored = overridden(options as Record<string, unknown>, { ...guard.tlsParams, honorCipherOrder: true });
  if (ignored.length > 0)
    throw new MtlskitError(`service: authorizeServer: ${overrideAdvice(ignored, "serverOptions")}`, EXIT.invalid);
  const bound = server as S & { [GUARD]?: Guard };
  if (bound[GUARD] === guard) return server;
  if (bound[GUARD])
    throw new MtlskitError("service: this server is already bound to other serverOptions()", EXIT.invalid);
  bound[GUARD] = guard;
  guard.bound = true;

  // The default context, for handshakes without SNI: refreshed when the source's credentials change.
  let installed: Credentials | undefined;
  const refresh = () => {
    const creds = guard.source.current();
    if (creds === installed) return;
    server.setSecureContext({
      key: creds.key,
      cert: creds.cert,
      ca: creds.ca,
      ...(creds.crl === undefined ? {} : { crl: creds.crl }),
      ...guard.tlsParams,
      honorCipherOrder: true,
    });
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

  // Node 20 only reports a handshake timeout (tlsClientError ERR_TLS_HANDSHAKE_TIMEOUT) and leaves
  // the socket open, with or without listeners (measured: a silent client stayed connected); the
  // deadline means something only if the socket is closed here.
  server.on("tlsClientError", (e: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
    if (e?.code === "ERR_TLS_HANDSHAKE_TIMEOUT") socket.destroy();
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
  if (!socket.authorized)
    return new AuthorizationError(
      "(unverified)",
      `its certificate did not verify: ${String(socket.authorizationError ?? "no certificate")}`,
    );
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
export function createMtlsServer<S extends tls.Server, L>(
  create: ServerFactory<S, L>,
  source: CredentialSource,
  opts: ServerOptions & { extra?: object; selfCheck?: SelfCheckOptions },
  listener?: L,
): S {
  if (opts?.selfCheck) assertReady(source, opts.selfCheck);
  const options = serverOptions(source, opts);
  // `extra` goes under the library's options, so a field both set would be silently lost: refuse it.
  const clash = Object.keys(opts.extra ?? {}).filter(
    (k) => k in options || (CONTEXT_FIELDS as readonly string[]).includes(k),
  );
  if (clash.length > 0) {
    throw new MtlskitError(
      `service: createMtlsServer: extra.${clash.join(", extra.")} would be ignored; the library sets ${clash.length === 1 ? "it" : "them"} (give minVersion, maxVersion and handshakeTimeout as createMtlsServer's own options, the certificate and bundle through the source)`,
      EXIT.invalid,
    );
  }
  const merged = { ...opts.extra, ...options } as MtlsServerOptions;
  return authorizeServer(listener === undefined ? create(merged) : create(merged, listener), merged);
}

/** nameProblem checks the dialed host against the server's typed SANs only (no CN fallback, as Go). */
function nameProblem(host: string, peer: Peer): Error | undefined {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  const address = addressOf(bare);
  if (sansCover(peer.info.sans, address)) return undefined;
  const sans = peer.info.sans
    .filter((s) => s.type === "dns" || s.type === "ip")
    .map((s) => `${s.type.toUpperCase()}:${s.value}`);
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
 * The options carry a secure context built with `opts`' minVersion and maxVersion, so give TLS
 * parameters here: Node ignores key, cert, ca, ciphers or versions placed beside a secure context,
 * so a connection whose options override one of them (`{ ...clientOptions(...), maxVersion }`) is
 * refused with an ERR_MTLSKIT_OPTION_IGNORED error naming the field, instead of silently running
 * with the library's values.
 *
 * Node skips checkServerIdentity on resumed sessions: an https.Agent shared by clients with
 * different authorizers could resume a session another authorizer admitted; give each
 * authorizer its own Agent.
 *
 * @example
 * const socket = tls.connect({ ...clientOptions(source, { authorize: authorizeId("spiffe://example.org/api") }), host: "10.0.0.5", port: 8443 });
 */
export function clientOptions(source: CredentialSource, opts: ClientOptions): tls.ConnectionOptions {
  if (typeof opts?.authorize !== "function")
    throw new MtlskitError(
      "service: clientOptions needs an authorize function (e.g. authorizeId(...), or authorizeAny() to admit every verified server)",
      EXIT.invalid,
    );
  const params = tlsParams(opts);
  const contextFor = contextCache(params, false);
  source.current();
  const options: tls.ConnectionOptions = {
    rejectUnauthorized: true,
    // What the context holds, so that a spread copy overriding one of them differs from ours and is refused below.
    ...params,
    ...(opts.servername === undefined ? {} : { servername: opts.servername }),
    // A method, not an arrow: Node calls it as `options.checkServerIdentity(host, cert)` on the
    // options tls.connect merged, so `this` shows what the caller placed beside ours.
    checkServerIdentity(this: unknown, host: string, cert: tls.PeerCertificate) {
      const merged = this as Record<string, unknown> | undefined;
      const ours =
        merged !== null && typeof merged === "object" && BUILT.has(merged.secureContext as tls.SecureContext);
      const ignored = ours ? overridden(merged, params) : [];
      if (ignored.length > 0)
        return Object.assign(new Error(`mtlskit: ${overrideAdvice(ignored, "clientOptions")}`), {
          code: "ERR_MTLSKIT_OPTION_IGNORED",
        });
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
