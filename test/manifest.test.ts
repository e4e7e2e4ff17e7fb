/**
 * The manifest's validation rules, table-driven: every `fail/...` case parses a manifest with
 * parseManifest, expects InvalidInputError, and pins each problem's field path, line and rule
 * (a substring of its message, and of its fix where the fix matters). Every `ok/...` case checks
 * the resolved manifest: defaults, typed SANs, rendered identities, certificate slots.
 *
 * Manifests are written with `yaml(...)`, one argument per line, so the Nth argument is line N
 * and every expected line number can be read off the source.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { formatProblem, InvalidInputError, type Problem } from "../src/errors.ts";
import {
  loadManifest,
  manifestJsonSchema,
  parseManifest,
  type LoadedManifest,
  type Service,
} from "../src/manifest/index.ts";
import { classifyAddress, classifyAddressFully } from "../src/manifest/address.ts";
import { loadFully, loadPlainServices } from "../src/manifest/parse.ts";
import { fastService, serviceSchemaRun } from "../src/manifest/schema.ts";
import { time } from "../src/pki/der.ts";
import { apply } from "../src/plan/apply.ts";
import { checkReissueNames, planApply } from "../src/plan/plan.ts";
import { staleBundles } from "../src/cli/commands/shared.ts";
import { REPO, runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { opensslDates, opensslText, opensslVerify } from "./helpers/openssl.ts";

const FILE = "mtlskit.yaml";

/** yaml joins its arguments as lines: argument N is line N. */
const yaml = (...lines: string[]): string => lines.join("\n") + "\n";

/** withServices is a manifest whose `services:` key is line 3, so the given lines start at line 4. */
const withServices = (...lines: string[]): string => yaml("version: 1", "cluster: demo", "services:", ...lines);

/** Want is one expected problem: exact path and line, and substrings of the message and fix. */
interface Want {
  path: string;
  line: number | undefined;
  message: string;
  fix?: string;
}

interface FailCase {
  name: string;
  text: string;
  want: Want[];
}

interface OkCase {
  name: string;
  text: string;
  check: (loaded: LoadedManifest) => void;
}

/** problemsOf parses `text` and returns the problems of the InvalidInputError it must throw. */
function problemsOf(text: string): readonly Problem[] {
  try {
    parseManifest(text, FILE);
  } catch (e) {
    if (e instanceof InvalidInputError) return e.problems;
    throw e;
  }
  return assert.fail("expected InvalidInputError, but the manifest loaded");
}

const listed = (ps: readonly Problem[]) => ps.map((p) => "  " + formatProblem(p)).join("\n");

/** expectProblems asserts the exact list of problems (count, paths, lines) and their wording. */
function expectProblems(text: string, want: readonly Want[], opts: { sorted?: boolean } = {}): void {
  let got = [...problemsOf(text)];
  const order = (a: { line?: number | undefined; path: string }, b: { line?: number | undefined; path: string }) =>
    (a.line ?? 0) - (b.line ?? 0) || a.path.localeCompare(b.path);
  if (opts.sorted) got = got.sort(order);
  const wanted = opts.sorted ? [...want].sort(order) : want;
  assert.deepEqual(
    got.map((p) => ({ path: p.path, line: p.line })),
    wanted.map((w) => ({ path: w.path, line: w.line })),
    `problems (path, line) differ; got:\n${listed(got)}`,
  );
  got.forEach((p, i) => {
    const w = wanted[i]!;
    assert.equal(p.file, FILE);
    assert.ok(
      p.message.includes(w.message),
      `problem ${i} (${p.path}): message ${JSON.stringify(p.message)} does not contain ${JSON.stringify(w.message)}`,
    );
    if (w.fix !== undefined)
      assert.ok(
        p.fix?.includes(w.fix),
        `problem ${i} (${p.path}): fix ${JSON.stringify(p.fix)} does not contain ${JSON.stringify(w.fix)}`,
      );
  });
}

/** load parses a manifest that must be valid (a failure shows every problem). */
const load = (text: string): LoadedManifest => parseManifest(text, FILE);

/** service returns the resolved service `name`, failing if it is absent. */
function service(loaded: LoadedManifest, name: string): Service {
  const s = loaded.manifest.services.find((x) => x.name === name);
  assert.ok(s, `service ${name} is missing; services: ${loaded.manifest.services.map((x) => x.name).join(", ")}`);
  return s;
}

/** ipsOf returns a service's IP SANs as [text, bytes] pairs, bytes as plain arrays. */
const ipsOf = (s: Service) => s.ips.map((ip) => [ip.kind, ip.text, [...ip.bytes]]);

const failCases = (cases: readonly FailCase[]) => {
  for (const c of cases) it(c.name, () => expectProblems(c.text, c.want));
};

const okCases = (cases: readonly OkCase[], opts: { warnings?: boolean } = {}) => {
  for (const c of cases) {
    it(c.name, () => {
      const loaded = load(c.text);
      if (!opts.warnings) assert.deepEqual(loaded.warnings, []);
      c.check(loaded);
    });
  }
};

const DAY = 86_400_000;
const HOUR = 3_600_000;
const NAME_MSG =
  "must be lowercase letters, digits and single inner hyphens, starting with a letter, at most 32 characters";
const SERVICE_KEYS = "allowed keys: usage, cn, role, addresses, split, key, validity, renewBefore, subject, files";
const KEY_TYPES_MSG = "must be one of ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096, ed25519";
const DURATION_MSG = "must be a duration such as 90d, 12h, 2w or 10y";

describe("manifest: YAML and the document", () => {
  failCases([
    {
      name: "fail/YAML syntax error is reported at its line",
      text: withServices("  web:", "    usage: server", "   cn: web.demo"),
      want: [{ path: "", line: 6, message: "invalid YAML: ", fix: "correct the YAML syntax at this line" }],
    },
    {
      name: "fail/tab indentation is a syntax error at its line",
      text: withServices("  web:", "\tusage: server"),
      want: [{ path: "", line: 5, message: "invalid YAML: Tabs are not allowed", fix: "correct the YAML syntax" }],
    },
    {
      name: "fail/duplicate top-level key is reported at the repeated key",
      text: yaml("version: 1", "cluster: demo", "cluster: other", "services:", "  web: { usage: server }"),
      want: [
        {
          path: "",
          line: 3,
          message: "invalid YAML: Map keys must be unique",
          fix: "remove or rename one of the repeated keys",
        },
      ],
    },
    {
      name: "fail/duplicate key inside a service",
      text: withServices("  web:", "    usage: server", "    usage: client"),
      want: [
        { path: "", line: 6, message: "Map keys must be unique", fix: "remove or rename one of the repeated keys" },
      ],
    },
    {
      name: "fail/duplicate service name",
      text: withServices("  web: { usage: server }", "  web: { usage: client }"),
      want: [
        { path: "", line: 5, message: "Map keys must be unique", fix: "remove or rename one of the repeated keys" },
      ],
    },
    {
      name: "fail/multi-document file is refused at the second document",
      text: withServices("  web: { usage: server }", "---", "version: 1"),
      want: [
        {
          path: "",
          line: 5,
          message: "the manifest must be a single YAML document",
          fix: "remove the extra documents (--- separators)",
        },
      ],
    },
    {
      name: "fail/empty file says the manifest is empty and suggests mtlskit init",
      text: "",
      want: [{ path: "", line: undefined, message: "the manifest is empty", fix: "mtlskit init" }],
    },
    {
      name: "fail/file with only a comment says the manifest is empty",
      text: "# nothing here yet\n",
      want: [{ path: "", line: undefined, message: "the manifest is empty", fix: "mtlskit init" }],
    },
    {
      name: "fail/a document that is just null says the manifest is empty",
      text: "~\n",
      want: [{ path: "", line: undefined, message: "the manifest is empty", fix: "mtlskit init" }],
    },
    {
      name: "fail/a scalar document is not a mapping",
      text: "hello\n",
      want: [{ path: "", line: 1, message: 'must be a mapping (the manifest); got "hello"' }],
    },
    {
      name: "fail/a list document is not a mapping",
      text: yaml("- version: 1", "- cluster: demo"),
      want: [{ path: "", line: 1, message: "must be a mapping (the manifest); got a list" }],
    },
  ]);
});

describe("manifest: version and unknown keys", () => {
  failCases([
    {
      name: "fail/version missing",
      text: yaml("cluster: demo", "services:", "  web: { usage: server }"),
      want: [{ path: "version", line: 1, message: "is required", fix: "add it" }],
    },
    {
      name: "fail/version 2",
      text: yaml("version: 2", "cluster: demo", "services:", "  web: { usage: server }"),
      want: [{ path: "version", line: 1, message: "must be 1, the manifest version this mtlskit reads; got 2" }],
    },
    {
      name: "fail/version as a string",
      text: yaml('version: "1"', "cluster: demo", "services:", "  web: { usage: server }"),
      want: [{ path: "version", line: 1, message: 'must be 1, the manifest version this mtlskit reads; got "1"' }],
    },
    {
      name: "fail/cluster and services missing",
      text: yaml("version: 1"),
      want: [
        { path: "cluster", line: 1, message: "is required", fix: "add it" },
        { path: "services", line: 1, message: "is required", fix: "add it" },
      ],
    },
    {
      name: "fail/unknown top-level key lists the allowed keys",
      text: yaml("version: 1", "cluster: demo", "service: {}", "services:", "  web: { usage: server }"),
      want: [
        {
          path: "service",
          line: 3,
          message:
            'unknown key "service" in the manifest; allowed keys: version, cluster, identity, ca, defaults, services, connections',
          fix: "check the spelling, or remove the key",
        },
      ],
    },
    {
      name: "fail/unknown key in a service (typo adresses) lists the allowed keys",
      text: withServices("  web:", "    usage: server", "    adresses: [10.0.0.1]"),
      want: [
        {
          path: "services.web.adresses",
          line: 6,
          message: `unknown key "adresses" in a service; ${SERVICE_KEYS}`,
          fix: "check the spelling",
        },
      ],
    },
    {
      name: "fail/unknown key in ca",
      text: yaml("version: 1", "cluster: demo", "ca:", "  keytype: rsa-2048", "services:", "  web: { usage: server }"),
      want: [
        {
          path: "ca.keytype",
          line: 4,
          message: 'unknown key "keytype" in ca; allowed keys: key, validity, subject, import',
        },
      ],
    },
    {
      name: "fail/unknown key in defaults",
      text: yaml("version: 1", "cluster: demo", "defaults:", "  renew: 10d", "services:", "  web: { usage: server }"),
      want: [
        {
          path: "defaults.renew",
          line: 4,
          message: 'unknown key "renew" in defaults; allowed keys: key, validity, renewBefore, subject',
        },
      ],
    },
    {
      name: "fail/unknown key in a connection",
      text: withServices(
        "  web: { usage: server }",
        "  cli: { usage: client }",
        "connections:",
        "  - { from: cli, to: web, adress: web }",
      ),
      want: [
        {
          path: "connections.0.adress",
          line: 7,
          message: 'unknown key "adress" in a connection; allowed keys: from, to, address',
        },
      ],
    },
    {
      name: "fail/a service that is not a mapping",
      text: withServices("  web:"),
      want: [{ path: "services.web", line: 4, message: "must be a mapping (a service); got null" }],
    },
    {
      name: "fail/ca written as a list is not a mapping",
      text: yaml("version: 1", "cluster: demo", "ca: []", "services:", "  web: { usage: server }"),
      want: [{ path: "ca", line: 3, message: "must be a mapping (ca); got a list" }],
    },
    {
      name: "fail/services written as a list is not a mapping",
      text: yaml("version: 1", "cluster: demo", "services: [web]"),
      want: [{ path: "services", line: 3, message: "must be a mapping (service names to services); got a list" }],
    },
  ]);
});

describe("manifest: names (cluster, services, roles)", () => {
  const BAD: [string, string][] = [
    ["uppercase", "Demo"],
    ["underscore", "de_mo"],
    ["leading digit", "1demo"],
    ["leading hyphen", "-demo"],
    ["trailing hyphen", "demo-"],
    ["double hyphen", "de--mo"],
    ["a dot", "de.mo"],
    ["empty", ""],
    ["33 characters", "a".repeat(33)],
  ];
  const GOOD: [string, string][] = [
    ["32 characters", "a".repeat(32)],
    ["one letter", "a"],
    ["digits and single inner hyphens", "etcd-1-b2"],
  ];

  describe("cluster", () => {
    failCases(
      BAD.map(([what, n]) => ({
        name: `fail/cluster ${what}: ${JSON.stringify(n)}`,
        text: yaml("version: 1", `cluster: "${n}"`, "services:", "  web: { usage: server }"),
        want: [{ path: "cluster", line: 2, message: `${NAME_MSG}; got ${JSON.stringify(n)}` }],
      })),
    );
    failCases([
      {
        name: "fail/cluster that is a number",
        text: yaml("version: 1", "cluster: 123", "services:", "  web: { usage: server }"),
        want: [{ path: "cluster", line: 2, message: "must be a string (Cluster id, fills {cluster}); got 123" }],
      },
    ]);
    okCases(
      GOOD.map(([what, n]) => ({
        name: `ok/cluster ${what}`,
        text: yaml("version: 1", `cluster: ${n}`, "services:", "  web: { usage: server }"),
        check: (l) => {
          assert.equal(l.manifest.cluster, n);
          assert.equal(l.manifest.ca.subject.CN, `${n} CA`);
        },
      })),
    );
  });

  describe("service names", () => {
    failCases(
      BAD.map(([what, n]) => ({
        name: `fail/service name ${what}: ${JSON.stringify(n)}`,
        text: withServices(`  "${n}": { usage: server }`),
        want: [{ path: `services.${n}`, line: 4, message: `${NAME_MSG}; got ${JSON.stringify(n)}` }],
      })),
    );
    failCases([
      {
        name: "fail/bad service name in block style is reported at the name's line",
        text: withServices("  web: { usage: server }", "  Api:", "    usage: server"),
        want: [{ path: "services.Api", line: 5, message: `${NAME_MSG}; got "Api"` }],
      },
    ]);
    okCases(
      GOOD.map(([what, n]) => ({
        name: `ok/service name ${what}`,
        text: withServices(`  ${n}: { usage: server }`),
        check: (l) => {
          const s = service(l, n);
          assert.equal(s.cn, n);
          assert.deepEqual(
            s.slots.map((x) => x.id),
            [n],
          );
        },
      })),
    );
  });

  describe("roles", () => {
    failCases(
      BAD.map(([what, n]) => ({
        name: `fail/role ${what}: ${JSON.stringify(n)}`,
        text: withServices("  web:", "    usage: server", `    role: "${n}"`),
        want: [{ path: "services.web.role", line: 6, message: `${NAME_MSG}; got ${JSON.stringify(n)}` }],
      })),
    );
    okCases(
      GOOD.map(([what, n]) => ({
        name: `ok/role ${what}`,
        text: withServices("  web:", "    usage: server", `    role: ${n}`),
        check: (l) => assert.equal(service(l, "web").role, n),
      })),
    );
  });
});

