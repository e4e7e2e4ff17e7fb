/**
 * The PostgreSQL ledger against a real throw-away cluster on loopback (test/helpers/postgres.ts):
 * the Ledger contract (test/helpers/ledger-contract.ts, the same tests SQLite passes), then what
 * only several replicas on one database show: two pools (two replicas) racing for one token and
 * one serial, migrations applied once under concurrent opens, a newer schema refused, the database
 * stopped (fails fast, then works again without reopening), psql as the independent judge.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type Ledger, LedgerUnavailableError, openLedger, SCHEMA_VERSION } from "../src/ledger/index.ts";
import { tempDir } from "./helpers/cli.ts";
import { HOUR, ledgerContract, NOW, row } from "./helpers/ledger-contract.ts";
import { type Pg, startPostgres } from "./helpers/postgres.ts";

let pg: Pg;
let n = 0;
const pki = tempDir("mtlskit-pgledger-");

/** freshDb makes an empty database owned by mtlskit and returns its URL. */
function freshDb(): string {
  const name = `t${process.pid}_${++n}`;
  pg.admin(`create database ${name} owner mtlskit`);
  return pg.url.replace(/\/mtlskit$/, `/${name}`);
}
const dbOf = new WeakMap<Ledger, string>();

/** judge counts in the ledger's database with psql, as the superuser. */
const judge = (l: Ledger, sql: string): string => pg.adminDb(dbOf.get(l)!, sql);

before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg?.destroy();
});

ledgerContract(
  "postgres",
  async () => {
    const url = freshDb();
    const l = await openLedger(pki, url);
    dbOf.set(l, new URL(url).pathname.slice(1));
    return l;
  },
  judge,
);

