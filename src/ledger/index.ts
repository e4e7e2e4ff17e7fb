/**
 * openLedger: the ledger a PKI directory's online CA uses, by spec. `sqlite:` (the default) is
 * DIR/ca/ledger.db (LAYOUT.ledger), `sqlite:PATH` another file; `postgres://USER@HOST:PORT/DB` a
 * PostgreSQL database several `mtlskit serve` replicas share (postgres.ts). Everything above this
 * folder sees only `Ledger`. Each door is loaded on first open: a command that never opens a
 * ledger loads neither SQLite's native module nor pg.
 */
import { existsSync } from "node:fs";
import * as path from "node:path";
import { UsageError } from "../errors.ts";
import { ensureDir } from "../state/fs.ts";
import { abs, LAYOUT } from "../state/layout.ts";
import { type Ledger, redactUrl } from "./ledger.ts";

export type {
  IssuedRecord,
  Ledger,
  LedgerRow,
  LedgerStats,
  ListFilter,
  RecordOutcome,
  Revoked,
  SchemaState,
  StoredToken,
  TokenKind,
  TokenRecord,
  TokenVerdict,
  WriteRowsResult,
} from "./ledger.ts";
export {
  LEDGER_TABLES,
  LedgerUnavailableError,
  redactUrl,
  rowId,
  rowKey,
  rowSha256,
  SCHEMA_VERSION,
} from "./ledger.ts";
export { isTokenId, parseToken } from "./tokens.ts";
export { type CopyResult, copyLedger, type VerifyResult, verifyCopy } from "./copy.ts";

/** LedgerPlace is where a spec points: a SQLite file, or a PostgreSQL URL (`name`: the URL without user or password, for messages). */
export type LedgerPlace = { kind: "sqlite"; file: string } | { kind: "postgres"; url: string; name: string };

/** OpenLedgerOptions: whether a missing ledger is made. */
export interface OpenLedgerOptions {
  /**
   * create: make a missing SQLite ledger (and DIR/ca, 0700) and migrate an older schema (serve,
   * token create, `ledger migrate`). Default: true. False (read-only commands): a missing one is
   * LedgerUnavailableError (check ledgerExists first), and an older schema is read at its own
   * version, never written (`Ledger.acme` is undefined below version 3).
   */
  create?: boolean;
  /** busyTimeoutMs: how long a write waits for another process's lock. Default: 5000. */
  busyTimeoutMs?: number;
  /** committerThread: SQLite's group commit runs in a thread of its own (its COMMIT's fsync never stalls the caller's event loop: `mtlskit serve`, and `serve --workers N`'s primary; 11-17% more certificates/s for 4-7% more CPU per certificate, docs/online-ca.md). Default: false. PostgreSQL: ignored. */
  committerThread?: boolean;
  /** connectTimeoutMs: PostgreSQL: how long a connection may take. Default: 5000. */
  connectTimeoutMs?: number;
  /** statementTimeoutMs: PostgreSQL: the longest a statement may run. Default: 10000. */
  statementTimeoutMs?: number;
  /** poolMax: PostgreSQL: connections per process. Default: 10. */
  poolMax?: number;
}

/** ledgerName names the ledger `spec` points at for messages: the SQLite file, or the redacted URL. */
export function ledgerName(pkiDir: string, spec?: string): string {
  const place = ledgerPlace(pkiDir, spec);
  return place.kind === "sqlite" ? place.file : place.name;
}

/**
 * ledgerPlace reads a ledger spec against the PKI directory: undefined or `sqlite:` is
 * DIR/ca/ledger.db, `sqlite:PATH` that file (relative to the working directory), `postgres://...`
 * a database. Anything else is a UsageError naming the accepted forms.
 */
export function ledgerPlace(pkiDir: string, spec?: string): LedgerPlace {
  if (spec === undefined || spec === "" || spec === "sqlite:")
    return { kind: "sqlite", file: abs(pkiDir, LAYOUT.ledger) };
  if (spec.startsWith("sqlite:")) return { kind: "sqlite", file: path.resolve(spec.slice("sqlite:".length)) };
  if (/^postgres(ql)?:\/\//.test(spec)) return { kind: "postgres", url: spec, name: redactUrl(spec) };
  // Only the scheme is echoed: a mistyped URL may still carry a password.
  throw new UsageError(
    `ledger: ${JSON.stringify(spec.replace(/:\/\/.*$/s, "://..."))} is not a ledger; use sqlite: (DIR/ca/ledger.db, the default), sqlite:PATH, or postgres://USER@HOST:PORT/DB (the password in PGPASSWORD or ~/.pgpass)`,
  );
}

/** ledgerExists tells whether the ledger is there already (a SQLite file exists; a database is taken to be: opening it with create: false says when it holds no ledger), so read-only commands can say "no ledger" instead of making one. */
export function ledgerExists(pkiDir: string, spec?: string): boolean {
  const place = ledgerPlace(pkiDir, spec);
  return place.kind !== "sqlite" || existsSync(place.file);
}

/** openLedger opens the ledger `spec` names for the PKI directory `pkiDir` (default: SQLite at DIR/ca/ledger.db). */
export async function openLedger(pkiDir: string, spec?: string, opts: OpenLedgerOptions = {}): Promise<Ledger> {
  const place = ledgerPlace(pkiDir, spec);
  if (place.kind === "postgres") {
    const { openPostgresLedger } = await import("./postgres.ts");
    return openPostgresLedger(place.url, {
      migrate: opts.create !== false,
      ...(opts.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: opts.connectTimeoutMs }),
      ...(opts.statementTimeoutMs === undefined ? {} : { statementTimeoutMs: opts.statementTimeoutMs }),
      ...(opts.poolMax === undefined ? {} : { poolMax: opts.poolMax }),
    });
  }
  if (opts.create !== false && place.file === abs(pkiDir, LAYOUT.ledger))
    ensureDir(abs(pkiDir, LAYOUT.caDir), LAYOUT.caDir.mode, { parents: true });
  // Loaded on first open: importing this file (types, ledgerExists, the error class) never loads
  // SQLite's native module, so CLI commands that never open a ledger do not pay for it.
  const { openSqliteLedger, openSqliteLedgerThreaded } = await import("./sqlite.ts");
  const sqliteOpts = {
    migrate: opts.create !== false,
    ...(opts.create === undefined ? {} : { create: opts.create }),
    ...(opts.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: opts.busyTimeoutMs }),
  };
  return opts.committerThread
    ? openSqliteLedgerThreaded(place.file, sqliteOpts)
    : openSqliteLedger(place.file, sqliteOpts);
}
