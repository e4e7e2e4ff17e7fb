/**
 * etcd 3.4 (Debian's etcd-server and etcd-client): a three-member cluster on loopback with mutual
 * TLS on both of its listeners, the client API (--client-cert-auth) and the peer API
 * (--peer-client-cert-auth), built from an mtlskit manifest.
 *
 * Proven with the real programs:
 * - the members form a cluster over peer TLS with mtlskit's dual certificates, and `etcdctl` as the
 *   client service `app` writes through one member and reads the value back from another;
 * - members refuse clients without a certificate, with a certificate from another CA, or with a
 *   server-only certificate, and refuse a joining member whose certificate is server-only: each
 *   refusal is asserted in the refusing member's own log ("rejected connection ... (error ...)"),
 *   because etcdctl only ever prints `context deadline exceeded` (TLS 1.3 reports the client's
 *   rejection after the handshake, and the gRPC balancer retries until the deadline);
 * - check agrees: no errors about the services of the working cases, and the expected findings for
 *   each broken deployment (built in place, then restored, so cases do not depend on their order).
 *
 * etcd 3.4 and split certificates. 3.4 has one certificate per listener and uses it both ways:
 * --peer-cert-file serves the peer API *and* is presented when dialing other members, and
 * --cert-file serves the client API *and* is what its gRPC gateway (the JSON API on the client
 * port) presents when it dials its own member. The separate client halves came with 3.5
 * (--client-cert-file, --peer-client-cert-file). So with 3.4 a member's peer certificate must be
 * dual: the split variant gives each member a split pair for the client API (its cert.pem is
 * server-only) and a separate dual certificate for the peer API. Its client.pem has no 3.4 flag to
 * go to, and the JSON gateway of such a member fails (measured: curl gets `{"error":"connection
 * closed",...,"code":14}` and the member logs `incompatible key usage`). That is no case here, as
 * check cannot know that 3.4 dials with cert.pem where the manifest offers client.pem; for the same
 * reason check calls a split member healthy as a 3.4 *peer*, which 3.4 refuses. gRPC clients such
 * as etcdctl are served fine, and they are what the variant uses.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import {
  errorsAbout,
  exec,
  freePort,
  giveCertificate,
  logMark,
  makePki,
  need,
  startServer,
  subdir,
  waitFor,
  waitForLog,
  type Pki,
  type Ran,
  type Server,
} from "./harness.ts";

const MEMBERS = ["etcd-1", "etcd-2", "etcd-3"] as const;
const LOOPBACK = "127.0.0.1";
/** etcdctl gives up after this; every refused client case costs about this much. */
const ETCDCTL_TIMEOUT = "2s";

/** TlsFiles are the files one TLS side uses: its certificate, key and trust bundle. */
interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

/** MemberTls are a member's files for its two listeners. */
interface MemberTls {
  client: TlsFiles;
  peer: TlsFiles;
}

/** Member is one running etcd process and its loopback ports. */
interface Member {
  name: string;
  clientUrl: string;
  peerUrl: string;
  tls: MemberTls;
  server: Server;
}

/**
 * manifest is the cluster's manifest: `etcd-1..3` connect to one another and `app` to each. With
 * `split`, the members' client API certificates are split pairs and each member has a dual peer
 * certificate `etcd-N-peer` for the peer API (see the top comment). Without it, the manifest also
 * declares `etcd-4`, a member that joins later, and `web`, a server-only certificate to hand over.
 */
