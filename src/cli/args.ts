/** Flag parsing over node:util.parseArgs, turning its errors into usage errors (exit 2). */
import { UsageError } from "../errors.ts";

/** COMMON_FLAGS are accepted by every command. */
export const COMMON_FLAGS = {
  help: { type: "boolean", short: "h" },
  debug: { type: "boolean" },
  "no-color": { type: "boolean" },
} as const;

/**
 * flags runs a parseArgs call for `command`; a bad flag becomes a UsageError that names the
 * command and points at its help.
 */
export function flags<T>(command: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    const msg = (e as Error).message.replace(/\. To specify a positional argument.*$/s, "").replace(/\.$/, "");
    throw new UsageError(`mtlskit ${command}: ${msg}. Run \`mtlskit ${command} --help\` for usage.`);
  }
}

/** parseTimeFlag reads an `--at TIME` flag: an ISO 8601 date or time, e.g. 2027-01-01 or 2027-01-01T12:00:00Z. */
export function parseTimeFlag(command: string, text: string): Date {
  const d = new Date(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(d.getTime())) {
    throw new UsageError(
      `mtlskit ${command}: --at must be an ISO 8601 time such as 2027-01-01 or 2027-01-01T12:00:00Z; got ${JSON.stringify(text)}`,
    );
  }
  return d;
}

/**
 * parseListen reads a `--listen` address, with one meaning for every command that listens
 * (metrics, probe): PORT is 127.0.0.1:PORT (this host only), HOST:PORT and [IPv6]:PORT name the
 * interface (0.0.0.0 for every one); port 0 picks a free port. `:PORT` is refused rather than
 * guessed (Go reads it as every interface), naming both choices.
 */
export function parseListen(command: string, text: string): { host: string; port: number } {
  const m = /^(\d{1,5})$/.exec(text) ?? /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m.length === 2 ? m[1] : m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) {
    const hint = /^:\d+$/.test(text)
      ? ` (name the interface: 127.0.0.1${text} for this host only, 0.0.0.0${text} for every interface)`
      : "";
    throw new UsageError(
      `mtlskit ${command}: --listen must be [HOST:]PORT such as 9469 (127.0.0.1:9469), [::1]:9469 or 0.0.0.0:9469 (every interface), with a port up to 65535; got ${JSON.stringify(text)}${hint}`,
    );
  }
  return m.length === 2 ? { host: "127.0.0.1", port } : { host: m[1] ?? m[2]!, port };
}

/** untilSignal resolves with the first SIGTERM or SIGINT, then stops listening: the long-running commands' (serve, ui, metrics, agent) wait for the end. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      resolve(signal);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });
}
