/**
 * Exports (issue 6, item 1): every format built from a real PKI and judged by readers that share
 * no code with mtlskit: openssl (PKCS#12, verify), the `yaml` package (Kubernetes objects), sh
 * (env files), keytool when the machine has it; the flat layout's names, modes and owners; byte-
 * identical re-runs; outputs refreshed by apply after a renewal; layoutVersion re-issuing.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { before, describe, it } from "node:test";
import { parseAllDocuments } from "yaml";
import { loadMaterial } from "../src/export/material.ts";
import { buildPkcs12, encodePkcs12, pkcs12Matches, type Pkcs12Entry } from "../src/export/pkcs12.ts";
import type { Io } from "../src/cli/output.ts";
import { run } from "../src/cli/main.ts";
import { FLAT_NAMES } from "../src/export/names.ts";
import { loadManifest } from "../src/manifest/index.ts";
import { apply } from "../src/plan/apply.ts";
import { encodePem } from "../src/pki/pem.ts";
import { REPO, runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { opensslVerify } from "./helpers/openssl.ts";

const SERVICERADAR = path.join(REPO, "examples", "serviceradar.yaml");
const NETSY = path.join(REPO, "examples", "netsy.yaml");

/** tree lists every file under `dir` (relative paths) with its mode, sorted. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      out[path.relative(dir, p)] = (statSync(p).mode & 0o7777).toString(8);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

/** snapshot: content hash, inode and mtime of every file, to prove nothing was rewritten. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rel of Object.keys(tree(dir))) {
    const p = path.join(dir, rel);
    const st = statSync(p);
    if (st.isFile()) out[rel] = `${readFileSync(p).toString("base64")}|${st.ino}|${st.mtimeMs}|${st.mode}`;
  }
  return out;
}

const spkiOfCertPem = (pem: string | Buffer) =>
  new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" }).toString("hex");
const spkiOfKeyPem = (pem: string | Buffer) =>
  createPublicKey(createPrivateKey(pem)).export({ type: "spki", format: "der" }).toString("hex");
const svc = (pki: string, name: string, file: string) => readFileSync(path.join(pki, "services", name, file), "utf8");

/** issued applies an example into a fresh temp dir (without its outputs: the library's apply never writes them). */
async function issued(file: string): Promise<{ dir: string; pki: string }> {
  const dir = tempDir();
  const pki = path.join(dir, "pki");
  await apply(loadManifest(file), pki);
  return { dir, pki };
}

