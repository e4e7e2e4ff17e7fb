/**
 * The online CA under load, for test/online-faults.test.ts and bench/serve.bench.ts: a manifest
 * with csr services, a pool of real CSRs (P-256 keys made here, the requests mtlskit csr would
 * make), `mtlskit serve` started from the built package as a child process (test/helpers/built.ts),
 * and keep-alive JSON requests over HTTPS with their latency. Loopback only; every wait bounded.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createPrivateKey } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as net from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { requestFor } from "../../src/ca/policy.ts";
import { openLedger } from "../../src/ledger/index.ts";
import type { Ledger } from "../../src/ledger/ledger.ts";
import { loadManifest } from "../../src/manifest/index.ts";
import { encodeCsr } from "../../src/pki/csr.ts";
import { generateKey } from "../../src/pki/keys.ts";
import { encodePem } from "../../src/pki/pem.ts";

/** onlineManifest is a manifest whose `services` are csr: true (issued online; dual, so a certificate can renew itself over mTLS), plus `extra` YAML service lines. */
export function onlineManifest(o: { cluster: string; services: string[]; extra?: string[]; serve?: string[] }): string {
  return [
    "version: 1",
    `cluster: ${o.cluster}`,
    'identity: { uri: "spiffe://{cluster}.test/{role}/{name}" }',
    "ca: { key: ecdsa-p256, validity: 1y }",
    "defaults: { key: ecdsa-p256, validity: 30d, renewBefore: 10d }",
    ...(o.serve ?? []),
    "services:",
    ...o.services.map((s) => `  ${s}: { usage: dual, csr: true, addresses: [${s}.${o.cluster}.test] }`),
    ...(o.extra ?? []),
    "",
  ].join("\n");
}

/** Csr is one pre-made request: its PEM, and the key that signed it (PEM PKCS#8), which stays here. */
export interface Csr {
  pem: string;
  keyPem: string;
}

/** makeCsrs makes `n` P-256 keys and, for each, the request `mtlskit csr --service NAME` would make from `manifestFile`. */
export async function makeCsrs(manifestFile: string, service: string, n: number): Promise<Csr[]> {
  const { manifest } = await loadManifest(manifestFile);
  const svc = manifest.services.find((s) => s.name === service);
  if (svc === undefined) throw new Error(`makeCsrs: no service ${service} in ${manifestFile}`);
  const req = requestFor(svc);
  const out: Csr[] = [];
  for (let i = 0; i < n; i++) {
    const pair = generateKey("ecdsa-p256");
    const key = createPrivateKey({ key: pair.pkcs8, format: "der", type: "pkcs8" });
    out.push({
      pem: encodePem("CERTIFICATE REQUEST", encodeCsr(req, "ecdsa-p256", pair.spki, key)),
      keyPem: encodePem("PRIVATE KEY", pair.pkcs8),
    });
  }
  return out;
}

/**
 * seedLedger runs `fill` on a fresh ledger on a tmpfs and puts the result at DIR/ca/ledger.db
 * with the ledger's online backup (fsynced), replacing any there: for many tokens before serve
 * first starts. Each createToken is its own durable commit (3 ms on a VM disk); on the tmpfs
 * it is not, and what serve then writes to DIR/ca/ledger.db is durable as always.
 */
export async function seedLedger<T>(pki: string, fill: (ledger: Ledger) => Promise<T>): Promise<T> {
  const scratch = mkdtempSync(path.join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "mtlskit-ledger-seed-"));
  try {
    const ledger = await openLedger(scratch);
    try {
      const result = await fill(ledger);
      await ledger.backup(path.join(pki, "ca", "ledger.db"));
      return result;
    } finally {
      await ledger.close();
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** freePort asks the OS for a free loopback port (for programs that cannot report the port they bound to 0). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, "127.0.0.1");
  await new Promise((resolve, reject) => {
    s.once("listening", resolve);
    s.once("error", reject);
  });
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** Reply is one JSON exchange: status (0: the connection failed), the parsed body, the error, and the latency in ms. */
export interface Reply {
  status: number;
  body: unknown;
  error: Error | undefined;
  ms: number;
}

/** Target is where requests go: a port on 127.0.0.1 and how (https with an agent, or plain http). */
export interface Target {
  port: number;
  agent: https.Agent | http.Agent;
  tls: boolean;
  /** timeoutMs bounds each request (a killed server's socket may hang otherwise). Default: 10 s. */
  timeoutMs?: number;
}

/** requestJson sends `body` (JSON) with `method` to `route` and reads the JSON answer; never rejects: a failed connection is status 0 with its error. */
export function requestJson(t: Target, method: "GET" | "POST", route: string, body?: unknown): Promise<Reply> {
  const t0 = performance.now();
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise<Reply>((resolve) => {
    let settled = false;
    const done = (status: number, parsed: unknown, error: Error | undefined) => {
      if (settled) return;
      settled = true;
      resolve({ status, body: parsed, error, ms: performance.now() - t0 });
    };
    const options: https.RequestOptions = {
      host: "127.0.0.1",
      port: t.port,
      method,
      path: route,
      agent: t.agent,
      timeout: t.timeoutMs ?? 10_000,
      headers: data === undefined ? {} : { "content-type": "application/json", "content-length": data.length },
    };
    const req = (t.tls ? https : http).request(options, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", (e) => done(0, undefined, e));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {}
        done(res.statusCode ?? 0, parsed, undefined);
      });
    });
    req.on("timeout", () => req.destroy(new Error(`request timed out after ${t.timeoutMs ?? 10_000} ms`)));
    req.on("error", (e) => done(0, undefined, e));
    req.end(data);
  });
}

