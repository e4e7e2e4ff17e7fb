/**
 * checkInventory: the judgement of a whole deployment, pure over what readInventory read. Three
 * passes: every certificate on its own (lint.ts, plus its chain to its own bundle), the files as
 * deployed (modes, owners, stray CA keys, identical bundles), then every declared connection
 * simulated from both ends the way a TLS handshake verifies it (chain.ts).
 */
import * as path from "node:path";
import type { Connection, Manifest } from "../manifest/index.ts";
import { buildChain, invalidAt, purposeProblem, type ChainFailure, type ChainResult, type Purpose } from "./chain.ts";
import { CODES, type Code } from "./codes.ts";
import { finding, type About, type Finding } from "./finding.ts";
import { isProblem, type CertFile, type Inventory, type ServiceFiles, type SlotFiles } from "./inventory.ts";
import { covers, lintCertificate, sanList, CLOCK_SKEW_MS } from "./lint.ts";
import type { Cert, Material } from "./material.ts";
import type { CrlInfo } from "../pki/crl.ts";
import type { OnlineFacts } from "../state/online.ts";
import { crlProblems, revocationOf as revokedCert, revokedMessage } from "./revocation.ts";

/** CheckOptions set the time and how fixes are worded. */
export interface CheckOptions {
  /** now: the time certificates are judged at. Default: the current time. */
  now?: Date;
  /** skewMs: clock-skew margin on notBefore. Default: CLOCK_SKEW_MS (5 minutes). */
  skewMs?: number;
  /** applyCommand: the command that re-issues managed certificates, e.g. `mtlskit apply -f m.yaml --pki ./pki`. */
  applyCommand?: string;
  /** ignore: codes not reported (and not counted, nor failing a connection). Default: none. */
  ignore?: readonly Code[];
  /** crl: the CA's CRL (DIR/ca/crl.pem) as read (state/revocations.ts), or why it cannot be used. Default: none (no revocation checks). */
  crl?: CrlInfo | { error: string };
  /**
   * crlAt: when the CRL's nextUpdate is judged. Default: the current time, not `now`: apply
   * re-signs the CRL on every run once half its life has passed, so a later `now` (check --at,
   * asking which certificates will be due) would otherwise always find today's CRL stale.
   */
  crlAt?: Date;
  /** online: the ledger's facts (check/online.ts readOnline): a csr service with rows there is judged by its newest unrevoked online certificate. Default: none (no ledger). */
  online?: OnlineFacts;
}

/** CertificateReport is one certificate of the inventory, for outputs such as Prometheus metrics. */
export interface CertificateReport {
  /** id: the slot id (`core`, `core/client`). */
  id: string;
  service: string;
  file: string;
  subject: string | undefined;
  notAfter: Date | undefined;
  /** renewAt: when the certificate enters its renewal window (notAfter - renewBefore). */
  renewAt: Date | undefined;
  /** ca: the issuing CA's subject and the earliest notAfter along the chain to the bundle; absent when it does not chain. */
  ca: { subject: string; notAfter: Date } | undefined;
  sha256: string | undefined;
  errors: number;
  warnings: number;
  /** online: set for a certificate the online CA issued (read from the ledger, not a file): its serial, validity start and the ledger file. */
  online?: { serial: string; notBefore: Date; ledger: string };
}

/** ConnectionReport is the verdict on one declared connection. */
export interface ConnectionReport {
  index: number;
  from: string;
  to: string;
  address: string;
  /** ok: both ends will accept each other's certificate. */
  ok: boolean;
  /** causes: the codes of the connection's error findings. */
  causes: Code[];
}

/** CaReport is one CA certificate found in a bundle or chain. */
export interface CaReport {
  subject: string;
  file: string;
  notAfter: Date;
  sha256: string;
}

/** CheckReport is everything check found. */
export interface CheckReport {
  now: Date;
  findings: Finding[];
  certificates: CertificateReport[];
  cas: CaReport[];
  connections: ConnectionReport[];
  errors: number;
  warnings: number;
}

const DAY = 86_400_000;
const date = (d: Date) => d.toISOString().slice(0, 10);
/** when prints a date, with the time when `other` falls on the same day (so the two can be told apart). */
const when = (d: Date, other: Date) =>
  date(d) === date(other) ? d.toISOString().slice(0, 16).replace("T", " ") + " UTC" : date(d);

/** Ctx carries one run's shared state. */
class Ctx {
  readonly findings: Finding[] = [];
  /** caOf: per slot id, the chain's issuer and earliest CA notAfter (for status and metrics). */
  readonly caOf = new Map<string, { subject: string; notAfter: Date }>();
  /** chains: per bundle, per certificate file, the path built (Material's lists are canonical, so identical files share an entry). */
  private readonly chains = new WeakMap<readonly Cert[], Map<readonly Cert[], ChainResult>>();
  constructor(
    readonly material: Material,
    readonly manifest: Manifest,
    readonly inv: Inventory,
    readonly now: Date,
    readonly apply: string,
    readonly ignore: ReadonlySet<Code> = new Set(),
  ) {}

  add(code: Code, about: About, message: string, fix: string): boolean {
    if (this.ignore.has(code)) return false;
    this.findings.push(finding(code, about, message, fix));
    return true;
  }

