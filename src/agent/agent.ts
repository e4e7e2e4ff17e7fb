/**
 * The agent's loop: enroll once with a bootstrap token, then renew over mTLS with the current
 * certificate at 2/3 of its lifetime (less jitter, so agents issued together do not renew
 * together), a new key each time, generated here and never sent. Failures back off exponentially
 * (with jitter, capped, and never past a quarter of the time the certificate has left, so a short
 * certificate keeps trying). The trust bundle is polled and ca.pem rewritten when it changes (a CA
 * rotation). After each change the reload hook runs. The state is written to the store after every
 * step (OUT/agent.json), so `mtlskit agent --status` reads it.
 *
 * Several servers (replicas of one CA) are asked through servers.ts: a server that cannot be used
 * passes the request to the next within the same step, and the backoff counts attempts of the
 * whole list. The key and CSR of an enrollment or renewal that failed that way are kept (in the
 * store's agent-request.json) and sent again unchanged, so a replica that recorded the certificate
 * but whose reply was lost can answer with it.
 *
 * The token pays for one enrollment only: once the agent has succeeded it renews, and a token it
 * already spent (by id) is never sent again. An expired certificate cannot renew; the agent says so
 * (status "expired") and enrolls again only with a token it has not spent.
 *
 * Time and randomness are parameters (`clock`, `random`): the schedule is pure (renewAt,
 * backoffDelay) and tests drive step() with a clock they move.
 */
import { createHash, createPrivateKey } from "node:crypto";
import { EXIT, MtlskitError } from "../errors.ts";
import { encodeCsr } from "../pki/csr.ts";
import { generateKey, type KeyTypeName } from "../pki/keys.ts";
import { encodePem, parsePem } from "../pki/pem.ts";
import { parseCredentials, type Credentials } from "../service/source.ts";
import { type CaClient, ServerError, UnreachableError, type Issued } from "./client.ts";
import { createServerSet, failsOver, type ServerSet, ServersFailedError } from "./servers.ts";
import type { ServerState } from "./servers.ts";
import type { AgentState, AgentStatus, AgentStore, Held, PendingRequest } from "./store.ts";

/** Clock is the agent's time: now, and a timer that can be cancelled. */
export interface Clock {
  now(): number;
  setTimer(fn: () => void, ms: number): () => void;
}

/** SYSTEM_CLOCK is the wall clock; its timers keep the process alive until the agent is stopped. */
export const SYSTEM_CLOCK: Clock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    const t = setTimeout(fn, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
    return () => clearTimeout(t);
  },
};

/** RENEW_AT: renewal falls between RENEW_AT.earliest and RENEW_AT.latest of the lifetime (2/3, less up to 1/15 of jitter). */
export const RENEW_AT = { earliest: 0.6, latest: 2 / 3 } as const;

/**
 * renewAt is when a certificate received at `issuedAt` and valid until `notAfter` is renewed (ms);
 * `random` in [0, 1) picks the jitter. The lifetime counts from issuance, not from notBefore: the
 * CA backdates notBefore (a tenth of the lifetime, at most 5 min, for clocks that run behind), so
 * counting from notBefore would renew a little early.
 */
export function renewAt(issuedAt: number, notAfter: number, random: number): number {
  const life = notAfter - issuedAt;
  return Math.round(issuedAt + life * (RENEW_AT.latest - (RENEW_AT.latest - RENEW_AT.earliest) * random));
}

/** Backoff tunes backoffDelay. */
export interface Backoff {
  /** baseMs: the first retry's delay; default 1000. */
  baseMs: number;
  /** capMs: the longest delay; default 300 000 (5 min). */
  capMs: number;
}

/** BACKOFF is the default schedule: 1 s, 2 s, 4 s, ... up to 5 min. */
export const BACKOFF: Backoff = { baseMs: 1000, capMs: 300_000 };

/**
 * backoffDelay is the delay before retry number `failures` (1 for the first): base * 2^(failures-1)
 * capped at capMs, then "equal jitter" (half fixed, half random), so it never reaches 0 and never
 * exceeds the cap. `random` is in [0, 1).
 */
export function backoffDelay(failures: number, random: number, b: Backoff = BACKOFF): number {
  const exp = Math.min(b.capMs, b.baseMs * 2 ** Math.max(0, Math.min(failures - 1, 40)));
  return Math.round(exp / 2 + (exp / 2) * random);
}

