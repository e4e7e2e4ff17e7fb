/**
 * The export layer's input: each chosen service's certificate, key and trust bundle, read once
 * from the PKI directory (or from services.NAME.files for an external service) and checked to
 * belong together. Builders turn this into files without touching the disk. The CA's private
 * key is never read here, so no export can contain it.
 */
import { createHash, createPrivateKey } from "node:crypto";
import * as path from "node:path";
import { FailedError, UsageError } from "../errors.ts";
import { readTextBounded } from "../read-file.ts";
import type { CertSlot, Manifest, Service } from "../manifest/index.ts";
import { readCertFields } from "../pki/cert.ts";
import { spkiOfPrivateKey } from "../pki/keys.ts";
import { parseCertificatesPem } from "../pki/pem.ts";
import { abs, LAYOUT } from "../state/layout.ts";

/** PairMaterial is one certificate slot: the certificate file (leaf, then intermediates) and its key. */
export interface PairMaterial {
  /** certPem: the certificate file's bytes as written by apply (leaf, then any intermediates). */
  certPem: string;
  keyPem: string;
  /** certDers: the leaf first, then the intermediates. */
  certDers: Buffer[];
  /** pkcs8: the private key as PKCS#8 DER. */
  pkcs8: Buffer;
  notAfter: Date;
  /** sha256: the leaf's SHA-256 fingerprint, lowercase hex. */
  sha256: string;
  /** certFile and keyFile: where the files were read (absolute), for exports that point at them. */
  certFile: string;
  keyFile: string;
}

/** ServiceMaterial is what one service's exports are made of. */
export interface ServiceMaterial {
  service: Service;
  main: PairMaterial;
  /** client: the client pair of a split service. */
  client: PairMaterial | undefined;
  /** bundlePem: the trust bundle the service verifies peers with (its ca.pem). */
  bundlePem: string;
  bundleDers: Buffer[];
  bundleFile: string;
}

/** PkiMaterial is every chosen service's material, in the manifest's order. */
export interface PkiMaterial {
  cluster: string;
  services: ServiceMaterial[];
  /** crlPem and crlFile: the CA's CRL (DIR/ca/crl.pem), for the managed services; absent before apply wrote one. */
  crlPem?: string;
  crlFile?: string;
}

/** notIssued is the error for a PKI directory that lacks what the manifest declares (exit 3, with the command to run). */
function notIssued(m: Manifest, pki: string, file: string): FailedError {
  return new FailedError(
    `export: ${file} does not exist: the PKI directory ${pki} has not been issued for ${m.file}. Run \`mtlskit apply -f ${m.file} --pki ${pki}\` first, then export again.`,
  );
}

