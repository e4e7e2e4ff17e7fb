/**
 * The issuance policy: the one place that turns "this service, this key, now" into a CertSpec,
 * so apply (a key it makes), `mtlskit sign` (a key made on the service's host) and any later
 * signer cannot drift apart in profiles, SANs or lifetimes. Pure: no files, no clock.
 *
 * leafSpec is what apply issues for each slot. csrPolicy judges a PKCS#10 request against the
 * same leafSpec: the certificate's SANs, identity URI, usage and validity come from the manifest,
 * never from the request; the request only contributes its public key, after its self-signature
 * verifies and its key is the type the manifest declares. Anything the request asks for beyond
 * that (other SANs, CA:TRUE, keyCertSign, another subject, a key of another type or size) is a
 * refusal naming the request's field and the fix, so a CSR never widens what a service may be.
 */
import type { CertSlot, Service } from "../manifest/model.ts";
import { csrSignature, csrSignatureAsync, decodeParts, type CsrFields, type CsrRequest } from "../pki/csr.ts";
import type { CertSpec } from "../pki/issue.ts";
import { KEY_TYPES, keyTypeOfSpki } from "../pki/keys.ts";
import { encodeName } from "../pki/name.ts";
import { formatIp } from "../pki/ip.ts";
import { PROFILES } from "../pki/profiles.ts";

/** BACKDATE_MS: notBefore lies this far before issuance, for peers whose clocks run behind (cfssl's 5 minutes). */
export const BACKDATE_MS = 5 * 60_000;

/** leafSpec is the certificate a slot of a service should hold, issued at `now`: apply's and sign's one spec. */
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

/**
 * requestFor is what `mtlskit csr` asks for: the subject and SANs of leafSpec, the certificate
 * sign will issue, so a request made by mtlskit is never refused by its own policy.
 */
export function requestFor(service: Service): CsrRequest {
  const spec = leafSpec(service, service.slots[0]!, new Date(0));
  return { subject: spec.subject, dns: spec.dns, ips: spec.ips, uris: spec.uris };
}

/** RSA_BITS bounds an RSA key in a request: below, peers refuse it; above, Go refuses it (CVE-2023-29409) and verifying it costs the CA. */
export const RSA_BITS = { min: 2048, max: 4096 } as const;

/** WEAK_HASHES are signature hashes a request may not be signed with (collisions are practical). */
const WEAK_HASHES = new Set(["md5", "sha1"]);

/** Refusal is one reason a request is not signed: the request's field, what is wrong, and the fix. */
export interface Refusal {
  /** field names the part of the CSR (or manifest) at fault: `subjectPKInfo`, `extensionRequest.subjectAltName`, ... */
  field: string;
  message: string;
  fix: string;
}

/** PolicyResult is a spec to sign the request's key with, or every refusal found. */
export type PolicyResult =
  | { ok: true; spec: CertSpec; spki: Buffer; notes: string[] }
  | { ok: false; refusals: Refusal[] };

/** sanWords spells a spec's or request's SANs as openssl does (`DNS:web`, `IP:10.0.0.7`, `URI:spiffe://...`), in order. */
export const sanWords = (names: Pick<CertSpec, "dns" | "ips" | "uris">): string[] => [
  ...names.dns.map((d) => `DNS:${d}`),
  ...names.ips.map((b) => `IP:${formatIp(b)}`),
  ...names.uris.map((u) => `URI:${u}`),
];

const SAN_PREFIX = { dns: "DNS", ip: "IP", uri: "URI", email: "email", other: "other" } as const;
/** sanWord spells one decoded SAN the same way; DNS names in lower case, as they compare. */
const sanWord = (s: { type: keyof typeof SAN_PREFIX; value: string }) =>
  `${SAN_PREFIX[s.type]}:${s.type === "dns" ? s.value.toLowerCase() : s.value}`;
/** comparable puts a sanWords word in sanWord's form: DNS names compare without case (RFC 4343). */
const comparable = (w: string) => (w.startsWith("DNS:") ? `DNS:${w.slice(4).toLowerCase()}` : w);

/**
 * onlineBackdateMs: how far before issuance a short-lived certificate's notBefore lies: a tenth of
 * its lifetime, at most BACKDATE_MS (6 s for a one-minute certificate, 5 min from 50 min up).
 */
