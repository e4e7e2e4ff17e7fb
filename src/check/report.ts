/**
 * Machine forms of a CheckReport: JSON, a Prometheus textfile-collector file, and a one-line
 * Nagios/Sensu plugin status. Pure: report in, text (and a plugin exit code) out.
 */
import type { CaReport, CertificateReport, CheckReport, ConnectionReport } from "./check.ts";
import { CODES } from "./codes.ts";
import { aboutLabel, type Finding } from "./finding.ts";

/** JSON_LISTS: the `--json` form's lists, in output order, each with how one element is written. */
const JSON_LISTS = {
  findings: (f: Finding) => ({
    code: f.code,
    severity: f.severity,
    scope: CODES[f.code].scope,
    about: f.about,
    label: aboutLabel(f.about),
    message: f.message,
    fix: f.fix,
  }),
  certificates: (c: CertificateReport) => ({
    ...c,
    notAfter: c.notAfter?.toISOString(),
    renewAt: c.renewAt?.toISOString(),
    ca: c.ca && { subject: c.ca.subject, notAfter: c.ca.notAfter.toISOString() },
  }),
  cas: (c: CaReport) => ({ ...c, notAfter: c.notAfter.toISOString() }),
  connections: (c: ConnectionReport) => c,
} as const;

/** jsonHead: the `--json` form's fields before its lists. */
const jsonHead = (r: CheckReport) => ({
  now: r.now.toISOString(),
  summary: {
    errors: r.errors,
    warnings: r.warnings,
    certificates: r.certificates.length,
    connections: r.connections.length,
    failingConnections: r.connections.filter((c) => !c.ok).length,
  },
});

/** reportJson is the `--json` form: stable field names, ISO dates. */
export function reportJson(r: CheckReport) {
  return {
    ...jsonHead(r),
    findings: r.findings.map(JSON_LISTS.findings),
    certificates: r.certificates.map(JSON_LISTS.certificates),
    cas: r.cas.map(JSON_LISTS.cas),
    connections: r.connections,
  };
}

/** JSON_CHUNK_CHARS: about how long each piece of reportJsonText is. */
export const JSON_CHUNK_CHARS = 64 * 1024;

/**
 * reportJsonText yields `JSON.stringify(reportJson(r), null, 2)` and a newline in pieces of
 * about JSON_CHUNK_CHARS, element by element, so that the whole text is never one string: at
 * 10,000 services it is 7.7 MB, and the bytes written as much again, at check's peak of memory.
 */
export function* reportJsonText(r: CheckReport): Generator<string> {
  const nest = (v: unknown, pad: string) => JSON.stringify(v, null, 2).replace(/\n/g, `\n${pad}`);
  let out = "{\n";
  for (const [k, v] of Object.entries(jsonHead(r))) out += `  ${JSON.stringify(k)}: ${nest(v, "  ")},\n`;
  const lists = Object.entries(JSON_LISTS) as [keyof typeof JSON_LISTS, (x: unknown) => unknown][];
  for (const [i, [key, write]] of lists.entries()) {
    const items: readonly unknown[] = r[key];
    const comma = i < lists.length - 1 ? "," : "";
    if (items.length === 0) {
      out += `  ${JSON.stringify(key)}: []${comma}\n`;
      continue;
    }
    out += `  ${JSON.stringify(key)}: [\n`;
    for (const [j, item] of items.entries()) {
      out += `    ${nest(write(item), "    ")}${j < items.length - 1 ? "," : ""}\n`;
      if (out.length >= JSON_CHUNK_CHARS) {
        yield out;
        out = "";
      }
    }
    out += `  ]${comma}\n`;
  }
  yield `${out}}\n`;
}

/** escapeLabel escapes a Prometheus label value (exposition format: backslash, quote, newline). */
const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
/** promLabels renders a Prometheus label set; none at all is written without braces, as the format's grammar has it. */
export const promLabels = (l: Record<string, string>) =>
  Object.keys(l).length === 0
    ? ""
    : `{${Object.entries(l)
        .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
        .join(",")}}`;

/**
 * certificateLabels are a certificate's metric labels: service, certificate (the slot id) and
 * path. An online-issued one (from the ledger) has the ledger as its path and issued="online": its
 * serial changes at every renewal, so it is not a label (one series per service, not per renewal).
 */
export function certificateLabels(c: CertificateReport): Record<string, string> {
  return c.online
    ? { service: c.service, certificate: c.id, path: c.online.ledger, issued: "online" }
    : { service: c.service, certificate: c.id, path: c.file };
}

/**
 * prometheusText renders the report in the text exposition format, for node_exporter's textfile
 * collector: certificate and CA not-after timestamps, findings per service and severity, and
 * connection verdicts.
 */
