/**
 * The dashboard's server (`mtlskit ui`, issue 17): the Snapshot against check's own report on a
 * real 50-service PKI (and a broken connection, and an online CA's ledger), the pure model, live
 * updates by server-sent events after a renewal by apply, the headers of every answer, path
 * traversal, no private key byte in anything served, admin mTLS with certificates apply issued,
 * and the CLI's refusal of a non-loopback bind without admins.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { checkPki, type CheckReport } from "../src/check/index.ts";
import { loadManifest } from "../src/manifest/index.ts";
import { parsePem } from "../src/pki/pem.ts";
import { inThreadBuilder, workerBuilder } from "../src/ui/builder.ts";
import { contentHash, snapshotOf, Versions, type Facts } from "../src/ui/model.ts";
import { startServer } from "../src/server/index.ts";
import { CSP, defaultAssetsDir, isLoopback, serveMount, startUi } from "../src/ui/server.ts";
import type { Snapshot } from "../src/ui/snapshot.ts";
import { REPO, runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { fixtureManifest, startUiFixture, type UiFixture } from "./helpers/ui.ts";

/** Answer is one HTTP answer as bytes. */
interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** get sends one GET with the raw `target` (no URL normalization: `..` stays) and reads the whole answer (5 s deadline). */
function get(
  base: string,
  target: string,
  o: { headers?: Record<string, string>; tls?: https.RequestOptions } = {},
): Promise<Answer> {
  const u = new URL(base);
  const mod = u.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      {
        host: u.hostname,
        port: u.port,
        path: target,
        method: "GET",
        agent: false,
        timeout: 5000,
        ...(o.headers ? { headers: o.headers } : {}),
        ...o.tls,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${target} did not answer within 5 s`)));
    req.on("error", reject);
    req.end();
  });
}

/** Events is an open /api/events stream: its headers and the versions received so far. */
interface Events {
  status: number;
  headers: http.IncomingHttpHeaders;
  versions: number[];
  /** waitFor resolves with the first version received that satisfies `ok`, or rejects after `ms`. */
  waitFor(ok: (v: number) => boolean, ms: number): Promise<number>;
  close(): void;
}

/** events opens /api/events and parses `event: snapshot` messages. */
function events(base: string, target = "/api/events"): Promise<Events> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.get({ host: u.hostname, port: u.port, path: target, agent: false }, (res) => {
      const versions: number[] = [];
      const waiters: (() => void)[] = [];
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        text += d;
        let end: number;
        while ((end = text.indexOf("\n\n")) >= 0) {
          const msg = text.slice(0, end);
          text = text.slice(end + 2);
          const m = /^event: snapshot\ndata: (\{.*\})$/.exec(msg);
          if (m) versions.push((JSON.parse(m[1]!) as { version: number }).version);
          for (const w of waiters.splice(0)) w();
        }
      });
      res.on("error", () => {});
      resolve({
        status: res.statusCode!,
        headers: res.headers,
        versions,
        waitFor: (ok, ms) =>
          new Promise((done, fail) => {
            const deadline = setTimeout(
              () => fail(new Error(`no version after ${ms} ms (got ${versions.join(", ")})`)),
              ms,
            );
            const look = () => {
              const v = versions.find(ok);
              if (v !== undefined) {
                clearTimeout(deadline);
                done(v);
              } else waiters.push(look);
            };
            look();
          }),
        close: () => req.destroy(),
      });
    });
    req.on("error", reject);
  });
}

/** tlsOf trusts DIR's CA and, given a service, presents its certificate and key. */
function tlsOf(pkiDir: string, service?: string): https.RequestOptions {
  return {
    ca: readFileSync(path.join(pkiDir, "ca", "ca.pem")),
    ...(service
      ? {
          cert: readFileSync(path.join(pkiDir, "services", service, "cert.pem")),
          key: readFileSync(path.join(pkiDir, "services", service, "key.pem")),
        }
      : {}),
  };
}

const json = <T>(a: Answer) => JSON.parse(a.body.toString("utf8")) as T;

/** assertSecurityHeaders: the dashboard's headers on one answer. */
function assertSecurityHeaders(a: Answer, what: string): void {
  assert.equal(a.headers["content-security-policy"], CSP, `${what}: Content-Security-Policy`);
  assert.equal(a.headers["x-content-type-options"], "nosniff", `${what}: nosniff`);
  assert.equal(a.headers["referrer-policy"], "no-referrer", `${what}: Referrer-Policy`);
}

/** keyMaterial: for every private key file of the PKI, its PEM base64 body and its DER. */
function keyMaterial(pkiDir: string): { file: string; base64: string; der: Buffer }[] {
  const out: { file: string; base64: string; der: Buffer }[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) walk(full);
      else if (/key\.pem$/.test(e.name)) {
        const text = readFileSync(full, "utf8");
        for (const b of parsePem(text)) {
          assert.match(b.label, /PRIVATE KEY/, full);
          out.push({ file: full, base64: b.der.toString("base64"), der: b.der });
        }
      }
    }
  };
  walk(pkiDir);
  return out;
}

/** assertNoKey: no key's base64 body (whole, or any 64-character line of it), DER or "PRIVATE KEY" in `body`. */
function assertNoKey(body: Buffer, keys: ReturnType<typeof keyMaterial>, what: string): void {
  const text = body.toString("latin1");
  assert.ok(!text.includes("PRIVATE KEY"), `${what} holds "PRIVATE KEY"`);
  for (const k of keys) {
    assert.ok(!text.includes(k.base64), `${what} holds the base64 of ${k.file}`);
    for (let i = 0; i + 64 <= k.base64.length; i += 64)
      assert.ok(!text.includes(k.base64.slice(i, i + 64)), `${what} holds a line of ${k.file}`);
    assert.equal(body.indexOf(k.der), -1, `${what} holds the DER of ${k.file}`);
    // The key's private scalar (the DER's longest part) must not appear either: its last 32 bytes.
    assert.equal(body.indexOf(k.der.subarray(k.der.length - 32)), -1, `${what} holds the tail of ${k.file}`);
  }
}

/** assets: a front end's build output: index.html, app.js, app.css, a hashed chunk. */
function assets(): string {
  const dir = tempDir("mtlskit-ui-assets-");
  writeFileSync(
    path.join(dir, "index.html"),
    '<!doctype html><html><head><link rel="stylesheet" href="assets/app.css"></head><body><script src="assets/app.js"></script></body></html>\n',
  );
  mkdirSync(path.join(dir, "sub"));
  writeFileSync(path.join(dir, "app.js"), 'console.log("app");\n');
  writeFileSync(path.join(dir, "app.css"), "body { color: #111; }\n");
  writeFileSync(path.join(dir, "chunk-3F2A9C1B.js"), "export const x = 1;\n");
  writeFileSync(path.join(dir, "sub", "icon.svg"), '<svg xmlns="http://www.w3.org/2000/svg"/>\n');
  return dir;
}

describe("ui: the Snapshot of a 50-service PKI, live", { timeout: 180_000 }, () => {
  let f: UiFixture;
  let assetsDir: string;
  before(async () => {
    assetsDir = assets();
    f = await startUiFixture({ broken: true, online: true, assetsDir });
  });
  after(() => f?.stop());

  it("ok/counts, certificates and connections match check's own report", async () => {
    const a = await get(f.url, "/api/snapshot");
    assert.equal(a.status, 200);
    assert.match(String(a.headers["content-type"]), /^application\/json/);
    const s = json<Snapshot>(a);
    // check's report, made independently of the dashboard (with the ledger's facts, as check --ledger reads them).
    const { readOnline } = await import("../src/check/online.ts");
    const manifest = loadManifest(f.manifestFile).manifest;
    const online = await readOnline(manifest, f.pkiDir);
    const report: CheckReport = checkPki(manifest, f.pkiDir, { ...(online ? { online } : {}) });
    assert.equal(s.counts.services, 50);
    assert.equal(s.counts.certificates, report.certificates.length);
    assert.equal(s.counts.errors, report.errors);
    assert.equal(s.counts.warnings, report.warnings);
    assert.equal(s.counts.connections, report.connections.length);
    assert.equal(s.counts.failingConnections, report.connections.filter((c) => !c.ok).length);
    assert.equal(s.counts.failingConnections, 1, "the broken fixture fails exactly one connection");
    assert.equal(s.findings.length, report.findings.length);
    assert.deepEqual(
      s.certificates.map((c) => [c.id, c.sha256]),
      report.certificates.map((c) => [c.id, c.sha256]),
    );
    assert.equal(s.services.length, 50);
    assert.equal(s.cluster, "dash");
    // SANs and usages decoded from the certificate itself, in certificate order.
    const s001 = s.certificates.find((c) => c.id === "s001")!;
    assert.deepEqual(s001.sans, [
      { type: "dns", value: "s001" },
      { type: "dns", value: "s001.mesh.local" },
      { type: "ip", value: "10.0.0.2" },
      { type: "uri", value: "spiffe://dash.local/server/s001" },
    ]);
    assert.deepEqual(s001.usages, ["serverAuth"]);
    assert.equal(s001.identity, "spiffe://dash.local/server/s001");
    assert.equal(s001.source, "apply");
    assert.ok(s001.daysLeft! >= 88 && s001.daysLeft! <= 90, `daysLeft ${s001.daysLeft}`);
    assert.deepEqual(
      s.certificates.find((c) => c.id === "s002")!.usages.sort(),
      ["clientAuth", "serverAuth"],
      "a dual service's certificate",
    );
    assert.equal(s.cas.length, 1);
    assert.equal(s.cas[0]!.role, "root");
    assert.equal(s.rotation, undefined, "no rotation recorded");
  });

  it("fail/the broken connection is an error whose finding carries check's fix", async () => {
    const s = json<Snapshot>(await get(f.url, "/api/snapshot"));
    const bad = s.connections.filter((c) => c.verdict === "error");
    assert.equal(bad.length, 1);
    const c = bad[0]!;
    assert.deepEqual([c.from, c.to, c.address], ["s000", "s001", "extra.mesh.local"]);
    const report = checkPki(loadManifest(f.manifestFile).manifest, f.pkiDir);
    const checks = report.findings.filter(
      (x) => x.about.kind === "connection" && x.about.index === c.index && x.severity === "error",
    );
    assert.ok(checks.length > 0);
    assert.ok(c.findings.length > 0);
    for (const i of c.findings) {
      const shown = s.findings[i]!;
      const theirs = checks.find((x) => x.code === shown.code);
      assert.ok(theirs, `finding ${shown.code} is check's`);
      assert.equal(shown.fix, theirs.fix);
      assert.equal(shown.message, theirs.message);
    }
    assert.match(s.findings[c.findings[0]!]!.fix, /mtlskit apply --reissue s001/);
    assert.equal(s.services.find((x) => x.name === "s001")!.verdict, "error");
    assert.equal(s.services.find((x) => x.name === "s002")!.verdict, "ok");
  });

  it("ok/the online CA's ledger: issuances newest first, outstanding tokens without secrets, the revocation", async () => {
    const s = json<Snapshot>(await get(f.url, "/api/snapshot"));
    const o = s.online!;
    assert.ok(o, "online");
    assert.equal(o.ledger, path.join(f.pkiDir, "ca", "ledger.db"));
    assert.equal(o.issued, 4);
    assert.equal(o.revoked, 1);
    assert.equal(o.recent.length, 4);
    assert.ok(o.recent.every((r, i) => i === 0 || r.issuedAt <= o.recent[i - 1]!.issuedAt));
    assert.deepEqual(o.tokens.map((t) => [t.service, t.acme]).sort(), [
      ["s048", false],
      ["s049", true],
    ]);
    for (const t of o.tokens) assert.match(t.id, /^[0-9a-f]{16}$/);
    assert.doesNotMatch(JSON.stringify(s), /mtk_[0-9a-f]{16}_/, "no token in its printable form");
    assert.equal(o.revocations.length, 1);
    assert.equal(o.revocations[0]!.reason, "keyCompromise");
    assert.equal(o.refusals, undefined, "standalone: serve's refusals are not known");
    const online = s.certificates.filter((c) => c.source === "online");
    assert.deepEqual(online.map((c) => c.service).sort(), ["s048", "s049"]);
    assert.ok(online.every((c) => !c.revoked && c.verdict === "ok"));
    assert.deepEqual(
      s.services.filter((x) => x.issuance === "online").map((x) => x.name),
      ["s048", "s049"],
    );
  });

  it("ok/a renewal by apply reaches an open event stream as a new version, within a bounded wait", async () => {
    const ev = await events(f.url);
    try {
      assert.equal(ev.status, 200);
      assert.match(String(ev.headers["content-type"]), /^text\/event-stream/);
      const first = await ev.waitFor(() => true, 5000);
      const before = json<Snapshot>(await get(f.url, "/api/snapshot"));
      assert.equal(before.version, first, "the stream opens with the current version");
      const old = before.certificates.find((c) => c.id === "s003")!.sha256;
      await f.renew("s003");
      const next = await ev.waitFor((v) => v > first, 20_000);
      const after = json<Snapshot>(await get(f.url, "/api/snapshot"));
      assert.ok(after.version >= next);
      assert.notEqual(after.certificates.find((c) => c.id === "s003")!.sha256, old, "the new certificate is shown");
    } finally {
      ev.close();
    }
  });

  it("ok/the worker thread and this thread build the same snapshot", async () => {
    const manifest = loadManifest(f.manifestFile).manifest;
    const at = new Date();
    const here = await inThreadBuilder(manifest, f.pkiDir).build(at, undefined);
    const worker = workerBuilder(manifest, f.pkiDir);
    try {
      const there = await worker.build(at, undefined);
      assert.equal(there.hash, here.hash);
      assert.equal(there.json, here.json);
      assert.equal((JSON.parse(there.json) as Snapshot).counts.services, 50);
    } finally {
      await worker.close();
    }
  });

  it("ok/polls without a change rebuild nothing", async () => {
    const built = f.ui.live.builds;
    await new Promise((r) => setTimeout(r, 600)); // about 6 polls at 100 ms
    assert.equal(f.ui.live.builds, built);
  });

  it("ok/every route answers with the CSP, nosniff and no-referrer, with the right content types and caching", async () => {
    const routes: [string, number, RegExp, RegExp | undefined][] = [
      ["/", 200, /^text\/html/, /no-cache/],
      ["/assets/app.js", 200, /^text\/javascript/, /no-cache/],
      ["/assets/app.css", 200, /^text\/css/, /no-cache/],
      ["/assets/chunk-3F2A9C1B.js", 200, /^text\/javascript/, /immutable/],
      ["/assets/sub/icon.svg", 200, /^image\/svg\+xml/, /no-cache/],
      ["/api/snapshot", 200, /^application\/json/, /no-store/],
      ["/nothing-here", 404, /^application\/json/, undefined],
      ["/assets/missing.js", 404, /^application\/json/, undefined],
    ];
    for (const [target, status, type, cache] of routes) {
      const a = await get(f.url, target);
      assert.equal(a.status, status, target);
      assert.match(String(a.headers["content-type"]), type, target);
      if (cache) assert.match(String(a.headers["cache-control"]), cache, target);
      assertSecurityHeaders(a, target);
    }
    assert.equal((await get(f.url, "/assets/app.js")).body.toString(), 'console.log("app");\n');
    const ev = await events(f.url);
    ev.close();
    assert.equal(ev.status, 200);
    assert.equal(ev.headers["content-security-policy"], CSP, "/api/events");
    assert.equal(ev.headers["x-content-type-options"], "nosniff");
  });

  it("fail/path traversal, hidden files and links out of the assets are refused", async () => {
    symlinkSync(path.join(f.pkiDir, "ca", "ca-key.pem"), path.join(assetsDir, "linked.pem"));
    writeFileSync(path.join(assetsDir, ".hidden"), "secret\n");
    const targets = [
      "/assets/../mtlskit.yaml",
      "/assets/..%2f..%2fpki%2fca%2fca-key.pem",
      "/assets/%2e%2e/%2e%2e/pki/ca/ca-key.pem",
      "/assets/sub/../../pki/ca/ca-key.pem",
      "/assets/..\\..\\pki\\ca\\ca-key.pem",
      `/assets/${"%2e%2e%2f".repeat(12)}etc/passwd`,
      "/assets/.hidden",
      "/assets/linked.pem",
      "/assets/",
      "/assets/sub",
      "/assets//etc/passwd",
      `/assets/${encodeURIComponent(path.join(f.pkiDir, "ca", "ca-key.pem"))}`,
    ];
    const keys = keyMaterial(f.pkiDir);
    for (const t of targets) {
      const a = await get(f.url, t);
      assert.ok(a.status === 404 || a.status === 400, `${t}: ${a.status}`);
      assertSecurityHeaders(a, t);
      assertNoKey(a.body, keys, t);
      assert.doesNotMatch(a.body.toString(), /secret|root:/, t);
    }
  });

  it("fail/no private key byte in the snapshot, the page or any asset", async () => {
    const keys = keyMaterial(f.pkiDir);
    assert.ok(keys.length >= 49, `read ${keys.length} key files`);
    for (const t of ["/api/snapshot", "/", "/assets/app.js", "/assets/app.css", "/assets/chunk-3F2A9C1B.js"]) {
      const a = await get(f.url, t);
      assert.equal(a.status, 200, t);
      assertNoKey(a.body, keys, t);
    }
  });

  it("fail/a request addressed to another host name is refused (DNS rebinding)", async () => {
    for (const host of ["evil.example", "evil.example:80", "10.0.0.1"]) {
      const a = await get(f.url, "/api/snapshot", { headers: { host } });
      assert.equal(a.status, 400, host);
      assertSecurityHeaders(a, host);
      assert.doesNotMatch(a.body.toString(), /s001/);
    }
    for (const host of ["localhost", `127.0.0.1:${new URL(f.url).port}`, "[::1]:1"])
      assert.equal((await get(f.url, "/api/snapshot", { headers: { host } })).status, 200, host);
  });

  it("fail/event streams are bounded: one more is 503 busy", async () => {
    const open: Events[] = [];
    try {
      for (let i = 0; i < 32; i++) open.push(await events(f.url));
      assert.ok(open.every((e) => e.status === 200));
      const more = await get(f.url, "/api/events");
      assert.equal(more.status, 503);
      assert.equal(json<{ error: string }>(more).error, "busy");
      open.pop()!.close();
      let again: Events | undefined;
      for (let i = 0; i < 50 && again?.status !== 200; i++) {
        again?.close();
        await new Promise((r) => setTimeout(r, 50));
        again = await events(f.url);
      }
      assert.equal(again?.status, 200, "a stream closed frees its place");
      open.push(again!);
    } finally {
      for (const e of open) e.close();
    }
  });
});

