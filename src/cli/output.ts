/** Io: where commands write. Passed in, so tests capture output without patching globals. */

/** Io is a command's output channel. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** tty: stdout is a terminal (progress indicators, colour). */
  tty: boolean;
  /** color: colour is allowed (a TTY, and NO_COLOR unset). */
  color: boolean;
}

/** processIo writes to the process's stdout and stderr. */
export function processIo(): Io {
  const tty = process.stdout.isTTY === true;
  return {
    out: (t) => void process.stdout.write(t),
    err: (t) => void process.stderr.write(t),
    tty,
    color: tty && process.env.NO_COLOR === undefined,
  };
}

/** paint wraps text in an ANSI colour when the Io allows colour. */
export function paint(io: Io, color: "green" | "yellow" | "red" | "dim" | "bold", text: string): string {
  if (!io.color) return text;
  const code = { green: 32, yellow: 33, red: 31, dim: 2, bold: 1 }[color];
  return `\u001b[${code}m${text}\u001b[0m`;
}
