/** `mtlskit serve`: the online CA (src/server/), until SIGTERM or SIGINT. */
import { parseArgs } from "node:util";
import { EXIT, UsageError } from "../../errors.ts";
import { loadManifest } from "../../manifest/index.ts";
import { COMMON_FLAGS, flags, parseListen } from "../args.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import { paintErr, type Io } from "../output.ts";
import { LEDGER_FLAG, LEDGER_FLAG_HELP, PKI_FLAGS } from "./shared.ts";

/**
 * LISTEN: the default address, startServer's DEFAULT_LISTEN (loopback). Spelled here because the
 * server is imported only when serve runs: Fastify and prom-client cost every other command about
 * 250 ms of start-up (measured: 182 ms and 64 ms to import).
 */
const LISTEN = "127.0.0.1:8443";

export const SERVE_HELP = `mtlskit serve: the online CA: agents enroll with a token and renew with their certificate.

USAGE
  mtlskit serve [-f FILE] [--pki DIR] [--ledger SPEC] [--listen 127.0.0.1:8443] [--log]

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
      --log            JSON log lines on standard error (never a token, key or CSR)
      --acme-http-port P, --acme-tls-port P
                       for tests only: the port the ACME validator dials for http-01 (RFC
                       8555: 80) and tls-alpn-01 (RFC 8737: 443), where a test's ACME client
                       listens; a real deployment never sets them

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
        "acme-http-port": { type: "string" },
        "acme-tls-port": { type: "string" },
      },
      allowPositionals: false,
      strict: true,
    }),
  );
  if (values.help) return (io.out(SERVE_HELP), EXIT.ok);
  const listen = parseListen("serve", values.listen);
  const port = (flag: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!/^\d{1,5}$/.test(v) || n < 1 || n > 65535)
      throw new UsageError(`mtlskit serve: --${flag} must be a port number 1..65535; got ${JSON.stringify(v)}`);
    return n;
  };
  const httpPort = port("acme-http-port", values["acme-http-port"]);
  const tlsPort = port("acme-tls-port", values["acme-tls-port"]);
  const loaded = loadManifest(values.file);
  const online = loaded.manifest.services.filter((s) => s.csr === true && s.files === undefined);
  const { startServer } = await import("../../server/index.ts");
  const server = await startServer({
    manifest: loaded,
    pkiDir: values.pki,
    ...(values.ledger === undefined ? {} : { ledgerSpec: values.ledger }),
    listen,
    ...(values.log ? { log: { stream: process.stderr } } : {}),
    ...(httpPort || tlsPort
      ? {
          acme: {
            validator: { ports: { ...(httpPort ? { http: httpPort } : {}), ...(tlsPort ? { tls: tlsPort } : {}) } },
          },
        }
      : {}),
  });
  io.out(
    `mtlskit serve: the online CA listens on ${server.url}\n` +
      `  root SHA-256: ${server.rootSha256}\n` +
      `  ledger: ${server.ledger.kind}\n` +
      (server.ledger.acme
        ? `  ACME directory: ${server.url}/acme/directory (EAB keys: mtlskit token create SERVICE --acme)\n`
        : "") +
      `  services issued online: ${online.map((s) => s.name).join(", ") || "none"}\n` +
      `Next: \`mtlskit token create SERVICE -f ${values.file} --pki ${values.pki}\`, then on the service's host \`mtlskit agent --server ${server.url} --service SERVICE --token-file F --fingerprint ${server.rootSha256} --out DIR\`. Stop with SIGTERM or Ctrl-C.\n`,
  );
  if (online.length === 0)
    io.err(
      `${paintErr(io, "yellow", "warning:")} ${loaded.manifest.file} declares no csr: true service, so this server issues nothing; add csr: true to the services whose hosts run \`mtlskit agent\`\n`,
    );
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const stop = (s: NodeJS.Signals) => {
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      resolve(s);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });
  await server.close();
  io.out(`mtlskit serve: stopped on ${signal}; in-flight requests finished, the ledger is closed.\n`);
  return EXIT.ok;
}
