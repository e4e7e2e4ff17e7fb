/**
 * apply end to end: the documented layout with exact modes (whatever the umask), byte-identical
 * re-runs, re-issue of exactly what changed (with the reason plan gives), deliberate rotation,
 * renewal by time, damaged and foreign files, the CA that is never replaced silently, input that
 * writes nothing, the lock, and the worker-thread path. Pairs and chains are checked with
 * node:crypto (helpers/pki.ts), independently of mtlskit's own DER code.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from "node:crypto";
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import { hostname } from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { loadManifest } from "../src/manifest/index.ts";
import { apply, warmApply } from "../src/plan/apply.ts";
import { runCli, tempDir, writeManifest, type CliResult } from "./helpers/cli.ts";
import { opensslText, opensslVerify } from "./helpers/openssl.ts";
import { handshake } from "./helpers/tls.ts";
import {
  assertBundles,
  assertLayout,
  assertPairsMatch,
  assertUntouched,
  CuedCli,
  inspectPki,
  TEMP_MARK,
  tempFiles,
} from "./helpers/pki.ts";

/** Four key types (the default P-256, RSA 2048, Ed25519, P-384) and a split dual service: five pairs. */
const MANIFEST = `version: 1
cluster: demo
identity: { uri: "spiffe://demo.test/{role}/{name}" }
services:
  api: { usage: server, addresses: [127.0.0.1, api.demo.test] }
  worker: { usage: client, key: rsa-2048 }
  etcd: { usage: dual, split: true, key: ed25519, addresses: [10.0.0.1] }
  db: { usage: dual, key: ecdsa-p384, addresses: [db.demo.test] }
connections:
  - { from: worker, to: api, address: api.demo.test }
  - { from: etcd, to: db }
`;

/** LEAF_FILES: the certificate and key files of each slot of MANIFEST. */
const LEAF_FILES: Record<string, string[]> = {
  api: ["services/api/cert.pem", "services/api/key.pem"],
  worker: ["services/worker/cert.pem", "services/worker/key.pem"],
  etcd: ["services/etcd/cert.pem", "services/etcd/key.pem"],
  "etcd/client": ["services/etcd/client.pem", "services/etcd/client-key.pem"],
  db: ["services/db/cert.pem", "services/db/key.pem"],
};
const ALL_LEAF_FILES = Object.values(LEAF_FILES).flat();
const KEEP_ALL = { api: "keep", worker: "keep", etcd: "keep", "etcd/client": "keep", db: "keep" };

const DAY = 86_400_000;
const BACKDATE_MS = 5 * 60_000;

interface PlanJson {
  ca: { action: string; reason: string };
  certificates: { id: string; service: string; action: string; reason: string; notAfter: string }[];
  bundles: { service: string; action: string }[];
  warnings: string[];
}
interface ApplyJson extends PlanJson {
  issued: number;
  kept: number;
  caCreated: boolean;
  seconds: number;
}

const actions = (p: PlanJson) => Object.fromEntries(p.certificates.map((c) => [c.id, c.action]));
const reasons = (p: PlanJson) => Object.fromEntries(p.certificates.map((c) => [c.id, c.reason]));

/** setup writes `text` as the manifest of a fresh temp dir; pki is not created. */
function setup(text = MANIFEST): { dir: string; file: string; pki: string } {
  const dir = tempDir();
  return { dir, file: writeManifest(dir, text), pki: path.join(dir, "pki") };
}

/**
 * spkiBits returns the subjectPublicKey BIT STRING's contents (its unused-bits octet dropped) of a
 * SubjectPublicKeyInfo DER: SEQUENCE { AlgorithmIdentifier, BIT STRING }, lengths of one or two octets.
 */
function spkiBits(spki: Buffer): Buffer | undefined {
  const len = (at: number): [number, number] =>
    spki[at]! < 0x80
      ? [spki[at]!, at + 1]
      : spki[at] === 0x81
        ? [spki[at + 1]!, at + 2]
        : [spki.readUInt16BE(at + 1), at + 3];
  const [, body] = len(1);
  const [algLen, algBody] = len(body + 1);
  const bitsAt = algBody + algLen;
  if (spki[bitsAt] !== 0x03) return undefined;
  const [bitsLen, bitsBody] = len(bitsAt + 1);
  return spki.subarray(bitsBody + 1, bitsBody + bitsLen);
}

/** applied is setup plus a successful apply. */
async function applied(text = MANIFEST): Promise<{ dir: string; file: string; pki: string }> {
  const s = setup(text);
  const r = await runCli(["apply", "-f", s.file, "--pki", s.pki]);
  assert.equal(r.code, 0, r.err);
  return s;
}

async function planJson(file: string, pki: string, ...extra: string[]): Promise<PlanJson> {
  const r = await runCli(["plan", "-f", file, "--pki", pki, "--json", ...extra]);
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out) as PlanJson;
}

async function applyJson(file: string, pki: string, ...extra: string[]): Promise<ApplyJson> {
  const r = await runCli(["apply", "-f", file, "--pki", pki, "--json", ...extra]);
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out) as ApplyJson;
}

const cert = (pki: string, rel: string) => new X509Certificate(readFileSync(path.join(pki, rel)));
const lifetimeMs = (c: X509Certificate) => new Date(c.validTo).getTime() - new Date(c.validFrom).getTime();

describe("apply: the documented layout", { timeout: 180_000 }, () => {
  /** WANT: every path of MANIFEST's PKI directory and its exact mode; nothing else may exist. */
  const WANT: Record<string, number> = {
    "": 0o755,
    ca: 0o700,
    "ca/ca-key.pem": 0o600,
    "ca/ca.pem": 0o644,
    "ca/crl-number": 0o644,
    "ca/crl.pem": 0o644,
    "last-apply.json": 0o644,
    services: 0o755,
    ...Object.fromEntries(
      ["api", "db", "etcd", "worker"].flatMap((s) => [
        [`services/${s}`, 0o700],
        [`services/${s}/ca.pem`, 0o644],
        [`services/${s}/cert.pem`, 0o644],
        [`services/${s}/key.pem`, 0o600],
      ]),
    ),
    "services/etcd/client-key.pem": 0o600,
    "services/etcd/client.pem": 0o644,
  };
  const octal = (m: Record<string, number>) =>
    Object.fromEntries(
      Object.entries(m)
        .map(([k, v]) => [k, "0" + v.toString(8)])
        .sort((x, y) => (x[0]! < y[0]! ? -1 : 1)),
    );

  for (const umask of [0o022, 0o000, 0o077]) {
    it(`ok/a fresh apply writes exactly the documented files with exact modes (umask 0${umask.toString(8).padStart(3, "0")})`, async () => {
      const { file, pki } = setup();
      const old = process.umask(umask);
      let r: CliResult;
      try {
        r = await runCli(["apply", "-f", file, "--pki", pki]);
      } finally {
        process.umask(old);
      }
      assert.equal(r.code, 0, r.err);
      const snap = inspectPki(pki);
      assert.deepEqual(octal(Object.fromEntries([...snap].map(([p, e]) => [p, e.mode]))), octal(WANT));
      assertLayout(pki);
      assert.deepEqual(tempFiles(pki), []);
      assertBundles(pki);

      // The CA key exists once, under ca/; no other file under services/ holds a private key.
      const caKey = snap.get("ca/ca-key.pem")!.sha256;
      for (const [p, e] of snap) {
        if (!p.startsWith("services/") || e.type !== "file") continue;
        assert.notEqual(e.sha256, caKey, `${p} is a copy of the CA key`);
        const isKeyFile = p.endsWith("/key.pem") || p.endsWith("/client-key.pem");
        assert.equal(
          readFileSync(path.join(pki, p), "utf8").includes("PRIVATE KEY"),
          isKeyFile,
          `${p}: PRIVATE KEY ${isKeyFile ? "missing" : "present"}`,
        );
      }
      const keyHashes = ALL_LEAF_FILES.filter((p) => p.includes("key")).map((p) => snap.get(p)!.sha256);
      assert.equal(new Set(keyHashes).size, keyHashes.length, "two slots share a key");

      assert.equal(assertPairsMatch(pki), 5);
      // Each service got the key type the manifest asked for.
      const key = (rel: string) => createPrivateKey(readFileSync(path.join(pki, rel)));
      assert.equal(key("services/api/key.pem").asymmetricKeyDetails?.namedCurve, "prime256v1");
      assert.equal(key("services/worker/key.pem").asymmetricKeyDetails?.modulusLength, 2048);
      assert.equal(key("services/etcd/key.pem").asymmetricKeyType, "ed25519");
      assert.equal(key("services/etcd/client-key.pem").asymmetricKeyType, "ed25519");
      assert.equal(key("services/db/key.pem").asymmetricKeyDetails?.namedCurve, "secp384r1");
    });
  }
});

