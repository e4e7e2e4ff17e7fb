/**
 * probe: connect to a live TLS endpoint as a service and judge what it presents and demands.
 * `observe` makes the connections (connect.ts), `judgeProbe` judges them (probe.ts).
 *
 * @example
 * const material = new Material();
 * const files = loadProbeFiles(material, pathsOf(manifest, "worker", "./pki"));
 * const seen = await observe({ host: "10.0.0.5", port: 8443 }, files.credentials);
 * const report = judgeProbe({ host: "10.0.0.5", port: 8443, as: "worker", bundle: files.bundle, bundlePath: files.paths.ca, manifest, ...seen, now: new Date(), material });
 */
export { PROBE_CODES, type ProbeCode, type ProbeCodeInfo } from "./codes.ts";
export {
  attempt,
  observe,
  type AttemptOptions,
  type Credentials,
  type Observation,
  type Observations,
} from "./connect.ts";
export { loadProbeFiles, pathsOf, type ProbeFiles, type ProbePaths } from "./files.ts";
export {
  briefly,
  diagnose,
  judgeProbe,
  type Diagnosis,
  type PresentedCert,
  type ProbeFinding,
  type ProbeInput,
  type ProbeReport,
} from "./probe.ts";
export { judgeClient, listen, type ClientObservation, type ClientReport, type Listener } from "./listen.ts";
