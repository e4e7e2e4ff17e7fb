/**
 * The writer of a CA rotation: `mtlskit ca rotate prepare|activate|retire`. Each command is one
 * apply run whose first act, under apply's lock, moves the rotation (ca/rotation.ts decides
 * whether it may); apply then writes what the phase says (bundles with both CAs, leaves from the
 * next CA) and the reload hooks run; the phase is recorded finished last.
 *
 * Order of writes, so that a kill -9 between any two leaves a state a re-run completes:
 *   prepare   DIR/ca/next (key, certificate) -> rotation.json {prepared, done: false} -> bundles
 *             (apply) -> outputs -> hooks -> rotation.json {done: true}
 *   activate  rotation.json {active, the batch, done: false} -> keys and certificates (apply) ->
 *             outputs -> hooks -> {done: true}
 *   retire    DIR/ca/retired/FP (the old key and certificate) -> rotation.json {retiring} -> the
 *             next CA over DIR/ca (key, then certificate) -> DIR/ca/next removed (certificate,
 *             key, folder) -> bundles with the new CA only (apply) -> outputs -> hooks ->
 *             rotation.json {retired}
 * Readers (state/read.ts readRotatingCa) take DIR/ca/next as the CA while a retire is under way,
 * so the moment between the new key and the new certificate in DIR/ca is never read as a CA.
 */
import { existsSync, readdirSync, rmSync } from "node:fs";
import * as path from "node:path";
import { FailedError, InvalidInputError, UsageError } from "../errors.ts";
import { managedServices, type LoadedManifest } from "../manifest/index.ts";
import { verifySignedBy } from "../pki/cert.ts";
import { readTextBounded } from "../read-file.ts";
import { decide, nextBatch, refusalText, type RotateCommand, type Verdict } from "../ca/rotation.ts";
import { ensureDir, removeTempFiles, syncDir, writeFileAtomic } from "../state/fs.ts";
import { abs, LAYOUT } from "../state/layout.ts";
import {
  fingerprintOf,
  loadImportedCa,
  readCa,
  readImportedRotation,
  readRotatingCa,
  readState,
  type CaMaterial,
} from "../state/read.ts";
import { readRotation, writeRotation, type ImportFiles, type RotationRecord } from "../state/rotation.ts";
import { encodePem } from "../pki/pem.ts";
import { loadCaSource } from "./read.ts";
import { apply, createCa, type ApplyOptions, type ApplyResult } from "./apply.ts";
import { caSpec } from "./plan.ts";

/** RotateOptions: apply's options plus the rotation's flags. */
export interface RotateOptions extends ApplyOptions {
  /** batch: activate at most this many services per run (activate only). Default: every service. */
  batch?: number;
  /** force: retire while certificates still chain to the old CA, or go on while reloads are owed. Default: false. */
  force?: boolean;
  /** nextImport: prepare of a manifest with ca.import: the next CA's files (its key stays there). */
  nextImport?: ImportFiles;
}

/** RotateResult is what a rotate command did. */
export interface RotateResult {
  command: RotateCommand;
  /** verdict: started the command's phase, resumed it, or found it finished already (nothing written). */
  verdict: "start" | "resume" | "finished";
  /** says: for "finished", what comes next. */
  says?: string;
  /** record: the rotation record after the run. */
  record: RotationRecord | undefined;
  /** apply: the apply run that wrote the phase's files (undefined when finished already). */
  apply?: ApplyResult;
  /** batch: the services this activate run activated. */
  batch: string[];
  /** stragglers: managed certificates that still chained to the old CA when retire ran (with --force). */
  stragglers: string[];
  /** retiredTo: where retire kept the old CA (relative to the PKI directory). */
  retiredTo?: string;
}

/** refuse throws the refusal of `command` as a FailedError (exit 3: the PKI directory's state). */
function refuse(command: RotateCommand, v: Verdict): asserts v is Exclude<Verdict, { kind: "refuse" }> {
  if (v.kind === "refuse") throw new FailedError(refusalText(command, v));
}

const readBytes = (file: string) => readTextBounded(file, { noFollow: true });

/** listDir lists a directory's entries; none when it does not exist. */
function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** stragglersOf lists the managed certificate slots on disk that the next CA did not sign. */
function stragglersOf(loaded: LoadedManifest, dir: string, next: CaMaterial): string[] {
  const state = readState(dir, loaded.manifest);
  const out: string[] = [];
  for (const [id, leaf] of state.leaves) {
    const c = leaf.cert;
    if (c === undefined || "error" in c) continue; // missing or damaged: apply issues it from the next CA anyway
    if (!c.issuer.equals(next.cert.subject) || !verifySignedBy(c, next.publicKey, next.keyType)) out.push(id);
  }
  return out;
}

