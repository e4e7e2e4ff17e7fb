/**
 * `mtlskit serve --workers 2` (src/server/cluster.ts, worker.ts, ledger/remote.ts) as processes
 * from the built package: two HTTP workers share the port and reach the primary's SQLite ledger
 * over IPC. Every request here opens its own connection, so the primary's round robin spreads
 * them over both workers. Proven: enroll, renew, revoke (and the revoked certificate refused on
 * every worker), bundle, /metrics counting both workers' certificates; 50 concurrent uses of one
 * token -> exactly one certificate; a worker killed with SIGKILL is replaced and the server keeps
 * answering; SIGTERM stops the primary and its workers with exit 0; no serial twice in the
 * ledger, and every received certificate has its row (same SHA-256). Then the same on a
 * PostgreSQL ledger, where each worker opens its own pool.
 */
import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import * as tls from "node:tls";
import { after, before, describe, it } from "node:test";
import { openLedger } from "../src/ledger/index.ts";
import { parseToken } from "../src/ledger/tokens.ts";
import { parseCertificatesPem } from "../src/pki/pem.ts";
import { AcmeClient } from "./helpers/acme-client.ts";
import { buildPackage, runBuilt } from "./helpers/built.ts";
import { tempDir } from "./helpers/cli.ts";
import { type Pg, startPostgres } from "./helpers/postgres.ts";
import {
  type Csr,
  exited,
  makeCsrs,
  onlineManifest,
  type Reply,
  requestJson,
  type Served,
  seedLedger,
  startServe,
  within,
} from "./helpers/serve-load.ts";

/** childrenOf lists the live processes whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(f[1]) === pid && f[0] !== "Z") out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** until polls `f` every 50 ms for at most `ms`. */
async function until(what: string, f: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (await f()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`not within ${ms} ms: ${what}`);
}

