/**
 * Expiry status: every certificate with its days left, renewal date and CA expiry, sorted by
 * urgency, and one verdict for a Nagios/Sensu plugin. Pure: certificates and a time in, rows out.
 *
 * A certificate stops working at its deadline: the earlier of its own notAfter and its CA's
 * (the earliest notAfter along the chain). Levels, most urgent first:
 *   critical: unreadable or missing, past the deadline, or within the critical threshold of it;
 *   warning:  within the warning threshold, or, without one, inside its renewal window
 *             (renewBefore: `mtlskit apply` should already have renewed it);
 *   ok:       otherwise.
 */
import type { RotationSummary } from "../ca/rotation.ts";
import { pluginLine } from "../check/report.ts";

/** StatusInput is one certificate to judge: a service's slot, or a plain file. */
export interface StatusInput {
  /** id: the slot id (`core`, `core/client`) or the file's path. */
  id: string;
  service: string | undefined;
  file: string;
  subject: string | undefined;
  /** notAfter is absent when the certificate could not be read. */
  notAfter: Date | undefined;
  /** problem says why the certificate could not be read. */
  problem?: string;
  renewAt: Date | undefined;
  ca: { subject: string; notAfter: Date } | undefined;
  /** online: a certificate the online CA issued (from the ledger), renewed by its agent: its serial, validity start and the ledger file. */
  online?: { serial: string; notBefore: Date; ledger: string };
}

/** Level is a row's (and the whole status's) verdict, in Nagios terms. */
export type Level = "ok" | "warning" | "critical";

/** StatusRow is one judged certificate. */
export interface StatusRow extends StatusInput {
  level: Level;
  /** deadline: when it stops working, the earlier of notAfter and the CA's notAfter. */
  deadline: Date | undefined;
  /** leftMs: deadline - now (negative once past). */
  leftMs: number | undefined;
  /** reason says in words why the row has its level. */
  reason: string;
}

/** Thresholds: how close to its deadline a certificate turns warning or critical. */
export interface Thresholds {
  /** warningMs: default: each certificate's renewal window (renewAt), or 30 days without one. */
  warningMs?: number;
  /** criticalMs: default 7 days. */
  criticalMs?: number;
}

/** Status is every row, most urgent first, and the worst level. */
export interface Status {
  now: Date;
  rows: StatusRow[];
  level: Level;
  counts: Record<Level, number>;
  /** failedApply: the last apply on the PKI directory, when it failed (or a reload hook did): a renewal that did not happen. */
  failedApply?: { time: Date; reason: string };
  /** otherApply: the manifest named by the PKI directory's apply record when it is not this one (that record is not judged). */
  otherApply?: string;
  /** rotation: the PKI directory's CA rotation (phase, how long, next step); absent for plain files. */
  rotation?: RotationSummary;
  /** skipped: files given that hold keys or parameters but no certificate (a `*.pem` glob over a deployment), not judged. */
  skipped?: { file: string; reason: string }[];
}

/** FailedApply is what withFailedApply needs of the apply record. */
export interface FailedApply {
  time: string;
  ok: boolean;
  error?: string;
  hooks: readonly { service: string; ok: boolean; error?: string }[];
}

/**
 * withFailedApply marks a status whose last apply failed (or whose reload hook failed): at least
 * WARNING, since the certificates may be valid but renewal or reload is not happening. A
 * successful last apply changes nothing.
 */
export function withFailedApply(s: Status, record: FailedApply | undefined): Status {
  if (record === undefined) return s;
  const hook = record.hooks.find((h) => !h.ok);
  if (record.ok && hook === undefined) return s;
  const reason = record.ok
    ? `the reload hook of ${hook!.service} failed: ${hook!.error ?? "no reason recorded"}`
    : (record.error ?? "no reason recorded");
  return { ...s, level: s.level === "ok" ? "warning" : s.level, failedApply: { time: new Date(record.time), reason } };
}

const DAY = 86_400_000;
/** DEFAULT_CRITICAL_MS: a week, enough to act on a page. */
export const DEFAULT_CRITICAL_MS = 7 * DAY;
/** DEFAULT_WARNING_MS applies to certificates without a renewal window (plain files). */
export const DEFAULT_WARNING_MS = 30 * DAY;

