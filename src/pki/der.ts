/**
 * A minimal DER (X.690) encoder and TLV reader for the certificates mtlskit issues.
 *
 * Why not an ASN.1 library here: on the 2-core reference machine, building one TBSCertificate
 * with @peculiar/asn1-x509 took about 0.41 ms and with asn1js about 0.27 ms, against 0.03 ms for
 * these few functions, while the ECDSA signature underneath costs 0.04 ms. Issuing 10,000
 * certificates within 5 s leaves no room for the libraries' schema machinery (see bench/).
 * Certificates are decoded over these same functions by `pki/x509.ts`, hand-written for the same
 * reason and cross-checked against @peculiar/asn1-x509 and openssl in test/x509.test.ts.
 */
import { DecodeError } from "../errors.ts";

/** TAG names the DER tags mtlskit writes. */
export const TAG = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  utf8String: 0x0c,
  printableString: 0x13,
  ia5String: 0x16,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

/** headerLength: the octets of an element's tag and definite length (X.690 8.1.3) for `length` content octets. */
export const headerLength = (length: number): number =>
  length < 0x80 ? 2 : length < 0x100 ? 3 : length < 0x10000 ? 4 : length < 0x1000000 ? 5 : 6;

/**
 * writeHeader writes an element's tag and definite length (short form below 128, else 0x80 |
 * count, then the count big-endian) into `out` at `at`, and returns the offset of its contents.
 */
export function writeHeader(out: Uint8Array, at: number, tag: number, length: number): number {
  const count = headerLength(length) - 2;
  out[at] = tag;
  out[at + 1] = count === 0 ? length : 0x80 | count;
  for (let i = count, v = length; i >= 1; i--, v = Math.floor(v / 256)) out[at + 1 + i] = v & 0xff;
  return at + 2 + count;
}

/**
 * tlv encodes one element: tag, definite length, then the concatenated contents. One allocation
 * per element (not three plus a concatenation): a TBSCertificate is about 35 elements, and this
 * halved encodeTbs (bench/apply.bench.ts, micro section).
 */
export function tlv(tag: number, ...contents: Uint8Array[]): Buffer {
  let length = 0;
  for (const c of contents) length += c.length;
  const out = Buffer.allocUnsafe(headerLength(length) + length);
  let p = writeHeader(out, 0, tag, length);
  for (const c of contents) {
    out.set(c, p);
    p += c.length;
  }
  return out;
}

/** seq encodes a SEQUENCE of already-encoded elements. */
export const seq = (...elements: Uint8Array[]): Buffer => tlv(TAG.sequence, ...elements);

/** oid encodes an OBJECT IDENTIFIER from its dotted form (e.g. "2.5.29.19"). */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split(".").map((a) => BigInt(a));
  if (arcs.length < 2) throw new Error(`der: OID ${dotted} needs at least two arcs`);
  const out: number[] = [];
  const first = arcs[0]! * 40n + arcs[1]!;
  for (const arc of [first, ...arcs.slice(2)]) {
    const chunk: number[] = [Number(arc & 0x7fn)];
    for (let v = arc >> 7n; v > 0n; v >>= 7n) chunk.unshift(Number(v & 0x7fn) | 0x80);
    out.push(...chunk);
  }
  return tlv(TAG.oid, Buffer.from(out));
}

/** uint encodes a non-negative INTEGER from big-endian magnitude bytes, minimally (X.690 8.3.2). */
export function uint(magnitude: Uint8Array): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const trimmed = Buffer.from(magnitude.subarray(i));
  return trimmed[0]! & 0x80 ? tlv(TAG.integer, Buffer.from([0]), trimmed) : tlv(TAG.integer, trimmed);
}

/** bool encodes a BOOLEAN (DER: 0xff for true). */
export const bool = (v: boolean): Buffer => tlv(TAG.boolean, Buffer.from([v ? 0xff : 0]));

/** bitString encodes a BIT STRING with no unused bits. */
export const bitString = (bytes: Uint8Array): Buffer => tlv(TAG.bitString, Buffer.from([0]), bytes);

