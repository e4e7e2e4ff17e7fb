/**
 * check: every finding code of CODES produced by a fixture and asserted exactly (code, what it is
 * about, a message naming the file and the value); the seed runbook's own openssl recipe; the
 * outputs (JSON, Prometheus exposition format, Nagios, human), -o, exit codes and flags; the
 * generated docs/checks.md.
 *
 * Fixtures are managed PKIs (`mtlskit apply`, then files damaged the way hosts get damaged) and
 * external PKIs (certificates forged in memory with the defect, named by `services.NAME.files`).
 * Time-based codes use --at / --skew instead of sleeping.
 */
import assert from "node:assert/strict";
import { loadManifest } from "../src/manifest/index.ts";
import { apply } from "../src/plan/apply.ts";
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { isIP } from "node:net";
import * as path from "node:path";
import { describe, it } from "node:test";
import { CODE_NAMES, CODES, type Code } from "../src/check/index.ts";
import { checksMarkdown } from "../src/check/gen-docs.ts";
import { REPO, runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { forge, newKey, syntheticRsaKey, writeForged, type Forged, type ForgeSpec } from "./helpers/forge.ts";
import { opensslVerify } from "./helpers/openssl.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const YEAR = 365 * DAY;
const ago = (ms: number) => new Date(Date.now() - ms);
const ahead = (ms: number) => new Date(Date.now() + ms);
const EXAMPLES = path.join(REPO, "examples");
const example = (name: string) => path.join(EXAMPLES, `${name}.yaml`);

// ── the JSON report, as `check --json` prints it ───────────────────────────────────────────────

type AboutJson =
  | { kind: "certificate"; service: string; id: string; file: string }
  | { kind: "ca"; subject: string; file: string }
  | { kind: "service"; service: string }
  | { kind: "connection"; index: number; from: string; to: string; address: string };
interface FindingJson {
  code: Code;
  severity: "error" | "warning";
  scope: string;
  about: AboutJson;
  label: string;
  message: string;
  fix: string;
}
interface ReportJson {
  now: string;
  summary: { errors: number; warnings: number; certificates: number; connections: number; failingConnections: number };
  findings: FindingJson[];
  certificates: {
    id: string;
    service: string;
    file: string;
    subject?: string;
    notAfter?: string;
    sha256?: string;
    errors: number;
    warnings: number;
  }[];
  cas: { subject: string; file: string; notAfter: string; sha256: string }[];
  connections: { index: number; from: string; to: string; address: string; ok: boolean; causes: Code[] }[];
}

/** Run names what `check` is run on: a manifest, the PKI directory, extra flags. */
interface Run {
  manifest: string;
  pki: string;
  args?: string[];
}

async function checkJson(r: Run): Promise<{ code: number; report: ReportJson }> {
  const res = await runCli(["check", "-f", r.manifest, "--pki", r.pki, "--json", ...(r.args ?? [])]);
  assert.equal(res.err, "", "check --json writes nothing on stderr");
  return { code: res.code, report: JSON.parse(res.out) as ReportJson };
}

// ── managed PKIs: apply, then damage ───────────────────────────────────────────────────────────

/** applied applies `manifest` into a fresh PKI directory. */
async function applied(manifest: string): Promise<Run & { dir: string }> {
  const dir = tempDir("mtlskit-check-");
  const pki = path.join(dir, "pki");
  const r = await runCli(["apply", "-f", manifest, "--pki", pki]);
  assert.equal(r.code, 0, r.err);
  return { dir, manifest, pki };
}

/** variant writes a copy of an example with `edit` applied to its text. */
function variant(name: string, edit: (text: string) => string): string {
  const text = readFileSync(example(name), "utf8");
  const changed = edit(text);
  assert.notEqual(changed, text, "the edit changed nothing");
  return writeManifest(tempDir("mtlskit-check-"), changed);
}

const svc = (r: { pki: string }, service: string, file: string) => path.join(r.pki, "services", service, file);

/** once memoizes an async setup shared by several cases. */
function once<T>(f: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= f());
}
const quickstart = () => applied(example("quickstart"));
/** withIntermediate is the quickstart with `ca.intermediate: SPEC`. */
const withIntermediate = (spec: string) =>
  variant("quickstart", (t) =>
    t.replace(
      "  subject: { O: Quickstart, CN: Quickstart CA }\n",
      `  subject: { O: Quickstart, CN: Quickstart CA }\n  intermediate: ${spec}\n`,
    ),
  );
const serviceradar = once(() => applied(example("serviceradar")));
const sensu = once(() => applied(example("sensu")));

// ── external PKIs: forged certificates named by `files` ────────────────────────────────────────

const CA = forge({ ca: true, cn: "Forge CA", notBefore: ago(DAY), notAfter: ahead(10 * YEAR) });
const OTHER_CA = forge({ ca: true, cn: "Other CA", notBefore: ago(DAY), notAfter: ahead(10 * YEAR) });

/** ExtService declares one external service and how its forged certificate deviates. */
interface ExtService {
  usage: "server" | "client" | "dual";
  cn?: string;
  addresses?: string[];
  /** cert: forge overrides for its certificate (the server half when split). */
  cert?: ForgeSpec;
  split?: boolean;
  owner?: string;
  /** dir: the folder under the fixture its files go in (default certs). */
  dir?: string;
}

interface ExtOptions {
  /** bundle: what root.pem holds. Default: the forge CA. */
  bundle?: Forged[];
  identity?: string;
  /** connections: `from -> to @ address`. */
  connections?: string[];
}

const sanOf = (a: string) => (isIP(a) ? `IP:${a}` : `DNS:${a}`);
const EKU = { server: ["serverAuth"], client: ["clientAuth"], dual: ["serverAuth", "clientAuth"] };

/** external writes forged certificates and a manifest whose services all name them with `files`. */
function external(
  services: Record<string, ExtService>,
  o: ExtOptions = {},
): Run & { dir: string; file: (service: string, name: string) => string } {
  const dir = tempDir("mtlskit-check-ext-");
  const q = (s: string) => `'${s.replace(/'/g, "''")}'`;
  let yaml = `version: 1\ncluster: ext\n${o.identity ? `identity: { uri: "${o.identity}" }\n` : ""}services:\n`;
  const folders = new Map<string, string>();
  for (const [name, s] of Object.entries(services)) {
    const rel = s.dir ?? "certs";
    const folder = path.join(dir, rel);
    folders.set(name, folder);
    mkdirSync(folder, { recursive: true });
    writeFileSync(path.join(folder, "root.pem"), (o.bundle ?? [CA]).map((c) => c.pem).join(""));
    const cn = s.cn ?? name;
    const base: ForgeSpec = {
      issuer: CA,
      cn,
      sans: [cn, ...(s.addresses ?? [])].map(sanOf),
      notBefore: ago(HOUR),
      notAfter: ahead(YEAR),
    };
    const main = forge({ ...base, eku: s.split ? ["serverAuth"] : EKU[s.usage], ...s.cert });
    writeForged(folder, name, main);
    let files = `cert: ${q(`${rel}/${name}.pem`)}, key: ${q(`${rel}/${name}-key.pem`)}, ca: ${q(`${rel}/root.pem`)}`;
    if (s.split) {
      writeForged(folder, `${name}-client`, forge({ ...base, eku: ["clientAuth"] }));
      files += `, clientCert: ${q(`${rel}/${name}-client.pem`)}, clientKey: ${q(`${rel}/${name}-client-key.pem`)}`;
    }
    if (s.owner !== undefined) files += `, owner: ${q(s.owner)}`;
    yaml += `  ${name}:\n    usage: ${s.usage}\n    cn: ${cn}\n${s.split ? "    split: true\n" : ""}${s.addresses ? `    addresses: [${s.addresses.map((a) => `"${a}"`).join(", ")}]\n` : ""}    files: { ${files} }\n`;
  }
  if (o.connections) {
    yaml += "connections:\n";
    for (const c of o.connections) {
      const m = /^(\S+) -> (\S+) @ (\S+)$/.exec(c)!;
      yaml += `  - { from: ${m[1]}, to: ${m[2]}, address: "${m[3]}" }\n`;
    }
  }
  return {
    dir,
    manifest: writeManifest(dir, yaml),
    pki: path.join(dir, "no-pki"),
    file: (service, name) => path.join(folders.get(service)!, name),
  };
}

// ── the fixture table ──────────────────────────────────────────────────────────────────────────

/** Want is one expected finding: its code, what it is about (the JSON `label`), message and fix substrings. */
interface Want {
  code: Code;
  about: string;
  has?: string[];
  fix?: string[];
}

interface Case {
  name: string;
  setup: () => Promise<{ run: Run; want: Want[] }>;
}

/** ABOUT_KINDS: the kinds of `about` each scope's findings may have. */
const ABOUT_KINDS: Record<string, string[]> = {
  certificate: ["certificate"],
  ca: ["ca"],
  deployment: ["service", "ca"],
  connection: ["connection"],
};

/**
 * assertFindings: every wanted finding is there with its substrings, and nothing else is: each
 * finding is matched by code and label (warnings included, so the code set is exact).
 */
function assertFindings(report: ReportJson, want: Want[]): void {
  const got = report.findings.map((f) => `${f.code} @ ${f.label}: ${f.message}`).join("\n");
  for (const w of want) {
    const f = report.findings.find(
      (x) => x.code === w.code && x.label === w.about && (w.has ?? []).every((s) => x.message.includes(s)),
    );
    assert.ok(f, `no ${w.code} @ ${w.about} with ${JSON.stringify(w.has ?? [])}; findings:\n${got}`);
    for (const s of w.fix ?? [])
      assert.ok(f.fix.includes(s), `${w.code} @ ${w.about}: fix ${JSON.stringify(f.fix)} lacks ${JSON.stringify(s)}`);
  }
  const extra = report.findings.filter((f) => !want.some((w) => w.code === f.code && w.about === f.label));
  assert.deepEqual(
    extra.map((f) => `${f.code} @ ${f.label}: ${f.message}`),
    [],
    "unexpected findings",
  );
  for (const f of report.findings) {
    assert.equal(f.severity, CODES[f.code].severity, f.code);
    assert.equal(f.scope, CODES[f.code].scope, f.code);
    assert.ok(
      ABOUT_KINDS[f.scope]!.includes(f.about.kind),
      `${f.code}: about.kind ${f.about.kind} for scope ${f.scope}`,
    );
    assert.ok(f.fix.length > 0, `${f.code} has a fix`);
    if (f.about.kind === "connection") {
      const c = report.connections[f.about.index]!;
      assert.deepEqual(
        [c.from, c.to, c.address],
        [f.about.from, f.about.to, f.about.address],
        "about.index points at the connection",
      );
      if (f.severity === "error")
        assert.ok(!c.ok && c.causes.includes(f.code), `${f.code} is a cause of connection ${c.index}`);
    }
  }
  for (const c of report.connections) {
    const errors = report.findings.filter(
      (f) => f.about.kind === "connection" && f.about.index === c.index && f.severity === "error",
    );
    assert.equal(c.ok, errors.length === 0, `connection ${c.index} ok`);
  }
}

