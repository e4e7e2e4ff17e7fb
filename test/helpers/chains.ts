/**
 * chains: the table of certificate chains `mtlskit verify` is judged on against `openssl verify
 * -x509_strict` (test/verify.test.ts) and Go's crypto/x509 (test/interop/verify.interop.ts). Each
 * case is CERT (leaf first, as a server's file), BUNDLE and optionally CHAIN (--untrusted), forged
 * in memory, with the flags, the check codes verify must give (none: valid), and every deliberate
 * disagreement with OpenSSL or Go named: there the verifier's verdict is the opposite of verify's,
 * and the test asserts exactly that.
 */
import { writeFileSync } from "node:fs";
import * as path from "node:path";
import type { Code } from "../../src/check/codes.ts";
import { forge, newKey, type Forged, type ForgeSpec } from "./forge.ts";

/** ChainCase is one row of the table. */
export interface ChainCase {
  /** name: `ok/...` when verify accepts it, `fail/...` when it refuses. */
  name: string;
  cert: Forged[];
  ca: Forged[];
  untrusted?: Forged[];
  usage?: "server" | "client";
  host?: string;
  at?: Date;
  /** codes: the check codes of verify's reasons, in order; empty when valid. */
  codes: Code[];
  /** openssl / go: why that verifier deliberately answers the opposite of verify here. */
  openssl?: string;
  go?: string;
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** WHY names the deliberate disagreements, one sentence each; the tests print them. */
export const WHY = {
  order:
    "CERT starts with the intermediate: openssl verify and Go judge that first certificate as the leaf (and it chains), while a TLS server presenting the file sends the intermediate as its certificate; verify refuses (chain-order)",
  partial:
    "a bundle without the self-signed root (an intermediate, or the leaf itself): Go stops at any certificate of its roots pool; OpenSSL (and so Node and every OpenSSL server) needs a self-signed root unless -partial_chain; verify follows OpenSSL (anchor-not-root)",
  strictKu: "-x509_strict refuses a CA without keyUsage (RFC 5280 4.2.1.3); Go accepts it",
  strictAki:
    "-x509_strict refuses a certificate below the root without authorityKeyIdentifier (RFC 5280 4.2.1.1); Go accepts it",
  strictSki: "-x509_strict refuses a CA without subjectKeyIdentifier (RFC 5280 4.2.1.2); Go accepts it",
  cn: "a host only in the subject CN, no DNS SAN: OpenSSL's -verify_hostname falls back to the CN; Go (since 1.15), Node's service library and verify never do",
  leafKu:
    "a leaf whose keyUsage lacks digitalSignature: Go never checks keyUsage (golang/go#40100); OpenSSL's verify accepts keyEncipherment for a server, but the TLS handshake signs with the leaf key (RFC 8446 4.4.2.2), so verify refuses like check (key-usage) for this ECDSA leaf, whose TLS 1.2 handshake OpenSSL itself cannot complete; an RSA leaf with keyEncipherment is accepted, as check accepts it with a key-usage-strict warning",
  leafKuGo:
    "a leaf whose keyUsage has neither digitalSignature, keyEncipherment nor keyAgreement: Go never checks keyUsage (golang/go#40100); OpenSSL refuses it as we do",
  anyEkuCa:
    "an intermediate whose extendedKeyUsage is only anyExtendedKeyUsage: Go accepts it for any usage; OpenSSL's purpose check of the CA does not count it (unsuitable certificate purpose at depth 1), and verify refuses what either refuses",
  sha1: "a SHA-1 signature: openssl verify judges signature digests only from -auth_level 1 (CA signature digest algorithm too weak), which every TLS context sets (security level 1 and above) and its verify command does not; Go refuses SHA-1 since 1.18",
  anyEkuLeaf:
    "a leaf whose extendedKeyUsage is only anyExtendedKeyUsage: Go accepts it for any usage; OpenSSL's purpose check does not count anyExtendedKeyUsage for sslserver/sslclient, and verify follows check (eku-server)",
} as const;

/** chainCases forges the table; keys are made once per call (P-256, fast). */
export function chainCases(): ChainCase[] {
  const now = Date.now();
  // The root and the intermediate are valid long before and after the leaves, so --at moves only the leaf out.
  const long = { notBefore: new Date(now - 365 * DAY), notAfter: new Date(now + 365 * DAY) };
  const root = forge({ ca: true, cn: "Verify Root", ...long });
  const root2 = forge({ ca: true, cn: "Other Root" });
  const sameName = forge({ ca: true, cn: "Verify Root" });
  const inter = forge({ ca: true, cn: "Verify Inter", issuer: root, ...long });
  const inter2 = forge({ ca: true, cn: "Verify Inter 2", issuer: inter });
  const sans = ["DNS:api.test", "DNS:*.svc.test", "IP:10.0.0.5", "IP:::1"];
  const leafOf = (issuer: Forged, spec: ForgeSpec = {}) => forge({ cn: "api", sans, issuer, ...spec });
  const leaf = leafOf(inter);
  const direct = leafOf(root);
  const c = (name: string, rest: Omit<ChainCase, "name" | "codes"> & { codes?: Code[] }): ChainCase => ({
    name,
    codes: [],
    ...rest,
  });

  const pathLen0 = forge({ ca: { pathLen: 0 }, cn: "PathLen0 Inter", issuer: root });
  const underPathLen0 = forge({ ca: true, cn: "Under PathLen0", issuer: pathLen0 });
  const pathLen1 = forge({ ca: { pathLen: 1 }, cn: "PathLen1 Inter", issuer: root });
  const underPathLen1 = forge({ ca: true, cn: "Under PathLen1", issuer: pathLen1 });
  const notCa = forge({ cn: "not a CA", issuer: root, ca: false, ku: ["digitalSignature", "keyCertSign"], sans: [] });
  const noCertSign = forge({ ca: true, cn: "No keyCertSign", issuer: root, ku: ["cRLSign", "digitalSignature"] });
  const clientOnlyInter = forge({ ca: true, cn: "Client Inter", issuer: root, eku: ["clientAuth"] });
  const serverInter = forge({ ca: true, cn: "Server Inter", issuer: root, eku: ["serverAuth"] });
  const anyInter = forge({ ca: true, cn: "Any Inter", issuer: root, eku: ["anyExtendedKeyUsage"] });
  const clientRoot = forge({ ca: true, cn: "Client Root", eku: ["clientAuth"] });
  const expiredInter = forge({
    ca: true,
    cn: "Expired Inter",
    issuer: root,
    notBefore: new Date(now - 30 * DAY),
    notAfter: new Date(now - DAY),
  });
  const expiredRoot = forge({
    ca: true,
    cn: "Expired Root",
    notBefore: new Date(now - 30 * DAY),
    notAfter: new Date(now - DAY),
  });
  const noKuInter = forge({ ca: true, cn: "No keyUsage Inter", issuer: root, ku: null });
  const noSkiInter = forge({ ca: true, cn: "No SKI Inter", issuer: root, ski: false });
  const rsaRoot = forge({ ca: true, cn: "RSA Root", key: newKey("rsa-2048") });
  const selfLeaf = forge({ cn: "self", sans: ["DNS:self.test"] });
  const window = { notBefore: new Date(now - 10 * DAY), notAfter: new Date(now + 10 * DAY) };
  const timed = leafOf(inter, window);
  const critical = { oid: "1.3.6.1.4.1.55555.1", critical: true, value: Buffer.from([0x05, 0x00]) };

  return [
    // ── paths that hold ─────────────────────────────────────────────────────────────────────
    c("ok/leaf issued by the root", { cert: [direct], ca: [root] }),
    c("ok/leaf and its intermediate in CERT", { cert: [leaf, inter], ca: [root] }),
    c("ok/leaf in CERT, intermediate through --untrusted", { cert: [leaf], ca: [root], untrusted: [inter] }),
    c("ok/two intermediates in CERT", { cert: [leafOf(inter2), inter2, inter], ca: [root] }),
    c("ok/two intermediates, listed root-side first", { cert: [leafOf(inter2), inter, inter2], ca: [root] }),
    c("ok/bundle with other roots", { cert: [leaf, inter], ca: [root2, root, rsaRoot] }),
    c("ok/extra unrelated certificate in CERT", { cert: [leaf, inter, leafOf(root2)], ca: [root] }),
    c("ok/extra certificates in --untrusted", {
      cert: [leaf],
      ca: [root],
      untrusted: [root2, inter, forge({ ca: true, cn: "Stray Inter", issuer: root2 })],
    }),
    c("ok/a same-named root with another key beside the right one (a CA rollover)", {
      cert: [direct],
      ca: [sameName, root],
    }),
    c("ok/the leaf itself in the bundle beside its root", { cert: [leaf, inter], ca: [leaf, root] }),
    c("ok/root repeated at the end of CERT", { cert: [leaf, inter, root], ca: [root] }),
    c("ok/as a server", { cert: [leaf, inter], ca: [root], usage: "server" }),
    c("ok/as a client", { cert: [leaf, inter], ca: [root], usage: "client" }),
    c("ok/as a server at its DNS name", { cert: [leaf, inter], ca: [root], usage: "server", host: "api.test" }),
    c("ok/as a server at a name its wildcard covers", {
      cert: [leaf, inter],
      ca: [root],
      usage: "server",
      host: "db.svc.test",
    }),
    c("ok/as a server at its IPv4 SAN", { cert: [leaf, inter], ca: [root], usage: "server", host: "10.0.0.5" }),
    c("ok/as a server at its IPv6 SAN", { cert: [leaf, inter], ca: [root], usage: "server", host: "::1" }),
    c("ok/a leaf without extendedKeyUsage serves", {
      cert: [leafOf(inter, { eku: null }), inter],
      ca: [root],
      usage: "server",
    }),
    c("ok/a client-only leaf without --usage", { cert: [leafOf(inter, { eku: ["clientAuth"] }), inter], ca: [root] }),
    c("ok/self-signed leaf trusted as itself", {
      cert: [selfLeaf],
      ca: [selfLeaf],
      usage: "server",
      host: "self.test",
    }),
    c("ok/pathLen 0 intermediate signing the leaf", { cert: [leafOf(pathLen0), pathLen0], ca: [root] }),
    c("ok/pathLen 1 with one CA below it", { cert: [leafOf(underPathLen1), underPathLen1, pathLen1], ca: [root] }),
    c("ok/intermediate restricted to serverAuth, as a server", {
      cert: [leafOf(serverInter), serverInter],
      ca: [root],
      usage: "server",
    }),
    c("ok/RSA root, ECDSA leaf", { cert: [leafOf(rsaRoot)], ca: [rsaRoot], usage: "server" }),
    c("ok/Ed25519 leaf", { cert: [leafOf(inter, { key: newKey("ed25519") }), inter], ca: [root], usage: "client" }),
    c("ok/--at inside the validity", { cert: [timed, inter], ca: [root], at: new Date(now + 9 * DAY) }),
    // ── missing, unknown or wrong issuers ───────────────────────────────────────────────────
    c("fail/missing intermediate", { cert: [leaf], ca: [root], codes: ["untrusted"] }),
    c("fail/missing the second of two intermediates", {
      cert: [leafOf(inter2), inter2],
      ca: [root],
      codes: ["untrusted"],
    }),
    c("fail/issued by a root not in the bundle", { cert: [leafOf(root2)], ca: [root], codes: ["untrusted"] }),
    c("fail/self-signed leaf not in the bundle", { cert: [selfLeaf], ca: [root], codes: ["untrusted"] }),
    c("fail/same-named root with another key", { cert: [direct], ca: [sameName], codes: ["bad-signature"] }),
    c("fail/intermediate first in CERT (wrong order)", {
      cert: [inter, leaf],
      ca: [root],
      codes: ["chain-order"],
      openssl: WHY.order,
      go: WHY.order,
    }),
    c("fail/intermediate-only bundle", { cert: [leaf], ca: [inter], codes: ["untrusted"], go: WHY.partial }),
    c("fail/the leaf itself in the bundle, without its root", {
      cert: [leaf, inter],
      ca: [leaf],
      codes: ["untrusted"],
      go: WHY.partial,
    }),
    c("fail/issuer is not a CA", { cert: [leafOf(notCa), notCa], ca: [root], codes: ["untrusted"] }),
    c("fail/intermediate without keyCertSign", {
      cert: [leafOf(noCertSign), noCertSign],
      ca: [root],
      codes: ["untrusted"],
    }),
    c("fail/pathLen 0 exceeded by a CA below it", {
      cert: [leafOf(underPathLen0), underPathLen0, pathLen0],
      ca: [root],
      codes: ["untrusted"],
    }),
    c("fail/SHA-1 signature on the leaf", {
      cert: [leafOf(inter, { hash: "sha1" }), inter],
      ca: [root],
      codes: ["weak-signature"],
      openssl: WHY.sha1,
    }),
    c("fail/unknown critical extension on the leaf", {
      cert: [leafOf(inter, { extra: [critical] }), inter],
      ca: [root],
      codes: ["critical-extension"],
    }),
    // ── -x509_strict ────────────────────────────────────────────────────────────────────────
    c("fail/intermediate without keyUsage", {
      cert: [leafOf(noKuInter), noKuInter],
      ca: [root],
      codes: ["ca-key-usage"],
      go: WHY.strictKu,
    }),
    c("fail/leaf without authorityKeyIdentifier", {
      cert: [leafOf(inter, { aki: false }), inter],
      ca: [root],
      codes: ["key-ids"],
      go: WHY.strictAki,
    }),
    c("fail/intermediate without subjectKeyIdentifier", {
      cert: [leafOf(noSkiInter), noSkiInter],
      ca: [root],
      codes: ["key-ids"],
      go: WHY.strictSki,
    }),
    // ── time ────────────────────────────────────────────────────────────────────────────────
    c("fail/expired leaf", {
      cert: [leafOf(inter, { notBefore: new Date(now - 30 * DAY), notAfter: new Date(now - HOUR) }), inter],
      ca: [root],
      codes: ["expired"],
    }),
    c("fail/leaf not yet valid", {
      cert: [leafOf(inter, { notBefore: new Date(now + DAY), notAfter: new Date(now + 30 * DAY) }), inter],
      ca: [root],
      codes: ["not-yet-valid"],
    }),
    c("fail/expired intermediate", { cert: [leafOf(expiredInter), expiredInter], ca: [root], codes: ["expired"] }),
    c("fail/expired root", { cert: [leafOf(expiredRoot)], ca: [expiredRoot], codes: ["expired"] }),
    c("fail/--at after notAfter", {
      cert: [timed, inter],
      ca: [root],
      at: new Date(now + 11 * DAY),
      codes: ["expired"],
    }),
    c("fail/--at before notBefore", {
      cert: [timed, inter],
      ca: [root],
      at: new Date(now - 11 * DAY),
      codes: ["not-yet-valid"],
    }),
    // ── usage, along the chain ──────────────────────────────────────────────────────────────
    c("fail/client-only leaf as a server", {
      cert: [leafOf(inter, { eku: ["clientAuth"] }), inter],
      ca: [root],
      usage: "server",
      codes: ["eku-server"],
    }),
    c("fail/server-only leaf as a client", {
      cert: [leafOf(inter, { eku: ["serverAuth"] }), inter],
      ca: [root],
      usage: "client",
      codes: ["eku-client"],
    }),
    c("fail/intermediate restricted to clientAuth, as a server", {
      cert: [leafOf(clientOnlyInter), clientOnlyInter],
      ca: [root],
      usage: "server",
      codes: ["eku-server"],
    }),
    c("fail/intermediate with only anyExtendedKeyUsage, as a server", {
      cert: [leafOf(anyInter), anyInter],
      ca: [root],
      usage: "server",
      codes: ["eku-server"],
      go: WHY.anyEkuCa,
    }),
    c("fail/root restricted to clientAuth, as a server", {
      cert: [leafOf(clientRoot)],
      ca: [clientRoot],
      usage: "server",
      codes: ["eku-server"],
    }),
    c("fail/leaf with only anyExtendedKeyUsage, as a server", {
      cert: [leafOf(inter, { eku: ["anyExtendedKeyUsage"] }), inter],
      ca: [root],
      usage: "server",
      codes: ["eku-server"],
      go: WHY.anyEkuLeaf,
    }),
    c("fail/leaf keyUsage keyEncipherment only, as a server", {
      cert: [leafOf(inter, { ku: ["keyEncipherment"] }), inter],
      ca: [root],
      usage: "server",
      codes: ["key-usage"],
      openssl: WHY.leafKu,
      go: WHY.leafKu,
    }),
    c("fail/leaf keyUsage cRLSign only, as a client", {
      cert: [leafOf(inter, { ku: ["cRLSign"] }), inter],
      ca: [root],
      usage: "client",
      codes: ["key-usage"],
      go: WHY.leafKuGo,
    }),
    // ── names ───────────────────────────────────────────────────────────────────────────────
    c("fail/a DNS name not among the SANs", {
      cert: [leaf, inter],
      ca: [root],
      usage: "server",
      host: "web.test",
      codes: ["san-missing"],
    }),
    c("fail/a name two labels under the wildcard", {
      cert: [leaf, inter],
      ca: [root],
      usage: "server",
      host: "a.b.svc.test",
      codes: ["san-missing"],
    }),
    c("fail/an IP not among the SANs", {
      cert: [leaf, inter],
      ca: [root],
      usage: "server",
      host: "10.0.0.6",
      codes: ["san-missing"],
    }),
    c("fail/an IP written as a DNS SAN", {
      cert: [leafOf(inter, { sans: ["DNS:10.0.0.7"] }), inter],
      ca: [root],
      usage: "server",
      host: "10.0.0.7",
      codes: ["san-ip-as-dns"],
    }),
    c("fail/a name only in the CN", {
      cert: [leafOf(inter, { cn: "cn-only.test", sans: ["URI:spiffe://verify.test/api"] }), inter],
      ca: [root],
      usage: "server",
      host: "cn-only.test",
      codes: ["san-missing"],
      openssl: WHY.cn,
    }),
    // ── several reasons at once ─────────────────────────────────────────────────────────────
    c("fail/expired, client-only and the wrong name", {
      cert: [
        leafOf(inter, { eku: ["clientAuth"], notBefore: new Date(now - 30 * DAY), notAfter: new Date(now - HOUR) }),
        inter,
      ],
      ca: [root],
      usage: "server",
      host: "web.test",
      codes: ["expired", "eku-server", "san-missing"],
    }),
  ];
}

/** CaseFiles are a case's files on disk: CERT, BUNDLE, CHAIN, and openssl's -untrusted (CERT's certificates and CHAIN's). */
export interface CaseFiles {
  cert: string;
  ca: string;
  untrusted?: string;
  opensslUntrusted: string;
}

/** writeCase writes a case's files into `dir` under the case's index. */
export function writeCase(dir: string, index: number, c: ChainCase): CaseFiles {
  const file = (what: string, certs: Forged[]) => {
    const p = path.join(dir, `${index}-${what}.pem`);
    writeFileSync(p, certs.map((x) => x.pem).join(""));
    return p;
  };
  return {
    cert: file("cert", c.cert),
    ca: file("ca", c.ca),
    ...(c.untrusted ? { untrusted: file("untrusted", c.untrusted) } : {}),
    opensslUntrusted: file("openssl-untrusted", [...c.cert, ...(c.untrusted ?? [])]),
  };
}

/** verifyArgs is the `mtlskit verify` command line of a case. */
export function verifyArgs(c: ChainCase, f: CaseFiles): string[] {
  return [
    "verify",
    f.cert,
    "--ca",
    f.ca,
    ...(f.untrusted ? ["--untrusted", f.untrusted] : []),
    ...(c.usage ? ["--usage", c.usage] : []),
    ...(c.host !== undefined ? ["--host", c.host] : []),
    ...(c.at ? ["--at", c.at.toISOString()] : []),
    "--json",
  ];
}
