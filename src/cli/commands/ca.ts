/**
 * `mtlskit ca SUBCOMMAND`: the CA's lifecycle; CA_SUBCOMMANDS is its table. `rotate
 * prepare|activate|retire` moves a CA rotation one phase on (src/ca/rotation.ts decides,
 * src/plan/rotate.ts writes); `offline` moves the CA key out of the PKI directory.
 */
import { parseArgs } from "node:util";
import { PHASES, ROTATE_COMMANDS, type RotateCommand } from "../../ca/rotation.ts";
import { EXIT, UsageError } from "../../errors.ts";
import { loadManifest } from "../../manifest/index.ts";
import { rotate, type RotateResult } from "../../plan/rotate.ts";
import { moveCaKeyOffline } from "../../state/offline.ts";
import { COMMON_FLAGS, flags } from "../args.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import { paint, type Io } from "../output.ts";
import { hookFailure, writeOutputs } from "./apply.ts";
import { MANIFEST_FLAGS, renderWarnings } from "./shared.ts";

export const CA_ROTATE_HELP = `mtlskit ca rotate: replace the CA with no outage, in three steps, each one command.

USAGE
  mtlskit ca rotate prepare  [-f FILE] [--pki DIR] [--json]
  mtlskit ca rotate prepare  --next-cert FILE --next-key FILE [--next-chain FILE]   (ca.import)
  mtlskit ca rotate activate [-f FILE] [--pki DIR] [--batch N] [--force] [--json]
  mtlskit ca rotate retire   [-f FILE] [--pki DIR] [--force] [--json]

  prepare   creates the next CA in DIR/ca/next; every trust bundle (each services/NAME/ca.pem and
            every output: flat, kubernetes ConfigMap, env, so every config snippet) holds the
            current CA and the next one; reload hooks run. Certificates are still issued by the
            current CA.
  activate  the next CA issues new certificates (new keys): every service, or N per run with
            --batch N for a gradual roll; bundles still hold both CAs; the changed services'
            reload hooks run.
  retire    the old CA leaves every bundle; the next CA becomes DIR/ca/ca.pem and ca-key.pem, and the
            old one is kept in DIR/ca/retired/FP/ (FP: its SHA-256's first 16 hex digits; never under
            services/); every reload hook runs. Refused while a managed certificate still chains
            to the old CA (they are named) unless --force.

Wait between steps until every service has reloaded (the hooks ran, or each service picked up
its files): a peer one phase behind still handshakes (\`mtlskit check\` proves it), two phases
behind does not. Each step is idempotent and runs under apply's lock: after a kill or a failed
hook, run the same step again and it finishes. A step out of order is refused (exit 3), naming
the step to run first; so is a step while the last one's reload hooks failed (--force overrides).
The phase is in DIR/ca/rotation.json; \`mtlskit plan\` and \`mtlskit status\` show it and what the
next step changes, \`mtlskit metrics\` exports it (mtlskit_ca_rotation_phase). \`apply\` during a
rotation keeps both CAs in the bundles and issues from the active one.

A CA imported with ca.import is rotated the same way with the next CA imported: prepare takes
its files (--next-cert, --next-key, --next-chain as ca.import's cert, key, chain; the keys stay
where they are, the paths are recorded in DIR/ca/rotation.json); before retire, point ca.import
in the manifest at the next CA's files (retire refuses until it does). When both CAs share a
root (an intermediate rotated under the organisation's root), the bundles hold that root once.

FLAGS
  -f, --file FILE   manifest (default mtlskit.yaml)
      --pki DIR     PKI directory (default ./pki)
      --batch N     activate: at most N more services this run (in manifest order)
      --force       activate/retire: go on although reload hooks failed; retire: although
                    certificates still chain to the old CA (their connections break)
      --lock-wait SEC  wait this long for a running apply (default 5)
      --no-reload   do not run reload hooks (they stay owed; the next step is refused until they ran)
      --next-cert FILE, --next-key FILE, --next-chain FILE
                    prepare with ca.import: the next CA's certificate, key and chain
      --json        print the result as JSON

EXAMPLES
  mtlskit ca rotate prepare  && mtlskit check     # every bundle holds both CAs
  mtlskit ca rotate activate --batch 10           # 10 services per run, until all are done
  mtlskit ca rotate activate                      # the rest
  mtlskit ca rotate retire

${EXIT_CODES_TEXT}
  3  also: a rotate step out of order or unsafe (the message names the step to run first)
`;

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

