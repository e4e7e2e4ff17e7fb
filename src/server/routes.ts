/**
 * The online CA's API (docs/online-ca.md, "HTTP API"), as plain routes for http.ts: enroll (a
 * bootstrap token), renew and revoke (the TLS client certificate), bundle, crl, health, metrics.
 *
 * A client certificate authenticates when it chains to the trust bundle (check/chain.ts, the
 * verifier check uses: during a rotation the bundle holds both CAs, so either works), is valid
 * now, is not revoked (the ledger's row or ca/revoked.json) and names a manifest service by its
 * identity URI (read structurally: service/peer.ts), else by its CN. TLS itself only asks for
 * the certificate (requestCert without rejectUnauthorized): each route decides.
 */
import { BACKDATE_MS } from "../ca/policy.ts";
import { buildChain, invalidAt } from "../check/chain.ts";
import { Material, type Cert } from "../check/material.ts";
import { MtlskitError } from "../errors.ts";
import type { Ledger } from "../ledger/ledger.ts";
import { parseToken } from "../ledger/tokens.ts";
import type { LoadedManifest, Service } from "../manifest/index.ts";
import { normalizeSerial, serialHex } from "../pki/crl.ts";
import { planCrl, writeCrl } from "../plan/crl.ts";
import { parseReason, revoke } from "../plan/revoke.ts";
import { peerFromDer } from "../service/peer.ts";
import { acquireLock } from "../state/fs.ts";
import { abs, LAYOUT } from "../state/layout.ts";
import { readCrl, readCrlNumber, readRevocations } from "../state/revocations.ts";
import type { Authority, RevokedSet } from "./authority.ts";
import type { SharedCrl } from "./crl.ts";
import type { HttpRequest, Route } from "./http.ts";
import { issueOnline, ledgerDown, parseCsrText, reissued } from "./issue.ts";
import type { ServeMetrics } from "./metrics.ts";
import { ServeProblem, type ProblemCode } from "./problem.ts";
import type { SignerPool } from "./signer.ts";

/** ServeContext is what the routes share: the manifest, the PKI directory, the CA, the ledger, the clock. */
export interface ServeContext {
  loaded: LoadedManifest;
  dir: string;
  ledger: Ledger;
  /** authority: the CA as last read (it changes when the CA files do). */
  authority(): Authority;
  revoked: RevokedSet;
  /** crl: what /v1/crl serves: ca/crl.pem, or one signed here listing every replica's revocations too. */
  crl: SharedCrl;
  metrics: ServeMetrics;
  /** now: the clock. */
  now(): Date;
  /** exposition renders /metrics; default metrics.text() (a `serve --workers` worker: every worker's, aggregated). */
  exposition?(): Promise<string>;
  /** signer: the signer threads issuance runs on (signer.ts). Default: none, on the event loop. */
  signer?: SignerPool;
}

const NEW_TOKEN = "ask the operator for a new token: `mtlskit token create SERVICE`";

/** TOKEN_PROBLEMS words each reason a token is refused (the status comes from PROBLEMS). */
const TOKEN_PROBLEMS: Record<string, [ProblemCode, string, string]> = {
  malformed: [
    "token-malformed",
    "the token is not of the form mtk_ID_SECRET",
    `send the token as printed; ${NEW_TOKEN}`,
  ],
  unknown: ["token-unknown", "the token is not known to this CA", NEW_TOKEN],
  "wrong-kind": ["token-unknown", "the token is not an enrollment token", NEW_TOKEN],
  expired: ["token-expired", "the token has expired", NEW_TOKEN],
  used: ["token-used", "the token was used already (tokens are single-use)", NEW_TOKEN],
  revoked: ["token-revoked", "the token was revoked", NEW_TOKEN],
  "wrong-service": [
    "token-wrong-service",
    "the token was created for another service",
    "send the token created for this service, or name the service the token is for",
  ],
};

const STRING = (maxLength: number) => ({ type: "string", minLength: 1, maxLength });
const CSR_FIELD = STRING(60_000);