describe("apply: an unchanged manifest changes nothing", { timeout: 180_000 }, () => {
  it("ok/a re-run keeps every certificate and leaves every file byte-identical, same inode and mtime", async () => {
    const { file, pki } = await applied();
    const before = inspectPki(pki);
    const r = await applyJson(file, pki);
    assert.deepEqual(actions(r), KEEP_ALL);
    assert.equal(r.ca.action, "keep");
    assert.deepEqual(
      r.bundles.map((b) => b.action),
      ["keep", "keep", "keep", "keep"],
    );
    assert.equal(r.issued, 0);
    assert.equal(r.kept, 5);
    assert.equal(r.caCreated, false);
    assertUntouched(before, inspectPki(pki));
  });
});

/**
 * missesDuring counts the file-system calls that failed with ENOENT while `fn` ran, through the
 * node:fs functions every module imports (patched, then syncBuiltinESMExports). A count, not a time.
 */
async function missesDuring(fn: () => Promise<unknown>): Promise<number> {
  const fsMut = fs as unknown as Record<string, (...args: unknown[]) => unknown>;
  const names = ["openSync", "lstatSync", "statSync", "readdirSync"];
  const saved = names.map((n) => [n, fsMut[n]!] as const);
  let misses = 0;
  for (const [n, original] of saved)
    fsMut[n] = function (this: unknown, ...args: unknown[]) {
      try {
        return original.apply(this, args);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") misses++;
        throw e;
      }
    };
  syncBuiltinESMExports();
  try {
    await fn();
  } finally {
    for (const [n, original] of saved) fsMut[n] = original;
    syncBuiltinESMExports();
  }
  return misses;
}

describe("apply: a new directory is not probed service by service (issue 12)", { timeout: 180_000 }, () => {
  it("ok/the failed lookups of a first apply do not grow with the services; a re-apply keeps them all", async () => {
    const manifestOf = (n: number) =>
      `version: 1\ncluster: probe\nservices:\n${Array.from({ length: n }, (_, i) => `  s${i}: { usage: server }\n`).join("")}`;
    const firstApply = async (n: number) => {
      const { file, pki } = setup(manifestOf(n));
      const loaded = loadManifest(file);
      const misses = await missesDuring(() => apply(loaded, pki, { workers: 0, hooks: false }));
      return { misses, loaded, pki };
    };
    const small = await firstApply(10);
    const large = await firstApply(40);
    // Before: three failed opens (cert, key, bundle), an lstat and a readdir per service (5 per service).
    assert.equal(large.misses, small.misses, `${small.misses} misses for 10 services, ${large.misses} for 40`);
    assert.ok(
      small.misses > 0,
      "the count sees apply's calls (layout-version, last-apply.json and the CA are missing)",
    );
    const again = await apply(large.loaded, large.pki, { workers: 0, hooks: false });
    assert.equal(again.kept, 40);
    assert.equal(again.issued, 0);
  });
});

describe("apply: a changed service is re-issued alone, and plan says why", { timeout: 180_000 }, () => {
  it("ok/an added address re-issues only that service (new key), and plan names the added SAN", async () => {
    const { file, pki } = await applied();
    const before = inspectPki(pki);
    writeFileSync(file, MANIFEST.replace("[127.0.0.1, api.demo.test]", "[127.0.0.1, api.demo.test, 10.9.9.9]"));
    const plan = await planJson(file, pki);
    assert.deepEqual(actions(plan), { ...KEEP_ALL, api: "reissue" });
    assert.match(reasons(plan).api!, /^spec changed: .*SANs \+IP:10\.9\.9\.9/);
    assertUntouched(before, inspectPki(pki)); // plan wrote nothing
    assert.deepEqual(actions(await applyJson(file, pki)), { ...KEEP_ALL, api: "reissue" });
    assertUntouched(before, inspectPki(pki), LEAF_FILES.api);
    assert.match(cert(pki, "services/api/cert.pem").subjectAltName!, /IP Address:10\.9\.9\.9/);
    assertPairsMatch(pki);
    assert.deepEqual(actions(await planJson(file, pki)), KEEP_ALL);
  });

  it('ok/a changed key type re-issues only that service with a key of the new type ("key type changed")', async () => {
    const { file, pki } = await applied();
    const before = inspectPki(pki);
    writeFileSync(
      file,
      MANIFEST.replace("worker: { usage: client, key: rsa-2048 }", "worker: { usage: client, key: ecdsa-p384 }"),
    );
    const plan = await planJson(file, pki);
    assert.deepEqual(actions(plan), { ...KEEP_ALL, worker: "reissue" });
    assert.equal(reasons(plan).worker, "key type changed: rsa-2048 -> ecdsa-p384");
    await applyJson(file, pki);
    assertUntouched(before, inspectPki(pki), LEAF_FILES.worker);
    assert.equal(
      createPrivateKey(readFileSync(path.join(pki, "services/worker/key.pem"))).asymmetricKeyDetails?.namedCurve,
      "secp384r1",
    );
    assertPairsMatch(pki);
  });

  it('ok/a changed validity re-issues only that service with the new lifetime ("validity changed")', async () => {
    const { file, pki } = await applied();
    const before = inspectPki(pki);
    writeFileSync(file, MANIFEST.replace("api: { usage: server,", "api: { usage: server, validity: 30d,"));
    const plan = await planJson(file, pki);
    assert.deepEqual(actions(plan), { ...KEEP_ALL, api: "reissue" });
    assert.equal(reasons(plan).api, "validity changed: 90d -> 30d");
    await applyJson(file, pki);
    assertUntouched(before, inspectPki(pki), LEAF_FILES.api);
    assert.equal(lifetimeMs(cert(pki, "services/api/cert.pem")), 30 * DAY + BACKDATE_MS);
    assertPairsMatch(pki);
  });
});

