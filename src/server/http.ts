/**
 * The online CA's HTTPS server: the one door to Fastify. Routes (routes.ts) are plain data (a
 * method, a path, a JSON schema for the body, an async handler) so nothing else knows the
 * framework. Every answer that is not a route's success is the problem document `{error,
 * message, fix}`: a route's ServeProblem, Fastify's own refusals (413, 415, 400 for bad JSON or a
 * schema), Node's (408, 431) and anything unexpected (500, never a stack).
 *
 * Limits (docs/online-ca.md): bodies 64 KiB, headers 16 KiB and 5 s, a request 10 s, a TLS
 * handshake 5 s, idle keep-alive 5 s. Node checks the header and request deadlines every
 * connectionsCheckingInterval (default 30 s), so it is 1 s here: a slowloris connection trickling
 * a header byte a second is closed within headersTimeout plus a second.
 */
import { createServer as createHttpServer, STATUS_CODES } from "node:http";
import { createServer, type Server } from "node:https";
import type { Duplex, Readable, Writable } from "node:stream";
import type { TLSSocket } from "node:tls";
import Fastify, { type FastifyError, type FastifyReply, type FastifyRequest } from "fastify";
import { PROBLEMS, ServeProblem, type ProblemCode, type ProblemDoc } from "./problem.ts";

/** LIMITS are the server's bounds, as docs/online-ca.md lists them. */
export const LIMITS = {
  bodyBytes: 64 * 1024,
  requestTimeoutMs: 10_000,
  headersTimeoutMs: 5_000,
  keepAliveTimeoutMs: 5_000,
  maxHeaderBytes: 16 * 1024,
  handshakeTimeoutMs: 5_000,
  /** idleTimeoutMs: a socket with no traffic at all for this long is closed (a backstop behind the others). */
  idleTimeoutMs: 30_000,
  /** maxConnections: Node closes any further connection as soon as it is accepted. */
  maxConnections: 4096,
  checkIntervalMs: 1_000,
} as const;

/** TlsParts are the server's certificate, key and the bundle client certificates are asked against. */
export interface TlsParts {
  keyPem: string;
  certPem: string;
  /** caPem: the trust bundle (the CA names a client is told it may present a certificate from). */
  caPem: string;
}

/** HttpRequest is what a route handler sees of a request. */
export interface HttpRequest {
  /** body: the parsed JSON body, already checked against the route's schema; undefined for GET. */
  body: unknown;
  /** contentType: the request's content-type, lower case, without parameters; undefined when absent. */
  contentType: string | undefined;
  /** host: the Host header as sent (`127.0.0.1:8443`); undefined when absent. */
  host: string | undefined;
  /** path: the request's path as sent, without its query. */
  path: string;
  /** params: the route's `:name` path parameters. */
  params: Record<string, string>;
  /** remote: `ADDRESS:PORT` of the client. */
  remote: string;
  /** peerCertificates: the client's certificate chain as sent (leaf first, DER); empty when it sent none. Read once per TLS connection. */
  peerCertificates(): Buffer[];
  /** connection: the TLS connection's identity, the same object for each request on it: a WeakMap key for what its peer certificate settles once. */
  connection: object;
  /** log: a structured log line (nothing secret: no token, key or CSR). */
  log(fields: Record<string, unknown>, message: string): void;
}

/**
 * HttpReply is a route's answer: JSON, bytes with their content type, nothing (204, HEAD), or a
 * stream (the dashboard's server-sent events: written as it produces, ended by the route or by
 * close(), destroyed when the client goes); with extra headers (ACME's Replay-Nonce, Location, Link).
 */
export type HttpReply = (
  | { status: number; json: unknown }
  | { status: number; body: string | Buffer; type: string }
  | { status: number; empty: true }
  | { status: number; stream: Readable; type: string }
) & { headers?: Record<string, string | string[]>; type?: string };

