/**
 * grpc-js credentials: an echo service on loopback with the quick-start PKI. The worker's call
 * succeeds; db (same CA, other identity) is refused with PERMISSION_DENIED naming it; a client
 * from another CA fails the handshake; a server without the dialed name is refused by the
 * channel; a rotated server certificate reaches new connections, and a rotated client certificate
 * reaches the next connection of a channel kept open; and examples/grpc runs.
 */
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { createHash } from "node:crypto";
import {
  authorizeAny,
  authorizeId,
  loadStaticSource,
  peerFromDer,
  staticSource,
  type CredentialSource,
  type Credentials,
} from "../src/index.ts";
import { grpcChannelCredentials, grpcServerCredentials } from "../src/service/grpc.ts";
import { EchoClient, echo, echoService } from "../examples/grpc/echo.ts";
import { REPO, runCli, tempDir } from "./helpers/cli.ts";

const WORKER = "spiffe://quickstart.local/client/worker";
const API = "spiffe://quickstart.local/server/api";
const DB = "spiffe://quickstart.local/dual/db";

let pki: string;
let otherPki: string;
const files = (dir: string, name: string) => ({
  certFile: path.join(dir, "services", name, "cert.pem"),
  keyFile: path.join(dir, "services", name, "key.pem"),
  caFile: path.join(dir, "services", name, "ca.pem"),
});
const sourceOf = (name: string, dir = pki) => loadStaticSource(files(dir, name));

