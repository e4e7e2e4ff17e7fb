/**
 * A Ledger reached over a message channel: `mtlskit serve --workers N`'s HTTP workers each hold a
 * RemoteLedger, and the primary process alone holds the real one (SQLite, PostgreSQL: any Ledger)
 * and answers them with serveLedger. So one process writes the database and its group commit
 * batches the requests of every worker: N processes opening one SQLite file fight over its write
 * lock (measured: half the rate of one process).
 *
 * The channel is node's IPC with `serialization: "advanced"` (the structured clone: Dates and
 * Buffers arrive as themselves); the calls (and the answers) of one event-loop turn travel as one
 * message, one pipe write. The guarantee is the wrapped ledger's: `record` resolves only
 * once the primary's ledger resolved it, that is once the row is durable. Requests carry ids; at
 * most `maxPending` wait at once and each at most `timeoutMs`; a channel that closed (the primary
 * is gone) rejects every waiting and later call with LedgerUnavailableError (the server's 503).
 *
 * Every member of Ledger is forwarded (FORWARDED's type makes tsc say so when Ledger gains one),
 * the ACME store's methods too (ACME_FORWARDED: `acme.eabKey` ...) when the primary's ledger has
 * one (RemoteLedgerOptions.acme), so `serve --workers N` on SQLite serves ACME like one process.
 */
import {
  type IssuedRecord,
  type Ledger,
  type LedgerRow,
  type LedgerStats,
  LedgerUnavailableError,
  type ListFilter,
  type RecordOutcome,
  type Revoked,
  type SchemaState,
  type TokenKind,
  type TokenRecord,
  type TokenVerdict,
  type WriteRowsResult,
} from "./ledger.ts";
import type { AcmeStore } from "./acme.ts";

/** LedgerChannel is one end of a message pipe (a cluster worker's `process`, the primary's `Worker`). */
export interface LedgerChannel {
  /** send posts a message (queued when the pipe is full); throws when the other end is gone. */
  send(message: unknown): unknown;
  on(event: "message", listener: (message: unknown) => void): unknown;
}

/**
 * FORWARDED: what a RemoteLedger may ask of the primary's ledger: every member of Ledger but
 * `kind` and `schema` (data, sent in the worker's config), `close` (the primary owns the
 * ledger) and `acme` (an object: its methods are ACME_FORWARDED). Typed against Ledger: a member
 * Ledger gains is a compile error here until it is forwarded or its absence is decided (see the
 * file's comment).
 */
const FORWARDED = {
  createToken: true,
  checkToken: true,
  revokeToken: true,
  tokens: true,
  record: true,
  get: true,
  list: true,
  revoke: true,
  stats: true,
  revoked: true,
  nextCrlNumber: true,
  readRows: true,
  writeRows: true,
  backup: true,
} as const satisfies Record<Exclude<keyof Ledger, "kind" | "schema" | "close" | "acme">, true>;
/** ACME_FORWARDED: every AcmeStore method, asked of the primary's `ledger.acme` as `acme.NAME`. */
const ACME_FORWARDED = {
  eabKey: true,
  get: true,
  find: true,
  write: true,
  addNonce: true,
  useNonce: true,
} as const satisfies Record<keyof AcmeStore, true>;
type AcmeMethod = `acme.${keyof typeof ACME_FORWARDED}`;
type RemoteMethod = keyof typeof FORWARDED | AcmeMethod;
const IS_METHOD = new Set<string>([...Object.keys(FORWARDED), ...Object.keys(ACME_FORWARDED).map((m) => `acme.${m}`)]);

/** LedgerCall is a request; LedgerReply its answer. Each message carries every call (or answer) of one event-loop turn: one pipe write, not one per call. */
interface LedgerCall {
  id: number;
  method: RemoteMethod;
  args: unknown[];
}
interface LedgerReply {
  id: number;
  value?: unknown;
  /** error: the ledger's rejection; `unavailable` when it was a LedgerUnavailableError. */
  error?: { message: string; unavailable: boolean };
}
interface CallsMessage {
  mtlskit: "ledger-calls";
  calls: LedgerCall[];
}
interface RepliesMessage {
  mtlskit: "ledger-replies";
  replies: LedgerReply[];
}

const isCall = (c: LedgerCall): boolean =>
  typeof c === "object" && c !== null && typeof c.id === "number" && IS_METHOD.has(c.method) && Array.isArray(c.args);

