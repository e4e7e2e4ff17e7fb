/**
 * check's connection verdicts against real TLS. Each case is a small PKI of two external services,
 * `client` and `server`, made with forge (test/helpers/forge.ts) with one deliberate defect, and
 * the connection `client -> server @ ADDRESS`. Three judges that share no code give their verdict:
 *
 *   1. `checkPki`: the connection's `ok` and `causes`;
 *   2. a real loopback handshake (test/helpers/tls.ts: Node's TLS, i.e. OpenSSL's libssl, and
 *      Node's checkServerIdentity), which must fail exactly when check says the connection fails,
 *      at the end check blames: the client end for conn-server-* and conn-address, the server end
 *      for conn-client-*;
 *   3. `openssl verify -x509_strict -purpose sslserver|sslclient`, which must refuse the
 *      certificate check refuses for trust, usage, validity or address.
 *
 * Deliberate disagreements are cases named `strict/...` with a `strictOnly` reason: check refuses
 * what OpenSSL accepts, because Go's crypto/x509 or the RFCs (and the stricter peers following
 * them) refuse it. Those cases assert the disagreement itself, so a change on either side shows.
 * A few failing cases fail in OpenSSL at another end or layer than check names (`ownCertificate`,
 * `x509Accepts`), each with the reason.
 *
 * Cases before the fixes in src/check/chain.ts (SHA-1 signatures, unknown critical extensions)
 * were judged "ok" by check while both OpenSSL and Go refuse them.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import * as path from "node:path";
import { before, describe, it } from "node:test";
import { checkPki, type Code } from "../src/check/index.ts";
import { loadManifest } from "../src/manifest/index.ts";
import type { Usage } from "../src/pki/profiles.ts";
import { tempDir } from "./helpers/cli.ts";
import { forge, newKey, type ForgedKey, type Forged, type ForgeSpec } from "./helpers/forge.ts";
import { opensslVerify } from "./helpers/openssl.ts";
import { handshake, type HandshakeResult } from "./helpers/tls.ts";

const DAY = 86_400_000;
const daysFromNow = (d: number) => new Date(Date.now() + d * DAY);
const DIR = tempDir("mtlskit-handshake-");

/**
 * Kit is the CAs and keys the cases share, made once (an RSA key costs up to a second on a loaded
 * machine; two are made in all).
 */
interface Kit {
  /** ca: the cluster's ECDSA P-256 root; both ends trust it unless a case says otherwise. */
  ca: Forged;
  /** other: an unrelated root. */
  other: Forged;
  /** twin: a root re-created with ca's name and another key. */
  twin: Forged;
  rsaCa: Forged;
  rsaKey: ForgedKey;
  edCa: Forged;
  /** expiredCa: a root whose notAfter has passed. */
  expiredCa: Forged;
  /** inter: an intermediate under ca with pathLenConstraint 0. */
  inter: Forged;
  /** subCa: a CA under inter, which inter's pathLen 0 forbids. */
  subCa: Forged;
  /** noSign: an intermediate under ca whose keyUsage lacks keyCertSign. */
  noSign: Forged;
  /** clientOnly: an intermediate under ca restricted to extendedKeyUsage clientAuth. */
  clientOnly: Forged;
  /** sha1Inter: an intermediate under ca, signed with ECDSA-SHA1. */
  sha1Inter: Forged;
  /** sha1Root: a root whose self-signature is ECDSA-SHA1. */
  sha1Root: Forged;
}

let kit: Kit;

/** ServerSpec / clientSpec: healthy leaves (SPIFFE URI, usage-specific EKU) that a case overrides. */
const serverLeaf = (o: ForgeSpec = {}) =>
  forge({
    issuer: kit.ca,
    cn: "server",
    sans: ["IP:127.0.0.1", "DNS:server.localhost", "URI:spiffe://hs.local/server/server"],
    eku: ["serverAuth"],
    ...o,
  });
const clientLeaf = (o: ForgeSpec = {}) =>
  forge({ issuer: kit.ca, cn: "client", sans: ["URI:spiffe://hs.local/client/client"], eku: ["clientAuth"], ...o });

/** EndFiles is what one service's files hold. */
interface EndFiles {
  /** usage in the manifest. Default: the end's name. */
  usage?: Usage;
  cert: Forged;
  /** chain: intermediates written after the leaf in the certificate file. */
  chain?: Forged[];
  /** key: the key file's key. Default: the certificate's. */
  key?: ForgedKey;
  /** bundle: the CA file's certificates; null: the file does not exist. Default: [kit.ca]. */
  bundle?: Forged[] | null;
}

type End = "client" | "server";

