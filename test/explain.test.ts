/**
 * `mtlskit explain`: the catalogue's own rules, a table of real error texts (the seed runbooks',
 * and Go, OpenSSL, Node, GnuTLS, PostgreSQL, NATS, gRPC, curl and Java wording from their
 * sources), texts captured from real handshakes on loopback (Node's TLS and the openssl CLI
 * failing in the usual ways), inputs nothing should match, 1 MB inputs against a time budget, and
 * the command through the in-process CLI and a child process reading stdin.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { before, describe, it } from "node:test";
import * as tls from "node:tls";
import { CODES } from "../src/check/codes.ts";
import { explainCommand } from "../src/cli/commands/explain.ts";
import { COMMANDS } from "../src/cli/main.ts";
import type { Io } from "../src/cli/output.ts";
import { CATALOGUE, DETAILS, STACKS, explain, type Detail, type Side } from "../src/explain/index.ts";
import { REPO, runCli, tempDir } from "./helpers/cli.ts";

/** ids lists the recognised entry ids of a text, in order. */
const ids = (text: string) => explain(text).matches.map((m) => m.entry.id);

describe("explain catalogue", () => {
  it("ok/ids are unique lowercase-hyphen words", () => {
    const seen = new Set<string>();
    for (const e of CATALOGUE) {
      assert.match(e.id, /^[a-z0-9]+(?:-[a-z0-9]+)*$/, e.id);
      assert.ok(!seen.has(e.id), `duplicate id ${e.id}`);
      seen.add(e.id);
    }
  });
  it("ok/every code is a finding code of check", () => {
    for (const e of CATALOGUE) for (const c of e.codes) assert.ok(c in CODES, `${e.id}: unknown code ${c}`);
  });
  it("ok/every entry has stacks, patterns, examples and its texts", () => {
    for (const e of CATALOGUE) {
      assert.ok(e.stacks.length > 0 && e.stacks.every((s) => (STACKS as readonly string[]).includes(s)), e.id);
      assert.ok(e.patterns.length > 0 && e.examples.length > 0, e.id);
      for (const t of [e.title, e.cause, e.look, e.fix]) assert.ok(t.trim().length > 0, e.id);
    }
  });
  it("ok/patterns are case-insensitive, not global, bounded, and name only known details", () => {
    for (const e of CATALOGUE) {
      for (const p of e.patterns) {
        assert.equal(p.flags, "i", `${e.id} ${p}: flags must be exactly "i"`);
        // Strip escapes and character classes; what remains must hold no unbounded repetition.
        const bare = p.source.replace(/\\./g, "").replace(/\[[^\]]*\]/g, "");
        assert.doesNotMatch(bare, /[*+]|\{\d+,\}/, `${e.id} ${p}: unbounded repetition`);
        for (const [, name] of p.source.matchAll(/\(\?<([a-zA-Z]+)>/g))
          assert.ok(name! in DETAILS, `${e.id}: group ${name} is not in DETAILS`);
      }
    }
  });
  it("ok/placeholders are known details and sit inside [optional] segments", () => {
    for (const e of CATALOGUE) {
      for (const text of [e.cause, e.look, e.fix, ...Object.values(e.seenBy)]) {
        const outside = text.replace(/\[[^\]]*\]/g, "");
        assert.doesNotMatch(outside, /[{}[\]]/, `${e.id}: placeholder or bracket outside a segment in: ${text}`);
        for (const [, name] of text.matchAll(/\{(\w+)\}/g))
          assert.ok(name! in DETAILS, `${e.id}: {${name}} is not in DETAILS`);
      }
    }
  });
  it("ok/every example is matched by its own entry first, and by no other", () => {
    for (const e of CATALOGUE) {
      for (const example of e.examples) assert.deepEqual(ids(example), [e.id], `example of ${e.id}: ${example}`);
    }
  });
});

/** Case is one error text and what explain must find in it. */
interface Case {
  name: string;
  text: string;
  id: string;
  details?: Partial<Record<Detail, string>>;
  side?: Side;
  /** meaning must match, when given (which side refused what). */
  meaning?: RegExp;
}

const SEED_CASES: Case[] = [
  // ServiceRadar TLS guide (seeds/000): the checker log line and the troubleshooting topics.
  {
    name: "serviceradar: grpc transport line",
    text: "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate specifies an incompatible key usage",
    id: "incompatible-key-usage",
    side: "client",
    meaning: /lacks serverAuth/,
  },
  {
    name: "serviceradar: quoted error",
    text: "certificate specifies an incompatible key usage",
    id: "incompatible-key-usage",
  },
  { name: "serviceradar: topic Unknown Authority Error", text: "Unknown Authority Error", id: "unknown-authority" },
  { name: "serviceradar: topic Missing SANs", text: "Missing SANs", id: "name-mismatch" },
  { name: "serviceradar: topic Gateway IP Mismatch", text: "Gateway IP Mismatch", id: "name-mismatch" },
  {
    name: "serviceradar: topic Certificate Verification Failure",
    text: "Certificate Verification Failure:",
    id: "verify-failed",
  },
  {
    name: "serviceradar: s_client success line",
    text: "Verify: CN=core.serviceradar, IP:192.168.2.23 in SANs, Verify return code: 0 (ok).",
    id: "verify-ok",
  },
  {
    name: "serviceradar: gateway dialed by IP without IP SANs",
    text: "x509: cannot validate certificate for 192.168.2.100 because it doesn't contain any IP SANs",
    id: "no-ip-sans",
    details: { host: "192.168.2.100" },
    side: "client",
  },
  {
    name: "serviceradar: unknown authority",
    text: "x509: certificate signed by unknown authority",
    id: "unknown-authority",
  },
  // Sensu certificate guide (seeds/003): sensuctl and etcd lines, verbatim.
  {
    name: "sensu: sensuctl, one backend expired",
    text: 'Error: GET "/health": Get https://localhost:8080/health?timeout=3: x509: certificate has expired or is not yet valid',
    id: "expired",
    details: { peer: "localhost:8080" },
  },
  {
    name: "sensu: etcd peer refused (JSON log line)",
    text: 'backend-1.example.com | {"component":"etcd","level":"warning","msg":"health check for peer a95ca1cdb0b1fcc3 could not connect: remote error: tls: bad certificate (prober \\"ROUND_TRIPPER_RAFT_MESSAGE\\")","pkg":"rafthttp","time":"2021-06-22T20:40:54Z"}',
    id: "peer-bad-certificate",
    details: { peer: "a95ca1cdb0b1fcc3" },
    side: "client",
    meaning: /the SERVER a95ca1cdb0b1fcc3 refused the certificate this client presented/,
  },
  {
    name: "sensu: sensuctl refresh token EOF",
    text: "Error: GET \"/health\": failed to request new refresh token; client returned 'Post https://localhost:8080/auth/token: EOF'",
    id: "peer-closed",
    details: { peer: "localhost:8080" },
    side: "client",
  },
  {
    name: "sensu: etcd all expired (JSON log line)",
    text: 'backend-2.example.com | {"component":"etcd","level":"warning","msg":"health check for peer 4cc36e198efb22e8 could not connect: x509: certificate has expired or is not yet valid (prober \\"ROUND_TRIPPER_RAFT_MESSAGE\\")","pkg":"rafthttp","time":"2021-06-25T17:49:16Z"}',
    id: "expired",
    details: { peer: "4cc36e198efb22e8" },
    side: "client",
  },
  {
    name: "sensu: sensuctl EOF after restart",
    text: 'Error: GET "/health": Get https://127.0.0.1:8080/health?timeout=3: EOF',
    id: "peer-closed",
    details: { peer: "127.0.0.1:8080" },
  },
  {
    name: "sensu: etcd health table",
    text: "a95ca1cdb0b1fcc3 backend-1.example.com context deadline exceeded false",
    id: "timeout",
  },
  // VirtRigaud mTLS guide (seeds/004): troubleshooting topics and its pinning error.
  { name: "virtrigaud: topic SAN mismatch", text: "SAN mismatch", id: "name-mismatch" },
  { name: "virtrigaud: topic TLS handshake failures", text: "TLS handshake failures", id: "handshake-failed" },
  { name: "virtrigaud: topic Clock skew issues", text: "Clock skew issues", id: "not-yet-valid" },
  { name: "virtrigaud: topic Certificate chain issues", text: "Certificate chain issues", id: "verify-failed" },
  { name: "virtrigaud: pinned fingerprint", text: "certificate fingerprint mismatch", id: "pinned-fingerprint" },
  // Issue 11: the guide's own CA loading (AppendCertsFromPEM returning false) was not recognised.
  {
    name: "virtrigaud: the provider server's panic",
    text: "panic: Failed to parse CA certificate\n\ngoroutine 1 [running]:\nmain.main()\n\t/src/main.go:38 +0x2a5",
    id: "ca-bundle-unparsed",
    side: "startup",
  },
  {
    name: "virtrigaud: the manager's error",
    text: "failed to create provider client: failed to parse CA certificate",
    id: "ca-bundle-unparsed",
    side: "startup",
  },
  {
    name: "virtrigaud: a CA file that cannot be read is file-unreadable, not this",
    text: "panic: Failed to load CA certificate: open /etc/tls/ca.crt: no such file or directory",
    id: "file-unreadable",
  },
];

