/**
 * The bundled examples: each one applies, and openssl (an independent judge) accepts every
 * declared connection: the server's certificate for TLS server use at the address the client
 * dials, and the client's certificate for TLS client use, both against the bundle the peer holds.
 */
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { loadManifest } from "../src/manifest/index.ts";
import { REPO, runCli, tempDir } from "./helpers/cli.ts";
import { opensslVerify } from "./helpers/openssl.ts";

const EXAMPLES = path.join(REPO, "examples");
const names = readdirSync(EXAMPLES)
  .filter((f) => f.endsWith(".yaml"))
  .sort();

describe("examples", () => {
  it("ok/the quick start and the seed reproductions are bundled", () => {
    assert.ok(names.includes("quickstart.yaml"), names.join(", "));
  });

  for (const name of names) {
    it(`ok/${name} applies, and openssl accepts every declared connection`, async () => {
      const file = path.join(EXAMPLES, name);
      const pki = path.join(tempDir(), "pki");
      const r = await runCli(["apply", "-f", file, "--pki", pki]);
      assert.equal(r.code, 0, r.err);
      const { manifest } = loadManifest(file);
      const dir = (s: string) => path.join(pki, "services", s);
      for (const c of manifest.connections) {
        const to = manifest.services.find((s) => s.name === c.to)!;
        const from = manifest.services.find((s) => s.name === c.from)!;
        const server = opensslVerify({
          caFile: path.join(dir(c.from), "ca.pem"),
          certFile: path.join(dir(c.to), "cert.pem"),
          purpose: "sslserver",
          ...(c.address.kind === "ip" ? { verifyIp: c.address.text } : { verifyHostname: c.address.text }),
        });
        assert.ok(server.ok, `${c.from} -> ${c.to} @ ${c.address.text}: server certificate refused:\n${server.output}`);
        const clientCert = from.split ? path.join(dir(c.from), "client.pem") : path.join(dir(c.from), "cert.pem");
        const client = opensslVerify({
          caFile: path.join(dir(c.to), "ca.pem"),
          certFile: clientCert,
          purpose: "sslclient",
        });
        assert.ok(client.ok, `${c.from} -> ${c.to}: client certificate refused:\n${client.output}`);
        assert.ok(to.slots.some((s) => s.profile !== "client"));
      }
      const again = await runCli(["plan", "-f", file, "--pki", pki, "--json"]);
      const plan = JSON.parse(again.out) as { certificates: { action: string }[] };
      assert.ok(
        plan.certificates.every((c) => c.action === "keep"),
        again.out,
      );
    });
  }
});

describe("init", () => {
  it("ok/writes the quick start, which then applies", async () => {
    const dir = tempDir();
    const file = path.join(dir, "mtlskit.yaml");
    const r = await runCli(["init", "-f", file]);
    assert.equal(r.code, 0, r.err);
    const example = readFileSync(path.join(EXAMPLES, "quickstart.yaml"), "utf8");
    // The example, apart from its modeline and the commands that name it (issue 11).
    assert.equal(
      readFileSync(file, "utf8").split("\n").slice(3).join("\n"),
      example.split("\n").slice(1).join("\n").replaceAll("examples/quickstart.yaml", file),
    );
    const a = await runCli(["apply", "-f", file, "--pki", path.join(dir, "pki")]);
    assert.equal(a.code, 0, a.err);
  });
  it("ok/outside the repository no path points into it: no modeline without an installed mtlskit, and commands name the new file (issue 11)", async () => {
    for (const name of names) {
      const dir = tempDir();
      const file = path.join(dir, "mtlskit.yaml");
      const r = await runCli(["init", "--example", name.slice(0, -5), "-f", file]);
      assert.equal(r.code, 0, r.err);
      const text = readFileSync(file, "utf8");
      assert.ok(
        !text.includes(REPO) && !text.includes("../schema") && !text.includes("examples/"),
        `${name}:\n${text.slice(0, 600)}`,
      );
      // yaml-language-server's modeline test (modelineUtil.ts isModeline): no comment line may be one.
      assert.ok(!text.split("\n").some((l) => /^#\s+(?:yaml-language-server\s*:|\$schema:)/.test(l)), name);
      assert.match(text, /^# Editor completion and inline errors: once mtlskit is installed here/);
      loadManifest(file);
    }
  });

  it("ok/with mtlskit installed in the project, the modeline is the schema in node_modules, relative to the new file", async () => {
    const project = tempDir();
    mkdirSync(path.join(project, "node_modules", "mtlskit", "schema"), { recursive: true });
    copyFileSync(
      path.join(REPO, "schema", "mtlskit.schema.json"),
      path.join(project, "node_modules", "mtlskit", "schema", "mtlskit.schema.json"),
    );
    mkdirSync(path.join(project, "deploy"));
    for (const [file, want] of [
      [path.join(project, "mtlskit.yaml"), "node_modules/mtlskit/schema/mtlskit.schema.json"],
      [path.join(project, "deploy", "mtlskit.yaml"), "../node_modules/mtlskit/schema/mtlskit.schema.json"],
    ] as const) {
      assert.equal((await runCli(["init", "-f", file])).code, 0);
      const first = readFileSync(file, "utf8").split("\n")[0];
      assert.equal(first, `# yaml-language-server: $schema=${want}`);
      assert.ok(existsSync(path.resolve(path.dirname(file), want)));
    }
  });

  it("fail/refuses to overwrite without --force (exit 2), and overwrites with it", async () => {
    const dir = tempDir();
    const file = path.join(dir, "mtlskit.yaml");
    assert.equal((await runCli(["init", "-f", file])).code, 0);
    const again = await runCli(["init", "-f", file]);
    assert.equal(again.code, 2);
    assert.match(again.err, /already exists; pass --force/);
    assert.equal((await runCli(["init", "-f", file, "--force"])).code, 0);
  });
  it("fail/an unknown example is named with the list of examples", async () => {
    const dir = tempDir();
    const r = await runCli(["init", "--example", "nope", "-f", path.join(dir, "x.yaml")]);
    assert.equal(r.code, 2);
    assert.match(r.err, /unknown example "nope"; examples are: .*quickstart/);
    assert.equal(existsSync(path.join(dir, "x.yaml")), false);
  });
});
