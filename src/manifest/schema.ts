/**
 * The written manifest (v1): its structure, every field's description and default, and the
 * messages for structural mistakes. The same schema validates manifests and generates the JSON
 * Schema editors use (`schema/mtlskit.schema.json`, see gen-schema.ts), so the two cannot drift.
 */
import * as v from "valibot";
import { KEY_TYPE_NAMES } from "../pki/keys.ts";
import { SUBJECT_ATTRIBUTES } from "../pki/name.ts";
import { USAGES } from "../pki/profiles.ts";
import { TTL_RULE } from "./duration.ts";
import { OUTPUT_FORMATS } from "./model.ts";

const got = (input: unknown): string =>
  typeof input === "string"
    ? JSON.stringify(input)
    : input === null
      ? "null"
      : typeof input === "object"
        ? Array.isArray(input)
          ? "a list"
          : "a mapping"
        : String(input);

const isMapping = (x: unknown): x is Record<string, unknown> =>
  typeof x === "object" && x !== null && !Array.isArray(x);

/** mapping refuses lists and scalars before `schema` runs (valibot's object schemas accept arrays). */
const mapping = <S extends v.GenericSchema>(what: string, schema: S): S =>
  // The custom check passes values through unchanged, so the pipe's types are the schema's own.
  v.pipe(
    v.custom<unknown>(isMapping, (i) => `must be a mapping (${what}); got ${got(i.input)}`),
    schema as v.GenericSchema,
  ) as unknown as S;

type Dataset = { value: unknown; typed?: boolean; issues?: v.BaseIssue<unknown>[] };
type Run = (dataset: Dataset, config: v.Config<v.BaseIssue<unknown>>) => Dataset;
type FixedIssue = v.BaseIssue<unknown> & { fix?: string };

const keyPath = (input: Record<string, unknown>, key: string, origin: "key" | "value") =>
  ({ type: "object", origin, input, key, value: input[key] }) as unknown as v.IssuePathItem;

function addIssue(
  dataset: Dataset,
  issue: Omit<FixedIssue, "kind" | "expected" | "received"> & { expected?: string },
): void {
  const full = { kind: "schema", expected: null, received: got(issue.input), ...issue } as FixedIssue;
  (dataset.issues ??= []).push(full);
  dataset.typed = false;
}

/**
 * ownRecord is v.record reading every own key into an object without a prototype. valibot's record
 * skips `constructor` and `prototype` without a word (its guard against prototype pollution), so a
 * service named `constructor` vanished: one certificate issued, exit 0 (issue 11). Every
 * user-named mapping of the manifest (services, outputs' hosts) goes through here; strict objects
 * already report those keys as unknown. The object has no prototype, so a lookup by a user's name
 * never finds Object.prototype's members. `__proto__` is refused rather than kept: any consumer that copies the mapping into a plain object
 * (JSON tools, a later edit of mtlskit) would set a prototype instead of a name.
 */
function ownRecord<K extends v.GenericSchema<string, string>, V extends v.GenericSchema>(
  key: K,
  value: V,
  message: (i: v.BaseIssue<unknown>) => string = (i) => `must be a mapping; got ${got(i.input)}`,
  /** validKey: a key `key` passes unchanged, judged without valibot (see fastService); others go through `key`. */
  validKey: (k: string) => boolean = () => false,
) {
  const base = v.record(key, value, message);
  const run: Run = (dataset, config) => {
    const input = dataset.value;
    if (!isMapping(input)) return (base["~run"] as Run)(dataset, config);
    const out: Record<string, unknown> = Object.create(null);
    dataset.typed = true;
    for (const k of Object.keys(input)) {
      if (k === "__proto__") {
        addIssue(dataset, {
          type: "record",
          input: k,
          message:
            'is refused as a name: "__proto__" is how JavaScript names an object\'s prototype, so tools that read the manifest could not keep it as a name',
          fix: "choose another name",
          path: [keyPath(input, k, "key")],
        });
        continue;
      }
      const kd = validKey(k) ? { value: k, typed: true } : (key["~run"] as Run)({ value: k }, config);
      for (const i of kd.issues ?? []) (dataset.issues ??= []).push({ ...i, path: [keyPath(input, k, "key")] });
      const vd = (value["~run"] as Run)({ value: input[k] }, config);
      for (const i of vd.issues ?? [])
        (dataset.issues ??= []).push({ ...i, path: [keyPath(input, k, "value"), ...(i.path ?? [])] });
      if (!kd.typed || !vd.typed) dataset.typed = false;
      if (kd.typed) out[kd.value as string] = vd.value;
    }
    dataset.value = out;
    return dataset;
  };
  return { ...base, "~run": run } as unknown as typeof base;
}

