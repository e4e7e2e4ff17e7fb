/**
 * Certificates as check sees them: parsed once, by content, however many services and
 * connections refer to them. Signature checks are memoized per (certificate, issuer) pair, so a
 * cluster of 10,000 services sharing one bundle verifies each leaf once, not once per connection.
 */
import { createHash, createPublicKey, verify, X509Certificate, type KeyObject } from "node:crypto";
import { readCertFields, type CertFields } from "../pki/cert.ts";
import { parsePem } from "../pki/pem.ts";
import { decodeFields, type CertInfo } from "../pki/x509.ts";

/** Cert is a parsed certificate. */
export interface Cert {
  der: Buffer;
  fields: CertFields;
  info: CertInfo;
  /** sha256 of the DER, hex: the certificate's identity in caches and output. */
  sha256: string;
}

/** CertParseError says why a PEM text did not yield certificates, in words for the user. */
export class CertParseError extends Error {
  /** labels: the PEM blocks found when none was a certificate (a key file, `openssl ecparam -genkey` output), else undefined. */
  readonly labels?: string[];
  constructor(message: string, labels?: string[]) {
    super(message);
    if (labels !== undefined) this.labels = labels;
  }
}

/** blocksInWords names PEM blocks: "a PRIVATE KEY block", "an EC PARAMETERS block", "EC PARAMETERS and EC PRIVATE KEY blocks". */
function blocksInWords(labels: readonly string[]): string {
  const names = [...new Set(labels)];
  if (names.length > 1) return `${names.slice(0, -1).join(", ")} and ${names.at(-1)} blocks`;
  // The article goes by sound: "an EC ...", "an RSA ...", "a PRIVATE KEY".
  return `${/^(?:[AEIOU]|RSA |X509 )/.test(names[0]!) ? "an" : "a"} ${names[0]} block`;
}

/**
 * TEXT_CACHE is how many PEM texts Material remembers, most recently used first. A cluster's
 * bundles are one text read thousands of times, which this cache answers; its leaves are each
 * read once, and keeping their text (10,000 x ~900 bytes) would only hold memory.
 */
export const TEXT_CACHE = 64;

/**
 * ARENA_BYTES is the size of the buffers certificates are copied into, back to back. A DER
 * decoded from PEM is a slice of Node's shared 8 KB pool, amid file bytes and private keys
 * decoded just before it, and one live slice keeps the whole slab: at 10,000 services the
 * slabs held 12 MB for 5 MB of certificates (and kept key bytes alive long after their match).
 */
export const ARENA_BYTES = 64 * 1024;

/**
 * Material parses and caches certificates by content and memoizes signature checks. One
 * instance serves one check run. The lists it returns are canonical: files holding the same
 * certificates in the same order (identical bundles, whatever their text) share one array.
 */
export class Material {
  private readonly byText = new Map<string, Cert[] | CertParseError>();
  private readonly lists = new Map<string, Cert[]>();
  private readonly byDer = new Map<string, Cert>();
  private arena = Buffer.alloc(0);
  private used = 0;
  /** common: the values shared between certificates (see shared). */
  private readonly common = new Map<string, unknown>();
  private readonly keys = new Map<string, KeyObject>();
  /** signatures: per issuer (by sha256), per child (by sha256), whether the issuer's key made the child's signature. */
  private readonly signatures = new Map<string, Map<string, boolean>>();

  /**
   * certsOfPem parses every CERTIFICATE block of a PEM text, leaf first, skipping other blocks.
   * No certificate at all, a truncated block or an undecodable certificate is a CertParseError.
   */
  certsOfPem(text: string): Cert[] | CertParseError {
    const hit = this.byText.get(text);
    if (hit) {
      // Most recently used last: the oldest text is the one forgotten.
      this.byText.delete(text);
      this.byText.set(text, hit);
      return hit;
    }
    let out: Cert[] | CertParseError;
    try {
      const blocks = parsePem(text);
      // A BEGIN line without its END line is a file cut short (a copy interrupted, a disk full);
      // parsePem skips such a block, which would otherwise read as "no PEM block" or, in a
      // chain, silently drop an intermediate.
      const begun = text.match(/-----BEGIN [A-Z0-9 ]+-----/g)?.length ?? 0;
      if (begun > blocks.length)
        throw new CertParseError(`is truncated: block ${blocks.length + 1} has a -----BEGIN line but no -----END line`);
      if (blocks.length === 0)
        throw new CertParseError(
          text.trim() === "" ? "is empty" : "holds no PEM block (expected -----BEGIN CERTIFICATE-----)",
        );
      // Other blocks are skipped, as OpenSSL and Go's X509KeyPair do: a combined certificate and
      // key file works (the key's own mode is judged as a key file's).
      const certs = blocks.filter((b) => b.label === "CERTIFICATE");
      if (certs.length === 0)
        throw new CertParseError(
          `holds ${blocksInWords(blocks.map((b) => b.label))} but no certificate`,
          blocks.map((b) => b.label),
        );
      out = this.canonical(
        certs.map((b, i) => {
          try {
            return this.cert(b.der);
          } catch (e) {
            throw new CertParseError(`certificate ${i + 1} does not parse (${(e as Error).message})`);
          }
        }),
      );
    } catch (e) {
      out = e instanceof CertParseError ? e : new CertParseError((e as Error).message);
    }
    this.byText.set(text, out);
    if (this.byText.size > TEXT_CACHE) this.byText.delete(this.byText.keys().next().value!);
    return out;
  }

