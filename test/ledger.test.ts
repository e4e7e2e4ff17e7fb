/**
 * The SQLite ledger on real files: tokens kept only as hashes and compared in constant time,
 * every TokenVerdict and RecordOutcome, one token used by 50 concurrent records, group commit,
 * durability across kill -9, online backup under load, file modes, a newer schema refused,
 * SQLite's failures as LedgerUnavailableError; and `mtlskit token` / `mtlskit ledger` end to end.
 * The sqlite3 program (Debian's) is the independent judge of the files' integrity.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it, mock } from "node:test";
import { type IssuedRecord, LedgerUnavailableError, openLedger } from "../src/ledger/index.ts";
import { openSqliteLedger, SCHEMA_VERSION, type SqliteLedger } from "../src/ledger/sqlite.ts";
import { hashSecret, newToken, parseToken } from "../src/ledger/tokens.ts";
import { REPO, tempDir } from "./helpers/cli.ts";

const NOW = new Date("2027-03-01T12:00:00Z");
const HOUR = 3_600_000;

function fresh(): { dir: string; file: string; ledger: SqliteLedger } {
  const dir = tempDir("mtlskit-ledger-");
  const file = path.join(dir, "ledger.db");
  return { dir, file, ledger: openSqliteLedger(file) };
}

function row(serial: string, over: Partial<IssuedRecord> = {}): IssuedRecord {
  return {
    serial,
    service: "web",
    sans: ["DNS:web", "IP:127.0.0.1", "URI:spiffe://t/web"],
    notBefore: NOW,
    notAfter: new Date(NOW.getTime() + HOUR),
    sha256: crypto.createHash("sha256").update(serial).digest("hex"),
    der: crypto.randomBytes(500),
    how: "enroll",
    tokenId: undefined,
    renewedFrom: undefined,
    requester: "127.0.0.1:40000",
    issuedAt: NOW,
    revokedAt: undefined,
    revokedReason: undefined,
    ...over,
  };
}

/** sqlite runs Debian's sqlite3 on `file` (the independent judge). */
function sqlite(file: string, sql: string): string {
  const r = spawnSync("sqlite3", [file, sql], { encoding: "utf8", timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

const mode = (f: string) => statSync(f).mode & 0o777;

describe("ledger: tokens", () => {
  it("ok/format: mtk_ + 16 hex + _ + 43 base64url, parsed back; fail/every malformed spelling is undefined", () => {
    const t = newToken();
    assert.match(t.token, /^mtk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(parseToken(t.token), { id: t.id, secret: t.secret });
    assert.equal(Buffer.from(t.secret, "base64url").length, 32);
    for (const bad of [
      "",
      t.token.slice(0, -1),
      `${t.token}A`,
      ` ${t.token}`,
      `${t.token}\n`,
      t.token.replace("mtk_", "mtK_"),
      t.token.replace(t.id, t.id.toUpperCase().replace(/[0-9]/g, "A")),
      `mtk_${t.id}_${t.secret.slice(0, 42)}=`,
      `mtk_${t.id.slice(1)}_${t.secret}`,
      `mtk_${t.id}${t.secret}`,
    ])
      assert.equal(parseToken(bad), undefined, JSON.stringify(bad));
  });

  it("ok/stored hashed: the secret's text and bytes are nowhere in the files, its SHA-256 is", async () => {
    const { file, ledger } = fresh();
    const { token } = await ledger.createToken("web", "enroll", 15 * 60_000, NOW);
    const { secret } = parseToken(token)!;
    const files = [file, `${file}-wal`].filter(existsSync).map((f) => readFileSync(f));
    const all = Buffer.concat(files);
    assert.equal(all.includes(Buffer.from(secret)), false);
    assert.equal(all.includes(Buffer.from(secret, "base64url")), false);
    assert.equal(all.includes(hashSecret(secret)), true);
    await ledger.close();
    assert.equal(readFileSync(file).includes(Buffer.from(secret)), false);
  });

  it("ok/checkToken compares with crypto.timingSafeEqual, for a known id, a wrong secret and an unknown id alike", async (t) => {
    const { ledger } = fresh();
    const { token, record } = await ledger.createToken("web", "enroll", HOUR, NOW);
    const spy = mock.method(crypto, "timingSafeEqual");
    t.after(() => spy.mock.restore());
    const wrong = `mtk_${record.id}_${newToken().secret}`;
    const unknown = newToken().token;
    for (const [tok, ok] of [
      [token, true],
      [wrong, false],
      [unknown, false],
    ] as const) {
      const before = spy.mock.callCount();
      const v = await ledger.checkToken(tok, "web", "enroll", NOW);
      assert.equal(v.ok, ok);
      assert.equal(spy.mock.callCount(), before + 1, "one constant-time comparison per check");
      const args = spy.mock.calls.at(-1)!.arguments as [Buffer, Buffer];
      assert.equal(args[0].length, 32);
      assert.equal(args[1].length, 32);
    }
    await ledger.close();
  });

  it("ok/every TokenVerdict: ok, malformed, unknown (id or secret), expired, used, revoked, wrong-service, wrong-kind", async () => {
    const { ledger } = fresh();
    const mk = (service = "web", ttl = HOUR, kind: "enroll" | "acme" = "enroll") =>
      ledger.createToken(service, kind, ttl, NOW);
    const good = await mk();
    const used = await mk();
    assert.deepEqual(await ledger.record(row("01"), { tokenId: used.record.id, now: NOW }), { ok: true });
    const revoked = await mk();
    assert.equal(await ledger.revokeToken(revoked.record.id, NOW), true);
    assert.equal(await ledger.revokeToken("0123456789abcdef", NOW), false);
    const short = await mk("web", 60_000);
    const acme = await mk("web", HOUR, "acme");
    const other = await mk("db");
    const cases: [string, string, "enroll" | "acme", Date, string][] = [
      ["ok", good.token, "enroll", NOW, "ok"],
      ["malformed", "mtk_nope", "enroll", NOW, "malformed"],
      ["unknown id", newToken().token, "enroll", NOW, "unknown"],
      ["wrong secret", `mtk_${good.record.id}_${newToken().secret}`, "enroll", NOW, "unknown"],
      ["expired (at expiresAt exactly)", short.token, "enroll", new Date(NOW.getTime() + 60_000), "expired"],
      ["used", used.token, "enroll", NOW, "used"],
      ["revoked", revoked.token, "enroll", NOW, "revoked"],
      ["wrong-service", other.token, "enroll", NOW, "wrong-service"],
      ["wrong-kind", acme.token, "enroll", NOW, "wrong-kind"],
    ];
    for (const [name, tok, kind, at, want] of cases) {
      const v = await ledger.checkToken(tok, "web", kind, at);
      assert.equal(v.ok ? "ok" : v.reason, want, name);
    }
    const ok = await ledger.checkToken(good.token, "web", "enroll", NOW);
    assert.ok(ok.ok && ok.token.id === good.record.id && ok.token.usedAt === undefined);
    // checkToken never consumes: the good token is still good.
    assert.equal((await ledger.checkToken(good.token, "web", "enroll", NOW)).ok, true);
    const listed = await ledger.tokens();
    assert.equal(listed.length, 6);
    assert.equal(listed.find((t) => t.id === used.record.id)!.usedBy, "01");
    assert.deepEqual(
      (await ledger.tokens({ service: "db" })).map((t) => t.id),
      [other.record.id],
    );
    assert.equal((await ledger.stats(NOW)).tokensOutstanding, 4);
    await ledger.close();
  });
});

describe("ledger: record", () => {
  it("ok/50 concurrent records paying with ONE token: exactly 1 ok, 49 token-used, 49 rows absent", async () => {
    const { ledger } = fresh();
    const { record } = await ledger.createToken("web", "enroll", HOUR, NOW);
    const serials = Array.from({ length: 50 }, (_, i) => (0x1000 + i).toString(16));
    const outcomes = await Promise.all(
      serials.map((s) => ledger.record(row(s, { tokenId: record.id }), { tokenId: record.id, now: NOW })),
    );
    const winners = serials.filter((_, i) => outcomes[i]!.ok);
    assert.equal(winners.length, 1);
    assert.deepEqual(
      outcomes.filter((o) => !o.ok),
      Array.from({ length: 49 }, () => ({ ok: false, reason: "token-used" })),
    );
    const rows = await ledger.list();
    assert.deepEqual(
      rows.map((r) => r.serial),
      winners,
    );
    assert.equal((await ledger.tokens())[0]!.usedBy, winners[0]);
    await ledger.close();
  });

  it("ok/every RecordOutcome refusal writes nothing: duplicate-serial (its token stays unused), token-unknown, -expired, -revoked", async () => {
    const { file, ledger } = fresh();
    const first = row("0a");
    assert.deepEqual(await ledger.record(first), { ok: true });
    const t = await ledger.createToken("web", "enroll", HOUR, NOW);
    assert.deepEqual(await ledger.record(row("0a"), { tokenId: t.record.id, now: NOW }), {
      ok: false,
      reason: "duplicate-serial",
    });
    assert.equal((await ledger.tokens())[0]!.usedAt, undefined, "the token of a refused row is not consumed");
    assert.deepEqual((await ledger.get("0a"))!.der, first.der, "the first row is kept");
    const revoked = await ledger.createToken("web", "enroll", HOUR, NOW);
    await ledger.revokeToken(revoked.record.id, NOW);
    const short = await ledger.createToken("web", "enroll", 1000, NOW);
    const later = new Date(NOW.getTime() + 1000);
    for (const [serial, tokenId, now, reason] of [
      ["0b", "00000000000000ff", NOW, "token-unknown"],
      ["0c", short.record.id, later, "token-expired"],
      ["0d", revoked.record.id, NOW, "token-revoked"],
    ] as const)
      assert.deepEqual(await ledger.record(row(serial), { tokenId, now }), { ok: false, reason }, reason);
    assert.deepEqual(
      (await ledger.list()).map((r) => r.serial),
      ["0a"],
    );
    await ledger.close();
    assert.equal(sqlite(file, "SELECT count(*) FROM certificates"), "1");
    assert.equal(sqlite(file, "SELECT count(*) FROM tokens WHERE used_at IS NOT NULL"), "0");
  });

  it("ok/group commit: 200 concurrent records share one transaction (ledger.commits), one refusal inside does not abort the others", async () => {
    const { ledger } = fresh();
    const before = ledger.commits;
    const serials = Array.from({ length: 200 }, (_, i) => (0x2000 + i).toString(16));
    // One duplicate in the middle of the batch: its savepoint rolls back, the other 200 commit.
    serials.splice(100, 0, serials[3]!);
    const outcomes = await Promise.all(serials.map((s) => ledger.record(row(s))));
    assert.equal(outcomes.filter((o) => o.ok).length, 200);
    assert.deepEqual(outcomes[100], { ok: false, reason: "duplicate-serial" });
    assert.ok(ledger.commits - before <= 2, `200 records took ${ledger.commits - before} commits`);
    assert.equal((await ledger.stats(NOW)).certificates, 200);
    await ledger.close();
  });

  it("ok/rows read back as written; list filters (service, validAt, limit) newest first; revoke keeps the first revocation", async () => {
    const { ledger } = fresh();
    const a = row("aa", { service: "web", issuedAt: new Date(NOW.getTime() - 2 * HOUR) });
    const b = row("bb", {
      service: "db",
      how: "renew",
      renewedFrom: "aa",
      issuedAt: new Date(NOW.getTime() - HOUR),
      notBefore: new Date(NOW.getTime() - HOUR),
      notAfter: new Date(NOW.getTime() - 1),
    });
    const c = row("cc", { service: "web", tokenId: "0123456789abcdef" });
    for (const r of [a, b, c]) assert.deepEqual(await ledger.record(r), { ok: true });
    assert.deepEqual(await ledger.get("bb"), b);
    assert.equal(await ledger.get("dd"), undefined);
    assert.deepEqual(
      (await ledger.list()).map((r) => r.serial),
      ["cc", "bb", "aa"],
    );
    assert.deepEqual(
      (await ledger.list({ service: "web" })).map((r) => r.serial),
      ["cc", "aa"],
    );
    assert.deepEqual(
      (await ledger.list({ limit: 1 })).map((r) => r.serial),
      ["cc"],
    );
    assert.equal(await ledger.revoke("aa", "keyCompromise", NOW), true);
    assert.equal(await ledger.revoke("aa", "superseded", new Date(NOW.getTime() + 1)), true);
    assert.equal(await ledger.revoke("dd", "superseded", NOW), false);
    const got = (await ledger.get("aa"))!;
    assert.equal(got.revokedReason, "keyCompromise");
    assert.deepEqual(got.revokedAt, NOW);
    assert.deepEqual(
      (await ledger.list({ validAt: NOW })).map((r) => r.serial),
      ["cc"],
    );
    assert.deepEqual(await ledger.stats(NOW), { certificates: 3, revoked: 1, tokensOutstanding: 0 });
    await ledger.close();
  });
});

describe("ledger: files", { timeout: 120_000 }, () => {
  it("ok/kill -9 mid-stream: every serial the child printed (its record resolved) is in the reopened ledger", async () => {
    const { file, ledger } = fresh();
    await ledger.close();
    const child = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "test/helpers/ledger-writer.ts"), file], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stderr.on("data", (d: Buffer) => void (err += d));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_c, s) => resolve(s)));
    try {
      // Kill once a few thousand rows are out (or after 20 s, whichever first): mid-stream.
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => resolve(), 20_000);
        child.stdout.on("data", (d: Buffer) => {
          out += d;
          if (out.split("\n").length > 2000) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.on("exit", (code) => {
          clearTimeout(timer);
          reject(new Error(`writer exited early (${code}): ${err}`));
        });
      });
      child.kill("SIGKILL");
      assert.equal(await exited, "SIGKILL");
    } finally {
      child.kill("SIGKILL");
    }
    const printed = out.split("\n").filter((l) => /^[0-9a-f]+$/.test(l));
    assert.ok(printed.length >= 25, `the child printed ${printed.length} serials: ${err}`);
    const reopened = openSqliteLedger(file);
    const have = new Set((await reopened.list()).map((r) => r.serial));
    const missing = printed.filter((s) => !have.has(s));
    assert.deepEqual(missing, [], `${missing.length} of ${printed.length} printed serials are missing`);
    await reopened.close();
    assert.equal(sqlite(file, "PRAGMA integrity_check"), "ok");
  });

  it("ok/backup while records are written: a consistent, openable 0600 copy (every row's token consumed in it, none more)", async () => {
    const { dir, ledger } = fresh();
    const tokens = await Promise.all(Array.from({ length: 600 }, () => ledger.createToken("web", "enroll", HOUR, NOW)));
    let i = 0;
    const writing = (async () => {
      while (i < tokens.length) {
        const chunk = tokens.slice(i, i + 20);
        i += chunk.length;
        await Promise.all(
          chunk.map((t, j) =>
            ledger.record(row((0x10000 + i + j).toString(16), { tokenId: t.record.id }), {
              tokenId: t.record.id,
              now: NOW,
            }),
          ),
        );
      }
    })();
    await new Promise((r) => setImmediate(r));
    const copy = path.join(dir, "copy.db");
    await ledger.backup(copy);
    await writing;
    assert.equal(mode(copy), 0o600);
    assert.equal(sqlite(copy, "PRAGMA integrity_check"), "ok");
    const certs = Number(sqlite(copy, "SELECT count(*) FROM certificates"));
    const used = Number(sqlite(copy, "SELECT count(*) FROM tokens WHERE used_at IS NOT NULL"));
    assert.equal(certs, used, "a certificate row and its token's consumption are in the copy together");
    assert.equal(Number(sqlite(copy, "SELECT count(*) FROM tokens")), 600);
    const opened = openSqliteLedger(copy, { create: false });
    assert.equal((await opened.stats(NOW)).certificates, certs);
    await opened.close();
    assert.equal((await ledger.stats(NOW)).certificates, 600);
    await ledger.close();
  });

  it("ok/modes: db, -wal, -shm 0600 even under umask 000; a 0644 ledger is tightened on open; DIR/ca made 0700", async () => {
    const dir = tempDir("mtlskit-ledger-");
    const old = process.umask(0);
    try {
      const ledger = await openLedger(path.join(dir, "pki"));
      await ledger.record(row("01"));
      const db = path.join(dir, "pki/ca/ledger.db");
      for (const f of [db, `${db}-wal`, `${db}-shm`]) assert.equal(mode(f).toString(8), "600", f);
      assert.equal(mode(path.join(dir, "pki/ca")).toString(8), "700");
      assert.equal(ledger.kind, `sqlite:${db}`);
      await ledger.close();
      const loose = path.join(dir, "loose.db");
      writeFileSync(loose, "", { mode: 0o644 });
      const l2 = openSqliteLedger(loose);
      await l2.record(row("02"));
      for (const f of [loose, `${loose}-wal`, `${loose}-shm`]) assert.equal(mode(f).toString(8), "600", f);
      await l2.close();
    } finally {
      process.umask(old);
    }
  });

  it("fail/a ledger written by a newer schema is refused, naming both versions and the fix", async () => {
    const { file, ledger } = fresh();
    await ledger.close();
    assert.equal(sqlite(file, "SELECT version FROM schema_version"), String(SCHEMA_VERSION));
    sqlite(file, `UPDATE schema_version SET version = ${SCHEMA_VERSION + 1}`);
    assert.throws(
      () => openSqliteLedger(file),
      (e: Error) =>
        e instanceof LedgerUnavailableError &&
        e.message.includes(
          `schema version ${SCHEMA_VERSION + 1} is newer than this mtlskit understands (${SCHEMA_VERSION})`,
        ) &&
        e.message.includes("upgrade mtlskit"),
    );
    // Reopening the same version is a no-op: the rows stay.
    sqlite(file, `UPDATE schema_version SET version = ${SCHEMA_VERSION}`);
    const again = openSqliteLedger(file);
    assert.deepEqual(await again.stats(NOW), { certificates: 0, revoked: 0, tokensOutstanding: 0 });
    await again.close();
  });

  it("fail/SQLite's failures are LedgerUnavailableError: a file that is not a database, a lock held past busy_timeout", async () => {
    const dir = tempDir("mtlskit-ledger-");
    const junk = path.join(dir, "junk.db");
    writeFileSync(junk, "this is not a database, it is a text file with enough bytes to have a header.".repeat(20));
    assert.throws(
      () => openSqliteLedger(junk),
      (e: Error) => e instanceof LedgerUnavailableError && /not an SQLite database.*SQLITE_NOTADB/.test(e.message),
    );
    const file = path.join(dir, "busy.db");
    const ledger = openSqliteLedger(file, { busyTimeoutMs: 200 });
    // Another process holds the write lock for 3 s (sqlite3 BEGIN IMMEDIATE, then sleeps).
    const holder = spawn("sqlite3", [file], { stdio: ["pipe", "pipe", "pipe"] });
    try {
      holder.stdin.write("BEGIN IMMEDIATE;\nSELECT 'locked';\n");
      await new Promise<void>((resolve) => holder.stdout.once("data", () => resolve()));
      await assert.rejects(
        ledger.record(row("01")),
        (e: Error) =>
          e instanceof LedgerUnavailableError && /locked by another process \(waited 200 ms\)/.test(e.message),
      );
      holder.stdin.end("ROLLBACK;\n");
      await new Promise((r) => holder.on("exit", r));
    } finally {
      holder.kill("SIGKILL");
    }
    assert.deepEqual(await ledger.record(row("01")), { ok: true }, "the ledger works again once the lock is gone");
    await ledger.close();
    await assert.rejects(ledger.get("01"), LedgerUnavailableError);
  });

  it("fail/openLedger: postgres:// is not available yet, a bad spec is refused, create: false does not make a file", async () => {
    const dir = tempDir("mtlskit-ledger-");
    await assert.rejects(openLedger(dir, "postgres://ca@db/ledger"), /PostgreSQL ledger is not available/);
    await assert.rejects(openLedger(dir, "mysql://x"), /is not a ledger; use sqlite:/);
    await assert.rejects(openLedger(dir, undefined, { create: false }), LedgerUnavailableError);
    assert.equal(existsSync(path.join(dir, "ca/ledger.db")), false);
  });
});
