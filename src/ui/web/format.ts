/** Formatting shared by the pages: dates, days left, verdict words and ordering. Pure. */
import type { Verdict } from "../snapshot.ts";

/** VERDICT_ORDER sorts the worst first. */
export const VERDICT_ORDER: Record<Verdict, number> = { error: 0, warning: 1, ok: 2 };

/** VERDICT_WORD is a verdict's word, shown beside its colour (never colour alone). */
export const VERDICT_WORD: Record<Verdict, string> = { error: "error", warning: "warning", ok: "ok" };

/** VERDICT_MARK is the verdict's non-colour cue: a symbol drawn before the word. */
export const VERDICT_MARK: Record<Verdict, string> = { error: "✕", warning: "!", ok: "✓" };

/** day formats an ISO date as YYYY-MM-DD (UTC); "—" when absent. */
export const day = (iso: string | undefined): string => (iso ? iso.slice(0, 10) : "—");

/** dateTime formats an ISO date as YYYY-MM-DD HH:MM UTC. */
export const dateTime = (iso: string | undefined): string =>
  iso ? `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC` : "—";

/** daysText is days left in words: "12 days", "expired 3 days ago", "—". */
export function daysText(days: number | undefined): string {
  if (days === undefined) return "—";
  if (days < 0) return `expired ${-days} day${days === -1 ? "" : "s"} ago`;
  return `${days} day${days === 1 ? "" : "s"}`;
}

/** plural: "1 service", "3 services". */
export const plural = (n: number, one: string, many = `${one}s`): string =>
  `${n.toLocaleString("en-US")} ${n === 1 ? one : many}`;

/** worst is the worst of several verdicts ("ok" for none). */
export function worst(verdicts: Iterable<Verdict>): Verdict {
  let w: Verdict = "ok";
  for (const v of verdicts) if (VERDICT_ORDER[v] < VERDICT_ORDER[w]) w = v;
  return w;
}
