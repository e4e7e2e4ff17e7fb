/**
 * The SQLite ledger (the default, DIR/ca/ledger.db): the one door to better-sqlite3.
 *
 * Durability: WAL with synchronous=FULL, so a COMMIT has returned only once the WAL is fsynced.
 * Group commit: `record` (and `createToken`) queue their write and the queue is written by one
 * transaction on the next turn of the event loop (setImmediate); one refusal (duplicate serial,
 * lost token race) or one malformed row undoes only itself (the batch is then written again with
 * a SAVEPOINT per write: flush), while the database failing (busy, disk full) fails the whole batch; every promise
 * settles after COMMIT returned. better-sqlite3 is synchronous, so while a commit (and its fsync) runs, requests pile
 * up in the sockets and the next flush writes them all: the batch grows with the load, and the
 * fsyncs per second stay bounded instead of one per certificate.
 *
 * Files: the database is created 0600 before SQLite opens it; SQLite creates -wal and -shm with
 * the database's mode (unix VFS robust_open/unixOpenSharedMemory), so they are 0600 too. The SQL
 * is kept plain (TEXT, BLOB, BIGINT milliseconds since the epoch) so the PostgreSQL ledger can
 * mirror the schema; SCHEMA_VERSION is in the schema_version table, and a newer one is refused.
 */
import {
  accessSync,
  chmodSync,
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  lstatSync,
  openSync,
  renameSync,
  rmSync,
} from "node:fs";
import * as path from "node:path";
import { isMainThread, parentPort, type Worker, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { syncDir } from "../state/fs.ts";
import { TEMP_MARK } from "../state/layout.ts";
import { startThread } from "../thread.ts";
import {
  checkRow,
  type IssuedRecord,
  type Ledger,
  type LedgerRow,
  type LedgerStats,
  LedgerUnavailableError,
  type ListFilter,
  type RecordOutcome,
  type Revoked,
  rowKey,
  rowSha256,
  SCHEMA_VERSION,
  type SchemaState,
  type TokenKind,
  type TokenRecord,
  tokenRefusal,
  type TokenVerdict,
  type WriteRowsResult,
} from "./ledger.ts";
import { newToken, parseToken, secretMatches, hashSecret } from "./tokens.ts";
import type { AcmeKind, AcmeRow, AcmeStore, AcmeWriteOutcome, EabVerdict } from "./acme.ts";

/** SCHEMA_VERSION is the version of the tables below (ledger.ts: the same numbers as postgres.ts's MIGRATIONS); a ledger written by a newer mtlskit is refused rather than misread. */
export { SCHEMA_VERSION };

/**
 * SCHEMA: every version at once, each statement IF NOT EXISTS, so a version-1 file gets what
 * versions 2 and 3 added, a version-2 file what version 3 added, and a fresh file everything.
 * Version 2: the counters table (the CRL number) and the index of revoked rows; version 3: the
 * three acme_ tables (Ledger.acme). Times are BIGINT milliseconds since the epoch (UTC); sans is a
 * JSON array of sanWords.
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (
  serial TEXT PRIMARY KEY,
  service TEXT NOT NULL,
  sans TEXT NOT NULL,
  not_before BIGINT NOT NULL,
  not_after BIGINT NOT NULL,
  sha256 TEXT NOT NULL,
  der BLOB NOT NULL,
  how TEXT NOT NULL,
  token_id TEXT,
  renewed_from TEXT,
  requester TEXT NOT NULL,
  issued_at BIGINT NOT NULL,
  revoked_at BIGINT,
  revoked_reason TEXT
);
CREATE INDEX IF NOT EXISTS certificates_issued ON certificates (issued_at);
CREATE INDEX IF NOT EXISTS certificates_service ON certificates (service, issued_at);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  service TEXT NOT NULL,
  secret_sha256 BLOB NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  used_at BIGINT,
  used_by TEXT,
  revoked_at BIGINT
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS certificates_revoked ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS acme_eab (
  token_id TEXT PRIMARY KEY,
  hmac_key BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS acme_objects (
  kind TEXT NOT NULL,
  id TEXT NOT NULL,
  version INTEGER NOT NULL,
  lookup TEXT,
  doc TEXT NOT NULL,
  PRIMARY KEY (kind, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS acme_objects_lookup ON acme_objects (kind, lookup);
CREATE TABLE IF NOT EXISTS acme_nonces (
  nonce TEXT PRIMARY KEY,
  expires_at BIGINT NOT NULL
);
`;

/** SqliteLedgerOptions: how to open the file. */
export interface SqliteLedgerOptions {
  /** create: make the file (0600) when it does not exist; false refuses a missing file. Default: true. */
  create?: boolean;
  /** migrate: bring an older schema to SCHEMA_VERSION on open (false: read it at its own version, write nothing; read-only commands). Default: true. */
  migrate?: boolean;
  /** busyTimeoutMs: how long a write waits for another process's lock before the ledger is unavailable. Default: 5000. */
  busyTimeoutMs?: number;
}

/** CommitterData is the committer thread's workerData. */
interface CommitterData {
  mtlskitCommitter: { file: string; busyMs: number; version: number };
}

/**
 * openSqliteLedgerThreaded opens the ledger with its group commit in a committer thread (its own
 * connection, same pragmas): `mtlskit serve`'s (and `serve --workers N`'s primary's; measured: docs/online-ca.md), where the COMMIT's fsync (milliseconds) would
 * otherwise stop the event loop answering every request, reads of the ledger included. Same
 * guarantees: a write's promise settles after its COMMIT returned; one batch at a time.
 */
export async function openSqliteLedgerThreaded(file: string, opts: SqliteLedgerOptions = {}): Promise<SqliteLedger> {
  const main = openSqliteLedger(file, opts) as SqliteLedgerImpl; // creates and migrates the file first
  const busyMs = opts.busyTimeoutMs ?? 5000;
  const data: CommitterData = { mtlskitCommitter: { file, busyMs, version: main.schema.version } };
  const thread = startThread(new URL(import.meta.url), { workerData: data });
  const waits: [string, (x: unknown) => void][] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      waits.push(
        [
          "message",
          (m) => {
            const r = m as { ready: boolean; error?: WireError };
            if (r.ready) resolve();
            else reject(revive(r.error!));
          },
        ],
        [
          "error",
          (e) =>
            reject(new LedgerUnavailableError(`ledger ${file}: its committer thread failed: ${(e as Error).message}`)),
        ],
        ["exit", () => reject(new LedgerUnavailableError(`ledger ${file}: its committer thread stopped`))],
      );
      for (const [event, f] of waits) thread.on(event, f);
    });
  } catch (e) {
    await thread.terminate();
    await main.close();
    throw e;
  } finally {
    // Only these: removeAllListeners would take the Worker's own.
    for (const [event, f] of waits) thread.off(event, f);
  }
  return main.withThread(thread);
}