/** conn labels a connection the way findings name it. */
const conn = (from: string, to: string, address: string) => `${from} -> ${to} @ ${address}`;
/** fmt is how lint.ts prints a time: 2027-01-01 12:00 UTC. */
const fmt = (d: Date) => d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
const notAfterOf = (file: string) => new Date(new X509Certificate(readFileSync(file)).validTo);

const CASES: Case[] = [
  // ── certificates ──
  {
    name: "fail/cert-missing/api's cert.pem deleted",
    async setup() {
      const r = await quickstart();
      rmSync(svc(r, "api", "cert.pem"));
      return {
        run: r,
        want: [
          { code: "cert-missing", about: "api", has: [svc(r, "api", "cert.pem"), "does not exist"] },
          {
            code: "conn-missing",
            about: conn("worker", "api", "api.localhost"),
            has: ["api (the server) cannot present a certificate", svc(r, "api", "cert.pem")],
          },
          { code: "conn-missing", about: conn("db", "api", "127.0.0.1"), has: ["api (the server)"] },
        ],
      };
    },
  },
  {
    name: "fail/cert-missing/a service added to the manifest and not applied yet",
    async setup() {
      const r = await quickstart();
      const manifest = variant("quickstart", (t) =>
        t.replace("\nconnections:", "\n  cache: { usage: server, addresses: [127.0.0.1] }\n\nconnections:"),
      );
      return {
        run: { ...r, manifest },
        want: [
          {
            code: "cert-missing",
            about: "cache",
            has: ["cache has not been issued yet", path.join(r.pki, "services", "cache")],
            fix: ["mtlskit apply"],
          },
        ],
      };
    },
  },
  {
    name: "fail/cert-malformed/cert.pem truncated",
    async setup() {
      const r = await quickstart();
      const file = svc(r, "api", "cert.pem");
      writeFileSync(file, readFileSync(file, "utf8").slice(0, 200));
      return {
        run: r,
        want: [
          {
            code: "cert-malformed",
            about: "api",
            has: [file, "is truncated: block 1 has a -----BEGIN line but no -----END line"],
          },
          { code: "conn-missing", about: conn("worker", "api", "api.localhost") },
          { code: "conn-missing", about: conn("db", "api", "127.0.0.1") },
        ],
      };
    },
  },
  {
    name: "fail/cert-malformed/garbage and a private key where the certificate belongs",
    async setup() {
      const r = await quickstart();
      writeFileSync(svc(r, "api", "cert.pem"), "hello, I am not a certificate\n");
      copyFileSync(svc(r, "worker", "key.pem"), svc(r, "worker", "cert.pem"));
      return {
        run: r,
        want: [
          { code: "cert-malformed", about: "api", has: [svc(r, "api", "cert.pem"), "holds no PEM block"] },
          { code: "cert-malformed", about: "worker", has: [svc(r, "worker", "cert.pem"), "holds a PRIVATE KEY block"] },
          { code: "conn-missing", about: conn("worker", "api", "api.localhost") },
          { code: "conn-missing", about: conn("worker", "db", "db.localhost") },
          { code: "conn-missing", about: conn("db", "api", "127.0.0.1") },
        ],
      };
    },
  },
  {
    name: "fail/key-missing/db's key.pem deleted",
    async setup() {
      const r = await quickstart();
      rmSync(svc(r, "db", "key.pem"));
      return {
        run: r,
        want: [
          { code: "key-missing", about: "db", has: [svc(r, "db", "key.pem"), "does not exist"], fix: ["--reissue db"] },
          {
            code: "conn-missing",
            about: conn("worker", "db", "db.localhost"),
            has: ["db (the server) cannot present a certificate", svc(r, "db", "key.pem")],
          },
          {
            code: "conn-missing",
            about: conn("db", "api", "127.0.0.1"),
            has: ["db (the client) cannot present a certificate"],
          },
        ],
      };
    },
  },
  {
    name: "fail/key-missing/key.pem truncated",
    async setup() {
      const r = await quickstart();
      const key = svc(r, "worker", "key.pem");
      writeFileSync(key, readFileSync(key, "utf8").slice(0, 60), { mode: 0o600 });
      return {
        run: r,
        want: [
          {
            code: "key-missing",
            about: "worker",
            has: [key, "is not a usable private key (truncated: a -----BEGIN line without its -----END line)"],
          },
          {
            code: "conn-missing",
            about: conn("worker", "api", "api.localhost"),
            has: ["worker (the client) cannot present a certificate", key],
          },
          { code: "conn-missing", about: conn("worker", "db", "db.localhost") },
        ],
      };
    },
  },
  {
    name: "fail/chain-order/the intermediate first, then the leaf: one finding, not a cascade",
    async setup() {
      const inter = forge({
        ca: { pathLen: 0 },
        cn: "Issuing CA 1",
        issuer: CA,
        notBefore: ago(DAY),
        notAfter: ahead(5 * YEAR),
      });
      const x = external(
        { api: { usage: "server", addresses: ["10.0.0.1"], cert: { issuer: inter } }, worker: { usage: "client" } },
        { connections: ["worker -> api @ 10.0.0.1"] },
      );
      const file = x.file("api", "api.pem");
      writeFileSync(file, inter.pem + readFileSync(file, "utf8"));
      return {
        run: x,
        want: [
          {
            code: "chain-order",
            about: "api",
            has: [file, "starts with the CA certificate CN=Issuing CA 1", "the leaf CN=api is certificate 2"],
            fix: ["put the leaf first", "cat leaf.pem intermediate.pem"],
          },
          { code: "conn-missing", about: conn("worker", "api", "10.0.0.1"), has: ["starts with the CA certificate"] },
        ],
      };
    },
  },
  {
    name: "fail/key-encrypted/api's key encrypted with a passphrase, PKCS#8 and OpenSSL's traditional format, the encryption named",
    async setup() {
      const r = await quickstart();
      const key = svc(r, "api", "key.pem");
      execFileSync("openssl", ["pkey", "-in", key, "-out", `${key}.enc`, "-aes256", "-passout", "pass:secret"]);
      renameSync(`${key}.enc`, key);
      chmodSync(key, 0o600);
      const dbKey = svc(r, "db", "key.pem");
      execFileSync("openssl", ["ec", "-in", dbKey, "-out", `${dbKey}.enc`, "-aes256", "-passout", "pass:secret"], {
        stdio: "pipe",
      });
      renameSync(`${dbKey}.enc`, dbKey);
      chmodSync(dbKey, 0o600);
      assert.match(readFileSync(dbKey, "utf8"), /Proc-Type: 4,ENCRYPTED/);
      return {
        run: r,
        want: [
          {
            code: "key-encrypted",
            about: "api",
            has: [`${key} is encrypted (PKCS#8 AES-256-CBC):`, "cannot load an encrypted key"],
            fix: ["openssl pkey -in", "mode 0600"],
          },
          { code: "key-encrypted", about: "db", has: [`${dbKey} is encrypted (AES-256-CBC):`] },
        ],
      };
    },
  },
  {
    name: "fail/key-mismatch/key.pem swapped between api and db",
    async setup() {
      const r = await quickstart();
      const tmp = path.join(r.dir, "swap");
      renameSync(svc(r, "api", "key.pem"), tmp);
      renameSync(svc(r, "db", "key.pem"), svc(r, "api", "key.pem"));
      renameSync(tmp, svc(r, "db", "key.pem"));
      return {
        run: r,
        want: [
          {
            code: "key-mismatch",
            about: "api",
            has: [`${svc(r, "api", "key.pem")} is not the private key of ${svc(r, "api", "cert.pem")}`],
          },
          {
            code: "key-mismatch",
            about: "db",
            has: [`${svc(r, "db", "key.pem")} is not the private key of ${svc(r, "db", "cert.pem")}`],
          },
          { code: "conn-missing", about: conn("worker", "api", "api.localhost"), has: ["does not match"] },
          { code: "conn-missing", about: conn("worker", "db", "db.localhost") },
          { code: "conn-missing", about: conn("db", "api", "127.0.0.1") },
        ],
      };
    },
  },
  {
    name: "fail/untrusted/Unknown Authority: one host (dusk) got a different root.pem",
    async setup() {
      const r = await applied(example("serviceradar"));
      writeFileSync(svc(r, "dusk", "ca.pem"), OTHER_CA.pem);
      const bundle = svc(r, "dusk", "ca.pem");
      return {
        run: r,
        want: [
          {
            code: "untrusted",
            about: "dusk",
            has: [
              svc(r, "dusk", "cert.pem"),
              `does not chain to ${bundle}`,
              "does not hold the CA that issued it (CN=ServiceRadar CA",
              "the bundle was replaced",
            ],
            fix: ["it rewrites", "the certificate is fine"],
          },
          { code: "bundle-differs", about: "dusk", has: [bundle, "CN=Other CA", "8 other services"] },
          // dusk verifies the agent (it serves it) and core (it dials it) with the wrong root.
          {
            code: "conn-client-untrusted",
            about: conn("agent", "dusk", "192.168.2.22"),
            has: ["dusk will refuse agent's certificate", svc(r, "agent", "cert.pem"), bundle],
          },
          {
            code: "conn-server-untrusted",
            about: conn("dusk", "core", "core.serviceradar"),
            has: ["dusk will refuse core's certificate", svc(r, "core", "cert.pem"), bundle],
          },
        ],
      };
    },
  },
  {
    name: "fail/conn-server-untrusted/the client's ca.pem is another CA (worker cannot verify api nor db)",
    async setup() {
      const r = await quickstart();
      writeFileSync(svc(r, "worker", "ca.pem"), OTHER_CA.pem);
      return {
        run: r,
        want: [
          {
            code: "conn-server-untrusted",
            about: conn("worker", "api", "api.localhost"),
            has: ["worker will refuse api's certificate", svc(r, "api", "cert.pem")],
          },
          {
            code: "conn-server-untrusted",
            about: conn("worker", "db", "db.localhost"),
            has: ["worker will refuse db's certificate"],
          },
          { code: "untrusted", about: "worker", has: [svc(r, "worker", "cert.pem")] },
          { code: "bundle-differs", about: "worker", has: [svc(r, "worker", "ca.pem")] },
        ],
      };
    },
  },
  {
    name: "fail/bad-signature/the CA re-created under the same name",
    async setup() {
      const again = forge({ ca: true, cn: "Forge CA", key: newKey(), notBefore: ago(DAY), notAfter: ahead(10 * YEAR) });
      const x = external({ api: { usage: "server", addresses: ["10.0.0.1"] } }, { bundle: [again] });
      return {
        run: x,
        want: [
          {
            code: "bad-signature",
            about: "api",
            has: [x.file("api", "api.pem"), "CN=Forge CA", "has the issuer's name but not the key"],
          },
        ],
      };
    },
  },
  {
    name: "fail/expired/Sensu etcd backends, a day after notAfter",
    async setup() {
      const r = await sensu();
      const names = ["backend-1", "backend-2", "backend-3", "agent"];
      const ends = names.map((n) => notAfterOf(svc(r, n, "cert.pem")));
      const at = new Date(Math.max(...ends.map((d) => d.getTime())) + DAY + HOUR);
      const peers = [
        ["backend-1", "backend-2", "10.0.0.2"],
        ["backend-1", "backend-3", "10.0.0.3"],
        ["backend-2", "backend-1", "10.0.0.1"],
        ["backend-2", "backend-3", "10.0.0.3"],
        ["backend-3", "backend-1", "10.0.0.1"],
        ["backend-3", "backend-2", "10.0.0.2"],
        ["agent", "backend-1", "backend-1.example.com"],
        ["agent", "backend-2", "backend-2.example.com"],
        ["agent", "backend-3", "backend-3.example.com"],
      ] as const;
      return {
        run: { ...r, args: ["--at", at.toISOString()] },
        want: [
          ...names.map(
            (n, i): Want => ({
              code: "expired",
              about: n,
              has: [svc(r, n, "cert.pem"), "expired 1 day ago", `notAfter ${fmt(ends[i]!)}`],
            }),
          ),
          ...peers.map(
            ([from, to, address]): Want => ({
              code: "conn-validity",
              about: conn(from, to, address),
              has: [`${from} will refuse ${to}'s certificate`, "expired on"],
            }),
          ),
        ],
      };
    },
  },
  {
    name: "fail/not-yet-valid/notBefore tomorrow",
    async setup() {
      const x = external(
        {
          api: { usage: "server", addresses: ["10.0.0.1"], cert: { notBefore: ahead(DAY) } },
          worker: { usage: "client" },
        },
        { connections: ["worker -> api @ 10.0.0.1"] },
      );
      return {
        run: x,
        want: [
          {
            code: "not-yet-valid",
            about: "api",
            has: [x.file("api", "api.pem"), "is not valid until", "23 hours from now"],
          },
          {
            code: "conn-validity",
            about: conn("worker", "api", "10.0.0.1"),
            has: ["worker will refuse api's certificate", "not valid until"],
          },
        ],
      };
    },
  },
  {
    name: "fail/renewal-due/quickstart 70 days on (--at), inside renewBefore 30d",
    async setup() {
      const r = await quickstart();
      const at = new Date(Date.now() + 70 * DAY).toISOString();
      return {
        run: { ...r, args: ["--at", at] },
        want: ["api", "worker", "db"].map(
          (n): Want => ({
            code: "renewal-due",
            about: n,
            has: [svc(r, n, "cert.pem"), "expires in 19 days", "renewal window of 30 days"],
          }),
        ),
      };
    },
  },
  {
    name: "fail/revoked/quickstart: api revoked, re-issued by apply, then the old pair restored from a backup",
    async setup() {
      const r = await quickstart();
      const cert = svc(r, "api", "cert.pem");
      const key = svc(r, "api", "key.pem");
      const old = [readFileSync(cert), readFileSync(key)] as const;
      for (const args of [["revoke", "api", "--reason", "keyCompromise"], ["apply"]])
        assert.equal((await runCli([...args, "-f", r.manifest, "--pki", r.pki])).code, 0);
      writeFileSync(cert, old[0]);
      writeFileSync(key, old[1], { mode: 0o600 });
      return {
        run: r,
        want: [
          { code: "revoked", about: "api", has: [cert, "(keyCompromise)", "still deployed"], fix: ["--reissue api"] },
        ],
      };
    },
  },
  {
    name: "fail/crl-expired/quickstart applied 8 days ago (the CRL lives 7d) and not since",
    async setup() {
      const dir = tempDir("mtlskit-check-");
      const r = { dir, manifest: example("quickstart"), pki: path.join(dir, "pki") };
      await apply(loadManifest(r.manifest), r.pki, { now: new Date(Date.now() - 8 * DAY), hooks: false });
      return {
        run: r,
        want: [
          {
            code: "crl-expired",
            about: "CA CN=Quickstart CA, O=Quickstart",
            has: ["the CRL's nextUpdate", "has passed"],
            fix: ["re-signs"],
          },
        ],
      };
    },
  },
  {
    name: "fail/crl-untrusted/quickstart: ca/crl.pem replaced by another PKI's CRL",
    async setup() {
      const r = await quickstart();
      const other = await quickstart();
      writeFileSync(path.join(r.pki, "ca", "crl.pem"), readFileSync(path.join(other.pki, "ca", "crl.pem")));
      return {
        run: r,
        want: [
          { code: "crl-untrusted", about: "CA CN=Quickstart CA, O=Quickstart", has: ["signature does not verify"] },
        ],
      };
    },
  },
  {
    name: "fail/clock-skew/a fresh PKI judged with --skew 1h (mtlskit backdates 5 minutes)",
    async setup() {
      const r = await quickstart();
      return {
        run: { ...r, args: ["--skew", "1h"] },
        want: ["api", "worker", "db"].map(
          (n): Want => ({
            code: "clock-skew",
            about: n,
            has: [svc(r, n, "cert.pem"), "until it is 60 minutes old", "clears by itself"],
          }),
        ),
      };
    },
  },
  {
    name: "fail/eku-server/Incompatible key usage: the checker certificate (clientAuth only) on dual dusk",
    async setup() {
      const x = external(
        {
          dusk: {
            usage: "dual",
            addresses: ["192.168.2.22"],
            cert: { cn: "checker.serviceradar", eku: ["clientAuth"], sans: ["IP:192.168.2.22"] },
          },
          agent: { usage: "dual", addresses: ["192.168.2.21"] },
        },
        { connections: ["agent -> dusk @ 192.168.2.22"] },
      );
      const cert = x.file("dusk", "dusk.pem");
      return {
        run: x,
        want: [
          {
            code: "eku-server",
            about: "dusk",
            has: [cert, "extendedKeyUsage is clientAuth, without serverAuth"],
            fix: [cert, "extendedKeyUsage serverAuth, clientAuth"],
          },
          { code: "cn-not-san", about: "dusk", has: [cert, "CN checker.serviceradar"] },
          {
            code: "conn-server-usage",
            about: conn("agent", "dusk", "192.168.2.22"),
            has: ["agent will refuse dusk's certificate", cert, "incompatible key usage"],
            fix: [cert, "extendedKeyUsage serverAuth, clientAuth"],
          },
        ],
      };
    },
  },
  {
    name: "fail/eku-client/a client with a serverAuth-only certificate",
    async setup() {
      const x = external(
        {
          api: { usage: "server", addresses: ["10.0.0.1"] },
          worker: { usage: "client", cert: { eku: ["serverAuth"] } },
        },
        { connections: ["worker -> api @ 10.0.0.1"] },
      );
      const cert = x.file("worker", "worker.pem");
      return {
        run: x,
        want: [
          {
            code: "eku-client",
            about: "worker",
            has: [cert, "without clientAuth"],
            fix: ["extendedKeyUsage clientAuth"],
          },
          {
            code: "conn-client-usage",
            about: conn("worker", "api", "10.0.0.1"),
            has: ["api will refuse worker's certificate", cert, "without clientAuth"],
          },
        ],
      };
    },
  },
  {
    name: "fail/eku-absent/no extendedKeyUsage",
    async setup() {
      const x = external({ api: { usage: "server", cert: { eku: null } } });
      return {
        run: x,
        want: [
          {
            code: "eku-absent",
            about: "api",
            has: [x.file("api", "api.pem"), "no extendedKeyUsage"],
            fix: ["extendedKeyUsage serverAuth"],
          },
        ],
      };
    },
  },
  {
    name: "fail/key-usage/keyUsage without digitalSignature",
    async setup() {
      const x = external(
        {
          api: { usage: "server", addresses: ["10.0.0.1"], cert: { ku: ["contentCommitment"] } },
          worker: { usage: "client" },
        },
        { connections: ["worker -> api @ 10.0.0.1"] },
      );
      const cert = x.file("api", "api.pem");
      return {
        run: x,
        want: [
          { code: "key-usage", about: "api", has: [cert, "keyUsage is contentCommitment, without digitalSignature"] },
          {
            code: "conn-server-usage",
            about: conn("worker", "api", "10.0.0.1"),
            has: [cert, "without digitalSignature"],
          },
        ],
      };
    },
  },
  {
    // Issue 11: check called this connection an error that "will refuse" and asked for the serverAuth
    // the certificate has, while OpenSSL accepts it in TLS 1.2 and 1.3 and Go never checks keyUsage.
    name: "fail/key-usage-strict/an RSA server with keyEncipherment, without digitalSignature: a warning naming GnuTLS and Java, the connection works",
    async setup() {
      const x = external(
        {
          api: { usage: "server", addresses: ["10.0.0.1"], cert: { key: newKey("rsa-2048"), ku: ["keyEncipherment"] } },
          worker: { usage: "client" },
        },
        { connections: ["worker -> api @ 10.0.0.1"] },
      );
      const cert = x.file("api", "api.pem");
      return {
        run: x,
        want: [
          {
            code: "key-usage-strict",
            about: "api",
            has: [
              cert,
              "keyUsage is keyEncipherment, without digitalSignature",
              "GnuTLS",
              "Java",
              "OpenSSL (Node, nginx, PostgreSQL) and Go accept it",
            ],
            fix: ["add digitalSignature to its keyUsage (keyUsage = digitalSignature, keyEncipherment)"],
          },
        ],
      };
    },
  },
  {
    name: "fail/key-usage-extra/keyEncipherment on an ECDSA key",
    async setup() {
      const x = external({ api: { usage: "server", cert: { ku: ["digitalSignature", "keyEncipherment"] } } });
      return {
        run: x,
        want: [{ code: "key-usage-extra", about: "api", has: [x.file("api", "api.pem"), "keyEncipherment", "EC key"] }],
      };
    },
  },
  {
    name: "fail/san-missing/Gateway IP Mismatch: the gateway's address changed to one not in its cert",
    async setup() {
      const r = await serviceradar();
      const manifest = variant(
        "serviceradar",
        (t) =>
          t.replace("addresses: [192.168.2.100]", "addresses: [192.168.2.101]") +
          "  - { from: checker, to: gateway, address: 192.168.2.101 }\n",
      );
      const cert = svc(r, "gateway", "cert.pem");
      return {
        run: { ...r, manifest },
        want: [
          {
            code: "san-missing",
            about: "gateway",
            has: [cert, "lacks IP SAN 192.168.2.101", "IP:192.168.2.100"],
            fix: ["--reissue gateway"],
          },
          {
            code: "conn-address",
            about: conn("checker", "gateway", "192.168.2.101"),
            has: ["checker dials 192.168.2.101", cert, "no IP SAN 192.168.2.101"],
          },
        ],
      };
    },
  },
  {
    name: "fail/eku-server/managed layout: the README's example, checker's files copied over dusk's",
    async setup() {
      const r = await serviceradar();
      for (const f of ["cert.pem", "key.pem"]) copyFileSync(svc(r, "checker", f), svc(r, "dusk", f));
      const cert = svc(r, "dusk", "cert.pem");
      return {
        run: r,
        want: [
          {
            code: "eku-server",
            about: "dusk",
            has: [cert, "usage dual", "without serverAuth"],
            fix: ["--reissue dusk"],
          },
          { code: "san-missing", about: "dusk", has: [cert, "lacks IP SAN 192.168.2.22"] },
          // The manifest's cn is a name peers dial (checkers dial core by its cn): a managed certificate must carry it.
          { code: "san-missing", about: "dusk", has: [cert, "lacks DNS SAN dusk.serviceradar"] },
          {
            code: "conn-server-usage",
            about: conn("agent", "dusk", "192.168.2.22"),
            has: [cert, "incompatible key usage"],
          },
          { code: "conn-address", about: conn("agent", "dusk", "192.168.2.22"), has: [cert, "no IP SAN 192.168.2.22"] },
        ],
      };
    },
  },
  {
    name: "fail/san-ip-as-dns/an IP written as a DNS SAN",
    async setup() {
      const x = external(
        {
          api: { usage: "server", addresses: ["10.0.0.1"], cert: { sans: ["DNS:api", "DNS:10.0.0.1"] } },
          worker: { usage: "client" },
        },
        { connections: ["worker -> api @ 10.0.0.1"] },
      );
      const cert = x.file("api", "api.pem");
      return {
        run: x,
        want: [
          { code: "san-ip-as-dns", about: "api", has: [cert, "10.0.0.1 as a DNS SAN"], fix: ["IP:10.0.0.1"] },
          { code: "san-missing", about: "api", has: [cert, "lacks IP SAN 10.0.0.1"] },
          {
            code: "conn-address",
            about: conn("worker", "api", "10.0.0.1"),
            has: [cert, "no IP SAN 10.0.0.1", "DNS:10.0.0.1"],
            fix: ["add IP:10.0.0.1 to subjectAltName"],
          },
        ],
      };
    },
  },
  {
    name: "fail/cn-not-san/the CN is not among the SANs",
    async setup() {
      const x = external({
        api: { usage: "server", cn: "api.internal", addresses: ["10.0.0.1"], cert: { sans: ["IP:10.0.0.1"] } },
      });
      return {
        run: x,
        want: [
          {
            code: "cn-not-san",
            about: "api",
            has: [x.file("api", "api.pem"), "CN api.internal", "IP:10.0.0.1"],
            fix: ["DNS:api.internal"],
          },
        ],
      };
    },
  },
  {
    name: "fail/identity-count/no identity URI",
    async setup() {
      const x = external({ api: { usage: "server" } }, { identity: "spiffe://{cluster}.local/{role}/{name}" });
      return {
        run: x,
        want: [
          {
            code: "identity-count",
            about: "api",
            has: [x.file("api", "api.pem"), "no URI SAN", "spiffe://ext.local/server/api"],
          },
        ],
      };
    },
  },
  {
    name: "fail/identity-mismatch/another service's identity URI",
    async setup() {
      const x = external(
        { api: { usage: "server", cert: { sans: ["DNS:api", "URI:spiffe://ext.local/server/db"] } } },
        { identity: "spiffe://{cluster}.local/{role}/{name}" },
      );
      return {
        run: x,
        want: [
          {
            code: "identity-mismatch",
            about: "api",
            has: [x.file("api", "api.pem"), "spiffe://ext.local/server/db", "spiffe://ext.local/server/api"],
          },
        ],
      };
    },
  },
  {
    name: "fail/leaf-is-ca/a CA certificate as a service certificate",
    async setup() {
      const x = external({
        api: { usage: "server", cert: { ca: true, ku: ["digitalSignature", "keyCertSign"], eku: ["serverAuth"] } },
      });
      return { run: x, want: [{ code: "leaf-is-ca", about: "api", has: [x.file("api", "api.pem"), "cA=TRUE"] }] };
    },
  },
  {
    name: "fail/weak-key/RSA-1024",
    async setup() {
      const x = external({ api: { usage: "server", cert: { key: newKey("rsa-1024") } } });
      return {
        run: x,
        want: [{ code: "weak-key", about: "api", has: [x.file("api", "api.pem"), "1024-bit RSA key"] }],
      };
    },
  },
  {
    // Issue 11: Go's crypto/tls refuses a peer's RSA key over 8192 bits (CVE-2023-29409); check said nothing.
    // The key is synthetic (no private half: generating 8200 bits takes Node about 40 s), hence key-mismatch.
    name: "fail/weak-key/RSA over 8192 bits, which Go refuses",
    async setup() {
      const x = external({ api: { usage: "server", cert: { key: syntheticRsaKey(8200) } } });
      const cert = x.file("api", "api.pem");
      return {
        run: x,
        want: [
          {
            code: "weak-key",
            about: "api",
            has: [cert, "8200-bit RSA key", "Go's crypto/tls refuses a certificate with an RSA key over 8192 bits"],
            fix: ["RSA 2048 to 8192 bits"],
          },
          { code: "key-mismatch", about: "api", has: [cert] },
        ],
      };
    },
  },
  {
    name: "fail/weak-signature/signed with SHA-1",
    async setup() {
      const x = external({ api: { usage: "server", cert: { hash: "sha1" } } });
      return {
        run: x,
        want: [{ code: "weak-signature", about: "api", has: [x.file("api", "api.pem"), "ecdsa-with-SHA1"] }],
      };
    },
  },
  {
    name: "fail/serial/a 3-bit serial number",
    async setup() {
      const x = external({ api: { usage: "server", cert: { serial: Buffer.from([0x05]) } } });
      return {
        run: x,
        want: [{ code: "serial", about: "api", has: [x.file("api", "api.pem"), "3-bit serial number"] }],
      };
    },
  },
  {
    name: "fail/key-ids/no subject or authority key identifier",
    async setup() {
      const x = external({ api: { usage: "server", cert: { ski: false, aki: false } } });
      return {
        run: x,
        want: [
          {
            code: "key-ids",
            about: "api",
            has: [x.file("api", "api.pem"), "subjectKeyIdentifier and authorityKeyIdentifier"],
          },
        ],
      };
    },
  },
  {
    name: "fail/critical-extension/an unknown critical extension",
    async setup() {
      const x = external({
        api: {
          usage: "server",
          cert: { extra: [{ oid: "1.3.6.1.4.1.55555.1", critical: true, value: Buffer.from([0x05, 0x00]) }] },
        },
      });
      return {
        run: x,
        want: [{ code: "critical-extension", about: "api", has: [x.file("api", "api.pem"), "1.3.6.1.4.1.55555.1"] }],
      };
    },
  },
  {
    name: "fail/outlives-ca/a leaf valid for a year under a CA that expires in 60 days",
    async setup() {
      const short = forge({ ca: true, cn: "Short CA", notBefore: ago(DAY), notAfter: ahead(60 * DAY) });
      const x = external({ api: { usage: "server", cert: { issuer: short } } }, { bundle: [short] });
      return {
        run: x,
        want: [
          {
            code: "outlives-ca",
            about: "api",
            has: [
              x.file("api", "api.pem"),
              `after its CA expires (${ahead(60 * DAY)
                .toISOString()
                .slice(0, 10)})`,
            ],
          },
          { code: "ca-expiring", about: "CA CN=Short CA", has: [x.file("api", "root.pem"), "in 59 days", "(90 days)"] },
        ],
      };
    },
  },
  // ── CAs ──
  {
    name: "fail/chain-incomplete/api's cert.pem without the intermediate (ca.intermediate)",
    async setup() {
      const r = await applied(withIntermediate("{ validity: 1y }"));
      const file = svc(r, "api", "cert.pem");
      writeFileSync(file, readFileSync(file, "utf8").split(/(?<=-----END CERTIFICATE-----\n)/)[0]!);
      return {
        run: r,
        want: [
          {
            code: "chain-incomplete",
            about: "api",
            has: [file, "lacks the intermediate CA CN=quickstart Intermediate CA", "holds only the root"],
            fix: ["mtlskit apply", "leaf + intermediate"],
          },
          { code: "conn-server-untrusted", about: conn("worker", "api", "api.localhost") },
          { code: "conn-server-untrusted", about: conn("db", "api", "127.0.0.1") },
        ],
      };
    },
  },
  {
    name: "fail/intermediate-due/the intermediate inside its renewal window, before it bites",
    async setup() {
      const r = await applied(withIntermediate("{ validity: 365d, renewBefore: 364d }"));
      const at = new Date(Date.now() + 2 * DAY).toISOString().slice(0, 10);
      return {
        run: { ...r, args: ["--at", at] },
        want: [
          {
            code: "intermediate-due",
            about: "CA CN=quickstart Intermediate CA, O=Quickstart",
            has: [path.join(r.pki, "ca", "intermediate.pem"), "inside its renewal window"],
            fix: ["--ca-key FILE when the root's key is offline"],
          },
        ],
      };
    },
  },
  {
    name: "ok/ca-key-offline/the CA key moved out with `mtlskit ca offline` (information, not a defect)",
    async setup() {
      const r = await quickstart();
      const moved = await runCli(["ca", "offline", "--pki", r.pki, "--to", path.join(r.dir, "ca-key.pem")]);
      assert.equal(moved.code, 0, moved.err);
      return {
        run: r,
        want: [
          {
            code: "ca-key-offline",
            about: "CA CN=Quickstart CA, O=Quickstart",
            has: ["is offline", path.join(r.pki, "ca", "ca-key.pem")],
            fix: ["--ca-key FILE"],
          },
        ],
      };
    },
  },
  {
    name: "fail/ca-expired/an expired old CA left in root.pem",
    async setup() {
      const old = forge({ ca: true, cn: "Old CA", notBefore: ago(3 * YEAR), notAfter: ago(DAY) });
      const x = external({ api: { usage: "server" } }, { bundle: [CA, old] });
      return {
        run: x,
        want: [
          {
            code: "ca-expired",
            about: "CA CN=Old CA",
            has: [x.file("api", "root.pem"), `expired on ${ago(DAY).toISOString().slice(0, 10)}`],
          },
        ],
      };
    },
  },
  {
    name: "fail/ca-expiring/a CA in root.pem expires in 20 days",
    async setup() {
      const soon = forge({ ca: true, cn: "Soon CA", notBefore: ago(YEAR), notAfter: ahead(20 * DAY) });
      const x = external({ api: { usage: "server" } }, { bundle: [CA, soon] });
      return {
        run: x,
        want: [{ code: "ca-expiring", about: "CA CN=Soon CA", has: [x.file("api", "root.pem"), "in 19 days"] }],
      };
    },
  },
  {
    name: "fail/ca-not-ca/a service certificate pasted into root.pem",
    async setup() {
      const stray = forge({ issuer: CA, cn: "stray.example", notAfter: ahead(YEAR) });
      const x = external({ api: { usage: "server" } }, { bundle: [CA, stray] });
      return {
        run: x,
        want: [{ code: "ca-not-ca", about: "CA CN=stray.example", has: [x.file("api", "root.pem"), "is not a CA"] }],
      };
    },
  },
  {
    name: "fail/ca-key-usage/a root without keyUsage (openssl req -x509 without a keyUsage line)",
    async setup() {
      const bare = forge({ ca: true, cn: "Bare CA", ku: null, notAfter: ahead(10 * YEAR) });
      const x = external({ api: { usage: "server", cert: { issuer: bare } } }, { bundle: [bare] });
      return {
        run: x,
        want: [
          { code: "ca-key-usage", about: "CA CN=Bare CA", has: [x.file("api", "root.pem"), "no keyUsage extension"] },
        ],
      };
    },
  },
  // ── deployments ──
  {
    name: "fail/key-mode/key.pem chmod 644",
    async setup() {
      const r = await quickstart();
      chmodSync(svc(r, "api", "key.pem"), 0o644);
      return {
        run: r,
        want: [
          {
            code: "key-mode",
            about: "api",
            has: [svc(r, "api", "key.pem"), "mode 0644", "every user"],
            fix: [`chmod 600 ${svc(r, "api", "key.pem")}`],
          },
        ],
      };
    },
  },
  {
    name: "fail/key-mode/the CA key readable by its group",
    async setup() {
      const r = await quickstart();
      const key = path.join(r.pki, "ca", "ca-key.pem");
      chmodSync(key, 0o640);
      return { run: r, want: [{ code: "key-mode", about: "CA key", has: [key, "mode 0640", "its group"] }] };
    },
  },
  // Issue 11: a symlinked service folder, and ca/ or a service's folder others may write, said OK.
  {
    name: "fail/dir-symlink/services/api is a link to a folder elsewhere",
    async setup() {
      const r = await quickstart();
      const elsewhere = path.join(tempDir("mtlskit-evil-"), "api");
      renameSync(path.join(r.pki, "services", "api"), elsewhere);
      symlinkSync(elsewhere, path.join(r.pki, "services", "api"));
      return {
        run: r,
        want: [
          {
            code: "dir-symlink",
            about: "api",
            has: [path.join(r.pki, "services", "api"), "symbolic link", elsewhere],
            fix: [`rm ${path.join(r.pki, "services", "api")}`],
          },
        ],
      };
    },
  },
  {
    name: "fail/dir-writable/ca and services/api chmod 777",
    async setup() {
      const r = await quickstart();
      chmodSync(path.join(r.pki, "ca"), 0o777);
      chmodSync(path.join(r.pki, "services", "api"), 0o777);
      return {
        run: r,
        want: [
          {
            code: "dir-writable",
            about: "CA directory",
            has: [path.join(r.pki, "ca"), "mode 0777", "every user", "replaced the CA"],
            fix: ["mtlskit inspect", `chmod 0700 ${path.join(r.pki, "ca")}`],
          },
          { code: "dir-writable", about: "api", has: [path.join(r.pki, "services", "api"), "mode 0777"] },
        ],
      };
    },
  },
  {
    name: "fail/dir-mode/services/api chmod 755 (a warning: apply sets it back)",
    async setup() {
      const r = await quickstart();
      chmodSync(path.join(r.pki, "services", "api"), 0o755);
      return { run: r, want: [{ code: "dir-mode", about: "api", has: ["mode 0755", "0700"] }] };
    },
  },
  {
    name: "fail/dir-owner/services/api owned by another uid",
    async setup() {
      const r = await quickstart();
      chownSync(path.join(r.pki, "services", "api"), 4242, 4242);
      return { run: r, want: [{ code: "dir-owner", about: "api", has: ["uid 4242"] }] };
    },
  },
  {
    name: "fail/key-owner/files.owner is another uid, or a user this host does not have",
    async setup() {
      const uid = process.getuid!();
      const x = external({
        api: { usage: "server", owner: String(uid + 1) },
        web: { usage: "server", owner: "nosuchuser" },
      });
      return {
        run: x,
        want: [
          {
            code: "key-owner",
            about: "api",
            has: [x.file("api", "api-key.pem"), `owned by uid ${uid}, not ${uid + 1}`],
          },
          { code: "key-owner", about: "web", has: ["services.web.files.owner", '"nosuchuser" does not exist'] },
        ],
      };
    },
  },
  {
    name: "fail/ca-key-exposed/ca-key.pem copied into services/api",
    async setup() {
      const r = await quickstart();
      copyFileSync(path.join(r.pki, "ca", "ca-key.pem"), svc(r, "api", "ca-key.pem"));
      return {
        run: r,
        want: [{ code: "ca-key-exposed", about: "api", has: [svc(r, "api", "ca-key.pem"), "CN=Quickstart CA"] }],
      };
    },
  },
  {
    name: "fail/ca-key-exposed/copies in a service's backup/ subfolder and loose in services/",
    async setup() {
      const r = await quickstart();
      const backup = path.join(r.pki, "services", "worker", "backup");
      mkdirSync(backup);
      copyFileSync(path.join(r.pki, "ca", "ca-key.pem"), path.join(backup, "old-ca-key.pem"));
      const loose = path.join(r.pki, "services", "ca-key.pem");
      copyFileSync(path.join(r.pki, "ca", "ca-key.pem"), loose);
      return {
        run: r,
        want: [
          { code: "ca-key-exposed", about: "worker", has: [path.join(backup, "old-ca-key.pem"), "CN=Quickstart CA"] },
          {
            code: "ca-key-exposed",
            about: "CA CN=Quickstart CA, O=Quickstart",
            has: [loose, "every service's files are under"],
          },
        ],
      };
    },
  },
  {
    name: "fail/bundle-missing/db's ca.pem deleted",
    async setup() {
      const r = await quickstart();
      rmSync(svc(r, "db", "ca.pem"));
      return {
        run: r,
        want: [
          { code: "bundle-missing", about: "db", has: [svc(r, "db", "ca.pem"), "does not exist"] },
          {
            code: "conn-missing",
            about: conn("worker", "db", "db.localhost"),
            has: ["db has no usable trust bundle", svc(r, "db", "ca.pem")],
          },
          { code: "conn-missing", about: conn("db", "api", "127.0.0.1"), has: ["db has no usable trust bundle"] },
        ],
      };
    },
  },
  {
    name: "fail/bundle-differs/root.pem not identical on every host (the agent's has one more CA)",
    async setup() {
      const r = await applied(example("serviceradar"));
      const bundle = svc(r, "agent", "ca.pem");
      writeFileSync(bundle, readFileSync(bundle, "utf8") + OTHER_CA.pem);
      return {
        run: r,
        want: [
          {
            code: "bundle-differs",
            about: "agent",
            has: [bundle, "CN=Other CA", "8 other services (core, cnpg, gateway, ...)"],
          },
        ],
      };
    },
  },
  // ── CA rotation (mtlskit ca rotate) ──
  {
    name: "fail/rotation-lag/retire --force while db's reload hook fails: db, one phase behind, still presents its old certificate",
    async setup() {
      const manifest = variant("quickstart", (t) =>
        t.replace(
          "addresses: [127.0.0.1, localhost, db.localhost]",
          "addresses: [127.0.0.1, localhost, db.localhost]\n    reload: 'test ! -e \"$MTLSKIT_PKI/../db-hook-fails\"'",
        ),
      );
      const r = await applied(manifest);
      writeFileSync(path.join(r.dir, "db-hook-fails"), "");
      const rotate = (...a: string[]) => runCli(["ca", "rotate", ...a, "-f", manifest, "--pki", r.pki]);
      assert.equal((await rotate("prepare")).code, 3, "db's hook fails");
      assert.equal((await rotate("retire", "--force")).code, 3, "db's hook fails again");
      return {
        run: r,
        want: [
          {
            code: "rotation-lag",
            about: conn("worker", "db", "db.localhost"),
            has: ["(retired), db one phase behind still presents its certificate from the old CA", "worker's bundle"],
            fix: ["retire --force retired the old CA before db was activated"],
          },
          { code: "rotation-lag", about: conn("db", "api", "127.0.0.1"), has: ["db one phase behind", "api's bundle"] },
          {
            code: "rotation-unsafe-step",
            about: "db",
            has: ["db's reload hook has not succeeded since `mtlskit ca rotate retire`"],
            fix: ["run `mtlskit ca rotate retire` again"],
          },
        ],
      };
    },
  },
  {
    name: "fail/rotation-unsafe-step/db's bundle lost the next CA after prepare: activate would break its connections",
    async setup() {
      const r = await quickstart();
      const old = readFileSync(svc(r, "db", "ca.pem"));
      assert.equal((await runCli(["ca", "rotate", "prepare", "-f", r.manifest, "--pki", r.pki])).code, 0);
      writeFileSync(svc(r, "db", "ca.pem"), old);
      return {
        run: r,
        want: [
          {
            code: "rotation-unsafe-step",
            about: "db",
            has: ["`mtlskit ca rotate activate` now would break db's connections", "lacks the next CA"],
            fix: ["run `mtlskit ca rotate prepare` again"],
          },
          { code: "bundle-differs", about: "db", has: ["lacks CN=Quickstart CA"] },
        ],
      };
    },
  },
];
/** OK_EXAMPLES: fresh applies judged clean (netsy is RSA-4096 throughout: too slow here; test/examples.test.ts applies it). */
const OK_EXAMPLES: Record<string, () => Promise<Run>> = {
  quickstart,
  serviceradar,
  sensu,
  virtrigaud: () => applied(example("virtrigaud")),
};

