/**
 * bench:serve's load generator: one TLS 1.3 connection per loop (node:tls, verified against the CA
 * as https.Agent verifies: the chain to `ca`, the server's name 127.0.0.1 among its IP SANs),
 * requests written as pre-built HTTP/1.1 bytes (keep-alive, Content-Length), answers read by a
 * minimal parser: the status line, Content-Length or chunked framing, the body's bytes. No
 * node:http, no agent, no header objects, no JSON parse: test/helpers/serve-load.ts's requestJson
 * (node:https) cost the bench ~0.30 ms of CPU per certificate on the 2 cores the server under test
 * has; this costs a half to a third of it (`--client-ab` measures both on the same targets in one
 * run). One request in flight per connection, as the bench's loops wait for each answer; a request
 * that meets a keep-alive connection the server closed while idle is sent again once on a new one.
 */
import * as tls from "node:tls";

/** Answer is one exchange: status (0: the connection failed or the answer was malformed), the body's bytes, the error, the latency in ms. */
export interface Answer {
  status: number;
  body: Buffer;
  error: Error | undefined;
  ms: number;
}

const EMPTY = Buffer.alloc(0);
const CRLF = 0x0d0a;
const HEADER_END = Buffer.from("\r\n\r\n");
/** MAX_HEADER: an answer whose header is longer is refused (no server under test sends one). */
const MAX_HEADER = 16_384;

/** LeanConnection is one loop's keep-alive connection; it reconnects when the server closed it. */
export class LeanConnection {
  private socket: tls.TLSSocket | undefined;
  private buf: Buffer = EMPTY;
  /** body: -1 while the header is read; then the body's length (Content-Length) or -2 (chunked). */
  private bodyLength = -1;
  private bodyAt = 0;
  private status = 0;
  private chunks: Buffer[] = [];
  private t0 = 0;
  private resolve: ((a: Answer) => void) | undefined;
  private readonly head: string;
  /** request: the request awaiting its answer, resent once on a new connection when a reused one was closed before any byte of the answer came. */
  private request = "";
  private received = false;
  /** served: answers this connection has given; a keep-alive connection the server closed while idle is found only when used. */
  private served = 0;
  /** connects: how many connections this one has made (1 while keep-alive holds). */
  connects = 0;
  /** chunked: how many answers came with chunked encoding (the others with Content-Length). */
  chunked = 0;

  constructor(
    private readonly o: {
      port: number;
      ca: string | Buffer;
      cert?: string;
      key?: string;
      timeoutMs?: number;
    },
  ) {
    this.head = `Host: 127.0.0.1:${o.port}\r\nContent-Type: application/json\r\nContent-Length: `;
  }

  /** post sends `body` (JSON text, ASCII) to `route`; never rejects: a failed connection is status 0 with its error. */
  post(route: string, body: string): Promise<Answer> {
    return this.send(`POST ${route} HTTP/1.1\r\n${this.head}${body.length}\r\n\r\n${body}`);
  }

  /** send writes `request` (a whole HTTP/1.1 request, latin1) and resolves with its answer. */
  send(request: string): Promise<Answer> {
    if (this.resolve !== undefined) throw new Error("LeanConnection: one request at a time");
    const socket = this.socket ?? this.connect();
    this.t0 = performance.now();
    this.request = request;
    this.received = false;
    return new Promise<Answer>((resolve) => {
      this.resolve = resolve;
      socket.write(request, "latin1");
    });
  }

  /** close ends the connection (an answer awaited fails). */
  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  private connect(): tls.TLSSocket {
    this.connects++;
    const s = tls.connect({
      host: "127.0.0.1",
      port: this.o.port,
      ca: this.o.ca,
      minVersion: "TLSv1.3",
      ...(this.o.cert === undefined ? {} : { cert: this.o.cert, key: this.o.key }),
    });
    s.setNoDelay(true);
    s.setTimeout(this.o.timeoutMs ?? 10_000);
    // Each handler acts only while `s` is the connection: a closed one's late events are ignored.
    s.on("data", (d: Buffer) => s === this.socket && this.onData(d));
    // Idle between a target's slices: no answer awaited, nothing to time out.
    s.on("timeout", () => {
      if (s === this.socket && this.resolve !== undefined)
        this.fail(new Error(`no answer within ${this.o.timeoutMs ?? 10_000} ms`), false);
    });
    s.on("error", (e) => s === this.socket && this.fail(e));
    s.on("close", () => s === this.socket && this.fail(new Error("the server closed the connection")));
    this.socket = s;
    this.served = 0;
    this.buf = EMPTY;
    this.bodyLength = -1;
    return s;
  }

