/**
 * `mtlskit ledger list|show|backup`: read the online CA's ledger (DIR/ca/ledger.db): every
 * certificate `mtlskit serve` issued, and copy it with SQLite's online backup while serve runs.
 * A PKI directory without a ledger is said so, never given an empty one.
 */
import { existsSync, linkSync, renameSync, rmSync } from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { EXIT, FailedError, InvalidInputError, UsageError } from "../../errors.ts";
import {
  copyLedger,
  type IssuedRecord,
  type Ledger,
  ledgerExists,
  ledgerName,
  openLedger,
  SCHEMA_VERSION,
  verifyCopy,
} from "../../ledger/index.ts";
import { normalizeSerial } from "../../pki/crl.ts";
import { encodePem } from "../../pki/pem.ts";
import { syncDir } from "../../state/fs.ts";
import { TEMP_MARK } from "../../state/layout.ts";
import { COMMON_FLAGS, flags } from "../args.ts";
import { LEDGER_FLAG, LEDGER_FLAG_HELP } from "./shared.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import { paint, type Io } from "../output.ts";

/** LEDGER_FLAGS: where the ledger is (the PKI directory's, or --ledger) and --json. */
const LEDGER_FLAGS = { pki: { type: "string", default: "./pki" }, ...LEDGER_FLAG, json: { type: "boolean" } } as const;

/** ledgerFile names the ledger of `pki` (or `spec`) for messages: the file, or the database redacted. */
export const ledgerFile = (pki: string, spec?: string): string => ledgerName(pki, spec);

/** withLedger opens the PKI directory's existing ledger (or `spec`'s), runs `f` and closes it; undefined (nothing opened or made) when there is no ledger yet. */
export async function withLedger<T>(
  pki: string,
  spec: string | undefined,
  f: (l: Ledger) => Promise<T>,
): Promise<T | undefined> {
  if (!ledgerExists(pki, spec)) return undefined;
  const ledger = await openLedger(pki, spec, { create: false });
  try {
    return await f(ledger);
  } finally {
    await ledger.close();
  }
}

/** noLedger is what list says for a PKI directory without a ledger. */
const noLedger = (pki: string, spec: string | undefined, what: string) =>
  `No ledger at ${ledgerFile(pki, spec)}: ${what}. \`mtlskit token create SERVICE\` or \`mtlskit serve\` creates it.\n`;

/** stateOf says whether a row is valid, expired, not yet valid or revoked at `now`. */
function stateOf(r: IssuedRecord, now: Date): string {
  if (r.revokedAt) return `revoked (${r.revokedReason ?? "unspecified"})`;
  if (now < r.notBefore) return "not yet valid";
  return now >= r.notAfter ? "expired" : "valid";
}

/** rowJson is a row's machine form: dates ISO, the DER as PEM only on request. */
function rowJson(r: IssuedRecord, now: Date, pem: boolean) {
  return {
    serial: r.serial,
    service: r.service,
    state: stateOf(r, now),
    sans: r.sans,
    notBefore: r.notBefore.toISOString(),
    notAfter: r.notAfter.toISOString(),
    issuedAt: r.issuedAt.toISOString(),
    how: r.how,
    ...(r.tokenId === undefined ? {} : { tokenId: r.tokenId }),
    ...(r.renewedFrom === undefined ? {} : { renewedFrom: r.renewedFrom }),
    requester: r.requester,
    sha256: r.sha256,
    ...(r.revokedAt === undefined ? {} : { revokedAt: r.revokedAt.toISOString(), revokedReason: r.revokedReason }),
    ...(pem ? { pem: encodePem("CERTIFICATE", r.der) } : {}),
  };
}

/** table renders rows of cells with padded columns. */
export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return (
    [head, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n") +
    "\n"
  );
}

export const LEDGER_LIST_HELP = `mtlskit ledger list: the certificates the online CA issued, newest first.

USAGE
  mtlskit ledger list [--pki DIR] [--ledger SPEC] [--service S] [--valid] [--limit N] [--json]

Reads DIR/ca/ledger.db (the ledger \`mtlskit serve\` writes each certificate's row to before
returning it). Without a ledger it says so and exits 0.

FLAGS
      --pki DIR        PKI directory (default ./pki)
${LEDGER_FLAG_HELP}
      --service S      only service S
      --valid          only certificates valid now (not expired, not revoked)
      --limit N        at most N rows
      --json           print the rows as JSON (no certificate bytes: \`ledger show --pem\`)

EXAMPLES
  mtlskit ledger list --service web --valid
  mtlskit ledger list --json | jq -r '.[].serial'

${EXIT_CODES_TEXT}
`;

