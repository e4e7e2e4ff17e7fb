/**
 * NATS interop: ServiceRadar's broker setup (`tls { verify: true, verify_and_map: true }` plus
 * per-user permissions) with certificates from mtlskit, against Debian's nats-server (2.9.10) and
 * the npm `nats` client (v2).
 *
 * What is proven:
 * - verify_and_map maps a client certificate to a NATS user by its identity URI: the server tries
 *   email SANs, then DNS SANs, then URI SANs, then the subject DN (and logs which one matched), so
 *   each user below is named by its service's SPIFFE ID, the identity `check` verifies
 *   (identity-count, identity-mismatch). The subject DN would work too, but several services may
 *   share a CN, and nothing checks it.
 * - a mapped client round-trips a message on its own subjects, and is denied another subject
 *   (Permissions Violation) without losing its connection; a dual service maps to its own user.
 * - each deployment mistake the server refuses is one `check` flags, built as a deployment check
 *   can see: another service's certificate handed over (identity maps to no user), the server's
 *   own server-only certificate used as a client certificate (Go's clientAuth EKU check: refused),
 *   a second PKI's certificate copied in (another CA), and one from a CA re-created with the same
 *   name. No client certificate at all is refused in the handshake (no check counterpart).
 *   Handshake refusals are asserted on the server's log, which says why; the client only sees
 *   alert 42 "bad certificate" or, as often, a reset (see assertHandshakeRefused).
 * - clients verify the server: its certificate carries the IP SAN 127.0.0.1, and nats.js checks
 *   it. nats.js has a quirk here: dialing an IP it sends no servername, so Node verifies the
 *   certificate for "localhost" unless the TLS options name the host (`clientTls` does).
 *
 * One nats-server serves every case; each broken deployment has its own service in the manifest,
 * so the healthy services stay healthy for `check` while the broken ones are judged.
 *
 * A CA rotation (last describe): during the overlap a nats-server with the two-CA bundle admits
 * clients of either CA; after retire, restarted with the new bundle, it refuses a client still
 * holding the old CA's certificate.
 */
import assert from "node:assert/strict";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { connect, Events, StringCodec, type NatsConnection, type Status, type TlsOptions } from "nats";
import {
  errorsAbout,
  freePort,
  giveCertificate,
  makePki,
  need,
  startServer,
  stopAll,
  subdir,
  waitFor,
  waitForPort,
  type Pki,
  type Server,
} from "./harness.ts";
import type { CheckReport } from "../../src/check/index.ts";
import { rotate } from "../../src/plan/rotate.ts";

const MANIFEST = `
version: 1
cluster: serviceradar
identity:
  uri: "spiffe://{cluster}.local/{role}/{name}"
ca:
  key: ecdsa-p256
  validity: 10y
  subject: { O: ServiceRadar, CN: ServiceRadar Root CA }
defaults:
  key: ecdsa-p256
  validity: 90d
  renewBefore: 30d
  subject: { O: ServiceRadar }
services:
  nats:
    usage: server
    addresses: [127.0.0.1]
  agent:                     # publishes and reads metrics
    usage: client
  datasvc:                   # serves gRPC and dials NATS
    usage: dual
    addresses: [127.0.0.1]
  poller:                    # dials the datasvc only: no NATS user
    usage: client
  collector:                 # a NATS user; its host is handed the poller's files
    usage: client
  checker:                   # a NATS user; its host is handed the NATS server's files
    usage: client
  sync:                      # a NATS user; its host gets files from another PKI (a staging CA)
    usage: client
  events:                    # a NATS user; its host gets files from a CA re-created with the same name
    usage: client
connections:
  - { from: agent, to: nats, address: 127.0.0.1 }
  - { from: datasvc, to: nats, address: 127.0.0.1 }
  - { from: poller, to: datasvc, address: 127.0.0.1 }
  - { from: collector, to: nats, address: 127.0.0.1 }
  - { from: checker, to: nats, address: 127.0.0.1 }
  - { from: sync, to: nats, address: 127.0.0.1 }
  - { from: events, to: nats, address: 127.0.0.1 }
`;

/** identity is the URI SAN mtlskit puts in a service's certificate (the manifest's template). */
const identity = (role: string, name: string) => `spiffe://serviceradar.local/${role}/${name}`;

