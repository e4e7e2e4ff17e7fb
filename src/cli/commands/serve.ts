/** `mtlskit serve`: the online CA (src/server/), until SIGTERM or SIGINT. */
import { parseArgs } from "node:util";
import { EXIT, UsageError } from "../../errors.ts";
import { parseManifest, readManifestText } from "../../manifest/index.ts";
import { COMMON_FLAGS, flags, parseListen, untilSignal } from "../args.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import { paintErr, type Io } from "../output.ts";
import { LEDGER_FLAG, LEDGER_FLAG_HELP, PKI_FLAGS } from "./shared.ts";

/**
 * LISTEN: the default address, startServer's DEFAULT_LISTEN (loopback). Spelled here because the
 * server is imported only when serve runs: Fastify and prom-client cost every other command about
 * 250 ms of start-up (measured: 182 ms and 64 ms to import).
 */
const LISTEN = "127.0.0.1:8443";

/** MAX_WORKERS bounds --workers: more processes than this only add memory and context switches. */
const MAX_WORKERS = 64;

/**
 * DEFAULT_WORKERS: one process unless --workers says more. Measured (bench/serve.bench.ts
 * --workers 1,2, same run, 2 vCPUs shared with the load generator): two workers cost about twice
 * the server CPU per certificate and ran at about half the rate; see docs/online-ca.md (Workers).
 * Re-measure on the target machine before raising it.
 */
export const DEFAULT_WORKERS = 1;

/** MAX_DNS_RESOLVERS bounds --acme-dns-resolver (node:dns asks them in turn; more only lengthen a failing validation). */
const MAX_DNS_RESOLVERS = 4;

/**
 * parseResolvers reads every --acme-dns-resolver: IP[:PORT], at most MAX_DNS_RESOLVERS. The
 * validator's module (node:tls, node:http, node:dns) is imported only when the flag is given,
 * like the server: every other command starts without it.
 */
async function parseResolvers(texts: string[]): Promise<string[]> {
  if (texts.length === 0) return [];
  const { parseDnsResolver } = await import("../../acme/validate.ts");
  if (texts.length > MAX_DNS_RESOLVERS)
    throw new UsageError(
      `mtlskit serve: --acme-dns-resolver is given ${texts.length} times; at most ${MAX_DNS_RESOLVERS} resolvers are asked`,
    );
  return texts.map((t) => {
    const r = parseDnsResolver(t);
    if (r === undefined)
      throw new UsageError(
        `mtlskit serve: --acme-dns-resolver takes IP[:PORT] (an IPv6 address with a port in brackets: [::1]:5353); got ${JSON.stringify(t)}\n    fix: name the DNS server dns-01 validation asks, by address (a name would itself need a resolver)`,
      );
    return r;
  });
}

/** parseWorkers reads --workers: an integer from 1 to MAX_WORKERS. */
function parseWorkers(text: string | undefined): number {
  if (text === undefined) return DEFAULT_WORKERS;
  const n = /^\d{1,3}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= MAX_WORKERS))
    throw new UsageError(
      `mtlskit serve: --workers must be a whole number from 1 (one process) to ${MAX_WORKERS}; got ${JSON.stringify(text)}`,
    );
  return n;
}

/** MAX_SIGNER_THREADS_FLAG bounds --signer-threads (server/signer.ts MAX_SIGNER_THREADS). */
const MAX_SIGNER_THREADS_FLAG = 16;

/** parseSignerThreads reads --signer-threads: an integer from 0 (sign on the event loop) to MAX_SIGNER_THREADS_FLAG. */
function parseSignerThreads(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = /^\d{1,2}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 0 && n <= MAX_SIGNER_THREADS_FLAG))
    throw new UsageError(
      `mtlskit serve: --signer-threads must be a whole number from 0 (sign on the event loop) to ${MAX_SIGNER_THREADS_FLAG}; got ${JSON.stringify(text)}`,
    );
  return n;
}

