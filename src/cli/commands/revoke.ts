/** `mtlskit revoke NAME|SERIAL`: record a revocation; the next apply publishes the CRL and re-issues. */
import { parseArgs } from "node:util";
import { UsageError } from "../../errors.ts";
import { ledgerExists, ledgerName, openLedger } from "../../ledger/index.ts";
import { loadManifest } from "../../manifest/index.ts";
import { REVOCATION_REASONS } from "../../pki/crl.ts";
import { revoke } from "../../plan/revoke.ts";
import { COMMON_FLAGS, flags } from "../args.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import type { Io } from "../output.ts";
import { LEDGER_FLAG, LEDGER_FLAG_HELP, MANIFEST_FLAGS } from "./shared.ts";

export const REVOKE_HELP = `mtlskit revoke: revoke a service's certificate (or any certificate of the CA by serial).

USAGE
  mtlskit revoke NAME|SERIAL [--reason R] [-f FILE] [--pki DIR] [--ledger SPEC] [--json]

Records the revocation in DIR/ca/revoked.json (atomically, under apply's lock). The next
\`mtlskit apply\` then signs a new CRL (DIR/ca/crl.pem, RFC 5280, CRL number one higher) listing
it, copies the CRL into the manifest's outputs, re-issues a revoked managed service with a new
key (plan says "revoked (REASON) on DATE"), and runs every reload hook so servers load the new
CRL. NAME revokes each current certificate of that service; SERIAL is hex as openssl prints it
(4A:0B:11 or 4a0b11). Revoking again changes nothing. A revocation is final: there is no hold.

A certificate the online CA issued is also marked revoked in its ledger (DIR/ca/ledger.db, or
--ledger): with several \`mtlskit serve\` replicas on one PostgreSQL ledger, every replica then
refuses its renewal and lists it in /v1/crl, without copying ca/revoked.json around.

Servers refuse a revoked client only when they check the CRL: \`mtlskit config\` snippets name it
(nginx ssl_crl, PostgreSQL ssl_crl_file, etcd --client-crl-file), and the service library takes
\`crl\` (fileSource reloads it). The CRL is valid for ca.crl.nextUpdate (default 7d); apply
re-signs it once half of that has passed, so run apply on a timer (examples/systemd).

REASONS (RFC 5280 5.3.1)
  ${Object.keys(REVOCATION_REASONS).join(", ")}
  (default unspecified)

FLAGS
  -f, --file FILE      manifest (default mtlskit.yaml)
      --pki DIR        PKI directory (default ./pki)
${LEDGER_FLAG_HELP}
      --reason R       why (one of REASONS)
      --json           print what was recorded as JSON

EXAMPLES
  mtlskit revoke web --reason keyCompromise && mtlskit apply
  mtlskit revoke 4A:0B:11 --reason superseded --pki /etc/mtls

${EXIT_CODES_TEXT}
`;

/** revokeCommand runs `mtlskit revoke`. */
export async function revokeCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("revoke", () =>
    parseArgs({
      args,
      options: { ...COMMON_FLAGS, ...MANIFEST_FLAGS, ...LEDGER_FLAG, reason: { type: "string" } },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(REVOKE_HELP), 0);
  if (positionals.length !== 1)
    throw new UsageError(
      `mtlskit revoke: name exactly one service or serial to revoke; got ${positionals.length === 0 ? "none" : positionals.map((p) => JSON.stringify(p)).join(" ")}. Run \`mtlskit revoke --help\` for usage.`,
    );
  const loaded = loadManifest(values.file);
  const r = revoke(loaded, values.pki, positionals[0]!, values.reason === undefined ? {} : { reason: values.reason });
  // The ledger's rows too (a certificate the online CA issued): what every replica reads.
  let inLedger: string[] = [];
  if (ledgerExists(values.pki, values.ledger)) {
    const ledger = await openLedger(values.pki, values.ledger, { create: false });
    try {
      for (const x of [...r.added, ...r.already])
        if (await ledger.revoke(x.serial, x.reason, new Date(x.revokedAt))) inLedger.push(x.serial);
    } finally {
      await ledger.close();
    }
  }
  inLedger = [...new Set(inLedger)];
  if (values.json) {
    io.out(`${JSON.stringify({ ...r, ledger: inLedger }, null, 2)}\n`);
    return 0;
  }
  const name = (x: { serial: string; service?: string; slot?: string }) =>
    x.slot ? `${x.slot} (serial ${x.serial})` : `serial ${x.serial}`;
  for (const a of r.added) io.out(`revoked ${name(a)}: ${a.reason}, ${a.revokedAt}\n`);
  for (const a of r.already) io.out(`already revoked ${name(a)}: ${a.reason}, ${a.revokedAt}\n`);
  if (inLedger.length > 0)
    io.out(
      `Marked revoked in the ledger ${ledgerName(values.pki, values.ledger)}: serial ${inLedger.join(", ")} (every \`mtlskit serve\` on it refuses its renewal and lists it in /v1/crl).\n`,
    );
  io.out(
    r.added.length > 0
      ? `Recorded in ${values.pki}/ca/revoked.json. Run \`mtlskit apply -f ${values.file} --pki ${values.pki}\` to publish the CRL${r.added.some((a) => a.service) ? " and re-issue the revoked service" : ""}.\n`
      : "Nothing changed.\n",
  );
  return 0;
}
