/**
 * Revocation interop: the CRL apply signs after `mtlskit revoke` is judged by programs that share
 * no code with mtlskit.
 *
 * - openssl: `openssl verify -crl_check -CAfile ca.pem -CRLfile crl.pem` refuses the revoked
 *   client certificate ("certificate revoked") and accepts the other client's.
 * - nginx 1.22 (OpenSSL 3) with `ssl_crl` as `mtlskit config nginx` writes it: the revoked client
 *   gets 400 and the error log says "certificate revoked"; the other client, and the revoked
 *   service's re-issued certificate, get 200.
 */
import assert from "node:assert/strict";
import { copyFileSync, readFileSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { renderConfig, tlsPaths } from "../../src/config/index.ts";
import { apply } from "../../src/plan/apply.ts";
import { revoke } from "../../src/plan/revoke.ts";
import {
  exec,
  freePort,
  makePki,
  need,
  nginxFrame,
  startServer,
  subdir,
  waitForPort,
  type Pki,
  type Server,
} from "./harness.ts";

const MANIFEST = `version: 1
cluster: revoked
services:
  web: { usage: server, addresses: [127.0.0.1] }
  good: { usage: client }
  bad: { usage: client }
connections:
  - { from: good, to: web }
  - { from: bad, to: web }
`;

let pki: Pki;
/** revoked holds bad's certificate and key as they were before the revocation (apply re-issues bad). */
let revoked: { cert: string; key: string };

before(async () => {
  pki = await makePki("revocation", MANIFEST);
  const keep = subdir("revocation-old-bad");
  revoked = { cert: path.join(keep, "cert.pem"), key: path.join(keep, "key.pem") };
  copyFileSync(pki.svc("bad").cert, revoked.cert);
  copyFileSync(pki.svc("bad").key, revoked.key);
  revoke(pki.loaded, pki.pki, "bad", { reason: "keyCompromise" });
  await apply(pki.loaded, pki.pki, { hooks: false });
});

describe("openssl verify -crl_check", () => {
  const verify = (cert: string) =>
    exec(need("openssl"), [
      "verify",
      "-crl_check",
      "-purpose",
      "sslclient",
      "-CAfile",
      path.join(pki.pki, "ca/ca.pem"),
      "-CRLfile",
      path.join(pki.pki, "ca/crl.pem"),
      cert,
    ]);

  it("fail/the revoked client certificate: certificate revoked", () => {
    const r = verify(revoked.cert);
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /certificate revoked/);
  });

  it("ok/the other client and bad's re-issued certificate verify", () => {
    for (const cert of [pki.svc("good").cert, pki.svc("bad").cert]) {
      const r = verify(cert);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /: OK/);
    }
  });
});

describe("nginx with ssl_crl", () => {
  let nginx: Server;
  let port: number;
  let errorLog: string;

  before(async () => {
    port = await freePort();
    const dir = subdir("revocation-nginx");
    errorLog = path.join(dir, "error.log");
    // The directives `mtlskit config nginx --service web` writes, with our port.
    const web = pki.loaded.manifest.services.find((s) => s.name === "web")!;
    const snippet = renderConfig("nginx", {
      manifest: pki.loaded.manifest,
      service: web,
      paths: tlsPaths(web, { layout: "pki", dir: pki.pki }),
      pgRoles: {},
    }).text.replace(/^listen .*$/m, `listen 127.0.0.1:${port} ssl;`);
    assert.match(snippet, /^ssl_crl .*ca\/crl\.pem;/m);
    const conf = path.join(dir, "nginx.conf");
    writeFileSync(
      conf,
      nginxFrame(
        dir,
        errorLog,
        `  server {
${snippet}
    location / { return 200 "verify=$ssl_client_verify\\n"; }
  }`,
      ),
    );
    const args = ["-p", dir, "-c", conf, "-e", errorLog, "-g", "daemon off; master_process off;"];
    const t = exec(need("nginx"), ["-t", ...args]);
    assert.equal(t.code, 0, `nginx -t refused ${conf}:\n${t.out}`);
    nginx = startServer("revocation-nginx", need("nginx"), args);
    await waitForPort(port, nginx);
  });
  after(async () => nginx?.stop());

  const curl = (cert: string, key: string) => {
    const mark = statSync(errorLog).size;
    const r = exec(need("curl"), [
      "-sS",
      "--max-time",
      "10",
      "--cacert",
      path.join(pki.pki, "ca/ca.pem"),
      "--cert",
      cert,
      "--key",
      key,
      "-w",
      "\n%{http_code}",
      `https://127.0.0.1:${port}/`,
    ]);
    const lines = r.stdout.split("\n");
    return {
      code: r.code,
      status: Number(lines.pop()),
      body: lines.join("\n"),
      log: readFileSync(errorLog).subarray(mark).toString("utf8"),
      stderr: r.stderr,
    };
  };

  it("fail/the revoked client: 400, and nginx logs certificate revoked", () => {
    const a = curl(revoked.cert, revoked.key);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.status, 400, a.body);
    assert.match(a.log, /certificate revoked/);
  });

  it("ok/the other client and bad's re-issued certificate: 200 verify=SUCCESS", () => {
    for (const name of ["good", "bad"]) {
      const a = curl(pki.svc(name).cert, pki.svc(name).key);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(a.status, 200, a.body);
      assert.equal(a.body.trim(), "verify=SUCCESS");
    }
  });
});
