/**
 * The import rules of ARCHITECTURE.md, enforced: layers import one way, and each third-party
 * library enters through exactly one file.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { REPO } from "./helpers/cli.ts";

const SRC = path.join(REPO, "src");

/** ALLOWED maps each layer to the layers it may import (ARCHITECTURE.md, "Import rules"). */
const ALLOWED: Record<string, string[]> = {
  errors: [],
  identity: [],
  pki: ["errors"],
  manifest: ["identity", "pki", "errors"],
  state: ["manifest", "pki", "errors"],
  plan: ["manifest", "pki", "state", "errors"],
  check: ["manifest", "pki", "state", "errors"],
  explain: ["check", "errors"],
  inspect: ["check", "pki", "errors"],
  cli: ["errors", "identity", "pki", "manifest", "state", "plan", "check", "explain", "inspect"],
  index: ["errors", "identity", "pki", "manifest", "state", "plan", "check", "explain", "inspect"],
};

/** DOORS: the only file allowed to import each third-party package. */
const DOORS: Record<string, string> = {
  yaml: "manifest/parse.ts",
  "js-yaml": "manifest/parse.ts",
  valibot: "manifest/schema.ts",
  "@valibot/to-json-schema": "manifest/json-schema.ts",
  // @peculiar/asn1-x509 and @peculiar/asn1-schema are test-only judges of pki/x509.ts: no file
  // under src/ may import them; test/helpers/peculiar.ts is the only one that does.
};

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []));
}

const layerOf = (file: string) => path.relative(SRC, file).split(path.sep)[0]!.replace(/\.ts$/, "");

function imports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"|import\("([^"]+)"\)/g)].map((m) => (m[1] ?? m[2])!);
}

describe("architecture", () => {
  const files = sources(SRC);
  it("ok/finds the sources", () => assert.ok(files.length > 20));
  for (const file of files) {
    const rel = path.relative(SRC, file);
    it(`imports of ${rel} follow the rules`, () => {
      const from = layerOf(file);
      for (const spec of imports(file)) {
        if (spec.startsWith(".")) {
          const to = layerOf(path.resolve(path.dirname(file), spec));
          if (to === from) continue;
          assert.ok(ALLOWED[from]?.includes(to), `${rel} imports ${spec}: layer ${from} may not import ${to}`);
        } else if (!spec.startsWith("node:")) {
          const pkg = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!;
          assert.equal(DOORS[pkg], rel, `${rel} imports ${pkg}, which only ${DOORS[pkg] ?? "(no file: not a dependency)"} may import`);
        }
      }
    });
  }
});
