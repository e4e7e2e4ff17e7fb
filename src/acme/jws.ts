/**
 * JWS for ACME (RFC 8555 §6.2, RFC 7515): the one door to `jose`. Flattened JWS only (the
 * serialization ACME requires), the signature algorithms ACME clients use (ES256, RS256, EdDSA
 * on Ed25519), JWK thumbprints (RFC 7638: an account's key, a key authorization) and the HMAC of
 * an External Account Binding (HS256, HS384, HS512). jose's own checks stay on: `crit`, `b64`,
 * an RSA modulus under 2048 bits, a JWK that holds a private part. Its errors become JwsError
 * with a sentence; nothing of jose leaves this file.
 */
import {
  base64url,
  calculateJwkThumbprint,
  exportSPKI,
  flattenedVerify,
  importJWK,
  type FlattenedJWSInput,
  type JWK,
} from "jose";

/** JWS_ALGORITHMS: the account-key signature algorithms accepted (RFC 8555 §6.2: at least ES256 and EdDSA; RS256 for RSA account keys, certbot's and cert-manager's). */
export const JWS_ALGORITHMS = ["ES256", "RS256", "EdDSA"] as const;
/** EAB_ALGORITHMS: the MAC algorithms of an External Account Binding (RFC 8555 §7.3.4). */
export const EAB_ALGORITHMS = ["HS256", "HS384", "HS512"] as const;

/** JwsError: a JWS that is not well formed or does not verify; the message says which part. */
export class JwsError extends Error {
  override name = "JwsError";
}

/** Jwk: a public JSON Web Key as sent in a protected header. */
export type Jwk = Record<string, unknown>;

/** FlattenedJws: the three base64url members of a flattened JWS (RFC 7515 §7.2.2), as ACME sends them. */
export interface FlattenedJws {
  protected: string;
  payload: string;
  signature: string;
}

/** ProtectedHeader: the members of a JWS's protected header ACME reads. */
export interface ProtectedHeader {
  alg?: unknown;
  nonce?: unknown;
  url?: unknown;
  jwk?: unknown;
  kid?: unknown;
  [name: string]: unknown;
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/** parseFlattened checks a request body is a flattened JWS (an object of three base64url strings, no unprotected header) and reads its protected header. */
export function parseFlattened(body: unknown): { jws: FlattenedJws; header: ProtectedHeader } {
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw new JwsError("the body is not a JSON object (a flattened JWS)");
  const b = body as Record<string, unknown>;
  const extra = Object.keys(b).filter((k) => k !== "protected" && k !== "payload" && k !== "signature");
  if (extra.length > 0)
    throw new JwsError(
      `the JWS has ${extra.map((k) => JSON.stringify(k)).join(", ")}: ACME takes the flattened serialization with a protected header only (RFC 8555 §6.2)`,
    );
  for (const k of ["protected", "payload", "signature"] as const)
    if (typeof b[k] !== "string" || !B64URL.test(b[k] as string))
      throw new JwsError(`the JWS's ${k} is ${typeof b[k] === "string" ? "not base64url" : "missing"}`);
  const jws = b as unknown as FlattenedJws;
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(jws.protected, "base64url").toString("utf8"));
  } catch {
    throw new JwsError("the JWS's protected header is not base64url JSON");
  }
  if (typeof header !== "object" || header === null || Array.isArray(header))
    throw new JwsError("the JWS's protected header is not a JSON object");
  return { jws, header: header as ProtectedHeader };
}

/** joseMessage words a jose error for a client (its code, else its message, never a stack). */
const joseMessage = (e: unknown) => {
  const err = e as { code?: string; message?: string };
  return `${err.message ?? "invalid"}${err.code ? ` (${err.code})` : ""}`;
};

/** checkPublicJwk refuses a JWK that is not a public key of a kind JWS_ALGORITHMS verify with. */
function checkPublicJwk(jwk: unknown): Jwk {
  if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk)) throw new JwsError("jwk is not a JSON object");
  const k = jwk as Jwk;
  if ("d" in k || "p" in k || "k" in k) throw new JwsError("jwk holds private or secret key material");
  if (k.kty !== "EC" && k.kty !== "RSA" && k.kty !== "OKP")
    throw new JwsError(`jwk kty ${String(k.kty)} is not EC, RSA or OKP`);
  return k;
}

/**
 * verifyJws verifies a flattened JWS with a public JWK under `alg` (one of JWS_ALGORITHMS, read
 * from the protected header by the caller) and returns the payload's bytes (empty: POST-as-GET).
 */
export async function verifyJws(jws: FlattenedJws, jwk: unknown, alg: string): Promise<Buffer> {
  const pub = checkPublicJwk(jwk);
  let key: Awaited<ReturnType<typeof importJWK>>;
  try {
    key = await importJWK(pub as JWK, alg);
  } catch (e) {
    throw new JwsError(`jwk is not a usable ${alg} public key: ${joseMessage(e)}`);
  }
  try {
    const r = await flattenedVerify(jws as FlattenedJWSInput, key, { algorithms: [...JWS_ALGORITHMS] });
    return Buffer.from(r.payload);
  } catch (e) {
    throw new JwsError(`the JWS signature does not verify with the key: ${joseMessage(e)}`);
  }
}

/** verifyMac verifies an External Account Binding's flattened JWS with its HMAC key; returns the payload's bytes. */
export async function verifyMac(jws: FlattenedJws, hmacKey: Uint8Array): Promise<Buffer> {
  try {
    const r = await flattenedVerify(jws as FlattenedJWSInput, hmacKey, { algorithms: [...EAB_ALGORITHMS] });
    return Buffer.from(r.payload);
  } catch (e) {
    throw new JwsError(`the MAC does not verify with the EAB key: ${joseMessage(e)}`);
  }
}

/** thumbprint is a public JWK's SHA-256 thumbprint, base64url (RFC 7638): an account's lookup key and the second half of a key authorization. */
export async function thumbprint(jwk: unknown): Promise<string> {
  try {
    return await calculateJwkThumbprint(checkPublicJwk(jwk) as JWK, "sha256");
  } catch (e) {
    if (e instanceof JwsError) throw e;
    throw new JwsError(`jwk is not a public key: ${joseMessage(e)}`);
  }
}

/** spkiOfJwk is a public JWK as SubjectPublicKeyInfo DER: compared with a certificate's key (revokeCert signed by the certificate's own key). */
export async function spkiOfJwk(jwk: unknown, alg: string): Promise<Buffer> {
  try {
    const key = await importJWK(checkPublicJwk(jwk) as JWK, alg, { extractable: true });
    if (key instanceof Uint8Array) throw new JwsError("jwk is a secret key");
    const pem = await exportSPKI(key);
    return Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
  } catch (e) {
    if (e instanceof JwsError) throw e;
    throw new JwsError(`jwk is not a usable ${alg} public key: ${joseMessage(e)}`);
  }
}

/** decodeB64url decodes base64url text (jose's decoder: strict about the alphabet). */
export function decodeB64url(text: string): Buffer {
  try {
    return Buffer.from(base64url.decode(text));
  } catch {
    throw new JwsError("not base64url");
  }
}
