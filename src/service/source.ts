/**
 * Credential sources: where a service gets its key, certificate chain and trust bundle. A source
 * has one method, `current()` (go-spiffe's x509svid.Source), asked at every handshake, so a static
 * bundle and a hot-reloading one are used the same way. Credentials are checked when they are
 * made: a key that does not match its certificate, or a bundle that does not parse, is refused
 * with the file and the fix, instead of surfacing later as a handshake failure.
 */
import { createPrivateKey, createPublicKey, createHash } from "node:crypto";
import * as tls from "node:tls";
import type { Identity } from "../identity/index.ts";
import { FailedError } from "../errors.ts";
import { readFileBounded, type ReadFileError } from "../read-file.ts";
import { parsePem } from "../pki/pem.ts";
import { decodeCertificate, type CertInfo } from "../pki/x509.ts";
import { peerFromDer } from "./peer.ts";

/** Credentials are one consistent snapshot of what a service presents and trusts. */
export interface Credentials {
  /** key is the PEM private key of the leaf certificate. */
  readonly key: string;
  /** cert is the PEM chain: the leaf first, then any intermediates. */
  readonly cert: string;
  /** ca is the PEM trust bundle peers are verified against. */
  readonly ca: string;
  /** crl is the CA's PEM certificate revocation list, when one was given: a peer it lists is refused. */
  readonly crl?: string;
  /** leaf is the decoded leaf certificate. */
  readonly leaf: CertInfo;
  /** identity is the leaf's one URI SAN, parsed; undefined when it has none, several or an invalid one. */
  readonly identity: Identity | undefined;
}

/** CredentialSource hands out the credentials to use now; each handshake asks again. */
export interface CredentialSource {
  /** current returns the latest valid credentials (the same object until they change). */
  current(): Credentials;
}

/** PemInput is PEM text, as a string or a Buffer. */
export type PemInput = string | Buffer;

/** StaticSourceInput holds PEM texts: the certificate chain, its key and the trust bundle. */
export interface StaticSourceInput {
  /** cert: the leaf certificate, then any intermediates. */
  cert: PemInput;
  /** key: the leaf's unencrypted private key (PKCS#8, PKCS#1 or SEC1). */
  key: PemInput;
  /** ca: the trust bundle, one or more certificates. */
  ca: PemInput;
  /** crl: the CA's certificate revocation list(s) in PEM (mtlskit apply writes DIR/ca/crl.pem); peers it lists are refused. Default: none (no revocation check). */
  crl?: PemInput;
}

/** CredentialNames say how messages name each input after its kind ("certificate NAME"): a file path, or where it came from ("(given as text)"). */
export interface CredentialNames {
  cert: string;
  key: string;
  ca: string;
  crl?: string;
}

// Messages put what an input is before its name ("certificate /etc/x.pem"), so text inputs are
// named by where they came from only; naming the kind twice read as a typo (issue 11).
const TEXT_NAMES: CredentialNames = { cert: "(given as text)", key: "(given as text)", ca: "(given as text)" };

const fail = (message: string, fix: string, cause?: unknown) =>
  new FailedError(`service: ${message}; fix: ${fix}`, { cause });

/** certificatesIn reads every CERTIFICATE block of a PEM text, refusing other blocks and empty input. */
function certificatesIn(text: string, name: string, what: string): Buffer[] {
  let blocks;
  try {
    blocks = parsePem(text);
  } catch (e) {
    throw fail(
      `cannot read ${what} ${name}: ${(e as Error).message.replace(/^pem: /, "")}`,
      "write it again from its source; the file is damaged or half-written",
      e,
    );
  }
  const begun = text.match(/-----BEGIN [^-\r\n]*-----/g)?.length ?? 0;
  if (begun > blocks.length) {
    const open = begun - blocks.length;
    throw fail(
      `${what} ${name} is cut short: ${open === 1 ? "a PEM block has" : `${open} PEM blocks have`} no END line`,
      "write it again from its source; the file is half-written or truncated",
    );
  }
  if (blocks.length === 0) {
    throw fail(
      `${what} ${name} holds no PEM CERTIFICATE block`,
      `give the PEM form (DER converts with: openssl x509 -inform der -in FILE -out FILE.pem)`,
    );
  }
  const other = blocks.find((b) => b.label !== "CERTIFICATE");
  if (other)
    throw fail(
      `${what} ${name} holds a ${other.label} block`,
      other.label.includes("PRIVATE KEY")
        ? "it holds a key: were the certificate and key files swapped?"
        : "keep only CERTIFICATE blocks in it",
    );
  for (const [i, b] of blocks.entries()) {
    try {
      decodeCertificate(b.der);
    } catch (e) {
      throw fail(
        `${what} ${name}: certificate ${i + 1} cannot be decoded: ${(e as Error).message.replace(/^x509: /, "")}`,
        "replace it with the certificate as issued",
        e,
      );
    }
  }
  return blocks.map((b) => b.der);
}

/**
 * parseCredentials checks PEM texts and makes one Credentials snapshot: the chain and the bundle
 * must parse and the key must be the leaf's. Messages name the inputs by `names` (file paths when
 * read from files). It throws a FailedError whose message ends with the fix.
 */
