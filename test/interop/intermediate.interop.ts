/**
 * ca.intermediate interop (issue 13, section 2): chains root -> intermediate -> leaf, as apply
 * writes them (cert.pem = leaf + intermediate, every bundle = the root alone), judged by three
 * path validators that share no code with mtlskit and by a real mutual-TLS handshake.
 *
 * - PKIs: a P-384 root over a P-256 intermediate; an RSA 3072 root over an Ed25519 intermediate
 *   with RSA 2048 leaves; an organisation's root made by openssl (ca.import, its key given once
 *   with --ca-key) over mtlskit's intermediate; and the first PKI after the intermediate was
 *   renewed (a new key) with its bundles untouched.
 * - Verifiers, for every certificate and its usage: `openssl verify -x509_strict` (root as
 *   -CAfile, cert.pem as -untrusted), GnuTLS `certtool --verify --load-ca-certificate ROOT
 *   --infile cert.pem` and `certtool --verify-chain` over cert.pem + root, Go crypto/x509
 *   (goverify: the file's further certificates are intermediates).
 * - Handshakes: nginx presents a server's cert.pem and verifies clients against the root alone
 *   (ssl_verify_depth 2); curl (OpenSSL) and gnutls-cli (GnuTLS) trust the root alone and present
 *   a client's cert.pem. A negative control: the same server with its leaf alone (no
 *   intermediate) is refused by curl, and `check` flags it chain-incomplete.
 */
import assert from "node:assert/strict";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { checkPki } from "../../src/check/index.ts";
import { loadManifest } from "../../src/manifest/index.ts";
import { apply } from "../../src/plan/apply.ts";
import { loadCaKeyFile } from "../../src/state/read.ts";
import { opensslRootCa } from "../helpers/openssl.ts";
import { LAYOUT, abs } from "../../src/state/layout.ts";
import {
  buildGoverify,
  clonePki,
  errorsAbout,
  exec,
  freePort,
  makePki,
  need,
  startNginx,
  stopAll,
  subdir,
  type Pki,
  type Server,
} from "./harness.ts";

const DAY = 86_400_000;
const EKU = { server: "1.3.6.1.5.5.7.3.1", client: "1.3.6.1.5.5.7.3.2" } as const;
type Purpose = keyof typeof EKU;

/** manifest: a root of `rootKey` over an intermediate of `interKey`, leaves of `leafKey`; `ca` replaces the root's lines (ca.import). */
const manifest = (o: {
  cluster: string;
  rootKey?: string;
  interKey: string;
  leafKey: string;
  ca?: string;
}) => `version: 1
cluster: ${o.cluster}
identity: { uri: "spiffe://{cluster}.local/{role}/{name}" }
ca:
${o.ca ?? `  key: ${o.rootKey}\n  validity: 10y\n  subject: { O: mtlskit interop, CN: ${o.cluster} Root }\n`}  intermediate: { key: ${o.interKey}, validity: 365d, renewBefore: 100d }
defaults: { key: ${o.leafKey}, validity: 90d, renewBefore: 30d, subject: { O: mtlskit interop } }
services:
  web: { usage: server, addresses: [127.0.0.1, web.localhost] }
  worker: { usage: client }
  db: { usage: dual, addresses: [127.0.0.1, db.localhost] }
  edge: { usage: dual, split: true, addresses: [127.0.0.1] }
connections:
  - { from: worker, to: web, address: web.localhost }
  - { from: db, to: web, address: 127.0.0.1 }
  - { from: edge, to: db, address: db.localhost }
`;

/** Target is one certificate file verified for one purpose against the root. */
interface Target {
  label: string;
  cert: string;
  root: string;
  purpose: Purpose;
}

/** targets: every certificate slot of a PKI, for each purpose its profile allows. */
function targets(pki: Pki): Target[] {
  return pki.loaded.manifest.services.flatMap((s) =>
    s.slots.flatMap((slot) =>
      (slot.profile === "dual" ? (["server", "client"] as const) : [slot.profile]).map((purpose) => ({
        label: `${slot.id} as ${purpose}`,
        cert: abs(pki.pki, LAYOUT.cert(slot)),
        root: abs(pki.pki, LAYOUT.bundle(s.name)),
        purpose,
      })),
    ),
  );
}

