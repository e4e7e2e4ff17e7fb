/** `mtlskit trust install|uninstall|status`: the CA into the system trust store and NSS, out again, and where it is. */
import { parseArgs } from "node:util";
import { EXIT, FailedError, UsageError } from "../../errors.ts";
import { readTextBounded, type ReadFileError } from "../../read-file.ts";
import { loadManifest } from "../../manifest/index.ts";
import { abs, LAYOUT } from "../../state/layout.ts";
import {
  colonHex,
  defaultNssDb,
  executeTrust,
  machinePlatform,
  nameFromSubject,
  nssElsewhere,
  nssFacts,
  parseAnchor,
  planTrust,
  PLATFORM_NAMES,
  PLATFORMS,
  refuseBlocked,
  refuseExpired,
  renderStep,
  shQuote,
  systemFacts,
  trustName,
  trustStatus,
  type NssFacts,
  type PlatformName,
  type SystemFacts,
  type TrustAnchor,
  type TrustPlan,
} from "../../trust/index.ts";
import { COMMON_FLAGS, flags } from "../args.ts";
import { paint, type Io } from "../output.ts";
import { renderWarnings } from "./shared.ts";

export const TRUST_HELP = `mtlskit trust: put the CA into the system trust store (and the browsers' NSS database), take it out, or say where it is.

USAGE
  mtlskit trust install   [-f FILE] [--pki DIR] [--dry-run] [--platform P] [--nssdb DIR] [--no-nss]
  mtlskit trust uninstall [-f FILE] [--pki DIR] [--dry-run] [--platform P] [--nssdb DIR] [--no-nss]
  mtlskit trust status    [-f FILE] [--pki DIR]
  mtlskit trust ACTION --ca CA.pem [--name NAME] ...     (any PEM CA, no manifest)

The CA is the manifest's PKI/ca/ca.pem (an imported CA's root when ca.import is used), stored
under the name mtlskit-CLUSTER. install refuses a certificate that is not a CA (basicConstraints
CA:TRUE) or that has expired.
  Debian/Ubuntu  writes /usr/local/share/ca-certificates/mtlskit-CLUSTER.crt (0644) and runs
                 update-ca-certificates; uninstall removes it and runs update-ca-certificates --fresh
                 (a plain run leaves dangling links in /etc/ssl/certs and Java's keystore untouched)
  RHEL/Fedora    /etc/pki/ca-trust/source/anchors/mtlskit-CLUSTER.pem and update-ca-trust extract
  NSS            when certutil and the database exist (default ~/.pki/nssdb, the sudo user's under
                 sudo, changed as that user): certutil -A -t C,, -n mtlskit-CLUSTER; -D to remove
  macOS, Windows the exact commands are printed (security add-trusted-cert; certutil -addstore /
                 Import-Certificate), never run
The platform is detected (update-ca-certificates or update-ca-trust, then /etc/os-release).
Changing the system store needs root: run install and uninstall with sudo.

FLAGS
  -f, --file FILE      manifest (default mtlskit.yaml); its cluster names the entry
      --pki DIR        PKI directory holding ca/ca.pem (default ./pki)
      --ca FILE        a PEM CA certificate instead of a manifest's (with --name, else from its CN)
      --name NAME      the entry is mtlskit-NAME (default: the cluster)
      --dry-run        print the exact files and commands, change nothing (no root needed)
      --platform P     debian, rhel, macos or windows: print that platform's steps (with --dry-run
                       for debian and rhel when this machine is another; NSS is then a skipped
                       step with the certutil command to run there)
      --nssdb DIR      the NSS database to change (default ~/.pki/nssdb)
      --no-nss         leave NSS databases alone

EXAMPLES
  sudo mtlskit trust install                     # curl, openssl, wget, Python, Go now trust the CA
  mtlskit trust install --dry-run                # what it would do, as any user
  mtlskit trust status && curl https://api.internal:8443/
  sudo mtlskit trust uninstall
  mtlskit trust install --platform macos         # the commands to run on a Mac
  sudo mtlskit trust install --ca corp-root.pem --name corp

EXIT CODES
  0  done (install, uninstall, a dry run, printed steps); status: installed in every store found
  1  status: not installed (in the system bundle, or in the NSS database when there is one);
     install: the CA has expired
  2  invalid input: bad flags, an invalid manifest, a certificate that is not a CA
  3  could not do the job: not root, a missing tool or CA file, a command that failed
`;

