/**
 * bench/serve-client.ts, bench:serve's load generator, against a scripted TLS server on loopback:
 * answers split into pieces (a record each), chunked encoding, a keep-alive connection the server
 * closed, a server the CA did not sign, a malformed answer. The bench's servers answer with
 * Content-Length in one or two records; these are the paths they do not take.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import * as tls from "node:tls";
import { LeanConnection } from "../bench/serve-client.ts";
import { forge } from "./helpers/forge.ts";

const ca = forge({ ca: true });
const leaf = forge({ issuer: ca, cn: "srv", sans: ["IP:127.0.0.1"], eku: ["serverAuth"] });
const otherCa = forge({ ca: true, cn: "Other CA" });

/** Script: what the server does with request n (its body): the answer's pieces, written one by one, and whether it then closes. */
type Script = (body: string, n: number) => { pieces: string[]; close?: boolean };
let script: Script = () => ({ pieces: [] });
/** n: requests the server has read since the script was set (over every connection). */
let n = 0;
const play = (next: Script) => {
  script = next;
  n = 0;
};
let server: tls.Server;
let port = 0;

before(async () => {
  server = tls.createServer({ cert: leaf.pem, key: leaf.key.pem }, (s) => {
    let buf = "";
    s.on("data", async (d: Buffer) => {
      buf += d.toString("latin1");
      const end = buf.indexOf("\r\n\r\n");
      if (end === -1) return;
      const length = Number(/\r\ncontent-length: (\d+)/i.exec(buf)?.[1]);
      if (buf.length < end + 4 + length) return;
      const body = buf.slice(end + 4, end + 4 + length);
      buf = buf.slice(end + 4 + length);
      const { pieces, close } = script(body, n++);
      for (const p of pieces) {
        s.write(p, "latin1");
        await new Promise((resolve) => setImmediate(resolve));
      }
      if (close) s.end();
    });
    s.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

const inPieces = (text: string, size: number) =>
  Array.from({ length: Math.ceil(text.length / size) }, (_, i) => text.slice(i * size, (i + 1) * size));

test("an answer split into small pieces is read whole, by Content-Length, over one keep-alive connection", async () => {
  play((body) => ({
    pieces: inPieces(
      `HTTP/1.1 201 Created\r\ncontent-type: application/json\r\nContent-Length:  ${body.length}\r\n\r\n${body}`,
      7,
    ),
  }));
  const c = new LeanConnection({ port, ca: ca.pem });
  try {
    for (let i = 0; i < 3; i++) {
      const body = JSON.stringify({ i, pad: "x".repeat(500 * i) });
      const a = await c.post("/x", body);
      assert.equal(a.error, undefined);
      assert.equal(a.status, 201);
      assert.equal(a.body.toString(), body);
    }
    assert.equal(c.connects, 1);
    assert.equal(c.chunked, 0);
  } finally {
    c.close();
  }
});

test("a chunked answer (chunks split across pieces) is read whole", async () => {
  play((body) => ({
    pieces: inPieces(
      `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n${body.slice(0, 3)}\r\n${(body.length - 3).toString(16)}\r\n${body.slice(3)}\r\n0\r\n\r\n`,
      5,
    ),
  }));
  const c = new LeanConnection({ port, ca: ca.pem });
  try {
    for (let i = 0; i < 2; i++) {
      const body = JSON.stringify({ i, certificate: "-----BEGIN CERTIFICATE-----" });
      const a = await c.post("/x", body);
      assert.equal(a.status, 200);
      assert.equal(a.body.toString(), body);
    }
    assert.equal(c.chunked, 2);
  } finally {
    c.close();
  }
});

test("a keep-alive connection the server closed is replaced: the next request is answered on a new one", async () => {
  play((body) => ({ pieces: [`HTTP/1.1 201 Created\r\ncontent-length: ${body.length}\r\n\r\n${body}`], close: true }));
  const c = new LeanConnection({ port, ca: ca.pem });
  try {
    for (let i = 0; i < 3; i++) {
      const a = await c.post("/x", `{"i":${i}}`);
      assert.equal(a.error, undefined);
      assert.equal(a.status, 201);
      assert.equal(a.body.toString(), `{"i":${i}}`);
    }
    assert.equal(c.connects, 3);
  } finally {
    c.close();
  }
});

test("a server certificate another CA signed fails the request (status 0, the TLS error)", async () => {
  play(() => ({ pieces: ["HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"] }));
  const c = new LeanConnection({ port, ca: otherCa.pem });
  try {
    const a = await c.post("/x", "{}");
    assert.equal(a.status, 0);
    assert.match(a.error?.message ?? "", /certificate/);
  } finally {
    c.close();
  }
});

test("an answer that is not HTTP, or has no framing, fails the request (status 0) and the next one reconnects", async () => {
  play((_, n) => ({
    pieces: [n === 0 ? "SSH-2.0-nope\r\n\r\n" : "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nhello"],
  }));
  const c = new LeanConnection({ port, ca: ca.pem });
  try {
    const a = await c.post("/x", "{}");
    assert.equal(a.status, 0);
    assert.match(a.error?.message ?? "", /not an HTTP answer/);
    const b = await c.post("/x", "{}");
    assert.equal(b.status, 0);
    assert.match(b.error?.message ?? "", /neither Content-Length nor chunked/);
    assert.equal(c.connects, 2);
  } finally {
    c.close();
  }
});
