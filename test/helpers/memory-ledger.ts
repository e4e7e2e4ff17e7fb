/**
 * Test helper: a Ledger kept in memory, for the one thing the SQLite ledger cannot be made to do on
 * cue: fail (`failing`), so the server's 503 path is exercised. Everything else is tested against
 * the real ledger (src/ledger/).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import {
  LedgerUnavailableError,
  type IssuedRecord,
  type Ledger,
  type RecordOutcome,
  type TokenKind,
  type TokenRecord,
  type TokenVerdict,
} from "../../src/ledger/ledger.ts";

/** memoryLedger makes an in-memory Ledger; `failing.on = true` makes every call reject with LedgerUnavailableError. */
export function memoryLedger(): Ledger & { failing: { on: boolean } } {
  const tokens = new Map<string, TokenRecord & { hash: Buffer }>();
  const rows = new Map<string, IssuedRecord>();
  const failing = { on: false };
  const guard = () => {
    if (failing.on) throw new LedgerUnavailableError("the test ledger is down");
  };
  const parse = (token: string) => /^mtk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/.exec(token);
  return {
    kind: "memory",
    failing,
    async createToken(service, kind, ttlMs, now) {
      guard();
      const id = randomBytes(8).toString("hex");
      const secret = randomBytes(32).toString("base64url");
      const record = {
        id,
        kind,
        service,
        createdAt: now,
        expiresAt: new Date(now.getTime() + ttlMs),
        usedAt: undefined,
        usedBy: undefined,
        revokedAt: undefined,
      };
      tokens.set(id, { ...record, hash: createHash("sha256").update(secret).digest() });
      return { token: `mtk_${id}_${secret}`, record };
    },
    async checkToken(token: string, service: string, kind: TokenKind, now: Date): Promise<TokenVerdict> {
      guard();
      const m = parse(token);
      if (!m) return { ok: false, reason: "malformed" };
      const t = tokens.get(m[1]!);
      if (!t || !timingSafeEqual(t.hash, createHash("sha256").update(m[2]!).digest()))
        return { ok: false, reason: "unknown" };
      if (t.kind !== kind) return { ok: false, reason: "wrong-kind" };
      if (t.service !== service) return { ok: false, reason: "wrong-service" };
      if (t.revokedAt) return { ok: false, reason: "revoked" };
      if (t.usedAt) return { ok: false, reason: "used" };
      if (t.expiresAt <= now) return { ok: false, reason: "expired" };
      const { hash: _, ...record } = t;
      return { ok: true, token: record };
    },
    async revokeToken(id, now) {
      guard();
      const t = tokens.get(id);
      if (!t) return false;
      t.revokedAt ??= now;
      return true;
    },
    async tokens() {
      guard();
      return [...tokens.values()].map(({ hash: _, ...r }) => r);
    },
    async record(row, consume): Promise<RecordOutcome> {
      guard();
      if (rows.has(row.serial)) return { ok: false, reason: "duplicate-serial" };
      if (consume) {
        const t = tokens.get(consume.tokenId);
        if (!t) return { ok: false, reason: "token-unknown" };
        if (t.revokedAt) return { ok: false, reason: "token-revoked" };
        if (t.usedAt) return { ok: false, reason: "token-used" };
        if (t.expiresAt <= consume.now) return { ok: false, reason: "token-expired" };
        t.usedAt = consume.now;
        t.usedBy = row.serial;
      }
      rows.set(row.serial, row);
      return { ok: true };
    },
    async get(serial) {
      guard();
      return rows.get(serial);
    },
    async list() {
      guard();
      return [...rows.values()].reverse();
    },
    async revoke(serial, reason, at) {
      guard();
      const r = rows.get(serial);
      if (!r) return false;
      if (!r.revokedAt) {
        r.revokedAt = at;
        r.revokedReason = reason;
      }
      return true;
    },
    async stats() {
      guard();
      return {
        certificates: rows.size,
        revoked: [...rows.values()].filter((r) => r.revokedAt).length,
        tokensOutstanding: [...tokens.values()].filter((t) => !t.usedAt && !t.revokedAt).length,
      };
    },
    async backup() {
      guard();
    },
    async close() {},
  };
}
