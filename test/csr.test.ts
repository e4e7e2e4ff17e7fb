/**
 * Keys that never leave their host (issue 13, section 3): `mtlskit csr` on the service's host,
 * `mtlskit sign` on the CA's host, and the csr service as plan, check, status and apply see it.
 * Judged by openssl (req -verify, verify -x509_strict -purpose), by requests openssl makes, and
 * by real mutual-TLS handshakes on loopback with apply-issued peers. Every refusal: exit 2, a
 * message naming the file and the CSR's field, and nothing written.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { before, describe, it } from "node:test";
import { csrPolicy, csrPolicyAsync, leafSpec } from "../src/ca/policy.ts";
import { loadManifest } from "../src/manifest/index.ts";
import { decodeCsr } from "../src/pki/csr.ts";
import { encodePem, parsePem } from "../src/pki/pem.ts";
import { readAndPlan } from "../src/plan/read.ts";
import { signRequest } from "../src/plan/sign.ts";
import { runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { rsa16kCsr } from "./helpers/forge.ts";
import { opensslVerify } from "./helpers/openssl.ts";
import { assertUntouched, inspectPki } from "./helpers/pki.ts";
import { handshake } from "./helpers/tls.ts";

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
  worker:
    usage: client
connections:
  - from: web
    to: api
    address: 127.0.0.1
  - from: worker
    to: web
    address: 127.0.0.1
`;
const WEB_SANS = "DNS:web,DNS:web.local,IP:127.0.0.1,URI:spiffe://demo/dual/web";

const openssl = (args: string[]) =>
  execFileSync("openssl", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });

/** reqVerify runs `openssl req -verify -noout` on a request: its exit status and everything it printed. */
function reqVerify(csr: string): { ok: boolean; out: string } {
  const r = spawnSync("openssl", ["req", "-in", csr, "-verify", "-noout"], { encoding: "utf8", timeout: 60_000 });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  return { ok: r.status === 0 && /self-signature verify OK/.test(out), out };
}