/** strict is a mapping that refuses unknown keys, naming the allowed ones: a typo is never ignored. */
function strict<E extends v.ObjectEntries>(entries: E, what: string) {
  const allowed = Object.keys(entries).join(", ");
  return mapping(
    what,
    v.strictObject(entries, (issue) =>
      issue.expected === "never"
        ? `unknown key ${got(issue.input)} in ${what}; allowed keys: ${allowed}`
        : `must be a mapping (${what}); got ${got(issue.input)}`,
    ),
  );
}

/** NAME_RULE is the rule for cluster ids, service names and roles: they become file names and URI parts. */
export const NAME_RULE = /^(?=.{1,32}$)[a-z](?:[a-z0-9]|-(?=[a-z0-9]))*$/;
const NAME_TEXT = "lowercase letters, digits and single inner hyphens, starting with a letter, at most 32 characters";

/** DURATION_RULE is the duration syntax: a positive integer and a unit h, d, w or y (365 days). */
export const DURATION_RULE = /^[1-9][0-9]{0,5}(h|d|w|y)$/;

const name = (what: string) =>
  v.pipe(
    v.string((i) => `must be a string (${what}); got ${got(i.input)}`),
    v.regex(NAME_RULE, (i) => `must be ${NAME_TEXT}; got ${got(i.input)}`),
    v.description(`${what}: ${NAME_TEXT}.`),
  );

const duration = (description: string) =>
  v.pipe(
    v.string((i) => `must be a duration such as 90d, 12h, 2w or 10y; got ${got(i.input)}`),
    v.regex(
      DURATION_RULE,
      (i) =>
        `must be a duration such as 90d, 12h, 2w or 10y (a positive whole number and one unit h, d, w, y); got ${got(i.input)}`,
    ),
    v.description(description),
  );

/** ttl is a short lifetime (parseTtl): an online certificate's ttl, serve.maxTtl. */
const ttl = (description: string) =>
  v.pipe(
    v.string((i) => `must be a duration such as 90s, 15m, 1h or 7d; got ${got(i.input)}`),
    v.regex(
      TTL_RULE,
      (i) =>
        `must be a duration such as 90s, 15m, 1h or 7d (a positive whole number and one unit s, m, h, d); got ${got(i.input)}`,
    ),
    v.description(description),
  );

const keyType = (description: string) =>
  v.pipe(
    v.picklist(KEY_TYPE_NAMES, (i) => `must be one of ${KEY_TYPE_NAMES.join(", ")}; got ${got(i.input)}`),
    v.description(description),
  );

const attr = (k: keyof typeof SUBJECT_ATTRIBUTES) =>
  v.optional(
    v.pipe(
      v.string((i) => `must be a string; got ${got(i.input)}`),
      v.regex(/./, "must not be empty"),
      v.maxLength(
        SUBJECT_ATTRIBUTES[k].max,
        (i) => `must be at most ${SUBJECT_ATTRIBUTES[k].max} characters (RFC 5280 upper bound); got ${i.received}`,
      ),
      v.regex(k === "C" ? /^[A-Z]{2}$/ : /^[^\u0000-\u001f]*$/, (i) =>
        k === "C"
          ? `must be a two-letter upper-case ISO 3166 country code such as US or DE; got ${got(i.input)}`
          : "must not contain control characters",
      ),
      v.description(SUBJECT_ATTRIBUTES[k].describe),
    ),
  );

const subjectEntries = { C: attr("C"), ST: attr("ST"), L: attr("L"), O: attr("O"), OU: attr("OU") };

/** SubjectSchema is a leaf subject without CN: a service's CN comes from its `cn` field. */
const SubjectSchema = v.pipe(
  strict(subjectEntries, "subject (the CN of a service is set with `cn`)"),
  v.description("Distinguished-name attributes: C, ST, L, O, OU."),
);
const CaSubjectSchema = v.pipe(
  strict({ ...subjectEntries, CN: attr("CN") }, "ca.subject"),
  v.description("The CA's distinguished name: C, ST, L, O, OU, CN."),
);

const address = v.pipe(
  v.union([v.string(), v.number()], (i) => `must be an IP address or a DNS name; got ${got(i.input)}`),
  v.transform((a) => String(a)),
  v.description("An IP address (becomes an IP SAN) or a DNS name (becomes a DNS SAN)."),
);