/** Case is one PKI, the connection, and what must happen. */
interface Case {
  name: string;
  build: () => { server: EndFiles; client: EndFiles };
  /** address dialed. Default 127.0.0.1. */
  address?: string;
  /** maxVersion offered by both ends. Default TLSv1.3. */
  maxVersion?: "TLSv1.2";
  /**
   * atClient / atServer: check's causes, by the end that refuses in a real handshake. Neither:
   * the connection works. The client end refuses the server's certificate (conn-server-*,
   * conn-address) or cannot start (conn-missing); the server end likewise for the client's.
   */
  atClient?: Code[];
  atServer?: Code[];
  /** error: the code the refusing end(s) report in the handshake (failing cases). */
  error?: string;
  /**
   * opensslSays: a phrase of `openssl verify`'s refusal, where Node reports OpenSSL's reason as
   * `UNSPECIFIED` (its table of verify codes lacks KEYUSAGE_NO_CERTSIGN and UNHANDLED_CRITICAL_EXTENSION).
   */
  opensslSays?: string;
  /** ownCertificate: the refusing end refuses its own certificate (no usable signature), not the peer's: why. */
  ownCertificate?: string;
  /** strictOnly: check refuses deliberately what OpenSSL accepts: why. The handshake must succeed. */
  strictOnly?: string;
  /** findings: codes check must also report on the certificates (the defect, whatever the connection's verdict). */
  findings?: Code[];
  /** x509Accepts: `openssl verify` accepts the certificate check refuses, because the refusal is libssl's: why. */
  x509Accepts?: string;
}

const EC_KU_TLS12 =
  "OpenSSL's X.509 layer accepts keyEncipherment for sslserver; it is libssl that, in TLS 1.2, picks ECDHE-ECDSA suites only for a certificate whose keyUsage has digitalSignature, so the server has no suite to offer";
const KU_RFC =
  "RFC 8446 4.4.2.2 and RFC 5280 4.2.1.3: a TLS signature key must have digitalSignature when keyUsage is present. OpenSSL 3 accepts such an ECDSA server in TLS 1.3 but finds no cipher suite for it in TLS 1.2 (fail/server-ku-keyencipherment-ecdsa-tls1.2); check judges a connection for every version the peers may pick, so it stays an error. GnuTLS and Java refuse it in both";

/** SHA1: why a SHA-1-signed certificate fails at its holder's end in Node but at the verifier's in check. */
const SHA1 =
  "OpenSSL 3 at security level 1 (Node's default) refuses to load a SHA-1-signed certificate or chain (ERR_SSL_CA_MD_TOO_WEAK), so its own end fails; Go loads it and the peer refuses it (certificate signed by unknown authority: insecure algorithm SHA1-ECDSA), which is check's cause";
/** SHA1_VERIFY: why `openssl verify` accepts what both TLS stacks refuse. */
const SHA1_VERIFY =
  "openssl verify applies no security level unless given -auth_level; with -auth_level 1 it refuses too (CA signature digest algorithm too weak)";
/** CRITICAL is an extension no verifier knows, marked critical. */
const CRITICAL = { oid: "1.3.6.1.4.1.99999.1", critical: true, value: Buffer.from([5, 0]) };

