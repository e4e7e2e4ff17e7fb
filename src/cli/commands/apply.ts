/** `mtlskit apply`: issue everything the manifest declares into the PKI directory. */
import { readOnlineOrWarn } from "../../check/online.ts";
import * as path from "node:path";
import { EXIT, UsageError } from "../../errors.ts";
import type { HookRecord } from "../../state/record.ts";
import { loadCaKeyFile } from "../../state/read.ts";
import { parseManifest, readManifestText, type LoadedManifest } from "../../manifest/index.ts";
import { apply, warmApply, type WarmPool } from "../../plan/apply.ts";
import { checkOutputs, exportOutputs } from "../../export/index.ts";
import { exportJson, renderExports } from "./export.ts";
import { parseArgs } from "node:util";
import { COMMON_FLAGS, flags } from "../args.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import { paint, paintErr, progressLine, type Io } from "../output.ts";
import {
  crlRewritten,
  MANIFEST_FLAGS,
  LEDGER_FLAG,
  LEDGER_FLAG_HELP,
  planJson,
  REISSUE_FLAGS,
  renderExternalNote,
  renderPlan,
  renderPlanWarnings,
  renderWarnings,
  splitNames,
  staleBundles,
} from "./shared.ts";

export const APPLY_HELP = `mtlskit apply: issue the CA and every service certificate the manifest declares.

USAGE
  mtlskit apply [-f FILE] [--pki DIR] [--reissue NAME...] [--reissue-all] [--ca-key FILE] [--json]

Creates what is missing, keeps what still matches the manifest, and re-issues (with a new key)
what changed, is inside renewBefore, expired, or no longer matches its key or CA. Re-running with
an unchanged manifest changes no file. Files are written atomically; a lock keeps two applies
apart; after a crash, running apply again converges.

Apply never writes through a symbolic link: DIR/ca, DIR/services or DIR/services/NAME as a link,
owned by another user (not DIR's owner or root), or a DIR/ca or DIR/services that group or others
may write is refused (exit 3) with the path and the fix; a service folder (or DIR/ca) with any
other mode is set back to 0700, with a note. A full disk, a read-only file system or a
permission error exits 3 with its own message and is recorded in DIR/last-apply.json.

A service with \`files\` names certificate files mtlskit did not make: it is \`external\`, and apply
never writes, creates or deletes anything for it (no services/NAME directory); \`mtlskit check\`
judges those files, and --reissue refuses it. When every service is external, apply still creates
(or keeps) the CA in DIR/ca, so that services can later be moved under mtlskit, and writes nothing else.

With \`ca.intermediate\`, the root signs an intermediate CA (DIR/ca/intermediate.pem) and the
intermediate signs every service: cert.pem holds the leaf then the intermediate, every bundle
holds the root only. Apply re-signs the intermediate (a new key) before it expires, within
ca.intermediate.renewBefore, and re-issues the services under it; no bundle changes.

Offline CA key: when DIR/ca/ca-key.pem is absent (\`mtlskit ca offline --to FILE\` moved it), or
ca.import names no key, apply runs without it as long as nothing must be signed by it, and
otherwise refuses (exit 2, nothing written), saying what needs it: the intermediate to
(re-)sign, or, without an intermediate, the services that need certificates. Give the key for
that run with --ca-key FILE: it is checked against the CA certificate, used in memory and never
copied into DIR.

A service with \`csr: true\` makes its key on its own host: apply never makes a key or writes a file
for it, and --reissue refuses it; \`mtlskit csr\` there and \`mtlskit sign\` here issue its certificate.

Apply also keeps the CA's CRL, DIR/ca/crl.pem (RFC 5280; its CRL number recorded first in
DIR/ca/crl-number, so none is reused): it re-signs it when \`mtlskit revoke\` recorded a revocation,
when it is damaged or another CA's, and once half of ca.crl.nextUpdate (default 7d) has passed; a
re-signed CRL runs every reload hook. A revoked service is re-issued ("revoked (REASON) on DATE").

After issuing, apply writes the manifest's \`outputs:\` (see \`mtlskit export --help\`), so a renewal
refreshes the exported copies; files that still match are not rewritten. An output that cannot
be written (inside DIR, a missing passphrase) stops apply before anything is issued.

Then, for each service whose files changed, apply runs its \`reload\` hook (a shell command with
MTLSKIT_SERVICE, MTLSKIT_CERT, MTLSKIT_KEY, MTLSKIT_CA and MTLSKIT_PKI set, plus
MTLSKIT_CLIENT_CERT and MTLSKIT_CLIENT_KEY for a split service, or a signal to the process in a
pid file), one at a time, each within 60 s. A failed hook exits 3 and is retried by
the next apply; every run is recorded in DIR/last-apply.json (read by status and metrics).

FLAGS
  -f, --file FILE      manifest (default mtlskit.yaml)
      --pki DIR        PKI directory (default ./pki)
${LEDGER_FLAG_HELP}
      --reissue NAME   re-issue these services' certificates with new keys (repeat, or a,b)
      --reissue-all    re-issue every service certificate (the CA is kept)
      --ca-key FILE    the CA's private key kept offline (see above); only needed when apply
                       says so; checked against DIR/ca/ca.pem, never copied
      --lock-wait SEC  wait this long for another apply to finish (default 5)
      --break-lock     take over the lock whoever holds it: for a lock another host left on a
                       shared volume (one from this host whose process exited, or older than
                       60 min from any host, is taken over without it)
      --no-reload      do not run reload hooks (a first install, before the services exist);
                       they stay owed and the next apply without it runs them
      --json           print the result as JSON
      --debug          show stack traces of unexpected errors

LAYOUT
  DIR/ca/ca.pem (0644)  DIR/ca/ca-key.pem (0600; absent while kept offline)
  DIR/ca/intermediate.pem (0644)  DIR/ca/intermediate-key.pem (0600): with ca.intermediate
  DIR/services/NAME/{cert.pem, key.pem (0600), ca.pem}; split services add client.pem, client-key.pem

EXAMPLES
  mtlskit apply
  mtlskit apply -f examples/serviceradar.yaml --pki /etc/serviceradar/pki
  mtlskit apply --reissue gateway,agent
  mtlskit apply --ca-key /media/usb/root-ca-key.pem
  mtlskit apply --json | jq '.certificates[] | select(.action != "keep")'

${EXIT_CODES_TEXT}
`;

