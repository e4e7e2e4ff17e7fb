/**
 * Revocation end to end through the CLI: `mtlskit revoke` records, `plan` says why, `apply`
 * re-issues the revoked service and signs ca/crl.pem (judged by openssl), the CRL number only
 * grows (also across a crash between recording the number and writing the CRL), nextUpdate
 * comes from the manifest and the CRL is re-signed once half of it has passed.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { loadManifest } from "../src/manifest/index.ts";
import { readCertFields } from "../src/pki/cert.ts";
import { decodeCrl, serialHex } from "../src/pki/crl.ts";
import { parseCertificatesPem, parsePem } from "../src/pki/pem.ts";
import { apply } from "../src/plan/apply.ts";
import { runCli, tempDir, writeManifest, type CliResult } from "./helpers/cli.ts";
import { inspectPki } from "./helpers/pki.ts";
import { buildPackage, runBuilt } from "./helpers/built.ts";

const MANIFEST = `version: 1
cluster: rev
services:
  web: { usage: server, addresses: [127.0.0.1] }
  app: { usage: client }
  etcd: { usage: dual, split: true }
`;
const DAY = 86_400_000;

async function applied(text = MANIFEST) {
  const dir = tempDir("mtlskit-revoke-");
  const file = writeManifest(dir, text);
  const pki = path.join(dir, "pki");
  const r = await runCli(["apply", "-f", file, "--pki", pki]);
  assert.equal(r.code, 0, r.err);
  return { dir, file, pki };
}
const serialOf = (pki: string, rel: string) =>
  serialHex(readCertFields(parseCertificatesPem(readFileSync(path.join(pki, rel), "utf8"))[0]!).serial);
const crlOf = (pki: string) => decodeCrl(parsePem(readFileSync(path.join(pki, "ca/crl.pem"), "utf8"))[0]!.der);
const opensslCrl = (pki: string) =>
  spawnSync(
    "openssl",
    ["crl", "-in", path.join(pki, "ca/crl.pem"), "-noout", "-verify", "-CAfile", path.join(pki, "ca/ca.pem"), "-text"],
    { encoding: "utf8", timeout: 60_000 },
  );

describe("revoke: record, plan, apply, CRL", { timeout: 180_000 }, () => {
  it("ok/revoke web --reason keyCompromise: plan says why, apply re-issues web and signs a CRL listing the old serial", async () => {
    const { file, pki } = await applied();
    const first = crlOf(pki);
    assert.equal(first.entries.length, 0);
    assert.equal(first.number, 1n);
    const old = serialOf(pki, "services/web/cert.pem");
    const appSerial = serialOf(pki, "services/app/cert.pem");
    const r = await runCli(["revoke", "web", "--reason", "keyCompromise", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`revoked web \\(serial ${old}\\): keyCompromise`));
    assert.match(r.out, /Run `mtlskit apply .*` to publish the CRL and re-issue the revoked service/);
    const plan = await runCli(["plan", "-f", file, "--pki", pki]);
    const today = new Date().toISOString().slice(0, 10);
    assert.match(plan.out, new RegExp(`web\\s+reissue\\s+revoked \\(keyCompromise\\) on ${today}`));
    assert.match(plan.out, new RegExp(`CRL\\s+reissue\\s+revocation list changed: \\+${old} \\(web, keyCompromise\\)`));
    assert.match(plan.out, /app\s+keep/);
    const a = await runCli(["apply", "-f", file, "--pki", pki, "--json"]);
    assert.equal(a.code, 0, a.err);
    assert.notEqual(serialOf(pki, "services/web/cert.pem"), old);
    assert.equal(serialOf(pki, "services/app/cert.pem"), appSerial);
    const crl = crlOf(pki);
    assert.deepEqual(
      crl.entries.map((e) => [e.serial, e.reason]),
      [[old, "keyCompromise"]],
    );
    assert.equal(crl.number, 2n);
    const o = opensslCrl(pki);
    assert.ok(o.status === 0 && /verify OK/.test(`${o.stdout}${o.stderr}`), o.stderr);
    assert.match(o.stdout, new RegExp(`Serial Number: ${old.toUpperCase()}[\\s\\S]*Key Compromise`));
    // Every service reloads: a server reads its CRL only when it (re)loads.
    assert.deepEqual(JSON.parse(readFileSync(path.join(pki, "last-apply.json"), "utf8")).changed, [
      "app",
      "etcd",
      "web",
    ]);
    const again = await runCli(["plan", "-f", file, "--pki", pki]);
    assert.match(again.out, /No changes/);
    const before = inspectPki(pki);
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    assert.equal(inspectPki(pki).get("ca/crl.pem")!.sha256, before.get("ca/crl.pem")!.sha256);
  });

  it("ok/a split service revoked by name lists both certificates; by serial, a service's is named; revoking again changes nothing", async () => {
    const { file, pki } = await applied();
    const main = serialOf(pki, "services/etcd/cert.pem");
    const client = serialOf(pki, "services/etcd/client.pem");
    const r = await runCli(["revoke", "etcd", "-f", file, "--pki", pki, "--json"]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(
      JSON.parse(r.out).added.map((x: { serial: string; slot: string; reason: string }) => [
        x.slot,
        x.serial,
        x.reason,
      ]),
      [
        ["etcd", main, "unspecified"],
        ["etcd/client", client, "unspecified"],
      ],
    );
    const app = serialOf(pki, "services/app/cert.pem");
    const colons = app.toUpperCase().match(/../g)!.join(":");
    const s = await runCli(["revoke", colons, "--reason", "superseded", "-f", file, "--pki", pki, "--json"]);
    assert.equal(s.code, 0, s.err);
    assert.equal(JSON.parse(s.out).added[0].service, "app");
    const again = await runCli(["revoke", "app", "-f", file, "--pki", pki]);
    assert.equal(again.code, 0);
    assert.match(again.out, /already revoked app .*superseded[\s\S]*Nothing changed/);
    const stranger = await runCli(["revoke", "0x1234", "-f", file, "--pki", pki, "--json"]);
    assert.deepEqual(JSON.parse(stranger.out).added[0].serial, "1234");
    const a = await runCli(["apply", "-f", file, "--pki", pki, "--json"]);
    assert.equal(a.code, 0, a.err);
    assert.deepEqual(
      JSON.parse(a.out)
        .certificates.filter((c: { action: string }) => c.action === "reissue")
        .map((c: { id: string; reason: string }) => `${c.id}: ${c.reason.replace(/ on .*/, "")}`),
      ["app: revoked (superseded)", "etcd: revoked (unspecified)", "etcd/client: revoked (unspecified)"],
    );
    assert.deepEqual(
      crlOf(pki)
        .entries.map((e) => e.serial)
        .sort(),
      [main, client, app, "1234"].sort(),
    );
  });

  it("ok/the CRL number is recorded before the CRL: after a crash between the two, the next number is higher, never reused", async () => {
    const { file, pki } = await applied();
    assert.equal(readFileSync(path.join(pki, "ca/crl-number"), "utf8"), "1\n");
    // A crash after ca/crl-number said 5 but before crl.pem (still number 1) was replaced.
    writeFileSync(path.join(pki, "ca/crl-number"), "5\n");
    assert.equal((await runCli(["revoke", "web", "-f", file, "--pki", pki])).code, 0);
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    assert.equal(crlOf(pki).number, 6n);
    // The CRL removed and the number record lost: the next CRL still follows neither backwards.
    rmSync(path.join(pki, "ca/crl.pem"));
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    assert.equal(crlOf(pki).number, 7n);
    rmSync(path.join(pki, "ca/crl-number"));
    assert.equal((await runCli(["revoke", "app", "-f", file, "--pki", pki])).code, 0);
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    assert.equal(crlOf(pki).number, 8n);
  });

  it("ok/nextUpdate from ca.crl.nextUpdate; kept until half of it has passed, then re-signed with a higher number", async () => {
    const dir = tempDir("mtlskit-revoke-");
    const file = writeManifest(dir, `${MANIFEST}ca: { crl: { nextUpdate: 4d } }\n`);
    const pki = path.join(dir, "pki");
    const loaded = loadManifest(file);
    const T = new Date("2027-03-01T00:00:00Z");
    await apply(loaded, pki, { now: T, hooks: false });
    const crl = crlOf(pki);
    assert.equal(crl.thisUpdate.getTime(), T.getTime() - 300_000);
    assert.equal(crl.nextUpdate!.getTime(), T.getTime() + 4 * DAY);
    const at = async (days: number) => (await apply(loaded, pki, { now: new Date(T.getTime() + days * DAY) })).plan.crl;
    const kept = await at(1.9);
    assert.equal(kept.action, "keep", kept.reason);
    const due = await at(2.1);
    assert.equal(due.action, "write");
    assert.match(due.reason, /due for refresh: next update 2027-03-05T00:00:00.000Z \(half of 4d has passed\)/);
    assert.equal(crlOf(pki).number, 2n);
    assert.equal(crlOf(pki).nextUpdate!.getTime(), T.getTime() + 6.1 * DAY);
    // Default: 7d.
    writeManifest(dir, MANIFEST);
    const changed = (await apply(loadManifest(file), pki, { now: new Date(T.getTime() + 2.2 * DAY) })).plan.crl;
    assert.equal(changed.reason, "nextUpdate changed: 4d -> 1w");
    assert.equal(crlOf(pki).nextUpdate!.getTime() - crlOf(pki).thisUpdate.getTime(), 7 * DAY + 300_000);
  });

  it("fail/bad input: an unknown reason, a name that is neither service nor serial, no argument: exit 2, nothing written", async () => {
    const { file, pki } = await applied();
    const before = inspectPki(pki);
    const cases: [string[], RegExp][] = [
      [["web", "--reason", "hold"], /--reason must be one of unspecified, keyCompromise, .*; got "hold"/],
      [["nosuch"], /"nosuch" is neither a service of .* \(web, app, etcd\) nor a certificate serial in hex/],
      [[], /name exactly one service or serial to revoke; got none/],
      [["web", "app"], /name exactly one service or serial/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(["revoke", ...args, "-f", file, "--pki", pki]);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.err}`);
      assert.match(r.err, message);
      assert.doesNotMatch(r.err, /at .*\.ts:/);
    }
    const ca = (await runCli(["revoke", serialOf(pki, "ca/ca.pem"), "-f", file, "--pki", pki])).err;
    assert.match(ca, /the CA's own certificate/);
    assert.deepEqual(inspectPki(pki), before);
  });

  it("fail/a damaged ca/revoked.json stops plan and apply (exit 3) rather than un-revoking anything", async () => {
    const { file, pki } = await applied();
    assert.equal((await runCli(["revoke", "web", "-f", file, "--pki", pki])).code, 0);
    writeFileSync(path.join(pki, "ca/revoked.json"), '{"revoked": [{"serial": "zz"}]');
    for (const cmd of ["plan", "apply"]) {
      const r = await runCli([cmd, "-f", file, "--pki", pki]);
      assert.equal(r.code, 3, r.err);
      assert.match(r.err, /revoked\.json is not valid JSON[\s\S]*fix: restore ca\/revoked\.json from a backup/);
    }
  });
});

