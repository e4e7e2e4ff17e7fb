/**
 * The rotation soak (issue 13): three services on loopback, each a TLS server and a client of the
 * other two, take their credentials from the service library's fileSource (hot reload) and
 * exchange requests continuously (each request a new mutual-TLS handshake) while the test drives
 * three full CA rotations (prepare, activate --batch 1, activate, retire) with compressed
 * lifetimes (a CA of 10 minutes, leaves of 60 s renewed by apply once 3 s old). Every failed
 * request is counted: the rotation must make none.
 *
 * Each service runs from its own deployed copy of its PKI files, which the test distributes after
 * each step: first to a and b, then, after they have served with the new files, to c. So c is one
 * phase behind for a while at every step (a service that has not reloaded yet), as in a real
 * roll-out. Between steps the test waits until every service has loaded its files, which is what
 * a successful reload hook means.
 *
 * The negative control in the same file does what rotation replaces, a flag day: a new CA by
 * moving DIR/ca away and running apply (no prepare). With the same distribution, c one step
 * behind, requests between c and the others fail, and the test asserts they do.
 */
import assert from "node:assert/strict";
import { readFileSync, renameSync, writeFileSync, mkdirSync } from "node:fs";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import * as tls from "node:tls";
import { loadManifest, type LoadedManifest } from "../src/manifest/index.ts";
import { apply } from "../src/plan/apply.ts";
import { rotate } from "../src/plan/rotate.ts";
import { fileSource, type FileCredentialSource } from "../src/service/file-source.ts";
import { authorizeAny } from "../src/service/authorize.ts";
import { clientOptions, createMtlsServer } from "../src/service/options.ts";
import { checkPki } from "../src/check/index.ts";
import { tempDir, writeManifest } from "./helpers/cli.ts";

const NAMES = ["a", "b", "c"] as const;
type Name = (typeof NAMES)[number];
/** ROTATIONS: full rotations the soak drives. */
const ROTATIONS = 3;
/** SETTLE: requests each of the six (client, server) loops completes while a distribution holds, so every pair is exercised in every state. */
const SETTLE = 3;
/** WAIT_MS bounds every wait (10x what a loaded 2-core machine needs). */
const WAIT_MS = 20_000;

const MANIFEST = `version: 1
cluster: soak
identity: { uri: "spiffe://soak.test/{name}" }
ca: { validity: 1y }
services:
  a: { usage: dual, addresses: [127.0.0.1, a.soak.test] }
  b: { usage: dual, addresses: [127.0.0.1, b.soak.test] }
  c: { usage: dual, addresses: [127.0.0.1, c.soak.test] }
connections:
  - { from: a, to: b, address: 127.0.0.1 }
  - { from: b, to: c, address: 127.0.0.1 }
  - { from: c, to: a, address: 127.0.0.1 }
  - { from: a, to: c, address: 127.0.0.1 }
  - { from: b, to: a, address: 127.0.0.1 }
  - { from: c, to: b, address: 127.0.0.1 }
`;

