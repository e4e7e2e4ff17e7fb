/**
 * The server's side of http-01 (RFC 8555 §8.3), tls-alpn-01 (RFC 8737) and dns-01 (RFC 8555
 * §8.4): it dials the identifier (or asks the configured DNS resolver) and checks the key
 * authorization. Names under `.localhost` (and `localhost`)
 * resolve to 127.0.0.1 here, in the validator itself (RFC 6761 §6.3: they are loopback; this
 * machine's resolver may not say so); IP identifiers (RFC 8738) are dialed as they are; other
 * names go through the system resolver. Every step is bounded: connect and answer within
 * `timeoutMs`, an http-01 body of at most 1 KiB, no redirects followed.
 */
import { createHash } from "node:crypto";
import { lookup, Resolver } from "node:dns/promises";
import { request } from "node:http";
import { isIP } from "node:net";
import { connect } from "node:tls";
import { readCertFields } from "../pki/cert.ts";
import { children, contentsOf, readTlv, TAG } from "../pki/der.ts";
import { decodeCertificate, decodeOid } from "../pki/x509.ts";
import { formatIp, ipBytes } from "../pki/ip.ts";
import { AcmeProblem, type Identifier } from "./protocol.ts";

/** ACME_IDENTIFIER_OID: the tls-alpn-01 certificate's acmeIdentifier extension (RFC 8737 §3). */
export const ACME_IDENTIFIER_OID = "1.3.6.1.5.5.7.1.31";

/** ValidatorOptions: where challenges are dialed. */
export interface ValidatorOptions {
  /**
   * ports: the ports dialed for http-01 (80) and tls-alpn-01 (443), as RFC 8555 and 8737 fix
   * them. Only tests change them (their ACME clients listen on a free port); a real deployment
   * leaves them alone.
   */
  ports?: { http?: number; tls?: number };
  /** timeoutMs: each validation's bound, connect to answer. Default: 5000. */
  timeoutMs?: number;
  /** resolve: a DNS name to the address dialed. Default: `.localhost` to 127.0.0.1, others through the system resolver. */
  resolve?: (name: string) => Promise<string>;
  /**
   * dnsResolvers: the DNS servers dns-01 asks for `_acme-challenge.NAME` TXT records, and only
   * them (`mtlskit serve --acme-dns-resolver IP[:PORT]`, as parseDnsResolver spells them).
   * Default: none, and then dns-01 is not offered: the system resolver may be one the clients'
   * network controls, or cache an answer from before the record was set.
   */
  dnsResolvers?: string[];
}

/**
 * parseDnsResolver reads one `--acme-dns-resolver`: an IP address with an optional port (IPv6
 * with a port in brackets), spelled as node:dns's setServers takes it; undefined when it is not one.
 */
export function parseDnsResolver(text: string): string | undefined {
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([0-9.]+)(?::(\d{1,5}))?$/.exec(text);
  const [host, port] = m ? [m[1]!, m[2]] : isIP(text) === 6 ? [text, undefined] : [undefined, undefined];
  if (host === undefined || isIP(host) === 0) return undefined;
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return undefined;
  const v6 = isIP(host) === 6;
  const canonical = formatIp(ipBytes(host));
  if (port === undefined || port === "53") return canonical;
  return v6 ? `[${canonical}]:${Number(port)}` : `${canonical}:${Number(port)}`;
}

/** MAX_CNAME_HOPS bounds the CNAME chain dns-01 follows itself when the resolver answers a CNAME without its target's TXT. */
const MAX_CNAME_HOPS = 8;

/** dns01Value is what the `_acme-challenge` TXT record holds: base64url(SHA-256(key authorization)) (RFC 8555 §8.4). */
export const dns01Value = (keyAuth: string): string => createHash("sha256").update(keyAuth).digest("base64url");

