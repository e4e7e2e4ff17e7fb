/**
 * nginx interop: nginx 1.22 with `ssl_verify_client on` (OpenSSL 3) judges the client
 * certificates mtlskit issues, curl (OpenSSL 3) judges nginx's server certificate, and `check`
 * must agree with both.
 *
 * How: nginx runs in the foreground as one process (`daemon off; master_process off;`) with every
 * path under a run folder, on free loopback ports; its config is validated with `nginx -t` first.
 * The location echoes `$ssl_client_verify` and `$ssl_client_s_dn`, so a 200 proves which client
 * nginx saw. nginx logs why it refused a client certificate at level `info` ("client SSL
 * certificate verify error: (N:reason)"), so the error log runs at `info` and each refusal is
 * asserted on the log lines its own request added.
 *
 * - ok: a client service, a dual service and a split dual service's client.pem get 200, dialled by
 *   a DNS SAN (curl --resolve to 127.0.0.1) and by the IP SAN 127.0.0.1; check has no errors
 *   about them.
 * - refused: no client certificate; the server's certificate handed to a client (giveCertificate);
 *   a client certificate from another PKI's CA; a server deployed with another server's
 *   certificate, dialled by its own name. Each refusal is a deployment check flags, with codes.
 * - rotation: during `mtlskit ca rotate` (active, one client activated) nginx with the two-CA
 *   bundle accepts clients of both CAs; after retire, reloaded with the new bundle, it refuses a
 *   client still holding its certificate from the old CA.
 * - time: libfaketime moves the clock of nginx (LD_PRELOAD, so the process we stop is nginx
 *   itself) and of curl (the `faketime` command); their OpenSSL judges validity with time().
 *   nginx at an instant inside a client certificate's validity accepts it, one day after its
 *   notAfter refuses it ("certificate has expired"); a PKI issued 60 days ago (makePki `now`) is
 *   refused by real-time nginx and accepted by nginx (and curl) living in those days. At each
 *   instant `check(instant)` gives the same verdict.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { copyFileSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import type { CheckReport } from "../../src/check/index.ts";
import { rotate } from "../../src/plan/rotate.ts";
import {
  errorsAbout,
  exec,
  freePort,
  giveCertificate,
  makePki,
  need,
  startNginx,
  subdir,
  type Nginx,
  type Pki,
  type Site,
} from "./harness.ts";

const DAY = 86_400_000;

// ── nginx ─────────────────────────────────────────────────────────────────────────────────────

/** ports returns `n` distinct free loopback ports. */
async function ports(n: number): Promise<number[]> {
  const got = new Set<number>();
  while (got.size < n) got.add(await freePort());
  return [...got];
}

// ── curl ──────────────────────────────────────────────────────────────────────────────────────

/** Dial is one curl request: the URL's host (a name resolved to 127.0.0.1 with --resolve, or the IP), the bundle, and the client's files. */
interface Dial {
  host: string;
  port: number;
  ca: string;
  cert?: string;
  key?: string;
  /** faketime runs curl under `faketime` at this instant. */
  faketime?: Date;
}

/** Answer is curl's exit code, and the HTTP status and body when a response came. */
interface Answer {
  code: number | null;
  status: number | undefined;
  body: string;
  stderr: string;
}

/** curl requests https://HOST:PORT/ with --cacert and, when given, --cert/--key; bounded by --max-time. */
function curl(d: Dial): Answer {
  const args = ["-sS", "--max-time", "10", "--cacert", d.ca, "-w", "\n%{http_code}"];
  if (d.cert && d.key) args.push("--cert", d.cert, "--key", d.key);
  if (!/^[0-9.]+$/.test(d.host)) args.push("--resolve", `${d.host}:${d.port}:127.0.0.1`);
  args.push(`https://${d.host}:${d.port}/`);
  const r = d.faketime
    ? exec(need("faketime"), [fakeClock(d.faketime), need("curl"), ...args], { env: { TZ: "UTC" } })
    : exec(need("curl"), args);
  const lines = r.stdout.split("\n");
  const status = Number(lines.pop());
  return { code: r.code, status: status > 0 ? status : undefined, body: lines.join("\n"), stderr: r.stderr };
}

/** assertAccepted asserts nginx answered 200 to a verified client whose subject is `dn`. */
function assertAccepted(a: Answer, dn: string): void {
  assert.equal(a.code, 0, `curl failed: ${a.stderr}`);
  assert.equal(a.status, 200, a.body);
  assert.equal(a.body.trim(), `verify=SUCCESS dn=${dn}`);
}

