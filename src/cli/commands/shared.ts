/** Flags and rendering shared by commands: plan and apply, check and status. */
import { pluginLine } from "../../check/index.ts";
import { formatProblem, MtlskitError, type Problem } from "../../errors.ts";
import type { Plan } from "../../plan/plan.ts";
import { paint, paintErr, type Io } from "../output.ts";

/** PKI_FLAGS: where the manifest and the PKI directory are. */
export const PKI_FLAGS = {
  file: { type: "string", short: "f", default: "mtlskit.yaml" },
  pki: { type: "string", default: "./pki" },
} as const;

/**
 * LEDGER_FLAG: --ledger SPEC, the online CA's ledger when it is not DIR/ca/ledger.db: sqlite:PATH,
 * or postgres://USER@HOST:PORT/DB (several serve replicas; the password from PGPASSWORD or
 * ~/.pgpass, never in argv). Every message names it redacted.
 */
export const LEDGER_FLAG = { ledger: { type: "string" } } as const;

/** LEDGER_FLAG_HELP: the help line of --ledger. */
export const LEDGER_FLAG_HELP = `      --ledger SPEC    the online CA's ledger: sqlite:PATH, or postgres://USER@HOST:PORT/DB
                       (password from PGPASSWORD or ~/.pgpass; default DIR/ca/ledger.db)`;

/** MANIFEST_FLAGS: PKI_FLAGS and --json, as most commands take them. */
export const MANIFEST_FLAGS = { ...PKI_FLAGS, json: { type: "boolean" } } as const;

/** REISSUE_FLAGS: deliberate rotation. */
export const REISSUE_FLAGS = {
  reissue: { type: "string", multiple: true },
  "reissue-all": { type: "boolean" },
} as const;

/** splitNames accepts `--reissue a --reissue b` and `--reissue a,b` and `--reissue a b` (positionals). */
export function splitNames(values: readonly string[] | undefined, positionals: readonly string[]): string[] {
  return [...(values ?? []), ...positionals]
    .flatMap((v) => v.split(","))
    .map((v) => v.trim())
    .filter(Boolean);
}

/** planJson is the machine form of a plan (--json). */
export function planJson(plan: Plan) {
  return {
    dir: plan.dir,
    now: plan.now.toISOString(),
    ca: { action: plan.ca.action, reason: plan.ca.reason, key: plan.caKey },
    ...(plan.intermediate
      ? {
          intermediate: {
            action: plan.intermediate.action,
            reason: plan.intermediate.reason,
            notAfter: (plan.intermediate.action === "keep"
              ? plan.intermediate.notAfter
              : plan.intermediate.spec.notAfter
            )?.toISOString(),
          },
        }
      : {}),
    ...(plan.caKeyNeed ? { caKeyNeeded: plan.caKeyNeed.what } : {}),
    certificates: [
      ...plan.certs.map((c) => ({
        id: c.id,
        service: c.slot.service,
        profile: c.slot.profile,
        action: c.action,
        reason: c.reason,
        notAfter: c.action === "keep" ? c.currentNotAfter?.toISOString() : c.spec.notAfter.toISOString(),
      })),
      // A service with files: one entry, action "external"; apply writes nothing for it.
      ...plan.external.map((e) => ({
        id: e.service,
        service: e.service,
        action: e.action,
        reason: e.reason,
        files: e.files,
      })),
      // A service with csr: true: one entry, action "csr"; its key is on its host, `mtlskit sign` writes its certificate.
      ...plan.csr.map((c) => ({
        id: c.service,
        service: c.service,
        action: c.action,
        state: c.state,
        reason: c.reason,
        ...(c.next === undefined ? {} : { next: c.next }),
      })),
    ],
    bundles: plan.bundles,
    crl: { action: plan.crl.action, reason: plan.crl.reason, revoked: plan.crl.entries.length },
    warnings: plan.warnings,
  };
}

const ACTION_COLOR = {
  create: "green",
  keep: "dim",
  reissue: "yellow",
  renew: "yellow",
  import: "dim",
  external: "dim",
  csr: "dim",
} as const;

/** CA_ROW labels the CA's row in a plan: no service can be named so (NAME_RULE is lower case). */
export const CA_ROW = "CA";
/** INTERMEDIATE_ROW labels the intermediate CA's row: a space, so no service can be named so. */
export const INTERMEDIATE_ROW = "CA intermediate";

