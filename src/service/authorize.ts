/**
 * Authorizers decide whether a verified peer may talk to us. Each is a small function
 * `(peer) => AuthorizationError | undefined` (go-spiffe's tlsconfig.Authorizer, and the shape of
 * Node's checkServerIdentity), built from matchers and composed with allOf/anyOf. Everything is
 * decided from the certificate's DER (see peer.ts); arguments are validated when the authorizer
 * is built, so a typo in an id fails at startup, not as a refused peer at 3 a.m. This file holds
 * the identity matchers and the combinators; subjects are in dn.ts, RBAC in rbac.ts, pins in pins.ts.
 */
import { parseIdentity, templatePlaceholders, PLACEHOLDERS } from "../identity/index.ts";
import { EXIT, MtlskitError } from "../errors.ts";
import { describePeer, type Peer } from "./peer.ts";

/**
 * AuthorizationError says which peer was refused and why:
 * `peer spiffe://x/ns/prod/web is not authorized: want one of spiffe://x/ns/prod/api`.
 * Its `code` is `ERR_MTLSKIT_UNAUTHORIZED`, as Node's TLS errors carry codes.
 */
export class AuthorizationError extends MtlskitError {
  /** code lets handlers tell a refusal from other socket errors. */
  readonly code = "ERR_MTLSKIT_UNAUTHORIZED";
  /** peer names the refused peer: its identity, or its subject and why it has none. */
  readonly peer: string;
  /** reason is what was wanted, e.g. `want one of spiffe://x/ns/prod/api`. */
  readonly reason: string;
  constructor(peer: Peer | string, reason: string) {
    const who = typeof peer === "string" ? peer : describePeer(peer);
    // A refused peer is a finding about the other end, as for `check` (exit 1).
    super(`peer ${who} is not authorized: ${reason}`, EXIT.findings);
    this.peer = who;
    this.reason = reason;
  }
}

/** Authorizer decides about one verified peer: undefined admits it, an AuthorizationError refuses it. */
export type Authorizer = (peer: Peer) => AuthorizationError | undefined;

/** misuse reports a bad argument to an authorizer builder, at startup (shared by dn.ts, rbac.ts, pins.ts). */
export const misuse = (message: string) => new MtlskitError(`service: ${message}`, EXIT.invalid);

/** checkedId returns `id` if it is a valid identity URI, else throws naming the rule it breaks. */
export function checkedId(id: string, fn: string): string {
  const p = parseIdentity(id);
  if ("error" in p) throw misuse(`${fn}: ${JSON.stringify(id)} is not an identity URI: it ${p.error}`);
  return id;
}

/** noIdentityReason explains a refusal of a peer without an identity, or undefined when it has one. */
const noIdentityReason = (peer: Peer, want: string) =>
  peer.identity ? undefined : new AuthorizationError(peer, `${want}, and it has no identity`);

/**
 * authorizeAny admits every peer whose certificate chain verified against the trust bundle.
 *
 * @example
 * serverOptions(source, { authorize: authorizeAny() });
 */
export function authorizeAny(): Authorizer {
  return () => undefined;
}

/**
 * authorizeId admits the peer whose identity is exactly `id`.
 *
 * @example
 * clientOptions(source, { authorize: authorizeId("spiffe://example.org/ns/prod/api") });
 */
export function authorizeId(id: string): Authorizer {
  return authorizeOneOf(id);
}

/**
 * authorizeOneOf admits peers whose identity is one of `ids`.
 *
 * @example
 * authorizeOneOf("spiffe://example.org/web", "spiffe://example.org/admin");
 */
export function authorizeOneOf(...ids: string[]): Authorizer {
  if (ids.length === 0)
    throw misuse("authorizeOneOf needs at least one identity (deny by default: an empty list would refuse everyone)");
  const set = new Set(ids.map((id) => checkedId(id, "authorizeOneOf")));
  const want = ids.length === 1 ? `want ${ids[0]}` : `want one of ${ids.join(", ")}`;
  return (peer) =>
    noIdentityReason(peer, want) ?? (set.has(peer.identity!.uri) ? undefined : new AuthorizationError(peer, want));
}

/**
 * authorizeMemberOf admits peers whose identity lies under `prefix`, compared by whole parts:
 * the same scheme and authority, then the prefix's path segments, if any, as the first segments.
 * The SPIFFE trust domain is `spiffe://example.org`; for a custom scheme such as
 * `netsy://{cluster}/{role}/{name}` the cluster is the authority, `netsy://prod`; a deeper prefix
 * narrows, `spiffe://example.org/ns/prod` (which does not admit `/ns/production/...`).
 *
 * @example
 * authorizeMemberOf("spiffe://example.org");
 */
