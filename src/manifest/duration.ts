/** Durations as manifests and flags write them: a positive whole number and a unit h, d, w or y. */

const UNIT_MS = { h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000, y: 365 * 86_400_000 } as const;

/** parseDuration returns milliseconds, or undefined when `text` is not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = /^([1-9][0-9]{0,5})(h|d|w|y)$/.exec(text);
  return m ? Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS] : undefined;
}

/** formatDuration renders milliseconds in the largest unit that divides them (or hours). */
export function formatDuration(ms: number): string {
  for (const u of ["y", "w", "d"] as const) if (ms % UNIT_MS[u] === 0) return `${ms / UNIT_MS[u]}${u}`;
  return `${Math.round(ms / UNIT_MS.h)}h`;
}
