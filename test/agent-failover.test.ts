/**
 * The agent with several servers (issue 15: "Agents take a list of servers and fail over with
 * backoff"). Two real `mtlskit serve` replicas (startServer twice on one PKI directory and one
 * SQLite ledger file, test/helpers/online.ts), stopped and restarted on their ports; a third
 * HTTPS server of ours that drops every enrollment after reading it (a replica that could not
 * answer). Asserted: a stopped first server costs no backoff (the step enrolls or renews on the
 * next); the list is tried from the last server that worked; both down backs off on the whole list
 * (the schedule read from the state, each server counted once per attempt) and recovers on either;
 * a 403 is never asked of the other replica (its /metrics saw no renewal); an enrollment that
 * failed ambiguously is sent again with the same key and CSR, across a restart (openssl judges
 * the certificate is for the CSR's key); `--status`, `--json`, `--metrics` (promtool) show both
 * servers; an agentSource on two servers keeps an mTLS service answering across stops: 0 failed
 * requests. Loopback only, every wait bounded, every server closed in `after`.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import * as https from "node:https";
import * as net from "node:net";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import type * as tls from "node:tls";
import {
  type AgentEvent,
  type AgentState,
  agentSource,
  bundleDigests,
  type Clock,
  createAgent,
  failsOver,
  fileStore,
  parseServerList,
  type PendingRequest,
  ServerError,
  UnreachableError,
} from "../src/agent/index.ts";
import { authorizeAny, clientOptions, createMtlsServer } from "../src/service/index.ts";
import { runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { metricsOf, type OnlineCa, type Replica, startOnlineCa, startReplica } from "./helpers/online.ts";

const MANIFEST = `version: 1
cluster: failover
identity:
  uri: "spiffe://{cluster}.local/{name}"
ca:
  key: ecdsa-p256
  validity: 1y
  subject: { CN: Failover CA }
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
    addresses: [127.0.0.1]
  dropper:
    usage: server
    addresses: [127.0.0.1]
`;

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

/** pubkeyOf asks openssl for the public key of a CSR or a certificate (an independent judge of "the certificate is for that CSR's key"). */
function pubkeyOf(kind: "req" | "x509", pem: string): string {
  return execFileSync("openssl", [kind, "-noout", "-pubkey"], { input: pem, encoding: "utf8" }).trim();
}