const ACTIONS = ["install", "uninstall", "status"] as const;
type Action = (typeof ACTIONS)[number];

/** Source is where the CA and its name come from. */
interface Source {
  caFile: string;
  /** name before the mtlskit- prefix; undefined: from the CA's CN. */
  name: string | undefined;
  /** missingFix says what to do when caFile does not exist. */
  missingFix: string;
  missingIsInput: boolean;
}

function readAnchor(src: Source, required: boolean): TrustAnchor | undefined {
  let text: string;
  try {
    text = readTextBounded(src.caFile);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" && !required) return undefined;
    const msg = `mtlskit trust: cannot read the CA ${src.caFile}: ${code === "ENOENT" ? "no such file" : `it ${(e as ReadFileError).reason}`}; ${code === "ENOENT" ? src.missingFix : code === "EACCES" ? "run as a user who may read it (sudo)" : code === "ENOTREG" || code === "EISDIR" || code === "EFBIG" ? "name the CA certificate's PEM file" : "check the path"}`;
    if ((code === "ENOENT" || code === "ENOTREG" || code === "EISDIR" || code === "EFBIG") && src.missingIsInput)
      throw new UsageError(msg);
    throw new FailedError(msg, { cause: e });
  }
  return parseAnchor(text, src.caFile);
}