export const onlineBackdateMs = (lifetimeMs: number): number => Math.min(BACKDATE_MS, Math.floor(lifetimeMs / 10));

/** CsrPolicyOptions: what an online signer changes in leafSpec's certificate; nothing else differs. */
export interface CsrPolicyOptions {
  /**
   * lifetimeMs: notAfter - notBefore is exactly this (the online CA: the service's ttl, capped by
   * serve.maxTtl), so a certificate never lives longer than its ttl; notBefore is backdated by
   * onlineBackdateMs (a tenth of it, at most BACKDATE_MS) and notAfter follows. Default: the
   * service's validity from issuance, backdated BACKDATE_MS (apply's certificate).
   */
  lifetimeMs?: number;
  /** notAfterMax: notAfter never passes this (the issuing CA's own notAfter). Default: no cap. */
  notAfterMax?: Date;
  /**
   * names: the DNS and IP SANs (sanWords form) the certificate carries instead of all the
   * service declares: an ACME order's identifiers, each one the service declares (the identity
   * URI is always carried). A request asking for any other name is refused. Default: all declared.
   */
  names?: string[];
  /**
   * cnMayBeASan: a subject CN equal to one of the request's DNS or IP SANs is not refused (ACME
   * clients such as lego put the first name in the CN, RFC 8555 §7.4); the certificate still gets
   * the manifest's subject. Default: false.
   */
  cnMayBeASan?: boolean;
  /**
   * cn: the subject CN instead of the manifest's (an ACME order's first DNS name: ACME clients
   * read the CN as a name to renew, lego's ExtractDomains); the other attributes stay the
   * manifest's. Default: the manifest's subject.
   */
  cn?: string;
}

/**
 * csrPolicy judges a decoded request for `service` at `now`: the CertSpec to sign its key with
 * (leafSpec of the service's one slot), or refusals naming each field the request got wrong.
 */
export function csrPolicy(service: Service, csr: CsrFields, now: Date, opts: CsrPolicyOptions = {}): PolicyResult {
  const j = judge(service, csr, now, opts, csrSignature);
  return "ok" in j ? j : conclude(j);
}

/**
 * csrPolicyAsync is csrPolicy with the request's self-signature verified off the event loop
 * (csrSignatureAsync), the online CA's path: the same checks in the same order (the key's type
 * and size before any signature is computed with it; no signature check when they fail), the
 * same refusals in the same order.
 */
export async function csrPolicyAsync(
  service: Service,
  csr: CsrFields,
  now: Date,
  opts: CsrPolicyOptions = {},
): Promise<PolicyResult> {
  const j = judge(service, csr, now, opts, () => undefined);
  if ("ok" in j) return j;
  if (j.signatureAt !== undefined) {
    const sig = await csrSignatureAsync(csr);
    if (sig !== "valid") j.refusals.splice(j.signatureAt, 0, signatureRefusal(sig, j.remake));
  }
  return conclude(j);
}

/** Judged is judge's work: the refusals so far, the spec, and where a signature refusal goes when the check was left to the caller. */
interface Judged {
  refusals: Refusal[];
  spec: CertSpec;
  declared: string[];
  csr: CsrFields;
  remake: string;
  /** signatureAt: the signature is to be checked (the key and hash passed), its refusal inserted at this index. */
  signatureAt: number | undefined;
}

/** signatureRefusal words a self-signature that did not verify. */
function signatureRefusal(sig: Exclude<ReturnType<typeof csrSignature>, "valid">, remake: string): Refusal {
  return {
    field: "signature",
    message:
      sig === "invalid"
        ? "does not verify with the request's own key: the request was altered after signing, or signed with another key"
        : `is ${sig}: mtlskit verifies ECDSA, RSA PKCS#1 v1.5 and Ed25519 signatures`,
    fix: remake,
  };
}

/**
 * SUBJECT_ATTRIBUTES: a manifest subject's attributes as the certificate decoder reads them, by
 * the subject object (a service's, which every request for it shares; a reloaded manifest has new
 * ones): encoding and decoding it took 14-15 us of each online request (bench/serve.bench.ts).
 */
const SUBJECT_ATTRIBUTES = new WeakMap<CertSpec["subject"], Readonly<Record<string, string>>>();

