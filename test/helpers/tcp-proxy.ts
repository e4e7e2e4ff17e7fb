/**
 * Test helper: a TCP proxy the test controls, for cutting one process off from another (a serve
 * replica from its PostgreSQL ledger, issue 15) while the rest of the loopback stays up.
 *
 * It listens on 127.0.0.1, port 0, and pipes each connection to 127.0.0.1:TARGET. `cut(mode)`:
 *   - "refuse" (default): every open connection is reset (both halves: each side sees its peer
 *     vanish) and new ones are accepted and reset at once, what a host whose process died answers;
 *   - "blackhole": open connections are reset, new ones are accepted and held without a byte in
 *     either direction (the client's connect timeout must end the wait);
 *   - "freeze": a silent partition: open connections stay open but nothing passes any more, and
 *     new ones are held as in "blackhole" (the client's query timeout must end the wait).
 * `restore()` destroys what the cut held or froze and forwards new connections again. `close()`
 * destroys everything and stops listening. Connections are bounded (maxConnections, default 256).
 */
import * as net from "node:net";

/** CutMode: how a cut treats open and new connections. */
export type CutMode = "refuse" | "blackhole" | "freeze";

/** TcpProxy is a running proxy. */
export interface TcpProxy {
  /** port: where it listens on 127.0.0.1. */
  readonly port: number;
  /** cut stops forwarding as `mode` says (default "refuse") until restore(). */
  cut(mode?: CutMode): void;
  /** restore destroys the connections the cut held or froze (their clients reconnect) and forwards new ones again. */
  restore(): void;
  /** mode: the cut in force, or undefined while forwarding. */
  readonly mode: CutMode | undefined;
  /** stats: connections forwarded, refused and held since start, and open now. */
  readonly stats: { forwarded: number; refused: number; held: number; open: number };
  /** close destroys every connection and stops listening. */
  close(): Promise<void>;
}

/** startTcpProxy listens on 127.0.0.1:0 and forwards to 127.0.0.1:`targetPort`. */
export async function startTcpProxy(targetPort: number, opts: { maxConnections?: number } = {}): Promise<TcpProxy> {
  let mode: CutMode | undefined;
  const open = new Set<net.Socket>();
  const pairs = new Set<[net.Socket, net.Socket]>();
  const stats = { forwarded: 0, refused: 0, held: 0 };
  const track = (s: net.Socket) => {
    open.add(s);
    s.once("close", () => open.delete(s));
    s.on("error", () => {}); // a reset peer is what this helper is for
  };
  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    track(client);
    if (mode === "refuse") {
      stats.refused++;
      client.resetAndDestroy();
      return;
    }
    if (mode !== undefined) {
      stats.held++;
      return; // paused: never read, never answered
    }
    stats.forwarded++;
    const upstream = net.connect({ host: "127.0.0.1", port: targetPort });
    track(upstream);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.once("close", drop);
    upstream.once("close", drop);
    upstream.once("connect", () => {
      if (mode !== undefined) return; // cut while connecting: the cut already dealt with both halves
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  });
  server.maxConnections = opts.maxConnections ?? 256;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  const resetAll = () => {
    for (const s of open) s.resetAndDestroy();
  };
  return {
    port,
    cut(m: CutMode = "refuse") {
      mode = m;
      if (m !== "freeze") return resetAll();
      for (const [a, b] of pairs) {
        a.unpipe(b);
        b.unpipe(a);
        a.pause();
        b.pause();
      }
    },
    restore() {
      resetAll(); // what is open now was held or frozen by the cut
      mode = undefined;
    },
    get mode() {
      return mode;
    },
    get stats() {
      return { ...stats, open: open.size };
    },
    async close() {
      mode = "refuse";
      resetAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