/** openssl: `openssl verify -x509_strict` against the root, cert.pem as the untrusted pool; at `at` when given. */
function openssl(t: Target, at?: Date): string | undefined {
  const r = exec(need("openssl"), [
    "verify",
    "-x509_strict",
    "-no-CApath",
    "-no-CAstore",
    ...(at ? ["-attime", String(Math.floor(at.getTime() / 1000))] : []),
    "-CAfile",
    t.root,
    "-untrusted",
    t.cert,
    "-purpose",
    `ssl${t.purpose}`,
    t.cert,
  ]);
  return r.code === 0 && r.stdout.trim() === `${t.cert}: OK` ? undefined : r.out.trim();
}

function certtoolVerify(t: Target): string | undefined {
  const r = exec(need("certtool"), [
    "--verify",
    "--verify-profile",
    "medium",
    "--load-ca-certificate",
    t.root,
    "--infile",
    t.cert,
    "--verify-purpose",
    EKU[t.purpose],
  ]);
  const said = /Chain verification output: .*/.exec(r.stdout)?.[0];
  return r.code === 0 && said?.startsWith("Chain verification output: Verified.") ? undefined : (said ?? r.out);
}

/** certtoolChain: `certtool --verify-chain` over the whole chain (cert.pem, then the root), which must end self-signed. */
function certtoolChain(t: Target, dir: string): string | undefined {
  const chain = path.join(dir, `${t.label.replace(/[^a-z0-9]+/g, "-")}.chain.pem`);
  writeFileSync(chain, readFileSync(t.cert, "utf8") + readFileSync(t.root, "utf8"));
  const r = exec(need("certtool"), ["--verify-chain", "--verify-profile", "medium", "--infile", chain]);
  const said = /Chain verification output: .*/.exec(r.stdout)?.[0];
  return r.code === 0 && said?.startsWith("Chain verification output: Verified.") ? undefined : (said ?? r.out);
}

let goverify = "";

function goVerify(ts: Target[], at?: Date): (string | undefined)[] {
  const cases = ts.map((t) => ({
    ca: t.root,
    cert: t.cert,
    usage: t.purpose,
    hosts: [],
    ...(at ? { at: at.toISOString().replace(/\.\d{3}Z$/, "Z") } : {}),
  }));
  const r = exec(goverify, [], { input: JSON.stringify(cases) });
  assert.equal(r.code, 0, `goverify failed:\n${r.out}`);
  const results = JSON.parse(r.stdout) as { ok: boolean; error: string }[];
  assert.equal(results.length, ts.length);
  return results.map((x) => (x.ok ? undefined : x.error));
}

/** assertAllVerify runs every verifier over every target and lists each refusal. */
function assertAllVerify(pki: Pki): void {
  const ts = targets(pki);
  const failures: string[] = [];
  for (const t of ts) {
    for (const [name, why] of [
      ["openssl", openssl(t)],
      ["certtool --verify", certtoolVerify(t)],
      ["certtool --verify-chain", certtoolChain(t, pki.dir)],
    ] as const)
      if (why !== undefined) failures.push(`${name}: ${t.label}: ${why}`);
  }
  goVerify(ts).forEach((why, i) => why !== undefined && failures.push(`go: ${ts[i]!.label}: ${why}`));
  assert.deepEqual(failures, [], `${failures.length} refusals over ${ts.length} certificates x 4 verifiers`);
}

/** assertShape: cert.pem is leaf + the PKI's intermediate, every bundle the root alone. */
function assertShape(pki: Pki): void {
  const inter = readFileSync(abs(pki.pki, LAYOUT.caIntermediate), "utf8");
  const root = readFileSync(abs(pki.pki, LAYOUT.caCert), "utf8");
  for (const t of targets(pki)) {
    const blocks = readFileSync(t.cert, "utf8").split(/(?<=-----END CERTIFICATE-----\n)/);
    assert.equal(blocks.length, 2, `${t.label}: leaf + intermediate`);
    assert.equal(blocks[1], inter);
    assert.equal(readFileSync(t.root, "utf8"), root);
  }
  // A generated root allows exactly one CA below it; an imported one is the organisation's.
  if (!pki.loaded.manifest.ca.import)
    assert.match(
      exec(need("openssl"), ["x509", "-noout", "-text", "-in", abs(pki.pki, LAYOUT.caCert)]).stdout,
      /CA:TRUE, pathlen:1/,
    );
  assert.match(
    exec(need("openssl"), ["x509", "-noout", "-text", "-in", abs(pki.pki, LAYOUT.caIntermediate)]).stdout,
    /CA:TRUE, pathlen:0/,
  );
}