function manifest(opts: { split: boolean; caCn: string }): string {
  const addresses = `addresses: [${LOOPBACK}, localhost]`;
  const peers = opts.split ? MEMBERS.map((m) => `${m}-peer`) : [...MEMBERS];
  const services = opts.split
    ? [
        ...MEMBERS.map((m) => `  ${m}: { usage: dual, split: true, ${addresses} }`),
        ...peers.map((p) => `  ${p}: { usage: dual, ${addresses} }`),
      ]
    : [...MEMBERS, "etcd-4"]
        .map((m) => `  ${m}: { usage: dual, ${addresses} }`)
        .concat(`  web: { usage: server, ${addresses} }`);
  const connections = [
    ...peers.flatMap((from) =>
      peers.filter((to) => to !== from).map((to) => `  - { from: ${from}, to: ${to}, address: ${LOOPBACK} }`),
    ),
    ...(opts.split ? [] : MEMBERS.map((to) => `  - { from: etcd-4, to: ${to}, address: ${LOOPBACK} }`)),
    ...MEMBERS.map((to) => `  - { from: app, to: ${to}, address: ${LOOPBACK} }`),
  ];
  return [
    "version: 1",
    "cluster: etcd-interop",
    "identity:",
    '  uri: "spiffe://{cluster}.local/{role}/{name}"',
    "ca:",
    `  subject: { O: mtlskit interop, CN: ${opts.caCn} }`,
    "services:",
    ...services,
    "  app: { usage: client }",
    "connections:",
    ...connections,
    "",
  ].join("\n");
}

/** dualTls: a member of the dual manifest serves and dials with its one certificate, on both listeners. */
const dualTls = (pki: Pki, name: string): MemberTls => ({ client: pki.svc(name), peer: pki.svc(name) });

/** splitTls: a member of the split manifest serves clients with its split cert.pem, peers with `NAME-peer`. */
const splitTls = (pki: Pki, name: string): MemberTls => ({ client: pki.svc(name), peer: pki.svc(`${name}-peer`) });

/** etcdArgs are a member's flags: TLS with client certificates required on both listeners. */
function etcdArgs(
  m: { name: string; clientUrl: string; peerUrl: string },
  tls: MemberTls,
  initialCluster: string,
  state: "new" | "existing",
  token: string,
): string[] {
  return [
    ...["--name", m.name, "--data-dir", subdir(`${m.name}-data`)],
    ...["--listen-client-urls", m.clientUrl, "--advertise-client-urls", m.clientUrl],
    ...["--listen-peer-urls", m.peerUrl, "--initial-advertise-peer-urls", m.peerUrl],
    ...["--initial-cluster", initialCluster, "--initial-cluster-state", state, "--initial-cluster-token", token],
    ...[
      "--client-cert-auth",
      "--trusted-ca-file",
      tls.client.ca,
      "--cert-file",
      tls.client.cert,
      "--key-file",
      tls.client.key,
    ],
    ...[
      "--peer-client-cert-auth",
      "--peer-trusted-ca-file",
      tls.peer.ca,
      "--peer-cert-file",
      tls.peer.cert,
      "--peer-key-file",
      tls.peer.key,
    ],
    ...["--heartbeat-interval", "50", "--election-timeout", "500"],
  ];
}

/** urls gives a member its client and peer URLs on two free loopback ports. */
async function urls(name: string): Promise<{ name: string; clientUrl: string; peerUrl: string }> {
  return {
    name,
    clientUrl: `https://${LOOPBACK}:${await freePort()}`,
    peerUrl: `https://${LOOPBACK}:${await freePort()}`,
  };
}

/** etcdctl runs `etcdctl ARGS` against `endpoints`, trusting `as.ca` and presenting `as.cert` when given. */
function etcdctl(endpoints: string[], as: { ca: string; cert?: string; key?: string }, ...args: string[]): Ran {
  const identity = as.cert && as.key ? ["--cert", as.cert, "--key", as.key] : [];
  return exec(
    need("etcdctl"),
    [
      "--endpoints",
      endpoints.join(","),
      "--dial-timeout",
      ETCDCTL_TIMEOUT,
      "--command-timeout",
      ETCDCTL_TIMEOUT,
      "--cacert",
      as.ca,
      ...identity,
      ...args,
    ],
    {
      env: { ETCDCTL_API: "3" },
      timeoutMs: 15_000,
    },
  );
}

/** Cluster is three running members, and what a fourth needs to try joining them. */
interface Cluster {
  members: Member[];
  initialCluster: string;
  token: string;
}