export const SERVE_HELP = `mtlskit serve: the online CA: agents enroll with a token and renew with their certificate.

USAGE
  mtlskit serve [-f FILE] [--pki DIR] [--ledger SPEC] [--listen 127.0.0.1:8443] [--workers N] [--signer-threads N] [--ui] [--log]
                [--acme-dns-resolver IP[:PORT] ...]

Issues short-lived certificates over HTTPS to the manifest's csr: true services, whose keys are
made on their own hosts (\`mtlskit agent\`) and never sent. Every certificate carries exactly the
service's SANs, identity URI and usage, for its ttl (default 1h, at most serve.maxTtl), and is
recorded in the ledger (DIR/ca/ledger.db) before it is returned. The server's own TLS certificate
is issued from the CA in memory (SANs: the listen address and localhost) and renewed by itself.

API (docs/online-ca.md): POST /v1/enroll (token + CSR), POST /v1/renew (mTLS + CSR), POST
/v1/revoke (mTLS, serve.admins only), GET /v1/bundle, /v1/crl, /v1/health, /metrics.
ACME (RFC 8555, README "ACME"): https://HOST:PORT/acme/directory, for certbot, lego and
cert-manager, with External Account Binding keys from \`mtlskit token create SERVICE --acme\`.

Several replicas (docs/online-ca.md, "Running several CA replicas"): each runs serve with its own
copy of DIR/ca (the CA key is never put in the database) and the same --ledger
postgres://USER@HOST:PORT/DB (password from PGPASSWORD or ~/.pgpass). Schema migrations are applied
on start. While PostgreSQL is down every issuance answers 503 and nothing is issued unrecorded.

It prints the URL and the root's SHA-256, which agents pass as --fingerprint on first contact.
SIGTERM or SIGINT stops it: in-flight requests finish, the ledger is closed.

FLAGS
  -f, --file FILE      manifest (default mtlskit.yaml)
      --pki DIR        PKI directory holding the CA (default ./pki; run \`mtlskit apply\` first)
${LEDGER_FLAG_HELP}
      --listen ADDR    [HOST:]PORT to listen on (default ${LISTEN}, this host only;
                       0.0.0.0:8443 for every interface)
      --workers N      HTTP worker processes sharing the port (default 1: this process serves
                       everything); with N > 1 and SQLite this process alone writes the ledger,
                       so its group commit covers every worker; with PostgreSQL each worker
                       opens its own connections (together at most 10)
      --signer-threads N
                       threads that decode, judge and sign each request off the event loop
                       (default 1; 0: on the event loop); one process only (not with --workers)
      --ui             also serve the dashboard (\`mtlskit ui\`, README "Dashboard") under
                       https://HOST:PORT/ui/, for serve.admins' client certificates only, with
                       serve's refusals by reason; one process only (not with --workers)
      --log            JSON log lines on standard error (never a token, key or CSR)
      --acme-http-port P, --acme-tls-port P
                       for tests only: the port the ACME validator dials for http-01 (RFC
                       8555: 80) and tls-alpn-01 (RFC 8737: 443), where a test's ACME client
                       listens; a real deployment never sets them
      --acme-dns-resolver IP[:PORT]
                       offer dns-01 (RFC 8555 §8.4) and look up its _acme-challenge TXT
                       records through this DNS server only (repeatable, at most 4; port 53
                       by default). Without it no dns-01 challenge is offered

EXAMPLES
  mtlskit apply -f mtlskit.yaml --pki ./pki
  mtlskit serve -f mtlskit.yaml --pki ./pki --listen 127.0.0.1:8443
  mtlskit token create web > web.token

${EXIT_CODES_TEXT}
  3  also: no CA in DIR, the issuing CA's key kept offline, a ledger that cannot be opened,
     or the address cannot be listened on
`;

