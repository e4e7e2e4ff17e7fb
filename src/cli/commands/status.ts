/** `mtlskit status`: every certificate's expiry, renewal date and CA expiry, most urgent first. */
import { readOnline } from "../../check/online.ts";
import { parseArgs } from "node:util";
import { EXIT, UsageError } from "../../errors.ts";
import { loadManifest, parseDuration } from "../../manifest/index.ts";
import {
  DEFAULT_CRITICAL_MS,
  failedApplyText,
  inWords,
  NAGIOS_CODE,
  nagiosLine,
  statusOfFiles,
  statusOfPki,
  type Status,
  type Thresholds,
} from "../../status/index.ts";
import { COMMON_FLAGS, flags, parseTimeFlag } from "../args.ts";
import { paint, type Io } from "../output.ts";
import { asPlugin, LEDGER_FLAG, LEDGER_FLAG_HELP, renderWarnings } from "./shared.ts";

export const STATUS_HELP = `mtlskit status: every certificate's expiry, renewal date and CA expiry, most urgent first.

USAGE
  mtlskit status [-f FILE] [--pki DIR] [--json | --nagios] [--warning D] [--critical D]
  mtlskit status CERT.pem...     (plain files: no manifest needed)

Lists each service's certificate (the PKI directory for managed services, services.NAME.files for
external ones) or each file given: days left, when renewal is due (notAfter - renewBefore), and
when its CA expires. A certificate stops working at the earlier of its own notAfter and its CA's;
rows are sorted by that deadline, worst level first:
  critical  unreadable or missing, past its deadline, or within --critical of it (default 7d)
  warning   within --warning of it; without --warning, inside its renewal window (apply should
            already have renewed it), or within 30d for plain files
  ok        otherwise
A failed last apply (renewal not happening) makes an all-ok status WARNING; the summary says why.
A csr service issued online (\`mtlskit serve\`: the ledger PKI/ca/ledger.db has its rows) is its
newest unrevoked certificate there, shown with its serial and times to the minute; its levels
follow its own lifetime: warning once its agent's renewal (at 2/3) is overdue, critical in its last
sixth (--warning and --critical apply only when shorter). No ledger: nothing online.
With files, those holding only keys or parameters (a *.pem glob over a deploy directory) are
skipped and listed; another file without a certificate is critical.

FLAGS
  -f, --file FILE      manifest (default mtlskit.yaml)
      --pki DIR        PKI directory of managed services (default ./pki)
${LEDGER_FLAG_HELP}
      --json           the rows as JSON
      --nagios         one status line with perfdata (seconds left per certificate, thresholds as
                       ranges: 'api'=5184000s;2592000:;604800: alerts below them), under
                       Nagios' 8 KB: the summary first, perfdata for the most urgent;
                       exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios, Sensu, Icinga)
      --warning D      warn this close to a deadline: a duration such as 30d, 2w, 12h
      --critical D     critical this close to a deadline (default 7d); must be below --warning
      --at TIME        judge at TIME (ISO 8601, e.g. 2027-01-01) instead of now
      --in D           judge D from now, e.g. 30d: what is due if nobody acts

EXAMPLES
  mtlskit status
  mtlskit status --nagios --warning 30d --critical 7d          # a Sensu check
  mtlskit status /etc/serviceradar/certs/*.pem --nagios         # files mtlskit did not make; keys skipped
  mtlskit status --json | jq -r '.rows[] | select(.level != "ok") | .id'

EXIT CODES
  0  every certificate is ok
  1  a certificate is at warning or critical level
  2  invalid input: bad flags, an invalid manifest, or files none of which holds a certificate
  3  could not run: the PKI directory does not exist, an unexpected failure
  With --nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (invalid input or could not run).
`;

function duration(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0)
    throw new UsageError(
      `mtlskit status: --${flag} must be a duration such as 30d, 2w or 12h; got ${JSON.stringify(text)}`,
    );
  return ms;
}