describe("apply: deliberate rotation", { timeout: 180_000 }, () => {
  it("ok/--reissue NAME rotates that service's certificates with new keys and touches nothing else", async () => {
    const { file, pki } = await applied();
    const before = inspectPki(pki);
    const r = await applyJson(file, pki, "--reissue", "etcd");
    assert.deepEqual(actions(r), { ...KEEP_ALL, etcd: "reissue", "etcd/client": "reissue" });
    assert.equal(reasons(r).etcd, "--reissue");
    assert.equal(r.issued, 2);
    assertUntouched(before, inspectPki(pki), [...LEAF_FILES.etcd!, ...LEAF_FILES["etcd/client"]!]);
    assertPairsMatch(pki);
  });

  it("ok/--reissue-all rotates every leaf with new keys and keeps the CA and bundles byte-identical", async () => {
    const { file, pki } = await applied();
    const before = inspectPki(pki);
    const r = await applyJson(file, pki, "--reissue-all");
    assert.deepEqual(new Set(r.certificates.map((c) => `${c.action} ${c.reason}`)), new Set(["reissue --reissue-all"]));
    assert.equal(r.ca.action, "keep");
    assert.equal(r.caCreated, false);
    assertUntouched(before, inspectPki(pki), ALL_LEAF_FILES);
    assertPairsMatch(pki);
    assert.deepEqual(actions(await planJson(file, pki)), KEEP_ALL);
  });

  it("fail/--reissue of an unknown service exits 2 naming the services, and writes nothing", async () => {
    const { file, pki } = await applied();
    const before = inspectPki(pki);
    const r = await runCli(["apply", "-f", file, "--pki", pki, "--reissue", "nope"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--reissue names unknown service "nope"; services are: api, worker, etcd, db/);
    assertUntouched(before, inspectPki(pki));
    const fresh = path.join(path.dirname(file), "fresh");
    assert.equal((await runCli(["apply", "-f", file, "--pki", fresh, "--reissue", "nope"])).code, 2);
    assert.equal(existsSync(fresh), false, "--pki was created");
  });

  it("fail/--reissue with --reissue-all exits 2 and writes nothing", async () => {
    const { file, pki } = await applied();
    const before = inspectPki(pki);
    const r = await runCli(["apply", "-f", file, "--pki", pki, "--reissue", "api", "--reissue-all"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--reissue is incompatible with --reissue-all/);
    assertUntouched(before, inspectPki(pki));
    const fresh = path.join(path.dirname(file), "fresh");
    assert.equal((await runCli(["apply", "-f", file, "--pki", fresh, "--reissue", "api", "--reissue-all"])).code, 2);
    assert.equal(existsSync(fresh), false, "--pki was created");
  });
});

describe("apply: where the PKI directory goes", { timeout: 60_000 }, () => {
  it("ok/missing parents of --pki are created, as mkdir -p does; the PKI root keeps its own mode", async () => {
    const { file } = await applied();
    const nested = path.join(path.dirname(file), "a", "b", "pki");
    const r = await runCli(["apply", "-f", file, "--pki", nested]);
    assert.equal(r.code, 0, r.err);
    assertLayout(nested);
    assertPairsMatch(nested);
  });
  it("fail/a --pki below a regular file exits 3 naming the path, without a stack trace", async () => {
    const { file } = await applied();
    const blocker = path.join(path.dirname(file), "blocker");
    writeFileSync(blocker, "not a directory\n");
    const r = await runCli(["apply", "-f", file, "--pki", path.join(blocker, "pki")]);
    assert.equal(r.code, 3);
    assert.match(r.err, /cannot create .*blocker\/pki: part of its path is a file, not a directory/);
    assert.doesNotMatch(r.err, /bug in mtlskit|\n\s+at /);
  });
});

describe("apply: the record of the last run (last-apply.json)", { timeout: 60_000 }, () => {
  const record = (pki: string) =>
    JSON.parse(readFileSync(path.join(pki, "last-apply.json"), "utf8")) as {
      time: string;
      ok: boolean;
      error?: string;
      issued: number;
      kept: number;
      caCreated: boolean;
      changed: string[];
    };
  it("ok/each run records when it ran, what it issued and kept, and which services' files changed", async () => {
    const { file, pki } = await applied();
    const first = record(pki);
    assert.equal(first.ok, true);
    assert.equal(first.issued, 5); // api, worker, etcd (+ its client pair), db
    assert.equal(first.caCreated, true);
    assert.deepEqual(first.changed, ["api", "db", "etcd", "worker"]);
    assert.ok(Math.abs(new Date(first.time).getTime() - Date.now()) < 60_000);
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki, "--reissue", "api"])).code, 0);
    const second = record(pki);
    assert.deepEqual(
      { ok: second.ok, issued: second.issued, kept: second.kept, caCreated: second.caCreated, changed: second.changed },
      { ok: true, issued: 1, kept: 4, caCreated: false, changed: ["api"] },
    );
  });
  it("fail/a run that fails inside the PKI is recorded with its reason, and the files stay as they were", async () => {
    const { file, pki } = await applied();
    rmSync(path.join(pki, "ca", "ca.pem"));
    const before = inspectPki(pki);
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 3, r.err);
    const rec = record(pki);
    assert.equal(rec.ok, false);
    assert.match(rec.error!, /ca\.pem/);
    assertUntouched(before, inspectPki(pki));
  });
});

describe("apply: renewal follows the clock (library API, apply(loaded, dir, { now }))", { timeout: 180_000 }, () => {
  // short: validity 30d, renewBefore 10d, so due from T+20d and expired from T+30d (2027-03-31).
  // long: the defaults, 90d and a third of it (30d), so due from T+60d.
  // The CRL lives 8w, so it is not re-signed before T+28d either.
  const RENEWAL = `version: 1
cluster: clock
ca: { crl: { nextUpdate: 8w } }
services:
  short: { usage: server, validity: 30d, renewBefore: 10d }
  long: { usage: client }
`;
  const T = new Date("2027-03-01T00:00:00Z");
  const at = (days: number) => new Date(T.getTime() + days * DAY);

  async function issuedAtT() {
    const { file, pki } = setup(RENEWAL);
    const loaded = loadManifest(file);
    const first = await apply(loaded, pki, { now: T });
    assert.equal(first.issued, 2);
    return {
      loaded,
      pki,
      run: async (days: number) =>
        Object.fromEntries(
          (await apply(loaded, pki, { now: at(days) })).plan.certs.map((c) => [
            c.id,
            { action: c.action, reason: c.reason },
          ]),
        ),
    };
  }

  it("ok/kept at T+1d and still at T+19d, the day before the renewal window opens", async () => {
    const { pki, run } = await issuedAtT();
    const before = inspectPki(pki);
    for (const days of [1, 19]) {
      const r = await run(days);
      assert.equal(r.short!.action, "keep", `day ${days}: ${r.short!.reason}`);
      assert.equal(r.short!.reason, "valid until 2027-03-31, renews from 2027-03-21");
      assert.equal(r.long!.action, "keep");
    }
    assertUntouched(before, inspectPki(pki));
  });

  it('ok/at T + validity - renewBefore + 1d it is re-issued "due for renewal" for a full new lifetime', async () => {
    const { pki, run } = await issuedAtT();
    const before = inspectPki(pki);
    const r = await run(30 - 10 + 1);
    assert.deepEqual(r.short, { action: "reissue", reason: "due for renewal: expires 2027-03-31 (renewBefore 10d)" });
    assert.equal(r.long!.action, "keep");
    assertUntouched(before, inspectPki(pki), ["services/short/cert.pem", "services/short/key.pem"]);
    const c = cert(pki, "services/short/cert.pem");
    assert.equal(new Date(c.validFrom).getTime(), at(21).getTime() - BACKDATE_MS);
    assert.equal(new Date(c.validTo).getTime(), at(21 + 30).getTime());
    assertPairsMatch(pki);
    const again = await run(21);
    assert.equal(again.short!.action, "keep", "the renewed certificate is kept at the same moment");
  });

  it('ok/at T + validity + 1d it is re-issued "expired"', async () => {
    const { pki, run } = await issuedAtT();
    const r = await run(30 + 1);
    assert.deepEqual(r.short, { action: "reissue", reason: "expired 2027-03-31" });
    assert.equal(r.long!.action, "keep");
    assert.equal(new Date(cert(pki, "services/short/cert.pem").validTo).getTime(), at(31 + 30).getTime());
    assertPairsMatch(pki);
  });
});

