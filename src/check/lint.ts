/**
 * Lints of one certificate, pure: a certificate, what it is expected to be, and the time go in;
 * lints come out. Each lint names what the certificate needs (`change`), which the caller turns
 * into a fix for its context: a `mtlskit apply` command for managed services, the change to make
 * for files mtlskit did not issue, or the bare change for `inspect`.
 */
import { isIP } from "node:net";
import { sansCover, type SanAddress } from "../pki/names.ts";
import type { Code } from "./codes.ts";
import type { Purpose } from "./chain.ts";
import type { Cert } from "./material.ts";

/** CLOCK_SKEW_MS: a peer's clock may run this far behind; mtlskit backdates notBefore by as much. */
export const CLOCK_SKEW_MS = 5 * 60_000;

/** Expectations say what a certificate is for; every field is optional (inspect knows nothing). */
export interface Expectations {
  /** profile: the usage the certificate must serve. */
  profile?: "server" | "client" | "dual";
  /** dns and ips: the addresses peers dial; every one must be a SAN (server-capable profiles). */
  dns?: readonly string[];
  ips?: readonly { text: string; bytes: Buffer }[];
  /** identity: the URI SAN it must carry; null: the manifest has no identity template. */
  identity?: string | null;
  /** renewBeforeMs: warn inside this window before notAfter. */
  renewBeforeMs?: number;
  /** skewMs: warn when notBefore is less than this far in the past. Default CLOCK_SKEW_MS. */
  skewMs?: number;
}

/** Lint is one problem of one certificate. */
export interface Lint {
  code: Code;
  message: string;
  /** change is what a corrected certificate needs, as an imperative phrase. */
  change: string;
}

const DAY = 86_400_000;
/** days words a span in whole days, or in hours or minutes under a day (never "0 days"). */
const days = (ms: number) => {
  const a = Math.abs(ms);
  const [n, unit] =
    a >= DAY
      ? [Math.floor(a / DAY), "day"]
      : a >= 3_600_000
        ? [Math.floor(a / 3_600_000), "hour"]
        : [Math.floor(a / 60_000), "minute"];
  return `${n} ${unit}${n === 1 ? "" : "s"}`;
};
const date = (d: Date) => d.toISOString().slice(0, 16).replace("T", " ") + " UTC";

/** covers tells whether the certificate's SANs include an address (IP by bytes, DNS by name); the CN never counts. */
export function covers(c: Cert, address: SanAddress): boolean {
  return sansCover(c.info.sans, address);
}

const canServe = (p: Expectations["profile"]) => p === "server" || p === "dual";
const canConnect = (p: Expectations["profile"]) => p === "client" || p === "dual";

/** KNOWN_CRITICAL names the extensions Go and OpenSSL both process, so they may be critical. */
export const KNOWN_CRITICAL = new Set([
  "basicConstraints",
  "keyUsage",
  "extKeyUsage",
  "subjectAltName",
  "nameConstraints",
  "certificatePolicies",
]);

/** KeyUsageVerdict says who refuses a leaf whose keyUsage lacks digitalSignature, presented for a purpose. */
export interface KeyUsageVerdict {
  /**
   * strict: only strict peers refuse it (GnuTLS, Java); OpenSSL (so Node, nginx, PostgreSQL) and
   * Go accept it in TLS 1.2 and 1.3. Otherwise OpenSSL refuses it too, in some TLS version.
   */
  strict: boolean;
  reason: string;
  /** change: what the corrected certificate needs, as an imperative phrase. */
  change: string;
}

/** KEY_WORDS names key algorithms in messages, with their article. */
const KEY_WORDS: Record<string, string> = { ed25519: "an Ed25519", ed448: "an Ed448" };

