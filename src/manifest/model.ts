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
  slots: CertSlot[];
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