/** runCommitter is the committer thread: batches in, each one transaction (Committer.commit), results out. */
function runCommitter({ file, busyMs, version }: CommitterData["mtlskitCommitter"]): void {
  const port = parentPort!;
  let db: Database.Database;
  try {
    db = new Database(file, { timeout: busyMs });
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
  } catch (e) {
    port.postMessage({ ready: false, error: toWire(unavailable(e, file, "open it", busyMs)) });
    return;
  }
  const committer = new Committer(db, file, busyMs, version);
  port.on("message", (m: "close" | { id: number; ops: WriteOp[] }) => {
    if (m === "close") {
      db.close();
      port.close();
      return;
    }
    // Buffers cross a thread as Uint8Arrays; SQLite binds Buffers as BLOBs.
    for (const op of m.ops)
      if (op.op === "record" && !Buffer.isBuffer(op.row.der)) {
        const der = op.row.der as Uint8Array;
        op.row.der = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
      }
    const r = committer.commit(m.ops);
    const reply: ThreadReply = {
      id: m.id,
      result: r.ok
        ? { ok: true, settled: r.settled.map((x) => ("value" in x ? x : { error: toWire(x.error) })) }
        : { ok: false, error: toWire(r.error) },
    };
    port.postMessage(reply);
  });
  port.postMessage({ ready: true });
}

/** SqliteLedger is the SQLite Ledger plus what its tests observe. */
export interface SqliteLedger extends Ledger {
  /** commits counts the group-commit transactions `record` and `createToken` ran (each one COMMIT, one WAL fsync): tests prove batching with it. */
  readonly commits: number;
  /** file is the database's path. */
  readonly file: string;
}

interface CertRow {
  serial: string;
  service: string;
  sans: string;
  not_before: number;
  not_after: number;
  sha256: string;
  der: Buffer;
  how: IssuedRecord["how"];
  token_id: string | null;
  renewed_from: string | null;
  requester: string;
  issued_at: number;
  revoked_at: number | null;
  revoked_reason: string | null;
}

interface AcmeDbRow {
  kind: AcmeKind;
  id: string;
  version: number;
  lookup: string | null;
  doc: string;
}

const toAcme = (r: AcmeDbRow): AcmeRow => ({
  kind: r.kind,
  id: r.id,
  version: r.version,
  lookup: r.lookup ?? undefined,
  doc: r.doc,
});

interface TokenRow {
  id: string;
  kind: TokenKind;
  service: string;
  secret_sha256: Buffer;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  used_by: string | null;
  revoked_at: number | null;
}

/** WriteOp is one write of a group commit, as data (it may cross to the committer thread). */
type WriteOp =
  | { op: "record"; row: IssuedRecord; consume?: { tokenId: string; now: Date } }
  | { op: "createToken"; service: string; kind: TokenKind; ttlMs: number; now: Date }
  | { op: "acmeWrite"; rows: AcmeRow[]; bind?: { tokenId: string; account: string; now: Date } }
  | { op: "addNonce"; nonce: string; expiresAt: number }
  | { op: "useNonce"; nonce: string; now: number };