/** assertRefused asserts nginx answered 400 with `page` in its body and logged `because` for this request. */
function assertRefused(a: Answer, page: string, log: string, because: string): void {
  assert.equal(a.code, 0, `curl failed: ${a.stderr}`);
  assert.equal(a.status, 400, a.body);
  assert.match(a.body, new RegExp(`<center>${page}</center>`));
  assert.ok(log.includes(because), `nginx's error log lacks "${because}":\n${log}`);
}

/** ask makes one request and returns nginx's answer with the error log lines that request added. */
function ask(nginx: Nginx, d: Dial): { answer: Answer; log: string } {
  const m = nginx.mark();
  const answer = curl(d);
  return { answer, log: nginx.logSince(m) };
}

// ── time ──────────────────────────────────────────────────────────────────────────────────────

/** fakeClock renders an instant the way faketime's command line takes it (read in TZ=UTC); the clock runs on from there. */
function fakeClock(at: Date): string {
  return at.toISOString().slice(0, 19).replace("T", " ");
}

/** libfaketime is the preload library of Debian's libfaketime package. */
function libfaketime(): string {
  need("faketime");
  const r = exec("dpkg", ["-L", "libfaketime"]);
  const lib = r.stdout.split("\n").find((l) => l.endsWith("/libfaketime.so.1"));
  assert.ok(lib, `libfaketime.so.1 not found in dpkg -L libfaketime:\n${r.out}`);
  return lib;
}

/** fakeTimeEnv starts a process's clock at `at` (it runs on from there); monotonic time stays real for nginx's timers. */
function fakeTimeEnv(at: Date): NodeJS.ProcessEnv {
  return { LD_PRELOAD: libfaketime(), FAKETIME: `@${fakeClock(at)}`, FAKETIME_DONT_FAKE_MONOTONIC: "1", TZ: "UTC" };
}

/** notAfter reads a certificate's notAfter. */
function notAfter(certFile: string): Date {
  const d = new Date(new X509Certificate(readFileSync(certFile)).validTo);
  assert.ok(!Number.isNaN(d.getTime()), `no notAfter in ${certFile}`);
  return d;
}

/** flagged is the set of `code about` errors check reports about a service, sorted (a code may come once per SAN or per side). */
const flagged = (report: CheckReport, service: string) => [...new Set(errorsAbout(report, service))].sort();

// ── manifests ─────────────────────────────────────────────────────────────────────────────────

/**
 * The main PKI: nginx serves `web`; worker (client), db (dual) and node (dual, split) are let in.
 * intern, outsider and mirror exist to be broken: intern gets web's server-only certificate,
 * outsider another CA's certificate, mirror (a second server) web's certificate.
 */
const MAIN = `
version: 1
cluster: nginx-interop
identity:
  uri: "spiffe://{cluster}.local/{role}/{name}"
ca:
  key: ecdsa-p256
  validity: 1y
  subject: { O: Interop, CN: Interop CA }
defaults:
  key: ecdsa-p256
  validity: 30d
  renewBefore: 7d
  subject: { O: Interop }
services:
  web:      { usage: server, addresses: [127.0.0.1, web.test] }
  mirror:   { usage: server, addresses: [127.0.0.1, mirror.test] }
  worker:   { usage: client }
  db:       { usage: dual, key: rsa-2048, addresses: [127.0.0.1, db.test] }
  node:     { usage: dual, split: true, addresses: [127.0.0.1, node.test] }
  intern:   { usage: client }
  outsider: { usage: client }
  auditor:  { usage: client }
connections:
  - { from: worker, to: web, address: web.test }
  - { from: db, to: web, address: 127.0.0.1 }
  - { from: node, to: web, address: web.test }
  - { from: intern, to: web, address: web.test }
  - { from: outsider, to: web, address: web.test }
  - { from: auditor, to: mirror, address: mirror.test }
`;

/** A second PKI: the same manifest but for the CA's name, so its certificates differ from MAIN's only by their issuer. */
const OTHER = MAIN.replace("CN: Interop CA", "CN: Other CA");

/** TIMED: a client valid 30 days and a server valid 60, so one day after the client's notAfter only the client has expired. */
const TIMED = `
version: 1
cluster: nginx-time
ca:
  key: ecdsa-p256
  validity: 1y
  subject: { O: Timed, CN: Timed CA }
defaults:
  key: ecdsa-p256
  validity: 30d
  renewBefore: 7d
  subject: { O: Timed }
services:
  web:    { usage: server, validity: 60d, addresses: [127.0.0.1, web.test] }
  worker: { usage: client }
connections:
  - { from: worker, to: web, address: web.test }
`;

