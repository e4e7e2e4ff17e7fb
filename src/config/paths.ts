/**
 * Where a service's TLS files are, as the snippet must name them: the PKI directory's layout
 * (state/layout.ts, absolute paths) on the machine that ran apply, or the flat layout
 * (export/names.ts: root.pem, NAME.pem, NAME-key.pem) in a directory on the host, as
 * `mtlskit export --format flat` writes it and the runbooks deploy it (/etc/serviceradar/certs).
 */
import * as path from "node:path";
import { flatNamesOf } from "../export/flat.ts";
import { flatName, type FlatNames } from "../export/names.ts";
import type { Manifest, Service } from "../manifest/index.ts";
import { abs, LAYOUT } from "../state/layout.ts";

/** TlsPaths are one service's files; the client pair is set for split services only. */
export interface TlsPaths {
  cert: string;
  key: string;
  ca: string;
  clientCert: string | undefined;
  clientKey: string | undefined;
}

/** Where chooses the layout: the PKI directory (`pki`), or a flat directory on the host (`flat`). Both directories are absolute. */
export type Where = { layout: "pki"; dir: string } | { layout: "flat"; dir: string; names: FlatNames };

/**
 * manifestFlatNames returns the flat layout's names for `manifest`: FLAT_NAMES, overridden by the
 * `names` of the manifest's first `format: flat` output, so snippets name the files export writes.
 */
export function manifestFlatNames(manifest: Manifest): FlatNames {
  return flatNamesOf(manifest.outputs?.find((o) => o.format === "flat") ?? { names: {} });
}

/**
 * tlsPaths returns `service`'s files under `where`. In the PKI layout an external service
 * (services.NAME.files) keeps the paths the manifest names; the flat layout is the same for all.
 */
export function tlsPaths(service: Service, where: Where): TlsPaths {
  const split = service.split;
  if (where.layout === "flat") {
    const at = (template: string) => path.join(where.dir, flatName(template, service.name));
    return {
      cert: at(where.names.cert),
      key: at(where.names.key),
      ca: at(where.names.ca),
      clientCert: split ? at(where.names.clientCert) : undefined,
      clientKey: split ? at(where.names.clientKey) : undefined,
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
  };
}
