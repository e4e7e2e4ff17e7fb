/**
 * A grpc-js client of examples/grpc/server.ts, calling as the quick start's `worker`.
 *
 * Run it from the repository root while the server runs (see server.ts):
 *
 *   node --import tsx examples/grpc/client.ts            # echo: hello from spiffe://quickstart.local/client/worker
 *   MTLSKIT_AS=db node --import tsx examples/grpc/client.ts   # refused: PERMISSION_DENIED, naming db's identity
 *
 * Settings (environment): MTLSKIT_PKI (default ./pki); PORT (default 50051); MTLSKIT_AS, the
 * quick-start service to call as (default worker). Exit code 0 on a reply, 1 on an error.
 *
 * What it shows: the channel presents the service's certificate, verifies the server against the
 * quick start's CA, matches the dialed name against the server's typed SANs only (no CN
 * fallback), and admits only the api's identity.
 */
import * as path from "node:path";
import { authorizeId, fileSource } from "../../src/service/index.ts"; // the package's `mtlskit/service`
import { grpcChannelCredentials } from "../../src/service/grpc.ts"; // the package's `mtlskit/grpc`
import { EchoClient, echo } from "./echo.ts";

const pki = process.env.MTLSKIT_PKI ?? "pki";
const port = Number(process.env.PORT ?? 50051);
const as = process.env.MTLSKIT_AS ?? "worker";

const source = fileSource({ dir: path.join(pki, "services", as) });
const credentials = grpcChannelCredentials(source, { authorize: authorizeId("spiffe://quickstart.local/server/api") });
// 127.0.0.1 is one of api's IP SANs; api.localhost (a DNS SAN) works too where it resolves.
const client = new EchoClient(`127.0.0.1:${port}`, credentials);
try {
  console.log(`echo: ${await echo(client, "hello")}`);
} catch (e) {
  const err = e as { code?: number; details?: string; message: string };
  console.error(`refused: code ${err.code}: ${err.details ?? err.message}`);
  process.exitCode = 1;
} finally {
  client.close();
  source.close();
}
