/**
 * An https server that only talks to the quick start's `worker`, with mtlskit's service library.
 *
 * Run it from the repository root, after issuing the quick-start PKI:
 *
 *   npx mtlskit apply -f examples/quickstart.yaml --pki ./pki
 *   node --import tsx examples/https/server.ts            # listening on https://api.localhost:8443
 *   node --import tsx examples/https/client.ts            # in another shell: hello spiffe://quickstart.local/client/worker
 *
 * Settings (environment): MTLSKIT_PKI, the PKI directory (default ./pki); PORT (default 8443;
 * 0 picks a free port, printed on the first line).
 *
 * What it shows: the server serves pki/services/api (hot-reloaded: run `mtlskit apply` again
 * after a rotation and new handshakes take the new certificate, no restart), checks its own
 * certificate before listening (identity and the addresses of the quick start's `api`), and
 * admits only the worker's identity: the `db` service, signed by the same CA, is refused.
 * Outside this repository, import from "mtlskit/service" instead of "../../src/service/index.ts".
 */
import * as https from "node:https";
import * as path from "node:path";
import type { TLSSocket } from "node:tls";
import { authorizeId, createMtlsServer, fileSource, peerFromSocket } from "../../src/service/index.ts"; // the package's `mtlskit/service`

const pki = process.env.MTLSKIT_PKI ?? "pki";
const port = Number(process.env.PORT ?? 8443);

const source = fileSource(
  { dir: path.join(pki, "services", "api") },
  { onError: (e) => console.error(`reload refused: ${e.message}`) },
);
const server = createMtlsServer(
  https.createServer,
  source,
  {
    // Deny by default: only the worker (examples/quickstart.yaml, identity spiffe://{cluster}.local/{role}/{name}).
    authorize: authorizeId("spiffe://quickstart.local/client/worker"),
    // Refuse to start, naming the fix, if pki/services/api/cert.pem is not api's certificate for these addresses.
    selfCheck: {
      identity: {
        template: "spiffe://{cluster}.local/{role}/{name}",
        cluster: "quickstart",
        role: "server",
        name: "api",
      },
      advertise: ["127.0.0.1", "localhost", "api.localhost"],
      role: "server",
    },
    onRefused: (e) => console.error(e.message),
  },
  (req, res) => {
    // Only authorized clients reach this handler; the identity comes from the certificate's DER.
    const peer = peerFromSocket(req.socket as TLSSocket);
    res.end(`hello ${peer?.identity?.uri}\n`);
  },
);
server.on("close", () => source.close());
server.listen(port, "127.0.0.1", () => {
  const { port: actual } = server.address() as { port: number };
  console.log(`listening on https://api.localhost:${actual} (port ${actual})`);
});
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.on(signal, () => server.close(() => process.exit(0)).closeAllConnections());
