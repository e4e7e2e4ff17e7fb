/**
 * Cross-field rules, each a small named function that reports problems through the context.
 * Every rule runs, so a user sees every problem at once (changesets' config rules are the model).
 */
import { parseIdentity, PLACEHOLDERS, templatePlaceholders } from "../identity/index.ts";
import { PROFILES } from "../pki/profiles.ts";
import type { Problem } from "../errors.ts";
import { formatDuration } from "./duration.ts";
import type { Manifest } from "./model.ts";
import type { ParsedYaml } from "./parse.ts";
import type { WrittenManifest } from "./schema.ts";

/** Context collects problems, each located by its field path. */
export class Context {
  readonly problems: Problem[] = [];
  readonly warnings: Problem[] = [];
  constructor(readonly file: string, private readonly yaml: ParsedYaml) {}
  private at(path: readonly (string | number)[], message: string, fix: string | undefined, key: boolean): Problem {
    const line = this.yaml.lineOf(path, { key });
    return { file: this.file, ...(line === undefined ? {} : { line }), path: path.join("."), message, ...(fix === undefined ? {} : { fix }) };
  }
  /** error records a problem that stops apply. */
  error(path: readonly (string | number)[], message: string, fix?: string, opts?: { key?: boolean }): void {
    this.problems.push(this.at(path, message, fix, opts?.key ?? false));
  }
  /** warn records a problem worth knowing that does not stop apply. */
  warn(path: readonly (string | number)[], message: string, fix?: string): void {
    this.warnings.push(this.at(path, message, fix, false));
  }
}

/** Rule is one named check over the resolved and written manifest. */
export type Rule = (m: Manifest, w: WrittenManifest, ctx: Context) => void;

const identityTemplateKnown: Rule = (m, _w, ctx) => {
  if (m.identityTemplate === undefined) return;
  for (const p of templatePlaceholders(m.identityTemplate)) {
    if (!(PLACEHOLDERS as readonly string[]).includes(p)) {
      ctx.error(["identity", "uri"], `unknown placeholder {${p}}; the template may use ${PLACEHOLDERS.map((x) => `{${x}}`).join(" ")}`, "correct or remove the placeholder");
    }
  }
};

const identityValid: Rule = (m, _w, ctx) => {
  if (m.identityTemplate === undefined || templatePlaceholders(m.identityTemplate).some((p) => !(PLACEHOLDERS as readonly string[]).includes(p))) return;
  const reported = new Set<string>();
  for (const s of m.services) {
    const parsed = parseIdentity(s.identity!);
    if ("error" in parsed && !reported.has(parsed.error)) {
      reported.add(parsed.error);
      ctx.error(["identity", "uri"], `renders ${JSON.stringify(s.identity)} for service ${s.name}, which ${parsed.error}`, "fix the template (SPIFFE form: spiffe://trust-domain/path)");
    }
  }
};

const identitiesUnique: Rule = (m, _w, ctx) => {
  const seen = new Map<string, string>();
  for (const s of m.services) {
    if (s.identity === undefined) continue;
    const other = seen.get(s.identity);
    if (other !== undefined) {
      ctx.error(["services", s.name], `has the same identity ${s.identity} as service ${other}; an identity must name one service`, "add {name} to identity.uri, or give the services different roles");
    } else seen.set(s.identity, s.name);
  }
};

const splitNeedsDual: Rule = (m, _w, ctx) => {
  for (const s of m.services) {
    if (s.split && s.usage !== "dual") ctx.error(["services", s.name, "split"], `split separates a dual service's server and client certificates; this service's usage is ${s.usage}`, "remove split, or set usage: dual");
  }
};

const renewBeforeShorterThanValidity: Rule = (m, w, ctx) => {
  for (const s of m.services) {
    if (s.renewBeforeMs >= s.validityMs) {
      const written = w.services[s.name]?.renewBefore !== undefined;
      ctx.error(
        written ? ["services", s.name, "renewBefore"] : ["defaults", "renewBefore"],
        `renewBefore (${formatDuration(s.renewBeforeMs)}) must be shorter than service ${s.name}'s validity (${formatDuration(s.validityMs)}), or every apply would re-issue it`,
        "shorten renewBefore (a third of validity is the default)",
      );
    }
  }
};

const leafWithinCa: Rule = (m, w, ctx) => {
  if (m.ca.import) return; // checked against the imported certificate when it is read
  for (const s of m.services) {
    if (s.validityMs > m.ca.validityMs) {
      const written = w.services[s.name]?.validity !== undefined;
      ctx.error(
        written ? ["services", s.name, "validity"] : ["defaults", "validity"],
        `service ${s.name}'s validity (${formatDuration(s.validityMs)}) is longer than the CA's (${formatDuration(m.ca.validityMs)}); a certificate cannot outlive its CA`,
        "shorten the service validity or lengthen ca.validity",
      );
    }
  }
};

const connectionsValid: Rule = (m, w, ctx) => {
  (w.connections ?? []).forEach((c, i) => {
    const from = m.services.find((s) => s.name === c.from);
    const to = m.services.find((s) => s.name === c.to);
    const names = m.services.map((s) => s.name).join(", ");
    if (!from) ctx.error(["connections", i, "from"], `names unknown service ${JSON.stringify(c.from)}; services are: ${names}`, "use one of the service names");
    else if (!PROFILES[from.usage].canConnect) {
      ctx.error(["connections", i, "from"], `service ${from.name} has usage ${from.usage}, so its certificate cannot authenticate as a client (no clientAuth)`, `set services.${from.name}.usage to dual`);
    }
    if (!to) ctx.error(["connections", i, "to"], `names unknown service ${JSON.stringify(c.to)}; services are: ${names}`, "use one of the service names");
    else if (!PROFILES[to.usage].canServe) {
      ctx.error(["connections", i, "to"], `service ${to.name} has usage ${to.usage}, so its certificate cannot serve TLS (no serverAuth)`, `set services.${to.name}.usage to dual`);
    } else {
      const conn = m.connections.find((x) => x.index === i);
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

const sanSharedAcrossServices: Rule = (m, _w, ctx) => {
  const owner = new Map<string, string>();
  for (const s of m.services) {
    for (const n of [...s.dns.filter((d) => d !== s.cn), ...s.ips.map((i) => i.text)]) {
      const other = owner.get(n);
      if (other !== undefined && other !== s.name) ctx.warn(["services", s.name, "addresses"], `${n} is also an address of service ${other}; a client dialing it cannot tell the two apart`);
      else owner.set(n, s.name);
    }
  }
};

/** RULES run in this order; each is independent of the others. */
export const RULES: readonly Rule[] = [
  identityTemplateKnown,
  identityValid,
  identitiesUnique,
  splitNeedsDual,
  renewBeforeShorterThanValidity,
  leafWithinCa,
  connectionsValid,
  sanSharedAcrossServices,
];
