/**
 * Authorizers decide whether a verified peer may talk to us. Each is a small function
 * `(peer) => AuthorizationError | undefined` (go-spiffe's tlsconfig.Authorizer, and the shape of
 * Node's checkServerIdentity), built from matchers and composed with allOf/anyOf. Everything is
 * decided from the certificate's DER (see peer.ts); arguments are validated when the authorizer
 * is built, so a typo in an id fails at startup, not as a refused peer at 3 a.m.
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

/** misuse reports a bad argument to an authorizer builder, at startup. */
const misuse = (message: string) => new MtlskitError(`service: ${message}`, EXIT.invalid);

/** checkedId returns `id` if it is a valid identity URI, else throws naming the rule it breaks. */
function checkedId(id: string, fn: string): string {
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

/** ATTRIBUTE_ALIASES maps long names, other spellings and OIDs of DN attributes to one upper-case short name. */
const ATTRIBUTE_ALIASES: Record<string, string> = {
  COMMONNAME: "CN",
  "2.5.4.3": "CN",
  COUNTRYNAME: "C",
  "2.5.4.6": "C",
  LOCALITYNAME: "L",
  "2.5.4.7": "L",
  STATEORPROVINCENAME: "ST",
  S: "ST",
  "2.5.4.8": "ST",
  ORGANIZATIONNAME: "O",
  "2.5.4.10": "O",
  ORGANIZATIONALUNITNAME: "OU",
  "2.5.4.11": "OU",
  SERIALNUMBER: "SERIALNUMBER",
  "2.5.4.5": "SERIALNUMBER",
  EMAILADDRESS: "EMAILADDRESS",
  E: "EMAILADDRESS",
  "1.2.840.113549.1.9.1": "EMAILADDRESS",
  DOMAINCOMPONENT: "DC",
  "0.9.2342.19200300.100.1.25": "DC",
  USERID: "UID",
  "0.9.2342.19200300.100.1.1": "UID",
  STREETADDRESS: "STREET",
  "2.5.4.9": "STREET",
  TITLE: "TITLE",
  "2.5.4.12": "TITLE",
  SURNAME: "SN",
  "2.5.4.4": "SN",
  GIVENNAME: "GN",
  "2.5.4.42": "GN",
};

/** DnAttribute is one attribute of a distinguished name. */
export interface DnAttribute {
  /** type is the short upper-case name (`CN`, `O`, `EMAILADDRESS`) or the dotted OID of an unnamed type. */
  type: string;
  /** value is the unescaped text, or for a `#`-written value (a non-string in the DER) `#` and its hex, upper-case. */
  value: string;
  /** hex is true for a `#`-written value. */
  hex: boolean;
}

/**
 * parseDn reads a distinguished name as RFC 4514 writes it, and as Go and OpenSSL print one, into
 * its attributes: RDNs separated by `,` or `;` (RFC 2253's older form), a multi-valued RDN's
 * attributes by `+`, spaces around `=`, `,` and `+` ignored (OpenSSL's `O = x, CN = y`), types
 * by their short upper-case name (`commonName`, `cn` and `2.5.4.3` are `CN`), values unescaped
 * (`\,`, `\2C`, UTF-8 in hex) and compared exactly, case included. It throws on a malformed DN.
 *
 * @example
 * parseDn("O = ServiceRadar, CN = agent.serviceradar"); // [{ type: "O", value: "ServiceRadar", hex: false }, { type: "CN", value: "agent.serviceradar", hex: false }]
 */
export function parseDn(dn: string): DnAttribute[] {
  const out: DnAttribute[] = [];
  let i = 0;
  const fail = (why: string) =>
    misuse(`${JSON.stringify(dn)} is not a distinguished name such as CN=agent,O=Example: ${why}`);
  if (typeof dn !== "string" || dn.trim() === "") throw fail("it is empty");
  while (i < dn.length) {
    const eq = dn.indexOf("=", i);
    if (eq < 0) throw fail(`"${dn.slice(i).trim()}" has no "="`);
    const rawType = dn.slice(i, eq).trim().toUpperCase();
    if (!/^([A-Z][A-Z0-9-]*|\d+(\.\d+)+)$/.test(rawType)) throw fail(`"${rawType}" is not an attribute type`);
    const type = ATTRIBUTE_ALIASES[rawType] ?? rawType;
    i = eq + 1;
    while (dn[i] === " ") i++;
    let value: string;
    const hex = dn[i] === "#";
    if (hex) {
      const m = /^#(?:[0-9A-Fa-f]{2})+/.exec(dn.slice(i));
      if (!m) throw fail("a #value must be hex");
      value = m[0].toUpperCase();
      i += m[0].length;
      while (dn[i] === " ") i++;
      if (i < dn.length && !",;+".includes(dn[i]!)) throw fail(`a #value ends at "${dn[i]}"`);
    } else {
      const bytes: number[] = [];
      let significant = 0; // bytes up to the last escaped or non-space character
      while (i < dn.length && !",;+".includes(dn[i]!)) {
        const ch = dn[i]!;
        if (ch === "\\") {
          const hex = /^[0-9A-Fa-f]{2}/.exec(dn.slice(i + 1));
          if (hex) {
            bytes.push(parseInt(hex[0], 16));
            i += 3;
          } else if (i + 1 < dn.length) {
            const next = String.fromCodePoint(dn.codePointAt(i + 1)!);
            bytes.push(...Buffer.from(next));
            i += 1 + next.length;
          } else throw fail("it ends with a lone backslash");
          significant = bytes.length;
        } else {
          const next = String.fromCodePoint(dn.codePointAt(i)!);
          bytes.push(...Buffer.from(next));
          if (ch !== " ") significant = bytes.length;
          i += next.length;
        }
      }
      value = Buffer.from(bytes.slice(0, significant)).toString("utf8");
    }
    out.push({ type, value, hex });
    if (i < dn.length) {
      const sep = dn[i]!;
      i++;
      while (dn[i] === " ") i++;
      if (i >= dn.length) throw fail(`it ends with "${sep}"`);
    }
  }
  return out;
}

/** attributeKey writes one attribute canonically, for sorting and counting. */
const attributeKey = (a: DnAttribute) => `${a.type}=${a.hex ? a.value : JSON.stringify(a.value)}`;

/**
 * normalizeDn writes a distinguished name canonically: its attributes (parseDn) sorted, joined by
 * ",". Two DNs normalise alike exactly when they hold the same attributes with the same values,
 * in any order and any RDN grouping: Go prints RDNs most specific first (`CN=a,O=x`), OpenSSL's
 * default most general first (`O = x, CN = a`), and both name the same certificate.
 */
export function normalizeDn(dn: string): string {
  return parseDn(dn).map(attributeKey).sort().join(",");
}

/** subjectCache holds each peer's subject attributes: peers are frozen and shared, so they are read once. */
const subjectCache = new WeakMap<Peer, Map<string, string[]>>();

/** valuesByType groups attributes' canonical keys by type, each list sorted. */
function valuesByType(attributes: DnAttribute[]): Map<string, string[]> {
  const byType = new Map<string, string[]>();
  for (const a of attributes) byType.set(a.type, [...(byType.get(a.type) ?? []), attributeKey(a)]);
  for (const list of byType.values()) list.sort();
  return byType;
}

/** subjectOf reads a peer's subject attributes from its decoded subject (pki/x509.ts writes it as RFC 4514, escaped). */
function subjectOf(peer: Peer): Map<string, string[]> {
  let byType = subjectCache.get(peer);
  if (!byType) {
    byType = valuesByType(parseDn(peer.subject));
    subjectCache.set(peer, byType);
  }
  return byType;
}

/** sameValues: two attribute maps (valuesByType) hold exactly the same attributes. */
function sameValues(a: Map<string, string[]>, b: Map<string, string[]>): boolean {
  if (a.size !== b.size) return false;
  for (const [type, values] of a) {
    const other = b.get(type) ?? [];
    if (other.length !== values.length || other.some((v, k) => v !== values[k])) return false;
  }
  return true;
}

/**
 * subjectMatcher compiles a DN into a test of a peer's subject: the subject must hold exactly the
 * DN's attributes (as a multiset: a missing, extra or different attribute refuses). Order and RDN
 * grouping do not matter, since Go prints RDNs most specific first (`CN=a,O=x`) and OpenSSL most
 * general first (`O = x, CN = a`) for the same name.
 */
function subjectMatcher(dn: string): (peer: Peer) => boolean {
  const want = valuesByType(parseDn(dn));
  return (peer) => {
    try {
      return sameValues(want, subjectOf(peer));
    } catch {
      return false; // a subject our own decoder wrote that does not read back: match nothing (fail closed)
    }
  };
}

/**
 * datasvcMatcher compiles an RBAC key the way ServiceRadar's datasvc looks a client up
 * (go/pkg/datasvc/rbac.go): the whole subject (subjectMatcher), else `CN=<cn>,O=<first O>`, else
 * `CN=<cn>`. So the runbook's `CN=agent.serviceradar,O=ServiceRadar` holds for a certificate whose
 * subject also carries C, ST, L and OU, as it does in datasvc; the short forms need the peer to
 * have exactly one CN, so an ambiguous subject matches only in full.
 */
function datasvcMatcher(dn: string): (peer: Peer) => boolean {
  const whole = subjectMatcher(dn);
  const want = valuesByType(parseDn(dn));
  return (peer) => {
    if (whole(peer)) return true;
    const cn = peer.info.subjectAttributes.CN;
    const o = peer.info.subjectAttributes.O;
    let cns: number;
    try {
      cns = (subjectOf(peer).get("CN") ?? []).length;
    } catch {
      return false; // fail closed, as subjectMatcher
    }
    if (cn === undefined || cns !== 1) return false;
    const short = [{ type: "CN", value: cn, hex: false }];
    if (sameValues(want, valuesByType(short))) return true;
    return o !== undefined && sameValues(want, valuesByType([...short, { type: "O", value: o, hex: false }]));
  };
}

/**
 * authorizeSubject admits peers whose subject is exactly one of `dns`: the same attributes with
 * the same values, in any order and RDN grouping (see subjectMatcher); for deployments that
 * authorize by the whole subject DN.
 *
 * @example
 * authorizeSubject("CN=agent.serviceradar,O=ServiceRadar");
 */
export function authorizeSubject(...dns: string[]): Authorizer {
  if (dns.length === 0)
    throw misuse("authorizeSubject needs at least one subject (deny by default: an empty list would refuse everyone)");
  const matchers = dns.map(subjectMatcher);
  const want = `want subject ${dns.length === 1 ? dns[0] : `one of ${dns.join("; ")}`}`;
  return (peer) =>
    matchers.some((m) => m(peer)) ? undefined : new AuthorizationError(peer, `${want}; its subject is ${peer.subject}`);
}

/**
 * RbacTable maps who a peer is, an identity URI (`spiffe://...`) or a subject DN
 * (`CN=agent.serviceradar,O=ServiceRadar`, matched as ServiceRadar's datasvc matches: the whole
 * subject, else its CN and first O, else its CN), to the roles it holds.
 */
export type RbacTable = Readonly<Record<string, readonly string[]>>;

/**
 * rbacRoles compiles an RBAC table into a function giving a peer's roles: those of its identity
 * and those of every subject DN its subject matches (the whole subject, else CN and first O, else
 * CN, as datasvc does). Keys are validated here; a key that is neither throws.
 *
 * @example
 * const rolesOf = rbacRoles({ "CN=agent.serviceradar,O=ServiceRadar": ["reader"] });
 * if (rolesOf(peer).includes("writer")) store.put(key, value);
 */
export function rbacRoles(table: RbacTable): (peer: Peer) => string[] {
  const byId = new Map<string, readonly string[]>();
  const byDn: [(peer: Peer) => boolean, readonly string[]][] = [];
  for (const [who, roles] of Object.entries(table)) {
    if (who.includes("://")) byId.set(checkedId(who, "authorizeRbac"), roles);
    else byDn.push([datasvcMatcher(who), roles]);
  }
  return (peer) => [
    ...new Set([
      ...(peer.identity ? (byId.get(peer.identity.uri) ?? []) : []),
      ...byDn.filter(([m]) => m(peer)).flatMap(([, roles]) => roles),
    ]),
  ];
}

/**
 * authorizeRbac admits peers that hold one of `roles` in `table` (ServiceRadar's datasvc: agents
 * read, the core writes).
 *
 * @example
 * const table = { "CN=agent.serviceradar,O=ServiceRadar": ["reader"], "CN=core.serviceradar,O=ServiceRadar": ["reader", "writer"] };
 * serverOptions(source, { authorize: authorizeRbac(table, "writer") });
 */
export function authorizeRbac(table: RbacTable, ...roles: string[]): Authorizer {
  if (roles.length === 0)
    throw misuse("authorizeRbac needs at least one role (deny by default: an empty list would refuse everyone)");
  const rolesOf = rbacRoles(table);
  const want = `want role ${roles.length === 1 ? roles[0] : `one of ${roles.join(", ")}`}`;
  return (peer) => {
    const held = rolesOf(peer);
    return roles.some((r) => held.includes(r))
      ? undefined
      : new AuthorizationError(peer, `${want}; it holds ${held.length === 0 ? "no role" : held.join(", ")}`);
  };
}

/** pinOf reads a SHA-256 pin: 64 hex digits (colons allowed, any case) or 44 characters of base64 (HPKP's pin-sha256). */
function pinOf(pin: string, fn: string): string {
  const hex = pin.replace(/:/g, "").toLowerCase();
  if (/^[0-9a-f]{64}$/.test(hex)) return hex;
  if (/^[A-Za-z0-9+/]{43}=$/.test(pin)) return Buffer.from(pin, "base64").toString("hex");
  throw misuse(`${fn}: ${JSON.stringify(pin)} is not a SHA-256 digest (64 hex digits, or base64 as in pin-sha256)`);
}

/** pinned builds a pinning authorizer over one of the peer's digests. */
function pinned(fn: string, what: "certSha256" | "spkiSha256", label: string, pins: string[]): Authorizer {
  if (pins.length === 0)
    throw misuse(`${fn} needs at least one SHA-256 digest (deny by default: an empty list would refuse everyone)`);
  const set = new Set(pins.map((p) => pinOf(p, fn)));
  return (peer) =>
    set.has(peer[what])
      ? undefined
      : new AuthorizationError(peer, `want a ${label} SHA-256 of ${[...set].join(" or ")}; it has ${peer[what]}`);
}

/**
 * pinCertificate admits peers whose certificate's SHA-256 is one of `sha256s` (hex or base64);
 * a re-issued certificate needs a new pin.
 *
 * @example
 * pinCertificate("3b0c...e1"); // openssl x509 -in cert.pem -outform der | sha256sum
 */
export function pinCertificate(...sha256s: string[]): Authorizer {
  return pinned("pinCertificate", "certSha256", "certificate", sha256s);
}

/**
 * pinSpki admits peers whose public key (SubjectPublicKeyInfo) has one of `sha256s` as SHA-256;
 * the pin survives re-issuing a certificate for the same key.
 *
 * @example
 * pinSpki("d4:1d:8c:...");
 */
export function pinSpki(...sha256s: string[]): Authorizer {
  return pinned("pinSpki", "spkiSha256", "public key", sha256s);
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
