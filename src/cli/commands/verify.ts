/** `mtlskit verify CERT`: is this certificate valid for that bundle, usage, host and time; if not, why and the fix. */
import { existsSync } from "node:fs";
import { isIPv6 } from "node:net";
import { parseArgs } from "node:util";
import { EXIT, UsageError } from "../../errors.ts";
import { PLATFORMS } from "../../trust/platform.ts";
import {
  judgeVerify,
  loadCerts,
  loadCrl,
  loadSystemCerts,
  Material,
  USAGES,
  type Usage,
  type Verdict,
} from "../../verify/index.ts";
import { COMMON_FLAGS, flags, parseTimeFlag } from "../args.ts";
import { paint, type Io } from "../output.ts";

/** VERIFY_HELP is the manual of `mtlskit verify`. */
export const VERIFY_HELP = `mtlskit verify: is a certificate valid for a trust bundle, a usage, a host and a time; if not, why and the fix.

USAGE
  mtlskit verify CERT [--ca BUNDLE] [--untrusted CHAIN] [--host NAME|IP] [--usage server|client]
                      [--at TIME] [--crl FILE] [--json]

Builds the chain from the first certificate of CERT through the intermediates (the rest of CERT,
as a server sends its file, and CHAIN) to a self-signed root in BUNDLE, with check's chain
builder: every issuer a CA allowed to sign (keyUsage keyCertSign, pathLenConstraint), every
signature verified (SHA-1 and MD5 refused), no unknown critical extension, every certificate
valid at TIME, and the rules of \`openssl verify -x509_strict\` (CAs with keyUsage and
subjectKeyIdentifier, authorityKeyIdentifier below the root). With --usage, extendedKeyUsage of
the leaf and of every CA above it (as Go checks it) and the leaf's keyUsage; with --host, a DNS
or IP SAN of the leaf (never the CN). Each reason is printed with check's code and its fix.
Where OpenSSL and Go disagree, verify refuses what either refuses: a BUNDLE without the
self-signed root (Go accepts), a host only in the CN (OpenSSL accepts), the -x509_strict rules
and a CA whose extendedKeyUsage is only anyExtendedKeyUsage (Go accepts).

  mtlskit verify cert.pem --ca root.pem --usage server --host api.internal
is  openssl verify -x509_strict -CAfile root.pem -untrusted cert.pem -purpose sslserver \\
      -verify_hostname api.internal cert.pem
(openssl verify reads only the first certificate of its file: pass the file again as -untrusted.)

FLAGS
      --ca BUNDLE        trust anchors (PEM); default the system bundle
                         (/etc/ssl/certs/ca-certificates.crt or /etc/pki/tls/certs/ca-bundle.crt)
      --untrusted CHAIN  intermediate CAs (PEM) to build the chain with; never trusted themselves
      --host NAME|IP     the name or address a client dials: a DNS SAN (wildcards in the left-most
                         label) or an IP SAN must match; an IPv6 address bare or in brackets ([::1])
      --usage U          server (extendedKeyUsage serverAuth) or client (clientAuth)
      --at TIME          judge validity at TIME (ISO 8601, e.g. 2027-01-01) instead of now
      --crl FILE         the issuer's CRL (PEM or DER; mtlskit apply writes DIR/ca/crl.pem): refuse the
                         certificate when it is listed (revoked), as openssl verify -crl_check does; the
                         CRL must be signed by the issuer and not past its nextUpdate (crl-untrusted, crl-expired)
      --json             the verdict as JSON: {ok, cert, ca, at, usage, host, chain, reasons}

EXAMPLES
  mtlskit verify pki/services/api/cert.pem --ca pki/ca/ca.pem --usage server --host 10.0.0.5
  mtlskit verify fullchain.pem --ca root.pem --usage client
  mtlskit verify client.pem --ca pki/ca/ca.pem --crl pki/ca/crl.pem
  mtlskit verify leaf.pem --untrusted intermediate.pem --ca root.pem --at 2027-01-01
  mtlskit verify cert.pem --ca root.pem --json | jq -r '.reasons[] | .code + ": " + .fix'

EXIT CODES
  0  valid
  1  not valid: each reason is printed with its fix
  2  invalid input: bad flags, no CERT, or a file that holds no certificate
  3  a file could not be read (missing, permission denied, a FIFO or device)
`;

/** systemBundle is the platform's PEM bundle of trusted roots, as \`mtlskit trust\` knows them. */
function systemBundle(): string {
  const bundles = Object.values(PLATFORMS).flatMap((p) => ("bundle" in p ? [p.bundle] : []));
  const found = bundles.find((b) => existsSync(b));
  if (found === undefined)
    throw new UsageError(
      `mtlskit verify: no --ca given and no system bundle here (${bundles.join(", ")}); name the trust anchors with --ca BUNDLE`,
    );
  return found;
}