const ImportSchema = v.pipe(
  strict(
    {
      cert: v.pipe(
        v.string(),
        v.description("PEM file of the issuing CA certificate (root or intermediate), relative to the manifest."),
      ),
      key: v.optional(
        v.pipe(
          v.string(),
          v.description(
            "PEM file of the issuing CA's private key (mode 0600), relative to the manifest. It is read in place, never copied. May be left out with ca.intermediate: the key is then given once with `mtlskit apply --ca-key FILE` when the intermediate is signed (first apply and each renewal), and stays offline otherwise.",
          ),
        ),
      ),
      chain: v.optional(
        v.pipe(
          v.string(),
          v.description(
            "PEM file of the certificates above the issuing CA, up to and including the root, relative to the manifest.",
          ),
        ),
      ),
    },
    "ca.import",
  ),
  v.description("Use an existing CA instead of generating one."),
);

/** OWNER_RULE is a user name as useradd accepts it (at most 32 characters), or a decimal uid. */
export const OWNER_RULE = /^(?:(?=.{1,32}$)[a-z_][a-z0-9_-]*[$]?|0|[1-9][0-9]*)$/;
const OWNER_TEXT =
  "a user name (lowercase letters, digits, _ and -, starting with a letter or _, an optional final $, at most 32 characters) or a decimal uid";
/** MAX_UID: the largest uid; 4294967295 is (uid_t)-1, which chown reads as "leave unchanged". */
const MAX_UID = 4294967294;
const notOwner = (i: { input: unknown }) => `must be ${OWNER_TEXT}; got ${got(i.input)}`;
const uidTooLarge = (i: { input: unknown }) => `must be a uid of at most ${MAX_UID}; got ${got(i.input)}`;

/** userOrId is a user or group: a name by OWNER_RULE, or a decimal id up to MAX_UID. */
const userOrId = (description: string) =>
  v.pipe(
    v.union(
      [
        v.pipe(
          v.string(),
          v.regex(OWNER_RULE, notOwner),
          v.check((o) => !/^[0-9]+$/.test(o) || Number(o) <= MAX_UID, uidTooLarge),
        ),
        v.pipe(v.number(), v.integer(notOwner), v.minValue(0, notOwner), v.maxValue(MAX_UID, uidTooLarge)),
      ],
      notOwner,
    ),
    v.description(description),
  );

const existingFile = (description: string) =>
  v.pipe(
    v.string((i) => `must be a file path; got ${got(i.input)}`),
    v.minLength(1, "must not be empty"),
    v.description(description),
  );

const FilesSchema = v.pipe(
  strict(
    {
      cert: existingFile("PEM file of the service's certificate, then any intermediates, relative to the manifest."),
      key: existingFile("PEM file of the service's private key, relative to the manifest."),
      ca: existingFile("PEM file of the trust bundle the service verifies its peers with, relative to the manifest."),
      clientCert: v.optional(
        existingFile(
          "split: true only: PEM file of the client certificate of the split pair, relative to the manifest.",
        ),
      ),
      clientKey: v.optional(
        existingFile("split: true only: PEM file of the client certificate's private key, relative to the manifest."),
      ),
      owner: v.optional(userOrId("The user (name or numeric uid) that must own the key files. Default: not checked.")),
    },
    "files",
  ),
  v.description(
    "Existing certificate files, made without mtlskit: apply never writes, creates or deletes them; `mtlskit check` judges them against this service's declaration.",
  ),
);

const IntermediateSchema = v.pipe(
  strict(
    {
      key: v.optional(keyType("Key type of the intermediate CA. Default: the root's (ca.key).")),
      validity: v.optional(
        duration(
          "Lifetime of the intermediate CA; longer than every service's validity, shorter than the root's. Default: 1y.",
        ),
      ),
      renewBefore: v.optional(
        duration(
          "apply re-signs the intermediate (a new key, signed by the root) this long before it expires, and re-issues the services under it; bundles do not change. Default: a third of its validity.",
        ),
      ),
      subject: v.optional(
        v.pipe(
          strict({ ...subjectEntries, CN: attr("CN") }, "ca.intermediate.subject"),
          v.description(
            "The intermediate's distinguished name: C, ST, L, O, OU, CN. Default: the root's attributes with CN `{cluster} Intermediate CA`.",
          ),
        ),
      ),
    },
    "ca.intermediate",
  ),
  v.description(
    "An online intermediate CA that signs every service, signed by the root (ca, generated or ca.import). The root (pathlen 1) is the trust anchor every bundle holds; the intermediate (pathlen 0) is appended to each service's cert.pem. With it, the root's key can be kept offline (`mtlskit ca offline --to FILE`): apply needs it only to sign the intermediate.",
  ),
);

