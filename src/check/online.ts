/**
 * readOnline: the online CA's ledger (DIR/ca/ledger.db) read for the read-only commands (status,
 * check, metrics, plan): each csr service's newest unrevoked certificate, and the ledger's counts.
 * No ledger file means nothing was issued online: undefined, and the file is never created. Not
 * re-exported by check/index.ts, so commands that never read a ledger never load SQLite.
 */
import type { Manifest } from "../manifest/index.ts";
import {
  type IssuedRecord,
  type Ledger,
  ledgerExists,
  ledgerName,
  LedgerUnavailableError,
  openLedger,
} from "../ledger/index.ts";
import type { OnlineCert, OnlineFacts, OnlineService } from "../state/online.ts";

/** RECENT: how many of a service's newest rows are read to find its newest unrevoked one (all of them only when these are all revoked). */
const RECENT = 16;

const toCert = (r: IssuedRecord): OnlineCert => ({
  serial: r.serial,
  der: r.der,
  notBefore: r.notBefore,
  notAfter: r.notAfter,
  issuedAt: r.issuedAt,
});

/** newestOf finds a service's newest unrevoked certificate; undefined when it has no row at all. */
async function newestOf(ledger: Ledger, service: string): Promise<OnlineService | undefined> {
  const recent = await ledger.list({ service, limit: RECENT });
  if (recent.length === 0) return undefined;
  const rows =
    recent.some((r) => r.revokedAt === undefined) || recent.length < RECENT ? recent : await ledger.list({ service });
  const newest = rows.find((r) => r.revokedAt === undefined);
  return { newest: newest && toCert(newest) };
}

/**
 * readOnlineOrWarn is readOnline for the commands that must not fail on the ledger's account
 * (plan, and apply, which renews every other service): an unreadable ledger is a warning through
 * `warn`, and nothing is taken as issued online.
 */
export async function readOnlineOrWarn(
  manifest: Manifest,
  dir: string,
  warn: (text: string) => void,
  ledgerSpec?: string,
): Promise<OnlineFacts | undefined> {
  try {
    return await readOnline(manifest, dir, new Date(), ledgerSpec);
  } catch (e) {
    if (!(e instanceof LedgerUnavailableError)) throw e;
    warn(
      `${e.message}; csr services issued online are shown as if the ledger held nothing (\`mtlskit check\` fails until it can be read)`,
    );
    return undefined;
  }
}

/** readOnline reads what the ledger of the PKI directory `dir` (or `ledgerSpec`: `--ledger`) says of `manifest`'s csr services; undefined without a ledger file. */
export async function readOnline(
  manifest: Manifest,
  dir: string | undefined,
  now = new Date(),
  ledgerSpec?: string,
): Promise<OnlineFacts | undefined> {
  if (dir === undefined || !ledgerExists(dir, ledgerSpec)) return undefined;
  const ledger = await openLedger(dir, ledgerSpec, { create: false });
  try {
    return await onlineFactsOf(ledger, manifest, ledgerName(dir, ledgerSpec), now);
  } finally {
    await ledger.close();
  }
}

/** onlineFactsOf reads the facts from a ledger already open (the dashboard keeps one open); `name` is how it is shown (ledgerName). */
export async function onlineFactsOf(ledger: Ledger, manifest: Manifest, name: string, now: Date): Promise<OnlineFacts> {
  const services = new Map<string, OnlineService>();
  for (const s of manifest.services) {
    if (!s.csr) continue;
    const found = await newestOf(ledger, s.name);
    if (found) services.set(s.name, found);
  }
  const stats = await ledger.stats(now);
  return { ledger: name, services, stats };
}
