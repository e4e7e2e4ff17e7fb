/** `mtlskit metrics`: Prometheus metrics of a deployment, served for scraping or printed once. */
import { readOnline } from "../../check/online.ts";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { EXIT, FailedError, UsageError } from "../../errors.ts";
import { loadManifest } from "../../manifest/index.ts";
import { writeFileAtomic } from "../../state/fs.ts";
import { metricsOfPki, serveMetrics } from "../../status/index.ts";
import { COMMON_FLAGS, flags, parseListen, untilSignal } from "../args.ts";
import type { Io } from "../output.ts";
import { LEDGER_FLAG, LEDGER_FLAG_HELP, PKI_FLAGS } from "./shared.ts";

export const METRICS_HELP = `mtlskit metrics: Prometheus metrics of a deployment: expiry, renewal, findings, the last apply.

USAGE
  mtlskit metrics --listen [HOST:]PORT [-f FILE] [--pki DIR]  serve /metrics until stopped
  mtlskit metrics [-f FILE] [--pki DIR] [-o FILE]              print them once (or write FILE atomically)

Scrapes read the manifest and the PKI afresh, so renewals and failed applies show without a
restart; they share the work: scrapes during a collection await it, and a result younger than 5
seconds is served as is. A last-apply.json written by another manifest's apply (two manifests
sharing one PKI directory) is ignored. Metrics (gauges):
  mtlskit_certificate_not_after_timestamp_seconds{service,certificate,path}
  mtlskit_certificate_renewal_due_timestamp_seconds{service,certificate,path}
  mtlskit_certificate_renewal_due_in_seconds{service,certificate,path}   negative: overdue
  mtlskit_ca_not_after_timestamp_seconds{subject,sha256}
  mtlskit_check_findings{service,severity}, mtlskit_check_errors, mtlskit_check_warnings
  mtlskit_connection_ok{from,to,address}
  mtlskit_last_apply_timestamp_seconds, mtlskit_last_apply_success, mtlskit_last_apply_issued_certificates
                       (from PKI/last-apply.json; absent until this manifest's apply has run)
  mtlskit_check_timestamp_seconds
  mtlskit_ledger_certificates, mtlskit_ledger_revoked_certificates
                       (the online CA's ledger, PKI/ca/ledger.db; absent without one)
A csr service issued online (\`mtlskit serve\`) is its newest unrevoked certificate in the ledger,
under the certificate metrics with issued="online" and the ledger as path.
examples/prometheus/mtlskit-alerts.yml holds alert rules for them (expiring soon, expired,
renewal overdue, apply failed or not run, check errors, CA expiring).

FLAGS
  -f, --file FILE      manifest (default mtlskit.yaml)
      --pki DIR        PKI directory of managed services (default ./pki)
${LEDGER_FLAG_HELP}
      --listen ADDR    serve on ADDR: 9469 (127.0.0.1:9469, this host only), [::1]:9469, or
                       0.0.0.0:9469 for every interface (as probe --listen reads it)
  -o, --output FILE    print-once mode: write FILE atomically (node_exporter's textfile collector)

EXAMPLES
  mtlskit metrics --listen 127.0.0.1:9469
  mtlskit metrics -o /var/lib/node_exporter/textfile/mtlskit.prom     # from cron, after apply

EXIT CODES
  0  printed, or served until SIGINT/SIGTERM
  2  invalid input: bad flags or an invalid manifest (at start)
  3  could not run: the address is in use, the PKI directory does not exist, -o cannot be written
  While serving, a scrape that cannot collect (say, the manifest became invalid) answers 500 with
  the reason, and Prometheus records the target as down.
`;

/** metricsCommand runs `mtlskit metrics`. */
export async function metricsCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("metrics", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        ...PKI_FLAGS,
        ...LEDGER_FLAG,
        listen: { type: "string" },
        output: { type: "string", short: "o" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(METRICS_HELP), EXIT.ok);
  if (positionals.length > 0)
    throw new UsageError(
      `mtlskit metrics: unexpected argument ${JSON.stringify(positionals[0])}; name the manifest with -f FILE`,
    );
  if (values.listen !== undefined && values.output !== undefined)
    throw new UsageError("mtlskit metrics: flag --listen is incompatible with -o; serve, or write a file");
  const listen = values.listen === undefined ? undefined : parseListen("metrics", values.listen); // a bad address is refused before any work
  const file = values.file;
  const pki = values.pki;
  const collect = async () => {
    const { manifest } = loadManifest(file);
    const now = new Date();
    return metricsOfPki(manifest, pki, now, { online: await readOnline(manifest, pki, now, values.ledger) });
  };
  const first = await collect(); // invalid input fails here, before anything listens
  if (listen === undefined) {
    if (values.output === undefined) return (io.out(first), EXIT.ok);
    try {
      writeFileAtomic(values.output, first, 0o644);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new FailedError(
        `mtlskit metrics: cannot write ${values.output}: ${code === "ENOENT" ? `the directory ${path.dirname(values.output)} does not exist` : code === "EACCES" ? `permission denied in ${path.dirname(values.output)}` : (e as Error).message}`,
        { cause: e },
      );
    }
    return EXIT.ok;
  }
  const { host, port } = listen;
  let served;
  try {
    served = await serveMetrics({
      host,
      port,
      collect,
      onError: (e) => io.err(`mtlskit metrics: scrape failed: ${e.message}\n`),
    });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FailedError(
      `mtlskit metrics: cannot listen on ${values.listen}: ${code === "EADDRINUSE" ? "the port is in use; choose another" : code === "EADDRNOTAVAIL" ? "no interface has that address" : code === "EACCES" ? "permission denied (ports below 1024 need root)" : (e as Error).message}`,
      { cause: e },
    );
  }
  io.err(`mtlskit metrics: serving ${served.url} (${file}, ${pki}); stop with Ctrl-C\n`);
  await untilSignal();
  await served.close();
  return EXIT.ok;
}
