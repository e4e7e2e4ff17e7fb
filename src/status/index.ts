/**
 * `status`: expiry of every certificate of a deployment (through check, so external files and
 * chains count) or of plain certificate files. The I/O edge of status.ts.
 */
import { checkPki, isProblem, Material, readCertFile, type CheckReport } from "../check/index.ts";
import type { Manifest } from "../manifest/index.ts";
import { readApplyRecord } from "../state/record.ts";
import { metricsText } from "./metrics.ts";
import { expiryStatus, withFailedApply, type Status, type StatusInput, type Thresholds } from "./status.ts";

export { metricsText } from "./metrics.ts";
export { CONTENT_TYPE, serveMetrics, type MetricsServer, type MetricsServerOptions } from "./serve.ts";
export { DEFAULT_CRITICAL_MS, DEFAULT_WARNING_MS, expiryStatus, withFailedApply, inWords, NAGIOS_CODE, nagiosLine, type Level, type Status, type StatusInput, type StatusRow, type Thresholds } from "./status.ts";

/** inputsOfReport turns check's certificate reports into status inputs; unreadable ones carry check's words. */
export function inputsOfReport(r: CheckReport): StatusInput[] {
  return r.certificates.map((c) => {
    const why = c.notAfter === undefined ? r.findings.find((f) => f.about.kind === "certificate" && f.about.id === c.id && /^cert-/.test(f.code)) : undefined;
    return { id: c.id, service: c.service, file: c.file, subject: c.subject, notAfter: c.notAfter, renewAt: c.renewAt, ca: c.ca, ...(why ? { problem: why.message } : {}) };
  });
}

/** statusOfPki judges a manifest's certificates (managed in `dir`, or external files). */
export function statusOfPki(manifest: Manifest, dir: string | undefined, now: Date, t: Thresholds = {}, applyCommand = "mtlskit apply"): { status: Status; report: CheckReport } {
  const report = checkPki(manifest, dir, { now, applyCommand });
  const status = expiryStatus(inputsOfReport(report), now, t, applyCommand);
  return { status: dir === undefined ? status : withFailedApply(status, readApplyRecord(dir)), report };
}

/**
 * statusOfFiles judges plain PEM files: the first certificate of each is the one judged, the
 * ones after it are its chain (their earliest notAfter is the CA's). No renewal window is known.
 */
export function statusOfFiles(files: readonly string[], now: Date, t: Thresholds = {}): Status {
  const material = new Material();
  const inputs = files.map((file): StatusInput => {
    const f = readCertFile(material, file);
    if (isProblem(f)) return { id: file, service: undefined, file, subject: undefined, notAfter: undefined, problem: `${file} ${f.error}`, renewAt: undefined, ca: undefined };
    if (f.certs.length === 0) return { id: file, service: undefined, file, subject: undefined, notAfter: undefined, problem: `${file} holds no certificate`, renewAt: undefined, ca: undefined };
    const [leaf, ...chain] = f.certs;
    const earliest = chain.reduce<(typeof chain)[number] | undefined>((a, c) => (a === undefined || c.fields.notAfter < a.fields.notAfter ? c : a), undefined);
    return { id: file, service: undefined, file, subject: leaf!.info.subject, notAfter: leaf!.fields.notAfter, renewAt: undefined, ca: earliest && { subject: earliest.info.subject, notAfter: earliest.fields.notAfter } };
  });
  return expiryStatus(inputs, now, t);
}

/** metricsOfPki collects a deployment's metrics: check's, renewal, and the last apply (when `dir` has a record). */
export function metricsOfPki(manifest: Manifest, dir: string | undefined, now = new Date()): string {
  const report = checkPki(manifest, dir, { now });
  return metricsText(report, dir === undefined ? undefined : readApplyRecord(dir));
}
