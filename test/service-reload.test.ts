/**
 * fileSource (src/service/file-source.ts): hot reload under load, the issue's proof. HTTPS servers
 * built with createMtlsServer(fileSource) serve a continuous client loop (new connections, with
 * and without SNI, plus one keep-alive connection opened before any rotation) while their
 * certificates are rotated by rename-over, by a Kubernetes-style `..data` symlink swap, through a
 * half-written certificate and a mismatched pair, and while the trust bundle changes. Then the
 * client side, and unit tests: startup failures, the poll fallback, close(). Loopback only,
 * every wait bounded, everything closed in `after`.
 */
import assert from "node:assert/strict";
import { createHook } from "node:async_hooks";
import { X509Certificate } from "node:crypto";
import { mkdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import type * as tls from "node:tls";
import {
  authorizeAny,
  authorizeId,
  clientOptions,
  createMtlsServer,
  fileSource,
  staticSource,
  type FileCredentialSource,
  type Reload,
} from "../src/service/index.ts";
import { tempDir } from "./helpers/cli.ts";
import { forge, newKey, type Forged } from "./helpers/forge.ts";

const SERVER_ID = "spiffe://svc.test/ns/prod/api";
const CLIENT_ID = "spiffe://svc.test/ns/prod/web";
const LIMIT_MS = 2000;

const CA = forge({ ca: true, cn: "Reload CA" });
const CA2 = forge({ ca: true, cn: "Reload CA 2" });
const serverLeaf = () =>
  forge({
    issuer: CA,
    cn: "api",
    sans: ["IP:127.0.0.1", "DNS:api.localhost", `URI:${SERVER_ID}`],
    eku: ["serverAuth"],
  });
const clientLeaf = (ca: Forged = CA) =>
  forge({ issuer: ca, cn: "web", sans: [`URI:${CLIENT_ID}`], eku: ["clientAuth"] });
/** fp is a certificate's SHA-256 fingerprint as the TLS socket reports it. */
const fp = (f: Forged) => new X509Certificate(f.der).fingerprint256;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let seq = 0;
/** renameOver writes `text` to a temp file beside `file` and renames it over `file` (a new inode). */
function renameOver(file: string, text: string): void {
  const tmp = `${file}.tmp-${++seq}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/** until polls `f` every 10 ms for at most `ms`; returns the time it took, or throws naming `what`. */
async function until(f: () => boolean, ms: number, what: string): Promise<number> {
  const t0 = Date.now();
  while (!f()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
  return Date.now() - t0;
}

/** k8sPublish writes a Secret volume revision as the kubelet does: ..REV/ with the files, ..data swapped to it by renaming a new symlink over it, the old revision removed. */
function k8sPublish(dir: string, rev: string, files: Record<string, string>, first = false): void {
  mkdirSync(path.join(dir, rev));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, rev, name), text);
  const old = first ? undefined : readlinkSync(path.join(dir, "..data"));
  symlinkSync(rev, path.join(dir, "..data_tmp"));
  renameSync(path.join(dir, "..data_tmp"), path.join(dir, "..data"));
  if (old) rmSync(path.join(dir, old), { recursive: true });
  if (first) for (const name of Object.keys(files)) symlinkSync(path.join("..data", name), path.join(dir, name));
}

/** Rec is one request: when it ran, the server certificate it saw, or its error. */
interface Rec {
  start: number;
  end: number;
  fp?: string;
  error?: string;
}

/** get makes one HTTPS request and records what the client saw. */
function get(options: https.RequestOptions, recs: Rec[]): Promise<{ socket?: tls.TLSSocket; body?: string }> {
  const rec: Rec = { start: Date.now(), end: 0 };
  recs.push(rec);
  return new Promise((resolve) => {
    const req = https.request({ ...options, path: "/" }, (res) => {
      const socket = res.socket as tls.TLSSocket;
      rec.fp = socket.getPeerX509Certificate()?.fingerprint256; // undefined on a reused keep-alive socket (Node 20 keeps no peer certificate after the first response)
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (body += d));
      res.on("end", () => {
        rec.end = Date.now();
        if (res.statusCode !== 200) rec.error = `status ${res.statusCode}`;
        resolve({ socket, body });
      });
    });
    req.setTimeout(5000, () => req.destroy(new Error("request timed out")));
    req.on("error", (e: NodeJS.ErrnoException) => {
      rec.end = Date.now();
      rec.error = e.code ?? e.message;
      resolve({});
    });
    req.end();
  });
}

const listen = async (server: https.Server) => {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return (server.address() as AddressInfo).port;
};
const closeServer = (server: https.Server) =>
  new Promise<void>((r) => {
    server.close(() => r());
    server.closeAllConnections();
  });

/** Target is one server under load: its source, events and the requests made to it. */
interface Target {
  source: FileCredentialSource;
  server: https.Server;
  port: number;
  reloads: { at: number; event: Reload }[];
  errors: { at: number; error: Error }[];
  recs: Rec[];
  keepAlive: Rec[];
  keepAliveSockets: Set<tls.TLSSocket>;
  agent: https.Agent;
}

function target(spec: Parameters<typeof fileSource>[0]): Target {
  const reloads: Target["reloads"] = [];
  const errors: Target["errors"] = [];
  const source = fileSource(spec, {
    onReload: (event) => reloads.push({ at: Date.now(), event }),
    onError: (error) => errors.push({ at: Date.now(), error }),
  });
  const server = createMtlsServer(https.createServer, source, { authorize: authorizeId(CLIENT_ID) }, (_req, res) =>
    res.end("ok"),
  );
  server.keepAliveTimeout = 60_000;
  return {
    source,
    server,
    port: 0,
    reloads,
    errors,
    recs: [],
    keepAlive: [],
    keepAliveSockets: new Set(),
    agent: new https.Agent({ keepAlive: true, maxSockets: 1 }),
  };
}

/** Latencies measured by the rotation tests, printed at the end. */
const measured: string[] = [];

describe("fileSource: hot reload under load (createMtlsServer(https) x continuous clients)", () => {
  const plainDir = tempDir("mtlskit-reload-");
  const k8sDir = tempDir("mtlskit-reload-k8s-");
  const files = {
    certFile: path.join(plainDir, "cert.pem"),
    keyFile: path.join(plainDir, "key.pem"),
    caFile: path.join(plainDir, "ca.pem"),
  };
  const leaves = { plain: serverLeaf(), k8s: serverLeaf() };
  const first = { ...leaves };
  let lastRotation = 0;
  const client = clientLeaf();
  const client2 = clientLeaf(CA2);
  const dial = clientOptions(staticSource({ cert: client.pem, key: client.key.pem, ca: CA.pem }), {
    authorize: authorizeId(SERVER_ID),
  });
  const dialSni = clientOptions(staticSource({ cert: client.pem, key: client.key.pem, ca: CA.pem }), {
    authorize: authorizeId(SERVER_ID),
    servername: "api.localhost",
  });
  let plain: Target;
  let k8s: Target;
  let stop = false;
  const loops: Promise<void>[] = [];

  /** load: two workers per target (one with SNI, through SNICallback; one without, through the default context), each one new connection per request. */
  const load = (t: Target, options: https.RequestOptions) =>
    (async () => {
      while (!stop) await get({ ...options, host: "127.0.0.1", port: t.port, agent: false }, t.recs);
    })();
  /** keepAlive: one connection opened before any rotation, a request on it every 50 ms. */
  const keepAlive = (t: Target) =>
    (async () => {
      while (!stop) {
        const { socket } = await get({ ...dial, host: "127.0.0.1", port: t.port, agent: t.agent }, t.keepAlive);
        if (socket) t.keepAliveSockets.add(socket);
        await sleep(50);
      }
    })();

  before(async () => {
    writeFileSync(files.certFile, leaves.plain.pem);
    writeFileSync(files.keyFile, leaves.plain.key.pem);
    writeFileSync(files.caFile, CA.pem);
    k8sPublish(
      k8sDir,
      "..2026_01_01_00_00_00.000000001",
      { "tls.crt": leaves.k8s.pem, "tls.key": leaves.k8s.key.pem, "ca.crt": CA.pem },
      true,
    );
    plain = target(files);
    k8s = target({ dir: k8sDir, cert: "tls.crt", key: "tls.key", ca: "ca.crt" });
    for (const t of [plain, k8s]) {
      t.port = await listen(t.server);
      loops.push(keepAlive(t));
      await until(() => t.keepAliveSockets.size === 1, 2000, "the keep-alive connection");
      loops.push(load(t, dial), load(t, dialSni));
    }
    await until(() => plain.recs.length > 10 && k8s.recs.length > 10, 3000, "the load to start");
  });

  after(async () => {
    stop = true;
    await Promise.race([Promise.all(loops), sleep(6000)]);
    for (const t of [plain, k8s]) {
      t.agent.destroy();
      t.source.close();
      await closeServer(t.server);
    }
    if (measured.length > 0) console.log(`# reload latencies:\n${measured.map((m) => `#   ${m}`).join("\n")}`);
  });

  /**
   * served waits for new connections to present `want` after the rotation ended at `t0`, within
   * LIMIT_MS; then checks that every request started after the first sighting saw `want` (no
   * connection went back to the old certificate). Returns the latency.
   */
  async function served(t: Target, want: Forged, t0: number, what: string): Promise<void> {
    const f = fp(want);
    const seen = () => t.recs.find((r) => r.start >= t0 && r.fp === f);
    await until(() => seen() !== undefined, LIMIT_MS + 500, `${what}: the new certificate on a new connection`);
    const sighting = seen()!;
    lastRotation = Math.max(lastRotation, sighting.end);
    const reload = t.reloads.find(
      (r) => r.at >= t0 && r.event.current.leaf.serialHex === t.source.current().leaf.serialHex,
    );
    measured.push(
      `${what}: onReload after ${reload ? reload.at - t0 : "?"} ms, first new handshake with it done after ${sighting.end - t0} ms`,
    );
    assert.ok(sighting.end - t0 <= LIMIT_MS, `${what}: new certificate served after ${sighting.end - t0} ms`);
    await sleep(300);
    const stale = t.recs.filter((r) => r.start > sighting.end && r.fp !== undefined && r.fp !== f);
    assert.equal(stale.length, 0, `${what}: ${stale.length} requests after the switch saw another certificate`);
  }

  it("(a) rename-over: cert and key renamed in one after the other; no error reported for the window between them", async () => {
    const next = serverLeaf();
    const errorsBefore = plain.errors.length;
    renameOver(files.certFile, next.pem);
    await sleep(20); // the window: new certificate, old key
    renameOver(files.keyFile, next.key.pem);
    await served(plain, next, Date.now(), "(a) rename-over");
    assert.equal(plain.errors.length, errorsBefore, "a rotation in progress is not an error");
    leaves.plain = next;
  });

  it("(b) Kubernetes-style ..data symlink swap", async () => {
    const next = serverLeaf();
    k8sPublish(k8sDir, "..2026_01_02_00_00_00.000000002", {
      "tls.crt": next.pem,
      "tls.key": next.key.pem,
      "ca.crt": CA.pem,
    });
    await served(k8s, next, Date.now(), "(b) ..data swap");
    assert.equal(k8s.errors.length, 0);
    // and a second swap: each swap removes the revision before it, as the kubelet does
    const third = serverLeaf();
    k8sPublish(k8sDir, "..2026_01_03_00_00_00.000000003", {
      "tls.crt": third.pem,
      "tls.key": third.key.pem,
      "ca.crt": CA.pem,
    });
    await served(k8s, third, Date.now(), "(b) second ..data swap");
    leaves.k8s = third;
  });

  it("(c) a half-written certificate is refused with onError naming the file; the old one is served until it is complete", async () => {
    const next = serverLeaf();
    const errorsBefore = plain.errors.length;
    const serving = plain.source.current().leaf.serialHex;
    const t0 = Date.now();
    writeFileSync(files.certFile, next.pem.slice(0, 300)); // a writer in progress, in place
    await until(() => plain.errors.length > errorsBefore, LIMIT_MS, "onError for the half-written certificate");
    const err = plain.errors.at(-1)!.error;
    assert.ok(
      err.message.startsWith(`service: fileSource: not reloaded, still serving CN=api (serial ${serving}): `),
      err.message,
    );
    assert.ok(err.message.includes(files.certFile), err.message);
    assert.match(err.message, /fix: /);
    await sleep(200);
    const during = plain.recs.filter((r) => r.start > t0 && r.fp !== undefined);
    assert.ok(
      during.length > 0 && during.every((r) => r.fp === fp(leaves.plain)),
      "the previous certificate is served meanwhile",
    );
    renameOver(files.keyFile, next.key.pem);
    writeFileSync(files.certFile, next.pem);
    await served(plain, next, Date.now(), "(c) half-written, then completed");
    leaves.plain = next;
  });

  it("(d) a mismatched pair is refused with onError naming both files; the old pair is served until the key arrives", async () => {
    const next = serverLeaf();
    const errorsBefore = plain.errors.length;
    const t0 = Date.now();
    renameOver(files.certFile, next.pem); // the key never comes (until we write it below)
    await until(() => plain.errors.length > errorsBefore, LIMIT_MS, "onError for the mismatched pair");
    const err = plain.errors.at(-1)!.error;
    assert.ok(err.message.includes(`key ${files.keyFile} does not match certificate ${files.certFile}`), err.message);
    assert.match(err.message, /fix: use the key written together with this certificate/);
    const during = plain.recs.filter((r) => r.start > t0 && r.fp !== undefined);
    assert.ok(
      during.length > 0 && during.every((r) => r.fp === fp(leaves.plain)),
      "the previous pair is served meanwhile",
    );
    await sleep(1200); // polls pass: the same refused state is reported once
    assert.equal(plain.errors.length, errorsBefore + 1, "one report per state of the files");
    renameOver(files.keyFile, next.key.pem);
    await served(plain, next, Date.now(), "(d) mismatched, then the key");
    leaves.plain = next;
  });

  it("the trust bundle rotates too: a client of another CA is admitted once it is added, and refused once it is removed (with and without SNI)", async () => {
    const other = { host: "127.0.0.1", port: plain.port, agent: false } as const;
    const as2 = clientOptions(staticSource({ cert: client2.pem, key: client2.key.pem, ca: CA.pem }), {
      authorize: authorizeId(SERVER_ID),
    });
    const as2Sni = clientOptions(staticSource({ cert: client2.pem, key: client2.key.pem, ca: CA.pem }), {
      authorize: authorizeId(SERVER_ID),
      servername: "api.localhost",
    });
    const tryBoth = async () => {
      const recs: Rec[] = [];
      await get({ ...as2, ...other }, recs);
      await get({ ...as2Sni, ...other }, recs);
      return recs.map((r) => (r.error ? "refused" : "ok"));
    };
    assert.deepEqual(await tryBoth(), ["refused", "refused"]);
    let t0 = Date.now();
    renameOver(files.caFile, CA.pem + CA2.pem);
    await until(() => plain.reloads.some((r) => r.at >= t0), LIMIT_MS, "the bundle reload");
    assert.deepEqual(await tryBoth(), ["ok", "ok"]);
    measured.push(`bundle +CA2: onReload after ${plain.reloads.at(-1)!.at - t0} ms`);
    t0 = Date.now();
    renameOver(files.caFile, CA.pem);
    await until(() => plain.reloads.some((r) => r.at >= t0), LIMIT_MS, "the bundle reload");
    assert.deepEqual(await tryBoth(), ["refused", "refused"]);
  });

  it("zero failed requests; the keep-alive connection opened first kept working on its original certificate", async () => {
    await sleep(100);
    for (const [name, t] of [
      ["plain", plain],
      ["k8s", k8s],
    ] as const) {
      const failed = [...t.recs, ...t.keepAlive].filter((r) => r.error);
      assert.deepEqual(failed, [], `${name}: failed requests`);
      assert.ok(t.recs.length > 50, `${name}: ${t.recs.length} requests`);
      assert.equal(t.keepAliveSockets.size, 1, `${name}: the keep-alive requests all used one connection`);
      assert.ok(t.keepAlive.length > 20, `${name}: ${t.keepAlive.length} keep-alive requests`);
      assert.equal(
        t.keepAlive[0]!.fp,
        fp(first[name]),
        `${name}: the long-lived connection was opened on the first certificate`,
      );
      assert.ok(
        t.keepAlive.some((r) => r.end > lastRotation && !r.error),
        `${name}: the long-lived connection answered after the last rotation`,
      );
      measured.push(
        `${name}: ${t.recs.length} new-connection requests, ${t.keepAlive.length} keep-alive requests, 0 failed`,
      );
    }
  });
});

