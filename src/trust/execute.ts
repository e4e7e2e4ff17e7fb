/**
 * executeTrust: the edge that carries out a TrustPlan, step by step, in order: the anchor file
 * written atomically (mode 0644, fsynced, renamed, directory fsynced) before the store is
 * rebuilt; commands run with a deadline; the first failure stops the run and says what was done.
 */
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import * as path from "node:path";
import { FailedError } from "../errors.ts";
import { syncDir, writeFileAtomic } from "../state/fs.ts";
import { renderStep, type TrustPlan, type TrustStep } from "./plan.ts";

/** StepResult is a step done, and the last line its command printed (update-ca-certificates' "1 added, 0 removed; done."). */
export interface StepResult {
  step: TrustStep;
  summary: string | undefined;
}

/** RUN_TIMEOUT_MS bounds each command: update-ca-certificates runs its hooks (Java's keystore) and can take seconds. */
export const RUN_TIMEOUT_MS = 180_000;

function runStep(s: Extract<TrustStep, { kind: "run" }>): string | undefined {
  if (!s.bin) throw new FailedError(`trust: ${s.argv[0]} is not installed`);
  const env = s.as ? { ...process.env, HOME: s.as.home, USER: s.as.user, LOGNAME: s.as.user } : process.env;
  const r = spawnSync(s.bin, s.argv.slice(1), {
    encoding: "utf8",
    timeout: RUN_TIMEOUT_MS,
    env,
    ...(s.as ? { uid: s.as.uid, gid: s.as.gid } : {}),
  });
  const out = `${r.stdout ?? ""}${r.stderr ?? ""}`.trim();
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : r.signal ? `killed by ${r.signal}` : `exit ${r.status}`;
    throw new FailedError(
      `trust: ${renderStep(s)} failed (${why})${
        out
          ? `:\n${out
              .split("\n")
              .slice(-8)
              .map((l) => `    ${l}`)
              .join("\n")}`
          : ""
      }`,
    );
  }
  return out
    .split("\n")
    .filter((l) => /\badded\b|\bremoved\b/.test(l))
    .pop();
}

/**
 * executeTrust runs every step of `plan` (which refuseBlocked has passed). `onStep` hears each
 * step as it completes. On a failure the error lists the steps already done and how to finish
 * or undo (the same command again, or the opposite one).
 */
export function executeTrust(plan: TrustPlan, onStep: (r: StepResult) => void = () => {}): StepResult[] {
  const done: StepResult[] = [];
  for (const step of plan.steps) {
    try {
      let summary: string | undefined;
      if (step.kind === "write") {
        writeFileAtomic(step.file, step.pem, step.mode);
        syncDir(path.dirname(step.file));
      } else if (step.kind === "remove") {
        rmSync(step.file, { force: true });
        syncDir(path.dirname(step.file));
      } else summary = runStep(step);
      const r = { step, summary };
      done.push(r);
      onStep(r);
    } catch (e) {
      const what =
        e instanceof FailedError
          ? e.message
          : `trust: ${renderStep(step)} failed: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
      const other = plan.action === "install" ? "uninstall" : "install";
      const progress = done.length
        ? `\n    done before it: ${done.map((d) => renderStep(d.step)).join("; ")}`
        : "\n    nothing was changed before it";
      throw new FailedError(
        `${what}${progress}\n    fix: correct the cause and run mtlskit trust ${plan.action} again, or undo with mtlskit trust ${other}`,
        { cause: e },
      );
    }
  }
  return done;
}
