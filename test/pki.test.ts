/**
 * The certificates mtlskit issues, built in memory with src/pki and judged by the openssl CLI
 * (test/helpers/openssl.ts), never by mtlskit's own decoder, except where that decoder is itself
 * the subject (readCertFields, decodeCertificate) and is compared against openssl.
 *
 * Keys are generated once per key type and role (RSA-4096 costs about a second) and reused.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { DecodeError } from "../src/errors.ts";
import type { Manifest, Service } from "../src/manifest/index.ts";
import { readCertFields, verifySignedBy } from "../src/pki/cert.ts";
import { oid, readTlv, time, tlv, uint } from "../src/pki/der.ts";
import {
  encodeKeyUsage,
  encodeTbs,
  keyIdOf,
  newSerial,
  signTbs,
  type CertSpec,
  type Issuer,
} from "../src/pki/issue.ts";
import { generateKey, KEY_TYPE_NAMES, KEY_TYPES, keyTypeOf, type KeyPair, type KeyTypeName } from "../src/pki/keys.ts";
import { encodeName, type Subject } from "../src/pki/name.ts";
import { encodePem, encodePemBytes, keyEncryption, parsePem } from "../src/pki/pem.ts";
import { USAGES, type Usage } from "../src/pki/profiles.ts";
import { decodeCertificate } from "../src/pki/x509.ts";
import { BACKDATE_MS, caSpec, leafSpec } from "../src/plan/plan.ts";
import { REPO, tempDir } from "./helpers/cli.ts";
import {
  extensionsOf,
  fieldOf,
  fieldsOf,
  opensslAsn1parse,
  opensslDates,
  opensslGenDer,
  opensslKeyCheck,
  opensslPubkeyOfCert,
  opensslPubkeyOfKey,
  opensslSelfSignedRoot,
  opensslSerial,
  opensslText,
  opensslVerify,
  opensslX509Info,
  type Purpose,
  type X509Info,
} from "./helpers/openssl.ts";

// ---------------------------------------------------------------------------------------------
// Fixtures: a tiny test CA builder, leaves issued the way apply issues them, files for openssl.
// ---------------------------------------------------------------------------------------------

const DAY = 86_400_000;
/** NOW is the issuance time, whole seconds like planApply's. */
const NOW = new Date(Math.floor(Date.now() / 1000) * 1000);
const DIR = tempDir("mtlskit-pki-");
const write = (name: string, content: string | Buffer): string => {
  const file = path.join(DIR, name);
  writeFileSync(file, content);
  return file;
};

const keyCache = new Map<string, KeyPair>();
/** keyOf returns the one key of `type` for a role: CAs and leaves never share a key. */
function keyOf(role: "ca" | "leaf", type: KeyTypeName): KeyPair {
  const id = `${role}:${type}`;
  let k = keyCache.get(id);
  if (!k) {
    k = generateKey(type);
    keyCache.set(id, k);
  }
  return k;
}
const privateKeyOf = (k: KeyPair): KeyObject => createPrivateKey({ key: k.pkcs8, format: "der", type: "pkcs8" });
const keyFiles = new Map<KeyPair, string>();
/** keyFileOf writes a key as PKCS#8 PEM, the way apply writes key.pem, once. */
function keyFileOf(k: KeyPair, name: string): string {
  let f = keyFiles.get(k);
  if (!f) {
    f = write(`${name}-key.pem`, encodePem("PRIVATE KEY", k.pkcs8));
    keyFiles.set(k, f);
  }
  return f;
}

const manifestFor = (keyType: KeyTypeName, subject: Subject): Manifest => ({
  file: "test.yaml",
  cluster: "test",
  identityTemplate: undefined,
  ca: { keyType, validityMs: 3650 * DAY, subject, import: undefined, intermediate: undefined },
  services: [],
  connections: [],
});

interface TestCa {
  name: string;
  keyType: KeyTypeName;
  key: KeyPair;
  /** issuer is what signs this CA's leaves. */
  issuer: Issuer;
  spec: CertSpec;
  serial: Buffer;
  tbs: Buffer;
  der: Buffer;
  pem: string;
  /** file holds `pem`. */
  file: string;
}

/**
 * newTestCa builds a CA certificate the way apply's createCa does (caSpec, profile "ca"),
 * self-signed unless `parent` signs it.
 */
function newTestCa(
  keyType: KeyTypeName,
  o: { name?: string; key?: KeyPair; subject?: Subject; notBefore?: Date; notAfter?: Date; parent?: Issuer } = {},
): TestCa {
  const name = o.name ?? `ca-${keyType}`;
  const key = o.key ?? keyOf("ca", keyType);
  const subject = o.subject ?? { O: "mtlskit test", CN: `Test CA ${keyType}` };
  const base = caSpec(manifestFor(keyType, subject), NOW);
  const spec: CertSpec = { ...base, notBefore: o.notBefore ?? base.notBefore, notAfter: o.notAfter ?? base.notAfter };
  const issuer: Issuer = {
    subject: encodeName(subject),
    keyId: keyIdOf(key.spki),
    keyType,
    privateKey: privateKeyOf(key),
  };
  const signer = o.parent ?? issuer;
  const serial = newSerial();
  const tbs = encodeTbs(spec, signer, key.spki, serial);
  const der = signTbs(tbs, signer);
  const pem = encodePem("CERTIFICATE", der);
  return { name, keyType, key, issuer, spec, serial, tbs, der, pem, file: write(`${name}.pem`, pem) };
}

const LEAF_SUBJECT: Subject = { C: "US", O: "Demo", OU: "Platform", CN: "api.demo.internal" };
const IPV4 = Buffer.from([10, 0, 0, 7]);
const IPV6 = Buffer.from("20010db8000000000000000000000001", "hex"); // 2001:db8::1
const IDENTITY = "spiffe://demo.internal/ns/prod/api";
/** EXPECTED_SANS is the SAN extension as openssl prints it for every leaf below, in order. */
const EXPECTED_SANS = `DNS:api.demo.internal, DNS:api, IP Address:10.0.0.7, IP Address:2001:DB8:0:0:0:0:0:1, URI:${IDENTITY}`;

/** serviceFor is a resolved manifest service, as the manifest layer would hand it to planning. */
const serviceFor = (keyType: KeyTypeName, usage: Usage): Service => ({
  name: "api",
  usage,
  role: "api",
  cn: "api.demo.internal",
  keyType,
  validityMs: 90 * DAY,
  renewBeforeMs: 30 * DAY,
  subject: LEAF_SUBJECT,
  dns: ["api.demo.internal", "api"],
  ips: [
    { kind: "ip", text: "10.0.0.7", bytes: IPV4 },
    { kind: "ip", text: "2001:db8::1", bytes: IPV6 },
  ],
  identity: IDENTITY,
  split: false,
  slots: [{ id: "api", service: "api", kind: "main", profile: usage }],
  files: undefined,
});

interface TestLeaf {
  ca: TestCa;
  keyType: KeyTypeName;
  profile: Usage;
  key: KeyPair;
  keyFile: string;
  spec: CertSpec;
  serial: Buffer;
  tbs: Buffer;
  der: Buffer;
  file: string;
}

/** issueLeaf issues a leaf the way apply's runJobs does (leafSpec, encodeTbs, signTbs). */
function issueLeaf(
  ca: TestCa,
  keyType: KeyTypeName,
  profile: Usage,
  o: { name?: string; notBefore?: Date; notAfter?: Date } = {},
): TestLeaf {
  const svc = serviceFor(keyType, profile);
  const base = leafSpec(svc, svc.slots[0]!, NOW);
  const spec: CertSpec = { ...base, notBefore: o.notBefore ?? base.notBefore, notAfter: o.notAfter ?? base.notAfter };
  const key = keyOf("leaf", keyType);
  const serial = newSerial();
  const tbs = encodeTbs(spec, ca.issuer, key.spki, serial);
  const der = signTbs(tbs, ca.issuer);
  const name = o.name ?? `leaf-${ca.name}-${keyType}-${profile}`;
  return {
    ca,
    keyType,
    profile,
    key,
    keyFile: keyFileOf(key, `leaf-${keyType}`),
    spec,
    serial,
    tbs,
    der,
    file: write(`${name}.pem`, encodePem("CERTIFICATE", der)),
  };
}

