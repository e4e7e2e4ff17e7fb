/**
 * What npm users get: the file list of `npm pack --dry-run` (the built dist/, the CLI launcher,
 * the schema, the bundled examples, README and LICENSE; each entry point's .js and .d.ts) and
 * nothing from the repository's tests, benchmarks or CI. Run with --ignore-scripts: the package is
 * judged as built (`npm ci` builds dist/ through `prepare`), not rebuilt by the test.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { REPO, tempDir } from "./helpers/cli.ts";
import { GRPC_JS_MIN } from "../src/service/grpc.ts";

interface PackJson {
  files: { path: string }[];
}

/** packed lists the paths `npm pack` would put in the tarball. */
function packed(): Set<string> {
  const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
    cwd: REPO,
    encoding: "utf8",
    timeout: 60_000,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const [pack] = JSON.parse(out) as PackJson[];
  return new Set(pack!.files.map((f) => f.path));
}

interface PackageJson {
  license: string;
  bin: Record<string, string>;
  exports: Record<string, { types: string; default: string } | string>;
}

/**
 * sources lists src/'s .ts files relative to src/, "/" as the separator; not src/ui/web/, the
 * dashboard's browser code, which ships bundled (dist/ui/web/, scripts/build-web.ts), not compiled
 * file by file.
 */
function sources(dir = path.join(REPO, "src")): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() && path.join(dir, e.name) === path.join(REPO, "src", "ui", "web")
      ? []
      : e.isDirectory()
        ? sources(path.join(dir, e.name))
        : e.name.endsWith(".ts")
          ? [path.relative(path.join(REPO, "src"), path.join(dir, e.name)).split(path.sep).join("/")]
          : [],
  );
}

