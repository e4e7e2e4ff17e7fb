/** `mtlskit ui`: the dashboard (src/ui/), until SIGTERM or SIGINT. */
import { parseArgs } from "node:util";
import { EXIT, UsageError } from "../../errors.ts";
import { parseManifest, readManifestText } from "../../manifest/index.ts";
import { COMMON_FLAGS, flags, parseListen, untilSignal } from "../args.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import type { Io } from "../output.ts";
import { LEDGER_FLAG, LEDGER_FLAG_HELP, PKI_FLAGS } from "./shared.ts";

/** LISTEN: the default address (loopback: plain HTTP, no authentication). */
const LISTEN = "127.0.0.1:8080";

export const UI_HELP = `mtlskit ui: a read-only web dashboard of the whole identity system.

USAGE
  mtlskit ui [-f FILE] [--pki DIR] [--listen 127.0.0.1:8080] [--ledger SPEC] [--mtls] [--log]

Shows what check, status and the ledger know (README "Dashboard"): every service and
certificate (SANs, usages, identity, days left, findings), an expiry timeline with renewal
windows, the declared connections coloured by check's verdict with each finding's fix, the CA
rotation's phase, and the online CA's issuances, outstanding tokens and revocations. The page
updates by itself within a few seconds when apply, an agent or the online CA changes something.
Never shown: a private key, a token's secret, a ledger password.

Security: on a loopback address (127.0.0.0/8, ::1, localhost) it is plain HTTP without
authentication, answering only requests addressed to a loopback name. On any other address it
is HTTPS (its certificate issued in memory from the CA, as serve's) and every request needs the
client certificate of a service listed in serve.admins (else 401 or 403). The manifest must then
declare serve.admins and the CA's key must be in DIR. --mtls requires the same on loopback.
Inside the online CA: \`mtlskit serve --ui\` serves it under /ui/ (admins only).

It prints the URL. SIGTERM or SIGINT stops it.

FLAGS
  -f, --file FILE      manifest (default mtlskit.yaml)
      --pki DIR        PKI directory (default ./pki)
${LEDGER_FLAG_HELP}
      --listen ADDR    [HOST:]PORT to listen on (default ${LISTEN}, this host only)
      --mtls           require an admin's client certificate on a loopback address too
      --log            JSON request log lines on standard error

EXAMPLES
  mtlskit ui -f mtlskit.yaml --pki ./pki
  ssh -L 8080:127.0.0.1:8080 ca-host   # then open http://127.0.0.1:8080/ here
  mtlskit ui --listen 0.0.0.0:8443     # mTLS: serve.admins' client certificates only

${EXIT_CODES_TEXT}
  2  also: a non-loopback --listen (or --mtls) with no serve.admins in the manifest
  3  also: no PKI directory, mTLS without the CA's key in DIR, a ledger that cannot be opened,
     or the address cannot be listened on
`;

/** uiCommand runs `mtlskit ui`; it resolves once a signal stopped it. */
export async function uiCommand(args: string[], io: Io): Promise<number> {
  const { values } = flags("ui", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        ...PKI_FLAGS,
        ...LEDGER_FLAG,
        listen: { type: "string", default: LISTEN },
        mtls: { type: "boolean" },
        log: { type: "boolean" },
      },
      allowPositionals: false,
      strict: true,
    }),
  );
  if (values.help) return (io.out(UI_HELP), EXIT.ok);
  const listen = parseListen("ui", values.listen);
  const loaded = parseManifest(readManifestText(values.file), values.file);
  // Imported only when ui runs (Fastify costs every other command its start-up).
  const { isLoopback, mtlsRefusal, startUi } = await import("../../ui/server.ts");
  const mtls = values.mtls === true || !isLoopback(listen.host);
  // Refused before anything is read or bound.
  const refusal = mtls
    ? mtlsRefusal(loaded, values.mtls ? "--mtls was given" : `--listen ${values.listen} is not a loopback address`)
    : undefined;
  if (refusal) throw new UsageError(refusal);
  const ui = await startUi({
    manifestFile: values.file,
    loaded,
    pkiDir: values.pki,
    listen,
    requireMtls: mtls,
    ...(values.ledger === undefined ? {} : { ledgerSpec: values.ledger }),
    ...(values.log ? { log: { stream: process.stderr } } : {}),
  });
  const s = ui.live.snapshot();
  io.out(
    `mtlskit ui: the dashboard of ${s.cluster} is at ${ui.url}\n` +
      `  ${s.counts.services} services, ${s.counts.certificates} certificates, ${s.counts.errors} errors, ${s.counts.warnings} warnings, ${s.counts.failingConnections} of ${s.counts.connections} connections failing\n` +
      (mtls
        ? `  mTLS: a client certificate of serve.admins (${loaded.manifest.serve?.admins.join(", ")}) is required\n`
        : "  loopback only, no authentication: reach it from elsewhere through an SSH tunnel\n") +
      "Stop with SIGTERM or Ctrl-C.\n",
  );
  const signal = await untilSignal();
  await ui.close();
  io.out(`mtlskit ui: stopped on ${signal}.\n`);
  return EXIT.ok;
}
