/**
 * `npm run bench:x509`: per-certificate decoding time of pki/x509.ts's decodeCertificate against
 * @peculiar/asn1-x509 (which it replaced) and node:crypto's X509Certificate, on the same
 * certificates in memory, in the same run.
 *
 * The certificates (default 2,000) are made in memory by test/helpers/forge.ts: mostly ECDSA
 * P-256 leaves with a few DNS, IP and URI SANs, and some RSA-2048, Ed25519, P-384 leaves and CAs.
 * Each decoder reads them all once to warm up, then --rounds times; the best round counts.
 *
 *   ours      decodeCertificate: names, serial, dates, key, every extension it judges;
 *   peculiar  @peculiar/asn1-x509 reading the same fields (test/helpers/peculiar.ts, key by OID);
 *   node      new X509Certificate(der), then its subject, issuer, subjectAltName, validFrom,
 *             validTo and serialNumber (node parses with OpenSSL and formats strings on access);
 *   node-ctor new X509Certificate(der) alone.
 *
 * A benchmark, not a test: it always exits 0 unless a decoder fails on a certificate.
 *
 *   npm run bench:x509 [-- --count 2000] [--rounds 5]
 */
import { X509Certificate } from "node:crypto";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import { decodeCertificate } from "../src/pki/x509.ts";
import { forge, newKey, type Forged, type ForgedKey } from "../test/helpers/forge.ts";
import { peculiarView } from "../test/helpers/peculiar.ts";

const { values } = parseArgs({
  options: { count: { type: "string", default: "2000" }, rounds: { type: "string", default: "5" } },
  strict: true,
});
const COUNT = Number(values.count);
const ROUNDS = Number(values.rounds);

/** corpus forges COUNT certificates under two CAs, with a few keys reused (RSA generation is slow). */
function corpus(): Buffer[] {
  const keys: Record<"ec" | "rsa" | "ed" | "p384", ForgedKey> = {
    ec: newKey("ec-p256"),
    rsa: newKey("rsa-2048"),
    ed: newKey("ed25519"),
    p384: newKey("ec-p384"),
  };
  const cas: Forged[] = [
    forge({ ca: true, cn: "Bench Root", key: newKey("ec-p384") }),
    forge({ ca: { pathLen: 0 }, cn: "Bench RSA CA", key: newKey("rsa-2048") }),
  ];
  const out: Buffer[] = cas.map((c) => c.der);
  for (let i = out.length; i < COUNT; i++) {
    const key = i % 10 === 1 ? keys.rsa : i % 10 === 2 ? keys.ed : i % 10 === 3 ? keys.p384 : keys.ec;
    const sans = [
      `DNS:svc-${i}.bench.internal`,
      `DNS:svc-${i}`,
      `IP:10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
      `URI:spiffe://bench.local/api/svc-${i}`,
    ];
    if (i % 7 === 0) sans.push(`IP:2001:db8::${(i & 0xffff).toString(16)}`);
    out.push(forge({ cn: `svc-${i}`, o: "Bench", issuer: cas[i % 2], key, sans: sans.slice(0, 2 + (i % 4)) }).der);
  }
  return out;
}

/** perCertMicros times `f` over every certificate: one warm-up pass, then the best of ROUNDS, in µs per certificate. */
function perCertMicros(ders: Buffer[], f: (der: Buffer) => unknown): number {
  for (const d of ders) f(d);
  let best = Infinity;
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (const d of ders) f(d);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1000 / ders.length);
  }
  return best;
}

const ders = corpus();
let sink = 0;
const results: [string, number][] = [
  ["ours (decodeCertificate)", perCertMicros(ders, (d) => (sink += decodeCertificate(d).sans.length))],
  ["@peculiar/asn1-x509", perCertMicros(ders, (d) => (sink += peculiarView(d, { key: false }).sans.length))],
  [
    "node:crypto X509Certificate + fields",
    perCertMicros(ders, (d) => {
      const c = new X509Certificate(d);
      sink +=
        c.subject.length +
        c.issuer.length +
        (c.subjectAltName ?? "").length +
        c.validFrom.length +
        c.validTo.length +
        c.serialNumber.length;
    }),
  ],
  [
    "node:crypto X509Certificate (constructor)",
    perCertMicros(ders, (d) => (sink += new X509Certificate(d).raw.length)),
  ],
];
const ours = results[0]![1];
console.log(
  `x509 decoding: ${ders.length} certificates, best of ${ROUNDS} rounds; ${cpus().length} × ${cpus()[0]?.model ?? "?"}, node ${process.version}`,
);
for (const [name, us] of results) {
  console.log(
    `  ${name.padEnd(42)} ${us.toFixed(1).padStart(7)} µs/cert  ${(us / ours).toFixed(1).padStart(6)} × ours  ${((us * 10_000) / 1e6).toFixed(2).padStart(6)} s per 10,000`,
  );
}
if (sink === 0) console.log("(nothing decoded)");