describe("ui: a CA rotation", { timeout: 120_000 }, () => {
  it("ok/each `ca rotate` step appears as the rotation's phase, with the next CA beside the root", async () => {
    const f = await startUiFixture({ services: 4 });
    const ev = await events(f.url);
    try {
      const first = await ev.waitFor(() => true, 5000);
      const step = async (cmd: string, phase: string, after: number) => {
        const r = await runCli(["ca", "rotate", cmd, "-f", f.appliedFile, "--pki", f.pkiDir]);
        assert.equal(r.code, 0, r.err);
        let s: Snapshot | undefined;
        // The stream tells of each change; the phase is read from the snapshot (bounded: 100 polls).
        await ev.waitFor((v) => v > after, 20_000);
        for (let i = 0; i < 100 && s?.rotation?.phase !== phase; i++) {
          s = json<Snapshot>(await get(f.url, "/api/snapshot"));
          if (s.rotation?.phase !== phase) await new Promise((r) => setTimeout(r, 100));
        }
        assert.equal(s?.rotation?.phase, phase);
        return s!;
      };
      const prepared = await step("prepare", "prepared", first);
      assert.match(prepared.rotation!.next!, /mtlskit ca rotate activate/);
      assert.deepEqual(prepared.cas.map((c) => c.role).sort(), ["next", "root"]);
      const active = await step("activate", "active", prepared.version);
      assert.match(active.rotation!.next!, /mtlskit ca rotate retire/);
      assert.equal(active.counts.errors, 0);
    } finally {
      ev.close();
      await f.stop();
    }
  });
});

