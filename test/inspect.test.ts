/**
 * `mtlskit inspect`: certificates, chains, keys and CSRs made by mtlskit, by openssl and by forge,
 * each field judged by openssl (fingerprints, subjects, SANs, SPKI hashes through
 * `openssl pkey | sha256sum`), and damaged input of every kind answered with a precise message
 * and exit code, never a stack trace.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createPublicKey } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { before, describe, it } from "node:test";
import { inspectText } from "../src/inspect/index.ts";
import { encodePem } from "../src/pki/pem.ts";
import { REPO, runCli, tempDir, type CliResult } from "./helpers/cli.ts";
import { forge, newKey, syntheticRsaKey } from "./helpers/forge.ts";

/** sh runs a shell command in `cwd` and returns its stdout (openssl is the judge). */
const sh = (cwd: string, cmd: string): string =>
  execFileSync("sh", ["-c", cmd], { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });

/** colon turns `sha256sum` hex into openssl's colon form. */
const colon = (hex: string) => hex.trim().split(/\s/)[0]!.toUpperCase().match(/../g)!.join(":");

/** Openssl's answers about a certificate file. */
function judgeCert(dir: string, file: string, inform = "PEM") {
  const x = (opts: string) => sh(dir, `openssl x509 -inform ${inform} -in ${file} -noout ${opts}`).trim();
  return {
    sha256: x("-fingerprint -sha256").replace(/^.*Fingerprint=/i, ""),
    subject: x("-subject -nameopt RFC2253").replace(/^subject=/, ""),
    sans: (x("-ext subjectAltName").split("\n")[1] ?? "").trim(),
    spki: colon(
      sh(
        dir,
        `openssl x509 -inform ${inform} -in ${file} -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum`,
      ),
    ),
  };
}

/** spkiOfKey is `openssl pkey -pubout | openssl pkey -pubin -outform DER | sha256sum` of a key file. */
const spkiOfKey = (dir: string, file: string, pass = "") =>
  colon(
    sh(
      dir,
      `openssl pkey -in ${file} ${pass ? `-passin pass:${pass}` : ""} -pubout | openssl pkey -pubin -outform DER | sha256sum`,
    ),
  );

/** opensslSans renders our SANs the way openssl's -ext subjectAltName prints them. */
const opensslSans = (sans: { type: string; value: string }[]) =>
  sans.map((s) => `${{ dns: "DNS", ip: "IP Address", uri: "URI", email: "email" }[s.type]}:${s.value}`).join(", ");