const SOURCE_CASES: Case[] = [
  // Go crypto/x509 and crypto/tls
  {
    name: "go: name mismatch lists the valid names",
    text: "x509: certificate is valid for 192.168.2.23, core.serviceradar, not 192.168.2.24",
    id: "name-mismatch",
    details: { names: "192.168.2.23, core.serviceradar", host: "192.168.2.24" },
    side: "client",
  },
  {
    name: "go: http client, name mismatch",
    text: 'Get "https://10.0.0.5:8443/metrics": tls: failed to verify certificate: x509: certificate is valid for 10.0.0.4, not 10.0.0.5',
    id: "name-mismatch",
    details: { host: "10.0.0.5", names: "10.0.0.4", peer: "10.0.0.5:8443" },
  },
  {
    name: "go: legacy CN",
    text: "x509: certificate relies on legacy Common Name field, use SANs instead",
    id: "legacy-cn",
  },
  {
    name: "go: unknown authority with a same-name candidate",
    text: 'x509: certificate signed by unknown authority (possibly because of "crypto/rsa: verification error" while trying to verify candidate authority certificate "ServiceRadar CA")',
    id: "bad-signature",
    details: { reason: "crypto/rsa: verification error", authority: "ServiceRadar CA" },
  },
  {
    name: "etcd: zap JSON, escaped quotes, server side",
    text: '{"level":"warn","ts":"2021-06-22T20:40:54.123Z","caller":"embed/config_logging.go:169","msg":"rejected connection","remote-addr":"10.0.0.2:40844","server-name":"","error":"tls: failed to verify client certificate: x509: certificate signed by unknown authority (possibly because of \\"crypto/ecdsa: verification error\\" while trying to verify candidate authority certificate \\"etcd-ca\\")"}',
    id: "bad-signature",
    details: { authority: "etcd-ca", reason: "crypto/ecdsa: verification error", peer: "10.0.0.2:40844" },
    side: "server",
  },
  {
    name: "etcd: client certificate without clientAuth",
    text: 'rejected connection from "192.168.159.3:46646" (error "tls: failed to verify client\'s certificate: x509: certificate specifies an incompatible key usage", ServerName "")',
    id: "incompatible-key-usage",
    details: { peer: "192.168.159.3:46646" },
    side: "server",
    meaning: /lacks clientAuth/,
  },
  {
    name: "go: server log, the client refused the server's certificate",
    text: "2024/03/01 10:00:00 http: TLS handshake error from 10.0.0.7:52814: remote error: tls: bad certificate",
    id: "peer-bad-certificate",
    details: { peer: "10.0.0.7:52814" },
    side: "server",
    meaning: /the CLIENT 10\.0\.0\.7:52814 refused the certificate this server presented/,
  },
  {
    name: "go: bare bad certificate: both readings",
    text: "remote error: tls: bad certificate",
    id: "peer-bad-certificate",
    meaning: /If the client logged this: the SERVER .* If the server logged this: the CLIENT/,
  },
  {
    name: "go: peer does not know our CA",
    text: "remote error: tls: unknown certificate authority",
    id: "peer-unknown-ca",
  },
  {
    name: "go: server wants a client certificate",
    text: "remote error: tls: certificate required",
    id: "certificate-required",
    side: "client",
  },
  {
    name: "nats: client without certificate",
    text: "[ERR] 10.0.0.12:53330 - cid:5 - TLS handshake error: tls: client didn't provide a certificate",
    id: "no-client-certificate",
    details: { peer: "10.0.0.12:53330" },
    side: "server",
  },
  {
    name: "nats: wrapper alone",
    text: "[ERR] 10.0.0.12:53330 - cid:5 - TLS handshake error: EOF",
    id: "peer-closed",
    side: "server",
  },
  { name: "go: key pair", text: "tls: private key does not match public key", id: "key-mismatch", side: "startup" },
  { name: "go: negative serial", text: "x509: negative serial number", id: "negative-serial" },
  { name: "go: critical extension", text: "x509: unhandled critical extension", id: "critical-extension" },
  { name: "go: ALPN", text: "remote error: tls: no application protocol", id: "alpn" },
  {
    name: "go: plaintext server",
    text: "tls: first record does not look like a TLS handshake",
    id: "plaintext-mismatch",
  },
  {
    name: "go: expired with times",
    text: "x509: certificate has expired or is not yet valid: current time 2026-11-23T10:25:23Z is after 2026-11-22T10:25:23Z",
    id: "expired",
    details: { now: "2026-11-23T10:25:23Z", notAfter: "2026-11-22T10:25:23Z" },
  },
  {
    name: "go: not yet valid",
    text: "x509: certificate has expired or is not yet valid: current time 2024-03-01T10:00:00Z is before 2024-03-01T10:04:00Z",
    id: "not-yet-valid",
    details: { notBefore: "2024-03-01T10:04:00Z" },
  },
  { name: "go: handshake EOF", text: "transport: authentication handshake failed: EOF", id: "peer-closed" },
  {
    name: "go: file missing",
    text: "failed to load client certificates: open /etc/manager-tls/tls.crt: no such file or directory",
    id: "file-unreadable",
    details: { file: "/etc/manager-tls/tls.crt" },
  },
  // OpenSSL: s_client lines, library error strings of 1.1 and 3.x
  {
    name: "openssl: s_client verify error line",
    text: "verify error:num=20:unable to get local issuer certificate",
    id: "unknown-authority",
    details: { verifyCode: "20" },
  },
  {
    name: "openssl: s_client return code",
    text: "Verify return code: 20 (unable to get local issuer certificate)",
    id: "unknown-authority",
    details: { verifyCode: "20" },
  },
  {
    name: "openssl: s_client expired",
    text: "verify error:num=10:certificate has expired",
    id: "expired",
    details: { verifyCode: "10" },
  },
  {
    name: "openssl 3: verify failed, client side",
    text: "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed",
    id: "verify-failed",
    side: "client",
  },
  {
    name: "openssl 1.1: alert bad certificate",
    text: "140735252136896:error:14094412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:s3_pkt.c:1487:SSL alert number 42",
    id: "peer-bad-certificate",
  },
  {
    name: "openssl: key values mismatch",
    text: "error:05800074:x509 certificate routines::key values mismatch",
    id: "key-mismatch",
  },
  {
    name: "openssl: unsupported purpose (1.1 wording)",
    text: "unsupported certificate purpose",
    id: "incompatible-key-usage",
  },
  { name: "openssl: no peer certificate", text: "no peer certificate available", id: "no-peer-certificate" },
  { name: "openssl: self-signed", text: "self-signed certificate", id: "self-signed" },
  {
    name: "openssl: wrong version number",
    text: "error:0A00010B:SSL routines::wrong version number",
    id: "plaintext-mismatch",
  },
  // Node
  {
    name: "node: altnames, IP",
    text: "Hostname/IP does not match certificate's altnames: IP: 10.0.0.5 is not in the cert's list: 10.0.0.4",
    id: "name-mismatch",
    details: { host: "10.0.0.5", names: "10.0.0.4" },
  },
  { name: "node: altnames code only", text: "Error [ERR_TLS_CERT_ALTNAME_INVALID]", id: "name-mismatch" },
  {
    name: "node: leaf signature",
    text: "Error: unable to verify the first certificate (UNABLE_TO_VERIFY_LEAF_SIGNATURE)",
    id: "unknown-authority",
  },
  { name: "node: depth zero", text: "DEPTH_ZERO_SELF_SIGNED_CERT", id: "self-signed" },
  { name: "node: chain", text: "SELF_SIGNED_CERT_IN_CHAIN", id: "unknown-authority" },
  { name: "node: expired code", text: "CERT_HAS_EXPIRED", id: "expired" },
  // GnuTLS, PostgreSQL, curl, gRPC, Java
  {
    name: "gnutls: issuer unknown",
    text: "The certificate is NOT trusted. The certificate issuer is unknown.",
    id: "unknown-authority",
  },
  {
    name: "postgresql: libpq",
    text: 'psql: error: connection to server at "10.0.0.5", port 5432 failed: SSL error: certificate verify failed',
    id: "verify-failed",
    details: { peer: "10.0.0.5" },
    side: "client",
  },
  {
    name: "postgresql: cert auth",
    text: 'FATAL:  certificate authentication failed for user "grafana"',
    id: "postgres-cert-user",
    details: { user: "grafana" },
    side: "server",
  },
  {
    name: "postgresql: no client certificate",
    text: "FATAL:  connection requires a valid client certificate",
    id: "no-client-certificate",
    side: "server",
  },
  {
    name: "postgresql: host name",
    text: 'server certificate for "db.internal" (and 2 other names) does not match host name "10.0.0.5"',
    id: "name-mismatch",
    details: { names: "db.internal", host: "10.0.0.5" },
  },
  {
    name: "curl: local issuer",
    text: "curl: (60) SSL certificate problem: unable to get local issuer certificate",
    id: "unknown-authority",
    side: "client",
  },
  {
    name: "grpc-js: RST_STREAM",
    text: "Error: 13 INTERNAL: Received RST_STREAM with code 2 triggered by internal client error: Protocol error",
    id: "grpc-unavailable",
  },
  {
    name: "grpc C-core: UNAVAILABLE with the verify failure inside",
    text: "Error: 14 UNAVAILABLE: failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.5:50051: Ssl handshake failed: SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED",
    id: "verify-failed",
  },
  {
    name: "grpc C-core: UNAVAILABLE, plaintext server inside",
    text: "14 UNAVAILABLE: failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:50051: Ssl handshake failed: SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER",
    id: "plaintext-mismatch",
    side: "client",
  },
  {
    name: "grpc: UNAVAILABLE alone",
    text: "rpc error: code = Unavailable desc = connection error",
    id: "grpc-unavailable",
  },
  {
    name: "java: PKIX",
    text: "sun.security.validator.ValidatorException: PKIX path building failed",
    id: "unknown-authority",
  },
  {
    name: "java: IP SAN",
    text: "No subject alternative names matching IP address 10.0.0.5 found",
    id: "name-mismatch",
    details: { host: "10.0.0.5" },
  },
  // Not TLS, but pasted all the same: say so.
  {
    name: "node: connection refused",
    text: "Error: connect ECONNREFUSED 10.0.0.5:8443",
    id: "connection-refused",
    details: { peer: "10.0.0.5:8443" },
  },
  {
    name: "go: no such host",
    text: "dial tcp: lookup core.demo on 127.0.0.53:53: no such host",
    id: "dns-failure",
    details: { host: "core.demo" },
  },
];

