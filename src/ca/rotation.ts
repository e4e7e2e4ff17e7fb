/**
 * CA rotation as a state machine over what is on disk (DIR/ca/rotation.json, DIR/ca/next). Pure:
 * the phases and what each means for every bundle and certificate are one table (PHASES), which
 * command may run in which phase is another (decide), and the proof that a peer one phase behind
 * still handshakes (lagBreaks) is computed from the first. The writer is src/plan/rotate.ts.
 *
 *   none ──prepare──> prepared ──activate [--batch N]──> active ──retire──> retiring ──> retired (= none)
 *
 * Why three steps: a peer verifies with the bundle it loaded last. A new CA may sign what a peer
 * is shown only once every peer's bundle holds it (prepare, then every service reloads), and the
 * old CA may leave the bundles only once no peer presents a certificate it signed (activate, then
 * every service reloads). Skip a step and the services that reload first refuse the others: the
 * flag day this replaces.
 */
import type { RecordedPhase, RotationRecord } from "../state/rotation.ts";

/** Phase is where a rotation stands; "none" is no DIR/ca/rotation.json. */
export type Phase = "none" | RecordedPhase;

/** ROTATE_COMMANDS are the subcommands of `mtlskit ca rotate`, in the order they run. */
export const ROTATE_COMMANDS = ["prepare", "activate", "retire"] as const;

/** RotateCommand is one step of a rotation. */
export type RotateCommand = (typeof ROTATE_COMMANDS)[number];

/** Generation names a CA within a rotation: "old" is the one replaced, "new" the next one (the only one once retired). */
export type Generation = "old" | "new";

/** PhaseInfo is what a phase means for every service's files. */
export interface PhaseInfo {
  /** bundle: the CAs every trust bundle (each ca.pem, every output) holds, in this order. */
  bundle: readonly Generation[];
  /** issuer: the CA that issues an activated service's certificates, and everyone else's. */
  issuer: { activated: Generation; other: Generation };
  /** previous: the phase of a peer that has not reloaded since the last step. */
  previous: Phase;
  /** next: the command that moves the rotation on; undefined when none is due. */
  next: RotateCommand | undefined;
  /** says: the phase in words, for plan and status. */
  says: string;
}

/** PHASES: the rotation as data. */
export const PHASES: Readonly<Record<Phase, PhaseInfo>> = {
  none: {
    bundle: ["old"],
    issuer: { activated: "old", other: "old" },
    previous: "none",
    next: "prepare",
    says: "no rotation under way",
  },
  prepared: {
    bundle: ["old", "new"],
    issuer: { activated: "old", other: "old" },
    previous: "none",
    next: "activate",
    says: "every bundle holds the current and the next CA; certificates are still issued by the current CA",
  },
  active: {
    bundle: ["old", "new"],
    issuer: { activated: "new", other: "old" },
    previous: "prepared",
    next: "retire",
    says: "activated services' certificates are issued by the next CA; every bundle still holds both",
  },
  retiring: {
    bundle: ["new"],
    issuer: { activated: "new", other: "new" },
    previous: "active",
    next: "retire",
    says: "retire was interrupted: the next CA is becoming DIR/ca and the old one leaves the bundles",
  },
  retired: {
    bundle: ["new"],
    issuer: { activated: "new", other: "new" },
    previous: "active",
    next: undefined,
    says: "the old CA is retired: bundles hold the new CA only",
  },
};

/** phaseOf is the phase a record (or its absence) says. */
export const phaseOf = (record: RotationRecord | undefined): Phase => record?.phase ?? "none";

/** isActivated says whether the next CA issues `service`'s certificates in `record`'s rotation. */
export const isActivated = (record: RotationRecord, service: string): boolean =>
  record.activatedAll || record.activated.includes(service);

/** issuerOf is the generation that issues `service`'s certificates in `phase`. */
export function issuerOf(phase: Phase, record: RotationRecord | undefined, service: string): Generation {
  const info = PHASES[phase].issuer;
  return record && isActivated(record, service) ? info.activated : info.other;
}

/** Verdict is what a rotate command does in the current phase. */
export type Verdict =
  /** start: move to the command's phase (prepare: create the next CA; activate: the next batch; retire: swap the CAs). */
  | { kind: "start" }
  /** resume: the phase's command was interrupted or is run again: redo its writes (idempotent), run owed reloads. */
  | { kind: "resume" }
  /** finished: nothing left for this command; `says` tells what comes next. */
  | { kind: "finished"; says: string }
  /** refuse: out of order or unsafe; `first` is the command to run first (undefined: none can help, only --force). */
  | { kind: "refuse"; why: string; first: RotateCommand | undefined; forcible: boolean };

