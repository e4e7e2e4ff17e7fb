/**
 * `mtlskit serve --workers N`: N HTTP worker processes (node:cluster, worker.ts) share the listening
 * port, and this primary process alone holds the ledger: the workers reach it through
 * ledger/remote.ts (RemoteLedger over IPC, `serialization: "advanced"` so Buffers and Dates pass).
 * One process writes the database, so its group commit batches every worker's rows: N processes
 * each opening the SQLite file fought over its write lock and measured half the rate of one.
 *
 * The primary reads the CA first (a directory without a usable CA fails before anything is forked,
 * as startServer does), opens the ledger, forks the workers and waits until each listens. Each
 * worker reads the CA and issues its own server certificate (in memory, renewed by itself) and
 * re-reads the CA when its files change, as a single server does; `reload` tells every worker.
 * /metrics, answered by any worker, aggregates every worker's registry through the primary.
 * A worker that dies is forked again (after a second when it died within five seconds of its
 * start); close() tells every worker to stop listening and finish in-flight requests, waits for
 * them (at most 15 s, then SIGKILL), and only then closes the ledger they were writing through.
 * A worker whose primary is gone (kill -9) exits at once: its ledger calls cannot be answered.
 *
 * With a PostgreSQL ledger (`--ledger postgres://...`) each worker opens its own pool instead:
 * the database batches concurrent commits itself (backends waiting on one WAL flush share it),
 * several processes on one database is what replicas already do (test/replicas.test.ts), and the
 * IPC hop would cost both processes a serialization per call and funnel every worker's queries
 * through the primary's one event loop. The primary opens the database first (migrations, and a
 * database that is down fails before anything is forked); the pools share the single server's
 * budget (POSTGRES_CONNECTIONS).
 */
import cluster, { type Worker } from "node:cluster";
import * as path from "node:path";
import type { Writable } from "node:stream";
import type { AcmeOptions } from "../acme/routes.ts";
import type { ValidatorOptions } from "../acme/validate.ts";
import { type ExitCode, MtlskitError } from "../errors.ts";
import { ledgerPlace, openLedger } from "../ledger/index.ts";
import type { Ledger, SchemaState } from "../ledger/ledger.ts";
import { serveLedger } from "../ledger/remote.ts";
import { caFilesStamp, loadAuthority, type Authority } from "./authority.ts";
import { aggregateMetrics, type MetricsJson } from "./metrics.ts";

/** WorkerConfig is what the primary tells a worker it forked (its first message). */
export interface WorkerConfig {
  manifestText: string;
  manifestFile: string;
  manifestDir: string;
  pkiDir: string;
  listen: { host: string; port: number };
  log: { level: "info" | "debug" | "warn" | "error" } | undefined;
  ledgerKind: string;
  ledgerSchema: SchemaState;
  /** postgres: the worker opens its own pool on this spec (a postgres:// URL) with at most `poolMax` connections; absent: the primary's ledger over IPC. */
  postgres: { spec: string; poolMax: number } | undefined;
  checkMs: number | undefined;
  /** ledgerAcme: the primary's ledger keeps ACME state (its RemoteLedger forwards `acme`). */
  ledgerAcme: boolean;
  /** acme: startServer's `acme` option, as data. */
  acme: ClusterAcmeOptions | false | undefined;
}

/** ClusterAcmeOptions: AcmeOptions that cross to a worker (no `resolve` function). */
export type ClusterAcmeOptions = Omit<AcmeOptions, "validator"> & { validator?: Omit<ValidatorOptions, "resolve"> };

/** POSTGRES_CONNECTIONS: the connections a cluster's PostgreSQL pools hold together at most, as one serve process's pool (openPostgresLedger's default). */
const POSTGRES_CONNECTIONS = 10;

/** ToWorker: the primary's messages to a worker (besides ledger replies). */
export type ToWorker =
  | { mtlskit: "config"; config: WorkerConfig }
  | { mtlskit: "close" }
  | { mtlskit: "reload" }
  | { mtlskit: "metrics-get"; id: number }
  | { mtlskit: "metrics-text"; id: number; text: string };

/** FromWorker: a worker's messages to the primary (besides ledger calls). */
export type FromWorker =
  | { mtlskit: "hello" }
  | { mtlskit: "ready"; port: number; url: string; certPem: string }
  | { mtlskit: "failed"; message: string; exitCode: number }
  | { mtlskit: "credentials"; certPem: string }
  | { mtlskit: "metrics"; id: number; own: MetricsJson }
  | { mtlskit: "metrics-json"; id: number; json: MetricsJson };

