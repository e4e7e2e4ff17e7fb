/**
 * Planning: what apply will do to each certificate and why, as data. Pure: the manifest, the
 * state read from disk and the time go in; a Plan comes out. Nothing here reads or writes files.
 *
 * A certificate is kept only if re-encoding its spec with the existing serial, dates and key
 * reproduces its TBSCertificate byte for byte, its key matches, the current CA signed it, and it
 * is outside its renewal window. That is why an unchanged manifest leaves every file identical.
 */
import { BACKDATE_MS, leafSpec } from "../ca/policy.ts";
import { FailedError, InvalidInputError, type Problem } from "../errors.ts";
import {
  formatDuration,
  keyedServices,
  managedServices,
  problemAt,
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
import type { CaMaterial, IntermediateState, LeafState, State } from "../state/read.ts";
import type { RotationRecord } from "../state/rotation.ts";
import type { OnlineFacts, OnlineService } from "../state/online.ts";
import { issuerOf, PHASES } from "../ca/rotation.ts";
import { planCrl, revocationOf, revokedReason, type CrlStep } from "./crl.ts";

export { BACKDATE_MS, leafSpec } from "../ca/policy.ts";

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
  /** issuer: the CA that issues it: the current one, or during a rotation's active phase the next one (DIR/ca/next). */
  issuer: "current" | "next";
}

/** CaStep is the plan for the CA. */
export type CaStep =
  | { action: "create"; reason: string; spec: CertSpec }
  | { action: "keep"; reason: string; notAfter: Date }
  | { action: "import"; reason: string; notAfter: Date };

/**
 * IntermediateStep is the plan for mtlskit's intermediate CA (ca.intermediate): create it, keep
 * it, or renew it (a new key signed by the root; the services are re-issued under it, and no
 * bundle changes, since bundles hold the root).
 */
export interface IntermediateStep {
  action: "create" | "keep" | "renew";
  reason: string;
  /** spec is what will be signed (create, renew). */
  spec: CertSpec;
  /** notAfter of the existing intermediate, when there is one. */
  notAfter: Date | undefined;
}

/**
 * CaKeyNeed says what in a plan must be signed by the root's key while that key is offline (not
 * in the PKI directory and not given with --ca-key): apply refuses, saying this.
 */
export interface CaKeyNeed {
  /** what: a sentence, e.g. "the intermediate CA must be re-signed by the root: due for renewal: expires 2027-01-01, in 20 days (renewBefore 121d)". */
  what: string;
}

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

/**
 * CsrStep is a service whose key is made on its host (csr: true): apply writes nothing for it;
 * `mtlskit sign` does, from a request made by `mtlskit csr` there.
 */
export interface CsrStep {
  service: string;
  action: "csr";
  /** awaiting: no certificate yet; signed: it holds a good one; renew: it needs a new one (expiring, spec or CA changed); online: the online CA issues to its agent (the ledger has its rows). */
  state: "awaiting" | "signed" | "renew" | "online";
  /** reason: "awaiting a CSR", "valid until 2027-01-01, renews from ...", "due for renewal: ...". */
  reason: string;
  /** next: the commands that bring it up to date, when it is not signed. */
  next: string | undefined;
}

/** Plan is everything apply will do, in order. */
export interface Plan {
  dir: string;
  now: Date;
  ca: CaStep;
  /** intermediate: the intermediate CA's step, when the manifest declares ca.intermediate. */
  intermediate?: IntermediateStep;
  /** caKey: "offline" when the root's key is not at hand (not in the PKI directory, not given with --ca-key). */
  caKey: "online" | "offline";
  /** caKeyNeed: set when the plan needs the offline root key (apply refuses without --ca-key FILE). */
  caKeyNeed?: CaKeyNeed;
  /** certs: the certificates of the services apply manages (those without `files`). */
  certs: CertStep[];
  /** bundles: the ca.pem of each managed service. */
  bundles: BundleStep[];
  /** external: the services with `files`, one step each; nothing is written for them. */
  external: ExternalStep[];
  /** csr: the services with csr: true, one step each; apply writes nothing for them. */
  csr: CsrStep[];
  /** warnings worth telling the user that change nothing (e.g. the CA spec differs from the existing CA). */
  warnings: string[];
  /** rotation: a CA rotation under way (DIR/ca/rotation.json): its record, the next CA while it is separate, and the bundle every service gets. */
  rotation?: { record: RotationRecord; next: CaMaterial | undefined; bundlePem: string } | undefined;
  /** layoutVersion: the manifest's, which apply records in DIR/layout-version once every certificate is issued under it. */
  layoutVersion: number;
  /** crl: whether ca/crl.pem is re-signed, and why (plan/crl.ts). */
  crl: CrlStep;
}

