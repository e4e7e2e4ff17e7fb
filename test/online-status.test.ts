/**
 * status, check, metrics and plan see the certificates the online CA issued (issue 14, section 2):
 * rows written into the real SQLite ledger (DIR/ca/ledger.db) for real certificates, issued with
 * pki/issue.ts by the CA an apply made (and one by a foreign CA), then the commands run in-process.
 * A csr service is judged by its newest unrevoked certificate there: a valid one is fine, an
 * expired one and one whose every certificate is revoked are reported with the agent's fix, and a
 * wrong SAN or a foreign CA is found by check's own lints. No ledger: nothing online, and no
 * read-only command creates the file.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, readdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { leafSpec } from "../src/ca/policy.ts";
import { openLedger, type Ledger } from "../src/ledger/index.ts";
import { loadManifest, type Service } from "../src/manifest/index.ts";
import { serialHex } from "../src/pki/crl.ts";
import { encodeTbs, newSerial, signTbs, type Issuer } from "../src/pki/issue.ts";
import { generateKey } from "../src/pki/keys.ts";
import { apply } from "../src/plan/apply.ts";
import { LAYOUT, type CaFiles } from "../src/state/layout.ts";
import { readCa } from "../src/state/read.ts";
import { expiryStatus, nagiosLine, type StatusInput, type Thresholds } from "../src/status/index.ts";
import { runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { opensslVerify } from "./helpers/openssl.ts";

const MIN = 60_000;
const HOUR = 60 * MIN;

// web: valid online; api: its newest unrevoked certificate expired; old: every certificate revoked;
// db: the newest is signed by another CA and lacks its address; app: issued by apply as usual.
const MANIFEST = `version: 1
cluster: on
identity:
  uri: spiffe://{cluster}/{role}/{name}
serve:
  maxTtl: 6h
services:
  web: { usage: server, csr: true, ttl: 1h, addresses: [127.0.0.1] }
  api: { usage: dual, csr: true, ttl: 2h }
  old: { usage: server, csr: true }
  db: { usage: server, csr: true, addresses: [10.0.0.9] }
  app: { usage: client }
connections:
  - { from: app, to: web, address: 127.0.0.1 }
`;

let dir: string;
let file: string;
let pki: string;
let ledgerFile: string;
const now = new Date();
/** serials: per name, the serial of each certificate recorded (hex). */
const serials: Record<string, string> = {};
const notAfters: Record<string, Date> = {};

/** issueOnline signs a certificate for `service` as the online CA would (leafSpec with the ttl as lifetime) and records its ledger row. */
async function issueOnline(
  ledger: Ledger,
  issuer: Issuer,
  service: Service,
  name: string,
  o: { issuedAt: Date; ttlMs: number; revoked?: boolean; dns?: string[]; ips?: Uint8Array[] },
): Promise<void> {
  const spec = {
    ...leafSpec(service, service.slots[0]!, o.issuedAt),
    notAfter: new Date(o.issuedAt.getTime() + o.ttlMs),
    ...(o.dns ? { dns: o.dns } : {}),
    ...(o.ips ? { ips: o.ips } : {}),
  };
  const key = generateKey(service.keyType);
  const serial = newSerial();
  const der = signTbs(encodeTbs(spec, issuer, key.spki, serial), issuer);
  const hex = serialHex(serial);
  const outcome = await ledger.record({
    serial: hex,
    service: service.name,
    sans: [],
    notBefore: spec.notBefore,
    notAfter: spec.notAfter,
    sha256: "00".repeat(32),
    der,
    how: "renew",
    tokenId: undefined,
    renewedFrom: undefined,
    requester: "127.0.0.1:1",
    issuedAt: o.issuedAt,
    revokedAt: undefined,
    revokedReason: undefined,
  });
  assert.deepEqual(outcome, { ok: true });
  if (o.revoked) assert.equal(await ledger.revoke(hex, "keyCompromise", o.issuedAt), true);
  serials[name] = hex;
  notAfters[name] = spec.notAfter;
}

const cli = (cmd: string, ...extra: string[]) => runCli([cmd, "-f", file, "--pki", pki, ...extra]);