describe("apply: damaged and foreign files are re-issued, with the reason", { timeout: 180_000 }, () => {
  it('ok/a key file chmod-ed to 0644 is re-issued ("readable by others") with a new 0600 key', async () => {
    const { file, pki } = await applied();
    chmodSync(path.join(pki, "services/api/key.pem"), 0o644);
    const before = inspectPki(pki);
    const plan = await planJson(file, pki);
    assert.deepEqual(actions(plan), { ...KEEP_ALL, api: "reissue" });
    assert.match(reasons(plan).api!, /key file has mode 0644, readable by others/);
    await applyJson(file, pki);
    assertUntouched(before, inspectPki(pki), LEAF_FILES.api);
    assertLayout(pki);
    assertPairsMatch(pki);
  });

  it("ok/a truncated cert.pem is re-issued", async () => {
    const { file, pki } = await applied();
    const f = path.join(pki, "services/db/cert.pem");
    const text = readFileSync(f, "utf8");
    writeFileSync(f, text.slice(0, Math.floor(text.length / 2)));
    const before = inspectPki(pki);
    const plan = await planJson(file, pki);
    assert.deepEqual(actions(plan), { ...KEEP_ALL, db: "reissue" });
    assert.match(reasons(plan).db!, /^certificate file (cannot be parsed|holds no certificate)/);
    await applyJson(file, pki);
    assertUntouched(before, inspectPki(pki), LEAF_FILES.db);
    assertPairsMatch(pki);
  });

  it('ok/a key.pem replaced by another valid key of the same type is re-issued ("key does not match certificate")', async () => {
    const { file, pki } = await applied();
    const other = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({
      type: "pkcs8",
      format: "pem",
    });
    writeFileSync(path.join(pki, "services/api/key.pem"), other, { mode: 0o600 });
    const before = inspectPki(pki);
    const plan = await planJson(file, pki);
    assert.deepEqual(actions(plan), { ...KEEP_ALL, api: "reissue" });
    assert.equal(reasons(plan).api, "key does not match certificate");
    await applyJson(file, pki);
    assertUntouched(before, inspectPki(pki), LEAF_FILES.api);
    assertPairsMatch(pki);
  });

  it('ok/a matching pair signed by another CA of the same name is re-issued ("CA changed")', async () => {
    const { file, pki } = await applied();
    const foreign = await applied(); // same manifest, so the same CA subject, but another CA key
    for (const f of LEAF_FILES.api!) cpSync(path.join(foreign.pki, f), path.join(pki, f));
    const before = inspectPki(pki);
    const plan = await planJson(file, pki);
    assert.deepEqual(actions(plan), { ...KEEP_ALL, api: "reissue" });
    assert.match(reasons(plan).api!, /^CA changed/);
    await applyJson(file, pki);
    assertUntouched(before, inspectPki(pki), LEAF_FILES.api);
    assertPairsMatch(pki);
  });
});

