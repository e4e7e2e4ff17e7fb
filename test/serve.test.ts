/**
 * The online CA (issue 14, section 1): `startServer` on 127.0.0.1 port 0 with a real PKI made by
 * `mtlskit apply`, real requests (mtlskit's encodeCsr and `openssl req`), real TLS on loopback.
 * Issued certificates are judged by `openssl verify -x509_strict -purpose`; the ledger is read
 * back. Then the bad inputs, each a clear 4xx problem document followed by a good request that
 * still works; slowloris connections; 50 concurrent uses of one token.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash, createPrivateKey, randomBytes, X509Certificate, type KeyObject } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { request, Agent, type RequestOptions } from "node:https";
import { connect as netConnect, type Socket } from "node:net";
import * as path from "node:path";
import { PassThrough } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import { after, before, describe, it } from "node:test";
import { csrPolicy, leafSpec, requestFor } from "../src/ca/policy.ts";
import { loadManifest, type LoadedManifest, type Service } from "../src/manifest/index.ts";
import { decodeCrl } from "../src/pki/crl.ts";
import { decodeCsr, encodeCsr } from "../src/pki/csr.ts";
import { encodeTbs, newSerial, signTbs } from "../src/pki/issue.ts";
import { generateKey, type KeyTypeName } from "../src/pki/keys.ts";
import { encodePem, parsePem } from "../src/pki/pem.ts";
import { decodeCertificate } from "../src/pki/x509.ts";
import { openLedger } from "../src/ledger/index.ts";
import { startServer, type RunningServer } from "../src/server/index.ts";
import { lifetimeOf, parseCsrText } from "../src/server/issue.ts";
import { newKeyAndCsr } from "../src/agent/agent.ts";
import { readCa } from "../src/state/read.ts";
import { readRevocations } from "../src/state/revocations.ts";
import { REPO, runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { failingLedger } from "./helpers/failing-ledger.ts";
import { rsa16kCsr } from "./helpers/forge.ts";
import { opensslVerify } from "./helpers/openssl.ts";

const MANIFEST = `version: 1
cluster: demo
identity:
  uri: spiffe://{cluster}/{role}/{name}
services:
  web:
    usage: dual
    csr: true
    addresses: [127.0.0.1, web.local]
  api:
    usage: server
    csr: true
    addresses: [api.local]
  ops:
    usage: client
  worker:
    usage: client
`;
const WEB_SANS = ["DNS:web", "DNS:web.local", "IP:127.0.0.1", "URI:spiffe://demo/dual/web"];
const HOUR = 3_600_000;

/** Reply is one HTTP exchange's result. */
interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  // biome-ignore lint/suspicious/noExplicitAny: a JSON answer, read field by field in assertions
  json: any;
}

/** Call: a request to the server; `cert`/`key` make it mTLS. */
interface Call {
  method?: "GET" | "POST";
  json?: unknown;
  raw?: string | Buffer;
  type?: string;
  headers?: Record<string, string>;
  cert?: string;
  key?: string;
  agent?: Agent;
  /** ca: the bundle the server's certificate must chain to. */
  ca?: string;
  /** insecure: read an answer without judging the server's certificate (the rotation's bundle probe only). */
  insecure?: boolean;
}

/** httpsCall makes one HTTPS request to `base` + `p` (its own connection unless an agent is given) and reads the whole answer, bounded by 20 s. */
function httpsCall(base: string | URL, p: string, c: Call = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const body = c.raw ?? (c.json === undefined ? undefined : JSON.stringify(c.json));
    const opts: RequestOptions = {
      method: c.method ?? (body === undefined ? "GET" : "POST"),
      ...(c.ca === undefined ? {} : { ca: c.ca }),
      ...(c.insecure ? { rejectUnauthorized: false } : {}),
      agent: c.agent ?? false,
      timeout: 20_000,
      headers: {
        ...(body === undefined ? {} : { "content-type": c.type ?? "application/json" }),
        ...c.headers,
      },
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
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b, json });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
    req.end(body);
  });
}

