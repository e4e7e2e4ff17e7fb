/**
 * forge: certificates with any defect, made in memory for tests (check fixtures, handshake
 * tables). Unlike src/pki/issue.ts, which can only write what PROFILES allows, every field here
 * is the test's choice: extended key usage, key usage, basic constraints, SAN types, dates,
 * serial, key identifiers, signature hash, extra extensions. The DER comes from src/pki/der.ts
 * primitives; the judges of what forge makes are independent (openssl, real TLS handshakes).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from "node:crypto";
import { writeFileSync } from "node:fs";
import * as path from "node:path";
import { bitString, bool, explicit, implicit, octetString, oid, seq, time, tlv, TAG, uint } from "../../src/pki/der.ts";
import { ipBytes } from "../../src/pki/ip.ts";
import { keyIdOf } from "../../src/pki/issue.ts";
import { encodePem } from "../../src/pki/pem.ts";

/** ForgeKey names the key types forge can make, including weak ones. */
export type ForgeKey = "ec-p256" | "ec-p384" | "ec-p521" | "rsa-1024" | "rsa-2048" | "ed25519";

/** ForgedKey is a key pair. */
export interface ForgedKey {
  type: ForgeKey;
  privateKey: KeyObject;
  spki: Buffer;
  pem: string;
}

/** newKey generates a key of `type`. */
export function newKey(type: ForgeKey = "ec-p256"): ForgedKey {
  const { privateKey } = type.startsWith("ec-")
    ? generateKeyPairSync("ec", {
        namedCurve: { "ec-p256": "P-256", "ec-p384": "P-384", "ec-p521": "P-521" }[type as "ec-p256"],
      })
    : type.startsWith("rsa-")
      ? generateKeyPairSync("rsa", { modulusLength: Number(type.slice(4)) })
      : generateKeyPairSync("ed25519");
  const spki = createPublicKey(privateKey).export({ type: "spki", format: "der" });
  return { type, privateKey, spki, pem: privateKey.export({ type: "pkcs8", format: "pem" }) as string };
}

/**
 * syntheticRsaKey is a key whose public half is an RSA key of `bits` bits made of random bytes, for
 * a leaf too large to generate in a test (Node takes about 40 s for 8200 bits). No private key
 * exists for it: `privateKey` and `pem` are an unrelated P-256 key, so it can be a certificate's
 * subject key (a real CA signs) but never sign, and its key file never matches.
 */
export function syntheticRsaKey(bits: number): ForgedKey {
  const n = randomBytes(Math.ceil(bits / 8));
  n[0] = (n[0]! | 0x80) >> ((8 - (bits % 8)) % 8);
  n[n.length - 1]! |= 1;
  const spki = createPublicKey({ key: { kty: "RSA", n: n.toString("base64url"), e: "AQAB" }, format: "jwk" }).export({
    type: "spki",
    format: "der",
  });
  const other = newKey();
  return { type: "rsa-2048", privateKey: other.privateKey, spki, pem: other.pem };
}

/** ForgeSpec: everything optional; defaults make a healthy ECDSA server+client leaf (or CA with `ca`). */
export interface ForgeSpec {
  /** cn: the subject CN (omit with `cn: null`). */
  cn?: string | null;
  /** o: an O attribute. */
  o?: string;
  /** issuer: the signing certificate; undefined = self-signed. */
  issuer?: Forged;
  key?: ForgedKey;
  /** notBefore / notAfter. Default: an hour ago, 30 days ahead. */
  notBefore?: Date;
  notAfter?: Date;
  /** serial: INTEGER contents (two's complement). Default: 16 random positive octets. */
  serial?: Buffer;
  /** ca: basicConstraints cA=TRUE (with optional pathLen). */
  ca?: boolean | { pathLen: number };
  /** basicConstraints: false omits the extension. Default true. */
  basicConstraints?: boolean;
  /** ku: keyUsage bit names, or null to omit. Default: digitalSignature (+ keyCertSign, cRLSign for a CA). */
  ku?: string[] | null;
  /** eku: extendedKeyUsage names or OIDs, or null to omit. Default: serverAuth, clientAuth (none for a CA). */
  eku?: string[] | null;
  /** sans: `DNS:x`, `IP:1.2.3.4`, `URI:spiffe://...`; default `DNS:<cn>`. */
  sans?: string[];
  /** ski / aki: write the key identifiers. Default true (aki only when issued by another). */
  ski?: boolean;
  aki?: boolean;
  /** hash: the signature hash. Default sha256 (Ed25519 ignores it). */
  hash?: "sha256" | "sha384" | "sha1";
  /** extra: further extensions. */
  extra?: { oid: string; critical: boolean; value: Buffer }[];
}

