/**
 * ca.import: an organisation's existing CA (made here with the openssl CLI, independently of
 * mtlskit) signs the services; bad imports are manifest errors naming the field.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { before, describe, it } from "node:test";
import { runCli, tempDir, writeManifest } from "./helpers/cli.ts";

const openssl = (dir: string, ...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });

/** makeOrgCa builds root -> intermediate with openssl; files: root.pem, inter.pem, inter-key.pem, leaf.pem, leaf-key.pem. */
function makeOrgCa(dir: string): void {
  writeFileSync(
    path.join(dir, "ext.cnf"),
    [
      "[root]",
      "basicConstraints=critical,CA:TRUE",
      "keyUsage=critical,keyCertSign,cRLSign",
      "subjectKeyIdentifier=hash",
      "[inter]",
      "basicConstraints=critical,CA:TRUE,pathlen:0",
      "keyUsage=critical,keyCertSign,cRLSign",
      "subjectKeyIdentifier=hash",
      "authorityKeyIdentifier=keyid",
      "[leaf]",
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature",
      "extendedKeyUsage=serverAuth",
      "subjectAltName=DNS:leaf.example",
    ].join("\n"),
  );
  for (const k of ["root", "inter", "leaf"])
    openssl(dir, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${k}-key.pem`);
  openssl(
    dir,
    "req",
    "-x509",
    "-new",
    "-key",
    "root-key.pem",
    "-subj",
    "/O=Org/CN=Org Root",
    "-days",
    "3650",
    "-extensions",
    "root",
    "-config",
    "ext.cnf",
    "-out",
    "root.pem",
  );
  openssl(dir, "req", "-new", "-key", "inter-key.pem", "-subj", "/O=Org/CN=Org Issuing CA", "-out", "inter.csr");
  openssl(
    dir,
    "x509",
    "-req",
    "-in",
    "inter.csr",
    "-CA",
    "root.pem",
    "-CAkey",
    "root-key.pem",
    "-CAcreateserial",
    "-days",
    "1825",
    "-extfile",
    "ext.cnf",
    "-extensions",
    "inter",
    "-out",
    "inter.pem",
  );
  openssl(dir, "req", "-new", "-key", "leaf-key.pem", "-subj", "/CN=leaf.example", "-out", "leaf.csr");
  openssl(
    dir,
    "x509",
    "-req",
    "-in",
    "leaf.csr",
    "-CA",
    "inter.pem",
    "-CAkey",
    "inter-key.pem",
    "-CAcreateserial",
    "-days",
    "30",
    "-extfile",
    "ext.cnf",
    "-extensions",
    "leaf",
    "-out",
    "leaf.pem",
  );
  // Encrypted copies of the intermediate's key: traditional (RFC 1421 headers) and PKCS#8.
  openssl(dir, "ec", "-in", "inter-key.pem", "-aes256", "-passout", "pass:secret", "-out", "inter-enc-key.pem");
  openssl(dir, "pkey", "-in", "inter-key.pem", "-aes256", "-passout", "pass:secret", "-out", "inter-p8enc-key.pem");
  for (const f of readdirSync(dir)) if (f.endsWith("-key.pem")) chmodSync(path.join(dir, f), 0o600);
}

const manifest = (imp: string) => `version: 1
cluster: org
identity:
  uri: "spiffe://org.example/{name}"
ca:
  import: ${imp}
services:
  api: { usage: server, addresses: [127.0.0.1, api.org.internal] }
  worker: { usage: client }
connections:
  - { from: worker, to: api, address: api.org.internal }
`;

describe("ca.import", () => {
  let dir: string;
  before(() => {
    dir = tempDir();
    makeOrgCa(dir);
  });

  it("ok/an intermediate with its chain signs every service; openssl verifies leaf -> intermediate -> root", async () => {
    const file = writeManifest(dir, manifest("{ cert: inter.pem, key: inter-key.pem, chain: root.pem }"), "ok.yaml");
    const pki = path.join(dir, "pki-ok");
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^  CA\s+import/m);
    assert.equal(existsSync(path.join(pki, "ca", "ca-key.pem")), false, "the imported CA key must not be copied");
    const root = readFileSync(path.join(dir, "root.pem"), "utf8");
    assert.equal(readFileSync(path.join(pki, "services", "api", "ca.pem"), "utf8"), root.replace(/\r\n/g, "\n"));
    assert.equal(
      readFileSync(path.join(pki, "ca", "ca.pem"), "utf8"),
      root.replace(/\r\n/g, "\n"),
      "ca/ca.pem publishes the imported root",
    );
    const certFile = path.join(pki, "services", "api", "cert.pem");
    assert.equal(
      (readFileSync(certFile, "utf8").match(/BEGIN CERTIFICATE/g) ?? []).length,
      2,
      "cert.pem holds the leaf and the intermediate",
    );
    // openssl verify reads the first certificate of certFile as the leaf; the intermediate comes from -untrusted.
    const v = spawnSync(
      "openssl",
      [
        "verify",
        "-x509_strict",
        "-purpose",
        "sslserver",
        "-CAfile",
        path.join(pki, "services", "api", "ca.pem"),
        "-untrusted",
        certFile,
        "-verify_hostname",
        "api.org.internal",
        certFile,
      ],
      { encoding: "utf8" },
    );
    assert.equal(v.status, 0, v.stdout + v.stderr);
    const again = await runCli(["apply", "-f", file, "--pki", pki, "--json"]);
    assert.equal(again.code, 0, again.err);
    assert.deepEqual(
      (JSON.parse(again.out) as { certificates: { action: string }[] }).certificates.map((c) => c.action),
      ["keep", "keep"],
    );
  });

  it("ok/a self-signed root needs no chain", async () => {
    const file = writeManifest(dir, manifest("{ cert: root.pem, key: root-key.pem }"), "root.yaml");
    const r = await runCli(["apply", "-f", file, "--pki", path.join(dir, "pki-root")]);
    assert.equal(r.code, 0, r.err);
  });

  const bad: [string, string, RegExp][] = [
    [
      "fail/intermediate without chain",
      "{ cert: inter.pem, key: inter-key.pem }",
      /ca\.import\.cert: .*intermediate CA, and peers need its root[\s\S]*fix: add ca\.import\.chain/,
    ],
    [
      "fail/key of another CA",
      "{ cert: inter.pem, key: root-key.pem, chain: root.pem }",
      /ca\.import\.cert: .*does not match its private key/,
    ],
    [
      "fail/a leaf is not a CA",
      "{ cert: leaf.pem, key: leaf-key.pem, chain: inter.pem }",
      /ca\.import\.(cert|chain): /,
    ],
    [
      "fail/missing file",
      "{ cert: nope.pem, key: inter-key.pem, chain: root.pem }",
      /ca\.import\.cert: cannot read .*nope\.pem: ENOENT/,
    ],
    // Issue 11: the traditional one was "not a readable unencrypted private key (pem: the EC PRIVATE KEY block is not valid base64)".
    [
      "fail/an encrypted traditional key (openssl ec -aes256) is named encrypted, with its cipher",
      "{ cert: inter.pem, key: inter-enc-key.pem, chain: root.pem }",
      /ca\.import\.key: .*inter-enc-key\.pem is encrypted \(AES-256-CBC\); mtlskit signs with the CA key unattended[\s\S]*fix: decrypt it, keeping mode 0600: openssl pkey -in /,
    ],
    [
      "fail/an encrypted PKCS#8 key is named encrypted, with its PBES2 cipher",
      "{ cert: inter.pem, key: inter-p8enc-key.pem, chain: root.pem }",
      /ca\.import\.key: .*inter-p8enc-key\.pem is encrypted \(PKCS#8 AES-256-CBC\)/,
    ],
    [
      "fail/chain that does not lead to the issuer",
      "{ cert: inter.pem, key: inter-key.pem, chain: leaf.pem }",
      /ca\.import\.chain: /,
    ],
  ];
  for (const [name, imp, want] of bad) {
    it(name, async () => {
      const file = writeManifest(dir, manifest(imp), "bad.yaml");
      const pki = path.join(dir, "pki-bad");
      const r = await runCli(["apply", "-f", file, "--pki", pki]);
      assert.equal(r.code, 2, r.out + r.err);
      assert.match(r.err, want);
      assert.match(r.err, /bad\.yaml:6 /, "names the manifest line of ca.import");
      assert.equal(existsSync(pki), false, "nothing written");
    });
  }

  it("fail/an imported key readable by others is refused", async () => {
    const loose = path.join(dir, "loose-key.pem");
    writeFileSync(loose, readFileSync(path.join(dir, "inter-key.pem")), { mode: 0o644 });
    chmodSync(loose, 0o644);
    const file = writeManifest(dir, manifest("{ cert: inter.pem, key: loose-key.pem, chain: root.pem }"), "loose.yaml");
    const r = await runCli(["apply", "-f", file, "--pki", path.join(dir, "pki-loose")]);
    assert.equal(r.code, 2);
    assert.match(r.err, /ca\.import\.key: .*mode 0644, readable by others[\s\S]*chmod 600/);
  });
});