describe("apply: external services (files named in the manifest)", { timeout: 180_000 }, () => {
  /** EXTERNAL: core is managed; dusk names existing files under certs/ (relative to the manifest), as an openssl runbook left them. */
  const EXTERNAL = `version: 1
cluster: demo
services:
  core: { usage: dual, addresses: [192.168.2.23] }
  dusk:
    usage: dual
    addresses: [192.168.2.22]
    files:
      cert: certs/dusk.pem
      key: certs/dusk-key.pem
      ca: certs/root.pem
      owner: ${process.getuid?.() ?? 0}
connections:
  - { from: core, to: dusk }
  - { from: dusk, to: core }
`;
  const reasonFor = (certs: string) =>
    `files named in the manifest (${path.join(certs, "dusk.pem")}); apply does not write them; run mtlskit check`;

  /** withCerts is setup plus certs/ holding dusk's files (apply never parses them, so any PEM text will do). */
  function withCerts(text = EXTERNAL): { dir: string; file: string; pki: string; certs: string } {
    const s = setup(text);
    const certs = path.join(s.dir, "certs");
    mkdirSync(certs);
    const key = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" });
    writeFileSync(path.join(certs, "dusk-key.pem"), key, { mode: 0o600 });
    writeFileSync(path.join(certs, "dusk.pem"), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    writeFileSync(path.join(certs, "root.pem"), "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n");
    const old = new Date(Date.now() - 3_600_000); // an hour ago, so a rewrite would show in mtime
    for (const f of readdirSync(certs)) utimesSync(path.join(certs, f), old, old);
    return { ...s, certs };
  }

  it("ok/apply issues the managed service and writes nothing for the external one: its files stay byte-identical, same inode and mtime; no services/dusk", async () => {
    const { file, pki, certs } = withCerts();
    const before = inspectPki(certs);
    const plan = await planJson(file, pki);
    assert.deepEqual(actions(plan), { core: "create", dusk: "external" });
    assert.equal(reasons(plan).dusk, reasonFor(certs));
    assert.equal(existsSync(pki), false, "plan created --pki");

    const r = await applyJson(file, pki);
    assert.deepEqual(actions(r), { core: "create", dusk: "external" });
    assert.deepEqual(r.bundles, [{ service: "core", action: "write" }]);
    assert.equal(r.issued, 1);
    assertUntouched(before, inspectPki(certs));
    assert.equal(existsSync(path.join(pki, "services", "dusk")), false, "apply created services/dusk");
    assert.deepEqual(
      [...inspectPki(pki).keys()].filter((p) => p.startsWith("services/")),
      ["services/core", "services/core/ca.pem", "services/core/cert.pem", "services/core/key.pem"],
    );
    assertLayout(pki);
    assertPairsMatch(pki);

    const pkiBefore = inspectPki(pki);
    const again = await applyJson(file, pki);
    assert.deepEqual(actions(again), { core: "keep", dusk: "external" });
    assertUntouched(pkiBefore, inspectPki(pki));
    assertUntouched(before, inspectPki(certs));
  });

  it("ok/plan and apply print the external service on one line with its reason, and point at mtlskit check", async () => {
    const { file, pki, certs } = withCerts();
    const plan = await runCli(["plan", "-f", file, "--pki", pki]);
    assert.equal(plan.code, 0, plan.err);
    assert.ok(plan.out.includes(`  dusk  external  ${reasonFor(certs)}\n`), plan.out);
    assert.match(
      plan.out,
      /1 external service \(dusk\): the manifest names its files; apply does not write them\. Run `mtlskit check`/,
    );
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out.includes(`  dusk  external  ${reasonFor(certs)}\n`), r.out);
    assert.match(r.out, /1 certificate issued, 0 kept, new CA created/);
  });

  it("ok/a service that was managed and now names files: its old services/dusk directory is left exactly as it was", async () => {
    const { file, pki, certs } = withCerts();
    writeFileSync(file, EXTERNAL.replace(/    files:\n(      .*\n)+/, ""));
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    const leftover = path.join(pki, "services", "dusk", `${TEMP_MARK}1-cert.pem`);
    writeFileSync(leftover, "half-written");
    writeFileSync(file, EXTERNAL);
    const before = inspectPki(pki);
    const certsBefore = inspectPki(certs);
    const r = await applyJson(file, pki);
    assert.deepEqual(actions(r), { core: "keep", dusk: "external" });
    assertUntouched(before, inspectPki(pki)); // services/dusk, its files and even its temp file stay
    assertUntouched(certsBefore, inspectPki(certs));
  });

  it("ok/--reissue-all rotates the managed services only", async () => {
    const { file, pki, certs } = withCerts();
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    const before = inspectPki(certs);
    const r = await applyJson(file, pki, "--reissue-all");
    assert.deepEqual(actions(r), { core: "reissue", dusk: "external" });
    assert.equal(r.issued, 1);
    assertUntouched(before, inspectPki(certs));
    assert.equal(existsSync(path.join(pki, "services", "dusk")), false);
  });

  it("fail/--reissue of an external service exits 2 naming services.dusk.files and why; nothing written", async () => {
    const { file, pki, certs } = withCerts();
    for (const cmd of ["plan", "apply"]) {
      const r = await runCli([cmd, "-f", file, "--pki", pki, "--reissue", "dusk"]);
      assert.equal(r.code, 2, `${cmd}: ${r.err}`);
      assert.ok(
        r.err.includes(
          `mtlskit.yaml:9 services.dusk.files: --reissue names service dusk, whose certificate files the manifest names (${path.join(certs, "dusk.pem")}); apply never writes them, so it cannot re-issue them`,
        ),
        r.err,
      );
      assert.match(r.err, /fix: replace those files yourself and run mtlskit check, or remove services\.dusk\.files/);
    }
    assert.equal(existsSync(pki), false, "--pki was created");
  });

  it("ok/when every service is external, apply creates only the CA (files that do not exist are not looked at)", async () => {
    const { file, pki } = setup(`version: 1
cluster: demo
services:
  dusk: { usage: dual, files: { cert: certs/dusk.pem, key: certs/dusk-key.pem, ca: certs/root.pem } }
  agent: { usage: client, files: { cert: /nonexistent/agent.pem, key: /nonexistent/agent-key.pem, ca: /nonexistent/root.pem } }
`);
    const plan = await planJson(file, pki);
    assert.deepEqual(actions(plan), { dusk: "external", agent: "external" });
    assert.equal(plan.ca.action, "create");
    const r = await applyJson(file, pki);
    assert.equal(r.issued, 0);
    assert.equal(r.caCreated, true);
    assert.deepEqual(
      [...inspectPki(pki).keys()],
      ["", "ca", "ca/ca-key.pem", "ca/ca.pem", "ca/crl-number", "ca/crl.pem", "last-apply.json"],
    );
    assert.deepEqual(actions(await applyJson(file, pki)), { dusk: "external", agent: "external" });
  });
});

