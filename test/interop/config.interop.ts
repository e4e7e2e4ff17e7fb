/**
 * `mtlskit config` snippets run by the real servers: each server is started with a config made
 * only of what `mtlskit config COMPONENT` printed, plus the few lines that are not TLS (listen
 * address and port, data and socket directories, logs); the only edit to the snippet itself is the
 * port of nginx's `listen` line. Then a mutually authenticated client gets in as the identity the
 * snippet maps, and a client without a certificate (or with one the snippet does not map) is
 * refused, in the server's own words.
 *
 * - nats-server 2.9.10: the ServiceRadar example (no identity template: users are subject DNs, as
 *   Go prints them), a manifest with an identity template (users are identity URIs; a split client
 *   presents client.pem), and a subject with a comma (the DN's escaping). The npm `nats` client
 *   connects, subscribes, publishes and receives; nats-server's debug log names the field it
 *   matched ("Using DistinguishedNameMatch" / "Using URI found in cert for auth").
 * - PostgreSQL 15: the ServiceRadar example's cnpg, its files deployed flat (root.pem, cnpg.pem,
 *   cnpg-key.pem, owned by postgres) and the snippet made with --certs-dir; psql verify-full as
 *   core logs in as the role the snippet's pg_ident.conf maps core's CN to.
 * - nginx 1.22: the ServiceRadar example's core; curl as gateway gets 200 and nginx's
 *   $ssl_client_verify says SUCCESS.
 * - etcd 3.4.23: three dual members, each started with its own snippet's flags; etcdctl as the
 *   client app puts through one member and reads from another. The split snippet (Netsy's
 *   node-1) needs etcd 3.5, as it says: 3.4 refuses its --client-cert-file.
 */