/**
 * writeOutputs checks the manifest's outputs before anything is issued (exit 2, nothing written)
 * and returns apply's afterWrite that writes them: after issuing and before the reload hooks, so
 * services reload complete copies; files that match are not rewritten. Shared by apply and
 * `mtlskit ca rotate`.
 */
export function writeOutputs(
  io: Io,
  loaded: LoadedManifest,
  pki: string,
  json: boolean,
): { afterWrite: () => void; exported: () => ReturnType<typeof exportOutputs> } {
  const outputs = loaded.manifest.outputs ?? [];
  checkOutputs(loaded, pki, outputs);
  let exported: ReturnType<typeof exportOutputs> = [];
  const drawExport = progressLine(io, 50);
  return {
    afterWrite: () =>
      void (exported =
        outputs.length > 0
          ? exportOutputs(
              loaded,
              pki,
              outputs,
              json ? {} : { onProgress: (o, done, total) => drawExport(`${o.format} ${o.dir}:`, done, total) },
            )
          : []),
    exported: () => exported,
  };
}

/** applyCommand runs `mtlskit apply`. */
export async function applyCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = applyFlags(args);
  if (values.help) return (io.out(APPLY_HELP), 0);
  const reissue = splitNames(values.reissue, positionals);
  if (positionals.length > 0 && values.reissue === undefined)
    throw new UsageError(
      `mtlskit apply: unexpected argument ${JSON.stringify(positionals[0])}; did you mean --reissue ${positionals[0]}?`,
    );
  if (values["reissue-all"] && reissue.length > 0)
    throw new UsageError("mtlskit apply: flag --reissue is incompatible with --reissue-all; use one");
  const lockWait = Number(values["lock-wait"]);
  if (!Number.isFinite(lockWait) || lockWait < 0)
    throw new UsageError(
      `mtlskit apply: --lock-wait must be a number of seconds; got ${JSON.stringify(values["lock-wait"])}`,
    );
  const text = readManifestText(values.file);
  // A large manifest's worker threads start now: their start-up, and the keys they make ahead, overlap parsing and planning.
  const pool = warmApply(text, { dir: values.pki });
  try {
    return await applyText(io, values, { text, reissue, lockWait, pool });
  } finally {
    await pool?.close();
  }
}

type ApplyFlags = ReturnType<typeof applyFlags>;

