/**
 * `pkcs12`: a passphrase-protected .p12 per service (a split service adds NAME-client.p12) for
 * consumers that want one file (Java's keytool and KeyStore, Windows, browsers).
 *
 * The encoding is RFC 7292 in the form OpenSSL 3 writes by default, over pki/der.ts and
 * node:crypto (no ASN.1 library, for the reason der.ts gives):
 *   PFX v3 { authSafe: data { AuthenticatedSafe [
 *     encryptedData (PBES2: PBKDF2-HMAC-SHA256 + AES-256-CBC) { certBag leaf, certBag CA... },
 *     data { pkcs8ShroudedKeyBag (PBES2, same algorithms) } ] },
 *   macData: HMAC-SHA256 with the key from RFC 7292 appendix B (SHA-256, ID 3) }
 * The leaf and the key carry the same localKeyId and a friendlyName (keytool's alias), so
 * readers pair them into one private-key entry whose chain is the leaf, then the CA.
 *
 * Determinism: the salts and IVs are not random but HMAC-SHA256 values keyed by the service's
 * private key over the exported certificates (the way RFC 6979 derives ECDSA nonces from the
 * key): unpredictable without the key, different for different contents, and the same for the
 * same contents, so re-exporting unchanged material rewrites no file. They never depend on the
 * passphrase, which would let a guess be tested without the key-derivation work.
 */
import * as crypto from "node:crypto";
import { createCipheriv, createHash, createHmac, pbkdf2Sync } from "node:crypto";
import { explicit, implicit, octetString, oid, seq, tlv, TAG, uint } from "../pki/der.ts";
import type { Output } from "../manifest/index.ts";
import { EXPORT_MODES, type ExportFile } from "./file.ts";
import type { PairMaterial, PkiMaterial } from "./material.ts";

/**
 * PKCS12_ITERATIONS for PBKDF2 and for the MAC key: Java's defaults since 8u301
 * (keystore.pkcs12.keyPbeIterationCount, macIterationCount), five times OpenSSL 3's 2048. The
 * MAC's iterations bound a guessing attack as much as PBKDF2's, so the two are equal. A long
 * random passphrase (`openssl rand -base64 32`) matters more than either.
 */
export const PKCS12_ITERATIONS = 10_000;

const OID = {
  data: "1.2.840.113549.1.7.1",
  encryptedData: "1.2.840.113549.1.7.6",
  shroudedKeyBag: "1.2.840.113549.1.12.10.1.2",
  certBag: "1.2.840.113549.1.12.10.1.3",
  x509Certificate: "1.2.840.113549.1.9.22.1",
  friendlyName: "1.2.840.113549.1.9.20",
  localKeyId: "1.2.840.113549.1.9.21",
  pbes2: "1.2.840.113549.1.5.13",
  pbkdf2: "1.2.840.113549.1.5.12",
  hmacWithSha256: "1.2.840.113549.2.9",
  aes256Cbc: "2.16.840.1.101.3.4.1.42",
  sha256: "2.16.840.1.101.3.4.2.1",
} as const;

const int = (n: number): Buffer => {
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return uint(Buffer.from(bytes.length ? bytes : [0]));
};
const nul = (): Buffer => tlv(TAG.null);
/** set encodes a DER SET OF: its elements sorted by their encodings (X.690 11.6). */
const set = (...elements: Buffer[]): Buffer => tlv(TAG.set, ...[...elements].sort(Buffer.compare));
/** bmpString: UTF-16BE (RFC 7292 appendix B.1), as friendlyName and the MAC's password use. */
const bmp = (s: string): Buffer => Buffer.from(s, "utf16le").swap16();

/** Pkcs12Entry is what goes into one .p12: a key, its certificate chain (leaf first) and the CA certificates. */
export interface Pkcs12Entry {
  /** pkcs8: the private key, PKCS#8 DER. */
  pkcs8: Buffer;
  /** certs: the leaf first, then intermediates. */
  certs: Buffer[];
  /** cas: the trust anchors (the service's bundle). */
  cas: Buffer[];
  /** friendlyName names the entry (keytool's alias). */
  friendlyName: string;
}

/** Pkcs12Options tune the encoding. */
export interface Pkcs12Options {
  /** iterations for PBKDF2 and the MAC key. Default: PKCS12_ITERATIONS. */
  iterations?: number;
}

