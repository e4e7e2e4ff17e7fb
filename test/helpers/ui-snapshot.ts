/**
 * A synthetic Snapshot (src/ui/snapshot.ts) of N services, for the front end alone: the browser
 * tests' static server before any PKI exists, and `npm run bench:ui` at 10,000 services (the page's
 * own cost, without check's). Deterministic: the same N, the same snapshot. Shaped like the ui
 * fixture's: gateways dial apis, apis dial databases, workers dial apis; certificates of 90 days.
 */
import type { Snapshot, UiCertificate, UiConnection, UiFinding, UiService, Verdict } from "../../src/ui/snapshot.ts";

const DAY = 86_400_000;

export interface FakeOptions {
  /** broken: the first connection fails (connection-san-missing) with a fix. */
  broken?: boolean;
  /** online: an online CA's ledger with issuances, tokens and a revocation. */
  online?: boolean;
  /** now: the snapshot's time. Default: 2026-06-01. */
  now?: number;
}

export function fakeSnapshot(n: number, opts: FakeOptions = {}): Snapshot {
  const now = opts.now ?? Date.parse("2026-06-01T00:00:00Z");
  const iso = (t: number) => new Date(t).toISOString();
  const roles = ["gateway", "api", "worker", "db"] as const;
  const roleOf = (i: number) => roles[i % 20 === 0 ? 0 : i % 4 === 1 ? 1 : i % 4 === 3 ? 3 : 2]!;
  const names = Array.from({ length: n }, (_, i) => `s${String(i).padStart(n > 1000 ? 5 : 3, "0")}`);
  const byRole = new Map<string, number[]>();
  names.forEach((_, i) => byRole.set(roleOf(i), [...(byRole.get(roleOf(i)) ?? []), i]));
  const pick = (role: string, i: number) => {
    const list = byRole.get(role) ?? [];
    return list.length === 0 ? undefined : list[(i * 7 + 3) % list.length];
  };
  const findings: UiFinding[] = [];
  const connections: UiConnection[] = [];
  const svcFindings: number[][] = names.map(() => []);
  names.forEach((name, i) => {
    const role = roleOf(i);
    const targets =
      role === "gateway"
        ? [pick("api", i), pick("api", i + 1)]
        : role === "api"
          ? [pick("db", i)]
          : role === "worker"
            ? [pick("api", i)]
            : [];
    for (const t of targets) {
      if (t === undefined || t === i) continue;
      const index = connections.length;
      let verdict: Verdict = "ok";
      const fs: number[] = [];
      if (opts.broken && index === 0) {
        verdict = "error";
        fs.push(findings.length);
        svcFindings[i]!.push(findings.length);
        findings.push({
          code: "connection-san-missing",
          severity: "error",
          about: `${name} -> ${names[t]} @ extra.mesh.local`,
          message: `${names[t]}'s certificate does not cover extra.mesh.local, which ${name} dials`,
          fix: `run \`mtlskit apply\`: it re-issues ${names[t]} with extra.mesh.local among its SANs`,
        });
      }
      connections.push({ index, from: name, to: names[t]!, address: `${names[t]}.mesh.local`, verdict, findings: fs });
    }
  });
  const certificates: UiCertificate[] = [];
  const services: UiService[] = names.map((name, i) => {
    const usage = i % 5 === 0 ? "client" : i % 5 === 1 ? "server" : "dual";
    const identity = `spiffe://mesh.local/${roleOf(i)}/${name}`;
    const issued = now - ((i * 13) % 80) * DAY;
    const notAfter = issued + 90 * DAY;
    const renewAt = notAfter - 30 * DAY;
    const cert: UiCertificate = {
      id: name,
      service: name,
      file: `services/${name}/cert.pem`,
      serial: (0x1000 + i).toString(16),
      subject: `CN=${name}`,
      sans: [
        { type: "dns", value: `${name}.mesh.local` },
        { type: "uri", value: identity },
      ],
      usages: usage === "client" ? ["clientAuth"] : usage === "server" ? ["serverAuth"] : ["serverAuth", "clientAuth"],
      identity,
      notBefore: iso(issued),
      notAfter: iso(notAfter),
      renewAt: iso(renewAt),
      daysLeft: Math.floor((notAfter - now) / DAY),
      issuer: "CN=mesh Root CA",
      sha256: (i + 1).toString(16).padStart(64, "0"),
      source: "apply",
      revoked: false,
      verdict: svcFindings[i]!.length > 0 ? "error" : "ok",
      findings: [],
    };
    certificates.push(cert);
    return {
      name,
      usage,
      role: roleOf(i),
      identity,
      addresses: [`${name}.mesh.local`],
      certificates: [name],
      issuance: "apply",
      verdict: svcFindings[i]!.length > 0 ? "error" : "ok",
      findings: svcFindings[i]!,
    };
  });
  const errors = findings.filter((f) => f.severity === "error").length;
  const snap: Snapshot = {
    version: 1,
    generatedAt: iso(now),
    cluster: "mesh",
    manifest: "mtlskit.yaml",
    pki: "./pki",
    counts: {
      services: n,
      certificates: certificates.length,
      errors,
      warnings: findings.filter((f) => f.severity === "warning").length,
      renewalDue: certificates.filter((c) => Date.parse(c.renewAt!) <= now).length,
      connections: connections.length,
      failingConnections: connections.filter((c) => c.verdict === "error").length,
    },
    services,
    certificates,
    cas: [
      {
        subject: "CN=mesh Root CA",
        role: "root",
        notBefore: iso(now - 100 * DAY),
        notAfter: iso(now + 3550 * DAY),
        daysLeft: 3550,
        sha256: "ab".repeat(32),
      },
    ],
    connections,
    findings,
  };
  if (opts.online) {
    snap.online = {
      ledger: "sqlite:./pki/ca/ledger.db",
      issued: 3,
      revoked: 1,
      recent: [2, 1, 0].map((k) => ({
        serial: `7f${k}`,
        service: names[Math.min(k, n - 1)]!,
        issuedAt: iso(now - k * DAY),
        notAfter: iso(now + 30 * DAY),
        requester: k === 0 ? undefined : `spiffe://mesh.local/x/${names[0]}`,
        how: k === 0 ? "enroll" : "renew",
      })),
      tokens: [{ id: "0123456789abcdef", service: names[0]!, expiresAt: iso(now + DAY), acme: false }],
      revocations: [{ serial: "7f0", service: names[0], reason: "keyCompromise", at: iso(now - DAY) }],
    };
  }
  return snap;
}