describe("manifest: usage and key types", () => {
  failCases([
    {
      name: "fail/usage not server, client or dual",
      text: withServices("  web: { usage: sever }"),
      want: [{ path: "services.web.usage", line: 4, message: 'must be one of server, client, dual; got "sever"' }],
    },
    {
      name: "fail/usage missing",
      text: withServices("  web:", "    cn: web.demo"),
      want: [{ path: "services.web.usage", line: 5, message: "is required", fix: "add it" }],
    },
    {
      name: "fail/usage in upper case",
      text: withServices("  web: { usage: Server }"),
      want: [{ path: "services.web.usage", line: 4, message: 'got "Server"' }],
    },
    {
      name: "fail/unknown ca.key",
      text: yaml("version: 1", "cluster: demo", "ca:", "  key: rsa-1024", "services:", "  web: { usage: server }"),
      want: [{ path: "ca.key", line: 4, message: `${KEY_TYPES_MSG}; got "rsa-1024"` }],
    },
    {
      name: "fail/unknown defaults.key",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "defaults:",
        "  key: ecdsa-p521",
        "services:",
        "  web: { usage: server }",
      ),
      want: [{ path: "defaults.key", line: 4, message: `${KEY_TYPES_MSG}; got "ecdsa-p521"` }],
    },
    {
      name: "fail/unknown services.X.key",
      text: withServices("  web:", "    usage: server", "    key: ed448"),
      want: [{ path: "services.web.key", line: 6, message: `${KEY_TYPES_MSG}; got "ed448"` }],
    },
  ]);

  okCases(
    (["server", "client", "dual"] as const).map((usage) => ({
      name: `ok/usage ${usage} gives a ${usage} profile and role ${usage}`,
      text: withServices(`  web: { usage: ${usage} }`),
      check: (l) => {
        const s = service(l, "web");
        assert.equal(s.usage, usage);
        assert.equal(s.role, usage);
        assert.deepEqual(s.slots, [{ id: "web", service: "web", kind: "main", profile: usage }]);
      },
    })),
  );
  okCases([
    {
      name: "ok/key types: service key over defaults.key over ecdsa-p256; ca.key independent",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "ca: { key: ed25519 }",
        "defaults: { key: rsa-3072 }",
        "services:",
        "  a: { usage: server, key: ecdsa-p384 }",
        "  b: { usage: server }",
      ),
      check: (l) => {
        assert.equal(l.manifest.ca.keyType, "ed25519");
        assert.equal(service(l, "a").keyType, "ecdsa-p384");
        assert.equal(service(l, "b").keyType, "rsa-3072");
      },
    },
  ]);
});

describe("manifest: addresses", () => {
  /** addr puts one written address at line 7, services.web.addresses.0. */
  const addr = (a: string) => withServices("  web:", "    usage: server", "    addresses:", `      - ${a}`);
  const at = "services.web.addresses.0";

  failCases([
    {
      name: "fail/10.0.0.256 is an invalid IPv4 address, not a DNS name",
      text: addr("10.0.0.256"),
      want: [
        {
          path: at,
          line: 7,
          message: '"10.0.0.256" is not a valid IPv4 address (four numbers 0-255); it is not taken as a DNS name',
        },
      ],
    },
    {
      name: "fail/1.2.3 is an invalid IPv4 address",
      text: addr("1.2.3"),
      want: [{ path: at, line: 7, message: '"1.2.3" is not a valid IPv4 address' }],
    },
    {
      name: "fail/IPv4 with a leading zero",
      text: addr("010.0.0.1"),
      want: [{ path: at, line: 7, message: '"010.0.0.1" is not a valid IPv4 address' }],
    },
    {
      name: "fail/invalid IPv6",
      text: addr('"2001:db8::g"'),
      want: [{ path: at, line: 7, message: '"2001:db8::g" is not a valid IPv6 address', fix: "e.g. 2001:db8::1" }],
    },
    {
      name: "fail/IPv6 with a zone",
      text: addr('"fe80::1%eth0"'),
      want: [
        {
          path: at,
          line: 7,
          message: '"fe80::1%eth0" is not a valid IPv6 address',
          fix: "without brackets, port or zone",
        },
      ],
    },
    {
      name: "fail/host with a port",
      text: addr('"web.demo:8443"'),
      want: [{ path: at, line: 7, message: '"web.demo:8443" is not a valid IPv6 address (and a DNS name has no ":")' }],
    },
    {
      // Brackets are URL syntax, not an address: the brief (and the fix text "without brackets") make [::1] an error.
      name: "fail/IPv6 in bracket form [::1]",
      text: addr('"[::1]"'),
      want: [{ path: at, line: 7, message: '"[::1]"', fix: "without brackets" }],
    },
    {
      name: "fail/IPv6 in bracket form with a port",
      text: addr('"[::1]:8443"'),
      want: [{ path: at, line: 7, message: "is not a valid IPv6 address", fix: "without brackets, port or zone" }],
    },
    {
      name: "fail/underscore in a DNS name",
      text: addr("my_host.demo"),
      want: [
        {
          path: at,
          line: 7,
          message: '"my_host.demo" is not a valid DNS name: label "my_host"',
          fix: "replace underscores with hyphens",
        },
      ],
    },
    {
      name: "fail/label of 64 characters",
      text: addr(`${"a".repeat(64)}.demo`),
      want: [{ path: at, line: 7, message: `label "${"a".repeat(64)}" must be 1-63 letters, digits or inner hyphens` }],
    },
    {
      name: "fail/label with a leading hyphen",
      text: addr('"-web.demo"'),
      want: [{ path: at, line: 7, message: 'label "-web"' }],
    },
    { name: "fail/empty label", text: addr("web..demo"), want: [{ path: at, line: 7, message: 'label ""' }] },
    {
      name: "fail/name of 254 characters",
      text: addr(`${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(62)}`),
      want: [{ path: at, line: 7, message: "is longer than 253 characters", fix: "shorten the name" }],
    },
    {
      name: "fail/trailing dot",
      text: addr("web.demo."),
      want: [{ path: at, line: 7, message: '"web.demo." ends with a dot', fix: 'write "web.demo"' }],
    },
    {
      name: "fail/wildcard",
      text: addr('"*.demo"'),
      want: [{ path: at, line: 7, message: '"*.demo" is a wildcard; service certificates name exact hosts' }],
    },
    {
      name: "fail/numeric last label",
      text: addr("web.123"),
      want: [{ path: at, line: 7, message: '"web.123" is not a valid DNS name: the last label is numeric' }],
    },
    { name: "fail/empty string", text: addr('""'), want: [{ path: at, line: 7, message: "is empty" }] },
    {
      name: "fail/a YAML integer is not taken silently",
      text: addr("12345"),
      want: [{ path: at, line: 7, message: '"12345" is not a valid IPv4 address' }],
    },
    {
      name: "fail/a YAML float is not taken silently",
      text: addr("1.5"),
      want: [{ path: at, line: 7, message: '"1.5" is not a valid IPv4 address' }],
    },
    {
      name: "fail/a YAML boolean",
      text: addr("true"),
      want: [{ path: at, line: 7, message: "must be an IP address or a DNS name; got true" }],
    },
    {
      name: "fail/the index of the bad entry is in the path and its own line is reported",
      text: withServices(
        "  web:",
        "    usage: server",
        "    addresses:",
        "      - 10.0.0.1",
        "      - web.demo",
        "      - bad_name",
      ),
      want: [{ path: "services.web.addresses.2", line: 9, message: '"bad_name"' }],
    },
    {
      name: "fail/addresses not a list",
      text: withServices("  web: { usage: server, addresses: web.demo }"),
      want: [
        {
          path: "services.web.addresses",
          line: 4,
          message: 'must be a list of IP addresses and DNS names; got "web.demo"',
        },
      ],
    },
  ]);

  const longest = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
  okCases([
    {
      name: "ok/IPv4 becomes an IP SAN with 4 bytes",
      text: addr("10.0.0.1"),
      check: (l) => {
        const s = service(l, "web");
        assert.deepEqual(ipsOf(s), [["ip", "10.0.0.1", [10, 0, 0, 1]]]);
        assert.deepEqual(s.dns, ["web"]);
      },
    },
    {
      name: "ok/IPv6 becomes an IP SAN with 16 bytes",
      text: addr('"2001:db8::1"'),
      check: (l) =>
        assert.deepEqual(ipsOf(service(l, "web")), [
          ["ip", "2001:db8::1", [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]],
        ]),
    },
    {
      name: "ok/IPv6 is written in canonical form (RFC 5952)",
      text: addr('"2001:DB8:0:0:1:0:0:1"'),
      check: (l) =>
        assert.deepEqual(ipsOf(service(l, "web")), [
          ["ip", "2001:db8::1:0:0:1", [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]],
        ]),
    },
    {
      name: "ok/upper-case DNS name is normalized to lower case",
      text: addr("Web.Example.COM"),
      check: (l) => assert.deepEqual(service(l, "web").dns, ["web", "web.example.com"]),
    },
    {
      name: "ok/label of 63 and name of 253 characters",
      text: withServices(
        "  web:",
        "    usage: server",
        "    addresses:",
        `      - ${"a".repeat(63)}.demo`,
        `      - ${longest}`,
      ),
      check: (l) => assert.deepEqual(service(l, "web").dns, ["web", `${"a".repeat(63)}.demo`, longest]),
    },
    {
      name: "ok/duplicates are removed, by name case-insensitively and by IP bytes",
      text: withServices(
        "  web:",
        "    usage: server",
        '    addresses: [web, WEB.demo, web.demo, 10.0.0.1, "2001:db8::1", "2001:DB8:0::1", 10.0.0.1]',
      ),
      check: (l) => {
        const s = service(l, "web");
        assert.deepEqual(s.dns, ["web", "web.demo"]);
        assert.deepEqual(
          s.ips.map((i) => i.text),
          ["10.0.0.1", "2001:db8::1"],
        );
      },
    },
  ]);
});

describe("manifest: cn", () => {
  const cn = (v: string) => withServices("  web:", "    usage: server", `    cn: ${v}`);
  failCases([
    {
      name: "fail/cn with a space is not a DNS name",
      text: cn('"Web Server"'),
      want: [
        {
          path: "services.web.cn",
          line: 6,
          message: 'must also be a valid SAN, but "Web Server" is not a valid DNS name',
        },
      ],
    },
    {
      name: "fail/cn that is an invalid IP",
      text: cn("10.0.0.256"),
      want: [
        {
          path: "services.web.cn",
          line: 6,
          message: 'must also be a valid SAN, but "10.0.0.256" is not a valid IPv4 address',
        },
      ],
    },
    {
      name: "fail/cn that is a wildcard",
      text: cn('"*.demo"'),
      want: [{ path: "services.web.cn", line: 6, message: "is a wildcard" }],
    },
    {
      name: "fail/cn that is not a string",
      text: cn("10"),
      want: [{ path: "services.web.cn", line: 6, message: "must be a string; got 10" }],
    },
    {
      name: "fail/cn longer than 64 characters (it is the subject CN)",
      text: cn(`${"a".repeat(60)}.example.com`),
      want: [{ path: "services.web.cn", line: 6, message: "at most 64 characters" }],
    },
  ]);
  okCases([
    {
      name: "ok/cn is the first DNS SAN and the subject CN, as written",
      text: withServices("  web:", "    usage: server", "    cn: Web.Demo", "    addresses: [web.demo.svc]"),
      check: (l) => {
        const s = service(l, "web");
        assert.equal(s.cn, "Web.Demo");
        assert.equal(s.subject.CN, "Web.Demo");
        assert.deepEqual(s.dns, ["web.demo", "web.demo.svc"]);
      },
    },
    {
      name: "ok/cn that is an IP is the first IP SAN",
      text: withServices("  web:", "    usage: server", "    cn: 10.1.2.3", "    addresses: [10.0.0.1, web.demo]"),
      check: (l) => {
        const s = service(l, "web");
        assert.deepEqual(ipsOf(s), [
          ["ip", "10.1.2.3", [10, 1, 2, 3]],
          ["ip", "10.0.0.1", [10, 0, 0, 1]],
        ]);
        assert.deepEqual(s.dns, ["web.demo"]);
      },
    },
  ]);
});

describe("manifest: durations", () => {
  const validity = (v: string) => withServices("  web:", "    usage: server", `    validity: ${v}`);
  const bad = (written: string, shown: string): FailCase => ({
    name: `fail/validity ${written}`,
    text: validity(written),
    want: [
      {
        path: "services.web.validity",
        line: 6,
        message: `${DURATION_MSG}${shown === "90" ? "" : " (a positive whole number and one unit h, d, w, y)"}; got ${shown}`,
      },
    ],
  });
  failCases([
    bad("90", "90"), // a YAML integer: no unit
    bad("90days", '"90days"'),
    bad("0d", '"0d"'),
    bad("-1d", '"-1d"'),
    bad("1.5d", '"1.5d"'),
    bad("90D", '"90D"'),
    bad("1000000d", '"1000000d"'),
    bad('""', '""'),
  ]);

  failCases(
    [
      [
        "ca.validity",
        yaml("version: 1", "cluster: demo", "ca:", "  validity: 10years", "services:", "  web: { usage: server }"),
      ],
      [
        "defaults.validity",
        yaml(
          "version: 1",
          "cluster: demo",
          "defaults:",
          "  validity: 10years",
          "services:",
          "  web: { usage: server }",
        ),
      ],
      [
        "defaults.renewBefore",
        yaml(
          "version: 1",
          "cluster: demo",
          "defaults:",
          "  renewBefore: 10years",
          "services:",
          "  web: { usage: server }",
        ),
      ],
    ].map(([p, text]) => ({
      name: `fail/${p} is checked too`,
      text: text!,
      want: [
        {
          path: p!,
          line: 4,
          message: `${DURATION_MSG} (a positive whole number and one unit h, d, w, y); got "10years"`,
        },
      ],
    })),
  );
  failCases([
    {
      name: "fail/services.X.renewBefore is checked too",
      text: withServices("  web:", "    usage: server", "    renewBefore: 1m"),
      want: [{ path: "services.web.renewBefore", line: 6, message: 'got "1m"' }],
    },
  ]);

  okCases(
    (
      [
        ["12h", 12 * HOUR],
        ["2w", 14 * DAY],
        ["10y", 3650 * DAY],
        ["999999h", 999_999 * HOUR],
      ] as const
    ).map(([v, ms]) => ({
      name: `ok/validity ${v} is ${ms} ms and renewBefore defaults to a third of it`,
      text:
        v === "999999h"
          ? yaml(
              "version: 1",
              "cluster: demo",
              "ca: { validity: 200y }",
              "services:",
              "  web:",
              "    usage: server",
              `    validity: ${v}`,
            )
          : validity(v),
      check: (l) => {
        const s = service(l, "web");
        assert.equal(s.validityMs, ms);
        assert.equal(s.renewBeforeMs, ms / 3);
      },
    })),
  );

  describe("renewBefore must be shorter than validity", () => {
    failCases([
      {
        name: "fail/renewBefore equal to validity, both on the service",
        text: withServices("  web:", "    usage: server", "    validity: 30d", "    renewBefore: 30d"),
        want: [
          {
            path: "services.web.renewBefore",
            line: 7,
            message:
              "renewBefore (30d) must be shorter than the validity (30d) of service web, or every apply would re-issue it",
            fix: "shorten renewBefore",
          },
        ],
      },
      {
        name: "fail/renewBefore longer than the validity from defaults is reported on the service's renewBefore",
        text: yaml(
          "version: 1",
          "cluster: demo",
          "defaults:",
          "  validity: 30d",
          "services:",
          "  web:",
          "    usage: server",
          "    renewBefore: 5w",
        ),
        want: [
          {
            path: "services.web.renewBefore",
            line: 8,
            message: "renewBefore (5w) must be shorter than the validity (30d) of service web",
          },
        ],
      },
      {
        name: "fail/renewBefore inherited from defaults is reported once on defaults.renewBefore, naming every service",
        text: yaml(
          "version: 1",
          "cluster: demo",
          "defaults:",
          "  validity: 30d",
          "  renewBefore: 60d",
          "services:",
          "  web: { usage: server }",
          "  api: { usage: server, renewBefore: 1d }",
          "  db: { usage: server, validity: 90d }",
          "  log: { usage: server }",
        ),
        want: [
          {
            path: "defaults.renewBefore",
            line: 5,
            message: "renewBefore (60d) must be shorter than the validity (30d) of service web, log",
          },
        ],
      },
      {
        name: "fail/defaults.renewBefore against a service's own shorter validity is reported on defaults.renewBefore",
        text: yaml(
          "version: 1",
          "cluster: demo",
          "defaults:",
          "  renewBefore: 10d",
          "services:",
          "  web:",
          "    usage: server",
          "    validity: 10d",
        ),
        want: [
          {
            path: "defaults.renewBefore",
            line: 4,
            message: "renewBefore (10d) must be shorter than the validity (10d) of service web",
          },
        ],
      },
    ]);
    okCases([
      {
        name: "ok/renewBefore just shorter than validity",
        text: yaml(
          "version: 1",
          "cluster: demo",
          "defaults: { renewBefore: 29d }",
          "services:",
          "  web: { usage: server, validity: 30d }",
          "  api: { usage: server, validity: 2w, renewBefore: 13d }",
        ),
        check: (l) => {
          assert.equal(service(l, "web").renewBeforeMs, 29 * DAY);
          assert.equal(service(l, "api").renewBeforeMs, 13 * DAY);
        },
      },
    ]);
  });

  describe("a leaf never outlives its CA", () => {
    failCases([
      {
        name: "fail/service validity longer than ca.validity is reported on the service",
        text: yaml(
          "version: 1",
          "cluster: demo",
          "ca:",
          "  validity: 1y",
          "services:",
          "  web:",
          "    usage: server",
          "    validity: 2y",
        ),
        want: [
          {
            path: "services.web.validity",
            line: 8,
            message: "a validity of 2y (service web) is longer than the CA's 1y; a certificate cannot outlive its CA",
            fix: "shorten the service validity or lengthen ca.validity",
          },
        ],
      },
      {
        name: "fail/defaults.validity longer than ca.validity is reported on defaults.validity",
        text: yaml(
          "version: 1",
          "cluster: demo",
          "ca:",
          "  validity: 30d",
          "defaults:",
          "  validity: 31d",
          "services:",
          "  web: { usage: server }",
        ),
        want: [
          {
            path: "defaults.validity",
            line: 6,
            message: "a validity of 31d (service web) is longer than the CA's 30d",
          },
        ],
      },
    ]);
    it("fail/the built-in 90d validity longer than ca.validity points at a field the manifest has", () => {
      const text = yaml(
        "version: 1",
        "cluster: demo",
        "ca:",
        "  validity: 30d",
        "services:",
        "  web: { usage: server }",
      );
      const ps = problemsOf(text);
      assert.equal(ps.length, 1, listed(ps));
      const p = ps[0]!;
      assert.ok(p.message.includes("a validity of 90d (service web) is longer than the CA's 30d"), p.message);
      const written: Record<string, number> = { "ca.validity": 4, "services.web": 6 };
      assert.ok(
        p.path in written,
        `reported at ${JSON.stringify(p.path)}, which is not in the manifest; expected one of ${Object.keys(written).join(", ")}`,
      );
      assert.equal(p.line, written[p.path]);
    });
    okCases([
      {
        name: "ok/leaf validity equal to the CA's",
        text: yaml(
          "version: 1",
          "cluster: demo",
          "ca: { validity: 1y }",
          "services:",
          "  web: { usage: server, validity: 365d }",
        ),
        check: (l) => {
          assert.equal(l.manifest.ca.validityMs, 365 * DAY);
          assert.equal(service(l, "web").validityMs, 365 * DAY);
        },
      },
      {
        name: "ok/an imported CA is not compared here (its real expiry is checked when it is read)",
        text: yaml(
          "version: 1",
          "cluster: demo",
          "ca:",
          "  validity: 1d",
          "  import: { cert: org.pem, key: org-key.pem }",
          "services:",
          "  web: { usage: server }",
        ),
        check: (l) => assert.equal(service(l, "web").validityMs, 90 * DAY),
      },
    ]);
  });
});

