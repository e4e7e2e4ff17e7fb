/**
 * DIR/ca/rotation.json: the persisted state of a CA rotation (the machine itself is
 * src/ca/rotation.ts). One small JSON file, replaced atomically, so a kill -9 leaves the previous
 * record or the next one; what else is on disk (DIR/ca/next, the bundles) is judged against it.
 */
import { readTextBounded } from "../read-file.ts";
import { syncDir, writeFileAtomic } from "./fs.ts";
import { abs, LAYOUT } from "./layout.ts";

/** RECORDED_PHASES are the phases a rotation record can hold; no record at all is phase "none". */
export const RECORDED_PHASES = ["prepared", "active", "retiring", "retired"] as const;

/** RecordedPhase is a phase written in DIR/ca/rotation.json. */
export type RecordedPhase = (typeof RECORDED_PHASES)[number];

/** RotationRecord is the content of DIR/ca/rotation.json. */
export interface RotationRecord {
  phase: RecordedPhase;
  /** since: when each phase of this rotation started (ISO 8601), by phase. */
  since: Partial<Record<RecordedPhase, string>>;
  /** oldCa: SHA-256 (lowercase hex) of the CA being replaced. */
  oldCa: string;
  /** newCa: SHA-256 (lowercase hex) of the next CA (DIR/ca/next). */
  newCa: string;
  /** activated: the services whose certificates the next CA issues (activate, --batch N per run), in order. */
  activated: string[];
  /** activatedAll: every service is activated, including services added to the manifest later. */
  activatedAll: boolean;
  /** done: the command that wrote this phase finished its writes (apply, outputs); false after a kill, so a re-run resumes it. */
  done: boolean;
  /** reloadPending: services whose reload hook has not succeeded since this phase's files were written. */
  reloadPending: string[];
  /** forced: services whose certificates still chained to the old CA when retire --force ran. */
  forced?: string[];
  /** imported: a rotation of a CA imported with ca.import: where the old and the next CA's files are (absolute paths; the keys stay there). */
  imported?: { old: ImportFiles; next: ImportFiles };
}

/** ImportFiles names an imported CA's files, as ca.import does. */
export interface ImportFiles {
  cert: string;
  key: string;
  chain?: string;
}

/** RotationRead is what DIR/ca/rotation.json says: no rotation ever, a record, or why it cannot be used. */
export type RotationRead =
  | { status: "none" }
  | { status: "ok"; record: RotationRecord }
  | { status: "broken"; reason: string; fix: string };

const isStrings = (x: unknown): x is string[] => Array.isArray(x) && x.every((v) => typeof v === "string");
const isFingerprint = (x: unknown): x is string => typeof x === "string" && /^[0-9a-f]{64}$/.test(x);

const isImport = (x: unknown): x is ImportFiles => {
  const f = x as ImportFiles | undefined;
  return (
    typeof f === "object" &&
    f !== null &&
    typeof f.cert === "string" &&
    typeof f.key === "string" &&
    (f.chain === undefined || typeof f.chain === "string")
  );
};

/** parseRotation checks the shape of a rotation record; undefined when anything is off. */
export function parseRotation(text: string): RotationRecord | undefined {
  let r: Partial<RotationRecord>;
  try {
    r = JSON.parse(text) as Partial<RotationRecord>;
  } catch {
    return undefined;
  }
  if (typeof r !== "object" || r === null) return undefined;
  const since = r.since as Record<string, unknown> | undefined;
  const ok =
    (RECORDED_PHASES as readonly unknown[]).includes(r.phase) &&
    typeof since === "object" &&
    since !== null &&
    Object.entries(since).every(
      ([k, v]) =>
        (RECORDED_PHASES as readonly string[]).includes(k) && typeof v === "string" && !Number.isNaN(Date.parse(v)),
    ) &&
    isFingerprint(r.oldCa) &&
    isFingerprint(r.newCa) &&
    isStrings(r.activated) &&
    typeof r.activatedAll === "boolean" &&
    typeof r.done === "boolean" &&
    isStrings(r.reloadPending) &&
    (r.forced === undefined || isStrings(r.forced)) &&
    (r.imported === undefined || (isImport(r.imported.old) && isImport(r.imported.next)));
  return ok ? (r as RotationRecord) : undefined;
}

/** readRotation reads DIR/ca/rotation.json; a damaged record is "broken" with the fix, never a throw. */
export function readRotation(dir: string): RotationRead {
  const file = abs(dir, LAYOUT.rotation);
  let text: string;
  try {
    text = readTextBounded(file, { limit: 1 << 20, noFollow: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return { status: "none" };
    return {
      status: "broken",
      reason: `cannot read ${file}: ${code ?? (e as Error).message}`,
      fix: `run mtlskit as the user that owns ${dir}`,
    };
  }
  const record = parseRotation(text);
  return record
    ? { status: "ok", record }
    : {
        status: "broken",
        reason: `${file} is not a rotation record mtlskit wrote (damaged or edited)`,
        fix: `restore it from backup; the phase is also visible on disk: ${abs(dir, LAYOUT.nextCa.dir)} exists from prepare until retire`,
      };
}

/** writeRotation replaces DIR/ca/rotation.json atomically and makes the rename durable. */
export function writeRotation(dir: string, record: RotationRecord): void {
  writeFileAtomic(abs(dir, LAYOUT.rotation), JSON.stringify(record, null, 2) + "\n", LAYOUT.rotation.mode);
  syncDir(abs(dir, LAYOUT.caDir));
}