describe("apply: the CA", { timeout: 180_000 }, () => {
  it('ok/a deleted CA is created anew and every leaf re-issued ("CA is new")', async () => {
    const { file, pki } = await applied();
    const oldCa = readFileSync(path.join(pki, "ca/ca.pem"));
    rmSync(path.join(pki, "ca"), { recursive: true });
    const before = inspectPki(pki);
    const plan = await planJson(file, pki);
    assert.equal(plan.ca.action, "create");
    assert.deepEqual(new Set(plan.certificates.map((c) => `${c.action} ${c.reason}`)), new Set(["reissue CA is new"]));
    const r = await applyJson(file, pki);
    assert.equal(r.caCreated, true);
    assert.equal(r.issued, 5);
    assert.ok(!readFileSync(path.join(pki, "ca/ca.pem")).equals(oldCa), "ca.pem was not replaced");
    const after = inspectPki(pki);
    for (const p of [...ALL_LEAF_FILES, "services/api/ca.pem"])
      assert.notEqual(after.get(p)!.sha256, before.get(p)!.sha256, `${p} was not rewritten`);
    assertBundles(pki);
    assertLayout(pki);
    assertPairsMatch(pki);
  });

  it("ok/a CA certificate without its key (kept offline, or lost): plan and an apply with nothing to sign succeed; an apply that must sign stops (exit 2) naming what, --ca-key and the fix for a lost key; nothing written", async () => {
    const { file, pki } = await applied();
    rmSync(path.join(pki, "ca", "ca-key.pem"));
    const before = inspectPki(pki);
    const plan = await runCli(["plan", "-f", file, "--pki", pki]);
    assert.equal(plan.code, 0, plan.err);
    assert.match(plan.out, /key offline/);
    const nothing = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(nothing.code, 0, nothing.err);
    const r = await runCli(["apply", "-f", file, "--pki", pki, "--reissue", "api"]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /1 service needs certificates signed by the CA: api \(--reissue\)/);
    assert.match(r.err, /the CA key is not in \S+ \(kept offline\)\. Run `mtlskit apply --ca-key FILE`/);
    assert.match(r.err, /if the key is lost, move \S*ca away to start a new CA/);
    assertUntouched(before, inspectPki(pki));
  });

  it("fail/a deleted ca/ca.pem (its key still there, services issued) stops apply and plan with the exact copy to restore; nothing written", async () => {
    const { file, pki } = await applied();
    rmSync(path.join(pki, "ca", "ca.pem"));
    const before = inspectPki(pki);
    for (const cmd of ["apply", "plan"]) {
      const r = await runCli([cmd, "-f", file, "--pki", pki]);
      assert.equal(r.code, 3, `${cmd} exited ${r.code}: ${r.err}`);
      assert.match(r.err, /ca\.pem is missing, but its key \S*ca-key\.pem is there and \d+ services were issued/);
      assert.match(r.err, /the CA certificate was deleted/);
      assert.ok(
        r.err.includes(`cp ${path.join(pki, "services", "api", "ca.pem")} ${path.join(pki, "ca", "ca.pem")}`),
        r.err,
      );
    }
    assertUntouched(before, inspectPki(pki));
    // Following the fix restores the CA exactly: apply then keeps everything.
    copyFileSync(path.join(pki, "services", "api", "ca.pem"), path.join(pki, "ca", "ca.pem"));
    const j = await applyJson(file, pki);
    assert.equal(j.issued, 0);
    assert.equal(j.caCreated, false);
  });

  it("ok/a replaced services/NAME/ca.pem: plan shows the rewrite (not 'No changes'), apply rewrites only it and says so", async () => {
    const { file, pki } = await applied();
    const other = path.join(path.dirname(pki), "other-pki");
    assert.equal((await runCli(["apply", "-f", file, "--pki", other])).code, 0);
    copyFileSync(path.join(other, "ca", "ca.pem"), path.join(pki, "services", "api", "ca.pem"));
    const before = inspectPki(pki);
    const p = await runCli(["plan", "-f", file, "--pki", pki]);
    assert.match(p.out, /api\/ca\.pem\s+reissue\s+trust bundle differs from the CA's/);
    assert.match(p.out, /1 trust bundle to rewrite\./);
    const a = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.match(a.out, /1 trust bundle rewritten, \d+ kept/);
    assertUntouched(before, inspectPki(pki), ["services/api/ca.pem"]);
    assert.equal(
      readFileSync(path.join(pki, "services", "api", "ca.pem"), "utf8"),
      readFileSync(path.join(pki, "ca", "ca.pem"), "utf8"),
    );
    assert.match((await runCli(["plan", "-f", file, "--pki", pki])).out, /No changes/);
  });

  it("fail/a plain file where services/NAME belongs: apply and plan exit 3 naming it and the fix, never 'this is a bug'", async () => {
    const { file, pki } = await applied();
    const api = path.join(pki, "services", "api");
    rmSync(api, { recursive: true });
    writeFileSync(api, "not a directory\n");
    for (const cmd of ["apply", "plan"]) {
      const r = await runCli([cmd, "-f", file, "--pki", pki]);
      assert.equal(r.code, 3, r.err);
      assert.ok(r.err.includes(`${api} is not a directory`), r.err);
      assert.ok(r.err.includes(`fix: move ${api} away`), r.err);
      assert.doesNotMatch(r.err, /bug/);
    }
  });

  it("fail/a deleted ca/ca.pem with no copy left names the backup and the way to start over", async () => {
    const { file, pki } = await applied();
    rmSync(path.join(pki, "ca", "ca.pem"));
    for (const e of readdirSync(path.join(pki, "services"))) rmSync(path.join(pki, "services", e, "ca.pem"));
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 3, r.err);
    assert.match(r.err, /restore \S*ca\.pem from backup; or, to start a new CA .* move \S*ca away/);
  });

  it("ok/an existing CA whose subject differs from the manifest is kept, with a warning", async () => {
    const { file, pki } = await applied();
    const before = inspectPki(pki);
    writeFileSync(file, MANIFEST.replace("cluster: demo\n", "cluster: demo\nca: { subject: { CN: Another CA } }\n"));
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    assert.match(
      r.err,
      /warning: the existing CA \(CN=demo CA, ecdsa-p256\) differs from the manifest's ca section; the CA is never replaced automatically/,
    );
    assertUntouched(before, inspectPki(pki));
    const j = await applyJson(file, pki);
    assert.equal(j.warnings.length, 1);
    assert.match(j.warnings[0]!, /differs from the manifest's ca section/);
    assert.deepEqual(actions(j), KEEP_ALL);
  });

  it("ok/the CA warning is printed even when the plan is too long to list (over 200 certificates)", async () => {
    const lines = ["version: 1", "cluster: big", "services:"];
    for (let i = 0; i < 201; i++) lines.push(`  c${i}: { usage: client, key: ed25519 }`);
    const text = lines.join("\n") + "\n";
    const { file, pki } = await applied(text);
    writeFileSync(file, text.replace("cluster: big\n", "cluster: big\nca: { subject: { CN: Another CA } }\n"));
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /warning: the existing CA \(CN=big CA, ecdsa-p256\) differs from the manifest's ca section/);
  });

  it("fail/a leaf validity that would outlive the existing CA exits 2 naming services.NAME.validity; nothing written", async () => {
    const { file, pki } = await applied(MANIFEST.replace("cluster: demo\n", "cluster: demo\nca: { validity: 1y }\n"));
    const before = inspectPki(pki);
    writeFileSync(
      file,
      MANIFEST.replace("cluster: demo\n", "cluster: demo\nca: { validity: 10y }\n").replace(
        "api: { usage: server,",
        "api: { usage: server, validity: 400d,",
      ),
    );
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 2, r.err);
    assert.match(
      r.err,
      /mtlskit\.yaml:6 services\.api\.validity: a 400d certificate issued now would outlive the CA, which expires \d{4}-\d\d-\d\d/,
    );
    assertUntouched(before, inspectPki(pki));
  });
});

describe("apply: invalid input writes nothing", { timeout: 180_000 }, () => {
  it("fail/an invalid manifest exits 2 naming file:line and field, and --pki is not created", async () => {
    const { file, pki } = setup(MANIFEST.replace("usage: client, key: rsa-2048", "usage: clinet, key: rsa-2048"));
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 2);
    assert.match(r.err, /mtlskit\.yaml:6 services\.worker\.usage: must be one of server, client, dual; got "clinet"/);
    assert.equal(existsSync(pki), false, "--pki was created");
  });

  it("fail/an imported CA that expires before a leaf would exits 2 naming the field, and --pki is not created", async () => {
    const { dir } = await applied(MANIFEST.replace("cluster: demo\n", "cluster: demo\nca: { validity: 1y }\n")); // a CA to import, in dir/pki
    const file = writeManifest(
      dir,
      `version: 1\ncluster: demo\nca: { import: { cert: pki/ca/ca.pem, key: pki/ca/ca-key.pem } }\nservices:\n  api: { usage: server, validity: 400d }\n`,
      "imported.yaml",
    );
    const pki = path.join(dir, "pki2");
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /imported\.yaml:5 services\.api\.validity: a 400d certificate issued now would outlive the CA/);
    assert.equal(
      existsSync(pki),
      false,
      "--pki was created although the input was refused (exit 2 promises nothing written)",
    );
  });
});