export function parseCredentials(input: StaticSourceInput, names: CredentialNames = TEXT_NAMES): Credentials {
  const cert = input.cert.toString();
  const key = input.key.toString();
  const ca = input.ca.toString();
  const chain = certificatesIn(cert, names.cert, "certificate");
  certificatesIn(ca, names.ca, "trust bundle");
  const leaf = peerFromDer(chain[0]!);
  let spki: Buffer;
  try {
    spki = createPublicKey(createPrivateKey(key)).export({ type: "spki", format: "der" });
  } catch (e) {
    const encrypted = (e as NodeJS.ErrnoException).code === "ERR_MISSING_PASSPHRASE";
    throw fail(
      `cannot read key ${names.key}: ${encrypted ? "it is encrypted" : (e as Error).message}`,
      encrypted
        ? "decrypt it (openssl pkey -in KEY -out KEY.plain)"
        : "give the PEM private key written with the certificate",
      e,
    );
  }
  if (createHash("sha256").update(spki).digest("hex") !== leaf.spkiSha256) {
    throw fail(
      `key ${names.key} does not match certificate ${names.cert} (${leaf.subject}): they are from different issuances or one was replaced alone`,
      "use the key written together with this certificate, or issue a new pair (mtlskit apply --reissue SERVICE)",
    );
  }
  if (input.crl === undefined) return { key, cert, ca, leaf: leaf.info, identity: leaf.identity };
  const crl = input.crl.toString();
  crlProblem(crl, names.crl ?? "(given as text)");
  return { key, cert, ca, crl, leaf: leaf.info, identity: leaf.identity };
}

/**
 * crlProblem refuses a CRL that is not PEM X509 CRL blocks, or that OpenSSL cannot load (a
 * damaged or half-written file): handed to Node as is, it would fail every handshake instead.
 */
function crlProblem(text: string, name: string): void {
  let blocks;
  try {
    blocks = parsePem(text);
  } catch (e) {
    throw fail(`cannot read CRL ${name}: ${(e as Error).message.replace(/^pem: /, "")}`, CRL_FIX, e);
  }
  const begun = text.match(/-----BEGIN [^-\r\n]*-----/g)?.length ?? 0;
  if (blocks.length === 0 || begun > blocks.length)
    throw fail(`CRL ${name} holds no complete PEM X509 CRL block`, CRL_FIX);
  const other = blocks.find((b) => b.label !== "X509 CRL");
  if (other) throw fail(`CRL ${name} holds a ${other.label} block`, "keep only X509 CRL blocks in it");
  try {
    tls.createSecureContext({ crl: text });
  } catch (e) {
    throw fail(`CRL ${name} cannot be loaded: ${(e as Error).message}`, CRL_FIX, e);
  }
}

const CRL_FIX = "give the CA's CRL as mtlskit apply writes it (DIR/ca/crl.pem), whole";

/**
 * staticSource serves fixed credentials given as PEM texts, checked once here.
 *
 * @example
 * const source = staticSource({ cert: certPem, key: keyPem, ca: caPem });
 * console.log(source.current().identity?.uri);
 */
export function staticSource(input: StaticSourceInput): CredentialSource {
  const creds = parseCredentials(input);
  return { current: () => creds };
}

/** StaticFiles names the three files of a service (mtlskit's layout: cert.pem, key.pem, ca.pem). */
export interface StaticFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
  /** crlFile: the CA's CRL (DIR/ca/crl.pem); optional. */
  crlFile?: string;
}

/**
 * loadStaticSource reads a service's certificate, key and bundle files once and serves them.
 *
 * @example
 * const source = loadStaticSource({ certFile: "pki/services/api/cert.pem", keyFile: "pki/services/api/key.pem", caFile: "pki/services/api/ca.pem" });
 */
export function loadStaticSource(files: StaticFiles): CredentialSource {
  const creds = readCredentials(files);
  return { current: () => creds };
}

/** readCredentials reads the three files of `files` and parses them into one snapshot (loadStaticSource, fileSource). */
export function readCredentials(files: StaticFiles): Credentials {
  const read = (file: string, what: string) => {
    try {
      return readFileBounded(file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw fail(
        `cannot read ${what} ${file}: ${code === "ENOTREG" || code === "EFBIG" ? `it ${(e as ReadFileError).reason}` : (code ?? (e as Error).message)}`,
        "check the path (mtlskit apply writes DIR/services/NAME/cert.pem, key.pem, ca.pem) and that this process may read it",
        e,
      );
    }
  };
  const input = {
    cert: read(files.certFile, "certificate"),
    key: read(files.keyFile, "key"),
    ca: read(files.caFile, "trust bundle"),
    ...(files.crlFile === undefined ? {} : { crl: read(files.crlFile, "CRL") }),
  };
  return parseCredentials(input, {
    cert: files.certFile,
    key: files.keyFile,
    ca: files.caFile,
    ...(files.crlFile === undefined ? {} : { crl: files.crlFile }),
  });
}
