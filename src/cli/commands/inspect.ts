/** `mtlskit inspect FILE...`: certificates, chains, keys and CSRs shown readably, with their lints. */
import { parseArgs } from "node:util";
import { EXIT, UsageError } from "../../errors.ts";
import { readStreamBounded } from "../../read-file.ts";
import {
  inspectText,
  loadInspection,
  matchKeys,
  sanText,
  tally,
  type CertificateItem,
  type Inspection,
  type Item,
  type ItemLint,
  type KeyInfo,
  type Requested,
} from "../../inspect/index.ts";
import { COMMON_FLAGS, flags, parseTimeFlag } from "../args.ts";
import { paint, type Io } from "../output.ts";

/** INSPECT_HELP is the manual of `mtlskit inspect`. */
export const INSPECT_HELP = `mtlskit inspect: show certificates, chains, keys and certificate requests readably, with their lints.

USAGE
  mtlskit inspect FILE... [--json] [--at TIME]
  mtlskit inspect -              (read standard input)

Reads PEM (any labels, text around the blocks is ignored) or raw DER. For each certificate:
subject, issuer, SANs by type, usage (server, client or dual, from extendedKeyUsage), identity
(the one URI SAN), validity with days left, key type and size, SHA-256 fingerprints of the
certificate and of its public key (SPKI), extensions with criticality, and the lints that apply
to a certificate on its own, each with its fix (a CA certificate gets the CA's lints). A file
holding several certificates is read as a chain: each is checked against the next. Private keys
are described by their public half only (type, size, SPKI fingerprint; never private material),
matched against the certificates given, and flagged (weak-key) when TLS peers refuse their type
or size: RSA under 2048 bits, or over 8192 bits (Go refuses those). CSRs show what they request and whether their
signature verifies. Damaged input is named precisely: line, block and what is wrong.

FLAGS
      --json           print the result as JSON
      --at TIME        judge validity at TIME (ISO 8601, e.g. 2027-01-01) instead of now

EXAMPLES
  mtlskit inspect pki/services/api/cert.pem
  mtlskit inspect pki/services/api/cert.pem pki/services/api/key.pem    # which certificate the key belongs to
  mtlskit inspect server.csr --json | jq '.files[0].items[0].sans'
  openssl s_client -connect api:443 -showcerts </dev/null | mtlskit inspect -

EXIT CODES
  0  every file was read, and no lint at error level
  1  a lint at error level (expired, weak key, ...), or a damaged block next to readable ones
  2  invalid input: bad flags, no FILE
  3  a file could not be read, or nothing in it could be decoded
`;

async function readStdin(): Promise<Buffer> {
  return readStreamBounded(process.stdin);
}

const date = (d: Date) => d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
const row = (io: Io, name: string, value: string) => io.out(`      ${paint(io, "dim", name.padEnd(13))}${value}\n`);

function renderKey(io: Io, k: KeyInfo): void {
  row(io, "key", k.type);
  row(io, "SPKI SHA-256", k.spkiSha256);
}

function renderMatches(io: Io, matches: string[] | undefined): void {
  if (matches === undefined) return;
  row(io, "matches", matches.length > 0 ? matches.join("; ") : "none of the certificates given");
}

function renderRequested(io: Io, r: Requested): void {
  row(io, "SANs", r.sans.map(sanText).join(", ") || "none");
  row(io, "usage", r.usage);
  row(io, "key usage", r.keyUsage?.join(", ") ?? "any (no keyUsage)");
  row(io, "identity", r.identity.uri ?? r.identity.note ?? "");
  r.extensions.forEach((x, k) =>
    row(
      io,
      k === 0 ? "extensions" : "",
      `${x.name}${x.critical ? " (critical)" : ""}${x.value === undefined ? "" : `: ${x.value}`}`,
    ),
  );
}

function renderCertificate(io: Io, c: CertificateItem): void {
  row(io, "subject", c.subject || "(empty)");
  row(io, "issuer", `${c.issuer || "(empty)"}${c.selfSigned ? " (self-signed)" : ""}`);
  row(io, "serial", c.serial);
  const v = c.validity;
  row(
    io,
    "validity",
    `${date(v.notBefore)} to ${date(v.notAfter)}: ${paint(io, v.status === "valid" ? "green" : "red", v.text)}`,
  );
  renderKey(io, c.key);
  row(io, "signature", c.signatureAlgorithm);
  renderRequested(io, c);
  if (c.ca)
    row(
      io,
      "CA",
      `yes: ${c.ca.keyCertSign ? "may sign certificates" : "may NOT sign certificates (no keyCertSign)"}, ${c.ca.pathLen === undefined ? "no path length limit" : `at most ${c.ca.pathLen} CA${c.ca.pathLen === 1 ? "" : "s"} below it`}`,
    );
  row(io, "SHA-256", c.sha256);
  if (c.signedByNext !== undefined)
    row(
      io,
      "chain",
      c.signedByNext
        ? `signed by the next certificate [${c.index + 1}]`
        : paint(io, "yellow", `not signed by the next certificate [${c.index + 1}]`),
    );
  renderLints(io, c.lints);
}

