/**
 * `flat`: PEM files in a directory per service, or per host as a runbook's role-based table
 * (ServiceRadar: each host's /etc/serviceradar/certs holds root.pem and, for each component it
 * runs, NAME.pem and NAME-key.pem). Exactly the files each host needs: one CA file, each
 * service's pair, the client pair of a split service; never the CA key. Pure.
 */
import { UsageError } from "../errors.ts";
import type { Output } from "../manifest/index.ts";
import { EXPORT_MODES, type ExportFile } from "./file.ts";
import type { PkiMaterial, ServiceMaterial } from "./material.ts";
import { FLAT_NAMES, flatName, type FlatNames } from "./names.ts";

/** flatNamesOf merges an output's names over FLAT_NAMES. */
export const flatNamesOf = (out: Pick<Output, "names">): FlatNames => ({ ...FLAT_NAMES, ...out.names });

/** flatFilesOf is one service's files in its directory: its certificate and key, and its client pair when split. */
export function flatFilesOf(s: ServiceMaterial, names: FlatNames): ExportFile[] {
  const n = s.service.name;
  const files: ExportFile[] = [
    { path: flatName(names.cert, n), bytes: Buffer.from(s.main.certPem), mode: EXPORT_MODES.public },
    { path: flatName(names.key, n), bytes: Buffer.from(s.main.keyPem), mode: EXPORT_MODES.secret },
  ];
  if (s.client) {
    files.push({ path: flatName(names.clientCert, n), bytes: Buffer.from(s.client.certPem), mode: EXPORT_MODES.public });
    files.push({ path: flatName(names.clientKey, n), bytes: Buffer.from(s.client.keyPem), mode: EXPORT_MODES.secret });
  }
  return files;
}

/** buildFlat lays the files out: DIR/NAME/ per service, or DIR/HOST/ per host with one CA file each. */
export function buildFlat(pki: PkiMaterial, out: Output): ExportFile[] {
  const names = flatNamesOf(out);
  const byName = new Map(pki.services.map((s) => [s.service.name, s]));
  const groups: [string, ServiceMaterial[]][] = out.hosts
    ? Object.entries(out.hosts).map(([host, list]) => [host, list.map((n) => byName.get(n)!)])
    : pki.services.map((s) => [s.service.name, [s]]);
  const files: ExportFile[] = [];
  for (const [dir, list] of groups) {
    const bundles = [...new Set(list.map((s) => s.bundlePem))];
    if (bundles.length > 1) {
      const which = list.map((s) => `${s.service.name} (${s.bundleFile})`).join(", ");
      throw new UsageError(`export: host ${dir} would get one ${names.ca}, but its services trust different bundles: ${which}; give them the same ca file, or put them on different hosts`);
    }
    files.push({ path: `${dir}/${flatName(names.ca, dir)}`, bytes: Buffer.from(bundles[0]!), mode: EXPORT_MODES.public });
    for (const s of list) for (const f of flatFilesOf(s, names)) files.push({ ...f, path: `${dir}/${f.path}` });
  }
  return files;
}