/**
 * keyUsageVerdict judges a leaf's keyUsage for `purpose`, or undefined when it has
 * digitalSignature (or no keyUsage at all). TLS signs the handshake with the leaf key (RFC 8446
 * 4.4.2.2, RFC 5246 7.4.3), and RFC 5280 4.2.1.3 ties signing to digitalSignature, but peers differ
 * (measured with real handshakes: OpenSSL 3.0.19 s_server/s_client, GnuTLS 3.7.9 gnutls-cli and
 * gnutls-serv, Java 17's JSSE; test/check-handshake.test.ts repeats the OpenSSL side):
 *
 *   - a server: OpenSSL's sslserver purpose accepts keyEncipherment or keyAgreement instead, and
 *     libssl checks keyUsage only for elliptic-curve keys in TLS 1.2: an ECDSA server finds no
 *     suite ("no shared cipher"), an OpenSSL client refuses an Ed25519 one ("ecc cert not for
 *     signing"). So an RSA server with keyEncipherment or keyAgreement works with OpenSSL in 1.2
 *     and 1.3, while an ECDSA or Ed25519 one fails in 1.2. GnuTLS (`Key usage violation in
 *     certificate has been detected`) and Java (`KeyUsage does not allow digital signatures`)
 *     refuse them all in every version.
 *   - a client: OpenSSL's sslclient purpose accepts keyAgreement instead of digitalSignature and
 *     refuses anything else (`unsuitable certificate purpose`); a GnuTLS server refuses it.
 *   - Go never checks a leaf's keyUsage (golang/go#40100).
 */
export function keyUsageVerdict(leaf: Cert, purpose: Purpose): KeyUsageVerdict | undefined {
  const ku = leaf.info.keyUsage;
  if (!ku || ku.includes("digitalSignature")) return undefined;
  const rsa = leaf.info.publicKey.algorithm === "rsa";
  const has = `its keyUsage is ${ku.join(", ") || "empty"}, without digitalSignature, which signs the ${purpose === "serverAuth" ? "server's handshake" : "client's CertificateVerify"}`;
  const change = `add digitalSignature to its keyUsage (keyUsage = digitalSignature${rsa ? ", keyEncipherment" : ""})`;
  const strictPeers =
    "GnuTLS (`Key usage violation in certificate has been detected`) and Java (`KeyUsage does not allow digital signatures`) refuse it";
  if (purpose === "serverAuth") {
    const alternative = ku.includes("keyEncipherment") || ku.includes("keyAgreement");
    if (alternative && rsa)
      return {
        strict: true,
        reason: `${has}: ${strictPeers} in TLS 1.2 and 1.3; OpenSSL (Node, nginx, PostgreSQL) and Go accept it`,
        change,
      };
    const alg = leaf.info.publicKey.algorithm;
    const tls12 =
      alg === "ec"
        ? "OpenSSL has no cipher suite for such an ECDSA server in TLS 1.2 (`no shared cipher`, the client hears `handshake failure`)"
        : `an OpenSSL client refuses such ${KEY_WORDS[alg] ?? `a ${alg}`} server in TLS 1.2 (\`ecc cert not for signing\`)`;
    if (alternative)
      return {
        strict: false,
        reason: `${has}: ${tls12}, and ${strictPeers} in every version; Go does not check keyUsage`,
        change,
      };
    return {
      strict: false,
      reason: `${has}: OpenSSL refuses it (\`unsuitable certificate purpose\`), and ${strictPeers}; Go does not check keyUsage`,
      change,
    };
  }
  if (ku.includes("keyAgreement"))
    return {
      strict: true,
      reason: `${has}: a GnuTLS server refuses it (\`Key usage violation in certificate has been detected\`), and so does Java; OpenSSL (Node, nginx, PostgreSQL) and Go accept it`,
      change,
    };
  return {
    strict: false,
    reason: `${has}: an OpenSSL server refuses it (\`unsuitable certificate purpose\`), and so do GnuTLS and Java; Go does not check keyUsage`,
    change,
  };
}