describe("manifest: subject", () => {
  failCases([
    {
      name: "fail/defaults.subject.C in lower case",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "defaults:",
        "  subject: { C: us }",
        "services:",
        "  web: { usage: server }",
      ),
      want: [
        {
          path: "defaults.subject.C",
          line: 4,
          message: 'must be a two-letter upper-case ISO 3166 country code such as US or DE; got "us"',
        },
      ],
    },
    {
      name: "fail/services.X.subject.C mixed case",
      text: withServices("  web:", "    usage: server", "    subject:", "      C: De"),
      want: [
        {
          path: "services.web.subject.C",
          line: 7,
          message: 'two-letter upper-case ISO 3166 country code such as US or DE; got "De"',
        },
      ],
    },
    {
      name: "fail/ca.subject.C with a digit",
      text: yaml("version: 1", "cluster: demo", "ca:", "  subject: { C: U1 }", "services:", "  web: { usage: server }"),
      want: [{ path: "ca.subject.C", line: 4, message: 'got "U1"' }],
    },
    {
      name: "fail/CN in defaults.subject is an unknown key (a service's CN is its cn)",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "defaults:",
        "  subject:",
        "    CN: demo",
        "services:",
        "  web: { usage: server }",
      ),
      want: [
        {
          path: "defaults.subject.CN",
          line: 5,
          message: 'unknown key "CN" in subject (the CN of a service is set with `cn`); allowed keys: C, ST, L, O, OU',
        },
      ],
    },
    {
      name: "fail/CN in a service subject is an unknown key",
      text: withServices("  web:", "    usage: server", "    subject:", "      CN: web"),
      want: [
        {
          path: "services.web.subject.CN",
          line: 7,
          message: 'unknown key "CN" in subject (the CN of a service is set with `cn`)',
          fix: "check the spelling",
        },
      ],
    },
    {
      name: "fail/O longer than 64",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "defaults:",
        "  subject:",
        `    O: ${"o".repeat(65)}`,
        "services:",
        "  web: { usage: server }",
      ),
      want: [
        {
          path: "defaults.subject.O",
          line: 5,
          message: "must be at most 64 characters (RFC 5280 upper bound); got 65",
        },
      ],
    },
    {
      name: "fail/OU of a service longer than 64",
      text: withServices("  web:", "    usage: server", "    subject:", `      OU: ${"u".repeat(65)}`),
      want: [{ path: "services.web.subject.OU", line: 7, message: "must be at most 64 characters" }],
    },
    {
      name: "fail/ca.subject.CN longer than 64",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "ca:",
        "  subject:",
        `    CN: ${"c".repeat(65)}`,
        "services:",
        "  web: { usage: server }",
      ),
      want: [{ path: "ca.subject.CN", line: 5, message: "must be at most 64 characters" }],
    },
    {
      name: "fail/ST longer than 128",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "defaults:",
        "  subject:",
        `    ST: ${"s".repeat(129)}`,
        "services:",
        "  web: { usage: server }",
      ),
      want: [{ path: "defaults.subject.ST", line: 5, message: "must be at most 128 characters" }],
    },
    {
      name: "fail/empty attribute",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "defaults:",
        "  subject:",
        '    O: ""',
        "services:",
        "  web: { usage: server }",
      ),
      want: [{ path: "defaults.subject.O", line: 5, message: "must not be empty" }],
    },
    {
      name: "fail/control character in an attribute",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "defaults:",
        "  subject:",
        '    O: "Demo\\tInc"',
        "services:",
        "  web: { usage: server }",
      ),
      want: [{ path: "defaults.subject.O", line: 5, message: "must not contain control characters" }],
    },
  ]);
  okCases([
    {
      name: "ok/attributes of 64 characters; a service subject overrides defaults.subject per attribute; CN is the cn",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "defaults:",
        `  subject: { C: US, O: ${"o".repeat(64)}, OU: Ops }`,
        "services:",
        "  web: { usage: server, cn: web.demo, subject: { OU: Web, L: Berlin } }",
        "  api: { usage: server }",
      ),
      check: (l) => {
        assert.deepEqual(service(l, "web").subject, {
          C: "US",
          O: "o".repeat(64),
          OU: "Web",
          L: "Berlin",
          CN: "web.demo",
        });
        assert.deepEqual(service(l, "api").subject, { C: "US", O: "o".repeat(64), OU: "Ops", CN: "api" });
      },
    },
    {
      name: "ok/CA subject defaults to defaults.subject with CN `<cluster> CA`",
      text: yaml(
        "version: 1",
        "cluster: prod-eu",
        "defaults:",
        "  subject: { C: DE, O: Demo }",
        "services:",
        "  web: { usage: server }",
      ),
      check: (l) => assert.deepEqual(l.manifest.ca.subject, { C: "DE", O: "Demo", CN: "prod-eu CA" }),
    },
    {
      name: "ok/a written ca.subject is used as written, CN included",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "ca:",
        "  subject: { O: Org, CN: Org Root }",
        "defaults:",
        "  subject: { C: US }",
        "services:",
        "  web: { usage: server }",
      ),
      check: (l) => assert.deepEqual(l.manifest.ca.subject, { O: "Org", CN: "Org Root" }),
    },
  ]);
});

describe("manifest: identity", () => {
  /** withIdentity puts the template at line 4 (identity.uri); services start at line 6. */
  const withIdentity = (uri: string, ...services: string[]) =>
    yaml(
      "version: 1",
      "cluster: demo",
      "identity:",
      `  uri: ${uri.includes('"') ? `'${uri}'` : `"${uri}"`}`,
      "services:",
      ...(services.length ? services : ["  web: { usage: server }"]),
    );
  const FIX = "fix the template (SPIFFE form: spiffe://trust-domain/path)";

  failCases([
    {
      name: "fail/unknown placeholder {nam}",
      text: withIdentity("spiffe://demo.example/{nam}"),
      want: [
        {
          path: "identity.uri",
          line: 4,
          message: "unknown placeholder {nam}; the template may use {cluster} {role} {name}",
          fix: "correct or remove the placeholder",
        },
      ],
    },
    {
      name: "fail/each unknown placeholder is reported, and the rendered URI is not judged",
      text: withIdentity("spiffe://Demo/{nam}/{Name}"),
      want: [
        { path: "identity.uri", line: 4, message: "unknown placeholder {nam}" },
        { path: "identity.uri", line: 4, message: "unknown placeholder {Name}" },
      ],
    },
  ]);

  failCases(
    (
      [
        [
          "upper-case trust domain",
          "spiffe://Demo.example/{name}",
          'renders "spiffe://Demo.example/web" for service web, which authority "Demo.example" may hold only lowercase letters',
        ],
        ["port in the authority", "spiffe://demo.example:8443/{name}", 'authority "demo.example:8443"'],
        ["upper-case scheme", "Spiffe://demo.example/{name}", 'scheme "Spiffe" must be lowercase'],
        ["no trust domain", "spiffe:///{name}", "has no authority (trust domain) after ://"],
        [
          "space in a segment",
          "spiffe://demo.example/a b/{name}",
          'path segment "a b" may hold only letters, digits, ".", "-" and "_"',
        ],
        ["comma in a segment", "spiffe://demo.example/a,b/{name}", 'path segment "a,b"'],
        ["double quote in a segment", 'spiffe://demo.example/a"b/{name}', 'path segment "a"b"'],
        ["single quote in a segment", "spiffe://demo.example/a'b/{name}", `path segment "a'b"`],
        ["empty segment", "spiffe://demo.example//{name}", "has an empty path segment (a double or trailing slash)"],
        ["trailing slash", "spiffe://demo.example/{name}/", "has an empty path segment"],
        ["dot segment", "spiffe://demo.example/./{name}", 'has a "." path segment'],
        ["query string", "spiffe://demo.example/{name}?x", "with no query or fragment"],
        ["fragment", "spiffe://demo.example/{name}#f", "with no query or fragment"],
        ["not a URI", "{cluster}-{name}", "must look like scheme://authority/path"],
        [
          "SPIFFE URI with no path",
          "spiffe://demo.example",
          "is a bare SPIFFE trust domain; a workload identity needs a path",
        ],
        ["SPIFFE URI with only a slash", "spiffe://demo.example/", "has an empty path segment"],
      ] as const
    ).map(([what, uri, message]) => ({
      name: `fail/rendered URI invalid: ${what}`,
      text: withIdentity(uri),
      want: [{ path: "identity.uri", line: 4, message, fix: FIX }],
    })),
  );

  failCases([
    {
      name: "fail/an invalid rendering is reported once, not once per service",
      text: withIdentity("spiffe://demo.example/a b/{role}", "  web: { usage: server }", "  api: { usage: client }"),
      want: [{ path: "identity.uri", line: 4, message: 'renders "spiffe://demo.example/a b/server" for service web' }],
    },
    {
      name: "fail/template without {name}: two services sharing a role get the same identity",
      text: withIdentity(
        "spiffe://demo.example/{role}",
        "  web: { usage: server }",
        "  api: { usage: server }",
        "  db: { usage: server, role: db }",
      ),
      want: [
        {
          path: "services.api",
          line: 7,
          message:
            "has the same identity spiffe://demo.example/server as service web; an identity must name one service",
          fix: "add {name} to identity.uri, or give the services different roles",
        },
      ],
    },
    {
      name: "fail/every further holder of a shared identity is reported",
      text: withIdentity(
        "spiffe://{cluster}.example/{role}",
        "  web: { usage: server, role: front }",
        "  api: { usage: server, role: front }",
        "  db:",
        "    usage: client",
        "    role: front",
      ),
      want: [
        { path: "services.api", line: 7, message: "has the same identity spiffe://demo.example/front as service web" },
        { path: "services.db", line: 9, message: "has the same identity spiffe://demo.example/front as service web" },
      ],
    },
  ]);

  okCases([
    {
      name: "ok/placeholders are filled; role defaults to the usage",
      text: withIdentity(
        "spiffe://{cluster}.example/{role}/{name}",
        "  web: { usage: server }",
        "  core: { usage: dual, role: peer }",
      ),
      check: (l) => {
        assert.equal(l.manifest.identityTemplate, "spiffe://{cluster}.example/{role}/{name}");
        assert.equal(service(l, "web").identity, "spiffe://demo.example/server/web");
        assert.equal(service(l, "core").identity, "spiffe://demo.example/peer/core");
      },
    },
    {
      name: "ok/a custom scheme",
      text: withIdentity("netsy://{cluster}/{role}/{name}"),
      check: (l) => assert.equal(service(l, "web").identity, "netsy://demo/server/web"),
    },
    {
      name: "ok/a template without {name} when every role is distinct; upper case is allowed in path segments",
      text: withIdentity(
        "spiffe://demo.example/Prod/{role}",
        "  web: { usage: server }",
        "  api: { usage: server, role: api }",
      ),
      check: (l) => {
        assert.equal(service(l, "web").identity, "spiffe://demo.example/Prod/server");
        assert.equal(service(l, "api").identity, "spiffe://demo.example/Prod/api");
      },
    },
    {
      name: "ok/no identity section: no identity",
      text: withServices("  web: { usage: server }"),
      check: (l) => {
        assert.equal(l.manifest.identityTemplate, undefined);
        assert.equal(service(l, "web").identity, undefined);
      },
    },
  ]);
});

describe("manifest: split", () => {
  failCases(
    (["server", "client"] as const).map((usage) => ({
      name: `fail/split: true on a ${usage} service`,
      text: withServices("  web:", `    usage: ${usage}`, "    split: true"),
      want: [
        {
          path: "services.web.split",
          line: 6,
          message: `split separates a dual service's server and client certificates; this service's usage is ${usage}`,
          fix: "remove split, or set usage: dual",
        },
      ],
    })),
  );
  failCases([
    {
      name: "fail/split that is not a boolean",
      text: withServices("  core:", "    usage: dual", '    split: "yes"'),
      want: [{ path: "services.core.split", line: 6, message: 'must be true or false; got "yes"' }],
    },
  ]);
  okCases([
    {
      name: "ok/split on a dual service gives two slots: core (server) and core/client (client)",
      text: withServices("  core:", "    usage: dual", "    split: true"),
      check: (l) => {
        const s = service(l, "core");
        assert.equal(s.split, true);
        assert.deepEqual(s.slots, [
          { id: "core", service: "core", kind: "main", profile: "server" },
          { id: "core/client", service: "core", kind: "client", profile: "client" },
        ]);
      },
    },
    {
      name: "ok/dual without split is one dual slot",
      text: withServices("  core: { usage: dual }"),
      check: (l) =>
        assert.deepEqual(service(l, "core").slots, [{ id: "core", service: "core", kind: "main", profile: "dual" }]),
    },
    {
      name: "ok/split: false on a server service is allowed",
      text: withServices("  web:", "    usage: server", "    split: false"),
      check: (l) =>
        assert.deepEqual(service(l, "web").slots, [{ id: "web", service: "web", kind: "main", profile: "server" }]),
    },
  ]);
});

