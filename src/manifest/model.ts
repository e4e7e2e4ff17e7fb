/**
 * The resolved manifest: what the rest of mtlskit reads. Defaults are applied, durations are
 * milliseconds, addresses are typed SANs, identities are rendered. Distinct from WrittenManifest
 * (schema.ts), which is what the user wrote.
 */
import type { KeyTypeName } from "../pki/keys.ts";
import type { Subject } from "../pki/name.ts";
import type { ProfileName, Usage } from "../pki/profiles.ts";
import type { Address } from "./address.ts";

/** CertSlot is one certificate a service holds: its main one, or the client half of a split pair. */
export interface CertSlot {
  /** id names the certificate in plans and messages: `core`, or `core/client` for a split pair. */
  id: string;
  service: string;
  /** kind decides the file names (state/layout.ts): `main` is cert.pem/key.pem. */
  kind: "main" | "client";
  profile: Exclude<ProfileName, "ca" | "root">;
}

/** ExternalFiles names a service's existing certificate files (resolved absolute paths); apply never writes them. */
export interface ExternalFiles {
  cert: string;
  key: string;
  ca: string;
  /** clientCert and clientKey: the client half of a split pair (split: true only). */
  clientCert: string | undefined;
  clientKey: string | undefined;
  /** owner: the user name or decimal uid that must own the key files, when the manifest says. */
  owner: string | undefined;
}

/** Reload is a service's reload hook: a shell command, or a signal to the process in a pid file. */
export type Reload = { command: string } | { signal: "HUP" | "USR1" | "USR2"; pidFile: string };

/** Service is a resolved service. */
export interface Service {
  name: string;
  usage: Usage;
  role: string;
  cn: string;
  keyType: KeyTypeName;
  validityMs: number;
  renewBeforeMs: number;
  subject: Subject;
  /** sans: the CN first, then the addresses, de-duplicated. */
  dns: string[];
  ips: Extract<Address, { kind: "ip" }>[];
  /** identity is the rendered identity URI, when the manifest has a template. */
  identity: string | undefined;
  split: boolean;
  /** clientSans: `identity-only` issues the client certificate (usage client, or a split pair's client half) with the identity URI as its only SAN. Default: all. */
  clientSans?: "all" | "identity-only";
  /** slots: the certificates the service holds; for an external service, the ones its files must be. */
  slots: CertSlot[];
  /** files: existing files named in the manifest; such a service is external, and apply never writes for it. */
  files: ExternalFiles | undefined;
  /** csr: the key is made on the service's host (`mtlskit csr`) and its CSR signed by `mtlskit sign`; apply never makes a key for it. Default: false. */
  csr?: boolean;
  /** reload: run after apply changes the service's files (pid files resolved against the manifest's directory). */
  reload?: Reload;
  /** ttlMs: the lifetime of a certificate the online CA (`mtlskit serve`) issues to this service (csr: true only); at most serve.maxTtlMs. Default: 1h. */
  ttlMs?: number;
  /** acmeTrustBinding: csr: true only: ACME authorizations of this service's accounts are created valid, trusting the EAB binding (no challenge). Default: false. */
  acmeTrustBinding?: boolean;
}

/** ServeSpec is the resolved `serve:` section: the online CA's policy (`mtlskit serve`, `mtlskit agent`). */
export interface ServeSpec {
  /** maxTtlMs bounds every service's ttl. Default: 24h. */
  maxTtlMs: number;
  /** admins: names of services whose client certificate (matched by identity URI, or by CN without an identity template) may call /v1/revoke. Default: none. */
  admins: string[];
}

/** managedServices are the services mtlskit issues certificates for: those without `files`. */
export const managedServices = (m: Pick<Manifest, "services">): Service[] =>
  m.services.filter((s) => s.files === undefined);

/** keyedServices are the managed services whose keys apply makes: those without `files` or `csr`. */
export const keyedServices = (m: Pick<Manifest, "services">): Service[] =>
  m.services.filter((s) => s.files === undefined && s.csr !== true);
/** NAMES_SHOWN: how many service names a message lists before it counts the rest. */
export const NAMES_SHOWN = 20;

/**
 * serviceNames lists the manifest's service names for a message about an unknown one: all of
 * them up to NAMES_SHOWN, else the first NAMES_SHOWN and how many more. Each unknown name is its
 * own problem, so 10,000 of them each listing 10,000 names would print gigabytes (issue 12).
 */
export function serviceNames(m: Pick<Manifest, "services">): string {
  const shown = m.services.slice(0, NAMES_SHOWN).map((s) => s.name);
  const more = m.services.length - shown.length;
  return more > 0 ? `${shown.join(", ")} and ${more} more (under services:)` : shown.join(", ");
}

