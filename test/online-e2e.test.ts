/**
 * The online CA end to end (issue 14, "Proof"): `mtlskit serve` (startServer, in-process) + three
 * agents (the CLI's loop: createAgent over fileStore, each for its own csr service with `ttl: 1m`)
 * + three Node HTTPS services built with createMtlsServer / clientOptions on fileSource of the
 * agents' OUT directories. Each service calls the two others continuously over mTLS, each request
 * on a new connection (a new handshake with whatever credentials are current), until every agent
 * has renewed at least five times. Asserted: 0 failed requests, each agent's five renewals, and
 * that the servers were seen presenting at least six distinct certificates each (the renewals were
 * used on the wire, not only written). Bounded: at most RUN_LIMIT_MS of renewals (about 4 min).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import type * as tls from "node:tls";
import { createAgent, fileStore, type Agent } from "../src/agent/index.ts";
import {
  authorizeId,
  authorizeOneOf,
  clientOptions,
  createMtlsServer,
  fileSource,
  type FileCredentialSource,
} from "../src/service/index.ts";
import { tempDir } from "./helpers/cli.ts";
import { startOnlineCa, type OnlineCa } from "./helpers/online.ts";

const SERVICES = ["alpha", "bravo", "charlie"] as const;
type Name = (typeof SERVICES)[number];
const idOf = (name: string) => `spiffe://e2e.local/${name}`;
const RENEWALS = 5;
/** RUN_LIMIT_MS: five renewals of a one-minute leaf at 60-67% of its lifetime take about 190 s. */
const RUN_LIMIT_MS = 270_000;

const MANIFEST = `version: 1
cluster: e2e
identity:
  uri: "spiffe://{cluster}.local/{name}"
ca:
  key: ecdsa-p256
  validity: 1y
  subject: { CN: E2E CA }
defaults:
  key: ecdsa-p256
  validity: 30d
  renewBefore: 10d
serve:
  maxTtl: 1h
services:
${SERVICES.map((s) => `  ${s}:\n    usage: dual\n    csr: true\n    ttl: 1m\n    addresses: [127.0.0.1]\n`).join("")}`;

interface Node {
  name: Name;
  agent: Agent;
  renewals: number;
  /** lifetimes: notAfter less the time each renewal arrived (ms). */
  lifetimes: number[];
  source?: FileCredentialSource;
  server?: https.Server;
  port?: number;
}