/**
 * validateDns01 asks only the configured resolvers for the TXT records of `_acme-challenge.NAME`
 * and looks for base64url(SHA-256(key authorization)) among them (RFC 8555 §8.4). A CNAME is
 * followed as the resolver follows it (its answer holds the chain), or here, hop by hop, when it
 * answers the CNAME alone (at most MAX_CNAME_HOPS). Bounded: each query `timeoutMs / 3` (at
 * least 250 ms) and 2 tries per server, the whole validation `timeoutMs`.
 */
export async function validateDns01(id: Identifier, keyAuth: string, opts: ValidatorOptions = {}): Promise<void> {
  const servers = opts.dnsResolvers ?? [];
  if (id.type !== "dns")
    throw new AcmeProblem("malformed", "dns-01 validates DNS names only (RFC 8738 §7: never IP identifiers)");
  if (servers.length === 0)
    throw new AcmeProblem("dns", "this server validates dns-01 through no resolver: none is configured", {
      fix: "use http-01 or tls-alpn-01, or the operator starts `mtlskit serve --acme-dns-resolver IP[:PORT]`",
    });
  const timeoutMs = opts.timeoutMs ?? 5000;
  const resolver = new Resolver({ timeout: Math.max(250, Math.floor(timeoutMs / 3)), tries: 2 });
  resolver.setServers(servers);
  const name = `_acme-challenge.${id.value.replace(/^\*\./, "")}`;
  const via = servers.join(", ");
  const bound = setTimeout(() => resolver.cancel(), timeoutMs).unref();
  let records: string[];
  let asked = name;
  try {
    for (let hop = 0; ; hop++) {
      records = await resolver.resolveTxt(asked).then(
        (txt) => txt.map((chunks) => chunks.join("")),
        (e: NodeJS.ErrnoException) => {
          if (e.code === "ENODATA") return [];
          throw e;
        },
      );
      if (records.length > 0 || hop >= MAX_CNAME_HOPS) break;
      // No TXT: an answer holding only a CNAME (an authoritative server for another zone) is followed here.
      const target = await resolver.resolveCname(asked).catch(() => [] as string[]);
      if (target.length === 0 || target[0] === asked) break;
      asked = target[0]!;
    }
    if (records.length === 0) throw Object.assign(new Error("no TXT"), { code: "ENODATA" });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "no answer";
    const what =
      code === "ENOTFOUND"
        ? "does not exist (NXDOMAIN)"
        : code === "ENODATA"
          ? "has no TXT record"
          : code === "ETIMEOUT" || code === "ECANCELLED"
            ? `got no answer within ${timeoutMs} ms`
            : code === "ECONNREFUSED"
              ? "could not be asked: the resolver refused the connection"
              : `could not be resolved (${code})`;
    throw new AcmeProblem(
      "dns",
      `${asked}${asked === name ? "" : ` (the CNAME of ${name})`} ${what}, asked of ${via}`,
      {
        fix: `publish TXT ${name} with the challenge's value where ${via} sees it (lego --dns, certbot --manual-auth-hook), then retry with a new order`,
      },
    );
  } finally {
    clearTimeout(bound);
  }
  const want = dns01Value(keyAuth);
  if (records.includes(want)) return;
  const shown = records
    .slice(0, 5)
    .map((r) => JSON.stringify(r.length > 64 ? `${r.slice(0, 64)}...` : r))
    .join(", ");
  throw new AcmeProblem(
    "incorrectResponse",
    `${name} has ${records.length === 1 ? "a TXT record" : `${records.length} TXT records`} (${shown}${records.length > 5 ? ", ..." : ""}) but none is base64url(SHA-256(key authorization)) of this challenge, asked of ${via}`,
    {
      fix: "publish this challenge's value (a stale record of an earlier order does not count), then retry with a new order",
    },
  );
}

/** resolveName: RFC 6761 loopback for localhost and names under it; the system resolver for the rest. */
export async function resolveName(name: string): Promise<string> {
  if (name === "localhost" || name.endsWith(".localhost")) return "127.0.0.1";
  return (await lookup(name)).address;
}