/** FORBIDDEN: what the package must not hold, each with why. */
const FORBIDDEN: [RegExp, string][] = [
  [/^test\//, "the tests"],
  [/^bench\//, "the benchmarks"],
  [/^\.ci\//, "CI"],
  [/^scripts\/(?!build-native\.mjs$)/, "the repository's scripts other than the install step (build-native.mjs)"],
  [/^build\//, "a compiled addon (each install builds its own from native/)"],
  [/^src\//, "TypeScript sources (dist/ holds the build)"],
  [/(?<!\.d)\.ts$/, "TypeScript sources (only .d.ts declarations belong in the package)"],
  [/^node_modules\//, "dependencies"],
  [/^pki\//, "a PKI made by `npm start`"],
  [/(^|\/)tsconfig[^/]*\.json$/, "build configuration"],
  [/^docs\/.*\.png$/, "the README's screenshots (168 KB; npm and GitHub show them from the repository)"],
];

describe("the npm package", () => {
  const files = packed();
  const pkg = JSON.parse(readFileSync(path.join(REPO, "package.json"), "utf8")) as PackageJson;

  it("ok/holds README.md, LICENSE, package.json, the schema and docs/checks.md", () => {
    for (const f of ["README.md", "LICENSE", "package.json", "schema/mtlskit.schema.json", "docs/checks.md"])
      assert.ok(files.has(f), `the package lacks ${f}`);
  });

  it("ok/LICENSE is the Apache License 2.0 the package declares", () => {
    assert.equal(pkg.license, "Apache-2.0");
    const text = readFileSync(path.join(REPO, "LICENSE"), "utf8");
    assert.match(text, /^\s*Apache License\s+Version 2\.0, January 2004\s+http:\/\/www\.apache\.org\/licenses\//);
    assert.match(text, /END OF TERMS AND CONDITIONS/);
    assert.match(text, /9\. Accepting Warranty or Additional Liability\./);
  });

  it("ok/holds the CLI launcher and what it runs", () => {
    for (const bin of Object.values(pkg.bin))
      assert.ok(files.has(path.posix.normalize(bin)), `the package lacks its bin ${bin}`);
    assert.ok(files.has("dist/cli/main.js"), "the package lacks dist/cli/main.js (bin/mtlskit.js runs it)");
  });

  it("ok/holds every entry point's .js and .d.ts", () => {
    for (const [key, target] of Object.entries(pkg.exports)) {
      const targets = typeof target === "string" ? [target] : [target.default, target.types];
      for (const t of targets)
        assert.ok(
          files.has(path.posix.normalize(t)),
          `exports[${JSON.stringify(key)}] points at ${t}, which is not in the package`,
        );
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

  it("ok/holds the dashboard's page, bundled (dist/ui/web: index.html, app.js, app.css)", () => {
    for (const f of ["index.html", "app.js", "app.css"])
      assert.ok(files.has(`dist/ui/web/${f}`), `the package lacks dist/ui/web/${f} (run npm run build)`);
  });

  it("ok/holds what the install step builds the native verifier from", () => {
    for (const f of ["binding.gyp", "native/p256.cc", "scripts/build-native.mjs"])
      assert.ok(files.has(f), `the package lacks ${f}: its install step could not build the native P-256 verifier`);
  });

  it("ok/holds the examples `mtlskit init --example` writes", () => {
    const yamls = readdirSync(path.join(REPO, "examples")).filter((f) => f.endsWith(".yaml"));
    assert.ok(yamls.includes("quickstart.yaml"));
    for (const y of yamls) assert.ok(files.has(`examples/${y}`), `the package lacks examples/${y}`);
  });

  it("fail/holds nothing from the tests, benchmarks, CI or TypeScript sources", () => {
    for (const f of files) {
      for (const [pattern, why] of FORBIDDEN)
        assert.doesNotMatch(f, pattern, `the package holds ${f}: ${why} do not belong in it`);
    }
  });
});

/**
 * APP_GRPC is an app's script on the installed package: its own grpc.Server and client, with
 * mtlskit's credentials on the quick start's certificates (one echo call from worker to api).
 * With a second grpc-js copy inside mtlskit, bindAsync throws "creds must be a ServerCredentials
 * object": the credentials must be built on the app's copy.
 */
const APP_GRPC = `
import * as grpc from "@grpc/grpc-js";
import { fileSource, authorizeId } from "mtlskit/service";
import { grpcServerCredentials, grpcChannelCredentials } from "mtlskit/grpc";
const raw = (b) => b;
const svc = { echo: { path: "/t.Echo/Echo", requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw } };
const api = fileSource({ dir: "pki/services/api" });
const worker = fileSource({ dir: "pki/services/worker" });
const server = new grpc.Server();
server.addService(svc, { echo: (call, cb) => cb(null, call.request) });
const creds = grpcServerCredentials(api, { authorize: authorizeId("spiffe://quickstart.local/client/worker") });
const port = await new Promise((resolve, reject) => server.bindAsync("127.0.0.1:0", creds, (e, p) => (e ? reject(e) : resolve(p))));
const Client = grpc.makeGenericClientConstructor(svc, "Echo");
const client = new Client("127.0.0.1:" + port, grpcChannelCredentials(worker, { authorize: authorizeId("spiffe://quickstart.local/server/api") }));
const reply = await new Promise((resolve, reject) => client.echo(Buffer.from("hello"), { deadline: Date.now() + 10000 }, (e, r) => (e ? reject(e) : resolve(r.toString()))));
const { version } = JSON.parse((await import("node:fs")).readFileSync("node_modules/@grpc/grpc-js/package.json", "utf8"));
console.log("echo " + reply + " over grpc-js " + version);
client.close(); server.forceShutdown(); api.close(); worker.close();
`;

/**
 * npm runs npm in `cwd`, bounded; --prefer-offline: packages npm ci already fetched come from its
 * cache. The bound is generous: the first app compiles better-sqlite3 with node-gyp, about a minute
 * on a quiet 2-core machine and past three minutes on a loaded one (a 180 s bound failed there).
 */
function npm(cwd: string, args: string[]): string {
  return execFileSync("npm", [...args, "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], {
    cwd,
    encoding: "utf8",
    timeout: 600_000,
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** node runs a script of an app in `cwd`, bounded, and returns its exit code and output. */
function node(cwd: string, args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, args, { cwd, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe("the npm package, installed into an app", () => {
  const dir = tempDir("mtlskit-pack-");
  const tarball = path.join(
    dir,
    JSON.parse(npm(REPO, ["pack", "--json", "--ignore-scripts", "--pack-destination", dir]))[0].filename as string,
  );
  /**
   * app installs the tarball into a new app. better-sqlite3 (the online CA's ledger) is a native
   * addon compiled by node-gyp at install (about a minute on 2 cores): the first app builds it and
   * uses it; `ignoreScripts` skips that build where the app proves something else (grpc-js).
   */
  const app = (name: string, deps: string[], opts: { ignoreScripts?: boolean } = {}) => {
    const cwd = path.join(dir, name);
    execFileSync("mkdir", [cwd]);
    writeFileSync(
      path.join(cwd, "package.json"),
      JSON.stringify({ name, version: "1.0.0", private: true, type: "module" }),
    );
    npm(cwd, ["install", tarball, ...deps, ...(opts.ignoreScripts ? ["--ignore-scripts"] : [])]);
    return cwd;
  };

  it("ok/without @grpc/grpc-js: the CLI and mtlskit/service work, neither grpc-js nor a second YAML library is installed, and mtlskit/grpc says what to install", () => {
    const cwd = app("cli-only", []);
    assert.ok(
      existsSync(path.join(cwd, "node_modules/mtlskit/build/Release/p256.node")),
      "the package's install step (scripts/build-native.mjs) built the native P-256 verifier",
    );
    assert.throws(
      () => readFileSync(path.join(cwd, "node_modules/@grpc/grpc-js/package.json")),
      /ENOENT/,
      "an optional peer dependency is not installed",
    );
    assert.throws(
      () => readFileSync(path.join(cwd, "node_modules/yaml/package.json")),
      /ENOENT/,
      "one YAML library at runtime: js-yaml, not also yaml",
    );
    assert.ok(readFileSync(path.join(cwd, "node_modules/js-yaml/package.json")));
    const applied = node(cwd, [
      "node_modules/mtlskit/bin/mtlskit.js",
      "apply",
      "-f",
      "node_modules/mtlskit/examples/quickstart.yaml",
      "--pki",
      "pki",
    ]);
    assert.equal(applied.code, 0, applied.err);
    // The ledger's native addon, built by the install, works: a token for a csr service lands in
    // pki/ca/ledger.db.
    writeFileSync(
      path.join(cwd, "online.yaml"),
      "version: 1\ncluster: online\nca: {}\nservices:\n  web: { usage: dual, csr: true, ttl: 15m }\n",
    );
    const online = node(cwd, ["node_modules/mtlskit/bin/mtlskit.js", "apply", "-f", "online.yaml", "--pki", "online"]);
    assert.equal(online.code, 0, online.err);
    const token = node(cwd, [
      "node_modules/mtlskit/bin/mtlskit.js",
      "token",
      "create",
      "web",
      "-f",
      "online.yaml",
      "--pki",
      "online",
    ]);
    assert.equal(token.code, 0, token.err);
    assert.match(token.out.trim(), /^mtk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    assert.ok(readFileSync(path.join(cwd, "online/ca/ledger.db")).length > 0, "the SQLite ledger was written");
    const service = node(cwd, [
      "--input-type=module",
      "-e",
      `const s = await import("mtlskit/service"); console.log(typeof s.createMtlsServer)`,
    ]);
    assert.equal(service.out.trim(), "function", service.err);
    const grpc = node(cwd, ["--input-type=module", "-e", `await import("mtlskit/grpc")`]);
    assert.notEqual(grpc.code, 0);
    assert.ok(
      grpc.err.includes(
        `mtlskit/grpc needs @grpc/grpc-js ${GRPC_JS_MIN} or newer, which is not installed; run npm install @grpc/grpc-js`,
      ),
      grpc.err,
    );
  });

  it(`ok/with the app's own @grpc/grpc-js at the declared minimum (${GRPC_JS_MIN}): mtlskit/grpc uses that copy, and a call is served over mTLS`, () => {
    const cwd = app("grpc-min", [`@grpc/grpc-js@${GRPC_JS_MIN}`], { ignoreScripts: true });
    const pkg = JSON.parse(readFileSync(path.join(cwd, "node_modules/mtlskit/package.json"), "utf8")) as {
      peerDependencies: Record<string, string>;
    };
    assert.equal(
      pkg.peerDependencies["@grpc/grpc-js"],
      `>=${GRPC_JS_MIN}`,
      "package.json's peer range starts at GRPC_JS_MIN",
    );
    assert.throws(
      () => readFileSync(path.join(cwd, "node_modules/mtlskit/node_modules/@grpc/grpc-js/package.json")),
      /ENOENT/,
      "mtlskit has no grpc-js copy of its own",
    );
    const applied = node(cwd, [
      "node_modules/mtlskit/bin/mtlskit.js",
      "apply",
      "-f",
      "node_modules/mtlskit/examples/quickstart.yaml",
      "--pki",
      "pki",
    ]);
    assert.equal(applied.code, 0, applied.err);
    writeFileSync(path.join(cwd, "grpc.mjs"), APP_GRPC);
    const r = node(cwd, ["grpc.mjs"]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.trim(), `echo hello over grpc-js ${GRPC_JS_MIN}`);
  });
});