/**
 * REVIEW_CASES pin the messages a review found unrecognised (or, for `bad decrypt`, offered only
 * the misleading closest entry bad-signature). Wording from Go crypto/tls (tls.go X509KeyPair,
 * alert.go), OpenSSL 3 reason strings and Node's ERR_OSSL_* / ERR_SSL_* codes, several captured
 * from Node 20 with OpenSSL 3.0 (the handshake suite below makes them again).
 */
const REVIEW_CASES: Case[] = [
  {
    name: "node: OpenSSL 3 cannot decode the key",
    text: "Error: error:1E08010C:DECODER routines::unsupported",
    id: "key-unsupported",
    side: "startup",
    meaning: /loading its TLS files/,
  },
  {
    name: "node: the same with its code",
    text: "ERR_OSSL_UNSUPPORTED: error:1E08010C:DECODER routines::unsupported",
    id: "key-unsupported",
  },
  {
    name: "go: PEM inputs switched",
    text: "tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched",
    id: "pem-swapped",
    side: "startup",
  },
  {
    name: "go: a certificate given as the key",
    text: "tls: found a certificate rather than a key in the PEM for the private key",
    id: "pem-swapped",
  },
  {
    name: "go: no PRIVATE KEY block in the key input",
    text: 'tls: failed to find PEM block with type ending in "PRIVATE KEY" in key input after skipping PEM blocks of the following types: [CERTIFICATE REQUEST]',
    id: "pem-invalid",
  },
  {
    name: "go: no CERTIFICATE block after skipping others",
    text: 'tls: failed to find "CERTIFICATE" PEM block in certificate input after skipping PEM blocks of the following types: [EC PARAMETERS EC PRIVATE KEY]',
    id: "pem-invalid",
  },
  {
    name: "go: key of another type than the certificate's",
    text: "tls: private key type does not match public key type",
    id: "key-mismatch",
    side: "startup",
  },
  {
    name: "go: certificate required, unwrapped from remote error",
    text: "tls: certificate required",
    id: "certificate-required",
    side: "client",
    meaning: /asked for a client certificate and this client sent none/,
  },
  {
    name: "go: unknown certificate authority, unwrapped",
    text: "tls: unknown certificate authority",
    id: "peer-unknown-ca",
  },
  {
    name: "go server: unknown certificate authority from a client",
    text: "http: TLS handshake error from 10.0.0.7:52814: tls: unknown certificate authority",
    id: "peer-unknown-ca",
    side: "server",
    details: { peer: "10.0.0.7:52814" },
  },
  { name: "node: ee key too small, code only", text: "ERR_SSL_EE_KEY_TOO_SMALL", id: "weak-key" },
  { name: "node: ee key too small", text: "Error: error:0A00018F:SSL routines::ee key too small", id: "weak-key" },
  { name: "node: ca md too weak, code only", text: "ERR_SSL_CA_MD_TOO_WEAK", id: "weak-signature" },
  { name: "openssl: ca md too weak", text: "error:0A00018E:SSL routines::ca md too weak", id: "weak-signature" },
  {
    name: "openssl: bad decrypt is a wrong passphrase, not a bad signature",
    text: "error:1C800064:Provider routines::bad decrypt",
    id: "key-encrypted",
    side: "startup",
  },
  {
    name: "openssl 1.1: bad decrypt",
    text: "140374473037632:error:06065064:digital envelope routines:EVP_DecryptFinal_ex:bad decrypt:evp_enc.c:610:",
    id: "key-encrypted",
  },
  {
    name: "openssl CLI: unable to load private key, then the reason",
    text: "unable to load Private Key\n140374473037632:error:06065064:digital envelope routines:EVP_DecryptFinal_ex:bad decrypt:evp_enc.c:610:",
    id: "key-encrypted",
  },
  { name: "openssl CLI: unable to load private key alone", text: "unable to load Private Key", id: "key-load-failed" },
  {
    name: "openssl 3 CLI: could not read the key",
    text: "Could not read private key from /etc/mtls/services/api/key.pem",
    id: "key-load-failed",
    details: { file: "/etc/mtls/services/api/key.pem" },
  },
  {
    name: "nginx: PEM_read_bio_PrivateKey with no start line",
    text: 'nginx: [emerg] cannot load certificate key "/etc/nginx/tls/key.pem": PEM_read_bio_PrivateKey() failed (SSL: error:0480006C:PEM routines::no start line:Expecting: ANY PRIVATE KEY)',
    id: "pem-invalid",
  },
  {
    name: "nginx: PEM_read_bio_PrivateKey with a wrong passphrase",
    text: 'nginx: [emerg] cannot load certificate key "/etc/nginx/tls/key.pem": PEM_read_bio_PrivateKey() failed (SSL: error:1C800064:Provider routines::bad decrypt)',
    id: "key-encrypted",
  },
  {
    name: "nginx: PEM_read_bio_PrivateKey alone",
    text: 'nginx: [emerg] cannot load certificate key "/etc/nginx/tls/key.pem": PEM_read_bio_PrivateKey() failed',
    id: "key-load-failed",
    details: { file: "/etc/nginx/tls/key.pem" },
  },
  {
    name: "nginx: a missing certificate file",
    text: 'nginx: [emerg] cannot load certificate "/etc/nginx/tls/cert.pem": BIO_new_file() failed (SSL: error:80000002:system library::No such file or directory)',
    id: "file-unreadable",
    details: { file: "/etc/nginx/tls/cert.pem" },
  },
];