describe("ui: no front end built", () => {
  it("ok/the page says to run npm run build; the API answers", async () => {
    const f = await startUiFixture({ services: 3, assetsDir: tempDir("mtlskit-ui-empty-") });
    try {
      const a = await get(f.url, "/");
      assert.equal(a.status, 503);
      assert.match(a.body.toString(), /npm run build/);
      assertSecurityHeaders(a, "/");
      assert.equal((await get(f.url, "/api/snapshot")).status, 200);
    } finally {
      await f.stop();
    }
  });
});

describe("ui: admin mTLS", { timeout: 120_000 }, () => {
  let f: UiFixture;
  before(async () => {
    f = await startUiFixture({ services: 6, requireMtls: true });
  });
  after(() => f?.stop());
  const tlsAs = (service?: string) => tlsOf(f.pkiDir, service);

  it("ok/https, with the server's certificate from the CA", () => {
    assert.match(f.url, /^https:\/\/127\.0\.0\.1:\d+\/$/);
  });
  it("fail/no client certificate: 401 cert-required, with the headers", async () => {
    const a = await get(f.url, "/api/snapshot", { tls: tlsAs() });
    assert.equal(a.status, 401);
    assert.equal(json<{ error: string }>(a).error, "cert-required");
    assertSecurityHeaders(a, "401");
  });
  it("fail/a client certificate of a service that is not an admin: 403 not-admin", async () => {
    for (const t of ["/api/snapshot", "/", "/api/events"]) {
      const a = await get(f.url, t, { tls: tlsAs("s002") });
      assert.equal(a.status, 403, t);
      assert.equal(json<{ error: string }>(a).error, "not-admin");
      assert.doesNotMatch(a.body.toString(), /s001\.mesh/);
    }
  });
  it("ok/the admin's certificate (serve.admins: [s000]): 200", async () => {
    const a = await get(f.url, "/api/snapshot", { tls: tlsAs("s000") });
    assert.equal(a.status, 200);
    assert.equal(json<Snapshot>(a).counts.services, 6);
    assertSecurityHeaders(a, "mTLS 200");
  });
  it("fail/a certificate from another CA: 401", async () => {
    const other = await startUiFixture({ services: 2 });
    await other.stop();
    const a = await get(f.url, "/api/snapshot", {
      tls: {
        ca: readFileSync(path.join(f.pkiDir, "ca", "ca.pem")),
        cert: readFileSync(path.join(other.pkiDir, "services", "s000", "cert.pem")),
        key: readFileSync(path.join(other.pkiDir, "services", "s000", "key.pem")),
      },
    });
    assert.equal(a.status, 401);
    assert.equal(json<{ error: string }>(a).error, "cert-untrusted");
  });
  it("fail/requireMtls with the CA key kept offline is refused at start (exit 3)", async () => {
    const key = path.join(f.pkiDir, "ca", "ca-key.pem");
    renameSync(key, `${key}.away`);
    try {
      await assert.rejects(
        startUi({
          manifestFile: f.manifestFile,
          pkiDir: f.pkiDir,
          listen: { host: "127.0.0.1", port: 0 },
          requireMtls: true,
        }),
        (e: Error & { exitCode?: number }) =>
          e.exitCode === 3 && /mtlskit ui: the issuing CA's key is not in/.test(e.message),
      );
    } finally {
      renameSync(`${key}.away`, key);
    }
  });
});

