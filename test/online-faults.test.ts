/**
 * kill -9 of `mtlskit serve` under load (issue 14, Proof: Faults). serve runs from the built
 * package as a child process (test/helpers/built.ts) on one loopback port; concurrent clients
 * enroll with many single-use tokens (some sent twice at once, some revoked, expired or for
 * another service) and renew over mTLS with the certificates they hold, while serve is killed
 * with SIGKILL KILLS times, each after a delay a seeded PRNG draws (test/helpers/prng.ts), and
 * started again on the same port. Clients retry a request whose connection failed (with the same
 * token: it may or may not have been consumed before the kill). At the end, serve stopped, the
 * ledger (DIR/ca/ledger.db, opened through openLedger; nothing is written to it) and every
 * certificate a client received must say:
 *   - no serial twice, in the ledger or among the received certificates;
 *   - every received certificate has its row, with the same SHA-256 and DER, issued for the
 *     token or the certificate the client presented, and is signed by the CA;
 *   - no token paid for two rows; each used token's usedBy is its row; no two successes for one
 *     token, however many times it was sent;
 *   - no row for a token that was refused as revoked, expired, unknown or for another service;
 *   - requests in flight at a kill ended with a connection error or with a certificate that has
 *     its row (the answer was out before the kill): never a certificate without a row.
 * Rows no client holds are allowed (committed, then the process died before answering): counted,
 * at most the requests in flight at the kills.
 * Then one `mtlskit agent` process (a service with a one-minute ttl) enrolls; serve is killed before its
 * renewal time and kept down past it (the agent fails and backs off), then started again: the
 * agent renews (a new serial in agent.json and cert.pem, its ledger row renewed from the first).
 * MTLSKIT_KILL_SEED replays other kill moments; MTLSKIT_KILLS changes how many.
 */
