/**
 * `status`: expiry of every certificate of a deployment (through check, so external files and
 * chains count) or of plain certificate files. The I/O edge of status.ts.
 */
import { checkPki, isProblem, Material, readCertFile, type CheckReport } from "../check/index.ts";
import type { Manifest } from "../manifest/index.ts";
import { applyRecordFor } from "../state/record.ts";
import type { OnlineFacts } from "../state/online.ts";
import { readRotation } from "../state/rotation.ts";
import { summarize, type RotationSummary } from "../ca/rotation.ts";
import { metricsText } from "./metrics.ts";
import { expiryStatus, withFailedApply, type Status, type StatusInput, type Thresholds } from "./status.ts";

export { metricsText } from "./metrics.ts";
export { CONTENT_TYPE, MAX_AGE_MS, serveMetrics, type MetricsServer, type MetricsServerOptions } from "./serve.ts";
export {
  DEFAULT_CRITICAL_MS,
  DEFAULT_WARNING_MS,
  expiryStatus,
  failedApplyText,
  withFailedApply,
  inWords,
  NAGIOS_CODE,
  nagiosLine,
  type Level,
  type Status,
  type StatusInput,
  type StatusRow,
  type Thresholds,
} from "./status.ts";

/** inputsOfReport turns check's certificate reports into status inputs; unreadable ones carry check's words. */
export function inputsOfReport(r: CheckReport): StatusInput[] {
  return r.certificates.map((c) => {
    const why =
      c.notAfter === undefined
        ? r.findings.find((f) => f.about.kind === "certificate" && f.about.id === c.id && /^cert-/.test(f.code))
        : undefined;
    return {
      id: c.id,
      service: c.service,
      file: c.file,
      subject: c.subject,
      notAfter: c.notAfter,
      renewAt: c.renewAt,
      ca: c.ca,
      ...(why ? { problem: why.message } : {}),
      ...(c.online ? { online: c.online } : {}),
    };
  });
}

/** statusOfPki judges a manifest's certificates (managed in `dir`, or external files, or issued online: `online` from check/online.ts readOnline). */
export function statusOfPki(
  manifest: Manifest,
  dir: string | undefined,
  now: Date,
  t: Thresholds = {},
  applyCommand = "mtlskit apply",
  opts: { online?: OnlineFacts | undefined } = {},
): { status: Status; report: CheckReport } {
  const report = checkPki(manifest, dir, { now, applyCommand, ...(opts.online ? { online: opts.online } : {}) });
  const status = expiryStatus(inputsOfReport(report), now, t, applyCommand);
  if (dir === undefined) return { status, report };
  // The record may be another manifest's (two manifests sharing one PKI directory): not judged here.
  const { record, other } = applyRecordFor(dir, manifest.file);
  const rotation = rotationOf(manifest, dir, now);
  return {
    status: {
      ...withFailedApply(status, record),
      ...(other === undefined ? {} : { otherApply: other }),
      ...(rotation ? { rotation } : {}),
    },
    report,
  };
}

/** rotationOf summarizes the CA rotation of the PKI directory `dir` (undefined when its record cannot be read: check says why). */
export function rotationOf(manifest: Manifest, dir: string, now: Date): RotationSummary | undefined {
  const read = readRotation(dir);
  if (read.status === "broken") return undefined;
  const services = manifest.services.filter((s) => !s.files).map((s) => s.name);
  return summarize(read.status === "ok" ? read.record : undefined, now, services);
}

/**
 * statusOfFiles judges plain PEM files: the first certificate of each is the one judged, the
 * ones after it are its chain (their earliest notAfter is the CA's). No renewal window is known.
 * Files holding only keys or parameters are skipped (Status.skipped); any other file without a
 * certificate is a critical row.
 */
export function statusOfFiles(files: readonly string[], now: Date, t: Thresholds = {}): Status {
  const material = new Material();
  const skipped: { file: string; reason: string }[] = [];
  const unread = (file: string, problem: string): StatusInput => ({
    id: file,
    service: undefined,
    file,
    subject: undefined,
    notAfter: undefined,
    problem: `${file} ${problem}`,
    renewAt: undefined,
    ca: undefined,
  });
  const inputs = files.flatMap((file): StatusInput[] => {
    const f = readCertFile(material, file);
    // `status deploy/host/*.pem` globs the keys too (and `openssl ecparam -genkey` writes EC
    // PARAMETERS before its key): files of keys and parameters only are skipped, and said so.
    if (isProblem(f) && f.labels?.every((l) => KEY_LABEL.test(l))) return (skipped.push({ file, reason: f.error }), []);
    if (isProblem(f)) return [unread(file, f.error)];
    if (f.certs.length === 0) return [unread(file, "holds no certificate")];
    const [leaf, ...chain] = f.certs;
    const earliest = chain.reduce<(typeof chain)[number] | undefined>(
      (a, c) => (a === undefined || c.fields.notAfter < a.fields.notAfter ? c : a),
      undefined,
    );
    return [
      {
        id: file,
        service: undefined,
        file,
        subject: leaf!.info.subject,
        notAfter: leaf!.fields.notAfter,
        renewAt: undefined,
        ca: earliest && { subject: earliest.info.subject, notAfter: earliest.fields.notAfter },
      },
    ];
  });
  const status = expiryStatus(inputs, now, t);
  return skipped.length === 0 ? status : { ...status, skipped };
}

/** KEY_LABEL: PEM blocks of keys and parameters (PRIVATE KEY, EC PRIVATE KEY, ENCRYPTED PRIVATE KEY, PUBLIC KEY, EC PARAMETERS, DH PARAMETERS). */
const KEY_LABEL = /(?:PRIVATE KEY|PUBLIC KEY|PARAMETERS)$/;

/** metricsOfPki collects a deployment's metrics: check's, renewal, the last apply (when `dir` has a record of this manifest's apply), and the ledger's online certificates (`online`, from check/online.ts readOnline). */
export function metricsOfPki(
  manifest: Manifest,
  dir: string | undefined,
  now = new Date(),
  opts: { online?: OnlineFacts | undefined } = {},
): string {
  const report = checkPki(manifest, dir, { now, ...(opts.online ? { online: opts.online } : {}) });
  // Another manifest's record (a shared PKI directory) says nothing about this one: no apply gauges.
  return metricsText(
    report,
    dir === undefined ? undefined : applyRecordFor(dir, manifest.file).record,
    dir === undefined ? undefined : rotationOf(manifest, dir, now),
    opts.online?.stats,
  );
}
