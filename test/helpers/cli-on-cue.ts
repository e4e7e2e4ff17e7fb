/**
 * The CLI in a child process, started on cue: it loads mtlskit, sends "ready" over IPC, then runs
 * main() with the argv it is sent. The cue lets the lock test start two applies at the same
 * instant, after Node's and tsx's start-up. Spawn with `stdio: [..., "ipc"]` and cwd REPO (so tsx resolves).
 */
import { main } from "../../src/cli/main.ts";

process.once("message", (argv: string[]) => {
  process.argv = [...process.argv.slice(0, 2), ...argv];
  process.disconnect();
  void main();
});
process.send!("ready");
