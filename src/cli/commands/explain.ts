/**
 * `mtlskit explain`: what a pasted TLS error means, why it happens, and the fix. With a manifest
 * (-f) it also runs check and points at the certificates and connections that produce the error.
 */
import { parseArgs } from "node:util";
import { aboutLabel, checkPki, CODES, type CheckReport, type Finding } from "../../check/index.ts";
import { loadManifest } from "../../manifest/index.ts";
import { FailedError, UsageError } from "../../errors.ts";
import { readStreamBounded, readTextBounded, type ReadFileError } from "../../read-file.ts";
import { CATALOGUE, DETAILS, explain, type Detail, type Explanation, type Match } from "../../explain/index.ts";
import { COMMON_FLAGS, flags } from "../args.ts";
import { paint, type Io } from "../output.ts";

/** EXPLAIN_HELP is the manual of `mtlskit explain`. */
export const EXPLAIN_HELP = `mtlskit explain: say what a TLS error message means, why it happens, and how to fix it.

USAGE
  mtlskit explain "MESSAGE"
  mtlskit explain -             read the message, or a whole log, from standard input
  mtlskit explain --log LOG     read it from a file
  mtlskit explain --list        print every recognised error
  mtlskit explain "MESSAGE" -f mtlskit.yaml [--pki DIR]   also point at the certificates that cause it

Paste the error as the program printed it: log prefixes, JSON log lines, OpenSSL error codes and
openssl s_client output are fine. Go, OpenSSL, Node, GnuTLS, PostgreSQL, NATS, etcd, gRPC, curl,
Java and Python messages are known. A log may hold several errors: each distinct one is explained
once, in the order it appears, with who logged it (client or server), the cause, where to look,
the fix, and the \`mtlskit check\` finding codes behind it. With -f, explain runs \`mtlskit check\`
on the manifest and its PKI and lists the findings with those codes: the certificate or connection
that produces the error, and its fix (a dialed address in the message narrows the list to the
connections to it). A message that starts with - goes after --.

FLAGS
      --log LOG    read the message from LOG
  -f, --file FILE  manifest: run check and point at the certificates and connections involved
      --pki DIR    PKI directory of the manifest's managed services (default ./pki; with -f)
      --list       print the catalogue: id, title, stacks and one example each
      --json       print the result as JSON

EXAMPLES
  mtlskit explain "x509: certificate signed by unknown authority"
  mtlskit explain 'remote error: tls: bad certificate'
  journalctl -u etcd --since -1h | mtlskit explain -
  mtlskit explain --log agent.log --json
  mtlskit explain -f examples/serviceradar.yaml "x509: certificate specifies an incompatible key usage"

EXIT CODES
  0  recognised: at least one known error was explained
  1  not recognised: nothing in the text matched (the closest entries are listed)
  2  invalid input: no message, an empty message, conflicting flags, no such file, an invalid manifest
  3  could not do the job: the file or standard input could not be read, the PKI directory is missing
`;

/** ReadStdin returns all of standard input; `io` is for a hint when a person is typing. */
export type ReadStdin = (io: Io) => Promise<string>;

