/**
 * Rotation under kill -9 (issue 13): every rotate step (prepare, activate --batch 2, activate,
 * retire) of two full rotations is killed with SIGKILL at a write chosen by a seeded PRNG (the
 * MTLSKIT_TEST_CRASH_AT seam of src/state/fs.ts: a temp file created, written, or renamed into
 * place), in a child process running the CLI. After each kill:
 *   (a) check finds every declared connection handshaking: no connection fails for trust (a
 *       chain to a bundle, the bundles hold what the phase before or after says). The one
 *       exception is a pair torn by the kill (a key renamed into place before its certificate,
 *       the order apply writes them in): check reports it key-mismatch and its connections
 *       conn-missing, and a service never loads it (fileSource keeps the previous pair, which
 *       the bundles still trust), so no handshake breaks; the re-run re-issues it;
 *   (b) the same step run again finishes (exit 0), check reports no error, and the rotation
 *       record says the step's phase, done.
 * At the end the rotation is retired twice, DIR/ca/next is gone, both old CAs are kept under
 * DIR/ca/retired, and no temp file is left. MTLSKIT_KILL_SEED picks other kill points.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { checkPki } from "../src/check/index.ts";
import { loadManifest } from "../src/manifest/index.ts";
import { REPO, runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { prng } from "./helpers/prng.ts";
import { tempFiles } from "./helpers/pki.ts";

const SEED = Number(process.env.MTLSKIT_KILL_SEED ?? 20261213);
const STAGES = ["created", "written", "renamed"] as const;

const MANIFEST = `version: 1
cluster: kill
identity: { uri: "spiffe://kill.test/{name}" }
services:
  api: { usage: dual, addresses: [127.0.0.1, api.kill.test] }
  db: { usage: server, addresses: [10.9.0.2, db.kill.test] }
  web: { usage: client }
  queue: { usage: dual, addresses: [queue.kill.test], split: true }
connections:
  - { from: web, to: api, address: api.kill.test }
  - { from: api, to: db, address: 10.9.0.2 }
  - { from: api, to: queue, address: queue.kill.test }
  - { from: queue, to: db, address: db.kill.test }
`;

/**
 * STEPS: a rotation, and the fewest writes each step makes before its record is final (so a kill
 * drawn in [1, writes] lands inside the step): prepare the next CA's key and certificate, the
 * record, 4 bundles; activate --batch 2 the record and 2 services' 2-3 pairs; activate the rest;
 * retire the old CA's copy (2), the record, the CA swap (2), 4 bundles.
 */
const STEPS: readonly { argv: string[]; phase: string; writes: number }[] = [
  { argv: ["prepare"], phase: "prepared", writes: 7 },
  { argv: ["activate", "--batch", "2"], phase: "active", writes: 5 },
  { argv: ["activate"], phase: "active", writes: 5 },
  { argv: ["retire"], phase: "retired", writes: 9 },
];

/** killed runs the CLI in a child process (tsx) with the crash seam set; resolves with how it ended. */
function killed(argv: string[], crashAt: string): Promise<{ code: number | null; signal: string | null; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "test/helpers/cli-on-cue.ts"], {
      cwd: REPO,
      env: { ...process.env, MTLSKIT_TEST_CRASH_AT: crashAt },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    let err = "";
    child.stderr!.on("data", (d: Buffer) => void (err += d.toString()));
    child.stdout!.resume();
    const guard = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.once("message", () => child.send(argv));
    child.once("error", reject);
    child.once("close", (code, signal) => {
      clearTimeout(guard);
      resolve({ code, signal, err });
    });
  });
}

describe("CA rotation killed with SIGKILL inside its writes", () => {
  it(`ok/every step of 2 rotations killed at a write chosen by seed ${SEED}: check finds no broken connection, a re-run finishes the step`, {
    timeout: 300_000,
  }, async (t) => {
    const random = prng(SEED);
    const dir = tempDir("mtlskit-rotate-kill-");
    const file = writeManifest(dir, MANIFEST);
    const pki = path.join(dir, "pki");
    const manifest = loadManifest(file).manifest;
    const first = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(first.code, 0, first.err);
    let torn = 0;
    const brokenConnections = () => {
      const report = checkPki(manifest, pki);
      const tornPairs = new Set(
        report.findings.flatMap((f) =>
          f.code === "key-mismatch" && f.about.kind === "certificate" ? [f.about.service] : [],
        ),
      );
      torn += tornPairs.size;
      return report.connections
        .filter((c) => !c.ok)
        .filter((c) => !(c.causes.every((x) => x === "conn-missing") && (tornPairs.has(c.from) || tornPairs.has(c.to))))
        .map((c) => `${c.from} -> ${c.to}: ${c.causes.join(", ")}`);
    };
    for (let r = 1; r <= 2; r++) {
      for (const step of STEPS) {
        const stage = STAGES[Math.floor(random() * STAGES.length)]!;
        const n = 1 + Math.floor(random() * step.writes);
        const where = `rotation ${r}, ${step.argv.join(" ")}, killed at ${stage} #${n}`;
        const argv = ["ca", "rotate", ...step.argv, "-f", file, "--pki", pki];
        const run = await killed(argv, `${stage}:${n}:main`);
        assert.equal(run.signal, "SIGKILL", `${where}: the step was not killed (exit ${run.code}): ${run.err}`);
        assert.deepEqual(brokenConnections(), [], `${where}: check after the kill`);
        const again = await runCli(argv);
        assert.equal(again.code, 0, `${where}: re-run: ${again.err}`);
        const report = checkPki(manifest, pki);
        assert.equal(
          report.errors,
          0,
          `${where}: check after the re-run: ${report.findings.map((f) => f.message).join("; ")}`,
        );
        const record = JSON.parse(readFileSync(path.join(pki, "ca", "rotation.json"), "utf8")) as {
          phase: string;
          done: boolean;
        };
        assert.equal(record.phase, step.phase, where);
        assert.equal(record.done, true, where);
        t.diagnostic(`${where}: converged`);
      }
    }
    assert.equal(existsSync(path.join(pki, "ca", "next")), false, "DIR/ca/next is removed by retire");
    assert.equal(readdirSync(path.join(pki, "ca", "retired")).length, 2, "both old CAs are kept");
    assert.deepEqual(tempFiles(pki), []);
    t.diagnostic(
      `${torn} pair${torn === 1 ? "" : "s"} torn by a kill (key before certificate), re-issued by the re-run`,
    );
  });
});
