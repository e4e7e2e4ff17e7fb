/** `mtlskit export`: copy the PKI's material into the shape a deployment consumes. */
import { parseArgs } from "node:util";
import * as path from "node:path";
import { EXIT, UsageError } from "../../errors.ts";
import { describeOutput, exportOutputs, type ExportResult } from "../../export/index.ts";
import { loadManifest, OUTPUT_FORMATS, type Output, type OutputFormat } from "../../manifest/index.ts";
import {
  DNS_LABEL,
  DNS_SUBDOMAIN,
  FORMAT_KEYS,
  PLACEHOLDERS,
  placeholderText,
  unknownPlaceholder,
} from "../../manifest/outputs.ts";
import { ENV_NAME_RULE, FILE_NAME_RULE, OWNER_RULE } from "../../manifest/schema.ts";
import { COMMON_FLAGS, flags } from "../args.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import { paint, paintErr, progressLine, type Io } from "../output.ts";
import { MANIFEST_FLAGS, renderWarnings, splitNames } from "./shared.ts";

export const EXPORT_HELP = `mtlskit export: copy certificates, keys and the trust bundle into the shape a deployment reads.

USAGE
  mtlskit export --format flat|kubernetes|env|pkcs12 --out DIR [-f FILE] [--pki DIR] [--service NAME...]
  mtlskit export [-f FILE] [--pki DIR]          (the manifest's outputs:, as apply writes them)

Reads the PKI directory (never the CA key) and writes, atomically and with exact modes:
  flat        DIR/NAME/ per service: root.pem, NAME.pem, NAME-key.pem (0600), and for a split
              service NAME-client.pem, NAME-client-key.pem; with --host HOST=a,b: DIR/HOST/
              holding one root.pem and each of its services' files (a runbook's role-based table)
  kubernetes  NAME-tls.yaml per service: a kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt;
              labels app.kubernetes.io/managed-by=mtlskit, mtlskit.dev/service=NAME; annotations
              mtlskit.dev/not-after and mtlskit.dev/spec-fingerprint, the certificate's SHA-256),
              one file per object, plus CLUSTER-ca.yaml, a ConfigMap with the bundle as ca.crt
              (a literal | block of PEM). Apply them with \`kubectl apply -f DIR\`. Two manifest
              outputs sharing a dir (one per namespace) write NAMESPACE.OBJECT.yaml instead.
  env         NAME.env per service: PREFIX + CA_CERT, SERVER_CERT, SERVER_KEY (serving usages),
              CLIENT_CERT, CLIENT_KEY (dialing usages) set to file paths, single-quoted for both
              \`set -a; . NAME.env\` and systemd's EnvironmentFile=; with --cert-dir, the file
              names of the manifest's flat output for each service (its names:), else the defaults
  pkcs12      NAME.p12 per service (0600): key, certificate and CA, PBES2 (PBKDF2-HMAC-SHA256,
              AES-256-CBC) with a SHA-256 MAC; the passphrase from a file or a variable, never
              from the command line
Unchanged material gives byte-identical files, and files that already match are not rewritten
(a .p12 is compared without its slow MAC key derivation). Encoding 50 or more .p12 files draws
progress on stderr when it is a terminal.
Nothing is removed: files in DIR that mtlskit did not write stay. Two outputs that would write
the same file are refused before anything is written, naming both. Owner and group are applied
only when running as root.

In the manifest, \`outputs:\` lists exports that \`mtlskit apply\` writes after issuing, so a renewal
refreshes the deployed copies; \`layoutVersion\` re-issues everything when it changes.

FLAGS
  -f, --file FILE           manifest (default mtlskit.yaml)
      --pki DIR             PKI directory (default ./pki)
      --format F            flat, kubernetes, env or pkcs12
      --out DIR             where to write; must not be inside the PKI directory
      --service NAME        export only these services (repeat, or a,b)
      --owner USER          owner of the files written (as root only)
      --group GROUP         group of the files written (as root only)
      --host HOST=a,b       flat: a directory per host with these services (repeat)
      --name T              kubernetes: Secret name template (default {name}-tls)
      --namespace NS        kubernetes: namespace (default: the namespace "default")
      --bundle T            kubernetes: trust bundle ConfigMap name (default {cluster}-ca)
      --prefix P            env: variable prefix (default TLS_)
      --node-id VAR         env: also set VAR to the service's name (Netsy: NETSY_NODE_ID)
      --cert-dir DIR        env: point into DIR ({name} allowed) with the flat output's file names, not the PKI's files
      --passphrase-file F   pkcs12: read the passphrase from the first line of F
      --passphrase-env VAR  pkcs12: read the passphrase from the environment variable VAR
      --json                print what was written as JSON

EXAMPLES
  mtlskit export --format flat --out deploy --host cloud=core,datasvc,nats --host edge=agent --owner serviceradar --group serviceradar
  mtlskit export --format kubernetes --out k8s --namespace serviceradar && kubectl apply -f k8s
  mtlskit export --format env --out env --prefix NETSY_TLS_ --node-id NETSY_NODE_ID --cert-dir /etc/netsy/certs
  P12_PASS=$(cat pass.txt) mtlskit export --format pkcs12 --out p12 --service core --passphrase-env P12_PASS
  mtlskit export -f examples/serviceradar.yaml --pki /etc/serviceradar/pki     # the manifest's outputs

${EXIT_CODES_TEXT.replace("a damaged PKI", "a damaged PKI, a PKI not issued yet (run mtlskit apply)")}
`;