function checkCase(c: Case, text = c.text): void {
  const matches = explain(text).matches;
  assert.equal(matches[0]?.entry.id, c.id, `${c.name}: got ${matches.map((m) => m.entry.id).join(", ") || "nothing"}`);
  const m = matches[0]!;
  for (const [k, v] of Object.entries(c.details ?? {}))
    assert.equal(m.details[k as Detail], v, `${c.name}: detail ${k}`);
  if (c.side !== undefined) assert.equal(m.side, c.side, `${c.name}: side`);
  if (c.meaning !== undefined) assert.match(m.meaning ?? "", c.meaning, `${c.name}: meaning`);
  for (const t of [m.cause, m.look, m.fix, m.meaning ?? ""])
    assert.doesNotMatch(t, /[{}[\]]/, `${c.name}: unfilled template in ${t}`);
}

describe("explain: real messages", () => {
  for (const c of [...SEED_CASES, ...SOURCE_CASES, ...REVIEW_CASES]) it(`ok/${c.name}`, () => checkCase(c));
  it("ok/each review case is the only entry matched: no second, misleading reading", () => {
    for (const c of REVIEW_CASES) assert.deepEqual(ids(c.text), [c.id], c.name);
  });

  it("ok/connection refused says it is not a TLS problem", () => {
    const [m] = explain("dial tcp 192.168.2.23:50052: connect: connection refused").matches;
    assert.equal(m?.entry.id, "connection-refused");
    assert.match(m!.entry.title, /not a TLS problem/);
    assert.deepEqual(m!.entry.codes, []);
  });
  it("ok/details fill the fix: the dialed address to add", () => {
    const [m] = explain("x509: certificate is valid for 10.0.0.4, not 10.0.0.5").matches;
    assert.match(m!.fix, /Add the dialed address 10\.0\.0\.5 to the serving service's services\.NAME\.addresses/);
    assert.match(m!.cause, /it is valid for 10\.0\.0\.4/);
  });
  it("ok/a whole log: each error once, in order, with its line and count", () => {
    const log = [
      "Jun 22 20:40:50 backend-1 sensu-backend[1]: starting",
      'Jun 22 20:40:54 backend-1 sensu-backend[1]: {"msg":"health check for peer a95ca1cdb0b1fcc3 could not connect: remote error: tls: bad certificate"}',
      "Jun 22 20:40:55 backend-1 sensu-backend[1]: x509: certificate has expired or is not yet valid",
      'Jun 22 20:40:56 backend-1 sensu-backend[1]: {"msg":"health check for peer 4cc36e198efb22e8 could not connect: remote error: tls: bad certificate"}',
      "Jun 22 20:40:57 backend-1 sensu-backend[1]: Post https://localhost:8080/auth/token: EOF",
    ].join("\r\n");
    const { matches } = explain(log);
    assert.deepEqual(
      matches.map((m) => [m.entry.id, m.line, m.count]),
      [
        ["peer-bad-certificate", 2, 2],
        ["expired", 3, 1],
      ],
    );
  });
  it("ok/s_client output: the verify error, not the generic failure lines", () => {
    const out = [
      "depth=0 CN = srv",
      "verify error:num=10:certificate has expired",
      "notAfter=Nov 22 10:25:23 2026 GMT",
      "40A795214A7F0000:error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:../ssl/statem/statem_clnt.c:1889:",
      "no peer certificate available",
      "Verification error: certificate has expired",
      "Verify return code: 10 (certificate has expired)",
    ].join("\n");
    const { matches } = explain(out);
    assert.deepEqual(ids(out), ["expired"]);
    assert.equal(matches[0]!.count, 3);
    assert.equal(matches[0]!.details.verifyCode, "10");
  });
  it("ok/ANSI colours are ignored", () => {
    assert.deepEqual(
      ids("\u001b[31mERRO\u001b[0m[0001] x509: certificate signed by \u001b[1munknown\u001b[0m authority"),
      ["unknown-authority"],
    );
  });
});

describe("explain: nothing to recognise", () => {
  it("fail/empty input matches nothing and has nothing close", () => {
    assert.deepEqual(explain(""), { matches: [], closest: [] });
    assert.deepEqual(explain(" \n\t\n"), { matches: [], closest: [] });
  });
  it("fail/gibberish matches nothing and has nothing close", () => {
    assert.deepEqual(explain("qwzx plorfk zzyzx vlimp"), { matches: [], closest: [] });
  });
  it("fail/an unrelated error matches nothing; the closest entries say which words they share", () => {
    const text = "TypeError: Cannot read properties of undefined (reading 'certificate authority')";
    const r = explain(text);
    assert.deepEqual(r.matches, []);
    assert.ok(r.closest.length > 0 && r.closest.length <= 3, `closest: ${r.closest.map((n) => n.entry.id)}`);
    for (const n of r.closest)
      assert.ok(
        n.words.length > 0 && n.words.every((w) => text.toLowerCase().includes(w)),
        `${n.entry.id}: ${n.words}`,
      );
  });
  it("fail/heredoc EOF and prose are not errors", () => {
    assert.deepEqual(
      ids("cat > core-san.cnf << EOF\n[req]\nEOF\nVerify: CN=core.serviceradar, IP:192.168.2.23 in SANs"),
      [],
    );
  });
});

describe("explain: 1 MB inputs", () => {
  const MB = 1 << 20;
  const repeat = (unit: string) => unit.repeat(Math.ceil(MB / unit.length)).slice(0, MB);
  const examples = CATALOGUE.flatMap((e) => e.examples);
  // Prefixes of every pattern's text without its end: each starts a match attempt that must fail fast.
  const chopped = examples.map((e) => e.slice(0, Math.max(1, e.length - 5)));
  const inputs: Record<string, string> = {
    "one letter": "a".repeat(MB),
    "one line of chopped examples": repeat(chopped.join(" ")),
    "lines of chopped examples": repeat(chopped.join("\n") + "\n"),
    "every example, many times": repeat(examples.join("\n") + "\n"),
    "a repeated name-mismatch prefix": repeat("x509: certificate is valid for a, "),
    "EOF after EOF": repeat(": EOF "),
    "escaped JSON": repeat('{"msg":"\\"x\\" remote error: tls: bad '),
    words: repeat("lorem ipsum certificate authority tls x509 handshake "),
  };
  // What this guards against is a pattern that backtracks: quadratic work on 1 MB is minutes of
  // CPU, linear work tens of milliseconds. The bound is on the process's CPU time, not wall time,
  // so a loaded 2-core machine (other test files, other processes) cannot fail it by chance, and
  // it is 10 s, two orders of magnitude above a linear run, so only a real regression crosses it.
  for (const [name, text] of Object.entries(inputs)) {
    it(`ok/${name} takes linear time (under 10 s of CPU)`, () => {
      const t0 = process.cpuUsage();
      explain(text);
      const used = process.cpuUsage(t0);
      const ms = (used.user + used.system) / 1000;
      assert.ok(ms < 10_000, `${name}: ${ms.toFixed(0)} ms of CPU`);
    });
  }
});

// ── real handshakes on loopback ──────────────────────────────────────────────────────────────

const TIMEOUT_MS = 5000;

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: "pipe", timeout: 30_000 });
}

