/**
 * Peer: what an authorizer sees of the other end of a verified connection, read from the DER of
 * its certificate with pki/x509.ts. The identity is exactly one URI SAN, taken from the
 * certificate's structure: never from Node's `subjectaltname` string, which a URI containing
 * `, URI:` or quotes can split into two names (Node CVE-2021-44532).
 */
import { createHash } from "node:crypto";
import type * as tls from "node:tls";
import { parseIdentity, type Identity } from "../identity/index.ts";
import { readCertFields } from "../pki/cert.ts";
import { decodeFields, type CertInfo } from "../pki/x509.ts";

/** NoIdentity says why a peer has no identity: no URI SAN, several, or one that breaks the identity rules. */
export interface NoIdentity {
  reason: "none" | "several" | "unparseable";
  /** message words it: `no URI SAN`, `2 URI SANs (a, b)`, `URI SAN "x" must look like ...`. */
  message: string;
}

/** Peer is a verified peer certificate in the terms authorizers use; frozen, and shared by connections presenting the same certificate. */
export interface Peer {
  /** der is the leaf certificate exactly as the peer sent it. */
  der: Buffer;
  /** info is the decoded leaf: typed SANs, usages, dates, key. */
  info: CertInfo;
  /** identity is the one URI SAN, parsed; undefined when `noIdentity` says why. */
  identity: Identity | undefined;
  /** noIdentity is set exactly when `identity` is undefined. */
  noIdentity: NoIdentity | undefined;
  /** subject is the RFC 4514 subject DN, e.g. `CN=agent.serviceradar, O=ServiceRadar`. */
  subject: string;
  /** certSha256 is the SHA-256 of the certificate's DER, lowercase hex. */
  certSha256: string;
  /** spkiSha256 is the SHA-256 of its SubjectPublicKeyInfo DER, lowercase hex (what `pinSpki` compares). */
  spkiSha256: string;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** identityOf reads the identity from typed SANs: exactly one URI SAN that parseIdentity accepts. */
function identityOf(
  info: CertInfo,
): { identity: Identity; noIdentity: undefined } | { identity: undefined; noIdentity: NoIdentity } {
  const uris = info.sans.filter((s) => s.type === "uri").map((s) => s.value);
  if (uris.length === 0) return { identity: undefined, noIdentity: { reason: "none", message: "no URI SAN" } };
  if (uris.length > 1)
    return {
      identity: undefined,
      noIdentity: {
        reason: "several",
        message: `${uris.length} URI SANs (${uris.map((u) => JSON.stringify(u)).join(", ")})`,
      },
    };
  const parsed = parseIdentity(uris[0]!);
  if ("error" in parsed)
    return {
      identity: undefined,
      noIdentity: { reason: "unparseable", message: `URI SAN ${JSON.stringify(uris[0])}, which ${parsed.error}` },
    };
  return { identity: parsed, noIdentity: undefined };
}

/**
 * peerFromDer decodes a leaf certificate into a Peer; it throws `peer: ...` when the DER is not a
 * certificate this decoder reads.
 *
 * @example
 * const peer = peerFromDer(readFileSync("client.der"));
 * console.log(peer.identity?.uri ?? peer.noIdentity?.message);
 */
export function peerFromDer(der: Uint8Array): Peer {
  const buf = Buffer.isBuffer(der) ? der : Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const key = buf.toString("latin1");
  const hit = decoded.get(key);
  if (hit) return hit;
  const peer = Object.freeze(decodePeer(buf));
  if (decoded.size >= DECODED_MAX) decoded.delete(decoded.keys().next().value!);
  decoded.set(key, peer);
  return peer;
}

/**
 * decoded caches peers by their DER: a service sees the same few certificates on every
 * handshake, and decoding one (about 40 µs) was a measurable part of a full handshake
 * (bench/handshake.bench.ts). The DER is the whole input, so a hit is exact; peers are frozen and
 * shared between connections presenting the same certificate. Oldest first out, 256 at most.
 */
const decoded = new Map<string, Peer>();
const DECODED_MAX = 256;

/** decodePeer decodes without the cache. */
function decodePeer(buf: Buffer): Peer {
  let info: CertInfo;
  let spki: Buffer;
  try {
    const fields = readCertFields(buf);
    spki = fields.spki;
    info = decodeFields(fields);
  } catch (e) {
    throw new Error(`peer: the certificate cannot be decoded: ${(e as Error).message.replace(/^der: /, "")}`, {
      cause: e,
    });
  }
  return {
    der: buf,
    info,
    ...identityOf(info),
    subject: info.subject,
    certSha256: sha256(buf),
    spkiSha256: sha256(spki),
  };
}

/**
 * peerFromSocket reads the peer of a TLS socket from its raw DER (`getPeerCertificate().raw`, the
 * bytes only: its `subjectaltname` string is never read), or returns undefined when the peer sent
 * no certificate. It does not judge the chain: call it on sockets whose handshake verified the
 * peer (`socket.authorized`). getPeerX509Certificate() would give the same bytes at about twice
 * the cost (~200 µs against ~90 µs per new socket on Node 20, bench/handshake.bench.ts).
 *
 * @example
 * server.on("secureConnection", (socket) => console.log(peerFromSocket(socket)?.identity?.uri));
 */
export function peerFromSocket(socket: tls.TLSSocket): Peer | undefined {
  const raw = socket.getPeerCertificate()?.raw as Buffer | undefined;
  return raw === undefined || raw.length === 0 ? undefined : peerFromDer(raw);
}

/** describePeer names a peer in messages: its identity, else its subject and why it has no identity. */
export function describePeer(peer: Peer): string {
  if (peer.identity) return peer.identity.uri;
  return `${JSON.stringify(peer.subject)} (no identity: ${peer.noIdentity!.message})`;
}
