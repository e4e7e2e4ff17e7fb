/**
 * ca.intermediate (issue 13, section 2): the root (pathlen 1) signs an intermediate (pathlen 0),
 * the intermediate signs every service; cert.pem is leaf + intermediate, every bundle the root
 * only; apply renews the intermediate before it expires without touching a bundle; an
 * organisation's root (ca.import) can sign it. openssl verify -x509_strict is the judge.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { chmodSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { loadManifest } from "../src/manifest/index.ts";
import { apply } from "../src/plan/apply.ts";
import { REPO, runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { assertUntouched, inspectPki } from "./helpers/pki.ts";
import { opensslRootCa, opensslText, opensslVerify } from "./helpers/openssl.ts";

const DAY = 86_400_000;

/** MANIFEST declares a root and an intermediate; `extra` is added under ca.intermediate. */
const manifestText = (extra = "") => `version: 1
cluster: demo
ca:
  subject: { O: Demo, CN: Demo Root }
  validity: 10y
  intermediate:
    validity: 365d
    renewBefore: 100d
${extra}defaults:
  validity: 90d
  renewBefore: 30d
services:
  web: { usage: server, addresses: [127.0.0.1, web.demo] }
  worker: { usage: client }
  db: { usage: dual, addresses: [db.demo] }
connections:
  - { from: worker, to: web }
  - { from: db, to: web }
  - { from: worker, to: db }
`;

async function applied(text = manifestText()): Promise<{ dir: string; file: string; pki: string }> {
  const dir = tempDir("mtlskit-inter-");
  const file = writeManifest(dir, text);
  const pki = path.join(dir, "pki");
  const r = await runCli(["apply", "-f", file, "--pki", pki]);
  assert.equal(r.code, 0, r.err);
  return { dir, file, pki };
}

const read = (f: string) => readFileSync(f, "utf8");
const certsIn = (f: string) => read(f).match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n/g) ?? [];
const svc = (pki: string, name: string, file: string) => path.join(pki, "services", name, file);

