/**
 * Two `mtlskit serve` replicas (startServer, in process) on one PostgreSQL ledger, each with its
 * own copy of the PKI directory (DIR/ca copied as rsync would: the CA key never enters the
 * database), real TLS on loopback: an agent enrolled at B renews at A; a revocation made through
 * A is refused by B's renewal and listed by B's /v1/crl (openssl crl -verify judges it), numbered
 * from the shared counter; then the ambiguous commit (the row committed, the answer a 503): the
 * retry with the same key gets the same certificate (200), on SQLite and on PostgreSQL alike.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createPrivateKey } from "node:crypto";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { request, type RequestOptions } from "node:https";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { requestFor } from "../src/ca/policy.ts";
import { type Ledger, LedgerUnavailableError, openLedger, parseToken } from "../src/ledger/index.ts";
import { type LoadedManifest, loadManifest, type Service } from "../src/manifest/index.ts";
import { decodeCrl } from "../src/pki/crl.ts";
import { encodeCsr } from "../src/pki/csr.ts";
import { generateKey } from "../src/pki/keys.ts";
import { encodePem } from "../src/pki/pem.ts";
import { type RunningServer, startServer } from "../src/server/index.ts";
import { AcmeClient } from "./helpers/acme-client.ts";
import { REPO, runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { type Pg, startPostgres } from "./helpers/postgres.ts";

const MANIFEST = `version: 1
cluster: rep
identity:
  uri: "spiffe://{cluster}/{name}"
serve:
  admins: [ops]
services:
  web: { usage: dual, csr: true, addresses: [127.0.0.1] }
  ops: { usage: client }
`;

interface Reply {
  status: number;
  body: Buffer;
  // biome-ignore lint/suspicious/noExplicitAny: a JSON answer, read field by field in assertions
  json: any;
}

/** call makes one HTTPS request (its own connection), bounded by 20 s; `cert`/`key` make it mTLS. */
function call(base: string, p: string, c: { json?: unknown; cert?: string; key?: string; ca: string }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const body = c.json === undefined ? undefined : JSON.stringify(c.json);
    const opts: RequestOptions = {
      method: body === undefined ? "GET" : "POST",
      ca: c.ca,
      agent: false,
      timeout: 20_000,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      ...(c.cert ? { cert: c.cert, key: c.key } : {}),
    };
    const req = request(new URL(p, base), opts, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (d: Buffer) => chunks.push(d));
      res.on("end", () => {
        const b = Buffer.concat(chunks);
        let json: unknown;
        try {
          json = JSON.parse(b.toString("utf8"));
        } catch {}
        resolve({ status: res.statusCode ?? 0, body: b, json });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
    req.end(body);
  });
}

