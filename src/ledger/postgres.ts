/**
 * The PostgreSQL ledger (`--ledger postgres://...`), for several `mtlskit serve` replicas sharing
 * one record: the one door to `pg` (node-postgres).
 *
 * No leader: every guarantee is the database's. A serial is unique by its PRIMARY KEY (INSERT ...
 * ON CONFLICT DO NOTHING: a second replica's row with the same serial inserts nothing); a token is
 * consumed by a conditional UPDATE (`WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL AND
 * expires_at > $now`) in the transaction that inserts the certificate's row, so of any number of
 * concurrent uses, on any replicas, exactly one updates a row (the others wait for its row lock,
 * re-read the row under READ COMMITTED and find it used); `record` resolves after COMMIT returned
 * (synchronous_commit as the database is configured). The CRL number is one shared counter row
 * (`counters`), taken by INSERT ... ON CONFLICT DO UPDATE ... RETURNING.
 *
 * Failing fast: a bounded pool (default 10 connections), a connect timeout, a server-side
 * statement_timeout and a client-side query_timeout, so a dead or unreachable database answers
 * LedgerUnavailableError (the server's 503) within seconds and never hangs a request. The pool
 * reconnects by itself once the database is back: nothing to reopen.
 *
 * Schema: versioned migrations (MIGRATIONS, the same version numbers as sqlite.ts) applied on open
 * in one transaction under pg_advisory_xact_lock, so replicas starting together apply them once;
 * a schema newer than this code is refused (no downgrade). Times are timestamptz, der bytea.
 *
 * Secrets: a password may come from the URL, PGPASSWORD or ~/.pgpass (pg reads all three); `kind`
 * and every message name the database as postgres://HOST:PORT/DB, never with a user or password.
 */
import pg from "pg";
import { UsageError } from "../errors.ts";
import {
  checkRow,
  type IssuedRecord,
  type Ledger,
  type LedgerRow,
  type LedgerStats,
  LedgerUnavailableError,
  type ListFilter,
  type RecordOutcome,
  redactUrl,
  type Revoked,
  rowKey,
  rowSha256,
  SCHEMA_VERSION,
  type SchemaState,
  type StoredToken,
  type TokenKind,
  type TokenRecord,
  tokenRefusal,
  type TokenVerdict,
  type WriteRowsResult,
} from "./ledger.ts";
import { hashSecret, newToken, parseToken, secretMatches } from "./tokens.ts";
import type { AcmeKind, AcmeRow, AcmeStore, AcmeWriteOutcome, EabVerdict } from "./acme.ts";

/**
 * MIGRATIONS: each schema version's SQL, applied in order from the version found. Version 1 is
 * SQLite's version 1 (tokens, certificates); version 2 adds the shared counters (the CRL number)
 * and the index of revoked rows (Ledger.revoked); version 3 the ACME tables (Ledger.acme, acme.ts).
 */
export const MIGRATIONS: readonly { version: number; sql: string }[] = [
  {
    version: 1,
    sql: `
CREATE TABLE certificates (
  serial text PRIMARY KEY,
  service text NOT NULL,
  sans text[] NOT NULL,
  not_before timestamptz NOT NULL,
  not_after timestamptz NOT NULL,
  sha256 text NOT NULL,
  der bytea NOT NULL,
  how text NOT NULL,
  token_id text,
  renewed_from text,
  requester text NOT NULL,
  issued_at timestamptz NOT NULL,
  revoked_at timestamptz,
  revoked_reason text
);
CREATE INDEX certificates_issued ON certificates (issued_at);
CREATE INDEX certificates_service ON certificates (service, issued_at);
CREATE TABLE tokens (
  id text PRIMARY KEY,
  kind text NOT NULL,
  service text NOT NULL,
  secret_sha256 bytea NOT NULL,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at timestamptz,
  used_by text,
  revoked_at timestamptz
);`,
  },
  {
    version: 2,
    sql: `
CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL);
CREATE INDEX certificates_revoked ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;`,
  },
  {
    version: 3,
    sql: `
CREATE TABLE acme_eab (token_id text PRIMARY KEY, hmac_key bytea NOT NULL);
CREATE TABLE acme_objects (
  kind text NOT NULL,
  id text NOT NULL,
  version integer NOT NULL,
  lookup text,
  doc text NOT NULL,
  PRIMARY KEY (kind, id)
);
CREATE UNIQUE INDEX acme_objects_lookup ON acme_objects (kind, lookup);
CREATE TABLE acme_nonces (nonce text PRIMARY KEY, expires_at timestamptz NOT NULL);`,
  },
];

/** MIGRATION_LOCK: the pg_advisory_xact_lock key migrations run under (any constant both replicas agree on: "mtlskit" in ASCII). */
const MIGRATION_LOCK = "30808781603170676";