/** orgRootPki: an organisation's root made by openssl signs mtlskit's intermediate; its key is given once with --ca-key. */
async function orgRootPki(): Promise<Pki> {
  const dir = subdir("org-root");
  const root = opensslRootCa(dir, { curve: "P-384" });
  const file = path.join(dir, "mtlskit.yaml");
  writeFileSync(
    file,
    manifest({
      cluster: "org",
      interKey: "ecdsa-p256",
      leafKey: "ecdsa-p256",
      ca: `  import: { cert: ${root.cert} }\n`,
    }),
  );
  return makePkiWithKey("org-root-pki", file, root.key);
}

/** makePkiWithKey applies an existing manifest with `--ca-key` (the imported root's key, used once); without it apply refuses. */
async function makePkiWithKey(name: string, file: string, keyFile: string): Promise<Pki> {
  const dir = subdir(name);
  const pki = path.join(dir, "pki");
  const loaded = loadManifest(file);
  await assert.rejects(apply(loaded, pki, { hooks: false }), /the intermediate CA must be signed by the root/);
  await apply(loaded, pki, { caKey: { key: loadCaKeyFile(keyFile), file: keyFile }, hooks: false });
  const svc = (s: string) => {
    const d = path.join(pki, "services", s);
    return { dir: d, cert: path.join(d, "cert.pem"), key: path.join(d, "key.pem"), ca: path.join(d, "ca.pem") };
  };
  return { dir, file, pki, loaded, svc, check: (now?: Date) => checkPki(loaded.manifest, pki, { now }) };
}

// ── nginx, curl, gnutls-cli ───────────────────────────────────────────────────────────────────

/** serveWeb starts nginx presenting a server's cert.pem (leaf + intermediate), verifying clients against the root alone. */
async function serveWeb(
  name: string,
  cert: string,
  key: string,
  root: string,
): Promise<{ port: number; server: Server }> {
  const port = await freePort();
  const nginx = await startNginx(name, [{ port, cert, key, ca: root }]);
  return { port, server: nginx.server };
}

/** curl dials nginx trusting the root alone, presenting a client's cert.pem (leaf + intermediate). */
function curl(
  port: number,
  root: string,
  cert: string,
  key: string,
): { code: number | null; body: string; err: string } {
  const r = exec(need("curl"), [
    "-sS",
    "--max-time",
    "10",
    "--cacert",
    root,
    "--cert",
    cert,
    "--key",
    key,
    "--resolve",
    `web.localhost:${port}:127.0.0.1`,
    `https://web.localhost:${port}/`,
  ]);
  return { code: r.code, body: r.stdout, err: r.stderr };
}

/** gnutlsCli dials nginx with GnuTLS, trusting the root alone, presenting a client's cert.pem, and sends one request. */
function gnutlsCli(port: number, root: string, cert: string, key: string): { code: number | null; out: string } {
  const r = exec(
    need("gnutls-cli"),
    [
      "--x509cafile",
      root,
      "--x509certfile",
      cert,
      "--x509keyfile",
      key,
      "--sni-hostname",
      "web.localhost",
      "--verify-hostname",
      "web.localhost",
      "-p",
      String(port),
      "127.0.0.1",
    ],
    { input: "GET / HTTP/1.0\r\nHost: web.localhost\r\n\r\n", timeoutMs: 20_000 },
  );
  return { code: r.code, out: r.out };
}

