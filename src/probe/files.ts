/**
 * The files a probe presents and trusts: the client certificate, key and trust bundle of the
 * service it connects as, from the managed layout (state/layout.ts) or services.NAME.files, or
 * named explicitly. Reading fails loudly: without them there is nothing to probe with.
 */
import { createSecureContext } from "node:tls";
import { CertParseError, type Cert, type Material } from "../check/material.ts";
import { FailedError, UsageError } from "../errors.ts";
import { ReadFileError, readTextBounded } from "../read-file.ts";
import type { Manifest } from "../manifest/index.ts";
import { abs, LAYOUT } from "../state/layout.ts";
import type { Credentials } from "./connect.ts";

/** ProbePaths name the three files. */
export interface ProbePaths {
  cert: string;
  key: string;
  ca: string;
}

/** ProbeFiles are the files read: the credentials to present and the bundle's anchors. */
export interface ProbeFiles {
  paths: ProbePaths;
  credentials: Credentials;
  bundle: Cert[];
}

/**
 * pathsOf names the files service `name` dials with: its client half for a split pair
 * (client.pem, client-key.pem), else its main certificate (always the main one for side "server",
 * the certificate `probe --listen` serves with); from services.NAME.files for an
 * external service, else under the PKI directory `dir`.
 */
export function pathsOf(
  manifest: Manifest,
  name: string,
  dir: string,
  side: "client" | "server" = "client",
): ProbePaths {
  const s = manifest.services.find((x) => x.name === name);
  if (!s)
    throw new UsageError(
      `mtlskit probe: --as ${name}: not a service of ${manifest.file}; services are: ${manifest.services.map((x) => x.name).join(", ")}`,
    );
  if (s.files)
    return side === "server"
      ? { cert: s.files.cert, key: s.files.key, ca: s.files.ca }
      : { cert: s.files.clientCert ?? s.files.cert, key: s.files.clientKey ?? s.files.key, ca: s.files.ca };
  // A listening probe (side "server") presents the main certificate; a dialing one the client half.
  const slot = (side === "client" ? s.slots.find((x) => x.kind === "client") : undefined) ?? s.slots[0]!;
  return { cert: abs(dir, LAYOUT.cert(slot)), key: abs(dir, LAYOUT.key(slot)), ca: abs(dir, LAYOUT.bundle(s.name)) };
}

function read(file: string, what: string): string {
  try {
    return readTextBounded(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FailedError(
      `mtlskit probe: cannot read the ${what} ${file}: ${code === "ENOENT" ? "no such file (for a managed service, run `mtlskit apply` first)" : e instanceof ReadFileError ? `it ${e.reason}` : (e as Error).message}`,
      { cause: e },
    );
  }
}

/** loadProbeFiles reads and checks the files: certificates parse, the key matches (as the TLS library loads them). */
export function loadProbeFiles(material: Material, paths: ProbePaths): ProbeFiles {
  const credentials = { cert: read(paths.cert, "certificate"), key: read(paths.key, "private key") };
  const bundle = material.certsOfPem(read(paths.ca, "trust bundle"));
  if (bundle instanceof CertParseError)
    throw new FailedError(`mtlskit probe: the trust bundle ${paths.ca} ${bundle.message}`);
  const certs = material.certsOfPem(credentials.cert);
  if (certs instanceof CertParseError)
    throw new FailedError(`mtlskit probe: the certificate ${paths.cert} ${certs.message}`);
  try {
    createSecureContext(credentials);
  } catch (e) {
    throw new FailedError(
      `mtlskit probe: ${paths.cert} and ${paths.key} cannot be loaded together: ${(e as Error).message} (run \`mtlskit explain\` on it)`,
      { cause: e },
    );
  }
  return { paths, credentials, bundle };
}
