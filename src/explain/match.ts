/**
 * The matcher: pasted text in, recognised catalogue entries out, best first, with what the
 * message carried (the dialed address, the names the certificate is valid for, the peer, the
 * OpenSSL verify code). Pure: no I/O, no clock.
 *
 * A whole log may hold many messages. Each pattern runs once over the text; where matches of two
 * entries overlap, the earlier entry of the catalogue wins (it is the more specific one). Each
 * entry is reported once, at its first occurrence, in the order of the text. Generic and wrapper
 * entries (see Level) give way to any message that names a cause.
 */
import { lineIndex, lineStarts } from "../errors.ts";
import { CATALOGUE, CONTEXTS, DETAILS, type Detail, type Entry, type Level, type Side } from "./catalogue.ts";

/** Match is one recognised entry and what its first occurrence carried. */
export interface Match {
  entry: Entry;
  /** line is the 1-based line of the first occurrence. */
  line: number;
  /** message is the text that matched (at the first occurrence). */
  message: string;
  /** count is on how many lines the entry matched. */
  count: number;
  /** details are the values the message and its line carried, in the order of DETAILS. */
  details: Partial<Record<Detail, string>>;
  /** side is who logged the message, when the entry or the line tells; undefined when it could be either. */
  side: Side | undefined;
  /** meaning says what the message means for the side that logged it (both readings when that is unknown). */
  meaning: string | undefined;
  /** cause, look and fix are the entry's texts with the details filled in. */
  cause: string;
  look: string;
  fix: string;
}

/** Near is a catalogue entry that shares words with a text nothing matched. */
export interface Near {
  entry: Entry;
  /** words are the shared words, the rarest in the catalogue first. */
  words: string[];
}

/** Explanation is the answer for one text: the matches, or, when there are none, the closest entries. */
export interface Explanation {
  matches: Match[];
  closest: Near[];
}

/** explain recognises the TLS errors in `text` (one message or a whole log). */
export function explain(text: string): Explanation {
  const normal = normalize(text);
  const lines = lineStarts(normal);
  const found = findHits(normal);
  const best = Math.min(...[...found.keys()].map((i) => LEVEL_RANK[CATALOGUE[i]!.level ?? "specific"]));
  const matches = [...found.entries()]
    .filter(([i]) => LEVEL_RANK[CATALOGUE[i]!.level ?? "specific"] === best)
    .map(([i, hits]) => ({ entry: CATALOGUE[i]!, hits, start: least(hits.map((h) => h.start)) }))
    .sort((a, b) => a.start - b.start)
    .map(({ entry, hits }) => describe(entry, hits, normal, lines));
  return { matches, closest: matches.length > 0 ? [] : closest(normal) };
}

const LEVEL_RANK: Record<Level, number> = { specific: 0, generic: 1, wrapper: 2 };

/** DETAIL_NAMES orders a match's details as DETAILS lists them. */
const DETAIL_NAMES = Object.keys(DETAILS) as Detail[];

/** MAX_CLOSEST is how many near entries an unrecognised text lists. */
const MAX_CLOSEST = 3;

/** CONTEXT_WINDOW is how far before and after a message, on its line, clues are looked for. */
const CONTEXT_WINDOW = 1000;

/**
 * normalize undoes what log pipelines add: ANSI colours, CRLF, and JSON string escapes (etcd and
 * other zap loggers write `{"msg":"... (prober \"ROUND_TRIPPER_RAFT_MESSAGE\")"}`). Escaped
 * newlines become spaces, so line numbers stay those of the input.
 */
