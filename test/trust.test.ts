/**
 * mtlskit trust: the planner for every platform (what --dry-run prints, and what macOS and
 * Windows users are told to run), refusals (a leaf, an expired CA, not root), status over real
 * bundles, certutil's listing, platform detection, and the executor. Nothing here changes the
 * machine's trust store: installs for real are test/interop/trust.interop.ts (CI, as root).
 * Certificates are real: a manifest applied by the library, an expired CA issued in the past
 * (apply's `now`), and a CA made by the openssl CLI.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, readFileSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { before, describe, it } from "node:test";
import { EXIT, FailedError } from "../src/errors.ts";
import { loadManifest } from "../src/manifest/index.ts";
import { apply } from "../src/plan/apply.ts";
import {
  bundleDigests,
  detectPlatform,
  executeTrust,
  parseAnchor,
  parseNssList,
  parseOsRelease,
  parsePasswd,
  planTrust,
  refuseBlocked,
  renderStep,
  trustStatus,
  type NssFacts,
  type SystemFacts,
  type TrustAnchor,
  type TrustInput,
  type TrustPlan,
  which,
} from "../src/trust/index.ts";
import { REPO, runCli, tempDir, writeManifest } from "./helpers/cli.ts";

const DAY = 86_400_000;
const MANIFEST = `version: 1
cluster: demo
ca: { key: ecdsa-p256, validity: 1y, subject: { CN: Demo Root CA } }
defaults: { key: ecdsa-p256, validity: 30d, renewBefore: 7d }
services:
  web: { usage: server, addresses: [web.demo.test] }
`;
// A CA that expired 10 days ago: valid for 20 days from 30 days ago.
const EXPIRED = MANIFEST.replace("cluster: demo", "cluster: old")
  .replace("validity: 1y", "validity: 20d")
  .replace("validity: 30d, renewBefore: 7d", "validity: 5d, renewBefore: 1d");

let dir: string;
let file: string;
let pki: string;
let caFile: string;
let anchor: TrustAnchor;
const trust = (...a: string[]) => runCli(["trust", ...a]);

const NO_NSS: NssFacts = { use: false, reason: "certutil is not installed" };
const FRESH: SystemFacts = {
  anchorFileNow: undefined,
  anchorDirExists: true,
  tool: "/usr/sbin/update-ca-certificates",
  inBundle: false,
};
const input = (over: Partial<TrustInput>): TrustInput => ({
  action: "install",
  platform: "debian",
  name: "mtlskit-demo",
  anchor,
  system: FRESH,
  nss: NO_NSS,
  uid: 0,
  commandLine: "mtlskit trust install -f m.yaml --pki p",
  ...over,
});
const lines = (p: TrustPlan) => p.steps.map(renderStep);

describe("trust", { timeout: 60_000 }, () => {
  before(async () => {
    dir = tempDir("mtlskit-trust-");
    file = writeManifest(dir, MANIFEST);
    pki = path.join(dir, "pki");
    await apply(loadManifest(file), pki);
    caFile = path.join(pki, "ca", "ca.pem");
    anchor = parseAnchor(readFileSync(caFile, "utf8"), caFile);
  });

  describe("planning: --dry-run and printed steps, per platform", () => {
    it("ok/debian: the exact file and commands, nothing changed, exit 0", async () => {
      const r = await trust(
        "install",
        "-f",
        file,
        "--pki",
        pki,
        "--platform",
        "debian",
        "--dry-run",
        "--nssdb",
        path.join(dir, "no-such-db"),
      );
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /^mtlskit trust install: mtlskit-demo on Debian\/Ubuntu\n/);
      assert.ok(
        r.out.includes(
          `Would run, in order (--dry-run: nothing is changed):\n  install -m 0644 ${caFile} /usr/local/share/ca-certificates/mtlskit-demo.crt\n  update-ca-certificates\n`,
        ),
        r.out,
      );
      assert.match(r.out, /skipped NSS \(browsers\): (no NSS database at .*no-such-db|certutil is not installed)/);
    });

    it("ok/debian uninstall: --fresh, then the hooks hear that the CA left", () => {
      const p = planTrust(
        input({ action: "uninstall", system: { ...FRESH, anchorFileNow: anchor.pem, inBundle: true } }),
      );
      assert.deepEqual(lines(p).slice(0, 2), [
        "rm -f /usr/local/share/ca-certificates/mtlskit-demo.crt",
        "update-ca-certificates --fresh",
      ]);
      assert.match(
        lines(p)[2]!,
        /^sh -c 'for hook in \$\(run-parts --test \/etc\/ca-certificates\/update\.d 2>\/dev\/null\); do echo -\/etc\/ssl\/certs\/mtlskit-demo\.pem \| "\$hook"/,
      );
      assert.deepEqual(p.blockers, []);
    });

    // Issue 11: the dry run for another machine listed a certutil step as if certutil were there.
    // Whether that machine has certutil and a database is unknown here: the command is a skipped
    // step naming the package, through the anchor copy (world-readable, unlike PKI/ca/).
    it("ok/rhel (another machine): anchors directory and update-ca-trust extract; NSS skipped with the package and the command to run there", async () => {
      const r = await trust(
        "install",
        "-f",
        file,
        "--pki",
        pki,
        "--platform",
        "rhel",
        "--dry-run",
        "--nssdb",
        "/home/alice/.pki/nssdb",
      );
      assert.equal(r.code, 0, r.err);
      const steps = r.out.split("\n").filter((l) => l.startsWith("  ") && !l.startsWith("   "));
      const want = [
        `  install -m 0644 ${caFile} /etc/pki/ca-trust/source/anchors/mtlskit-demo.pem`,
        "  update-ca-trust extract",
        "  skipped NSS (browsers): not planned for another machine (RHEL/Fedora): if it has certutil (apt-get install libnss3-tools, or dnf install nss-tools) and an NSS database, run there as its owner: certutil -d sql:/home/alice/.pki/nssdb -A -t C,, -n mtlskit-demo -i /etc/pki/ca-trust/source/anchors/mtlskit-demo.pem",
      ];
      assert.deepEqual(
        steps.filter((l) => !/^  (CA|SHA-256|expires) /.test(l)),
        want,
      );
      const home = await trust("uninstall", "-f", file, "--pki", pki, "--platform", "rhel", "--dry-run");
      assert.match(
        home.out,
        /skipped NSS \(browsers\): .*run there as its owner: certutil -d sql:\$HOME\/\.pki\/nssdb -D -n mtlskit-demo\n/,
      );
      assert.doesNotMatch(home.out, /^  certutil /m);
      const u = planTrust(
        input({
          action: "uninstall",
          platform: "rhel",
          system: { ...FRESH, anchorFileNow: anchor.pem, tool: "/usr/bin/update-ca-trust" },
        }),
      );
      assert.deepEqual(lines(u), [
        "rm -f /etc/pki/ca-trust/source/anchors/mtlskit-demo.pem",
        "update-ca-trust extract",
      ]);
    });

    it("ok/macos: security add-trusted-cert into the System keychain; uninstall by SHA-1; nothing run", async () => {
      const r = await trust("install", "-f", file, "--pki", pki, "--platform", "macos");
      assert.equal(r.code, 0, r.err);
      assert.ok(
        r.out.includes(
          `  sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain ${caFile}\n`,
        ),
        r.out,
      );
      assert.ok(r.out.includes(`  security verify-cert -c ${caFile}\n`));
      assert.match(r.out, /runs none of them/);
      const u = await trust("uninstall", "-f", file, "--pki", pki, "--platform", "macos");
      assert.equal(u.code, 0, u.err);
      const sha1 = execFileSync("openssl", ["x509", "-in", caFile, "-noout", "-fingerprint", "-sha1"], {
        encoding: "utf8",
      })
        .split("=")[1]!
        .trim()
        .replace(/:/g, "");
      assert.ok(u.out.includes(`  sudo security remove-trusted-cert -d ${caFile}\n`));
      assert.ok(
        u.out.includes(`  sudo security delete-certificate -Z ${sha1} /Library/Keychains/System.keychain\n`),
        u.out,
      );
    });

    it("ok/windows: certutil -addstore ROOT and Import-Certificate; removal by thumbprint (openssl's SHA-1)", async () => {
      const r = await trust("install", "-f", file, "--pki", pki, "--platform", "windows");
      assert.equal(r.code, 0, r.err);
      const sha1 = execFileSync("openssl", ["x509", "-in", caFile, "-noout", "-fingerprint", "-sha1"], {
        encoding: "utf8",
      })
        .split("=")[1]!
        .trim()
        .replace(/:/g, "");
      assert.ok(r.out.includes(`  certutil -addstore -f ROOT ${caFile}\n`), r.out);
      assert.ok(
        r.out.includes(`  Import-Certificate -FilePath ${caFile} -CertStoreLocation Cert:\\LocalMachine\\Root\n`),
      );
      assert.ok(r.out.includes(`  Test-Path Cert:\\LocalMachine\\Root\\${sha1}\n`));
      const u = await trust("uninstall", "--ca", caFile, "--platform", "windows");
      assert.equal(u.code, 0, u.err);
      assert.match(u.out, /^mtlskit trust uninstall: mtlskit-demo-root-ca on Windows/); // --ca: the name from the CN
      assert.ok(u.out.includes(`  certutil -delstore ROOT ${sha1}\n`));
      assert.ok(u.out.includes(`  Remove-Item Cert:\\LocalMachine\\Root\\${sha1}\n`));
    });

    it("ok/already installed: no step; a different CA under the name is replaced, in NSS by -D then -A", () => {
      assert.deepEqual(planTrust(input({ system: { ...FRESH, anchorFileNow: anchor.pem, inBundle: true } })).steps, []);
      const other = planTrust(
        input({
          system: { ...FRESH, anchorFileNow: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" },
          nss: {
            use: true,
            certutil: "/usr/bin/certutil",
            db: "/home/alice/.pki/nssdb",
            as: { uid: 1000, gid: 1000, user: "alice", home: "/home/alice" },
            current: { sha256: "00".repeat(32), trust: "C,," },
          },
        }),
      );
      assert.deepEqual(lines(other), [
        `install -m 0644 ${caFile} /usr/local/share/ca-certificates/mtlskit-demo.crt`,
        "update-ca-certificates",
        "sudo -u alice certutil -d sql:/home/alice/.pki/nssdb -D -n mtlskit-demo",
        "sudo -u alice certutil -d sql:/home/alice/.pki/nssdb -A -t C,, -n mtlskit-demo -i /usr/local/share/ca-certificates/mtlskit-demo.crt",
      ]);
      assert.ok(other.notes.some((n) => /holds another certificate; it is replaced/.test(n)));
    });

    it("ok/uninstall of what is not there: no step, says so", () => {
      const p = planTrust(
        input({
          action: "uninstall",
          system: FRESH,
          nss: { use: true, certutil: "c", db: "/d", as: undefined, current: undefined },
        }),
      );
      assert.deepEqual(p.steps, []);
      assert.ok(
        p.notes.some((n) =>
          /nothing to remove: \/usr\/local\/share\/ca-certificates\/mtlskit-demo\.crt does not exist/.test(n),
        ),
      );
      assert.ok(p.notes.some((n) => /NSS \/d: nothing to remove/.test(n)));
    });

    it("fail/--platform debian|rhel that is not this machine needs --dry-run; unknown platform, action and --ca with -f are usage errors", async () => {
      const other = which("update-ca-certificates") ? "rhel" : "debian";
      const r = await trust("install", "-f", file, "--pki", pki, "--platform", other);
      assert.equal(r.code, 2);
      assert.match(r.err, /is not this machine .*add --dry-run to print its steps/);
      assert.equal((await trust("install", "--platform", "beos")).code, 2);
      assert.match((await trust("reinstall")).err, /unknown action "reinstall"; use install, uninstall or status/);
      assert.match((await trust("install", "--ca", caFile, "-f", file)).err, /--ca is incompatible with -f\/--file/);
    });
  });

  describe("refusals", () => {
    it("fail/a leaf (a service's cert.pem) is not a CA: exit 2, named, nothing planned", async () => {
      const r = await trust(
        "install",
        "--ca",
        path.join(pki, "services", "web", "cert.pem"),
        "--name",
        "web",
        "--dry-run",
      );
      assert.equal(r.code, 2);
      assert.match(r.err, /cert\.pem is not a CA certificate \(basicConstraints CA:TRUE is not set; it is CN=web/);
      assert.doesNotMatch(r.err, /\n\s+at /);
      assert.equal(r.out, "");
    });

    it("fail/an expired CA: exit 1 with its expiry; uninstall still works by name", async () => {
      const d = tempDir("mtlskit-trust-old-");
      const f = writeManifest(d, EXPIRED);
      await apply(loadManifest(f), path.join(d, "pki"), { now: new Date(Date.now() - 30 * DAY) });
      const r = await trust("install", "-f", f, "--pki", path.join(d, "pki"), "--dry-run");
      assert.equal(r.code, EXIT.findings, r.err);
      assert.match(r.err, /ca\.pem \(CN=Demo Root CA\) expired on \d{4}-\d\d-\d\dT.*Renew the CA/);
      const u = await trust("uninstall", "-f", f, "--pki", path.join(d, "pki"), "--platform", "rhel", "--dry-run");
      assert.equal(u.code, 0, u.err);
    });

    it("fail/two certificates, no certificate, no CA file yet", async () => {
      const two = path.join(dir, "two.pem");
      writeFileSync(two, readFileSync(caFile, "utf8") + readFileSync(caFile, "utf8"));
      assert.match(
        (await trust("install", "--ca", two, "--dry-run")).err,
        /holds 2 certificates; a trust anchor is one CA certificate/,
      );
      const key = path.join(pki, "services", "web", "key.pem");
      const k = await trust("install", "--ca", key, "--name", "x", "--dry-run");
      assert.equal(k.code, 2);
      assert.match(k.err, /holds no CERTIFICATE block \(found PRIVATE KEY\)/);
      const none = await trust("install", "-f", file, "--pki", path.join(dir, "nowhere"), "--dry-run");
      assert.equal(none.code, 3);
      assert.match(
        none.err,
        /cannot read the CA .*nowhere\/ca\/ca\.pem: no such file; run mtlskit apply -f .* --pki .*nowhere first/,
      );
    });

    it("fail/not root: the planner blocks, naming the sudo command; refuseBlocked is exit 3 before anything is touched", () => {
      const p = planTrust(input({ uid: 1000 }));
      assert.equal(p.steps.length, 2);
      assert.deepEqual(p.blockers, [
        "changing the system trust store needs root (it writes /usr/local/share/ca-certificates/mtlskit-demo.crt and runs update-ca-certificates); run: sudo mtlskit trust install -f m.yaml --pki p",
      ]);
      assert.throws(
        () => refuseBlocked(p),
        (e: unknown) =>
          e instanceof FailedError &&
          e.exitCode === EXIT.failed &&
          /needs root.*sudo mtlskit trust install -f m\.yaml --pki p/.test(e.message) &&
          /nothing was changed/.test(e.message),
      );
      // NSS only (the system store already has it): the user's own database needs no root.
      const nssOnly = planTrust(
        input({
          uid: 1000,
          system: { ...FRESH, anchorFileNow: anchor.pem, inBundle: true },
          nss: { use: true, certutil: "c", db: "/d", as: undefined, current: undefined },
        }),
      );
      assert.deepEqual(nssOnly.blockers, []);
      const missing = planTrust(input({ system: { ...FRESH, tool: undefined } }));
      assert.match(
        missing.blockers[0]!,
        /update-ca-certificates is not installed; install it \(apt-get install ca-certificates\)/,
      );
    });

    it("fail/not root, as a real process: exit 3, the sudo line, no stack trace", () => {
      // A world-readable copy: PKI/ca/ is 0700 and the process runs as nobody when the tests run as root.
      const open = tempDir("mtlskit-trust-nobody-");
      chmodSync(open, 0o755);
      const ca = path.join(open, "ca.pem");
      copyFileSync(caFile, ca);
      chmodSync(ca, 0o644);
      const main = pathToFileURL(path.join(REPO, "src", "cli", "main.ts")).href;
      const cli = [
        "--import",
        "tsx",
        "-e",
        `import(${JSON.stringify(main)}).then((m) => m.main())`,
        "--",
        "node",
        "trust",
        "install",
        "--ca",
        ca,
        "--name",
        "demo",
        "--platform",
        "debian",
      ];
      const asNobody =
        process.getuid?.() === 0
          ? (["setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, ...cli]] as const)
          : ([process.execPath, cli] as const);
      const r = spawnSync(asNobody[0], [...asNobody[1]], {
        cwd: REPO,
        encoding: "utf8",
        env: { ...process.env, HOME: open },
        timeout: 30_000,
      });
      assert.equal(r.status, 3, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `error: mtlskit trust install: changing the system trust store needs root .*; run: sudo mtlskit trust install --ca ${ca.replace(/[/.]/g, "\\$&")} --name demo --platform debian`,
        ),
      );
      assert.doesNotMatch(r.stderr, /\n\s+at |bug/);
    });
  });

  describe("status", () => {
    const rhelStyle = (pems: string[]) => pems.map((p, i) => `# Certificate ${i}\n${p}\n`).join("");

    it("ok/bundleDigests reads a RHEL-style bundle (comments between blocks); digests are openssl's SHA-256 fingerprints", () => {
      const other = execFileSync(
        "openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:P-256",
          "-nodes",
          "-keyout",
          "/dev/null",
          "-subj",
          "/CN=other",
          "-days",
          "2",
        ],
        { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
      );
      const d = bundleDigests(rhelStyle([other, anchor.pem]));
      assert.equal(d.size, 2);
      assert.ok(d.has(anchor.sha256));
      const fp = execFileSync("openssl", ["x509", "-in", caFile, "-noout", "-fingerprint", "-sha256"], {
        encoding: "utf8",
      })
        .split("=")[1]!
        .trim();
      assert.equal(anchor.sha256, fp.replace(/:/g, "").toLowerCase(), "SHA-256 of the DER, as openssl computes it");
    });

    it("ok/installed only when in the bundle and in NSS when NSS is there; skipped NSS does not count against", () => {
      const base = { anchor, bundle: "/b", anchorFile: "/a/mtlskit-demo.crt" };
      const yes = trustStatus({ ...base, bundleText: rhelStyle([anchor.pem]), anchorFileNow: anchor.pem, nss: NO_NSS });
      assert.equal(yes.installed, true);
      assert.equal(yes.system.anchorFileState, "this CA");
      assert.equal(yes.nss.state, "skipped");
      const notInNss = trustStatus({
        ...base,
        bundleText: rhelStyle([anchor.pem]),
        anchorFileNow: anchor.pem,
        nss: { use: true, certutil: "c", db: "/d", as: undefined, current: undefined },
      });
      assert.equal(notInNss.installed, false);
      assert.equal(notInNss.nss.state, "absent");
      const wrongTrust = trustStatus({
        ...base,
        bundleText: anchor.pem,
        anchorFileNow: undefined,
        nss: { use: true, certutil: "c", db: "/d", as: undefined, current: { sha256: anchor.sha256, trust: "CT,C,C" } },
      });
      assert.equal(wrongTrust.nss.reason, "trust is CT,C,C, not C,,");
      const no = trustStatus({ ...base, bundleText: undefined, anchorFileNow: undefined, nss: NO_NSS });
      assert.deepEqual([no.installed, no.system.state, no.system.anchorFileState], [false, "absent", "missing"]);
    });

    it("ok/parseNssList reads certutil -L output", () => {
      const text = `\nCertificate Nickname                                         Trust Attributes\n                                                             SSL,S/MIME,JAR/XPI\n\nmtlskit-demo                                                 C,,  \nMy Company Root CA - G2                                      CT,C,C\nalice's key                                                  u,u,u\n`;
      assert.deepEqual(
        [...parseNssList(text)],
        [
          ["mtlskit-demo", "C,,"],
          ["My Company Root CA - G2", "CT,C,C"],
          ["alice's key", "u,u,u"],
        ],
      );
    });
  });

  describe("platform and facts", () => {
    it("ok/detectPlatform: OS, then the tool, then /etc/os-release", () => {
      const os = (text: string) => parseOsRelease(text);
      const table: [string, Record<string, string | undefined>, string, string | undefined][] = [
        ["darwin", {}, "", "macos"],
        ["win32", {}, "", "windows"],
        ["linux", { "update-ca-certificates": "/usr/sbin/update-ca-certificates" }, "", "debian"],
        ["linux", { "update-ca-trust": "/usr/bin/update-ca-trust" }, "", "rhel"],
        ["linux", {}, "ID=ubuntu\nID_LIKE=debian\n", "debian"],
        ["linux", {}, 'ID="rocky"\nID_LIKE="rhel centos fedora"\n', "rhel"],
        ["linux", {}, "ID=alpine\n", undefined],
      ];
      for (const [o, tools, rel, want] of table)
        assert.equal(
          detectPlatform({ os: o, tools, osRelease: os(rel) }),
          want,
          `${o} ${JSON.stringify(tools)} ${rel}`,
        );
      assert.deepEqual(os('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\n# comment\n'), {
        PRETTY_NAME: "Debian GNU/Linux 12 (bookworm)",
        VERSION_ID: "12",
      });
    });

    it("ok/parsePasswd finds the sudo user's home (the NSS database that is theirs)", () => {
      assert.deepEqual(
        parsePasswd("root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1001:Alice,,,:/home/alice:/bin/bash\n", "alice"),
        { user: "alice", uid: 1000, gid: 1001, home: "/home/alice" },
      );
      assert.equal(parsePasswd("root:x:0:0:root:/root:/bin/bash\n", "bob"), undefined);
    });
  });

  describe("executor", () => {
    it("ok/writes the anchor with mode 0644 whatever the umask; fail/a failing command stops the run and says what was done", () => {
      const d = tempDir("mtlskit-trust-exec-");
      const target = path.join(d, "mtlskit-demo.crt");
      const plan: TrustPlan = {
        ...planTrust(input({})),
        steps: [
          {
            kind: "write",
            store: "system",
            file: target,
            mode: 0o644,
            pem: anchor.pem,
            from: caFile,
            sourceIsPem: true,
          },
        ],
      };
      const old = process.umask(0o077);
      try {
        executeTrust(plan);
      } finally {
        process.umask(old);
      }
      assert.equal(statSync(target).mode & 0o777, 0o644);
      assert.equal(readFileSync(target, "utf8"), anchor.pem);
      const failing: TrustPlan = {
        ...plan,
        steps: [
          ...plan.steps,
          { kind: "run", store: "system", argv: ["sh", "-c", "echo boom >&2; exit 4"], bin: "/bin/sh", as: undefined },
          { kind: "remove", store: "system", file: target },
        ],
      };
      assert.throws(
        () => executeTrust(failing),
        (e: unknown) =>
          e instanceof FailedError &&
          /sh -c 'echo boom >&2; exit 4' failed \(exit 4\):\n\s+boom/.test(e.message) &&
          e.message.includes(`done before it: install -m 0644 ${caFile} ${target}`) &&
          /run mtlskit trust install again, or undo with mtlskit trust uninstall/.test(e.message),
      );
      assert.ok(statSync(target).isFile(), "the step after the failure did not run");
    });
  });
});