describe("ui: mounted inside serve (serve --ui)", { timeout: 120_000 }, () => {
  let f: UiFixture;
  let server: Awaited<ReturnType<typeof startServer>>;
  let base: string;
  before(async () => {
    f = await startUiFixture({ services: 6, online: true, assetsDir: assets() });
    await f.stop();
    server = await startServer({
      manifest: loadManifest(f.manifestFile),
      pkiDir: f.pkiDir,
      listen: { host: "127.0.0.1", port: 0 },
      mount: serveMount({ assetsDir: assets(), pollMs: 100 }),
    });
    base = server.url;
  });
  after(() => server?.close());
  const tlsAs = (service?: string) => tlsOf(f.pkiDir, service);

  it("ok/the admin sees the dashboard under /ui/ with the headers; /ui redirects; serve's API keeps its own headers", async () => {
    for (const t of ["/ui/", "/ui/assets/app.js", "/ui/api/snapshot"]) {
      const a = await get(base, t, { tls: tlsAs("s000") });
      assert.equal(a.status, 200, t);
      assertSecurityHeaders(a, t);
    }
    const r = await get(base, "/ui", { tls: tlsAs("s000") });
    assert.equal(r.status, 308);
    assert.equal(r.headers.location, "/ui/");
    const health = await get(base, "/v1/health", { tls: tlsAs() });
    assert.equal(health.status, 200);
    assert.equal(health.headers["content-security-policy"], undefined, "serve's API is not the dashboard");
  });
  it("fail/no certificate: 401; a service that is not an admin: 403", async () => {
    assert.equal((await get(base, "/ui/api/snapshot", { tls: tlsAs() })).status, 401);
    const a = await get(base, "/ui/api/snapshot", { tls: tlsAs("s002") });
    assert.equal(a.status, 403);
    assert.equal(json<{ error: string }>(a).error, "not-admin");
    assertSecurityHeaders(a, "403 under /ui");
  });
  it("ok/serve's refusals by reason reach the snapshot", async () => {
    const bad = await new Promise<number>((resolve, reject) => {
      const u = new URL(base);
      const req = https.request(
        {
          host: u.hostname,
          port: u.port,
          path: "/v1/enroll",
          method: "POST",
          agent: false,
          timeout: 5000,
          headers: { "content-type": "application/json" },
          ...tlsAs(),
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode!));
        },
      );
      req.on("error", reject);
      req.end(JSON.stringify({ service: "s004", token: "mtk_0000000000000000_nope", csr: "x" }));
    });
    assert.equal(bad, 401);
    let refusals: { reason: string; count: number }[] | undefined;
    for (let i = 0; i < 100; i++) {
      const s = json<Snapshot>(await get(base, "/ui/api/snapshot", { tls: tlsAs("s000") }));
      refusals = s.online?.refusals;
      if (refusals?.some((r) => r.reason === "token-malformed" || r.reason === "token-unknown")) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(
      refusals?.some((r) => (r.reason === "token-malformed" || r.reason === "token-unknown") && r.count >= 1),
      JSON.stringify(refusals),
    );
    assert.ok(
      refusals?.some((r) => r.reason === "cert-required"),
      "the dashboard's own 401s are counted too",
    );
  });
  it("fail/serve --ui without serve.admins, or with --workers, is refused before listening (exit 2)", async () => {
    const dir = tempDir();
    const file = writeManifest(dir, fixtureManifest(3).replace("serve:\n  admins: [s000]\n", ""));
    const r = await runCli(["serve", "-f", file, "--pki", f.pkiDir, "--listen", "127.0.0.1:0", "--ui"]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /--ui .* declares no serve\.admins/);
    const w = await runCli(["serve", "-f", f.manifestFile, "--pki", f.pkiDir, "--ui", "--workers", "2"]);
    assert.equal(w.code, 2, w.err);
    assert.match(w.err, /--ui and --workers/);
  });
});

