/**
 * Renewal without a person: a real nginx (master and workers, as deployed) serves a mtlskit
 * certificate; `mtlskit apply --reissue` with the service's `reload: { signal: HUP, pidFile }`
 * makes nginx serve the new certificate on new connections, with no restart, and `--no-reload`
 * proves it is the hook that did it. The shipped systemd units (renew, and the agent's) pass `systemd-analyze verify`.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import * as tls from "node:tls";
import {
  exec,
  freePort,
  makePki,
  mtlskit,
  need,
  nginxFrame,
  REPO,
  startServer,
  stopAll,
  subdir,
  waitFor,
  waitForPort,
  type Pki,
  type Server,
} from "./harness.ts";

let pki: Pki;
let nginx: Server;
let port: number;
let pidFile: string;

/** servedSerial dials nginx (verifying its certificate against the bundle) and returns the serial it presented. */
function servedSerial(): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = pki.svc("web");
    const socket = tls.connect(
      {
        host: "127.0.0.1",
        port,
        ca: readFileSync(s.ca),
        cert: readFileSync(pki.svc("job").cert),
        key: readFileSync(pki.svc("job").key),
        timeout: 5000,
      },
      () => {
        resolve(socket.getPeerX509Certificate()!.serialNumber);
        socket.destroy();
      },
    );
    socket.once("error", reject);
    socket.once("timeout", () => socket.destroy(new Error("timed out")));
  });
}
const fileSerial = () => new X509Certificate(readFileSync(pki.svc("web").cert)).serialNumber;
const apply = (...extra: string[]) =>
  exec(process.execPath, mtlskit(["apply", "-f", pki.file, "--pki", pki.pki, ...extra]), {
    cwd: REPO,
    timeoutMs: 60_000,
  });

describe("renewal: apply re-issues and reloads a real nginx through its hook", { timeout: 120_000 }, () => {
  before(async () => {
    port = await freePort();
    const dir = subdir("renewal-nginx");
    pidFile = path.join(dir, "nginx.pid");
    pki = await makePki(
      "renewal",
      `version: 1
cluster: renew
services:
  web: { usage: server, addresses: [127.0.0.1], reload: { signal: HUP, pidFile: ${JSON.stringify(pidFile)} } }
  job: { usage: client }
connections:
  - { from: job, to: web, address: 127.0.0.1 }
`,
    );
    const s = pki.svc("web");
    const conf = path.join(dir, "nginx.conf");
    const p = (f: string) => path.join(dir, f);
    // Master and workers as deployed (HUP is the master's reload); workers as root so the run
    // folder's 0700 temp paths stay usable, and nothing here depends on another user.
    writeFileSync(
      conf,
      nginxFrame(
        dir,
        p("error.log"),
        `  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${s.cert};
    ssl_certificate_key ${s.key};
    ssl_client_certificate ${s.ca};
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { return 200 "ok\\n"; }
  }`,
        { head: "user root;\nworker_processes 1;\n", pid: pidFile },
      ),
    );
    const args = ["-p", dir, "-c", conf, "-e", p("error.log"), "-g", "daemon off;"];
    const t = exec(need("nginx"), ["-t", ...args]);
    assert.equal(t.code, 0, t.out);
    nginx = startServer("renewal-nginx", need("nginx"), args);
    await waitForPort(port, nginx);
    await waitFor(
      "nginx's pid file",
      () => {
        try {
          return readFileSync(pidFile, "utf8").trim() === String(nginx.child.pid);
        } catch {
          return false;
        }
      },
      10_000,
      nginx,
    );
  });
  after(stopAll);

  it("ok/nginx serves the certificate apply issued", async () => {
    assert.equal(await servedSerial(), fileSerial());
  });

  it("ok/--reissue with --no-reload writes a new certificate, but nginx keeps serving the old one (nobody told it)", async () => {
    const old = await servedSerial();
    const r = apply("--reissue", "web", "--no-reload");
    assert.equal(r.code, 0, r.out);
    assert.notEqual(fileSerial(), old);
    assert.equal(await servedSerial(), old);
  });

  it("ok/the next apply owes web its reload: it sends SIGHUP, and new connections get the new certificate without a restart", async () => {
    const before = nginx.child.pid;
    const r = apply();
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, new RegExp(`Reload web: kill -HUP \\$\\(cat ${pidFile.replace(/[.]/g, "\\.")}\\): ok`));
    await waitFor(
      "nginx serving the renewed certificate",
      async () => (await servedSerial()) === fileSerial(),
      10_000,
      nginx,
    );
    assert.equal(nginx.exited, undefined);
    assert.equal(nginx.child.pid, before);
  });

  it("ok/a later --reissue reloads in the same run", async () => {
    const old = await servedSerial();
    const r = apply("--reissue", "web");
    assert.equal(r.code, 0, r.out);
    await waitFor(
      "nginx serving the renewed certificate",
      async () => (await servedSerial()) === fileSerial(),
      10_000,
      nginx,
    );
    assert.notEqual(fileSerial(), old);
  });
});

