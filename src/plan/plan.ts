/**
 * Planning: what apply will do to each certificate and why, as data. Pure: the manifest, the
 * state read from disk and the time go in; a Plan comes out. Nothing here reads or writes files.
 *
 * A certificate is kept only if re-encoding its spec with the existing serial, dates and key
 * reproduces its TBSCertificate byte for byte, its key matches, the current CA signed it, and it
 * is outside its renewal window. That is why an unchanged manifest leaves every file identical.
 */
import { FailedError, InvalidInputError, type Problem } from "../errors.ts";
import {
  formatDuration,
  managedServices,
  serviceNames,
  type CertSlot,
  type ExternalFiles,
  type LoadedManifest,
  type Manifest,
  type Service,
} from "../manifest/index.ts";
import { verifySignedBy, type CertFields } from "../pki/cert.ts";
import { bitString, seq } from "../pki/der.ts";
import { encodeTbs, type CertSpec } from "../pki/issue.ts";
import { keyTypeOfSpki } from "../pki/keys.ts";
import { encodeName } from "../pki/name.ts";
import { encodePem } from "../pki/pem.ts";
import { decodeCertificate, type CertInfo } from "../pki/x509.ts";
import { DEFAULT_LAYOUT_VERSION } from "../state/layout-version.ts";
import type { CaMaterial, LeafState, State } from "../state/read.ts";

/** BACKDATE_MS: notBefore lies this far before issuance, for peers whose clocks run behind (cfssl's 5 minutes). */
export const BACKDATE_MS = 5 * 60_000;

/** CertAction is what apply does with one certificate. */
export type CertAction = "create" | "keep" | "reissue";

/** CertStep is the plan for one certificate slot. */
export interface CertStep {
  /** id is the slot id: `core`, or `core/client` for the client half of a split pair. */
  id: string;
  slot: CertSlot;
  action: CertAction;
  /** reason says why, in words: "missing", "expires 2027-01-01 (renewBefore 30d)", "SANs changed: +IP:10.0.0.9". */
  reason: string;
  /** spec is what will be issued (create, reissue) or what the kept certificate satisfies. */
  spec: CertSpec;
  /** notAfter of the existing certificate, when there is one that parses. */
  currentNotAfter: Date | undefined;
}

/** CaStep is the plan for the CA. */
export type CaStep =
  | { action: "create"; reason: string; spec: CertSpec }
  | { action: "keep"; reason: string; notAfter: Date }
  | { action: "import"; reason: string; notAfter: Date };

/** BundleStep says whether a service's ca.pem is written. */
export interface BundleStep {
  service: string;
  action: "write" | "keep";
}

/** ExternalStep is a service whose files the manifest names: apply leaves them alone, `mtlskit check` judges them. */
export interface ExternalStep {
  service: string;
  action: "external";
  /** reason: "files named in the manifest (/etc/certs/dusk.pem); apply does not write them; run mtlskit check". */
  reason: string;
  files: ExternalFiles;
}

/** Plan is everything apply will do, in order. */
export interface Plan {
  dir: string;
  now: Date;
  ca: CaStep;
  /** certs: the certificates of the services apply manages (those without `files`). */
  certs: CertStep[];
  /** bundles: the ca.pem of each managed service. */
  bundles: BundleStep[];
  /** external: the services with `files`, one step each; nothing is written for them. */
  external: ExternalStep[];
  /** warnings worth telling the user that change nothing (e.g. the CA spec differs from the existing CA). */
  warnings: string[];
  /** layoutVersion: the manifest's, which apply records in DIR/layout-version once every certificate is issued under it. */
  layoutVersion: number;
}

/** PlanOptions are the choices the CLI passes through. */
export interface PlanOptions {
  /** now is the issuance time. Default: the current time. */
  now?: Date;
  /** reissue names services whose certificates are re-issued with new keys. Default: none. */
  reissue?: readonly string[];
  /** reissueAll re-issues every service certificate (not the CA). Default: false. */
  reissueAll?: boolean;
}

const day = (d: Date) => d.toISOString().slice(0, 10);