/** lintCertificate judges one leaf certificate against its expectations at `now`. */
export function lintCertificate(c: Cert, e: Expectations, now: Date): Lint[] {
  const out: Lint[] = [];
  const i = c.info;
  const t = now.getTime();
  const add = (code: Code, message: string, change: string) => out.push({ code, message, change });

  // Time.
  if (i.notAfter.getTime() < t)
    add(
      "expired",
      `expired ${days(t - i.notAfter.getTime())} ago (notAfter ${date(i.notAfter)})`,
      "issue a new certificate",
    );
  else if (i.notBefore.getTime() > t)
    add(
      "not-yet-valid",
      `is not valid until ${date(i.notBefore)}, ${days(i.notBefore.getTime() - t)} from now; a clock is wrong or it was issued with a future date`,
      "issue it with notBefore in the past, and check the issuing host's clock",
    );
  else {
    if (e.renewBeforeMs !== undefined && i.notAfter.getTime() - t < e.renewBeforeMs)
      add(
        "renewal-due",
        `expires in ${days(i.notAfter.getTime() - t)} (${date(i.notAfter)}), inside its renewal window of ${days(e.renewBeforeMs)}`,
        "renew it",
      );
    const skew = e.skewMs ?? CLOCK_SKEW_MS;
    if (t - i.notBefore.getTime() < skew)
      add(
        "clock-skew",
        `became valid ${Math.round((t - i.notBefore.getTime()) / 1000)} s ago (notBefore ${date(i.notBefore)}); until it is ${Math.round(skew / 60_000)} minutes old, a peer whose clock runs that far behind refuses it (this clears by itself)`,
        `deploy it after ${date(new Date(i.notBefore.getTime() + skew))}, or issue it with notBefore in the past (mtlskit backdates by ${Math.round(skew / 60_000)} minutes; openssl ca -startdate does too)`,
      );
  }

  // Usage.
  const eku = i.extKeyUsage;
  if (eku === undefined)
    add(
      "eku-absent",
      "has no extendedKeyUsage, so it is valid for any purpose",
      `add extendedKeyUsage ${e.profile === "client" ? "clientAuth" : e.profile === "server" ? "serverAuth" : "serverAuth, clientAuth"}`,
    );
  else {
    const want = [...(canServe(e.profile) ? ["serverAuth"] : []), ...(canConnect(e.profile) ? ["clientAuth"] : [])];
    const missing = want.filter((u) => !eku.includes(u));
    for (const u of missing) {
      const code: Code = u === "serverAuth" ? "eku-server" : "eku-client";
      const role = u === "serverAuth" ? "accepts connections" : "makes connections";
      add(
        code,
        `is used by a service that ${role} (usage ${e.profile}), but its extendedKeyUsage is ${eku.join(", ") || "empty"}, without ${u}`,
        `issue it with extendedKeyUsage ${want.join(", ")}`,
      );
    }
  }
  const ku = i.keyUsage;
  const alg = i.publicKey.algorithm;
  if (!i.isCA && ku) {
    // The roles it is used in: the profile's, else every role its extendedKeyUsage allows (inspect).
    const roles: Purpose[] = e.profile
      ? [
          ...(canServe(e.profile) ? ["serverAuth" as const] : []),
          ...(canConnect(e.profile) ? ["clientAuth" as const] : []),
        ]
      : (["serverAuth", "clientAuth"] as const).filter((p) => !eku || eku.includes(p));
    const verdicts = roles.map((p) => keyUsageVerdict(c, p)).filter((v) => v !== undefined);
    const worst = verdicts.find((v) => !v.strict) ?? verdicts[0];
    if (worst)
      add(
        worst.strict ? "key-usage-strict" : "key-usage",
        worst.reason.replace(/^its keyUsage/, "keyUsage"),
        worst.change,
      );
    const extra = ku.filter((b) => (b === "keyEncipherment" || b === "dataEncipherment") && alg !== "rsa");
    if (extra.length > 0)
      add(
        "key-usage-extra",
        `keyUsage has ${extra.join(", ")}, which ${alg.startsWith("e") ? "an" : "a"} ${alg.toUpperCase()} key cannot do (encryption is RSA-only)`,
        "issue it with keyUsage digitalSignature only",
      );
  }

  // Names.
  for (const s of i.sans) {
    if (s.type === "dns" && isIP(s.value))
      add(
        "san-ip-as-dns",
        `has ${s.value} as a DNS SAN; clients compare an IP only with IP SANs`,
        `write IP:${s.value} instead of DNS:${s.value}`,
      );
  }
  if (canServe(e.profile)) {
    // Exact SANs are looked up in a set before the full match: 50,000 addresses made this quadratic (issue 11).
    const exact = new Set(
      i.sans.map((s) => (s.type === "ip" ? `ip:${s.bytes.toString("hex")}` : `${s.type}:${s.value.toLowerCase()}`)),
    );
    const has = (a: SanAddress) =>
      exact.has(a.kind === "ip" ? `ip:${a.bytes.toString("hex")}` : `dns:${a.text.toLowerCase()}`) || covers(c, a);
    for (const ip of e.ips ?? [])
      if (!has({ kind: "ip", bytes: ip.bytes }))
        add(
          "san-missing",
          `lacks IP SAN ${ip.text}, an address peers dial (SANs: ${sanList(c)})`,
          `add IP:${ip.text} to subjectAltName`,
        );
    for (const d of e.dns ?? [])
      if (!has({ kind: "dns", text: d }))
        add(
          "san-missing",
          `lacks DNS SAN ${d}, a name peers dial (SANs: ${sanList(c)})`,
          `add DNS:${d} to subjectAltName`,
        );
    const cn = i.subjectAttributes.CN;
    const cnAddress = cn === undefined ? undefined : isIP(cn) ? undefined : { kind: "dns" as const, text: cn };
    if (
      cn !== undefined &&
      !(isIP(cn) ? i.sans.some((s) => s.type === "ip" && s.value === cn) : covers(c, cnAddress!))
    ) {
      add(
        "cn-not-san",
        `CN ${cn} is not among its SANs (${sanList(c)}); Go ignores the CN, so a peer dialing ${cn} fails`,
        `add ${isIP(cn) ? "IP" : "DNS"}:${cn} to subjectAltName`,
      );
    }
  }
  const uris = i.sans.filter((s) => s.type === "uri").map((s) => s.value);
  if (e.identity !== undefined && e.identity !== null) {
    if (uris.length !== 1)
      add(
        "identity-count",
        `has ${uris.length === 0 ? "no URI SAN" : `${uris.length} URI SANs (${uris.join(", ")})`}; its identity must be exactly one URI SAN, ${e.identity}`,
        `issue it with exactly one URI SAN, URI:${e.identity}`,
      );
    else if (uris[0] !== e.identity)
      add(
        "identity-mismatch",
        `has identity ${uris[0]}, but the manifest says ${e.identity}`,
        `issue it with URI:${e.identity}`,
      );
  } else if (uris.length > 1)
    add(
      "identity-count",
      `has ${uris.length} URI SANs (${uris.join(", ")}); identity-based authorization needs exactly one`,
      "issue it with one URI SAN",
    );

  // Structure and strength.
  if (i.isCA || ku?.includes("keyCertSign"))
    add(
      "leaf-is-ca",
      i.isCA
        ? "is a CA certificate (basicConstraints cA=TRUE) used as a service certificate"
        : "has keyUsage keyCertSign: it could sign certificates",
      "issue it with basicConstraints CA:FALSE and without keyCertSign",
    );
  for (const x of i.extensions) {
    if (x.critical && !KNOWN_CRITICAL.has(x.name ?? ""))
      add(
        "critical-extension",
        `has the critical extension ${x.name ?? x.oid}, which Go and OpenSSL refuse as unhandled`,
        `issue it without ${x.name ?? x.oid}, or mark it non-critical`,
      );
  }
  const weak = keyWeakness(c.info.publicKey);
  if (weak) add("weak-key", weak, WEAK_KEY_CHANGE);
  const h = i.signatureAlgorithm.hash;
  if (h === "sha1" || h === "md5")
    add(
      "weak-signature",
      `is signed with ${i.signatureAlgorithm.name}, which Go and OpenSSL 3 refuse`,
      "have the CA sign it with SHA-256 or stronger",
    );
  if (i.serialNegative || i.serialBits === 0)
    add(
      "serial",
      `has a ${i.serialNegative ? "negative" : "zero"} serial number (RFC 5280 4.1.2.2 requires a positive one); Go refuses it`,
      "issue it with a positive random serial (openssl x509 -req without -set_serial)",
    );
  else if (i.serialBits < 64)
    add(
      "serial",
      `has a ${i.serialBits}-bit serial number; 64 random bits or more make serials unpredictable (CA/B BR 7.1)`,
      "issue it with a random serial of at least 64 bits",
    );
  const selfSigned = c.fields.issuer.equals(c.fields.subject);
  if (i.subjectKeyId === undefined || (i.authorityKeyId === undefined && !selfSigned)) {
    const which = [
      i.subjectKeyId === undefined ? "subjectKeyIdentifier" : "",
      i.authorityKeyId === undefined && !selfSigned ? "authorityKeyIdentifier" : "",
    ]
      .filter(Boolean)
      .join(" and ");
    add(
      "key-ids",
      `has no ${which}`,
      `issue it with ${which === "subjectKeyIdentifier" ? "subjectKeyIdentifier = hash" : which === "authorityKeyIdentifier" ? "authorityKeyIdentifier = keyid" : "subjectKeyIdentifier = hash and authorityKeyIdentifier = keyid"}`,
    );
  }
  return out;
}

