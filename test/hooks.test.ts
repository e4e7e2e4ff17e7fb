/**
 * Reload hooks: after apply changes a service's files, its `reload` runs (a shell command, or a
 * signal to the process in a pid file), only then, after the outputs are written, with a
 * deadline; a failure exits 3, is recorded (status, metrics) and is retried by the next apply.
 * Real processes throughout: /bin/sh commands and a node process that counts its SIGHUPs.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import { loadManifest } from "../src/manifest/index.ts";
import { apply } from "../src/plan/apply.ts";
import { metricsOfPki } from "../src/status/index.ts";
import { runCli, tempDir, writeManifest } from "./helpers/cli.ts";

const record = (pki: string) =>
  JSON.parse(readFileSync(path.join(pki, "last-apply.json"), "utf8")) as {
    ok: boolean;
    hooks: { service: string; ok: boolean; error?: string; command: string }[];
    pending: string[];
  };
const lines = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").filter(Boolean) : []);

/** setup writes a manifest whose services log each reload (name and the env apply passes) to LOG. */
function setup(
  extra = "",
  webReload = `'echo "web $MTLSKIT_SERVICE $MTLSKIT_CERT $MTLSKIT_KEY $MTLSKIT_CA $MTLSKIT_PKI" >> "$LOG"'`,
) {
  const dir = tempDir("mtlskit-hooks-");
  const log = path.join(dir, "reloads.log");
  const file = writeManifest(
    dir,
    `version: 1
cluster: hk
services:
  web: { usage: server, addresses: [127.0.0.1], reload: ${webReload.replaceAll("$LOG", log)} }
  job: { usage: client, reload: 'echo job >> "${log}"' }
  db: { usage: dual, addresses: [127.0.0.1], split: true, reload: 'echo "db $MTLSKIT_CLIENT_CERT $MTLSKIT_CLIENT_KEY" >> "${log}"' }
${extra}`,
  );
  return { dir, file, log, pki: path.join(dir, "pki") };
}

describe("reload hooks: when they run", { timeout: 60_000 }, () => {
  it("ok/a first apply reloads every service with a hook, once, with its files in MTLSKIT_* (absolute paths)", async () => {
    const { file, log, pki } = setup();
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    const abs = path.resolve(pki);
    assert.deepEqual(lines(log).sort(), [
      `db ${abs}/services/db/client.pem ${abs}/services/db/client-key.pem`,
      "job",
      `web web ${abs}/services/web/cert.pem ${abs}/services/web/key.pem ${abs}/services/web/ca.pem ${abs}`,
    ]);
    assert.match(r.out, /^Reload web: echo "web .*: ok$/m);
    assert.deepEqual(record(pki).pending, []);
  });
  it("ok/an apply that changes nothing runs no hook; --reissue web runs only web's", async () => {
    const { file, log, pki } = setup();
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    assert.equal(lines(log).length, 3);
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki, "--reissue", "web"])).code, 0);
    assert.deepEqual(
      lines(log)
        .slice(3)
        .map((l) => l.split(" ")[0]),
      ["web"],
    );
  });
  it("ok/--no-reload writes the files and leaves the hooks owed: the next apply runs them", async () => {
    const { file, log, pki } = setup();
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki, "--no-reload"])).code, 0);
    assert.deepEqual(lines(log), []);
    assert.deepEqual(record(pki).pending, ["db", "job", "web"]);
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    assert.deepEqual(
      lines(log)
        .map((l) => l.split(" ")[0])
        .sort(),
      ["db", "job", "web"],
    );
    assert.deepEqual(record(pki).pending, []);
  });
  it("ok/hooks owed by another manifest's apply to the same PKI directory are not run by this manifest's apply", async () => {
    const { dir, file, log, pki } = setup();
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki, "--no-reload"])).code, 0);
    assert.deepEqual(record(pki).pending, ["db", "job", "web"]);
    // The same services in a second manifest: its apply changes nothing, so it owes no reload.
    const other = writeManifest(dir, readFileSync(file, "utf8"), "other.yaml");
    const r = await runCli(["apply", "-f", other, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(lines(log), []);
    assert.deepEqual(record(pki).pending, []);
  });
  it("ok/the manifest's outputs are written before the hooks run: a hook sees the renewed export", async () => {
    const dir = tempDir("mtlskit-hooks-order-");
    const out = path.join(dir, "deploy");
    const seen = path.join(dir, "seen");
    const file = writeManifest(
      dir,
      `version: 1\ncluster: hk\nservices:\n  web: { usage: server, addresses: [127.0.0.1], reload: 'cmp "$MTLSKIT_CERT" "${out}/web/web.pem" && echo same >> "${seen}"' }\noutputs:\n  - { format: flat, dir: "${out}" }\n`,
    );
    const pki = path.join(dir, "pki");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    const r = await runCli(["apply", "-f", file, "--pki", pki, "--reissue", "web"]);
    assert.equal(r.code, 0, r.err + r.out);
    assert.deepEqual(lines(seen), ["same", "same"]);
  });
});

