/**
 * `mtlskit ca`: the CA's lifecycle, one subcommand table. `rotate prepare|activate|retire` moves a
 * CA rotation one phase on (src/ca/rotation.ts decides, src/plan/rotate.ts writes).
 */
import { parseArgs } from "node:util";
import { UsageError } from "../../errors.ts";
import { loadManifest } from "../../manifest/index.ts";
import { PHASES, ROTATE_COMMANDS, type RotateCommand } from "../../ca/rotation.ts";
import { rotate, type RotateResult } from "../../plan/rotate.ts";
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

export const CA_HELP = `mtlskit ca: the CA's lifecycle.

USAGE
  mtlskit ca rotate prepare|activate|retire   replace the CA with no outage (mtlskit ca rotate --help)

EXAMPLES
  mtlskit ca rotate prepare
  mtlskit ca rotate --help

${EXIT_CODES_TEXT}
`;

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

/** CA_SUBCOMMANDS is the `mtlskit ca` subcommand table. */
export const CA_SUBCOMMANDS: Record<string, (args: string[], io: Io) => Promise<number>> = {
  rotate: rotateCommand,
};

/** caCommand runs `mtlskit ca SUBCOMMAND`. */
export async function caCommand(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") return (io.out(CA_HELP), 0);
  const run = CA_SUBCOMMANDS[sub];
  if (!run)
    throw new UsageError(
      `mtlskit ca: unknown subcommand ${JSON.stringify(sub)}; subcommands are: ${Object.keys(CA_SUBCOMMANDS).join(", ")}. Run \`mtlskit ca --help\`.`,
    );
  return run(rest, io);
}
