/**
 * The manifest's `outputs:` resolved and checked: which keys each export format reads, the
 * services and hosts they name, and the names they will render. The exports themselves are
 * built by src/export/; every mistake here is reported at load time, before apply writes.
 */
import * as path from "node:path";
import { serviceNames, type FlatNameKey, type Output, type OutputFormat, type Service } from "./model.ts";
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

/**
 * FLAT_NAMES: the file names of the flat layout the runbooks deploy (ServiceRadar's
 * /etc/serviceradar/certs: root.pem, core.pem, core-key.pem), shared by `export --format flat`,
 * the env files that point into it and the config snippets. `{name}` is the service's name (the
 * host's, for the CA file of a per-host layout).
 */
export const FLAT_NAMES = {
  ca: "root.pem",
  cert: "{name}.pem",
  key: "{name}-key.pem",
  clientCert: "{name}-client.pem",
  clientKey: "{name}-client-key.pem",
} as const satisfies Record<FlatNameKey, string>;

/** FlatNames are the configurable file names of the flat layout. */
export type FlatNames = { [K in FlatNameKey]: string };

/** flatName renders one name template for a service. */
export function flatName(template: string, service: string): string {
  return template.replaceAll("{name}", service);
}

/** flatNamesOf merges an output's names over FLAT_NAMES. */
export const flatNamesOf = (out: Pick<Output, "names">): FlatNames => ({ ...FLAT_NAMES, ...out.names });

/** PLACEHOLDERS: what each templated output field may hold, and what it is filled with. */
export const PLACEHOLDERS = {
  names: { "{name}": "the service's name; in ca with hosts:, the host's" },
  name: { "{name}": "the service's name", "{cluster}": "the cluster" },
  namespace: { "{cluster}": "the cluster" },
  bundle: { "{cluster}": "the cluster" },
  certDir: { "{name}": "the service's name" },
} as const satisfies Record<string, Record<string, string>>;

/** unknownPlaceholder is the first `{...}` in `template` that `allowed` does not list. */
export const unknownPlaceholder = (template: string, allowed: Readonly<Record<string, string>>): string | undefined =>
  [...template.matchAll(/\{[^{}]*\}/g)].map((m) => m[0]).find((p) => !Object.hasOwn(allowed, p));

/** placeholderText lists the placeholders a field may hold, for messages: `{name} (the service's name)`. */
export const placeholderText = (allowed: Readonly<Record<string, string>>): string =>
  Object.entries(allowed)
    .map(([p, what]) => `${p} (${what})`)
    .join(", ");

/**
 * Indexes of an output's lists, built on first use and kept with the list: exportsService and
 * flatFilesIn are asked once per service, and a list may name every one of 10,000 services, so
 * searching it each time made validation and export quadratic (issue 12). An output's lists are
 * not changed once it is built; a list whose length changed is indexed again all the same.
 */
const listIndex = new WeakMap<readonly string[], { length: number; names: ReadonlySet<string> }>();
const hostIndex = new WeakMap<Readonly<Record<string, string[]>>, ReadonlyMap<string, string>>();

const namesIn = (list: readonly string[]): ReadonlySet<string> => {
  let known = listIndex.get(list);
  if (known?.length !== list.length) listIndex.set(list, (known = { length: list.length, names: new Set(list) }));
  return known.names;
};

/** firstHostOf maps each service a hosts layout names to the first host (in key order) that lists it. */
const firstHostOf = (hosts: Readonly<Record<string, string[]>>): ReadonlyMap<string, string> => {
  let index = hostIndex.get(hosts);
  if (!index) {
    const first = new Map<string, string>();
    for (const [host, list] of Object.entries(hosts)) for (const n of list) if (!first.has(n)) first.set(n, host);
    hostIndex.set(hosts, (index = first));
  }
  return index;
};

/** exportsService says whether output `o` exports the service named `name`. */
export const exportsService = (o: Pick<Output, "hosts" | "services">, name: string): boolean =>
  o.hosts ? firstHostOf(o.hosts).has(name) : o.services === undefined || namesIn(o.services).has(name);

/** FlatFiles are the file names (no directory) a flat layout gives one service. */
export type FlatFiles = FlatNames;

const renderFlat = (names: FlatNames, service: string, caOwner: string): FlatFiles => ({
  ca: flatName(names.ca, caOwner),
  cert: flatName(names.cert, service),
  key: flatName(names.key, service),
  clientCert: flatName(names.clientCert, service),
  clientKey: flatName(names.clientKey, service),
});

