/** `mtlskit check`: every certificate and every declared connection, judged before deployment. */
import { readOnline } from "../../check/online.ts";
import { parseArgs } from "node:util";
import * as path from "node:path";
import { EXIT, FailedError, UsageError } from "../../errors.ts";
import {
  aboutLabel,
  checkPki,
  CODES,
  nagiosStatus,
  prometheusText,
  reportJsonText,
  type CheckReport,
  type Code,
  type Finding,
} from "../../check/index.ts";
import { loadManifest, parseDuration, type Manifest } from "../../manifest/index.ts";
import { writeFileAtomic } from "../../state/fs.ts";
import { COMMON_FLAGS, flags, parseTimeFlag } from "../args.ts";
import { paint, type Io } from "../output.ts";
import { asPlugin, LEDGER_FLAG, LEDGER_FLAG_HELP, MANIFEST_FLAGS, renderWarnings } from "./shared.ts";

export const CHECK_HELP = `mtlskit check: prove every declared connection will handshake, and say exactly what to fix.

USAGE
  mtlskit check [-f FILE] [--pki DIR] [--json | --format human|json|prometheus | --nagios]

Reads every service's certificate, key and trust bundle (the PKI directory for managed services,
the paths in services.NAME.files for external ones, the ledger PKI/ca/ledger.db for a csr service
issued online by \`mtlskit serve\`: its newest unrevoked certificate) and reports findings, each with a stable
code (\`mtlskit check --codes\` lists them), a severity, what it concerns, and the fix:
  - each certificate: chain to its bundle, signature, key match, validity and renewal window,
    clock-skew margin, extendedKeyUsage for its usage, keyUsage for its key, SANs for every
    declared address (an IP as an IP SAN), CN also a SAN, exactly one identity URI matching the
    template, not a CA, key and signature strength, serial, key identifiers, not outliving its CA;
  - each CA in a bundle or chain: expired, expiring, really a CA; with ca.intermediate, the
    intermediate inside its renewal window (intermediate-due) and a cert.pem without it
    (chain-incomplete); path length constraints along every chain;
  - the CA key kept offline (\`mtlskit ca offline\`): reported as ca-key-offline at level info,
    which is no defect and changes no exit code;
  - the deployment: key modes 0600 and owners (files.owner), no CA key next to service files,
    every service trusting the same CA set;
  - each connection from -> to @ address, simulated from both ends as the TLS handshake does.

FLAGS
  -f, --file FILE      manifest (default mtlskit.yaml)
      --pki DIR        PKI directory of managed services (default ./pki)
${LEDGER_FLAG_HELP}
      --json           the report as JSON (same as --format json)
      --format F       human (default), json, or prometheus (textfile-collector format)
      --nagios         one status line (under 8 KB) with perfdata errors=N;;0 warnings=N;0 ...
                       (range thresholds); exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios, Sensu)
  -o, --output FILE    write the report to FILE atomically instead of stdout (for the textfile collector)
      --at TIME        judge validity at TIME (ISO 8601, e.g. 2027-01-01) instead of now
      --in DURATION    judge validity DURATION from now, e.g. 30d: what breaks if nobody acts
      --skew DURATION  clock-skew margin on notBefore: 90s, 5m (the default), 1h; 0 disables
      --service NAME   judge only these services and the connections between them (repeat, or a,b):
                       a per-host check where each host holds only its own files
      --ignore CODE    do not report these codes (repeat, or a,b), e.g. clock-skew for openssl-made files
      --failing        human output: list only failing connections
      --codes          list every finding code with its severity and meaning, then exit

EXAMPLES
  mtlskit check
  mtlskit check -f examples/serviceradar.yaml --pki ./pki --json | jq '.findings[] | .code'
  mtlskit check --format prometheus -o /var/lib/node_exporter/textfile/mtlskit.prom
  mtlskit check --nagios --in 30d          # a Sensu/Nagios check that goes red 30 days ahead
  mtlskit check --nagios --service agent,dusk --ignore key-usage-extra   # on the agent's host

EXIT CODES
  0  no findings at error level (warnings may be printed)
  1  findings at error level
  2  invalid input: bad flags or an invalid manifest
  3  could not run: an unexpected failure
  With --nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (invalid input or could not run).
  3 also when the PKI directory does not exist (run apply first) or -o cannot be written.
`;

const FORMATS = ["human", "json", "prometheus"] as const;

function parseWhen(at: string | undefined, inText: string | undefined): Date | undefined {
  if (at !== undefined && inText !== undefined)
    throw new UsageError("mtlskit check: flag --at is incompatible with --in; use one");
  if (at !== undefined) return parseTimeFlag("check", at);
  if (inText !== undefined) {
    const ms = parseDuration(inText);
    if (ms === undefined)
      throw new UsageError(
        `mtlskit check: --in must be a duration such as 30d, 12h, 2w; got ${JSON.stringify(inText)}`,
      );
    return new Date(Date.now() + ms);
  }
  return undefined;
}

