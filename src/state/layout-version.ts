/**
 * The layout version record: DIR/layout-version holds the manifest's `layoutVersion` the PKI's
 * certificates were issued under, as ServiceRadar's generator records its runtimeLayoutVersion.
 * When the manifest's number changes, plan re-issues every certificate; a PKI without the file
 * was issued before layoutVersion existed, which is version 1, the default.
 */
import { readTextBounded } from "../read-file.ts";
import { writeFileAtomic } from "./fs.ts";
import { abs, LAYOUT } from "./layout.ts";

/** DEFAULT_LAYOUT_VERSION is the version of a manifest without layoutVersion, and of a PKI without the record. */
export const DEFAULT_LAYOUT_VERSION = 1;

/** readLayoutVersion returns the recorded version; DEFAULT_LAYOUT_VERSION when the file is missing, undefined when it is unreadable or not a number (plan re-issues). */
export function readLayoutVersion(dir: string): number | undefined {
  let text: string;
  try {
    text = readTextBounded(abs(dir, LAYOUT.layoutVersion), { limit: 4096, noFollow: true });
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOENT" ? DEFAULT_LAYOUT_VERSION : undefined;
  }
  return /^[1-9][0-9]{0,15}\n?$/.test(text) ? Number(text.trim()) : undefined;
}

/** encodeLayoutVersion is the file's content for `version`. */
export const encodeLayoutVersion = (version: number): string => `${version}\n`;

/**
 * writeLayoutVersion records `version` atomically, unless the file already says it (re-runs
 * change no file). Version 1 without a file needs no record: absent means 1, so a PKI whose
 * manifest never sets layoutVersion has no such file.
 */
export function writeLayoutVersion(dir: string, version: number): boolean {
  const file = abs(dir, LAYOUT.layoutVersion);
  let have: string | undefined;
  try {
    have = readTextBounded(file, { limit: 4096, noFollow: true });
  } catch {
    have = undefined;
  }
  if (have === encodeLayoutVersion(version) || (have === undefined && version === DEFAULT_LAYOUT_VERSION)) return false;
  writeFileAtomic(file, encodeLayoutVersion(version), LAYOUT.layoutVersion.mode);
  return true;
}
