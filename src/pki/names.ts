/**
 * Name matching against typed SANs, as Go's crypto/x509 and RFC 6125 do it: an IP only against IP
 * SANs (by bytes), a DNS name only against DNS SANs, and never the subject CN (Go dropped the CN
 * fallback in 1.15; Node still has it in tls.checkServerIdentity for certificates without SANs).
 * Shared by check (does a certificate cover the address a peer dials?) and the service library
 * (does the server we dialed carry the name we dialed?).
 */
import { isIP } from "node:net";
import { ipBytes } from "./ip.ts";
import type { SanEntry } from "./x509.ts";

/** SanAddress is what a peer dials: an IP (compared by bytes) or a DNS name. */
export type SanAddress = { kind: "ip"; bytes: Buffer } | { kind: "dns"; text: string };

/** addressOf classifies a dialed host: an IP address (IPv6 without brackets) or a DNS name. */
export function addressOf(host: string): SanAddress {
  return isIP(host) ? { kind: "ip", bytes: ipBytes(host) } : { kind: "dns", text: host };
}

/** dnsMatches tells whether `name` matches SAN `pattern`: case-insensitive, one left-most `*.` label (RFC 6125 6.4.3). */
export function dnsMatches(pattern: string, name: string): boolean {
  const p = pattern.toLowerCase().replace(/\.$/, "");
  const n = name.toLowerCase().replace(/\.$/, "");
  if (!p.startsWith("*.")) return p === n;
  const dot = n.indexOf(".");
  return dot > 0 && n.slice(dot) === p.slice(1) && p.split(".").length > 2;
}

/** sansCover tells whether typed SANs include an address (IP by bytes, DNS by name); the CN never counts. */
export function sansCover(sans: readonly SanEntry[], address: SanAddress): boolean {
  if (address.kind === "ip") return sans.some((s) => s.type === "ip" && s.bytes.equals(address.bytes));
  return sans.some((s) => s.type === "dns" && dnsMatches(s.value, address.text));
}