/** statusOf judges a state at `now`: expired once notAfter passed, failing with an error or a failed reload, healthy otherwise. */
export function statusOf(s: Omit<AgentState, "status">, now: number): AgentStatus {
  if (s.notAfter === undefined) return s.lastError ? "failing" : "enrolling";
  if (now >= Date.parse(s.notAfter)) return "expired";
  if (s.lastError || s.reload?.ok === false) return "failing";
  return "healthy";
}

/**
 * agentMetricsText renders a state as Prometheus text (node_exporter's textfile collector, or a
 * scrape of `mtlskit agent --status --metrics`): health, the certificate's expiry and renewal
 * time, consecutive failures and the last success, labelled by service.
 */
export function agentMetricsText(s: AgentState, now: number): string {
  const label = `{service=${JSON.stringify(s.service)}}`;
  const seconds = (iso: string | undefined) => (iso === undefined ? undefined : Date.parse(iso) / 1000);
  const rows: [string, string, string, number | undefined][] = [
    [
      "mtlskit_agent_healthy",
      "gauge",
      "1 when the agent holds a valid certificate and its last attempt and reload worked",
      statusOf(s, now) === "healthy" ? 1 : 0,
    ],
    [
      "mtlskit_agent_certificate_not_after_seconds",
      "gauge",
      "notAfter of the certificate held (Unix time)",
      seconds(s.notAfter),
    ],
    ["mtlskit_agent_renew_after_seconds", "gauge", "when the agent renews (Unix time)", seconds(s.renewAfter)],
    [
      "mtlskit_agent_next_attempt_seconds",
      "gauge",
      "when the agent next talks to the CA (Unix time)",
      seconds(s.nextAttempt),
    ],
    [
      "mtlskit_agent_last_success_seconds",
      "gauge",
      "the last exchange with the CA that worked (Unix time)",
      seconds(s.lastSuccess),
    ],
    ["mtlskit_agent_consecutive_failures", "gauge", "failed attempts since the last success", s.failures],
  ];
  const text = rows
    .filter((r) => r[3] !== undefined && Number.isFinite(r[3]))
    .map(([name, type, help, v]) => `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name}${label} ${v}\n`)
    .join("");
  // One series per listed server (the list is bounded: MAX_SERVERS), labelled by its URL.
  const servers = s.servers ?? [];
  const perServer: [string, string, (x: ServerState) => number | undefined][] = [
    [
      "mtlskit_agent_server_current",
      "1 for the server the agent asks first (the last one that worked), 0 for the others",
      (x) => (x.url === s.server ? 1 : 0),
    ],
    [
      "mtlskit_agent_server_consecutive_failures",
      "requests in a row this server could not serve (each went on to the next server)",
      (x) => x.failures,
    ],
    [
      "mtlskit_agent_server_last_success_seconds",
      "the last request this server answered with success (Unix time)",
      (x) => seconds(x.lastSuccess),
    ],
    [
      "mtlskit_agent_server_last_error_seconds",
      "the last request this server failed or refused (Unix time)",
      (x) => seconds(x.lastError?.at),
    ],
  ];
  const serverText = perServer
    .map(([name, help, value]) => {
      const samples = servers
        .map((x) => [x, value(x)] as const)
        .filter(([, v]) => v !== undefined && Number.isFinite(v))
        .map(([x, v]) => `${name}{service=${JSON.stringify(s.service)},server=${JSON.stringify(x.url)}} ${v}\n`);
      return samples.length === 0 ? "" : `# HELP ${name} ${help}\n# TYPE ${name} gauge\n${samples.join("")}`;
    })
    .join("");
  return text + serverText;
}

/** tokenId is the non-secret id of a bootstrap token (`mtk_<id>_<secret>`), or a digest prefix for another shape. */
export function tokenId(token: string): string {
  const m = /^mtk_([0-9a-f]{16})_/.exec(token);
  return m ? m[1]! : `sha256:${createHash("sha256").update(token).digest("hex").slice(0, 16)}`;
}

/** bundleDigests lists the SHA-256 of each certificate of a PEM bundle, sorted: two bundles are the same trust when these are equal. */
export function bundleDigests(pem: string): string[] {
  return parsePem(pem)
    .filter((b) => b.label === "CERTIFICATE")
    .map((b) => createHash("sha256").update(b.der).digest("hex"))
    .sort();
}

