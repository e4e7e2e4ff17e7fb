/** `trust`: the CA into the system trust store and the NSS database, and out again (planning pure; facts and execution at the edges). */
export {
  colonHex,
  nameFromSubject,
  parseAnchor,
  refuseExpired,
  sha256Hex,
  TRUST_NAME,
  trustName,
  type TrustAnchor,
} from "./anchor.ts";
export { executeTrust, RUN_TIMEOUT_MS, type StepResult } from "./execute.ts";
export { defaultNssDb, machinePlatform, nssFacts, parsePasswd, sudoUser, systemFacts, which } from "./facts.ts";
export {
  NSS_TRUST,
  nssAdd,
  nssDelete,
  nssElsewhere,
  parseNssList,
  type NssFacts,
  type NssState,
  type RunAs,
} from "./nss.ts";
export {
  needsRoot,
  planTrust,
  refuseBlocked,
  renderStep,
  shQuote,
  type ManualStep,
  type SystemFacts,
  type TrustAction,
  type TrustInput,
  type TrustPlan,
  type TrustStep,
} from "./plan.ts";
export {
  detectPlatform,
  parseOsRelease,
  PLATFORM_NAMES,
  PLATFORMS,
  type MachineFacts,
  type PlatformName,
} from "./platform.ts";
export { bundleDigests, trustStatus, type StatusInput, type TrustStatus } from "./status.ts";