/**
 * proven runs a case once (memoized): its findings are asserted, and it yields the codes it proved
 * present. The coverage test awaits every case, so it holds even when a name pattern skips some.
 */
const proven = new Map<string, Promise<Code[]>>();
function prove(c: Case): Promise<Code[]> {
  let p = proven.get(c.name);
  if (!p) {
    p = (async () => {
      const { run, want } = await c.setup();
      assert.equal(c.name.split("/")[1], want[0]!.code, "a case is named after its first wanted code");
      const { code, report } = await checkJson(run);
      assertFindings(report, want);
      assert.equal(code, want.some((w) => CODES[w.code].severity === "error") ? 1 : 0, "exit code");
      return want.map((w) => w.code);
    })();
    proven.set(c.name, p);
  }
  return p;
}

describe("check: the fixture table", { timeout: 120_000 }, () => {
  for (const [name, setup] of Object.entries(OK_EXAMPLES)) {
    it(`ok/a fresh apply of examples/${name}.yaml has no findings`, async () => {
      const { code, report } = await checkJson(await setup());
      assertFindings(report, []);
      assert.equal(code, 0);
      assert.ok(report.connections.length > 0 && report.connections.every((c) => c.ok));
    });
  }
  it("ok/a healthy forged external PKI (server, client, split dual) has no findings", async () => {
    const x = external(
      {
        api: { usage: "server", addresses: ["10.0.0.1", "api.internal"] },
        worker: { usage: "client" },
        db: { usage: "dual", split: true, addresses: ["10.0.0.2"] },
      },
      { connections: ["worker -> api @ api.internal", "worker -> db @ 10.0.0.2", "db -> api @ 10.0.0.1"] },
    );
    const { code, report } = await checkJson(x);
    assertFindings(report, []);
    assert.equal(code, 0);
    assert.deepEqual(
      report.certificates.map((c) => c.id),
      ["api", "worker", "db", "db/client"],
    );
    assert.equal(report.certificates.find((c) => c.id === "db/client")!.file, x.file("db", "db-client.pem"));
  });

  it("ok/one combined file holding the certificate and its key (mode 0600) is accepted, as OpenSSL and Go's X509KeyPair accept it", async () => {
    const x = external(
      { api: { usage: "server", addresses: ["10.0.0.1"] }, worker: { usage: "client" } },
      { connections: ["worker -> api @ 10.0.0.1"] },
    );
    const combined = x.file("api", "api-combined.pem");
    writeFileSync(
      combined,
      readFileSync(x.file("api", "api-key.pem"), "utf8") + readFileSync(x.file("api", "api.pem"), "utf8"),
      { mode: 0o600 },
    );
    writeFileSync(
      x.manifest,
      readFileSync(x.manifest, "utf8")
        .replace("certs/api.pem", "certs/api-combined.pem")
        .replace("certs/api-key.pem", "certs/api-combined.pem"),
    );
    const { code, report } = await checkJson(x);
    assertFindings(report, []);
    assert.equal(code, 0);
    // ...and judged as a key file: readable by others, it is a key-mode error.
    chmodSync(combined, 0o644);
    const again = await checkJson(x);
    assertFindings(again.report, [{ code: "key-mode", about: "api", has: [combined, "0644"] }]);
  });

  // Issue 11: the key's RFC 1421 headers (Proc-Type, DEK-Info) made the whole file "not valid base64" (cert-malformed).
  it("ok/a combined file whose key is encrypted the traditional way (openssl ec -aes256): the certificate is read, the key is key-encrypted", async () => {
    const x = external(
      { api: { usage: "server", addresses: ["10.0.0.1"] }, worker: { usage: "client" } },
      { connections: ["worker -> api @ 10.0.0.1"] },
    );
    const combined = x.file("api", "api-combined.pem");
    const sealed = execFileSync(
      "openssl",
      ["ec", "-in", x.file("api", "api-key.pem"), "-aes256", "-passout", "pass:secret"],
      { stdio: ["ignore", "pipe", "ignore"] },
    ).toString();
    assert.match(sealed, /^Proc-Type: 4,ENCRYPTED$/m);
    writeFileSync(combined, readFileSync(x.file("api", "api.pem"), "utf8") + sealed, { mode: 0o600 });
    writeFileSync(
      x.manifest,
      readFileSync(x.manifest, "utf8")
        .replace("certs/api.pem", "certs/api-combined.pem")
        .replace("certs/api-key.pem", "certs/api-combined.pem"),
    );
    const { report } = await checkJson(x);
    assertFindings(report, [{ code: "key-encrypted", about: "api", has: [`${combined} is encrypted (AES-256-CBC):`] }]);
  });

  for (const c of CASES) it(c.name, () => prove(c).then(() => undefined));

  it("ok/every code of CODES is produced by at least one fixture", async () => {
    const produced = new Set((await Promise.all(CASES.map(prove))).flat());
    assert.deepEqual(
      CODE_NAMES.filter((code) => !produced.has(code)),
      [],
    );
  });
});

