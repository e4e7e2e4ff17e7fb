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
