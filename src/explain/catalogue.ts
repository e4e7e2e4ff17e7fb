/**
 * CATALOGUE: the one table of TLS error messages `mtlskit explain` recognises. Each entry says
 * what the message means, which side of the connection logs it, where to look, the fix in
 * mtlskit's terms, and which `mtlskit check` finding codes (src/check/codes.ts) produce it.
 *
 * Wording of the patterns comes from the sources, not from memory: Go crypto/x509 verify.go
 * (HostnameError, UnknownAuthorityError, CertificateInvalidError) and crypto/tls alert.go
 * (`remote error: tls: ` + alert text); OpenSSL's X509_verify_cert_error_string table and SSL
 * reason strings (OpenSSL 3 renamed "self signed" to "self-signed" and "unsupported certificate
 * purpose" to "unsuitable certificate purpose": both spellings match); Node's tls.checkServerIdentity
 * and its OpenSSL-derived error codes; GnuTLS gnutls_certificate_verification_status_print; libpq
 * and the PostgreSQL server; grpc-go and gRPC C-core; curl; Java's JSSE. The examples are real
 * messages, several copied from the seed runbooks and from handshakes the tests make.
 *
 * Order matters where two entries can match the same text: the earlier entry wins (the more
 * specific one comes first), and the tests check that every example is claimed by its own entry.
 */
import type { Code } from "../check/codes.ts";

/** STACKS lists the programs and libraries whose messages the catalogue knows. */
export const STACKS = [
  "go",
  "openssl",
  "node",
  "gnutls",
  "nats",
  "postgresql",
  "etcd",
  "grpc",
  "curl",
  "java",
  "python",
  "rustls",
  "nginx",
] as const;

/** Stack is one of STACKS. */
export type Stack = (typeof STACKS)[number];

/** Side is who logs a message: the client (it dialed), the server (it accepted), or a program loading its files at startup. */
export type Side = "client" | "server" | "startup";

/**
 * Level says how much a message tells on its own. A `specific` message names a cause. A `generic`
 * one says a handshake failed without the reason (`certificate verify failed`, `EOF`): it is
 * reported only when the text holds no specific message, which would be the reason. A `wrapper`
 * (`handshake failed`, gRPC `UNAVAILABLE`) only frames another message: reported only when
 * nothing else matched.
 */
export type Level = "specific" | "generic" | "wrapper";

/**
 * DETAILS names the values patterns capture (as named groups) and how output labels them. Texts
 * use them as `{name}` inside an optional segment `[...]`, which is left out when the message
 * did not carry that value.
 */
export const DETAILS = {
  host: "dialed",
  names: "certificate valid for",
  peer: "peer",
  verifyCode: "OpenSSL verify code",
  authority: "candidate CA",
  reason: "reason",
  now: "verifier's time",
  notAfter: "not after",
  notBefore: "not before",
  user: "database user",
  cn: "certificate user name",
  file: "file",
  algorithm: "algorithm",
} as const;

/** Detail is a value a pattern can capture, a key of DETAILS. */
export type Detail = keyof typeof DETAILS;

/** Entry is one recognised error: its patterns, real examples, and the explanation. */
export interface Entry {
  /** id is stable: scripts and docs refer to it. Lowercase words joined by hyphens. */
  id: string;
  /** title is a short sentence fragment: what is wrong. */
  title: string;
  stacks: readonly Stack[];
  /** level: see Level; default `specific`. */
  level?: Level;
  /** patterns are case-insensitive, bounded (no unbounded repetition: pasted logs can be large) and never span lines. */
  patterns: readonly RegExp[];
  /** examples are real messages, each claimed by this entry first. */
  examples: readonly string[];
  /** seenBy says what the message means on each side that can log it: a clause that follows "The client logged this:". */
  seenBy: Partial<Record<Side, string>>;
  /** cause explains why it happens, in words. */
  cause: string;
  /** look says where to look and which command shows it. */
  look: string;
  /** fix says what to change, in mtlskit's terms, ending with the command to run. */
  fix: string;
  /** codes are the `mtlskit check` findings that produce this error. */
  codes: readonly Code[];
}

/**
 * Context is a line-level clue that is not an error itself: who logged the line (`http: TLS
 * handshake error from` is a Go server; `could not connect` a client) and the peer's address.
 */
export interface Context {
  pattern: RegExp;
  side?: "client" | "server";
}

/** CONTEXTS are tried on each line that holds a recognised message; the first with a side decides it. Server clues come first: they are the more specific. */
export const CONTEXTS: readonly Context[] = [
  { pattern: /TLS handshake error from (?<peer>[^ \n]{1,100}): /i, side: "server" },
  // ["] rather than a bare quote: the import reader of test/architecture.test.ts takes the word "from" before a quote for an import.
  { pattern: /rejected connection from ["]?(?<peer>[^" \n]{1,100})/i, side: "server" },
  { pattern: /"remote-addr":"(?<peer>[^"\n]{1,100})"/i, side: "server" },
  { pattern: /(?<peer>[0-9a-f.:[\]]{3,60}) - cid:\d{1,12} - /i, side: "server" },
  {
    pattern:
      /failed to verify client'?s? certificate|process_client_certificate|could not accept SSL connection|tlsClientError|Empty client certificate chain/i,
    side: "server",
  },
  { pattern: /health check for peer (?<peer>[0-9a-f]{1,32}) could not connect/i, side: "client" },
  { pattern: /"remote-peer-id":"(?<peer>[0-9a-f]{1,32})"/i, side: "client" },
  { pattern: /dial tcp (?<peer>[^ \n]{1,100}): /i, side: "client" },
  { pattern: /connect ECONNREFUSED (?<peer>[^ \n]{1,100})/i, side: "client" },
  { pattern: /\b(?:Get|Post|Put|Patch|Delete|Head) "?https:\/\/(?<peer>[^/ "'\n]{1,200})/i, side: "client" },
  { pattern: /connection to server at "(?<peer>[^"\n]{1,200})"/i, side: "client" },
  { pattern: /openssl s_client -connect (?<peer>[^ \n]{1,200})/i, side: "client" },
  {
    pattern:
      /could not connect|failed to connect|connection error|transport: authentication handshake failed|process_server_certificate|curl: \(\d{1,3}\)|SSL certificate problem|rpc error: code|\bUNAVAILABLE\b|prober|Client network socket disconnected|\bnats: /i,
    side: "client",
  },
  { pattern: /verify error:num=(?<verifyCode>\d{1,4})/i },
  { pattern: /Verify return code: (?<verifyCode>\d{1,4})/i },
];

// Sentences shared by every entry about verifying a certificate: which side refused which.
const CLIENT_REFUSED_SERVER = "it refused the certificate the server[ {peer}] presented.";
const SERVER_REFUSED_CLIENT = "it refused the certificate the client[ {peer}] presented.";
const VERIFIED = { client: CLIENT_REFUSED_SERVER, server: SERVER_REFUSED_CLIENT };
const STARTUP = { startup: "the program reported this while loading its TLS files, before any connection." };

