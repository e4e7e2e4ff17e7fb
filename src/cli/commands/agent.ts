/** `mtlskit agent`: hold one service's identity from the online CA: enroll, renew, follow the bundle, reload. */
import * as path from "node:path";
import { parseArgs } from "node:util";
import { agentMetricsText, createAgent, statusOf, type AgentEvent } from "../../agent/agent.ts";
import { RELOAD_TIMEOUT_MS, runReloadCommand } from "../../agent/hook.ts";
import { AGENT_FILES, fileStore, readAgentState, type AgentState } from "../../agent/store.ts";
import { EXIT, FailedError, UsageError } from "../../errors.ts";
import { KEY_TYPE_NAMES, type KeyTypeName } from "../../pki/keys.ts";
import { readTextBounded } from "../../read-file.ts";
import { COMMON_FLAGS, flags, untilSignal } from "../args.ts";
import type { Io } from "../output.ts";

export const AGENT_HELP = `mtlskit agent: hold a service's certificate from the online CA (mtlskit serve), renewed on its own.

USAGE
  mtlskit agent --server URL [--server URL ...] --service NAME --token-file FILE --out DIR
                (--ca FILE | --fingerprint SHA256) [--reload CMD] [--key-type TYPE] [--once]
  mtlskit agent --status --out DIR [--json | --metrics]

The agent generates the key on this host (it is never sent), enrolls with the single-use bootstrap
token, and writes the service layout to DIR, each file atomically: key.pem (0600), cert.pem (the
leaf and its chain), ca.pem (the trust bundle) and agent.json (its state). Services read DIR with
fileSource (mtlskit/service) or any server that reloads its files. It renews over mutual TLS with
the current certificate at 2/3 of its lifetime (less jitter), with a new key each time; on failure
it retries with exponential backoff (1 s doubling to 5 min, never longer than a quarter of the
certificate's remaining time). It fetches the trust bundle every minute and rewrites ca.pem when it
changes (a CA rotation). After each change it runs --reload with sh -c (30 s deadline), with
MTLSKIT_SERVICE, MTLSKIT_OUT, MTLSKIT_SERIAL, MTLSKIT_CERT_FILE, MTLSKIT_KEY_FILE and
MTLSKIT_CA_FILE set. It stops on SIGTERM or SIGINT.

The token is spent by the first enrollment; it is read from its file only when an enrollment needs
it and never logged. An expired certificate cannot renew: the agent says so (--status: expired)
and enrolls again only with a new token written to --token-file.

Several servers (replicas of one CA sharing its ledger; docs/online-ca.md, "Agent: several
servers"): give --server once per replica, or one comma-separated list. Every request goes to the
server that worked last, and at once to the next one when that server cannot be used (no
connection, no handshake within 5 s, no answer within 10 s, a TLS failure, 5xx, 429, 408). A
refusal (another 4xx: a used token, a revoked certificate, the policy) is the CA's answer and is
not asked of another replica. When every server failed, the backoff above applies to the whole
list. An enrollment or renewal that failed that way keeps its key and CSR (OUT/agent-request.json,
0600) and sends the same again, so a replica that recorded the certificate but could not answer
can hand it back.

Trust in the server: --ca FILE (the CA's bundle, PKI/ca/ca.pem), or --fingerprint SHA256 (of the
CA's root: openssl x509 -noout -fingerprint -sha256 -in PKI/ca/ca.pem): the first connection
verifies the presented chain up to that root and the server's name, then the root is kept in
DIR/ca.pem and the server is verified against it as usual. Verification is never skipped.

FLAGS
      --server URL          the CA, https://HOST:PORT (required); repeat it, or give a comma-separated
                            list, for replicas (at most 16), asked in that order
      --service NAME        the service, declared csr: true in the CA's manifest (required)
      --token-file FILE     the bootstrap token (mtlskit token create NAME); needed to enroll
      --out DIR             where the files are written (required; created 0700)
      --ca FILE             trust the server by this PEM bundle
      --fingerprint SHA256  trust the server by its root's SHA-256 (hex, colons allowed)
      --reload CMD          run after each change of the files (sh -c)
      --key-type TYPE       ${KEY_TYPE_NAMES.join(", ")} (default ecdsa-p256; the manifest's key type)
      --once                enroll or renew if due, fetch the bundle, then exit (for scripts and timers)
      --status              print the state in DIR/agent.json (with each server's last success, last
                            error, failures in a row, and which is current) and exit: 0 healthy,
                            1 failing or expired
      --json                with --status: the state as JSON
      --metrics             with --status: Prometheus text (health, expiry, renewal, failures, and
                            per server: current, failures in a row, last success, last error) for
                            node_exporter's textfile collector

EXAMPLES
  mtlskit agent --server https://ca.internal:8443 --service web --token-file /etc/web/token \\
    --fingerprint 3f2a…9c --out /etc/web/tls --reload 'systemctl reload nginx'
  mtlskit agent --server https://ca1.internal:8443 --server https://ca2.internal:8443 --service web \\
    --token-file /etc/web/token --fingerprint 3f2a…9c --out /etc/web/tls
  mtlskit agent --server https://127.0.0.1:8443 --service web --token-file t --ca pki/ca/ca.pem --out tls --once
  mtlskit agent --status --out /etc/web/tls
  mtlskit agent --status --out /etc/web/tls --metrics > /var/lib/node_exporter/textfile_collector/web-agent.prom
  (examples/systemd/mtlskit-agent.service runs it under systemd)

EXIT CODES
  0  success; --status: healthy
  1  --status: failing (the last attempt failed, or the reload hook did) or expired
  2  invalid input: bad flags; nothing was written
  3  could not do the job: the server refused or could not be reached (--once), the reload
     command failed (--once), unreadable files
`;