const CaSchema = strict(
  {
    key: v.optional(keyType("Key type of a generated CA. Default: ecdsa-p256.")),
    validity: v.optional(duration("Lifetime of a generated CA. Default: 10y.")),
    subject: v.optional(CaSubjectSchema),
    import: v.optional(ImportSchema),
    intermediate: v.optional(IntermediateSchema),
    crl: v.optional(
      v.pipe(
        strict(
          {
            nextUpdate: v.optional(
              duration(
                "How long each certificate revocation list (ca/crl.pem) is valid: its nextUpdate. apply writes a new one when less than half of it remains, and whenever the revocation list changes. Default: 7d.",
              ),
            ),
          },
          "ca.crl",
        ),
        v.description("The CA's certificate revocation list (RFC 5280), written by apply to ca/crl.pem."),
      ),
    ),
  },
  "ca",
);

const DefaultsSchema = strict(
  {
    key: v.optional(keyType("Key type of service certificates. Default: ecdsa-p256.")),
    validity: v.optional(duration("Lifetime of service certificates. Default: 90d.")),
    renewBefore: v.optional(
      duration("apply re-issues a certificate this long before it expires. Default: a third of validity."),
    ),
    subject: v.optional(SubjectSchema),
  },
  "defaults",
);

/** RELOAD_SIGNALS: the signals a reload hook may send (each a documented "reload" for some daemon: nginx HUP, nats HUP, haproxy USR2). */
export const RELOAD_SIGNALS = ["HUP", "USR1", "USR2"] as const;

const ReloadSchema = v.pipe(
  v.union(
    [
      v.pipe(v.string(), v.minLength(1, "must not be empty")),
      strict(
        {
          signal: v.pipe(
            v.picklist(RELOAD_SIGNALS, (i) => `must be one of ${RELOAD_SIGNALS.join(", ")}; got ${got(i.input)}`),
            v.description("The signal to send."),
          ),
          pidFile: v.pipe(
            v.string((i) => `must be a path; got ${got(i.input)}`),
            v.minLength(1, "must not be empty"),
            v.description("The file holding the process id, e.g. /run/nginx.pid."),
          ),
        },
        "a signal hook",
      ),
    ],
    (i) =>
      `must be a shell command (e.g. "systemctl reload nginx") or { signal: HUP, pidFile: /run/nginx.pid }; got ${got(i.input)}`,
  ),
  v.description(
    "Run after apply changes this service's files: a shell command (`systemctl reload nginx`, run by /bin/sh with MTLSKIT_SERVICE, MTLSKIT_CERT, MTLSKIT_KEY, MTLSKIT_CA, MTLSKIT_PKI set, and MTLSKIT_CLIENT_CERT, MTLSKIT_CLIENT_KEY for split services) or { signal, pidFile }. Default: none.",
  ),
);

/** CLIENT_SANS: what a service's client certificate carries as SANs (services.NAME.clientSans). */
export const CLIENT_SANS = ["all", "identity-only"] as const;