/** leafSpec is the certificate a slot of a service should hold, issued at `now`. */
export function leafSpec(service: Service, slot: CertSlot, now: Date): CertSpec {
  // clientSans: identity-only: a client certificate carries the identity URI alone (Netsy's node client certificates).
  const bare = slot.profile === "client" && service.clientSans === "identity-only";
  return {
    profile: slot.profile,
    subject: service.subject,
    dns: bare ? [] : service.dns,
    ips: bare ? [] : service.ips.map((i) => i.bytes),
    uris: service.identity === undefined ? [] : [service.identity],
    keyType: service.keyType,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + service.validityMs),
  };
}

/** caSpec is the certificate of a CA generated at `now`. */
export function caSpec(m: Manifest, now: Date): CertSpec {
  return {
    profile: "ca",
    subject: m.ca.subject,
    dns: [],
    ips: [],
    uris: [],
    keyType: m.ca.keyType,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + m.ca.validityMs),
  };
}

/** bundlePem is the trust bundle every service's ca.pem holds. */
export const bundleOf = (ca: CaMaterial): string => ca.bundlePem;

function describe(info: CertInfo): Record<string, string> {
  return {
    subject: info.subject,
    SANs: info.sans.map((s) => `${s.type.toUpperCase()}:${s.value}`).join(", "),
    "extended key usage": (info.extKeyUsage ?? []).join(", "),
    "key usage": (info.keyUsage ?? []).join(", "),
    "basic constraints": info.isCA ? "CA" : "leaf",
  };
}

/** explainDifference names what differs between an existing certificate and the TBS it should have. */
function explainDifference(existing: CertFields, wantTbs: Buffer): string {
  try {
    const have = describe(decodeCertificate(existing.der));
    // Wrap the wanted TBS in an unsigned Certificate so the same decoder reads both.
    const want = describe(decodeCertificate(seq(wantTbs, existing.signatureAlgorithm, bitString(Buffer.alloc(0)))));
    const diffs: string[] = [];
    for (const k of Object.keys(want)) {
      if (have[k] === want[k]) continue;
      if (k === "SANs") {
        const h = new Set(have[k]!.split(", ").filter(Boolean));
        const w = new Set(want[k]!.split(", ").filter(Boolean));
        diffs.push(
          `SANs ${[...[...w].filter((x) => !h.has(x)).map((x) => "+" + x), ...[...h].filter((x) => !w.has(x)).map((x) => "-" + x)].join(" ")}`,
        );
      } else diffs.push(`${k} ${have[k] || "(none)"} -> ${want[k] || "(none)"}`);
    }
    if (diffs.length === 0) diffs.push("encoding differs");
    return `spec changed: ${diffs.join("; ")}`;
  } catch {
    return "spec changed";
  }
}

