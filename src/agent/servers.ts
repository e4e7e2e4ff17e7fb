/**
 * The agent's list of servers (`--server A --server B`, issue 15): replicas of one online CA that
 * share one policy and one ledger. Every request is tried on the servers in order, starting from
 * the last one that worked; a server that cannot be used (no connection, a timeout, a TLS failure,
 * a reply that is not the API's, 5xx, 429 or 408) sends the request to the next one at once. A
 * definitive answer (any other 4xx: a refused token, a revoked certificate, a policy refusal) is
 * the same from every replica and is never asked again elsewhere: it is thrown as it came. When
 * every server failed, the caller (agent.ts) backs off and tries the whole list again.
 *
 * Each server is verified the same way (createCaClient: the bundle, or the root's fingerprint,
 * bootstrapped by whichever server is asked first; the root is the same for every replica).
 * The state of each (last success, last error, failures in a row) is kept here, as data for
 * agent.json, `--status` and the metrics.
 */
import { EXIT, FailedError, MtlskitError } from "../errors.ts";
import { type CaClient, createCaClient, parseServerUrl, ServerError, UnreachableError } from "./client.ts";

/** MAX_SERVERS bounds the list: the metrics carry one series per server. */
export const MAX_SERVERS = 16;

/** ServerState is one server as agent.json keeps it. */
export interface ServerState {
  /** url: the server's origin, https://HOST:PORT. */
  url: string;
  /** lastSuccess: the last request it answered with a 2xx. */
  lastSuccess?: string;
  /** lastError: the last request it failed or refused (code, message, when). */
  lastError?: { code: string; message: string; at: string };
  /** failures: requests in a row it could not serve (each moved on to the next server); a definitive refusal resets it (the server answered). */
  failures: number;
}

/**
 * failsOver says whether an error is the server's and not the request's: true for a server that
 * could not be used (the request goes to the next server), false for a definitive refusal.
 */
export function failsOver(e: unknown): boolean {
  if (e instanceof UnreachableError) return true;
  if (e instanceof ServerError) return e.status >= 500 || e.status === 429 || e.status === 408;
  return false;
}

/**
 * ServersFailedError is every server of the list failing one request, each error kept; `code` is
 * theirs when they agree, else `unreachable`. Exit 3.
 */
export class ServersFailedError extends FailedError {
  readonly code: string;
  readonly errors: readonly { server: string; error: Error }[];
  constructor(errors: { server: string; error: Error }[]) {
    const codes = new Set(errors.map((e) => (e.error as { code?: string }).code ?? "error"));
    super(
      `agent: none of the ${errors.length} servers could be used (each was tried once):${errors
        .map((e) => `\n    ${e.server}: ${e.error.message.replace(/^agent: /, "").replace(/\n/g, "\n      ")}`)
        .join("")}`,
    );
    this.code = codes.size === 1 ? [...codes][0]! : "unreachable";
    this.errors = errors;
  }
}

/** ServerSetOptions configure createServerSet. */
export interface ServerSetOptions {
  /** servers: the base URLs, https://HOST:PORT, in the order they are preferred; 1 to MAX_SERVERS, no duplicates. */
  servers: readonly string[];
  /** ca: the PEM bundle the servers are trusted by; or fingerprint. */
  ca?: string;
  /** fingerprint: the root's SHA-256 (the bootstrap, per server until a bundle is set). */
  fingerprint?: string;
  /** timeoutMs, connectTimeoutMs: each request's deadlines (createCaClient's). */
  timeoutMs?: number;
  connectTimeoutMs?: number;
  /** now: the clock, for the bootstrap and the states' times. */
  now: () => number;
  /** kept: the states and the current server from an earlier run (servers no longer listed are dropped). */
  kept?: { servers?: readonly ServerState[]; current?: string };
  /** onFailover is told each server that failed a request while another one is left to try. */
  onFailover?: (e: { server: string; next: string; code: string; message: string }) => void;
}

