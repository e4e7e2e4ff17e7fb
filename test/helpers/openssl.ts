/**
 * Test helpers: the openssl CLI as an independent judge of what mtlskit writes. Nothing here
 * uses mtlskit's own encoder or decoder; every answer comes from `openssl` (3.0) output.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";

/** Purpose is an `openssl verify -purpose` for the TLS ends mtlskit issues for. */
export type Purpose = "sslserver" | "sslclient";

/** VerifyOptions are the inputs of `opensslVerify`. */
export interface VerifyOptions {
  /** caFile holds the only trust anchors (the system store is never consulted). */
  caFile: string;
  /** certFile holds the certificate to verify (the first one in the file). */
  certFile: string;
  /** untrusted holds intermediates openssl may use to build the chain. */
  untrusted?: string;
  /** purpose: -purpose; omitted, openssl checks no purpose. */
  purpose?: Purpose;
  /** verifyIp / verifyHostname require the certificate to name this address. */
  verifyIp?: string;
  verifyHostname?: string;
  /** attime verifies at this moment instead of now (second precision). */
  attime?: Date;
  /** authLevel: -auth_level, the security level for keys and signature digests (openssl verify's default checks none). */
  authLevel?: number;
}

/** OpensslResult is a finished openssl run: whether it succeeded, and everything it printed. */
export interface OpensslResult {
  ok: boolean;
  output: string;
}

/** TIMEOUT_MS bounds every openssl run, so a stuck openssl fails its test instead of hanging the suite. */
const TIMEOUT_MS = 60_000;

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync("openssl", args, { encoding: "utf8", timeout: TIMEOUT_MS });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

function text(args: string[]): string {
  return execFileSync("openssl", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: TIMEOUT_MS });
}

/**
 * opensslVerify runs `openssl verify -x509_strict -purpose ...` against `caFile` alone. `ok` is
 * true only when openssl exits 0 and prints `<certFile>: OK`.
 */
export function opensslVerify(o: VerifyOptions): OpensslResult {
  const args = [
    "verify",
    "-x509_strict",
    ...(o.purpose ? ["-purpose", o.purpose] : []),
    "-no-CApath",
    "-no-CAstore",
    "-CAfile",
    o.caFile,
  ];
  if (o.untrusted !== undefined) args.push("-untrusted", o.untrusted);
  if (o.verifyIp !== undefined) args.push("-verify_ip", o.verifyIp);
  if (o.verifyHostname !== undefined) args.push("-verify_hostname", o.verifyHostname);
  if (o.attime !== undefined) args.push("-attime", String(Math.floor(o.attime.getTime() / 1000)));
  if (o.authLevel !== undefined) args.push("-auth_level", String(o.authLevel));
  args.push(o.certFile);
  const r = run(args);
  const output = r.stdout + r.stderr;
  const okLine = `${o.certFile}: OK`;
  return { ok: r.status === 0 && r.stdout.split("\n").some((l) => l.trim() === okLine), output };
}

/** opensslText is `openssl x509 -noout -text` of a PEM certificate file. */
export const opensslText = (certFile: string): string => text(["x509", "-noout", "-text", "-in", certFile]);

/** X509Info is one `openssl x509 -noout -serial -text -pubkey` run: openssl's x509 command is slow (~50 ms), so tests ask once. */
export interface X509Info {
  /** serial as `-serial` prints it: upper-case hex, no colons. */
  serial: string;
  /** text is the `-text` output. */
  text: string;
  /** pubkey is the certificate's public key as PEM. */
  pubkey: string;
}

/** opensslX509Info reads serial, text and public key of a PEM certificate file in one openssl run. */
export function opensslX509Info(certFile: string): X509Info {
  const out = text(["x509", "-noout", "-serial", "-text", "-pubkey", "-in", certFile]);
  const serial = /^serial=([0-9A-F]+)$/m.exec(out);
  const pub = out.indexOf("-----BEGIN PUBLIC KEY-----");
  if (!serial || pub < 0) throw new Error(`openssl x509 printed no serial or public key:\n${out}`);
  return { serial: serial[1]!, text: out.slice(out.indexOf("\n", serial.index) + 1, pub), pubkey: out.slice(pub) };
}