describe("ledger: postgres replicas", { timeout: 120_000 }, () => {
  it("ok/two replicas (two pools) record with ONE token 50 times: exactly 1 ok, 49 token-used, one row; a serial taken by A is duplicate-serial on B", async () => {
    const url = freshDb();
    const [a, b] = await Promise.all([openLedger(pki, url), openLedger(pki, url)]);
    try {
      const { record } = await a.createToken("web", "enroll", HOUR, NOW);
      const serials = Array.from({ length: 50 }, (_, i) => (0x1000 + i).toString(16));
      const outcomes = await Promise.all(
        serials.map((s, i) => (i % 2 ? b : a).record(row(s, { tokenId: record.id }), { tokenId: record.id, now: NOW })),
      );
      assert.equal(outcomes.filter((o) => o.ok).length, 1);
      assert.equal(outcomes.filter((o) => !o.ok && o.reason === "token-used").length, 49);
      const db = new URL(url).pathname.slice(1);
      assert.equal(pg.adminDb(db, "SELECT count(*) FROM certificates"), "1");
      const winner = serials[outcomes.findIndex((o) => o.ok)]!;
      assert.equal(pg.adminDb(db, `SELECT used_by FROM tokens WHERE id = '${record.id}'`), winner);
      // The same serial from both replicas at once: one row, one duplicate-serial.
      const both = await Promise.all([a.record(row("77")), b.record(row("77"))]);
      assert.deepEqual(both.map((o) => (o.ok ? "ok" : o.reason)).sort(), ["duplicate-serial", "ok"]);
      assert.deepEqual(await b.record(row(winner)), { ok: false, reason: "duplicate-serial" });
      // A revocation made through A is seen by B (what B's renewals and CRL read).
      await a.revoke("77", "keyCompromise", NOW);
      assert.equal((await b.get("77"))!.revokedReason, "keyCompromise");
      assert.deepEqual(
        (await b.revoked(NOW)).map((r) => r.serial),
        ["77"],
      );
      assert.equal(await a.nextCrlNumber(5n), 5n);
      assert.equal(await b.nextCrlNumber(5n), 6n, "one counter for every replica");
    } finally {
      await a.close();
      await b.close();
    }
  });

  it("ok/migrations: 6 concurrent opens of an empty database apply them once (advisory lock); reopening applies nothing; kind has no user or password", async () => {
    const url = freshDb();
    const db = new URL(url).pathname.slice(1);
    const opened = await Promise.all(Array.from({ length: 6 }, () => openLedger(pki, url, { poolMax: 2 })));
    try {
      assert.equal(pg.adminDb(db, "SELECT string_agg(version::text, ',') FROM schema_version"), String(SCHEMA_VERSION));
      const created = opened.filter((l) => l.schema.foundVersion === undefined).length;
      assert.equal(created, 1, "one replica created the schema, the others found it");
      for (const l of opened) assert.equal(l.schema.version, SCHEMA_VERSION);
      assert.equal(opened[0]!.kind, `postgres://127.0.0.1:${pg.port}/${db}`);
      assert.doesNotMatch(opened[0]!.kind, new RegExp(`mtlskit@|${pg.password}`));
    } finally {
      await Promise.all(opened.map((l) => l.close()));
    }
    const again = await openLedger(pki, url);
    assert.deepEqual(again.schema, { version: SCHEMA_VERSION, foundVersion: SCHEMA_VERSION });
    await again.close();
    // A version-1 database (as the first release made it) is brought to the current version.
    pg.adminDb(db, "DROP TABLE counters; DROP INDEX certificates_revoked; UPDATE schema_version SET version = 1");
    const upgraded = await openLedger(pki, url);
    assert.deepEqual(upgraded.schema, { version: SCHEMA_VERSION, foundVersion: 1 });
    assert.equal(await upgraded.nextCrlNumber(1n), 1n);
    await upgraded.close();
  });

  it("fail/a newer schema is refused naming both versions (nothing changed); create: false refuses an empty database naming `mtlskit ledger migrate`", async () => {
    const url = freshDb();
    const db = new URL(url).pathname.slice(1);
    await assert.rejects(openLedger(pki, url, { create: false }), (e: Error) => {
      assert.ok(e instanceof LedgerUnavailableError);
      assert.match(e.message, /holds no mtlskit ledger yet; run `mtlskit ledger migrate --ledger postgres:\/\/\.\.\.`/);
      return true;
    });
    assert.equal(pg.adminDb(db, "SELECT to_regclass('schema_version') IS NULL"), "t", "create: false made nothing");
    await (await openLedger(pki, url)).close();
    pg.adminDb(db, `UPDATE schema_version SET version = ${SCHEMA_VERSION + 1}`);
    await assert.rejects(openLedger(pki, url), (e: Error) => {
      assert.ok(e instanceof LedgerUnavailableError);
      assert.match(
        e.message,
        new RegExp(
          `schema version ${SCHEMA_VERSION + 1} is newer than this mtlskit understands \\(${SCHEMA_VERSION}\\).*upgrade mtlskit on every replica`,
        ),
      );
      assert.doesNotMatch(e.message, new RegExp(pg.password));
      return true;
    });
    assert.equal(pg.adminDb(db, "SELECT version FROM schema_version"), String(SCHEMA_VERSION + 1));
  });

  it("fail/the database stopped: every call is LedgerUnavailableError within the connect timeout (no hang), naming the database and the fix; after start() the same ledger works again", async () => {
    const url = freshDb();
    const ledger = await openLedger(pki, url, { connectTimeoutMs: 2000, statementTimeoutMs: 3000 });
    try {
      assert.deepEqual(await ledger.record(row("01")), { ok: true });
      await pg.stop();
      const calls: [string, () => Promise<unknown>][] = [
        ["record", () => ledger.record(row("02"))],
        ["get", () => ledger.get("01")],
        ["stats", () => ledger.stats(NOW)],
        ["createToken", () => ledger.createToken("web", "enroll", HOUR, NOW)],
        ["revoked", () => ledger.revoked(NOW)],
      ];
      for (const [name, call] of calls) {
        // Bounded: the promise must settle before this guard fires (connect timeout 2 s + slack).
        let guard: NodeJS.Timeout | undefined;
        const settled = await Promise.race([
          call().then(
            () => "resolved",
            (e: unknown) => e,
          ),
          new Promise((r) => {
            guard = setTimeout(() => r("hung"), 15_000);
          }),
        ]);
        clearTimeout(guard);
        assert.ok(settled instanceof LedgerUnavailableError, `${name}: ${String(settled)}`);
        assert.match(settled.message, new RegExp(`^ledger postgres://127\\.0\\.0\\.1:${pg.port}/t\\d+_\\d+: cannot `));
        assert.match(settled.message, /PostgreSQL is down|shutting down|connection/);
        assert.doesNotMatch(settled.message, new RegExp(pg.password));
      }
      await pg.start();
      assert.deepEqual(await ledger.record(row("03")), { ok: true }, "the pool reconnects by itself");
      assert.deepEqual(
        (await ledger.list()).map((r) => r.serial).sort(),
        ["01", "03"],
        "nothing of the failed calls was written",
      );
    } finally {
      if (!pg.running) await pg.start();
      await ledger.close();
    }
  });
});
