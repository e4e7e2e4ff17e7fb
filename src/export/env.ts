/**
 * `env`: an env file per service naming its files, for programs configured by environment
 * (Netsy: NETSY_TLS_CA_CERT, NETSY_TLS_SERVER_CERT, ..., NETSY_NODE_ID). One syntax serves both
 * readers: `NAME='value'` lines, which POSIX sh reads with `. FILE` (`set -a` to export them) and
 * systemd reads as an EnvironmentFile=. Neither has an escape both understand inside single
 * quotes, so a path with a quote, a backslash or a control character is refused rather than
 * mangled. The values are paths, not secrets: mode 0644. Pure.
 *
 * With certDir the paths name the files the manifest's flat output for the service really writes,
 * with its `names` (manifest/outputs.ts envFlatFiles; issue 11: they used FLAT_NAMES regardless).
 */
import * as path from "node:path";
import { UsageError } from "../errors.ts";
import { envFlatFiles, UNSAFE_ENV_PATH } from "../manifest/outputs.ts";
import type { Output } from "../manifest/index.ts";
import { PROFILES } from "../pki/profiles.ts";
import { EXPORT_MODES, type ExportFile } from "./file.ts";
import type { PkiMaterial, ServiceMaterial } from "./material.ts";
import { FLAT_CRL } from "./names.ts";

/** ENV_DEFAULT_PREFIX is prepended to the variable names when the output names no prefix. */
export const ENV_DEFAULT_PREFIX = "TLS_";

/** ENV_VARS: the variables of an env file, after the prefix. Server variables for usages that serve, client ones for usages that dial. */
export const ENV_VARS = ["CA_CERT", "SERVER_CERT", "SERVER_KEY", "CLIENT_CERT", "CLIENT_KEY"] as const;

/** ENV_CRL_VAR: the variable (after the prefix) naming the CA's CRL file, when the PKI has one. */
export const ENV_CRL_VAR = "CRL_FILE";

/** envPaths are the paths a service's variables hold: in `certDir` with its flat output's file names, or the files export read. */
function envPaths(
  s: ServiceMaterial,
  out: Output,
  outputs: readonly Output[],
): Record<(typeof ENV_VARS)[number], string> {
  const n = s.service.name;
  const client = s.client ?? s.main;
  if (out.certDir === undefined)
    return {
      CA_CERT: s.bundleFile,
      SERVER_CERT: s.main.certFile,
      SERVER_KEY: s.main.keyFile,
      CLIENT_CERT: client.certFile,
      CLIENT_KEY: client.keyFile,
    };
  const files = envFlatFiles(out, n, outputs);
  if ("conflict" in files)
    throw new UsageError(`export: the env output ${out.at ?? `--out ${out.dir}`} ${files.conflict}; ${files.fix}`);
  const dir = out.certDir.replaceAll("{name}", n);
  const at = (file: string) => path.posix.join(dir, file);
  return {
    CA_CERT: at(files.ca),
    SERVER_CERT: at(files.cert),
    SERVER_KEY: at(files.key),
    CLIENT_CERT: at(s.client ? files.clientCert : files.cert),
    CLIENT_KEY: at(s.client ? files.clientKey : files.key),
  };
}

/** envLine is `NAME='value'`; refuses values single quotes cannot carry for both sh and systemd. */
function envLine(name: string, value: string): string {
  if (UNSAFE_ENV_PATH.test(value))
    throw new UsageError(
      `export: ${name} would be ${JSON.stringify(value)}, which contains a quote, a backslash or a control character that an env file read by both sh and systemd cannot carry; choose paths without them`,
    );
  return `${name}='${value}'\n`;
}

/** buildEnv writes NAME.env per service; `outputs` are the manifest's, whose flat ones name the files certDir holds. */
export function buildEnv(pki: PkiMaterial, out: Output, outputs: readonly Output[] = []): ExportFile[] {
  const prefix = out.prefix ?? ENV_DEFAULT_PREFIX;
  return pki.services.map((s) => {
    const n = s.service.name;
    const p = envPaths(s, out, outputs);
    const profile = PROFILES[s.service.usage];
    const vars = ENV_VARS.filter(
      (v) => v === "CA_CERT" || (v.startsWith("SERVER_") ? profile.canServe : profile.canConnect),
    );
    let text = `# TLS files of service ${n}: written by mtlskit export. Read with \`set -a; . ./${n}.env\` or systemd EnvironmentFile=.\n`;
    if (out.nodeId !== undefined) text += envLine(out.nodeId, n);
    for (const v of vars) text += envLine(`${prefix}${v}`, p[v]);
    // The CA's CRL (PREFIX + CRL_FILE): in certDir beside the CA file, or the PKI directory's ca/crl.pem.
    if (pki.crlFile !== undefined && s.service.files === undefined)
      text += envLine(
        `${prefix}${ENV_CRL_VAR}`,
        out.certDir === undefined ? pki.crlFile : path.posix.join(out.certDir.replaceAll("{name}", n), FLAT_CRL),
      );
    return { path: `${n}.env`, bytes: Buffer.from(text), mode: EXPORT_MODES.public };
  });
}
