/**
 * ACME with real clients from Debian (issue 16): lego (http-01, tls-alpn-01, and dns-01 through
 * Debian's BIND, which lego's rfc2136 provider updates with a TSIG key) and certbot
 * (standalone http-01) register with External Account Binding keys from `mtlskit token create
 * --acme`, obtain, renew and revoke certificates from `mtlskit serve` running as a process. The
 * validator dials the clients' challenge ports on 127.0.0.1 (`--acme-http-port`/`--acme-tls-port`,
 * the test-only flags; names under .localhost resolve to loopback in the validator itself). Each
 * certificate is judged by `openssl verify -x509_strict -purpose` for the service's usage and
 * used in a real mutual-TLS handshake against the CA's bundle. The dns-01 validator asks only
 * that BIND (`--acme-dns-resolver 127.0.0.1:PORT`), authoritative for the zone `localhost` in a
 * temporary folder on a free loopback port.
 */
import assert from "node:assert/strict";
import { randomBytes, X509Certificate } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { handshake } from "../helpers/tls.ts";
import {
  exec,
  freePort,
  logMark,
  makePki,
  mtlskit,
  need,
  type Pki,
  REPO,
  type Server,
  startServer,
  stopAll,
  subdir,
  waitForLog,
  waitForPort,
} from "./harness.ts";

const MANIFEST = `version: 1
cluster: acme
identity:
  uri: spiffe://{cluster}/{role}/{name}
services:
  web:
    usage: dual
    csr: true
    ttl: 1h
    addresses: [web.localhost, 127.0.0.1]
  api:
    usage: server
    csr: true
    addresses: [api.localhost]
  edge:
    usage: server
    csr: true
    acmeTrustBinding: true
    addresses: [edge.localhost]
`;

let pki: Pki;
let serve: Server;
let url: string;
let bundle: string;
let httpPort: number;
let tlsPort: number;
let dnsPort: number;
/** TSIG: the key lego's rfc2136 provider signs its updates of the zone with (named.conf allows only it). */
const TSIG = { name: "mtlskit-acme.", algorithm: "hmac-sha256.", secret: randomBytes(32).toString("base64") };

/**
 * startBind starts Debian's named in the foreground, authoritative for `localhost` only (no
 * recursion, no rndc), on 127.0.0.1:PORT (UDP and TCP), its zone updatable with the TSIG key.
 */
async function startBind(port: number): Promise<Server> {
  const dir = subdir("acme-bind");
  writeFileSync(
    path.join(dir, "named.conf"),
    `options {
  directory "${dir}";
  pid-file "${dir}/named.pid";
  session-keyfile "${dir}/session.key";
  listen-on port ${port} { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion no;
  dnssec-validation no;
};
controls { };
key "${TSIG.name}" { algorithm ${TSIG.algorithm.replace(/\.$/, "")}; secret "${TSIG.secret}"; };
zone "localhost" { type primary; file "${dir}/db.localhost"; allow-update { key "${TSIG.name}"; }; };
`,
  );
  writeFileSync(
    path.join(dir, "db.localhost"),
    `$TTL 5
@ IN SOA ns.localhost. hostmaster.localhost. 1 60 60 3600 5
@ IN NS ns.localhost.
ns IN A 127.0.0.1
`,
  );
  const named = startServer("acme-named", need("named"), ["-g", "-c", path.join(dir, "named.conf")]);
  await waitForPort(port, named, 30_000);
  return named;
}

/** cli runs the mtlskit CLI as a process. */
const cli = (...args: string[]) => exec(process.execPath, mtlskit(args), { cwd: REPO, timeoutMs: 60_000 });

/** eab makes an EAB key for `service` through the CLI, as an operator does. */
function eab(service: string): { kid: string; hmacKey: string } {
  const r = cli("token", "create", service, "--acme", "--json", "-f", pki.file, "--pki", pki.pki);
  assert.equal(r.code, 0, r.out);
  return JSON.parse(r.stdout) as { kid: string; hmacKey: string };
}

/** eabFlags are lego's flags registering with the EAB key `key` (from eab()). */
const eabFlags = (key: { kid: string; hmacKey: string }) => ["--eab", "--kid", key.kid, "--hmac", key.hmacKey];

