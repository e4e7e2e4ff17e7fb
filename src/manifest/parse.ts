/**
 * YAML text to a plain value, plus a way back from a field path to its line. The one door to
 * js-yaml, the one YAML library: `load` reads the value (YAML 1.2 core schema); its event parser
 * (`parseEvents`, source offsets for every node) is run again only when a message needs a line.
 * Why not the `yaml` package, for its documents with ranges: it takes 2.6 s to parse a
 * 10,000-service manifest where js-yaml takes 0.19 s, and importing it costs 45 ms against
 * js-yaml's 18 ms (both measured on the 2-core reference machine; issue 12).
 *
 * Merge keys (`<<: *profile`, YAML 1.1's merge, which cfssl-style profiles use): keys written in
 * the mapping win over merged ones, earlier sources over later ones; a merged field's line is
 * where it is written, in the anchored mapping.
 * Aliases are shared, not copied, by js-yaml, but everything after parsing walks the value as a
 * tree, so a small file of aliases can stand for millions of values (issue 11: a 52 KB manifest
 * took 382 s and 1.3 GB). The expanded size is measured before anything else reads the value.
 */
import { CORE_SCHEMA, EVENT_ID, getScalarValue, load, mergeTag, parseEvents, SCALAR_STYLE, type Event } from "js-yaml";
import { lineIndex, lineStarts, type Problem } from "../errors.ts";

/** ParsedYaml is a YAML document's value and a line lookup for its fields. */
export interface ParsedYaml {
  value: unknown;
  /**
   * lineOf returns the 1-based line of the field at `path` (of its key when `key` is true),
   * falling back to the nearest ancestor that exists.
   */
  lineOf(path: readonly (string | number)[], opts?: { key?: boolean }): number | undefined;
}

/** SCHEMA is YAML 1.2's core schema plus merge keys. */
const SCHEMA = CORE_SCHEMA.withTags(mergeTag);

/**
 * EXPANSION_ALLOWANCE is how many values aliases and merges may add beyond the manifest's length
 * in characters (every written value takes at least one character, so a file without aliases
 * always fits). 100,000 leaves room for a profile merged into each of 10,000 services.
 */
export const EXPANSION_ALLOWANCE = 100_000;

/**
 * YNode is a node of the document as written, with where it starts: mappings keep their pairs in
 * order (merge keys included), aliases the node they stand for.
 */
type YNode =
  | { kind: "scalar"; start: number; text: string; plain: boolean }
  | { kind: "map"; start: number; pairs: [YNode, YNode][] }
  | { kind: "seq"; start: number; items: YNode[] }
  | { kind: "alias"; start: number; name: string; target: YNode | undefined };

/** Located is the document as written and a line lookup for source offsets. */
interface Located {
  root: YNode | undefined;
  line: (offset: number) => number;
}

/** locate builds the document's nodes from js-yaml's events (only the first document). */
function locate(text: string): Located {
  const events: Event[] = parseEvents(text, {});
  const starts = lineStarts(text);
  const line = (offset: number) => lineIndex(starts, offset) + 1;
  const anchors = new Map<string, YNode>();
  let i = events[0]?.type === EVENT_ID.DOCUMENT ? 1 : 0;
  const node = (): YNode => {
    const e = events[i++]!;
    let n: YNode;
    if (e.type === EVENT_ID.ALIAS) {
      const name = text.slice(e.anchorStart, e.anchorEnd);
      return { kind: "alias", start: text.lastIndexOf("*", e.anchorStart), name, target: anchors.get(name) };
    }
    if (e.type === EVENT_ID.SCALAR) {
      // A block scalar's text starts on the line after its indicator; yaml and editors point at the indicator.
      const block = e.style === SCALAR_STYLE.LITERAL_BLOCK || e.style === SCALAR_STYLE.FOLDED_BLOCK;
      const start = block
        ? Math.max(text.lastIndexOf("|", e.valueStart), text.lastIndexOf(">", e.valueStart))
        : e.valueStart;
      n = { kind: "scalar", start, text: getScalarValue(text, e), plain: e.style === SCALAR_STYLE.PLAIN };
    } else if (e.type === EVENT_ID.MAPPING) {
      const pairs: [YNode, YNode][] = [];
      while (events[i]!.type !== EVENT_ID.POP) pairs.push([node(), node()]);
      i++;
      n = { kind: "map", start: e.start, pairs };
    } else if (e.type === EVENT_ID.SEQUENCE) {
      const items: YNode[] = [];
      while (events[i]!.type !== EVENT_ID.POP) items.push(node());
      i++;
      n = { kind: "seq", start: e.start, items };
    } else {
      return { kind: "scalar", start: 0, text: "", plain: true };
    }
    if (e.anchorStart >= 0) anchors.set(text.slice(e.anchorStart, e.anchorEnd), n);
    return n;
  };
  const root = i < events.length && events[i]!.type !== EVENT_ID.POP ? node() : undefined;
  return { root, line };
}