describe("revoke: outputs carry the CRL", { timeout: 180_000 }, () => {
  it("ok/flat (ca.crl beside the CA file), env (TLS_CRL_FILE) and the kubernetes ConfigMap (ca.crl) hold the CRL, refreshed by the apply after a revoke", async () => {
    const { dir, file, pki } = await applied(
      `${MANIFEST}outputs:\n  - { format: flat, dir: flat }\n  - { format: env, dir: env, certDir: "/etc/tls/{name}" }\n  - { format: kubernetes, dir: k8s }\n`,
    );
    const read = (rel: string) => readFileSync(path.join(dir, rel), "utf8");
    const crlPem = () => read("pki/ca/crl.pem");
    assert.equal(read("flat/web/ca.crl"), crlPem());
    assert.match(read("env/web.env"), /^TLS_CRL_FILE='\/etc\/tls\/web\/ca\.crl'$/m);
    const { load } = await import("js-yaml");
    const configMap = () => (load(read("k8s/rev-ca.yaml")) as { data: Record<string, string> }).data;
    assert.equal(configMap()["ca.crl"], crlPem());
    const before = crlPem();
    assert.equal(
      (await runCli(["revoke", "app", "--reason", "cessationOfOperation", "-f", file, "--pki", pki])).code,
      0,
    );
    const a = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(a.code, 0, a.err);
    assert.match(
      a.out,
      /CRL re-signed \(revocation list changed: \+[0-9a-f]+ \(app, cessationOfOperation\)\): .*crl\.pem, 1 revoked\./,
    );
    assert.notEqual(crlPem(), before);
    assert.equal(read("flat/web/ca.crl"), crlPem());
    assert.equal(read("flat/app/ca.crl"), crlPem());
    assert.equal(configMap()["ca.crl"], crlPem());
  });
});

