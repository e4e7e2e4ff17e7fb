/**
 * Credentials for @grpc/grpc-js servers and channels: the one file that imports grpc-js.
 *
 * Server side. `grpcServerCredentials` returns ServerCredentials that require and verify client
 * certificates against the source's bundle (TLS 1.2+, CIPHERS), and that carry their own
 * authorization interceptor: grpc-js installs a credential's interceptors on every port bound
 * with it, so a server cannot serve a call without the authorizer having admitted the client's
 * certificate (deny by default; a refusal is status PERMISSION_DENIED, its details naming the
 * refused identity and why). `authorizeGrpcCall` is the same judgement for handlers that want to
 * decide per call.
 *
 * Hot reload. grpc-js (since 1.10.4; these credentials need GRPC_JS_MIN) lets server credentials
 * push new secure-context options to every listening http2 server (its secure-context watchers,
 * the mechanism behind its experimental certificate providers and grpc-node#570): these
 * credentials ask the source for `current()` every RELOAD_POLL_MS while a server listens and
 * push a change, so new handshakes use a rotated certificate and bundle without a restart; open
 * connections keep theirs. Channels do the same
 * through grpc-js's experimental certificate-provider channel credentials: a new connection
 * (grpc-js reconnects as needed) uses the source's current credentials.
 * Channels offer grpc-js's default suites (Node's defaults, TLS 1.2+): that API builds the secure
 * context from the key, certificate and bundle alone; a grpcServerCredentials server still
 * negotiates only CIPHERS.
 */
import type * as G from "@grpc/grpc-js";
import type { PeerCertificate, SecureContextOptions } from "node:tls";
import { EXIT, MtlskitError } from "../errors.ts";
import { AuthorizationError, type Authorizer } from "./authorize.ts";
import { CIPHERS, clientOptions, judge, type MinVersion } from "./options.ts";
import { peerFromDer } from "./peer.ts";
import type { CredentialSource, Credentials } from "./source.ts";

/**
 * GRPC_JS_MIN is the oldest @grpc/grpc-js these credentials work with: 1.14.0 added
 * getAuthContext() to server calls (grpc-node 78f194be), which authorizeGrpcCall and the
 * interceptor read the client's certificate from (1.13 fails every call with "getAuthContext is
 * not a function"); 1.13.0 gave ServerCredentials the (constructorOptions, contextOptions)
 * constructor these credentials pass their TLS settings through (69652500), and 1.12.0 the
 * watchers and certificate providers. package.json's peerDependencies says the same.
 */
export const GRPC_JS_MIN = "1.14.0";

/**
 * grpc is the app's own @grpc/grpc-js (an optional peer dependency: one copy, so the app's
 * grpc.Server accepts these credentials). Without it, importing `mtlskit/grpc` fails with the
 * command that fixes it rather than Node's "Cannot find package".
 */
const grpc: typeof G = await import("@grpc/grpc-js").catch((e: NodeJS.ErrnoException) => {
  if (e?.code !== "ERR_MODULE_NOT_FOUND" || !String(e.message).includes("@grpc/grpc-js")) throw e;
  throw new MtlskitError(
    `mtlskit/grpc needs @grpc/grpc-js ${GRPC_JS_MIN} or newer, which is not installed; run npm install @grpc/grpc-js`,
    EXIT.failed,
  );
});
const { experimental } = grpc;

/** RELOAD_POLL_MS is how often listening servers and open channels ask their source for new credentials. */
export const RELOAD_POLL_MS = 250;

/** GrpcServerCredentialsOptions tune grpcServerCredentials. */
export interface GrpcServerCredentialsOptions {
  /** authorize decides about each verified client, before any call reaches a handler; required (deny by default). */
  authorize: Authorizer;
  /** minVersion: default "TLSv1.2"; TLS 1.3 is negotiated whenever the client offers it. */
  minVersion?: MinVersion;
  /** onRefused is told about each refused call (the library itself logs nothing). */
  onRefused?: (error: AuthorizationError) => void;
}

/** GrpcChannelCredentialsOptions tune grpcChannelCredentials. */
export interface GrpcChannelCredentialsOptions {
  /** authorize decides about the server's verified certificate; required. */
  authorize: Authorizer;
  /** servername: the DNS name to find among the server's DNS SANs; default: the host dialed. Also set grpc's `grpc.ssl_target_name_override` channel option to send it as SNI. */
  servername?: string;
}

const needAuthorize = (fn: string, who: string) =>
  new MtlskitError(
    `service: ${fn} needs an authorize function (e.g. authorizeId(...), or authorizeAny() to admit every verified ${who})`,
    EXIT.invalid,
  );

/**
 * grpcRefusal judges a verified peer certificate: undefined admits it. A missing or undecodable
 * certificate, a CA certificate presented as a leaf (the rule serverOptions applies), and an
 * authorizer that throws all refuse.
 */