/** The full matrix: one CA per key type, and under each a leaf of every key type and profile. */
interface Matrix {
  cas: Map<KeyTypeName, TestCa>;
  leaves: Map<string, TestLeaf>;
}
let matrixCache: Matrix | undefined;
function matrix(): Matrix {
  if (matrixCache) return matrixCache;
  const cas = new Map<KeyTypeName, TestCa>();
  const leaves = new Map<string, TestLeaf>();
  for (const caType of KEY_TYPE_NAMES) {
    const ca = newTestCa(caType);
    cas.set(caType, ca);
    for (const leafType of KEY_TYPE_NAMES)
      for (const profile of USAGES) leaves.set(`${caType}/${leafType}/${profile}`, issueLeaf(ca, leafType, profile));
  }
  matrixCache = { cas, leaves };
  return matrixCache;
}
const leafOf = (caType: KeyTypeName, leafType: KeyTypeName, profile: Usage): TestLeaf => {
  const l = matrix().leaves.get(`${caType}/${leafType}/${profile}`);
  assert.ok(l, `no leaf ${caType}/${leafType}/${profile}`);
  return l;
};
const caOf = (t: KeyTypeName): TestCa => {
  const c = matrix().cas.get(t);
  assert.ok(c, `no CA ${t}`);
  return c;
};

const infoCache = new Map<string, X509Info>();
/** infoOf is openssl's serial, `-text` and public key of a certificate file, from one run per file. */
function infoOf(file: string): X509Info {
  let i = infoCache.get(file);
  if (i === undefined) {
    i = opensslX509Info(file);
    infoCache.set(file, i);
  }
  return i;
}
const textOf = (file: string): string => infoOf(file).text;

/** SIGNATURE_NAME is how openssl names the signature algorithm a CA of each key type uses. */
const SIGNATURE_NAME: Record<KeyTypeName, string> = {
  "ecdsa-p256": "ecdsa-with-SHA256",
  "ecdsa-p384": "ecdsa-with-SHA384",
  "rsa-2048": "sha256WithRSAEncryption",
  "rsa-3072": "sha256WithRSAEncryption",
  "rsa-4096": "sha256WithRSAEncryption",
  ed25519: "ED25519",
};
const isRsa = (t: KeyTypeName) => t.startsWith("rsa-");
const EKU_TEXT: Record<Usage, string> = {
  server: "TLS Web Server Authentication",
  client: "TLS Web Client Authentication",
  dual: "TLS Web Server Authentication, TLS Web Client Authentication",
};

const b64u = (s: string | undefined): Buffer => Buffer.from(s ?? "", "base64url");
/**
 * expectedKeyId is RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits, computed from
 * openssl's PEM public key via node:crypto (not via mtlskit), in openssl's `AB:CD:...` form.
 */
function expectedKeyId(publicKeyPem: string): string {
  const k = createPublicKey(publicKeyPem);
  let bits: Buffer;
  if (k.asymmetricKeyType === "rsa") bits = k.export({ type: "pkcs1", format: "der" });
  else if (k.asymmetricKeyType === "ec") {
    const j = k.export({ format: "jwk" });
    bits = Buffer.concat([Buffer.from([4]), b64u(j.x), b64u(j.y)]);
  } else if (k.asymmetricKeyType === "ed25519") bits = b64u(k.export({ format: "jwk" }).x);
  else throw new Error(`unexpected key type ${k.asymmetricKeyType}`);
  return colonHex(createHash("sha1").update(bits).digest());
}
const colonHex = (b: Buffer): string => (b.toString("hex").toUpperCase().match(/../g) ?? []).join(":");
/** akiValue strips the `keyid:` prefix some openssl versions print. */
const akiValue = (v: string | undefined): string | undefined =>
  v
    ?.replace(/^keyid:/, "")
    .split("\n")[0]
    ?.trim();

/** ipHex is an IP address's network-order bytes as hex, from any of the text forms openssl or @peculiar print. */
function ipHex(text: string): string {
  if (/^\d+\.\d+\.\d+\.\d+$/.test(text)) return Buffer.from(text.split(".").map(Number)).toString("hex");
  const [h, t] = text.includes("::") ? (text.split("::") as [string, string]) : [text, undefined];
  const head = h ? h.split(":") : [];
  const tail = t ? t.split(":") : [];
  const groups = t === undefined ? head : [...head, ...Array<string>(8 - head.length - tail.length).fill("0"), ...tail];
  assert.equal(groups.length, 8, `not an IPv6 address: ${text}`);
  return groups.map((g) => parseInt(g, 16).toString(16).padStart(4, "0")).join("");
}

const hexOf = (hex: string) => Buffer.from(hex.replace(/\s+/g, ""), "hex");

const KEYS_URL = pathToFileURL(path.join(REPO, "src", "pki", "keys.ts")).href;