describe("revoke: check and verify flag revoked certificates", { timeout: 180_000 }, () => {
  it("ok/check: a revoked certificate put back in place (revoked), not crl-expired at a later --at, another CA's CRL (crl-untrusted)", async () => {
    const { file, pki } = await applied();
    const oldCert = readFileSync(path.join(pki, "services/web/cert.pem"));
    const oldKey = readFileSync(path.join(pki, "services/web/key.pem"));
    const clean = await runCli(["check", "-f", file, "--pki", pki, "--json"]);
    assert.equal(clean.code, 0, clean.out);
    assert.equal((await runCli(["revoke", "web", "--reason", "keyCompromise", "-f", file, "--pki", pki])).code, 0);
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    assert.equal((await runCli(["check", "-f", file, "--pki", pki])).code, 0);
    // A backup restored over the re-issued pair: the revoked certificate is deployed again.
    writeFileSync(path.join(pki, "services/web/cert.pem"), oldCert);
    writeFileSync(path.join(pki, "services/web/key.pem"), oldKey, { mode: 0o600 });
    const r = await runCli(["check", "-f", file, "--pki", pki, "--json"]);
    assert.equal(r.code, 1, r.out);
    const codes = (x: CliResult) => JSON.parse(x.out).findings.map((f: { code: string }) => f.code) as string[];
    const revoked = JSON.parse(r.out).findings.find((f: { code: string }) => f.code === "revoked");
    assert.match(revoked.message, /serial [0-9a-f]+ was revoked \(keyCompromise\) on .*still deployed/);
    assert.match(revoked.fix, /--reissue web/);
    const later = await runCli([
      "check",
      "-f",
      file,
      "--pki",
      pki,
      "--json",
      "--at",
      new Date(Date.now() + 8 * DAY).toISOString(),
    ]);
    // check --at asks which certificates will be due; the CRL is judged now (apply re-signs it on every run).
    assert.ok(!codes(later).includes("crl-expired"), later.out);
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    const other = await applied();
    writeFileSync(path.join(pki, "ca/crl.pem"), readFileSync(path.join(other.pki, "ca/crl.pem")));
    const foreign = await runCli(["check", "-f", file, "--pki", pki, "--json"]);
    assert.equal(foreign.code, 1);
    assert.deepEqual(codes(foreign), ["crl-untrusted"]);
  });

  it("ok/verify --crl: the revoked certificate fails (revoked), the re-issued one passes; fail/--crl that is not a CRL: exit 2", async () => {
    const { dir, file, pki } = await applied();
    const old = path.join(dir, "old-web.pem");
    writeFileSync(old, readFileSync(path.join(pki, "services/web/cert.pem")));
    assert.equal((await runCli(["revoke", "web", "--reason", "superseded", "-f", file, "--pki", pki])).code, 0);
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    const ca = path.join(pki, "ca/ca.pem");
    const crl = path.join(pki, "ca/crl.pem");
    const bad = await runCli(["verify", old, "--ca", ca, "--crl", crl]);
    assert.equal(bad.code, 1, bad.out);
    assert.match(bad.out, /error revoked: serial [0-9a-f]+ was revoked \(superseded\) on /);
    assert.equal((await runCli(["verify", old, "--ca", ca])).code, 0);
    const good = await runCli(["verify", path.join(pki, "services/web/cert.pem"), "--ca", ca, "--crl", crl]);
    assert.equal(good.code, 0, good.out);
    const stale = await runCli([
      "verify",
      path.join(pki, "services/web/cert.pem"),
      "--ca",
      ca,
      "--crl",
      crl,
      "--at",
      new Date(Date.now() + 8 * DAY).toISOString(),
    ]);
    assert.match(stale.out, /error crl-expired: /);
    const notCrl = await runCli(["verify", old, "--ca", ca, "--crl", ca]);
    assert.equal(notCrl.code, 2);
    assert.match(notCrl.err, /--crl .* is not a CRL \(it holds no PEM X509 CRL block\)/);
  });
});