describe("apply: the lock", { timeout: 180_000 }, () => {
  const lockOf = (pid: number) => JSON.stringify({ pid, host: hostname(), since: new Date().toISOString() }) + "\n";

  it("fail/a lock held by a live process: apply waits --lock-wait, exits 3 naming the holder's pid and the lock; nothing written", async () => {
    const { file, pki } = await applied();
    const holder = spawn("sleep", ["30"], { stdio: "ignore" });
    try {
      assert.ok(holder.pid, "could not start the lock holder");
      const lock = path.join(pki, ".lock");
      writeFileSync(lock, lockOf(holder.pid));
      const before = inspectPki(pki);
      const t = performance.now();
      const r = await runCli(["apply", "-f", file, "--pki", pki, "--reissue-all", "--lock-wait", "0.3"]);
      const took = performance.now() - t;
      assert.equal(r.code, 3, r.err);
      assert.ok(r.err.includes(`pid ${holder.pid} `), r.err);
      assert.ok(r.err.includes(lock), r.err);
      assert.ok(took >= 290 && took < 1500, `took ${Math.round(took)} ms with --lock-wait 0.3`);
      assertUntouched(before, inspectPki(pki)); // the holder's lock included
    } finally {
      holder.kill("SIGKILL");
    }
  });

  it("ok/a lock left by a process that has exited is taken over at once (even with --lock-wait 0)", async () => {
    const { file, pki } = setup();
    const dead = spawnSync("true").pid;
    assert.ok(dead);
    mkdirSync(pki);
    writeFileSync(path.join(pki, ".lock"), lockOf(dead));
    const r = await runCli(["apply", "-f", file, "--pki", pki, "--lock-wait", "0"]);
    assert.equal(r.code, 0, r.err);
    assert.equal(existsSync(path.join(pki, ".lock")), false, "the lock was not released");
    assertPairsMatch(pki);
    assertLayout(pki);
  });

  it("ok/an empty lock file, left by an apply killed between creating and filling it, does not block apply forever", async () => {
    const { file, pki } = setup();
    mkdirSync(pki);
    const lock = path.join(pki, ".lock");
    writeFileSync(lock, "");
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(lock, hourAgo, hourAgo); // not a lock being written right now
    const r = await runCli(["apply", "-f", file, "--pki", pki, "--lock-wait", "1"]);
    assert.equal(r.code, 0, r.err);
    assertPairsMatch(pki);
  });

  it("ok/temp files a killed apply left in the PKI root, beside the lock, are removed by the next apply", async () => {
    const { file, pki } = await applied();
    const dead = spawnSync("true").pid;
    assert.ok(dead);
    // What SIGKILL leaves when it lands while the lock is being written (its own atomic write,
    // then the file linked into place) or taken over (renamed aside): names as apply makes them.
    const leftovers = [
      `.lock${TEMP_MARK}${dead}-0`,
      `${TEMP_MARK}${dead}-1-.lock${TEMP_MARK}${dead}-0`,
      `.lock${TEMP_MARK}stale-${dead}`,
    ];
    for (const f of leftovers) writeFileSync(path.join(pki, f), lockOf(dead));
    const r = await runCli(["apply", "-f", file, "--pki", pki, "--lock-wait", "1"]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(tempFiles(pki), [], "temp files in the PKI root survive every later apply");
    assertLayout(pki);
  });

  it("ok/two applies started at the same instant on a fresh directory both succeed: one creates, the other waits and keeps", {
    timeout: 120_000,
  }, async () => {
    const { file, pki } = setup();
    const children = [new CuedCli(), new CuedCli()];
    try {
      await Promise.all(children.map((c) => c.ready));
      const runs = await Promise.all(
        children.map((c) =>
          c.run(["apply", "-f", file, "--pki", pki, "--json", "--lock-wait", "60"], { timeoutMs: 90_000 }),
        ),
      );
      assert.deepEqual(
        runs.map((r) => r.code),
        [0, 0],
        runs.map((r) => r.err).join("\n"),
      );
      const [a, b] = runs.map((r) => JSON.parse(r.out) as ApplyJson) as [ApplyJson, ApplyJson];
      const [creator, waiter] = a.caCreated ? [a, b] : [b, a];
      assert.equal(creator.caCreated, true);
      assert.equal(waiter.caCreated, false, "both applies created a CA");
      assert.equal(creator.issued, 5);
      assert.deepEqual(actions(waiter), KEEP_ALL, "the second apply did not see the first one's work");
      assert.ok(
        waiter.seconds >= creator.seconds / 2,
        `the second apply took ${waiter.seconds}s, the first ${creator.seconds}s: it did not wait for the lock`,
      );
      assertPairsMatch(pki);
      assertBundles(pki);
      assertLayout(pki); // no lock, no temp file left
    } finally {
      for (const c of children) c.kill();
    }
  });
});

describe("apply: worker threads (64 services or more)", { timeout: 180_000 }, () => {
  const many = (n: number) => {
    const lines = ["version: 1", "cluster: many", "services:"];
    for (let i = 0; i < n; i++)
      lines.push(
        `  s${i}: { usage: ${["server", "client", "dual"][i % 3]}${i % 3 === 1 ? "" : `, addresses: [10.1.${i >> 8}.${(i % 250) + 1}]`}${i % 9 === 2 ? ", split: true" : ""}${i % 10 === 5 ? ", key: ed25519" : ""} }`,
      );
    return lines.join("\n") + "\n";
  };
  const PAIRS_80 = 80 + Array.from({ length: 80 }, (_, i) => i).filter((i) => i % 9 === 2).length;

  it("ok/80 services through the CLI (strict umask 077): every pair matches, modes are exact", async () => {
    const { file, pki } = setup(many(80));
    const old = process.umask(0o077);
    let r: CliResult;
    try {
      r = await runCli(["apply", "-f", file, "--pki", pki, "--json"]);
    } finally {
      process.umask(old);
    }
    assert.equal(r.code, 0, r.err);
    assert.equal((JSON.parse(r.out) as ApplyJson).issued, PAIRS_80);
    assert.equal(assertPairsMatch(pki), PAIRS_80);
    assertBundles(pki);
    assertLayout(pki);
    const again = await applyJson(file, pki);
    assert.equal(again.issued, 0);
    assert.deepEqual(new Set(Object.values(actions(again))), new Set(["keep"]));
  });

  it("ok/the library issues 80 services off the main thread (progress arrives after apply() returns) and every pair matches", async () => {
    const { file, pki } = setup(many(80));
    let returned = false;
    let late = 0;
    let last = 0;
    const p = apply(loadManifest(file), pki, {
      workers: 3,
      onProgress: (done) => {
        if (returned) late++;
        last = done;
      },
    });
    returned = true;
    const r = await p;
    assert.equal(r.issued, PAIRS_80);
    assert.equal(last, PAIRS_80);
    assert.ok(late > 0, "every certificate was issued before apply() returned: no worker thread was used");
    assert.equal(assertPairsMatch(pki), PAIRS_80);
    assertLayout(pki);
  });

  it("ok/keys made ahead (warmApply, as the CLI does): the certificates take them, each key serves one certificate, and a re-issue takes new ones", async () => {
    const { file, pki } = setup(many(80));
    const text = readFileSync(file, "utf8");
    assert.equal(warmApply(MANIFEST), undefined, "a manifest of a few lines gets no threads before it is parsed");
    /** spkis reads every key's public key and checks that its certificate names it as subject key id (made ahead with it). */
    const spkis = (): string[] => {
      const out: string[] = [];
      for (const s of readdirSync(path.join(pki, "services")))
        for (const [key, cert] of [
          ["key.pem", "cert.pem"],
          ["client-key.pem", "client.pem"],
        ] as const) {
          if (!existsSync(path.join(pki, "services", s, key))) continue;
          const spki = createPublicKey(createPrivateKey(readFileSync(path.join(pki, "services", s, key)))).export({
            type: "spki",
            format: "der",
          });
          // SubjectKeyIdentifier (2.5.29.14): OCTET STRING of the SHA-1 of the key's BIT STRING contents (RFC 5280 4.2.1.2 (1)).
          const der = new X509Certificate(readFileSync(path.join(pki, "services", s, cert))).raw;
          const at = der.indexOf(Buffer.from("0603551d0e0416", "hex"));
          const bits = spkiBits(spki);
          assert.ok(at > 0 && bits, `${s}/${cert}: no subject key identifier, or a key without a BIT STRING`);
          assert.deepEqual(der.subarray(at + 9, at + 29), createHash("sha1").update(bits).digest(), `${s}/${cert}`);
          out.push(spki.toString("hex"));
        }
      return out;
    };
    const first = await apply(loadManifest(file), pki, { workers: 2, pool: warmApply(text, { workers: 2 }) });
    assert.equal(first.issued, PAIRS_80);
    assert.ok(first.keysAhead > 0, "no certificate took a key made ahead");
    assert.ok(first.keysAhead <= first.issued);
    assert.equal(assertPairsMatch(pki), PAIRS_80);
    const before = spkis();
    assert.equal(new Set(before).size, PAIRS_80, "a key serves two certificates");
    const again = await apply(loadManifest(file), pki, {
      workers: 2,
      reissueAll: true,
      pool: warmApply(text, { workers: 2 }),
    });
    assert.equal(again.issued, PAIRS_80);
    assert.ok(again.keysAhead > 0, "--reissue-all: no certificate took a key made ahead");
    assert.equal(assertPairsMatch(pki), PAIRS_80);
    const after = spkis();
    assert.equal(new Set(after).size, PAIRS_80, "a key serves two certificates");
    const old = new Set(before);
    assert.deepEqual(
      after.filter((k) => old.has(k)),
      [],
      "a key of the first run came back",
    );
    assertLayout(pki);
  });

  it("fail/a worker that fails ends the apply: apply rejects only after every worker stopped, so nothing is written after it returns", async () => {
    const { file, pki } = setup(many(80));
    // services/s1 is a read-only mount (of itself): reading it finds nothing, so s1 is planned,
    // and its worker fails at its first write, while the other worker still has 40 services to
    // write. (Not a symlink: apply refuses those before any worker starts.)
    const s1 = path.join(pki, "services", "s1");
    mkdirSync(s1, { recursive: true, mode: 0o700 });
    chmodSync(path.join(pki, "services"), 0o755);
    execFileSync("mount", ["--bind", s1, s1]);
    let later: string[];
    let atReturn: string[];
    try {
      execFileSync("mount", ["-o", "remount,ro,bind", s1]);
      const certs = () =>
        readdirSync(path.join(pki, "services"))
          .filter((s) => s !== "s1" && existsSync(path.join(pki, "services", s, "cert.pem")))
          .sort();
      await assert.rejects(apply(loadManifest(file), pki, { workers: 2 }), /read-only/);
      atReturn = certs();
      await new Promise((r) => setTimeout(r, 1500));
      later = certs();
    } finally {
      execFileSync("umount", [s1]);
    }
    assert.deepEqual(
      later,
      atReturn,
      `${later.length - atReturn.length} services were written after apply had returned (and released the lock)`,
    );
    assert.equal(existsSync(path.join(pki, ".lock")), false);
  });
});

describe("apply: clientSans identity-only (issue 11: Netsy's client certificates carry the URI SAN only)", {
  timeout: 180_000,
}, () => {
  const text = (clientSans: string) => `version: 1
cluster: ids
identity: { uri: "netsy://{cluster}/{role}/{name}" }
services:
  node-1: { usage: dual, split: true, role: peer, addresses: [127.0.0.1, localhost]${clientSans} }
  node-2: { usage: dual, split: true, role: peer, addresses: [127.0.0.2]${clientSans} }
  app: { usage: client, role: client${clientSans} }
connections:
  - { from: node-2, to: node-1, address: 127.0.0.1 }
  - { from: app, to: node-1, address: 127.0.0.1 }
`;
  const sanLine = (file: string) =>
    /X509v3 Subject Alternative Name: *\n\s*(.*)\n/.exec(opensslText(file))?.[1]?.trim();

  it("ok/openssl shows only the URI SAN on client certificates; server certificates keep their addresses; check is OK; real handshakes succeed", async () => {
    const s = await applied(text(", clientSans: identity-only"));
    const f = (svc: string, file: string) => path.join(s.pki, "services", svc, file);
    assert.equal(sanLine(f("node-1", "client.pem")), "URI:netsy://ids/peer/node-1");
    assert.equal(sanLine(f("app", "cert.pem")), "URI:netsy://ids/client/app");
    assert.equal(
      sanLine(f("node-1", "cert.pem")),
      "DNS:node-1, DNS:localhost, IP Address:127.0.0.1, URI:netsy://ids/peer/node-1",
    );
    assert.ok(
      opensslVerify({ caFile: f("node-1", "ca.pem"), certFile: f("node-2", "client.pem"), purpose: "sslclient" }).ok,
    );
    const check = await runCli(["check", "-f", s.file, "--pki", s.pki]);
    assert.equal(check.code, 0, check.out + check.err);
    for (const from of [
      { cert: f("node-2", "client.pem"), key: f("node-2", "client-key.pem"), ca: f("node-2", "ca.pem") },
      { cert: f("app", "cert.pem"), key: f("app", "key.pem"), ca: f("app", "ca.pem") },
    ]) {
      const r = await handshake(
        { cert: f("node-1", "cert.pem"), key: f("node-1", "key.pem"), ca: f("node-1", "ca.pem") },
        from,
        { address: "127.0.0.1", timeoutMs: 30_000 },
      );
      assert.ok(r.ok, JSON.stringify(r));
    }
  });

  it("ok/turning it on re-issues exactly the client certificates, and plan names the SANs dropped", async () => {
    const s = await applied(text(""));
    assert.equal(
      sanLine(path.join(s.pki, "services", "node-1", "client.pem")),
      "DNS:node-1, DNS:localhost, IP Address:127.0.0.1, URI:netsy://ids/peer/node-1",
    );
    writeManifest(s.dir, text(", clientSans: identity-only"));
    const plan = JSON.parse((await runCli(["plan", "-f", s.file, "--pki", s.pki, "--json"])).out) as PlanJson;
    assert.deepEqual(actions(plan), {
      "node-1": "keep",
      "node-1/client": "reissue",
      "node-2": "keep",
      "node-2/client": "reissue",
      app: "reissue",
    });
    assert.match(reasons(plan)["node-1/client"]!, /SANs -DNS:node-1 -DNS:localhost -IP:127\.0\.0\.1/);
  });

  it("fail/refused on usage server, on dual without split, and without identity.uri (exit 2, nothing written)", async () => {
    const s = setup(`version: 1
cluster: ids
services:
  web: { usage: server, clientSans: identity-only }
  both: { usage: dual, clientSans: identity-only }
  app: { usage: client, clientSans: identity-only }
`);
    const r = await runCli(["apply", "-f", s.file, "--pki", s.pki]);
    assert.equal(r.code, 2);
    assert.match(
      r.err,
      /mtlskit\.yaml:4 services\.web\.clientSans: is about the client certificate, but usage server has none/,
    );
    assert.match(
      r.err,
      /mtlskit\.yaml:5 services\.both\.clientSans: would strip the addresses from the one certificate that also serves[^\n]*\n[^\n]*add split: true/,
    );
    assert.match(
      r.err,
      /mtlskit\.yaml:6 services\.app\.clientSans: identity-only keeps the identity URI as the only SAN, but the manifest has no identity\.uri/,
    );
    assert.ok(!existsSync(s.pki));
  });
});
