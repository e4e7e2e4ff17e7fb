/**
 * The online CA's Prometheus metrics: the one door to prom-client. Each server has its own
 * registry (never prom-client's global one), so two servers in one process, as tests start them,
 * count apart.
 */
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry } from "prom-client";

/** ServeMetrics is what the server records and what /metrics prints. */
export interface ServeMetrics {
  /** issued counts a certificate returned to a client (`enroll` or `renew`). */
  issued(how: string): void;
  /** refused counts a request answered with a problem document, by its error code. */
  refused(reason: string): void;
  /** observe records one request's latency for its route (the route pattern, never the raw URL). */
  observe(route: string, seconds: number): void;
  /** ledgerCertificates sets the ledger's certificate count (read by /metrics and /v1/health). */
  ledgerCertificates(n: number): void;
  /** caNotAfter sets the issuing CA's expiry. */
  caNotAfter(at: Date): void;
  /** refusals: the refusals counted so far, by reason (the dashboard mounted inside serve shows them). */
  refusals(): Promise<{ reason: string; count: number }[]>;
  /** text renders the exposition format. */
  text(): Promise<string>;
  /** json is this registry's metrics as data, for aggregateMetrics (a `serve --workers` worker's share). */
  json(): Promise<MetricsJson>;
  contentType: string;
}

/** MetricsJson: one registry's metrics as plain data (structured-clone safe). */
export type MetricsJson = object[];

/**
 * aggregateMetrics renders the metrics of several registries (one per `serve --workers` worker) as
 * one exposition: counters and the latency histogram summed, gauges (ledger size, CA expiry) taken
 * from the first registry (the worker answering /metrics, which has just set them).
 */
export function aggregateMetrics(registries: MetricsJson[]): Promise<string> {
  return AggregatorRegistry.aggregate(registries).metrics();
}

/** LATENCY_BUCKETS in seconds: issuance takes a millisecond or two; the tail is what matters. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/** createMetrics makes a fresh registry with the serve metrics. */
export function createMetrics(): ServeMetrics {
  const registry = new Registry();
  const issued = new Counter({
    name: "mtlskit_serve_issued_total",
    help: "Certificates issued by the online CA, by how (enroll, renew).",
    labelNames: ["how"],
    registers: [registry],
  });
  const refused = new Counter({
    name: "mtlskit_serve_refused_total",
    help: "Requests refused by the online CA, by error code (token-used, policy, too-large, ...).",
    labelNames: ["reason"],
    registers: [registry],
  });
  const duration = new Histogram({
    name: "mtlskit_serve_request_duration_seconds",
    help: "Latency of the online CA's requests, by route.",
    labelNames: ["route"],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const ledger = new Gauge({
    name: "mtlskit_serve_ledger_certificates",
    help: "Certificates recorded in the ledger.",
    registers: [registry],
    aggregator: "first",
  });
  const caNotAfter = new Gauge({
    name: "mtlskit_serve_ca_not_after_seconds",
    help: "The issuing CA's notAfter, as a Unix time in seconds.",
    registers: [registry],
    aggregator: "first",
  });
  return {
    issued: (how) => issued.inc({ how }),
    refused: (reason) => refused.inc({ reason }),
    observe: (route, seconds) => duration.observe({ route }, seconds),
    ledgerCertificates: (n) => ledger.set(n),
    caNotAfter: (at) => caNotAfter.set(Math.floor(at.getTime() / 1000)),
    refusals: async () =>
      (await refused.get()).values
        .map((v) => ({ reason: String(v.labels.reason), count: v.value }))
        .sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : 1)),
    text: () => registry.metrics(),
    json: () => registry.getMetricsAsJSON(),
    contentType: registry.contentType,
  };
}