/** ChildRun is a `node --import tsx` child that finished, or was killed at its time limit. */
interface ChildRun {
  finished: boolean;
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * inChild runs an ES module body in a fresh `node --import tsx` process, killed after `timeoutMs`.
 * Bulk EC key generation runs there because it can deadlock Node 20 (see pki/keys): a deadlock
 * then fails one test instead of hanging the whole suite.
 */
function inChild(body: string, timeoutMs: number, nodeFlags: string[] = []): ChildRun {
  const r = spawnSync(process.execPath, [...nodeFlags, "--import", "tsx", "--input-type=module", "-e", body], {
    cwd: REPO,
    encoding: "utf8",
    timeout: timeoutMs,
    killSignal: "SIGKILL",
  });
  return {
    finished: r.error === undefined && r.signal === null,
    status: r.status,
    stdout: r.stdout ?? "",
    stderr: r.stderr ?? "",
  };
}

// ---------------------------------------------------------------------------------------------
// der.ts
// ---------------------------------------------------------------------------------------------

describe("pki/der: uint", () => {
  const known: [string, string, string][] = [
    ["ok/a single small octet is kept", "01", "020101"],
    ["ok/zero is one 0x00 octet", "00", "020100"],
    ["ok/all-zero magnitude collapses to one 0x00 octet", "000000", "020100"],
    ["ok/leading zero octets are stripped", "00000102", "02020102"],
    ["ok/top bit set gets a 0x00 prefix", "80", "02020080"],
    ["ok/leading zeros stripped, then 0x00 re-added for the top bit", "0000ff01", "020300ff01"],
    ["ok/a needed 0x00 prefix is kept once", "0080", "02020080"],
    ["ok/top bit clear needs no prefix", "7fff", "02027fff"],
  ];
  for (const [name, magnitude, want] of known) {
    it(`${name} (${magnitude} -> ${want})`, () => assert.equal(uint(hexOf(magnitude)).toString("hex"), want));
  }

  it("ok/agrees with openssl's INTEGER encoder on random magnitudes with random leading zeros", () => {
    // Deterministic pseudo-random inputs, so a failure reproduces.
    let seed = 0x1234567;
    const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
    for (let i = 0; i < 24; i++) {
      const zeros = next() % 3;
      const len = 1 + (next() % 20);
      const mag = Buffer.concat([Buffer.alloc(zeros), Buffer.from(Array.from({ length: len }, () => next() & 0xff))]);
      if (i % 4 === 0) mag[zeros] = mag[zeros]! | 0x80; // make sure the top-bit case is exercised
      const want = opensslGenDer(`INTEGER:0x${mag.toString("hex")}`);
      assert.equal(uint(mag).toString("hex"), want.toString("hex"), `magnitude ${mag.toString("hex")}`);
    }
  });
});

describe("pki/der: oid", () => {
  const known: [string, string][] = [
    ["1.2.840.113549.1.1.11", "06092a864886f70d01010b"],
    ["2.5.29.19", "0603551d13"],
    ["1.3.6.1.5.5.7.3.1", "06082b06010505070301"],
    ["1.2.840.10045.3.1.7", "06082a8648ce3d030107"],
    ["1.3.132.0.34", "06052b81040022"],
    ["1.3.101.112", "06032b6570"],
    ["2.999.16384", "06058837818000"],
  ];
  for (const [dotted, want] of known) {
    it(`ok/${dotted} -> ${want}`, () => assert.equal(oid(dotted).toString("hex"), want));
  }
  it("ok/agrees with openssl's OID encoder, including arcs past 2^28 and 2^32", () => {
    for (const dotted of [
      "1.2.840.113549.1.1.11",
      "2.16.840.1.101.3.4.2.1",
      "1.3.6.1.4.1.311.21.20",
      "1.2.268435456.5",
      "1.2.3.4294967296",
      "2.999.16384",
      "0.9.2342.19200300.100.1.25",
    ]) {
      assert.equal(oid(dotted).toString("hex"), opensslGenDer(`OID:${dotted}`).toString("hex"), dotted);
    }
  });
  it("fail/an OID with one arc is refused", () => assert.throws(() => oid("1"), /at least two arcs/));
});

// Issue 11: RFC 1421 headers made an encrypted traditional key "not valid base64" everywhere PEM was read.
describe("pki/pem: RFC 1421 headers", () => {
  const dir = tempDir("mtlskit-pem-");
  const openssl = (...args: string[]) => {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
  const cases: [string, string[], string[], string, number][] = [
    [
      "EC (openssl ec -aes256)",
      ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
      ["ec", "-aes256"],
      "AES-256-CBC",
      16,
    ],
    [
      "RSA (openssl rsa -traditional -des3)",
      ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
      ["rsa", "-traditional", "-des3"],
      "DES-EDE3-CBC",
      8,
    ],
  ];
  for (const [name, gen, seal, cipher, block] of cases) {
    it(`ok/an encrypted traditional ${name} key: headers apart, the cipher named, the body decoded`, () => {
      writeFileSync(path.join(dir, "plain.pem"), openssl(...gen));
      const text = openssl(...seal, "-in", "plain.pem", "-passout", "pass:secret");
      const [b] = parsePem(text);
      assert.equal(b!.headers["Proc-Type"], "4,ENCRYPTED");
      assert.match(b!.headers["DEK-Info"]!, /^(AES-256-CBC|DES-EDE3-CBC),[0-9A-F]{16,32}$/);
      assert.equal(keyEncryption(b!), cipher);
      assert.equal(b!.der.length % block, 0, "the ciphertext is whole cipher blocks");
    });
  }
  for (const [flag, cipher] of [
    ["-aes128", "AES-128-CBC"],
    ["-aes256", "AES-256-CBC"],
    ["-des3", "DES-EDE3-CBC"],
  ] as const) {
    it(`ok/a PKCS#8 key encrypted by openssl pkey ${flag}: PKCS#8 with its PBES2 cipher, ${cipher}`, () => {
      writeFileSync(
        path.join(dir, "p8.pem"),
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"),
      );
      const [b] = parsePem(openssl("pkey", flag, "-in", "p8.pem", "-passout", "pass:secret"));
      assert.equal(b!.label, "ENCRYPTED PRIVATE KEY");
      assert.equal(keyEncryption(b!), `PKCS#8 ${cipher}`);
    });
  }
  it("ok/no headers: an empty record; an ENCRYPTED PRIVATE KEY is PKCS#8 encryption; a header continued on the next line is joined; bad base64 still throws", () => {
    const plain = parsePem(encodePem("PRIVATE KEY", Buffer.from([0x30, 0])));
    assert.deepEqual(plain[0]!.headers, {});
    assert.equal(keyEncryption(plain[0]!), undefined);
    assert.equal(keyEncryption(parsePem(encodePem("ENCRYPTED PRIVATE KEY", Buffer.from([0x30, 0])))[0]!), "PKCS#8");
    const folded = parsePem(
      "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,\n 00112233445566778899AABBCCDDEEFF\n\nMAA=\n-----END RSA PRIVATE KEY-----\n",
    );
    assert.equal(folded[0]!.headers["DEK-Info"], "AES-128-CBC,00112233445566778899AABBCCDDEEFF");
    assert.throws(
      () => parsePem("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"),
      /pem: the CERTIFICATE block is not valid base64/,
    );
  });
});

describe("pki/der: readTlv", () => {
  const lengths: [number, string][] = [
    [0, "0400"],
    [127, "047f"],
    [128, "048180"],
    [255, "0481ff"],
    [256, "04820100"],
    [65535, "0482ffff"],
    [65536, "0483010000"],
    [16777215, "0483ffffff"],
    [16777216, "048401000000"],
  ];
  for (const [n, header] of lengths) {
    it(`ok/a ${n}-octet element has minimal header ${header} and reads back`, () => {
      const el = tlv(0x04, Buffer.alloc(n, 0xab));
      assert.equal(el.subarray(0, header.length / 2).toString("hex"), header);
      const t = readTlv(el, 0);
      assert.deepEqual(t, { tag: 0x04, start: 0, contentStart: header.length / 2, end: el.length });
    });
  }
  it("ok/tlv concatenates several contents in order, none to many, and copies them", () => {
    const a = Buffer.from([1, 2]);
    const b = Buffer.alloc(200, 3);
    const el = tlv(0x30, a, Buffer.alloc(0), b, a);
    assert.equal(el.toString("hex"), "3081cc" + "0102" + "03".repeat(200) + "0102");
    a[0] = 9;
    assert.equal(el[3], 1, "the element does not alias its contents");
    assert.equal(tlv(0x05).toString("hex"), "0500");
  });
  it("ok/reads an element at an offset inside a larger buffer", () => {
    const buf = Buffer.concat([Buffer.from([0xff, 0xff]), tlv(0x02, Buffer.from([5]))]);
    assert.deepEqual(readTlv(buf, 2), { tag: 0x02, start: 2, contentStart: 4, end: 5 });
  });

  const bad: [string, string][] = [
    ["fail/empty input is truncated", ""],
    ["fail/a lone tag is truncated", "30"],
    ["fail/contents shorter than the length are truncated", "0405010203"],
    ["fail/a long-form length cut short is truncated", "048201"],
    ["fail/a long-form length with no length octets is truncated", "0481"],
    ["fail/indefinite length (0x80) is not DER", "30800000"],
    ["fail/long form for a length under 128 is non-minimal", "0481050102030405"],
    ["fail/a length with a leading zero octet is non-minimal", "0482000501020304 05"],
    ["fail/a 0x00-padded long length over 127 is non-minimal", "04820080" + "ab".repeat(128)],
    ["fail/a length of more than four octets is refused", "0485000000000101"],
  ];
  for (const [name, hex] of bad) {
    // A typed DecodeError (exit 3, code MTLSKIT_DECODE), never a plain Error the CLI calls a bug (issue 11).
    it(name, () =>
      assert.throws(
        () => readTlv(hexOf(hex), 0),
        (e) => e instanceof DecodeError && e.exitCode === 3 && e.code === "MTLSKIT_DECODE" && /^der: /.test(e.message),
      ),
    );
  }
});

describe("pki/der: time", () => {
  const cases: [string, string, string][] = [
    [
      "ok/the last second of 2049 is UTCTime",
      "2049-12-31T23:59:59Z",
      "170d" + Buffer.from("491231235959Z").toString("hex"),
    ],
    [
      "ok/the first second of 2050 is GeneralizedTime",
      "2050-01-01T00:00:00Z",
      "180f" + Buffer.from("20500101000000Z").toString("hex"),
    ],
    [
      "ok/a 2000s date is UTCTime with a two-digit year",
      "2007-03-04T05:06:07Z",
      "170d" + Buffer.from("070304050607Z").toString("hex"),
    ],
    [
      "ok/milliseconds are dropped, not rounded up",
      "2031-05-06T07:08:09.999Z",
      "170d" + Buffer.from("310506070809Z").toString("hex"),
    ],
  ];
  for (const [name, iso, want] of cases)
    it(`${name} (${iso})`, () => assert.equal(time(new Date(iso)).toString("hex"), want));
});

describe("pki/issue: encodeKeyUsage", () => {
  it("ok/digitalSignature -> 03020780", () =>
    assert.equal(encodeKeyUsage(["digitalSignature"]).toString("hex"), "03020780"));
  it("ok/digitalSignature + keyEncipherment -> 030205a0", () =>
    assert.equal(encodeKeyUsage(["digitalSignature", "keyEncipherment"]).toString("hex"), "030205a0"));
  it("ok/keyCertSign + cRLSign -> 03020106", () =>
    assert.equal(encodeKeyUsage(["keyCertSign", "cRLSign"]).toString("hex"), "03020106"));
  it("ok/bit order in the argument does not matter", () =>
    assert.equal(encodeKeyUsage(["cRLSign", "keyCertSign"]).toString("hex"), "03020106"));
});

describe("pki/issue: encodeTbs, signTbs and encodePemBytes write into one buffer", () => {
  /** strictTree walks every element with readTlv (minimal lengths only) and checks each constructed one is filled exactly by its children. */
  const strictTree = (der: Buffer, at = 0, end = der.length): number => {
    const t = readTlv(der, at, end);
    if (t.tag & 0x20) {
      let p = t.contentStart;
      while (p < t.end) p = strictTree(der, p, t.end);
      assert.equal(p, t.end, `element at ${t.start} is not filled by its children`);
    }
    return t.end;
  };
  // A seeded generator: the same specs every run, long enough names for 1-, 2- and 3-octet lengths.
  let seed = 12;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const word = (n: number) =>
    Array.from({ length: n }, () => "abcdefghijklmnopqrstuvwxyz0123456789-"[rnd(37)]).join("");
  it("ok/200 specs (0-40 names, names of 1-300 characters, self-signed or not): strict DER, every field as specified", () => {
    const ca = newTestCa("ecdsa-p256", { name: "one-buffer-ca" });
    const key = keyOf("leaf", "ecdsa-p256");
    for (let i = 0; i < 200; i++) {
      const long = rnd(5) === 0;
      const spec: CertSpec = {
        profile: (["ca", "server", "client", "dual"] as const)[rnd(4)]!,
        subject: { O: word(1 + rnd(long ? 60 : 10)), CN: word(1 + rnd(long ? 60 : 20)) },
        dns: Array.from({ length: rnd(long ? 40 : 3) }, () => word(1 + rnd(long ? 250 : 30))),
        ips: Array.from({ length: rnd(3) }, () => (rnd(2) ? IPV4 : new Uint8Array(IPV6))),
        uris: Array.from({ length: rnd(2) }, () => `spiffe://x/${word(rnd(long ? 300 : 30))}`),
        keyType: (["ecdsa-p256", "rsa-2048"] as const)[rnd(2)]!,
        notBefore: NOW,
        notAfter: new Date(NOW.getTime() + (1 + rnd(4000)) * DAY),
      };
      const self = rnd(8) === 0;
      const issuer = self ? { ...ca.issuer, keyId: keyIdOf(key.spki) } : ca.issuer;
      const tbs = encodeTbs(spec, issuer, key.spki, newSerial());
      assert.equal(strictTree(tbs), tbs.length);
      const der = signTbs(tbs, issuer);
      assert.equal(strictTree(der), der.length);
      const info = decodeCertificate(der);
      const sans = [
        ...spec.dns.map((d) => `dns:${d}`),
        ...spec.ips.map((b) => `ip:${Buffer.from(b).toString("hex")}`),
        ...spec.uris.map((u) => `uri:${u}`),
      ];
      assert.deepEqual(
        info.sans.map((n) => `${n.type}:${n.type === "ip" ? n.bytes.toString("hex") : n.value}`),
        sans,
      );
      assert.equal(info.subjectAttributes.CN, spec.subject.CN);
      assert.equal(info.notAfter.getTime(), spec.notAfter.getTime());
      assert.equal(info.authorityKeyId === undefined, self, `spec ${i}: an authority key id unless self-signed`);
    }
  });
  it("ok/encodePemBytes is encodePem's text followed by the trailer; encodePem has 64-character base64 lines", () => {
    for (let n = 0; n < 200; n++) {
      const der = Buffer.from(Array.from({ length: n }, () => rnd(256)));
      const trailer = Buffer.from(word(rnd(40)));
      const lines = der.toString("base64").match(/.{1,64}/g) ?? [];
      const text = `-----BEGIN CERTIFICATE-----\n${lines.map((l) => `${l}\n`).join("")}-----END CERTIFICATE-----\n`;
      assert.equal(encodePem("CERTIFICATE", der), text, `${n} octets`);
      assert.deepEqual(encodePemBytes("CERTIFICATE", der, trailer), Buffer.concat([Buffer.from(text), trailer]));
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Serial numbers
// ---------------------------------------------------------------------------------------------

describe("pki/serial", () => {
  it("ok/10,000 draws: 16 octets, positive, nonzero, minimal as DER, all distinct, none changed by later draws", () => {
    const seen = new Set<string>();
    const drawn: [Buffer, string][] = [];
    for (let i = 0; i < 10_000; i++) {
      const s = newSerial();
      assert.equal(s.length, 16);
      assert.equal(s[0]! & 0x80, 0, `negative serial ${s.toString("hex")}`);
      assert.ok(
        s.some((b) => b !== 0),
        "zero serial",
      );
      // Minimal DER: the INTEGER is exactly these 16 octets (no 0x00 prefix, nothing stripped).
      assert.equal(uint(s).toString("hex"), "0210" + s.toString("hex"));
      seen.add(s.toString("hex"));
      drawn.push([s, s.toString("hex")]);
    }
    assert.equal(seen.size, 10_000, "serials repeat");
    // Serials are drawn from a pool of random bytes: none may share (or be zeroed with) the pool.
    for (const [s, hex] of drawn) assert.equal(s.toString("hex"), hex, "a serial changed after it was drawn");
  });
  it("ok/stays positive, nonzero and 16 octets even when the random source returns all zeros or all ones", () => {
    for (const fill of [0x00, 0xff, 0x80, 0x3f]) {
      const s = newSerial((n) => Buffer.alloc(n, fill));
      assert.equal(s.length, 16);
      assert.equal(s[0]! & 0x80, 0);
      assert.notEqual(s[0], 0, "a leading 0x00 octet would make the DER INTEGER shorter than 16 octets");
    }
  });
  it("ok/an issued certificate carries the serial as a 16-octet INTEGER (openssl x509 -serial, asn1parse)", () => {
    const leaf = leafOf("ecdsa-p256", "ecdsa-p256", "server");
    const hex = opensslSerial(leaf.file);
    assert.equal(hex.length, 32);
    assert.equal(hex, leaf.serial.toString("hex").toUpperCase());
    const serialLine = opensslAsn1parse(leaf.file).find((l) => l.depth === 2 && l.tag === "INTEGER");
    assert.ok(serialLine, "no serialNumber INTEGER at depth 2");
    assert.equal(serialLine.length, 16);
    assert.equal(serialLine.value, hex);
  });
  it("ok/every certificate in the matrix has its own serial", () => {
    const serials = [...matrix().leaves.values()].map((l) => infoOf(l.file).serial);
    assert.equal(new Set(serials).size, serials.length);
  });
});

// ---------------------------------------------------------------------------------------------
// openssl verify: every CA key type x every leaf key type x every profile
// ---------------------------------------------------------------------------------------------

describe("pki/verify matrix: openssl verify -x509_strict -purpose", () => {
  before(() => void matrix());
  for (const caType of KEY_TYPE_NAMES) {
    for (const leafType of KEY_TYPE_NAMES) {
      for (const profile of USAGES) {
        for (const purpose of ["sslserver", "sslclient"] as Purpose[]) {
          const shouldPass =
            purpose === "sslserver"
              ? profile === "server" || profile === "dual"
              : profile === "client" || profile === "dual";
          const name = `${shouldPass ? "ok" : "fail"}/CA ${caType} -> ${leafType} ${profile} leaf ${shouldPass ? "passes" : 'fails with "unsuitable certificate purpose"'} for ${purpose}`;
          it(name, () => {
            const leaf = leafOf(caType, leafType, profile);
            const r = opensslVerify({ caFile: leaf.ca.file, certFile: leaf.file, purpose });
            if (shouldPass) assert.ok(r.ok, r.output);
            else {
              assert.equal(r.ok, false, r.output);
              assert.match(r.output, /unsuitable certificate purpose/);
              // The purpose is the only complaint: the chain itself is sound.
              assert.deepEqual(
                r.output
                  .match(/error \d+ at \d+ depth lookup: .*/g)
                  ?.map((l) => l.replace(/^error \d+ at \d+ depth lookup: /, "")),
                ["unsuitable certificate purpose"],
              );
            }
          });
        }
      }
    }
  }
});

describe("pki/verify: names, trust and time", () => {
  before(() => void matrix());
  const srv = () => leafOf("ecdsa-p256", "ecdsa-p256", "server");
  const cli = () => leafOf("ecdsa-p256", "ecdsa-p256", "client");
  it("ok/-verify_hostname matches the first DNS SAN", () => {
    const r = opensslVerify({
      caFile: srv().ca.file,
      certFile: srv().file,
      purpose: "sslserver",
      verifyHostname: "api.demo.internal",
    });
    assert.ok(r.ok, r.output);
  });
  it("ok/-verify_ip matches the IPv4 SAN", () => {
    const r = opensslVerify({
      caFile: srv().ca.file,
      certFile: srv().file,
      purpose: "sslserver",
      verifyIp: "10.0.0.7",
    });
    assert.ok(r.ok, r.output);
  });
  it("ok/-verify_ip matches the IPv6 SAN written in compressed form", () => {
    const r = opensslVerify({
      caFile: srv().ca.file,
      certFile: srv().file,
      purpose: "sslserver",
      verifyIp: "2001:db8::1",
    });
    assert.ok(r.ok, r.output);
  });
  it("ok/a client leaf verifies for sslclient with its IP", () => {
    const r = opensslVerify({
      caFile: cli().ca.file,
      certFile: cli().file,
      purpose: "sslclient",
      verifyIp: "10.0.0.7",
    });
    assert.ok(r.ok, r.output);
  });
  it("fail/-verify_hostname of a name not in the SANs: hostname mismatch", () => {
    const r = opensslVerify({
      caFile: srv().ca.file,
      certFile: srv().file,
      purpose: "sslserver",
      verifyHostname: "other.demo.internal",
    });
    assert.equal(r.ok, false);
    assert.match(r.output, /hostname mismatch/);
  });
  it("fail/-verify_ip of another IPv4 address: IP address mismatch", () => {
    const r = opensslVerify({
      caFile: srv().ca.file,
      certFile: srv().file,
      purpose: "sslserver",
      verifyIp: "10.0.0.8",
    });
    assert.equal(r.ok, false);
    assert.match(r.output, /IP address mismatch/);
  });
  it("fail/-verify_ip of another IPv6 address: IP address mismatch", () => {
    const r = opensslVerify({
      caFile: srv().ca.file,
      certFile: srv().file,
      purpose: "sslserver",
      verifyIp: "2001:db8::2",
    });
    assert.equal(r.ok, false);
    assert.match(r.output, /IP address mismatch/);
  });
  it("fail/a leaf checked against another CA with the same name and key type is not trusted", () => {
    // Same subject DN as the issuing CA (newTestCa's default), different key.
    const other = newTestCa("ecdsa-p256", { name: "other-ca-p256", key: generateKey("ecdsa-p256") });
    const r = opensslVerify({ caFile: other.file, certFile: srv().file, purpose: "sslserver" });
    assert.equal(r.ok, false);
    assert.match(r.output, /unable to get local issuer certificate/);
  });
  it("fail/a leaf whose signature was altered fails: certificate signature failure", () => {
    const der = Buffer.from(srv().der);
    der[der.length - 5] = der[der.length - 5]! ^ 0x01; // inside the signature value
    const file = write("tampered.pem", encodePem("CERTIFICATE", der));
    const r = opensslVerify({ caFile: srv().ca.file, certFile: file, purpose: "sslserver" });
    assert.equal(r.ok, false);
    assert.match(r.output, /certificate signature failure/);
  });
  it("ok/leafSpec backdates notBefore by BACKDATE_MS: valid from NOW - 5 min, openssl agrees", () => {
    assert.equal(BACKDATE_MS, 5 * 60_000);
    assert.equal(srv().spec.notBefore.getTime(), NOW.getTime() - BACKDATE_MS);
    assert.equal(srv().spec.notAfter.getTime(), NOW.getTime() + 90 * DAY);
    const at = (t: number) =>
      opensslVerify({ caFile: srv().ca.file, certFile: srv().file, purpose: "sslserver", attime: new Date(t) });
    assert.ok(at(NOW.getTime()).ok, "at issuance");
    assert.ok(at(NOW.getTime() - BACKDATE_MS).ok, "at notBefore exactly");
    // openssl counts a certificate as expired at notAfter itself (X509_cmp_time), so check the second before.
    assert.ok(at(NOW.getTime() + 90 * DAY - 1000).ok, "one second before notAfter");
  });
  it("fail/one second before notBefore: certificate is not yet valid", () => {
    const r = opensslVerify({
      caFile: srv().ca.file,
      certFile: srv().file,
      purpose: "sslserver",
      attime: new Date(NOW.getTime() - BACKDATE_MS - 1000),
    });
    assert.equal(r.ok, false);
    assert.match(r.output, /certificate is not yet valid/);
  });
  it("fail/one second after notAfter: certificate has expired", () => {
    const r = opensslVerify({
      caFile: srv().ca.file,
      certFile: srv().file,
      purpose: "sslserver",
      attime: new Date(NOW.getTime() + 90 * DAY + 1000),
    });
    assert.equal(r.ok, false);
    assert.match(r.output, /certificate has expired/);
  });
});

// ---------------------------------------------------------------------------------------------
// Structure, read through openssl x509 -text
// ---------------------------------------------------------------------------------------------

describe("pki/structure: CA certificates (openssl x509 -text)", () => {
  before(() => void matrix());
  for (const caType of KEY_TYPE_NAMES) {
    it(`ok/CA ${caType}: v3, critical CA:TRUE pathlen:0, critical Certificate Sign + CRL Sign, SKI, no EKU/SAN, ${SIGNATURE_NAME[caType]}`, () => {
      const ca = caOf(caType);
      const t = textOf(ca.file);
      assert.equal(fieldOf(t, "Version"), "3 (0x2)");
      assert.deepEqual(fieldsOf(t, "Signature Algorithm"), [SIGNATURE_NAME[caType], SIGNATURE_NAME[caType]]);
      assert.equal(fieldOf(t, "Issuer"), fieldOf(t, "Subject"), "self-issued");
      assert.equal(fieldOf(t, "Subject"), `O = mtlskit test, CN = Test CA ${caType}`);
      const ext = extensionsOf(t);
      assert.deepEqual(ext.get("X509v3 Basic Constraints"), { critical: true, value: "CA:TRUE, pathlen:0" });
      assert.deepEqual(ext.get("X509v3 Key Usage"), { critical: true, value: "Certificate Sign, CRL Sign" });
      assert.equal(ext.has("X509v3 Extended Key Usage"), false);
      assert.equal(ext.has("X509v3 Subject Alternative Name"), false);
      const ski = ext.get("X509v3 Subject Key Identifier");
      assert.deepEqual(ski, { critical: false, value: expectedKeyId(infoOf(ca.file).pubkey) });
      const aki = ext.get("X509v3 Authority Key Identifier");
      if (aki) assert.equal(akiValue(aki.value), ski?.value, "a self-signed CA's AKI, when present, is its own SKI");
      assert.deepEqual(
        [...ext.keys()].filter((k) => k !== "X509v3 Authority Key Identifier"),
        ["X509v3 Basic Constraints", "X509v3 Key Usage", "X509v3 Subject Key Identifier"],
      );
    });
  }
});

describe("pki/structure: leaf certificates (openssl x509 -text)", () => {
  before(() => void matrix());
  for (const caType of KEY_TYPE_NAMES) {
    for (const leafType of KEY_TYPE_NAMES) {
      for (const profile of USAGES) {
        const ku = isRsa(leafType) ? "Digital Signature, Key Encipherment" : "Digital Signature";
        it(`ok/CA ${caType} -> ${leafType} ${profile}: v3, critical CA:FALSE, critical KU "${ku}", EKU ${profile}, SKI, AKI = CA SKI, typed SANs, ${SIGNATURE_NAME[caType]}`, () => {
          const leaf = leafOf(caType, leafType, profile);
          const t = textOf(leaf.file);
          const caText = textOf(leaf.ca.file);
          assert.equal(fieldOf(t, "Version"), "3 (0x2)");
          assert.deepEqual(
            fieldsOf(t, "Signature Algorithm"),
            [SIGNATURE_NAME[caType], SIGNATURE_NAME[caType]],
            "signed with the CA's algorithm",
          );
          assert.equal(fieldOf(t, "Issuer"), fieldOf(caText, "Subject"));
          assert.equal(fieldOf(t, "Subject"), "C = US, O = Demo, OU = Platform, CN = api.demo.internal");
          const ext = extensionsOf(t);
          assert.deepEqual(
            [...ext.keys()],
            [
              "X509v3 Basic Constraints",
              "X509v3 Key Usage",
              "X509v3 Extended Key Usage",
              "X509v3 Subject Key Identifier",
              "X509v3 Authority Key Identifier",
              "X509v3 Subject Alternative Name",
            ],
          );
          assert.deepEqual(ext.get("X509v3 Basic Constraints"), { critical: true, value: "CA:FALSE" });
          assert.deepEqual(ext.get("X509v3 Key Usage"), { critical: true, value: ku });
          assert.deepEqual(ext.get("X509v3 Extended Key Usage"), { critical: false, value: EKU_TEXT[profile] });
          assert.deepEqual(ext.get("X509v3 Subject Key Identifier"), {
            critical: false,
            value: expectedKeyId(infoOf(leaf.file).pubkey),
          });
          const caSki = extensionsOf(caText).get("X509v3 Subject Key Identifier")?.value;
          assert.ok(caSki);
          assert.equal(ext.get("X509v3 Authority Key Identifier")?.critical, false);
          assert.equal(akiValue(ext.get("X509v3 Authority Key Identifier")?.value), caSki);
          assert.deepEqual(ext.get("X509v3 Subject Alternative Name"), { critical: false, value: EXPECTED_SANS });
        });
      }
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Validity
// ---------------------------------------------------------------------------------------------

describe("pki/validity", () => {
  let longCa: TestCa;
  before(() => {
    longCa = newTestCa("ecdsa-p256", {
      name: "ca-2020-2060",
      notBefore: new Date("2020-01-01T00:00:00Z"),
      notAfter: new Date("2060-01-01T00:00:00Z"),
    });
  });
  const timesOf = (file: string) =>
    opensslAsn1parse(file)
      .filter((l) => l.tag === "UTCTIME" || l.tag === "GENERALIZEDTIME")
      .map((l) => `${l.tag}:${l.value}`);

  it("ok/notBefore and notAfter from the spec appear exactly, to the second", () => {
    const leaf = issueLeaf(longCa, "ecdsa-p256", "server", {
      name: "exact-dates",
      notBefore: new Date("2031-05-06T07:08:09Z"),
      notAfter: new Date("2032-11-12T13:14:15Z"),
    });
    assert.deepEqual(opensslDates(leaf.file), { notBefore: "2031-05-06 07:08:09Z", notAfter: "2032-11-12 13:14:15Z" });
    assert.deepEqual(timesOf(leaf.file), ["UTCTIME:310506070809Z", "UTCTIME:321112131415Z"]);
  });
  it("ok/sub-second parts are truncated, never rounded up (notBefore never moves later)", () => {
    const leaf = issueLeaf(longCa, "ecdsa-p256", "server", {
      name: "ms-dates",
      notBefore: new Date("2031-05-06T07:08:09.999Z"),
      notAfter: new Date("2032-11-12T13:14:15.500Z"),
    });
    assert.deepEqual(opensslDates(leaf.file), { notBefore: "2031-05-06 07:08:09Z", notAfter: "2032-11-12 13:14:15Z" });
  });
  it("ok/the CA's own dates: UTCTime for 2020, GeneralizedTime for 2060", () => {
    assert.deepEqual(timesOf(longCa.file), ["UTCTIME:200101000000Z", "GENERALIZEDTIME:20600101000000Z"]);
  });
  it("ok/2049 is UTCTime and 2050 GeneralizedTime in one certificate, and openssl verifies it in 2050", () => {
    const leaf = issueLeaf(longCa, "ecdsa-p256", "dual", {
      name: "y2050",
      notBefore: new Date("2049-06-01T00:00:00Z"),
      notAfter: new Date("2050-06-01T12:34:56Z"),
    });
    assert.deepEqual(timesOf(leaf.file), ["UTCTIME:490601000000Z", "GENERALIZEDTIME:20500601123456Z"]);
    assert.deepEqual(opensslDates(leaf.file), { notBefore: "2049-06-01 00:00:00Z", notAfter: "2050-06-01 12:34:56Z" });
    for (const purpose of ["sslserver", "sslclient"] as Purpose[]) {
      const r = opensslVerify({
        caFile: longCa.file,
        certFile: leaf.file,
        purpose,
        attime: new Date("2050-03-01T00:00:00Z"),
      });
      assert.ok(r.ok, r.output);
    }
  });
  it("fail/the 2050 certificate is expired one second after its GeneralizedTime notAfter", () => {
    const leaf = issueLeaf(longCa, "ecdsa-p256", "server", {
      name: "y2050-expired",
      notBefore: new Date("2049-06-01T00:00:00Z"),
      notAfter: new Date("2050-06-01T12:34:56Z"),
    });
    const r = opensslVerify({
      caFile: longCa.file,
      certFile: leaf.file,
      purpose: "sslserver",
      attime: new Date("2050-06-01T12:34:57Z"),
    });
    assert.equal(r.ok, false);
    assert.match(r.output, /certificate has expired/);
  });
  it("ok/the boundary: 2049-12-31T23:59:59Z is UTCTime, 2050-01-01T00:00:00Z GeneralizedTime", () => {
    const leaf = issueLeaf(longCa, "ecdsa-p256", "server", {
      name: "boundary",
      notBefore: new Date("2049-12-31T23:59:59Z"),
      notAfter: new Date("2050-01-01T00:00:00Z"),
    });
    assert.deepEqual(timesOf(leaf.file), ["UTCTIME:491231235959Z", "GENERALIZEDTIME:20500101000000Z"]);
    const r = opensslVerify({
      caFile: longCa.file,
      certFile: leaf.file,
      purpose: "sslserver",
      attime: new Date("2049-12-31T23:59:59Z"),
    });
    assert.ok(r.ok, r.output);
  });
  it("ok/readCertFields reads both time forms back", () => {
    const leaf = issueLeaf(longCa, "ecdsa-p256", "server", {
      name: "y2050-read",
      notBefore: new Date("2049-12-31T23:59:59Z"),
      notAfter: new Date("2050-06-01T12:34:56Z"),
    });
    const f = readCertFields(leaf.der);
    assert.equal(f.notBefore.toISOString(), "2049-12-31T23:59:59.000Z");
    assert.equal(f.notAfter.toISOString(), "2050-06-01T12:34:56.000Z");
  });
});

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

describe("pki/keys", () => {
  before(() => void matrix());
  for (const type of KEY_TYPE_NAMES) {
    it(`ok/${type}: key.pem passes openssl pkey -check and its public key is the certificate's`, () => {
      const leaf = leafOf("ecdsa-p256", type, "server");
      const check = opensslKeyCheck(leaf.keyFile);
      assert.ok(check.ok, check.output);
      const fromKey = opensslPubkeyOfKey(leaf.keyFile);
      assert.equal(infoOf(leaf.file).pubkey, fromKey);
      assert.equal(opensslPubkeyOfCert(leaf.file), fromKey, "x509 -pubkey on its own agrees");
      assert.equal(
        fromKey,
        encodePem("PUBLIC KEY", leaf.key.spki),
        "the SPKI mtlskit holds is the one openssl derives",
      );
    });
    it(`fail/${type}: the certificate's public key differs from another key type's`, () => {
      const other = KEY_TYPE_NAMES[(KEY_TYPE_NAMES.indexOf(type) + 1) % KEY_TYPE_NAMES.length]!;
      assert.notEqual(
        infoOf(leafOf("ecdsa-p256", type, "server").file).pubkey,
        opensslPubkeyOfKey(leafOf("ecdsa-p256", other, "server").keyFile),
      );
    });
    it(`ok/${type}: node:crypto re-exports PKCS#8 and SPKI byte for byte, and keyTypeOf names it`, () => {
      const k = keyOf("leaf", type);
      const priv = createPrivateKey({ key: k.pkcs8, format: "der", type: "pkcs8" });
      assert.equal(priv.export({ type: "pkcs8", format: "der" }).toString("hex"), k.pkcs8.toString("hex"));
      assert.equal(
        createPublicKey(priv).export({ type: "spki", format: "der" }).toString("hex"),
        k.spki.toString("hex"),
      );
      assert.equal(keyTypeOf(priv), type);
    });
  }
  it("ok/the certificates state each key's size or curve (openssl x509 -text)", () => {
    const want: Record<KeyTypeName, RegExp> = {
      "ecdsa-p256": /ASN1 OID: prime256v1/,
      "ecdsa-p384": /ASN1 OID: secp384r1/,
      "rsa-2048": /Public-Key: \(2048 bit\)[\s\S]*Exponent: 65537 \(0x10001\)/,
      "rsa-3072": /Public-Key: \(3072 bit\)[\s\S]*Exponent: 65537 \(0x10001\)/,
      "rsa-4096": /Public-Key: \(4096 bit\)[\s\S]*Exponent: 65537 \(0x10001\)/,
      ed25519: /Public Key Algorithm: ED25519/,
    };
    for (const type of KEY_TYPE_NAMES)
      assert.match(textOf(leafOf("ecdsa-p256", type, "server").file), want[type], type);
  });
  it("ok/ecdsa-p256 and ecdsa-p384: the hand-built PKCS#8 and SPKI equal node:crypto's encoders over 600 keys each, leading-zero scalars and coordinates included; each key signs and its SPKI verifies; openssl pkey -check accepts them", () => {
    // In a child process: EC generateKey can deadlock Node 20 (next test), which must fail this
    // test, not hang the suite.
    const dir = tempDir();
    const r = inChild(
      `import { createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
      import { writeFileSync } from "node:fs";
      import { generateKey } from ${JSON.stringify(KEYS_URL)};
      const out = { keys: 0, padded: 0, shortScalars: 0, mismatches: [], badSignatures: 0, files: [] };
      const data = Buffer.from("mtlskit");
      for (const type of ["ecdsa-p256", "ecdsa-p384"]) {
        for (let i = 0; i < 600; i++) {
          const k = generateKey(type);
          const priv = createPrivateKey({ key: k.pkcs8, format: "der", type: "pkcs8" });
          const pkcs8 = priv.export({ type: "pkcs8", format: "der" });
          const spki = createPublicKey(priv).export({ type: "spki", format: "der" });
          if (!pkcs8.equals(k.pkcs8) || !spki.equals(k.spki)) out.mismatches.push({ type, i, mine: k.pkcs8.toString("hex"), node: pkcs8.toString("hex"), mineSpki: k.spki.toString("hex"), nodeSpki: spki.toString("hex") });
          const pub = createPublicKey({ key: k.spki, format: "der", type: "spki" });
          if (!verify(null, data, pub, sign(null, data, priv))) out.badSignatures++;
          const j = priv.export({ format: "jwk" });
          if ([j.d, j.x, j.y].some((v) => Buffer.from(v, "base64url")[0] === 0)) out.padded++;
          const short = Buffer.from(j.d, "base64url")[0] === 0;
          if (short) out.shortScalars++;
          // openssl checks the first key of each type and the first few with a leading-zero scalar.
          if (i === 0 || (short && out.shortScalars <= 4)) {
            const file = ${JSON.stringify(dir)} + "/" + type + "-" + i + ".pem";
            writeFileSync(file, priv.export({ type: "pkcs8", format: "pem" }));
            out.files.push(file);
          }
          out.keys++;
        }
      }
      console.log(JSON.stringify(out));`,
      20_000,
    );
    assert.ok(
      r.finished,
      `generating 1,200 EC keys did not finish within 12 s (deadlock, see the next test); stderr: ${r.stderr}`,
    );
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!) as {
      keys: number;
      padded: number;
      shortScalars: number;
      mismatches: unknown[];
      badSignatures: number;
      files: string[];
    };
    assert.equal(out.keys, 1200);
    assert.deepEqual(out.mismatches.slice(0, 3), []);
    assert.equal(out.badSignatures, 0);
    assert.ok(out.padded > 0, "no key with a leading zero octet was drawn; the padding case went untested");
    for (const file of out.files) {
      const check = opensslKeyCheck(file);
      assert.ok(check.ok, `${file}: ${check.output}`);
    }
  });
  it("ok/generateKey for EC keys never deadlocks: 10,000 P-256 and 2,000 P-384 keys under GC pressure finish, interleaved with spkiOfPkcs8 and KeyObject use", () => {
    // Node 20's KeyObject.export({ format: "jwk" }) right after generateKeyPairSync("ec") can
    // deadlock when a GC during the export finalizes the key-generation job (same key mutex).
    // --max-semi-space-size=1 makes GCs frequent; with that JWK path, P-256 alone hung within
    // 2,500 keys in every trial. generateKey now uses a reused ECDH object (no KeyObject); the
    // loop also parses every 10th key into a KeyObject and recomputes SPKIs through the same
    // ECDH objects, so GCs finalize KeyObjects while keys are being generated.
    const r = inChild(
      `import { createPrivateKey } from "node:crypto";
      import { generateKey, spkiOfPkcs8 } from ${JSON.stringify(KEYS_URL)};
      for (let i = 0; i < 12000; i++) {
        const k = generateKey(i % 6 === 5 ? "ecdsa-p384" : "ecdsa-p256");
        if (i % 10 === 0) createPrivateKey({ key: k.pkcs8, format: "der", type: "pkcs8" });
        if (i % 7 === 0 && !spkiOfPkcs8(k.pkcs8).equals(k.spki)) throw new Error("spki mismatch at " + i);
      }
      console.log("done");`,
      20_000,
      ["--max-semi-space-size=1"],
    );
    assert.ok(r.finished, "generateKey deadlocked: 12,000 EC keys did not finish within 20 s");
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), "done");
  });
});

// ---------------------------------------------------------------------------------------------
// readCertFields / verifySignedBy (mtlskit's own reader, checked against what was encoded)
// ---------------------------------------------------------------------------------------------

describe("pki/cert: readCertFields and verifySignedBy", () => {
  before(() => void matrix());
  for (const caType of KEY_TYPE_NAMES) {
    it(`ok/CA ${caType}: readCertFields round-trips serial, dates, issuer, subject, spki, tbs and algorithm`, () => {
      const leaf = leafOf(caType, caType === "ed25519" ? "rsa-2048" : "ed25519", "dual");
      const f = readCertFields(leaf.der);
      assert.equal(f.der, leaf.der);
      assert.equal(f.serial.toString("hex"), leaf.serial.toString("hex"));
      assert.equal(f.notBefore.getTime(), leaf.spec.notBefore.getTime());
      assert.equal(f.notAfter.getTime(), leaf.spec.notAfter.getTime());
      assert.equal(f.spki.toString("hex"), leaf.key.spki.toString("hex"));
      assert.equal(f.tbs.toString("hex"), leaf.tbs.toString("hex"));
      assert.equal(f.issuer.toString("hex"), leaf.ca.issuer.subject.toString("hex"));
      assert.equal(f.subject.toString("hex"), encodeName(LEAF_SUBJECT).toString("hex"));
      assert.equal(f.signatureAlgorithm.toString("hex"), KEY_TYPES[caType].signatureAlgorithm.toString("hex"));
      // And the CA's own certificate.
      const c = readCertFields(leaf.ca.der);
      assert.equal(c.serial.toString("hex"), leaf.ca.serial.toString("hex"));
      assert.equal(c.tbs.toString("hex"), leaf.ca.tbs.toString("hex"));
      assert.equal(c.subject.toString("hex"), c.issuer.toString("hex"));
    });
    it(`ok/CA ${caType}: verifySignedBy is true for the issuing CA`, () => {
      const ca = caOf(caType);
      for (const leafType of KEY_TYPE_NAMES) {
        assert.equal(
          verifySignedBy(
            readCertFields(leafOf(caType, leafType, "server").der),
            createPublicKey(ca.issuer.privateKey),
            caType,
          ),
          true,
          leafType,
        );
      }
      assert.equal(
        verifySignedBy(readCertFields(ca.der), createPublicKey(ca.issuer.privateKey), caType),
        true,
        "self-signed",
      );
    });
    it(`fail/CA ${caType}: verifySignedBy is false for another CA, another key of the same type, and an altered certificate`, () => {
      const leaf = readCertFields(leafOf(caType, "ecdsa-p256", "server").der);
      for (const otherType of KEY_TYPE_NAMES.filter((t) => t !== caType)) {
        assert.equal(
          verifySignedBy(leaf, createPublicKey(caOf(otherType).issuer.privateKey), otherType),
          false,
          `CA ${otherType}`,
        );
      }
      // Same algorithm, other key: the leaf key of the CA's type.
      assert.equal(
        verifySignedBy(leaf, createPublicKey(privateKeyOf(keyOf("leaf", caType))), caType),
        false,
        "other key of the same type",
      );
      const altered = Buffer.from(leaf.der);
      const at = leaf.serial.byteOffset - leaf.der.byteOffset + leaf.serial.length - 1; // the serial's last octet, inside the TBS
      altered[at] = altered[at]! ^ 0x01;
      assert.equal(
        verifySignedBy(readCertFields(altered), createPublicKey(caOf(caType).issuer.privateKey), caType),
        false,
        "altered TBS",
      );
    });
  }
  it("fail/readCertFields throws on trailing bytes and on truncation", () => {
    const der = leafOf("ecdsa-p256", "ecdsa-p256", "server").der;
    assert.throws(() => readCertFields(Buffer.concat([der, Buffer.from([0])])), /der: /);
    assert.throws(() => readCertFields(der.subarray(0, der.length - 1)), /der: /);
  });
});

// ---------------------------------------------------------------------------------------------
// decodeCertificate (src/pki/x509.ts) against openssl
// ---------------------------------------------------------------------------------------------

const KU_NAME: Record<string, string> = {
  "Digital Signature": "digitalSignature",
  "Key Encipherment": "keyEncipherment",
  "Certificate Sign": "keyCertSign",
  "CRL Sign": "cRLSign",
};
const EKU_NAME: Record<string, string> = {
  "TLS Web Server Authentication": "serverAuth",
  "TLS Web Client Authentication": "clientAuth",
};

function opensslSans(value: string | undefined): { type: string; value: string }[] {
  if (value === undefined) return [];
  return value.split(", ").map((s) => {
    if (s.startsWith("DNS:")) return { type: "dns", value: s.slice(4) };
    if (s.startsWith("IP Address:")) return { type: "ip", value: ipHex(s.slice(11)) };
    if (s.startsWith("URI:")) return { type: "uri", value: s.slice(4) };
    return { type: "other", value: s };
  });
}

describe("pki/x509: decodeCertificate agrees with openssl", () => {
  before(() => void matrix());
  const cases: [string, () => { der: Buffer; file: string }][] = [
    ...USAGES.map((p): [string, () => { der: Buffer; file: string }] => [
      `${p} leaf (RSA-2048 under ECDSA P-256)`,
      () => leafOf("ecdsa-p256", "rsa-2048", p),
    ]),
    ...USAGES.map((p): [string, () => { der: Buffer; file: string }] => [
      `${p} leaf (Ed25519 under RSA-3072)`,
      () => leafOf("rsa-3072", "ed25519", p),
    ]),
    ["CA (ECDSA P-384)", () => caOf("ecdsa-p384")],
  ];
  for (const [name, get] of cases) {
    it(`ok/${name}: SANs, EKU, KU, basic constraints, key ids, serial, dates, names`, () => {
      const c = get();
      const info = decodeCertificate(c.der);
      const t = textOf(c.file);
      const ext = extensionsOf(t);
      const san = ext.get("X509v3 Subject Alternative Name");
      // Array.from: decodeCertificate hands back @peculiar Array subclasses (see the report); compare the contents.
      assert.deepEqual(
        Array.from(info.sans, (s) => ({ type: s.type, value: s.type === "ip" ? ipHex(s.value) : s.value })),
        opensslSans(san?.value),
      );
      const eku = ext.get("X509v3 Extended Key Usage");
      assert.deepEqual(
        info.extKeyUsage && Array.from(info.extKeyUsage),
        eku ? eku.value.split(", ").map((n) => EKU_NAME[n] ?? n) : undefined,
      );
      const ku = ext.get("X509v3 Key Usage");
      assert.ok(ku);
      assert.deepEqual(
        [...(info.keyUsage ?? [])].sort(),
        ku.value
          .split(", ")
          .map((n) => KU_NAME[n] ?? n)
          .sort(),
      );
      assert.equal(info.keyUsageCritical, ku.critical);
      const bc = ext.get("X509v3 Basic Constraints");
      assert.ok(bc);
      assert.equal(info.isCA, bc.value.startsWith("CA:TRUE"));
      assert.equal(
        info.pathLen,
        /pathlen:(\d+)/.exec(bc.value)?.[1] === undefined ? undefined : Number(/pathlen:(\d+)/.exec(bc.value)![1]),
      );
      assert.equal(info.basicConstraintsCritical, bc.critical);
      assert.equal(info.subjectKeyId?.toUpperCase(), ext.get("X509v3 Subject Key Identifier")?.value.replace(/:/g, ""));
      assert.equal(
        info.authorityKeyId?.toUpperCase(),
        akiValue(ext.get("X509v3 Authority Key Identifier")?.value)?.replace(/:/g, ""),
      );
      assert.equal(info.serialHex.toUpperCase(), infoOf(c.file).serial);
      assert.equal(info.serialNegative, false);
      const dates = opensslDates(c.file);
      assert.equal(
        info.notBefore
          .toISOString()
          .replace(/\.000Z$/, "Z")
          .replace("T", " "),
        dates.notBefore,
      );
      assert.equal(
        info.notAfter
          .toISOString()
          .replace(/\.000Z$/, "Z")
          .replace("T", " "),
        dates.notAfter,
      );
      // openssl prints most general first with " = "; decodeCertificate most specific first with "=".
      const flip = (s: string | undefined) =>
        (s ?? "")
          .split(", ")
          .map((p) => p.replace(" = ", "="))
          .reverse()
          .join(", ");
      assert.equal(info.subject, flip(fieldOf(t, "Subject")));
      assert.equal(info.issuer, flip(fieldOf(t, "Issuer")));
    });
  }
});

// ---------------------------------------------------------------------------------------------
// ca.import-style: an organisation's root -> an intermediate with profile "ca" -> leaves
// ---------------------------------------------------------------------------------------------

describe("pki/intermediate: root -> intermediate (profile ca) -> leaf", () => {
  let rootFile: string;
  let rootSki: string;
  let inter: TestCa;
  let leaf: TestLeaf;
  before(() => {
    // The organisation's root, made by openssl (no pathlen, like the roots ca.import is for).
    const rootKey = keyOf("ca", "ecdsa-p384");
    rootFile = path.join(DIR, "org-root.pem");
    opensslSelfSignedRoot({
      dir: DIR,
      keyFile: keyFileOf(rootKey, "org-root"),
      subj: "/O=Org/CN=Org Root",
      days: 3650,
      out: rootFile,
    });
    const rootText = opensslText(rootFile);
    const ski = extensionsOf(rootText).get("X509v3 Subject Key Identifier")?.value;
    assert.ok(ski, "the openssl root has an SKI");
    rootSki = ski;
    const rootIssuer: Issuer = {
      subject: readCertFields(Buffer.from(pemBody(rootFile), "base64")).subject,
      keyId: Buffer.from(ski.replace(/:/g, ""), "hex"),
      keyType: "ecdsa-p384",
      privateKey: privateKeyOf(rootKey),
    };
    inter = newTestCa("ecdsa-p256", {
      name: "org-intermediate",
      subject: { O: "Org", CN: "Org Issuing CA" },
      parent: rootIssuer,
    });
    leaf = issueLeaf(inter, "ecdsa-p256", "dual", { name: "org-leaf" });
  });

  it("ok/the intermediate is a pathlen-0 CA signed with the root's algorithm", () => {
    const t = opensslText(inter.file);
    assert.equal(fieldOf(t, "Issuer"), "O = Org, CN = Org Root");
    assert.deepEqual(fieldsOf(t, "Signature Algorithm"), ["ecdsa-with-SHA384", "ecdsa-with-SHA384"]);
    assert.deepEqual(extensionsOf(t).get("X509v3 Basic Constraints"), { critical: true, value: "CA:TRUE, pathlen:0" });
  });
  it("ok/the intermediate names its issuer: Authority Key Identifier equal to the root's SKI (RFC 5280 4.2.1.1)", () => {
    const aki = extensionsOf(opensslText(inter.file)).get("X509v3 Authority Key Identifier");
    assert.ok(aki, "a CA certificate that is not self-signed must carry an Authority Key Identifier");
    assert.equal(aki.critical, false);
    assert.equal(akiValue(aki.value), rootSki);
  });
  for (const purpose of ["sslserver", "sslclient"] as Purpose[]) {
    it(`ok/openssl verify -CAfile root -untrusted intermediate passes for ${purpose}`, () => {
      const r = opensslVerify({ caFile: rootFile, untrusted: inter.file, certFile: leaf.file, purpose });
      assert.ok(r.ok, r.output);
    });
  }
  it("fail/without the intermediate openssl cannot build the chain", () => {
    const r = opensslVerify({ caFile: rootFile, certFile: leaf.file, purpose: "sslserver" });
    assert.equal(r.ok, false);
    assert.match(r.output, /unable to get local issuer certificate/);
  });
  it("fail/an mtlskit CA (pathlen 0) cannot anchor an intermediate: path length constraint exceeded", () => {
    const mtlsRoot = caOf("ecdsa-p384");
    const sub = newTestCa("ecdsa-p256", {
      name: "sub-of-pathlen0",
      subject: { CN: "Sub CA" },
      parent: mtlsRoot.issuer,
    });
    const l = issueLeaf(sub, "ecdsa-p256", "server", { name: "leaf-of-sub" });
    const r = opensslVerify({ caFile: mtlsRoot.file, untrusted: sub.file, certFile: l.file, purpose: "sslserver" });
    assert.equal(r.ok, false);
    assert.match(r.output, /path length constraint exceeded/);
  });
});

/** pemBody is the base64 body of the first PEM block in a file (read without mtlskit's parser). */
function pemBody(file: string): string {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(readFileSync(file, "utf8"));
  assert.ok(m, `${file} holds no certificate`);
  return m[1]!.replace(/\s+/g, "");
}
