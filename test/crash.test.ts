/**
 * The kill test. apply runs as a real child process on a 150-service manifest (167 certificates:
 * server, client and dual usages, some split, three key types) and is killed with SIGKILL after a
 * random delay, drawn (with a fixed-seed PRNG) between 0 and the time a full apply
 * takes; half the kills hit the first apply of a fresh directory, half a `--reissue-all`. After
 * every kill:
 *   (a) each certificate slot on disk is either a sound pair (key 0600 matching its certificate,
 *       which ca/ca.pem issued and signed, all checked with node:crypto) or one plan does not keep;
 *       a --reissue-all kill leaves the CA byte-identical;
 *   (b) apply run again succeeds (the killed process's lock does not block it), leaves a complete,
 *       consistent tree with the documented modes and no temp file, and a further apply keeps
 *       everything and changes no byte.
 *
 * The children are started ahead of time and cued over IPC (helpers/cli-on-cue.ts), so delays are
 * measured from the moment apply starts, not from Node's start-up.
 * MTLSKIT_KILL_SEED replays a run's delays (the moments they hit still depend on the machine's
 * speed); MTLSKIT_KILLS lengthens it.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { assertBundles, assertLayout, assertPairsMatch, assertUntouched, checkPair, CuedCli, inspectPki, readCa, tempFiles, type Entry } from "./helpers/pki.ts";

const SERVICES = 150;
const KILLS = Number(process.env.MTLSKIT_KILLS ?? 25);
const SEED = Number(process.env.MTLSKIT_KILL_SEED ?? 20261123);

/** mulberry32: a small seeded PRNG, so a failing run replays with MTLSKIT_KILL_SEED. */
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

/** Slot is one certificate of the manifest: its plan id, service and kind. */
interface Slot {
  id: string;
  service: string;
  kind: "main" | "client";
}

/** manifest: server, client and dual services in turn; every ninth a split dual; a few Ed25519 and P-384 keys. */
function manifest(): { text: string; slots: Slot[] } {
  const lines = ["version: 1", "cluster: crash", 'identity: { uri: "spiffe://crash.test/{role}/{name}" }', "services:"];
  const slots: Slot[] = [];
  for (let i = 0; i < SERVICES; i++) {
    const name = `s${i}`;
    const usage = ["server", "client", "dual"][i % 3]!;
    const split = i % 9 === 2;
    const key = i % 7 === 3 ? ", key: ed25519" : i % 11 === 4 ? ", key: ecdsa-p384" : "";
    lines.push(`  ${name}: { usage: ${usage}${usage === "client" ? "" : `, addresses: [10.2.${i >> 8}.${(i % 250) + 1}, ${name}.crash.test]`}${split ? ", split: true" : ""}${key} }`);
    slots.push({ id: name, service: name, kind: "main" });
    if (split) slots.push({ id: `${name}/client`, service: name, kind: "client" });
  }
  return { text: lines.join("\n") + "\n", slots };
}

interface PlanJson {
  ca: { action: string; reason: string };
  certificates: { id: string; service: string; action: string; reason: string }[];
}
interface ApplyJson extends PlanJson {
  issued: number;
  caCreated: boolean;
}

const CA_FILES = ["ca/ca.pem", "ca/ca-key.pem"];
const keyRel = (s: Slot) => `services/${s.service}/${s.kind === "main" ? "key.pem" : "client-key.pem"}`;