/** Served is a running `mtlskit serve` child: its port, pid, output so far, and how to stop it. */
export interface Served {
  port: number;
  child: ChildProcess;
  /** output: the tail of stdout and stderr, for failure messages. */
  output: () => string;
  /** kill9 sends SIGKILL and waits (bounded) until the process is gone. */
  kill9: () => Promise<void>;
  /** stop sends SIGTERM, then SIGKILL after 5 s; waits until the process is gone. */
  stop: () => Promise<void>;
}

/** trustAgent is a keep-alive https.Agent trusting `caFile`, optionally presenting a client certificate. */
export function trustAgent(caFile: string, o: { cert?: string; key?: string; maxSockets?: number } = {}): https.Agent {
  return new https.Agent({
    keepAlive: true,
    maxSockets: o.maxSockets ?? Number.POSITIVE_INFINITY,
    ca: readFileSync(caFile),
    ...(o.cert === undefined ? {} : { cert: o.cert, key: o.key }),
  });
}

/** exited resolves once `child` has exited (at once when it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** within resolves `p`, or rejects with `what` after `ms`. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * startServe runs `node BIN serve -f MANIFEST --pki DIR --listen 127.0.0.1:PORT` (a free port when
 * not given) and waits until GET /v1/health answers 200 over TLS trusting DIR/ca/ca.pem (at most
 * `readyMs`, default 20 s; the child is killed when it does not get there).
 */
export async function startServe(
  bin: string,
  o: {
    manifest: string;
    pki: string;
    port?: number;
    env?: Record<string, string>;
    readyMs?: number;
    args?: string[];
    /** nodeArgs: flags for node itself, before BIN (`--cpu-prof`, which NODE_OPTIONS refuses). */
    nodeArgs?: string[];
  },
): Promise<Served> {
  const port = o.port ?? (await freePort());
  const child = spawn(
    process.execPath,
    [
      ...(o.nodeArgs ?? []),
      bin,
      "serve",
      "-f",
      o.manifest,
      "--pki",
      o.pki,
      "--listen",
      `127.0.0.1:${port}`,
      ...(o.args ?? []),
    ],
    { env: { ...process.env, ...o.env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let tail = "";
  const keep = (d: Buffer) => void (tail = (tail + d.toString()).slice(-8_000));
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const gone = exited(child);
  const kill9 = async () => {
    child.kill("SIGKILL");
    await within(gone, 10_000, `serve pid ${child.pid} after SIGKILL`);
  };
  const stop = async () => {
    child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await within(gone, 15_000, `serve pid ${child.pid} after SIGTERM`);
    clearTimeout(t);
  };
  const agent = trustAgent(path.join(o.pki, "ca", "ca.pem"), { maxSockets: 1 });
  const deadline = performance.now() + (o.readyMs ?? 20_000);
  try {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`serve exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${tail}`);
      const r = await requestJson({ port, agent, tls: true, timeoutMs: 2_000 }, "GET", "/v1/health");
      // Healthy and started: the banner comes once startServer (or, with --workers, every worker)
      // is listening; the port answers as soon as the first worker does.
      if (r.status === 200 && tail.includes("the online CA listens on")) break;
      if (performance.now() > deadline)
        throw new Error(
          `serve not healthy within ${o.readyMs ?? 20_000} ms (last: ${r.status} ${r.error?.message ?? JSON.stringify(r.body)}):\n${tail}`,
        );
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } catch (e) {
    await kill9();
    throw e;
  } finally {
    agent.destroy();
  }
  return { port, child, output: () => tail, kill9, stop };
}

/** percentile of sorted `xs` (nearest rank); NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
