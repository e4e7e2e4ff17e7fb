/**
 * Exports: the PKI's material copied into the shapes deployments consume (flat PEM files per
 * service or host, Kubernetes Secrets, env files, PKCS#12). `checkOutputs` refuses bad requests
 * before anything is written (apply calls it before issuing); `exportOutputs` reads the
 * material, builds every output's files (pure builders, the FORMATS table), checks them all, then
 * writes them through write.ts.
 *
 * @example
 * const loaded = loadManifest("mtlskit.yaml");
 * await apply(loaded, "./pki");
 * exportOutputs(loaded, "./pki", loaded.manifest.outputs ?? []);
 */
import { realpathSync } from "node:fs";
import * as path from "node:path";
import { FailedError, InvalidInputError, UsageError, type Problem } from "../errors.ts";
import { readFileBounded, readTextBounded, type ReadFileError } from "../read-file.ts";
import type { LoadedManifest, Manifest, Output, OutputFormat } from "../manifest/index.ts";
import { exportsService, outputClashes, PKI_PLACEHOLDER } from "../manifest/outputs.ts";
import { buildEnv } from "./env.ts";
import type { ExportFile } from "./file.ts";
import { buildFlat } from "./flat.ts";
import { buildKubernetes } from "./kubernetes.ts";
import { loadMaterial, type PkiMaterial } from "./material.ts";
import { buildPkcs12 } from "./pkcs12.ts";
import { resolveIds, isRoot, writeExport, type Ids, type WriteResult } from "./write.ts";

export type { ExportFile } from "./file.ts";
export { EXPORT_MODES } from "./file.ts";
export { buildEnv, ENV_DEFAULT_PREFIX, ENV_VARS } from "./env.ts";
export { buildFlat, flatNamesOf } from "./flat.ts";
export { buildKubernetes, K8S_DEFAULTS, K8S_KEYS } from "./kubernetes.ts";
export { loadMaterial, type PairMaterial, type PkiMaterial, type ServiceMaterial } from "./material.ts";
export { FLAT_NAMES, flatName, type FlatNames } from "./names.ts";
export {
  buildPkcs12,
  encodePkcs12,
  pkcs12Matches,
  PKCS12_ITERATIONS,
  type Pkcs12Build,
  type Pkcs12Entry,
} from "./pkcs12.ts";
export { writeExport, type WriteResult } from "./write.ts";

/** Secrets are what some builders need besides the material: the PKCS#12 passphrase. */
export interface Secrets {
  passphrase?: string;
}

/**
 * BuildContext is what a builder may use besides the material: the bytes of a file already in the
 * output (pkcs12 keeps a matching .p12 rather than spend its key derivations again), and progress.
 */
export interface BuildContext {
  existing?: (path: string) => Buffer | undefined;
  onProgress?: (done: number, total: number) => void;
}

/** FORMATS: one builder per export format; each is pure (material in, files out; `ctx.existing` is read-only). `outputs`: the manifest's, which env files follow. */
export const FORMATS: Readonly<
  Record<
    OutputFormat,
    (pki: PkiMaterial, out: Output, secrets: Secrets, outputs: readonly Output[], ctx?: BuildContext) => ExportFile[]
  >
> = {
  flat: (pki, out) => buildFlat(pki, out),
  kubernetes: (pki, out) => buildKubernetes(pki, out),
  env: (pki, out, _s, outputs) => buildEnv(pki, out, outputs),
  pkcs12: (pki, out, s, _o, ctx = {}) => {
    if (s.passphrase === undefined)
      throw new FailedError("export: a pkcs12 output was built without its passphrase; this is a bug");
    return buildPkcs12(pki, out, s.passphrase, ctx);
  },
};

/** ExportOptions tune exportOutputs. */
export interface ExportOptions {
  /** onProgress is told, while an output's files are built, how many are done of how many (only pkcs12 reports: its files take 20 ms each). */
  onProgress?: (output: Output, done: number, total: number) => void;
}

