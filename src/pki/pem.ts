/** PEM (RFC 7468) encoding and decoding of the blocks mtlskit reads and writes. */

/** encodePem wraps DER in a PEM block with 64-character lines. */
export function encodePem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  let body = "";
  for (let i = 0; i < b64.length; i += 64) body += b64.slice(i, i + 64) + "\n";
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

/** PemBlock is one decoded PEM block. */
export interface PemBlock {
  label: string;
  der: Buffer;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;

/**
 * parsePem returns every PEM block in `text`, in order. Text between blocks is ignored (it is
 * where tools put comments); a block whose body is not base64 throws.
 */
export function parsePem(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(BLOCK)) {
    const body = m[2]!.replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) {
      throw new Error(`pem: the ${m[1]} block is not valid base64`);
    }
    out.push({ label: m[1]!, der: Buffer.from(body, "base64") });
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
