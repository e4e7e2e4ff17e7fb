/**
 * planTrust (pure): what `trust install` or `trust uninstall` does on a platform, as steps that
 * can be printed (`--dry-run`, macOS and Windows) or executed (execute.ts), from facts gathered
 * at the edge (facts.ts). Why a plan cannot run here (not root, a tool missing) is data too:
 * `blockers`, turned into one error by `refuseBlocked` before anything is touched.
 */
import { FailedError } from "../errors.ts";
import { colonHex, type TrustAnchor } from "./anchor.ts";
import { NSS_TRUST, nssAdd, nssDelete, type NssFacts, type RunAs } from "./nss.ts";
import { PLATFORMS, type PlatformName, type SystemStore } from "./platform.ts";

/** TrustAction is what the command was asked to do. */
export type TrustAction = "install" | "uninstall";

/** TrustStep is one change mtlskit makes itself; `store` says which store it changes. */
export type TrustStep =
  | { kind: "write"; store: "system"; file: string; mode: number; pem: string; from: string; sourceIsPem: boolean }
  | { kind: "remove"; store: "system"; file: string }
  | {
      kind: "run";
      store: "system" | "nss";
      argv: string[];
      bin: string | undefined;
      as: RunAs | undefined;
      why?: string;
    };

/** ManualStep is a command the user runs (macOS, Windows): a comment line and the command. */
export interface ManualStep {
  comment: string;
  command: string;
}

/** SystemFacts are what the system store holds now (Debian, RHEL). */
export interface SystemFacts {
  /** anchorFileNow is the text of ANCHORDIR/mtlskit-NAME.EXT, undefined when it does not exist. */
  anchorFileNow: string | undefined;
  anchorDirExists: boolean;
  /** tool is the rebuild command's path, undefined when it is not installed. */
  tool: string | undefined;
  /** inBundle: the CA's SHA-256 is among the bundle's certificates. */
  inBundle: boolean;
}

/** TrustInput is everything planTrust needs; facts.ts gathers it. */
export interface TrustInput {
  action: TrustAction;
  platform: PlatformName;
  /** name is the store entry's name, `mtlskit-CLUSTER`. */
  name: string;
  /** anchor is the CA; install needs it, uninstall by name does not (except on macOS and Windows, which name it by fingerprint). */
  anchor: TrustAnchor | undefined;
  /** system facts, for Debian and RHEL. */
  system: SystemFacts | undefined;
  nss: NssFacts;
  /** uid of the process (undefined on Windows). */
  uid: number | undefined;
  /** commandLine is the command as typed, for the `sudo ...` hint. */
  commandLine: string;
}

/** TrustPlan is what one run does. */
export interface TrustPlan {
  action: TrustAction;
  platform: PlatformName;
  label: string;
  name: string;
  /** anchorFile and bundle: the system store's file for this CA and the bundle clients read (Debian, RHEL). */
  anchorFile: string | undefined;
  bundle: string | undefined;
  steps: TrustStep[];
  manual: ManualStep[];
  /** notes explain what is already done, or left alone, and why. */
  notes: string[];
  /** skipped names each store not changed and why (NSS without certutil). */
  skipped: string[];
  /** blockers are why the steps cannot run here; a dry run prints them, a real run refuses with them. */
  blockers: string[];
}

/** shQuote quotes a word for a POSIX shell when it needs it. */
export const shQuote = (s: string): string =>
  /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;

const psQuote = (s: string): string => (/^[A-Za-z0-9_:.\\/-]+$/.test(s) ? s : `'${s.replace(/'/g, "''")}'`);

/** renderStep writes a step as the shell command that does the same. */
export function renderStep(s: TrustStep): string {
  if (s.kind === "write") {
    const mode = s.mode.toString(8).padStart(4, "0");
    // The store receives the certificate alone; when the source has more text around it, openssl x509 is what strips it.
    return s.sourceIsPem
      ? `install -m ${mode} ${shQuote(s.from)} ${shQuote(s.file)}`
      : `openssl x509 -in ${shQuote(s.from)} -out ${shQuote(s.file)} && chmod ${mode} ${shQuote(s.file)}`;
  }
  if (s.kind === "remove") return `rm -f ${shQuote(s.file)}`;
  const cmd = s.argv.map(shQuote).join(" ");
  return s.as ? `sudo -u ${shQuote(s.as.user)} ${cmd}` : cmd;
}