/** judgeLeaf decides keep or reissue for an existing certificate, with the reason. */
function judgeLeaf(
  leaf: LeafState | undefined,
  want: CertSpec,
  service: Service,
  ca: CaMaterial,
  chainPem: string,
  now: Date,
): { action: CertAction; reason: string; notAfter?: Date } {
  if (!leaf || (leaf.cert === undefined && leaf.keySpki === undefined)) return { action: "create", reason: "missing" };
  const { cert, keySpki } = leaf;
  if (cert === undefined) return { action: "reissue", reason: "certificate file missing" };
  if ("error" in cert) return { action: "reissue", reason: `certificate file ${cert.error}` };
  const notAfter = cert.notAfter;
  if (keySpki === undefined) return { action: "reissue", reason: "key file missing", notAfter };
  if ("error" in keySpki) return { action: "reissue", reason: `key file ${keySpki.error}`, notAfter };
  if (!keySpki.equals(cert.spki)) return { action: "reissue", reason: "key does not match certificate", notAfter };
  if (!cert.issuer.equals(ca.cert.subject) || !verifySignedBy(cert, ca.publicKey, ca.keyType))
    return { action: "reissue", reason: "CA changed (not signed by the current CA)", notAfter };
  const haveType = keyTypeOfSpki(cert.spki);
  if (haveType !== want.keyType)
    return { action: "reissue", reason: `key type changed: ${haveType ?? "unsupported"} -> ${want.keyType}`, notAfter };
  const wantTbs = encodeTbs(
    { ...want, notBefore: cert.notBefore, notAfter: cert.notAfter },
    { subject: ca.cert.subject, keyId: ca.keyId, keyType: ca.keyType },
    cert.spki,
    cert.serial,
  );
  if (!wantTbs.equals(cert.tbs)) return { action: "reissue", reason: explainDifference(cert, wantTbs), notAfter };
  const lifetime = cert.notAfter.getTime() - cert.notBefore.getTime();
  if (lifetime !== service.validityMs + BACKDATE_MS)
    return {
      action: "reissue",
      reason: `validity changed: ${formatDuration(lifetime - BACKDATE_MS)} -> ${formatDuration(service.validityMs)}`,
      notAfter,
    };
  if (now >= cert.notAfter) return { action: "reissue", reason: `expired ${day(cert.notAfter)}`, notAfter };
  if (now < cert.notBefore)
    return {
      action: "reissue",
      reason: `not valid until ${cert.notBefore.toISOString()} (was the clock wrong when it was issued?)`,
      notAfter,
    };
  if (now.getTime() >= cert.notAfter.getTime() - service.renewBeforeMs) {
    return {
      action: "reissue",
      reason: `due for renewal: expires ${day(cert.notAfter)} (renewBefore ${formatDuration(service.renewBeforeMs)})`,
      notAfter,
    };
  }
  if (leaf.certFile !== encodePem("CERTIFICATE", cert.der) + chainPem)
    return { action: "reissue", reason: "certificate chain in the file changed", notAfter };
  return {
    action: "keep",
    reason: `valid until ${day(cert.notAfter)}, renews from ${day(new Date(cert.notAfter.getTime() - service.renewBeforeMs))}`,
    notAfter,
  };
}

/** checkReissueNames refuses --reissue names that are not services, or are external ones whose files apply never writes (exit 2). */
export function checkReissueNames(loaded: LoadedManifest, opts: PlanOptions): void {
  const m = loaded.manifest;
  const reissue = opts.reissue ?? [];
  if (reissue.length === 0) return;
  // A map, not a search per name: --reissue may name thousands of services (issue 12).
  const byName = new Map(m.services.map((s) => [s.name, s]));
  let names: string | undefined;
  const problems: Problem[] = [];
  for (const r of reissue) {
    const s = byName.get(r);
    if (!s)
      problems.push({
        file: m.file,
        path: "",
        message: `--reissue names unknown service ${JSON.stringify(r)}; services are: ${(names ??= serviceNames(m))}`,
        fix: "use a service name from the manifest",
      });
    else if (s.files) {
      const path = ["services", s.name, "files"];
      const line = loaded.lineOf(path);
      problems.push({
        file: m.file,
        ...(line === undefined ? {} : { line }),
        path: path.join("."),
        message: `--reissue names service ${s.name}, whose certificate files the manifest names (${s.files.cert}); apply never writes them, so it cannot re-issue them`,
        fix: `replace those files yourself and run mtlskit check, or remove services.${s.name}.files to let mtlskit issue ${s.name}'s certificates`,
      });
    }
  }
  if (problems.length > 0) throw new InvalidInputError(problems);
}

/**
 * planApply computes the plan. It throws InvalidInputError (exit 2) for requests that cannot be
 * met: an unknown or external --reissue name, or a leaf that would outlive the existing CA.
 * Services with `files` are external: no certificate or bundle of theirs is planned, only a line.
 */
