/** `mtlskit config`: a ready-to-paste TLS config snippet for one service, generated from the manifest. */
import * as path from "node:path";
import { parseArgs } from "node:util";
import {
  COMPONENT_NAMES,
  COMPONENTS,
  componentOf,
  manifestFlatFiles,
  renderConfig,
  tlsPaths,
  type Where,
} from "../../config/index.ts";
import { EXIT, UsageError } from "../../errors.ts";
import { loadManifest, type Manifest, type Service } from "../../manifest/index.ts";
import { COMMON_FLAGS, flags } from "../args.ts";
import { paintErr, type Io } from "../output.ts";
import { renderWarnings } from "./shared.ts";

const width = Math.max(...COMPONENT_NAMES.map((n) => n.length));

/** CONFIG_HELP is the manual of `mtlskit config`. */
export const CONFIG_HELP = `mtlskit config: print a ready-to-paste TLS config snippet for one service, from the manifest.

USAGE
  mtlskit config COMPONENT [-f FILE] [--pki DIR | --certs-dir DIR] [--service NAME] [--pg-role CLIENT=ROLE]...

COMPONENTS
${COMPONENT_NAMES.map((n) => `  ${n.padEnd(width)}  ${COMPONENTS[n].summary}`).join("\n")}

The snippet names the service's own certificate, key and CA bundle, requires client certificates,
and admits the clients the manifest's connections name: NATS users (each client's identity URI,
or its subject DN when the manifest has no identity template) and PostgreSQL roles (each client's
CN mapped to a role, the client's service name unless --pg-role says otherwise). Paths are where
\`mtlskit apply\` writes (absolute, in --pki), or with --certs-dir the flat names a host directory
holds after \`mtlskit export --format flat\` (root.pem, NAME.pem, NAME-key.pem, or the names of
the flat output exporting the service). Nothing is written; copy the files to the host yourself.

FLAGS
  -f, --file FILE         manifest (default mtlskit.yaml)
      --service NAME      the service the snippet is for (default: the service named like the component)
      --pki DIR           PKI directory the paths point into (default ./pki)
      --certs-dir DIR     instead: the absolute directory on the host holding the flat files
      --pg-role C=ROLE    postgres: log client service C in as ROLE (repeatable; default: C's name)

EXAMPLES
  mtlskit config nats -f examples/serviceradar.yaml --certs-dir /etc/serviceradar/certs
  mtlskit config postgres -f examples/serviceradar.yaml --service cnpg --pg-role core=serviceradar
  mtlskit config nginx --service core
  mtlskit config etcd --service node-1 -f examples/netsy.yaml
  mtlskit config serviceradar --service gateway --certs-dir /etc/serviceradar/certs > security.json
  mtlskit config serviceradar --service datasvc    # also datasvc's "rbac" block: its clients as readers
  jq -s '.[0] * .[1]' /etc/serviceradar/gateway.json security.json    # merge into a component's config

EXIT CODES
  0  the snippet was printed
  2  invalid input: bad flags, an invalid manifest, an unknown component or service, or a service
     the component does not fit (a server snippet for a client-only service, a server no
     connection names, a split service for ServiceRadar)
  3  could not run: the manifest is unreadable, an unexpected failure
`;

/** parseRoles reads `--pg-role CLIENT=ROLE` flags. */
function parseRoles(values: readonly string[] | undefined): Record<string, string> {
  // No prototype: a client named constructor is a name like any other (issue 11).
  const roles: Record<string, string> = Object.create(null);
  for (const v of values ?? []) {
    const m = /^([^=]+)=(.+)$/.exec(v);
    if (!m)
      throw new UsageError(
        `mtlskit config: --pg-role must be CLIENT=ROLE, e.g. --pg-role core=serviceradar; got ${JSON.stringify(v)}`,
      );
    if (roles[m[1]!] !== undefined)
      throw new UsageError(`mtlskit config: --pg-role gives ${m[1]} two roles (${roles[m[1]!]} and ${m[2]}); give one`);
    roles[m[1]!] = m[2]!;
  }
  return roles;
}

/** pickService finds the service the snippet is for: --service, else the one named like the component. */
function pickService(m: Manifest, component: string, name: string | undefined): Service {
  const fits = componentOf(component).serverOnly ? m.services.filter((s) => s.usage !== "client") : m.services;
  const list = fits.map((s) => s.name).join(", ") || "none";
  if (name === undefined) {
    const same = m.services.find((s) => s.name === component);
    if (same) return same;
    throw new UsageError(
      `mtlskit config ${component}: which service? ${m.file} has no service named ${component}; give --service NAME (services that can run ${component}: ${list})`,
    );
  }
  const s = m.services.find((x) => x.name === name);
  if (!s)
    throw new UsageError(
      `mtlskit config ${component}: --service ${name}: ${m.file} has no service ${JSON.stringify(name)}; services that can run ${component}: ${list}`,
    );
  return s;
}

/** configCommand runs `mtlskit config`. */
export async function configCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("config", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        file: { type: "string", short: "f" },
        pki: { type: "string" },
        "certs-dir": { type: "string" },
        service: { type: "string" },
        "pg-role": { type: "string", multiple: true },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(CONFIG_HELP), EXIT.ok);
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0
        ? `mtlskit config: name a component: ${COMPONENT_NAMES.join(", ")}, e.g. \`mtlskit config nats --service nats\`. Run \`mtlskit config --help\`.`
        : `mtlskit config: one component at a time; got ${positionals.join(" ")}`,
    );
  }
  const component = positionals[0]!;
  componentOf(component);
  if (values.pki !== undefined && values["certs-dir"] !== undefined)
    throw new UsageError(
      "mtlskit config: flag --pki is incompatible with --certs-dir; --pki points into the PKI directory, --certs-dir into a host's flat directory: use one",
    );
  const certsDir = values["certs-dir"];
  if (certsDir !== undefined && !path.isAbsolute(certsDir)) {
    throw new UsageError(
      `mtlskit config: --certs-dir must be an absolute path, the directory on the host (e.g. /etc/serviceradar/certs); got ${JSON.stringify(certsDir)}, which each server would resolve against its own working directory`,
    );
  }
  if (values["pg-role"] !== undefined && component !== "postgres")
    throw new UsageError(`mtlskit config: --pg-role is for the postgres component; ${component} has no roles`);
  const pgRoles = parseRoles(values["pg-role"]);

  const file = values.file ?? "mtlskit.yaml";
  const loaded = loadManifest(file);
  renderWarnings(io, loaded.warnings);
  const m = loaded.manifest;
  const service = pickService(m, component, values.service);
  const where: Where =
    certsDir !== undefined
      ? { layout: "flat", dir: certsDir, files: manifestFlatFiles(m, service.name) }
      : { layout: "pki", dir: path.resolve(values.pki ?? "./pki") };
  const snippet = renderConfig(component, { manifest: m, service, paths: tlsPaths(service, where), pgRoles });
  io.out(snippet.text);
  for (const n of snippet.notes) io.err(`${paintErr(io, "yellow", "note:")} ${n}\n`);
  return EXIT.ok;
}