/** ClusterOptions configure startCluster. */
export interface ClusterOptions {
  /** manifestText and manifestFile: the manifest as the CLI read it (each worker parses the same text). */
  manifestText: string;
  manifestFile: string;
  /** loaded: that text parsed (the primary reads the CA with it before forking). */
  loaded: import("../manifest/index.ts").LoadedManifest;
  pkiDir: string;
  listen: { host: string; port: number };
  /** workers: how many HTTP worker processes (at least 2; one is startServer). */
  workers: number;
  /** ledger: default openLedger(pkiDir, ledgerSpec). Any Ledger: the workers see only its interface. */
  ledger?: Ledger;
  /** ledgerSpec: `--ledger` (sqlite:PATH, postgres://...). A postgres:// spec: each worker opens its own pool. Default: SQLite at DIR/ca/ledger.db. */
  ledgerSpec?: string;
  /** log: JSON log lines; each worker writes its own (on its standard error, inherited). */
  log?: { stream: Writable; level?: "info" | "debug" | "warn" | "error" };
  checkMs?: number;
  /** acme: each worker's ACME server (startServer's option; false: none). Default: on when the ledger keeps ACME state. */
  acme?: ClusterAcmeOptions | false;
}

/** ClusterServer is a listening cluster: what RunningServer offers, plus the workers' process ids. */
export interface ClusterServer {
  url: string;
  host: string;
  port: number;
  readonly rootSha256: string;
  ledger: Ledger;
  serverCertificate(): string;
  reload(): void;
  close(): Promise<void>;
  /** workerPids: the live workers' process ids. */
  workerPids(): number[];
}

/** workerEntry is the file each worker runs: worker.ts beside this file (worker.js once built). */
function workerEntry(): { exec: string; execArgv: string[] } {
  const ts = import.meta.url.endsWith(".ts");
  const exec = new URL(ts ? "./worker.ts" : "./worker.js", import.meta.url).pathname;
  // Under tsx (tests, the bench from sources) the loader must reach the worker too.
  const execArgv = ts && !process.execArgv.some((a) => a.includes("tsx")) ? ["--import", "tsx"] : [];
  return { exec, execArgv: [...process.execArgv, ...execArgv] };
}

const RESTART_QUICK_MS = 5_000;
const CLOSE_WAIT_MS = 15_000;
const METRICS_WAIT_MS = 2_000;