function parseSkew(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (text === "0") return 0;
  const m = /^([1-9][0-9]{0,5})(s|m)$/.exec(text);
  if (m) return Number(m[1]) * (m[2] === "s" ? 1000 : 60_000);
  const ms = parseDuration(text);
  if (ms === undefined)
    throw new UsageError(
      `mtlskit check: --skew must be a duration such as 90s, 5m or 1h (or 0); got ${JSON.stringify(text)}`,
    );
  return ms;
}

const SEVERITY_COLOR = { error: "red", warning: "yellow", info: "dim" } as const;

function renderFinding(io: Io, f: Finding): void {
  io.out(
    `  ${paint(io, SEVERITY_COLOR[f.severity], f.severity.padEnd(7))} ${paint(io, "bold", f.code)}: ${f.message}\n          fix: ${f.fix}\n`,
  );
}

/** renderHuman prints findings grouped by what they concern, then connections, then a summary. */
function renderHuman(io: Io, r: CheckReport, head: string, failingOnly = false): void {
  io.out(`${head}\n`);
  const groups = new Map<string, Finding[]>();
  // Each connection's findings gathered in one pass: filtering all findings per connection took
  // minutes at 10,000 services whose certificates had all expired.
  const byConnection = new Map<number, Finding[]>();
  for (const f of r.findings) {
    if (f.about.kind === "connection") {
      const list = byConnection.get(f.about.index);
      if (list) list.push(f);
      else byConnection.set(f.about.index, [f]);
      continue;
    }
    const key = f.about.kind === "ca" ? aboutLabel(f.about) : f.about.service;
    const list = groups.get(key);
    if (list) list.push(f);
    else groups.set(key, [f]);
  }
  for (const [key, fs] of groups) {
    io.out(`\n${paint(io, "bold", key)}\n`);
    // Errors first: what breaks a handshake before what is merely worth knowing.
    for (const f of [...fs.filter((x) => x.severity === "error"), ...fs.filter((x) => x.severity !== "error")])
      renderFinding(io, f);
  }
  const shown = r.connections.filter((c) => !failingOnly || !c.ok);
  if (shown.length > 0) {
    io.out(`\n${paint(io, "bold", "connections")}\n`);
    for (const c of shown) {
      const fs = byConnection.get(c.index) ?? [];
      io.out(
        `  ${c.ok ? paint(io, "green", "ok  ") : paint(io, "red", "FAIL")}  ${c.from} -> ${c.to} @ ${c.address}\n`,
      );
      for (const f of fs) renderFinding(io, f);
    }
  }
  const failing = r.connections.filter((c) => !c.ok).length;
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;
  const verdict = r.errors === 0 ? paint(io, "green", "OK") : paint(io, "red", "FAIL");
  io.out(
    `\n${verdict}: ${plural(r.errors, "error")}, ${plural(r.warnings, "warning")} in ${plural(r.certificates.length, "certificate")} and ${plural(r.connections.length, "connection")}${r.connections.length ? ` (${failing} failing)` : ""}.\n`,
  );
}

const splitList = (v: readonly string[] | undefined) =>
  (v ?? [])
    .flatMap((x) => x.split(","))
    .map((x) => x.trim())
    .filter(Boolean);

/**
 * selectServices keeps the named services and the connections between them: a per-host check
 * (`--service agent,dusk` on the agent's host) judges the files that host has, and the connections
 * it can judge alone.
 */
function selectServices(m: Manifest, names: readonly string[]): Manifest {
  if (names.length === 0) return m;
  const unknown = names.filter((n) => !m.services.some((s) => s.name === n));
  if (unknown.length > 0)
    throw new UsageError(
      `mtlskit check: --service ${unknown.join(",")}: not a service of ${m.file}; services are: ${m.services.map((s) => s.name).join(", ")}`,
    );
  const keep = new Set(names);
  return {
    ...m,
    services: m.services.filter((s) => keep.has(s.name)),
    connections: m.connections.filter((c) => keep.has(c.from) && keep.has(c.to)),
  };
}

/** checkCommand runs `mtlskit check`. */
export async function checkCommand(args: string[], io: Io): Promise<number> {
  return asPlugin(args, io, "MTLSKIT", () => runCheck(args, io));
}