describe("fileSource: client-side reload", () => {
  const dir = tempDir("mtlskit-reload-client-");
  let server: https.Server;
  let source: FileCredentialSource;
  after(async () => {
    source?.close();
    if (server) await closeServer(server);
  });

  it("a client certificate rotated by rename-over reaches the server within 2 s, with no failed request", async () => {
    const first = clientLeaf();
    const next = clientLeaf();
    writeFileSync(path.join(dir, "cert.pem"), first.pem);
    writeFileSync(path.join(dir, "key.pem"), first.key.pem);
    writeFileSync(path.join(dir, "ca.pem"), CA.pem);
    source = fileSource({ dir });
    const leaf = serverLeaf();
    server = createMtlsServer(
      https.createServer,
      staticSource({ cert: leaf.pem, key: leaf.key.pem, ca: CA.pem }),
      { authorize: authorizeAny() },
      (req, res) => {
        res.end((req.socket as tls.TLSSocket).getPeerX509Certificate()!.fingerprint256);
      },
    );
    const port = await listen(server);
    const options = clientOptions(source, { authorize: authorizeId(SERVER_ID) });
    const seen: { start: number; end: number; body?: string }[] = [];
    const recs: Rec[] = [];
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        const start = Date.now();
        const { body } = await get({ ...options, host: "127.0.0.1", port, agent: false }, recs);
        seen.push({ start, end: Date.now(), body });
      }
    })();
    try {
      await until(() => seen.some((s) => s.body === fp(first)), 2000, "the first client certificate");
      renameOver(path.join(dir, "cert.pem"), next.pem);
      renameOver(path.join(dir, "key.pem"), next.key.pem);
      const t0 = Date.now();
      await until(
        () => seen.some((s) => s.start >= t0 && s.body === fp(next)),
        LIMIT_MS + 500,
        "the server to see the new client certificate",
      );
      const at = seen.find((s) => s.start >= t0 && s.body === fp(next))!.end - t0;
      measured.push(`client certificate rename-over: the server saw it after ${at} ms`);
      assert.ok(at <= LIMIT_MS, `after ${at} ms`);
    } finally {
      stop = true;
      await Promise.race([loop, sleep(6000)]);
    }
    assert.deepEqual(
      recs.filter((r) => r.error),
      [],
    );
    console.log(`# ${measured.at(-1)}`);
  });
});

