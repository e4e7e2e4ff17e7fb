/**
 * A real, small authoritative DNS server on 127.0.0.1 (UDP, port 0) for the dns-01 tests: packets
 * are decoded and encoded by dns-packet (the one door to it), the socket is node:dgram. It answers
 * TXT and CNAME records from maps the test fills, NXDOMAIN for any other name, and nothing at all
 * for the names in `silent` (the validator's timeout). A CNAME is answered with its target's TXT
 * records in the same answer, as a resolver that follows the chain does, unless `cnameOnly` holds
 * the name (an authoritative server for another zone: the validator follows it itself).
 */
import { createSocket } from "node:dgram";
import * as packet from "dns-packet";

/** DnsServer is a listening test DNS server. */
export interface DnsServer {
  /** address: `127.0.0.1:PORT`, as `--acme-dns-resolver` takes it. */
  address: string;
  port: number;
  /** txt: name (lower case, no trailing dot) to its TXT records. */
  txt: Map<string, string[]>;
  /** cname: name to its canonical name. */
  cname: Map<string, string>;
  /** cnameOnly: CNAMEs answered without their target's records. */
  cnameOnly: Set<string>;
  /** silent: names never answered. */
  silent: Set<string>;
  /** queries: every name asked, with its type, in order. */
  queries: string[];
  close(): Promise<void>;
}

/** startDnsServer listens on 127.0.0.1, a free UDP port. */
export async function startDnsServer(): Promise<DnsServer> {
  const socket = createSocket("udp4");
  const txt = new Map<string, string[]>();
  const cname = new Map<string, string>();
  const cnameOnly = new Set<string>();
  const silent = new Set<string>();
  const queries: string[] = [];
  socket.on("message", (msg, rinfo) => {
    let q: packet.Packet;
    try {
      q = packet.decode(msg);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    if (!question) return;
    const name = question.name.toLowerCase().replace(/\.$/, "");
    queries.push(`${question.type} ${name}`);
    if (silent.has(name)) return;
    const answers: packet.Answer[] = [];
    let at = name;
    // Follow the chain (bounded) as a recursive resolver would, unless told to stop at the first CNAME.
    for (let hop = 0; hop < 8 && cname.has(at); hop++) {
      const target = cname.get(at)!;
      answers.push({ type: "CNAME", name: at, ttl: 1, class: "IN", data: target });
      at = target;
      if (question.type === "CNAME" || cnameOnly.has(name)) break;
    }
    const stopped = answers.length > 0 && (question.type === "CNAME" || cnameOnly.has(name));
    if (!stopped && question.type === "TXT")
      for (const t of txt.get(at) ?? []) answers.push({ type: "TXT", name: at, ttl: 1, class: "IN", data: t });
    const known = answers.length > 0 || txt.has(at) || cname.has(at);
    const reply = packet.encode({
      type: "response",
      id: q.id,
      flags: packet.AUTHORITATIVE_ANSWER | (known ? 0 : 3) /* rcode 3: NXDOMAIN */,
      questions: [question],
      answers,
    });
    socket.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, "127.0.0.1", () => resolve());
  });
  const port = socket.address().port;
  return {
    address: `127.0.0.1:${port}`,
    port,
    txt,
    cname,
    cnameOnly,
    silent,
    queries,
    close: () => new Promise<void>((r) => socket.close(() => r())),
  };
}
