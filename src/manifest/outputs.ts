/**
 * The manifest's `outputs:` resolved and checked: which keys each export format reads, the
 * services and hosts they name, and the names they will render. The exports themselves are
 * built by src/export/; every mistake here is reported at load time, before apply writes.
 */
import * as path from "node:path";
import type { Output, OutputFormat } from "./model.ts";
import type { Context, Rule } from "./rules.ts";
import type { WrittenManifest } from "./schema.ts";

type WrittenOutput = NonNullable<WrittenManifest["outputs"]>[number];

/** FORMAT_KEYS: the keys only some formats read; any other format refuses them, so a misplaced key is never ignored. */
export const FORMAT_KEYS: Readonly<Record<string, readonly OutputFormat[]>> = {
  hosts: ["flat"],
  names: ["flat", "env"],
  name: ["kubernetes"],
  namespace: ["kubernetes"],
  bundle: ["kubernetes"],
  prefix: ["env"],
  nodeId: ["env"],
  certDir: ["env"],
  passphraseFile: ["pkcs12"],
  passphraseEnv: ["pkcs12"],
};

/** PKI_PLACEHOLDER starts an output dir relative to the PKI directory (`{pki}/../deploy`), filled when apply or export runs. */
export const PKI_PLACEHOLDER = "{pki}";

/** normalizeOutputs resolves `outputs:`; dir and passphraseFile are anchored at `manifestDir`, certDir is kept as written (a path on the target host). */
export function normalizeOutputs(w: WrittenManifest, manifestDir: string): Output[] {
  return (w.outputs ?? []).map((o, i) => ({
    format: o.format,
    // `{pki}/...` stays as written: the PKI directory is known only when apply or export runs.
    dir: o.dir.startsWith(PKI_PLACEHOLDER) ? o.dir : path.resolve(manifestDir, o.dir),
    at: `outputs.${i}`,
    services: o.services,
    hosts: o.hosts,
    names: { ...o.names },
    owner: o.owner === undefined ? undefined : String(o.owner),
    group: o.group === undefined ? undefined : String(o.group),
    name: o.name,
    namespace: o.namespace,
    bundle: o.bundle,
    prefix: o.prefix,
    nodeId: o.nodeId,
    certDir: o.certDir,
    passphraseFile: o.passphraseFile === undefined ? undefined : path.resolve(manifestDir, o.passphraseFile),
    passphraseEnv: o.passphraseEnv,
  }));
}

/** DNS_SUBDOMAIN is a Kubernetes object name (RFC 1123 subdomain, at most 253 characters). */
export const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$/;
/** DNS_LABEL is a Kubernetes namespace (RFC 1123 label, at most 63 characters). */
export const DNS_LABEL = /^(?=.{1,63}$)[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/;

/** renderOutputTemplate fills {name} and {cluster}; unknown placeholders are left, and then fail the name rules. */
export const renderOutputTemplate = (template: string, vars: { name?: string; cluster: string }): string =>
  template.replaceAll("{cluster}", vars.cluster).replace(/\{name\}/g, () => vars.name ?? "{name}");

/** UNSAFE_ENV_PATH: characters an env file value cannot carry in single quotes read by both sh and systemd. */
export const UNSAFE_ENV_PATH = /['\\\u0000-\u001f\u007f]/;

const keysFitFormat = (o: WrittenOutput, at: (string | number)[], ctx: Context) => {
  for (const [key, formats] of Object.entries(FORMAT_KEYS)) {
    if ((o as Record<string, unknown>)[key] !== undefined && !formats.includes(o.format)) {
      ctx.error([...at, key], `is read only by format ${formats.join(" and ")}; this output's format is ${o.format}`, `remove ${key}, or set format: ${formats[0]}`, { key: true });
    }
  }
};

const outputsValid: Rule = (m, w, ctx) => {
  const names = new Set(m.services.map((s) => s.name));
  const all = () => m.services.map((s) => s.name).join(", ");
  const known = (list: readonly string[] | undefined, at: (string | number)[]) =>
    (list ?? []).forEach((n, j) => {
      if (!names.has(n)) ctx.error([...at, j], `names unknown service ${JSON.stringify(n)}; services are: ${all()}`, "use one of the service names");
    });
  (w.outputs ?? []).forEach((o, i) => {
    const at = ["outputs", i];
    keysFitFormat(o, at, ctx);
    known(o.services, [...at, "services"]);
    if (o.hosts) {
      if (o.services) ctx.error([...at, "services"], "and hosts both choose the services; hosts already lists each host's", "remove services, or remove hosts", { key: true });
      for (const [host, list] of Object.entries(o.hosts)) {
        known(list, [...at, "hosts", host]);
        if (list.length > 1) {
          for (const [k, v] of Object.entries(o.names ?? {})) {
            if (k !== "ca" && v !== undefined && !v.includes("{name}")) {
              ctx.error([...at, "names", k], `is ${JSON.stringify(v)} without {name}, so the ${list.length} services of host ${host} (${list.join(", ")}) would write the same file`, `put {name} in it, e.g. "{name}-${v}"`);
            }
          }
        }
      }
    }
    if (o.format === "pkcs12" && (o.passphraseFile === undefined) === (o.passphraseEnv === undefined)) {
      ctx.error(at, o.passphraseFile === undefined ? "a pkcs12 output needs a passphrase: passphraseFile or passphraseEnv" : "has both passphraseFile and passphraseEnv; give one", "passphraseFile: a file readable only by you (chmod 600), or passphraseEnv: a variable name; never the passphrase itself");
    }
    if (o.format === "kubernetes") {
      const services = m.services.filter((s) => o.services === undefined || o.services.includes(s.name));
      const rendered = services.flatMap((s) => (s.split ? [s.name, `${s.name}-client`] : [s.name]).map((name) => renderOutputTemplate(o.name ?? "{name}-tls", { name, cluster: m.cluster })));
      const bad = rendered.find((n) => !DNS_SUBDOMAIN.test(n));
      if (bad !== undefined) ctx.error([...at, "name"], `renders ${JSON.stringify(bad)}, which is not a Kubernetes object name (lowercase letters, digits, - and ., at most 253 characters)`, 'use a template such as "{name}-tls"');
      const ns = renderOutputTemplate(o.namespace ?? "default", { cluster: m.cluster });
      if (!DNS_LABEL.test(ns)) ctx.error([...at, "namespace"], `renders ${JSON.stringify(ns)}, which is not a Kubernetes namespace (lowercase letters, digits and -, at most 63 characters)`, "use a namespace such as default");
      const bundle = renderOutputTemplate(o.bundle ?? "{cluster}-ca", { cluster: m.cluster });
      if (!DNS_SUBDOMAIN.test(bundle)) ctx.error([...at, "bundle"], `renders ${JSON.stringify(bundle)}, which is not a Kubernetes object name`, 'use a template such as "{cluster}-ca"');
    }
    if (o.dir.slice(PKI_PLACEHOLDER.length).includes(PKI_PLACEHOLDER)) ctx.error([...at, "dir"], `may hold ${PKI_PLACEHOLDER} only at its start (a directory relative to the PKI directory)`, `write it as "${PKI_PLACEHOLDER}/../deploy", or use a path relative to the manifest`);
    if (o.certDir !== undefined && UNSAFE_ENV_PATH.test(o.certDir)) {
      ctx.error([...at, "certDir"], "contains a quote, a backslash or a control character, which an env file read by both sh and systemd cannot carry", "choose a directory without them");
    }
  });
};

/** OUTPUT_RULES run with the manifest's other rules. */
export const OUTPUT_RULES: readonly Rule[] = [outputsValid];