/** makePki writes a CA and certificates with the usual defects into `dir`, with the openssl CLI. */
function makePki(dir: string): void {
  const key = (name: string) =>
    openssl(dir, ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${name}.key`]);
  const selfSigned = (name: string, cn: string) =>
    openssl(dir, [
      "req",
      "-x509",
      "-new",
      "-key",
      `${name}.key`,
      "-out",
      `${name}.pem`,
      "-days",
      "5",
      "-subj",
      `/CN=${cn}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,digitalSignature",
    ]);
  const issue = (name: string, keyName: string, ext: string, days: string) => {
    writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl(dir, ["req", "-new", "-key", `${keyName}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`]);
    openssl(dir, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      days,
      "-extfile",
      `${name}.ext`,
    ]);
  };
  for (const k of ["ca", "other", "srv", "cli"]) key(k);
  selfSigned("ca", "Test CA");
  selfSigned("other", "localhost");
  const SAN = "subjectAltName=DNS:srv.test,IP:127.0.0.2\n";
  issue("server", "srv", `${SAN}extendedKeyUsage=serverAuth\n`, "5");
  issue("clientonly", "srv", `${SAN}extendedKeyUsage=clientAuth\n`, "5");
  // -days -1 puts notAfter a day before notBefore: expired from the start.
  issue("expired", "srv", `${SAN}extendedKeyUsage=serverAuth\n`, "-1");
  issue("client", "cli", "subjectAltName=DNS:cli.test\nextendedKeyUsage=clientAuth\n", "5");
  issue("client-expired", "cli", "subjectAltName=DNS:cli.test\nextendedKeyUsage=clientAuth\n", "-1");
}

interface NodeServer {
  port: number;
  /** errors are `CODE: message` of the server's failed handshakes. */
  errors: string[];
  close(): Promise<void>;
}

async function nodeServer(options: tls.TlsOptions): Promise<NodeServer> {
  const errors: string[] = [];
  const server = tls.createServer({ ...options, handshakeTimeout: TIMEOUT_MS }, (socket) => socket.end("hi\n"));
  server.on("tlsClientError", (e: NodeJS.ErrnoException) => errors.push(`${e.code}: ${e.message}`));
  return { ...(await serve(server)), errors };
}

/**
 * serve listens on 127.0.0.1, port 0. Its close stops listening and destroys what is left without
 * waiting for close's callback: a server whose handshake failed may never count that connection
 * as closed, and the test would end with its promise pending.
 */
async function serve(server: net.Server): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  server.on("connection", (socket: net.Socket) => sockets.add(socket));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const close = async () => {
    server.close();
    for (const s of sockets) s.destroy();
  };
  return { port: (server.address() as net.AddressInfo).port, close };
}

/** nodeClient connects, sends a request, and returns `CODE: message` of the error it got, or "ok". */
function nodeClient(port: number, options: tls.ConnectionOptions): Promise<string> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ...options }, () => socket.write("GET / HTTP/1.0\r\n\r\n"));
    const timer = setTimeout(() => (socket.destroy(), resolve("timeout")), TIMEOUT_MS);
    socket.on(
      "error",
      (e: NodeJS.ErrnoException) => (clearTimeout(timer), socket.destroy(), resolve(`${e.code}: ${e.message}`)),
    );
    socket.on("data", () => (clearTimeout(timer), socket.destroy(), resolve("ok")));
    socket.on("close", () => (clearTimeout(timer), resolve("closed")));
  });
}

/** sClient runs `openssl s_client` against 127.0.0.1:port and returns everything it printed. */
function sClient(port: number, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), TIMEOUT_MS);
    child.on("close", () => (clearTimeout(timer), resolve(out)));
    child.stdin.end("GET / HTTP/1.0\r\n\r\n");
  });
}

/** sServer starts `openssl s_server` requiring client certificates, for one connection; resolves its port and, later, its output. */
async function sServer(dir: string): Promise<{ port: number; output: Promise<string> }> {
  const child = spawn(
    "openssl",
    [
      "s_server",
      "-accept",
      "127.0.0.1:0",
      "-naccept",
      "1",
      "-www",
      "-cert",
      "server.pem",
      "-key",
      "srv.key",
      "-CAfile",
      "ca.pem",
      "-Verify",
      "1",
      "-verify_return_error",
    ],
    {
      cwd: dir,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  const timer = setTimeout(() => child.kill("SIGKILL"), 2 * TIMEOUT_MS);
  const output = new Promise<string>((resolve) => child.on("close", () => (clearTimeout(timer), resolve(out))));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /ACCEPT 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on("close", () => reject(new Error(`s_server exited: ${out}`)));
  });
  return { port, output };
}