/** FLAG_KEYS maps format-specific flags to the output fields FORMAT_KEYS governs. */
const FLAG_KEYS = {
  host: "hosts",
  name: "name",
  namespace: "namespace",
  bundle: "bundle",
  prefix: "prefix",
  "node-id": "nodeId",
  "cert-dir": "certDir",
  "passphrase-file": "passphraseFile",
  "passphrase-env": "passphraseEnv",
} as const;

/** refuseSecretFlags stops a passphrase given on the command line, where ps and shell history see it. */
function refuseSecretFlags(args: readonly string[]): void {
  const bad = args.find((a) => /^--?(passphrase|password|pass|passin|passout)(=|$)/.test(a));
  if (bad) {
    throw new UsageError(
      `mtlskit export: ${bad.split("=")[0]} is refused: a passphrase on the command line is visible to every user in ps and stays in shell history; use --passphrase-file FILE (chmod 600) or --passphrase-env NAME`,
    );
  }
}

function hostsOf(values: readonly string[] | undefined): Record<string, string[]> | undefined {
  if (!values || values.length === 0) return undefined;
  // No prototype: a host named constructor or toString is a name like any other (issue 11).
  const hosts: Record<string, string[]> = Object.create(null);
  for (const v of values) {
    const m = /^([^=]+)=(.*)$/.exec(v);
    if (!m || !FILE_NAME_RULE.test(m[1]!))
      throw new UsageError(
        `mtlskit export: --host must be HOST=service,service with HOST a directory name; got ${JSON.stringify(v)}`,
      );
    hosts[m[1]!] = [...(hosts[m[1]!] ?? []), ...splitNames([m[2]!], [])];
  }
  return hosts;
}