import assert from "node:assert/strict";
import { createHash, createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import type * as http from "node:http";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import type { AgentState } from "../src/agent/store.ts";
import { openLedger } from "../src/ledger/index.ts";
import type { IssuedRecord, TokenRecord } from "../src/ledger/ledger.ts";
import { encodePem, parseCertificatesPem } from "../src/pki/pem.ts";
import { buildPackage, runBuilt } from "./helpers/built.ts";
import { tempDir, writeManifest } from "./helpers/cli.ts";
import {
  type Csr,
  exited,
  makeCsrs,
  onlineManifest,
  type Reply,
  requestJson,
  type Served,
  seedLedger,
  startServe,
  type Target,
  trustAgent,
  within,
} from "./helpers/serve-load.ts";
import { prng } from "./helpers/prng.ts";

const KILLS = Number(process.env.MTLSKIT_KILLS ?? 5);
const SEED = Number(process.env.MTLSKIT_KILL_SEED ?? 20261214);
const ENROLLERS = 6;
const RENEWERS = 4;
/** TOKENS: enough that enrollments go on through every kill (ENROLL_PAUSE_MS between a loop's tokens). */
const TOKENS = 4_000;
const ENROLL_PAUSE_MS = 5;
const SERVICES = ["a", "b"] as const;
/** AGENT_SERVICE is the agent's service; its ttl has it renew during the test: at 0.6 to 2/3 of the lifetime from issuance (agent.ts renewAt), 36 to 40 s. */
const AGENT_SERVICE = "c";
const AGENT_TTL_S = 60;
/** TIMEOUT_MS bounds each request: a kill closes its sockets at once, so only a stalled server reaches it (then the request fails and is retried). */
const TIMEOUT_MS = 15_000;

/** Sent is one token as the clients use it: its service, and what the test made of it. */
interface Sent {
  token: string;
  id: string;
  service: (typeof SERVICES)[number];
  /** sendAs: the service named in the request (another one for wrong-service tokens). */
  sendAs: string;
  /** twice: two clients send it at the same moment. */
  twice: boolean;
  /** expect: "good" tokens may succeed once; the others must always be refused. */
  expect: "good" | "revoked" | "expired" | "wrong-service";
}

/** Received is a certificate a client got (201, or 200 answering the retry of a lost 201), with what it presented for it. */
interface Received {
  serial: string;
  der: Buffer;
  how: "enroll" | "renew";
  tokenId: string | undefined;
  renewedFrom: string | undefined;
  /** duringKill: the request was in flight when serve was killed. */
  duringKill: boolean;
}

const serialOf = (der: Buffer) => new X509Certificate(der).serialNumber.toLowerCase().replace(/^(00)+(?=.)/, "");

describe("serve killed with SIGKILL under load", { timeout: 400_000 }, () => {
  let bin: string;
  let dir: string;
  let pki: string;
  let manifest: string;
  let caFile: string;
  let ca: X509Certificate;
  const csrs = new Map<string, Csr[]>();
  const sent: Sent[] = [];
  let served: Served | undefined;
  const agents: http.Agent[] = [];
  const children: ChildProcess[] = [];

  const received: Received[] = [];
  /** refused: token id -> the error codes it was refused with. */
  const refused = new Map<string, string[]>();
  /** successes: token id -> how many 201s its sends got. */
  const successes = new Map<string, number>();
  const inFlightAtKill: number[] = [];
  /** atKills: requests in flight at a kill or sent while one was under way (until the process was gone). */
  let atKills = 0;
  let connectionErrors = 0;
  /** cutOff: requests in flight at or sent during a kill that ended with a connection error (the rest were answered before it). */
  let cutOff = 0;
  /** answeredAgain: enrollments retried after a lost answer and answered their certificate again (200). */
  let answeredAgain = 0;
  const otherAnswers: string[] = [];
  let rows: IssuedRecord[] = [];
  let tokens: TokenRecord[] = [];

  before(async () => {
    bin = buildPackage();
    dir = tempDir("mtlskit-online-faults-");
    pki = path.join(dir, "pki");
    manifest = writeManifest(
      dir,
      onlineManifest({
        cluster: "faults",
        services: [...SERVICES],
        extra: [
          `  ${AGENT_SERVICE}: { usage: dual, csr: true, ttl: ${AGENT_TTL_S}s, addresses: [${AGENT_SERVICE}.faults.test] }`,
        ],
      }),
    );
    const applied = await runBuilt(bin, ["apply", "-f", manifest, "--pki", pki]);
    assert.equal(applied.code, 0, applied.err);
    caFile = path.join(pki, "ca", "ca.pem");
    ca = new X509Certificate(readFileSync(caFile));
    for (const s of SERVICES) csrs.set(s, await makeCsrs(manifest, s, 100));

    await seedLedger(pki, async (ledger) => {
      const now = new Date();
      for (let i = 0; i < TOKENS; i++) {
        const service = SERVICES[i % 2]!;
        const kind: Sent["expect"] =
          i % 50 === 7 ? "revoked" : i % 50 === 17 ? "expired" : i % 50 === 27 ? "wrong-service" : "good";
        const { token, record } = await ledger.createToken(
          service,
          "enroll",
          kind === "expired" ? 1 : 15 * 60_000,
          now,
        );
        if (kind === "revoked") assert.equal(await ledger.revokeToken(record.id, now), true);
        const sendAs = kind === "wrong-service" ? SERVICES[(i + 1) % 2]! : service;
        sent.push({ token, id: record.id, service, sendAs, twice: i % 10 === 3, expect: kind });
      }
    });
  });

  after(async () => {
    for (const c of children) c.kill("SIGKILL");
    await Promise.all(children.map((c) => within(exited(c), 10_000, `pid ${c.pid} after SIGKILL`).catch(() => {})));
    for (const a of agents) a.destroy();
    await served?.kill9().catch(() => {});
  });

  it(`keeps serving through ${KILLS} kills (seed ${SEED})`, async () => {
    served = await startServe(bin, { manifest, pki });
    const port = served.port;
    const target: Target = { port, agent: trustAgent(caFile), tls: true, timeoutMs: TIMEOUT_MS };
    agents.push(target.agent);
    const random = prng(SEED);
    let stopping = false;
    let killing = false;
    let csrNext = 0;
    const csrFor = (service: string) => {
      const pool = csrs.get(service) ?? csrs.get("a")!;
      return pool[csrNext++ % pool.length]!;
    };
    const inFlight = new Set<{ duringKill: boolean }>();
    /** send makes one request, marking it when a kill lands while it is in flight. */
    const send = async (t: Target, route: string, body: unknown): Promise<Reply & { duringKill: boolean }> => {
      const mark = { duringKill: killing };
      inFlight.add(mark);
      try {
        return { ...(await requestJson(t, "POST", route, body)), duringKill: mark.duringKill };
      } finally {
        inFlight.delete(mark);
        if (mark.duringKill) atKills++;
      }
    };
    const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const certOf = (r: Reply, status = 201): Buffer | undefined => {
      const b = r.body as { certificate?: unknown } | undefined;
      return r.status === status && typeof b?.certificate === "string"
        ? parseCertificatesPem(b.certificate)[0]
        : undefined;
    };
    /** sameKey: the certificate is for the CSR's key (what makes a 200 the answer to a lost 201). */
    const sameKey = (der: Buffer, csr: Csr) =>
      new X509Certificate(der).publicKey.equals(createPublicKey(createPrivateKey(csr.keyPem)));
    const codeOf = (r: Reply) => (r.body as { error?: unknown } | undefined)?.error;

    /**
     * enrollOnce sends a token until it gets an answer that is not a connection failure or a 503;
     * the certificate and the CSR it was for. Every retry sends the same CSR, as the agent does
     * (agent-request.json): when a kill lost the answer to a committed enrollment, the retry is
     * answered that certificate again, 200, for this very key (docs/online-ca.md).
     */
    const enrollOnce = async (s: Sent): Promise<{ der: Buffer; csr: Csr } | undefined> => {
      const csr = csrFor(s.sendAs);
      let lost = false;
      for (let attempt = 0; attempt < 200 && !stopping; attempt++) {
        const r = await send(target, "/v1/enroll", { service: s.sendAs, token: s.token, csr: csr.pem });
        const again = lost ? certOf(r, 200) : undefined;
        if (again !== undefined && !sameKey(again, csr))
          otherAnswers.push(`200 for another key than the CSR's: ${serialOf(again)}`);
        else if (again !== undefined) answeredAgain++;
        const der = certOf(r) ?? again;
        if (der !== undefined) {
          successes.set(s.id, (successes.get(s.id) ?? 0) + 1);
          received.push({
            serial: serialOf(der),
            der,
            how: "enroll",
            tokenId: s.id,
            renewedFrom: undefined,
            duringKill: r.duringKill,
          });
          return { der, csr };
        }
        if (r.status === 0 || r.status === 503) {
          if (r.status === 0) connectionErrors++;
          if (r.status === 0 && r.duringKill) cutOff++;
          lost = true;
          await pause(20); // serve is down or starting: the same token and CSR again
          continue;
        }
        const code = String(codeOf(r));
        refused.set(s.id, [...(refused.get(s.id) ?? []), code]);
        if (r.status !== 401 && r.status !== 403) otherAnswers.push(`${r.status} ${JSON.stringify(r.body)}`);
        return undefined;
      }
      return undefined;
    };

    // Renewers start from certificates enrolled now (one good token each, taken off the list).
    const identities: { target: Target; serial: string; service: string }[] = [];
    for (let k = 0; k < RENEWERS; k++) {
      const s = sent.find((x) => x.expect === "good" && !x.twice && !successes.has(x.id))!;
      const got = await enrollOnce(s);
      assert.ok(got, `renewer ${k}: first enrollment failed: ${JSON.stringify(refused.get(s.id))}`);
      const agent = trustAgent(caFile, { cert: encodePem("CERTIFICATE", got.der), key: got.csr.keyPem, maxSockets: 1 });
      agents.push(agent);
      identities.push({
        target: { port, agent, tls: true, timeoutMs: TIMEOUT_MS },
        serial: serialOf(got.der),
        service: s.service,
      });
    }
    const queue = sent.filter((s) => !successes.has(s.id));

    const enroller = async () => {
      while (!stopping) {
        const s = queue.shift();
        if (s === undefined) return;
        if (s.twice) await Promise.all([enrollOnce(s), enrollOnce(s)]);
        else await enrollOnce(s);
        await pause(ENROLL_PAUSE_MS);
      }
    };
    const renewer = async (k: number) => {
      const id = identities[k]!;
      while (!stopping) {
        const csr = csrFor(id.service);
        const r = await send(id.target, "/v1/renew", { csr: csr.pem });
        const der = certOf(r);
        if (der !== undefined) {
          received.push({
            serial: serialOf(der),
            der,
            how: "renew",
            tokenId: undefined,
            renewedFrom: id.serial,
            duringKill: r.duringKill,
          });
          // Go on with the new certificate, as an agent does: a new identity, a new connection.
          id.target.agent.destroy();
          const agent = trustAgent(caFile, { cert: encodePem("CERTIFICATE", der), key: csr.keyPem, maxSockets: 1 });
          agents.push(agent);
          id.target = { ...id.target, agent };
          id.serial = serialOf(der);
          continue;
        }
        if (r.status === 0) {
          connectionErrors++;
          if (r.duringKill) cutOff++;
        } else if (r.status !== 503) otherAnswers.push(`renew ${r.status} ${JSON.stringify(r.body)}`);
        await pause(20);
      }
    };
    const loops = [
      ...Array.from({ length: ENROLLERS }, enroller),
      ...Array.from({ length: RENEWERS }, (_, k) => renewer(k)),
    ];

    try {
      for (let k = 0; k < KILLS; k++) {
        await pause(300 + Math.floor(random() * 1200));
        killing = true;
        for (const m of inFlight) m.duringKill = true;
        inFlightAtKill.push(inFlight.size);
        await served.kill9();
        killing = false;
        await pause(Math.floor(random() * 300)); // clients meet a closed port for a moment
        served = await startServe(bin, { manifest, pki, port });
      }
      await pause(1_000); // traffic after the last restart
    } finally {
      stopping = true;
      await within(Promise.all(loops), 30_000, "client loops after stop");
    }
    await served.stop();
    served = undefined;

    const ledger = await openLedger(pki, undefined, { create: false });
    try {
      rows = await ledger.list();
      tokens = await ledger.tokens();
    } finally {
      await ledger.close();
    }
    assert.deepEqual(
      otherAnswers,
      [],
      "answers other than 201, a retry's 200 for its own key, 401/403 refusals, 503 or a failed connection",
    );
    assert.ok(received.length >= 50, `clients received only ${received.length} certificates`);
    assert.ok(
      received.some((r) => r.how === "renew"),
      "no renewal succeeded",
    );
    assert.ok(connectionErrors > 0, "no request met a kill: the kills did not land under load");
    assert.ok(cutOff > 0, "no request in flight at a kill was cut off by it");
    assert.ok(
      inFlightAtKill.some((n) => n > 0),
      `no request was in flight at any kill: ${inFlightAtKill}`,
    );
  });

  it("no serial twice, in the ledger or among the certificates clients hold", () => {
    assert.equal(new Set(rows.map((r) => r.serial)).size, rows.length);
    assert.equal(new Set(received.map((r) => r.serial)).size, received.length);
  });

  it("every certificate a client received has its ledger row: same SHA-256 and DER, what it paid with, signed by the CA", () => {
    const bySerial = new Map(rows.map((r) => [r.serial, r]));
    for (const got of received) {
      const row = bySerial.get(got.serial);
      assert.ok(
        row,
        `serial ${got.serial} (${got.how}${got.duringKill ? ", in flight at a kill" : ""}) has no ledger row`,
      );
      assert.equal(row.sha256, createHash("sha256").update(got.der).digest("hex"), `serial ${got.serial}: SHA-256`);
      assert.ok(row.der.equals(got.der), `serial ${got.serial}: DER`);
      assert.equal(row.how, got.how, `serial ${got.serial}: how`);
      assert.equal(row.tokenId, got.tokenId, `serial ${got.serial}: token`);
      assert.equal(row.renewedFrom, got.renewedFrom, `serial ${got.serial}: renewedFrom`);
      assert.ok(new X509Certificate(got.der).verify(ca.publicKey), `serial ${got.serial}: not signed by the CA`);
    }
    for (const row of rows)
      assert.equal(row.sha256, createHash("sha256").update(row.der).digest("hex"), `row ${row.serial}`);
  });

  it("no token used twice: one row at most per token, each used token's usedBy is its row, one success at most per token", () => {
    const rowsByToken = new Map<string, IssuedRecord[]>();
    for (const r of rows)
      if (r.tokenId !== undefined) rowsByToken.set(r.tokenId, [...(rowsByToken.get(r.tokenId) ?? []), r]);
    for (const [id, list] of rowsByToken)
      assert.equal(list.length, 1, `token ${id} paid for ${list.map((r) => r.serial)}`);
    const byId = new Map(tokens.map((t) => [t.id, t]));
    for (const [id, [row]] of rowsByToken) assert.equal(byId.get(id)?.usedBy, row!.serial, `token ${id}: usedBy`);
    for (const t of tokens)
      if (t.usedBy !== undefined) assert.equal(rowsByToken.get(t.id)?.[0]?.serial, t.usedBy, `token ${t.id}`);
    for (const [id, n] of successes) assert.equal(n, 1, `token ${id} succeeded ${n} times`);
    const twice = sent.filter((s) => s.twice && s.expect === "good");
    assert.ok(
      twice.some((s) => successes.get(s.id) === 1 && refused.get(s.id)?.includes("token-used")),
      "no token sent twice at once saw one success and one token-used",
    );
  });

  it("no row for a token that was refused as revoked, expired or for another service; each refused with its reason", () => {
    const tokenIds = new Set(rows.map((r) => r.tokenId));
    const want = {
      revoked: "token-revoked",
      expired: "token-expired",
      "wrong-service": "token-wrong-service",
    } as const;
    for (const s of sent) {
      if (s.expect === "good") continue;
      assert.equal(tokenIds.has(s.id), false, `${s.expect} token ${s.id} has a row`);
      assert.equal(successes.get(s.id), undefined, `${s.expect} token ${s.id} got a certificate`);
      const codes = refused.get(s.id);
      if (codes !== undefined) for (const c of codes) assert.equal(c, want[s.expect], `${s.expect} token ${s.id}`);
    }
    // Every token refused as used has exactly the one row that used it (maybe one whose answer a kill lost).
    for (const [id, codes] of refused)
      if (codes.includes("token-used")) assert.ok(tokenIds.has(id), `token ${id} refused as used, but no row used it`);
  });

  it("requests in flight at a kill got a connection error or a certificate with its row; rows no client holds are only from the kills", (t) => {
    const held = new Set(received.map((r) => r.serial));
    const orphans = rows.filter((r) => !held.has(r.serial));
    t.diagnostic(
      `${received.length} certificates received (${received.filter((r) => r.duringKill).length} in flight at a kill), ${rows.length} rows, ${orphans.length} rows no client holds, ${connectionErrors} connection errors (${cutOff} of the ${atKills} requests in flight at or sent during a kill), ${answeredAgain} enrollments answered again after a lost answer, in flight at each kill: ${inFlightAtKill.join(" ")}`,
    );
    // An orphan row's answer was lost to a kill: at most the requests in flight at or during the kills.
    assert.ok(orphans.length <= atKills, `${orphans.length} rows no client holds, ${atKills} requests met a kill`);
  });

  it("an agent whose renewal falls while serve is down renews once serve is back", async () => {
    served = await startServe(bin, { manifest, pki });
    const port = served.port;
    const ledger = await openLedger(pki, undefined, { create: false });
    let token: string;
    try {
      token = (await ledger.createToken(AGENT_SERVICE, "enroll", 15 * 60_000, new Date())).token;
    } finally {
      await ledger.close();
    }
    const tokenFile = path.join(dir, "agent-token");
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const out = path.join(dir, "agent-out");
    const agent = spawn(
      process.execPath,
      [
        bin,
        "agent",
        "--server",
        `https://127.0.0.1:${port}`,
        "--service",
        AGENT_SERVICE,
        "--token-file",
        tokenFile,
        "--out",
        out,
        "--ca",
        caFile,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(agent);
    let log = "";
    const keep = (d: Buffer) => void (log = (log + d.toString()).slice(-8_000));
    agent.stdout.on("data", keep);
    agent.stderr.on("data", keep);
    const state = (): AgentState | undefined => {
      try {
        return JSON.parse(readFileSync(path.join(out, "agent.json"), "utf8")) as AgentState;
      } catch {
        return undefined; // not written yet
      }
    };
    /** until polls `f` every 100 ms until it is true, for at most `ms`. */
    const until = async (what: string, ms: number, f: () => boolean) => {
      const end = performance.now() + ms;
      while (!f()) {
        if (agent.exitCode !== null)
          assert.fail(`the agent exited (${agent.exitCode}) while waiting for ${what}:\n${log}`);
        if (performance.now() > end)
          assert.fail(`${what}: not within ${ms} ms; agent.json ${JSON.stringify(state())}\n${log}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };

    await until("the enrollment", 20_000, () => state()?.serial !== undefined && state()?.status === "healthy");
    const first = state()!;
    const renewAfter = Date.parse(first.renewAfter!);
    assert.ok(renewAfter > Date.now(), `renewAfter ${first.renewAfter} already passed: the test needs a longer ttl`);
    await served.kill9();
    served = undefined;
    // Down across the renewal time: the agent fails at least once and backs off.
    await until(
      "a failed renewal while serve is down",
      renewAfter - Date.now() + 15_000,
      () => (state()?.failures ?? 0) >= 1,
    );
    assert.equal(state()!.serial, first.serial, "renewed without a server");
    served = await startServe(bin, { manifest, pki, port });
    const notAfter = Date.parse(first.notAfter!);
    await until(
      "the renewal after serve came back",
      Math.max(5_000, notAfter - Date.now()),
      () => state()?.serial !== first.serial,
    );
    const renewed = state()!;
    assert.equal(renewed.status, "healthy");
    assert.equal(renewed.failures, 0);
    const leaf = new X509Certificate(readFileSync(path.join(out, "cert.pem")));
    assert.equal(serialOf(leaf.raw), renewed.serial, "cert.pem is the certificate agent.json names");
    assert.ok(leaf.verify(ca.publicKey), "the renewed certificate is not signed by the CA");
    await served.stop();
    served = undefined;
    const after = await openLedger(pki, undefined, { create: false });
    try {
      const row = await after.get(renewed.serial!);
      assert.ok(row, `no ledger row for the renewed serial ${renewed.serial}`);
      assert.equal(row.how, "renew");
      assert.equal(row.renewedFrom, first.serial);
      assert.equal(row.sha256, createHash("sha256").update(leaf.raw).digest("hex"));
    } finally {
      await after.close();
    }
  });
});