describe("explain: messages from real handshakes", () => {
  let dir = "";
  const f = (name: string) => readFileSync(path.join(dir, name));
  before(() => {
    dir = tempDir("mtlskit-explain-");
    makePki(dir);
  });

  /** NodeCase: a server configuration, a client configuration, and what the client's error must be recognised as. */
  const nodeCases: {
    name: string;
    server: () => tls.TlsOptions;
    client: () => tls.ConnectionOptions;
    id: string;
    details?: Partial<Record<Detail, string>>;
  }[] = [
    {
      name: "wrong CA",
      server: () => ({ cert: f("server.pem"), key: f("srv.key") }),
      client: () => ({ ca: f("other.pem"), servername: "srv.test" }),
      id: "unknown-authority",
    },
    {
      name: "wrong CA, chain sent",
      server: () => ({ cert: Buffer.concat([f("server.pem"), f("ca.pem")]), key: f("srv.key") }),
      client: () => ({ ca: f("other.pem"), servername: "srv.test" }),
      id: "unknown-authority",
    },
    {
      name: "self-signed server",
      server: () => ({ cert: f("other.pem"), key: f("other.key") }),
      client: () => ({ servername: "localhost" }),
      id: "self-signed",
    },
    {
      name: "wrong host name",
      server: () => ({ cert: f("server.pem"), key: f("srv.key") }),
      client: () => ({ ca: f("ca.pem"), servername: "other.test" }),
      id: "name-mismatch",
      details: { host: "other.test", names: "DNS:srv.test, IP Address:127.0.0.2" },
    },
    {
      name: "wrong IP",
      server: () => ({ cert: f("server.pem"), key: f("srv.key") }),
      client: () => ({ ca: f("ca.pem") }),
      id: "name-mismatch",
      details: { host: "127.0.0.1", names: "127.0.0.2" },
    },
    {
      name: "expired",
      server: () => ({ cert: f("expired.pem"), key: f("srv.key") }),
      client: () => ({ ca: f("ca.pem"), servername: "srv.test" }),
      id: "expired",
    },
    {
      name: "client-only certificate serving",
      server: () => ({ cert: f("clientonly.pem"), key: f("srv.key") }),
      client: () => ({ ca: f("ca.pem"), servername: "srv.test" }),
      id: "incompatible-key-usage",
    },
    {
      name: "TLS 1.2 server requires a client certificate",
      server: () => ({
        cert: f("server.pem"),
        key: f("srv.key"),
        ca: f("ca.pem"),
        requestCert: true,
        rejectUnauthorized: true,
        maxVersion: "TLSv1.2",
      }),
      client: () => ({ ca: f("ca.pem"), servername: "srv.test" }),
      id: "handshake-failure",
    },
  ];
  for (const c of nodeCases) {
    it(`ok/node client: ${c.name}`, async () => {
      const server = await nodeServer(c.server());
      try {
        const error = await nodeClient(server.port, c.client());
        checkCase({ name: c.name, text: error, id: c.id, ...(c.details ? { details: c.details } : {}) });
      } finally {
        await server.close();
      }
    });
  }

  it("ok/node server: a client without a certificate", async () => {
    const server = await nodeServer({
      cert: f("server.pem"),
      key: f("srv.key"),
      ca: f("ca.pem"),
      requestCert: true,
      rejectUnauthorized: true,
    });
    try {
      await nodeClient(server.port, { ca: f("ca.pem"), servername: "srv.test" });
      await new Promise((r) => setTimeout(r, 100));
      assert.ok(server.errors.length > 0, "the server saw no error");
      checkCase({ name: "no client certificate", text: server.errors.join("\n"), id: "no-client-certificate" });
    } finally {
      await server.close();
    }
  });
  it("ok/node: TLS client to a plaintext server, plaintext client to a TLS server", async () => {
    const plain = await serve(net.createServer((s) => s.end("HTTP/1.1 400 Bad Request\r\n\r\n")));
    try {
      checkCase({
        name: "tls to plain",
        text: await nodeClient(plain.port, { servername: "srv.test" }),
        id: "plaintext-mismatch",
      });
    } finally {
      await plain.close();
    }
    const server = await nodeServer({ cert: f("server.pem"), key: f("srv.key") });
    try {
      await new Promise<void>((resolve) => {
        const s = net.connect(server.port, "127.0.0.1", () => s.write("GET / HTTP/1.1\r\nHost: srv.test\r\n\r\n"));
        s.setTimeout(TIMEOUT_MS, () => s.destroy());
        s.on("close", () => resolve());
        s.on("error", () => resolve());
      });
      await new Promise((r) => setTimeout(r, 100));
      checkCase({ name: "plain to tls", text: server.errors.join("\n"), id: "plaintext-mismatch" });
    } finally {
      await server.close();
    }
  });
  it("ok/node: key files that do not fit", () => {
    const thrown = (options: tls.SecureContextOptions) => {
      try {
        tls.createSecureContext(options);
      } catch (e) {
        return `${(e as NodeJS.ErrnoException).code}: ${(e as Error).message}`;
      }
      return "no error";
    };
    checkCase({
      name: "key mismatch",
      text: thrown({ cert: f("server.pem"), key: f("other.key") }),
      id: "key-mismatch",
      side: "startup",
    });
    checkCase({
      name: "key given as certificate",
      text: thrown({ cert: f("srv.key"), key: f("srv.key") }),
      id: "pem-invalid",
    });
    // The review's cases, made for real: Node 20 / OpenSSL 3 reports an encrypted key without its
    // passphrase as bad decrypt, and a certificate given as the key as DECODER unsupported.
    // Decrypting with the wrong passphrase ends in bad decrypt unless the garbage happens to carry
    // valid CBC padding (about 1 salt and IV in 256), when OpenSSL reports DECODER unsupported
    // instead (the key-unsupported entry covers that text). The key is encrypted again, at most
    // 8 times, until both attempts fail at the padding, as nearly every key does.
    let noPassphrase = "";
    let wrongPassphrase = "";
    for (let i = 0; i < 8 && !(/bad decrypt/.test(noPassphrase) && /bad decrypt/.test(wrongPassphrase)); i++) {
      openssl(dir, [
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-in",
        "srv.key",
        "-passout",
        "pass:secret",
        "-out",
        "srv-enc.key",
      ]);
      noPassphrase = thrown({ cert: f("server.pem"), key: f("srv-enc.key") });
      wrongPassphrase = thrown({ cert: f("server.pem"), key: f("srv-enc.key"), passphrase: "nope" });
    }
    checkCase({
      name: "encrypted key, no passphrase",
      text: noPassphrase,
      id: "key-encrypted",
      side: "startup",
    });
    checkCase({
      name: "encrypted key, wrong passphrase",
      text: wrongPassphrase,
      id: "key-encrypted",
    });
    checkCase({
      name: "certificate given as key",
      text: thrown({ cert: f("server.pem"), key: f("server.pem") }),
      id: "key-unsupported",
    });
    openssl(dir, [
      "req",
      "-x509",
      "-newkey",
      "rsa:1024",
      "-nodes",
      "-keyout",
      "small.key",
      "-out",
      "small.pem",
      "-days",
      "2",
      "-subj",
      "/CN=small",
    ]);
    checkCase({
      name: "RSA 1024 at security level 2",
      text: thrown({ cert: f("small.pem"), key: f("small.key"), ciphers: "DEFAULT@SECLEVEL=2" }),
      id: "weak-key",
    });
    openssl(dir, [
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-sha1",
      "-out",
      "sha1.pem",
      "-days",
      "2",
    ]);
    checkCase({
      name: "SHA-1 signed certificate",
      text: thrown({ cert: f("sha1.pem"), key: f("srv.key") }),
      id: "weak-signature",
    });
  });
  it("ok/node: nothing listens", async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const { port } = probe.address() as net.AddressInfo;
    await new Promise((r) => probe.close(r));
    checkCase({
      name: "refused",
      text: await nodeClient(port, {}),
      id: "connection-refused",
      details: { peer: `127.0.0.1:${port}` },
    });
  });

  /** s_client cases: the server's certificate, s_client's flags, what its output and the server's error are recognised as. */
  const sClientCases: {
    name: string;
    cert: string;
    key: string;
    args: string[];
    client: string;
    code: string;
    server?: string;
  }[] = [
    {
      name: "wrong CA",
      cert: "server.pem",
      key: "srv.key",
      args: ["-CAfile", "other.pem"],
      client: "unknown-authority",
      code: "20",
    },
    {
      name: "expired",
      cert: "expired.pem",
      key: "srv.key",
      args: ["-CAfile", "ca.pem", "-verify_return_error"],
      client: "expired",
      code: "10",
      server: "peer-expired",
    },
    {
      name: "host name",
      cert: "server.pem",
      key: "srv.key",
      args: ["-CAfile", "ca.pem", "-verify_hostname", "other.test", "-verify_return_error"],
      client: "name-mismatch",
      code: "62",
      server: "peer-bad-certificate",
    },
    {
      name: "IP",
      cert: "server.pem",
      key: "srv.key",
      args: ["-CAfile", "ca.pem", "-verify_ip", "127.0.0.9"],
      client: "name-mismatch",
      code: "64",
    },
    {
      name: "purpose",
      cert: "clientonly.pem",
      key: "srv.key",
      args: ["-CAfile", "ca.pem", "-purpose", "sslserver", "-verify_return_error"],
      client: "incompatible-key-usage",
      code: "26",
      server: "peer-bad-certificate",
    },
    {
      name: "self-signed",
      cert: "other.pem",
      key: "other.key",
      args: ["-verify_return_error"],
      client: "self-signed",
      code: "18",
      server: "peer-unknown-ca",
    },
  ];
  for (const c of sClientCases) {
    it(`ok/openssl s_client: ${c.name}`, async () => {
      const server = await nodeServer({ cert: f(c.cert), key: f(c.key) });
      try {
        const out = await sClient(
          server.port,
          c.args.map((a) => (a.endsWith(".pem") ? path.join(dir, a) : a)),
        );
        const [first] = explain(out).matches;
        assert.equal(first?.entry.id, c.client, `s_client output:\n${out}`);
        assert.equal(first.details.verifyCode, c.code);
        await new Promise((r) => setTimeout(r, 100));
        if (c.server !== undefined)
          assert.deepEqual(ids(server.errors.join("\n")), [c.server], `server errors: ${server.errors.join(" | ")}`);
      } finally {
        await server.close();
      }
    });
  }

  /** s_server cases: the client's certificate, what the client's error and the server's output are recognised as. */
  const sServerCases: { name: string; client: () => tls.ConnectionOptions; clientId: string; serverId: string }[] = [
    {
      name: "no client certificate",
      client: () => ({}),
      clientId: "certificate-required",
      serverId: "no-client-certificate",
    },
    {
      name: "client certificate from another CA",
      client: () => ({ cert: f("other.pem"), key: f("other.key") }),
      clientId: "peer-unknown-ca",
      serverId: "self-signed",
    },
    {
      name: "server-only certificate as client",
      client: () => ({ cert: f("server.pem"), key: f("srv.key") }),
      clientId: "peer-bad-certificate",
      serverId: "incompatible-key-usage",
    },
    {
      name: "expired client certificate",
      client: () => ({ cert: f("client-expired.pem"), key: f("cli.key") }),
      clientId: "peer-expired",
      serverId: "expired",
    },
  ];
  for (const c of sServerCases) {
    it(`ok/openssl s_server: ${c.name}`, async () => {
      const server = await sServer(dir);
      const error = await nodeClient(server.port, { ca: f("ca.pem"), servername: "srv.test", ...c.client() });
      const out = await server.output;
      assert.deepEqual(ids(error), [c.clientId], `client error: ${error}`);
      assert.deepEqual(ids(out), [c.serverId], `s_server output:\n${out}`);
    });
  }
  it("ok/openssl s_server: a good client certificate is accepted (the cases above fail for their reason)", async () => {
    const server = await sServer(dir);
    assert.equal(
      await nodeClient(server.port, {
        ca: f("ca.pem"),
        servername: "srv.test",
        cert: f("client.pem"),
        key: f("cli.key"),
      }),
      "ok",
    );
    await server.output;
  });
});