/** YAML_REASONS words js-yaml's reasons for the syntax errors people make most, each with its fix. */
const YAML_REASONS: [RegExp, string, string][] = [
  [/^duplicated mapping key/, "Map keys must be unique", "remove or rename one of the repeated keys"],
  [
    /^tab characters must not be used/,
    "Tabs are not allowed in indentation",
    "indent with spaces; correct the YAML syntax at this line",
  ],
  [/cannot merge/, "", "a merge key takes an alias of a mapping (<<: *name) or a list of them (<<: [*a, *b])"],
];

/** parseYaml parses `text`; syntax errors come back as problems with their lines. */
export function parseYaml(text: string, file: string): { yaml: ParsedYaml; problems: Problem[] } {
  let located: Located | undefined;
  const lazy = () => (located ??= locate(text));
  let value: unknown;
  // js-yaml refuses an input without a document; for us that is an empty manifest (value null).
  if (text.split("\n").every((l) => /^\s*(#.*)?$/.test(l)))
    return { yaml: { value: null, lineOf: () => undefined }, problems: [] };
  const budget = text.length + EXPANSION_ALLOWANCE;
  const tooLarge = () => {
    const { root, line } = lazy();
    return {
      yaml: { value: undefined, lineOf: () => undefined },
      problems: [expansionProblem(root, line, file, budget)],
    };
  };
  try {
    // maxTotalMergeKeys bounds the copying merges do while loading; the tree walk below bounds the rest.
    value = loadPlainServices(text) ?? load(text, { schema: SCHEMA, maxTotalMergeKeys: budget });
  } catch (e) {
    if (/maxTotalMergeKeys/.test((e as Error).message)) return tooLarge();
    return { yaml: { value: undefined, lineOf: () => undefined }, problems: [syntaxProblem(e as Error, text, file)] };
  }
  // Without a `*` anywhere there is no alias, so nothing is shared and nothing to expand: every
  // value was written and fits the budget (10,000 services: ~40 ms of walking saved; issue 12).
  if (text.includes("*") && treeSize(value, budget) > budget) return tooLarge();
  return {
    yaml: {
      value,
      lineOf: (path, opts) => {
        const { root, line } = lazy();
        return lineOfPath(root, path, opts?.key ?? false, line);
      },
    },
    problems: [],
  };
}

/**
 * PLAIN_SERVICE is one line of a `services:` block as large manifests write it: an indented name
 * and a flow mapping on one line, `  web: { usage: dual, addresses: [10.0.0.1, web.internal] }`.
 */
const PLAIN_SERVICE = /^ {2}([a-z][a-z0-9-]*): \{ ?([^{}#"'&*!|>%@`\t]*?) ?\}$/;
/** PLAIN_KEY is a mapping key read as a string whatever the schema. */
const PLAIN_KEY = /^[a-z][A-Za-z0-9-]*$/;
/** PLAIN_TEXT is a plain scalar the core schema reads as a string (a dotted quad, or text starting with a lower-case letter; null, true and false aside). */
const PLAIN_TEXT = /^(?:[a-z][a-z0-9._-]*|[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})$/;
/** ANY_SPECIAL: text that may hold an anchor, alias, tag, directive, tab, CR or a document marker: js-yaml reads all of it. */
const ANY_SPECIAL = /[&*!%\t\r]|^(?:---|\.\.\.)/m;

/** plainScalar is a plain scalar's value (string or boolean), or undefined when js-yaml must read it. */
function plainScalar(token: string): string | boolean | undefined {
  if (!PLAIN_TEXT.test(token)) return undefined;
  return token === "true" ? true : token === "false" ? false : token === "null" ? undefined : token;
}

/** plainService reads the flow mapping between the braces of a PLAIN_SERVICE line, or undefined when js-yaml must. */
function plainService(inner: string): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  if (inner === "") return out;
  let i = 0;
  while (i < inner.length) {
    const colon = inner.indexOf(": ", i);
    if (colon < 0) return undefined;
    const key = inner.slice(i, colon);
    if (!PLAIN_KEY.test(key) || key === "true" || key === "false" || key === "null" || key in out) return undefined;
    i = colon + 2;
    if (inner[i] === "[") {
      const close = inner.indexOf("]", i);
      if (close < 0) return undefined;
      const body = inner.slice(i + 1, close);
      const items: unknown[] = [];
      if (body.trim() !== "")
        for (const part of body.split(",")) {
          const item = plainScalar(part.trim());
          if (item === undefined) return undefined;
          items.push(item);
        }
      out[key] = items;
      i = close + 1;
    } else {
      const comma = inner.indexOf(",", i);
      const end = comma < 0 ? inner.length : comma;
      const value = plainScalar(inner.slice(i, end));
      if (value === undefined) return undefined;
      out[key] = value;
      i = end;
    }
    if (i === inner.length) break;
    if (inner.slice(i, i + 2) !== ", ") return undefined;
    i += 2;
  }
  return out;
}

/**
 * loadPlainServices is js-yaml's value for a manifest whose `services:` block holds only
 * PLAIN_SERVICE lines, read line by line, the rest of the document by js-yaml; undefined for any
 * other document (js-yaml then reads all of it, and words every error). Measured on a
 * 10,000-service manifest in a fresh process (issue 12): js-yaml took ~330 ms of CPU and its event
 * list most of the main thread's garbage collections, while the worker threads waited for the
 * plan; this reads the same lines in a tenth of that. test/manifest.test.ts compares the two.
 */
export function loadPlainServices(text: string): unknown {
  if (text.length < 4096 || ANY_SPECIAL.test(text)) return undefined; // small manifests: js-yaml is quick enough
  const start = text.startsWith("services:\n") ? 0 : text.indexOf("\nservices:\n") + 1;
  if (start <= 0 && !text.startsWith("services:\n")) return undefined;
  const bodyStart = start + "services:\n".length;
  const services: Record<string, unknown> = {};
  let at = bodyStart;
  let count = 0;
  while (at < text.length && text.startsWith("  ", at)) {
    let nl = text.indexOf("\n", at);
    if (nl < 0) nl = text.length;
    const m = PLAIN_SERVICE.exec(text.slice(at, nl));
    if (!m || m[1]! in services || m[1] === "true" || m[1] === "false" || m[1] === "null") return undefined;
    const service = plainService(m[2]!);
    if (!service) return undefined;
    services[m[1]!] = service;
    count++;
    at = nl + 1;
  }
  if (count === 0 || (at < text.length && text[at] === " ")) return undefined;
  // The rest, with an empty services: block in its place (null), read by js-yaml; any error in it
  // is js-yaml's to word with the whole document's lines.
  let rest: unknown;
  try {
    rest = load(text.slice(0, bodyStart) + text.slice(Math.min(at, text.length)), { schema: SCHEMA });
  } catch {
    return undefined;
  }
  if (!isPlainObject(rest) || rest.services !== null || Object.getPrototypeOf(rest) !== Object.prototype)
    return undefined;
  rest.services = services;
  return rest;
}

/** loadFully is js-yaml's value for `text`, without loadPlainServices (tests compare the two). */
export const loadFully = (text: string): unknown => load(text, { schema: SCHEMA });

const isPlainObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === "object" && x !== null && !Array.isArray(x);

/** syntaxProblem words a js-yaml exception as a problem at its line. */
function syntaxProblem(e: Error, text: string, file: string): Problem {
  const reason = (e as { reason?: string }).reason ?? e.message;
  if (/single document in the stream/.test(reason)) {
    // The second document starts at its `---`; a file that opens with `---` has its second one later.
    const markers = [...text.matchAll(/^---(?=\s|$)/gm)].map((m) => text.slice(0, m.index).split("\n").length);
    const firstContent = text.split("\n").findIndex((l) => !/^\s*(#.*)?$/.test(l)) + 1;
    const second = markers.find((l) => l > firstContent);
    return {
      file,
      ...(second === undefined ? {} : { line: second }),
      path: "",
      message: "invalid YAML: the manifest must be a single YAML document",
      fix: "remove the extra documents (--- separators)",
    };
  }
  const mark = (e as { mark?: { line?: number } }).mark;
  const known = YAML_REASONS.find(([re]) => re.test(reason));
  return {
    file,
    ...(mark?.line === undefined ? {} : { line: mark.line + 1 }),
    path: "",
    message: `invalid YAML: ${known?.[1] || reason}`,
    fix: known?.[2] ?? "correct the YAML syntax at this line",
  };
}

const deref = (n: YNode | undefined, depth = 0): YNode | undefined =>
  n?.kind === "alias" && depth < 100 ? deref(n.target, depth + 1) : n;

function lineOfPath(
  root: YNode | undefined,
  path: readonly (string | number)[],
  key: boolean,
  line: (offset: number) => number,
): number | undefined {
  // An empty value (`web:`) has no text of its own (start -1): it is where its key is.
  const at = (n: YNode | undefined) => (n && n.start >= 0 ? line(n.start) : undefined);
  let node: YNode | undefined = root;
  let found: number | undefined = at(node);
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    const last = i === path.length - 1;
    node = deref(node);
    if (node?.kind === "map") {
      const pair = pairOf(node, String(seg));
      if (!pair) return found;
      if (last && key) return at(pair[0]) ?? found;
      node = pair[1];
      found = at(pair[1]) ?? at(pair[0]) ?? found;
    } else if (node?.kind === "seq" && typeof seg === "number") {
      node = node.items[seg];
      found = at(node) ?? found;
    } else {
      return found;
    }
  }
  return found;
}

const isMergeKey = (key: YNode): boolean => key.kind === "scalar" && key.plain && key.text === "<<";

/**
 * ownPairs indexes a mapping's own pairs by key (the first of each), once per mapping: every
 * problem is located, and searching the 10,000 pairs of `services` for each of 10,000 problems
 * was quadratic (issue 12).
 */
const pairIndex = new WeakMap<YNode, Map<string, [YNode, YNode]>>();
function ownPairs(map: Extract<YNode, { kind: "map" }>): Map<string, [YNode, YNode]> {
  let index = pairIndex.get(map);
  if (!index) {
    index = new Map();
    for (const pair of map.pairs) {
      const [k] = pair;
      if (k.kind === "scalar" && !isMergeKey(k) && !index.has(k.text)) index.set(k.text, pair);
    }
    pairIndex.set(map, index);
  }
  return index;
}

/**
 * pairOf finds the pair that gives a mapping its `key`: its own, else the first merge source's
 * (merged fields are located where they are written, in the anchored mapping).
 */
function pairOf(map: YNode | undefined, key: string, depth = 0): [YNode, YNode] | undefined {
  if (map?.kind !== "map" || depth > 100) return undefined;
  const own = ownPairs(map).get(key);
  if (own) return own;
  for (const [k, v] of map.pairs) {
    if (!isMergeKey(k)) continue;
    const target = deref(v);
    const sources = target?.kind === "seq" ? target.items : [v];
    for (const s of sources) {
      const found = pairOf(deref(s), key, depth + 1);
      if (found) return found;
    }
  }
  return undefined;
}

/**
 * treeSize counts the values of `value` read as a tree (every alias expanded), stopping once past
 * `limit`. Shared objects are measured once, so the count costs what the written text does.
 */
function treeSize(value: unknown, limit: number): number {
  const memo = new Map<object, number>();
  const size = (x: unknown): number => {
    if (typeof x !== "object" || x === null) return 1;
    const known = memo.get(x);
    if (known !== undefined) return known;
    let n = 1;
    for (const child of Array.isArray(x) ? x : Object.values(x)) {
      n += size(child);
      if (n > limit) break;
    }
    memo.set(x, n);
    return n;
  };
  return size(value);
}

/** expansionProblem names the alias at which the document, read in order, grows past `budget` values. */
function expansionProblem(
  root: YNode | undefined,
  line: (offset: number) => number,
  file: string,
  budget: number,
): Problem {
  const memo = new Map<YNode, number>();
  let total = 0;
  let culprit: { name: string; offset: number } | undefined;
  // size counts like treeSize, over the written nodes: an alias counts as what it stands for.
  const size = (n: YNode | undefined, depth: number): number => {
    if (depth > 200 || n === undefined) return 1;
    if (n.kind === "alias") return n.target ? size(n.target, depth + 1) : 1;
    const known = memo.get(n);
    if (known !== undefined) return known;
    let count = 1;
    if (n.kind === "map")
      for (const [k, v] of n.pairs)
        count += isMergeKey(k) ? size(v, depth + 1) - (deref(v)?.kind === "seq" ? 1 : 0) : size(v, depth + 1);
    else if (n.kind === "seq") for (const item of n.items) count += size(item, depth + 1);
    memo.set(n, count);
    return count;
  };
  // walk visits the document in order and stops at the alias that crosses the budget (an alias
  // already refers to the latest anchor of its name before it).
  const walk = (n: YNode | undefined, depth: number): void => {
    if (culprit || depth > 200 || n === undefined) return;
    if (n.kind === "alias") {
      total += size(n, depth);
      if (total > budget) culprit = { name: n.name, offset: Math.max(n.start, 0) };
      return;
    }
    total += 1;
    if (n.kind === "map") for (const [, v] of n.pairs) walk(v, depth + 1);
    else if (n.kind === "seq") for (const item of n.items) walk(item, depth + 1);
  };
  walk(root, 0);
  const where = culprit ? `the alias *${culprit.name} here brings it past` : "it exceeds";
  return {
    file,
    ...(culprit ? { line: line(culprit.offset) } : {}),
    path: "",
    message: `aliases and merge keys expand the manifest to more than ${budget.toLocaleString("en-US")} values (${EXPANSION_ALLOWANCE.toLocaleString("en-US")} more than its length in characters); ${where} that limit, which guards against alias bombs`,
    fix: "write the repeated values out, or anchor smaller pieces: each alias or merge stands for a full copy of its anchor",
  };
}
