/**
 * copyLedger / verifyCopy: every row of one ledger into another (tokens, certificates, and the
 * ACME state: EAB keys' HMAC keys, accounts, orders, authorizations; not nonces, which live an
 * hour and whose loss costs a client one badNonce retry), through the Ledger interface only
 * (so any door to any door: SQLite to PostgreSQL when a deployment grows replicas, PostgreSQL to a
 * SQLite file for a portable copy). Idempotent: a row already there with the same content is
 * skipped; one there with other content stops the copy (nothing of its page is written) naming it.
 * Bounded memory: pages of `pageSize` rows, in key order.
 */
import { FailedError } from "../errors.ts";
import { LEDGER_TABLES as TABLES, type Ledger, type LedgerRow, rowId as keyOf, rowKey, rowSha256 } from "./ledger.ts";

/** perTable: a record with one entry per copied table. */
const perTable = <T>(f: () => T): Record<LedgerRow["table"], T> =>
  Object.fromEntries(TABLES.map((t) => [t, f()])) as Record<LedgerRow["table"], T>;

/** CopyResult counts, per table, the rows added and the rows found already there, identical. */
export type CopyResult = Record<LedgerRow["table"], { added: number; same: number }>;

/** VerifyResult: rows of the source, rows of the target, and the source rows missing from or different in the target. */
export interface VerifyResult {
  source: Record<LedgerRow["table"], number>;
  target: Record<LedgerRow["table"], number>;
  missing: string[];
  different: string[];
}

/** copyLedger copies every row of `from` into `to`; a conflicting row is a FailedError naming it (and the first 10 others of its page). */
export async function copyLedger(from: Ledger, to: Ledger, pageSize = 500): Promise<CopyResult> {
  const out: CopyResult = perTable(() => ({ added: 0, same: 0 }));
  for (const table of TABLES) {
    let after: string | undefined;
    for (;;) {
      const page = await from.readRows(table, after, pageSize);
      if (page.length === 0) break;
      const written = await to.writeRows(page);
      if (written.conflicts.length > 0)
        throw new FailedError(
          `ledger migrate: ${to.kind} already holds ${written.conflicts.length === 1 ? "a row" : `${written.conflicts.length} rows`} with the same key as ${from.kind} but other content: ${written.conflicts.slice(0, 10).join(", ")}${written.conflicts.length > 10 ? ", ..." : ""}; nothing of that page was written (${TABLES.reduce((n, t) => n + out[t].added, 0)} rows before it were)\n    fix: the target is not a copy of this ledger: migrate into an empty database, or compare the rows (\`mtlskit ledger show SERIAL --ledger ...\`) and remove the wrong ones`,
        );
      out[table].added += written.added;
      out[table].same += written.same;
      after = keyOf(page.at(-1)!);
      if (page.length < pageSize) break;
    }
  }
  return out;
}

/** verifyCopy compares every row of `from` with the row of the same key in `to` by rowSha256 (a merge of both in key order); the target may hold more rows. */
export async function verifyCopy(from: Ledger, to: Ledger, pageSize = 500): Promise<VerifyResult> {
  const out: VerifyResult = { source: perTable(() => 0), target: perTable(() => 0), missing: [], different: [] };
  for (const table of TABLES) {
    /** pages yields one ledger's rows of `table` in key order. */
    async function* rows(l: Ledger): AsyncGenerator<LedgerRow> {
      let after: string | undefined;
      for (;;) {
        const page = await l.readRows(table, after, pageSize);
        yield* page;
        if (page.length < pageSize) return;
        after = keyOf(page.at(-1)!);
      }
    }
    const target = rows(to);
    let t = await target.next();
    for await (const s of rows(from)) {
      out.source[table]++;
      const k = keyOf(s);
      while (!t.done && keyOf(t.value) < k) {
        out.target[table]++;
        t = await target.next();
      }
      if (t.done || keyOf(t.value) !== k) out.missing.push(rowKey(s));
      else {
        if (rowSha256(t.value) !== rowSha256(s)) out.different.push(rowKey(s));
        out.target[table]++;
        t = await target.next();
      }
    }
    while (!t.done) {
      out.target[table]++;
      t = await target.next();
    }
  }
  return out;
}