/** trustCommand runs `mtlskit trust`. */
export async function trustCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("trust", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        file: { type: "string", short: "f" },
        pki: { type: "string" },
        ca: { type: "string" },
        name: { type: "string" },
        "dry-run": { type: "boolean" },
        platform: { type: "string" },
        nssdb: { type: "string" },
        "no-nss": { type: "boolean" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(TRUST_HELP), EXIT.ok);
  const action = positionals[0] as Action | undefined;
  if (action === undefined || !ACTIONS.includes(action)) {
    throw new UsageError(
      `mtlskit trust: ${action === undefined ? "missing the action" : `unknown action ${JSON.stringify(action)}`}; use install, uninstall or status. Run \`mtlskit trust --help\` for usage.`,
    );
  }
  if (positionals.length > 1)
    throw new UsageError(
      `mtlskit trust ${action}: unexpected argument ${JSON.stringify(positionals[1])}; give the CA with --ca FILE or the manifest with -f FILE`,
    );
  if (values.ca !== undefined && (values.file !== undefined || values.pki !== undefined)) {
    throw new UsageError(
      `mtlskit trust: flag --ca is incompatible with ${values.file !== undefined ? "-f/--file" : "--pki"}: --ca names the CA file directly, -f and --pki find it in a PKI; use one`,
    );
  }
  const platformFlag = values.platform as PlatformName | undefined;
  if (platformFlag !== undefined && !PLATFORM_NAMES.includes(platformFlag)) {
    throw new UsageError(
      `mtlskit trust: --platform must be one of ${PLATFORM_NAMES.join(", ")}; got ${JSON.stringify(values.platform)}`,
    );
  }
  const dryRun = values["dry-run"] === true;
  if (action === "status" && (dryRun || values["no-nss"]))
    throw new UsageError(
      `mtlskit trust status: flag --${dryRun ? "dry-run" : "no-nss"} applies to install and uninstall only`,
    );

  // Where the CA and the name come from.
  let src: Source;
  if (values.ca !== undefined) {
    src = {
      caFile: values.ca,
      name: values.name,
      missingFix: "give the path of a PEM CA certificate",
      missingIsInput: true,
    };
  } else {
    const file = values.file ?? "mtlskit.yaml";
    const pki = values.pki ?? "./pki";
    const loaded = loadManifest(file);
    renderWarnings(io, loaded.warnings);
    src = {
      caFile: abs(pki, LAYOUT.caCert),
      name: values.name ?? loaded.manifest.cluster,
      missingFix: `run mtlskit apply -f ${file} --pki ${pki} first (it creates the CA)`,
      missingIsInput: false,
    };
  }

  // Which platform.
  const detected = machinePlatform();
  const platform = platformFlag ?? detected;
  if (platform === undefined) {
    throw new FailedError(
      `mtlskit trust: cannot tell which trust store this machine uses (no update-ca-certificates or update-ca-trust, and /etc/os-release names neither Debian/Ubuntu nor RHEL/Fedora); print the steps for one with --platform ${PLATFORM_NAMES.join("|")} --dry-run`,
    );
  }
  const store = PLATFORMS[platform];
  const foreign = platform !== detected;
  if (foreign && store.kind === "system" && (action === "status" || !dryRun)) {
    throw new UsageError(
      `mtlskit trust ${action}: --platform ${platform} is not this machine (${detected ?? "unknown"})${action === "status" ? "; status reads this machine's stores only" : `; add --dry-run to print its steps`}`,
    );
  }

  const anchor = readAnchor(src, action !== "uninstall" || store.kind === "manual");
  if (action === "install") refuseExpired(anchor!, new Date());
  const base = src.name ?? nameFromSubject(anchor?.commonName);
  if (base === undefined)
    throw new UsageError(
      `mtlskit trust: cannot make a name from ${src.caFile}'s subject (${anchor?.subject ?? "unreadable"}); give --name NAME`,
    );
  const name = trustName(base);

  const as = (to: Action, drop: string[] = []) => {
    const i = args.indexOf(action);
    return `mtlskit trust ${args
      .map((w, j) => (j === i ? to : w))
      .filter((w) => !drop.includes(w))
      .map(shQuote)
      .join(" ")}`;
  };
  if (action === "status") return statusOf(io, platform, name, anchor!, values.nssdb, `sudo ${as("install")}`);

  const nss: NssFacts =
    store.kind === "manual"
      ? { use: false, reason: "not used" }
      : values["no-nss"]
        ? { use: false, reason: "--no-nss" }
        : foreign
          ? {
              use: false,
              reason: nssElsewhere(
                store.label,
                action,
                values.nssdb ?? "$HOME/.pki/nssdb",
                name,
                `${store.anchorDir}/${name}${store.ext}`,
              ),
            }
          : nssFacts(values.nssdb ?? defaultNssDb(), name);
  let system: SystemFacts | undefined;
  if (store.kind === "system") {
    system = foreign
      ? { anchorFileNow: undefined, anchorDirExists: true, tool: store.tool, inBundle: false }
      : systemFacts(platform, name, anchor?.sha256);
  }
  const plan = planTrust({
    action,
    platform,
    name,
    anchor,
    system,
    nss,
    uid: process.getuid?.(),
    commandLine: as(action),
  });

  renderHead(io, plan, anchor);
  if (store.kind === "manual") {
    for (const m of plan.manual)
      io.out(`${m.comment ? `  ${paint(io, "dim", `# ${m.comment}`)}\n` : ""}  ${m.command}\n`);
    io.out(`\n${plan.notes.join("\n")}.\n`);
    return EXIT.ok;
  }
  if (dryRun) {
    io.out(plan.steps.length ? `Would run, in order (--dry-run: nothing is changed):\n` : "Nothing to do.\n");
    for (const s of plan.steps)
      io.out(`  ${renderStep(s)}${s.kind === "run" && s.why ? `    ${paint(io, "dim", `# ${s.why}`)}` : ""}\n`);
    renderNotes(io, plan);
    for (const b of plan.blockers) io.out(`  ${paint(io, "yellow", "would refuse:")} ${b}\n`);
    return EXIT.ok;
  }
  refuseBlocked(plan);
  if (plan.steps.length) io.out(`${action === "install" ? "Installing" : "Removing"}:\n`);
  executeTrust(plan, (r) =>
    io.out(
      `  ${paint(io, "green", "done")} ${renderStep(r.step)}${r.summary ? paint(io, "dim", `    (${r.summary})`) : ""}\n`,
    ),
  );
  renderNotes(io, plan);
  return afterwards(io, plan, anchor, {
    undo: `sudo ${as(action === "install" ? "uninstall" : "install")}`,
    status: as("status", ["--no-nss"]),
  });
}

function renderHead(io: Io, plan: TrustPlan, anchor: TrustAnchor | undefined): void {
  io.out(`mtlskit trust ${plan.action}: ${plan.name} on ${plan.label}\n`);
  if (anchor)
    io.out(
      `  CA       ${anchor.subject} (${anchor.file})\n  SHA-256  ${colonHex(anchor.sha256)}\n  expires  ${anchor.notAfter.toISOString().slice(0, 10)}\n`,
    );
  io.out("\n");
}