/** existingIn reads a file already in the output directory `dir`, or undefined (none, a link, unreadable: the writer decides). */
const existingIn = (dir: string) => (rel: string) => {
  try {
    return readFileBounded(path.join(dir, rel), { noFollow: true });
  } catch {
    return undefined;
  }
};

/** describeOutput names an output in messages: `outputs.0 (flat -> /srv/deploy)` or `--out /srv/deploy`. */
export const describeOutput = (o: Output): string =>
  o.at === undefined ? `--out ${o.dir}` : `${o.at} (${o.format} -> ${o.dir})`;

/** servicesOf lists the services an output exports, in the manifest's order. */
export function servicesOf(m: Manifest, o: Output): string[] {
  // A csr service's key is on its own host: "every service" means every one whose pair is here.
  const all = o.services === undefined && o.hosts === undefined;
  return m.services.filter((s) => exportsService(o, s.name) && !(all && s.csr)).map((s) => s.name);
}

/** realish resolves symlinks in the longest existing prefix of `p`. */
function realish(p: string): string {
  const abs = path.resolve(p);
  let head = abs;
  const tail: string[] = [];
  for (;;) {
    try {
      return path.join(realpathSync(head), ...tail);
    } catch {
      const up = path.dirname(head);
      if (up === head) return abs;
      tail.unshift(path.basename(head));
      head = up;
    }
  }
}

const within = (child: string, parent: string) => {
  const r = path.relative(parent, child);
  return r === "" || (!r.startsWith("..") && !path.isAbsolute(r));
};

/** insidePki says whether `p` is the PKI directory or inside it, also through symlinks. */
export const insidePki = (p: string, pki: string): boolean =>
  within(path.resolve(p), path.resolve(pki)) || within(realish(p), realish(pki));

/** readPassphrase reads a pkcs12 output's passphrase: the first line of passphraseFile, or the variable passphraseEnv. */
export function readPassphrase(o: Output): string {
  let value: string | undefined;
  if (o.passphraseFile !== undefined) {
    try {
      value = readTextBounded(o.passphraseFile, { limit: 64 * 1024 }).split(/\r?\n/)[0];
    } catch (e) {
      throw new UsageError(
        `export: ${describeOutput(o)}: cannot read the passphrase file ${o.passphraseFile}: it ${(e as ReadFileError).reason}; write the passphrase into it (chmod 600)`,
      );
    }
  } else if (o.passphraseEnv !== undefined) {
    value = process.env[o.passphraseEnv];
    if (value === undefined)
      throw new UsageError(
        `export: ${describeOutput(o)}: the environment variable ${o.passphraseEnv} that should hold the passphrase is not set; export it, or use a passphrase file`,
      );
  } else
    throw new UsageError(
      `export: ${describeOutput(o)}: pkcs12 needs a passphrase: --passphrase-file FILE or --passphrase-env NAME`,
    );
  if (!value)
    throw new UsageError(`export: ${describeOutput(o)}: the passphrase is empty; a .p12 without one protects nothing`);
  return value;
}

/** withPkiDir fills a dir written as `{pki}/...` with the PKI directory. */
export const withPkiDir = (o: Output, pki: string): Output =>
  o.dir.startsWith(PKI_PLACEHOLDER) ? { ...o, dir: path.resolve(pki + o.dir.slice(PKI_PLACEHOLDER.length)) } : o;

/** Checked is an output whose request was found sound, with what writing it needs. */
export interface Checked {
  output: Output;
  secrets: Secrets;
  ids: Ids | undefined;
}

/**
 * checkOutputs refuses, before anything is written, outputs inside the PKI directory (exit 2,
 * naming the manifest field) and missing passphrases; resolves owners and groups (when root).
 */
