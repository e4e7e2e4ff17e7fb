/**
 * The agent's reload hook: `--reload CMD` run with `sh -c` after each change of the files, with a
 * deadline, as data (never a throw: a failed reload is reported in the state, and the files it
 * should have made the service load are already in place).
 */
import { spawn } from "node:child_process";

/** ReloadResult is how a hook ended. */
export interface ReloadResult {
  ok: boolean;
  /** message: "exit 0", the exit code or signal and the end of its stderr, or the deadline. */
  message: string;
}

/** RELOAD_TIMEOUT_MS: a reload hook's default deadline, 30 s; it is killed (SIGKILL, with its process group) then. */
export const RELOAD_TIMEOUT_MS = 30_000;

/**
 * runReloadCommand runs `sh -c command` with `env` added to the environment, in a process group
 * of its own so the deadline ends everything it started; resolves with how it ended.
 */
export function runReloadCommand(
  command: string,
  env: Record<string, string>,
  timeoutMs: number = RELOAD_TIMEOUT_MS,
): Promise<ReloadResult> {
  return new Promise((resolve) => {
    let stderr = "";
    let done = false;
    const finish = (r: ReloadResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(r);
    };
    const child = spawn("sh", ["-c", command], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "ignore", "pipe"],
      detached: true,
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString("utf8")).slice(-500);
    });
    const timer = setTimeout(() => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
      finish({ ok: false, message: `did not finish within ${timeoutMs} ms; killed` });
    }, timeoutMs);
    child.on("error", (e) => finish({ ok: false, message: `could not start sh: ${e.message}` }));
    child.on("close", (code, signal) => {
      const tail = stderr.trim() === "" ? "" : `: ${stderr.trim().split("\n").slice(-3).join(" / ")}`;
      finish(
        code === 0
          ? { ok: true, message: "exit 0" }
          : { ok: false, message: `${signal ? `killed by ${signal}` : `exit ${code}`}${tail}` },
      );
    });
  });
}
