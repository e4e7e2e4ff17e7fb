/**
 * gRPC: the repository's own examples (examples/grpc/server.ts and client.ts, built on the service
 * library's grpc-js credentials) run as separate processes against a fresh quick-start PKI, the
 * way a user runs them. The server admits only the worker's identity.
 *
 * Agreement with check: the certificate mistakes the server refuses (a server-only certificate
 * handed to the worker, the worker's files from another CA) are ones `check` flags; the refusal
 * of `db` is policy (its certificate is healthy, its identity is not admitted), so check has no
 * error about db and the server names db's identity instead.
 */
import assert from "node:assert/strict";
import { copyFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import {
  clonePki,
  errorsAbout,
  exec,
  giveCertificate,
  makePki,
  REPO,
  startServer,
  stopAll,
  waitFor,
  type Pki,
  type Server,
} from "./harness.ts";

const WORKER = "spiffe://quickstart.local/client/worker";
const DB = "spiffe://quickstart.local/dual/db";
const QUICKSTART = path.join(REPO, "examples", "quickstart.yaml");
const TSX = ["--import", "tsx"];

let pki: Pki;
let server: Server;
let port: number;

/** client runs examples/grpc/client.ts as `as`, with the service files of `dir`. */
function client(dir: string, as: string) {
  return exec(process.execPath, [...TSX, "examples/grpc/client.ts"], {
    cwd: REPO,
    env: { MTLSKIT_PKI: dir, PORT: String(port), MTLSKIT_AS: as },
    timeoutMs: 30_000,
  });
}

describe("grpc-js: examples/grpc server and client with the service library", { timeout: 120_000 }, () => {
  before(async () => {
    pki = await makePki("grpc", QUICKSTART);
    server = startServer("grpc-example-server", process.execPath, [...TSX, "examples/grpc/server.ts"], {
      cwd: REPO,
      env: { MTLSKIT_PKI: pki.pki, PORT: "0" },
    });
    let bound: number | undefined;
    await waitFor(
      "the grpc example server's `listening on` line",
      () => {
        bound = Number(/listening on api\.localhost:(\d+)/.exec(server.tail())?.[1]) || undefined;
        return bound !== undefined;
      },
      30_000,
      server,
    );
    port = bound!;
  });
  after(stopAll);

  it("ok/the worker's call is answered, and the server saw the worker's identity; check finds nothing wrong", () => {
    const r = client(pki.pki, "worker");
    assert.equal(r.code, 0, r.out);
    assert.equal(r.stdout.trim(), `echo: hello from ${WORKER}`);
    assert.equal(pki.check().errors, 0);
  });

  it("refused/db, same CA but an identity the server does not admit: PERMISSION_DENIED naming db (policy; check finds db healthy)", () => {
    const r = client(pki.pki, "db");
    assert.equal(r.code, 1, r.out);
    assert.match(r.stderr, /refused: code 7: /); // grpc.status.PERMISSION_DENIED
    assert.match(r.stderr, new RegExp(DB.replace(/[./]/g, "\\$&")));
    assert.deepEqual(errorsAbout(pki.check(), "db"), []);
  });

  it("refused/the worker holding api's server-only certificate: the handshake fails, and check flags the usage", () => {
    const broken = clonePki(pki, "grpc-server-only");
    giveCertificate(broken, "api", "worker");
    const r = client(broken.pki, "worker");
    assert.equal(r.code, 1, r.out);
    assert.match(r.stderr, /refused: code 14: /); // UNAVAILABLE: no connection was established
    assert.doesNotMatch(r.stdout, /echo:/);
    const codes = errorsAbout(broken.check(), "worker");
    assert.ok(codes.includes("eku-client worker"), codes.join("; "));
    assert.ok(codes.includes("conn-client-usage worker -> api"), codes.join("; "));
  });

  it("refused/the worker's files from another CA: the handshake fails both ways, and check flags the chain", async () => {
    const other = await makePki("grpc-other-ca", QUICKSTART);
    const broken = clonePki(pki, "grpc-other-ca-files");
    for (const f of ["cert", "key", "ca"] as const) copyFileSync(other.svc("worker")[f], broken.svc("worker")[f]);
    const r = client(broken.pki, "worker");
    assert.equal(r.code, 1, r.out);
    assert.match(r.stderr, /refused: code 14: /);
    const codes = errorsAbout(broken.check(), "worker");
    assert.ok(
      codes.some((c) => /^conn-.* worker -> api$/.test(c)),
      codes.join("; "),
    );
  });
});
