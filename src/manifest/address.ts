/**
 * Addresses as written in a manifest: IP addresses become IP SANs, names become DNS SANs.
 * Anything that looks like an IP but is not one (10.0.0.256) is an error, never a DNS name.
 */
import { isIPv4, isIPv6 } from "node:net";
import { formatIp, ipBytes } from "../pki/ip.ts";

export { formatIp, ipBytes };

/** Address is a classified address. */
export type Address = { kind: "ip"; text: string; bytes: Buffer } | { kind: "dns"; text: string };

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * classifyAddress turns written text into an Address, or returns the rule it breaks and the fix.
 * DNS names follow RFC 1034/5280 preferred syntax: labels of letters, digits and inner hyphens,
 * at most 63 characters each and 253 in all; compared in lower case.
 */
export function classifyAddress(written: string): Address | { error: string; fix: string } {
  const text = written.trim();
  if (text === "") return { error: "is empty", fix: "write an IP address or a DNS name" };
  if (isIPv4(text)) return { kind: "ip", text, bytes: ipBytes(text) };
  if (text.includes(":") || /^\[.*\]$/.test(text)) {
    const bare = text.replace(/^\[(.*)\]$/, "$1");
    if (bare !== text) return { error: `${JSON.stringify(written)} is in URL bracket form`, fix: `write the address without brackets: ${bare}` };
    if (isIPv6(bare) && !bare.includes("%")) {
      const bytes = ipBytes(bare);
      return { kind: "ip", text: formatIp(bytes), bytes };
    }
    return { error: `${JSON.stringify(written)} is not a valid IPv6 address (and a DNS name has no ":")`, fix: "write the address without brackets, port or zone, e.g. 2001:db8::1" };
  }
  if (/^[0-9.]+$/.test(text)) {
    return { error: `${JSON.stringify(written)} is not a valid IPv4 address (four numbers 0-255); it is not taken as a DNS name`, fix: "correct the address" };
  }
  const name = text.toLowerCase();
  if (name.startsWith("*.")) return { error: `${JSON.stringify(written)} is a wildcard; service certificates name exact hosts`, fix: "list each host name the service is dialed at" };
  if (name.endsWith(".")) return { error: `${JSON.stringify(written)} ends with a dot`, fix: `write ${JSON.stringify(name.slice(0, -1))}` };
  if (name.length > 253) return { error: "is longer than 253 characters", fix: "shorten the name" };
  const bad = name.split(".").find((l) => !LABEL.test(l));
  if (bad !== undefined) {
    return {
      error: `${JSON.stringify(written)} is not a valid DNS name: label ${JSON.stringify(bad)} must be 1-63 letters, digits or inner hyphens`,
      fix: bad.includes("_") ? "replace underscores with hyphens" : "correct the name",
    };
  }
  if (/^[0-9]+$/.test(name.split(".").pop()!)) return { error: `${JSON.stringify(written)} is not a valid DNS name: the last label is numeric`, fix: "correct the name" };
  return { kind: "dns", text: name };
}