/** opensslReq makes a key and a CSR with `openssl req -new` (never mtlskit's encoder). */
function opensslReq(dir: string, name: string, opts: { newkey?: string[]; subj?: string; addext?: string[] }): string {
  const out = path.join(dir, `${name}.csr`);
  openssl([
    "req",
    "-new",
    ...(opts.newkey ?? ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
    "-nodes",
    "-keyout",
    path.join(dir, `${name}-key.pem`),
    "-subj",
    opts.subj ?? "/CN=web",
    ...(opts.addext ?? []).flatMap((e) => ["-addext", e]),
    "-out",
    out,
  ]);
  return out;
}

describe("csr and sign", () => {
  let dir: string;
  let file: string;
  let pki: string;
  let host: string;
  const sign = (csr: string, service = "web", extra: string[] = []) =>
    runCli(["sign", csr, "--service", service, "-f", file, "--pki", pki, ...extra]);

  before(async () => {
    dir = tempDir("mtlskit-csr-");
    file = writeManifest(dir, MANIFEST);
    pki = path.join(dir, "pki");
    host = path.join(dir, "host");
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
  });

  it("ok/apply makes no key for a csr service, and plan says it awaits a CSR with the commands", async () => {
    assert.ok(existsSync(path.join(pki, "services/api/key.pem")));
    assert.equal(existsSync(path.join(pki, "services/web/key.pem")), false, "apply wrote a key for web");
    assert.equal(existsSync(path.join(pki, "services/web/cert.pem")), false);
    const r = await runCli(["plan", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /web\s+csr\s+awaiting a CSR; run `mtlskit csr --service web/);
    assert.match(r.out, /then `mtlskit sign DIR\/web\.csr --service web/);
    assert.match(r.out, /1 csr service \(web\) needs a certificate apply cannot issue/);
    const j = JSON.parse((await runCli(["plan", "-f", file, "--pki", pki, "--json"])).out);
    const web = j.certificates.find((c: { id: string }) => c.id === "web");
    assert.deepEqual([web.action, web.state], ["csr", "awaiting"]);
  });

  it("ok/csr writes a 0600 key and a request openssl verifies, asking for exactly the manifest's names", async () => {
    const r = await runCli(["csr", "--service", "web", "-f", file, "--out", host]);
    assert.equal(r.code, 0, r.err);
    const key = path.join(host, "web-key.pem");
    const csr = path.join(host, "web.csr");
    assert.equal(statSync(key).mode & 0o777, 0o600);
    assert.equal(statSync(host).mode & 0o777, 0o700);
    assert.match(r.out, /wrote a new ECDSA P-256 key/);
    const rv = reqVerify(csr);
    assert.ok(rv.ok, rv.out);
    const text = openssl(["req", "-in", csr, "-noout", "-text"]);
    assert.match(text, /Subject: CN\s?=\s?web/);
    assert.match(text, /DNS:web, DNS:web\.local, IP Address:127\.0\.0\.1, URI:spiffe:\/\/demo\/dual\/web/);
    // The request's key is the key file's.
    const spkiOfKey = createPublicKey(createPrivateKey(readFileSync(key))).export({ type: "spki", format: "der" });
    assert.deepEqual(decodeCsr(parsePem(readFileSync(csr, "utf8"))[0]!.der).spki, spkiOfKey);
  });

  it("ok/csr again keeps the key (a renewal asks for the same key); --new-key replaces it", async () => {
    const key = path.join(host, "web-key.pem");
    const first = readFileSync(key);
    let r = await runCli(["csr", "--service", "web", "-f", file, "--out", host]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /kept the existing ECDSA P-256 key/);
    assert.deepEqual(readFileSync(key), first);
    const other = tempDir("mtlskit-csr-newkey-");
    r = await runCli(["csr", "--service", "web", "-f", file, "--out", other]);
    const k1 = readFileSync(path.join(other, "web-key.pem"));
    r = await runCli(["csr", "--service", "web", "-f", file, "--out", other, "--new-key"]);
    assert.equal(r.code, 0, r.err);
    assert.notDeepEqual(readFileSync(path.join(other, "web-key.pem")), k1);
    assert.equal(statSync(path.join(other, "web-key.pem")).mode & 0o777, 0o600);
  });

  it("ok/sign signs csr's request into services/web/ (no key), -o gets the chain, openssl verifies it for both purposes", async () => {
    const out = path.join(dir, "web.pem");
    const r = await sign(path.join(host, "web.csr"), "web", ["-o", out]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /no key: it stays on web's host/);
    const cert = path.join(pki, "services/web/cert.pem");
    assert.equal(readFileSync(out, "utf8"), readFileSync(cert, "utf8"));
    assert.equal(
      readFileSync(path.join(pki, "services/web/ca.pem"), "utf8"),
      readFileSync(path.join(pki, "ca/ca.pem"), "utf8"),
    );
    assert.equal(existsSync(path.join(pki, "services/web/key.pem")), false, "sign wrote a key");
    for (const purpose of ["sslserver", "sslclient"] as const) {
      const v = opensslVerify({ caFile: path.join(pki, "ca/ca.pem"), certFile: out, purpose });
      assert.ok(v.ok, v.output);
    }
    const x = new X509Certificate(readFileSync(out));
    assert.equal(x.subjectAltName, "DNS:web, DNS:web.local, IP Address:127.0.0.1, URI:spiffe://demo/dual/web");
    assert.ok(x.checkPrivateKey(createPrivateKey(readFileSync(path.join(host, "web-key.pem")))));
  });

  it("ok/the signed certificate has leafSpec's lifetime and the dual usage: apply's spec, not the request's", () => {
    const loaded = loadManifest(file);
    const web = loaded.manifest.services.find((s) => s.name === "web")!;
    const x = new X509Certificate(readFileSync(path.join(pki, "services/web/cert.pem")));
    const lifetime = new Date(x.validTo).getTime() - new Date(x.validFrom).getTime();
    const spec = leafSpec(web, web.slots[0]!, new Date(0));
    assert.equal(lifetime, spec.notAfter.getTime() - spec.notBefore.getTime());
    assert.match(x.keyUsage?.join(",") ?? "", /1\.3\.6\.1\.5\.5\.7\.3\.1.*1\.3\.6\.1\.5\.5\.7\.3\.2/);
  });

  it("ok/plan shows the csr service signed, then due for renewal with the commands; apply keeps it untouched", async () => {
    const r = await runCli(["plan", "-f", file, "--pki", pki]);
    assert.match(r.out, /web\s+csr\s+signed, valid until/);
    assert.doesNotMatch(r.out, /csr service \(web\) needs/);
    const loaded = loadManifest(file);
    const later = new Date(Date.now() + 80 * 86_400_000);
    const { plan } = readAndPlan(loaded, pki, { now: later });
    const step = plan.csr.find((c) => c.service === "web")!;
    assert.equal(step.state, "renew");
    assert.match(step.reason, /due for renewal/);
    assert.match(step.next ?? "", /mtlskit csr --service web/);
    const before = inspectPki(pki);
    const a = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(a.code, 0, a.err);
    assertUntouched(before, inspectPki(pki));
  });

  it("ok/check judges web's certificate without a key file, says why, and finds no defect", async () => {
    const r = await runCli(["check", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.out + r.err);
    assert.doesNotMatch(r.out, /key-missing/);
    assert.match(r.out, /Keys on their own hosts by design \(csr: true\): web; mtlskit holds no key for it/);
    const j = JSON.parse((await runCli(["check", "-f", file, "--pki", pki, "--json"])).out);
    assert.equal(j.findings.length, 0, JSON.stringify(j.findings));
  });

  it("ok/check still judges a csr service's certificate: a missing one says to run csr and sign, not apply", async () => {
    const other = tempDir("mtlskit-csr-check-");
    const f = writeManifest(other, MANIFEST);
    const p = path.join(other, "pki");
    assert.equal((await runCli(["apply", "-f", f, "--pki", p])).code, 0);
    const r = await runCli(["check", "-f", f, "--pki", p]);
    assert.equal(r.code, 1);
    assert.match(r.out, /cert-missing/);
    assert.match(r.out, /run `mtlskit csr --service web --out DIR` on web's host, then `mtlskit sign/);
    assert.doesNotMatch(r.out, /key-missing/);
  });

  it("ok/status and metrics see the csr service's expiry", async () => {
    const r = await runCli(["status", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /ok\s+web\s+\d{4}-\d{2}-\d{2}/);
    const m = await runCli(["metrics", "-f", file, "--pki", pki]);
    assert.equal(m.code, 0, m.err);
    assert.match(m.out, /service="web"/);
  });

  it("ok/real mTLS handshakes on loopback: web (key from its host) with apply-issued api and worker, both directions", async () => {
    const svc = (n: string) => ({
      cert: path.join(pki, `services/${n}/cert.pem`),
      key: path.join(pki, `services/${n}/key.pem`),
      ca: path.join(pki, `services/${n}/ca.pem`),
    });
    const web = { ...svc("web"), key: path.join(host, "web-key.pem") };
    const asClient = await handshake(svc("api"), web);
    assert.ok(asClient.ok, JSON.stringify(asClient));
    const asServer = await handshake(web, svc("worker"));
    assert.ok(asServer.ok, JSON.stringify(asServer));
  });

  it("ok/a request made by openssl req -new with the manifest's SANs is signed", async () => {
    const od = tempDir("mtlskit-csr-openssl-");
    const csr = opensslReq(od, "web", { addext: [`subjectAltName=${WEB_SANS}`] });
    const r = await sign(csr, "web", ["-o", path.join(od, "web.pem")]);
    assert.equal(r.code, 0, r.err);
    const v = opensslVerify({
      caFile: path.join(pki, "ca/ca.pem"),
      certFile: path.join(od, "web.pem"),
      purpose: "sslserver",
    });
    assert.ok(v.ok, v.output);
  });

  it("ok/a request with a subset of the SANs is signed with all of the manifest's, and says so", async () => {
    const od = tempDir("mtlskit-csr-subset-");
    const csr = opensslReq(od, "web", { addext: ["subjectAltName=DNS:web"] });
    const r = await sign(csr, "web", ["-o", path.join(od, "web.pem")]);
    assert.equal(r.code, 0, r.err);
    assert.match(
      r.out,
      /note: the request did not ask for DNS:web\.local, IP:127\.0\.0\.1, URI:spiffe:\/\/demo\/dual\/web/,
    );
    const x = new X509Certificate(readFileSync(path.join(od, "web.pem")));
    assert.equal(x.subjectAltName, "DNS:web, DNS:web.local, IP Address:127.0.0.1, URI:spiffe://demo/dual/web");
  });

  it("ok/-o - prints the chain on standard output", async () => {
    const r = await sign(path.join(host, "web.csr"), "web", ["-o", "-"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^-----BEGIN CERTIFICATE-----/);
    assert.match(r.err, /signed web's request/);
  });

  // Bad input: exit 2, the file and the field named, nothing written (neither the PKI nor -o).
  const BAD: { name: string; make: (d: string) => string; service?: string; expect: RegExp[] }[] = [
    {
      name: "fail/bad signature",
      make: (d) => {
        const der = Buffer.from(parsePem(readFileSync(path.join(host, "web.csr"), "utf8"))[0]!.der);
        der[der.length - 3]! ^= 0x01;
        const f = path.join(d, "tampered.csr");
        writeFileSync(f, encodePem("CERTIFICATE REQUEST", der));
        assert.equal(reqVerify(f).ok, false, "openssl too refuses the tampered request");
        return f;
      },
      expect: [/tampered\.csr signature: does not verify with the request's own key/],
    },
    {
      name: "fail/wrong key type (RSA 2048 for an ecdsa-p256 service)",
      make: (d) => opensslReq(d, "rsa", { newkey: ["-newkey", "rsa:2048"], addext: [`subjectAltName=${WEB_SANS}`] }),
      expect: [/rsa\.csr subjectPKInfo: is RSA 2048, but services\.web\.key declares ECDSA P-256/],
    },
    {
      name: "fail/extra SANs",
      make: (d) => opensslReq(d, "extra", { addext: [`subjectAltName=${WEB_SANS},DNS:evil.example`] }),
      expect: [
        /extra\.csr extensionRequest\.subjectAltName: asks for DNS:evil\.example, which the manifest does not declare for web/,
      ],
    },
    {
      name: "fail/another identity URI",
      make: (d) => opensslReq(d, "uri", { addext: ["subjectAltName=DNS:web,URI:spiffe://demo/server/api"] }),
      expect: [/uri\.csr extensionRequest\.subjectAltName: asks for URI:spiffe:\/\/demo\/server\/api/],
    },
    {
      name: "fail/CA:TRUE",
      make: (d) => opensslReq(d, "ca", { addext: [`subjectAltName=${WEB_SANS}`, "basicConstraints=critical,CA:TRUE"] }),
      expect: [/ca\.csr extensionRequest\.basicConstraints: asks for CA:TRUE; a service certificate is never a CA/],
    },
    {
      name: "fail/keyCertSign",
      make: (d) => opensslReq(d, "ku", { addext: ["keyUsage=critical,digitalSignature,keyCertSign"] }),
      expect: [/ku\.csr extensionRequest\.keyUsage: asks for keyCertSign/],
    },
    {
      name: "fail/another subject CN",
      make: (d) => opensslReq(d, "cn", { subj: "/CN=api" }),
      expect: [/cn\.csr subject\.CN: asks for CN=api, but the manifest declares CN=web for web/],
    },
    {
      name: "fail/a 16384-bit RSA key",
      make: (d) => {
        const f = path.join(d, "rsa16k.csr");
        writeFileSync(f, encodePem("CERTIFICATE REQUEST", rsa16kCsr()));
        return f;
      },
      expect: [/rsa16k\.csr subjectPKInfo: is an RSA key of 16384 bits, outside the 2048\.\.4096 bits/],
    },
    {
      name: "fail/a certificate instead of a CSR (PEM)",
      make: () => path.join(pki, "services/api/cert.pem"),
      expect: [/cert\.pem: holds a CERTIFICATE, not a certificate request/],
    },
    {
      name: "fail/a certificate instead of a CSR (DER)",
      make: (d) => {
        const f = path.join(d, "cert.der");
        writeFileSync(f, parsePem(readFileSync(path.join(pki, "services/api/cert.pem"), "utf8"))[0]!.der);
        return f;
      },
      expect: [/cert\.der: holds a certificate \(DER\), not a certificate request/],
    },
    {
      name: "fail/garbage",
      make: (d) => {
        const f = path.join(d, "garbage.csr");
        writeFileSync(f, "this is not a request\n");
        return f;
      },
      expect: [/garbage\.csr: is neither PEM nor DER/],
    },
    {
      name: "fail/garbage DER",
      make: (d) => {
        const f = path.join(d, "junk.der");
        writeFileSync(f, Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00]));
        return f;
      },
      expect: [/junk\.der: is not a valid certificate request: csr: /],
    },
    {
      name: "fail/an empty file",
      make: (d) => {
        const f = path.join(d, "empty.csr");
        writeFileSync(f, "");
        return f;
      },
      expect: [/empty\.csr: is empty/],
    },
    {
      name: "fail/a service not declared csr",
      make: () => path.join(host, "web.csr"),
      service: "api",
      expect: [
        /mtlskit\.yaml(:\d+)? services\.api\.csr: api is not declared csr: true/,
        /fix: add csr: true to services\.api/,
      ],
    },
    {
      name: "fail/an unknown service",
      make: () => path.join(host, "web.csr"),
      service: "nope",
      expect: [/services: has no service "nope"; services are: api, web, worker/],
    },
  ];
  for (const c of BAD) {
    it(`${c.name}: exit 2, the file and field named, nothing written`, async () => {
      const d = tempDir("mtlskit-csr-bad-");
      const csr = c.make(d);
      const out = path.join(d, "out.pem");
      const before = inspectPki(pki);
      const r = await sign(csr, c.service ?? "web", ["-o", out]);
      assert.equal(r.code, 2, r.out + r.err);
      assert.match(r.err, /nothing was written/);
      for (const e of c.expect) assert.match(r.err, e);
      assert.doesNotMatch(r.err, /\n\s+at /, "a stack trace");
      assert.equal(existsSync(out), false, "-o was written");
      assertUntouched(before, inspectPki(pki));
    });
  }

  it("fail/sign -o into a folder that does not exist: exit 2 before anything is signed or written", async () => {
    const before = inspectPki(pki);
    const r = await sign(path.join(host, "web.csr"), "web", ["-o", path.join(dir, "no-such-dir", "web.pem")]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /-o .*no-such-dir.*does not exist/);
    assertUntouched(before, inspectPki(pki));
  });

  it("fail/csr for a service not declared csr, or unknown, or without --out: exit 2, nothing written", async () => {
    const d = tempDir("mtlskit-csr-refuse-");
    const out = path.join(d, "out");
    for (const [args, re] of [
      [["--service", "api", "--out", out], /services\.api\.csr: api is not declared csr: true/],
      [["--service", "nope", "--out", out], /has no service "nope"/],
      [["--service", "web"], /--out DIR is required/],
      [["--out", out], /--service NAME is required/],
    ] as const) {
      const r = await runCli(["csr", ...args, "-f", file]);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, re);
      assert.equal(existsSync(out), false);
    }
  });

  it("fail/the manifest refuses csr with files, split or reload", async () => {
    const d = tempDir("mtlskit-csr-manifest-");
    const f = writeManifest(
      d,
      MANIFEST.replace("    csr: true\n", "    csr: true\n    split: true\n    reload: systemctl reload web\n"),
    );
    const r = await runCli(["plan", "-f", f, "--pki", path.join(d, "pki")]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /services\.web\.csr: a csr service holds one certificate from one CSR/);
    assert.match(r.err, /services\.web\.reload: runs after apply changes this service's files, but a csr service/);
  });

  it("fail/--reissue of a csr service is refused: apply never holds its key", async () => {
    const r = await runCli(["apply", "-f", file, "--pki", pki, "--reissue", "web"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /services\.web\.csr: --reissue names service web, whose key is made on its host/);
  });

  it("ok/outputs of every service leave a csr service out (no pair here); naming it in an output or export is refused", async () => {
    const d = tempDir("mtlskit-csr-outputs-");
    const f = writeManifest(d, `${MANIFEST}outputs:\n  - format: flat\n    dir: deploy\n`);
    const p = path.join(d, "pki");
    const r = await runCli(["apply", "-f", f, "--pki", p]);
    assert.equal(r.code, 0, r.err);
    assert.ok(existsSync(path.join(d, "deploy/api/api.pem")));
    assert.equal(existsSync(path.join(d, "deploy/web")), false, "web was exported");
    const named = writeManifest(
      d,
      `${MANIFEST}outputs:\n  - format: flat\n    dir: deploy\n    services: [api, web]\n`,
      "named.yaml",
    );
    const n = await runCli(["plan", "-f", named, "--pki", p]);
    assert.equal(n.code, 2, n.err);
    assert.match(n.err, /outputs\.0\.services\.1: names web, whose key is on its own host \(csr: true\)/);
    const e = await runCli([
      "export",
      "-f",
      f,
      "--pki",
      p,
      "--format",
      "flat",
      "--out",
      path.join(d, "x"),
      "--service",
      "web",
    ]);
    assert.equal(e.code, 2, e.err);
    assert.match(e.err, /web has its key on its own host \(csr: true\)/);
  });

  it("fail/sign waits for apply's lock and writes nothing while another holds it (exit 3); a PKI without a CA is exit 3", async () => {
    const d = tempDir("mtlskit-csr-lock-");
    const f = writeManifest(d, MANIFEST);
    const p = path.join(d, "pki");
    assert.equal((await runCli(["apply", "-f", f, "--pki", p])).code, 0);
    assert.equal((await runCli(["csr", "--service", "web", "-f", f, "--out", path.join(d, "host")])).code, 0);
    const lock = path.join(p, ".lock");
    writeFileSync(
      lock,
      JSON.stringify({ pid: 4242, host: "other-host.example", since: new Date().toISOString() }) + "\n",
    );
    const loaded = loadManifest(f);
    const web = loaded.manifest.services.find((s) => s.name === "web")!;
    const csr = decodeCsr(parsePem(readFileSync(path.join(d, "host", "web.csr"), "utf8"))[0]!.der);
    const before = inspectPki(p);
    assert.throws(
      () => signRequest(loaded, p, web, csr, "web.csr", { lockWaitMs: 200 }),
      (e: Error & { exitCode?: number }) => e.exitCode === 3 && /other-host\.example/.test(e.message),
    );
    assertUntouched(before, inspectPki(p));
    const none = path.join(d, "none");
    const r = await runCli(["sign", path.join(d, "host", "web.csr"), "--service", "web", "-f", f, "--pki", none]);
    assert.equal(r.code, 3, r.err);
    assert.match(r.err, /holds no CA to sign with; nothing was written/);
    assert.equal(existsSync(none), false);
  });

  it("ok/every key type: csr's request verifies in openssl, sign accepts it, openssl verifies the certificate", async () => {
    const d = tempDir("mtlskit-csr-keys-");
    const types = ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519"];
    const f = writeManifest(
      d,
      `version: 1\ncluster: keys\nservices:\n${types.map((t) => `  k-${t}:\n    usage: server\n    csr: true\n    key: ${t}\n    addresses: [127.0.0.1]\n`).join("")}`,
    );
    const p = path.join(d, "pki");
    assert.equal((await runCli(["apply", "-f", f, "--pki", p])).code, 0);
    for (const t of types) {
      const name = `k-${t}`;
      const c = await runCli(["csr", "--service", name, "-f", f, "--out", path.join(d, "host")]);
      assert.equal(c.code, 0, c.err);
      const csr = path.join(d, "host", `${name}.csr`);
      const rv = reqVerify(csr);
      assert.ok(rv.ok, `${t}: ${rv.out}`);
      const r = await runCli(["sign", csr, "--service", name, "-f", f, "--pki", p, "-o", path.join(d, `${name}.pem`)]);
      assert.equal(r.code, 0, `${t}: ${r.err}`);
      const v = opensslVerify({
        caFile: path.join(p, "ca/ca.pem"),
        certFile: path.join(d, `${name}.pem`),
        purpose: "sslserver",
      });
      assert.ok(v.ok, `${t}: ${v.output}`);
    }
  });

  it("ok/csrPolicy, the one function: refusals are data naming every field at once", () => {
    const web = loadManifest(file).manifest.services.find((s) => s.name === "web")!;
    const d = tempDir("mtlskit-csr-policy-");
    const csr = opensslReq(d, "many", {
      subj: "/CN=other",
      addext: ["subjectAltName=DNS:x.example", "basicConstraints=critical,CA:TRUE", "extendedKeyUsage=codeSigning"],
    });
    const r = csrPolicy(web, decodeCsr(parsePem(readFileSync(csr, "utf8"))[0]!.der), new Date());
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.deepEqual(
      r.refusals.map((x) => x.field).sort(),
      [
        "extensionRequest.basicConstraints",
        "extensionRequest.extKeyUsage",
        "extensionRequest.subjectAltName",
        "subject.CN",
      ].sort(),
    );
  });

  it("ok/csrPolicyAsync (serve's path, signatures off the event loop) answers exactly as csrPolicy, refusals in the same order", async () => {
    const web = loadManifest(file).manifest.services.find((s) => s.name === "web")!;
    const d = tempDir("mtlskit-csr-policy-async-");
    const read = (f: string) => Buffer.from(parsePem(readFileSync(f, "utf8"))[0]!.der);
    const tamper = (der: Buffer) => {
      const t = Buffer.from(der);
      t[t.length - 3]! ^= 0x01; // in the signature
      return t;
    };
    const good = read(path.join(host, "web.csr"));
    const many = read(
      opensslReq(d, "many-async", {
        subj: "/CN=other",
        addext: ["subjectAltName=DNS:x.example", "basicConstraints=critical,CA:TRUE"],
      }),
    );
    const rsa = read(
      opensslReq(d, "rsa-async", { newkey: ["-newkey", "rsa:2048"], addext: [`subjectAltName=${WEB_SANS}`] }),
    );
    const now = new Date();
    const cases: [string, Buffer, string[]][] = [
      ["valid", good, []],
      ["tampered", tamper(good), ["signature"]],
      // The signature refusal sits between the key's and the subject's, as csrPolicy lists them.
      [
        "tampered, asking too much",
        tamper(many),
        ["signature", "subject.CN", "extensionRequest.subjectAltName", "extensionRequest.basicConstraints"],
      ],
      // A key of the wrong type is refused before any signature is checked: no signature refusal.
      ["wrong key type, tampered", tamper(rsa), ["subjectPKInfo"]],
    ];
    for (const [name, der, fields] of cases) {
      const csr = decodeCsr(der);
      const sync = csrPolicy(web, csr, now, { lifetimeMs: 3_600_000 });
      const async = await csrPolicyAsync(web, csr, now, { lifetimeMs: 3_600_000 });
      assert.deepEqual(async, sync, name);
      assert.deepEqual(sync.ok ? [] : sync.refusals.map((r) => r.field), fields, name);
    }
  });
});

describe("sign with the CA key offline, and during a CA rotation", () => {
  it("fail/the key offline: exit 2 naming --ca-key, nothing written; --ca-key FILE signs, never copied", async () => {
    const dir = tempDir("mtlskit-csr-offline-");
    const file = writeManifest(dir, MANIFEST);
    const pki = path.join(dir, "pki");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    const keyFile = path.join(dir, "offline-ca-key.pem");
    const off = await runCli(["ca", "offline", "--to", keyFile, "--pki", pki]);
    assert.equal(off.code, 0, off.err);
    const host = path.join(dir, "host");
    assert.equal((await runCli(["csr", "--service", "web", "-f", file, "--out", host])).code, 0);
    const csr = path.join(host, "web.csr");
    const before = inspectPki(pki);
    const refused = await runCli(["sign", csr, "--service", "web", "-f", file, "--pki", pki]);
    assert.equal(refused.code, 2, refused.err);
    assert.match(refused.err, /the CA key is not in .* \(kept offline\).*--ca-key FILE/);
    assertUntouched(before, inspectPki(pki));
    const signed = await runCli(["sign", csr, "--service", "web", "-f", file, "--pki", pki, "--ca-key", keyFile]);
    assert.equal(signed.code, 0, signed.err);
    assert.equal(existsSync(path.join(pki, "ca/ca-key.pem")), false, "the offline key was copied back");
    const v = opensslVerify({
      caFile: path.join(pki, "ca/ca.pem"),
      certFile: path.join(pki, "services/web/cert.pem"),
      purpose: "sslclient",
    });
    assert.ok(v.ok, v.output);
  });

  it("ok/during a rotation sign follows the phase: both CAs in the bundle after prepare, the next CA issues after activate", async () => {
    const dir = tempDir("mtlskit-csr-rotate-");
    const file = writeManifest(dir, MANIFEST);
    const pki = path.join(dir, "pki");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    const host = path.join(dir, "host");
    assert.equal((await runCli(["csr", "--service", "web", "-f", file, "--out", host])).code, 0);
    const csr = path.join(host, "web.csr");
    const rotate = async (step: string) => {
      const r = await runCli(["ca", "rotate", step, "-f", file, "--pki", pki]);
      assert.equal(r.code, 0, `${step}: ${r.err}`);
    };
    const nextCa = () => new X509Certificate(readFileSync(path.join(pki, "ca/next/ca.pem")));
    const oldCa = new X509Certificate(readFileSync(path.join(pki, "ca/ca.pem")));
    await rotate("prepare");
    assert.equal((await runCli(["sign", csr, "--service", "web", "-f", file, "--pki", pki])).code, 0);
    const bundle = parsePem(readFileSync(path.join(pki, "services/web/ca.pem"), "utf8"));
    assert.equal(bundle.length, 2, "the bundle sign wrote after prepare holds old + next");
    assert.ok(new X509Certificate(readFileSync(path.join(pki, "services/web/cert.pem"))).verify(oldCa.publicKey));
    await rotate("activate");
    const next = nextCa();
    assert.equal((await runCli(["sign", csr, "--service", "web", "-f", file, "--pki", pki])).code, 0);
    assert.equal(
      new X509Certificate(readFileSync(path.join(pki, "services/web/cert.pem"))).verify(oldCa.publicKey),
      false,
    );
    assert.ok(new X509Certificate(readFileSync(path.join(pki, "services/web/cert.pem"))).verify(next.publicKey));
    const check = await runCli(["check", "-f", file, "--pki", pki]);
    assert.equal(check.code, 0, check.out + check.err);
  });
});