const ServiceSchema = strict(
  {
    usage: v.pipe(
      v.picklist(USAGES, (i) => `must be one of ${USAGES.join(", ")}; got ${got(i.input)}`),
      v.description("server: accepts mTLS connections; client: makes them; dual: both."),
    ),
    cn: v.optional(
      v.pipe(
        v.string((i) => `must be a string; got ${got(i.input)}`),
        v.maxLength(
          SUBJECT_ATTRIBUTES.CN.max,
          (i) =>
            `must be at most ${SUBJECT_ATTRIBUTES.CN.max} characters (RFC 5280 upper bound for a CN); got ${i.received}`,
        ),
        v.description(
          "Subject CN; also written as a SAN (not on a client certificate with clientSans: identity-only). Default: the service name.",
        ),
      ),
    ),
    role: v.optional(name("Fills {role} in the identity template. Default: the usage")),
    addresses: v.optional(
      v.pipe(
        v.array(address, (i) => `must be a list of IP addresses and DNS names; got ${got(i.input)}`),
        v.description("Where peers dial this service: IPs become IP SANs, names DNS SANs."),
      ),
    ),
    split: v.optional(
      v.pipe(
        v.boolean((i) => `must be true or false; got ${got(i.input)}`),
        v.description(
          "usage dual only: issue separate server (cert.pem) and client (client.pem) certificates with the same identity.",
        ),
      ),
    ),
    key: v.optional(keyType("Key type. Default: defaults.key.")),
    validity: v.optional(duration("Lifetime. Default: defaults.validity.")),
    renewBefore: v.optional(duration("Renewal margin. Default: defaults.renewBefore.")),
    subject: v.optional(SubjectSchema),
    files: v.optional(FilesSchema),
    csr: v.optional(
      v.pipe(
        v.boolean((i) => `must be true or false; got ${got(i.input)}`),
        v.description(
          "true: the service's key is made on its own host and never leaves it. `mtlskit csr --service NAME` there writes the key and a CSR for exactly what this manifest declares; `mtlskit sign CSR --service NAME` on the CA's host checks it against this manifest (the SANs, identity, usage and validity come from here, never from the CSR) and writes the certificate under services/NAME/. apply never makes a key for it; plan and check show it as a csr service. Not with files, split or reload. Default: false (apply makes the key).",
        ),
      ),
    ),
    ttl: v.optional(
      ttl(
        "csr: true only: the lifetime of each certificate the online CA (`mtlskit serve`) issues to this service's agent, which renews at two thirds of it. At most serve.maxTtl, and shorter than the CA's (or ca.intermediate's) validity. `validity` still sets the lifetime of a certificate `mtlskit sign` writes. Default: 1h.",
      ),
    ),
    acmeTrustBinding: v.optional(
      v.pipe(
        v.boolean((i) => `must be true or false; got ${got(i.input)}`),
        v.description(
          "csr: true only: ACME orders by this service's accounts are authorized by their External Account Binding alone: authorizations are created valid and no challenge is validated. Risk: whoever holds one of its EAB keys (or the account key it bound) obtains certificates for every name the service declares, from any host, without proving control of them. For names no validator can reach (no DNS, closed networks). Default: false (http-01, tls-alpn-01 or dns-01 must be met).",
        ),
      ),
    ),
    reload: v.optional(ReloadSchema),
    clientSans: v.optional(
      v.pipe(
        v.picklist(CLIENT_SANS, (i) => `must be one of ${CLIENT_SANS.join(", ")}; got ${got(i.input)}`),
        v.description(
          "The SANs of the service's client certificate (usage client, or the client half of split: true). all: the CN and addresses as DNS/IP SANs plus the identity URI. identity-only: the identity URI alone, as Netsy's runbook issues its node client certificates (clientAuth needs no address SAN); needs identity.uri, and refused on usage server and on dual without split, whose certificate must also cover the addresses it serves. Default: all.",
        ),
      ),
    ),
  },
  "a service",
);

/**
 * fastService returns what ServiceSchema outputs for a service that valibot would pass without an
 * issue and that holds only plain fields (usage, cn, role, addresses as strings, split, key,
 * validity, renewBefore, csr, ttl, clientSans), else undefined: valibot then judges it (subject,
 * files and reload always go there), so every message stays valibot's. Measured on a
 * 10,000-service manifest (issue 12): valibot took 118 ms in a fresh process (17 ms warm) plus the
 * collections of its per-value datasets, on the main thread while the worker threads wait for the
 * plan; this takes a third of its CPU time. Its fields come out in ServiceSchema's order, as
 * valibot's do; test/manifest.test.ts compares the two outputs.
 */
export function fastService(input: unknown): Record<string, unknown> | undefined {
  if (!isMapping(input) || !("usage" in input)) return undefined;
  let keys = 0;
  for (const _ in input) keys++;
  const s = input as Record<string, unknown>;
  if (!(USAGES as readonly unknown[]).includes(s.usage)) return undefined;
  const out: Record<string, unknown> = { usage: s.usage };
  let known = 1;
  if ("cn" in s) {
    if (typeof s.cn !== "string" || s.cn.length > SUBJECT_ATTRIBUTES.CN.max) return undefined;
    out.cn = s.cn;
    known++;
  }
  if ("role" in s) {
    if (typeof s.role !== "string" || !NAME_RULE.test(s.role)) return undefined;
    out.role = s.role;
    known++;
  }
  if ("addresses" in s) {
    const a = s.addresses;
    if (!Array.isArray(a)) return undefined;
    for (let i = 0; i < a.length; i++) if (typeof a[i] !== "string") return undefined;
    out.addresses = a.slice();
    known++;
  }
  if ("split" in s) {
    if (typeof s.split !== "boolean") return undefined;
    out.split = s.split;
    known++;
  }
  if ("key" in s) {
    if (!(KEY_TYPE_NAMES as readonly unknown[]).includes(s.key)) return undefined;
    out.key = s.key;
    known++;
  }
  if ("validity" in s) {
    if (typeof s.validity !== "string" || !DURATION_RULE.test(s.validity)) return undefined;
    out.validity = s.validity;
    known++;
  }
  if ("renewBefore" in s) {
    if (typeof s.renewBefore !== "string" || !DURATION_RULE.test(s.renewBefore)) return undefined;
    out.renewBefore = s.renewBefore;
    known++;
  }
  if ("csr" in s) {
    if (typeof s.csr !== "boolean") return undefined;
    out.csr = s.csr;
    known++;
  }
  if ("ttl" in s) {
    if (typeof s.ttl !== "string" || !TTL_RULE.test(s.ttl)) return undefined;
    out.ttl = s.ttl;
    known++;
  }
  if ("clientSans" in s) {
    if (!(CLIENT_SANS as readonly unknown[]).includes(s.clientSans)) return undefined;
    out.clientSans = s.clientSans;
    known++;
  }
  // Any other key (subject, files, reload, or one valibot refuses as unknown): valibot's to judge.
  return keys === known ? out : undefined;
}