// ── the seed's own recipe ──────────────────────────────────────────────────────────────────────

/**
 * SEED_RECIPE: the commands of ServiceRadar's "TLS Security" guide, verbatim: the root CA (step 2),
 * core's dual certificate and the agent's (step 3), the general checker certificate with
 * `extendedKeyUsage = clientAuth` ("Checker Certificate Configuration"), then the deployment's
 * modes. `<agent-ip>` is replaced as the guide says, with the agent host's 192.168.2.22.
 */
const SEED_RECIPE = `set -e
openssl ecparam -name prime256v1 -genkey -out root-key.pem
openssl req -x509 -new -nodes -key root-key.pem -sha256 -days 3650 -out root.pem -subj "/C=US/ST=Your State/L=Your Location/O=ServiceRadar/OU=Operations/CN=ServiceRadar CA"
cat > core-san.cnf << EOF
[req]
distinguished_name = req_distinguished_name
req_extensions = v3_req
prompt = no

[req_distinguished_name]
C = US
ST = Your State
L = Your Location
O = ServiceRadar
OU = Operations
CN = core.serviceradar

[v3_req]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:192.168.2.22,IP:192.168.2.10,IP:192.168.2.11,IP:192.168.2.12,IP:192.168.2.13,IP:192.168.2.14,IP:192.168.2.18,IP:192.168.2.19,IP:192.168.2.23
EOF
openssl ecparam -name prime256v1 -genkey -out core-key.pem
openssl req -new -key core-key.pem -out core.csr -config core-san.cnf
openssl x509 -req -in core.csr -CA root.pem -CAkey root-key.pem -CAcreateserial -out core.pem -days 365 -sha256 -extfile core-san.cnf -extensions v3_req
cat > agent-san.cnf << EOF
[req]
distinguished_name = req_distinguished_name
req_extensions = v3_req
prompt = no

[req_distinguished_name]
C = US
ST = Your State
L = Your Location
O = ServiceRadar
OU = Operations
CN = agent.serviceradar

[v3_req]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth,serverAuth
subjectAltName = IP:192.168.2.22
EOF
openssl ecparam -name prime256v1 -genkey -out agent-key.pem
openssl req -new -key agent-key.pem -out agent.csr -config agent-san.cnf
openssl x509 -req -in agent.csr -CA root.pem -CAkey root-key.pem -CAcreateserial -out agent.pem -days 365 -sha256 -extfile agent-san.cnf -extensions v3_req
cat > checker-san.cnf << EOF
[req]
distinguished_name = req_distinguished_name
req_extensions = v3_req
prompt = no

[req_distinguished_name]
C = US
ST = Your State
L = Your Location
O = ServiceRadar
OU = Operations
CN = checker.serviceradar

[v3_req]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectAltName = IP:192.168.2.22
EOF
openssl ecparam -name prime256v1 -genkey -out checker-key.pem
openssl req -new -key checker-key.pem -out checker.csr -config checker-san.cnf
openssl x509 -req -in checker.csr -CA root.pem -CAkey root-key.pem -CAcreateserial -out checker.pem -days 365 -sha256 -extfile checker-san.cnf -extensions v3_req
chmod 644 *.pem
chmod 600 *-key.pem
`;

