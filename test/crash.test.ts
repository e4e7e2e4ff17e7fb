/**
 * The kill test: apply is killed with SIGKILL at random moments (while creating a PKI, and while
 * re-issuing everything). After every kill, each key/certificate pair on disk either matches or
 * is one that plan re-issues; re-running apply always succeeds (the dead process's lock does not
 * block it), converges to a consistent PKI with no temporary files, and is then idempotent.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { REPO, runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { assertPairsMatch, tempFiles } from "./helpers/pki.ts";

const SERVICES = 120;
const ITERATIONS = 24;
const SEED = Number(process.env.MTLSKIT_KILL_SEED ?? 20261123);
/** PAIRS: one per service, plus a client pair for each split one (i % 9 === 2, which are dual). */
const PAIRS = SERVICES + Array.from({ length: SERVICES }, (_, i) => i).filter((i) => i % 9 === 2).length;

/** mulberry32: a small seeded PRNG, so a failing run can be replayed with MTLSKIT_KILL_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function manifest(): string {
  const lines = ["version: 1", "cluster: crash", 'identity: { uri: "spiffe://crash.test/{name}" }', "services:"];
  for (let i = 0; i < SERVICES; i++) {
    const usage = ["server", "client", "dual"][i % 3];
    lines.push(`  s${i}: { usage: ${usage}${usage === "client" ? "" : `, addresses: [10.2.0.${i + 1}]`}${i % 9 === 2 ? ", split: true" : ""} }`);
  }
  return lines.join("\n") + "\n";
}

/** runApply starts apply in a child process and kills it after `killAfterMs` (never, when undefined). */
function runApply(file: string, pki: string, extra: string[], killAfterMs?: number): Promise<{ code: number | null; killed: boolean; ms: number }> {
  return new Promise((resolve) => {
    const t = performance.now();
    const c = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "test/helpers/mtlskit-bin.ts"), "apply", "-f", file, "--pki", pki, "--lock-wait", "10", ...extra], { cwd: REPO, stdio: "ignore" });
    let killed = false;
    const timer = killAfterMs === undefined ? undefined : setTimeout(() => (killed = c.kill("SIGKILL")), killAfterMs);
    c.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, killed: killed && code === null, ms: performance.now() - t });
    });
  });
}

/** certHashes maps each certificate file under services/ to a hash of its bytes. */
function certHashes(pki: string): Map<string, string> {
  const out = new Map<string, string>();
  const dir = path.join(pki, "services");
  if (!existsSync(dir)) return out;
  for (const s of readdirSync(dir)) {
    for (const f of ["cert.pem", "client.pem"]) {
      const p = path.join(dir, s, f);
      if (existsSync(p)) out.set(`${s}/${f}`, createHash("sha256").update(readFileSync(p)).digest("hex"));
    }
  }
  return out;
}

/** mismatchedPairs lists slots whose key does not match their certificate (node:crypto's view). */
function mismatchedPairs(pki: string): string[] {
  const out: string[] = [];
  const dir = path.join(pki, "services");
  if (!existsSync(dir)) return out;
  for (const s of readdirSync(dir)) {
    for (const [cert, key, id] of [["cert.pem", "key.pem", s], ["client.pem", "client-key.pem", `${s}/client`]] as const) {
      const c = path.join(dir, s, cert);
      const k = path.join(dir, s, key);
      if (!existsSync(c) || !existsSync(k)) continue;
      try {
        const a = new X509Certificate(readFileSync(c)).publicKey.export({ type: "spki", format: "der" });
        const b = createPublicKey(createPrivateKey(readFileSync(k))).export({ type: "spki", format: "der" });
        if (!a.equals(b)) out.push(id);
      } catch {
        out.push(id);
      }
    }
  }
  return out;
}

describe("crash safety", () => {
  it(`ok/${ITERATIONS} SIGKILLs at random moments (seed ${SEED}); re-running apply always converges`, { timeout: 600_000 }, async () => {
    const random = prng(SEED);
    const dir = tempDir();
    const file = writeManifest(dir, manifest());
    const pki = path.join(dir, "pki");
    const full = await runApply(file, pki, []);
    assert.equal(full.code, 0);
    const span = full.ms * 1.1;
    let midWrite = 0;
    for (let i = 0; i < ITERATIONS; i++) {
      const fromScratch = i % 2 === 0;
      if (fromScratch) rmSync(pki, { recursive: true, force: true });
      const before = certHashes(pki);
      // Half the kills anywhere (start-up, lock, planning), half in the later, write-heavy part.
      const at = i % 4 < 2 ? random() * span : span * (0.4 + 0.6 * random());
      const r = await runApply(file, pki, fromScratch ? [] : ["--reissue-all"], Math.floor(at));
      if (!r.killed) continue;
      // A kill "mid-write" left some certificates new and some not yet written.
      const after = certHashes(pki);
      const rewritten = [...after].filter(([k, h]) => before.get(k) !== h).length;
      if (rewritten > 0 && rewritten < PAIRS) midWrite++;
      // Every mismatched pair the kill left must be one the plan re-issues.
      const bad = mismatchedPairs(pki);
      if (existsSync(path.join(pki, "ca", "ca.pem"))) {
        const plan = await runCli(["plan", "-f", file, "--pki", pki, "--json"]);
        assert.equal(plan.code, 0, plan.err);
        const steps = (JSON.parse(plan.out) as { certificates: { id: string; action: string }[] }).certificates;
        for (const id of bad) assert.notEqual(steps.find((s) => s.id === id)?.action, "keep", `iteration ${i}: ${id} is mismatched but plan keeps it`);
      }
      const again = await runApply(file, pki, []);
      assert.equal(again.code, 0, `iteration ${i}: re-running apply after the kill failed`);
      assert.equal(assertPairsMatch(pki), PAIRS);
      assert.deepEqual(tempFiles(pki), [], `iteration ${i}: temporary files left`);
      const idem = await runCli(["plan", "-f", file, "--pki", pki, "--json"]);
      assert.ok((JSON.parse(idem.out) as { certificates: { action: string }[] }).certificates.every((c) => c.action === "keep"), `iteration ${i}: not idempotent after recovery`);
    }
    console.log(`# kill test: seed ${SEED}, ${ITERATIONS} kills, ${midWrite} landed while certificates were being written (full apply ${Math.round(full.ms)} ms)`);
    assert.ok(midWrite > 0, "no kill landed in the middle of writing; the test proved nothing");
  });
});