/** ServiceFast is ServiceSchema judging through fastService first (the JSON Schema reads ServiceSchema's fields, kept). */
const ServiceFast = {
  ...ServiceSchema,
  "~run": ((dataset, config) => {
    const out = fastService(dataset.value);
    if (out === undefined) return (ServiceSchema["~run"] as Run)(dataset, config);
    dataset.typed = true;
    dataset.value = out;
    return dataset;
  }) as Run,
} as unknown as typeof ServiceSchema;

/** serviceSchemaRun is valibot's own judgement of one service (tests compare fastService with it). */
export const serviceSchemaRun = (value: unknown) => v.safeParse(ServiceSchema, value, { abortEarly: false });

const ConnectionSchema = strict(
  {
    from: v.pipe(
      v.string((i) => `must be a service name; got ${got(i.input)}`),
      v.description("The service that dials (usage client or dual)."),
    ),
    to: v.pipe(
      v.string((i) => `must be a service name; got ${got(i.input)}`),
      v.description("The service that accepts (usage server or dual)."),
    ),
    address: v.optional(
      v.pipe(
        address,
        v.description(
          "The address `from` dials; must be one of `to`'s addresses or its cn. Default: `to`'s first address, else its cn.",
        ),
      ),
    ),
  },
  "a connection",
);

/** ENV_NAME_RULE is a shell variable name (POSIX): what env outputs may name. */
export const ENV_NAME_RULE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** FILE_NAME_RULE is one path segment: no slash, no control characters, not `.` or `..`. */
export const FILE_NAME_RULE = /^(?!\.\.?$)[^/\\\u0000-\u001f]{1,255}$/;

const text = (description: string) =>
  v.pipe(
    v.string((i) => `must be a string; got ${got(i.input)}`),
    v.minLength(1, "must not be empty"),
    v.description(description),
  );
const envName = (description: string) =>
  v.pipe(
    v.string((i) => `must be a string; got ${got(i.input)}`),
    v.regex(
      ENV_NAME_RULE,
      (i) => `must be a variable name (letters, digits and _, not starting with a digit); got ${got(i.input)}`,
    ),
    v.description(description),
  );
const fileName = (description: string) =>
  v.pipe(
    v.string((i) => `must be a file name; got ${got(i.input)}`),
    v.regex(
      FILE_NAME_RULE,
      (i) => `must be a file name without / (a template: {name} is the service); got ${got(i.input)}`,
    ),
    v.description(description),
  );
const serviceList = (description: string) =>
  v.pipe(
    v.array(name("Service name"), (i) => `must be a list of service names; got ${got(i.input)}`),
    v.description(description),
  );