describe("intermediate: root -> intermediate -> leaves", () => {
  it("ok/the root has pathlen 1, the intermediate pathlen 0 signed by the root, leaves are signed by the intermediate", async () => {
    const { pki } = await applied();
    const root = new X509Certificate(read(path.join(pki, "ca", "ca.pem")));
    const inter = new X509Certificate(read(path.join(pki, "ca", "intermediate.pem")));
    assert.match(opensslText(path.join(pki, "ca", "ca.pem")), /CA:TRUE, pathlen:1/);
    assert.match(opensslText(path.join(pki, "ca", "intermediate.pem")), /CA:TRUE, pathlen:0/);
    assert.ok(inter.verify(root.publicKey) && inter.checkIssued(root));
    assert.equal(inter.subject, "O=Demo\nCN=demo Intermediate CA");
    assert.equal((readFileSync(path.join(pki, "ca", "intermediate-key.pem")).length > 0, true), true);
    for (const name of ["web", "worker", "db"]) {
      const pems = certsIn(svc(pki, name, "cert.pem"));
      assert.equal(pems.length, 2, `${name}/cert.pem holds leaf + intermediate`);
      assert.equal(pems[1], read(path.join(pki, "ca", "intermediate.pem")));
      const leaf = new X509Certificate(pems[0]!);
      assert.ok(leaf.verify(inter.publicKey) && leaf.checkIssued(inter), `${name} is signed by the intermediate`);
      assert.equal(read(svc(pki, name, "ca.pem")), read(path.join(pki, "ca", "ca.pem")), "the bundle is the root");
      assert.equal(certsIn(svc(pki, name, "ca.pem")).length, 1);
      const v = opensslVerify({
        caFile: svc(pki, name, "ca.pem"),
        certFile: svc(pki, name, "cert.pem"),
        untrusted: svc(pki, name, "cert.pem"),
        purpose: name === "worker" ? "sslclient" : "sslserver",
      });
      assert.ok(v.ok, v.output);
    }
  });

  it("ok/a re-run changes no file; check finds nothing", async () => {
    const { file, pki } = await applied();
    const before = inspectPki(pki);
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /CA intermediate\s+kept\s+valid until/);
    assertUntouched(before, inspectPki(pki));
    const c = await runCli(["check", "-f", file, "--pki", pki, "--json"]);
    assert.equal(c.code, 0, c.out);
    assert.deepEqual(JSON.parse(c.out).findings, []);
  });

  it("ok/exports hold the root only as CA and leaf + intermediate as certificate", async () => {
    const { file, pki, dir } = await applied();
    const out = path.join(dir, "flat");
    const r = await runCli(["export", "-f", file, "--pki", pki, "--format", "flat", "--out", out]);
    assert.equal(r.code, 0, r.err);
    const root = read(path.join(pki, "ca", "ca.pem"));
    assert.deepEqual(readdirSync(path.join(out, "web")).sort(), ["ca.crl", "root.pem", "web-key.pem", "web.pem"]);
    assert.equal(read(path.join(out, "web", "root.pem")), root, "the exported CA file is the root alone");
    assert.equal(read(path.join(out, "web", "web.pem")), read(svc(pki, "web", "cert.pem")), "leaf + intermediate");
    assert.equal(certsIn(path.join(out, "web", "web.pem")).length, 2);
  });

  it("ok/config snippets leave the CRL out with an intermediate (its CRL alone would fail OpenSSL's every-level check); a lone CA's keep it", async () => {
    const { file, pki } = await applied();
    for (const component of ["nginx", "postgres", "etcd"]) {
      const r = await runCli(["config", component, "--service", "web", "-f", file, "--pki", pki]);
      assert.equal(r.code, 0, r.err);
      assert.doesNotMatch(r.out, /crl/i, `${component} with ca.intermediate`);
    }
    const lone = await applied(
      manifestText().replace(/  intermediate:\n    validity: 365d\n    renewBefore: 100d\n/, ""),
    );
    const r = await runCli(["config", "nginx", "--service", "web", "-f", lone.file, "--pki", lone.pki]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /ssl_crl /);
  });

  it("ok/inside its renewal window the intermediate is re-signed (a new key), every leaf re-issued under it, no bundle changed", async () => {
    const { file, pki } = await applied();
    const files = [path.join(pki, "ca", "ca.pem"), path.join(pki, "ca", "intermediate-key.pem")];
    for (const name of ["web", "worker", "db"]) files.push(svc(pki, name, "ca.pem"));
    const before = new Map(files.map((f) => [f, read(f)]));
    const interFile = path.join(pki, "ca", "intermediate.pem");
    const oldInter = new X509Certificate(read(interFile));
    // 300 days on: 65 days left, inside renewBefore 100d.
    const now = new Date(Date.now() + 300 * DAY);
    const result = await apply(loadManifest(file), pki, { now, hooks: false });
    assert.equal(result.plan.intermediate?.action, "renew");
    assert.match(
      result.plan.intermediate!.reason,
      /^due for renewal: expires \d{4}-\d\d-\d\d, in 6[45] days \(renewBefore 100d\)$/,
    );
    assert.equal(result.issued, 3, "every leaf re-issued");
    assert.deepEqual(
      result.plan.bundles.map((b) => `${b.service} ${b.action}`),
      ["web keep", "worker keep", "db keep"],
      "no bundle is rewritten",
    );
    const newInter = new X509Certificate(read(interFile));
    assert.notEqual(newInter.serialNumber, oldInter.serialNumber);
    assert.notEqual(
      read(path.join(pki, "ca", "intermediate-key.pem")),
      before.get(path.join(pki, "ca", "intermediate-key.pem")),
    );
    assert.ok(newInter.validTo !== oldInter.validTo);
    for (const name of ["web", "worker", "db"]) {
      assert.equal(read(svc(pki, name, "ca.pem")), before.get(svc(pki, name, "ca.pem")), `${name}'s bundle unchanged`);
      assert.equal(certsIn(svc(pki, name, "cert.pem"))[1], read(interFile));
      // A peer that never reloaded its bundle (the old one) accepts the new leaf.
      const v = opensslVerify({
        caFile: path.join(pki, "ca", "ca.pem"),
        certFile: svc(pki, name, "cert.pem"),
        untrusted: svc(pki, name, "cert.pem"),
        attime: now,
      });
      assert.ok(v.ok, v.output);
    }
    assert.equal(read(path.join(pki, "ca", "ca.pem")), before.get(path.join(pki, "ca", "ca.pem")));
    // The next run at the same time keeps everything.
    const again = await apply(loadManifest(file), pki, { now, hooks: false });
    assert.equal(again.plan.intermediate?.action, "keep");
    assert.equal(again.issued, 0);
  });

  it("ok/a leaf's validity near the intermediate's end renews it early: no service certificate may outlive it", async () => {
    const { file, pki } = await applied(manifestText().replace("renewBefore: 100d", "renewBefore: 10d"));
    // 300 days on: 65 days left, outside renewBefore 10d, but a 90d leaf would outlive it.
    const plan = await runCli(["plan", "-f", file, "--pki", pki, "--json"]);
    assert.equal(JSON.parse(plan.out).intermediate.action, "keep");
    const r = await apply(loadManifest(file), pki, { now: new Date(Date.now() + 300 * DAY), hooks: false });
    assert.equal(r.plan.intermediate?.action, "renew");
    assert.match(r.plan.intermediate!.reason, /a 90d service certificate issued now would outlive it/);
  });

  it("fail/an existing lone CA (pathlen 0) cannot sign an intermediate: exit 2, naming the fix, nothing written", async () => {
    const lone = manifestText().replace(/ {2}intermediate:\n {4}validity: 365d\n {4}renewBefore: 100d\n/, "");
    const { file, pki } = await applied(lone);
    const before = inspectPki(pki);
    writeFileSync(file, manifestText());
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 2, r.err);
    assert.match(
      r.err,
      /ca\.intermediate: the CA CN=Demo Root, O=Demo has pathLenConstraint 0: it may sign services but no intermediate CA/,
    );
    assert.match(r.err, /move .*\/ca away/);
    assertUntouched(before, inspectPki(pki));
  });

  for (const [name, edit, message] of [
    [
      "a service validity not shorter than the intermediate's",
      (t: string) => t.replace("validity: 365d", "validity: 90d").replace("renewBefore: 100d", "renewBefore: 20d"),
      /a validity of 90d \(service web, worker, db\) is not shorter than the intermediate's 90d/,
    ],
    [
      "renewBefore not shorter than the intermediate's validity",
      (t: string) => t.replace("renewBefore: 100d", "renewBefore: 365d"),
      /ca\.intermediate\.renewBefore \(1y\) must be shorter than its validity \(1y\)/,
    ],
    [
      "an intermediate that outlives the root",
      (t: string) => t.replace("validity: 10y", "validity: 200d"),
      /the intermediate's validity \(1y\) is longer than the root's \(200d\)/,
    ],
  ] as const) {
    it(`fail/manifest: ${name}`, async () => {
      const dir = tempDir("mtlskit-inter-");
      const file = writeManifest(dir, edit(manifestText()));
      const r = await runCli(["apply", "-f", file, "--pki", path.join(dir, "pki")]);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, message);
      assert.match(r.err, /nothing was written/);
      assert.deepEqual(readdirSync(dir), ["mtlskit.yaml"]);
    });
  }

  it("fail/check: a leaf's file without the intermediate is chain-incomplete, and apply restores it", async () => {
    const { file, pki } = await applied();
    const cert = svc(pki, "web", "cert.pem");
    writeFileSync(cert, certsIn(cert)[0]!);
    const c = await runCli(["check", "-f", file, "--pki", pki, "--json"]);
    assert.equal(c.code, 1);
    const codes = JSON.parse(c.out).findings.map((f: { code: string; label: string }) => `${f.code} @ ${f.label}`);
    assert.ok(codes.includes("chain-incomplete @ web"), codes.join("\n"));
    assert.equal(
      codes.filter((x: string) => x.startsWith("untrusted")).length,
      0,
      "one finding, not a generic untrusted",
    );
    const a = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.match(a.out, /web\s+reissued\s+certificate chain in the file changed/);
    assert.equal(certsIn(cert).length, 2);
    assert.equal((await runCli(["check", "-f", file, "--pki", pki])).code, 0);
  });

  it("fail/check: the intermediate inside its renewal window is intermediate-due, before it bites", async () => {
    const { file, pki } = await applied();
    const at = new Date(Date.now() + 300 * DAY).toISOString().slice(0, 10);
    const c = await runCli(["check", "-f", file, "--pki", pki, "--json", "--at", at]);
    const due = JSON.parse(c.out).findings.filter((f: { code: string }) => f.code === "intermediate-due");
    assert.equal(due.length, 1, c.out);
    assert.match(
      due[0].message,
      /the intermediate CA .* in .*ca\/intermediate\.pem expires on .*: inside its renewal window \(ca\.intermediate\.renewBefore 100 days\)/,
    );
    assert.match(due[0].fix, /--ca-key FILE when the root's key is offline/);
    assert.equal(JSON.parse(c.out).findings.filter((f: { code: string }) => f.code === "ca-expiring").length, 0);
    const early = await runCli(["check", "-f", file, "--pki", pki, "--json"]);
    assert.equal(JSON.parse(early.out).findings.length, 0, "not before its window");
  });

  it("fail/check and plan: the intermediate's key readable by others (key-mode) or missing (intermediate-due); apply signs a new one", async () => {
    const { file, pki } = await applied();
    const key = path.join(pki, "ca", "intermediate-key.pem");
    chmodSync(key, 0o644);
    const c = await runCli(["check", "-f", file, "--pki", pki, "--json"]);
    const f = JSON.parse(c.out).findings as { code: string; message: string }[];
    assert.deepEqual(
      f.map((x) => x.code),
      ["key-mode"],
    );
    assert.match(
      f[0]!.message,
      /intermediate-key\.pem has mode 0644: the intermediate CA's key is readable by every user/,
    );
    const plan = await runCli(["plan", "-f", file, "--pki", pki]);
    assert.match(
      plan.out,
      /CA intermediate\s+reissue\s+its key \S+intermediate-key\.pem has mode 0644, readable by others/,
    );
    rmSync(key);
    const m = await runCli(["check", "-f", file, "--pki", pki, "--json"]);
    const g = JSON.parse(m.out).findings as { code: string; message: string }[];
    assert.deepEqual(
      g.map((x) => x.code),
      ["intermediate-due"],
    );
    assert.match(g[0]!.message, /cannot sign: \S+intermediate-key\.pem does not exist/);
    const a = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(a.code, 0, a.err);
    assert.match(a.out, /CA intermediate\s+reissued\s+its key \S+ is missing/);
    assert.equal(statSync(key).mode & 0o777, 0o600);
    assert.equal((await runCli(["check", "-f", file, "--pki", pki])).code, 0);
  });

  // Root key, root certificate, intermediate key, intermediate certificate, then the first leaf:
  // a SIGKILL right after each rename (and inside the intermediate's key write) must converge.
  for (const at of ["renamed:1", "renamed:2", "renamed:3", "written:4", "renamed:4", "renamed:5"]) {
    it(`ok/kill -9 at ${at} (apply's first writes: the root, then the intermediate): re-running converges and check finds nothing`, async () => {
      const dir = tempDir("mtlskit-inter-crash-");
      const file = writeManifest(dir, manifestText());
      const pki = path.join(dir, "pki");
      const killed = spawnSync(
        process.execPath,
        [
          "--import",
          "tsx",
          "-e",
          'process.argv.splice(1, 0, "mtlskit"); import("./src/cli/main.ts").then((m) => m.main());',
          "apply",
          "-f",
          file,
          "--pki",
          pki,
        ],
        { cwd: REPO, env: { ...process.env, MTLSKIT_TEST_CRASH_AT: at }, encoding: "utf8", timeout: 120_000 },
      );
      assert.equal(killed.signal, "SIGKILL", `apply was killed at ${at}: ${killed.stderr}`);
      if (at === "renamed:3") {
        // The torn state this kill makes: the intermediate's key without its certificate.
        const p = await runCli(["plan", "-f", file, "--pki", pki]);
        assert.match(p.out, /CA intermediate\s+reissue\s+\S+intermediate\.pem is missing/);
      }
      const r = await runCli(["apply", "-f", file, "--pki", pki]);
      assert.equal(r.code, 0, r.err);
      const c = await runCli(["check", "-f", file, "--pki", pki, "--json"]);
      assert.equal(c.code, 0, c.out);
      assert.deepEqual(JSON.parse(c.out).findings, []);
      const v = opensslVerify({
        caFile: svc(pki, "web", "ca.pem"),
        certFile: svc(pki, "web", "cert.pem"),
        untrusted: svc(pki, "web", "cert.pem"),
        purpose: "sslserver",
      });
      assert.ok(v.ok, v.output);
      const again = await runCli(["apply", "-f", file, "--pki", pki]);
      assert.match(again.out, /Nothing to do/);
    });
  }
});