/** PostgresLedgerOptions: the pool and its timeouts. */
export interface PostgresLedgerOptions {
  /** migrate: apply pending migrations on open (false: read-only: an older schema is read at its own version, writing nothing; a database without a ledger is refused naming `mtlskit ledger migrate`). Default: true. */
  migrate?: boolean;
  /** poolMax: at most this many connections per process. Default: 10. */
  poolMax?: number;
  /** connectTimeoutMs: how long a new connection may take before the ledger is unavailable. Default: 5000. */
  connectTimeoutMs?: number;
  /** statementTimeoutMs: the longest a statement may run (server side; the client gives up 2 s later). Default: 10000. */
  statementTimeoutMs?: number;
}

/** PostgresLedger is the PostgreSQL Ledger plus what its tests observe. */
export interface PostgresLedger extends Ledger {
  /** pool: connections open and idle now. */
  poolStats(): { total: number; idle: number; waiting: number };
}

interface CertRow {
  serial: string;
  service: string;
  sans: string[];
  not_before: Date;
  not_after: Date;
  sha256: string;
  der: Buffer;
  how: IssuedRecord["how"];
  token_id: string | null;
  renewed_from: string | null;
  requester: string;
  issued_at: Date;
  revoked_at: Date | null;
  revoked_reason: string | null;
}

interface TokenRow {
  id: string;
  kind: TokenKind;
  service: string;
  secret_sha256: Buffer;
  created_at: Date;
  expires_at: Date;
  used_at: Date | null;
  used_by: string | null;
  revoked_at: Date | null;
}

interface AcmeDbRow {
  kind: AcmeKind;
  id: string;
  version: number;
  lookup: string | null;
  doc: string;
}

const opt = <T>(v: T | null): T | undefined => (v === null ? undefined : v);

const toAcme = (r: AcmeDbRow): AcmeRow => ({
  kind: r.kind,
  id: r.id,
  version: r.version,
  lookup: opt(r.lookup),
  doc: r.doc,
});

function toIssued(r: CertRow): IssuedRecord {
  return {
    serial: r.serial,
    service: r.service,
    sans: r.sans,
    notBefore: r.not_before,
    notAfter: r.not_after,
    sha256: r.sha256,
    der: r.der,
    how: r.how,
    tokenId: opt(r.token_id),
    renewedFrom: opt(r.renewed_from),
    requester: r.requester,
    issuedAt: r.issued_at,
    revokedAt: opt(r.revoked_at),
    revokedReason: opt(r.revoked_reason),
  };
}

function toToken(r: TokenRow): TokenRecord {
  return {
    id: r.id,
    kind: r.kind,
    service: r.service,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    usedAt: opt(r.used_at),
    usedBy: opt(r.used_by),
    revokedAt: opt(r.revoked_at),
  };
}

const toStored = (r: TokenRow): StoredToken => ({ ...toToken(r), secretSha256: r.secret_sha256 });

const CERT_COLUMNS =
  "serial, service, sans, not_before, not_after, sha256, der, how, token_id, renewed_from, requester, issued_at, revoked_at, revoked_reason";
const certValues = (r: IssuedRecord) => [
  r.serial,
  r.service,
  r.sans,
  r.notBefore,
  r.notAfter,
  r.sha256,
  r.der,
  r.how,
  r.tokenId ?? null,
  r.renewedFrom ?? null,
  r.requester,
  r.issuedAt,
  r.revokedAt ?? null,
  r.revokedReason ?? null,
];
const TOKEN_COLUMNS = "id, kind, service, secret_sha256, created_at, expires_at, used_at, used_by, revoked_at";
const tokenValues = (t: StoredToken) => [
  t.id,
  t.kind,
  t.service,
  t.secretSha256,
  t.createdAt,
  t.expiresAt,
  t.usedAt ?? null,
  t.usedBy ?? null,
  t.revokedAt ?? null,
];
const params = (n: number) => Array.from({ length: n }, (_, i) => `$${i + 1}`).join(", ");