/** startCluster starts the primary and its workers; resolves once every worker listens. */
export async function startCluster(opts: ClusterOptions): Promise<ClusterServer> {
  let authority: Authority = loadAuthority(opts.loaded, opts.pkiDir);
  const postgres =
    opts.ledger === undefined &&
    opts.ledgerSpec !== undefined &&
    ledgerPlace(opts.pkiDir, opts.ledgerSpec).kind === "postgres"
      ? { spec: opts.ledgerSpec, poolMax: Math.max(2, Math.ceil((POSTGRES_CONNECTIONS - 2) / opts.workers)) }
      : undefined;
  // With PostgreSQL the primary's pool only migrates, answers `ledger` and the CRL number: two connections.
  const ledger =
    opts.ledger ??
    (await openLedger(opts.pkiDir, opts.ledgerSpec, postgres ? { poolMax: 2 } : { committerThread: true }));
  const config: WorkerConfig = {
    manifestText: opts.manifestText,
    manifestFile: opts.manifestFile,
    manifestDir: path.resolve(path.dirname(opts.manifestFile)),
    pkiDir: path.resolve(opts.pkiDir),
    listen: opts.listen,
    log: opts.log ? { level: opts.log.level ?? "info" } : undefined,
    ledgerKind: ledger.kind,
    ledgerSchema: ledger.schema,
    ledgerAcme: ledger.acme !== undefined,
    acme: opts.acme,
    postgres,
    checkMs: opts.checkMs,
  };
  const entry = workerEntry();
  cluster.setupPrimary({ exec: entry.exec, execArgv: entry.execArgv, args: [], serialization: "advanced" });

  const live = new Set<Worker>();
  /** phase: hello (it listens for messages: one sent earlier is lost), then ready (it listens on the port). */
  const phase = new WeakMap<Worker, "forked" | "hello" | "ready">();
  let closing = false;
  let certPem = "";
  let address: { port: number; url: string } | undefined;
  let metricsId = 0;
  const gathering = new Map<number, { got: MetricsJson[]; waiting: Set<Worker>; done(): void }>();
  const logLine = (msg: string) => {
    if (opts.log) opts.log.stream.write(`${JSON.stringify({ level: 40, time: Date.now(), msg })}\n`);
  };

  /** gather asks every worker but `asker` for its metrics (at most METRICS_WAIT_MS) and renders them after `own`. */
  const gather = async (asker: Worker, own: MetricsJson): Promise<string> => {
    const id = ++metricsId;
    const got: MetricsJson[] = [];
    const waiting = new Set([...live].filter((w) => w !== asker && phase.get(w) === "ready"));
    if (waiting.size > 0)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, METRICS_WAIT_MS);
        gathering.set(id, {
          got,
          waiting,
          done: () => (clearTimeout(timer), resolve()),
        });
        for (const w of waiting) send(w, { mtlskit: "metrics-get", id });
      });
    gathering.delete(id);
    return aggregateMetrics([own, ...got]);
  };

  const send = (w: Worker, m: ToWorker) => {
    try {
      if (w.isConnected()) w.send(m);
    } catch {
      // Gone: its exit handler deals with it.
    }
  };

  const fork = (): { worker: Worker; ready: Promise<void> } => {
    const worker = cluster.fork({ MTLSKIT_SERVE_WORKER: "1" });
    const born = performance.now();
    live.add(worker);
    phase.set(worker, "forked");
    if (!postgres) serveLedger(ledger, worker);
    // A message to a worker whose channel just closed (it is starting up, or dying) fails with
    // EPIPE as an 'error' event on the worker, node:cluster's own messages included; without a
    // listener that event would end the primary. The worker's exit handler does what is needed.
    worker.on("error", (e: Error) => logLine(`mtlskit serve: worker ${worker.process.pid}: ${e.message}`));
    let settle: { resolve(): void; reject(e: Error): void } | undefined;
    const ready = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    worker.on("message", (m: FromWorker) => {
      switch (m?.mtlskit) {
        case "hello":
          // Told to close before it could hear it: it is told now, instead of its config.
          phase.set(worker, "hello");
          send(worker, closing ? { mtlskit: "close" } : { mtlskit: "config", config });
          break;
        case "ready":
          phase.set(worker, "ready");
          certPem = m.certPem;
          address ??= { port: m.port, url: m.url };
          settle?.resolve();
          settle = undefined;
          break;
        case "failed":
          settle?.reject(new MtlskitError(m.message, m.exitCode as ExitCode));
          settle = undefined;
          break;
        case "credentials":
          certPem = m.certPem;
          break;
        case "metrics":
          void gather(worker, m.own).then(
            (text) => send(worker, { mtlskit: "metrics-text", id: m.id, text }),
            () => send(worker, { mtlskit: "metrics-text", id: m.id, text: "" }),
          );
          break;
        case "metrics-json": {
          const g = gathering.get(m.id);
          if (g?.waiting.delete(worker)) {
            g.got.push(m.json);
            if (g.waiting.size === 0) g.done();
          }
          break;
        }
      }
    });
    worker.once("exit", (code, signal) => {
      live.delete(worker);
      for (const g of gathering.values()) if (g.waiting.delete(worker) && g.waiting.size === 0) g.done();
      settle?.reject(new MtlskitError(`mtlskit serve: a worker exited (${signal ?? code}) before it listened`, 3));
      settle = undefined;
      if (closing) return;
      logLine(`mtlskit serve: worker ${worker.process.pid} exited (${signal ?? code}); starting another`);
      const delay = performance.now() - born < RESTART_QUICK_MS ? 1000 : 0;
      setTimeout(() => {
        if (!closing) fork().ready.catch(() => {}); // a failing restart is retried by its own exit
      }, delay).unref();
    });
    return { worker, ready };
  };

  const stopAll = async () => {
    closing = true;
    const exits = [...live].map(
      (w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once("exit", () => resolve()))),
    );
    for (const w of live) if (phase.get(w) !== "forked") send(w, { mtlskit: "close" });
    const bound = setTimeout(() => {
      for (const w of live) w.process.kill("SIGKILL");
    }, CLOSE_WAIT_MS);
    await Promise.all(exits);
    clearTimeout(bound);
  };

  try {
    await Promise.all(Array.from({ length: opts.workers }, () => fork().ready));
  } catch (e) {
    await stopAll();
    if (!opts.ledger) await ledger.close();
    throw e;
  }
  const { port, url } = address!;

  let closed: Promise<void> | undefined;
  return {
    url,
    host: opts.listen.host,
    port,
    get rootSha256() {
      if (caFilesStamp(opts.pkiDir) !== authority.stamp)
        try {
          authority = loadAuthority(opts.loaded, opts.pkiDir);
        } catch {
          // Caught mid-change: the last reading stands.
        }
      return authority.anchorSha256;
    },
    ledger,
    serverCertificate: () => certPem,
    reload: () => {
      for (const w of live) if (phase.get(w) === "ready") send(w, { mtlskit: "reload" });
    },
    workerPids: () => [...live].map((w) => w.process.pid!).filter((p) => p !== undefined),
    close: () => {
      closed ??= (async () => {
        await stopAll();
        await ledger.close();
      })();
      return closed;
    },
  };
}