describe("check: the seed's own openssl recipe", { timeout: 60_000 }, () => {
  it("fail/eku-server/ServiceRadar's checker certificate (clientAuth only) used by dusk, which also serves; root-key.pem left beside it", async () => {
    const dir = tempDir("mtlskit-check-seed-");
    const certs = path.join(dir, "etc", "serviceradar", "certs");
    mkdirSync(certs, { recursive: true });
    execFileSync("sh", ["-c", SEED_RECIPE], { cwd: certs, stdio: "pipe" });
    const f = (name: string) => path.join(certs, name);
    const files = (cert: string) =>
      `{ cert: etc/serviceradar/certs/${cert}.pem, key: etc/serviceradar/certs/${cert}-key.pem, ca: etc/serviceradar/certs/root.pem }`;
    const manifest = writeManifest(
      dir,
      [
        "version: 1",
        "cluster: serviceradar",
        "services:",
        `  core: { usage: dual, cn: core.serviceradar, addresses: [192.168.2.23], files: ${files("core")} }`,
        `  agent: { usage: dual, cn: agent.serviceradar, addresses: [192.168.2.22], files: ${files("agent")} }`,
        '  # the dusk checker: the agent dials it, and it dials core ("role": "dual"), with the general checker certificate',
        `  dusk: { usage: dual, cn: dusk.serviceradar, addresses: [192.168.2.22], files: ${files("checker")} }`,
        "connections:",
        "  - { from: agent, to: dusk, address: 192.168.2.22 }",
        "  - { from: dusk, to: core, address: 192.168.2.23 }",
        "",
      ].join("\n"),
    );
    const { code, report } = await checkJson({ manifest, pki: path.join(dir, "pki") });
    const fix = [f("checker.pem"), "extendedKeyUsage serverAuth, clientAuth"];
    assertFindings(report, [
      {
        code: "eku-server",
        about: "dusk",
        has: [f("checker.pem"), "usage dual", "extendedKeyUsage is clientAuth, without serverAuth"],
        fix,
      },
      {
        code: "conn-server-usage",
        about: conn("agent", "dusk", "192.168.2.22"),
        has: [f("checker.pem"), "x509: certificate specifies an incompatible key usage"],
        fix,
      },
      // root-key.pem is where step 2 made it; step 4 ("Secure the CA Private Key") moves it away.
      { code: "ca-key-exposed", about: "core", has: [f("root-key.pem"), "ServiceRadar CA"] },
      // Step 1's `openssl req -x509` root has no keyUsage: strict verifiers refuse it (judged below).
      {
        code: "ca-key-usage",
        about: "CA CN=ServiceRadar CA, OU=Operations, O=ServiceRadar, L=Your Location, ST=Your State, C=US",
        has: [f("root.pem"), "no keyUsage extension"],
      },
      // What else the recipe yields, all true: EC keys with keyEncipherment, CNs only in the
      // subject (Go ignores them), and no backdating of notBefore.
      ...["core", "agent", "dusk"].flatMap((s): Want[] => [
        { code: "key-usage-extra", about: s, has: ["keyEncipherment"] },
        { code: "cn-not-san", about: s },
        { code: "clock-skew", about: s },
      ]),
    ]);
    assert.equal(code, 1);
    // The independent judge agrees: openssl refuses the checker certificate for a TLS server.
    const judge = opensslVerify({ caFile: f("root.pem"), certFile: f("checker.pem"), purpose: "sslserver" });
    assert.equal(judge.ok, false);
    assert.match(judge.output, /error 26 at 0 depth lookup: (unsuitable|unsupported) certificate purpose/);
    // ...and refuses core's certificate, fit to serve, because the root lacks keyUsage (ca-key-usage).
    const strict = opensslVerify({ caFile: f("root.pem"), certFile: f("core.pem"), purpose: "sslserver" });
    assert.equal(strict.ok, false);
    assert.match(strict.output, /CA cert does not include key usage extension/);
  });
});

