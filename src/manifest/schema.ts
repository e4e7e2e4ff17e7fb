/**
 * The written manifest (v1): its structure, every field's description and default, and the
 * messages for structural mistakes. The same schema validates manifests and generates the JSON
 * Schema editors use (`schema/mtlskit.schema.json`, see gen-schema.ts), so the two cannot drift.
 */
import * as v from "valibot";
import { KEY_TYPE_NAMES } from "../pki/keys.ts";
import { SUBJECT_ATTRIBUTES } from "../pki/name.ts";
import { USAGES } from "../pki/profiles.ts";

const got = (input: unknown): string => (typeof input === "string" ? JSON.stringify(input) : input === null ? "null" : typeof input === "object" ? (Array.isArray(input) ? "a list" : "a mapping") : String(input));

const isMapping = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);

/** mapping refuses lists and scalars before `schema` runs (valibot's object schemas accept arrays). */
const mapping = <S extends v.GenericSchema>(what: string, schema: S): S =>
  // The custom check passes values through unchanged, so the pipe's types are the schema's own.
  v.pipe(v.custom<unknown>(isMapping, (i) => `must be a mapping (${what}); got ${got(i.input)}`), schema as v.GenericSchema) as unknown as S;

/** strict is a mapping that refuses unknown keys, naming the allowed ones: a typo is never ignored. */
function strict<E extends v.ObjectEntries>(entries: E, what: string) {
  const allowed = Object.keys(entries).join(", ");
  return mapping(
    what,
    v.strictObject(entries, (issue) =>
      issue.expected === "never" ? `unknown key ${got(issue.input)} in ${what}; allowed keys: ${allowed}` : `must be a mapping (${what}); got ${got(issue.input)}`,
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
    v.regex(DURATION_RULE, (i) => `must be a duration such as 90d, 12h, 2w or 10y (a positive whole number and one unit h, d, w, y); got ${got(i.input)}`),
    v.description(description),
  );

const keyType = (description: string) =>
  v.pipe(v.picklist(KEY_TYPE_NAMES, (i) => `must be one of ${KEY_TYPE_NAMES.join(", ")}; got ${got(i.input)}`), v.description(description));

const attr = (k: keyof typeof SUBJECT_ATTRIBUTES) =>
  v.optional(
    v.pipe(
      v.string((i) => `must be a string; got ${got(i.input)}`),
      v.regex(/./, "must not be empty"),
      v.maxLength(SUBJECT_ATTRIBUTES[k].max, (i) => `must be at most ${SUBJECT_ATTRIBUTES[k].max} characters (RFC 5280 upper bound); got ${i.received}`),
      v.regex(k === "C" ? /^[A-Z]{2}$/ : /^[^\u0000-\u001f]*$/, (i) =>
        k === "C" ? `must be a two-letter upper-case ISO 3166 country code such as US or DE; got ${got(i.input)}` : "must not contain control characters",
      ),
      v.description(SUBJECT_ATTRIBUTES[k].describe),
    ),
  );

const subjectEntries = { C: attr("C"), ST: attr("ST"), L: attr("L"), O: attr("O"), OU: attr("OU") };

/** SubjectSchema is a leaf subject without CN: a service's CN comes from its `cn` field. */
const SubjectSchema = v.pipe(strict(subjectEntries, "subject (the CN of a service is set with `cn`)"), v.description("Distinguished-name attributes: C, ST, L, O, OU."));
const CaSubjectSchema = v.pipe(strict({ ...subjectEntries, CN: attr("CN") }, "ca.subject"), v.description("The CA's distinguished name: C, ST, L, O, OU, CN."));

const address = v.pipe(
  v.union([v.string(), v.number()], (i) => `must be an IP address or a DNS name; got ${got(i.input)}`),
  v.transform((a) => String(a)),
  v.description("An IP address (becomes an IP SAN) or a DNS name (becomes a DNS SAN)."),
);

const ImportSchema = v.pipe(
  strict(
    {
      cert: v.pipe(v.string(), v.description("PEM file of the issuing CA certificate (root or intermediate), relative to the manifest.")),
      key: v.pipe(v.string(), v.description("PEM file of the issuing CA's private key (mode 0600), relative to the manifest. It is read in place, never copied.")),
      chain: v.optional(v.pipe(v.string(), v.description("PEM file of the certificates above the issuing CA, up to and including the root, relative to the manifest."))),
    },
    "ca.import",
  ),
  v.description("Use an existing CA instead of generating one."),
);

/** OWNER_RULE is a user name as useradd accepts it (at most 32 characters), or a decimal uid. */
export const OWNER_RULE = /^(?:(?=.{1,32}$)[a-z_][a-z0-9_-]*[$]?|0|[1-9][0-9]*)$/;
const OWNER_TEXT = "a user name (lowercase letters, digits, _ and -, starting with a letter or _, an optional final $, at most 32 characters) or a decimal uid";
/** MAX_UID: the largest uid; 4294967295 is (uid_t)-1, which chown reads as "leave unchanged". */
const MAX_UID = 4294967294;
const notOwner = (i: { input: unknown }) => `must be ${OWNER_TEXT}; got ${got(i.input)}`;
const uidTooLarge = (i: { input: unknown }) => `must be a uid of at most ${MAX_UID}; got ${got(i.input)}`;

const existingFile = (description: string) =>
  v.pipe(v.string((i) => `must be a file path; got ${got(i.input)}`), v.minLength(1, "must not be empty"), v.description(description));

const FilesSchema = v.pipe(
  strict(
    {
      cert: existingFile("PEM file of the service's certificate, then any intermediates, relative to the manifest."),
      key: existingFile("PEM file of the service's private key, relative to the manifest."),
      ca: existingFile("PEM file of the trust bundle the service verifies its peers with, relative to the manifest."),
      clientCert: v.optional(existingFile("split: true only: PEM file of the client certificate of the split pair, relative to the manifest.")),
      clientKey: v.optional(existingFile("split: true only: PEM file of the client certificate's private key, relative to the manifest.")),
      owner: v.optional(
        v.pipe(
          v.union(
            [
              v.pipe(v.string(), v.regex(OWNER_RULE, notOwner), v.check((o) => !/^[0-9]+$/.test(o) || Number(o) <= MAX_UID, uidTooLarge)),
              v.pipe(v.number(), v.integer(notOwner), v.minValue(0, notOwner), v.maxValue(MAX_UID, uidTooLarge)),
            ],
            notOwner,
          ),
          v.description("The user (name or numeric uid) that must own the key files. Default: not checked."),
        ),
      ),
    },
    "files",
  ),
  v.description("Existing certificate files, made without mtlskit: apply never writes, creates or deletes them; `mtlskit check` judges them against this service's declaration."),
);

const CaSchema = strict(
  {
    key: v.optional(keyType("Key type of a generated CA. Default: ecdsa-p256.")),
    validity: v.optional(duration("Lifetime of a generated CA. Default: 10y.")),
    subject: v.optional(CaSubjectSchema),
    import: v.optional(ImportSchema),
  },
  "ca",
);

const DefaultsSchema = strict(
  {
    key: v.optional(keyType("Key type of service certificates. Default: ecdsa-p256.")),
    validity: v.optional(duration("Lifetime of service certificates. Default: 90d.")),
    renewBefore: v.optional(duration("apply re-issues a certificate this long before it expires. Default: a third of validity.")),
    subject: v.optional(SubjectSchema),
  },
  "defaults",
);

const ServiceSchema = strict(
  {
    usage: v.pipe(v.picklist(USAGES, (i) => `must be one of ${USAGES.join(", ")}; got ${got(i.input)}`), v.description("server: accepts mTLS connections; client: makes them; dual: both.")),
    cn: v.optional(
      v.pipe(
        v.string((i) => `must be a string; got ${got(i.input)}`),
        v.maxLength(SUBJECT_ATTRIBUTES.CN.max, (i) => `must be at most ${SUBJECT_ATTRIBUTES.CN.max} characters (RFC 5280 upper bound for a CN); got ${i.received}`),
        v.description("Subject CN; also written as a SAN. Default: the service name."),
      ),
    ),
    role: v.optional(name("Fills {role} in the identity template. Default: the usage")),
    addresses: v.optional(
      v.pipe(v.array(address, (i) => `must be a list of IP addresses and DNS names; got ${got(i.input)}`), v.description("Where peers dial this service: IPs become IP SANs, names DNS SANs.")),
    ),
    split: v.optional(v.pipe(v.boolean((i) => `must be true or false; got ${got(i.input)}`), v.description("usage dual only: issue separate server (cert.pem) and client (client.pem) certificates with the same identity."))),
    key: v.optional(keyType("Key type. Default: defaults.key.")),
    validity: v.optional(duration("Lifetime. Default: defaults.validity.")),
    renewBefore: v.optional(duration("Renewal margin. Default: defaults.renewBefore.")),
    subject: v.optional(SubjectSchema),
    files: v.optional(FilesSchema),
  },
  "a service",
);

const ConnectionSchema = strict(
  {
    from: v.pipe(v.string((i) => `must be a service name; got ${got(i.input)}`), v.description("The service that dials (usage client or dual).")),
    to: v.pipe(v.string((i) => `must be a service name; got ${got(i.input)}`), v.description("The service that accepts (usage server or dual).")),
    address: v.optional(v.pipe(address, v.description("The address `from` dials; must be one of `to`'s addresses or its cn. Default: `to`'s first address, else its cn."))),
  },
  "a connection",
);

/** ManifestSchema is the whole written manifest, v1. */
export const ManifestSchema = v.pipe(
  strict(
    {
      version: v.pipe(v.literal(1, (i) => `must be 1, the manifest version this mtlskit reads; got ${got(i.input)}`), v.description("Manifest format version: 1.")),
      cluster: name("Cluster id, fills {cluster}"),
      identity: v.optional(
        strict(
          {
            uri: v.pipe(
              v.string((i) => `must be a URI template string; got ${got(i.input)}`),
              v.description("Identity URI template written as each service's URI SAN, e.g. spiffe://example.org/{role}/{name}. Placeholders: {cluster} {role} {name}."),
            ),
          },
          "identity",
        ),
      ),
      ca: v.optional(CaSchema),
      defaults: v.optional(DefaultsSchema),
      services: v.pipe(
        mapping("service names to services", v.record(name("Service name"), ServiceSchema, (i) => `must be a mapping of service names to services; got ${got(i.input)}`)),
        v.check((m) => Object.keys(m).length > 0, "must declare at least one service"),
        v.description("The services, by name. Names become directory names and fill {name}."),
      ),
      connections: v.optional(
        v.pipe(v.array(ConnectionSchema, (i) => `must be a list of connections; got ${got(i.input)}`), v.description("Who dials whom, at which address; apply checks every address is in the target's SANs.")),
      ),
    },
    "the manifest",
  ),
  v.description("mtlskit manifest: a cluster's CA, services and connections."),
);

/** WrittenManifest is the manifest as the user wrote it, after structural validation. */
export type WrittenManifest = v.InferOutput<typeof ManifestSchema>;

/** SchemaIssue is a structural problem: where (path segments, and whether a key is at fault) and what. */
export interface SchemaIssue {
  path: (string | number)[];
  atKey: boolean;
  missing: boolean;
  unknownKey: boolean;
  message: string;
}

/** validateWritten checks a parsed YAML value against ManifestSchema, reporting every issue. */
export function validateWritten(value: unknown): { ok: true; manifest: WrittenManifest } | { ok: false; issues: SchemaIssue[] } {
  const r = v.safeParse(ManifestSchema, value, { abortEarly: false });
  if (r.success) return { ok: true, manifest: r.output };
  return {
    ok: false,
    issues: r.issues.map((issue) => {
      const last = issue.path?.at(-1) as { type?: string; origin?: string } | undefined;
      const atKey = last?.type === "object" && last.origin === "key";
      return {
        path: (issue.path ?? []).map((s) => s.key as string | number),
        atKey,
        missing: issue.input === undefined && issue.kind === "schema",
        unknownKey: atKey && issue.type === "strict_object",
        message: issue.message,
      };
    }),
  };
}