/** compressed loads the manifest with compressed lifetimes: manifests count in hours, the soak in seconds. */
function compressed(file: string): LoadedManifest {
  const loaded = loadManifest(file);
  const m = loaded.manifest;
  return {
    ...loaded,
    manifest: {
      ...m,
      ca: { ...m.ca, validityMs: 10 * 60_000 },
      services: m.services.map((s) => ({ ...s, validityMs: 60_000, renewBeforeMs: 57_000 })),
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** until polls `ok` every 20 ms, failing with `what` after WAIT_MS. */
async function until(what: string, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const FILES = ["key.pem", "cert.pem", "ca.pem"] as const;

/** Soak is three services serving and calling each other, from deployed copies of their files. */
class Soak {
  readonly sources = new Map<Name, FileCredentialSource>();
  readonly servers = new Map<Name, tls.Server>();
  readonly ports = new Map<Name, number>();
  ok = 0;
  failed = 0;
  readonly failures: string[] = [];
  /** failedBy counts failed requests per loop, `client>server`. */
  readonly failedBy = new Map<string, number>();
  /** done counts completed requests (ok or failed) per loop, `client>server`. */
  readonly done = new Map<string, number>();
  running = true;
  private loops: Promise<void>[] = [];

  constructor(
    readonly pki: string,
    readonly deploy: string,
  ) {}

  /** distribute copies a service's files from the PKI directory to its deployed directory (each file renamed into place). */
  distribute(name: Name): void {
    const to = path.join(this.deploy, name);
    mkdirSync(to, { recursive: true });
    for (const f of FILES) {
      const tmp = path.join(to, `.${f}.tmp`);
      writeFileSync(tmp, readFileSync(path.join(this.pki, "services", name, f)), {
        mode: f === "key.pem" ? 0o600 : 0o644,
      });
      renameSync(tmp, path.join(to, f));
    }
  }

  /** loaded says whether a service's source serves what its deployed directory holds. */
  loaded(name: Name): boolean {
    const c = this.sources.get(name)!.current();
    const dir = path.join(this.deploy, name);
    return (
      c.cert === readFileSync(path.join(dir, "cert.pem"), "utf8") &&
      c.ca === readFileSync(path.join(dir, "ca.pem"), "utf8")
    );
  }

  async start(): Promise<void> {
    for (const n of NAMES) {
      this.distribute(n);
      const source = fileSource({ dir: path.join(this.deploy, n) }, { debounceMs: 20, pollMs: 50 });
      this.sources.set(n, source);
      const server = createMtlsServer(
        tls.createServer,
        source,
        { authorize: authorizeAny() },
        (socket: tls.TLSSocket) => {
          socket.on("error", () => {});
          socket.end("pong");
        },
      );
      server.on("tlsClientError", () => {});
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      this.servers.set(n, server);
      this.ports.set(n, (server.address() as { port: number }).port);
    }
    for (const c of NAMES) for (const s of NAMES) if (c !== s) this.loops.push(this.loop(c, s));
  }

  /** request makes one mutual-TLS request from `client` to `server`: a handshake, "pong" read back. */
  request(client: Name, server: Name): Promise<string | undefined> {
    return new Promise((resolve) => {
      let got = "";
      let settled = false;
      const end = (e: string | undefined) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        resolve(e);
      };
      const socket = tls.connect({
        ...clientOptions(this.sources.get(client)!, { authorize: authorizeAny() }),
        host: "127.0.0.1",
        port: this.ports.get(server)!,
      });
      const timer = setTimeout(() => end("no answer within 10 s"), 10_000);
      socket.on("data", (d: Buffer) => void (got += d.toString()));
      socket.on("end", () => end(got === "pong" ? undefined : `answer ${JSON.stringify(got)}`));
      socket.on("error", (e) => end(e.message));
      socket.on("close", () => end(got === "pong" ? undefined : "closed without an answer"));
    });
  }

  private async loop(client: Name, server: Name): Promise<void> {
    const key = `${client}>${server}`;
    while (this.running) {
      const e = await this.request(client, server);
      if (e === undefined) this.ok++;
      else {
        this.failed++;
        this.failedBy.set(key, (this.failedBy.get(key) ?? 0) + 1);
        if (this.failures.length < 20) this.failures.push(`${key}: ${e}`);
      }
      this.done.set(key, (this.done.get(key) ?? 0) + 1);
    }
  }

  /** settle waits until every loop has completed SETTLE more requests. */
  async settle(): Promise<void> {
    const keys = NAMES.flatMap((c) => NAMES.filter((s) => s !== c).map((s) => `${c}>${s}`));
    const start = new Map(keys.map((k) => [k, this.done.get(k) ?? 0]));
    await until("requests on every pair", () => keys.every((k) => (this.done.get(k) ?? 0) >= start.get(k)! + SETTLE));
  }

  /** roll distributes the PKI's files to a and b, lets them serve, then to c: c is one step behind meanwhile. */
  async roll(): Promise<void> {
    for (const group of [["a", "b"], ["c"]] as Name[][]) {
      for (const n of group) this.distribute(n);
      await until(`${group.join(", ")} to reload`, () => group.every((n) => this.loaded(n)));
      await this.settle();
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    for (const s of this.servers.values()) s.close();
    for (const s of this.sources.values()) s.close();
  }
}

/** setup issues the PKI (compressed lifetimes) and starts the three services. */
async function setup(): Promise<{ soak: Soak; loaded: LoadedManifest; pki: string }> {
  const dir = tempDir("mtlskit-soak-");
  const loaded = compressed(writeManifest(dir, MANIFEST));
  const pki = path.join(dir, "pki");
  await apply(loaded, pki, { hooks: false });
  const soak = new Soak(pki, path.join(dir, "deploy"));
  await soak.start();
  await soak.settle();
  return { soak, loaded, pki };
}

const caFingerprint = (pki: string) => readFileSync(path.join(pki, "ca", "ca.pem"), "utf8");

describe("CA rotation soak", { timeout: 180_000 }, () => {
  let stop: (() => Promise<void>) | undefined;
  after(async () => stop?.());

  it(`ok/${ROTATIONS} rotations with renewals under continuous mTLS traffic: 0 failed requests`, async () => {
    const { soak, loaded, pki } = await setup();
    stop = () => soak.stop();
    let renewed = 0;
    const renew = async () => {
      renewed += (await apply(loaded, pki, { hooks: false })).issued;
      await soak.roll();
    };
    const cas = new Set([caFingerprint(pki)]);
    for (let r = 0; r < ROTATIONS; r++) {
      await rotate(loaded, pki, "prepare", { hooks: false });
      await soak.roll();
      assert.equal(checkPki(loaded.manifest, pki).errors, 0, "check after prepare");
      await sleep(3_000); // past the renewal point: apply renews every leaf from the current CA mid-rotation
      await renew();
      await rotate(loaded, pki, "activate", { hooks: false, batch: 1 });
      await soak.roll();
      await rotate(loaded, pki, "activate", { hooks: false });
      await soak.roll();
      assert.equal(checkPki(loaded.manifest, pki).errors, 0, "check after activate");
      await renew();
      const retired = await rotate(loaded, pki, "retire", { hooks: false });
      assert.equal(retired.record?.phase, "retired");
      await soak.roll();
      assert.equal(checkPki(loaded.manifest, pki).errors, 0, "check after retire");
      cas.add(caFingerprint(pki));
    }
    await soak.stop();
    stop = undefined;
    const total = soak.ok + soak.failed;
    console.log(
      `soak: ${ROTATIONS} rotations, ${cas.size} CAs, ${renewed} certificates renewed by apply, ${total} requests, ${soak.failed} failed`,
    );
    assert.equal(cas.size, ROTATIONS + 1, "each rotation put a new CA in place");
    assert.ok(renewed >= 3 * ROTATIONS, `apply renewed leaves during the rotations (${renewed})`);
    assert.ok(total > 200, `requests were made continuously (${total})`);
    assert.equal(soak.failed, 0, `failed requests: ${soak.failures.join("; ")}`);
  });

  it("fail/negative control: a new CA without prepare (flag day) makes requests fail", async () => {
    const { soak, loaded, pki } = await setup();
    stop = () => soak.stop();
    assert.equal(soak.failed, 0);
    renameSync(path.join(pki, "ca"), path.join(pki, "..", "old-ca"));
    await apply(loaded, pki, { hooks: false });
    await soak.roll();
    await soak.stop();
    stop = undefined;
    console.log([...soak.done].map(([k, n]) => `${k} ${n}`).join(", "));
    console.log(
      `negative control: ${soak.ok + soak.failed} requests, ${soak.failed} failed (${[...soak.failedBy].map(([k, n]) => `${k} ${n}`).join(", ")}); first: ${soak.failures[0]}`,
    );
    // While c held the old CA and a and b the new one, the requests between c and them failed:
    // of the SETTLE each loop completed then, only the first may have started before the reload.
    for (const pair of ["a>c", "b>c", "c>a", "c>b"])
      assert.ok((soak.failedBy.get(pair) ?? 0) >= SETTLE - 1, `${pair} failed ${soak.failedBy.get(pair) ?? 0} times`);
  });
});