/** startCluster starts etcd-1..3 with `tls` (logs named LOGPREFIX + member) and waits until `app` sees all three healthy. */
async function startCluster(pki: Pki, logPrefix: string, tls: (name: string) => MemberTls): Promise<Cluster> {
  const at = await Promise.all(MEMBERS.map(urls));
  const initialCluster = at.map((m) => `${m.name}=${m.peerUrl}`).join(",");
  const token = `mtlskit-${randomBytes(6).toString("hex")}`;
  const members = at.map((m): Member => {
    const files = tls(m.name);
    return {
      ...m,
      tls: files,
      server: startServer(`${logPrefix}${m.name}`, need("etcd"), etcdArgs(m, files, initialCluster, "new", token)),
    };
  });
  const endpoints = members.map((m) => m.clientUrl);
  await waitFor(
    "etcdctl endpoint health --cluster",
    () => {
      const down = members.find((m) => m.server.exited !== undefined);
      if (down)
        throw new Error(
          `interop: ${down.name} exited (${down.server.exited}); log ${down.server.log}:\n${down.server.tail()}`,
        );
      const r = etcdctl(endpoints, pki.svc("app"), "endpoint", "health", "--cluster");
      return r.code === 0 && (r.out.match(/ is healthy: /g) ?? []).length === MEMBERS.length;
    },
    20_000,
    members[0]!.server,
  );
  return { members, initialCluster, token };
}

/** rejected is the line etcd 3.4 logs when its TLS listener refuses a connection for `reason`. */
const rejected = (reason: string): RegExp =>
  new RegExp(
    `embed: rejected connection from "127\\.0\\.0\\.1:\\d+" \\(error "${reason.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`,
  );

/** tlsLine is what etcd 3.4 logs at start for a listener (`ClientTLS` or `peerTLS`) that requires client certificates. */
const tlsLine = (listener: "ClientTLS" | "peerTLS", f: TlsFiles): string =>
  `embed: ${listener}: cert = ${f.cert}, key = ${f.key}, trusted-ca = ${f.ca}, client-cert-auth = true`;

/**
 * breakDeployment makes a broken deployment in place (`mutate` overwrites some services' files)
 * and returns the function that puts the files of `services` back as they were.
 */
function breakDeployment(pki: Pki, services: string[], mutate: () => void): () => void {
  const saved = services.flatMap((s) =>
    (["cert", "key"] as const).map((f) => ({ path: pki.svc(s)[f], data: readFileSync(pki.svc(s)[f]) })),
  );
  mutate();
  return () => {
    for (const f of saved) writeFileSync(f.path, f.data);
  };
}

/** assertNoErrorsAbout asserts check reports no error about any of `services` (or their connections). */
function assertNoErrorsAbout(pki: Pki, services: string[]): void {
  const report = pki.check();
  assert.deepEqual(
    services.flatMap((s) => errorsAbout(report, s)),
    [],
  );
}