/** PAST: issued 60 days ago; worker (30d) and vault (30d) have expired, web (90d) is still valid. */
const PAST = `
version: 1
cluster: nginx-past
ca:
  key: ecdsa-p256
  validity: 1y
  subject: { O: Past, CN: Past CA }
defaults:
  key: ecdsa-p256
  validity: 30d
  renewBefore: 7d
  subject: { O: Past }
services:
  web:    { usage: server, validity: 90d, addresses: [127.0.0.1, web.test] }
  vault:  { usage: server, addresses: [127.0.0.1, vault.test] }
  worker: { usage: client }
connections:
  - { from: worker, to: web, address: web.test }
  - { from: worker, to: vault, address: vault.test }
`;

/** site is the server block of a managed server service on `port`. */
function site(pki: Pki, service: string, port: number): Site {
  const s = pki.svc(service);
  return { port, cert: s.cert, key: s.key, ca: s.ca };
}

/** client is a Dial presenting a managed client service's certificate (a split service's client.pem with `split`). */
function client(
  pki: Pki,
  service: string,
  host: string,
  port: number,
  opts: { split?: boolean; faketime?: Date } = {},
): Dial {
  const s = pki.svc(service);
  const cert = opts.split ? path.join(s.dir, "client.pem") : s.cert;
  const key = opts.split ? path.join(s.dir, "client-key.pem") : s.key;
  return { host, port, ca: s.ca, cert, key, faketime: opts.faketime };
}

// ── cases ─────────────────────────────────────────────────────────────────────────────────────

describe("nginx ssl_verify_client: which clients mtlskit's certificates let in", () => {
  let pki: Pki;
  let other: Pki;
  let nginx: Nginx;
  let webPort: number;
  let mirrorPort: number;

  before(async () => {
    [pki, other] = await Promise.all([makePki("nginx-main", MAIN), makePki("nginx-other", OTHER)]);
    // mirror is deployed with web's certificate before nginx loads it: the host got the wrong files.
    giveCertificate(pki, "web", "mirror");
    [webPort, mirrorPort] = (await ports(2)) as [number, number];
    nginx = await startNginx("nginx-main", [site(pki, "web", webPort), site(pki, "mirror", mirrorPort)]);
  });
  after(() => nginx?.server.stop());

  it("ok/a client service dialling web.test (curl --resolve to 127.0.0.1): 200, SUCCESS, CN=worker; check has no errors about worker", () => {
    assertAccepted(curl(client(pki, "worker", "web.test", webPort)), "CN=worker,O=Interop");
    assert.deepEqual(errorsAbout(pki.check(), "worker"), []);
  });

  it("ok/the same client dialling the IP SAN 127.0.0.1: 200, SUCCESS, CN=worker", () => {
    assertAccepted(curl(client(pki, "worker", "127.0.0.1", webPort)), "CN=worker,O=Interop");
  });

  it("ok/a dual service (RSA key) presenting its one certificate as a client: 200, SUCCESS, CN=db; check has no errors about db", () => {
    assertAccepted(curl(client(pki, "db", "127.0.0.1", webPort)), "CN=db,O=Interop");
    assert.deepEqual(errorsAbout(pki.check(), "db"), []);
  });

  it("ok/a split dual service presenting client.pem: 200, SUCCESS, CN=node; check has no errors about node", () => {
    assertAccepted(curl(client(pki, "node", "web.test", webPort, { split: true })), "CN=node,O=Interop");
    assert.deepEqual(errorsAbout(pki.check(), "node"), []);
  });

  it('refused/curl without a client certificate: nginx answers 400 "No required SSL certificate was sent"', () => {
    const { answer, log } = ask(nginx, { host: "web.test", port: webPort, ca: pki.svc("worker").ca });
    assertRefused(answer, "No required SSL certificate was sent", log, "client sent no required SSL certificate");
  });

  it('refused/web\'s server-only certificate handed to a client: nginx answers 400 "The SSL certificate error", logs "unsuitable certificate purpose"; check flags eku-client', () => {
    giveCertificate(pki, "web", "intern");
    const { answer, log } = ask(nginx, client(pki, "intern", "web.test", webPort));
    assertRefused(
      answer,
      "The SSL certificate error",
      log,
      "client SSL certificate verify error: (26:unsuitable certificate purpose)",
    );
    assert.deepEqual(flagged(pki.check(), "intern"), [
      "conn-client-usage intern -> web",
      "eku-client intern",
      "identity-mismatch intern",
    ]);
  });

  it('refused/a client certificate from another PKI\'s CA: nginx answers 400, logs "unable to verify the first certificate"; check flags untrusted', () => {
    for (const f of ["cert", "key"] as const) copyFileSync(other.svc("outsider")[f], pki.svc("outsider")[f]);
    const { answer, log } = ask(nginx, client(pki, "outsider", "web.test", webPort));
    assertRefused(
      answer,
      "The SSL certificate error",
      log,
      "client SSL certificate verify error: (21:unable to verify the first certificate)",
    );
    assert.deepEqual(flagged(pki.check(), "outsider"), ["conn-client-untrusted outsider -> web", "untrusted outsider"]);
  });

  it('refused/mirror.test served with web\'s certificate: curl exits 60 "no alternative certificate subject name matches"; check flags san-missing and conn-address', () => {
    const answer = curl(client(pki, "auditor", "mirror.test", mirrorPort));
    assert.equal(answer.code, 60, answer.stderr);
    assert.match(answer.stderr, /SSL: no alternative certificate subject name matches target host name 'mirror\.test'/);
    assert.equal(answer.status, undefined);
    assert.deepEqual(flagged(pki.check(), "mirror"), [
      "conn-address auditor -> mirror",
      "identity-mismatch mirror",
      "san-missing mirror",
    ]);
  });
});

