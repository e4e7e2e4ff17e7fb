/**
 * trustStatus (pure): is the CA, by SHA-256, in the bundle clients read, and in the NSS
 * database? The answer `trust status` prints and exits by (0 installed, 1 not).
 */
import { parsePem } from "../pki/pem.ts";
import { sha256Hex, type TrustAnchor } from "./anchor.ts";
import { NSS_TRUST, type NssFacts } from "./nss.ts";

/** bundleDigests returns the SHA-256 (hex) of every CERTIFICATE in a PEM bundle; comments and other blocks between them are ignored. */
export function bundleDigests(text: string): Set<string> {
  const out = new Set<string>();
  for (const b of parsePem(text)) if (b.label === "CERTIFICATE") out.add(sha256Hex(b.der));
  return out;
}

/** StoreState is one store's answer. */
export type StoreState = "installed" | "absent" | "skipped";

/** TrustStatus is the CA's presence in each store. */
export interface TrustStatus {
  /** installed: in the system bundle, and in the NSS database when there is one to look in. */
  installed: boolean;
  system: {
    bundle: string;
    state: "installed" | "absent";
    /** anchorFile is mtlskit's file for this CA and whether it exists / holds this CA. */
    anchorFile: string;
    anchorFileState: "this CA" | "another certificate" | "missing";
  };
  nss: { state: StoreState; db?: string; trust?: string; reason?: string };
}

/** StatusInput are the facts trustStatus judges. */
export interface StatusInput {
  anchor: TrustAnchor;
  bundle: string;
  /** bundleText is the bundle's text; undefined when it cannot be read (absent). */
  bundleText: string | undefined;
  anchorFile: string;
  anchorFileNow: string | undefined;
  nss: NssFacts;
}

/** trustStatus judges where the CA is. NSS counts only when certutil and a database exist (else "skipped", which does not make it absent). */
export function trustStatus(i: StatusInput): TrustStatus {
  const inBundle = i.bundleText !== undefined && bundleDigests(i.bundleText).has(i.anchor.sha256);
  const nss: TrustStatus["nss"] = !i.nss.use
    ? { state: "skipped", reason: i.nss.reason }
    : i.nss.current?.sha256 === i.anchor.sha256 && i.nss.current.trust === NSS_TRUST
      ? { state: "installed", db: i.nss.db, trust: i.nss.current.trust }
      : {
          state: "absent",
          db: i.nss.db,
          ...(i.nss.current
            ? {
                trust: i.nss.current.trust,
                reason:
                  i.nss.current.sha256 !== i.anchor.sha256
                    ? "the nickname names another certificate"
                    : `trust is ${i.nss.current.trust ?? "unset"}, not ${NSS_TRUST}`,
              }
            : {}),
        };
  return {
    installed: inBundle && nss.state !== "absent",
    system: {
      bundle: i.bundle,
      state: inBundle ? "installed" : "absent",
      anchorFile: i.anchorFile,
      anchorFileState:
        i.anchorFileNow === undefined
          ? "missing"
          : i.anchorFileNow === i.anchor.pem
            ? "this CA"
            : "another certificate",
    },
    nss,
  };
}