describe("renewal: the shipped systemd units", { timeout: 60_000 }, () => {
  it("ok/systemd-analyze verify accepts mtlskit-renew.service and mtlskit-renew.timer, without a warning", () => {
    const dir = subdir("systemd-units");
    const units = path.join(REPO, "examples", "systemd");
    // The units name /usr/local/bin/mtlskit (npm install -g); verify needs an executable there.
    const service = readFileSync(path.join(units, "mtlskit-renew.service"), "utf8").replaceAll(
      "/usr/local/bin/mtlskit",
      path.join(REPO, "bin", "mtlskit.js"),
    );
    assert.notEqual(service, readFileSync(path.join(units, "mtlskit-renew.service"), "utf8"));
    writeFileSync(path.join(dir, "mtlskit-renew.service"), service);
    copyFileSync(path.join(units, "mtlskit-renew.timer"), path.join(dir, "mtlskit-renew.timer"));
    const r = exec(need("systemd-analyze"), [
      "verify",
      path.join(dir, "mtlskit-renew.service"),
      path.join(dir, "mtlskit-renew.timer"),
    ]);
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out.trim(), "", r.out);
  });
  it("ok/systemd-analyze verify accepts mtlskit-agent.service (the online CA's agent), without a warning", () => {
    const dir = subdir("systemd-agent");
    const units = path.join(REPO, "examples", "systemd");
    const text = readFileSync(path.join(units, "mtlskit-agent.service"), "utf8");
    const service = text.replaceAll("/usr/local/bin/mtlskit", path.join(REPO, "bin", "mtlskit.js"));
    assert.notEqual(service, text);
    assert.match(text, /^Restart=on-failure$/m);
    assert.match(text, /^ProtectSystem=strict$/m);
    writeFileSync(path.join(dir, "mtlskit-agent.service"), service);
    const r = exec(need("systemd-analyze"), ["verify", path.join(dir, "mtlskit-agent.service")]);
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out.trim(), "", r.out);
  });
  it("refused/systemd-analyze verify does flag a misspelt key (the check can fail)", () => {
    const dir = subdir("systemd-mutant");
    const units = path.join(REPO, "examples", "systemd");
    const service = readFileSync(path.join(units, "mtlskit-renew.service"), "utf8")
      .replaceAll("/usr/local/bin/mtlskit", path.join(REPO, "bin", "mtlskit.js"))
      .replace("Type=oneshot", "Typ=oneshot");
    writeFileSync(path.join(dir, "mtlskit-renew.service"), service);
    const r = exec(need("systemd-analyze"), ["verify", path.join(dir, "mtlskit-renew.service")]);
    assert.match(r.out, /Unknown key 'Typ' in section \[Service\]/);
  });
});