// ── the command ──────────────────────────────────────────────────────────────────────────────

/** capture runs explainCommand in-process with a fake stdin. */
async function capture(args: string[], stdin: string) {
  let out = "";
  let err = "";
  const io: Io = { out: (t) => void (out += t), err: (t) => void (err += t), tty: false, color: false };
  const code = await explainCommand(args, io, async () => stdin);
  return { code, out, err };
}

describe("cli: mtlskit explain", () => {
  it("ok/--help has a synopsis, EXAMPLES and EXIT CODES 0 1 2 3", async () => {
    const r = await runCli(["explain", "--help"]);
    assert.equal(r.code, 0);
    assert.match(r.out, /^mtlskit explain: /);
    assert.match(r.out, /\nUSAGE\n[\s\S]*\nEXAMPLES\n[\s\S]*\nEXIT CODES\n  0 [\s\S]*\n  1 [\s\S]*\n  2 [\s\S]*\n  3 /);
  });
  it("ok/the bare usage shows explain and names every command", async () => {
    const out = (await runCli([])).out;
    assert.match(out, /mtlskit explain "/);
    const listed = /\nCommands: ([a-z, ]+)\./.exec(out)?.[1]?.split(", ") ?? [];
    assert.deepEqual([...listed].sort(), Object.keys(COMMANDS).sort());
  });
  it("ok/a recognised message exits 0 with cause, where to look, fix and check codes", async () => {
    const r = await runCli(["explain", "x509: certificate is valid for 10.0.0.4, not 10.0.0.5"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /recognised 1 error/);
    assert.match(r.out, /name-mismatch: /);
    assert.match(r.out, /Message: "x509: certificate is valid for 10\.0\.0\.4, not 10\.0\.0\.5"/);
    assert.match(r.out, /Details: dialed 10\.0\.0\.5; certificate valid for 10\.0\.0\.4\./);
    assert.match(
      r.out,
      /Cause: [\s\S]*Where to look: [\s\S]*Fix: [\s\S]*Check codes: `mtlskit check` reports what causes this as san-missing/,
    );
  });
  it("ok/words given unquoted are one message", async () => {
    const r = await runCli(["explain", "x509:", "certificate", "signed", "by", "unknown", "authority"]);
    assert.equal(r.code, 0);
    assert.match(r.out, /unknown-authority/);
  });
  it("fail/nothing recognised exits 1 and lists the closest entries", async () => {
    const r = await runCli(["explain", "the certificate authority is weird"]);
    assert.equal(r.code, 1);
    assert.match(r.out, /no known TLS error/);
    assert.match(r.out, /shares "authority"/);
  });
  it("ok/--json: recognised, matches with id, details, side, texts and codes", async () => {
    const r = await runCli([
      "explain",
      "--json",
      "http: TLS handshake error from 10.0.0.7:52814: remote error: tls: bad certificate",
    ]);
    assert.equal(r.code, 0);
    const j = JSON.parse(r.out) as { recognised: boolean; matches: Record<string, unknown>[]; closest: unknown[] };
    assert.equal(j.recognised, true);
    assert.deepEqual(j.closest, []);
    const [m] = j.matches;
    assert.deepEqual(Object.keys(m!).sort(), [
      "cause",
      "codes",
      "count",
      "details",
      "fix",
      "id",
      "line",
      "look",
      "meaning",
      "message",
      "side",
      "stacks",
      "title",
    ]);
    assert.equal(m!.id, "peer-bad-certificate");
    assert.equal(m!.side, "server");
    assert.deepEqual(m!.details, { peer: "10.0.0.7:52814" });
    assert.ok((m!.codes as string[]).includes("conn-client-untrusted"), String(m!.codes));
  });
  it("fail/--json when nothing matched: recognised false, exit 1", async () => {
    const r = await runCli(["explain", "--json", "zzyzx"]);
    assert.equal(r.code, 1);
    assert.deepEqual(JSON.parse(r.out), { recognised: false, matches: [], closest: [] });
  });
  it("ok/--list prints every entry with its stacks and an example", async () => {
    const r = await runCli(["explain", "--list"]);
    assert.equal(r.code, 0);
    for (const e of CATALOGUE)
      assert.ok(
        r.out.includes(`${e.id}: ${e.title}\n   stacks: ${e.stacks.join(", ")}\n   example: ${e.examples[0]}\n`),
        e.id,
      );
    const j = JSON.parse((await runCli(["explain", "--list", "--json"])).out) as { id: string; examples: string[] }[];
    assert.deepEqual(
      j.map((e) => e.id),
      CATALOGUE.map((e) => e.id),
    );
  });
  it("ok/--log reads a log; each error once, in order", async () => {
    const dir = tempDir();
    const log = path.join(dir, "agent.log");
    writeFileSync(
      log,
      "starting\nx509: certificate signed by unknown authority\nremote error: tls: certificate required\nx509: certificate signed by unknown authority\n",
    );
    const r = await runCli(["explain", "--log", log, "--json"]);
    assert.equal(r.code, 0);
    const j = JSON.parse(r.out) as { matches: { id: string; line: number; count: number }[] };
    assert.deepEqual(
      j.matches.map((m) => [m.id, m.line, m.count]),
      [
        ["unknown-authority", 2, 2],
        ["certificate-required", 3, 1],
      ],
    );
  });
  it("ok/- reads standard input", async () => {
    const r = await capture(["-"], "Jun 1 agent: x509: negative serial number\n");
    assert.equal(r.code, 0);
    assert.match(r.out, /negative-serial/);
  });
  it("ok/- reads the real standard input of a child process", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "test/helpers/cli-on-cue.ts")], {
      cwd: REPO,
      stdio: ["pipe", "pipe", "pipe", "ipc"],
    });
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    const code = new Promise<number | null>((resolve) => child.on("close", (c) => (clearTimeout(timer), resolve(c))));
    await new Promise<void>((resolve) => child.once("message", () => resolve()));
    child.send(["explain", "-", "--json"]);
    child.stdin!.end(
      '{"msg":"health check for peer a95ca1cdb0b1fcc3 could not connect: remote error: tls: bad certificate (prober \\"ROUND_TRIPPER_RAFT_MESSAGE\\")"}\n',
    );
    assert.equal(await code, 0);
    const j = JSON.parse(out) as { matches: { id: string; side: string }[] };
    assert.deepEqual(
      j.matches.map((m) => [m.id, m.side]),
      [["peer-bad-certificate", "client"]],
    );
  });
  const usage: [string, string[], RegExp][] = [
    ["no message", ["explain"], /no message given/],
    ["an empty message", ["explain", "  "], /the message is empty/],
    ["- and --log", ["explain", "-", "--log", "x.log"], /- \(standard input\) and --log are both given/],
    ["a message and --log", ["explain", "x509: oops", "--log", "x.log"], /a message and --log are both given/],
    ["- with a message", ["explain", "-", "more"], /give no other message/],
    ["--list with a message", ["explain", "--list", "EOF"], /--list takes no message/],
    ["no such file", ["explain", "--log", "/nonexistent/agent.log"], /no such file \/nonexistent\/agent\.log/],
    ["an unknown flag", ["explain", "--pkix", "x"], /Unknown option '--pkix'/],
    ["--pki without -f", ["explain", "--pki", "x", "EOF"], /--pki needs the manifest too; add -f FILE/],
  ];
  for (const [name, argv, message] of usage) {
    it(`fail/${name} exits 2`, async () => {
      const r = await runCli(argv);
      assert.equal(r.code, 2);
      assert.match(r.err, message);
    });
  }
  it("fail/empty standard input is a usage error (exit 2)", async () => {
    await assert.rejects(
      capture(["-"], "\n"),
      (e: Error & { exitCode?: number }) => e.exitCode === 2 && /the message is empty/.test(e.message),
    );
  });
});