/** addressOf is where an identifier is dialed. */
async function addressOf(id: Identifier, opts: ValidatorOptions): Promise<string> {
  if (id.type === "ip") return id.value;
  try {
    return await (opts.resolve ?? resolveName)(id.value);
  } catch (e) {
    throw new AcmeProblem("dns", `${id.value} does not resolve: ${(e as NodeJS.ErrnoException).code ?? "no address"}`, {
      fix: "make the name resolve to the host running the ACME client",
    });
  }
}

/** validateHttp01 fetches http://IDENTIFIER/.well-known/acme-challenge/TOKEN and compares its body with the key authorization (RFC 8555 §8.3). */
export async function validateHttp01(
  id: Identifier,
  token: string,
  keyAuth: string,
  opts: ValidatorOptions = {},
): Promise<void> {
  const address = await addressOf(id, opts);
  const port = opts.ports?.http ?? 80;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const hostHeader = id.type === "ip" && isIP(id.value) === 6 ? `[${id.value}]` : id.value;
  const where = `http://${hostHeader}${port === 80 ? "" : `:${port}`}/.well-known/acme-challenge/${token}`;
  const body = await new Promise<string>((resolve, reject) => {
    const req = request(
      {
        host: address,
        port,
        path: `/.well-known/acme-challenge/${token}`,
        method: "GET",
        headers: { host: `${hostHeader}${port === 80 ? "" : `:${port}`}`, "user-agent": "mtlskit-acme-validator" },
        timeout: timeoutMs,
        agent: false,
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return reject(
            new AcmeProblem(
              "incorrectResponse",
              `${where} answered HTTP ${res.statusCode}, not 200 with the key authorization`,
            ),
          );
        }
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
          if (text.length > 1024) {
            req.destroy();
            reject(new AcmeProblem("incorrectResponse", `${where} answered more than 1 KiB`));
          }
        });
        res.on("end", () => resolve(text));
        res.on("error", reject);
      },
    );
    const bound = setTimeout(() => req.destroy(new Error("timeout")), timeoutMs).unref();
    req.on("close", () => clearTimeout(bound));
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (e: NodeJS.ErrnoException) =>
      reject(
        e instanceof AcmeProblem
          ? e
          : new AcmeProblem("connection", `cannot fetch ${where} (dialed ${address}:${port}): ${e.code ?? e.message}`, {
              fix: "serve the challenge on port 80 of the identifier's host (certbot --standalone, lego --http)",
            }),
      ),
    );
    req.end();
  });
  // RFC 8555 §8.3: the body, with trailing whitespace removed, equals the key authorization.
  if (body.replace(/\s+$/, "") !== keyAuth)
    throw new AcmeProblem("incorrectResponse", `${where} answered something other than the key authorization`);
}

/** reverseName is an IP identifier's reverse-DNS name, the SNI of tls-alpn-01 for IPs (RFC 8738 §6). */
export function reverseName(ip: string): string {
  const b = ipBytes(ip);
  if (b.length === 4) return `${[...b].reverse().join(".")}.in-addr.arpa`;
  const nibbles = [...b.toString("hex")].reverse().join(".");
  return `${nibbles}.ip6.arpa`;
}

