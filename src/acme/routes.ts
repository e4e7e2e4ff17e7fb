/**
 * The ACME server (RFC 8555) under /acme/ on `mtlskit serve`, as plain routes for the server's
 * HTTP door. Every POST is a flattened JWS checked in this order (§6.2-6.5): the body's shape,
 * the protected header (alg one of JWS_ALGORITHMS; nonce; url equal to the request's URL; exactly
 * one of jwk or kid, as the resource wants), the nonce consumed once (badNonce), the key (the
 * header's jwk, or the account kid names, which must exist and be valid), then the signature.
 *
 * Accounts need External Account Binding (§7.3.4): an `acme` token of the ledger, bound to one
 * manifest service; the account may order only identifiers that service declares (dns, and ip
 * per RFC 8738). The server validates http-01, tls-alpn-01 and (with a resolver configured)
 * dns-01 itself, synchronously, while the client waits for the challenge's answer. Certificates come from issueOnline with the service's
 * policy (usage, identity URI, ttl), recorded in the ledger as `acme`. Every response carries a
 * fresh Replay-Nonce; every refusal is an RFC 7807 problem document with an ACME error type.
 * State lives in the ledger's AcmeStore (src/ledger/acme.ts).
 */
import { randomBytes } from "node:crypto";
import { DecodeError } from "../errors.ts";
import type { AcmeKind, AcmeRow, AcmeStore } from "../ledger/acme.ts";
import type { Service } from "../manifest/index.ts";
import { readCertFields } from "../pki/cert.ts";
import { REVOCATION_REASONS, serialHex } from "../pki/crl.ts";
import { decodeCsr, type CsrFields } from "../pki/csr.ts";
import { formatIp } from "../pki/ip.ts";
import type { HttpReply, HttpRequest, Route } from "../server/http.ts";
import { issueOnline, ledgerDown } from "../server/issue.ts";
import { ServeProblem } from "../server/problem.ts";
import { recordRevocation, type ServeContext } from "../server/routes.ts";
import {
  decodeB64url,
  type FlattenedJws,
  JWS_ALGORITHMS,
  JwsError,
  parseFlattened,
  spkiOfJwk,
  thumbprint,
  verifyJws,
  verifyMac,
} from "./jws.ts";
import {
  ACME_PATHS,
  AcmeProblem,
  type AccountDoc,
  type AuthzDoc,
  authzStatus,
  type ChallengeDoc,
  challengesFor,
  declaredBy,
  type Identifier,
  identifierWord,
  keyAuthorization,
  normalizeIdentifier,
  type OrderDoc,
  orderStatus,
  sameNames,
} from "./protocol.ts";
import { validateDns01, validateHttp01, validateTlsAlpn01, type ValidatorOptions } from "./validate.ts";

/** AcmeOptions configure the ACME server. */
export interface AcmeOptions {
  /** validator: where challenges are dialed (ports only tests change; see validate.ts). */
  validator?: ValidatorOptions;
  /** orderLifetimeMs: how long an order and its authorizations may be completed. Default: 1 hour. */
  orderLifetimeMs?: number;
  /** nonceLifetimeMs: how long a nonce may be used. Default: 1 hour. */
  nonceLifetimeMs?: number;
}

/** MAX_IDENTIFIERS bounds one order (each is one authorization and one validation). */
const MAX_IDENTIFIERS = 100;

/** newId: a random resource id (128 bits, base64url). */
const newId = () => randomBytes(16).toString("base64url");

/** Versioned: a stored document and the version a write replaces. */
interface Versioned<T> {
  id: string;
  version: number;
  lookup: string | undefined;
  doc: T;
}

/** Authenticated: a POST's verified JWS: its payload and who signed it. */
interface Authenticated {
  /** payload: the parsed JSON payload; undefined for POST-as-GET (an empty payload). */
  payload: unknown;
  header: Record<string, unknown>;
  /** jwk: the key that signed it (the header's jwk, or the account's). */
  jwk: Record<string, unknown>;
  alg: string;
  account: Versioned<AccountDoc> | undefined;
}

/**
 * acmeRoutes builds the ACME routes over `ctx` (the manifest, the CA, the ledger, the clock); the
 * ledger must keep ACME state (Ledger.acme). Also returns renderProblem, so Fastify's own refusals
 * under /acme/ (a body too large, bad JSON) are problem documents too.
 */
