/**
 * bench:serve's `floor` target: a bare node:https server doing only what every online CA must do
 * per certificate on Node, and nothing else: parse the JSON body, decode the CSR's PEM, import its
 * public key (a JWK, the cheapest import, as src/pki/csr.ts's publicKeyOf does), verify the CSR's
 * signature, sign a TBSCertificate built from a fixed template (src/pki/issue.ts's encodeTbs, a
 * fresh serial, the CSR's key), answer JSON {"certificate": PEM} (201). No policy, no ledger, no
 * framework, no logging: the ceiling any Node implementation of the online CA reaches on this
 * machine. POST any path {"csr": PEM}.
 *
 *   node --import tsx bench/serve-floor.ts --port P --pki DIR [--processes N] [--crypto sync|async]
 *
 * DIR/ca/ca.pem and ca-key.pem sign (the CA cfssl and serve use); DIR/services/cfssl/cert.pem and
 * key.pem are its TLS certificate. --processes 2: node:cluster, two workers on one port (the
 * primary only forks). --crypto async: the verification and the signature in libuv's thread pool
 * (crypto's callback forms); sync: on the event loop. Prints "floor listening" once every process
 * listens; exits on SIGTERM.
 */
import cluster from "node:cluster";
import { createPrivateKey, createPublicKey, type KeyObject, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import type * as http from "node:http";
import * as https from "node:https";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { readCertFields } from "../src/pki/cert.ts";
import { children, contentsOf, readTlv, TAG } from "../src/pki/der.ts";
import { encodeTbs, keyIdOf, newSerial, signTbs, signTbsAsync } from "../src/pki/issue.ts";
import { encodePem, parseCertificatesPem } from "../src/pki/pem.ts";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    pki: { type: "string" },
    processes: { type: "string", default: "1" },
    crypto: { type: "string", default: "sync" },
  },
  strict: true,
});
const PORT = Number(values.port);
const PKI = values.pki ?? "";
const PROCESSES = Number(values.processes);
const ASYNC = values.crypto === "async";

/** P256_ALGORITHM: SEQUENCE { id-ecPublicKey, prime256v1 }, a P-256 SubjectPublicKeyInfo's algorithm. */
const P256_ALGORITHM = Buffer.from("301306072a8648ce3d020106082a8648ce3d030107", "hex");

if (cluster.isPrimary && PROCESSES > 1) {
  let listening = 0;
  for (let i = 0; i < PROCESSES; i++)
    cluster.fork().on("listening", () => {
      if (++listening === PROCESSES) console.log("floor listening");
    });
  process.on("SIGTERM", () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.kill("SIGTERM");
    process.exit(0);
  });
} else serveFloor();

function serveFloor(): void {
  const caDer = parseCertificatesPem(readFileSync(path.join(PKI, "ca", "ca.pem"), "latin1"))[0]!;
  const ca = readCertFields(caDer);
  const issuer = {
    subject: ca.subject,
    keyId: keyIdOf(ca.spki),
    keyType: "ecdsa-p256" as const,
    privateKey: createPrivateKey(readFileSync(path.join(PKI, "ca", "ca-key.pem"))),
  };
  // The fixed template: what a 1 h dual certificate for a service says; only the serial and the key vary.
  const template = {
    profile: "dual" as const,
    subject: { CN: "web" },
    dns: ["web.bench.test"],
    ips: [],
    uris: ["spiffe://bench.test/dual/web"],
    keyType: "ecdsa-p256" as const,
    notBefore: new Date(),
    notAfter: new Date(Date.now() + 3_600_000),
  };

  const answer = (res: http.ServerResponse, status: number, body: string) => {
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  };
  const issue = (res: http.ServerResponse, spki: Buffer) => {
    const tbs = encodeTbs(template, issuer, spki, newSerial());
    const done = (der: Buffer) => answer(res, 201, JSON.stringify({ certificate: encodePem("CERTIFICATE", der) }));
    if (ASYNC) signTbsAsync(tbs, issuer).then(done, () => answer(res, 500, '{"error":"signing failed"}'));
    else done(signTbs(tbs, issuer));
  };
  const handle = (res: http.ServerResponse, text: string) => {
    let csr: ReturnType<typeof readCsr>;
    try {
      const body = JSON.parse(text) as { csr?: unknown };
      if (typeof body.csr !== "string") throw new Error("no csr");
      csr = readCsr(body.csr);
    } catch {
      answer(res, 400, '{"error":"not a CSR"}');
      return;
    }
    if (ASYNC)
      verify("sha256", csr.info, csr.key, csr.signature, (err, ok) =>
        !err && ok ? issue(res, csr.spki) : answer(res, 400, '{"error":"bad signature"}'),
      );
    else if (verify("sha256", csr.info, csr.key, csr.signature)) issue(res, csr.spki);
    else answer(res, 400, '{"error":"bad signature"}');
  };

  const server = https.createServer(
    {
      cert: readFileSync(path.join(PKI, "services", "cfssl", "cert.pem")),
      key: readFileSync(path.join(PKI, "services", "cfssl", "key.pem")),
      minVersion: "TLSv1.3",
      keepAliveTimeout: 600_000,
    },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => handle(res, chunks.length === 1 ? chunks[0]!.toString() : Buffer.concat(chunks).toString()));
    },
  );
  server.listen(PORT, "127.0.0.1", () => {
    if (!cluster.isWorker) console.log("floor listening");
  });
  process.on("SIGTERM", () => process.exit(0));
}

/** readCsr decodes a P-256 PKCS#10 request's PEM: the signed bytes, the signature, its key (JWK-imported) and SubjectPublicKeyInfo. */
function readCsr(pem: string): { info: Buffer; signature: Buffer; key: KeyObject; spki: Buffer } {
  const b64 = pem.replace(/-----(BEGIN|END) CERTIFICATE REQUEST-----/g, "").replace(/\s/g, "");
  const der = Buffer.from(b64, "base64");
  const [infoT, , sigT] = children(der, readTlv(der, 0));
  if (infoT?.tag !== TAG.sequence || sigT?.tag !== TAG.bitString) throw new Error("not a CSR");
  const [, , spkiT] = children(der, infoT);
  if (spkiT?.tag !== TAG.sequence) throw new Error("not a CSR");
  const spki = der.subarray(spkiT.start, spkiT.end);
  const [algT, bitsT] = children(spki, readTlv(spki, 0));
  if (algT === undefined || !spki.subarray(algT.start, algT.end).equals(P256_ALGORITHM) || bitsT?.tag !== TAG.bitString)
    throw new Error("not a P-256 key");
  const point = contentsOf(spki, bitsT).subarray(1);
  if (point.length !== 65 || point[0] !== 4) throw new Error("not an uncompressed P-256 point");
  const key = createPublicKey({
    key: {
      kty: "EC",
      crv: "P-256",
      x: point.subarray(1, 33).toString("base64url"),
      y: point.subarray(33).toString("base64url"),
    },
    format: "jwk",
  });
  return { info: der.subarray(infoT.start, infoT.end), signature: contentsOf(der, sigT).subarray(1), key, spki };
}