/** acmeIdentifierValue reads the tls-alpn-01 certificate's acmeIdentifier extension: critical, an OCTET STRING of 32 octets (RFC 8737 §3). */
function acmeIdentifierValue(der: Buffer): { critical: boolean; value: Buffer } | undefined {
  const tbs = readCertFields(der).tbs;
  const top = readTlv(tbs, 0);
  for (const part of children(tbs, top)) {
    if (part.tag !== 0xa3) continue;
    const list = children(tbs, part)[0]!;
    for (const ext of children(tbs, list)) {
      const [oidTlv, ...rest] = children(tbs, ext);
      const oidText = decodeOid(contentsOf(tbs, oidTlv!));
      if (oidText !== ACME_IDENTIFIER_OID) continue;
      const critical = rest.length === 2 && rest[0]!.tag === TAG.boolean && tbs[rest[0]!.contentStart] !== 0;
      const outer = contentsOf(tbs, rest[rest.length - 1]!);
      const inner = readTlv(outer, 0);
      if (inner.tag !== TAG.octetString || inner.end !== outer.length) return { critical, value: Buffer.alloc(0) };
      return { critical, value: Buffer.from(contentsOf(outer, inner)) };
    }
  }
  return undefined;
}

/**
 * validateTlsAlpn01 connects with ALPN `acme-tls/1` and SNI the identifier, and checks the
 * self-signed certificate it is shown: exactly the identifier as its one SAN, and the critical
 * acmeIdentifier extension holding SHA-256(key authorization) (RFC 8737 §3).
 */
export async function validateTlsAlpn01(id: Identifier, keyAuth: string, opts: ValidatorOptions = {}): Promise<void> {
  const address = await addressOf(id, opts);
  const port = opts.ports?.tls ?? 443;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const servername = id.type === "dns" ? id.value : reverseName(id.value);
  const where = `${id.value} (dialed ${address}:${port}, ALPN acme-tls/1)`;
  const der = await new Promise<Buffer>((resolve, reject) => {
    const socket = connect({
      host: address,
      port,
      servername,
      ALPNProtocols: ["acme-tls/1"],
      // The certificate is self-signed by design: it is judged below, not by a chain.
      rejectUnauthorized: false,
      timeout: timeoutMs,
    });
    const bound = setTimeout(() => socket.destroy(new Error("timeout")), timeoutMs).unref();
    socket.on("secureConnect", () => {
      clearTimeout(bound);
      const proto = socket.alpnProtocol;
      const raw = socket.getPeerCertificate()?.raw;
      socket.destroy();
      if (proto !== "acme-tls/1")
        return reject(new AcmeProblem("tls", `${where} did not negotiate ALPN acme-tls/1 (got ${proto || "none"})`));
      if (!raw) return reject(new AcmeProblem("tls", `${where} showed no certificate`));
      resolve(Buffer.from(raw));
    });
    socket.on("timeout", () => socket.destroy(new Error("timeout")));
    socket.on("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(bound);
      reject(
        new AcmeProblem("connection", `cannot complete a TLS handshake with ${where}: ${e.code ?? e.message}`, {
          fix: "serve the challenge on port 443 of the identifier's host (lego --tls)",
        }),
      );
    });
  });
  let info: ReturnType<typeof decodeCertificate>;
  let ext: ReturnType<typeof acmeIdentifierValue>;
  try {
    info = decodeCertificate(der);
    ext = acmeIdentifierValue(der);
  } catch {
    throw new AcmeProblem("incorrectResponse", `${where} showed a certificate that does not decode`);
  }
  const sans = info.sans.map((s) => `${s.type}:${s.value.toLowerCase()}`);
  if (sans.length !== 1 || sans[0] !== `${id.type}:${id.value}`)
    throw new AcmeProblem(
      "incorrectResponse",
      `${where} showed a certificate for ${sans.join(", ") || "no SAN"}; RFC 8737 wants exactly ${id.type}:${id.value}`,
    );
  const want = createHash("sha256").update(keyAuth).digest();
  if (!ext)
    throw new AcmeProblem("incorrectResponse", `${where} showed a certificate without the acmeIdentifier extension`);
  if (!ext.critical) throw new AcmeProblem("incorrectResponse", `${where}'s acmeIdentifier extension is not critical`);
  if (!ext.value.equals(want))
    throw new AcmeProblem("incorrectResponse", `${where}'s acmeIdentifier is not SHA-256 of the key authorization`);
}
