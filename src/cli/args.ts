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
    throw new UsageError(`mtlskit ${command}: --at must be an ISO 8601 time such as 2027-01-01 or 2027-01-01T12:00:00Z; got ${JSON.stringify(text)}`);
  }
  return d;
}