function grpcRefusal(cert: PeerCertificate | undefined, authorize: Authorizer): AuthorizationError | undefined {
  if (!cert?.raw)
    return new AuthorizationError("(no verified certificate)", "a verified client certificate is required");
  let peer;
  try {
    peer = peerFromDer(cert.raw);
  } catch (e) {
    return new AuthorizationError("(undecodable certificate)", (e as Error).message);
  }
  return judge(peer, authorize);
}

/** GrpcCall is any grpc-js call that knows its transport's peer (server calls and intercepting calls). */
export interface GrpcCall {
  getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null;
}

/**
 * authorizeGrpcCall judges the client of a server call: undefined admits it, an
 * AuthorizationError refuses it (reply with status PERMISSION_DENIED and its message). Servers
 * on grpcServerCredentials already refuse unauthorized clients; use this for finer, per-method
 * decisions.
 *
 * @example
 * echo(call, callback) {
 *   const refused = authorizeGrpcCall(call, authorizeId("spiffe://example.org/client/admin"));
 *   if (refused) return callback({ code: grpc.status.PERMISSION_DENIED, details: refused.message });
 * }
 */
export function authorizeGrpcCall(call: GrpcCall, authorize: Authorizer): AuthorizationError | undefined {
  return grpcRefusal(call.getAuthContext()?.sslPeerCertificate ?? undefined, authorize);
}

/**
 * grpcAuthorizationInterceptor is a grpc-js server interceptor that refuses every call whose
 * client the authorizer refuses, with status PERMISSION_DENIED (7) and details
 * `peer ID is not authorized: WHY`. grpcServerCredentials installs it itself.
 *
 * @example
 * new grpc.Server({ interceptors: [grpcAuthorizationInterceptor(authorizeMemberOf("spiffe://example.org"))] });
 */
export function grpcAuthorizationInterceptor(
  authorize: Authorizer,
  onRefused?: (error: AuthorizationError) => void,
): G.ServerInterceptor {
  if (typeof authorize !== "function") throw needAuthorize("grpcAuthorizationInterceptor", "client");
  return (_method, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        let refused: AuthorizationError | undefined;
        next({
          onReceiveMetadata: (metadata, mdNext) => {
            refused = authorizeGrpcCall(call, authorize);
            if (!refused) return mdNext(metadata);
            call.sendStatus({ code: grpc.status.PERMISSION_DENIED, details: refused.message });
            onRefused?.(refused);
          },
          onReceiveMessage: (message, msgNext) => {
            if (!refused) msgNext(message);
          },
          onReceiveHalfClose: (hcNext) => {
            if (!refused) hcNext();
          },
        });
      },
    });
}

type TlsParams = { minVersion: MinVersion; maxVersion: "TLSv1.3"; ciphers: string; honorCipherOrder: true };

/** Poller calls `onChange` with the source's credentials whenever `current()` returns new ones, while started. */
class Poller {
  private timer: NodeJS.Timeout | undefined;
  private last: Credentials;
  constructor(
    private readonly source: CredentialSource,
    private readonly onChange: (creds: Credentials) => void,
  ) {
    this.last = source.current();
  }
  get latest(): Credentials {
    return this.last;
  }
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.check(), RELOAD_POLL_MS);
    this.timer.unref();
  }
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
  check(): void {
    let creds: Credentials;
    try {
      creds = this.source.current();
    } catch {
      return; // keep the last credentials; a reloading source reports its own errors
    }
    if (creds === this.last) return;
    this.last = creds;
    this.onChange(creds);
  }
}

/** SourceServerCredentials are grpc-js ServerCredentials fed by a CredentialSource, with the authorization interceptor. */
class SourceServerCredentials extends grpc.ServerCredentials {
  private readonly poller: Poller;
  constructor(
    source: CredentialSource,
    private readonly params: TlsParams,
    private readonly interceptor: G.ServerInterceptor,
  ) {
    const first = source.current();
    super(
      { requestCert: true, rejectUnauthorized: true, ...params },
      SourceServerCredentials.contextOptions(first, params),
    );
    this.poller = new Poller(source, (creds) =>
      this.updateSecureContextOptions(SourceServerCredentials.contextOptions(creds, this.params)),
    );
  }
  static contextOptions(creds: Credentials, params: TlsParams): SecureContextOptions {
    return { key: creds.key, cert: creds.cert, ca: creds.ca, ...params };
  }
  override _addWatcher(watcher: Parameters<G.ServerCredentials["_addWatcher"]>[0]): void {
    super._addWatcher(watcher);
    this.poller.check();
    this.poller.start();
  }
  override _removeWatcher(watcher: Parameters<G.ServerCredentials["_removeWatcher"]>[0]): void {
    super._removeWatcher(watcher);
    if (this.getWatcherCount() === 0) this.poller.stop();
  }
  override _getInterceptors(): G.ServerInterceptor[] {
    return [this.interceptor];
  }
  override _equals(other: G.ServerCredentials): boolean {
    return other === this;
  }
}

