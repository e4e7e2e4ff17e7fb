/**
 * PEM (RFC 7468) encoding and decoding of the blocks mtlskit reads and writes. Decoding also
 * accepts RFC 1421 headers at the start of a block (`Proc-Type: 4,ENCRYPTED` and `DEK-Info:`, as
 * `openssl ec -aes256` and `openssl rsa -traditional -aes256` write an encrypted traditional key),
 * so such a block is reported as encrypted, never as "not valid base64".
 */
import { bytesOf, children, oid, readTlv } from "./der.ts";

/** encodePem wraps DER in a PEM block with 64-character lines. */
export function encodePem(label: string, der: Uint8Array): string {
  return encodePemBytes(label, der).toString("latin1");
}

/** BASE64: the alphabet of RFC 4648 section 4, as character codes. */
const BASE64 = Buffer.from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", "latin1");
const NEWLINE = 0x0a;
const PAD = 0x3d;

/**
 * encodePemBytes is encodePem's text as bytes, followed by `trailer` (a chain's PEM, already
 * bytes), in one buffer: the base64 is written straight into it, 64 characters a line. Apply
 * writes thousands of certificates; a base64 string, its line slices, their concatenation and the
 * buffer written from them were most of a worker thread's young-generation garbage (issue 12).
 */
export function encodePemBytes(label: string, der: Uint8Array, trailer?: Uint8Array): Buffer {
  // Integer arithmetic (|0): Math.ceil's double made the optimised code bail out ("lost precision").
  const chars = (((der.length + 2) / 3) | 0) * 4;
  const lines = ((chars + 63) / 64) | 0;
  // "-----BEGIN " label "-----\n" (17 + label) and "-----END " label "-----\n" (15 + label).
  const size = 32 + 2 * label.length + chars + lines + (trailer?.length ?? 0);
  const out = Buffer.allocUnsafe(size);
  let p = out.write(`-----BEGIN ${label}-----\n`, 0, "latin1");
  let column = 0;
  const whole = der.length - (der.length % 3);
  for (let i = 0; i < der.length; i += 3) {
    const b0 = der[i]!;
    const b1 = i + 1 < der.length ? der[i + 1]! : 0;
    const b2 = i + 2 < der.length ? der[i + 2]! : 0;
    out[p] = BASE64[b0 >> 2]!;
    out[p + 1] = BASE64[((b0 & 0x03) << 4) | (b1 >> 4)]!;
    out[p + 2] = i + 1 < der.length ? BASE64[((b1 & 0x0f) << 2) | (b2 >> 6)]! : PAD;
    out[p + 3] = i < whole ? BASE64[b2 & 0x3f]! : PAD;
    p += 4;
    column += 4;
    if (column === 64) {
      out[p++] = NEWLINE;
      column = 0;
    }
  }
  if (column > 0) out[p++] = NEWLINE;
  p += out.write(`-----END ${label}-----\n`, p, "latin1");
  if (trailer) {
    out.set(trailer, p);
    p += trailer.length;
  }
  if (p !== size) throw new Error(`pem: wrote ${p} of ${size} octets; this is a bug`);
  return out;
}

/** PemBlock is one decoded PEM block. */
export interface PemBlock {
  label: string;
  /** der: the decoded body; for a block encrypted with RFC 1421 headers, the ciphertext. */
  der: Buffer;
  /** headers: the block's RFC 1421 headers by name (`Proc-Type`, `DEK-Info`); empty for most blocks. */
  headers: Record<string, string>;
}

const HEADER = /^([A-Za-z][A-Za-z0-9-]*):[ \t]*(.*)$/;

/**
 * splitHeaders reads the RFC 1421 headers at the start of a block's body lines: `Name: value`
 * lines (a line starting with white space continues the one before) up to a blank line. It
 * returns them and the index of the first line after them (0 when there are none).
 */