/** QueuedWrite is a WriteOp waiting for its commit, with its promise. */
interface QueuedWrite {
  op: WriteOp;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** BatchResult: each write's value or error after COMMIT, or the error that failed the whole batch (nothing written). */
type BatchResult = { ok: true; settled: ({ value: unknown } | { error: unknown })[] } | { ok: false; error: unknown };

/** WireError is an error as it crosses from the committer thread (its class is not cloned). */
interface WireError {
  name: string;
  message: string;
  unavailable: boolean;
}

/** ThreadReply is the committer thread's answer to batch `id`. */
interface ThreadReply {
  id: number;
  result: { ok: true; settled: ({ value: unknown } | { error: WireError })[] } | { ok: false; error: WireError };
}

const toWire = (e: unknown): WireError => ({
  name: e instanceof Error ? e.name : "Error",
  message: e instanceof Error ? e.message : String(e),
  unavailable: e instanceof LedgerUnavailableError,
});

/** revive makes a WireError an error again: LedgerUnavailableError (503, exit 3), a TypeError (a caller's bad row), or an Error. */
function revive(w: WireError): Error {
  if (w.unavailable) return new LedgerUnavailableError(w.message);
  return w.name === "TypeError" ? new TypeError(w.message) : new Error(w.message);
}

const date = (ms: number | null): Date | undefined => (ms === null ? undefined : new Date(ms));

function toIssued(r: CertRow): IssuedRecord {
  return {
    serial: r.serial,
    service: r.service,
    sans: JSON.parse(r.sans) as string[],
    notBefore: new Date(r.not_before),
    notAfter: new Date(r.not_after),
    sha256: r.sha256,
    der: r.der,
    how: r.how,
    tokenId: r.token_id ?? undefined,
    renewedFrom: r.renewed_from ?? undefined,
    requester: r.requester,
    issuedAt: new Date(r.issued_at),
    revokedAt: date(r.revoked_at),
    revokedReason: r.revoked_reason ?? undefined,
  };
}

function toToken(r: TokenRow): TokenRecord {
  return {
    id: r.id,
    kind: r.kind,
    service: r.service,
    createdAt: new Date(r.created_at),
    expiresAt: new Date(r.expires_at),
    usedAt: date(r.used_at),
    usedBy: r.used_by ?? undefined,
    revokedAt: date(r.revoked_at),
  };
}

/** sqliteCode is an SQLite error's code (`SQLITE_BUSY`, `SQLITE_CONSTRAINT_PRIMARYKEY`, ...), undefined for any other error. */
function sqliteCode(e: unknown): string | undefined {
  return e instanceof Database.SqliteError ? e.code : undefined;
}

/** rowFault tells an error of one row (not a valid row: a caller's bug) from the database failing. */
function rowFault(e: unknown): boolean {
  const code = sqliteCode(e);
  return code === undefined || /^SQLITE_(CONSTRAINT|MISMATCH|TOOBIG|RANGE)/.test(code);
}

/**
 * unavailable turns an SQLite (or file system) error into LedgerUnavailableError naming the
 * file, what was being done, the cause and the fix. Errors that are neither (a bug) are returned
 * as they are.
 */
function unavailable(e: unknown, file: string, doing: string, busyMs: number): unknown {
  if (e instanceof LedgerUnavailableError) return e;
  const code = sqliteCode(e) ?? (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === undefined) return e;
  let family = code.startsWith("SQLITE_") ? code.split("_").slice(0, 2).join("_") : code;
  // SQLITE_CANTOPEN says nothing of why: ask the directory (read-only file system, missing, not ours).
  if (family === "SQLITE_CANTOPEN") {
    try {
      accessSync(path.dirname(file), constants.W_OK);
    } catch (d) {
      family = (d as NodeJS.ErrnoException).code ?? family;
    }
  }
  const why: Record<string, string> = {
    SQLITE_BUSY: `it is locked by another process (waited ${busyMs} ms); retry, or find the process holding it (fuser ${file})`,
    SQLITE_LOCKED: `it is locked by another process (waited ${busyMs} ms); retry, or find the process holding it (fuser ${file})`,
    SQLITE_FULL: "the disk is full; free space on its file system",
    ENOSPC: "the disk is full; free space on its file system",
    SQLITE_READONLY:
      "it or its directory is read-only; make it writable by this user (mode 0600, its directory writable)",
    EROFS: "its file system is read-only; remount it read-write",
    EACCES: "permission denied; run as the PKI directory's owner",
    SQLITE_PERM: "permission denied; run as the PKI directory's owner",
    SQLITE_CANTOPEN:
      "SQLite cannot open it (or its -wal and -shm files beside it); check that it is a regular file and its directory is writable by this user",
    ENOENT: "its directory does not exist; check the path (--pki)",
    ENOTDIR: "part of its path is a file, not a directory; check the path (--pki)",
    ELOOP: "it is a symbolic link, which the ledger never follows; replace the link with the file itself",
    EISDIR: "it is a directory; name a file",
    SQLITE_IOERR: "an I/O error occurred; check the disk (dmesg)",
    SQLITE_CORRUPT: "it is damaged; restore the last `mtlskit ledger backup`",
    SQLITE_NOTADB: "it is not an SQLite database; move it aside, or restore the last `mtlskit ledger backup`",
  };
  const reason = why[family] ?? (sqliteCode(e) ? `SQLite said: ${(e as Error).message}` : (e as Error).message);
  return new LedgerUnavailableError(`ledger ${file}: cannot ${doing}: ${reason} (${code})`, { cause: e });
}

/**
 * createPrivate makes `file` 0600 (exclusive create) before SQLite opens it, and tightens an
 * existing file that others could read: the ledger holds token hashes and who got which certificate.
 */
function createPrivate(file: string): void {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    // Never open and close a descriptor of an existing ledger: closing any descriptor of a file
    // drops every POSIX lock this process holds on it, so a second open in one process (two
    // replicas in a test, a CLI command beside serve's library) would take away the first
    // connection's locks; another process's sqlite3 then took itself for the last user and
    // removed the WAL those connections were still writing (found by the ACME store's race test).
    const st = lstatSync(file);
    if (st.isSymbolicLink()) throw Object.assign(new Error(`${file} is a symbolic link`), { code: "ELOOP" });
    if (st.isDirectory()) throw Object.assign(new Error(`${file} is a directory`), { code: "EISDIR" });
    if (!st.isFile())
      throw new LedgerUnavailableError(`ledger ${file}: cannot open it: it is not a regular file; name a file`);
    if ((st.mode & 0o077) !== 0) chmodSync(file, 0o600);
    return;
  }
  closeSync(fd);
}

/** openSqliteLedger opens (creating when allowed) the SQLite ledger at `file`; rejects with LedgerUnavailableError when it cannot. */
export function openSqliteLedger(file: string, opts: SqliteLedgerOptions = {}): SqliteLedger {
  const busyMs = opts.busyTimeoutMs ?? 5000;
  const fail = (doing: string) => (e: unknown) => unavailable(e, file, doing, busyMs);
  let db: Database.Database;
  let found: SchemaState;
  try {
    if (opts.create === false && !existsSync(file))
      throw new LedgerUnavailableError(
        `ledger ${file}: does not exist; \`mtlskit token create\` or \`mtlskit serve\` creates it`,
      );
    createPrivate(file);
    db = new Database(file, { timeout: busyMs });
  } catch (e) {
    throw fail("open it")(e);
  }
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = FULL");
    found = migrate(db, file, opts.migrate !== false);
  } catch (e) {
    db.close();
    throw fail("open it")(e);
  }
  const ledger = new SqliteLedgerImpl(db, file, busyMs, found.version);
  ledger.schema = found;
  return ledger;
}

/**
 * migrate creates the tables in a fresh file, brings an older one to SCHEMA_VERSION, and refuses
 * one written by a newer schema. `apply` false (read-only commands: status, check, metrics, ledger
 * list/show): nothing is written; an older ledger is read at its own version (every version has
 * tokens and certificates), a file with no ledger in it is refused naming `mtlskit ledger migrate`.
 */
function migrate(db: Database.Database, file: string, apply: boolean): SchemaState {
  const version = (): number | null => {
    const tables = db.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'").all();
    if (!tables.some((t) => t.name === "schema_version")) {
      if (tables.length > 0)
        throw new LedgerUnavailableError(
          `ledger ${file}: it is an SQLite database but not an mtlskit ledger (it has tables ${tables
            .map((t) => t.name)
            .slice(0, 5)
            .join(", ")} and no schema_version); name another file`,
        );
      return null;
    }
    const found = db.prepare<[], { v: number | null }>("SELECT max(version) AS v FROM schema_version").get()!.v;
    if (found !== null && found > SCHEMA_VERSION)
      throw new LedgerUnavailableError(
        `ledger ${file}: schema version ${found} is newer than this mtlskit understands (${SCHEMA_VERSION}): a newer mtlskit wrote it; upgrade mtlskit, or restore a backup made by this version`,
      );
    return found;
  };
  // The usual case, a ledger of this version, is settled by a read: read-only commands (status,
  // metrics on every scrape) never take the write lock serve needs.
  const first = version();
  if (first === SCHEMA_VERSION) return { version: SCHEMA_VERSION, foundVersion: first };
  if (!apply) {
    if (first === null)
      throw new LedgerUnavailableError(
        `ledger ${file}: holds no mtlskit ledger yet; run \`mtlskit ledger migrate --ledger sqlite:${file}\` (or start \`mtlskit serve\`, which creates it)`,
      );
    return { version: first, foundVersion: first };
  }
  const run = db.transaction((): SchemaState => {
    const v = version() ?? undefined;
    if (v === SCHEMA_VERSION) return { version: SCHEMA_VERSION, foundVersion: v };
    db.exec(SCHEMA);
    db.prepare("DELETE FROM schema_version").run();
    db.prepare("INSERT INTO schema_version (version) VALUES (?)").run(SCHEMA_VERSION);
    return { version: SCHEMA_VERSION, foundVersion: v };
  });
  return run.immediate();
}