/** FAILURES words a SQLSTATE (or its class, the first two characters) or a socket error code: why, and the fix. */
const FAILURES: Record<string, string> = {
  ECONNREFUSED: "nothing accepts connections there: PostgreSQL is down or on another port; start it, or fix the URL",
  ENOTFOUND: "the host name does not resolve; fix the URL's host",
  EAI_AGAIN: "the host name does not resolve now (DNS); retry, or fix the URL's host",
  ETIMEDOUT: "the connection timed out; check that PostgreSQL is up and reachable (firewall, host)",
  EHOSTUNREACH: "the host is unreachable; check the network",
  ECONNRESET: "the connection was reset: PostgreSQL restarted or the network dropped it; retry",
  EPIPE: "the connection was closed: PostgreSQL restarted or the network dropped it; retry",
  "28P01":
    "password authentication failed; give the password through PGPASSWORD or ~/.pgpass (mode 0600) rather than the URL, and check the user",
  "28000": "the server refused this user (pg_hba.conf); ask the database's administrator for access from this host",
  "3D000": "the database does not exist; create it (createdb -O USER DB) and run `mtlskit ledger migrate`",
  "42501":
    "permission denied: the user must own the ledger's tables (or the database, to create them); ask the database's administrator",
  "42P01":
    "a ledger table is missing: the database is not an mtlskit ledger of this schema; run `mtlskit ledger migrate --ledger URL`, or name the right database",
  "53300": "too many connections; lower the replicas' pools or raise max_connections",
  "57P01": "PostgreSQL is shutting down (admin shutdown); retry once it is back",
  "57P02": "PostgreSQL crashed (crash shutdown); retry once it is back",
  "57P03": "PostgreSQL is starting or in recovery and cannot accept connections yet; retry",
  "57014": "the statement timed out (statement_timeout): the database is overloaded or a lock is held; retry",
  "40001": "a serialization failure (concurrent transactions); retry",
  "40P01": "a deadlock was detected; retry",
  "25006": "the database is read-only (a standby?); point the URL at the primary",
  "53100": "the database's disk is full; free space on its server",
  "08": "the connection to PostgreSQL failed; check that it is up and reachable, then retry",
  "53": "PostgreSQL is out of resources; ask the database's administrator",
  "58": "PostgreSQL had a system error (I/O); ask the database's administrator",
  XX: "PostgreSQL had an internal error; ask the database's administrator",
};

/** CONNECTION_TEXT: the messages pg's own client gives a lost or refused connection (no code). */
const CONNECTION_TEXT =
  /Connection terminated|timeout exceeded when trying to connect|Query read timeout|connection timeout|Client was closed|Client has encountered a connection error|server closed the connection|ended unexpectedly/i;

/** ROW_FAULT: SQLSTATE classes of a bad row (a caller's bug), not of the database failing: data exceptions (22), integrity (23). */
const ROW_FAULT = /^2[23]/;

class PostgresLedgerImpl implements PostgresLedger {
  readonly kind: string;
  schema: SchemaState = { version: SCHEMA_VERSION, foundVersion: undefined };
  private closed = false;
  /** acme: undefined when a read-only open found a schema older than 3 (no ACME tables). */
  acme: AcmeStore | undefined;
  private noncesAdded = 0;

  constructor(
    private readonly pool: pg.Pool,
    kind: string,
    private readonly secret: string | undefined,
  ) {
    this.kind = kind;
    this.acme = {
      eabKey: (id, now) => this.eabKey(id, now),
      get: async (kind, id) => {
        const r = (
          await this.query<AcmeDbRow>("read an ACME object", "SELECT * FROM acme_objects WHERE kind = $1 AND id = $2", [
            kind,
            id,
          ])
        )[0];
        return r ? toAcme(r) : undefined;
      },
      find: async (kind, lookup) => {
        const r = (
          await this.query<AcmeDbRow>(
            "read an ACME object",
            "SELECT * FROM acme_objects WHERE kind = $1 AND lookup = $2",
            [kind, lookup],
          )
        )[0];
        return r ? toAcme(r) : undefined;
      },
      write: (rows, bind) => this.acmeWrite(rows, bind),
      addNonce: async (nonce, expiresAt) => {
        await this.query(
          "add a nonce",
          "INSERT INTO acme_nonces (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
          [nonce, expiresAt],
        );
        // Expired nonces are swept now and then (by whichever replica adds the 1000th), not on every request.
        if (++this.noncesAdded % 1000 === 0)
          await this.query("sweep nonces", "DELETE FROM acme_nonces WHERE expires_at <= $1", [new Date()]);
      },
      // One statement: of concurrent uses of one nonce, on any replicas, exactly one deletes the row
      // (the others wait for its row lock, then find it gone under READ COMMITTED).
      useNonce: async (nonce, now) =>
        (
          await this.query(
            "use a nonce",
            "DELETE FROM acme_nonces WHERE nonce = $1 AND expires_at > $2 RETURNING nonce",
            [nonce, now],
          )
        ).length === 1,
    };
  }

  /** eabKey: the HMAC key of a usable `acme` token (AcmeStore.eabKey). */
  private async eabKey(id: string, now: Date): Promise<EabVerdict> {
    const row = (
      await this.query<TokenRow & { hmac_key: Buffer | null }>(
        "read an EAB key",
        "SELECT t.*, e.hmac_key FROM tokens t LEFT JOIN acme_eab e ON e.token_id = t.id WHERE t.id = $1",
        [id],
      )
    )[0];
    if (!row) return { ok: false, reason: "unknown" };
    if (row.kind !== "acme" || !row.hmac_key) return { ok: false, reason: "wrong-kind" };
    if (row.revoked_at !== null) return { ok: false, reason: "revoked" };
    if (row.used_at !== null) return { ok: false, reason: "used" };
    if (row.expires_at.getTime() <= now.getTime()) return { ok: false, reason: "expired" };
    return { ok: true, token: toToken(row), hmacKey: row.hmac_key };
  }

