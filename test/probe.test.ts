/**
 * mtlskit probe against real servers on loopback: `openssl s_server` (client certificates
 * demanded with -Verify, requested with -verify, or not at all) and Node tls servers presenting
 * forged certificates with one defect each. The client's files are the quick start's PKI.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import * as tls from "node:tls";
import { after, before, describe, it } from "node:test";
import { Material } from "../src/check/index.ts";
import { readCertFields } from "../src/pki/cert.ts";
import { run } from "../src/cli/main.ts";
import { listen } from "../src/probe/listen.ts";
import { REPO, runCli, tempDir, type CliResult } from "./helpers/cli.ts";
import { forge, keyFromPem, newKey, writeForged, type Forged, type ForgeSpec } from "./helpers/forge.ts";

const MANIFEST = path.join(REPO, "examples/quickstart.yaml");
const API_ID = "spiffe://quickstart.local/server/api";

/** freePort finds a port nothing listens on (listen on 0, then close). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const stops: (() => Promise<void>)[] = [];

/** listening runs `mtlskit probe --listen 0 ...` in-process; `port` resolves once it prints where it listens (bounded: 10 s). */
function listening(args: string[]): { port: Promise<number>; done: Promise<CliResult> } {
  let out = "";
  let err = "";
  let found: (p: number) => void;
  const port = new Promise<number>((resolve, reject) => {
    found = resolve;
    setTimeout(() => reject(new Error(`no "listening on" in 10 s: ${out}${err}`)), 10_000).unref();
  });
  const seen = () => {
    const m = /listening on 127\.0\.0\.1:(\d+)/.exec(out + err);
    if (m) found(Number(m[1]));
  };
  const done = run(["probe", "--listen", "0", ...args], {
    out: (t) => ((out += t), seen()),
    err: (t) => ((err += t), seen()),
    tty: false,
    color: false,
  }).then((code) => ({ code, out, err }));
  return { port, done };
}

/** client connects to the listening probe on loopback and resolves when the probe closes the connection (bounded: 5 s). */
function client(port: number, creds: { cert?: string; key?: string }): Promise<void> {
  return new Promise((resolve) => {
    const s = tls.connect({
      host: "127.0.0.1",
      port,
      servername: "api.localhost",
      ALPNProtocols: ["h2", "http/1.1"],
      rejectUnauthorized: false,
      ...creds,
    });
    const timer = setTimeout(() => s.destroy(), 5_000);
    s.on("error", () => {});
    s.on("close", () => (clearTimeout(timer), resolve()));
  });
}

/** sServer starts `openssl s_server` on 127.0.0.1 and resolves its port once it prints ACCEPT (bounded: 10 s). */
async function sServer(files: { cert: string; key: string; ca: string }, verify: string[]): Promise<number> {
  const port = await freePort();
  // stdin stays open: s_server ends a connection when its standard input reaches EOF.
  const p: ChildProcess = spawn(
    "openssl",
    [
      "s_server",
      "-accept",
      `127.0.0.1:${port}`,
      "-cert",
      files.cert,
      "-key",
      files.key,
      "-CAfile",
      files.ca,
      ...verify,
    ],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  stops.push(async () => {
    if (p.exitCode === null) {
      const gone = new Promise((r) => p.once("exit", r));
      p.kill();
      await gone;
    }
  });
  await new Promise<void>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`s_server did not print ACCEPT in 10 s: ${out}`)), 10_000);
    p.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("ACCEPT")) {
        clearTimeout(timer);
        resolve();
      }
    });
    p.once("exit", (code) => reject(new Error(`s_server exited ${code}: ${out}`)));
  });
  return port;
}

/** nodeServer starts a Node TLS server demanding client certificates from `ca`; it keeps accepted connections open. */
async function nodeServer(opts: { cert: string; key: string; ca: string }): Promise<number> {
  const srv = tls.createServer({ ...opts, requestCert: true, rejectUnauthorized: true });
  const sockets = new Set<net.Socket>();
  srv.on("connection", (s: net.Socket) => (sockets.add(s), s.on("error", () => {})));
  srv.on("tlsClientError", () => {});
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  stops.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => srv.close(() => r()));
  });
  return (srv.address() as net.AddressInfo).port;
}