describe("ui: the CLI", () => {
  it("fail/a non-loopback --listen without serve.admins is refused before binding (exit 2)", async () => {
    const dir = tempDir();
    const file = writeManifest(dir, fixtureManifest(4).replace("serve:\n  admins: [s000]\n", ""));
    // No PKI at all: the refusal comes before anything is read or bound.
    const r = await runCli(["ui", "-f", file, "--pki", path.join(dir, "pki"), "--listen", "0.0.0.0:0"]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /--listen 0\.0\.0\.0:0 is not a loopback address/);
    assert.match(r.err, /declares no serve\.admins/);
    assert.match(r.err, /fix: .*serve\.admins/);
    assert.doesNotMatch(r.err, /\n\s+at /, "no stack");
    const m = await runCli(["ui", "-f", file, "--pki", path.join(dir, "pki"), "--listen", "127.0.0.1:0", "--mtls"]);
    assert.equal(m.code, 2);
    assert.match(m.err, /--mtls was given/);
  });
  it("ok/as a process: prints the URL, serves, and exits 0 on SIGTERM", async () => {
    const f = await startUiFixture({ services: 3 });
    await f.stop();
    const script = `process.argv.splice(1, 0, "mtlskit"); const { main } = await import(${JSON.stringify(path.join(REPO, "src/cli/main.ts"))}); await main();`;
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "--input-type=module",
        "-e",
        script,
        "ui",
        "-f",
        f.manifestFile,
        "--pki",
        f.pkiDir,
        "--listen",
        "127.0.0.1:0",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    try {
      for (let i = 0; i < 300 && !/Stop with SIGTERM/.test(out) && child.exitCode === null; i++)
        await new Promise((r) => setTimeout(r, 100));
      const url = /is at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out)?.[1];
      assert.ok(url, `the URL is printed: ${out}${err}`);
      assert.match(out, /3 services, 3 certificates, 0 errors/);
      const a = await get(url, "/api/snapshot");
      assert.equal(a.status, 200);
      assert.equal(json<Snapshot>(a).counts.services, 3);
    } finally {
      child.kill("SIGTERM");
    }
    const bound = setTimeout(() => child.kill("SIGKILL"), 20_000);
    const code = await exited;
    clearTimeout(bound);
    assert.equal(code, 0, err);
    assert.match(out, /stopped on SIGTERM/);
  });
  it("fail/bad flags and a missing PKI directory: documented exit codes", async () => {
    const dir = tempDir();
    const file = writeManifest(dir, fixtureManifest(2));
    const bad = await runCli(["ui", "-f", file, "--listen", ":80"]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--listen must be/);
    const flag = await runCli(["ui", "--bogus"]);
    assert.equal(flag.code, 2);
    const missing = await runCli(["ui", "-f", file, "--pki", path.join(dir, "none"), "--listen", "127.0.0.1:0"]);
    assert.equal(missing.code, 3);
    assert.match(missing.err, /does not exist[\s\S]*fix: run `mtlskit apply/);
  });
  it("ok/--help documents the command, its security model and exit codes", async () => {
    const r = await runCli(["ui", "--help"]);
    assert.equal(r.code, 0);
    for (const want of ["USAGE", "--listen", "--mtls", "serve.admins", "EXIT CODES", "loopback"])
      assert.ok(r.out.includes(want), want);
  });
});

describe("ui: the model, pure", () => {
  const now = new Date("2027-01-01T12:00:00Z");
  const manifest = loadManifest(writeManifest(tempDir(), fixtureManifest(3))).manifest;
  const report = (errors: boolean): CheckReport => ({
    now,
    findings: errors
      ? [
          {
            code: "conn-address",
            severity: "error",
            about: { kind: "connection", index: 0, from: "s000", to: "s001", address: "s001.mesh.local" },
            message: "m",
            fix: "f",
          },
          {
            code: "renewal-due",
            severity: "warning",
            about: { kind: "certificate", service: "s001", id: "s001", file: "x" },
            message: "m2",
            fix: "f2",
          },
        ]
      : [],
    certificates: ["s000", "s001", "s002"].map((id, i) => ({
      id,
      service: id,
      file: `/p/${id}`,
      subject: `CN=${id}`,
      notAfter: new Date(now.getTime() + (i + 1) * 86_400_000 * 10 - 1000),
      renewAt: new Date(now.getTime() + (i - 1) * 86_400_000),
      ca: { subject: "CN=CA", notAfter: new Date("2030-01-01Z") },
      sha256: String(i).repeat(64),
      errors: 0,
      warnings: 0,
    })),
    cas: [{ subject: "CN=CA", file: "/p/ca", notAfter: new Date("2030-01-01Z"), sha256: "c".repeat(64) }],
    connections: [
      { index: 0, from: "s000", to: "s001", address: "s001.mesh.local", ok: !errors, causes: [] },
      { index: 1, from: "s002", to: "s001", address: "s001.mesh.local", ok: true, causes: [] },
    ],
    errors: errors ? 1 : 0,
    warnings: errors ? 1 : 0,
  });
  const facts = (errors: boolean, at = now): Facts => ({
    manifest,
    pkiDir: "/p",
    now: at,
    report: report(errors),
    leaves: new Map(),
    cas: new Map([["c".repeat(64), { notBefore: new Date("2020-01-01Z"), role: "root" as const }]]),
    revoked: new Set(),
    fileRevocations: [],
    rotation: undefined,
    online: {
      ledger: "sqlite:/p/ca/ledger.db",
      stats: { certificates: 2, revoked: 0, tokensOutstanding: 1 },
      recent: [],
      tokens: [
        {
          id: "a".repeat(16),
          kind: "enroll",
          service: "s001",
          expiresAt: new Date(now.getTime() + 1000),
          usedAt: undefined,
          revokedAt: undefined,
        },
        {
          id: "b".repeat(16),
          kind: "enroll",
          service: "s001",
          expiresAt: new Date(now.getTime() - 1000),
          usedAt: undefined,
          revokedAt: undefined,
        },
        {
          id: "c".repeat(16),
          kind: "acme",
          service: "s001",
          expiresAt: new Date(now.getTime() + 1000),
          usedAt: now,
          revokedAt: undefined,
        },
        {
          id: "d".repeat(16),
          kind: "enroll",
          service: "s001",
          expiresAt: new Date(now.getTime() + 1000),
          usedAt: undefined,
          revokedAt: now,
        },
      ],
      revocations: [],
    },
  });

  it("ok/verdicts, counts and finding indexes", () => {
    const s = snapshotOf(facts(true));
    assert.deepEqual(s.counts, {
      services: 3,
      certificates: 3,
      errors: 1,
      warnings: 1,
      renewalDue: 2,
      connections: 2,
      failingConnections: 1,
    });
    assert.deepEqual(
      s.connections.map((c) => [c.verdict, c.findings]),
      [
        ["error", [0]],
        ["ok", []],
      ],
    );
    assert.equal(s.findings[0]!.about, "s000 -> s001 @ s001.mesh.local");
    assert.deepEqual(
      s.certificates.map((c) => [c.id, c.verdict, c.daysLeft]),
      [
        ["s000", "ok", 9],
        ["s001", "warning", 19],
        ["s002", "ok", 29],
      ],
    );
    assert.equal(s.services[1]!.verdict, "warning");
    assert.deepEqual(s.services[1]!.certificates, ["s001"]);
    assert.equal(s.cas[0]!.role, "root");
    assert.equal(s.cas[0]!.notBefore, "2020-01-01T00:00:00.000Z");
    assert.deepEqual(
      s.online!.tokens.map((t) => t.id),
      ["a".repeat(16)],
      "expired, used and revoked tokens are not outstanding",
    );
  });

  it("ok/the version rises only when the content changes, not with generatedAt", () => {
    const v = new Versions();
    const a = v.next(snapshotOf(facts(false)));
    const b = v.next(snapshotOf(facts(false, new Date(now.getTime() + 500))));
    assert.equal(a.version, 1);
    assert.equal(b.version, 1, "only generatedAt differs");
    assert.notEqual(a.generatedAt, b.generatedAt);
    const c = v.next(snapshotOf(facts(true)));
    assert.equal(c.version, 2);
    const d = v.next(snapshotOf(facts(false)));
    assert.equal(d.version, 3, "back to the first content is still a change");
    assert.equal(contentHash(a), contentHash(b));
  });

  it("ok/the default assets are the package's dist/ui/web/ (the front end's build output), from src/ and dist/ alike", () => {
    assert.equal(defaultAssetsDir(), path.join(REPO, "dist", "ui", "web") + path.sep);
  });

  it("ok/loopback addresses", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"])
      assert.equal(isLoopback(h), true, h);
    for (const h of ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "localhost.evil.example", "127.0.0.1.nip.io", "::2"])
      assert.equal(isLoopback(h), false, h);
  });
});
