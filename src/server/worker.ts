/**
 * A `mtlskit serve --workers N` HTTP worker (a node:cluster worker forked by cluster.ts): the
 * same server as startServer (routes, TLS, its own certificate, the CA re-read when its files
 * change) over a RemoteLedger, the primary's ledger reached by IPC (with PostgreSQL: a pool of
 * its own, see cluster.ts). It waits for its config (the
 * primary's first message), listens on the shared port, says `ready`, and then obeys the primary:
 * `close` (stop listening, finish in-flight requests, exit 0), `reload`, metrics requests. Signals
 * are the primary's to handle (SIGINT from a terminal reaches the whole group: the primary then
 * closes the workers in order). When the primary is gone (kill -9) the worker exits at once.
 */
import cluster from "node:cluster";
import { EXIT, MtlskitError } from "../errors.ts";
import { openLedger } from "../ledger/index.ts";
import type { Ledger } from "../ledger/ledger.ts";
import { RemoteLedger } from "../ledger/remote.ts";
import { parseManifest } from "../manifest/index.ts";
import { loadAuthority } from "./authority.ts";
import type { FromWorker, ToWorker, WorkerConfig } from "./cluster.ts";
import { listenWith, type RunningServer } from "./index.ts";
import { createMetrics, type MetricsJson } from "./metrics.ts";

const METRICS_WAIT_MS = 5_000;

const tell = (m: FromWorker) => {
  try {
    process.send?.(m);
  } catch {
    // The primary is gone; `disconnect` ends this process.
  }
};

/** runWorker serves until the primary says close (or is gone). */
async function runWorker(): Promise<void> {
  let closing = false;
  let server: RunningServer | undefined;
  let ledger: Ledger | undefined;
  process.on("SIGINT", () => {});
  process.on("SIGTERM", () => {});
  // A message to a primary whose channel just closed fails with EPIPE as an 'error' event on
  // process; `disconnect` (below) is what ends this worker then, not an unhandled event.
  process.on("error", () => {});
  process.on("disconnect", () => {
    if (closing) return;
    if (ledger instanceof RemoteLedger) ledger.disconnected();
    process.exit(EXIT.failed);
  });
  const metrics = createMetrics();
  const metricsWaiting = new Map<number, (text: string) => void>();
  let metricsId = 0;

  const config = await new Promise<WorkerConfig>((resolve) => {
    process.on("message", (m: ToWorker) => {
      switch (m?.mtlskit) {
        case "config":
          resolve(m.config);
          break;
        case "close":
          closing = true;
          void (server?.close() ?? Promise.resolve()).finally(() => process.disconnect());
          break;
        case "reload":
          try {
            server?.reload();
          } catch {
            // A CA caught mid-change: the tick reads it again.
          }
          break;
        case "metrics-get":
          void metrics.json().then((json) => tell({ mtlskit: "metrics-json", id: m.id, json }));
          break;
        case "metrics-text":
          metricsWaiting.get(m.id)?.(m.text);
          metricsWaiting.delete(m.id);
          break;
      }
    });
    // Asked for once listening: a message sent before this process had a listener would be lost.
    tell({ mtlskit: "hello" });
  });

  try {
    const loaded = parseManifest(config.manifestText, config.manifestFile, config.manifestDir);
    // PostgreSQL: a pool of its own (the primary migrated the schema already); else the primary's ledger over IPC.
    ledger = config.postgres
      ? await openLedger(config.pkiDir, config.postgres.spec, { create: false, poolMax: config.postgres.poolMax })
      : new RemoteLedger(
          config.ledgerKind,
          config.ledgerSchema,
          process as unknown as ConstructorParameters<typeof RemoteLedger>[2],
          { acme: config.ledgerAcme },
        );
    const opts = {
      manifest: loaded,
      pkiDir: config.pkiDir,
      listen: config.listen,
      // Each worker is a process of its own already (the cores are the workers'): it signs on its event loop.
      signerThreads: 0,
      ...(config.log ? { log: { stream: process.stderr, level: config.log.level } } : {}),
      ...(config.checkMs === undefined ? {} : { checkMs: config.checkMs }),
      ...(config.acme === undefined ? {} : { acme: config.acme }),
    };
    server = await listenWith(opts, ledger, () => new Date(), config.listen, loadAuthority(loaded, config.pkiDir), {
      metrics,
      exposition: async () => {
        const own: MetricsJson = await metrics.json();
        const id = ++metricsId;
        const text = await new Promise<string>((resolve) => {
          const timer = setTimeout(() => resolve(""), METRICS_WAIT_MS);
          metricsWaiting.set(id, (t) => (clearTimeout(timer), resolve(t)));
          tell({ mtlskit: "metrics", id, own });
        });
        return text || metrics.text(); // the primary could not gather: this worker's own
      },
      onCredentials: (certPem) => tell({ mtlskit: "credentials", certPem }),
    });
  } catch (e) {
    tell({
      mtlskit: "failed",
      message: e instanceof Error ? e.message : String(e),
      exitCode: e instanceof MtlskitError ? e.exitCode : EXIT.failed,
    });
    closing = true;
    if (ledger && !(ledger instanceof RemoteLedger)) await ledger.close().catch(() => {});
    process.disconnect();
    return;
  }
  if (closing) return void server.close(); // told to close while starting
  tell({ mtlskit: "ready", port: server.port, url: server.url, certPem: server.serverCertificate() });
}

if (cluster.isWorker && process.env.MTLSKIT_SERVE_WORKER === "1") await runWorker();