  private fail(e: Error, retry = true): void {
    const s = this.socket;
    this.socket = undefined;
    s?.destroy();
    // The server closed an idle keep-alive connection as the request went out: send it again, once, on a new one.
    if (retry && this.resolve !== undefined && !this.received && this.served > 0) {
      this.served = 0;
      this.connect().write(this.request, "latin1");
      return;
    }
    this.finish(0, EMPTY, e);
  }

  private finish(status: number, body: Buffer, error: Error | undefined): void {
    if (error === undefined) this.served++;
    const r = this.resolve;
    this.resolve = undefined;
    this.bodyLength = -1;
    this.chunks = [];
    r?.({ status, body, error, ms: performance.now() - this.t0 });
  }

  private onData(d: Buffer): void {
    this.received = true;
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    // Several answers may come in one chunk only if several were asked; one is in flight, but
    // loop anyway so that a stray byte after an answer is kept for the next parse, never lost.
    while (this.buf.length > 0) {
      if (this.bodyLength === -1 && !this.readHeader()) return;
      const done = this.bodyLength === -2 ? this.readChunked() : this.readBody();
      if (!done) return;
    }
  }

  /** readHeader parses the status line and the framing headers once the header is whole; false: wait for more. */
  private readHeader(): boolean {
    const end = this.buf.indexOf(HEADER_END);
    if (end === -1) {
      if (this.buf.length > MAX_HEADER) this.fail(new Error(`an answer's header is over ${MAX_HEADER} bytes`));
      return false;
    }
    const b = this.buf;
    // "HTTP/1.1 201 ..." : the status is the three digits at 9..11.
    const status = (b[9]! - 48) * 100 + (b[10]! - 48) * 10 + (b[11]! - 48);
    if (b.toString("latin1", 0, 5) !== "HTTP/" || !(status >= 100 && status <= 599)) {
      this.fail(new Error(`not an HTTP answer: ${JSON.stringify(b.toString("latin1", 0, 40))}`));
      return false;
    }
    const header = b.toString("latin1", 0, end).toLowerCase();
    const cl = header.indexOf("\r\ncontent-length:");
    let length = -1;
    if (cl !== -1) {
      length = 0;
      let p = cl + 17;
      while (header.charCodeAt(p) === 32) p++;
      for (let c = header.charCodeAt(p); c >= 48 && c <= 57; c = header.charCodeAt(++p)) length = length * 10 + c - 48;
    } else if (/\r\ntransfer-encoding:[ \t]*chunked/.test(header)) {
      length = -2;
      this.chunked++;
    } else {
      this.fail(new Error("an answer with neither Content-Length nor chunked encoding"));
      return false;
    }
    this.status = status;
    this.bodyLength = length;
    this.bodyAt = end + 4;
    return true;
  }

  /** readBody completes a Content-Length answer; false: wait for more. */
  private readBody(): boolean {
    const end = this.bodyAt + this.bodyLength;
    if (this.buf.length < end) return false;
    const body = this.buf.subarray(this.bodyAt, end);
    this.buf = end === this.buf.length ? EMPTY : this.buf.subarray(end);
    this.finish(this.status, body, undefined);
    return true;
  }

  /** readChunked reads the chunks present (size line, data, CRLF) until the last (size 0, no trailers); false: wait for more. */
  private readChunked(): boolean {
    let p = this.bodyAt;
    const b = this.buf;
    for (;;) {
      const eol = b.indexOf("\r\n", p, "latin1");
      if (eol === -1) break;
      const size = Number.parseInt(b.toString("latin1", p, eol), 16);
      if (Number.isNaN(size)) {
        this.fail(new Error("a malformed chunk size"));
        return false;
      }
      if (size === 0) {
        if (b.length < eol + 4) break; // the final CRLF (no trailers)
        this.buf = eol + 4 === b.length ? EMPTY : b.subarray(eol + 4);
        this.finish(this.status, Buffer.concat(this.chunks), undefined);
        return true;
      }
      if (b.length < eol + 2 + size + 2) break;
      if (b.readUInt16BE(eol + 2 + size) !== CRLF) {
        this.fail(new Error("a chunk not followed by CRLF"));
        return false;
      }
      this.chunks.push(b.subarray(eol + 2, eol + 2 + size));
      p = eol + 2 + size + 2;
    }
    // Keep what is not consumed: the partial chunk from p on.
    this.buf = b.subarray(p);
    this.bodyAt = 0;
    return false;
  }
}
