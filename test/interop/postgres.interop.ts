/**
 * PostgreSQL 15 with `ssl=on` and certificate authentication: mtlskit's certificates log real
 * clients (psql, i.e. libpq over OpenSSL) in as the roles their CN maps to, check calls those
 * healthy, and every certificate the server or psql refuses is a deployment `mtlskit check`
 * flags. Two refusals have no certificate to judge: no client certificate at all, and a healthy
 * certificate asking for a role its CN is not mapped to (pg_ident.conf is outside check's view).
 *
 * One PKI: the server `pg` (addresses 127.0.0.1 and localhost), the client `reporting` (mapped to
 * the role reader), the dual `ingest` (RSA, mapped to writer), and two clients kept for broken
 * deployments: `auditor` (handed pg's server-only certificate) and `stranger` (handed files a
 * second PKI issued). One postgres, started as the `postgres` system user (it refuses root) on a
 * free loopback port with only
 *
 *   hostssl all all 127.0.0.1/32 cert map=mtlskit      (+ `local all postgres peer` for setup)
 *
 * and pg_ident.conf mapping CNs to roles. Every psql runs with sslmode=verify-full, so both ends
 * verify: the server the client's chain (and, for `cert`, its CN through the map), psql the
 * server's chain and name.
 *
 * Permissions: RUN_DIR and this file's folder are made 0711 (traversable, not listable) so the
 * postgres user reaches its own folders below them: data/ (initdb), sock/ (the unix socket) and
 * server/ (copies of pg's cert, key (0600) and CA), all owned by postgres. psql runs as root, which
 * libpq accepts for the client keys mtlskit writes (0600, owned by root).
 */