const RANK: Record<Level, number> = { critical: 0, warning: 1, ok: 2 };
const day = (d: Date) => d.toISOString().slice(0, 10);

/** inWords says a span such as "in 12 days", "in 5 hours", "3 days ago". */
export function inWords(ms: number): string {
  const abs = Math.abs(ms);
  const [n, unit] =
    abs >= 2 * DAY
      ? [Math.floor(abs / DAY), "day"]
      : abs >= 2 * 3_600_000
        ? [Math.floor(abs / 3_600_000), "hour"]
        : [Math.max(1, Math.floor(abs / 60_000)), "minute"];
  const span = `${n} ${unit}${n === 1 ? "" : "s"}`;
  return ms >= 0 ? `in ${span}` : `${span} ago`;
}

/**
 * onlineThresholds scales the thresholds to an online certificate's lifetime: a one-hour
 * certificate is always within a week of expiring, yet fine while its agent renews it. Warning
 * once its renewal (at two thirds, docs/online-ca.md) is overdue, critical in its last sixth,
 * or the thresholds given when they are shorter.
 */
function onlineThresholds(c: StatusInput & { notAfter: Date }, t: Thresholds): Thresholds {
  const life = c.notAfter.getTime() - c.online!.notBefore.getTime();
  return {
    criticalMs: Math.min(t.criticalMs ?? DEFAULT_CRITICAL_MS, Math.floor(life / 6)),
    ...(t.warningMs === undefined ? {} : { warningMs: Math.min(t.warningMs, Math.floor(life / 3)) }),
  };
}

/** thresholdsOf are the thresholds a row is judged by: the given ones, scaled for an online certificate. */
const thresholdsOf = (c: StatusInput, t: Thresholds): Thresholds =>
  c.online && c.notAfter !== undefined ? onlineThresholds({ ...c, notAfter: c.notAfter }, t) : t;

/** minute prints a time to the minute, for online certificates whose lifetimes are hours. */
const minute = (d: Date) => `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;

function judge(c: StatusInput, now: number, given: Thresholds, apply: string): StatusRow {
  if (c.notAfter === undefined)
    return { ...c, level: "critical", deadline: undefined, leftMs: undefined, reason: c.problem ?? "cannot be read" };
  const t = thresholdsOf(c, given);
  const date = c.online ? minute : day;
  const caFirst = c.ca !== undefined && c.ca.notAfter < c.notAfter;
  const deadline = caFirst ? c.ca!.notAfter : c.notAfter;
  const leftMs = deadline.getTime() - now;
  const what = caFirst ? `its CA (${c.ca!.subject}) expires` : "expires";
  const row = (level: Level, reason: string): StatusRow => ({ ...c, level, deadline, leftMs, reason });
  const at = `${what} ${inWords(leftMs)} (${date(deadline)})`;
  if (leftMs <= 0)
    return row(
      "critical",
      caFirst
        ? `its CA (${c.ca!.subject}) expired ${inWords(leftMs)} (${date(deadline)})`
        : `expired ${inWords(leftMs)} (${date(deadline)})`,
    );
  if (leftMs <= (t.criticalMs ?? DEFAULT_CRITICAL_MS)) return row("critical", at);
  if (t.warningMs !== undefined) return leftMs <= t.warningMs ? row("warning", at) : row("ok", at);
  if (c.renewAt !== undefined && c.online)
    return c.renewAt.getTime() <= now
      ? row(
          "warning",
          `${at}; its agent should have renewed it by ${date(c.renewAt)}: see \`mtlskit agent --status\` on ${c.service}'s host`,
        )
      : row("ok", `${at}; issued online (serial ${c.online.serial}), its agent renews it from ${date(c.renewAt)}`);
  if (c.renewAt !== undefined)
    return c.renewAt.getTime() <= now
      ? row("warning", `${at}; renewal was due ${date(c.renewAt)}: run \`${apply}\``)
      : row("ok", `${at}; renewal due ${date(c.renewAt)}`);
  return leftMs <= DEFAULT_WARNING_MS ? row("warning", at) : row("ok", at);
}