const CASES: Case[] = [
  // ── working connections ──────────────────────────────────────────────────────────────────
  { name: "ok/ecdsa-p256", build: () => ({ server: { cert: serverLeaf() }, client: { cert: clientLeaf() } }) },
  {
    name: "ok/rsa-2048",
    build: () => ({
      server: {
        cert: serverLeaf({ issuer: kit.rsaCa, key: kit.rsaKey, ku: ["digitalSignature", "keyEncipherment"] }),
        bundle: [kit.rsaCa],
      },
      client: { cert: clientLeaf({ issuer: kit.rsaCa, key: kit.rsaKey }), bundle: [kit.rsaCa] },
    }),
  },
  {
    name: "ok/ed25519",
    build: () => ({
      server: { cert: serverLeaf({ issuer: kit.edCa, key: newKey("ed25519") }), bundle: [kit.edCa] },
      client: { cert: clientLeaf({ issuer: kit.edCa, key: newKey("ed25519") }), bundle: [kit.edCa] },
    }),
  },
  {
    name: "ok/ecdsa-tls1.2",
    maxVersion: "TLSv1.2",
    build: () => ({ server: { cert: serverLeaf() }, client: { cert: clientLeaf() } }),
  },
  {
    name: "ok/dual-ends",
    build: () => ({
      server: { usage: "dual", cert: serverLeaf({ eku: ["serverAuth", "clientAuth"] }) },
      client: {
        usage: "dual",
        cert: clientLeaf({
          eku: ["serverAuth", "clientAuth"],
          sans: ["DNS:client.localhost", "URI:spiffe://hs.local/client/client"],
        }),
      },
    }),
  },
  // No extendedKeyUsage means any purpose to OpenSSL and Go: a warning (eku-absent), not a failure.
  {
    name: "ok/no-eku",
    findings: ["eku-absent"],
    build: () => ({ server: { cert: serverLeaf({ eku: null }) }, client: { cert: clientLeaf({ eku: null }) } }),
  },
  {
    name: "ok/dns-name",
    address: "server.localhost",
    build: () => ({ server: { cert: serverLeaf() }, client: { cert: clientLeaf() } }),
  },
  {
    name: "ok/wildcard-san",
    address: "server.svc.localhost",
    build: () => ({ server: { cert: serverLeaf({ sans: ["DNS:*.svc.localhost"] }) }, client: { cert: clientLeaf() } }),
  },
  {
    name: "ok/intermediate-in-cert-file",
    build: () => ({
      server: { cert: serverLeaf({ issuer: kit.inter }), chain: [kit.inter] },
      client: { cert: clientLeaf() },
    }),
  },
  // A CA certificate used as a leaf is a certificate error (leaf-is-ca), but both ends accept it.
  {
    name: "ok/leaf-is-ca",
    findings: ["leaf-is-ca"],
    build: () => ({
      server: { cert: serverLeaf({ ca: true, ku: ["digitalSignature", "keyCertSign"] }) },
      client: { cert: clientLeaf() },
    }),
  },
  // ── extended key usage ────────────────────────────────────────────────────────────────────
  {
    name: "fail/server-eku-clientauth-only",
    error: "INVALID_PURPOSE",
    atClient: ["conn-server-usage"],
    build: () => ({ server: { cert: serverLeaf({ eku: ["clientAuth"] }) }, client: { cert: clientLeaf() } }),
  },
  {
    name: "fail/client-eku-serverauth-only",
    error: "INVALID_PURPOSE",
    atServer: ["conn-client-usage"],
    build: () => ({ server: { cert: serverLeaf() }, client: { cert: clientLeaf({ eku: ["serverAuth"] }) } }),
  },
  {
    name: "fail/intermediate-eku-clientauth-only",
    error: "INVALID_PURPOSE",
    atClient: ["conn-server-usage"],
    build: () => ({
      server: { cert: serverLeaf({ issuer: kit.clientOnly }), chain: [kit.clientOnly] },
      client: { cert: clientLeaf() },
    }),
  },
  // ── trust ─────────────────────────────────────────────────────────────────────────────────
  {
    name: "fail/server-from-another-ca",
    error: "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    atClient: ["conn-server-untrusted"],
    build: () => ({ server: { cert: serverLeaf({ issuer: kit.other }) }, client: { cert: clientLeaf() } }),
  },
  {
    name: "fail/client-from-another-ca",
    error: "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    atServer: ["conn-client-untrusted"],
    build: () => ({ server: { cert: serverLeaf() }, client: { cert: clientLeaf({ issuer: kit.other }) } }),
  },
  // The seeds' "CA re-created with the same name": the key identifier already tells OpenSSL the issuer is absent...
  {
    name: "fail/ca-recreated-same-name",
    error: "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    atClient: ["conn-server-untrusted"],
    build: () => ({ server: { cert: serverLeaf({ issuer: kit.twin }) }, client: { cert: clientLeaf() } }),
  },
  // ...and without one, OpenSSL tries the namesake and the signature fails.
  {
    name: "fail/ca-recreated-same-name-no-aki",
    error: "CERT_SIGNATURE_FAILURE",
    findings: ["bad-signature"],
    atClient: ["conn-server-untrusted"],
    build: () => ({ server: { cert: serverLeaf({ issuer: kit.twin, aki: false }) }, client: { cert: clientLeaf() } }),
  },
  {
    name: "fail/intermediate-missing",
    error: "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    atClient: ["conn-server-untrusted"],
    build: () => ({ server: { cert: serverLeaf({ issuer: kit.inter }) }, client: { cert: clientLeaf() } }),
  },
  // The client's bundle holds only the intermediate that issued the server's certificate: Go stops
  // there, OpenSSL (Node) needs a self-signed root unless partial chains are enabled.
  {
    name: "fail/bundle-holds-only-the-intermediate",
    error: "UNABLE_TO_GET_ISSUER_CERT",
    atClient: ["conn-server-untrusted"],
    build: () => ({
      server: { cert: serverLeaf({ issuer: kit.inter }) },
      client: { cert: clientLeaf(), bundle: [kit.inter] },
    }),
  },
  {
    name: "fail/pathlen-exceeded",
    error: "PATH_LENGTH_EXCEEDED",
    atClient: ["conn-server-untrusted"],
    build: () => ({
      server: { cert: serverLeaf({ issuer: kit.subCa }), chain: [kit.subCa, kit.inter] },
      client: { cert: clientLeaf() },
    }),
  },
  {
    name: "fail/issuer-without-keycertsign",
    error: "UNSPECIFIED",
    opensslSays: "key usage does not include certificate signing",
    atClient: ["conn-server-untrusted"],
    build: () => ({
      server: { cert: serverLeaf({ issuer: kit.noSign }), chain: [kit.noSign] },
      client: { cert: clientLeaf() },
    }),
  },
  // ── validity ──────────────────────────────────────────────────────────────────────────────
  {
    name: "fail/server-expired",
    error: "CERT_HAS_EXPIRED",
    atClient: ["conn-validity"],
    build: () => ({
      server: { cert: serverLeaf({ notBefore: daysFromNow(-30), notAfter: daysFromNow(-1) }) },
      client: { cert: clientLeaf() },
    }),
  },
  {
    name: "fail/client-expired",
    error: "CERT_HAS_EXPIRED",
    atServer: ["conn-validity"],
    build: () => ({
      server: { cert: serverLeaf() },
      client: { cert: clientLeaf({ notBefore: daysFromNow(-30), notAfter: daysFromNow(-1) }) },
    }),
  },
  {
    name: "fail/server-not-yet-valid",
    error: "CERT_NOT_YET_VALID",
    atClient: ["conn-validity"],
    build: () => ({
      server: { cert: serverLeaf({ notBefore: daysFromNow(1), notAfter: daysFromNow(30) }) },
      client: { cert: clientLeaf() },
    }),
  },
  {
    name: "fail/client-not-yet-valid",
    error: "CERT_NOT_YET_VALID",
    atServer: ["conn-validity"],
    build: () => ({
      server: { cert: serverLeaf() },
      client: { cert: clientLeaf({ notBefore: daysFromNow(1), notAfter: daysFromNow(30) }) },
    }),
  },
  {
    name: "fail/ca-expired",
    error: "CERT_HAS_EXPIRED",
    findings: ["ca-expired"],
    atClient: ["conn-validity"],
    atServer: ["conn-validity"],
    build: () => ({
      server: { cert: serverLeaf({ issuer: kit.expiredCa }), bundle: [kit.expiredCa] },
      client: { cert: clientLeaf({ issuer: kit.expiredCa }), bundle: [kit.expiredCa] },
    }),
  },
  // ── names ─────────────────────────────────────────────────────────────────────────────────
  {
    name: "fail/ip-not-in-sans",
    error: "ERR_TLS_CERT_ALTNAME_INVALID",
    atClient: ["conn-address"],
    build: () => ({
      server: { cert: serverLeaf({ sans: ["IP:127.0.0.2", "DNS:server.localhost"] }) },
      client: { cert: clientLeaf() },
    }),
  },
  {
    name: "fail/ip-as-dns-san",
    error: "ERR_TLS_CERT_ALTNAME_INVALID",
    atClient: ["conn-address"],
    build: () => ({ server: { cert: serverLeaf({ sans: ["DNS:127.0.0.1"] }) }, client: { cert: clientLeaf() } }),
  },
  {
    name: "fail/wildcard-two-labels",
    error: "ERR_TLS_CERT_ALTNAME_INVALID",
    address: "a.server.svc.localhost",
    atClient: ["conn-address"],
    build: () => ({ server: { cert: serverLeaf({ sans: ["DNS:*.svc.localhost"] }) }, client: { cert: clientLeaf() } }),
  },
  {
    name: "fail/dns-name-not-in-sans",
    error: "ERR_TLS_CERT_ALTNAME_INVALID",
    address: "other.localhost",
    atClient: ["conn-address"],
    build: () => ({ server: { cert: serverLeaf() }, client: { cert: clientLeaf() } }),
  },
  {
    name: "strict/cn-only-dialed-by-name",
    findings: ["cn-not-san"],
    address: "server.localhost",
    atClient: ["conn-address"],
    strictOnly:
      "Node's checkServerIdentity (and openssl -verify_hostname) fall back to the CN when a certificate has no DNS SAN; Go has ignored the CN since 1.15 (x509: certificate relies on legacy Common Name field), and mtlskit follows Go",
    build: () => ({
      server: { cert: serverLeaf({ cn: "server.localhost", sans: [] }) },
      client: { cert: clientLeaf() },
    }),
  },
  // ── key usage ─────────────────────────────────────────────────────────────────────────────
  {
    name: "fail/client-ku-keyencipherment-ecdsa",
    error: "INVALID_PURPOSE",
    atServer: ["conn-client-usage"],
    build: () => ({ server: { cert: serverLeaf() }, client: { cert: clientLeaf({ ku: ["keyEncipherment"] }) } }),
  },
  {
    name: "fail/client-ku-keyencipherment-rsa",
    error: "INVALID_PURPOSE",
    atServer: ["conn-client-usage"],
    build: () => ({
      server: { cert: serverLeaf() },
      client: { cert: clientLeaf({ key: kit.rsaKey, ku: ["keyEncipherment"] }) },
    }),
  },
  {
    name: "fail/server-ku-keyencipherment-ecdsa-tls1.2",
    error: "ERR_SSL_NO_SHARED_CIPHER",
    maxVersion: "TLSv1.2",
    atServer: ["conn-server-usage"],
    ownCertificate: EC_KU_TLS12,
    x509Accepts: EC_KU_TLS12,
    build: () => ({ server: { cert: serverLeaf({ ku: ["keyEncipherment"] }) }, client: { cert: clientLeaf() } }),
  },
  // An Ed25519 server without digitalSignature: in TLS 1.2 the OpenSSL client refuses it (libssl, not its X.509 layer).
  {
    name: "fail/server-ku-keyagreement-ed25519-tls1.2",
    error: "ERR_SSL_ECC_CERT_NOT_FOR_SIGNING",
    maxVersion: "TLSv1.2",
    atClient: ["conn-server-usage"],
    x509Accepts:
      "OpenSSL's X.509 layer accepts keyAgreement for sslserver; libssl's client, in TLS 1.2, refuses an elliptic-curve server certificate whose keyUsage lacks digitalSignature (ecc cert not for signing)",
    build: () => ({
      server: { cert: serverLeaf({ issuer: kit.edCa, key: newKey("ed25519"), ku: ["keyAgreement"] }) },
      client: { cert: clientLeaf(), bundle: [kit.edCa] },
    }),
  },
  {
    name: "strict/server-ku-keyencipherment-ecdsa-tls1.3",
    findings: ["key-usage"],
    atClient: ["conn-server-usage"],
    strictOnly: KU_RFC,
    build: () => ({ server: { cert: serverLeaf({ ku: ["keyEncipherment"] }) }, client: { cert: clientLeaf() } }),
  },
  // What only GnuTLS and Java refuse is a warning (key-usage-strict) and the connection works: OpenSSL
  // accepts these in TLS 1.2 and 1.3, Go never checks keyUsage (GnuTLS: test/interop/keyusage.interop.ts).
  // Before issue 11 check called them errors that "will refuse", with a fix asking for serverAuth.
  {
    name: "ok/server-ku-keyencipherment-rsa",
    findings: ["key-usage-strict"],
    build: () => ({
      server: { cert: serverLeaf({ key: kit.rsaKey, ku: ["keyEncipherment"] }) },
      client: { cert: clientLeaf() },
    }),
  },
  {
    name: "ok/server-ku-keyencipherment-rsa-tls1.2",
    maxVersion: "TLSv1.2",
    findings: ["key-usage-strict"],
    build: () => ({
      server: { cert: serverLeaf({ key: kit.rsaKey, ku: ["keyEncipherment"] }) },
      client: { cert: clientLeaf() },
    }),
  },
  {
    name: "ok/server-ku-keyagreement-rsa-tls1.2",
    maxVersion: "TLSv1.2",
    findings: ["key-usage-strict"],
    build: () => ({
      server: { cert: serverLeaf({ key: kit.rsaKey, ku: ["keyAgreement"] }) },
      client: { cert: clientLeaf() },
    }),
  },
  {
    name: "ok/client-ku-keyagreement-ecdsa",
    findings: ["key-usage-strict"],
    build: () => ({ server: { cert: serverLeaf() }, client: { cert: clientLeaf({ ku: ["keyAgreement"] }) } }),
  },
  {
    name: "ok/client-ku-keyagreement-ecdsa-tls1.2",
    maxVersion: "TLSv1.2",
    findings: ["key-usage-strict"],
    build: () => ({ server: { cert: serverLeaf() }, client: { cert: clientLeaf({ ku: ["keyAgreement"] }) } }),
  },
  // Without any of digitalSignature, keyEncipherment, keyAgreement, OpenSSL's sslserver purpose refuses an RSA server too.
  {
    name: "fail/server-ku-contentcommitment-rsa",
    error: "INVALID_PURPOSE",
    findings: ["key-usage"],
    atClient: ["conn-server-usage"],
    build: () => ({
      server: { cert: serverLeaf({ key: kit.rsaKey, ku: ["contentCommitment"] }) },
      client: { cert: clientLeaf() },
    }),
  },
  // ── signatures and extensions ─────────────────────────────────────────────────────────
  // Before the fix in chain.ts, check judged these connections ok and reported the defect only on the certificate.
  {
    name: "fail/server-signed-with-sha1",
    error: "ERR_SSL_CA_MD_TOO_WEAK",
    findings: ["weak-signature"],
    atServer: ["conn-server-untrusted"],
    ownCertificate: SHA1,
    x509Accepts: SHA1_VERIFY,
    build: () => ({ server: { cert: serverLeaf({ hash: "sha1" }) }, client: { cert: clientLeaf() } }),
  },
  {
    name: "fail/client-signed-with-sha1",
    error: "ERR_SSL_CA_MD_TOO_WEAK",
    atClient: ["conn-client-untrusted"],
    ownCertificate: SHA1,
    x509Accepts: SHA1_VERIFY,
    build: () => ({ server: { cert: serverLeaf() }, client: { cert: clientLeaf({ hash: "sha1" }) } }),
  },
  {
    name: "fail/intermediate-signed-with-sha1",
    error: "ERR_SSL_CA_MD_TOO_WEAK",
    atServer: ["conn-server-untrusted"],
    ownCertificate: SHA1,
    x509Accepts: SHA1_VERIFY,
    build: () => ({
      server: { cert: serverLeaf({ issuer: kit.sha1Inter }), chain: [kit.sha1Inter] },
      client: { cert: clientLeaf() },
    }),
  },
  // An anchor's self-signature is never checked: a SHA-1 root still works (OpenSSL, Go).
  {
    name: "ok/sha1-self-signed-root",
    build: () => ({
      server: { cert: serverLeaf({ issuer: kit.sha1Root }), bundle: [kit.sha1Root] },
      client: { cert: clientLeaf({ issuer: kit.sha1Root }), bundle: [kit.sha1Root] },
    }),
  },
  {
    name: "fail/server-unknown-critical-extension",
    error: "UNSPECIFIED",
    findings: ["critical-extension"],
    opensslSays: "unhandled critical extension",
    atClient: ["conn-server-untrusted"],
    build: () => ({ server: { cert: serverLeaf({ extra: [CRITICAL] }) }, client: { cert: clientLeaf() } }),
  },
  {
    name: "fail/client-unknown-critical-extension",
    error: "UNSPECIFIED",
    findings: ["critical-extension"],
    opensslSays: "unhandled critical extension",
    atServer: ["conn-client-untrusted"],
    build: () => ({ server: { cert: serverLeaf() }, client: { cert: clientLeaf({ extra: [CRITICAL] }) } }),
  },
  // weak-key is an error on the certificate (OpenSSL at security level 2, Debian's default, refuses
  // RSA-1024), but Node runs OpenSSL at level 1 and Go accepts 1024 bits: the connection works.
  {
    name: "ok/rsa-1024-leaf",
    findings: ["weak-key"],
    build: () => ({ server: { cert: serverLeaf({ key: newKey("rsa-1024") }) }, client: { cert: clientLeaf() } }),
  },
  // ── files ─────────────────────────────────────────────────────────────────────────────────
  {
    name: "fail/server-key-mismatch",
    error: "ERR_OSSL_X509_KEY_VALUES_MISMATCH",
    findings: ["key-mismatch"],
    atServer: ["conn-missing"],
    build: () => ({ server: { cert: serverLeaf(), key: newKey() }, client: { cert: clientLeaf() } }),
  },
  {
    name: "fail/client-key-mismatch",
    error: "ERR_OSSL_X509_KEY_VALUES_MISMATCH",
    atClient: ["conn-missing"],
    build: () => ({ server: { cert: serverLeaf() }, client: { cert: clientLeaf(), key: newKey() } }),
  },
  {
    name: "fail/client-bundle-missing",
    error: "ENOENT",
    findings: ["bundle-missing"],
    atClient: ["conn-missing"],
    build: () => ({ server: { cert: serverLeaf() }, client: { cert: clientLeaf(), bundle: null } }),
  },
  {
    name: "fail/server-bundle-missing",
    error: "ENOENT",
    atServer: ["conn-missing"],
    build: () => ({ server: { cert: serverLeaf(), bundle: null }, client: { cert: clientLeaf() } }),
  },
];

