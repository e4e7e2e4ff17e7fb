/**
 * mtlskit status: expiry of every certificate, most urgent first, with Nagios levels and exit
 * codes. PKIs are issued in the past through the library (apply's `now`), so real certificates
 * sit at known distances from their deadlines; plain files with a CA that expires before its leaf
 * are made by the openssl CLI, independently of mtlskit's encoder.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import * as path from "node:path";
import { before, describe, it } from "node:test";
import { NAGIOS_MAX_BYTES, pluginLine } from "../src/check/index.ts";
import { loadManifest } from "../src/manifest/index.ts";
import { apply } from "../src/plan/apply.ts";
import { expiryStatus, nagiosLine, type StatusInput } from "../src/status/index.ts";
import { runCli, tempDir, writeManifest } from "./helpers/cli.ts";

const DAY = 86_400_000;
const T0 = new Date("2026-01-01T00:00:00Z");

// web: 90d, renewBefore 30d (due from T0+60d); batch: 30d, renewBefore 10d (due from T0+20d).
const MANIFEST = `version: 1
cluster: st
ca: { key: ecdsa-p256, validity: 1y, subject: { CN: ST CA } }
defaults: { key: ecdsa-p256, validity: 90d, renewBefore: 30d }
services:
  web: { usage: server, addresses: [127.0.0.1] }
  batch: { usage: client, validity: 30d, renewBefore: 10d }
`;

let dir: string;
let file: string;
let pki: string;
const at = (days: number) => new Date(T0.getTime() + days * DAY).toISOString();
const status = (...extra: string[]) => runCli(["status", "-f", file, "--pki", pki, ...extra]);

describe("status: a deployment's certificates", { timeout: 60_000 }, () => {
  before(async () => {
    dir = tempDir("mtlskit-status-");
    file = writeManifest(dir, MANIFEST);
    pki = path.join(dir, "pki");
    await apply(loadManifest(file), pki, { now: T0 });
  });

  it("ok/fresh certificates: every row ok, exit 0, sorted by deadline, with renewal dates and the CA's expiry", async () => {
    const r = await status("--at", at(1), "--json");
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as {
      level: string;
      rows: {
        id: string;
        level: string;
        notAfter: string;
        renewAt: string;
        ca: { notAfter: string; subject: string };
        secondsLeft: number;
      }[];
    };
    assert.equal(j.level, "ok");
    assert.deepEqual(
      j.rows.map((x) => x.id),
      ["batch", "web"],
    ); // batch's 30 days end first
    const web = j.rows.find((x) => x.id === "web")!;
    const cert = new X509Certificate(readFileSync(path.join(pki, "services", "web", "cert.pem")));
    assert.equal(new Date(web.notAfter).getTime(), new Date(cert.validTo).getTime());
    assert.equal(new Date(web.renewAt).getTime(), new Date(cert.validTo).getTime() - 30 * DAY);
    const ca = new X509Certificate(readFileSync(path.join(pki, "ca", "ca.pem")));
    assert.equal(new Date(web.ca.notAfter).getTime(), new Date(ca.validTo).getTime());
    assert.match(web.ca.subject, /ST CA/);
    assert.equal(web.secondsLeft, Math.floor((new Date(cert.validTo).getTime() - new Date(at(1)).getTime()) / 1000));
  });

  it("ok/inside batch's renewal window (no --warning): warning, exit 1, and the row says renewal was due and to run apply", async () => {
    const r = await status("--at", at(22));
    assert.equal(r.code, 1);
    assert.match(r.out, /^warning\s+batch\s+2026-01-31\s+in 8 days\s+2026-01-21\s+2027-01-01/m);
    assert.match(r.out, /^ok\s+web\s/m);
    assert.match(
      r.out,
      /warning batch: expires in 8 days \(2026-01-31\); renewal was due 2026-01-21: run `mtlskit apply -f .*mtlskit\.yaml --pki .*pki`/,
    );
    assert.match(r.out, /WARNING: 0 critical, 1 warning, 1 ok\./);
  });

  it("ok/--nagios: levels and plugin exit codes follow --warning and --critical, with perfdata in seconds", async () => {
    const ok = await status("--at", at(1), "--nagios", "--warning", "20d", "--critical", "5d");
    assert.equal(ok.code, 0);
    assert.match(
      ok.out,
      /^MTLSKIT STATUS OK - soonest: batch expires in 29 days \(2026-01-31\); 0 critical, 0 warning, 2 ok \| 'batch'=2505600s;1728000:;432000: 'web'=7689600s;1728000:;432000:\n$/,
    );
    const warn = await status("--at", at(12), "--nagios", "--warning", "20d", "--critical", "5d");
    assert.equal(warn.code, 1);
    assert.match(warn.out, /^MTLSKIT STATUS WARNING - batch expires in 18 days/);
    const crit = await status("--at", at(27), "--nagios", "--warning", "20d", "--critical", "5d");
    assert.equal(crit.code, 2);
    assert.match(crit.out, /^MTLSKIT STATUS CRITICAL - batch expires in 3 days/);
    const expired = await status("--at", at(31), "--nagios");
    assert.equal(expired.code, 2);
    assert.match(expired.out, /^MTLSKIT STATUS CRITICAL - batch expired 24 hours ago \(2026-01-31\); 1 critical/);
    // Thresholds are ranges: `N:` alerts below N (plugin guidelines); warning at the renewal window (batch: 10d).
    assert.match(expired.out, /'batch'=-86400s;864000:;604800:/);
  });

  it("ok/--in D judges D from now, like check's --in", async () => {
    const r = await runCli(["status", "-f", file, "--pki", pki, "--in", "1d", "--json"]);
    const j = JSON.parse(r.out) as { now: string; level: string };
    assert.ok(Math.abs(new Date(j.now).getTime() - (Date.now() + DAY)) < 60_000);
    assert.equal(j.level, "critical"); // issued on 2026-01-01: long expired by now
  });

  it("fail/a missing certificate is critical, named with check's words", async () => {
    const broken = tempDir("mtlskit-status-missing-");
    const p = path.join(broken, "pki");
    await apply(loadManifest(file), p, { now: T0 });
    rmSync(path.join(p, "services", "web", "cert.pem"));
    const r = await runCli(["status", "-f", file, "--pki", p, "--at", at(1), "--nagios"]);
    assert.equal(r.code, 2);
    assert.match(r.out, /^MTLSKIT STATUS CRITICAL - web .*services\/web\/cert\.pem/);
  });

  it("fail/a failed last apply (renewal not happening) turns an all-ok status into WARNING, with the reason", async () => {
    const broken = tempDir("mtlskit-status-failed-apply-");
    const p = path.join(broken, "pki");
    await apply(loadManifest(file), p, { now: T0 });
    rmSync(path.join(p, "ca", "ca.pem"));
    await assert.rejects(apply(loadManifest(file), p, { now: T0 }));
    const r = await runCli(["status", "-f", file, "--pki", p, "--at", at(1), "--nagios"]);
    assert.equal(r.code, 1, r.out);
    assert.match(
      r.out,
      /^MTLSKIT STATUS WARNING - the last apply \(2026-01-01 00:00 UTC\) failed: .*ca\.pem is missing.*; 0 critical, 0 warning, 2 ok \| 'batch'=/,
    );
    const human = await runCli(["status", "-f", file, "--pki", p, "--at", at(1)]);
    // The summary line says why it is WARNING (it used to say "WARNING: 0 critical, 0 warning, 2 ok").
    assert.match(
      human.out,
      /^WARNING: 0 critical, 0 warning, 2 ok; the last apply \(2026-01-01 00:00 UTC\) failed: .*ca\.pem is missing.*\.$/m,
    );
  });

  const usage: [string, string[], RegExp][] = [
    [
      "--warning not above --critical",
      ["--warning", "5d", "--critical", "7d"],
      /--warning \(5d\) must be longer than --critical \(7d\)/,
    ],
    [
      "--warning below the default critical",
      ["--warning", "3d"],
      /--warning \(3d\) must be longer than --critical \(7d, the default\)/,
    ],
    ["a bad duration", ["--critical", "soon"], /--critical must be a duration such as 30d, 2w or 12h; got "soon"/],
    ["--at with --in", ["--at", "2027-01-01", "--in", "3d"], /--at is incompatible with --in/],
  ];
  for (const [name, argv, message] of usage) {
    it(`fail/${name} exits 2`, async () => {
      const r = await status(...argv);
      assert.equal(r.code, 2);
      assert.match(r.err, message);
    });
  }
  it("fail/--json with --nagios: a plugin still prints one UNKNOWN line, exit 3", async () => {
    const r = await status("--json", "--nagios");
    assert.equal(r.code, 3);
    assert.match(
      r.out,
      /^MTLSKIT STATUS UNKNOWN - mtlskit status: flag --json is incompatible with --nagios; use one\n$/,
    );
  });
  it("fail/--nagios on a manifest that does not exist: UNKNOWN, exit 3, one line", async () => {
    const r = await runCli(["status", "-f", path.join(dir, "nope.yaml"), "--nagios"]);
    assert.equal(r.code, 3);
    assert.match(r.out, /^MTLSKIT STATUS UNKNOWN - .*nope\.yaml.*\n$/);
  });
});

describe("status: plain certificate files", { timeout: 60_000 }, () => {
  // openssl makes a CA valid 10 days and a leaf it signs valid 100 days: the leaf dies with its CA.
  let chain: string;
  let lone: string;
  before(() => {
    const d = tempDir("mtlskit-status-files-");
    const o = (...args: string[]) => execFileSync("openssl", args, { cwd: d, stdio: "pipe" });
    o(
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "10",
      "-subj",
      "/CN=Short CA",
    );
    o(
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      "leaf.key",
      "-out",
      "leaf.csr",
      "-subj",
      "/CN=leaf",
    );
    o(
      "x509",
      "-req",
      "-in",
      "leaf.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "leaf.pem",
      "-days",
      "100",
    );
    chain = path.join(d, "chain.pem");
    writeFileSync(chain, Buffer.concat([readFileSync(path.join(d, "leaf.pem")), readFileSync(path.join(d, "ca.pem"))]));
    lone = path.join(d, "leaf.pem");
  });
  it("ok/a chain file: the CA's earlier notAfter is the deadline, and the reason names the CA", async () => {
    const r = await runCli(["status", chain, "--json"]);
    const j = JSON.parse(r.out) as {
      rows: {
        id: string;
        level: string;
        reason: string;
        deadline: string;
        notAfter: string;
        ca: { notAfter: string };
      }[];
    };
    const row = j.rows[0]!;
    assert.equal(row.deadline, row.ca.notAfter);
    assert.ok(new Date(row.notAfter) > new Date(row.deadline));
    assert.equal(row.level, "warning"); // within 30 days, the default for plain files
    assert.match(row.reason, /^its CA \(CN=Short CA\) expires in (9|10) days/);
    assert.equal(r.code, 1);
  });
  it("ok/a lone leaf: its own notAfter is the deadline; 100 days is ok under --warning 8w and warns under --warning 15w", async () => {
    const r = await runCli(["status", lone, "--nagios", "--warning", "8w"]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^MTLSKIT STATUS OK - soonest: .*leaf\.pem expires in (99|100) days/);
    const w = await runCli(["status", lone, "--nagios", "--warning", "15w"]);
    assert.equal(w.code, 1, w.out);
  });
  it("fail/a file that is not a certificate (nor a key) is critical with the reason; -f with files is a usage error", async () => {
    const junk = path.join(path.dirname(chain), "leaf.csr");
    const r = await runCli(["status", junk, "--nagios"]);
    assert.equal(r.code, 2);
    assert.match(r.out, /CRITICAL - .*leaf\.csr holds a CERTIFICATE REQUEST block but no certificate/);
    const u = await runCli(["status", chain, "-f", "x.yaml"]);
    assert.equal(u.code, 2);
    assert.match(u.err, /two different modes/);
  });
});

describe("status: a glob over a deployment directory (issue 11)", { timeout: 60_000 }, () => {
  // The README's and --help's own example, `mtlskit status deploy/agent-host/*.pem --nagios`, was
  // CRITICAL because the glob takes in the key files; `openssl ecparam -genkey` writes EC
  // PARAMETERS before its key. Keys and parameters are skipped and said so; certificates judged.
  let host: string;
  let pems: string[];
  before(async () => {
    const d = tempDir("mtlskit-status-glob-");
    const f = writeManifest(d, MANIFEST);
    const p = path.join(d, "pki");
    await apply(loadManifest(f), p, { now: T0 });
    const e = await runCli([
      "export",
      "-f",
      f,
      "--pki",
      p,
      "--format",
      "flat",
      "--out",
      path.join(d, "deploy"),
      "--host",
      "agent-host=web,batch",
    ]);
    assert.equal(e.code, 0, e.err);
    host = path.join(d, "deploy", "agent-host");
    execFileSync("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-out", path.join(host, "extra-key.pem")], {
      stdio: "pipe",
    });
    pems = readdirSync(host)
      .filter((n) => n.endsWith(".pem"))
      .sort()
      .map((n) => path.join(host, n));
    assert.deepEqual(
      pems.map((x) => path.basename(x)),
      ["batch-key.pem", "batch.pem", "extra-key.pem", "root.pem", "web-key.pem", "web.pem"],
    );
  });
  it("ok/--nagios is OK: the certificates are judged, 3 key or parameter files skipped", async () => {
    const r = await runCli(["status", ...pems, "--nagios", "--at", at(1), "--warning", "20d", "--critical", "5d"]);
    assert.equal(r.code, 0, r.out);
    assert.match(
      r.out,
      /^MTLSKIT STATUS OK - soonest: \S+batch\.pem expires in 29 days \(2026-01-31\); 0 critical, 0 warning, 3 ok; 3 key or parameter files skipped \| /,
    );
    assert.doesNotMatch(r.out, /key\.pem'=/);
  });
  it("ok/the table notes each skipped file and why; --json lists them", async () => {
    const r = await runCli(["status", ...pems, "--at", at(1), "--warning", "20d"]);
    assert.equal(r.code, 0, r.out);
    assert.match(
      r.out,
      /^  skipped \S+extra-key\.pem: holds EC PARAMETERS and EC PRIVATE KEY blocks but no certificate$/m,
    );
    assert.match(r.out, /^  skipped \S+web-key\.pem: holds a PRIVATE KEY block but no certificate$/m);
    const j = JSON.parse((await runCli(["status", ...pems, "--at", at(1), "--json"])).out) as {
      rows: { id: string }[];
      skipped: { file: string }[];
    };
    assert.deepEqual(j.rows.map((x) => path.basename(x.id)).sort(), ["batch.pem", "root.pem", "web.pem"]);
    assert.deepEqual(
      j.skipped.map((x) => path.basename(x.file)),
      ["batch-key.pem", "extra-key.pem", "web-key.pem"],
    );
  });
  it("fail/only key files: no certificate to judge is invalid input (exit 2; UNKNOWN with --nagios)", async () => {
    const keys = pems.filter((x) => x.endsWith("key.pem"));
    const r = await runCli(["status", ...keys]);
    assert.equal(r.code, 2);
    assert.match(r.err, /none of the 3 files holds a certificate/);
    const n = await runCli(["status", ...keys, "--nagios"]);
    assert.equal(n.code, 3);
    assert.match(n.out, /^MTLSKIT STATUS UNKNOWN - mtlskit status: none of the 3 files holds a certificate/);
  });
});

describe("status: expiryStatus (pure)", () => {
  const now = new Date("2027-06-01T00:00:00Z");
  const input = (id: string, days: number | undefined, extra: Partial<StatusInput> = {}): StatusInput => ({
    id,
    service: id,
    file: `${id}.pem`,
    subject: `CN=${id}`,
    notAfter: days === undefined ? undefined : new Date(now.getTime() + days * DAY),
    renewAt: undefined,
    ca: undefined,
    ...extra,
  });
  it("ok/critical before warning before ok; unreadable first; ties by id", () => {
    const s = expiryStatus(
      [
        input("b", 50),
        input("a", 50),
        input("late", 3),
        input("gone", undefined, { problem: "gone.pem does not exist" }),
        input("soon", 20),
      ],
      now,
    );
    assert.deepEqual(
      s.rows.map((r) => `${r.level} ${r.id}`),
      ["critical gone", "critical late", "warning soon", "ok a", "ok b"],
    );
    assert.equal(s.level, "critical");
    assert.deepEqual(s.counts, { critical: 2, warning: 1, ok: 2 });
  });
  it("ok/the renewal window decides warning when no --warning is given; --warning overrides it", () => {
    const due = input("due", 60, { renewAt: new Date(now.getTime() - DAY) });
    assert.equal(expiryStatus([due], now).rows[0]!.level, "warning");
    assert.equal(expiryStatus([due], now, { warningMs: 30 * DAY }).rows[0]!.level, "ok");
  });
  it("ok/thousands of certificates: the plugin line stays under Nagios' 8 KB, summary first, perfdata for the most urgent (issue 11)", () => {
    const many = Array.from({ length: 5000 }, (_, i) => input(`service-${String(i).padStart(4, "0")}`, 10 + (i % 300)));
    const line = nagiosLine(expiryStatus([...many, input("late", 3)], now));
    assert.ok(Buffer.byteLength(`${line}\n`) < NAGIOS_MAX_BYTES, `${Buffer.byteLength(line)} bytes`);
    assert.equal(line.split("\n").length, 1);
    const [text, perf] = line.split(" | ");
    assert.match(
      text!,
      /^MTLSKIT STATUS CRITICAL - late expires in 3 days \(2027-06-04\); 1 critical, 357 warning, 4643 ok; perfdata for the \d+ most urgent of 5001$/,
    );
    const entries = perf!.split(" ");
    assert.equal(entries[0], "'late'=259200s;2592000:;604800:");
    assert.equal(text!.match(/the (\d+) most urgent/)![1], String(entries.length));
    // Most urgent first: the seconds left never decrease along the perfdata.
    const left = entries.map((e) => Number(/=(-?\d+)s/.exec(e)![1]));
    assert.ok(left.every((v, i) => i === 0 || left[i - 1]! <= v));
  });
  it("ok/pluginLine: a long text is cut to 1 KB and stays one line; perfdata fits or is left out whole", () => {
    const line = pluginLine(() => `X OK - ${"a|b\n".repeat(5000)}`, ["one=1", "two=2"]);
    assert.ok(Buffer.byteLength(line) <= 1024 + " | one=1 two=2".length);
    assert.doesNotMatch(line.split(" | ")[0]!, /[|\n]/);
    assert.match(line, /\.\.\. \| one=1 two=2$/);
    const tight = pluginLine((omitted) => `X OK - ${omitted} left out`, ["a=1", "b=2", "c=3"], 30);
    assert.equal(tight, "X OK - 1 left out | a=1 b=2");
  });
  it("ok/nagios perfdata quotes labels and doubles single quotes", () => {
    assert.match(nagiosLine(expiryStatus([input("it's", 100)], now)), /\| 'it''s'=8640000s;2592000:;604800:$/);
  });
});