/** subjectAttributesOf reads `subject`'s attributes back from its DER (as a request's are read); `spki` only fills the decoder's frame. */
function subjectAttributesOf(subject: CertSpec["subject"], spki: Buffer): Readonly<Record<string, string>> {
  let attrs = SUBJECT_ATTRIBUTES.get(subject);
  if (!attrs) {
    attrs = decodeParts({ spki, subject: encodeName(subject) }).subjectAttributes;
    SUBJECT_ATTRIBUTES.set(subject, attrs);
  }
  return attrs;
}

/** conclude is the policy's answer from judge's work. */
function conclude(j: Judged): PolicyResult {
  if (j.refusals.length > 0) return { ok: false, refusals: j.refusals };
  const asked = new Set(j.csr.decoded.sans.map(sanWord));
  const added = j.declared.filter((w) => !asked.has(comparable(w)));
  return {
    ok: true,
    spec: j.spec,
    spki: j.csr.spki,
    notes:
      added.length > 0
        ? [`the request did not ask for ${added.join(", ")}; the certificate carries them as the manifest declares`]
        : [],
  };
}

/**
 * judge runs every check of csrPolicy; the self-signature's through `signature`, which may
 * answer undefined: checked later by the caller (signatureAt), only when the key and hash passed.
 */
function judge(
  service: Service,
  csr: CsrFields,
  now: Date,
  opts: CsrPolicyOptions,
  signature: (csr: CsrFields) => ReturnType<typeof csrSignature> | undefined,
): Judged | PolicyResult {
  const refusals: Refusal[] = [];
  const refuse = (field: string, message: string, fix: string) => void refusals.push({ field, message, fix });
  const name = service.name;
  const remake = `make the request with \`mtlskit csr --service ${name}\` on ${name}'s host`;
  if (service.csr !== true || service.slots.length !== 1)
    return {
      ok: false,
      refusals: [
        {
          field: `services.${name}.csr`,
          message: `${name} is not declared csr: true in the manifest, so apply makes its key and mtlskit signs no request for it`,
          fix: `add csr: true to services.${name} (its key then lives only on its host), or run \`mtlskit apply\` for it`,
        },
      ],
    };
  const slot = service.slots[0]!;
  const spec = leafSpec(service, slot, now);
  if (opts.lifetimeMs !== undefined) {
    spec.notBefore = new Date(now.getTime() - onlineBackdateMs(opts.lifetimeMs));
    spec.notAfter = new Date(spec.notBefore.getTime() + opts.lifetimeMs);
  }
  if (opts.notAfterMax !== undefined && spec.notAfter > opts.notAfterMax) spec.notAfter = new Date(opts.notAfterMax);
  if (opts.cn !== undefined) spec.subject = { ...spec.subject, CN: opts.cn };
  if (opts.names !== undefined) {
    const only = new Set(opts.names.map(comparable));
    spec.dns = spec.dns.filter((d) => only.has(comparable(`DNS:${d}`)));
    spec.ips = spec.ips.filter((b) => only.has(`IP:${formatIp(b)}`));
  }
  const info = csr.decoded;

  if (csr.version !== 0) refuse("version", `is ${csr.version}; PKCS#10 defines only version 1 (0)`, remake);

  // The key first: an oversized RSA modulus is refused before any signature is computed with it.
  const key = info.publicKey;
  const want = KEY_TYPES[service.keyType];
  let keyOk = false;
  if (key.algorithm === "rsa" && (key.bits < RSA_BITS.min || key.bits > RSA_BITS.max))
    refuse(
      "subjectPKInfo",
      `is an RSA key of ${key.bits} bits, outside the ${RSA_BITS.min}..${RSA_BITS.max} bits mtlskit signs (and ${name} declares ${want.describe})`,
      `${remake}, or a ${want.describe} key: e.g. \`openssl req -new -newkey ${want.family === "rsa" ? `rsa:${service.keyType.slice(4)}` : want.family === "ec" ? `ec -pkeyopt ec_paramgen_curve:${service.keyType === "ecdsa-p384" ? "P-384" : "P-256"}` : "ed25519"} ...\``,
    );
  else {
    const have = keyTypeOfSpki(csr.spki);
    if (have !== service.keyType)
      refuse(
        "subjectPKInfo",
        `is ${have ? KEY_TYPES[have].describe : `a key mtlskit does not sign (${key.algorithm}${key.curve ? ` ${key.curve}` : key.bits ? ` ${key.bits} bits` : ""})`}, but services.${name}.key declares ${want.describe}`,
        `${remake} (it makes a ${want.describe} key), or change services.${name}.key`,
      );
    else keyOk = true;
  }

  const hash = info.signatureAlgorithm.hash;
  let signatureAt: number | undefined;
  if (typeof hash === "string" && WEAK_HASHES.has(hash))
    refuse(
      "signatureAlgorithm",
      `is ${info.signatureAlgorithm.name}, whose hash is broken`,
      `${remake} (SHA-256 or better)`,
    );
  else if (keyOk) {
    const sig = signature(csr);
    if (sig === undefined) signatureAt = refusals.length;
    else if (sig !== "valid") refusals.push(signatureRefusal(sig, remake));
  }

  // The subject: every attribute the request names must be the manifest's (an empty subject is fine).
  const wantSubject = subjectAttributesOf(spec.subject, csr.spki);
  const sanValues = new Set(
    info.sans.filter((x) => x.type === "dns" || x.type === "ip").map((x) => x.value.toLowerCase()),
  );
  for (const [attr, value] of Object.entries(info.subjectAttributes)) {
    if (opts.cnMayBeASan && attr === "CN" && sanValues.has(value.toLowerCase())) continue;
    if (wantSubject[attr] !== value)
      refuse(
        `subject.${attr}`,
        wantSubject[attr] === undefined
          ? `asks for ${attr}=${value}, which the manifest's subject for ${name} does not have`
          : `asks for ${attr}=${value}, but the manifest declares ${attr}=${wantSubject[attr]} for ${name}`,
        `${remake}, or request the manifest's subject (${Object.entries(wantSubject)
          .map(([k, v]) => `${k}=${v}`)
          .join(", ")})`,
      );
  }

  // The extensions asked for: each must be something the manifest's certificate already is.
  const declared = sanWords(spec);
  for (const ext of info.extensions) {
    switch (ext.name) {
      case "subjectAltName": {
        const allowed = new Set(declared.map(comparable));
        for (const san of info.sans) {
          const word = sanWord(san);
          if (!allowed.has(word))
            refuse(
              "extensionRequest.subjectAltName",
              `asks for ${word}, which the manifest does not declare for ${name} (it declares ${declared.join(", ") || "no SANs"})`,
              `${remake}, or declare the name in services.${name}.addresses${san.type === "uri" ? " (the identity URI comes from identity.uri)" : ""} and run sign again`,
            );
        }
        break;
      }
      case "basicConstraints":
        if (info.isCA || info.pathLen !== undefined)
          refuse(
            "extensionRequest.basicConstraints",
            `asks for CA:TRUE${info.pathLen === undefined ? "" : `, pathlen:${info.pathLen}`}; a service certificate is never a CA`,
            `${remake} (it asks for no CA), or drop basicConstraints from the request's extensions`,
          );
        break;
      case "keyUsage": {
        const p = PROFILES[spec.profile];
        const may = new Set<string>([...p.keyUsage, ...(want.family === "rsa" ? p.rsaKeyUsage : [])]);
        const extra = (info.keyUsage ?? []).filter((u) => !may.has(u));
        if (extra.length > 0)
          refuse(
            "extensionRequest.keyUsage",
            `asks for ${extra.join(", ")}, which a ${spec.profile} certificate never has (it gets ${[...may].join(", ")})`,
            `${remake}, or drop keyUsage from the request: usage comes from services.${name}.usage`,
          );
        break;
      }
      case "extKeyUsage": {
        const may = new Set<string>(PROFILES[spec.profile].extKeyUsage);
        const extra = (info.extKeyUsage ?? []).filter((u) => !may.has(u));
        if (extra.length > 0)
          refuse(
            "extensionRequest.extKeyUsage",
            `asks for ${extra.join(", ")}, but ${name} is declared usage ${service.usage} (${[...may].join(", ")})`,
            `${remake}, or change services.${name}.usage if ${name} really needs it`,
          );
        break;
      }
      case "subjectKeyIdentifier":
        break; // the CA computes the key identifier from the key itself
      default:
        refuse(
          `extensionRequest.${ext.name ?? ext.oid}`,
          `asks for the extension ${ext.name ?? ext.oid}, which mtlskit never issues`,
          `${remake}, or drop that extension from the request`,
        );
    }
  }
  return { refusals, spec, declared, csr, remake, signatureAt };
}
