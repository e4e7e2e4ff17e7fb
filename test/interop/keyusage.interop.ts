/**
 * keyUsage without digitalSignature, judged by real TLS clients (issue 11). `check` calls an RSA
 * server certificate with keyEncipherment but no digitalSignature a warning (key-usage-strict)
 * naming GnuTLS and Java as the peers that refuse it, and an ECDSA one an error (key-usage). Here
 * the clients say whether that is true: `openssl s_server` serves each certificate on loopback,
 * `openssl s_client` (OpenSSL 3) and `gnutls-cli` (GnuTLS) connect with TLS 1.2 and with TLS 1.3,
 * and `mtlskit explain` names the GnuTLS refusal.
 *
 * Measured when the verdicts were set (OpenSSL 3.0.19, GnuTLS 3.7.9, Java 17): the RSA server
 * works with OpenSSL in both versions and is refused by GnuTLS and Java in both; the ECDSA server
 * fails with OpenSSL in TLS 1.2 (no cipher suite) and with GnuTLS and Java everywhere.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { checkPki, type CheckReport } from "../../src/check/index.ts";
import { explain } from "../../src/explain/index.ts";
import { loadManifest } from "../../src/manifest/index.ts";
import { forge, newKey, type Forged } from "../helpers/forge.ts";
import { exec, freePort, need, startServer, stopAll, subdir, waitForPort } from "./harness.ts";

type Version = "1.2" | "1.3";
const VERSIONS: Version[] = ["1.2", "1.3"];

/** Written is one server's files and the CA that issued them. */
interface Written {
  dir: string;
  cert: string;
  key: string;
  ca: string;
}

function write(name: string, ca: Forged, leaf: Forged): Written {
  const dir = subdir(`keyusage-${name}`);
  const w = {
    dir,
    cert: path.join(dir, "server.pem"),
    key: path.join(dir, "server-key.pem"),
    ca: path.join(dir, "ca.pem"),
  };
  writeFileSync(w.cert, leaf.pem);
  writeFileSync(w.key, leaf.key.pem, { mode: 0o600 });
  writeFileSync(w.ca, ca.pem);
  return w;
}

/** judge runs `check` on a manifest whose one server uses `w`'s files and whose client dials it at 127.0.0.1. */
function judge(w: Written, client: Forged): CheckReport {
  const cdir = path.join(w.dir, "client");
  mkdirSync(cdir, { recursive: true });
  writeFileSync(path.join(cdir, "client.pem"), client.pem);
  writeFileSync(path.join(cdir, "client-key.pem"), client.key.pem, { mode: 0o600 });
  const files = (cert: string, key: string) =>
    `{ cert: ${JSON.stringify(cert)}, key: ${JSON.stringify(key)}, ca: ${JSON.stringify(w.ca)} }`;
  const manifest = path.join(w.dir, "mtlskit.yaml");
  writeFileSync(
    manifest,
    [
      "version: 1",
      "cluster: ku",
      "services:",
      "  server:",
      "    usage: server",
      "    addresses: [127.0.0.1]",
      `    files: ${files(w.cert, w.key)}`,
      "  client:",
      "    usage: client",
      `    files: ${files(path.join(cdir, "client.pem"), path.join(cdir, "client-key.pem"))}`,
      "connections:",
      "  - { from: client, to: server, address: 127.0.0.1 }",
      "",
    ].join("\n"),
  );
  return checkPki(loadManifest(manifest).manifest, undefined);
}

/** serve starts `openssl s_server` on `w`'s files for one TLS version; returns its port. */
async function serve(name: string, w: Written, version: Version): Promise<number> {
  const port = await freePort();
  const s = startServer(`keyusage-${name}-tls${version}`, need("openssl"), [
    "s_server",
    "-accept",
    `127.0.0.1:${port}`,
    "-cert",
    w.cert,
    "-key",
    w.key,
    `-tls${version.replace(".", "_")}`,
    "-www",
    "-quiet",
  ]);
  await waitForPort(port, s);
  return port;
}