/** opensslSerial is the serial number as `openssl x509 -serial` prints it (upper-case hex, no colons). */
export function opensslSerial(certFile: string): string {
  const out = text(["x509", "-noout", "-serial", "-in", certFile]).trim();
  const m = /^serial=([0-9A-F]+)$/.exec(out);
  if (!m) throw new Error(`openssl x509 -serial printed ${JSON.stringify(out)}`);
  return m[1]!;
}

/** opensslDates is notBefore/notAfter as `openssl x509 -dates -dateopt iso_8601` prints them (`2031-05-06 07:08:09Z`). */
export function opensslDates(certFile: string): { notBefore: string; notAfter: string } {
  const out = text(["x509", "-noout", "-dates", "-dateopt", "iso_8601", "-in", certFile]);
  const nb = /^notBefore=(.+)$/m.exec(out);
  const na = /^notAfter=(.+)$/m.exec(out);
  if (!nb || !na) throw new Error(`openssl x509 -dates printed ${JSON.stringify(out)}`);
  return { notBefore: nb[1]!.trim(), notAfter: na[1]!.trim() };
}

/** opensslPubkeyOfCert is the certificate's public key as PEM (`openssl x509 -pubkey`). */
export const opensslPubkeyOfCert = (certFile: string): string => text(["x509", "-noout", "-pubkey", "-in", certFile]);

/** opensslPubkeyOfKey is the public half of a private key file as PEM (`openssl pkey -pubout`). */
export const opensslPubkeyOfKey = (keyFile: string): string => text(["pkey", "-pubout", "-in", keyFile]);

/** opensslKeyCheck runs `openssl pkey -check` on a private key file. */
export function opensslKeyCheck(keyFile: string): OpensslResult {
  const r = run(["pkey", "-check", "-noout", "-in", keyFile]);
  const output = r.stdout + r.stderr;
  return { ok: r.status === 0 && /Key is valid/.test(output), output };
}

/** Asn1Line is one line of `openssl asn1parse`: depth, header and content lengths, tag name, value. */
export interface Asn1Line {
  offset: number;
  depth: number;
  headerLength: number;
  length: number;
  constructed: boolean;
  tag: string;
  value: string;
}

/** opensslAsn1parse parses the output of `openssl asn1parse` of a PEM file. */
export function opensslAsn1parse(pemFile: string): Asn1Line[] {
  const out = text(["asn1parse", "-in", pemFile]);
  const lines: Asn1Line[] = [];
  for (const l of out.split("\n")) {
    const m = /^\s*(\d+):d=(\d+)\s+hl=(\d+)\s+l=\s*(\d+)\s+(cons|prim):\s*(.*?)\s*(?::(.*))?$/.exec(l);
    if (!m) continue;
    lines.push({
      offset: Number(m[1]),
      depth: Number(m[2]),
      headerLength: Number(m[3]),
      length: Number(m[4]),
      constructed: m[5] === "cons",
      tag: m[6]!.trim(),
      value: (m[7] ?? "").trim(),
    });
  }
  if (lines.length === 0) throw new Error(`openssl asn1parse printed nothing usable:\n${out}`);
  return lines;
}

