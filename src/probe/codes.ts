/**
 * PROBE_CODES: the one table of finding codes `mtlskit probe` reports. They live here, not in
 * check's CODES: check judges files before deployment (its scopes are certificate, ca,
 * deployment, connection, and a test proves a check fixture produces every code), while probe
 * judges what one live endpoint did on the wire. Codes are stable, like check's: scripts refer
 * to them; a code is never renamed or reused.
 *
 * Severity decides the exit code as in check: an `error` fails the probe (exit 1).
 */
import type { Severity } from "../check/index.ts";

/** ProbeCodeInfo documents one probe finding code. */
export interface ProbeCodeInfo {
  severity: Severity;
  /** title is a short noun phrase for tables. */
  title: string;
  /** why says what it means for the service and who would exploit or refuse it. */
  why: string;
}

/** PROBE_CODES is the table of every probe finding code. */
export const PROBE_CODES = {
  "server-accepts-anonymous": {
    severity: "error",
    title: "server accepts clients without a certificate",
    why: "The server completed a handshake with a client that presented no certificate and kept the connection open: anyone who can reach the port talks to it. Mutual TLS needs client certificates required (Node: requestCert and rejectUnauthorized; Go: RequireAndVerifyClientCert; openssl s_server: -Verify).",
  },
  "server-untrusted": {
    severity: "error",
    title: "server's certificate does not chain to our bundle",
    why: "The service's trust bundle does not lead to the issuer of the certificate the server presented: a verifying client fails with `unknown authority` / `unable to get local issuer certificate`.",
  },
  "server-usage": {
    severity: "error",
    title: "server's certificate may not serve",
    why: "It lacks serverAuth, a CA above it restricts extendedKeyUsage, or its keyUsage lacks digitalSignature in a way OpenSSL refuses (see check's key-usage): `incompatible key usage` / `unsuitable certificate purpose` / `no shared cipher`.",
  },
  "server-usage-strict": {
    severity: "warning",
    title: "server's keyUsage lacks digitalSignature (strict clients refuse)",
    why: "An RSA server certificate with keyEncipherment or keyAgreement but without digitalSignature: OpenSSL (Node, curl) and Go clients accept it in TLS 1.2 and 1.3, GnuTLS (`Key usage violation in certificate has been detected`) and Java (`KeyUsage does not allow digital signatures`) clients refuse it.",
  },
  "server-address": {
    severity: "error",
    title: "server's SANs do not cover the dialed address",
    why: "Hostname verification fails: `certificate is valid for X, not Y`, `Hostname/IP does not match certificate's altnames`.",
  },
  "server-validity": {
    severity: "error",
    title: "a certificate the server presented is not valid now",
    why: "The server's certificate, or a CA in its chain, is expired or not yet valid: every verifying client refuses it.",
  },
  "server-expiring": {
    severity: "warning",
    title: "server's certificate expires soon",
    why: "It expires inside its renewal window (30 days when the manifest does not say): rotate it before clients start refusing it.",
  },
  "server-identity": {
    severity: "error",
    title: "server's identity is not the service the manifest puts there",
    why: "The server at this address presents the identity (URI SAN) of another service, of no declared service, or none at all: identity-based authorization on the client refuses it, or the client talks to the wrong service.",
  },
  "connection-undeclared": {
    severity: "warning",
    title: "no declared connection to this address",
    why: "The manifest declares no connection from the probing service to the server found here at this address (or, with --listen, from the connecting client's service to the listening one), so `mtlskit check` never judged it.",
  },
  "client-refused": {
    severity: "error",
    title: "server refused our client certificate",
    why: "The handshake failed on the server's verdict on the certificate we presented (a TLS alert such as unknown_ca, bad_certificate, certificate_required), or the server hung up right after it: the service cannot connect.",
  },
  "handshake-failed": {
    severity: "error",
    title: "TLS handshake failed",
    why: "No TLS session could be made with the service's certificate: a plaintext port, no common version or cipher, or a server that stops answering.",
  },
  "client-anonymous": {
    severity: "error",
    title: "the client presented no certificate",
    why: "With --listen: the client connected without a certificate. A server that requires client certificates (as mutual TLS does) refuses it with `certificate required` / `peer did not return a certificate`.",
  },
  "client-untrusted": {
    severity: "error",
    title: "client's certificate does not chain to the service's bundle",
    why: "With --listen: the listening service's trust bundle does not lead to the issuer of the client's certificate: a verifying server refuses it with `unknown ca` / `unable to get local issuer certificate`.",
  },
  "client-usage": {
    severity: "error",
    title: "client's certificate may not authenticate a client",
    why: "With --listen: it lacks clientAuth, a CA above it restricts extendedKeyUsage, or its keyUsage lacks digitalSignature: a verifying server refuses it with `unsuitable certificate purpose` / `incompatible key usage`.",
  },
  "client-usage-strict": {
    severity: "warning",
    title: "client's keyUsage lacks digitalSignature (strict servers refuse)",
    why: "With --listen: a client certificate with keyAgreement but without digitalSignature: OpenSSL and Go servers accept it, GnuTLS and Java servers refuse it (`Key usage violation in certificate has been detected`).",
  },
  "client-validity": {
    severity: "error",
    title: "a certificate the client presented is not valid now",
    why: "With --listen: the client's certificate, or a CA in its chain, is expired or not yet valid: a verifying server refuses it (`certificate has expired`).",
  },
  "client-identity": {
    severity: "error",
    title: "client's identity is no service of the manifest",
    why: "With --listen: the client's certificate has no single URI SAN, or one that names no declared service: identity-based authorization on the server refuses it.",
  },
} as const satisfies Record<string, ProbeCodeInfo>;

/** ProbeCode is a probe finding code, a key of PROBE_CODES. */
export type ProbeCode = keyof typeof PROBE_CODES;