/** orgRoot makes an organisation's root with openssl (independent of mtlskit): root.pem, root-key.pem (0600). */
const orgRoot = (dir: string, pathlen?: number) => opensslRootCa(dir, pathlen === undefined ? {} : { pathlen });

describe("intermediate: an organisation's root signs it (ca.import)", () => {
  const text = (key: boolean) =>
    manifestText().replace(
      "  subject: { O: Demo, CN: Demo Root }\n  validity: 10y\n",
      `  import: { cert: root.pem${key ? ", key: root-key.pem" : ""} }\n`,
    );

  it("ok/with ca.import.key: the imported root signs the intermediate; bundles hold the imported root", async () => {
    const dir = tempDir("mtlskit-inter-import-");
    orgRoot(dir);
    const file = writeManifest(dir, text(true));
    const pki = path.join(dir, "pki");
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /CA\s+import/);
    assert.equal(read(svc(pki, "web", "ca.pem")), read(path.join(dir, "root.pem")));
    const v = opensslVerify({
      caFile: path.join(dir, "root.pem"),
      certFile: svc(pki, "web", "cert.pem"),
      untrusted: svc(pki, "web", "cert.pem"),
      purpose: "sslserver",
    });
    assert.ok(v.ok, v.output);
    assert.equal((await runCli(["check", "-f", file, "--pki", pki])).code, 0);
  });

  it("ok/without ca.import.key: apply asks for --ca-key to sign the intermediate once, then runs without it", async () => {
    const dir = tempDir("mtlskit-inter-import-");
    orgRoot(dir);
    const file = writeManifest(dir, text(false));
    const pki = path.join(dir, "pki");
    const refused = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(refused.code, 2, refused.err);
    assert.match(
      refused.err,
      /the intermediate CA must be signed by the root: it is missing; the imported CA's key is not named \(ca\.import\.key\)\. Run `mtlskit apply --ca-key FILE`/,
    );
    assert.deepEqual(
      readdirSync(dir).sort(),
      ["mtlskit.yaml", "root-key.pem", "root.cnf", "root.pem"],
      "nothing written",
    );
    const r = await runCli(["apply", "-f", file, "--pki", pki, "--ca-key", path.join(dir, "root-key.pem")]);
    assert.equal(r.code, 0, r.err);
    const again = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(again.code, 0, again.err);
    assert.match(again.out, /Nothing to do/);
    const c = await runCli(["check", "-f", file, "--pki", pki, "--json"]);
    assert.equal(c.code, 0);
    assert.deepEqual(
      JSON.parse(c.out).findings.map((f: { code: string; severity: string }) => `${f.code} ${f.severity}`),
      ["ca-key-offline info"],
    );
  });

  it("fail/manifest: ca.import without key and without an intermediate", async () => {
    const dir = tempDir("mtlskit-inter-import-");
    orgRoot(dir);
    const file = writeManifest(
      dir,
      text(false).replace(/ {2}intermediate:\n {4}validity: 365d\n {4}renewBefore: 100d\n/, ""),
    );
    const r = await runCli(["apply", "-f", file, "--pki", path.join(dir, "pki")]);
    assert.equal(r.code, 2);
    assert.match(r.err, /ca\.import: ca\.import\.key is missing: the imported CA signs every service certificate/);
    assert.match(r.err, /declare ca\.intermediate/);
  });

  it("fail/an imported root with pathlen 0 cannot sign an intermediate: exit 2 naming ca.intermediate", async () => {
    const dir = tempDir("mtlskit-inter-import-");
    orgRoot(dir, 0);
    const file = writeManifest(dir, text(true));
    const r = await runCli(["apply", "-f", file, "--pki", path.join(dir, "pki")]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /ca\.intermediate: the CA CN=Org Root, O=Org has pathLenConstraint 0/);
    assert.match(r.err, /import a CA whose pathLenConstraint allows one intermediate/);
  });
});
