/**
 * The startup self-check (src/service/self-check.ts): each problem of a service's own certificate
 * refused with a message naming the fix, a healthy certificate passing, createMtlsServer refusing
 * to start; and the runnable https example (examples/https/) against an applied quick start,
 * spawned as its own process on loopback.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { before, describe, it } from "node:test";
import * as tls from "node:tls";
import {
  SelfCheckError,
  assertReady,
  authorizeAny,
  authorizeSubject,
  clientOptions,
  createMtlsServer,
  loadStaticSource,
  selfCheck,
  staticSource,
  type SelfCheckOptions,
} from "../src/service/index.ts";
import { REPO, runCli, tempDir } from "./helpers/cli.ts";
import { forge, type Forged, type ForgeSpec } from "./helpers/forge.ts";

const DAY = 86_400_000;
const ID = "netsy://prod/peer/node-1";
const NETSY = { template: "netsy://{cluster}/{role}/{name}", cluster: "prod", role: "peer", name: "node-1" };
let ca: Forged;
before(() => {
  ca = forge({ ca: true, cn: "Self-check CA" });
});

const leaf = (o: ForgeSpec = {}) =>
  forge({
    issuer: ca,
    cn: "node-1",
    sans: ["DNS:node-1.prod.example", "DNS:*.peers.example", "IP:10.0.0.5", "IP:::1", `URI:${ID}`],
    eku: ["serverAuth", "clientAuth"],
    ...o,
  });
const sourceOf = (f: Forged) => staticSource({ cert: f.pem, key: f.key.pem, ca: ca.pem });
const HEALTHY: SelfCheckOptions = {
  identity: NETSY,
  advertise: ["node-1.prod.example:2379", "a.peers.example", "10.0.0.5", "[::1]:2380"],
  role: "dual",
};

describe("selfCheck: each problem of the service's own certificate, with its fix", () => {
  it("ok/a healthy certificate passes (template, URI, wildcard, ports, IPv6)", () => {
    assert.deepEqual(selfCheck(sourceOf(leaf()), HEALTHY), []);
    assert.deepEqual(selfCheck(sourceOf(leaf()), { identity: ID }), []);
    assert.deepEqual(selfCheck(sourceOf(leaf({ eku: null })), HEALTHY), [], "no EKU extension allows every purpose");
    assert.equal(assertReady(sourceOf(leaf()), HEALTHY).identity?.uri, ID);
  });

  const cases: { name: string; spec?: ForgeSpec; opts?: SelfCheckOptions; message: RegExp; fix: RegExp }[] = [
    {
      name: "wrong identity",
      opts: { ...HEALTHY, identity: { ...NETSY, name: "node-2" } },
      message:
        /identity is netsy:\/\/prod\/peer\/node-1, but this service is configured as netsy:\/\/prod\/peer\/node-2/,
      fix: /deploy the certificate issued for netsy:\/\/prod\/peer\/node-2/,
    },
    {
      name: "wrong cluster (URI form)",
      opts: { ...HEALTHY, identity: "netsy://staging/peer/node-1" },
      message: /configured as netsy:\/\/staging\/peer\/node-1/,
      fix: /correct the service's configured cluster/,
    },
    {
      name: "no URI SAN",
      spec: { sans: ["DNS:node-1.prod.example", "DNS:*.peers.example", "IP:10.0.0.5", "IP:::1"] },
      message: /no URI SAN/,
      fix: /one URI SAN \(URI:netsy:\/\/prod\/peer\/node-1\)/,
    },
    {
      name: "two URI SANs",
      spec: {
        sans: [
          "DNS:node-1.prod.example",
          "DNS:*.peers.example",
          "IP:10.0.0.5",
          "IP:::1",
          `URI:${ID}`,
          "URI:netsy://prod/client/x",
        ],
      },
      message: /2 URI SANs/,
      fix: /only URI:netsy:\/\/prod\/peer\/node-1/,
    },
    {
      name: "IP advertise address not covered (a DNS SAN does not count)",
      opts: { ...HEALTHY, advertise: ["10.0.0.6:2379"] },
      message: /do not cover advertise address 10\.0\.0\.6:2379: it has IP:10\.0\.0\.5, IP:::1/,
      fix: /IP:10\.0\.0\.6 in subjectAltName/,
    },
    {
      name: "IP given only as a DNS SAN",
      spec: { sans: ["DNS:10.0.0.5", `URI:${ID}`] },
      opts: { ...HEALTHY, advertise: ["10.0.0.5"] },
      message: /it has no IP SAN/,
      fix: /IP:10\.0\.0\.5/,
    },
    {
      name: "DNS name outside the wildcard's one label",
      opts: { ...HEALTHY, advertise: ["a.b.peers.example"] },
      message: /advertise address a\.b\.peers\.example/,
      fix: /DNS:a\.b\.peers\.example/,
    },
    {
      name: "a wildcard does not cover its own base name",
      opts: { ...HEALTHY, advertise: ["peers.example"] },
      message: /advertise address peers\.example: it has DNS:node-1\.prod\.example, DNS:\*\.peers\.example/,
      fix: /DNS:peers\.example in subjectAltName: add peers\.example to the service's addresses/,
    },
    {
      name: "the CN does not count",
      spec: { cn: "node-1.cn.example" },
      opts: { ...HEALTHY, advertise: ["node-1.cn.example"] },
      message: /its CN node-1\.cn\.example does not count/,
      fix: /DNS:node-1\.cn\.example/,
    },
    {
      name: "client-only EKU for a server",
      spec: { eku: ["clientAuth"] },
      opts: { ...HEALTHY, role: "server" },
      message: /extendedKeyUsage is clientAuth, but a server needs serverAuth/,
      fix: /usage: server .*serverAuth/,
    },
    {
      name: "server-only EKU for a dual role",
      spec: { eku: ["serverAuth"] },
      message: /a dual needs serverAuth and clientAuth/,
      fix: /usage: dual in the manifest \(clientAuth\)/,
    },
    {
      name: "expired",
      spec: { notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) },
      message: /expired at/,
      fix: /renew it/,
    },
    {
      name: "not yet valid",
      spec: { notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 10 * DAY) },
      message: /not valid yet/,
      fix: /clock/,
    },
    {
      name: "a CA certificate",
      spec: { ca: true, ku: ["digitalSignature", "keyCertSign"] },
      message: /is a CA certificate/,
      fix: /not the CA's/,
    },
    {
      name: "a leaf allowed to sign certificates",
      spec: { ku: ["digitalSignature", "keyCertSign"] },
      message: /may sign certificates \(keyUsage keyCertSign\)/,
      fix: /re-issue it as a leaf/,
    },
  ];
  for (const c of cases) {
    it(`refused/${c.name}`, () => {
      const source = sourceOf(leaf(c.spec));
      const opts = c.opts ?? HEALTHY;
      const problems = selfCheck(source, opts);
      assert.equal(problems.length, 1, JSON.stringify(problems, null, 2));
      assert.match(problems[0]!.message, c.message);
      assert.match(problems[0]!.fix, c.fix);
      assert.throws(
        () => assertReady(source, opts),
        (e: unknown) => {
          assert.ok(e instanceof SelfCheckError);
          assert.equal(e.code, "ERR_MTLSKIT_SELF_CHECK");
          assert.equal(e.exitCode, 1);
          assert.match(e.message, /^service: refusing to start: the service's own certificate has a problem:\n  - /);
          assert.ok(e.message.includes(`fix: ${problems[0]!.fix}`), e.message);
          return true;
        },
      );
    });
  }

  it("refused/every problem at once, each with its fix", () => {
    const source = sourceOf(
      leaf({
        sans: ["DNS:other.example"],
        eku: ["clientAuth"],
        notAfter: new Date(Date.now() - DAY),
        notBefore: new Date(Date.now() - 2 * DAY),
      }),
    );
    assert.throws(
      () => assertReady(source, { ...HEALTHY, role: "server" }),
      (e: unknown) => {
        assert.ok(e instanceof SelfCheckError);
        assert.equal(e.problems.length, 7, e.message); // no URI, 4 addresses, EKU, expired
        assert.match(e.message, /has 7 problems/);
        assert.equal(e.message.match(/\n    fix: /g)?.length, 7);
        return true;
      },
    );
  });

  it("invalid/a malformed expectation throws at once, as a configuration error", () => {
    const source = sourceOf(leaf());
    assert.throws(
      () => selfCheck(source, { identity: "netsy://Prod/peer/x" }),
      /expected identity "netsy:\/\/Prod\/peer\/x" is not an identity URI: it authority "Prod"/,
    );
    assert.throws(
      () => selfCheck(source, { identity: { ...NETSY, template: "netsy://{cluster}/{node}" } }),
      /unknown placeholders \{node\}/,
    );
    assert.throws(() => selfCheck(source, { advertise: [""] }), /advertise address "" is empty/);
    assert.throws(() => selfCheck(source, { role: "ca" as "server" }), /role must be "server", "client" or "dual"/);
  });

  it("ok/the template's {role} defaults to the check's role", () => {
    const f = leaf({ sans: ["URI:spiffe://quickstart.local/server/api"] });
    assert.deepEqual(
      selfCheck(sourceOf(f), {
        identity: { template: "spiffe://{cluster}.local/{role}/{name}", cluster: "quickstart", name: "api" },
      }),
      [],
    );
  });
});

describe("createMtlsServer with selfCheck", () => {
  it("refused/it refuses to start, naming the fix, and builds no server", () => {
    let created = false;
    const create = ((o: tls.TlsOptions) => (
      (created = true), tls.createServer(o)
    )) as unknown as typeof tls.createServer;
    assert.throws(
      () =>
        createMtlsServer(create, sourceOf(leaf()), {
          authorize: authorizeAny(),
          selfCheck: { ...HEALTHY, advertise: ["10.9.9.9"] },
        }),
      (e: unknown) =>
        e instanceof SelfCheckError &&
        /advertise address 10\.9\.9\.9[\s\S]*fix: re-issue it with IP:10\.9\.9\.9/.test(e.message),
    );
    assert.equal(created, false);
  });

  it("ok/a healthy certificate starts and serves", async () => {
    const server = createMtlsServer(
      https.createServer,
      sourceOf(leaf()),
      { authorize: authorizeAny(), selfCheck: HEALTHY },
      (_req: unknown, res: { end: (s: string) => void }) => res.end("ok"),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    server.close();
  });
});

/**
 * Deployments without identity URIs (issue 11): ServiceRadar, Sensu and VirtRigaud authorize by
 * subject, and their certificates carry no URI SAN. A self-check given no identity must not ask
 * for one; the certificates here are issued by apply from the examples.
 */
