/**
 * A grpc-js echo server that only talks to the quick start's `worker`, with mtlskit's service library.
 *
 * Run it from the repository root, after issuing the quick-start PKI:
 *
 *   npx mtlskit apply -f examples/quickstart.yaml --pki ./pki
 *   node --import tsx examples/grpc/server.ts            # listening on api.localhost:50051
 *   node --import tsx examples/grpc/client.ts            # in another shell: echo: hello from spiffe://quickstart.local/client/worker
 *
 * Settings (environment): MTLSKIT_PKI, the PKI directory (default ./pki); PORT (default 50051;
 * 0 picks a free port, printed on the first line).
 *
 * What it shows: the server's credentials come from pki/services/api (hot-reloaded: run
 * `mtlskit apply` again after a rotation and new handshakes take the new certificate, no
 * restart); client certificates are required and verified; every call is authorized before the
 * handler runs, and only the worker's identity is admitted: the `db` service, signed by the same
 * CA, gets PERMISSION_DENIED with a message naming its identity (try
 * `MTLSKIT_AS=db node --import tsx examples/grpc/client.ts`). The handler reads the caller's
 * identity with peerFromDer. Outside this repository, import from "mtlskit/service" and
 * "mtlskit/grpc" instead of "../../src/service/index.ts" and "../../src/service/grpc.ts".
 */
import * as grpc from "@grpc/grpc-js";
import * as path from "node:path";
import { authorizeId, fileSource, peerFromDer } from "../../src/service/index.ts"; // the package's `mtlskit/service`
import { grpcServerCredentials } from "../../src/service/grpc.ts"; // the package's `mtlskit/grpc`
import { echoService } from "./echo.ts";

const pki = process.env.MTLSKIT_PKI ?? "pki";
const port = Number(process.env.PORT ?? 50051);

const source = fileSource(
  { dir: path.join(pki, "services", "api") },
  { onError: (e) => console.error(`reload refused: ${e.message}`) },
);
// Deny by default: only the worker (examples/quickstart.yaml, identity spiffe://{cluster}.local/{role}/{name}).
const credentials = grpcServerCredentials(source, {
  authorize: authorizeId("spiffe://quickstart.local/client/worker"),
  onRefused: (e) => console.error(e.message),
});

const server = new grpc.Server();
server.addService(echoService, {
  echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
    const cert = call.getAuthContext()?.sslPeerCertificate;
    const who = cert ? (peerFromDer(cert.raw).identity?.uri ?? "(no identity)") : "(unknown)";
    callback(null, Buffer.from(`${call.request.toString()} from ${who}`));
  },
});
server.bindAsync(`127.0.0.1:${port}`, credentials, (err, bound) => {
  if (err) {
    console.error(err.message);
    process.exit(1);
  }
  console.log(`listening on api.localhost:${bound}`);
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => server.tryShutdown(() => source.close()));
}
