/**
 * Framing: an input (PEM with any labels and junk around the blocks, or raw DER) cut into its
 * blocks and DER objects, each either complete DER bytes or a precise problem with its line or
 * byte offset. Nothing here decodes what the DER means (see classify.ts).
 *
 * The reader is lenient where tools are (text around blocks, CRLF, indentation, RFC 1421 headers
 * of legacy encrypted keys) and exact about damage: a missing END line, a bad base64 character,
 * a length that is not a multiple of four, a DER object cut short or followed by stray bytes.
 */
import { legacyEncrypted, splitHeaders } from "../pki/pem.ts";

/** Frame is where a block or object was found. */
export interface Frame {
  line: number | undefined;
  offset: number | undefined;
  label: string | undefined;
}

/** Block is one framed block or object: its DER, and the PEM headers of legacy encrypted keys. */
export type Block = Frame & { der: Buffer; headers: Record<string, string> };

/** Raw is one framed block, or why it could not be framed. */
export type Raw = Block | (Frame & { problem: string });

/** MARKER finds BEGIN and END lines; the label is checked separately so that junk cannot make the scan slow. */
const MARKER = /-----(BEGIN|END) ([^\r\n]{0,80}?)-----/g;

/** describeStart names the first bytes of an input that is neither PEM nor DER. */
function describeStart(bytes: Buffer): string {
  const head = bytes.subarray(0, 16);
  const printable = head.every((b) => (b >= 0x20 && b < 0x7f) || b === 0x09 || b === 0x0a || b === 0x0d);
  if (printable) return JSON.stringify(head.toString("latin1") + (bytes.length > 16 ? "..." : ""));
  return `bytes ${[...head.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join(" ")}`;
}

/** looksBinary: DER starts with 0x30 (a SEQUENCE), and a text file that starts with "0" has no control bytes. */
function looksBinary(bytes: Buffer): boolean {
  return bytes.subarray(0, 32).some((b) => (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) || b >= 0x7f);
}

/** DerHeader is the tag and declared length of a DER element. */
interface DerHeader {
  headerLength: number;
  length: number;
}

/** derHeader reads the header at `at`, or says why it cannot (BER indefinite length, cut-off header). */
function derHeader(b: Buffer, at: number): DerHeader | string {
  if (at + 2 > b.length) return "the data ends inside its header";
  const first = b[at + 1]!;
  if (first < 0x80) return { headerLength: 2, length: first };
  const n = first & 0x7f;
  if (n === 0) return "its length is indefinite (BER, not DER)";
  if (n > 4) return `its length field is ${n} octets long, too long for a certificate or key`;
  if (at + 2 + n > b.length) return "the data ends inside its length field";
  let length = 0;
  for (let i = 0; i < n; i++) length = length * 256 + b[at + 2 + i]!;
  return { headerLength: 2 + n, length };
}

/**
 * frameDer checks that `der` holds exactly one complete DER object, or (with `leading`) starts
 * with one, and returns it, or the problem. `what` names the block for messages. Whether the
 * object is a SEQUENCE is for the decoder to say: EC PARAMETERS, for one, hold a bare OID.
 */
function frameDer(der: Buffer, what: string, leading: boolean): Buffer | string {
  if (der.length === 0) return `${what} is empty`;
  const h = derHeader(der, 0);
  if (typeof h === "string") return `${what} is not valid DER: ${h}`;
  const size = h.headerLength + h.length;
  if (size > der.length) return `${what} is truncated: the DER says ${size} bytes, ${der.length} present`;
  if (size < der.length && !leading)
    return `${what} has ${der.length - size} stray bytes after its DER object (the DER says ${size} bytes, ${der.length} present)`;
  return der.subarray(0, size);
}

/** scanDer cuts raw DER input into its objects (several certificates may be concatenated). */
function scanDer(bytes: Buffer): Raw[] {
  const out: Raw[] = [];
  for (let at = 0; at < bytes.length; ) {
    const frame: Frame = { line: undefined, offset: at, label: undefined };
    if (bytes[at] !== 0x30) {
      out.push({
        ...frame,
        problem: `byte ${at}: ${bytes.length - at} bytes after the DER object${out.length > 1 ? "s" : ""} are not DER (they start with ${describeStart(bytes.subarray(at))})`,
      });
      break;
    }
    const h = derHeader(bytes, at);
    if (typeof h === "string") {
      out.push({ ...frame, problem: `byte ${at}: not valid DER: ${h}` });
      break;
    }
    const size = h.headerLength + h.length;
    if (at + size > bytes.length) {
      out.push({
        ...frame,
        problem: `byte ${at}: truncated: the DER says ${size} bytes, ${bytes.length - at} present`,
      });
      break;
    }
    out.push({ ...frame, der: bytes.subarray(at, at + size), headers: {} });
    at += size;
  }
  return out;
}

/** LineCounter turns string offsets into 1-based line numbers, scanning forward only. */
class LineCounter {
  private at = 0;
  private line = 1;
  constructor(private readonly text: string) {}
  lineOf(offset: number): number {
    for (let i = this.text.indexOf("\n", this.at); i !== -1 && i < offset; i = this.text.indexOf("\n", i + 1))
      this.line++;
    this.at = Math.max(this.at, offset);
    return this.line;
  }
}