export function checkOutputs(
  loaded: Pick<LoadedManifest, "manifest" | "lineOf">,
  pki: string,
  given: readonly Output[],
): Checked[] {
  const outputs = given.map((o) => withPkiDir(o, pki));
  const problems: Problem[] = [];
  for (const o of outputs) {
    if (!insidePki(o.dir, pki)) continue;
    const message = `${o.dir} is inside the PKI directory ${pki}; exports are copies for deployment and must live elsewhere, or apply would manage them as its own files`;
    if (o.at === undefined) throw new UsageError(`mtlskit export: --out ${message}; choose another --out`);
    const at = [...o.at.split(".").map((x) => (/^[0-9]+$/.test(x) ? Number(x) : x)), "dir"];
    const line = loaded.lineOf(at);
    problems.push({
      file: loaded.manifest.file,
      ...(line === undefined ? {} : { line }),
      path: at.join("."),
      message,
      fix: "choose a directory outside the PKI directory",
    });
  }
  // Load time compared `{pki}/...` dirs only among themselves; with the PKI directory known, compare every output again.
  for (const c of outputClashes(outputs, loaded.manifest.services, loaded.manifest.cluster)) {
    if (c.first === c.second) continue; // refused at load time, or a flag output export's own check names
    const message = `${describeOutput(c.second)} would write ${c.file}, which ${describeOutput(c.first)} also writes; each run would overwrite one with the other`;
    if (c.second.at === undefined) throw new UsageError(`mtlskit export: ${message}; choose another --out`);
    const line = loaded.lineOf(["outputs", Number(c.second.at.split(".")[1]), "dir"]);
    problems.push({
      file: loaded.manifest.file,
      ...(line === undefined ? {} : { line }),
      path: `${c.second.at}.dir`,
      message,
      fix: "give each output its own dir",
    });
  }
  if (problems.length > 0) throw new InvalidInputError(problems);
  return outputs.map((o) => ({
    output: o,
    secrets: o.format === "pkcs12" ? { passphrase: readPassphrase(o) } : {},
    ids: isRoot() && (o.owner !== undefined || o.group !== undefined) ? resolveIds(o) : undefined,
  }));
}

/** ExportResult is one output's outcome. */
export interface ExportResult extends WriteResult {
  output: Output;
}

/**
 * exportOutputs writes each output from the PKI directory `pki`. Every output is built and
 * checked before the first file is written; a PKI never issued is a FailedError (exit 3) naming
 * the `mtlskit apply` command to run.
 */
export function exportOutputs(
  loaded: Pick<LoadedManifest, "manifest" | "lineOf">,
  pki: string,
  outputs: readonly Output[],
  opts: ExportOptions = {},
): ExportResult[] {
  const checked = checkOutputs(loaded, pki, outputs);
  const m = loaded.manifest;
  const built = checked.map((c) => {
    const material = loadMaterial(m, pki, servicesOf(m, c.output));
    const onProgress = opts.onProgress && ((done: number, total: number) => opts.onProgress!(c.output, done, total));
    const files = FORMATS[c.output.format](material, c.output, c.secrets, m.outputs ?? [], {
      existing: existingIn(c.output.dir),
      ...(onProgress ? { onProgress } : {}),
    });
    const seen = new Map<string, Buffer>();
    for (const f of files) {
      const full = path.join(c.output.dir, f.path);
      if (insidePki(full, pki))
        throw new UsageError(
          `export: ${describeOutput(c.output)} would write ${full}, inside the PKI directory ${pki}; choose another directory`,
        );
      const other = seen.get(f.path);
      if (other && !other.equals(f.bytes))
        throw new UsageError(
          `export: ${describeOutput(c.output)} would write two different files named ${f.path}; put {name} in the file names`,
        );
      seen.set(f.path, f.bytes);
    }
    const kept = new Set<string>();
    const unique = files.filter((f) => !kept.has(f.path) && kept.add(f.path));
    return { ...c, files: unique };
  });
  return built.map((b) => ({ output: b.output, ...writeExport(b.output.dir, b.files, b.output, b.ids) }));
}