async function runCheck(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("check", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        ...MANIFEST_FLAGS,
        ...LEDGER_FLAG,
        format: { type: "string" },
        nagios: { type: "boolean" },
        output: { type: "string", short: "o" },
        at: { type: "string" },
        in: { type: "string" },
        skew: { type: "string" },
        codes: { type: "boolean" },
        service: { type: "string", multiple: true },
        ignore: { type: "string", multiple: true },
        failing: { type: "boolean" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(CHECK_HELP), EXIT.ok);
  if (values.codes) {
    for (const [code, info] of Object.entries(CODES))
      io.out(`${code.padEnd(22)} ${info.severity.padEnd(7)} ${info.scope.padEnd(11)} ${info.title}\n`);
    return EXIT.ok;
  }
  if (positionals.length > 0)
    throw new UsageError(
      `mtlskit check: unexpected argument ${JSON.stringify(positionals[0])}; name the manifest with -f FILE`,
    );
  if (values.format !== undefined && !(FORMATS as readonly string[]).includes(values.format))
    throw new UsageError(
      `mtlskit check: --format must be one of ${FORMATS.join(", ")}; got ${JSON.stringify(values.format)}`,
    );
  const chosen = [
    values.json ? "--json" : "",
    values.format !== undefined ? "--format" : "",
    values.nagios ? "--nagios" : "",
  ].filter(Boolean);
  if (chosen.length > 1)
    throw new UsageError(`mtlskit check: flag ${chosen[0]} is incompatible with ${chosen[1]}; use one`);
  const format = values.nagios ? "nagios" : values.json ? "json" : (values.format ?? "human");
  const now = parseWhen(values.at, values.in);
  const skewMs = parseSkew(values.skew);

  const ignore = splitList(values.ignore);
  const unknown = ignore.filter((c) => !(c in CODES));
  if (unknown.length > 0)
    throw new UsageError(
      `mtlskit check: --ignore ${unknown.join(",")}: no such finding code; \`mtlskit check --codes\` lists them`,
    );

  const loaded = loadManifest(values.file);
  if (format === "human") renderWarnings(io, loaded.warnings);
  const manifest = selectServices(loaded.manifest, splitList(values.service));
  // The online CA's ledger, when there is one: csr services issued online are judged by their newest certificate there.
  const online = await readOnline(manifest, values.pki, now, values.ledger);
  const report = checkPki(manifest, values.pki, {
    ...(now ? { now } : {}),
    ...(online ? { online } : {}),
    ...(skewMs === undefined ? {} : { skewMs }),
    ignore: ignore as Code[],
    applyCommand: `mtlskit apply -f ${values.file} --pki ${values.pki}`,
  });

  let text: string;
  let code: number = report.errors > 0 ? EXIT.findings : EXIT.ok;
  if (format === "json") {
    // Written piece by piece: the whole text of 10,000 services is 7.7 MB, at check's peak of memory.
    if (!values.output) {
      for (const piece of reportJsonText(report)) io.out(piece);
      return code;
    }
    text = [...reportJsonText(report)].join("");
  } else if (format === "prometheus") text = prometheusText(report);
  else if (format === "nagios") {
    const s = nagiosStatus(report);
    text = s.line + "\n";
    code = s.code;
  } else {
    const chunks: string[] = [];
    renderHuman(
      values.output ? { ...io, color: false, out: (t) => void chunks.push(t) } : io,
      report,
      `mtlskit check${manifest === loaded.manifest ? "" : ` (services ${manifest.services.map((x) => x.name).join(", ")})`}: ${values.file}, ${loaded.manifest.services.some((s) => !s.files) ? values.pki : "external files only"}${now ? `, at ${now.toISOString()}` : ""}`,
      values.failing ?? false,
    );
    const say = values.output ? (t: string) => void chunks.push(t) : io.out;
    const issuedOnline = manifest.services.filter((s) => s.csr && online?.services.has(s.name)).map((s) => s.name);
    const onHost = manifest.services.filter((s) => s.csr && !issuedOnline.includes(s.name)).map((s) => s.name);
    if (onHost.length > 0)
      say(
        `Keys on their own hosts by design (csr: true): ${onHost.join(", ")}; mtlskit holds no key for ${onHost.length === 1 ? "it" : "them"}, and check judged ${onHost.length === 1 ? "its certificate" : "their certificates"} without one.\n`,
      );
    if (issuedOnline.length > 0)
      say(
        `Issued online (csr: true, by \`mtlskit serve\`): ${issuedOnline.join(", ")}; ${issuedOnline.length === 1 ? "its agent holds" : "their agents hold"} the key and files on ${issuedOnline.length === 1 ? "its host" : "their hosts"}, and check judged the newest unrevoked certificate in ${online!.ledger}.\n`,
      );
    if (!values.output) return code;
    text = chunks.join("");
  }
  if (values.output) {
    try {
      writeFileAtomic(values.output, text, 0o644);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const dir = path.dirname(values.output);
      throw new FailedError(
        `mtlskit check: cannot write ${values.output}: ${code === "ENOENT" ? `the directory ${dir} does not exist` : code === "EACCES" ? `permission denied in ${dir}` : (e as Error).message}`,
        { cause: e },
      );
    }
    if (format !== "nagios")
      io.err(`mtlskit check: wrote ${values.output} (${report.errors} errors, ${report.warnings} warnings)\n`);
  }
  if (!values.output || format === "nagios") io.out(text);
  return code;
}
