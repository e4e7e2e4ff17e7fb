import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { COMMANDS, run } from "../src/cli/main.ts";
import { colorAllowed, processIo, type Stream } from "../src/cli/output.ts";
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
    assert.match(r.err, /^error: mtlskit: unknown command "aply"/); // like every other error (issue 11)
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
    assert.match(r.err, /^error: 1 problem found; nothing was written:/m);
  });
  it("fail/an invalid manifest given to a read-only command does not claim that nothing was written (issue 11)", async () => {
    const dir = tempDir();
    const file = writeManifest(dir, MANIFEST);
    for (const argv of [["status", "--nagios"], ["status"], ["check"], ["plan"], ["metrics"]]) {
      const r = await runCli([...argv, "-f", file, "--pki", path.join(dir, "pki")]);
      assert.equal(r.code, argv.includes("--nagios") ? 3 : 2, `${argv.join(" ")}: ${r.out}${r.err}`);
      assert.match(
        r.out + r.err,
        /1 problem found: .*services\.web\.usage|1 problem found:\n.*services\.web\.usage/,
        argv.join(" "),
      );
      assert.doesNotMatch(r.out + r.err, /nothing was written/, argv.join(" "));
    }
  });
});

/** tty is a fake process stream: a terminal or not, capturing what is written. */
function tty(isTTY: boolean): Stream & { text: string } {
  const s = { isTTY, text: "", write: (t: string) => void (s.text += t) };
  return s;
}
const ESC = "\u001b[";

describe("cli: colour and progress per stream (issue 11)", { timeout: 120_000 }, () => {
  it("fail/stderr redirected while stdout is a terminal: no escape codes in stderr", async () => {
    const out = tty(true);
    const err = tty(false);
    const io = processIo(out, err, {});
    assert.equal(io.color, true);
    assert.equal(io.errColor, false);
    assert.equal(await run(["aply"], io), 2);
    assert.ok(err.text.startsWith("error: mtlskit: unknown command"), JSON.stringify(err.text));
    assert.ok(!err.text.includes(ESC));
  });
  it("ok/stderr a terminal while stdout is redirected: the error is red on stderr", async () => {
    const err = tty(true);
    assert.equal(await run(["aply"], processIo(tty(false), err, {})), 2);
    assert.ok(err.text.startsWith(`${ESC}31merror:${ESC}0m`), JSON.stringify(err.text));
    const plain = tty(true);
    assert.equal(await run(["aply", "--no-color"], processIo(tty(false), plain, {})), 2);
    assert.ok(!plain.text.includes(ESC));
  });
  const env: [string, boolean, NodeJS.ProcessEnv, boolean][] = [
    ["a terminal", true, {}, true],
    ["redirected", false, {}, false],
    ["NO_COLOR=1 on a terminal", true, { NO_COLOR: "1" }, false],
    ["NO_COLOR empty on a terminal (no-color.org: only a non-empty value counts)", true, { NO_COLOR: "" }, true],
    ["FORCE_COLOR=1 redirected", false, { FORCE_COLOR: "1" }, true],
    ["FORCE_COLOR empty redirected (Node: 16 colours)", false, { FORCE_COLOR: "" }, true],
    ["FORCE_COLOR=1 beats NO_COLOR=1", false, { FORCE_COLOR: "1", NO_COLOR: "1" }, true],
    ["FORCE_COLOR=0 on a terminal", true, { FORCE_COLOR: "0" }, false],
    ["FORCE_COLOR=false on a terminal", true, { FORCE_COLOR: "false" }, false],
  ];
  for (const [name, isTTY, vars, expected] of env) {
    it(`ok/colour ${expected ? "on" : "off"}: ${name}`, () => {
      assert.equal(colorAllowed(isTTY, vars), expected);
      const io = processIo(tty(isTTY), tty(isTTY), vars);
      assert.equal(io.color, expected);
      assert.equal(io.errColor, expected);
    });
  }
  it("ok/apply's progress is drawn when stderr is a terminal, even with stdout redirected; not when stderr is redirected", async () => {
    const dir = tempDir();
    const services = Array.from({ length: 200 }, (_, i) => `  s${i}: { usage: client }`).join("\n");
    const file = writeManifest(
      dir,
      `version: 1\ncluster: demo\ndefaults: { key: ecdsa-p256 }\nservices:\n${services}\n`,
    );
    const err = tty(true);
    assert.equal(
      await run(["apply", "-f", file, "--pki", path.join(dir, "pki")], processIo(tty(false), err, {})),
      0,
      err.text,
    );
    assert.match(err.text, /\r  issuing 200\/200\n/);
    const quiet = tty(false);
    assert.equal(
      await run(["apply", "-f", file, "--pki", path.join(dir, "pki2")], processIo(tty(true), quiet, {})),
      0,
      quiet.text,
    );
    assert.doesNotMatch(quiet.text, /issuing/);
  });
});
