/**
 * Pinning: admit a peer by the SHA-256 of its certificate or of its public key (SPKI), hex or
 * base64 as in HPKP's pin-sha256.
 */
import { AuthorizationError, misuse, type Authorizer } from "./authorize.ts";

/** pinOf reads a SHA-256 pin: 64 hex digits (colons allowed, any case) or 44 characters of base64 (HPKP's pin-sha256). */
function pinOf(pin: string, fn: string): string {
  const hex = pin.replace(/:/g, "").toLowerCase();
  if (/^[0-9a-f]{64}$/.test(hex)) return hex;
  if (/^[A-Za-z0-9+/]{43}=$/.test(pin)) return Buffer.from(pin, "base64").toString("hex");
  throw misuse(`${fn}: ${JSON.stringify(pin)} is not a SHA-256 digest (64 hex digits, or base64 as in pin-sha256)`);
}

/** pinned builds a pinning authorizer over one of the peer's digests. */
function pinned(fn: string, what: "certSha256" | "spkiSha256", label: string, pins: string[]): Authorizer {
  if (pins.length === 0)
    throw misuse(`${fn} needs at least one SHA-256 digest (deny by default: an empty list would refuse everyone)`);
  const set = new Set(pins.map((p) => pinOf(p, fn)));
  return (peer) =>
    set.has(peer[what])
      ? undefined
      : new AuthorizationError(peer, `want a ${label} SHA-256 of ${[...set].join(" or ")}; it has ${peer[what]}`);
}

/**
 * pinCertificate admits peers whose certificate's SHA-256 is one of `sha256s` (hex or base64);
 * a re-issued certificate needs a new pin.
 *
 * @example
 * pinCertificate("3b0c...e1"); // openssl x509 -in cert.pem -outform der | sha256sum
 */
export function pinCertificate(...sha256s: string[]): Authorizer {
  return pinned("pinCertificate", "certSha256", "certificate", sha256s);
}

/**
 * pinSpki admits peers whose public key (SubjectPublicKeyInfo) has one of `sha256s` as SHA-256;
 * the pin survives re-issuing a certificate for the same key.
 *
 * @example
 * pinSpki("d4:1d:8c:...");
 */
export function pinSpki(...sha256s: string[]): Authorizer {
  return pinned("pinSpki", "spkiSha256", "public key", sha256s);
}
