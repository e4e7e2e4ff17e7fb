/**
 * The read side of planning: the imported CA and the directory's state read from disk, then
 * planApply (pure) over them. It never writes or locks; `mtlskit plan` uses it, and apply reads
 * through loadCaSource under its lock.
 */
import { InvalidInputError } from "../errors.ts";
import type { LoadedManifest } from "../manifest/index.ts";
import { loadImportedCa, readState, type CaMaterial, type State } from "../state/read.ts";
import { planApply, type Plan, type PlanOptions } from "./plan.ts";

/** loadCaSource returns the imported CA, or undefined for a generated one; bad imports are manifest errors (exit 2). */
export function loadCaSource(loaded: LoadedManifest): CaMaterial | undefined {
  const imp = loaded.manifest.ca.import;
  if (!imp) return undefined;
  const r = loadImportedCa(imp);
  if ("reason" in r) {
    const path = ["ca", "import", r.field];
    const line = loaded.lineOf(path);
    throw new InvalidInputError([
      {
        file: loaded.manifest.file,
        ...(line === undefined ? {} : { line }),
        path: path.join("."),
        message: r.reason,
        fix: r.fix,
      },
    ]);
  }
  return r;
}

/** readAndPlan reads the directory and plans, without writing or locking (the `plan` command). */
export function readAndPlan(loaded: LoadedManifest, dir: string, opts: PlanOptions = {}): { state: State; plan: Plan } {
  const state = readState(dir, loaded.manifest, loadCaSource(loaded));
  return { state, plan: planApply(loaded, state, opts) };
}