describe("mtlskit serve --workers 2", { timeout: 240_000 }, () => {
  let dir: string;
  let pki: string;
  let manifest: string;
  let served: Served | undefined;
  let ca: string;
  let csrs: Csr[];
  let tokens: string[];
  let shared: string;
  /** received: every certificate a client got (leaf PEM). */
  const received: string[] = [];
  const agents: https.Agent[] = [];

  /** call sends one request on a connection of its own (so round robin reaches both workers). */
  const call = (method: "GET" | "POST", route: string, body?: unknown, client?: { cert: string; key: string }) => {
    const agent = new https.Agent({ keepAlive: false, ca, ...(client ?? {}) });
    agents.push(agent);
    return requestJson({ port: served!.port, agent, tls: true }, method, route, body);
  };
  const issued = (r: Reply) => {
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const b = r.body as { certificate: string; chain: string; serial: string };
    received.push(b.certificate);
    return b;
  };
  let next = 0;
  const enroll = async () => {
    const csr = csrs[next]!;
    const r = await call("POST", "/v1/enroll", { service: "web", token: tokens[next++], csr: csr.pem });
    return { ...issued(r), key: csr.keyPem };
  };

  before(async () => {
    dir = tempDir("mtlskit-serve-workers-");
    pki = path.join(dir, "pki");
    manifest = path.join(dir, "mtlskit.yaml");
    writeFileSync(
      manifest,
      onlineManifest({
        cluster: "workers",
        services: ["web"],
        extra: ["  ops: { usage: client }"],
        serve: ["serve: { admins: [ops] }"],
      }),
    );
    const bin = buildPackage();
    const applied = await runBuilt(bin, ["apply", "-f", manifest, "--pki", pki]);
    assert.equal(applied.code, 0, applied.err);
    ca = readFileSync(path.join(pki, "ca/ca.pem"), "utf8");
    csrs = await makeCsrs(manifest, "web", 50);
    [tokens, shared] = await seedLedger(pki, async (ledger) => {
      const now = new Date();
      const made: string[] = [];
      for (let i = 0; i < 30; i++) made.push((await ledger.createToken("web", "enroll", 3_600_000, now)).token);
      return [made, (await ledger.createToken("web", "enroll", 3_600_000, now)).token] as const;
    });
    served = await startServe(bin, { manifest, pki, args: ["--workers", "2"] });
  });

  after(async () => {
    for (const a of agents) a.destroy();
    if (served) {
      const workers = childrenOf(served.child.pid!);
      await served.kill9().catch(() => {});
      for (const w of workers) if (alive(w)) process.kill(w, "SIGKILL");
    }
  });

  it("ok/two worker processes serve one port; enroll, renew and bundle work through both", async () => {
    assert.equal(childrenOf(served!.child.pid!).length, 2, served!.output());
    // Each worker presents a server certificate of its own: new connections meet both.
    const seen = new Set<string>();
    for (let i = 0; i < 8; i++)
      seen.add(
        await new Promise<string>((resolve, reject) => {
          const s = tls.connect({ host: "127.0.0.1", port: served!.port, ca, servername: "localhost" }, () => {
            resolve(s.getPeerCertificate().serialNumber);
            s.destroy();
          });
          s.once("error", reject);
        }),
      );
    assert.equal(seen.size, 2, `connections reach both workers\n${served!.output()}`);
    const got = [];
    for (let i = 0; i < 6; i++) got.push(await enroll());
    const renewed = issued(
      await call("POST", "/v1/renew", { csr: csrs[0]!.pem }, { cert: got[0]!.chain, key: got[0]!.key }),
    );
    assert.notEqual(renewed.serial, got[0]!.serial);
    const leaf = new X509Certificate(renewed.certificate);
    assert.ok(leaf.verify(new X509Certificate(ca).publicKey), "signed by the CA");
    const bundle = await call("GET", "/v1/bundle");
    assert.equal(bundle.status, 200);
    assert.equal((bundle.body as { bundle: string }).bundle, ca);
    const ledger = await openLedger(pki, undefined, { create: false });
    try {
      const row = await ledger.get(renewed.serial);
      assert.equal(row?.renewedFrom, got[0]!.serial);
      assert.equal(row?.how, "renew");
    } finally {
      await ledger.close();
    }
  });

  it("ok/ACME through the workers (the primary's ACME store over IPC): the banner names the directory; an EAB key binds one account only; a nonce is good once across the workers", async () => {
    assert.match(served!.output(), /ACME directory: https:\/\/\S+\/acme\/directory/);
    const ledger = await openLedger(pki, undefined, { create: false });
    let eab: { kid: string; hmac: string };
    try {
      const made = await ledger.createToken("web", "acme", 3_600_000, new Date());
      eab = { kid: made.record.id, hmac: parseToken(made.token)!.secret };
    } finally {
      await ledger.close();
    }
    // Every request of the client opens its own connection: the primary's round robin spreads them over both workers.
    const directory = `https://127.0.0.1:${served!.port}/acme/directory`;
    const a = await AcmeClient.create(directory, ca);
    const bound = await a.register(eab);
    assert.equal(bound.status, 201, bound.text);
    for (let i = 0; i < 4; i++) {
      const used = await a.nonce();
      assert.equal((await a.post(a.kid!, "", { nonce: used })).status, 200);
      const again = await a.post(a.kid!, "", { nonce: used });
      assert.equal(again.status, 400, again.text);
      assert.match(again.text, /badNonce/);
    }
    const b = await AcmeClient.create(directory, ca);
    const twice = await b.register(eab);
    assert.equal(twice.status, 403, twice.text);
    assert.match(twice.text, /has bound an account already/);
  });

  it("ok//metrics adds up both workers' certificates", async () => {
    // Each enroll on its own connection: round robin gives each worker some.
    for (let i = 0; i < 4; i++) await enroll();
    for (let i = 0; i < 4; i++) {
      const r = await call("GET", "/metrics");
      assert.equal(r.status, 200);
      const text = String(r.body);
      assert.match(text, new RegExp(`mtlskit_serve_issued_total\\{how="enroll"\\} ${next}\\n`), text);
      assert.match(text, /mtlskit_serve_issued_total\{how="renew"\} 1\n/);
      assert.match(text, new RegExp(`mtlskit_serve_ledger_certificates ${next + 1}\\n`));
      assert.match(text, /mtlskit_serve_ca_not_after_seconds \d{10}\n/);
    }
  });

  it("ok/revoke through a worker; the revoked certificate renews on neither worker (403 cert-revoked)", async () => {
    const victim = await enroll();
    const ops = {
      cert: readFileSync(path.join(pki, "services/ops/cert.pem"), "utf8"),
      key: readFileSync(path.join(pki, "services/ops/key.pem"), "utf8"),
    };
    const r = await call("POST", "/v1/revoke", { serial: victim.serial, reason: "keyCompromise" }, ops);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    for (let i = 0; i < 4; i++) {
      const again = await call("POST", "/v1/renew", { csr: csrs[1]!.pem }, { cert: victim.chain, key: victim.key });
      assert.equal(again.status, 403, JSON.stringify(again.body));
      assert.equal((again.body as { error: string }).error, "cert-revoked");
    }
  });

  it("ok/50 concurrent uses of one token across the workers (50 keys): exactly one certificate", async () => {
    // Each with a key of its own: a retry with the winner's key would get its certificate again (200).
    const replies = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        call("POST", "/v1/enroll", { service: "web", token: shared, csr: csrs[i]!.pem }),
      ),
    );
    const ok = replies.filter((r) => r.status === 201);
    assert.equal(ok.length, 1, replies.map((r) => r.status).join(","));
    issued(ok[0]!);
    for (const r of replies.filter((x) => x.status !== 201)) {
      assert.equal(r.status, 401, JSON.stringify(r.body));
      assert.equal((r.body as { error: string }).error, "token-used");
    }
  });

  it("ok/a worker killed with SIGKILL is replaced, and the server keeps answering", async () => {
    const primary = served!.child.pid!;
    const [victim, other] = childrenOf(primary);
    process.kill(victim!, "SIGKILL");
    await until("the killed worker is gone", () => !alive(victim!));
    // Meanwhile the other worker answers.
    for (let i = 0; i < 3; i++) await enroll();
    await until("a new worker replaced it", () => {
      const now = childrenOf(primary);
      return now.length === 2 && !now.includes(victim!) && now.includes(other!);
    });
    for (let i = 0; i < 6; i++) assert.equal((await call("GET", "/v1/health")).status, 200);
    for (let i = 0; i < 4; i++) await enroll();
  });

  it("ok/SIGTERM stops the primary and its workers (exit 0); no serial twice, every certificate has its row", async () => {
    const child = served!.child;
    const workers = childrenOf(child.pid!);
    assert.equal(workers.length, 2);
    const code = new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    child.kill("SIGTERM");
    await within(exited(child), 20_000, "serve after SIGTERM");
    assert.equal(await code, 0, served!.output());
    assert.match(served!.output(), /stopped on SIGTERM/);
    await until("the workers are gone", () => workers.every((w) => !alive(w)), 5_000);
    served = undefined;

    const ledger = await openLedger(pki, undefined, { create: false });
    try {
      const rows = await ledger.list();
      assert.equal(new Set(rows.map((r) => r.serial)).size, rows.length, "no serial twice");
      assert.equal(rows.length, received.length, "a row for each certificate, none else");
      const bySerial = new Map(rows.map((r) => [r.serial, r]));
      for (const pem of received) {
        const der = parseCertificatesPem(pem)[0]!;
        const serial = new X509Certificate(der).serialNumber.toLowerCase().replace(/^(00)+/, "");
        const row = bySerial.get(serial);
        assert.ok(row, `row for ${serial}`);
        assert.equal(row.sha256, createHash("sha256").update(der).digest("hex"));
      }
      // The ACME case's EAB key is used too (by its account), for no row.
      const used = (await ledger.tokens()).filter((t) => t.usedAt !== undefined && t.kind === "enroll");
      assert.equal(used.length, next + 1, "each used token paid for one row (the shared one once)");
    } finally {
      await ledger.close();
    }
  });
});

