/**
 * `mtlskit verify` against `openssl verify -x509_strict` on the chain table of
 * test/helpers/chains.ts (Go's crypto/x509 judges the same table in test/interop/verify.interop.ts):
 * for every chain, verify gives the expected check codes, and openssl's verdict equals verify's,
 * except where the case names a deliberate disagreement, and there it is the opposite. openssl is
 * run as verify's documented equivalent: -CAfile BUNDLE, -untrusted with CERT's certificates and
 * CHAIN (openssl verify reads only the first certificate of its file), -purpose sslserver or
 * sslclient for --usage, -verify_hostname or -verify_ip for --host, -attime for --at.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import * as path from "node:path";
import { describe, it } from "node:test";
import { chainCases, verifyArgs, writeCase, WHY, type CaseFiles, type ChainCase } from "./helpers/chains.ts";
import { runCli, tempDir } from "./helpers/cli.ts";
import { loadSystemCerts, Material } from "../src/verify/index.ts";
import { forge } from "./helpers/forge.ts";
import { opensslVerify } from "./helpers/openssl.ts";

/** VerifyJson is the part of `mtlskit verify --json` the table compares. */
interface VerifyJson {
  ok: boolean;
  reasons: { code: string; message: string; fix: string }[];
}

/** openssl runs the case's openssl equivalent; true when openssl prints OK. */
function openssl(c: ChainCase, f: CaseFiles): { ok: boolean; output: string } {
  return opensslVerify({
    caFile: f.ca,
    certFile: f.cert,
    untrusted: f.opensslUntrusted,
    ...(c.usage ? { purpose: c.usage === "server" ? "sslserver" : "sslclient" } : {}),
    ...(c.host !== undefined ? (isIP(c.host) ? { verifyIp: c.host } : { verifyHostname: c.host }) : {}),
    ...(c.at ? { attime: c.at } : {}),
  });
}

describe("mtlskit verify agrees with openssl verify -x509_strict", () => {
  const dir = tempDir("mtlskit-verify-");
  const cases = chainCases();

  it("ok/the table holds at least 40 chains, named ok/ when verify accepts them and fail/ when it refuses", () => {
    assert.ok(cases.length >= 40, `${cases.length} chains`);
    for (const c of cases) assert.equal(c.name.startsWith("ok/"), c.codes.length === 0, c.name);
    assert.equal(new Set(cases.map((c) => c.name)).size, cases.length, "case names are unique");
  });

  cases.forEach((c, i) => {
    const disagreement = c.openssl ? ` (deliberate disagreement: ${c.openssl})` : "";
    it(`${c.name}${disagreement}`, async () => {
      const f = writeCase(dir, i, c);
      const r = await runCli(verifyArgs(c, f));
      assert.equal(r.err, "", r.err);
      const v = JSON.parse(r.out) as VerifyJson;
      assert.equal(r.code, c.codes.length === 0 ? 0 : 1, r.out);
      assert.deepEqual(
        v.reasons.map((x) => x.code),
        c.codes,
        r.out,
      );
      for (const reason of v.reasons)
        assert.ok(reason.message && reason.fix, `reason without words: ${JSON.stringify(reason)}`);
      const o = openssl(c, f);
      const expected = c.openssl ? !v.ok : v.ok;
      assert.equal(
        o.ok,
        expected,
        `openssl ${o.ok ? "accepted" : "refused"} it, verify ${v.ok ? "accepted" : "refused"} it${c.openssl ? " (named as a disagreement)" : ""}:\n${o.output}\n${r.out}`,
      );
    });
  });

  it("ok/the SHA-1 disagreement holds only at openssl verify's default: with -auth_level 1, as TLS contexts verify, openssl refuses it", () => {
    const i = cases.findIndex((c) => c.openssl === WHY.sha1);
    const f = writeCase(dir, i, cases[i]!);
    const o = opensslVerify({ caFile: f.ca, certFile: f.cert, untrusted: f.opensslUntrusted, authLevel: 1 });
    assert.ok(!o.ok && /CA signature digest algorithm too weak/.test(o.output), o.output);
  });

  it("ok/every named disagreement is used by a case", () => {
    const used = new Set(cases.flatMap((c) => [c.openssl, c.go]));
    assert.deepEqual(
      Object.entries(WHY)
        .filter(([, why]) => !used.has(why))
        .map(([k]) => k),
      [],
    );
  });
});