import assert from "node:assert/strict";
import { chmodSync, chownSync, copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { after, describe, it } from "node:test";
import { connect, StringCodec, type NatsConnection, type TlsOptions } from "nats";
import { PG_MAP } from "../../src/config/index.ts";
import { FLAT_NAMES, flatName } from "../../src/export/names.ts";
import { runCli } from "../helpers/cli.ts";
import {
  exec,
  freePort,
  logMark,
  makePki,
  need,
  REPO,
  RUN_DIR,
  startServer,
  stopAll,
  subdir,
  waitFor,
  waitForLog,
  waitForPort,
  type Pki,
  type Server,
} from "./harness.ts";

const SERVICERADAR = path.join(REPO, "examples/serviceradar.yaml");
const NETSY = path.join(REPO, "examples/netsy.yaml");

/** snippet runs `mtlskit config ARGS` in-process and returns what it printed (asserting exit 0). */
async function snippet(...args: string[]): Promise<string> {
  const r = await runCli(["config", ...args]);
  assert.equal(r.code, 0, `mtlskit config ${args.join(" ")} exited ${r.code}:\n${r.err}`);
  return r.out;
}

after(async () => {
  await stopAll();
});

// ── nats ──────────────────────────────────────────────────────────────────────────────────────

/** natsServer starts nats-server on `listen: 127.0.0.1:PORT` plus the snippet, with debug logging (-D) so it names the field it mapped. */
async function natsServer(name: string, text: string): Promise<{ server: Server; port: number }> {
  const port = await freePort();
  const conf = path.join(subdir(name), "nats-server.conf");
  writeFileSync(conf, `listen: 127.0.0.1:${port}\n${text}`);
  const t = exec(need("nats-server"), ["-c", conf, "-t"]);
  assert.equal(t.code, 0, `nats-server -t refused the snippet:\n${t.out}\n${text}`);
  const server = startServer(name, need("nats-server"), ["-c", conf, "-D"]);
  await waitForPort(port, server);
  return { server, port };
}

/** natsTls are nats.js's TLS options: the client's files (none: no certificate), verifying the server as `servername`. */
const natsTls = (ca: string, servername: string, cert?: string, key?: string): TlsOptions =>
  ({ caFile: ca, certFile: cert, keyFile: key, servername }) as TlsOptions;

/** roundTrip subscribes to a subject, publishes to it and waits for the message: the mapped user's permissions at work. */
async function roundTrip(nc: NatsConnection): Promise<string> {
  const sc = StringCodec();
  const sub = nc.subscribe("mtlskit.config", { max: 1, timeout: 5_000 });
  nc.publish("mtlskit.config", sc.encode("hello from the snippet"));
  for await (const m of sub) return sc.decode(m.data);
  throw new Error("no message came back");
}

/** natsConnect connects with `tls`, or returns the refusal's message. */
async function natsConnect(port: number, tls: TlsOptions): Promise<NatsConnection | string> {
  try {
    return await connect({ servers: `tls://127.0.0.1:${port}`, tls, timeout: 5_000, reconnect: false });
  } catch (e) {
    return `${(e as { code?: string }).code ?? ""} ${(e as Error).message}`;
  }
}

describe("config nats: nats-server 2.9.10 started with the snippet alone", () => {
  it("ok/ServiceRadar example: datasvc logs in as its subject DN and round-trips a message; agent (same CA, not a client of nats) and no certificate are refused", async () => {
    const pki = await makePki("config-nats-sr", SERVICERADAR);
    const text = await snippet("nats", "-f", SERVICERADAR, "--pki", pki.pki);
    const dn = "CN=datasvc.serviceradar,OU=Operations,O=ServiceRadar,L=Your Location,ST=Your State,C=US";
    assert.ok(text.includes(`{ user: "${dn}", permissions: { publish: ">", subscribe: ">" } }`), text);
    const { server, port } = await natsServer("config-nats-sr", text);
    const ds = pki.svc("datasvc");

    const mark = logMark(server);
    const nc = await natsConnect(port, natsTls(ds.ca, "nats-serviceradar", ds.cert, ds.key));
    assert.ok(typeof nc !== "string", `datasvc was refused: ${nc}`);
    try {
      assert.equal(await roundTrip(nc), "hello from the snippet");
    } finally {
      await nc.close();
    }
    await waitForLog(server, mark, new RegExp(`Using DistinguishedNameMatch for auth \\["${dn}"\\]`));

    const ag = pki.svc("agent");
    const agent = await natsConnect(port, natsTls(ag.ca, "nats-serviceradar", ag.cert, ag.key));
    assert.equal(typeof agent, "string", "agent, which no connection names as a client of nats, got in");
    assert.match(agent as string, /AUTHORIZATION_VIOLATION/);

    const none = await natsConnect(port, natsTls(ds.ca, "nats-serviceradar"));
    assert.equal(typeof none, "string", "a client without a certificate got in");
    await waitForLog(server, mark, /TLS handshake error: tls: client didn't provide a certificate/);
    await server.stop();
  });

  it("ok/identity template: a client and a split client (presenting client.pem) log in as their identity URIs; a service that only dials elsewhere is refused", async () => {
    const pki = await makePki(
      "config-nats-uri",
      `
version: 1
cluster: cfg
identity: { uri: "spiffe://{cluster}.local/{role}/{name}" }
ca: { subject: { CN: config interop CA } }
services:
  bus: { usage: server, addresses: [127.0.0.1, bus.internal] }
  worker: { usage: client }
  node: { usage: dual, split: true, addresses: [127.0.0.1] }
  outsider: { usage: client }
connections:
  - { from: worker, to: bus, address: bus.internal }
  - { from: node, to: bus, address: 127.0.0.1 }
  - { from: outsider, to: node, address: 127.0.0.1 }
`,
    );
    const text = await snippet("nats", "-f", pki.file, "--pki", pki.pki, "--service", "bus");
    const { server, port } = await natsServer("config-nats-uri", text);
    const node = path.join(pki.pki, "services/node");
    const clients = [
      { name: "worker", files: pki.svc("worker"), uri: "spiffe://cfg.local/client/worker" },
      {
        name: "node",
        files: { ...pki.svc("node"), cert: path.join(node, "client.pem"), key: path.join(node, "client-key.pem") },
        uri: "spiffe://cfg.local/dual/node",
      },
    ];
    for (const c of clients) {
      const mark = logMark(server);
      const nc = await natsConnect(port, natsTls(c.files.ca, "bus.internal", c.files.cert, c.files.key));
      assert.ok(typeof nc !== "string", `${c.name} was refused: ${nc}`);
      try {
        assert.equal(await roundTrip(nc), "hello from the snippet");
      } finally {
        await nc.close();
      }
      await waitForLog(server, mark, new RegExp(`Using URI found in cert for auth \\["${c.uri}"\\]`));
    }
    const o = pki.svc("outsider");
    const outsider = await natsConnect(port, natsTls(o.ca, "bus.internal", o.cert, o.key));
    assert.match(String(outsider), /AUTHORIZATION_VIOLATION/);
    await server.stop();
  });

  it("ok/a subject DN with a comma (O=Acme, Inc.): the snippet's escaped DN is the one nats-server matches", async () => {
    const pki = await makePki(
      "config-nats-comma",
      `
version: 1
cluster: acme
ca: { subject: { CN: Acme CA } }
defaults: { subject: { O: "Acme, Inc.", OU: "#ops" } }
services:
  bus: { usage: server, addresses: [127.0.0.1] }
  reporter: { usage: client }
connections:
  - { from: reporter, to: bus, address: 127.0.0.1 }
`,
    );
    const text = await snippet("nats", "-f", pki.file, "--pki", pki.pki, "--service", "bus");
    assert.ok(text.includes('{ user: "CN=reporter,OU=\\\\#ops,O=Acme\\\\, Inc.",'), text);
    const { server, port } = await natsServer("config-nats-comma", text);
    const r = pki.svc("reporter");
    const mark = logMark(server);
    const nc = await natsConnect(port, natsTls(r.ca, "bus", r.cert, r.key));
    assert.ok(typeof nc !== "string", `reporter was refused: ${nc}`);
    await nc.close();
    await waitForLog(server, mark, /Using DistinguishedNameMatch for auth/);
    await server.stop();
  });
});

// ── postgres ──────────────────────────────────────────────────────────────────────────────────

/** sections splits the postgres snippet at its `# ==> FILE <==` headers. */
function sections(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  let current: string | undefined;
  for (const line of text.split("\n")) {
    const m = /^# ==> (\S+) <==$/.exec(line);
    if (m) current = m[1]!;
    else if (current) out[current] = `${out[current] ?? ""}${line}\n`;
  }
  return out;
}

describe("config postgres: PostgreSQL 15 with the snippet's postgresql.conf, pg_hba.conf and pg_ident.conf", () => {
  let server: Server | undefined;
  after(async () => {
    if (server && server.exited === undefined) {
      server.child.kill("SIGINT"); // fast shutdown
      await waitFor("postgres fast shutdown", () => server!.exited !== undefined, 10_000).catch(() => undefined);
    }
    await server?.stop();
  });

  it("ok/ServiceRadar example, cnpg deployed flat: core (verify-full) logs in as the role its CN maps to; no certificate and an unmapped certificate are refused", async () => {
    const pki = await makePki("config-pg", SERVICERADAR);
    const uid = Number(exec(need("id"), ["-u", "postgres"]).stdout.trim());
    const gid = Number(exec(need("id"), ["-g", "postgres"]).stdout.trim());
    assert.ok(uid > 0, "the postgres system user is missing (install postgresql-15)");
    const work = subdir("config-pg-host");
    for (const d of [RUN_DIR, work]) chmodSync(d, 0o711);
    const owned = (p: string, mode: number) => (chownSync(p, uid, gid), chmodSync(p, mode), p);
    const dir = (name: string) => (mkdirSync(path.join(work, name)), owned(path.join(work, name), 0o700));
    // The host's certs directory, as `mtlskit export --format flat` lays it out: root.pem, ca.crl (the CRL ssl_crl_file names), cnpg.pem, cnpg-key.pem.
    const certs = dir("certs");
    const cnpg = pki.svc("cnpg");
    for (const [from, to, mode] of [
      [cnpg.ca, FLAT_NAMES.ca, 0o644],
      [path.join(pki.pki, "ca", "crl.pem"), "ca.crl", 0o644],
      [cnpg.cert, FLAT_NAMES.cert, 0o644],
      [cnpg.key, FLAT_NAMES.key, 0o600],
    ] as const) {
      const dest = path.join(certs, flatName(to, "cnpg"));
      copyFileSync(from, dest);
      owned(dest, mode);
    }
    const text = await snippet("postgres", "-f", SERVICERADAR, "--service", "cnpg", "--certs-dir", certs);
    const parts = sections(text);
    assert.deepEqual(Object.keys(parts), ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"]);
    assert.match(parts["pg_ident.conf"]!, new RegExp(`^${PG_MAP} +core\\.serviceradar +core$`, "m"));

    const data = dir("data");
    const sock = dir("sock");
    const asPostgres = { uid, gid, cwd: work, env: { HOME: work, LC_ALL: "C" } };
    const init = exec(
      need("initdb"),
      [
        "-D",
        data,
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
        "--auth-local=peer",
        "--auth-host=reject",
      ],
      { ...asPostgres, timeoutMs: 60_000 },
    );
    assert.equal(init.code, 0, `initdb failed:\n${init.out}`);
    const conf = (name: string, body: string, append = false) => {
      const p = path.join(data, name);
      writeFileSync(p, body, { flag: append ? "a" : "w" });
      owned(p, 0o600);
    };
    // Non-TLS additions: listen address and port (flags below), and peer login for the setup SQL.
    conf("postgresql.conf", `\n${parts["postgresql.conf"]}`, true);
    conf("pg_hba.conf", `local all postgres peer\n${parts["pg_hba.conf"]}`);
    conf("pg_ident.conf", parts["pg_ident.conf"]!);
    const port = await freePort();
    server = startServer(
      "config-postgres",
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
    await waitFor("postgres on its unix socket", () => admin("select 1").code === 0, 30_000, server);
    assert.equal(admin("create role core login").code, 0);

    const psql = (files: { ca: string; cert: string; key: string }, user: string) =>
      exec(
        need("psql"),
        [
          "-X",
          "-A",
          "-t",
          `host=cnpg.serviceradar hostaddr=127.0.0.1 port=${port} dbname=postgres user=${user} sslmode=verify-full connect_timeout=5 sslrootcert=${files.ca} sslcert=${files.cert} sslkey=${files.key}`,
          "-c",
          "select current_user, ssl, version from pg_stat_ssl where pid = pg_backend_pid()",
        ],
        { timeoutMs: 15_000 },
      );
    const ok = psql(pki.svc("core"), "core");
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.stdout, /^core\|t\|TLSv1\.3$/m);

    const absent = path.join(work, "absent");
    const none = psql({ ca: pki.svc("core").ca, cert: `${absent}.crt`, key: `${absent}.key` }, "core");
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /FATAL: {2}connection requires a valid client certificate/);

    const gateway = psql(pki.svc("gateway"), "core"); // a healthy certificate of the same CA whose CN the map does not name
    assert.notEqual(gateway.code, 0);
    assert.match(gateway.stderr, /FATAL: {2}certificate authentication failed for user "core"/);
  });
});

// ── nginx ─────────────────────────────────────────────────────────────────────────────────────

describe("config nginx: nginx 1.22 with the snippet as its server block", () => {
  it("ok/ServiceRadar example, core: curl as gateway gets 200 with verify=SUCCESS; no certificate gets 400", async () => {
    const pki = await makePki("config-nginx", SERVICERADAR);
    const text = await snippet("nginx", "-f", SERVICERADAR, "--service", "core", "--pki", pki.pki);
    const port = await freePort();
    const directives = text.replace(/^listen 443 ssl;/m, `listen 127.0.0.1:${port} ssl;`);
    assert.notEqual(directives, text, "the snippet has no `listen 443 ssl;` line to point at a free port");
    const dir = subdir("config-nginx");
    const p = (f: string) => path.join(dir, f);
    const conf = p("nginx.conf");
    writeFileSync(
      conf,
      `pid ${p("nginx.pid")};
error_log ${p("error.log")} info;
events { worker_connections 64; }
http {
  access_log ${p("access.log")};
  client_body_temp_path ${p("body")}; proxy_temp_path ${p("proxy")}; fastcgi_temp_path ${p("fastcgi")}; uwsgi_temp_path ${p("uwsgi")}; scgi_temp_path ${p("scgi")};
  default_type text/plain;
  server {
${directives.replace(/^/gm, "    ")}
    location / { return 200 "verify=$ssl_client_verify dn=$ssl_client_s_dn\\n"; }
  }
}
`,
    );
    const args = ["-p", dir, "-c", conf, "-e", p("error.log"), "-g", "daemon off; master_process off;"];
    const t = exec(need("nginx"), ["-t", ...args]);
    assert.equal(t.code, 0, `nginx -t refused the snippet:\n${t.out}`);
    const server = startServer("config-nginx", need("nginx"), args);
    await waitForPort(port, server);
    const curl = (extra: string[]) =>
      exec(need("curl"), [
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        pki.svc("gateway").ca,
        "--resolve",
        `core.serviceradar:${port}:127.0.0.1`,
        "-w",
        "\n%{http_code}",
        ...extra,
        `https://core.serviceradar:${port}/`,
      ]);
    const gw = pki.svc("gateway");
    const ok = curl(["--cert", gw.cert, "--key", gw.key]);
    assert.equal(ok.code, 0, ok.out);
    assert.equal(
      ok.stdout,
      "verify=SUCCESS dn=CN=gateway.serviceradar,OU=Operations,O=ServiceRadar,L=Your Location,ST=Your State,C=US\n\n200",
    );
    const none = curl([]);
    assert.equal(none.code, 0, none.out);
    assert.match(none.stdout, /No required SSL certificate was sent[\s\S]*\n400$/);
    await server.stop();
  });
});

// ── etcd ──────────────────────────────────────────────────────────────────────────────────────

/** etcdFlagsOf reads the printed flags: every non-comment line, without its trailing ` \`. */
const etcdFlagsOf = (text: string): string[] =>
  text
    .split("\n")
    .filter((l) => l.startsWith("--"))
    .map((l) => l.replace(/ \\$/, ""));

const ETCD_MANIFEST = `
version: 1
cluster: etcd-config
identity: { uri: "spiffe://{cluster}.local/{role}/{name}" }
ca: { subject: { CN: etcd config CA } }
services:
  etcd-1: { usage: dual, addresses: [127.0.0.1, localhost] }
  etcd-2: { usage: dual, addresses: [127.0.0.1, localhost] }
  etcd-3: { usage: dual, addresses: [127.0.0.1, localhost] }
  app: { usage: client }
connections:
  - { from: etcd-1, to: etcd-2, address: 127.0.0.1 }
  - { from: etcd-1, to: etcd-3, address: 127.0.0.1 }
  - { from: etcd-2, to: etcd-1, address: 127.0.0.1 }
  - { from: etcd-2, to: etcd-3, address: 127.0.0.1 }
  - { from: etcd-3, to: etcd-1, address: 127.0.0.1 }
  - { from: etcd-3, to: etcd-2, address: 127.0.0.1 }
  - { from: app, to: etcd-1, address: 127.0.0.1 }
  - { from: app, to: etcd-2, address: 127.0.0.1 }
  - { from: app, to: etcd-3, address: 127.0.0.1 }
`;

describe("config etcd: etcd 3.4.23 members started with the snippet's flags", () => {
  it("ok/three members with dual certificates form a cluster over peer TLS; app puts through etcd-1 and gets from etcd-3; a client without a certificate is refused", async () => {
    const pki: Pki = await makePki("config-etcd", ETCD_MANIFEST);
    const names = ["etcd-1", "etcd-2", "etcd-3"];
    const at = await Promise.all(
      names.map(async (n) => ({
        name: n,
        client: `https://127.0.0.1:${await freePort()}`,
        peer: `https://127.0.0.1:${await freePort()}`,
      })),
    );
    const cluster = at.map((m) => `${m.name}=${m.peer}`).join(",");
    const members = await Promise.all(
      at.map(async (m) => {
        const tls = etcdFlagsOf(await snippet("etcd", "-f", pki.file, "--pki", pki.pki, "--service", m.name));
        assert.ok(tls.includes("--client-cert-auth") && tls.includes("--peer-client-cert-auth"), tls.join(" "));
        const args = [
          ...tls,
          ...["--name", m.name, "--data-dir", subdir(`config-${m.name}-data`)],
          ...[
            "--listen-client-urls",
            m.client,
            "--advertise-client-urls",
            m.client,
            "--listen-peer-urls",
            m.peer,
            "--initial-advertise-peer-urls",
            m.peer,
          ],
          ...[
            "--initial-cluster",
            cluster,
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            "mtlskit-config",
          ],
          ...["--heartbeat-interval", "50", "--election-timeout", "500"],
        ];
        return { ...m, server: startServer(`config-${m.name}`, need("etcd"), args) };
      }),
    );
    const app = pki.svc("app");
    const etcdctl = (endpoint: string, identity: string[], ...args: string[]) =>
      exec(
        need("etcdctl"),
        [
          "--endpoints",
          endpoint,
          "--dial-timeout",
          "2s",
          "--command-timeout",
          "2s",
          "--cacert",
          app.ca,
          ...identity,
          ...args,
        ],
        { env: { ETCDCTL_API: "3" }, timeoutMs: 15_000 },
      );
    const asApp = ["--cert", app.cert, "--key", app.key];
    await waitFor(
      "three healthy members",
      () => {
        const down = members.find((m) => m.server.exited !== undefined);
        if (down) throw new Error(`${down.name} exited (${down.server.exited}):\n${down.server.tail()}`);
        const r = etcdctl(members.map((m) => m.client).join(","), asApp, "endpoint", "health", "--cluster");
        return r.code === 0 && (r.out.match(/ is healthy: /g) ?? []).length === 3;
      },
      20_000,
    );
    const put = etcdctl(members[0]!.client, asApp, "put", "snippet", "works");
    assert.equal(put.stdout.trim(), "OK", put.out);
    const get = etcdctl(members[2]!.client, asApp, "get", "snippet", "--print-value-only");
    assert.equal(get.code, 0, get.out);
    assert.equal(get.stdout.trim(), "works");

    const mark = logMark(members[1]!.server);
    const none = etcdctl(members[1]!.client, [], "get", "snippet");
    assert.notEqual(none.code, 0);
    await waitForLog(
      members[1]!.server,
      mark,
      /rejected connection from "127\.0\.0\.1:\d+" \(error "tls: client didn't provide a certificate"/,
    );
    await Promise.all(members.map((m) => m.server.stop()));
  });

  it("refused/the split member's snippet (Netsy's node-1) needs etcd 3.5, as it says: etcd 3.4.23 refuses --client-cert-file", async () => {
    // No PKI needed: etcd 3.4 refuses the flag before it opens any file.
    const text = await snippet("etcd", "-f", NETSY, "--pki", subdir("config-etcd-split-pki"), "--service", "node-1");
    assert.match(text, /these flags need etcd 3\.5 or later/);
    const r = exec(need("etcd"), [...etcdFlagsOf(text), "--data-dir", subdir("config-etcd-split-data")], {
      timeoutMs: 10_000,
    });
    assert.notEqual(r.code, 0);
    assert.match(r.out, /flag provided but not defined: -client-cert-file/);
  });
});