describe("crash safety: apply killed with SIGKILL", () => {
  it(`ok/${KILLS} kills at random moments (seed ${SEED}) never leave a pair plan would keep wrongly, and apply always converges`, { timeout: 420_000 }, async (t) => {
    const random = prng(SEED);
    const { text, slots } = manifest();
    const dir = tempDir();
    const file = writeManifest(dir, text);
    const pki = path.join(dir, "pki");
    const argv = (...extra: string[]) => ["apply", "-f", file, "--pki", pki, "--lock-wait", "10", ...extra];

    // The next child loads while the checks of the previous kill run (not while an apply runs,
    // which it would slow down), so each kill hits a warm process that is already inside apply.
    let spare = new CuedCli();
    const runNext = async (args: string[], killAfterMs?: number) => {
      const c = spare;
      await c.ready;
      const r = await c.run(args, killAfterMs === undefined ? {} : { killAfterMs });
      spare = new CuedCli();
      return r;
    };
    const started = performance.now();
    const stats = { runs: 0, killed: 0, finishedFirst: 0, beforeFirstCert: 0, midWrite: 0, midWriteReissue: 0, tempLeft: 0, torn: 0, staleLocks: 0 };
    try {
      // The spans the delays are drawn from: a full apply on a fresh directory, and a full --reissue-all.
      const fresh = await runNext(argv());
      assert.equal(fresh.code, 0, fresh.err);
      const reissue = await runNext(argv("--reissue-all"));
      assert.equal(reissue.code, 0, reissue.err);
      t.diagnostic(`seed ${SEED}; full apply ${Math.round(fresh.ms)} ms fresh, ${Math.round(reissue.ms)} ms --reissue-all (${slots.length} certificates)`);

      for (let i = 0; i < KILLS; i++) {
        const fromScratch = i % 2 === 0;
        const what = `kill ${i + 1}/${KILLS} (${fromScratch ? "fresh directory" : "--reissue-all"}`;
        if (fromScratch) rmSync(pki, { recursive: true, force: true });
        const before: Map<string, Entry> | undefined = fromScratch ? undefined : inspectPki(pki);
        const delay = Math.floor(random() * (fromScratch ? fresh.ms : reissue.ms));
        const r = await runNext(fromScratch ? argv() : argv("--reissue-all"), delay);
        const where = `${what}, after ${delay} ms)`;
        stats.runs++;
        if (r.killed) stats.killed++;
        else {
          assert.equal(r.code, 0, `${where}: apply finished before the kill, but failed: ${r.err}`);
          stats.finishedFirst++;
        }

        // (a) What the kill left: every slot is a sound pair, absent, or one plan does not keep.
        const exists = existsSync(pki);
        if (exists && existsSync(path.join(pki, ".lock"))) stats.staleLocks++;
        const temps = exists ? tempFiles(pki) : [];
        const plan = await runCli(["plan", "-f", file, "--pki", pki, "--json"]);
        assert.equal(plan.code, 0, `${where}: plan failed on what the kill left: ${plan.err}`);
        const steps = new Map((JSON.parse(plan.out) as PlanJson).certificates.map((c) => [c.id, c]));
        const ca = readCa(pki);
        let written = 0;
        let torn = 0;
        for (const s of slots) {
          const verdict = checkPair(pki, s.service, s.kind, ca);
          const step = steps.get(s.id);
          assert.ok(step, `${where}: plan has no step for ${s.id}`);
          if (verdict === "absent") assert.equal(step.action, "create", `${where}: ${s.id} has no files but plan says ${step.action} (${step.reason})`);
          else assert.ok(verdict === "ok" || step.action !== "keep", `${where}: plan keeps ${s.id}, but ${verdict}`);
          if (verdict !== "ok" && verdict !== "absent") torn++;
          if (fromScratch ? verdict !== "absent" : before!.get(keyRel(s))?.sha256 !== keyHash(pki, s)) written++;
        }
        if (!fromScratch) {
          const after = inspectPki(pki);
          for (const f of CA_FILES) assert.deepEqual(after.get(f), before!.get(f), `${where}: --reissue-all touched ${f}`);
          assert.equal((JSON.parse(plan.out) as PlanJson).ca.action, "keep", `${where}: the CA is no longer usable`);
        }
        if (temps.length > 0) stats.tempLeft++;
        if (torn > 0) stats.torn++;
        if (r.killed && written === 0 && temps.length === 0) stats.beforeFirstCert++;
        if (r.killed && (temps.length > 0 || (written > 0 && written < slots.length) || torn > 0)) {
          stats.midWrite++;
          if (!fromScratch) stats.midWriteReissue++;
        }

        // (b) apply again, to completion: the dead process's lock must not block it.
        const again = await runCli(["apply", "-f", file, "--pki", pki, "--lock-wait", "5", "--json"]);
        assert.equal(again.code, 0, `${where}: re-running apply failed: ${again.err}`);
        const recovered = JSON.parse(again.out) as ApplyJson;
        if (!fromScratch) {
          assert.equal(recovered.caCreated, false, `${where}: recovery replaced the CA`);
          const now = inspectPki(pki);
          for (const f of CA_FILES) assert.deepEqual(now.get(f), before!.get(f), `${where}: recovery touched ${f}`);
        }
        assert.equal(assertPairsMatch(pki), slots.length, `${where}: not every pair was there after recovery`);
        assertBundles(pki);
        assertLayout(pki); // documented modes; no temp file, no lock left
        assert.deepEqual(tempFiles(pki), []);

        // ... and is then idempotent.
        const settled = inspectPki(pki);
        const idem = await runCli(["apply", "-f", file, "--pki", pki, "--json"]);
        assert.equal(idem.code, 0, idem.err);
        const j = JSON.parse(idem.out) as ApplyJson;
        assert.equal(j.issued, 0, `${where}: apply after recovery issued ${j.issued} more`);
        assert.deepEqual(new Set(j.certificates.map((c) => c.action)), new Set(["keep"]), `${where}: not idempotent after recovery`);
        assertUntouched(settled, inspectPki(pki));
      }
    } finally {
      spare.kill();
      t.diagnostic(
        `kill test, seed ${SEED}: ${stats.killed} of ${stats.runs} runs killed while running (${stats.finishedFirst} finished first); ` +
          `${stats.midWrite} kills landed mid-write (${stats.midWriteReissue} of them in --reissue-all; ${stats.torn} left a torn pair, ${stats.tempLeft} left temp files), ` +
          `${stats.beforeFirstCert} before the first certificate was written; ${stats.staleLocks} stale locks taken over; ${Math.round((performance.now() - started) / 1000)} s`,
      );
    }
    assert.ok(stats.midWrite >= 2, `only ${stats.midWrite} kills landed while certificates were being written: the test proved too little`);
  });
});

/** keyHash hashes a slot's key file (undefined when missing), to see which slots a kill had rewritten. */
function keyHash(pki: string, s: Slot): string | undefined {
  const file = path.join(pki, keyRel(s));
  return existsSync(file) ? createHash("sha256").update(readFileSync(file)).digest("hex") : undefined;
}
