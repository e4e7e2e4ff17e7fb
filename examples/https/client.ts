/**
 * The quick start's `worker` calling the `api` over mutual TLS, with mtlskit's service library.
 *
 * Run it from the repository root, with examples/https/server.ts running (see its header):
 *
 *   node --import tsx examples/https/client.ts      # prints: hello spiffe://quickstart.local/client/worker
 *
 * Settings (environment): MTLSKIT_PKI, the PKI directory (default ./pki); HOST, the address to
 * dial (default 127.0.0.1; api.localhost works where *.localhost resolves, see quickstart.yaml);
 * PORT (default 8443); AS, the service whose certificate to present (default worker: AS=db shows
 * the server refusing an identity it does not admit).
 *
 * The client presents pki/services/worker's certificate, verifies the server's chain against the
 * quick-start CA, checks the dialed address against its typed SANs (no CN fallback) and admits
 * only the api's identity. Exit code 0 on a 200 response, 1 otherwise.
 * Outside this repository, import from "mtlskit/service" instead of "../../src/service/index.ts".
 */
import * as https from "node:https";
import * as path from "node:path";
import { authorizeId, clientOptions, loadStaticSource } from "../../src/service/index.ts"; // the package's `mtlskit/service`

const pki = process.env.MTLSKIT_PKI ?? "pki";
const dir = path.join(pki, "services", process.env.AS ?? "worker");
const source = loadStaticSource({
  certFile: path.join(dir, "cert.pem"),
  keyFile: path.join(dir, "key.pem"),
  caFile: path.join(dir, "ca.pem"),
});

const request = https.request(
  {
    ...clientOptions(source, { authorize: authorizeId("spiffe://quickstart.local/server/api") }),
    host: process.env.HOST ?? "127.0.0.1",
    port: Number(process.env.PORT ?? 8443),
    path: "/",
    agent: false, // one connection, no session shared with other authorizers
    timeout: 10_000,
  },
  (res) => {
    let body = "";
    res.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
    res.on("end", () => {
      process.stdout.write(body);
      process.exitCode = res.statusCode === 200 ? 0 : 1;
    });
  },
);
request.on("timeout", () => request.destroy(new Error("no answer within 10 s")));
request.on("error", (e) => {
  console.error(`request failed: ${e.message}`);
  process.exitCode = 1;
});
request.end();
