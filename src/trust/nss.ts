/**
 * NSS, the certificate database Chrome and Chromium read on Linux (`sql:$HOME/.pki/nssdb`),
 * through NSS's own `certutil`: the command lines, and parsing what it lists.
 */

/** NSS_TRUST is the trust mtlskit gives its CA: C = a trusted CA for TLS servers (SSL), nothing for e-mail or code. */
export const NSS_TRUST = "C,,";

/** RunAs is the user a command runs as: the owner of the NSS database, never root on a user's files. */
export interface RunAs {
  uid: number;
  gid: number;
  user: string;
  home: string;
}

/** NssState is what a database holds under the CA's nickname. */
export interface NssState {
  /** sha256 of the certificate under the nickname (lowercase hex). */
  sha256: string;
  /** trust is its trust attributes as certutil lists them (`C,,`), or undefined when unlisted. */
  trust: string | undefined;
}

/** NssFacts describe the NSS database install and uninstall would change. */
export type NssFacts =
  | { use: false; reason: string }
  | {
      use: true;
      /** certutil is its path. */
      certutil: string;
      /** db is the database directory (without `sql:`). */
      db: string;
      /** as is the database's owner when that is not who runs mtlskit (sudo). */
      as: RunAs | undefined;
      /** current is what the database holds under the nickname; undefined when nothing. */
      current: NssState | undefined;
    };

/** nssAdd is the command that adds the CA as a trusted TLS CA under `nickname`. */
export const nssAdd = (db: string, nickname: string, file: string): string[] => [
  "certutil",
  "-d",
  `sql:${db}`,
  "-A",
  "-t",
  NSS_TRUST,
  "-n",
  nickname,
  "-i",
  file,
];

/** nssDelete is the command that removes the certificate named `nickname`. */
export const nssDelete = (db: string, nickname: string): string[] => [
  "certutil",
  "-d",
  `sql:${db}`,
  "-D",
  "-n",
  nickname,
];

/** nssExport prints the certificate named `nickname` as PEM (exit 255 when there is none). */
export const nssExport = (db: string, nickname: string): string[] => [
  "certutil",
  "-d",
  `sql:${db}`,
  "-L",
  "-n",
  nickname,
  "-a",
];

/** nssList lists every nickname with its trust attributes. */
export const nssList = (db: string): string[] => ["certutil", "-d", `sql:${db}`, "-L"];

/**
 * parseNssList reads `certutil -L` output into nickname -> trust attributes. Rows are the
 * nickname, padding, and the attributes (`C,,`, `CT,C,C`, `u,u,u`) as the last word; the two
 * header lines are skipped.
 */
export function parseNssList(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^(.*\S)\s+([a-zA-Z]*,[a-zA-Z]*,[a-zA-Z]*)\s*$/.exec(line);
    if (!m || /^Certificate Nickname/.test(line)) continue;
    out.set(m[1]!.trim(), m[2]!);
  }
  return out;
}

/** NSS_PACKAGE_HINT installs certutil. */
export const NSS_PACKAGE_HINT = "apt-get install libnss3-tools, or dnf install nss-tools";

/**
 * nssElsewhere is why NSS is not a step when the plan is for another machine (`--platform` other
 * than this one's, or this one's unknown): whether that machine has certutil and a database is not
 * known here, so the command is printed as a skipped step with what it needs, never as a step.
 */
export function nssElsewhere(
  label: string,
  action: "install" | "uninstall",
  db: string,
  nickname: string,
  file: string,
): string {
  const argv = action === "install" ? nssAdd(db, nickname, file) : nssDelete(db, nickname);
  return `not planned for another machine (${label}): if it has certutil (${NSS_PACKAGE_HINT}) and an NSS database, run there as its owner: ${argv.join(" ")}`;
}
