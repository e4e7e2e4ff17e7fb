/**
 * check: judge every certificate and every declared connection of a deployment before it is
 * deployed. `checkPki` reads the files (inventory.ts) and judges them (check.ts).
 *
 * @example
 * const report = checkPki(loadManifest("mtlskit.yaml").manifest, "./pki");
 * if (report.errors > 0) for (const f of report.findings) console.log(f.code, f.message, f.fix);
 */
import { existsSync } from "node:fs";
import { FailedError } from "../errors.ts";
import type { Manifest } from "../manifest/index.ts";
import { checkInventory, type CheckOptions, type CheckReport } from "./check.ts";
import { readInventory, type Inventory } from "./inventory.ts";
import { Material } from "./material.ts";
import type { Finding } from "./finding.ts";
import { judgeRotation, readRotationFacts } from "./rotation.ts";
import { readCrl } from "../state/revocations.ts";

export {
  checkInventory,
  type CaReport,
  type CertificateReport,
  type CheckOptions,
  type CheckReport,
  type ConnectionReport,
} from "./check.ts";
export { CODE_NAMES, CODES, type Code, type CodeInfo, type Scope, type Severity } from "./codes.ts";
export { aboutLabel, type About, type Finding } from "./finding.ts";
export {
  isProblem,
  readCertFile,
  readInventory,
  type CertFile,
  type FileProblem,
  type Inventory,
} from "./inventory.ts";
export {
  CLOCK_SKEW_MS,
  covers,
  keyWeakness,
  lintCertificate,
  WEAK_KEY_CHANGE,
  type Expectations,
  type Lint,
} from "./lint.ts";
export { Material, type Cert } from "./material.ts";
export {
  certificateLabels,
  JSON_CHUNK_CHARS,
  NAGIOS_MAX_BYTES,
  nagiosStatus,
  pluginLine,
  prometheusText,
  promLabels,
  reportJson,
  reportJsonText,
} from "./report.ts";

/** checkPki reads the files of every service of `manifest` (managed ones under `dir`) and judges them. */
export function checkPki(manifest: Manifest, dir: string | undefined, opts: CheckOptions = {}): CheckReport {
  return checkPkiRead(manifest, dir, opts).report;
}

/** checkPkiRead is checkPki with what it read: the inventory (the dashboard shows each certificate's SANs and usages from it). */
export function checkPkiRead(
  manifest: Manifest,
  dir: string | undefined,
  opts: CheckOptions = {},
): { report: CheckReport; inventory: Inventory } {
  const managed = manifest.services.filter((s) => !s.files);
  if (dir === undefined && managed.length > 0) {
    throw new FailedError(
      `check: ${managed.length === 1 ? "service" : "services"} ${managed
        .slice(0, 3)
        .map((s) => s.name)
        .join(
          ", ",
        )}${managed.length > 3 ? ", ..." : ""} ${managed.length === 1 ? "is" : "are"} managed by mtlskit, so check needs the PKI directory`,
    );
  }
  if (dir !== undefined && managed.length > 0 && !existsSync(dir)) {
    throw new FailedError(
      `check: the PKI directory ${dir} does not exist; run \`mtlskit apply\` first, or name the directory with --pki DIR`,
    );
  }
  const material = new Material();
  const inv = readInventory(material, manifest, dir, {}, opts.online);
  // The CA's CRL, when apply wrote one: revoked certificates still deployed, a stale or foreign CRL.
  const crl = opts.crl ?? (dir === undefined || managed.length === 0 ? undefined : readCrl(dir));
  const report = checkInventory(material, manifest, inv, { ...opts, ...(crl === undefined ? {} : { crl }) });
  const facts = dir === undefined ? undefined : readRotationFacts(material, dir);
  return {
    report: facts ? withFindings(report, judgeRotation(material, manifest, inv, facts), opts) : report,
    inventory: inv,
  };
}

/** withFindings adds findings judged outside checkInventory (a CA rotation's) to a report: counts, and the connections they fail. */
function withFindings(report: CheckReport, extra: Finding[], opts: CheckOptions): CheckReport {
  const ignored = new Set(opts.ignore ?? []);
  const added = extra.filter((f) => !ignored.has(f.code));
  if (added.length === 0) return report;
  const findings = [...report.findings, ...added];
  const errors = findings.filter((f) => f.severity === "error").length;
  const connections = report.connections.map((c) => {
    const causes = added.flatMap((f) =>
      f.severity === "error" && f.about.kind === "connection" && f.about.index === c.index ? [f.code] : [],
    );
    return causes.length === 0 ? c : { ...c, ok: false, causes: [...new Set([...c.causes, ...causes])] };
  });
  return { ...report, findings, connections, errors, warnings: findings.length - errors };
}
