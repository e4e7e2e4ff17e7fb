/**
 * The ACME protocol's data (RFC 8555 §7.1): accounts, orders, authorizations and challenges as
 * stored and as shown, the error types (§6.7), identifier rules (dns, and ip from RFC 8738,
 * judged against the account's service in the manifest), key authorizations (§8.1) and the order
 * state machine (§7.1.6). Pure: no clock, randomness or I/O; the routes pass them in.
 */
import { isIP } from "node:net";
import { formatIp, ipBytes } from "../pki/ip.ts";
import type { Service } from "../manifest/index.ts";

/** ACME_ERRORS: the RFC 8555 §6.7 error types this server sends, with their HTTP status. */
export const ACME_ERRORS = {
  accountDoesNotExist: 400,
  alreadyRevoked: 400,
  badCSR: 400,
  badNonce: 400,
  badPublicKey: 400,
  badRevocationReason: 400,
  badSignatureAlgorithm: 400,
  connection: 400,
  externalAccountRequired: 400,
  incorrectResponse: 400,
  malformed: 400,
  orderNotReady: 403,
  rejectedIdentifier: 400,
  serverInternal: 500,
  tls: 400,
  unauthorized: 403,
  unsupportedIdentifier: 400,
  dns: 400,
} as const;

/** AcmeErrorType is one of ACME_ERRORS' names (the part after `urn:ietf:params:acme:error:`). */
export type AcmeErrorType = keyof typeof ACME_ERRORS;

/** AcmeProblemDoc is an RFC 7807 problem document with ACME's type URN, plus mtlskit's `fix`. */
export interface AcmeProblemDoc {
  type: string;
  detail: string;
  status: number;
  /** fix: what to do (mtlskit's convention, an RFC 7807 extension member). */
  fix?: string;
  identifier?: Identifier;
  subproblems?: AcmeProblemDoc[];
  algorithms?: readonly string[];
}

/** AcmeProblem is a refusal the ACME routes throw; the routes render it as application/problem+json. */
export class AcmeProblem extends Error {
  readonly type: AcmeErrorType;
  readonly fix: string | undefined;
  readonly extra: Partial<AcmeProblemDoc>;
  /** status overrides the type's usual status (409 conflict for a key already in use, 404, 405). */
  readonly statusOverride: number | undefined;
  /** location: a Location header (newAccount's existing account, keyChange's conflicting one). */
  readonly location: string | undefined;
  constructor(
    type: AcmeErrorType,
    detail: string,
    opts: { fix?: string; extra?: Partial<AcmeProblemDoc>; status?: number; location?: string } = {},
  ) {
    super(detail);
    this.name = "AcmeProblem";
    this.type = type;
    this.fix = opts.fix;
    this.extra = opts.extra ?? {};
    this.statusOverride = opts.status;
    this.location = opts.location;
  }
  get status(): number {
    return this.statusOverride ?? ACME_ERRORS[this.type];
  }
  /** doc is the problem document. */
  doc(): AcmeProblemDoc {
    return {
      type: errorUrn(this.type),
      detail: this.message,
      status: this.status,
      ...(this.fix ? { fix: this.fix } : {}),
      ...this.extra,
    };
  }
}

/** errorUrn is an error type's URN. */
export const errorUrn = (t: AcmeErrorType): string => `urn:ietf:params:acme:error:${t}`;

/** Identifier is an ACME identifier (RFC 8555 §9.7.7: dns; RFC 8738: ip). */
export interface Identifier {
  type: "dns" | "ip";
  value: string;
}

/** ChallengeType: the challenges this server validates itself. */
export type ChallengeType = "http-01" | "tls-alpn-01" | "dns-01";
/** CHALLENGE_TYPES: every challenge this server knows, in the order an authorization lists them. */
export const CHALLENGE_TYPES: readonly ChallengeType[] = ["http-01", "tls-alpn-01", "dns-01"];

