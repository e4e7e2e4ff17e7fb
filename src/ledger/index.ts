/**
 * openLedger: the ledger a PKI directory's online CA uses, by spec. `sqlite:` (the default) is
 * DIR/ca/ledger.db (LAYOUT.ledger), `sqlite:PATH` another file; `postgres://` is the door the
 * PostgreSQL ledger (next issue) plugs into. Everything above this folder sees only `Ledger`.
 */
import { existsSync } from "node:fs";
import * as path from "node:path";
import { EXIT, MtlskitError, UsageError } from "../errors.ts";
import { ensureDir } from "../state/fs.ts";
import { abs, LAYOUT } from "../state/layout.ts";
import type { Ledger } from "./ledger.ts";

export type {
  IssuedRecord,
  Ledger,
  LedgerStats,
  ListFilter,
  RecordOutcome,
  TokenKind,
  TokenRecord,
  TokenVerdict,
} from "./ledger.ts";
export { LedgerUnavailableError } from "./ledger.ts";
export { isTokenId, parseToken } from "./tokens.ts";

/** LedgerPlace is where a spec points: a SQLite file, or (later) a PostgreSQL URL. */
export type LedgerPlace = { kind: "sqlite"; file: string } | { kind: "postgres"; url: string };

/** OpenLedgerOptions: whether a missing ledger is made. */
export interface OpenLedgerOptions {
  /** create: make a missing SQLite ledger (and DIR/ca, 0700). Default: true. False: a missing one is LedgerUnavailableError; check ledgerExists first. */
  create?: boolean;
  /** busyTimeoutMs: how long a write waits for another process's lock. Default: 5000. */
  busyTimeoutMs?: number;
  /** committerThread: SQLite's group commit runs in a thread of its own (its COMMIT's fsync never stalls the caller's event loop: `mtlskit serve`). Default: false. */
  committerThread?: boolean;
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
  if (/^postgres(ql)?:\/\//.test(spec)) return { kind: "postgres", url: spec };
  throw new UsageError(
    `ledger: ${JSON.stringify(spec)} is not a ledger; use sqlite: (DIR/ca/ledger.db, the default), sqlite:PATH, or postgres://USER@HOST/DB`,
  );
}

/** ledgerExists tells whether the ledger is there already (a SQLite file exists), so read-only commands can say "no ledger" instead of making one. */
export function ledgerExists(pkiDir: string, spec?: string): boolean {
  const place = ledgerPlace(pkiDir, spec);
  return place.kind !== "sqlite" || existsSync(place.file);
}

/** openLedger opens the ledger `spec` names for the PKI directory `pkiDir` (default: SQLite at DIR/ca/ledger.db). */
export async function openLedger(pkiDir: string, spec?: string, opts: OpenLedgerOptions = {}): Promise<Ledger> {
  const place = ledgerPlace(pkiDir, spec);
  if (place.kind === "postgres")
    throw new MtlskitError(
      "ledger: the PostgreSQL ledger is not available in this version; use the default SQLite ledger (DIR/ca/ledger.db: leave the ledger spec out)",
      EXIT.invalid,
    );
  if (opts.create !== false && place.file === abs(pkiDir, LAYOUT.ledger))
    ensureDir(abs(pkiDir, LAYOUT.caDir), LAYOUT.caDir.mode, { parents: true });
  // Loaded on first open: importing this file (types, ledgerExists, the error class) never loads
  // SQLite's native module, so CLI commands that never open a ledger do not pay for it.
  const { openSqliteLedger, openSqliteLedgerThreaded } = await import("./sqlite.ts");
  const sqliteOpts = {
    ...(opts.create === undefined ? {} : { create: opts.create }),
    ...(opts.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: opts.busyTimeoutMs }),
  };
  return opts.committerThread
    ? openSqliteLedgerThreaded(place.file, sqliteOpts)
    : openSqliteLedger(place.file, sqliteOpts);
}
