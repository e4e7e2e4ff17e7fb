/**
 * The apply record: DIR/last-apply.json says when apply last ran on this PKI directory, whether
 * it succeeded, what it issued, and which reload hooks ran. `metrics` and `status` read it, so a
 * renewal that failed unattended (a cron job, a systemd timer) is visible rather than silent.
 */
import { realpathSync } from "node:fs";
import * as path from "node:path";
import { readTextBounded } from "../read-file.ts";
import { writeFileAtomic } from "./fs.ts";
import { abs, LAYOUT } from "./layout.ts";

/** HookRecord is one reload hook's outcome. */
export interface HookRecord {
  service: string;
  /** command is what ran, as written in the manifest. */
  command: string;
  ok: boolean;
  /** exitCode is the hook's exit code (null when killed by a signal or on timeout). */
  exitCode: number | null;
  /** error says why it failed, with the end of its output. */
  error?: string;
}

/** ApplyRecord is the content of last-apply.json. */
export interface ApplyRecord {
  /** time: when apply started (ISO 8601). */
  time: string;
  /**
   * manifest: the absolute path of the manifest apply ran (see manifestId). Two manifests may
   * share a PKI directory (and its CA); status and metrics judge a record only with its own
   * manifest. Absent in records written before it was added: those count for any manifest.
   */
  manifest?: string;
  ok: boolean;
  /** error: why apply failed (ok false). */
  error?: string;
  issued: number;
  kept: number;
  caCreated: boolean;
  /** changed: services whose files apply wrote. */
  changed: string[];
  hooks: HookRecord[];
  /** pending: services whose files changed but whose reload hook has not yet succeeded; the next apply runs them again. */
  pending: string[];
}

/** writeApplyRecord replaces last-apply.json atomically. */
export function writeApplyRecord(dir: string, r: ApplyRecord): void {
  writeFileAtomic(abs(dir, LAYOUT.lastApply), `${JSON.stringify(r, null, 2)}\n`, LAYOUT.lastApply.mode);
}

/** manifestId names a manifest in the record: its absolute path, symlinks resolved (the path as given, made absolute, when it cannot be resolved). */
export function manifestId(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return path.resolve(file);
  }
}

/**
 * applyRecordFor reads the last apply's record for the manifest `file`: `record` when it is that
 * manifest's (or names none), `other` (the manifest it names) when another manifest's apply wrote it.
 */
export function applyRecordFor(dir: string, file: string): { record?: ApplyRecord; other?: string } {
  const record = readApplyRecord(dir);
  if (record === undefined) return {};
  if (typeof record.manifest === "string" && record.manifest !== manifestId(file)) return { other: record.manifest };
  return { record };
}

/** readApplyRecord returns the last apply's record, or undefined when none was written or it is unreadable. */
export function readApplyRecord(dir: string): ApplyRecord | undefined {
  try {
    const r = JSON.parse(readTextBounded(abs(dir, LAYOUT.lastApply), { noFollow: true })) as ApplyRecord;
    return typeof r.time === "string" && typeof r.ok === "boolean" ? r : undefined;
  } catch {
    return undefined;
  }
}