  /** chain builds (once per leaf file and bundle) the path from a certificate file to a bundle. */
  chain(file: CertFile, bundle: CertFile): ChainResult {
    let byLeaf = this.chains.get(bundle.certs);
    if (!byLeaf) this.chains.set(bundle.certs, (byLeaf = new Map()));
    let r = byLeaf.get(file.certs);
    if (!r) byLeaf.set(file.certs, (r = buildChain(this.material, file.certs[0]!, file.certs.slice(1), bundle.certs)));
    return r;
  }

  /** fixFor words the fix of a certificate problem: a command for managed services, the change for external files. */
  fixFor(sf: ServiceFiles, slot: SlotFiles["slot"], change: string): string {
    if (sf.slots.some((s) => s.slot.id === slot.id && s.online)) return onlineFix(sf.service.name);
    if (sf.service.csr) return csrFix(sf.service.name);
    if (!sf.external) return `run \`${this.apply} --reissue ${sf.service.name}\``;
    const cert = sf.slots.find((s) => s.slot.id === slot.id)!.cert;
    return `${change ? `${change}: ` : ""}re-issue ${cert.path}; or remove services.${sf.service.name}.files and let \`mtlskit apply\` issue it`;
  }
}

/** onlineFix: an online-issued certificate is renewed by the service's agent, or replaced by enrolling it again. */
const onlineFix = (name: string) =>
  `${name}'s agent renews it from the online CA (\`mtlskit serve\`): see \`mtlskit agent --status\` on ${name}'s host; to replace it now, enroll the agent again with a token from \`mtlskit token create ${name}\``;

/**
 * onlineRenewBeforeMs: an agent renews at two thirds of its certificate's lifetime
 * (docs/online-ca.md renewAfter), so the last third is its renewal window.
 */
const onlineRenewBeforeMs = (c: Cert) => Math.floor((c.fields.notAfter.getTime() - c.fields.notBefore.getTime()) / 3);

/** csrFix: a csr service's certificate is renewed from its host, never by apply (which does not hold its key). */
const csrFix = (name: string) =>
  `run \`mtlskit csr --service ${name} --out DIR\` on ${name}'s host, then \`mtlskit sign DIR/${name}.csr --service ${name}\` on the CA's host`;

function certAbout(sf: ServiceFiles, s: SlotFiles): About {
  return { kind: "certificate", service: sf.service.name, id: s.slot.id, file: s.cert.path };
}

/** shortName names a certificate by its CN when it has one (DNs repeated in every line drown the message). */
const shortName = (c: Cert) =>
  c.info.subjectAttributes.CN !== undefined ? `CN=${c.info.subjectAttributes.CN}` : c.info.subject || "(empty subject)";
const issuerName = (c: Cert) =>
  /(?:^|, )CN=([^,]*)/.exec(c.info.issuer)?.[0]?.replace(/^, /, "") ?? (c.info.issuer || "(empty)");

/** failureText words a chain failure for the certificate's own bundle or a peer's. */
function failureText(f: ChainFailure, bundlePath: string): string {
  switch (f.kind) {
    case "unknown-issuer":
      return `does not chain to ${bundlePath}: its issuer ${issuerName(f.cert)} is not there, nor in the certificate file after the leaf (where an intermediate CA belongs); it was signed by a CA this bundle does not trust`;
    case "bad-signature":
      return `does not chain to ${bundlePath}: ${shortName(f.issuer)} there has the issuer's name but not the key that signed ${shortName(f.cert)} (a CA re-created under the same name?)`;
    case "issuer-not-ca":
      return `does not chain to ${bundlePath}: ${shortName(f.cert)}'s issuer ${shortName(f.issuer)} may not sign certificates: ${f.reason}`;
    case "weak-signature":
      return `does not chain to ${bundlePath}: ${shortName(f.cert)} is signed with ${f.cert.info.signatureAlgorithm.name}; Go refuses ${f.hash.toUpperCase()} signatures (unknown authority) and OpenSSL 3 refuses to load the certificate (ca md too weak)`;
    case "critical-extension":
      return `is refused by every verifier: ${shortName(f.cert)} has the critical extension ${f.extension}, which Go and OpenSSL do not process (unhandled critical extension)`;
    case "anchor-not-root":
      return `reaches ${bundlePath} only at ${shortName(f.anchor)}, which is not a self-signed root, and its issuer ${issuerName(f.anchor)} is nowhere: OpenSSL and Node refuse such a chain (unable to get issuer certificate), Go accepts it; add the root CA to ${bundlePath}`;
  }
}

/** orderProblem says why a certificate file does not start with its leaf: a CA first, a leaf further down. */
function orderProblem(file: CertFile): string | undefined {
  const [first, ...rest] = file.certs;
  const leafAt = rest.findIndex((c) => !c.info.isCA);
  if (!first?.info.isCA || leafAt < 0) return undefined;
  return `starts with the CA certificate ${shortName(first)}; the leaf ${shortName(rest[leafAt]!)} is certificate ${leafAt + 2}, so the service would present the CA`;
}

/** notIssued: a managed service whose files are all missing: apply has not run for it (one finding, not five). */
const notIssued = (sf: ServiceFiles) =>
  !sf.external &&
  isProblem(sf.bundle) &&
  sf.bundle.missing &&
  sf.slots.every((s) => isProblem(s.cert) && s.cert.missing && isProblem(s.key) && s.key.missing);