/** newCsr makes a fresh key and its request for `service`. */
function newCsr(service: Service): { csr: string; keyPem: string } {
  const pair = generateKey(service.keyType);
  const key = createPrivateKey({ key: pair.pkcs8, format: "der", type: "pkcs8" });
  const der = encodeCsr(requestFor(service), service.keyType, pair.spki, key);
  return {
    csr: encodePem("CERTIFICATE REQUEST", der),
    keyPem: key.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}

/** ambiguous wraps a ledger whose next `record` commits, then fails as if the answer were lost (the database died after COMMIT was sent). */
function ambiguous(inner: Ledger): Ledger & { armed: boolean } {
  const l = Object.create(inner) as Ledger & { armed: boolean };
  l.armed = false;
  l.record = async (...a) => {
    const out = await inner.record(...a);
    if (l.armed) {
      l.armed = false;
      throw new LedgerUnavailableError("ledger: the connection was lost after COMMIT was sent (test)");
    }
    return out;
  };
  l.close = () => inner.close();
  return l;
}

let pg: Pg;
let dir: string;
let loaded: LoadedManifest;
let pkiA: string;
let pkiB: string;
let bundle: string;
const servers: RunningServer[] = [];

before(async () => {
  pg = await startPostgres();
  dir = tempDir("mtlskit-serve-pg-");
  const file = writeManifest(dir, MANIFEST);
  pkiA = path.join(dir, "a");
  const r = await runCli(["apply", "-f", file, "--pki", pkiA]);
  assert.equal(r.code, 0, r.err);
  // Replica B's PKI directory: a copy of A's (rsync -a DIR/ca in production).
  pkiB = path.join(dir, "b");
  cpSync(pkiA, pkiB, { recursive: true });
  loaded = loadManifest(file);
  bundle = readFileSync(path.join(pkiA, "ca/ca.pem"), "utf8");
});
after(async () => {
  for (const s of servers) await s.close();
  await pg?.destroy();
});

const svc = (name: string) => loaded.manifest.services.find((s) => s.name === name)!;

describe("serve: two replicas on one PostgreSQL ledger", { timeout: 120_000 }, () => {
  it("ok/enroll at B, renew at A; a revocation through A: B's renewal refuses it, B's /v1/crl lists it (openssl crl -verify), numbers from one counter", async () => {
    const [a, b] = await Promise.all(
      [pkiA, pkiB].map((pki) =>
        startServer({ manifest: loaded, pkiDir: pki, ledgerSpec: pg.url, listen: { host: "127.0.0.1", port: 0 } }),
      ),
    );
    servers.push(a!, b!);
    assert.equal(a!.ledger.kind, `postgres://127.0.0.1:${pg.port}/mtlskit`);
    const token = (await a!.ledger.createToken("web", "enroll", 15 * 60_000, new Date())).token;
    const first = newCsr(svc("web"));
    const enrolled = await call(b!.url, "/v1/enroll", { json: { service: "web", token, csr: first.csr }, ca: bundle });
    assert.equal(enrolled.status, 201, enrolled.body.toString());
    const second = newCsr(svc("web"));
    const renewed = await call(a!.url, "/v1/renew", {
      json: { csr: second.csr },
      cert: enrolled.json.chain,
      key: first.keyPem,
      ca: bundle,
    });
    assert.equal(renewed.status, 201, renewed.body.toString());
    assert.equal(pg.admin("SELECT count(*) FROM certificates"), "2");
    const ops = {
      cert: readFileSync(path.join(pkiA, "services/ops/cert.pem"), "utf8"),
      key: readFileSync(path.join(pkiA, "services/ops/key.pem"), "utf8"),
    };
    const crlBefore = await call(b!.url, "/v1/crl", { ca: bundle });
    assert.equal(crlBefore.status, 200);
    const numberBefore = decodeCrl(crlBefore.body).number!;
    const revoked = await call(a!.url, "/v1/revoke", {
      json: { serial: enrolled.json.serial, reason: "keyCompromise" },
      ...ops,
      ca: bundle,
    });
    assert.equal(revoked.status, 200, revoked.body.toString());
    assert.equal(
      pg.admin(`SELECT revoked_reason FROM certificates WHERE serial = '${enrolled.json.serial}'`),
      "keyCompromise",
    );
    // B never saw the request, its ca/revoked.json knows nothing: the ledger row refuses the renewal.
    const refused = await call(b!.url, "/v1/renew", {
      json: { csr: newCsr(svc("web")).csr },
      cert: enrolled.json.chain,
      key: first.keyPem,
      ca: bundle,
    });
    assert.equal(refused.status, 403, refused.body.toString());
    assert.equal(refused.json.error, "cert-revoked");
    // B's CRL lists it, signed by the root, with a number past every one before.
    const crlB = await call(b!.url, "/v1/crl", { ca: bundle });
    assert.equal(crlB.status, 200);
    const decoded = decodeCrl(crlB.body);
    assert.deepEqual(
      decoded.entries.map((e) => [e.serial, e.reason]),
      [[enrolled.json.serial, "keyCompromise"]],
    );
    assert.ok(decoded.number! > numberBefore, `${decoded.number} > ${numberBefore}`);
    const crlFile = path.join(dir, "b-crl.der");
    writeFileSync(crlFile, crlB.body);
    const text = execFileSync(
      "openssl",
      ["crl", "-inform", "DER", "-in", crlFile, "-CAfile", path.join(pkiB, "ca/ca.pem"), "-noout", "-text"],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 },
    );
    assert.match(text.replace(/\s/g, "").toLowerCase(), new RegExp(`serialnumber:${enrolled.json.serial}`));
    const verified = execFileSync(
      "openssl",
      ["crl", "-inform", "DER", "-in", crlFile, "-CAfile", path.join(pkiB, "ca/ca.pem"), "-noout", "-verify"],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 },
    );
    assert.equal(verified, "");
    // Asked again: the same CRL (nothing changed, nothing signed, no number taken).
    const again = await call(b!.url, "/v1/crl", { ca: bundle });
    assert.ok(again.body.equals(crlB.body));
    // A revocation through B reaches A's CRL; the two replicas' numbers never collide.
    const r2 = await call(b!.url, "/v1/revoke", {
      json: { serial: renewed.json.serial, reason: "superseded" },
      ...ops,
      ca: bundle,
    });
    assert.equal(r2.status, 200, r2.body.toString());
    const crlA = decodeCrl((await call(a!.url, "/v1/crl", { ca: bundle })).body);
    assert.deepEqual(crlA.entries.map((e) => e.serial).sort(), [enrolled.json.serial, renewed.json.serial].sort());
    const crlB2 = decodeCrl((await call(b!.url, "/v1/crl", { ca: bundle })).body);
    assert.deepEqual(crlB2.entries.map((e) => e.serial).sort(), [enrolled.json.serial, renewed.json.serial].sort());
    const numbers = [numberBefore, decoded.number!, crlA.number!, crlB2.number!];
    assert.equal(new Set(numbers.slice(1).map(String)).size, 3, `distinct numbers: ${numbers.join(", ")}`);
    assert.equal(
      pg.admin("SELECT value FROM counters WHERE name = 'crl_number'"),
      String([...numbers].sort((x, y) => (x < y ? -1 : 1)).at(-1)),
    );
  });

  it("ok/`mtlskit serve --ledger URL --log` as a process: the ledger named without user or password (stdout, logs, /v1/health); PostgreSQL stopped -> enroll 503 ledger-unavailable, nothing recorded; started -> issues again, no restart", {
    timeout: 120_000,
  }, async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "test/helpers/cli-on-cue.ts"], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    let out = "";
    let err = "";
    try {
      child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
      child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      await new Promise<void>((resolve, reject) => {
        child.once("message", () => resolve());
        child.once("exit", () => reject(new Error(`exited before it was ready: ${err}`)));
      });
      const file = path.join(dir, "mtlskit.yaml");
      child.send(["serve", "-f", file, "--pki", pkiA, "--ledger", pg.url, "--listen", "127.0.0.1:0", "--log"]);
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no URL within 60 s: ${out} ${err}`)), 60_000);
        const look = () => {
          const m = /listens on (https:\/\/127\.0\.0\.1:\d+)\n/.exec(out);
          if (m) clearTimeout(timer), resolve(m[1]!);
        };
        child.stdout!.on("data", look);
        void exited.then(() => (clearTimeout(timer), reject(new Error(`exited: ${out} ${err}`))));
      });
      assert.match(out, new RegExp(`  ledger: postgres://127\\.0\\.0\\.1:${pg.port}/mtlskit\n`));
      const health = await call(url, "/v1/health", { ca: bundle });
      assert.equal(health.json.ledger, `postgres://127.0.0.1:${pg.port}/mtlskit`);
      const l = await openLedger(pkiA, pg.url);
      const token = (await l.createToken("web", "enroll", 15 * 60_000, new Date())).token;
      const count = () => pg.admin("SELECT count(*) FROM certificates");
      const before = count();
      await pg.stop();
      try {
        const down = await call(url, "/v1/enroll", {
          json: { service: "web", token, csr: newCsr(svc("web")).csr },
          ca: bundle,
        });
        assert.equal(down.status, 503, down.body.toString());
        assert.equal(down.json.error, "ledger-unavailable");
        assert.match(down.json.message, new RegExp(`ledger postgres://127\\.0\\.0\\.1:${pg.port}/mtlskit: cannot`));
        assert.equal((await call(url, "/v1/health", { ca: bundle })).status, 503);
      } finally {
        await pg.start();
      }
      assert.equal(count(), before, "nothing recorded while the database was down");
      const up = await call(url, "/v1/enroll", {
        json: { service: "web", token, csr: newCsr(svc("web")).csr },
        ca: bundle,
      });
      assert.equal(up.status, 201, up.body.toString());
      await l.close();
      child.kill("SIGTERM");
      assert.equal(await exited, 0, err);
      for (const text of [out, err]) {
        assert.equal(text.includes(pg.password), false, "the password is printed");
        assert.doesNotMatch(text, /mtlskit:[^@\s]*@/);
      }
      assert.match(err, /"issued"|issued/, "--log wrote lines");
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });

  it("ok/`mtlskit revoke SERIAL --ledger URL` on A's host marks the ledger row: replica B (its ca/revoked.json untouched) refuses the renewal and lists it", async () => {
    const b = await startServer({
      manifest: loaded,
      pkiDir: pkiB,
      ledgerSpec: pg.url,
      listen: { host: "127.0.0.1", port: 0 },
    });
    servers.push(b);
    const token = (await b.ledger.createToken("web", "enroll", 15 * 60_000, new Date())).token;
    const first = newCsr(svc("web"));
    const enrolled = await call(b.url, "/v1/enroll", { json: { service: "web", token, csr: first.csr }, ca: bundle });
    assert.equal(enrolled.status, 201, enrolled.body.toString());
    const r = await runCli([
      "revoke",
      enrolled.json.serial,
      "--reason",
      "keyCompromise",
      "-f",
      path.join(dir, "mtlskit.yaml"),
      "--pki",
      pkiA,
      "--ledger",
      pg.url,
    ]);
    assert.equal(r.code, 0, r.err);
    assert.match(
      r.out,
      new RegExp(
        `Marked revoked in the ledger postgres://127\\.0\\.0\\.1:${pg.port}/mtlskit: serial ${enrolled.json.serial}`,
      ),
    );
    assert.equal(r.out.includes(pg.password), false);
    const refused = await call(b.url, "/v1/renew", {
      json: { csr: newCsr(svc("web")).csr },
      cert: enrolled.json.chain,
      key: first.keyPem,
      ca: bundle,
    });
    assert.equal(refused.status, 403, refused.body.toString());
    assert.equal(refused.json.error, "cert-revoked");
    const crl = decodeCrl((await call(b.url, "/v1/crl", { ca: bundle })).body);
    assert.ok(crl.entries.some((e) => e.serial === enrolled.json.serial && e.reason === "keyCompromise"));
  });

  for (const backend of ["sqlite", "postgres"] as const)
    it(`ok/${backend}: an enrollment retried after an ambiguous commit (row written, 503 answered) gets the same certificate (200); another key gets token-used`, async () => {
      const spec = backend === "postgres" ? pg.url : `sqlite:${path.join(dir, "amb.db")}`;
      const ledger = ambiguous(await openLedger(pkiA, spec));
      const s = await startServer({ manifest: loaded, pkiDir: pkiA, ledger, listen: { host: "127.0.0.1", port: 0 } });
      servers.push(s);
      const token = (await ledger.createToken("web", "enroll", 15 * 60_000, new Date())).token;
      const { csr } = newCsr(svc("web"));
      const rows = (await ledger.list()).length;
      ledger.armed = true;
      const lost = await call(s.url, "/v1/enroll", { json: { service: "web", token, csr }, ca: bundle });
      assert.equal(lost.status, 503, lost.body.toString());
      assert.equal(lost.json.error, "ledger-unavailable");
      assert.equal((await ledger.list()).length, rows + 1, "the row was committed all the same");
      const retry = await call(s.url, "/v1/enroll", { json: { service: "web", token, csr }, ca: bundle });
      assert.equal(retry.status, 200, retry.body.toString());
      const row = (await ledger.list({ limit: 1 }))[0]!;
      assert.equal(retry.json.serial, row.serial);
      assert.equal(retry.json.certificate, encodePem("CERTIFICATE", row.der));
      assert.equal((await ledger.list()).length, rows + 1, "nothing new recorded");
      const other = await call(s.url, "/v1/enroll", {
        json: { service: "web", token, csr: newCsr(svc("web")).csr },
        ca: bundle,
      });
      assert.equal(other.status, 401, other.body.toString());
      assert.equal(other.json.error, "token-used");
    });
});