/** USERS are the NATS users, named by identity, with their subjects (publish and subscribe). */
const USERS: { user: string; subjects: string[] }[] = [
  { user: identity("client", "agent"), subjects: ["metrics.>"] },
  { user: identity("dual", "datasvc"), subjects: ["kv.>"] },
  { user: identity("client", "collector"), subjects: ["metrics.>"] },
  { user: identity("client", "checker"), subjects: ["metrics.>"] },
  { user: identity("client", "sync"), subjects: ["sync.>"] },
  { user: identity("client", "events"), subjects: ["events.>"] },
];

/** tlsBlock is nats-server's tls { } requiring a client certificate; `map`: verify_and_map (a certificate names a user). */
function tlsBlock(port: number, tls: { cert: string; key: string; ca: string }, map: boolean): string[] {
  return [
    `listen: 127.0.0.1:${port}`,
    "tls {",
    `  cert_file: ${JSON.stringify(tls.cert)}`,
    `  key_file: ${JSON.stringify(tls.key)}`,
    `  ca_file: ${JSON.stringify(tls.ca)}`,
    "  verify: true",
    ...(map ? ["  verify_and_map: true"] : []),
    "  timeout: 2",
    "}",
  ];
}

/** natsConfig renders the runbook's server config: TLS with verify_and_map, and USERS' permissions. */
function natsConfig(port: number, tls: { cert: string; key: string; ca: string }): string {
  const users = USERS.map(({ user, subjects }) => {
    const list = JSON.stringify([...subjects, "_INBOX.>"]);
    return `    { user: ${JSON.stringify(user)}, permissions: { publish: ${list}, subscribe: ${list} } }`;
  });
  return [...tlsBlock(port, tls, true), "authorization {", "  users = [", ...users, "  ]", "}", ""].join("\n");
}

/** ClientFiles are what a client is configured with; `cert`/`key` absent means no client certificate. */
interface ClientFiles {
  ca: string;
  cert?: string;
  key?: string;
}

/**
 * VerifyAs is the name the client verifies the server's certificate for: the address dialed, or
 * `null` for nats.js's default, which dialing an IP is "localhost" (it sends no servername, and
 * Node then falls back to "localhost").
 */
type VerifyAs = string | null;

/** clientTls is nats.js's TLS options for a client's files; `host` is passed on to Node's tls.connect. */
function clientTls(files: ClientFiles, verifyAs: VerifyAs): TlsOptions {
  const tls: TlsOptions & { host?: string } = { caFile: files.ca, certFile: files.cert, keyFile: files.key };
  if (verifyAs !== null) tls.host = verifyAs;
  return tls;
}

/** Refusal is what a refused connect throws: nats.js's NatsError (code AUTHORIZATION_VIOLATION...) or Node's TLS error (code ERR_SSL_...). */
type Refusal = Error & { code?: string };

const sc = StringCodec();

