/**
 * Prometheus metrics of a deployment: check's (certificate and CA not-after, findings,
 * connections) plus renewal and the last apply. Pure: report and record in, exposition text out.
 * examples/prometheus/mtlskit-alerts.yml alerts on these names; promtool tests both.
 */
import { certificateLabels, prometheusText, promLabels, type CheckReport } from "../check/index.ts";
import type { ApplyRecord } from "../state/record.ts";
import { ALL_PHASES, type RotationSummary } from "../ca/rotation.ts";

const seconds = (d: Date) => Math.floor(d.getTime() / 1000);

/**
 * metricsText renders the exposition text: everything `check --format prometheus` writes, and
 *   mtlskit_certificate_renewal_due_timestamp_seconds  when renewal is due (notAfter - renewBefore)
 *   mtlskit_certificate_renewal_due_in_seconds         renewal due minus now (negative: overdue)
 *   mtlskit_last_apply_timestamp_seconds               when apply last ran on this PKI directory
 *   mtlskit_last_apply_success                         1 if that run succeeded, 0 if it failed
 *   mtlskit_last_apply_issued_certificates             certificates it issued
 *   mtlskit_ca_rotation_phase{phase}                    1 for the CA rotation's phase (none, prepared, active, retiring, retired), 0 for the others
 *   mtlskit_ca_rotation_phase_seconds                  how long that phase has lasted (0 for none)
 *   mtlskit_ca_rotation_reload_pending                 services whose reload the last rotate step still owes
 *   mtlskit_ledger_certificates                        certificates the online CA's ledger holds (when DIR/ca/ledger.db exists)
 *   mtlskit_ledger_revoked_certificates                of them, the revoked ones
 * Online-issued certificates (the newest unrevoked one of each csr service in the ledger) carry
 * the label issued="online" on the certificate metrics, and their ledger as the path.
 * The apply metrics are absent when apply never ran (external files only): absent, not zero, so
 * an alert on failure does not fire for deployments mtlskit does not issue.
 */
export function metricsText(
  report: CheckReport,
  record: ApplyRecord | undefined,
  rotation?: RotationSummary | undefined,
  ledger?: { certificates: number; revoked: number } | undefined,
): string {
  const out: string[] = [prometheusText(report).trimEnd()];
  const metric = (name: string, help: string, rows: [Record<string, string>, number][]) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`);
    for (const [l, v] of rows) out.push(`${name}${promLabels(l)} ${v}`);
  };
  const due = report.certificates.filter((c) => c.renewAt !== undefined);
  const who = (c: (typeof due)[number]) => certificateLabels(c);
  metric(
    "mtlskit_certificate_renewal_due_timestamp_seconds",
    "When each certificate enters its renewal window (notAfter - renewBefore), as a Unix timestamp.",
    due.map((c) => [who(c), seconds(c.renewAt!)]),
  );
  metric(
    "mtlskit_certificate_renewal_due_in_seconds",
    "Seconds until each certificate's renewal is due; negative once overdue (apply should have renewed it).",
    due.map((c) => [who(c), seconds(c.renewAt!) - seconds(report.now)]),
  );
  if (record !== undefined) {
    metric(
      "mtlskit_last_apply_timestamp_seconds",
      "When mtlskit apply last ran on this PKI directory, as a Unix timestamp.",
      [[{}, seconds(new Date(record.time))]],
    );
    metric(
      "mtlskit_last_apply_success",
      "1 if the last mtlskit apply succeeded (and its reload hooks), 0 if it failed.",
      [[{}, record.ok && record.hooks.every((h) => h.ok) ? 1 : 0]],
    );
    metric("mtlskit_last_apply_issued_certificates", "Certificates the last mtlskit apply issued.", [
      [{}, record.issued],
    ]);
  }
  if (rotation !== undefined) {
    metric(
      "mtlskit_ca_rotation_phase",
      "1 for the phase the CA rotation is in (none, prepared, active, retiring, retired), 0 for the others.",
      ALL_PHASES.map((p) => [{ phase: p }, p === rotation.phase ? 1 : 0]),
    );
    metric("mtlskit_ca_rotation_phase_seconds", "How long the CA rotation has been in its phase, in seconds.", [
      [{}, rotation.seconds],
    ]);
    metric(
      "mtlskit_ca_rotation_reload_pending",
      "Services whose reload hook has not succeeded since the last mtlskit ca rotate step.",
      [[{}, rotation.reloadPending.length]],
    );
  }
  if (ledger !== undefined) {
    metric(
      "mtlskit_ledger_certificates",
      "Certificates the online CA's ledger holds (DIR/ca/ledger.db), revoked or not.",
      [[{}, ledger.certificates]],
    );
    metric("mtlskit_ledger_revoked_certificates", "Certificates in the online CA's ledger that are revoked.", [
      [{}, ledger.revoked],
    ]);
  }
  return out.join("\n") + "\n";
}
