/**
 * Cross-field rules, each a small named function that reports problems through the context.
 * Every rule runs, so a user sees every problem at once (changesets' config rules are the model).
 */
import { parseIdentity, PLACEHOLDERS, templatePlaceholders } from "../identity/index.ts";
import { PROFILES } from "../pki/profiles.ts";
import type { Problem } from "../errors.ts";
import { formatDuration } from "./duration.ts";
import { managedServices, serviceNames, type Manifest } from "./model.ts";
import { OUTPUT_RULES } from "./outputs.ts";
import type { ParsedYaml } from "./parse.ts";
import type { WrittenManifest } from "./schema.ts";

/** REPEAT_LIMIT is how many warnings of one kind are shown before the rest are counted. */
export const REPEAT_LIMIT = 10;

/** Context collects problems, each located by its field path. */
export class Context {
  readonly problems: Problem[] = [];
  readonly warnings: Problem[] = [];
  /** now is when the manifest is judged: the start of every validity the rules bound. */
  constructor(
    readonly file: string,
    private readonly yaml: ParsedYaml,
    readonly now: Date = new Date(),
  ) {}
  private at(path: readonly (string | number)[], message: string, fix: string | undefined, key: boolean): Problem {
    const line = this.yaml.lineOf(path, { key });
    return {
      file: this.file,
      ...(line === undefined ? {} : { line }),
      path: path.join("."),
      message,
      ...(fix === undefined ? {} : { fix }),
    };
  }
  /** error records a problem that stops apply. */
  error(path: readonly (string | number)[], message: string, fix?: string, opts?: { key?: boolean }): void {
    this.problems.push(this.at(path, message, fix, opts?.key ?? false));
  }
  private readonly repeats = new Map<string, { count: number; summary?: Problem }>();
  /**
   * warn records a problem worth knowing that does not stop apply. Warnings given the same `like`
   * are shown REPEAT_LIMIT times, then summed up in one line: 1,000 aliased services printed
   * 887 MB of warnings (issue 11).
   */
  warn(path: readonly (string | number)[], message: string, fix?: string, opts?: { like?: string }): void {
    const like = opts?.like;
    const seen = like === undefined ? undefined : (this.repeats.get(like) ?? { count: 0 });
    if (like !== undefined && seen) {
      this.repeats.set(like, seen);
      if (++seen.count > REPEAT_LIMIT) {
        if (!seen.summary) this.warnings.push((seen.summary = { file: this.file, path: "", message: "" }));
        const more = seen.count - REPEAT_LIMIT;
        seen.summary.message = `and ${more} more warning${more === 1 ? "" : "s"} like this (${like}); the first ${REPEAT_LIMIT} are shown`;
        return;
      }
    }
    this.warnings.push(this.at(path, message, fix, false));
  }
}

/** Rule is one named check over the resolved and written manifest. */
export type Rule = (m: Manifest, w: WrittenManifest, ctx: Context) => void;

const identityTemplateKnown: Rule = (m, _w, ctx) => {
  if (m.identityTemplate === undefined) return;
  for (const p of templatePlaceholders(m.identityTemplate)) {
    if (!(PLACEHOLDERS as readonly string[]).includes(p)) {
      ctx.error(
        ["identity", "uri"],
        `unknown placeholder {${p}}; the template may use ${PLACEHOLDERS.map((x) => `{${x}}`).join(" ")}`,
        "correct or remove the placeholder",
      );
    }
  }
};

const identityValid: Rule = (m, _w, ctx) => {
  if (
    m.identityTemplate === undefined ||
    templatePlaceholders(m.identityTemplate).some((p) => !(PLACEHOLDERS as readonly string[]).includes(p))
  )
    return;
  const reported = new Set<string>();
  for (const s of m.services) {
    const parsed = parseIdentity(s.identity!);
    if ("error" in parsed && !reported.has(parsed.error)) {
      reported.add(parsed.error);
      ctx.error(
        ["identity", "uri"],
        `renders ${JSON.stringify(s.identity)} for service ${s.name}, which ${parsed.error}`,
        "fix the template (SPIFFE form: spiffe://trust-domain/path)",
      );
    }
  }
};