/** Forged is a certificate and its key. */
export interface Forged {
  der: Buffer;
  pem: string;
  key: ForgedKey;
  subject: Buffer;
  ski: Buffer;
}

const KU_BITS = [
  "digitalSignature",
  "contentCommitment",
  "keyEncipherment",
  "dataEncipherment",
  "keyAgreement",
  "keyCertSign",
  "cRLSign",
  "encipherOnly",
  "decipherOnly",
];
const EKU_OIDS: Record<string, string> = {
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  codeSigning: "1.3.6.1.5.5.7.3.3",
  emailProtection: "1.3.6.1.5.5.7.3.4",
  anyExtendedKeyUsage: "2.5.29.37.0",
};

function keyUsage(bits: string[]): Buffer {
  const bytes = [0, 0];
  for (const b of bits) {
    const i = KU_BITS.indexOf(b);
    if (i < 0) throw new Error(`forge: unknown key usage ${b}`);
    bytes[i >> 3]! |= 0x80 >> (i & 7);
  }
  const used = bytes[1] ? bytes : [bytes[0]!];
  const last = used[used.length - 1]!;
  let unused = 0;
  while (unused < 7 && last && !(last & (1 << unused))) unused++;
  return tlv(TAG.bitString, Buffer.from([unused, ...used]));
}

function sigAlg(key: ForgedKey, hash: "sha256" | "sha384" | "sha1"): Buffer {
  if (key.type === "ed25519") return seq(oid("1.3.101.112"));
  if (key.type.startsWith("ec-"))
    return seq(oid({ sha256: "1.2.840.10045.4.3.2", sha384: "1.2.840.10045.4.3.3", sha1: "1.2.840.10045.4.1" }[hash]));
  return seq(
    oid({ sha256: "1.2.840.113549.1.1.11", sha384: "1.2.840.113549.1.1.12", sha1: "1.2.840.113549.1.1.5" }[hash]),
    tlv(TAG.null),
  );
}

function name(cn: string | null | undefined, o: string | undefined): Buffer {
  const rdn = (id: string, v: string) => tlv(TAG.set, seq(oid(id), tlv(TAG.utf8String, Buffer.from(v))));
  return seq(...(o ? [rdn("2.5.4.10", o)] : []), ...(cn ? [rdn("2.5.4.3", cn)] : []));
}

function ext(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), bool(true), octetString(value)) : seq(oid(id), octetString(value));
}