export const LEDGER_SHOW_HELP = `mtlskit ledger show: one certificate's ledger row.

USAGE
  mtlskit ledger show SERIAL [--pki DIR] [--ledger SPEC] [--pem] [--json]

SERIAL is hex as openssl prints it (4A:0B:11 or 4a0b11). --pem prints the certificate itself.

FLAGS
      --pki DIR        PKI directory (default ./pki)
${LEDGER_FLAG_HELP}
      --pem            print the certificate as PEM (alone, or in the JSON as "pem")
      --json           print the row as JSON

EXAMPLES
  mtlskit ledger show 4a0b11
  mtlskit ledger show 4a0b11 --pem | openssl x509 -noout -text

${EXIT_CODES_TEXT}
  2  also: no certificate with that serial in the ledger
`;

export const LEDGER_BACKUP_HELP = `mtlskit ledger backup: copy the ledger while the online CA keeps using it.

USAGE
  mtlskit ledger backup FILE [--pki DIR] [--ledger sqlite:PATH] [--force]

Copies DIR/ca/ledger.db with SQLite's online backup API: a consistent copy even while
\`mtlskit serve\` records certificates (each transaction is in the copy whole, or not at all).
FILE is written 0600 (it holds token hashes and who got which certificate) under a temporary
name, fsynced and renamed into place. An existing FILE is refused unless --force. Restore by
stopping serve and copying FILE to DIR/ca/ledger.db. A PostgreSQL ledger is backed up by
pg_dump (the command says how), or copied into a SQLite file by \`mtlskit ledger migrate --from
postgres://... --to sqlite:FILE\`.

FLAGS
      --pki DIR        PKI directory (default ./pki)
${LEDGER_FLAG_HELP}
      --force          replace an existing FILE

EXAMPLES
  mtlskit ledger backup /var/backups/mtlskit-ledger-$(date +%F).db

${EXIT_CODES_TEXT}
  2  also: FILE exists (without --force), or there is no ledger to back up
`;

async function listCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("ledger list", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        ...LEDGER_FLAGS,
        service: { type: "string" },
        valid: { type: "boolean" },
        limit: { type: "string" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(LEDGER_LIST_HELP), EXIT.ok);
  if (positionals.length > 0)
    throw new UsageError(
      `mtlskit ledger list: unexpected argument ${JSON.stringify(positionals[0])}; use --service S to choose a service`,
    );
  if (values.limit !== undefined && !/^[1-9][0-9]{0,8}$/.test(values.limit))
    throw new UsageError(
      `mtlskit ledger list: --limit must be a whole number, 1 or more; got ${JSON.stringify(values.limit)}`,
    );
  const now = new Date();
  const rows = await withLedger(values.pki, values.ledger, (l) =>
    l.list({
      ...(values.service === undefined ? {} : { service: values.service }),
      ...(values.valid ? { validAt: now } : {}),
      ...(values.limit === undefined ? {} : { limit: Number(values.limit) }),
    }),
  );
  if (values.json)
    return (
      io.out(
        `${JSON.stringify(
          (rows ?? []).map((r) => rowJson(r, now, false)),
          null,
          2,
        )}\n`,
      ),
      EXIT.ok
    );
  if (rows === undefined)
    return (io.out(noLedger(values.pki, values.ledger, "no certificates issued online")), EXIT.ok);
  if (rows.length === 0)
    return (
      io.out(
        `No certificates${values.service === undefined ? "" : ` for ${values.service}`}${values.valid ? " valid now" : ""} in ${ledgerFile(values.pki, values.ledger)}.\n`,
      ),
      EXIT.ok
    );
  io.out(
    table(
      ["SERIAL", "SERVICE", "STATE", "NOT AFTER", "ISSUED", "HOW", "REQUESTER"],
      rows.map((r) => [
        r.serial,
        r.service,
        stateOf(r, now),
        r.notAfter.toISOString(),
        r.issuedAt.toISOString(),
        r.how,
        r.requester,
      ]),
    ),
  );
  return EXIT.ok;
}