/**
 * newKeyAndCsr generates a key of `keyType` here and a CSR for it, signed by it, asking for CN =
 * `service` only: the server puts the manifest's SANs, identity and usage in. PEM texts.
 */
export function newKeyAndCsr(service: string, keyType: KeyTypeName): { keyPem: string; csrPem: string } {
  const k = generateKey(keyType);
  const der = encodeCsr(
    { subject: { CN: service }, dns: [], ips: [], uris: [] },
    keyType,
    k.spki,
    createPrivateKey({ key: k.pkcs8, format: "der", type: "pkcs8" }),
  );
  return { keyPem: encodePem("PRIVATE KEY", k.pkcs8), csrPem: encodePem("CERTIFICATE REQUEST", der) };
}

/** AgentEvent is what onEvent hears: each step's outcome, for logs and metrics. */
export type AgentEvent =
  | { kind: "enrolled" | "renewed"; serial: string; notAfter: string; renewAfter: string }
  | { kind: "bundle"; sha256: string[] }
  | { kind: "reload"; ok: boolean; message: string }
  | { kind: "failover"; server: string; next: string; code: string; message: string }
  | { kind: "error"; code: string; message: string; retryInMs: number };

/** AgentOptions configure createAgent. */
export interface AgentOptions {
  /** servers: the CA's replicas, base URLs tried in this order from the last one that worked (servers.ts); or `server` for one. */
  servers?: readonly string[];
  /** server: the CA's base URL, when there is one. */
  server?: string;
  /** service: the manifest's service this agent holds the identity of (csr: true). */
  service: string;
  /** token returns the bootstrap token when an enrollment needs one (read late: the CLI reads its file then); undefined when there is none. */
  token?: () => string | undefined;
  /** ca: the PEM bundle the server is trusted by; or fingerprint. */
  ca?: string;
  /** fingerprint: the SHA-256 of the server's root (the bootstrap); ignored once `ca` or the store's ca.pem is there. */
  fingerprint?: string;
  /** keyType: the key generated for each certificate; default "ecdsa-p256" (the server refuses a type the manifest does not declare). */
  keyType?: KeyTypeName;
  /** store: where the pair, bundle and state are kept. */
  store: AgentStore;
  /** reload runs after each change of the pair or bundle; its result goes into the state. */
  reload?: (creds: Credentials) => Promise<{ ok: boolean; message: string }>;
  /** onEvent is told each step's outcome; the agent itself logs nothing. */
  onEvent?: (e: AgentEvent) => void;
  /** onChange is told each new credentials snapshot (agentSource swaps on it). */
  onChange?: (previous: Credentials | undefined, current: Credentials) => void;
  /** clock: default SYSTEM_CLOCK. */
  clock?: Clock;
  /** random: [0, 1); default Math.random. */
  random?: () => number;
  /** backoff: default BACKOFF (1 s doubling to 5 min). */
  backoff?: Backoff;
  /** bundlePollMs: how often the trust bundle is fetched; default 60 000. */
  bundlePollMs?: number;
  /** timeoutMs: each request's deadline; default 10 000. */
  timeoutMs?: number;
  /** connectTimeoutMs: each new connection's handshake deadline; default 5 000. */
  connectTimeoutMs?: number;
}

/** serversOf reads AgentOptions' `servers` or `server` (exactly one of the two). */
export function serversOf(opts: { server?: string; servers?: readonly string[] }): readonly string[] {
  if (opts.server !== undefined && opts.servers !== undefined)
    throw new MtlskitError("agent: give `server` (one URL) or `servers` (a list), not both", EXIT.invalid);
  const list = opts.servers ?? (opts.server !== undefined ? [opts.server] : []);
  if (list.length === 0)
    throw new MtlskitError(
      "agent: give the CA's URL: `server`, or `servers` for replicas (--server URL)",
      EXIT.invalid,
    );
  return list;
}

/** StepResult is what one step did. */
export interface StepResult {
  did: "enrolled" | "renewed" | "bundle" | "nothing";
  /** error: the step's failure, also in the state's lastError. */
  error?: Error;
  state: AgentState;
}