describe("online certificates in status, check, metrics and plan", { timeout: 120_000 }, () => {
  before(async () => {
    dir = tempDir("mtlskit-online-");
    file = writeManifest(dir, MANIFEST);
    pki = path.join(dir, "pki");
    const loaded = loadManifest(file);
    await apply(loaded, pki, { now: new Date(now.getTime() - 3 * HOUR) });
    ledgerFile = path.join(pki, "ca", "ledger.db");
    assert.equal(existsSync(ledgerFile), false, "apply makes no ledger");
  });

  it("ok/without a ledger: nothing online, no error, and no read-only command creates the file", async () => {
    for (const cmd of ["status", "check", "metrics", "plan"]) {
      const r = await cli(cmd);
      assert.ok(r.code === 0 || r.code === 1, `${cmd} exit ${r.code}: ${r.err}`);
      assert.doesNotMatch(r.out, /issued online|online certificate|ledger/i, cmd);
    }
    const plan = await cli("plan");
    assert.match(
      plan.out,
      /web\s+csr\s+awaiting a CSR; .*or have its agent enroll with the online CA: `mtlskit token create web/,
    );
    assert.deepEqual(
      readdirSync(path.join(pki, "ca")).filter((n) => n.startsWith("ledger")),
      [],
      "no ledger file (nor -wal, -shm) was created",
    );
  });

  describe("with a ledger", () => {
    let ledger: Ledger;
    before(async () => {
      const loaded = loadManifest(file);
      const svc = (n: string) => loaded.manifest.services.find((s) => s.name === n)!;
      const issuer = issuerIn(pki);
      const other = issuerIn((await foreignCa()).pki);
      ledger = await openLedger(pki);
      const ago = (ms: number) => new Date(now.getTime() - ms);
      // web: an older one, the one in use (10 minutes old), and a newer one revoked at once.
      await issueOnline(ledger, issuer, svc("web"), "web-older", { issuedAt: ago(50 * MIN), ttlMs: HOUR });
      await issueOnline(ledger, issuer, svc("web"), "web", { issuedAt: ago(10 * MIN), ttlMs: HOUR });
      await issueOnline(ledger, issuer, svc("web"), "web-revoked", { issuedAt: ago(MIN), ttlMs: HOUR, revoked: true });
      // api: its newest unrevoked certificate expired an hour ago (a newer one was revoked).
      await issueOnline(ledger, issuer, svc("api"), "api", { issuedAt: ago(3 * HOUR), ttlMs: 2 * HOUR });
      await issueOnline(ledger, issuer, svc("api"), "api-revoked", {
        issuedAt: ago(2 * HOUR),
        ttlMs: 2 * HOUR,
        revoked: true,
      });
      // old: every certificate revoked.
      await issueOnline(ledger, issuer, svc("old"), "old-1", { issuedAt: ago(2 * HOUR), ttlMs: HOUR, revoked: true });
      await issueOnline(ledger, issuer, svc("old"), "old-2", { issuedAt: ago(MIN * 30), ttlMs: HOUR, revoked: true });
      // db: signed by another CA, and without its address 10.0.0.9.
      await issueOnline(ledger, other, svc("db"), "db", { issuedAt: ago(5 * MIN), ttlMs: HOUR, ips: [] });
      await ledger.close();
    });
    after(async () => {
      await ledger.close().catch(() => undefined);
    });

    it("ok/the certificate in the ledger is one openssl verifies against the CA, for serverAuth (the rows are real)", async () => {
      const row = (await openLedgerRead()).find((r) => r.serial === serials.web)!;
      const certFile = path.join(dir, "web-online.pem");
      writeFileSync(certFile, new X509Certificate(row.der).toString());
      const r = opensslVerify({
        caFile: path.join(pki, "ca", "ca.pem"),
        certFile,
        purpose: "sslserver",
        verifyIp: "127.0.0.1",
      });
      assert.equal(r.ok, true, r.output);
    });

    it("ok/status --json: each csr service's newest unrevoked online certificate, with its serial and lifetime-scaled levels", async () => {
      const r = await cli("status", "--json");
      assert.equal(r.code, 1, r.out + r.err); // api expired, old revoked: critical
      const j = JSON.parse(r.out) as {
        rows: {
          id: string;
          level: string;
          reason: string;
          notAfter: string | null;
          online: { serial: string; ledger: string; notBefore: string } | null;
        }[];
      };
      const row = (id: string) => j.rows.find((x) => x.id === id)!;
      // web: 50 minutes left of a 1h certificate, inside no window: ok (a 7-day critical threshold would page forever).
      assert.equal(row("web").level, "ok", row("web").reason);
      assert.deepEqual(row("web").online, {
        serial: serials.web,
        notBefore: new Date(Math.floor((now.getTime() - 10 * MIN - 5 * MIN) / 1000) * 1000).toISOString(),
        ledger: ledgerFile,
      });
      assert.equal(new Date(row("web").notAfter!).getTime(), Math.floor(notAfters.web!.getTime() / 1000) * 1000);
      assert.match(
        row("web").reason,
        new RegExp(`issued online \\(serial ${serials.web}\\), its agent renews it from`),
      );
      assert.equal(row("api").level, "critical");
      assert.equal(row("api").online?.serial, serials.api);
      assert.match(row("api").reason, /^expired (59|60|61) minutes ago/);
      assert.equal(row("old").level, "critical");
      assert.equal(row("old").online, null);
      assert.match(row("old").reason, /revoked: every certificate the ledger holds for it is/);
      assert.equal(row("app").online, null);
      assert.equal(row("app").level, "ok");
    });

    it("ok/status (human): the online row shows its serial and its expiry to the minute", async () => {
      const r = await cli("status");
      assert.match(
        r.out,
        new RegExp(
          `ok\\s+web \\(online, serial ${serials.web}\\)\\s+${notAfters.web!.toISOString().slice(0, 16).replace("T", " ")}\\s+in (49|50) minutes`,
        ),
      );
      assert.match(r.out, /critical api: expired/);
    });

    it("fail/check: the expired, the all-revoked and the foreign, address-less certificate, each with the agent's fix; web is clean", async () => {
      const r = await cli("check", "--json");
      assert.equal(r.code, 1);
      const j = JSON.parse(r.out) as {
        findings: { code: string; about: { service?: string; kind: string }; message: string; fix: string }[];
        connections: { from: string; to: string; ok: boolean }[];
      };
      const codes = (service: string) =>
        j.findings
          .filter((f) => f.about.service === service)
          .map((f) => f.code)
          .sort();
      assert.deepEqual(codes("web"), [], JSON.stringify(j.findings.filter((f) => f.about.service === "web")));
      assert.deepEqual(codes("api"), ["expired"]);
      assert.deepEqual(codes("old"), ["cert-missing"]);
      assert.deepEqual(codes("db"), ["san-missing", "untrusted"]);
      const api = j.findings.find((f) => f.about.service === "api")!;
      assert.match(api.message, new RegExp(`^api's online certificate ${serials.api} \\(${ledgerFile}\\) expired`));
      assert.match(api.fix, /api's agent renews it from the online CA .*`mtlskit token create api`/);
      const old = j.findings.find((f) => f.about.service === "old")!;
      assert.match(old.message, /revoked: every certificate the ledger holds for it is/);
      assert.match(old.fix, /`mtlskit token create old`/);
      // The declared connection app -> web is judged with web's online certificate: it handshakes.
      assert.deepEqual(
        j.connections.map((c) => [c.from, c.to, c.ok]),
        [["app", "web", true]],
      );
    });

    it("ok/check --service web,app: no finding, exit 0, and the note names the ledger", async () => {
      const r = await cli("check", "--service", "web,app");
      assert.equal(r.code, 0, r.out);
      assert.match(
        r.out,
        new RegExp(
          `Issued online \\(csr: true, by \`mtlskit serve\`\\): web; its agent holds the key and files on its host, and check judged the newest unrevoked certificate in ${ledgerFile.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}`,
        ),
      );
    });

    it('ok/metrics: online certificates under the certificate metrics with issued="online", and the ledger\'s counts', async () => {
      const r = await cli("metrics");
      assert.equal(r.code, 0, r.err);
      const web = `{service="web",certificate="web",path="${ledgerFile}",issued="online"}`;
      assert.ok(
        r.out.includes(
          `mtlskit_certificate_not_after_timestamp_seconds${web} ${Math.floor(notAfters.web!.getTime() / 1000)}\n`,
        ),
        r.out,
      );
      assert.ok(r.out.includes(`mtlskit_certificate_renewal_due_timestamp_seconds${web} `), "renewal due for web");
      assert.ok(
        r.out.includes(
          `mtlskit_certificate_not_after_timestamp_seconds{service="api",certificate="api",path="${ledgerFile}",issued="online"} ${Math.floor(notAfters.api!.getTime() / 1000)}\n`,
        ),
      );
      // old has no unrevoked certificate: no expiry series.
      assert.doesNotMatch(r.out, /not_after_timestamp_seconds\{service="old"/);
      assert.match(r.out, /^mtlskit_ledger_certificates 8$/m);
      assert.match(r.out, /^mtlskit_ledger_revoked_certificates 4$/m);
      // The file-issued app keeps its labels.
      assert.match(
        r.out,
        /mtlskit_certificate_not_after_timestamp_seconds\{service="app",certificate="app",path="[^"]+cert\.pem"\} \d+/,
      );
    });

    it("ok/plan: online services are reported as issued online, not as awaiting a CSR", async () => {
      const r = await cli("plan");
      assert.equal(r.code, 0, r.err);
      assert.match(
        r.out,
        new RegExp(`web\\s+csr\\s+issued online: see the ledger \\(serial ${serials.web}, valid until `),
      );
      assert.match(
        r.out,
        /api\s+csr\s+issued online: see the ledger; its newest certificate \(serial [0-9a-f]+\) expired .*so its agent is not renewing; check the agent/,
      );
      assert.match(
        r.out,
        /old\s+csr\s+issued online: every certificate the ledger holds for it is revoked; enroll its agent again/,
      );
      assert.doesNotMatch(r.out, /awaiting a CSR/);
      assert.doesNotMatch(r.out, /need.* a certificate apply cannot issue/);
    });

    it("ok/an OLDER ledger (schema 1, 2) is read as it is by status, check, metrics, ledger list and show: the same answers, the file never migrated; token create migrates it", async () => {
      const sqlite = (f: string, sql: string) => {
        const r = spawnSync("sqlite3", [f, sql], { encoding: "utf8", timeout: 30_000 });
        assert.equal(r.status, 0, r.stderr);
        return r.stdout.trim();
      };
      const tables = (f: string) =>
        sqlite(
          f,
          "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name)",
        );
      const same = await Promise.all(["status", "check", "metrics"].map((c) => cli(c, "--json")));
      for (const [version, drop] of [
        [2, "DROP TABLE acme_eab; DROP TABLE acme_objects; DROP TABLE acme_nonces"],
        [
          1,
          "DROP TABLE acme_eab; DROP TABLE acme_objects; DROP TABLE acme_nonces; DROP TABLE counters; DROP INDEX certificates_revoked",
        ],
      ] as const) {
        const copy = path.join(tempDir("mtlskit-online-old-"), "pki");
        cpSync(pki, copy, { recursive: true });
        const f = path.join(copy, "ca", "ledger.db");
        sqlite(f, `${drop}; UPDATE schema_version SET version = ${version}`);
        const before = tables(f);
        const run = (cmd: string[]) => runCli([...cmd, "-f", file, "--pki", copy]);
        for (const [i, cmd] of ["status", "check", "metrics"].entries()) {
          const r = await run([cmd, "--json"]);
          assert.equal(r.code, same[i]!.code, `${cmd} at schema ${version}: ${r.err}`);
          // The same answer but for the clock: "now" and the seconds left, read a moment later.
          const timeless = (out: string) =>
            out
              .split(copy)
              .join(pki)
              .replace(/"now": "[^"]*"/g, "")
              .replace(/("(?:secondsLeft|remainingSeconds|expiresInSeconds)": )-?[0-9.]+/g, "$1");
          assert.equal(timeless(r.out), timeless(same[i]!.out), `${cmd} at schema ${version} answers as at schema 3`);
        }
        const list = await runCli(["ledger", "list", "--json", "--pki", copy]);
        assert.equal(list.code, 0, list.err);
        assert.ok(list.out.includes(serials.web!), "ledger list reads the rows");
        const show = await runCli(["ledger", "show", serials.web!, "--pki", copy]);
        assert.equal(show.code, 0, show.err);
        assert.equal(
          sqlite(f, "SELECT version FROM schema_version"),
          String(version),
          "no read-only command migrated it",
        );
        assert.equal(tables(f), before, "no table was added");
        const made = await run(["token", "create", "web", "--acme"]);
        assert.equal(made.code, 0, made.err);
        assert.equal(sqlite(f, "SELECT version FROM schema_version"), "3", "token create migrates it");
        assert.equal(sqlite(f, "SELECT count(*) FROM acme_eab"), "1");
      }
    });
  });
});

describe("a ledger that cannot be read", { timeout: 60_000 }, () => {
  it("fail/status, check and metrics say so (exit 3, UNKNOWN for --nagios); plan and apply warn and carry on", async () => {
    const d = tempDir("mtlskit-online-bad-");
    const f = writeManifest(
      d,
      "version: 1\ncluster: ob\nservices:\n  web: { usage: server, csr: true }\n  app: { usage: client }\n",
    );
    const p = path.join(d, "pki");
    await apply(loadManifest(f), p);
    writeFileSync(path.join(p, "ca", "ledger.db"), "not a database\n", { mode: 0o600 });
    const notDb = /ledger .*ledger\.db: cannot open it: it is not an SQLite database/;
    for (const args of [["status"], ["check"], ["metrics"]]) {
      const r = await runCli([...args, "-f", f, "--pki", p]);
      assert.equal(r.code, 3, `${args.join(" ")}: ${r.out}${r.err}`);
      assert.match(r.err, notDb);
    }
    const nagios = await runCli(["status", "-f", f, "--pki", p, "--nagios"]);
    assert.equal(nagios.code, 3);
    assert.match(nagios.out, /^MTLSKIT STATUS UNKNOWN - ledger /);
    for (const cmd of ["plan", "apply"]) {
      const r = await runCli([cmd, "-f", f, "--pki", p]);
      assert.equal(r.code, 0, `${cmd}: ${r.out}${r.err}`);
      assert.match(
        r.err,
        /warning: ledger .*not an SQLite database.*; csr services issued online are shown as if the ledger held nothing/,
      );
      assert.match(r.out, /web\s+csr\s+awaiting a CSR/);
    }
  });
});

describe("status levels of an online certificate follow its lifetime", () => {
  // A one-hour certificate issued at T: its agent renews from T+40m (two thirds); critical from T+50m.
  const T = Date.parse("2026-06-01T12:00:00Z");
  const input = (renewAt = new Date(T + 40 * MIN)): StatusInput => ({
    id: "web",
    service: "web",
    file: "web's online certificate ab (ledger.db)",
    subject: "CN=web",
    notAfter: new Date(T + HOUR),
    renewAt,
    ca: { subject: "CN=CA", notAfter: new Date(T + 365 * 24 * HOUR) },
    online: { serial: "ab", notBefore: new Date(T), ledger: "ledger.db" },
  });
  const at = (m: number, t: Thresholds = {}) => expiryStatus([input()], new Date(T + m * MIN), t).rows[0]!;
  for (const [m, level, reason] of [
    [
      10,
      "ok",
      /^expires in 50 minutes \(2026-06-01 13:00 UTC\); issued online \(serial ab\), its agent renews it from 2026-06-01 12:40 UTC$/,
    ],
    [39, "ok", /issued online/],
    [
      41,
      "warning",
      /^expires in 19 minutes .*; its agent should have renewed it by 2026-06-01 12:40 UTC: see `mtlskit agent --status` on web's host$/,
    ],
    [51, "critical", /^expires in 9 minutes/],
    [61, "critical", /^expired 1 minute ago \(2026-06-01 13:00 UTC\)$/],
  ] as const)
    it(`${level === "ok" ? "ok" : "fail"}/${m} minutes into its hour: ${level}`, () => {
      const r = at(m);
      assert.equal(r.level, level, r.reason);
      assert.match(r.reason, reason);
    });
  it("ok/--critical 7d and --warning 30d do not page for an hour-long certificate: they are capped by its lifetime", () => {
    assert.equal(at(10, { criticalMs: 7 * 24 * HOUR, warningMs: 30 * 24 * HOUR }).level, "ok");
    assert.equal(at(45, { criticalMs: 7 * 24 * HOUR, warningMs: 30 * 24 * HOUR }).level, "warning");
    assert.equal(at(55, { criticalMs: 7 * 24 * HOUR, warningMs: 30 * 24 * HOUR }).level, "critical");
  });
  it("ok/--nagios perfdata carries the row's own thresholds: 20 minutes to warn, 10 to page", () => {
    const line = nagiosLine(expiryStatus([input()], new Date(T + 10 * MIN)));
    assert.match(line, /^MTLSKIT STATUS OK - soonest: web expires in 50 minutes .*\| 'web'=3000s;1200:;600:$/);
  });
  it("fail/the same certificate read from a file (no online mark) is critical at once: the default thresholds are days", () => {
    const { online: _, ...file } = input();
    assert.equal(expiryStatus([file], new Date(T + 10 * MIN)).rows[0]!.level, "critical");
  });
});

describe("online certificates under ca.intermediate", { timeout: 60_000 }, () => {
  it("ok/signed by the intermediate, judged with it appended (as the server sends it): check clean, status ok, apply says issued online", async () => {
    const d = tempDir("mtlskit-online-inter-");
    const f = writeManifest(
      d,
      "version: 1\ncluster: oi\nca: { intermediate: { validity: 30d } }\ndefaults: { validity: 20d }\nservices:\n  web: { usage: server, csr: true, ttl: 30m, addresses: [127.0.0.1] }\n  app: { usage: client }\nconnections:\n  - { from: app, to: web }\n",
    );
    const p = path.join(d, "pki");
    const loaded = loadManifest(f);
    await apply(loaded, p);
    const ledger = await openLedger(p);
    try {
      const web = loaded.manifest.services.find((s) => s.name === "web")!;
      await issueOnline(ledger, issuerIn(p, { intermediate: true }), web, "inter-web", {
        issuedAt: new Date(Date.now() - 5 * MIN),
        ttlMs: 30 * MIN,
      });
    } finally {
      await ledger.close();
    }
    const check = await runCli(["check", "-f", f, "--pki", p]);
    assert.equal(check.code, 0, check.out);
    assert.match(check.out, /Issued online .*: web;/);
    const status = await runCli(["status", "-f", f, "--pki", p, "--json"]);
    assert.equal(status.code, 0, status.out);
    const again = await runCli(["apply", "-f", f, "--pki", p]);
    assert.equal(again.code, 0, again.err);
    assert.match(
      again.out,
      new RegExp(`web\\s+csr\\s+issued online: see the ledger \\(serial ${serials["inter-web"]}, `),
    );
  });
});

describe("online certificates during a CA rotation", { timeout: 60_000 }, () => {
  it("ok/active: a certificate from the next CA chains to the overlap bundle (the CA's and the next CA's), no finding", async () => {
    const d = tempDir("mtlskit-online-rot-");
    const f = writeManifest(
      d,
      "version: 1\ncluster: or\nservices:\n  web: { usage: server, csr: true, addresses: [127.0.0.1] }\n  app: { usage: client }\nconnections:\n  - { from: app, to: web }\n",
    );
    const p = path.join(d, "pki");
    await apply(loadManifest(f), p);
    for (const step of ["prepare", "activate"]) {
      const r = await runCli(["ca", "rotate", step, "-f", f, "--pki", p]);
      assert.equal(r.code, 0, r.out + r.err);
    }
    const ledger = await openLedger(p);
    try {
      const web = loadManifest(f).manifest.services.find((s) => s.name === "web")!;
      await issueOnline(ledger, issuerIn(p, {}, LAYOUT.nextCa), web, "rot-web", {
        issuedAt: new Date(Date.now() - 5 * MIN),
        ttlMs: HOUR,
      });
    } finally {
      await ledger.close();
    }
    const check = await runCli(["check", "-f", f, "--pki", p, "--json"]);
    const j = JSON.parse(check.out) as {
      findings: { code: string; about: { service?: string } }[];
      connections: { ok: boolean }[];
    };
    assert.deepEqual(
      j.findings.filter((x) => x.about.service === "web").map((x) => x.code),
      [],
      check.out,
    );
    assert.deepEqual(
      j.connections.map((c) => c.ok),
      [true],
      check.out,
    );
  });
});

/** issuerIn is the signing half of the CA an apply made in `pki`. */
function issuerIn(pki: string, opts: { intermediate?: boolean } = {}, files: CaFiles = LAYOUT.currentCa): Issuer {
  const st = readCa(pki, files, opts);
  assert.equal(st.status, "ok");
  const ca = (st as Extract<typeof st, { status: "ok" }>).ca;
  return { subject: ca.cert.subject, keyId: ca.keyId, keyType: ca.keyType, privateKey: ca.privateKey! };
}

/** openLedgerRead lists the test ledger's rows (opened and closed again). */
async function openLedgerRead() {
  const l = await openLedger(pki, undefined, { create: false });
  try {
    return await l.list();
  } finally {
    await l.close();
  }
}

/** foreignCa applies a one-service manifest into its own directory: a CA nobody here trusts. */
async function foreignCa(): Promise<{ pki: string }> {
  const d = tempDir("mtlskit-online-foreign-");
  const f = writeManifest(d, "version: 1\ncluster: other\nservices:\n  x: { usage: server }\n");
  const p = path.join(d, "pki");
  await apply(loadManifest(f), p);
  return { pki: p };
}
