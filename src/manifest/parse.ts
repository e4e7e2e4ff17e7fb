/**
 * YAML text to a plain value, plus a way back from a field path to its line. The one door to the
 * two YAML libraries: js-yaml reads the value (YAML 1.2 core schema), because `yaml` takes about
 * 1.6 s on a 10,000-service manifest where js-yaml takes 0.13 s (measured on the 2-core reference
 * machine); `yaml`'s document API is used only when a message needs a line, or to describe
 * syntax errors.
 *
 * Both read merge keys (`<<: *profile`, YAML 1.1's merge, which cfssl-style profiles use) the same
 * way: keys written in the mapping win over merged ones, earlier sources over later ones.
 * Aliases are shared, not copied, by js-yaml, but everything after parsing walks the value as a
 * tree, so a small file of aliases can stand for millions of values (issue 11: a 52 KB manifest
 * took 382 s and 1.3 GB). The expanded size is measured before anything else reads the value.
 */
import { CORE_SCHEMA, load, mergeTag } from "js-yaml";
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from "yaml";
import type { Problem } from "../errors.ts";

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

function locate(text: string): { doc: Document; line: (offset: number) => number } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, strict: true, merge: true });
  return { doc, line: (offset) => lc.linePos(offset).line };
}

/** parseYaml parses `text`; syntax errors come back as problems with their lines. */
export function parseYaml(text: string, file: string): { yaml: ParsedYaml; problems: Problem[] } {
  let located: ReturnType<typeof locate> | undefined;
  const lazy = () => (located ??= locate(text));
  let value: unknown;
  // js-yaml refuses an input without a document; for us that is an empty manifest (value null).
  if (text.split("\n").every((l) => /^\s*(#.*)?$/.test(l))) return { yaml: { value: null, lineOf: () => undefined }, problems: [] };
  const budget = text.length + EXPANSION_ALLOWANCE;
  const tooLarge = () => {
    const { doc, line } = lazy();
    return { yaml: { value: undefined, lineOf: () => undefined }, problems: [expansionProblem(doc, line, file, budget)] };
  };
  try {
    // maxTotalMergeKeys bounds the copying merges do while loading; the tree walk below bounds the rest.
    value = load(text, { schema: SCHEMA, maxTotalMergeKeys: budget });
  } catch (e) {
    if (/maxTotalMergeKeys/.test((e as Error).message)) return tooLarge();
    const { doc, line } = lazy();
    const problems: Problem[] = doc.errors.map((err) => ({
      file,
      line: line(err.pos[0]),
      path: "",
      message: err.code === "MULTIPLE_DOCS" ? "invalid YAML: the manifest must be a single YAML document" : `invalid YAML: ${err.message.split("\n")[0]}`,
      fix: err.code === "DUPLICATE_KEY" ? "remove or rename one of the repeated keys" : err.code === "MULTIPLE_DOCS" ? "remove the extra documents (--- separators)" : "correct the YAML syntax at this line",
    }));
    if (problems.length === 0) {
      const mark = (e as { mark?: { line?: number } }).mark;
      problems.push({ file, ...(mark?.line === undefined ? {} : { line: mark.line + 1 }), path: "", message: `invalid YAML: ${(e as { reason?: string }).reason ?? (e as Error).message}`, fix: /cannot merge/.test((e as Error).message) ? "a merge key takes an alias of a mapping (<<: *name) or a list of them (<<: [*a, *b])" : "correct the YAML syntax at this line" });
    }
    return { yaml: { value: undefined, lineOf: () => undefined }, problems };
  }
  if (treeSize(value, budget) > budget) return tooLarge();
  return {
    yaml: {
      value,
      lineOf: (path, opts) => {
        const { doc, line } = lazy();
        return lineOfPath(doc, path, opts?.key ?? false, line);
      },
    },
    problems: [],
  };
}

function lineOfPath(doc: Document, path: readonly (string | number)[], key: boolean, line: (offset: number) => number): number | undefined {
  let node: unknown = doc.contents;
  let found: number | undefined = rangeLine(node, line);
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    const last = i === path.length - 1;
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = pairOf(doc, node, String(seg));
      if (!pair) return found;
      if (last && key) return rangeLine(pair.key, line) ?? found;
      node = pair.value;
      found = rangeLine(pair.value, line) ?? rangeLine(pair.key, line) ?? found;
    } else if (isSeq(node) && typeof seg === "number") {
      node = node.items[seg];
      found = rangeLine(node, line) ?? found;
    } else {
      return found;
    }
  }
  return found;
}

function rangeLine(node: unknown, line: (offset: number) => number): number | undefined {
  const r = (node as Node | undefined)?.range;
  return r ? line(r[0]) : undefined;
}

const isMergeKey = (key: unknown): boolean => isScalar(key) && typeof key.value === "symbol" && key.source === "<<";

/**
 * pairOf finds the pair that gives a mapping its `key`: its own, else the first merge source's
 * (merged fields are located where they are written, in the anchored mapping).
 */
function pairOf(doc: Document, map: Node, key: string, depth = 0): { key: unknown; value: unknown } | undefined {
  if (!isMap(map) || depth > 100) return undefined;
  const own = map.items.find((p) => isPair(p) && isScalar(p.key) && !isMergeKey(p.key) && String(p.key.value) === key);
  if (own) return own;
  for (const p of map.items) {
    if (!isMergeKey(p.key)) continue;
    const sources = isSeq(p.value) ? p.value.items : [p.value];
    for (const s of sources) {
      const found = pairOf(doc, (isAlias(s) ? s.resolve(doc) : s) as Node, key, depth + 1);
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
function expansionProblem(doc: Document, line: (offset: number) => number, file: string, budget: number): Problem {
  const anchors = new Map<string, Node>();
  const memo = new Map<Node, number>();
  let total = 0;
  let culprit: { name: string; offset: number } | undefined;
  // size counts like treeSize, over the syntax tree: an alias counts as what it stands for.
  const size = (node: unknown, depth: number): number => {
    if (depth > 200 || node === null || typeof node !== "object") return 1;
    const n = node as Node;
    if (isAlias(n)) {
      const target = anchors.get(n.source);
      return target ? size(target, depth + 1) : 1;
    }
    const known = memo.get(n);
    if (known !== undefined) return known;
    let count = 1;
    if (isMap(n)) for (const p of n.items) count += isMergeKey(p.key) ? size(p.value, depth + 1) - (isSeq(p.value) ? 1 : 0) : size(p.value, depth + 1);
    else if (isSeq(n)) for (const item of n.items) count += size(item, depth + 1);
    memo.set(n, count);
    return count;
  };
  // walk visits the document in order, registering anchors as they appear (an alias refers to the
  // latest anchor of its name before it), and stops at the alias that crosses the budget.
  const walk = (node: unknown, depth: number): void => {
    if (culprit || depth > 200 || node === null || typeof node !== "object") return;
    const n = node as Node;
    if (isAlias(n)) {
      total += size(n, depth);
      if (total > budget) culprit = { name: n.source, offset: n.range?.[0] ?? 0 };
      return;
    }
    if (n.anchor) anchors.set(n.anchor, n);
    total += 1;
    if (isMap(n)) for (const p of n.items) walk(p.value, depth + 1);
    else if (isSeq(n)) for (const item of n.items) walk(item, depth + 1);
  };
  walk(doc.contents, 0);
  const where = culprit ? `the alias *${culprit.name} here brings it past` : "it exceeds";
  return {
    file,
    ...(culprit ? { line: line(culprit.offset) } : {}),
    path: "",
    message: `aliases and merge keys expand the manifest to more than ${budget.toLocaleString("en-US")} values (${EXPANSION_ALLOWANCE.toLocaleString("en-US")} more than its length in characters); ${where} that limit, which guards against alias bombs`,
    fix: "write the repeated values out, or anchor smaller pieces: each alias or merge stands for a full copy of its anchor",
  };
}
