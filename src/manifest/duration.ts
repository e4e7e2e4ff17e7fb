/** Durations as manifests and flags write them: a positive whole number and a unit h, d, w or y. */

const UNIT_MS = { h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000, y: 365 * 86_400_000 } as const;

/** parseDuration returns milliseconds, or undefined when `text` is not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = /^([1-9][0-9]{0,5})(h|d|w|y)$/.exec(text);
  return m ? Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS] : undefined;
}

/** TTL_UNIT_MS: the units of a short lifetime (an online certificate's ttl, a token's --ttl). */
const TTL_UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** TTL_RULE is a short lifetime's syntax: a positive whole number and a unit s, m, h or d (the manifest's ttl and maxTtl, `--ttl`). */
export const TTL_RULE = /^([1-9][0-9]{0,5})(s|m|h|d)$/;

/** parseTtl returns the milliseconds of a short lifetime (`90s`, `15m`, `1h`, `7d`), or undefined when `text` is not one. */
export function parseTtl(text: string): number | undefined {
  const m = TTL_RULE.exec(text);
  return m ? Number(m[1]) * TTL_UNIT_MS[m[2] as keyof typeof TTL_UNIT_MS] : undefined;
}

/** formatDuration renders milliseconds in the largest unit that divides them (hours, else minutes or seconds when shorter or uneven). */
export function formatDuration(ms: number): string {
  for (const u of ["y", "w", "d", "h"] as const) if (ms % UNIT_MS[u] === 0) return `${ms / UNIT_MS[u]}${u}`;
  if (ms >= UNIT_MS.h) return `${Math.round(ms / UNIT_MS.h)}h`;
  return ms % 60_000 === 0 ? `${ms / 60_000}m` : `${Math.round(ms / 1000)}s`;
}