/** PlanOptions are the choices the CLI passes through. */
export interface PlanOptions {
  /** now is the issuance time. Default: the current time. */
  now?: Date;
  /** reissue names services whose certificates are re-issued with new keys. Default: none. */
  reissue?: readonly string[];
  /** reissueAll re-issues every service certificate (not the CA). Default: false. */
  reissueAll?: boolean;
  /** online: the ledger's facts (check/online.ts readOnline), so a csr service issued online is reported as such. Default: none (no ledger). */
  online?: OnlineFacts;
}

const day = (d: Date) => d.toISOString().slice(0, 10);

/** caSpec is the certificate of a CA generated at `now`: a root above an intermediate has pathlen 1, a lone CA 0. */
export function caSpec(m: Manifest, now: Date): CertSpec {
  return {
    profile: m.ca.intermediate ? "root" : "ca",
    subject: m.ca.subject,
    dns: [],
    ips: [],
    uris: [],
    keyType: m.ca.keyType,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + m.ca.validityMs),
  };
}

/** intermediateSpec is the intermediate CA signed at `now`; it never outlives the root that signs it. */
export function intermediateSpec(m: Manifest, now: Date, rootNotAfter: Date | undefined): CertSpec {
  const inter = m.ca.intermediate!;
  const end = now.getTime() + inter.validityMs;
  return {
    profile: "ca",
    subject: inter.subject,
    dns: [],
    ips: [],
    uris: [],
    keyType: inter.keyType,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(rootNotAfter === undefined ? end : Math.min(end, rootNotAfter.getTime())),
  };
}

/**
 * judgeIntermediate decides keep or renew for the existing intermediate. It is renewed when the
 * root did not sign it, its key type or subject changed, or fewer than max(renewBefore, the
 * longest service validity) remain: a service certificate issued now must not outlive it.
 */
function judgeIntermediate(
  state: IntermediateState | undefined,
  root: CaMaterial,
  want: CertSpec,
  renewBeforeMs: number,
  longestLeafMs: number,
  now: Date,
): Pick<IntermediateStep, "action" | "reason" | "notAfter"> {
  if (!state || state.status === "missing")
    return state?.reason === "missing" || !state
      ? { action: "create", reason: "missing", notAfter: undefined }
      : { action: "renew", reason: state.reason, notAfter: undefined };
  const cert = state.ca.cert;
  const notAfter = cert.notAfter;
  if (!cert.issuer.equals(root.cert.subject) || !verifySignedBy(cert, root.publicKey, root.keyType))
    return { action: "renew", reason: "not signed by the current root", notAfter };
  if (state.ca.keyType !== want.keyType)
    return { action: "renew", reason: `key type changed: ${state.ca.keyType} -> ${want.keyType}`, notAfter };
  if (!cert.subject.equals(encodeName(want.subject)))
    return { action: "renew", reason: "subject changed (ca.intermediate.subject)", notAfter };
  if (now >= notAfter) return { action: "renew", reason: `expired ${day(notAfter)}`, notAfter };
  const window = Math.max(renewBeforeMs, longestLeafMs);
  const renewAt = new Date(notAfter.getTime() - window);
  const why =
    window === renewBeforeMs
      ? `renewBefore ${formatDuration(renewBeforeMs)}`
      : `a ${formatDuration(longestLeafMs)} service certificate issued now would outlive it`;
  if (now >= renewAt)
    return {
      action: "renew",
      reason: `due for renewal: expires ${day(notAfter)}, in ${Math.max(0, Math.floor((notAfter.getTime() - now.getTime()) / 86_400_000))} days (${why})`,
      notAfter,
    };
  return { action: "keep", reason: `valid until ${day(notAfter)}, renews from ${day(renewAt)}`, notAfter };
}

/** bundlePem is the trust bundle every service's ca.pem holds. */
export const bundleOf = (ca: CaMaterial): string => ca.bundlePem;