describe("selfCheck without a configured identity: certificates without a URI SAN (issue 11)", () => {
  let sensu: string;
  let serviceradar: string;
  const sourceIn = (pki: string, name: string) =>
    loadStaticSource({
      certFile: path.join(pki, "services", name, "cert.pem"),
      keyFile: path.join(pki, "services", name, "key.pem"),
      caFile: path.join(pki, "services", name, "ca.pem"),
    });
  before(async () => {
    for (const [example, set] of [
      ["sensu", (p: string) => (sensu = p)],
      ["serviceradar", (p: string) => (serviceradar = p)],
    ] as const) {
      const pki = path.join(tempDir(), "pki");
      const r = await runCli(["apply", "-f", path.join(REPO, "examples", `${example}.yaml`), "--pki", pki]);
      assert.equal(r.code, 0, r.err);
      set(pki);
    }
  });

  it("ok/no URI SAN and no identity configured: no problem (ServiceRadar's datasvc, Sensu's backend)", () => {
    assert.deepEqual(
      selfCheck(sourceIn(serviceradar, "datasvc"), {
        advertise: ["192.168.2.23:50057", "datasvc.serviceradar"],
        role: "dual",
      }),
      [],
    );
    assert.deepEqual(
      selfCheck(sourceIn(sensu, "backend-1"), { advertise: ["127.0.0.1:8080", "backend-1.example.com"], role: "dual" }),
      [],
    );
  });

  it("refused/the same certificate when an identity is configured: it has no URI SAN", () => {
    const problems = selfCheck(sourceIn(sensu, "backend-1"), {
      identity: "spiffe://sensu.local/dual/backend-1",
      role: "dual",
    });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!.message, /no URI SAN/);
  });

  it("ok/Sensu's backend-1 starts createMtlsServer with selfCheck on 127.0.0.1 and serves Sensu's agent over https", async () => {
    const server = createMtlsServer(
      https.createServer,
      sourceIn(sensu, "backend-1"),
      {
        authorize: authorizeSubject("CN=agent"),
        selfCheck: { advertise: ["127.0.0.1:8080", "localhost"], role: "dual" },
      },
      (_req: unknown, res: { end: (s: string) => void }) => res.end("hello agent"),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const req = https.request(
          {
            ...clientOptions(sourceIn(sensu, "agent"), { authorize: authorizeSubject("CN=backend-1.example.com") }),
            host: "127.0.0.1",
            port: (server.address() as AddressInfo).port,
            path: "/",
            agent: false,
            timeout: 10_000,
          },
          (res) => {
            let text = "";
            res.on("data", (d: Buffer) => (text += d));
            res.on("end", () => resolve(text));
          },
        );
        req.on("timeout", () => req.destroy(new Error("no answer within 10 s")));
        req.on("error", reject);
        req.end();
      });
      assert.equal(body, "hello agent");
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

/** waitForLine resolves with the first stdout line matching `re`, or rejects when the process exits or `ms` pass. */
function waitForLine(child: ChildProcess, re: RegExp, ms: number): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(
      () => reject(new Error(`no line matching ${re} within ${ms} ms; stdout: ${out}; stderr: ${err}`)),
      ms,
    );
    child.stderr!.on("data", (d: Buffer) => (err += d));
    child.stdout!.on("data", (d: Buffer) => {
      out += d;
      const m = re.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`exited ${code} before printing ${re}; stdout: ${out}; stderr: ${err}`));
    });
  });
}

