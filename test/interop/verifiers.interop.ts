/**
 * Independent verifiers: three X.509 path validators that share no code with mtlskit, nor with
 * each other, judge every certificate mtlskit issues; what they refuse, `check` flags.
 *
 * - OpenSSL (`openssl verify -x509_strict`), GnuTLS (`certtool --verify`, medium profile) and Go's
 *   crypto/x509 (test/interop/goverify, built offline into the run directory, one process per
 *   batch of cases) verify each certificate against the CA file alone, for its usage (serverAuth
 *   and/or clientAuth) and, as a server, at every address it declares (DNS name or IP SAN).
 * - PKIs: every example manifest, plus five of this file, one per CA key type (P-256, P-384,
 *   RSA 2048, RSA 4096, Ed25519), whose leaves' key types rotate through the usages (server,
 *   client, dual, dual split; see keyManifest). `check` finds no error in any of them.
 * - Refusals, each deployed so that `check` can see it: a server-only certificate presented as a
 *   client, a client-only one as a server, another CA's certificate (another name, and the same
 *   name with another key), an address the certificate lacks. Every verifier must refuse for the
 *   right reason, and `check` must report the matching codes.
 * - Time: faketime moves the clock of libc programs (openssl, certtool) but not Go's, whose
 *   runtime reads the clock without libc; so expiry is proven in Go with VerifyOptions.CurrentTime
 *   and in OpenSSL with -attime, one second either side of notBefore and notAfter, and
 *   `check(at)` agrees at those instants.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { copyFileSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import * as path from "node:path";
import { before, describe, it } from "node:test";
import { checkPki, type CheckReport } from "../../src/check/index.ts";
import { loadManifest } from "../../src/manifest/index.ts";
import { LAYOUT, abs } from "../../src/state/layout.ts";
import {
  buildGoverify,
  errorsAbout,
  exec,
  giveCertificate,
  makePki,
  need,
  REPO,
  RUN_DIR,
  type Pki,
  type Ran,
} from "./harness.ts";

type Purpose = "server" | "client";

/** EKU: the extendedKeyUsage OID certtool checks for each purpose. */
const EKU: Record<Purpose, string> = { server: "1.3.6.1.5.5.7.3.1", client: "1.3.6.1.5.5.7.3.2" };

/** Target is one certificate verified for one purpose against a CA file; a server one at each of `hosts` (none: no name check). */
interface Target {
  cert: string;
  ca: string;
  purpose: Purpose;
  hosts: string[];
}

/** Verdict is one verifier's answer: accepted or not, and its words. */
interface Verdict {
  ok: boolean;
  out: string;
}

/** RunOptions: the host to match, the time to verify at (openssl -attime, Go CurrentTime), and a faketime offset. */
interface RunOptions {
  host?: string;
  at?: Date;
  faketime?: string;
}

/** run executes argv, under `faketime OFFSET` when asked. */
function run(argv: string[], opts: RunOptions, input?: string): Ran {
  const [cmd, ...args] = opts.faketime ? [need("faketime"), opts.faketime, ...argv] : argv;
  return exec(cmd!, args, { input });
}

/** oneLine keeps a program's words on one line, so a message lists one verification per line. */
const oneLine = (text: string) => text.trim().replace(/\s*\n\s*/g, " / ");

const caFile = (pki: Pki) => abs(pki.pki, LAYOUT.caCert);

/** targets lists what each certificate of a PKI must pass: serverAuth at every declared address, clientAuth, or both. */
function targets(pki: Pki): Target[] {
  return pki.loaded.manifest.services.flatMap((s) =>
    s.slots.flatMap((slot) => {
      const purposes: Purpose[] = slot.profile === "dual" ? ["server", "client"] : [slot.profile];
      const hosts = [...s.dns, ...s.ips.map((ip) => ip.text)];
      return purposes.map((purpose) => ({
        cert: abs(pki.pki, LAYOUT.cert(slot)),
        ca: caFile(pki),
        purpose,
        hosts: purpose === "server" ? hosts : [],
      }));
    }),
  );
}

