/**
 * The PostgreSQL ledger against a real throw-away cluster on loopback (test/helpers/postgres.ts):
 * the Ledger contract (test/helpers/ledger-contract.ts, the same tests SQLite passes), then what
 * only several replicas on one database show: two pools (two replicas) racing for one token and
 * one serial, migrations applied once under concurrent opens, a newer schema refused, the database
 * stopped (fails fast, then works again without reopening), psql as the independent judge.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { type Ledger, LedgerUnavailableError, openLedger, SCHEMA_VERSION } from "../src/ledger/index.ts";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { encodeCsr } from "../src/pki/csr.ts";
import { generateKey } from "../src/pki/keys.ts";
import { AcmeClient, b64, startHttp01 } from "./helpers/acme-client.ts";
import { runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { startOnlineCa } from "./helpers/online.ts";
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
const urlOf = new WeakMap<Ledger, string>();

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
    urlOf.set(l, url);
    return l;
  },
  judge,
  async (l) => {
    const twin = await openLedger(pki, urlOf.get(l)!);
    dbOf.set(twin, dbOf.get(l)!);
    return twin;
  },
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
    pg.adminDb(
      db,
      "DROP TABLE counters; DROP INDEX certificates_revoked; DROP TABLE acme_eab, acme_objects, acme_nonces; UPDATE schema_version SET version = 1",
    );
    const upgraded = await openLedger(pki, url);
    assert.deepEqual(upgraded.schema, { version: SCHEMA_VERSION, foundVersion: 1 });
    assert.equal(await upgraded.nextCrlNumber(1n), 1n);
    await upgraded.close();
    // A version-2 database (before ACME) gains the acme_ tables and keeps its CRL counter.
    pg.adminDb(db, "DROP TABLE acme_eab, acme_objects, acme_nonces; UPDATE schema_version SET version = 2");
    const v3 = await openLedger(pki, url);
    assert.deepEqual(v3.schema, { version: 3, foundVersion: 2 });
    assert.equal(await v3.nextCrlNumber(1n), 2n);
    assert.equal(pg.adminDb(db, "SELECT count(*) FROM acme_objects"), "0");
    await v3.close();
  });

  it("ok/read-only opens (create: false: status, check, metrics, ledger list/show) read an older database (schema 2) as it is and migrate nothing; serve's open migrates it", async () => {
    const url = freshDb();
    const db = new URL(url).pathname.slice(1);
    const l = await openLedger(pki, url);
    await l.record(row("c2"));
    await l.close();
    pg.adminDb(db, "DROP TABLE acme_eab, acme_objects, acme_nonces; UPDATE schema_version SET version = 2");
    const ro = await openLedger(pki, url, { create: false });
    assert.deepEqual(ro.schema, { version: 2, foundVersion: 2 });
    assert.equal(ro.acme, undefined, "no ACME store without its tables");
    assert.equal((await ro.get("c2"))?.serial, "c2");
    assert.equal((await ro.stats(NOW)).certificates, 1);
    await ro.close();
    const list = await runCli(["ledger", "list", "--pki", pki, "--ledger", url]);
    assert.equal(list.code, 0, list.err);
    assert.match(list.out, /\bc2\b/);
    assert.equal(pg.adminDb(db, "SELECT version FROM schema_version"), "2", "nothing migrated");
    assert.equal(pg.adminDb(db, "SELECT to_regclass('acme_objects') IS NULL"), "t");
    const rw = await openLedger(pki, url);
    assert.deepEqual(rw.schema, { version: SCHEMA_VERSION, foundVersion: 2 });
    assert.ok(rw.acme);
    await rw.close();
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
    // Another program's database (a `tokens` table, no schema_version) is not taken for a ledger.
    const foreign = freshDb();
    pg.adminDb(new URL(foreign).pathname.slice(1), "CREATE TABLE tokens (x int); ALTER TABLE tokens OWNER TO mtlskit");
    await assert.rejects(
      openLedger(pki, foreign),
      /has tables tokens but no schema_version: it is not an mtlskit ledger/,
    );
    assert.equal(pg.adminDb(new URL(foreign).pathname.slice(1), "SELECT to_regclass('schema_version') IS NULL"), "t");
  });

  for (const how of ["stop", "kill"] as const)
    it(`fail/the database ${how === "stop" ? "stopped" : "killed (-9)"}: every call is LedgerUnavailableError within the connect timeout (no hang), naming the database and the fix; after start() the same ledger works again`, async () => {
      const url = freshDb();
      const ledger = await openLedger(pki, url, { connectTimeoutMs: 2000, statementTimeoutMs: 3000 });
      try {
        assert.deepEqual(await ledger.record(row("01")), { ok: true });
        // Pooled connections held open: the outage cuts live sockets, not only new connections.
        await Promise.all([ledger.get("01"), ledger.stats(NOW), ledger.revoked(NOW)]);
        await (how === "stop" ? pg.stop() : pg.kill());
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
          assert.match(
            settled.message,
            new RegExp(`^ledger postgres://127\\.0\\.0\\.1:${pg.port}/t\\d+_\\d+: cannot `),
          );
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

const CLI_MANIFEST = `version: 1
cluster: led
services:
  web: { usage: dual, csr: true }
`;

/** noSecret asserts that a CLI result shows neither the password nor the user@ part of the URL. */
function noSecret(r: { out: string; err: string }, what: string): void {
  for (const text of [r.out, r.err]) {
    assert.equal(text.includes(pg.password), false, `${what}: the password is in the output`);
    assert.doesNotMatch(text, /mtlskit:[^@\s]*@/, `${what}: the URL's credentials are in the output`);
  }
}

