/**
 * Where a service's TLS files are, as the snippet must name them: the PKI directory's layout
 * (state/layout.ts, absolute paths) on the machine that ran apply, or the flat layout
 * (manifest/outputs.ts: root.pem, NAME.pem, NAME-key.pem, or a flat output's names) in a directory on the host, as
 * `mtlskit export --format flat` writes it and the runbooks deploy it (/etc/serviceradar/certs).
 */
import * as path from "node:path";
import { UsageError } from "../errors.ts";
import type { Manifest, Service } from "../manifest/index.ts";
import { defaultFlatFiles, distinctFlatFiles, flatOutputsOf, type FlatFiles } from "../manifest/outputs.ts";
import { FLAT_CRL } from "../export/names.ts";
import { abs, LAYOUT } from "../state/layout.ts";

/** TlsPaths are one service's files; the client pair is set for split services only. */
export interface TlsPaths {
  cert: string;
  key: string;
  ca: string;
  clientCert: string | undefined;
  clientKey: string | undefined;
  /** crl: the CA's CRL (ca/crl.pem, or ca.crl beside the flat CA file); undefined for an external service, whose CA is not mtlskit's. */
  crl: string | undefined;
}

/** Where chooses the layout: the PKI directory (`pki`), or a flat directory on the host (`flat`) holding `files` (names, no directory). Both directories are absolute. */
export type Where = { layout: "pki"; dir: string } | { layout: "flat"; dir: string; files: FlatFiles };

/**
 * manifestFlatFiles returns the file names the manifest's `format: flat` output exporting `service`
 * writes for it (its `names`; the CA file of a hosts layout named after the service's host), or
 * FLAT_NAMES when no flat output exports it, so snippets name the files export writes. Flat outputs
 * giving the service different names are refused: the snippet cannot tell which its host has.
 */
export function manifestFlatFiles(manifest: Manifest, service: string): FlatFiles {
  const distinct = distinctFlatFiles(flatOutputsOf(service, manifest.outputs ?? []));
  if (distinct.length <= 1) return distinct[0]?.files ?? defaultFlatFiles(service);
  const show = ({ o, files: f }: (typeof distinct)[number]) => `${o.at ?? o.dir} (${f.ca}, ${f.cert}, ${f.key})`;
  throw new UsageError(
    `mtlskit config: --certs-dir: flat outputs ${distinct.map(show).join(" and ")} give service ${service} different file names, and the snippet cannot tell which its host has; give those outputs the same names for ${service}, or use --pki`,
  );
}

/**
 * tlsPaths returns `service`'s files under `where`. In the PKI layout an external service
 * (services.NAME.files) keeps the paths the manifest names; the flat layout is the same for all.
 */
export function tlsPaths(service: Service, where: Where): TlsPaths {
  const split = service.split;
  if (where.layout === "flat") {
    const at = (file: string) => path.join(where.dir, file);
    return {
      cert: at(where.files.cert),
      key: at(where.files.key),
      ca: at(where.files.ca),
      clientCert: split ? at(where.files.clientCert) : undefined,
      clientKey: split ? at(where.files.clientKey) : undefined,
      crl: service.files ? undefined : path.join(path.dirname(at(where.files.ca)), FLAT_CRL),
    };
  }
  if (service.files) {
    const f = service.files;
    return {
      cert: f.cert,
      key: f.key,
      ca: f.ca,
      clientCert: split ? f.clientCert : undefined,
      clientKey: split ? f.clientKey : undefined,
      crl: undefined,
    };
  }
  const main = { service: service.name, kind: "main" } as const;
  const client = { service: service.name, kind: "client" } as const;
  return {
    cert: abs(where.dir, LAYOUT.cert(main)),
    key: abs(where.dir, LAYOUT.key(main)),
    ca: abs(where.dir, LAYOUT.bundle(service.name)),
    clientCert: split ? abs(where.dir, LAYOUT.cert(client)) : undefined,
    clientKey: split ? abs(where.dir, LAYOUT.key(client)) : undefined,
    crl: abs(where.dir, LAYOUT.crl),
  };
}