describe("fileSource: units", () => {
  const dir = tempDir("mtlskit-reload-unit-");
  const write = (d: string, leaf: Forged, key = leaf.key.pem) => {
    writeFileSync(path.join(d, "cert.pem"), leaf.pem);
    writeFileSync(path.join(d, "key.pem"), key);
    writeFileSync(path.join(d, "ca.pem"), CA.pem);
  };
  const sources: FileCredentialSource[] = [];
  after(() => sources.forEach((s) => s.close()));

  it("fail/startup: a missing file throws naming it, with the fix", () => {
    assert.throws(
      () => fileSource({ dir: path.join(dir, "nope") }),
      (e: Error) => (
        assert.match(e.message, /^service: cannot read certificate .*nope\/cert\.pem: ENOENT; fix: check the path/),
        true
      ),
    );
  });
  it("fail/startup: a mismatched pair throws naming both files, with the fix", () => {
    const d = tempDir("mtlskit-reload-unit-");
    write(d, clientLeaf(), newKey().pem);
    assert.throws(
      () => fileSource({ dir: d }),
      (e: Error) => {
        assert.match(
          e.message,
          /^service: key .*key\.pem does not match certificate .*cert\.pem \(CN=web\).*; fix: use the key written together with this certificate/,
        );
        return true;
      },
    );
  });
  it("fail/startup: a half-written certificate throws naming it", () => {
    const d = tempDir("mtlskit-reload-unit-");
    const leaf = clientLeaf();
    write(d, leaf);
    writeFileSync(path.join(d, "cert.pem"), leaf.pem.slice(0, 200));
    assert.throws(
      () => fileSource({ dir: d }),
      (e: Error) => (
        assert.match(
          e.message,
          /^service: certificate .*cert\.pem is cut short: a PEM block has no END line; fix: write it again from its source/,
        ),
        true
      ),
    );
  });
  it("fail/options: bad intervals are refused", () => {
    write(dir, clientLeaf());
    assert.throws(() => fileSource({ dir }, { pollMs: 0 }), /pollMs must be a number of milliseconds >= 10; got 0/);
    assert.throws(() => fileSource({ dir }, { debounceMs: Number.NaN }), /debounceMs must be/);
  });

  it("ok/the poll finds changes no directory event announces (a file symlinked from an unwatched directory)", async () => {
    const real = tempDir("mtlskit-reload-unit-");
    const d = tempDir("mtlskit-reload-unit-");
    const leaf = clientLeaf();
    write(real, leaf);
    for (const f of ["cert.pem", "key.pem", "ca.pem"]) symlinkSync(path.join(real, f), path.join(d, f));
    const reloads: Reload[] = [];
    const s = fileSource({ dir: d }, { pollMs: 50, onReload: (r) => reloads.push(r) });
    sources.push(s);
    const next = clientLeaf();
    renameOver(path.join(real, "cert.pem"), next.pem);
    renameOver(path.join(real, "key.pem"), next.key.pem);
    await until(() => reloads.length === 1, 2000, "the poll to reload");
    assert.equal(s.current().cert, next.pem);
    assert.equal(reloads[0]!.previous.cert, leaf.pem);
    assert.equal(reloads[0]!.current, s.current());
  });

  it("ok/an onReload that throws does not end the process: the new pair is served, and the throw becomes a process warning", async () => {
    const d = tempDir("mtlskit-reload-unit-");
    write(d, clientLeaf());
    const warnings: (Error & { code?: string })[] = [];
    const onWarning = (w: Error & { code?: string }) => void warnings.push(w);
    process.on("warning", onWarning);
    try {
      const s = fileSource(
        { dir: d },
        {
          pollMs: 50,
          debounceMs: 10,
          onReload: () => {
            throw new Error("the logger is down");
          },
        },
      );
      sources.push(s);
      const next = clientLeaf();
      renameOver(path.join(d, "cert.pem"), next.pem);
      renameOver(path.join(d, "key.pem"), next.key.pem);
      await until(() => warnings.some((w) => w.code === "MTLSKIT_CALLBACK_THREW"), 3000, "the warning");
      assert.equal(s.current().cert, next.pem);
      assert.match(
        warnings.find((w) => w.code === "MTLSKIT_CALLBACK_THREW")!.message,
        /fileSource's onReload callback threw: the logger is down/,
      );
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("ok/rewriting the same content changes nothing (no onReload, the same Credentials object)", async () => {
    const d = tempDir("mtlskit-reload-unit-");
    const leaf = clientLeaf();
    write(d, leaf);
    let reloads = 0;
    const s = fileSource({ dir: d }, { pollMs: 50, debounceMs: 10, onReload: () => reloads++ });
    sources.push(s);
    const before = s.current();
    renameOver(path.join(d, "cert.pem"), leaf.pem);
    await sleep(300);
    assert.equal(reloads, 0);
    assert.equal(s.current(), before);
  });

  it("ok/close() stops every watcher and timer it made, and no change is loaded after it", async () => {
    const d = tempDir("mtlskit-reload-unit-");
    const leaf = clientLeaf();
    write(d, leaf);
    const made = new Map<number, string>();
    let recording = true; // only what the source makes: the test's own sleeps are created while this is false
    const hook = createHook({
      init: (id, type) => {
        if (recording && (type === "FSEVENTWRAP" || type === "Timeout")) made.set(id, type);
      },
      destroy: (id) => made.delete(id),
    }).enable();
    let reloads = 0;
    const s = fileSource({ dir: d }, { pollMs: 20, debounceMs: 5, onReload: () => reloads++ });
    assert.deepEqual([...made.values()].sort(), ["FSEVENTWRAP", "Timeout"], "one directory watcher and the poll timer");
    renameOver(path.join(d, "cert.pem"), clientLeaf().pem); // events, a debounce timer and a refusal (mismatch) in flight
    recording = false;
    await sleep(30);
    recording = true;
    s.close();
    s.close();
    recording = false;
    await sleep(50);
    await new Promise((r) => setImmediate(r));
    hook.disable();
    assert.deepEqual([...made.values()], [], "handles left after close()");
    const next = clientLeaf();
    renameOver(path.join(d, "cert.pem"), next.pem);
    renameOver(path.join(d, "key.pem"), next.key.pem);
    await sleep(200);
    assert.equal(reloads, 0);
    assert.equal(s.current().cert, leaf.pem, "current() keeps the last credentials");
  });
});