describe("nginx under libfaketime: a PKI issued now, judged inside and after the client's validity", () => {
  let pki: Pki;
  let inside: Date;
  let expired: Date;
  let early: Nginx;
  let late: Nginx;
  let earlyPort: number;
  let latePort: number;

  before(async () => {
    pki = await makePki("nginx-timed", TIMED);
    inside = new Date(Date.now() + 10 * DAY);
    expired = new Date(notAfter(pki.svc("worker").cert).getTime() + DAY);
    [earlyPort, latePort] = (await ports(2)) as [number, number];
    [early, late] = await Promise.all([
      startNginx("nginx-timed-inside", [site(pki, "web", earlyPort)], fakeTimeEnv(inside)),
      startNginx("nginx-timed-expired", [site(pki, "web", latePort)], fakeTimeEnv(expired)),
    ]);
  });
  after(async () => {
    await early?.server.stop();
    await late?.server.stop();
  });

  it("ok/nginx living 10 days from now accepts the client; check at that instant has no errors about it", () => {
    assertAccepted(curl(client(pki, "worker", "web.test", earlyPort)), "CN=worker,O=Timed");
    assert.deepEqual(errorsAbout(pki.check(inside), "worker"), []);
  });

  it('refused/nginx living one day after the client\'s notAfter: 400, logs "certificate has expired"; check at that instant flags expired and conn-validity', () => {
    const { answer, log } = ask(late, client(pki, "worker", "web.test", latePort));
    assertRefused(
      answer,
      "The SSL certificate error",
      log,
      "client SSL certificate verify error: (10:certificate has expired)",
    );
    assert.deepEqual(flagged(pki.check(expired), "worker"), ["conn-validity worker -> web", "expired worker"]);
    assert.deepEqual(
      errorsAbout(pki.check(expired), "web").filter((e) => !e.includes("worker")),
      [],
      "web itself is still valid then",
    );
  });
});

describe("nginx and curl under libfaketime: a PKI issued 60 days ago", () => {
  let pki: Pki;
  let past: Date;
  let then: Date;
  let today: Nginx;
  let back: Nginx;
  let todayPorts: [number, number];
  let backPorts: [number, number];

  before(async () => {
    past = new Date(Date.now() - 60 * DAY);
    then = new Date(past.getTime() + 10 * DAY);
    pki = await makePki("nginx-past", PAST, { now: past });
    const [a, b, c, d] = (await ports(4)) as [number, number, number, number];
    todayPorts = [a, b];
    backPorts = [c, d];
    [today, back] = await Promise.all([
      startNginx("nginx-past-today", [site(pki, "web", a), site(pki, "vault", b)]),
      startNginx("nginx-past-then", [site(pki, "web", c), site(pki, "vault", d)], fakeTimeEnv(then)),
    ]);
  });
  after(async () => {
    await today?.server.stop();
    await back?.server.stop();
  });

  it('refused/real-time nginx and a client certificate that expired 30 days ago: 400, logs "certificate has expired"; check flags expired and conn-validity', () => {
    const { answer, log } = ask(today, client(pki, "worker", "web.test", todayPorts[0]));
    assertRefused(
      answer,
      "The SSL certificate error",
      log,
      "client SSL certificate verify error: (10:certificate has expired)",
    );
    assert.deepEqual(flagged(pki.check(), "worker"), [
      "conn-validity worker -> vault",
      "conn-validity worker -> web",
      "expired worker",
    ]);
  });

  it("ok/nginx living 50 days ago, inside the client's validity, accepts it; check at that instant has no errors about it", () => {
    assertAccepted(curl(client(pki, "worker", "web.test", backPorts[0])), "CN=worker,O=Past");
    assert.deepEqual(errorsAbout(pki.check(then), "worker"), []);
  });

  it('refused/real-time curl and vault\'s server certificate that expired 30 days ago: exit 60 "certificate has expired"; check flags expired vault', () => {
    const answer = curl(client(pki, "worker", "vault.test", todayPorts[1]));
    assert.equal(answer.code, 60, answer.stderr);
    assert.match(answer.stderr, /SSL certificate problem: certificate has expired/);
    assert.deepEqual(flagged(pki.check(), "vault"), ["conn-validity worker -> vault", "expired vault"]);
  });

  it("ok/curl and nginx both living 50 days ago: vault's server certificate and the client's are both accepted, 200", () => {
    assertAccepted(curl(client(pki, "worker", "vault.test", backPorts[1], { faketime: then })), "CN=worker,O=Past");
    assert.deepEqual(errorsAbout(pki.check(then), "vault"), []);
  });
});

