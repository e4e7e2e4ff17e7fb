/**
 * Bootstrap tokens as text: `mtk_<16 lower-hex id>_<43-char base64url secret>` (32 random bytes).
 * The id is the public half (the ledger's key, shown by `mtlskit token list`); the secret is
 * printed once and only its SHA-256 is stored. Presented secrets are compared by hash with
 * crypto.timingSafeEqual, so the time a comparison takes says nothing about the stored secret.
 */
// The default export, called through at use: a test can watch timingSafeEqual being the comparison.
import crypto from "node:crypto";

/** TOKEN_PREFIX marks an mtlskit token (so a secret scanner, or a person, can tell what it is). */
export const TOKEN_PREFIX = "mtk_";

/** TOKEN_RE: the whole token, capturing the id and the secret. */
const TOKEN_RE = /^mtk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

/** ParsedToken is a well-formed token's two halves. */
export interface ParsedToken {
  id: string;
  secret: string;
}

/** parseToken splits a presented token into id and secret; undefined when it is not `mtk_ID_SECRET` exactly (no whitespace, no padding). */
export function parseToken(text: string): ParsedToken | undefined {
  const m = TOKEN_RE.exec(text);
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

/** isTokenId tells whether `text` is a token id (16 lower-case hex digits), as `mtlskit token revoke ID` takes it. */
export const isTokenId = (text: string): boolean => /^[0-9a-f]{16}$/.test(text);

/** newToken makes a fresh token from `random` (crypto.randomBytes by default): its printable form, id and secret. */
export function newToken(random: (n: number) => Buffer = crypto.randomBytes): { token: string } & ParsedToken {
  const id = random(8).toString("hex");
  const secret = random(32).toString("base64url");
  return { token: `${TOKEN_PREFIX}${id}_${secret}`, id, secret };
}

/**
 * hashSecret is the SHA-256 of the secret's text, the only form the ledger keeps. The text, not
 * the decoded bytes, is hashed: base64url's last character carries 4 unused bits, and decoding
 * would let 16 spellings of one secret in.
 */
export function hashSecret(secret: string): Buffer {
  return crypto.createHash("sha256").update(secret, "utf8").digest();
}

/** DUMMY_HASH is compared against when the id is unknown, so an unknown id costs the same work as a wrong secret. */
const DUMMY_HASH = hashSecret("0".repeat(43));

/**
 * secretMatches compares a presented secret with a stored SHA-256 in constant time
 * (crypto.timingSafeEqual over two 32-byte hashes). `stored` undefined (no such id) still does
 * the comparison, against a dummy, and answers false.
 */
export function secretMatches(secret: string, stored: Uint8Array | undefined): boolean {
  const presented = hashSecret(secret);
  const against = stored !== undefined && stored.length === presented.length ? stored : DUMMY_HASH;
  return crypto.timingSafeEqual(presented, against) && against !== DUMMY_HASH;
}
