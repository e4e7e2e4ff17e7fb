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
import { isIP } from "node:net";
import { describe, it } from "node:test";
import { chainCases, verifyArgs, writeCase, WHY, type CaseFiles, type ChainCase } from "./helpers/chains.ts";
import { runCli, tempDir } from "./helpers/cli.ts";
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
      assert.deepEqual(v.reasons.map((x) => x.code), c.codes, r.out);
      for (const reason of v.reasons) assert.ok(reason.message && reason.fix, `reason without words: ${JSON.stringify(reason)}`);
      const o = openssl(c, f);
      const expected = c.openssl ? !v.ok : v.ok;
      assert.equal(o.ok, expected, `openssl ${o.ok ? "accepted" : "refused"} it, verify ${v.ok ? "accepted" : "refused"} it${c.openssl ? " (named as a disagreement)" : ""}:\n${o.output}\n${r.out}`);
    });
  });

  it("ok/every named disagreement is used by a case", () => {
    const used = new Set(cases.flatMap((c) => [c.openssl, c.go]));
    assert.deepEqual(Object.entries(WHY).filter(([, why]) => !used.has(why)).map(([k]) => k), []);
  });
});