describe("serve: ACME on a PostgreSQL ledger, two replicas", { timeout: 120_000 }, () => {
  it("ok/both replicas serve the ACME directory; a nonce from A is used once at B (then badNonce at A); one EAB key binds one account though offered to both replicas at once", async () => {
    const [a, b] = await Promise.all(
      [pkiA, pkiB].map((pki) =>
        startServer({ manifest: loaded, pkiDir: pki, ledgerSpec: pg.url, listen: { host: "127.0.0.1", port: 0 } }),
      ),
    );
    servers.push(a!, b!);
    assert.ok(a!.ledger.acme, "the PostgreSQL ledger keeps ACME state");
    const [ca, cb] = await Promise.all([a!, b!].map((s) => AcmeClient.create(`${s.url}/acme/directory`, bundle)));
    assert.ok(ca!.dir.newNonce && cb!.dir.newAccount, JSON.stringify(cb!.dir));
    const eabOf = async () => {
      const t = parseToken((await a!.ledger.createToken("web", "acme", 15 * 60_000, new Date())).token)!;
      return { kid: t.id, hmac: t.secret };
    };
    const accounts = () => Number(pg.adminDb("mtlskit", "SELECT count(*) FROM acme_objects WHERE kind = 'account'"));
    const before = accounts();
    // A nonce handed out by A is good at B, once.
    const nonce = await ca!.nonce();
    const e1 = await eabOf();
    const atB = await cb!.post(
      cb!.dir.newAccount!,
      { termsOfServiceAgreed: true, externalAccountBinding: await cb!.eab(e1.kid, e1.hmac) },
      { useJwk: true, nonce },
    );
    assert.equal(atB.status, 201, atB.text);
    const c2 = await AcmeClient.create(`${a!.url}/acme/directory`, bundle);
    const e2 = await eabOf();
    const replay = await c2.post(
      c2.dir.newAccount!,
      { termsOfServiceAgreed: true, externalAccountBinding: await c2.eab(e2.kid, e2.hmac) },
      { useJwk: true, nonce },
    );
    assert.equal(replay.status, 400, replay.text);
    assert.equal(replay.json.type, "urn:ietf:params:acme:error:badNonce");
    // One EAB key offered by 6 new account keys to both replicas at once: one account.
    const e3 = await eabOf();
    const racers = await Promise.all(
      Array.from({ length: 6 }, (_, i) => AcmeClient.create(`${(i % 2 ? a : b)!.url}/acme/directory`, bundle)),
    );
    const answers = await Promise.all(racers.map((c) => c.register(e3)));
    assert.deepEqual(
      answers.map((r) => r.status).filter((st) => st === 201),
      [201],
      answers.map((r) => `${r.status} ${r.text}`).join("\n"),
    );
    assert.equal(accounts(), before + 2, "one account for e1, one for e3, none for the replay");
  });
});