/** DecideOptions are the flags that change a decision. */
export interface DecideOptions {
  /** force: retire while certificates still chain to the old CA, or go on while reloads failed. */
  force?: boolean;
}

const names = (list: readonly string[]) =>
  list.length <= 5 ? list.join(", ") : `${list.slice(0, 5).join(", ")} and ${list.length - 5} more`;

/** reloadsOwed refuses the next step while services have not reloaded what the last one wrote. */
function reloadsOwed(record: RotationRecord, command: RotateCommand, last: RotateCommand): Verdict | undefined {
  if (record.reloadPending.length === 0) return undefined;
  return {
    kind: "refuse",
    why: `the reload hook${record.reloadPending.length === 1 ? "" : "s"} of ${names(record.reloadPending)} did not succeed after ${last}, so ${record.reloadPending.length === 1 ? "that service" : "those services"} may still hold the files from before it; ${command} now could break their connections`,
    first: last,
    forcible: true,
  };
}

/**
 * decide says what `command` does given the rotation record on disk (undefined: no rotation).
 * Refusals name the command that comes first; `--force` overrides only the refusals marked
 * forcible (owed reloads; retire before every service was activated).
 */
export function decide(command: RotateCommand, record: RotationRecord | undefined, opts: DecideOptions = {}): Verdict {
  const phase = phaseOf(record);
  const refuse = (why: string, first: RotateCommand | undefined, forcible = false): Verdict =>
    forcible && opts.force ? { kind: "start" } : { kind: "refuse", why, first, forcible };
  const owed = (last: RotateCommand): Verdict | undefined => {
    const v = record ? reloadsOwed(record, command, last) : undefined;
    return v && !opts.force ? v : undefined;
  };
  switch (command) {
    case "prepare":
      if (phase === "none" || phase === "retired") return { kind: "start" };
      if (phase === "prepared") return { kind: "resume" };
      return phase === "active"
        ? refuse(
            "the rotation is already activated (the next CA issues certificates); prepare cannot run again until it is retired",
            "retire",
          )
        : refuse("retire was interrupted; finish it before preparing another rotation", "retire");
    case "activate":
      if (phase === "none" || phase === "retired")
        return refuse(
          "no rotation is prepared: the bundles do not hold a next CA yet, so certificates it issued would be refused by every peer",
          "prepare",
        );
      if (phase === "retiring") return refuse("retire was interrupted; finish it", "retire");
      if (phase === "prepared") {
        if (!record!.done) return refuse("prepare was interrupted before every bundle held both CAs", "prepare");
        return owed("prepare") ?? { kind: "start" };
      }
      if (!record!.done || (record!.activatedAll && record!.reloadPending.length > 0)) return { kind: "resume" };
      if (record!.activatedAll)
        return { kind: "finished", says: "every service is activated; next: mtlskit ca rotate retire" };
      return owed("activate") ?? { kind: "start" };
    case "retire":
      if (phase === "none") return refuse("no rotation is under way; a rotation starts with prepare", "prepare");
      if (phase === "retired" && record!.reloadPending.length > 0) return { kind: "resume" };
      if (phase === "retired")
        return {
          kind: "finished",
          says: "the old CA is already retired; a new rotation starts with mtlskit ca rotate prepare",
        };
      if (phase === "retiring") return { kind: "resume" };
      if (phase === "prepared")
        return refuse(
          "no service is activated yet: every certificate still chains to the old CA, and removing it from the bundles breaks every connection",
          "activate",
          true,
        );
      if (!record!.done) return refuse("activate was interrupted before its certificates were all written", "activate");
      if (!record!.activatedAll)
        return refuse(
          "activate --batch has not reached every service yet; their certificates still chain to the old CA",
          "activate",
          true,
        );
      return owed("activate") ?? { kind: "start" };
  }
}

/** refusalText words a refusal: the rule, then the command to run first (or --force). */
export function refusalText(command: RotateCommand, v: Verdict & { kind: "refuse" }): string {
  const first = v.first ? `run \`mtlskit ca rotate ${v.first}\` first` : "";
  const force = v.forcible ? `${first ? "; or, knowing connections may break, " : ""}add --force` : "";
  return `mtlskit ca rotate ${command}: refused: ${v.why}\n    fix: ${first}${force}`;
}

/** Lag is one side of a connection: the phase whose files it holds. */
export interface LagBreak {
  client: string;
  server: string;
  /** the phases each side holds. */
  clientPhase: Phase;
  serverPhase: Phase;
  /** which side refuses: the verifier whose bundle lacks the presenter's issuer. */
  refuses: "client" | "server";
  issuer: Generation;
}