const identitiesUnique: Rule = (m, _w, ctx) => {
  const seen = new Map<string, string>();
  for (const s of m.services) {
    if (s.identity === undefined) continue;
    const other = seen.get(s.identity);
    if (other !== undefined) {
      ctx.error(
        ["services", s.name],
        `has the same identity ${s.identity} as service ${other}; an identity must name one service`,
        "add {name} to identity.uri, or give the services different roles",
      );
    } else seen.set(s.identity, s.name);
  }
};

const splitNeedsDual: Rule = (m, _w, ctx) => {
  for (const s of m.services) {
    if (s.split && s.usage !== "dual")
      ctx.error(
        ["services", s.name, "split"],
        `split separates a dual service's server and client certificates; this service's usage is ${s.usage}`,
        "remove split, or set usage: dual",
      );
  }
};

/** reloadNeedsManagedFiles: apply never changes an external service's files, so its hook would never run. */
const reloadNeedsManagedFiles: Rule = (m, _w, ctx) => {
  for (const s of m.services) {
    if (s.files && s.reload)
      ctx.error(
        ["services", s.name, "reload"],
        "runs after apply changes this service's files, but apply never changes files named in services.NAME.files",
        "reload the service from whatever renews those files, or remove files: and let mtlskit issue them",
      );
  }
};

/**
 * csrAlone: a csr service holds one certificate whose key lives on its host. Its files are made
 * there and signed by `mtlskit sign`, so files (someone else's certificate), split (two keys from
 * one CSR) and reload (apply never changes its files on the CA's host) cannot apply to it.
 */
const csrAlone: Rule = (m, _w, ctx) => {
  for (const s of m.services) {
    if (!s.csr) continue;
    const at = ["services", s.name];
    if (s.files)
      ctx.error(
        [...at, "csr"],
        "says mtlskit signs this service's CSR, but services.NAME.files says its certificate is made elsewhere",
        "keep one: remove files (mtlskit signs the CSR) or remove csr (the files are judged as they are)",
      );
    if (s.split)
      ctx.error(
        [...at, "csr"],
        "a csr service holds one certificate from one CSR; split: true would need two keys and two certificates",
        "remove split (usage dual gives one certificate for both ends), or remove csr",
      );
    if (s.reload)
      ctx.error(
        [...at, "reload"],
        "runs after apply changes this service's files, but a csr service's certificate is installed on its own host after `mtlskit sign`",
        "reload the service on its host after installing the signed certificate, and remove reload here",
      );
  }
};

/**
 * externalFilesFollowSplit: a service's files name a client pair exactly when it is split, because
 * a split service holds two certificates (cert.pem and client.pem) and any other holds one.
 */
const externalFilesFollowSplit: Rule = (m, _w, ctx) => {
  for (const s of m.services) {
    if (!s.files) continue;
    const at = ["services", s.name, "files"];
    for (const field of ["clientCert", "clientKey"] as const) {
      const what = field === "clientCert" ? "client certificate" : "client certificate's key";
      if (s.split && s.files[field] === undefined) {
        ctx.error(
          [...at, field],
          `is required when split is true: the ${what} of the split pair (cert is the server certificate)`,
          `add ${field}: the PEM file of ${s.name}'s ${what}, or remove split`,
        );
      } else if (!s.split && s.files[field] !== undefined) {
        ctx.error(
          [...at, field],
          `names the ${what} of a split pair, but split is not true, so the service has one certificate (cert)`,
          `remove ${field}, or set split: true (usage dual)`,
        );
      }
    }
  }
};

/**
 * whereSet returns the path of the field that gave a service its value: the service's own, else
 * the defaults', else `fallback` (the field that the built-in default must fit).
 */
function whereSet(
  w: WrittenManifest,
  service: string,
  field: "validity" | "renewBefore",
  fallback: (string | number)[],
): (string | number)[] {
  if (w.services[service]?.[field] !== undefined) return ["services", service, field];
  if (w.defaults?.[field] !== undefined) return ["defaults", field];
  return fallback;
}