describe("manifest: serve and ttl (the online CA's policy)", () => {
  /** online is a manifest whose given lines follow `services:` at line 3 (so they start at line 4). */
  const TTL_MSG = "must be a duration such as 90s, 15m, 1h or 7d";
  failCases([
    {
      name: "fail/ttl on a service apply issues names csr: true as the fix",
      text: withServices("  web:", "    usage: server", "    ttl: 2h"),
      want: [
        {
          path: "services.web.ttl",
          line: 6,
          message: "only csr: true services are issued online; this service's certificate is issued by apply",
          fix: "add csr: true",
        },
      ],
    },
    {
      name: "fail/ttl on a service with files says its certificate is its files",
      text: withServices(
        "  db:",
        "    usage: server",
        "    ttl: 2h",
        "    files: { cert: db.pem, key: db-key.pem, ca: ca.pem }",
      ),
      want: [
        { path: "services.db.ttl", line: 6, message: "this service's certificate is its files", fix: "remove ttl" },
      ],
    },
    {
      name: "fail/ttl with the validity's unit w is not a ttl",
      text: withServices("  web:", "    usage: server", "    csr: true", "    ttl: 1w"),
      want: [
        {
          path: "services.web.ttl",
          line: 7,
          message: `${TTL_MSG} (a positive whole number and one unit s, m, h, d); got "1w"`,
        },
      ],
    },
    {
      name: "fail/ttl as a number",
      text: withServices("  web:", "    usage: server", "    csr: true", "    ttl: 3600"),
      want: [{ path: "services.web.ttl", line: 7, message: `${TTL_MSG}; got 3600` }],
    },
    {
      name: "fail/ttl of zero minutes",
      text: withServices("  web:", "    usage: server", "    csr: true", "    ttl: 0m"),
      want: [{ path: "services.web.ttl", line: 7, message: `${TTL_MSG} (a positive whole number` }],
    },
    {
      name: "fail/ttl longer than serve.maxTtl is reported at the ttl",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "serve:",
        "  maxTtl: 12h",
        "services:",
        "  web:",
        "    usage: server",
        "    csr: true",
        "    ttl: 2d",
      ),
      want: [
        {
          path: "services.web.ttl",
          line: 9,
          message: "a ttl of 2d (service web) is longer than serve.maxTtl (12h)",
          fix: "shorten the ttl to at most 12h, or raise serve.maxTtl to at least 2d",
        },
      ],
    },
    {
      name: "fail/ttl longer than the default maxTtl (24h) is reported at the ttl",
      text: withServices("  web:", "    usage: server", "    csr: true", "    ttl: 25h"),
      want: [
        { path: "services.web.ttl", line: 7, message: "a ttl of 25h (service web) is longer than serve.maxTtl (1d)" },
      ],
    },
    {
      name: "fail/serve.maxTtl shorter than the default ttl (1h) is reported at maxTtl, naming the services",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "serve:",
        "  maxTtl: 30m",
        "services:",
        "  web: { usage: server, csr: true }",
        "  api: { usage: server, csr: true }",
        "  app: { usage: server }",
      ),
      want: [
        {
          path: "serve.maxTtl",
          line: 4,
          message: "the default ttl of 1h (service web, api) is longer than serve.maxTtl (30m)",
          fix: "shorten the ttl to at most 30m, or raise serve.maxTtl to at least 1h",
        },
      ],
    },
    {
      name: "fail/ttl not shorter than the intermediate's validity",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "ca:",
        "  intermediate:",
        "    validity: 12h",
        "defaults: { validity: 2h }",
        "services:",
        "  web:",
        "    usage: server",
        "    csr: true",
        "    ttl: 12h",
      ),
      want: [
        {
          path: "services.web.ttl",
          line: 11,
          message: "a ttl of 12h (service web) is not shorter than the intermediate's validity (12h)",
          fix: "shorten the ttl, or lengthen ca.intermediate.validity",
        },
      ],
    },
    {
      name: "fail/a ttl within serve.maxTtl but not shorter than a generated CA",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "ca: { validity: 2d }",
        "defaults: { validity: 1d }",
        "serve: { maxTtl: 7d }",
        "services:",
        "  web: { usage: server, csr: true, ttl: 2d }",
      ),
      want: [
        {
          path: "services.web.ttl",
          line: 7,
          message: "a ttl of 2d (service web) is not shorter than the CA's validity (2d)",
          fix: "lengthen ca.validity",
        },
      ],
    },
    {
      name: "fail/serve.admins names an unknown service",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "serve:",
        "  admins: [ops, web]",
        "services:",
        "  web: { usage: dual }",
      ),
      want: [
        {
          path: "serve.admins.0",
          line: 4,
          message: 'names unknown service "ops"; services are: web',
          fix: "use one of the service names",
        },
      ],
    },
    {
      name: "fail/serve.admins names a server, which cannot authenticate as a client",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "serve:",
        "  admins:",
        "    - web",
        "services:",
        "  web: { usage: server }",
      ),
      want: [
        {
          path: "serve.admins.0",
          line: 5,
          message: "service web has usage server, so its certificate cannot authenticate as a client",
          fix: "set services.web.usage to client or dual",
        },
      ],
    },
    {
      name: "fail/serve.admins names a service twice",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "serve:",
        "  admins: [ops, web, ops]",
        "services:",
        "  ops: { usage: client }",
        "  web: { usage: dual }",
      ),
      want: [
        {
          path: "serve.admins.2",
          line: 4,
          message: "names ops again (already serve.admins[0])",
          fix: "remove the repeated ops",
        },
      ],
    },
    {
      name: "fail/serve.admins that is not a list",
      text: yaml("version: 1", "cluster: demo", "serve: { admins: ops }", "services:", "  ops: { usage: client }"),
      want: [{ path: "serve.admins", line: 3, message: 'must be a list of service names; got "ops"' }],
    },
    {
      name: "fail/serve.admins with a name that breaks the name rule",
      text: yaml("version: 1", "cluster: demo", "serve: { admins: [Ops] }", "services:", "  ops: { usage: client }"),
      want: [{ path: "serve.admins.0", line: 3, message: NAME_MSG }],
    },
    {
      name: "fail/serve.maxTtl that is not a ttl",
      text: yaml("version: 1", "cluster: demo", "serve:", "  maxTtl: 1y", "services:", "  ops: { usage: client }"),
      want: [
        {
          path: "serve.maxTtl",
          line: 4,
          message: `${TTL_MSG} (a positive whole number and one unit s, m, h, d); got "1y"`,
        },
      ],
    },
    {
      name: "fail/unknown key in serve lists the allowed keys",
      text: yaml("version: 1", "cluster: demo", "serve:", "  maxttl: 1h", "services:", "  ops: { usage: client }"),
      want: [
        {
          path: "serve.maxttl",
          line: 4,
          message: 'unknown key "maxttl" in serve; allowed keys: maxTtl, admins',
          fix: "check the spelling",
        },
      ],
    },
    {
      name: "fail/serve written as a list",
      text: yaml("version: 1", "cluster: demo", "serve: [ops]", "services:", "  ops: { usage: client }"),
      want: [{ path: "serve", line: 3, message: "must be a mapping (serve); got a list" }],
    },
  ]);
  okCases([
    {
      name: "ok/defaults: maxTtl 24h, no admins; a csr service's ttl is 1h; others have none",
      text: withServices("  web: { usage: server, csr: true }", "  app: { usage: client }"),
      check: (l) => {
        assert.deepEqual(l.manifest.serve, { maxTtlMs: 24 * HOUR, admins: [] });
        assert.equal(service(l, "web").ttlMs, HOUR);
        assert.equal(service(l, "app").ttlMs, undefined);
      },
    },
    {
      name: "ok/ttl in seconds, minutes and days; maxTtl and admins resolved",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "serve:",
        "  maxTtl: 2d",
        "  admins: [ops]",
        "services:",
        "  a: { usage: server, csr: true, ttl: 90s }",
        "  b: { usage: server, csr: true, ttl: 15m }",
        "  c: { usage: server, csr: true, ttl: 2d }",
        "  ops: { usage: client }",
      ),
      check: (l) => {
        assert.deepEqual(l.manifest.serve, { maxTtlMs: 2 * DAY, admins: ["ops"] });
        assert.deepEqual(
          ["a", "b", "c"].map((n) => service(l, n).ttlMs),
          [90_000, 15 * 60_000, 2 * DAY],
        );
      },
    },
    {
      name: "ok/a ttl equal to serve.maxTtl and shorter than the intermediate",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "ca: { intermediate: { validity: 30d } }",
        "defaults: { validity: 7d }",
        "serve: { maxTtl: 6h }",
        "services:",
        "  web: { usage: dual, csr: true, ttl: 6h }",
      ),
      check: (l) => assert.equal(service(l, "web").ttlMs, 6 * HOUR),
    },
  ]);
});

describe("manifest: files (existing certificate files)", () => {
  /** withFiles: service dusk (line 4), usage dual (5), `files:` (6), then the given lines from line 7. */
  const withFiles = (...lines: string[]) => withServices("  dusk:", "    usage: dual", "    files:", ...lines);
  const FILES = ["      cert: certs/dusk.pem", "      key: certs/dusk-key.pem", "      ca: certs/root.pem"];
  const OWNER_MSG =
    "must be a user name (lowercase letters, digits, _ and -, starting with a letter or _, an optional final $, at most 32 characters) or a decimal uid";

  failCases([
    {
      name: "fail/cert missing is required, at the files mapping",
      text: withFiles("      key: k.pem", "      ca: r.pem"),
      want: [{ path: "services.dusk.files.cert", line: 7, message: "is required", fix: "add it" }],
    },
    {
      name: "fail/an empty files mapping: cert, key and ca are each required",
      text: withServices("  dusk:", "    usage: dual", "    files: {}"),
      want: [
        { path: "services.dusk.files.cert", line: 6, message: "is required", fix: "add it" },
        { path: "services.dusk.files.key", line: 6, message: "is required", fix: "add it" },
        { path: "services.dusk.files.ca", line: 6, message: "is required", fix: "add it" },
      ],
    },
    {
      name: "fail/an empty path and a number instead of a path",
      text: withFiles('      cert: ""', "      key: 5", "      ca: r.pem"),
      want: [
        { path: "services.dusk.files.cert", line: 7, message: "must not be empty" },
        { path: "services.dusk.files.key", line: 8, message: "must be a file path; got 5" },
      ],
    },
    {
      name: "fail/files given as one path is not a mapping",
      text: withServices("  dusk:", "    usage: dual", "    files: certs/dusk.pem"),
      want: [{ path: "services.dusk.files", line: 6, message: 'must be a mapping (files); got "certs/dusk.pem"' }],
    },
    {
      name: "fail/an unknown key in files lists the allowed keys",
      text: withFiles(...FILES, "      certificate: x.pem"),
      want: [
        {
          path: "services.dusk.files.certificate",
          line: 10,
          message: 'unknown key "certificate" in files; allowed keys: cert, key, ca, clientCert, clientKey, owner',
          fix: "check the spelling, or remove the key",
        },
      ],
    },
    {
      name: "fail/split: true without clientCert and clientKey: both are required",
      text: withServices("  dusk:", "    usage: dual", "    split: true", "    files:", ...FILES),
      want: [
        {
          path: "services.dusk.files.clientCert",
          line: 8,
          message:
            "is required when split is true: the client certificate of the split pair (cert is the server certificate)",
          fix: "add clientCert: the PEM file of dusk's client certificate, or remove split",
        },
        {
          path: "services.dusk.files.clientKey",
          line: 8,
          message: "is required when split is true: the client certificate's key of the split pair",
          fix: "add clientKey: the PEM file of dusk's client certificate's key, or remove split",
        },
      ],
    },
    {
      name: "fail/split: true with clientCert but no clientKey",
      text: withServices(
        "  dusk:",
        "    usage: dual",
        "    split: true",
        "    files:",
        ...FILES,
        "      clientCert: certs/dusk-client.pem",
      ),
      want: [{ path: "services.dusk.files.clientKey", line: 8, message: "is required when split is true" }],
    },
    {
      name: "fail/clientCert and clientKey without split are refused, each at its line",
      text: withFiles(...FILES, "      clientCert: cc.pem", "      clientKey: ck.pem"),
      want: [
        {
          path: "services.dusk.files.clientCert",
          line: 10,
          message:
            "names the client certificate of a split pair, but split is not true, so the service has one certificate (cert)",
          fix: "remove clientCert, or set split: true (usage dual)",
        },
        {
          path: "services.dusk.files.clientKey",
          line: 11,
          message: "names the client certificate's key of a split pair, but split is not true",
          fix: "remove clientKey, or set split: true (usage dual)",
        },
      ],
    },
    {
      name: "fail/clientKey with split: false is refused",
      text: withServices(
        "  dusk:",
        "    usage: dual",
        "    split: false",
        "    files:",
        ...FILES,
        "      clientKey: ck.pem",
      ),
      want: [
        { path: "services.dusk.files.clientKey", line: 11, message: "but split is not true", fix: "remove clientKey" },
      ],
    },
    {
      name: "fail/split on a server service with files: split is refused, and the client pair is still required",
      text: withServices("  dusk:", "    usage: server", "    split: true", "    files:", ...FILES),
      want: [
        {
          path: "services.dusk.split",
          line: 6,
          message: "split separates a dual service's server and client certificates",
        },
        { path: "services.dusk.files.clientCert", line: 8, message: "is required when split is true" },
        { path: "services.dusk.files.clientKey", line: 8, message: "is required when split is true" },
      ],
    },
    ...(
      [
        ["Root", 'got "Root"'],
        ["-1", "got -1"],
        ["1.5", "got 1.5"],
        ["true", "got true"],
        ["'1a'", 'got "1a"'],
        ["'-svc'", 'got "-svc"'],
        ["a".repeat(33), `got "${"a".repeat(33)}"`],
        ["~", "got null"],
      ] as const
    ).map(([owner, got]) => ({
      name: `fail/owner ${owner} is neither a user name nor a uid`,
      text: withFiles(...FILES, `      owner: ${owner}`),
      want: [{ path: "services.dusk.files.owner", line: 10, message: `${OWNER_MSG}; ${got}` }],
    })),
    ...(["4294967295", "'99999999999'"] as const).map((owner) => ({
      name: `fail/owner ${owner} is larger than any uid`,
      text: withFiles(...FILES, `      owner: ${owner}`),
      want: [{ path: "services.dusk.files.owner", line: 10, message: "must be a uid of at most 4294967294; got " }],
    })),
    {
      name: "fail/an external service is still held to its connections: a dialed address it does not list",
      text: withFiles(
        ...FILES,
        "  agent: { usage: client }",
        "connections:",
        "  - { from: agent, to: dusk, address: 192.168.2.22 }",
      ),
      want: [
        {
          path: "connections.0.address",
          line: 12,
          message: "agent dials dusk at 192.168.2.22, which is not among dusk's addresses (dusk)",
          fix: "add 192.168.2.22 to services.dusk.addresses",
        },
      ],
    },
    {
      name: "fail/an external client-only service cannot be dialed (its certificate must not serve)",
      text: withServices(
        "  dusk:",
        "    usage: client",
        "    files:",
        ...FILES,
        "  core: { usage: dual }",
        "connections:",
        "  - { from: core, to: dusk }",
      ),
      want: [
        {
          path: "connections.0.to",
          line: 12,
          message: "service dusk has usage client, so its certificate cannot serve TLS (no serverAuth)",
        },
      ],
    },
    {
      name: "fail/the validity rules still apply to managed services beside an external one",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "ca: { validity: 1y }",
        "services:",
        "  dusk:",
        "    usage: dual",
        "    validity: 2y",
        "    files: { cert: c.pem, key: k.pem, ca: r.pem }",
        "  core:",
        "    usage: dual",
        "    validity: 2y",
      ),
      want: [
        {
          path: "services.core.validity",
          line: 11,
          message: "a validity of 2y (service core) is longer than the CA's 1y",
        },
      ],
    },
  ]);

  okCases([
    {
      name: "ok/paths are resolved against the manifest's directory; owner and the client pair are absent",
      text: withFiles(...FILES),
      check: (l) => {
        const s = service(l, "dusk");
        assert.deepEqual(s.files, {
          cert: path.resolve("certs/dusk.pem"),
          key: path.resolve("certs/dusk-key.pem"),
          ca: path.resolve("certs/root.pem"),
          clientCert: undefined,
          clientKey: undefined,
          owner: undefined,
        });
        // The declaration still describes what the files must satisfy: profile, SANs, identity.
        assert.deepEqual(s.slots, [{ id: "dusk", service: "dusk", kind: "main", profile: "dual" }]);
        assert.deepEqual(s.dns, ["dusk"]);
      },
    },
    {
      name: "ok/split with clientCert and clientKey keeps both slots",
      text: withServices(
        "  dusk:",
        "    usage: dual",
        "    split: true",
        "    files:",
        ...FILES,
        "      clientCert: /etc/certs/dusk-client.pem",
        "      clientKey: /etc/certs/dusk-client-key.pem",
      ),
      check: (l) => {
        const s = service(l, "dusk");
        assert.equal(s.files?.clientCert, "/etc/certs/dusk-client.pem");
        assert.equal(s.files?.clientKey, "/etc/certs/dusk-client-key.pem");
        assert.deepEqual(
          s.slots.map((x) => [x.id, x.profile]),
          [
            ["dusk", "server"],
            ["dusk/client", "client"],
          ],
        );
      },
    },
    ...(
      [
        ["serviceradar", "serviceradar"],
        ["_svc-1$", "_svc-1$"],
        ["1000", "1000"],
        ["'1000'", "1000"],
        ["0", "0"],
        ["4294967294", "4294967294"],
        ["a".repeat(32), "a".repeat(32)],
      ] as const
    ).map(([owner, want]) => ({
      name: `ok/owner ${owner} resolves to ${JSON.stringify(want)}`,
      text: withFiles(...FILES, `      owner: ${owner}`),
      check: (l: LoadedManifest) => assert.equal(service(l, "dusk").files?.owner, want),
    })),
    {
      name: "ok/an external service's validity is not compared with the CA's, nor with renewBefore (its file's dates decide)",
      text: yaml(
        "version: 1",
        "cluster: demo",
        "ca: { validity: 1y }",
        "services:",
        "  dusk:",
        "    usage: dual",
        "    validity: 2y",
        "    renewBefore: 3y",
        "    files: { cert: c.pem, key: k.pem, ca: r.pem }",
      ),
      check: (l) => assert.equal(service(l, "dusk").validityMs, 2 * 365 * DAY),
    },
    {
      name: "ok/a connection to an external service at an address it lists",
      text: withServices(
        "  dusk:",
        "    usage: dual",
        "    addresses: [192.168.2.22]",
        "    files:",
        ...FILES,
        "  agent: { usage: client }",
        "connections:",
        "  - { from: agent, to: dusk }",
      ),
      check: (l) =>
        assert.deepEqual(
          l.manifest.connections.map((c) => [c.from, c.to, c.address.text]),
          [["agent", "dusk", "192.168.2.22"]],
        ),
    },
  ]);

  it("ok/files paths are resolved against the manifest's directory, like ca.import", () => {
    const text = withServices(
      "  dusk:",
      "    usage: dual",
      "    files: { cert: certs/dusk.pem, key: /etc/serviceradar/certs/dusk-key.pem, ca: ../root.pem }",
    );
    const { manifest } = parseManifest(text, "conf/mtlskit.yaml", "/srv/conf");
    assert.deepEqual(manifest.services[0]!.files, {
      cert: "/srv/conf/certs/dusk.pem",
      key: "/etc/serviceradar/certs/dusk-key.pem",
      ca: "/srv/root.pem",
      clientCert: undefined,
      clientKey: undefined,
      owner: undefined,
    });
  });
});

