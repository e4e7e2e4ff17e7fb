import { generateKey } from "./src/pki/keys.ts";
import { encodeTbs, signTbs, keyIdOf, newSerial } from "./src/pki/issue.ts";
import { encodeName } from "./src/pki/name.ts";
import { encodePem } from "./src/pki/pem.ts";
import { decodeCertificate } from "./src/pki/x509.ts";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { writeFileSync } from "node:fs";
const ck = generateKey("ecdsa-p256");
const caKey = createPrivateKey({ key: ck.pkcs8, format: "der", type: "pkcs8" });
const now = new Date();
const caSubj = encodeName({ C: "US", O: "Demo", CN: "Demo CA" });
const ca = { subject: caSubj, keyId: keyIdOf(ck.spki), keyType: "ecdsa-p256" as const, privateKey: caKey };
const caDer = signTbs(encodeTbs({ profile: "ca", subject: { C: "US", O: "Demo", CN: "Demo CA" }, dns: [], ips: [], uris: [], keyType: "ecdsa-p256", notBefore: now, notAfter: new Date(+now + 864e8) }, ca, ck.spki, newSerial()), ca);
for (const kt of ["ecdsa-p256", "rsa-2048", "ed25519", "ecdsa-p384"] as const) {
const lk = generateKey(kt);
const leaf = signTbs(encodeTbs({ profile: "dual", subject: { O: "Demo", CN: "core" }, dns: ["core"], ips: [Buffer.from([10,0,0,1]), Buffer.from("20010db8000000000000000000000001","hex")], uris: ["spiffe://demo/peer/core"], keyType: kt, notBefore: now, notAfter: new Date(+now + 864e7) }, ca, lk.spki, newSerial()), ca);
writeFileSync(`/tmp/leaf-${kt}.pem`, encodePem("CERTIFICATE", leaf));
writeFileSync(`/tmp/leaf-${kt}-key.pem`, encodePem("PRIVATE KEY", lk.pkcs8));
console.log(kt, JSON.stringify(decodeCertificate(leaf)));
new X509Certificate(leaf);
}
writeFileSync("/tmp/ca.pem", encodePem("CERTIFICATE", caDer));
console.log(JSON.stringify(decodeCertificate(caDer)));
