/**
 * verify: one certificate file judged against a trust bundle, as `openssl verify -x509_strict` and
 * Go's crypto/x509 would, with check's chain builder and codes. `loadCerts` is the I/O edge (every
 * file through readFileBounded); `judgeVerify` (verify.ts) is pure apart from signature checks.
 */
import { Material, type Cert } from "../check/material.ts";
import { UsageError } from "../errors.ts";
import { decodeCrl, type CrlInfo } from "../pki/crl.ts";
import { parsePem } from "../pki/pem.ts";
import { readFileBounded } from "../read-file.ts";

/**
 * loadCrl reads --crl: a PEM X509 CRL or one DER CertificateList; a file that is neither is a
 * UsageError (exit 2), an unreadable one a ReadFileError (exit 3).
 */
export function loadCrl(file: string): CrlInfo {
  const bytes = readFileBounded(file);
  const text = bytes.toString("latin1");
  try {
    if (!text.includes("-----BEGIN") && bytes[0] === 0x30) return decodeCrl(bytes);
    const block = parsePem(text).find((b) => b.label === "X509 CRL");
    if (!block) throw new Error("it holds no PEM X509 CRL block");
    return decodeCrl(block.der);
  } catch (e) {
    throw new UsageError(
      `mtlskit verify: --crl ${file} is not a CRL (${(e as Error).message}); name the CA's CRL, e.g. DIR/ca/crl.pem`,
    );
  }
}

export { judgeVerify, USAGES, type Reason, type Usage, type Verdict, type VerifyInput } from "./verify.ts";

/**
 * loadCerts reads every certificate of `file` (PEM, or one DER certificate) through
 * readFileBounded: an unreadable file is a ReadFileError (exit 3), a readable one without a
 * certificate a UsageError naming `role` (exit 2).
 */
export function loadCerts(material: Material, file: string, role: string): Cert[] {
  const bytes = readFileBounded(file);
  const text = bytes.toString("latin1");
  if (!text.includes("-----BEGIN") && bytes[0] === 0x30) {
    try {
      return [material.cert(bytes)];
    } catch (e) {
      throw new UsageError(
        `mtlskit verify: ${role} ${file} is neither PEM nor a DER certificate (${(e as Error).message})`,
      );
    }
  }
  const certs = material.certsOfPem(text);
  if (!Array.isArray(certs))
    throw new UsageError(`mtlskit verify: ${role} ${file} ${certs.message}; name a PEM file of certificates`);
  return certs;
}

export { Material };

/**
 * loadSystemCerts reads the system bundle: each certificate mtlskit's decoder cannot read is
 * skipped (a distribution's bundle holds a hundred roots from everywhere; one odd root must not
 * stop verifying against the others), and counted.
 */
export function loadSystemCerts(material: Material, file: string): { certs: Cert[]; skipped: number } {
  const certs: Cert[] = [];
  let skipped = 0;
  for (const b of parsePem(readFileBounded(file).toString("latin1"))) {
    if (b.label !== "CERTIFICATE") continue;
    try {
      certs.push(material.cert(b.der));
    } catch {
      skipped++;
    }
  }
  if (certs.length === 0)
    throw new UsageError(
      `mtlskit verify: the system bundle ${file} holds no certificate mtlskit can read; name the trust anchors with --ca BUNDLE`,
    );
  return { certs, skipped };
}