describe("manifest: connections", () => {
  /** withConnections: four services (lines 4-14), `connections:` at line 15, entries from line 16. */
  const withConnections = (...lines: string[]) =>
    withServices(
      "  core:",
      "    usage: dual",
      "    cn: core.demo",
      "    addresses: [192.168.2.23, core.demo.svc]",
      "  api:",
      "    usage: server",
      "    addresses: [api.demo, 10.0.0.5]",
      "  checker:",
      "    usage: client",
      "  bare:",
      "    usage: server",
      "connections:",
      ...lines,
    );
  const SERVICES = "services are: core, api, checker, bare";

  failCases([
    {
      name: "fail/unknown from lists the services",
      text: withConnections("  - from: chekcer", "    to: core"),
      want: [
        {
          path: "connections.0.from",
          line: 16,
          message: `names unknown service "chekcer"; ${SERVICES}`,
          fix: "use one of the service names",
        },
      ],
    },
    {
      name: "fail/unknown to lists the services",
      text: withConnections("  - from: checker", "    to: cor"),
      want: [
        {
          path: "connections.0.to",
          line: 17,
          message: `names unknown service "cor"; ${SERVICES}`,
          fix: "use one of the service names",
        },
      ],
    },
    {
      name: "fail/unknown from and to are both reported",
      text: withConnections("  - { from: x, to: y }"),
      want: [
        { path: "connections.0.from", line: 16, message: 'names unknown service "x"' },
        { path: "connections.0.to", line: 16, message: 'names unknown service "y"' },
      ],
    },
    {
      name: "fail/from is a server-only service",
      text: withConnections("  - { from: checker, to: core }", "  - from: api", "    to: core"),
      want: [
        {
          path: "connections.1.from",
          line: 17,
          message: "service api has usage server, so its certificate cannot authenticate as a client (no clientAuth)",
          fix: "set services.api.usage to dual",
        },
      ],
    },
    {
      name: "fail/to is a client-only service",
      text: withConnections("  - from: core", "    to: checker"),
      want: [
        {
          path: "connections.0.to",
          line: 17,
          message: "service checker has usage client, so its certificate cannot serve TLS (no serverAuth)",
          fix: "set services.checker.usage to dual",
        },
      ],
    },
    {
      name: "fail/address not among the target's addresses; the fix says to add it",
      text: withConnections("  - from: checker", "    to: core", "    address: 192.168.2.24"),
      want: [
        {
          path: "connections.0.address",
          line: 18,
          message:
            "checker dials core at 192.168.2.24, which is not among core's addresses (core.demo, core.demo.svc, 192.168.2.23); the handshake would fail with a name mismatch",
          fix: "add 192.168.2.24 to services.core.addresses",
        },
      ],
    },
    {
      name: "fail/a DNS address not listed is compared in lower case",
      text: withConnections("  - from: checker", "    to: api", "    address: Other.Demo"),
      want: [
        {
          path: "connections.0.address",
          line: 18,
          message: "checker dials api at other.demo, which is not among api's addresses",
          fix: "add other.demo to services.api.addresses",
        },
      ],
    },
    {
      name: "fail/invalid connection address",
      text: withConnections("  - from: checker", "    to: core", "    address: 10.0.0.256"),
      want: [{ path: "connections.0.address", line: 18, message: '"10.0.0.256" is not a valid IPv4 address' }],
    },
    {
      name: "fail/to missing",
      text: withConnections("  - from: checker"),
      want: [{ path: "connections.0.to", line: 16, message: "is required", fix: "add it" }],
    },
    {
      name: "fail/connections not a list",
      text: withConnections("  from: checker"),
      want: [{ path: "connections", line: 16, message: "must be a list of connections; got a mapping" }],
    },
  ]);

  okCases([
    {
      name: "ok/address omitted defaults to the target's first address, else its cn",
      text: withConnections(
        "  - { from: checker, to: core }",
        "  - { from: checker, to: api }",
        "  - { from: core, to: bare }",
      ),
      check: (l) => {
        const got = l.manifest.connections.map((c) => ({
          index: c.index,
          from: c.from,
          to: c.to,
          kind: c.address.kind,
          text: c.address.text,
        }));
        assert.deepEqual(got, [
          { index: 0, from: "checker", to: "core", kind: "ip", text: "192.168.2.23" },
          { index: 1, from: "checker", to: "api", kind: "dns", text: "api.demo" },
          { index: 2, from: "core", to: "bare", kind: "dns", text: "bare" },
        ]);
        const first = l.manifest.connections[0]!.address;
        assert.ok(first.kind === "ip" && first.bytes.equals(Buffer.from([192, 168, 2, 23])));
      },
    },
    {
      name: "ok/address equal to the target's cn, or to an address written in another case",
      text: withConnections(
        "  - { from: checker, to: core, address: core.demo }",
        "  - { from: core, to: api, address: API.DEMO }",
        "  - { from: checker, to: bare, address: bare }",
      ),
      check: (l) =>
        assert.deepEqual(
          l.manifest.connections.map((c) => c.address.text),
          ["core.demo", "api.demo", "bare"],
        ),
    },
    {
      name: "ok/an IPv6 address matches by bytes, whatever its written form",
      text: withServices(
        "  db: { usage: server, addresses: ['2001:db8::1'] }",
        "  app: { usage: client }",
        "connections:",
        "  - { from: app, to: db, address: '2001:DB8:0:0::1' }",
      ),
      check: (l) => assert.equal(l.manifest.connections[0]!.address.text, "2001:db8::1"),
    },
    {
      name: "ok/dual services connect both ways",
      text: withServices(
        "  a: { usage: dual }",
        "  b: { usage: dual }",
        "connections:",
        "  - { from: a, to: b }",
        "  - { from: b, to: a }",
      ),
      check: (l) => assert.equal(l.manifest.connections.length, 2),
    },
  ]);
});

describe("manifest: reporting", () => {
  it("fail/the issue's example: `mtlskit.yaml:14 services.web.usage: ...`", () => {
    const text = yaml(
      "# yaml-language-server: $schema=./schema/mtlskit.schema.json",
      "version: 1",
      "cluster: demo",
      "identity:",
      '  uri: "spiffe://demo.example/{role}/{name}"',
      "defaults:",
      "  validity: 90d",
      "services:",
      "  core:",
      "    usage: dual",
      "    addresses: [192.168.2.23]",
      "  web:",
      "    cn: web.demo",
      "    usage: sever",
    );
    const ps = problemsOf(text);
    assert.equal(ps.length, 1, listed(ps));
    const expected = 'mtlskit.yaml:14 services.web.usage: must be one of server, client, dual; got "sever"';
    assert.equal(formatProblem(ps[0]!), expected);
    assert.throws(
      () => parseManifest(text, FILE),
      (e: unknown) => {
        assert.ok(e instanceof InvalidInputError);
        assert.equal(e.exitCode, 2);
        assert.equal(e.message, `1 problem found:\n  ${expected}`);
        return true;
      },
    );
  });

  it("fail/four structural problems are all reported in one error", () => {
    const text = withServices(
      "  web:",
      "    usage: sever",
      "    adresses: [10.0.0.1]",
      "    validity: 90days",
      "  Api: { usage: server }",
    );
    expectProblems(
      text,
      [
        { path: "services.web.usage", line: 5, message: 'got "sever"' },
        { path: "services.web.adresses", line: 6, message: 'unknown key "adresses"' },
        { path: "services.web.validity", line: 7, message: 'got "90days"' },
        { path: "services.Api", line: 8, message: 'got "Api"' },
      ],
      { sorted: true },
    );
  });

  it("fail/four problems found after parsing (addresses and rules) are all reported in one error", () => {
    const text = withServices(
      "  web:",
      "    usage: server",
      "    split: true",
      "    addresses: [10.0.0.256]",
      "  api:",
      "    usage: server",
      "    validity: 30d",
      "    renewBefore: 30d",
      "connections:",
      "  - { from: ghost, to: api }",
    );
    expectProblems(
      text,
      [
        { path: "services.web.split", line: 6, message: "split separates" },
        { path: "services.web.addresses.0", line: 7, message: '"10.0.0.256" is not a valid IPv4 address' },
        { path: "services.api.renewBefore", line: 11, message: "renewBefore (30d) must be shorter" },
        { path: "connections.0.from", line: 13, message: 'names unknown service "ghost"' },
      ],
      { sorted: true },
    );
  });

  it("ok/lineOf locates fields for messages raised after loading", () => {
    const loaded = load(withServices("  web: { usage: server }", "  api:", "    usage: client", "    key: rsa-2048"));
    assert.equal(loaded.lineOf(["services", "api"]), 6);
    assert.equal(loaded.lineOf(["services", "api", "key"]), 7);
    assert.equal(loaded.lineOf(["services", "web", "usage"]), 4);
  });
});

describe("manifest: warnings", () => {
  it("ok/two services sharing a DNS name: a warning, and the manifest still loads", () => {
    const loaded = load(
      withServices(
        "  a: { usage: server, addresses: [10.0.0.1, shared.demo] }",
        "  b:",
        "    usage: server",
        "    addresses:",
        "      - Shared.Demo",
      ),
    );
    assert.deepEqual(
      loaded.warnings.map((w) => ({ path: w.path, line: w.line })),
      [{ path: "services.b.addresses", line: 8 }],
    );
    assert.ok(
      loaded.warnings[0]!.message.includes(
        "shared.demo is also a name of service a; a client dialing it cannot tell the two apart",
      ),
      loaded.warnings[0]!.message,
    );
    assert.deepEqual(service(loaded, "b").dns, ["b", "shared.demo"]);
  });

  it("ok/services sharing an IP address (co-located on one host, told apart by port) raise no warning", () => {
    const loaded = load(
      withServices(
        "  a: { usage: server, addresses: ['2001:db8::1', 10.0.0.1] }",
        "  b: { usage: server, addresses: ['2001:DB8:0:0:0:0:0:1', 10.0.0.1] }",
      ),
    );
    assert.deepEqual(loaded.warnings, []);
    assert.deepEqual(
      service(loaded, "b").ips.map((i) => i.text),
      ["2001:db8::1", "10.0.0.1"],
    );
  });

  it("ok/two services with the same cn: a warning (the cn is also a SAN)", () => {
    const loaded = load(withServices("  a: { usage: server, cn: x.demo }", "  b: { usage: server, cn: x.demo }"));
    assert.equal(loaded.warnings.length, 1, `warnings: ${JSON.stringify(loaded.warnings)}`);
    assert.ok(loaded.warnings[0]!.message.includes("x.demo is also a name of service a"), loaded.warnings[0]!.message);
  });

  it("ok/distinct addresses: no warning", () => {
    const loaded = load(
      withServices(
        "  a: { usage: server, addresses: [a.demo, 10.0.0.1] }",
        "  b: { usage: server, addresses: [b.demo, 10.0.0.2] }",
      ),
    );
    assert.deepEqual(loaded.warnings, []);
  });
});

