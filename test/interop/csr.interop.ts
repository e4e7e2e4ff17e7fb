/**
 * Keys that never leave their host, judged by programs that share no code with mtlskit: a
 * request made by GnuTLS (`certtool --generate-request`, its own PKCS#10 encoder, which also asks
 * for CA:FALSE and digitalSignature) is signed by `mtlskit sign`, and one asking for CA:TRUE is
 * refused; the certificate signed from `mtlskit csr`'s request verifies in GnuTLS
 * (`certtool --verify`, medium profile) and Go's crypto/x509 for both purposes and at every
 * declared address, and completes a handshake with gnutls-cli against an apply-issued server.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import * as path from "node:path";
import { before, describe, it } from "node:test";
import { run } from "../../src/cli/main.ts";
import type { Io } from "../../src/cli/output.ts";
import { buildGoverify, exec, freePort, makePki, need, startServer, subdir, waitForPort, type Pki } from "./harness.ts";

const MANIFEST = `version: 1
cluster: demo
identity:
  uri: spiffe://{cluster}/{role}/{name}
services:
  api:
    usage: server
    addresses: [127.0.0.1]
  web:
    usage: dual
    csr: true
    addresses: [127.0.0.1, web.local]
connections:
  - from: web
    to: api
    address: 127.0.0.1
`;

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const io: Io = { out: (t) => void (out += t), err: (t) => void (err += t), tty: false, color: false };
  const code = await run(argv, io);
  return { code, out, err };
}

/** signInto runs `mtlskit sign CSR --service web` into `pki`, with the chain also written to `out`. */
const signInto = (pki: Pki, csr: string, out?: string) =>
  cli(["sign", csr, "--service", "web", "-f", pki.file, "--pki", pki.pki, ...(out ? ["-o", out] : [])]);

/** gnutlsRequest makes a key and a CSR with certtool from a template (lines of `key = value`). */
function gnutlsRequest(dir: string, name: string, template: string): string {
  const key = path.join(dir, `${name}-key.pem`);
  const cfg = path.join(dir, `${name}.cfg`);
  const csr = path.join(dir, `${name}.csr`);
  writeFileSync(cfg, template);
  let r = exec(need("certtool"), [
    "--generate-privkey",
    "--key-type",
    "ecdsa",
    "--curve",
    "secp256r1",
    "--outfile",
    key,
  ]);
  assert.equal(r.code, 0, r.out);
  r = exec(need("certtool"), ["--generate-request", "--load-privkey", key, "--template", cfg, "--outfile", csr]);
  assert.equal(r.code, 0, r.out);
  return csr;
}

const WEB_TEMPLATE = `cn = "web"
dns_name = "web"
dns_name = "web.local"
ip_address = "127.0.0.1"
uri = "spiffe://demo/dual/web"
`;

describe("csr and sign against GnuTLS and Go", () => {
  let pki: Pki;
  let host: string;
  let chain: string;

  before(async () => {
    pki = await makePki("csr", MANIFEST);
    host = subdir("csr-host");
    const r = await cli(["csr", "--service", "web", "-f", pki.file, "--out", host]);
    assert.equal(r.code, 0, r.err);
    chain = path.join(host, "web.pem");
    const s = await signInto(pki, path.join(host, "web.csr"), chain);
    assert.equal(s.code, 0, s.err);
  });

  it("ok/certtool --verify accepts the signed certificate as server at each address and as client", () => {
    const ca = path.join(pki.pki, "ca/ca.pem");
    for (const [oid, hostname] of [
      ["1.3.6.1.5.5.7.3.1", "127.0.0.1"],
      ["1.3.6.1.5.5.7.3.1", "web.local"],
      ["1.3.6.1.5.5.7.3.2", undefined],
    ] as const) {
      const argv = ["--verify", "--verify-profile", "medium", "--load-ca-certificate", ca, "--infile", chain];
      argv.push("--verify-purpose", oid, ...(hostname ? ["--verify-hostname", hostname] : []));
      const r = exec(need("certtool"), argv);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /Chain verification output: Verified\./);
    }
  });

  it("ok/Go's crypto/x509 verifies it for serverAuth at each address and for clientAuth", () => {
    const go = buildGoverify();
    const ca = path.join(pki.pki, "ca/ca.pem");
    const cases = [
      { ca, cert: chain, usage: "server", hosts: ["127.0.0.1", "web.local", "web"] },
      { ca, cert: chain, usage: "client", hosts: [] },
    ];
    const r = exec(go, [], { input: JSON.stringify(cases) });
    assert.equal(r.code, 0, r.out);
    const results = JSON.parse(r.stdout) as { ok: boolean; error: string }[];
    assert.deepEqual(
      results.map((x) => x.ok),
      [true, true],
      JSON.stringify(results),
    );
  });

  it("ok/a request made by GnuTLS certtool (CA:FALSE, digitalSignature asked) is signed; one asking CA:TRUE is refused", async () => {
    const d = subdir("csr-gnutls");
    const ok = gnutlsRequest(d, "web", WEB_TEMPLATE);
    const r = await signInto(pki, ok, path.join(d, "web.pem"));
    assert.equal(r.code, 0, r.err);
    const v = exec(need("certtool"), [
      "--verify",
      "--load-ca-certificate",
      path.join(pki.pki, "ca/ca.pem"),
      "--infile",
      path.join(d, "web.pem"),
    ]);
    assert.equal(v.code, 0, v.out);
    const ca = gnutlsRequest(d, "ca", `${WEB_TEMPLATE}ca\ncert_signing_key\n`);
    const bad = await signInto(pki, ca);
    assert.equal(bad.code, 2, bad.err);
    assert.match(bad.err, /extensionRequest\.basicConstraints: asks for CA:TRUE/);
    assert.match(bad.err, /extensionRequest\.keyUsage: asks for keyCertSign/);
  });

  it("ok/gnutls-cli with web's host key and signed certificate completes mTLS with an apply-issued openssl s_server, which verified it", async () => {
    const port = await freePort();
    const api = pki.svc("api");
    const server = startServer("csr-s_server", need("openssl"), [
      "s_server",
      "-accept",
      `127.0.0.1:${port}`,
      "-cert",
      api.cert,
      "-key",
      api.key,
      "-CAfile",
      api.ca,
      "-Verify",
      "2",
      "-verify_return_error",
      "-www",
    ]);
    try {
      await waitForPort(port, server);
      const r = exec(
        need("gnutls-cli"),
        [
          "--x509cafile",
          pki.svc("web").ca,
          "--x509certfile",
          chain,
          "--x509keyfile",
          path.join(host, "web-key.pem"),
          "--port",
          String(port),
          "--logfile",
          "/dev/null",
          "127.0.0.1",
        ],
        { input: "GET / HTTP/1.0\r\n\r\n", timeoutMs: 20_000 },
      );
      // s_server -www answers with the client certificate it verified (-Verify, -verify_return_error).
      assert.match(r.out, /HTTP\/1\.0 200 ok/i, r.out);
      assert.match(r.out, /Client certificate/, r.out);
      assert.match(r.out, /Subject: CN\s?=\s?web/, r.out);
      assert.doesNotMatch(r.out, /no client certificate available/);
    } finally {
      await server.stop(); // s_server runs until stopped: left running, it holds the file's process open
    }
  });
});
