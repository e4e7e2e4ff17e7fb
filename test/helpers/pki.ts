/** Test helpers: a PKI directory as data (modes, hashes) and independent pair/chain checks. */
import assert from "node:assert/strict";
import { createHash, createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import * as path from "node:path";

/** FileInfo is one entry of a PKI directory. */
export interface FileInfo {
  mode: number;
  dir: boolean;
  sha256: string | undefined;
  mtimeMs: number;
}

/** inspectPki maps every path under `dir` (relative, "" for dir itself) to its mode and content hash. */
export function inspectPki(dir: string): Map<string, FileInfo> {
  const out = new Map<string, FileInfo>();
  const walk = (rel: string) => {
    const abs = path.join(dir, rel);
    const st = statSync(abs);
    out.set(rel, { mode: st.mode & 0o777, dir: st.isDirectory(), sha256: st.isDirectory() ? undefined : createHash("sha256").update(readFileSync(abs)).digest("hex"), mtimeMs: st.mtimeMs });
    if (st.isDirectory()) for (const e of readdirSync(abs)) walk(rel === "" ? e : path.join(rel, e));
  };
  walk("");
  return out;
}

const spkiOfKey = (file: string) => createPublicKey(createPrivateKey(readFileSync(file))).export({ type: "spki", format: "der" });
const spkiOfCert = (file: string) => new X509Certificate(readFileSync(file)).publicKey.export({ type: "spki", format: "der" });

/**
 * assertPairsMatch checks, with node:crypto only, that the CA key matches ca.pem and that every
 * service's key matches its certificate, which verifies against ca/ca.pem. Returns the pairs checked.
 */
export function assertPairsMatch(dir: string): number {
  const ca = new X509Certificate(readFileSync(path.join(dir, "ca", "ca.pem")));
  if (existsSync(path.join(dir, "ca", "ca-key.pem"))) assert.ok(spkiOfKey(path.join(dir, "ca", "ca-key.pem")).equals(spkiOfCert(path.join(dir, "ca", "ca.pem"))), "CA key does not match ca.pem");
  let n = 0;
  for (const s of readdirSync(path.join(dir, "services"))) {
    for (const [cert, key] of [["cert.pem", "key.pem"], ["client.pem", "client-key.pem"]] as const) {
      const c = path.join(dir, "services", s, cert);
      if (!existsSync(c)) continue;
      assert.ok(spkiOfKey(path.join(dir, "services", s, key)).equals(spkiOfCert(c)), `${s}/${key} does not match ${cert}`);
      assert.ok(new X509Certificate(readFileSync(c)).verify(ca.publicKey), `${s}/${cert} is not signed by ca/ca.pem`);
      n++;
    }
  }
  return n;
}

/** tempFiles lists leftovers of interrupted writes. */
export const tempFiles = (dir: string): string[] => [...inspectPki(dir).keys()].filter((p) => p.includes(".mtlskit-tmp-"));