const usageOf = (text: string | undefined): Usage | undefined => {
  if (text === undefined || text in USAGES) return text as Usage | undefined;
  throw new UsageError(`mtlskit verify: --usage must be server or client; got ${JSON.stringify(text)}`);
};

/** verdictJson is the stable machine form of a verdict (--json). */
function verdictJson(
  v: Verdict,
  o: {
    cert: string;
    ca: string;
    untrusted: string | undefined;
    at: Date;
    usage: Usage | undefined;
    host: string | undefined;
  },
) {
  return {
    ok: v.ok,
    cert: o.cert,
    ca: o.ca,
    untrusted: o.untrusted ?? null,
    at: o.at.toISOString(),
    usage: o.usage ?? null,
    host: o.host ?? null,
    chain: v.path.map((c) => ({
      subject: c.info.subject,
      issuer: c.info.issuer,
      notBefore: c.info.notBefore.toISOString(),
      notAfter: c.info.notAfter.toISOString(),
      sha256: c.sha256,
    })),
    reasons: v.reasons.map((r) => ({ code: r.code, subject: r.subject, message: r.message, fix: r.fix })),
  };
}

/** hostFlag reads --host: a DNS name or an IP address; a bracketed IPv6 address, as in a URL ([::1]), is that address. */
function hostFlag(host: string | undefined): string | undefined {
  if (host === "")
    throw new UsageError("mtlskit verify: --host must name a DNS name or an IP address; got an empty string");
  const inner = host === undefined ? undefined : /^\[(.*)\]$/.exec(host)?.[1];
  if (inner === undefined) return host;
  if (isIPv6(inner)) return inner;
  throw new UsageError(
    `mtlskit verify: --host ${host}: brackets hold only an IPv6 address (--host [::1] or --host ::1); give a DNS name or an IPv4 address without them`,
  );
}

/** verifyCommand runs `mtlskit verify`. */
export async function verifyCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("verify", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        ca: { type: "string" },
        untrusted: { type: "string" },
        host: { type: "string" },
        usage: { type: "string" },
        at: { type: "string" },
        crl: { type: "string" },
        json: { type: "boolean" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(VERIFY_HELP), EXIT.ok);
  if (positionals.length !== 1)
    throw new UsageError(
      `mtlskit verify: name exactly one CERT file${positionals.length > 1 ? ` (got ${positionals.length}: ${positionals.join(", ")}); intermediates go after the leaf in CERT or in --untrusted` : ""}. Run \`mtlskit verify --help\` for usage.`,
    );
  const host = hostFlag(values.host);
  const usage = usageOf(values.usage);
  const at = values.at === undefined ? new Date() : parseTimeFlag("verify", values.at);
  const cert = positionals[0]!;
  const ca = values.ca ?? systemBundle();
  const material = new Material();
  const certs = loadCerts(material, cert, "CERT");
  const untrusted = values.untrusted === undefined ? [] : loadCerts(material, values.untrusted, "--untrusted");
  const system = values.ca === undefined ? loadSystemCerts(material, ca) : undefined;
  if (system?.skipped && !values.json)
    io.err(
      `note: ${system.skipped} certificate${system.skipped === 1 ? "" : "s"} of the system bundle ${ca} could not be decoded and ${system.skipped === 1 ? "was" : "were"} skipped\n`,
    );
  const v = judgeVerify(material, {
    certs,
    untrusted,
    anchors: system?.certs ?? loadCerts(material, ca, "--ca"),
    files: { cert, ca, untrusted: values.untrusted },
    host,
    usage,
    at,
    crl: values.crl === undefined ? undefined : { info: loadCrl(values.crl), file: values.crl },
  });
  if (values.json) {
    io.out(`${JSON.stringify(verdictJson(v, { cert, ca, untrusted: values.untrusted, at, usage, host }), null, 2)}\n`);
    return v.ok ? EXIT.ok : EXIT.findings;
  }
  const what = [
    usage && `as a ${usage}`,
    host !== undefined && `for ${host}`,
    values.at !== undefined && `at ${at.toISOString()}`,
  ]
    .filter(Boolean)
    .join(" ");
  if (v.ok) {
    io.out(
      `${paint(io, "green", "OK")}: ${cert} is valid${what ? ` ${what}` : ""}: ${v.path.map((c) => c.info.subjectAttributes.CN ?? c.info.subject).join(" <- ")} (in ${ca}).\n`,
    );
    return EXIT.ok;
  }
  io.out(`${cert}${what ? ` ${what}` : ""} against ${ca}:\n`);
  for (const r of v.reasons)
    io.out(`  ${paint(io, "red", "error")} ${paint(io, "bold", r.code)}: ${r.message}\n        fix: ${r.fix}\n`);
  io.out(`\n${paint(io, "red", "FAIL")}: ${v.reasons.length} reason${v.reasons.length === 1 ? "" : "s"}.\n`);
  return EXIT.findings;
}
