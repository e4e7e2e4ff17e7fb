/**
 * Several `mtlskit serve` replicas on one PostgreSQL ledger, under faults (issue 15, Proof).
 *
 * One throw-away PostgreSQL cluster on loopback (test/helpers/postgres.ts); one PKI directory made
 * by `mtlskit apply` and copied to one directory per replica (DIR-a, DIR-b, ...: the CA material
 * distributed as an operator would; the key never goes into the database); each replica is a
 * child process of the built package, `serve --ledger postgres://...`. Clients are this process
 * (enroll loops with single-use tokens, renew loops over mTLS, each failing over to the next
 * replica on a failed connection or a 503) and `mtlskit agent --server A --server B --server C`
 * child processes with a 20 s ttl, so they renew every 12-13 s. In order:
 *   a. three replicas under load, replica A killed with SIGKILL: the agents go on renewing through
 *      the others before their certificates expire; the load goes on;
 *   e. a certificate revoked through replica B is refused at renewal by replica C (403
 *      cert-revoked) and listed in C's /v1/crl (openssl reads the CRL);
 *   c. 50 concurrent uses of one token (50 keys), 25 on each of two replicas: exactly one 201,
 *      49 token-used; three tokens;
 *   b. PostgreSQL killed with SIGKILL mid-issuance and started again, twice (MTLSKIT_PG_KILLS):
 *      every request answered while it is down is a 503 ledger-unavailable (never a certificate),
 *      no replica exits, and issuance resumes without restarting one;
 *   d. a replica whose --ledger goes through a TCP proxy the test cuts (test/helpers/tcp-proxy.ts:
 *      refuse, blackhole, freeze) answers 503 (enroll, renew, health) and issues nothing while the
 *      other replica goes on; after restore() the very token it refused succeeds on it (nothing
 *      was recorded), and so does the renewal.
 * After each phase the database (read with psql, not through mtlskit's ledger code) and every
 * certificate a client or agent received must agree: no serial twice; every certificate held has
 * its row (its sha256 column and PostgreSQL's sha256(der) equal the certificate's, what it paid
 * with, signed by the CA); no token paid for two rows;
 * rows no client holds only from requests a kill cut off.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import type * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import type { AgentState } from "../src/agent/store.ts";
import { openLedger } from "../src/ledger/index.ts";
import { encodePem, parseCertificatesPem } from "../src/pki/pem.ts";
import { buildPackage, runBuilt } from "./helpers/built.ts";
import { tempDir, writeManifest } from "./helpers/cli.ts";
import { type Pg, startPostgres } from "./helpers/postgres.ts";
import {
  type Csr,
  exited,
  makeCsrs,
  onlineManifest,
  type Reply,
  requestJson,
  type Served,
  startServe,
  type Target,
  trustAgent,
  within,
} from "./helpers/serve-load.ts";
import { startTcpProxy, type TcpProxy } from "./helpers/tcp-proxy.ts";

/** AGENT_TTL_S: the agents' certificates live 20 s, so they renew at 12-13.3 s (agent.ts RENEW_AT), twice in a phase. */
const AGENT_TTL_S = 20;
const AGENTS = 4;
/** PG_KILLS: how many times phase b kills PostgreSQL (MTLSKIT_PG_KILLS). */
const PG_KILLS = Number(process.env.MTLSKIT_PG_KILLS ?? 2);
const ENROLLERS = 3;
const RENEWERS = 3;
/** TIMEOUT_MS bounds each request (socket idle time); a replica that hangs instead of answering 503 fails the phase by it. The PostgreSQL ledger gives up on a silent database after its 12 s query timeout. */
const TIMEOUT_MS = 20_000;
const PAUSE_MS = 25;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const serialOf = (der: Buffer) => new X509Certificate(der).serialNumber.toLowerCase().replace(/^(00)+(?=.)/, "");
const sha256 = (der: Buffer) => createHash("sha256").update(der).digest("hex");
const codeOf = (r: Reply) => (r.body as { error?: unknown } | undefined)?.error;
const certOf = (r: Reply): Buffer | undefined => {
  const b = r.body as { certificate?: unknown } | undefined;
  return r.status === 201 && typeof b?.certificate === "string" ? parseCertificatesPem(b.certificate)[0] : undefined;
};

/** Received is a certificate a client got (201) or an agent held, with what it paid with. */
interface Received {
  serial: string;
  der: Buffer;
  how: "enroll" | "renew";
  tokenId: string | undefined;
  renewedFrom: string | undefined;
  /** by: the replica that answered, or `agent N`. */
  by: string;
}