/** expiryStatus judges every certificate at `now` and sorts the rows by urgency; `applyCommand` is named where renewal is overdue. */
export function expiryStatus(
  certs: readonly StatusInput[],
  now: Date,
  t: Thresholds = {},
  applyCommand = "mtlskit apply",
): Status {
  const rows = certs.map((c) => judge(c, now.getTime(), t, applyCommand));
  rows.sort(
    (a, b) =>
      RANK[a.level] - RANK[b.level] || (a.leftMs ?? -Infinity) - (b.leftMs ?? -Infinity) || a.id.localeCompare(b.id),
  );
  const counts: Record<Level, number> = { ok: 0, warning: 0, critical: 0 };
  for (const r of rows) counts[r.level]++;
  const level: Level = counts.critical > 0 ? "critical" : counts.warning > 0 ? "warning" : "ok";
  return { now, rows, level, counts };
}

/** NAGIOS_CODE: plugin exit codes (0 OK, 1 WARNING, 2 CRITICAL; 3 UNKNOWN is the caller's). */
export const NAGIOS_CODE: Record<Level, number> = { ok: 0, warning: 1, critical: 2 };

/** perfLabel quotes a perfdata label as the plugin guidelines require (single quotes doubled). */
const perfLabel = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** warningSecondsOf is the seconds left at which `judge` turns a row warning: --warning, else its renewal date's distance from the deadline, else 30 days. */
function warningSecondsOf(r: StatusRow, given: Thresholds): number {
  const t = thresholdsOf(r, given);
  if (t.warningMs !== undefined) return Math.floor(t.warningMs / 1000);
  if (r.renewAt !== undefined && r.deadline !== undefined)
    return Math.floor((r.deadline.getTime() - r.renewAt.getTime()) / 1000);
  return Math.floor(DEFAULT_WARNING_MS / 1000);
}

/** failedApplyText says when the last apply failed and the first line of why. */
export function failedApplyText(f: { time: Date; reason: string }): string {
  return `the last apply (${f.time.toISOString().slice(0, 16).replace("T", " ")} UTC) failed: ${f.reason.split("\n")[0]!.replace(/[.\s]+$/, "")}`;
}

/**
 * nagiosLine renders the plugin status line: the worst certificate (or a failed apply) first,
 * counts, then perfdata of seconds left per certificate, most urgent first, with the thresholds
 * as ranges (`'api'=5184000s;2592000:;604800:`: `N:` alerts below N, as the plugin guidelines
 * define ranges). The warning threshold is the row's own: --warning, else its renewal window.
 * The line stays under Nagios' 8 KB (check's pluginLine): with thousands of certificates the
 * perfdata holds the most urgent and the text says how many were left out.
 */
export function nagiosLine(s: Status, t: Thresholds = {}): string {
  const worst = s.rows[0];
  const head = `MTLSKIT STATUS ${s.level.toUpperCase()}`;
  const failed = s.failedApply && failedApplyText(s.failedApply);
  const rowsOk = s.counts.critical + s.counts.warning === 0;
  // Certificates all fine but renewal failing: that failure is the news, so it leads.
  const lead =
    failed && rowsOk
      ? failed
      : worst === undefined
        ? "no certificates"
        : `${rowsOk ? "soonest: " : ""}${worst.id} ${worst.reason.split(";")[0]}`;
  const skipped = s.skipped?.length
    ? `; ${s.skipped.length} key or parameter file${s.skipped.length === 1 ? "" : "s"} skipped`
    : "";
  const counts = `${s.counts.critical} critical, ${s.counts.warning} warning, ${s.counts.ok} ok${failed && !rowsOk ? `; ${failed}` : ""}${skipped}`;
  const crit = (r: StatusRow) => `${Math.floor((thresholdsOf(r, t).criticalMs ?? DEFAULT_CRITICAL_MS) / 1000)}:`;
  const judged = s.rows.filter((r) => r.leftMs !== undefined);
  const perf = judged.map(
    (r) => `${perfLabel(r.id)}=${Math.floor(r.leftMs! / 1000)}s;${warningSecondsOf(r, t)}:;${crit(r)}`,
  );
  return pluginLine(
    (omitted) =>
      `${head} - ${lead}; ${counts}${omitted ? `; perfdata for the ${judged.length - omitted} most urgent of ${judged.length}` : ""}`,
    perf,
  );
}