/** Written is one end's files on disk. */
interface Written {
  cert: string;
  key: string;
  ca: string;
  hasChain: boolean;
}

function writeEnd(dir: string, end: End, f: EndFiles): Written {
  mkdirSync(dir, { recursive: true });
  const w = {
    cert: path.join(dir, `${end}.pem`),
    key: path.join(dir, `${end}-key.pem`),
    ca: path.join(dir, "ca.pem"),
    hasChain: (f.chain ?? []).length > 0,
  };
  writeFileSync(w.cert, f.cert.pem + (f.chain ?? []).map((c) => c.pem).join(""));
  writeFileSync(w.key, (f.key ?? f.cert.key).pem, { mode: 0o600 });
  const bundle = f.bundle === undefined ? [kit.ca] : f.bundle;
  if (bundle) writeFileSync(w.ca, bundle.map((c) => c.pem).join(""));
  return w;
}

function writeManifest(dir: string, files: Record<End, Written>, usage: Record<End, Usage>, address: string): string {
  const svc = (end: End, extra: string) =>
    `  ${end}:\n    usage: ${usage[end]}\n${extra}    files: { cert: ${JSON.stringify(files[end].cert)}, key: ${JSON.stringify(files[end].key)}, ca: ${JSON.stringify(files[end].ca)} }\n`;
  const text = [
    "version: 1",
    "cluster: hs",
    'identity: { uri: "spiffe://{cluster}.local/{role}/{name}" }',
    "services:",
    svc("client", "") + svc("server", `    addresses: [${JSON.stringify(address)}]\n`),
    "connections:",
    `  - { from: client, to: server, address: ${JSON.stringify(address)} }`,
    "",
  ].join("\n");
  const file = path.join(dir, "mtlskit.yaml");
  writeFileSync(file, text);
  return file;
}