/** flatFilesIn renders a flat output's names for one service; the CA file of a hosts layout is named after the service's first host. */
export const flatFilesIn = (o: Pick<Output, "hosts" | "names">, service: string): FlatFiles =>
  renderFlat(flatNamesOf(o), service, (o.hosts && firstHostOf(o.hosts).get(service)) ?? service);

const sameFiles = (a: FlatFiles, b: FlatFiles) => (Object.keys(a) as FlatNameKey[]).every((k) => a[k] === b[k]);

/** flatOutputsOf lists the flat outputs exporting `service`, each with the files it writes for it (flatFilesIn). */
export const flatOutputsOf = (service: string, outputs: readonly Output[]): { o: Output; files: FlatFiles }[] =>
  outputs
    .filter((o) => o.format === "flat" && exportsService(o, service))
    .map((o) => ({ o, files: flatFilesIn(o, service) }));

/** distinctFlatFiles keeps the first of each set of equal file names, so one entry each way the service's files are named. */
export const distinctFlatFiles = <T extends { files: FlatFiles }>(flats: readonly T[]): T[] =>
  flats.filter((f, i) => flats.findIndex((g) => sameFiles(g.files, f.files)) === i);

/** defaultFlatFiles: FLAT_NAMES rendered for `service`, the files when no flat output exports it. */
export const defaultFlatFiles = (service: string): FlatFiles => renderFlat(FLAT_NAMES, service, service);

/**
 * envFlatFiles decides which file names an env output with certDir points at for `service`: the
 * names of the flat output(s) of the same manifest exporting it (so the env file names what the
 * deployment really holds), or the env output's own `names`, which must then match one of them;
 * with no flat output, its own names or FLAT_NAMES. Two flat outputs giving the service different
 * names, with no `names` on the env output to choose, is a conflict (a message), never a guess.
 */
export function envFlatFiles(
  env: Pick<Output, "names">,
  service: string,
  outputs: readonly Output[],
): FlatFiles | { conflict: string; fix: string } {
  const flats = flatOutputsOf(service, outputs);
  const own = Object.keys(env.names).length > 0 ? renderFlat(flatNamesOf(env), service, service) : undefined;
  const show = (f: FlatFiles) => `${f.ca}, ${f.cert}, ${f.key}`;
  const where = (o: Output) => o.at ?? o.dir;
  if (own) {
    if (flats.length === 0 || flats.some((f) => sameFiles(f.files, own))) return own;
    const first = flats[0]!;
    return {
      conflict: `give service ${service} the files ${show(own)}, but flat output ${where(first.o)} writes ${show(first.files)}; the env file would point at files the deployment lacks`,
      fix: "remove names (an env output follows its flat output's names), or make them the flat output's",
    };
  }
  const distinct = distinctFlatFiles(flats);
  if (distinct.length <= 1) return distinct[0]?.files ?? defaultFlatFiles(service);
  return {
    conflict: `points into flat files, but service ${service} gets different file names from flat outputs ${distinct.map((f) => `${where(f.o)} (${show(f.files)})`).join(" and ")}; the env file cannot tell which its host has`,
    fix: "add names: to this env output, equal to the names of the flat output its hosts receive",
  };
}

/** K8S_DEFAULTS: the templates a kubernetes output may override. */
export const K8S_DEFAULTS = { name: "{name}-tls", namespace: "default", bundle: "{cluster}-ca" } as const;

/**
 * k8sNames renders a kubernetes output's names: the namespace, each Secret, the bundle ConfigMap,
 * and the file each object is written to: OBJECT.yaml, or NAMESPACE.OBJECT.yaml when the output
 * shares its dir with another kubernetes output (a namespace has no dot, so names stay distinct).
 */
export function k8sNames(o: Pick<Output, "name" | "namespace" | "bundle" | "namespaceInFileNames">, cluster: string) {
  const namespace = renderOutputTemplate(o.namespace ?? K8S_DEFAULTS.namespace, { cluster });
  return {
    namespace,
    secret: (service: string) => renderOutputTemplate(o.name ?? K8S_DEFAULTS.name, { name: service, cluster }),
    bundle: renderOutputTemplate(o.bundle ?? K8S_DEFAULTS.bundle, { cluster }),
    file: (object: string) => `${o.namespaceInFileNames ? `${namespace}.` : ""}${object}.yaml`,
  };
}

