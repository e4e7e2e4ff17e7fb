/**
 * Manifest loading in three steps: parse (YAML and structure), normalize (defaults, durations,
 * typed addresses, identities), then named rules. Every problem is reported at once.
 *
 * @example
 * const { manifest, warnings } = loadManifest("mtlskit.yaml"); // throws InvalidInputError (exit 2)
 */
import * as path from "node:path";
import { FailedError, InvalidInputError, type Problem } from "../errors.ts";
import { ReadFileError, readTextBounded } from "../read-file.ts";
import type { Manifest } from "./model.ts";
import { normalize } from "./normalize.ts";
import { parseYaml } from "./parse.ts";
import { Context, RULES } from "./rules.ts";
import { validateWritten } from "./schema.ts";

export type { Address } from "./address.ts";
export { classifyAddress, formatIp } from "./address.ts";
export { formatDuration, parseDuration, parseTtl } from "./duration.ts";
export type { CaImport, CaSpec, CertSlot, Connection, ExternalFiles, Manifest, Reload, Service } from "./model.ts";
export type { FlatNameKey, Output, OutputFormat } from "./model.ts";
export { keyedServices, managedServices, OUTPUT_FORMATS, serviceNames } from "./model.ts";
export { manifestJsonSchema } from "./json-schema.ts";
export { ManifestSchema, type WrittenManifest } from "./schema.ts";

/** LoadedManifest is a valid manifest and the warnings it raised. */
export interface LoadedManifest {
  manifest: Manifest;
  warnings: Problem[];
  /** lineOf locates a field of the manifest, for messages raised after loading. */
  lineOf(path: readonly (string | number)[]): number | undefined;
}

/** problemAt is a problem with a loaded manifest's field, raised after loading: its file, line (when known) and path. */
export function problemAt(
  loaded: LoadedManifest,
  at: readonly (string | number)[],
  message: string,
  fix: string,
): Problem {
  const line = loaded.lineOf(at);
  return { file: loaded.manifest.file, ...(line === undefined ? {} : { line }), path: at.join("."), message, fix };
}

/**
 * parseManifest validates manifest text. `file` names it in messages; `dir` anchors relative
 * paths (ca.import, services.NAME.files); validities are bounded as if issued at `now`. Throws
 * InvalidInputError with every problem found.
 */
export function parseManifest(text: string, file: string, dir = path.dirname(file), now = new Date()): LoadedManifest {
  const { yaml, problems } = parseYaml(text, file);
  if (problems.length > 0) throw new InvalidInputError(problems);
  if (yaml.value === undefined || yaml.value === null) {
    throw new InvalidInputError([
      { file, path: "", message: "the manifest is empty", fix: "run `mtlskit init` to write a starter manifest" },
    ]);
  }
  const ctx = new Context(file, yaml, now);
  const parsed = validateWritten(yaml.value);
  if (!parsed.ok) {
    for (const i of parsed.issues) {
      ctx.error(
        i.path,
        i.missing ? "is required" : i.message,
        i.missing ? "add it" : i.unknownKey ? "check the spelling, or remove the key" : i.fix,
        { key: i.atKey },
      );
    }
    throw new InvalidInputError(ctx.problems);
  }
  const manifest = normalize(parsed.manifest, ctx, dir);
  for (const rule of RULES) rule(manifest, parsed.manifest, ctx);
  if (ctx.problems.length > 0) throw new InvalidInputError(ctx.problems);
  return { manifest, warnings: ctx.warnings, lineOf: (p) => yaml.lineOf(p) };
}

/** loadManifest reads and validates a manifest file. */
export function loadManifest(file: string): LoadedManifest {
  return parseManifest(readManifestText(file), file);
}

/** readManifestText reads a manifest file's text (loadManifest without the validation); a file that cannot be read throws as loadManifest does. */
export function readManifestText(file: string): string {
  try {
    return readTextBounded(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new InvalidInputError([
        {
          file,
          path: "",
          message: "no such file",
          fix: "run `mtlskit init` to write one, or name another with -f FILE",
        },
      ]);
    }
    // A FIFO, device, directory or huge file named with -f is a wrong argument: exit 2, nothing read.
    if (e instanceof ReadFileError && (code === "ENOTREG" || code === "EISDIR" || code === "EFBIG")) {
      throw new InvalidInputError([{ file, path: "", message: e.reason, fix: "name the manifest file with -f FILE" }]);
    }
    throw new FailedError(`manifest: ${(e as Error).message}`, { cause: e });
  }
}