/**
 * challengesFor lists the challenges offered for an identifier: http-01 always; tls-alpn-01 but
 * for IPv6 addresses (their reverse name is longer than an SNI may be); dns-01 only for DNS
 * names (RFC 8738 §7) and only with a resolver the CA trusts (`--acme-dns-resolver`): the system
 * resolver may be one the client's network controls.
 */
export function challengesFor(id: Identifier, opts: { dns: boolean }): ChallengeType[] {
  return CHALLENGE_TYPES.filter((t) =>
    t === "tls-alpn-01"
      ? !(id.type === "ip" && id.value.includes(":"))
      : t === "dns-01"
        ? opts.dns && id.type === "dns"
        : true,
  );
}

/** Status of an ACME object (RFC 8555 §7.1.6). */
export type Status = "pending" | "processing" | "valid" | "invalid" | "ready" | "deactivated" | "expired" | "revoked";

/** AccountDoc is an account as stored. */
export interface AccountDoc {
  status: "valid" | "deactivated";
  /** key: the account's public JWK. */
  key: Record<string, unknown>;
  contact: string[];
  /** service: the manifest service the account's EAB key was made for; orders may name only its identifiers. */
  service: string;
  /** eab: the EAB key id (an `acme` token id) that bound it. */
  eab: string;
  createdAt: string;
}

/** ChallengeDoc is one challenge of an authorization, as stored. */
export interface ChallengeDoc {
  type: ChallengeType;
  token: string;
  status: "pending" | "processing" | "valid" | "invalid";
  validated?: string;
  error?: AcmeProblemDoc;
}

/** AuthzDoc is an authorization as stored, with its challenges. */
export interface AuthzDoc {
  account: string;
  identifier: Identifier;
  status: "pending" | "valid" | "invalid" | "deactivated";
  expires: string;
  /** prevalidated: created valid, trusting the account's EAB binding (services.NAME.acmeTrustBinding); challenges is then empty. */
  prevalidated?: boolean;
  challenges: ChallengeDoc[];
}

/** OrderDoc is an order as stored; `pending` and `ready` are derived from its authorizations when read. */
export interface OrderDoc {
  account: string;
  /** status: what the order's own transitions set; pending until finalize (see orderStatus). */
  status: "pending" | "processing" | "valid" | "invalid";
  identifiers: Identifier[];
  authorizations: string[];
  expires: string;
  /** serial of the issued certificate (ledger row), once valid. */
  serial?: string;
  /** chain: the certificate and its chain, PEM, as downloaded. */
  chain?: string;
  error?: AcmeProblemDoc;
}

/**
 * normalizeIdentifier checks one identifier of a newOrder (RFC 8555 §7.4) and spells it the way
 * it compares: DNS names in lower case without a trailing dot, IP addresses canonical (RFC 5952).
 */
export function normalizeIdentifier(raw: unknown): Identifier {
  if (typeof raw !== "object" || raw === null) throw new AcmeProblem("malformed", "an identifier is not an object");
  const { type, value } = raw as { type?: unknown; value?: unknown };
  if (typeof value !== "string" || value.length === 0 || value.length > 253)
    throw new AcmeProblem("malformed", "an identifier's value is not a non-empty string of at most 253 characters");
  if (type === "dns") {
    const name = value.toLowerCase().replace(/\.$/, "");
    if (isIP(name) !== 0)
      throw new AcmeProblem(
        "rejectedIdentifier",
        `${value} is an IP address: order it as type ip (RFC 8738), not dns`,
        {
          extra: { identifier: { type: "dns", value } },
          fix: "use an ACME client that sends IP identifiers as type ip (lego 4.x, certbot 2.x)",
        },
      );
    if (!/^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name))
      throw new AcmeProblem("rejectedIdentifier", `${JSON.stringify(value)} is not a DNS name`, {
        extra: { identifier: { type: "dns", value } },
      });
    return { type: "dns", value: name };
  }
  if (type === "ip") {
    let canonical: string;
    try {
      // node:net decides what an address is (no zone ids, no leading zeros in IPv4); then RFC 5952's spelling.
      if (isIP(value) === 0 || value.includes("%")) throw new Error("not an address");
      canonical = formatIp(ipBytes(value));
    } catch {
      throw new AcmeProblem("malformed", `${JSON.stringify(value)} is not an IP address`, {
        extra: { identifier: { type: "ip", value } },
      });
    }
    return { type: "ip", value: canonical };
  }
  throw new AcmeProblem("unsupportedIdentifier", `identifier type ${JSON.stringify(type)} is not supported`, {
    fix: "order dns (RFC 8555) or ip (RFC 8738) identifiers",
  });
}