/** octetString encodes an OCTET STRING. */
export const octetString = (bytes: Uint8Array): Buffer => tlv(TAG.octetString, bytes);

/** explicit wraps an element in a context-specific constructed tag [n]. */
export const explicit = (n: number, ...elements: Uint8Array[]): Buffer => tlv(0xa0 | n, ...elements);

/** implicit encodes a context-specific primitive tag [n] with raw contents (GeneralName choices). */
export const implicit = (n: number, contents: Uint8Array): Buffer => tlv(0x80 | n, contents);

/**
 * time encodes a certificate time: UTCTime through 2049, GeneralizedTime from 2050 on, always
 * in Zulu with seconds and no fraction (RFC 5280 4.1.2.5).
 */
export function time(d: Date): Buffer {
  // Outside 1950-9999 neither form exists, and toISOString grows a sign and six year digits:
  // writing that made a CA no reader accepts (issue 11). The manifest refuses such validities first.
  const year = d.getUTCFullYear();
  if (!(year >= 1950 && year <= 9999))
    throw new RangeError(
      `pki: certificate time ${Number.isNaN(year) ? "Invalid Date" : d.toISOString()} is outside 1950-9999, which UTCTime and GeneralizedTime can carry (RFC 5280 4.1.2.5)`,
    );
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-:T]/g, "");
  return year < 2050
    ? tlv(TAG.utcTime, Buffer.from(digits.slice(2) + "Z", "latin1"))
    : tlv(TAG.generalizedTime, Buffer.from(digits + "Z", "latin1"));
}

/** Tlv is one element read from DER: its tag, and where its contents and the whole element lie. */
export interface Tlv {
  tag: number;
  /** start is the offset of the tag byte. */
  start: number;
  /** contentStart is the offset of the first content byte. */
  contentStart: number;
  /** end is the offset just past the element. */
  end: number;
}

/**
 * readTlv reads the element at `offset`, which must end by `end` (the end of its parent); it
 * throws on truncated or non-DER lengths.
 */
export function readTlv(buf: Uint8Array, offset: number, end = buf.length): Tlv {
  if (offset + 2 > end) throw new DecodeError("der: truncated element");
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DecodeError("der: multi-byte tags are not supported");
  if (tag === 0) throw new DecodeError("der: end-of-contents octets (BER's indefinite form) are not DER");
  // Universal types have one form in DER: SEQUENCE and SET constructed, everything else primitive (X.690 10.2).
  if ((tag & 0xc0) === 0 && ((tag & 0x20) !== 0) !== ((tag & 0x1e) === 0x10))
    throw new DecodeError(`der: universal tag ${tag & 0x1f} in the wrong form`);
  let len = buf[offset + 1]!;
  let p = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DecodeError("der: indefinite or oversized length");
    if (p + n > end) throw new DecodeError("der: truncated length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i]!;
    if (len < 0x80 || buf[p] === 0) throw new DecodeError("der: non-minimal length");
    p += n;
  }
  if (p + len > end) throw new DecodeError("der: truncated contents");
  if ((tag === TAG.boolean && len !== 1) || (tag === TAG.null && len !== 0))
    throw new DecodeError(`der: a ${tag === TAG.null ? "NULL" : "BOOLEAN"} of ${len} octets`);
  return { tag, start: offset, contentStart: p, end: p + len };
}

/** children reads the elements inside a constructed element; none may overrun it. */
export function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let p = parent.contentStart; p < parent.end; ) {
    const t = readTlv(buf, p, parent.end);
    out.push(t);
    p = t.end;
  }
  return out;
}

/** bytesOf returns a view of an element's whole encoding (tag, length and contents). */
export const bytesOf = (buf: Uint8Array, t: Tlv): Buffer =>
  Buffer.from(buf.buffer, buf.byteOffset + t.start, t.end - t.start);

/** contentsOf returns a view of an element's contents. */
export const contentsOf = (buf: Uint8Array, t: Tlv): Buffer =>
  Buffer.from(buf.buffer, buf.byteOffset + t.contentStart, t.end - t.contentStart);