/** count reads one sample from Prometheus text (0 when absent). */
function count(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe("agent: failsOver and parseServerList (pure)", () => {
  const refusal = (status: number) => new ServerError("x", status, { error: "e", message: "m" });
  for (const [name, e, next] of [
    ["unreachable", new UnreachableError("agent: x", "unreachable"), true],
    ["tls", new UnreachableError("agent: x", "tls"), true],
    ["bad-reply", new UnreachableError("agent: x", "bad-reply"), true],
    ["500", refusal(500), true],
    ["503", refusal(503), true],
    ["429", refusal(429), true],
    ["408", refusal(408), true],
    ["400", refusal(400), false],
    ["401", refusal(401), false],
    ["403", refusal(403), false],
    ["404", refusal(404), false],
    ["422", refusal(422), false],
  ] as const)
    it(`${next ? "ok" : "fail"}/${name} ${next ? "goes to the next server" : "is definitive"}`, () => {
      assert.equal(failsOver(e), next);
    });
  it("fail/a duplicate (same origin), an http URL, an empty list and more than 16 are refused", () => {
    assert.throws(() => parseServerList(["https://127.0.0.1:1", "https://127.0.0.1:1/"]), /given twice/);
    assert.throws(() => parseServerList(["http://127.0.0.1:1"]), /https:\/\//);
    assert.throws(() => parseServerList([]), /at least one --server/);
    assert.throws(
      () => parseServerList(Array.from({ length: 17 }, (_, i) => `https://127.0.0.1:${i + 1}`)),
      /at most 16/,
    );
    assert.deepEqual(parseServerList(["https://[::1]:8443/", "https://127.0.0.1:8443"]), [
      "https://[::1]:8443",
      "https://127.0.0.1:8443",
    ]);
  });
});

describe("agent: two replicas (startServer twice on one PKI and one SQLite ledger)", () => {
  let a: OnlineCa;
  let b: Replica;
  let caFile: string;
  let caPem: string;
  const down = { a: false, b: false };
  const stopA = async () => {
    await a.stop();
    down.a = true;
  };
  const startA = async () => {
    await a.restart();
    down.a = false;
  };
  const stopB = async () => {
    await b.stop();
    down.b = true;
  };
  const startB = async () => {
    await b.restart();
    down.b = false;
  };
  /** The dropper: an HTTPS server of the same CA that reads each enrollment, keeps its CSR, and closes the connection without a reply. */
  let dropper: https.Server;
  let dropperUrl: string;
  const dropped: { csr: string; token: string }[] = [];

  before(async () => {
    a = await startOnlineCa(MANIFEST);
    b = await startReplica(a);
    caFile = path.join(a.pki, "ca/ca.pem");
    caPem = readFileSync(caFile, "utf8");
    const svc = path.join(a.pki, "services/dropper");
    dropper = https.createServer(
      { cert: readFileSync(path.join(svc, "cert.pem")), key: readFileSync(path.join(svc, "key.pem")) },
      (req, res) => {
        let body = "";
        req.setEncoding("utf8");
        req.on("data", (d: string) => (body += d));
        req.on("end", () => {
          if (req.url === "/v1/enroll") {
            const j = JSON.parse(body) as { csr: string; token: string };
            dropped.push({ csr: j.csr, token: j.token });
          }
          res.socket?.destroy(); // the request arrived; no answer leaves
        });
      },
    );
    await new Promise<void>((r) => dropper.listen(0, "127.0.0.1", r));
    dropperUrl = `https://127.0.0.1:${(dropper.address() as AddressInfo).port}`;
  });
  after(async () => {
    dropper?.closeAllConnections();
    await new Promise<void>((r) => (dropper ? dropper.close(() => r()) : r()));
    if (!down.b) await b?.stop();
    if (!down.a) await a?.stop();
  });
  const restoreBoth = async () => {
    if (down.a) await startA();
    if (down.b) await startB();
  };

  it("ok/the first server stopped: the step enrolls on the second at once (no backoff); the next renewal starts there; the first back and the second stopped: renews on the first", async () => {
    const out = path.join(tempDir(), "tls");
    const offset = { ms: 0 };
    const token = await a.token("web");
    const events: AgentEvent[] = [];
    const agent = createAgent({
      servers: [a.url, b.url],
      service: "web",
      token: () => token,
      ca: caPem,
      store: fileStore(out),
      clock: offsetClock(offset),
      random: () => 0,
      onEvent: (e) => events.push(e),
    });
    try {
      await stopA();
      const first = await agent.step();
      assert.equal(first.did, "enrolled", first.error?.message);
      assert.equal(first.state.failures, 0, "no failure for the step: the second server answered");
      assert.equal(first.state.status, "healthy");
      assert.equal(first.state.nextAttempt, first.state.renewAfter, "the next attempt is the renewal, not a backoff");
      assert.equal(first.state.server, b.url, "the second is current");
      const [sa, sb] = first.state.servers!;
      assert.equal(sa!.url, a.url);
      assert.equal(sa!.failures, 1);
      assert.equal(sa!.lastError?.code, "unreachable");
      assert.equal(sa!.lastSuccess, undefined);
      assert.equal(sb!.failures, 0);
      assert.ok(sb!.lastSuccess);
      assert.deepEqual(
        events.filter((e) => e.kind === "failover").map((e) => e.kind === "failover" && [e.server, e.next, e.code]),
        [[a.url, b.url, "unreachable"]],
      );
      assert.equal(statSync(path.join(out, "key.pem")).mode & 0o777, 0o600);
      assert.equal(
        existsSync(path.join(out, "agent-request.json")),
        false,
        "the pending request is gone once installed",
      );

      // The next renewal starts from the second (the last that worked): the first is not asked again.
      offset.ms = Date.parse(agent.state().renewAfter!) - Date.now() + 10;
      const second = await agent.step();
      assert.equal(second.did, "renewed", second.error?.message);
      assert.equal(second.state.servers![0]!.failures, 1, "the first server was not asked");
      assert.equal(second.state.servers![0]!.lastError?.at, sa!.lastError?.at);

      // The first comes back and the second stops: the renewal goes on the first.
      await startA();
      await stopB();
      offset.ms = Date.parse(agent.state().renewAfter!) - Date.now() + 10;
      const third = await agent.step();
      assert.equal(third.did, "renewed", third.error?.message);
      assert.equal(third.state.failures, 0);
      assert.equal(third.state.server, a.url);
      assert.equal(third.state.servers![0]!.failures, 0);
      assert.ok(Date.parse(third.state.servers![0]!.lastSuccess!) > Date.parse(sb!.lastSuccess!));
      assert.equal(third.state.servers![1]!.failures, 1);
      // The certificate is the CA's, whichever replica signed it.
      execFileSync("openssl", ["verify", "-x509_strict", "-CAfile", caFile, path.join(out, "cert.pem")], {
        stdio: "pipe",
      });
    } finally {
      await agent.stop();
      await restoreBoth();
    }
  });

  it("ok/both down: the whole list is tried once per attempt, the backoff doubles (500, 1000, 2000 ms at random 0); one back: the renewal goes through with the key it kept", async () => {
    const out = path.join(tempDir(), "tls");
    const offset = { ms: 0 };
    const token = await a.token("web");
    const agent = createAgent({
      servers: [a.url, b.url],
      service: "web",
      token: () => token,
      ca: caPem,
      store: fileStore(out),
      clock: offsetClock(offset),
      random: () => 0,
    });
    try {
      assert.equal((await agent.step()).did, "enrolled");
      offset.ms = Date.parse(agent.state().renewAfter!) - Date.now() + 10;
      await stopA();
      await stopB();
      const delays: number[] = [];
      let kept: PendingRequest | undefined;
      for (let i = 1; i <= 3; i++) {
        const r = await agent.step();
        assert.equal(r.did, "nothing");
        assert.equal((r.error as { code?: string }).code, "unreachable", r.error?.message);
        assert.match(r.error!.message, /none of the 2 servers could be used/);
        assert.ok(r.error!.message.includes(a.url) && r.error!.message.includes(b.url), r.error!.message);
        assert.equal(r.state.failures, i);
        assert.deepEqual(
          r.state.servers!.map((s) => s.failures),
          [i, i],
          "each server tried once per attempt",
        );
        delays.push(Date.parse(r.state.nextAttempt!) - Date.parse(r.state.lastError!.at));
        const file = path.join(out, "agent-request.json");
        assert.equal(statSync(file).mode & 0o777, 0o600);
        const req = JSON.parse(readFileSync(file, "utf8")) as PendingRequest;
        assert.equal(req.kind, "renew");
        assert.equal(req.bound, `serial:${r.state.serial}`);
        if (kept) assert.equal(req.csr, kept.csr, "the same CSR at each retry");
        kept = req;
      }
      assert.deepEqual(delays, [500, 1000, 2000], "1 s doubling, equal jitter at random 0, for the list as a whole");
      assert.equal((await runCli(["agent", "--status", "--out", out])).code, 1);

      await startB();
      const back = await agent.step();
      assert.equal(back.did, "renewed", back.error?.message);
      assert.equal(back.state.failures, 0);
      assert.equal(back.state.server, b.url);
      assert.equal(
        pubkeyOf("x509", readFileSync(path.join(out, "cert.pem"), "utf8")),
        pubkeyOf("req", kept!.csr),
        "the certificate is for the key kept across the retries",
      );
      assert.equal(readFileSync(path.join(out, "key.pem"), "utf8"), kept!.key);
      assert.equal(existsSync(path.join(out, "agent-request.json")), false);
    } finally {
      await agent.stop();
      await restoreBoth();
    }
  });

  it("fail/a 403 (a revoked certificate) from the first replica is not asked of the second: its /metrics saw no renewal", async () => {
    const out = path.join(tempDir(), "tls");
    const offset = { ms: 0 };
    const token = await a.token("web");
    const agent = createAgent({
      servers: [a.url, b.url],
      service: "web",
      token: () => token,
      ca: caPem,
      store: fileStore(out),
      clock: offsetClock(offset),
    });
    try {
      const first = await agent.step();
      assert.equal(first.did, "enrolled", first.error?.message);
      assert.equal(first.state.server, a.url);
      const rv = await runCli(["revoke", first.state.serial!, "-f", a.manifest, "--pki", a.pki]);
      assert.equal(rv.code, 0, rv.err);
      const renewsOnB = 'mtlskit_serve_request_duration_seconds_count{route="/v1/renew"}';
      const revokedOnA = 'mtlskit_serve_refused_total{reason="cert-revoked"}';
      const beforeB = count(await b.metrics(), renewsOnB);
      const beforeA = count(await metricsOf(a.url, caFile), revokedOnA);
      offset.ms = Date.parse(agent.state().renewAfter!) - Date.now() + 10;
      const r = await agent.step();
      assert.equal(r.did, "nothing");
      assert.equal(r.state.lastError?.code, "cert-revoked", r.error?.message);
      assert.match(r.error!.message, /the server refused the renewal \(403 cert-revoked\)/);
      assert.equal(count(await metricsOf(a.url, caFile), revokedOnA), beforeA + 1, "the first refused it");
      assert.equal(count(await b.metrics(), renewsOnB), beforeB, "the second was never asked");
      const [sa, sb] = r.state.servers!;
      assert.equal(sa!.lastError?.code, "cert-revoked");
      assert.equal(sa!.failures, 0, "a refusal is an answer: the server is not counted as failing");
      assert.equal(sb!.lastError, undefined);
      assert.equal(sb!.lastSuccess, undefined);
      assert.equal(
        existsSync(path.join(out, "agent-request.json")),
        false,
        "a definitive refusal drops the pending key",
      );
    } finally {
      await agent.stop();
    }
  });

  it("ok/an enrollment whose reply was lost is sent again with the same key and CSR, across a restart, and the certificate is for that key", async () => {
    const out = path.join(tempDir(), "tls");
    const token = await a.token("web");
    dropped.length = 0;
    // Only the dropper: the request arrives, no reply comes back; the agent is stopped (a restart).
    const firstRun = createAgent({
      servers: [dropperUrl],
      service: "web",
      token: () => token,
      ca: caPem,
      store: fileStore(out),
    });
    const r1 = await firstRun.step();
    await firstRun.stop();
    assert.equal((r1.error as { code?: string })?.code, "unreachable", r1.error?.message);
    assert.equal(dropped.length, 1);
    const file = path.join(out, "agent-request.json");
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const kept = JSON.parse(readFileSync(file, "utf8")) as PendingRequest;
    assert.equal(kept.kind, "enroll");
    assert.equal(kept.csr, dropped[0]!.csr);
    assert.ok(!kept.bound.includes(token.slice(22)), "the token's secret is not in the file");
    // The restart, with the dropper first and a replica second: the same CSR to both, the second issues.
    const secondRun = createAgent({
      servers: [dropperUrl, a.url],
      service: "web",
      token: () => token,
      ca: caPem,
      store: fileStore(out),
    });
    try {
      const r2 = await secondRun.step();
      assert.equal(r2.did, "enrolled", r2.error?.message);
      assert.equal(dropped.length, 2);
      assert.equal(dropped[1]!.csr, dropped[0]!.csr, "the same CSR after the restart");
      assert.equal(
        pubkeyOf("x509", readFileSync(path.join(out, "cert.pem"), "utf8")),
        pubkeyOf("req", dropped[0]!.csr),
        "the certificate is for the first attempt's key",
      );
      assert.equal(existsSync(file), false);
    } finally {
      await secondRun.stop();
    }
  });

  it("ok/the CLI: --server twice and as a comma list; the dead first one is logged and skipped; --status, --json and --metrics (promtool) show both", async () => {
    const out = path.join(tempDir(), "tls");
    const tokenFile = path.join(tempDir(), "token");
    writeFileSync(tokenFile, `${await a.token("web")}\n`, { mode: 0o600 });
    const dead = "https://127.0.0.1:1";
    const base = ["agent", "--service", "web", "--token-file", tokenFile, "--out", out, "--ca", caFile, "--once"];
    const r = await runCli([...base, "--server", dead, "--server", b.url]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /enrolled web/);
    assert.ok(r.err.includes(`${dead} could not be used (unreachable); trying ${b.url}`), r.err);
    const again = await runCli([...base, "--server", `${dead},${b.url}`]);
    assert.equal(again.code, 0, again.err);
    assert.match(again.out, /not due/);
    assert.doesNotMatch(again.err, /could not be used/, "the list starts from the last that worked");

    const st = await runCli(["agent", "--status", "--out", out]);
    assert.equal(st.code, 0, st.out);
    assert.ok(st.out.includes(`(server ${b.url}, first of 2)`), st.out);
    assert.ok(st.out.includes(`server       ${dead}: 1 failure in a row, no success yet`), st.out);
    assert.match(st.out, new RegExp(`server {7}${b.url.replace(/\./g, "\\.")}: current, last success `));
    const json = JSON.parse((await runCli(["agent", "--status", "--out", out, "--json"])).out) as AgentState;
    assert.equal(json.server, b.url);
    assert.deepEqual(
      json.servers!.map((s) => [s.url, s.failures, s.lastError?.code]),
      [
        [dead, 1, "unreachable"],
        [b.url, 0, undefined],
      ],
    );
    const m = await runCli(["agent", "--status", "--out", out, "--metrics"]);
    assert.equal(m.code, 0, m.err);
    assert.ok(m.out.includes(`mtlskit_agent_server_current{service="web",server="${dead}"} 0\n`), m.out);
    assert.ok(m.out.includes(`mtlskit_agent_server_current{service="web",server="${b.url}"} 1\n`));
    assert.ok(m.out.includes(`mtlskit_agent_server_consecutive_failures{service="web",server="${dead}"} 1\n`));
    assert.match(
      m.out,
      new RegExp(`mtlskit_agent_server_last_success_seconds\\{service="web",server="${b.url}"\\} \\d`),
    );
    execFileSync("promtool", ["check", "metrics"], { input: m.out, stdio: ["pipe", "pipe", "pipe"] });
  });

  it("ok/deadlines: a server that accepts TCP but never handshakes, then one that takes the request and never answers, are left for the next (connectTimeoutMs, timeoutMs)", async () => {
    const held: net.Socket[] = [];
    const mute = net.createServer((s) => held.push(s));
    const svc = path.join(a.pki, "services/dropper");
    const silent = https.createServer(
      { cert: readFileSync(path.join(svc, "cert.pem")), key: readFileSync(path.join(svc, "key.pem")) },
      (req) => req.resume(), // reads the request, never answers
    );
    await new Promise<void>((r) => mute.listen(0, "127.0.0.1", r));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const muteUrl = `https://127.0.0.1:${(mute.address() as AddressInfo).port}`;
    const silentUrl = `https://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const out = path.join(tempDir(), "tls");
    const token = await a.token("web");
    const agent = createAgent({
      servers: [muteUrl, silentUrl, a.url],
      service: "web",
      token: () => token,
      ca: caPem,
      store: fileStore(out),
      connectTimeoutMs: 300,
      timeoutMs: 800,
    });
    try {
      const r = await agent.step();
      assert.equal(r.did, "enrolled", r.error?.message);
      const [m, q, ok] = r.state.servers!;
      assert.match(m!.lastError!.message, new RegExp(`${muteUrl} did not accept a TLS connection within 300 ms`));
      assert.match(q!.lastError!.message, /\/v1\/enroll did not answer within 800 ms/);
      assert.equal(ok!.failures, 0);
      assert.equal(r.state.server, a.url);
    } finally {
      await agent.stop();
      for (const s of held) s.destroy();
      silent.closeAllConnections();
      await new Promise<void>((r) => mute.close(() => r()));
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it("ok/--fingerprint with two servers: a first one presenting another CA's chain is refused with nothing sent, the second is bootstrapped and enrolls", async () => {
    const dir = tempDir();
    const otherPki = path.join(dir, "pki");
    const applied = await runCli(["apply", "-f", writeManifest(dir, MANIFEST), "--pki", otherPki]);
    assert.equal(applied.code, 0, applied.err);
    const svc = path.join(otherPki, "services/dropper");
    let requests = 0;
    const impostor = https.createServer(
      { cert: readFileSync(path.join(svc, "cert.pem")), key: readFileSync(path.join(svc, "key.pem")) },
      (_req, res) => {
        requests++;
        res.end();
      },
    );
    await new Promise<void>((r) => impostor.listen(0, "127.0.0.1", r));
    const impostorUrl = `https://127.0.0.1:${(impostor.address() as AddressInfo).port}`;
    try {
      const out = path.join(tempDir(), "tls");
      const tokenFile = path.join(tempDir(), "token");
      writeFileSync(tokenFile, `${await a.token("web")}\n`, { mode: 0o600 });
      const fp = new X509Certificate(caPem).fingerprint256;
      const r = await runCli([
        "agent",
        "--server",
        `${impostorUrl},${b.url}`,
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
      assert.equal(r.code, 0, r.err);
      assert.ok(r.err.includes(`${impostorUrl} could not be used (tls); trying ${b.url}`), r.err);
      assert.equal(requests, 0, "no request reached the server the fingerprint does not trust");
      assert.deepEqual(bundleDigests(readFileSync(path.join(out, "ca.pem"), "utf8")), bundleDigests(caPem));
      const s = JSON.parse(readFileSync(path.join(out, "agent.json"), "utf8")) as AgentState;
      assert.match(s.servers![0]!.lastError!.message, /not trusted by --fingerprint/);
    } finally {
      impostor.closeAllConnections();
      await new Promise<void>((r) => impostor.close(() => r()));
    }
  });

  it("fail/the CLI refuses a server given twice and an empty list entry (exit 2, nothing written)", async () => {
    const out = path.join(tempDir(), "tls");
    const base = ["agent", "--service", "web", "--out", out, "--ca", caFile, "--once"];
    const twice = await runCli([...base, "--server", a.url, "--server", `${a.url}/`]);
    assert.equal(twice.code, 2, twice.err);
    assert.match(twice.err, /is given twice/);
    const empty = await runCli([...base, "--server", `${a.url},`]);
    assert.equal(empty.code, 2, empty.err);
    assert.match(empty.err, /has an empty entry/);
    assert.equal(existsSync(out), false);
  });

  it("ok/agentSource on two servers: an mTLS service keeps answering while each replica in turn is stopped, three renewals: 0 failed requests", async () => {
    const offset = { ms: 0 };
    const reloads: string[] = [];
    const source = await agentSource({
      servers: [a.url, b.url],
      service: "web",
      token: await a.token("web"),
      ca: caPem,
      clock: offsetClock(offset),
      onReload: (e) => reloads.push(e.current.leaf.serialHex),
    });
    const server = createMtlsServer(https.createServer, source, { authorize: authorizeAny() }, (_q, s) => s.end("ok"));
    const tally = { ok: 0, failed: 0, errors: [] as string[] };
    const seen = new Set<string>();
    let load = true;
    let loop: Promise<void> | undefined;
    try {
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const port = (server.address() as AddressInfo).port;
      const get = () =>
        new Promise<void>((resolve) => {
          const req = https.request(
            {
              ...clientOptions(source, { authorize: authorizeAny() }),
              host: "127.0.0.1",
              port,
              agent: false,
              timeout: 5000,
            },
            (res) => {
              seen.add(
                (res.socket as tls.TLSSocket).getPeerCertificate().serialNumber.toLowerCase().replace(/^0+/, ""),
              );
              res.resume();
              res.on("end", () => {
                tally.ok++;
                resolve();
              });
            },
          );
          req.on("timeout", () => req.destroy(new Error("no answer within 5 s")));
          req.on("error", (e) => {
            tally.failed++;
            tally.errors.push(e.message);
            resolve();
          });
          req.end();
        });
      loop = (async () => {
        while (load) await get();
      })();
      /** renewal moves the clock past renewAfter and waits (10 s at most) for the new certificate. */
      const renewal = async () => {
        const n = reloads.length;
        offset.ms = Date.parse(source.state().renewAfter!) - Date.now() + 10;
        const deadline = Date.now() + 10_000;
        while (reloads.length === n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        assert.equal(reloads.length, n + 1, source.state().lastError?.message);
        const served = Date.now() + 5000;
        while (!seen.has(reloads[n]!) && Date.now() < served) await new Promise((r) => setTimeout(r, 20));
        assert.ok(seen.has(reloads[n]!), "the renewed certificate was served on the wire");
      };
      /** answered waits (10 s at most) until 25 more requests were answered: each phase carries load. */
      const answered = async () => {
        const target = tally.ok + 25;
        const deadline = Date.now() + 10_000;
        while (tally.ok < target && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        assert.ok(tally.ok >= target, `${tally.ok} requests answered, failed ${tally.failed}`);
      };
      await answered();
      await renewal();
      assert.equal(source.state().server, a.url);
      await stopA();
      await answered();
      await renewal();
      assert.equal(source.state().server, b.url, "renewed on the second while the first is down");
      await answered();
      await startA();
      await stopB();
      await answered();
      await renewal();
      assert.equal(source.state().server, a.url, "renewed on the first while the second is down");
      await answered();
      await startB();
      load = false;
      await loop;
      assert.equal(tally.failed, 0, tally.errors.slice(0, 5).join("\n"));
      assert.ok(tally.ok >= 125, `${tally.ok} requests answered`);
      assert.equal(seen.size, 4, "the enrolled certificate and three renewals were served");
    } finally {
      load = false;
      await loop;
      await source.close();
      await new Promise<void>((r) => server.close(() => r()));
      await restoreBoth();
    }
  });
});