describe("reload hooks: failures", { timeout: 60_000 }, () => {
  it("fail/a failing hook exits 3 naming it and its output; the files are new; it is recorded, reported and retried until it succeeds", async () => {
    const { dir, file, log, pki } = setup(
      "",
      `'test -e "${"$DIR"}/reload-ok" || { echo "nginx: [emerg] cannot load certificate" >&2; exit 1; }; echo web >> "$LOG"'`.replaceAll(
        "$DIR",
        "DIRPLACEHOLDER",
      ),
    );
    const text = readFileSync(file, "utf8").replaceAll("DIRPLACEHOLDER", dir);
    writeFileSync(file, text);
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 3);
    assert.match(
      r.err,
      /the reload hook of web failed \(web: exited with 1; it printed: nginx: \[emerg\] cannot load certificate\)\. The new files are in place; fix the hook and run apply again: it retries it\./,
    );
    assert.ok(existsSync(path.join(pki, "services", "web", "cert.pem")));
    const rec = record(pki);
    assert.equal(rec.ok, true);
    assert.deepEqual(rec.pending, ["web"]);
    assert.match(metricsOfPki(loadManifest(file).manifest, pki), /^mtlskit_last_apply_success 0$/m);
    const status = await runCli(["status", "-f", file, "--pki", pki, "--nagios"]);
    assert.equal(status.code, 1);
    assert.match(status.out, /WARNING - the last apply \(.*\) failed: the reload hook of web failed: exited with 1/);
    // Nothing changed since, yet the hook is owed: the next apply runs it again (and fails again).
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 3);
    writeFileSync(path.join(dir, "reload-ok"), "");
    const fixed = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(fixed.code, 0, fixed.err);
    assert.deepEqual(
      lines(log).filter((l) => l === "web"),
      ["web"],
    );
    assert.deepEqual(record(pki).pending, []);
    assert.match(metricsOfPki(loadManifest(file).manifest, pki), /^mtlskit_last_apply_success 1$/m);
  });
  it("fail/a hook that hangs is killed at its deadline, and says so", async () => {
    const { file, pki } = setup("", "'sleep 30'");
    const started = Date.now();
    await apply(loadManifest(file), pki, { hookTimeoutMs: 300 });
    assert.ok(Date.now() - started < 10_000);
    const web = record(pki).hooks.find((h) => h.service === "web")!;
    assert.equal(web.ok, false);
    assert.match(web.error!, /did not finish within 0\.3 s and was killed/);
  });
  const bad: [string, string, RegExp][] = [
    ["an empty command", "''", /services\.web\.reload: must not be empty/],
    [
      "a list",
      "[systemctl, reload]",
      /services\.web\.reload: must be a shell command \(e\.g\. "systemctl reload nginx"\) or \{ signal: HUP, pidFile: \/run\/nginx\.pid \}/,
    ],
    [
      "a signal that is not a reload",
      "{ signal: KILL, pidFile: /run/x.pid }",
      /services\.web\.reload\.signal: must be one of HUP, USR1, USR2; got "KILL"/,
    ],
    ["a signal without its pid file", "{ signal: HUP }", /services\.web\.reload\.pidFile: is required/],
  ];
  for (const [name, value, message] of bad) {
    it(`fail/${name} is refused by the manifest (exit 2, nothing written)`, async () => {
      const { file, pki } = setup("", value);
      const r = await runCli(["apply", "-f", file, "--pki", pki]);
      assert.equal(r.code, 2);
      assert.match(r.err, message);
      assert.equal(existsSync(pki), false);
    });
  }
  it("fail/a hook on an external service is refused: apply never changes its files, so it would never run", async () => {
    const dir = tempDir("mtlskit-hooks-ext-");
    const file = writeManifest(
      dir,
      `version: 1\ncluster: hk\nservices:\n  web: { usage: server, addresses: [127.0.0.1], reload: "true", files: { cert: c.pem, key: k.pem, ca: r.pem } }\n`,
    );
    const r = await runCli(["apply", "-f", file, "--pki", path.join(dir, "pki")]);
    assert.equal(r.code, 2);
    assert.match(
      r.err,
      /reload: runs after apply changes this service's files, but apply never changes files named in services\.NAME\.files/,
    );
  });
});

describe("reload hooks: a signal to the process in a pid file", { timeout: 60_000 }, () => {
  const children: ChildProcess[] = [];
  after(() => children.forEach((c) => c.kill("SIGKILL")));

  it("ok/the process gets SIGHUP once per change; a stale pid file is a failure that names the pid", async () => {
    const dir = tempDir("mtlskit-hooks-signal-");
    const hups = path.join(dir, "hups");
    // A stand-in daemon: it writes its pid file when ready and a line per SIGHUP.
    const child = spawn(
      process.execPath,
      [
        "-e",
        `const fs=require("fs");process.on("SIGHUP",()=>fs.appendFileSync(${JSON.stringify(hups)},"hup\\n"));fs.writeFileSync(${JSON.stringify(path.join(dir, "daemon.pid"))},String(process.pid));setInterval(()=>{},1000);`,
      ],
      { stdio: "ignore" },
    );
    children.push(child);
    for (let i = 0; i < 100 && !existsSync(path.join(dir, "daemon.pid")); i++)
      await new Promise((r) => setTimeout(r, 50));
    const file = writeManifest(
      dir,
      `version: 1\ncluster: hk\nservices:\n  web: { usage: server, addresses: [127.0.0.1], reload: { signal: HUP, pidFile: daemon.pid } }\n`,
    );
    const pki = path.join(dir, "pki");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki, "--reissue", "web"])).code, 0);
    for (let i = 0; i < 100 && lines(hups).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(lines(hups), ["hup", "hup"]);
    assert.equal(record(pki).hooks[0]!.command, `kill -HUP $(cat ${path.join(dir, "daemon.pid")})`);
    // The daemon dies; its pid file stays behind.
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const r = await runCli(["apply", "-f", file, "--pki", pki, "--reissue", "web"]);
    assert.equal(r.code, 3);
    assert.match(
      r.err,
      new RegExp(
        `SIGHUP to ${child.pid} from .*daemon\\.pid: no process ${child.pid} is running \\(a stale pid file\\?\\)`,
      ),
    );
  });
});
