/**
 * The Ledger contract (src/ledger/ledger.ts) as tests, run against each door: test/ledger.test.ts
 * (SQLite) and test/ledger-postgres.test.ts (PostgreSQL) call ledgerContract with a factory that
 * opens a fresh, empty ledger, and a judge that counts rows with the database's own client
 * (sqlite3, psql), sharing no code with the ledger.
 */
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { describe, it, mock } from "node:test";
import type { AcmeKind, AcmeRow } from "../../src/ledger/acme.ts";
import {
  type IssuedRecord,
  type Ledger,
  type LedgerRow,
  rowId,
  rowSha256,
  SCHEMA_VERSION,
} from "../../src/ledger/index.ts";
import { newToken } from "../../src/ledger/tokens.ts";

export const NOW = new Date("2027-03-01T12:00:00Z");
export const HOUR = 3_600_000;

/** row is a plausible certificate row (random DER) with `serial`. */
export function row(serial: string, over: Partial<IssuedRecord> = {}): IssuedRecord {
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

/**
 * ledgerContract defines the contract's tests for one door: `open` makes a fresh empty ledger,
 * `judge` runs a count query with the database's own client, `twin` opens a second Ledger on the
 * same store (another connection or pool: what a second replica holds) for the races.
 */
export function ledgerContract(
  name: string,
  open: () => Promise<Ledger>,
  judge: (l: Ledger, sql: string) => string,
  twin: (l: Ledger) => Promise<Ledger>,
): void {
  describe(`ledger contract (${name}): tokens`, () => {
    it("ok/checkToken compares with crypto.timingSafeEqual, for a known id, a wrong secret and an unknown id alike", async (t) => {
      const ledger = await open();
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
      const ledger = await open();
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

  describe(`ledger contract (${name}): record`, () => {
    it("ok/50 concurrent records paying with ONE token: exactly 1 ok, 49 token-used, 49 rows absent", async () => {
      const ledger = await open();
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
      const ledger = await open();
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
      assert.equal(judge(ledger, "SELECT count(*) FROM certificates"), "1");
      assert.equal(judge(ledger, "SELECT count(*) FROM tokens WHERE used_at IS NOT NULL"), "0");
      await ledger.close();
    });

    it("ok/rows read back as written; list filters (service, validAt, limit) newest first; revoke keeps the first revocation", async () => {
      const ledger = await open();
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
    it("ok/revoked lists revoked rows not yet expired, oldest first; nextCrlNumber is max(last + 1, atLeast), never twice under 20 concurrent takers", async () => {
      const ledger = await open();
      for (const s of ["a1", "a2", "a3"]) await ledger.record(row(s));
      await ledger.record(
        row("a4", { notAfter: new Date(NOW.getTime() - 1), notBefore: new Date(NOW.getTime() - HOUR) }),
      );
      await ledger.revoke("a2", "keyCompromise", new Date(NOW.getTime() + 1000));
      await ledger.revoke("a3", "superseded", NOW);
      await ledger.revoke("a4", "superseded", NOW);
      assert.deepEqual(
        (await ledger.revoked(NOW)).map((r) => [r.serial, r.reason, r.revokedAt.getTime(), r.service]),
        [
          ["a3", "superseded", NOW.getTime(), "web"],
          ["a2", "keyCompromise", NOW.getTime() + 1000, "web"],
        ],
      );
      assert.equal(await ledger.nextCrlNumber(1n), 1n);
      assert.equal(await ledger.nextCrlNumber(1n), 2n);
      assert.equal(await ledger.nextCrlNumber(10n), 10n);
      const many = await Promise.all(Array.from({ length: 20 }, () => ledger.nextCrlNumber(1n)));
      assert.deepEqual(
        many.map(String).sort((a, b) => Number(a) - Number(b)),
        Array.from({ length: 20 }, (_, i) => String(11 + i)),
      );
      assert.equal(await ledger.nextCrlNumber(2n ** 62n), 2n ** 62n, "a 63-bit number survives the round trip");
      assert.equal(ledger.schema.version, SCHEMA_VERSION);
      await ledger.close();
    });

    it("ok/readRows pages each table in key order; writeRows adds, counts identical rows as same, and refuses a conflicting row writing nothing", async () => {
      const src = await open();
      const t = await src.createToken("web", "enroll", HOUR, NOW);
      await src.record(row("b1", { tokenId: t.record.id }), { tokenId: t.record.id, now: NOW });
      for (const s of ["b3", "b2"]) await src.record(row(s));
      await src.revoke("b2", "superseded", NOW);
      const page1 = await src.readRows("certificates", undefined, 2);
      const page2 = await src.readRows("certificates", "b2", 2);
      assert.deepEqual(
        [...page1, ...page2].map((r) => (r.table === "certificates" ? r.row.serial : "")),
        ["b1", "b2", "b3"],
      );
      const tokens = await src.readRows("tokens", undefined, 10);
      assert.equal(tokens.length, 1);
      const all: LedgerRow[] = [...tokens, ...page1, ...page2];
      const dst = await open();
      assert.deepEqual(await dst.writeRows(all), { added: 4, same: 0, conflicts: [] });
      assert.deepEqual(await dst.writeRows(all), { added: 0, same: 4, conflicts: [] });
      const back = [
        ...(await dst.readRows("tokens", undefined, 10)),
        ...(await dst.readRows("certificates", undefined, 10)),
      ];
      assert.deepEqual(back.map(rowSha256), all.map(rowSha256), "every row copied whole");
      const changed = all.map((r) =>
        r.table === "certificates" && r.row.serial === "b3" ? { ...r, row: { ...r.row, requester: "10.0.0.9:1" } } : r,
      );
      const fresh = { table: "certificates", row: row("b4") } as const;
      assert.deepEqual(await dst.writeRows([fresh, ...changed]), { added: 0, same: 3, conflicts: ["certificates/b3"] });
      assert.equal(await dst.get("b4"), undefined, "a conflict writes nothing of its batch");
      await src.close();
      await dst.close();
    });
  });

  describe(`ledger contract (${name}): acme store`, () => {
    it("ok/readRows pages the ACME tables in (kind, id) byte order; writeRows copies EAB keys and objects, counts same, and refuses another version or a taken lookup key writing nothing", async () => {
      const src = await open();
      const eab = await src.createToken("web", "acme", HOUR, NOW);
      const obj = (kind: AcmeKind, id: string, lookup?: string): AcmeRow => ({
        kind,
        id,
        version: 1,
        lookup,
        doc: JSON.stringify({ kind, id }),
      });
      // Upper case sorts before lower case and `-` before `_` in byte order (base64url ids).
      const made = [obj("order", "b_1"), obj("account", "a-2", "thumb-a"), obj("authz", "Z"), obj("order", "B-1")];
      assert.deepEqual(await src.acme!.write(made), { ok: true });
      const page1 = await src.readRows("acme_objects", undefined, 2);
      const page2 = await src.readRows("acme_objects", rowId(page1.at(-1)!), 2);
      const page3 = await src.readRows("acme_objects", rowId(page2.at(-1)!), 2);
      assert.deepEqual([...page1, ...page2, ...page3].map(rowId), ["account/a-2", "authz/Z", "order/B-1", "order/b_1"]);
      const eabs = await src.readRows("acme_eab", undefined, 10);
      assert.deepEqual(eabs.map(rowId), [eab.record.id]);
      const all: LedgerRow[] = [...(await src.readRows("tokens", undefined, 10)), ...eabs, ...page1, ...page2];
      const dst = await open();
      assert.deepEqual(await dst.writeRows(all), { added: 6, same: 0, conflicts: [] });
      assert.deepEqual(await dst.writeRows(all), { added: 0, same: 6, conflicts: [] });
      const back = [
        ...(await dst.readRows("tokens", undefined, 10)),
        ...(await dst.readRows("acme_eab", undefined, 10)),
        ...(await dst.readRows("acme_objects", undefined, 10)),
      ];
      assert.deepEqual(back.map(rowSha256), all.map(rowSha256), "every row copied whole");
      assert.equal((await dst.acme!.eabKey(eab.record.id, NOW)).ok, true, "the copied EAB key binds");
      assert.equal((await dst.acme!.find("account", "thumb-a"))?.id, "a-2");
      // Another version of an object, and a new object holding a taken lookup key: conflicts, nothing written.
      const moved: LedgerRow = { table: "acme_objects", row: { ...obj("authz", "Z"), version: 2 } };
      const thief: LedgerRow = { table: "acme_objects", row: obj("account", "a-3", "thumb-a") };
      const fresh: LedgerRow = { table: "acme_objects", row: obj("order", "c") };
      assert.deepEqual(await dst.writeRows([fresh, moved, thief]), {
        added: 0,
        same: 0,
        conflicts: ["acme_objects/authz/Z", "acme_objects/account/a-3"],
      });
      assert.equal(await dst.acme!.get("order", "c"), undefined, "a conflict writes nothing of its batch");
      await src.close();
      await dst.close();
    });

    it("ok/an acme token's HMAC key is read back while usable; binding an account consumes it once; every EabVerdict", async () => {
      const ledger = await open();
      const acme = ledger.acme!;
      const eab = await ledger.createToken("web", "acme", HOUR, NOW);
      const [, id, secret] = /^mtk_([0-9a-f]{16})_(.+)$/.exec(eab.token)!;
      const v = await acme.eabKey(id!, NOW);
      assert.ok(v.ok);
      assert.deepEqual(v.hmacKey, Buffer.from(secret!, "base64url"));
      assert.equal(v.hmacKey.length, 32);
      assert.equal(v.token.service, "web");
      assert.equal(judge(ledger, `SELECT count(*) FROM acme_eab WHERE token_id = '${id}'`), "1");
      const enroll = await ledger.createToken("web", "enroll", HOUR, NOW);
      assert.equal(judge(ledger, "SELECT count(*) FROM acme_eab"), "1", "an agent token keeps no HMAC key");
      const reason = async (tid: string, at = NOW) => {
        const r = await acme.eabKey(tid, at);
        return r.ok ? "ok" : r.reason;
      };
      assert.equal(await reason(enroll.record.id), "wrong-kind");
      assert.equal(await reason("0123456789abcdef"), "unknown");
      assert.equal(await reason(id!, new Date(NOW.getTime() + HOUR)), "expired");
      const account = (n: string) => ({ kind: "account" as const, id: n, version: 1, lookup: `thumb-${n}`, doc: "{}" });
      assert.deepEqual(await acme.write([account("a1")], { tokenId: id!, account: "a1", now: NOW }), { ok: true });
      assert.equal(await reason(id!), "used");
      assert.equal((await ledger.tokens()).find((t) => t.id === id)!.usedBy, "acme:a1");
      // The second binding of one key writes nothing.
      assert.deepEqual(await acme.write([account("a2")], { tokenId: id!, account: "a2", now: NOW }), {
        ok: false,
        reason: "token-used",
      });
      assert.equal(await acme.get("account", "a2"), undefined);
      assert.deepEqual(await acme.write([account("a3")], { tokenId: "0123456789abcdef", account: "a3", now: NOW }), {
        ok: false,
        reason: "token-unknown",
      });
      const other = await ledger.createToken("web", "acme", HOUR, NOW);
      assert.equal(await ledger.revokeToken(other.record.id, NOW), true);
      assert.equal(await reason(other.record.id), "revoked");
      assert.deepEqual(await acme.write([account("a4")], { tokenId: other.record.id, account: "a4", now: NOW }), {
        ok: false,
        reason: "token-revoked",
      });
      assert.equal(judge(ledger, "SELECT count(*) FROM acme_objects"), "1");
      await ledger.close();
    });

    it("ok/objects: created once, replaced by version (compare and swap), found by lookup; a failed write of several rows writes none", async () => {
      const ledger = await open();
      const acme = ledger.acme!;
      const obj = (id: string, version: number, doc: string, lookup?: string) => ({
        kind: "order" as const,
        id,
        version,
        lookup,
        doc,
      });
      assert.deepEqual(await acme.write([obj("o1", 1, '{"s":1}', "k1")]), { ok: true });
      assert.deepEqual(await acme.write([obj("o1", 1, '{"s":9}')]), { ok: false, reason: "conflict" });
      assert.deepEqual(await acme.write([obj("o2", 1, "{}", "k1")]), { ok: false, reason: "lookup-taken" });
      assert.deepEqual(await acme.write([obj("o2", 1, "{}", "k2")]), { ok: true });
      // A replacement taking another object's lookup (a key rolled over to one in use).
      assert.deepEqual(await acme.write([obj("o2", 2, "{}", "k1")]), { ok: false, reason: "lookup-taken" });
      // Two writers of version 2: one wins.
      const both = await Promise.all([
        acme.write([obj("o1", 2, '{"s":2}', "k1")]),
        acme.write([obj("o1", 2, '{"s":3}', "k1")]),
      ]);
      assert.deepEqual(both.map((b) => (b.ok ? "ok" : b.reason)).sort(), ["conflict", "ok"]);
      const won = (await acme.get("order", "o1"))!;
      assert.equal(won.version, 2);
      assert.ok(won.doc === '{"s":2}' || won.doc === '{"s":3}');
      assert.equal((await acme.find("order", "k1"))!.id, "o1");
      assert.equal((await acme.find("order", "k2"))!.version, 1);
      // o3 is new but o1's version 2 is stale: neither is written.
      assert.deepEqual(await acme.write([obj("o3", 1, "{}"), obj("o1", 2, "{}")]), { ok: false, reason: "conflict" });
      assert.equal(await acme.get("order", "o3"), undefined);
      assert.equal(await acme.get("account", "o1"), undefined, "kinds are apart");
      assert.equal(judge(ledger, "SELECT count(*) FROM acme_objects"), "2");
      await ledger.close();
    });

    it("ok/a nonce is used once, never after it expires, never if unknown", async () => {
      const ledger = await open();
      const acme = ledger.acme!;
      await acme.addNonce("n1", new Date(NOW.getTime() + 60_000));
      await acme.addNonce("n2", new Date(NOW.getTime() + 60_000));
      const uses = await Promise.all([acme.useNonce("n1", NOW), acme.useNonce("n1", NOW)]);
      assert.deepEqual(uses.sort(), [false, true]);
      assert.equal(await acme.useNonce("n2", new Date(NOW.getTime() + 60_000)), false, "expired");
      assert.equal(await acme.useNonce("nope", NOW), false);
      await ledger.close();
    });

    it("ok/two Ledger instances (two replicas) race: 20 nonces each used 10 times over both, exactly one use wins each; one EAB key bound by 10 accounts over both, exactly one account exists", async () => {
      const a = await open();
      const b = await twin(a);
      try {
        const exp = new Date(NOW.getTime() + 60_000);
        const nonces = Array.from({ length: 20 }, (_, i) => `race-${i}`);
        await Promise.all(nonces.map((n, i) => (i % 2 ? a : b).acme!.addNonce(n, exp)));
        const uses = await Promise.all(
          nonces.flatMap((n) => Array.from({ length: 10 }, (_, j) => (j % 2 ? a : b).acme!.useNonce(n, NOW))),
        );
        assert.equal(uses.filter(Boolean).length, 20, "one winner per nonce");
        for (let i = 0; i < 20; i++) assert.equal(uses.slice(i * 10, i * 10 + 10).filter(Boolean).length, 1);
        assert.equal(judge(a, "SELECT count(*) FROM acme_nonces WHERE nonce LIKE 'race-%'"), "0");

        const eab = await a.createToken("web", "acme", HOUR, NOW);
        const tokenId = eab.record.id;
        const outcomes = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            (i % 2 ? a : b).acme!.write(
              [{ kind: "account", id: `acct${i}`, version: 1, lookup: `thumb${i}`, doc: "{}" }],
              {
                tokenId,
                account: `acct${i}`,
                now: NOW,
              },
            ),
          ),
        );
        const winners = outcomes.flatMap((o, i) => (o.ok ? [i] : []));
        assert.equal(winners.length, 1, JSON.stringify(outcomes));
        for (const o of outcomes) if (!o.ok) assert.equal(o.reason, "token-used");
        assert.equal(judge(a, "SELECT count(*) FROM acme_objects WHERE kind = 'account'"), "1");
        assert.equal(
          judge(a, `SELECT used_by FROM tokens WHERE id = '${tokenId}'`),
          `acme:acct${winners[0]}`,
          "the token names the one account it bound",
        );
        // One order moved on by both replicas from version 1: one version 2.
        assert.deepEqual(await a.acme!.write([{ kind: "order", id: "o", version: 1, lookup: undefined, doc: "1" }]), {
          ok: true,
        });
        const cas = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            (i % 2 ? a : b).acme!.write([{ kind: "order", id: "o", version: 2, lookup: undefined, doc: `v${i}` }]),
          ),
        );
        assert.equal(cas.filter((o) => o.ok).length, 1);
        assert.equal((await b.acme!.get("order", "o"))!.version, 2);
      } finally {
        await b.close();
        await a.close();
      }
    });
  });
}