export function prometheusText(r: CheckReport): string {
  const out: string[] = [];
  const metric = (name: string, help: string, rows: [Record<string, string>, number][]) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const [l, v] of rows) out.push(`${name}${promLabels(l)} ${v}`);
  };
  metric(
    "mtlskit_certificate_not_after_timestamp_seconds",
    "notAfter of each service certificate, as a Unix timestamp.",
    r.certificates
      .filter((c) => c.notAfter)
      .map((c) => [certificateLabels(c), Math.floor(c.notAfter!.getTime() / 1000)]),
  );
  metric(
    "mtlskit_ca_not_after_timestamp_seconds",
    "notAfter of each CA certificate found in bundles and chains, as a Unix timestamp.",
    r.cas.map((c) => [{ subject: c.subject, sha256: c.sha256 }, Math.floor(c.notAfter.getTime() / 1000)]),
  );
  const services = [...new Set(r.certificates.map((c) => c.service))];
  const count = (service: string, severity: string) =>
    r.findings.filter(
      (f) =>
        f.severity === severity &&
        ("service" in f.about
          ? f.about.service === service
          : f.about.kind === "connection" && (f.about.from === service || f.about.to === service)),
    ).length;
  metric(
    "mtlskit_check_findings",
    "Findings of mtlskit check per service and severity (connection findings count for both ends).",
    services.flatMap((s) =>
      (["error", "warning"] as const).map((sev): [Record<string, string>, number] => [
        { service: s, severity: sev },
        count(s, sev),
      ]),
    ),
  );
  // The totals also count findings about no service (an expired CA in a bundle, the CA key's mode).
  metric("mtlskit_check_errors", "Findings at error level, in total (mtlskit check exits 1 when above 0).", [
    [{}, r.errors],
  ]);
  metric("mtlskit_check_warnings", "Findings at warning level, in total.", [[{}, r.warnings]]);
  metric(
    "mtlskit_connection_ok",
    "1 when both ends of a declared connection will accept each other's certificate.",
    r.connections.map((c) => [{ from: c.from, to: c.to, address: c.address }, c.ok ? 1 : 0]),
  );
  metric("mtlskit_check_timestamp_seconds", "When the check ran, as a Unix timestamp.", [
    [{}, Math.floor(r.now.getTime() / 1000)],
  ]);
  return out.join("\n") + "\n";
}

/** NAGIOS: plugin exit codes (Nagios plugin guidelines; Sensu uses the same). */
export const NAGIOS = { ok: 0, warning: 1, critical: 2, unknown: 3 } as const;

/**
 * NAGIOS_MAX_BYTES: Nagios Core keeps only the first 8 KB of a plugin's output
 * (MAX_PLUGIN_OUTPUT_LENGTH, 8192 bytes) and cuts the rest silently, perfdata included, so a
 * plugin line (its newline counted) stays below it.
 */
export const NAGIOS_MAX_BYTES = 8192;
/** TEXT_MAX_BYTES bounds the status text before the perfdata: the summary always fits. */
const TEXT_MAX_BYTES = 1024;

/** cutBytes shortens text to at most `max` UTF-8 bytes, ending with "..." when cut. */
function cutBytes(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text;
  let out = text.slice(0, max - 3);
  while (Buffer.byteLength(out) > max - 3) out = out.slice(0, -1);
  return `${out}...`;
}

/**
 * pluginLine joins a status text and perfdata entries into one Nagios plugin line that, with its
 * newline, stays under NAGIOS_MAX_BYTES: the text first (one line, `|` replaced, at most 1 KB), then
 * as many entries as fit, in the order given (put the most urgent first). `text(omitted)` is
 * called with how many entries were left out, so the text can say so.
 */
export function pluginLine(text: (omitted: number) => string, perf: readonly string[], max = NAGIOS_MAX_BYTES): string {
  const clean = (t: string) => cutBytes(t.replace(/\|/g, "/").replace(/\s*\n\s*/g, " "), TEXT_MAX_BYTES);
  const join = (t: string, p: readonly string[]) => `${t}${p.length ? ` | ${p.join(" ")}` : ""}`;
  const all = join(clean(text(0)), perf);
  if (Buffer.byteLength(all) < max) return all;
  // Budget with the longest text (the most omitted), so the final text can only be shorter.
  let left = max - 1 - Buffer.byteLength(join(clean(text(perf.length)), [])) - 3;
  const kept: string[] = [];
  for (const p of perf) {
    const need = Buffer.byteLength(p) + (kept.length ? 1 : 0);
    if (need > left) break;
    kept.push(p);
    left -= need;
  }
  return join(clean(text(perf.length - kept.length)), kept);
}

/**
 * nagiosStatus renders one plugin status line with perfdata, and the plugin exit code. The
 * perfdata thresholds are ranges in the plugin guidelines' syntax: `0` alerts above 0, so
 * `errors=2;;0` is critical and `warnings=1;0` a warning, as the exit code says.
 */
export function nagiosStatus(r: CheckReport): { line: string; code: number } {
  const code = r.errors > 0 ? NAGIOS.critical : r.warnings > 0 ? NAGIOS.warning : NAGIOS.ok;
  const word = ["OK", "WARNING", "CRITICAL"][code]!;
  const first = r.findings.find((f) => f.severity === (r.errors > 0 ? "error" : "warning"));
  const soonest = r.certificates
    .filter((c) => c.notAfter)
    .sort((a, b) => a.notAfter!.getTime() - b.notAfter!.getTime())[0];
  const days = soonest ? Math.floor((soonest.notAfter!.getTime() - r.now.getTime()) / 86_400_000) : undefined;
  const summary =
    code === NAGIOS.ok
      ? `${r.certificates.length} certificates and ${r.connections.length} connections OK${soonest ? `; next expiry ${soonest.id} in ${days} days` : ""}`
      : `${r.errors} error${r.errors === 1 ? "" : "s"}, ${r.warnings} warning${r.warnings === 1 ? "" : "s"}; first: ${aboutLabel(first!.about)} [${first!.code}] ${first!.message}`;
  const perf = [
    `errors=${r.errors};;0`,
    `warnings=${r.warnings};0`,
    `failing_connections=${r.connections.filter((c) => !c.ok).length};;0`,
    ...(days === undefined ? [] : [`min_days_left=${days}`]),
  ];
  return { line: pluginLine(() => `MTLSKIT ${word} - ${summary}`, perf), code };
}