function lintCertificates(ctx: Ctx, skewMs: number): void {
  for (const sf of ctx.inv.services) {
    const s = sf.service;
    if (notIssued(sf)) {
      ctx.add(
        "cert-missing",
        certAbout(sf, sf.slots[0]!),
        `${s.name} has not been issued yet: ${path.dirname(sf.slots[0]!.cert.path)} does not exist`,
        `run \`${ctx.apply}\``,
      );
      continue;
    }
    for (const slot of sf.slots) {
      const about = certAbout(sf, slot);
      if (isProblem(slot.cert)) {
        ctx.add(
          slot.cert.missing ? "cert-missing" : "cert-malformed",
          about,
          `${slot.cert.path} ${slot.cert.error}`,
          sf.external
            ? `put ${s.name}'s certificate (PEM, leaf first) at ${slot.cert.path}, or correct services.${s.name}.files`
            : slot.online
              ? onlineFix(s.name)
              : s.csr
                ? csrFix(s.name)
                : `run \`${ctx.apply}\` to issue it`,
        );
      }
      if (isProblem(slot.key)) {
        ctx.add(
          "key-missing",
          about,
          `${slot.key.path} ${slot.key.error}`,
          sf.external
            ? `put ${s.name}'s private key at ${slot.key.path}, or correct services.${s.name}.files`
            : `run \`${ctx.apply} --reissue ${s.name}\` (a new key and certificate)`,
        );
      }
      if (isProblem(slot.cert)) continue;
      const order = orderProblem(slot.cert);
      if (order) {
        ctx.add(
          "chain-order",
          about,
          `${slot.cert.path} ${order}`,
          `put the leaf first, then the intermediates: e.g. \`cat leaf.pem intermediate.pem > ${slot.cert.path}\``,
        );
        continue;
      }
      const leaf = slot.cert.certs[0]!;
      if (!isProblem(slot.key) && slot.key.spki === undefined && !slot.key.onHost) {
        ctx.add(
          "key-encrypted",
          about,
          `${slot.key.path} is encrypted${slot.key.encryption ? ` (${slot.key.encryption})` : ""}: check cannot compare it with ${slot.cert.path}, and Go, NATS and etcd cannot load an encrypted key`,
          `if ${s.name} is given its passphrase, ignore this; otherwise decrypt it in place, keeping mode 0600: \`openssl pkey -in ${slot.key.path} -out ${slot.key.path}.new && mv ${slot.key.path}.new ${slot.key.path}\``,
        );
      }
      if (!isProblem(slot.key) && slot.key.spki && !slot.key.spki.equals(leaf.fields.spki)) {
        ctx.add(
          "key-mismatch",
          about,
          `${slot.key.path} is not the private key of ${slot.cert.path}; the TLS library refuses to load the pair`,
          ctx.fixFor(sf, slot.slot, ""),
        );
      }
      const lints = lintCertificate(
        leaf,
        {
          profile: slot.slot.profile,
          dns: slot.slot.kind === "client" ? [] : sf.external ? s.dns.filter((d) => d !== s.cn) : s.dns,
          ips: slot.slot.kind === "client" ? [] : s.ips,
          identity: ctx.manifest.identityTemplate === undefined ? null : (s.identity ?? null),
          renewBeforeMs: slot.online ? onlineRenewBeforeMs(leaf) : s.renewBeforeMs,
          skewMs,
        },
        ctx.now,
      );
      for (const l of lints)
        ctx.add(l.code, about, `${slot.cert.path} ${l.message}`, ctx.fixFor(sf, slot.slot, l.change));
      if (isProblem(sf.bundle)) continue;
      const r = ctx.chain(slot.cert, sf.bundle);
      // A weak signature or critical extension of the leaf itself is already its own lint above.
      const ownLint =
        !r.ok &&
        (r.failure.kind === "weak-signature" || r.failure.kind === "critical-extension") &&
        r.failure.cert === leaf;
      // A managed certificate that chains to the PKI's own CA but not to its bundle: the bundle is what is wrong.
      const pkiCa = ctx.inv.ca && !isProblem(ctx.inv.ca) ? ctx.inv.ca : undefined;
      const staleBundle = !r.ok && !sf.external && pkiCa !== undefined && ctx.chain(slot.cert, pkiCa).ok;
      // A managed leaf whose file lacks the PKI's intermediate (ca.intermediate), which would complete it.
      const inter = ctx.inv.intermediate && !isProblem(ctx.inv.intermediate) ? ctx.inv.intermediate : undefined;
      const lacksIntermediate =
        !r.ok &&
        !sf.external &&
        inter !== undefined &&
        inter.certs.length === 1 &&
        !slot.cert.certs.some((c) => c.sha256 === inter.certs[0]!.sha256) &&
        ctx.chain({ path: slot.cert.path, certs: [leaf, ...inter.certs] }, sf.bundle).ok;
      if (lacksIntermediate) {
        ctx.add(
          "chain-incomplete",
          about,
          `${slot.cert.path} lacks the intermediate CA ${shortName(inter.certs[0]!)} (${inter.path}) after the leaf: ${sf.bundle.path} holds only the root, so peers cannot link the leaf to it (unable to get local issuer certificate)`,
          `run \`${ctx.apply}\`: it rewrites the file as leaf + intermediate`,
        );
      } else if (staleBundle) {
        ctx.add(
          "untrusted",
          about,
          `${slot.cert.path} does not chain to ${sf.bundle.path}: that bundle does not hold the CA that issued it (${shortName(pkiCa.certs[0]!)}, in ${pkiCa.path}); the bundle was replaced`,
          `run \`${ctx.apply}\`: it rewrites ${sf.bundle.path} (the certificate is fine)`,
        );
      } else if (!r.ok && !ownLint) {
        ctx.add(
          r.failure.kind === "bad-signature" ? "bad-signature" : "untrusted",
          about,
          `${slot.cert.path} ${failureText(r.failure, sf.bundle.path)}`,
          sf.external
            ? `re-issue ${slot.cert.path} from the CA in ${sf.bundle.path}, or put the right CA in ${sf.bundle.path}`
            : `run \`${ctx.apply} --reissue ${s.name}\``,
        );
      } else if (r.ok) {
        const caEnd = Math.min(...r.path.slice(1).map((c) => c.fields.notAfter.getTime()));
        ctx.caOf.set(slot.slot.id, { subject: r.path[1]?.info.subject ?? "", notAfter: new Date(caEnd) });
        if (leaf.fields.notAfter.getTime() > caEnd) {
          ctx.add(
            "outlives-ca",
            about,
            `${slot.cert.path} is valid until ${when(leaf.fields.notAfter, new Date(caEnd))}, after its CA expires (${when(new Date(caEnd), leaf.fields.notAfter)}); it stops working then`,
            sf.external
              ? `re-issue it with notAfter before ${date(new Date(caEnd))}, and plan a CA rollover`
              : "plan a CA rollover before the CA expires",
          );
        }
      }
    }
  }
}