describe("nats-server with tls { verify, verify_and_map } and per-user permissions", () => {
  let pki: Pki;
  let healthy: CheckReport;
  let nats: Server;
  let port: number;

  /** dial connects like a service: one server, a bounded timeout, no reconnection. */
  const dial = (files: ClientFiles, verifyAs: VerifyAs = "127.0.0.1"): Promise<NatsConnection> =>
    connect({
      servers: `127.0.0.1:${port}`,
      name: "mtlskit-interop",
      timeout: 5000,
      reconnect: false,
      tls: clientTls(files, verifyAs),
    });

  /** refusal dials and returns the error (a NatsError, or Node's TLS error), failing if the connection was accepted. */
  async function refusal(files: ClientFiles, verifyAs?: VerifyAs): Promise<Refusal> {
    let nc: NatsConnection | undefined;
    try {
      nc = await dial(files, verifyAs);
    } catch (e) {
      return e as Refusal;
    } finally {
      await nc?.close();
    }
    assert.fail("nats-server accepted the connection");
  }

  /** logMark is the log's current length: `logged` reads only what the server wrote after it. */
  const logMark = (): number => readFileSync(nats.log).length;

  /** logged waits until the server's log, after `mark`, has a line matching `re`, and returns that line. */
  async function logged(mark: number, re: RegExp): Promise<string> {
    let line: string | undefined;
    const find = () =>
      (line = readFileSync(nats.log)
        .subarray(mark)
        .toString("utf8")
        .split("\n")
        .find((l) => re.test(l)));
    await waitFor(`nats-server log line ${re}`, () => find() !== undefined, 5000, nats);
    return line!;
  }

  before(async () => {
    pki = await makePki("nats", MANIFEST);
    healthy = pki.check();
    port = await freePort();
    const conf = path.join(subdir("nats-conf"), "nats-server.conf");
    const s = pki.svc("nats");
    writeFileSync(conf, natsConfig(port, s));
    // -D: the server logs which certificate field it mapped to a user.
    nats = startServer("nats", need("nats-server"), ["-c", conf, "-D"]);
    await waitForPort(port, nats);
  });

  after(async () => {
    await nats?.stop();
    await stopAll();
  });

  it("ok/agent, mapped by its identity URI, round-trips a message on metrics.> (check: no errors)", async () => {
    assert.equal(healthy.errors, 0, JSON.stringify(healthy.findings));
    const mark = logMark();
    const nc = await dial(pki.svc("agent"));
    try {
      assert.deepEqual(await roundTrip(nc, "metrics.agent.cpu", "load=0.42"), ["metrics.agent.cpu load=0.42"]);
    } finally {
      await nc.close();
    }
    // Email and DNS SANs are tried first: the agent's DNS SAN "agent" names no user, its URI does.
    assert.match(
      await logged(mark, /Using .* for auth \[/),
      /Using URI found in cert for auth \["spiffe:\/\/serviceradar\.local\/client\/agent"\]/,
    );
  });

  it('refused/agent publishing or subscribing outside metrics.>: "Permissions Violation", and its connection stays up', async () => {
    const mark = logMark();
    const nc = await dial(pki.svc("agent"));
    try {
      const denied = firstError(nc);
      nc.publish("admin.config", sc.encode("reset"));
      await nc.flush();
      const status = await denied;
      assert.equal(status.data, "PERMISSIONS_VIOLATION");
      assert.equal(status.permissionContext?.operation, "publish");
      assert.equal(status.permissionContext?.subject, "admin.config");
      // nats.js keeps the server's -ERR text for subscriptions: the iterator ends with it.
      const sub = nc.subscribe("admin.>");
      await assert.rejects(
        (async () => {
          for await (const m of sub) assert.fail(`received ${m.subject} on a denied subscription`);
        })(),
        { code: "PERMISSIONS_VIOLATION", message: `'Permissions Violation for Subscription to "admin.>"'` },
      );
      assert.deepEqual(await roundTrip(nc, "metrics.agent.mem", "used=0.5"), ["metrics.agent.mem used=0.5"]);
    } finally {
      await nc.close();
    }
    assert.match(
      await logged(mark, /Publish Violation/),
      /\[ERR\] .* Publish Violation - User "spiffe:\/\/serviceradar\.local\/client\/agent", Subject "admin\.config"/,
    );
    assert.match(
      await logged(mark, /Subscription Violation/),
      /\[ERR\] .* Subscription Violation - User "spiffe:\/\/serviceradar\.local\/client\/agent", Subject "admin\.>"/,
    );
  });

  it("ok/datasvc (dual) maps to its own user and round-trips on kv.> (check: no errors)", async () => {
    assert.deepEqual(errorsAbout(healthy, "datasvc"), []);
    const mark = logMark();
    const nc = await dial(pki.svc("datasvc"));
    try {
      assert.deepEqual(await roundTrip(nc, "kv.put", "k=v"), ["kv.put k=v"]);
    } finally {
      await nc.close();
    }
    assert.match(
      await logged(mark, /Using .* for auth \[/),
      /Using URI found in cert for auth \["spiffe:\/\/serviceradar\.local\/dual\/datasvc"\]/,
    );
  });

  it('refused/collector handed the poller\'s certificate, whose identity maps to no user: "Authorization Violation" (check: identity-mismatch)', async () => {
    giveCertificate(pki, "poller", "collector");
    assert.deepEqual(errorsAbout(pki.check(), "collector"), ["identity-mismatch collector"]);
    const mark = logMark();
    const err = await refusal(pki.svc("collector"));
    assert.equal(err.code, "AUTHORIZATION_VIOLATION");
    assert.equal(err.message, "'Authorization Violation'");
    assert.match(await logged(mark, /not found/), /User in cert \["CN=poller,O=ServiceRadar"\], not found/);
  });

  it('refused/no client certificate: the handshake is ended, nats-server logs "client didn\'t provide a certificate"', async () => {
    const mark = logMark();
    const err = await refusal({ ca: pki.svc("agent").ca });
    assertHandshakeRefused(err);
    assert.match(
      await logged(mark, /TLS handshake error/),
      /TLS handshake error: tls: client didn't provide a certificate/,
    );
  });

  it('refused/sync with a certificate from another PKI (a staging CA): "signed by unknown authority" (check: untrusted)', async () => {
    const staging = await makePki(
      "nats-staging",
      MANIFEST.replace("CN: ServiceRadar Root CA", "CN: ServiceRadar Staging CA"),
    );
    copyCertificate(staging, pki, "sync");
    assert.deepEqual(errorsAbout(pki.check(), "sync"), ["untrusted sync", "conn-client-untrusted sync -> nats"]);
    const mark = logMark();
    const err = await refusal(pki.svc("sync"));
    assertHandshakeRefused(err);
    assert.match(
      await logged(mark, /TLS handshake error/),
      /TLS handshake error: tls: failed to verify client certificate: x509: certificate signed by unknown authority$/,
    );
  });

  it('refused/events with a certificate from a CA re-created with the same name: "ECDSA verification failure" (check: bad-signature)', async () => {
    const rerun = await makePki("nats-rerun", MANIFEST);
    copyCertificate(rerun, pki, "events");
    assert.deepEqual(errorsAbout(pki.check(), "events"), [
      "bad-signature events",
      "conn-client-untrusted events -> nats",
    ]);
    const mark = logMark();
    const err = await refusal(pki.svc("events"));
    assertHandshakeRefused(err);
    assert.match(
      await logged(mark, /TLS handshake error/),
      /x509: certificate signed by unknown authority \(possibly because of "x509: ECDSA verification failure" while trying to verify candidate authority certificate "ServiceRadar Root CA"\)/,
    );
  });

  it('refused/checker presenting the server-only NATS certificate: "incompatible key usage" (check: eku-client)', async () => {
    giveCertificate(pki, "nats", "checker");
    assert.deepEqual(errorsAbout(pki.check(), "checker"), [
      "eku-client checker",
      "identity-mismatch checker",
      "conn-client-usage checker -> nats",
    ]);
    const mark = logMark();
    const err = await refusal(pki.svc("checker"));
    assertHandshakeRefused(err);
    assert.match(
      await logged(mark, /TLS handshake error/),
      /TLS handshake error: tls: failed to verify client certificate: x509: certificate specifies an incompatible key usage/,
    );
  });

  it('refused/nats.js dialing 127.0.0.1 without a TLS host verifies the server as "localhost": ERR_TLS_CERT_ALTNAME_INVALID', async () => {
    const err = await refusal(pki.svc("agent"), null);
    assert.equal(err.code, "ERR_TLS_CERT_ALTNAME_INVALID");
    assert.match(err.message, /Host: localhost\. is not in the cert's altnames: DNS:nats, IP Address:127\.0\.0\.1/);
  });
});

/**
 * assertHandshakeRefused: the client saw the server end the TLS handshake. Go (1.19) sends alert 42
 * "bad certificate" and closes the socket with the client's data unread, so the kernel may send a
 * reset first: Node reports either the alert or ECONNRESET. The server's log says why.
 */
function assertHandshakeRefused(err: Refusal): void {
  assert.ok(
    err.code === "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE" || err.code === "ECONNRESET",
    `expected alert bad certificate or a reset, got ${err.code}: ${err.message}`,
  );
  if (err.code === "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE")
    assert.match(err.message, /alert bad certificate.*SSL alert number 42/);
}

/** roundTrip subscribes to `subject`, publishes `text` there and returns what came back ("subject text"). */
async function roundTrip(nc: NatsConnection, subject: string, text: string): Promise<string[]> {
  const sub = nc.subscribe(subject, { max: 1, timeout: 5000 });
  nc.publish(subject, sc.encode(text));
  const got: string[] = [];
  for await (const m of sub) got.push(`${m.subject} ${sc.decode(m.data)}`);
  return got;
}

/** copyCertificate copies a service's certificate and key from one PKI over the same service's in another: a host handed another PKI's files. */
function copyCertificate(from: Pki, to: Pki, service: string): void {
  for (const f of ["cert", "key"] as const) copyFileSync(from.svc(service)[f], to.svc(service)[f]);
}

/** firstError resolves with the connection's first error status (bounded to 5 s). */
async function firstError(nc: NatsConnection): Promise<Status> {
  const statuses = nc.status()[Symbol.asyncIterator]();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("no error status from nats-server within 5 s")), 5000);
  });
  try {
    for (;;) {
      const next = await Promise.race([statuses.next(), timeout]);
      if (next.done) throw new Error("connection closed before an error status");
      if (next.value.type === Events.Error) return next.value;
    }
  } finally {
    clearTimeout(timer);
  }
}

