/**
 * Test helper: the dashboard (`mtlskit ui`, src/ui/server.ts) on a real PKI. A manifest of N
 * services (clients, servers and dual services with declared connections) is applied by the CLI,
 * optionally with a broken connection and an online CA's ledger, and startUi serves it in-process
 * on 127.0.0.1, port 0, polling every 100 ms. Used by test/ui.test.ts and the browser tests.
 */
import assert from "node:assert/strict";
import { createPrivateKey } from "node:crypto";
import { writeFileSync } from "node:fs";
import * as path from "node:path";
import { requestFor } from "../../src/ca/policy.ts";
import { openLedger } from "../../src/ledger/index.ts";
import { loadManifest } from "../../src/manifest/index.ts";
import { decodeCsr, encodeCsr } from "../../src/pki/csr.ts";
import { generateKey } from "../../src/pki/keys.ts";
import { loadAuthority } from "../../src/server/authority.ts";
import { issueOnline } from "../../src/server/issue.ts";
import { startUi, type RunningUi } from "../../src/ui/server.ts";
import { runCli, tempDir, writeManifest } from "./cli.ts";

/** UiFixtureOptions: what the fixture's PKI holds. */
export interface UiFixtureOptions {
  /** services: how many services the manifest declares. Default: 50. */
  services?: number;
  /**
   * broken: one declared connection fails check: after apply, the manifest gains an address of
   * s001 that s000 dials (`extra.mesh.local`), which s001's certificate does not carry (check:
   * san-missing and conn-address, fixed by `mtlskit apply --reissue s001`). Default: false.
   */
  broken?: boolean;
  /** assetsDir: the front end's files. Default: the package's dist/ui/web/. */
  assetsDir?: string;
  /** online: the last two services are csr: true, issued by the online CA (a ledger with enrollments, a renewal, a revocation and two outstanding tokens). Default: false. */
  online?: boolean;
  /** requireMtls: serve over HTTPS with an admin's client certificate required (s000 is serve.admins). Default: false. */
  requireMtls?: boolean;
  /** pollMs: the dashboard's poll interval. Default: 100. */
  pollMs?: number;
}

/** UiFixture is a running dashboard and its PKI. */
export interface UiFixture {
  /** url: http://127.0.0.1:PORT/ (https:// with requireMtls). */
  url: string;
  pkiDir: string;
  /** manifestFile: the manifest the dashboard reads (with the broken fixture's extra address). */
  manifestFile: string;
  /** appliedFile: the manifest apply ran with (the same services, without the broken fixture's change). */
  appliedFile: string;
  /** names: the services, in manifest order (s000, s001, ...). */
  names: string[];
  /** ui: the running dashboard. */
  ui: RunningUi;
  /** renew re-issues one service's certificate through `mtlskit apply --reissue NAME` with the applied manifest. */
  renew(service: string): Promise<void>;
  stop(): Promise<void>;
}

/** usageOf: s000 is a client (the admin), then server, dual, dual, dual, client, server, ... */
const usageOf = (i: number) => (i % 5 === 0 ? "client" : i % 5 === 1 ? "server" : "dual");

/** fixtureManifest is the YAML of `n` services; `broken` adds s001's extra address and s000's connection to it. */
export function fixtureManifest(n: number, o: { broken?: boolean; online?: boolean } = {}): string {
  const names = Array.from({ length: n }, (_, i) => `s${String(i).padStart(3, "0")}`);
  const lines = [
    "version: 1",
    "cluster: dash",
    "identity:",
    '  uri: "spiffe://{cluster}.local/{role}/{name}"',
    "ca:",
    "  subject: { O: Dashboard, CN: Dashboard CA }",
    "serve:",
    "  admins: [s000]",
    "services:",
  ];
  names.forEach((name, i) => {
    const usage = usageOf(i);
    const csr = o.online && i >= n - 2 && usage !== "client" ? ", csr: true" : "";
    const extra = o.broken && i === 1 ? ", extra.mesh.local" : "";
    const addresses =
      usage === "client"
        ? ""
        : `, addresses: [${name}.mesh.local, 10.0.${Math.floor(i / 250)}.${(i % 250) + 1}${extra}]`;
    lines.push(`  ${name}: { usage: ${usage}${addresses}${csr} }`);
  });
  lines.push("connections:");
  const servers = names.filter((_, i) => usageOf(i) !== "client");
  names.forEach((name, i) => {
    if (usageOf(i) === "server") return;
    const to = servers.find((s) => s > name) ?? servers.find((s) => s !== name);
    if (to) lines.push(`  - { from: ${name}, to: ${to}, address: ${to}.mesh.local }`);
  });
  if (o.broken) lines.push("  - { from: s000, to: s001, address: extra.mesh.local }");
  return `${lines.join("\n")}\n`;
}