function lintCas(ctx: Ctx): CaReport[] {
  const seen = new Map<string, { cert: Cert; file: string }>();
  const note = (c: Cert, file: string) => void (seen.has(c.sha256) || seen.set(c.sha256, { cert: c, file }));
  if (ctx.inv.ca && !isProblem(ctx.inv.ca)) for (const c of ctx.inv.ca.certs) note(c, ctx.inv.ca.path);
  const inter = ctx.inv.intermediate;
  if (inter && !isProblem(inter)) for (const c of inter.certs) note(c, inter.path);
  for (const sf of ctx.inv.services) {
    if (!isProblem(sf.bundle)) for (const c of sf.bundle.certs) note(c, sf.bundle.path);
    for (const s of sf.slots)
      if (!isProblem(s.cert) && !orderProblem(s.cert)) for (const c of s.cert.certs.slice(1)) note(c, s.cert.path);
  }
  const longest = Math.max(0, ...ctx.manifest.services.map((s) => s.validityMs));
  const t = ctx.now.getTime();
  const out: CaReport[] = [];
  for (const { cert, file } of seen.values()) {
    const i = cert.info;
    const about: About = { kind: "ca", subject: i.subject, file };
    out.push({ subject: i.subject, file, notAfter: i.notAfter, sha256: cert.sha256 });
    const left = i.notAfter.getTime() - t;
    const managedCa =
      ctx.inv.dir !== undefined &&
      ctx.inv.ca !== undefined &&
      !isProblem(ctx.inv.ca) &&
      ctx.inv.ca.certs.some((c) => c.sha256 === cert.sha256);
    const newCa = managedCa
      ? `move ${path.join(ctx.inv.dir!, "ca")} away and run \`${ctx.apply}\`: a new CA, every service re-issued and every ca.pem rewritten`
      : "create a new CA, re-issue every certificate from it and distribute its bundle";
    // mtlskit's own intermediate renews on apply: its window is a finding of its own, before it bites.
    const inter = ctx.manifest.ca.intermediate;
    const pkiIntermediate =
      inter !== undefined &&
      ctx.inv.intermediate !== undefined &&
      !isProblem(ctx.inv.intermediate) &&
      ctx.inv.intermediate.certs.some((c) => c.sha256 === cert.sha256);
    if (pkiIntermediate && left >= 0) {
      const window = Math.max(inter.renewBeforeMs, longest);
      if (left < window)
        ctx.add(
          "intermediate-due",
          about,
          `the intermediate CA ${i.subject} in ${file} expires on ${date(i.notAfter)}, in ${Math.floor(left / DAY)} days: inside its renewal window (${window === inter.renewBeforeMs ? `ca.intermediate.renewBefore ${Math.round(window / DAY)} days` : `a ${Math.round(longest / DAY)}-day service certificate issued now would outlive it`})`,
          `run \`${ctx.apply}\` (add --ca-key FILE when the root's key is offline): it re-signs the intermediate and re-issues the services; no bundle changes`,
        );
    } else if (left < 0)
      ctx.add(
        "ca-expired",
        about,
        `${i.subject} in ${file} expired on ${date(i.notAfter)}; every certificate it signed is refused`,
        newCa,
      );
    else if (left < longest && !pkiIntermediate)
      ctx.add(
        "ca-expiring",
        about,
        `${i.subject} in ${file} expires on ${date(i.notAfter)}, in ${Math.floor(left / DAY)} days: sooner than a certificate issued today would (${Math.round(longest / DAY)} days)`,
        "plan a CA rollover: distribute a bundle with the old and new CA, then re-issue",
      );
    if (!i.isCA || (i.keyUsage && !i.keyUsage.includes("keyCertSign"))) {
      ctx.add(
        "ca-not-ca",
        about,
        `${i.subject} in ${file} is in a trust bundle or chain but ${!i.isCA ? "is not a CA (basicConstraints cA is not set)" : "its keyUsage lacks keyCertSign"}`,
        `put the CA certificate in ${file}, not a service certificate`,
      );
    } else if (!i.keyUsage) {
      ctx.add(
        "ca-key-usage",
        about,
        `${i.subject} in ${file} has no keyUsage extension; strict verifiers (openssl verify -x509_strict, RFC 5280) refuse it as a CA`,
        "when the CA is next renewed, give it keyUsage = critical, keyCertSign, cRLSign (openssl: add it to the [v3_ca] section)",
      );
    }
  }
  return out;
}