function openssl(args: string[]): string {
  return execFileSync("openssl", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
}

/** newCsr makes a key of `keyType` and a request for `service` (its manifest names unless `names` says otherwise). */
function newCsr(
  service: Service,
  keyType: KeyTypeName = service.keyType,
  names?: Partial<ReturnType<typeof requestFor>>,
): { csr: string; key: KeyObject; keyPem: string } {
  const pair = generateKey(keyType);
  const key = createPrivateKey({ key: pair.pkcs8, format: "der", type: "pkcs8" });
  const der = encodeCsr({ ...requestFor(service), ...names }, keyType, pair.spki, key);
  return {
    csr: encodePem("CERTIFICATE REQUEST", der),
    key,
    keyPem: key.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}

describe("mtlskit serve", () => {
  let dir: string;
  let pki: string;
  let loaded: LoadedManifest;
  let server: RunningServer;
  let bundle: string;
  let url: URL;
  let ledger: ReturnType<typeof failingLedger>;
  const logs = new PassThrough();
  let logText = "";
  logs.on("data", (d: Buffer) => void (logText += d.toString()));
  const secrets: string[] = [];
  const svc = (name: string) => loaded.manifest.services.find((s) => s.name === name)!;

  /** call makes one HTTPS request to the server, trusting its bundle. */
  const call = (p: string, c: Call = {}): Promise<Reply> => httpsCall(url, p, { ca: bundle, ...c });

  const token = async (service = "web", ttlMs = 15 * 60_000, at = new Date()) => {
    const t = (await ledger.createToken(service, "enroll", ttlMs, at)).token;
    secrets.push(t.slice("mtk_0123456789abcdef_".length));
    return t;
  };

  /** enroll enrolls `service` with a fresh token and key: the 201 body, the key and the files written for openssl. */
  async function enroll(service = "web") {
    const { csr, keyPem } = newCsr(svc(service));
    const r = await call("/v1/enroll", { json: { service, token: await token(service), csr } });
    assert.equal(r.status, 201, r.body.toString());
    return { issued: r.json, keyPem };
  }

  /** problem asserts a problem document: the status, the code, a message and a fix, and no stack. */
  function problem(r: Reply, status: number, code: string) {
    assert.equal(r.status, status, r.body.toString());
    assert.match(String(r.headers["content-type"]), /^application\/json/);
    assert.equal(r.json?.error, code, r.body.toString());
    assert.equal(typeof r.json.message, "string");
    assert.equal(typeof r.json.fix, "string");
    assert.doesNotMatch(r.body.toString(), /\bat [\w.<>]+ \(|node:internal|\.ts:\d+/, "a stack trace leaked");
  }

  /** stillServes: a good request right after a bad one. */
  async function stillServes() {
    const r = await call("/v1/health");
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.json.status, "ok");
  }

  before(async () => {
    dir = tempDir("mtlskit-serve-");
    const file = writeManifest(dir, MANIFEST);
    pki = path.join(dir, "pki");
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    loaded = loadManifest(file);
    // The serve: section and ttl are parsed by the manifest branch; the model fields are set here.
    loaded.manifest.serve = { maxTtlMs: 24 * HOUR, admins: ["ops"] };
    svc("web").ttlMs = HOUR;
    svc("api").ttlMs = 2 * HOUR;
    ledger = failingLedger(await openLedger(pki));
    server = await startServer({
      manifest: loaded,
      pkiDir: pki,
      listen: { host: "127.0.0.1", port: 0 },
      ledger,
      log: { stream: logs },
    });
    url = new URL(server.url);
    bundle = readFileSync(path.join(pki, "ca/ca.pem"), "utf8");
  });
  after(async () => {
    await server?.close();
  });

  it("ok/the server's own certificate: issued by the CA, server profile, SANs 127.0.0.1 and localhost, verified by openssl", async () => {
    const f = path.join(dir, "server.pem");
    writeFileSync(f, server.serverCertificate());
    const v = opensslVerify({
      caFile: path.join(pki, "ca/ca.pem"),
      certFile: f,
      purpose: "sslserver",
      verifyIp: "127.0.0.1",
    });
    assert.ok(v.ok, v.output);
    const x = new X509Certificate(server.serverCertificate());
    assert.equal(x.subjectAltName, "DNS:localhost, IP Address:127.0.0.1");
    assert.ok(new Date(x.validTo).getTime() - Date.now() <= 24 * HOUR + 1000);
    assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(server.rootSha256, new X509Certificate(bundle).fingerprint256.replace(/:/g, "").toLowerCase());
    // The chain presented on the wire ends with that root, for agents bootstrapping by --fingerprint.
    const wire = await new Promise<string[]>((resolve, reject) => {
      const s = tlsConnect({ host: "127.0.0.1", port: server.port, ca: bundle }, () => {
        const out: string[] = [];
        for (let c = s.getPeerCertificate(true); c?.raw && !out.includes(c.fingerprint256); c = c.issuerCertificate)
          out.push(c.fingerprint256);
        s.destroy();
        resolve(out.map((f) => f.replace(/:/g, "").toLowerCase()));
      });
      s.on("error", reject);
    });
    assert.equal(wire.length, 2);
    assert.equal(wire.at(-1), server.rootSha256);
    const presented = parsePem(server.serverCertificate());
    assert.equal(presented.length, 2);
    assert.equal(createHash("sha256").update(presented[1]!.der).digest("hex"), server.rootSha256);
  });

  it("ok/enroll: a token and a CSR -> 201, the manifest's certificate exactly, openssl verifies it, the ledger row was written first", async () => {
    const t = await token();
    const { csr } = newCsr(svc("web"));
    const before = Date.now();
    const r = await call("/v1/enroll", { json: { service: "web", token: t, csr } });
    assert.equal(r.status, 201, r.body.toString());
    const issued = r.json;
    assert.deepEqual(Object.keys(issued).sort(), [
      "bundle",
      "certificate",
      "chain",
      "notAfter",
      "notBefore",
      "renewAfter",
      "serial",
    ]);
    assert.equal(issued.bundle, bundle);
    const certFile = path.join(dir, "web.pem");
    writeFileSync(certFile, issued.certificate);
    for (const purpose of ["sslclient", "sslserver"] as const) {
      const v = opensslVerify({ caFile: path.join(pki, "ca/ca.pem"), certFile, purpose, verifyIp: "127.0.0.1" });
      assert.ok(v.ok, v.output);
    }
    const info = decodeCertificate(parsePem(issued.certificate)[0]!.der);
    assert.deepEqual(
      info.sans.map((s) => `${s.type === "ip" ? "IP" : s.type.toUpperCase()}:${s.value}`),
      WEB_SANS,
    );
    assert.equal(info.isCA, false);
    assert.deepEqual(info.extKeyUsage, ["serverAuth", "clientAuth"]);
    assert.equal(info.subjectAttributes.CN, "web");
    // Lifetime: exactly the service's ttl (1h), notBefore backdated by 5 minutes (a tenth of 1h
    // is more): the certificate never outlives its ttl.
    assert.equal(info.notAfter.getTime() - info.notBefore.getTime(), HOUR);
    const issuedAt = new Date(info.notBefore.getTime() + 5 * 60_000);
    assert.ok(
      issuedAt.getTime() >= Math.floor(before / 1000) * 1000 && issuedAt.getTime() <= Date.now(),
      `${info.notBefore.toISOString()}`,
    );
    assert.equal(new Date(issued.renewAfter).getTime(), issuedAt.getTime() + Math.floor((2 * (HOUR - 5 * 60_000)) / 3));
    // The ledger's row: the certificate itself, the token consumed by it.
    const row = await ledger.get(issued.serial);
    assert.ok(row);
    assert.equal(row.service, "web");
    assert.equal(row.how, "enroll");
    assert.deepEqual(row.sans, WEB_SANS);
    assert.ok(row.der.equals(parsePem(issued.certificate)[0]!.der));
    // Durable before the answer: another connection to the ledger file sees the row.
    const other = await openLedger(pki, undefined, { create: false });
    try {
      assert.equal((await other.get(issued.serial))?.sha256, row.sha256);
    } finally {
      await other.close();
    }
    assert.match(row.requester, /^127\.0\.0\.1:\d+$/);
    const used = (await ledger.tokens()).find((x) => t.startsWith(`mtk_${x.id}_`))!;
    assert.equal(used.usedBy, issued.serial);
    // The same token and the same key again (an enrollment retried after its answer was lost, as
    // after an ambiguous commit): that certificate again, 200, nothing new in the ledger.
    const rows = (await ledger.list()).length;
    const again = await call("/v1/enroll", { json: { service: "web", token: t, csr } });
    assert.equal(again.status, 200, again.body.toString());
    assert.deepEqual(again.json, issued);
    assert.equal((await ledger.list()).length, rows);
    // The same token with another key: used.
    problem(
      await call("/v1/enroll", { json: { service: "web", token: t, csr: newCsr(svc("web")).csr } }),
      401,
      "token-used",
    );
    await stillServes();
  });

  it("ok/enroll with a request made by `openssl req`, and a service's ttl (2h) is its lifetime", async () => {
    const keyFile = path.join(dir, "api-key.pem");
    const csrFile = path.join(dir, "api.csr");
    openssl([
      "req",
      "-new",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      keyFile,
      "-subj",
      "/CN=api",
      "-addext",
      "subjectAltName=DNS:api.local",
      "-out",
      csrFile,
    ]);
    const r = await call("/v1/enroll", {
      json: { service: "api", token: await token("api"), csr: readFileSync(csrFile, "utf8") },
    });
    assert.equal(r.status, 201, r.body.toString());
    const info = decodeCertificate(parsePem(r.json.certificate)[0]!.der);
    assert.equal(info.notAfter.getTime() - info.notBefore.getTime(), 2 * HOUR);
    assert.deepEqual(info.extKeyUsage, ["serverAuth"]);
    const certFile = path.join(dir, "api.pem");
    writeFileSync(certFile, r.json.certificate);
    assert.ok(
      opensslVerify({
        caFile: path.join(pki, "ca/ca.pem"),
        certFile,
        purpose: "sslserver",
        verifyHostname: "api.local",
      }).ok,
    );
  });

  it("ok/renew: mTLS with the current certificate -> a new certificate for the same service, recorded with renewedFrom", async () => {
    const first = await enroll();
    const { csr, keyPem } = newCsr(svc("web"));
    const r = await call("/v1/renew", { json: { csr }, cert: first.issued.chain, key: first.keyPem });
    assert.equal(r.status, 201, r.body.toString());
    assert.notEqual(r.json.serial, first.issued.serial);
    const row = await ledger.get(r.json.serial);
    assert.equal(row?.how, "renew");
    assert.equal(row?.renewedFrom, first.issued.serial);
    const certFile = path.join(dir, "renewed.pem");
    writeFileSync(certFile, r.json.certificate);
    assert.ok(opensslVerify({ caFile: path.join(pki, "ca/ca.pem"), certFile, purpose: "sslclient" }).ok);
    // The renewed certificate renews in its turn.
    const again = await call("/v1/renew", { json: { csr: newCsr(svc("web")).csr }, cert: r.json.chain, key: keyPem });
    assert.equal(again.status, 201, again.body.toString());
  });

  it("ok/bundle, health, metrics", async () => {
    const b = await call("/v1/bundle");
    assert.equal(b.status, 200);
    assert.equal(b.json.bundle, bundle);
    assert.equal(b.json.phase, "none");
    assert.deepEqual(b.json.sha256, [server.rootSha256]);
    const h = await call("/v1/health");
    assert.deepEqual(Object.keys(h.json).sort(), ["caNotAfter", "ledger", "status"]);
    const m = await call("/metrics");
    assert.equal(m.status, 200);
    const text = m.body.toString();
    assert.match(text, /mtlskit_serve_issued_total\{how="enroll"\} [1-9]/);
    assert.match(text, /mtlskit_serve_issued_total\{how="renew"\} [1-9]/);
    assert.match(text, /mtlskit_serve_refused_total\{reason="token-used"\} [1-9]/);
    assert.match(text, /mtlskit_serve_request_duration_seconds_bucket\{le="[\d.]+",route="\/v1\/enroll"\}/);
    assert.match(text, /mtlskit_serve_ledger_certificates [1-9]/);
    assert.match(text, /mtlskit_serve_ca_not_after_seconds \d{10}/);
  });

  it("metrics: a refusal before the handler counts under its route, a request no route matches under `unmatched`", async () => {
    const count = async (route: string) => {
      const text = (await call("/metrics")).body.toString();
      const m = new RegExp(`mtlskit_serve_request_duration_seconds_count\\{route="${route}"\\} (\\d+)`).exec(text);
      return m ? Number(m[1]) : 0;
    };
    const [renew, unmatched] = [await count("/v1/renew"), await count("unmatched")];
    assert.equal((await call("/v1/renew", { json: { csr: 5 } })).status, 400); // the body schema's refusal
    assert.equal((await call("/v1/nowhere")).status, 404);
    assert.equal(await count("/v1/renew"), renew + 1);
    assert.equal(await count("unmatched"), unmatched + 1);
  });

  describe("bad input: a clear 4xx problem document, and the server still serving", () => {
    let good: string;
    before(async () => {
      good = await token(); // a token survives every refusal below: nothing is recorded
    });
    const enrollWith = (body: Record<string, unknown>) =>
      call("/v1/enroll", { json: { service: "web", token: good, ...body } });
    const cases: [string, () => Promise<Reply>, number, string][] = [
      ["csr not PEM", () => enrollWith({ csr: "hello" }), 400, "csr-malformed"],
      [
        "csr PEM of garbage",
        () => enrollWith({ csr: encodePem("CERTIFICATE REQUEST", randomBytes(300)) }),
        400,
        "csr-malformed",
      ],
      [
        "csr truncated",
        () => {
          const der = parsePem(newCsr(svc("web")).csr)[0]!.der;
          return enrollWith({ csr: encodePem("CERTIFICATE REQUEST", der.subarray(0, der.length - 20)) });
        },
        400,
        "csr-malformed",
      ],
      ["a certificate in place of a CSR", () => enrollWith({ csr: bundle }), 400, "csr-malformed"],
      ["two CSRs", () => enrollWith({ csr: newCsr(svc("web")).csr + newCsr(svc("web")).csr }), 400, "csr-malformed"],
      [
        "csr badly signed",
        () => {
          const der = Buffer.from(parsePem(newCsr(svc("web")).csr)[0]!.der);
          der[der.length - 5]! ^= 0xff;
          return enrollWith({ csr: encodePem("CERTIFICATE REQUEST", der) });
        },
        400,
        "csr-signature",
      ],
      [
        "csr asks CA:TRUE",
        () => {
          const keyFile = path.join(dir, "ca-req-key.pem");
          const csrFile = path.join(dir, "ca-req.csr");
          openssl([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            keyFile,
            "-subj",
            "/CN=web",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-out",
            csrFile,
          ]);
          return enrollWith({ csr: readFileSync(csrFile, "utf8") });
        },
        422,
        "policy",
      ],
      [
        "csr asks a foreign SAN",
        () => enrollWith({ csr: newCsr(svc("web"), "ecdsa-p256", { dns: ["web", "evil.example"] }).csr }),
        422,
        "policy",
      ],
      [
        "csr asks a foreign identity",
        () => enrollWith({ csr: newCsr(svc("web"), "ecdsa-p256", { uris: ["spiffe://demo/dual/api"] }).csr }),
        422,
        "policy",
      ],
      ["csr with RSA 16384", () => enrollWith({ csr: encodePem("CERTIFICATE REQUEST", rsa16kCsr()) }), 422, "policy"],
      [
        "csr with a key type the manifest does not declare",
        () => enrollWith({ csr: newCsr(svc("web"), "ed25519").csr }),
        422,
        "policy",
      ],
      [
        "csr asks another subject",
        () => enrollWith({ csr: newCsr(svc("web"), "ecdsa-p256", { subject: { CN: "root" } }).csr }),
        422,
        "policy",
      ],
      [
        "csr field over its schema's 60,000 characters",
        () => enrollWith({ csr: "A".repeat(61_000) }),
        400,
        "bad-request",
      ],
      [
        "token malformed",
        () => enrollWith({ token: "not-a-token", csr: newCsr(svc("web")).csr }),
        401,
        "token-malformed",
      ],
      [
        "token unknown",
        () =>
          enrollWith({
            token: `mtk_${randomBytes(8).toString("hex")}_${randomBytes(32).toString("base64url")}`,
            csr: newCsr(svc("web")).csr,
          }),
        401,
        "token-unknown",
      ],
      [
        "token expired",
        async () =>
          enrollWith({
            token: await token("web", 15 * 60_000, new Date(Date.now() - HOUR)),
            csr: newCsr(svc("web")).csr,
          }),
        401,
        "token-expired",
      ],
      [
        "token revoked",
        async () => {
          const t = await token();
          await ledger.revokeToken(t.split("_")[1]!, new Date());
          return enrollWith({ token: t, csr: newCsr(svc("web")).csr });
        },
        401,
        "token-revoked",
      ],
      [
        "token of another service",
        async () => enrollWith({ token: await token("api"), csr: newCsr(svc("web")).csr }),
        403,
        "token-wrong-service",
      ],
      ["unknown service", () => enrollWith({ service: "nope", csr: newCsr(svc("web")).csr }), 404, "unknown-service"],
      [
        "a service that is not csr: true",
        async () => enrollWith({ service: "worker", token: await token("worker"), csr: newCsr(svc("worker")).csr }),
        403,
        "not-online",
      ],
      ["field missing", () => call("/v1/enroll", { json: { service: "web", token: good } }), 400, "bad-request"],
      ["field unknown", () => enrollWith({ csr: newCsr(svc("web")).csr, admin: true }), 400, "bad-request"],
      ["field of the wrong type", () => enrollWith({ csr: 5 }), 400, "bad-request"],
      ["body is a JSON array", () => call("/v1/enroll", { json: [1, 2] }), 400, "bad-request"],
      ["body is bad JSON", () => call("/v1/enroll", { raw: '{"service": "web",' }), 400, "bad-request"],
      ["body is empty", () => call("/v1/enroll", { raw: "", method: "POST" }), 400, "bad-request"],
      [
        "body has __proto__",
        () => call("/v1/enroll", { raw: `{"service":"web","token":"${good}","csr":"x","__proto__":{"a":1}}` }),
        400,
        "bad-request",
      ],
      [
        "content-type text/plain",
        () => call("/v1/enroll", { raw: "{}", type: "text/plain" }),
        415,
        "unsupported-media",
      ],
      [
        "content-type application/octet-stream",
        () => call("/v1/enroll", { raw: "{}", type: "application/octet-stream" }),
        415,
        "unsupported-media",
      ],
      ["10 MB body", () => call("/v1/enroll", { raw: Buffer.alloc(10 * 1024 * 1024, 0x20) }), 413, "too-large"],
      [
        "renew with no certificate",
        () => call("/v1/renew", { json: { csr: newCsr(svc("web")).csr } }),
        401,
        "cert-required",
      ],
      ["revoke with no certificate", () => call("/v1/revoke", { json: { serial: "01" } }), 401, "cert-required"],
      ["unknown route", () => call("/v1/nothing"), 404, "not-found"],
      ["GET on a POST route", () => call("/v1/enroll"), 404, "not-found"],
    ];
    for (const [name, send, status, code] of cases)
      it(`fail/${name} -> ${status} ${code}`, async () => {
        problem(await send(), status, code);
        await stillServes();
      });

    it("fail/policy refusals name the CSR's field", async () => {
      const r = await enrollWith({ csr: newCsr(svc("web"), "ecdsa-p256", { dns: ["web", "evil.example"] }).csr });
      problem(r, 422, "policy");
      assert.deepEqual(
        r.json.refusals.map((x: { field: string }) => x.field),
        ["extensionRequest.subjectAltName"],
      );
      assert.match(r.json.refusals[0].message, /DNS:evil\.example/);
    });

    it("ok/after every refusal the same token still enrolls (nothing was recorded for a refusal)", async () => {
      const r = await enrollWith({ csr: newCsr(svc("web")).csr });
      assert.equal(r.status, 201, r.body.toString());
    });

    it("fail/10,000 headers -> 431 or the connection closed, and the server survives", async () => {
      const headers: Record<string, string> = {};
      for (let i = 0; i < 10_000; i++) headers[`x-h${i}`] = "v";
      const r = await call("/v1/health", { headers }).catch((e: Error) => e);
      if (r instanceof Error) assert.match(r.message, /socket hang up|ECONNRESET|EPIPE/);
      else problem(r, 431, "headers-too-large");
      await stillServes();
      // Whatever the client saw (the answer, or a reset while it was still writing), the server refused it as such.
      assert.match(
        (await call("/metrics")).body.toString(),
        /^mtlskit_serve_refused_total\{reason="headers-too-large"\} [1-9]/m,
      );
    });

    it("fail/renewal with an expired certificate -> 401 cert-expired", async () => {
      // Forged with the CA's own key: the manifest's certificate for web, expired an hour ago.
      const ca = readCa(pki);
      assert.equal(ca.status, "ok");
      const issuerCa = ca.status === "ok" ? ca.ca : undefined;
      const pair = generateKey("ecdsa-p256");
      const spec = leafSpec(svc("web"), svc("web").slots[0]!, new Date(Date.now() - 3 * HOUR));
      spec.notAfter = new Date(Date.now() - HOUR);
      const issuer = {
        subject: issuerCa!.cert.subject,
        keyId: issuerCa!.keyId,
        keyType: issuerCa!.keyType,
        privateKey: issuerCa!.privateKey!,
      };
      const der = signTbs(encodeTbs(spec, issuer, pair.spki, newSerial()), issuer);
      const keyPem = createPrivateKey({ key: pair.pkcs8, format: "der", type: "pkcs8" })
        .export({ type: "pkcs8", format: "pem" })
        .toString();
      problem(
        await call("/v1/renew", {
          json: { csr: newCsr(svc("web")).csr },
          cert: encodePem("CERTIFICATE", der),
          key: keyPem,
        }),
        401,
        "cert-expired",
      );
      await stillServes();
    });

    it("fail/renewal with another CA's certificate -> 401 cert-untrusted", async () => {
      const other = tempDir("mtlskit-serve-other-");
      const file = writeManifest(other, MANIFEST);
      const r = await runCli(["apply", "-f", file, "--pki", path.join(other, "pki")]);
      assert.equal(r.code, 0, r.err);
      const cert = readFileSync(path.join(other, "pki/services/ops/cert.pem"), "utf8");
      const key = readFileSync(path.join(other, "pki/services/ops/key.pem"), "utf8");
      problem(await call("/v1/renew", { json: { csr: newCsr(svc("web")).csr }, cert, key }), 401, "cert-untrusted");
      problem(await call("/v1/revoke", { json: { serial: "01" }, cert, key }), 401, "cert-untrusted");
      await stillServes();
    });

    it("fail/renewal with the certificate of a service that is not csr: true -> 403 not-online", async () => {
      const cert = readFileSync(path.join(pki, "services/ops/cert.pem"), "utf8");
      const key = readFileSync(path.join(pki, "services/ops/key.pem"), "utf8");
      problem(await call("/v1/renew", { json: { csr: newCsr(svc("web")).csr }, cert, key }), 403, "not-online");
      await stillServes();
    });

    it("fail/renewal asking for another service's names with a valid certificate -> 422 policy", async () => {
      const e = await enroll();
      const csr = newCsr(svc("api"), "ecdsa-p256").csr;
      problem(await call("/v1/renew", { json: { csr }, cert: e.issued.chain, key: e.keyPem }), 422, "policy");
      await stillServes();
    });

    it("fail/revoke by a non-admin -> 403 not-admin; by the admin -> 200, in the ledger, ca/revoked.json and /v1/crl; renewal with the revoked certificate -> 403 cert-revoked", async () => {
      const victim = await enroll();
      problem(
        await call("/v1/revoke", {
          json: { serial: victim.issued.serial },
          cert: victim.issued.chain,
          key: victim.keyPem,
        }),
        403,
        "not-admin",
      );
      const ops = {
        cert: readFileSync(path.join(pki, "services/ops/cert.pem"), "utf8"),
        key: readFileSync(path.join(pki, "services/ops/key.pem"), "utf8"),
      };
      problem(await call("/v1/revoke", { json: { serial: "xyz" }, ...ops }), 400, "bad-request");
      problem(
        await call("/v1/revoke", { json: { serial: victim.issued.serial, reason: "bored" }, ...ops }),
        400,
        "bad-request",
      );
      const r = await call("/v1/revoke", { json: { serial: victim.issued.serial, reason: "keyCompromise" }, ...ops });
      assert.equal(r.status, 200, r.body.toString());
      assert.equal(r.json.serial, victim.issued.serial);
      assert.equal(r.json.reason, "keyCompromise");
      assert.equal((await ledger.get(victim.issued.serial))?.revokedReason, "keyCompromise");
      assert.ok(readRevocations(pki).some((x) => x.serial === victim.issued.serial));
      const crl = await call("/v1/crl");
      assert.equal(crl.status, 200);
      assert.equal(crl.headers["content-type"], "application/pkix-crl");
      assert.ok(decodeCrl(crl.body).entries.some((e) => e.serial === victim.issued.serial));
      // openssl reads the CRL too, and finds the serial in it.
      const crlFile = path.join(dir, "crl.der");
      writeFileSync(crlFile, crl.body);
      assert.match(
        openssl(["crl", "-inform", "DER", "-in", crlFile, "-noout", "-text"]).replace(/\s/g, "").toLowerCase(),
        new RegExp(`serialnumber:${victim.issued.serial}`),
      );
      problem(
        await call("/v1/renew", {
          json: { csr: newCsr(svc("web")).csr },
          cert: victim.issued.chain,
          key: victim.keyPem,
        }),
        403,
        "cert-revoked",
      );
      await stillServes();
    });

    it("fail/slowloris: 50 TLS connections trickling a header byte a second, 5 trickling a body and 10 that never handshake are closed by the deadlines, while the server answers", async () => {
      const sockets: Socket[] = [];
      const closed: Promise<number>[] = [];
      const open = new Set<string>();
      const started = Date.now();
      const timers: NodeJS.Timeout[] = [];
      try {
        for (let i = 0; i < 50; i++) {
          const s = tlsConnect({ host: "127.0.0.1", port: Number(url.port), ca: bundle });
          sockets.push(s);
          open.add(`tls${i}`);
          closed.push(
            new Promise((resolve) => s.on("close", () => (open.delete(`tls${i}`), resolve(Date.now() - started)))),
          );
          s.on("error", () => {});
          s.on("secureConnect", () => {
            s.write("GET /v1/health HTTP/1.1\r\nHost: x\r\n");
            const t = setInterval(() => s.writable && s.write("x"), 1000);
            timers.push(t);
          });
        }
        // Slow bodies: whole headers, then a body byte a second: the 10 s request deadline ends them.
        for (let i = 0; i < 5; i++) {
          const s = tlsConnect({ host: "127.0.0.1", port: Number(url.port), ca: bundle });
          sockets.push(s);
          open.add(`body${i}`);
          closed.push(
            new Promise((resolve) => s.on("close", () => (open.delete(`body${i}`), resolve(Date.now() - started)))),
          );
          s.on("error", () => {});
          s.on("secureConnect", () => {
            s.write(
              "POST /v1/enroll HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{",
            );
            timers.push(setInterval(() => s.writable && s.write(" "), 1000));
          });
        }
        for (let i = 0; i < 10; i++) {
          const s = netConnect({ host: "127.0.0.1", port: Number(url.port) });
          sockets.push(s);
          open.add(`tcp${i}`);
          closed.push(
            new Promise((resolve) => s.on("close", () => (open.delete(`tcp${i}`), resolve(Date.now() - started)))),
          );
          s.on("error", () => {});
        }
        await new Promise((r) => setTimeout(r, 1500));
        await stillServes(); // answered while 60 slow connections are open
        const bound = new Promise<"bound">((r) => setTimeout(() => r("bound"), 16_000).unref());
        const all = await Promise.race([Promise.all(closed), bound]);
        assert.notEqual(all, "bound", `still open after 16 s: ${[...open].join(" ")}`);
        await stillServes();
        // The trickling ones were answered 408 by the header deadline, not merely dropped.
        const m = /^mtlskit_serve_refused_total\{reason="request-timeout"\} (\d+)/m.exec(
          (await call("/metrics")).body.toString(),
        );
        assert.ok(m && Number(m[1]) >= 55, `request-timeout refusals: ${m?.[1]}`);
      } finally {
        for (const t of timers) clearInterval(t);
        for (const s of sockets) s.destroy();
      }
    });

    it("ok/the ledger down: health 503 ledger-unavailable, enroll 503 and nothing issued; back up: serving", async () => {
      const t = await token();
      ledger.failing.on = true;
      try {
        problem(await call("/v1/health"), 503, "ledger-unavailable");
        problem(
          await call("/v1/enroll", { json: { service: "web", token: t, csr: newCsr(svc("web")).csr } }),
          503,
          "ledger-unavailable",
        );
      } finally {
        ledger.failing.on = false;
      }
      await stillServes();
      assert.equal(
        (await call("/v1/enroll", { json: { service: "web", token: t, csr: newCsr(svc("web")).csr } })).status,
        201,
      );
    });
  });

  it("race/50 concurrent enrollments with one token: exactly 1 success, 49 token-used, 1 ledger row", async () => {
    const t = await token();
    const agent = new Agent({ keepAlive: true, maxSockets: 50 });
    try {
      const csrs = Array.from({ length: 50 }, () => newCsr(svc("web")).csr);
      const replies = await Promise.all(
        csrs.map((csr) => call("/v1/enroll", { json: { service: "web", token: t, csr }, agent })),
      );
      const ok = replies.filter((r) => r.status === 201);
      assert.equal(ok.length, 1, replies.map((r) => r.status).join(","));
      for (const r of replies.filter((x) => x.status !== 201)) problem(r, 401, "token-used");
      const id = t.split("_")[1]!;
      const rows = (await ledger.list()).filter((r) => r.tokenId === id);
      assert.equal(rows.length, 1);
      assert.equal(rows[0]!.serial, ok[0]!.json.serial);
    } finally {
      agent.destroy();
    }
  });

  it("ok/the log: structured lines, and never a token's secret, a key or a CSR", () => {
    assert.ok(logText.length > 0);
    for (const line of logText.trim().split("\n")) JSON.parse(line);
    assert.match(logText, /"msg":"issued"/);
    for (const s of secrets) {
      const at = logText.indexOf(s);
      assert.equal(at, -1, `a token secret is in the log: ${logText.slice(Math.max(0, at - 300), at + 100)}`);
    }
    assert.doesNotMatch(logText, /CERTIFICATE REQUEST|PRIVATE KEY|mtk_/);
  });
});

describe("mtlskit serve, the command", () => {
  let dir: string;
  let file: string;
  before(() => {
    dir = tempDir("mtlskit-serve-cli-");
    file = writeManifest(dir, MANIFEST);
  });

  it("fail/no CA in the PKI directory: exit 3 naming the fix, and no ledger made", { timeout: 30_000 }, async () => {
    const pki = path.join(dir, "empty");
    const r = await runCli(["serve", "-f", file, "--pki", pki, "--listen", "127.0.0.1:0"]);
    assert.equal(r.code, 3, r.err);
    assert.match(r.err, /holds no CA to issue with\n    fix: run `mtlskit apply -f /);
    assert.ok(!existsSync(path.join(pki, "ca/ledger.db")));
  });

  it("fail/the issuing CA's key kept offline: exit 3, pointing at ca.intermediate", { timeout: 60_000 }, async () => {
    const pki = path.join(dir, "offline");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    const off = await runCli(["ca", "offline", "--to", path.join(dir, "root-key.pem"), "--pki", pki]);
    assert.equal(off.code, 0, off.err);
    const r = await runCli(["serve", "-f", file, "--pki", pki, "--listen", "127.0.0.1:0"]);
    assert.equal(r.code, 3, r.err);
    assert.match(
      r.err,
      /the issuing CA's key is not in .* \(kept offline by `mtlskit ca offline`\)[\s\S]*fix: declare ca\.intermediate/,
    );
  });

  it("fail/a ledger that cannot be opened (a directory where ca/ledger.db belongs): exit 3", {
    timeout: 60_000,
  }, async () => {
    const pki = path.join(dir, "badledger");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    mkdirSync(path.join(pki, "ca/ledger.db"));
    const r = await runCli(["serve", "-f", file, "--pki", pki, "--listen", "127.0.0.1:0"]);
    assert.equal(r.code, 3, r.err);
    assert.match(r.err, /ledger/);
    assert.doesNotMatch(r.err, /This is a bug/);
  });

  it("ok/the CLI loads Fastify and prom-client only when serve runs (they cost every other command ~250 ms)", () => {
    const probe = `await import(${JSON.stringify(path.join(REPO, "src/cli/main.ts"))});
const { createRequire } = await import("node:module");
const loaded = () => Object.keys(createRequire(import.meta.url).cache).filter((k) => /node_modules\\/(fastify|prom-client)\\//.test(k)).length > 0;
const before = loaded();
await import(${JSON.stringify(path.join(REPO, "src/server/index.ts"))});
console.log(JSON.stringify([before, loaded()]));`;
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", probe], {
      cwd: REPO,
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), [false, true]);
  });

  it("fail/bad --workers (0, 65, not a number): exit 2 naming the range", async () => {
    for (const bad of ["0", "65", "two", "1.5"]) {
      const r = await runCli(["serve", "-f", file, "--pki", path.join(dir, "x"), "--workers", bad]);
      assert.equal(r.code, 2, bad);
      assert.match(r.err, /--workers must be a whole number from 1 \(one process\) to 64; got "/);
    }
    const help = await runCli(["serve", "--help"]);
    assert.match(help.out, /--workers N {6}HTTP worker processes sharing the port \(default 1/);
  });

  it("fail/bad --signer-threads (17, not a number) and --signer-threads with --workers 2: exit 2 naming the fix", async () => {
    for (const bad of ["17", "one", "-1"]) {
      const r = await runCli(["serve", "-f", file, "--pki", path.join(dir, "x"), `--signer-threads=${bad}`]);
      assert.equal(r.code, 2, bad);
      assert.match(r.err, /--signer-threads must be a whole number from 0 \(sign on the event loop\) to 16; got "/);
    }
    const both = await runCli([
      "serve",
      "-f",
      file,
      "--pki",
      path.join(dir, "x"),
      "--signer-threads",
      "2",
      "--workers",
      "2",
    ]);
    assert.equal(both.code, 2);
    assert.match(both.err, /--signer-threads and --workers N > 1 cannot be combined/);
    const help = await runCli(["serve", "--help"]);
    assert.match(
      help.out,
      /--signer-threads N\n\s+threads that decode, judge and sign each request off the event loop/,
    );
  });

  it("fail/bad --listen: exit 2", async () => {
    const r = await runCli(["serve", "-f", file, "--pki", path.join(dir, "x"), "--listen", ":8443"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--listen must be \[HOST:\]PORT/);
  });

  it("ok/a process: prints the URL and the root's SHA-256 (openssl's fingerprint), serves, and stops on SIGTERM with exit 0", {
    timeout: 90_000,
  }, async () => {
    const pki = path.join(dir, "live");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    const child = spawn(process.execPath, ["--import", "tsx", "test/helpers/cli-on-cue.ts"], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    try {
      let out = "";
      let err = "";
      child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
      child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      await new Promise<void>((resolve, reject) => {
        child.once("message", () => resolve());
        child.once("exit", () => reject(new Error(`exited before it was ready: ${err}`)));
      });
      child.send(["serve", "-f", file, "--pki", pki, "--listen", "127.0.0.1:0"]);
      const [, url, sha] = await new Promise<string[]>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no URL within 60 s: ${out} ${err}`)), 60_000);
        const look = () => {
          const m = /listens on (https:\/\/127\.0\.0\.1:\d+)\n  root SHA-256: ([0-9a-f]{64})/.exec(out);
          if (m) clearTimeout(timer), resolve([...m]);
        };
        child.stdout!.on("data", look);
        void exited.then(() => (clearTimeout(timer), reject(new Error(`exited: ${out} ${err}`))));
      });
      const want = openssl(["x509", "-in", path.join(pki, "ca/ca.pem"), "-noout", "-fingerprint", "-sha256"]);
      assert.equal(sha, want.trim().replace(/^.*=/, "").replace(/:/g, "").toLowerCase());
      const ca = readFileSync(path.join(pki, "ca/ca.pem"), "utf8");
      assert.equal((await httpsCall(url!, "/v1/health", { ca })).status, 200);
      assert.ok(existsSync(path.join(pki, "ca/ledger.db")));
      child.kill("SIGTERM");
      assert.equal(await exited, 0, err);
      assert.match(out, /stopped on SIGTERM/);
      assert.equal(err, "", "without --log the server writes no log lines");
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });
});