/** prepare compiles the statements `record` and the readers run often. */
function prepare(db: Database.Database) {
  return {
    insertCert: db.prepare(
      `INSERT INTO certificates (serial, service, sans, not_before, not_after, sha256, der, how, token_id, renewed_from, requester, issued_at, revoked_at, revoked_reason)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, // positional: better-sqlite3 binds them in about 60% of named parameters' time (3-4 us a row)
    ),
    consume: db.prepare(
      "UPDATE tokens SET used_at = ?, used_by = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?",
    ),
    token: db.prepare<[string], TokenRow>("SELECT * FROM tokens WHERE id = ?"),
    insertToken: db.prepare(
      "INSERT INTO tokens (id, kind, service, secret_sha256, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
    ),
    cert: db.prepare<[string], CertRow>("SELECT * FROM certificates WHERE serial = ?"),
    savepoint: db.prepare("SAVEPOINT item"),
    rollbackTo: db.prepare("ROLLBACK TO item"),
    release: db.prepare("RELEASE item"),
  };
}
type Statements = ReturnType<typeof prepare>;

/** prepareAcme compiles the AcmeStore's statements (schema 3's tables: a ledger read at an older version has none). */
function prepareAcme(db: Database.Database) {
  return {
    insertEab: db.prepare("INSERT INTO acme_eab (token_id, hmac_key) VALUES (?, ?)"),
    eab: db.prepare<[string], { hmac_key: Buffer }>("SELECT hmac_key FROM acme_eab WHERE token_id = ?"),
    acmeGet: db.prepare<[string, string], AcmeDbRow>("SELECT * FROM acme_objects WHERE kind = ? AND id = ?"),
    acmeFind: db.prepare<[string, string], AcmeDbRow>("SELECT * FROM acme_objects WHERE kind = ? AND lookup = ?"),
    acmeInsert: db.prepare("INSERT INTO acme_objects (kind, id, version, lookup, doc) VALUES (?, ?, ?, ?, ?)"),
    acmeUpdate: db.prepare(
      "UPDATE acme_objects SET version = ?, lookup = ?, doc = ? WHERE kind = ? AND id = ? AND version = ?",
    ),
    nonceAdd: db.prepare("INSERT OR IGNORE INTO acme_nonces (nonce, expires_at) VALUES (?, ?)"),
    nonceUse: db.prepare("DELETE FROM acme_nonces WHERE nonce = ? AND expires_at > ?"),
    noncePrune: db.prepare("DELETE FROM acme_nonces WHERE expires_at <= ?"),
  };
}
type AcmeStatements = ReturnType<typeof prepareAcme>;

/**
 * Committer writes group-commit batches on its connection: in the ledger's own thread, or (serve --workers' primary)
 * in the committer thread, so the COMMIT's fsync never stalls the thread answering reads.
 */
class Committer {
  private readonly st: Statements;
  /** sa: schema 3's ACME statements; undefined for a ledger read at an older version (never migrated: no ACME tables). */
  private readonly sa: AcmeStatements | undefined;
  private noncesAdded = 0;

  constructor(
    private readonly db: Database.Database,
    private readonly file: string,
    private readonly busyMs: number,
    private readonly version: number,
  ) {
    this.st = prepare(db);
    this.sa = version >= 3 ? prepareAcme(db) : undefined;
  }

  /**
   * commit writes every op in one transaction (group commit). First without savepoints (the
   * usual batch, where every job writes its row: a SAVEPOINT and RELEASE per row cost more than
   * the row); when a job asks to be undone or fails as a row, the transaction is rolled back and
   * the batch written again with a savepoint per job, so that job undoes only itself (the
   * database is held BEGIN IMMEDIATE throughout, so the second pass sees what the first saw).
   */
  commit(batch: WriteOp[]): BatchResult {
    let settled: ({ value: unknown } | { error: unknown })[];
    try {
      this.db.exec("BEGIN IMMEDIATE");
      try {
        settled = this.writeAll(batch) ?? this.writeEach(batch);
        this.db.exec("COMMIT");
      } catch (e) {
        if (this.db.inTransaction) this.db.exec("ROLLBACK");
        throw e;
      }
    } catch (e) {
      return {
        ok: false,
        error: unavailable(e, this.file, `write ${batch.length === 1 ? "a row" : `${batch.length} rows`}`, this.busyMs),
      };
    }
    return { ok: true, settled };
  }

  /** write runs one op; `undo` when it was refused (nothing of it may stay). */
  private write(op: WriteOp): { value: unknown; undo: boolean } {
    switch (op.op) {
      case "record": {
        checkRow(op.row);
        const outcome = this.writeOne(op.row, op.consume);
        return { value: outcome, undo: !outcome.ok };
      }
      case "createToken":
        return { value: this.createToken(op), undo: false };
      case "acmeWrite":
        return this.acmeWrite(op.rows, op.bind);
      case "addNonce":
        this.acmeStatements().nonceAdd.run(op.nonce, op.expiresAt);
        // Expired nonces are swept now and then, by the writer, not on every request.
        if (++this.noncesAdded % 1000 === 0) this.acmeStatements().noncePrune.run(Date.now());
        return { value: undefined, undo: false };
      case "useNonce":
        return { value: this.acmeStatements().nonceUse.run(op.nonce, op.now).changes === 1, undo: false };
    }
  }

  /** acmeStatements: schema 3's statements, or the ledger's refusal naming `ledger migrate` when it was read at an older version. */
  private acmeStatements(): AcmeStatements {
    if (this.sa) return this.sa;
    throw new LedgerUnavailableError(
      `ledger ${this.file}: schema version ${this.version} keeps no ACME keys; run \`mtlskit ledger migrate --ledger sqlite:${this.file}\``,
    );
  }

  private createToken(op: Extract<WriteOp, { op: "createToken" }>): { token: string; record: TokenRecord } {
    const sa = op.kind === "acme" ? this.acmeStatements() : undefined;
    for (;;) {
      const t = newToken();
      try {
        this.st.insertToken.run(
          t.id,
          op.kind,
          op.service,
          hashSecret(t.secret),
          op.now.getTime(),
          op.now.getTime() + op.ttlMs,
        );
        // An EAB key's HMAC key must be read back to verify a binding: kept as its 32 bytes, in
        // this 0600 file beside the CA's own key (src/ledger/acme.ts).
        sa?.insertEab.run(t.id, Buffer.from(t.secret, "base64url"));
      } catch (e) {
        // 64 random bits: a collision is astronomically rare, but a retry costs nothing.
        if (sqliteCode(e) === "SQLITE_CONSTRAINT_PRIMARYKEY") continue;
        throw e;
      }
      return { token: t.token, record: toToken(this.st.token.get(t.id)!) };
    }
  }

  /** acmeWrite writes ACME rows (and binds an EAB token) inside the group commit's savepoint; a refusal is undone. */
  private acmeWrite(
    rows: AcmeRow[],
    bind: { tokenId: string; account: string; now: Date } | undefined,
  ): { value: AcmeWriteOutcome; undo: boolean } {
    const sa = this.acmeStatements();
    const refuse = (reason: Exclude<AcmeWriteOutcome, { ok: true }>["reason"]) => ({
      value: { ok: false as const, reason },
      undo: true,
    });
    if (bind) {
      const t = bind.now.getTime();
      if (this.st.consume.run(t, `acme:${bind.account}`, bind.tokenId, t).changes !== 1) {
        const tok = this.st.token.get(bind.tokenId);
        return refuse(tokenRefusal(tok));
      }
    }
    for (const r of rows) {
      if (r.version === 1) {
        try {
          sa.acmeInsert.run(r.kind, r.id, 1, r.lookup ?? null, r.doc);
        } catch (e) {
          const code = sqliteCode(e);
          if (code !== "SQLITE_CONSTRAINT_PRIMARYKEY" && code !== "SQLITE_CONSTRAINT_UNIQUE") throw e;
          return refuse(sa.acmeGet.get(r.kind, r.id) ? "conflict" : "lookup-taken");
        }
      } else {
        let changed: number;
        try {
          changed = sa.acmeUpdate.run(r.version, r.lookup ?? null, r.doc, r.kind, r.id, r.version - 1).changes;
        } catch (e) {
          if (sqliteCode(e) !== "SQLITE_CONSTRAINT_UNIQUE") throw e;
          return refuse("lookup-taken");
        }
        if (changed !== 1) return refuse("conflict");
      }
    }
    return { value: { ok: true }, undo: false };
  }

  /**
   * writeAll runs every job under one savepoint; undefined (and the savepoint rolled back, the
   * transaction still open) when one asked to be undone or failed as a row. The database failing
   * is thrown, failing the whole batch.
   */
  private writeAll(batch: WriteOp[]): { value: unknown }[] | undefined {
    this.st.savepoint.run();
    const values: { value: unknown }[] = [];
    for (const job of batch) {
      let written: { value: unknown; undo: boolean };
      try {
        written = this.write(job);
      } catch (e) {
        if (!rowFault(e)) throw e;
        written = { value: undefined, undo: true };
      }
      if (written.undo) {
        this.st.rollbackTo.run();
        this.st.release.run();
        return undefined;
      }
      values.push({ value: written.value });
    }
    this.st.release.run();
    return values;
  }

  /** writeEach runs each job under its own savepoint: a refusal or a bad row (a caller's bug) undoes only itself. */
  private writeEach(batch: WriteOp[]): ({ value: unknown } | { error: unknown })[] {
    const settled: ({ value: unknown } | { error: unknown })[] = [];
    for (const job of batch) {
      this.st.savepoint.run();
      try {
        const { value, undo } = this.write(job);
        if (undo) this.st.rollbackTo.run();
        this.st.release.run();
        settled.push({ value });
      } catch (e) {
        // The database failing fails the whole batch; a bad row (a caller's bug) fails alone.
        if (!rowFault(e)) throw e;
        this.st.rollbackTo.run();
        this.st.release.run();
        settled.push({ error: e });
      }
    }
    return settled;
  }

  /** writeOne consumes the token (conditionally) and inserts the row, inside the caller's savepoint; a refusal is returned, and the caller rolls it back. */
  writeOne(r: IssuedRecord, consume: { tokenId: string; now: Date } | undefined): RecordOutcome {
    let outcome: RecordOutcome = { ok: true };
    if (consume) {
      const { tokenId, now } = consume;
      const t = now.getTime();
      if (this.st.consume.run(t, r.serial, tokenId, t).changes !== 1) {
        const tok = this.st.token.get(tokenId);
        outcome = {
          ok: false,
          reason: tokenRefusal(tok),
        };
      }
    }
    if (outcome.ok) {
      try {
        this.st.insertCert.run(
          r.serial,
          r.service,
          JSON.stringify(r.sans),
          r.notBefore.getTime(),
          r.notAfter.getTime(),
          r.sha256,
          r.der,
          r.how,
          r.tokenId ?? null,
          r.renewedFrom ?? null,
          r.requester,
          r.issuedAt.getTime(),
          r.revokedAt?.getTime() ?? null,
          r.revokedReason ?? null,
        );
      } catch (e) {
        const code = sqliteCode(e);
        if (code !== "SQLITE_CONSTRAINT_PRIMARYKEY" && code !== "SQLITE_CONSTRAINT_UNIQUE") throw e;
        outcome = { ok: false, reason: "duplicate-serial" };
      }
    }
    return outcome;
  }
}

