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
  thread: [],
  identity: [],
  pki: ["errors"],
  manifest: ["identity", "pki", "errors", "read-file"],
  state: ["manifest", "pki", "errors", "read-file"],
  ca: ["manifest", "pki", "state", "errors", "read-file"],
  plan: ["manifest", "pki", "state", "ca", "errors", "read-file", "thread"],
  check: ["manifest", "pki", "state", "ca", "ledger", "errors", "read-file"],
  explain: ["check", "errors", "read-file"],
  inspect: ["check", "pki", "errors", "read-file"],
  service: ["identity", "pki", "errors", "read-file"],
  probe: ["check", "explain", "service", "manifest", "state", "pki", "errors", "read-file"],
  status: ["check", "manifest", "state", "ca", "errors", "read-file"],
  export: ["manifest", "pki", "state", "errors", "read-file"],
  config: ["manifest", "state", "export", "pki", "errors", "read-file"],
  trust: ["pki", "state", "errors", "read-file"],
  verify: ["check", "pki", "errors", "read-file"],
  ledger: ["state", "errors", "read-file", "thread"],
  server: [
    "ledger",
    "ca",
    "plan",
    "check",
    "state",
    "manifest",
    "pki",
    "service",
    "acme",
    "errors",
    "read-file",
    "thread",
  ],
  acme: ["server", "ledger", "manifest", "pki", "errors", "read-file"],
  agent: ["service", "pki", "state", "errors", "read-file"],
  ui: ["check", "status", "state", "ledger", "manifest", "server", "pki", "errors", "read-file", "thread"],
  cli: [
    "errors",
    "identity",
    "pki",
    "ca",
    "manifest",
    "state",
    "ca",
    "plan",
    "check",
    "explain",
    "inspect",
    "service",
    "probe",
    "status",
    "config",
    "trust",
    "verify",
    "export",
    "read-file",
    "ledger",
    "server",
    "acme",
    "agent",
    "ui",
  ],
  index: [
    "errors",
    "identity",
    "pki",
    "ca",
    "manifest",
    "state",
    "ca",
    "plan",
    "check",
    "explain",
    "inspect",
    "service",
    "probe",
    "status",
    "config",
    "trust",
    "export",
    "read-file",
    "ledger",
    "server",
    "acme",
    "agent",
  ],
};

/** DOORS: the only file allowed to import each third-party package. */
const DOORS: Record<string, string> = {
  "js-yaml": "manifest/parse.ts",
  valibot: "manifest/schema.ts",
  "@valibot/to-json-schema": "manifest/json-schema.ts",
  "@grpc/grpc-js": "service/grpc.ts",
  fastify: "server/http.ts",
  "better-sqlite3": "ledger/sqlite.ts",
  pg: "ledger/postgres.ts",
  "prom-client": "server/metrics.ts",
  jose: "acme/jws.ts",
  // The dashboard's front end (src/ui/web/, bundled for the browser by scripts/build-web.ts, the
  // one file that imports esbuild): Preact through view.ts only (JSX compiles to its h()).
  preact: "ui/web/view.ts",
  // `yaml` is a test-only judge of the Kubernetes emitter (test/export.test.ts): one YAML library
  // at runtime. @peculiar/asn1-x509 and @peculiar/asn1-schema are test-only judges of
  // pki/x509.ts: no file under src/ may import them; test/helpers/peculiar.ts is the only one
  // that does. `dns-packet` is test-only too: test/helpers/dns-server.ts, the dns-01 tests' DNS
  // server, is the only file that imports it.
};

/**
 * SERVICE_PKI: the only pki/ files the service library may import, the decoding side. Services
 * must start fast and small, so certificate building (pki/issue.ts, pki/name.ts) never loads.
 */