function renderNotes(io: Io, plan: TrustPlan): void {
  if (plan.notes.length + plan.skipped.length > 0) io.out("\n");
  for (const n of plan.notes) io.out(`  ${paint(io, "dim", "note:")} ${n}\n`);
  for (const s of plan.skipped) io.out(`  ${paint(io, "yellow", "skipped")} ${s}\n`);
}

/** afterwards confirms the result in the bundle itself (the store's own rebuild decides), then says what changed and the next step. */
function afterwards(
  io: Io,
  plan: TrustPlan,
  anchor: TrustAnchor | undefined,
  next: { undo: string; status: string },
): number {
  const { action } = plan;
  const { undo, status } = next;
  if (anchor) {
    const inBundle = systemFacts(plan.platform, plan.name, anchor.sha256).inBundle;
    if (action === "install" && !inBundle)
      throw new FailedError(
        `mtlskit trust install: the steps ran, but ${plan.bundle} does not include the CA; look at ${plan.anchorFile} and run the store's rebuild command by hand to see its output`,
      );
    if (action === "uninstall" && inBundle && plan.steps.some((s) => s.kind === "remove"))
      throw new FailedError(
        `mtlskit trust uninstall: ${plan.anchorFile} is gone, but ${plan.bundle} still includes the CA: another file in the store holds it`,
      );
  }
  if (action === "install") {
    io.out(
      `\n${paint(io, "green", "Installed.")} Clients that read ${plan.bundle} (curl, openssl, wget, git, Python, Go) trust what this CA signs${plan.steps.some((s) => s.store === "nss") || plan.notes.some((n) => n.startsWith("NSS")) ? "; so do Chrome and Chromium" : ""}. Node.js keeps its own list: NODE_EXTRA_CA_CERTS=${plan.bundle}.\n`,
    );
    io.out(`Check: ${status}. Undo: ${undo}.\n`);
  } else {
    io.out(
      `\n${paint(io, "green", plan.steps.length ? "Removed." : "Not installed; nothing removed.")} Check: ${status}.\n`,
    );
  }
  return EXIT.ok;
}

function statusOf(
  io: Io,
  platform: PlatformName,
  name: string,
  anchor: TrustAnchor,
  nssdb: string | undefined,
  install: string,
): number {
  const store = PLATFORMS[platform];
  if (store.kind !== "system") {
    const plan = planTrust({
      action: "install",
      platform,
      name,
      anchor,
      system: undefined,
      nss: { use: false, reason: "" },
      uid: undefined,
      commandLine: "",
    });
    const check = plan.manual[plan.manual.length - 1]!;
    throw new FailedError(
      `mtlskit trust status: mtlskit cannot read the ${store.label} trust store; on that machine, ${check.comment.replace(/:$/, "")}: ${check.command}`,
    );
  }
  const sys = systemFacts(platform, name, anchor.sha256);
  const s = trustStatus({
    anchor,
    bundle: store.bundle,
    bundleText: sys.bundleText,
    anchorFile: `${store.anchorDir}/${name}${store.ext}`,
    anchorFileNow: sys.anchorFileNow,
    nss: nssFacts(nssdb ?? defaultNssDb(), name),
  });
  const word = (st: string) =>
    paint(io, st === "installed" ? "green" : st === "absent" ? "red" : "yellow", st.padEnd(9));
  io.out(
    `mtlskit trust status: ${name} on ${store.label}\n  CA       ${anchor.subject} (${anchor.file})\n  SHA-256  ${colonHex(anchor.sha256)}\n\n`,
  );
  io.out(
    `  system  ${word(s.system.state)}  ${s.system.bundle} ${s.system.state === "installed" ? "includes" : "does not include"} it; ${s.system.anchorFile}: ${s.system.anchorFileState}\n`,
  );
  io.out(
    `  nss     ${word(s.nss.state)}  ${s.nss.state === "skipped" ? s.nss.reason! : `${s.nss.db}${s.nss.state === "installed" ? ` holds it as ${name} (trust ${s.nss.trust})` : s.nss.reason ? `: ${s.nss.reason}` : ` has no ${name}`}`}\n`,
  );
  io.out(
    `\n${s.installed ? paint(io, "green", "Installed.") : `${paint(io, "red", "Not installed.")} Install: ${install}`}\n`,
  );
  return s.installed ? EXIT.ok : EXIT.findings;
}