// ── a CA rotation ─────────────────────────────────────────────────────────────────────────────

/** ROTATING: nginx serves web; early is activated first (--batch 1), late with the rest. */
const ROTATING = `
version: 1
cluster: nginx-rotate
ca: { key: ecdsa-p256, validity: 1y, subject: { O: Rotate, CN: Rotate CA } }
defaults: { key: ecdsa-p256, validity: 30d, renewBefore: 7d, subject: { O: Rotate } }
services:
  early: { usage: client }
  web:   { usage: server, addresses: [127.0.0.1, web.test] }
  late:  { usage: client }
connections:
  - { from: early, to: web, address: web.test }
  - { from: late, to: web, address: web.test }
`;

describe("nginx during a CA rotation (mtlskit ca rotate): clients of both CAs accepted during the overlap, the old CA's refused after retire", () => {
  let pki: Pki;
  let nginx: Nginx | undefined;
  let port: number;
  /** late's certificate and key from the old CA, kept as a client that never reloaded would hold them. */
  let oldLate: { cert: string; key: string };

  before(async () => {
    pki = await makePki("nginx-rotate", ROTATING);
    [port] = (await ports(1)) as [number];
    const keep = subdir("nginx-rotate-old-late");
    oldLate = { cert: path.join(keep, "cert.pem"), key: path.join(keep, "key.pem") };
    copyFileSync(pki.svc("late").cert, oldLate.cert);
    copyFileSync(pki.svc("late").key, oldLate.key);
    await rotate(pki.loaded, pki.pki, "prepare", { hooks: false });
    await rotate(pki.loaded, pki.pki, "activate", { hooks: false, batch: 1 });
    nginx = await startNginx("nginx-rotate-overlap", [site(pki, "web", port)]);
  });
  after(() => nginx?.server.stop());

  it("ok/overlap (active, only early activated: web still presents its old-CA certificate): nginx with the two-CA bundle accepts early (next CA) and late (old CA): 200; check has no errors", () => {
    assert.equal(certCount(pki.svc("web").ca), 2);
    assertAccepted(curl(client(pki, "early", "web.test", port)), "CN=early,O=Rotate");
    assertAccepted(curl(client(pki, "late", "web.test", port)), "CN=late,O=Rotate");
    assert.equal(pki.check().errors, 0);
  });

  it('refused/after activate and retire, nginx reloaded with the new bundle: early and late (both from the new CA) get 200, late\'s old certificate 400 "unable to verify the first certificate"', async () => {
    await rotate(pki.loaded, pki.pki, "activate", { hooks: false });
    await rotate(pki.loaded, pki.pki, "retire", { hooks: false });
    await nginx?.server.stop();
    nginx = await startNginx("nginx-rotate-retired", [site(pki, "web", port)]);
    assert.equal(certCount(pki.svc("web").ca), 1);
    assertAccepted(curl(client(pki, "early", "web.test", port)), "CN=early,O=Rotate");
    assertAccepted(curl(client(pki, "late", "web.test", port)), "CN=late,O=Rotate");
    const { answer, log } = ask(nginx, { host: "web.test", port, ca: pki.svc("late").ca, ...oldLate });
    assertRefused(
      answer,
      "The SSL certificate error",
      log,
      "client SSL certificate verify error: (21:unable to verify the first certificate)",
    );
    assert.equal(pki.check().errors, 0);
  });
});

/** certCount counts the certificates of a PEM file. */
const certCount = (file: string) => readFileSync(file, "utf8").match(/BEGIN CERTIFICATE/g)?.length ?? 0;
