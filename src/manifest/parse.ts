/**
 * YAML text to a plain value, plus a way back from a field path to its line. The one door to the
 * two YAML libraries: js-yaml reads the value (YAML 1.2 core schema), because `yaml` takes about
 * 1.6 s on a 10,000-service manifest where js-yaml takes 0.13 s (measured on the 2-core reference
 * machine); `yaml`'s document API is used only when a message needs a line, or to describe
 * syntax errors.
 */
import { CORE_SCHEMA, load } from "js-yaml";
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

function locate(text: string): { doc: Document; line: (offset: number) => number } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, strict: true });
  return { doc, line: (offset) => lc.linePos(offset).line };
}

/** parseYaml parses `text`; syntax errors come back as problems with their lines. */
export function parseYaml(text: string, file: string): { yaml: ParsedYaml; problems: Problem[] } {
  let located: ReturnType<typeof locate> | undefined;
  const lazy = () => (located ??= locate(text));
  let value: unknown;
  // js-yaml refuses an input without a document; for us that is an empty manifest (value null).
  if (text.split("\n").every((l) => /^\s*(#.*)?$/.test(l))) return { yaml: { value: null, lineOf: () => undefined }, problems: [] };
  try {
    value = load(text, { schema: CORE_SCHEMA });
  } catch (e) {
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
      problems.push({ file, ...(mark?.line === undefined ? {} : { line: mark.line + 1 }), path: "", message: `invalid YAML: ${(e as { reason?: string }).reason ?? (e as Error).message}`, fix: "correct the YAML syntax at this line" });
    }
    return { yaml: { value: undefined, lineOf: () => undefined }, problems };
  }
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