export function splitHeaders(lines: readonly string[]): { headers: Record<string, string>; start: number } {
  const headers: Record<string, string> = {};
  let i = 0;
  while (i < lines.length && lines[i]!.trim() === "") i++;
  if (i >= lines.length || !HEADER.test(lines[i]!.trim())) return { headers, start: 0 };
  let last: string | undefined;
  for (; i < lines.length && lines[i]!.trim() !== ""; i++) {
    const line = lines[i]!;
    const m = HEADER.exec(line.trim());
    if (/^[ \t]/.test(line) && last !== undefined) headers[last] += line.trim();
    else if (m) headers[(last = m[1]!)] = m[2]!.trim();
    else break;
  }
  return { headers, start: i };
}

/** legacyEncrypted tells whether RFC 1421 headers mark the body as encrypted (OpenSSL's traditional `-aes256` keys). */
export const legacyEncrypted = (headers: Record<string, string>): boolean =>
  /ENCRYPTED/i.test(headers["Proc-Type"] ?? "");

/**
 * keyEncryption names how a private key block is encrypted: the DEK-Info cipher of a traditional
 * key (`AES-256-CBC`), `PKCS#8` for an ENCRYPTED PRIVATE KEY block, with its PBES2 cipher when
 * it is a known one (`PKCS#8 AES-256-CBC`, as `openssl pkey -aes256` writes); undefined when it is not.
 */
export function keyEncryption(b: PemBlock): string | undefined {
  if (legacyEncrypted(b.headers)) return (b.headers["DEK-Info"] ?? "").split(",")[0]!.trim() || "an unnamed cipher";
  if (b.label !== "ENCRYPTED PRIVATE KEY") return undefined;
  const cipher = pbes2Cipher(b.der);
  return cipher ? `PKCS#8 ${cipher}` : "PKCS#8";
}

const PBES2 = oid("1.2.840.113549.1.5.13");
/** PBES2_CIPHERS: the encryption schemes OpenSSL writes in PBES2 (RFC 8018 B.2, NIST AES OIDs), by encoded OID. */
const PBES2_CIPHERS: readonly [Buffer, string][] = (
  [
    ["2.16.840.1.101.3.4.1.2", "AES-128-CBC"],
    ["2.16.840.1.101.3.4.1.22", "AES-192-CBC"],
    ["2.16.840.1.101.3.4.1.42", "AES-256-CBC"],
    ["1.2.840.113549.3.7", "DES-EDE3-CBC"],
  ] as const
).map(([dotted, name]) => [oid(dotted), name]);

/**
 * pbes2Cipher reads EncryptedPrivateKeyInfo { AlgorithmIdentifier { PBES2, { keyDerivationFunc,
 * encryptionScheme } }, data } (RFC 5958, RFC 8018) and names the encryption scheme; undefined
 * for another scheme, an unknown cipher, or DER that does not decode.
 */
function pbes2Cipher(der: Buffer): string | undefined {
  try {
    const [alg] = children(der, readTlv(der, 0));
    const [algOid, params] = children(der, alg!);
    if (!bytesOf(der, algOid!).equals(PBES2)) return undefined;
    const [scheme] = children(der, children(der, params!)[1]!);
    return PBES2_CIPHERS.find(([o]) => o.equals(bytesOf(der, scheme!)))?.[1];
  } catch {
    return undefined;
  }
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;

/**
 * parsePem returns every PEM block in `text`, in order, with its RFC 1421 headers apart. Text
 * between blocks is ignored (it is where tools put comments); a block whose body is not base64 throws.
 */
export function parsePem(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(BLOCK)) {
    const lines = m[2]!.split(/\r?\n/);
    const { headers, start } = splitHeaders(lines);
    const body = lines.slice(start).join("").replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) {
      throw new Error(`pem: the ${m[1]} block is not valid base64`);
    }
    out.push({ label: m[1]!, der: Buffer.from(body, "base64"), headers });
  }
  return out;
}

/** parseCertificatesPem returns the DER of every CERTIFICATE block, refusing other blocks. */
export function parseCertificatesPem(text: string): Buffer[] {
  const blocks = parsePem(text);
  const other = blocks.find((b) => b.label !== "CERTIFICATE");
  if (other) throw new Error(`pem: expected only CERTIFICATE blocks, found ${other.label}`);
  return blocks.map((b) => b.der);
}