function applyFlags(args: string[]) {
  return flags("apply", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        ...MANIFEST_FLAGS,
        ...LEDGER_FLAG,
        ...REISSUE_FLAGS,
        "lock-wait": { type: "string", default: "5" },
        "no-reload": { type: "boolean" },
        "break-lock": { type: "boolean" },
        "ca-key": { type: "string" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
}

/** applyText runs apply on the manifest's text, read (and the pool warmed) by applyCommand. */
async function applyText(
  io: Io,
  values: ApplyFlags["values"],
  run: { text: string; reissue: string[]; lockWait: number; pool: WarmPool | undefined },
): Promise<number> {
  const { reissue, lockWait } = run;
  const loaded = parseManifest(run.text, values.file);
  const caKeyFile = values["ca-key"];
  const caKey = caKeyFile === undefined ? undefined : { key: loadCaKeyFile(caKeyFile), file: caKeyFile };
  if (!values.json) renderWarnings(io, loaded.warnings);
  // Exports are checked before anything is issued (an output inside the PKI, a missing passphrase: exit 2, nothing written): writeOutputs.
  const started = performance.now();
  let lastDraw = 0;
  const outputsWriter = writeOutputs(io, loaded, values.pki, values.json === true);
  // Read only (never created here): csr services issued online are reported as such, not as awaiting a CSR.
  const online = await readOnlineOrWarn(loaded.manifest, values.pki, (t) => io.err(`warning: ${t}\n`), values.ledger);
  const result = await apply(loaded, values.pki, {
    ...(online ? { online } : {}),
    afterWrite: outputsWriter.afterWrite,
    hooks: !values["no-reload"],
    reissue,
    reissueAll: values["reissue-all"] ?? false,
    lockWaitMs: lockWait * 1000,
    breakLock: values["break-lock"] ?? false,
    ...(caKey ? { caKey } : {}),
    ...(run.pool ? { pool: run.pool } : {}),
    onNote: (text) => io.err(`note: ${text}\n`),
    onProgress: (done, total) => {
      if (!io.errTty || values.json || total < 200) return; // drawn on stderr, so it is stderr that must be a terminal
      const t = performance.now();
      if (t - lastDraw < 100 && done < total) return;
      lastDraw = t;
      io.err(`\r  issuing ${done}/${total}${done === total ? "\n" : ""}`);
    },
  });
  const secs = ((performance.now() - started) / 1000).toFixed(2);
  if (values.json) {
    io.out(
      JSON.stringify(
        {
          ...planJson(result.plan),
          issued: result.issued,
          kept: result.kept,
          caCreated: result.caCreated,
          seconds: Number(secs),
          outputs: exportJson(outputsWriter.exported()),
          hooks: result.hooks,
        },
        null,
        2,
      ) + "\n",
    );
    return hookFailure(io, result.hooks);
  }
  io.out(`mtlskit apply: ${values.file} -> ${values.pki}\n`);
  if (result.plan.certs.length <= 200)
    renderPlan(io, result.plan, { create: "created", reissue: "reissued", keep: "kept" });
  else renderPlanWarnings(io, result.plan);
  const ca = path.join(values.pki, "ca", "ca.pem");
  const rewritten = staleBundles(result.plan).length;
  const what =
    result.issued === 0 && rewritten === 0
      ? "Nothing to do: every certificate matches the manifest"
      : result.issued === 0
        ? `${rewritten} trust bundle${rewritten === 1 ? "" : "s"} rewritten`
        : `${result.issued} certificate${result.issued === 1 ? "" : "s"} issued${rewritten ? `, ${rewritten} trust bundle${rewritten === 1 ? "" : "s"} rewritten` : ""}`;
  io.out(
    `${paint(io, "bold", what)}, ${result.kept} kept${result.caCreated ? ", new CA created" : ""}, in ${secs}s.\n`,
  );
  io.out(
    `Trust anchor: ${ca}. Each service's files are in ${path.join(values.pki, "services", "NAME")}/ (cert.pem, key.pem, ca.pem).\n`,
  );
  if (crlRewritten(result.plan))
    io.out(
      `CRL re-signed (${result.plan.crl.reason}): ${path.join(values.pki, "ca", "crl.pem")}, ${result.plan.crl.entries.length} revoked.\n`,
    );
  renderExternalNote(io, result.plan);
  renderExports(io, outputsWriter.exported(), { nextStep: false });
  for (const h of result.hooks)
    io.out(
      `Reload ${h.service}: ${h.command}: ${h.ok ? paint(io, "green", "ok") : paint(io, "red", `FAILED, ${h.error}`)}\n`,
    );
  return hookFailure(io, result.hooks);
}

/**
 * hookFailure turns failed reload hooks into exit 3: the certificates are written and valid, but
 * a service runs on its old ones until it reloads. The next apply runs those hooks again.
 */
export function hookFailure(io: Io, hooks: readonly HookRecord[]): number {
  const failed = hooks.filter((h) => !h.ok);
  if (failed.length === 0) return EXIT.ok;
  io.err(
    `${paintErr(io, "red", "error:")} the reload hook${failed.length === 1 ? "" : "s"} of ${failed.map((h) => h.service).join(", ")} failed (${failed.map((h) => `${h.service}: ${h.error}`).join("; ")}). The new files are in place; fix the hook and run apply again: it retries ${failed.length === 1 ? "it" : "them"}.\n`,
  );
  return EXIT.failed;
}
