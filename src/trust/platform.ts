/**
 * PLATFORMS: the one table of system trust stores mtlskit knows: where an anchor goes, which
 * command rebuilds the store, and which bundle clients read. detectPlatform picks one from facts
 * about the machine (pure: the facts are gathered in facts.ts).
 */

/** PlatformName is a trust store family `--platform` accepts. */
export type PlatformName = "debian" | "rhel" | "macos" | "windows";

/** PLATFORM_NAMES lists them in the order help prints them. */
export const PLATFORM_NAMES: readonly PlatformName[] = ["debian", "rhel", "macos", "windows"];

/** SystemStore is a store mtlskit changes itself: a directory of anchors and a command that rebuilds the bundle. */
export interface SystemStore {
  kind: "system";
  label: string;
  /** anchorDir holds administrator-added CAs; the package that owns it creates it. */
  anchorDir: string;
  /** ext is the file extension the rebuild command picks up. */
  ext: string;
  /** tool is the rebuild command; install runs `install`, uninstall runs `uninstall`. */
  tool: string;
  install: readonly string[];
  uninstall: readonly string[];
  /** uninstallWhy says why uninstall runs what it runs. */
  uninstallWhy: string;
  /** afterUninstall, when set, is a command run after `uninstall` (argv for the entry `name`), and why. */
  afterUninstall?: { argv: (name: string) => string[]; why: string };
  /** bundle is the PEM bundle OpenSSL, curl and most runtimes read by default. */
  bundle: string;
  /** packageHint installs the tool. */
  packageHint: string;
}

/** ManualStore is a store mtlskit only prints steps for (it cannot be tested here). */
export interface ManualStore {
  kind: "manual";
  label: string;
}

/**
 * PLATFORMS maps each platform to its store. Debian's uninstall runs `--fresh` (measured on
 * Debian 12, ca-certificates 20230311): after the anchor file is removed, a plain run rebuilds
 * the bundle but reports "0 added, 0 removed", so it leaves the dangling
 * /etc/ssl/certs/NAME.pem and its hash link (OpenSSL's CApath lookup); `--fresh` rebuilds every
 * link. Neither run tells the hooks in /etc/ca-certificates/update.d that a local CA left (they
 * hear "-PATH" only for CAs disabled in /etc/ca-certificates.conf, and are never passed --fresh),
 * so ca-certificates-java's keystore kept `debian:NAME.pem` (measured): uninstall then sends each
 * hook the "-/etc/ssl/certs/NAME.pem" line update-ca-certificates would have sent.
 */
export const PLATFORMS: Record<PlatformName, SystemStore | ManualStore> = {
  debian: {
    kind: "system",
    label: "Debian/Ubuntu",
    anchorDir: "/usr/local/share/ca-certificates",
    ext: ".crt",
    tool: "update-ca-certificates",
    install: ["update-ca-certificates"],
    uninstall: ["update-ca-certificates", "--fresh"],
    uninstallWhy: "--fresh: a plain run leaves a dangling /etc/ssl/certs link and hash link",
    afterUninstall: {
      argv: (name) => [
        "sh",
        "-c",
        `for hook in $(run-parts --test /etc/ca-certificates/update.d 2>/dev/null); do echo -/etc/ssl/certs/${name}.pem | "$hook" || echo "E: $hook exited with code $?"; done`,
      ],
      why: "tells the hooks (Java's keystore) the CA left; update-ca-certificates never does for a local CA",
    },
    bundle: "/etc/ssl/certs/ca-certificates.crt",
    packageHint: "apt-get install ca-certificates",
  },
  rhel: {
    kind: "system",
    label: "RHEL/Fedora",
    anchorDir: "/etc/pki/ca-trust/source/anchors",
    ext: ".pem",
    tool: "update-ca-trust",
    install: ["update-ca-trust", "extract"],
    uninstall: ["update-ca-trust", "extract"],
    uninstallWhy: "rebuilds the extracted bundles without the anchor",
    bundle: "/etc/pki/tls/certs/ca-bundle.crt",
    packageHint: "dnf install ca-certificates",
  },
  macos: { kind: "manual", label: "macOS" },
  windows: { kind: "manual", label: "Windows" },
};

/** MachineFacts are what detectPlatform looks at. */
export interface MachineFacts {
  /** os is process.platform. */
  os: string;
  /** tools maps a rebuild command's name to its path, when it is installed. */
  tools: Partial<Record<string, string>>;
  /** osRelease is /etc/os-release as key/value pairs (empty when missing). */
  osRelease: Record<string, string>;
}

/**
 * detectPlatform names the machine's trust store: by OS, then by which rebuild command exists,
 * then by /etc/os-release (so a Debian without ca-certificates is still "debian", and the
 * missing tool is named). Undefined when nothing fits.
 */
export function detectPlatform(f: MachineFacts): PlatformName | undefined {
  if (f.os === "darwin") return "macos";
  if (f.os === "win32") return "windows";
  if (f.tools["update-ca-certificates"]) return "debian";
  if (f.tools["update-ca-trust"]) return "rhel";
  const family = `${f.osRelease.ID ?? ""} ${f.osRelease.ID_LIKE ?? ""}`.toLowerCase().split(/\s+/);
  if (family.some((w) => w === "debian" || w === "ubuntu")) return "debian";
  if (family.some((w) => w === "rhel" || w === "fedora" || w === "centos")) return "rhel";
  return undefined;
}

/** parseOsRelease reads os-release(5) text: KEY=value lines, values optionally quoted. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let v = m[2]!;
    if (/^(["']).*\1$/.test(v)) v = v.slice(1, -1).replace(/\\(["\\$`])/g, "$1");
    out[m[1]!] = v;
  }
  return out;
}