const opensslClient = (w: Written, port: number, version: Version) =>
  exec(
    need("openssl"),
    [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-CAfile",
      w.ca,
      "-verify_return_error",
      `-tls${version.replace(".", "_")}`,
    ],
    { input: "", timeoutMs: 20_000 },
  );
const gnutlsClient = (w: Written, port: number, version: Version) =>
  exec(
    need("gnutls-cli"),
    ["--x509cafile", w.ca, "--priority", `NORMAL:-VERS-ALL:+VERS-TLS${version}`, "-p", String(port), "127.0.0.1"],
    { input: "", timeoutMs: 20_000 },
  );

describe("keyUsage without digitalSignature: check's verdicts against OpenSSL and GnuTLS clients", {
  timeout: 120_000,
}, () => {
  let ca: Forged;
  let client: Forged;
  before(() => {
    ca = forge({ ca: true, cn: "KeyUsage CA" });
    client = forge({ issuer: ca, cn: "client", eku: ["clientAuth"] });
  });
  after(stopAll);

  it("ok/an RSA server with keyEncipherment: OpenSSL connects in TLS 1.2 and 1.3, GnuTLS refuses in both, and check says key-usage-strict (a warning naming GnuTLS) with the connection ok", async () => {
    const w = write(
      "rsa",
      ca,
      forge({
        issuer: ca,
        cn: "server",
        key: newKey("rsa-2048"),
        ku: ["keyEncipherment"],
        eku: ["serverAuth"],
        sans: ["IP:127.0.0.1"],
      }),
    );
    const report = judge(w, client);
    assert.equal(report.connections[0]!.ok, true, JSON.stringify(report.findings));
    const f = report.findings.find((x) => x.code === "key-usage-strict");
    assert.ok(f, JSON.stringify(report.findings));
    assert.equal(f.severity, "warning");
    assert.match(f.message, /GnuTLS .*refuse it/);
    for (const v of VERSIONS) {
      const port = await serve("rsa", w, v);
      const o = opensslClient(w, port, v);
      assert.match(o.out, /Verify return code: 0 \(ok\)/, `openssl s_client TLS ${v}: ${o.out}`);
      assert.match(o.out, new RegExp(`Protocol *: TLSv${v}|New, TLSv${v}`), `openssl s_client TLS ${v}: ${o.out}`);
      const g = gnutlsClient(w, port, v);
      assert.notEqual(g.code, 0, `gnutls-cli TLS ${v}: ${g.out}`);
      assert.match(g.out, /Key usage violation in certificate has been detected/, `gnutls-cli TLS ${v}`);
      assert.deepEqual(
        explain(g.out).matches.map((m) => m.entry.id),
        ["key-usage-signature"],
        "explain names the refusal",
      );
    }
  });

  it("refused/an ECDSA server with keyEncipherment: OpenSSL fails in TLS 1.2 (no shared cipher) though it connects in 1.3, GnuTLS refuses in both, and check says key-usage and conn-server-usage (errors)", async () => {
    const w = write(
      "ecdsa",
      ca,
      forge({ issuer: ca, cn: "server", ku: ["keyEncipherment"], eku: ["serverAuth"], sans: ["IP:127.0.0.1"] }),
    );
    const report = judge(w, client);
    assert.deepEqual(report.connections[0]!.causes, ["conn-server-usage"]);
    assert.ok(report.findings.some((x) => x.code === "key-usage" && x.severity === "error"));
    const ok: Record<Version, boolean> = { "1.2": false, "1.3": true };
    for (const v of VERSIONS) {
      const port = await serve("ecdsa", w, v);
      const o = opensslClient(w, port, v);
      assert.equal(
        /Verify return code: 0 \(ok\)/.test(o.out) && new RegExp(`New, TLSv${v}`).test(o.out),
        ok[v],
        `openssl s_client TLS ${v}: ${o.out}`,
      );
      const g = gnutlsClient(w, port, v);
      assert.notEqual(g.code, 0, `gnutls-cli TLS ${v}: ${g.out}`);
    }
  });
});