/** describeState renders agent.json for people: one line of health, then the fields that matter. */
function describeState(s: AgentState, status: string, out: string): string {
  const lines = [
    `mtlskit agent: ${s.service} is ${status}${s.server ? ` (server ${s.server}${(s.servers?.length ?? 0) > 1 ? `, first of ${s.servers!.length}` : ""})` : ""}`,
  ];
  if (s.serial) lines.push(`  certificate  serial ${s.serial}, valid ${s.notBefore} to ${s.notAfter}`);
  if (s.renewAfter) lines.push(`  renewal      after ${s.renewAfter}`);
  if (s.nextAttempt) lines.push(`  next attempt ${s.nextAttempt}`);
  if (s.lastSuccess) lines.push(`  last success ${s.lastSuccess}`);
  if (s.lastError)
    lines.push(
      `  last error   ${s.lastError.at} (${s.lastError.code}, ${s.failures} in a row): ${s.lastError.message}`,
    );
  for (const x of s.servers ?? []) {
    const facts = [
      x.url === s.server ? "current" : undefined,
      x.failures > 0 ? `${x.failures} failure${x.failures === 1 ? "" : "s"} in a row` : undefined,
      x.lastSuccess ? `last success ${x.lastSuccess}` : "no success yet",
    ].filter((f) => f !== undefined);
    lines.push(`  server       ${x.url}: ${facts.join(", ")}`);
    if (x.lastError)
      lines.push(
        `               last error ${x.lastError.at} (${x.lastError.code}): ${x.lastError.message.replace(/^agent: /, "").split("\n")[0]}`,
      );
  }
  if (s.reload) lines.push(`  reload       ${s.reload.at}: ${s.reload.ok ? "ok" : "FAILED"}, ${s.reload.message}`);
  lines.push(
    `  files        ${path.join(out, AGENT_FILES.cert.name)}, ${AGENT_FILES.key.name}, ${AGENT_FILES.ca.name}`,
  );
  if (status === "expired")
    lines.push("Next: write a new token (mtlskit token create SERVICE) to --token-file; the agent enrolls again.");
  else if (status === "failing") lines.push("Next: see the last error; the agent keeps retrying with backoff.");
  return `${lines.join("\n")}\n`;
}

/** eventLine words an agent event for the log (stderr): never a key or a token. */
function eventLine(service: string, e: AgentEvent): string {
  switch (e.kind) {
    case "enrolled":
    case "renewed":
      return `mtlskit agent: ${e.kind} ${service}: serial ${e.serial}, valid until ${e.notAfter}; renews after ${e.renewAfter}`;
    case "bundle":
      return `mtlskit agent: ${service}: the trust bundle changed (${e.sha256.length} CA${e.sha256.length === 1 ? "" : "s"}); ca.pem rewritten`;
    case "reload":
      return `mtlskit agent: ${service}: reload ${e.ok ? "ran" : "FAILED"}: ${e.message}`;
    case "failover":
      return `mtlskit agent: ${service}: ${e.server} could not be used (${e.code}); trying ${e.next}`;
    case "error":
      return `mtlskit agent: ${service}: ${e.message.replace(/^agent: /, "")}\n  retrying in ${Math.round(e.retryInMs / 100) / 10} s`;
  }
}