describe("revoke: the CRL number across SIGKILL (the built package, MTLSKIT_TEST_CRASH_AT)", {
  timeout: 600_000,
}, () => {
  it("ok/killed at every write of the apply after a revoke: each CRL written carries a number higher than every earlier one; the last apply converges", async () => {
    const bin = buildPackage();
    const { file, pki } = await applied();
    assert.equal((await runCli(["revoke", "web", "-f", file, "--pki", pki])).code, 0);
    const numberOnDisk = () => BigInt(readFileSync(path.join(pki, "ca/crl-number"), "utf8").trim());
    const seen = new Map<bigint, string>([[crlOf(pki).number!, readFileSync(path.join(pki, "ca/crl.pem"), "utf8")]]);
    let finished = false;
    for (let n = 1; n <= 20 && !finished; n++) {
      const r = await runBuilt(bin, ["apply", "-f", file, "--pki", pki], {
        env: { MTLSKIT_TEST_CRASH_AT: `renamed:${n}:main` },
      });
      finished = r.code === 0;
      if (!finished) assert.equal(r.signal, "SIGKILL", r.err);
      const crl = crlOf(pki);
      const pem = readFileSync(path.join(pki, "ca/crl.pem"), "utf8");
      // A number names one CRL only: the same number with other bytes would be a reuse.
      const earlier = seen.get(crl.number!);
      assert.ok(earlier === undefined || earlier === pem, `CRL number ${crl.number} reused after a kill at write ${n}`);
      seen.set(crl.number!, pem);
      assert.ok(numberOnDisk() >= crl.number!, `ca/crl-number ${numberOnDisk()} is behind the CRL's ${crl.number}`);
    }
    assert.ok(finished, "apply never ran to the end");
    assert.equal(crlOf(pki).entries.length, 1);
    assert.ok(crlOf(pki).number! > 1n);
    const again = await runCli(["plan", "-f", file, "--pki", pki]);
    assert.match(again.out, /No changes/);
  });
});