/** removeNext removes DIR/ca/next: certificate first (so a key alone reads as missing), then key, then the folder. */
function removeNext(dir: string): void {
  const n = LAYOUT.nextCa;
  rmSync(abs(dir, n.cert), { force: true });
  rmSync(abs(dir, n.key), { force: true });
  try {
    for (const f of readdirSync(abs(dir, n.dir)))
      rmSync(abs(dir, `${n.dir.rel}/${f}`), { force: true, recursive: true });
    rmSync(abs(dir, n.dir), { recursive: true, force: true });
  } catch {
    // already gone
  }
  syncDir(abs(dir, LAYOUT.caDir));
}

/** finishRetiring copies the next CA over DIR/ca (key, then certificate) and removes DIR/ca/next; idempotent. */
function finishRetiring(dir: string): void {
  const next = readCa(dir, LAYOUT.nextCa);
  if (next.status === "ok") {
    writeFileAtomic(abs(dir, LAYOUT.caKey), readBytes(abs(dir, LAYOUT.nextCa.key)), LAYOUT.caKey.mode);
    writeFileAtomic(abs(dir, LAYOUT.caCert), readBytes(abs(dir, LAYOUT.nextCa.cert)), LAYOUT.caCert.mode);
    syncDir(abs(dir, LAYOUT.caDir));
  } else if (next.status === "broken")
    throw new FailedError(`mtlskit ca rotate retire: the next CA cannot be read: ${next.reason}\n    fix: ${next.fix}`);
  removeNext(dir);
}

/** importStillOld is retire's refusal while ca.import still names the old CA (exit 3). */
function importStillOld(file: string, record: RotationRecord): FailedError {
  const n = record.imported?.next;
  return new FailedError(
    `mtlskit ca rotate retire: refused: ca.import in ${file} still names the old CA; after retire, apply issues from the CA the manifest imports\n    fix: point ca.import at the next CA (cert: ${n?.cert}, key: ${n?.key}${n?.chain ? `, chain: ${n.chain}` : ""}), then run retire again`,
  );
}

/** importOfNext reads --next-cert/--next-key/--next-chain: required by prepare with ca.import, refused otherwise (exit 2). */
function importOfNext(
  loaded: LoadedManifest,
  command: RotateCommand,
  opts: RotateOptions,
): { files: ImportFiles; material: CaMaterial } | undefined {
  const m = loaded.manifest;
  const given = opts.nextImport;
  if (given && (command !== "prepare" || !m.ca.import))
    throw new UsageError(
      `mtlskit ca rotate ${command}: --next-cert and --next-key name the next CA of a manifest with ca.import, for prepare only`,
    );
  if (!given) {
    if (command === "prepare" && m.ca.import)
      throw new UsageError(
        `mtlskit ca rotate prepare: ${m.file} imports its CA (ca.import), so the next CA is imported too: give its files with --next-cert FILE --next-key FILE [--next-chain FILE]`,
      );
    return undefined;
  }
  const files: ImportFiles = {
    cert: path.resolve(given.cert),
    key: path.resolve(given.key),
    ...(given.chain ? { chain: path.resolve(given.chain) } : {}),
  };
  const material = loadImportedCa({ cert: files.cert, key: files.key, chain: files.chain });
  if ("reason" in material)
    throw new InvalidInputError([
      { file: m.file, path: `--next-${material.field}`, message: material.reason, fix: material.fix },
    ]);
  return { files, material };
}

/**
 * rotate runs one step of a CA rotation on the PKI directory `dir`: the phase moves under apply's
 * lock, then apply writes the phase's files, outputs (opts.afterWrite) and reload hooks run, and
 * the phase is recorded finished. Out of order: FailedError (exit 3) naming the command to run
 * first; nothing written.
 */