/** needsRoot: the plan changes the system store. */
export const needsRoot = (p: TrustPlan): boolean => p.steps.some((s) => s.store === "system");

function systemPlan(input: TrustInput, store: SystemStore, plan: TrustPlan): void {
  const sys = input.system!;
  const file = plan.anchorFile!;
  const a = input.anchor;
  const run = (argv: readonly string[], why?: string, bin = sys.tool): TrustStep => ({
    kind: "run",
    store: "system",
    argv: [...argv],
    bin,
    as: undefined,
    ...(why ? { why } : {}),
  });
  if (input.action === "install") {
    const same = sys.anchorFileNow === a!.pem;
    if (same && sys.inBundle)
      plan.notes.push(`system: already installed: ${file} holds this CA and ${store.bundle} includes it`);
    else {
      if (!same) {
        plan.steps.push({
          kind: "write",
          store: "system",
          file,
          mode: 0o644,
          pem: a!.pem,
          from: a!.file,
          sourceIsPem: a!.source === a!.pem,
        });
        if (sys.anchorFileNow !== undefined)
          plan.notes.push(`system: ${file} exists and holds another certificate; it is replaced`);
      }
      plan.steps.push(run(store.install));
    }
  } else if (sys.anchorFileNow !== undefined) {
    if (a && sys.anchorFileNow !== a.pem)
      plan.notes.push(
        `system: ${file} holds a different certificate than ${a.file}; it is removed all the same (the name is mtlskit's)`,
      );
    plan.steps.push({ kind: "remove", store: "system", file });
    plan.steps.push(run(store.uninstall, store.uninstallWhy));
    if (store.afterUninstall)
      plan.steps.push(run(store.afterUninstall.argv(input.name), store.afterUninstall.why, "/bin/sh"));
  } else {
    plan.notes.push(`system: nothing to remove: ${file} does not exist`);
    if (sys.inBundle)
      plan.notes.push(
        `system: ${store.bundle} still includes this CA from another file: mtlskit did not put it there, so it is left alone (look in ${store.anchorDir} and /usr/share/ca-certificates)`,
      );
  }
  if (plan.steps.some((s) => s.store === "system")) {
    if (!sys.tool)
      plan.blockers.push(`${store.tool} is not installed; install it (${store.packageHint}), then run this again`);
    if (!sys.anchorDirExists && input.action === "install")
      plan.blockers.push(
        `${store.anchorDir} does not exist, so this is not ${store.label}'s trust store layout; install ca-certificates (${store.packageHint}), or print the steps for another platform with --platform NAME --dry-run`,
      );
    if (input.uid !== 0) {
      plan.blockers.push(
        `changing the system trust store needs root (it ${input.action === "install" ? "writes" : "removes"} ${file} and runs ${store.tool}); run: sudo ${input.commandLine}`,
      );
    }
  }
}

function nssPlan(input: TrustInput, plan: TrustPlan): void {
  const nss = input.nss;
  if (!nss.use) {
    plan.skipped.push(`NSS (browsers): ${nss.reason}`);
    return;
  }
  const run = (argv: string[]): TrustStep => ({ kind: "run", store: "nss", argv, bin: nss.certutil, as: nss.as });
  const where = `NSS ${nss.db}`;
  if (input.action === "install") {
    const a = input.anchor!;
    if (nss.current?.sha256 === a.sha256 && nss.current.trust === NSS_TRUST) {
      plan.notes.push(`${where}: already installed as ${plan.name} (trust ${NSS_TRUST})`);
      return;
    }
    if (nss.current && nss.current.sha256 !== a.sha256) {
      plan.notes.push(`${where}: ${plan.name} names another certificate; it is replaced`);
      plan.steps.push(run(nssDelete(nss.db, plan.name)));
    }
    // certutil reads the file as the database's owner: the system store's copy is world-readable, PKI/ca/ is not.
    plan.steps.push(run(nssAdd(nss.db, plan.name, plan.anchorFile ?? a.file)));
  } else if (nss.current) plan.steps.push(run(nssDelete(nss.db, plan.name)));
  else plan.notes.push(`${where}: nothing to remove: no certificate is named ${plan.name}`);
}

