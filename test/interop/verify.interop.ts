/**
 * `mtlskit verify` against Go's crypto/x509 on the chain table of test/helpers/chains.ts (the
 * unit suite judges the same table against `openssl verify -x509_strict`): every chain goes
 * through one goverify process (Verify with the usage, or ExtKeyUsageAny without --usage; the
 * CERT file's further certificates and CHAIN as intermediates; VerifyHostname for --host;
 * CurrentTime for --at), and Go's verdict must equal verify's, except where the case names a
 * deliberate disagreement with Go, and there it must be the opposite.
 */
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { chainCases, verifyArgs, writeCase, type CaseFiles, type ChainCase } from "../helpers/chains.ts";
import { runCli } from "../helpers/cli.ts";
import { buildGoverify, exec, subdir } from "./harness.ts";

/** rfc3339 prints a time the way Go's time.RFC3339 parses it. */
const rfc3339 = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

describe("mtlskit verify agrees with Go's crypto/x509", () => {
  const cases = chainCases();
  const files: CaseFiles[] = [];
  let go: { ok: boolean; error: string }[] = [];

  before(() => {
    const dir = subdir("verify");
    cases.forEach((c, i) => files.push(writeCase(dir, i, c)));
    const input = cases.map((c: ChainCase, i) => ({
      ca: files[i]!.ca,
      cert: files[i]!.cert,
      ...(files[i]!.untrusted ? { untrusted: files[i]!.untrusted } : {}),
      usage: c.usage ?? "any",
      hosts: c.host !== undefined ? [c.host] : [],
      ...(c.at ? { at: rfc3339(c.at) } : {}),
    }));
    const r = exec(buildGoverify(), [], { input: JSON.stringify(input) });
    assert.equal(r.code, 0, `goverify failed:\n${r.out}`);
    go = JSON.parse(r.stdout) as typeof go;
    assert.equal(go.length, cases.length, `goverify answered ${go.length} of ${cases.length} cases`);
  });

  cases.forEach((c, i) => {
    it(`${c.name}${c.go ? ` (deliberate disagreement: ${c.go})` : ""}`, async () => {
      const r = await runCli(verifyArgs(c, files[i]!));
      assert.equal(r.code, c.codes.length === 0 ? 0 : 1, r.out + r.err);
      const v = JSON.parse(r.out) as { ok: boolean; reasons: { code: string }[] };
      assert.deepEqual(
        v.reasons.map((x) => x.code),
        c.codes,
        r.out,
      );
      const g = go[i]!;
      assert.equal(
        g.ok,
        c.go ? !v.ok : v.ok,
        `Go ${g.ok ? "accepted" : `refused (${g.error})`}, verify ${v.ok ? "accepted" : "refused"}${c.go ? " (named as a disagreement)" : ""}:\n${r.out}`,
      );
    });
  });
});