/** openssl: `openssl verify -x509_strict` with the CA file only, the purpose, and the host as name or IP. */
function openssl(t: Target, opts: RunOptions = {}): Verdict {
  const argv = [
    need("openssl"),
    "verify",
    "-x509_strict",
    "-no-CApath",
    "-no-CAstore",
    "-CAfile",
    t.ca,
    "-purpose",
    `ssl${t.purpose}`,
  ];
  if (opts.host) argv.push(isIP(opts.host) ? "-verify_ip" : "-verify_hostname", opts.host);
  if (opts.at) argv.push("-attime", String(Math.floor(opts.at.getTime() / 1000)));
  const r = run([...argv, t.cert], opts);
  return { ok: r.code === 0 && r.stdout.trim() === `${t.cert}: OK`, out: oneLine(r.out) };
}

/** certtool: GnuTLS's `certtool --verify` with the CA file, the purpose's OID and the host (a name or an IP). */
function certtool(t: Target, opts: RunOptions = {}): Verdict {
  const argv = [
    need("certtool"),
    "--verify",
    "--verify-profile",
    "medium",
    "--load-ca-certificate",
    t.ca,
    "--infile",
    t.cert,
    "--verify-purpose",
    EKU[t.purpose],
  ];
  if (opts.host) argv.push("--verify-hostname", opts.host);
  const r = run(argv, opts);
  const said = /Chain verification output: .*/.exec(r.stdout)?.[0];
  return {
    ok: r.code === 0 && said?.startsWith("Chain verification output: Verified.") === true,
    out: oneLine(said ?? r.out),
  };
}

/** goverify is the built Go verifier (see `before`). */
let goverify = "";

/** rfc3339 prints a time the way Go's time.RFC3339 parses it. */
const rfc3339 = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

/** goVerify runs every target through one goverify process: Verify with the purpose, then VerifyHostname for each host. */
function goVerify(ts: Target[], opts: Omit<RunOptions, "host"> = {}): Verdict[] {
  const cases = ts.map((t) => ({
    ca: t.ca,
    cert: t.cert,
    usage: t.purpose,
    hosts: t.hosts,
    ...(opts.at ? { at: rfc3339(opts.at) } : {}),
  }));
  const r = run([goverify], opts, JSON.stringify(cases));
  assert.equal(r.code, 0, `goverify failed:\n${r.out}`);
  const results = JSON.parse(r.stdout) as { ok: boolean; error: string }[];
  assert.equal(results.length, ts.length, `goverify answered ${results.length} of ${ts.length} cases`);
  return results.map((x) => ({ ok: x.ok, out: x.error }));
}

/** label names a verification in messages: the certificate's path in the PKI, the purpose and the host. */
const label = (t: Target, host?: string) =>
  `${path.relative(RUN_DIR, t.cert)} as ${t.purpose}${host ? ` at ${host}` : ""}`;

/** presented is the certificate `service` of a PKI presents for `purpose`, verified against the PKI's CA. */
const presented = (pki: Pki, service: string, purpose: Purpose): Target => ({
  cert: pki.svc(service).cert,
  ca: caFile(pki),
  purpose,
  hosts: [],
});

/** allThree asks Go, openssl and certtool about `t` (at `opts.host` only, when given). */
function allThree(t: Target, opts: RunOptions = {}): Record<"go" | "openssl" | "certtool", Verdict> {
  return {
    go: goVerify([{ ...t, hosts: opts.host ? [opts.host] : [] }], opts)[0]!,
    openssl: openssl(t, opts),
    certtool: certtool(t, opts),
  };
}

/** refusedByAll asserts that all three verifiers refuse `t`, each with the words `why` expects of it. */
function refusedByAll(t: Target, why: Record<"go" | "openssl" | "certtool", RegExp>, opts: RunOptions = {}): void {
  const verdicts = allThree(t, opts);
  const wrong = Object.entries(verdicts)
    .filter(([name, v]) => v.ok || !why[name as keyof typeof why].test(v.out))
    .map(
      ([name, v]) =>
        `${name} ${v.ok ? "accepted it" : `refused it, but not with ${why[name as keyof typeof why]}: ${v.out}`}`,
    );
  assert.equal(wrong.length, 0, `${label(t, opts.host)}:\n${wrong.join("\n")}`);
}