/** Agent is one service's agent: step() by hand, or start() the loop. */
export interface Agent {
  /** step enrolls, renews or polls the bundle if due, records the state, and returns what it did. Never throws for a server's refusal: that is in `error`. */
  step(): Promise<StepResult>;
  /** start runs step() at each nextAttempt until stop(). */
  start(): void;
  /** stop ends the loop (waits for a step in progress) and the client's connections. */
  stop(): Promise<void>;
  /** state is the latest state. */
  state(): AgentState;
  /** current is the credentials held, if any. */
  current(): Credentials | undefined;
}

/** codeOf names an error for the state: the server's code, unreachable/tls/bad-reply, or `error`. */
const codeOf = (e: unknown) =>
  e instanceof ServerError || e instanceof UnreachableError || e instanceof ServersFailedError
    ? e.code
    : ((e as { code?: string })?.code ?? "error");

/** ambiguous: a failure after which the server may have issued (the request may have arrived): the key and CSR are kept for the retry. */
const ambiguous = (e: unknown) => e instanceof ServersFailedError || failsOver(e);

/** createAgent makes an agent over a store; nothing happens until step() or start(). */
export function createAgent(opts: AgentOptions): Agent {
  const clock = opts.clock ?? SYSTEM_CLOCK;
  const random = opts.random ?? Math.random;
  const backoff = opts.backoff ?? BACKOFF;
  const bundlePollMs = opts.bundlePollMs ?? 60_000;
  const keyType = opts.keyType ?? "ecdsa-p256";
  const store = opts.store;
  const iso = (ms: number) => new Date(ms).toISOString();

  const serverList = serversOf(opts);
  const loaded = store.load();
  let creds = loaded.creds;
  // A kept state is trusted for what the agent spent and how often it failed; the pair read from the files wins over its fields.
  const kept = loaded.state?.service === opts.service ? loaded.state : undefined;
  let state: AgentState = {
    version: 1,
    service: opts.service,
    server: serverList[0]!,
    status: "enrolling",
    failures: kept?.failures ?? 0,
    ...(kept?.enrolledWith ? { enrolledWith: kept.enrolledWith } : {}),
    ...(kept?.lastSuccess ? { lastSuccess: kept.lastSuccess } : {}),
    ...(kept?.reload ? { reload: kept.reload } : {}),
    updatedAt: iso(clock.now()),
  };
  let renewAtMs: number | undefined;
  let nextBundleAt = 0;
  if (creds) describeHeld(creds, kept?.renewAfter === undefined ? {} : { keptRenewAfter: kept.renewAfter });

  // Trust: --ca and what the agent keeps in ca.pem (it came over a verified connection, and follows
  // a CA rotation); with neither, the fingerprint's bootstrap. Every server's client is made again when it changes.
  const trustNow = () => [opts.ca, creds?.ca].filter((x): x is string => x !== undefined).join("\n") || undefined;
  if (trustNow() === undefined && opts.fingerprint === undefined)
    throw new MtlskitError(
      "agent: give --ca FILE (the CA's bundle) or --fingerprint SHA256 (its root's) to trust the server by",
      EXIT.invalid,
    );
  const trust0 = trustNow();
  // Refuses a bad URL or fingerprint now, before any step.
  const servers: ServerSet = createServerSet({
    servers: serverList,
    ...(trust0 !== undefined ? { ca: trust0 } : {}),
    ...(opts.fingerprint !== undefined ? { fingerprint: opts.fingerprint } : {}),
    ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    ...(opts.connectTimeoutMs ? { connectTimeoutMs: opts.connectTimeoutMs } : {}),
    now: clock.now,
    ...(kept ? { kept: { ...(kept.servers ? { servers: kept.servers } : {}), current: kept.server } } : {}),
    onFailover: (e) => opts.onEvent?.({ kind: "failover", ...e }),
  });
  const ask = <T>(call: (c: CaClient) => Promise<T>): Promise<T> => {
    servers.setTrust(trustNow());
    return servers.request(call);
  };
  const describeServers = () => {
    state = { ...state, server: servers.current(), servers: servers.states() };
  };
  describeServers();

  // The key and CSR of a request that may have reached a server: sent again, unchanged, until a
  // certificate for them is installed (a server that recorded the first answers the same; docs/online-ca.md).
  let pending: PendingRequest | undefined = store.loadRequest?.();
  const requestFor = (kind: PendingRequest["kind"], bound: string): PendingRequest => {
    if (
      pending &&
      pending.kind === kind &&
      pending.bound === bound &&
      pending.keyType === keyType &&
      pending.service === opts.service
    )
      return pending;
    const { keyPem, csrPem } = newKeyAndCsr(opts.service, keyType);
    pending = {
      version: 1,
      kind,
      bound,
      service: opts.service,
      keyType,
      key: keyPem,
      csr: csrPem,
      createdAt: iso(clock.now()),
    };
    store.saveRequest?.(pending); // before it is sent: a restart after the request left sends the same
    return pending;
  };
  const settle = (e?: unknown) => {
    // Kept after an ambiguous failure; dropped after a success or a definitive refusal (the next attempt makes a new key).
    if (e !== undefined && ambiguous(e)) return;
    pending = undefined;
    store.dropRequest?.();
  };

  /**
   * describeHeld puts a pair's facts into the state and picks its renewal time: from `issuedAt`
   * (just received), or at a restart the time chosen before (when within this certificate's
   * validity), else from notBefore (an early renewal at worst).
   */
  function describeHeld(c: Credentials, from: { issuedAt?: number; keptRenewAfter?: string }): void {
    const nb = c.leaf.notBefore.getTime();
    const na = c.leaf.notAfter.getTime();
    const kept = from.keptRenewAfter === undefined ? Number.NaN : Date.parse(from.keptRenewAfter);
    renewAtMs =
      from.issuedAt !== undefined
        ? renewAt(Math.max(nb, Math.min(from.issuedAt, na)), na, random())
        : kept >= nb && kept <= na
          ? kept
          : renewAt(nb, na, random());
    state = {
      ...state,
      serial: c.leaf.serialHex,
      notBefore: iso(nb),
      notAfter: iso(na),
      renewAfter: iso(renewAtMs),
      bundleSha256: bundleDigests(c.ca),
    };
  }

  async function install(issued: Issued, keyPem: string): Promise<Credentials> {
    // The reply is checked before it replaces anything: the chain parses and is our key's.
    parseCredentials({ cert: issued.chain, key: keyPem, ca: issued.bundle });
    const previous = creds;
    creds = store.saveCredentials({ key: keyPem, chain: issued.chain, bundle: issued.bundle } satisfies Held);
    describeHeld(creds, { issuedAt: clock.now() });
    opts.onChange?.(previous, creds);
    await runReload(creds);
    return creds;
  }

  async function runReload(c: Credentials): Promise<void> {
    if (!opts.reload) return;
    const r = await opts.reload(c);
    state = { ...state, reload: { at: iso(clock.now()), ok: r.ok, message: r.message } };
    opts.onEvent?.({ kind: "reload", ok: r.ok, message: r.message });
  }

  async function enroll(reason: string): Promise<"enrolled"> {
    const token = opts.token?.();
    if (token === undefined || token === "")
      throw Object.assign(
        new MtlskitError(
          `agent: ${reason}, and no bootstrap token was given\n    fix: create one on the CA's host (mtlskit token create ${opts.service}) and pass it with --token-file`,
          EXIT.failed,
        ),
        { code: "no-token" },
      );
    const id = tokenId(token);
    if (state.enrolledWith === id)
      throw Object.assign(
        new MtlskitError(
          `agent: ${reason}, and the token (id ${id}) was already spent by this agent\n    fix: create a new one (mtlskit token create ${opts.service}) and write it to the token file`,
          EXIT.failed,
        ),
        { code: "token-spent" },
      );
    const req = requestFor("enroll", `token:${id}`);
    let issued: Issued;
    try {
      issued = await ask((c) => c.enroll(opts.service, token, req.csr));
    } catch (e) {
      settle(e);
      throw e;
    }
    state = { ...state, enrolledWith: id };
    await install(issued, req.key);
    settle();
    return "enrolled";
  }

  async function renew(held: Credentials): Promise<"renewed"> {
    const req = requestFor("renew", `serial:${held.leaf.serialHex}`);
    let issued: Issued;
    try {
      issued = await ask((c) => c.renew({ key: held.key, cert: held.cert }, req.csr));
    } catch (e) {
      settle(e);
      throw e;
    }
    await install(issued, req.key);
    settle();
    return "renewed";
  }

  async function pollBundle(held: Credentials): Promise<boolean> {
    const b = await ask((c) => c.bundle());
    nextBundleAt = clock.now() + bundlePollMs;
    const digests = bundleDigests(b.bundle);
    if (digests.length === 0) throw new UnreachableError("agent: /v1/bundle answered an empty bundle", "bad-reply");
    if (digests.join() === bundleDigests(held.ca).join()) return false;
    const previous = creds;
    creds = store.saveBundle(b.bundle, held);
    state = { ...state, bundleSha256: digests };
    opts.onChange?.(previous, creds);
    opts.onEvent?.({ kind: "bundle", sha256: digests });
    await runReload(creds);
    return true;
  }

  let stepping: Promise<StepResult> | undefined;
  async function doStep(): Promise<StepResult> {
    const now = clock.now();
    let did: StepResult["did"] = "nothing";
    let error: Error | undefined;
    let failedAt = 0;
    try {
      if (!creds) did = await enroll("it holds no certificate yet");
      else if (now >= creds.leaf.notAfter.getTime())
        did = await enroll(
          `its certificate (serial ${creds.leaf.serialHex}) expired at ${creds.leaf.notAfter.toISOString()} and cannot be renewed`,
        );
      else if (now >= renewAtMs!) did = await renew(creds);
      if (did === "nothing" && creds && now >= nextBundleAt && (await pollBundle(creds))) did = "bundle";
      else if (did !== "nothing") nextBundleAt = clock.now() + bundlePollMs;
      // A reload that failed is run again at each step until it works: the files are already new.
      if (did === "nothing" && creds && state.reload?.ok === false) await runReload(creds);
      const { lastError: _, ...rest } = state;
      state = { ...rest, failures: 0, lastSuccess: iso(clock.now()) };
      if (did === "enrolled" || did === "renewed")
        opts.onEvent?.({ kind: did, serial: state.serial!, notAfter: state.notAfter!, renewAfter: state.renewAfter! });
    } catch (e) {
      if (!(e instanceof MtlskitError)) throw e; // a bug, not a refusal: it reaches the caller
      error = e;
      failedAt = clock.now();
      state = {
        ...state,
        failures: state.failures + 1,
        lastError: { code: codeOf(e), message: e.message, at: iso(failedAt) },
      };
    }
    describeServers();
    // After a failure the delay counts from the failure's instant (the state's lastError.at).
    const after = error ? failedAt : clock.now();
    let next: number;
    if (error) {
      let delay = backoffDelay(state.failures, random(), backoff);
      // A certificate still valid is retried at least every quarter of what is left of it (and not more often than the base delay).
      if (creds && creds.leaf.notAfter.getTime() > after)
        delay = Math.min(delay, Math.max(backoff.baseMs, (creds.leaf.notAfter.getTime() - after) / 4));
      next = after + delay;
      opts.onEvent?.({
        kind: "error",
        code: state.lastError!.code,
        message: state.lastError!.message,
        retryInMs: delay,
      });
    } else next = Math.min(renewAtMs ?? after + bundlePollMs, nextBundleAt);
    const partial = { ...state, nextAttempt: iso(Math.max(after, next)), updatedAt: iso(after) };
    state = { ...partial, status: statusOf(partial, after) };
    store.saveState(state);
    return { did, ...(error ? { error } : {}), state };
  }

  const step = () => (stepping ??= doStep().finally(() => (stepping = undefined)));

  let running = false;
  let cancel: (() => void) | undefined;
  const loop = () => {
    if (!running) return;
    step()
      .catch((e: unknown) => {
        // A bug in a step must not end the loop silently: record it and retry with backoff.
        state = {
          ...state,
          failures: state.failures + 1,
          lastError: { code: "bug", message: String((e as Error)?.stack ?? e), at: iso(clock.now()) },
        };
        state = { ...state, nextAttempt: iso(clock.now() + backoffDelay(state.failures, random(), backoff)) };
        try {
          store.saveState(state);
        } catch {
          /* the state is best effort here */
        }
      })
      .finally(() => {
        if (!running) return;
        cancel = clock.setTimer(loop, Math.max(0, Date.parse(state.nextAttempt!) - clock.now()));
      });
  };

  return {
    step,
    start() {
      if (running) return;
      running = true;
      loop();
    },
    async stop() {
      running = false;
      cancel?.();
      await stepping?.catch(() => undefined);
      servers.close();
    },
    state: () => state,
    current: () => creds,
  };
}
