/**
 * YAML text to a plain value, plus a way back from a field path to its line. Uses the `yaml`
 * package's document API; nothing else in mtlskit imports `yaml`.
 */
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from "yaml";
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

/** parseYaml parses `text`; syntax errors come back as problems with their lines. */
export function parseYaml(text: string, file: string): { yaml: ParsedYaml; problems: Problem[] } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, strict: true });
  const line = (offset: number) => lc.linePos(offset).line;
  const problems: Problem[] = doc.errors.map((e) => ({
    file,
    line: line(e.pos[0]),
    path: "",
    message: `invalid YAML: ${e.message.split("\n")[0]}`,
    fix: e.code === "DUPLICATE_KEY" ? "remove or rename one of the repeated keys" : "correct the YAML syntax at this line",
  }));
  const value = problems.length === 0 ? doc.toJS({ maxAliasCount: 100 }) : undefined;
  return { yaml: { value, lineOf: (path, opts) => lineOfPath(doc, path, opts?.key ?? false, line) }, problems };
}

function lineOfPath(doc: Document, path: readonly (string | number)[], key: boolean, line: (offset: number) => number): number | undefined {
  let node: unknown = doc.contents;
  let found: number | undefined = rangeLine(node, line);
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
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
