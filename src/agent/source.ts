/**
 * agentSource: a CredentialSource (service/source.ts) that enrolls with the online CA and renews
 * in-process, for Node services that hold their identity themselves instead of reading an agent's
 * files. Hand it to createMtlsServer or clientOptions as any source: each handshake asks
 * `current()`, so a renewal takes effect at the next handshake and established connections keep
 * theirs, as with fileSource. The key lives in memory only (unless `out` is given, where the
 * agent's layout is written as `mtlskit agent` writes it).
 */
import type { KeyTypeName } from "../pki/keys.ts";
import { parseCredentials, type CredentialSource, type Credentials } from "../service/source.ts";
import { type AgentEvent, type Backoff, type Clock, createAgent, serversOf } from "./agent.ts";
import { type AgentState, type AgentStore, fileStore, type Held } from "./store.ts";

/** AgentSourceOptions configure agentSource. One of `ca` and `fingerprint` is required. */
export interface AgentSourceOptions {
  /** servers: the CA's replicas, https://HOST:PORT each, asked in this order from the last one that worked; or `server` for one. */
  servers?: readonly string[];
  /** server: the CA's base URL, https://HOST:PORT, when there is one. */
  server?: string;
  /** service: the csr: true service whose identity this process holds. */
  service: string;
  /** token: the bootstrap token (`mtlskit token create SERVICE`), spent on the first enrollment. */
  token: string;
  /** ca: the PEM bundle the server is trusted by. */
  ca?: string;
  /** fingerprint: the SHA-256 of the CA's root (hex, colons allowed), verified on the first connection. */
  fingerprint?: string;
  /** keyType: default "ecdsa-p256"; must be the service's manifest key type. */
  keyType?: KeyTypeName;
  /** out: also write the service layout there (key.pem 0600, cert.pem, ca.pem, agent.json). Default: memory only. */
  out?: string;
  /** onReload is told after new credentials take effect (a renewal or a new bundle). A throw becomes a process warning (MTLSKIT_CALLBACK_THREW). */
  onReload?: (event: { previous: Credentials; current: Credentials }) => void;
  /** onError is told each failed attempt (the previous credentials stay in use while they are valid). */
  onError?: (error: Error) => void;
  /** onEvent: every step's outcome (enrolled, renewed, bundle, error). */
  onEvent?: (e: AgentEvent) => void;
  /** clock, random, backoff, bundlePollMs, timeoutMs, connectTimeoutMs: as createAgent's (agent.ts). */
  clock?: Clock;
  random?: () => number;
  backoff?: Backoff;
  bundlePollMs?: number;
  timeoutMs?: number;
  connectTimeoutMs?: number;
}

/** AgentCredentialSource is a CredentialSource that renews itself until close(). */
export interface AgentCredentialSource extends CredentialSource {
  /** state is the agent's state (serial, notAfter, renewAfter, lastError, nextAttempt). */
  state(): AgentState;
  /** close stops renewing; current() keeps returning the last credentials. */
  close(): Promise<void>;
}

/** memoryStore keeps the pair and the state in memory. */
function memoryStore(): AgentStore {
  return {
    where: "memory",
    load: () => ({}),
    saveCredentials: (h: Held) => parseCredentials({ cert: h.chain, key: h.key, ca: h.bundle }),
    saveBundle: (bundle: string, c: Credentials) => parseCredentials({ cert: c.cert, key: c.key, ca: bundle }),
    saveState: (_: AgentState) => undefined,
  };
}

/** notify calls a user callback; a throw becomes a process warning, as fileSource's callbacks do. */
function notify<T>(name: string, callback: ((arg: T) => void) | undefined, arg: T): void {
  try {
    callback?.(arg);
  } catch (e) {
    process.emitWarning(`agentSource's ${name} callback threw: ${(e as Error)?.message ?? String(e)}`, {
      code: "MTLSKIT_CALLBACK_THREW",
      detail: (e as Error)?.stack,
    });
  }
}

/**
 * agentSource enrolls (resolving once the first certificate is in hand, or rejecting with the
 * server's refusal and its fix) and then renews in the background until close().
 *
 * @example
 * const source = await agentSource({ servers: ["https://ca1.internal:8443", "https://ca2.internal:8443"], service: "web", token, fingerprint: "3f2a..." });
 * const server = createMtlsServer(https.createServer, source, { authorize: authorizeAny() }, app);
 * server.on("close", () => void source.close());
 */
export async function agentSource(opts: AgentSourceOptions): Promise<AgentCredentialSource> {
  let token: string | undefined = opts.token;
  const agent = createAgent({
    servers: serversOf(opts),
    service: opts.service,
    token: () => token,
    ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
    ...(opts.fingerprint !== undefined ? { fingerprint: opts.fingerprint } : {}),
    ...(opts.keyType ? { keyType: opts.keyType } : {}),
    store: opts.out === undefined ? memoryStore() : fileStore(opts.out),
    onChange: (previous, current) => {
      if (previous) notify("onReload", opts.onReload, { previous, current });
    },
    onEvent: (e) => {
      if (e.kind === "error") notify("onError", opts.onError, new Error(e.message));
      if (e.kind === "enrolled") token = undefined; // spent: it never leaves memory again
      notify("onEvent", opts.onEvent, e);
    },
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.random ? { random: opts.random } : {}),
    ...(opts.backoff ? { backoff: opts.backoff } : {}),
    ...(opts.bundlePollMs ? { bundlePollMs: opts.bundlePollMs } : {}),
    ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    ...(opts.connectTimeoutMs ? { connectTimeoutMs: opts.connectTimeoutMs } : {}),
  });
  if (!agent.current()) {
    const first = await agent.step();
    if (first.error) {
      await agent.stop();
      throw first.error;
    }
  }
  agent.start();
  return {
    current: () => agent.current()!,
    state: () => agent.state(),
    close: () => agent.stop(),
  };
}