/** seedOnline records what an online CA did for the csr services: enrollments, a renewal, a revocation, outstanding tokens. */
async function seedOnline(manifestFile: string, pkiDir: string): Promise<void> {
  const loaded = loadManifest(manifestFile);
  const online = loaded.manifest.services.filter((s) => s.csr === true);
  assert.ok(online.length > 0, "the online fixture has csr services");
  const authority = loadAuthority(loaded, pkiDir);
  const ledger = await openLedger(pkiDir);
  try {
    const now = new Date(Math.floor(Date.now() / 1000) * 1000);
    const issue = async (name: string, how: "enroll" | "renew") => {
      const service = online.find((s) => s.name === name)!;
      const pair = generateKey(service.keyType);
      const key = createPrivateKey({ key: pair.pkcs8, format: "der", type: "pkcs8" });
      const csr = decodeCsr(encodeCsr(requestFor(service), service.keyType, pair.spki, key));
      const token =
        how === "enroll" ? (await ledger.createToken(name, "enroll", 15 * 60_000, now)).record.id : undefined;
      return issueOnline(
        { manifest: loaded.manifest, authority, ledger, now },
        { service, csr, how, requester: "127.0.0.1:40000", ...(token ? { tokenId: token } : {}) },
      );
    };
    const first = await issue(online[0]!.name, "enroll");
    await ledger.revoke(first.serial, "keyCompromise", now);
    await issue(online[0]!.name, "enroll");
    for (const s of online.slice(1)) {
      await issue(s.name, "enroll");
      await issue(s.name, "renew");
    }
    await ledger.createToken(online[0]!.name, "enroll", 60 * 60_000, now);
    await ledger.createToken(online.at(-1)!.name, "acme", 60 * 60_000, now);
  } finally {
    await ledger.close();
  }
}

/** startUiFixture applies a fixture PKI and starts the dashboard on it. */
export async function startUiFixture(opts: UiFixtureOptions = {}): Promise<UiFixture> {
  const n = opts.services ?? 50;
  assert.ok(n >= 2, "the fixture needs at least 2 services");
  const dir = tempDir("mtlskit-ui-");
  const pkiDir = path.join(dir, "pki");
  const appliedFile = writeManifest(dir, fixtureManifest(n, { online: !!opts.online }), "applied.yaml");
  const r = await runCli(["apply", "-f", appliedFile, "--pki", pkiDir]);
  assert.equal(r.code, 0, r.err);
  if (opts.online) await seedOnline(appliedFile, pkiDir);
  const manifestFile = path.join(dir, "mtlskit.yaml");
  writeFileSync(manifestFile, fixtureManifest(n, { broken: !!opts.broken, online: !!opts.online }));
  const ui = await startUi({
    manifestFile,
    pkiDir,
    listen: { host: "127.0.0.1", port: 0 },
    pollMs: opts.pollMs ?? 100,
    ...(opts.assetsDir ? { assetsDir: opts.assetsDir } : {}),
    ...(opts.requireMtls ? { requireMtls: true } : {}),
  });
  const names = loadManifest(manifestFile).manifest.services.map((s) => s.name);
  return {
    url: ui.url,
    pkiDir,
    manifestFile,
    appliedFile,
    names,
    ui,
    async renew(service) {
      const out = await runCli(["apply", "-f", appliedFile, "--pki", pkiDir, "--reissue", service]);
      assert.equal(out.code, 0, out.err);
    },
    stop: () => ui.close(),
  };
}