/** groupBy groups items by key, in first-seen order (pushed, not copied: 10,000 services may share one group). */
function groupBy<T, K>(items: readonly T[], key: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const k = key(item);
    const g = groups.get(k);
    if (g) g.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

/** reportGrouped reports one problem per field path, naming every service it concerns. */
function reportGrouped(
  ctx: Context,
  found: { path: (string | number)[]; service: string }[],
  message: (services: string) => string,
  fix: string,
): void {
  for (const group of groupBy(found, (f) => f.path.join(".")).values()) {
    const g = { path: group[0]!.path, services: group.map((f) => f.service) };
    const list =
      g.services.length > 5
        ? `${g.services.slice(0, 5).join(", ")} and ${g.services.length - 5} more`
        : g.services.join(", ");
    ctx.error(g.path, message(list), fix);
  }
}

const renewBeforeShorterThanValidity: Rule = (m, w, ctx) => {
  // Services with files are left out: apply never re-issues them, and their dates are their files'.
  const bad = managedServices(m).filter((s) => s.renewBeforeMs >= s.validityMs);
  for (const group of groupBy(bad, (s) => `${s.renewBeforeMs}/${s.validityMs}`).values()) {
    const s0 = group[0]!;
    reportGrouped(
      ctx,
      group.map((s) => ({ path: whereSet(w, s.name, "renewBefore", ["defaults", "renewBefore"]), service: s.name })),
      (names) =>
        `renewBefore (${formatDuration(s0.renewBeforeMs)}) must be shorter than the validity (${formatDuration(s0.validityMs)}) of service ${names}, or every apply would re-issue it`,
      "shorten renewBefore (a third of validity is the default)",
    );
  }
};

const leafWithinCa: Rule = (m, w, ctx) => {
  if (m.ca.import) return; // checked against the imported certificate when it is read
  // Services with files are left out: their validity is whatever their files say.
  const bad = managedServices(m).filter((s) => s.validityMs > m.ca.validityMs);
  for (const [validity, group] of groupBy(bad, (s) => s.validityMs)) {
    reportGrouped(
      ctx,
      group.map((s) => ({ path: whereSet(w, s.name, "validity", ["ca", "validity"]), service: s.name })),
      (names) =>
        `a validity of ${formatDuration(validity)} (service ${names}) is longer than the CA's ${formatDuration(m.ca.validityMs)}; a certificate cannot outlive its CA`,
      "shorten the service validity or lengthen ca.validity",
    );
  }
};

/**
 * LAST_TIME is the latest time a certificate can carry: GeneralizedTime has four year digits
 * (RFC 5280 4.1.2.5; 99991231235959Z is its "no well-defined expiration" value).
 */
export const LAST_TIME = Date.UTC(9999, 11, 31, 23, 59, 59);
const YEAR_MS = 365 * 86_400_000;

/**
 * validityEndsBy9999: a validity that ends after LAST_TIME cannot be encoded. `validity: 8000y`
 * wrote a CA that every later apply failed to read (issue 11); now it is refused before any write.
 */
const validityEndsBy9999: Rule = (m, w, ctx) => {
  const start = ctx.now.getTime();
  const longest = Math.floor((LAST_TIME - start) / YEAR_MS);
  const fits = (ms: number) => start + ms <= LAST_TIME;
  const endYear = (ms: number) => new Date(Math.min(start + ms, 8.64e15)).getUTCFullYear();
  const message = (ms: number, who: string) =>
    `${formatDuration(ms)} from now (${who}) ends in the year ${endYear(ms)}, after 9999-12-31T23:59:59Z, the last time a certificate can carry (RFC 5280 4.1.2.5); the longest validity that fits is ${longest}y`;
  const fix = `shorten it to at most ${longest}y`;
  if (!m.ca.import && !fits(m.ca.validityMs))
    ctx.error(
      ["ca", "validity"],
      message(m.ca.validityMs, "the CA"),
      `${fix} (a CA rarely needs more than 10y to 30y)`,
    );
  // A leaf longer than a generated CA is already refused by leafWithinCa; an imported CA has no
  // validity here, so its leaves are bounded on their own.
  const bad = managedServices(m).filter(
    (s) => !fits(s.validityMs) && (m.ca.import !== undefined || s.validityMs <= m.ca.validityMs),
  );
  for (const [validity, group] of groupBy(bad, (s) => s.validityMs)) {
    reportGrouped(
      ctx,
      group.map((s) => ({ path: whereSet(w, s.name, "validity", ["ca", "validity"]), service: s.name })),
      (names) => message(validity, `service ${names}`),
      fix,
    );
  }
};

const connectionsValid: Rule = (m, w, ctx) => {
  // Maps, not finds: a cluster of 10,000 services declares tens of thousands of connections.
  const byName = new Map(m.services.map((s) => [s.name, s]));
  const byIndex = new Map(m.connections.map((c) => [c.index, c]));
  let names: string | undefined;
  const allNames = () => (names ??= serviceNames(m));
  (w.connections ?? []).forEach((c, i) => {
    const from = byName.get(c.from);
    const to = byName.get(c.to);
    if (!from)
      ctx.error(
        ["connections", i, "from"],
        `names unknown service ${JSON.stringify(c.from)}; services are: ${allNames()}`,
        "use one of the service names",
      );
    else if (!PROFILES[from.usage].canConnect) {
      ctx.error(
        ["connections", i, "from"],
        `service ${from.name} has usage ${from.usage}, so its certificate cannot authenticate as a client (no clientAuth)`,
        `set services.${from.name}.usage to dual`,
      );
    }
    if (!to)
      ctx.error(
        ["connections", i, "to"],
        `names unknown service ${JSON.stringify(c.to)}; services are: ${allNames()}`,
        "use one of the service names",
      );
    else if (!PROFILES[to.usage].canServe) {
      ctx.error(
        ["connections", i, "to"],
        `service ${to.name} has usage ${to.usage}, so its certificate cannot serve TLS (no serverAuth)`,
        `set services.${to.name}.usage to dual`,
      );
    } else {
      const conn = byIndex.get(i);
      if (conn) {
        const a = conn.address;
        const covered = a.kind === "ip" ? to.ips.some((ip) => ip.bytes.equals(a.bytes)) : to.dns.includes(a.text);
        if (!covered) {
          ctx.error(
            ["connections", i, "address"],
            `${c.from} dials ${to.name} at ${a.text}, which is not among ${to.name}'s addresses (${[...to.dns, ...to.ips.map((x) => x.text)].join(", ")}); the handshake would fail with a name mismatch`,
            `add ${a.text} to services.${to.name}.addresses`,
          );
        }
      }
    }
  });
};

const sanSharedAcrossServices: Rule = (m, w, ctx) => {
  const owner = new Map<string, string>();
  for (const s of m.services) {
    // IPs are left out: co-located services share a host's IP and are told apart by port; so is
    // localhost, which every host answers for itself.
    let written: Set<string> | undefined; // built only for a warning: 10,000 services rarely share a name
    for (const n of s.dns) {
      if (n === "localhost") continue;
      const other = owner.get(n);
      if (other !== undefined && other !== s.name) {
        written ??= new Set((w.services[s.name]?.addresses ?? []).map((a) => String(a).trim().toLowerCase()));
        ctx.warn(
          ["services", s.name, written.has(n) ? "addresses" : "cn"],
          `${n} is also a name of service ${other}; a client dialing it cannot tell the two apart`,
          "give each service its own DNS names",
          { like: "a DNS name of two services" },
        );
      } else owner.set(n, s.name);
    }
  }
};

/**
 * importKeyUnlessIntermediate: an imported CA that signs services needs its key at every apply, so
 * ca.import.key may be left out only when an intermediate signs the services and the imported
 * CA signs just the intermediate (its key then comes with `apply --ca-key FILE`).
 */
const importKeyUnlessIntermediate: Rule = (m, _w, ctx) => {
  if (!m.ca.import || m.ca.import.key !== undefined || m.ca.intermediate) return;
  ctx.error(
    ["ca", "import"],
    "ca.import.key is missing: the imported CA signs every service certificate, so apply needs its key",
    "add ca.import.key (a PEM file, mode 0600), or declare ca.intermediate so the imported CA signs only the intermediate and its key is given with `mtlskit apply --ca-key FILE` when the intermediate is signed",
  );
};

/**
 * intermediateFits: the intermediate must outlive what it signs and renew before it is due. A
 * leaf as long as the intermediate could never be issued under a renewed one without the
 * intermediate being due again at once; an intermediate longer than a generated root would
 * outlive it.
 */
const intermediateFits: Rule = (m, w, ctx) => {
  const inter = m.ca.intermediate;
  if (!inter) return;
  const at = (field: string): (string | number)[] =>
    (w.ca?.intermediate as Record<string, unknown> | undefined)?.[field] !== undefined
      ? ["ca", "intermediate", field]
      : ["ca", "intermediate"];
  if (inter.renewBeforeMs >= inter.validityMs)
    ctx.error(
      at("renewBefore"),
      `ca.intermediate.renewBefore (${formatDuration(inter.renewBeforeMs)}) must be shorter than its validity (${formatDuration(inter.validityMs)}), or every apply would re-sign it`,
      "shorten ca.intermediate.renewBefore (a third of the validity is the default)",
    );
  if (!m.ca.import && inter.validityMs > m.ca.validityMs)
    ctx.error(
      at("validity"),
      `the intermediate's validity (${formatDuration(inter.validityMs)}) is longer than the root's (${formatDuration(m.ca.validityMs)}); a CA cannot outlive the root that signed it`,
      "shorten ca.intermediate.validity or lengthen ca.validity",
    );
  const bad = managedServices(m).filter((s) => s.validityMs >= inter.validityMs);
  const byValidity = new Map<number, typeof bad>();
  for (const s of bad) byValidity.set(s.validityMs, [...(byValidity.get(s.validityMs) ?? []), s]);
  for (const [validity, group] of byValidity)
    reportGrouped(
      ctx,
      group.map((s) => ({ path: whereSet(w, s.name, "validity", at("validity")), service: s.name })),
      (names) =>
        `a validity of ${formatDuration(validity)} (service ${names}) is not shorter than the intermediate's ${formatDuration(inter.validityMs)}; the intermediate signs it and must outlive it`,
      "shorten the service validity or lengthen ca.intermediate.validity (several times the longest service validity)",
    );
};

/**
 * ttlNeedsCsr: ttl is the lifetime of a certificate the online CA issues, and only csr services
 * are issued online: their agent holds the key. Any other service's certificate comes from apply
 * (or its files), whose lifetime is `validity`, so a ttl there would silently mean nothing.
 */
const ttlNeedsCsr: Rule = (m, w, ctx) => {
  for (const s of m.services) {
    if (s.csr || w.services[s.name]?.ttl === undefined) continue;
    ctx.error(
      ["services", s.name, "ttl"],
      `is the lifetime of a certificate the online CA (\`mtlskit serve\`) issues, but only csr: true services are issued online; ${s.files ? "this service's certificate is its files (services.NAME.files)" : "this service's certificate is issued by apply, for its validity"}`,
      "add csr: true to have its agent (`mtlskit agent`) enroll and renew it online, or remove ttl (validity sets the lifetime of what apply and `mtlskit sign` issue)",
    );
  }
};

/**
 * acmeTrustNeedsCsr: acmeTrustBinding lets the online CA's ACME server skip challenges for a
 * service's accounts, and only csr services are issued online; elsewhere it would mean nothing.
 */
const acmeTrustNeedsCsr: Rule = (m, w, ctx) => {
  for (const s of m.services) {
    if (s.csr || w.services[s.name]?.acmeTrustBinding === undefined) continue;
    ctx.error(
      ["services", s.name, "acmeTrustBinding"],
      "trusts ACME accounts of this service without a challenge, but only csr: true services are issued online (and by ACME)",
      "add csr: true, or remove acmeTrustBinding",
    );
  }
};

/** ttlPath is where a csr service's ttl was set: its own field, else `fallback` (the bound the default must fit). */
const ttlPath = (w: WrittenManifest, service: string, fallback: (string | number)[]): (string | number)[] =>
  w.services[service]?.ttl !== undefined ? ["services", service, "ttl"] : fallback;

/** ttlWithinMaxTtl: serve.maxTtl bounds every online lifetime, so one limit caps what a stolen agent key is worth. */
const ttlWithinMaxTtl: Rule = (m, w, ctx) => {
  const max = m.serve?.maxTtlMs;
  if (max === undefined) return;
  const bad = m.services.filter((s) => s.csr && s.ttlMs !== undefined && s.ttlMs > max);
  const maxAt = w.serve?.maxTtl !== undefined ? ["serve", "maxTtl"] : ["serve"];
  const written = (s: { name: string }) => w.services[s.name]?.ttl !== undefined;
  for (const group of groupBy(bad, (s) => `${s.ttlMs}/${written(s)}`).values()) {
    const ttlMs = group[0]!.ttlMs!;
    reportGrouped(
      ctx,
      group.map((s) => ({ path: ttlPath(w, s.name, maxAt), service: s.name })),
      (names) =>
        `${written(group[0]!) ? "a" : "the default"} ttl of ${formatDuration(ttlMs)} (service ${names}) is longer than serve.maxTtl (${formatDuration(max)}), the longest lifetime the online CA issues`,
      `shorten the ttl to at most ${formatDuration(max)}, or raise serve.maxTtl to at least ${formatDuration(ttlMs)}`,
    );
  }
};

/**
 * ttlWithinCa: an online certificate is signed by the intermediate when there is one, else by the
 * CA, and must be shorter than its signer's validity (an imported CA's is read from its
 * certificate, later). The server also cuts each lifetime to what remains of the signer's.
 */
const ttlWithinCa: Rule = (m, w, ctx) => {
  const inter = m.ca.intermediate;
  if (!inter && m.ca.import) return;
  const signerMs = inter ? inter.validityMs : m.ca.validityMs;
  const who = inter ? "the intermediate's" : "the CA's";
  const field = inter ? "ca.intermediate.validity" : "ca.validity";
  const signerAt = (inter ? ["ca", "intermediate"] : ["ca"]) as (string | number)[];
  const written = inter ? (w.ca?.intermediate as Record<string, unknown> | undefined)?.validity : w.ca?.validity;
  const fallback = written !== undefined ? [...signerAt, "validity"] : w.ca !== undefined ? signerAt : ["ca"];
  const bad = m.services.filter((s) => s.csr && s.ttlMs !== undefined && s.ttlMs >= signerMs);
  for (const [ttlMs, group] of groupBy(bad, (s) => s.ttlMs!)) {
    reportGrouped(
      ctx,
      group.map((s) => ({ path: ttlPath(w, s.name, fallback), service: s.name })),
      (names) =>
        `a ttl of ${formatDuration(ttlMs)} (service ${names}) is not shorter than ${who} validity (${formatDuration(signerMs)}); it signs every online certificate and must outlive it`,
      `shorten the ttl, or lengthen ${field}`,
    );
  }
};

/**
 * adminsAreClients: serve.admins names the services whose client certificate may revoke, so each
 * must be a service of this manifest and able to authenticate as a client (clientAuth), named once.
 */
const adminsAreClients: Rule = (m, w, ctx) => {
  const byName = new Map(m.services.map((s) => [s.name, s]));
  const seen = new Map<string, number>();
  (w.serve?.admins ?? []).forEach((name, i) => {
    const s = byName.get(name);
    const first = seen.get(name);
    if (first === undefined) seen.set(name, i);
    if (first !== undefined)
      ctx.error(
        ["serve", "admins", i],
        `names ${name} again (already serve.admins[${first}]); a repeated admin is most often a typo for another service`,
        `remove the repeated ${name}, or write the service you meant`,
      );
    else if (!s)
      ctx.error(
        ["serve", "admins", i],
        `names unknown service ${JSON.stringify(name)}; services are: ${serviceNames(m)}`,
        "use one of the service names, or declare the admin as a service (usage client) under services:",
      );
    else if (!PROFILES[s.usage].canConnect)
      ctx.error(
        ["serve", "admins", i],
        `service ${name} has usage ${s.usage}, so its certificate cannot authenticate as a client (no clientAuth) to call /v1/revoke`,
        `set services.${name}.usage to client or dual, or name a client service`,
      );
  });
};

/** RULES run in this order; each is independent of the others. */
export const RULES: readonly Rule[] = [
  identityTemplateKnown,
  identityValid,
  identitiesUnique,
  splitNeedsDual,
  externalFilesFollowSplit,
  reloadNeedsManagedFiles,
  csrAlone,
  acmeTrustNeedsCsr,
  ttlNeedsCsr,
  ttlWithinMaxTtl,
  ttlWithinCa,
  adminsAreClients,
  renewBeforeShorterThanValidity,
  leafWithinCa,
  importKeyUnlessIntermediate,
  intermediateFits,
  validityEndsBy9999,
  connectionsValid,
  sanSharedAcrossServices,
  ...OUTPUT_RULES,
];