// ── a CA rotation (mtlskit ca rotate), as nats-server sees it ────────────────────────────────────

const ROTATING = `
version: 1
cluster: nats-rotate
ca: { key: ecdsa-p256, validity: 1y, subject: { O: Rotate, CN: Rotate CA } }
defaults: { key: ecdsa-p256, validity: 30d, renewBefore: 7d, subject: { O: Rotate } }
services:
  early: { usage: client }
  nats:  { usage: server, addresses: [127.0.0.1] }
  late:  { usage: client }
connections:
  - { from: early, to: nats, address: 127.0.0.1 }
  - { from: late, to: nats, address: 127.0.0.1 }
`;

/** trustConfig is a nats-server requiring client certificates (tls { verify }), no user mapping: trust alone is judged. */
const trustConfig = (port: number, tls: { cert: string; key: string; ca: string }): string =>
  [...tlsBlock(port, tls, false), ""].join("\n");

describe("nats-server during a CA rotation (mtlskit ca rotate): clients of both CAs accepted during the overlap, the old CA's refused after retire", () => {
  let pki: Pki;
  let nats: Server | undefined;
  let port: number;
  let conf: string;
  /** late's certificate and key from the old CA, as a client that never reloaded holds them. */
  let oldLate: ClientFiles;

  const start = async (name: string) => {
    writeFileSync(conf, trustConfig(port, pki.svc("nats")));
    nats = startServer(name, need("nats-server"), ["-c", conf]);
    await waitForPort(port, nats);
  };
  const files = (service: string): ClientFiles => pki.svc(service);
  /** accepted dials with `f` and round-trips one message: the server admitted the client. */
  const accepted = async (f: ClientFiles, text: string) => {
    const nc = await connect({
      servers: `127.0.0.1:${port}`,
      timeout: 5000,
      reconnect: false,
      tls: clientTls(f, "127.0.0.1"),
    });
    try {
      assert.deepEqual(await roundTrip(nc, "rotate.test", text), [`rotate.test ${text}`]);
    } finally {
      await nc.close();
    }
  };

  before(async () => {
    pki = await makePki("nats-rotate", ROTATING);
    port = await freePort();
    conf = path.join(subdir("nats-rotate-conf"), "nats-server.conf");
    const keep = subdir("nats-rotate-old-late");
    oldLate = { cert: path.join(keep, "cert.pem"), key: path.join(keep, "key.pem"), ca: pki.svc("late").ca };
    copyFileSync(pki.svc("late").cert, oldLate.cert!);
    copyFileSync(pki.svc("late").key, oldLate.key!);
    await rotate(pki.loaded, pki.pki, "prepare", { hooks: false });
    await rotate(pki.loaded, pki.pki, "activate", { hooks: false, batch: 1 }); // early only
    await start("nats-rotate-overlap");
  });
  after(async () => {
    await nats?.stop();
  });

  it("ok/overlap (active, only early activated; nats still presents its old-CA certificate): the two-CA bundle admits early (next CA) and late (old CA); check has no errors", async () => {
    assert.equal(readFileSync(pki.svc("nats").ca, "utf8").match(/BEGIN CERTIFICATE/g)?.length, 2);
    await accepted(files("early"), "early-overlap");
    await accepted(files("late"), "late-overlap");
    assert.equal(pki.check().errors, 0);
  });

  it('refused/after activate and retire, nats-server restarted with the new bundle: early and late (new CA) admitted, late\'s old certificate refused ("unknown authority" in the log)', async () => {
    await rotate(pki.loaded, pki.pki, "activate", { hooks: false });
    await rotate(pki.loaded, pki.pki, "retire", { hooks: false });
    await nats?.stop();
    await start("nats-rotate-retired");
    assert.equal(readFileSync(pki.svc("nats").ca, "utf8").match(/BEGIN CERTIFICATE/g)?.length, 1);
    await accepted(files("early"), "early-retired");
    await accepted(files("late"), "late-retired");
    const mark = readFileSync(nats!.log).length;
    let refused: Refusal | undefined;
    try {
      const nc = await connect({
        servers: `127.0.0.1:${port}`,
        timeout: 5000,
        reconnect: false,
        tls: clientTls(oldLate, "127.0.0.1"),
      });
      await nc.close();
    } catch (e) {
      refused = e as Refusal;
    }
    assert.ok(refused, "nats-server admitted late's certificate from the retired CA");
    await waitFor(
      "nats-server logging the retired CA's client",
      () => /unknown authority/.test(readFileSync(nats!.log).subarray(mark).toString("utf8")),
      5000,
      nats,
    );
    assert.equal(pki.check().errors, 0);
  });
});
