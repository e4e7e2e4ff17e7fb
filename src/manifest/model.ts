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
  profile: Exclude<ProfileName, "ca">;
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
  /** slots: the certificates the service holds; for an external service, the ones its files must be. */
  slots: CertSlot[];
  /** files: existing files named in the manifest; such a service is external, and apply never writes for it. */
  files: ExternalFiles | undefined;
}

/** managedServices are the services mtlskit issues certificates for: those without `files`. */
export const managedServices = (m: Pick<Manifest, "services">): Service[] => m.services.filter((s) => s.files === undefined);

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
  key: string;
  chain: string | undefined;
}

/** CaSpec is the resolved CA section. */
export interface CaSpec {
  keyType: KeyTypeName;
  validityMs: number;
  subject: Subject;
  import: CaImport | undefined;
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
}