/** assertFlags asserts that check's errors about `service` include every one of `codes` ("code service" or "code from -> to"). */
function assertFlags(report: CheckReport, service: string, codes: string[]): void {
  const found = errorsAbout(report, service);
  assert.deepEqual(
    codes.filter((c) => !found.includes(c)),
    [],
    `check's errors about ${service}: ${found.join(", ") || "none"}`,
  );
}

/** validity reads notBefore and notAfter from a certificate file. */
function validity(file: string): { notBefore: Date; notAfter: Date } {
  const c = new X509Certificate(readFileSync(file));
  return { notBefore: new Date(c.validFrom), notAfter: new Date(c.validTo) };
}

const SECOND = 1000;
const shift = (d: Date, ms: number) => new Date(d.getTime() + ms);

// ── PKIs ──────────────────────────────────────────────────────────────────────────────────────

const EXAMPLES = readdirSync(path.join(REPO, "examples"))
  .filter((f) => f.endsWith(".yaml"))
  .sort();

const KEYS = ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-4096", "ed25519"] as const;
/** ROTATING: the leaf key types that rotate through the usages; RSA 4096 (RSA 2048's profile, seconds per key) is added once. */
const ROTATING = KEYS.filter((k) => k !== "rsa-4096");
const slug = (k: string) => k.replace(/^ecdsa-/, "").replace("-", "");

/**
 * keyManifest: a CA of KEYS[i] signing one leaf of each ROTATING key type, as a server, a client,
 * a dual and a dual split, rotated by i: across the manifests every CA key type signs every one of
 * those leaf key types, and each of them holds every usage. The RSA 4096 CA also signs a dual
 * RSA 4096 leaf, so every key type is a leaf too.
 */
function keyManifest(i: number): string {
  const ca = KEYS[i]!;
  const addresses = `[127.0.0.1, "::1", localhost]`;
  const leaves: { usage: "server" | "client" | "dual" | "split"; key: string }[] = (
    ["server", "client", "dual", "split"] as const
  ).map((usage, c) => ({ usage, key: ROTATING[(i + c) % ROTATING.length]! }));
  if (ca === "rsa-4096") leaves.push({ usage: "dual", key: "rsa-4096" });
  const name = (l: (typeof leaves)[number]) => `${l.usage}-${slug(l.key)}`;
  const [server, client, dual, split] = leaves.map(name);
  const services = leaves.map(
    (l) =>
      `  ${name(l)}: { usage: ${l.usage === "split" ? "dual, split: true" : l.usage}, key: ${l.key}${l.usage === "client" ? "" : `, addresses: ${addresses}`} }`,
  );
  return `version: 1
cluster: keys-${slug(ca)}
identity: { uri: "spiffe://{cluster}.local/{role}/{name}" }
ca: { key: ${ca}, validity: 5y, subject: { O: mtlskit interop, CN: ${ca} CA } }
defaults: { key: ${ca}, validity: 30d, renewBefore: 7d, subject: { O: mtlskit interop } }
services:
${services.join("\n")}
connections:
  - { from: ${client}, to: ${server}, address: localhost }
  - { from: ${dual}, to: ${server}, address: 127.0.0.1 }
  - { from: ${split}, to: ${dual}, address: "::1" }
  - { from: ${client}, to: ${split}, address: ${split} }
  - { from: ${dual}, to: ${split}, address: localhost }
`;
}

/**
 * trio: api serves, worker dials, db does both: the three usages and three connections the
 * refusals break. `caCn` names the CA; `apiAddresses` and `dbDialsApiAt` change api's declared
 * addresses and the one db dials it at (for a manifest changed after apply, see recheck).
 */
