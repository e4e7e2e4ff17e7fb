/**
 * The CLI's entry: argv to a command, and the only place errors become exit codes.
 * MtlskitErrors print their message; anything else is a bug (stack with --debug).
 */
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describeProblems, EXIT, InvalidInputError, MtlskitError } from "../errors.ts";
import { ioFailure } from "../state/fs.ts";
import { agentCommand } from "./commands/agent.ts";
import { applyCommand } from "./commands/apply.ts";
import { caCommand } from "./commands/ca.ts";
import { checkCommand } from "./commands/check.ts";
import { configCommand } from "./commands/config.ts";
import { csrCommand } from "./commands/csr.ts";
import { explainCommand } from "./commands/explain.ts";
import { exportCommand } from "./commands/export.ts";
import { initCommand } from "./commands/init.ts";
import { inspectCommand } from "./commands/inspect.ts";
import { ledgerCommand } from "./commands/ledger.ts";
import { planCommand } from "./commands/plan.ts";
import { probeCommand } from "./commands/probe.ts";
import { revokeCommand } from "./commands/revoke.ts";
import { schemaCommand } from "./commands/schema.ts";
import { serveCommand } from "./commands/serve.ts";
import { signCommand } from "./commands/sign.ts";
import { statusCommand } from "./commands/status.ts";
import { tokenCommand } from "./commands/token.ts";
import { uiCommand } from "./commands/ui.ts";
import { metricsCommand } from "./commands/metrics.ts";
import { trustCommand } from "./commands/trust.ts";
import { verifyCommand } from "./commands/verify.ts";
import { SHORT_USAGE } from "./help.ts";
import { paintErr, processIo, type Io } from "./output.ts";

/** COMMANDS is the command table. */
export const COMMANDS: Record<string, (args: string[], io: Io) => Promise<number>> = {
  init: initCommand,
  plan: planCommand,
  apply: applyCommand,
  ca: caCommand,
  check: checkCommand,
  status: statusCommand,
  export: exportCommand,
  metrics: metricsCommand,
  config: configCommand,
  explain: explainCommand,
  schema: schemaCommand,
  inspect: inspectCommand,
  probe: probeCommand,
  trust: trustCommand,
  verify: verifyCommand,
  csr: csrCommand,
  sign: signCommand,
  revoke: revokeCommand,
  token: tokenCommand,
  ledger: ledgerCommand,
  serve: serveCommand,
  ui: uiCommand,
  agent: agentCommand,
};

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

/** WRITERS: the commands whose job is writing files; only they say "nothing was written" when the input is refused (status, check, plan and the like never write). */
const WRITERS = new Set([
  "init",
  "apply",
  "ca",
  "export",
  "trust",
  "csr",
  "sign",
  "revoke",
  "token",
  "ledger",
  "agent",
]);

/** run executes one CLI invocation and returns its exit code; it never calls process.exit. */
export async function run(argv: string[], io: Io): Promise<number> {
  const [cmd, ...rest] = argv;
  const debug = argv.includes("--debug");
  if (argv.includes("--no-color")) io = { ...io, color: false, errColor: false };
  try {
    if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
      io.out(SHORT_USAGE);
      return EXIT.ok;
    }
    if (cmd === "--version" || cmd === "-v" || cmd === "version") {
      io.out(`mtlskit ${version()}\n`);
      return EXIT.ok;
    }
    const command = COMMANDS[cmd];
    if (!command) {
      io.err(
        `${paintErr(io, "red", "error:")} mtlskit: unknown command ${JSON.stringify(cmd)}; commands are: ${Object.keys(COMMANDS).join(", ")}. Run \`mtlskit --help\`.\n`,
      );
      return EXIT.invalid;
    }
    return await command(rest, io);
  } catch (e) {
    if (e instanceof MtlskitError) {
      const message =
        e instanceof InvalidInputError && WRITERS.has(cmd!)
          ? describeProblems(e.problems, { nothingWritten: true })
          : e.message;
      io.err(`${paintErr(io, "red", "error:")} ${message}\n`);
      if (debug && e.cause) io.err(`${String((e.cause as Error).stack ?? e.cause)}\n`);
      return e.exitCode;
    }
    // An ordinary I/O error (full disk, read-only file system, permission denied) is not a bug.
    const failure = ioFailure(e, path.dirname((e as NodeJS.ErrnoException).path ?? "."), "mtlskit");
    if (failure) {
      io.err(`${paintErr(io, "red", "error:")} ${failure.message}\n`);
      return failure.exitCode;
    }
    io.err(
      `${paintErr(io, "red", "error:")} ${(e as Error).message}\nThis is a bug in mtlskit; please report it${debug ? "" : " (run with --debug for the stack trace)"}.\n`,
    );
    if (debug) io.err(`${(e as Error).stack}\n`);
    return EXIT.failed;
  }
}

/** main runs the CLI on process.argv and exits with the command's code. */
export async function main(): Promise<void> {
  // `mtlskit check | head` closes stdout early: that is the reader's choice, not a failure.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e;
    process.exitCode ??= 0;
  });
  const code = await run(process.argv.slice(2), processIo());
  process.exitCode = code;
}