async function showCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("ledger show", () =>
    parseArgs({
      args,
      options: { ...COMMON_FLAGS, ...LEDGER_FLAGS, pem: { type: "boolean" } },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(LEDGER_SHOW_HELP), EXIT.ok);
  if (positionals.length !== 1)
    throw new UsageError(
      `mtlskit ledger show: name exactly one serial; got ${positionals.length === 0 ? "none" : positionals.join(" ")}. Run \`mtlskit ledger list\` to see them.`,
    );
  const serial = normalizeSerial(positionals[0]!);
  if (serial === undefined)
    throw new UsageError(
      `mtlskit ledger show: ${JSON.stringify(positionals[0])} is not a serial: hex digits, colons allowed (4A:0B:11 or 4a0b11)`,
    );
  const found = await withLedger(values.pki, values.ledger, async (l) => ({ row: await l.get(serial) }));
  if (found?.row === undefined)
    throw new InvalidInputError([
      {
        file: ledgerFile(values.pki, values.ledger),
        path: "",
        message:
          found === undefined
            ? "does not exist: no certificate was issued online from this PKI directory"
            : `has no certificate with serial ${serial}`,
        fix: "run `mtlskit ledger list` to see the serials, or pass the right --pki",
      },
    ]);
  const r = found.row;
  const now = new Date();
  if (values.json) return (io.out(`${JSON.stringify(rowJson(r, now, values.pem === true), null, 2)}\n`), EXIT.ok);
  if (values.pem) return (io.out(encodePem("CERTIFICATE", r.der)), EXIT.ok);
  const j = rowJson(r, now, false);
  io.out(
    `${paint(io, "bold", `serial ${r.serial}`)}: ${r.service}, ${j.state}\n` +
      `  SANs        ${r.sans.join(", ")}\n` +
      `  valid       ${j.notBefore} to ${j.notAfter}\n` +
      `  issued      ${j.issuedAt} by ${r.how}${r.tokenId ? ` (token ${r.tokenId})` : ""}${r.renewedFrom ? ` (renewing ${r.renewedFrom})` : ""} to ${r.requester}\n` +
      `  sha256      ${r.sha256}\n` +
      (r.revokedAt ? `  revoked     ${j.revokedAt} (${r.revokedReason})\n` : "") +
      `The certificate: mtlskit ledger show ${r.serial} --pem --pki ${values.pki}\n`,
  );
  return EXIT.ok;
}

async function backupCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("ledger backup", () =>
    parseArgs({
      args,
      options: { ...COMMON_FLAGS, pki: LEDGER_FLAGS.pki, ...LEDGER_FLAG, force: { type: "boolean" } },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(LEDGER_BACKUP_HELP), EXIT.ok);
  if (positionals.length !== 1)
    throw new UsageError(
      `mtlskit ledger backup: name exactly one FILE to write the copy to; got ${positionals.length === 0 ? "none" : positionals.join(" ")}`,
    );
  const file = positionals[0]!;
  if (existsSync(file) && !values.force)
    throw new UsageError(
      `mtlskit ledger backup: ${file} exists; choose a new file, or pass --force to replace it (nothing was written)`,
    );
  if (!ledgerExists(values.pki, values.ledger))
    throw new UsageError(
      `mtlskit ledger backup: there is no ledger at ${ledgerFile(values.pki, values.ledger)} to back up (nothing was written)`,
    );
  // The copy is made under a temporary name, then linked into place: without --force an existing
  // FILE is never replaced, even one created meanwhile (link fails with EEXIST); with it, renamed over.
  const tmp = path.join(path.dirname(path.resolve(file)), `.${path.basename(file)}${TEMP_MARK}${process.pid}`);
  const stats = await withLedger(values.pki, values.ledger, async (l) => {
    try {
      await l.backup(tmp);
      if (values.force) renameSync(tmp, file);
      else {
        try {
          linkSync(tmp, file);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "EEXIST")
            throw new UsageError(
              `mtlskit ledger backup: ${file} appeared meanwhile; choose a new file, or pass --force to replace it (nothing was written)`,
            );
          throw e;
        }
      }
      syncDir(path.dirname(path.resolve(file)));
    } finally {
      rmSync(tmp, { force: true });
    }
    return l.stats(new Date());
  });
  io.out(
    `Backed up ${ledgerFile(values.pki, values.ledger)} to ${file} (mode 0600): ${stats!.certificates} certificates, ${stats!.tokensOutstanding} outstanding tokens.\n`,
  );
  return EXIT.ok;
}

export const LEDGER_MIGRATE_HELP = `mtlskit ledger migrate: bring a ledger's schema to this version, or copy one ledger into another.

USAGE
  mtlskit ledger migrate [--pki DIR] [--ledger SPEC] [--json]
  mtlskit ledger migrate --from SPEC --to SPEC [--pki DIR] [--json]

Without --from: applies the pending schema migrations (each version in order, in one transaction;
on PostgreSQL under an advisory lock, so replicas starting at once apply them once) and prints the
version. \`mtlskit serve\` applies them on start too; this is for doing it first, deliberately.
A schema newer than this mtlskit is refused: migrations never go down (upgrade mtlskit instead).

With --from and --to: copies every row of one ledger into the other: tokens, certificates and the
ACME state (EAB keys, accounts, orders, authorizations; not nonces, which live an hour: a client
retries on badNonce), in pages of 500 in key order, then reads both back and compares the counts
and each row's SHA-256. ACME clients keep their accounts when serve comes back at the same URL on
the new ledger (account URLs name the host and port). Re-running
copies nothing new; a row already in the target with the same key and other content stops the copy
and is named. The usual move, once, with serve stopped:
  mtlskit ledger migrate --from sqlite:./pki/ca/ledger.db --to postgres://mtlskit@db:5432/mtlskit
A PostgreSQL ledger copied into a SQLite file (a portable copy, or to go back to one server):
  mtlskit ledger migrate --from postgres://mtlskit@db:5432/mtlskit --to sqlite:./ledger-copy.db

Give the password through PGPASSWORD or ~/.pgpass (mode 0600), never on the command line:
messages name the database as postgres://HOST:PORT/DB only.

FLAGS
      --pki DIR        PKI directory (default ./pki): its ca/ledger.db is the default ledger
${LEDGER_FLAG_HELP}
      --from SPEC      the ledger to copy from (it must exist; it is only read)
      --to SPEC        the ledger to copy into (created, and migrated, when missing)
      --json           print what was done as JSON

EXAMPLES
  PGPASSWORD=... mtlskit ledger migrate --ledger postgres://mtlskit@db:5432/mtlskit
  mtlskit ledger migrate --from sqlite:./pki/ca/ledger.db --to postgres://mtlskit@db:5432/mtlskit

${EXIT_CODES_TEXT}
  3  also: a ledger cannot be opened, a newer schema, a conflicting row, or the copy did not verify
`;

/** migrateCommand runs `mtlskit ledger migrate`: the schema (one ledger) or a copy (--from, --to). */
async function migrateCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("ledger migrate", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        ...LEDGER_FLAGS,
        from: { type: "string" },
        to: { type: "string" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(LEDGER_MIGRATE_HELP), EXIT.ok);
  if (positionals.length > 0)
    throw new UsageError(
      `mtlskit ledger migrate: unexpected argument ${JSON.stringify(positionals[0]!.replace(/:\/\/.*$/s, "://..."))}; name ledgers with --ledger, or --from and --to`,
    );
  if ((values.from === undefined) !== (values.to === undefined))
    throw new UsageError(
      `mtlskit ledger migrate: --from and --to go together (got only ${values.from === undefined ? "--to" : "--from"}); name both ledgers, or neither to migrate one ledger's schema`,
    );
  if (values.from !== undefined && values.ledger !== undefined)
    throw new UsageError(
      "mtlskit ledger migrate: --ledger and --from/--to conflict: --ledger migrates one ledger's schema, --from/--to copy one ledger into another; use one or the other",
    );
  if (values.from === undefined || values.to === undefined) {
    const name = ledgerFile(values.pki, values.ledger);
    const ledger = await openLedger(values.pki, values.ledger);
    const { version, foundVersion } = ledger.schema;
    await ledger.close();
    const did =
      foundVersion === undefined
        ? "created at schema version"
        : foundVersion === version
          ? "already at schema version"
          : `migrated from schema version ${foundVersion} to`;
    if (values.json) io.out(`${JSON.stringify({ ledger: name, version, from: foundVersion ?? null }, null, 2)}\n`);
    else
      io.out(
        `Ledger ${name}: ${did} ${version}${foundVersion === version ? "; nothing to apply" : ""}. This mtlskit reads schema version ${SCHEMA_VERSION}.\n`,
      );
    return EXIT.ok;
  }
  const fromName = ledgerFile(values.pki, values.from);
  const toName = ledgerFile(values.pki, values.to);
  if (fromName === toName)
    throw new UsageError(
      `mtlskit ledger migrate: --from and --to name the same ledger (${fromName}); name two ledgers`,
    );
  if (!ledgerExists(values.pki, values.from))
    throw new UsageError(`mtlskit ledger migrate: --from ${fromName} does not exist (nothing was written)`);
  const from = await openLedger(values.pki, values.from, { create: false });
  try {
    const to = await openLedger(values.pki, values.to);
    try {
      const copied = await copyLedger(from, to);
      const check = await verifyCopy(from, to);
      const bad = [...check.missing, ...check.different];
      if (bad.length > 0)
        throw new FailedError(
          `ledger migrate: the copy in ${toName} does not match ${fromName}: ${check.missing.length} missing, ${check.different.length} different (${bad.slice(0, 10).join(", ")}${bad.length > 10 ? ", ..." : ""})\n    fix: was a ledger written during the copy? Stop every \`mtlskit serve\` using ${fromName} and run the same command again`,
        );
      const rows = Object.values(check.source).reduce((a, b) => a + b, 0);
      const same = Object.values(copied).reduce((a, b) => a + b.same, 0);
      if (values.json)
        io.out(
          `${JSON.stringify({ from: fromName, to: toName, copied, verified: { source: check.source, target: check.target } }, null, 2)}\n`,
        );
      else
        io.out(
          `Copied ${fromName} to ${toName}: ${copied.tokens.added} tokens and ${copied.certificates.added} certificates added, and of the ACME state ${copied.acme_eab.added} EAB keys and ${copied.acme_objects.added} accounts, orders and authorizations; ${same} rows already there unchanged. ACME nonces are not copied (each lives an hour; a client retries on badNonce).\n` +
            `Verified: all ${rows} rows of the source (${check.source.tokens} tokens, ${check.source.certificates} certificates, ${check.source.acme_eab} EAB keys, ${check.source.acme_objects} ACME objects) are in the target with the same SHA-256; the target holds ${check.target.tokens} tokens, ${check.target.certificates} certificates, ${check.target.acme_eab} EAB keys and ${check.target.acme_objects} ACME objects.\n` +
            `Next: start \`mtlskit serve --ledger ...\` on each replica with the new ledger; the old one is left as it was.\n`,
        );
      return EXIT.ok;
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
}

/** LEDGER_SUBCOMMANDS is the table of `mtlskit ledger` subcommands. */
export const LEDGER_SUBCOMMANDS: Record<
  string,
  { summary: string; example: string; run: (a: string[], io: Io) => Promise<number> }
> = {
  list: {
    summary: "the certificates the online CA issued",
    example: "mtlskit ledger list --service web",
    run: listCommand,
  },
  show: {
    summary: "one certificate's row (--pem: the certificate)",
    example: "mtlskit ledger show 4a0b11 --pem",
    run: showCommand,
  },
  backup: {
    summary: "a consistent copy while serve runs (0600)",
    example: "mtlskit ledger backup /var/backups/ledger.db",
    run: backupCommand,
  },
  migrate: {
    summary: "apply schema migrations, or copy a ledger (--from, --to)",
    example: "mtlskit ledger migrate --from sqlite:./pki/ca/ledger.db --to postgres://mtlskit@db/mtlskit",
    run: migrateCommand,
  },
};

const ledgerHelp = () => `mtlskit ledger: the online CA's record of every certificate it issued (DIR/ca/ledger.db).

USAGE
${Object.entries(LEDGER_SUBCOMMANDS)
  .map(([name, s]) => `  mtlskit ledger ${name.padEnd(7)} ${s.summary}`)
  .join("\n")}

Run \`mtlskit ledger SUBCOMMAND --help\` for details.

EXAMPLES
${Object.values(LEDGER_SUBCOMMANDS)
  .map((s) => `  ${s.example}`)
  .join("\n")}

${EXIT_CODES_TEXT}
`;

/** ledgerCommand runs `mtlskit ledger SUBCOMMAND`. */
export async function ledgerCommand(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") return (io.out(ledgerHelp()), EXIT.ok);
  const command = LEDGER_SUBCOMMANDS[sub];
  if (!command)
    throw new UsageError(
      `mtlskit ledger: unknown subcommand ${JSON.stringify(sub)}; subcommands are: ${Object.keys(LEDGER_SUBCOMMANDS).join(", ")}. Run \`mtlskit ledger --help\`.`,
    );
  return command.run(rest, io);
}
