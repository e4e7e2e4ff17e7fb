/**
 * `mtlskit config`: each component's snippet for the seed examples, line for line, and every
 * refusal (exit 2 with a message naming the service, the rule and the fix). The real servers run
 * these snippets in test/interop/config.interop.ts.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { goDn, natsUser } from "../src/config/index.ts";
import { loadManifest } from "../src/manifest/index.ts";
import { REPO, runCli, tempDir, writeManifest } from "./helpers/cli.ts";

const SR = path.join(REPO, "examples/serviceradar.yaml");
const NETSY = path.join(REPO, "examples/netsy.yaml");
const HOST = "/etc/serviceradar/certs";

/** config runs `mtlskit config ARGS` and returns stdout, asserting exit 0 and an empty stderr unless `err` is expected. */
async function config(...args: string[]): Promise<{ out: string; err: string }> {
  const r = await runCli(["config", ...args]);
  assert.equal(r.code, 0, r.err);
  return { out: r.out, err: r.err };
}

/** refused runs `mtlskit config ARGS` and asserts exit 2 with `pattern` in the message and nothing on stdout. */
async function refused(args: string[], pattern: RegExp): Promise<void> {
  const r = await runCli(["config", ...args]);
  assert.equal(r.code, 2, `expected exit 2, got ${r.code}:\n${r.out}${r.err}`);
  assert.equal(r.out, "");
  assert.match(r.err, pattern);
}

/** lines drops comment lines (and blank ones), leaving what the server reads. */
const lines = (text: string) => text.split("\n").filter((l) => l.trim() !== "" && !l.trimStart().startsWith("#"));

const SR_DN = (cn: string) => `CN=${cn},OU=Operations,O=ServiceRadar,L=Your Location,ST=Your State,C=US`;