/** runNode runs a TypeScript file with tsx and collects its output, killed after `ms`. */
function runNode(
  file: string,
  env: Record<string, string>,
  ms = 20_000,
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", file], {
      cwd: REPO,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
      timeout: ms,
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d));
    child.stderr.on("data", (d: Buffer) => (err += d));
    child.on("close", (code) => resolve({ code, out, err }));
  });
}

describe("examples/https: server and client on the quick-start PKI", () => {
  let pki: string;
  before(async () => {
    pki = path.join(tempDir(), "pki");
    const r = await runCli(["apply", "-f", path.join(REPO, "examples", "quickstart.yaml"), "--pki", pki]);
    assert.equal(r.code, 0, r.err);
  });

  it("ok/the worker gets its answer; db, signed by the same CA, is refused", { timeout: 60_000 }, async () => {
    const server = spawn(process.execPath, ["--import", "tsx", "examples/https/server.ts"], {
      cwd: REPO,
      env: { ...process.env, MTLSKIT_PKI: pki, PORT: "0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      const [, port] = await waitForLine(server, /\(port (\d+)\)/, 20_000);
      const ok = await runNode("examples/https/client.ts", { MTLSKIT_PKI: pki, PORT: port! });
      assert.equal(ok.code, 0, ok.err);
      assert.equal(ok.out, "hello spiffe://quickstart.local/client/worker\n");
      const refused = await runNode("examples/https/client.ts", { MTLSKIT_PKI: pki, PORT: port!, AS: "db" });
      assert.equal(refused.code, 1);
      assert.equal(refused.out, "");
      assert.match(refused.err, /request failed/);
    } finally {
      server.kill();
    }
  });

  it("refused/the server will not start on another service's certificate", { timeout: 60_000 }, async () => {
    const wrong = path.join(tempDir(), "pki");
    const r = await runCli(["apply", "-f", path.join(REPO, "examples", "quickstart.yaml"), "--pki", wrong]);
    assert.equal(r.code, 0, r.err);
    // Serve db's files as api's: right CA, wrong identity and usage for the advertised api.localhost.
    const { cpSync, rmSync } = await import("node:fs");
    rmSync(path.join(wrong, "services", "api"), { recursive: true });
    cpSync(path.join(wrong, "services", "db"), path.join(wrong, "services", "api"), { recursive: true });
    const run = await runNode("examples/https/server.ts", { MTLSKIT_PKI: wrong, PORT: "0" });
    assert.notEqual(run.code, 0);
    assert.equal(run.out, "");
    assert.match(
      run.err,
      /refusing to start[\s\S]*identity is spiffe:\/\/quickstart\.local\/dual\/db, but this service is configured as spiffe:\/\/quickstart\.local\/server\/api[\s\S]*api\.localhost[\s\S]*fix: re-issue it with DNS:api\.localhost/,
    );
  });
});