/**
 * grpcServerCredentials builds credentials for `server.bindAsync`: the source's certificate and
 * key, client certificates required and verified against its bundle, TLS 1.2+ with CIPHERS,
 * every call's client authorized before any handler runs (PERMISSION_DENIED otherwise), and new
 * handshakes on the source's current credentials within RELOAD_POLL_MS of a change.
 *
 * @example
 * const creds = grpcServerCredentials(fileSource({ dir: "pki/services/api" }), { authorize: authorizeId("spiffe://quickstart.local/client/worker") });
 * server.bindAsync("0.0.0.0:50051", creds, (err) => { if (err) throw err; });
 */
export function grpcServerCredentials(
  source: CredentialSource,
  opts: GrpcServerCredentialsOptions,
): G.ServerCredentials {
  if (typeof opts?.authorize !== "function") throw needAuthorize("grpcServerCredentials", "client");
  const v = opts.minVersion ?? "TLSv1.2";
  if (v !== "TLSv1.2" && v !== "TLSv1.3")
    throw new MtlskitError(
      `service: minVersion must be "TLSv1.2" or "TLSv1.3"; got ${JSON.stringify(v)}`,
      EXIT.invalid,
    );
  return new SourceServerCredentials(
    source,
    { minVersion: v, maxVersion: "TLSv1.3", ciphers: CIPHERS, honorCipherOrder: true },
    grpcAuthorizationInterceptor(opts.authorize, opts.onRefused),
  );
}

/** SourceCertificateProvider is a grpc-js CertificateProvider (identity and CA) fed by a CredentialSource. */
class SourceCertificateProvider implements G.experimental.CertificateProvider {
  private readonly ca = new Set<G.experimental.CaCertificateUpdateListener>();
  private readonly identity = new Set<G.experimental.IdentityCertificateUpdateListener>();
  private readonly poller: Poller;
  constructor(source: CredentialSource) {
    this.poller = new Poller(source, (creds) => {
      for (const l of this.ca) l(SourceCertificateProvider.caUpdate(creds));
      for (const l of this.identity) l(SourceCertificateProvider.identityUpdate(creds));
    });
  }
  static caUpdate = (creds: Credentials) => ({ caCertificate: Buffer.from(creds.ca) });
  static identityUpdate = (creds: Credentials) => ({
    certificate: Buffer.from(creds.cert),
    privateKey: Buffer.from(creds.key),
  });
  private changed(): void {
    if (this.ca.size + this.identity.size === 0) this.poller.stop();
    else this.poller.start();
  }
  addCaCertificateListener(listener: G.experimental.CaCertificateUpdateListener): void {
    this.poller.check();
    this.ca.add(listener);
    this.changed();
    listener(SourceCertificateProvider.caUpdate(this.poller.latest));
  }
  removeCaCertificateListener(listener: G.experimental.CaCertificateUpdateListener): void {
    this.ca.delete(listener);
    this.changed();
  }
  addIdentityCertificateListener(listener: G.experimental.IdentityCertificateUpdateListener): void {
    this.poller.check();
    this.identity.add(listener);
    this.changed();
    listener(SourceCertificateProvider.identityUpdate(this.poller.latest));
  }
  removeIdentityCertificateListener(listener: G.experimental.IdentityCertificateUpdateListener): void {
    this.identity.delete(listener);
    this.changed();
  }
}

/**
 * grpcChannelCredentials builds credentials for a grpc-js client or channel: the source's
 * certificate and key, the server's chain verified against its bundle, the server's name matched
 * against its typed SANs only (no CN fallback), and `authorize` run on its certificate, as
 * clientOptions does. A refused server fails the call with status UNAVAILABLE, its details
 * carrying the refusal (`... is not valid for HOST: ...` or `peer ID is not authorized: WHY`).
 *
 * @example
 * const creds = grpcChannelCredentials(fileSource({ dir: "pki/services/worker" }), { authorize: authorizeId("spiffe://quickstart.local/server/api") });
 * const client = new EchoClient("api.localhost:50051", creds);
 */
export function grpcChannelCredentials(
  source: CredentialSource,
  opts: GrpcChannelCredentialsOptions,
): G.ChannelCredentials {
  if (typeof opts?.authorize !== "function") throw needAuthorize("grpcChannelCredentials", "server");
  const { checkServerIdentity } = clientOptions(source, {
    authorize: opts.authorize,
    ...(opts.servername === undefined ? {} : { servername: opts.servername }),
  });
  const provider = new SourceCertificateProvider(source);
  return experimental.createCertificateProviderChannelCredentials(provider, provider, {
    checkServerIdentity: checkServerIdentity!,
  });
}