/** agentCommand runs `mtlskit agent`. */
export async function agentCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("agent", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        server: { type: "string", multiple: true },
        service: { type: "string" },
        "token-file": { type: "string" },
        out: { type: "string" },
        ca: { type: "string" },
        fingerprint: { type: "string" },
        reload: { type: "string" },
        "key-type": { type: "string" },
        once: { type: "boolean" },
        status: { type: "boolean" },
        json: { type: "boolean" },
        metrics: { type: "boolean" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(AGENT_HELP), EXIT.ok);
  if (positionals.length > 0)
    throw new UsageError(
      `mtlskit agent: unexpected argument ${JSON.stringify(positionals[0])}; every input is a flag (see --help)`,
    );
  if (values.out === undefined)
    throw new UsageError("mtlskit agent: --out DIR is required: where the key, certificate, bundle and state are");
  const out = values.out;

  if (values.status) {
    const other = (
      ["server", "service", "token-file", "ca", "fingerprint", "reload", "key-type", "once"] as const
    ).filter((k) => values[k] !== undefined);
    if (other.length > 0)
      throw new UsageError(
        `mtlskit agent: --status reads DIR/agent.json only; --${other[0]} has no effect with it (drop one of the two)`,
      );
    if (values.json && values.metrics)
      throw new UsageError("mtlskit agent: --json and --metrics are two output formats; give one of the two");
    const s = readAgentState(out);
    const status = statusOf(s, Date.now());
    if (values.metrics) io.out(agentMetricsText(s, Date.now()));
    else if (values.json) io.out(`${JSON.stringify({ ...s, status }, null, 2)}\n`);
    else io.out(describeState(s, status, out));
    return status === "healthy" ? EXIT.ok : EXIT.findings;
  }
  if (values.json || values.metrics)
    throw new UsageError(`mtlskit agent: --${values.json ? "json" : "metrics"} goes with --status only`);

  for (const k of ["server", "service"] as const)
    if (values[k] === undefined) throw new UsageError(`mtlskit agent: --${k} is required (see mtlskit agent --help)`);
  // --server repeats, and each may be a comma-separated list: https://a:8443,https://b:8443.
  const servers = values.server!.flatMap((v) => v.split(",")).map((v) => v.trim());
  if (servers.some((v) => v === ""))
    throw new UsageError(
      `mtlskit agent: --server ${JSON.stringify(values.server!.join(","))} has an empty entry; give URLs separated by commas, or --server once per URL`,
    );
  if (values.ca !== undefined && values.fingerprint !== undefined)
    throw new UsageError("mtlskit agent: --ca and --fingerprint both say how to trust the server; give one of the two");
  const keyType = values["key-type"] ?? "ecdsa-p256";
  if (!(KEY_TYPE_NAMES as string[]).includes(keyType))
    throw new UsageError(
      `mtlskit agent: --key-type must be one of ${KEY_TYPE_NAMES.join(", ")}; got ${JSON.stringify(keyType)}`,
    );

  const readInput = (file: string, what: string, limit: number) => {
    try {
      return readTextBounded(file, { limit });
    } catch (e) {
      throw new FailedError(
        `mtlskit agent: cannot read ${what} ${file}: ${(e as { reason?: string }).reason ?? (e as Error).message}`,
        { cause: e },
      );
    }
  };
  const ca = values.ca === undefined ? undefined : readInput(values.ca, "the --ca bundle", 1024 * 1024);
  const tokenFile = values["token-file"];
  const token = () => (tokenFile === undefined ? undefined : readInput(tokenFile, "the token file", 4096).trim());
  const store = fileStore(out);
  const reloadCmd = values.reload;
  const service = values.service!;

  const agent = createAgent({
    servers,
    service,
    token,
    ...(ca !== undefined ? { ca } : {}),
    ...(values.fingerprint !== undefined ? { fingerprint: values.fingerprint } : {}),
    keyType: keyType as KeyTypeName,
    store,
    ...(reloadCmd === undefined
      ? {}
      : {
          reload: (c) =>
            runReloadCommand(
              reloadCmd,
              {
                MTLSKIT_SERVICE: service,
                MTLSKIT_OUT: path.resolve(out),
                MTLSKIT_SERIAL: c.leaf.serialHex,
                MTLSKIT_CERT_FILE: path.resolve(out, AGENT_FILES.cert.name),
                MTLSKIT_KEY_FILE: path.resolve(out, AGENT_FILES.key.name),
                MTLSKIT_CA_FILE: path.resolve(out, AGENT_FILES.ca.name),
              },
              RELOAD_TIMEOUT_MS,
            ),
        }),
    onEvent: (e) => {
      if (!values.once || e.kind !== "error") io.err(`${eventLine(service, e)}\n`);
    },
  });

  if (values.once) {
    const r = await agent.step();
    await agent.stop();
    if (r.error) {
      const expired = r.state.status === "expired" ? ` Its certificate expired at ${r.state.notAfter}.` : "";
      throw new FailedError(
        `${r.error.message.replace(/^agent: /, "mtlskit agent: ")}${expired ? `\n   ${expired}` : ""}`,
        { cause: r.error },
      );
    }
    const s = r.state;
    if (s.reload?.ok === false)
      throw new FailedError(
        `mtlskit agent: ${service}'s files are in ${out} (serial ${s.serial}), but the reload command failed: ${s.reload.message}\n    fix: correct --reload (it runs with sh -c); the next run tries it again`,
      );
    io.out(
      r.did === "nothing"
        ? `mtlskit agent: ${service} holds serial ${s.serial}, valid until ${s.notAfter}; not due (renews after ${s.renewAfter}).\n`
        : `mtlskit agent: ${r.did === "bundle" ? "rewrote the trust bundle for" : r.did} ${service}: serial ${s.serial}, valid until ${s.notAfter}, renews after ${s.renewAfter}; files in ${out}.\n`,
    );
    return EXIT.ok;
  }

  // The loop: until SIGTERM or SIGINT.
  agent.start();
  await untilSignal();
  await agent.stop();
  io.err(`mtlskit agent: ${service}: stopped.\n`);
  return EXIT.ok;
}