/** serve starts the echo service (it replies with the caller's identity) on 127.0.0.1:0. */
async function serve(
  source: CredentialSource,
  authorize = authorizeId(WORKER),
  options: grpc.ServerOptions = {},
): Promise<{ port: number; server: grpc.Server }> {
  const server = new grpc.Server(options);
  server.addService(echoService, {
    echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const who = peerFromDer(call.getAuthContext()!.sslPeerCertificate!.raw).identity?.uri;
      cb(null, Buffer.from(`${call.request.toString()} from ${who}`));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpcServerCredentials(source, { authorize }), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  servers.push(server);
  return { port, server };
}
const servers: grpc.Server[] = [];

/** call makes one echo call as `source`, on a fresh channel, and closes it. */
async function call(
  port: number,
  source: CredentialSource,
  opts: { authorize?: ReturnType<typeof authorizeId>; servername?: string } = {},
): Promise<string> {
  const creds = grpcChannelCredentials(source, {
    authorize: opts.authorize ?? authorizeId(API),
    ...(opts.servername ? { servername: opts.servername } : {}),
  });
  const client = new EchoClient(`127.0.0.1:${port}`, creds);
  try {
    return await echo(client, "hello", 5000);
  } finally {
    client.close();
  }
}

const failure = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (e) {
    return e as grpc.ServiceError;
  }
  assert.fail("the call succeeded");
};

describe("grpc-js credentials", { timeout: 60_000 }, () => {
  before(async () => {
    pki = path.join(tempDir("mtlskit-grpc-"), "pki");
    otherPki = path.join(tempDir("mtlskit-grpc-other-"), "pki");
    for (const dir of [pki, otherPki]) {
      const r = await runCli(["apply", "-f", path.join(REPO, "examples", "quickstart.yaml"), "--pki", dir]);
      assert.equal(r.code, 0, r.err);
    }
  });
  after(() => {
    for (const s of servers) s.forceShutdown();
  });

  it("ok/an authorized client's call succeeds, and the handler sees its identity", async () => {
    const { port } = await serve(sourceOf("api"));
    assert.equal(await call(port, sourceOf("worker")), `hello from ${WORKER}`);
  });

  it("refuses/an unauthorized identity gets PERMISSION_DENIED naming it and why", async () => {
    const { port } = await serve(sourceOf("api"));
    const e = await failure(call(port, sourceOf("db")));
    assert.equal(e.code, grpc.status.PERMISSION_DENIED, e.message);
    assert.match(e.details, new RegExp(`peer ${DB} is not authorized: .*${WORKER}`));
  });

  it("refuses/a client certificate from another CA fails the handshake (UNAVAILABLE)", async () => {
    const { port } = await serve(sourceOf("api"));
    // The other CA's worker, trusting the real CA: only the server can refuse.
    const other = files(otherPki, "worker");
    const stranger = staticSource({
      cert: readFileSync(other.certFile),
      key: readFileSync(other.keyFile),
      ca: readFileSync(files(pki, "worker").caFile),
    });
    const e = await failure(call(port, stranger));
    assert.equal(e.code, grpc.status.UNAVAILABLE, e.message);
  });

  it("refuses/the channel refuses a server whose certificate lacks the dialed name", async () => {
    const { port } = await serve(sourceOf("api"));
    const e = await failure(call(port, sourceOf("worker"), { servername: "db.localhost" }));
    assert.equal(e.code, grpc.status.UNAVAILABLE, e.message);
    assert.match(e.details, /not valid for db\.localhost.*DNS:db\.localhost/);
  });

  it("refuses/the channel runs its authorizer on the server's certificate", async () => {
    const { port } = await serve(sourceOf("db"), authorizeAny());
    const e = await failure(call(port, sourceOf("worker"), { servername: "db.localhost" }));
    assert.equal(e.code, grpc.status.UNAVAILABLE, e.message);
    assert.match(e.details, new RegExp(`peer ${DB} is not authorized`));
  });

  it("ok/new connections get the source's new certificate without a restart", async () => {
    let creds: Credentials = sourceOf("api").current();
    const rotating: CredentialSource = { current: () => creds };
    const { port } = await serve(rotating);
    const served = async () => {
      const seen: string[] = [];
      const authorize = authorizeId(API);
      await call(port, sourceOf("worker"), { authorize: (p) => (seen.push(p.certSha256), authorize(p)) });
      return seen[0];
    };
    const sha = (pem: string) =>
      createHash("sha256")
        .update(Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64"))
        .digest("hex");
    assert.equal(await served(), sha(creds.cert));
    // Rotate: api's certificate re-issued (apply --reissue), read into a new snapshot.
    const r = await runCli([
      "apply",
      "-f",
      path.join(REPO, "examples", "quickstart.yaml"),
      "--pki",
      pki,
      "--reissue",
      "api",
    ]);
    assert.equal(r.code, 0, r.err);
    creds = sourceOf("api").current();
    const deadline = Date.now() + 2000;
    let now = await served();
    while (now !== sha(creds.cert) && Date.now() < deadline) now = await served();
    assert.equal(now, sha(creds.cert));
  });

  it("ok/one channel, kept open: after the client's source rotates, its next connection presents the new certificate", async () => {
    const seen: string[] = [];
    const admitWorker = authorizeId(WORKER);
    // The server ends every connection after 300 ms, so the one channel below keeps reconnecting
    // (a new handshake each time) while it stays the same channel with the same credentials.
    const { port } = await serve(sourceOf("api"), (p) => (seen.push(p.certSha256), admitWorker(p)), {
      "grpc.max_connection_age_ms": 300,
      "grpc.max_connection_age_grace_ms": 100,
    });
    let creds: Credentials = sourceOf("worker").current();
    const client = new EchoClient(
      `127.0.0.1:${port}`,
      grpcChannelCredentials({ current: () => creds }, { authorize: authorizeId(API) }),
    );
    try {
      const callOnce = async () => (await echo(client, "hello", 5000), seen.at(-1));
      const sha = (pem: string) =>
        createHash("sha256")
          .update(Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64"))
          .digest("hex");
      assert.equal(await callOnce(), sha(creds.cert));
      const r = await runCli([
        "apply",
        "-f",
        path.join(REPO, "examples", "quickstart.yaml"),
        "--pki",
        pki,
        "--reissue",
        "worker",
      ]);
      assert.equal(r.code, 0, r.err);
      const old = creds.cert;
      creds = sourceOf("worker").current();
      assert.notEqual(creds.cert, old);
      const deadline = Date.now() + 5000;
      let now = await callOnce();
      while (now !== sha(creds.cert) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        now = await callOnce();
      }
      assert.equal(now, sha(creds.cert), "the channel still presents the old client certificate");
    } finally {
      client.close();
    }
  });

  it("ok/examples/grpc: the server admits the worker and refuses db", async () => {
    const env = { ...process.env, MTLSKIT_PKI: pki, PORT: "0" };
    const server = spawn(process.execPath, ["--import", "tsx", "examples/grpc/server.ts"], {
      cwd: REPO,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      const port = await new Promise<string>((resolve, reject) => {
        let out = "";
        const timer = setTimeout(() => reject(new Error(`no port in 20 s: ${out}`)), 20_000);
        server.stdout.on("data", (d) => {
          out += d;
          const m = out.match(/listening on api\.localhost:(\d+)/);
          if (m) clearTimeout(timer), resolve(m[1]!);
        });
        server.on("exit", (code) => reject(new Error(`server exited ${code}: ${out}`)));
      });
      const client = (as: string) =>
        new Promise<{ code: number | null; out: string }>((resolve) => {
          const c = spawn(process.execPath, ["--import", "tsx", "examples/grpc/client.ts"], {
            cwd: REPO,
            env: { ...env, PORT: port, MTLSKIT_AS: as },
            stdio: ["ignore", "pipe", "pipe"],
            timeout: 20_000,
          });
          let out = "";
          c.stdout.on("data", (d) => (out += d));
          c.stderr.on("data", (d) => (out += d));
          c.on("exit", (code) => resolve({ code, out }));
        });
      const ok = await client("worker");
      assert.equal(ok.code, 0, ok.out);
      assert.match(ok.out, new RegExp(`echo: hello from ${WORKER}`));
      const refused = await client("db");
      assert.equal(refused.code, 1, refused.out);
      assert.match(refused.out, new RegExp(`code 7: peer ${DB} is not authorized`));
    } finally {
      server.kill("SIGTERM");
    }
  });
});