function trio(o: { caCn?: string; apiAddresses?: string; dbDialsApiAt?: string } = {}): string {
  return `version: 1
cluster: trio
identity: { uri: "spiffe://{cluster}.local/{role}/{name}" }
ca: { key: ecdsa-p256, validity: 10y, subject: { O: Trio, CN: ${o.caCn ?? "Trio CA"} } }
defaults: { key: ecdsa-p256, validity: 90d, renewBefore: 30d, subject: { O: Trio } }
services:
  api: { usage: server, addresses: ${o.apiAddresses ?? "[127.0.0.1, api.localhost]"} }
  worker: { usage: client }
  db: { usage: dual, addresses: [127.0.0.1, db.localhost] }
connections:
  - { from: worker, to: api, address: api.localhost }
  - { from: worker, to: db, address: db.localhost }
  - { from: db, to: api, address: ${o.dbDialsApiAt ?? "127.0.0.1"} }
`;
}

/** copyService copies one service's certificate and key from another PKI over `service`'s: files from another CA. */
function copyService(from: Pki, to: Pki, service: string): void {
  for (const f of ["cert", "key"] as const) copyFileSync(from.svc(service)[f], to.svc(service)[f]);
}

/** recheck runs check on a PKI's files with another manifest: the manifest changed, apply did not run again. */
function recheck(pki: Pki, manifest: string): CheckReport {
  const file = path.join(pki.dir, "changed.yaml");
  writeFileSync(file, manifest);
  return checkPki(loadManifest(file).manifest, pki.pki);
}