/** MAX_RSA_BITS: Go's crypto/tls refuses a peer's certificate whose RSA key is larger (see keyWeakness). */
export const MAX_RSA_BITS = 8192;

/** WEAK_KEY_CHANGE is the change that cures weak-key. */
export const WEAK_KEY_CHANGE = `issue it with an ECDSA P-256/P-384, RSA 2048 to ${MAX_RSA_BITS} bits or Ed25519 key`;

/**
 * keyWeakness says why a public key (a certificate's, or a key file's) is too weak, too large or
 * unusual for TLS peers, as a phrase starting with "has", or undefined. RSA above 8192 bits: Go's
 * crypto/tls refuses any certificate a peer sends with such a key (`tls: server sent certificate
 * containing RSA key larger than 8192 bits`, and `client sent` on a server), since Go 1.21 and
 * 1.20.7 (CVE-2023-29409: verifying huge RSA signatures is a denial of service); GODEBUG
 * tlsmaxrsasize raises the limit since Go 1.22, which nobody's peers can be assumed to set.
 */
export function keyWeakness(k: { algorithm: string; bits: number; curve: string | undefined }): string | undefined {
  // "an 8200-bit", "an 11-bit", "an 18000-bit": numbers spoken with a vowel first.
  const a = /^8|^1[18](?:\d{3})*$/.test(String(k.bits)) ? "an" : "a";
  if (k.algorithm === "rsa" && k.bits < 2048)
    return `has ${a} ${k.bits}-bit RSA key; OpenSSL at security level 2 and Go refuse RSA below 2048 bits`;
  if (k.algorithm === "rsa" && k.bits > MAX_RSA_BITS)
    return `has ${a} ${k.bits}-bit RSA key; Go's crypto/tls refuses a certificate with an RSA key over ${MAX_RSA_BITS} bits (\`tls: server sent certificate containing RSA key larger than ${MAX_RSA_BITS} bits\`, since Go 1.21), and every handshake spends far longer on it`;
  if (k.algorithm === "ec" && !["P-256", "P-384", "P-521"].includes(k.curve ?? ""))
    return `has an EC key on curve ${k.curve}, which TLS peers do not support`;
  if (!["rsa", "ec", "ed25519", "ed448"].includes(k.algorithm))
    return `has a key of algorithm ${k.algorithm}, which TLS peers do not support`;
  return undefined;
}

/** sanList renders a certificate's SANs the way openssl prints them. */
export function sanList(c: Cert): string {
  const s = c.info.sans.map(
    (x) =>
      `${x.type === "ip" ? "IP" : x.type === "dns" ? "DNS" : x.type === "uri" ? "URI" : x.type === "email" ? "email" : "other"}:${x.value}`,
  );
  return s.length === 0 ? "none" : s.join(", ");
}
