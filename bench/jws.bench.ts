/**
 * `npm run bench:jws`: what ACME's JWS check costs through jose (src/acme/jws.ts: importJWK then
 * flattenedVerify, as every ACME POST does) against node:crypto doing the same work by hand
 * (createPublicKey from the JWK, crypto.verify), interleaved in one run, in CPU microseconds per
 * verification (process.cpuUsage, so a loaded machine skews both alike). ES256, RS256 (2048) and
 * EdDSA (Ed25519), 3000 verifications each, two rounds.
 */
import { createPublicKey, type JsonWebKey, verify as nodeVerify } from "node:crypto";
import { exportJWK, FlattenedSign, generateKeyPair, flattenedVerify, importJWK } from "jose";
for (const alg of ["ES256", "RS256", "EdDSA"] as const) {
  const { privateKey, publicKey } = await generateKeyPair(alg, {
    extractable: true,
    ...(alg === "EdDSA" ? { crv: "Ed25519" } : {}),
  });
  const jwk = await exportJWK(publicKey);
  const jws = await new FlattenedSign(
    new TextEncoder().encode(JSON.stringify({ identifiers: [{ type: "dns", value: "web.localhost" }] })),
  )
    .setProtectedHeader({ alg, nonce: "abc", url: "https://x/acme/new-order", kid: "https://x/acme/account/1" })
    .sign(privateKey);
  const N = 3000;
  const runJose = async () => {
    for (let i = 0; i < N; i++) {
      const k = await importJWK(jwk, alg);
      await flattenedVerify(jws, k, { algorithms: [alg] });
    }
  };
  const runNode = () => {
    for (let i = 0; i < N; i++) {
      const k = createPublicKey({ key: jwk as JsonWebKey, format: "jwk" });
      const data = Buffer.from(`${jws.protected}.${jws.payload}`);
      const sig = Buffer.from(jws.signature, "base64url");
      const ok =
        alg === "ES256"
          ? nodeVerify("sha256", data, { key: k, dsaEncoding: "ieee-p1363" }, sig)
          : alg === "RS256"
            ? nodeVerify("sha256", data, k, sig)
            : nodeVerify(null, data, k, sig);
      if (!ok) throw new Error("bad");
    }
  };
  for (let round = 0; round < 2; round++) {
    const c0 = process.cpuUsage();
    await runJose();
    const c1 = process.cpuUsage(c0);
    const d0 = process.cpuUsage();
    runNode();
    const d1 = process.cpuUsage(d0);
    const us = (c: NodeJS.CpuUsage) => ((c.user + c.system) / N).toFixed(1);
    console.log(
      `${alg} round ${round}: jose (importJWK + flattenedVerify) ${us(c1)} us CPU/verify; node:crypto (createPublicKey + verify) ${us(d1)} us CPU/verify`,
    );
  }
}
