/** `mtlskit probe`: connect to a live endpoint as a service and say what it presents and demands. */
import { isIP } from "node:net";
import { parseArgs } from "node:util";
import { Material } from "../../check/index.ts";
import { EXIT, FailedError, UsageError } from "../../errors.ts";
import { readTextBounded } from "../../read-file.ts";
import { classifyAddress, loadManifest, type Manifest } from "../../manifest/index.ts";
import {
  briefly,
  judgeClient,
  judgeProbe,
  listen,
  loadProbeFiles,
  observe,
  pathsOf,
  PROBE_CODES,
  type ClientReport,
  type Diagnosis,
  type ProbePaths,
  type ProbeReport,
} from "../../probe/index.ts";
import { COMMON_FLAGS, flags, parseListen } from "../args.ts";
import { paint, type Io } from "../output.ts";
import { renderWarnings } from "./shared.ts";

/** PROBE_HELP is the manual of `mtlskit probe`. */
export const PROBE_HELP = `mtlskit probe: connect to a live TLS endpoint as a service, and say what it presents and demands.

USAGE
  mtlskit probe HOST:PORT --as SERVICE [-f FILE] [--pki DIR] [--servername NAME] [--json] [--timeout SECONDS]
  mtlskit probe HOST:PORT --cert CERT --key KEY --ca BUNDLE [--json] [--timeout SECONDS]
  mtlskit probe --listen [HOST:]PORT --as SERVICE [-f FILE] [--pki DIR] [--count N] [--timeout SECONDS] [--json]

Connects twice, sending no application data:
  1. without a client certificate: does the server demand one? A server that completes the
     handshake and keeps the connection is a finding (server-accepts-anonymous);
  2. with the service's certificate (its client.pem for a split pair): the negotiated protocol,
     cipher and ALPN; the server's chain as presented (subject, issuer, notAfter, SHA-256);
     the chain against the service's trust bundle, serverAuth and keyUsage (a warning,
     server-usage-strict, where only GnuTLS and Java clients would refuse), the SANs against the
     dialed address, the days left; and, with the manifest, the server's identity (its one URI SAN):
     which declared service it is, and whether a connection SERVICE -> it at HOST is declared.
A failed handshake is shown as Node/OpenSSL reported it, with \`mtlskit explain\`'s reading: which
side refused what, why, and the fix. The client never trusts blindly: it accepts whatever the
server presents in order to see it, then judges it as \`mtlskit check\` would.

With --listen it does the reverse: a TLS server with the service's certificate (host 127.0.0.1
unless named; port 0 picks a free one, printed as "listening on HOST:PORT") that requests, but
neither requires nor verifies, a client certificate, so it sees whatever a client presents. For
each client (up to --count, default 1): protocol, cipher, the SNI name and ALPN it sent, whether it
presented a certificate (client-anonymous), its chain against the service's bundle with clientAuth
(client-untrusted, client-usage, client-usage-strict, client-validity), and its identity: which service it is
(client-identity when none) and whether a connection CLIENT -> SERVICE is declared
(connection-undeclared). Each connection is closed after the handshake; nothing is sent; one that
has not finished its handshake within 10 s is dropped. --timeout bounds the wait for each client
(default: no limit).

FLAGS
      --as SERVICE       the manifest's service to connect as
  -f, --file FILE        manifest (default mtlskit.yaml)
      --pki DIR          PKI directory of managed services (default ./pki)
      --cert CERT        instead of --as: the client certificate (PEM, leaf first)
      --key KEY          its private key
      --ca BUNDLE        the trust bundle to judge the server's chain with
      --servername NAME  send NAME as SNI and verify the server's SANs (and the declared connection) against it,
                         not HOST: a name reached through an IP, a proxy or a tunnel
      --timeout SECONDS  bound on each connection attempt (default 5); with --listen, on the wait for each client
      --listen [HOST:]PORT  serve as SERVICE and judge the clients that connect
      --count N          with --listen: how many clients to judge before exiting (default 1)
      --json             the report as JSON
      --codes            list probe's finding codes, then exit

EXAMPLES
  mtlskit probe 127.0.0.1:8443 --as worker
  mtlskit probe 192.168.2.23:50052 --as checker -f examples/serviceradar.yaml --pki ./pki
  mtlskit probe db.internal:5432 --cert client.pem --key client-key.pem --ca root.pem --json
  mtlskit probe --listen 8443 --as api --count 3

EXIT CODES
  0  no findings at error level (warnings may be printed)
  1  findings at error level: the server accepts anonymous clients, refused our certificate,
     presents a certificate the service would refuse, or is not the service the manifest says
  2  invalid input: bad flags, HOST:PORT, or an invalid manifest
  3  could not connect at all (nothing listens, no route, the name does not resolve, no TCP
     answer in time), or the service's files cannot be read; with --listen, no client connected
     before --timeout
`;