/** wholeSeconds drops the milliseconds: certificate times have none. */
const wholeSeconds = (d: Date) => new Date(Math.floor(d.getTime() / 1000) * 1000);

/** serviceOf finds a manifest service by name (404 otherwise). */
function serviceOf(ctx: ServeContext, name: string): Service {
  const s = ctx.loaded.manifest.services.find((x) => x.name === name);
  if (!s)
    throw new ServeProblem(
      "unknown-service",
      `the manifest has no service ${JSON.stringify(name.slice(0, 100))}`,
      "name a service of the manifest (services:)",
    );
  return s;
}

/** onlineService refuses a service the online CA does not issue for (not csr: true). */
function requireOnline(s: Service): Service {
  if (s.csr !== true || s.files !== undefined || s.slots.length !== 1)
    throw new ServeProblem(
      "not-online",
      `${s.name} is not declared csr: true, so the online CA issues nothing for it (apply makes its key)`,
      `declare csr: true for services.${s.name} in the manifest, or use \`mtlskit apply\``,
    );
  return s;
}

/** Client is an authenticated client certificate. */
interface Client {
  service: Service;
  serial: string;
  leaf: Cert;
}

/** Chained is a client chain judged against one reading of the CA: its leaf and path to an anchor, its identity URI. */
interface Chained {
  authority: Authority;
  leaf: Cert;
  path: Cert[];
  uri: string | undefined;
}

/**
 * CHAINS: per TLS connection, its client chain as last judged. A connection's peer certificate
 * does not change (http.ts), so decoding it and checking its signatures up to the trust bundle
 * is done once per connection and CA reading (a CA re-read, a rotation, judges it again); what
 * changes with time (validity, revocation) is asked on every request.
 */
const CHAINS = new WeakMap<object, Chained>();

/** chainOf decodes the presented chain and builds its path to the bundle (cached per connection and authority); refusals are ServeProblems. */
function chainOf(connection: object, chain: Buffer[], authority: Authority): Chained {
  const cached = CHAINS.get(connection);
  if (cached?.authority === authority) return cached;
  const material = new Material();
  let leaf: Cert;
  let intermediates: Cert[];
  try {
    leaf = material.cert(chain[0]!);
    intermediates = chain.slice(1).map((d) => material.cert(d));
  } catch {
    throw new ServeProblem(
      "cert-untrusted",
      "the client certificate cannot be decoded",
      "present the certificate this CA issued",
    );
  }
  const anchors = material.certsOfPem(authority.bundlePem);
  if (!Array.isArray(anchors))
    throw new ServeProblem("internal", "the trust bundle cannot be read", "the operator should run `mtlskit check`");
  const built = buildChain(material, leaf, intermediates, anchors);
  if (!built.ok)
    throw new ServeProblem(
      "cert-untrusted",
      `the client certificate does not chain to this CA's trust bundle (${built.failure.kind})`,
      "present a certificate this CA issued, or enroll with a token",
    );
  const judged = { authority, leaf, path: built.path, uri: peerFromDer(leaf.der).identity?.uri };
  CHAINS.set(connection, judged);
  return judged;
}

/** AuthContext is what judging a client certificate needs: serve's context, or the dashboard's (`mtlskit ui`, which may have no ledger). */
export interface AuthContext {
  loaded: LoadedManifest;
  authority(): Authority;
  revoked: RevokedSet;
  /** ledger: where online certificates' revocations are; undefined: none (ca/revoked.json only). */
  ledger: Pick<Ledger, "get"> | undefined;
}