/** Connection is a resolved connection. */
export interface Connection {
  /** index is the connection's position in the manifest's list. */
  index: number;
  from: string;
  to: string;
  address: Address;
}

/** ImportedCa points at an existing CA's files, resolved against the manifest's directory. */
export interface CaImport {
  cert: string;
  /** key: undefined only with ca.intermediate: the imported CA's key is then given with `apply --ca-key FILE` when the intermediate is signed. */
  key: string | undefined;
  chain: string | undefined;
}

/** CaSpec is the resolved CA section. */
export interface CaSpec {
  keyType: KeyTypeName;
  validityMs: number;
  subject: Subject;
  import: CaImport | undefined;
  /** crlNextUpdateMs: each CRL's lifetime (ca.crl.nextUpdate); normalize always sets it. Default: 7d. */
  crlNextUpdateMs?: number;
  /** intermediate: the online CA that signs the leaves, signed by the root (generated or imported); undefined: the root signs leaves. */
  intermediate: IntermediateSpec | undefined;
}

/** IntermediateSpec is the resolved ca.intermediate section. */
export interface IntermediateSpec {
  keyType: KeyTypeName;
  validityMs: number;
  /** renewBeforeMs: apply re-signs the intermediate (a new key) this long before it expires, and re-issues the leaves under it. */
  renewBeforeMs: number;
  subject: Subject;
}

/** OUTPUT_FORMATS are the export formats (src/export/): the schema, `mtlskit export --format` and the builders read this one list. */
export const OUTPUT_FORMATS = ["flat", "kubernetes", "env", "pkcs12"] as const;

/** OutputFormat is one of OUTPUT_FORMATS. */
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** FlatNameKey names the files of the flat layout (manifest/outputs.ts FLAT_NAMES has their defaults). */
export type FlatNameKey = "ca" | "cert" | "key" | "clientCert" | "clientKey";

/** Output is one export: an entry of `outputs:`, or the flags of `mtlskit export`. Format-specific fields are undefined elsewhere. */
export interface Output {
  format: OutputFormat;
  /** dir is the directory written into (from the manifest: resolved against the manifest's directory). */
  dir: string;
  /** at is the output's field path in the manifest (`outputs.0`), for messages; undefined for flags. */
  at: string | undefined;
  /** services: the services exported, in the manifest's order; undefined: every service. */
  services: string[] | undefined;
  /** hosts (flat): a directory per host holding its services' files and one CA file; undefined: a directory per service. */
  hosts: Record<string, string[]> | undefined;
  /** names (flat, env): file-name templates overriding the flat defaults; `{name}` is the service. */
  names: Partial<Record<FlatNameKey, string>>;
  /** owner and group (user/group name or decimal id) of the files written, applied only when running as root. */
  owner: string | undefined;
  group: string | undefined;
  /** name (kubernetes): the Secret name template. Default `{name}-tls`. */
  name: string | undefined;
  /** namespace (kubernetes). Default `default`. */
  namespace: string | undefined;
  /** bundle (kubernetes): the trust bundle ConfigMap's name template. Default `{cluster}-ca`. */
  bundle: string | undefined;
  /** prefix (env): prepended to every variable name. Default `TLS_`. */
  prefix: string | undefined;
  /** nodeId (env): a variable set to the service's name, e.g. NETSY_NODE_ID. Default: none. */
  nodeId: string | undefined;
  /** certDir (env): the directory the variables point into (with the flat names; `{name}` allowed). Default: the PKI directory's own files. */
  certDir: string | undefined;
  /** namespaceInFileNames (kubernetes): files are NAMESPACE.OBJECT.yaml, set when another kubernetes output shares the dir. Default: false (OBJECT.yaml). */
  namespaceInFileNames?: boolean;
  /** passphraseFile and passphraseEnv (pkcs12): where the passphrase is read from; exactly one. */
  passphraseFile: string | undefined;
  passphraseEnv: string | undefined;
}

/** Manifest is the resolved manifest. */
export interface Manifest {
  /** file is the manifest's path as the user named it. */
  file: string;
  cluster: string;
  identityTemplate: string | undefined;
  ca: CaSpec;
  services: Service[];
  connections: Connection[];
  /** layoutVersion: changing it re-issues every certificate (ServiceRadar's runtimeLayoutVersion). Default (absent): 1. */
  layoutVersion?: number;
  /** outputs: exports apply writes after issuing (src/export/). Default (absent): none. */
  outputs?: Output[];
  /** serve: the online CA's policy; absent: defaults (maxTtl 24h, no admins). */
  serve?: ServeSpec;
}