class SqliteLedgerImpl implements SqliteLedger {
  readonly kind: string;
  schema: SchemaState = { version: SCHEMA_VERSION, foundVersion: SCHEMA_VERSION };
  commits = 0;
  private queue: QueuedWrite[] = [];
  private scheduled = false;
  private closed = false;
  private readonly st: Statements;
  /** committer: the group commit on this thread's connection; undefined when the committer thread writes. */
  private committer: Committer | undefined;
  private thread: Worker | undefined;
  /** inflight: a batch is with the committer thread; waiting: its promises, by batch id. */
  private inflight = false;
  private batchId = 0;
  private readonly waiting = new Map<number, QueuedWrite[]>();
  /** idle: called when the queue is empty and nothing is in flight (close waits for it). */
  private idle: (() => void) | undefined;
  private readonly sa: AcmeStatements | undefined;
  readonly acme: AcmeStore | undefined;

  constructor(
    private readonly db: Database.Database,
    readonly file: string,
    private readonly busyMs: number,
    version: number,
  ) {
    this.kind = `sqlite:${file}`;
    this.st = prepare(db);
    this.committer = new Committer(db, file, busyMs, version);
    // A ledger opened read-only at an older schema (status, check: never migrated) has no ACME tables.
    this.sa = version >= 3 ? prepareAcme(db) : undefined;
    this.acme = this.sa && {
      eabKey: (id, now) => this.eabKey(id, now),
      get: (kind, id) =>
        this.guard("read an ACME object", () => {
          const r = this.sa!.acmeGet.get(kind, id);
          return r ? toAcme(r) : undefined;
        }),
      find: (kind, lookup) =>
        this.guard("read an ACME object", () => {
          const r = this.sa!.acmeFind.get(kind, lookup);
          return r ? toAcme(r) : undefined;
        }),
      write: (rows, bind) =>
        this.enqueue(bind === undefined ? { op: "acmeWrite", rows } : { op: "acmeWrite", rows, bind }),
      // Nonces ride the group commit with everything else: a burst of requests pays one fsync.
      addNonce: (nonce, expiresAt) => this.enqueue({ op: "addNonce", nonce, expiresAt: expiresAt.getTime() }),
      useNonce: (nonce, now) => this.enqueue({ op: "useNonce", nonce, now: now.getTime() }),
    };
  }