/** authenticate judges the TLS client certificate (see the file's comment). */
async function authenticate(ctx: AuthContext, req: HttpRequest, now: Date): Promise<Client> {
  const chain = req.peerCertificates();
  if (chain.length === 0)
    throw new ServeProblem(
      "cert-required",
      "this route needs the client's current certificate, and the TLS connection presented none",
      "connect with the certificate the CA issued (cert.pem and key.pem), or enroll with a token",
    );
  const authority = ctx.authority();
  const built = chainOf(req.connection, chain, authority);
  const { leaf } = built;
  const invalid = invalidAt(built.path, now);
  if (invalid)
    throw new ServeProblem(
      invalid.how === "expired" ? "cert-expired" : "cert-untrusted",
      invalid.how === "expired"
        ? `the client certificate expired at ${invalid.cert.fields.notAfter.toISOString()}`
        : `the client certificate is not valid before ${invalid.cert.fields.notBefore.toISOString()}`,
      "an expired certificate cannot renew: enroll again with a new token (`mtlskit token create`)",
    );
  const serial = serialHex(leaf.fields.serial);
  let row: Awaited<ReturnType<Ledger["get"]>>;
  try {
    row = await ctx.ledger?.get(serial);
  } catch (e) {
    throw ledgerDown(e);
  }
  if (row?.revokedAt !== undefined || ctx.revoked.has(serial))
    throw new ServeProblem(
      "cert-revoked",
      `the client certificate (serial ${serial}) is revoked`,
      "a revoked certificate cannot renew: enroll again with a new token (`mtlskit token create`)",
    );
  const services = ctx.loaded.manifest.services;
  const uri = built.uri;
  const cn = leaf.info.subjectAttributes.CN;
  const service =
    uri !== undefined
      ? services.find((s) => s.identity === uri)
      : services.find((s) => s.identity === undefined && cn !== undefined && s.cn === cn);
  if (!service)
    throw new ServeProblem(
      "cert-untrusted",
      `the client certificate (${uri ?? `CN=${cn ?? ""}`}) names no service of the manifest`,
      "present the certificate of a service the manifest declares",
    );
  return { service, serial, leaf };
}

/**
 * authenticateAdmin judges the client certificate and requires its service to be one of the
 * manifest's serve.admins (/v1/revoke, the dashboard): 401 without a good certificate, 403
 * not-admin for another service's. `fix` words what to do instead.
 */
export async function authenticateAdmin(ctx: AuthContext, req: HttpRequest, now: Date, fix: string): Promise<Client> {
  const client = await authenticate(ctx, req, now);
  const admins = ctx.loaded.manifest.serve?.admins ?? [];
  if (!admins.includes(client.service.name))
    throw new ServeProblem(
      "not-admin",
      `${client.service.name} is not an admin of this CA (serve.admins: ${admins.join(", ") || "none"})`,
      fix,
    );
  return client;
}

