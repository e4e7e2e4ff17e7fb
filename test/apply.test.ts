/**
 * apply end to end: the documented layout and modes, byte-identical re-runs, re-issue only of
 * what changed (with the reason), renewal by time, damaged files, the CA that is never replaced
 * silently, and the lock. Pairs are checked with node:crypto, independently of mtlskit's code.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { loadManifest } from "../src/manifest/index.ts";
import { apply } from "../src/plan/apply.ts";
import { REPO, runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { assertPairsMatch, inspectPki, tempFiles } from "./helpers/pki.ts";

const MANIFEST = `version: 1
cluster: demo
identity: { uri: "spiffe://demo.test/{role}/{name}" }
services:
  api: { usage: server, addresses: [127.0.0.1, api.demo.test] }
  worker: { usage: client, key: rsa-2048 }
  etcd: { usage: dual, split: true, key: ed25519, addresses: [10.0.0.1] }
connections:
  - { from: worker, to: api, address: api.demo.test }
`;

const DAY = 86_400_000;
type PlanJson = { certificates: { id: string; action: string; reason: string }[] };

async function fresh(text = MANIFEST): Promise<{ dir: string; file: string; pki: string }> {
  const dir = tempDir();
  const file = writeManifest(dir, text);
  const pki = path.join(dir, "pki");
  const r = await runCli(["apply", "-f", file, "--pki", pki]);
  assert.equal(r.code, 0, r.err);
  return { dir, file, pki };
}

async function planOf(file: string, pki: string, ...extra: string[]): Promise<PlanJson> {
  const r = await runCli(["plan", "-f", file, "--pki", pki, "--json", ...extra]);
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out) as PlanJson;
}

const actions = (p: PlanJson) => Object.fromEntries(p.certificates.map((c) => [c.id, c.action]));
const reasonOf = (p: PlanJson, id: string) => p.certificates.find((c) => c.id === id)!.reason;

describe("apply: layout", () => {
  for (const umask of [0o000, 0o077]) {
    it(`ok/documented files and exact modes (umask 0${umask.toString(8)})`, async () => {
      const old = process.umask(umask);
      let pki: string;
      try {
        ({ pki } = await fresh());
      } finally {
        process.umask(old);
      }
      const files = inspectPki(pki);
      const want: Record<string, number> = {
        "": 0o755, ca: 0o700, "ca/ca.pem": 0o644, "ca/ca-key.pem": 0o600, services: 0o755,
        "services/api": 0o700, "services/api/cert.pem": 0o644, "services/api/key.pem": 0o600, "services/api/ca.pem": 0o644,
        "services/worker": 0o700, "services/worker/cert.pem": 0o644, "services/worker/key.pem": 0o600, "services/worker/ca.pem": 0o644,
        "services/etcd": 0o700, "services/etcd/cert.pem": 0o644, "services/etcd/key.pem": 0o600, "services/etcd/ca.pem": 0o644,
        "services/etcd/client.pem": 0o644, "services/etcd/client-key.pem": 0o600,
      };
      assert.deepEqual(Object.fromEntries([...files].map(([p, f]) => [p, f.mode])), want);
      const caKey = files.get("ca/ca-key.pem")!.sha256;
      for (const [p, f] of files) {
        if (!p.startsWith("services/") || f.dir) continue;
        assert.notEqual(f.sha256, caKey, `${p} is a copy of the CA key`);
        const isKey = /key\.pem$/.test(p);
        assert.equal(readFileSync(path.join(pki, p), "utf8").includes("PRIVATE KEY"), isKey, p);
        if (p.endsWith("/ca.pem")) assert.equal(f.sha256, files.get("ca/ca.pem")!.sha256);
      }
      assert.equal(assertPairsMatch(pki), 4);
    });
  }
});

describe("apply: idempotency and re-issue", () => {
  it("ok/an unchanged manifest changes no byte and no mtime; every certificate is kept", async () => {
    const { file, pki } = await fresh();
    const before = inspectPki(pki);
    const r = await runCli(["apply", "-f", file, "--pki", pki, "--json"]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(Object.values(actions(JSON.parse(r.out) as PlanJson)), ["keep", "keep", "keep", "keep"]);
    const after = inspectPki(pki);
    for (const [p, f] of before) {
      if (f.dir) continue;
      assert.equal(after.get(p)?.sha256, f.sha256, p);
      assert.equal(after.get(p)?.mtimeMs, f.mtimeMs, p);
    }
  });

  it("ok/changing one service's addresses re-issues only it, with a new key, and plan names the SAN", async () => {
    const { file, pki } = await fresh();
    const before = inspectPki(pki);
    writeFileSync(file, MANIFEST.replace("[127.0.0.1, api.demo.test]", "[127.0.0.1, api.demo.test, 10.9.9.9]"));
    const plan = await planOf(file, pki);
    assert.deepEqual(actions(plan), { api: "reissue", worker: "keep", etcd: "keep", "etcd/client": "keep" });
    assert.match(reasonOf(plan, "api"), /spec changed: SANs \+IP:10\.9\.9\.9/);
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    const after = inspectPki(pki);
    for (const [p, f] of before) {
      if (f.dir) continue;
      const changed = p === "services/api/cert.pem" || p === "services/api/key.pem";
      assert.equal(after.get(p)!.sha256 !== f.sha256, changed, p);
    }
    assertPairsMatch(pki);
  });

  it("ok/key type and validity changes are named", async () => {
    const { file, pki } = await fresh();
    writeFileSync(file, MANIFEST.replace("worker: { usage: client, key: rsa-2048 }", "worker: { usage: client, key: ecdsa-p384 }").replace("api: { usage: server,", "api: { usage: server, validity: 30d,"));
    const plan = await planOf(file, pki);
    assert.equal(reasonOf(plan, "worker"), "key type changed: rsa-2048 -> ecdsa-p384");
    assert.equal(reasonOf(plan, "api"), "validity changed: 90d -> 30d");
  });

  it("ok/--reissue rotates one service with a new key; --reissue-all every leaf but not the CA", async () => {
    const { file, pki } = await fresh();
    const b = inspectPki(pki);
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki, "--reissue", "api"])).code, 0);
    const a = inspectPki(pki);
    assert.notEqual(a.get("services/api/key.pem")!.sha256, b.get("services/api/key.pem")!.sha256);
    assert.equal(a.get("services/worker/key.pem")!.sha256, b.get("services/worker/key.pem")!.sha256);
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki, "--reissue-all"])).code, 0);
    const c = inspectPki(pki);
    for (const p of ["services/api/key.pem", "services/worker/key.pem", "services/etcd/key.pem", "services/etcd/client-key.pem"]) assert.notEqual(c.get(p)!.sha256, a.get(p)!.sha256, p);
    assert.equal(c.get("ca/ca.pem")!.sha256, b.get("ca/ca.pem")!.sha256);
    assert.equal(c.get("ca/ca-key.pem")!.sha256, b.get("ca/ca-key.pem")!.sha256);
    assertPairsMatch(pki);
  });

  it("fail/--reissue of an unknown service, or with --reissue-all, exits 2 and writes nothing", async () => {
    const dir = tempDir();
    const file = writeManifest(dir, MANIFEST);
    const pki = path.join(dir, "pki");
    const r = await runCli(["apply", "-f", file, "--pki", pki, "--reissue", "nope"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--reissue names unknown service "nope"; services are: api, worker, etcd/);
    const both = await runCli(["apply", "-f", file, "--pki", pki, "--reissue", "api", "--reissue-all"]);
    assert.equal(both.code, 2);
    assert.match(both.err, /--reissue is incompatible with --reissue-all/);
    assert.equal(existsSync(pki), false);
  });

  it("ok/renewal follows time: kept, then due inside renewBefore, then expired", async () => {
    const dir = tempDir();
    const file = writeManifest(dir, MANIFEST);
    const pki = path.join(dir, "pki");
    const t0 = new Date("2027-03-01T00:00:00Z");
    const loaded = loadManifest(file);
    await apply(loaded, pki, { now: t0 });
    const at = async (days: number) => (await apply(loaded, pki, { now: new Date(t0.getTime() + days * DAY) })).plan.certs.find((c) => c.id === "api")!;
    assert.equal((await at(1)).action, "keep");
    const due = await at(90 - 30 + 1);
    assert.equal(due.action, "reissue");
    assert.match(due.reason, /^due for renewal: expires 2027-05-30 \(renewBefore 30d\)$/);
    const t1 = 61; // the renewal above re-issued at day 61: expired 91 days later
    const expired = (await apply(loaded, pki, { now: new Date(t0.getTime() + (t1 + 92) * DAY) })).plan.certs.find((c) => c.id === "api")!;
    assert.equal(expired.action, "reissue");
    assert.match(expired.reason, /^expired /);
  });
});

describe("apply: damaged files", () => {
  it("ok/a key readable by others, a truncated certificate and a foreign key are each re-issued with the reason", async () => {
    const { file, pki } = await fresh();
    chmodSync(path.join(pki, "services/api/key.pem"), 0o644);
    const cert = path.join(pki, "services/worker/cert.pem");
    writeFileSync(cert, readFileSync(cert, "utf8").slice(0, 200));
    writeFileSync(path.join(pki, "services/etcd/key.pem"), readFileSync(path.join(pki, "services/etcd/client-key.pem")), { mode: 0o600 });
    const plan = await planOf(file, pki);
    assert.match(reasonOf(plan, "api"), /key file has mode 0644, readable by others/);
    assert.match(reasonOf(plan, "worker"), /^certificate file cannot be parsed|^certificate file holds no certificate/);
    assert.equal(reasonOf(plan, "etcd"), "key does not match certificate");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    assert.equal(inspectPki(pki).get("services/api/key.pem")!.mode, 0o600);
    assertPairsMatch(pki);
  });

  it("ok/a deleted CA is created anew and every leaf re-issued", async () => {
    const { file, pki } = await fresh();
    rmSync(path.join(pki, "ca"), { recursive: true });
    const plan = await planOf(file, pki);
    assert.deepEqual(new Set(plan.certificates.map((c) => c.reason)), new Set(["CA is new"]));
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    assertPairsMatch(pki);
  });

  it("fail/a CA certificate without its key stops apply (exit 3) naming the key and the fix", async () => {
    const { file, pki } = await fresh();
    rmSync(path.join(pki, "ca", "ca-key.pem"));
    const before = inspectPki(pki);
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 3);
    assert.match(r.err, /ca-key\.pem is missing[\s\S]*restore .*ca-key\.pem from backup/);
    assert.deepEqual([...inspectPki(pki).keys()].sort(), [...before.keys()].sort());
  });

  it("ok/a manifest whose CA section no longer matches the CA warns and keeps the CA", async () => {
    const { file, pki } = await fresh();
    const ca = inspectPki(pki).get("ca/ca.pem")!.sha256;
    writeFileSync(file, MANIFEST.replace("cluster: demo\n", "cluster: demo\nca: { subject: { CN: Another CA } }\n"));
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /warning: the existing CA \(CN=demo CA.*differs from the manifest's ca section; the CA is never replaced automatically/);
    assert.equal(inspectPki(pki).get("ca/ca.pem")!.sha256, ca);
  });

  it("fail/a leaf that would outlive the existing CA exits 2 naming the field", async () => {
    const dir = tempDir();
    const file = writeManifest(dir, MANIFEST.replace("cluster: demo\n", "cluster: demo\nca: { validity: 1y }\n"));
    const pki = path.join(dir, "pki");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    writeFileSync(file, MANIFEST.replace("cluster: demo\n", "cluster: demo\nca: { validity: 10y }\n").replace("api: { usage: server,", "api: { usage: server, validity: 400d,"));
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /mtlskit\.yaml:6 services\.api\.validity: a 400d certificate issued now would outlive the CA, which expires/);
  });
});

describe("apply: lock", () => {
  const lockFor = (pid: number) => JSON.stringify({ pid, host: hostname(), since: new Date().toISOString() });

  it("fail/a lock held by a live apply: waits --lock-wait, then exits 3 naming the holder; nothing written", async () => {
    const dir = tempDir();
    const file = writeManifest(dir, MANIFEST);
    const pki = path.join(dir, "pki");
    const holder = spawn("sleep", ["30"]);
    try {
      (await import("node:fs")).mkdirSync(pki);
      writeFileSync(path.join(pki, ".lock"), lockFor(holder.pid!));
      const t = performance.now();
      const r = await runCli(["apply", "-f", file, "--pki", pki, "--lock-wait", "0.3"]);
      const took = performance.now() - t;
      assert.equal(r.code, 3);
      assert.match(r.err, new RegExp(`pid ${holder.pid} on .* holds .*\\.lock; waited 0s\\. Run apply again when it finishes`));
      assert.ok(took >= 300 && took < 3000, `waited ${took} ms`);
      assert.deepEqual([...inspectPki(pki).keys()].sort(), ["", ".lock"]);
    } finally {
      holder.kill("SIGKILL");
    }
  });

  it("ok/a lock left by a dead process is taken over", async () => {
    const dir = tempDir();
    const file = writeManifest(dir, MANIFEST);
    const pki = path.join(dir, "pki");
    const dead = spawnSync("true").pid!;
    (await import("node:fs")).mkdirSync(pki);
    writeFileSync(path.join(pki, ".lock"), lockFor(dead));
    const r = await runCli(["apply", "-f", file, "--pki", pki, "--lock-wait", "0.2"]);
    assert.equal(r.code, 0, r.err);
    assert.equal(existsSync(path.join(pki, ".lock")), false);
    assertPairsMatch(pki);
  });

  it("ok/two applies started together on a fresh directory: both succeed, one CA, consistent pairs", async () => {
    const dir = tempDir();
    const file = writeManifest(dir, MANIFEST);
    const pki = path.join(dir, "pki");
    const run = () =>
      new Promise<number>((resolve) => {
        const c = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "test/helpers/mtlskit-bin.ts"), "apply", "-f", file, "--pki", pki, "--lock-wait", "30"], { cwd: REPO, stdio: "ignore" });
        c.on("exit", (code) => resolve(code ?? -1));
      });
    const codes = await Promise.all([run(), run()]);
    assert.deepEqual(codes, [0, 0]);
    assertPairsMatch(pki);
    const plan = await planOf(file, pki);
    assert.ok(plan.certificates.every((c) => c.action === "keep"));
    assert.deepEqual(tempFiles(pki), []);
  });

  it("ok/80 services take the worker-thread path and every pair matches", async () => {
    const lines = ["version: 1", "cluster: many", "services:"];
    for (let i = 0; i < 80; i++) lines.push(`  s${i}: { usage: ${["server", "client", "dual"][i % 3]}${i % 3 === 1 ? "" : `, addresses: [10.1.0.${i + 1}]`} }`);
    const { pki } = await fresh(lines.join("\n") + "\n");
    assert.equal(assertPairsMatch(pki), 80);
  });
});
