/**
 * Prometheus: promtool (Debian's prometheus package) judges what `mtlskit metrics` serves and the
 * alert rules the repository ships. The metrics command runs as a process on a free loopback
 * port, the way an operator runs it; a renewal made while it runs shows at the next scrape.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import {
  exec,
  freePort,
  makePki,
  mtlskit,
  need,
  REPO,
  startServer,
  stopAll,
  subdir,
  waitFor,
  type Pki,
  type Server,
} from "./harness.ts";

const RULES = path.join(REPO, "examples", "prometheus");

let pki: Pki;
let server: Server;
let url: string;

const scrape = async () => {
  const r = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  assert.equal(r.status, 200, await r.clone().text());
  return r.text();
};
const value = (text: string, name: string, labelPart: string) =>
  Number(
    text
      .split("\n")
      .find((l) => l.startsWith(`${name}{`) && l.includes(labelPart))
      ?.split(" ")
      .pop(),
  );

describe("prometheus: promtool judges mtlskit's metrics and alert rules", { timeout: 120_000 }, () => {
  before(async () => {
    pki = await makePki("metrics", path.join(REPO, "examples", "serviceradar.yaml"));
    const port = await freePort();
    server = startServer(
      "mtlskit-metrics",
      process.execPath,
      mtlskit(["metrics", "--listen", `127.0.0.1:${port}`, "-f", pki.file, "--pki", pki.pki]),
      { cwd: REPO },
    );
    url = `http://127.0.0.1:${port}/metrics`;
    await waitFor(
      "mtlskit metrics' serving line",
      () => /serving http:\/\/127\.0\.0\.1:\d+\/metrics/.test(server.tail()),
      30_000,
      server,
    );
  });
  after(stopAll);

  it("ok/promtool check metrics accepts what mtlskit metrics serves (exposition format and naming lint)", async () => {
    const text = await scrape();
    const r = exec(need("promtool"), ["check", "metrics"], { input: text });
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out.trim(), "", r.out); // no lint complaint either
    assert.match(text, /^mtlskit_last_apply_success 1$/m);
  });

  it("ok/a renewal made while it serves shows within seconds (a result is reused for at most 5 s), without a restart", async () => {
    const before = value(await scrape(), "mtlskit_certificate_not_after_timestamp_seconds", 'service="core"');
    await new Promise((r) => setTimeout(r, 1100)); // notAfter has second precision
    const r = exec(process.execPath, mtlskit(["apply", "-f", pki.file, "--pki", pki.pki, "--reissue", "core"]), {
      cwd: REPO,
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, r.out);
    // Scrapes share a collection younger than 5 s (issue 11), so the renewal shows once it ages out.
    let after = before;
    for (let i = 0; i < 60 && after <= before; i++) {
      await new Promise((r) => setTimeout(r, 500));
      after = value(await scrape(), "mtlskit_certificate_not_after_timestamp_seconds", 'service="core"');
    }
    assert.ok(after > before, `core's notAfter went from ${before} to ${after}`);
  });

  it("ok/promtool check rules accepts examples/prometheus/mtlskit-alerts.yml", () => {
    const r = exec(need("promtool"), ["check", "rules", path.join(RULES, "mtlskit-alerts.yml")]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS: 10 rules found/);
  });

  it("ok/promtool test rules: every alert fires when it should, with its labels and words, and not before", () => {
    const r = exec(need("promtool"), ["test", "rules", path.join(RULES, "mtlskit-alerts.test.yml")], {
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS/);
  });

  it("refused/a rule file whose threshold was changed fails its promtool unit test (the tests can fail)", () => {
    const dir = subdir("rules-mutant");
    const rules = readFileSync(path.join(RULES, "mtlskit-alerts.yml"), "utf8").replace("/ 86400 < 30", "/ 86400 < 20");
    writeFileSync(path.join(dir, "mtlskit-alerts.yml"), rules);
    writeFileSync(
      path.join(dir, "mtlskit-alerts.test.yml"),
      readFileSync(path.join(RULES, "mtlskit-alerts.test.yml"), "utf8"),
    );
    const r = exec(need("promtool"), ["test", "rules", path.join(dir, "mtlskit-alerts.test.yml")], {
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /alertname: MtlskitCertificateExpiringSoon, time: 3d/);
  });
});
