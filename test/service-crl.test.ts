/**
 * The service library and the CA's CRL: a server built with a source carrying `crl` refuses a
 * revoked client on real loopback handshakes, and fileSource reloads the CRL with the credentials
 * (a client revoked while the server runs is refused after the reload, with no restart).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { describe, it } from "node:test";
import * as tls from "node:tls";
import { authorizeAny, createMtlsServer, fileSource, staticSource, type Reload } from "../src/service/index.ts";
import { runCli, tempDir, writeManifest } from "./helpers/cli.ts";

const MANIFEST = `version: 1
cluster: crl
services:
  api: { usage: server, addresses: [127.0.0.1] }
  good: { usage: client }
  bad: { usage: client }
connections:
  - { from: good, to: api }
  - { from: bad, to: api }
`;
const LIMIT_MS = 20_000;

async function pki() {
  const dir = tempDir("mtlskit-svc-crl-");
  const file = writeManifest(dir, MANIFEST);
  const pkiDir = path.join(dir, "pki");
  const cli = async (...args: string[]) => {
    const r = await runCli([...args, "-f", file, "--pki", pkiDir]);
    assert.equal(r.code, 0, r.err);
  };
  await cli("apply");
  const read = (rel: string) => readFileSync(path.join(pkiDir, rel), "utf8");
  const client = (name: string) => ({
    cert: read(`services/${name}/cert.pem`),
    key: read(`services/${name}/key.pem`),
    ca: read(`services/${name}/ca.pem`),
  });
  return { pkiDir, cli, read, client };
}

/** connect dials the server as a client and reports whether the server accepted it (it answers "ok"). */
function connect(port: number, c: { cert: string; key: string; ca: string }): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: "127.0.0.1", port, ...c, servername: "127.0.0.1" });
    const timer = setTimeout(() => (s.destroy(), resolve("timeout")), LIMIT_MS);
    let data = "";
    s.on("data", (d) => (data += d));
    s.on("end", () => (clearTimeout(timer), resolve(data === "ok" ? "accepted" : `closed: ${data}`)));
    s.on("error", (e) => (clearTimeout(timer), resolve(`refused: ${e.message}`)));
  });
}

/** listen serves "ok" to every client it admits, and keeps why it refused the others (OpenSSL's words). */
async function listen(
  source: Parameters<typeof createMtlsServer>[1],
): Promise<{ port: number; close: () => void; refusals: string[] }> {
  const server = createMtlsServer(tls.createServer, source, { authorize: authorizeAny() }, (socket: tls.TLSSocket) =>
    socket.end("ok"),
  );
  const refusals: string[] = [];
  server.on("tlsClientError", (e) => refusals.push(e.message));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as AddressInfo).port, close: () => server.close(), refusals };
}

describe("service: a CRL refuses revoked clients", { timeout: 120_000 }, () => {
  it("ok/staticSource with crl: the revoked client is refused, the other accepted; without crl both are accepted", async () => {
    const p = await pki();
    const bad = p.client("bad");
    await p.cli("revoke", "bad", "--reason", "keyCompromise");
    await p.cli("apply");
    const api = { cert: p.read("services/api/cert.pem"), key: p.read("services/api/key.pem"), ca: p.read("ca/ca.pem") };
    const withCrl = await listen(staticSource({ ...api, crl: p.read("ca/crl.pem") }));
    const without = await listen(staticSource(api));
    try {
      assert.notEqual(await connect(withCrl.port, bad), "accepted");
      assert.ok(withCrl.refusals.length > 0);
      assert.equal(await connect(withCrl.port, p.client("good")), "accepted");
      assert.equal(await connect(without.port, bad), "accepted");
    } finally {
      withCrl.close();
      without.close();
    }
  });

  it("ok/fileSource reloads the CRL with the credentials: revoked while serving, refused after the reload, no restart", async () => {
    const p = await pki();
    const bad = p.client("bad");
    const reloads: Reload[] = [];
    let reloaded: () => void = () => {};
    const source = fileSource(
      { dir: path.join(p.pkiDir, "services/api"), crl: "../../ca/crl.pem" },
      {
        debounceMs: 20,
        pollMs: 50,
        onReload: (r) => {
          reloads.push(r);
          reloaded();
        },
      },
    );
    const server = await listen(source);
    try {
      assert.equal(await connect(server.port, bad), "accepted");
      const waiting = new Promise<void>((r) => (reloaded = r));
      await p.cli("revoke", "bad", "--reason", "keyCompromise");
      await p.cli("apply");
      await Promise.race([
        waiting,
        new Promise((_, reject) => setTimeout(() => reject(new Error("no reload within 20 s")), LIMIT_MS)),
      ]);
      assert.equal(reloads.length, 1);
      assert.notEqual(reloads[0]!.previous.crl, reloads[0]!.current.crl);
      assert.notEqual(await connect(server.port, bad), "accepted");
      assert.ok(server.refusals.length > 0);
      assert.equal(await connect(server.port, p.client("good")), "accepted");
      // The re-issued bad client (a new serial) is accepted again.
      assert.equal(await connect(server.port, p.client("bad")), "accepted");
    } finally {
      server.close();
      source.close();
    }
  });

  it("fail/a CRL that is not one (garbage, a certificate) is refused at construction, naming it", async () => {
    const p = await pki();
    const api = { cert: p.read("services/api/cert.pem"), key: p.read("services/api/key.pem"), ca: p.read("ca/ca.pem") };
    assert.throws(
      () => staticSource({ ...api, crl: "garbage" }),
      /service: CRL \(given as text\) holds no complete PEM X509 CRL block/,
    );
    assert.throws(
      () => staticSource({ ...api, crl: api.ca }),
      /holds a CERTIFICATE block; fix: keep only X509 CRL blocks/,
    );
    const cut = p.read("ca/crl.pem").slice(0, 120);
    assert.throws(() => staticSource({ ...api, crl: cut }), /CRL \(given as text\)/);
    assert.throws(
      () => fileSource({ dir: path.join(p.pkiDir, "services/api"), crl: "../../ca/missing.pem" }),
      /cannot read CRL .*missing\.pem: ENOENT/,
    );
  });
});