  /** eabKey: the HMAC key of a usable `acme` token (AcmeStore.eabKey). */
  private eabKey(id: string, now: Date): Promise<EabVerdict> {
    return this.guard("read an EAB key", (): EabVerdict => {
      const row = this.st.token.get(id);
      const key = row ? this.sa!.eab.get(id) : undefined;
      if (!row) return { ok: false, reason: "unknown" };
      if (row.kind !== "acme" || !key) return { ok: false, reason: "wrong-kind" };
      if (row.revoked_at !== null) return { ok: false, reason: "revoked" };
      if (row.used_at !== null) return { ok: false, reason: "used" };
      if (row.expires_at <= now.getTime()) return { ok: false, reason: "expired" };
      return { ok: true, token: toToken(row), hmacKey: key.hmac_key };
    });
  }

  /** withThread hands the group commit to `thread` (runCommitter, its own connection). */
  withThread(thread: Worker): this {
    this.thread = thread;
    this.committer = undefined;
    thread.on("message", (m: ThreadReply) => this.fromThread(m));
    // A committer thread that dies fails what it held and everything after: the ledger is unavailable.
    thread.once("exit", () => {
      const err = new LedgerUnavailableError(`ledger ${this.file}: its committer thread stopped`);
      for (const batch of this.waiting.values()) for (const job of batch) job.reject(err);
      this.waiting.clear();
      for (const job of this.queue) job.reject(err);
      this.queue = [];
      this.inflight = false;
      this.closed = true;
      this.idle?.();
    });
    thread.on("error", () => {}); // its exit follows
    return this;
  }