describe("explain: -f points at the deployment", { timeout: 60_000 }, () => {
  // The ServiceRadar runbook's failure, reproduced in a managed PKI: dusk given the checker's
  // clientAuth-only certificate, which the agent then refuses as a server certificate.
  let dir: string;
  let file: string;
  let pki: string;
  // Human output wraps at 100 columns, and the manifest's path is part of the text: compare
  // with every run of whitespace as one space, or a longer checkout path moves the breaks.
  const flat = (s: string): string => s.replace(/\s+/g, " ");
  before(async () => {
    dir = tempDir("mtlskit-explain-deploy-");
    file = path.join(REPO, "examples", "serviceradar.yaml");
    pki = path.join(dir, "pki");
    assert.equal((await runCli(["apply", "-f", file, "--pki", pki])).code, 0);
    for (const f of ["cert.pem", "key.pem"])
      copyFileSync(path.join(pki, "services", "checker", f), path.join(pki, "services", "dusk", f));
  });
  const SEED =
    "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate specifies an incompatible key usage";
  it("ok/the seed's incompatible key usage names dusk's certificate and the agent -> dusk connection, with the fix", async () => {
    const r = await runCli(["explain", "-f", file, "--pki", pki, SEED]);
    assert.equal(r.code, 0, r.err);
    assert.match(flat(r.out), /In .*serviceradar\.yaml \(2 findings of `mtlskit check`\):/);
    assert.match(flat(r.out), /- dusk \[eku-server\]: .*services\/dusk\/cert\.pem/);
    assert.match(flat(r.out), /- agent -> dusk @ 192\.168\.2\.22 \[conn-server-usage\]/);
    assert.match(flat(r.out), /--reissue dusk/);
  });
  it("ok/--json carries the deployment's findings per match", async () => {
    const r = await runCli(["explain", "--json", "-f", file, "--pki", pki, SEED]);
    const j = JSON.parse(r.out) as {
      matches: { id: string }[];
      deployment: { matches: { code: string; label: string }[][] };
    };
    assert.equal(j.matches[0]!.id, "incompatible-key-usage");
    assert.deepEqual(j.deployment.matches[0]!.map((f) => `${f.code} ${f.label}`).sort(), [
      "conn-server-usage agent -> dusk @ 192.168.2.22",
      "eku-server dusk",
    ]);
  });
  it("ok/a dialed address in the message narrows connection findings to that address", async () => {
    // dusk's certificate also lacks its IP: the Go message names the address the agent dialed.
    const r = await runCli([
      "explain",
      "--json",
      "-f",
      file,
      "--pki",
      pki,
      "x509: cannot validate certificate for 192.168.2.22 because it doesn't contain any IP SANs",
    ]);
    const j = JSON.parse(r.out) as { deployment: { matches: { code: string; label: string }[][] } };
    const labels = j.deployment.matches[0]!.map((f) => `${f.code} ${f.label}`);
    assert.ok(labels.includes("conn-address agent -> dusk @ 192.168.2.22"), labels.join("; "));
    assert.ok(
      labels.every((l) => !l.startsWith("conn-") || l.endsWith("@ 192.168.2.22")),
      labels.join("; "),
    );
    // Certificate findings too: only services reached at 192.168.2.22 (agent, dusk and sysmon declare it).
    assert.ok(
      labels.every((l) => l.startsWith("conn-") || /^\S+ (agent|dusk|sysmon)$/.test(l)),
      labels.join("; "),
    );
    assert.ok(labels.includes("san-missing dusk"), labels.join("; "));
    // The gateway's address: dusk's problems are not this error; nothing at .100 is broken.
    const gw = await runCli([
      "explain",
      "-f",
      file,
      "--pki",
      pki,
      "x509: cannot validate certificate for 192.168.2.100 because it doesn't contain any IP SANs",
    ]);
    assert.match(flat(gw.out), /finds nothing that produces this error/);
    assert.doesNotMatch(gw.out, /dusk/);
  });
  it("ok/a healthy deployment: check finds nothing that produces the error, said plainly", async () => {
    const healthy = path.join(dir, "healthy");
    assert.equal((await runCli(["apply", "-f", file, "--pki", healthy])).code, 0);
    const r = await runCli(["explain", "-f", file, "--pki", healthy, SEED]);
    assert.equal(r.code, 0);
    assert.match(flat(r.out), /finds nothing that produces this error/);
  });
  it("fail/an invalid manifest exits 2 before explaining", async () => {
    const bad = path.join(dir, "bad.yaml");
    writeFileSync(bad, "version: 2\n");
    const r = await runCli(["explain", "-f", bad, SEED]);
    assert.equal(r.code, 2);
  });
});