const isCalls = (m: unknown): m is CallsMessage =>
  typeof m === "object" &&
  m !== null &&
  (m as CallsMessage).mtlskit === "ledger-calls" &&
  Array.isArray((m as CallsMessage).calls);

const isReplies = (m: unknown): m is RepliesMessage =>
  typeof m === "object" &&
  m !== null &&
  (m as RepliesMessage).mtlskit === "ledger-replies" &&
  Array.isArray((m as RepliesMessage).replies);

/** Outbox gathers what one event-loop turn sends and sends it as one message. */
class Outbox<T> {
  private items: T[] = [];
  constructor(private readonly flush: (items: T[]) => void) {}
  push(item: T): void {
    if (this.items.length === 0) setImmediate(() => this.send());
    this.items.push(item);
  }
  private send(): void {
    const items = this.items;
    this.items = [];
    if (items.length > 0) this.flush(items);
  }
}

/**
 * serveLedger answers a channel's ledger calls with `ledger` (the primary's side). Each call is
 * its own promise, so a worker's records join the ledger's next group commit with everyone
 * else's. Returns the listener, for `off`.
 */
export function serveLedger(ledger: Ledger, channel: LedgerChannel): (message: unknown) => void {
  const outbox = new Outbox<LedgerReply>((replies) => {
    try {
      channel.send({ mtlskit: "ledger-replies", replies } satisfies RepliesMessage);
    } catch {
      // The worker is gone; its pending calls died with it.
    }
  });
  const answer = (call: LedgerCall) => {
    const acme = call.method.startsWith("acme.");
    const target: object | undefined = acme ? ledger.acme : ledger;
    let pending: Promise<unknown>;
    try {
      if (target === undefined) throw new LedgerUnavailableError(`ledger ${ledger.kind}: keeps no ACME state`);
      const name = acme ? call.method.slice("acme.".length) : call.method;
      const method = (target as Record<string, (...args: unknown[]) => Promise<unknown>>)[name]!;
      pending = method.apply(target, call.args);
    } catch (e) {
      pending = Promise.reject(e);
    }
    pending.then(
      (value) => outbox.push({ id: call.id, value }),
      (e: unknown) =>
        outbox.push({
          id: call.id,
          error: {
            message: e instanceof Error ? e.message : String(e),
            unavailable: e instanceof LedgerUnavailableError,
          },
        }),
    );
  };
  const listener = (message: unknown) => {
    if (!isCalls(message)) return;
    for (const call of message.calls) if (isCall(call)) answer(call);
  };
  channel.on("message", listener);
  return listener;
}

/** RemoteLedgerOptions bound what a RemoteLedger waits for. */
export interface RemoteLedgerOptions {
  /** maxPending: calls waiting at once; one more is LedgerUnavailableError at once. Default: 8192. */
  maxPending?: number;
  /** timeoutMs: how long a call waits for its answer. Default: 30,000 (the SQLite ledger's busy wait is 5 s). */
  timeoutMs?: number;
  /** acme: the primary's ledger has an ACME store (Ledger.acme): forward it. Default: false (no `acme`). */
  acme?: boolean;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  at: number;
}

/** RemoteLedger is the Ledger of a process that does not hold the ledger: every call is a message to the one that does. */
export class RemoteLedger implements Ledger {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private gone: string | undefined;
  private readonly maxPending: number;
  private readonly timeoutMs: number;
  private readonly sweep: NodeJS.Timeout;
  private readonly outbox: Outbox<LedgerCall>;
  /** acme: the primary's ACME store, each method a call (present when RemoteLedgerOptions.acme). */
  readonly acme: AcmeStore | undefined;

