/**
 * The one door to native/p256.cc (built by `npm ci` into build/Release/p256.node): a P-256
 * ECDSA/SHA-256 signature check through Node's own OpenSSL without node:crypto's per-call key
 * import, for the request's self-signature the online CA checks once per certificate (a third of
 * node:crypto's cost: ARCHITECTURE.md). Optional: where the addon was not built, or
 * MTLSKIT_NATIVE=0, nativeP256() is undefined and callers use node:crypto. Loaded on first use, so
 * the entries that never check a request (the agent, the service library) never load it.
 */
import { createRequire } from "node:module";

/** P256Verify: whether `signature` (DER) over SHA-256 of `message` verifies with the uncompressed P-256 point `point`. */
export type P256Verify = (point: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean;

/** ADDON: the built addon's path from this module (src/pki/ under tsx, dist/pki/ built: both two below the package root). */
const ADDON = "../../build/Release/p256.node";

function load(): P256Verify | undefined {
  if (process.env.MTLSKIT_NATIVE === "0") return undefined;
  try {
    const addon = createRequire(import.meta.url)(ADDON) as { verify?: P256Verify };
    return typeof addon.verify === "function" ? addon.verify : undefined;
  } catch {
    return undefined;
  }
}

let loaded: { verify: P256Verify | undefined } | undefined;

/** nativeP256: the native check, or undefined when it is not available (see the file's comment). */
export function nativeP256(): P256Verify | undefined {
  loaded ??= { verify: load() };
  return loaded.verify;
}