/**
 * lagBreaks checks every connection with each side in `phase` or one phase behind (a peer that
 * has not reloaded yet): the presenter's issuer must be in the verifier's bundle. An empty list
 * is the table's proof that the step into `phase` breaks no connection; a phase pair skipping a
 * step (`behind` two phases back) lists what breaks.
 */
export function lagBreaks(
  phase: Phase,
  record: RotationRecord | undefined,
  connections: readonly { from: string; to: string }[],
  behind: Phase = PHASES[phase].previous,
): LagBreak[] {
  const out: LagBreak[] = [];
  for (const c of connections) {
    for (const [cp, sp] of [
      [phase, phase],
      [phase, behind],
      [behind, phase],
    ] as const) {
      const ci = issuerOf(cp, record, c.from);
      const si = issuerOf(sp, record, c.to);
      if (!PHASES[sp].bundle.includes(ci))
        out.push({ client: c.from, server: c.to, clientPhase: cp, serverPhase: sp, refuses: "server", issuer: ci });
      if (!PHASES[cp].bundle.includes(si))
        out.push({ client: c.from, server: c.to, clientPhase: cp, serverPhase: sp, refuses: "client", issuer: si });
    }
  }
  return out;
}

/** phaseAge is how long the current phase has lasted at `now`, in seconds (0 without a record). */
export function phaseAge(record: RotationRecord | undefined, now: Date): number {
  const since = record ? record.since[record.phase] : undefined;
  return since === undefined ? 0 : Math.max(0, Math.round((now.getTime() - Date.parse(since)) / 1000));
}

/** nextBatch picks the services the next `activate` run activates: the first `batch` not yet activated (all without one). */
export function nextBatch(record: RotationRecord, services: readonly string[], batch: number | undefined): string[] {
  const left = services.filter((s) => !isActivated(record, s));
  return batch === undefined ? left : left.slice(0, batch);
}

/** nextStepText says, for `plan` and `status`, the phase and what the next command will change. */
export function nextStepText(record: RotationRecord | undefined, services: readonly string[]): string {
  const phase = phaseOf(record);
  if (!record || phase === "none") return "CA rotation: none under way (start one with `mtlskit ca rotate prepare`).";
  const head = `CA rotation: ${phase} since ${record.since[phase]} (${PHASES[phase].says}).`;
  if (!record.done)
    return `${head} The step was interrupted: run \`mtlskit ca rotate ${phase === "prepared" ? "prepare" : phase === "active" ? "activate" : "retire"}\` again to finish it.`;
  if (record.reloadPending.length > 0)
    return `${head} Reloads owed by ${names(record.reloadPending)}: fix their hooks and run the last step again before going on.`;
  switch (phase) {
    case "prepared":
      return `${head} Next: \`mtlskit ca rotate activate\` re-issues ${services.length} service${services.length === 1 ? "" : "s"}' certificates from the next CA (or --batch N per run); bundles keep both CAs.`;
    case "active": {
      const left = services.filter((s) => !isActivated(record, s));
      return left.length > 0
        ? `${head} ${left.length} service${left.length === 1 ? "" : "s"} not activated yet (${names(left)}): next \`mtlskit ca rotate activate [--batch N]\`.`
        : `${head} Next: \`mtlskit ca rotate retire\` removes the old CA from every bundle and makes the next CA DIR/ca/ca.pem.`;
    }
    case "retiring":
      return `${head} Run \`mtlskit ca rotate retire\` again to finish.`;
    default:
      return `${head} A new rotation starts with \`mtlskit ca rotate prepare\`.`;
  }
}

/** RotationSummary is a rotation's phase as status and metrics show it. */
export interface RotationSummary {
  phase: Phase;
  /** since: when the phase started (undefined for "none"). */
  since: string | undefined;
  /** seconds: how long the phase has lasted. */
  seconds: number;
  /** reloadPending: services whose reload the last step still owes. */
  reloadPending: string[];
  /** text: the phase and the next step in words (nextStepText). */
  text: string;
}

/** summarize turns a rotation record (or none) into what status and metrics show, at `now`. */
export function summarize(record: RotationRecord | undefined, now: Date, services: readonly string[]): RotationSummary {
  const phase = phaseOf(record);
  return {
    phase,
    since: record?.since[record.phase],
    seconds: phaseAge(record, now),
    reloadPending: record?.reloadPending ?? [],
    text: nextStepText(record, services),
  };
}

/** ALL_PHASES lists every phase, for gauges that export one series per phase. */
export const ALL_PHASES = Object.keys(PHASES) as Phase[];