/** JsonSchema: a JSON Schema object (draft 7, as Fastify's Ajv reads it). */
export type JsonSchema = Record<string, unknown>;

/** Route is one endpoint. */
export interface Route {
  method: "GET" | "POST" | "HEAD";
  url: string;
  /** body: the schema a POST body must satisfy; anything else is 400 bad-request before the handler runs. */
  body?: JsonSchema;
  handle(req: HttpRequest): Promise<HttpReply>;
}

/** HttpOptions configure listenHttps. */
export interface HttpOptions {
  host: string;
  port: number;
  /** tls: the server's certificate; undefined serves plain HTTP (the dashboard bound to loopback only: `mtlskit ui`). */
  tls?: TlsParts;
  routes: Route[];
  /** log: where JSON log lines go (pino). Default: no logging. */
  log?: { stream: Writable; level?: "info" | "debug" | "warn" | "error" };
  /** onResponse: each answered request's route pattern (`unmatched` for none), seconds and status. */
  onResponse?(route: string, seconds: number, status: number): void;
  /** onProblem: each problem document sent, by code (for mtlskit_serve_refused_total). */
  onProblem?(code: ProblemCode): void;
  /**
   * renderProblem: another rendering of a refusal for some paths (ACME's RFC 7807 documents
   * under /acme/, src/acme/routes.ts); undefined keeps `{error, message, fix}`.
   */
  renderProblem?(path: string, problem: ServeProblem): Promise<HttpReply | undefined>;
  /** joseJsonPrefix: paths under this prefix also take `application/jose+json` bodies (JSON, ACME's JWS, RFC 8555 §6.2). Default: none. */
  joseJsonPrefix?: string;
  /** headersFor: headers every answer to `path` carries, refusals included (the dashboard's Content-Security-Policy). Default: none. */
  headersFor?(path: string): Record<string, string> | undefined;
  /** notFoundFix: the fix a 404 names. Default: the online CA's API. */
  notFoundFix?: string;
}

/** HttpServer is a listening server. */
export interface HttpServer {
  url: string;
  host: string;
  port: number;
  /** setTls swaps the certificate, key and bundle for new connections (server.setSecureContext). */
  setTls(parts: TlsParts): void;
  /** close stops accepting, lets in-flight requests finish, closes idle connections. */
  close(): Promise<void>;
}

/** REDACT: log paths that could hold a secret; the request serializer logs none of them, this is the second line. */
const REDACT = [
  "req.headers.authorization",
  "req.headers.cookie",
  "body",
  "token",
  "csr",
  "key",
  "*.token",
  "*.csr",
  "*.key",
];

/** fastifyProblem maps Fastify's own errors to the contract's codes. */
function fastifyProblem(err: FastifyError): ServeProblem | undefined {
  if (err.validation)
    return new ServeProblem(
      "bad-request",
      `the request body ${err.message.replace(/^body\/?/, "").trim() || "does not match the schema"}`,
      "send the JSON object docs/online-ca.md describes for this route, with no other fields",
    );
  switch (err.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new ServeProblem(
        "too-large",
        `the request body is larger than ${LIMITS.bodyBytes / 1024} KiB`,
        "send the JSON body alone: a CSR is a few KiB",
      );
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new ServeProblem(
        "unsupported-media",
        "the request's content-type is not application/json",
        "send the body as JSON with `content-type: application/json`",
      );
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new ServeProblem(
        "bad-request",
        "the request body is not valid JSON",
        "send one JSON object with `content-type: application/json`",
      );
  }
  if (err instanceof SyntaxError || (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500))
    return new ServeProblem(
      "bad-request",
      "the request is malformed",
      "send one JSON object as docs/online-ca.md describes",
    );
  return undefined;
}