const OutputSchema = strict(
  {
    format: v.pipe(
      v.picklist(OUTPUT_FORMATS, (i) => `must be one of ${OUTPUT_FORMATS.join(", ")}; got ${got(i.input)}`),
      v.description(
        "flat: PEM files per service or per host; kubernetes: a kubernetes.io/tls Secret per service and a trust-bundle ConfigMap; env: an env file per service naming its files; pkcs12: a passphrase-protected .p12 per service.",
      ),
    ),
    dir: text(
      "Directory the files are written into, relative to the manifest, or to the PKI directory when it starts with {pki} ({pki}/../deploy); created when missing. Must not be inside the PKI directory, and no two outputs may write the same file (two kubernetes outputs sharing a dir name their files NAMESPACE.OBJECT.yaml). Files there that mtlskit did not write are never removed.",
    ),
    services: v.optional(serviceList("The services exported. Default: every service.")),
    hosts: v.optional(
      v.pipe(
        mapping(
          "host directory names to service lists",
          ownRecord(fileName("Host directory name"), serviceList("The services deployed on this host.")),
        ),
        v.description(
          "flat only: a directory per host (DIR/HOST) with each of its services' files and one CA file, as a runbook's role-based table. Default: a directory per service.",
        ),
      ),
    ),
    names: v.optional(
      v.pipe(
        strict(
          {
            ca: v.optional(
              fileName("The CA bundle's file name ({name}: the host, in a hosts layout). Default: root.pem."),
            ),
            cert: v.optional(fileName("The certificate's file name. Default: {name}.pem.")),
            key: v.optional(fileName("The key's file name. Default: {name}-key.pem.")),
            clientCert: v.optional(
              fileName("split services: the client certificate's file name. Default: {name}-client.pem."),
            ),
            clientKey: v.optional(
              fileName("split services: the client key's file name. Default: {name}-client-key.pem."),
            ),
          },
          "outputs names",
        ),
        v.description(
          "flat, and env with certDir: the file names, templates whose only placeholder is {name} (the service). An env output follows the names of the flat output exporting each service; its own names must match one of them.",
        ),
      ),
    ),
    owner: v.optional(
      userOrId(
        "Owner (user name or uid) of the files written; applied only when mtlskit runs as root. Default: the user running mtlskit.",
      ),
    ),
    group: v.optional(
      userOrId(
        "Group (group name or gid) of the files written; applied only when mtlskit runs as root. Default: that user's group.",
      ),
    ),
    name: v.optional(
      text("kubernetes only: the Secret's name; {name} is the service, {cluster} the cluster. Default: {name}-tls."),
    ),
    namespace: v.optional(text("kubernetes only: the namespace of every object; {cluster} allowed. Default: default.")),
    bundle: v.optional(
      text("kubernetes only: the trust bundle ConfigMap's name; {cluster} allowed. Default: {cluster}-ca."),
    ),
    prefix: v.optional(
      v.pipe(
        v.string((i) => `must be a string; got ${got(i.input)}`),
        v.regex(
          /^(?:[A-Za-z_][A-Za-z0-9_]*)?$/,
          (i) =>
            `must be the start of a variable name (letters, digits and _, not starting with a digit); got ${got(i.input)}`,
        ),
        v.description(
          "env only: prepended to each variable: PREFIX + CA_CERT, SERVER_CERT, SERVER_KEY, CLIENT_CERT, CLIENT_KEY. Default: TLS_.",
        ),
      ),
    ),
    nodeId: v.optional(
      envName("env only: a variable set to the service's name (Netsy: NETSY_NODE_ID). Default: none."),
    ),
    certDir: v.optional(
      text(
        "env only: the directory the variables point into, on the host that reads them ({name} allowed), with the file names the manifest's flat output for each service writes (else this output's names, else the flat defaults). Default: the PKI directory's own files.",
      ),
    ),
    passphraseFile: v.optional(
      text("pkcs12 only: file holding the passphrase (its first line), relative to the manifest."),
    ),
    passphraseEnv: v.optional(envName("pkcs12 only: environment variable holding the passphrase.")),
  },
  "an output",
);

const ServeSchema = v.pipe(
  strict(
    {
      maxTtl: v.optional(
        ttl("The longest ttl any service may declare: a bound on every online-issued certificate. Default: 24h."),
      ),
      admins: v.optional(
        serviceList(
          "Services whose client certificate (usage client or dual) may revoke online-issued certificates (POST /v1/revoke), matched by identity URI, or by CN without identity.uri. Default: none.",
        ),
      ),
    },
    "serve",
  ),
  v.description(
    "The online CA's policy (`mtlskit serve`, `mtlskit agent`): csr: true services are issued short-lived certificates by the server, each for exactly what this manifest declares. Default: maxTtl 24h, no admins.",
  ),
);

/** MAX_LAYOUT_VERSION bounds layoutVersion: room for a bump a day for 2,700 years, and exact in every number format. */
export const MAX_LAYOUT_VERSION = 1_000_000;