/** Row is a ledger row as psql reads it. */
interface Row {
  serial: string;
  sha256: string;
  /** derSha256: the SHA-256 of the stored DER, as PostgreSQL computes it (sha256(der)). */
  derSha256: string;
  how: string;
  tokenId: string | undefined;
  renewedFrom: string | undefined;
  revoked: boolean;
}

describe("CA replicas on one PostgreSQL ledger, under faults", { timeout: 420_000 }, () => {
  let bin: string;
  let dir: string;
  let manifest: string;
  let pkiDir: string;
  let caFile: string;
  let ca: X509Certificate;
  let pg: Pg | undefined;
  let proxy: TcpProxy | undefined;
  const replicas = new Map<string, { served: Served; pki: string }>();
  const children: ChildProcess[] = [];
  const httpAgents: http.Agent[] = [];
  let csrs: Csr[] = [];
  let csrNext = 0;
  const csr = () => csrs[csrNext++ % csrs.length]!;
  const tokens: { token: string; id: string }[] = [];

  const received: Received[] = [];
  const successes = new Map<string, number>();
  /** cutOff: requests a kill (of a replica) ended with a failed connection: each may have left a row no client holds. */
  let cutOff = 0;
  /** killed: replicas the test killed (from just before the kill); crashed: replicas that exited on their own. */
  const killed = new Set<string>();
  const crashed = new Set<string>();
  /** unexpected: answers other than 201, a token-used refusal, a 503 ledger-unavailable or a failed connection. */
  const unexpected: string[] = [];

  const target = (name: string, agent?: http.Agent): Target => {
    const r = replicas.get(name);
    assert.ok(r, `no replica ${name}`);
    const a = agent ?? trustAgent(caFile);
    if (agent === undefined) httpAgents.push(a);
    return { port: r.served.port, agent: a, tls: true, timeoutMs: TIMEOUT_MS };
  };

  /** startReplica copies the PKI directory to DIR-NAME (once) and runs serve there on `ledger`. */
  const startReplica = async (name: string, ledger: string) => {
    const pki = `${pkiDir}-${name}`;
    cpSync(pkiDir, pki, { recursive: true, preserveTimestamps: true });
    const served = await startServe(bin, { manifest, pki, args: ["--ledger", ledger], readyMs: 40_000 });
    replicas.set(name, { served, pki });
    return served;
  };

  /** newTokens makes `n` enroll tokens for web in the PostgreSQL ledger (through mtlskit's ledger, as `mtlskit token create --ledger` does). */
  const newTokens = async (n: number, service = "web") => {
    const ledger = await openLedger(pkiDir, pg!.url);
    try {
      const made: { token: string; id: string }[] = [];
      for (let i = 0; i < n; i += 50) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(50, n - i) }, () =>
            ledger.createToken(service, "enroll", 30 * 60_000, new Date()),
          ),
        );
        made.push(...batch.map((b) => ({ token: b.token, id: b.record.id })));
      }
      return made;
    } finally {
      await ledger.close();
    }
  };

  /** readRows reads the certificates table with psql. */
  const readRows = (): Row[] => {
    const out = pg!.admin(
      "select serial, sha256, how, coalesce(token_id, ''), coalesce(renewed_from, ''), revoked_at is not null, encode(sha256(der), 'hex') from certificates",
    );
    return out === ""
      ? []
      : out.split("\n").map((line) => {
          const [serial, sha, how, tokenId, renewedFrom, revoked, derSha] = line.split("|");
          return {
            serial: serial!,
            sha256: sha!,
            derSha256: derSha!,
            how: how!,
            tokenId: tokenId || undefined,
            renewedFrom: renewedFrom || undefined,
            revoked: revoked === "t",
          };
        });
  };
  /** readTokens reads the tokens table with psql: id -> used_by. */
  const readTokens = (): Map<string, string | undefined> => {
    const out = pg!.admin("select id, coalesce(used_by, '') from tokens");
    return new Map(
      out === ""
        ? []
        : out.split("\n").map((line) => {
            const [id, usedBy] = line.split("|");
            return [id!, usedBy || undefined] as const;
          }),
    );
  };

  /** audit reads the database back and holds every received certificate against it. */
  const audit = (t: { diagnostic(s: string): void }, what: string) => {
    const rows = readRows();
    const usedBy = readTokens();
    assert.equal(new Set(rows.map((r) => r.serial)).size, rows.length, `${what}: a serial twice in the ledger`);
    assert.equal(
      new Set(received.map((r) => r.serial)).size,
      received.length,
      `${what}: a serial twice among the certificates clients hold`,
    );
    const bySerial = new Map(rows.map((r) => [r.serial, r]));
    for (const got of received) {
      const row = bySerial.get(got.serial);
      assert.ok(row, `${what}: serial ${got.serial} (${got.how}, from ${got.by}) has no ledger row`);
      assert.equal(row.sha256, sha256(got.der), `serial ${got.serial}: SHA-256`);
      assert.equal(row.derSha256, sha256(got.der), `serial ${got.serial}: the stored DER`);
      assert.equal(row.how, got.how, `serial ${got.serial}: how`);
      if (!got.by.startsWith("agent")) {
        assert.equal(row.tokenId, got.tokenId, `serial ${got.serial}: token`);
        assert.equal(row.renewedFrom, got.renewedFrom, `serial ${got.serial}: renewedFrom`);
      }
      assert.ok(new X509Certificate(got.der).verify(ca.publicKey), `serial ${got.serial}: not signed by the CA`);
    }
    for (const row of rows) assert.equal(row.sha256, row.derSha256, `row ${row.serial}: SHA-256 of its DER`);
    for (const [name, r] of replicas)
      if (!killed.has(name))
        assert.ok(
          r.served.child.exitCode === null && r.served.child.signalCode === null,
          `${what}: replica ${name} exited:\n${r.served.output()}`,
        );
    const rowsByToken = new Map<string, string[]>();
    for (const r of rows)
      if (r.tokenId !== undefined) rowsByToken.set(r.tokenId, [...(rowsByToken.get(r.tokenId) ?? []), r.serial]);
    for (const [id, serials] of rowsByToken) {
      assert.equal(serials.length, 1, `${what}: token ${id} paid for ${serials.join(", ")}`);
      assert.equal(usedBy.get(id), serials[0], `${what}: token ${id}: used_by`);
    }
    for (const [id, by] of usedBy)
      if (by !== undefined) assert.deepEqual(rowsByToken.get(id), [by], `${what}: token ${id} used by ${by}`);
    for (const [id, n] of successes) assert.equal(n, 1, `${what}: token ${id} got ${n} certificates`);
    const held = new Set(received.map((r) => r.serial));
    const orphans = rows.filter((r) => !held.has(r.serial));
    t.diagnostic(
      `${what}: ${rows.length} rows, ${received.length} certificates held, ${orphans.length} rows no client holds, ${cutOff} requests cut off by a kill`,
    );
    assert.ok(orphans.length <= cutOff, `${what}: ${orphans.length} rows no client holds, ${cutOff} requests cut off`);
    assert.deepEqual(unexpected, [], `${what}: unexpected answers`);
  };

  /** Load is enroll and renew loops over a list of replicas, each failing over to the next on a failed connection or a 503. */
  const startLoad = (names: string[], o: { onReply?: (r: Reply, name: string, sentAt: number) => void } = {}) => {
    let stopping = false;
    let served = 0;
    const queue = [...tokens.splice(0)];
    /** post sends until a replica answers something other than a failed connection or a 503 (or the load stops). */
    const post = async (
      start: number,
      route: string,
      body: () => unknown,
      agent: http.Agent,
    ): Promise<{ r: Reply; name: string } | undefined> => {
      for (let k = start; !stopping; k++) {
        const name = names[k % names.length]!;
        const child = replicas.get(name)?.served.child;
        const gone = child === undefined || killed.has(name) || child.exitCode !== null || child.signalCode !== null;
        if (gone && child !== undefined && !killed.has(name) && !crashed.has(name)) {
          crashed.add(name);
          unexpected.push(
            `replica ${name} exited (${child.exitCode ?? child.signalCode}):\n${replicas.get(name)!.served.output()}`,
          );
        }
        if (gone) {
          if ((k - start) % names.length === names.length - 1) await sleep(PAUSE_MS); // none left: never spin
          continue; // the next one
        }
        const sentAt = performance.now();
        const r = await requestJson(target(name, agent), "POST", route, body());
        o.onReply?.(r, name, sentAt);
        if (r.status === 0 || r.status === 503) {
          if (r.status === 0 && killed.has(name))
            cutOff++; // sent while it lived, cut off by the kill
          else if (r.status === 0)
            unexpected.push(`${name}: ${r.error?.message}`); // alive, yet no answer
          else if (r.status === 503 && codeOf(r) !== "ledger-unavailable") unexpected.push(`${name} 503 ${codeOf(r)}`);
          await sleep(PAUSE_MS);
          continue;
        }
        return { r, name };
      }
      return undefined;
    };
    const enrollAgent = trustAgent(caFile);
    httpAgents.push(enrollAgent);
    const enroller = async (k: number) => {
      while (!stopping) {
        const t = queue.shift();
        if (t === undefined) return;
        const got = await post(
          k,
          "/v1/enroll",
          () => ({ service: "web", token: t.token, csr: csr().pem }),
          enrollAgent,
        );
        if (got === undefined) return;
        const der = certOf(got.r);
        if (der !== undefined) {
          served++;
          successes.set(t.id, (successes.get(t.id) ?? 0) + 1);
          received.push({
            serial: serialOf(der),
            der,
            how: "enroll",
            tokenId: t.id,
            renewedFrom: undefined,
            by: got.name,
          });
        } else if (!(got.r.status === 401 && codeOf(got.r) === "token-used"))
          unexpected.push(`enroll at ${got.name}: ${got.r.status} ${JSON.stringify(got.r.body)}`);
        await sleep(PAUSE_MS);
      }
    };
    const renewer = async (k: number) => {
      // Each renewer starts from a certificate enrolled now, then renews with what it got, as an agent does.
      let current: { der: Buffer; keyPem: string } | undefined;
      while (!stopping && current === undefined) {
        const t = queue.shift();
        if (t === undefined) return;
        const c = csr();
        const got = await post(k, "/v1/enroll", () => ({ service: "web", token: t.token, csr: c.pem }), enrollAgent);
        const der = got === undefined ? undefined : certOf(got.r);
        if (der === undefined) continue;
        successes.set(t.id, 1);
        received.push({
          serial: serialOf(der),
          der,
          how: "enroll",
          tokenId: t.id,
          renewedFrom: undefined,
          by: got!.name,
        });
        current = { der, keyPem: c.keyPem };
      }
      while (!stopping && current !== undefined) {
        const agent = trustAgent(caFile, { cert: encodePem("CERTIFICATE", current.der), key: current.keyPem });
        httpAgents.push(agent);
        const c = csr();
        const got = await post(k, "/v1/renew", () => ({ csr: c.pem }), agent);
        agent.destroy();
        if (got === undefined) return;
        const der = certOf(got.r);
        if (der === undefined) {
          unexpected.push(`renew at ${got.name}: ${got.r.status} ${JSON.stringify(got.r.body)}`);
          return;
        }
        served++;
        received.push({
          serial: serialOf(der),
          der,
          how: "renew",
          tokenId: undefined,
          renewedFrom: serialOf(current.der),
          by: got.name,
        });
        current = { der, keyPem: c.keyPem };
        await sleep(PAUSE_MS);
      }
    };
    const loops = [
      ...Array.from({ length: ENROLLERS }, (_, k) => enroller(k)),
      ...Array.from({ length: RENEWERS }, (_, k) => renewer(k + ENROLLERS)),
    ];
    return {
      get served() {
        return served;
      },
      async stop() {
        stopping = true;
        await within(Promise.all(loops), TIMEOUT_MS + 5_000, "client loops after stop");
        tokens.push(...queue); // what was not used goes back
      },
    };
  };

  before(async () => {
    bin = buildPackage();
    dir = tempDir("mtlskit-replicas-");
    pkiDir = path.join(dir, "pki");
    manifest = writeManifest(
      dir,
      onlineManifest({
        cluster: "replicas",
        services: ["web"],
        serve: ["serve: { admins: [ops] }"],
        extra: [
          `  ag: { usage: dual, csr: true, ttl: ${AGENT_TTL_S}s, addresses: [ag.replicas.test] }`,
          "  ops: { usage: client }",
        ],
      }),
    );
    const applied = await runBuilt(bin, ["apply", "-f", manifest, "--pki", pkiDir]);
    assert.equal(applied.code, 0, applied.err);
    caFile = path.join(pkiDir, "ca", "ca.pem");
    ca = new X509Certificate(readFileSync(caFile));
    csrs = await makeCsrs(manifest, "web", 100);
    pg = await startPostgres();
  });

  after(async () => {
    for (const c of children) c.kill("SIGKILL");
    await Promise.all(children.map((c) => within(exited(c), 10_000, `pid ${c.pid}`).catch(() => {})));
    for (const a of httpAgents) a.destroy();
    await Promise.all([...replicas.values()].map((r) => r.served.kill9().catch(() => {})));
    await proxy?.close();
    await pg?.destroy();
  });

  it("the TCP proxy forwards, refuses, holds, freezes and restores (the tool the last phase relies on)", async () => {
    const echo = net.createServer((s) => {
      s.on("error", () => {}); // the proxy resets it: what the test does
      s.pipe(s);
    });
    await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve));
    const p = await startTcpProxy((echo.address() as net.AddressInfo).port);
    /** roundTrip writes a line and says what came back within 1 s: the line, "closed" or "silent". */
    const roundTrip = (s: net.Socket) =>
      new Promise<string>((resolve) => {
        const timer = setTimeout(() => resolve("silent"), 1_000);
        s.once("data", (d) => (clearTimeout(timer), resolve(d.toString())));
        s.once("close", () => (clearTimeout(timer), resolve("closed")));
        s.write("ping");
      });
    const dial = () => {
      const s = net.connect({ host: "127.0.0.1", port: p.port });
      s.on("error", () => {});
      return s;
    };
    try {
      const a = dial();
      assert.equal(await roundTrip(a), "ping");
      p.cut("freeze");
      assert.equal(await roundTrip(a), "silent", "a frozen connection passes nothing");
      p.restore();
      assert.equal(await roundTrip(dial()), "ping");
      const b = dial();
      assert.equal(await roundTrip(b), "ping");
      p.cut();
      assert.equal(await roundTrip(b), "closed", "cut resets open connections");
      assert.equal(await roundTrip(dial()), "closed", "cut refuses new ones");
      p.cut("blackhole");
      assert.equal(await roundTrip(dial()), "silent", "a blackhole holds new ones");
      p.restore();
      assert.equal(await roundTrip(dial()), "ping");
      assert.ok(p.stats.refused >= 1 && p.stats.held >= 1 && p.stats.forwarded >= 3, JSON.stringify(p.stats));
    } finally {
      await p.close();
      await new Promise((resolve) => echo.close(resolve));
    }
  });

  it("a. three replicas under load from clients and agents: one killed with SIGKILL, the others go on; the ledger and every certificate held agree", async (t) => {
    tokens.push(...(await newTokens(1_500)));
    const started = await Promise.all(["a", "b", "c"].map((n) => startReplica(n, pg!.url)));
    const urls = started.map((s) => `https://127.0.0.1:${s.port}`);
    // Agents: three name A first (they are on A when it dies), one names B first.
    const agentTokens = await newTokens(AGENTS, "ag");
    type Seen = { serial: string; der: Buffer; notAfter: number; at: number };
    const agents = agentTokens.map((tok, k) => {
      const order = k < 3 ? urls : [urls[1]!, urls[2]!, urls[0]!];
      const tokenFile = path.join(dir, `agent-${k}.token`);
      writeFileSync(tokenFile, `${tok.token}\n`, { mode: 0o600 });
      const out = path.join(dir, `agent-${k}`);
      const child = spawn(
        process.execPath,
        [
          bin,
          "agent",
          ...order.flatMap((u) => ["--server", u]),
          "--service",
          "ag",
          "--token-file",
          tokenFile,
          "--out",
          out,
          "--ca",
          caFile,
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      children.push(child);
      let log = "";
      const keep = (d: Buffer) => void (log = (log + d.toString()).slice(-8_000));
      child.stdout.on("data", keep);
      child.stderr.on("data", keep);
      return { k, out, child, log: () => log, seen: [] as Seen[], token: tok };
    });
    /** watch polls each agent's cert.pem every 100 ms and records each new certificate. */
    let watching = true;
    const watch = (async () => {
      while (watching) {
        for (const a of agents) {
          let der: Buffer | undefined;
          try {
            der = parseCertificatesPem(readFileSync(path.join(a.out, "cert.pem"), "utf8"))[0];
          } catch {
            continue; // not written yet
          }
          if (der === undefined || a.seen.at(-1)?.der.equals(der)) continue;
          a.seen.push({
            serial: serialOf(der),
            der,
            notAfter: Date.parse(new X509Certificate(der).validTo),
            at: Date.now(),
          });
        }
        await sleep(100);
      }
    })();
    const state = (a: (typeof agents)[number]): AgentState | undefined => {
      try {
        return JSON.parse(readFileSync(path.join(a.out, "agent.json"), "utf8")) as AgentState;
      } catch {
        return undefined;
      }
    };
    const until = async (what: string, ms: number, f: () => boolean) => {
      const end = performance.now() + ms;
      while (!f()) {
        for (const a of agents)
          if (a.child.exitCode !== null) assert.fail(`agent ${a.k} exited (${a.child.exitCode}):\n${a.log()}`);
        if (performance.now() > end)
          assert.fail(
            `${what}: not within ${ms} ms; agents: ${agents.map((a) => `${a.k}: ${JSON.stringify(state(a))}`).join("\n")}`,
          );
        await sleep(100);
      }
    };
    let killedAt = 0;
    try {
      await until("every agent enrolled", 30_000, () => agents.every((a) => a.seen.length >= 1));
      const load = startLoad(["a", "b", "c"]);
      await sleep(3_000);
      const before = load.served;
      assert.ok(before > 0, "the load issued nothing before the kill");
      killedAt = Date.now();
      killed.add("a");
      await replicas.get("a")!.served.kill9();
      // Each agent renews at least once after the kill, through B or C, before its certificate expires.
      await until("every agent renewed after the kill", 2 * AGENT_TTL_S * 1000, () =>
        agents.every((a) => a.seen.some((s) => s.at > killedAt)),
      );
      await sleep(1_000);
      await load.stop();
      t.diagnostic(`load: ${before} certificates before the kill, ${load.served - before} after`);
      assert.ok(load.served - before > 0, "the load issued nothing after the kill");
    } finally {
      watching = false;
      await watch;
      for (const a of agents) a.child.kill("SIGTERM");
      await Promise.all(agents.map((a) => within(exited(a.child), 10_000, `agent ${a.k} after SIGTERM`)));
    }
    for (const a of agents) {
      assert.ok(a.seen.length >= 2, `agent ${a.k} never renewed: ${a.log()}`);
      for (let i = 1; i < a.seen.length; i++)
        assert.ok(
          a.seen[i]!.at < a.seen[i - 1]!.notAfter,
          `agent ${a.k}: certificate ${a.seen[i - 1]!.serial} expired before its renewal (a failed renewal beyond the retry window)`,
        );
      const last = state(a)!;
      assert.equal(last.status, "healthy", `agent ${a.k}: ${JSON.stringify(last)}`);
      assert.equal(last.serial, a.seen.at(-1)!.serial, `agent ${a.k}: agent.json and cert.pem`);
      a.seen.forEach((s, i) =>
        received.push({
          serial: s.serial,
          der: s.der,
          how: i === 0 ? "enroll" : "renew",
          tokenId: i === 0 ? a.token.id : undefined,
          renewedFrom: undefined,
          by: `agent ${a.k}`,
        }),
      );
      if (a.k < 3) assert.notEqual(last.server, urls[0], `agent ${a.k} still names the killed replica A`);
    }
    audit(t, "after the kill");
  });

  it("e. a certificate revoked through replica B is refused at renewal by replica C and listed in C's /v1/crl (openssl crl -verify)", async () => {
    const [tok] = await newTokens(1);
    const c = csr();
    const enrolled = await requestJson(target("c"), "POST", "/v1/enroll", {
      service: "web",
      token: tok!.token,
      csr: c.pem,
    });
    const der = certOf(enrolled);
    assert.ok(der, `enroll at C: ${enrolled.status} ${JSON.stringify(enrolled.body)}`);
    const serial = serialOf(der);
    received.push({ serial, der, how: "enroll", tokenId: tok!.id, renewedFrom: undefined, by: "c" });
    successes.set(tok!.id, 1);
    const ops = path.join(pkiDir, "services", "ops");
    const admin = trustAgent(caFile, {
      cert: readFileSync(path.join(ops, "cert.pem"), "utf8"),
      key: readFileSync(path.join(ops, "key.pem"), "utf8"),
    });
    httpAgents.push(admin);
    const revoked = await requestJson(target("b", admin), "POST", "/v1/revoke", { serial, reason: "keyCompromise" });
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    const holder = trustAgent(caFile, { cert: encodePem("CERTIFICATE", der), key: c.keyPem });
    httpAgents.push(holder);
    const renew = await requestJson(target("c", holder), "POST", "/v1/renew", { csr: csr().pem });
    assert.equal(renew.status, 403, `renewal of a revoked certificate at C: ${JSON.stringify(renew.body)}`);
    assert.equal(codeOf(renew), "cert-revoked");
    assert.equal(readRows().find((r) => r.serial === serial)?.revoked, true, "the ledger row is not revoked");
    const crlText = async (name: string) => {
      const r = await new Promise<Buffer>((resolve, reject) => {
        const req = https.get(
          { host: "127.0.0.1", port: replicas.get(name)!.served.port, path: "/v1/crl", agent: target(name).agent },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (d: Buffer) => chunks.push(d));
            res.on("end", () =>
              res.statusCode === 200
                ? resolve(Buffer.concat(chunks))
                : reject(new Error(`${name} /v1/crl: ${res.statusCode} ${Buffer.concat(chunks)}`)),
            );
          },
        );
        req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error("timed out")));
        req.on("error", reject);
      });
      // openssl judges the CRL: signed by the CA (-verify against ca.pem), and prints its entries.
      const o = spawnSync("openssl", ["crl", "-inform", "DER", "-noout", "-text", "-verify", "-CAfile", caFile], {
        input: r,
        encoding: "utf8",
      });
      assert.equal(o.status, 0, `${name}'s CRL: ${o.stderr}`);
      assert.match(o.stderr, /verify OK/, `${name}'s CRL is not signed by the CA`);
      return o.stdout;
    };
    /** listed: whether openssl's text of a CRL names the serial (upper-case hex, maybe a leading 00). */
    const listed = (text: string) =>
      [...text.matchAll(/Serial Number: ([0-9A-F]+)/g)].some(
        (m) => m[1]!.toLowerCase().replace(/^(00)+(?=.)/, "") === serial,
      );
    assert.ok(listed(await crlText("b")), "B's CRL does not list the serial revoked through B");
    assert.ok(listed(await crlText("c")), "C's CRL does not list the serial revoked through B");
  });

  it("c. 50 concurrent uses of one token, 25 on each of two replicas, 50 keys: exactly one certificate, 49 token-used (three tokens)", async () => {
    for (const tok of await newTokens(3)) {
      const targets = ["b", "c"].map((n) => target(n));
      const replies = await Promise.all(
        Array.from({ length: 50 }, (_, i) => {
          const name = i % 2 === 0 ? "b" : "c";
          return requestJson(targets[i % 2]!, "POST", "/v1/enroll", {
            service: "web",
            token: tok.token,
            csr: csr().pem,
          }).then((r) => ({ r, name }));
        }),
      );
      for (const a of targets) a.agent.destroy();
      const won = replies.filter(({ r }) => certOf(r) !== undefined);
      assert.equal(won.length, 1, `token ${tok.id}: ${won.length} certificates`);
      const lost = replies.filter(({ r }) => certOf(r) === undefined);
      assert.deepEqual(
        [...new Set(lost.map(({ r }) => `${r.status} ${codeOf(r)}`))],
        ["401 token-used"],
        `token ${tok.id}: the others`,
      );
      const der = certOf(won[0]!.r)!;
      received.push({
        serial: serialOf(der),
        der,
        how: "enroll",
        tokenId: tok.id,
        renewedFrom: undefined,
        by: won[0]!.name,
      });
      successes.set(tok.id, 1);
      const rows = readRows().filter((r) => r.tokenId === tok.id);
      assert.deepEqual(
        rows.map((r) => r.serial),
        [serialOf(der)],
        `token ${tok.id}: its rows`,
      );
    }
  });

  it(`b. PostgreSQL killed with SIGKILL mid-issuance (${PG_KILLS} times): 503 ledger-unavailable while it is down, issuance resumes by itself once it is back`, async (t) => {
    tokens.push(...(await newTokens(400 * PG_KILLS)));
    const pids = ["b", "c"].map((n) => replicas.get(n)!.served.child.pid);
    /** down: when postgres was dead (from its exit to the start of the next one); back: when each start returned, and the certificates after it. */
    const down: { from: number; to: number }[] = [];
    let backAt = Number.POSITIVE_INFINITY;
    let afterBack = 0;
    /** whileDown: answers to requests sent after postgres died and answered before it was started again. */
    const whileDown = new Map<string, number>();
    const load = startLoad(["b", "c"], {
      onReply: (r, _name, sentAt) => {
        const at = performance.now();
        if (down.some((d) => sentAt > d.from && at < d.to)) {
          const key = `${r.status} ${certOf(r) ? "certificate" : String(codeOf(r) ?? r.error?.message)}`;
          whileDown.set(key, (whileDown.get(key) ?? 0) + 1);
        }
        if (sentAt > backAt && certOf(r) !== undefined) afterBack++;
      },
    });
    const resumed: number[] = [];
    let terminated = 0;
    const alive = () => ["b", "c"].every((n) => replicas.get(n)!.served.child.exitCode === null);
    try {
      await sleep(1_500);
      assert.ok(load.served > 0, "nothing issued before postgres was killed");
      // First the sessions alone: PostgreSQL ends every replica connection (57P01) under load, some
      // of them inside a transaction; a replica must answer 503 for those, not exit.
      for (let k = 0; k < 5; k++) {
        terminated += Number(
          pg!.admin("select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = 'mtlskit'"),
        );
        await sleep(300);
      }
      for (let k = 0; k < PG_KILLS && alive(); k++) {
        await pg!.kill();
        const d = { from: performance.now(), to: Number.POSITIVE_INFINITY };
        down.push(d);
        await sleep(2_500);
        d.to = performance.now();
        await pg!.start();
        backAt = performance.now();
        afterBack = 0;
        const end = performance.now() + 30_000;
        while (afterBack < 20 && performance.now() < end && alive()) await sleep(100);
        resumed.push(afterBack);
      }
    } finally {
      await load.stop();
    }
    t.diagnostic(
      `${terminated} sessions ended by pg_terminate_backend; while postgres was down: ${JSON.stringify(Object.fromEntries(whileDown))}; certificates after each start: ${resumed.join(", ")}`,
    );
    for (const n of ["b", "c"]) {
      const { served } = replicas.get(n)!;
      assert.equal(served.child.exitCode ?? served.child.signalCode, null, `replica ${n} exited:\n${served.output()}`);
    }
    assert.ok((whileDown.get("503 ledger-unavailable") ?? 0) > 0, "no request was answered while postgres was down");
    assert.deepEqual([...whileDown.keys()], ["503 ledger-unavailable"], "answers while postgres was down");
    assert.ok(
      resumed.length === PG_KILLS && resumed.every((n) => n >= 20),
      `issuance did not resume within 30 s of each start of postgres (certificates after each: ${resumed.join(", ")})`,
    );
    assert.deepEqual(
      ["b", "c"].map((n) => replicas.get(n)!.served.child.pid),
      pids,
      "a replica was restarted",
    );
    for (const n of ["b", "c"]) assert.equal(replicas.get(n)!.served.child.exitCode, null, `replica ${n} exited`);
    audit(t, "after the postgres restart");
  });

  it("d. a replica cut off from PostgreSQL by a proxy (refuse, blackhole, freeze) answers 503 to enroll, renew and health and issues nothing; the other goes on; after restore it issues the very token it refused", async (t) => {
    proxy = await startTcpProxy(pg!.port);
    const url = new URL(pg!.url);
    url.port = String(proxy.port);
    await startReplica("d", url.toString());
    const enrollAt = async (name: string, tok: { token: string; id: string }) => {
      const r = await requestJson(target(name), "POST", "/v1/enroll", {
        service: "web",
        token: tok.token,
        csr: csr().pem,
      });
      const der = certOf(r);
      if (der !== undefined) {
        received.push({ serial: serialOf(der), der, how: "enroll", tokenId: tok.id, renewedFrom: undefined, by: name });
        successes.set(tok.id, (successes.get(tok.id) ?? 0) + 1);
      }
      return r;
    };
    const [first, held, ...rest] = await newTokens(2 + 3 * 2);
    assert.equal((await enrollAt("d", first!)).status, 201, "D through the proxy before any cut");
    // A certificate enrolled at B renews at D: refused while D is cut off, issued once it is back.
    const heldCsr = csr();
    const enrolled = await requestJson(target("b"), "POST", "/v1/enroll", {
      service: "web",
      token: held!.token,
      csr: heldCsr.pem,
    });
    const heldDer = certOf(enrolled);
    assert.ok(heldDer, `enroll at B: ${enrolled.status} ${JSON.stringify(enrolled.body)}`);
    received.push({
      serial: serialOf(heldDer),
      der: heldDer,
      how: "enroll",
      tokenId: held!.id,
      renewedFrom: undefined,
      by: "b",
    });
    successes.set(held!.id, 1);
    const holder = trustAgent(caFile, { cert: encodePem("CERTIFICATE", heldDer), key: heldCsr.keyPem });
    httpAgents.push(holder);
    for (const mode of ["refuse", "blackhole", "freeze"] as const) {
      const refused = rest.shift()!;
      const other = rest.shift()!;
      proxy.cut(mode);
      const t0 = performance.now();
      const r = await enrollAt("d", refused);
      const ms = Math.round(performance.now() - t0);
      assert.equal(
        `${r.status} ${codeOf(r) ?? r.error?.message}`,
        "503 ledger-unavailable",
        `${mode}: D's answer (${ms} ms)`,
      );
      const health = await requestJson(target("d"), "GET", "/v1/health");
      assert.equal(health.status, 503, `${mode}: D's health: ${JSON.stringify(health.body)}`);
      if (mode === "refuse") {
        const renew = await requestJson(target("d", holder), "POST", "/v1/renew", { csr: csr().pem });
        assert.equal(`${renew.status} ${codeOf(renew)}`, "503 ledger-unavailable", "a renewal at D while cut off");
      }
      assert.equal((await enrollAt("b", other)).status, 201, `${mode}: B while D is cut off`);
      assert.equal(
        readRows().filter((row) => row.tokenId === refused.id).length,
        0,
        `${mode}: a row for the refused token`,
      );
      t.diagnostic(`${mode}: D answered 503 in ${ms} ms`);
      proxy.restore();
      const end = performance.now() + 20_000;
      let again: Reply;
      for (;;) {
        again = await enrollAt("d", refused);
        if (again.status !== 503 || performance.now() > end) break;
        await sleep(200);
      }
      assert.equal(again.status, 201, `${mode}: D after restore: ${JSON.stringify(again.body)}`);
      if (mode === "refuse") {
        const renew = await requestJson(target("d", holder), "POST", "/v1/renew", { csr: csr().pem });
        const der = certOf(renew);
        assert.ok(der, `a renewal at D after restore: ${renew.status} ${JSON.stringify(renew.body)}`);
        received.push({
          serial: serialOf(der),
          der,
          how: "renew",
          tokenId: undefined,
          renewedFrom: serialOf(heldDer),
          by: "d",
        });
      }
    }
    audit(t, "after the cuts");
  });
});