describe("intermediate: independent verifiers and real handshakes", () => {
  const pkis: Record<string, Pki> = {};

  before(async () => {
    goverify = buildGoverify();
    pkis["P-384 root, P-256 intermediate"] = await makePki(
      "inter-p384",
      manifest({ cluster: "inter-p384", rootKey: "ecdsa-p384", interKey: "ecdsa-p256", leafKey: "ecdsa-p256" }),
    );
    pkis["RSA 3072 root, Ed25519 intermediate, RSA 2048 leaves"] = await makePki(
      "inter-rsa",
      manifest({ cluster: "inter-rsa", rootKey: "rsa-3072", interKey: "ed25519", leafKey: "rsa-2048" }),
    );
    pkis["an organisation's root (openssl, ca.import) over mtlskit's intermediate"] = await orgRootPki();
    const renewed = clonePki(pkis["P-384 root, P-256 intermediate"]!, "inter-renewed");
    const bundle = readFileSync(renewed.svc("web").ca, "utf8");
    const oldInter = readFileSync(abs(renewed.pki, LAYOUT.caIntermediate), "utf8");
    // The root's key is still in this PKI; renewal happens 300 days on (inside renewBefore 100d).
    const r = await apply(renewed.loaded, renewed.pki, { now: new Date(Date.now() + 300 * DAY), hooks: false });
    assert.equal(r.plan.intermediate?.action, "renew");
    assert.notEqual(readFileSync(abs(renewed.pki, LAYOUT.caIntermediate), "utf8"), oldInter);
    assert.equal(readFileSync(renewed.svc("web").ca, "utf8"), bundle, "renewal changed no bundle");
    pkis["the first PKI after its intermediate was renewed"] = renewed;
  });

  after(() => stopAll());

  for (const name of [
    "P-384 root, P-256 intermediate",
    "RSA 3072 root, Ed25519 intermediate, RSA 2048 leaves",
    "an organisation's root (openssl, ca.import) over mtlskit's intermediate",
  ]) {
    it(`ok/${name}: openssl -x509_strict, certtool --verify and --verify-chain, and Go verify every certificate; check finds no error`, () => {
      const pki = pkis[name]!;
      assertShape(pki);
      assertAllVerify(pki);
      const report = pki.check();
      assert.equal(report.errors, 0, report.findings.map((f) => `${f.code}: ${f.message}`).join("\n"));
    });
  }

  it("ok/after the intermediate's renewal, Go and openssl verify the new leaves against the unchanged root (at their time)", () => {
    const pki = pkis["the first PKI after its intermediate was renewed"]!;
    assertShape(pki);
    const at = new Date(Date.now() + 300 * DAY + 60_000);
    const ts = targets(pki);
    const failures = goVerify(ts, at).flatMap((why, i) => (why === undefined ? [] : [`go: ${ts[i]!.label}: ${why}`]));
    for (const t of ts) {
      const why = openssl(t, at);
      if (why !== undefined) failures.push(`openssl: ${t.label}: ${why}`);
    }
    assert.deepEqual(failures, []);
  });

  for (const name of [
    "P-384 root, P-256 intermediate",
    "RSA 3072 root, Ed25519 intermediate, RSA 2048 leaves",
    "an organisation's root (openssl, ca.import) over mtlskit's intermediate",
  ]) {
    it(`ok/${name}: nginx (root-only client bundle) accepts curl and gnutls-cli presenting intermediate-issued client certificates, and they accept nginx's chain`, async () => {
      const pki = pkis[name]!;
      const web = pki.svc("web");
      const { port, server } = await serveWeb(`nginx-${pki.loaded.manifest.cluster}`, web.cert, web.key, web.ca);
      try {
        for (const client of ["worker", "db"]) {
          const c = pki.svc(client);
          const r = curl(port, c.ca, c.cert, c.key);
          assert.equal(r.code, 0, `curl as ${client}: ${r.err}`);
          assert.match(r.body, new RegExp(`^verify=SUCCESS dn=CN=${client},O=mtlskit interop`));
          const g = gnutlsCli(port, c.ca, c.cert, c.key);
          assert.equal(g.code, 0, `gnutls-cli as ${client}:\n${g.out}`);
          assert.match(g.out, /verify=SUCCESS/);
        }
        // The split service presents its client half.
        const edge = pki.svc("edge");
        const e = curl(port, edge.ca, path.join(edge.dir, "client.pem"), path.join(edge.dir, "client-key.pem"));
        assert.equal(e.code, 0, e.err);
        assert.match(e.body, /^verify=SUCCESS dn=CN=edge/);
      } finally {
        await server.stop();
      }
    });
  }

  it("refused/the negative control: a server whose cert.pem lacks the intermediate is refused by curl and gnutls-cli, and check flags chain-incomplete", async () => {
    const pki = clonePki(pkis["P-384 root, P-256 intermediate"]!, "inter-incomplete");
    const web = pki.svc("web");
    writeFileSync(web.cert, readFileSync(web.cert, "utf8").split(/(?<=-----END CERTIFICATE-----\n)/)[0]!);
    assert.ok(statSync(web.cert).size > 0);
    const { port, server } = await serveWeb("nginx-incomplete", web.cert, web.key, web.ca);
    try {
      const w = pki.svc("worker");
      const r = curl(port, w.ca, w.cert, w.key);
      assert.notEqual(r.code, 0, r.body);
      assert.match(r.err, /unable to get local issuer certificate/);
      const g = gnutlsCli(port, w.ca, w.cert, w.key);
      assert.notEqual(g.code, 0, g.out);
      assert.match(g.out, /issuer is unknown|not trusted/i);
    } finally {
      await server.stop();
    }
    const found = errorsAbout(pki.check(), "web");
    assert.ok(found.includes("chain-incomplete web"), found.join(", "));
    assert.ok(found.includes("conn-server-untrusted worker -> web"), found.join(", "));
  });
});
