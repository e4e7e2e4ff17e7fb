/**
 * `flat`: PEM files in a directory per service, or per host as a runbook's role-based table
 * (ServiceRadar: each host's /etc/serviceradar/certs holds root.pem and, for each component it
 * runs, NAME.pem and NAME-key.pem). Exactly the files each host needs: one CA file, each
 * service's pair, the client pair of a split service; never the CA key. Pure.
 */
import { UsageError } from "../errors.ts";
import type { Output } from "../manifest/index.ts";
import { flatGroups, pairNames } from "../manifest/outputs.ts";
import { EXPORT_MODES, type ExportFile } from "./file.ts";
import type { PkiMaterial, ServiceMaterial } from "./material.ts";
import { FLAT_CRL, flatName, flatNamesOf, type FlatNames } from "./names.ts";

export { flatNamesOf } from "./names.ts";

/** flatFilesOf is one service's files in its directory: its certificate and key, and its client pair when split (pairNames). */
export function flatFilesOf(s: ServiceMaterial, names: FlatNames): ExportFile[] {
  return pairNames(names, s.service.name, s.client !== undefined).map((f) => {
    const pair = f.client ? s.client! : s.main;
    return {
      path: f.name,
      bytes: Buffer.from(f.secret ? pair.keyPem : pair.certPem),
      mode: f.secret ? EXPORT_MODES.secret : EXPORT_MODES.public,
    };
  });
}

/** buildFlat lays the files out: DIR/NAME/ per service, or DIR/HOST/ per host with one CA file each. */
export function buildFlat(pki: PkiMaterial, out: Output): ExportFile[] {
  const names = flatNamesOf(out);
  const byName = new Map(pki.services.map((s) => [s.service.name, s]));
  const groups: [string, ServiceMaterial[]][] = flatGroups(
    out,
    pki.services.map((s) => s.service.name),
  ).map(([dir, list]) => [dir, list.map((n) => byName.get(n)!)]);
  const files: ExportFile[] = [];
  for (const [dir, list] of groups) {
    const bundles = [...new Set(list.map((s) => s.bundlePem))];
    if (bundles.length > 1) {
      const which = list.map((s) => `${s.service.name} (${s.bundleFile})`).join(", ");
      throw new UsageError(
        `export: host ${dir} would get one ${names.ca}, but its services trust different bundles: ${which}; give them the same ca file, or put them on different hosts`,
      );
    }
    files.push({
      path: `${dir}/${flatName(names.ca, dir)}`,
      bytes: Buffer.from(bundles[0]!),
      mode: EXPORT_MODES.public,
    });
    // The CA's CRL beside the CA file, for a host running any service mtlskit issues.
    if (pki.crlPem !== undefined && list.some((s) => s.service.files === undefined))
      files.push({ path: `${dir}/${FLAT_CRL}`, bytes: Buffer.from(pki.crlPem), mode: EXPORT_MODES.public });
    for (const s of list) for (const f of flatFilesOf(s, names)) files.push({ ...f, path: `${dir}/${f.path}` });
  }
  return files;
}