function manualPlan(input: TrustInput, plan: TrustPlan): void {
  const a = input.anchor!;
  const f = a.file;
  const sha1 = a.sha1.toUpperCase();
  if (input.platform === "macos") {
    const kc = "/Library/Keychains/System.keychain";
    plan.manual =
      input.action === "install"
        ? [
            {
              comment: `copy ${f} to the Mac, then, as an administrator, trust it for every user (System keychain, trusted as a root):`,
              command: `sudo security add-trusted-cert -d -r trustRoot -k ${kc} ${shQuote(f)}`,
            },
            { comment: "check (exit 0 when trusted):", command: `security verify-cert -c ${shQuote(f)}` },
          ]
        : [
            {
              comment:
                "as an administrator, remove its admin trust setting, then the certificate (named by its SHA-1):",
              command: `sudo security remove-trusted-cert -d ${shQuote(f)}`,
            },
            { comment: "", command: `sudo security delete-certificate -Z ${sha1} ${kc}` },
            { comment: "check (now fails):", command: `security verify-cert -c ${shQuote(f)}` },
          ];
  } else {
    const store = "Cert:\\LocalMachine\\Root";
    plan.manual =
      input.action === "install"
        ? [
            {
              comment: `copy ${f} to the machine, then in an Administrator command prompt (Trusted Root Certification Authorities, local machine):`,
              command: `certutil -addstore -f ROOT ${psQuote(f)}`,
            },
            {
              comment: "or in an Administrator PowerShell (name the copy .crt if it refuses .pem):",
              command: `Import-Certificate -FilePath ${psQuote(f)} -CertStoreLocation ${store}`,
            },
            { comment: "check (PowerShell; True when installed):", command: `Test-Path ${store}\\${sha1}` },
          ]
        : [
            {
              comment: "in an Administrator command prompt (the certificate is named by its SHA-1 thumbprint):",
              command: `certutil -delstore ROOT ${sha1}`,
            },
            { comment: "or in an Administrator PowerShell:", command: `Remove-Item ${store}\\${sha1}` },
            { comment: "check (PowerShell; False when removed):", command: `Test-Path ${store}\\${sha1}` },
          ];
  }
  plan.notes.push(`${plan.label}: mtlskit prints these steps and runs none of them (SHA-256 ${colonHex(a.sha256)})`);
}

/**
 * planTrust decides the steps of `trust install` or `trust uninstall`. Install writes the CA
 * (mode 0644) as ANCHORDIR/mtlskit-NAME.EXT and rebuilds the store, then adds it to the NSS
 * database when there is one; what is already in place is left as it is (a note says so).
 * Uninstall removes only what carries mtlskit's name. macOS and Windows get printed steps.
 */
export function planTrust(input: TrustInput): TrustPlan {
  const store = PLATFORMS[input.platform];
  const sys = store.kind === "system" ? store : undefined;
  if (input.action === "install" && !input.anchor)
    throw new FailedError("trust: install needs the CA certificate (this is a bug: the CLI reads it first)");
  const plan: TrustPlan = {
    action: input.action,
    platform: input.platform,
    label: store.label,
    name: input.name,
    anchorFile: sys ? `${sys.anchorDir}/${input.name}${sys.ext}` : undefined,
    bundle: sys?.bundle,
    steps: [],
    manual: [],
    notes: [],
    skipped: [],
    blockers: [],
  };
  if (!sys) {
    manualPlan(input, plan);
    return plan;
  }
  if (!input.system) throw new FailedError("trust: no facts about the system store (this is a bug)");
  systemPlan(input, sys, plan);
  nssPlan(input, plan);
  if (input.anchor && !input.anchor.selfSigned && input.action === "install") {
    plan.notes.push(
      `${input.anchor.file} is not self-signed: OpenSSL, curl and Go trust an intermediate in the store only with partial-chain verification, which they do not do by default; install its root instead`,
    );
  }
  return plan;
}

/** refuseBlocked throws (exit 3) when the plan cannot run here, naming every reason; nothing has been touched. */
export function refuseBlocked(plan: TrustPlan): void {
  if (plan.blockers.length === 0) return;
  throw new FailedError(
    `mtlskit trust ${plan.action}: ${plan.blockers.length === 1 ? plan.blockers[0] : `cannot run here:\n${plan.blockers.map((b) => `  - ${b}`).join("\n")}`}\n    (nothing was changed; add --dry-run to see every step)`,
  );
}
