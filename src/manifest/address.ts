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
 * undialable refuses IPs no peer can open a TLS connection to, so a SAN with one never matches
 * (issue 11): the unspecified address (0.0.0.0, ::) means "every interface" to a listener, the
 * rest of 0.0.0.0/8 is a source address only, and multicast (224.0.0.0/4, ff00::/8) and the broadcast address (255.255.255.255) are not TCP
 * destinations. An IPv4-mapped IPv6 address is judged by its IPv4 part.
 */
function undialable(written: string, bytes: Buffer): { error: string; fix: string } | undefined {
  const mapped =
    bytes.length === 16 && bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  const v4 = bytes.length === 4 ? bytes : mapped ? bytes.subarray(12) : undefined;
  const fix = "write the address peers dial: the host's own unicast IP or DNS name (127.0.0.1 or ::1 for loopback)";
  const what = JSON.stringify(written);
  if (bytes.every((b) => b === 0) || v4?.every((b) => b === 0)) {
    return {
      error: `${what} is the unspecified address: a server listens on it to mean every interface, but no peer can dial it, so a SAN with it never matches`,
      fix,
    };
  }
  if (v4 !== undefined && v4[0] === 0)
    return {
      error: `${what} is in 0.0.0.0/8, "this network", which is only ever a source address (RFC 1122 3.2.1.3): no peer can dial it`,
      fix,
    };
  if (v4 !== undefined ? (v4[0]! & 0xf0) === 0xe0 : bytes[0] === 0xff)
    return {
      error: `${what} is a multicast address; TLS runs over TCP, which cannot connect to a multicast group`,
      fix,
    };
  if (v4?.every((b) => b === 0xff))
    return { error: `${what} is the broadcast address; TLS runs over TCP, which cannot connect to it`, fix };
  return undefined;
}

/** PLAIN_DNS is a DNS name classifyAddress accepts as written: lower case, valid labels, at most 253 characters. */
const PLAIN_DNS = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * plainAddress is classifyAddress's answer for the addresses most manifests hold, found with one
 * pass over the text: a unicast IPv4 address in canonical form (1.0.0.0 to 223.255.255.255) or a
 * lower-case DNS name whose last label is not numeric. Anything else (upper case, white space,
 * IPv6, every error): undefined, and classifyAddress takes its full path. Measured on a
 * 10,000-service manifest (issue 12): the full path cost ~12 µs per address in a fresh process.
 */
function plainAddress(written: string): Address | undefined {
  const octets = [0, 0, 0, 0];
  let part = 0;
  let digits = 0;
  let ipv4 = written.length <= 15;
  for (let i = 0; ipv4 && i < written.length; i++) {
    const c = written.charCodeAt(i);
    if (c === 46 /* . */) {
      ipv4 = digits > 0 && part < 3;
      part++;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      // No leading zero (010 is not canonical), at most 255.
      ipv4 = !(digits === 1 && octets[part] === 0);
      octets[part] = octets[part]! * 10 + (c - 48);
      digits++;
      ipv4 &&= octets[part]! <= 255;
    } else ipv4 = false;
  }
  if (ipv4 && part === 3 && digits > 0) {
    // 0.0.0.0/8, multicast and broadcast: classifyAddress words why no peer can dial them.
    if (octets[0]! === 0 || octets[0]! >= 224) return undefined;
    const bytes = Buffer.allocUnsafe(4); // from the pool, as Buffer.from(array) but without reading an array
    for (let i = 0; i < 4; i++) bytes[i] = octets[i]!;
    return { kind: "ip", text: written, bytes };
  }
  if (!PLAIN_DNS.test(written)) return undefined;
  const last = written.slice(written.lastIndexOf(".") + 1);
  return /^[0-9]+$/.test(last) ? undefined : { kind: "dns", text: written };
}

/**
 * classifyAddress turns written text into an Address, or returns the rule it breaks and the fix.
 * DNS names follow RFC 1034/5280 preferred syntax: labels of letters, digits and inner hyphens,
 * at most 63 characters each and 253 in all; compared in lower case.
 */
export function classifyAddress(written: string): Address | { error: string; fix: string } {
  return plainAddress(written) ?? classifyAddressFully(written);
}

/** classifyAddressFully is classifyAddress without plainAddress's shortcut (test/address.test.ts compares the two). */
export function classifyAddressFully(written: string): Address | { error: string; fix: string } {
  const text = written.trim();
  if (text === "") return { error: "is empty", fix: "write an IP address or a DNS name" };
  if (isIPv4(text)) {
    const bytes = ipBytes(text);
    return undialable(written, bytes) ?? { kind: "ip", text, bytes };
  }
  if (text.includes(":") || /^\[.*\]$/.test(text)) {
    const bare = text.replace(/^\[(.*)\]$/, "$1");
    if (bare !== text)
      return {
        error: `${JSON.stringify(written)} is in URL bracket form`,
        fix: `write the address without brackets: ${bare}`,
      };
    if (isIPv6(bare) && !bare.includes("%")) {
      const bytes = ipBytes(bare);
      return undialable(written, bytes) ?? { kind: "ip", text: formatIp(bytes), bytes };
    }
    return {
      error: `${JSON.stringify(written)} is not a valid IPv6 address (and a DNS name has no ":")`,
      fix: "write the address without brackets, port or zone, e.g. 2001:db8::1",
    };
  }
  if (/^[0-9.]+$/.test(text)) {
    return {
      error: `${JSON.stringify(written)} is not a valid IPv4 address (four numbers 0-255); it is not taken as a DNS name`,
      fix: "correct the address",
    };
  }
  const name = text.toLowerCase();
  if (name.startsWith("*."))
    return {
      error: `${JSON.stringify(written)} is a wildcard; service certificates name exact hosts`,
      fix: "list each host name the service is dialed at",
    };
  if (name.endsWith("."))
    return { error: `${JSON.stringify(written)} ends with a dot`, fix: `write ${JSON.stringify(name.slice(0, -1))}` };
  if (name.length > 253) return { error: "is longer than 253 characters", fix: "shorten the name" };
  const bad = name.split(".").find((l) => !LABEL.test(l));
  if (bad !== undefined) {
    return {
      error: `${JSON.stringify(written)} is not a valid DNS name: label ${JSON.stringify(bad)} must be 1-63 letters, digits or inner hyphens`,
      fix: bad.includes("_") ? "replace underscores with hyphens" : "correct the name",
    };
  }
  if (/^[0-9]+$/.test(name.split(".").pop()!))
    return {
      error: `${JSON.stringify(written)} is not a valid DNS name: the last label is numeric`,
      fix: "correct the name",
    };
  return { kind: "dns", text: name };
}