/** parseTarget splits HOST:PORT ([v6]:PORT for IPv6). */
function parseTarget(text: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535)
    throw new UsageError(
      `mtlskit probe: ${JSON.stringify(text)} is not HOST:PORT (e.g. 10.0.0.5:8443, api.internal:443, [2001:db8::1]:8443)`,
    );
  return { host: m[1]!, port };
}

/** probeCommand runs `mtlskit probe`. */
export async function probeCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("probe", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        as: { type: "string" },
        file: { type: "string", short: "f" },
        pki: { type: "string" },
        cert: { type: "string" },
        key: { type: "string" },
        ca: { type: "string" },
        timeout: { type: "string" },
        json: { type: "boolean" },
        codes: { type: "boolean" },
        listen: { type: "string" },
        count: { type: "string" },
        servername: { type: "string" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(PROBE_HELP), EXIT.ok);
  if (values.codes) {
    for (const [code, info] of Object.entries(PROBE_CODES))
      io.out(`${code.padEnd(25)} ${info.severity.padEnd(7)} ${info.title}\n`);
    return EXIT.ok;
  }
  if (values.servername !== undefined) {
    if (values.listen !== undefined)
      throw new UsageError("mtlskit probe: --servername is what a client sends; with --listen the clients choose it");
    const a = classifyAddress(values.servername);
    if ("error" in a || a.kind !== "dns")
      throw new UsageError(
        `mtlskit probe: --servername must be a DNS name (SNI never carries an IP: to verify an IP SAN, dial that IP); got ${JSON.stringify(values.servername)}${"error" in a ? `: it ${a.error}` : ""}`,
      );
  }
  if (values.listen !== undefined) return listenCommand(values, positionals, io);
  if (values.count !== undefined) throw new UsageError("mtlskit probe: --count goes with --listen");
  if (positionals.length !== 1)
    throw new UsageError(
      `mtlskit probe: ${positionals.length === 0 ? "name the endpoint: mtlskit probe HOST:PORT --as SERVICE" : `one endpoint at a time; got ${positionals.join(" ")}`}`,
    );
  const { host, port } = parseTarget(positionals[0]!);
  const explicit = (["cert", "key", "ca"] as const).filter((k) => values[k] !== undefined);
  if (values.as !== undefined && explicit.length > 0)
    throw new UsageError(
      `mtlskit probe: --as is incompatible with --${explicit[0]}; connect as a manifest's service, or with explicit files, not both`,
    );
  if (values.as === undefined && explicit.length === 0)
    throw new UsageError(
      "mtlskit probe: say who connects: --as SERVICE (with -f FILE and --pki DIR), or --cert CERT --key KEY --ca BUNDLE",
    );
  if (explicit.length > 0 && explicit.length < 3)
    throw new UsageError(
      `mtlskit probe: --cert, --key and --ca go together; missing ${(["cert", "key", "ca"] as const)
        .filter((k) => values[k] === undefined)
        .map((k) => `--${k}`)
        .join(", ")}`,
    );
  if (explicit.length > 0 && (values.file !== undefined || values.pki !== undefined))
    throw new UsageError(
      `mtlskit probe: -f/--pki name the manifest of --as; with --cert, --key and --ca they are not used`,
    );
  const timeout = values.timeout === undefined ? 5 : Number(values.timeout);
  if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 300)
    throw new UsageError(
      `mtlskit probe: --timeout must be a number of seconds between 0 and 300, e.g. 5 or 0.5; got ${JSON.stringify(values.timeout)}`,
    );

  let manifest: Manifest | undefined;
  let paths: ProbePaths;
  if (values.as !== undefined) {
    const file = values.file ?? "mtlskit.yaml";
    const loaded = loadManifest(file);
    if (!values.json) renderWarnings(io, loaded.warnings);
    manifest = loaded.manifest;
    paths = pathsOf(manifest, values.as, values.pki ?? "./pki");
  } else paths = { cert: values.cert!, key: values.key!, ca: values.ca! };
  const material = new Material();
  const files = loadProbeFiles(material, paths);
  const sni = values.servername ?? (isIP(host) ? undefined : host);
  const seen = await observe(
    { host, port, ...(sni === undefined ? {} : { servername: sni }), timeoutMs: timeout * 1000 },
    files.credentials,
  );
  const report = judgeProbe({
    host,
    port,
    ...(values.servername === undefined ? {} : { servername: values.servername }),
    as: values.as,
    bundle: files.bundle,
    bundlePath: files.paths.ca,
    manifest,
    ...seen,
    now: new Date(),
    material,
  });
  if (values.json) io.out(JSON.stringify(probeJson(report), null, 2) + "\n");
  else renderHuman(io, report, files.paths);
  return report.unreachable ? EXIT.failed : report.errors > 0 ? EXIT.findings : EXIT.ok;
}