describe("mtlskit verify: the command", () => {
  const dir = tempDir("mtlskit-verify-cli-");
  const root = forge({ ca: true, cn: "CLI Root" });
  const inter = forge({ ca: true, cn: "CLI Inter", issuer: root });
  const leaf = forge({ cn: "api", sans: ["DNS:api.test", "IP:10.0.0.5"], issuer: inter, eku: ["clientAuth"] });
  const file = (name: string, text: string | Buffer) => {
    const p = path.join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const ca = file("root.pem", root.pem);
  const chain = file("chain.pem", leaf.pem + inter.pem);
  const fifo = path.join(dir, "pipe.pem");
  execFileSync("mkfifo", [fifo]);

  it("ok/valid: exit 0 and one OK line naming the path", async () => {
    const r = await runCli(["verify", chain, "--ca", ca, "--usage", "client"]);
    assert.equal(r.code, 0, r.out + r.err);
    assert.equal(r.out, `OK: ${chain} is valid as a client: api <- CLI Inter <- CLI Root (in ${ca}).\n`);
  });

  it("fail/not valid: exit 1, one line per reason with its code, then its fix, then the count", async () => {
    const r = await runCli(["verify", chain, "--ca", ca, "--usage", "server", "--host", "web.test"]);
    assert.equal(r.code, 1, r.out + r.err);
    const lines = r.out.trimEnd().split("\n");
    assert.equal(lines[0], `${chain} as a server for web.test against ${ca}:`);
    assert.match(
      lines[1]!,
      /^  error eku-server: CN=api may not be used as a server: its extendedKeyUsage is clientAuth, without serverAuth/,
    );
    assert.equal(lines[2], "        fix: re-issue it with extendedKeyUsage serverAuth");
    assert.match(
      lines[3]!,
      /^  error san-missing: CN=api is not valid for web\.test: its SANs are DNS:api\.test, IP:10\.0\.0\.5/,
    );
    assert.equal(lines[4], "        fix: re-issue it with the SAN DNS:web.test");
    assert.equal(lines.at(-1), "FAIL: 2 reasons.");
  });

  it("ok/--json: a stable shape", async () => {
    // Sixty days on: past the forged certificates' 30 days.
    const at = new Date(Math.floor(Date.now() / 1000) * 1000 + 60 * 86_400_000);
    const r = await runCli(["verify", chain, "--ca", ca, "--usage", "server", "--at", at.toISOString(), "--json"]);
    assert.equal(r.code, 1, r.out + r.err);
    const v = JSON.parse(r.out) as Record<string, unknown> & {
      chain: Record<string, unknown>[];
      reasons: Record<string, unknown>[];
    };
    assert.deepEqual(Object.keys(v), ["ok", "cert", "ca", "untrusted", "at", "usage", "host", "chain", "reasons"]);
    assert.deepEqual(
      [v.ok, v.cert, v.ca, v.untrusted, v.at, v.usage, v.host],
      [false, chain, ca, null, at.toISOString(), "server", null],
    );
    assert.deepEqual(
      v.chain.map((c) => c.subject),
      ["CN=api", "CN=CLI Inter", "CN=CLI Root"],
    );
    assert.deepEqual(Object.keys(v.chain[0]!), ["subject", "issuer", "notBefore", "notAfter", "sha256"]);
    assert.deepEqual(
      v.reasons.map((x) => x.code),
      ["expired", "expired", "expired", "eku-server"],
    );
    assert.deepEqual(Object.keys(v.reasons[0]!), ["code", "subject", "message", "fix"]);
  });

  it("ok/a DER certificate is read as one certificate", async () => {
    const der = file("root.der", root.der);
    const r = await runCli(["verify", der, "--ca", ca]);
    assert.equal(r.code, 0, r.out + r.err);
  });

  it("ok/without --ca, the system bundle is the trust anchors", async () => {
    const r = await runCli(["verify", chain]);
    const bundle = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"].find((b) =>
      existsSync(b),
    );
    if (bundle === undefined) {
      assert.equal(r.code, 2, r.out + r.err);
      assert.match(r.err, /no --ca given and no system bundle here/);
    } else {
      assert.equal(r.code, 1, r.out + r.err);
      assert.match(
        r.out,
        new RegExp(`error untrusted: CN=CLI Inter was issued by CN=CLI Root, which is neither in ${bundle}`),
      );
    }
  });

  it("ok/the system bundle: a certificate the decoder cannot read is skipped and counted, the others are anchors", () => {
    const odd = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";
    const { certs, skipped } = loadSystemCerts(new Material(), file("system.pem", odd + root.pem));
    assert.deepEqual([certs.map((c) => c.info.subject), skipped], [["CN=CLI Root"], 1]);
  });

  it("ok/--help has the synopsis, the openssl equivalent, EXAMPLES and EXIT CODES", async () => {
    const r = await runCli(["verify", "--help"]);
    assert.equal(r.code, 0);
    for (const w of [
      "mtlskit verify CERT [--ca BUNDLE] [--untrusted CHAIN] [--host NAME|IP] [--usage server|client]",
      "openssl verify -x509_strict -CAfile root.pem -untrusted cert.pem",
      "EXAMPLES",
      "EXIT CODES",
    ])
      assert.ok(r.out.includes(w), w);
  });

  it("ok/--host [::1], bracketed as in a URL, is the IPv6 address ::1, not a DNS name", async () => {
    const v6 = file("v6.pem", forge({ cn: "v6", sans: ["IP:::1"], issuer: root }).pem);
    for (const host of ["[::1]", "::1"]) {
      const r = await runCli(["verify", v6, "--ca", ca, "--usage", "server", "--host", host]);
      assert.equal(r.code, 0, r.out + r.err);
      assert.equal(r.out, `OK: ${v6} is valid as a server for ::1: v6 <- CLI Root (in ${ca}).\n`);
    }
  });

  /** refusals: 2 for usage errors (bad flags, a file without a certificate), 3 for a file that cannot be read. */
  const refusals: [2 | 3, string, string[], RegExp][] = [
    [2, "no CERT", [], /name exactly one CERT file/],
    [2, "two CERT files", [chain, chain, "--ca", ca], /name exactly one CERT file \(got 2/],
    [2, "--usage sever", [chain, "--ca", ca, "--usage", "sever"], /--usage must be server or client; got "sever"/],
    [2, "--at tomorrow", [chain, "--ca", ca, "--at", "tomorrow"], /--at must be an ISO 8601 time/],
    [2, "--host ''", [chain, "--ca", ca, "--host", ""], /--host must name a DNS name or an IP address/],
    [
      2,
      "--host [api.test]",
      [chain, "--ca", ca, "--host", "[api.test]"],
      /--host \[api\.test\]: brackets hold only an IPv6 address \(--host \[::1\] or --host ::1\); give a DNS name or an IPv4 address without them/,
    ],
    [2, "an unknown flag", [chain, "--cafile", ca], /mtlskit verify: Unknown option '--cafile'/],
    [
      2,
      "a key file as CERT",
      [file("key.pem", leaf.key.pem), "--ca", ca],
      /CERT .*key\.pem holds a PRIVATE KEY block but no certificate/,
    ],
    [2, "an empty --ca", [chain, "--ca", file("empty.pem", "")], /--ca .*empty\.pem is empty/],
    [
      2,
      "a text file as --untrusted",
      [chain, "--ca", ca, "--untrusted", file("notes.txt", "hello\n")],
      /--untrusted .*notes\.txt holds no PEM block/,
    ],
    [3, "a missing CERT", [path.join(dir, "missing.pem"), "--ca", ca], /cannot read .*missing\.pem: it does not exist/],
    [3, "a FIFO as CERT", [fifo, "--ca", ca], /cannot read .*pipe\.pem: it is a FIFO/],
    [3, "/dev/zero as --ca", [chain, "--ca", "/dev/zero"], /cannot read \/dev\/zero: it is a character device/],
    [3, "a directory as --untrusted", [chain, "--ca", ca, "--untrusted", dir], /cannot read .*: it is a directory/],
  ];
  for (const [code, name, args, message] of refusals) {
    it(`fail/${name}: exit ${code}, named`, async () => {
      const r = await runCli(["verify", ...args]);
      assert.equal(r.code, code, r.out + r.err);
      assert.match(r.err, message);
      assert.doesNotMatch(r.err, /bug/);
    });
  }
});