/** SIDE_OF says which end refuses for a cause; conn-validity and conn-missing can be either. */
const SIDE_OF: Partial<Record<Code, End>> = {
  "conn-server-untrusted": "client",
  "conn-server-usage": "client",
  "conn-address": "client",
  "conn-client-untrusted": "server",
  "conn-client-usage": "server",
};

/**
 * holderOf names the end whose certificate a cause is about: the server's for conn-server-* and
 * conn-address, the client's for conn-client-*, and for conn-validity the peer of the end refusing.
 */
function holderOf(code: Code, refusing: End): End {
  if (code.startsWith("conn-server") || code === "conn-address") return "server";
  if (code.startsWith("conn-client")) return "client";
  return refusing === "client" ? "server" : "client";
}

/** VERIFIED: causes an X.509 verifier decides (not conn-missing: no certificate or bundle to judge). */
const VERIFIED = new Set<Code>([
  "conn-server-untrusted",
  "conn-server-usage",
  "conn-client-untrusted",
  "conn-client-usage",
  "conn-validity",
  "conn-address",
]);

const show = (h: HandshakeResult) =>
  h.ok
    ? `ok (${h.protocol})`
    : `fails: server ${h.server.ok ? "ok" : `${h.server.own ? "refuses" : "hears"} ${h.server.error}`}; client ${h.client.ok ? "ok" : `${h.client.own ? "refuses" : "hears"} ${h.client.error}`}`;

