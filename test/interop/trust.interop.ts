/**
 * trust interop: `mtlskit trust install` for real on Debian (CI runs this as root). A TLS server
 * on 127.0.0.1 presents an mtlskit server certificate; the judges use only their default trust
 * (no --cacert, no -CAfile):
 *
 * - curl (`--resolve NAME:PORT:127.0.0.1`, OpenSSL 3 reading /etc/ssl/certs/ca-certificates.crt),
 * - `openssl s_client -verify_return_error -verify_hostname NAME` (OpenSSL's default store),
 * - NSS's `vfychain -u 1` (an SSL server chain) against the NSS database install changed
 *   (`--nssdb`, a fresh one under the run directory: the dev machine's ~/.pki/nssdb is never
 *   touched).
 *
 * Each refuses the server before install, accepts it after install, and refuses it again after
 * uninstall; `trust status` agrees at each step (exit 1, 0, 1). A second install changes nothing.
 * Uninstall leaves no link to the CA in /etc/ssl/certs (no dangling NAME.pem or hash link), and
 * the system bundle's SHA-256 at the end equals the one update-ca-certificates makes of the starting
 * store (regenerated into a copy of /etc/ssl/certs under the run directory before install). That
 * is the start's own SHA-256 on a machine whose bundle is the tool's output; a machine whose
 * bundle was edited by hand (a CA appended to the file) gets it rewritten by any run of the tool,
 * mtlskit's or a package's, so the start's bytes are not a promise anyone can keep. Whatever happens, `after`
 * removes the anchor file and rebuilds the store, so the machine is left as found. The test
 * refuses to start if the anchor file already exists (someone else's state is not ours to clobber).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { runCli } from "../helpers/cli.ts";
import { exec, freePort, makePki, need, startServer, subdir, waitForPort, type Pki, type Server } from "./harness.ts";

const CLUSTER = "interop-trust";
const ENTRY = `mtlskit-${CLUSTER}`;
const ANCHOR = `/usr/local/share/ca-certificates/${ENTRY}.crt`;
const BUNDLE = "/etc/ssl/certs/ca-certificates.crt";
const CERTS_DIR = "/etc/ssl/certs";
const NAME = "web.trust.test";

const MANIFEST = `version: 1
cluster: ${CLUSTER}
identity: { uri: "spiffe://{cluster}.test/{role}/{name}" }
ca: { key: ecdsa-p256, validity: 1y, subject: { CN: mtlskit interop trust CA } }
defaults: { key: ecdsa-p256, validity: 30d, renewBefore: 7d }
services:
  web: { usage: server, addresses: [${NAME}, 127.0.0.1] }
`;

/** A TLS server in its own process (the judges run synchronously, so it cannot share this one's event loop). */
const SERVER_JS = `
const tls = require("node:tls"), fs = require("node:fs");
const [cert, key, port] = process.argv.slice(1);
tls.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (s) => {
  s.on("error", () => {});
  s.once("data", () => s.end("HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\nConnection: close\\r\\n\\r\\nok\\n"));
}).on("tlsClientError", () => {}).listen(Number(port), "127.0.0.1");
`;

const sha256File = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");

/** ourLinks lists entries of /etc/ssl/certs that are, or point at, this CA's entry (dangling or not). */
function ourLinks(): string[] {
  return readdirSync(CERTS_DIR).filter((n) => {
    if (n.includes(ENTRY)) return true;
    try {
      return readlinkSync(path.join(CERTS_DIR, n)).includes(ENTRY);
    } catch {
      return false; // not a symlink
    }
  });
}

/**
 * regenerated runs update-ca-certificates --fresh on a copy of /etc/ssl/certs (with no hooks) and
 * returns the SHA-256 of the bundle it writes there: the system store is only read.
 */
function regenerated(): string {
  const copy = path.join(subdir("trust-regen"), "certs");
  const hooks = subdir("trust-regen-hooks");
  const cp = exec("cp", ["-a", CERTS_DIR, copy]);
  assert.equal(cp.code, 0, cp.out);
  const r = exec(need("update-ca-certificates"), ["--fresh", "--etccertsdir", copy, "--hooksdir", hooks], {
    timeoutMs: 180_000,
  });
  assert.equal(r.code, 0, r.out);
  return sha256File(path.join(copy, "ca-certificates.crt"));
}