/** ServerSet asks the servers of a list in turn. */
export interface ServerSet {
  /** request runs `call` on the current server, then the next ones while they cannot be used; throws a definitive refusal as is, and ServersFailedError (or, with one server, its error) when none could be used. */
  request<T>(call: (client: CaClient) => Promise<T>): Promise<T>;
  /** setTrust verifies every server against `ca` from now on (undefined: back to the fingerprint). */
  setTrust(ca: string | undefined): void;
  /** states is each server's state, in the list's order. */
  states(): ServerState[];
  /** current is the URL asked first: the last one that worked. */
  current(): string;
  /** close ends every client's connections. */
  close(): void;
}

const invalid = (message: string) => new MtlskitError(`agent: ${message}`, EXIT.invalid);

/** parseServerList checks a list of server URLs (parseServerUrl each) and returns their origins: 1 to MAX_SERVERS, no duplicates. */
export function parseServerList(servers: readonly string[]): string[] {
  if (servers.length === 0) throw invalid("give at least one --server URL (https://HOST:PORT)");
  if (servers.length > MAX_SERVERS)
    throw invalid(`at most ${MAX_SERVERS} --server URLs are allowed (one metrics series each); got ${servers.length}`);
  const origins = servers.map((s) => parseServerUrl(s).origin);
  const dup = origins.find((o, i) => origins.indexOf(o) !== i);
  if (dup !== undefined) throw invalid(`--server ${dup} is given twice; list each server once`);
  return origins;
}

/** createServerSet makes the clients of a list (each refuses a bad URL or fingerprint now). */
export function createServerSet(opts: ServerSetOptions): ServerSet {
  const urls = parseServerList(opts.servers);
  const iso = (ms: number) => new Date(ms).toISOString();
  const states: ServerState[] = urls.map((url) => {
    const k = opts.kept?.servers?.find((s) => s.url === url);
    return {
      url,
      failures: k?.failures ?? 0,
      ...(k?.lastSuccess ? { lastSuccess: k.lastSuccess } : {}),
      ...(k?.lastError ? { lastError: k.lastError } : {}),
    };
  });
  let current = Math.max(0, urls.indexOf(opts.kept?.current ?? ""));
  let trust = opts.ca;
  let clients: (CaClient | undefined)[] = [];
  const clientOf = (i: number): CaClient =>
    (clients[i] ??= createCaClient({
      server: urls[i]!,
      ...(trust !== undefined ? { ca: trust } : { fingerprint: opts.fingerprint ?? "" }),
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.connectTimeoutMs ? { connectTimeoutMs: opts.connectTimeoutMs } : {}),
      now: opts.now,
    }));
  const closeAll = () => {
    for (const c of clients) c?.close();
    clients = [];
  };
  urls.forEach((_, i) => clientOf(i)); // a bad URL or fingerprint is refused before any request

  return {
    async request(call) {
      const failed: { server: string; error: Error }[] = [];
      for (let n = 0; n < urls.length; n++) {
        const i = (current + n) % urls.length;
        const s = states[i]!;
        try {
          const result = await call(clientOf(i));
          states[i] = {
            url: s.url,
            failures: 0,
            lastSuccess: iso(opts.now()),
            ...(s.lastError ? { lastError: s.lastError } : {}),
          };
          current = i;
          return result;
        } catch (e) {
          if (!(e instanceof MtlskitError)) throw e; // a bug: no other server would do better
          const lastError = { code: (e as { code?: string }).code ?? "error", message: e.message, at: iso(opts.now()) };
          if (!failsOver(e)) {
            // The server answered, and every replica would answer the same.
            states[i] = { ...s, failures: 0, lastError };
            current = i;
            throw e;
          }
          states[i] = { ...s, failures: s.failures + 1, lastError };
          failed.push({ server: s.url, error: e });
          if (n + 1 < urls.length)
            opts.onFailover?.({
              server: s.url,
              next: urls[(i + 1) % urls.length]!,
              code: lastError.code,
              message: e.message,
            });
        }
      }
      throw failed.length === 1 ? failed[0]!.error : new ServersFailedError(failed);
    },
    setTrust(ca) {
      if (ca === trust) return;
      closeAll();
      trust = ca;
    },
    states: () => states.map((s) => ({ ...s })),
    current: () => urls[current]!,
    close: closeAll,
  };
}
