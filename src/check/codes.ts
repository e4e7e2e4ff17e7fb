/**
 * CODES: the one table of finding codes `mtlskit check` reports. Codes are stable: scripts,
 * dashboards and `explain` refer to them, so a code is never renamed or reused; a retired code
 * stays here marked as such. `docs/checks.md` is generated from this table (gen-docs.ts) and a
 * test keeps the two in sync.
 *
 * Severity decides the exit code: an `error` means a handshake will fail or a key is exposed;
 * a `warning` means something will break later (renewal due, CA expiring) or a strict peer may
 * refuse what a lenient one accepts.
 */

/** Severity of a finding: errors fail `check` (exit 1), warnings are reported only, info states a fact that is no defect. */
export type Severity = "error" | "warning" | "info";

/** Scope says what a code is about: one certificate, one deployment of files, or one connection. */
export type Scope = "certificate" | "ca" | "deployment" | "connection";

/** CodeInfo documents one finding code. */
export interface CodeInfo {
  severity: Severity;
  scope: Scope;
  /** title is a short noun phrase for tables. */
  title: string;
  /** why explains what breaks and which peers refuse it, for docs and `explain`. */
  why: string;
}

/** CODES is the table of every finding code. */
export const CODES = {
  // ── certificates ────────────────────────────────────────────────────────────────────────────
  "cert-missing": {
    severity: "error",
    scope: "certificate",
    title: "certificate file missing or unreadable",
    why: "A service cannot start TLS without its certificate.",
  },
  "cert-malformed": {
    severity: "error",
    scope: "certificate",
    title: "certificate file does not parse",
    why: "The file is not PEM, is truncated, or holds something else than a certificate; every TLS stack refuses to load it.",
  },
  "chain-incomplete": {
    severity: "error",
    scope: "certificate",
    title: "intermediate CA missing from the certificate file",
    why: "Bundles hold only the root, so a peer needs the intermediate from the certificate file, after the leaf: without it OpenSSL says `unable to get local issuer certificate` (or `unable to verify the first certificate`), Go `x509: certificate signed by unknown authority`, GnuTLS `The certificate issuer is unknown`.",
  },
  "chain-order": {
    severity: "error",
    scope: "certificate",
    title: "certificate file does not start with the leaf",
    why: "OpenSSL and Go take the first certificate of the file as the service's own: with an intermediate first, the service presents the intermediate, whose key it does not hold (`key values mismatch`, `private key does not match public key`).",
  },
  "key-missing": {
    severity: "error",
    scope: "certificate",
    title: "private key missing or unreadable",
    why: "A service cannot prove it holds the certificate without its private key.",
  },
  "key-encrypted": {
    severity: "warning",
    scope: "certificate",
    title: "private key is encrypted",
    why: "check cannot compare it with the certificate, and most services cannot load it: Go's tls.LoadX509KeyPair, NATS, etcd and Node without a passphrase refuse it (Node: `error:1E08010C:DECODER routines::unsupported`, OpenSSL: `bad decrypt`).",
  },
  "key-mismatch": {
    severity: "error",
    scope: "certificate",
    title: "private key does not match the certificate",
    why: "The TLS library refuses the pair at load time (OpenSSL: `key values mismatch`; Go: `private key does not match public key`).",
  },
  untrusted: {
    severity: "error",
    scope: "certificate",
    title: "does not chain to the trust bundle",
    why: "Peers that trust the bundle reject it: Go `x509: certificate signed by unknown authority`, OpenSSL `unable to get local issuer certificate`, or `unable to verify the first certificate` when the peer sent only its leaf (nginx, curl).",
  },
  "bad-signature": {
    severity: "error",
    scope: "certificate",
    title: "signature does not verify",
    why: 'An issuer with the right name but another key signed it (a CA re-created with the same name), or the file was altered. OpenSSL 3 and GnuTLS match issuers by key identifier too, so they report the issuer as unknown (`unable to get local issuer certificate`, `The certificate issuer is unknown`); Go tries the same-named CA: `x509: certificate signed by unknown authority (possibly because of "x509: ECDSA verification failure" ...)`; `certificate signature failure` when the key identifiers match.',
  },
  expired: {
    severity: "error",
    scope: "certificate",
    title: "expired",
    why: "Every peer rejects it: `x509: certificate has expired or is not yet valid`, OpenSSL `certificate has expired`.",
  },
  "not-yet-valid": {
    severity: "error",
    scope: "certificate",
    title: "not yet valid",
    why: "Its notBefore is in the future: a clock is wrong or the certificate was issued with a future date.",
  },
  "renewal-due": {
    severity: "warning",
    scope: "certificate",
    title: "inside its renewal window",
    why: "It expires within renewBefore; `mtlskit apply` re-issues it.",
  },
  "clock-skew": {
    severity: "warning",
    scope: "certificate",
    title: "notBefore too recent for clock skew",
    why: "A peer whose clock runs a few minutes behind sees it as not yet valid.",
  },
  "eku-server": {
    severity: "error",
    scope: "certificate",
    title: "cannot serve: no serverAuth",
    why: "A certificate presented by a server needs extendedKeyUsage serverAuth: Go `x509: certificate specifies an incompatible key usage`, OpenSSL 3 `unsuitable certificate purpose` (1.1: `unsupported`).",
  },
  "eku-client": {
    severity: "error",
    scope: "certificate",
    title: "cannot connect: no clientAuth",
    why: "A certificate presented by a client needs extendedKeyUsage clientAuth: the server answers `tls: bad certificate` and logs `incompatible key usage`.",
  },
  "eku-absent": {
    severity: "warning",
    scope: "certificate",
    title: "no extendedKeyUsage",
    why: "Without the extension every purpose is allowed, which is more than the certificate's role; name serverAuth and/or clientAuth.",
  },
  "key-usage": {
    severity: "error",
    scope: "certificate",
    title: "keyUsage lacks digitalSignature",
    why: "TLS signs the handshake with the leaf key (RFC 8446 4.4.2.2). OpenSSL refuses a client certificate without digitalSignature or keyAgreement, a server certificate without digitalSignature, keyEncipherment or keyAgreement (`unsuitable certificate purpose`), and has no TLS 1.2 cipher suite for an ECDSA server without digitalSignature (`no shared cipher`); GnuTLS and Java refuse all of these. Go does not check keyUsage (golang/go#40100).",
  },
  "key-usage-strict": {
    severity: "warning",
    scope: "certificate",
    title: "keyUsage lacks digitalSignature (strict peers refuse)",
    why: "An RSA server certificate with keyEncipherment or keyAgreement, or a client certificate with keyAgreement, but without digitalSignature: OpenSSL (so Node, nginx, PostgreSQL) and Go accept it in TLS 1.2 and 1.3, while GnuTLS (`Key usage violation in certificate has been detected`) and Java (`KeyUsage does not allow digital signatures`) refuse it in both. Add digitalSignature before such a peer appears.",
  },
  "key-usage-extra": {
    severity: "warning",
    scope: "certificate",
    title: "keyUsage has bits the key cannot use",
    why: "keyEncipherment or keyAgreement on a key type that cannot do them: harmless for most peers, refused by strict ones.",
  },
  "san-missing": {
    severity: "error",
    scope: "certificate",
    title: "declared address not in SANs",
    why: "A peer dialing that address fails hostname verification: Go `x509: certificate is valid for X, not Y` or `doesn't contain any IP SANs`.",
  },
  "san-ip-as-dns": {
    severity: "error",
    scope: "certificate",
    title: "IP address written as a DNS SAN",
    why: "Clients compare an IP only with IP SANs; a DNS SAN spelling an IP never matches (`doesn't contain any IP SANs`).",
  },
  "cn-not-san": {
    severity: "warning",
    scope: "certificate",
    title: "CN is not a SAN",
    why: "Go (since 1.15) and mtlskit's library ignore the CN for names; a peer dialing the CN fails unless it is also a SAN.",
  },
  "identity-count": {
    severity: "error",
    scope: "certificate",
    title: "not exactly one identity URI",
    why: "Peer identity is the single URI SAN (SPIFFE X509-SVID rule); none or several make identity-based authorization refuse the peer.",
  },
  "identity-mismatch": {
    severity: "error",
    scope: "certificate",
    title: "identity URI differs from the manifest",
    why: "Authorization by identity refuses the peer: the URI SAN is not what the manifest's identity template renders for this service.",
  },
  "leaf-is-ca": {
    severity: "error",
    scope: "certificate",
    title: "leaf is a CA or may sign certificates",
    why: "A service certificate with cA=true or keyCertSign can mint certificates for anyone the bundle trusts; Go refuses CA certificates as leaves of a TLS chain in some paths.",
  },
  "weak-key": {
    severity: "error",
    scope: "certificate",
    title: "weak or unsupported key",
    why: "RSA below 2048 bits is refused by OpenSSL at security level 2 (the system default of Debian 12, Ubuntu 22.04 and RHEL 9), by Java and by browsers, and NIST disallowed it after 2013; Go and Node's own default accept it. RSA above 8192 bits is refused by Go's crypto/tls since Go 1.21 (`tls: server sent certificate containing RSA key larger than 8192 bits`, CVE-2023-29409). An unusual curve is refused by every TLS stack.",
  },
  "weak-signature": {
    severity: "error",
    scope: "certificate",
    title: "weak signature algorithm",
    why: "SHA-1 and MD5 signatures are refused by Go (since 1.18) and OpenSSL 3 at security level 1 and above.",
  },
  serial: {
    severity: "warning",
    scope: "certificate",
    title: "serial not positive or under 64 bits",
    why: "RFC 5280 requires a positive serial; short serials are predictable (CA/B BR 7.1 asks for 64 random bits).",
  },
  "key-ids": {
    severity: "warning",
    scope: "certificate",
    title: "subject or authority key identifier missing",
    why: "Chain building with several CAs of the same name (a CA rollover) relies on AKI/SKI.",
  },
  "critical-extension": {
    severity: "error",
    scope: "certificate",
    title: "unknown critical extension",
    why: "A verifier must refuse a certificate with a critical extension it does not understand: Go `x509: unhandled critical extension`, OpenSSL `unhandled critical extension`.",
  },
  "outlives-ca": {
    severity: "warning",
    scope: "certificate",
    title: "outlives its CA",
    why: "The certificate stops working when the CA expires, before its own notAfter.",
  },
  // ── CAs and trust bundles ──────────────────────────────────────────────────────────────────
  "ca-expired": {
    severity: "error",
    scope: "ca",
    title: "CA expired",
    why: "Every certificate it signed is rejected: `certificate has expired or is not yet valid`.",
  },
  "ca-expiring": {
    severity: "warning",
    scope: "ca",
    title: "CA expires soon",
    why: "It expires before the certificates it signs can be renewed; plan a CA rollover.",
  },
  "intermediate-due": {
    severity: "warning",
    scope: "ca",
    title: "intermediate CA due for renewal",
    why: "mtlskit's intermediate (ca.intermediate) is inside its renewal window: the next apply re-signs it with the root's key (`apply --ca-key FILE` when that key is offline) and re-issues the services under it; no bundle changes. Left alone it expires, and every certificate it signed is refused (`certificate has expired`).",
  },
  "ca-key-offline": {
    severity: "info",
    scope: "ca",
    title: "CA key kept offline",
    why: "Not a defect: the CA's key is not in the PKI directory (`mtlskit ca offline`, or ca.import without a key). Plan, check, status, export and metrics do not need it; apply asks for it with `--ca-key FILE` only when something must be signed by it.",
  },
  "ca-not-ca": {
    severity: "error",
    scope: "ca",
    title: "trust anchor is not a CA",
    why: "A bundle entry without basicConstraints cA=true (or without keyCertSign) cannot issue certificates; verifiers ignore or refuse it.",
  },
  "ca-key-usage": {
    severity: "warning",
    scope: "ca",
    title: "CA without keyUsage",
    why: "RFC 5280 4.2.1.3 requires keyUsage (keyCertSign) on a CA; `openssl verify -x509_strict` refuses it (`CA cert does not include key usage extension`), Go and default OpenSSL accept it. `openssl req -x509` without a keyUsage line makes such roots.",
  },
  // ── revocation (the CA's CRL, DIR/ca/crl.pem) ───────────────────────────────────────────────
  revoked: {
    severity: "error",
    scope: "certificate",
    title: "certificate revoked, still deployed",
    why: "The CA's CRL lists the certificate's serial: every peer that checks the CRL (nginx ssl_crl, PostgreSQL ssl_crl_file, etcd --client-crl-file, the service library's crl, `openssl verify -crl_check`) refuses it (`certificate revoked`). `mtlskit apply` re-issues a revoked managed service.",
  },
  "crl-expired": {
    severity: "error",
    scope: "ca",
    title: "CRL past its nextUpdate",
    why: "A server that checks a CRL past its nextUpdate refuses every client of that CA, revoked or not (OpenSSL: `CRL has expired`, nginx: `client SSL certificate verify error: (12:CRL has expired)`). apply re-signs the CRL when half its lifetime has passed: run it on a timer.",
  },
  "crl-untrusted": {
    severity: "error",
    scope: "ca",
    title: "CRL not signed by the CA",
    why: "A CRL whose issuer is not the CA, or whose signature the CA's key does not verify, is refused by OpenSSL (`CRL signature failure`, `unable to get certificate CRL`): servers that check it refuse every client.",
  },
  // ── deployments ─────────────────────────────────────────────────────────────────────────────
  "key-mode": {
    severity: "error",
    scope: "deployment",
    title: "private key readable by others",
    why: "A key readable by group or others may be copied; keys must be mode 0600.",
  },
  "key-owner": {
    severity: "error",
    scope: "deployment",
    title: "private key has the wrong owner",
    why: "The service user cannot read its key, or another user can.",
  },
  "ca-key-exposed": {
    severity: "error",
    scope: "deployment",
    title: "CA private key next to service files",
    why: "Whoever can read a service's folder can mint certificates for the whole cluster.",
  },
  "bundle-missing": {
    severity: "error",
    scope: "deployment",
    title: "trust bundle missing or unreadable",
    why: "A service without its ca.pem cannot verify any peer.",
  },
  "dir-symlink": {
    severity: "error",
    scope: "deployment",
    title: "PKI folder is a symbolic link",
    why: "DIR/ca, DIR/services or a service's folder that is a link may lead anywhere: apply would write new private keys wherever it points (issue 11), so apply refuses it.",
  },
  "dir-owner": {
    severity: "error",
    scope: "deployment",
    title: "PKI folder owned by another user",
    why: "A folder of the PKI directory owned by someone other than the directory's owner (or root) lets that user replace the CA or a service's files; apply refuses it.",
  },
  "dir-writable": {
    severity: "error",
    scope: "deployment",
    title: "PKI folder writable by group or others",
    why: "Whoever may write in DIR/ca can swap in their own CA, and the next apply re-issues every certificate under it; in a service's folder they can replace its files. Apply refuses a writable DIR/ca or DIR/services and sets a service's folder back to 0700.",
  },
  "dir-mode": {
    severity: "warning",
    scope: "deployment",
    title: "private PKI folder readable by others",
    why: "DIR/ca and each DIR/services/NAME are 0700 in the layout; a wider mode lets other users list them. Apply sets them back to 0700.",
  },
  "bundle-differs": {
    severity: "warning",
    scope: "deployment",
    title: "services trust different CA sets",
    why: 'The seeds\' rule "root.pem must be identical on every host": a host with another root gets `unknown authority`.',
  },
  // ── connections ─────────────────────────────────────────────────────────────────────────────
  "conn-server-untrusted": {
    severity: "error",
    scope: "connection",
    title: "client does not trust the server's certificate",
    why: "The client's bundle does not lead to the server's issuer: `x509: certificate signed by unknown authority`.",
  },
  "conn-client-untrusted": {
    severity: "error",
    scope: "connection",
    title: "server does not trust the client's certificate",
    why: "The server's bundle does not lead to the client's issuer: the client sees `remote error: tls: bad certificate` or `unknown certificate authority`.",
  },
  "conn-server-usage": {
    severity: "error",
    scope: "connection",
    title: "server's certificate may not serve",
    why: "It lacks serverAuth (Go: `x509: certificate specifies an incompatible key usage`, OpenSSL: `unsuitable certificate purpose`), a CA above it restricts extendedKeyUsage, or its keyUsage lacks digitalSignature (see key-usage for who refuses that).",
  },
  "conn-client-usage": {
    severity: "error",
    scope: "connection",
    title: "client's certificate may not authenticate a client",
    why: "It lacks clientAuth, a CA above it restricts extendedKeyUsage, or its keyUsage lacks digitalSignature: the server refuses it (`unsuitable certificate purpose`) and the client sees `remote error: tls: bad certificate`.",
  },
  "conn-address": {
    severity: "error",
    scope: "connection",
    title: "server's SANs do not cover the dialed address",
    why: "Hostname verification fails: `x509: certificate is valid for X, not Y`, `doesn't contain any IP SANs`, `Hostname/IP does not match certificate's altnames`.",
  },
  "conn-validity": {
    severity: "error",
    scope: "connection",
    title: "a certificate of the connection is not valid now",
    why: "One side presents an expired or not yet valid certificate, or its chain contains one: `certificate has expired or is not yet valid`.",
  },
  "conn-missing": {
    severity: "error",
    scope: "connection",
    title: "a side has no usable certificate",
    why: "The connection cannot be made: a certificate, key or bundle it needs is missing or broken (see that service's findings).",
  },
  // ── CA rotation (mtlskit ca rotate) ─────────────────────────────────────────────────────────
  "rotation-lag": {
    severity: "error",
    scope: "connection",
    title: "a peer one rotation phase behind would refuse the other end",
    why: "During a CA rotation a service that has not reloaded since the last step holds the previous phase's bundle and certificate; when a certificate's issuer is missing from a bundle one phase apart, that peer refuses it (`unknown authority`, `self-signed certificate in certificate chain`). The rotation's steps in order never produce this; steps skipped or forced do.",
  },
  "rotation-unsafe-step": {
    severity: "warning",
    scope: "deployment",
    title: "the next CA rotation step would break a connection",
    why: "Activating before every bundle holds the next CA, retiring while a certificate still chains to the old CA, or either while a reload hook failed: the services that reload first would refuse the others.",
  },
} as const satisfies Record<string, CodeInfo>;

/** Code is a finding code, a key of CODES. */
export type Code = keyof typeof CODES;

/** CODE_NAMES lists every code in table order. */
export const CODE_NAMES = Object.keys(CODES) as Code[];