function renderLints(io: Io, lints: readonly ItemLint[]): void {
  for (const l of lints) {
    io.out(
      `      ${paint(io, l.severity === "error" ? "red" : "yellow", l.severity.padEnd(7))} ${paint(io, "bold", l.code)}: ${l.message}\n              fix: ${l.change}\n`,
    );
  }
}

const TITLES: Record<Item["kind"], string> = {
  certificate: "certificate",
  "private-key": "private key",
  "public-key": "public key",
  csr: "certificate request",
  other: "other",
  problem: "cannot read",
};

function renderItem(io: Io, i: Item): void {
  const where = [
    i.line !== undefined ? `line ${i.line}` : i.offset !== undefined ? `DER at byte ${i.offset}` : "",
    i.label ?? "",
  ]
    .filter(Boolean)
    .join(", ");
  if (i.kind === "problem") return void io.out(`  [${i.index}] ${paint(io, "red", "error:")} ${i.message}\n`);
  if (i.kind === "other")
    return void io.out(
      `  [${i.index}] ${paint(io, "bold", i.label ?? "other")}${i.line === undefined ? "" : ` (line ${i.line})`}: ${i.description}\n`,
    );
  io.out(`  [${i.index}] ${paint(io, "bold", TITLES[i.kind])}${where ? ` (${where})` : ""}\n`);
  switch (i.kind) {
    case "certificate":
      return renderCertificate(io, i);
    case "private-key":
      row(
        io,
        "format",
        i.encrypted ? `${i.format} (${i.encryption}); its key type and fingerprint need the passphrase` : i.format,
      );
      if (i.key) renderKey(io, i.key);
      renderMatches(io, i.matches);
      return renderLints(io, i.lints);
    case "public-key":
      row(io, "format", i.format);
      renderKey(io, i.key);
      renderMatches(io, i.matches);
      return renderLints(io, i.lints);
    case "csr":
      row(io, "subject", i.subject || "(empty)");
      renderKey(io, i.key);
      row(
        io,
        "signature",
        `${i.signatureAlgorithm}, ${i.signature === "valid" ? paint(io, "green", "verifies") : i.signature === "invalid" ? paint(io, "red", "does NOT verify (the request was altered or signed by another key)") : i.signature}`,
      );
      renderRequested(io, i);
      if (i.attributes.length > 0) row(io, "attributes", i.attributes.join(", "));
      return renderMatches(io, i.matches);
  }
}

function renderHuman(io: Io, files: readonly Inspection[], at: Date | undefined): void {
  files.forEach((f, k) => {
    if (f.error !== undefined) return io.err(`mtlskit inspect: cannot read ${f.name}: ${f.error}\n`);
    io.out(`${k > 0 ? "\n" : ""}${paint(io, "bold", f.name)}${at ? ` (judged at ${at.toISOString()})` : ""}\n`);
    for (const i of f.items) renderItem(io, i);
    for (const n of f.notes) io.out(`  ${paint(io, "yellow", "note:")} ${n}\n`);
  });
}

/** inspectCommand runs `mtlskit inspect`. */
export async function inspectCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("inspect", () =>
    parseArgs({
      args,
      options: { ...COMMON_FLAGS, json: { type: "boolean" }, at: { type: "string" } },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(INSPECT_HELP), EXIT.ok);
  if (positionals.length === 0)
    throw new UsageError(
      "mtlskit inspect: name at least one FILE (or - for standard input). Run `mtlskit inspect --help` for usage.",
    );
  const now = values.at === undefined ? new Date() : parseTimeFlag("inspect", values.at);
  const stdin = positionals.includes("-") ? await readStdin() : undefined;
  const files = matchKeys(positionals.map((p) => (p === "-" ? inspectText(stdin!, "-", now) : loadInspection(p, now))));
  const t = tally(files);
  const code = t.unreadable > 0 ? EXIT.failed : t.errors > 0 || t.problems > 0 ? EXIT.findings : EXIT.ok;
  if (values.json) {
    // Absent values print as null, so every item of a kind has the same keys.
    io.out(
      JSON.stringify({ now: now.toISOString(), files, ...t }, (_k, v: unknown) => (v === undefined ? null : v), 2) +
        "\n",
    );
    return code;
  }
  renderHuman(io, files, values.at === undefined ? undefined : now);
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;
  const verdict =
    code === EXIT.ok ? paint(io, "green", "OK") : paint(io, "red", code === EXIT.failed ? "UNREADABLE" : "FAIL");
  const parts = [
    plural(t.errors, "error"),
    plural(t.warnings, "warning"),
    ...(t.problems ? [plural(t.problems, "damaged block")] : []),
    ...(t.unreadable ? [plural(t.unreadable, "unreadable file")] : []),
  ];
  io.out(`\n${verdict}: ${parts.join(", ")} in ${plural(files.length, "file")}.\n`);
  return code;
}
