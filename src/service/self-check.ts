/**
 * Startup self-check: a service judges its OWN certificate before it listens, so a wrong
 * certificate stops the deploy with a sentence and a fix instead of surfacing later as peers'
 * handshake failures. This is Netsy's startup check (../shared/seeds, Netsy's TLS runbook: "At
 * startup, Netsy validates that the certificate identity matches the configured node_id /
 * cluster_id, and that the server certificate SANs cover the configured Client, Peer, and
 * election advertise addresses"), plus the usage and validity rules a peer would apply anyway.
 *
 * Checked: when an identity is configured, exactly one URI SAN, equal to it (a URI, or a template
 * rendered with the service's cluster, role and name; without one no URI SAN is required); typed SANs cover every advertise address (an IP
 * only by an IP SAN, a DNS name by a DNS SAN with the wildcard rules of pki/names.ts; never the
 * CN); the extended key usage fits the role; the certificate is valid now and is not a CA.
 */
import { parseIdentity, renderTemplate, templatePlaceholders, PLACEHOLDERS } from "../identity/index.ts";
import { EXIT, MtlskitError } from "../errors.ts";
import { addressOf, sansCover } from "../pki/names.ts";
import { PROFILES, type Usage } from "../pki/profiles.ts";
import type { CredentialSource, Credentials } from "./source.ts";

/** IdentityTemplate is an identity given as the manifest's template and the service's parts. */
export interface IdentityTemplate {
  /** template such as `netsy://{cluster}/{role}/{name}` or `spiffe://{cluster}.local/{role}/{name}`. */
  template: string;
  cluster: string;
  name: string;
  /** role fills `{role}`; default: the check's `role` (the service's usage), else "server". */
  role?: string;
}

/** SelfCheckOptions say what the service expects of its own certificate; every check is optional but the usage and validity ones. */
export interface SelfCheckOptions {
  /** identity: the expected identity URI, or a template and its parts; default: none, and then the certificate needs no URI SAN (deployments that authorize by subject DN). */
  identity?: string | IdentityTemplate;
  /** advertise: every address peers dial (`10.0.0.5`, `api.example.com`, `api.example.com:8443`, `[::1]:8443`); default none. */
  advertise?: readonly string[];
  /** role: which end the certificate serves, "server" (serverAuth), "client" (clientAuth) or "dual" (both); default "server". */
  role?: Usage;
  /** now: the time validity is judged at; default the current time. */
  now?: Date;
}

/** SelfCheckProblem is one thing wrong with the service's own certificate and how to fix it. */
export interface SelfCheckProblem {
  /** message states what is wrong, e.g. `the SANs do not cover advertise address 10.0.0.5 (...)`. */
  message: string;
  /** fix says what to change, e.g. `re-issue it with IP:10.0.0.5 in subjectAltName (...)`. */
  fix: string;
}

/** SelfCheckError refuses a start: its message lists every problem with its fix. */
export class SelfCheckError extends MtlskitError {
  /** code lets callers tell a refused start from other errors. */
  readonly code = "ERR_MTLSKIT_SELF_CHECK";
  /** problems are the individual findings. */
  readonly problems: readonly SelfCheckProblem[];
  constructor(problems: readonly SelfCheckProblem[]) {
    const lines = problems.map((p) => `  - ${p.message}\n    fix: ${p.fix}`);
    // A wrong certificate is a finding about what was deployed, as for `check` (exit 1).
    super(
      `service: refusing to start: the service's own certificate has ${problems.length === 1 ? "a problem" : `${problems.length} problems`}:\n${lines.join("\n")}`,
      EXIT.findings,
    );
    this.problems = problems;
  }
}

const misuse = (message: string) => new MtlskitError(`service: selfCheck: ${message}`, EXIT.invalid);

const REISSUE = "run `mtlskit apply` (or re-issue the certificate with your own CA)";

/** expectedIdentity renders and validates the expected identity; a bad argument throws at once. */
function expectedIdentity(identity: string | IdentityTemplate, role: Usage): string {
  let uri: string;
  if (typeof identity === "string") uri = identity;
  else {
    const unknown = templatePlaceholders(identity.template).filter(
      (n) => !(PLACEHOLDERS as readonly string[]).includes(n),
    );
    if (unknown.length > 0)
      throw misuse(
        `template ${JSON.stringify(identity.template)} has unknown placeholders ${unknown.map((n) => `{${n}}`).join(", ")}; use ${PLACEHOLDERS.map((n) => `{${n}}`).join(" ")}`,
      );
    uri = renderTemplate(identity.template, {
      cluster: identity.cluster,
      name: identity.name,
      role: identity.role ?? role,
    });
  }
  const parsed = parseIdentity(uri);
  if ("error" in parsed)
    throw misuse(`the expected identity ${JSON.stringify(uri)} is not an identity URI: it ${parsed.error}`);
  return uri;
}

/** hostOf strips a port and IPv6 brackets from an advertise address: `[::1]:8443` -> `::1`, `a.b:443` -> `a.b`. */
function hostOf(address: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (bracketed) return bracketed[1]!;
  const withPort = /^([^:]+):\d+$/.exec(address);
  return withPort ? withPort[1]! : address;
}

const listSans = (c: Credentials, types: string[]) => {
  const names = c.leaf.sans.filter((s) => types.includes(s.type)).map((s) => `${s.type.toUpperCase()}:${s.value}`);
  return names.length === 0
    ? `it has no ${types.map((t) => t.toUpperCase()).join(" or ")} SAN`
    : `it has ${names.join(", ")}`;
};