/** routes are the API's endpoints over `ctx`. */
export function routes(ctx: ServeContext): Route[] {
  const now = () => wholeSeconds(ctx.now());
  return [
    {
      method: "POST",
      url: "/v1/enroll",
      body: {
        type: "object",
        required: ["service", "token", "csr"],
        additionalProperties: false,
        properties: { service: STRING(253), token: STRING(256), csr: CSR_FIELD },
      },
      handle: async (req) => {
        const body = req.body as { service: string; token: string; csr: string };
        const t = now();
        const service = requireOnline(serviceOf(ctx, body.service));
        let verdict: Awaited<ReturnType<Ledger["checkToken"]>>;
        try {
          verdict = await ctx.ledger.checkToken(body.token, service.name, "enroll", t);
        } catch (e) {
          throw ledgerDown(e);
        }
        const issue = {
          manifest: ctx.loaded.manifest,
          authority: ctx.authority(),
          ledger: ctx.ledger,
          now: t,
          signer: ctx.signer,
        };
        // A retry of an enrollment whose answer was lost (the token paid for a certificate of this
        // very key): that certificate again, 200, rather than 401 token-used. A request that cannot
        // be read is not a retry: the token's refusal stands.
        const again = async (serial: string | undefined) => {
          let csr: ReturnType<typeof parseCsrText>;
          try {
            csr = parseCsrText(body.csr);
          } catch {
            return undefined;
          }
          const replay = await reissued(issue, { service, csr, tokenId: parseToken(body.token)!.id, serial });
          if (replay) req.log({ service: service.name, serial: replay.serial, how: "enroll" }, "answered again");
          return replay;
        };
        if (!verdict.ok) {
          const replay = verdict.reason === "used" ? await again(verdict.usedBy) : undefined;
          if (replay) return { status: 200, json: replay };
          const [code, message, fix] = TOKEN_PROBLEMS[verdict.reason]!;
          throw new ServeProblem(code, message, fix);
        }
        let issued: Awaited<ReturnType<typeof issueOnline>>;
        try {
          issued = await issueOnline(issue, {
            service,
            csr: { pem: body.csr },
            how: "enroll",
            tokenId: verdict.token.id,
            requester: req.remote,
          });
        } catch (e) {
          // Two requests with one token and one key at once: the loser is answered the winner's certificate.
          if (!(e instanceof ServeProblem && e.code === "token-used")) throw e;
          const used = await ctx.ledger.checkToken(body.token, service.name, "enroll", t).catch((d) => {
            throw ledgerDown(d);
          });
          const replay = !used.ok && used.reason === "used" ? await again(used.usedBy) : undefined;
          if (!replay) throw e;
          return { status: 200, json: replay };
        }
        ctx.metrics.issued("enroll");
        req.log({ service: service.name, serial: issued.serial, how: "enroll", tokenId: verdict.token.id }, "issued");
        return { status: 201, json: issued };
      },
    },
    {
      method: "POST",
      url: "/v1/renew",
      body: {
        type: "object",
        required: ["csr"],
        additionalProperties: false,
        properties: { csr: CSR_FIELD },
      },
      handle: async (req) => {
        const body = req.body as { csr: string };
        const t = now();
        const client = await authenticate(ctx, req, t);
        const service = requireOnline(client.service);
        const issued = await issueOnline(
          { manifest: ctx.loaded.manifest, authority: ctx.authority(), ledger: ctx.ledger, now: t, signer: ctx.signer },
          { service, csr: { pem: body.csr }, how: "renew", renewedFrom: client.serial, requester: req.remote },
        );
        ctx.metrics.issued("renew");
        req.log({ service: service.name, serial: issued.serial, how: "renew", renewedFrom: client.serial }, "issued");
        return { status: 201, json: issued };
      },
    },
    {
      method: "POST",
      url: "/v1/revoke",
      body: {
        type: "object",
        required: ["serial"],
        additionalProperties: false,
        properties: { serial: STRING(64), reason: STRING(64) },
      },
      handle: async (req) => {
        const body = req.body as { serial: string; reason?: string };
        const t = now();
        const client = await authenticateAdmin(
          ctx,
          req,
          t,
          "revoke with an admin service's certificate, or run `mtlskit revoke SERIAL` on the CA's host",
        );
        const serial = normalizeSerial(body.serial);
        if (serial === undefined)
          throw new ServeProblem(
            "bad-request",
            "serial is not a certificate serial in hex",
            "send the serial as the Issued response or `openssl x509 -serial` prints it",
          );
        let reason: ReturnType<typeof parseReason>;
        try {
          reason = parseReason(body.reason);
        } catch (e) {
          throw new ServeProblem(
            "bad-request",
            (e as Error).message.replace(/^mtlskit revoke: --reason/, "reason"),
            "send an RFC 5280 reason name, or none",
          );
        }
        try {
          await ctx.ledger.revoke(serial, reason, t);
        } catch (e) {
          throw ledgerDown(e);
        }
        const crl = await recordRevocation(ctx, serial, reason, t);
        req.log({ serial, reason, by: client.service.name }, "revoked");
        return { status: 200, json: { serial, revokedAt: crl.revokedAt, reason: crl.reason, crl: crl.crl } };
      },
    },
    {
      method: "GET",
      url: "/v1/bundle",
      handle: async () => {
        const a = ctx.authority();
        return { status: 200, json: { bundle: a.bundlePem, sha256: a.bundleSha256, phase: a.phase } };
      },
    },
    {
      method: "GET",
      url: "/v1/crl",
      handle: async () => {
        let served: Awaited<ReturnType<SharedCrl["current"]>>;
        try {
          served = await ctx.crl.current(now());
        } catch (e) {
          if (e instanceof MtlskitError)
            throw new ServeProblem(
              "internal",
              `the CRL cannot be made: ${e.message}`,
              "the operator runs `mtlskit check`",
            );
          throw e;
        }
        if (!served)
          throw new ServeProblem(
            "no-crl",
            "this CA has no CRL yet",
            "the operator runs `mtlskit apply` (it signs ca/crl.pem)",
          );
        return { status: 200, body: served.der, type: "application/pkix-crl" };
      },
    },
    {
      method: "GET",
      url: "/v1/health",
      handle: async () => {
        const t = now();
        let certificates: number;
        try {
          certificates = (await ctx.ledger.stats(t)).certificates;
        } catch (e) {
          throw ledgerDown(e);
        }
        ctx.metrics.ledgerCertificates(certificates);
        return {
          status: 200,
          json: {
            status: "ok",
            ledger: ctx.ledger.kind,
            caNotAfter: ctx.authority().current.cert.notAfter.toISOString(),
          },
        };
      },
    },
    {
      method: "GET",
      url: "/metrics",
      handle: async () => {
        try {
          ctx.metrics.ledgerCertificates((await ctx.ledger.stats(now())).certificates);
        } catch {
          // The gauge keeps its last value; /v1/health answers 503 for a ledger that is down.
        }
        ctx.metrics.caNotAfter(ctx.authority().current.cert.notAfter);
        return {
          status: 200,
          body: await (ctx.exposition ? ctx.exposition() : ctx.metrics.text()),
          type: ctx.metrics.contentType,
        };
      },
    },
  ];
}

