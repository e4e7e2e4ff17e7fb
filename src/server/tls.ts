/**
 * The online CA's own TLS certificate: issued in memory by the issuing CA at start (server
 * profile, CN mtlskit-serve, SANs the listen address and localhost), through pki/issue.ts's
 * encodeTbs/signTbs like every other certificate, and renewed by the server at 2/3 of its
 * lifetime. Its key is generated here and never written anywhere: a restart makes a new one.
 */
import { createPrivateKey } from "node:crypto";
import { isIP } from "node:net";
import { hostname } from "node:os";
import { BACKDATE_MS } from "../ca/policy.ts";
import { encodeTbs, newSerial, signTbs, type CertSpec } from "../pki/issue.ts";
import { ipBytes } from "../pki/ip.ts";
import { generateKey } from "../pki/keys.ts";
import { encodePem } from "../pki/pem.ts";
import type { CaMaterial } from "../state/read.ts";

/** SERVER_CERT_MS: the lifetime of the server's own certificate (less when the CA expires sooner). */
export const SERVER_CERT_MS = 24 * 3_600_000;

/** ServerCredentials are what the TLS context is built from. */
export interface ServerCredentials {
  /** keyPem: PKCS#8, in memory only. */
  keyPem: string;
  /** certPem: the leaf, the issuing CA's intermediates, then the root (the --fingerprint anchor). */
  certPem: string;
  notAfter: Date;
  /** renewAt: 2/3 of the lifetime. */
  renewAt: Date;
}

/** serverNames are the SANs for a listen host: it, and localhost; an unspecified address (0.0.0.0, ::) names loopback and this host's name instead. */
export function serverNames(host: string): { dns: string[]; ips: Buffer[] } {
  const dns = new Set<string>(["localhost"]);
  const ips = new Map<string, Buffer>();
  const addIp = (ip: string) => ips.set(ipBytes(ip).toString("hex"), ipBytes(ip));
  if (host === "0.0.0.0" || host === "::") {
    addIp("127.0.0.1");
    addIp("::1");
    const h = hostname().toLowerCase();
    if (/^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/.test(h)) dns.add(h);
  } else if (isIP(host)) addIp(host);
  else dns.add(host.toLowerCase());
  return { dns: [...dns], ips: [...ips.values()] };
}

/**
 * issueServerCredentials makes a key and signs the server's certificate with `ca` at `now`. The
 * chain presented is the leaf, `ca`'s intermediates and `anchorPem`, the root whose SHA-256 agents
 * pin with --fingerprint: their first connection finds it in what the server sent.
 */
export function issueServerCredentials(ca: CaMaterial, anchorPem: string, host: string, now: Date): ServerCredentials {
  const privateKey = ca.privateKey;
  if (!privateKey) throw new Error("serve: the issuing CA's key is offline; startServer refuses that before this");
  const key = generateKey("ecdsa-p256");
  const names = serverNames(host);
  const wanted = now.getTime() + SERVER_CERT_MS;
  const notAfter = new Date(Math.min(wanted, ca.cert.notAfter.getTime()));
  const spec: CertSpec = {
    profile: "server",
    subject: { CN: "mtlskit-serve" },
    dns: names.dns,
    ips: names.ips,
    uris: [],
    keyType: "ecdsa-p256",
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter,
  };
  const issuer = { subject: ca.cert.subject, keyId: ca.keyId, keyType: ca.keyType, privateKey };
  const der = signTbs(encodeTbs(spec, issuer, key.spki, newSerial()), issuer);
  const keyPem = createPrivateKey({ key: key.pkcs8, format: "der", type: "pkcs8" })
    .export({ type: "pkcs8", format: "pem" })
    .toString();
  key.pkcs8.fill(0);
  const lifetime = notAfter.getTime() - now.getTime();
  return {
    keyPem,
    certPem: encodePem("CERTIFICATE", der) + ca.chainPem + anchorPem,
    notAfter,
    renewAt: new Date(now.getTime() + Math.max(0, Math.floor((lifetime * 2) / 3))),
  };
}