/** explainCommand runs `mtlskit explain`; tests pass their own `stdin`. */
export async function explainCommand(args: string[], io: Io, stdin: ReadStdin = readProcessStdin): Promise<number> {
  const { values, positionals } = flags("explain", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        log: { type: "string" },
        file: { type: "string", short: "f" },
        pki: { type: "string" },
        list: { type: "boolean" },
        json: { type: "boolean" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(EXPLAIN_HELP), 0);
  const dash = positionals.includes("-");
  if (values.list) {
    if (positionals.length > 0 || values.log !== undefined)
      throw new UsageError("mtlskit explain: --list takes no message and no --log; use one");
    return (printList(io, values.json ?? false), 0);
  }
  if (values.pki !== undefined && values.file === undefined)
    throw new UsageError("mtlskit explain: --pki needs the manifest too; add -f FILE");
  if (dash && values.log !== undefined)
    throw new UsageError("mtlskit explain: - (standard input) and --log are both given; use one");
  if (dash && positionals.length > 1)
    throw new UsageError("mtlskit explain: - reads the message from standard input; give no other message");
  if (values.log !== undefined && positionals.length > 0)
    throw new UsageError("mtlskit explain: a message and --log are both given; use one");
  if (positionals.length === 0 && values.log === undefined) {
    throw new UsageError(
      'mtlskit explain: no message given; paste it in quotes (mtlskit explain "x509: ..."), or use - for standard input or --log LOG',
    );
  }
  const text =
    values.log !== undefined ? readLog(values.log) : dash ? await readInput(stdin, io) : positionals.join(" ");
  if (text.trim() === "")
    throw new UsageError(
      `mtlskit explain: the message is empty${values.log !== undefined ? ` (${values.log})` : ""}; nothing to explain`,
    );
  const result = explain(text);
  const deployment = values.file === undefined ? undefined : pointAt(result, values.file, values.pki ?? "./pki");
  if (values.json)
    io.out(
      JSON.stringify(
        { ...explanationJson(result), ...(deployment ? { deployment: deploymentJson(deployment) } : {}) },
        null,
        2,
      ) + "\n",
    );
  else printExplanation(io, result, deployment);
  return result.matches.length > 0 ? 0 : 1;
}

async function readProcessStdin(io: Io): Promise<string> {
  if (process.stdin.isTTY) io.err("mtlskit explain: reading the message from standard input; end it with Ctrl-D.\n");
  return (await readStreamBounded(process.stdin)).toString("utf8");
}

async function readInput(stdin: ReadStdin, io: Io): Promise<string> {
  try {
    return await stdin(io);
  } catch (e) {
    throw new FailedError(`mtlskit explain: cannot read standard input: ${(e as Error).message}`, { cause: e });
  }
}

function readLog(file: string): string {
  try {
    return readTextBounded(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new UsageError(`mtlskit explain: no such file ${file}`);
    if (code === "ENOTREG" || code === "EISDIR")
      throw new UsageError(
        `mtlskit explain: --log ${file}: it ${(e as ReadFileError).reason}; name a log file, or pipe the text into \`mtlskit explain -\``,
      );
    throw new FailedError(`mtlskit explain: ${(e as Error).message}`, { cause: e });
  }
}

/** explanationJson is the machine form of an explanation (--json). */
export function explanationJson(result: Explanation) {
  return {
    recognised: result.matches.length > 0,
    matches: result.matches.map((m) => ({
      id: m.entry.id,
      title: m.entry.title,
      stacks: m.entry.stacks,
      line: m.line,
      message: m.message,
      count: m.count,
      details: m.details,
      side: m.side ?? null,
      meaning: m.meaning ?? null,
      cause: m.cause,
      look: m.look,
      fix: m.fix,
      codes: m.entry.codes,
    })),
    closest: result.closest.map((n) => ({ id: n.entry.id, title: n.entry.title, words: n.words })),
  };
}

/** Pointed is, for each match, the findings of check that produce it in the user's deployment. */
interface Pointed {
  file: string;
  pki: string;
  report: CheckReport;
  byMatch: Finding[][];
}

/**
 * pointAt runs check and keeps, for each match, the findings whose codes the catalogue entry
 * names. When the message carried the dialed address, findings about connections to another
 * address are dropped: they are real, but they are not this error.
 */
function pointAt(result: Explanation, file: string, pki: string): Pointed {
  const loaded = loadManifest(file);
  const report = checkPki(loaded.manifest, pki, { applyCommand: `mtlskit apply -f ${file} --pki ${pki}` });
  const byMatch = result.matches.map((m) => {
    const related = report.findings.filter((f) => (m.entry.codes as readonly string[]).includes(f.code));
    const host = m.details.host
      ?.replace(/^\[|\]$/g, "")
      .replace(/:\d+$/, "")
      .toLowerCase();
    if (host === undefined) return related;
    // The message names the dialed address: keep what concerns a service reached there (one
    // that declares it, or the target of a connection to it) and the connections to it.
    const reached = new Set(
      loaded.manifest.services
        .filter((s) => s.dns.includes(host) || s.ips.some((ip) => ip.text === host))
        .map((s) => s.name),
    );
    for (const c of loaded.manifest.connections) if (c.address.text.toLowerCase() === host) reached.add(c.to);
    const narrowed = related.filter((f) =>
      f.about.kind === "connection"
        ? f.about.address.toLowerCase() === host
        : f.about.kind === "ca" || reached.has(f.about.service),
    );
    return narrowed;
  });
  return { file, pki, report, byMatch };
}

function deploymentJson(d: Pointed) {
  return {
    manifest: d.file,
    pki: d.pki,
    errors: d.report.errors,
    warnings: d.report.warnings,
    matches: d.byMatch.map((fs) =>
      fs.map((f) => ({
        code: f.code,
        severity: f.severity,
        label: aboutLabel(f.about),
        about: f.about,
        message: f.message,
        fix: f.fix,
      })),
    ),
  };
}

function printDeployment(io: Io, d: Pointed, i: number): void {
  const fs = d.byMatch[i]!;
  if (fs.length === 0) {
    io.out(
      wrap(
        `In ${d.file}: \`mtlskit check\` finds nothing that produces this error (${d.report.errors} errors elsewhere). The failing peer may not use the files the manifest names, or the error comes from a peer outside the manifest.`,
        "   ",
      ),
    );
    return;
  }
  io.out(`   In ${d.file} (${fs.length} finding${fs.length === 1 ? "" : "s"} of \`mtlskit check\`):\n`);
  for (const f of fs.slice(0, 10))
    io.out(wrap(`- ${aboutLabel(f.about)} [${f.code}]: ${f.message}. Fix: ${f.fix}`, "     "));
  if (fs.length > 10)
    io.out(`     ... and ${fs.length - 10} more; run \`mtlskit check -f ${d.file} --pki ${d.pki}\` for all.\n`);
}

function printExplanation(io: Io, result: Explanation, deployment?: Pointed): void {
  const { matches, closest } = result;
  if (matches.length === 0) {
    io.out("mtlskit explain: no known TLS error in this text.\n");
    if (closest.length > 0) {
      io.out("The closest catalogue entries, by the words they share with it:\n");
      for (const n of closest)
        io.out(
          `  ${paint(io, "bold", n.entry.id)}: ${n.entry.title} (shares ${n.words.map((w) => `"${w}"`).join(", ")})\n`,
        );
    }
    io.out(
      "Run `mtlskit explain --list` to see every recognised error. If this is a TLS error mtlskit should know, please report it.\n",
    );
    return;
  }
  io.out(`mtlskit explain: recognised ${matches.length === 1 ? "1 error" : `${matches.length} errors`}.\n`);
  matches.forEach((m, i) => {
    io.out(`\n${matches.length > 1 ? `${i + 1}. ` : ""}${paint(io, "bold", m.entry.id)}: ${m.entry.title}.\n`);
    for (const [label, text] of sections(m)) io.out(wrap(`${label}: ${text}`, "   "));
    if (deployment) printDeployment(io, deployment, i);
  });
}

function sections(m: Match): [string, string][] {
  const where = m.count > 1 ? `line ${m.line}; on ${m.count} lines in all` : `line ${m.line}`;
  const details = Object.entries(m.details).map(([k, v]) => `${DETAILS[k as Detail]} ${v}`);
  const codes = m.entry.codes.map((c) => (CODES[c].title === c ? c : `${c} (${CODES[c].title})`));
  return [
    ["Message", `"${m.message}" (${where}).`],
    ...(details.length > 0 ? [["Details", `${details.join("; ")}.`] as [string, string]] : []),
    ...(m.meaning !== undefined ? [["Side", m.meaning] as [string, string]] : []),
    ["Cause", m.cause],
    ["Where to look", m.look],
    ["Fix", m.fix],
    [
      "Check codes",
      codes.length > 0
        ? `\`mtlskit check\` reports what causes this as ${codes.join(", ")}.`
        : "`mtlskit check` has no finding for this.",
    ],
  ];
}

function printList(io: Io, json: boolean): void {
  if (json) {
    io.out(
      JSON.stringify(
        CATALOGUE.map((e) => ({
          id: e.id,
          title: e.title,
          stacks: e.stacks,
          level: e.level ?? "specific",
          codes: e.codes,
          examples: e.examples,
        })),
        null,
        2,
      ) + "\n",
    );
    return;
  }
  io.out(`mtlskit explain: ${CATALOGUE.length} recognised errors.\n`);
  for (const e of CATALOGUE)
    io.out(
      `\n${paint(io, "bold", e.id)}: ${e.title}\n   stacks: ${e.stacks.join(", ")}\n   example: ${e.examples[0]}\n`,
    );
}

/** WIDTH is where human output wraps. */
const WIDTH = 100;

/** wrap breaks `text` at spaces to WIDTH columns, every line after `indent`. */
function wrap(text: string, indent: string): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && indent.length + line.length + 1 + word.length > WIDTH) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  lines.push(line);
  return lines.map((l, i) => (i === 0 ? indent : indent + "  ") + l).join("\n") + "\n";
}