/** pairNames are a service's certificate and key file names in a flat layout, and its client pair's when split. */
export const pairNames = (
  names: FlatNames,
  service: string,
  split: boolean,
): { name: string; secret: boolean; client: boolean }[] => [
  { name: flatName(names.cert, service), secret: false, client: false },
  { name: flatName(names.key, service), secret: true, client: false },
  ...(split
    ? [
        { name: flatName(names.clientCert, service), secret: false, client: true },
        { name: flatName(names.clientKey, service), secret: true, client: true },
      ]
    : []),
];

/** flatGroups are a flat output's directories: one per host (hosts:), else one per service. */
export const flatGroups = (o: Pick<Output, "hosts">, services: readonly string[]): [string, string[]][] =>
  o.hosts ? Object.entries(o.hosts) : services.map((n) => [n, [n]]);

const isSplit = (s: Pick<Service, "slots">) => s.slots.length > 1;

/** outputPaths are the files (relative to its dir) an output writes, from the manifest alone: what validation compares across outputs. */
export function outputPaths(o: Output, services: readonly Service[], cluster: string): string[] {
  const chosen = services.filter((s) => exportsService(o, s.name));
  const split = new Map(chosen.map((s) => [s.name, isSplit(s)]));
  switch (o.format) {
    case "flat": {
      const names = flatNamesOf(o);
      return flatGroups(
        o,
        chosen.map((s) => s.name),
      ).flatMap(([dir, list]) => [
        `${dir}/${flatName(names.ca, dir)}`,
        ...[...new Set(list)].flatMap((n) => pairNames(names, n, split.get(n) ?? false).map((f) => `${dir}/${f.name}`)),
      ]);
    }
    case "kubernetes": {
      const k = k8sNames(o, cluster);
      return [
        ...chosen.flatMap((s) =>
          (isSplit(s) ? [s.name, `${s.name}-client`] : [s.name]).map((n) => k.file(k.secret(n))),
        ),
        k.file(k.bundle),
      ];
    }
    case "env":
      return chosen.map((s) => `${s.name}.env`);
    case "pkcs12":
      return chosen.flatMap((s) => (isSplit(s) ? [`${s.name}.p12`, `${s.name}-client.p12`] : [`${s.name}.p12`]));
  }
}

/** sameDir compares two output dirs; `{pki}/...` ones as paths relative to the same unknown directory. */
const sameDir = (a: string, b: string) => dirKey(a) === dirKey(b);
const dirKey = (d: string) =>
  d.startsWith(PKI_PLACEHOLDER) ? `${PKI_PLACEHOLDER}:${path.posix.join("pki", d.slice(PKI_PLACEHOLDER.length))}` : d;

/** OutputClash: two outputs, or one output twice (first === second), that would write the same file. */
export interface OutputClash {
  file: string;
  first: Output;
  second: Output;
}

/**
 * outputClashes finds files two outputs would both write: each apply would rewrite the file with
 * the other output's content and never settle. Dirs are compared as given (`{pki}/...` ones among
 * themselves at load time; export compares them again once the PKI directory is known).
 */
export function outputClashes(
  outputs: readonly Output[],
  services: readonly Service[],
  cluster: string,
): OutputClash[] {
  const owner = new Map<string, Output>();
  const clashes: OutputClash[] = [];
  for (const o of outputs) {
    for (const file of outputPaths(o, services, cluster).map((p) => path.join(dirKey(o.dir), p))) {
      const first = owner.get(file);
      if (first === undefined) owner.set(file, o);
      else clashes.push({ file, first, second: o });
    }
  }
  return clashes;
}

/** PKI_PLACEHOLDER starts an output dir relative to the PKI directory (`{pki}/../deploy`), filled when apply or export runs. */
export const PKI_PLACEHOLDER = "{pki}";