/** ManifestSchema is the whole written manifest, v1. */
export const ManifestSchema = v.pipe(
  strict(
    {
      version: v.pipe(
        v.literal(1, (i) => `must be 1, the manifest version this mtlskit reads; got ${got(i.input)}`),
        v.description("Manifest format version: 1."),
      ),
      cluster: name("Cluster id, fills {cluster}"),
      identity: v.optional(
        strict(
          {
            uri: v.pipe(
              v.string((i) => `must be a URI template string; got ${got(i.input)}`),
              v.description(
                "Identity URI template written as each service's URI SAN, e.g. spiffe://example.org/{role}/{name}. Placeholders: {cluster} {role} {name}.",
              ),
            ),
          },
          "identity",
        ),
      ),
      ca: v.optional(CaSchema),
      defaults: v.optional(DefaultsSchema),
      services: v.pipe(
        mapping(
          "service names to services",
          ownRecord(
            name("Service name"),
            ServiceFast,
            (i) => `must be a mapping of service names to services; got ${got(i.input)}`,
            (k) => NAME_RULE.test(k),
          ),
        ),
        v.check((m) => Object.keys(m).length > 0, "must declare at least one service"),
        v.description("The services, by name. Names become directory names and fill {name}."),
      ),
      connections: v.optional(
        v.pipe(
          v.array(ConnectionSchema, (i) => `must be a list of connections; got ${got(i.input)}`),
          v.description("Who dials whom, at which address; apply checks every address is in the target's SANs."),
        ),
      ),
      layoutVersion: v.optional(
        v.pipe(
          v.number((i) => `must be a whole number; got ${got(i.input)}`),
          v.integer((i) => `must be a whole number; got ${got(i.input)}`),
          v.minValue(1, (i) => `must be at least 1; got ${got(i.input)}`),
          // 1e300 passed as a whole number, was written as "1e+300" and read back as unreadable,
          // so every apply re-issued everything (issue 11).
          v.maxValue(MAX_LAYOUT_VERSION, (i) => `must be at most ${MAX_LAYOUT_VERSION}; got ${got(i.input)}`),
          v.description(
            `Changing it re-issues every certificate at the next apply (like ServiceRadar's runtimeLayoutVersion); otherwise valid certificates are kept. A whole number from 1 to ${MAX_LAYOUT_VERSION}. Default: 1.`,
          ),
        ),
      ),
      outputs: v.optional(
        v.pipe(
          v.array(OutputSchema, (i) => `must be a list of outputs; got ${got(i.input)}`),
          v.description(
            "Exports apply writes after issuing, so a renewal refreshes them too; `mtlskit export` writes them on demand.",
          ),
        ),
      ),
      serve: v.optional(ServeSchema),
    },
    "the manifest",
  ),
  v.description("mtlskit manifest: a cluster's CA, services and connections."),
);

/**
 * EXTENSION_KEY matches the top-level keys mtlskit ignores (x-profiles, x-defaults): a place for
 * YAML anchors that merge keys (`<<: *server`) copy into services, as Docker Compose's x- keys.
 */
export const EXTENSION_KEY = /^x-/;

/** withoutExtensions drops the top-level x- keys before validation (values other than mappings pass as they are). */
function withoutExtensions(value: unknown): unknown {
  if (!isMapping(value) || !Object.keys(value).some((k) => EXTENSION_KEY.test(k))) return value;
  return Object.fromEntries(Object.entries(value).filter(([k]) => !EXTENSION_KEY.test(k)));
}

/** WrittenManifest is the manifest as the user wrote it, after structural validation. */
export type WrittenManifest = v.InferOutput<typeof ManifestSchema>;

/** SchemaIssue is a structural problem: where (path segments, and whether a key is at fault) and what. */
export interface SchemaIssue {
  path: (string | number)[];
  atKey: boolean;
  missing: boolean;
  unknownKey: boolean;
  message: string;
  /** fix, when the issue knows better than the generic advice. */
  fix?: string;
}

/** validateWritten checks a parsed YAML value against ManifestSchema, reporting every issue. */
export function validateWritten(
  value: unknown,
): { ok: true; manifest: WrittenManifest } | { ok: false; issues: SchemaIssue[] } {
  const r = v.safeParse(ManifestSchema, withoutExtensions(value), { abortEarly: false });
  if (r.success) return { ok: true, manifest: r.output };
  // A union (a reload hook: a command or a mapping) fails as a whole; when the input had the shape
  // of one branch, that branch's deeper issue (`signal must be one of ...`) says more.
  // (Sub-issues' paths are relative to the union: a non-empty one came from inside a branch.)
  const deepest = (issue: v.BaseIssue<unknown>): v.BaseIssue<unknown>[] => {
    const inner = issue.type === "union" ? (issue.issues ?? []).filter((x) => (x.path?.length ?? 0) > 0) : [];
    return inner.length > 0
      ? inner.map((x) => ({ ...x, path: [...(issue.path ?? []), ...x.path!] }) as v.BaseIssue<unknown>).flatMap(deepest)
      : [issue];
  };
  return {
    ok: false,
    issues: r.issues.flatMap(deepest).map((issue) => {
      const last = issue.path?.at(-1) as { type?: string; origin?: string } | undefined;
      const atKey = last?.type === "object" && last.origin === "key";
      return {
        path: (issue.path ?? []).map((s) => s.key as string | number),
        atKey,
        missing: issue.input === undefined && issue.kind === "schema",
        unknownKey: atKey && issue.type === "strict_object",
        message: issue.message,
        ...((issue as FixedIssue).fix === undefined ? {} : { fix: (issue as FixedIssue).fix }),
      };
    }),
  };
}