/** pbes2 encrypts `plain` (PBKDF2-HMAC-SHA256, AES-256-CBC; the passphrase as UTF-8, as OpenSSL uses it for PBES2) and returns the AlgorithmIdentifier and ciphertext. */
function pbes2(
  plain: Buffer,
  passphrase: string,
  salt: Buffer,
  iv: Buffer,
  iterations: number,
): { alg: Buffer; data: Buffer } {
  const key = pbkdf2Sync(Buffer.from(passphrase, "utf8"), salt, iterations, 32, "sha256");
  const c = createCipheriv("aes-256-cbc", key, iv);
  const data = Buffer.concat([c.update(plain), c.final()]);
  const alg = seq(
    oid(OID.pbes2),
    seq(
      seq(oid(OID.pbkdf2), seq(octetString(salt), int(iterations), seq(oid(OID.hmacWithSha256), nul()))),
      seq(oid(OID.aes256Cbc), octetString(iv)),
    ),
  );
  return { alg, data };
}

/**
 * sha256 is one SHA-256, through crypto.hash where Node has it (20.12+): the KDF below runs it
 * 10,000 times per key, and the one-shot call costs a third less than a Hash object.
 */
const sha256: (b: Buffer) => Buffer =
  typeof crypto.hash === "function"
    ? (b) => crypto.hash("sha256", b, "buffer")
    : (b) => createHash("sha256").update(b).digest();

/**
 * pkcs12Kdf is RFC 7292 appendix B.2 with SHA-256 (u = 32, v = 64): the MAC key (id 3) from a
 * BMPString password with its two-byte terminator. Exported for the test against openssl.
 */
export function pkcs12Kdf(passphrase: string, salt: Buffer, iterations: number, id: number, length: number): Buffer {
  const u = 32;
  const v = 64;
  const pass = passphrase.length ? Buffer.concat([bmp(passphrase), Buffer.alloc(2)]) : Buffer.alloc(0);
  const fill = (b: Buffer) =>
    b.length === 0
      ? b
      : Buffer.concat(
          Array.from({ length: Math.ceil(b.length / v) * v }, (_, i) => b.subarray(i % b.length, (i % b.length) + 1)),
        );
  const D = Buffer.alloc(v, id);
  const I = Buffer.concat([fill(salt), fill(pass)]);
  const out: Buffer[] = [];
  for (let produced = 0; produced < length; produced += u) {
    let A: Buffer = createHash("sha256").update(D).update(I).digest();
    for (let r = 1; r < iterations; r++) A = sha256(A);
    out.push(A);
    if (produced + u >= length) break;
    // I_j = (I_j + B + 1) mod 2^(8v), B being A repeated to v bytes.
    const B = fill(A);
    for (let j = 0; j < I.length; j += v) {
      let carry = 1;
      for (let k = v - 1; k >= 0; k--) {
        const sum = I[j + k]! + B[k]! + carry;
        I[j + k] = sum & 0xff;
        carry = sum >> 8;
      }
    }
  }
  return Buffer.concat(out).subarray(0, length);
}

/**
 * encode builds the .p12. The MAC key is RFC 7292's KDF (PKCS12_ITERATIONS rounds of SHA-256 in
 * JavaScript: 17 ms, three quarters of a file's cost), so `withMac: false` leaves the MAC zero for
 * pkcs12Matches; `macAt` is where the MAC's 32 bytes are.
 */
