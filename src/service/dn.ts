/**
 * Distinguished names as RFC 4514 writes them (and Go and OpenSSL print them): parseDn reads one
 * into attributes, normalizeDn writes it canonically, and a peer's subject is matched as a
 * multiset of attributes (any order, any RDN grouping), for authorizeSubject and RBAC keys.
 */
import { NAME_ATTRIBUTES, type NameAttribute } from "../pki/oids.ts";
import { AuthorizationError, misuse, type Authorizer } from "./authorize.ts";
import type { Peer } from "./peer.ts";

/**
 * ATTRIBUTE_ALIASES maps the upper-cased short names, long names, other spellings and OIDs of DN
 * attributes (pki/oids.ts) to one upper-case short name: `commonName`, `cn` and `2.5.4.3` are `CN`.
 */
const ATTRIBUTE_ALIASES: Record<string, string> = Object.fromEntries(
  NAME_ATTRIBUTES.flatMap((a: NameAttribute) =>
    [a.short, a.long, a.oid, ...(a.also ?? [])].map((name) => [name.toUpperCase(), a.short.toUpperCase()]),
  ),
);

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
export function valuesByType(attributes: DnAttribute[]): Map<string, string[]> {
  const byType = new Map<string, string[]>();
  for (const a of attributes) byType.set(a.type, [...(byType.get(a.type) ?? []), attributeKey(a)]);
  for (const list of byType.values()) list.sort();
  return byType;
}

/** subjectOf reads a peer's subject attributes from its decoded subject (pki/x509.ts writes it as RFC 4514, escaped). */
export function subjectOf(peer: Peer): Map<string, string[]> {
  let byType = subjectCache.get(peer);
  if (!byType) {
    byType = valuesByType(parseDn(peer.subject));
    subjectCache.set(peer, byType);
  }
  return byType;
}

/** sameValues: two attribute maps (valuesByType) hold exactly the same attributes. */
export function sameValues(a: Map<string, string[]>, b: Map<string, string[]>): boolean {
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
export function subjectMatcher(dn: string): (peer: Peer) => boolean {
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