/**
 * trustBundle is what every service's bundle holds: the root (an intermediate never enters a
 * bundle), or, during a CA rotation, the CAs its phase names (old and next while preparing and active).
 */
export function trustBundle(root: CaMaterial, rotation: State["rotation"]): string {
  const next = rotation?.next;
  if (!rotation || !next) return bundleOf(root);
  return [...new Set(PHASES[rotation.record.phase].bundle.map((g) => (g === "old" ? root : next).bundlePem))].join("");
}

/** issuingCa is the CA that signs `service`'s certificates: the next CA once a rotation activated it, else `current`. */
export function issuingCa(current: CaMaterial, rotation: State["rotation"], service: string): CaMaterial {
  const next = rotation?.next;
  return next && issuerOf(rotation.record.phase, rotation.record, service) === "new" ? next : current;
}

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
    else if (s.csr)
      problems.push(
        problemAt(
          loaded,
          ["services", s.name, "csr"],
          `--reissue names service ${s.name}, whose key is made on its host (csr: true); apply never holds that key, so it cannot re-issue it`,
          `run \`mtlskit csr --service ${s.name}\` on ${s.name}'s host, then \`mtlskit sign ${s.name}.csr --service ${s.name}\``,
        ),
      );
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
  /** material: the issuing CA when it exists and signs this run's services; root: the trust anchor's CA. */
  let material: CaMaterial | undefined;
  let root: CaMaterial | undefined;
  // During a rotation (prepared, active) the next CA issues the activated services' certificates.
  const rotation = state.rotation;
  const next = rotation?.next;
  const issuerFor = (service: string): CaMaterial | undefined => material && issuingCa(material, rotation, service);
  if (state.ca.status === "broken") {
    throw new FailedError(`pki: ${state.ca.reason}. Fix: ${state.ca.fix}.`);
  } else if (state.ca.status === "missing") {
    ca = { action: "create", reason: "missing", spec: caSpec(m, now) };
  } else {
    root = state.ca.root ?? state.ca.ca;
    material = root;
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
    for (const s of managed) {
      const issuing = issuerFor(s.name) ?? material;
      if (now.getTime() + s.validityMs > issuing.cert.notAfter.getTime()) {
        const path = ["services", s.name, "validity"];
        problems.push({
          file: m.file,
          ...(loaded.lineOf(path) === undefined ? {} : { line: loaded.lineOf(path)! }),
          path: path.join("."),
          message: `a ${formatDuration(s.validityMs)} certificate issued now would outlive the CA, which expires ${day(issuing.cert.notAfter)}`,
          fix: "shorten the validity, or roll the CA over first",
        });
      }
    }
  }
  let intermediate: IntermediateStep | undefined;
  if (m.ca.intermediate) {
    const inter = m.ca.intermediate;
    const spec = intermediateSpec(m, now, root?.cert.notAfter);
    const rootInfo = root && decodeCertificate(root.cert.der);
    if (rootInfo && rootInfo.pathLen !== undefined && rootInfo.pathLen < 1) {
      const path = ["ca", "intermediate"];
      const line = loaded.lineOf(path);
      problems.push({
        file: m.file,
        ...(line === undefined ? {} : { line }),
        path: path.join("."),
        message: `the CA ${rootInfo.subject} has pathLenConstraint ${rootInfo.pathLen}: it may sign services but no intermediate CA (verifiers would refuse every chain through one)`,
        fix: m.ca.import
          ? "remove ca.intermediate, or import a CA whose pathLenConstraint allows one intermediate below it"
          : `remove ca.intermediate, or start a new CA with a root for it: move ${state.dir}/ca away (every service is re-issued and peers must trust the new ca.pem)`,
      });
    } else if (!root) intermediate = { action: "create", reason: "the root is new", spec, notAfter: undefined };
    else {
      const longest = Math.max(0, ...managed.map((s) => s.validityMs));
      const have = state.ca.status === "ok" ? state.ca.intermediate : undefined;
      intermediate = {
        ...judgeIntermediate(have, root, spec, inter.renewBeforeMs, longest, now),
        spec,
      };
      // Services are issued by the intermediate: kept, it is their CA; new, every one is re-issued under it.
      material = intermediate.action === "keep" && have?.status === "ok" ? have.ca : undefined;
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
  const csr: CsrStep[] = [];
  for (const s of managed) {
    if (s.csr) {
      const online = opts.online?.services.get(s.name);
      csr.push(
        online
          ? onlineStep(s, online, now, m.file)
          : csrStep(s, state.leaves.get(s.slots[0]!.id), material, now, m.file),
      );
      continue;
    }
    for (const slot of s.slots) {
      const spec = leafSpec(s, slot, now);
      const leaf = state.leaves.get(slot.id);
      let verdict: { action: CertAction; reason: string; notAfter?: Date };
      if (!material) {
        verdict =
          leaf?.cert !== undefined || leaf?.keySpki !== undefined
            ? { action: "reissue", reason: root ? "intermediate CA is new" : "CA is new" }
            : { action: "create", reason: "missing" };
      } else {
        const issuing = issuerFor(s.name)!;
        verdict = judgeLeaf(leaf, spec, s, issuing, issuing.chainPem, now);
        if (issuing === next && verdict.reason.startsWith("CA changed"))
          verdict = { ...verdict, reason: "CA rotation: activated, so the next CA issues it" };
        if (verdict.action === "keep" && (opts.reissueAll || requested.has(s.name)))
          verdict = { ...verdict, action: "reissue", reason: opts.reissueAll ? "--reissue-all" : "--reissue" };
        else if (verdict.action === "keep" && layoutChanged)
          verdict = { ...verdict, action: "reissue", reason: layoutChanged };
        // A revoked certificate is replaced whatever else is true of it (mtlskit revoke).
        const revoked = revocationOf(leaf, state.revocations ?? []);
        if (revoked && verdict.action !== "create")
          verdict = { ...verdict, action: "reissue", reason: revokedReason(revoked) };
      }
      certs.push({
        id: slot.id,
        slot,
        action: verdict.action,
        reason: verdict.reason,
        spec,
        currentNotAfter: verdict.notAfter,
        issuer: next && issuerFor(s.name) === next ? "next" : "current",
      });
    }
  }
  // Bundles hold the root (a new intermediate changes none of them); during a rotation, every
  // bundle holds the CAs the phase names (old and next while preparing and active).
  const bundlePem = root && trustBundle(root, rotation);
  const bundles: BundleStep[] = keyedServices(m).map((s) => ({
    service: s.name,
    action: bundlePem !== undefined && state.bundles.get(s.name) === bundlePem ? "keep" : "write",
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
  const crl = planCrl(m, state, material, now, BACKDATE_MS);
  const caKey = root && !root.privateKey ? "offline" : "online";
  const caKeyNeed = caKey === "offline" ? caKeyNeedOf(intermediate, certs, crl) : undefined;
  return {
    dir: state.dir,
    now,
    ca,
    ...(intermediate ? { intermediate } : {}),
    caKey,
    ...(caKeyNeed ? { caKeyNeed } : {}),
    certs,
    bundles,
    external,
    csr,
    warnings,
    layoutVersion,
    crl,
    ...(rotation && bundlePem !== undefined ? { rotation: { record: rotation.record, next, bundlePem } } : {}),
  };
}

/**
 * caKeyNeedOf says what the root's key must sign in this plan: the intermediate (created or
 * renewed), or, without an intermediate, every certificate to issue and the CRL when it must be
 * re-signed (the intermediate signs the CRL when there is one). Nothing: undefined.
 */
function caKeyNeedOf(
  intermediate: IntermediateStep | undefined,
  certs: readonly CertStep[],
  crl: CrlStep,
): CaKeyNeed | undefined {
  if (intermediate)
    return intermediate.action === "keep"
      ? undefined
      : {
          what: `the intermediate CA must be ${intermediate.action === "create" ? "signed" : "re-signed"} by the root: ${intermediate.reason === "missing" ? "it is missing" : intermediate.reason}`,
        };
  const due = certs.filter((c) => c.action !== "keep" && c.issuer !== "next"); // the next CA of a rotation signs its own
  if (due.length === 0)
    return crl.action === "write"
      ? { what: `the CRL (ca/crl.pem) must be re-signed by the CA: ${crl.reason}` }
      : undefined;
  const names = [...new Set(due.map((c) => c.slot.service))];
  const list = due
    .slice(0, 5)
    .map((c) => `${c.id} (${c.reason})`)
    .join(", ");
  return {
    what: `${names.length} service${names.length === 1 ? " needs" : "s need"} certificates signed by the CA: ${list}${due.length > 5 ? `, and ${due.length - 5} more` : ""}`,
  };
}

/** caKeyRequest words what apply says when the plan needs the offline root key: what, why, and the command. */
export function caKeyRequest(plan: Plan, command = "mtlskit apply"): string | undefined {
  if (!plan.caKeyNeed) return undefined;
  const where =
    plan.ca.action === "import"
      ? "the imported CA's key is not named (ca.import.key)"
      : `the CA key is not in ${plan.dir} (kept offline)`;
  const which =
    plan.ca.action === "import"
      ? "the imported CA's private key"
      : `the key \`mtlskit ca offline\` moved out; it is checked against ${plan.dir}/ca/ca.pem`;
  const lost =
    plan.ca.action === "import"
      ? ""
      : `; if the key is lost, move ${plan.dir}/ca away to start a new CA (every service is re-issued and peers must trust the new ca.pem)`;
  return `${plan.caKeyNeed.what}; ${where}. Run \`${command} --ca-key FILE\` with ${which}, read in place and never copied${lost}`;
}

/** csrStep judges a csr service's certificate as apply judges its own, with the key it never holds taken from the certificate. */
function csrStep(
  s: Service,
  leaf: LeafState | undefined,
  material: CaMaterial | undefined,
  now: Date,
  file: string,
): CsrStep {
  const next = `run \`mtlskit csr --service ${s.name} -f ${file} --out DIR\` on ${s.name}'s host, then \`mtlskit sign DIR/${s.name}.csr --service ${s.name} -f ${file} --pki PKI\``;
  const cert = leaf?.cert;
  if (cert === undefined)
    return {
      service: s.name,
      action: "csr",
      state: "awaiting",
      reason: "awaiting a CSR",
      next: `${next}; or have its agent enroll with the online CA: \`mtlskit token create ${s.name} -f ${file} --pki PKI\`, then \`mtlskit agent\` there`,
    };
  if (!material) return { service: s.name, action: "csr", state: "renew", reason: "CA is new", next };
  const verdict = judgeLeaf(
    { ...leaf!, keySpki: "error" in cert ? undefined : cert.spki },
    leafSpec(s, s.slots[0]!, now),
    s,
    material,
    material.chainPem,
    now,
  );
  return verdict.action === "keep"
    ? { service: s.name, action: "csr", state: "signed", reason: `signed, ${verdict.reason}`, next: undefined }
    : { service: s.name, action: "csr", state: "renew", reason: verdict.reason, next };
}

/**
 * onlineStep reports a csr service the online CA issues to (`mtlskit serve`): its agent holds the
 * key and the certificate on its own host, so apply has nothing to do, and the ledger says what
 * was issued. Its newest certificate is judged by `mtlskit check` and `mtlskit status`.
 */
function onlineStep(s: Service, online: OnlineService, now: Date, file: string): CsrStep {
  const newest = online.newest;
  const again = `enroll its agent again: \`mtlskit token create ${s.name} -f ${file} --pki PKI\`, then \`mtlskit agent --service ${s.name} --token-file FILE ...\` on ${s.name}'s host`;
  const base = { service: s.name, action: "csr" as const, state: "online" as const };
  if (!newest)
    return {
      ...base,
      reason: "issued online: every certificate the ledger holds for it is revoked",
      next: again,
    };
  const when = newest.notAfter.toISOString().slice(0, 16).replace("T", " ");
  return newest.notAfter.getTime() <= now.getTime()
    ? {
        ...base,
        reason: `issued online: see the ledger; its newest certificate (serial ${newest.serial}) expired ${when} UTC, so its agent is not renewing`,
        next: `check the agent (\`mtlskit agent --status\`) on ${s.name}'s host, or ${again}`,
      }
    : {
        ...base,
        reason: `issued online: see the ledger (serial ${newest.serial}, valid until ${when} UTC)`,
        next: undefined,
      };
}

/** changedServices lists the services whose files a plan rewrites (certificates or bundle). */
export function changedServices(plan: Plan): string[] {
  const names = new Set<string>();
  for (const c of plan.certs) if (c.action !== "keep") names.add(c.slot.service);
  for (const b of plan.bundles) if (b.action === "write" || plan.ca.action === "create") names.add(b.service);
  // A new CRL reaches a server only when it reloads (nginx reads ssl_crl at start): every hook runs.
  if (plan.crl.action === "write") for (const b of plan.bundles) names.add(b.service);
  return [...names].sort();
}