/** rawProblem writes a problem document on a socket Node refused before any request existed (431, 408, 400). */
function rawProblem(socket: Duplex, status: number, doc: ProblemDoc): void {
  if (!socket.writable) return void socket.destroy();
  const body = JSON.stringify(doc);
  // Written, then the socket destroyed once the bytes are out (end() alone can leave a TLS
  // socket half-open while the client keeps trickling), and in any case within a second.
  const bound = setTimeout(() => socket.destroy(), 1000).unref();
  socket.write(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    () => {
      clearTimeout(bound);
      socket.destroy();
    },
  );
}

/** listenHttps starts the HTTPS server on host:port (port 0: the OS picks) with `routes`. */
export async function listenHttps(opts: HttpOptions): Promise<HttpServer> {
  let server: Server | undefined;
  const tlsOptions = (t: TlsParts) => ({ key: t.keyPem, cert: t.certPem, ca: t.caPem, minVersion: "TLSv1.2" as const });
  const limits = {
    maxHeaderSize: LIMITS.maxHeaderBytes,
    headersTimeout: LIMITS.headersTimeoutMs,
    requestTimeout: LIMITS.requestTimeoutMs,
    keepAliveTimeout: LIMITS.keepAliveTimeoutMs,
    connectionsCheckingInterval: LIMITS.checkIntervalMs,
  };
  /** streams: the streaming replies in flight, ended by close() (Fastify's close waits for every response). */
  const streams = new Set<Readable>();
  const app = Fastify({
    serverFactory: (handler) => {
      if (!opts.tls) {
        // Plain HTTP: only the dashboard on a loopback address asks for it (src/ui/server.ts).
        const plain = createHttpServer(limits, handler);
        plain.setTimeout(LIMITS.idleTimeoutMs);
        plain.maxConnections = LIMITS.maxConnections;
        return plain;
      }
      server = createServer(
        {
          ...tlsOptions(opts.tls),
          // Every client is asked for a certificate; each route decides what it needs (enroll: none).
          requestCert: true,
          rejectUnauthorized: false,
          handshakeTimeout: LIMITS.handshakeTimeoutMs,
          ...limits,
        },
        handler,
      );
      // A handshake that fails or misses handshakeTimeout ends its socket (Node leaves that to the listener).
      server.on("tlsClientError", (_err, socket) => socket.destroy());
      // No TLS 1.2 renegotiation: a connection keeps the peer certificate of its handshake (PEER_CHAINS).
      server.on("secureConnection", (socket: TLSSocket) => socket.disableRenegotiation());
      server.setTimeout(LIMITS.idleTimeoutMs);
      server.maxConnections = LIMITS.maxConnections;
      return server;
    },
    bodyLimit: LIMITS.bodyBytes,
    logger: opts.log
      ? { level: opts.log.level ?? "info", stream: opts.log.stream, redact: { paths: REDACT, censor: "[redacted]" } }
      : false,
    // Types are what the schema says: "5" is not 5, and an unknown field is an error, not dropped.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    exposeHeadRoutes: false,
    return503OnClosing: true,
    clientErrorHandler: (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (err.code === "ECONNRESET" || socket.destroyed) return;
      const [code, message, fix]: [ProblemCode, string, string] =
        err.code === "HPE_HEADER_OVERFLOW"
          ? [
              "headers-too-large",
              `the request's headers are larger than ${LIMITS.maxHeaderBytes / 1024} KiB`,
              "send only the headers the request needs",
            ]
          : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
            ? [
                "request-timeout",
                `the request was not received in time (its headers within ${LIMITS.headersTimeoutMs / 1000} s, all of it within ${LIMITS.requestTimeoutMs / 1000} s)`,
                "send the whole request at once",
              ]
            : ["bad-request", "the request is not valid HTTP/1.1", "send a well-formed HTTP request"];
      opts.onProblem?.(code);
      rawProblem(socket, PROBLEMS[code], { error: code, message, fix });
    },
  });
  // Only JSON bodies: a text/plain body is 415, not a string handed to the schema.
  app.removeContentTypeParser(["text/plain"]);
  // ACME's JWS bodies are JSON under their own type, and only where ACME is (RFC 8555 §6.2).
  app.addContentTypeParser("application/jose+json", { parseAs: "string" }, (req, body, done) => {
    if (!opts.joseJsonPrefix || !req.url.startsWith(opts.joseJsonPrefix))
      return done(Object.assign(new Error("unsupported media type"), { code: "FST_ERR_CTP_INVALID_MEDIA_TYPE" }));
    try {
      done(null, JSON.parse(body as string));
    } catch {
      done(Object.assign(new Error("invalid JSON"), { code: "FST_ERR_CTP_INVALID_JSON_BODY" }));
    }
  });

  const send = (reply: FastifyReply, r: HttpReply) => {
    reply.code(r.status);
    if (r.headers) for (const [name, value] of Object.entries(r.headers)) reply.header(name, value);
    if ("json" in r) return reply.type(r.type ?? "application/json").send(JSON.stringify(r.json));
    if ("empty" in r) return reply.send();
    if ("stream" in r) {
      streams.add(r.stream);
      r.stream.once("close", () => streams.delete(r.stream));
      return reply.type(r.type).send(r.stream);
    }
    return reply.type(r.type).send(r.body);
  };
  /** failed hands a route's error to the error handler (as Fastify does for an async handler's rejection). */
  const failed = (reply: FastifyReply, e: unknown) => {
    if (!reply.sent) reply.send(e instanceof Error ? e : new Error(String(e)));
    else reply.log.error({ err: { message: (e as Error)?.message } }, "error after the answer was sent");
  };
  if (opts.headersFor)
    app.addHook("onRequest", async (req, reply) => {
      const headers = opts.headersFor!(req.url.split("?")[0]!);
      if (headers) reply.headers(headers);
    });

  app.setErrorHandler(async (err: FastifyError, req, reply) => {
    let problem = err instanceof ServeProblem ? err : fastifyProblem(err);
    if (!problem) {
      req.log.error({ err: { message: err.message, code: err.code } }, "internal error");
      problem = new ServeProblem(
        "internal",
        "the server failed to answer this request",
        "retry; if it persists, read the server's log",
      );
    }
    opts.onProblem?.(problem.code);
    const path = req.url.split("?")[0]!;
    const other = await opts.renderProblem?.(path, problem);
    if (other) return send(reply, other);
    return reply.code(problem.status).type("application/json").send(problem.doc());
  });
  app.setNotFoundHandler(async (req, reply) => {
    const problem = new ServeProblem(
      "not-found",
      `no route ${req.method} ${req.url.slice(0, 200)}`,
      opts.notFoundFix ??
        "the API is POST /v1/enroll, /v1/renew, /v1/revoke and GET /v1/bundle, /v1/crl, /v1/health, /metrics",
    );
    opts.onProblem?.(problem.code);
    const other = await opts.renderProblem?.(req.url.split("?")[0]!, problem);
    if (other) return send(reply, other);
    return reply.code(problem.status).type("application/json").send(problem.doc());
  });
  // Callback hooks, not async ones: no promise per request; none at all without onResponse. Each
  // route has its own, which knows its pattern (req.routeOptions builds a 13-field object per
  // read); the instance's hook answers for requests no route matched (is404) only.
  const onResponse = opts.onResponse;
  const responded = (route: string) => (_req: FastifyRequest, reply: FastifyReply, done: () => void) => {
    onResponse!(route, reply.elapsedTime / 1000, reply.statusCode);
    done();
  };
  const unmatched = responded("unmatched");
  if (onResponse)
    app.addHook("onResponse", (req, reply, done) => {
      if (req.is404) unmatched(req, reply, done);
      else done();
    });

  for (const route of opts.routes) {
    app.route({
      method: route.method,
      url: route.url,
      ...(route.body ? { schema: { body: route.body } } : {}),
      ...(onResponse ? { onResponse: responded(route.url) } : {}),
      // Not async: the route's promise is the only one, its answer sent from its settling.
      handler: (req, reply) => {
        route.handle(new Request(req)).then(
          (r) => {
            try {
              send(reply, r);
            } catch (e) {
              failed(reply, e);
            }
          },
          (e: unknown) => failed(reply, e),
        );
      },
    });
  }

  await app.listen({
    host: opts.host,
    port: opts.port,
    // Fastify cannot tell a serverFactory's server is HTTPS; the log line would say http://.
    listenTextResolver: (address) =>
      `mtlskit serve listening at ${opts.tls ? address.replace(/^http:/, "https:") : address}`,
  });
  const addr = app.server.address();
  const port = typeof addr === "object" && addr ? addr.port : opts.port;
  const shown = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  return {
    url: `${opts.tls ? "https" : "http"}://${shown}:${port}`,
    host: opts.host,
    port,
    setTls: (parts) => server?.setSecureContext(tlsOptions(parts)),
    close: () => {
      // A stream that is also writable (a PassThrough) is ended from its writing side.
      for (const s of streams) "end" in s ? (s as Duplex).end() : s.push(null);
      return app.close();
    },
  };
}

