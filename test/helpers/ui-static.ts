/**
 * A stand-in for `mtlskit ui`'s HTTP side, for the front end alone: the built page (index.html at
 * `/`, files under `/assets/`), a Snapshot at `/api/snapshot`, and `/api/events` (server-sent
 * events: `event: snapshot` with the version, on connect and on each change), with the dashboard's
 * Content-Security-Policy. 127.0.0.1, port 0. Used by `npm run bench:ui` (the page's own cost at
 * 10,000 services, a synthetic snapshot).
 */
import { readFileSync } from "node:fs";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import type { Snapshot } from "../../src/ui/snapshot.ts";

export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
};

export interface StaticUi {
  url: string;
  /** publish replaces the snapshot (its version bumped) and announces it to every open event stream. */
  publish(next: Snapshot): void;
  stop(): Promise<void>;
}

export async function startStaticUi(assetsDir: string, first: Snapshot): Promise<StaticUi> {
  let snap = first;
  let body = JSON.stringify(snap);
  const streams = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    res.setHeader("content-security-policy", CSP);
    res.setHeader("x-content-type-options", "nosniff");
    res.setHeader("cache-control", "no-cache");
    if (url.pathname === "/api/snapshot") {
      res.writeHead(200, { "content-type": "application/json" }).end(body);
    } else if (url.pathname === "/api/events") {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(`event: snapshot\ndata: {"version":${snap.version}}\n\n`);
      streams.add(res);
      req.on("close", () => streams.delete(res));
    } else {
      const name = url.pathname === "/" ? "index.html" : url.pathname.replace(/^\/assets\//, "");
      const type = TYPES[path.extname(name)];
      if (!type || name.includes("/") || (url.pathname !== "/" && !url.pathname.startsWith("/assets/")))
        return void res.writeHead(404).end();
      try {
        res.writeHead(200, { "content-type": type }).end(readFileSync(path.join(assetsDir, name)));
      } catch {
        res.writeHead(404).end();
      }
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    publish(next) {
      snap = { ...next, version: snap.version + 1 };
      body = JSON.stringify(snap);
      for (const s of streams) s.write(`event: snapshot\ndata: {"version":${snap.version}}\n\n`);
    },
    async stop() {
      for (const s of streams) s.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