const LEVEL_COLOR = { critical: "red", warning: "yellow", ok: "green" } as const;
const day = (d: Date | undefined) => (d ? d.toISOString().slice(0, 10) : "-");
const minute = (d: Date | undefined) => (d ? d.toISOString().slice(0, 16).replace("T", " ") : "-");

function renderHuman(io: Io, s: Status, head: string): void {
  io.out(`${head}\n\n`);
  // An online certificate lives hours: its serial (to revoke it) and its times to the minute.
  const rows = s.rows.map((r) => [
    r.level,
    r.online ? `${r.id} (online, serial ${r.online.serial})` : r.id,
    r.online ? minute(r.notAfter) : day(r.notAfter),
    r.leftMs === undefined ? "-" : inWords(r.leftMs),
    r.online ? minute(r.renewAt) : day(r.renewAt),
    day(r.ca?.notAfter),
  ]);
  const header = ["LEVEL", "CERTIFICATE", "EXPIRES", "LEFT", "RENEW FROM", "CA EXPIRES"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[], color?: (typeof LEVEL_COLOR)[keyof typeof LEVEL_COLOR]) =>
    `${cells
      .map((c, i) => (i === 0 && color ? paint(io, color, c.padEnd(widths[i]!)) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd()}\n`;
  io.out(paint(io, "bold", line(header)));
  s.rows.forEach((r, i) => io.out(line(rows[i]!, LEVEL_COLOR[r.level])));
  const notes = s.rows.filter((r) => r.level !== "ok");
  if (notes.length > 0) io.out("\n");
  for (const r of notes) io.out(`  ${paint(io, LEVEL_COLOR[r.level], r.level)} ${r.id}: ${r.reason}\n`);
  // A multi-line reason is shown whole here; the summary line below carries its first line.
  if (s.failedApply?.reason.includes("\n"))
    io.out(
      `\n  ${paint(io, "yellow", "warning")} ${failedApplyText(s.failedApply)}\n${s.failedApply.reason
        .split("\n")
        .slice(1)
        .map((l) => `    ${l.trim()}\n`)
        .join("")}`,
    );
  if (s.otherApply)
    io.out(
      `\n  note: the PKI directory's last-apply.json is the record of another manifest (${s.otherApply}); not judged here\n`,
    );
  if (s.rotation && s.rotation.phase !== "none") io.out(`\n  ${s.rotation.text}\n`);
  if (s.skipped?.length) io.out(`\n${s.skipped.map((k) => `  skipped ${k.file}: ${k.reason}\n`).join("")}`);
  const verdict = s.level === "ok" ? paint(io, "green", "OK") : paint(io, LEVEL_COLOR[s.level], s.level.toUpperCase());
  // The verdict says why: with every certificate fine, WARNING comes from the failed apply.
  const failed = s.failedApply ? `; ${failedApplyText(s.failedApply)}` : "";
  io.out(`\n${verdict}: ${s.counts.critical} critical, ${s.counts.warning} warning, ${s.counts.ok} ok${failed}.\n`);
}

function statusJson(s: Status, t: Thresholds) {
  const iso = (d: Date | undefined) => d?.toISOString();
  return {
    now: s.now.toISOString(),
    level: s.level,
    counts: s.counts,
    failedApply: s.failedApply ? { time: s.failedApply.time.toISOString(), reason: s.failedApply.reason } : null,
    otherApply: s.otherApply ?? null,
    rotation: s.rotation
      ? {
          phase: s.rotation.phase,
          since: s.rotation.since ?? null,
          seconds: s.rotation.seconds,
          reloadPending: s.rotation.reloadPending,
        }
      : null,
    skipped: s.skipped ?? [],
    thresholds: {
      warningSeconds: t.warningMs === undefined ? null : t.warningMs / 1000,
      criticalSeconds: (t.criticalMs ?? DEFAULT_CRITICAL_MS) / 1000,
    },
    rows: s.rows.map((r) => ({
      id: r.id,
      service: r.service ?? null,
      file: r.file,
      subject: r.subject ?? null,
      level: r.level,
      reason: r.reason,
      notAfter: iso(r.notAfter) ?? null,
      renewAt: iso(r.renewAt) ?? null,
      ca: r.ca ? { subject: r.ca.subject, notAfter: r.ca.notAfter.toISOString() } : null,
      deadline: iso(r.deadline) ?? null,
      secondsLeft: r.leftMs === undefined ? null : Math.floor(r.leftMs / 1000),
      online: r.online
        ? { serial: r.online.serial, notBefore: r.online.notBefore.toISOString(), ledger: r.online.ledger }
        : null,
    })),
  };
}