describe("manifest: normalization", () => {
  it("ok/a minimal manifest gets every default", () => {
    const { manifest } = load(withServices("  web: { usage: server }"));
    assert.equal(manifest.file, FILE);
    assert.equal(manifest.cluster, "demo");
    assert.deepEqual(manifest.ca, {
      keyType: "ecdsa-p256",
      validityMs: 3650 * DAY,
      subject: { CN: "demo CA" },
      import: undefined,
      intermediate: undefined,
      crlNextUpdateMs: 7 * DAY,
    });
    assert.deepEqual(manifest.connections, []);
    assert.deepEqual(manifest.services, [
      {
        name: "web",
        usage: "server",
        role: "server",
        cn: "web",
        keyType: "ecdsa-p256",
        validityMs: 7_776_000_000,
        renewBeforeMs: 2_592_000_000,
        subject: { CN: "web" },
        dns: ["web"],
        ips: [],
        identity: undefined,
        split: false,
        clientSans: "all",
        slots: [{ id: "web", service: "web", kind: "main", profile: "server" }],
        files: undefined,
      },
    ]);
  });

  it("ok/the README manifest resolves field by field", () => {
    const text = yaml(
      "version: 1",
      "cluster: demo",
      "identity:",
      '  uri: "spiffe://demo.example/{role}/{name}"',
      "ca:",
      "  key: ecdsa-p384",
      "  validity: 5y",
      "  subject: { C: US, O: Demo, OU: Operations, CN: Demo CA }",
      "defaults:",
      "  key: rsa-2048",
      "  validity: 30d",
      "  renewBefore: 10d",
      "  subject: { O: Demo, OU: Operations }",
      "services:",
      "  core:",
      "    usage: dual",
      "    cn: core.demo",
      "    role: peer",
      "    addresses: [192.168.2.23, core.demo.svc, '2001:db8::17']",
      "    key: ed25519",
      "    subject: { OU: Core }",
      "  etcd-1:",
      "    usage: dual",
      "    split: true",
      "    validity: 2w",
      "    renewBefore: 2d",
      "  checker:",
      "    usage: client",
      "connections:",
      "  - { from: checker, to: core, address: 192.168.2.23 }",
      "  - { from: core, to: etcd-1 }",
    );
    const loaded = load(text);
    assert.deepEqual(loaded.warnings, []);
    const m = loaded.manifest;
    assert.deepEqual(m.ca, {
      keyType: "ecdsa-p384",
      validityMs: 5 * 365 * DAY,
      subject: { C: "US", O: "Demo", OU: "Operations", CN: "Demo CA" },
      import: undefined,
      intermediate: undefined,
      crlNextUpdateMs: 7 * DAY,
    });

    const core = service(loaded, "core");
    assert.equal(core.keyType, "ed25519");
    assert.equal(core.role, "peer");
    assert.equal(core.validityMs, 30 * DAY);
    assert.equal(core.renewBeforeMs, 10 * DAY);
    assert.deepEqual(core.subject, { O: "Demo", OU: "Core", CN: "core.demo" });
    assert.deepEqual(core.dns, ["core.demo", "core.demo.svc"]);
    assert.deepEqual(ipsOf(core), [
      ["ip", "192.168.2.23", [192, 168, 2, 23]],
      ["ip", "2001:db8::17", [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x17]],
    ]);
    assert.equal(core.identity, "spiffe://demo.example/peer/core");
    assert.deepEqual(core.slots, [{ id: "core", service: "core", kind: "main", profile: "dual" }]);

    const etcd = service(loaded, "etcd-1");
    assert.equal(etcd.keyType, "rsa-2048");
    assert.equal(etcd.validityMs, 14 * DAY);
    assert.equal(etcd.renewBeforeMs, 2 * DAY);
    assert.equal(etcd.identity, "spiffe://demo.example/dual/etcd-1");
    assert.deepEqual(
      etcd.slots.map((s) => [s.id, s.profile]),
      [
        ["etcd-1", "server"],
        ["etcd-1/client", "client"],
      ],
    );

    const checker = service(loaded, "checker");
    assert.equal(checker.role, "client");
    assert.equal(checker.identity, "spiffe://demo.example/client/checker");
    assert.deepEqual(checker.subject, { O: "Demo", OU: "Operations", CN: "checker" });

    assert.deepEqual(
      m.connections.map((c) => [c.from, c.to, c.address.kind, c.address.text]),
      [
        ["checker", "core", "ip", "192.168.2.23"],
        ["core", "etcd-1", "dns", "etcd-1"],
      ],
    );
  });

  it("ok/ca.import paths are resolved against the manifest's directory", () => {
    const text = yaml(
      "version: 1",
      "cluster: demo",
      "ca:",
      "  import: { cert: org/ca.pem, key: org/ca-key.pem, chain: ../root.pem }",
      "services:",
      "  web: { usage: server }",
    );
    const { manifest } = parseManifest(text, "conf/mtlskit.yaml", "/srv/conf");
    assert.deepEqual(manifest.ca.import, {
      cert: "/srv/conf/org/ca.pem",
      key: "/srv/conf/org/ca-key.pem",
      chain: "/srv/root.pem",
    });
  });
});

describe("manifest: loadManifest", () => {
  it("fail/a missing file is invalid input that suggests mtlskit init", () => {
    const file = path.join(tempDir(), "mtlskit.yaml");
    assert.throws(
      () => loadManifest(file),
      (e: unknown) => {
        assert.ok(e instanceof InvalidInputError, `got ${String(e)}`);
        assert.equal(e.exitCode, 2);
        assert.equal(e.problems.length, 1);
        const p = e.problems[0]!;
        assert.equal(p.file, file);
        assert.equal(p.path, "");
        assert.equal(p.message, "no such file");
        assert.ok(p.fix?.includes("mtlskit init"), p.fix);
        return true;
      },
    );
  });

  it("ok/reads a file; problems name the file as given and ca.import is relative to it", () => {
    const dir = tempDir();
    const file = writeManifest(
      dir,
      yaml(
        "version: 1",
        "cluster: demo",
        "ca:",
        "  import: { cert: ca.pem, key: ca-key.pem }",
        "services:",
        "  web: { usage: server }",
      ),
    );
    const { manifest } = loadManifest(file);
    assert.equal(manifest.file, file);
    assert.equal(manifest.ca.import?.cert, path.join(dir, "ca.pem"));

    const bad = writeManifest(dir, withServices("  web: { usage: sever }"), "bad.yaml");
    assert.throws(
      () => loadManifest(bad),
      (e: unknown) => e instanceof InvalidInputError && e.problems[0]?.file === bad && e.problems[0].line === 4,
    );
  });
});

describe("manifest: JSON Schema", () => {
  // biome-ignore lint/suspicious/noExplicitAny: the generated JSON Schema is walked field by field below
  const schema = manifestJsonSchema() as Record<string, any>;

  it("ok/equals the committed schema/mtlskit.schema.json", () => {
    const committed: unknown = JSON.parse(readFileSync(path.join(REPO, "schema", "mtlskit.schema.json"), "utf8"));
    assert.deepEqual(schema, committed, "schema/mtlskit.schema.json is stale: run `npm run build`");
  });

  it("ok/refuses unknown keys at the top and in services", () => {
    assert.equal(schema.type, "object");
    assert.equal(schema.additionalProperties, false);
    assert.deepEqual([...schema.required].sort(), ["cluster", "services", "version"]);
    const svc = schema.properties.services.additionalProperties;
    assert.equal(svc.type, "object");
    assert.equal(svc.additionalProperties, false);
    assert.deepEqual(svc.required, ["usage"]);
    assert.deepEqual(Object.keys(svc.properties), [
      "usage",
      "cn",
      "role",
      "addresses",
      "split",
      "key",
      "validity",
      "renewBefore",
      "subject",
      "files",
      "csr",
      "ttl",
      "acmeTrustBinding",
      "reload",
      "clientSans",
    ]);
    assert.equal(svc.properties.subject.additionalProperties, false);
    assert.equal(svc.properties.files.additionalProperties, false);
    assert.deepEqual(svc.properties.files.required, ["cert", "key", "ca"]);
    assert.deepEqual(Object.keys(svc.properties.files.properties), [
      "cert",
      "key",
      "ca",
      "clientCert",
      "clientKey",
      "owner",
    ]);
    assert.equal(schema.properties.connections.items.additionalProperties, false);
  });

  it("ok/usage is an enum; names and durations carry the validator's patterns", () => {
    const svc = schema.properties.services.additionalProperties;
    assert.deepEqual(svc.properties.usage.enum, ["server", "client", "dual"]);
    assert.deepEqual(svc.properties.key.enum, [
      "ecdsa-p256",
      "ecdsa-p384",
      "rsa-2048",
      "rsa-3072",
      "rsa-4096",
      "ed25519",
    ]);
    const name = new RegExp(schema.properties.cluster.pattern);
    for (const ok of ["demo", "etcd-1", "a".repeat(32)]) assert.ok(name.test(ok), ok);
    for (const bad of ["Demo", "de_mo", "1demo", "demo-", "de--mo", "a".repeat(33)]) assert.ok(!name.test(bad), bad);
    assert.equal(schema.properties.services.propertyNames.pattern, schema.properties.cluster.pattern);
    const duration = new RegExp(svc.properties.validity.pattern);
    for (const ok of ["12h", "90d", "2w", "10y"]) assert.ok(duration.test(ok), ok);
    for (const bad of ["90", "90days", "0d", "-1d", "1.5d"]) assert.ok(!duration.test(bad), bad);
    assert.deepEqual(schema.properties.version, { const: 1, description: "Manifest format version: 1." });
  });
});

/**
 * Issue 11's manifest items: names JavaScript treats specially, the year-9999 limit, alias bombs
 * and linear de-duplication, layoutVersion's bound, undialable IPs, the CA's plan row, merge keys.
 * Each test fails without its fix; the apply and check ones run the CLI in-process.
 */