/** outputOfFlags turns the flags into an Output, refusing what the manifest's rules would refuse. */
function outputOfFlags(
  values: Record<string, string | string[] | boolean | undefined>,
  services: string[],
  cluster: string,
  all: string[],
): Output {
  const format = values.format as string;
  if (!(OUTPUT_FORMATS as readonly string[]).includes(format))
    throw new UsageError(
      `mtlskit export: --format must be one of ${OUTPUT_FORMATS.join(", ")}; got ${JSON.stringify(format)}`,
    );
  const f = format as OutputFormat;
  for (const [flag, key] of Object.entries(FLAG_KEYS)) {
    if (values[flag] !== undefined && !(FORMAT_KEYS[key] ?? []).includes(f))
      throw new UsageError(
        `mtlskit export: flag --${flag} is read only by --format ${FORMAT_KEYS[key]!.join(" and ")}; this export is ${f}`,
      );
  }
  if (values.out === undefined)
    throw new UsageError(`mtlskit export: --format ${f} needs --out DIR, the directory to write into`);
  const str = (k: string) => values[k] as string | undefined;
  const hosts = hostsOf(values.host as string[] | undefined);
  if (hosts && services.length > 0)
    throw new UsageError(
      "mtlskit export: flag --service is incompatible with --host; --host already lists each host's services",
    );
  for (const n of [...services, ...Object.values(hosts ?? {}).flat()]) {
    if (!all.includes(n))
      throw new UsageError(`mtlskit export: unknown service ${JSON.stringify(n)}; services are: ${all.join(", ")}`);
  }
  for (const k of ["owner", "group"]) {
    const v = str(k);
    if (v !== undefined && !OWNER_RULE.test(v))
      throw new UsageError(`mtlskit export: --${k} must be a name or a numeric id; got ${JSON.stringify(v)}`);
  }
  for (const k of ["node-id", "passphrase-env"]) {
    const v = str(k);
    if (v !== undefined && !ENV_NAME_RULE.test(v))
      throw new UsageError(
        `mtlskit export: --${k} must be a variable name (letters, digits and _); got ${JSON.stringify(v)}`,
      );
  }
  const prefix = str("prefix");
  if (prefix !== undefined && prefix !== "" && !ENV_NAME_RULE.test(prefix))
    throw new UsageError(
      `mtlskit export: --prefix must be the start of a variable name (letters, digits and _); got ${JSON.stringify(prefix)}`,
    );
  if (f === "pkcs12" && (str("passphrase-file") === undefined) === (str("passphrase-env") === undefined)) {
    throw new UsageError(
      "mtlskit export: --format pkcs12 needs exactly one of --passphrase-file FILE and --passphrase-env NAME (never the passphrase itself)",
    );
  }
  for (const [flag, field] of [
    ["name", "name"],
    ["namespace", "namespace"],
    ["bundle", "bundle"],
    ["cert-dir", "certDir"],
  ] as const) {
    const bad = str(flag) === undefined ? undefined : unknownPlaceholder(str(flag)!, PLACEHOLDERS[field]);
    if (bad !== undefined)
      throw new UsageError(
        `mtlskit export: --${flag} has the unknown placeholder ${bad}; it may hold only ${placeholderText(PLACEHOLDERS[field])}`,
      );
  }
  const render = (t: string, name: string) => t.replaceAll("{cluster}", cluster).replaceAll("{name}", name);
  if (str("name") !== undefined) {
    const bad = all.map((n) => render(str("name")!, n)).find((n) => !DNS_SUBDOMAIN.test(n));
    if (bad !== undefined)
      throw new UsageError(
        `mtlskit export: --name renders ${JSON.stringify(bad)}, which is not a Kubernetes object name; use a template such as "{name}-tls"`,
      );
  }
  if (str("namespace") !== undefined && !DNS_LABEL.test(render(str("namespace")!, "")))
    throw new UsageError(
      `mtlskit export: --namespace ${JSON.stringify(str("namespace"))} is not a Kubernetes namespace (lowercase letters, digits and -)`,
    );
  if (str("bundle") !== undefined && !DNS_SUBDOMAIN.test(render(str("bundle")!, "")))
    throw new UsageError(`mtlskit export: --bundle ${JSON.stringify(str("bundle"))} is not a Kubernetes object name`);
  return {
    format: f,
    dir: path.resolve(str("out")!),
    at: undefined,
    services: services.length > 0 ? services : undefined,
    hosts,
    names: {},
    owner: str("owner"),
    group: str("group"),
    name: str("name"),
    namespace: str("namespace"),
    bundle: str("bundle"),
    prefix,
    nodeId: str("node-id"),
    certDir: str("cert-dir"),
    passphraseFile: str("passphrase-file") === undefined ? undefined : path.resolve(str("passphrase-file")!),
    passphraseEnv: str("passphrase-env"),
  };
}

/** PROGRESS_MIN: outputs with fewer files than this (a second or less of pkcs12) draw no progress. */
const PROGRESS_MIN = 50;