const SERVICE_PKI = [
  "pki/x509.ts",
  "pki/cert.ts",
  "pki/der.ts",
  "pki/pem.ts",
  "pki/ip.ts",
  "pki/profiles.ts",
  "pki/names.ts",
  "pki/oids.ts",
];
const SERVICE_NEVER = ["pki/issue.ts", "pki/name.ts"];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? sources(path.join(dir, e.name))
      : e.name.endsWith(".ts") || e.name.endsWith(".tsx")
        ? [path.join(dir, e.name)]
        : [],
  );
}

const layerOf = (file: string) =>
  path
    .relative(SRC, file)
    .split(path.sep)[0]!
    .replace(/\.tsx?$/, "");

function imports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"|import\("([^"]+)"\)/g)].map(
    (m) => (m[1] ?? m[2])!,
  );
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
          assert.equal(
            DOORS[pkg],
            rel,
            `${rel} imports ${pkg}, which only ${DOORS[pkg] ?? "(no file: not a dependency)"} may import`,
          );
        }
      }
    });
  }

  it("ui/web/ (the browser bundle) imports only itself, ui/snapshot.ts (types) and Preact through view.ts", () => {
    const web = files.filter((f) => path.relative(SRC, f).startsWith(`ui${path.sep}web${path.sep}`));
    assert.ok(web.length >= 5, "src/ui/web exists");
    for (const f of web) {
      for (const spec of imports(f)) {
        const rel = path.relative(SRC, f);
        if (!spec.startsWith(".")) {
          assert.equal(rel, path.join("ui", "web", "view.ts"), `${rel} imports ${spec}: only view.ts imports packages`);
          continue;
        }
        const to = path
          .relative(SRC, path.resolve(path.dirname(f), spec))
          .split(path.sep)
          .join("/");
        assert.ok(
          to.startsWith("ui/web/") || to === "ui/snapshot.ts",
          `${rel} imports ${to}: the page runs in a browser`,
        );
      }
    }
  });

  it("service/ imports only the decoding side of pki/, and never loads certificate building, even indirectly", () => {
    const rel = (f: string) => path.relative(SRC, f).split(path.sep).join("/");
    const seen = new Set<string>();
    const todo = files.filter((f) => rel(f).startsWith("service/"));
    assert.ok(todo.length > 0, "src/service exists");
    for (const f of todo) {
      for (const spec of imports(f)) {
        const to = rel(path.resolve(path.dirname(f), spec));
        if (spec.startsWith(".") && to.startsWith("pki/"))
          assert.ok(
            SERVICE_PKI.includes(to),
            `${rel(f)} imports ${to}; the service library may import only ${SERVICE_PKI.join(", ")}`,
          );
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
});

/**
 * Runtime imports of a file, static and dynamic (`await import("...")`): `import type` /
 * `export type` are erased by the compiler and load nothing.
 */
function runtimeImports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [
    ...text.matchAll(
      /(?:^|\n)\s*(?:import|export)\s(?!type\s)[^;]*?from\s+"([^"]+)"|(?:^|\n)\s*import\s+"([^"]+)"|[^.\w]import\("([^"]+)"\)/g,
    ),
  ].map((m) => (m[1] ?? m[2] ?? m[3])!);
}

/**
 * loads is what importing `entry` loads, transitively: source files (relative to src/, "/" as the
 * separator) and third-party packages by name. node:* modules are left out.
 */
function loads(entry: string): Set<string> {
  const seen = new Set<string>();
  const todo = [path.join(SRC, entry)];
  while (todo.length > 0) {
    const f = todo.pop()!;
    const rel = path.relative(SRC, f).split(path.sep).join("/");
    if (seen.has(rel)) continue;
    seen.add(rel);
    for (const spec of runtimeImports(f)) {
      if (spec.startsWith(".")) todo.push(path.resolve(path.dirname(f), spec));
      else if (!spec.startsWith("node:"))
        seen.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);
    }
  }
  return seen;
}