function lintDeployment(ctx: Ctx): void {
  const caSpkis = new Map<string, string>();
  const addCa = (c: Cert) => void (c.info.isCA && caSpkis.set(c.fields.spki.toString("hex"), c.info.subject));
  if (ctx.inv.ca && !isProblem(ctx.inv.ca)) ctx.inv.ca.certs.forEach(addCa);
  for (const sf of ctx.inv.services) {
    if (!isProblem(sf.bundle)) sf.bundle.certs.forEach(addCa);
    for (const s of sf.slots) if (!isProblem(s.cert)) s.cert.certs.slice(1).forEach(addCa);
  }
  const caKey = ctx.inv.caKey;
  const imp = ctx.manifest.ca.import;
  const root = ctx.inv.ca && !isProblem(ctx.inv.ca) ? ctx.inv.ca.certs[0] : undefined;
  if (ctx.inv.dir !== undefined && root && (imp ? imp.key === undefined : caKey === undefined)) {
    const where = imp ? "ca.import names no key" : `${path.join(ctx.inv.dir, "ca", "ca-key.pem")} is not here`;
    ctx.add(
      "ca-key-offline",
      { kind: "ca", subject: root.info.subject, file: imp ? imp.cert : path.join(ctx.inv.dir, "ca", "ca-key.pem") },
      `the CA key of ${root.info.subject} is offline (${where}): ${ctx.manifest.ca.intermediate ? "the intermediate signs the services; apply needs the root key only to re-sign the intermediate" : "apply needs it for every certificate it issues or renews"}`,
      `nothing to fix; when apply asks for it, run \`${ctx.apply} --ca-key FILE\``,
    );
  }
  // The intermediate's key signs every renewal: readable by others it is exposed, missing apply must sign a new one.
  const interKey = ctx.inv.intermediateKey;
  const interCert =
    ctx.inv.intermediate && !isProblem(ctx.inv.intermediate) ? ctx.inv.intermediate.certs[0] : undefined;
  if (ctx.manifest.ca.intermediate && interKey && interCert) {
    const about: About = { kind: "ca", subject: interCert.info.subject, file: interKey.path };
    if (isProblem(interKey) || (interKey.spki && !interKey.spki.equals(interCert.fields.spki)))
      ctx.add(
        "intermediate-due",
        about,
        `the intermediate CA ${interCert.info.subject} cannot sign: ${interKey.path} ${isProblem(interKey) ? interKey.error : "is not its key"}; the services keep working until their renewal, which needs a new intermediate`,
        `run \`${ctx.apply}\` (add --ca-key FILE when the root's key is offline): it signs a new intermediate and re-issues the services; no bundle changes`,
      );
    else if (interKey.mode & 0o077)
      ctx.add(
        "key-mode",
        about,
        `${interKey.path} has mode 0${interKey.mode.toString(8)}: the intermediate CA's key is readable by ${interKey.mode & 0o007 ? "every user" : "its group"}`,
        `consider it exposed: run \`chmod 600 ${interKey.path}\` and \`${ctx.apply}\`, which signs a new intermediate (with the root's key) and re-issues the services`,
      );
  }
  if (caKey && !isProblem(caKey) && caKey.mode & 0o077) {
    ctx.add(
      "key-mode",
      { kind: "ca", subject: "key", file: caKey.path },
      `${caKey.path} has mode 0${caKey.mode.toString(8)}: the CA key is readable by ${caKey.mode & 0o007 ? "every user" : "its group"}`,
      `run \`chmod 600 ${caKey.path}\`, and consider the CA key exposed`,
    );
  }
  for (const d of ctx.inv.dirs) {
    const about: About =
      d.service !== undefined
        ? { kind: "service", service: d.service }
        : { kind: "ca", subject: d.folder === "ca" ? "directory" : "services directory", file: d.path };
    ctx.add(`dir-${d.kind}`, about, d.message, d.fix);
  }
  for (const loose of ctx.inv.looseKeys) {
    const ca = caSpkis.get(loose.spki.toString("hex"));
    if (ca)
      ctx.add(
        "ca-key-exposed",
        { kind: "ca", subject: ca, file: loose.path },
        `${loose.path} is the private key of the CA ${ca}, in the folder every service's files are under`,
        `move ${loose.path} off this host (keep it with the CA only), and consider the CA key exposed`,
      );
  }
  const bundleSets = new Map<string, string[]>();
  for (const sf of ctx.inv.services) {
    const s = sf.service;
    const about: About = { kind: "service", service: s.name };
    for (const slot of sf.slots) {
      if (isProblem(slot.key)) continue;
      const k = slot.key;
      if (k.mode & 0o077)
        ctx.add(
          "key-mode",
          about,
          `${k.path} has mode 0${k.mode.toString(8)}: readable by ${k.mode & 0o007 ? "every user" : "its group"}`,
          `run \`chmod 600 ${k.path}\``,
        );
      if (typeof sf.ownerUid === "number" && k.uid !== sf.ownerUid)
        ctx.add(
          "key-owner",
          about,
          `${k.path} is owned by uid ${k.uid}, not ${s.files?.owner} (uid ${sf.ownerUid})`,
          `run \`chown ${s.files?.owner} ${k.path}\``,
        );
      if (k.spki && caSpkis.has(k.spki.toString("hex")))
        ctx.add(
          "ca-key-exposed",
          about,
          `${k.path} is the private key of the CA ${caSpkis.get(k.spki.toString("hex"))}`,
          `give ${s.name} its own key and certificate; move the CA key off this host`,
        );
    }
    if (typeof sf.ownerUid === "object")
      ctx.add(
        "key-owner",
        about,
        `services.${s.name}.files.owner: ${sf.ownerUid.error}`,
        "create the user, or correct files.owner",
      );
    for (const other of sf.otherKeys) {
      const ca = caSpkis.get(other.spki.toString("hex"));
      if (ca)
        ctx.add(
          "ca-key-exposed",
          about,
          `${other.path} is the private key of the CA ${ca}, next to ${s.name}'s files`,
          `move ${other.path} off this host (keep it with the CA only), and consider the CA key exposed`,
        );
    }
    if (isProblem(sf.bundle) && !notIssued(sf)) {
      ctx.add(
        "bundle-missing",
        about,
        `${sf.bundle.path} ${sf.bundle.error}; ${s.name} cannot verify its peers`,
        sf.external ? `put the CA bundle at ${sf.bundle.path}` : `run \`${ctx.apply}\` to write it`,
      );
    } else if (!isProblem(sf.bundle) && !sf.bundleOfCa) {
      const key = sf.bundle.certs
        .map((c) => c.sha256)
        .sort()
        .join(",");
      const list = bundleSets.get(key) ?? [];
      list.push(s.name);
      bundleSets.set(key, list);
    }
  }
  if (bundleSets.size > 1) {
    // The set most services trust is the reference; each other set is told what it lacks (a
    // host that missed a rollover) or what it adds (a host ahead in a rollover, or a stray CA).
    const sets = [...bundleSets.entries()].sort((a, b) => b[1].length - a[1].length);
    const [majorityKey, majority] = sets[0]!;
    const certsOf = (key: string) =>
      (
        ctx.inv.services.find(
          (x) =>
            !isProblem(x.bundle) &&
            (x.bundle as CertFile).certs
              .map((c) => c.sha256)
              .sort()
              .join(",") === key,
        )!.bundle as CertFile
      ).certs;
    const reference = certsOf(majorityKey);
    const names = (cs: readonly Cert[]) => cs.map((c) => `${shortName(c)} (${c.sha256.slice(0, 12)})`).join(" + ");
    const others = `${majority.length} other service${majority.length === 1 ? "" : "s"} (${majority.slice(0, 3).join(", ")}${majority.length > 3 ? ", ..." : ""})`;
    for (const [key, list] of sets.slice(1)) {
      const mine = certsOf(key);
      const lacks = reference.filter((c) => !mine.some((m) => m.sha256 === c.sha256));
      const adds = mine.filter((c) => !reference.some((r) => r.sha256 === c.sha256));
      for (const name of list) {
        const sf = ctx.inv.services.find((x) => x.service.name === name)!;
        const file = (sf.bundle as CertFile).path;
        const what = [lacks.length ? `lacks ${names(lacks)}` : "", adds.length ? `adds ${names(adds)}` : ""]
          .filter(Boolean)
          .join(" and ");
        const fix = sf.external
          ? [
              lacks.length ? `add ${names(lacks)} to ${file}` : "",
              adds.length
                ? `remove ${names(adds)} from ${file} unless a CA rollover is under way (then add it to every other bundle too)`
                : "",
            ]
              .filter(Boolean)
              .join("; ")
          : `run \`${ctx.apply}\` to rewrite it`;
        ctx.add(
          "bundle-differs",
          { kind: "service", service: name },
          `${file} ${what}, compared with what ${others} trust${majority.length === 1 ? "s" : ""}`,
          fix,
        );
      }
    }
  }
}

