/**
 * The server's side of http-01 (RFC 8555 §8.3) and tls-alpn-01 (RFC 8737): it dials the
 * identifier and checks the key authorization. Names under `.localhost` (and `localhost`)
 * resolve to 127.0.0.1 here, in the validator itself (RFC 6761 §6.3: they are loopback; this
 * machine's resolver may not say so); IP identifiers (RFC 8738) are dialed as they are; other
 * names go through the system resolver. Every step is bounded: connect and answer within
 * `timeoutMs`, an http-01 body of at most 1 KiB, no redirects followed.
 */
import { createHash } from "node:crypto";
import { lookup } from "node:dns/promises";
import { request } from "node:http";
import { isIP } from "node:net";
import { connect } from "node:tls";
import { readCertFields } from "../pki/cert.ts";
import { children, contentsOf, readTlv, TAG } from "../pki/der.ts";
import { decodeCertificate, decodeOid } from "../pki/x509.ts";
import { ipBytes } from "../pki/ip.ts";
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
