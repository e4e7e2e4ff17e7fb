/**
 * Role-based access: an RBAC table maps identities and subject DNs to roles, DNs looked up as
 * ServiceRadar's datasvc looks a client up; authorizeRbac admits peers holding a wanted role.
 */
import { AuthorizationError, checkedId, misuse, type Authorizer } from "./authorize.ts";
import { parseDn, sameValues, subjectMatcher, subjectOf, valuesByType } from "./dn.ts";
import type { Peer } from "./peer.ts";

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
