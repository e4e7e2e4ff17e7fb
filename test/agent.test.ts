/**
 * The agent (src/agent/): its key and CSR judged by openssl, the --fingerprint bootstrap against a
 * real node:tls server presenting an apply-issued chain (and refusing a wrong fingerprint, a chain
 * without the root, a foreign chain, a wrong name, an expired chain, with nothing sent), the layout
 * writer (modes, fileSource reads it), the schedule as pure functions, the reload hook, and the
 * CLI's flags and --status. The exchanges with a real `mtlskit serve` are in the "with the server"
 * block below. Loopback only, every wait bounded, everything closed in `after`.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import * as tls from "node:tls";
import {
  agentSource,
  BACKOFF,
  backoffDelay,
  bundleDigests,
  type Clock,
  createAgent,
  bootstrapTrust,
  createCaClient,
  fileStore,
  judgeBootstrapChain,
  newKeyAndCsr,
  parseFingerprint,
  RENEW_AT,
  renewAt,
  runReloadCommand,
  statusOf,
  tokenId,
  type AgentState,
} from "../src/agent/index.ts";
import { authorizeAny, clientOptions, createMtlsServer, fileSource } from "../src/service/index.ts";
import { runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { forge } from "./helpers/forge.ts";
import { type OnlineCa, startOnlineCa } from "./helpers/online.ts";

/** A PKI made by apply: `srv` is a server certificate for 127.0.0.1 and localhost; `other` a second CA's. */
const MANIFEST = `version: 1
cluster: agenttest
ca:
  key: ecdsa-p256
  validity: 1y
  subject: { CN: Agent Test CA }
defaults:
  key: ecdsa-p256
  validity: 30d
  renewBefore: 10d
services:
  srv:
    usage: server
    addresses: [127.0.0.1, localhost]
`;

const fpOf = (pem: string) => new X509Certificate(pem).fingerprint256.replace(/:/g, "").toLowerCase();
const derOf = (pem: string) => new X509Certificate(pem).raw;

let pki: string;
let other: string;
let caPem: string;
let srvCert: string;
let srvKey: string;

before(async () => {
  const dir = tempDir("mtlskit-agent-");
  const file = writeManifest(dir, MANIFEST);
  pki = path.join(dir, "pki");
  other = path.join(dir, "other");
  for (const p of [pki, other]) {
    const r = await runCli(["apply", "-f", file, "--pki", p]);
    assert.equal(r.code, 0, r.err);
  }
  caPem = readFileSync(path.join(pki, "ca/ca.pem"), "utf8");
  srvCert = readFileSync(path.join(pki, "services/srv/cert.pem"), "utf8");
  srvKey = readFileSync(path.join(pki, "services/srv/key.pem"), "utf8");
});