/** serveCommand runs `mtlskit serve`; it resolves once a signal stopped the server. */
export async function serveCommand(args: string[], io: Io): Promise<number> {
  const { values } = flags("serve", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        ...PKI_FLAGS,
        ...LEDGER_FLAG,
        listen: { type: "string", default: LISTEN },
        log: { type: "boolean" },
        ui: { type: "boolean" },
        workers: { type: "string" },
        "signer-threads": { type: "string" },
        "acme-http-port": { type: "string" },
        "acme-tls-port": { type: "string" },
        "acme-dns-resolver": { type: "string", multiple: true },
      },
      allowPositionals: false,
      strict: true,
    }),
  );
  if (values.help) return (io.out(SERVE_HELP), EXIT.ok);
  const listen = parseListen("serve", values.listen);
  const workers = parseWorkers(values.workers);
  if (values.ui && workers > 1)
    throw new UsageError(
      "mtlskit serve: --ui and --workers N > 1 cannot be combined: the dashboard runs in one process; drop --workers, or run `mtlskit ui` beside the workers",
    );
  const signerThreads = parseSignerThreads(values["signer-threads"]);
  if (signerThreads !== undefined && workers > 1)
    throw new UsageError(
      "mtlskit serve: --signer-threads and --workers N > 1 cannot be combined: each worker process signs on its own event loop; drop one of them",
    );
  const port = (flag: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!/^\d{1,5}$/.test(v) || n < 1 || n > 65535)
      throw new UsageError(`mtlskit serve: --${flag} must be a port number 1..65535; got ${JSON.stringify(v)}`);
    return n;
  };
  const httpPort = port("acme-http-port", values["acme-http-port"]);
  const tlsPort = port("acme-tls-port", values["acme-tls-port"]);
  const dnsResolvers = await parseResolvers(values["acme-dns-resolver"] ?? []);
  const manifestText = readManifestText(values.file);
  const loaded = parseManifest(manifestText, values.file);
  if (values.ui && (loaded.manifest.serve?.admins ?? []).length === 0)
    throw new UsageError(
      `mtlskit serve: --ui shows the dashboard to serve.admins' client certificates only, and ${loaded.manifest.file} declares no serve.admins\n    fix: list the client service whose certificate the operator's browser presents in serve.admins (serve: { admins: [ops] }), or run \`mtlskit ui\` on the CA's host (loopback)`,
    );
  const online = loaded.manifest.services.filter((s) => s.csr === true && s.files === undefined);
  const { startServer, startCluster } = await import("../../server/index.ts");
  const { nativeP256 } = await import("../../pki/native.ts");
  const log = values.log ? { log: { stream: process.stderr } } : {};
  const ledgerSpec = values.ledger === undefined ? {} : { ledgerSpec: values.ledger };
  const acme =
    httpPort || tlsPort || dnsResolvers.length > 0
      ? {
          acme: {
            validator: {
              ...(httpPort || tlsPort
                ? { ports: { ...(httpPort ? { http: httpPort } : {}), ...(tlsPort ? { tls: tlsPort } : {}) } }
                : {}),
              ...(dnsResolvers.length > 0 ? { dnsResolvers } : {}),
            },
          },
        }
      : {};
  const mount = values.ui ? { mount: (await import("../../ui/server.ts")).serveMount() } : {};
  const server =
    workers === 1
      ? await startServer({
          manifest: loaded,
          pkiDir: values.pki,
          ...ledgerSpec,
          listen,
          ...log,
          ...acme,
          ...mount,
          ...(signerThreads === undefined ? {} : { signerThreads }),
        })
      : await startCluster({
          manifestText,
          manifestFile: values.file,
          loaded,
          pkiDir: values.pki,
          ...ledgerSpec,
          listen,
          workers,
          ...log,
          ...acme,
        });
  io.out(
    `mtlskit serve: the online CA listens on ${server.url}\n` +
      `  root SHA-256: ${server.rootSha256}\n` +
      `  ledger: ${server.ledger.kind}\n` +
      `  workers: ${workers === 1 ? "1 (this process serves everything)" : `${workers} HTTP processes; this one holds the ledger`}\n` +
      `  P-256 request signatures: ${nativeP256() ? "the native verifier (build/Release/p256.node)" : "node:crypto (the native verifier is not built or MTLSKIT_NATIVE=0; `npm rebuild mtlskit` builds it)"}\n` +
      (server.ledger.acme
        ? `  ACME directory: ${server.url}/acme/directory (EAB keys: mtlskit token create SERVICE --acme)\n` +
          `  ACME challenges: http-01, tls-alpn-01, ${dnsResolvers.length > 0 ? `dns-01 (TXT asked of ${dnsResolvers.join(", ")} only)` : "no dns-01 (no --acme-dns-resolver)"}\n`
        : "") +
      (values.ui ? `  dashboard: ${server.url}/ui/ (serve.admins' client certificates only)\n` : "") +
      `  services issued online: ${online.map((s) => s.name).join(", ") || "none"}\n` +
      `Next: \`mtlskit token create SERVICE -f ${values.file} --pki ${values.pki}\`, then on the service's host \`mtlskit agent --server ${server.url} --service SERVICE --token-file F --fingerprint ${server.rootSha256} --out DIR\`. Stop with SIGTERM or Ctrl-C.\n`,
  );
  if (online.length === 0)
    io.err(
      `${paintErr(io, "yellow", "warning:")} ${loaded.manifest.file} declares no csr: true service, so this server issues nothing; add csr: true to the services whose hosts run \`mtlskit agent\`\n`,
    );
  const signal = await untilSignal();
  await server.close();
  io.out(`mtlskit serve: stopped on ${signal}; in-flight requests finished, the ledger is closed.\n`);
  return EXIT.ok;
}