  /** `kind` and `schema` are the primary's ledger's (for /v1/health, logs and status). */
  constructor(
    readonly kind: string,
    readonly schema: SchemaState,
    private readonly channel: LedgerChannel,
    opts: RemoteLedgerOptions = {},
  ) {
    this.maxPending = opts.maxPending ?? 8192;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.acme = opts.acme
      ? {
          eabKey: (id, now) => this.call("acme.eabKey", [id, now]),
          get: (kind, id) => this.call("acme.get", [kind, id]),
          find: (kind, lookup) => this.call("acme.find", [kind, lookup]),
          write: (rows, bind) => this.call("acme.write", bind === undefined ? [rows] : [rows, bind]),
          addNonce: (nonce, expiresAt) => this.call("acme.addNonce", [nonce, expiresAt]),
          useNonce: (nonce, now) => this.call("acme.useNonce", [nonce, now]),
        }
      : undefined;
    this.outbox = new Outbox<LedgerCall>((calls) => {
      // send returning false only means the pipe is backed up (node queues the message); a throw is a channel gone.
      try {
        this.channel.send({ mtlskit: "ledger-calls", calls } satisfies CallsMessage);
      } catch {
        for (const c of calls) {
          const p = this.pending.get(c.id);
          this.pending.delete(c.id);
          p?.reject(new LedgerUnavailableError(`ledger ${kind}: the primary process cannot be reached`));
        }
      }
    });
    channel.on("message", (m) => {
      if (!isReplies(m)) return;
      for (const r of m.replies) {
        const p = this.pending.get(r.id);
        if (!p) continue; // timed out meanwhile
        this.pending.delete(r.id);
        if (r.error === undefined) p.resolve(r.value);
        else
          p.reject(
            r.error.unavailable ? new LedgerUnavailableError(r.error.message) : new Error(`ledger: ${r.error.message}`),
          );
      }
    });
    // One timer for every call: the map is in sending order, so the oldest are first.
    this.sweep = setInterval(
      () => {
        const limit = performance.now() - this.timeoutMs;
        for (const [id, p] of this.pending) {
          if (p.at > limit) break;
          this.pending.delete(id);
          p.reject(
            new LedgerUnavailableError(
              `ledger ${kind}: no answer from the primary process within ${this.timeoutMs} ms`,
            ),
          );
        }
      },
      Math.min(1000, this.timeoutMs),
    ).unref();
  }

  /** disconnected rejects every waiting call and every later one: the primary process is gone. */
  disconnected(why = "the primary process holding the ledger is gone"): void {
    this.gone ??= why;
    for (const p of this.pending.values()) p.reject(new LedgerUnavailableError(`ledger ${this.kind}: ${this.gone}`));
    this.pending.clear();
  }

  private call<T>(method: RemoteMethod, args: unknown[]): Promise<T> {
    if (this.gone !== undefined) return Promise.reject(new LedgerUnavailableError(`ledger ${this.kind}: ${this.gone}`));
    if (this.pending.size >= this.maxPending)
      return Promise.reject(
        new LedgerUnavailableError(
          `ledger ${this.kind}: ${this.maxPending} calls already wait for the primary process`,
        ),
      );
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, at: performance.now() });
      this.outbox.push({ id, method, args });
    });
  }

  createToken(
    service: string,
    kind: TokenKind,
    ttlMs: number,
    now: Date,
  ): Promise<{ token: string; record: TokenRecord }> {
    return this.call("createToken", [service, kind, ttlMs, now]);
  }
  checkToken(token: string, service: string, kind: TokenKind, now: Date): Promise<TokenVerdict> {
    return this.call("checkToken", [token, service, kind, now]);
  }
  revokeToken(id: string, now: Date): Promise<boolean> {
    return this.call("revokeToken", [id, now]);
  }
  tokens(filter?: { service?: string }): Promise<TokenRecord[]> {
    return this.call("tokens", filter === undefined ? [] : [filter]);
  }
  record(row: IssuedRecord, consume?: { tokenId: string; now: Date }): Promise<RecordOutcome> {
    return this.call("record", consume === undefined ? [row] : [row, consume]);
  }
  get(serial: string): Promise<IssuedRecord | undefined> {
    return this.call("get", [serial]);
  }
  list(filter?: ListFilter): Promise<IssuedRecord[]> {
    return this.call("list", filter === undefined ? [] : [filter]);
  }
  revoke(serial: string, reason: string, at: Date): Promise<boolean> {
    return this.call("revoke", [serial, reason, at]);
  }
  stats(now: Date): Promise<LedgerStats> {
    return this.call("stats", [now]);
  }
  revoked(now: Date): Promise<Revoked[]> {
    return this.call("revoked", [now]);
  }
  nextCrlNumber(atLeast: bigint): Promise<bigint> {
    return this.call("nextCrlNumber", [atLeast]);
  }
  readRows(table: LedgerRow["table"], after: string | undefined, limit: number): Promise<LedgerRow[]> {
    return this.call("readRows", [table, after, limit]);
  }
  writeRows(rows: LedgerRow[]): Promise<WriteRowsResult> {
    return this.call("writeRows", [rows]);
  }
  backup(file: string): Promise<void> {
    return this.call("backup", [file]);
  }
  /** close stops this side only (the primary closes the ledger): later calls are LedgerUnavailableError. */
  async close(): Promise<void> {
    clearInterval(this.sweep);
    this.disconnected("closed");
  }
}