  /** guard runs a synchronous read or write, mapping SQLite's errors. */
  private guard<T>(doing: string, f: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new LedgerUnavailableError(`ledger ${this.file}: closed`));
    try {
      return Promise.resolve(f());
    } catch (e) {
      return Promise.reject(unavailable(e, this.file, doing, this.busyMs));
    }
  }

  createToken(
    service: string,
    kind: TokenKind,
    ttlMs: number,
    now: Date,
  ): Promise<{ token: string; record: TokenRecord }> {
    // Through the group commit too: a script making many tokens at once pays one fsync.
    return this.enqueue({ op: "createToken", service, kind, ttlMs, now });
  }

  checkToken(token: string, service: string, kind: TokenKind, now: Date): Promise<TokenVerdict> {
    return this.guard("read a token", (): TokenVerdict => {
      const parsed = parseToken(token);
      if (!parsed) return { ok: false, reason: "malformed" };
      const row = this.st.token.get(parsed.id);
      // Compared even when the id is unknown (against a dummy): the same work either way.
      if (!secretMatches(parsed.secret, row?.secret_sha256) || !row) return { ok: false, reason: "unknown" };
      if (row.revoked_at !== null) return { ok: false, reason: "revoked" };
      if (row.used_at !== null) return { ok: false, reason: "used", usedBy: row.used_by ?? undefined };
      if (row.expires_at <= now.getTime()) return { ok: false, reason: "expired" };
      if (row.kind !== kind) return { ok: false, reason: "wrong-kind" };
      if (row.service !== service) return { ok: false, reason: "wrong-service" };
      return { ok: true, token: toToken(row) };
    });
  }

  revokeToken(id: string, now: Date): Promise<boolean> {
    return this.guard(
      "revoke a token",
      () =>
        this.db.prepare("UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?").run(now.getTime(), id)
          .changes > 0,
    );
  }

  tokens(filter: { service?: string } = {}): Promise<TokenRecord[]> {
    return this.guard("list tokens", () => {
      const rows =
        filter.service === undefined
          ? this.db.prepare<[], TokenRow>("SELECT * FROM tokens ORDER BY created_at DESC, id DESC").all()
          : this.db
              .prepare<[string], TokenRow>("SELECT * FROM tokens WHERE service = ? ORDER BY created_at DESC, id DESC")
              .all(filter.service);
      return rows.map(toToken);
    });
  }

  record(row: IssuedRecord, consume?: { tokenId: string; now: Date }): Promise<RecordOutcome> {
    return this.enqueue(consume === undefined ? { op: "record", row } : { op: "record", row, consume });
  }

  /** enqueue queues a write for the next group commit; its promise settles after COMMIT returned. */
  private enqueue<T>(op: WriteOp): Promise<T> {
    if (this.closed) return Promise.reject(new LedgerUnavailableError(`ledger ${this.file}: closed`));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ op, resolve: resolve as (v: unknown) => void, reject });
      if (!this.scheduled && !this.inflight) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * flush writes every queued job in one transaction (group commit, Committer.commit) and settles
   * their promises after COMMIT. With the committer thread the batch is posted to it and this
   * thread goes on answering reads; the jobs queued meanwhile are the next batch, posted when
   * this one's answer comes.
   */
  private flush(): void {
    this.scheduled = false;
    if (this.inflight) return;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return void this.idle?.();
    const ops = batch.map((j) => j.op);
    if (!this.thread) {
      this.settle(batch, this.committer!.commit(ops));
      return void (this.queue.length === 0 && this.idle?.());
    }
    this.inflight = true;
    const id = ++this.batchId;
    this.waiting.set(id, batch);
    this.thread.postMessage({ id, ops });
  }

  /** settle resolves or rejects a batch's promises from its commit's outcome. */
  private settle(batch: QueuedWrite[], result: BatchResult): void {
    if (!result.ok) {
      for (const job of batch) job.reject(result.error);
      return;
    }
    this.commits++;
    batch.forEach((job, i) => {
      const s = result.settled[i]!;
      if ("value" in s) job.resolve(s.value);
      else job.reject(s.error);
    });
  }

  /** fromThread settles a batch the committer thread wrote; errors cross as plain data and are made again. */
  private fromThread(m: ThreadReply): void {
    const batch = this.waiting.get(m.id);
    if (!batch) return;
    this.waiting.delete(m.id);
    this.inflight = false;
    this.settle(
      batch,
      m.result.ok
        ? { ok: true, settled: m.result.settled.map((x) => ("value" in x ? x : { error: revive(x.error) })) }
        : { ok: false, error: revive(m.result.error) },
    );
    this.flush();
  }

  get(serial: string): Promise<IssuedRecord | undefined> {
    return this.guard("read a certificate", () => {
      const r = this.st.cert.get(serial);
      return r ? toIssued(r) : undefined;
    });
  }

  list(filter: ListFilter = {}): Promise<IssuedRecord[]> {
    return this.guard("list certificates", () => {
      const where: string[] = [];
      const args: (string | number)[] = [];
      if (filter.service !== undefined) {
        where.push("service = ?");
        args.push(filter.service);
      }
      if (filter.validAt !== undefined) {
        where.push("not_before <= ? AND not_after > ? AND revoked_at IS NULL");
        args.push(filter.validAt.getTime(), filter.validAt.getTime());
      }
      const sql = `SELECT * FROM certificates${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY issued_at DESC, serial DESC${filter.limit === undefined ? "" : " LIMIT ?"}`;
      if (filter.limit !== undefined) args.push(Math.max(0, Math.floor(filter.limit)));
      return this.db
        .prepare<(string | number)[], CertRow>(sql)
        .all(...args)
        .map(toIssued);
    });
  }

  revoke(serial: string, reason: string, at: Date): Promise<boolean> {
    return this.guard("revoke a certificate", () => {
      const run = this.db.transaction(() => {
        if (!this.st.cert.get(serial)) return false;
        this.db
          .prepare("UPDATE certificates SET revoked_at = ?, revoked_reason = ? WHERE serial = ? AND revoked_at IS NULL")
          .run(at.getTime(), reason, serial);
        return true;
      });
      return run.immediate();
    });
  }

  stats(now: Date): Promise<LedgerStats> {
    return this.guard("count rows", () => {
      const c = this.db
        .prepare<[], { n: number; r: number | null }>(
          "SELECT count(*) AS n, sum(CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END) AS r FROM certificates",
        )
        .get()!;
      const t = this.db
        .prepare<[number], { n: number }>(
          "SELECT count(*) AS n FROM tokens WHERE used_at IS NULL AND revoked_at IS NULL AND expires_at > ?",
        )
        .get(now.getTime())!;
      return { certificates: c.n, revoked: c.r ?? 0, tokensOutstanding: t.n };
    });
  }

  revoked(now: Date): Promise<Revoked[]> {
    return this.guard("list revocations", () =>
      this.db
        .prepare<
          [number],
          { serial: string; service: string; revoked_reason: string | null; revoked_at: number; not_after: number }
        >(
          "SELECT serial, service, revoked_reason, revoked_at, not_after FROM certificates WHERE revoked_at IS NOT NULL AND not_after > ? ORDER BY revoked_at, serial",
        )
        .all(now.getTime())
        .map((r) => ({
          serial: r.serial,
          service: r.service,
          reason: r.revoked_reason ?? "unspecified",
          revokedAt: new Date(r.revoked_at),
          notAfter: new Date(r.not_after),
        })),
    );
  }

  nextCrlNumber(atLeast: bigint): Promise<bigint> {
    return this.guard("take a CRL number", () => {
      const st = this.db
        .prepare<[bigint], { value: bigint }>(
          "INSERT INTO counters (name, value) VALUES ('crl_number', ?) ON CONFLICT (name) DO UPDATE SET value = max(value + 1, excluded.value) RETURNING value",
        )
        .safeIntegers(true);
      return st.get(atLeast)!.value;
    });
  }

  readRows(table: LedgerRow["table"], after: string | undefined, limit: number): Promise<LedgerRow[]> {
    return this.guard(`read ${table}`, () => {
      // A ledger read at an older schema (never migrated) keeps no ACME state.
      if ((table === "acme_eab" || table === "acme_objects") && !this.sa) return [];
      if (table === "acme_eab")
        return this.db
          .prepare<[string | null, string | null, number], { token_id: string; hmac_key: Buffer }>(
            "SELECT * FROM acme_eab WHERE ? IS NULL OR token_id > ? ORDER BY token_id LIMIT ?",
          )
          .all(after ?? null, after ?? null, limit)
          .map((r): LedgerRow => ({ table, row: { tokenId: r.token_id, hmacKey: r.hmac_key } }));
      if (table === "acme_objects") {
        // The (kind, id) primary key's order is rowId's (`KIND/ID`) order: see ledger.ts.
        const [kind, id] =
          after === undefined ? ["", ""] : [after.slice(0, after.indexOf("/")), after.slice(after.indexOf("/") + 1)];
        return this.db
          .prepare<[string, string, number], AcmeDbRow>(
            "SELECT * FROM acme_objects WHERE (kind, id) > (?, ?) ORDER BY kind, id LIMIT ?",
          )
          .all(kind, id, limit)
          .map((r): LedgerRow => ({ table, row: toAcme(r) }));
      }
      const key = table === "tokens" ? "id" : "serial";
      const rows = this.db
        .prepare<[string | null, string | null, number], TokenRow & CertRow>(
          `SELECT * FROM ${table} WHERE ? IS NULL OR ${key} > ? ORDER BY ${key} LIMIT ?`,
        )
        .all(after ?? null, after ?? null, limit);
      return rows.map(
        (r): LedgerRow =>
          table === "tokens"
            ? { table, row: { ...toToken(r), secretSha256: r.secret_sha256 } }
            : { table: "certificates", row: toIssued(r) },
      );
    });
  }

  writeRows(rows: LedgerRow[]): Promise<WriteRowsResult> {
    return this.guard(`copy ${rows.length} rows`, () => {
      for (const r of rows) if (r.table === "certificates") checkRow(r.row);
      const insertToken = this.db.prepare(
        "INSERT OR IGNORE INTO tokens (id, kind, service, secret_sha256, created_at, expires_at, used_at, used_by, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      );
      const insertCert = this.db.prepare(
        `INSERT OR IGNORE INTO certificates (serial, service, sans, not_before, not_after, sha256, der, how, token_id, renewed_from, requester, issued_at, revoked_at, revoked_reason)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      const insertEab = this.db.prepare("INSERT OR IGNORE INTO acme_eab (token_id, hmac_key) VALUES (?, ?)");
      const insertAcme = this.db.prepare(
        "INSERT OR IGNORE INTO acme_objects (kind, id, version, lookup, doc) VALUES (?, ?, ?, ?, ?)",
      );
      const ms = (d: Date | undefined) => d?.getTime() ?? null;
      const run = this.db.transaction((): WriteRowsResult => {
        const out: WriteRowsResult = { added: 0, same: 0, conflicts: [] };
        for (const r of rows) {
          const added =
            r.table === "acme_eab"
              ? insertEab.run(r.row.tokenId, r.row.hmacKey).changes
              : r.table === "acme_objects"
                ? insertAcme.run(r.row.kind, r.row.id, r.row.version, r.row.lookup ?? null, r.row.doc).changes
                : r.table === "tokens"
                  ? insertToken.run(
                      r.row.id,
                      r.row.kind,
                      r.row.service,
                      r.row.secretSha256,
                      r.row.createdAt.getTime(),
                      r.row.expiresAt.getTime(),
                      ms(r.row.usedAt),
                      r.row.usedBy ?? null,
                      ms(r.row.revokedAt),
                    ).changes
                  : insertCert.run(
                      r.row.serial,
                      r.row.service,
                      JSON.stringify(r.row.sans),
                      r.row.notBefore.getTime(),
                      r.row.notAfter.getTime(),
                      r.row.sha256,
                      r.row.der,
                      r.row.how,
                      r.row.tokenId ?? null,
                      r.row.renewedFrom ?? null,
                      r.row.requester,
                      r.row.issuedAt.getTime(),
                      ms(r.row.revokedAt),
                      r.row.revokedReason ?? null,
                    ).changes;
          if (added === 1) {
            out.added++;
            continue;
          }
          const there: LedgerRow | undefined =
            r.table === "tokens"
              ? (() => {
                  const t = this.st.token.get(r.row.id)!;
                  return { table: "tokens", row: { ...toToken(t), secretSha256: t.secret_sha256 } };
                })()
              : r.table === "certificates"
                ? { table: "certificates", row: toIssued(this.st.cert.get(r.row.serial)!) }
                : r.table === "acme_eab"
                  ? (() => {
                      const e = this.sa!.eab.get(r.row.tokenId)!;
                      return { table: "acme_eab", row: { tokenId: r.row.tokenId, hmacKey: e.hmac_key } };
                    })()
                  : (() => {
                      // Absent: the insert was ignored for another object holding its lookup key.
                      const o = this.sa!.acmeGet.get(r.row.kind, r.row.id);
                      return o ? { table: "acme_objects", row: toAcme(o) } : undefined;
                    })();
          if (there && rowSha256(there) === rowSha256(r)) out.same++;
          else out.conflicts.push(rowKey(r));
        }
        // A conflict writes nothing: the whole copy is undone (throwing rolls the transaction back).
        if (out.conflicts.length > 0) throw Object.assign(new Error("conflicts"), { conflictResult: out });
        return out;
      });
      try {
        return run.immediate();
      } catch (e) {
        const c = (e as { conflictResult?: WriteRowsResult }).conflictResult;
        if (c) return { added: 0, same: c.same, conflicts: c.conflicts };
        throw e;
      }
    });
  }

  /**
   * backup copies the ledger with SQLite's online backup API while it stays in use: into a 0600
   * temporary file beside `file`, fsynced, then renamed over `file` (so `file` is either absent,
   * the old copy, or the whole new one) and the directory fsynced.
   */
  async backup(file: string): Promise<void> {
    if (this.closed) throw new LedgerUnavailableError(`ledger ${this.file}: closed`);
    const dir = path.dirname(path.resolve(file));
    const tmp = path.join(dir, `.${path.basename(file)}${TEMP_MARK}${process.pid}-${Date.now()}`);
    try {
      closeSync(openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600));
      await this.db.backup(tmp);
      const fd = openSync(tmp, constants.O_RDWR);
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, file);
      syncDir(dir);
    } catch (e) {
      rmSync(tmp, { force: true });
      for (const side of ["-journal", "-wal", "-shm"]) rmSync(tmp + side, { force: true });
      throw unavailable(e, this.file, `back it up to ${file}`, this.busyMs);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Rows queued are written first: a caller awaiting them is not left hanging.
    if (this.queue.length > 0 || this.inflight) {
      const drained = new Promise<void>((resolve) => (this.idle = resolve));
      if (!this.inflight) this.flush();
      await drained;
    }
    this.closed = true;
    if (this.thread) {
      const gone = new Promise<void>((resolve) => this.thread!.once("exit", () => resolve()));
      this.thread.postMessage("close");
      await gone;
    }
    this.db.close();
  }
}

// The committer thread starts here, once every class above is defined.
if (!isMainThread && (workerData as CommitterData | undefined)?.mtlskitCommitter)
  runCommitter((workerData as CommitterData).mtlskitCommitter);