/** Clean environment for the judges: nothing may point them at a CA file. */
const NO_CA_ENV = {
  SSL_CERT_FILE: undefined,
  SSL_CERT_DIR: undefined,
  CURL_CA_BUNDLE: undefined,
  REQUESTS_CA_BUNDLE: undefined,
};

describe("trust: install into Debian's system store and NSS, judged by curl, openssl s_client and vfychain", () => {
  let pki: Pki;
  let server: Server;
  let port: number;
  let nssdb: string;
  let startSha: string;
  /** What update-ca-certificates --fresh makes of the starting store: the bundle uninstall must leave. */
  let regenSha: string;
  let args: string[];

  before(async () => {
    for (const t of ["update-ca-certificates", "certutil", "vfychain", "curl", "openssl"]) need(t);
    assert.equal(
      process.getuid?.(),
      0,
      "the trust interop test changes the system trust store: run it as root (CI does)",
    );
    assert.ok(
      !existsSync(ANCHOR),
      `${ANCHOR} exists before the test: remove it (mtlskit trust uninstall) first; the test will not clobber it`,
    );
    startSha = sha256File(BUNDLE);
    regenSha = regenerated();
    if (regenSha !== startSha)
      console.log(
        `# trust: ${BUNDLE} at start is not update-ca-certificates' own output (edited by hand?); uninstall is held to its regeneration`,
      );
    pki = await makePki("trust", MANIFEST);
    args = ["-f", pki.file, "--pki", pki.pki];
    nssdb = subdir("nssdb");
    const made = exec(need("certutil"), ["-N", "-d", `sql:${nssdb}`, "--empty-password"]);
    assert.equal(made.code, 0, made.out);
    port = await freePort();
    const web = pki.svc("web");
    server = startServer("trust-web", process.execPath, ["-e", SERVER_JS, web.cert, web.key, String(port)]);
    await waitForPort(port, server);
  });

  after(async () => {
    await server?.stop();
    // Whatever happened above: take the CA out of the store again (idempotent when already out).
    const dirty = () => existsSync(ANCHOR) || ourLinks().length > 0;
    if (dirty() && args) await runCli(["trust", "uninstall", ...args, "--nssdb", nssdb]);
    if (dirty()) {
      // The command itself failed to clean up: do it the plain way, so the machine is left as found.
      exec("rm", ["-f", ANCHOR]);
      exec(need("update-ca-certificates"), ["--fresh"], { timeoutMs: 180_000 });
    }
  });

  const curl = () =>
    exec(
      need("curl"),
      ["-sS", "--max-time", "10", "--resolve", `${NAME}:${port}:127.0.0.1`, `https://${NAME}:${port}/`],
      { env: NO_CA_ENV },
    );
  const sClient = () =>
    exec(
      need("openssl"),
      [
        "s_client",
        "-connect",
        `127.0.0.1:${port}`,
        "-servername",
        NAME,
        "-verify_return_error",
        "-verify_hostname",
        NAME,
        "-brief",
      ],
      { input: "", env: NO_CA_ENV, timeoutMs: 15_000 },
    );
  const vfychain = () => exec(need("vfychain"), ["-d", `sql:${nssdb}`, "-p", "-u", "1", "-a", pki.svc("web").cert]);
  const status = () => runCli(["trust", "status", ...args, "--nssdb", nssdb]);

  /** refused asserts every judge refuses the server and status says "not installed". */
  async function refused(when: string): Promise<void> {
    const c = curl();
    assert.equal(c.code, 60, `${when}: curl should refuse the certificate (exit 60), got ${c.code}: ${c.out}`);
    assert.match(c.stderr, /unable to get local issuer certificate/);
    const s = sClient();
    assert.notEqual(s.code, 0, `${when}: openssl s_client should fail: ${s.out}`);
    assert.match(s.out, /unable to get local issuer certificate/);
    const v = vfychain();
    assert.notEqual(v.code, 0, `${when}: vfychain should refuse: ${v.out}`);
    assert.match(v.out, /Chain is bad/);
    const st = await status();
    assert.equal(st.code, 1, `${when}: trust status should exit 1:\n${st.out}${st.err}`);
    assert.match(st.out, /system\s+absent/);
    assert.match(st.out, /nss\s+absent/);
  }

  /** accepted asserts every judge accepts the server with the default store. */
  async function accepted(when: string): Promise<void> {
    const c = curl();
    assert.equal(c.code, 0, `${when}: curl should succeed without --cacert: ${c.out}`);
    assert.equal(c.stdout, "ok\n");
    const s = sClient();
    assert.equal(s.code, 0, `${when}: openssl s_client should verify: ${s.out}`);
    assert.match(s.out, /Verification: OK/);
    assert.match(s.out, new RegExp(`Verified peername: ${NAME.replace(/\./g, "\\.")}`));
    const v = vfychain();
    assert.equal(v.code, 0, `${when}: vfychain should accept: ${v.out}`);
    assert.match(v.out, /Chain is good/);
    const st = await status();
    assert.equal(st.code, 0, `${when}: trust status should exit 0:\n${st.out}${st.err}`);
    assert.match(st.out, /system\s+installed/);
    assert.match(st.out, /nss\s+installed .* \(trust C,,\)/);
  }

  it("ok/before install: curl, openssl s_client and vfychain refuse the server; status exits 1", async () => {
    await refused("before install");
  });

  it("ok/a dry run changes nothing and names the exact file and commands", async () => {
    const r = await runCli(["trust", "install", ...args, "--nssdb", nssdb, "--dry-run"]);
    assert.equal(r.code, 0, r.err);
    assert.match(
      r.out,
      new RegExp(
        `install -m 0644 ${pki.pki.replace(/[/.]/g, "\\$&")}/ca/ca\\.pem ${ANCHOR.replace(/[/.]/g, "\\$&")}\\n  update-ca-certificates\\n  certutil -d sql:\\S+ -A -t C,, -n ${ENTRY} -i ${ANCHOR.replace(/[/.]/g, "\\$&")}\\n`,
      ),
    );
    assert.ok(!existsSync(ANCHOR));
    assert.equal(sha256File(BUNDLE), startSha);
  });

  it("ok/install: the anchor file is the CA (0644), and every judge accepts the server with its default store", async () => {
    const r = await runCli(["trust", "install", ...args, "--nssdb", nssdb]);
    assert.equal(r.code, 0, `${r.out}${r.err}`);
    assert.match(r.out, /Installed\./);
    assert.equal(statSync(ANCHOR).mode & 0o777, 0o644);
    assert.equal(readFileSync(ANCHOR, "utf8"), readFileSync(path.join(pki.pki, "ca", "ca.pem"), "utf8"));
    assert.notEqual(sha256File(BUNDLE), regenSha);
    await accepted("after install");
  });

  it("ok/install again changes nothing (already installed)", async () => {
    const sha = sha256File(BUNDLE);
    const r = await runCli(["trust", "install", ...args, "--nssdb", nssdb]);
    assert.equal(r.code, 0, `${r.out}${r.err}`);
    assert.match(r.out, /already installed/);
    assert.doesNotMatch(r.out, /update-ca-certificates/);
    assert.equal(sha256File(BUNDLE), sha);
  });

  it("ok/uninstall: no file or link is left, every judge refuses again, and the bundle is byte-identical to update-ca-certificates' own of the start", async () => {
    const r = await runCli(["trust", "uninstall", ...args, "--nssdb", nssdb]);
    assert.equal(r.code, 0, `${r.out}${r.err}`);
    assert.ok(!existsSync(ANCHOR));
    assert.deepEqual(
      ourLinks(),
      [],
      "no /etc/ssl/certs entry names or points at the CA (a plain update-ca-certificates would leave two)",
    );
    assert.equal(
      sha256File(BUNDLE),
      regenSha,
      "the system bundle is what update-ca-certificates makes of the store before install",
    );
    await refused("after uninstall");
  });

  it("ok/uninstall again: nothing to remove, exit 0", async () => {
    const r = await runCli(["trust", "uninstall", ...args, "--nssdb", nssdb]);
    assert.equal(r.code, 0, `${r.out}${r.err}`);
    assert.match(r.out, /nothing to remove/);
    assert.equal(sha256File(BUNDLE), regenSha);
  });
});