/**
 * cnFallback notes when OpenSSL and Node would still connect by falling back to the CN (no DNS
 * SAN at all, CN equal to the name): Go since 1.15 and mtlskit's library do not, so check fails it.
 */
function cnFallback(c: Cert, address: Connection["address"]): string {
  const cn = c.info.subjectAttributes.CN;
  if (
    address.kind !== "dns" ||
    cn === undefined ||
    c.info.sans.some((s) => s.type === "dns") ||
    cn.toLowerCase() !== address.text.toLowerCase()
  )
    return "";
  return "; Node and OpenSSL would still connect by falling back to the CN, Go (since 1.15) and mtlskit's library refuse";
}

/** presented picks the certificate a service presents in a role: a split pair's client half for clientAuth. */
function presented(sf: ServiceFiles, purpose: Purpose): SlotFiles {
  return purpose === "clientAuth" ? (sf.slots.find((s) => s.slot.kind === "client") ?? sf.slots[0]!) : sf.slots[0]!;
}

function checkConnection(ctx: Ctx, c: Connection, byName: Map<string, ServiceFiles>): ConnectionReport {
  const address = c.address.text;
  const about: About = { kind: "connection", index: c.index, from: c.from, to: c.to, address };
  const causes: Code[] = [];
  const add = (code: Code, message: string, fix: string) => {
    if (ctx.add(code, about, message, fix) && CODES[code].severity === "error" && !causes.includes(code))
      causes.push(code);
  };
  const client = byName.get(c.from)!;
  const server = byName.get(c.to)!;
  // One end at a time: `holder` presents its certificate for `purpose`, `verifier` judges it with its bundle.
  const side = (holder: ServiceFiles, verifier: ServiceFiles, purpose: Purpose) => {
    const slot = presented(holder, purpose);
    const who = purpose === "serverAuth" ? "server" : "client";
    const order = isProblem(slot.cert) ? undefined : orderProblem(slot.cert);
    if (
      isProblem(slot.cert) ||
      order ||
      isProblem(slot.key) ||
      (slot.key.spki && !slot.key.spki.equals(slot.cert.certs[0]!.fields.spki))
    ) {
      const why = isProblem(slot.cert)
        ? `${slot.cert.path} ${slot.cert.error}`
        : order
          ? `${slot.cert.path} ${order}`
          : isProblem(slot.key)
            ? `${slot.key.path} ${slot.key.error}`
            : `${slot.key.path} does not match ${slot.cert.path}`;
      add(
        "conn-missing",
        `${holder.service.name} (the ${who}) cannot present a certificate: ${why}`,
        `fix ${holder.service.name}'s certificate first (see its findings)`,
      );
      return undefined;
    }
    if (isProblem(verifier.bundle)) {
      add(
        "conn-missing",
        `${verifier.service.name} has no usable trust bundle to verify the ${who} with: ${verifier.bundle.path} ${verifier.bundle.error}`,
        `fix ${verifier.service.name}'s bundle first (see its findings)`,
      );
      return undefined;
    }
    const r = ctx.chain(slot.cert, verifier.bundle);
    const cert = slot.cert.certs[0]!;
    if (!r.ok) {
      add(
        purpose === "serverAuth" ? "conn-server-untrusted" : "conn-client-untrusted",
        `${verifier.service.name} will refuse ${holder.service.name}'s certificate ${slot.cert.path}: it ${failureText(r.failure, verifier.bundle.path)}`,
        holder.external || verifier.external
          ? `make ${verifier.bundle.path} hold the CA that issued ${slot.cert.path}, or re-issue it from that CA`
          : `run \`${ctx.apply}\` (it rewrites every bundle and re-issues what the CA did not sign)`,
      );
      return cert;
    }
    const usage = purposeProblem(r.path, purpose);
    if (usage) {
      const goSays =
        usage.kind === "key-usage"
          ? ""
          : purpose === "serverAuth"
            ? " (Go: x509: certificate specifies an incompatible key usage)"
            : " (the server logs: incompatible key usage / unsupported certificate purpose)";
      const change =
        usage.kind === "eku"
          ? `issue it with extendedKeyUsage ${purpose}${holder.service.usage === "dual" ? ", " + (purpose === "serverAuth" ? "clientAuth" : "serverAuth") : ""}`
          : usage.kind === "key-usage"
            ? usage.change!
            : "";
      add(
        purpose === "serverAuth" ? "conn-server-usage" : "conn-client-usage",
        `${verifier.service.name} will refuse ${holder.service.name}'s certificate ${slot.cert.path} as a ${who} certificate: ${usage.reason}${goSays}`,
        usage.kind === "ca-eku"
          ? `re-issue the CA ${usage.cert.info.subject} without the extendedKeyUsage restriction, or issue ${slot.cert.path} from a CA without it`
          : ctx.fixFor(holder, slot.slot, change),
      );
    }
    const bad = invalidAt(r.path, ctx.now);
    if (bad) {
      const what =
        bad.cert === cert
          ? `${holder.service.name}'s certificate ${slot.cert.path}`
          : `the CA ${bad.cert.info.subject} in its chain`;
      add(
        "conn-validity",
        `${verifier.service.name} will refuse ${what}: ${bad.how === "expired" ? `expired on ${date(bad.cert.fields.notAfter)}` : `not valid until ${bad.cert.fields.notBefore.toISOString()}`}`,
        bad.cert === cert ? ctx.fixFor(holder, slot.slot, "") : "renew the CA and distribute the new bundle",
      );
    }
    return cert;
  };
  const serverCert = side(server, client, "serverAuth");
  if (serverCert && !covers(serverCert, c.address)) {
    const slot = presented(server, "serverAuth");
    add(
      "conn-address",
      `${c.from} dials ${address}, but ${server.service.name}'s certificate ${(slot.cert as CertFile).path} has ${c.address.kind === "ip" ? "no IP SAN" : "no DNS SAN matching"} ${address} (SANs: ${sanList(serverCert)})${cnFallback(serverCert, c.address)}`,
      server.external
        ? ctx.fixFor(server, slot.slot, `add ${c.address.kind === "ip" ? "IP" : "DNS"}:${address} to subjectAltName`)
        : ctx.fixFor(server, slot.slot, ""),
    );
  }
  side(client, server, "clientAuth");
  return { index: c.index, from: c.from, to: c.to, address, ok: causes.length === 0, causes };
}