describe("cli: --ledger postgres://, ledger migrate", { timeout: 180_000 }, () => {
  it("ok/ledger migrate --from sqlite --to postgres copies every row, verifies counts and SHA-256, re-run adds nothing; a conflicting row is named; back to sqlite: round trip identical", async () => {
    const dir = tempDir("mtlskit-pgcli-");
    const file = writeManifest(dir, CLI_MANIFEST);
    const pki = path.join(dir, "pki");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    // A SQLite ledger with tokens (outstanding, used, revoked) and certificates (one revoked).
    const src = await openLedger(pki);
    const made = await Promise.all(Array.from({ length: 30 }, () => src.createToken("web", "enroll", HOUR, NOW)));
    for (let i = 0; i < 20; i++)
      await src.record(row((0x5000 + i).toString(16), { tokenId: made[i]!.record.id }), {
        tokenId: made[i]!.record.id,
        now: NOW,
      });
    for (let i = 0; i < 1100; i++) await src.record(row((0x100000 + i).toString(16), { how: "renew" }));
    await src.revokeToken(made[25]!.record.id, NOW);
    await src.revoke("5003", "keyCompromise", NOW);
    await src.close();
    const url = freshDb();
    const db = new URL(url).pathname.slice(1);
    const sqliteSpec = `sqlite:${path.join(pki, "ca/ledger.db")}`;
    const first = await runCli(["ledger", "migrate", "--from", sqliteSpec, "--to", url]);
    assert.equal(first.code, 0, first.err);
    noSecret(first, "migrate");
    assert.match(
      first.out,
      /: 30 tokens and 1120 certificates added, and of the ACME state 0 EAB keys and 0 accounts, orders and authorizations; 0 rows already there unchanged\. ACME nonces are not copied/,
    );
    assert.match(
      first.out,
      /Verified: all 1150 rows of the source \(30 tokens, 1120 certificates, 0 EAB keys, 0 ACME objects\) are in the target with the same SHA-256/,
    );
    // psql, the judge: the rows are there, hashes of the DER equal the recorded sha256 columns' source.
    assert.equal(pg.adminDb(db, "SELECT count(*) FROM certificates"), "1120");
    assert.equal(pg.adminDb(db, "SELECT count(*) FROM tokens WHERE used_at IS NOT NULL"), "20");
    assert.equal(pg.adminDb(db, "SELECT revoked_reason FROM certificates WHERE serial = '5003'"), "keyCompromise");
    const again = await runCli(["ledger", "migrate", "--from", sqliteSpec, "--to", url, "--json"]);
    assert.equal(again.code, 0, again.err);
    const j = JSON.parse(again.out);
    assert.deepEqual(j.copied, {
      tokens: { added: 0, same: 30 },
      certificates: { added: 0, same: 1120 },
      acme_eab: { added: 0, same: 0 },
      acme_objects: { added: 0, same: 0 },
    });
    // Back into a new SQLite file: the same rows, hash for hash (the verification ran inside).
    const back = path.join(dir, "back.db");
    const round = await runCli(["ledger", "migrate", "--from", url, "--to", `sqlite:${back}`]);
    assert.equal(round.code, 0, round.err);
    assert.match(round.out, /30 tokens and 1120 certificates added/);
    const sq = spawnSync("sqlite3", [back, "SELECT count(*), sum(length(der)) FROM certificates"], {
      encoding: "utf8",
    });
    assert.equal(sq.stdout.trim(), `1120|${1120 * 500}`);
    // A row changed in the target: the next copy stops, naming it, and writes nothing of its page.
    pg.adminDb(db, "UPDATE certificates SET requester = '10.9.9.9:1' WHERE serial = '5007'");
    const conflict = await runCli(["ledger", "migrate", "--from", sqliteSpec, "--to", url]);
    assert.equal(conflict.code, 3, conflict.err);
    assert.match(conflict.err, /already holds a row with the same key as .* but other content: certificates\/5007/);
    noSecret(conflict, "conflict");
    const usage = await runCli(["ledger", "migrate", "--from", sqliteSpec]);
    assert.equal(usage.code, 2);
    assert.match(usage.err, /--from and --to go together/);
  });

  it("ok/--ledger on token, ledger, serve's neighbours: create, list, revoke, show, migrate, status; the password never printed (from the URL or PGPASSWORD)", async () => {
    const dir = tempDir("mtlskit-pgcli-");
    const file = writeManifest(dir, CLI_MANIFEST);
    const pki = path.join(dir, "pki");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    const url = freshDb();
    const db = new URL(url).pathname.slice(1);
    const name = `postgres://127.0.0.1:${pg.port}/${db}`;
    const empty = await runCli(["token", "list", "--pki", pki, "--ledger", url]);
    assert.equal(empty.code, 3);
    assert.match(empty.err, /holds no mtlskit ledger yet; run `mtlskit ledger migrate/);
    noSecret(empty, "token list on an empty database");
    const mig = await runCli(["ledger", "migrate", "--ledger", url]);
    assert.equal(mig.code, 0, mig.err);
    assert.equal(
      mig.out,
      `Ledger ${name}: created at schema version ${SCHEMA_VERSION}. This mtlskit reads schema version ${SCHEMA_VERSION}.\n`,
    );
    const mig2 = await runCli(["ledger", "migrate", "--ledger", url]);
    assert.match(mig2.out, /already at schema version \d+; nothing to apply/);
    // The password through PGPASSWORD: the URL carries none.
    const bare = url.replace(/:[^:@/]+@/, "@");
    assert.equal(bare.includes(pg.password), false);
    const old = process.env.PGPASSWORD;
    process.env.PGPASSWORD = pg.password;
    try {
      const created = await runCli([
        "token",
        "create",
        "web",
        "-f",
        file,
        "--ledger",
        bare,
        "--pki",
        path.join(dir, "none"),
      ]);
      assert.equal(created.code, 0, created.err);
      noSecret(created, "token create");
      assert.match(created.err, new RegExp(`token revoke [0-9a-f]{16} --ledger ${name.replace(/[./]/g, "\\$&")}`));
      const id = created.out.trim().split("_")[1]!;
      const list = await runCli(["token", "list", "--ledger", bare, "--json"]);
      assert.deepEqual(
        JSON.parse(list.out).map((t: { id: string; state: string }) => [t.id, t.state]),
        [[id, "outstanding"]],
      );
      const rev = await runCli(["token", "revoke", id, "--ledger", bare]);
      assert.equal(rev.out, `Revoked token ${id} (web).\n`);
      assert.equal(pg.adminDb(db, `SELECT revoked_at IS NOT NULL FROM tokens WHERE id = '${id}'`), "t");
    } finally {
      if (old === undefined) delete process.env.PGPASSWORD;
      else process.env.PGPASSWORD = old;
    }
    const l = await openLedger(pki, url);
    await l.record(row("7a01"));
    await l.close();
    const cases: string[][] = [
      ["ledger", "list", "--pki", pki, "--ledger", url],
      ["ledger", "show", "7a01", "--ledger", url],
      ["ledger", "show", "7a02", "--ledger", url],
      ["ledger", "backup", path.join(dir, "b.db"), "--ledger", url],
      ["status", "-f", file, "--pki", pki, "--ledger", url],
      ["check", "-f", file, "--pki", pki, "--ledger", url],
      ["metrics", "-f", file, "--pki", pki, "--ledger", url],
    ];
    const results = [];
    for (const argv of cases) {
      const r = await runCli(argv);
      noSecret(r, argv.slice(0, 2).join(" "));
      results.push(r);
    }
    const [list, show, missing, backup, , , metrics] = results;
    assert.equal(list!.code, 0, list!.err);
    assert.match(list!.out, /7a01\s+web\s+not yet valid/);
    assert.match(show!.out, /^serial 7a01: web/);
    assert.equal(missing!.code, 2);
    assert.match(missing!.err, new RegExp(`${name.replace(/[./]/g, "\\$&")}.*has no certificate with serial 7a02`));
    assert.equal(backup!.code, 2);
    assert.match(
      backup!.err,
      /backed up by PostgreSQL's own tool.*pg_dump --format=custom --file FILE 'postgres:\/\/USER@127\.0\.0\.1:\d+\/t\d+_\d+'/s,
    );
    assert.match(metrics!.out, /mtlskit_ledger|ledger/);
    // A wrong password: exit 3, the fix names PGPASSWORD and ~/.pgpass, and the wrong one is not echoed.
    const wrong = url.replace(`:${pg.password}@`, ":n0tTh3Pw@");
    const denied = await runCli(["ledger", "list", "--ledger", wrong]);
    assert.equal(denied.code, 3, denied.err);
    assert.match(denied.err, /password authentication failed; give the password through PGPASSWORD or ~\/\.pgpass/);
    assert.equal(denied.err.includes("n0tTh3Pw"), false);
  });
});

const ACME_MANIFEST = `version: 1
cluster: led
identity:
  uri: spiffe://{cluster}/{role}/{name}
services:
  web: { usage: dual, csr: true, addresses: [web.localhost] }
`;

describe("cli: ledger migrate carries the ACME state", { timeout: 180_000 }, () => {
  it("ok/SQLite -> PostgreSQL -> SQLite: EAB keys, accounts, orders, authorizations copied and verified (counts + SHA-256), re-runs add nothing; an account registered before keeps working on each new ledger, a used EAB key stays used, an unused one still binds", async () => {
    const responder = await startHttp01();
    const ca = await startOnlineCa(ACME_MANIFEST, {
      acme: { validator: { ports: { http: responder.port }, timeoutMs: 3000 } },
    });
    try {
      const bundle = readFileSync(path.join(ca.pki, "ca/ca.pem"), "utf8");
      const directory = `${ca.url}/acme/directory`;
      /** issue: an order for web.localhost through http-01 and finalize; its order URL and certificate. */
      const issue = async (c: AcmeClient) => {
        const o = await c.order("dns:web.localhost");
        assert.equal(o.status, 201, o.text);
        for (const url of o.json.authorizations as string[]) {
          const z = await c.post(url, "");
          const ch = (z.json.challenges as { type: string; url: string; token: string }[]).find(
            (x) => x.type === "http-01",
          )!;
          responder.answers.set(ch.token, await c.keyAuth(ch.token));
          assert.equal((await c.post(ch.url, {})).json.status, "valid");
        }
        const ready = await c.post(o.headers.location as string, "");
        const k = generateKey("ecdsa-p256");
        const csr = encodeCsr(
          { subject: {}, dns: ["web.localhost"], ips: [], uris: [] },
          "ecdsa-p256",
          k.spki,
          createPrivateKey({ key: k.pkcs8, format: "der", type: "pkcs8" }),
        );
        const fin = await c.post(String(ready.json.finalize), { csr: b64(csr) });
        assert.equal(fin.json.status, "valid", fin.text);
        const pem = (await c.post(String(fin.json.certificate), "")).text;
        return { order: o.headers.location as string, pem };
      };
      const alice = await AcmeClient.create(directory, bundle);
      const usedEab = await ca.eab("web", 24 * HOUR);
      assert.equal((await alice.register(usedEab)).status, 201);
      const before = await issue(alice);
      const spareEab = await ca.eab("web", 24 * HOUR);
      await ca.stop();

      const sqliteSpec = `sqlite:${path.join(ca.pki, "ca/ledger.db")}`;
      const url = freshDb();
      const db = new URL(url).pathname.slice(1);
      const first = await runCli(["ledger", "migrate", "--from", sqliteSpec, "--to", url, "--json"]);
      assert.equal(first.code, 0, first.err);
      const j = JSON.parse(first.out);
      // 2 EAB keys; 1 account, 1 order, 1 authorization.
      assert.deepEqual(j.copied.acme_eab, { added: 2, same: 0 });
      assert.deepEqual(j.copied.acme_objects, { added: 3, same: 0 });
      assert.deepEqual(j.verified.source, j.verified.target);
      assert.equal(
        pg.adminDb(db, "SELECT string_agg(kind, ',' ORDER BY kind) FROM acme_objects"),
        "account,authz,order",
      );
      assert.equal(pg.adminDb(db, "SELECT count(*) FROM acme_nonces"), "0", "nonces are not copied");
      const again = await runCli(["ledger", "migrate", "--from", sqliteSpec, "--to", url, "--json"]);
      assert.equal(again.code, 0, again.err);
      assert.deepEqual(JSON.parse(again.out).copied.acme_objects, { added: 0, same: 3 }, "idempotent");

      /** proves: on the ledger now served, alice's account, order and certificate are hers, she orders anew, the used EAB key binds nothing. */
      const proves = async (where: string) => {
        const acc = await alice.post(alice.kid!, "");
        assert.equal(acc.status, 200, `${where}: ${acc.text}`);
        assert.equal(acc.json.status, "valid");
        const old = await alice.post(before.order, "");
        assert.equal(old.json.status, "valid", `${where}: ${old.text}`);
        assert.equal((await alice.post(String(old.json.certificate), "")).text, before.pem);
        const next = await issue(alice);
        assert.notEqual(next.pem, before.pem);
        const serial = new X509Certificate(next.pem).serialNumber.toLowerCase().replace(/^(00)+/, "");
        assert.equal(
          (await ca.ledgerRows()).find((r) => r.serial === serial)?.how,
          "acme",
          `${where}: the new ledger records it`,
        );
        const mallory = await AcmeClient.create(directory, bundle);
        const reused = await mallory.register(usedEab);
        assert.equal(reused.status, 403, reused.text);
        assert.match(String(reused.json.detail), /has bound an account already/);
      };
      await ca.restart(url);
      await proves("postgres");
      // The spare EAB key, made before the move, binds an account on the new ledger.
      const bob = await AcmeClient.create(directory, bundle);
      assert.equal((await bob.register(spareEab)).status, 201, "an unused EAB key still binds");
      await ca.stop();

      // Back into a new SQLite file: everything (the PostgreSQL-era objects too), and alice still works.
      const back = `sqlite:${path.join(tempDir("mtlskit-acme-back-"), "ledger.db")}`;
      const round = await runCli(["ledger", "migrate", "--from", url, "--to", back, "--json"]);
      assert.equal(round.code, 0, round.err);
      const r = JSON.parse(round.out);
      assert.deepEqual(r.copied.acme_eab, { added: 2, same: 0 });
      // + bob's account; alice's second order and its authorization.
      assert.deepEqual(r.copied.acme_objects, { added: 6, same: 0 });
      await ca.restart(back);
      await proves("sqlite copy");
    } finally {
      await ca.stop().catch(() => {});
      await responder.close();
    }
  });
});