export function acmeRoutes(
  ctx: ServeContext,
  store: AcmeStore,
  opts: AcmeOptions = {},
): { routes: Route[]; renderProblem: (path: string, p: ServeProblem) => Promise<HttpReply | undefined> } {
  const orderLifetimeMs = opts.orderLifetimeMs ?? 3_600_000;
  const nonceLifetimeMs = opts.nonceLifetimeMs ?? 3_600_000;
  /** dnsOffered: dns-01 is offered only with a resolver configured (validate.ts's dnsResolvers). */
  const dnsOffered = (opts.validator?.dnsResolvers?.length ?? 0) > 0;

  /** base: the URL the client reached us at (https://HOST[:PORT]), from its Host header. */
  const base = (req: HttpRequest) => {
    const host = req.host ?? "";
    if (!/^[A-Za-z0-9.\-[\]:]{1,300}$/.test(host))
      throw new AcmeProblem("malformed", "the request has no usable Host header", {
        fix: "send the Host header the directory URL names",
      });
    return `https://${host}`;
  };

  const nonce = async (): Promise<string> => {
    const n = randomBytes(16).toString("base64url");
    try {
      await store.addNonce(n, new Date(ctx.now().getTime() + nonceLifetimeMs));
    } catch (e) {
      throw ledgerDown(e);
    }
    return n;
  };

  /** problemReply renders an AcmeProblem (or a ServeProblem from the shared issuance path) as application/problem+json with a fresh nonce. */
  const problemReply = async (req: HttpRequest | undefined, e: unknown): Promise<HttpReply> => {
    let p: AcmeProblem;
    if (e instanceof AcmeProblem) p = e;
    else if (e instanceof ServeProblem)
      p = new AcmeProblem(
        e.code === "ledger-unavailable" || e.code === "ca-offline"
          ? "serverInternal"
          : e.code === "policy" || e.code.startsWith("csr")
            ? "badCSR"
            : "malformed",
        e.message,
        { fix: e.fix, status: e.code === "ledger-unavailable" || e.code === "ca-offline" ? 503 : undefined },
      );
    else if (e instanceof JwsError) p = new AcmeProblem("malformed", e.message);
    else {
      req?.log({ err: (e as Error)?.message }, "acme: internal error");
      p = new AcmeProblem("serverInternal", "the server failed to answer this request", {
        fix: "retry; if it persists, read the server's log",
      });
    }
    const headers: Record<string, string | string[]> = { "cache-control": "no-store" };
    try {
      headers["replay-nonce"] = await nonce();
    } catch {
      // The ledger is down: the problem goes out without a nonce (the client must get a new one).
    }
    if (p.location) headers.location = p.location;
    ctx.metrics.refused(`acme:${p.type}`);
    return { status: p.status, json: p.doc(), type: "application/problem+json", headers };
  };

  /** handle wraps a route: every answer gets a Replay-Nonce (RFC 8555 §6.5) and every refusal becomes a problem document. */
  const handle =
    (f: (req: HttpRequest) => Promise<HttpReply>) =>
    async (req: HttpRequest): Promise<HttpReply> => {
      try {
        const r = await f(req);
        return { ...r, headers: { ...r.headers, "replay-nonce": await nonce() } };
      } catch (e) {
        return problemReply(req, e);
      }
    };

  const get = async <T>(kind: AcmeKind, id: string): Promise<Versioned<T> | undefined> => {
    let row: AcmeRow | undefined;
    try {
      row = await store.get(kind, id);
    } catch (e) {
      throw ledgerDown(e);
    }
    return row ? { id: row.id, version: row.version, lookup: row.lookup, doc: JSON.parse(row.doc) as T } : undefined;
  };

  const write = async (
    rows: { kind: AcmeKind; obj: Versioned<unknown> }[],
    bind?: { tokenId: string; account: string; now: Date },
  ) => {
    try {
      return await store.write(
        rows.map(({ kind, obj }) => ({
          kind,
          id: obj.id,
          version: obj.version,
          lookup: obj.lookup,
          doc: JSON.stringify(obj.doc),
        })),
        bind,
      );
    } catch (e) {
      throw ledgerDown(e);
    }
  };

  /** serviceOf: the manifest service an account is bound to, while it still is a csr: true service. */
  const serviceOf = (account: AccountDoc): Service => {
    const s = ctx.loaded.manifest.services.find((x) => x.name === account.service);
    if (s?.csr !== true)
      throw new AcmeProblem(
        "unauthorized",
        `the account's service ${account.service} is no longer a csr: true service of the manifest`,
        { fix: "the operator restores the service in the manifest, or makes an EAB key for another service" },
      );
    return s;
  };

  /**
   * authenticate checks a POST's JWS (RFC 8555 §6.2-6.5). `key`: "jwk" (newAccount), "kid"
   * (everything else) or "either" (revokeCert: the account, or the certificate's own key).
   */
  const authenticate = async (req: HttpRequest, key: "jwk" | "kid" | "either"): Promise<Authenticated> => {
    if (req.contentType !== "application/jose+json")
      throw new AcmeProblem(
        "malformed",
        `the content-type is ${req.contentType ?? "absent"}, not application/jose+json`,
        {
          fix: "send the JWS as application/jose+json (RFC 8555 §6.2)",
        },
      );
    const { jws, header } = parseFlattened(req.body);
    const alg = header.alg;
    if (typeof alg !== "string" || !(JWS_ALGORITHMS as readonly string[]).includes(alg))
      throw new AcmeProblem("badSignatureAlgorithm", `alg ${JSON.stringify(alg)} is not accepted`, {
        extra: { algorithms: JWS_ALGORITHMS },
        fix: `sign with one of ${JWS_ALGORITHMS.join(", ")}`,
      });
    if (typeof header.nonce !== "string" || header.nonce.length === 0 || header.nonce.length > 200)
      throw new AcmeProblem("badNonce", "the protected header has no nonce", { fix: "get one from newNonce" });
    const url = `${base(req)}${req.path}`;
    if (header.url !== url)
      throw new AcmeProblem(
        "unauthorized",
        `the protected header's url ${JSON.stringify(header.url)} is not this request's URL ${url}`,
        {
          fix: "sign the URL the request is sent to (RFC 8555 §6.4)",
        },
      );
    const hasJwk = header.jwk !== undefined;
    const hasKid = header.kid !== undefined;
    if (hasJwk === hasKid)
      throw new AcmeProblem("malformed", "the protected header must hold exactly one of jwk and kid (RFC 8555 §6.2)");
    if (key === "jwk" && !hasJwk)
      throw new AcmeProblem("malformed", "this resource takes a jwk, not a kid (RFC 8555 §6.2)");
    if (key === "kid" && !hasKid)
      throw new AcmeProblem("malformed", "this resource takes the account's kid, not a jwk (RFC 8555 §6.2)", {
        fix: "register with newAccount and sign with its URL as kid",
      });
    let used: boolean;
    try {
      used = await store.useNonce(header.nonce, ctx.now());
    } catch (e) {
      throw ledgerDown(e);
    }
    if (!used)
      throw new AcmeProblem("badNonce", "the nonce was used already, has expired, or was never given", {
        fix: "retry with the Replay-Nonce of this response",
      });
    let account: Versioned<AccountDoc> | undefined;
    let jwk: Record<string, unknown>;
    if (hasKid) {
      const prefix = `${base(req)}/acme/account/`;
      const kid = header.kid;
      if (typeof kid !== "string" || !kid.startsWith(prefix))
        throw new AcmeProblem("malformed", `kid ${JSON.stringify(kid)} is not an account URL of this server`);
      account = await get<AccountDoc>("account", kid.slice(prefix.length));
      if (!account) throw new AcmeProblem("accountDoesNotExist", "the kid names no account of this server");
      if (account.doc.status !== "valid")
        throw new AcmeProblem("unauthorized", `the account is ${account.doc.status}`, {
          fix: "register a new account with a new EAB key",
        });
      jwk = account.doc.key;
    } else {
      if (typeof header.jwk !== "object" || header.jwk === null)
        throw new AcmeProblem("malformed", "jwk is not an object");
      jwk = header.jwk as Record<string, unknown>;
    }
    let payloadBytes: Buffer;
    try {
      payloadBytes = await verifyJws(jws, jwk, alg);
    } catch (e) {
      throw new AcmeProblem("malformed", (e as Error).message, {
        fix: hasKid ? "sign with the account's current key" : "sign with the private half of the jwk sent",
      });
    }
    let payload: unknown;
    if (payloadBytes.length > 0) {
      try {
        payload = JSON.parse(payloadBytes.toString("utf8"));
      } catch {
        throw new AcmeProblem("malformed", "the JWS payload is not JSON");
      }
      if (typeof payload !== "object" || payload === null || Array.isArray(payload))
        throw new AcmeProblem("malformed", "the JWS payload is not a JSON object");
    }
    return { payload, header: header as Record<string, unknown>, jwk, alg, account };
  };

  const mine = (a: Authenticated, owner: string, what: string) => {
    if (!a.account || a.account.id !== owner)
      throw new AcmeProblem("unauthorized", `this ${what} belongs to another account`, {
        fix: "ask with the account that created it",
      });
    return a.account;
  };

  const accountJson = (b: string, a: Versioned<AccountDoc>) => ({
    status: a.doc.status,
    contact: a.doc.contact,
    orders: `${b}${ACME_PATHS.account(a.id)}/orders`,
  });

  const loadAuthzs = async (o: OrderDoc) =>
    Promise.all(
      o.authorizations.map(async (id) => {
        const a = await get<AuthzDoc>("authz", id);
        if (!a) throw new AcmeProblem("serverInternal", "an order's authorization is missing");
        return a;
      }),
    );

  const challengeJson = (b: string, authzId: string, c: ChallengeDoc, i: number) => ({
    type: c.type,
    url: `${b}${ACME_PATHS.challenge(authzId, i)}`,
    status: c.status,
    token: c.token,
    ...(c.validated ? { validated: c.validated } : {}),
    ...(c.error ? { error: c.error } : {}),
  });

  const authzJson = (b: string, a: Versioned<AuthzDoc>) => ({
    identifier: a.doc.identifier,
    status: authzStatus(a.doc, ctx.now()),
    expires: a.doc.expires,
    challenges: a.doc.challenges.map((c, i) => challengeJson(b, a.id, c, i)),
  });

  const orderJson = (b: string, o: Versioned<OrderDoc>, authzs: Versioned<AuthzDoc>[]) => ({
    status: orderStatus(
      o.doc,
      authzs.map((a) => a.doc),
      ctx.now(),
    ),
    expires: o.doc.expires,
    identifiers: o.doc.identifiers,
    authorizations: o.doc.authorizations.map((id) => `${b}${ACME_PATHS.authz(id)}`),
    finalize: `${b}${ACME_PATHS.finalize(o.id)}`,
    ...(o.doc.serial ? { certificate: `${b}${ACME_PATHS.certificate(o.id)}` } : {}),
    ...(o.doc.error ? { error: o.doc.error } : {}),
  });

  /**
   * downloadChain: the leaf and its chain; a leaf signed by the root directly gets the root
   * appended, since certbot refuses a chain of one certificate ("less than 2 certificates in
   * chain") and a peer holding the bundle ignores the extra copy.
   */
  const downloadChain = (chain: string) =>
    (chain.match(/-----BEGIN CERTIFICATE-----/g) ?? []).length >= 2 ? chain : chain + ctx.authority().anchorPem;

  const indexLink = (b: string) => `<${b}${ACME_PATHS.directory}>;rel="index"`;

  // --- the resources ---

  const directory: Route = {
    method: "GET",
    url: ACME_PATHS.directory,
    handle: handle(async (req) => {
      const b = base(req);
      return {
        status: 200,
        json: {
          newNonce: `${b}${ACME_PATHS.newNonce}`,
          newAccount: `${b}${ACME_PATHS.newAccount}`,
          newOrder: `${b}${ACME_PATHS.newOrder}`,
          revokeCert: `${b}${ACME_PATHS.revokeCert}`,
          keyChange: `${b}${ACME_PATHS.keyChange}`,
          meta: {
            externalAccountRequired: true,
            website: "https://github.com/mtlskit/mtlskit",
          },
        },
      };
    }),
  };

  const newNonce = (method: "GET" | "HEAD"): Route => ({
    method,
    url: ACME_PATHS.newNonce,
    handle: handle(async (req) => ({
      // RFC 8555 §7.2: 200 to HEAD, 204 to GET, never cached.
      status: method === "HEAD" ? 200 : 204,
      empty: true,
      headers: { "cache-control": "no-store", link: indexLink(base(req)) },
    })),
  });

  const newAccount: Route = {
    method: "POST",
    url: ACME_PATHS.newAccount,
    handle: handle(async (req) => {
      const b = base(req);
      const a = await authenticate(req, "jwk");
      const p = (a.payload ?? {}) as {
        contact?: unknown;
        onlyReturnExisting?: unknown;
        externalAccountBinding?: unknown;
        termsOfServiceAgreed?: unknown;
      };
      const thumb = await thumbprint(a.jwk);
      let existing: AcmeRow | undefined;
      try {
        existing = await store.find("account", thumb);
      } catch (e) {
        throw ledgerDown(e);
      }
      if (existing) {
        const acc = {
          id: existing.id,
          version: existing.version,
          lookup: existing.lookup,
          doc: JSON.parse(existing.doc) as AccountDoc,
        };
        return {
          status: 200,
          json: accountJson(b, acc),
          headers: { location: `${b}${ACME_PATHS.account(acc.id)}`, link: indexLink(b) },
        };
      }
      if (p.onlyReturnExisting === true)
        throw new AcmeProblem("accountDoesNotExist", "no account has this key", {
          fix: "register without onlyReturnExisting, with an EAB key",
        });
      const contact = p.contact ?? [];
      if (
        !Array.isArray(contact) ||
        contact.some((c) => typeof c !== "string" || c.length > 320) ||
        contact.length > 10
      )
        throw new AcmeProblem("malformed", "contact is not a list of at most 10 URLs");
      const eab = p.externalAccountBinding;
      if (eab === undefined)
        throw new AcmeProblem(
          "externalAccountRequired",
          "this CA needs an External Account Binding (RFC 8555 §7.3.4)",
          {
            fix: "create an EAB key on the CA's host (`mtlskit token create SERVICE --acme`) and pass its kid and HMAC key to the ACME client",
          },
        );
      let binding: { jws: FlattenedJws; header: Record<string, unknown> };
      try {
        binding = parseFlattened(eab);
      } catch (e) {
        throw new AcmeProblem("malformed", `externalAccountBinding: ${(e as Error).message}`);
      }
      const h = binding.header;
      const url = `${b}${req.path}`;
      if (h.url !== url)
        throw new AcmeProblem(
          "unauthorized",
          "externalAccountBinding's url is not the newAccount URL (RFC 8555 §7.3.4)",
        );
      if (h.nonce !== undefined) throw new AcmeProblem("malformed", "externalAccountBinding must not carry a nonce");
      if (typeof h.kid !== "string")
        throw new AcmeProblem("malformed", "externalAccountBinding has no kid", { fix: "pass the EAB key id" });
      let v: Awaited<ReturnType<AcmeStore["eabKey"]>>;
      try {
        v = await store.eabKey(h.kid, ctx.now());
      } catch (e) {
        throw ledgerDown(e);
      }
      if (!v.ok)
        throw new AcmeProblem(
          "unauthorized",
          `the EAB key ${JSON.stringify(h.kid.slice(0, 40))} ${
            {
              unknown: "is not known to this CA",
              "wrong-kind": "is not an ACME EAB key",
              expired: "has expired",
              used: "has bound an account already (one account per EAB key)",
              revoked: "was revoked",
            }[v.reason]
          }`,
          { fix: "ask the operator for a new one: `mtlskit token create SERVICE --acme`" },
        );
      let bound: Buffer;
      try {
        bound = await verifyMac(binding.jws, v.hmacKey);
      } catch (e) {
        throw new AcmeProblem("unauthorized", `externalAccountBinding: ${(e as Error).message}`, {
          fix: "pass the HMAC key printed with the kid, as printed (base64url)",
        });
      }
      let boundKey: unknown;
      try {
        boundKey = JSON.parse(bound.toString("utf8"));
      } catch {
        throw new AcmeProblem("malformed", "externalAccountBinding's payload is not a JWK");
      }
      if ((await thumbprint(boundKey).catch(() => "")) !== thumb)
        throw new AcmeProblem(
          "unauthorized",
          "externalAccountBinding binds another key than the account's (RFC 8555 §7.3.4)",
        );
      const service = ctx.loaded.manifest.services.find((s) => s.name === v.token.service);
      if (service?.csr !== true)
        throw new AcmeProblem(
          "unauthorized",
          `the EAB key's service ${v.token.service} is not a csr: true service of the manifest`,
        );
      const id = newId();
      const acc: Versioned<AccountDoc> = {
        id,
        version: 1,
        lookup: thumb,
        doc: {
          status: "valid",
          key: a.jwk,
          contact: contact as string[],
          service: service.name,
          eab: v.token.id,
          createdAt: ctx.now().toISOString(),
        },
      };
      const out = await write([{ kind: "account", obj: acc }], { tokenId: v.token.id, account: id, now: ctx.now() });
      if (!out.ok)
        throw new AcmeProblem(
          "unauthorized",
          out.reason === "lookup-taken"
            ? "an account with this key was registered at the same time"
            : `the EAB key ${out.reason === "token-used" ? "has bound an account already" : "is no longer usable"}`,
          { fix: "ask the operator for a new one: `mtlskit token create SERVICE --acme`" },
        );
      req.log({ account: id, service: service.name, eab: v.token.id }, "acme: account created");
      return {
        status: 201,
        json: accountJson(b, acc),
        headers: { location: `${b}${ACME_PATHS.account(id)}`, link: indexLink(b) },
      };
    }),
  };

  const account: Route = {
    method: "POST",
    url: "/acme/account/:id",
    handle: handle(async (req) => {
      const b = base(req);
      const a = await authenticate(req, "kid");
      const acc = mine(a, req.params.id!, "account");
      const p = (a.payload ?? {}) as { status?: unknown; contact?: unknown };
      if (p.status !== undefined && p.status !== "deactivated")
        throw new AcmeProblem("malformed", `status may only be "deactivated"`);
      const next: Versioned<AccountDoc> = { ...acc, version: acc.version + 1, doc: { ...acc.doc } };
      let changed = false;
      if (p.contact !== undefined) {
        if (!Array.isArray(p.contact) || p.contact.some((c) => typeof c !== "string") || p.contact.length > 10)
          throw new AcmeProblem("malformed", "contact is not a list of at most 10 URLs");
        next.doc.contact = p.contact as string[];
        changed = true;
      }
      if (p.status === "deactivated") {
        next.doc.status = "deactivated";
        changed = true;
      }
      if (changed) {
        const out = await write([{ kind: "account", obj: next }]);
        if (!out.ok) throw new AcmeProblem("malformed", "the account changed meanwhile; retry", { status: 409 });
        if (p.status === "deactivated") req.log({ account: acc.id }, "acme: account deactivated");
      }
      return { status: 200, json: accountJson(b, changed ? next : acc), headers: { link: indexLink(b) } };
    }),
  };

  const accountOrders: Route = {
    method: "POST",
    url: "/acme/account/:id/orders",
    handle: handle(async (req) => {
      const a = await authenticate(req, "kid");
      mine(a, req.params.id!, "account");
      // The list is not kept (RFC 8555 §7.1.2.1 allows paging; this server returns none).
      return { status: 200, json: { orders: [] }, headers: { link: indexLink(base(req)) } };
    }),
  };

  const newOrder: Route = {
    method: "POST",
    url: ACME_PATHS.newOrder,
    handle: handle(async (req) => {
      const b = base(req);
      const a = await authenticate(req, "kid");
      const acc = a.account!;
      const service = serviceOf(acc.doc);
      const p = (a.payload ?? {}) as { identifiers?: unknown; notBefore?: unknown; notAfter?: unknown };
      if (p.notBefore !== undefined || p.notAfter !== undefined)
        throw new AcmeProblem(
          "malformed",
          "notBefore and notAfter are not supported: the lifetime is the service's ttl",
          {
            fix: "order without notBefore and notAfter",
          },
        );
      if (!Array.isArray(p.identifiers) || p.identifiers.length === 0 || p.identifiers.length > MAX_IDENTIFIERS)
        throw new AcmeProblem("malformed", `identifiers must be a list of 1 to ${MAX_IDENTIFIERS} identifiers`);
      const ids: Identifier[] = [];
      const sub: AcmeProblem[] = [];
      for (const raw of p.identifiers) {
        let id: Identifier;
        try {
          id = normalizeIdentifier(raw);
        } catch (e) {
          if (e instanceof AcmeProblem) {
            sub.push(e);
            continue;
          }
          throw e;
        }
        if (id.type === "dns" && id.value.startsWith("*."))
          sub.push(
            new AcmeProblem(
              "rejectedIdentifier",
              `${id.value}: a wildcard; the manifest declares exact names only (service certificates name exact hosts)`,
              { extra: { identifier: id }, fix: "order the exact names the service declares" },
            ),
          );
        else if (!declaredBy(service, id))
          sub.push(
            new AcmeProblem(
              "rejectedIdentifier",
              `${id.value} is not declared for service ${service.name} in the manifest (it declares ${[...service.dns, ...service.ips.map((i) => formatIp(i.bytes))].join(", ") || "no names"})`,
              { extra: { identifier: id } },
            ),
          );
        else if (!ids.some((x) => x.type === id.type && x.value === id.value)) ids.push(id);
      }
      if (sub.length > 0) {
        const first = sub[0]!;
        throw new AcmeProblem(
          sub.length === 1 ? first.type : sub.every((s) => s.type === first.type) ? first.type : "malformed",
          sub.length === 1
            ? first.message
            : `${sub.length} identifiers are refused: ${sub.map((s) => s.message).join("; ")}`,
          {
            fix: `order only names services.${service.name}.addresses declares, or declare them there and restart serve`,
            extra: { subproblems: sub.map((s) => s.doc()) },
          },
        );
      }
      const now = ctx.now();
      const expires = new Date(now.getTime() + orderLifetimeMs).toISOString();
      // services.NAME.acmeTrustBinding: the EAB binding is the proof; authorizations are born valid (README "ACME": the risk).
      const trusted = service.acmeTrustBinding === true;
      const authzs: Versioned<AuthzDoc>[] = ids.map((identifier) => ({
        id: newId(),
        version: 1,
        lookup: undefined,
        doc: {
          account: acc.id,
          identifier,
          status: trusted ? "valid" : "pending",
          expires,
          ...(trusted ? { prevalidated: true } : {}),
          challenges: (trusted ? [] : challengesFor(identifier, { dns: dnsOffered })).map((type) => ({
            type,
            token: randomBytes(32).toString("base64url"),
            status: "pending" as const,
          })),
        },
      }));
      const order: Versioned<OrderDoc> = {
        id: newId(),
        version: 1,
        lookup: undefined,
        doc: { account: acc.id, status: "pending", identifiers: ids, authorizations: authzs.map((x) => x.id), expires },
      };
      const out = await write([
        ...authzs.map((obj) => ({ kind: "authz" as const, obj })),
        { kind: "order", obj: order },
      ]);
      if (!out.ok) throw new AcmeProblem("serverInternal", "the order could not be stored; retry");
      if (trusted)
        req.log(
          { account: acc.id, service: service.name, identifiers: ids.map(identifierWord) },
          "acme: authorizations pre-validated (acmeTrustBinding)",
        );
      return {
        status: 201,
        json: orderJson(b, order, authzs),
        headers: { location: `${b}${ACME_PATHS.order(order.id)}`, link: indexLink(b) },
      };
    }),
  };

  const orderRoute: Route = {
    method: "POST",
    url: "/acme/order/:id",
    handle: handle(async (req) => {
      const b = base(req);
      const a = await authenticate(req, "kid");
      const o = await get<OrderDoc>("order", req.params.id!);
      if (!o) throw new AcmeProblem("malformed", "no such order", { status: 404 });
      mine(a, o.doc.account, "order");
      return { status: 200, json: orderJson(b, o, await loadAuthzs(o.doc)), headers: { link: indexLink(b) } };
    }),
  };

  const authzRoute: Route = {
    method: "POST",
    url: "/acme/authz/:id",
    handle: handle(async (req) => {
      const b = base(req);
      const a = await authenticate(req, "kid");
      const z = await get<AuthzDoc>("authz", req.params.id!);
      if (!z) throw new AcmeProblem("malformed", "no such authorization", { status: 404 });
      mine(a, z.doc.account, "authorization");
      const p = (a.payload ?? {}) as { status?: unknown };
      if (p.status !== undefined) {
        if (p.status !== "deactivated") throw new AcmeProblem("malformed", `status may only be "deactivated"`);
        const st = authzStatus(z.doc, ctx.now());
        if (st !== "pending" && st !== "valid")
          throw new AcmeProblem("malformed", `a ${st} authorization cannot be deactivated`);
        const next = { ...z, version: z.version + 1, doc: { ...z.doc, status: "deactivated" as const } };
        if (!(await write([{ kind: "authz", obj: next }])).ok)
          throw new AcmeProblem("malformed", "the authorization changed meanwhile; retry", { status: 409 });
        return { status: 200, json: authzJson(b, next), headers: { link: indexLink(b) } };
      }
      return { status: 200, json: authzJson(b, z), headers: { link: indexLink(b) } };
    }),
  };

  const challengeRoute: Route = {
    method: "POST",
    url: "/acme/chall/:authz/:index",
    handle: handle(async (req) => {
      const b = base(req);
      const a = await authenticate(req, "kid");
      const z = await get<AuthzDoc>("authz", req.params.authz!);
      const index = Number(req.params.index);
      const c = z && Number.isInteger(index) ? z.doc.challenges[index] : undefined;
      if (!z || !c)
        throw new AcmeProblem(
          "malformed",
          z
            ? `no such challenge: this authorization offers ${z.doc.challenges.map((x) => x.type).join(", ")}${dnsOffered ? "" : " (dns-01 only where the operator configured a resolver: `mtlskit serve --acme-dns-resolver`)"}`
            : "no such challenge",
          { status: 404, fix: "use a challenge URL the authorization lists" },
        );
      const acc = mine(a, z.doc.account, "challenge");
      const up = `<${b}${ACME_PATHS.authz(z.id)}>;rel="up"`;
      const answer = (doc: AuthzDoc) => ({
        status: 200,
        json: challengeJson(b, z.id, doc.challenges[index]!, index),
        headers: { link: [indexLink(b), up] },
      });
      // POST-as-GET reads; any JSON object (RFC 8555 §7.5.1: `{}`) asks for validation.
      if (a.payload === undefined || authzStatus(z.doc, ctx.now()) !== "pending" || c.status !== "pending")
        return answer(z.doc);
      const keyAuth = keyAuthorization(c.token, await thumbprint(acc.doc.key));
      let error: AcmeProblem | undefined;
      try {
        if (c.type === "http-01") await validateHttp01(z.doc.identifier, c.token, keyAuth, opts.validator);
        else if (c.type === "dns-01") await validateDns01(z.doc.identifier, keyAuth, opts.validator);
        else await validateTlsAlpn01(z.doc.identifier, keyAuth, opts.validator);
      } catch (e) {
        error =
          e instanceof AcmeProblem
            ? e
            : new AcmeProblem("connection", `validating ${z.doc.identifier.value} failed: ${(e as Error).message}`);
      }
      const now = ctx.now().toISOString();
      const challenges = z.doc.challenges.map((x, i) =>
        i !== index
          ? x
          : error
            ? { ...x, status: "invalid" as const, error: { ...error.doc(), identifier: z.doc.identifier } }
            : { ...x, status: "valid" as const, validated: now },
      );
      const next = {
        ...z,
        version: z.version + 1,
        doc: { ...z.doc, status: error ? ("invalid" as const) : ("valid" as const), challenges },
      };
      const out = await write([{ kind: "authz", obj: next }]);
      if (!out.ok) {
        // Another request validated it meanwhile: answer what is stored now.
        const now2 = await get<AuthzDoc>("authz", z.id);
        return answer(now2!.doc);
      }
      req.log(
        { account: acc.id, identifier: identifierWord(z.doc.identifier), challenge: c.type, valid: !error },
        "acme: challenge validated",
      );
      return answer(next.doc);
    }),
  };

  const finalize: Route = {
    method: "POST",
    url: "/acme/order/:id/finalize",
    handle: handle(async (req) => {
      const b = base(req);
      const a = await authenticate(req, "kid");
      const o = await get<OrderDoc>("order", req.params.id!);
      if (!o) throw new AcmeProblem("malformed", "no such order", { status: 404 });
      const acc = mine(a, o.doc.account, "order");
      const service = serviceOf(acc.doc);
      const authzs = await loadAuthzs(o.doc);
      const status = orderStatus(
        o.doc,
        authzs.map((x) => x.doc),
        ctx.now(),
      );
      if (status !== "ready")
        throw new AcmeProblem("orderNotReady", `the order is ${status}, not ready`, {
          fix: status === "pending" ? "complete every authorization's challenge first" : "create a new order",
        });
      const p = (a.payload ?? {}) as { csr?: unknown };
      if (typeof p.csr !== "string") throw new AcmeProblem("malformed", "csr (base64url DER) is missing");
      let csr: CsrFields;
      try {
        csr = decodeCsr(decodeB64url(p.csr));
      } catch (e) {
        throw new AcmeProblem(
          "badCSR",
          `csr is not a PKCS#10 request${e instanceof DecodeError ? `: ${e.message}` : ""}`,
        );
      }
      // RFC 8555 §7.4: the CSR names exactly the order's identifiers (a CN, when present, is one of them).
      const wanted = o.doc.identifiers.map(identifierWord);
      const asked = csr.decoded.sans
        .filter((s) => s.type === "dns" || s.type === "ip")
        .map((s) => (s.type === "dns" ? `DNS:${s.value.toLowerCase()}` : `IP:${s.value}`));
      const cn = csr.decoded.subjectAttributes.CN;
      if (cn !== undefined && !asked.some((w) => w.slice(w.indexOf(":") + 1).toLowerCase() === cn.toLowerCase()))
        asked.push(`DNS:${cn.toLowerCase()}`);
      if (!sameNames(asked, wanted))
        throw new AcmeProblem(
          "badCSR",
          `the CSR asks for ${asked.join(", ") || "no names"}, but the order is for ${wanted.join(", ")}`,
          { fix: "make the CSR for exactly the order's identifiers" },
        );
      const firstDns = o.doc.identifiers.find((i) => i.type === "dns");
      const processing = { ...o, version: o.version + 1, doc: { ...o.doc, status: "processing" as const } };
      if (!(await write([{ kind: "order", obj: processing }])).ok)
        throw new AcmeProblem("orderNotReady", "the order is being finalized by another request", { status: 403 });
      let issued: Awaited<ReturnType<typeof issueOnline>>;
      try {
        issued = await issueOnline(
          {
            manifest: ctx.loaded.manifest,
            authority: ctx.authority(),
            ledger: ctx.ledger,
            now: new Date(Math.floor(ctx.now().getTime() / 1000) * 1000),
            signer: ctx.signer,
          },
          {
            service,
            csr,
            how: "acme",
            requester: req.remote,
            policy: {
              names: wanted,
              cnMayBeASan: true,
              // The CN is the first DNS name ordered, as ACME clients expect (lego renews CN + SANs).
              ...(firstDns ? { cn: firstDns.value } : {}),
            },
          },
        );
      } catch (e) {
        // The order is ready again: a CSR the policy refuses (a key of the wrong type) may be made again.
        await write([{ kind: "order", obj: { ...processing, version: processing.version + 1, doc: { ...o.doc } } }]);
        throw e;
      }
      const valid = {
        ...processing,
        version: processing.version + 1,
        doc: { ...processing.doc, status: "valid" as const, serial: issued.serial, chain: downloadChain(issued.chain) },
      };
      if (!(await write([{ kind: "order", obj: valid }])).ok)
        throw new AcmeProblem("serverInternal", "the order changed while its certificate was issued");
      ctx.metrics.issued("acme");
      req.log({ service: service.name, serial: issued.serial, how: "acme", account: acc.id }, "issued");
      return {
        status: 200,
        json: orderJson(b, valid, authzs),
        headers: { location: `${b}${ACME_PATHS.order(o.id)}`, link: indexLink(b) },
      };
    }),
  };

  const certificate: Route = {
    method: "POST",
    url: "/acme/cert/:id",
    handle: handle(async (req) => {
      const b = base(req);
      const a = await authenticate(req, "kid");
      const o = await get<OrderDoc>("order", req.params.id!);
      if (!o?.doc.chain) throw new AcmeProblem("malformed", "no such certificate", { status: 404 });
      mine(a, o.doc.account, "certificate");
      return {
        status: 200,
        body: o.doc.chain,
        type: "application/pem-certificate-chain",
        headers: { link: indexLink(b) },
      };
    }),
  };

  const keyChange: Route = {
    method: "POST",
    url: ACME_PATHS.keyChange,
    handle: handle(async (req) => {
      const b = base(req);
      const a = await authenticate(req, "kid");
      const acc = a.account!;
      // RFC 8555 §7.3.5: the payload is a JWS signed by the new key, over {account, oldKey}.
      let inner: ReturnType<typeof parseFlattened>;
      try {
        inner = parseFlattened(a.payload);
      } catch (e) {
        throw new AcmeProblem("malformed", `the keyChange payload: ${(e as Error).message}`);
      }
      const h = inner.header;
      if (h.url !== a.header.url) throw new AcmeProblem("malformed", "the inner JWS's url is not the outer one's");
      if (h.nonce !== undefined) throw new AcmeProblem("malformed", "the inner JWS must not carry a nonce");
      if (h.kid !== undefined || typeof h.jwk !== "object")
        throw new AcmeProblem("malformed", "the inner JWS must carry the new key as jwk");
      if (typeof h.alg !== "string" || !(JWS_ALGORITHMS as readonly string[]).includes(h.alg))
        throw new AcmeProblem("badSignatureAlgorithm", `alg ${JSON.stringify(h.alg)} is not accepted`, {
          extra: { algorithms: JWS_ALGORITHMS },
        });
      let body: { account?: unknown; oldKey?: unknown };
      try {
        body = JSON.parse((await verifyJws(inner.jws, h.jwk, h.alg)).toString("utf8"));
      } catch (e) {
        throw new AcmeProblem("malformed", `the inner JWS: ${(e as Error).message}`);
      }
      if (body.account !== `${b}${ACME_PATHS.account(acc.id)}`)
        throw new AcmeProblem("malformed", "the inner payload's account is not the signing account");
      const oldThumb = await thumbprint(acc.doc.key);
      if ((await thumbprint(body.oldKey).catch(() => "")) !== oldThumb)
        throw new AcmeProblem("malformed", "the inner payload's oldKey is not the account's key");
      const newThumb = await thumbprint(h.jwk);
      let taken: AcmeRow | undefined;
      try {
        taken = await store.find("account", newThumb);
      } catch (e) {
        throw ledgerDown(e);
      }
      if (taken)
        throw new AcmeProblem("malformed", "the new key is another account's key", {
          status: 409,
          location: `${b}${ACME_PATHS.account(taken.id)}`,
        });
      const next = {
        ...acc,
        version: acc.version + 1,
        lookup: newThumb,
        doc: { ...acc.doc, key: h.jwk as Record<string, unknown> },
      };
      const out = await write([{ kind: "account", obj: next }]);
      if (!out.ok)
        throw new AcmeProblem(
          "malformed",
          out.reason === "lookup-taken"
            ? "the new key is another account's key"
            : "the account changed meanwhile; retry",
          {
            status: 409,
          },
        );
      req.log({ account: acc.id }, "acme: account key changed");
      return { status: 200, json: accountJson(b, next), headers: { link: indexLink(b) } };
    }),
  };

  const revokeCert: Route = {
    method: "POST",
    url: ACME_PATHS.revokeCert,
    handle: handle(async (req) => {
      const a = await authenticate(req, "either");
      const p = (a.payload ?? {}) as { certificate?: unknown; reason?: unknown };
      if (typeof p.certificate !== "string")
        throw new AcmeProblem("malformed", "certificate (base64url DER) is missing");
      let fields: ReturnType<typeof readCertFields>;
      try {
        fields = readCertFields(decodeB64url(p.certificate));
      } catch {
        throw new AcmeProblem("malformed", "certificate is not a DER certificate");
      }
      const code = p.reason === undefined ? 0 : p.reason;
      const reason = Object.entries(REVOCATION_REASONS).find(([, n]) => n === code)?.[0];
      if (!reason)
        throw new AcmeProblem("badRevocationReason", `reason ${JSON.stringify(p.reason)} is not one this CA records`, {
          fix: `send one of ${Object.values(REVOCATION_REASONS).join(", ")} (RFC 5280 CRLReason codes)`,
        });
      const serial = serialHex(fields.serial);
      let row: Awaited<ReturnType<typeof ctx.ledger.get>>;
      try {
        row = await ctx.ledger.get(serial);
      } catch (e) {
        throw ledgerDown(e);
      }
      if (!row?.der.equals(fields.der))
        throw new AcmeProblem("unauthorized", "this CA did not issue that certificate online", {
          fix: "revoke certificates `mtlskit apply` made with `mtlskit revoke` on the CA's host",
        });
      // RFC 8555 §7.6: by the account (bound to the certificate's service), or by the certificate's own key.
      if (a.account) {
        if (a.account.doc.service !== row.service)
          throw new AcmeProblem("unauthorized", "the account is not bound to the certificate's service", {
            fix: "revoke with an account of that service, or sign with the certificate's key",
          });
      } else if (!(await spkiOfJwk(a.jwk, a.alg)).equals(fields.spki))
        throw new AcmeProblem("unauthorized", "the jwk is not the certificate's key", {
          fix: "sign with the certificate's private key, or with an account of its service",
        });
      if (row.revokedAt)
        throw new AcmeProblem("alreadyRevoked", `certificate ${serial} was revoked at ${row.revokedAt.toISOString()}`);
      const at = ctx.now();
      try {
        await ctx.ledger.revoke(serial, reason, at);
      } catch (e) {
        throw ledgerDown(e);
      }
      await recordRevocation(ctx, serial, reason, at);
      req.log({ serial, reason, by: a.account ? `acme:${a.account.id}` : "certificate key" }, "revoked");
      return { status: 200, empty: true, headers: { link: indexLink(base(req)) } };
    }),
  };

  return {
    routes: [
      directory,
      newNonce("HEAD"),
      newNonce("GET"),
      newAccount,
      account,
      accountOrders,
      newOrder,
      orderRoute,
      authzRoute,
      challengeRoute,
      finalize,
      certificate,
      keyChange,
      revokeCert,
    ],
    renderProblem: async (path, p) => {
      if (!path.startsWith("/acme/")) return undefined;
      return problemReply(
        undefined,
        new AcmeProblem(p.code === "internal" ? "serverInternal" : "malformed", p.message, {
          fix:
            p.code === "not-found"
              ? "use the URLs the directory (GET /acme/directory) and the server's answers give"
              : p.fix,
          status: p.status,
        }),
      );
    },
  };
}