  /** canonical returns the one array of these certificates in this order (a lone certificate's key is its own sha256: no new string). */
  private canonical(certs: Cert[]): Cert[] {
    const key = certs.length === 1 ? certs[0]!.sha256 : certs.map((c) => c.sha256).join(",");
    const hit = this.lists.get(key);
    if (hit) return hit;
    this.lists.set(key, certs);
    return certs;
  }

  /** held counts what this Material keeps: PEM texts (at most TEXT_CACHE), distinct certificate lists, certificates. */
  held(): { texts: number; lists: number; certs: number } {
    return { texts: this.byText.size, lists: this.lists.size, certs: this.byDer.size };
  }

  /** cert parses one DER certificate (cached by content); it throws on malformed input. */
  cert(der: Buffer): Cert {
    const sha256 = createHash("sha256").update(der).digest("hex");
    const hit = this.byDer.get(sha256);
    if (hit) return hit;
    const own = this.keep(der);
    const fields = readCertFields(own);
    const info = this.shared(decodeFields(fields));
    for (const san of info.sans) if (san.type === "ip") san.bytes = this.keep(san.bytes);
    const c: Cert = { der: own, fields, info, sha256 };
    this.byDer.set(sha256, c);
    return c;
  }

  /**
   * shared makes the parts a cluster's certificates have in common (issuer, authority key id,
   * signature algorithm, key kind, extension list, key usages) one value each, held by every
   * certificate that has it: about 0.8 KB less per leaf. Nothing in check changes a CertInfo.
   */
  private shared(info: CertInfo): CertInfo {
    const one = <T>(kind: string, key: string, value: T): T => {
      const k = `${kind}\u0000${key}`;
      const hit = this.common.get(k);
      if (hit !== undefined) return hit as T;
      this.common.set(k, value);
      return value;
    };
    const list = (xs: readonly string[] | undefined) => (xs === undefined ? "-" : xs.join(","));
    const a = info.signatureAlgorithm;
    const p = info.publicKey;
    info.issuer = one("issuer", info.issuer, info.issuer);
    if (info.authorityKeyId !== undefined) info.authorityKeyId = one("aki", info.authorityKeyId, info.authorityKeyId);
    info.signatureAlgorithm = one("sig", `${a.oid} ${a.name} ${a.hash}`, a);
    info.publicKey = one("key", `${p.algorithm} ${p.curve} ${p.bits} ${p.keyType}`, p);
    info.extensions = one(
      "ext",
      info.extensions.map((e) => `${e.oid} ${e.name} ${e.critical}`).join(","),
      info.extensions,
    );
    info.keyUsage = one("ku", list(info.keyUsage), info.keyUsage);
    info.extKeyUsage = one("eku", list(info.extKeyUsage), info.extKeyUsage);
    return info;
  }

  /** keep copies bytes into the current arena (a new one when they do not fit): see ARENA_BYTES. */
  private keep(bytes: Buffer): Buffer {
    if (this.used + bytes.length > this.arena.length) {
      this.arena = Buffer.allocUnsafeSlow(Math.max(ARENA_BYTES, bytes.length));
      this.used = 0;
    }
    const out = this.arena.subarray(this.used, this.used + bytes.length);
    bytes.copy(out);
    this.used += bytes.length;
    return out;
  }

  /** publicKey returns the certificate's public key as a KeyObject (cached). */
  publicKey(c: Cert): KeyObject {
    let k = this.keys.get(c.sha256);
    if (!k) {
      k = createPublicKey({ key: c.fields.spki, format: "der", type: "spki" });
      this.keys.set(c.sha256, k);
    }
    return k;
  }

  /** signedBy tells whether `issuer`'s key made `child`'s signature (memoized). */
  signedBy(child: Cert, issuer: Cert): boolean {
    // Keyed by the certificates' own sha256 strings: no new key string per pair.
    let byChild = this.signatures.get(issuer.sha256);
    if (!byChild) this.signatures.set(issuer.sha256, (byChild = new Map()));
    let ok = byChild.get(child.sha256);
    if (ok === undefined) {
      ok = this.verifySignature(child, issuer);
      byChild.set(child.sha256, ok);
    }
    return ok;
  }

  private verifySignature(child: Cert, issuer: Cert): boolean {
    try {
      const hash = child.info.signatureAlgorithm.hash;
      // node:crypto verifies the common algorithms straight from the TBS bytes; anything else
      // (RSASSA-PSS with its parameters) goes through OpenSSL's own certificate verification.
      if (hash !== undefined) return verify(hash, child.fields.tbs, this.publicKey(issuer), child.fields.signature);
      return new X509Certificate(child.der).verify(this.publicKey(issuer));
    } catch {
      return false;
    }
  }
}
