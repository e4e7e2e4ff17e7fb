/**
 * The offline CA key (issue 13, section 2): `mtlskit ca offline --to FILE` moves the root key out
 * of the PKI directory; plan, check, status, export and metrics work without it; apply asks for
 * `--ca-key FILE` only when something must be signed by it, says exactly what, checks the key
 * against the CA certificate and never copies it into the directory.
 */
import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { loadManifest } from "../src/manifest/index.ts";
import { apply } from "../src/plan/apply.ts";
import { loadCaKeyFile } from "../src/state/read.ts";
import { runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { assertUntouched, inspectPki } from "./helpers/pki.ts";

const DAY = 86_400_000;

const text = (intermediate: boolean, extraService = "") => `version: 1
cluster: demo
ca:
  subject: { O: Demo, CN: Demo Root }
${intermediate ? "  intermediate: { validity: 365d, renewBefore: 100d }\n" : ""}defaults: { validity: 90d, renewBefore: 30d }
services:
  web: { usage: server, addresses: [127.0.0.1] }
  worker: { usage: client }
${extraService}connections:
  - { from: worker, to: web }
`;

interface Setup {
  dir: string;
  file: string;
  pki: string;
  /** keyFile: where `ca offline` put the root key. */
  keyFile: string;
  /** keyText: the root key's PEM as apply wrote it. */
  keyText: string;
}

/** offline applies a manifest, then takes the CA key out with `mtlskit ca offline`. */
async function offline(intermediate: boolean): Promise<Setup> {
  const dir = tempDir("mtlskit-offline-");
  const file = writeManifest(dir, text(intermediate));
  const pki = path.join(dir, "pki");
  const a = await runCli(["apply", "-f", file, "--pki", pki]);
  assert.equal(a.code, 0, a.err);
  const keyText = readFileSync(path.join(pki, "ca", "ca-key.pem"), "utf8");
  mkdirSync(path.join(dir, "usb"));
  const keyFile = path.join(dir, "usb", "root-key.pem");
  const r = await runCli(["ca", "offline", "--pki", pki, "--to", keyFile]);
  assert.equal(r.code, 0, r.err);
  return { dir, file, pki, keyFile, keyText };
}

/** holdsKey: some file under `dir` holds the private key (same public half) of `keyText`. */
function holdsKey(dir: string, keyText: string): string[] {
  const want = createPublicKey(createPrivateKey(keyText)).export({ type: "spki", format: "der" });
  return [...inspectPki(dir)].flatMap(([rel, e]) => {
    if (e.type !== "file") return [];
    const f = path.join(dir, rel);
    const t = readFileSync(f, "utf8");
    if (!t.includes("PRIVATE KEY")) return [];
    try {
      return createPublicKey(createPrivateKey(t)).export({ type: "spki", format: "der" }).equals(want) ? [f] : [];
    } catch {
      return [];
    }
  });
}

describe("ca offline --to FILE", () => {
  it("ok/moves the key: FILE 0600 holds it, the PKI directory none; says where it went and how to use it", async () => {
    const s = await offline(true);
    assert.equal(readFileSync(s.keyFile, "utf8"), s.keyText);
    assert.equal(statSync(s.keyFile).mode & 0o777, 0o600);
    assert.equal(existsSync(path.join(s.pki, "ca", "ca-key.pem")), false);
    assert.deepEqual(holdsKey(s.pki, s.keyText), []);
    assert.deepEqual(readdirSync(path.dirname(s.keyFile)), ["root-key.pem"], "no temporary file left");
    const again = await runCli(["ca", "offline", "--pki", s.pki, "--to", path.join(s.dir, "other.pem")]);
    assert.equal(again.code, 3);
    assert.match(again.err, /ca-key\.pem does not exist: the CA key is already offline/);
  });

  it("ok/its message names FILE and the apply command", async () => {
    const dir = tempDir("mtlskit-offline-");
    const file = writeManifest(dir, text(true));
    const pki = path.join(dir, "pki");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    const to = path.join(dir, "root-key.pem");
    const r = await runCli(["ca", "offline", "--pki", pki, "--to", to]);
    assert.equal(r.code, 0, r.err);
    assert.match(
      r.out,
      new RegExp(`Moved the key of CN=Demo Root, O=Demo from .*ca-key\\.pem to ${to} \\(mode 0600\\)`),
    );
    assert.match(r.out, /apply asks for the root key only when the intermediate must be re-signed/);
    assert.match(r.out, new RegExp(`mtlskit apply --ca-key ${to}`));
  });

  for (const [name, target] of [
    ["FILE exists", (d: string) => (writeFileSync(path.join(d, "taken.pem"), "x"), path.join(d, "taken.pem"))],
    ["FILE inside the PKI directory", (d: string) => path.join(d, "pki", "ca", "backup.pem")],
    [
      "FILE inside the PKI directory through a symbolic link",
      (d: string) => (
        symlinkSync(path.join(d, "pki", "services"), path.join(d, "link")), path.join(d, "link", "k.pem")
      ),
    ],
  ] as const) {
    it(`fail/${name}: exit 2, the key stays, nothing written`, async () => {
      const dir = tempDir("mtlskit-offline-");
      const file = writeManifest(dir, text(true));
      const pki = path.join(dir, "pki");
      assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
      const to = target(dir);
      const before = inspectPki(dir);
      const r = await runCli(["ca", "offline", "--pki", pki, "--to", to]);
      assert.equal(r.code, 2, r.err);
      assert.match(
        r.err,
        name === "FILE exists" ? /exists; the key is never written over a file/ : /is inside the PKI directory/,
      );
      assertUntouched(before, inspectPki(dir));
    });
  }

  it("fail/without --to: exit 2 naming the flag", async () => {
    const r = await runCli(["ca", "offline", "--pki", tempDir()]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--to FILE is required/);
    const u = await runCli(["ca", "rotat"]);
    assert.equal(u.code, 2);
    assert.match(u.err, /unknown subcommand "rotat"; subcommands are: rotate, offline/);
  });
});

describe("offline key: the read-only commands work without any CA key", () => {
  for (const intermediate of [true, false]) {
    it(`ok/plan, check, status, export, metrics (${intermediate ? "root offline, intermediate online" : "no CA key at all"})`, async () => {
      const s = await offline(intermediate);
      const before = inspectPki(s.pki);
      const plan = await runCli(["plan", "-f", s.file, "--pki", s.pki]);
      assert.equal(plan.code, 0, plan.err);
      assert.match(plan.out, /CA\s+keep\s+valid until \S+; key offline/);
      assert.match(plan.out, /No changes/);
      const check = await runCli(["check", "-f", s.file, "--pki", s.pki, "--json"]);
      assert.equal(check.code, 0, check.out);
      const findings = JSON.parse(check.out).findings as { code: string; severity: string; message: string }[];
      assert.deepEqual(
        findings.map((f) => `${f.code} ${f.severity}`),
        ["ca-key-offline info"],
      );
      assert.match(
        findings[0]!.message,
        intermediate
          ? /the intermediate signs the services/
          : /apply needs it for every certificate it issues or renews/,
      );
      assert.equal(JSON.parse(check.out).summary.warnings, 0, "information is not a warning");
      const human = await runCli(["check", "-f", s.file, "--pki", s.pki]);
      assert.match(human.out, /info {4}ca-key-offline/);
      assert.match(human.out, /OK: 0 errors, 0 warnings/);
      const status = await runCli(["status", "-f", s.file, "--pki", s.pki]);
      assert.equal(status.code, 0, status.err + status.out);
      const metrics = await runCli(["metrics", "-f", s.file, "--pki", s.pki]);
      assert.equal(metrics.code, 0, metrics.err);
      assert.match(metrics.out, /mtlskit_check_errors 0/);
      const out = path.join(s.dir, "export");
      const exp = await runCli(["export", "-f", s.file, "--pki", s.pki, "--format", "flat", "--out", out]);
      assert.equal(exp.code, 0, exp.err);
      assert.ok(existsSync(path.join(out, "web", "web.pem")));
      assertUntouched(before, inspectPki(s.pki));
    });
  }
});

describe("offline key: apply asks for it only when something must be signed by it", () => {
  it("ok/nothing to sign: apply succeeds without the key and changes nothing", async () => {
    const s = await offline(true);
    const before = inspectPki(s.pki);
    const r = await runCli(["apply", "-f", s.file, "--pki", s.pki]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /Nothing to do/);
    assertUntouched(before, inspectPki(s.pki));
    // A leaf re-issued by the (online) intermediate needs no root key either.
    const re = await runCli(["apply", "-f", s.file, "--pki", s.pki, "--reissue", "web"]);
    assert.equal(re.code, 0, re.err);
  });

  it("fail/the intermediate due: refused (exit 2) naming what and the command, nothing written; --ca-key signs it, never copied", async () => {
    const s = await offline(true);
    const before = inspectPki(s.pki);
    const now = new Date(Date.now() + 300 * DAY);
    await assert.rejects(
      apply(loadManifest(s.file), s.pki, { now, hooks: false }),
      (e: Error & { exitCode: number }) => {
        assert.equal(e.exitCode, 2);
        assert.match(
          e.message,
          /^mtlskit apply: the intermediate CA must be re-signed by the root: due for renewal: expires \d{4}-\d\d-\d\d, in 6[45] days \(renewBefore 100d\); the CA key is not in .*pki \(kept offline\)\. Run `mtlskit apply --ca-key FILE` with the key `mtlskit ca offline` moved out/,
        );
        return true;
      },
    );
    assertUntouched(before, inspectPki(s.pki));
    const r = await apply(loadManifest(s.file), s.pki, {
      now,
      hooks: false,
      caKey: { key: loadCaKeyFile(s.keyFile), file: s.keyFile },
    });
    assert.equal(r.plan.intermediate?.action, "renew");
    assert.equal(r.issued, 2);
    assert.deepEqual(holdsKey(s.pki, s.keyText), [], "the root key was never written into the PKI directory");
    assert.equal(existsSync(path.join(s.pki, "ca", "ca-key.pem")), false);
    // Then it runs without the key again.
    const again = await apply(loadManifest(s.file), s.pki, { now, hooks: false });
    assert.equal(again.issued, 0);
  });

  it("fail/no intermediate: a service to issue is refused naming it; apply --ca-key FILE issues it, never copied", async () => {
    const s = await offline(false);
    writeFileSync(s.file, text(false, "  cache: { usage: server, addresses: [127.0.0.2] }\n"));
    const before = inspectPki(s.pki);
    const r = await runCli(["apply", "-f", s.file, "--pki", s.pki]);
    assert.equal(r.code, 2, r.err);
    assert.match(
      r.err,
      /mtlskit apply: 1 service needs certificates signed by the CA: cache \(missing\); the CA key is not in .*pki \(kept offline\)\. Run `mtlskit apply --ca-key FILE`/,
    );
    assertUntouched(before, inspectPki(s.pki));
    const plan = await runCli(["plan", "-f", s.file, "--pki", s.pki]);
    assert.equal(plan.code, 0);
    assert.match(plan.out, /The CA key is needed: 1 service needs certificates signed by the CA: cache \(missing\)/);
    const ok = await runCli(["apply", "-f", s.file, "--pki", s.pki, "--ca-key", s.keyFile]);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /cache\s+created\s+missing/);
    assert.deepEqual(holdsKey(s.pki, s.keyText), []);
    assert.equal((await runCli(["check", "-f", s.file, "--pki", s.pki])).code, 0);
  });

  it("fail/--ca-key that is not the CA's key, readable by others, or missing: exit 2, nothing written", async () => {
    const s = await offline(false);
    writeFileSync(s.file, text(false, "  cache: { usage: server, addresses: [127.0.0.2] }\n"));
    const other = path.join(s.dir, "other-key.pem");
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    writeFileSync(other, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    const open = path.join(s.dir, "open-key.pem");
    writeFileSync(open, s.keyText, { mode: 0o644 });
    const before = inspectPki(s.pki);
    for (const [file, message] of [
      [
        other,
        /--ca-key .*other-key\.pem is not the private key of the CA certificate .*ca\.pem \(CN=Demo Root, O=Demo\)/,
      ],
      [open, /--ca-key .*open-key\.pem has mode 0644, readable by others; run chmod 600/],
      [path.join(s.dir, "nope.pem"), /--ca-key .*nope\.pem: no such file/],
    ] as const) {
      const r = await runCli(["apply", "-f", s.file, "--pki", s.pki, "--ca-key", file]);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, message);
      assertUntouched(before, inspectPki(s.pki));
    }
  });
});