/** verify runs `openssl verify -x509_strict -purpose P` on the first certificate of `certFile` (the rest: untrusted intermediates). */
function verify(certFile: string, purpose: "sslserver" | "sslclient") {
  return exec("openssl", ["verify", "-x509_strict", "-purpose", purpose, "-CAfile", bundle, certFile]);
}

/** ledgerRow reads a serial's ledger row through the CLI. */
function ledgerRow(serial: string): { how: string; service: string; revokedAt?: string; revokedReason?: string } {
  const r = cli("ledger", "show", serial, "--pki", pki.pki, "--json");
  assert.equal(r.code, 0, r.out);
  return JSON.parse(r.stdout);
}

const serialOf = (file: string) =>
  new X509Certificate(readFileSync(file)).serialNumber.toLowerCase().replace(/^(00)+/, "");

describe("acme: lego and certbot against mtlskit serve", { timeout: 300_000 }, () => {
  before(async () => {
    need("lego");
    need("certbot");
    need("openssl");
    need("named");
    pki = await makePki("acme", MANIFEST);
    bundle = path.join(pki.pki, "ca/ca.pem");
    const port = await freePort();
    httpPort = await freePort();
    tlsPort = await freePort();
    dnsPort = await freePort();
    await startBind(dnsPort);
    serve = startServer(
      "acme-serve",
      process.execPath,
      mtlskit([
        "serve",
        "-f",
        pki.file,
        "--pki",
        pki.pki,
        "--listen",
        `127.0.0.1:${port}`,
        "--acme-http-port",
        String(httpPort),
        "--acme-tls-port",
        String(tlsPort),
        "--acme-dns-resolver",
        `127.0.0.1:${dnsPort}`,
        "--log",
      ]),
      { cwd: REPO },
    );
    await waitForPort(port, serve, 30_000);
    url = `https://127.0.0.1:${port}/acme/directory`;
  });
  after(async () => {
    await stopAll();
  });

  /** lego runs lego against the server with `args` (bounded), trusting only the CA's bundle. */
  const lego = (dir: string, args: string[], env: Record<string, string> = {}) =>
    exec("lego", ["--server", url, "--path", dir, "--email", "ops@example.test", "--accept-tos", ...args], {
      env: { LEGO_CA_CERTIFICATES: bundle, ...env },
      timeoutMs: 90_000,
    });

  it("ok/lego http-01: EAB registration, obtain, the certificate (dual, identity, ttl) judged by openssl and used in mTLS, renew, revoke", async () => {
    const dir = subdir("acme-lego-http");
    const key = eab("web");
    // lego wants the EAB flags on every command once the directory says externalAccountRequired
    // (it checks before it reads the saved account); the key binds the account once.
    const http = [...eabFlags(key), "--http", "--http.port", `127.0.0.1:${httpPort}`, "--domains", "web.localhost"];
    const run = lego(dir, [...http, "run"]);
    assert.equal(run.code, 0, run.out);
    const crt = path.join(dir, "certificates/web.localhost.crt");
    const keyFile = path.join(dir, "certificates/web.localhost.key");
    const x = new X509Certificate(readFileSync(crt));
    assert.equal(x.subjectAltName, "DNS:web.localhost, URI:spiffe://acme/dual/web");
    assert.equal(new Date(x.validTo).getTime() - new Date(x.validFrom).getTime(), 3_600_000, "the service's ttl");
    for (const purpose of ["sslserver", "sslclient"] as const) {
      const v = verify(crt, purpose);
      assert.equal(v.code, 0, `${purpose}: ${v.out}`);
    }
    const hs = await handshake(
      { cert: crt, key: keyFile, ca: bundle },
      { cert: crt, key: keyFile, ca: bundle },
      { address: "web.localhost" },
    );
    assert.ok(hs.ok, JSON.stringify(hs));
    const first = serialOf(crt);
    assert.equal(ledgerRow(first).how, "acme");
    // Renew: the same account, a new order, a new certificate (lego renews within --days of expiry).
    const renew = lego(dir, [...http, "renew", "--days", "3650", "--no-random-sleep"]);
    assert.equal(renew.code, 0, renew.out);
    const second = serialOf(crt);
    assert.notEqual(second, first);
    assert.equal(ledgerRow(second).how, "acme");
    // Revoke with the account: the ledger records it, the CRL lists it.
    const revoke = lego(dir, [...http, "revoke", "--reason", "4"]);
    assert.equal(revoke.code, 0, revoke.out);
    assert.equal(ledgerRow(second).revokedReason, "superseded");
    const crl = exec("openssl", ["crl", "-in", path.join(pki.pki, "ca/crl.pem"), "-noout", "-text"]);
    assert.match(crl.stdout.toLowerCase(), new RegExp(second.replace(/^0+/, "")));
  });

  it("ok/lego tls-alpn-01 for a server-only service: the certificate verifies for sslserver and not sslclient", async () => {
    const dir = subdir("acme-lego-tls");
    const key = eab("api");
    const run = lego(dir, [
      ...eabFlags(key),
      "--tls",
      "--tls.port",
      `127.0.0.1:${tlsPort}`,
      "--domains",
      "api.localhost",
      "run",
    ]);
    assert.equal(run.code, 0, run.out);
    assert.match(run.out, /tls-alpn-01/i);
    const crt = path.join(dir, "certificates/api.localhost.crt");
    assert.equal(
      new X509Certificate(readFileSync(crt)).subjectAltName,
      "DNS:api.localhost, URI:spiffe://acme/server/api",
    );
    assert.equal(verify(crt, "sslserver").code, 0);
    const client = verify(crt, "sslclient");
    assert.notEqual(client.code, 0, "usage: server is not a client certificate");
    assert.match(client.out, /unsuitable certificate purpose/);
  });

  it("ok/lego dns-01 through BIND (rfc2136 with TSIG): the validator finds the TXT record through the configured BIND (the system resolver has never heard of it); the certificate is issued, verified and revoked", async () => {
    const dir = subdir("acme-lego-dns");
    const key = eab("web");
    const dns = [
      ...eabFlags(key),
      "--dns",
      "rfc2136",
      "--dns.resolvers",
      `127.0.0.1:${dnsPort}`,
      // lego's propagation check also asks the zone's NS on port 53; this BIND listens on a free port.
      "--dns.disable-cp",
      "--domains",
      "web.localhost",
    ];
    const env = {
      RFC2136_NAMESERVER: `127.0.0.1:${dnsPort}`,
      RFC2136_TSIG_KEY: TSIG.name,
      RFC2136_TSIG_ALGORITHM: TSIG.algorithm,
      RFC2136_TSIG_SECRET: TSIG.secret,
      RFC2136_PROPAGATION_TIMEOUT: "30",
      RFC2136_POLLING_INTERVAL: "1",
      RFC2136_TTL: "5",
    };
    // The banner says what is offered and where TXT records are looked up.
    assert.match(
      await waitForLog(serve, 0, /ACME challenges:/),
      new RegExp(`ACME challenges: http-01, tls-alpn-01, dns-01 \\(TXT asked of 127\\.0\\.0\\.1:${dnsPort} only\\)`),
    );
    const mark = logMark(serve);
    const run = lego(dir, [...dns, "run"], env);
    assert.equal(run.code, 0, run.out);
    assert.match(run.out, /dns-01/i);
    assert.match(
      await waitForLog(serve, mark, /"challenge":"dns-01","valid":true/),
      /"identifier":"DNS:web.localhost"/,
    );
    const crt = path.join(dir, "certificates/web.localhost.crt");
    const x = new X509Certificate(readFileSync(crt));
    assert.equal(x.subjectAltName, "DNS:web.localhost, URI:spiffe://acme/dual/web");
    for (const purpose of ["sslserver", "sslclient"] as const) {
      const v = verify(crt, purpose);
      assert.equal(v.code, 0, `${purpose}: ${v.out}`);
    }
    const serial = serialOf(crt);
    assert.equal(ledgerRow(serial).how, "acme");
    const revoke = lego(dir, [...dns, "revoke"], env);
    assert.equal(revoke.code, 0, revoke.out);
    assert.equal(ledgerRow(serial).revokedReason, "unspecified");
  });

  it("ok/lego against an acmeTrustBinding service: the authorization is already valid, lego solves no challenge, the certificate is issued", async () => {
    const dir = subdir("acme-lego-trusted");
    const key = eab("edge");
    // The http-01 port given to lego is never dialed: nothing listens there unless lego must solve.
    const run = lego(dir, [
      ...eabFlags(key),
      "--http",
      "--http.port",
      `127.0.0.1:${httpPort}`,
      "--domains",
      "edge.localhost",
      "run",
    ]);
    assert.equal(run.code, 0, run.out);
    assert.match(run.out, /authorization already valid; skipping challenge/);
    assert.doesNotMatch(run.out, /use http-01 solver|Served key authentication/);
    const crt = path.join(dir, "certificates/edge.localhost.crt");
    assert.equal(
      new X509Certificate(readFileSync(crt)).subjectAltName,
      "DNS:edge.localhost, URI:spiffe://acme/server/edge",
    );
    assert.equal(verify(crt, "sslserver").code, 0);
  });

  it("fail/lego refusals: a name the service does not declare (rejectedIdentifier), a used EAB key, no EAB", async () => {
    const dir = subdir("acme-lego-refused");
    const key = eab("web");
    const bad = lego(dir, [
      ...eabFlags(key),
      "--http",
      "--http.port",
      `127.0.0.1:${httpPort}`,
      "--domains",
      "api.localhost",
      "run",
    ]);
    assert.notEqual(bad.code, 0);
    assert.match(
      bad.out,
      /urn:ietf:params:acme:error:rejectedIdentifier.*api\.localhost is not declared for service web/,
    );
    // The key bound the account above; another account may not use it.
    const again = lego(subdir("acme-lego-refused-2"), [
      ...eabFlags(key),
      "--http",
      "--http.port",
      `127.0.0.1:${httpPort}`,
      "--domains",
      "web.localhost",
      "run",
    ]);
    assert.notEqual(again.code, 0);
    assert.match(again.out, /urn:ietf:params:acme:error:unauthorized.*has bound an account already/);
    const none = lego(subdir("acme-lego-refused-3"), [
      "--http",
      "--http.port",
      `127.0.0.1:${httpPort}`,
      "--domains",
      "web.localhost",
      "run",
    ]);
    assert.notEqual(none.code, 0);
    assert.match(none.out, /externalAccountRequired|External Account Binding/i);
  });

  it("ok/certbot standalone http-01: EAB registration, certonly, renew, revoke", async () => {
    const dir = subdir("acme-certbot");
    const key = eab("web");
    const common = [
      "--non-interactive",
      "--config-dir",
      path.join(dir, "config"),
      "--work-dir",
      path.join(dir, "work"),
      "--logs-dir",
      path.join(dir, "logs"),
      "--server",
      url,
    ];
    const env = { REQUESTS_CA_BUNDLE: bundle };
    const certbot = (args: string[]) => exec("certbot", [...args, ...common], { env, timeoutMs: 120_000 });
    const got = certbot([
      "certonly",
      "--standalone",
      "--agree-tos",
      "--email",
      "ops@example.test",
      "--eab-kid",
      key.kid,
      "--eab-hmac-key",
      key.hmacKey,
      "--http-01-port",
      String(httpPort),
      "--http-01-address",
      "127.0.0.1",
      "-d",
      "web.localhost",
    ]);
    assert.equal(got.code, 0, got.out);
    const live = path.join(dir, "config/live/web.localhost");
    const chain = path.join(live, "fullchain.pem");
    const cert = path.join(live, "cert.pem");
    assert.ok(existsSync(chain), got.out);
    const x = new X509Certificate(readFileSync(cert));
    assert.equal(x.subjectAltName, "DNS:web.localhost, URI:spiffe://acme/dual/web");
    for (const purpose of ["sslserver", "sslclient"] as const) assert.equal(verify(cert, purpose).code, 0, purpose);
    const keyFile = path.join(live, "privkey.pem");
    const hs = await handshake(
      { cert: chain, key: keyFile, ca: bundle },
      { cert: chain, key: keyFile, ca: bundle },
      { address: "web.localhost" },
    );
    assert.ok(hs.ok, JSON.stringify(hs));
    const first = serialOf(cert);
    assert.equal(ledgerRow(first).how, "acme");
    const renewed = certbot(["renew", "--force-renewal", "--no-random-sleep-on-renew", "--cert-name", "web.localhost"]);
    assert.equal(renewed.code, 0, renewed.out);
    const second = serialOf(cert);
    assert.notEqual(second, first);
    const revoked = certbot([
      "revoke",
      "--cert-name",
      "web.localhost",
      "--reason",
      "superseded",
      "--no-delete-after-revoke",
    ]);
    assert.equal(revoked.code, 0, revoked.out);
    assert.equal(ledgerRow(second).revokedReason, "superseded");
  });
});