/** opensslGenDer encodes one element from an `ASN1_generate_nconf` string, e.g. `OID:1.2.3` (openssl asn1parse -genstr). */
export function opensslGenDer(genstr: string): Buffer {
  const dir = mkdtempSync(path.join(tmpdir(), "mtlskit-genstr-"));
  try {
    const out = path.join(dir, "out.der");
    text(["asn1parse", "-genstr", genstr, "-noout", "-out", out]);
    return readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Extension is one X509v3 extension as `openssl x509 -text` prints it. */
export interface Extension {
  critical: boolean;
  /** value is the printed value, lines trimmed and joined with "\n". */
  value: string;
}

/**
 * extensionsOf reads the `X509v3 extensions:` section of `openssl x509 -text` output into a map
 * from the printed extension name ("X509v3 Key Usage") to its criticality and value, in order.
 */
export function extensionsOf(x509Text: string): Map<string, Extension> {
  const lines = x509Text.split("\n");
  const start = lines.findIndex((l) => l.trim() === "X509v3 extensions:");
  const out = new Map<string, Extension>();
  if (start < 0) return out;
  const indent = (l: string) => l.length - l.trimStart().length;
  const base = indent(lines[start]!);
  const nameIndent = indent(lines[start + 1] ?? "");
  let current: { name: string; critical: boolean; value: string[] } | undefined;
  const flush = () => {
    if (current) out.set(current.name, { critical: current.critical, value: current.value.join("\n") });
  };
  for (const l of lines.slice(start + 1)) {
    if (l.trim() === "" || indent(l) <= base) break;
    if (indent(l) === nameIndent) {
      flush();
      const m = /^(.*?):\s*(critical)?\s*$/.exec(l.trim());
      if (!m) throw new Error(`unexpected extension line ${JSON.stringify(l)}`);
      current = { name: m[1]!, critical: m[2] === "critical", value: [] };
    } else current?.value.push(l.trim());
  }
  flush();
  return out;
}

/** fieldsOf returns the values of every `Name: value` line of `openssl x509 -text`, in order. */
export function fieldsOf(x509Text: string, name: string): string[] {
  const out: string[] = [];
  for (const l of x509Text.split("\n")) {
    const t = l.trim();
    if (t.startsWith(name + ":")) out.push(t.slice(name.length + 1).trim());
  }
  return out;
}

/** fieldOf returns the value of the first `Name: value` line of `openssl x509 -text`. */
export const fieldOf = (x509Text: string, name: string): string | undefined => fieldsOf(x509Text, name)[0];

/**
 * opensslSelfSignedRoot makes an organisation's root CA the way ca.import users have them:
 * `openssl req -x509` with CA:TRUE, no pathlen, keyCertSign+cRLSign and a hash SKI.
 */
export function opensslSelfSignedRoot(o: {
  dir: string;
  keyFile: string;
  subj: string;
  days: number;
  out: string;
}): void {
  const cnf = path.join(o.dir, "root-ext.cnf");
  writeFileSync(
    cnf,
    [
      "[req]",
      "distinguished_name = dn",
      "[dn]",
      "[root]",
      "basicConstraints=critical,CA:TRUE",
      "keyUsage=critical,keyCertSign,cRLSign",
      "subjectKeyIdentifier=hash",
      "",
    ].join("\n"),
  );
  text([
    "req",
    "-x509",
    "-new",
    "-key",
    o.keyFile,
    "-subj",
    o.subj,
    "-days",
    String(o.days),
    "-sha384",
    "-config",
    cnf,
    "-extensions",
    "root",
    "-out",
    o.out,
  ]);
}

/** OpensslRoot is a self-signed root CA made by the openssl CLI: its certificate and key files (key mode 0600). */
export interface OpensslRoot {
  cert: string;
  key: string;
}

/**
 * opensslRootCa makes an organisation's root CA with the openssl CLI alone (no mtlskit code):
 * `NAME.pem` and `NAME-key.pem` (0600) in `dir`, a P-256 (or `curve`) key, basicConstraints
 * critical CA:TRUE with `pathlen` when given, keyUsage keyCertSign and cRLSign, 10 years.
 */
export function opensslRootCa(
  dir: string,
  o: { name?: string; subject?: string; curve?: string; pathlen?: number } = {},
): OpensslRoot {
  const name = o.name ?? "root";
  const cnf = path.join(dir, `${name}.cnf`);
  writeFileSync(
    cnf,
    `[root]\nbasicConstraints=critical,CA:TRUE${o.pathlen === undefined ? "" : `,pathlen:${o.pathlen}`}\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n`,
  );
  const key = path.join(dir, `${name}-key.pem`);
  const cert = path.join(dir, `${name}.pem`);
  text(["genpkey", "-algorithm", "EC", "-pkeyopt", `ec_paramgen_curve:${o.curve ?? "P-256"}`, "-out", key]);
  chmodSync(key, 0o600);
  text(
    ["req", "-x509", "-new", "-key", key, "-subj", o.subject ?? "/O=Org/CN=Org Root", "-days", "3650"].concat([
      "-extensions",
      "root",
      "-config",
      cnf,
      "-out",
      cert,
    ]),
  );
  return { cert, key };
}
