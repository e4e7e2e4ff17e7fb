/**
 * What npm users get: the file list of `npm pack --dry-run` (the built dist/, the CLI launcher,
 * the schema, the bundled examples, README and LICENSE; each entry point's .js and .d.ts) and
 * nothing from the repository's tests, benchmarks or CI. Run with --ignore-scripts: the package is
 * judged as built (`npm ci` builds dist/ through `prepare`), not rebuilt by the test.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { REPO } from "./helpers/cli.ts";

interface PackJson {
  files: { path: string }[];
}

/** packed lists the paths `npm pack` would put in the tarball. */
function packed(): Set<string> {
  const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: REPO, encoding: "utf8", timeout: 60_000, stdio: ["ignore", "pipe", "pipe"] });
  const [pack] = JSON.parse(out) as PackJson[];
  return new Set(pack!.files.map((f) => f.path));
}

interface PackageJson {
  license: string;
  bin: Record<string, string>;
  exports: Record<string, { types: string; default: string } | string>;
}

/** sources lists src/'s .ts files relative to src/, "/" as the separator. */
function sources(dir = path.join(REPO, "src")): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.relative(path.join(REPO, "src"), path.join(dir, e.name)).split(path.sep).join("/")] : []));
}

/** FORBIDDEN: what the package must not hold, each with why. */
const FORBIDDEN: [RegExp, string][] = [
  [/^test\//, "the tests"],
  [/^bench\//, "the benchmarks"],
  [/^\.ci\//, "CI"],
  [/^scripts\//, "the interop installer"],
  [/^src\//, "TypeScript sources (dist/ holds the build)"],
  [/(?<!\.d)\.ts$/, "TypeScript sources (only .d.ts declarations belong in the package)"],
  [/^node_modules\//, "dependencies"],
  [/^pki\//, "a PKI made by `npm start`"],
  [/(^|\/)tsconfig[^/]*\.json$/, "build configuration"],
];

describe("the npm package", () => {
  const files = packed();
  const pkg = JSON.parse(readFileSync(path.join(REPO, "package.json"), "utf8")) as PackageJson;

  it("ok/holds README.md, LICENSE, package.json, the schema and docs/checks.md", () => {
    for (const f of ["README.md", "LICENSE", "package.json", "schema/mtlskit.schema.json", "docs/checks.md"]) assert.ok(files.has(f), `the package lacks ${f}`);
  });

  it("ok/LICENSE is the Apache License 2.0 the package declares", () => {
    assert.equal(pkg.license, "Apache-2.0");
    const text = readFileSync(path.join(REPO, "LICENSE"), "utf8");
    assert.match(text, /^\s*Apache License\s+Version 2\.0, January 2004\s+http:\/\/www\.apache\.org\/licenses\//);
    assert.match(text, /END OF TERMS AND CONDITIONS/);
    assert.match(text, /9\. Accepting Warranty or Additional Liability\./);
  });

  it("ok/holds the CLI launcher and what it runs", () => {
    for (const bin of Object.values(pkg.bin)) assert.ok(files.has(path.posix.normalize(bin)), `the package lacks its bin ${bin}`);
    assert.ok(files.has("dist/cli/main.js"), "the package lacks dist/cli/main.js (bin/mtlskit.js runs it)");
  });

  it("ok/holds every entry point's .js and .d.ts", () => {
    for (const [key, target] of Object.entries(pkg.exports)) {
      const targets = typeof target === "string" ? [target] : [target.default, target.types];
      for (const t of targets) assert.ok(files.has(path.posix.normalize(t)), `exports[${JSON.stringify(key)}] points at ${t}, which is not in the package`);
    }
  });

  it("ok/holds every source file's build (.js and .d.ts)", () => {
    for (const src of sources()) {
      for (const ext of [".js", ".d.ts"]) {
        const built = `dist/${src.replace(/\.ts$/, ext)}`;
        assert.ok(files.has(built), `the package lacks ${built} (built from src/${src}; run npm run build)`);
      }
    }
  });

  it("ok/holds the examples `mtlskit init --example` writes", () => {
    const yamls = readdirSync(path.join(REPO, "examples")).filter((f) => f.endsWith(".yaml"));
    assert.ok(yamls.includes("quickstart.yaml"));
    for (const y of yamls) assert.ok(files.has(`examples/${y}`), `the package lacks examples/${y}`);
  });

  it("fail/holds nothing from the tests, benchmarks, CI or TypeScript sources", () => {
    for (const f of files) {
      for (const [pattern, why] of FORBIDDEN) assert.doesNotMatch(f, pattern, `the package holds ${f}: ${why} do not belong in it`);
    }
  });
});
