/**
 * PROFILES: the closed table from a certificate's role to its key usage, extended key usage and
 * basic constraints. Code looks profiles up by name; nothing else decides these bits, so an
 * "incompatible key usage" cannot be configured (the seeds' recurring failure).
 */

/** Usage is a service's usage as written in the manifest. */
export type Usage = "server" | "client" | "dual";

/** ProfileName is a row of PROFILES: a CA (`ca` signs leaves; `root` signs one level of intermediates) or a leaf usage. */
export type ProfileName = "ca" | "root" | Usage;

/** KeyUsageBit names the KeyUsage bits mtlskit sets (RFC 5280 4.2.1.3, in bit order). */
export type KeyUsageBit = "digitalSignature" | "keyEncipherment" | "keyCertSign" | "cRLSign";

/** KEY_USAGE_BIT is the bit number of each KeyUsage name. */
export const KEY_USAGE_BIT: Readonly<Record<KeyUsageBit, number>> = {
  digitalSignature: 0,
  keyEncipherment: 2,
  keyCertSign: 5,
  cRLSign: 6,
};

/** ExtKeyUsageName names the extended key usages mtlskit sets. */
export type ExtKeyUsageName = "serverAuth" | "clientAuth";

/** EXT_KEY_USAGE_OID maps an extended key usage to its OID (RFC 5280 4.2.1.12). */
export const EXT_KEY_USAGE_OID: Readonly<Record<ExtKeyUsageName, string>> = {
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
};

/** Profile is one row of PROFILES. */
export interface Profile {
  /** isCA sets BasicConstraints cA (always critical). */
  isCA: boolean;
  /** pathLen is the CA's pathLenConstraint: 0 signs leaves only (a lone CA, an intermediate); 1 signs intermediates (a root above one). */
  pathLen?: number;
  /** keyUsage bits for every key type (always critical). */
  keyUsage: readonly KeyUsageBit[];
  /** rsaKeyUsage bits added for RSA keys only (key transport in TLS 1.2 RSA key exchange). */
  rsaKeyUsage: readonly KeyUsageBit[];
  /** extKeyUsage, in this order (non-critical); empty means no extension (the CA). */
  extKeyUsage: readonly ExtKeyUsageName[];
  /** canServe / canConnect tell which end of a connection a holder may be. */
  canServe: boolean;
  canConnect: boolean;
}

/** PROFILES is the table; see ARCHITECTURE.md and the README, which print it. */
export const PROFILES: Readonly<Record<ProfileName, Profile>> = {
  ca: {
    isCA: true,
    pathLen: 0,
    keyUsage: ["keyCertSign", "cRLSign"],
    rsaKeyUsage: [],
    extKeyUsage: [],
    canServe: false,
    canConnect: false,
  },
  // A root above an intermediate (ca.intermediate): it signs the intermediate, which signs leaves.
  root: {
    isCA: true,
    pathLen: 1,
    keyUsage: ["keyCertSign", "cRLSign"],
    rsaKeyUsage: [],
    extKeyUsage: [],
    canServe: false,
    canConnect: false,
  },
  server: {
    isCA: false,
    keyUsage: ["digitalSignature"],
    rsaKeyUsage: ["keyEncipherment"],
    extKeyUsage: ["serverAuth"],
    canServe: true,
    canConnect: false,
  },
  client: {
    isCA: false,
    keyUsage: ["digitalSignature"],
    rsaKeyUsage: ["keyEncipherment"],
    extKeyUsage: ["clientAuth"],
    canServe: false,
    canConnect: true,
  },
  dual: {
    isCA: false,
    keyUsage: ["digitalSignature"],
    rsaKeyUsage: ["keyEncipherment"],
    extKeyUsage: ["serverAuth", "clientAuth"],
    canServe: true,
    canConnect: true,
  },
};

/** USAGES lists the leaf usages in the order messages print them. */
export const USAGES: readonly Usage[] = ["server", "client", "dual"];