function encode(
  e: Pkcs12Entry,
  passphrase: string,
  iterations: number,
  withMac: boolean,
): { bytes: Buffer; macAt: number } {
  const contentHash = createHash("sha256");
  for (const c of [...e.certs, ...e.cas]) contentHash.update(c);
  const digest = contentHash.digest();
  const derive = (label: string, n: number) =>
    createHmac("sha256", e.pkcs8).update(`mtlskit pkcs12 ${label}\0`).update(digest).digest().subarray(0, n);

  const localKeyId = createHash("sha1").update(e.certs[0]!).digest(); // OpenSSL's choice: the leaf's SHA-1
  const attrs = set(
    seq(oid(OID.friendlyName), set(tlv(0x1e, bmp(e.friendlyName)))),
    seq(oid(OID.localKeyId), set(octetString(localKeyId))),
  );
  const certBag = (der: Buffer, withAttrs: boolean) =>
    seq(
      oid(OID.certBag),
      explicit(0, seq(oid(OID.x509Certificate), explicit(0, octetString(der)))),
      ...(withAttrs ? [attrs] : []),
    );
  // The CAs not already in the chain, so an intermediate is not listed twice.
  const cas = e.cas.filter((c) => !e.certs.some((x) => x.equals(c)));
  const certContents = seq(
    certBag(e.certs[0]!, true),
    ...e.certs.slice(1).map((c) => certBag(c, false)),
    ...cas.map((c) => certBag(c, false)),
  );
  const certEnc = pbes2(certContents, passphrase, derive("cert salt", 16), derive("cert iv", 16), iterations);
  const certsInfo = seq(
    oid(OID.encryptedData),
    explicit(0, seq(int(0), seq(oid(OID.data), certEnc.alg, implicit(0, certEnc.data)))),
  );

  const keyEnc = pbes2(e.pkcs8, passphrase, derive("key salt", 16), derive("key iv", 16), iterations);
  const keyBag = seq(oid(OID.shroudedKeyBag), explicit(0, seq(keyEnc.alg, octetString(keyEnc.data))), attrs);
  const keyInfo = seq(oid(OID.data), explicit(0, octetString(seq(keyBag))));

  const authSafe = seq(certsInfo, keyInfo);
  const macSalt = derive("mac salt", 16);
  const mac = withMac
    ? createHmac("sha256", pkcs12Kdf(passphrase, macSalt, iterations, 3, 32))
        .update(authSafe)
        .digest()
    : Buffer.alloc(32);
  const tail = Buffer.concat([octetString(macSalt), int(iterations)]);
  const macData = seq(seq(seq(oid(OID.sha256), nul()), octetString(mac)), tail);
  const bytes = seq(int(3), seq(oid(OID.data), explicit(0, octetString(authSafe))), macData);
  return { bytes, macAt: bytes.length - tail.length - mac.length };
}

/** encodePkcs12 builds a .p12 holding the key, its chain and the CAs, protected by `passphrase`. Deterministic (see the file's comment). */
export function encodePkcs12(e: Pkcs12Entry, passphrase: string, opts: Pkcs12Options = {}): Buffer {
  return encode(e, passphrase, opts.iterations ?? PKCS12_ITERATIONS, true).bytes;
}

/**
 * pkcs12Matches says whether `existing` is the .p12 encodePkcs12 would write for `e` and
 * `passphrase`, at a third of the cost of writing it: every byte is compared but the MAC's, so
 * its key (RFC 7292's KDF) is not derived. The MAC is a function of what is compared (the
 * passphrase, whose PBKDF2 keys encrypted both bags, the salts and the authenticated contents),
 * so a file equal up to its MAC carries the MAC encodePkcs12 would write, unless those 32 bytes
 * alone were damaged on disk.
 */
export function pkcs12Matches(existing: Buffer, e: Pkcs12Entry, passphrase: string, opts: Pkcs12Options = {}): boolean {
  const { bytes, macAt } = encode(e, passphrase, opts.iterations ?? PKCS12_ITERATIONS, false);
  return (
    existing.length === bytes.length &&
    existing.subarray(0, macAt).equals(bytes.subarray(0, macAt)) &&
    existing.subarray(macAt + 32).equals(bytes.subarray(macAt + 32))
  );
}

const entryOf = (pair: PairMaterial, cas: Buffer[], friendlyName: string): Pkcs12Entry => ({
  pkcs8: pair.pkcs8,
  certs: pair.certDers,
  cas,
  friendlyName,
});

/** Pkcs12Build is what buildPkcs12 may use besides the material: the files already written, and a progress callback. */
export interface Pkcs12Build extends Pkcs12Options {
  /** existing returns the bytes of a file already at `path` in the output (undefined: none); a match is kept without re-encoding. */
  existing?: (path: string) => Buffer | undefined;
  /** onProgress is told after each file: how many are done of how many. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * buildPkcs12 writes NAME.p12 per service (and NAME-client.p12 for a split one), mode 0600. A file
 * already there that pkcs12Matches is returned as it is, so the writer finds it unchanged.
 */
export function buildPkcs12(pki: PkiMaterial, _out: Output, passphrase: string, opts: Pkcs12Build = {}): ExportFile[] {
  const wanted = pki.services.flatMap((s) => {
    const n = s.service.name;
    return [
      { path: `${n}.p12`, entry: entryOf(s.main, s.bundleDers, n) },
      ...(s.client ? [{ path: `${n}-client.p12`, entry: entryOf(s.client, s.bundleDers, `${n}-client`) }] : []),
    ];
  });
  return wanted.map(({ path, entry }, i) => {
    const existing = opts.existing?.(path);
    const bytes =
      existing && pkcs12Matches(existing, entry, passphrase, opts) ? existing : encodePkcs12(entry, passphrase, opts);
    opts.onProgress?.(i + 1, wanted.length);
    return { path, bytes, mode: EXPORT_MODES.secret };
  });
}