type ProbeValues = {
  as?: string;
  file?: string;
  pki?: string;
  cert?: string;
  key?: string;
  ca?: string;
  timeout?: string;
  json?: boolean;
  listen?: string;
  count?: string;
};

/** listenCommand runs `mtlskit probe --listen`: serve as the service and judge each client that connects. */
async function listenCommand(values: ProbeValues, positionals: string[], io: Io): Promise<number> {
  if (positionals.length > 0)
    throw new UsageError(`mtlskit probe: --listen takes no endpoint; got ${positionals.join(" ")}`);
  const { host, port } = parseListen("probe", values.listen!);
  const explicit = (["cert", "key", "ca"] as const).filter((k) => values[k] !== undefined);
  if (values.as !== undefined && explicit.length > 0)
    throw new UsageError(
      `mtlskit probe: --as is incompatible with --${explicit[0]}; serve as a manifest's service, or with explicit files, not both`,
    );
  if (values.as === undefined && explicit.length === 0)
    throw new UsageError(
      "mtlskit probe: say who listens: --listen PORT --as SERVICE (with -f FILE and --pki DIR), or --cert CERT --key KEY --ca BUNDLE",
    );
  if (explicit.length > 0 && explicit.length < 3)
    throw new UsageError(
      `mtlskit probe: --cert, --key and --ca go together; missing ${(["cert", "key", "ca"] as const)
        .filter((k) => values[k] === undefined)
        .map((k) => `--${k}`)
        .join(", ")}`,
    );
  const count = values.count === undefined ? 1 : Number(values.count);
  if (!Number.isInteger(count) || count < 1 || count > 1000)
    throw new UsageError(
      `mtlskit probe: --count must be a whole number from 1 to 1000; got ${JSON.stringify(values.count)}`,
    );
  const timeout = values.timeout === undefined ? undefined : Number(values.timeout);
  if (timeout !== undefined && (!Number.isFinite(timeout) || timeout <= 0 || timeout > 86400))
    throw new UsageError(
      `mtlskit probe: --timeout must be a number of seconds between 0 and 86400, e.g. 30 or 0.5; got ${JSON.stringify(values.timeout)}`,
    );

  let manifest: Manifest | undefined;
  let paths: ProbePaths;
  if (values.as !== undefined) {
    const loaded = loadManifest(values.file ?? "mtlskit.yaml");
    if (!values.json) renderWarnings(io, loaded.warnings);
    manifest = loaded.manifest;
    paths = pathsOf(manifest, values.as, values.pki ?? "./pki", "server");
  } else paths = { cert: values.cert!, key: values.key!, ca: values.ca! };
  const material = new Material();
  const files = loadProbeFiles(material, paths);
  let server;
  try {
    server = await listen({ host, port, credentials: files.credentials, bundlePem: readTextBounded(files.paths.ca) });
  } catch (e) {
    throw new FailedError(`mtlskit probe: cannot listen on ${host}:${port}: ${(e as Error).message}`, { cause: e });
  }
  const reports: ClientReport[] = [];
  try {
    const where = `${host.includes(":") ? `[${host}]` : host}:${server.port}`;
    const line = `listening on ${where}${values.as ? ` as ${values.as}` : ""} (${files.paths.cert}; judging clients with ${files.paths.ca}), for ${count} client${count === 1 ? "" : "s"}\n`;
    // In --json mode stdout carries only the JSON array; the address goes to stderr.
    if (values.json) io.err(line);
    else io.out(line);
    while (reports.length < count) {
      const seen = await server.next(timeout === undefined ? undefined : timeout * 1000);
      if (!seen) break;
      const report = judgeClient({
        seen,
        as: values.as,
        bundle: files.bundle,
        bundlePath: files.paths.ca,
        manifest,
        now: new Date(),
        material,
      });
      reports.push(report);
      if (!values.json) renderClient(io, report);
    }
  } finally {
    await server.close();
  }
  if (values.json) io.out(JSON.stringify(reports.map(clientJson), null, 2) + "\n");
  if (reports.length < count)
    io.err(
      `mtlskit probe: ${reports.length === 0 ? "no client connected" : `only ${reports.length} of ${count} clients connected`} within ${timeout} s\n`,
    );
  if (reports.length === 0) return EXIT.failed;
  return reports.some((r) => r.errors > 0) ? EXIT.findings : EXIT.ok;
}