/** plaintextServer answers anything with an HTTP 400, as a plain HTTP port does. */
async function plaintextServer(): Promise<number> {
  const srv = net.createServer((s) => {
    s.on("error", () => {});
    s.once("data", () => s.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  stops.push(() => new Promise((r) => srv.close(() => r())));
  return (srv.address() as net.AddressInfo).port;
}

describe("probe", () => {
  let pki: string;
  let dir: string;
  let caPem: string;
  let ca: Forged;
  const svc = (name: string) => ({
    cert: path.join(pki, "services", name, "cert.pem"),
    key: path.join(pki, "services", name, "key.pem"),
    ca: path.join(pki, "services", name, "ca.pem"),
  });
  const probe = (port: number, as: string, ...more: string[]) =>
    runCli(["probe", `127.0.0.1:${port}`, "--as", as, "-f", MANIFEST, "--pki", pki, "--timeout", "3", ...more]);
  /** apiLike forges a server certificate like api's from the quick start CA, with `spec` overriding. */
  const apiLike = (spec: ForgeSpec = {}) =>
    forge({
      cn: "api",
      o: "Quickstart",
      issuer: ca,
      eku: ["serverAuth"],
      sans: ["DNS:api", "DNS:localhost", "IP:127.0.0.1", `URI:${API_ID}`],
      ...spec,
    });
  const serve = (leaf: Forged) => nodeServer({ cert: leaf.pem + caPem, key: leaf.key.pem, ca: caPem });

  before(async () => {
    dir = tempDir("mtlskit-probe-");
    pki = path.join(dir, "pki");
    const r = await runCli(["apply", "-f", MANIFEST, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    caPem = readFileSync(path.join(pki, "ca/ca.pem"), "utf8");
    const der = new Material().certsOfPem(caPem) as { der: Buffer; info: { subjectKeyId?: string } }[];
    ca = {
      der: der[0]!.der,
      pem: caPem,
      key: keyFromPem(readFileSync(path.join(pki, "ca/ca-key.pem"), "utf8"), "ec-p256"),
      subject: readCertFields(der[0]!.der).subject,
      ski: Buffer.from(der[0]!.info.subjectKeyId!, "hex"),
    };
  });
  after(async () => {
    for (const stop of stops.splice(0)) await stop();
  });

  it("ok/healthy mTLS (s_server -Verify 1): TLSv1.3, the cipher, the server is api as declared", async () => {
    const port = await sServer(svc("api"), ["-Verify", "1"]);
    const r = await probe(port, "db");
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /demanded: the server refused the handshake: the server requires a client certificate/);
    assert.match(r.out, /accepted: TLSv1\.3, TLS_AES_\w+/);
    assert.match(r.out, /verification against .*db\/ca\.pem: trusted/);
    assert.match(r.out, new RegExp(`identity: ${API_ID} = service api`));
    assert.match(r.out, /OK: 0 errors, 0 warnings/);
  });

  it("ok/--json shape", async () => {
    const port = await sServer(svc("api"), ["-Verify", "1"]);
    const r = await probe(port, "db", "--json");
    assert.equal(r.code, 0, r.out + r.err);
    const j = JSON.parse(r.out);
    assert.deepEqual(j.target, { host: "127.0.0.1", port, servername: null });
    assert.equal(j.as, "db");
    assert.equal(j.reachable, true);
    assert.equal(j.clientCertificate.demanded, true);
    assert.equal(j.session.ok, true);
    assert.equal(j.session.protocol, "TLSv1.3");
    assert.match(j.session.cipher, /^TLS_/);
    assert.match(j.chain[0].subject, /CN=api/);
    assert.match(j.chain[0].sha256, /^[0-9a-f]{64}$/);
    assert.match(j.chain[0].notAfter, /^\d{4}-\d{2}-\d{2}T/);
    assert.equal(typeof j.chain[0].daysLeft, "number");
    assert.equal(j.verification.trusted, true);
    assert.deepEqual(j.identity, { uri: API_ID, service: "api" });
    assert.deepEqual(j.summary, { errors: 0, warnings: 0 });
    assert.deepEqual(j.findings, []);
  });

  for (const [name, verify] of [
    ["requests a certificate optionally (-verify 1)", ["-verify", "1"]],
    ["does not ask for one", []],
  ] as const) {
    it(`fail/server ${name}: server-accepts-anonymous`, async () => {
      const port = await sServer(svc("api"), [...verify]);
      const r = await probe(port, "db", "--json");
      assert.equal(r.code, 1, r.out + r.err);
      const j = JSON.parse(r.out);
      assert.equal(j.clientCertificate.demanded, false);
      assert.deepEqual(
        j.findings.map((f: { code: string }) => f.code),
        ["server-accepts-anonymous"],
      );
    });
  }

  const broken: [string, () => Forged, string, RegExp][] = [
    [
      "a server certificate from another CA",
      () =>
        forge({
          cn: "api",
          issuer: forge({ ca: true, cn: "Other CA" }),
          eku: ["serverAuth"],
          sans: ["IP:127.0.0.1", `URI:${API_ID}`],
        }),
      "server-untrusted",
      /does not chain to .*db\/ca\.pem: its issuer CN=Other CA is not in/,
    ],
    [
      "a server certificate without the dialed IP",
      () => apiLike({ sans: ["DNS:api", `URI:${API_ID}`] }),
      "server-address",
      /we dialed 127\.0\.0\.1, but the server's certificate has no IP SAN 127\.0\.0\.1 \(SANs: DNS:api, URI:/,
    ],
    [
      "a server certificate with clientAuth only",
      () => apiLike({ eku: ["clientAuth"] }),
      "server-usage",
      /may not serve: its extendedKeyUsage is clientAuth, without serverAuth/,
    ],
    [
      "an expired server certificate",
      () =>
        apiLike({ notBefore: new Date(Date.now() - 20 * 86_400_000), notAfter: new Date(Date.now() - 2 * 86_400_000) }),
      "server-validity",
      /the server's certificate expired on \d{4}-/,
    ],
  ];
  for (const [name, make, code, message] of broken) {
    it(`fail/${name}: ${code}`, async () => {
      const port = await serve(make());
      const r = await probe(port, "db");
      assert.equal(r.code, 1, r.out + r.err);
      assert.match(r.out, new RegExp(`error +${code}: `));
      assert.match(r.out, message);
      assert.match(r.out, /accepted: TLSv1\.3/, "the server accepted db's certificate");
    });
  }

  // Issue 11: probe called an RSA server with keyEncipherment but no digitalSignature an error, and
  // its fix asked for the serverAuth the certificate already had. OpenSSL accepts it in TLS 1.2 and
  // 1.3 (this handshake is one), Go never checks keyUsage; GnuTLS and Java refuse it.
  it("ok/an RSA server with keyEncipherment, without digitalSignature: a server-usage-strict warning naming GnuTLS and Java, exit 0", async () => {
    const port = await serve(apiLike({ key: newKey("rsa-2048"), ku: ["keyEncipherment"] }));
    const r = await probe(port, "db");
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(
      r.out,
      /warning +server-usage-strict: the server's certificate CN=api works with OpenSSL and Go clients, but its keyUsage is keyEncipherment, without digitalSignature.*GnuTLS .*Java/,
    );
    assert.match(r.out, /add digitalSignature to its keyUsage \(keyUsage = digitalSignature, keyEncipherment\)/);
    assert.doesNotMatch(r.out, /extendedKeyUsage serverAuth/);
  });
  it("fail/a server whose keyUsage has none of digitalSignature, keyEncipherment, keyAgreement: server-usage, fixed by adding digitalSignature (not serverAuth)", async () => {
    const port = await serve(apiLike({ key: newKey("rsa-2048"), ku: ["contentCommitment"] }));
    const r = await probe(port, "db", "--json");
    assert.equal(r.code, 1, r.out + r.err);
    const f = JSON.parse(r.out).findings.find((x: { code: string }) => x.code === "server-usage");
    assert.match(f.message, /without digitalSignature.*OpenSSL refuses it \(`unsuitable certificate purpose`\)/);
    assert.match(f.fix, /add digitalSignature to its keyUsage/);
    assert.doesNotMatch(f.fix, /serverAuth/);
  });

  it("ok/--servername: a server whose certificate names only api, dialed by IP, is verified as api (no server-address), and the report names the SNI", async () => {
    const leaf = apiLike({ sans: ["DNS:api", `URI:${API_ID}`] });
    const port = await serve(leaf);
    const without = await probe(port, "db", "--json");
    assert.ok(JSON.parse(without.out).findings.some((f: { code: string }) => f.code === "server-address"));
    const r = await probe(port, "db", "--servername", "api", "--json");
    const j = JSON.parse(r.out);
    assert.equal(j.target.servername, "api");
    assert.deepEqual(
      j.findings.map((f: { code: string }) => f.code).filter((c: string) => c === "server-address"),
      [],
    );
  });
  it("fail/--servername naming what the certificate lacks: server-address says what was dialed and verified", async () => {
    const port = await serve(apiLike());
    const r = await probe(port, "db", "--servername", "db.example");
    assert.equal(r.code, 1, r.out + r.err);
    assert.match(
      r.out,
      /we dialed 127\.0\.0\.1 as db\.example \(--servername\), but the server's certificate has no DNS SAN matching db\.example/,
    );
  });
  for (const [bad, message] of [
    ["10.0.0.5", /--servername must be a DNS name \(SNI never carries an IP/],
    ["not a name!", /--servername must be a DNS name/],
  ] as const) {
    it(`fail/usage: --servername ${bad} exits 2`, async () => {
      const r = await probe(1, "db", "--servername", bad);
      assert.equal(r.code, 2);
      assert.match(r.err, message);
    });
  }

  it("fail/the server at db's declared address for api is db: server-identity", async () => {
    const port = await nodeServer({
      cert: readFileSync(svc("db").cert, "utf8"),
      key: readFileSync(svc("db").key, "utf8"),
      ca: caPem,
    });
    const r = await probe(port, "db");
    assert.equal(r.code, 1, r.out + r.err);
    assert.match(
      r.out,
      /server-identity: the server at 127\.0\.0\.1 is db \(spiffe:\/\/quickstart\.local\/dual\/db\), but .*quickstart\.yaml says db dials api there/,
    );
  });

  it("fail/the server refuses our certificate (another CA on its side): diagnosed as the server's refusal", async () => {
    const other = forge({ ca: true, cn: "Other CA" });
    const otherDir = tempDir("mtlskit-probe-other-");
    const { cert } = writeForged(otherDir, "other-ca", other);
    // -verify_return_error: without it s_server logs the verify error and carries on.
    const port = await sServer({ ...svc("api"), ca: cert }, ["-Verify", "1", "-verify_return_error"]);
    const r = await probe(port, "db");
    assert.equal(r.code, 1, r.out + r.err);
    assert.match(r.out, /FAILED after a TLSv1\.3 handshake .*alert unknown ca/);
    assert.match(r.out, /explain: peer-unknown-ca: the peer does not trust the CA of this side's certificate/);
    assert.match(
      r.out,
      /the SERVER refused the client's certificate because the server's trust bundle does not hold the CA that issued it/,
    );
    assert.match(r.out, /error +client-refused: 127\.0\.0\.1:\d+ refused db's certificate/);
    assert.match(r.out, /verification against .*: trusted/, "the server's own certificate is still shown and judged");
  });

  it("fail/nothing listens: exit 3, in plain words", async () => {
    const port = await freePort();
    const r = await probe(port, "db");
    assert.equal(r.code, 3, r.out + r.err);
    assert.match(r.out, new RegExp(`nothing listens on 127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\); not a TLS problem`));
    const j = JSON.parse((await probe(port, "db", "--json")).out);
    assert.equal(j.reachable, false);
    assert.equal(j.unreachable.code, "ECONNREFUSED");
  });

  it("fail/a plaintext server on the port: handshake-failed, one side speaks TLS, the other plaintext", async () => {
    const port = await plaintextServer();
    const r = await probe(port, "db");
    assert.equal(r.code, 1, r.out + r.err);
    assert.match(r.out, /explain: plaintext-mismatch: one side speaks TLS, the other plaintext/);
    assert.match(r.out, /error +handshake-failed: no TLS session with 127\.0\.0\.1:\d+: .*wrong version number/);
    assert.doesNotMatch(r.out, /server-accepts-anonymous/);
  });

  it("ok/explicit files instead of --as", async () => {
    const port = await sServer(svc("api"), ["-Verify", "1"]);
    const w = svc("worker");
    const r = await runCli([
      "probe",
      `127.0.0.1:${port}`,
      "--cert",
      w.cert,
      "--key",
      w.key,
      "--ca",
      w.ca,
      "--timeout",
      "3",
    ]);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /identity: spiffe:\/\/quickstart\.local\/server\/api\n/);
  });

  for (const [name, args, message] of [
    ["no endpoint", ["--as", "db"], /name the endpoint/],
    ["not HOST:PORT", ["127.0.0.1", "--as", "db"], /is not HOST:PORT/],
    ["--as and --cert", ["127.0.0.1:1", "--as", "db", "--cert", "x.pem"], /--as is incompatible with --cert/],
    ["--cert without --key and --ca", ["127.0.0.1:1", "--cert", "x.pem"], /missing --key, --ca/],
    ["a bad timeout", ["127.0.0.1:1", "--as", "db", "--timeout", "soon"], /--timeout must be a number/],
  ] as const) {
    it(`fail/usage: ${name} exits 2`, async () => {
      const r = await runCli(["probe", ...args]);
      assert.equal(r.code, 2, r.out + r.err);
      assert.match(r.err, message);
    });
  }
  it("fail/usage: an unknown service exits 2 and lists the services", async () => {
    const r = await runCli(["probe", "127.0.0.1:1", "--as", "nobody", "-f", MANIFEST, "--pki", pki]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /--as nobody: not a service of .*; services are: api, worker, db/);
  });

  describe("--listen", () => {
    const WORKER_ID = "spiffe://quickstart.local/client/worker";
    const listenAs = (as: string, ...more: string[]) =>
      listening(["--as", as, "-f", MANIFEST, "--pki", pki, "--timeout", "10", ...more]);
    const pem = (file: string) => readFileSync(file, "utf8");

    it("ok/worker's quick start certificate: trusted, identity worker, connection worker -> api declared", async () => {
      const l = listenAs("api");
      const port = await l.port;
      await client(port, { cert: pem(svc("worker").cert), key: pem(svc("worker").key) });
      const r = await l.done;
      assert.equal(r.code, 0, r.out + r.err);
      assert.match(r.out, /TLSv1\.3, TLS_\w+, SNI api\.localhost, ALPN h2/);
      assert.match(r.out, /verification: trusted \(.*CN=worker/);
      assert.match(r.out, new RegExp(`identity: ${WORKER_ID} = service worker, connection worker -> api declared`));
      assert.match(r.out, /OK: 0 errors, 0 warnings from 127\.0\.0\.1:\d+/);
    });

    // Issue 11: OpenSSL's sslclient purpose accepts keyAgreement instead of digitalSignature; GnuTLS servers refuse it.
    it("ok/a client certificate with keyAgreement, without digitalSignature: a client-usage-strict warning, and --count 2 with one without either: client-usage", async () => {
      const l = listenAs("api", "--count", "2", "--json");
      const port = await l.port;
      const ka = forge({
        cn: "worker",
        o: "Quickstart",
        issuer: ca,
        eku: ["clientAuth"],
        ku: ["keyAgreement"],
        sans: [`URI:${WORKER_ID}`],
      });
      await client(port, { cert: ka.pem, key: ka.key.pem });
      const none = forge({
        cn: "worker",
        o: "Quickstart",
        issuer: ca,
        eku: ["clientAuth"],
        ku: ["contentCommitment"],
        sans: [`URI:${WORKER_ID}`],
      });
      await client(port, { cert: none.pem, key: none.key.pem });
      const r = await l.done;
      assert.equal(r.code, 1, r.out + r.err);
      const j = JSON.parse(r.out);
      assert.deepEqual(
        j.map((x: { findings: { code: string; severity: string }[] }) => x.findings.map((f) => [f.code, f.severity])),
        [[["client-usage-strict", "warning"]], [["client-usage", "error"]]],
      );
      assert.match(
        j[0].findings[0].message,
        /works with OpenSSL and Go servers, but its keyUsage is keyAgreement, without digitalSignature.*GnuTLS server refuses it/,
      );
      assert.match(j[1].findings[0].message, /an OpenSSL server refuses it \(`unsuitable certificate purpose`\)/);
      for (const f of [j[0].findings[0], j[1].findings[0]])
        assert.match(f.fix, /add digitalSignature to its keyUsage \(keyUsage = digitalSignature\)/);
    });

    it("fail/--count 3 --json: no certificate, another CA, serverAuth only", async () => {
      const l = listenAs("api", "--count", "3", "--json");
      const port = await l.port;
      await client(port, {});
      const other = forge({
        cn: "worker",
        issuer: forge({ ca: true, cn: "Other CA" }),
        eku: ["clientAuth"],
        sans: [`URI:${WORKER_ID}`],
      });
      await client(port, { cert: other.pem, key: other.key.pem });
      const serverOnly = forge({
        cn: "worker",
        o: "Quickstart",
        issuer: ca,
        eku: ["serverAuth"],
        sans: [`URI:${WORKER_ID}`],
      });
      await client(port, { cert: serverOnly.pem, key: serverOnly.key.pem });
      const r = await l.done;
      assert.equal(r.code, 1, r.out + r.err);
      const j = JSON.parse(r.out);
      assert.equal(j.length, 3);
      assert.deepEqual(
        j.map((x: { findings: { code: string }[] }) => x.findings.map((f) => f.code)),
        [["client-anonymous"], ["client-untrusted"], ["client-usage"]],
      );
      assert.equal(j[0].certificatePresented, false);
      assert.equal(j[0].session.servername, "api.localhost");
      assert.match(j[1].findings[0].message, /does not chain to .*api\/ca\.pem: its issuer CN=Other CA is not in/);
      assert.match(j[2].findings[0].message, /its extendedKeyUsage is serverAuth, without clientAuth/);
      assert.deepEqual(j[2].identity, { uri: WORKER_ID, problem: null, service: "worker", connectionDeclared: true });
    });

    it("ok/a declared service without a declared connection: connection-undeclared (warning)", async () => {
      const l = listenAs("worker", "--json");
      const port = await l.port;
      await client(port, { cert: pem(svc("db").cert), key: pem(svc("db").key) });
      const r = await l.done;
      assert.equal(r.code, 0, r.out + r.err);
      assert.deepEqual(
        JSON.parse(r.out)[0].findings.map((f: { code: string }) => f.code),
        ["connection-undeclared"],
      );
    });

    it("fail/no client before --timeout: exit 3", async () => {
      const l = listening(["--as", "api", "-f", MANIFEST, "--pki", pki, "--timeout", "0.3"]);
      await l.port;
      const r = await l.done;
      assert.equal(r.code, 3, r.out + r.err);
      assert.match(r.err, /no client connected within 0\.3 s/);
    });

    it("ok/a raw TCP client that connects and sends nothing is dropped at the handshake deadline (200 ms, within 5 s)", async () => {
      const server = await listen({
        host: "127.0.0.1",
        port: 0,
        credentials: { cert: pem(svc("api").cert), key: pem(svc("api").key) },
        bundlePem: pem(svc("api").ca),
        handshakeTimeout: 200,
      });
      const sock = net.connect({ host: "127.0.0.1", port: server.port });
      sock.on("error", () => {});
      try {
        const closed = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), 5000);
          sock.on("close", () => (clearTimeout(timer), resolve(true)));
        });
        assert.equal(closed, true, "probe --listen kept a silent client for 5 s");
      } finally {
        sock.destroy();
        await server.close();
      }
    });

    it("fail/usage: --listen with an endpoint, a bad --count", async () => {
      assert.equal((await runCli(["probe", "127.0.0.1:1", "--listen", "0", "--as", "api"])).code, 2);
      assert.equal((await runCli(["probe", "--listen", "0", "--as", "api", "--count", "0"])).code, 2);
      assert.equal((await runCli(["probe", "--listen", "host:port", "--as", "api"])).code, 2);
    });
  });
});