  /**
   * acmeWrite writes ACME rows (and binds an EAB token) in one transaction; a refusal rolls it
   * back. The bind is the token's conditional UPDATE (as `record`'s): two replicas binding one EAB
   * key, one wins and the other finds it used. A version n row replaces n-1 by `WHERE version =
   * n-1`: a concurrent writer waits for the row lock and then matches nothing (`conflict`).
   */
  private acmeWrite(
    rows: AcmeRow[],
    bind: { tokenId: string; account: string; now: Date } | undefined,
  ): Promise<AcmeWriteOutcome> {
    return this.transaction<AcmeWriteOutcome>("write ACME objects", async (c) => {
      const refuse = (reason: Exclude<AcmeWriteOutcome, { ok: true }>["reason"]) => ({
        value: { ok: false as const, reason },
        rollback: true,
      });
      if (bind) {
        const won = await c.query(
          "UPDATE tokens SET used_at = $1, used_by = $2 WHERE id = $3 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1",
          [bind.now, `acme:${bind.account}`, bind.tokenId],
        );
        if (won.rowCount !== 1) {
          const tok = (await c.query<TokenRow>("SELECT * FROM tokens WHERE id = $1", [bind.tokenId])).rows[0];
          return refuse(tokenRefusal(tok));
        }
      }
      for (const r of rows) {
        if (r.version === 1) {
          // No conflict target: a taken id and a taken lookup both insert nothing.
          const ins = await c.query(
            "INSERT INTO acme_objects (kind, id, version, lookup, doc) VALUES ($1, $2, 1, $3, $4) ON CONFLICT DO NOTHING",
            [r.kind, r.id, r.lookup ?? null, r.doc],
          );
          if (ins.rowCount !== 1) {
            const there = await c.query("SELECT 1 FROM acme_objects WHERE kind = $1 AND id = $2", [r.kind, r.id]);
            return refuse(there.rowCount === 1 ? "conflict" : "lookup-taken");
          }
          continue;
        }
        let changed: number | null;
        try {
          changed = (
            await c.query(
              "UPDATE acme_objects SET version = $1, lookup = $2, doc = $3 WHERE kind = $4 AND id = $5 AND version = $6",
              [r.version, r.lookup ?? null, r.doc, r.kind, r.id, r.version - 1],
            )
          ).rowCount;
        } catch (e) {
          // unique_violation: the new lookup (a rolled-over account key) is another account's.
          if ((e as { code?: unknown }).code !== "23505") throw e;
          return refuse("lookup-taken");
        }
        if (changed !== 1) return refuse("conflict");
      }
      return { value: { ok: true } };
    });
  }

  poolStats() {
    return { total: this.pool.totalCount, idle: this.pool.idleCount, waiting: this.pool.waitingCount };
  }

  /**
   * unavailable turns a pg or socket error into LedgerUnavailableError naming the database
   * (redacted), what was being done, why and the fix; a row's fault or a bug is returned as it is.
   */
  unavailable(e: unknown, doing: string): unknown {
    if (e instanceof LedgerUnavailableError || e instanceof TypeError || e instanceof UsageError) return e;
    const err = e as { code?: unknown; message?: unknown } | undefined;
    const code = typeof err?.code === "string" ? err.code : undefined;
    const text = typeof err?.message === "string" ? err.message : String(e);
    if (code !== undefined && ROW_FAULT.test(code) && code.length === 5) return e;
    const why =
      (code && (FAILURES[code] ?? FAILURES[code.slice(0, 2)])) ||
      (CONNECTION_TEXT.test(text)
        ? "the connection to PostgreSQL failed or timed out; check that it is up and reachable, then retry"
        : `PostgreSQL said: ${text}`);
    // A server message may quote what the client sent; never let a password through.
    const safe = this.secret ? why.split(this.secret).join("***") : why;
    return new LedgerUnavailableError(`ledger ${this.kind}: cannot ${doing}: ${safe}${code ? ` (${code})` : ""}`, {
      cause: e,
    });
  }

  /** query runs one statement on any pooled connection. */
  private async query<R extends pg.QueryResultRow>(doing: string, sql: string, values: unknown[] = []): Promise<R[]> {
    if (this.closed) throw new LedgerUnavailableError(`ledger ${this.kind}: closed`);
    try {
      return (await this.pool.query<R>(sql, values)).rows;
    } catch (e) {
      throw this.unavailable(e, doing);
    }
  }