/** clean asserts what every run must satisfy: no stack frames, no "bug". */
function clean(r: CliResult): CliResult {
  const all = r.out + r.err;
  assert.doesNotMatch(all, /\n\s+at [\w.<]|\(node:|\bbug\b/i, all);
  return r;
}

const inspect = async (...args: string[]) => clean(await runCli(["inspect", ...args]));

// biome-ignore lint/suspicious/noExplicitAny: the --json output is read field by field; its shape is what the tests assert
type Json = any;
async function inspectJson(...args: string[]): Promise<{ code: number; json: Json; err: string }> {
  const r = await inspect("--json", ...args);
  return { code: r.code, json: JSON.parse(r.out), err: r.err };
}

describe("inspect", () => {
  const dir = tempDir("mtlskit-inspect-");
  const pki = path.join(dir, "pki");
  const at = (...p: string[]) => path.join(dir, ...p);
  const write = (name: string, data: string | Buffer) => (writeFileSync(at(name), data), at(name));
  let certPem = "";

  before(async () => {
    const r = await runCli(["apply", "-f", path.join(REPO, "examples/quickstart.yaml"), "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    for (const [name, newkey] of [
      ["rsa", "rsa:2048"],
      ["ec", "ec -pkeyopt ec_paramgen_curve:P-256"],
      ["ed", "ed25519"],
    ] as const) {
      sh(
        dir,
        `openssl req -x509 -newkey ${newkey} -nodes -keyout ${name}.key -out ${name}.pem -days 30 -subj "/CN=${name}.test/O=Inspect" -addext "subjectAltName=DNS:${name}.test,IP:10.0.0.1,URI:spiffe://inspect/${name}" -addext "extendedKeyUsage=serverAuth" 2>/dev/null`,
      );
    }
    certPem = readFileSync(at("ec.pem"), "utf8");
    sh(dir, "openssl x509 -in ec.pem -outform DER -out ec.der");
    sh(
      dir,
      `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout csr.key -out req.csr -subj "/CN=csr.test/O=Inspect" -addext "subjectAltName=DNS:csr.test,DNS:alt.test,IP:192.0.2.7" -addext "extendedKeyUsage=serverAuth,clientAuth" 2>/dev/null`,
    );
    sh(dir, "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out pkcs8.key");
    sh(dir, "openssl ecparam -name prime256v1 -genkey -out sec1.key");
    sh(dir, "openssl genrsa -traditional -out pkcs1.key 2048 2>/dev/null");
    sh(dir, "openssl pkcs8 -topk8 -v2 aes-256-cbc -in pkcs8.key -passout pass:secret -out enc.key");
    sh(dir, "openssl rsa -in pkcs1.key -traditional -aes256 -passout pass:secret -out legacy.key 2>/dev/null");
    sh(
      dir,
      "openssl pkey -in pkcs8.key -pubout -out pub.pem && openssl rsa -in pkcs1.key -RSAPublicKey_out -out rsapub.pem 2>/dev/null",
    );
    sh(dir, "openssl pkcs8 -topk8 -nocrypt -in pkcs8.key -outform DER -out pkcs8.der");
  });

  // ── ok ────────────────────────────────────────────────────────────────────────────────────────
  it("ok/mtlskit apply: api is server, worker client, db dual; identity, fingerprints, SANs as openssl reads them", async () => {
    for (const [svc, usage] of [
      ["api", "server"],
      ["worker", "client"],
      ["db", "dual"],
    ] as const) {
      const file = path.join(pki, "services", svc, "cert.pem");
      const { code, json } = await inspectJson(file);
      assert.equal(code, 0);
      const c = json.files[0].items[0];
      const o = judgeCert(dir, file);
      assert.equal(c.kind, "certificate");
      assert.equal(c.usage, usage);
      assert.equal(c.identity.uri, `spiffe://quickstart.local/${usage}/${svc}`);
      assert.equal(c.sha256, o.sha256);
      assert.equal(c.key.spkiSha256, o.spki);
      assert.equal(c.subject.replace(/, /g, ","), o.subject);
      assert.equal(opensslSans(c.sans), o.sans);
      assert.equal(c.key.type, "ECDSA P-256");
      assert.equal(c.validity.status, "valid");
      assert.match(c.validity.text, /^valid, (89|90) days left$/);
      assert.deepEqual(c.lints, []);
      assert.equal(c.ca, null);
    }
  });

  it("ok/mtlskit apply: the CA certificate shows CA facts and no leaf-only lints", async () => {
    const { code, json } = await inspectJson(path.join(pki, "ca", "ca.pem"));
    assert.equal(code, 0);
    const c = json.files[0].items[0];
    assert.deepEqual(c.ca, { pathLen: 0, keyCertSign: true, cRLSign: true });
    assert.equal(c.selfSigned, true);
    assert.equal(c.usage, "any (no extendedKeyUsage)");
    assert.deepEqual(c.lints, [], "eku-absent is a leaf lint");
    const h = await inspect(path.join(pki, "ca", "ca.pem"));
    assert.match(h.out, /CA {11}yes: may sign certificates, at most 0 CAs below it/);
    assert.match(h.out, /\(self-signed\)/);
  });

  it("ok/several files: each key names the certificate it belongs to", async () => {
    const api = path.join(pki, "services/api");
    const { code, json } = await inspectJson(
      path.join(api, "cert.pem"),
      path.join(api, "key.pem"),
      path.join(pki, "services/worker/key.pem"),
    );
    assert.equal(code, 0);
    const [apiCert, apiKey, workerKey] = json.files.map((f: Json) => f.items[0]);
    assert.equal(apiKey.kind, "private-key");
    assert.equal(apiCert.subject, "CN=api, O=Quickstart");
    assert.deepEqual(apiKey.matches, [`${path.join(api, "cert.pem")} [1] CN=api, O=Quickstart`]);
    assert.equal(apiKey.key.spkiSha256, spkiOfKey(dir, path.join(api, "key.pem")));
    assert.deepEqual(workerKey.matches, []);
    const h = await inspect(path.join(api, "cert.pem"), path.join(pki, "services/worker/key.pem"));
    assert.match(h.out, /matches {6}none of the certificates given/);
  });

  for (const [name, type] of [
    ["rsa", "RSA 2048"],
    ["ec", "ECDSA P-256"],
    ["ed", "Ed25519"],
  ] as const) {
    it(`ok/openssl req -x509 ${type}: fields agree with openssl`, async () => {
      const o = judgeCert(dir, `${name}.pem`);
      const { code, json } = await inspectJson(at(`${name}.pem`), at(`${name}.key`));
      assert.equal(code, 0, "openssl's self-signed CA certificate has warnings at most");
      const [c, k] = json.files.map((f: Json) => f.items[0]);
      assert.equal(c.key.type, type);
      assert.equal(c.sha256, o.sha256);
      assert.equal(c.key.spkiSha256, o.spki);
      assert.equal(k.key.spkiSha256, spkiOfKey(dir, `${name}.key`));
      assert.equal(k.key.type, type);
      assert.equal(c.subject.replace(/, /g, ","), o.subject);
      assert.equal(opensslSans(c.sans), o.sans);
      assert.equal(c.usage, "server");
      assert.equal(c.identity.uri, `spiffe://inspect/${name}`);
      assert.deepEqual(
        c.extensions.filter((x: Json) => x.critical).map((x: Json) => x.name),
        ["basicConstraints"],
      );
      assert.equal(k.matches[0], `${at(`${name}.pem`)} [1] O=Inspect, CN=${name}.test`);
      const h = await inspect(at(`${name}.pem`));
      for (const want of [
        `key          ${type}`,
        `SHA-256      ${o.sha256}`,
        `SPKI SHA-256 ${o.spki}`,
        "basicConstraints (critical): CA:TRUE",
        "usage        server",
      ])
        assert.ok(h.out.includes(want), `${want}\n${h.out}`);
    });
  }

  it("ok/DER input reads as the PEM does; concatenated DER objects are each an item", async () => {
    const o = judgeCert(dir, "ec.der", "DER");
    const { code, json } = await inspectJson(at("ec.der"));
    assert.equal(code, 0);
    const c = json.files[0].items[0];
    assert.deepEqual([c.offset, c.line, c.label, c.sha256], [0, null, null, o.sha256]);
    const der = readFileSync(at("ec.der"));
    const two = await inspectJson(write("two.der", Buffer.concat([der, readFileSync(at("pkcs8.der"))])));
    assert.deepEqual(
      two.json.files[0].items.map((i: Json) => [i.kind, i.offset]),
      [
        ["certificate", 0],
        ["private-key", der.length],
      ],
    );
    assert.equal(two.json.files[0].items[1].key.spkiSha256, spkiOfKey(dir, "pkcs8.key"));
  });

  it("ok/text around PEM blocks is ignored; lines are counted", async () => {
    const f = write(
      "junk.pem",
      `subject=CN = ec.test\nissuer=whatever\n${certPem}Bag Attributes\n${readFileSync(at("pkcs8.key"), "utf8")}trailing words\n`,
    );
    const { code, json } = await inspectJson(f);
    assert.equal(code, 0);
    assert.deepEqual(
      json.files[0].items.map((i: Json) => [i.kind, i.line]),
      [
        ["certificate", 3],
        ["private-key", 3 + certPem.split("\n").length],
      ],
    );
  });

  const ROOT_NOTE = (i: number) =>
    `[${i}] (CN=Root) is the self-signed root: allowed in a chain file but unnecessary, since every peer verifies against the root in its own trust bundle (ca.pem), never one the chain sends`;

  it("ok/a chain in order: each certificate is signed by the next; the root included is only a note", async () => {
    const root = forge({ ca: true, cn: "Root" });
    const int = forge({ ca: true, cn: "Intermediate", issuer: root });
    const leaf = forge({ cn: "leaf.test", issuer: int });
    const { code, json } = await inspectJson(write("chain.pem", leaf.pem + int.pem + root.pem));
    assert.equal(code, 0);
    assert.deepEqual(
      json.files[0].items.map((i: Json) => i.signedByNext),
      [true, true, null],
    );
    assert.deepEqual(json.files[0].notes, [ROOT_NOTE(3)], "a complete chain with its root: no link is missing");
    assert.deepEqual(
      json.files[0].items.flatMap((i: Json) => i.lints.map((l: Json) => l.code)),
      [],
    );
    const h = await inspect(at("chain.pem"));
    assert.match(h.out, /chain {8}signed by the next certificate \[2\]/);
    assert.equal((await inspectJson(write("chain-noroot.pem", leaf.pem + int.pem))).json.files[0].notes.length, 0);
  });

  // Review: an intermediate-first file exited 0 with a false "a link is missing ... belongs
  // between [1] and [2]". OpenSSL, Go and Node load the first certificate as the leaf, so the file
  // serves the intermediate: an error (exit 1) on the first certificate, naming the leaf's block.
  it("fail/intermediate first, then the leaf (and the root): an error naming the leaf's block, exit 1", async () => {
    const root = forge({ ca: true, cn: "Root" });
    const int = forge({ ca: true, cn: "Intermediate", issuer: root });
    const leaf = forge({ cn: "leaf.test", issuer: int });
    const message =
      "the first certificate is a CA (CN=Intermediate); the leaf CN=leaf.test is block [2]. OpenSSL, Go and Node serve the first certificate of a chain file as the leaf";
    for (const [name, pem, order, notes] of [
      ["int-leaf.pem", int.pem + leaf.pem, "[2], [1]", []],
      ["int-leaf-root.pem", int.pem + leaf.pem + root.pem, "[2], [1], [3]", [ROOT_NOTE(3)]],
    ] as const) {
      const { code, json } = await inspectJson(write(name, pem));
      assert.equal(code, 1, name);
      const [first] = json.files[0].items;
      assert.equal(first.lints.length, 1, name);
      assert.equal(first.lints[0].code, "chain-order");
      assert.equal(first.lints[0].severity, "error");
      assert.ok(first.lints[0].message.startsWith(message), first.lints[0].message);
      assert.equal(
        first.lints[0].change,
        `put the leaf first, then each issuer after what it signed: blocks ${order} in that order (cat leaf.pem intermediate.pem > FILE)`,
      );
      assert.deepEqual(json.files[0].notes, notes, name);
      const h = await inspect(at(name));
      assert.equal(h.code, 1);
      assert.match(
        h.out,
        /error {3}chain-order: the first certificate is a CA \(CN=Intermediate\); the leaf CN=leaf\.test is block \[2\]/,
      );
      assert.match(h.out, /fix: put the leaf first/);
      assert.doesNotMatch(h.out, /a link is missing/);
      assert.match(h.out, /\nFAIL: 1 error, /);
    }
    const reversed = await inspectJson(write("reversed.pem", root.pem + int.pem + leaf.pem));
    assert.equal(reversed.code, 1);
    assert.equal(
      reversed.json.files[0].items[0].lints.at(-1).change,
      "put the leaf first, then each issuer after what it signed: blocks [3], [2], [1] in that order (cat leaf.pem intermediate.pem > FILE)",
    );
  });

  it("ok/a chain in the wrong order, with a missing link, or a bundle: notes say so", async () => {
    const root = forge({ ca: true, cn: "Root" });
    const int = forge({ ca: true, cn: "Intermediate", issuer: root });
    const leaf = forge({ cn: "leaf.test", issuer: int });
    const order = await inspectJson(write("order.pem", leaf.pem + root.pem + int.pem));
    assert.equal(order.code, 0);
    assert.deepEqual(
      order.json.files[0].items.map((i: Json) => i.signedByNext),
      [false, false, null],
    );
    assert.deepEqual(order.json.files[0].notes, [
      "the order is wrong: [1] is signed by [3], which should come right after it; list the leaf first, then each issuer after what it signed",
      "the order is wrong: [3] is signed by [2], which should come right after it; list the leaf first, then each issuer after what it signed",
      ROOT_NOTE(2),
    ]);
    const gap = await inspectJson(write("gap.pem", leaf.pem + root.pem));
    assert.deepEqual(gap.json.files[0].notes, [
      "a link is missing: nothing in this file signed [1] (its issuer is CN=Intermediate); that certificate belongs between [1] and [2]",
    ]);
    const bundle = await inspectJson(write("bundle.pem", root.pem + forge({ ca: true, cn: "Other Root" }).pem));
    assert.deepEqual(bundle.json.files[0].notes, [
      "no certificate in this file signed another: 2 separate certificates (a trust bundle?), not a chain",
    ]);
    const cas = await inspectJson(write("cas.pem", int.pem + root.pem));
    assert.deepEqual(
      [cas.code, cas.json.files[0].notes],
      [0, []],
      "CAs alone (a bundle with its intermediate) are no chain to serve",
    );
    const h = await inspect(at("order.pem"));
    assert.match(h.out, /note: the order is wrong/);
  });

  // Review: `openssl pkcs12 -export` output was "not a certificate, key or certificate request".
  it("ok/a PKCS#12 bundle is named, with the command that extracts it", async () => {
    sh(dir, "openssl pkcs12 -export -in ec.pem -inkey ec.key -passout pass:secret -out bundle.p12");
    const { code, json } = await inspectJson(at("bundle.p12"));
    assert.equal(code, 0);
    assert.deepEqual(
      json.files[0].items.map((i: Json) => [i.kind, i.offset]),
      [["other", 0]],
    );
    assert.match(
      json.files[0].items[0].description,
      /^a PKCS#12 bundle \(not decoded; use openssl pkcs12 -in FILE -nodes to extract it/,
    );
    const h = await inspect(at("bundle.p12"));
    assert.match(h.out, /\[1\] other: a PKCS#12 bundle/);
    assert.doesNotMatch(h.out, /not a certificate, key or certificate request/);
  });

  it("ok/a CSR from openssl: subject, requested SANs and usage, signature verified, as openssl reads them", async () => {
    assert.match(sh(dir, "openssl req -in req.csr -noout -verify 2>&1"), /verify OK/);
    const { code, json } = await inspectJson(at("req.csr"));
    assert.equal(code, 0);
    const r = json.files[0].items[0];
    assert.equal(r.kind, "csr");
    assert.equal(
      r.subject.replace(/, /g, ","),
      sh(dir, "openssl req -in req.csr -noout -subject -nameopt RFC2253")
        .trim()
        .replace(/^subject=/, ""),
    );
    const text = sh(dir, "openssl req -in req.csr -noout -text");
    assert.equal(opensslSans(r.sans), /Subject Alternative Name: *\n\s*(.+)/.exec(text)![1]!.trim());
    assert.deepEqual(
      [r.usage, r.extKeyUsage, r.signature, r.key.type],
      ["dual", ["serverAuth", "clientAuth"], "valid", "ECDSA P-384"],
    );
    assert.equal(
      r.key.spkiSha256,
      colon(sh(dir, "openssl req -in req.csr -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum")),
    );
    assert.equal(r.key.spkiSha256, spkiOfKey(dir, "csr.key"));
    const h = await inspect(at("req.csr"));
    assert.match(
      h.out,
      /certificate request \(line 1, CERTIFICATE REQUEST\)[\s\S]*signature {4}ecdsa-with-SHA256, verifies/,
    );
  });

  it("ok/a CSR altered after signing: the signature does not verify (openssl agrees)", async () => {
    const der = Buffer.from(
      readFileSync(at("req.csr"), "utf8")
        .replace(/-----[^-]+-----/g, "")
        .replace(/\s/g, ""),
      "base64",
    );
    const i = der.indexOf("csr.test");
    der[i] = "d".charCodeAt(0);
    write("altered.csr", encodePem("NEW CERTIFICATE REQUEST", der));
    assert.doesNotMatch(sh(dir, "openssl req -in altered.csr -noout -verify 2>&1 || true"), /verify OK/);
    const { code, json } = await inspectJson(at("altered.csr"));
    assert.equal(code, 0);
    assert.deepEqual(
      [json.files[0].items[0].signature, json.files[0].items[0].subject],
      ["invalid", "O=Inspect, CN=dsr.test"],
    );
  });

  const KEYS = [
    { file: "pkcs8.key", format: "PKCS#8", type: "ECDSA P-256", label: "PRIVATE KEY" },
    { file: "sec1.key", format: "SEC1", type: "ECDSA P-256", label: "EC PRIVATE KEY" },
    { file: "pkcs1.key", format: "PKCS#1", type: "RSA 2048", label: "RSA PRIVATE KEY" },
    { file: "ed.key", format: "PKCS#8", type: "Ed25519", label: "PRIVATE KEY" },
    {
      file: "enc.key",
      format: "PKCS#8, encrypted",
      type: undefined,
      label: "ENCRYPTED PRIVATE KEY",
      encryption: "PBES2 (PBKDF2, aes-256-cbc)",
    },
    {
      file: "legacy.key",
      format: "PEM-encrypted (legacy OpenSSL)",
      type: undefined,
      label: "RSA PRIVATE KEY",
      encryption: "AES-256-CBC",
    },
  ];
  for (const k of KEYS) {
    it(`ok/private key ${k.label} ${k.format}: type and SPKI fingerprint, nothing private printed`, async () => {
      const { code, json } = await inspectJson(at(k.file));
      assert.equal(code, 0);
      const item = json.files[0].items.find((i: Json) => i.kind === "private-key");
      assert.deepEqual(
        [item.format, item.label, item.encrypted, item.key?.type],
        [k.format, k.label, k.encryption !== undefined, k.type],
      );
      if (k.encryption) assert.equal(item.encryption, k.encryption);
      else assert.equal(item.key.spkiSha256, spkiOfKey(dir, k.file));
      const h = await inspect(at(k.file));
      const secret = readFileSync(at(k.file), "utf8")
        .split("\n")
        .filter((l) => /^[A-Za-z0-9+/=]{16,}$/.test(l));
      for (const out of [h.out, JSON.stringify(json)])
        for (const line of secret) assert.ok(!out.includes(line.slice(0, 16)), "private material printed");
      if (k.encryption) assert.match(h.out, /its key type and fingerprint need the passphrase/);
    });
  }

  it("ok/openssl ecparam -genkey: the EC PARAMETERS block is named, the key described", async () => {
    const { json } = await inspectJson(at("sec1.key"));
    assert.deepEqual(
      json.files[0].items.map((i: Json) => [i.kind, i.label]),
      [
        ["other", "EC PARAMETERS"],
        ["private-key", "EC PRIVATE KEY"],
      ],
    );
  });

  it("ok/public keys: SPKI and PKCS#1", async () => {
    const { json } = await inspectJson(at("pub.pem"), at("rsapub.pem"));
    const [spki, rsa] = json.files.map((f: Json) => f.items[0]);
    assert.deepEqual(
      [spki.kind, spki.format, spki.key.type, spki.key.spkiSha256],
      ["public-key", "SPKI", "ECDSA P-256", spkiOfKey(dir, "pkcs8.key")],
    );
    assert.deepEqual(
      [rsa.format, rsa.key.type, rsa.key.spkiSha256],
      ["PKCS#1", "RSA 2048", spkiOfKey(dir, "pkcs1.key")],
    );
  });

  it("ok/standard input: -", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "test/helpers/cli-on-cue.ts"], {
      cwd: REPO,
      stdio: ["pipe", "pipe", "pipe", "ipc"],
    });
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    await new Promise<void>((resolve) => child.once("message", () => resolve()));
    child.send(["inspect", "-"]);
    child.stdin!.end(certPem);
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 0);
    assert.match(out, /^-\n {2}\[1\] certificate \(line 1, CERTIFICATE\)\n {6}subject {6}O=Inspect, CN=ec\.test/);
  });

  it("ok/--json shape: every item of a kind has the same keys, absent values are null", async () => {
    const { json } = await inspectJson(at("ec.pem"), at("ec.key"), at("req.csr"), at("pub.pem"));
    assert.deepEqual(Object.keys(json), ["now", "files", "unreadable", "problems", "errors", "warnings"]);
    assert.deepEqual(Object.keys(json.files[0]), ["name", "error", "items", "notes"]);
    assert.deepEqual(Object.keys(json.files[0].items[0]).sort(), [
      "ca",
      "extKeyUsage",
      "extensions",
      "identity",
      "index",
      "issuer",
      "key",
      "keyUsage",
      "kind",
      "label",
      "line",
      "lints",
      "offset",
      "sans",
      "selfSigned",
      "serial",
      "sha256",
      "signatureAlgorithm",
      "signedByNext",
      "subject",
      "usage",
      "validity",
      "version",
    ]);
    assert.deepEqual(Object.keys(json.files[0].items[0].key), ["type", "algorithm", "bits", "curve", "spkiSha256"]);
    assert.deepEqual(Object.keys(json.files[0].items[0].validity), [
      "notBefore",
      "notAfter",
      "status",
      "daysLeft",
      "text",
    ]);
    assert.deepEqual(Object.keys(json.files[1].items[0]).sort(), [
      "encrypted",
      "encryption",
      "format",
      "index",
      "key",
      "kind",
      "label",
      "line",
      "lints",
      "matches",
      "offset",
    ]);
    assert.deepEqual(Object.keys(json.files[2].items[0]).sort(), [
      "attributes",
      "extKeyUsage",
      "extensions",
      "identity",
      "index",
      "key",
      "keyUsage",
      "kind",
      "label",
      "line",
      "matches",
      "offset",
      "sans",
      "signature",
      "signatureAlgorithm",
      "subject",
      "usage",
    ]);
    assert.deepEqual(Object.keys(json.files[3].items[0]).sort(), [
      "format",
      "index",
      "key",
      "kind",
      "label",
      "line",
      "lints",
      "matches",
      "offset",
    ]);
    assert.equal(json.files[1].items[0].key.spkiSha256, json.files[0].items[0].key.spkiSha256);
  });

  it("ok/forged certificates: usage in words, identity notes, lints with their fixes", async () => {
    const cases: {
      spec: Parameters<typeof forge>[0];
      usage?: string;
      identity?: string | null;
      note?: RegExp;
      lints: string[];
      code: number;
    }[] = [
      { spec: { eku: ["codeSigning"] }, usage: "other: codeSigning", lints: [], code: 0 },
      { spec: { eku: ["clientAuth", "emailProtection"] }, usage: "client (also emailProtection)", lints: [], code: 0 },
      { spec: { eku: null }, usage: "any (no extendedKeyUsage)", lints: ["eku-absent"], code: 0 },
      {
        spec: { sans: ["DNS:a.test", "URI:spiffe://x/a", "URI:spiffe://x/b"] },
        identity: null,
        note: /^ambiguous: 2 URI SANs \(spiffe:\/\/x\/a, spiffe:\/\/x\/b\)/,
        lints: ["identity-count"],
        code: 1,
      },
      { spec: { sans: ["DNS:a.test"] }, identity: null, note: /^none: no URI SAN$/, lints: [], code: 0 },
      {
        spec: {
          notBefore: new Date(Date.now() - 40 * 86_400_000),
          notAfter: new Date(Date.now() - 3 * 86_400_000 - 60_000),
        },
        lints: ["expired"],
        code: 1,
      },
      { spec: { key: newKey("rsa-1024") }, lints: ["weak-key"], code: 1 },
      // Issue 11: Go's crypto/tls refuses RSA keys over 8192 bits; inspect said nothing.
      { spec: { key: syntheticRsaKey(8200) }, lints: ["weak-key"], code: 1 },
      { spec: { key: syntheticRsaKey(8192) }, lints: [], code: 0 },
      {
        spec: {
          ca: true,
          notBefore: new Date(Date.now() - 40 * 86_400_000),
          notAfter: new Date(Date.now() - 86_400_000 - 60_000),
        },
        lints: ["ca-expired"],
        code: 1,
      },
      { spec: { ca: true, ku: ["digitalSignature"] }, lints: ["ca-not-ca"], code: 1 },
      { spec: { ca: true, hash: "sha1", eku: null }, lints: ["weak-signature"], code: 1 },
    ];
    for (const [n, c] of cases.entries()) {
      const f = write(`forged-${n}.pem`, forge(c.spec).pem);
      const { code, json } = await inspectJson(f);
      const item = json.files[0].items[0];
      assert.deepEqual(
        item.lints.map((l: Json) => l.code),
        c.lints,
        `case ${n}`,
      );
      assert.equal(code, c.code, `case ${n}`);
      if (c.usage) assert.equal(item.usage, c.usage);
      if (c.note) assert.match(item.identity.note, c.note);
      if (c.identity === null) assert.equal(item.identity.uri, null);
    }
    const big = await inspect(at("forged-7.pem"));
    assert.match(
      big.out,
      /error {3}weak-key: has an 8200-bit RSA key; Go's crypto\/tls refuses a certificate with an RSA key over 8192 bits \(`tls: server sent certificate containing RSA key larger than 8192 bits`/,
    );
    assert.match(big.out, /fix: issue it with an ECDSA P-256\/P-384, RSA 2048 to 8192 bits or Ed25519 key/);
    const expired = await inspect(at("forged-5.pem"));
    assert.match(expired.out, /expired 3 days ago/);
    assert.match(
      expired.out,
      /error {3}expired: expired 3 days ago \(notAfter .*\)\n {14}fix: issue a new certificate\n/,
    );
    assert.match(expired.out, /\nFAIL: 1 error, 0 warnings in 1 file\.\n$/);
  });

  it("fail/a key file TLS peers refuse by size: weak-key on the public or private key, exit 1 (an 8200-bit RSA key: Go refuses over 8192; 1024 bits: OpenSSL at level 2 refuses)", async () => {
    const big = write(
      "big-rsa.pub.pem",
      createPublicKey({ key: syntheticRsaKey(8200).spki, format: "der", type: "spki" }).export({
        type: "spki",
        format: "pem",
      }) as string,
    );
    const r = await inspectJson(big);
    assert.equal(r.code, 1);
    const item = r.json.files[0].items[0];
    assert.equal(item.kind, "public-key");
    assert.deepEqual(
      item.lints.map((l: Json) => [l.code, l.severity]),
      [["weak-key", "error"]],
    );
    assert.match(item.lints[0].message, /^is an 8200-bit RSA key; Go's crypto\/tls refuses/);
    assert.match(item.lints[0].change, /^use an ECDSA P-256\/P-384, RSA 2048 to 8192 bits or Ed25519 key$/);
    const small = write("small-rsa.key", newKey("rsa-1024").pem);
    const h = await inspect(small);
    assert.equal(h.code, 1);
    assert.match(
      h.out,
      /private key .*\n[\s\S]*error {3}weak-key: is a 1024-bit RSA key; OpenSSL at security level 2 and Go refuse RSA below 2048 bits\n {14}fix: use an ECDSA/,
    );
    const fine = await inspectJson(write("fine.key", newKey().pem));
    assert.equal(fine.code, 0);
    assert.deepEqual(fine.json.files[0].items[0].lints, []);
  });

  it("ok/--at judges validity then", async () => {
    const later = new Date(Date.now() + 400 * 86_400_000).toISOString().slice(0, 10);
    const { code, json } = await inspectJson("--at", later, at("ec.pem"));
    assert.equal(code, 1);
    assert.equal(json.now, `${later}T00:00:00.000Z`);
    assert.match(json.files[0].items[0].validity.text, /^expired 3\d\d days ago$/);
    assert.deepEqual(
      json.files[0].items[0].lints.map((l: Json) => l.code),
      ["ca-expired"],
    );
  });

  it("ok/inspectText never throws and is fast on 5 MB of junk", () => {
    const junk = Buffer.alloc(5 * 1024 * 1024);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919 + (i >> 9)) & 0xff;
    junk[0] = 0x41;
    const text = Buffer.from("-----BEGIN CERTIFICATE-----\n".repeat(3) + "x-----END\n-----\n".repeat(300_000));
    for (const input of [junk, text]) {
      const t0 = performance.now();
      const r = inspectText(input, "junk");
      assert.ok(performance.now() - t0 < 2000, `took ${performance.now() - t0} ms`);
      assert.ok(r.items.length > 0 && r.items.every((i) => i.kind === "problem"));
    }
  });

  // ── fail ──────────────────────────────────────────────────────────────────────────────────────
  const der = () => readFileSync(at("ec.der"));
  const body = () => certPem.split("\n").slice(1, -2);
  const FAILS: { name: string; data: () => string | Buffer; message: string | (() => string); code: number }[] = [
    { name: "empty file", data: () => "", message: "[1] error: the file is empty\n", code: 3 },
    { name: "only whitespace", data: () => "\n  \n", message: "the file is empty (4 bytes of whitespace)", code: 3 },
    {
      name: "garbage text",
      data: () => "hello world, this is not a certificate\n",
      message: 'not PEM or DER (starts with "hello world, thi..."); expected -----BEGIN ...----- blocks or binary DER',
      code: 3,
    },
    {
      name: "truncated PEM, cut in the middle of the base64 and before END",
      data: () => certPem.slice(0, 300),
      message: "line 1: the CERTIFICATE block has no END line (-----END CERTIFICATE-----): the file is truncated",
      code: 3,
    },
    {
      name: "truncated PEM, lines lost before END",
      data: () => ["-----BEGIN CERTIFICATE-----", ...body().slice(0, 4), "-----END CERTIFICATE-----", ""].join("\n"),
      message: () => `line 1: the CERTIFICATE block is truncated: the DER says ${der().length} bytes, 192 present`,
      code: 3,
    },
    {
      name: "truncated PEM, half a line lost",
      data: () =>
        ["-----BEGIN CERTIFICATE-----", ...body().slice(0, 4), "abcdefg", "-----END CERTIFICATE-----", ""].join("\n"),
      message:
        "line 7: the CERTIFICATE block is not valid base64: 263 characters is not a multiple of 4 (a line was cut or lost)",
      code: 3,
    },
    {
      name: "bad base64",
      data: () => certPem.replace(/\n(.{4})./, "\n$1!"),
      message: 'line 2: the CERTIFICATE block is not valid base64: unexpected "!" at column 5',
      code: 3,
    },
    {
      name: "padding in the middle",
      data: () => certPem.replace(/\n(.{8})/, "\n$1==\n"),
      message: 'line 3: the CERTIFICATE block is not valid base64: the data goes on after the "=" padding on line 2',
      code: 3,
    },
    {
      name: "CERTIFICATE label around a private key",
      data: () => readFileSync(at("pkcs8.key"), "utf8").replace(/PRIVATE KEY/g, "CERTIFICATE"),
      message:
        "line 1: a CERTIFICATE block holds a private key (PKCS#8), not a certificate; the label is wrong, or the wrong file was pasted",
      code: 3,
    },
    {
      name: "key label around a certificate",
      data: () => certPem.replace(/CERTIFICATE/g, "PRIVATE KEY"),
      message: "line 1: a PRIVATE KEY block holds a certificate, not a private key (PKCS#8)",
      code: 3,
    },
    {
      name: "EC PRIVATE KEY label around an RSA PKCS#1 key",
      data: () => readFileSync(at("pkcs1.key"), "utf8").replace(/RSA PRIVATE/g, "EC PRIVATE"),
      message: "line 1: an EC PRIVATE KEY block holds an RSA private key (PKCS#1), not an EC private key (SEC1)",
      code: 3,
    },
    {
      name: "CERTIFICATE label around a CSR",
      data: () => readFileSync(at("req.csr"), "utf8").replace(/CERTIFICATE REQUEST/g, "CERTIFICATE"),
      message: "line 1: a CERTIFICATE block holds a certificate request (PKCS#10), not a certificate",
      code: 3,
    },
    {
      name: "unknown label",
      data: () => certPem.replace(/CERTIFICATE/g, "CERTIFICAT"),
      message: 'line 1: unknown PEM label "CERTIFICAT"; the block holds a certificate (label it CERTIFICATE)',
      code: 3,
    },
    {
      name: "END of another label",
      data: () => certPem.replace("END CERTIFICATE", "END PRIVATE KEY"),
      message: () =>
        `line ${certPem.split("\n").length - 1}: the CERTIFICATE block begun on line 1 ends with -----END PRIVATE KEY-----`,
      code: 3,
    },
    {
      name: "END without BEGIN",
      data: () => "-----END CERTIFICATE-----\n",
      message: "line 1: -----END CERTIFICATE----- has no BEGIN line before it",
      code: 3,
    },
    {
      name: "DER cut short",
      data: () => der().subarray(0, 200),
      message: () => `byte 0: truncated: the DER says ${der().length} bytes, 200 present`,
      code: 3,
    },
    {
      name: "DER with stray bytes after it",
      data: () => Buffer.concat([der(), Buffer.from([0xde, 0xad, 0xbe, 0xef])]),
      message: () =>
        `byte ${der().length}: 4 bytes after the DER object are not DER (they start with bytes de ad be ef)`,
      code: 1,
    },
    {
      name: "DER with an indefinite length",
      data: () => Buffer.from([0x30, 0x80, 0x01, 0x02, 0x00, 0x00]),
      message: "byte 0: not valid DER: its length is indefinite (BER, not DER)",
      code: 3,
    },
    {
      name: "random bytes",
      data: () => Buffer.from([0x8f, 0x12, 0xa0, 0x00, 0xff, 0x10, 0x01, 0x02, 0x03]),
      message: "not PEM or DER (starts with bytes 8f 12 a0 00 ff 10 01 02)",
      code: 3,
    },
    {
      name: "random bytes that start like DER",
      data: () => Buffer.from([0x30, 0x0a, 0x81, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a]),
      message: "byte 0: the DER is not a certificate, key or certificate request (its outline matches none of them)",
      code: 3,
    },
    {
      name: "a certificate with a damaged inside",
      data: () => {
        const d = Buffer.from(der());
        d[7]! += 1;
        return encodePem("CERTIFICATE", d);
      },
      message: "line 1: the CERTIFICATE block does not decode as a certificate:",
      code: 3,
    },
    {
      name: "a key with a damaged inside",
      data: () => {
        const d = Buffer.from(readFileSync(at("pkcs8.der")));
        d[12]! ^= 0x01;
        return encodePem("PRIVATE KEY", d);
      },
      message: "line 1: the PRIVATE KEY block does not decode as a private key (PKCS#8):",
      code: 3,
    },
    {
      name: "a BEGIN without END, then a good block",
      data: () => `-----BEGIN CERTIFICATE-----\nMIIB\n${certPem}`,
      message:
        "line 1: the CERTIFICATE block has no END line (-----END CERTIFICATE-----) before the next BEGIN on line 3: the block was cut",
      code: 1,
    },
  ];
  for (const f of FAILS) {
    it(`fail/${f.name}`, async () => {
      const file = write(`fail-${f.name.replace(/\W+/g, "-")}.pem`, f.data());
      const r = await inspect(file);
      const message = typeof f.message === "string" ? f.message : f.message();
      assert.ok(r.out.includes(message), `want ${JSON.stringify(message)} in\n${r.out}`);
      assert.equal(r.code, f.code);
      assert.match(
        r.out,
        f.code === 3 ? /\nUNREADABLE: .* 1 unreadable file in 1 file\.\n$/ : /\nFAIL: .*1 damaged block in 1 file\.\n$/,
      );
    });
  }

  it("fail/5 MB of junk: precise and fast", async () => {
    const junk = Buffer.alloc(5 * 1024 * 1024, "-----BEGIN not a label\n");
    const file = write("junk5.txt", junk);
    const t0 = performance.now();
    const r = await inspect(file);
    assert.ok(performance.now() - t0 < 2000);
    assert.equal(r.code, 3);
    assert.match(r.out, /\[1\] error: not PEM or DER \(starts with "-----BEGIN not a\.\.\."\)/);
  });

  it("fail/a nonexistent path and a directory: exit 3, the other files still shown", async () => {
    const r = await inspect(at("nope.pem"), dir, at("ec.pem"));
    assert.equal(r.code, 3);
    assert.equal(
      r.err,
      `mtlskit inspect: cannot read ${at("nope.pem")}: no such file\nmtlskit inspect: cannot read ${dir}: is a directory; name the files in it (e.g. DIR/*.pem)\n`,
    );
    assert.match(r.out, /certificate \(line 1, CERTIFICATE\)/);
    const { json } = await inspectJson(at("nope.pem"));
    assert.deepEqual([json.files[0].error, json.unreadable], ["no such file", 1]);
  });

  it("fail/usage: no FILE, a bad --at, an unknown flag exit 2", async () => {
    const none = await inspect();
    assert.equal(none.code, 2);
    assert.match(none.err, /mtlskit inspect: name at least one FILE \(or - for standard input\)/);
    const badAt = await inspect("--at", "tomorrow", at("ec.pem"));
    assert.equal(badAt.code, 2);
    assert.match(badAt.err, /--at must be an ISO 8601 time such as 2027-01-01/);
    const flag = await inspect("--jsn", at("ec.pem"));
    assert.equal(flag.code, 2);
    assert.match(flag.err, /mtlskit inspect: Unknown option '--jsn'/);
  });
});