export function planApply(loaded: LoadedManifest, state: State, opts: PlanOptions = {}): Plan {
  const m = loaded.manifest;
  const now = new Date(Math.floor((opts.now ?? new Date()).getTime() / 1000) * 1000);
  checkReissueNames(loaded, opts);
  const managed = managedServices(m);
  const problems: Problem[] = [];
  const warnings: string[] = [];
  let ca: CaStep;
  let material: CaMaterial | undefined;
  if (state.ca.status === "broken") {
    throw new FailedError(`pki: ${state.ca.reason}. Fix: ${state.ca.fix}.`);
  } else if (state.ca.status === "missing") {
    ca = { action: "create", reason: "missing", spec: caSpec(m, now) };
  } else {
    material = state.ca.ca;
    const nA = material.cert.notAfter;
    ca = m.ca.import
      ? { action: "import", reason: `imported from ${m.ca.import.cert}`, notAfter: nA }
      : { action: "keep", reason: `valid until ${day(nA)}`, notAfter: nA };
    if (!m.ca.import) {
      const info = decodeCertificate(material.cert.der);
      const wantSubject = encodeName(m.ca.subject);
      if (!wantSubject.equals(material.cert.subject) || material.keyType !== m.ca.keyType) {
        warnings.push(
          `the existing CA (${info.subject}, ${material.keyType}) differs from the manifest's ca section; the CA is never replaced automatically. To start a new CA, move ${state.dir}/ca away (every service is re-issued and peers must trust the new ca.pem).`,
        );
      }
    }
    const caEnd = material.cert.notAfter.getTime();
    for (const s of managed) {
      if (now.getTime() + s.validityMs > caEnd) {
        const path = ["services", s.name, "validity"];
        problems.push({
          file: m.file,
          ...(loaded.lineOf(path) === undefined ? {} : { line: loaded.lineOf(path)! }),
          path: path.join("."),
          message: `a ${formatDuration(s.validityMs)} certificate issued now would outlive the CA, which expires ${day(material.cert.notAfter)}`,
          fix: "shorten the validity, or roll the CA over first",
        });
      }
    }
  }
  if (problems.length > 0) throw new InvalidInputError(problems);

  const requested = new Set(opts.reissue ?? []);
  // Like ServiceRadar's runtimeLayoutVersion: a new number re-issues every certificate that would be kept.
  const layoutVersion = m.layoutVersion ?? DEFAULT_LAYOUT_VERSION;
  const layoutChanged =
    material && state.exists && state.layoutVersion !== layoutVersion
      ? `layoutVersion changed from ${state.layoutVersion ?? "an unreadable record"} to ${layoutVersion}`
      : undefined;
  const certs: CertStep[] = [];
  for (const s of managed) {
    for (const slot of s.slots) {
      const spec = leafSpec(s, slot, now);
      const leaf = state.leaves.get(slot.id);
      let verdict: { action: CertAction; reason: string; notAfter?: Date };
      if (!material) {
        verdict =
          leaf?.cert !== undefined || leaf?.keySpki !== undefined
            ? { action: "reissue", reason: "CA is new" }
            : { action: "create", reason: "missing" };
      } else {
        verdict = judgeLeaf(leaf, spec, s, material, material.chainPem, now);
        if (verdict.action === "keep" && (opts.reissueAll || requested.has(s.name)))
          verdict = { ...verdict, action: "reissue", reason: opts.reissueAll ? "--reissue-all" : "--reissue" };
        else if (verdict.action === "keep" && layoutChanged)
          verdict = { ...verdict, action: "reissue", reason: layoutChanged };
      }
      certs.push({
        id: slot.id,
        slot,
        action: verdict.action,
        reason: verdict.reason,
        spec,
        currentNotAfter: verdict.notAfter,
      });
    }
  }
  const bundles: BundleStep[] = managed.map((s) => ({
    service: s.name,
    action: material && state.bundles.get(s.name) === bundleOf(material) ? "keep" : "write",
  }));
  const external = m.services.flatMap((s): ExternalStep[] =>
    s.files
      ? [
          {
            service: s.name,
            action: "external",
            reason: `files named in the manifest (${s.files.cert}); apply does not write them; run mtlskit check`,
            files: s.files,
          },
        ]
      : [],
  );
  return { dir: state.dir, now, ca, certs, bundles, external, warnings, layoutVersion };
}

/** changedServices lists the services whose files a plan rewrites (certificates or bundle). */
export function changedServices(plan: Plan): string[] {
  const names = new Set<string>();
  for (const c of plan.certs) if (c.action !== "keep") names.add(c.slot.service);
  for (const b of plan.bundles) if (b.action === "write" || plan.ca.action === "create") names.add(b.service);
  return [...names].sort();
}