import assert from "node:assert/strict";
import { chmodSync, chownSync, copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { checkPki, type CheckReport } from "../../src/check/index.ts";
import { loadManifest } from "../../src/manifest/index.ts";
import {
  errorsAbout,
  exec,
  freePort,
  giveCertificate,
  logMark,
  makePki,
  need,
  RUN_DIR,
  startServer,
  stopAll,
  subdir,
  waitFor,
  waitForLog,
  type Pki,
  type Ran,
  type Server,
} from "./harness.ts";

const manifest = (caName: string, pgAddresses = "[127.0.0.1, localhost]", reportingDials = "127.0.0.1"): string => `
version: 1
cluster: pg-interop
identity:
  uri: "spiffe://{cluster}.local/{role}/{name}"
ca:
  key: ecdsa-p256
  validity: 1y
  subject: { O: mtlskit interop, CN: ${caName} }
defaults:
  key: ecdsa-p256
  validity: 30d
  renewBefore: 7d
  subject: { O: mtlskit interop }
services:
  pg: { usage: server, addresses: ${pgAddresses} }
  reporting: { usage: client }
  ingest: { usage: dual, key: rsa-2048, addresses: [127.0.0.1] }
  auditor: { usage: client }
  stranger: { usage: client }
connections:
  - { from: reporting, to: pg, address: ${reportingDials} }
  - { from: ingest, to: pg, address: localhost }
  - { from: auditor, to: pg, address: 127.0.0.1 }
  - { from: stranger, to: pg, address: 127.0.0.1 }
`;

/** ROLES: pg_ident.conf's map, certificate CN (the service name) to PostgreSQL role. */
const ROLES = { reporting: "reader", ingest: "writer", auditor: "reader", stranger: "reader" } as const;

/** postgresUser looks up the system user postgres runs as. */
function postgresUser(): { uid: number; gid: number } {
  const id = (flag: string) => Number(exec(need("id"), [flag, "postgres"]).stdout.trim());
  const uid = id("-u");
  assert.ok(uid > 0, "interop: the postgres system user is missing (install postgresql-15)");
  return { uid, gid: id("-g") };
}

/** PgServer is a running postgres and what its clients need to reach it. */
interface PgServer {
  server: Server;
  port: number;
  /** admin runs SQL as the superuser over the unix socket (peer authentication as postgres). */
  admin(sql: string): Ran;
}

/** startPostgres initdbs a cluster owned by the postgres user and starts it with TLS from `pki`'s service pg. */
async function startPostgres(pki: Pki): Promise<PgServer> {
  const { uid, gid } = postgresUser();
  const work = subdir("postgres");
  for (const dir of [RUN_DIR, work]) chmodSync(dir, 0o711);
  const owned = (p: string, mode: number) => {
    chownSync(p, uid, gid);
    chmodSync(p, mode);
    return p;
  };
  const folder = (name: string, mode: number) => {
    const p = path.join(work, name);
    mkdirSync(p);
    return owned(p, mode);
  };
  const srv = folder("server", 0o700);
  const data = folder("data", 0o700);
  const sock = folder("sock", 0o700);
  const tls = { cert: path.join(srv, "server.crt"), key: path.join(srv, "server.key"), ca: path.join(srv, "root.crt") };
  for (const f of ["cert", "key", "ca"] as const) {
    copyFileSync(pki.svc("pg")[f], tls[f]);
    owned(tls[f], f === "key" ? 0o600 : 0o644);
  }
  const asPostgres = { uid, gid, cwd: work, env: { HOME: work, LC_ALL: "C" } };
  const init = exec(
    need("initdb"),
    ["-D", data, "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync", "--auth-local=peer", "--auth-host=reject"],
    { ...asPostgres, timeoutMs: 60_000 },
  );
  assert.equal(init.code, 0, `initdb failed:\n${init.out}`);
  const conf = (name: string, text: string) => {
    writeFileSync(path.join(data, name), text);
    owned(path.join(data, name), 0o600);
  };
  conf("pg_hba.conf", "local all postgres peer\nhostssl all all 127.0.0.1/32 cert map=mtlskit\n");
  conf(
    "pg_ident.conf",
    Object.entries(ROLES)
      .map(([cn, role]) => `mtlskit ${cn} ${role}\n`)
      .join(""),
  );

  const port = await freePort();
  const server = startServer(
    "postgres",
    need("postgres"),
    [
      "-D",
      data,
      "-k",
      sock,
      "-p",
      String(port),
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "ssl=on",
      "-c",
      `ssl_cert_file=${tls.cert}`,
      "-c",
      `ssl_key_file=${tls.key}`,
      "-c",
      `ssl_ca_file=${tls.ca}`,
      "-c",
      "log_connections=on",
      "-c",
      "fsync=off",
    ],
    asPostgres,
  );
  const admin = (sql: string) =>
    exec(
      need("psql"),
      [
        "-X",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        sock,
        "-p",
        String(port),
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-c",
        sql,
      ],
      { ...asPostgres, timeoutMs: 15_000 },
    );
  await waitForLog(server, 0, /database system is ready to accept connections/, 30_000);
  await waitFor(
    "postgres accepting connections on its unix socket",
    () => admin("select 1").code === 0,
    10_000,
    server,
  );
  return { server, port, admin };
}

/** fastShutdown stops postgres with SIGINT ("fast": rolls back sessions, checkpoints, exits), bounded. */
async function fastShutdown(server: Server): Promise<void> {
  if (server.exited === undefined) {
    server.child.kill("SIGINT");
    // A postmaster that outlives the wait is left to stop(): SIGTERM, then SIGKILL after 5 s.
    await waitFor("postgres fast shutdown", () => server.exited !== undefined, 10_000).catch(() => undefined);
  }
  await server.stop();
}

/** copyFrom hands service `name` of `to` the certificate and key that PKI `from` issued for it: a host given another CA's files. */
function copyFrom(from: Pki, to: Pki, name: string): void {
  for (const f of ["cert", "key"] as const) copyFileSync(from.svc(name)[f], to.svc(name)[f]);
}

/** assertHealthy: check reports no error about `client` (its connection to pg included) nor about pg's own certificate. */
function assertHealthy(report: CheckReport, client: string): void {
  assert.deepEqual(errorsAbout(report, client), []);
  assert.deepEqual(
    report.certificates.filter((c) => c.service === "pg" && c.errors > 0).map((c) => c.id),
    [],
  );
}

describe("postgres: ssl=on, hostssl cert map=mtlskit, psql sslmode=verify-full", () => {
  let pki: Pki;
  let pg: PgServer;
  const nowhere = subdir("psql-no-cert");
  const WHO = "select current_user, ssl, version, client_dn from pg_stat_ssl where pid = pg_backend_pid()";

  /** psql connects to pg over TCP with libpq `params` (verify-full unless overridden), runs `sql`, and returns where pg's log stood before. */
  const psql = (params: Record<string, string>, sql = WHO): Ran & { mark: number } => {
    const conninfo = Object.entries({
      host: "127.0.0.1",
      port: String(pg.port),
      dbname: "postgres",
      sslmode: "verify-full",
      connect_timeout: "5",
      ...params,
    })
      .map(([k, v]) => `${k}='${v}'`)
      .join(" ");
    const mark = logMark(pg.server);
    return {
      ...exec(need("psql"), ["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", conninfo, "-c", sql], { timeoutMs: 15_000 }),
      mark,
    };
  };
  /** as: psql's TLS files of service `name` (its own bundle, cert and key), logging in as `user`. */
  const as = (name: string, user: string) => {
    const s = pki.svc(name);
    return { user, sslrootcert: s.ca, sslcert: s.cert, sslkey: s.key };
  };

  before(async () => {
    pki = await makePki("postgres-pki", manifest("PostgreSQL interop CA"));
    pg = await startPostgres(pki);
    const setup = pg.admin(`
      create role reader login; create role writer login;
      create table notes (body text not null);
      insert into notes values ('written at setup');
      grant select on notes to reader; grant select, insert on notes to writer;`);
    assert.equal(setup.code, 0, `setup SQL failed:\n${setup.out}`);
  });

  after(async () => {
    if (pg) await fastShutdown(pg.server);
    await stopAll(); // a postgres whose start failed half-way
  });

  it("ok/reporting (client usage, CN mapped to reader) logs in as reader over TLS 1.3 with verify-full and reads a row", async () => {
    const r = psql(as("reporting", "reader"), `${WHO}; select body from notes`);
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, /^reader\|t\|TLSv1\.3\|\/O=mtlskit interop\/CN=reporting$/m);
    assert.match(r.stdout, /^written at setup$/m);
    await waitForLog(
      pg.server,
      r.mark,
      /connection authenticated: identity="CN=reporting,O=mtlskit interop" method=cert/,
    );
    assertHealthy(pki.check(), "reporting");
  });

  it("ok/ingest (dual usage, RSA key, dialing localhost) logs in as writer and inserts a row", async () => {
    const r = psql(
      { ...as("ingest", "writer"), host: "localhost", hostaddr: "127.0.0.1" },
      `${WHO}; insert into notes values ('from ingest') returning body`,
    );
    assert.equal(r.code, 0, r.out);
    assert.match(r.stdout, /^writer\|t\|TLSv1\.3\|\/O=mtlskit interop\/CN=ingest$/m);
    assert.match(r.stdout, /^from ingest$/m);
    await waitForLog(pg.server, r.mark, /connection authenticated: identity="CN=ingest,O=mtlskit interop" method=cert/);
    assertHealthy(pki.check(), "ingest");
  });

  it('refused/psql without a client certificate: "connection requires a valid client certificate"', async () => {
    const none = path.join(nowhere, "absent"); // libpq sends no certificate when its files do not exist
    const r = psql({
      user: "reader",
      sslrootcert: pki.svc("reporting").ca,
      sslcert: `${none}.crt`,
      sslkey: `${none}.key`,
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /failed: FATAL: {2}connection requires a valid client certificate/);
    await waitForLog(pg.server, r.mark, /FATAL: {2}connection requires a valid client certificate/);
  });

  it('refused/reporting\'s healthy certificate asking for the role writer: "certificate authentication failed" (the map, which check cannot see)', async () => {
    const r = psql(as("reporting", "writer"));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /failed: FATAL: {2}certificate authentication failed for user "writer"/);
    await waitForLog(pg.server, r.mark, /no match in usermap "mtlskit" for user "writer" authenticated as "reporting"/);
    assertHealthy(pki.check(), "reporting");
  });

  it('refused/stranger holding a certificate another CA issued: "tlsv1 alert unknown ca", and check flags untrusted', async () => {
    copyFrom(await makePki("postgres-other-ca", manifest("Elsewhere CA")), pki, "stranger");
    const r = psql(as("stranger", "reader"));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /failed: SSL error: tlsv1 alert unknown ca/);
    await waitForLog(pg.server, r.mark, /could not accept SSL connection: certificate verify failed/);
    assert.deepEqual(errorsAbout(pki.check(), "stranger"), [
      "untrusted stranger",
      "conn-client-untrusted stranger -> pg",
    ]);
  });

  it('refused/auditor handed pg\'s server-only certificate (no clientAuth): "sslv3 alert unsupported certificate", and check flags eku-client', async () => {
    giveCertificate(pki, "pg", "auditor");
    const r = psql(as("auditor", "reader"));
    assert.notEqual(r.code, 0);
    // The alert ends the handshake: postgres's OpenSSL checked the purpose (sslclient) before any CN reached the map.
    assert.match(r.stderr, /failed: SSL error: sslv3 alert unsupported certificate/);
    await waitForLog(pg.server, r.mark, /could not accept SSL connection: certificate verify failed/);
    assert.deepEqual(errorsAbout(pki.check(), "auditor"), [
      "eku-client auditor",
      "identity-mismatch auditor",
      "conn-client-usage auditor -> pg",
    ]);
  });

  it('refused/verify-full dialing pg.example, a name pg\'s certificate lacks: "does not match host name", and check flags conn-address', () => {
    const r = psql({ ...as("reporting", "reader"), host: "pg.example", hostaddr: "127.0.0.1" });
    assert.notEqual(r.code, 0);
    assert.match(
      r.stderr,
      /failed: server certificate for "pg" \(and 2 other names\) does not match host name "pg\.example"/,
    );
    // The deployment check sees: the manifest moved reporting to pg.example, but pg still serves the certificate issued before.
    const moved = path.join(pki.dir, "moved.yaml");
    writeFileSync(moved, manifest("PostgreSQL interop CA", "[127.0.0.1, localhost, pg.example]", "pg.example"));
    const report = checkPki(loadManifest(moved).manifest, pki.pki);
    assert.deepEqual(errorsAbout(report, "reporting"), ["conn-address reporting -> pg"]);
    assert.ok(errorsAbout(report, "pg").includes("san-missing pg"), errorsAbout(report, "pg").join(", "));
  });
});