/**
 * recordRevocation writes the revocation where `mtlskit apply`, check and status read it
 * (ca/revoked.json, through plan/revoke.ts under apply's lock), then re-signs ca/crl.pem so
 * /v1/crl lists the serial at once. The CRL is signed by the root (as apply signs it); when the
 * root's key is offline the next `apply --ca-key` signs it, and the answer says so.
 */
export async function recordRevocation(
  ctx: ServeContext,
  serial: string,
  reason: string,
  at: Date,
): Promise<{ revokedAt: string; reason: string; crl: string }> {
  let recorded;
  try {
    recorded = revoke(ctx.loaded, ctx.dir, serial, { reason, now: at, lockWaitMs: 2000 });
  } catch (e) {
    if (e instanceof MtlskitError && e.exitCode === 2)
      throw new ServeProblem(
        "bad-request",
        e.message.replace(/^mtlskit revoke: /, ""),
        "revoke a leaf certificate's serial",
      );
    throw e;
  }
  const r = recorded.added[0] ?? recorded.already[0]!;
  const root = ctx.authority().root;
  if (!root.privateKey)
    return {
      revokedAt: r.revokedAt,
      reason: r.reason,
      crl: "pending: the root's key is offline; the next `mtlskit apply --ca-key` signs the CRL",
    };
  const lock = acquireLock(abs(ctx.dir, LAYOUT.lock), { waitMs: 2000 });
  try {
    const dir = ctx.dir;
    const state = {
      ...ctx.authority().state,
      revocations: readRevocations(dir),
      crl: readCrl(dir),
      crlNumber: readCrlNumber(dir),
    };
    const step = planCrl(ctx.loaded.manifest, state, root, at, BACKDATE_MS);
    if (step.action === "write") {
      // The number from the ledger's shared counter (one past what this directory used): replicas
      // never sign two CRLs with one number. A ledger down now falls back to the local number.
      const current = state.crl !== undefined && !("error" in state.crl) ? (state.crl.number ?? 0n) : 0n;
      const local = state.crlNumber ?? 0n;
      const shared = await ctx.ledger.nextCrlNumber((local > current ? local : current) + 1n).catch(() => undefined);
      writeCrl(dir, step, root, shared === undefined ? state : { ...state, crlNumber: shared - 1n }, at);
    }
  } finally {
    lock.release();
  }
  return { revokedAt: r.revokedAt, reason: r.reason, crl: "signed" };
}