describe("export: flat", () => {
  let netsy: { dir: string; pki: string };
  before(async () => (netsy = await issued(NETSY)));

  it("ok/a directory per service with FLAT_NAMES, 0644 public and 0600 keys, the split client pair, the PKI's exact bytes", async () => {
    const out = path.join(netsy.dir, "flat");
    const r = await runCli(["export", "-f", NETSY, "--pki", netsy.pki, "--format", "flat", "--out", out]);
    assert.equal(r.code, 0, r.err);
    const t = tree(out);
    assert.deepEqual(
      Object.keys(t).filter((p) => p.startsWith("node-1")),
      [
        "node-1",
        "node-1/ca.crl",
        "node-1/node-1-client-key.pem",
        "node-1/node-1-client.pem",
        "node-1/node-1-key.pem",
        "node-1/node-1.pem",
        "node-1/root.pem",
      ],
    );
    assert.deepEqual(
      Object.keys(t).filter((p) => p.startsWith("kube-apiserver")),
      [
        "kube-apiserver",
        "kube-apiserver/ca.crl",
        "kube-apiserver/kube-apiserver-key.pem",
        "kube-apiserver/kube-apiserver.pem",
        "kube-apiserver/root.pem",
      ],
    );
    assert.equal(t["node-1"], "700");
    assert.equal(t["node-1/node-1.pem"], "644");
    assert.equal(t["node-1/root.pem"], "644");
    assert.equal(t["node-1/node-1-key.pem"], "600");
    assert.equal(t["node-1/node-1-client-key.pem"], "600");
    const f = (p: string) => readFileSync(path.join(out, p), "utf8");
    assert.equal(f("node-1/node-1.pem"), svc(netsy.pki, "node-1", "cert.pem"));
    assert.equal(f("node-1/node-1-key.pem"), svc(netsy.pki, "node-1", "key.pem"));
    assert.equal(f("node-1/node-1-client.pem"), svc(netsy.pki, "node-1", "client.pem"));
    assert.equal(f("node-1/node-1-client-key.pem"), svc(netsy.pki, "node-1", "client-key.pem"));
    assert.equal(f("node-1/root.pem"), readFileSync(path.join(netsy.pki, "ca", "ca.pem"), "utf8"));
    assert.equal(FLAT_NAMES.ca, "root.pem");
    // Never the CA key, under any name.
    const caKey = readFileSync(path.join(netsy.pki, "ca", "ca-key.pem"), "utf8");
    for (const p of Object.keys(t)) if (statSync(path.join(out, p)).isFile()) assert.notEqual(f(p), caKey, p);
    // openssl: each exported pair verifies against the exported root.pem, and the key is the certificate's.
    const v = opensslVerify({
      caFile: path.join(out, "node-1/root.pem"),
      certFile: path.join(out, "node-1/node-1-client.pem"),
      purpose: "sslclient",
    });
    assert.ok(v.ok, v.output);
    assert.equal(spkiOfKeyPem(f("node-1/node-1-client-key.pem")), spkiOfCertPem(f("node-1/node-1-client.pem")));
  });

  it("ok/per host from the manifest's outputs: ServiceRadar's role-based table, one root.pem each, re-runs rewrite nothing, a renewal refreshes the copy", async () => {
    const dir = tempDir();
    const pki = path.join(dir, "pki");
    const r = await runCli(["apply", "-f", SERVICERADAR, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /Exported flat to .*deploy: 24 files written, 0 unchanged\./);
    const deploy = path.join(dir, "deploy"); // "{pki}/../deploy"
    const t = tree(deploy);
    const files = (host: string) =>
      Object.keys(t)
        .filter((p) => p.startsWith(`${host}/`))
        .map((p) => p.slice(host.length + 1));
    assert.deepEqual(files("serviceradar-cloud"), [
      "ca.crl",
      "cnpg-key.pem",
      "cnpg.pem",
      "core-key.pem",
      "core.pem",
      "datasvc-key.pem",
      "datasvc.pem",
      "nats-key.pem",
      "nats.pem",
      "root.pem",
    ]);
    assert.deepEqual(files("dusk01"), ["ca.crl", "gateway-key.pem", "gateway.pem", "root.pem"]);
    assert.deepEqual(files("agent-host"), [
      "agent-key.pem",
      "agent.pem",
      "ca.crl",
      "checker-key.pem",
      "checker.pem",
      "dusk-key.pem",
      "dusk.pem",
      "root.pem",
      "sysmon-key.pem",
      "sysmon.pem",
    ]);
    for (const [p, mode] of Object.entries(t)) {
      const base = path.basename(p);
      assert.equal(mode, p.includes("/") ? (base.endsWith("-key.pem") ? "600" : "644") : "700", p);
    }
    // The guide's check on each host: openssl verify -CAfile root.pem <component>.pem.
    for (const [host, svcName] of [
      ["serviceradar-cloud", "core"],
      ["dusk01", "gateway"],
      ["agent-host", "agent"],
    ]) {
      const v = opensslVerify({
        caFile: path.join(deploy, host!, "root.pem"),
        certFile: path.join(deploy, host!, `${svcName}.pem`),
        purpose: "sslserver",
      });
      assert.ok(v.ok, v.output);
    }
    // Unchanged inputs: nothing rewritten (same bytes, inodes and mtimes).
    const before = snapshot(deploy);
    const again = await runCli(["apply", "-f", SERVICERADAR, "--pki", pki]);
    assert.equal(again.code, 0, again.err);
    assert.match(again.out, /0 files written, 24 unchanged/);
    assert.deepEqual(snapshot(deploy), before);
    // A renewal (here forced) refreshes exactly the renewed service's copies.
    const renew = await runCli(["apply", "-f", SERVICERADAR, "--pki", pki, "--reissue", "core"]);
    assert.equal(renew.code, 0, renew.err);
    assert.match(renew.out, /2 files written, 22 unchanged/);
    assert.equal(readFileSync(path.join(deploy, "serviceradar-cloud/core.pem"), "utf8"), svc(pki, "core", "cert.pem"));
    assert.equal(
      readFileSync(path.join(deploy, "serviceradar-cloud/core-key.pem"), "utf8"),
      svc(pki, "core", "key.pem"),
    );
    assert.notEqual(
      readFileSync(path.join(deploy, "serviceradar-cloud/core.pem"), "base64"),
      before["serviceradar-cloud/core.pem"]!.split("|")[0],
    );
    // The user's own files in the output directory are never removed.
    writeFileSync(path.join(deploy, "dusk01", "notes.txt"), "mine\n");
    assert.equal((await runCli(["export", "-f", SERVICERADAR, "--pki", pki])).code, 0);
    assert.equal(readFileSync(path.join(deploy, "dusk01", "notes.txt"), "utf8"), "mine\n");
  });

  it("ok/configurable names, and owner/group applied when root (numeric ids), reported when not", async () => {
    const { dir, pki } = await issued(NETSY);
    const m = writeManifest(
      dir,
      `${readFileSync(NETSY, "utf8")}\noutputs:\n  - format: flat\n    dir: out\n    services: [node-2]\n    names: { ca: ca.crt, cert: server.crt, key: server.key, clientCert: client.crt, clientKey: client.key }\n    owner: 65534\n    group: 65534\n`,
      "netsy-out.yaml",
    );
    const r = await runCli(["export", "-f", m, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(Object.keys(tree(path.join(dir, "out"))), [
      "node-2",
      "node-2/ca.crl",
      "node-2/ca.crt",
      "node-2/client.crt",
      "node-2/client.key",
      "node-2/server.crt",
      "node-2/server.key",
    ]);
    const st = statSync(path.join(dir, "out", "node-2", "server.key"));
    if (process.getuid?.() === 0) {
      assert.deepEqual([st.uid, st.gid], [65534, 65534]);
      assert.doesNotMatch(r.err, /not applied/);
    } else {
      assert.equal(st.uid, process.getuid?.());
      assert.match(r.err, /owner\/group not applied: mtlskit is not running as root/);
    }
  });

  it("fail/names without {name} on a host with several services are refused at load (exit 2)", async () => {
    const dir = tempDir();
    const m = writeManifest(
      dir,
      `${readFileSync(NETSY, "utf8")}\noutputs:\n  - format: flat\n    dir: out\n    hosts: { a: [node-1, node-2] }\n    names: { cert: server.crt }\n`,
    );
    const r = await runCli(["apply", "-f", m, "--pki", path.join(dir, "pki")]);
    assert.equal(r.code, 2);
    assert.match(
      r.err,
      /outputs\.0\.names\.cert: is "server\.crt" without \{name\}, so the 2 services of host a \(node-1, node-2\) would write the same file/,
    );
    assert.ok(!existsSync(path.join(dir, "pki")));
  });
});

describe("export: kubernetes", () => {
  let netsy: { dir: string; pki: string };
  before(async () => (netsy = await issued(NETSY)));

  it("ok/a kubernetes.io/tls Secret per certificate and a trust-bundle ConfigMap, every field read back with the yaml package; byte-identical re-runs", async () => {
    const out = path.join(netsy.dir, "k8s");
    const args = [
      "export",
      "-f",
      NETSY,
      "--pki",
      netsy.pki,
      "--format",
      "kubernetes",
      "--out",
      out,
      "--namespace",
      "netsy",
      "--service",
      "node-1,kube-apiserver",
    ];
    const r = await runCli(args);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /kubectl apply -f/);
    assert.deepEqual(tree(out), {
      "kube-apiserver-tls.yaml": "600",
      "my-cluster-ca.yaml": "644",
      "node-1-client-tls.yaml": "600",
      "node-1-tls.yaml": "600",
    });
    const read = (f: string) => {
      const docs = parseAllDocuments(readFileSync(path.join(out, f), "utf8"));
      assert.ok(Array.isArray(docs) && docs.length === 1, `${f}: one document`);
      assert.deepEqual(docs[0]!.errors, []);
      return docs[0]!.toJS() as Record<string, unknown>;
    };
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    for (const [file, service, certFile, keyFile] of [
      ["node-1-tls.yaml", "node-1", "cert.pem", "key.pem"],
      ["node-1-client-tls.yaml", "node-1", "client.pem", "client-key.pem"],
      ["kube-apiserver-tls.yaml", "kube-apiserver", "cert.pem", "key.pem"],
    ] as const) {
      const certPem = svc(netsy.pki, service, certFile);
      const x = new X509Certificate(certPem);
      assert.deepEqual(read(file), {
        apiVersion: "v1",
        kind: "Secret",
        metadata: {
          name: file.replace(/\.yaml$/, ""),
          namespace: "netsy",
          labels: { "app.kubernetes.io/managed-by": "mtlskit", "mtlskit.dev/service": service },
          annotations: {
            "mtlskit.dev/not-after": new Date(x.validTo).toISOString(),
            "mtlskit.dev/spec-fingerprint": `sha256:${x.fingerprint256.replaceAll(":", "").toLowerCase()}`,
          },
        },
        type: "kubernetes.io/tls",
        data: {
          "ca.crt": b64(svc(netsy.pki, service, "ca.pem")),
          "tls.crt": b64(certPem),
          "tls.key": b64(svc(netsy.pki, service, keyFile)),
        },
      });
    }
    assert.deepEqual(read("my-cluster-ca.yaml"), {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "my-cluster-ca", namespace: "netsy", labels: { "app.kubernetes.io/managed-by": "mtlskit" } },
      data: {
        "ca.crt": readFileSync(path.join(netsy.pki, "ca", "ca.pem"), "utf8"),
        "ca.crl": readFileSync(path.join(netsy.pki, "ca", "crl.pem"), "utf8"),
      },
    });
    const before = snapshot(out);
    const again = await runCli(args);
    assert.match(again.out, /0 files written, 4 unchanged/);
    assert.deepEqual(snapshot(out), before);
  });

  it("fail/a Secret name template that is no Kubernetes name (exit 2, nothing written)", async () => {
    const out = path.join(netsy.dir, "k8s-bad");
    const r = await runCli([
      "export",
      "-f",
      NETSY,
      "--pki",
      netsy.pki,
      "--format",
      "kubernetes",
      "--out",
      out,
      "--name",
      "{name}_TLS",
    ]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--name renders "node-1_TLS", which is not a Kubernetes object name/);
    assert.ok(!existsSync(out));
  });
});

describe("export: env", () => {
  let netsy: { dir: string; pki: string };
  before(async () => (netsy = await issued(NETSY)));

  /** sourced runs `. FILE` in sh and prints each variable, as a Netsy unit's ExecStart wrapper would see it. */
  const sourced = (file: string, names: string[]) => {
    const r = spawnSync(
      "sh",
      [
        "-c",
        `set -a; . "$1"; shift; for v in "$@"; do eval "printf '%s=%s\\n' \\"\\$v\\" \\"\\\${$v-UNSET}\\""; done`,
        "sh",
        file,
        ...names,
      ],
      { encoding: "utf8", env: {} },
    );
    assert.equal(r.status, 0, r.stderr);
    return Object.fromEntries(
      r.stdout
        .trim()
        .split("\n")
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
  };
  const VARS = [
    "NETSY_NODE_ID",
    "NETSY_TLS_CA_CERT",
    "NETSY_TLS_SERVER_CERT",
    "NETSY_TLS_SERVER_KEY",
    "NETSY_TLS_CLIENT_CERT",
    "NETSY_TLS_CLIENT_KEY",
  ];

  it("ok/Netsy's variables pointing at the PKI's files, read back by sh; server variables only for serving usages", async () => {
    const out = path.join(netsy.dir, "env");
    const r = await runCli([
      "export",
      "-f",
      NETSY,
      "--pki",
      netsy.pki,
      "--format",
      "env",
      "--out",
      out,
      "--prefix",
      "NETSY_TLS_",
      "--node-id",
      "NETSY_NODE_ID",
    ]);
    assert.equal(r.code, 0, r.err);
    assert.equal(tree(out)["node-1.env"], "644");
    const s = (f: string) => path.join(path.resolve(netsy.pki), "services", "node-1", f);
    assert.deepEqual(sourced(path.join(out, "node-1.env"), VARS), {
      NETSY_NODE_ID: "node-1",
      NETSY_TLS_CA_CERT: s("ca.pem"),
      NETSY_TLS_SERVER_CERT: s("cert.pem"),
      NETSY_TLS_SERVER_KEY: s("key.pem"),
      NETSY_TLS_CLIENT_CERT: s("client.pem"),
      NETSY_TLS_CLIENT_KEY: s("client-key.pem"),
    });
    // Each variable points at a file that exists and is what its name says.
    const vals = sourced(path.join(out, "node-1.env"), VARS);
    assert.equal(
      spkiOfKeyPem(readFileSync(vals.NETSY_TLS_CLIENT_KEY!)),
      spkiOfCertPem(readFileSync(vals.NETSY_TLS_CLIENT_CERT!)),
    );
    const client = sourced(path.join(out, "kube-apiserver.env"), VARS);
    assert.equal(client.NETSY_TLS_SERVER_CERT, "UNSET");
    assert.equal(
      client.NETSY_TLS_CLIENT_CERT,
      path.join(path.resolve(netsy.pki), "services", "kube-apiserver", "cert.pem"),
    );
    // systemd's EnvironmentFile= reads the same lines: comments, and NAME='value' with no `export`.
    for (const line of readFileSync(path.join(out, "node-1.env"), "utf8").trimEnd().split("\n"))
      assert.match(line, /^(#.*|[A-Z_][A-Z0-9_]*='[^'\\]*')$/);
  });

  it("ok/--cert-dir points at a flat deployment (paths with spaces survive sh)", async () => {
    const out = path.join(netsy.dir, "env2");
    const r = await runCli([
      "export",
      "-f",
      NETSY,
      "--pki",
      netsy.pki,
      "--format",
      "env",
      "--out",
      out,
      "--prefix",
      "NETSY_TLS_",
      "--cert-dir",
      "/etc/netsy dir/{name}",
      "--service",
      "node-2",
    ]);
    assert.equal(r.code, 0, r.err);
    const v = sourced(path.join(out, "node-2.env"), VARS);
    assert.equal(v.NETSY_TLS_CA_CERT, "/etc/netsy dir/node-2/root.pem");
    assert.equal(v.NETSY_TLS_CLIENT_KEY, "/etc/netsy dir/node-2/node-2-client-key.pem");
    assert.equal(v.NETSY_NODE_ID, "UNSET");
  });

  it("fail/a path with a quote is refused, not mangled (exit 2)", async () => {
    const r = await runCli([
      "export",
      "-f",
      NETSY,
      "--pki",
      netsy.pki,
      "--format",
      "env",
      "--out",
      path.join(netsy.dir, "env3"),
      "--cert-dir",
      "/etc/it's",
    ]);
    assert.equal(r.code, 2);
    assert.match(r.err, /contains a quote, a backslash or a control character/);
  });
});

describe("export: pkcs12", () => {
  let netsy: { dir: string; pki: string };
  before(async () => (netsy = await issued(NETSY)));
  const openssl = (args: string[]) =>
    execFileSync("openssl", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

  it("ok/openssl pkcs12 reads key, certificate and CA back (PBES2 AES-256-CBC, SHA-256 MAC); keytool too when installed; deterministic", async () => {
    const out = path.join(netsy.dir, "p12");
    const pass = path.join(netsy.dir, "pass.txt");
    writeFileSync(pass, "correct horse battery staple\n", { mode: 0o600 });
    const args = [
      "export",
      "-f",
      NETSY,
      "--pki",
      netsy.pki,
      "--format",
      "pkcs12",
      "--out",
      out,
      "--passphrase-file",
      pass,
      "--service",
      "node-1",
    ];
    const r = await runCli(args);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(tree(out), { "node-1-client.p12": "600", "node-1.p12": "600" });
    for (const [file, certFile, keyFile] of [
      ["node-1.p12", "cert.pem", "key.pem"],
      ["node-1-client.p12", "client.pem", "client-key.pem"],
    ] as const) {
      const p12 = path.join(out, file);
      const info = spawnSync("openssl", ["pkcs12", "-in", p12, "-passin", `file:${pass}`, "-info", "-noout"], {
        encoding: "utf8",
      });
      assert.equal(info.status, 0, info.stderr);
      assert.match(info.stderr, /MAC: sha256, Iteration 10000/);
      assert.match(info.stderr, /Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 10000, PRF hmacWithSHA256/);
      const key = openssl(["pkcs12", "-in", p12, "-passin", `file:${pass}`, "-nodes", "-nocerts"]);
      assert.equal(spkiOfKeyPem(key), spkiOfKeyPem(svc(netsy.pki, "node-1", keyFile)));
      const leaf = openssl(["pkcs12", "-in", p12, "-passin", `file:${pass}`, "-clcerts", "-nokeys"]);
      assert.equal(
        new X509Certificate(leaf).fingerprint256,
        new X509Certificate(svc(netsy.pki, "node-1", certFile)).fingerprint256,
      );
      const cas = openssl(["pkcs12", "-in", p12, "-passin", `file:${pass}`, "-cacerts", "-nokeys"]);
      assert.equal(
        new X509Certificate(cas).fingerprint256,
        new X509Certificate(readFileSync(path.join(netsy.pki, "ca", "ca.pem"))).fingerprint256,
      );
      const wrong = spawnSync("openssl", ["pkcs12", "-in", p12, "-passin", "pass:wrong", "-nodes"], {
        encoding: "utf8",
      });
      assert.notEqual(wrong.status, 0);
      assert.match(wrong.stderr, /Mac verify error/);
    }
    // keytool is not installed by .ci/run; where it exists, Java must see one private-key entry with its chain.
    const keytool = spawnSync("sh", ["-c", "command -v keytool"], { encoding: "utf8" }).stdout.trim();
    if (keytool) {
      const k = spawnSync(
        keytool,
        ["-list", "-v", "-storetype", "PKCS12", "-keystore", path.join(out, "node-1.p12"), "-storepass:file", pass],
        { encoding: "utf8" },
      );
      assert.equal(k.status, 0, k.stdout + k.stderr);
      assert.match(k.stdout, /Alias name: node-1\n/);
      assert.match(k.stdout, /Entry type: PrivateKeyEntry/);
      assert.match(k.stdout, /Certificate chain length: 2/);
    }
    const before = snapshot(out);
    assert.match((await runCli(args)).out, /0 files written, 2 unchanged/);
    assert.deepEqual(snapshot(out), before);
  });

  it("ok/the passphrase from an environment variable; a new passphrase gives a new file", async () => {
    const out = path.join(netsy.dir, "p12env");
    process.env.MTLSKIT_TEST_P12 = "first-passphrase";
    assert.equal(
      (
        await runCli([
          "export",
          "-f",
          NETSY,
          "--pki",
          netsy.pki,
          "--format",
          "pkcs12",
          "--out",
          out,
          "--passphrase-env",
          "MTLSKIT_TEST_P12",
          "--service",
          "kube-apiserver",
        ])
      ).code,
      0,
    );
    const first = readFileSync(path.join(out, "kube-apiserver.p12"));
    const cert = openssl([
      "pkcs12",
      "-in",
      path.join(out, "kube-apiserver.p12"),
      "-passin",
      "env:MTLSKIT_TEST_P12",
      "-clcerts",
      "-nokeys",
    ]);
    assert.equal(
      new X509Certificate(cert).fingerprint256,
      new X509Certificate(svc(netsy.pki, "kube-apiserver", "cert.pem")).fingerprint256,
    );
    process.env.MTLSKIT_TEST_P12 = "second-passphrase";
    assert.equal(
      (
        await runCli([
          "export",
          "-f",
          NETSY,
          "--pki",
          netsy.pki,
          "--format",
          "pkcs12",
          "--out",
          out,
          "--passphrase-env",
          "MTLSKIT_TEST_P12",
          "--service",
          "kube-apiserver",
        ])
      ).code,
      0,
    );
    assert.notDeepEqual(readFileSync(path.join(out, "kube-apiserver.p12")), first);
    delete process.env.MTLSKIT_TEST_P12;
    const unset = await runCli([
      "export",
      "-f",
      NETSY,
      "--pki",
      netsy.pki,
      "--format",
      "pkcs12",
      "--out",
      path.join(netsy.dir, "p12none"),
      "--passphrase-env",
      "MTLSKIT_TEST_P12",
    ]);
    assert.equal(unset.code, 2);
    assert.match(unset.err, /MTLSKIT_TEST_P12 that should hold the passphrase is not set/);
    assert.ok(!existsSync(path.join(netsy.dir, "p12none")));
  });

  it("ok/non-ASCII passphrases follow OpenSSL (UTF-8 for PBES2, BMPString for the MAC)", () => {
    const key = svc(netsy.pki, "kube-apiserver", "key.pem");
    const der = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
    const p12 = encodePkcs12(
      {
        pkcs8: createPrivateKey(key).export({ type: "pkcs8", format: "der" }),
        certs: [der(svc(netsy.pki, "kube-apiserver", "cert.pem"))],
        cas: [],
        friendlyName: "k",
      },
      "pässwörd 🔑",
      { iterations: 2048 },
    );
    const dir = tempDir();
    writeFileSync(path.join(dir, "f.p12"), p12);
    writeFileSync(path.join(dir, "pass"), "pässwörd 🔑\n");
    const k = openssl([
      "pkcs12",
      "-in",
      path.join(dir, "f.p12"),
      "-passin",
      `file:${path.join(dir, "pass")}`,
      "-nodes",
      "-nocerts",
    ]);
    assert.equal(spkiOfKeyPem(k), spkiOfKeyPem(key));
  });

  // Issue 12: re-exporting unchanged material skips the encoding; progress while encoding.
  const entry = (over: Partial<Pkcs12Entry> = {}): Pkcs12Entry => {
    const m = loadMaterial(loadManifest(NETSY).manifest, netsy.pki, ["node-1"]).services[0]!;
    return { pkcs8: m.main.pkcs8, certs: m.main.certDers, cas: m.bundleDers, friendlyName: "node-1", ...over };
  };

  it("ok/pkcs12Matches: the same inputs match; a changed passphrase, key, certificate, CA, name, iteration count or byte does not", () => {
    const e = entry();
    const p12 = encodePkcs12(e, "pass-1", { iterations: 2048 });
    assert.ok(pkcs12Matches(p12, e, "pass-1", { iterations: 2048 }));
    const other = loadMaterial(loadManifest(NETSY).manifest, netsy.pki, ["node-2"]).services[0]!;
    const changed: [string, Buffer, Pkcs12Entry, string, number][] = [
      ["passphrase", p12, e, "pass-2", 2048],
      ["key", p12, entry({ pkcs8: other.main.pkcs8 }), "pass-1", 2048],
      ["certificate", p12, entry({ certs: other.main.certDers }), "pass-1", 2048],
      ["CAs", p12, entry({ cas: [] }), "pass-1", 2048],
      ["friendlyName", p12, entry({ friendlyName: "node-x" }), "pass-1", 2048],
      ["iterations", p12, e, "pass-1", 2049],
      ["a ciphertext byte", Buffer.from(p12.map((b, i) => (i === 200 ? b ^ 1 : b))), e, "pass-1", 2048],
      ["length", p12.subarray(0, p12.length - 1), e, "pass-1", 2048],
    ];
    for (const [what, bytes, ent, pass, iterations] of changed)
      assert.ok(!pkcs12Matches(bytes, ent, pass, { iterations }), `a changed ${what} must not match`);
  });

  it("ok/buildPkcs12 keeps a matching .p12 as it is (not encoded again) and encodes a changed one", () => {
    const material = loadMaterial(loadManifest(NETSY).manifest, netsy.pki, ["node-1", "kube-apiserver"]);
    const first = buildPkcs12(material, { format: "pkcs12", dir: "x" } as never, "pass-1", { iterations: 2048 });
    const byPath = new Map(first.map((f) => [f.path, f.bytes]));
    const progress: string[] = [];
    const again = buildPkcs12(material, { format: "pkcs12", dir: "x" } as never, "pass-1", {
      iterations: 2048,
      existing: (p) => byPath.get(p),
      onProgress: (d, t) => progress.push(`${d}/${t}`),
    });
    for (const f of again)
      assert.equal(f.bytes, byPath.get(f.path), `${f.path} is the existing buffer, not a new encoding`);
    assert.deepEqual(progress, ["1/3", "2/3", "3/3"]);
    const rotated = buildPkcs12(material, { format: "pkcs12", dir: "x" } as never, "pass-2", {
      iterations: 2048,
      existing: (p) => byPath.get(p),
    });
    for (const f of rotated)
      assert.ok(!f.bytes.equals(byPath.get(f.path)!), `${f.path} is encoded again under the new passphrase`);
  });

  it("ok/export draws pkcs12 progress on stderr when it is a terminal, and not in a log", async () => {
    const dir = tempDir();
    const services = Array.from({ length: 50 }, (_, i) => `  s${i}: { usage: server }`);
    const m = writeManifest(dir, ["version: 1", "cluster: prog", "services:", ...services].join("\n") + "\n");
    const pki = path.join(dir, "pki");
    await apply(loadManifest(m), pki);
    writeFileSync(path.join(dir, "pass"), "p\n", { mode: 0o600 });
    const args = [
      "export",
      "-f",
      m,
      "--pki",
      pki,
      "--format",
      "pkcs12",
      "--out",
      path.join(dir, "out"),
      "--passphrase-file",
      path.join(dir, "pass"),
    ];
    const runWith = async (errTty: boolean) => {
      let out = "";
      let err = "";
      const io: Io = { out: (t) => void (out += t), err: (t) => void (err += t), tty: false, color: false, errTty };
      const code = await run(args, io);
      return { code, out, err };
    };
    const tty = await runWith(true);
    assert.equal(tty.code, 0, tty.err);
    assert.match(tty.err, /\r {2}pkcs12 [^\r\n]*out: 50\/50\n/);
    assert.match(tty.out, /50 files written, 0 unchanged/);
    const log = await runWith(false);
    assert.equal(log.err, "");
    assert.match(log.out, /0 files written, 50 unchanged/);
  });
});

describe("export: refusals", () => {
  let netsy: { dir: string; pki: string };
  before(async () => (netsy = await issued(NETSY)));
  const exp = (...a: string[]) => runCli(["export", "-f", NETSY, "--pki", netsy.pki, ...a]);

  const cases: [string, string[], RegExp][] = [
    [
      "fail/unknown format",
      ["--format", "jks", "--out", "x"],
      /--format must be one of flat, kubernetes, env, pkcs12; got "jks"/,
    ],
    [
      "fail/unknown service",
      ["--format", "flat", "--out", "x", "--service", "node-9"],
      /unknown service "node-9"; services are: node-1, node-2, node-3, kube-apiserver/,
    ],
    [
      "fail/a passphrase on the command line",
      ["--format", "pkcs12", "--out", "x", "--passphrase", "hunter2"],
      /--passphrase is refused: a passphrase on the command line is visible to every user in ps/,
    ],
    ["fail/--passphrase=... too", ["--format", "pkcs12", "--out", "x", "--password=hunter2"], /--password is refused/],
    [
      "fail/a flag of another format",
      ["--format", "flat", "--out", "x", "--namespace", "a"],
      /--namespace is read only by --format kubernetes; this export is flat/,
    ],
    [
      "fail/--cert-dir with an unknown placeholder (issue 11)",
      ["--format", "env", "--out", "x", "--cert-dir", "/etc/{cn}"],
      /--cert-dir has the unknown placeholder \{cn\}; it may hold only \{name\} \(the service's name\)/,
    ],
    [
      "fail/pkcs12 without a passphrase source",
      ["--format", "pkcs12", "--out", "x"],
      /needs exactly one of --passphrase-file FILE and --passphrase-env NAME/,
    ],
    ["fail/--out without --format", ["--out", "x"], /--out needs --format/],
    ["fail/no outputs in the manifest and no --format", [], /declares no outputs; give --format and --out/],
  ];
  for (const [name, args, want] of cases) {
    it(`${name} (exit 2, nothing written)`, async () => {
      const cwd = process.cwd();
      const here = tempDir();
      process.chdir(here);
      try {
        const r = await exp(...args);
        assert.equal(r.code, 2, r.out + r.err);
        assert.match(r.err, want);
        assert.deepEqual(readdirSync(here), []);
      } finally {
        process.chdir(cwd);
      }
    });
  }

  it("fail/--out inside the PKI directory, also through a symlink (exit 2, nothing written)", async () => {
    const before = snapshot(netsy.pki);
    const r = await exp("--format", "flat", "--out", path.join(netsy.pki, "export"));
    assert.equal(r.code, 2);
    assert.match(r.err, /is inside the PKI directory/);
    execFileSync("ln", ["-s", netsy.pki, path.join(netsy.dir, "link")]);
    const viaLink = await exp("--format", "flat", "--out", path.join(netsy.dir, "link", "x"));
    assert.equal(viaLink.code, 2);
    assert.deepEqual(snapshot(netsy.pki), before);
  });

  it("fail/a manifest output inside the PKI directory stops apply before anything is issued (exit 2)", async () => {
    const dir = tempDir();
    const m = writeManifest(
      dir,
      `${readFileSync(NETSY, "utf8")}\noutputs:\n  - { format: flat, dir: "{pki}/copies" }\n`,
    );
    const r = await runCli(["apply", "-f", m, "--pki", path.join(dir, "pki")]);
    assert.equal(r.code, 2);
    assert.match(r.err, /mtlskit\.yaml:\d+ outputs\.0\.dir: .*is inside the PKI directory/);
    assert.ok(!existsSync(path.join(dir, "pki")));
  });

  it("fail/a PKI not issued yet: exit 3 with the apply command to run", async () => {
    const pki = path.join(tempDir(), "never");
    const r = await runCli([
      "export",
      "-f",
      NETSY,
      "--pki",
      pki,
      "--format",
      "flat",
      "--out",
      path.join(tempDir(), "o"),
    ]);
    assert.equal(r.code, 3);
    assert.match(
      r.err,
      new RegExp(
        `has not been issued for .*netsy\\.yaml\\. Run \`mtlskit apply -f .*netsy\\.yaml --pki ${pki}\` first`,
      ),
    );
  });

  // Issue 11: a truncated certificate made export print "This is a bug in mtlskit" (a plain decode Error).
  for (const file of ["node-1/cert.pem", "node-1/ca.pem"]) {
    it(`fail/a truncated ${file}: exit 3 naming the file and what is wrong, never "a bug", nothing written`, async () => {
      const x = await issued(NETSY);
      const target = path.join(x.pki, "services", file);
      const der = Buffer.from(readFileSync(target, "utf8").split("-----")[2]!.replace(/\s+/g, ""), "base64");
      writeFileSync(target, encodePem("CERTIFICATE", der.subarray(0, der.length - 100)));
      const out = path.join(x.dir, "out");
      const r = await runCli(["export", "-f", NETSY, "--pki", x.pki, "--format", "kubernetes", "--out", out]);
      assert.equal(r.code, 3, r.out + r.err);
      assert.match(
        r.err,
        new RegExp(
          `export: ${target.replace(/[.]/g, "\\.")} is damaged: certificate 1 does not decode \\(truncated contents; the file was truncated or altered\\); run \`mtlskit apply -f .*netsy\\.yaml --pki `,
        ),
      );
      assert.doesNotMatch(r.err, /bug/);
      assert.ok(!existsSync(out));
    });
  }

  it("fail/manifest outputs: a key of another format, an unknown host service, no passphrase (exit 2, each located)", async () => {
    const dir = tempDir();
    const m = writeManifest(
      dir,
      `${readFileSync(NETSY, "utf8")}\noutputs:\n  - { format: flat, dir: a, namespace: x }\n  - { format: flat, dir: b, hosts: { h: [node-7] } }\n  - { format: pkcs12, dir: c }\n`,
    );
    const r = await runCli(["plan", "-f", m, "--pki", path.join(dir, "pki")]);
    assert.equal(r.code, 2);
    assert.match(r.err, /outputs\.0\.namespace: is read only by format kubernetes; this output's format is flat/);
    assert.match(r.err, /outputs\.1\.hosts\.h\.0: names unknown service "node-7"/);
    assert.match(r.err, /outputs\.2: a pkcs12 output needs a passphrase: passphraseFile or passphraseEnv/);
  });
});

describe("export: outputs sharing a dir, names and env files that follow flat (issue 11)", () => {
  const QUICK = path.join(REPO, "examples", "quickstart.yaml");
  const quick = (outputs: string) => `${readFileSync(QUICK, "utf8")}\noutputs:\n${outputs}`;

  it("ok/two kubernetes outputs sharing a dir (two namespaces) name their files per namespace; the second apply writes nothing", async () => {
    const dir = tempDir();
    const m = writeManifest(
      dir,
      quick(
        "  - { format: kubernetes, dir: k8s, namespace: staging, services: [api] }\n  - { format: kubernetes, dir: k8s, namespace: prod, services: [api] }\n  - { format: kubernetes, dir: alone, services: [api] }\n",
      ),
    );
    const pki = path.join(dir, "pki");
    const first = await runCli(["apply", "-f", m, "--pki", pki]);
    assert.equal(first.code, 0, first.err);
    // A lone output keeps its names; the two sharing k8s/ get NAMESPACE.OBJECT.yaml.
    assert.deepEqual(Object.keys(tree(path.join(dir, "alone"))), ["api-tls.yaml", "quickstart-ca.yaml"]);
    assert.deepEqual(Object.keys(tree(path.join(dir, "k8s"))), [
      "prod.api-tls.yaml",
      "prod.quickstart-ca.yaml",
      "staging.api-tls.yaml",
      "staging.quickstart-ca.yaml",
    ]);
    for (const ns of ["staging", "prod"]) {
      const cm = parseAllDocuments(
        readFileSync(path.join(dir, "k8s", `${ns}.quickstart-ca.yaml`), "utf8"),
      )[0]!.toJS() as { metadata: { namespace: string } };
      assert.equal(cm.metadata.namespace, ns);
    }
    const before = snapshot(path.join(dir, "k8s"));
    const again = await runCli(["apply", "-f", m, "--pki", pki]);
    assert.equal(again.code, 0, again.err);
    assert.doesNotMatch(again.out, /Exported kubernetes .*: [1-9]\d* files? written/);
    assert.deepEqual(snapshot(path.join(dir, "k8s")), before);
  });

  it("ok/the ConfigMap's PEM is a literal block scalar that reads back (yaml, js-yaml, kubectl --local) as the exact bundle", async () => {
    const dir = tempDir();
    const pki = path.join(dir, "pki");
    await apply(loadManifest(QUICK), pki);
    const out = path.join(dir, "k8s");
    assert.equal((await runCli(["export", "-f", QUICK, "--pki", pki, "--format", "kubernetes", "--out", out])).code, 0);
    const text = readFileSync(path.join(out, "quickstart-ca.yaml"), "utf8");
    const pem = readFileSync(path.join(pki, "ca", "ca.pem"), "utf8");
    const crl = readFileSync(path.join(pki, "ca", "crl.pem"), "utf8");
    const block = (t: string) =>
      t
        .trimEnd()
        .split("\n")
        .map((l) => `    ${l}\n`)
        .join("");
    assert.doesNotMatch(text, /\\u000a|\\n/);
    assert.ok(text.endsWith(`data:\n  "ca.crt": |\n${block(pem)}  "ca.crl": |\n${block(crl)}`), text);
    const doc = parseAllDocuments(text)[0]!;
    assert.deepEqual(doc.errors, []);
    assert.equal((doc.toJS() as { data: Record<string, string> }).data["ca.crt"], pem);
    const jsYaml = (await import("js-yaml")).load(text) as { data: Record<string, string> };
    assert.equal(jsYaml.data["ca.crt"], pem);
    assert.equal(jsYaml.data["ca.crl"], crl);
    // kubectl's own reader, offline (--local), when the machine has kubectl.
    const kubectl = spawnSync(
      "kubectl",
      ["annotate", "--local", "-o", "json", "-f", path.join(out, "quickstart-ca.yaml"), "checked=yes"],
      { encoding: "utf8", timeout: 60_000 },
    );
    if (kubectl.error === undefined) {
      assert.equal(kubectl.status, 0, kubectl.stderr);
      assert.equal((JSON.parse(kubectl.stdout) as { data: Record<string, string> }).data["ca.crt"], pem);
    }
  });

  it("ok/literal falls back to a quoted scalar whenever a block could not carry the text exactly", async () => {
    const { literal } = await import("../src/export/kubernetes.ts");
    const { parse } = await import("yaml");
    const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    for (const [text, block] of [
      [pem, true],
      [pem + "\n" + pem, true],
      [pem.replaceAll("\n", "\r\n"), false],
      [` ${pem}`, false],
      [`${pem}\n`, false],
      [pem.slice(0, -1), false],
      [`subject=CN = caf\u00e9\n${pem}`, false],
      [`a \n${pem}`, false],
      ["\n" + pem, false],
    ] as const) {
      const value = literal("  ", text);
      assert.equal(value.startsWith("|\n"), block, JSON.stringify(text));
      assert.equal(
        (parse(`data:\n  "ca.crt": ${value}`) as { data: Record<string, string> }).data["ca.crt"],
        text,
        JSON.stringify(text),
      );
    }
  });

  it("fail/two outputs writing the same file are refused at load, naming both (exit 2, nothing written)", async () => {
    const dir = tempDir();
    const m = writeManifest(
      dir,
      quick(
        "  - { format: flat, dir: out }\n  - { format: flat, dir: ./out/, services: [db] }\n  - { format: kubernetes, dir: k8s, namespace: a }\n  - { format: kubernetes, dir: k8s, namespace: a, services: [db] }\n",
      ),
    );
    const r = await runCli(["apply", "-f", m, "--pki", path.join(dir, "pki")]);
    assert.equal(r.code, 2);
    assert.match(
      r.err,
      new RegExp(
        `mtlskit\\.yaml:\\d+ outputs\\.1\\.dir: would write ${dir}/out/db/root\\.pem, which outputs\\.0 \\(flat\\) also writes; each run would overwrite one with the other`,
      ),
    );
    assert.match(
      r.err,
      /outputs\.3\.dir: would write .*k8s\/a\.db-tls\.yaml, which outputs\.2 \(kubernetes\) also writes.*\n.*different namespaces or dirs, or merge them/,
    );
    assert.ok(!existsSync(path.join(dir, "pki")));
  });

  it("fail/a {pki} dir and a plain dir that are the same directory are refused once the PKI is known (exit 2)", async () => {
    const dir = tempDir();
    const m = writeManifest(dir, quick('  - { format: env, dir: out }\n  - { format: env, dir: "{pki}/../out" }\n'));
    const r = await runCli(["apply", "-f", m, "--pki", path.join(dir, "pki")]);
    assert.equal(r.code, 2);
    assert.match(
      r.err,
      /outputs\.1\.dir: outputs\.1 \(env -> .*\/out\) would write .*\/out\/api\.env, which outputs\.0 \(env -> .*\) also writes/,
    );
    assert.ok(!existsSync(path.join(dir, "pki")));
  });

  it("fail/an unknown placeholder in names, name or certDir is a manifest error listing the valid ones (exit 2)", async () => {
    const dir = tempDir();
    const m = writeManifest(
      dir,
      quick(
        '  - { format: flat, dir: a, names: { cert: "{cn}.pem" } }\n  - { format: kubernetes, dir: b, name: "{service}-tls" }\n  - { format: env, dir: c, certDir: "/etc/{host}" }\n',
      ),
    );
    const r = await runCli(["apply", "-f", m, "--pki", path.join(dir, "pki")]);
    assert.equal(r.code, 2);
    assert.match(
      r.err,
      /mtlskit\.yaml:\d+ outputs\.0\.names\.cert: has the unknown placeholder \{cn\}, which would stay in the name literally; names\.cert may hold only \{name\} \(the service's name/,
    );
    assert.match(
      r.err,
      /outputs\.1\.name: has the unknown placeholder \{service\}, which would stay in the name literally; name may hold only \{name\} \(the service's name\), \{cluster\} \(the cluster\)/,
    );
    assert.doesNotMatch(r.err, /not a Kubernetes object name/);
    assert.match(
      r.err,
      /outputs\.2\.certDir: has the unknown placeholder \{host\}, which would stay in the path literally/,
    );
    assert.ok(!existsSync(path.join(dir, "pki")) && !existsSync(path.join(dir, "a")));
  });

  it("ok/an env output with certDir names the files its flat output writes, with the flat output's names", async () => {
    const dir = tempDir();
    const m = writeManifest(
      dir,
      quick(
        '  - { format: flat, dir: flat, services: [api, db], names: { ca: ca.crt, cert: server.crt, key: server.key } }\n  - { format: flat, dir: hosts, hosts: { box: [worker] }, names: { ca: "{name}-ca.pem" } }\n  - { format: env, dir: env, certDir: "/etc/tls/{name}" }\n',
      ),
    );
    const r = await runCli(["apply", "-f", m, "--pki", path.join(dir, "pki")]);
    assert.equal(r.code, 0, r.err);
    const env = (n: string) => readFileSync(path.join(dir, "env", `${n}.env`), "utf8");
    assert.match(
      env("api"),
      /TLS_CA_CERT='\/etc\/tls\/api\/ca\.crt'\nTLS_SERVER_CERT='\/etc\/tls\/api\/server\.crt'\nTLS_SERVER_KEY='\/etc\/tls\/api\/server\.key'\n/,
    );
    assert.match(env("db"), /TLS_CLIENT_CERT='\/etc\/tls\/db\/server\.crt'/);
    // The CA file of a hosts layout is named after the host.
    assert.match(
      env("worker"),
      /TLS_CA_CERT='\/etc\/tls\/worker\/box-ca\.pem'\nTLS_CLIENT_CERT='\/etc\/tls\/worker\/worker\.pem'/,
    );
    // Every path the env files name exists in the flat output (certDir mirrors DIR/NAME/ here).
    for (const n of ["api", "db"]) {
      for (const [, file] of env(n).matchAll(/='\/etc\/tls\/(.*)'/g))
        assert.ok(existsSync(path.join(dir, "flat", file!)), file);
    }
  });

  it("fail/env names that match no flat output, two flat outputs that disagree, names without certDir (exit 2)", async () => {
    const dir = tempDir();
    const m = writeManifest(
      dir,
      quick(
        "  - { format: flat, dir: a, names: { cert: server.crt } }\n  - { format: flat, dir: b, services: [api] }\n  - { format: env, dir: c, certDir: /etc/tls, services: [api] }\n  - { format: env, dir: d, certDir: /etc/tls, services: [db], names: { cert: other.pem } }\n  - { format: env, dir: e, names: { cert: x.pem } }\n",
      ),
    );
    const r = await runCli(["plan", "-f", m, "--pki", path.join(dir, "pki")]);
    assert.equal(r.code, 2);
    assert.match(
      r.err,
      /mtlskit\.yaml:\d+ outputs\.2\.certDir: .*service api gets different file names from flat outputs outputs\.0 \(root\.pem, server\.crt, api-key\.pem\) and outputs\.1 \(root\.pem, api\.pem, api-key\.pem\)/,
    );
    assert.match(
      r.err,
      /outputs\.3\.names: .*other\.pem.* but flat output outputs\.0 writes root\.pem, server\.crt, db-key\.pem/,
    );
    assert.match(r.err, /outputs\.4\.names: names the files in certDir, but this env output has no certDir/);
  });
});

describe("layoutVersion", () => {
  it("ok/bumping it re-issues every certificate once, with the reason; otherwise valid certificates are kept", async () => {
    const dir = tempDir();
    const text = readFileSync(NETSY, "utf8");
    const m = writeManifest(dir, text);
    const pki = path.join(dir, "pki");
    assert.equal((await runCli(["apply", "-f", m, "--pki", pki])).code, 0);
    assert.ok(!existsSync(path.join(pki, "layout-version")), "version 1 needs no record");
    const serials = () =>
      Object.fromEntries(
        ["node-1/cert.pem", "node-1/client.pem", "kube-apiserver/cert.pem"].map((f) => [
          f,
          new X509Certificate(readFileSync(path.join(pki, "services", f))).serialNumber,
        ]),
      );
    const first = serials();
    writeManifest(dir, `${text}\nlayoutVersion: 2\n`);
    const plan = await runCli(["plan", "-f", m, "--pki", pki, "--json"]);
    const certs = (JSON.parse(plan.out) as { certificates: { id: string; action: string; reason: string }[] })
      .certificates;
    assert.equal(certs.length, 7);
    for (const c of certs)
      assert.deepEqual([c.action, c.reason], ["reissue", "layoutVersion changed from 1 to 2"], c.id);
    const a = await runCli(["apply", "-f", m, "--pki", pki, "--json"]);
    assert.equal((JSON.parse(a.out) as { issued: number }).issued, 7);
    assert.equal(readFileSync(path.join(pki, "layout-version"), "utf8"), "2\n");
    const second = serials();
    for (const k of Object.keys(first)) assert.notEqual(second[k], first[k], k);
    const keep = await runCli(["plan", "-f", m, "--pki", pki, "--json"]);
    assert.ok(
      (JSON.parse(keep.out) as { certificates: { action: string }[] }).certificates.every((c) => c.action === "keep"),
      keep.out,
    );
    // Going back is a change too.
    writeManifest(dir, text);
    const back = await runCli(["plan", "-f", m, "--pki", pki, "--json"]);
    assert.ok(
      (JSON.parse(back.out) as { certificates: { reason: string }[] }).certificates.every(
        (c) => c.reason === "layoutVersion changed from 2 to 1",
      ),
      back.out,
    );
  });

  it("fail/it must be a whole number of at least 1 (exit 2)", async () => {
    const dir = tempDir();
    const m = writeManifest(dir, `${readFileSync(NETSY, "utf8")}\nlayoutVersion: 0\n`);
    const r = await runCli(["plan", "-f", m, "--pki", path.join(dir, "pki")]);
    assert.equal(r.code, 2);
    assert.match(r.err, /layoutVersion: must be at least 1; got 0/);
  });
});