/** clientJson is one client's `--json` form. */
export function clientJson(r: ClientReport) {
  return {
    client: r.remote,
    as: r.as ?? null,
    now: r.now.toISOString(),
    session: {
      protocol: r.session.protocol ?? null,
      cipher: r.session.cipher ?? null,
      servername: r.session.servername ?? null,
      alpn: r.session.alpn ?? null,
    },
    certificatePresented: r.presented,
    chain: r.chain.map((c) => ({ ...c, notAfter: c.notAfter.toISOString() })),
    verification: r.verification ?? null,
    identity: r.identity
      ? {
          uri: r.identity.uri ?? null,
          problem: r.identity.problem ?? null,
          service: r.identity.service ?? null,
          connectionDeclared: r.identity.declared ?? null,
        }
      : null,
    summary: { errors: r.errors, warnings: r.warnings },
    findings: r.findings,
  };
}

function renderClient(io: Io, r: ClientReport): void {
  io.out(`\n${paint(io, "bold", `client ${r.remote}`)}\n`);
  const s = r.session;
  io.out(`  ${s.protocol}, ${s.cipher}, SNI ${s.servername ?? "none"}, ALPN ${s.alpn ?? "none"}\n`);
  if (!r.presented) io.out(`  certificate: ${paint(io, "red", "NONE")}\n`);
  r.chain.forEach((c, i) => {
    io.out(
      `  ${i}: ${c.subject || "(empty subject)"}\n     issuer ${c.issuer}; notAfter ${c.notAfter.toISOString().slice(0, 10)} (${c.daysLeft} days left)\n     sha256 ${c.sha256}\n${i === 0 ? `     SANs ${c.sans}\n` : ""}`,
    );
  });
  const v = r.verification;
  if (v)
    io.out(
      `  verification: ${v.trusted ? `${paint(io, "green", "trusted")} (${v.path.join(" <- ")})` : `${paint(io, "red", "UNTRUSTED")}: ${v.reason}`}\n`,
    );
  const id = r.identity;
  if (id)
    io.out(
      `  identity: ${id.uri ?? `none (${id.problem})`}${id.service ? ` = service ${id.service}` : ""}${id.declared === true ? `, connection ${id.service} -> ${r.as} declared` : id.declared === false ? `, no connection ${id.service} -> ${r.as} declared` : ""}\n`,
    );
  for (const f of [
    ...r.findings.filter((x) => x.severity === "error"),
    ...r.findings.filter((x) => x.severity !== "error"),
  ]) {
    io.out(
      `  ${paint(io, SEVERITY_COLOR[f.severity], f.severity.padEnd(7))} ${paint(io, "bold", f.code)}: ${f.message}\n          fix: ${f.fix}\n`,
    );
  }
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;
  io.out(
    `${r.errors === 0 ? paint(io, "green", "OK") : paint(io, "red", "FAIL")}: ${plural(r.errors, "error")}, ${plural(r.warnings, "warning")} from ${r.remote}.\n`,
  );
}

/** probeJson is the `--json` form: stable field names, ISO dates. */
export function probeJson(r: ProbeReport) {
  return {
    target: { host: r.host, port: r.port, servername: r.servername ?? null },
    as: r.as ?? null,
    now: r.now.toISOString(),
    reachable: r.unreachable === undefined,
    unreachable: r.unreachable ?? null,
    clientCertificate: r.clientCertificate,
    session: { ...r.session, failure: r.session.failure ?? null },
    chain: r.chain.map((c) => ({ ...c, notAfter: c.notAfter.toISOString() })),
    verification: r.verification ?? null,
    identity: r.identity ?? null,
    summary: { errors: r.errors, warnings: r.warnings },
    findings: r.findings,
  };
}