describe("manifest: issue 11", () => {
  const runIn = (dir: string, text: string) => {
    const file = writeManifest(dir, text);
    const pki = path.join(dir, "pki");
    return { file, pki, cli: (cmd: string, ...rest: string[]) => runCli([cmd, "-f", file, "--pki", pki, ...rest]) };
  };

  describe("names JavaScript treats specially", () => {
    it("ok/services named constructor and prototype are kept, in order, with their identities", () => {
      const l = load(
        yaml(
          "version: 1",
          "cluster: demo",
          'identity: { uri: "spiffe://demo.test/{name}" }',
          "services:",
          "  constructor: { usage: client }",
          "  prototype: { usage: dual }",
          "  api: { usage: server }",
        ),
      );
      assert.deepEqual(
        l.manifest.services.map((s) => [s.name, s.identity]),
        [
          ["constructor", "spiffe://demo.test/constructor"],
          ["prototype", "spiffe://demo.test/prototype"],
          ["api", "spiffe://demo.test/api"],
        ],
      );
    });

    it("ok/host directories named after Object.prototype's members are kept, in an object without a prototype", () => {
      const hosts = [
        "constructor",
        "prototype",
        "hasOwnProperty",
        "toString",
        "valueOf",
        "isPrototypeOf",
        "__defineGetter__",
      ];
      const l = load(
        yaml(
          "version: 1",
          "cluster: demo",
          "services:",
          "  api: { usage: server }",
          "outputs:",
          "  - format: flat",
          "    dir: out",
          "    hosts:",
          ...hosts.map((h) => `      ${h}: [api]`),
        ),
      );
      const got = l.manifest.outputs![0]!.hosts!;
      assert.deepEqual(Object.keys(got), hosts);
      assert.equal(Object.getPrototypeOf(got), null);
      for (const h of hosts) assert.deepEqual(got[h], ["api"]);
    });

    failCases([
      {
        name: "fail/__proto__ is refused as a service name and as a host, at its line",
        text: yaml(
          "version: 1",
          "cluster: demo",
          "services:",
          "  __proto__: { usage: client }",
          "  api: { usage: server }",
          "outputs:",
          "  - format: flat",
          "    dir: out",
          "    hosts: { __proto__: [api] }",
        ),
        want: [
          {
            path: "services.__proto__",
            line: 4,
            message: 'is refused as a name: "__proto__"',
            fix: "choose another name",
          },
          {
            path: "outputs.0.hosts.__proto__",
            line: 9,
            message: 'is refused as a name: "__proto__"',
            fix: "choose another name",
          },
        ],
      },
      {
        name: "fail/constructor and prototype inside fixed mappings are unknown keys, not ignored",
        text: yaml(
          "version: 1",
          "cluster: demo",
          "ca: { prototype: 1 }",
          "services:",
          "  api: { usage: server, constructor: x }",
        ),
        want: [
          { path: "ca.prototype", line: 3, message: 'unknown key "prototype" in ca' },
          { path: "services.api.constructor", line: 5, message: 'unknown key "constructor" in a service' },
        ],
      },
    ]);

    it("ok/every user-named mapping goes through ownRecord: v.record appears once in schema.ts, inside it", () => {
      const source = readFileSync(path.join(REPO, "src/manifest/schema.ts"), "utf8");
      assert.equal(source.split("v.record(").length - 1, 1);
      assert.match(source, /function ownRecord[\s\S]*?const base = v\.record\(/);
    });

    it("ok/apply issues services named constructor and prototype; check and export see them", async () => {
      const dir = tempDir();
      const { pki, cli } = runIn(
        dir,
        yaml(
          "version: 1",
          "cluster: demo",
          "services:",
          "  constructor: { usage: client }",
          "  prototype: { usage: dual, addresses: [prototype.demo.test] }",
          "  api: { usage: server, addresses: [127.0.0.1] }",
          "connections:",
          "  - { from: constructor, to: api }",
          "  - { from: prototype, to: api }",
          "outputs:",
          "  - format: flat",
          "    dir: out",
          "    hosts: { constructor: [constructor], toString: [prototype], hasOwnProperty: [api] }",
        ),
      );
      const applied = await cli("apply", "--json");
      assert.equal(applied.code, 0, applied.err);
      assert.deepEqual(
        JSON.parse(applied.out).certificates.map((c: { id: string }) => c.id),
        ["constructor", "prototype", "api"],
      );
      for (const s of ["constructor", "prototype", "api"])
        assert.ok(existsSync(path.join(pki, "services", s, "cert.pem")), `${s}/cert.pem`);
      for (const f of ["constructor/constructor.pem", "toString/prototype.pem", "hasOwnProperty/api.pem"])
        assert.ok(existsSync(path.join(dir, "out", f)), f);
      const checked = await cli("check");
      assert.equal(checked.code, 0, checked.out + checked.err);
      assert.match(checked.out, /constructor -> api/);
      assert.match(checked.out, /3 certificates/);
      const exported = await cli(
        "export",
        "--format",
        "flat",
        "--out",
        path.join(dir, "by-flag"),
        "--host",
        "constructor=api",
        "--host",
        "valueOf=constructor",
      );
      assert.equal(exported.code, 0, exported.err);
      assert.ok(existsSync(path.join(dir, "by-flag", "constructor", "api.pem")));
      assert.ok(existsSync(path.join(dir, "by-flag", "valueOf", "constructor.pem")));
    });
  });

  describe("validity ends by 9999-12-31T23:59:59Z", () => {
    const NOW = new Date("2026-01-01T00:00:00Z");
    const LONGEST = Math.floor((Date.UTC(9999, 11, 31, 23, 59, 59) - NOW.getTime()) / (365 * DAY));
    const problemsAt = (text: string, now: Date) => {
      try {
        parseManifest(text, FILE, ".", now);
      } catch (e) {
        if (e instanceof InvalidInputError) return e.problems;
        throw e;
      }
      return [];
    };

    it("fail/ca.validity 8000y names the field, the year it would end and the longest that fits", () => {
      const ps = problemsAt(
        yaml("version: 1", "cluster: demo", "ca:", "  validity: 8000y", "services:", "  web: { usage: server }"),
        NOW,
      );
      assert.deepEqual(
        ps.map((p) => [p.path, p.line]),
        [["ca.validity", 4]],
        listed(ps),
      );
      assert.match(ps[0]!.message, /^8000y from now \(the CA\) ends in the year 10020, after 9999-12-31T23:59:59Z/);
      assert.ok(ps[0]!.message.includes(`the longest validity that fits is ${LONGEST}y`), ps[0]!.message);
      assert.ok(ps[0]!.fix?.includes(`at most ${LONGEST}y`));
    });

    it("fail/a leaf under an imported CA is bounded on its own (defaults.validity)", () => {
      const ps = problemsAt(
        yaml(
          "version: 1",
          "cluster: demo",
          "ca: { import: { cert: org.pem, key: org-key.pem } }",
          "defaults: { validity: 8000y }",
          "services:",
          "  web: { usage: server }",
        ),
        NOW,
      );
      assert.deepEqual(
        ps.map((p) => [p.path, p.line]),
        [["defaults.validity", 4]],
        listed(ps),
      );
      assert.match(ps[0]!.message, /\(service web\) ends in the year/);
    });

    it("ok/the longest validity that fits is accepted", () => {
      assert.deepEqual(
        problemsAt(
          yaml("version: 1", "cluster: demo", `ca: { validity: ${LONGEST}y }`, "services:", "  web: { usage: server }"),
          NOW,
        ),
        [],
      );
    });

    it("fail/apply with ca.validity 8000y exits 2 and writes nothing; a fixed manifest then applies", async () => {
      const dir = tempDir();
      const { pki, cli } = runIn(
        dir,
        yaml("version: 1", "cluster: demo", "ca: { validity: 8000y }", "services:", "  web: { usage: server }"),
      );
      const r = await cli("apply");
      assert.equal(r.code, 2, r.out + r.err);
      assert.match(r.err, /mtlskit\.yaml:3 ca\.validity: 8000y from now/);
      assert.doesNotMatch(r.err, /bug/);
      assert.ok(
        !existsSync(path.join(pki, "ca", "ca.pem")) && !existsSync(path.join(pki, "ca", "ca-key.pem")),
        "nothing written",
      );
      writeManifest(
        dir,
        yaml("version: 1", "cluster: demo", "ca: { validity: 100y }", "services:", "  web: { usage: server }"),
      );
      assert.equal((await cli("apply")).code, 0);
    });

    it("ok/a CA and a leaf ending at 9999-12-31T23:59:59Z are GeneralizedTime, read back, and verified by openssl", async () => {
      const dir = tempDir();
      const end = Date.UTC(9999, 11, 31, 23, 59, 59);
      const now = new Date(end - 7000 * 365 * DAY);
      const text = yaml(
        "version: 1",
        "cluster: demo",
        "ca: { validity: 7000y }",
        "services:",
        "  web: { usage: server, validity: 7000y, addresses: [127.0.0.1] }",
      );
      const file = writeManifest(dir, text);
      const pki = path.join(dir, "pki");
      const loaded = parseManifest(text, file, dir, now);
      assert.equal((await apply(loaded, pki, { now })).issued, 1);
      const caFile = path.join(pki, "ca", "ca.pem");
      const leafFile = path.join(pki, "services", "web", "cert.pem");
      for (const f of [caFile, leafFile]) {
        assert.match(opensslText(f), /Not After : Dec 31 23:59:59 9999 GMT/);
        assert.equal(opensslDates(f).notAfter, "9999-12-31 23:59:59Z");
      }
      const v = opensslVerify({
        caFile,
        certFile: leafFile,
        purpose: "sslserver",
        verifyIp: "127.0.0.1",
        attime: new Date("9999-06-01T00:00:00Z"),
      });
      assert.ok(v.ok, v.output);
      // Read back: a second apply keeps both.
      const again = await apply(parseManifest(text, file, dir, now), pki, { now });
      assert.equal(again.issued, 0);
      assert.equal(again.caCreated, false);
      // One second later the same manifest no longer fits.
      assert.throws(
        () => parseManifest(text, file, dir, new Date(now.getTime() + 1000)),
        /ca\.validity: 7000y from now/,
      );
    });

    it("fail/der time() refuses a year past 9999 instead of writing +010000", () => {
      assert.throws(() => time(new Date(Date.UTC(10000, 0, 1))), /outside 1950-9999/);
      assert.equal(time(new Date(Date.UTC(9999, 11, 31, 23, 59, 59))).toString("latin1", 2), "99991231235959Z");
    });
  });

  describe("aliases, de-duplication and repeated warnings", () => {
    const addressList = (n: number, at = 0) =>
      Array.from({ length: n }, (_, i) => `10.${((i + at) >> 16) & 255}.${((i + at) >> 8) & 255}.${(i + at) & 255}`);

    it("fail/the issue's alias bomb (5,000 addresses anchored, 999 aliases) is refused at an alias's line in under 10 s", async () => {
      const lines = [
        "version: 1",
        "cluster: demo",
        "services:",
        `  s0: { usage: server, addresses: &a [${addressList(5000).join(", ")}] }`,
      ];
      for (let i = 1; i < 1000; i++) lines.push(`  s${i}: { usage: server, addresses: *a }`);
      const text = yaml(...lines);
      const started = Date.now();
      const ps = problemsOf(text);
      assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
      assert.equal(ps.length, 1, listed(ps));
      assert.ok(ps[0]!.line! > 4 && ps[0]!.line! <= lines.length, `line ${ps[0]!.line}`);
      assert.match(
        ps[0]!.message,
        /^aliases and merge keys expand the manifest to more than [0-9,]+ values .*the alias \*a here/,
      );
      assert.match(lines[ps[0]!.line! - 1]!, /\*a/);
      const dir = tempDir();
      const { pki, cli } = runIn(dir, text);
      const r = await cli("apply");
      assert.equal(r.code, 2);
      assert.match(r.err, new RegExp(`mtlskit\\.yaml:${ps[0]!.line}: aliases and merge keys expand`));
      assert.ok(!existsSync(pki));
    });

    it("fail/a merge-key bomb (a 5,000-key mapping merged 999 times) is refused too", () => {
      const lines = [
        "version: 1",
        "cluster: demo",
        "x-big: &big",
        ...Array.from({ length: 5000 }, (_, i) => `  k${i}: ${i}`),
        "services:",
      ];
      for (let i = 0; i < 999; i++) lines.push(`  s${i}: { <<: *big }`);
      const started = Date.now();
      const ps = problemsOf(yaml(...lines));
      assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
      assert.equal(ps.length, 1, listed(ps));
      assert.match(ps[0]!.message, /^aliases and merge keys expand the manifest/);
    });

    it("ok/50,000 addresses (each written twice) in one service load in under 10 s, de-duplicated", () => {
      const list = addressList(50_000);
      const text = yaml(
        "version: 1",
        "cluster: demo",
        "services:",
        "  api:",
        "    usage: server",
        "    addresses:",
        ...[...list, ...list].map((a) => `      - ${a}`),
      );
      const started = Date.now();
      const l = load(text);
      assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
      assert.equal(service(l, "api").ips.length, 50_000);
      assert.equal(service(l, "api").ips[49_999]!.text, list[49_999]);
    });

    it("ok/apply and check a service with 50,000 addresses, each in under 10 s", async () => {
      const { cli } = runIn(
        tempDir(),
        yaml(
          "version: 1",
          "cluster: demo",
          "services:",
          "  api:",
          "    usage: server",
          "    addresses:",
          ...addressList(50_000).map((a) => `      - ${a}`),
        ),
      );
      for (const cmd of ["apply", "check"]) {
        const started = Date.now();
        const r = await cli(cmd);
        assert.equal(r.code, 0, r.out + r.err);
        assert.ok(Date.now() - started < 10_000, `${cmd} took ${Date.now() - started} ms`);
      }
    });

    it("ok/a profile merged into 2,000 services is well within the allowance", () => {
      const l = load(
        yaml(
          "version: 1",
          "cluster: demo",
          "x-profiles:",
          "  server: &server { usage: server, validity: 30d, key: ed25519 }",
          "services:",
          ...Array.from({ length: 2000 }, (_, i) => `  s${i}: { <<: *server, addresses: [s${i}.demo.test] }`),
        ),
      );
      assert.equal(l.manifest.services.length, 2000);
      assert.ok(l.manifest.services.every((s) => s.keyType === "ed25519" && s.validityMs === 30 * DAY));
    });

    it("ok/repeated warnings: the first 10 shown, the rest counted in one line", () => {
      const names = Array.from({ length: 30 }, (_, i) => `h${i}.demo`);
      const l = parseManifest(
        yaml(
          "version: 1",
          "cluster: demo",
          "services:",
          `  s0: { usage: server, addresses: &a [${names.join(", ")}] }`,
          ...Array.from({ length: 20 }, (_, i) => `  s${i + 1}: { usage: server, addresses: *a }`),
        ),
        FILE,
      );
      assert.equal(l.warnings.length, 11);
      assert.match(l.warnings[0]!.message, /^h0\.demo is also a name of service s0/);
      assert.equal(
        l.warnings[10]!.message,
        "and 590 more warnings like this (a DNS name of two services); the first 10 are shown",
      );
    });
  });

  describe("layoutVersion", () => {
    const lv = (v: string) =>
      yaml("version: 1", "cluster: demo", `layoutVersion: ${v}`, "services:", "  web: { usage: server }");
    failCases([
      {
        name: "fail/layoutVersion 1e300 is refused",
        text: lv("1e300"),
        want: [{ path: "layoutVersion", line: 3, message: "must be at most 1000000; got 1e+300" }],
      },
      {
        name: "fail/layoutVersion 1000001 is refused",
        text: lv("1000001"),
        want: [{ path: "layoutVersion", line: 3, message: "must be at most 1000000; got 1000001" }],
      },
    ]);
    it("ok/layoutVersion 1000000 is written and read back: a second apply keeps every certificate", async () => {
      const { cli } = runIn(tempDir(), lv("1000000"));
      assert.equal((await cli("apply")).code, 0);
      const again = await cli("apply", "--json");
      assert.equal(again.code, 0, again.err);
      assert.deepEqual(
        JSON.parse(again.out).certificates.map((c: { action: string }) => c.action),
        ["keep"],
      );
    });
  });

  describe("addresses no peer can dial", () => {
    const addr = (a: string) => withServices("  web:", "    usage: server", "    addresses:", `      - ${a}`);
    const at = "services.web.addresses.0";
    const fix = "write the address peers dial";
    failCases([
      {
        name: "fail/0.0.0.0 is the unspecified address",
        text: addr("0.0.0.0"),
        want: [{ path: at, line: 7, message: '"0.0.0.0" is the unspecified address', fix }],
      },
      {
        name: "fail/:: is the unspecified address",
        text: addr('"::"'),
        want: [{ path: at, line: 7, message: '"::" is the unspecified address', fix }],
      },
      {
        name: "fail/::ffff:0.0.0.0 is the unspecified address too",
        text: addr('"::ffff:0.0.0.0"'),
        want: [{ path: at, line: 7, message: "is the unspecified address", fix }],
      },
      {
        name: "fail/0.1.2.3 is in 0.0.0.0/8, a source address only",
        text: addr("0.1.2.3"),
        want: [{ path: at, line: 7, message: '"0.1.2.3" is in 0.0.0.0/8', fix }],
      },
      {
        name: "fail/224.0.0.1 is multicast",
        text: addr("224.0.0.1"),
        want: [{ path: at, line: 7, message: '"224.0.0.1" is a multicast address', fix }],
      },
      {
        name: "fail/239.255.255.255 is multicast",
        text: addr("239.255.255.255"),
        want: [{ path: at, line: 7, message: "is a multicast address", fix }],
      },
      {
        name: "fail/ff02::1 is multicast",
        text: addr('"ff02::1"'),
        want: [{ path: at, line: 7, message: '"ff02::1" is a multicast address', fix }],
      },
      {
        name: "fail/255.255.255.255 is the broadcast address",
        text: addr("255.255.255.255"),
        want: [{ path: at, line: 7, message: "is the broadcast address", fix }],
      },
      {
        name: "fail/a cn of 0.0.0.0",
        text: withServices("  web: { usage: server, cn: 0.0.0.0 }"),
        want: [
          {
            path: "services.web.cn",
            line: 4,
            message: 'must also be a valid SAN, but "0.0.0.0" is the unspecified address',
          },
        ],
      },
      {
        name: "fail/a connection address of 0.0.0.0",
        text: withServices(
          "  web: { usage: server }",
          "  cli: { usage: client }",
          "connections:",
          "  - { from: cli, to: web, address: 0.0.0.0 }",
        ),
        want: [{ path: "connections.0.address", line: 7, message: "is the unspecified address" }],
      },
    ]);
    okCases([
      {
        name: "ok/the last addresses before the refused ranges are kept",
        text: withServices(
          "  web: { usage: server, addresses: [1.0.0.0, 10.0.0.255, 223.255.255.255, 255.255.255.254, 'fe80::1'] }",
        ),
        check: (l) =>
          assert.deepEqual(
            service(l, "web").ips.map((i) => i.text),
            ["1.0.0.0", "10.0.0.255", "223.255.255.255", "255.255.255.254", "fe80::1"],
          ),
      },
    ]);
  });

  it("ok/a service named ca has its own row; the CA's row is CA", async () => {
    const { cli } = runIn(tempDir(), withServices("  ca: { usage: server }"));
    const r = await cli("plan");
    assert.equal(r.code, 0, r.err);
    const rows = r.out
      .split("\n")
      .filter((l) => /^ {2}\S/.test(l))
      .map((l) => l.trim().split(/\s+/).slice(0, 2).join(" "));
    assert.deepEqual(rows, ["CA create", "ca create"]);
  });

  describe("merge keys", () => {
    const PROFILES = [
      "version: 1",
      "cluster: demo",
      "x-profiles:",
      "  server: &server",
      "    usage: server",
      "    validity: 30d",
      "  edge: &edge { key: ed25519, validity: 7d }",
      "services:",
    ];
    okCases([
      {
        name: "ok/<<: *profile fills a service; its own keys win; in a list of sources the first wins",
        text: yaml(
          ...PROFILES,
          "  api:",
          "    <<: *server",
          "    validity: 20d",
          "  web:",
          "    <<: [*edge, *server]",
          "  db: { <<: *server }",
        ),
        check: (l) => {
          assert.deepEqual(
            l.manifest.services.map((s) => [s.name, s.usage, s.validityMs / DAY, s.keyType]),
            [
              ["api", "server", 20, "ecdsa-p256"],
              ["web", "server", 7, "ed25519"],
              ["db", "server", 30, "ecdsa-p256"],
            ],
          );
          assert.equal(l.lineOf(["services", "web", "key"]), 7, "a merged field is located where it is written");
          assert.equal(l.lineOf(["services", "api", "validity"]), 11);
        },
      },
      {
        name: "ok/a service can be the anchor itself (no x- key)",
        text: withServices(
          "  api: &base { usage: server, key: ed25519 }",
          "  web: { <<: *base, addresses: [web.demo.test] }",
        ),
        check: (l) => assert.deepEqual(service(l, "web").keyType, "ed25519"),
      },
    ]);
    failCases([
      {
        name: "fail/a mistake that came through a merge is reported at the anchored line",
        text: yaml(
          "version: 1",
          "cluster: demo",
          "x-profiles:",
          "  p: &p { usage: sever }",
          "services:",
          "  api: { <<: *p }",
        ),
        want: [{ path: "services.api.usage", line: 4, message: 'must be one of server, client, dual; got "sever"' }],
      },
      {
        name: "fail/x- keys are ignored only at the top level",
        text: withServices("  api: { usage: server, x-note: 1 }"),
        want: [{ path: "services.api.x-note", line: 4, message: 'unknown key "x-note" in a service' }],
      },
    ]);
  });
});

/**
 * workOf counts the array elements that the search and iteration builtins (includes, indexOf,
 * find, findIndex, some, every, filter, map, forEach, reduce, join, slice, spread and for-of)
 * were handed while `fn` ran: each call adds its array's length. Linear code does work in
 * proportion to the manifest; a search of every service per service grows with its square. A
 * count, not a time, so a loaded machine cannot make it fail by chance.
 */
function workOf(fn: () => void): number {
  const proto = Array.prototype as unknown as Record<PropertyKey, (...args: unknown[]) => unknown>;
  const names: PropertyKey[] = [
    "includes",
    "indexOf",
    "find",
    "findIndex",
    "some",
    "every",
    "filter",
    "map",
    "forEach",
    "reduce",
    "join",
    "slice",
    Symbol.iterator,
  ];
  const saved = names.map((n) => [n, proto[n]!] as const);
  let work = 0;
  for (const [n, original] of saved) {
    proto[n] = function (this: unknown[], ...args: unknown[]) {
      work += this.length;
      return original.apply(this, args);
    };
  }
  try {
    fn();
  } catch (e) {
    if (!(e instanceof InvalidInputError)) throw e;
  } finally {
    for (const [n, original] of saved) proto[n] = original;
  }
  return work;
}

/** growth is how much more work `fn(4n)` does than `fn(n)`: about 4 when linear, 16 when quadratic. */
const growth = (n: number, fn: (n: number) => () => void): number => workOf(fn(4 * n)) / workOf(fn(n));

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe("manifest: validation work grows linearly with the services (issue 12)", () => {
  const N = 250;
  const LINEAR = 6; // 4 for linear work, with room for n log n; a quadratic step gives about 16

  it("ok/a valid manifest with connections and outputs that list every service", () => {
    const text = (n: number) =>
      yaml(
        "version: 1",
        "cluster: demo",
        'identity: { uri: "spiffe://demo.local/{name}" }',
        "services:",
        ...range(n).map((i) => `  s${i}: { usage: dual, addresses: [10.1.${i >> 8}.${i & 255}, s${i}.demo.internal] }`),
        "connections:",
        ...range(n).map((i) => `  - { from: s${i}, to: s${(i + 1) % n} }`),
        "outputs:",
        `  - { format: flat, dir: out/flat, services: [${range(n).map((i) => `s${i}`)}] }`,
        `  - { format: kubernetes, dir: out/k8s, services: [${range(n).map((i) => `s${i}`)}] }`,
        `  - { format: flat, dir: out/hosts, hosts: { ${range(n / 2).map((h) => `h${h}: [s${2 * h}, s${2 * h + 1}]`)} } }`,
        `  - { format: env, dir: out/env, certDir: /etc/certs, services: [${range(n).map((i) => `s${i}`)}] }`,
      );
    const g = growth(N, (n) => () => void parseManifest(text(n), FILE));
    assert.doesNotThrow(() => parseManifest(text(N), FILE));
    assert.ok(g < LINEAR, `4x the services took ${g.toFixed(1)}x the work`);
  });

  it("fail/a problem per service (bad renewBefore, unknown output services, bad addresses): every one located, linearly", () => {
    const text = (n: number) =>
      withServices(
        ...range(n).map((i) => `  s${i}: { usage: dual, validity: 30d, renewBefore: 40d, addresses: [10.0.0.256] }`),
        "outputs:",
        `  - { format: flat, dir: out, services: [${range(n).map((i) => `x${i}`)}] }`,
      );
    const problems = (() => {
      try {
        parseManifest(text(N), FILE);
      } catch (e) {
        return (e as InvalidInputError).problems;
      }
      return [];
    })();
    assert.equal(problems.filter((p) => p.message.includes("names unknown service")).length, N);
    assert.equal(problems.filter((p) => p.message.includes("is not a valid IPv4 address")).length, N);
    assert.ok(problems.every((p) => p.line !== undefined));
    assert.match(problems.find((p) => p.path === "outputs.0.services.0")!.message, /and \d+ more \(under services:\)$/);
    const g = growth(N, (n) => () => void parseManifest(text(n), FILE));
    assert.ok(g < LINEAR, `4x the services took ${g.toFixed(1)}x the work`);
  });

  it("ok/the trust bundles a plan rewrites for services whose certificates are all kept (apply and plan print them)", () => {
    const planOf = (n: number) =>
      planApply(parseManifest(withServices(...range(n).map((i) => `  s${i}: { usage: server }`)), FILE), {
        dir: "/nonexistent",
        exists: false,
        ca: { status: "missing" },
        leaves: new Map(),
        bundles: new Map(),
      });
    const small = planOf(N);
    const large = planOf(4 * N);
    assert.deepEqual(staleBundles(small), []);
    const kept = { ...small, certs: small.certs.map((c) => (c.id === "s1" ? { ...c, action: "keep" as const } : c)) };
    assert.deepEqual(staleBundles(kept), ["s1"]);
    const g = workOf(() => staleBundles(large)) / workOf(() => staleBundles(small));
    assert.ok(g < LINEAR, `4x the services took ${g.toFixed(1)}x the work`);
  });

  it("fail/--reissue naming every service, and as many unknown ones", () => {
    const loadedOf = (n: number) =>
      parseManifest(withServices(...range(n).map((i) => `  s${i}: { usage: server }`)), FILE);
    const small = loadedOf(N);
    const large = loadedOf(4 * N);
    const reissue = (l: LoadedManifest, n: number) => () =>
      checkReissueNames(l, { reissue: [...range(n).map((i) => `s${i}`), ...range(n).map((i) => `x${i}`)] });
    assert.throws(reissue(small, N), (e: InvalidInputError) => e.problems.length === N);
    const g = workOf(reissue(large, 4 * N)) / workOf(reissue(small, N));
    assert.ok(g < LINEAR, `4x the services took ${g.toFixed(1)}x the work`);
  });
});

describe("manifest: the schema's fast path for plain services (issue 12)", () => {
  // fastService must output exactly what valibot does for what it accepts, and accept nothing
  // valibot refuses (so every message stays valibot's).
  const cases: [string, unknown][] = [
    ["ok/usage alone", { usage: "dual" }],
    [
      "ok/every plain field",
      {
        usage: "server",
        cn: "web.example",
        role: "frontend",
        addresses: ["10.0.0.1", "web.internal"],
        split: false,
        key: "ecdsa-p384",
        validity: "30d",
        renewBefore: "10d",
        csr: true,
        ttl: "15m",
        clientSans: "all",
      },
    ],
    ["ok/empty addresses", { usage: "client", addresses: [] }],
    ["fast-path-declines/a numeric address (valibot turns it into a string)", { usage: "dual", addresses: [1234] }],
    ["fast-path-declines/a subject", { usage: "dual", subject: { O: "acme" } }],
    ["fast-path-declines/a reload hook", { usage: "dual", reload: "systemctl reload web" }],
    ["fail/no usage", { cn: "web" }],
    ["fail/unknown usage", { usage: "sever" }],
    ["fail/unknown key", { usage: "dual", adresses: ["x"] }],
    ["fail/cn too long", { usage: "dual", cn: "x".repeat(65) }],
    ["fail/cn null", { usage: "dual", cn: null }],
    ["fail/bad role", { usage: "dual", role: "Front" }],
    ["fail/addresses not a list", { usage: "dual", addresses: "10.0.0.1" }],
    ["fail/an address null", { usage: "dual", addresses: [null] }],
    ["fail/split as text", { usage: "dual", split: "yes" }],
    ["fail/unknown key type", { usage: "dual", key: "rsa-1024" }],
    ["fail/bad validity", { usage: "dual", validity: "90 days" }],
    ["fail/bad renewBefore", { usage: "dual", renewBefore: "0d" }],
    ["fail/bad ttl", { usage: "dual", ttl: "1y" }],
    ["fail/bad clientSans", { usage: "dual", clientSans: "none" }],
    ["fail/a list, not a mapping", [{ usage: "dual" }]],
    ["fail/null", null],
  ];
  for (const [name, input] of cases)
    it(name, () => {
      const judged = serviceSchemaRun(input);
      const fast = fastService(input);
      if (name.startsWith("ok/")) {
        assert.ok(judged.success, "valibot accepts it");
        assert.deepEqual(fast, judged.output);
        assert.deepEqual(Object.keys(fast!), Object.keys(judged.output as object), "the same keys in the same order");
      } else {
        assert.equal(fast, undefined, "the fast path leaves it to valibot");
        if (name.startsWith("fail/")) assert.equal(judged.success, false);
        else assert.ok(judged.success);
      }
    });

  it("ok/parseManifest gives the same resolved services through the fast path and through valibot", () => {
    const text = withServices(
      "  a: { usage: dual, addresses: [10.0.0.1, a.internal], validity: 30d }",
      "  b: { usage: dual, addresses: [10.0.0.2, b.internal], subject: { O: acme } }",
    );
    const [a, b] = parseManifest(text, FILE).manifest.services;
    assert.deepEqual(a!.dns, ["a", "a.internal"]);
    assert.deepEqual(b!.dns, ["b", "b.internal"]);
    assert.equal(a!.validityMs, 30 * 86_400_000);
    assert.equal(b!.subject.O, "acme");
  });
});

describe("manifest: classifyAddress's shortcut for plain IPv4 addresses and DNS names (issue 12)", () => {
  const table = [
    "10.0.0.1",
    "1.0.0.0",
    "223.255.255.255",
    "224.0.0.1",
    "239.1.2.3",
    "255.255.255.255",
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.256",
    "10.0.0.01",
    "010.0.0.1",
    "10.0.0",
    "10.0.0.1.",
    "10..0.1",
    ".10.0.0.1",
    "1.2.3.4.5",
    "127.0.0.1",
    " 10.0.0.1",
    "10.0.0.1 ",
    "web",
    "web.internal",
    "Web.Internal",
    "web.internal.",
    "*.internal",
    "web_1.internal",
    "-web.internal",
    "web-.internal",
    "a.1",
    "1.a",
    "123",
    "web.123",
    `${"a".repeat(63)}.internal`,
    `${"a".repeat(64)}.internal`,
    `${"a.".repeat(126)}a`,
    `${"a.".repeat(127)}a`,
    "::1",
    "[::1]",
    "fe80::1%eth0",
    "",
    "  ",
    "xn--bcher-kva.example",
  ];
  it("ok/the same answer as the full classification, for a table and 20,000 generated addresses", () => {
    const generated: string[] = [];
    const chars = "0123456789.a-Z: ";
    let seed = 12;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 20_000; i++) {
      const n = 1 + Math.floor(random() * 16);
      let s = "";
      for (let j = 0; j < n; j++) s += chars[Math.floor(random() * chars.length)];
      generated.push(s);
      generated.push([0, 1, 2, 3].map(() => Math.floor(random() * 300)).join("."));
    }
    for (const a of [...table, ...generated]) assert.deepEqual(classifyAddress(a), classifyAddressFully(a), a);
  });
});