/** checkInventory judges an inventory against its manifest. Pure apart from signature checks. */
export function checkInventory(
  material: Material,
  manifest: Manifest,
  inv: Inventory,
  opts: CheckOptions = {},
): CheckReport {
  const now = opts.now ?? new Date();
  const ctx = new Ctx(material, manifest, inv, now, opts.applyCommand ?? "mtlskit apply", new Set(opts.ignore ?? []));
  lintCertificates(ctx, opts.skewMs ?? CLOCK_SKEW_MS);
  const cas = lintCas(ctx);
  lintDeployment(ctx);
  if (opts.crl !== undefined) lintRevocation(ctx, opts.crl, opts.crlAt ?? new Date());
  const byName = new Map(inv.services.map((s) => [s.service.name, s]));
  const connections = manifest.connections.map((c) => checkConnection(ctx, c, byName));
  // Counted in one pass: filtering every finding for every slot took 20 s at 10,000 expired certificates.
  const counts = new Map<string, { errors: number; warnings: number }>();
  for (const f of ctx.findings) {
    if (f.about.kind !== "certificate") continue;
    let n = counts.get(f.about.id);
    if (!n) counts.set(f.about.id, (n = { errors: 0, warnings: 0 }));
    if (f.severity === "error") n.errors++;
    else if (f.severity === "warning") n.warnings++;
  }
  const certificates: CertificateReport[] = inv.services.flatMap((sf) =>
    sf.slots.map((s) => {
      const leaf = isProblem(s.cert) ? undefined : s.cert.certs[0];
      const mine = counts.get(s.slot.id);
      const renewBeforeMs = leaf && s.online ? onlineRenewBeforeMs(leaf) : sf.service.renewBeforeMs;
      return {
        id: s.slot.id,
        service: sf.service.name,
        file: s.cert.path,
        subject: leaf?.info.subject,
        notAfter: leaf?.fields.notAfter,
        renewAt: leaf && new Date(leaf.fields.notAfter.getTime() - renewBeforeMs),
        ca: ctx.caOf.get(s.slot.id),
        sha256: leaf?.sha256,
        errors: mine?.errors ?? 0,
        warnings: mine?.warnings ?? 0,
        ...(leaf && s.online?.serial !== undefined
          ? { online: { serial: s.online.serial, notBefore: leaf.fields.notBefore, ledger: s.online.ledger } }
          : {}),
      };
    }),
  );
  const errors = ctx.findings.filter((f) => f.severity === "error").length;
  return {
    now,
    findings: ctx.findings,
    certificates,
    cas,
    connections,
    errors,
    warnings: ctx.findings.filter((f) => f.severity === "warning").length,
  };
}