describe("mtlskit serve through a CA rotation, and its own certificate's renewal", () => {
  let dir: string;
  let file: string;
  let pki: string;
  let loaded: LoadedManifest;
  let server: RunningServer;
  let offset = 0;
  const svc = (name: string) => loaded.manifest.services.find((s) => s.name === name)!;

  /** post sends JSON over a fresh connection that trusts `ca`, with an optional client certificate. */
  const post = (p: string, json: unknown, ca: string, client?: { cert: string; key: string }) =>
    httpsCall(server.url, p, { json, ca, ...client });
  /** until polls `f` every 100 ms for at most 10 s. */
  async function until(what: string, f: () => Promise<boolean> | boolean) {
    for (let i = 0; i < 100; i++) {
      if (await f()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`not within 10 s: ${what}`);
  }
  const bundleNow = async () => (await httpsCall(server.url, "/v1/bundle", { insecure: true })).json;
  const caOf = (f: string) => readFileSync(path.join(pki, f), "utf8");
  const enrollWeb = async (ca: string) => {
    const { csr, keyPem } = newCsr(svc("web"));
    const t = await server.ledger.createToken("web", "enroll", 15 * 60_000, new Date());
    const r = await post("/v1/enroll", { service: "web", token: t.token, csr }, ca);
    assert.equal(r.status, 201, r.body.toString());
    return { cert: r.json.chain as string, key: keyPem };
  };
  const issuedBy = (certPem: string, caFile: string) => {
    const f = path.join(dir, `c-${randomBytes(4).toString("hex")}.pem`);
    writeFileSync(f, certPem);
    return opensslVerify({ caFile: path.join(pki, caFile), certFile: f, purpose: "sslclient" }).ok;
  };

  before(async () => {
    dir = tempDir("mtlskit-serve-rotate-");
    file = writeManifest(dir, MANIFEST);
    pki = path.join(dir, "pki");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    loaded = loadManifest(file);
    server = await startServer({
      manifest: loaded,
      pkiDir: pki,
      listen: { host: "127.0.0.1", port: 0 },
      now: () => new Date(Date.now() + offset),
      checkMs: 100,
    });
  });
  after(async () => {
    await server?.close();
  });

  it("ok/prepared and active: the bundle holds both CAs, an old CA's certificate renews, activated services are issued by the next CA; retired: the old CA's certificate is untrusted", async () => {
    const old = caOf("ca/ca.pem");
    const a = await enrollWeb(old);
    assert.ok(issuedBy(a.cert, "ca/ca.pem"));
    const prep = await runCli(["ca", "rotate", "prepare", "-f", file, "--pki", pki]);
    assert.equal(prep.code, 0, prep.err);
    await until("phase prepared", async () => (await bundleNow()).phase === "prepared");
    const both = await bundleNow();
    assert.equal(both.sha256.length, 2);
    assert.equal(both.bundle, old + caOf("ca/next/ca.pem"));
    const act = await runCli(["ca", "rotate", "activate", "-f", file, "--pki", pki]);
    assert.equal(act.code, 0, act.err);
    await until("phase active", async () => (await bundleNow()).phase === "active");
    const req = newCsr(svc("web"));
    const r = await post("/v1/renew", { csr: req.csr }, both.bundle, a);
    assert.equal(r.status, 201, r.body.toString());
    assert.ok(issuedBy(r.json.certificate, "ca/next/ca.pem"), "the renewed certificate is not the next CA's");
    const b = { cert: r.json.chain as string, key: req.keyPem };
    const ret = await runCli(["ca", "rotate", "retire", "-f", file, "--pki", pki, "--force"]);
    assert.equal(ret.code, 0, ret.err);
    await until("phase retired", async () => (await bundleNow()).phase === "retired");
    const fresh = caOf("ca/ca.pem");
    assert.notEqual(fresh, old);
    // The server now presents a certificate of the new CA: a client trusting only it connects.
    const c = await enrollWeb(fresh);
    assert.ok(issuedBy(c.cert, "ca/ca.pem"));
    const refused = await post("/v1/renew", { csr: newCsr(svc("web")).csr }, fresh, a);
    assert.equal(refused.status, 401);
    assert.equal(refused.json.error, "cert-untrusted");
    // The next CA's certificate, issued while active, keeps renewing under the retired rotation.
    assert.equal((await post("/v1/renew", { csr: newCsr(svc("web")).csr }, fresh, b)).status, 201);
  });

  it("ok/the server's own certificate is renewed once 2/3 of its lifetime has passed, and new connections get the new one", async () => {
    const first = server.serverCertificate();
    offset = 17 * HOUR;
    await until("a new server certificate", () => server.serverCertificate() !== first);
    const x = new X509Certificate(server.serverCertificate());
    assert.ok(new Date(x.validFrom).getTime() > Date.now() + 16 * HOUR);
    const seen = await new Promise<string>((resolve, reject) => {
      const s = tlsConnect({ host: "127.0.0.1", port: server.port, rejectUnauthorized: false }, () => {
        resolve(s.getPeerX509Certificate()!.serialNumber);
        s.destroy();
      });
      s.on("error", reject);
    });
    assert.equal(seen, x.serialNumber);
    offset = 0;
  });
});

describe("mtlskit serve with ca.intermediate and the root's key offline", () => {
  let dir: string;
  let pki: string;
  let server: RunningServer;
  let loaded: LoadedManifest;
  const svc = (name: string) => loaded.manifest.services.find((s) => s.name === name)!;
  const post = (p: string, json: unknown, client?: { cert: string; key: string }) =>
    httpsCall(server.url, p, { json, ca: readFileSync(path.join(pki, "ca/ca.pem"), "utf8"), ...client });

  before(async () => {
    dir = tempDir("mtlskit-serve-int-");
    const file = writeManifest(
      dir,
      MANIFEST.replace("cluster: demo\n", "cluster: demo\nca:\n  intermediate: { key: ecdsa-p256 }\n"),
    );
    pki = path.join(dir, "pki");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    const off = await runCli(["ca", "offline", "--to", path.join(dir, "root-key.pem"), "--pki", pki]);
    assert.equal(off.code, 0, off.err);
    loaded = loadManifest(file);
    loaded.manifest.serve = { maxTtlMs: 24 * HOUR, admins: ["ops"] };
    server = await startServer({ manifest: loaded, pkiDir: pki, listen: { host: "127.0.0.1", port: 0 } });
  });
  after(async () => {
    await server?.close();
  });

  it("ok/the intermediate signs: the chain carries it, openssl verifies through it, the chain renews; the server presents leaf, intermediate, root", async () => {
    assert.equal(parsePem(server.serverCertificate()).length, 3);
    const { csr, keyPem } = newCsr(svc("web"));
    const t = await server.ledger.createToken("web", "enroll", 15 * 60_000, new Date());
    const r = await post("/v1/enroll", { service: "web", token: t.token, csr });
    assert.equal(r.status, 201, r.body.toString());
    const blocks = parsePem(r.json.chain);
    assert.equal(blocks.length, 2);
    assert.equal(encodePem("CERTIFICATE", blocks[1]!.der), readFileSync(path.join(pki, "ca/intermediate.pem"), "utf8"));
    const certFile = path.join(dir, "web.pem");
    writeFileSync(certFile, r.json.certificate);
    const v = opensslVerify({
      caFile: path.join(pki, "ca/ca.pem"),
      certFile,
      untrusted: path.join(pki, "ca/intermediate.pem"),
      purpose: "sslclient",
    });
    assert.ok(v.ok, v.output);
    const again = await post("/v1/renew", { csr: newCsr(svc("web")).csr }, { cert: r.json.chain, key: keyPem });
    assert.equal(again.status, 201, again.body.toString());
    // Revocation is recorded at once; the CRL waits for the root's key (the root signs the CRL).
    const ops = {
      cert: readFileSync(path.join(pki, "services/ops/cert.pem"), "utf8"),
      key: readFileSync(path.join(pki, "services/ops/key.pem"), "utf8"),
    };
    const rv = await post("/v1/revoke", { serial: r.json.serial }, ops);
    assert.equal(rv.status, 200, rv.body.toString());
    assert.match(rv.json.crl, /^pending: the root's key is offline/);
    assert.ok(readRevocations(pki).some((x) => x.serial === r.json.serial));
    const refused = await post("/v1/renew", { csr: newCsr(svc("web")).csr }, { cert: r.json.chain, key: keyPem });
    assert.equal(refused.json.error, "cert-revoked");
  });
});

describe("the online lifetime", () => {
  it("ok/ttl (default 1h), capped by serve.maxTtl (default 24h) and by the issuing CA's notAfter", () => {
    const dir = tempDir("mtlskit-serve-ttl-");
    const loaded = loadManifest(writeManifest(dir, MANIFEST));
    const m = loaded.manifest;
    const web = m.services.find((s) => s.name === "web")!;
    assert.equal(lifetimeOf(m, web), HOUR);
    web.ttlMs = 48 * HOUR;
    assert.equal(lifetimeOf(m, web), 24 * HOUR);
    m.serve = { maxTtlMs: 2 * HOUR, admins: [] };
    assert.equal(lifetimeOf(m, web), 2 * HOUR);
    const csr = decodeCsr(parsePem(newCsr(web).csr)[0]!.der);
    const now = new Date("2027-01-01T00:00:00Z");
    const r = csrPolicy(web, csr, now, { lifetimeMs: 2 * HOUR, notAfterMax: new Date("2027-01-01T00:30:00Z") });
    assert.ok(r.ok);
    assert.equal(r.spec.notAfter.toISOString(), "2027-01-01T00:30:00.000Z");
    const s = csrPolicy(web, csr, now, { lifetimeMs: 2 * HOUR });
    assert.ok(s.ok);
    assert.equal(s.spec.notBefore.toISOString(), "2026-12-31T23:55:00.000Z");
    assert.equal(s.spec.notAfter.toISOString(), "2027-01-01T01:55:00.000Z", "notAfter - notBefore is the lifetime");
    const short = csrPolicy(web, csr, now, { lifetimeMs: 60_000 });
    assert.ok(short.ok);
    assert.equal(short.spec.notBefore.toISOString(), "2026-12-31T23:59:54.000Z", "a tenth of a minute's backdate");
    assert.equal(short.spec.notAfter.toISOString(), "2027-01-01T00:00:54.000Z");
    const d = csrPolicy(web, csr, now);
    assert.ok(d.ok);
    assert.equal(
      d.spec.notAfter.getTime(),
      now.getTime() + web.validityMs,
      "without options: the service's validity, as sign issues",
    );
  });
});

describe("mtlskit serve on IPv6 loopback", () => {
  it("ok/[::1]: the URL brackets the address, the server's certificate names IP ::1, a client verifying the name connects", async () => {
    const dir = tempDir("mtlskit-serve-v6-");
    const file = writeManifest(dir, MANIFEST);
    const pki = path.join(dir, "pki");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    const server = await startServer({ manifest: loadManifest(file), pkiDir: pki, listen: { host: "::1", port: 0 } });
    try {
      assert.match(server.url, /^https:\/\/\[::1\]:\d+$/);
      assert.equal(
        new X509Certificate(server.serverCertificate()).subjectAltName,
        "DNS:localhost, IP Address:0:0:0:0:0:0:0:1",
      );
      const health = await httpsCall(server.url, "/v1/health", {
        ca: readFileSync(path.join(pki, "ca/ca.pem"), "utf8"),
      });
      assert.equal(health.status, 200);
    } finally {
      await server.close();
    }
  });
});

describe("parseCsrText: a plain PEM request (the fast path) and every other spelling (parsePem's pass) agree", () => {
  it("ok/LF, CRLF, leading text, a trailing newline: the same request; fail/bad base64, a padding inside, a short body, a CERTIFICATE: csr-malformed", () => {
    const { csrPem } = newKeyAndCsr("web", "ecdsa-p256");
    const der = parsePem(csrPem)[0]!.der;
    for (const [name, text] of [
      ["LF", csrPem],
      ["CRLF", csrPem.replace(/\n/g, "\r\n")],
      ["no final newline", csrPem.trimEnd()],
      ["text before the block", `a request:\n${csrPem}`],
      ["an RFC 1421 header", csrPem.replace("-----\n", "-----\nComment: x\n\n")],
    ] as const)
      assert.deepEqual(parseCsrText(text).der, der, name);
    const body = csrPem.split("\n")[1]!;
    for (const [name, text] of [
      ["a character outside base64", csrPem.replace(body, `*${body.slice(1)}`)],
      ["padding inside", csrPem.replace(body, `${body.slice(0, 8)}=${body.slice(9)}`)],
      ["a body not a multiple of 4", csrPem.replace(body, body.slice(1))],
      ["a CERTIFICATE block", csrPem.replace(/CERTIFICATE REQUEST/g, "CERTIFICATE")],
    ] as const)
      assert.throws(
        () => parseCsrText(text),
        (e: Error & { code?: string }) => e.code === "csr-malformed",
        name,
      );
  });
});
