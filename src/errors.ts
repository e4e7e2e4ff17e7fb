/**
 * The few error classes of mtlskit. Each carries the exit code the CLI maps it to; only
 * `cli/main.ts` turns them into a process exit (see ARCHITECTURE.md, "Exit codes").
 */

/** EXIT is the closed table of exit codes every command documents. */
export const EXIT = {
  /** Success, nothing to report. */
  ok: 0,
  /** The thing examined is not OK (findings). */
  findings: 1,
  /** Invalid input: bad flags or an invalid manifest. Nothing was written. */
  invalid: 2,
  /** Could not do the job: unreadable files, a held lock, an internal bug. */
  failed: 3,
} as const;

/** ExitCode is one of the documented exit codes. */
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** MtlskitError is the base of every error mtlskit raises on purpose. */
export class MtlskitError extends Error {
  /** exitCode is what the CLI exits with when this error reaches it. */
  readonly exitCode: ExitCode;
  constructor(message: string, exitCode: ExitCode, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }
}

/** UsageError reports bad flags or arguments (exit 2, nothing written). */
export class UsageError extends MtlskitError {
  constructor(message: string) {
    super(message, EXIT.invalid);
  }
}

/** Problem is one thing wrong with an input, with where it is and how to fix it. */
export interface Problem {
  /** file is the path of the input as the user named it. */
  file: string;
  /** line is 1-based; undefined when the problem concerns the file as a whole. */
  line?: number;
  /** path is the dotted field path, e.g. `services.web.usage`; empty for the whole file. */
  path: string;
  /** message states the rule that was broken and what was found. */
  message: string;
  /** fix tells the user what to change, when there is something specific to say. */
  fix?: string;
}

/** lineStarts is the offset at which each line of `text` starts (for a Problem's line, or a match's). */
export function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) starts.push(i + 1);
  return starts;
}

/** lineIndex is the 0-based line holding `offset`, given its text's lineStarts. */
export function lineIndex(starts: readonly number[], offset: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** formatProblem renders a problem as `file:line path: message (fix)`. */
export function formatProblem(p: Problem): string {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}`;
  const field = p.path === "" ? "" : ` ${p.path}`;
  const fix = p.fix === undefined ? "" : `\n    fix: ${p.fix}`;
  return `${where}${field}: ${p.message}${fix}`;
}

/**
 * describeProblems renders problems as `N problems found:` and one indented line each.
 * `nothingWritten` adds "nothing was written": the CLI says it for the commands that write
 * (apply, export, ...); the error itself does not, since reading a manifest writes nothing anyway.
 */
export function describeProblems(problems: readonly Problem[], opts: { nothingWritten?: boolean } = {}): string {
  const n = problems.length;
  return (
    `${n} problem${n === 1 ? "" : "s"} found${opts.nothingWritten ? "; nothing was written" : ""}:\n` +
    problems.map((p) => "  " + formatProblem(p)).join("\n")
  );
}

/** InvalidInputError carries every problem found in an input at once (exit 2; a command that writes has written nothing). */
export class InvalidInputError extends MtlskitError {
  readonly problems: readonly Problem[];
  constructor(problems: readonly Problem[]) {
    super(describeProblems(problems), EXIT.invalid);
    this.problems = problems;
  }
}

/** FailedError reports a job that could not be done: I/O, a held lock, a damaged PKI (exit 3). */
export class FailedError extends MtlskitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, EXIT.failed, options);
  }
}

/**
 * DecodeError reports bytes that are not the DER, certificate or key they should be: a truncated
 * or altered file (exit 3, as a damaged PKI file). pki/der.ts, pki/cert.ts and pki/x509.ts throw
 * it, so a damaged file never reaches the CLI as "a bug"; callers that know the file add its name.
 */
export class DecodeError extends FailedError {
  /** code is stable for library callers: `MTLSKIT_DECODE`. */
  readonly code = "MTLSKIT_DECODE";
}