  /** transaction runs `f` between BEGIN and COMMIT on one connection; ROLLBACK when `f` throws or returns rollback. A broken connection is destroyed, not reused. */
  async transaction<T>(doing: string, f: (c: pg.PoolClient) => Promise<{ value: T; rollback?: boolean }>): Promise<T> {
    if (this.closed) throw new LedgerUnavailableError(`ledger ${this.kind}: closed`);
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      throw this.unavailable(e, doing);
    }
    let broken: Error | undefined;
    try {
      await client.query("BEGIN");
      let out: { value: T; rollback?: boolean };
      try {
        out = await f(client);
      } catch (e) {
        await client.query("ROLLBACK").catch((r: Error) => {
          broken = r;
        });
        throw e;
      }
      await client.query(out.rollback ? "ROLLBACK" : "COMMIT");
      return out.value;
    } catch (e) {
      const mapped = this.unavailable(e, doing);
      if (mapped instanceof LedgerUnavailableError) broken ??= mapped;
      throw mapped;
    } finally {
      client.release(broken);
    }
  }

  async migrate(apply: boolean): Promise<void> {
    const doing = "apply its schema migrations";
    const found = async (c: pg.PoolClient | pg.Pool): Promise<number | undefined> => {
      // pg_class read as a table (this statement's snapshot), not to_regclass: a backend's catalog
      // cache is not refreshed by taking an advisory lock, so it may miss a table just committed.
      const t = await c.query<{ t: boolean }>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'schema_version' AND n.nspname = current_schema()) AS t",
      );
      if (!t.rows[0]?.t) return undefined;
      const v = await c.query<{ v: number | null }>("SELECT max(version) AS v FROM schema_version");
      return v.rows[0]?.v ?? undefined;
    };
    const judge = (v: number | undefined) => {
      if (v !== undefined && v > SCHEMA_VERSION)
        throw new LedgerUnavailableError(
          `ledger ${this.kind}: schema version ${v} is newer than this mtlskit understands (${SCHEMA_VERSION}): a newer mtlskit migrated it; upgrade mtlskit on every replica (a schema is never downgraded)`,
        );
    };
    let now: number | undefined;
    try {
      now = await found(this.pool);
    } catch (e) {
      throw this.unavailable(e, doing);
    }
    judge(now);
    this.schema = { version: now ?? 0, foundVersion: now };
    if (now === SCHEMA_VERSION) return;
    if (!apply) {
      if (now === undefined)
        throw new LedgerUnavailableError(
          `ledger ${this.kind}: holds no mtlskit ledger yet; run \`mtlskit ledger migrate --ledger postgres://...\` (or start \`mtlskit serve --ledger ...\`, which creates it)`,
        );
      // Read-only commands read an older ledger at its own version (every version has tokens and
      // certificates) and write nothing; serve, token create and `ledger migrate` migrate it.
      if (now < 3) this.acme = undefined;
      return;
    }
    this.schema = await this.transaction(doing, async (c) => {
      // Replicas starting together queue here; each re-reads the version under the lock, so the
      // migrations run once and the others find them done.
      await c.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
      const v = await found(c);
      judge(v);
      const from = v ?? 0;
      if (from === SCHEMA_VERSION) return { value: { version: from, foundVersion: v } };
      if (v === undefined) {
        // Another program's tables are not taken for a ledger (nothing is added beside them).
        const others = await c.query<{ relname: string }>(
          "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname IN ('certificates', 'tokens', 'counters') ORDER BY 1",
        );
        if (others.rows.length > 0)
          throw new LedgerUnavailableError(
            `ledger ${this.kind}: the database has tables ${others.rows.map((r) => r.relname).join(", ")} but no schema_version: it is not an mtlskit ledger; name another database (createdb -O USER mtlskit)`,
          );
        await c.query("CREATE TABLE schema_version (version integer NOT NULL)");
      }
      for (const m of MIGRATIONS) if (m.version > from) await c.query(m.sql);
      await c.query("DELETE FROM schema_version");
      await c.query("INSERT INTO schema_version (version) VALUES ($1)", [SCHEMA_VERSION]);
      return { value: { version: SCHEMA_VERSION, foundVersion: v } };
    });
  }

  async createToken(
    service: string,
    kind: TokenKind,
    ttlMs: number,
    now: Date,
  ): Promise<{ token: string; record: TokenRecord }> {
    for (;;) {
      const t = newToken();
      // An EAB key's HMAC key must be read back to verify a binding: kept as its 32 bytes beside
      // the token, in the same statement (src/ledger/acme.ts).
      const rows = await this.query<TokenRow>(
        "create a token",
        `WITH t AS (INSERT INTO tokens (id, kind, service, secret_sha256, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (id) DO NOTHING RETURNING *),
         e AS (INSERT INTO acme_eab (token_id, hmac_key) SELECT id, $7 FROM t WHERE $2 = 'acme')
         SELECT * FROM t`,
        [
          t.id,
          kind,
          service,
          hashSecret(t.secret),
          now,
          new Date(now.getTime() + ttlMs),
          Buffer.from(t.secret, "base64url"),
        ],
      );
      // 64 random bits: a collision is astronomically rare, but a retry costs nothing.
      if (rows.length === 1) return { token: t.token, record: toToken(rows[0]!) };
    }
  }

  async checkToken(token: string, service: string, kind: TokenKind, now: Date): Promise<TokenVerdict> {
    const parsed = parseToken(token);
    if (!parsed) return { ok: false, reason: "malformed" };
    const row = (await this.query<TokenRow>("read a token", "SELECT * FROM tokens WHERE id = $1", [parsed.id]))[0];
    // Compared even when the id is unknown (against a dummy): the same work either way.
    if (!secretMatches(parsed.secret, row?.secret_sha256) || !row) return { ok: false, reason: "unknown" };
    if (row.revoked_at !== null) return { ok: false, reason: "revoked" };
    if (row.used_at !== null) return { ok: false, reason: "used", usedBy: opt(row.used_by) };
    if (row.expires_at.getTime() <= now.getTime()) return { ok: false, reason: "expired" };
    if (row.kind !== kind) return { ok: false, reason: "wrong-kind" };
    if (row.service !== service) return { ok: false, reason: "wrong-service" };
    return { ok: true, token: toToken(row) };
  }

  async revokeToken(id: string, now: Date): Promise<boolean> {
    const rows = await this.query(
      "revoke a token",
      "UPDATE tokens SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2 RETURNING id",
      [now, id],
    );
    return rows.length > 0;
  }

  async tokens(filter: { service?: string } = {}): Promise<TokenRecord[]> {
    const rows =
      filter.service === undefined
        ? await this.query<TokenRow>(
            "list tokens",
            'SELECT * FROM tokens ORDER BY created_at DESC, id COLLATE "C" DESC',
          )
        : await this.query<TokenRow>(
            "list tokens",
            'SELECT * FROM tokens WHERE service = $1 ORDER BY created_at DESC, id COLLATE "C" DESC',
            [filter.service],
          );
    return rows.map(toToken);
  }

  async record(row: IssuedRecord, consume?: { tokenId: string; now: Date }): Promise<RecordOutcome> {
    checkRow(row);
    // A renewal consumes no token: one INSERT in autocommit (durable when it returns), one round
    // trip instead of BEGIN, INSERT, COMMIT.
    if (!consume) {
      const inserted = await this.query(
        "record a certificate",
        `INSERT INTO certificates (${CERT_COLUMNS}) VALUES (${params(14)}) ON CONFLICT (serial) DO NOTHING RETURNING serial`,
        certValues(row),
      );
      return inserted.length === 1 ? { ok: true } : { ok: false, reason: "duplicate-serial" };
    }
    const { tokenId, now } = consume;
    return this.transaction<RecordOutcome>("record a certificate", async (c) => {
      const won = await c.query(
        "UPDATE tokens SET used_at = $1, used_by = $2 WHERE id = $3 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1",
        [now, row.serial, tokenId],
      );
      if (won.rowCount !== 1) {
        const tok = (await c.query<TokenRow>("SELECT * FROM tokens WHERE id = $1", [tokenId])).rows[0];
        const reason = tokenRefusal(tok);
        return { value: { ok: false, reason }, rollback: true };
      }
      const inserted = await c.query(
        `INSERT INTO certificates (${CERT_COLUMNS}) VALUES (${params(14)}) ON CONFLICT (serial) DO NOTHING`,
        certValues(row),
      );
      if (inserted.rowCount !== 1) return { value: { ok: false, reason: "duplicate-serial" }, rollback: true };
      return { value: { ok: true } };
    });
  }

  async get(serial: string): Promise<IssuedRecord | undefined> {
    const r = (
      await this.query<CertRow>("read a certificate", "SELECT * FROM certificates WHERE serial = $1", [serial])
    )[0];
    return r ? toIssued(r) : undefined;
  }

  async list(filter: ListFilter = {}): Promise<IssuedRecord[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.service !== undefined) {
      args.push(filter.service);
      where.push(`service = $${args.length}`);
    }
    if (filter.validAt !== undefined) {
      args.push(filter.validAt);
      where.push(`not_before <= $${args.length} AND not_after > $${args.length} AND revoked_at IS NULL`);
    }
    let sql = `SELECT * FROM certificates${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY issued_at DESC, serial COLLATE "C" DESC`;
    if (filter.limit !== undefined) {
      args.push(Math.max(0, Math.floor(filter.limit)));
      sql += ` LIMIT $${args.length}`;
    }
    return (await this.query<CertRow>("list certificates", sql, args)).map(toIssued);
  }

  async revoke(serial: string, reason: string, at: Date): Promise<boolean> {
    // One statement: the first revocation is kept (coalesce), and a row that exists says so.
    const rows = await this.query(
      "revoke a certificate",
      `UPDATE certificates SET revoked_reason = CASE WHEN revoked_at IS NULL THEN $2 ELSE revoked_reason END,
         revoked_at = coalesce(revoked_at, $3) WHERE serial = $1 RETURNING serial`,
      [serial, reason, at],
    );
    return rows.length > 0;
  }

  async stats(now: Date): Promise<LedgerStats> {
    const rows = await this.query<{ n: number; r: number; t: number }>(
      "count rows",
      `SELECT (SELECT count(*)::int FROM certificates) AS n,
              (SELECT count(*)::int FROM certificates WHERE revoked_at IS NOT NULL) AS r,
              (SELECT count(*)::int FROM tokens WHERE used_at IS NULL AND revoked_at IS NULL AND expires_at > $1) AS t`,
      [now],
    );
    const s = rows[0]!;
    return { certificates: s.n, revoked: s.r, tokensOutstanding: s.t };
  }

  async revoked(now: Date): Promise<Revoked[]> {
    const rows = await this.query<{
      serial: string;
      service: string;
      revoked_reason: string | null;
      revoked_at: Date;
      not_after: Date;
    }>(
      "list revocations",
      `SELECT serial, service, revoked_reason, revoked_at, not_after FROM certificates
       WHERE revoked_at IS NOT NULL AND not_after > $1 ORDER BY revoked_at, serial COLLATE "C"`,
      [now],
    );
    return rows.map((r) => ({
      serial: r.serial,
      service: r.service,
      reason: r.revoked_reason ?? "unspecified",
      revokedAt: r.revoked_at,
      notAfter: r.not_after,
    }));
  }

  async nextCrlNumber(atLeast: bigint): Promise<bigint> {
    const rows = await this.query<{ value: string }>(
      "take a CRL number",
      `INSERT INTO counters (name, value) VALUES ('crl_number', $1)
       ON CONFLICT (name) DO UPDATE SET value = greatest(counters.value + 1, excluded.value) RETURNING value::text`,
      [atLeast.toString()],
    );
    return BigInt(rows[0]!.value);
  }

  async readRows(table: LedgerRow["table"], after: string | undefined, limit: number): Promise<LedgerRow[]> {
    if (table === "acme_eab")
      return (
        await this.query<{ token_id: string; hmac_key: Buffer }>(
          `read ${table}`,
          `SELECT * FROM acme_eab WHERE $1::text IS NULL OR token_id COLLATE "C" > $1 ORDER BY token_id COLLATE "C" LIMIT $2`,
          [after ?? null, limit],
        )
      ).map((r): LedgerRow => ({ table, row: { tokenId: r.token_id, hmacKey: r.hmac_key } }));
    if (table === "acme_objects") {
      // Byte order on (kind, id): rowId's (`KIND/ID`) order, as SQLite and copy.ts's merge compare.
      const cut = after?.indexOf("/") ?? -1;
      const [kind, id] = after === undefined ? ["", ""] : [after.slice(0, cut), after.slice(cut + 1)];
      return (
        await this.query<AcmeDbRow>(
          `read ${table}`,
          `SELECT * FROM acme_objects WHERE (kind COLLATE "C", id COLLATE "C") > ($1::text, $2::text) ORDER BY kind COLLATE "C", id COLLATE "C" LIMIT $3`,
          [kind, id, limit],
        )
      ).map((r): LedgerRow => ({ table, row: toAcme(r) }));
    }
    const key = table === "tokens" ? "id" : "serial";
    const rows = await this.query<TokenRow & CertRow>(
      `read ${table}`,
      `SELECT * FROM ${table} WHERE $1::text IS NULL OR ${key} COLLATE "C" > $1 ORDER BY ${key} COLLATE "C" LIMIT $2`,
      [after ?? null, limit],
    );
    return rows.map((r) =>
      table === "tokens" ? { table, row: toStored(r) } : { table: "certificates", row: toIssued(r) },
    );
  }

  async writeRows(rows: LedgerRow[]): Promise<WriteRowsResult> {
    for (const r of rows) if (r.table === "certificates") checkRow(r.row);
    return this.transaction<WriteRowsResult>(`copy ${rows.length} rows`, async (c) => {
      const out: WriteRowsResult = { added: 0, same: 0, conflicts: [] };
      for (const r of rows) {
        if (r.table === "acme_eab" || r.table === "acme_objects") {
          const ins =
            r.table === "acme_eab"
              ? await c.query("INSERT INTO acme_eab (token_id, hmac_key) VALUES ($1, $2) ON CONFLICT DO NOTHING", [
                  r.row.tokenId,
                  r.row.hmacKey,
                ])
              : await c.query(
                  "INSERT INTO acme_objects (kind, id, version, lookup, doc) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                  [r.row.kind, r.row.id, r.row.version, r.row.lookup ?? null, r.row.doc],
                );
          if (ins.rowCount === 1) {
            out.added++;
            continue;
          }
          const there: LedgerRow | undefined =
            r.table === "acme_eab"
              ? (
                  await c.query<{ hmac_key: Buffer }>("SELECT hmac_key FROM acme_eab WHERE token_id = $1", [
                    r.row.tokenId,
                  ])
                ).rows.map(
                  (e): LedgerRow => ({ table: "acme_eab", row: { tokenId: r.row.tokenId, hmacKey: e.hmac_key } }),
                )[0]
              : // Absent: the insert was skipped for another object holding its lookup key.
                (
                  await c.query<AcmeDbRow>("SELECT * FROM acme_objects WHERE kind = $1 AND id = $2", [
                    r.row.kind,
                    r.row.id,
                  ])
                ).rows.map((o): LedgerRow => ({ table: "acme_objects", row: toAcme(o) }))[0];
          if (there && rowSha256(there) === rowSha256(r)) out.same++;
          else out.conflicts.push(rowKey(r));
          continue;
        }
        const ins =
          r.table === "tokens"
            ? await c.query(
                `INSERT INTO tokens (${TOKEN_COLUMNS}) VALUES (${params(9)}) ON CONFLICT (id) DO NOTHING`,
                tokenValues(r.row),
              )
            : await c.query(
                `INSERT INTO certificates (${CERT_COLUMNS}) VALUES (${params(14)}) ON CONFLICT (serial) DO NOTHING`,
                certValues(r.row),
              );
        if (ins.rowCount === 1) {
          out.added++;
          continue;
        }
        const there =
          r.table === "tokens"
            ? (await c.query<TokenRow>("SELECT * FROM tokens WHERE id = $1", [r.row.id])).rows.map(
                (t): LedgerRow => ({ table: "tokens", row: toStored(t) }),
              )[0]!
            : (await c.query<CertRow>("SELECT * FROM certificates WHERE serial = $1", [r.row.serial])).rows.map(
                (x): LedgerRow => ({ table: "certificates", row: toIssued(x) }),
              )[0]!;
        if (rowSha256(there) === rowSha256(r)) out.same++;
        else out.conflicts.push(rowKey(r));
      }
      return {
        value: out.conflicts.length > 0 ? { added: 0, same: out.same, conflicts: out.conflicts } : out,
        rollback: out.conflicts.length > 0,
      };
    });
  }

  async backup(_file: string): Promise<void> {
    throw new UsageError(
      `ledger ${this.kind}: a PostgreSQL ledger is backed up by PostgreSQL's own tool, consistent while the replicas run: pg_dump --format=custom --file FILE '${this.kind.replace(/^postgres:\/\/([^:/]+):(\d+)\//, "postgres://USER@$1:$2/")}' (password from PGPASSWORD or ~/.pgpass); or copy it into a SQLite file: mtlskit ledger migrate --from postgres://... --to sqlite:FILE`,
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

/**
 * openPostgresLedger connects to `url` (postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=...])
 * and applies pending migrations; rejects with LedgerUnavailableError (redacted) when it cannot.
 */
export async function openPostgresLedger(url: string, opts: PostgresLedgerOptions = {}): Promise<PostgresLedger> {
  const kind = redactUrl(url);
  let secret: string | undefined;
  try {
    secret = decodeURIComponent(new URL(url).password) || undefined;
  } catch {
    throw new UsageError(
      `ledger ${kind}: the URL cannot be read; write it as postgres://USER@HOST:PORT/DB (the password in PGPASSWORD or ~/.pgpass)`,
    );
  }
  const statementMs = opts.statementTimeoutMs ?? 10_000;
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.poolMax ?? 10,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
    idleTimeoutMillis: 30_000,
    statement_timeout: statementMs,
    lock_timeout: statementMs,
    query_timeout: statementMs + 2000,
    idle_in_transaction_session_timeout: statementMs * 3,
    keepAlive: true,
    application_name: "mtlskit",
  });
  // An idle connection the server drops (a restart, admin shutdown) errors here; the pool discards
  // it and the next query connects again. Without a listener, Node would crash on the event.
  pool.on("error", () => {});
  // A connection checked out of the pool (a transaction's) has no pool listener: when the server
  // ends it meanwhile (postgres killed: 57P01 "terminating connection due to unexpected postmaster
  // exit", found by test/replicas.test.ts), the client emits 'error' and without a listener Node
  // ended serve. The statement in flight rejects on its own (LedgerUnavailableError, 503), and the
  // pool drops a client that is no longer queryable when it is released.
  pool.on("connect", (client) => client.on("error", () => {}));
  const ledger = new PostgresLedgerImpl(pool, kind, secret);
  try {
    await ledger.migrate(opts.migrate !== false);
  } catch (e) {
    await pool.end().catch(() => {});
    throw e;
  }
  return ledger;
}
