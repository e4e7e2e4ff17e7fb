import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
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