/** declaredBy tells whether `service` declares the identifier in the manifest (its DNS names and IP addresses, as `addresses:` resolves them). */
export function declaredBy(service: Service, id: Identifier): boolean {
  if (id.type === "dns") return service.dns.some((d) => d.toLowerCase() === id.value);
  return service.ips.some((ip) => formatIp(ip.bytes) === id.value);
}

/** identifierWord spells an identifier as the policy's SAN words do (`DNS:web.localhost`, `IP:127.0.0.1`). */
export const identifierWord = (id: Identifier): string => `${id.type === "dns" ? "DNS" : "IP"}:${id.value}`;

/** keyAuthorization is a challenge token and the account key's thumbprint (RFC 8555 §8.1). */
export const keyAuthorization = (token: string, thumbprint: string): string => `${token}.${thumbprint}`;

/**
 * authzStatus is an authorization's status at `now`: a pending or valid one past its expiry is
 * `expired` (RFC 8555 §7.1.6).
 */
export function authzStatus(a: AuthzDoc, now: Date): Status {
  if ((a.status === "pending" || a.status === "valid") && new Date(a.expires) <= now) return "expired";
  return a.status;
}

/**
 * orderStatus is an order's status at `now` from its own and its authorizations' (RFC 8555
 * §7.1.6): invalid once any authorization is invalid, deactivated or expired or the order itself
 * expired while not yet issued; ready when every authorization is valid; pending otherwise.
 */
export function orderStatus(o: OrderDoc, authzs: AuthzDoc[], now: Date): Status {
  if (o.status !== "pending") return o.status;
  if (new Date(o.expires) <= now) return "invalid";
  const s = authzs.map((a) => authzStatus(a, now));
  if (s.some((x) => x === "invalid" || x === "deactivated" || x === "expired" || x === "revoked")) return "invalid";
  return s.every((x) => x === "valid") ? "ready" : "pending";
}

/** sameNames tells whether two lists of SAN words name the same set (case-insensitive for DNS). */
export function sameNames(a: string[], b: string[]): boolean {
  const norm = (w: string) => (w.startsWith("DNS:") ? w.toLowerCase().replace(/^dns:/, "DNS:") : w);
  const x = new Set(a.map(norm));
  const y = new Set(b.map(norm));
  return x.size === y.size && [...x].every((w) => y.has(w));
}

/** ACME_PATHS: the URL paths of the server's resources (the directory lists the first five). */
export const ACME_PATHS = {
  directory: "/acme/directory",
  newNonce: "/acme/new-nonce",
  newAccount: "/acme/new-account",
  newOrder: "/acme/new-order",
  revokeCert: "/acme/revoke-cert",
  keyChange: "/acme/key-change",
  account: (id: string) => `/acme/account/${id}`,
  order: (id: string) => `/acme/order/${id}`,
  finalize: (id: string) => `/acme/order/${id}/finalize`,
  authz: (id: string) => `/acme/authz/${id}`,
  challenge: (authz: string, index: number) => `/acme/chall/${authz}/${index}`,
  certificate: (order: string) => `/acme/cert/${order}`,
} as const;
