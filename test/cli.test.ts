import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { COMMANDS } from "../src/cli/main.ts";
import { runCli, tempDir, writeManifest } from "./helpers/cli.ts";

const MANIFEST = `version: 1
cluster: demo
services:
  api: { usage: server, addresses: [127.0.0.1] }
  web: { usage: sever }
`;

describe("cli", () => {
  it("ok/bare invocation prints usage with examples", async () => {
    const r = await runCli([]);
    assert.equal(r.code, 0);
    assert.match(r.out, /mtlskit apply/);
  });
  for (const cmd of Object.keys(COMMANDS)) {
    it(`ok/${cmd} --help has a synopsis, EXAMPLES and EXIT CODES`, async () => {
      const r = await runCli([cmd, "--help"]);
      assert.equal(r.code, 0);
      assert.match(r.out, new RegExp(`^mtlskit ${cmd}: `));
      assert.match(r.out, /\nUSAGE\n[\s\S]*\nEXAMPLES\n[\s\S]*\nEXIT CODES\n  0 [\s\S]*\n  2 [\s\S]*\n  3 /);
    });
  }
  it("ok/--version prints the package version", async () => {
    const r = await runCli(["--version"]);
    assert.match(r.out, /^mtlskit \d+\.\d+\.\d+\n$/);
  });
  it("fail/unknown command exits 2 and lists the commands", async () => {
    const r = await runCli(["aply"]);
    assert.equal(r.code, 2);
    assert.ok(r.err.includes(`unknown command "aply"; commands are: ${Object.keys(COMMANDS).join(", ")}.`), r.err);
  });
  it("fail/unknown flag exits 2 and points at the command's help", async () => {
    const r = await runCli(["apply", "--reisue", "x"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /mtlskit apply: Unknown option '--reisue'.*Run `mtlskit apply --help`/);
  });
  it("ok/schema prints the JSON Schema", async () => {
    const r = await runCli(["schema"]);
    assert.equal(r.code, 0);
    const schema = JSON.parse(r.out) as { properties: { services: unknown } };
    assert.ok(schema.properties.services);
  });
  it("fail/invalid manifest exits 2, names file:line and field, writes nothing", async () => {
    const dir = tempDir();
    const file = writeManifest(dir, MANIFEST);
    const pki = path.join(dir, "pki");
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 2);
    assert.match(r.err, /mtlskit\.yaml:5 services\.web\.usage: must be one of server, client, dual; got "sever"/);
    assert.equal(existsSync(pki), false);
  });
});