/** renderPlan prints one line per certificate (id, action, reason), then one per external service. */
export function renderPlan(io: Io, plan: Plan, verbs: { create: string; reissue: string; keep: string }): void {
  // "CA" in capitals: service names are lower case, so a service named ca gets a row of its own (issue 11).
  const rows: [string, keyof typeof ACTION_COLOR, string][] = [
    [CA_ROW, plan.ca.action, `${plan.ca.reason}${plan.caKey === "offline" ? "; key offline" : ""}`],
  ];
  if (plan.intermediate) rows.push([INTERMEDIATE_ROW, plan.intermediate.action, plan.intermediate.reason]);
  for (const c of plan.certs) rows.push([c.id, c.action, c.reason]);
  // A bundle rewritten for a service whose certificates are all kept would otherwise be invisible.
  for (const b of staleBundles(plan))
    rows.push([`${b}/ca.pem`, "reissue", "trust bundle differs from the CA's; rewritten"]);
  for (const e of plan.external) rows.push([e.service, e.action, e.reason]);
  for (const c of plan.csr ?? []) rows.push([c.service, c.action, c.next ? `${c.reason}; ${c.next}` : c.reason]);
  // The CRL's row, once it exists: re-signed after a revocation, before it goes stale, or when damaged.
  if (crlRewritten(plan)) rows.push(["CRL", "reissue", plan.crl.reason]);
  const word = (a: keyof typeof ACTION_COLOR) =>
    a === "import" || a === "external" || a === "csr" ? a : a === "renew" ? verbs.reissue : verbs[a];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => word(r[1]).length));
  for (const [id, action, reason] of rows)
    io.out(`  ${id.padEnd(w0)}  ${paint(io, ACTION_COLOR[action], word(action).padEnd(w1))}  ${reason}\n`);
  renderPlanWarnings(io, plan);
}

/** crlRewritten tells whether apply re-signs an existing CRL (a first CRL comes with the CA or the upgrade and needs no row). */
export const crlRewritten = (plan: Plan): boolean =>
  plan.crl.action === "write" && plan.crl.reason !== "CA is new" && plan.crl.reason !== "missing";

/** staleBundles names the services whose ca.pem apply rewrites although every certificate of theirs is kept. */
export function staleBundles(plan: Plan): string[] {
  // One pass over the certificates, not two searches of them per bundle: a first apply of 10,000
  // services spent 2.2 s here before issuing anything (issue 12).
  const allKept = new Map<string, boolean>();
  for (const c of plan.certs) allKept.set(c.slot.service, (allKept.get(c.slot.service) ?? true) && c.action === "keep");
  return plan.bundles.filter((b) => b.action === "write" && allKept.get(b.service) === true).map((b) => b.service);
}

/** renderExternalNote says, after the plan, that external services are left to `mtlskit check`. */
export function renderExternalNote(io: Io, plan: Plan): void {
  const n = plan.external.length;
  if (n === 0) return;
  io.out(
    `${n} external service${n === 1 ? "" : "s"} (${plan.external.map((e) => e.service).join(", ")}): the manifest names ${n === 1 ? "its" : "their"} files; apply does not write them. Run \`mtlskit check\` to judge them.\n`,
  );
}

/** renderCsrNote says, after the plan, which csr services need a request signed (apply cannot: their keys are on their hosts). */
export function renderCsrNote(io: Io, plan: Plan): void {
  // An online service's agent renews on its own; one that needs attention says so on its line.
  const due = plan.csr.filter((c) => c.state !== "signed" && c.state !== "online").map((c) => c.service);
  if (due.length === 0) return;
  io.out(
    `${due.length} csr service${due.length === 1 ? "" : "s"} (${due.join(", ")}) need${due.length === 1 ? "s" : ""} a certificate apply cannot issue (the key is on the service's host): run \`mtlskit csr\` there, then \`mtlskit sign\` here (see each line above).\n`,
  );
}

/** renderPlanWarnings prints the plan's warnings on stderr (also when the plan is too long to list). */
export function renderPlanWarnings(io: Io, plan: Plan): void {
  for (const w of plan.warnings) io.err(`${paintErr(io, "yellow", "warning:")} ${w}\n`);
}

/** renderWarnings prints manifest warnings on stderr. */
export function renderWarnings(io: Io, warnings: readonly Problem[]): void {
  for (const w of warnings) io.err(`${paintErr(io, "yellow", "warning:")} ${formatProblem(w)}\n`);
}

/**
 * asPlugin runs a command that has a `--nagios` form. A Nagios/Sensu plugin must always print
 * one status line, so with --nagios any failure (bad flags, an invalid manifest, a bug) becomes
 * `HEAD UNKNOWN - reason` and exit 3; without it, errors go to main as usual.
 */
export async function asPlugin(args: string[], io: Io, head: string, run: () => Promise<number>): Promise<number> {
  try {
    return await run();
  } catch (e) {
    if (!args.includes("--nagios") || !(e instanceof Error)) throw e;
    const msg =
      e instanceof MtlskitError
        ? e.message.split("\n").slice(0, 2).join(" ").replace(/\s+/g, " ")
        : `unexpected failure: ${e.message}`;
    io.out(`${pluginLine(() => `${head} UNKNOWN - ${msg}`, [])}\n`);
    return 3;
  }
}
