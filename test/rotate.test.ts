/**
 * `mtlskit ca rotate` (issue 13): the phase table and its lag proof, each step through the CLI
 * (bundles, outputs, hooks, the CA swap, the retired copy), refusals out of order and while
 * reloads are owed (exit 3, nothing written), apply and plan during a rotation, status and
 * metrics, and check naming an unsafe step and a peer one phase behind. Independent of mtlskit's
 * decoder: certificates are compared as node:crypto X509Certificate objects and PEM text.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { decide, lagBreaks, PHASES, type Phase } from "../src/ca/rotation.ts";
import type { RotationRecord } from "../src/state/rotation.ts";
import { runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { inspectPki } from "./helpers/pki.ts";

const CONNECTIONS = [
  { from: "a", to: "b" },
  { from: "b", to: "c" },
  { from: "c", to: "a" },
];

const record = (phase: RotationRecord["phase"], over: Partial<RotationRecord> = {}): RotationRecord => ({
  phase,
  since: { [phase]: "2026-12-07T00:00:00.000Z" },
  oldCa: "0".repeat(64),
  newCa: "1".repeat(64),
  activated: phase === "prepared" ? [] : ["a", "b", "c"],
  activatedAll: phase !== "prepared",
  done: true,
  reloadPending: [],
  ...over,
});

describe("ca/rotation: the phase table", () => {
  for (const phase of Object.keys(PHASES) as Phase[]) {
    it(`ok/${phase}: every connection handshakes with either end one phase behind (${PHASES[phase].previous})`, () => {
      const r = phase === "none" ? undefined : record(phase);
      assert.deepEqual(lagBreaks(phase, r, CONNECTIONS), []);
    });
  }
  it("fail/activate without prepare (a peer holding the bundle from before the rotation) breaks connections", () => {
    const breaks = lagBreaks("active", record("active"), CONNECTIONS, "none");
    assert.ok(breaks.length > 0);
    assert.ok(breaks.every((b) => b.issuer === "new"));
  });
  it("fail/retire before activate (a peer still presenting its old certificate) breaks connections", () => {
    const breaks = lagBreaks("retired", record("retired"), CONNECTIONS, "prepared");
    assert.ok(breaks.some((b) => b.issuer === "old"));
  });
  it("fail/a batch activation seen by a peer that missed prepare breaks only the activated service's connections", () => {
    const r = record("active", { activated: ["a"], activatedAll: false });
    const breaks = lagBreaks("active", r, CONNECTIONS, "none");
    assert.ok(breaks.length > 0 && breaks.every((b) => b.client === "a" || b.server === "a"));
  });
  const table: [string, Parameters<typeof decide>, string][] = [
    ["activate before prepare", ["activate", undefined], "refuse:prepare"],
    ["retire before prepare", ["retire", undefined], "refuse:prepare"],
    ["prepare", ["prepare", undefined], "start"],
    ["prepare again", ["prepare", record("prepared")], "resume"],
    ["retire while prepared", ["retire", record("prepared")], "refuse:activate"],
    ["retire --force while prepared", ["retire", record("prepared"), { force: true }], "start"],
    ["activate after an interrupted prepare", ["activate", record("prepared", { done: false })], "refuse:prepare"],
    [
      "activate while prepare's reloads are owed",
      ["activate", record("prepared", { reloadPending: ["b"] })],
      "refuse:prepare",
    ],
    [
      "activate --force while reloads are owed",
      ["activate", record("prepared", { reloadPending: ["b"] }), { force: true }],
      "start",
    ],
    ["activate", ["activate", record("prepared")], "start"],
    ["activate interrupted", ["activate", record("active", { done: false })], "resume"],
    ["activate when all are", ["activate", record("active")], "finished"],
    ["prepare while active", ["prepare", record("active")], "refuse:retire"],
    [
      "retire with a batch left",
      ["retire", record("active", { activated: ["a"], activatedAll: false })],
      "refuse:activate",
    ],
    ["retire", ["retire", record("active")], "start"],
    ["retire interrupted", ["retire", record("retiring")], "resume"],
    ["activate while retiring", ["activate", record("retiring")], "refuse:retire"],
    ["retire again", ["retire", record("retired")], "finished"],
    ["retire again while a reload is owed", ["retire", record("retired", { reloadPending: ["c"] })], "resume"],
    ["activate again while a reload is owed", ["activate", record("active", { reloadPending: ["c"] })], "resume"],
    ["prepare after retire", ["prepare", record("retired")], "start"],
  ];
  for (const [what, args, want] of table) {
    it(`${want.startsWith("refuse") ? "fail" : "ok"}/decide: ${what} -> ${want}`, () => {
      const v = decide(...args);
      assert.equal(v.kind === "refuse" ? `refuse:${v.first}` : v.kind, want);
    });
  }
});

const MANIFEST = (dir: string, extra = "") => `version: 1
cluster: rot
identity: { uri: "spiffe://rot.test/{name}" }
services:
  a: { usage: dual, addresses: [127.0.0.1, a.rot.test], reload: 'echo a >> "${dir}/hooks.log"' }
  b: { usage: dual, addresses: [b.rot.test], reload: 'echo b >> "${dir}/hooks.log"' }
  c: { usage: client, reload: 'test ! -e "${dir}/fail-c" && echo c >> "${dir}/hooks.log"' }
connections:
  - { from: a, to: b, address: b.rot.test }
  - { from: c, to: a, address: 127.0.0.1 }
  - { from: c, to: b, address: b.rot.test }
${extra}`;

const OUTPUTS = `outputs:
  - { format: flat, dir: out/flat }
  - { format: kubernetes, dir: out/k8s }
  - { format: env, dir: out/env }
`;

/** certsIn reads every certificate of a PEM file as node:crypto objects (fingerprints for comparison). */
const certsIn = (file: string): string[] =>
  (readFileSync(file, "utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n/g) ?? []).map(
    (p) => new X509Certificate(p).fingerprint256,
  );
const fp = (file: string) => certsIn(file)[0]!;

async function setup(extra = "") {
  const dir = tempDir("mtlskit-rotate-");
  const file = writeManifest(dir, MANIFEST(dir, extra));
  const pki = path.join(dir, "pki");
  const cli = (...args: string[]) => runCli([...args, "-f", file, "--pki", pki]);
  const applied = await cli("apply");
  assert.equal(applied.code, 0, applied.err);
  const hooks = () => {
    const log = path.join(dir, "hooks.log");
    const lines = existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : [];
    rmSync(log, { force: true });
    return lines.sort();
  };
  hooks();
  return { dir, file, pki, cli, hooks };
}

const rotation = (pki: string) =>
  JSON.parse(readFileSync(path.join(pki, "ca", "rotation.json"), "utf8")) as RotationRecord;
const issuerOf = (cert: string) => new X509Certificate(readFileSync(cert));

describe("mtlskit ca rotate with the old CA's key offline", () => {
  it("ok/prepare, activate and retire run without the old key (the next CA has its own); the retired CA keeps no key", async () => {
    const { dir, pki, cli } = await setup();
    const off = await runCli(["ca", "offline", "--to", path.join(dir, "old-ca-key.pem"), "--pki", pki]);
    assert.equal(off.code, 0, off.err);
    for (const step of ["prepare", "activate", "retire"]) {
      const r = await cli("ca", "rotate", step);
      assert.equal(r.code, 0, `${step}: ${r.err}`);
    }
    assert.ok(existsSync(path.join(pki, "ca", "ca-key.pem")), "the new CA's key is in DIR/ca");
    const retired = readdirSync(path.join(pki, "ca", "retired"));
    assert.equal(retired.length, 1);
    assert.deepEqual(readdirSync(path.join(pki, "ca", "retired", retired[0]!)), ["ca.pem"]);
    const check = await cli("check");
    assert.equal(check.code, 0, check.out + check.err);
  });
});

describe("mtlskit ca rotate", () => {
  it("ok/prepare, activate, retire: bundles and every output hold old + new, leaves move to the new CA, then the old CA leaves; hooks run", async () => {
    const { dir, pki, cli, hooks } = await setup(OUTPUTS);
    const old = fp(path.join(pki, "ca", "ca.pem"));
    const prepared = await cli("ca", "rotate", "prepare");
    assert.equal(prepared.code, 0, prepared.err);
    assert.match(prepared.out, /Phase prepared/);
    const next = fp(path.join(pki, "ca", "next", "ca.pem"));
    assert.notEqual(next, old);
    assert.equal(statSync(path.join(pki, "ca", "next", "ca-key.pem")).mode & 0o777, 0o600);
    const both = [old, next];
    for (const s of ["a", "b", "c"]) assert.deepEqual(certsIn(path.join(pki, "services", s, "ca.pem")), both, s);
    assert.deepEqual(certsIn(path.join(dir, "out/flat/a/root.pem")).sort(), [...both].sort(), "flat output");
    const configMap = readdirSync(path.join(dir, "out/k8s")).find(
      (f) => /configmap|bundle|ca/i.test(f) && !/secret/i.test(f),
    );
    const k8s = readFileSync(
      path.join(dir, "out/k8s", configMap ?? readdirSync(path.join(dir, "out/k8s"))[0]!),
      "utf8",
    );
    assert.equal(k8s.match(/BEGIN CERTIFICATE/g)?.length, 2, "the ConfigMap holds both CAs");
    const env = readFileSync(path.join(dir, "out/env/a.env"), "utf8");
    const caPath = /CA_CERT='([^']+)'/.exec(env)?.[1];
    assert.ok(caPath, env);
    assert.deepEqual(certsIn(caPath).sort(), [...both].sort(), "the env file's CA_CERT");
    assert.deepEqual(hooks(), ["a", "b", "c"], "prepare reloads every service");
    // Leaves are still issued by the current CA.
    for (const s of ["a", "b", "c"])
      assert.ok(
        issuerOf(path.join(pki, "services", s, "cert.pem")).checkIssued(
          new X509Certificate(readFileSync(path.join(pki, "ca", "ca.pem"))),
        ),
      );

    const batch = await cli("ca", "rotate", "activate", "--batch", "2");
    assert.equal(batch.code, 0, batch.err);
    assert.match(batch.out, /Activated this run: a, b\./);
    assert.deepEqual(hooks(), ["a", "b"]);
    const nextCa = new X509Certificate(readFileSync(path.join(pki, "ca", "next", "ca.pem")));
    assert.ok(issuerOf(path.join(pki, "services", "a", "cert.pem")).verify(nextCa.publicKey));
    assert.ok(!issuerOf(path.join(pki, "services", "c", "cert.pem")).verify(nextCa.publicKey));
    const refused = await cli("ca", "rotate", "retire");
    assert.equal(refused.code, 3);
    assert.match(
      refused.err,
      /refused: .*: c\n    fix: run `mtlskit ca rotate activate` first; or, knowing connections may break, add --force/,
    );
    const rest = await cli("ca", "rotate", "activate");
    assert.equal(rest.code, 0, rest.err);
    assert.deepEqual(hooks(), ["c"]);
    for (const s of ["a", "b", "c"]) assert.deepEqual(certsIn(path.join(pki, "services", s, "ca.pem")), both, s);
    const again = await cli("ca", "rotate", "activate");
    assert.equal(again.code, 0);
    assert.match(again.out, /nothing to do: every service is activated/);

    const retired = await cli("ca", "rotate", "retire");
    assert.equal(retired.code, 0, retired.err);
    assert.deepEqual(hooks(), ["a", "b", "c"], "retire reloads every service");
    assert.equal(fp(path.join(pki, "ca", "ca.pem")), next, "the next CA is DIR/ca/ca.pem");
    assert.equal(existsSync(path.join(pki, "ca", "next")), false);
    for (const s of ["a", "b", "c"]) assert.deepEqual(certsIn(path.join(pki, "services", s, "ca.pem")), [next], s);
    assert.deepEqual(certsIn(path.join(dir, "out/flat/a/root.pem")), [next]);
    const kept = readdirSync(path.join(pki, "ca", "retired"));
    assert.equal(kept.length, 1);
    assert.equal(fp(path.join(pki, "ca", "retired", kept[0]!, "ca.pem")), old);
    assert.equal(statSync(path.join(pki, "ca", "retired", kept[0]!, "ca-key.pem")).mode & 0o777, 0o600);
    // The CA key never under services/: check's stray-key finding would say so.
    const check = await cli("check");
    assert.equal(check.code, 0, check.out);
    assert.doesNotMatch(check.out, /ca-key|stray/);
    const more = await cli("ca", "rotate", "retire");
    assert.equal(more.code, 0);
    assert.match(more.out, /nothing to do: the old CA is already retired/);
    const plan = await cli("plan");
    assert.match(plan.out, /No changes/);
  });

  it("fail/steps out of order are refused with exit 3, naming the step that comes first; nothing is written", async () => {
    const { pki, cli } = await setup();
    for (const [step, first] of [
      ["activate", "prepare"],
      ["retire", "prepare"],
    ] as const) {
      const before = inspectPki(pki);
      const r = await cli("ca", "rotate", step);
      assert.equal(r.code, 3, r.err);
      assert.match(r.err, new RegExp(`fix: run \`mtlskit ca rotate ${first}\` first`));
      assert.deepEqual([...inspectPki(pki).keys()], [...before.keys()]);
      assert.deepEqual(inspectPki(pki).get("last-apply.json")?.sha256, before.get("last-apply.json")?.sha256);
    }
    assert.equal((await cli("ca", "rotate", "prepare")).code, 0);
    const early = await cli("ca", "rotate", "retire");
    assert.equal(early.code, 3);
    assert.match(early.err, /no service is activated yet.*: a, b, c\n    fix: run `mtlskit ca rotate activate` first/);
    assert.equal((await cli("ca", "rotate", "activate")).code, 0);
    const late = await cli("ca", "rotate", "prepare");
    assert.equal(late.code, 3);
    assert.match(late.err, /fix: run `mtlskit ca rotate retire` first/);
    const usage = await cli("ca", "rotate", "activate", "--batch", "0");
    assert.equal(usage.code, 2);
    assert.equal((await runCli(["ca", "rotate", "spin"])).code, 2);
  });

  it("fail/a failed reload hook after prepare: activate is refused naming the service until prepare runs it again; check names the unsafe step", async () => {
    const { dir, pki, cli, hooks } = await setup();
    writeFileSync(path.join(dir, "fail-c"), "");
    const prepared = await cli("ca", "rotate", "prepare");
    assert.equal(prepared.code, 3, "a failed hook exits 3");
    assert.deepEqual(rotation(pki).reloadPending, ["c"]);
    hooks();
    const check = await cli("check");
    assert.match(
      check.out,
      /rotation-unsafe-step: c's reload hook has not succeeded since `mtlskit ca rotate prepare`/,
    );
    const refused = await cli("ca", "rotate", "activate");
    assert.equal(refused.code, 3);
    assert.match(
      refused.err,
      /reload hook of c did not succeed after prepare.*\n    fix: run `mtlskit ca rotate prepare` first; or, knowing connections may break, add --force/,
    );
    rmSync(path.join(dir, "fail-c"));
    const again = await cli("ca", "rotate", "prepare");
    assert.equal(again.code, 0, again.err);
    assert.deepEqual(hooks(), ["c"], "the owed hook is retried, and only it");
    assert.deepEqual(rotation(pki).reloadPending, []);
    assert.equal((await cli("ca", "rotate", "activate")).code, 0);
  });

  it("fail/check: a bundle without the next CA makes activate unsafe (warning naming the step); retire --force with a reload owed breaks connections (error)", async () => {
    const { dir, pki, cli } = await setup();
    const oldBundle = readFileSync(path.join(pki, "services", "b", "ca.pem"));
    assert.equal((await cli("ca", "rotate", "prepare")).code, 0);
    const clean = await cli("check");
    assert.equal(clean.code, 0);
    assert.doesNotMatch(clean.out, /rotation-/);
    writeFileSync(path.join(pki, "services", "b", "ca.pem"), oldBundle); // b's bundle as before prepare
    const unsafe = await cli("check");
    assert.match(unsafe.out, /rotation-unsafe-step: `mtlskit ca rotate activate` now would break b's connections/);
    assert.equal((await cli("ca", "rotate", "prepare")).code, 0, "prepare again rewrites the bundle");
    assert.equal((await cli("ca", "rotate", "activate", "--batch", "1")).code, 0);
    writeFileSync(path.join(dir, "fail-c"), "");
    const forced = await cli("ca", "rotate", "retire", "--force");
    assert.equal(forced.code, 3, "c's hook failed");
    assert.match(forced.out, /--force: re-issued from the new CA although they chained to the old one: b, c/);
    const lag = await cli("check");
    assert.equal(lag.code, 1);
    assert.match(
      lag.out,
      /rotation-lag: during the CA rotation \(retired\), c one phase behind still presents its certificate from the old CA/,
    );
    rmSync(path.join(dir, "fail-c"));
    assert.equal((await cli("apply")).code, 0, "apply retries the owed hook");
    assert.equal((await cli("ca", "rotate", "retire")).code, 0);
    const healed = await cli("check");
    assert.equal(healed.code, 0, healed.out);
  });

  it("ok/apply during a rotation keeps both CAs in bundles and issues from the active CA; plan, status and metrics show the phase", async () => {
    const { pki, cli } = await setup();
    assert.equal((await cli("ca", "rotate", "prepare")).code, 0);
    const next = new X509Certificate(readFileSync(path.join(pki, "ca", "next", "ca.pem")));
    assert.equal((await cli("apply", "--reissue", "a")).code, 0);
    assert.ok(
      !issuerOf(path.join(pki, "services", "a", "cert.pem")).verify(next.publicKey),
      "prepared: the current CA issues",
    );
    assert.equal(certsIn(path.join(pki, "services", "a", "ca.pem")).length, 2);
    const plan = await cli("plan");
    assert.match(
      plan.out,
      /CA rotation: prepared since .* Next: `mtlskit ca rotate activate` re-issues 3 services' certificates from the next CA/,
    );
    assert.equal((await cli("ca", "rotate", "activate", "--batch", "1")).code, 0);
    assert.equal((await cli("apply", "--reissue", "a,b")).code, 0);
    assert.ok(
      issuerOf(path.join(pki, "services", "a", "cert.pem")).verify(next.publicKey),
      "activated: the next CA issues",
    );
    assert.ok(
      !issuerOf(path.join(pki, "services", "b", "cert.pem")).verify(next.publicKey),
      "not activated: the current CA",
    );
    const planned = await cli("plan", "--json");
    assert.equal((JSON.parse(planned.out) as { rotation: { phase: string } }).rotation.phase, "active");
    const status = await cli("status", "--json");
    const s = JSON.parse(status.out) as { rotation: { phase: string; seconds: number } };
    assert.equal(s.rotation.phase, "active");
    assert.ok(s.rotation.seconds >= 0);
    const metrics = await runCli(["metrics", "-f", path.join(path.dirname(pki), "mtlskit.yaml"), "--pki", pki]);
    assert.match(metrics.out, /^mtlskit_ca_rotation_phase\{phase="active"\} 1$/m);
    assert.match(metrics.out, /^mtlskit_ca_rotation_phase\{phase="prepared"\} 0$/m);
    assert.match(metrics.out, /^mtlskit_ca_rotation_phase_seconds \d+$/m);
  });

  it("ok/a CA imported with ca.import rotates the same way with the next CA imported; retire waits for ca.import to name it", async () => {
    const dir = tempDir("mtlskit-rotate-import-");
    // Two organisation CAs (made by mtlskit in other directories: a CA certificate and its 0600 key each).
    const org = writeManifest(
      dir,
      "version: 1\ncluster: org\nservices:\n  x: { usage: server, addresses: [127.0.0.1] }\n",
      "org.yaml",
    );
    for (const o of ["orgA", "orgB"])
      assert.equal((await runCli(["apply", "-f", org, "--pki", path.join(dir, o)])).code, 0);
    const manifest = (o: string) =>
      `version: 1\ncluster: imp\nidentity: { uri: "spiffe://imp.test/{name}" }\nca:\n  import: { cert: ${o}/ca/ca.pem, key: ${o}/ca/ca-key.pem }\nservices:\n  a: { usage: dual, addresses: [127.0.0.1] }\n  b: { usage: dual, addresses: [127.0.0.1] }\nconnections:\n  - { from: a, to: b, address: 127.0.0.1 }\n`;
    const file = writeManifest(dir, manifest("orgA"));
    const pki = path.join(dir, "pki");
    const cli = (...args: string[]) => runCli([...args, "-f", file, "--pki", pki]);
    assert.equal((await cli("apply")).code, 0);
    const [a, b] = ["orgA", "orgB"].map((o) => fp(path.join(dir, o, "ca", "ca.pem")));
    const bare = await cli("ca", "rotate", "prepare");
    assert.equal(bare.code, 2);
    assert.match(bare.err, /give its files with --next-cert FILE --next-key FILE/);
    const same = await cli(
      "ca",
      "rotate",
      "prepare",
      "--next-cert",
      path.join(dir, "orgA/ca/ca.pem"),
      "--next-key",
      path.join(dir, "orgA/ca/ca-key.pem"),
    );
    assert.equal(same.code, 2);
    assert.match(same.err, /is the CA ca\.import already names/);
    assert.equal(existsSync(path.join(pki, "ca", "rotation.json")), false, "nothing written");
    const nextFlags = [
      "--next-cert",
      path.join(dir, "orgB/ca/ca.pem"),
      "--next-key",
      path.join(dir, "orgB/ca/ca-key.pem"),
    ];
    const prepared = await cli("ca", "rotate", "prepare", ...nextFlags);
    assert.equal(prepared.code, 0, prepared.err);
    for (const s of ["a", "b"]) assert.deepEqual(certsIn(path.join(pki, "services", s, "ca.pem")), [a, b]);
    assert.equal(
      existsSync(path.join(pki, "ca", "next")),
      false,
      "the next CA's key stays where the organisation keeps it",
    );
    assert.equal((await cli("ca", "rotate", "activate")).code, 0);
    const orgB = new X509Certificate(readFileSync(path.join(dir, "orgB/ca/ca.pem")));
    assert.ok(issuerOf(path.join(pki, "services", "a", "cert.pem")).verify(orgB.publicKey));
    assert.equal((await cli("check")).code, 0);
    const early = await cli("ca", "rotate", "retire");
    assert.equal(early.code, 3);
    assert.match(early.err, /ca\.import in .* still names the old CA[\s\S]*fix: point ca\.import at the next CA/);
    writeManifest(dir, manifest("orgB"));
    const retired = await cli("ca", "rotate", "retire");
    assert.equal(retired.code, 0, retired.err);
    for (const s of ["a", "b"]) assert.deepEqual(certsIn(path.join(pki, "services", s, "ca.pem")), [b]);
    assert.equal(fp(path.join(pki, "ca", "ca.pem")), b);
    const kept = readdirSync(path.join(pki, "ca", "retired"));
    assert.deepEqual(readdirSync(path.join(pki, "ca", "retired", kept[0]!)), ["ca.pem"], "the old key is not copied");
    assert.equal((await cli("check")).code, 0);
    const apply = await cli("apply");
    assert.match(apply.out, /Nothing to do/);
  });
});