describe("etcd 3.4: three members with dual certificates, client and peer certificate auth", () => {
  let pki: Pki;
  let other: Pki;
  let cluster: Cluster;
  const member = (name: string): Member => cluster.members.find((m) => m.name === name)!;
  const app = () => pki.svc("app");

  before(async () => {
    pki = await makePki("etcd", manifest({ split: false, caCn: "etcd interop CA" }));
    other = await makePki("etcd-other-ca", manifest({ split: false, caCn: "another CA" }));
    cluster = await startCluster(pki, "", (name) => dualTls(pki, name));
  });
  after(async () => {
    await Promise.all(cluster?.members.map((m) => m.server.stop()) ?? []);
  });

  it("ok/the members form a cluster over mutually authenticated peer TLS: member list shows three started members", async () => {
    assert.equal(pki.check().errors, 0);
    const r = etcdctl([member("etcd-1").clientUrl], app(), "member", "list");
    assert.equal(r.code, 0, r.out);
    for (const m of cluster.members) {
      assert.match(r.stdout, new RegExp(`, started, ${m.name}, ${m.peerUrl}, ${m.clientUrl}, false`), r.out);
      await waitForLog(m.server, 0, tlsLine("peerTLS", m.tls.peer));
    }
  });

  it("ok/app puts k=v through etcd-1 and gets v back from etcd-3: replicated over peer TLS", () => {
    const value = `v-${randomBytes(4).toString("hex")}`;
    const put = etcdctl([member("etcd-1").clientUrl], app(), "put", "k", value);
    assert.equal(put.code, 0, put.out);
    assert.equal(put.stdout.trim(), "OK");
    const get = etcdctl([member("etcd-3").clientUrl], app(), "get", "k", "--print-value-only");
    assert.equal(get.code, 0, get.out);
    assert.equal(get.stdout.trim(), value);
    assertNoErrorsAbout(pki, ["app", ...MEMBERS]);
  });

  it("ok/the JSON gateway, which dials its own member with cert.pem as client certificate, answers curl as app with the value", () => {
    const value = `gw-${randomBytes(4).toString("hex")}`;
    assert.equal(etcdctl([member("etcd-1").clientUrl], app(), "put", "gw", value).code, 0);
    const body = JSON.stringify({ key: Buffer.from("gw").toString("base64") });
    const r = exec(need("curl"), [
      "-sS",
      "--max-time",
      "10",
      "--cacert",
      app().ca,
      "--cert",
      app().cert,
      "--key",
      app().key,
      "-d",
      body,
      `${member("etcd-2").clientUrl}/v3/kv/range`,
    ]);
    assert.equal(r.code, 0, r.out);
    const kvs = (JSON.parse(r.stdout) as { kvs?: { value: string }[] }).kvs ?? [];
    assert.deepEqual(
      kvs.map((kv) => Buffer.from(kv.value, "base64").toString()),
      [value],
      r.out,
    );
    assertNoErrorsAbout(pki, ["app", "etcd-2"]);
  });

  it('refused/etcdctl without a client certificate: etcd-2 logs "tls: client didn\'t provide a certificate"', async () => {
    const etcd2 = member("etcd-2").server;
    const mark = logMark(etcd2);
    const r = etcdctl([member("etcd-2").clientUrl], { ca: app().ca }, "get", "k");
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Error: context deadline exceeded/);
    await waitForLog(etcd2, mark, rejected("tls: client didn't provide a certificate"));
  });

  it('refused/a client certificate from another CA: etcd-2 logs "x509: certificate signed by unknown authority"; check flags app', async () => {
    const restore = breakDeployment(pki, ["app"], () => {
      for (const f of ["cert", "key"] as const) copyFileSync(other.svc("app")[f], app()[f]);
    });
    try {
      const found = errorsAbout(pki.check(), "app");
      assert.ok(found.includes("untrusted app"), found.join(", "));
      for (const m of MEMBERS) assert.ok(found.includes(`conn-client-untrusted app -> ${m}`), found.join(", "));
      const etcd2 = member("etcd-2").server;
      const mark = logMark(etcd2);
      const r = etcdctl([member("etcd-2").clientUrl], app(), "get", "k");
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Error: context deadline exceeded/);
      await waitForLog(
        etcd2,
        mark,
        rejected("tls: failed to verify client certificate: x509: certificate signed by unknown authority"),
      );
    } finally {
      restore();
    }
  });

  it('refused/app given a server-only certificate: etcd-2 logs "x509: certificate specifies an incompatible key usage"; check flags app', async () => {
    const restore = breakDeployment(pki, ["app"], () => giveCertificate(pki, "web", "app"));
    try {
      const found = errorsAbout(pki.check(), "app");
      assert.ok(found.includes("eku-client app"), found.join(", "));
      for (const m of MEMBERS) assert.ok(found.includes(`conn-client-usage app -> ${m}`), found.join(", "));
      const etcd2 = member("etcd-2").server;
      const mark = logMark(etcd2);
      const r = etcdctl([member("etcd-2").clientUrl], app(), "get", "k");
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Error: context deadline exceeded/);
      await waitForLog(
        etcd2,
        mark,
        rejected("tls: failed to verify client certificate: x509: certificate specifies an incompatible key usage"),
      );
    } finally {
      restore();
    }
  });

  it('refused/a joining etcd-4 with a server-only certificate: every peer logs "incompatible key usage", etcd-4 cannot fetch the member list; check flags etcd-4', async () => {
    const restore = breakDeployment(pki, ["etcd-4"], () => giveCertificate(pki, "web", "etcd-4"));
    let joiner: Server | undefined;
    try {
      const found = errorsAbout(pki.check(), "etcd-4");
      assert.ok(found.includes("eku-client etcd-4"), found.join(", "));
      for (const m of MEMBERS) assert.ok(found.includes(`conn-client-usage etcd-4 -> ${m}`), found.join(", "));
      // A joining member first asks each peer for the member list (GET /members), over peer TLS;
      // refused by all of them, it gives up and exits. In TLS 1.3 the client's handshake is done
      // before the server has judged its certificate, so etcd-4 sees either the peer's alert or,
      // when its request is written first, the reset that follows it.
      const m4 = await urls("etcd-4");
      const marks = cluster.members.map((m) => logMark(m.server));
      joiner = startServer(
        "etcd-4",
        need("etcd"),
        etcdArgs(
          m4,
          dualTls(pki, "etcd-4"),
          `${cluster.initialCluster},etcd-4=${m4.peerUrl}`,
          "existing",
          cluster.token,
        ),
      );
      for (const [i, m] of cluster.members.entries()) {
        const url = m.peerUrl.replace(/[.]/g, "\\.");
        await waitForLog(
          joiner,
          0,
          new RegExp(
            `could not get cluster response from ${url}: Get "${url}/members": (?:readLoopPeekFailLocked: )?(remote error: tls: bad certificate|write tcp \\S+->\\S+: write: connection reset by peer)`,
          ),
        );
        await waitForLog(
          m.server,
          marks[i]!,
          rejected("tls: failed to verify client certificate: x509: certificate specifies an incompatible key usage"),
        );
      }
      await waitForLog(
        joiner,
        0,
        "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs",
      );
    } finally {
      await joiner?.stop();
      restore();
    }
    const list = etcdctl([member("etcd-1").clientUrl], app(), "member", "list");
    assert.equal(list.code, 0, list.out);
    assert.doesNotMatch(list.stdout, /etcd-4/);
  });
});