describe("agent: key and CSR", () => {
  for (const type of ["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-2048"] as const) {
    it(`ok/${type}: openssl req -verify accepts the CSR, CN is the service, the key is the CSR's`, () => {
      const dir = tempDir();
      const { keyPem, csrPem } = newKeyAndCsr("web", type);
      writeFileSync(path.join(dir, "k.pem"), keyPem);
      writeFileSync(path.join(dir, "r.csr"), csrPem);
      const text = execFileSync(
        "openssl",
        ["req", "-in", path.join(dir, "r.csr"), "-noout", "-verify", "-subject", "-pubkey"],
        {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      assert.match(text, /subject=CN\s*=\s*web/);
      const pub = execFileSync("openssl", ["pkey", "-in", path.join(dir, "k.pem"), "-pubout"], { encoding: "utf8" });
      assert.ok(text.includes(pub.trim()), "the CSR carries the key's public half");
    });
  }
  it("ok/every call makes a new key", () => {
    assert.notEqual(newKeyAndCsr("web", "ecdsa-p256").keyPem, newKeyAndCsr("web", "ecdsa-p256").keyPem);
  });
});

/** A TLS server on 127.0.0.1 presenting `cert` (PEM chain); it records whether any byte of application data arrived. */
async function tlsServer(cert: string, key: string) {
  const received: Buffer[] = [];
  const server = tls.createServer({ cert, key }, (s) => {
    s.on("data", (d: Buffer) => received.push(d));
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: new URL(`https://127.0.0.1:${port}`),
    received,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe("agent: the --fingerprint bootstrap against a real TLS server", () => {
  let withRoot: Awaited<ReturnType<typeof tlsServer>>;
  let withoutRoot: Awaited<ReturnType<typeof tlsServer>>;
  before(async () => {
    withRoot = await tlsServer(srvCert + caPem, srvKey);
    withoutRoot = await tlsServer(srvCert, srvKey);
  });
  after(async () => {
    await withRoot.close();
    await withoutRoot.close();
  });

  it("ok/the right fingerprint (colons, upper case) gives the root; nothing was sent on the socket", async () => {
    const fp = new X509Certificate(caPem).fingerprint256; // AB:CD:... as openssl prints it
    const root = await bootstrapTrust(withRoot.url, parseFingerprint(fp));
    assert.equal(fpOf(root), fpOf(caPem));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(Buffer.concat(withRoot.received).length, 0, "no application data on the bootstrap socket");
  });
  it("fail/a wrong fingerprint is refused, naming the fix; nothing sent", async () => {
    const wrong = fpOf(readFileSync(path.join(other, "ca/ca.pem"), "utf8"));
    await assert.rejects(bootstrapTrust(withRoot.url, wrong), (e: Error & { code?: string }) => {
      assert.equal(e.code, "tls");
      assert.match(e.message, /no certificate in it has that SHA-256/);
      assert.match(e.message, /fix: check --fingerprint/);
      return true;
    });
    assert.equal(Buffer.concat(withRoot.received).length, 0);
  });
  it("fail/a server that does not send its root cannot be bootstrapped (says so)", async () => {
    await assert.rejects(bootstrapTrust(withoutRoot.url, fpOf(caPem)), /the server must send its root in its chain/);
  });
  it("fail/a client with the fingerprint makes no request after a refused bootstrap", async () => {
    const client = createCaClient({ server: withRoot.url.origin, fingerprint: "00".repeat(32) });
    await assert.rejects(client.bundle(), /not trusted by --fingerprint/);
    client.close();
    assert.equal(Buffer.concat(withRoot.received).length, 0);
  });
  it("fail/parseFingerprint refuses what is not 64 hex digits", () => {
    assert.throws(() => parseFingerprint("abc"), /64 hex digits/);
  });
});

describe("agent: a server that is not mtlskit serve", () => {
  let server: https.Server;
  let url: string;
  before(async () => {
    server = https.createServer({ cert: srvCert, key: srvKey }, (req, res) => {
      if (req.url === "/v1/bundle") res.writeHead(200, { "content-type": "text/html" }).end("<html>hello</html>");
      else res.writeHead(200).end("x".repeat(2 * 1024 * 1024));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
  it("fail/a reply that is not JSON is named as such (bad-reply), not a crash", async () => {
    const client = createCaClient({ server: url, ca: caPem });
    await assert.rejects(client.bundle(), (e: Error & { code?: string }) => {
      assert.equal(e.code, "bad-reply");
      assert.match(e.message, /not JSON \(is --server an mtlskit serve\?\)/);
      return true;
    });
    client.close();
  });
  it("fail/a reply over 1 MiB is cut off (bad-reply)", async () => {
    const client = createCaClient({ server: url, ca: caPem });
    await assert.rejects(client.enroll("web", "t", "csr"), /replied with more than 1048576 bytes/);
    client.close();
  });
  it("fail/a server whose certificate another CA issued fails the TLS verification (code tls), with the fix", async () => {
    const client = createCaClient({ server: url, ca: readFileSync(path.join(other, "ca/ca.pem"), "utf8") });
    await assert.rejects(client.bundle(), (e: Error & { code?: string }) => {
      assert.equal(e.code, "tls");
      assert.match(e.message, /fix: give the CA's bundle with --ca/);
      return true;
    });
    client.close();
  });
});

describe("agent: judgeBootstrapChain (each rule)", () => {
  const now = Date.now();
  const leaf = () => derOf(srvCert);
  const root = () => derOf(caPem);
  it("ok/leaf + root, pinned root, IP and DNS names", () => {
    assert.equal(fpOf(judgeBootstrapChain([leaf(), root()], fpOf(caPem), "127.0.0.1", now)), fpOf(caPem));
    assert.equal(fpOf(judgeBootstrapChain([leaf(), root()], fpOf(caPem), "localhost", now)), fpOf(caPem));
  });
  it("fail/a name the leaf does not carry", () => {
    assert.throws(
      () => judgeBootstrapChain([leaf(), root()], fpOf(caPem), "ca.example", now),
      /does not name ca\.example/,
    );
  });
  it("fail/outside the validity", () => {
    assert.throws(
      () => judgeBootstrapChain([leaf(), root()], fpOf(caPem), "127.0.0.1", now + 400 * 86_400_000),
      /is not valid now/,
    );
  });
  it("fail/a leaf of another CA presented beside the pinned root (the link's signature)", () => {
    const foreign = derOf(readFileSync(path.join(other, "services/srv/cert.pem"), "utf8"));
    assert.throws(
      () => judgeBootstrapChain([foreign, root()], fpOf(caPem), "127.0.0.1", now),
      /is not signed by the next certificate/,
    );
  });
  it("fail/the pinned certificate is not a CA", () => {
    const l = leaf();
    const fp = createHash("sha256").update(l).digest("hex");
    assert.throws(() => judgeBootstrapChain([root(), l], fp, "127.0.0.1", now), /is not a CA/);
  });
  it("fail/a forged CA with the same subject (no signature of the pinned key) is refused", () => {
    const fake = forge({ ca: true, cn: "Agent Test CA" });
    const fakeLeaf = forge({ issuer: fake, cn: "srv", sans: ["IP:127.0.0.1"], eku: ["serverAuth"] });
    assert.throws(() => judgeBootstrapChain([fakeLeaf.der, root()], fpOf(caPem), "127.0.0.1", now), /is not signed/);
  });
});

describe("agent: the schedule (pure)", () => {
  it("ok/renewAt falls between 60% and 2/3 of the lifetime, by the jitter", () => {
    const nb = 1_000_000;
    const na = nb + 60_000;
    assert.equal(renewAt(nb, na, 0), nb + 40_000);
    assert.equal(
      renewAt(nb, na, 0.999999),
      Math.round(nb + 60_000 * RENEW_AT.earliest + 60_000 * (RENEW_AT.latest - RENEW_AT.earliest) * 0.000001),
    );
    for (let i = 0; i < 1000; i++) {
      const t = renewAt(nb, na, Math.random());
      assert.ok(t >= nb + 36_000 && t <= nb + 40_000, String(t));
    }
  });
  it("ok/backoffDelay doubles from the base, with equal jitter, and never exceeds the cap", () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((n) => backoffDelay(n, 0)),
      [500, 1000, 2000, 4000, 8000],
    );
    assert.deepEqual(
      [1, 2, 3].map((n) => backoffDelay(n, 0.999999)),
      [1000, 2000, 4000],
    );
    for (const n of [10, 20, 100, 10_000]) {
      assert.ok(backoffDelay(n, 0.999999) <= BACKOFF.capMs);
      assert.ok(backoffDelay(n, 0) >= BACKOFF.capMs / 2);
    }
    assert.equal(backoffDelay(3, 0.5, { baseMs: 10, capMs: 25 }), Math.round(25 / 2 + (25 / 2) * 0.5)); // 10 * 2^2 = 40, capped at 25
  });
  it("ok/statusOf: enrolling, healthy, failing (error or failed reload), expired", () => {
    const base = { version: 1 as const, service: "web", server: "https://x", failures: 0, updatedAt: "" };
    const held = { ...base, notAfter: new Date(2000).toISOString() };
    assert.equal(statusOf(base, 0), "enrolling");
    assert.equal(statusOf({ ...base, lastError: { code: "unreachable", message: "", at: "" } }, 0), "failing");
    assert.equal(statusOf(held, 1000), "healthy");
    assert.equal(statusOf({ ...held, lastError: { code: "unreachable", message: "", at: "" } }, 1000), "failing");
    assert.equal(statusOf({ ...held, reload: { at: "", ok: false, message: "exit 1" } }, 1000), "failing");
    assert.equal(statusOf(held, 2000), "expired");
  });
  it("ok/tokenId is the token's public id, never its secret", () => {
    const token = `mtk_0123456789abcdef_${"s".repeat(43)}`;
    assert.equal(tokenId(token), "0123456789abcdef");
    assert.ok(!tokenId("whatever-secret").includes("secret"));
  });
});

describe("agent: the layout writer", () => {
  it("ok/key 0600, cert and ca 0644, OUT 0700; fileSource reads exactly this layout and sees each new pair", async () => {
    const out = path.join(tempDir(), "deep", "out");
    const store = fileStore(out);
    const first = store.saveCredentials({ key: srvKey, chain: srvCert, bundle: caPem });
    assert.equal(first.leaf.subjectAttributes.CN, "srv");
    assert.equal(statSync(path.join(out, "key.pem")).mode & 0o777, 0o600);
    assert.equal(statSync(path.join(out, "cert.pem")).mode & 0o777, 0o644);
    assert.equal(statSync(path.join(out, "ca.pem")).mode & 0o777, 0o644);
    assert.equal(statSync(out).mode & 0o777, 0o700);
    const seen: string[] = [];
    const source = fileSource(
      { dir: out },
      { debounceMs: 10, pollMs: 20, onReload: (e) => seen.push(e.current.leaf.serialHex) },
    );
    try {
      const key2 = readFileSync(path.join(other, "services/srv/key.pem"), "utf8");
      const cert2 = readFileSync(path.join(other, "services/srv/cert.pem"), "utf8");
      const second = store.saveCredentials({
        key: key2,
        chain: cert2,
        bundle: readFileSync(path.join(other, "ca/ca.pem"), "utf8"),
      });
      const deadline = Date.now() + 5000;
      while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(seen, [second.leaf.serialHex]);
      assert.equal(source.current().leaf.serialHex, second.leaf.serialHex);
    } finally {
      source.close();
    }
    const state: AgentState = {
      version: 1,
      service: "srv",
      server: "https://127.0.0.1:1",
      status: "healthy",
      failures: 0,
      updatedAt: new Date().toISOString(),
    };
    store.saveState(state);
    assert.deepEqual(store.load().state, state);
    assert.equal(store.load().creds?.leaf.subjectAttributes.CN, "srv");
  });
  it("ok/a kill between the key's rename and the certificate's: a running reader keeps the old pair, a restart finishes the install", () => {
    const out = path.join(tempDir(), "out");
    fileStore(out).saveCredentials({ key: srvKey, chain: srvCert, bundle: caPem });
    const reader = fileSource({ dir: out }, { debounceMs: 10 });
    const key2 = path.join(other, "services/srv/key.pem");
    const cert2 = path.join(other, "services/srv/cert.pem");
    // Renames: agent-pending.json (1), ca.pem (2), key.pem (3), cert.pem (4): killed at the third, the key is new and the certificate old.
    const script = `import { fileStore } from ${JSON.stringify(path.resolve("src/agent/store.ts"))};
import { readFileSync } from "node:fs";
fileStore(${JSON.stringify(out)}).saveCredentials({ key: readFileSync(${JSON.stringify(key2)}, "utf8"), chain: readFileSync(${JSON.stringify(cert2)}, "utf8"), bundle: readFileSync(${JSON.stringify(path.join(other, "ca/ca.pem"))}, "utf8") });`;
    let signal: string | undefined;
    try {
      execFileSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
        env: { ...process.env, MTLSKIT_TEST_CRASH_AT: "renamed:3" },
        stdio: "pipe",
        timeout: 30_000,
      });
    } catch (e) {
      signal = (e as { signal?: string }).signal;
    }
    assert.equal(signal, "SIGKILL");
    assert.equal(
      readFileSync(path.join(out, "key.pem"), "utf8"),
      readFileSync(key2, "utf8"),
      "the key was renamed first",
    );
    assert.equal(readFileSync(path.join(out, "cert.pem"), "utf8"), srvCert, "the certificate not yet");
    assert.equal(statSync(path.join(out, "agent-pending.json")).mode & 0o777, 0o600);
    assert.equal(reader.current().cert, srvCert, "the running reader keeps the old pair");
    reader.close();
    const { creds } = fileStore(out).load();
    assert.equal(creds?.cert, readFileSync(cert2, "utf8"), "the restart finished the install");
    assert.throws(() => statSync(path.join(out, "agent-pending.json")), /ENOENT/);
  });
});

describe("agent: the reload hook", () => {
  it("ok/exit 0 with the environment given", async () => {
    const dir = tempDir();
    const r = await runReloadCommand(`echo "$MTLSKIT_SERVICE" > ${dir}/env`, { MTLSKIT_SERVICE: "web" }, 5000);
    assert.deepEqual(r, { ok: true, message: "exit 0" });
    assert.equal(readFileSync(path.join(dir, "env"), "utf8"), "web\n");
  });
  it("fail/a non-zero exit, with its stderr", async () => {
    assert.deepEqual(await runReloadCommand("echo nope >&2; exit 4", {}, 5000), { ok: false, message: "exit 4: nope" });
  });
  it("fail/past its deadline it is killed with what it started", async () => {
    const r = await runReloadCommand("sleep 30 & sleep 30", {}, 200);
    assert.equal(r.ok, false);
    assert.match(r.message, /did not finish within 200 ms/);
  });
});

describe("agent: the CLI without a server", () => {
  it("fail/--ca and --fingerprint together exit 2 naming both", async () => {
    const r = await runCli([
      "agent",
      "--server",
      "https://127.0.0.1:1",
      "--service",
      "web",
      "--out",
      tempDir(),
      "--ca",
      "x",
      "--fingerprint",
      "y",
    ]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--ca and --fingerprint both/);
  });
  it("fail/without --out exits 2", async () => {
    const r = await runCli(["agent", "--server", "https://127.0.0.1:1", "--service", "web"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--out DIR is required/);
  });
  it("fail/an http:// server is refused (exit 2)", async () => {
    const r = await runCli([
      "agent",
      "--server",
      "http://127.0.0.1:1",
      "--service",
      "web",
      "--out",
      tempDir(),
      "--fingerprint",
      "00".repeat(32),
      "--once",
    ]);
    assert.equal(r.code, 2);
    assert.match(r.err, /must be an https:\/\/ URL/);
  });
  it("fail/--once with the server down: exit 3, the state says failing and when it retries; the token is never printed", async () => {
    const out = tempDir();
    const tokenFile = path.join(tempDir(), "token");
    const token = `mtk_0123456789abcdef_${"S".repeat(43)}`;
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const r = await runCli([
      "agent",
      "--server",
      "https://127.0.0.1:1",
      "--service",
      "web",
      "--token-file",
      tokenFile,
      "--out",
      out,
      "--ca",
      path.join(pki, "ca/ca.pem"),
      "--once",
    ]);
    assert.equal(r.code, 3, r.err);
    assert.match(r.err, /cannot reach https:\/\/127\.0\.0\.1:1/);
    assert.ok(!(r.out + r.err).includes("S".repeat(43)));
    const s = JSON.parse(readFileSync(path.join(out, "agent.json"), "utf8")) as AgentState;
    assert.equal(s.status, "failing");
    assert.equal(s.lastError?.code, "unreachable");
    assert.equal(s.failures, 1);
    assert.ok(!JSON.stringify(s).includes("S".repeat(43)));
    const st = await runCli(["agent", "--status", "--out", out]);
    assert.equal(st.code, 1);
    assert.match(st.out, /web is failing/);
  });
  it("fail/--once holding an expired certificate: exit 3, says it cannot be renewed, state expired; no token, no request", async () => {
    const out = tempDir();
    const fca = forge({ ca: true, cn: "Expired Test CA" });
    const leaf = forge({
      issuer: fca,
      cn: "web",
      notBefore: new Date(Date.now() - 2 * 3_600_000),
      notAfter: new Date(Date.now() - 3_600_000),
    });
    fileStore(out).saveCredentials({ key: leaf.key.pem, chain: leaf.pem, bundle: fca.pem });
    const r = await runCli([
      "agent",
      "--server",
      "https://127.0.0.1:1",
      "--service",
      "web",
      "--out",
      out,
      "--ca",
      path.join(pki, "ca/ca.pem"),
      "--once",
    ]);
    assert.equal(r.code, 3, r.err);
    assert.match(r.err, /expired at .* and cannot be renewed, and no bootstrap token was given/);
    assert.match(r.err, /fix: create one on the CA's host \(mtlskit token create web\)/);
    const s = JSON.parse(readFileSync(path.join(out, "agent.json"), "utf8")) as AgentState;
    assert.equal(s.status, "expired");
    assert.equal(s.lastError?.code, "no-token");
    const st = await runCli(["agent", "--status", "--out", out]);
    assert.equal(st.code, 1);
    assert.match(st.out, /web is expired/);
  });
  it("ok/--status: healthy exits 0, expired exits 1 (judged now, not by what the file says)", async () => {
    const out = tempDir();
    const s: AgentState = {
      version: 1,
      service: "web",
      server: "https://127.0.0.1:1",
      status: "healthy",
      serial: "01",
      notBefore: new Date(Date.now() - 60_000).toISOString(),
      notAfter: new Date(Date.now() + 60_000).toISOString(),
      failures: 0,
      updatedAt: new Date().toISOString(),
    };
    writeFileSync(path.join(out, "agent.json"), JSON.stringify(s));
    const ok = await runCli(["agent", "--status", "--out", out, "--json"]);
    assert.equal(ok.code, 0, ok.out);
    assert.equal((JSON.parse(ok.out) as AgentState).status, "healthy");
    const metrics = await runCli(["agent", "--status", "--out", out, "--metrics"]);
    assert.equal(metrics.code, 0, metrics.err);
    assert.match(metrics.out, /^# HELP mtlskit_agent_healthy /m);
    assert.match(metrics.out, /^mtlskit_agent_healthy\{service="web"\} 1$/m);
    assert.ok(
      metrics.out.includes(
        `mtlskit_agent_certificate_not_after_seconds{service="web"} ${Date.parse(s.notAfter!) / 1000}\n`,
      ),
    );
    assert.match(metrics.out, /^mtlskit_agent_consecutive_failures\{service="web"\} 0$/m);
    assert.doesNotMatch(metrics.out, /renew_after/, "absent fields are left out, not 0");
    // promtool, Prometheus' own linter, as the judge of the format.
    execFileSync("promtool", ["check", "metrics"], { input: metrics.out, stdio: ["pipe", "pipe", "pipe"] });
    writeFileSync(
      path.join(out, "agent.json"),
      JSON.stringify({ ...s, notAfter: new Date(Date.now() - 1000).toISOString() }),
    );
    const expired = await runCli(["agent", "--status", "--out", out]);
    assert.equal(expired.code, 1);
    assert.match(expired.out, /web is expired/);
    const down = await runCli(["agent", "--status", "--out", out, "--metrics"]);
    assert.equal(down.code, 1);
    assert.match(down.out, /^mtlskit_agent_healthy\{service="web"\} 0$/m);
  });
  it("fail/--status without agent.json exits 3 naming the file", async () => {
    const r = await runCli(["agent", "--status", "--out", tempDir()]);
    assert.equal(r.code, 3);
    assert.match(r.err, /agent\.json/);
  });
});

/** ONLINE_MANIFEST: two csr services for the exchanges with a real server; `web` with a one-minute ttl. */
const ONLINE_MANIFEST = `version: 1
cluster: agentonline
identity:
  uri: "spiffe://{cluster}.local/{name}"
ca:
  key: ecdsa-p256
  validity: 1y
  subject: { CN: Agent Online CA }
defaults:
  key: ecdsa-p256
  validity: 30d
  renewBefore: 10d
serve:
  maxTtl: 1h
services:
  web:
    usage: dual
    csr: true
    ttl: 1m
    addresses: [127.0.0.1, web.internal]
  api:
    usage: dual
    csr: true
    ttl: 1m
    addresses: [127.0.0.1]
`;

/** s0 is a certificate's serial as the agent writes it: lower-case hex without leading zeros. */
const s0 = (c: X509Certificate) => c.serialNumber.toLowerCase().replace(/^0+/, "");

/** offsetClock is the wall clock moved by `offset.ms`, with timers of at most 50 ms (a loop then looks again at the moved time). */
function offsetClock(offset: { ms: number }): Clock {
  return {
    now: () => Date.now() + offset.ms,
    setTimer(fn, ms) {
      const t = setTimeout(fn, Math.min(ms, 50));
      return () => clearTimeout(t);
    },
  };
}

describe("agent: with the server (startServer on loopback)", () => {
  let ca: OnlineCa;
  let caFile: string;
  before(async () => {
    ca = await startOnlineCa(ONLINE_MANIFEST);
    caFile = path.join(ca.pki, "ca/ca.pem");
  });
  after(async () => {
    await ca?.stop();
  });
  const tokenFileFor = async (service: string) => {
    const f = path.join(tempDir(), "token");
    writeFileSync(f, `${await ca.token(service)}\n`, { mode: 0o600 });
    return f;
  };

  it("ok/--once enrolls: the layout with its modes, the manifest's SANs, a chain openssl verifies, --status 0; a second --once is not due", async () => {
    const out = path.join(tempDir(), "tls");
    const tokenFile = await tokenFileFor("web");
    const token = readFileSync(tokenFile, "utf8").trim();
    const t0 = Date.now();
    const r = await runCli([
      "agent",
      "--server",
      ca.url,
      "--service",
      "web",
      "--token-file",
      tokenFile,
      "--out",
      out,
      "--ca",
      caFile,
      "--once",
      "--reload",
      `echo "$MTLSKIT_SERIAL" > ${out}.reloaded`,
    ]);
    const t1 = Date.now();
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /enrolled web: serial [0-9a-f]+/);
    assert.ok(!(r.out + r.err).includes(token.slice(22)), "the token's secret is never printed");
    assert.equal(statSync(path.join(out, "key.pem")).mode & 0o777, 0o600);
    const cert = new X509Certificate(readFileSync(path.join(out, "cert.pem")));
    assert.match(cert.subjectAltName ?? "", /URI:spiffe:\/\/agentonline\.local\/web/);
    assert.match(cert.subjectAltName ?? "", /IP Address:127\.0\.0\.1/);
    assert.match(cert.subjectAltName ?? "", /DNS:web\.internal/);
    assert.ok(
      cert.checkPrivateKey(createPrivateKey(readFileSync(path.join(out, "key.pem")))),
      "the certificate is for the key made here",
    );
    // The manifest's ttl (1m) from issuance (notBefore is backdated; validTo has whole seconds).
    const end = Date.parse(cert.validTo);
    assert.ok(end >= t0 + 59_000 && end <= t1 + 60_000, `notAfter ${cert.validTo} is one minute after issuance`);
    assert.equal(readFileSync(`${out}.reloaded`, "utf8").trim(), s0(cert), "the reload hook ran with MTLSKIT_SERIAL");
    execFileSync(
      "openssl",
      ["verify", "-x509_strict", "-CAfile", path.join(out, "ca.pem"), path.join(out, "cert.pem")],
      { stdio: "pipe" },
    );
    const s = JSON.parse(readFileSync(path.join(out, "agent.json"), "utf8")) as AgentState;
    assert.equal(s.status, "healthy");
    assert.equal(s.serial, s0(cert));
    assert.ok(!readFileSync(path.join(out, "agent.json"), "utf8").includes(token.slice(22)));
    assert.equal((await runCli(["agent", "--status", "--out", out])).code, 0);
    const again = await runCli([
      "agent",
      "--server",
      ca.url,
      "--service",
      "web",
      "--token-file",
      tokenFile,
      "--out",
      out,
      "--once",
    ]);
    assert.equal(again.code, 0, again.err);
    assert.match(again.out, /not due \(renews after /);
    assert.equal(new X509Certificate(readFileSync(path.join(out, "cert.pem"))).serialNumber, cert.serialNumber);
  });

  it("ok/renewal over mTLS when due: a new key and serial, the old certificate authenticated it; the token is never sent again", async () => {
    const out = path.join(tempDir(), "tls");
    const offset = { ms: 0 };
    const events: string[] = [];
    const agent = createAgent({
      server: ca.url,
      service: "api",
      token: () => undefined,
      ca: readFileSync(caFile, "utf8"),
      store: fileStore(out),
      clock: offsetClock(offset),
      onEvent: (e) => events.push(e.kind),
    });
    try {
      const none = await agent.step();
      assert.equal(none.error?.message.includes("no bootstrap token was given"), true, none.error?.message);
      assert.equal(none.state.status, "failing");
      const token = await ca.token("api");
      const enrolling = createAgent({
        server: ca.url,
        service: "api",
        token: () => token,
        ca: readFileSync(caFile, "utf8"),
        store: fileStore(out),
        clock: offsetClock(offset),
      });
      const first = await enrolling.step();
      await enrolling.stop();
      assert.equal(first.did, "enrolled", first.error?.message);
      const key1 = readFileSync(path.join(out, "key.pem"), "utf8");
      // A new agent on the same OUT (a restart) renews once the clock passes renewAfter.
      const again = createAgent({
        server: ca.url,
        service: "api",
        token: () => token,
        ca: readFileSync(caFile, "utf8"),
        store: fileStore(out),
        clock: offsetClock(offset),
      });
      assert.equal((await again.step()).did, "nothing");
      offset.ms = Date.parse(again.state().renewAfter!) - Date.now() + 10;
      const renewed = await again.step();
      assert.equal(renewed.did, "renewed", renewed.error?.message);
      assert.notEqual(renewed.state.serial, first.state.serial);
      assert.notEqual(readFileSync(path.join(out, "key.pem"), "utf8"), key1, "a new key each renewal");
      assert.equal(renewed.state.enrolledWith, tokenId(token));
      // With the certificate gone, the spent token is not sent again: the agent says so.
      rmSync(path.join(out, "cert.pem"));
      const lost = createAgent({
        server: ca.url,
        service: "api",
        token: () => token,
        ca: readFileSync(caFile, "utf8"),
        store: fileStore(out),
        clock: offsetClock(offset),
      });
      const r = await lost.step();
      assert.match(r.error?.message ?? "", /already spent by this agent/);
      await again.stop();
      await lost.stop();
    } finally {
      await agent.stop();
    }
  });

  it("ok/the server down: exponential backoff in the state, then recovery when it is back", async () => {
    const out = path.join(tempDir(), "tls");
    const offset = { ms: 0 };
    const token = await ca.token("web");
    let down = false;
    const agent = createAgent({
      server: ca.url,
      service: "web",
      token: () => token,
      ca: readFileSync(caFile, "utf8"),
      store: fileStore(out),
      clock: offsetClock(offset),
      random: () => 0,
    });
    try {
      assert.equal((await agent.step()).did, "enrolled");
      offset.ms = Date.parse(agent.state().renewAfter!) - Date.now() + 10;
      await ca.stop();
      down = true;
      const delays: number[] = [];
      for (let i = 1; i <= 3; i++) {
        const r = await agent.step();
        assert.equal(r.error && (r.error as { code?: string }).code, "unreachable", r.error?.message);
        assert.equal(r.state.failures, i);
        assert.equal(r.state.status, "failing");
        delays.push(Date.parse(r.state.nextAttempt!) - Date.parse(r.state.lastError!.at));
      }
      assert.deepEqual(delays, [500, 1000, 2000], "1 s doubling, equal jitter at random 0");
      const state = JSON.parse(readFileSync(path.join(out, "agent.json"), "utf8")) as AgentState;
      assert.equal(state.lastError?.code, "unreachable");
      assert.equal((await runCli(["agent", "--status", "--out", out])).code, 1);
      await ca.restart();
      down = false;
      const back = await agent.step();
      assert.equal(back.did, "renewed", back.error?.message);
      assert.equal(back.state.failures, 0);
      assert.equal(back.state.lastError, undefined);
      assert.equal(back.state.status, "healthy");
    } finally {
      if (down) await ca.restart(); // the later tests need it
      await agent.stop();
    }
  });

  it("fail/an expired certificate cannot renew (the server up, its token spent): the state says expired", async () => {
    const out = path.join(tempDir(), "tls");
    const offset = { ms: 0 };
    const token = await ca.token("web");
    const agent = createAgent({
      server: ca.url,
      service: "web",
      token: () => token,
      ca: readFileSync(caFile, "utf8"),
      store: fileStore(out),
      clock: offsetClock(offset),
    });
    try {
      assert.equal((await agent.step()).did, "enrolled");
      offset.ms = 2 * 60_000;
      const r = await agent.step();
      assert.equal(r.state.status, "expired");
      assert.match(r.error?.message ?? "", /expired at .* and cannot be renewed/);
    } finally {
      await agent.stop();
    }
  });

  it("fail/a wrong --fingerprint: nothing is sent (the token stays unspent), then the right one enrolls with it and keeps the root", async () => {
    const out = path.join(tempDir(), "tls");
    const tokenFile = await tokenFileFor("web");
    const wrong = await runCli([
      "agent",
      "--server",
      ca.url,
      "--service",
      "web",
      "--token-file",
      tokenFile,
      "--out",
      out,
      "--fingerprint",
      "ab".repeat(32),
      "--once",
    ]);
    assert.equal(wrong.code, 3);
    assert.match(wrong.err, /not trusted by --fingerprint abababab/);
    const fp = new X509Certificate(readFileSync(caFile)).fingerprint256;
    const right = await runCli([
      "agent",
      "--server",
      ca.url,
      "--service",
      "web",
      "--token-file",
      tokenFile,
      "--out",
      out,
      "--fingerprint",
      fp,
      "--once",
    ]);
    assert.equal(right.code, 0, right.err);
    assert.ok(
      bundleDigests(readFileSync(path.join(out, "ca.pem"), "utf8")).includes(fpOf(readFileSync(caFile, "utf8"))),
    );
    // From then on ca.pem is the trust: a --once without --ca or --fingerprint is verified against it.
    const later = await runCli(["agent", "--server", ca.url, "--service", "web", "--out", out, "--once"]);
    assert.equal(later.code, 0, later.err);
  });

  it("fail/a key type the manifest does not declare is refused by the server, its fix shown (exit 3)", async () => {
    const out = path.join(tempDir(), "tls");
    const r = await runCli([
      "agent",
      "--server",
      ca.url,
      "--service",
      "web",
      "--token-file",
      await tokenFileFor("web"),
      "--out",
      out,
      "--ca",
      caFile,
      "--key-type",
      "ed25519",
      "--once",
    ]);
    assert.equal(r.code, 3);
    assert.match(r.err, /the server refused the enrollment \(4\d\d [a-z-]+\)/);
    assert.match(r.err, /fix: /);
  });

  it("ok/agentSource: an mTLS server on it handshakes, then renews in-process and onReload tells", async () => {
    const offset = { ms: 0 };
    const reloads: string[] = [];
    const source = await agentSource({
      server: ca.url,
      service: "api",
      token: await ca.token("api"),
      ca: readFileSync(caFile, "utf8"),
      clock: offsetClock(offset),
      onReload: (e) => reloads.push(e.current.leaf.serialHex),
    });
    const server = createMtlsServer(https.createServer, source, { authorize: authorizeAny() }, (_q, s) => s.end("ok"));
    try {
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const port = (server.address() as AddressInfo).port;
      const get = () =>
        new Promise<string>((resolve, reject) => {
          const req = https.request(
            { ...clientOptions(source, { authorize: authorizeAny() }), host: "127.0.0.1", port, agent: false },
            (res) => {
              const serial = (res.socket as tls.TLSSocket).getPeerCertificate().serialNumber;
              res.resume();
              res.on("end", () => resolve(serial));
            },
          );
          req.on("error", reject);
          req.end();
        });
      const first = await get();
      offset.ms = Date.parse(source.state().renewAfter!) - Date.now() + 10;
      const deadline = Date.now() + 10_000;
      while (reloads.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(reloads.length, 1);
      const second = await get();
      assert.notEqual(second.toLowerCase(), first.toLowerCase());
      assert.equal(second.toLowerCase().replace(/^0+/, ""), reloads[0]!.toLowerCase().replace(/^0+/, ""));
    } finally {
      await source.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it("ok/the loop as a process: enrolls, logs without the token, stops on SIGTERM with exit 0", async () => {
    const out = path.join(tempDir(), "tls");
    const tokenFile = await tokenFileFor("api");
    const secret = readFileSync(tokenFile, "utf8").trim().slice(22);
    const argv = [
      "agent",
      "--server",
      ca.url,
      "--service",
      "api",
      "--token-file",
      tokenFile,
      "--out",
      out,
      "--ca",
      caFile,
    ];
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        "--input-type=module",
        "-e",
        `import { main } from ${JSON.stringify(path.resolve("src/cli/main.ts"))}; process.argv = [process.argv[0], "mtlskit", ...${JSON.stringify(argv)}]; await main();`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    try {
      const deadline = Date.now() + 20_000;
      let state: AgentState | undefined;
      while (Date.now() < deadline) {
        try {
          state = JSON.parse(readFileSync(path.join(out, "agent.json"), "utf8")) as AgentState;
          if (state.status === "healthy") break;
        } catch {
          // not written yet
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(state?.status, "healthy", err);
      child.kill("SIGTERM");
      const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r("timeout"), 10_000))]);
      assert.equal(code, 0, err);
      assert.match(err, /enrolled api: serial [0-9a-f]+, valid until .*; renews after /);
      assert.match(err, /api: stopped\./);
      assert.ok(!err.includes(secret), "the token's secret is not logged");
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("fail/a revoked certificate cannot renew: the server's code and fix land in the state; no new certificate", async () => {
    const out = path.join(tempDir(), "tls");
    const offset = { ms: 0 };
    const token = await ca.token("web");
    const agent = createAgent({
      server: ca.url,
      service: "web",
      token: () => token,
      ca: readFileSync(caFile, "utf8"),
      store: fileStore(out),
      clock: offsetClock(offset),
    });
    try {
      const first = await agent.step();
      assert.equal(first.did, "enrolled", first.error?.message);
      const rv = await runCli([
        "revoke",
        first.state.serial!,
        "-f",
        ca.manifest,
        "--pki",
        ca.pki,
        "--reason",
        "keyCompromise",
      ]);
      assert.equal(rv.code, 0, rv.err);
      offset.ms = Date.parse(agent.state().renewAfter!) - Date.now() + 10;
      const r = await agent.step();
      assert.equal(r.did, "nothing");
      assert.equal(r.state.lastError?.code, "cert-revoked", r.error?.message);
      assert.match(r.state.lastError!.message, /the server refused the renewal \(403 cert-revoked\)/);
      assert.equal(r.state.status, "failing");
      assert.equal(r.state.serial, first.state.serial, "the revoked certificate is still what it holds");
    } finally {
      await agent.stop();
    }
  });

  it("fail/a failing --reload: --once exits 3 with the files written, --status says failing; the next run retries it", async () => {
    const out = path.join(tempDir(), "tls");
    const tokenFile = await tokenFileFor("web");
    const base = [
      "agent",
      "--server",
      ca.url,
      "--service",
      "web",
      "--token-file",
      tokenFile,
      "--out",
      out,
      "--ca",
      caFile,
      "--once",
    ];
    const bad = await runCli([...base, "--reload", "echo cannot reload >&2; exit 7"]);
    assert.equal(bad.code, 3);
    assert.match(bad.err, /the reload command failed: exit 7: cannot reload/);
    assert.ok(statSync(path.join(out, "cert.pem")).isFile());
    const st = await runCli(["agent", "--status", "--out", out]);
    assert.equal(st.code, 1);
    assert.match(st.out, /reload .*FAILED, exit 7/);
    const good = await runCli([...base, "--reload", `touch ${out}.reloaded`]);
    assert.equal(good.code, 0, good.err);
    assert.ok(statSync(`${out}.reloaded`).isFile(), "the reload ran again though nothing was due");
    assert.equal((await runCli(["agent", "--status", "--out", out])).code, 0);
  });

  // Last: it starts a CA rotation on the shared PKI.
  it("ok/a CA rotation: the polled bundle changes, ca.pem is rewritten with both CAs, the reload hook runs; --status stays healthy", async () => {
    const out = path.join(tempDir(), "tls");
    const reloads: string[] = [];
    const token = await ca.token("web");
    const agent = createAgent({
      server: ca.url,
      service: "web",
      token: () => token,
      ca: readFileSync(caFile, "utf8"),
      store: fileStore(out),
      bundlePollMs: 1,
      reload: async (c) => {
        reloads.push(c.ca);
        return { ok: true, message: "exit 0" };
      },
    });
    try {
      assert.equal((await agent.step()).did, "enrolled");
      assert.equal(bundleDigests(readFileSync(path.join(out, "ca.pem"), "utf8")).length, 1);
      const rotate = await runCli(["ca", "rotate", "prepare", "-f", ca.manifest, "--pki", ca.pki]);
      assert.equal(rotate.code, 0, rotate.err);
      let r = await agent.step();
      const deadline = Date.now() + 5000;
      while (r.did !== "bundle" && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 100));
        r = await agent.step();
      }
      assert.equal(r.did, "bundle", r.error?.message);
      const digests = bundleDigests(readFileSync(path.join(out, "ca.pem"), "utf8"));
      assert.equal(digests.length, 2, "the old CA and the next one");
      assert.ok(digests.includes(fpOf(readFileSync(caFile, "utf8"))));
      assert.equal(reloads.length, 2, "a reload after the enrollment and after the bundle change");
      assert.deepEqual(r.state.bundleSha256, digests);
      assert.equal(r.state.status, "healthy");
      assert.equal((await agent.step()).did, "nothing", "an unchanged bundle is not rewritten");
    } finally {
      await agent.stop();
    }
  });
});

describe("agent: --fingerprint with ca.intermediate (the server sends its root beyond the intermediate)", () => {
  let ca: OnlineCa;
  before(async () => {
    ca = await startOnlineCa(`version: 1
cluster: inter
ca:
  key: ecdsa-p256
  validity: 2y
  subject: { CN: Inter Root }
  intermediate: { key: ecdsa-p256, validity: 1y, renewBefore: 120d }
defaults: { key: ecdsa-p256, validity: 30d, renewBefore: 10d }
services:
  web: { usage: dual, csr: true, ttl: 1m, addresses: [127.0.0.1] }
`);
  });
  after(async () => {
    await ca?.stop();
  });
  it("ok/--once --fingerprint of the root enrolls; cert.pem carries the intermediate, ca.pem the root", async () => {
    const out = path.join(tempDir(), "tls");
    const tokenFile = path.join(tempDir(), "token");
    writeFileSync(tokenFile, await ca.token("web"), { mode: 0o600 });
    const root = readFileSync(path.join(ca.pki, "ca/ca.pem"), "utf8");
    const r = await runCli([
      "agent",
      "--server",
      ca.url,
      "--service",
      "web",
      "--token-file",
      tokenFile,
      "--out",
      out,
      "--fingerprint",
      fpOf(root),
      "--once",
    ]);
    assert.equal(r.code, 0, r.err);
    const chain = readFileSync(path.join(out, "cert.pem"), "utf8");
    assert.equal(bundleDigests(chain).length, 2, "leaf and intermediate");
    assert.deepEqual(bundleDigests(readFileSync(path.join(out, "ca.pem"), "utf8")), [fpOf(root)]);
    execFileSync(
      "openssl",
      [
        "verify",
        "-x509_strict",
        "-CAfile",
        path.join(out, "ca.pem"),
        "-untrusted",
        path.join(out, "cert.pem"),
        path.join(out, "cert.pem"),
      ],
      { stdio: "pipe" },
    );
  });
});