const BASE64_LINE = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * decodeBody decodes a block's base64 body (the text between BEGIN and END; its first segment is
 * the rest of the BEGIN line). RFC 1421 headers (`Proc-Type:`, `DEK-Info:`) are returned apart.
 */
function decodeBody(
  body: string,
  firstLine: number,
  endLine: number,
  label: string,
): { der: Buffer; headers: Record<string, string> } | string {
  const segments = body.split("\n");
  const { headers, start } = splitHeaders(segments);
  let i = start;
  const what = `the ${label} block`;
  let b64 = "";
  let padded = -1;
  for (; i < segments.length; i++) {
    const s = segments[i]!.trim();
    if (s === "") continue;
    const line = firstLine + i;
    if (padded >= 0)
      return `line ${line}: ${what} is not valid base64: the data goes on after the "=" padding on line ${padded}`;
    if (!BASE64_LINE.test(s)) {
      const col = s.split("").findIndex((c, k) => !/[A-Za-z0-9+/=]/.test(c) || (c === "=" && /[^=]/.test(s.slice(k))));
      if (col < 0) return `line ${line}: ${what} is not valid base64: more than two "=" padding characters`;
      const c = s[col]!;
      const column = segments[i]!.indexOf(s) + col + 1;
      return c === "="
        ? `line ${line}: ${what} is not valid base64: "=" padding in the middle of the line (column ${column})`
        : `line ${line}: ${what} is not valid base64: unexpected ${JSON.stringify(c)} at column ${column}`;
    }
    if (s.endsWith("=")) padded = line;
    b64 += s;
  }
  if (b64 === "") return `line ${firstLine}: ${what} is empty`;
  if (b64.length % 4 !== 0)
    return `line ${endLine}: ${what} is not valid base64: ${b64.length} characters is not a multiple of 4 (a line was cut or lost)`;
  return { der: Buffer.from(b64, "base64"), headers };
}

/** scanPem cuts text into its PEM blocks; text outside blocks is ignored. */
function scanPem(text: string): Raw[] {
  const out: Raw[] = [];
  const lines = new LineCounter(text);
  let open: { label: string; line: number; bodyStart: number } | undefined;
  const unterminated = (o: NonNullable<typeof open>, why: string): Raw => ({
    line: o.line,
    offset: undefined,
    label: o.label,
    problem: `line ${o.line}: the ${o.label} block has no END line (-----END ${o.label}-----)${why}`,
  });
  for (const m of text.matchAll(MARKER)) {
    const [whole, kind, rawLabel] = m as unknown as [string, "BEGIN" | "END", string];
    const label = rawLabel.trim();
    const line = lines.lineOf(m.index);
    if (kind === "BEGIN") {
      if (open) out.push(unterminated(open, ` before the next BEGIN on line ${line}: the block was cut`));
      open = { label, line, bodyStart: m.index + whole.length };
      continue;
    }
    if (!open) {
      out.push({
        line,
        offset: undefined,
        label,
        problem: `line ${line}: -----END ${label}----- has no BEGIN line before it`,
      });
      continue;
    }
    const frame: Frame = { line: open.line, offset: undefined, label: open.label };
    if (label !== open.label)
      out.push({
        ...frame,
        problem: `line ${line}: the ${open.label} block begun on line ${open.line} ends with -----END ${label}-----`,
      });
    else {
      const body = decodeBody(text.slice(open.bodyStart, m.index), open.line, line, open.label);
      if (typeof body === "string") out.push({ ...frame, problem: body });
      else {
        // OpenSSL's TRUSTED CERTIFICATE is a certificate followed by its trust settings.
        const der = legacyEncrypted(body.headers)
          ? body.der
          : frameDer(body.der, `the ${open.label} block`, open.label === "TRUSTED CERTIFICATE");
        if (typeof der === "string") out.push({ ...frame, problem: `line ${open.line}: ${der}` });
        else out.push({ ...frame, der, headers: body.headers });
      }
    }
    open = undefined;
  }
  if (open) out.push(unterminated(open, ": the file is truncated"));
  return out;
}

/** scanInput frames an input: raw DER when it starts with a SEQUENCE byte and is binary, else PEM text. */
export function scanInput(input: Buffer | string): Raw[] {
  const bytes = typeof input === "string" ? Buffer.from(input, "utf8") : input;
  const none: Frame = { line: undefined, offset: undefined, label: undefined };
  if (bytes.length === 0) return [{ ...none, problem: "the file is empty" }];
  if (bytes[0] === 0x30 && looksBinary(bytes)) return scanDer(bytes);
  // latin1 keeps one character per byte: offsets stay byte offsets, and no byte sequence is invalid.
  const text = typeof input === "string" ? input : bytes.toString("latin1");
  if (text.trim() === "") return [{ ...none, problem: `the file is empty (${bytes.length} bytes of whitespace)` }];
  const raws = scanPem(text);
  if (raws.length > 0) return raws;
  return [
    {
      ...none,
      problem: `not PEM or DER (starts with ${describeStart(bytes)}); expected -----BEGIN ...----- blocks or binary DER`,
    },
  ];
}