/** normalizeOutputs resolves `outputs:`; dir and passphraseFile are anchored at `manifestDir`, certDir is kept as written (a path on the target host). */
export function normalizeOutputs(w: WrittenManifest, manifestDir: string): Output[] {
  const all = w.outputs ?? [];
  // `{pki}/...` stays as written: the PKI directory is known only when apply or export runs.
  const dirs = all.map((o) => (o.dir.startsWith(PKI_PLACEHOLDER) ? o.dir : path.resolve(manifestDir, o.dir)));
  return all.map((o, i) => ({
    format: o.format,
    dir: dirs[i]!,
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
    // Two kubernetes outputs in one dir (two namespaces) name their files per namespace, or both would write NAME.yaml.
    namespaceInFileNames:
      o.format === "kubernetes" &&
      all.some((x, j) => j !== i && x.format === "kubernetes" && sameDir(dirs[j]!, dirs[i]!)),
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
      ctx.error(
        [...at, key],
        `is read only by format ${formats.join(" and ")}; this output's format is ${o.format}`,
        `remove ${key}, or set format: ${formats[0]}`,
        { key: true },
      );
    }
  }
};

const outputsValid: Rule = (m, w, ctx) => {
  const names = new Set(m.services.map((s) => s.name));
  let allNames: string | undefined;
  const all = () => (allNames ??= serviceNames(m));
  const onHost = new Set(m.services.filter((s) => s.csr).map((s) => s.name));
  const known = (list: readonly string[] | undefined, at: (string | number)[]) =>
    (list ?? []).forEach((n, j) => {
      if (!names.has(n))
        ctx.error(
          [...at, j],
          `names unknown service ${JSON.stringify(n)}; services are: ${all()}`,
          "use one of the service names",
        );
      else if (onHost.has(n))
        ctx.error(
          [...at, j],
          `names ${n}, whose key is on its own host (csr: true): an output ships key pairs, and mtlskit holds none for ${n}`,
          `remove ${n}; its host installs the certificate \`mtlskit sign\` writes`,
        );
    });
  (w.outputs ?? []).forEach((o, i) => {
    const at = ["outputs", i];
    keysFitFormat(o, at, ctx);
    known(o.services, [...at, "services"]);
    if (o.hosts) {
      if (o.services)
        ctx.error(
          [...at, "services"],
          "and hosts both choose the services; hosts already lists each host's",
          "remove services, or remove hosts",
          { key: true },
        );
      for (const [host, list] of Object.entries(o.hosts)) {
        known(list, [...at, "hosts", host]);
        if (list.length > 1) {
          for (const [k, v] of Object.entries(o.names ?? {})) {
            if (k !== "ca" && v !== undefined && !v.includes("{name}")) {
              ctx.error(
                [...at, "names", k],
                `is ${JSON.stringify(v)} without {name}, so the ${list.length} services of host ${host} (${list.join(", ")}) would write the same file`,
                `put {name} in it, e.g. "{name}-${v}"`,
              );
            }
          }
        }
      }
    }
    if (o.format === "pkcs12" && (o.passphraseFile === undefined) === (o.passphraseEnv === undefined)) {
      ctx.error(
        at,
        o.passphraseFile === undefined
          ? "a pkcs12 output needs a passphrase: passphraseFile or passphraseEnv"
          : "has both passphraseFile and passphraseEnv; give one",
        "passphraseFile: a file readable only by you (chmod 600), or passphraseEnv: a variable name; never the passphrase itself",
      );
    }
    if (o.format === "kubernetes") {
      const services = m.services.filter((s) => o.services === undefined || namesIn(o.services).has(s.name));
      const rendered = services.flatMap((s) =>
        (s.split ? [s.name, `${s.name}-client`] : [s.name]).map((name) =>
          renderOutputTemplate(o.name ?? K8S_DEFAULTS.name, { name, cluster: m.cluster }),
        ),
      );
      const bad = rendered.find((n) => !DNS_SUBDOMAIN.test(n));
      const placeholderOk = (field: "name" | "namespace" | "bundle") =>
        unknownPlaceholder(o[field] ?? "", PLACEHOLDERS[field]) === undefined;
      if (bad !== undefined && placeholderOk("name"))
        ctx.error(
          [...at, "name"],
          `renders ${JSON.stringify(bad)}, which is not a Kubernetes object name (lowercase letters, digits, - and ., at most 253 characters)`,
          'use a template such as "{name}-tls"',
        );
      const ns = renderOutputTemplate(o.namespace ?? K8S_DEFAULTS.namespace, { cluster: m.cluster });
      if (!DNS_LABEL.test(ns) && placeholderOk("namespace"))
        ctx.error(
          [...at, "namespace"],
          `renders ${JSON.stringify(ns)}, which is not a Kubernetes namespace (lowercase letters, digits and -, at most 63 characters)`,
          "use a namespace such as default",
        );
      const bundle = renderOutputTemplate(o.bundle ?? K8S_DEFAULTS.bundle, { cluster: m.cluster });
      if (!DNS_SUBDOMAIN.test(bundle) && placeholderOk("bundle"))
        ctx.error(
          [...at, "bundle"],
          `renders ${JSON.stringify(bundle)}, which is not a Kubernetes object name`,
          'use a template such as "{cluster}-ca"',
        );
    }
    for (const [field, template, where] of templatesOf(o)) {
      const allowed = PLACEHOLDERS[field];
      const bad = unknownPlaceholder(template, allowed);
      if (bad !== undefined)
        ctx.error(
          [...at, ...where],
          `has the unknown placeholder ${bad}, which would stay in the ${field === "certDir" ? "path" : "name"} literally; ${where.join(".")} may hold only ${placeholderText(allowed)}`,
          `write it with ${Object.keys(allowed).join(" or ")}, or without braces`,
        );
    }
    if (o.format === "env" && o.certDir === undefined && o.names !== undefined) {
      ctx.error(
        [...at, "names"],
        "names the files in certDir, but this env output has no certDir: its variables point at the PKI directory's own files",
        "add certDir (the directory on the host that holds the flat files), or remove names",
        { key: true },
      );
    }
    if (o.dir.slice(PKI_PLACEHOLDER.length).includes(PKI_PLACEHOLDER))
      ctx.error(
        [...at, "dir"],
        `may hold ${PKI_PLACEHOLDER} only at its start (a directory relative to the PKI directory)`,
        `write it as "${PKI_PLACEHOLDER}/../deploy", or use a path relative to the manifest`,
      );
    if (o.certDir !== undefined && UNSAFE_ENV_PATH.test(o.certDir)) {
      ctx.error(
        [...at, "certDir"],
        "contains a quote, a backslash or a control character, which an env file read by both sh and systemd cannot carry",
        "choose a directory without them",
      );
    }
  });
};

/** templatesOf lists an output's templated fields: [PLACEHOLDERS key, template, field path]. */
function templatesOf(o: WrittenOutput): [keyof typeof PLACEHOLDERS, string, string[]][] {
  const out: [keyof typeof PLACEHOLDERS, string, string[]][] = Object.entries(o.names ?? {}).flatMap(([k, t]) =>
    t === undefined ? [] : [["names", t, ["names", k]] as [keyof typeof PLACEHOLDERS, string, string[]]],
  );
  for (const f of ["name", "namespace", "bundle", "certDir"] as const) if (o[f] !== undefined) out.push([f, o[f], [f]]);
  return out;
}

const indexOf = (o: Output) => Number(o.at!.split(".")[1]);

/** envFollowsFlat: an env output with certDir names the files its flat output really writes (envFlatFiles), or says why it cannot. */
const envFollowsFlat: Rule = (m, _w, ctx) => {
  const outputs = m.outputs ?? [];
  for (const o of outputs) {
    if (o.format !== "env" || o.certDir === undefined) continue;
    for (const s of m.services.filter((x) => exportsService(o, x.name))) {
      const r = envFlatFiles(o, s.name, outputs);
      if (!("conflict" in r)) continue;
      ctx.error(["outputs", indexOf(o), Object.keys(o.names).length > 0 ? "names" : "certDir"], r.conflict, r.fix);
      break;
    }
  }
};

/** outputsApart: no two outputs write the same file (outputClashes). */
const outputsApart: Rule = (m, _w, ctx) => {
  const reported = new Set<string>();
  for (const c of outputClashes(m.outputs ?? [], m.services, m.cluster)) {
    const pair = `${c.first.at} ${c.second.at}`;
    if (reported.has(pair)) continue; // before the search below: two outputs over 10,000 services clash 10,000 times
    reported.add(pair);
    // An output already refused (e.g. names without {name} on a host of several services) is not reported twice.
    if (ctx.problems.some((p) => p.path === c.second.at || p.path.startsWith(`${c.second.at}.`))) continue;
    const k8s = c.first.format === "kubernetes" && c.second.format === "kubernetes";
    ctx.error(
      ["outputs", indexOf(c.second), "dir"],
      c.first === c.second
        ? `would write two different files as ${c.file}`
        : `would write ${c.file}, which ${c.first.at} (${c.first.format}) also writes; each run would overwrite one with the other and never settle`,
      c.first === c.second
        ? "give each file its own name (put {name} in names, or rename the service)"
        : k8s
          ? "give the two outputs different namespaces or dirs, or merge them into one output"
          : "give each output its own dir (or different names)",
    );
  }
};

/** OUTPUT_RULES run with the manifest's other rules. */
export const OUTPUT_RULES: readonly Rule[] = [outputsValid, envFollowsFlat, outputsApart];