/**
 * `serve --workers 2 --ledger postgres://...`: each worker opens its own pool (cluster.ts), so
 * more connections than the primary's two reach the database; the guarantees hold across both
 * workers' pools: one token, one certificate; every certificate has its row; no password printed.
 */
describe("mtlskit serve --workers 2 --ledger postgres://", { timeout: 240_000 }, () => {
  let pg: Pg | undefined;
  let pki: string;
  let served: Served | undefined;
  let ca: string;
  let csrs: Csr[];
  let tokens: string[];
  let shared: string;
  const received: string[] = [];
  const agents: https.Agent[] = [];
  const call = (method: "GET" | "POST", route: string, body?: unknown, client?: { cert: string; key: string }) => {
    const agent = new https.Agent({ keepAlive: false, ca, ...(client ?? {}) });
    agents.push(agent);
    return requestJson({ port: served!.port, agent, tls: true }, method, route, body);
  };

  before(async () => {
    pg = await startPostgres();
    const dir = tempDir("mtlskit-serve-workers-pg-");
    pki = path.join(dir, "pki");
    const manifest = path.join(dir, "mtlskit.yaml");
    writeFileSync(manifest, onlineManifest({ cluster: "workers-pg", services: ["web"] }));
    const bin = buildPackage();
    const applied = await runBuilt(bin, ["apply", "-f", manifest, "--pki", pki]);
    assert.equal(applied.code, 0, applied.err);
    ca = readFileSync(path.join(pki, "ca/ca.pem"), "utf8");
    csrs = await makeCsrs(manifest, "web", 30);
    const ledger = await openLedger(pki, pg.url);
    try {
      const now = new Date();
      tokens = [];
      for (let i = 0; i < 8; i++) tokens.push((await ledger.createToken("web", "enroll", 3_600_000, now)).token);
      shared = (await ledger.createToken("web", "enroll", 3_600_000, now)).token;
    } finally {
      await ledger.close();
    }
    served = await startServe(bin, { manifest, pki, args: ["--workers", "2", "--ledger", pg.url] });
  });

  after(async () => {
    for (const a of agents) a.destroy();
    if (served) {
      const workers = childrenOf(served.child.pid!);
      await served.kill9().catch(() => {});
      for (const w of workers) if (alive(w)) process.kill(w, "SIGKILL");
    }
    await pg?.destroy();
  });

  it("ok/enroll and renew through both workers, 30 concurrent uses of one token -> one certificate, the workers' own connections; SIGTERM exit 0, a row per certificate, no password printed", async () => {
    assert.equal(childrenOf(served!.child.pid!).length, 2, served!.output());
    const got: { serial: string; chain: string; key: string }[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await call("POST", "/v1/enroll", { service: "web", token: tokens[i], csr: csrs[i]!.pem });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      const b = r.body as { certificate: string; chain: string; serial: string };
      received.push(b.certificate);
      got.push({ serial: b.serial, chain: b.chain, key: csrs[i]!.keyPem });
    }
    for (let i = 0; i < 4; i++) {
      const r = await call("POST", "/v1/renew", { csr: csrs[i]!.pem }, { cert: got[i]!.chain, key: got[i]!.key });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      received.push((r.body as { certificate: string }).certificate);
    }
    const replies = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        call("POST", "/v1/enroll", { service: "web", token: shared, csr: csrs[i]!.pem }),
      ),
    );
    const ok = replies.filter((r) => r.status === 201);
    assert.equal(ok.length, 1, replies.map((r) => r.status).join(","));
    received.push((ok[0]!.body as { certificate: string }).certificate);
    for (const r of replies.filter((x) => x.status !== 201))
      assert.equal((r.body as { error: string }).error, "token-used", JSON.stringify(r.body));
    // The primary's pool holds at most 2 connections: more means the workers opened their own (at most 4 each).
    const conns = Number(pg!.admin("select count(*) from pg_stat_activity where application_name = 'mtlskit'"));
    assert.ok(conns >= 3 && conns <= 10, `${conns} connections`);

    const child = served!.child;
    const workers = childrenOf(child.pid!);
    const code = new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    child.kill("SIGTERM");
    await within(exited(child), 20_000, "serve after SIGTERM");
    assert.equal(await code, 0, served!.output());
    await until("the workers are gone", () => workers.every((w) => !alive(w)), 5_000);
    assert.equal(served!.output().includes(pg!.password), false, "the password is never printed");
    served = undefined;
    const ledger = await openLedger(pki, pg!.url, { create: false });
    try {
      const rows = await ledger.list();
      assert.equal(rows.length, received.length, "a row for each certificate, none else");
      const bySerial = new Map(rows.map((r) => [r.serial, r]));
      for (const pem of received) {
        const der = parseCertificatesPem(pem)[0]!;
        const serial = new X509Certificate(der).serialNumber.toLowerCase().replace(/^(00)+/, "");
        assert.equal(bySerial.get(serial)?.sha256, createHash("sha256").update(der).digest("hex"), serial);
      }
      assert.equal((await ledger.tokens()).filter((t) => t.usedAt !== undefined).length, 9);
    } finally {
      await ledger.close();
    }
  });
});