/** readOptional reads a file that may not exist yet (the CRL of a PKI issued before revocation existed). */
function readOptional(file: string): string | undefined {
  try {
    return readTextBounded(file, { noFollow: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new FailedError(`export: ${(e as Error).message}`, { cause: e });
  }
}

function readOrFail(m: Manifest, pki: string, file: string, external: boolean): string {
  try {
    return readTextBounded(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && !external) throw notIssued(m, pki, file);
    throw new FailedError(
      `export: ${(e as Error).message}${code === "EACCES" ? "; run export as the user who owns the PKI directory" : ""}`,
      { cause: e },
    );
  }
}

/**
 * certificatesOf reads every certificate of a PEM file and decodes each, so a damaged file (a
 * truncated copy, an altered byte) is refused here naming the file and what is wrong (exit 3),
 * not deep in a builder (issue 11: a truncated cert.pem printed "This is a bug in mtlskit").
 */
function certificatesOf(m: Manifest, file: string, text: string, fix: string): Buffer[] {
  let ders: Buffer[];
  try {
    ders = parseCertificatesPem(text);
  } catch (e) {
    throw new FailedError(
      `export: ${file} is not a PEM file of certificates (${(e as Error).message.replace(/^pem: /, "")}); ${fix}, or run \`mtlskit check -f ${m.file}\` to see what is wrong`,
      { cause: e },
    );
  }
  const begun = text.match(/-----BEGIN [A-Z0-9 ]+-----/g)?.length ?? 0;
  if (begun > ders.length)
    throw new FailedError(`export: ${file} is truncated: a -----BEGIN line has no -----END line; ${fix}`);
  if (ders.length === 0) throw new FailedError(`export: ${file} holds no CERTIFICATE block; ${fix}`);
  for (const [i, der] of ders.entries()) {
    try {
      readCertFields(der);
    } catch (e) {
      throw new FailedError(
        `export: ${file} is damaged: certificate ${i + 1} does not decode (${(e as Error).message.replace(/^der: /, "")}; the file was truncated or altered); ${fix}`,
        { cause: e },
      );
    }
  }
  return ders;
}

function pair(m: Manifest, pki: string, s: Service, certFile: string, keyFile: string): PairMaterial {
  const external = s.files !== undefined;
  const certPem = readOrFail(m, pki, certFile, external);
  const keyPem = readOrFail(m, pki, keyFile, external);
  const certDers = certificatesOf(
    m,
    certFile,
    certPem,
    external
      ? `replace it with the certificate as issued (services.${s.name}.files.cert)`
      : `run \`mtlskit apply -f ${m.file} --pki ${pki}\` (it re-issues a certificate it cannot parse)`,
  );
  const fields = readCertFields(certDers[0]!);
  let pkcs8: Buffer;
  let spki: Buffer;
  try {
    const key = createPrivateKey(keyPem);
    pkcs8 = key.export({ type: "pkcs8", format: "der" });
    spki = spkiOfPrivateKey(key);
  } catch (e) {
    throw new FailedError(
      `export: ${keyFile} cannot be read as a private key (${(e as Error).message}); run \`mtlskit check -f ${m.file}\` to see what is wrong`,
      { cause: e },
    );
  }
  if (!fields.spki.equals(spki)) {
    throw new FailedError(
      `export: ${keyFile} is not the key of ${certFile}; refusing to export a pair that cannot work. ${external ? `Fix services.${s.name}.files` : `Run \`mtlskit apply -f ${m.file} --pki ${pki}\``}, then export again.`,
    );
  }
  return {
    certPem,
    keyPem,
    certDers,
    pkcs8,
    notAfter: fields.notAfter,
    sha256: createHash("sha256").update(certDers[0]!).digest("hex"),
    certFile,
    keyFile,
  };
}

/** loadMaterial reads the chosen services' files (every service when `names` is undefined); throws FailedError (exit 3) when the PKI has not been issued. */
export function loadMaterial(m: Manifest, pki: string, names: readonly string[] | undefined): PkiMaterial {
  const dir = path.resolve(pki);
  const chosen = m.services.filter((s) => names === undefined || names.includes(s.name));
  const onHost = chosen.filter((s) => s.csr);
  if (onHost.length > 0)
    throw new UsageError(
      `export: ${onHost.map((s) => s.name).join(", ")} ${onHost.length === 1 ? "has its key" : "have their keys"} on ${onHost.length === 1 ? "its own host" : "their own hosts"} (csr: true), so no pair can be exported from ${pki}; leave ${onHost.length === 1 ? "it" : "them"} out (the certificate is ${abs(dir, LAYOUT.cert(onHost[0]!.slots[0]!))})`,
    );
  if (chosen.some((s) => s.files === undefined)) readOrFail(m, pki, abs(dir, LAYOUT.caCert), false); // the CA first: the clearest sign of a PKI never issued
  const services = chosen.map((s): ServiceMaterial => {
    const slotFiles = (slot: CertSlot) =>
      s.files
        ? slot.kind === "main"
          ? [s.files.cert, s.files.key]
          : [s.files.clientCert!, s.files.clientKey!]
        : [abs(dir, LAYOUT.cert(slot)), abs(dir, LAYOUT.key(slot))];
    const [main, client] = s.slots.map((slot) => {
      const [c, k] = slotFiles(slot);
      return pair(m, pki, s, c!, k!);
    });
    const bundleFile = s.files ? s.files.ca : abs(dir, LAYOUT.bundle(s.name));
    const bundlePem = readOrFail(m, pki, bundleFile, s.files !== undefined);
    const bundleDers = certificatesOf(
      m,
      bundleFile,
      bundlePem,
      s.files
        ? `replace it with the CA certificates (services.${s.name}.files.ca)`
        : `run \`mtlskit apply -f ${m.file} --pki ${pki}\` to write it again`,
    );
    return { service: s, main: main!, client, bundlePem, bundleDers, bundleFile };
  });
  const crlFile = abs(dir, LAYOUT.crl);
  const crlPem = chosen.some((s) => s.files === undefined) ? readOptional(crlFile) : undefined;
  return { cluster: m.cluster, services, ...(crlPem === undefined ? {} : { crlPem, crlFile }) };
}