/** THE_TOOL: what only the CLI and the main entry need; the service library must start without it. */
const THE_TOOL = [
  "manifest/",
  "state/",
  "plan/",
  "check/",
  "explain/",
  "inspect/",
  "probe/",
  "status/",
  "export/",
  "config/",
  "trust/",
  "verify/",
  "cli/",
  "pki/issue.ts",
  "pki/name.ts",
  "js-yaml",
  "yaml",
  "valibot",
  "@valibot/to-json-schema",
];

/**
 * ENTRIES: each entry point of package.json's "exports" (the key), its source under src/, what it
 * must load and what it must never load, even indirectly (a file, a folder ending in "/", or a
 * package). What an entry loads is what an app pays for at startup: `mtlskit` is the whole tool;
 * `mtlskit/service` is the service library alone (no YAML, valibot, explain catalogue or
 * certificate building); only `mtlskit/grpc` loads @grpc/grpc-js.
 */
const ENTRIES: { key: string; src: string; loads: string[]; never: string[] }[] = [
  {
    key: ".",
    src: "index.ts",
    loads: ["service/index.ts", "manifest/parse.ts"],
    never: ["service/grpc.ts", "@grpc/grpc-js"],
  },
  {
    key: "./service",
    src: "service/index.ts",
    loads: ["service/options.ts", "service/file-source.ts"],
    never: [...THE_TOOL, "service/grpc.ts", "@grpc/grpc-js"],
  },
  {
    key: "./grpc",
    src: "service/grpc.ts",
    loads: ["service/options.ts", "@grpc/grpc-js"],
    never: [...THE_TOOL, "service/index.ts"],
  },
  {
    // The agent as a library (agentSource): the service library, certificate requests (pki/csr.ts,
    // and through it pki/issue.ts's signer) and state/fs.ts's atomic writes; never the manifest,
    // the server, the ledger or their third-party libraries.
    key: "./agent",
    src: "agent/index.ts",
    loads: ["agent/source.ts", "service/source.ts", "pki/csr.ts", "state/fs.ts"],
    never: [
      ...THE_TOOL.filter((t) => t !== "state/" && t !== "pki/issue.ts" && t !== "pki/name.ts"),
      "server/",
      "ledger/",
      "service/grpc.ts",
      "@grpc/grpc-js",
      "fastify",
      "better-sqlite3",
      "prom-client",
      "acme/",
      "jose",
    ],
  },
];

describe("entry points: what each one loads, transitively", () => {
  const pkg = JSON.parse(readFileSync(path.join(REPO, "package.json"), "utf8")) as {
    exports: Record<string, { types: string; default: string } | string>;
  };
  for (const e of ENTRIES) {
    const name = e.key === "." ? "mtlskit" : `mtlskit/${e.key.slice(2)}`;
    it(`ok/${name} is exported as dist/${e.src.replace(/\.ts$/, ".js")} with its types`, () => {
      const js = `./dist/${e.src.replace(/\.ts$/, ".js")}`;
      assert.deepEqual(
        pkg.exports[e.key],
        { types: js.replace(/\.js$/, ".d.ts"), default: js },
        `package.json "exports" maps ${JSON.stringify(e.key)}`,
      );
    });
    it(`ok/${name} (src/${e.src}) loads what it needs and never ${e.never.join(", ")}`, () => {
      const seen = loads(e.src);
      for (const need of e.loads) assert.ok(seen.has(need), `src/${e.src} does not reach ${need}`);
      for (const never of e.never) {
        const hit = [...seen].find((f) => (never.endsWith("/") ? f.startsWith(never) : f === never));
        assert.equal(hit, undefined, `src/${e.src} loads ${hit}, which ${name} must never load`);
      }
    });
  }
  it("ok/every code entry of package.json is in ENTRIES", () => {
    const code = Object.entries(pkg.exports)
      .filter(([, v]) => typeof v !== "string" || v.endsWith(".js"))
      .map(([k]) => k);
    assert.deepEqual(code.sort(), ENTRIES.map((e) => e.key).sort());
  });
});
