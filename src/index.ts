/**
 * mtlskit's library API: load a manifest, plan and apply it, check a deployment, and the PKI
 * tables behind them.
 *
 * @example
 * import { loadManifest, apply } from "mtlskit";
 * const loaded = loadManifest("mtlskit.yaml");
 * const result = await apply(loaded, "./pki");
 * console.log(`${result.issued} issued, ${result.kept} kept`);
 * const report = checkPki(loaded.manifest, "./pki");
 * for (const f of report.findings) console.log(`${f.severity} ${f.code}: ${f.message}; fix: ${f.fix}`);
 */
export {
  EXIT,
  FailedError,
  InvalidInputError,
  MtlskitError,
  UsageError,
  formatProblem,
  type ExitCode,
  type Problem,
} from "./errors.ts";
export { PLACEHOLDERS, parseIdentity, renderTemplate, type Identity } from "./identity/index.ts";
export {
  loadManifest,
  parseManifest,
  manifestJsonSchema,
  type LoadedManifest,
  type Manifest,
  type Service,
  type Connection,
  type CertSlot,
  type ExternalFiles,
} from "./manifest/index.ts";
export { KEY_TYPES, KEY_TYPE_NAMES, type KeyTypeName } from "./pki/keys.ts";
export { PROFILES, USAGES, type Profile, type ProfileName, type Usage } from "./pki/profiles.ts";
export {
  decodeCertificate,
  type CertInfo,
  type SanEntry,
  type KeyUsageName,
  type PublicKeyInfo,
  type ExtensionInfo,
} from "./pki/x509.ts";
export { LAYOUT, MODES } from "./state/layout.ts";
export { apply, warmApply, type ApplyOptions, type ApplyResult, type WarmPool } from "./plan/apply.ts";
export { readAndPlan } from "./plan/read.ts";
export { planApply, BACKDATE_MS, type Plan, type CertStep, type CaStep, type PlanOptions } from "./plan/plan.ts";
export {
  checkPki,
  checkInventory,
  readInventory,
  lintCertificate,
  Material,
  CODES,
  CODE_NAMES,
  prometheusText,
  nagiosStatus,
  reportJson,
  type CheckOptions,
  type CheckReport,
  type CertificateReport,
  type ConnectionReport,
  type CaReport,
  type Finding,
  type About,
  type Code,
  type CodeInfo,
  type Severity,
  type Expectations,
  type Lint,
} from "./check/index.ts";
export { inspectText, loadInspection, matchKeys, type Inspection, type Item } from "./inspect/index.ts";
export { explain, CATALOGUE, type Explanation, type Match, type Entry } from "./explain/index.ts";
export { describePeer, peerFromDer, peerFromSocket, type NoIdentity, type Peer } from "./service/index.ts";
export {
  AuthorizationError,
  allOf,
  anyOf,
  authorizeAny,
  authorizeId,
  authorizeMemberOf,
  authorizeOneOf,
  authorizeRbac,
  authorizeRole,
  authorizeSubject,
  normalizeDn,
  parseDn,
  pinCertificate,
  pinSpki,
  rbacRoles,
  type Authorizer,
  type DnAttribute,
  type RbacTable,
} from "./service/index.ts";
export {
  loadStaticSource,
  parseCredentials,
  staticSource,
  type CredentialNames,
  type CredentialSource,
  type Credentials,
  type PemInput,
  type StaticFiles,
  type StaticSourceInput,
} from "./service/index.ts";
export {
  fileSource,
  type FileCredentialSource,
  type FileSourceDir,
  type FileSourceOptions,
  type Reload,
} from "./service/index.ts";
export {
  CIPHERS,
  HANDSHAKE_TIMEOUT_MS,
  authorizeServer,
  clientOptions,
  createMtlsServer,
  serverOptions,
  type ClientOptions,
  type MaxVersion,
  type MinVersion,
  type MtlsServerOptions,
  type ServerFactory,
  type ServerOptions,
} from "./service/index.ts";
export {
  SelfCheckError,
  assertReady,
  selfCheck,
  type IdentityTemplate,
  type SelfCheckOptions,
  type SelfCheckProblem,
} from "./service/index.ts";
export {
  expiryStatus,
  metricsOfPki,
  metricsText,
  nagiosLine,
  serveMetrics,
  statusOfFiles,
  statusOfPki,
  type Level,
  type MetricsServer,
  type MetricsServerOptions,
  type Status,
  type StatusInput,
  type StatusRow,
  type Thresholds,
} from "./status/index.ts";
export {
  checkOutputs,
  exportOutputs,
  encodePkcs12,
  loadMaterial,
  writeExport,
  FORMATS,
  FLAT_NAMES,
  type ExportFile,
  type ExportResult,
  type Pkcs12Entry,
  type PkiMaterial,
} from "./export/index.ts";
export { OUTPUT_FORMATS, type Output, type OutputFormat } from "./manifest/index.ts";
export {
  COMPONENTS,
  COMPONENT_NAMES,
  renderConfig,
  tlsPaths,
  manifestFlatFiles,
  clientsOf,
  goDn,
  natsUser,
  type Component,
  type ComponentName,
  type ConfigInput,
  type Snippet,
  type TlsPaths,
  type Where,
} from "./config/index.ts";