describe("manifest: the YAML shortcut for a services: block of one-line services (issue 12)", () => {
  const header = [
    "version: 1",
    "cluster: bench",
    'identity: { uri: "spiffe://bench.local/{role}/{name}" }',
    "ca: { key: ecdsa-p256 }",
  ];
  const many = (line: (i: number) => string, n = 200) => range(n).map(line);
  const plain = (i: number) => `  s${i}: { usage: dual, addresses: [10.0.${i >> 8}.${i & 255}, s${i}.bench.internal] }`;
  const doc = (...lines: string[]) => `${lines.join("\n")}\n`;
  const taken: [string, string][] = [
    ["ok/the bench's shape", doc(...header, "services:", ...many(plain))],
    ["ok/services first, then more keys", doc("services:", ...many(plain), ...header)],
    [
      "ok/every plain field, booleans, an empty list, an empty mapping",
      doc(
        ...header,
        "services:",
        ...many((i) => `  s${i}: { usage: server, cn: c${i}.x, role: r-1, split: false, csr: true, addresses: [] }`),
        "  last: { }",
        "defaults: { validity: 30d }",
      ),
    ],
    [
      "ok/spaces inside a list",
      doc(...header, "services:", ...many((i) => `  s${i}: {usage: dual, addresses: [ a${i} ,b.c ]}`)),
    ],
  ];
  const declined: [string, string][] = [
    ["a comment on a line", doc(...header, "services:", ...many(plain), "  z: { usage: dual } # web")],
    ["an anchor and an alias", doc(...header, "services:", "  a: &x { usage: dual }", ...many(plain), "  b: *x")],
    ["a quoted value", doc(...header, "services:", ...many(plain), '  z: { usage: "dual" }')],
    ["a number", doc(...header, "services:", ...many(plain), "  z: { usage: dual, addresses: [1234] }")],
    ["a float-like address", doc(...header, "services:", ...many(plain), "  z: { usage: dual, addresses: [10.5] }")],
    ["null", doc(...header, "services:", ...many(plain), "  z: { usage: null }")],
    ["a duplicate service", doc(...header, "services:", ...many(plain), plain(3))],
    ["a duplicate key", doc(...header, "services:", ...many(plain), "  z: { usage: dual, usage: server }")],
    ["a service named constructor", doc(...header, "services:", ...many(plain), "  constructor: { usage: dual }")],
    ["a block service", doc(...header, "services:", ...many(plain), "  z:", "    usage: dual")],
    ["CRLF", doc(...header, "services:", ...many(plain)).replaceAll("\n", "\r\n")],
    ["two services: keys", doc(...header, "services:", ...many(plain), "services:", "  z: { usage: dual }")],
    ["a syntax error elsewhere", doc(...header, "defaults: { key: [ }", "services:", ...many(plain))],
    ["an upper-case value", doc(...header, "services:", ...many(plain), "  z: { usage: True }")],
    ["a trailing comma", doc(...header, "services:", ...many(plain), "  z: { usage: dual, addresses: [a, ] }")],
    ["a list of services", doc(...header, "services:", "- a", "- b", ...many(() => "# filler"))],
  ];
  for (const [name, text] of taken)
    it(name, () => {
      const fast = loadPlainServices(text);
      assert.notEqual(fast, undefined, "the shortcut reads it");
      assert.deepEqual(fast, loadFully(text));
      assert.deepEqual(Object.keys(fast as object), Object.keys(loadFully(text) as object), "keys in order");
    });
  for (const [name, text] of declined)
    it(`ok/declined, js-yaml reads it: ${name}`, () => {
      assert.equal(loadPlainServices(text), undefined);
    });
  it("fail/a syntax error beside a plain services: block is js-yaml's, at the whole document's line", () => {
    const text = doc(...header, "services:", ...many(plain), "defaults: { key: [ }");
    assert.throws(
      () => parseManifest(text, FILE),
      (e: InvalidInputError) => e.problems.length === 1 && e.problems[0]!.line === header.length + 202,
    );
  });
  it("ok/random one-line services read as js-yaml reads them, or declined", () => {
    const words = [
      "dual",
      "server",
      "true",
      "false",
      "null",
      "10.0.0.1",
      "1.2",
      "a.b",
      "A",
      "x-y",
      "0x1f",
      "1e3",
      ".inf",
      "~",
      "",
    ];
    let seed = 7;
    const pick = <T>(xs: T[]) => xs[(seed = (seed * 1103515245 + 12345) % 2 ** 31) % xs.length]!;
    let read = 0;
    for (let t = 0; t < 300; t++) {
      const lines = many(plain, 70);
      lines.splice(
        pick(range(70)),
        0,
        `  r${t}x: { ${pick(["usage", "cn", "key"])}: ${pick(words)}, addresses: [${pick(words)}, ${pick(words)}] }`,
      );
      const text = doc(...header, "services:", ...lines);
      const fast = loadPlainServices(text);
      let full: unknown;
      try {
        full = loadFully(text);
      } catch {
        full = "error";
      }
      if (fast === undefined) continue;
      read++;
      assert.deepEqual(
        fast,
        full,
        text
          .split("\n")
          .filter((l) => l.includes(`r${t}x`))
          .join("\n"),
      );
    }
    assert.ok(read > 10, `the shortcut read ${read} of 300`);
  });
});