/** CATALOGUE is every recognised error, the more specific entries first. */
export const CATALOGUE: readonly Entry[] = [
  // ── trust: who signed the certificate ──────────────────────────────────────────────────────
  {
    id: "bad-signature",
    title: "a CA with the issuer's name is trusted, but its key did not sign the certificate",
    stacks: ["go", "openssl", "node", "java"],
    patterns: [
      /x509: certificate signed by unknown authority \(possibly because of "(?<reason>[^"\n]{1,200})" while trying to verify candidate authority certificate "(?<authority>[^"\n]{1,200})"\)/i,
      /certificate signature failure|\bCERT_SIGNATURE_FAILURE\b/i,
      /SignatureException: Signature does not match/i,
    ],
    examples: [
      'x509: certificate signed by unknown authority (possibly because of "crypto/rsa: verification error" while trying to verify candidate authority certificate "ServiceRadar CA")',
      "verify error:num=7:certificate signature failure",
      "CERT_SIGNATURE_FAILURE: certificate signature failure",
    ],
    seenBy: VERIFIED,
    cause:
      "The certificate names its issuer[ ({authority})], and a CA of that name is trusted, but that CA's key did not sign it[ ({reason})]. The CA was created again under the same name (a second `openssl req -x509` run, or a host that generated its own CA), so certificates of the old and the new CA are mixed.",
    look: "Compare key identifiers: `openssl x509 -noout -ext authorityKeyIdentifier -in cert.pem` against `openssl x509 -noout -ext subjectKeyIdentifier -in ca.pem` on the verifying host; they differ. The runbooks' rule: the root certificate must be identical on every host.",
    fix: "Issue every certificate from one CA: keep one mtlskit PKI directory for the cluster (ca/ca.pem and ca/ca-key.pem), run `mtlskit apply` (it re-issues every certificate the current CA did not sign), and copy each services/NAME/ folder, ca.pem included, to its host.",
    codes: ["bad-signature", "untrusted", "bundle-differs", "conn-server-untrusted", "conn-client-untrusted"],
  },
  {
    id: "unknown-authority",
    title: "the certificate's issuer is not in the verifier's trust bundle",
    stacks: ["go", "etcd", "nats", "grpc", "openssl", "curl", "node", "python", "gnutls", "java", "rustls"],
    patterns: [
      /\bunknown authority\b/i,
      /unable to get (?:local )?issuer certificate|\bUNABLE_TO_GET_ISSUER_CERT(?:_LOCALLY)?\b/i,
      /unable to verify the first certificate|\bUNABLE_TO_VERIFY_LEAF_SIGNATURE\b/i,
      /self[- ]signed certificate in certificate chain|\bSELF_SIGNED_CERT_IN_CHAIN\b/i,
      /The certificate issuer is unknown/i,
      /PKIX path building failed|unable to find valid certification path to requested target/i,
      /\bUnknownIssuer\b/i,
    ],
    examples: [
      "x509: certificate signed by unknown authority",
      'rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"',
      "verify error:num=20:unable to get local issuer certificate",
      "Verify return code: 21 (unable to verify the first certificate)",
      "curl: (60) SSL certificate problem: unable to get local issuer certificate",
      "UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first certificate",
      "SELF_SIGNED_CERT_IN_CHAIN: self-signed certificate in certificate chain",
      "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate (_ssl.c:1006)",
      "- Status: The certificate is NOT trusted. The certificate issuer is unknown.",
      "javax.net.ssl.SSLHandshakeException: PKIX path building failed: sun.security.provider.certpath.SunCertPathBuilderException: unable to find valid certification path to requested target",
      "invalid peer certificate: UnknownIssuer",
      "Unknown Authority Error",
    ],
    seenBy: VERIFIED,
    cause:
      "The verifier does not trust the CA that issued the certificate it was shown: its trust bundle holds another CA or none, or the certificate comes from another CA than the rest of the cluster (an old CA, a CA generated on another host). `unable to verify the first certificate` also means an intermediate was not sent with the certificate.",
    look: "On the verifying host, check the certificate the peer presents against the bundle it loads: `openssl s_client -connect HOST:PORT -showcerts` for what is sent, `openssl verify -CAfile ca.pem cert.pem` for the verdict. The runbooks' rule: the root certificate must be identical on every host.",
    fix: "Give every service the bundle of the CA that signed its peers: each services/NAME/ca.pem of one mtlskit PKI directory holds the cluster CA, so copy whole services/NAME/ folders to their hosts, and run `mtlskit apply` to re-issue certificates signed by an older CA. With `ca.import`, deploy cert.pem whole: it carries the intermediates.",
    codes: ["untrusted", "bundle-differs", "bundle-missing", "conn-server-untrusted", "conn-client-untrusted"],
  },
  {
    id: "peer-unknown-ca",
    title: "the peer does not trust the CA of this side's certificate",
    stacks: ["go", "openssl", "node", "java"],
    // Go's alert error reads `tls: unknown certificate authority`; the reading side wraps it as
    // `remote error: ` (crypto/tls conn.go), and a program that unwraps the net.OpError logs it bare.
    patterns: [
      /\btls: unknown certificate authority/i,
      /alert[ _]unknown[ _]ca\b/i,
      /Received fatal alert: unknown_ca/i,
    ],
    examples: [
      "remote error: tls: unknown certificate authority",
      "tls: unknown certificate authority",
      "4037D9FA347F0000:error:0A000418:SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca:../ssl/record/rec_layer_s3.c:1601:SSL alert number 48",
      "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA",
      "javax.net.ssl.SSLHandshakeException: Received fatal alert: unknown_ca",
    ],
    seenBy: {
      client:
        "the SERVER[ {peer}] refused the client's certificate because the server's trust bundle does not hold the CA that issued it.",
      server:
        "the CLIENT[ {peer}] refused the server's certificate because the client's trust bundle does not hold the CA that issued it.",
    },
    cause:
      "The other side received this side's certificate and does not know the CA that issued it (TLS alert 48, unknown_ca). The problem is the peer's trust bundle, or this side's certificate coming from another CA, not a name or a date.",
    look: "On the peer, which bundle it loads, and this side's certificate verified against it: `openssl verify -CAfile PEER-ca.pem cert.pem`.",
    fix: "Give the peer the cluster's ca.pem (every services/NAME/ca.pem of one mtlskit PKI directory) and restart it, or re-issue this side's certificate from the cluster CA with `mtlskit apply`.",
    codes: ["conn-client-untrusted", "conn-server-untrusted", "bundle-differs", "untrusted"],
  },
  {
    id: "self-signed",
    title: "the certificate is self-signed, not issued by the cluster CA",
    stacks: ["openssl", "node", "curl", "python"],
    patterns: [/\bself[- ]signed certificate\b(?! in certificate chain)/i, /\bDEPTH_ZERO_SELF_SIGNED_CERT\b/i],
    examples: [
      "DEPTH_ZERO_SELF_SIGNED_CERT: self-signed certificate",
      "verify error:num=18:self-signed certificate",
      "curl: (60) SSL certificate problem: self signed certificate",
      "Verify return code: 18 (self signed certificate)",
    ],
    seenBy: VERIFIED,
    cause:
      "The peer presented a certificate that signed itself instead of one issued by the cluster CA: a default, snake-oil or test certificate, or one the service generated on its first start because no certificate was configured.",
    look: "What the peer serves: `openssl s_client -connect HOST:PORT </dev/null | openssl x509 -noout -subject -issuer` (subject equals issuer), and which files its TLS configuration names.",
    fix: "Point the service at the files mtlskit issued for it (services/NAME/cert.pem, key.pem and ca.pem), declare the service in the manifest if it is missing, and run `mtlskit apply`.",
    codes: ["untrusted", "conn-server-untrusted", "conn-client-untrusted"],
  },
  {
    id: "not-a-ca",
    title: "an issuer in the chain is not a CA",
    stacks: ["go", "openssl", "node", "java"],
    patterns: [
      /invalid CA certificate|\bINVALID_CA\b/i,
      /x509: certificate is not authorized to sign other certificates/i,
      /key usage does not include certificate signing/i,
      /basic constraints check failed/i,
    ],
    examples: [
      "x509: certificate is not authorized to sign other certificates",
      "verify error:num=79:invalid CA certificate",
      "INVALID_CA: invalid CA certificate",
    ],
    seenBy: VERIFIED,
    cause:
      "A certificate used as an issuer lacks basicConstraints CA:TRUE or the keyCertSign key usage: a service certificate was put in the trust bundle, or a CA was made without `basicConstraints=critical,CA:TRUE`.",
    look: "`openssl x509 -noout -ext basicConstraints,keyUsage -in ca.pem` for every certificate in the bundle and in the chain.",
    fix: "Use the cluster CA (ca/ca.pem: CA:TRUE, keyCertSign, cRLSign) as every bundle; with `ca.import`, import a real CA certificate. Then run `mtlskit apply`.",
    codes: ["ca-not-ca"],
  },
  {
    id: "path-length",
    title: "the chain is longer than a CA allows",
    stacks: ["go", "openssl", "node"],
    patterns: [
      /path length constraint exceeded|\bPATH_LENGTH_EXCEEDED\b/i,
      /x509: too many intermediates for path length constraint/i,
    ],
    examples: [
      "x509: too many intermediates for path length constraint",
      "verify error:num=25:path length constraint exceeded",
    ],
    seenBy: VERIFIED,
    cause:
      "A CA's pathLenConstraint forbids the intermediates below it. mtlskit's generated CA has pathlen 0 and signs services directly (with ca.intermediate, the root has pathlen 1 and its one intermediate pathlen 0), so an intermediate placed under the lone CA or under mtlskit's intermediate breaks verification; an imported chain can carry a tighter limit than its use.",
    look: "`openssl x509 -noout -ext basicConstraints` on each CA of the chain (pathlen), and how many intermediates sit below it.",
    fix: "Issue service certificates directly from the cluster CA, as mtlskit does, or declare `ca.intermediate` (a new CA: the root must be made with pathlen 1); with `ca.import`, import the CA that signs services (with its chain), not one above it. Then run `mtlskit apply`.",
    codes: [],
  },
  {
    id: "strict-profile",
    title: "a strict verifier refuses a certificate's extensions",
    stacks: ["openssl", "python"],
    patterns: [
      /Missing (?:Authority|Subject) Key Identifier/i,
      /Basic Constraints of CA cert not marked critical/i,
      /CA cert does not include key usage extension/i,
      /invalid non-CA certificate \(has CA markings\)/i,
      /(?:Authority|Subject) Key Identifier marked critical/i,
      /Empty Subject Alternative Name extension|Subject empty and Subject Alt Name extension not critical/i,
    ],
    examples: [
      "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Missing Authority Key Identifier (_ssl.c:1028)",
      "verify error:num=89:Basic Constraints of CA cert not marked critical",
      "certificate verify failed: CA cert does not include key usage extension",
      "verify error:num=37:invalid non-CA certificate (has CA markings)",
    ],
    seenBy: VERIFIED,
    cause:
      "The certificate or its CA breaks an RFC 5280 rule that strict verifiers enforce: OpenSSL with `-x509_strict`, and Python 3.13 and later by default (VERIFY_X509_STRICT). Hand-made CAs often lack key identifiers or a critical basicConstraints, and some leaves carry CA markings.",
    look: "`openssl verify -x509_strict -CAfile ca.pem cert.pem`, and `openssl x509 -noout -text` on the CA and the certificate.",
    fix: "Re-issue with mtlskit: its CA and service certificates carry subject and authority key identifiers, critical basicConstraints and keyUsage, and no CA markings on services. Replace a hand-made CA (or import a compliant one with `ca.import`) and run `mtlskit apply`.",
    codes: ["key-ids", "ca-key-usage", "ca-not-ca", "leaf-is-ca"],
  },
  // ── names: the dialed address and the SANs ──────────────────────────────────────────────────
  {
    id: "no-ip-sans",
    title: "the client dialed an IP address, and the certificate has no IP SANs",
    stacks: ["go", "etcd", "nats", "grpc"],
    patterns: [/x509: cannot validate certificate for (?<host>[^ \n]{1,100}) because it doesn't contain any IP SANs/i],
    examples: [
      "x509: cannot validate certificate for 192.168.2.100 because it doesn't contain any IP SANs",
      'Get "https://10.0.0.5:8443/health": tls: failed to verify certificate: x509: cannot validate certificate for 10.0.0.5 because it doesn\'t contain any IP SANs',
    ],
    seenBy: { client: CLIENT_REFUSED_SERVER },
    cause:
      "The client connected to an IP address[ ({host})], and an IP is compared only with IP SANs; the server's certificate has none. It lists only DNS names, or the IP was written as a DNS SAN (`DNS:` followed by the address), which never matches an IP.",
    look: "The server certificate's SANs: `openssl x509 -noout -ext subjectAltName -in cert.pem`; the address must appear as `IP Address:`[, here IP Address:{host}].",
    fix: "Add the address[ {host}] to the serving service's services.NAME.addresses (mtlskit writes IPs as IP SANs), declare the connection (from, to, address) so the manifest checks it, and run `mtlskit apply`; then deploy the new cert.pem and restart the server.",
    codes: ["san-missing", "san-ip-as-dns", "conn-address"],
  },
  {
    id: "legacy-cn",
    title: "the certificate has a CN but no SANs",
    stacks: ["go", "grpc", "java"],
    patterns: [/x509: certificate relies on legacy Common Name field/i, /No subject alternative names present/i],
    examples: [
      "x509: certificate relies on legacy Common Name field, use SANs instead",
      "transport: authentication handshake failed: x509: certificate relies on legacy Common Name field, use SANs or temporarily enable Common Name matching with GODEBUG=x509ignoreCN=0",
      "java.security.cert.CertificateException: No subject alternative names present",
    ],
    seenBy: { client: CLIENT_REFUSED_SERVER },
    cause:
      "The server's certificate has no subjectAltName extension, only a Common Name, and current verifiers ignore the CN when matching the dialed name (Go since 1.15).",
    look: "`openssl x509 -noout -subject -ext subjectAltName -in cert.pem`: no SAN extension.",
    fix: "Re-issue with SANs: mtlskit always writes the CN as a SAN too (services.NAME.cn), and every entry of services.NAME.addresses; run `mtlskit apply`.",
    codes: ["cn-not-san", "san-missing"],
  },
  {
    id: "name-mismatch",
    title: "the server's certificate does not cover the address the client dialed",
    stacks: ["go", "etcd", "grpc", "node", "openssl", "python", "curl", "postgresql", "java", "gnutls", "rustls"],
    patterns: [
      /x509: certificate is valid for (?<names>[^\n]{1,500}?), not (?<host>[^ \n"',)]{1,253})/i,
      /x509: certificate is not valid for any names, but wanted to match (?<host>[^ \n"',)]{1,253})/i,
      /x509: certificate is valid for /i,
      /Hostname\/IP does not match certificate's altnames: Host: (?<host>[^ \n]{1,253}?)\. is not in the cert's altnames: ?(?<names>[^\n"]{0,1000})/i,
      /Hostname\/IP does not match certificate's altnames: IP: (?<host>[^ \n]{1,253}) is not in the cert's list: ?(?<names>[^\n"]{0,1000})/i,
      /Hostname\/IP does not match certificate's altnames: Host: (?<host>[^ \n]{1,253}?)\. is not cert's CN: (?<names>[^\n"]{0,253})/i,
      /Hostname\/IP does(?:n't| not) match certificate's altnames|\bERR_TLS_CERT_ALTNAME_INVALID\b/i,
      /(?:Hostname|IP address) mismatch, certificate is not valid for '(?<host>[^'\n]{1,253})'/i,
      /\bhostname mismatch\b|\bIP address mismatch\b/i,
      /no alternative certificate subject name matches target host name '(?<host>[^'\n]{1,253})'/i,
      /certificate subject name '(?<names>[^'\n]{1,253})' does not match target host name '(?<host>[^'\n]{1,253})'/i,
      /server certificate for "(?<names>[^"\n]{1,253})"(?: \(and \d{1,6} other names?\))? does not match host name "(?<host>[^"\n]{1,253})"/i,
      /No subject alternative (?:DNS )?names? matching (?:IP address )?(?<host>[^ \n]{1,253}) found/i,
      /No name matching (?<host>[^ \n]{1,253}) found/i,
      /Peer name (?<host>[^ \n]{1,253}) is not in peer certificate/i,
      /certificate not valid for name "(?<host>[^"\n]{1,253})"|\bNotValidForName\b/i,
      /The name in the certificate does not match the expected/i,
      /\bmissing SANs?\b|\bSANs? mismatch\b|\bIP mismatch\b/i,
    ],
    examples: [
      "x509: certificate is valid for 192.168.2.23, core.serviceradar, not 192.168.2.24",
      "x509: certificate is not valid for any names, but wanted to match core.demo",
      "Hostname/IP does not match certificate's altnames: IP: 10.0.0.5 is not in the cert's list: 10.0.0.4",
      "ERR_TLS_CERT_ALTNAME_INVALID: Hostname/IP does not match certificate's altnames: Host: other.test. is not in the cert's altnames: DNS:srv.test, IP Address:127.0.0.2",
      "Hostname/IP does not match certificate's altnames: Host: localhost. is not in the cert's altnames: DNS:nats, IP Address:127.0.0.1",
      "verify error:num=62:hostname mismatch",
      "Verify return code: 64 (IP address mismatch)",
      "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: IP address mismatch, certificate is not valid for '192.168.0.1'. (_ssl.c:1006)",
      "curl: (60) SSL: no alternative certificate subject name matches target host name '10.0.0.9'",
      'psql: error: connection to server at "10.0.0.5", port 5432 failed: server certificate for "db.internal" does not match host name "10.0.0.5"',
      "java.security.cert.CertificateException: No subject alternative names matching IP address 10.0.0.5 found",
      "Peer name 10.0.0.7 is not in peer certificate",
      "- Status: The certificate is NOT trusted. The name in the certificate does not match the expected.",
      "Missing SANs",
      "Gateway IP Mismatch",
    ],
    seenBy: { client: CLIENT_REFUSED_SERVER },
    cause:
      "The client dialed an address[ ({host})] that the server's certificate does not list[; it is valid for {names}]. Clients compare the dialed address with the SANs, an IP only with IP SANs and a name only with DNS SANs; the CN is not consulted.",
    look: 'The server certificate\'s SANs: `openssl x509 -noout -ext subjectAltName -in cert.pem`, and the address the client is configured to dial. The runbooks\' "Missing SANs" and "Gateway IP Mismatch": the gateway\'s real IP was not in its certificate. Node saying `Host: localhost` when the client dialed something else means no host or servername reached tls.connect, and Node checked its default: the npm nats client does this when it dials an IP (set its tls.host to the address it dials).',
    fix: "Add the dialed address[ {host}] to the serving service's services.NAME.addresses and declare the connection (from, to, address): `mtlskit apply` then refuses any manifest whose SANs miss an address a peer dials. Run `mtlskit apply`, deploy the new cert.pem and restart the server; or make the client dial a name the certificate lists.",
    codes: ["san-missing", "san-ip-as-dns", "cn-not-san", "conn-address"],
  },
  // ── usage: what the certificate may be used for ─────────────────────────────────────────────
  {
    id: "incompatible-key-usage",
    title: "the certificate's extended key usage does not allow its role",
    stacks: ["go", "etcd", "grpc", "openssl", "node", "java", "gnutls"],
    patterns: [
      /x509: certificate specifies an incompatible key usage/i,
      /\bincompatible key usage\b/i,
      /(?:unsupported|unsuitable) certificate purpose|\bINVALID_PURPOSE\b/i,
      /Extended key usage does not permit use for TLS (?:server|client) authentication/i,
      /The certificate chain does not match the intended purpose/i,
    ],
    examples: [
      "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate specifies an incompatible key usage",
      'rejected connection from "192.168.159.3:46646" (error "tls: failed to verify client\'s certificate: x509: certificate specifies an incompatible key usage", ServerName "")',
      "verify error:num=26:unsuitable certificate purpose",
      "Verify return code: 26 (unsupported certificate purpose)",
      "INVALID_PURPOSE: unsuitable certificate purpose",
      "java.security.cert.CertificateException: Extended key usage does not permit use for TLS server authentication",
    ],
    seenBy: {
      client:
        "it refused the certificate of the server[ {peer}], which lacks serverAuth. In the ServiceRadar runbook the dusk and sysmon checkers served with client-only certificates and the agent logged this.",
      server:
        "it refused the certificate of the client[ {peer}], which lacks clientAuth (an etcd member or gRPC peer dialing with a server-only certificate).",
    },
    cause:
      "The certificate does not allow the role it was used in: a certificate a server presents needs extendedKeyUsage serverAuth, one a client presents needs clientAuth. A service that both serves and dials (a checker, an etcd member, a gRPC node) needs both.",
    look: "`openssl x509 -noout -ext extendedKeyUsage -in cert.pem` on the refused side's certificate: TLS Web Server Authentication to serve, TLS Web Client Authentication to dial.",
    fix: "Give the service the usage of its role: services.NAME.usage dual for a service that serves and dials (server or client otherwise), declare its connections so the manifest checks both directions, and run `mtlskit apply`: it re-issues the certificate with the right usages.",
    codes: ["eku-server", "eku-client", "conn-server-usage", "conn-client-usage"],
  },
  {
    id: "key-usage-signature",
    title: "the certificate's keyUsage lacks digitalSignature",
    stacks: ["openssl", "java", "gnutls"],
    patterns: [
      /key usage does not include digital signature/i,
      /KeyUsage does not allow digital signatures/i,
      /Key usage violation in certificate has been detected/i,
      /certificate does not allow digital signatures/i,
      /\becc cert not for signing\b/i,
    ],
    examples: [
      "verify error:num=39:key usage does not include digital signature",
      "java.security.cert.CertificateException: KeyUsage does not allow digital signatures",
      "*** Fatal error: Key usage violation in certificate has been detected.",
      "Peer's certificate does not allow digital signatures. Key usage violation detected.",
      "error:0A00013E:SSL routines:ssl_check_srvr_ecc_cert_and_alg:ecc cert not for signing:../ssl/ssl_lib.c:3690:",
    ],
    seenBy: VERIFIED,
    cause:
      "The certificate's keyUsage lacks digitalSignature, which signs the TLS handshake. GnuTLS and Java refuse it in TLS 1.2 and 1.3 whatever the key; OpenSSL and Go are laxer: an RSA server certificate with keyEncipherment passes them, so the same certificate works with curl, nginx and Go clients and fails with gnutls-cli, Java and other GnuTLS programs.",
    look: "`openssl x509 -noout -ext keyUsage -in cert.pem` on the refused certificate: Digital Signature must be listed.",
    fix: "Re-issue it with digitalSignature in keyUsage (keyUsage = digitalSignature, keyEncipherment for RSA). mtlskit's server, client and dual profiles always set it: `mtlskit apply` re-issues a managed service's certificate; `mtlskit check` reports the others (key-usage, key-usage-strict).",
    codes: ["key-usage", "key-usage-strict"],
  },
  {
    id: "ca-usage-constraint",
    title: "a CA in the chain may not issue for this usage or name",
    stacks: ["go"],
    patterns: [
      /x509: a root or intermediate certificate is not authorized (?:for an extended key usage|to sign for this name)(?:: (?<reason>[^\n"]{1,200}))?/i,
    ],
    examples: [
      "x509: a root or intermediate certificate is not authorized for an extended key usage: ",
      'x509: a root or intermediate certificate is not authorized to sign for this name: DNS name "core.demo" is not permitted by any constraint',
    ],
    seenBy: VERIFIED,
    cause:
      "A CA in the chain restricts what it may issue, with an extendedKeyUsage that excludes serverAuth or clientAuth, or name constraints that exclude a SAN of the certificate[ ({reason})]. Go applies a CA's restrictions to everything below it.",
    look: "`openssl x509 -noout -ext extendedKeyUsage,nameConstraints -in CA.pem` for every CA of the chain.",
    fix: "Use a CA without such restrictions: mtlskit's generated CA has none. With `ca.import`, import a CA whose extendedKeyUsage (if any) lists serverAuth and clientAuth and whose name constraints allow the services' addresses, then run `mtlskit apply`.",
    codes: [],
  },
  // ── time ─────────────────────────────────────────────────────────────────────────────────────
  {
    id: "not-yet-valid",
    title: "the certificate is not valid yet",
    stacks: ["go", "openssl", "node", "java", "gnutls", "rustls"],
    patterns: [
      /x509: certificate has expired or is not yet valid: current time (?<now>[^ \n]{1,40}) is before (?<notBefore>[^ \n"]{1,40})/i,
      /\bcertificate is not yet valid\b|\bCERT_NOT_YET_VALID\b/i,
      /CertificateNotYetValidException/i,
      /uses not yet valid certificate|\bNotValidYet\b/i,
      /\bclock skew\b/i,
    ],
    examples: [
      "x509: certificate has expired or is not yet valid: current time 2024-03-01T10:00:00Z is before 2024-03-01T10:04:00Z",
      "verify error:num=9:certificate is not yet valid",
      "CERT_NOT_YET_VALID: certificate is not yet valid",
      "- Status: The certificate is NOT trusted. The certificate chain uses not yet valid certificate.",
      "Clock skew issues",
    ],
    seenBy: VERIFIED,
    cause:
      "The certificate's notBefore is later than the verifier's clock[: it is valid from {notBefore}, and the verifier's time was {now}]. The verifier's clock is behind, or the certificate was issued on a host whose clock is ahead.",
    look: "Clocks on both hosts (`date -u`, `timedatectl`) and the certificate's dates: `openssl x509 -noout -dates -in cert.pem`.",
    fix: "Synchronise every host's clock (NTP, chrony). mtlskit backdates notBefore by 5 minutes for small skews; re-issue a certificate that was made with a future date with `mtlskit apply --reissue NAME`.",
    codes: ["not-yet-valid", "clock-skew", "conn-validity"],
  },
  {
    id: "expired",
    title: "a certificate has expired",
    stacks: ["go", "etcd", "openssl", "node", "curl", "python", "java", "gnutls", "rustls"],
    patterns: [
      /x509: certificate has expired or is not yet valid(?:: current time (?<now>[^ \n]{1,40}) is after (?<notAfter>[^ \n"]{1,40}))?/i,
      /\bcertificate has expired\b|\bCERT_HAS_EXPIRED\b/i,
      /CertificateExpiredException(?:: NotAfter: (?<notAfter>[^\n]{1,60}))?/i,
      /uses expired certificate|invalid peer certificate: Expired\b/i,
    ],
    examples: [
      'Error: GET "/health": Get https://localhost:8080/health?timeout=3: x509: certificate has expired or is not yet valid',
      'backend-1.example.com | {"component":"etcd","level":"warning","msg":"health check for peer a95ca1cdb0b1fcc3 could not connect: x509: certificate has expired or is not yet valid (prober \\"ROUND_TRIPPER_RAFT_MESSAGE\\")","pkg":"rafthttp","time":"2021-06-25T17:49:53Z"}',
      "x509: certificate has expired or is not yet valid: current time 2026-11-23T10:25:23Z is after 2026-11-22T10:25:23Z",
      "verify error:num=10:certificate has expired",
      "CERT_HAS_EXPIRED: certificate has expired",
      "curl: (60) SSL certificate problem: certificate has expired",
      "java.security.cert.CertificateExpiredException: NotAfter: Sat Jun 22 20:40:54 UTC 2021",
      "- Status: The certificate is NOT trusted. The certificate chain uses expired certificate.",
    ],
    seenBy: VERIFIED,
    cause:
      "A certificate of the chain is outside its validity period: most often it expired[ at {notAfter}][ (the verifier's time was {now})]; Go's message also covers a notBefore still in the future. In the Sensu runbook an expired backend certificate made the etcd peers refuse each other. A CA that expires takes every certificate it signed with it.",
    look: "`openssl x509 -noout -enddate -in cert.pem` for each service's cert.pem and for ca/ca.pem; `mtlskit plan` lists certificates that are expired or due for renewal.",
    fix: "Run `mtlskit apply`: it re-issues expired certificates and those inside renewBefore (`mtlskit plan` says which and why); deploy the new files and restart the services. Run it from a timer well inside renewBefore so nothing expires again. If the CA itself expired, give the manifest a new ca section and re-issue everything.",
    codes: ["expired", "ca-expired", "conn-validity", "renewal-due"],
  },
  {
    id: "peer-expired",
    title: "the peer says this side's certificate has expired",
    stacks: ["go", "openssl", "node", "java"],
    patterns: [/remote error: tls: expired certificate/i, /alert:? certificate[ _]expired|ALERT_CERTIFICATE_EXPIRED/i],
    examples: [
      "remote error: tls: expired certificate",
      "ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED 806C04C2EA7F0000:error:0A000415:SSL routines:ssl3_read_bytes:sslv3 alert certificate expired:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1601:SSL alert number 45",
      "javax.net.ssl.SSLHandshakeException: Received fatal alert: certificate_expired",
    ],
    seenBy: {
      client: "the SERVER[ {peer}] refused the client's certificate because it has expired.",
      server: "the CLIENT[ {peer}] refused the server's certificate because it has expired.",
    },
    cause:
      "The other side received this side's certificate, found it outside its validity period, and said so with TLS alert 45 (certificate_expired).",
    look: "`openssl x509 -noout -dates -in cert.pem` on this side's certificate, and the peer's clock.",
    fix: "Run `mtlskit apply` to re-issue the expired certificate, deploy this side's new cert.pem and key.pem, and restart it.",
    codes: ["expired", "conn-validity"],
  },
  // ── alerts: the peer refused ─────────────────────────────────────────────────────────────────
  {
    id: "peer-bad-certificate",
    title: "the peer refused this side's certificate",
    stacks: ["go", "etcd", "nats", "openssl", "node", "curl", "java"],
    patterns: [
      /remote error: tls: (?:bad|unsupported|unknown) certificate\b(?! authority)/i,
      /alert (?:bad|unsupported) certificate|alert certificate unknown|ALERT_(?:BAD|UNSUPPORTED)_CERTIFICATE/i,
      /Received fatal alert: (?:bad_certificate|certificate_unknown|unsupported_certificate)/i,
    ],
    examples: [
      'backend-1.example.com | {"component":"etcd","level":"warning","msg":"health check for peer a95ca1cdb0b1fcc3 could not connect: remote error: tls: bad certificate (prober \\"ROUND_TRIPPER_RAFT_MESSAGE\\")","pkg":"rafthttp","time":"2021-06-22T20:40:54Z"}',
      "remote error: tls: bad certificate",
      "http: TLS handshake error from 10.0.0.7:52814: remote error: tls: bad certificate",
      "140735252136896:error:14094412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:s3_pkt.c:1487:SSL alert number 42",
      "40F725A78D7F0000:error:0A000413:SSL routines:ssl3_read_bytes:sslv3 alert unsupported certificate:../ssl/record/rec_layer_s3.c:1601:SSL alert number 43",
      "javax.net.ssl.SSLHandshakeException: Received fatal alert: certificate_unknown",
    ],
    seenBy: {
      client: "the SERVER[ {peer}] refused the certificate this client presented; the server's log holds the reason.",
      server:
        "the CLIENT[ {peer}] refused the certificate this server presented, often for a name it dialed that is not in the SANs, or a CA it does not trust; the client's log holds the reason.",
    },
    cause:
      "This side presented its certificate and the other side rejected it with a TLS alert (bad_certificate, unsupported_certificate or certificate_unknown). The alert does not say why: Go sends bad certificate for every verification failure, such as an expired certificate (the Sensu runbook's etcd case), an issuer the peer does not trust, or a missing clientAuth or serverAuth usage.",
    look: "The peer's log at the same moment (it names the x509 reason), and this side's certificate: `openssl x509 -noout -dates -ext extendedKeyUsage -in cert.pem`, `openssl verify -CAfile PEER-ca.pem cert.pem`.",
    fix: "Run `mtlskit check` to find which certificate or connection fails. `mtlskit apply` re-issues expired certificates, and certificates with the wrong usage once services.NAME.usage says the service's role (dual if it serves and dials); deploy and restart.",
    codes: [
      "expired",
      "conn-validity",
      "eku-client",
      "conn-client-usage",
      "conn-client-untrusted",
      "conn-server-untrusted",
      "conn-server-usage",
      "conn-address",
    ],
  },
  {
    id: "certificate-required",
    title: "the server requires a client certificate, and the client sent none",
    stacks: ["go", "openssl", "node", "curl", "java"],
    // Only the client sees this text: Go's server sends the alert and logs `tls: client didn't
    // provide a certificate` (no-client-certificate). The bare form is the alert unwrapped from
    // the client's `remote error: ` net.OpError.
    patterns: [
      /\btls: certificate required/i,
      /alert certificate required|ALERT_CERTIFICATE_REQUIRED/i,
      /Received fatal alert: certificate_required/i,
    ],
    examples: [
      "remote error: tls: certificate required",
      "tls: certificate required",
      "40274AC40F7F0000:error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required:../ssl/record/rec_layer_s3.c:1601:SSL alert number 116",
      "curl: (56) OpenSSL SSL_read: error:0A00045C:SSL routines::tlsv13 alert certificate required, errno 0",
    ],
    seenBy: { client: "the server[ {peer}] asked for a client certificate and this client sent none." },
    cause:
      "The server requires mutual TLS and this client presented no certificate: its TLS configuration names no certificate and key, or names files it could not use.",
    look: "The client's TLS settings: a certificate and a key must both be configured (`--cert`/`--key`, cert_file/key_file, tls.crt/tls.key).",
    fix: "Configure the client with its mtlskit files: services/NAME/cert.pem and key.pem (client.pem and client-key.pem for a `split: true` service) and ca.pem. A client missing from the manifest needs a service entry with usage client or dual, then `mtlskit apply`.",
    codes: ["conn-missing", "cert-missing", "key-missing"],
  },
  {
    id: "no-client-certificate",
    title: "a client connected without a certificate, and this server requires one",
    stacks: ["go", "nats", "etcd", "openssl", "node", "postgresql", "java", "gnutls"],
    patterns: [
      /tls: client didn't provide a certificate/i,
      /peer[ _]did[ _]not[ _]return[ _]a[ _]certificate/i,
      /Empty client certificate chain/i,
      /connection requires a valid client certificate/i,
      /The peer did not send any certificate/i,
    ],
    examples: [
      "[ERR] 10.0.0.12:53330 - cid:5 - TLS handshake error: tls: client didn't provide a certificate",
      "http: TLS handshake error from 10.0.0.7:52814: tls: client didn't provide a certificate",
      "4087C0C0B37F0000:error:0A0000C7:SSL routines:tls_process_client_certificate:peer did not return a certificate:../ssl/statem/statem_srvr.c:3517:",
      "FATAL:  connection requires a valid client certificate",
      "javax.net.ssl.SSLHandshakeException: Empty client certificate chain",
    ],
    seenBy: { server: "a client[ {peer}] connected without presenting a certificate." },
    cause:
      "The server requires mutual TLS, and the client that connected presented no certificate: it is not configured with one, or it is an old client, a health check or a scanner.",
    look: "Which client connects from that address, and its TLS settings (certificate and key configured).",
    fix: "Configure the client with its mtlskit files (services/NAME/cert.pem and key.pem, or client.pem and client-key.pem for a `split: true` service, plus ca.pem); declare it in the manifest with usage client or dual and run `mtlskit apply` if it has none.",
    codes: ["conn-missing", "cert-missing"],
  },
  {
    id: "handshake-failure",
    title: "the two sides found nothing to agree on in the handshake",
    stacks: ["go", "openssl", "node", "java"],
    patterns: [
      /remote error: tls: handshake failure/i,
      /alert handshake failure|ALERT_HANDSHAKE_FAILURE/i,
      /Received fatal alert: handshake_failure/i,
      /no shared cipher|no cipher suite supported by both client and server|no shared signature algorithms|no suitable signature algorithm/i,
    ],
    examples: [
      "remote error: tls: handshake failure",
      "4077784A917F0000:error:0A000410:SSL routines:ssl3_read_bytes:sslv3 alert handshake failure:../ssl/record/rec_layer_s3.c:1601:SSL alert number 40",
      "tls: no cipher suite supported by both client and server",
      "javax.net.ssl.SSLHandshakeException: Received fatal alert: handshake_failure",
    ],
    seenBy: {},
    cause:
      "The handshake stopped with a handshake_failure alert: no common cipher suite, signature algorithm or key type (older stacks reject Ed25519 certificates, some also ECDSA P-384), or, from a TLS 1.2 server that requires client certificates, a client that sent none.",
    look: "Both logs, and a handshake from the client's host: `openssl s_client -connect HOST:PORT -cert cert.pem -key key.pem -CAfile ca.pem`.",
    fix: "If the client sent no certificate, configure its cert.pem and key.pem. If a peer cannot use the key type, choose one every peer supports (`key: ecdsa-p256` in defaults or on the service is the most widely supported, rsa-2048 for the oldest stacks) and run `mtlskit apply`.",
    codes: ["conn-missing", "weak-key"],
  },
  {
    id: "protocol-version",
    title: "the two sides share no TLS version",
    stacks: ["go", "openssl", "node", "java"],
    patterns: [
      /protocol version not supported|alert protocol version|ALERT_PROTOCOL_VERSION|Received fatal alert: protocol_version/i,
      /unsupported protocol|no protocols available|server selected unsupported protocol version|client offered only unsupported versions/i,
    ],
    examples: [
      "remote error: tls: protocol version not supported",
      "error:0A000102:SSL routines::unsupported protocol",
      "tls: client offered only unsupported versions: [301]",
    ],
    seenBy: {},
    cause:
      "One side requires a newer TLS version (1.2 or 1.3) than the other offers. This is not a certificate problem.",
    look: "The minimum and maximum TLS versions configured on both sides; `openssl s_client -connect HOST:PORT -tls1_2` (or -tls1_3).",
    fix: "Raise the old side to TLS 1.2 or later, or lower the other side's minimum version; mtlskit's certificates work with TLS 1.2 and 1.3 alike.",
    codes: [],
  },
  {
    id: "alpn",
    title: "the two sides agreed on no application protocol (ALPN)",
    stacks: ["go", "grpc", "openssl"],
    patterns: [/no application protocol|ALERT_NO_APPLICATION_PROTOCOL/i, /missing selected ALPN property/i],
    examples: [
      "transport: authentication handshake failed: credentials: cannot check peer: missing selected ALPN property. If you upgraded from a grpc-go version earlier than 1.67, your TLS connections may have stopped working due to ALPN enforcement.",
      "remote error: tls: no application protocol",
    ],
    seenBy: {},
    cause:
      "gRPC (grpc-go 1.67 and later) requires the server to negotiate the h2 protocol during the handshake; a proxy, load balancer or old server that does not breaks it. This is not a certificate problem.",
    look: "What the server negotiates: `openssl s_client -connect HOST:PORT -alpn h2` prints `ALPN protocol: h2` or `No ALPN negotiated`.",
    fix: "Let the server or the TLS-terminating proxy advertise h2, or upgrade it; `GRPC_ENFORCE_ALPN_ENABLED=false` on the client is a stopgap that grpc-go will remove.",
    codes: [],
  },
  {
    id: "plaintext-mismatch",
    title: "one side speaks TLS, the other plaintext",
    stacks: ["go", "grpc", "nats", "openssl", "node", "curl", "java", "python"],
    patterns: [
      /first record does not look like a TLS handshake/i,
      /wrong[ _]version[ _]number/i,
      /server gave HTTP response to HTTPS client|Client sent an HTTP request to an HTTPS server/i,
      /tls: oversized record received/i,
      /Unsupported or unrecognized SSL message/i,
      /SSL routines:[^:\n]{0,60}:http request|\bERR_SSL_HTTP_REQUEST\b/i,
      /nats: secure connection (?:required|not available)/i,
      /connection closed before server preface received/i,
    ],
    examples: [
      "http: TLS handshake error from 10.0.0.7:52814: tls: first record does not look like a TLS handshake",
      "transport: authentication handshake failed: tls: first record does not look like a TLS handshake",
      "ERR_SSL_WRONG_VERSION_NUMBER: 80CCC518D37F0000:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/openssl/openssl/ssl/record/ssl3_record.c:350:",
      "curl: (35) error:0A00010B:SSL routines::wrong version number",
      'Get "https://10.0.0.5:8080/health": http: server gave HTTP response to HTTPS client',
      "ERR_SSL_HTTP_REQUEST: 80CCC518D37F0000:error:0A00009C:SSL routines:ssl3_get_record:http request:../deps/openssl/openssl/ssl/record/ssl3_record.c:341:",
      "nats: secure connection not available",
    ],
    seenBy: {
      client:
        "it speaks TLS, but what answered[ at {peer}] does not: the port serves plaintext (HTTP, plain gRPC), or the client dialed the wrong port.",
      server: "a client[ {peer}] connected without TLS (plaintext HTTP or gRPC) to this TLS port.",
    },
    cause:
      "The two ends disagree about TLS on this port: one sent TLS records, the other plaintext. This is not a certificate problem.",
    look: "Which port serves TLS (`openssl s_client -connect HOST:PORT` shows a certificate only from a TLS server) and both sides' TLS settings (enabled, with cert, key and CA files).",
    fix: "Enable TLS on both ends: the server with its services/NAME/cert.pem, key.pem and ca.pem (and client certificates required), the client with its own cert.pem, key.pem and ca.pem; or dial the TLS port.",
    codes: [],
  },
  // ── files, loaded at startup ─────────────────────────────────────────────────────────────────
  {
    id: "key-mismatch",
    title: "the private key does not belong to the certificate",
    stacks: ["go", "nats", "openssl", "node", "nginx"],
    patterns: [
      /tls: private key does not match public key/i,
      /tls: private key type does not match public key type/i,
      /key[ _]values[ _]mismatch/i,
    ],
    examples: [
      "tls: private key does not match public key",
      "tls: private key type does not match public key type",
      "ERR_OSSL_X509_KEY_VALUES_MISMATCH error:05800074:x509 certificate routines::key values mismatch",
      'SSL_CTX_use_PrivateKey("/etc/nginx/tls/key.pem") failed (SSL: error:0B080074:x509 certificate routines:X509_check_private_key:key values mismatch)',
    ],
    seenBy: STARTUP,
    cause:
      "The key file and the certificate file come from different issuances: a key generated again after the certificate, files copied from another service, or an interrupted copy. Go's `private key type does not match public key type` means the key is not even of the certificate's type (an RSA key with an ECDSA certificate).",
    look: "Compare public keys: `openssl x509 -noout -pubkey -in cert.pem | openssl sha256` and `openssl pkey -pubout -in key.pem | openssl sha256` must print the same.",
    fix: 'Deploy cert.pem and key.pem together from the same services/NAME/ folder; `mtlskit apply` re-issues any pair whose key does not match (`mtlskit plan` says "key does not match certificate").',
    codes: ["key-mismatch"],
  },
  {
    id: "pem-swapped",
    title: "the certificate and key files are given the other way round",
    stacks: ["go", "nats", "etcd"],
    patterns: [
      /tls: failed to find certificate PEM data in certificate input, but did find a private key/i,
      /tls: found a certificate rather than a key in the PEM for the private key/i,
    ],
    examples: [
      "tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched",
      "tls: found a certificate rather than a key in the PEM for the private key",
    ],
    seenBy: STARTUP,
    cause:
      "Go's tls.X509KeyPair found a private key where it expected the certificate, or a certificate where it expected the key: the configuration names the key file as the certificate (or the reverse), or both settings name the same file.",
    look: "Which path the configuration gives for the certificate and which for the key (cert_file/key_file, --cert/--key, tls.crt/tls.key); `head -1` of each: the certificate starts with -----BEGIN CERTIFICATE-----.",
    fix: "Give services/NAME/cert.pem as the certificate and services/NAME/key.pem as the key, then restart the service; `mtlskit inspect FILE` names what a file holds.",
    codes: ["cert-malformed", "key-missing"],
  },
  {
    id: "key-encrypted",
    title: "the private key is encrypted, and the passphrase is missing or wrong",
    stacks: ["openssl", "node", "nginx", "go"],
    patterns: [
      /\bbad decrypt\b|\bERR_OSSL_BAD_DECRYPT\b/i,
      /problems getting password|bad password read|maybe wrong password/i,
      /libcrypto routines:[a-z_]{0,40}:interrupted or cancelled|\bERR_OSSL_CRYPTO_INTERRUPTED_OR_CANCELLED\b/i,
      /x509: decryption password incorrect/i,
    ],
    examples: [
      "ERR_OSSL_BAD_DECRYPT: error:1C800064:Provider routines::bad decrypt",
      "40972C35687F0000:error:04800065:PEM routines:PEM_do_header:bad decrypt:../crypto/pem/pem_lib.c:469:",
      "140374473037632:error:06065064:digital envelope routines:EVP_DecryptFinal_ex:bad decrypt:evp_enc.c:610:",
      'nginx: [emerg] cannot load certificate key "/etc/nginx/tls/key.pem": PEM_read_bio_PrivateKey() failed (SSL: error:0907B068:PEM routines:PEM_READ_BIO_PRIVATEKEY:bad password read)',
      "ERR_OSSL_CRYPTO_INTERRUPTED_OR_CANCELLED: error:07880109:common libcrypto routines::interrupted or cancelled",
    ],
    seenBy: STARTUP,
    cause:
      "The key file is encrypted with a passphrase (`-----BEGIN ENCRYPTED PRIVATE KEY-----`, or `Proc-Type: 4,ENCRYPTED` under `-----BEGIN RSA PRIVATE KEY-----`), and the program was given no passphrase or the wrong one: `bad decrypt` is the decryption of the key failing. Node 20 reports a missing passphrase the same way; crypto.createPrivateKey says `interrupted or cancelled`.",
    look: "`head -2 key.pem` shows whether it is encrypted; `openssl pkey -in key.pem -noout` asks for the passphrase and says whether it is right. `mtlskit inspect key.pem` names the cipher.",
    fix: "Give the program mtlskit's unencrypted key (services/NAME/key.pem, mode 0600), or the right passphrase (nginx ssl_password_file, Node's `passphrase`). To decrypt a key of your own: `openssl pkey -in key.pem -out key-plain.pem`, then `chmod 600 key-plain.pem`.",
    codes: ["key-encrypted", "key-missing"],
  },
  {
    id: "key-unsupported",
    title: "OpenSSL 3 cannot decode the private key: encrypted, in an unsupported format, or not a key",
    stacks: ["node", "openssl"],
    patterns: [/DECODER routines:[a-z_]{0,40}:unsupported/i, /\b1E08010C\b/i],
    examples: [
      "Error: error:1E08010C:DECODER routines::unsupported",
      "ERR_OSSL_UNSUPPORTED: error:1E08010C:DECODER routines::unsupported",
    ],
    seenBy: STARTUP,
    cause:
      "OpenSSL 3 (Node 17 and later) found no decoder for the data given as the private key. The file is not a key (a certificate, a CSR or a damaged block where the key belongs), it is encrypted and no passphrase was given, or it is in a format OpenSSL 3 does not read: a PKCS#12 bundle, an OpenSSH or PuTTY key, or a key encrypted with a legacy algorithm.",
    look: "`mtlskit inspect key.pem` says what the file holds (and, for an encrypted key, its cipher); `openssl pkey -in key.pem -noout` tries it the way OpenSSL 3 does.",
    fix: "Give the program services/NAME/key.pem, mtlskit's unencrypted PKCS#8 key. Convert a key of your own to PKCS#8: `openssl pkey -in key.pem -out key8.pem` (add `-legacy` with OpenSSL 3 for old ciphers; `openssl pkcs12 -in FILE -nodes -nocerts` extracts a PKCS#12 key; `ssh-keygen -p -m PKCS8 -f FILE` converts an OpenSSH key), then `chmod 600`.",
    codes: ["key-encrypted", "key-missing", "cert-malformed"],
  },
  {
    id: "pem-invalid",
    title: "a certificate or key file does not hold what was expected",
    stacks: ["go", "openssl", "node", "nginx"],
    patterns: [
      /tls: failed to find any PEM data in (?:certificate|key) input/i,
      /tls: failed to find "?CERTIFICATE"? PEM block in certificate input/i,
      /tls: failed to find PEM block with type ending in "?PRIVATE KEY"? in key input/i,
      /tls: failed to parse private key/i,
      /\bno start line\b|\bPEM_NO_START_LINE\b/i,
      /x509: malformed certificate/i,
    ],
    examples: [
      "tls: failed to find any PEM data in certificate input",
      'tls: failed to find "CERTIFICATE" PEM block in certificate input after skipping PEM blocks of the following types: [PRIVATE KEY]',
      'tls: failed to find PEM block with type ending in "PRIVATE KEY" in key input after skipping PEM blocks of the following types: [CERTIFICATE REQUEST]',
      "ERR_OSSL_PEM_NO_START_LINE error:0480006C:PEM routines::no start line",
    ],
    seenBy: STARTUP,
    cause:
      "A file given as a certificate or key is empty, not PEM, or holds the other one: the certificate and key paths swapped, or a CSR or DER file where PEM was expected.",
    look: "The first line of each file: a certificate starts with -----BEGIN CERTIFICATE-----, an mtlskit key with -----BEGIN PRIVATE KEY-----; and which path the configuration gives as the certificate and which as the key.",
    fix: "Point the service at services/NAME/cert.pem (the certificate, then any intermediates) and key.pem (its PKCS#8 key); `mtlskit apply` re-issues files it cannot parse.",
    codes: ["cert-malformed", "key-missing"],
  },
  {
    // The VirtRigaud mTLS guide (seeds/004) loads its CA file with Go's x509.CertPool.AppendCertsFromPEM
    // and, when it returns false, says only panic("Failed to parse CA certificate") (the server) or
    // fmt.Errorf("failed to parse CA certificate") (the manager); grpc-go's NewClientTLSFromFile says
    // "credentials: failed to append certificates". No reason follows: the cause is the file.
    id: "ca-bundle-unparsed",
    title: "the CA file holds no certificate the program could parse",
    stacks: ["go", "grpc"],
    patterns: [
      /\b(?:failed|unable) to (?:parse|append|add) (?:the )?(?:client |root |server )?CA(?: cert(?:ificate)?s?| bundle| file)?(?: (?:to|from) (?:the )?(?:cert(?:ificate)? )?pool)?\b/i,
      /credentials: failed to append certificates/i,
    ],
    examples: [
      "panic: Failed to parse CA certificate",
      "failed to create provider client: failed to parse CA certificate",
      "credentials: failed to append certificates",
      "failed to append CA certificate to pool",
    ],
    seenBy: STARTUP,
    cause:
      "Go's x509.CertPool.AppendCertsFromPEM added no certificate from the CA file: it reads only `-----BEGIN CERTIFICATE-----` blocks (without headers) and silently skips any it cannot decode, and the program's message is its own words for \"none was added\". The file is empty, DER instead of PEM, base64-encoded twice (a Kubernetes Secret whose `data:` was given an already-encoded value: the mounted ca.crt then starts with `LS0tLS1CRUdJTi`, the base64 of `-----BEGIN`), holds a key or another file, or its certificate is damaged (a truncated copy). A missing file fails earlier, with the read's own error (`failed to load CA certificate: open ...`).",
    look: "The start of the CA file where the program runs: `head -c 40 /etc/tls/ca.crt` (in a pod: `kubectl exec POD -- head -c 40 /etc/tls/ca.crt`) must print `-----BEGIN CERTIFICATE-----`; `mtlskit inspect ca.crt` says what the file holds and what is wrong with it. For a Secret: `kubectl get secret NAME -o yaml`: the value of ca.crt, decoded once with `base64 -d`, must start with -----BEGIN CERTIFICATE-----, not with LS0tLS1CRUdJTi.",
    fix: "Give the program the service's trust bundle, services/NAME/ca.pem, as its CA file. In Kubernetes, let mtlskit write the Secret (`mtlskit export --format kubernetes --out DIR`, then `kubectl apply -f DIR`: ca.crt is encoded once), or `kubectl create secret generic NAME --from-file=ca.crt=pki/services/NAME/ca.pem` rather than pasting base64 under `data:`. `mtlskit check` reports a bundle it cannot read.",
    codes: ["bundle-missing"],
  },
  {
    id: "file-unreadable",
    title: "a certificate, key or bundle file is missing or unreadable",
    stacks: ["go", "node", "postgresql", "nginx", "curl"],
    patterns: [
      /open (?<file>[^ \n:"']{1,300}\.(?:pem|crt|cer|key|cert)): (?:no such file or directory|permission denied)/i,
      /(?:ENOENT: no such file or directory|EACCES: permission denied), open '(?<file>[^'\n]{1,300}\.(?:pem|crt|cer|key|cert))'/i,
      /root certificate file "(?<file>[^"\n]{1,300})" does not exist/i,
      /could not (?:open|load) (?:certificate|private key|server certificate|root certificate) file "(?<file>[^"\n]{1,300})"/i,
      /certificate present, but not private key file "(?<file>[^"\n]{1,300})"/i,
      /cannot load certificate(?: key)? "(?<file>[^"\n]{1,300})": BIO_new_file\(\) failed/i,
      /could not load PEM client certificate|unable to set private key file|error setting certificate file/i,
    ],
    examples: [
      "failed to load client certificates: open /etc/manager-tls/tls.crt: no such file or directory",
      "Error: ENOENT: no such file or directory, open '/etc/mtls/services/api/key.pem'",
      'psql: error: connection to server at "10.0.0.5", port 5432 failed: root certificate file "/root/.postgresql/root.crt" does not exist',
      'nginx: [emerg] cannot load certificate "/etc/nginx/tls/cert.pem": BIO_new_file() failed',
    ],
    seenBy: STARTUP,
    cause:
      "The program could not read a certificate, key or trust bundle[ ({file})]: the path is wrong, the file was never copied to this host, or the user the service runs as may not read it.",
    look: "The path as the service's user: `sudo -u USER head -1 FILE`. mtlskit's layout: services/NAME/ has mode 0700 and key.pem 0600, so the folder must belong to the user that runs the service.",
    fix: "Copy the service's whole services/NAME/ folder to its host, owned by the service's user (`chown -R USER`), keeping the modes, and point the configuration at those paths; `mtlskit apply` recreates missing files in the PKI directory.",
    codes: ["cert-missing", "key-missing", "bundle-missing", "key-owner"],
  },
  {
    id: "key-load-failed",
    title: "the program could not load its private key (the reason follows, or is on the next lines)",
    stacks: ["openssl", "nginx", "curl"],
    level: "generic",
    patterns: [
      /unable to load (?:private key|key)\b/i,
      /Could not (?:read|find) [a-z ]{0,40}key from (?<file>[^ \n]{1,300})/i,
      /cannot load certificate key "(?<file>[^"\n]{1,300})"/i,
      /\bPEM_read_bio_PrivateKey\b|SSL_CTX_use_PrivateKey_file/i,
    ],
    examples: [
      "unable to load private key",
      "Could not read private key from /etc/mtls/services/api/key.pem",
      'nginx: [emerg] cannot load certificate key "/etc/nginx/tls/key.pem": PEM_read_bio_PrivateKey() failed',
      "error:140B0009:SSL routines:SSL_CTX_use_PrivateKey_file:PEM lib",
    ],
    seenBy: STARTUP,
    cause:
      "The program could not read its private key[ ({file})], and this line does not say why. The OpenSSL lines after it do: `bad decrypt` (an encrypted key, wrong or missing passphrase), `no start line` (not PEM, or not a key), `DECODER routines::unsupported` (a format OpenSSL 3 cannot read), `No such file or directory`.",
    look: "The error lines that follow this one (paste them all into `mtlskit explain -`), and the key file: `mtlskit inspect key.pem`, `openssl pkey -in key.pem -noout`.",
    fix: "Give the program services/NAME/key.pem, mtlskit's unencrypted PKCS#8 key, readable by the service's user and mode 0600; `mtlskit apply` recreates a missing or damaged key (and re-issues its certificate).",
    codes: ["key-missing", "key-encrypted", "key-owner"],
  },
  {
    id: "key-permissions",
    title: "the private key is readable by others, and the program refuses it",
    stacks: ["postgresql"],
    patterns: [/private key file "(?<file>[^"\n]{1,300})" has group or world access/i],
    examples: [
      'FATAL:  private key file "/var/lib/postgresql/server.key" has group or world access',
      'private key file "/home/app/.postgresql/postgresql.key" has group or world access; file must have permissions u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) or less if owned by root',
    ],
    seenBy: STARTUP,
    cause:
      "The private key[ {file}] can be read by other users, and PostgreSQL refuses such keys: 0600 owned by the user, or 0640 owned by root.",
    look: "`ls -l` the key file: its mode and owner.",
    fix: "`chmod 600` the key and `chown` it to the service's user. mtlskit writes keys with mode 0600; keep the mode when copying (`cp -p`, `install -m 600`).",
    codes: ["key-mode", "key-owner"],
  },
  // ── certificate contents ─────────────────────────────────────────────────────────────────────
  {
    id: "negative-serial",
    title: "the certificate has a negative serial number",
    stacks: ["go"],
    patterns: [/x509: negative serial number/i],
    examples: ["x509: negative serial number"],
    seenBy: VERIFIED,
    cause:
      "RFC 5280 requires positive serial numbers, and Go 1.23 and later refuse to parse a certificate with a negative one; hand-rolled CAs produce them when the top bit of a random serial is set.",
    look: "`openssl x509 -noout -serial -in cert.pem` (a leading byte of 80 or above in the DER is negative).",
    fix: "Re-issue it with mtlskit, whose serials are 16 positive random octets: run `mtlskit apply`. GODEBUG=x509negativeserial=1 makes Go accept it meanwhile.",
    codes: ["serial"],
  },
  {
    id: "critical-extension",
    title: "a certificate has a critical extension the verifier does not know",
    stacks: ["go", "openssl"],
    patterns: [/unhandled critical extension|\bUNHANDLED_CRITICAL_EXTENSION\b/i],
    examples: ["x509: unhandled critical extension", "verify error:num=34:unhandled critical extension"],
    seenBy: VERIFIED,
    cause:
      "A certificate marks an extension as critical that the verifier does not implement, so it must refuse the certificate (RFC 5280 4.2): custom or policy extensions from a corporate CA, or extensions a hand-made configuration marked critical.",
    look: "`openssl x509 -noout -text -in cert.pem` (and the CA): extensions marked `critical`.",
    fix: "Re-issue with mtlskit, which marks only basicConstraints and keyUsage critical: run `mtlskit apply`. With `ca.import`, the CA's own critical extensions must be ones every peer understands.",
    codes: ["critical-extension"],
  },
  {
    id: "weak-signature",
    title: "a certificate is signed with an algorithm the verifier refuses",
    stacks: ["go", "openssl", "java"],
    patterns: [
      /x509: cannot verify signature: insecure algorithm (?<algorithm>[^ \n()]{1,40})/i,
      /ca md too weak|CA signature digest algorithm too weak|\b(?:ERR_SSL_)?CA_MD_TOO_WEAK\b/i,
      /Algorithm constraints check failed on signature algorithm: (?<algorithm>[^ \n]{1,40})/i,
    ],
    examples: [
      "x509: cannot verify signature: insecure algorithm SHA1-RSA (temporarily override with GODEBUG=x509sha1=1)",
      "verify error:num=68:CA signature digest algorithm too weak",
      "ERR_SSL_CA_MD_TOO_WEAK: error:0A00018E:SSL routines::ca md too weak",
      "ERR_SSL_CA_MD_TOO_WEAK",
      "java.security.cert.CertPathValidatorException: Algorithm constraints check failed on signature algorithm: SHA1withRSA",
    ],
    seenBy: VERIFIED,
    cause:
      "The certificate is signed with SHA-1 or MD5[ ({algorithm})], which Go (since 1.18), OpenSSL 3 at its default security level and current Java refuse. `ca md too weak` (Node `ERR_SSL_CA_MD_TOO_WEAK`) at startup is OpenSSL refusing the program's own certificate or chain before any connection; during a handshake it is the peer's.",
    look: "`openssl x509 -noout -text -in cert.pem | grep 'Signature Algorithm'`.",
    fix: "Re-issue with mtlskit, which signs with SHA-256 or SHA-384 (or Ed25519): run `mtlskit apply`.",
    codes: ["weak-signature"],
  },
  {
    id: "weak-key",
    title: "a certificate's key is too small, too large or of an unsupported type",
    stacks: ["go", "openssl"],
    patterns: [
      /ee key too small|ca key too small|EE certificate key too weak|CA certificate key too weak|\b(?:ERR_SSL_)?(?:EE|CA)_KEY_TOO_SMALL\b/i,
      /crypto\/rsa: \d{1,5}-bit keys are insecure/i,
      /certificate contains an unsupported type of public key|unsupported elliptic curve/i,
      /tls: (?:server|client) sent certificate containing RSA key larger than \d{1,6} bits/i,
    ],
    examples: [
      "error:0A00018F:SSL routines::ee key too small",
      "ERR_SSL_EE_KEY_TOO_SMALL: error:0A00018F:SSL routines::ee key too small",
      "ERR_SSL_EE_KEY_TOO_SMALL",
      "40D73F9CFE7E0000:error:0A00018F:SSL routines:SSL_CTX_use_certificate:ee key too small:../ssl/ssl_rsa.c:222:",
      "verify error:num=66:EE certificate key too weak",
      "tls: failed to parse certificate from server: crypto/rsa: 1024-bit keys are insecure (see https://go.dev/pkg/crypto/rsa#hdr-Minimum_key_size)",
      "tls: server sent certificate containing RSA key larger than 8192 bits",
    ],
    seenBy: {},
    cause:
      "A key is below the verifier's minimum (RSA under 2048 bits at OpenSSL's default security level and in current Go), above Go's maximum (RSA over 8192 bits, refused by crypto/tls since Go 1.21: checking such signatures is a denial of service, CVE-2023-29409), or a curve it does not support. `ee key too small` (Node `ERR_SSL_EE_KEY_TOO_SMALL`) at startup is OpenSSL refusing the program's own certificate before any connection; during a handshake it is the peer's.",
    look: "`openssl x509 -noout -text -in cert.pem | grep 'Public-Key'`.",
    fix: "Re-issue with a supported key type: `key: ecdsa-p256` (or rsa-2048 to rsa-4096) in defaults or on the service, then run `mtlskit apply`.",
    codes: ["weak-key"],
  },
  {
    id: "pinned-fingerprint",
    title: "a pinned certificate fingerprint no longer matches",
    stacks: ["go"],
    patterns: [/certificate fingerprint mismatch/i],
    examples: ["certificate fingerprint mismatch"],
    seenBy: VERIFIED,
    cause:
      "The verifier pins the peer's certificate by its fingerprint (a VerifyPeerCertificate callback, as in the VirtRigaud runbook), and the certificate changed: every renewal or re-issue changes the fingerprint.",
    look: "The pinned value against `openssl x509 -noout -fingerprint -sha256 -in cert.pem` of the certificate the peer presents now.",
    fix: "Pin what survives renewal: trust the cluster CA (ca.pem) and authorize the peer by its identity URI (mtlskit writes one per service from identity.uri). If a fingerprint pin must stay, update it after every `mtlskit apply` that re-issues the peer.",
    codes: [],
  },
  {
    id: "postgres-cert-user",
    title: "PostgreSQL accepted the client certificate, but its CN is not the database user",
    stacks: ["postgresql"],
    patterns: [
      /certificate authentication failed for user "(?<user>[^"\n]{1,100})"/i,
      /provided user name \((?<user>[^)\n]{1,100})\) and authenticated user name \((?<cn>[^)\n]{1,200})\) do not match/i,
    ],
    examples: [
      'FATAL:  certificate authentication failed for user "grafana"',
      "LOG:  provided user name (grafana) and authenticated user name (grafana-reader) do not match",
    ],
    seenBy: { server: "the client's certificate verified, but it does not name the database user it logs in as." },
    cause:
      "With `cert` authentication (or clientcert=verify-full) PostgreSQL compares the client certificate's CN[ ({cn})] with the database user[ ({user})], unless pg_ident.conf maps one to the other.",
    look: "`openssl x509 -noout -subject -in cert.pem` of the client, the user it connects as, and pg_hba.conf and pg_ident.conf.",
    fix: "Give the client service the database user's name as its CN (services.NAME.cn; mtlskit also writes it as a SAN) and run `mtlskit apply`, or map the CN to the user in pg_ident.conf.",
    codes: [],
  },
  // ── not TLS: the connection itself ───────────────────────────────────────────────────────────
  {
    id: "connection-refused",
    title: "nothing accepts connections at that address: not a TLS problem",
    stacks: ["go", "node", "curl", "java", "python", "grpc"],
    patterns: [/\bECONNREFUSED\b|connection refused|Couldn't connect to server/i],
    examples: [
      "connect ECONNREFUSED 127.0.0.1:1",
      "dial tcp 192.168.2.23:50052: connect: connection refused",
      "curl: (7) Failed to connect to 10.0.0.5 port 8443 after 0 ms: Couldn't connect to server",
      "java.net.ConnectException: Connection refused",
    ],
    seenBy: { client: "it could not open a TCP connection[ to {peer}]; the handshake never started." },
    cause:
      "Nothing accepted the connection: the service is not running, listens on another port or address (127.0.0.1 instead of the host's IP), or a firewall rejects it. No certificate is involved.",
    look: "`nc -zv HOST PORT` from the client's host (as the ServiceRadar runbook does), and `ss -ltnp` on the server for what it listens on.",
    fix: "Start the service or correct its listen address and port; no certificate change helps. If a TLS error follows once the port answers, run `mtlskit explain` on it.",
    codes: [],
  },
  {
    id: "dns-failure",
    title: "the name could not be resolved: not a TLS problem",
    stacks: ["go", "node", "curl", "java", "python"],
    patterns: [
      /lookup (?<host>[^ \n:]{1,253})(?: on [^ \n]{1,100})?: no such host/i,
      /getaddrinfo (?:ENOTFOUND|EAI_AGAIN) (?<host>[^ \n]{1,253})/i,
      /Could not resolve host: (?<host>[^ \n]{1,253})/i,
      /Name or service not known|Temporary failure in name resolution|nodename nor servname provided|UnknownHostException/i,
    ],
    examples: [
      "dial tcp: lookup core.demo on 127.0.0.53:53: no such host",
      "getaddrinfo ENOTFOUND core.demo",
      "curl: (6) Could not resolve host: core.demo",
    ],
    seenBy: { client: "it could not resolve the name it was given; the handshake never started." },
    cause: "The client could not turn the name[ {host}] into an address. No certificate is involved.",
    look: "`getent hosts NAME` (or `dig NAME`) on the client's host.",
    fix: "Fix the DNS record, or dial an IP address: on sites without DNS (the ServiceRadar runbook) dial IPs and list them in the server's services.NAME.addresses, so they become IP SANs, then run `mtlskit apply`.",
    codes: [],
  },
  {
    id: "timeout",
    title: "no answer in time",
    stacks: ["go", "etcd", "grpc", "node", "curl", "java"],
    level: "generic",
    patterns: [
      /context deadline exceeded|\bDEADLINE_EXCEEDED\b|i\/o timeout|\bETIMEDOUT\b|Connection timed out|TLS handshake timeout/i,
    ],
    examples: ["context deadline exceeded", "dial tcp 10.0.0.5:2379: i/o timeout", "net/http: TLS handshake timeout"],
    seenBy: {},
    cause:
      "The peer did not answer in time[ ({peer})]: a firewall dropping packets, a wrong address or an overloaded peer, or a peer that keeps failing TLS while its clients retry. In the Sensu runbook, etcd's health table shows `context deadline exceeded` for members whose certificates had expired.",
    look: "Reachability first (`nc -zv HOST PORT`), then both sides' logs at the same time for a TLS error.",
    fix: "If the port answers, find the TLS error behind the timeout in the logs and run `mtlskit explain` on it; `mtlskit check` finds expired certificates and missing SANs.",
    codes: [],
  },
  {
    id: "peer-closed",
    title: "the peer closed the connection during the handshake",
    stacks: ["go", "etcd", "grpc", "openssl", "node", "java", "gnutls", "postgresql"],
    level: "generic",
    patterns: [
      /: (?:unexpected )?EOF(?=[\s"'),]|$)/i,
      /unexpected eof while reading|\bSSL_ERROR_SYSCALL\b|SSL SYSCALL error: EOF detected/i,
      /Client network socket disconnected before secure TLS connection was established|socket hang up/i,
      /connection reset by peer|\bECONNRESET\b|Remote host terminated the handshake|The TLS connection was non-properly terminated|server closed the connection unexpectedly/i,
    ],
    examples: [
      "Error: GET \"/health\": failed to request new refresh token; client returned 'Post https://localhost:8080/auth/token: EOF'",
      'Error: GET "/health": Get https://127.0.0.1:8080/health?timeout=3: EOF',
      "transport: authentication handshake failed: EOF",
      "40F7161DCA7F0000:error:0A000126:SSL routines:ssl3_read_n:unexpected eof while reading:../ssl/record/rec_layer_s3.c:318:",
      "ECONNRESET: Client network socket disconnected before secure TLS connection was established",
      "read tcp 10.0.0.4:51234->10.0.0.5:2379: read: connection reset by peer",
    ],
    seenBy: {
      client: "the server[ {peer}] hung up on it; the server's log holds the reason.",
      server:
        "the client[ {peer}] hung up on it; the client's log holds the reason (often it did not accept the server's certificate).",
    },
    cause:
      "The other side closed the connection during the handshake without a TLS alert: it refused this side's certificate (in the Sensu runbook sensuctl saw `EOF` once the backends' certificates had expired), it is not a TLS endpoint, or it crashed or restarted.",
    look: "The peer's log at the same moment; `openssl s_client -connect HOST:PORT -cert cert.pem -key key.pem -CAfile ca.pem` shows what the server does with this side's certificate; `mtlskit plan` shows expired certificates.",
    fix: "Run `mtlskit check` to find an expired or untrusted certificate; `mtlskit apply` re-issues expired ones. Then run `mtlskit explain` on the peer's error.",
    codes: ["expired", "conn-validity", "conn-client-untrusted", "conn-server-untrusted"],
  },
  {
    id: "verify-failed",
    title: "certificate verification failed; the reason is not in this message",
    stacks: ["openssl", "postgresql", "python", "grpc", "gnutls", "curl"],
    level: "generic",
    patterns: [
      /certificate[ _]verify[ _]failed/i,
      /certificate verification fail/i,
      /The certificate is NOT trusted/i,
      /\bcertificate chain issues?\b/i,
    ],
    examples: [
      'psql: error: connection to server at "10.0.0.5", port 5432 failed: SSL error: certificate verify failed',
      "40A795214A7F0000:error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:../ssl/statem/statem_clnt.c:1889:",
      "4067D9D88E7F0000:error:0A000086:SSL routines:tls_process_client_certificate:certificate verify failed:../ssl/statem/statem_srvr.c:3530:",
      "Handshake failed with fatal error SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED.",
      "Certificate Verification Failure",
      "Certificate chain issues",
    ],
    seenBy: VERIFIED,
    cause:
      "A certificate failed verification, and this message does not say why. OpenSSL-based programs (PostgreSQL, curl, Python, nginx, gRPC's C core) log the reason elsewhere: s_client's `verify error:num=N` line, or the other side's log.",
    look: "Reproduce it with openssl to see the reason: `openssl s_client -connect HOST:PORT -CAfile ca.pem -cert cert.pem -key key.pem -verify_return_error` (add `-verify_hostname NAME` or `-verify_ip IP` to check names), or `openssl verify -CAfile ca.pem cert.pem`; paste its `verify error` line into `mtlskit explain`.",
    fix: "Run `mtlskit check` to find the failing certificate or connection: an unknown authority, an expired certificate, a missing SAN or a wrong usage, each with its fix.",
    codes: [
      "untrusted",
      "expired",
      "san-missing",
      "conn-server-untrusted",
      "conn-client-untrusted",
      "conn-address",
      "conn-validity",
      "conn-server-usage",
      "conn-client-usage",
    ],
  },
  {
    id: "no-peer-certificate",
    title: "the server sent no certificate",
    stacks: ["openssl"],
    level: "generic",
    patterns: [/no peer certificate available/i],
    examples: ["no peer certificate available"],
    seenBy: { client: "it received no certificate from the server[ {peer}]." },
    cause:
      "The handshake ended before the server sent its certificate: an alert or a verify error stopped it (see the lines above), the server has no certificate for the requested name, or it does not speak TLS.",
    look: "The lines s_client printed before this one, and the server's log.",
    fix: "Paste the whole s_client output into `mtlskit explain -`; if the server has no certificate configured, point it at its services/NAME/cert.pem and key.pem.",
    codes: [],
  },
  {
    id: "handshake-failed",
    title: "a TLS handshake failed (the reason follows, or is in the peer's log)",
    stacks: ["go", "nats", "grpc", "java", "nginx"],
    level: "wrapper",
    patterns: [
      /\bTLS handshake (?:error|failures?)\b|\bhandshake failed\b|\bSSLHandshakeException\b|SSL_do_handshake\(\) failed/i,
    ],
    examples: [
      "[ERR] 10.0.0.12:53330 - cid:5 - TLS handshake error",
      "transport: authentication handshake failed",
      "javax.net.ssl.SSLHandshakeException",
      "TLS handshake failures",
    ],
    seenBy: {},
    cause:
      "A TLS handshake failed. This phrase only frames the reason: it follows in the same message, or, when nothing follows, it is in the other side's log.",
    look: "The rest of the message and the peer's log at the same moment. For gRPC, more detail: GRPC_GO_LOG_SEVERITY_LEVEL=info GRPC_GO_LOG_VERBOSITY_LEVEL=2 (Go), GRPC_TRACE=all GRPC_VERBOSITY=DEBUG (C core, Python, Node).",
    fix: "Paste the whole error line, or both sides' logs, into `mtlskit explain -`; `mtlskit check` tests every declared connection.",
    codes: [],
  },
  {
    id: "grpc-unavailable",
    title: "the gRPC client has no working connection (the reason is inside)",
    stacks: ["grpc"],
    level: "wrapper",
    patterns: [
      /code = Unavailable|\b14 UNAVAILABLE\b|StatusCode\.UNAVAILABLE|Received RST_STREAM with (?:error )?code \d{1,3}|failed to connect to all addresses/i,
    ],
    examples: [
      "Error: 14 UNAVAILABLE: No connection established",
      "rpc error: code = Unavailable desc = connection error",
      "Error: 13 INTERNAL: Received RST_STREAM with code 2 triggered by internal client error: Protocol error",
    ],
    seenBy: {},
    cause:
      "gRPC wraps the real failure (a TCP or TLS error) in UNAVAILABLE. `Received RST_STREAM` means the HTTP/2 stream was reset, often because one side speaks TLS and the other not, or a proxy in between cut it.",
    look: "The text after `desc =` or `Last error:` in the full message, and the server's log.",
    fix: "Paste the full message into `mtlskit explain` so the error inside is explained; `mtlskit check` tests every declared connection.",
    codes: [],
  },
  {
    id: "verify-ok",
    title: "verification succeeded: not an error",
    stacks: ["openssl"],
    level: "wrapper",
    patterns: [/Verify return code: 0 \(ok\)/i, /\.(?:pem|crt): OK\b/i],
    examples: ["Verify return code: 0 (ok)", "/etc/serviceradar/certs/core.pem: OK"],
    seenBy: {},
    cause: "OpenSSL reports success: the certificate verified against the CA file it was given.",
    look: "If a connection still fails, the failing check is another one: the peer verifying this side's certificate, or a name check that s_client skips without `-verify_hostname` or `-verify_ip`.",
    fix: "Nothing to fix in that certificate. Check the other direction: `openssl s_client -connect HOST:PORT -cert cert.pem -key key.pem -CAfile ca.pem -verify_ip IP`, or run `mtlskit check`.",
    codes: [],
  },
];
