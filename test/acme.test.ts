/**
 * ACME (RFC 8555) on `mtlskit serve`, driven by a hand-written JWS client (helpers/acme-client.ts)
 * against a real server on loopback: the whole flow with http-01 (the server dials the test's
 * responder), the certificate judged by `openssl verify -x509_strict` and used in an mTLS
 * handshake, and each refusal as the problem document RFC 8555 names. The real clients (lego,
 * certbot) are in test/interop/acme.interop.ts.
 */
import assert from "node:assert/strict";
import { createHash, createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { exportJWK, FlattenedSign, importPKCS8 } from "jose";
import { after, before, describe, it } from "node:test";
import {
  type AcmeProblem,
  type AuthzDoc,
  authzStatus,
  normalizeIdentifier,
  type OrderDoc,
  orderStatus,
} from "../src/acme/protocol.ts";
import { dns01Value, parseDnsResolver, reverseName, validateDns01 } from "../src/acme/validate.ts";
import { parseToken } from "../src/ledger/index.ts";
import { encodeCsr } from "../src/pki/csr.ts";
import { generateKey } from "../src/pki/keys.ts";
import { ipBytes } from "../src/pki/ip.ts";
import { AcmeClient, type AcmeAnswer, b64, https, newAccountKey, startHttp01 } from "./helpers/acme-client.ts";
import { runCli, tempDir } from "./helpers/cli.ts";
import { type DnsServer, startDnsServer } from "./helpers/dns-server.ts";
import { type OnlineCa, startOnlineCa } from "./helpers/online.ts";
import { opensslVerify } from "./helpers/openssl.ts";
import { handshake } from "./helpers/tls.ts";

const MANIFEST = `version: 1
cluster: demo
identity:
  uri: spiffe://{cluster}/{role}/{name}
services:
  web:
    usage: dual
    csr: true
    ttl: 2h
    addresses: [127.0.0.1, web.localhost, www.localhost]
  api:
    usage: server
    csr: true
    addresses: [api.localhost]
  batch:
    usage: client
  edge:
    usage: server
    csr: true
    acmeTrustBinding: true
    addresses: [edge.localhost]
`;

const URN = "urn:ietf:params:acme:error:";

/** problem asserts an answer is an RFC 7807 ACME problem of `type` with `status`, its detail matching. */
function problem(r: AcmeAnswer, type: string, status: number, detail?: RegExp): void {
  assert.equal(r.status, status, `${type}: ${r.text}`);
  assert.match(String(r.headers["content-type"]), /^application\/problem\+json/);
  assert.equal(r.json.type, `${URN}${type}`, r.text);
  assert.equal(r.json.status, status);
  if (detail) assert.match(String(r.json.detail), detail);
  assert.ok(r.headers["replay-nonce"], "a refusal carries a fresh nonce too");
}

/** csrFor makes a P-256 request for DNS names and IPs, with an optional CN. */
function csrFor(names: string[], cn?: string): { der: Buffer; keyPem: string } {
  const k = generateKey("ecdsa-p256");
  const key = createPrivateKey({ key: k.pkcs8, format: "der", type: "pkcs8" });
  const der = encodeCsr(
    {
      subject: cn ? { CN: cn } : {},
      dns: names.filter((n) => !/^[\d.]+$/.test(n)),
      ips: names.filter((n) => /^[\d.]+$/.test(n)).map((n) => ipBytes(n)),
      uris: [],
    },
    "ecdsa-p256",
    k.spki,
    key,
  );
  return { der, keyPem: key.export({ type: "pkcs8", format: "pem" }) as string };
}

describe("acme: protocol (pure)", () => {
  it("ok and fail/normalizeIdentifier: case and trailing dot, canonical IPs; IPs as dns, bad names, unknown types refused by type", () => {
    const ok: [unknown, string][] = [
      [{ type: "dns", value: "Web.Localhost." }, "dns:web.localhost"],
      [{ type: "ip", value: "127.0.0.1" }, "ip:127.0.0.1"],
      [{ type: "ip", value: "2001:DB8:0:0:0:0:0:1" }, "ip:2001:db8::1"],
      [{ type: "dns", value: "*.web.localhost" }, "dns:*.web.localhost"],
    ];
    for (const [raw, want] of ok) {
      const id = normalizeIdentifier(raw);
      assert.equal(`${id.type}:${id.value}`, want);
    }
    const fail: [unknown, string][] = [
      [{ type: "dns", value: "10.0.0.1" }, "rejectedIdentifier"],
      [{ type: "dns", value: "a..b" }, "rejectedIdentifier"],
      [{ type: "dns", value: "-a.b" }, "rejectedIdentifier"],
      [{ type: "ip", value: "10.0.0.256" }, "malformed"],
      [{ type: "ip", value: "web" }, "malformed"],
      [{ type: "ip", value: "fe80::1%eth0" }, "malformed"],
      [{ type: "email", value: "a@b" }, "unsupportedIdentifier"],
      [{ type: "dns" }, "malformed"],
      ["dns:web", "malformed"],
    ];
    for (const [raw, want] of fail)
      assert.throws(
        () => normalizeIdentifier(raw),
        (e: AcmeProblem) => e.type === want,
        JSON.stringify(raw),
      );
  });

  it("ok/orderStatus follows RFC 8555 §7.1.6 from the authorizations; an expired authorization is expired", () => {
    const now = new Date("2027-01-01T00:00:00Z");
    const later = "2027-01-01T01:00:00Z";
    const z = (status: AuthzDoc["status"], expires = later): AuthzDoc => ({
      account: "a",
      identifier: { type: "dns", value: "web.localhost" },
      status,
      expires,
      challenges: [],
    });
    const o = (status: OrderDoc["status"] = "pending", expires = later): OrderDoc => ({
      account: "a",
      status,
      identifiers: [],
      authorizations: [],
      expires,
    });
    const cases: [OrderDoc, AuthzDoc[], string][] = [
      [o(), [z("pending"), z("valid")], "pending"],
      [o(), [z("valid"), z("valid")], "ready"],
      [o(), [z("valid"), z("invalid")], "invalid"],
      [o(), [z("valid"), z("deactivated")], "invalid"],
      [o(), [z("valid", "2026-12-31T00:00:00Z")], "invalid"],
      [o("pending", "2026-12-31T00:00:00Z"), [z("valid")], "invalid"],
      [o("processing"), [z("valid")], "processing"],
      [o("valid"), [z("valid", "2026-12-31T00:00:00Z")], "valid"],
    ];
    for (const [order, authzs, want] of cases) assert.equal(orderStatus(order, authzs, now), want);
    assert.equal(authzStatus(z("valid", "2026-12-31T00:00:00Z"), now), "expired");
  });

  it("fail/validateDns01 without a resolver (an authorization made before a restart without --acme-dns-resolver) is `dns`, naming the flag; an IP identifier is never validated by dns-01 (RFC 8738 §7)", async () => {
    await assert.rejects(
      validateDns01({ type: "dns", value: "web.localhost" }, "token.thumb", {}),
      (e: AcmeProblem) =>
        e.type === "dns" && /none is configured/.test(e.message) && /--acme-dns-resolver/.test(e.fix!),
    );
    await assert.rejects(
      validateDns01({ type: "ip", value: "127.0.0.1" }, "token.thumb", { dnsResolvers: ["127.0.0.1:9"] }),
      (e: AcmeProblem) => e.type === "malformed" && /never IP identifiers/.test(e.message),
    );
    // RFC 8555 §8.4's example arithmetic: base64url, no padding, of SHA-256 of the key authorization.
    assert.equal(
      dns01Value("token.thumb"),
      createHash("sha256")
        .update("token.thumb")
        .digest("base64")
        .replace(/\+/g, "-")
        .replace(/\//g, "_")
        .replace(/=+$/, ""),
    );
  });

  it("ok/reverseName: the SNI of tls-alpn-01 for IP identifiers (RFC 8738 §6)", () => {
    assert.equal(reverseName("192.0.2.5"), "5.2.0.192.in-addr.arpa");
    assert.equal(
      reverseName("2001:db8::1"),
      "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
    );
  });
});

describe("acme: serve's test-only validator port flags", () => {
  it("fail/--acme-http-port and --acme-tls-port take a port number 1..65535 (exit 2, nothing started)", async () => {
    for (const [flag, v] of [
      ["--acme-http-port", "0"],
      ["--acme-tls-port", "70000"],
      ["--acme-http-port", "80x"],
    ] as const) {
      const r = await runCli(["serve", flag, v]);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, new RegExp(`${flag} must be a port number 1\\.\\.65535; got "${v}"`));
    }
  });

  it("ok and fail/--acme-dns-resolver: IP[:PORT] (IPv6 with a port in brackets), canonical; names, bad ports and a fifth resolver refused (exit 2)", async () => {
    const ok: [string, string][] = [
      ["127.0.0.1", "127.0.0.1"],
      ["127.0.0.1:53", "127.0.0.1"],
      ["127.0.0.1:5353", "127.0.0.1:5353"],
      ["::1", "::1"],
      ["[::1]:5353", "[::1]:5353"],
      ["[2001:DB8:0:0:0:0:0:1]:53", "2001:db8::1"],
      // An IPv6 address, not ::1 port 53: a port after IPv6 needs the brackets.
      ["::1:53", "::1:53"],
    ];
    for (const [text, want] of ok) assert.equal(parseDnsResolver(text), want, text);
    for (const bad of ["dns.example", "127.0.0.1:0", "127.0.0.1:70000", "[127.0.0.1]:53x", "1.2.3", ""])
      assert.equal(parseDnsResolver(bad), undefined, bad);
    const r = await runCli(["serve", "--acme-dns-resolver", "ns.example:53"]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /--acme-dns-resolver takes IP\[:PORT\] .*; got "ns\.example:53"/);
    const five = await runCli([
      "serve",
      ...Array.from({ length: 5 }, () => ["--acme-dns-resolver", "127.0.0.1"]).flat(),
    ]);
    assert.equal(five.code, 2, five.err);
    assert.match(five.err, /given 5 times; at most 4/);
  });
});

describe("acme: RFC 8555 on mtlskit serve, with a hand-written client", { timeout: 180_000 }, () => {
  let ca: OnlineCa;
  let responder: Awaited<ReturnType<typeof startHttp01>>;
  let bundle: string;
  let directory: string;

  before(async () => {
    responder = await startHttp01();
    ca = await startOnlineCa(MANIFEST, { acme: { validator: { ports: { http: responder.port }, timeoutMs: 3000 } } });
    bundle = readFileSync(path.join(ca.pki, "ca/ca.pem"), "utf8");
    directory = `${ca.url}/acme/directory`;
  });
  after(async () => {
    await ca?.stop();
    await responder?.close();
  });

  /** registered: a client with an account for `service`. */
  const registered = async (service = "web", alg: "ES256" | "RS256" | "EdDSA" = "ES256") => {
    const c = await AcmeClient.create(directory, bundle, alg);
    const r = await c.register(await ca.eab(service));
    assert.equal(r.status, 201, r.text);
    return c;
  };

  /** validate answers and triggers every http-01 challenge of an order; returns the order URL. */
  const validated = async (c: AcmeClient, ...names: string[]) => {
    const o = await c.order(...names);
    assert.equal(o.status, 201, o.text);
    for (const url of o.json.authorizations as string[]) {
      const z = await c.post(url, "");
      const ch = (z.json.challenges as { type: string; url: string; token: string }[]).find(
        (x) => x.type === "http-01",
      )!;
      responder.answers.set(ch.token, await c.keyAuth(ch.token));
      const v = await c.post(ch.url, {});
      assert.equal(v.status, 200, v.text);
      assert.equal(v.json.status, "valid", v.text);
    }
    return { url: o.headers.location as string, order: o.json };
  };

  it("ok/directory: externalAccountRequired, every resource; newNonce HEAD 200 and GET 204 with Replay-Nonce, no-store", async () => {
    const d = await https(directory, { ca: bundle });
    assert.equal(d.status, 200);
    assert.deepEqual((d.json.meta as { externalAccountRequired: boolean }).externalAccountRequired, true);
    for (const k of ["newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"])
      assert.match(String(d.json[k]), new RegExp(`^${ca.url}/acme/`), k);
    assert.ok(d.headers["replay-nonce"]);
    const head = await https(String(d.json.newNonce), { method: "HEAD", ca: bundle });
    const get = await https(String(d.json.newNonce), { ca: bundle });
    assert.deepEqual([head.status, get.status], [200, 204]);
    for (const r of [head, get]) {
      assert.match(String(r.headers["replay-nonce"]), /^[A-Za-z0-9_-]{22}$/);
      assert.equal(r.headers["cache-control"], "no-store");
    }
    assert.notEqual(head.headers["replay-nonce"], get.headers["replay-nonce"]);
    // Unknown paths under /acme/, a body too large, bad JSON: problem documents too.
    problem(await https(`${ca.url}/acme/nope`, { ca: bundle }), "malformed", 404, /no route GET \/acme\/nope/);
    problem(
      await https(String(d.json.newAccount), { method: "POST", body: "{not json", ca: bundle }),
      "malformed",
      400,
      /not valid JSON/,
    );
    problem(
      await https(String(d.json.newAccount), {
        method: "POST",
        body: JSON.stringify({ x: "a".repeat(70_000) }),
        ca: bundle,
      }),
      "malformed",
      413,
    );
  });

  it("ok/EAB account, order (dns + ip), http-01 validated by the server, finalize, download: the certificate is the manifest's (dual, identity, ttl), judged by openssl, used in mTLS, in the ledger as acme", async () => {
    const c = await registered("web");
    assert.match(String(c.kid), new RegExp(`^${ca.url}/acme/account/`));
    const { url, order } = await validated(c, "dns:web.localhost", "ip:127.0.0.1");
    assert.deepEqual(order.identifiers, [
      { type: "dns", value: "web.localhost" },
      { type: "ip", value: "127.0.0.1" },
    ]);
    const ready = await c.post(url, "");
    assert.equal(ready.json.status, "ready", ready.text);
    // lego puts the first name in the CN: accepted, the certificate gets the manifest's subject.
    const { der, keyPem } = csrFor(["web.localhost", "127.0.0.1"], "web.localhost");
    const fin = await c.post(String(ready.json.finalize), { csr: b64(der) });
    assert.equal(fin.status, 200, fin.text);
    assert.equal(fin.json.status, "valid");
    const dl = await c.post(String(fin.json.certificate), "");
    assert.equal(dl.status, 200);
    assert.equal(dl.headers["content-type"], "application/pem-certificate-chain");
    const leafPem = dl.text.slice(0, dl.text.indexOf("-----END CERTIFICATE-----") + 25);
    const x = new X509Certificate(leafPem);
    assert.equal(x.subjectAltName, "DNS:web.localhost, IP Address:127.0.0.1, URI:spiffe://demo/dual/web");
    assert.equal(new Date(x.validTo).getTime() - new Date(x.validFrom).getTime(), 2 * 3_600_000, "the service's ttl");
    assert.equal(x.subject, "CN=web.localhost", "the CN is the order's first DNS name (ACME clients renew the CN)");
    assert.ok(x.publicKey.equals(createPublicKey(keyPem)));
    const dir = tempDir("mtlskit-acme-");
    const files = { cert: path.join(dir, "cert.pem"), key: path.join(dir, "key.pem"), ca: path.join(dir, "ca.pem") };
    writeFileSync(files.cert, dl.text);
    writeFileSync(files.key, keyPem, { mode: 0o600 });
    writeFileSync(files.ca, bundle);
    for (const purpose of ["sslserver", "sslclient"] as const) {
      const v = opensslVerify({ caFile: files.ca, certFile: files.cert, purpose, verifyHostname: "web.localhost" });
      assert.ok(v.ok, `${purpose}: ${v.output}`);
    }
    // Dual usage: the one certificate is both ends of a mutual-TLS handshake.
    const hs = await handshake(files, files, { address: "127.0.0.1" });
    assert.ok(hs.ok, JSON.stringify(hs));
    const rows = await ca.ledgerRows();
    const row = rows.find((r) => r.sha256 === x.fingerprint256.replace(/:/g, "").toLowerCase());
    assert.ok(row, "the certificate has its ledger row");
    assert.equal(row.how, "acme");
    assert.equal(row.service, "web");
    // plan (what check and status read too) sees it as web's online certificate.
    const plan = await runCli(["plan", "-f", ca.manifest, "--pki", ca.pki]);
    assert.match(
      plan.out,
      new RegExp(`web\\s+csr\\s+issued online: see the ledger \\(serial ${row.serial}, `),
      plan.out,
    );
    // A second finalize of a valid order is refused: one certificate per order.
    problem(await c.post(String(ready.json.finalize), { csr: b64(der) }), "orderNotReady", 403, /is valid, not ready/);
  });

  it("ok/RS256 and EdDSA account keys; onlyReturnExisting finds the account by its key; POST-as-GET of the account", async () => {
    for (const alg of ["RS256", "EdDSA"] as const) {
      const c = await registered("web", alg);
      const again = await c.register(undefined, { onlyReturnExisting: true });
      assert.equal(again.status, 200, again.text);
      assert.equal(again.headers.location, c.kid);
      const acc = await c.post(c.kid!, "");
      assert.equal(acc.status, 200, acc.text);
      assert.equal(acc.json.status, "valid");
    }
    const stranger = await AcmeClient.create(directory, bundle);
    problem(await stranger.register(undefined, { onlyReturnExisting: true }), "accountDoesNotExist", 400);
  });

  it("fail/EAB: missing (externalAccountRequired), unknown kid, wrong HMAC key, another key bound, another url, used twice, an agent token's id", async () => {
    const c = await AcmeClient.create(directory, bundle);
    problem(await c.register(undefined), "externalAccountRequired", 400, /External Account Binding/);
    assert.equal(c.kid, undefined);
    const eab = await ca.eab("web");
    problem(await c.register({ kid: "0123456789abcdef", hmac: eab.hmac }), "unauthorized", 403, /is not known/);
    problem(
      await c.register({ kid: eab.kid, hmac: Buffer.alloc(32, 7).toString("base64url") }),
      "unauthorized",
      403,
      /MAC does not verify/,
    );
    const other = await newAccountKey();
    problem(
      await c.post(
        c.dir.newAccount!,
        { externalAccountBinding: await c.eab(eab.kid, eab.hmac, { boundKey: other.jwk }) },
        { useJwk: true },
      ),
      "unauthorized",
      403,
      /binds another key/,
    );
    problem(
      await c.post(
        c.dir.newAccount!,
        { externalAccountBinding: await c.eab(eab.kid, eab.hmac, { url: `${ca.url}/acme/new-order` }) },
        { useJwk: true },
      ),
      "unauthorized",
      403,
      /url is not the newAccount URL/,
    );
    // The refusals did not spend the key: it binds this account, once.
    assert.equal((await c.register(eab)).status, 201);
    const d = await AcmeClient.create(directory, bundle);
    problem(await d.register(eab), "unauthorized", 403, /has bound an account already/);
    const agentToken = await ca.token("web");
    problem(
      await d.register({ kid: parseToken(agentToken)!.id, hmac: parseToken(agentToken)!.secret }),
      "unauthorized",
      403,
      /is not an ACME EAB key/,
    );
  });

  it("fail/JWS rules: replayed nonce (badNonce), missing nonce, wrong key (malformed), url of another resource (unauthorized), jwk where a kid is due, HS256 (badSignatureAlgorithm), not jose+json", async () => {
    const c = await registered("web");
    const first = await c.post(c.kid!, "");
    assert.equal(first.status, 200);
    const used = await c.nonce();
    assert.equal((await c.post(c.kid!, "", { nonce: used })).status, 200);
    problem(await c.post(c.kid!, "", { nonce: used }), "badNonce", 400, /used already/);
    problem(await c.post(c.kid!, "", { nonce: "never-given" }), "badNonce", 400);
    problem(await c.post(c.kid!, "", { key: await newAccountKey() }), "malformed", 400, /signature does not verify/);
    problem(await c.post(c.kid!, "", { url: c.dir.newOrder! }), "unauthorized", 403, /is not this request's URL/);
    problem(
      await c.post(c.dir.newOrder!, { identifiers: [] }, { useJwk: true }),
      "malformed",
      400,
      /takes the account's kid/,
    );
    // A header naming HS256 (a MAC: anyone holding the key could forge) or none, with any signature.
    for (const alg of ["HS256", "none"]) {
      const hdr = b64(JSON.stringify({ alg, nonce: await c.nonce(), url: c.kid, kid: c.kid }));
      const forged = JSON.stringify({ protected: hdr, payload: "", signature: b64("x") });
      const r = await https(c.kid!, { method: "POST", body: forged, ca: bundle });
      problem(r, "badSignatureAlgorithm", 400);
      assert.deepEqual(r.json.algorithms, ["ES256", "RS256", "EdDSA"]);
    }
    const body = await c.jws(c.kid!, "");
    problem(
      await https(c.kid!, { method: "POST", body, type: "application/json", ca: bundle }),
      "malformed",
      400,
      /not application\/jose\+json/,
    );
  });

  it("fail/newOrder: names the service does not declare, another service's name, a wildcard, an IP as dns (rejectedIdentifier with subproblems), unknown types", async () => {
    const c = await registered("web");
    const r = await c.order("dns:web.localhost", "dns:api.localhost", "ip:10.9.9.9");
    problem(r, "rejectedIdentifier", 400, /2 identifiers are refused/);
    const subs = r.json.subproblems as { type: string; identifier: { value: string } }[];
    assert.deepEqual(
      subs.map((s) => [s.type, s.identifier.value]),
      [
        [`${URN}rejectedIdentifier`, "api.localhost"],
        [`${URN}rejectedIdentifier`, "10.9.9.9"],
      ],
    );
    problem(
      await c.order("dns:*.localhost"),
      "rejectedIdentifier",
      400,
      /a wildcard; the manifest declares exact names only/,
    );
    problem(await c.order("dns:127.0.0.1"), "rejectedIdentifier", 400, /order it as type ip \(RFC 8738\)/);
    problem(await c.order("email:ops@example.test"), "unsupportedIdentifier", 400);
  });

  it("fail/a failed challenge makes the authorization and order invalid (incorrectResponse); a refused connection is `connection`", async () => {
    const c = await registered("web");
    const o = await c.order("dns:www.localhost");
    const z = await c.post((o.json.authorizations as string[])[0]!, "");
    const ch = (z.json.challenges as { type: string; url: string; token: string }[]).find((x) => x.type === "http-01")!;
    responder.answers.set(ch.token, "not-the-key-authorization");
    const v = await c.post(ch.url, {});
    assert.equal(v.json.status, "invalid", v.text);
    assert.equal((v.json.error as { type: string }).type, `${URN}incorrectResponse`);
    assert.equal((await c.post((o.json.authorizations as string[])[0]!, "")).json.status, "invalid");
    const order = await c.post(o.headers.location as string, "");
    assert.equal(order.json.status, "invalid");
    problem(
      await c.post(String(order.json.finalize), { csr: b64(csrFor(["www.localhost"]).der) }),
      "orderNotReady",
      403,
    );
    // tls-alpn-01 against a port nobody listens on: the server could not connect.
    const o2 = await c.order("dns:www.localhost");
    const z2 = await c.post((o2.json.authorizations as string[])[0]!, "");
    const alpn = (z2.json.challenges as { type: string; url: string }[]).find((x) => x.type === "tls-alpn-01")!;
    const t = await c.post(alpn.url, {});
    assert.equal(t.json.status, "invalid");
    assert.equal((t.json.error as { type: string }).type, `${URN}connection`);
  });

  it("ok/no resolver configured: dns-01 is not offered; asking for a challenge the authorization lacks is a 404 problem naming what it offers and the flag", async () => {
    const c = await registered("web");
    const o = await c.order("dns:web.localhost", "ip:127.0.0.1");
    for (const url of o.json.authorizations as string[]) {
      const z = await c.post(url, "");
      const types = (z.json.challenges as { type: string }[]).map((x) => x.type);
      assert.deepEqual(types, ["http-01", "tls-alpn-01"], z.text);
    }
    const z = await c.post((o.json.authorizations as string[])[0]!, "");
    const first = (z.json.challenges as { url: string }[])[0]!.url;
    problem(
      await c.post(first.replace(/\/0$/, "/2"), {}),
      "malformed",
      404,
      /offers http-01, tls-alpn-01 \(dns-01 only where the operator configured a resolver: `mtlskit serve --acme-dns-resolver`\)/,
    );
  });

  it("fail/another account's order, authorization, certificate: unauthorized; finalize with a CSR naming other names: badCSR", async () => {
    const a = await registered("web");
    const b = await registered("web");
    const { url } = await validated(a, "dns:web.localhost");
    const order = await a.post(url, "");
    problem(await b.post(url, ""), "unauthorized", 403, /belongs to another account/);
    problem(await b.post((order.json.authorizations as string[])[0]!, ""), "unauthorized", 403);
    problem(
      await b.post(String(order.json.finalize), { csr: b64(csrFor(["web.localhost"]).der) }),
      "unauthorized",
      403,
    );
    problem(
      await a.post(String(order.json.finalize), { csr: b64(csrFor(["web.localhost", "www.localhost"]).der) }),
      "badCSR",
      400,
      /asks for DNS:web.localhost, DNS:www.localhost, but the order is for DNS:web.localhost/,
    );
    problem(await a.post(String(order.json.finalize), { csr: b64(Buffer.from("junk")) }), "badCSR", 400);
    // The refusals left the order ready: the right CSR is signed.
    const fin = await a.post(String(order.json.finalize), { csr: b64(csrFor(["web.localhost"]).der) });
    assert.equal(fin.json.status, "valid", fin.text);
    problem(await b.post(String(fin.json.certificate), ""), "unauthorized", 403);
  });

  it("ok/acmeTrustBinding: the service's authorizations are born valid (no challenge), the order is ready at once and finalizes; other services still need a challenge", async () => {
    const c = await registered("edge");
    const o = await c.order("dns:edge.localhost");
    assert.equal(o.status, 201, o.text);
    assert.equal(o.json.status, "ready", o.text);
    const z = await c.post((o.json.authorizations as string[])[0]!, "");
    assert.equal(z.json.status, "valid", z.text);
    assert.deepEqual(z.json.challenges, []);
    const fin = await c.post(String(o.json.finalize), { csr: b64(csrFor(["edge.localhost"]).der) });
    assert.equal(fin.json.status, "valid", fin.text);
    const pem = (await c.post(String(fin.json.certificate), "")).text;
    assert.equal(new X509Certificate(pem).subjectAltName, "DNS:edge.localhost, URI:spiffe://demo/server/edge");
    // Trust is the service's, not the server's: web's orders still wait for a challenge.
    const w = await (await registered("web")).order("dns:web.localhost");
    assert.equal(w.json.status, "pending", w.text);
  });

  it("fail/acmeTrustBinding on a service that is not csr: true is a manifest error naming the field (exit 2)", async () => {
    const dir = tempDir("mtlskit-acme-trust-");
    const file = path.join(dir, "mtlskit.yaml");
    writeFileSync(
      file,
      "version: 1\ncluster: demo\nservices:\n  web:\n    usage: server\n    acmeTrustBinding: true\n",
    );
    const r = await runCli(["plan", "-f", file, "--pki", path.join(dir, "pki")]);
    assert.equal(r.code, 2, r.err);
    assert.match(
      r.err,
      /mtlskit\.yaml:6 services\.web\.acmeTrustBinding: trusts ACME accounts of this service without a challenge, but only csr: true services/,
    );
    assert.match(r.err, /add csr: true, or remove acmeTrustBinding/);
  });

  it("ok/key rollover: the new key signs, the old one no longer does, the account is found by the new key; a key in use by another account is 409", async () => {
    const c = await registered("web");
    const old = c.key;
    const next = await newAccountKey("EdDSA");
    const url = c.dir.keyChange!;
    // The inner JWS: signed by the new key, carrying it as jwk, no nonce (RFC 8555 §7.3.5).
    const signed = await new FlattenedSign(
      new TextEncoder().encode(JSON.stringify({ account: c.kid, oldKey: old.jwk })),
    )
      .setProtectedHeader({ alg: next.alg, jwk: next.jwk, url })
      .sign(next.privateKey);
    const r = await c.post(url, signed);
    assert.equal(r.status, 200, r.text);
    problem(await c.post(c.kid!, ""), "malformed", 400, /not a usable ES256 public key/);
    c.key = next;
    assert.equal((await c.post(c.kid!, "")).status, 200);
    const probe = new AcmeClient(directory, bundle, next);
    probe.dir = c.dir;
    assert.equal((await probe.register(undefined, { onlyReturnExisting: true })).headers.location, c.kid);
    // Rolling another account onto this key: 409 with the owner's URL.
    const d = await registered("web");
    const hdr2 = { alg: next.alg, jwk: next.jwk, url };
    const signed2 = await new FlattenedSign(
      new TextEncoder().encode(JSON.stringify({ account: d.kid, oldKey: d.key.jwk })),
    )
      .setProtectedHeader(hdr2)
      .sign(next.privateKey);
    const conflict = await d.post(url, signed2);
    assert.equal(conflict.status, 409, conflict.text);
    assert.equal(conflict.headers.location, c.kid);
  });

  it("ok/account deactivation: later requests are unauthorized", async () => {
    const c = await registered("web");
    const r = await c.post(c.kid!, { status: "deactivated" });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, "deactivated");
    problem(await c.order("dns:web.localhost"), "unauthorized", 403, /account is deactivated/);
  });

  it("ok/revokeCert by the account and by the certificate's own key; again: alreadyRevoked; an account of another service: unauthorized; the ledger records it", async () => {
    const c = await registered("web");
    const issue = async () => {
      const { url } = await validated(c, "dns:web.localhost");
      const o = await c.post(url, "");
      const csr = csrFor(["web.localhost"]);
      const fin = await c.post(String(o.json.finalize), { csr: b64(csr.der) });
      const pem = (await c.post(String(fin.json.certificate), "")).text;
      const der = new X509Certificate(pem).raw;
      return { der, keyPem: csr.keyPem, serial: new X509Certificate(pem).serialNumber.toLowerCase() };
    };
    const one = await issue();
    const api = await registered("api");
    problem(
      await api.post(api.dir.revokeCert!, { certificate: b64(one.der) }),
      "unauthorized",
      403,
      /not bound to the certificate's service/,
    );
    problem(await c.post(c.dir.revokeCert!, { certificate: b64(one.der), reason: 6 }), "badRevocationReason", 400);
    const r = await c.post(c.dir.revokeCert!, { certificate: b64(one.der), reason: 4 });
    assert.equal(r.status, 200, r.text);
    problem(await c.post(c.dir.revokeCert!, { certificate: b64(one.der) }), "alreadyRevoked", 400);
    const rows = await ca.ledgerRows();
    assert.equal(rows.find((x) => x.der.equals(one.der))!.revokedReason, "superseded");
    // By the certificate's key: a JWS with the certificate's key as jwk, no account.
    const two = await issue();
    const priv = await importPKCS8(two.keyPem, "ES256", { extractable: true });
    const pub = await exportJWK(createPublicKey(two.keyPem));
    const byKey = new AcmeClient(directory, bundle, { alg: "ES256", privateKey: priv, jwk: pub });
    byKey.dir = c.dir;
    const other = new AcmeClient(directory, bundle, await newAccountKey());
    other.dir = c.dir;
    problem(
      await other.post(c.dir.revokeCert!, { certificate: b64(two.der) }, { useJwk: true }),
      "unauthorized",
      403,
      /not the certificate's key/,
    );
    const k = await byKey.post(c.dir.revokeCert!, { certificate: b64(two.der), reason: 1 }, { useJwk: true });
    assert.equal(k.status, 200, k.text);
    assert.equal((await ca.ledgerRows()).find((x) => x.der.equals(two.der))!.revokedReason, "keyCompromise");
  });

  it("ok/200 concurrent orders from 8 accounts complete with distinct serials, each with its ledger row", async () => {
    const clients = await Promise.all(Array.from({ length: 8 }, () => registered("web")));
    const serials = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const c = clients[i % clients.length]!;
        const { url } = await validated(c, "dns:web.localhost");
        const o = await c.post(url, "");
        const fin = await c.post(String(o.json.finalize), { csr: b64(csrFor(["web.localhost"]).der) });
        assert.equal(fin.json.status, "valid", fin.text);
        const pem = (await c.post(String(fin.json.certificate), "")).text;
        return new X509Certificate(pem).serialNumber.toLowerCase().replace(/^(00)+/, "");
      }),
    );
    assert.equal(new Set(serials).size, 200, "no duplicate serial");
    const rows = new Set((await ca.ledgerRows()).map((r) => r.serial));
    for (const s of serials) assert.ok(rows.has(s), s);
  });
});