/** statusCommand runs `mtlskit status`. */
export async function statusCommand(args: string[], io: Io): Promise<number> {
  return asPlugin(args, io, "MTLSKIT STATUS", () => runStatus(args, io));
}

async function runStatus(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("status", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        file: { type: "string", short: "f" },
        pki: { type: "string" },
        ...LEDGER_FLAG,
        json: { type: "boolean" },
        nagios: { type: "boolean" },
        warning: { type: "string" },
        critical: { type: "string" },
        at: { type: "string" },
        in: { type: "string" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(STATUS_HELP), EXIT.ok);
  if (values.json && values.nagios)
    throw new UsageError("mtlskit status: flag --json is incompatible with --nagios; use one");
  if (positionals.length > 0 && (values.file !== undefined || values.pki !== undefined))
    throw new UsageError(
      `mtlskit status: certificate files (${positionals[0]}) and -f/--pki are two different modes; give one`,
    );
  const t: Thresholds = {
    warningMs: duration("warning", values.warning),
    criticalMs: duration("critical", values.critical),
  };
  if (t.warningMs !== undefined && t.warningMs <= (t.criticalMs ?? DEFAULT_CRITICAL_MS)) {
    throw new UsageError(
      `mtlskit status: --warning (${values.warning}) must be longer than --critical (${values.critical ?? "7d, the default"}): a certificate turns warning before it turns critical`,
    );
  }
  if (values.at !== undefined && values.in !== undefined)
    throw new UsageError("mtlskit status: flag --at is incompatible with --in; use one");
  const inMs = duration("in", values.in);
  const now = values.at !== undefined ? parseTimeFlag("status", values.at) : new Date(Date.now() + (inMs ?? 0));

  let status: Status;
  let head: string;
  if (positionals.length > 0) {
    status = statusOfFiles(positionals, now, t);
    if (status.rows.length === 0 && status.skipped?.length) {
      throw new UsageError(
        `mtlskit status: none of the ${positionals.length} file${positionals.length === 1 ? "" : "s"} holds a certificate (${status.skipped.map((k) => `${k.file} ${k.reason}`).join("; ")}); name the certificate files`,
      );
    }
    head = `mtlskit status: ${positionals.length} file${positionals.length === 1 ? "" : "s"}, at ${now.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  } else {
    const file = values.file ?? "mtlskit.yaml";
    const pki = values.pki ?? "./pki";
    const loaded = loadManifest(file);
    if (!values.json && !values.nagios) renderWarnings(io, loaded.warnings);
    const online = await readOnline(loaded.manifest, pki, now, values.ledger);
    status = statusOfPki(loaded.manifest, pki, now, t, `mtlskit apply -f ${file} --pki ${pki}`, { online }).status;
    head = `mtlskit status: ${file}, ${loaded.manifest.services.some((s) => !s.files) ? pki : "external files only"}, at ${now.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  }
  if (values.nagios) {
    io.out(`${nagiosLine(status, t)}\n`);
    return NAGIOS_CODE[status.level];
  }
  if (values.json) io.out(`${JSON.stringify(statusJson(status, t), null, 2)}\n`);
  else renderHuman(io, status, head);
  return status.level === "ok" ? EXIT.ok : EXIT.findings;
}
