/** `mtlskit plan`: what apply would do to each certificate, and why. Reads only. */
import { readOnlineOrWarn } from "../../check/online.ts";
import { loadManifest } from "../../manifest/index.ts";
import { caKeyRequest } from "../../plan/plan.ts";
import { readAndPlan } from "../../plan/read.ts";
import { parseArgs } from "node:util";
import { COMMON_FLAGS, flags } from "../args.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import type { Io } from "../output.ts";
import {
  MANIFEST_FLAGS,
  LEDGER_FLAG,
  LEDGER_FLAG_HELP,
  planJson,
  REISSUE_FLAGS,
  renderCsrNote,
  renderExternalNote,
  renderPlan,
  renderWarnings,
  splitNames,
  staleBundles,
} from "./shared.ts";
import { UsageError } from "../../errors.ts";
import { nextStepText, summarize } from "../../ca/rotation.ts";

export const PLAN_HELP = `mtlskit plan: show what apply would create, keep or re-issue, and why. Writes nothing.

USAGE
  mtlskit plan [-f FILE] [--pki DIR] [--reissue NAME...] [--reissue-all] [--json]

Reasons: missing; spec changed (which fields); key type changed; validity changed; due for
renewal (inside renewBefore); expired; key does not match certificate; CA changed; key file
readable by others; --reissue; revoked (REASON) on DATE (\`mtlskit revoke\`). A CRL row says why
DIR/ca/crl.pem is re-signed: the revocation list changed, or half its nextUpdate has passed. A service with \`files\` (certificate files mtlskit did not make)
is one line with the action \`external\`: apply never writes them; \`mtlskit check\` judges them.
During a CA rotation (\`mtlskit ca rotate\`), plan ends with the phase, since when, and what the
next rotate step will change.
A service with \`csr: true\` (its key is made on its host) is one line with the action \`csr\`:
awaiting a CSR, signed, or due for renewal, with the \`mtlskit csr\` and \`mtlskit sign\` commands.

FLAGS
  -f, --file FILE      manifest (default mtlskit.yaml)
      --pki DIR        PKI directory (default ./pki)
${LEDGER_FLAG_HELP}
      --reissue NAME   plan re-issuing these services (repeat, or a,b)
      --reissue-all    plan re-issuing every service certificate
      --json           print the plan as JSON

EXAMPLES
  mtlskit plan
  mtlskit plan -f examples/netsy.yaml --pki ./netsy-pki --json

${EXIT_CODES_TEXT}
`;

/** planCommand runs `mtlskit plan`. */
export async function planCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("plan", () =>
    parseArgs({
      args,
      options: { ...COMMON_FLAGS, ...MANIFEST_FLAGS, ...LEDGER_FLAG, ...REISSUE_FLAGS },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(PLAN_HELP), 0);
  const reissue = splitNames(values.reissue, positionals);
  if (positionals.length > 0 && values.reissue === undefined)
    throw new UsageError(`mtlskit plan: unexpected argument ${JSON.stringify(positionals[0])}`);
  if (values["reissue-all"] && reissue.length > 0)
    throw new UsageError("mtlskit plan: flag --reissue is incompatible with --reissue-all; use one");
  const loaded = loadManifest(values.file);
  const online = await readOnlineOrWarn(loaded.manifest, values.pki, (t) => io.err(`warning: ${t}\n`), values.ledger);
  const { plan } = readAndPlan(loaded, values.pki, {
    reissue,
    reissueAll: values["reissue-all"] ?? false,
    ...(online ? { online } : {}),
  });
  const rotation = plan.rotation?.record;
  const managed = loaded.manifest.services.filter((s) => !s.files).map((s) => s.name);
  if (values.json) {
    const json = planJson(plan);
    io.out(
      JSON.stringify(
        rotation ? { ...json, rotation: { ...summarize(rotation, plan.now, managed), record: rotation } } : json,
        null,
        2,
      ) + "\n",
    );
    return 0;
  }
  renderWarnings(io, loaded.warnings);
  io.out(`mtlskit plan: ${values.file} -> ${values.pki}\n`);
  renderPlan(io, plan, { create: "create", reissue: "reissue", keep: "keep" });
  const bundles = staleBundles(plan).length;
  const n =
    plan.certs.filter((c) => c.action !== "keep").length +
    (plan.ca.action === "create" ? 1 : 0) +
    (plan.intermediate && plan.intermediate.action !== "keep" ? 1 : 0);
  const todo = [
    n > 0 ? `${n} certificate${n === 1 ? "" : "s"} to issue` : "",
    bundles > 0 ? `${bundles} trust bundle${bundles === 1 ? "" : "s"} to rewrite` : "",
    plan.crl.action === "write" && plan.ca.action !== "create" ? "the CRL to sign" : "",
  ]
    .filter(Boolean)
    .join(" and ");
  const apply = `mtlskit apply -f ${values.file} --pki ${values.pki}`;
  const request = caKeyRequest(plan, apply);
  io.out(
    todo === ""
      ? "No changes. apply would change no file.\n"
      : request
        ? `${todo.charAt(0).toUpperCase()}${todo.slice(1)}. The CA key is needed: ${request}.\n`
        : `${todo.charAt(0).toUpperCase()}${todo.slice(1)}. Run \`${apply}\` to do it.\n`,
  );
  if (!request && plan.caKey === "offline")
    io.out("The CA key is offline; this apply needs nothing signed by it, so it runs without --ca-key.\n");
  renderExternalNote(io, plan);
  renderCsrNote(io, plan);
  // During a rotation: its phase, and what the next rotate step will change.
  if (rotation) io.out(`${nextStepText(rotation, managed)}\n`);
  return 0;
}