describe("acme: dns-01 through the configured resolver only (a real DNS server on loopback)", {
  timeout: 120_000,
}, () => {
  let ca: OnlineCa;
  let dns: DnsServer;
  let bundle: string;
  let directory: string;

  before(async () => {
    dns = await startDnsServer();
    // The http-01 port points at nothing: only dns-01 can succeed here.
    ca = await startOnlineCa(MANIFEST, {
      acme: { validator: { dnsResolvers: [dns.address], ports: { http: 9, tls: 9 }, timeoutMs: 1500 } },
    });
    bundle = readFileSync(path.join(ca.pki, "ca/ca.pem"), "utf8");
    directory = `${ca.url}/acme/directory`;
  });
  after(async () => {
    await ca?.stop();
    await dns?.close();
  });

  /** dnsChallenge: a fresh account's order for `name` and its dns-01 challenge. */
  const dnsChallenge = async (name = "web.localhost") => {
    const c = await AcmeClient.create(directory, bundle);
    assert.equal((await c.register(await ca.eab("web"))).status, 201);
    const o = await c.order(`dns:${name}`);
    assert.equal(o.status, 201, o.text);
    const z = await c.post((o.json.authorizations as string[])[0]!, "");
    const ch = (z.json.challenges as { type: string; url: string; token: string }[]).find((x) => x.type === "dns-01");
    assert.ok(ch, z.text);
    return { c, o, ch, value: dns01Value(await c.keyAuth(ch.token)) };
  };

  it("ok/dns-01 offered beside http-01 and tls-alpn-01 for DNS names, never for IPs; the right TXT validates; the certificate is issued", async () => {
    const c = await AcmeClient.create(directory, bundle);
    assert.equal((await c.register(await ca.eab("web"))).status, 201);
    const o = await c.order("dns:web.localhost", "ip:127.0.0.1");
    const [dnsZ, ipZ] = await Promise.all((o.json.authorizations as string[]).map((u) => c.post(u, "")));
    const types = (z: AcmeAnswer) => (z.json.challenges as { type: string }[]).map((x) => x.type);
    assert.deepEqual(types(dnsZ!), ["http-01", "tls-alpn-01", "dns-01"]);
    assert.deepEqual(types(ipZ!), ["http-01", "tls-alpn-01"], "RFC 8738 §7: no dns-01 for IP identifiers");
    const { c: d, o: o2, ch, value } = await dnsChallenge();
    // RFC 8555 §8.4: base64url of SHA-256 of the key authorization, 43 characters.
    assert.match(value, /^[A-Za-z0-9_-]{43}$/);
    dns.txt.set("_acme-challenge.web.localhost", ["unrelated", value]);
    const v = await d.post(ch.url, {});
    assert.equal(v.json.status, "valid", v.text);
    assert.ok(dns.queries.includes("TXT _acme-challenge.web.localhost"), dns.queries.join("\n"));
    const ready = await d.post(o2.headers.location as string, "");
    assert.equal(ready.json.status, "ready", ready.text);
    const fin = await d.post(String(ready.json.finalize), { csr: b64(csrFor(["web.localhost"]).der) });
    assert.equal(fin.json.status, "valid", fin.text);
    const pem = (await d.post(String(fin.json.certificate), "")).text;
    assert.equal(new X509Certificate(pem).subjectAltName, "DNS:web.localhost, URI:spiffe://demo/dual/web");
    dns.txt.delete("_acme-challenge.web.localhost");
  });

  it("ok/a CNAME is followed: as the resolver answers the chain, and hop by hop when it answers the CNAME alone", async () => {
    for (const cnameOnly of [false, true]) {
      const { c, ch, value } = await dnsChallenge("www.localhost");
      dns.cname.set("_acme-challenge.www.localhost", "www.acme-delegated.localhost");
      if (cnameOnly) dns.cnameOnly.add("_acme-challenge.www.localhost");
      dns.txt.set("www.acme-delegated.localhost", [value]);
      const v = await c.post(ch.url, {});
      assert.equal(v.json.status, "valid", `cnameOnly ${cnameOnly}: ${v.text}`);
      dns.cnameOnly.clear();
    }
    dns.cname.clear();
    dns.txt.clear();
  });

  it("fail/a wrong TXT record: incorrectResponse naming what was found; the authorization and order are invalid", async () => {
    const { c, o, ch } = await dnsChallenge();
    dns.txt.set("_acme-challenge.web.localhost", ["stale-value-of-another-order"]);
    const v = await c.post(ch.url, {});
    assert.equal(v.json.status, "invalid", v.text);
    const err = v.json.error as { type: string; detail: string };
    assert.equal(err.type, `${URN}incorrectResponse`);
    assert.match(
      err.detail,
      /_acme-challenge\.web\.localhost has a TXT record \("stale-value-of-another-order"\) but none is/,
    );
    assert.match(err.detail, new RegExp(`asked of ${dns.address.replace(/\./g, "\\.")}`));
    assert.equal((await c.post(o.headers.location as string, "")).json.status, "invalid");
    dns.txt.clear();
  });

  it("fail/NXDOMAIN, a name without TXT, and a resolver that never answers: each a `dns` problem; the wait is bounded by the validator's timeout", async () => {
    const cases: [() => void, RegExp][] = [
      [() => {}, /_acme-challenge\.web\.localhost does not exist \(NXDOMAIN\), asked of 127\.0\.0\.1:\d+/],
      [() => dns.txt.set("_acme-challenge.web.localhost", []), /has no TXT record/],
      [() => dns.silent.add("_acme-challenge.web.localhost"), /got no answer within 1500 ms/],
    ];
    for (const [arrange, detail] of cases) {
      dns.txt.clear();
      dns.silent.clear();
      arrange();
      const { c, ch } = await dnsChallenge();
      const v = await c.post(ch.url, {});
      assert.equal(v.json.status, "invalid", v.text);
      const err = v.json.error as { type: string; detail: string };
      assert.equal(err.type, `${URN}dns`, v.text);
      assert.match(err.detail, detail);
    }
    dns.silent.clear();
    dns.txt.clear();
  });
});