/** rotateCommand runs `mtlskit ca rotate STEP`. */
async function rotateCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("ca rotate", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        ...MANIFEST_FLAGS,
        batch: { type: "string" },
        force: { type: "boolean" },
        "lock-wait": { type: "string", default: "5" },
        "no-reload": { type: "boolean" },
        "next-cert": { type: "string" },
        "next-key": { type: "string" },
        "next-chain": { type: "string" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(CA_ROTATE_HELP), 0);
  const step = positionals[0];
  if (step === undefined || !(ROTATE_COMMANDS as readonly string[]).includes(step) || positionals.length > 1)
    throw new UsageError(
      `mtlskit ca rotate: ${step === undefined ? "name the step" : positionals.length > 1 ? `one step at a time; got ${positionals.join(" ")}` : `unknown step ${JSON.stringify(step)}`}: prepare, activate or retire. Run \`mtlskit ca rotate --help\`.`,
    );
  const command = step as RotateCommand;
  let batch: number | undefined;
  if (values.batch !== undefined) {
    if (command !== "activate") throw new UsageError(`mtlskit ca rotate ${command}: --batch applies to activate only`);
    batch = Number(values.batch);
    if (!/^[1-9][0-9]*$/.test(values.batch))
      throw new UsageError(
        `mtlskit ca rotate activate: --batch must be a whole number of services, 1 or more; got ${JSON.stringify(values.batch)}`,
      );
  }
  if (values.force && command === "prepare")
    throw new UsageError("mtlskit ca rotate prepare: --force applies to activate and retire");
  const lockWait = Number(values["lock-wait"]);
  if (!Number.isFinite(lockWait) || lockWait < 0)
    throw new UsageError(
      `mtlskit ca rotate: --lock-wait must be a number of seconds; got ${JSON.stringify(values["lock-wait"])}`,
    );
  const nextCert = values["next-cert"];
  const nextKey = values["next-key"];
  if (
    (nextCert === undefined) !== (nextKey === undefined) ||
    (values["next-chain"] !== undefined && nextCert === undefined)
  )
    throw new UsageError("mtlskit ca rotate: --next-cert and --next-key go together (and --next-chain with them)");
  const loaded = loadManifest(values.file);
  if (!values.json) renderWarnings(io, loaded.warnings);
  const outputs = writeOutputs(io, loaded, values.pki, values.json === true);
  const result = await rotate(loaded, values.pki, command, {
    afterWrite: outputs.afterWrite,
    hooks: !values["no-reload"],
    lockWaitMs: lockWait * 1000,
    force: values.force ?? false,
    ...(batch === undefined ? {} : { batch }),
    ...(nextCert !== undefined && nextKey !== undefined
      ? {
          nextImport: {
            cert: nextCert,
            key: nextKey,
            ...(values["next-chain"] === undefined ? {} : { chain: values["next-chain"] }),
          },
        }
      : {}),
    onNote: (text) => io.err(`note: ${text}\n`),
  });
  if (values.json) {
    io.out(`${JSON.stringify(rotateJson(result), null, 2)}\n`);
    return hookFailure(io, result.apply?.hooks ?? []);
  }
  renderRotate(io, values.file, values.pki, result);
  return hookFailure(io, result.apply?.hooks ?? []);
}

/** rotateJson is the machine form of a rotate step's result. */
function rotateJson(r: RotateResult) {
  return {
    command: r.command,
    verdict: r.verdict,
    phase: r.record?.phase ?? "none",
    record: r.record,
    batch: r.batch,
    stragglers: r.stragglers,
    retiredTo: r.retiredTo,
    issued: r.apply?.issued ?? 0,
    changed: r.apply?.changed ?? [],
    hooks: r.apply?.hooks ?? [],
  };
}

const NEXT_STEP: Record<string, string> = {
  prepared:
    "Once every service has reloaded its bundle (the hooks ran), run `mtlskit ca rotate activate` (or --batch N).",
  active: "",
  retired: "The rotation is complete.",
};

function renderRotate(io: Io, file: string, pki: string, r: RotateResult): void {
  const phase = r.record?.phase ?? "none";
  if (r.verdict === "finished") {
    io.out(`mtlskit ca rotate ${r.command}: nothing to do: ${r.says}.\n`);
    return;
  }
  io.out(`mtlskit ca rotate ${r.command}: ${file} -> ${pki}${r.verdict === "resume" ? " (resumed)" : ""}\n`);
  io.out(`${paint(io, "bold", `Phase ${phase}`)}: ${PHASES[phase].says}.\n`);
  const a = r.apply;
  if (a)
    io.out(
      `${a.issued} certificate${a.issued === 1 ? "" : "s"} issued, ${a.changed.length} service${a.changed.length === 1 ? "" : "s"} changed${a.changed.length > 0 ? ` (${a.changed.join(", ")})` : ""}.\n`,
    );
  if (r.batch.length > 0) io.out(`Activated this run: ${r.batch.join(", ")}.\n`);
  if (r.stragglers.length > 0)
    io.out(`--force: re-issued from the new CA although they chained to the old one: ${r.stragglers.join(", ")}.\n`);
  if (r.retiredTo) io.out(`The old CA is kept in ${pki}/${r.retiredTo}/.\n`);
  for (const h of a?.hooks ?? [])
    io.out(
      `Reload ${h.service}: ${h.command}: ${h.ok ? paint(io, "green", "ok") : paint(io, "red", `FAILED, ${h.error}`)}\n`,
    );
  const left = r.record && phase === "active" && !r.record.activatedAll;
  io.out(
    `${
      phase === "active"
        ? left
          ? "Services remain: once the activated ones have reloaded, run `mtlskit ca rotate activate` again."
          : "Once every service has reloaded its new certificate, run `mtlskit ca rotate retire`."
        : NEXT_STEP[phase]
    }\n`,
  );
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
  rotate: {
    summary: "prepare|activate|retire: replace the CA with no outage",
    example: "mtlskit ca rotate prepare",
    run: rotateCommand,
  },
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
