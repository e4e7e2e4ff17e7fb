/** `mtlskit ca SUBCOMMAND`: the CA's lifecycle; CA_SUBCOMMANDS is its table (offline; rotation adds its own rows). */
import { parseArgs } from "node:util";
import { EXIT, UsageError } from "../../errors.ts";
import { moveCaKeyOffline } from "../../state/offline.ts";
import { COMMON_FLAGS, flags } from "../args.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import { paint, type Io } from "../output.ts";

export const CA_OFFLINE_HELP = `mtlskit ca offline: move the CA's private key out of the PKI directory.

USAGE
  mtlskit ca offline --to FILE [--pki DIR]

Writes DIR/ca/ca-key.pem to FILE (mode 0600; written whole under a temporary name, fsynced, then
linked into place, so an existing FILE is never replaced), reads FILE back and checks that it is
the key of DIR/ca/ca.pem, and only then removes DIR/ca/ca-key.pem and fsyncs DIR/ca. It holds
apply's lock meanwhile. Refused (exit 2, nothing written) when FILE exists or lies inside DIR.

Afterwards plan, check, status, export and metrics work as before (check reports the key as
offline, for information). apply runs without the key as long as nothing must be signed by it,
and otherwise says what needs it and asks for \`--ca-key FILE\`. With ca.intermediate that is only
the intermediate's signing (its renewal, every ca.intermediate.renewBefore); without one, every
certificate apply issues or renews.

FLAGS
      --to FILE      where the key goes: removable media, a vault's mount (must not exist yet)
      --pki DIR      PKI directory (default ./pki)
      --lock-wait SEC  wait this long for a running apply (default 5)

EXAMPLES
  mtlskit ca offline --to /media/usb/demo-root-key.pem
  mtlskit apply --ca-key /media/usb/demo-root-key.pem     (when apply asks for it)

${EXIT_CODES_TEXT}
`;

/** caOfflineCommand runs `mtlskit ca offline`. */
async function caOfflineCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("ca offline", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        to: { type: "string" },
        pki: { type: "string", default: "./pki" },
        "lock-wait": { type: "string", default: "5" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(CA_OFFLINE_HELP), EXIT.ok);
  if (positionals.length > 0)
    throw new UsageError(`mtlskit ca offline: unexpected argument ${JSON.stringify(positionals[0])}; use --to FILE`);
  if (values.to === undefined || values.to === "")
    throw new UsageError("mtlskit ca offline: --to FILE is required: the new file that will hold the CA key");
  const lockWait = Number(values["lock-wait"]);
  if (!Number.isFinite(lockWait) || lockWait < 0)
    throw new UsageError(
      `mtlskit ca offline: --lock-wait must be a number of seconds; got ${JSON.stringify(values["lock-wait"])}`,
    );
  const r = moveCaKeyOffline(values.pki, values.to, { lockWaitMs: lockWait * 1000 });
  io.out(
    `${paint(io, "bold", "The CA key is offline.")} Moved the key of ${r.subject} from ${r.from} to ${r.to} (mode 0${r.mode.toString(8)}); ${values.pki} holds no copy.\n`,
  );
  if (r.mode !== 0o600)
    io.out(
      `note: ${r.to}'s file system does not keep file modes (it reads as 0${r.mode.toString(8)}): keep the media itself out of reach.\n`,
    );
  io.out(
    `Keep ${r.to} off this host. plan, check, status, export and metrics work without it.\n` +
      (r.intermediate
        ? "The intermediate CA keeps signing the services with its own key; apply asks for the root key only when the intermediate must be re-signed (`mtlskit plan` shows when it renews).\n"
        : "Without ca.intermediate, every certificate apply issues or renews is signed by this key, so each such apply needs it; declaring ca.intermediate limits that to the intermediate's renewal.\n") +
      `When apply asks for it: mtlskit apply --ca-key ${r.to}\n`,
  );
  return EXIT.ok;
}

/** CaSubcommand is one row of CA_SUBCOMMANDS. */
export interface CaSubcommand {
  /** summary: one line for `mtlskit ca --help`. */
  summary: string;
  /** example: a command line for the EXAMPLES of `mtlskit ca --help`. */
  example: string;
  run: (args: string[], io: Io) => Promise<number>;
}

/** CA_SUBCOMMANDS is the table of `mtlskit ca` subcommands. */
export const CA_SUBCOMMANDS: Record<string, CaSubcommand> = {
  offline: {
    summary: "move the CA's private key out of the PKI directory (--to FILE)",
    example: "mtlskit ca offline --to /media/usb/root-key.pem",
    run: caOfflineCommand,
  },
};

/** caHelp lists the subcommands. */
const caHelp = () => `mtlskit ca: the CA's lifecycle.

USAGE
${Object.entries(CA_SUBCOMMANDS)
  .map(([name, s]) => `  mtlskit ca ${name.padEnd(10)} ${s.summary}`)
  .join("\n")}

Run \`mtlskit ca SUBCOMMAND --help\` for details.

EXAMPLES
${Object.values(CA_SUBCOMMANDS)
  .map((s) => `  ${s.example}`)
  .join("\n")}

${EXIT_CODES_TEXT}
`;

/** caCommand runs `mtlskit ca SUBCOMMAND`. */
export async function caCommand(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") return (io.out(caHelp()), EXIT.ok);
  const command = CA_SUBCOMMANDS[sub];
  if (!command)
    throw new UsageError(
      `mtlskit ca: unknown subcommand ${JSON.stringify(sub)}; subcommands are: ${Object.keys(CA_SUBCOMMANDS).join(", ")}. Run \`mtlskit ca --help\`.`,
    );
  return command.run(rest, io);
}
