/**
 * Normalization: a structurally valid WrittenManifest becomes a resolved Manifest. Defaults are
 * applied, durations converted, addresses typed and identities rendered. Problems found on the
 * way (an address that is neither IP nor DNS name) are collected, not thrown.
 */
import * as path from "node:path";
import { compileTemplate } from "../identity/index.ts";
import type { Subject } from "../pki/name.ts";
import { classifyAddress, type Address } from "./address.ts";
import { parseDuration, parseTtl } from "./duration.ts";
import type { CertSlot, Connection, Manifest, Service } from "./model.ts";
import { normalizeOutputs } from "./outputs.ts";
import type { Context } from "./rules.ts";
import type { WrittenManifest } from "./schema.ts";

/** DEFAULTS are the values used where the manifest says nothing; the schema's descriptions repeat them. */
export const DEFAULTS = {
  caKey: "ecdsa-p256",
  caValidity: "10y",
  intermediateValidity: "1y",
  key: "ecdsa-p256",
  validity: "90d",
  crlNextUpdate: "7d",
  ttl: "1h",
  maxTtl: "24h",
} as const;

/** FEW_ADDRESSES: from this many written addresses on, a service's are de-duplicated through a Set. */
const FEW_ADDRESSES = 16;

/** normalize resolves a written manifest; `manifestDir` anchors relative paths (ca.import, services.NAME.files). */
export function normalize(w: WrittenManifest, ctx: Context, manifestDir: string): Manifest {
  const d = w.defaults ?? {};
  // The schema has checked the syntax. Most services share a few durations: each is parsed once.
  const durations = new Map<string, number>();
  const dur = (text: string) => {
    let ms = durations.get(text);
    if (ms === undefined) durations.set(text, (ms = parseDuration(text)!));
    return ms;
  };
  const ttl = (text: string) => parseTtl(text)!; // so it has for ttls
  const resolve = (file: string) => path.resolve(manifestDir, file);
  const resolveOptional = (file: string | undefined) => (file === undefined ? undefined : resolve(file));
  const identityOf = w.identity ? compileTemplate(w.identity.uri) : undefined;
  const services: Service[] = Object.entries(w.services).map(([name, s]) => {
    const at = ["services", name];
    const cn = s.cn ?? name;
    const dns: string[] = [];
    const ips: Extract<Address, { kind: "ip" }>[] = [];
    const written = s.addresses ?? [];
    // A Set, not searches of the lists, for many addresses: 50,000 took 20 s de-duplicated by
    // search (issue 11); for the few most services have, a search costs less than a Set (issue 12).
    const seen = written.length >= FEW_ADDRESSES ? new Set<string>() : undefined;
    const add = (a: Address) => {
      // An IP's text is canonical (IPv4 without leading zeros, IPv6 as formatIp writes it): one text per address.
      if (seen) {
        const key = a.kind === "dns" ? `dns:${a.text}` : `ip:${a.text}`;
        if (seen.has(key)) return;
        seen.add(key);
      } else if (a.kind === "dns" ? dns.includes(a.text) : ips.some((x) => x.text === a.text)) return;
      if (a.kind === "dns") dns.push(a.text);
      else ips.push(a);
    };
    const cnAddress = classifyAddress(cn);
    if ("error" in cnAddress)
      ctx.error([...at, "cn"], `must also be a valid SAN, but ${cnAddress.error}`, cnAddress.fix);
    else add(cnAddress);
    for (let i = 0; i < written.length; i++) {
      const a = classifyAddress(written[i]!);
      if ("error" in a) ctx.error([...at, "addresses", i], a.error, a.fix);
      else add(a);
    }
    const validityMs = dur(s.validity ?? d.validity ?? DEFAULTS.validity);
    const renew = s.renewBefore ?? d.renewBefore;
    const role = s.role ?? s.usage;
    const split = s.split ?? false;
    const slots: CertSlot[] =
      split && s.usage === "dual"
        ? [
            { id: name, service: name, kind: "main", profile: "server" },
            { id: `${name}/client`, service: name, kind: "client", profile: "client" },
          ]
        : [{ id: name, service: name, kind: "main", profile: s.usage }];
    const clientSans = s.clientSans ?? "all";
    if (clientSans === "identity-only") {
      // A client certificate needs no address SAN (peers check only its chain and clientAuth); a serving one does.
      if (s.usage === "server")
        ctx.error(
          [...at, "clientSans"],
          "is about the client certificate, but usage server has none (its certificate serves and must carry its addresses)",
          "remove clientSans, or set usage: client",
        );
      else if (s.usage === "dual" && !split)
        ctx.error(
          [...at, "clientSans"],
          "would strip the addresses from the one certificate that also serves, so peers dialing this service would fail with a name mismatch",
          "add split: true (the client half gets the identity only, the server certificate keeps the addresses), or remove clientSans",
        );
      if (!w.identity)
        ctx.error(
          [...at, "clientSans"],
          "identity-only keeps the identity URI as the only SAN, but the manifest has no identity.uri, so the certificate would carry none",
          "add identity: { uri: ... }, or remove clientSans",
        );
    }
    const subject: Subject = { ...d.subject, ...s.subject, CN: cn };
    const f = s.files;
    // The optional fields are set after the literal: a spread inside an object literal takes V8's
    // slow path, which for 10,000 services cost more than the fields themselves (issue 12).
    const service: Service = {
      name,
      usage: s.usage,
      role,
      cn,
      keyType: s.key ?? d.key ?? DEFAULTS.key,
      validityMs,
      renewBeforeMs: renew === undefined ? Math.floor(validityMs / 3) : dur(renew),
      subject,
      dns,
      ips,
      identity: identityOf?.({ cluster: w.cluster, role, name }),
      split,
      clientSans,
      slots,
      files: f
        ? {
            cert: resolve(f.cert),
            key: resolve(f.key),
            ca: resolve(f.ca),
            clientCert: resolveOptional(f.clientCert),
            clientKey: resolveOptional(f.clientKey),
            owner: f.owner === undefined ? undefined : String(f.owner),
          }
        : undefined,
    };
    // Only a csr service is issued online; a ttl elsewhere is refused by rules.ts (ttlNeedsCsr).
    if (s.csr === true) {
      service.csr = true;
      service.ttlMs = ttl(s.ttl ?? DEFAULTS.ttl);
      if (s.acmeTrustBinding === true) service.acmeTrustBinding = true;
    }
    if (s.reload !== undefined)
      service.reload =
        typeof s.reload === "string"
          ? { command: s.reload }
          : { signal: s.reload.signal, pidFile: resolve(s.reload.pidFile) };
    return service;
  });

  const connections: Connection[] = [];
  const byName = new Map(services.map((s) => [s.name, s]));
  (w.connections ?? []).forEach((c, i) => {
    const target = byName.get(c.to);
    let address: Address | undefined;
    if (c.address !== undefined) {
      const a = classifyAddress(c.address);
      if ("error" in a) ctx.error(["connections", i, "address"], a.error, a.fix);
      else address = a;
    } else if (target) {
      address = target.ips[0] ?? { kind: "dns", text: target.dns[0] ?? target.cn };
      const firstWritten = w.services[target.name]?.addresses?.[0];
      if (firstWritten !== undefined) {
        const a = classifyAddress(firstWritten);
        if (!("error" in a)) address = a;
      }
    }
    if (address) connections.push({ index: i, from: c.from, to: c.to, address });
  });

  const ca = w.ca ?? {};
  const caSubject = ca.subject
    ? { ...ca.subject, CN: ca.subject.CN ?? `${w.cluster} CA` }
    : { ...d.subject, CN: `${w.cluster} CA` };
  const inter = ca.intermediate;
  const interValidityMs = dur(inter?.validity ?? DEFAULTS.intermediateValidity);
  return {
    file: ctx.file,
    cluster: w.cluster,
    identityTemplate: w.identity?.uri,
    ca: {
      keyType: ca.key ?? DEFAULTS.caKey,
      validityMs: dur(ca.validity ?? DEFAULTS.caValidity),
      subject: caSubject,
      import: ca.import
        ? {
            cert: resolve(ca.import.cert),
            key: resolveOptional(ca.import.key),
            chain: resolveOptional(ca.import.chain),
          }
        : undefined,
      intermediate: inter
        ? {
            keyType: inter.key ?? ca.key ?? DEFAULTS.caKey,
            validityMs: interValidityMs,
            renewBeforeMs: inter.renewBefore ? dur(inter.renewBefore) : Math.floor(interValidityMs / 3),
            subject: inter.subject
              ? { ...inter.subject, CN: inter.subject.CN ?? `${w.cluster} Intermediate CA` }
              : { ...caSubject, CN: `${w.cluster} Intermediate CA` },
          }
        : undefined,
      crlNextUpdateMs: dur(ca.crl?.nextUpdate ?? DEFAULTS.crlNextUpdate),
    },
    services,
    connections,
    layoutVersion: w.layoutVersion ?? 1,
    outputs: normalizeOutputs(w, manifestDir),
    serve: { maxTtlMs: ttl(w.serve?.maxTtl ?? DEFAULTS.maxTtl), admins: [...(w.serve?.admins ?? [])] },
  };
}
