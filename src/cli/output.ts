/** Io: where commands write. Passed in, so tests capture output without patching globals. */

/** Io is a command's output channel. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** tty: stdout is a terminal. */
  tty: boolean;
  /** color: colour is allowed on stdout (see colorAllowed). */
  color: boolean;
  /** errTty: stderr is a terminal (progress indicators are drawn there). Default false. */
  errTty?: boolean;
  /** errColor: colour is allowed on stderr (see colorAllowed). Default false. */
  errColor?: boolean;
}

/** Stream is what processIo needs of a process stream. */
export interface Stream {
  isTTY?: boolean;
  write(text: string): unknown;
}

/**
 * colorAllowed decides colour for one stream. FORCE_COLOR as Node reads it wins: "", 1, 2, 3 or
 * true turn colour on (even when redirected), any other value (0, false) turns it off. Otherwise
 * a non-empty NO_COLOR turns it off (https://no-color.org: an empty one does not), and otherwise
 * colour follows whether that stream (not stdout) is a terminal, so `2>log` gets no escape codes.
 */
export function colorAllowed(isTTY: boolean, env: NodeJS.ProcessEnv): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined) return ["", "1", "2", "3", "true"].includes(force);
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  return isTTY;
}

/** processIo writes to the process's stdout and stderr (or the streams and environment given, for tests), deciding colour per stream. */
export function processIo(
  stdout: Stream = process.stdout,
  stderr: Stream = process.stderr,
  env: NodeJS.ProcessEnv = process.env,
): Io {
  const tty = stdout.isTTY === true;
  const errTty = stderr.isTTY === true;
  return {
    out: (t) => void stdout.write(t),
    err: (t) => void stderr.write(t),
    tty,
    color: colorAllowed(tty, env),
    errTty,
    errColor: colorAllowed(errTty, env),
  };
}

type Color = "green" | "yellow" | "red" | "dim" | "bold";
const ansi = (on: boolean | undefined, color: Color, text: string) =>
  on ? `\u001b[${{ green: 32, yellow: 33, red: 31, dim: 2, bold: 1 }[color]}m${text}\u001b[0m` : text;

/** paint wraps text for stdout in an ANSI colour when the Io allows colour there. */
export function paint(io: Io, color: Color, text: string): string {
  return ansi(io.color, color, text);
}

/** paintErr wraps text for stderr in an ANSI colour when the Io allows colour there. */
export function paintErr(io: Io, color: Color, text: string): string {
  return ansi(io.errColor, color, text);
}

/**
 * progressLine returns a progress callback that draws `\r  LABEL done/total` on stderr at most
 * every 100 ms and ends the line when done: only when stderr is a terminal (so logs and pipes
 * get no carriage returns) and the work has at least `min` steps.
 */
export function progressLine(io: Io, min: number): (label: string, done: number, total: number) => void {
  let last = 0;
  return (label, done, total) => {
    if (!io.errTty || total < min) return;
    const t = performance.now();
    if (t - last < 100 && done < total) return;
    last = t;
    io.err(`\r  ${label} ${done}/${total}${done === total ? "\n" : ""}`);
  };
}