describe("config nats", () => {
  it("ok/ServiceRadar's nats with the runbook's flat names: tls {} as in the runbook, one user per client (datasvc) by subject DN", async () => {
    const { out, err } = await config("nats", "-f", SR, "--certs-dir", HOST);
    // nats-server cannot read a CRL: said once, as a note.
    assert.match(
      err,
      /^note: nats-server has no CRL option .*revoked client's certificate is still admitted by nats until it expires/,
    );
    assert.deepEqual(lines(out), [
      "tls {",
      `  cert_file: "${HOST}/nats.pem"`,
      `  key_file: "${HOST}/nats-key.pem"`,
      `  ca_file: "${HOST}/root.pem"`,
      "  verify: true",
      "  verify_and_map: true",
      "  timeout: 2",
      "}",
      "authorization {",
      "  users = [",
      `    { user: "${SR_DN("datasvc.serviceradar")}", permissions: { publish: ">", subscribe: ">" } }`,
      "  ]",
      "}",
    ]);
    assert.match(out, /narrow publish and subscribe to the subjects each service needs/);
  });

  it("ok/default paths are the PKI layout's, absolute: --pki ./pki resolves against the working directory", async () => {
    const { out } = await config("nats", "-f", SR);
    const pki = path.resolve("pki");
    assert.ok(
      out.includes(
        `  cert_file: "${pki}/services/nats/cert.pem"\n  key_file: "${pki}/services/nats/key.pem"\n  ca_file: "${pki}/services/nats/ca.pem"\n`,
      ),
      out,
    );
  });

  it("ok/Netsy's node-1 (identity template): users are identity URIs; split peers are noted as presenting client.pem", async () => {
    const { out } = await config("nats", "-f", NETSY, "--service", "node-1", "--pki", "/srv/pki");
    assert.deepEqual(
      lines(out).filter((l) => l.includes("user:")),
      ["node-2", "node-3"]
        .map((n) => `    { user: "netsy://my-cluster/peer/${n}", permissions: { publish: ">", subscribe: ">" } }`)
        .concat(
          `    { user: "netsy://my-cluster/client/kube-apiserver", permissions: { publish: ">", subscribe: ">" } }`,
        ),
    );
    assert.match(out, /# node-2 \(its client certificate, client\.pem\)\n/);
    assert.match(out, /# kube-apiserver\n/);
  });

  it("ok/goDn writes Go's RFC 2253 form: most specific first, no spaces, specials escaped", () => {
    assert.equal(goDn({ C: "US", O: "Acme, Inc.", OU: "#ops", CN: "a+b" }), "CN=a\\+b,OU=\\#ops,O=Acme\\, Inc.,C=US");
    assert.equal(goDn({ O: " padded ", CN: 'q"<>;\\' }), 'CN=q\\"\\<\\>\\;\\\\,O=\\ padded\\ ');
  });

  it("ok/a DN with a comma is escaped for Go and then for nats-server.conf's string lexer", async () => {
    const dir = tempDir();
    const file = writeManifest(
      dir,
      `version: 1\ncluster: acme\nca: { subject: { CN: Acme CA } }\ndefaults: { subject: { O: "Acme, Inc." } }\nservices:\n  bus: { usage: server, addresses: [127.0.0.1] }\n  rep: { usage: client }\nconnections:\n  - { from: rep, to: bus, address: 127.0.0.1 }\n`,
    );
    const { out } = await config("nats", "-f", file, "--service", "bus");
    assert.match(out, /\{ user: "CN=rep,O=Acme\\\\, Inc\.", /);
    assert.equal(natsUser(loadManifest(file).manifest.services[1]!), "CN=rep,O=Acme\\, Inc.");
  });

  it("fail/two clients with the same subject DN would be one NATS user: refused, naming both and the fix", async () => {
    const dir = tempDir();
    const file = writeManifest(
      dir,
      `version: 1\ncluster: twin\nca: { subject: { CN: Twin CA } }\nservices:\n  bus: { usage: server, addresses: [127.0.0.1] }\n  a: { usage: client, cn: same.example }\n  b: { usage: client, cn: same.example }\nconnections:\n  - { from: a, to: bus, address: 127.0.0.1 }\n  - { from: b, to: bus, address: 127.0.0.1 }\n`,
    );
    await refused(
      ["nats", "-f", file, "--service", "bus"],
      /services a and b would map to the same NATS user "CN=same\.example".*add an identity template/,
    );
  });

  it("fail/a server no connection names: the snippet would admit nobody", async () => {
    await refused(
      ["nats", "-f", SR, "--service", "gateway"],
      /no connection in .*serviceradar\.yaml has `to: gateway`, so the nats snippet would admit no client; declare each client under connections, e\.g\. `- \{ from: CLIENT, to: gateway, address: gateway\.serviceradar \}`/,
    );
  });
});

describe("config postgres", () => {
  it("ok/ServiceRadar's cnpg: ssl settings, one hostssl cert line, core's CN mapped to the role core", async () => {
    const { out } = await config("postgres", "-f", SR, "--service", "cnpg", "--certs-dir", "/var/lib/postgresql/certs");
    const d = "/var/lib/postgresql/certs";
    assert.deepEqual(lines(out), [
      "ssl = on",
      `ssl_cert_file = '${d}/cnpg.pem'`,
      `ssl_key_file = '${d}/cnpg-key.pem'`,
      `ssl_ca_file = '${d}/root.pem'`,
      `ssl_crl_file = '${d}/ca.crl'  # the CA's CRL; read at reload (pg_ctl reload, SELECT pg_reload_conf())`,
      "ssl_min_protocol_version = 'TLSv1.2'",
      "hostssl all all all cert map=mtlskit",
      "mtlskit  core.serviceradar  core",
    ]);
    const headers = out.split("\n").filter((l) => l.startsWith("# ==> "));
    assert.deepEqual(headers, ["# ==> postgresql.conf <==", "# ==> pg_hba.conf <==", "# ==> pg_ident.conf <=="]);
    // The sections come in that order, each line in its own file.
    assert.ok(
      out.indexOf("ssl = on") > out.indexOf(headers[0]!) &&
        out.indexOf("hostssl") > out.indexOf(headers[1]!) &&
        out.indexOf("mtlskit  core") > out.indexOf(headers[2]!),
    );
  });

  it("ok/--pg-role maps a client to another role; several clients line up", async () => {
    const { out } = await config(
      "postgres",
      "-f",
      NETSY,
      "--service",
      "node-1",
      "--pg-role",
      "kube-apiserver=apiserver",
      "--pg-role",
      "node-2=replica",
    );
    assert.deepEqual(
      lines(out).filter((l) => l.startsWith("mtlskit ")),
      ["mtlskit  node-2          replica", "mtlskit  node-3          node-3", "mtlskit  kube-apiserver  apiserver"],
    );
  });

  it("fail/--pg-role for a service that does not connect, a role pg_ident.conf cannot carry, a malformed flag, and --pg-role on another component", async () => {
    await refused(
      ["postgres", "-f", SR, "--service", "cnpg", "--pg-role", "gateway=x"],
      /--pg-role gateway=x names "gateway", which does not connect to cnpg; the clients of cnpg in .* are: core/,
    );
    await refused(
      ["postgres", "-f", SR, "--service", "cnpg", "--pg-role", "core=bad role"],
      /the role for client core would be "bad role", which pg_ident\.conf cannot carry .*--pg-role core=bad_role/,
    );
    await refused(["postgres", "-f", SR, "--service", "cnpg", "--pg-role", "core"], /--pg-role must be CLIENT=ROLE/);
    await refused(
      ["nats", "-f", SR, "--pg-role", "core=x"],
      /--pg-role is for the postgres component; nats has no roles/,
    );
  });
});

describe("config nginx", () => {
  it("ok/ServiceRadar's core: the server-block directives, paths in the PKI layout", async () => {
    const { out } = await config("nginx", "-f", SR, "--service", "core", "--pki", "/srv/pki");
    assert.deepEqual(lines(out), [
      'listen 443 ssl;  # your address and port; keep "ssl"',
      "ssl_certificate /srv/pki/services/core/cert.pem;",
      "ssl_certificate_key /srv/pki/services/core/key.pem;",
      "ssl_client_certificate /srv/pki/services/core/ca.pem;",
      "ssl_crl /srv/pki/ca/crl.pem;  # the CA's CRL: revoked clients are refused. nginx reads it at (re)load, and refuses",
      "ssl_verify_client on;",
      "ssl_verify_depth 2;",
      "ssl_protocols TLSv1.2 TLSv1.3;",
    ]);
    assert.match(out, /# Clients the manifest declares: gateway, checker, dusk, sysmon\.\n/);
  });

  it("ok/an external service (services.NAME.files) keeps the paths the manifest names, resolved against its folder", async () => {
    const dir = tempDir();
    const file = writeManifest(
      dir,
      `version: 1\ncluster: ext\nca: { subject: { CN: Ext CA } }\nservices:\n  web: { usage: server, addresses: [127.0.0.1], files: { cert: tls/web.crt, key: tls/web.key, ca: tls/ca.crt } }\n  c: { usage: client }\nconnections:\n  - { from: c, to: web, address: 127.0.0.1 }\n`,
    );
    const { out } = await config("nginx", "-f", file, "--service", "web");
    assert.deepEqual(
      lines(out).filter((l) => l.startsWith("ssl_c")),
      [
        `ssl_certificate ${dir}/tls/web.crt;`,
        `ssl_certificate_key ${dir}/tls/web.key;`,
        `ssl_client_certificate ${dir}/tls/ca.crt;`,
      ],
    );
  });

  it("ok/a path with a space is quoted; fail/a path with $ (an nginx variable) is refused", async () => {
    const { out } = await config("nginx", "-f", SR, "--service", "core", "--certs-dir", "/etc/my certs");
    assert.match(out, /^ssl_certificate "\/etc\/my certs\/core\.pem";$/m);
    await refused(
      ["nginx", "-f", SR, "--service", "core", "--certs-dir", "/etc/$certs"],
      /contains "\$", which nginx reads as a variable/,
    );
  });
});

describe("config etcd", () => {
  it("ok/Netsy's split node-1: separate client flags (etcd 3.5+), said so in the comment", async () => {
    const d = "/etc/netsy/certs";
    const { out } = await config("etcd", "-f", NETSY, "--service", "node-1", "--certs-dir", d);
    assert.deepEqual(lines(out), [
      `--cert-file=${d}/node-1.pem \\`,
      `--key-file=${d}/node-1-key.pem \\`,
      `--client-cert-file=${d}/node-1-client.pem \\`,
      `--client-key-file=${d}/node-1-client-key.pem \\`,
      "--client-cert-auth \\",
      `--trusted-ca-file=${d}/root.pem \\`,
      `--client-crl-file=${d}/ca.crl \\`,
      `--peer-cert-file=${d}/node-1.pem \\`,
      `--peer-key-file=${d}/node-1-key.pem \\`,
      `--peer-client-cert-file=${d}/node-1-client.pem \\`,
      `--peer-client-key-file=${d}/node-1-client-key.pem \\`,
      "--peer-client-cert-auth \\",
      `--peer-trusted-ca-file=${d}/root.pem \\`,
      `--peer-crl-file=${d}/ca.crl`,
    ]);
    assert.match(out, /node-1 is split .*: these flags need etcd 3\.5 or later\./);
  });

  it("ok/a dual member: one certificate on both listeners, for etcd 3.4 and later; paths with spaces are shell-quoted", async () => {
    const { out } = await config("etcd", "-f", SR, "--service", "datasvc", "--pki", "/srv/my pki");
    assert.deepEqual(lines(out), [
      "--cert-file='/srv/my pki/services/datasvc/cert.pem' \\",
      "--key-file='/srv/my pki/services/datasvc/key.pem' \\",
      "--client-cert-auth \\",
      "--trusted-ca-file='/srv/my pki/services/datasvc/ca.pem' \\",
      "--client-crl-file='/srv/my pki/ca/crl.pem' \\",
      "--peer-cert-file='/srv/my pki/services/datasvc/cert.pem' \\",
      "--peer-key-file='/srv/my pki/services/datasvc/key.pem' \\",
      "--peer-client-cert-auth \\",
      "--peer-trusted-ca-file='/srv/my pki/services/datasvc/ca.pem' \\",
      "--peer-crl-file='/srv/my pki/ca/crl.pem'",
    ]);
    assert.match(out, /Works with etcd 3\.4 and later/);
  });
});

describe("config serviceradar", () => {
  it("ok/the runbook's blocks (seed 000): core, gateway, checker, datasvc with flat names; gateway's second target goes to stderr", async () => {
    const block = async (service: string) => {
      const r = await config("serviceradar", "-f", SR, "--service", service, "--certs-dir", HOST);
      return { json: JSON.parse(r.out) as unknown, err: r.err };
    };
    const tls = (n: string, serves: boolean) => ({
      cert_file: `${n}.pem`,
      key_file: `${n}-key.pem`,
      ca_file: "root.pem",
      ...(serves ? { client_ca_file: "root.pem" } : {}),
    });
    // The runbook's core.json has no server_name (its database dial is configured elsewhere);
    // the manifest's connection core -> cnpg gives one. Roles are the manifest's (default: usage).
    assert.deepEqual((await block("core")).json, {
      security: {
        mode: "mtls",
        cert_dir: HOST,
        server_name: "cnpg.serviceradar",
        role: "dual",
        tls: tls("core", true),
      },
    });
    assert.deepEqual((await block("checker")).json, {
      security: {
        mode: "mtls",
        cert_dir: HOST,
        server_name: "core.serviceradar",
        role: "client",
        tls: tls("checker", false),
      },
    });
    assert.deepEqual((await block("datasvc")).json, {
      security: {
        mode: "mtls",
        cert_dir: HOST,
        server_name: "nats-serviceradar",
        role: "dual",
        tls: tls("datasvc", true),
      },
      rbac: { roles: [{ identity: SR_DN("agent.serviceradar"), role: "reader" }] },
    });
    const gw = await block("gateway");
    assert.deepEqual(gw.json, {
      security: {
        mode: "mtls",
        cert_dir: HOST,
        server_name: "core.serviceradar",
        role: "dual",
        tls: tls("gateway", true),
      },
    });
    assert.equal(
      gw.err,
      "note: gateway dials 2 services; server_name is the first, core (core.serviceradar). Where its config names the others, set their server_name: agent (server_name agent.serviceradar).\n",
    );
  });

  it("ok/keys in the runbook's order, two-space JSON; PKI layout: cert_dir is the service's folder", async () => {
    const { out } = await config("serviceradar", "-f", SR, "--service", "nats", "--pki", "/srv/pki");
    assert.equal(
      out,
      `{
  "security": {
    "mode": "mtls",
    "cert_dir": "/srv/pki/services/nats",
    "role": "server",
    "tls": {
      "cert_file": "cert.pem",
      "key_file": "key.pem",
      "ca_file": "ca.pem",
      "client_ca_file": "ca.pem"
    }
  }
}
`,
    );
  });

  it("ok/datasvc gets the runbook's rbac block: each client by its whole subject as Go prints it (every datasvc version matches it), a reader; the note says who writes", async () => {
    const { out, err } = await config("serviceradar", "-f", SR, "--service", "datasvc", "--certs-dir", HOST);
    const json = JSON.parse(out) as { rbac: { roles: { identity: string; role: string }[] } };
    assert.deepEqual(json.rbac, {
      roles: [
        {
          identity: "CN=agent.serviceradar,OU=Operations,O=ServiceRadar,L=Your Location,ST=Your State,C=US",
          role: "reader",
        },
      ],
    });
    assert.match(err, /every client of datasvc is a reader .*a writer/);
    // Another component has no rbac block.
    assert.equal(
      "rbac" in
        (JSON.parse((await config("serviceradar", "-f", SR, "--service", "core", "--certs-dir", HOST)).out) as object),
      false,
    );
  });

  it("ok/a datasvc client with a spiffe:// identity is named by it (datasvc reads the URI SAN first); no client: no block, and a note says why", async () => {
    const dir = tempDir();
    const file = writeManifest(
      dir,
      `version: 1\ncluster: sr\nidentity: { uri: "spiffe://{cluster}.local/{role}/{name}" }\nca: { subject: { CN: SR CA } }\nservices:\n  datasvc: { usage: dual, addresses: [127.0.0.1] }\n  agent: { usage: dual, addresses: [127.0.0.2] }\n  kv: { usage: server, addresses: [127.0.0.3] }\nconnections:\n  - { from: agent, to: datasvc, address: 127.0.0.1 }\n`,
    );
    const { out } = await config("serviceradar", "-f", file, "--service", "datasvc");
    assert.deepEqual((JSON.parse(out) as { rbac: unknown }).rbac, {
      roles: [{ identity: "spiffe://sr.local/dual/agent", role: "reader" }],
    });
    const lone = await config("serviceradar", "-f", file, "--service", "kv");
    assert.equal("rbac" in (JSON.parse(lone.out) as object), false);
    assert.match(lone.err, /no connection in .* has `to: kv`, so no rbac block is written/);
  });

  it("fail/a split service: ServiceRadar takes one certificate for both directions", async () => {
    await refused(
      ["serviceradar", "-f", NETSY, "--service", "node-1"],
      /service node-1 is split .* remove split: true from services\.node-1/,
    );
  });
});

describe("config: refusals common to every component", () => {
  it("fail/a server component for a client-only service", async () => {
    for (const c of ["nats", "postgres", "nginx", "etcd"]) {
      await refused(
        [c, "-f", SR, "--service", "checker"],
        new RegExp(
          `mtlskit config ${c}: service checker has usage: client, so its certificate has no serverAuth and ${c} cannot serve with it`,
        ),
      );
    }
  });

  it("fail/unknown component, unknown service, no service named like the component, no component, two components", async () => {
    await refused(
      ["haproxy", "-f", SR],
      /unknown component "haproxy"; components are: nats, postgres, nginx, etcd, serviceradar/,
    );
    await refused(
      ["nginx", "-f", SR, "--service", "web"],
      /--service web: .*serviceradar\.yaml has no service "web"; services that can run nginx: core, cnpg, gateway, agent, nats, datasvc, dusk, sysmon/,
    );
    await refused(["postgres", "-f", SR], /which service\? .* has no service named postgres; give --service NAME/);
    await refused([], /name a component: nats, postgres, nginx, etcd, serviceradar/);
    await refused(["nats", "nginx"], /one component at a time/);
  });

  it("fail/--pki with --certs-dir, a relative --certs-dir, an unknown flag", async () => {
    await refused(["nats", "-f", SR, "--pki", "p", "--certs-dir", "/x"], /flag --pki is incompatible with --certs-dir/);
    await refused(["nats", "-f", SR, "--certs-dir", "certs"], /--certs-dir must be an absolute path/);
    await refused(["nats", "-f", SR, "--bogus"], /mtlskit config: Unknown option '--bogus'/);
  });

  it("ok/--certs-dir names the files of the flat output exporting the service: its names, the CA file after the host; fail/two flat outputs disagreeing", async () => {
    const dir = tempDir();
    const quick = readFileSync(path.join(REPO, "examples/quickstart.yaml"), "utf8");
    const flats =
      '  - { format: flat, dir: flat, services: [api], names: { ca: ca.crt, cert: server.crt, key: server.key } }\n  - { format: flat, dir: hosts, hosts: { box: [db] }, names: { ca: "{name}-ca.pem" } }\n';
    const file = writeManifest(dir, `${quick}\noutputs:\n${flats}`);
    const ssl = async (service: string) =>
      lines((await config("nginx", "-f", file, "--service", service, "--certs-dir", "/etc/tls")).out).filter((l) =>
        l.startsWith("ssl_c"),
      );
    assert.deepEqual(await ssl("api"), [
      "ssl_certificate /etc/tls/server.crt;",
      "ssl_certificate_key /etc/tls/server.key;",
      "ssl_client_certificate /etc/tls/ca.crt;",
      "ssl_crl /etc/tls/ca.crl;  # the CA's CRL: revoked clients are refused. nginx reads it at (re)load, and refuses",
    ]);
    assert.deepEqual(await ssl("db"), [
      "ssl_certificate /etc/tls/db.pem;",
      "ssl_certificate_key /etc/tls/db-key.pem;",
      "ssl_client_certificate /etc/tls/box-ca.pem;",
      "ssl_crl /etc/tls/ca.crl;  # the CA's CRL: revoked clients are refused. nginx reads it at (re)load, and refuses",
    ]);
    const two = writeManifest(
      dir,
      `${quick}\noutputs:\n${flats}  - { format: flat, dir: again, services: [api] }\n`,
      "two.yaml",
    );
    await refused(
      ["nginx", "-f", two, "--service", "api", "--certs-dir", "/etc/tls"],
      /--certs-dir: flat outputs outputs\.0 \(ca\.crt, server\.crt, server\.key\) and outputs\.2 \(root\.pem, api\.pem, api-key\.pem\) give service api different file names, and the snippet cannot tell which its host has; give those outputs the same names for api, or use --pki/,
    );
  });

  it("ok/--help lists every component", async () => {
    const { out } = await config("--help");
    for (const c of ["nats", "postgres", "nginx", "etcd", "serviceradar"])
      assert.match(out, new RegExp(`^  ${c} +\\S`, "m"));
    assert.match(out, /EXIT CODES/);
  });
});
