/**
 * The metrics endpoint: a small HTTP server for Prometheus to scrape. Scrapes collect afresh, so
 * a renewal or a failed apply shows within seconds without a restart, but they share the work:
 * scrapes during a collection await the same one, and a result younger than MAX_AGE_MS is served
 * as is. A collection reads every certificate synchronously, so without that, 200 scrapes
 * arriving together ran 200 collections one after another (p50 9 s, past Prometheus' 10 s
 * scrape timeout; issue 11). The I/O edge of metrics.ts.
 */
import { createServer, type Server } from "node:http";

/** MAX_AGE_MS: how long a collection's result (or failure) answers later scrapes: 5 seconds, well under any scrape interval. */
export const MAX_AGE_MS = 5_000;

/** CONTENT_TYPE is the text exposition format's media type. */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** MetricsServerOptions say where to listen and how to collect. */
export interface MetricsServerOptions {
  host: string;
  /** port: 0 picks a free one (see MetricsServer.port). */
  port: number;
  /** collect returns the exposition text; a throw answers the scrape with 500 and the message. */
  collect: () => string | Promise<string>;
  /** onError hears each failed collection once (every scrape it answers gets a 500 either way). */
  onError?: (e: Error) => void;
  /** maxAgeMs: a result younger than this is served without collecting again. Default MAX_AGE_MS; 0 collects for every scrape not joining one under way. */
  maxAgeMs?: number;
}

/** MetricsServer is a listening endpoint. */
export interface MetricsServer {
  server: Server;
  port: number;
  /** url is the scrape URL, e.g. http://127.0.0.1:9469/metrics. */
  url: string;
  close(): Promise<void>;
}

/**
 * serveMetrics listens on host:port and answers GET /metrics with collect()'s text, GET / with a
 * pointer to it, anything else with 404 (405 for methods other than GET and HEAD).
 */
export async function serveMetrics(o: MetricsServerOptions): Promise<MetricsServer> {
  const maxAgeMs = o.maxAgeMs ?? MAX_AGE_MS;
  let inFlight: Promise<string> | undefined;
  let last: { result: Promise<string>; at: number } | undefined;
  const scrape = (): Promise<string> => {
    if (last !== undefined && performance.now() - last.at < maxAgeMs) return last.result;
    if (inFlight) return inFlight;
    const p = Promise.resolve().then(o.collect);
    inFlight = p;
    // Aged from when it settled: the scrapes queued behind a slow collection are answered by it.
    const settle = () => {
      last = { result: p, at: performance.now() };
      inFlight = undefined;
    };
    p.then(settle, (e: Error) => {
      settle();
      o.onError?.(e); // once per collection, not per scrape it answers
    });
    return p;
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
      return;
    }
    if (url.pathname === "/") {
      res.writeHead(200, { "content-type": "text/plain" }).end("mtlskit metrics: GET /metrics\n");
      return;
    }
    if (url.pathname !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: the metrics are at /metrics\n");
      return;
    }
    scrape().then(
      (text) =>
        res
          .writeHead(200, { "content-type": CONTENT_TYPE, "cache-control": "no-store" })
          .end(req.method === "HEAD" ? undefined : text),
      (e: Error) => {
        res.writeHead(500, { "content-type": "text/plain" }).end(`mtlskit metrics: collection failed: ${e.message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as { port: number }).port;
  const host = o.host.includes(":") ? `[${o.host}]` : o.host;
  return {
    server,
    port,
    url: `http://${host}:${port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // idle keep-alive scrapers would hold close() open
      }),
  };
}
