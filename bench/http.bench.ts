/**
 * `npm run bench:http`: what the HTTP framework costs serve per request. The same route, the same
 * TLS, the same answer, served two ways in child processes: through src/server/http.ts's
 * listenHttps (Fastify: schema-checked JSON body, the onResponse hook, problem documents) and by
 * bare node:https (JSON.parse and a hand check of the same three fields). The load generator (this
 * process) sends POST /v1/enroll with an enroll-sized body over 16 keep-alive TLS 1.3 connections
 * and takes each server's CPU (its /proc stat: all threads, user + system) over a fixed number of
 * requests after a warm-up; the two servers take turns, rounds in alternating order, and the
 * median per server is printed. Nothing is signed or recorded: this is the framework's share of
 * bench:serve's CPU per certificate, not a certificate's cost. A benchmark, not a test.
 *
 *   npm run bench:http [-- --requests 5000] [--rounds 5]
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as https from "node:https";
import { loadavg, tmpdir } from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { listenHttps } from "../src/server/http.ts";

/** ANSWER: the size of an Issued body (certificate, chain, bundle in PEM). */
const ANSWER = {
  serial: "ab".repeat(16),
  certificate: "x".repeat(700),
  chain: "y".repeat(1500),
  bundle: "z".repeat(800),
  notBefore: "2026-01-01T00:00:00.000Z",
  notAfter: "2026-01-01T01:00:00.000Z",
  renewAfter: "2026-01-01T00:40:00.000Z",
};
const STRING = (maxLength: number) => ({ type: "string", minLength: 1, maxLength });
const BODY = {
  type: "object",
  required: ["service", "token", "csr"],
  additionalProperties: false,
  properties: { service: STRING(253), token: STRING(256), csr: STRING(60_000) },
};

/** serveOne runs one server (`fastify` or `bare`) on 127.0.0.1 and prints its port; it runs until killed. */
async function serveOne(mode: string, dir: string): Promise<void> {
  const keyPem = readFileSync(path.join(dir, "key.pem"), "utf8");
  const certPem = readFileSync(path.join(dir, "cert.pem"), "utf8");
  if (mode === "fastify") {
    const s = await listenHttps({
      host: "127.0.0.1",
      port: 0,
      tls: { keyPem, certPem, caPem: certPem },
      onResponse: () => {},
      routes: [{ method: "POST", url: "/v1/enroll", body: BODY, handle: async () => ({ status: 201, json: ANSWER }) }],
    });
    process.stdout.write(`${s.port}\n`);
    return;
  }
  const server = https.createServer(
    { key: keyPem, cert: certPem, ca: certPem, requestCert: true, rejectUnauthorized: false, keepAliveTimeout: 5_000 },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        let b: Record<string, unknown> | undefined;
        try {
          b = JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>;
        } catch {}
        const ok =
          req.headers["content-type"] === "application/json" &&
          b !== undefined &&
          Object.keys(b).length === 3 &&
          ["service", "token", "csr"].every((k) => typeof b[k] === "string" && (b[k] as string).length > 0);
        const out = JSON.stringify(ok ? ANSWER : { error: "bad-request" });
        res.writeHead(ok ? 201 : 400, { "content-type": "application/json", "content-length": Buffer.byteLength(out) });
        res.end(out);
      });
    },
  );
  server.listen(0, "127.0.0.1", () => process.stdout.write(`${(server.address() as { port: number }).port}\n`));
}

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim() || 100);
/** cpuSeconds is process `pid`'s user + system CPU (all its threads), from /proc. */
function cpuSeconds(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { requests: { type: "string", default: "5000" }, rounds: { type: "string", default: "5" } },
    strict: true,
  });
  const N = Number(values.requests);
  const dir = mkdtempSync(path.join(tmpdir(), "mtlskit-http-bench-"));
  const modes = ["fastify", "bare"] as const;
  const perRequest: Record<string, number[]> = { fastify: [], bare: [] };
  try {
    execFileSync(
      "openssl",
      [
        ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"],
        ...["-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem")],
        ...["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1"],
      ],
      { stdio: "ignore" },
    );
    const ca = readFileSync(path.join(dir, "cert.pem"));
    const body = Buffer.from(
      JSON.stringify({ service: "web", token: `mtk_${"0".repeat(16)}_${"a".repeat(43)}`, csr: "C".repeat(600) }),
    );
    for (let round = 0; round < Number(values.rounds); round++) {
      for (const mode of round % 2 ? [...modes].reverse() : modes) {
        const child = spawn(process.execPath, ["--import", "tsx", process.argv[1]!, "--serve", mode, dir], {
          stdio: ["ignore", "pipe", "inherit"],
        });
        try {
          const port = await new Promise<number>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`the ${mode} server did not start within 20 s`)), 20_000);
            child.stdout!.once("data", (d: Buffer) => {
              clearTimeout(t);
              resolve(Number(d.toString().trim()));
            });
          });
          const agent = new https.Agent({ keepAlive: true, maxSockets: 16, ca });
          const one = () =>
            new Promise<void>((resolve, reject) => {
              const req = https.request(
                {
                  host: "127.0.0.1",
                  port,
                  method: "POST",
                  path: "/v1/enroll",
                  agent,
                  timeout: 10_000,
                  headers: { "content-type": "application/json", "content-length": body.length },
                },
                (r) => {
                  r.resume();
                  r.on("end", () => (r.statusCode === 201 ? resolve() : reject(new Error(`status ${r.statusCode}`))));
                },
              );
              req.on("timeout", () => req.destroy(new Error("timed out")));
              req.on("error", reject);
              req.end(body);
            });
          const drive = async (n: number) => {
            let left = n;
            await Promise.all(
              Array.from({ length: 16 }, async () => {
                while (left-- > 0) await one();
              }),
            );
          };
          await drive(1_000); // warm-up: JIT, connections
          const c0 = cpuSeconds(child.pid!);
          await drive(N);
          const us = ((cpuSeconds(child.pid!) - c0) / N) * 1e6;
          perRequest[mode]!.push(us);
          console.log(`  round ${round + 1} ${mode}: ${us.toFixed(1)} us of server CPU per request`);
          agent.destroy();
        } finally {
          child.kill("SIGKILL");
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const f = median(perRequest.fastify!);
  const b = median(perRequest.bare!);
  console.log(
    `median server CPU per request: Fastify (listenHttps) ${f.toFixed(1)} us, bare node:https ${b.toFixed(1)} us: the framework adds ${(f - b).toFixed(1)} us (${((f / b - 1) * 100).toFixed(0)}%); load average ${loadavg()[0]!.toFixed(2)}`,
  );
}

if (process.argv[2] === "--serve") await serveOne(process.argv[3]!, process.argv[4]!);
else
  await main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(`bench:http could not measure: ${e instanceof Error ? e.message : String(e)}`);
      process.exit(1);
    },
  );
