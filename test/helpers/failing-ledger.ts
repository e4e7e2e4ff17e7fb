/**
 * Test helper: a real ledger behind a switch. `failing.on = true` makes every call reject with
 * LedgerUnavailableError, as a locked or full database would, so the server's 503 path runs on cue;
 * otherwise every call goes to the ledger underneath (the SQLite one, in the tests).
 */
import { LedgerUnavailableError, type Ledger } from "../../src/ledger/ledger.ts";

/** failingLedger wraps `inner`; `failing.on` turns failure on and off. */
export function failingLedger(inner: Ledger): Ledger & { failing: { on: boolean } } {
  const failing = { on: false };
  const guard = <T>(f: () => Promise<T>): Promise<T> =>
    failing.on ? Promise.reject(new LedgerUnavailableError("ledger: the test switched the ledger off")) : f();
  return {
    kind: inner.kind,
    failing,
    createToken: (...a) => guard(() => inner.createToken(...a)),
    checkToken: (...a) => guard(() => inner.checkToken(...a)),
    revokeToken: (...a) => guard(() => inner.revokeToken(...a)),
    tokens: (...a) => guard(() => inner.tokens(...a)),
    record: (...a) => guard(() => inner.record(...a)),
    get: (...a) => guard(() => inner.get(...a)),
    list: (...a) => guard(() => inner.list(...a)),
    revoke: (...a) => guard(() => inner.revoke(...a)),
    stats: (...a) => guard(() => inner.stats(...a)),
    revoked: (...a) => guard(() => inner.revoked(...a)),
    nextCrlNumber: (...a) => guard(() => inner.nextCrlNumber(...a)),
    readRows: (...a) => guard(() => inner.readRows(...a)),
    writeRows: (...a) => guard(() => inner.writeRows(...a)),
    schema: inner.schema,
    backup: (...a) => guard(() => inner.backup(...a)),
    close: () => inner.close(),
  };
}