/**
 * Request is a route's view of a Fastify request: each field read from it when the route asks
 * (enroll reads the body; renew the peer certificate), one object per request; the peer's
 * address is taken at once.
 */
class Request implements HttpRequest {
  /** The peer's address, read when the request arrives: once the connection is gone Node no longer knows it, and the ledger records it as the requester. */
  private readonly address: string | undefined;
  private readonly port: number | undefined;
  constructor(private readonly req: FastifyRequest) {
    this.address = req.socket.remoteAddress;
    this.port = req.socket.remotePort;
  }
  get body(): unknown {
    return this.req.body;
  }
  get contentType(): string | undefined {
    return this.req.headers["content-type"]?.split(";")[0]?.trim().toLowerCase();
  }
  get host(): string | undefined {
    return this.req.headers.host;
  }
  get path(): string {
    const url = this.req.url;
    const q = url.indexOf("?");
    return q < 0 ? url : url.slice(0, q);
  }
  get params(): Record<string, string> {
    return (this.req.params ?? {}) as Record<string, string>;
  }
  get remote(): string {
    return `${this.address ?? "?"}:${this.port ?? 0}`;
  }
  get connection(): object {
    return this.req.raw.socket;
  }
  peerCertificates(): Buffer[] {
    return peerChain(this.req.raw.socket as TLSSocket);
  }
  log(fields: Record<string, unknown>, message: string): void {
    this.req.log.info(fields, message);
  }
}

/**
 * PEER_CHAINS: each connection's peer chain, read once. A TLS connection's peer certificate
 * cannot change: TLS 1.3 has no renegotiation and the server disables TLS 1.2's on every
 * connection (secureConnection), so a new certificate means a new handshake on a new socket;
 * getPeerCertificate(true) builds JavaScript objects for the whole chain each call.
 */
const PEER_CHAINS = new WeakMap<TLSSocket, Buffer[]>();

/** peerChain reads the certificates the client presented, leaf first, as DER; none: empty. */
function peerChain(socket: TLSSocket): Buffer[] {
  if (typeof socket.getPeerCertificate !== "function") return [];
  let chain = PEER_CHAINS.get(socket);
  if (!chain) {
    chain = readPeerChain(socket);
    PEER_CHAINS.set(socket, chain);
  }
  return chain;
}

/** readPeerChain asks the TLS socket for the peer's chain. */
function readPeerChain(socket: TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let c = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (c?.raw && out.length < 8) {
    const key = c.fingerprint256;
    if (seen.has(key)) break;
    seen.add(key);
    out.push(Buffer.from(c.raw));
    if (!c.issuerCertificate || c.issuerCertificate === c) break;
    c = c.issuerCertificate;
  }
  return out;
}
