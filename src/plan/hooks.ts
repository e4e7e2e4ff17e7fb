/**
 * Reload hooks: after apply changes a service's files, the service is told, so a renewal needs no
 * person. A hook is a shell command (`systemctl reload nginx`) or a signal to the process in a pid
 * file (`{ signal: HUP, pidFile: /run/nats.pid }`). Each runs once per apply that changed the
 * service, with a deadline; a failure is reported (and recorded), never hidden, and never undoes
 * the files: they are valid, the service just has not picked them up yet.
 */
import { spawn } from "node:child_process";
import type { Reload } from "../manifest/index.ts";
import { readTextBounded, type ReadFileError } from "../read-file.ts";
import type { HookRecord } from "../state/record.ts";

/** HOOK_TIMEOUT_MS bounds each hook: a reload that hangs must not hold the apply lock forever. */
export const HOOK_TIMEOUT_MS = 60_000;

/** HookJob is one hook to run: the service, its reload and the environment describing its files. */
export interface HookJob {
  service: string;
  reload: Reload;
  env: Record<string, string>;
}

/** describeReload is the hook as written, for messages and the apply record. */
export function describeReload(r: Reload): string {
  return "command" in r ? r.command : `kill -${r.signal} $(cat ${r.pidFile})`;
}

const tail = (text: string) => text.trim().split("\n").slice(-5).join(" | ").slice(0, 500);

function runCommand(job: HookJob & { reload: { command: string } }, timeoutMs: number): Promise<HookRecord> {
  return new Promise((resolve) => {
    // Its own process group, so a timeout kills what the shell started too (a `sleep` holding the pipes open).
    const child = spawn("/bin/sh", ["-c", job.reload.command], {
      env: { ...process.env, ...job.env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        child.kill("SIGKILL"); // the group is already gone
      }
    }, timeoutMs);
    const done = (r: Omit<HookRecord, "service" | "command">) => {
      clearTimeout(timer);
      resolve({ service: job.service, command: job.reload.command, ...r });
    };
    child.once("error", (e) => done({ ok: false, exitCode: null, error: `could not start /bin/sh: ${e.message}` }));
    child.once("close", (code, signal) => {
      if (timedOut)
        return done({
          ok: false,
          exitCode: null,
          error: `did not finish within ${timeoutMs / 1000} s and was killed${out ? `; it printed: ${tail(out)}` : ""}`,
        });
      if (code === 0) return done({ ok: true, exitCode: 0 });
      done({
        ok: false,
        exitCode: code,
        error: `${code === null ? `was killed by ${signal}` : `exited with ${code}`}${out ? `; it printed: ${tail(out)}` : ""}`,
      });
    });
  });
}

function sendSignal(job: HookJob & { reload: { signal: string; pidFile: string } }): HookRecord {
  const { signal, pidFile } = job.reload;
  const record = { service: job.service, command: describeReload(job.reload) };
  let text: string;
  try {
    text = readTextBounded(pidFile, { limit: 4096 }).trim();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return {
      ...record,
      ok: false,
      exitCode: null,
      error: `cannot read the pid file ${pidFile}${code === "ENOENT" ? ": it does not exist (is the service running?)" : `: it ${(e as ReadFileError).reason}`}`,
    };
  }
  if (!/^[1-9][0-9]*$/.test(text))
    return {
      ...record,
      ok: false,
      exitCode: null,
      error: `${pidFile} does not hold a process id (it holds ${JSON.stringify(text.slice(0, 40))})`,
    };
  try {
    process.kill(Number(text), `SIG${signal}` as NodeJS.Signals);
    return { ...record, ok: true, exitCode: 0 };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === "ESRCH"
        ? `no process ${text} is running (a stale pid file?)`
        : code === "EPERM"
          ? `not allowed to signal process ${text} (run apply as its user or root)`
          : String(code);
    return { ...record, ok: false, exitCode: null, error: `SIG${signal} to ${text} from ${pidFile}: ${why}` };
  }
}

/** runHooks runs the hooks one after another (a reload order the manifest's order decides) and returns what each did. */
export async function runHooks(jobs: readonly HookJob[], timeoutMs = HOOK_TIMEOUT_MS): Promise<HookRecord[]> {
  const out: HookRecord[] = [];
  for (const job of jobs) {
    const r = job.reload;
    out.push("command" in r ? await runCommand({ ...job, reload: r }, timeoutMs) : sendSignal({ ...job, reload: r }));
  }
  return out;
}
