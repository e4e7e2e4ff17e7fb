/**
 * The online CA's agent, as a library: the loop (createAgent), the service layout it writes
 * (fileStore), the API client (createCaClient, with the --fingerprint bootstrap) and agentSource,
 * a credential source that enrolls and renews in-process. Its own entry point is `mtlskit/agent`.
 *
 * @example
 * import https from "node:https";
 * import { agentSource } from "mtlskit/agent";
 * import { createMtlsServer, authorizeAny } from "mtlskit/service";
 * const source = await agentSource({ servers: ["https://ca1.internal:8443", "https://ca2.internal:8443"], service: "web", token, fingerprint });
 * createMtlsServer(https.createServer, source, { authorize: authorizeAny() }, app).listen(8443);
 */
export {
  BACKOFF,
  agentMetricsText,
  RENEW_AT,
  SYSTEM_CLOCK,
  backoffDelay,
  bundleDigests,
  createAgent,
  newKeyAndCsr,
  renewAt,
  serversOf,
  statusOf,
  tokenId,
  type Agent,
  type AgentEvent,
  type AgentOptions,
  type Backoff,
  type Clock,
  type StepResult,
} from "./agent.ts";
export {
  ServerError,
  UnreachableError,
  bootstrapTrust,
  createCaClient,
  judgeBootstrapChain,
  parseFingerprint,
  parseServerUrl,
  type BundleInfo,
  type CaClient,
  type CaClientOptions,
  type Issued,
  type Refusal,
} from "./client.ts";
export {
  createServerSet,
  failsOver,
  MAX_SERVERS,
  parseServerList,
  ServersFailedError,
  type ServerSet,
  type ServerSetOptions,
  type ServerState,
} from "./servers.ts";
export { RELOAD_TIMEOUT_MS, runReloadCommand, type ReloadResult } from "./hook.ts";
export { agentSource, type AgentCredentialSource, type AgentSourceOptions } from "./source.ts";
export {
  AGENT_FILES,
  fileStore,
  readAgentState,
  type AgentState,
  type AgentStatus,
  type AgentStore,
  type Held,
  type PendingRequest,
} from "./store.ts";
