/**
 * Test helper: an online CA on loopback. A PKI made by `mtlskit apply` from a manifest, tokens
 * made through the server's ledger, and `startServer` (src/server/index.ts, what `mtlskit serve` runs)
 * listening on 127.0.0.1 (port 0 at first; restart() comes back on the same port).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { type IssuedRecord, openLedger, parseToken } from "../../src/ledger/index.ts";
import { loadManifest } from "../../src/manifest/index.ts";
import type { AcmeOptions } from "../../src/acme/routes.ts";
import { startServer } from "../../src/server/index.ts";
import { runCli, tempDir, writeManifest } from "./cli.ts";

/** OnlineCa is a running online CA and its PKI. */
export interface OnlineCa {
  /** url: https://127.0.0.1:PORT */
  url: string;
  port: number;
  pki: string;
  manifest: string;
  /** token makes a bootstrap token for `service` (15 min). */
  token(service: string, ttlMs?: number): Promise<string>;
  /** stop closes the server (the PKI stays). */
  stop(): Promise<void>;
  /** restart starts it again on the same port; `ledger` (a --ledger spec): on another ledger from then on (the one `ledger migrate` copied into). */
  restart(ledger?: string): Promise<void>;
  /** ledgerRows reads every certificate row of the server's ledger. */
  ledgerRows(): Promise<IssuedRecord[]>;
  /** eab makes an ACME EAB key for `service` (`mtlskit token create SERVICE --acme`): its kid and base64url HMAC key. */
  eab(service: string, ttlMs?: number): Promise<{ kid: string; hmac: string }>;
}

/** OnlineCaOptions: what a test changes in the server. */
export interface OnlineCaOptions {
  /** acme: the ACME server's options (the validator's ports: where the test's ACME client listens). */
  acme?: AcmeOptions;
}

/** startOnlineCa applies `manifestText` into a fresh PKI and serves it. */
export async function startOnlineCa(manifestText: string, opts: OnlineCaOptions = {}): Promise<OnlineCa> {
  const dir = tempDir("mtlskit-online-");
  const manifest = writeManifest(dir, manifestText);
  const pki = path.join(dir, "pki");
  const r = await runCli(["apply", "-f", manifest, "--pki", pki]);
  assert.equal(r.code, 0, r.err);
  const loaded = loadManifest(manifest);
  let ledgerSpec: string | undefined;
  const start = async (port: number) =>
    startServer({
      manifest: loaded,
      pkiDir: pki,
      listen: { host: "127.0.0.1", port },
      ledger: await openLedger(pki, ledgerSpec),
      checkMs: 100, // a CA rotation is seen within 100 ms
      ...(opts.acme ? { acme: opts.acme } : {}),
    });
  let server = await start(0);
  const port = server.port;
  const ca: OnlineCa = {
    url: `https://127.0.0.1:${port}`,
    port,
    pki,
    manifest,
    async token(service, ttlMs = 15 * 60_000) {
      return (await server.ledger.createToken(service, "enroll", ttlMs, new Date())).token;
    },
    ledgerRows: () => server.ledger.list(),
    async eab(service, ttlMs = 15 * 60_000) {
      const made = await server.ledger.createToken(service, "acme", ttlMs, new Date());
      return { kid: made.record.id, hmac: parseToken(made.token)!.secret };
    },
    async stop() {
      await server.close();
    },
    async restart(ledger) {
      if (ledger !== undefined) ledgerSpec = ledger;
      server = await start(port);
    },
  };
  return ca;
}

/** Replica is a second server on an OnlineCa's PKI directory and ledger file (a CA replica as agents see it). */
export interface Replica {
  url: string;
  port: number;
  /** metrics returns its /metrics text. */
  metrics(): Promise<string>;
  stop(): Promise<void>;
  /** restart starts it again on the same port. */
  restart(): Promise<void>;
}

/** startReplica serves `ca`'s PKI again on another loopback port, with its own connection to the same SQLite ledger file. */
export async function startReplica(ca: OnlineCa): Promise<Replica> {
  const loaded = loadManifest(ca.manifest);
  const start = async (port: number) =>
    startServer({
      manifest: loaded,
      pkiDir: ca.pki,
      listen: { host: "127.0.0.1", port },
      ledger: await openLedger(ca.pki),
      checkMs: 100,
    });
  let server = await start(0);
  const port = server.port;
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    metrics: () => metricsOf(`https://127.0.0.1:${port}`, path.join(ca.pki, "ca/ca.pem")),
    async stop() {
      await server.close();
    },
    async restart() {
      server = await start(port);
    },
  };
}

/** metricsOf GETs /metrics from a server trusted by the PEM bundle in `caFile` (5 s deadline). */
export function metricsOf(url: string, caFile: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      `${url}/metrics`,
      { ca: readFileSync(caFile, "utf8"), agent: false, timeout: 5000 },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (text += d));
        res.on("end", () => resolve(text));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${url}/metrics did not answer within 5 s`)));
    req.on("error", reject);
  });
}