/**
 * selfCheck judges the source's current certificate against what the service expects and
 * returns every problem (none: ready). A malformed expectation (an invalid identity, an empty
 * address) throws, as a configuration error.
 *
 * @example
 * const problems = selfCheck(source, { identity: { template: "netsy://{cluster}/{role}/{name}", cluster: "prod", role: "peer", name: "node-1" }, advertise: ["10.0.0.5:2379"] });
 * for (const p of problems) console.error(`${p.message} (fix: ${p.fix})`);
 */
export function selfCheck(source: CredentialSource, opts: SelfCheckOptions = {}): SelfCheckProblem[] {
  const role = opts.role ?? "server";
  if (!(role in PROFILES) || role === ("ca" as Usage))
    throw misuse(`role must be "server", "client" or "dual"; got ${JSON.stringify(role)}`);
  const want = opts.identity === undefined ? undefined : expectedIdentity(opts.identity, role);
  const hosts = (opts.advertise ?? []).map((a) => {
    const host = typeof a === "string" ? hostOf(a.trim()) : "";
    if (host === "") throw misuse(`advertise address ${JSON.stringify(a)} is empty`);
    return { written: a, host };
  });
  const now = opts.now ?? new Date();
  const creds = source.current();
  const leaf = creds.leaf;
  const problems: SelfCheckProblem[] = [];
  const add = (message: string, fix: string) => problems.push({ message, fix });

  // Identity: only when the caller configured one. Deployments that authorize by subject DN or
  // pin (ServiceRadar, Sensu, VirtRigaud) issue certificates without a URI SAN; demanding one
  // there refused every healthy start (issue 11).
  if (want !== undefined) {
    const uris = leaf.sans.filter((s) => s.type === "uri").map((s) => s.value);
    if (uris.length === 0)
      add(
        "the certificate has no URI SAN, so peers cannot read its identity",
        `re-issue it with one URI SAN (URI:${want}): give the manifest an identity.uri template and ${REISSUE}`,
      );
    else if (uris.length > 1)
      add(
        `the certificate has ${uris.length} URI SANs (${uris.join(", ")}); an identity is exactly one`,
        `re-issue it with only URI:${want}; ${REISSUE}`,
      );
    else if (uris[0] !== want)
      add(
        `the certificate's identity is ${uris[0]}, but this service is configured as ${want}`,
        `deploy the certificate issued for ${want}, or correct the service's configured cluster, role and name`,
      );
  }

  // SANs cover every advertise address, typed, never by CN.
  for (const { written, host } of hosts) {
    const address = addressOf(host);
    if (sansCover(leaf.sans, address)) continue;
    const type = address.kind === "ip" ? "IP" : "DNS";
    add(
      `the certificate's SANs do not cover advertise address ${written}: ${listSans(creds, [address.kind])}${leaf.subjectAttributes.CN === undefined ? "" : ` (its CN ${leaf.subjectAttributes.CN} does not count)`}`,
      `re-issue it with ${type}:${host} in subjectAltName: add ${host} to the service's addresses in the manifest and ${REISSUE}`,
    );
  }

  // EKU fits the role; an absent extension allows every purpose (RFC 5280 4.2.1.12).
  const eku = leaf.extKeyUsage;
  if (eku !== undefined && !eku.includes("anyExtendedKeyUsage")) {
    const missing = PROFILES[role].extKeyUsage.filter((u) => !eku.includes(u));
    if (missing.length > 0) {
      add(
        `the certificate's extendedKeyUsage is ${eku.length === 0 ? "empty" : eku.join(", ")}, but a ${role} needs ${PROFILES[role].extKeyUsage.join(" and ")}; peers would refuse it ("unsupported certificate purpose")`,
        `re-issue it with usage: ${role} in the manifest (${missing.join(", ")}); ${REISSUE}`,
      );
    }
  }

  // Valid now.
  if (now < leaf.notBefore)
    add(
      `the certificate is not valid yet: notBefore is ${leaf.notBefore.toISOString()}`,
      "check this host's clock (NTP), or wait until then; a certificate dated in the future was issued on a host whose clock runs ahead",
    );
  if (now > leaf.notAfter) add(`the certificate expired at ${leaf.notAfter.toISOString()}`, `renew it: ${REISSUE}`);

  // A leaf, not a CA.
  const signing = (leaf.keyUsage ?? []).filter((u) => u === "keyCertSign" || u === "cRLSign");
  if (leaf.isCA)
    add(
      "the certificate is a CA certificate (basicConstraints CA:TRUE); peers refuse a CA presented as a service's own",
      "deploy the service's leaf certificate and key (cert.pem/key.pem), not the CA's",
    );
  else if (signing.length > 0)
    add(
      `the certificate may sign certificates (keyUsage ${signing.join(", ")}); peers refuse it as a leaf`,
      `re-issue it as a leaf (usage: ${role}); ${REISSUE}`,
    );

  return problems;
}

/**
 * assertReady runs selfCheck and throws a SelfCheckError listing every problem with its fix;
 * it returns the credentials it judged when there are none.
 *
 * @example
 * assertReady(source, { identity: "spiffe://quickstart.local/server/api", advertise: ["api.localhost", "127.0.0.1"] });
 */
export function assertReady(source: CredentialSource, opts: SelfCheckOptions = {}): Credentials {
  const problems = selfCheck(source, opts);
  if (problems.length > 0) throw new SelfCheckError(problems);
  return source.current();
}