// ── outputs ────────────────────────────────────────────────────────────────────────────────────

const healthy = once(() => applied(example("quickstart")));

/** broken: quickstart with api's key chmod 644 and db's ca.pem deleted: findings on two services and two connections. */
async function broken(): Promise<Run & { dir: string }> {
  const r = await quickstart();
  chmodSync(svc(r, "api", "key.pem"), 0o644);
  rmSync(svc(r, "db", "ca.pem"));
  return r;
}

const cli = (r: Run, ...args: string[]) => runCli(["check", "-f", r.manifest, "--pki", r.pki, ...args]);

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * parseExposition validates the Prometheus text exposition format strictly and returns the
 * samples: each line is `# HELP name text`, `# TYPE name type` or `name{label="value",...} value`
 * (no braces without labels); HELP and TYPE come once per metric, before its samples, which are
 * contiguous; label values escape backslash, quote and newline; no two samples share a series.
 */
function parseExposition(text: string): Sample[] {
  assert.ok(text.endsWith("\n"), "ends with a newline");
  const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
  const VALUE = String.raw`"((?:[^"\\\n]|\\[\\"n])*)"`;
  const LABEL = `[a-zA-Z_][a-zA-Z0-9_]*=${VALUE}`;
  const sampleRe = new RegExp(
    `^(${NAME})(?:\\{(${LABEL}(?:,${LABEL})*)\\})? (-?[0-9]+(?:\\.[0-9]+)?(?:e[+-]?[0-9]+)?|NaN|[+-]Inf)$`,
  );
  const labelRe = new RegExp(`([a-zA-Z_][a-zA-Z0-9_]*)=${VALUE}`, "g");
  const help = new Set<string>();
  const type = new Set<string>();
  const done = new Set<string>();
  const seen = new Set<string>();
  const out: Sample[] = [];
  let current: string | undefined;
  for (const [i, line] of text.slice(0, -1).split("\n").entries()) {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    const comment = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (comment) {
      const [, kind, name, rest] = comment as unknown as [string, string, string, string];
      assert.match(name, new RegExp(`^${NAME}$`), where);
      assert.ok(!out.some((s) => s.name === name), `${where}: ${kind} after the metric's samples`);
      if (kind === "HELP") {
        assert.ok(!help.has(name), `${where}: second HELP`);
        assert.match(rest, /^(?:[^\\\n]|\\[\\n])*$/, `${where}: HELP text escaping`);
        help.add(name);
      } else {
        assert.ok(!type.has(name), `${where}: second TYPE`);
        assert.match(rest, /^(counter|gauge|histogram|summary|untyped)$/, where);
        type.add(name);
      }
      continue;
    }
    assert.ok(!line.startsWith("#") && line.trim() !== "", `${where}: neither a sample nor HELP/TYPE`);
    const m = sampleRe.exec(line);
    assert.ok(m, `${where}: not name{labels} value`);
    const name = m[1]!;
    assert.ok(help.has(name) && type.has(name), `${where}: sample before its HELP and TYPE`);
    if (current !== name) {
      assert.ok(!done.has(name), `${where}: the metric's samples are not contiguous`);
      if (current) done.add(current);
      current = name;
    }
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(labelRe)) {
      assert.ok(!(l[1]! in labels), `${where}: label ${l[1]} twice`);
      labels[l[1]!] = l[2]!.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    assert.ok(!seen.has(key), `${where}: duplicate series`);
    seen.add(key);
    out.push({ name, labels, value: Number(m[m.length - 1]) });
  }
  return out;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("check: outputs", { timeout: 60_000 }, () => {
  it("ok/--json: summary counts, findings with code, severity, scope, about, message and fix; certificates, cas, connections", async () => {
    const r = await broken();
    const { code, report } = await checkJson(r);
    assert.equal(code, 1);
    assert.deepEqual(Object.keys(report).sort(), ["cas", "certificates", "connections", "findings", "now", "summary"]);
    assert.ok(!Number.isNaN(Date.parse(report.now)));
    const errors = report.findings.filter((f) => f.severity === "error").length;
    assert.deepEqual(report.summary, {
      errors,
      warnings: report.findings.length - errors,
      certificates: 3,
      connections: 3,
      failingConnections: 2,
    });
    for (const f of report.findings)
      assert.deepEqual(Object.keys(f).sort(), ["about", "code", "fix", "label", "message", "scope", "severity"]);
    assert.deepEqual(
      report.findings.map((f) => [f.code, f.scope, f.about]),
      [
        ["key-mode", "deployment", { kind: "service", service: "api" }],
        ["bundle-missing", "deployment", { kind: "service", service: "db" }],
        [
          "conn-missing",
          "connection",
          { kind: "connection", index: 1, from: "worker", to: "db", address: "db.localhost" },
        ],
        ["conn-missing", "connection", { kind: "connection", index: 2, from: "db", to: "api", address: "127.0.0.1" }],
      ],
    );
    assert.deepEqual(
      report.certificates.map((c) => [c.id, c.service, c.file]),
      ["api", "worker", "db"].map((n) => [n, n, svc(r, n, "cert.pem")]),
    );
    for (const c of report.certificates) {
      assert.equal(c.notAfter, notAfterOf(c.file).toISOString());
      assert.match(c.sha256!, /^[0-9a-f]{64}$/);
      assert.equal(c.subject, `CN=${c.service}, O=Quickstart`);
    }
    assert.deepEqual(
      report.cas.map((c) => [c.subject, c.file]),
      [["CN=Quickstart CA, O=Quickstart", path.join(r.pki, "ca", "ca.pem")]],
    );
    assert.deepEqual(report.connections, [
      { index: 0, from: "worker", to: "api", address: "api.localhost", ok: true, causes: [] },
      { index: 1, from: "worker", to: "db", address: "db.localhost", ok: false, causes: ["conn-missing"] },
      { index: 2, from: "db", to: "api", address: "127.0.0.1", ok: false, causes: ["conn-missing"] },
    ]);
  });

  it("ok/--format prometheus is valid exposition text; label values escaped (a path with a quote and a backslash); not-after equals openssl's -enddate", async () => {
    const r = await healthy();
    const x = external({
      legacy: {
        usage: "server",
        dir: 'we"ird\\dir',
        cert: { sans: ["DNS:legacy", "URI:spiffe://quickstart.local/server/legacy"] },
      },
    });
    const manifest = variant("quickstart", (t) =>
      t.replace(
        "\nconnections:",
        `\n  legacy: { usage: server, files: { cert: '${x.file("legacy", "legacy.pem")}', key: '${x.file("legacy", "legacy-key.pem")}', ca: '${x.file("legacy", "root.pem")}' } }\n\nconnections:`,
      ),
    );
    const res = await cli({ ...r, manifest }, "--format", "prometheus");
    assert.equal(res.err, "");
    assert.equal(res.code, 0, (await cli({ ...r, manifest }, "--json")).out);
    assert.ok(res.out.includes(String.raw`we\"ird\\dir`), "the raw text escapes the quote and the backslash");
    const samples = parseExposition(res.out);
    const notAfter = samples.filter((s) => s.name === "mtlskit_certificate_not_after_timestamp_seconds");
    assert.deepEqual(
      notAfter.map((s) => s.labels.path),
      [...["api", "worker", "db"].map((n) => svc(r, n, "cert.pem")), x.file("legacy", "legacy.pem")],
    );
    for (const s of notAfter) {
      const end = /^notAfter=(.+)$/m.exec(
        execFileSync("openssl", ["x509", "-noout", "-enddate", "-in", s.labels.path!], { encoding: "utf8" }),
      )![1]!;
      assert.equal(s.value, Date.parse(end) / 1000, `${s.labels.path}: ${end}`);
    }
    const cas = samples.filter((s) => s.name === "mtlskit_ca_not_after_timestamp_seconds").map((s) => s.labels.subject);
    assert.deepEqual(cas.sort(), ["CN=Forge CA", "CN=Quickstart CA, O=Quickstart"]);
    // legacy trusts another CA than the other three: one warning (bundle-differs), counted for it.
    const findings = samples.filter((s) => s.name === "mtlskit_check_findings");
    assert.equal(findings.length, 8);
    assert.deepEqual(
      findings.filter((s) => s.value > 0).map((s) => [s.labels.service, s.labels.severity, s.value]),
      [["legacy", "warning", 1]],
    );
    assert.deepEqual(
      samples.filter((s) => s.name === "mtlskit_connection_ok").map((s) => s.value),
      [1, 1, 1],
    );
    assert.deepEqual(
      samples
        .filter((s) => s.name === "mtlskit_check_errors" || s.name === "mtlskit_check_warnings")
        .map((s) => [s.name, s.value]),
      [
        ["mtlskit_check_errors", 0],
        ["mtlskit_check_warnings", 1],
      ],
    );
    const ts = samples.find((s) => s.name === "mtlskit_check_timestamp_seconds")!;
    assert.deepEqual(ts.labels, {});
    assert.ok(Math.abs(ts.value - Date.now() / 1000) < 600);
  });

  it("ok/prometheus counts findings about no service too (an expired CA in a bundle)", async () => {
    const old = forge({ ca: true, cn: "Old CA", notBefore: ago(3 * YEAR), notAfter: ago(DAY) });
    const x = external({ api: { usage: "server" } }, { bundle: [CA, old] });
    const res = await cli(x, "--format", "prometheus");
    assert.equal(res.code, 1);
    const samples = parseExposition(res.out);
    assert.equal(samples.find((s) => s.name === "mtlskit_check_errors")!.value, 1);
    assert.ok(
      samples.filter((s) => s.name === "mtlskit_check_findings").every((s) => s.value === 0),
      "the CA's finding is no service's",
    );
  });

  it("ok/-o FILE replaces the file atomically (new inode, mode 0644, no temp file left) and prints nothing on stdout", async () => {
    const r = await healthy();
    const dir = tempDir("mtlskit-check-out-");
    const at = ["--at", new Date(Date.now() + 70 * DAY).toISOString()];
    for (const [format, name] of [
      ["prometheus", "mtlskit.prom"],
      ["json", "check.json"],
      ["human", "check.txt"],
    ] as const) {
      const out = path.join(dir, name);
      writeFileSync(out, "old\n", { mode: 0o600 });
      const before = statSync(out).ino;
      const res = await cli(r, "--format", format, "-o", out, ...at);
      assert.equal(res.out, "", `${format}: nothing on stdout`);
      assert.match(res.err, new RegExp(`^mtlskit check: wrote ${escapeRe(out)} \\(0 errors, 3 warnings\\)\n$`));
      assert.equal(res.code, 0);
      const st = statSync(out);
      assert.equal(st.mode & 0o777, 0o644, format);
      assert.notEqual(st.ino, before, `${format}: replaced by rename, not rewritten in place`);
      const direct = await cli(r, "--format", format, ...at);
      assert.equal(readFileSync(out, "utf8"), direct.out, `${format}: the file holds what stdout would`);
    }
    assert.deepEqual(readdirSync(dir).sort(), ["check.json", "check.txt", "mtlskit.prom"]);
  });

  it("ok/--nagios: one line with perfdata; 0 OK, 1 WARNING only, 2 CRITICAL, 3 UNKNOWN (invalid manifest, missing PKI directory)", async () => {
    const ok = await cli(await healthy(), "--nagios");
    assert.match(
      ok.out,
      /^MTLSKIT OK - 3 certificates and 3 connections OK; next expiry api in \d+ days \| errors=0;;0 warnings=0;0 failing_connections=0;;0 min_days_left=\d+\n$/,
    );
    assert.equal(ok.code, 0);
    const warn = await cli(await healthy(), "--nagios", "--in", "70d");
    assert.match(
      warn.out,
      /^MTLSKIT WARNING - 0 errors, 3 warnings; first: api \[renewal-due\] \S+\/services\/api\/cert\.pem expires in 19 days .* \| errors=0;;0 warnings=3;0 failing_connections=0;;0 min_days_left=19\n$/,
    );
    assert.equal(warn.code, 1);
    const crit = await cli(await broken(), "--nagios");
    assert.match(
      crit.out,
      /^MTLSKIT CRITICAL - 4 errors, 0 warnings; first: api \[key-mode\] \S+key\.pem has mode 0644: .* \| errors=4;;0 warnings=0;0 failing_connections=2;;0 min_days_left=\d+\n$/,
    );
    assert.equal(crit.code, 2);
    const dir = tempDir();
    const invalid = await runCli([
      "check",
      "--nagios",
      "-f",
      writeManifest(dir, "version: 1\ncluster: demo\nservices:\n  web: { usage: sever }\n"),
      "--pki",
      dir,
    ]);
    assert.match(
      invalid.out,
      /^MTLSKIT UNKNOWN - .*services\.web\.usage: must be one of server, client, dual; got "sever"[^\n]*\n$/,
    );
    assert.equal(invalid.code, 3);
    const missing = await runCli(["check", "--nagios", "-f", example("quickstart"), "--pki", path.join(dir, "nope")]);
    assert.match(missing.out, /^MTLSKIT UNKNOWN - check: the PKI directory \S+nope does not exist[^\n]*\n$/);
    assert.equal(missing.code, 3);
    for (const r of [ok, warn, crit, invalid, missing]) assert.equal(r.err, "");
  });

  it("ok/exit codes: 0 clean (warnings alone too), 1 findings at error level, 2 invalid manifest, 3 missing PKI directory", async () => {
    assert.equal((await cli(await healthy())).code, 0);
    assert.equal((await cli(await healthy(), "--in", "70d")).code, 0, "warnings alone exit 0");
    assert.equal((await cli(await broken())).code, 1);
    const dir = tempDir();
    const invalid = await runCli([
      "check",
      "-f",
      writeManifest(dir, "version: 1\ncluster: demo\nservices:\n  web: { usage: sever }\n"),
      "--pki",
      dir,
    ]);
    assert.equal(invalid.code, 2);
    assert.match(invalid.err, /mtlskit\.yaml:4 services\.web\.usage: must be one of server, client, dual; got "sever"/);
    const missing = await runCli(["check", "-f", example("quickstart"), "--pki", path.join(dir, "nope")]);
    assert.equal(missing.code, 3);
    assert.match(missing.err, /the PKI directory \S+nope does not exist; run `mtlskit apply` first/);
  });

  it("ok/--service judges only the named services and the connections between them; --ignore drops codes, also from verdicts; --failing hides ok connections", async () => {
    const r = await quickstart();
    chmodSync(svc(r, "db", "key.pem"), 0o644);
    rmSync(svc(r, "worker", "cert.pem"));
    // On api's and db's host: worker's files are elsewhere, so worker and its connections are left out.
    const host = await runCli(["check", "-f", r.manifest, "--pki", r.pki, "--json", "--service", "api,db"]);
    const j = JSON.parse(host.out) as {
      findings: { code: string; label: string }[];
      certificates: { id: string }[];
      connections: unknown[];
    };
    assert.deepEqual(
      j.certificates.map((c) => c.id),
      ["api", "db"],
    );
    assert.deepEqual(
      j.findings.map((f) => `${f.code} ${f.label}`),
      ["key-mode db"],
    );
    assert.equal(host.code, 1);
    const ignored = await runCli([
      "check",
      "-f",
      r.manifest,
      "--pki",
      r.pki,
      "--service",
      "api",
      "--service",
      "db",
      "--ignore",
      "key-mode",
    ]);
    assert.equal(ignored.code, 0, ignored.out);
    assert.match(ignored.out, /^mtlskit check \(services api, db\): /);
    // Ignoring a connection's only cause makes it pass; --failing lists only what still fails.
    const all = await runCli([
      "check",
      "-f",
      r.manifest,
      "--pki",
      r.pki,
      "--failing",
      "--ignore",
      "key-mode,cert-missing,conn-missing",
    ]);
    assert.equal(all.code, 0, all.out);
    assert.doesNotMatch(all.out, /\n  ok  /);
    assert.doesNotMatch(all.out, /\nconnections\n/);
    const failing = await runCli(["check", "-f", r.manifest, "--pki", r.pki, "--failing"]);
    assert.equal(failing.code, 1);
    assert.match(failing.out, /\n  FAIL  worker -> /);
    assert.doesNotMatch(failing.out, /\n  ok  /);
    for (const [argv, msg] of [
      [["--service", "nope"], /--service nope: not a service of/],
      [["--ignore", "nope"], /--ignore nope: no such finding code/],
    ] as const) {
      const bad = await runCli(["check", "-f", r.manifest, "--pki", r.pki, ...argv]);
      assert.equal(bad.code, 2);
      assert.match(bad.err, msg);
    }
  });

  it("ok/human output: grouped by service, then connections, then the summary line; no colour off a TTY", async () => {
    const r = await broken();
    const res = await cli(r);
    assert.equal(res.code, 1);
    assert.doesNotMatch(res.out, /\u001b\[/);
    assert.equal(res.out.replaceAll(r.pki, "<pki>").replaceAll(r.manifest, "<manifest>"), HUMAN_SNAPSHOT);
  });

  it("ok/--codes lists every code with its severity, scope and title", async () => {
    const res = await runCli(["check", "--codes"]);
    assert.equal(res.code, 0);
    const lines = res.out.trimEnd().split("\n");
    assert.equal(lines.length, CODE_NAMES.length);
    for (const [i, code] of CODE_NAMES.entries()) {
      const [c, severity, scope, ...title] = lines[i]!.split(/\s+/);
      assert.deepEqual(
        [c, severity, scope, title.join(" ")],
        [code, CODES[code].severity, CODES[code].scope, CODES[code].title],
      );
    }
  });

  it("fail/bad flags exit 2 naming the flag: --format xml, --at yesterday, --at with --in, --skew soon, --json --format, a typo, an argument", async () => {
    const r = await healthy();
    const cases: [string[], RegExp][] = [
      [["--format", "xml"], /--format must be one of human, json, prometheus; got "xml"/],
      [["--at", "yesterday"], /--at must be an ISO 8601 time .*; got "yesterday"/],
      [["--at", "2027-01-01", "--in", "30d"], /--at is incompatible with --in/],
      [["--skew", "soon"], /--skew must be a duration .*; got "soon"/],
      [["--json", "--format", "prometheus"], /flag --json is incompatible with --format/],
      [["--jsno"], /Unknown option '--jsno'/],
      [["pki"], /unexpected argument "pki"/],
    ];
    for (const [args, flag] of cases) {
      const res = await cli(r, ...args);
      assert.equal(res.code, 2, args.join(" "));
      assert.equal(res.out, "");
      assert.match(res.err, flag);
    }
  });

  it("fail/--json --nagios: a plugin run with contradicting flags answers UNKNOWN (3), naming both flags", async () => {
    // With --nagios every failure to judge is the plugin status UNKNOWN (Nagios plugin
    // guidelines), as the help's EXIT CODES say; the status line names the flags.
    const res = await cli(await healthy(), "--json", "--nagios");
    assert.equal(res.code, 3);
    assert.match(res.out, /^MTLSKIT UNKNOWN - mtlskit check: flag --json is incompatible with --nagios; use one\n$/);
  });
});

const HUMAN_SNAPSHOT = `mtlskit check: <manifest>, <pki>

api
  error   key-mode: <pki>/services/api/key.pem has mode 0644: readable by every user
          fix: run \`chmod 600 <pki>/services/api/key.pem\`

db
  error   bundle-missing: <pki>/services/db/ca.pem does not exist; db cannot verify its peers
          fix: run \`mtlskit apply -f <manifest> --pki <pki>\` to write it

connections
  ok    worker -> api @ api.localhost
  FAIL  worker -> db @ db.localhost
  error   conn-missing: db has no usable trust bundle to verify the client with: <pki>/services/db/ca.pem does not exist
          fix: fix db's bundle first (see its findings)
  FAIL  db -> api @ 127.0.0.1
  error   conn-missing: db has no usable trust bundle to verify the server with: <pki>/services/db/ca.pem does not exist
          fix: fix db's bundle first (see its findings)

FAIL: 4 errors, 0 warnings in 3 certificates and 3 connections (2 failing).
`;

// ── docs ───────────────────────────────────────────────────────────────────────────────────────

describe("check: docs/checks.md", () => {
  it("ok/equals the text generated from CODES (run `npm run build` after changing codes.ts)", () => {
    assert.equal(
      readFileSync(path.join(REPO, "docs", "checks.md"), "utf8"),
      checksMarkdown(),
      "docs/checks.md is stale: run `npm run build`",
    );
  });
  it("ok/has one table row per code, in table order", () => {
    const rows = checksMarkdown()
      .split("\n")
      .filter((l) => l.startsWith("| `"));
    assert.deepEqual(
      rows.map((l) => /^\| `([a-z-]+)` \|/.exec(l)![1]),
      CODE_NAMES,
    );
    for (const l of rows) assert.equal(l.split(/(?<!\\)\|/).length, 7, l);
  });
});