describe("independent verifiers", () => {
  const pkis = new Map<string, Pki>();
  const keyNames = KEYS.map((k) => `CA ${k}, leaves of rotating key types`);
  const exampleNames = EXAMPLES.map((f) => `examples/${f}`);
  let trioPki: Pki;

  before(async () => {
    goverify = buildGoverify();
    for (const f of EXAMPLES)
      pkis.set(`examples/${f}`, await makePki(path.basename(f, ".yaml"), path.join(REPO, "examples", f)));
    for (const [i, name] of keyNames.entries()) pkis.set(name, await makePki(`keys-${slug(KEYS[i]!)}`, keyManifest(i)));
    trioPki = await makePki("trio", trio());
  });

  for (const name of [...exampleNames, ...keyNames]) {
    it(`ok/check finds no error in ${name}`, () => {
      const report = pkis.get(name)!.check();
      assert.equal(
        report.errors,
        0,
        report.findings
          .filter((f) => f.severity === "error")
          .map((f) => `${f.code}: ${f.message}`)
          .join("\n"),
      );
    });

    it(`ok/openssl verify -x509_strict accepts every certificate of ${name} for its usage at each declared address`, () => {
      const failures: string[] = [];
      let runs = 0;
      for (const t of targets(pkis.get(name)!)) {
        for (const host of t.hosts.length ? t.hosts : [undefined]) {
          const v = openssl(t, { host });
          runs++;
          if (!v.ok) failures.push(`${label(t, host)}: ${v.out}`);
        }
      }
      assert.equal(failures.length, 0, `${failures.length} of ${runs} runs refused:\n${failures.join("\n")}`);
    });

    it(`ok/certtool --verify accepts every certificate of ${name} for its purpose OID at each declared address`, () => {
      const failures: string[] = [];
      let runs = 0;
      for (const t of targets(pkis.get(name)!)) {
        for (const host of t.hosts.length ? t.hosts : [undefined]) {
          const v = certtool(t, { host });
          runs++;
          if (!v.ok) failures.push(`${label(t, host)}: ${v.out}`);
        }
      }
      assert.equal(failures.length, 0, `${failures.length} of ${runs} runs refused:\n${failures.join("\n")}`);
    });

    it(`ok/Go crypto/x509 verifies every certificate of ${name} for its usage and every declared address`, () => {
      const ts = targets(pkis.get(name)!);
      const failures = goVerify(ts).flatMap((v, i) => (v.ok ? [] : [`${label(ts[i]!)}: ${v.out}`]));
      assert.equal(failures.length, 0, `${failures.length} of ${ts.length} cases refused:\n${failures.join("\n")}`);
    });
  }

  it("refused/a server-only certificate presented as a client: every verifier refuses it for clientAuth, and check flags eku-client and conn-client-usage", async () => {
    const pki = await makePki("server-as-client", trio());
    giveCertificate(pki, "api", "worker");
    const t = presented(pki, "worker", "client");
    refusedByAll(t, {
      go: /x509: certificate specifies an incompatible key usage/,
      openssl: /unsuitable certificate purpose/,
      certtool: /does not match the intended purpose/,
    });
    assertFlags(pki.check(), "worker", [
      "eku-client worker",
      "conn-client-usage worker -> api",
      "conn-client-usage worker -> db",
    ]);
  });

  it("refused/a client-only certificate presented as a server: every verifier refuses it for serverAuth, and check flags eku-server and conn-server-usage", async () => {
    const pki = await makePki("client-as-server", trio());
    giveCertificate(pki, "worker", "api");
    const t = presented(pki, "api", "server");
    refusedByAll(t, {
      go: /x509: certificate specifies an incompatible key usage/,
      openssl: /unsuitable certificate purpose/,
      certtool: /does not match the intended purpose/,
    });
    assertFlags(pki.check(), "api", [
      "eku-server api",
      "conn-server-usage worker -> api",
      "conn-server-usage db -> api",
    ]);
  });

  it("refused/a certificate from another CA: every verifier refuses it as signed by an unknown issuer, and check flags untrusted and conn-server-untrusted", async () => {
    const pki = await makePki("another-ca", trio());
    copyService(await makePki("other-ca", trio({ caCn: "Other CA" })), pki, "api");
    const t = presented(pki, "api", "server");
    refusedByAll(
      t,
      {
        go: /x509: certificate signed by unknown authority/,
        openssl: /unable to get local issuer certificate/,
        certtool: /The certificate issuer is unknown/,
      },
      { host: "api.localhost" },
    );
    assertFlags(pki.check(), "api", [
      "untrusted api",
      "conn-server-untrusted worker -> api",
      "conn-server-untrusted db -> api",
    ]);
  });

  it("refused/a certificate from a CA re-created under the same name: Go fails the same-named CA's signature, openssl and certtool find no issuer with its key identifier, and check flags bad-signature and conn-server-untrusted", async () => {
    const pki = await makePki("same-name-ca", trio());
    copyService(await makePki("same-name-ca-again", trio()), pki, "api");
    const t = presented(pki, "api", "server");
    refusedByAll(
      t,
      {
        go: /x509: certificate signed by unknown authority \(possibly because of "x509: ECDSA verification failure"/,
        openssl: /unable to get local issuer certificate/,
        certtool: /The certificate issuer is unknown/,
      },
      { host: "api.localhost" },
    );
    assertFlags(pki.check(), "api", [
      "bad-signature api",
      "conn-server-untrusted worker -> api",
      "conn-server-untrusted db -> api",
    ]);
  });

  it("refused/a server certificate at an address it does not carry: Go, openssl -verify_ip and certtool refuse 127.0.0.2, and check flags san-missing and conn-address once the manifest declares it", async () => {
    const pki = await makePki("address", trio());
    const t = presented(pki, "api", "server");
    refusedByAll(
      t,
      {
        go: /x509: certificate is valid for 127\.0\.0\.1, not 127\.0\.0\.2/,
        openssl: /IP address mismatch/,
        certtool: /The name in the certificate does not match the expected/,
      },
      { host: "127.0.0.2" },
    );
    assertFlags(
      recheck(pki, trio({ apiAddresses: "[127.0.0.1, 127.0.0.2, api.localhost]", dbDialsApiAt: "127.0.0.2" })),
      "api",
      ["san-missing api", "conn-address db -> api"],
    );
  });

  it("ok/faketime '+400 days' moves openssl's and certtool's clocks (a 90-day certificate has expired for them) but not Go's, which reads the clock without libc and still accepts it", () => {
    const t = presented(trioPki, "api", "server");
    const verdicts = allThree(t, { faketime: "+400 days", host: "api.localhost" });
    assert.ok(
      !verdicts.openssl.ok && /certificate has expired/.test(verdicts.openssl.out),
      `openssl under faketime: ${verdicts.openssl.out}`,
    );
    assert.ok(
      !verdicts.certtool.ok && /The certificate chain uses expired certificate/.test(verdicts.certtool.out),
      `certtool under faketime: ${verdicts.certtool.out}`,
    );
    assert.ok(verdicts.go.ok, `Go under faketime refused: ${verdicts.go.out}`);
  });

  describe("validity to the second (Go CurrentTime, openssl -attime, check at)", () => {
    /** instants: one second inside each end of the validity, and one second outside each. */
    const instants = () => {
      const { notBefore, notAfter } = validity(trioPki.svc("api").cert);
      for (const t of targets(trioPki))
        assert.deepEqual(
          validity(t.cert),
          { notBefore, notAfter },
          `${label(t)}: the trio's certificates share one validity`,
        );
      return {
        firstSecond: shift(notBefore, SECOND),
        lastSecond: shift(notAfter, -SECOND),
        afterNotAfter: shift(notAfter, SECOND),
        beforeNotBefore: shift(notBefore, -SECOND),
      };
    };

    /** refusedAt asserts that Go and openssl refuse every certificate of the trio at `at`, with the words `why` expects. */
    const refusedAt = (at: Date, why: { go: RegExp; openssl: RegExp }) => {
      const ts = targets(trioPki);
      const failures: string[] = [];
      goVerify(ts, { at }).forEach(
        (v, i) => (v.ok || !why.go.test(v.out)) && failures.push(`Go: ${label(ts[i]!)}: ${v.out || "accepted"}`),
      );
      for (const t of ts) {
        const v = openssl(t, { at });
        if (v.ok || !why.openssl.test(v.out)) failures.push(`openssl: ${label(t)}: ${v.out}`);
      }
      assert.equal(failures.length, 0, `at ${rfc3339(at)}:\n${failures.join("\n")}`);
    };

    it("ok/every certificate is accepted one second after notBefore and one second before notAfter by Go and openssl, and check finds no error then", () => {
      const { firstSecond, lastSecond } = instants();
      const failures: string[] = [];
      for (const at of [firstSecond, lastSecond]) {
        const ts = targets(trioPki);
        goVerify(ts, { at }).forEach(
          (v, i) => v.ok || failures.push(`Go at ${rfc3339(at)}: ${label(ts[i]!)}: ${v.out}`),
        );
        for (const t of ts) {
          const v = openssl(t, { at, host: t.hosts[0] });
          if (!v.ok) failures.push(`openssl at ${rfc3339(at)}: ${label(t, t.hosts[0])}: ${v.out}`);
        }
        const report = trioPki.check(at);
        if (report.errors)
          failures.push(
            `check at ${rfc3339(at)}: ${report.findings
              .filter((f) => f.severity === "error")
              .map((f) => f.code)
              .join(", ")}`,
          );
      }
      assert.equal(failures.length, 0, failures.join("\n"));
    });

    it("refused/one second after notAfter: Go and openssl -attime say expired, and check flags expired and conn-validity", () => {
      const at = instants().afterNotAfter;
      refusedAt(at, {
        go: /x509: certificate has expired or is not yet valid: current time \S+ is after/,
        openssl: /certificate has expired/,
      });
      const report = trioPki.check(at);
      for (const s of ["api", "worker", "db"]) assertFlags(report, s, [`expired ${s}`]);
      assertFlags(report, "api", ["conn-validity worker -> api", "conn-validity db -> api"]);
      assertFlags(report, "db", ["conn-validity worker -> db"]);
    });

    it("refused/one second before notBefore: Go and openssl -attime say not yet valid, and check flags not-yet-valid and conn-validity", () => {
      const at = instants().beforeNotBefore;
      refusedAt(at, {
        go: /x509: certificate has expired or is not yet valid: current time \S+ is before/,
        openssl: /certificate is not yet valid/,
      });
      const report = trioPki.check(at);
      for (const s of ["api", "worker", "db"]) assertFlags(report, s, [`not-yet-valid ${s}`]);
      assertFlags(report, "api", ["conn-validity worker -> api", "conn-validity db -> api"]);
      assertFlags(report, "db", ["conn-validity worker -> db"]);
    });
  });
});