/** forge makes a certificate from `spec`. */
export function forge(spec: ForgeSpec = {}): Forged {
  const key = spec.key ?? newKey();
  const isCa = spec.ca !== undefined && spec.ca !== false;
  const cn = spec.cn === undefined ? (isCa ? "Forge CA" : "service") : spec.cn;
  const subject = name(cn, spec.o);
  const signer = spec.issuer?.key ?? key;
  const issuerName = spec.issuer?.subject ?? subject;
  const ski = keyIdOf(key.spki);
  const exts: Buffer[] = [];
  if (spec.basicConstraints !== false) {
    const pathLen = typeof spec.ca === "object" ? [uint(Buffer.from([spec.ca.pathLen]))] : [];
    exts.push(ext("2.5.29.19", true, isCa ? seq(bool(true), ...pathLen) : seq()));
  }
  const ku = spec.ku === undefined ? (isCa ? ["keyCertSign", "cRLSign"] : ["digitalSignature"]) : spec.ku;
  if (ku !== null) exts.push(ext("2.5.29.15", true, keyUsage(ku)));
  const eku = spec.eku === undefined ? (isCa ? null : ["serverAuth", "clientAuth"]) : spec.eku;
  if (eku !== null) exts.push(ext("2.5.29.37", false, seq(...eku.map((u) => oid(EKU_OIDS[u] ?? u)))));
  if (spec.ski !== false) exts.push(ext("2.5.29.14", false, octetString(ski)));
  if (spec.issuer && spec.aki !== false) exts.push(ext("2.5.29.35", false, seq(implicit(0, spec.issuer.ski))));
  const sans = spec.sans ?? (cn && !isCa ? [`DNS:${cn}`] : []);
  if (sans.length > 0) {
    exts.push(
      ext(
        "2.5.29.17",
        false,
        seq(
          ...sans.map((s) => {
            const [type, ...rest] = s.split(":");
            const v = rest.join(":");
            if (type === "DNS") return implicit(2, Buffer.from(v));
            if (type === "IP") return implicit(7, ipBytes(v));
            if (type === "URI") return implicit(6, Buffer.from(v));
            if (type === "email") return implicit(1, Buffer.from(v));
            throw new Error(`forge: unknown SAN type ${s}`);
          }),
        ),
      ),
    );
  }
  for (const x of spec.extra ?? []) exts.push(ext(x.oid, x.critical, x.value));
  const hash = spec.hash ?? "sha256";
  const serial =
    spec.serial ??
    Buffer.concat([
      Buffer.from([0x40]),
      Buffer.from(Array.from({ length: 15 }, () => Math.floor(Math.random() * 256))),
    ]);
  const tbs = seq(
    explicit(0, uint(Buffer.from([2]))),
    tlv(TAG.integer, serial),
    sigAlg(signer, hash),
    issuerName,
    seq(
      time(spec.notBefore ?? new Date(Date.now() - 3_600_000)),
      time(spec.notAfter ?? new Date(Date.now() + 30 * 86_400_000)),
    ),
    subject,
    key.spki,
    explicit(3, seq(...exts)),
  );
  const signature = sign(signer.type === "ed25519" ? null : hash, tbs, signer.privateKey);
  const der = seq(tbs, sigAlg(signer, hash), bitString(signature));
  return { der, pem: encodePem("CERTIFICATE", der), key, subject, ski };
}

/** writeForged writes `NAME.pem` (certificate, then `chain`) and `NAME-key.pem` (0600) into `dir`; returns both paths. */
export function writeForged(
  dir: string,
  fileName: string,
  f: Forged,
  chain: Forged[] = [],
): { cert: string; key: string } {
  const cert = path.join(dir, `${fileName}.pem`);
  const key = path.join(dir, `${fileName}-key.pem`);
  writeFileSync(cert, f.pem + chain.map((c) => c.pem).join(""));
  writeFileSync(key, f.key.pem, { mode: 0o600 });
  return { cert, key };
}

/** keyFromPem turns a PEM private key back into a ForgedKey-like object (for reuse across forges). */
export function keyFromPem(pem: string, type: ForgeKey): ForgedKey {
  const privateKey = createPrivateKey(pem);
  return { type, privateKey, spki: createPublicKey(privateKey).export({ type: "spki", format: "der" }), pem };
}

/** rsa16kCsr is a PKCS#10 request (DER) holding a 16384-bit RSA public key (a random odd modulus; its signature is never checked: the size is refused first). */
export function rsa16kCsr(): Buffer {
  const modulus = randomBytes(2048);
  modulus[0]! |= 0x80;
  modulus[2047]! |= 1;
  const spki = seq(
    seq(oid("1.2.840.113549.1.1.1"), tlv(TAG.null)),
    bitString(seq(uint(modulus), uint(Buffer.from([1, 0, 1])))),
  );
  const info = seq(uint(Buffer.from([0])), seq(), spki, tlv(0xa0));
  return seq(info, seq(oid("1.2.840.113549.1.1.11"), tlv(TAG.null)), bitString(randomBytes(2048)));
}
