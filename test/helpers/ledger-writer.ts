/**
 * A child process for test/ledger.test.ts's kill -9 test: records rows into the SQLite ledger
 * at argv[2], 25 concurrently at a time (group commit), and prints each serial on its own line
 * only after its record() resolved. The parent SIGKILLs it mid-stream and checks that every
 * printed serial is in the reopened ledger. Runs until killed (or `limit` rows, argv[3]).
 */
import { writeSync } from "node:fs";
import { openSqliteLedger } from "../../src/ledger/sqlite.ts";

const file = process.argv[2]!;
const limit = Number(process.argv[3] ?? "1000000");
const ledger = openSqliteLedger(file);
const now = new Date();
let n = 0;
while (n < limit) {
  const serials = Array.from({ length: 25 }, () => `c0ffee${(n++).toString(16).padStart(8, "0")}`);
  const outcomes = await Promise.all(
    serials.map((serial) =>
      ledger.record({
        serial,
        service: "web",
        sans: ["DNS:web"],
        notBefore: now,
        notAfter: new Date(now.getTime() + 3_600_000),
        sha256: "00".repeat(32),
        der: Buffer.alloc(600, n & 0xff),
        how: "renew",
        tokenId: undefined,
        renewedFrom: undefined,
        requester: "127.0.0.1:1",
        issuedAt: now,
        revokedAt: undefined,
        revokedReason: undefined,
      }),
    ),
  );
  // One write per batch, synchronous (fd 1 is a pipe): a line is out only once its rows are durable.
  writeSync(
    1,
    serials
      .filter((_, i) => outcomes[i]!.ok)
      .map((s) => `${s}\n`)
      .join(""),
  );
}
await ledger.close();