export async function rotate(
  loaded: LoadedManifest,
  dir: string,
  command: RotateCommand,
  opts: RotateOptions = {},
): Promise<RotateResult> {
  const m = loaded.manifest;
  if (m.ca.intermediate !== undefined) {
    const line = loaded.lineOf(["ca", "intermediate"]);
    throw new InvalidInputError([
      {
        file: m.file,
        ...(line === undefined ? {} : { line }),
        path: "ca.intermediate",
        message: `mtlskit ca rotate ${command} rotates a lone CA; a root with ca.intermediate does not rotate yet`,
        fix: "the intermediate renews itself under the same root (ca.intermediate.renewBefore) with no bundle change; to replace the root, remove ca.intermediate first",
      },
    ]);
  }
  const imported = loadCaSource(loaded);
  const nextImport = importOfNext(loaded, command, opts);
  if (imported && nextImport && fingerprintOf(nextImport.material) === fingerprintOf(imported))
    throw new InvalidInputError([
      {
        file: m.file,
        path: "--next-cert",
        message: `${nextImport.files.cert} is the CA ca.import already names`,
        fix: "give the next CA's certificate and key",
      },
    ]);
  const readNow = () => (imported && existsSync(dir) ? readImportedRotation(dir, imported) : readRotatingCa(dir));
  const first = readNow();
  if (first.ca.status === "missing")
    throw new FailedError(
      `mtlskit ca rotate ${command}: ${dir} has no CA to rotate\n    fix: run \`mtlskit apply -f ${m.file} --pki ${dir}\` first`,
    );
  if (first.ca.status === "broken") throw new FailedError(`pki: ${first.ca.reason}\n    fix: ${first.ca.fix}`);
  const before = decide(command, first.rotation?.record, opts);
  // A retire refused before every service was activated names the certificates still chaining to the old CA.
  const next = first.rotation?.next;
  const left = before.kind === "refuse" && command === "retire" && next ? stragglersOf(loaded, dir, next) : [];
  if (before.kind === "refuse")
    refuse(command, left.length > 0 ? { ...before, why: `${before.why}: ${left.join(", ")}` } : before);
  refuse(command, before);
  // After retire apply issues from what ca.import names: it must name the next CA by then (checked again under the lock).
  const record0 = first.rotation?.record;
  if (
    command === "retire" &&
    before.kind === "start" &&
    imported &&
    record0 &&
    fingerprintOf(imported) !== record0.newCa
  )
    throw importStillOld(m.file, record0);
  if (before.kind === "finished")
    return {
      command,
      verdict: "finished",
      says: before.says,
      record: first.rotation?.record,
      batch: [],
      stragglers: [],
    };

  const now = () => opts.now ?? new Date();
  const names = managedServices(m).map((s) => s.name);
  const hooked = new Set(
    managedServices(m)
      .filter((s) => s.reload !== undefined)
      .map((s) => s.name),
  );
  const withHooks = (list: readonly string[]) => list.filter((n) => hooked.has(n));
  const out: RotateResult = { command, verdict: before.kind, record: undefined, batch: [], stragglers: [] };
  let record: RotationRecord | undefined;

  /** transition moves the phase; it runs under apply's lock, before apply reads the state. */
  const transition = () => {
    // Leftovers of a killed step's writes in the CA generations apply does not sweep.
    removeTempFiles(abs(dir, LAYOUT.nextCa.dir));
    for (const id of listDir(abs(dir, LAYOUT.retiredDir))) removeTempFiles(abs(dir, LAYOUT.retiredCa(id).dir));
    const read = readRotation(dir);
    if (read.status === "broken") throw new FailedError(`pki: ${read.reason}\n    fix: ${read.fix}`);
    const current = read.status === "ok" ? read.record : undefined;
    const v = decide(command, current, opts);
    refuse(command, v);
    if (v.kind === "finished")
      throw new FailedError(`mtlskit ca rotate ${command}: ${v.says} (another run finished it meanwhile)`);
    out.verdict = v.kind;
    const at = now().toISOString();
    if (command === "prepare") {
      if (v.kind === "resume") {
        record = current!;
        return;
      }
      if (imported && nextImport) {
        // An imported CA: the next one is the organisation's too; both keys stay where they are.
        const next = nextImport.material;
        const imp = m.ca.import!;
        record = {
          phase: "prepared",
          since: { prepared: at },
          oldCa: fingerprintOf(imported),
          newCa: fingerprintOf(next),
          activated: [],
          activatedAll: false,
          done: false,
          reloadPending: withHooks(names),
          imported: {
            old: {
              cert: path.resolve(imp.cert),
              key: path.resolve(imp.key!), // required by the manifest's rules without ca.intermediate, refused above
              ...(imp.chain ? { chain: path.resolve(imp.chain) } : {}),
            },
            next: nextImport.files,
          },
        };
        writeRotation(dir, record);
        return;
      }
      const old = readCa(dir);
      if (old.status !== "ok") throw new FailedError(`pki: the CA in ${abs(dir, LAYOUT.caDir)} cannot be read`);
      let next = readCa(dir, LAYOUT.nextCa);
      // A next CA left by a prepare killed before it wrote its record is reused; anything else there belongs to no rotation.
      if (next.status !== "ok" || fingerprintOf(next.ca) === fingerprintOf(old.ca)) {
        removeNext(dir);
        next = { status: "ok", ca: createCa(dir, caSpec(m, now()), LAYOUT.nextCa) };
      }
      record = {
        phase: "prepared",
        since: { prepared: at },
        oldCa: fingerprintOf(old.ca),
        newCa: fingerprintOf(next.ca),
        activated: [],
        activatedAll: false,
        done: false,
        reloadPending: withHooks(names),
      };
      writeRotation(dir, record);
      return;
    }
    if (command === "activate") {
      if (v.kind === "resume") {
        record = current!;
        return;
      }
      const batch = nextBatch(current!, names, opts.batch);
      const all = batch.length === names.filter((n) => !current!.activated.includes(n)).length;
      out.batch = batch;
      record = {
        ...current!,
        phase: "active",
        since: { ...current!.since, active: current!.since.active ?? at },
        activated: [...current!.activated, ...batch],
        activatedAll: all,
        done: false,
        reloadPending: withHooks(batch),
      };
      writeRotation(dir, record);
      return;
    }
    // retire
    if (v.kind === "start") {
      const state = readNow();
      const next = state.rotation?.next;
      if (state.ca.status !== "ok") throw new FailedError(`pki: the CA in ${abs(dir, LAYOUT.caDir)} cannot be read`);
      if (!next) throw new FailedError("mtlskit ca rotate retire: the next CA is missing; this is a bug");
      if (imported && fingerprintOf(imported) !== current!.newCa) throw importStillOld(m.file, current!);
      const stragglers = stragglersOf(loaded, dir, next);
      if (stragglers.length > 0 && !opts.force)
        throw new FailedError(
          `mtlskit ca rotate retire: refused: ${stragglers.length} certificate${stragglers.length === 1 ? "" : "s"} still chain${stragglers.length === 1 ? "s" : ""} to the old CA (${stragglers.join(", ")}); their peers would refuse them once the old CA leaves the bundles\n    fix: run \`mtlskit ca rotate activate\` first; or, knowing those connections break until they are re-issued, add --force`,
        );
      out.stragglers = stragglers;
      // The old CA is kept for the record (never under services/), before anything replaces it.
      const kept = LAYOUT.retiredCa(current!.oldCa.slice(0, 16));
      ensureDir(abs(dir, LAYOUT.retiredDir), LAYOUT.retiredDir.mode);
      ensureDir(abs(dir, kept.dir), kept.dir.mode);
      // An imported CA's key stays with its owner, and one kept offline (`mtlskit ca offline`) stays
      // where it went: only the certificate is kept then.
      if (!imported && existsSync(abs(dir, LAYOUT.caKey)))
        writeFileAtomic(abs(dir, kept.key), readBytes(abs(dir, LAYOUT.caKey)), kept.key.mode);
      const oldCert = imported
        ? encodePem("CERTIFICATE", (state.ca as { ca: CaMaterial }).ca.cert.der)
        : readBytes(abs(dir, LAYOUT.caCert));
      writeFileAtomic(abs(dir, kept.cert), oldCert, kept.cert.mode);
      syncDir(abs(dir, kept.dir));
      syncDir(abs(dir, LAYOUT.retiredDir));
      record = {
        ...current!,
        phase: "retiring",
        since: { ...current!.since, retiring: at },
        done: false,
        reloadPending: withHooks(names),
        ...(stragglers.length > 0 ? { forced: stragglers } : {}),
      };
      writeRotation(dir, record);
    } else record = current!;
    out.retiredTo = LAYOUT.retiredCa(record.oldCa.slice(0, 16)).dir.rel;
    if (!imported) finishRetiring(dir); // an imported CA: apply publishes the manifest's root as DIR/ca/ca.pem
  };

  const result = await apply(loaded, dir, {
    ...opts,
    underLock: transition,
    reloadAlso: () => record?.reloadPending ?? [],
    afterHooks: (r) => {
      const ok = new Set(r.hooks.filter((h) => h.ok).map((h) => h.service));
      const due = withHooks([...new Set([...(record?.reloadPending ?? []), ...r.changed])]);
      const finished: RotationRecord = {
        ...record!,
        done: true,
        reloadPending: due.filter((n) => !ok.has(n)).sort(),
        ...(record!.phase === "retiring"
          ? { phase: "retired" as const, since: { ...record!.since, retired: now().toISOString() } }
          : {}),
      };
      writeRotation(dir, finished);
      record = finished;
    },
  });
  out.apply = result;
  out.record = record;
  return out;
}