export function authorizeMemberOf(prefix: string): Authorizer {
  const trimmed = prefix.replace(/\/$/, "");
  // A prefix is valid exactly when appending one segment makes a valid identity.
  const p = parseIdentity(`${trimmed}/x`);
  if ("error" in p)
    throw misuse(
      `authorizeMemberOf: ${JSON.stringify(prefix)} is not an identity prefix such as spiffe://example.org or netsy://prod: it ${p.error}`,
    );
  const segments = p.segments.slice(0, -1);
  const want = `want a member of ${trimmed}`;
  return (peer) => {
    const refused = noIdentityReason(peer, want);
    if (refused) return refused;
    const id = peer.identity!;
    const ok =
      id.scheme === p.scheme &&
      id.authority === p.authority &&
      segments.length < id.segments.length &&
      segments.every((s, i) => id.segments[i] === s);
    return ok ? undefined : new AuthorizationError(peer, want);
  };
}

/** templateMatcher compiles an identity template into a function returning the placeholder values of a matching URI. */
function templateMatcher(template: string, fn: string): (uri: string) => Record<string, string> | undefined {
  const names = templatePlaceholders(template);
  const unknown = names.filter((n) => !(PLACEHOLDERS as readonly string[]).includes(n));
  if (unknown.length > 0)
    throw misuse(
      `${fn}: template ${JSON.stringify(template)} has unknown placeholders ${unknown.map((n) => `{${n}}`).join(", ")}; use ${PLACEHOLDERS.map((n) => `{${n}}`).join(" ")}`,
    );
  const seen = new Set<string>();
  // Each placeholder stands for characters an identity allows in one part (no "/"), a repeat for the same text.
  const source = template.split(/(\{[a-z]+\})/).map((part) => {
    const m = /^\{([a-z]+)\}$/.exec(part);
    if (!m) return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    if (seen.has(m[1]!)) return `\\k<${m[1]}>`;
    seen.add(m[1]!);
    return `(?<${m[1]}>[A-Za-z0-9._-]+)`;
  });
  const re = new RegExp(`^${source.join("")}$`);
  return (uri) => re.exec(uri)?.groups as Record<string, string> | undefined;
}

/**
 * authorizeRole admits peers whose identity fits `template` with `{role}` one of `roles`. Fix any
 * other part by writing it into the template: `netsy://prod/{role}/{name}` admits cluster prod only.
 *
 * @example
 * authorizeRole("netsy://{cluster}/{role}/{name}", "peer", "learner");
 */
export function authorizeRole(template: string, ...roles: string[]): Authorizer {
  if (!templatePlaceholders(template).includes("role"))
    throw misuse(`authorizeRole: template ${JSON.stringify(template)} has no {role} placeholder`);
  if (roles.length === 0)
    throw misuse("authorizeRole needs at least one role (deny by default: an empty list would refuse everyone)");
  const match = templateMatcher(template, "authorizeRole");
  const set = new Set(roles);
  const want = `want role ${roles.length === 1 ? roles[0] : `one of ${roles.join(", ")}`} in ${template}`;
  return (peer) => {
    const refused = noIdentityReason(peer, want);
    if (refused) return refused;
    const values = match(peer.identity!.uri);
    if (!values) return new AuthorizationError(peer, `${want}, and its identity does not fit the template`);
    return set.has(values.role!) ? undefined : new AuthorizationError(peer, `${want}; its role is ${values.role}`);
  };
}

/**
 * allOf admits a peer that every authorizer admits, and reports the first refusal.
 *
 * @example
 * allOf(authorizeMemberOf("spiffe://example.org"), pinSpki(pin));
 */
export function allOf(...authorizers: Authorizer[]): Authorizer {
  if (authorizers.length === 0)
    throw misuse("allOf needs at least one authorizer (use authorizeAny() to admit every verified peer)");
  return (peer) => {
    for (const a of authorizers) {
      const e = a(peer);
      if (e) return e;
    }
    return undefined;
  };
}

/**
 * anyOf admits a peer that one of the authorizers admits; a refusal lists every reason.
 *
 * @example
 * anyOf(authorizeId("spiffe://example.org/admin"), authorizeRole("spiffe://example.org/{role}/{name}", "web"));
 */
export function anyOf(...authorizers: Authorizer[]): Authorizer {
  if (authorizers.length === 0)
    throw misuse("anyOf needs at least one authorizer (deny by default: an empty list would refuse everyone)");
  return (peer) => {
    const reasons: string[] = [];
    for (const a of authorizers) {
      const e = a(peer);
      if (!e) return undefined;
      reasons.push(e.reason);
    }
    return new AuthorizationError(peer, reasons.join("; or "));
  };
}