function normalize(text: string): string {
  return text
    .replace(/\u001b\[[0-9;]{0,20}[A-Za-z]/g, "")
    .replace(/\r\n?/g, "\n")
    .split("\n")
    .map((line) =>
      line.includes('\\"') ? line.replace(/\\([nrt"\\/])/g, (_, c: string) => ("nrt".includes(c) ? " " : c)) : line,
    )
    .join("\n");
}

interface Span {
  start: number;
  end: number;
}

interface Hit extends Span {
  /** pattern is the index of the entry's pattern that matched: lower is more specific. */
  pattern: number;
  text: string;
  groups: Record<string, string | undefined> | undefined;
}

// Global copies of the catalogue's patterns, made on first use.
let compiled: RegExp[][] | undefined;
function globalPatterns(): RegExp[][] {
  compiled ??= CATALOGUE.map((e) => e.patterns.map((p) => new RegExp(p.source, p.flags + "g")));
  return compiled;
}

/**
 * findHits runs every pattern over the text, in catalogue order, and keeps a match only where no
 * earlier entry (or earlier pattern of the same entry) already matched. `covered` holds the kept
 * spans, disjoint and sorted, so each check is a binary search.
 */
function findHits(text: string): Map<number, Hit[]> {
  const found = new Map<number, Hit[]>();
  let covered: Span[] = [];
  globalPatterns().forEach((patterns, i) => {
    patterns.forEach((re, pattern) => {
      const kept: Hit[] = [];
      for (const m of text.matchAll(re)) {
        const hit = { start: m.index, end: m.index + m[0].length, pattern, text: m[0], groups: m.groups };
        if (!overlaps(covered, hit)) kept.push(hit);
      }
      if (kept.length === 0) return;
      found.set(i, [...(found.get(i) ?? []), ...kept]);
      covered = mergeSpans(covered, kept);
    });
  });
  return found;
}

/** least is Math.min for arrays too long to spread into arguments (a log can hold 100,000 hits). */
function least(values: readonly number[]): number {
  return values.reduce((a, b) => Math.min(a, b), Infinity);
}

function overlaps(covered: readonly Span[], s: Span): boolean {
  let lo = 0;
  let hi = covered.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (covered[mid]!.end <= s.start) lo = mid + 1;
    else hi = mid;
  }
  return lo < covered.length && covered[lo]!.start < s.end;
}

function mergeSpans(a: readonly Span[], b: readonly Span[]): Span[] {
  const out: Span[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length)
    out.push(j >= b.length || (i < a.length && a[i]!.start < b[j]!.start) ? a[i++]! : b[j++]!);
  return out;
}

/**
 * describe reports an entry at the first line it matched. Several of its patterns can match one
 * line (Node prints `ERR_TLS_CERT_ALTNAME_INVALID` and the message with the names): the most
 * specific one is the message shown, and all of them give details. count is the number of lines.
 */
function describe(entry: Entry, hits: readonly Hit[], text: string, starts: readonly number[]): Match {
  const lineOf = hits.map((h) => lineIndex(starts, h.start));
  const index = least(lineOf);
  const onLine = hits.filter((_, k) => lineOf[k] === index).sort((a, b) => a.pattern - b.pattern || a.start - b.start);
  const first = onLine[0]!;
  // Clues sit near the message on its line (a logger's prefix, a JSON field); a bounded window
  // keeps a 1 MB single-line paste cheap.
  const from = Math.max(starts[index]!, first.start - CONTEXT_WINDOW);
  const to = Math.min((starts[index + 1] ?? text.length + 1) - 1, first.end + CONTEXT_WINDOW);
  const line = text.slice(from, to);
  const details: Partial<Record<Detail, string>> = {};
  const add = (groups: Record<string, string | undefined> | undefined) => {
    for (const [k, v] of Object.entries(groups ?? {})) {
      const value = v?.trim().replace(/[.,;]$/, "");
      if (value && !(k in details)) details[k as Detail] = value;
    }
  };
  for (const h of onLine) add(h.groups);
  const sides = Object.keys(entry.seenBy) as Side[];
  const clues = CONTEXTS.map((c) => ({ side: c.side, m: c.pattern.exec(line) })).filter((c) => c.m !== null);
  const logged = clues.find((c) => c.side !== undefined)?.side;
  const side = sides.length === 1 ? sides[0] : logged !== undefined && sides.includes(logged) ? logged : undefined;
  for (const c of clues) if (c.side === undefined || c.side === side) add(c.m!.groups);
  const ordered = Object.fromEntries(DETAIL_NAMES.filter((k) => k in details).map((k) => [k, details[k]])) as Partial<
    Record<Detail, string>
  >;
  return {
    entry,
    line: index + 1,
    message: first.text,
    count: new Set(lineOf).size,
    details: ordered,
    side,
    meaning: meaning(entry, side, details),
    cause: fill(entry.cause, details),
    look: fill(entry.look, details),
    fix: fill(entry.fix, details),
  };
}

function meaning(entry: Entry, side: Side | undefined, details: Partial<Record<Detail, string>>): string | undefined {
  const text = (s: Side) => fill(entry.seenBy[s]!, details);
  if (side === "startup") return text(side).charAt(0).toUpperCase() + text(side).slice(1);
  if (side !== undefined) return `The ${side} logged this: ${text(side)}`;
  const sides = Object.keys(entry.seenBy) as Side[];
  if (sides.length === 0) return undefined;
  return sides.map((s) => `If the ${s} logged this: ${text(s)}`).join(" ");
}

/** fill renders a text: each optional segment `[...]` appears, with its `{detail}` values, only when all of them are known. */
function fill(text: string, details: Partial<Record<Detail, string>>): string {
  return text.replace(/\[([^\]]*)\]/g, (_, inner: string) => {
    let missing = false;
    const out = inner.replace(/\{(\w+)\}/g, (_m, name: string) => details[name as Detail] ?? ((missing = true), ""));
    return missing ? "" : out;
  });
}

// ── not recognised: the closest entries by shared words ──────────────────────────────────────

const STOP_WORDS = new Set(
  "the and for not with this that from are was has have but its into any can all you your while does did doesn didn error errors failed fail failure could cannot".split(
    " ",
  ),
);

function words(text: string): Set<string> {
  const out = new Set<string>();
  // Identifiers stay whole (ssl3_read_bytes is not the word "read").
  for (const m of text.toLowerCase().matchAll(/[a-z][a-z0-9_]{2,}/g)) if (!STOP_WORDS.has(m[0])) out.add(m[0]);
  return out;
}

// Each entry's vocabulary (its id, title and examples) and each word's rarity, made on first use.
let vocabulary: { bags: Set<string>[]; idf: Map<string, number> } | undefined;
function catalogueWords() {
  if (vocabulary === undefined) {
    const bags = CATALOGUE.map((e) => words([e.id.replace(/-/g, " "), e.title, ...e.examples].join(" ")));
    const df = new Map<string, number>();
    for (const bag of bags) for (const w of bag) df.set(w, (df.get(w) ?? 0) + 1);
    vocabulary = { bags, idf: new Map([...df].map(([w, n]) => [w, Math.log((1 + bags.length) / n)])) };
  }
  return vocabulary;
}

function closest(text: string): Near[] {
  const input = words(text);
  const { bags, idf } = catalogueWords();
  return bags
    .map((bag, i) => {
      const shared = [...bag]
        .filter((w) => input.has(w))
        .sort((a, b) => idf.get(b)! - idf.get(a)! || a.localeCompare(b));
      return { entry: CATALOGUE[i]!, words: shared, score: shared.reduce((s, w) => s + idf.get(w)!, 0) };
    })
    .filter((n) => n.score > 0)
    .sort((a, b) => b.score - a.score)
    .slice(0, MAX_CLOSEST)
    .map(({ entry, words }) => ({ entry, words }));
}