describe("online CA end to end: serve + three agents + three services, one-minute leaves", () => {
  let ca: OnlineCa;
  const nodes: Node[] = [];
  let stopLoad = false;
  const loops: Promise<void>[] = [];
  const tally = { ok: 0, failed: 0, errors: [] as string[] };
  /** served: the serials each server was seen presenting. */
  const served = new Map<string, Set<string>>(SERVICES.map((s) => [s, new Set<string>()]));

  before(async () => {
    ca = await startOnlineCa(MANIFEST);
    const caPem = readFileSync(path.join(ca.pki, "ca/ca.pem"), "utf8");
    for (const name of SERVICES) {
      const token = await ca.token(name);
      const out = path.join(tempDir("mtlskit-e2e-"), name);
      const node: Node = {
        name,
        renewals: 0,
        lifetimes: [],
        agent: createAgent({
          server: ca.url,
          service: name,
          token: () => token,
          ca: caPem,
          store: fileStore(out),
          onEvent: (e) => {
            if (e.kind === "renewed") {
              node.renewals++;
              node.lifetimes.push(Date.parse(e.notAfter) - Date.now());
            }
            if (e.kind === "error") tally.errors.push(`agent ${name}: ${e.message}`);
          },
        }),
      };
      nodes.push(node);
      const first = await node.agent.step();
      assert.equal(first.did, "enrolled", first.error?.message);
      node.agent.start();
      node.source = fileSource({ dir: out }, { debounceMs: 20, pollMs: 200 });
      node.server = createMtlsServer(
        https.createServer,
        node.source,
        { authorize: authorizeOneOf(...SERVICES.filter((s) => s !== name).map(idOf)) },
        (_req, res) => res.end(name),
      );
      await new Promise<void>((r) => node.server!.listen(0, "127.0.0.1", r));
      node.port = (node.server.address() as AddressInfo).port;
    }
  });

  after(async () => {
    stopLoad = true;
    await Promise.allSettled(loops);
    for (const n of nodes) {
      await n.agent.stop();
      n.source?.close();
      await new Promise<void>((r) => (n.server ? n.server.close(() => r()) : r()));
      n.server?.closeAllConnections();
    }
    await ca?.stop();
  });

  /** call makes one request from `from` to `to` on a new connection and checks who answered. */
  function call(from: Node, to: Node): Promise<void> {
    return new Promise((resolve) => {
      const req = https.request(
        {
          ...clientOptions(from.source!, { authorize: authorizeId(idOf(to.name)) }),
          host: "127.0.0.1",
          port: to.port,
          path: "/",
          agent: false,
          timeout: 5000,
        },
        (res) => {
          const peer = (res.socket as tls.TLSSocket).getPeerCertificate();
          let body = "";
          res.on("data", (d: Buffer) => (body += d.toString()));
          res.on("end", () => {
            if (res.statusCode === 200 && body === to.name) {
              tally.ok++;
              if (peer?.serialNumber) served.get(to.name)!.add(peer.serialNumber);
            } else {
              tally.failed++;
              tally.errors.push(`${from.name} -> ${to.name}: ${res.statusCode} ${body}`);
            }
            resolve();
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error("timed out after 5 s")));
      req.on("error", (e) => {
        tally.failed++;
        tally.errors.push(`${from.name} -> ${to.name}: ${e.message}`);
        resolve();
      });
      req.end();
    });
  }

  it(`ok/${RENEWALS}+ renewals each, every service calling the others continuously: 0 failed requests`, async () => {
    const started = Date.now();
    for (const from of nodes)
      for (const to of nodes)
        if (from !== to)
          loops.push(
            (async () => {
              while (!stopLoad) {
                await call(from, to);
                await new Promise((r) => setTimeout(r, 40));
              }
            })(),
          );
    while (nodes.some((n) => n.renewals < RENEWALS) && Date.now() - started < RUN_LIMIT_MS)
      await new Promise((r) => setTimeout(r, 500));
    // A last round after the fifth renewals, so the newest certificates are used too.
    await new Promise((r) => setTimeout(r, 1500));
    stopLoad = true;
    await Promise.all(loops);
    const seconds = Math.round((Date.now() - started) / 1000);
    const summary = `${seconds} s, ${tally.ok} ok, ${tally.failed} failed, renewals ${nodes.map((n) => `${n.name}=${n.renewals}`).join(" ")}, certificates seen ${[...served].map(([k, v]) => `${k}=${v.size}`).join(" ")}`;
    console.log(`# online e2e: ${summary}`);
    for (const n of nodes)
      assert.ok(n.renewals >= RENEWALS, `${n.name} renewed ${n.renewals} times within ${RUN_LIMIT_MS} ms: ${summary}`);
    assert.equal(tally.failed, 0, `${summary}\n${tally.errors.slice(0, 10).join("\n")}`);
    assert.ok(tally.ok > 1000, summary);
    for (const [name, serials] of served)
      assert.ok(serials.size >= RENEWALS + 1, `${name} presented ${serials.size} certificates: ${summary}`);
    for (const n of nodes) {
      const s = n.agent.state();
      assert.equal(s.status, "healthy", JSON.stringify(s));
      assert.equal(s.failures, 0);
      // The lifetime is the manifest's ttl, one minute from issuance (notAfter has whole seconds).
      for (const ms of n.lifetimes)
        assert.ok(ms > 50_000 && ms <= 60_000, `${n.name}: a certificate valid ${ms} ms after it arrived`);
    }
    assert.deepEqual(
      tally.errors.filter((e) => e.startsWith("agent")),
      [],
    );
  });
});
