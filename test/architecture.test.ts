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
  "read-file": ["errors"],
  identity: [],
  pki: ["errors"],
  manifest: ["identity", "pki", "errors", "read-file"],
  state: ["manifest", "pki", "errors", "read-file"],
  plan: ["manifest", "pki", "state", "errors", "read-file"],
  check: ["manifest", "pki", "state", "errors", "read-file"],
  explain: ["check", "errors", "read-file"],
  inspect: ["check", "pki", "errors", "read-file"],
  service: ["identity", "pki", "errors", "read-file"],
  probe: ["check", "explain", "service", "manifest", "state", "pki", "errors", "read-file"],
  status: ["check", "manifest", "state", "errors", "read-file"],
  export: ["manifest", "pki", "state", "errors", "read-file"],
  config: ["manifest", "state", "export", "pki", "errors", "read-file"],
  trust: ["pki", "state", "errors", "read-file"],
  verify: ["check", "pki", "errors", "read-file"],
  cli: ["errors", "identity", "pki", "manifest", "state", "plan", "check", "explain", "inspect", "service", "probe", "status", "config", "trust", "verify", "export", "read-file"],
  index: ["errors", "identity", "pki", "manifest", "state", "plan", "check", "explain", "inspect", "service", "probe", "status", "config", "trust", "export", "read-file"],
};

/** DOORS: the only file allowed to import each third-party package. */
const DOORS: Record<string, string> = {
  yaml: "manifest/parse.ts",
  "js-yaml": "manifest/parse.ts",
  valibot: "manifest/schema.ts",
  "@valibot/to-json-schema": "manifest/json-schema.ts",
  "@grpc/grpc-js": "service/grpc.ts",
  // @peculiar/asn1-x509 and @peculiar/asn1-schema are test-only judges of pki/x509.ts: no file
  // under src/ may import them; test/helpers/peculiar.ts is the only one that does.
};

/**
 * SERVICE_PKI: the only pki/ files the service library may import, the decoding side. Services
 * must start fast and small, so certificate building (pki/issue.ts, pki/name.ts) never loads.
 */
const SERVICE_PKI = ["pki/x509.ts", "pki/cert.ts", "pki/der.ts", "pki/pem.ts", "pki/ip.ts", "pki/profiles.ts", "pki/names.ts"];
const SERVICE_NEVER = ["pki/issue.ts", "pki/name.ts"];

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

  it("service/ imports only the decoding side of pki/, and never loads certificate building, even indirectly", () => {
    const rel = (f: string) => path.relative(SRC, f).split(path.sep).join("/");
    const seen = new Set<string>();
    const todo = files.filter((f) => rel(f).startsWith("service/"));
    assert.ok(todo.length > 0, "src/service exists");
    for (const f of todo) {
      for (const spec of imports(f)) {
        const to = rel(path.resolve(path.dirname(f), spec));
        if (spec.startsWith(".") && to.startsWith("pki/")) assert.ok(SERVICE_PKI.includes(to), `${rel(f)} imports ${to}; the service library may import only ${SERVICE_PKI.join(", ")}`);
      }
    }
    while (todo.length > 0) {
      const f = todo.pop()!;
      if (seen.has(rel(f))) continue;
      seen.add(rel(f));
      for (const spec of imports(f)) if (spec.startsWith(".")) todo.push(path.resolve(path.dirname(f), spec));
    }
    for (const never of SERVICE_NEVER) assert.ok(!seen.has(never), `src/service loads ${never} (certificate building)`);
    for (const f of seen) assert.match(f, /^(service|identity|pki|errors|read-file)/, `src/service loads ${f}`);
  });

  it("the package's main entry never loads @grpc/grpc-js: service/grpc.ts is reached only through `mtlskit/grpc`", () => {
    const rel = (f: string) => path.relative(SRC, f).split(path.sep).join("/");
    const seen = new Set<string>();
    const todo = [path.join(SRC, "index.ts")];
    while (todo.length > 0) {
      const f = todo.pop()!;
      if (seen.has(rel(f))) continue;
      seen.add(rel(f));
      for (const spec of imports(f)) {
        assert.notEqual(spec, "@grpc/grpc-js", `${rel(f)} imports @grpc/grpc-js`);
        if (spec.startsWith(".")) todo.push(path.resolve(path.dirname(f), spec));
      }
    }
    assert.ok(seen.has("service/index.ts"), "index.ts reaches the service library");
    assert.ok(!seen.has("service/grpc.ts"), "index.ts reaches service/grpc.ts");
  });
});