describe("etcd 3.4 split: members serve clients with split server certificates, peers with dual ones", () => {
  let pki: Pki;
  let cluster: Cluster;

  before(async () => {
    pki = await makePki("etcd-split", manifest({ split: true, caCn: "etcd split CA" }));
    cluster = await startCluster(pki, "split-", (name) => splitTls(pki, name));
  });
  after(async () => {
    await Promise.all(cluster?.members.map((m) => m.server.stop()) ?? []);
  });

  it("ok/split: the cluster forms; each member's client listener serves its server-only cert.pem, its peer listener the dual etcd-N-peer", async () => {
    assert.equal(pki.check().errors, 0);
    const r = etcdctl([cluster.members[0]!.clientUrl], pki.svc("app"), "member", "list");
    assert.equal(r.code, 0, r.out);
    for (const m of cluster.members) {
      assert.match(r.stdout, new RegExp(`, started, ${m.name}, ${m.peerUrl}, ${m.clientUrl}, false`), r.out);
      await waitForLog(m.server, 0, tlsLine("ClientTLS", pki.svc(m.name)));
      await waitForLog(m.server, 0, tlsLine("peerTLS", pki.svc(`${m.name}-peer`)));
    }
    const eku = exec(need("openssl"), ["x509", "-in", pki.svc("etcd-1").cert, "-noout", "-ext", "extendedKeyUsage"]);
    assert.match(eku.stdout, /TLS Web Server Authentication/);
    assert.doesNotMatch(eku.stdout, /Client Authentication/);
  });

  it("ok/split: app puts k=v through etcd-1 and gets v back from etcd-3", () => {
    const value = `split-${randomBytes(4).toString("hex")}`;
    const [etcd1, , etcd3] = cluster.members;
    const put = etcdctl([etcd1!.clientUrl], pki.svc("app"), "put", "k", value);
    assert.equal(put.code, 0, put.out);
    const get = etcdctl([etcd3!.clientUrl], pki.svc("app"), "get", "k", "--print-value-only");
    assert.equal(get.code, 0, get.out);
    assert.equal(get.stdout.trim(), value);
    assertNoErrorsAbout(pki, ["app", ...MEMBERS, ...MEMBERS.map((m) => `${m}-peer`)]);
  });
});