/** NEXT_STEP: what to do with each format's files. */
const NEXT_STEP: Record<OutputFormat, (dir: string) => string> = {
  flat: (dir) =>
    `Copy each directory to its host as is, e.g. \`rsync -a ${dir}/HOST/ HOST:/etc/app/certs/\` (-a keeps modes; owners too when run as root).`,
  kubernetes: (dir) => `Apply with \`kubectl apply -f ${dir}\`.`,
  env: (dir) => `Read with \`set -a; . ${dir}/NAME.env\` or EnvironmentFile=${dir}/NAME.env in a systemd unit.`,
  pkcs12: (dir) =>
    `Check with \`keytool -list -storetype PKCS12 -keystore ${dir}/NAME.p12\` or \`openssl pkcs12 -in ${dir}/NAME.p12 -info -nokeys\`.`,
};

/** shown is a directory as the user would type it: relative below the working directory, else absolute. */
const shown = (dir: string) => {
  const rel = path.relative(process.cwd(), dir);
  return rel === "" ? "." : rel.startsWith("..") || path.isAbsolute(rel) ? dir : rel;
};

/** renderExports prints one line per output: where, how many files written and unchanged, and a note when owners were not applied. */
export function renderExports(io: Io, results: readonly ExportResult[], opts: { nextStep: boolean }): void {
  for (const r of results) {
    const w = r.written.length;
    io.out(
      `${paint(io, "bold", `Exported ${r.output.format}`)} to ${r.dir}: ${w} file${w === 1 ? "" : "s"} written, ${r.unchanged.length} unchanged.${opts.nextStep ? ` ${NEXT_STEP[r.output.format](shown(r.dir))}` : ""}\n`,
    );
    if (r.ownerSkipped)
      io.err(
        `${paintErr(io, "yellow", "note:")} ${describeOutput(r.output)}: owner/group not applied: ${r.ownerSkipped}.\n`,
      );
  }
}

/** exportJson is the machine form of export results. */
export const exportJson = (results: readonly ExportResult[]) =>
  results.map((r) => ({
    format: r.output.format,
    dir: r.dir,
    at: r.output.at ?? null,
    written: r.written,
    unchanged: r.unchanged,
    ownerSkipped: r.ownerSkipped,
  }));

/** exportCommand runs `mtlskit export`. */
export async function exportCommand(args: string[], io: Io): Promise<number> {
  refuseSecretFlags(args);
  const { values, positionals } = flags("export", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        ...MANIFEST_FLAGS,
        format: { type: "string" },
        out: { type: "string" },
        service: { type: "string", multiple: true },
        owner: { type: "string" },
        group: { type: "string" },
        host: { type: "string", multiple: true },
        name: { type: "string" },
        namespace: { type: "string" },
        bundle: { type: "string" },
        prefix: { type: "string" },
        "node-id": { type: "string" },
        "cert-dir": { type: "string" },
        "passphrase-file": { type: "string" },
        "passphrase-env": { type: "string" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(EXPORT_HELP), EXIT.ok);
  if (positionals.length > 0)
    throw new UsageError(
      `mtlskit export: unexpected argument ${JSON.stringify(positionals[0])}; did you mean --service ${positionals[0]}?`,
    );
  const services = splitNames(values.service, []);
  if (values.format === undefined) {
    const stray = ["out", "service", "owner", "group", ...Object.keys(FLAG_KEYS)].find(
      (k) => (values as Record<string, unknown>)[k] !== undefined,
    );
    if (stray)
      throw new UsageError(
        `mtlskit export: --${stray} needs --format; without --format, export writes the manifest's outputs as declared`,
      );
  }
  const loaded = loadManifest(values.file);
  if (!values.json) renderWarnings(io, loaded.warnings);
  const m = loaded.manifest;
  const outputs =
    values.format === undefined
      ? (m.outputs ?? [])
      : [
          outputOfFlags(
            values,
            services,
            m.cluster,
            m.services.map((s) => s.name),
          ),
        ];
  if (outputs.length === 0)
    throw new UsageError(
      `mtlskit export: ${values.file} declares no outputs; give --format and --out, or add an outputs: list to the manifest`,
    );
  const draw = progressLine(io, PROGRESS_MIN);
  const results = exportOutputs(
    loaded,
    values.pki,
    outputs,
    values.json ? {} : { onProgress: (o, done, total) => draw(`${o.format} ${shown(o.dir)}:`, done, total) },
  );
  if (values.json) io.out(`${JSON.stringify(exportJson(results), null, 2)}\n`);
  else renderExports(io, results, { nextStep: values.format !== undefined });
  return EXIT.ok;
}