/** unreachableWords says, for a connection that never reached TCP, what that means in plain words. */
function unreachableWords(r: ProbeReport, d: Diagnosis): string {
  const where = `${r.host}:${r.port}`;
  const lead =
    d.code === "ECONNREFUSED"
      ? `nothing listens on ${where}`
      : d.code === "ENOTFOUND" || d.code === "EAI_AGAIN"
        ? `the name ${r.host} does not resolve`
        : d.code === "ETIMEDOUT"
          ? `no TCP answer from ${where} in time (a firewall dropping packets, or a wrong address)`
          : d.code === "EHOSTUNREACH" || d.code === "ENETUNREACH"
            ? `no route to ${r.host}`
            : `cannot connect to ${where}`;
  return `${lead} (${d.code}); not a TLS problem: the handshake never started.${d.explained ? ` ${d.explained.fix}` : ""}`;
}

const SEVERITY_COLOR = { error: "red", warning: "yellow" } as const;

function renderHuman(io: Io, r: ProbeReport, paths: ProbePaths): void {
  const where = `${r.host}:${r.port}`;
  io.out(
    `mtlskit probe: ${where}${r.servername ? ` (SNI ${r.servername})` : ""}${r.as ? ` as ${r.as}` : ""} (${paths.cert}; trusting ${paths.ca})\n`,
  );
  if (r.unreachable) {
    io.out(`\n${paint(io, "red", "UNREACHABLE")}: ${unreachableWords(r, r.unreachable)}\n`);
    return;
  }
  const section = (t: string) => io.out(`\n${paint(io, "bold", t)}\n`);
  section("without a client certificate");
  io.out(
    `  ${r.clientCertificate.demanded ? paint(io, "green", "demanded") : paint(io, "red", "NOT DEMANDED")}: ${r.clientCertificate.how}\n`,
  );
  section(`with ${r.as ? `${r.as}'s` : "our"} certificate`);
  const s = r.session;
  if (s.ok) io.out(`  ${paint(io, "green", "accepted")}: ${s.protocol}, ${s.cipher}, ALPN ${s.alpn ?? "none"}\n`);
  else {
    const f = s.failure!;
    io.out(
      `  ${paint(io, "red", "FAILED")}${s.protocol ? ` after a ${s.protocol} handshake (${s.cipher})` : ""}: ${briefly(f)}\n`,
    );
    if (f.explained) {
      io.out(`    explain: ${f.explained.id}: ${f.explained.title}.\n`);
      if (f.explained.meaning) io.out(`    ${f.explained.meaning}\n`);
      io.out(`    cause: ${f.explained.cause}\n    fix: ${f.explained.fix}\n`);
    }
  }
  if (r.chain.length > 0) {
    section("server's chain as presented");
    r.chain.forEach((c, i) => {
      io.out(
        `  ${i}: ${c.subject || "(empty subject)"}\n     issuer ${c.issuer}; notAfter ${c.notAfter.toISOString().slice(0, 10)} (${c.daysLeft} days left)\n     sha256 ${c.sha256}\n${i === 0 ? `     SANs ${c.sans}\n` : ""}`,
      );
    });
    const v = r.verification!;
    io.out(
      `  verification against ${paths.ca}: ${v.trusted ? `${paint(io, "green", "trusted")} (${v.path.join(" <- ")})` : `${paint(io, "red", "UNTRUSTED")}: ${v.reason}`}\n`,
    );
    if (r.identity)
      io.out(
        `  identity: ${r.identity.uri ?? `none (${r.identity.problem})`}${r.identity.service ? ` = service ${r.identity.service}` : ""}\n`,
      );
  }
  if (r.findings.length > 0) {
    section("findings");
    for (const f of [
      ...r.findings.filter((x) => x.severity === "error"),
      ...r.findings.filter((x) => x.severity !== "error"),
    ]) {
      io.out(
        `  ${paint(io, SEVERITY_COLOR[f.severity], f.severity.padEnd(7))} ${paint(io, "bold", f.code)}: ${f.message}\n          fix: ${f.fix}\n`,
      );
    }
  }
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;
  io.out(
    `\n${r.errors === 0 ? paint(io, "green", "OK") : paint(io, "red", "FAIL")}: ${plural(r.errors, "error")}, ${plural(r.warnings, "warning")} at ${where}.\n`,
  );
}
