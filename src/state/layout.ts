/**
 * LAYOUT: the one table of paths and modes in a PKI directory. Code and docs read it; nothing
 * else spells a file name. Private directories are 0700; keys 0600; public material 0644.
 *
 *   DIR/.lock                      held while apply runs
 *   DIR/last-apply.json  0644      when the last apply ran, whether it succeeded, what it did (status, metrics)
 *   DIR/layout-version   0644      the layoutVersion the certificates were issued under, when not 1 (plan re-issues when it changes)
 *   DIR/ca/              0700
 *   DIR/ca/ca.pem        0644      the trust anchor peers install (an imported CA's root)
 *   DIR/ca/ca-key.pem    0600      the CA private key (generated CAs only; never under services/); absent while kept offline (`mtlskit ca offline`)
 *   DIR/ca/intermediate.pem      0644  ca.intermediate only: the intermediate CA the root signed, appended to every cert.pem
 *   DIR/ca/intermediate-key.pem  0600  ca.intermediate only: its key, which signs the services (stays online)
 *   DIR/ca/rotation.json 0644      a CA rotation's phase, when each phase started, both CAs' fingerprints (ca/rotation.ts)
 *   DIR/ca/next/         0700      the next CA during a rotation: ca.pem, ca-key.pem (one generation, as DIR/ca)
 *   DIR/ca/retired/FP/   0700      a retired CA kept for the record (FP: the first 16 hex digits of its SHA-256)
 *   DIR/ca/revoked.json  0644      certificates `mtlskit revoke` revoked (serial, reason, when, service)
 *   DIR/ca/crl-number    0644      the last cRLNumber used (written before the CRL carrying it: never reused)
 *   DIR/ca/crl.pem       0644      the CA's CRL (RFC 5280), re-signed by apply before half its nextUpdate has passed
 *   DIR/ca/ledger.db     0600      the online CA's ledger (`mtlskit serve`): issued certificates, hashed bootstrap tokens
 *   DIR/services/        0755
 *   DIR/services/NAME/   0700
 *     cert.pem           0644      leaf, then any intermediates
 *     key.pem            0600      PKCS#8
 *     ca.pem             0644      the trust bundle a peer of NAME must trust
 *     client.pem         0644      split: true only, the client certificate
 *     client-key.pem     0600      split: true only
 */
import * as path from "node:path";
import type { CertSlot } from "../manifest/index.ts";

/** FileSpec is a file's path relative to the PKI directory, and its mode. */
export interface FileSpec {
  rel: string;
  mode: number;
}

/** CaFiles is one CA generation: a directory holding ca.pem and ca-key.pem (read by state/read.ts readCa). */
export interface CaFiles {
  dir: FileSpec;
  cert: FileSpec;
  key: FileSpec;
}

/** MODES are the modes mtlskit creates files and directories with. */
export const MODES = { privateDir: 0o700, publicDir: 0o755, key: 0o600, public: 0o644 } as const;

/** caGeneration is the CaFiles of a CA directory `rel`. */
function caGeneration(rel: string): CaFiles {
  return {
    dir: { rel, mode: MODES.privateDir },
    cert: { rel: `${rel}/ca.pem`, mode: MODES.public },
    key: { rel: `${rel}/ca-key.pem`, mode: MODES.key },
  };
}

/** LAYOUT names every file and directory of a PKI directory. */
export const LAYOUT = {
  lock: ".lock",
  lastApply: { rel: "last-apply.json", mode: MODES.public },
  layoutVersion: { rel: "layout-version", mode: MODES.public },
  caDir: { rel: "ca", mode: MODES.privateDir },
  caCert: { rel: "ca/ca.pem", mode: MODES.public },
  caKey: { rel: "ca/ca-key.pem", mode: MODES.key },
  caIntermediate: { rel: "ca/intermediate.pem", mode: MODES.public },
  caIntermediateKey: { rel: "ca/intermediate-key.pem", mode: MODES.key },
  /** currentCa: the CA apply issues from outside a rotation (DIR/ca). */
  currentCa: {
    dir: { rel: "ca", mode: MODES.privateDir },
    cert: { rel: "ca/ca.pem", mode: MODES.public },
    key: { rel: "ca/ca-key.pem", mode: MODES.key },
  } satisfies CaFiles,
  /** nextCa: the CA a rotation prepares (DIR/ca/next). */
  nextCa: caGeneration("ca/next"),
  retiredDir: { rel: "ca/retired", mode: MODES.privateDir },
  /** retiredCa: where retire keeps the old CA, named by its fingerprint's first 16 hex digits. */
  retiredCa: (id: string): CaFiles => caGeneration(`ca/retired/${id}`),
  rotation: { rel: "ca/rotation.json", mode: MODES.public },
  revoked: { rel: "ca/revoked.json", mode: MODES.public },
  crlNumber: { rel: "ca/crl-number", mode: MODES.public },
  crl: { rel: "ca/crl.pem", mode: MODES.public },
  /** ledger: the online CA's SQLite ledger (certificates issued by `mtlskit serve`, bootstrap tokens); its -wal and -shm files beside it. */
  ledger: { rel: "ca/ledger.db", mode: MODES.key },
  servicesDir: { rel: "services", mode: MODES.publicDir },
  serviceDir: (service: string): FileSpec => ({ rel: `services/${service}`, mode: MODES.privateDir }),
  bundle: (service: string): FileSpec => ({ rel: `services/${service}/ca.pem`, mode: MODES.public }),
  cert: (slot: Pick<CertSlot, "service" | "kind">): FileSpec => ({
    rel: `services/${slot.service}/${slot.kind === "main" ? "cert.pem" : "client.pem"}`,
    mode: MODES.public,
  }),
  key: (slot: Pick<CertSlot, "service" | "kind">): FileSpec => ({
    rel: `services/${slot.service}/${slot.kind === "main" ? "key.pem" : "client-key.pem"}`,
    mode: MODES.key,
  }),
} as const;

/** TEMP_MARK is in the name of every temporary file apply writes; leftovers are removed under the lock. */
export const TEMP_MARK = ".mtlskit-tmp-";

/** abs joins the PKI directory and a layout path. */
export const abs = (dir: string, f: FileSpec | string): string => path.join(dir, typeof f === "string" ? f : f.rel);