describe("check agrees with real TLS handshakes", () => {
  before(() => {
    const ca = forge({ ca: true, cn: "Handshake CA" });
    const inter = forge({ ca: { pathLen: 0 }, cn: "Handshake Intermediate", issuer: ca });
    const expiredFrom = daysFromNow(-400);
    kit = {
      ca,
      other: forge({ ca: true, cn: "Other CA" }),
      twin: forge({ ca: true, cn: "Handshake CA" }),
      rsaCa: forge({ ca: true, cn: "Handshake RSA CA", key: newKey("rsa-2048") }),
      rsaKey: newKey("rsa-2048"),
      edCa: forge({ ca: true, cn: "Handshake Ed25519 CA", key: newKey("ed25519") }),
      expiredCa: forge({ ca: true, cn: "Expired CA", notBefore: expiredFrom, notAfter: daysFromNow(-1) }),
      inter,
      subCa: forge({ ca: true, cn: "Handshake Sub CA", issuer: inter }),
      noSign: forge({ ca: true, cn: "No keyCertSign Intermediate", issuer: ca, ku: ["digitalSignature", "cRLSign"] }),
      clientOnly: forge({ ca: true, cn: "clientAuth-only Intermediate", issuer: ca, eku: ["clientAuth"] }),
      sha1Inter: forge({ ca: true, cn: "SHA-1 Intermediate", issuer: ca, hash: "sha1" }),
      sha1Root: forge({ ca: true, cn: "SHA-1 Root", hash: "sha1" }),
    };
  });

  it("the table has at least 25 cases, unique names, and causes on the end that refuses", () => {
    assert.ok(CASES.length >= 25, `${CASES.length} cases`);
    assert.equal(new Set(CASES.map((c) => c.name)).size, CASES.length);
    for (const c of CASES) {
      const works = !c.atClient?.length && !c.atServer?.length;
      assert.equal(c.name.startsWith("ok/"), works, `${c.name}: ok/ exactly when no cause is expected`);
      assert.equal(
        c.name.startsWith("strict/"),
        c.strictOnly !== undefined,
        `${c.name}: strict/ exactly when strictOnly`,
      );
      assert.equal(
        c.error !== undefined,
        c.name.startsWith("fail/"),
        `${c.name}: a failing case names the handshake's error`,
      );
      if (c.ownCertificate) continue;
      for (const end of ["client", "server"] as const) {
        for (const code of (end === "client" ? c.atClient : c.atServer) ?? []) {
          const side = SIDE_OF[code];
          assert.ok(
            side === undefined || side === end,
            `${c.name}: ${code} is refused by the ${side} end, not the ${end} end`,
          );
        }
      }
    }
  });

  for (const c of CASES) {
    it(c.name, async (t) => {
      const dir = path.join(DIR, c.name.replace("/", "-"));
      const address = c.address ?? "127.0.0.1";
      const pki = c.build();
      const files = {
        server: writeEnd(path.join(dir, "server"), "server", pki.server),
        client: writeEnd(path.join(dir, "client"), "client", pki.client),
      };
      const manifest = loadManifest(
        writeManifest(
          dir,
          files,
          { server: pki.server.usage ?? "server", client: pki.client.usage ?? "client" },
          address,
        ),
      ).manifest;

      const report = checkPki(manifest, undefined);
      const conn = report.connections[0]!;
      const h = await handshake(files.server, files.client, {
        address,
        ...(c.maxVersion ? { maxVersion: c.maxVersion } : {}),
      });
      t.diagnostic(`check: ${conn.ok ? "ok" : `fails (${conn.causes.join(", ")})`}; handshake: ${show(h)}`);

      const expected = [...(c.atClient ?? []), ...(c.atServer ?? [])];
      assert.deepEqual(
        [...conn.causes].sort(),
        [...new Set(expected)].sort(),
        `check's causes; findings:\n${report.findings.map((f) => `${f.code}: ${f.message}`).join("\n")}`,
      );
      if (c.strictOnly) {
        assert.equal(conn.ok, false, "check refuses (strictOnly)");
        // The disagreement is said, not hidden: the finding names who would still connect.
        if (c.name === "strict/cn-only-dialed-by-name")
          assert.match(
            report.findings.find((f) => f.code === "conn-address")!.message,
            /Node and OpenSSL would still connect by falling back to the CN/,
          );
        assert.equal(h.ok, true, `the handshake succeeds: the deliberate disagreement (${c.strictOnly}); ${show(h)}`);
      } else {
        assert.equal(h.ok, conn.ok, `handshake ${show(h)} vs check ${conn.ok ? "ok" : conn.causes.join(", ")}`);
        // The end that fails on its own (not by hearing the peer's alert) is the end check blames.
        for (const end of ["client", "server"] as const) {
          const blamed = ((end === "client" ? c.atClient : c.atServer) ?? []).length > 0;
          assert.equal(
            h[end].own,
            blamed,
            `the ${end} end ${blamed ? "must" : "must not"} refuse on its own: ${show(h)}`,
          );
          if (blamed) assert.equal(h[end].error, c.error, `the ${end} end's reason`);
        }
      }

      for (const code of c.findings ?? [])
        assert.ok(
          report.findings.some((f) => f.code === code),
          `check reports ${code} on a certificate`,
        );
      for (const f of report.findings.filter((x) => x.code === "key-usage-strict")) {
        assert.equal(f.severity, "warning");
        assert.match(
          f.message,
          /GnuTLS .* Java .*refuse it.*OpenSSL .*Go accept it|GnuTLS server refuses it.*Java; OpenSSL .*Go accept it/,
        );
        assert.match(f.fix, /add digitalSignature to its keyUsage/);
        assert.doesNotMatch(f.fix, /serverAuth|clientAuth/);
      }

      // openssl verify, the third judge, on every certificate check refuses for a verifiable cause:
      // the verifier's bundle, the holder's file (its intermediates as untrusted), the holder's purpose.
      for (const end of ["client", "server"] as const) {
        for (const code of (end === "client" ? c.atClient : c.atServer) ?? []) {
          if (!VERIFIED.has(code)) continue;
          const holder = holderOf(code, end);
          const verifier: End = holder === "server" ? "client" : "server";
          const name =
            code === "conn-address" ? (isIP(address) ? { verifyIp: address } : { verifyHostname: address }) : {};
          const v = opensslVerify({
            caFile: files[verifier].ca,
            certFile: files[holder].cert,
            ...(files[holder].hasChain ? { untrusted: files[holder].cert } : {}),
            purpose: holder === "server" ? "sslserver" : "sslclient",
            ...name,
          });
          const accepts = c.strictOnly !== undefined || c.x509Accepts !== undefined;
          assert.equal(
            v.ok,
            accepts,
            `openssl verify of ${holder}'s certificate for ${code} ${accepts ? "accepts it" : "refuses it"}: ${v.output}`,
          );
          if (c.opensslSays) assert.match(v.output, new RegExp(c.opensslSays));
        }
      }
    });
  }
});