/**
 * lintRevocation judges the CA's CRL against the CA that issues the services (DIR/ca/ca.pem, or
 * DIR/ca/intermediate.pem with ca.intermediate: crl-untrusted, crl-expired) and finds every
 * deployed certificate it lists (revoked): a revoked certificate still in place is refused by
 * every server that checks the CRL.
 */
function lintRevocation(ctx: Ctx, crl: CrlInfo | { error: string }, at: Date): void {
  const root = ctx.inv.ca !== undefined && !isProblem(ctx.inv.ca) ? ctx.inv.ca.certs[0] : undefined;
  const inter = ctx.inv.intermediate;
  const ca = inter !== undefined && !isProblem(inter) ? (inter.certs[0] ?? root) : root;
  const caFile = ctx.inv.dir === undefined ? undefined : path.join(ctx.inv.dir, "ca", "crl.pem");
  const about: About = { kind: "ca", subject: ca?.info.subject ?? "(none)", file: caFile };
  const fix = `run \`${ctx.apply}\` (it re-signs ${caFile ?? "the CRL"} with the CA), then reload the servers that read it`;
  if ("error" in crl) {
    ctx.add("crl-untrusted", about, `${caFile ?? "the CRL"} ${crl.error}`, fix);
    return;
  }
  if (ca) for (const p of crlProblems(crl, ca, at)) ctx.add(p.code, about, p.message, fix);
  for (const sf of ctx.inv.services)
    for (const s of sf.slots) {
      if (isProblem(s.cert)) continue;
      const leaf = s.cert.certs[0];
      const entry = leaf && revokedCert(leaf, crl);
      if (entry)
        ctx.add(
          "revoked",
          certAbout(sf, s),
          `${s.cert.path}: ${revokedMessage(entry)}, and it is still deployed: servers that check the CRL refuse it`,
          ctx.fixFor(sf, s.slot, "a revoked certificate"),
        );
    }
}
