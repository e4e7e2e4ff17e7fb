/**
 * Finding: one thing `check` found, as data. Every finding names what it concerns (a
 * certificate, a CA, a service's files, a connection), the rule broken in words, and the fix.
 */
import { CODES, type Code, type Severity } from "./codes.ts";

/** About says what a finding concerns; output groups findings by it. */
export type About =
  /** a service's certificate: `id` is the slot id (`core`, `core/client`). */
  | { kind: "certificate"; service: string; id: string; file: string | undefined }
  /** a trust anchor or intermediate, named by subject and the file it was found in. */
  | { kind: "ca"; subject: string; file: string | undefined }
  /** a service's files as deployed (modes, owners, bundles). */
  | { kind: "service"; service: string }
  /** a declared connection: index in the manifest's list. */
  | { kind: "connection"; index: number; from: string; to: string; address: string };

/** Finding is one result of check. */
export interface Finding {
  code: Code;
  severity: Severity;
  about: About;
  /** message states what is wrong, with the values found. */
  message: string;
  /** fix is the command or change that repairs it. */
  fix: string;
}

/** finding builds a Finding with the code's severity from CODES. */
export function finding(code: Code, about: About, message: string, fix: string): Finding {
  return { code, severity: CODES[code].severity, about, message, fix };
}

/** aboutLabel names what a finding concerns in one short phrase: `core`, `core/client`, `gateway -> core @ 10.0.0.1`. */
export function aboutLabel(a: About): string {
  switch (a.kind) {
    case "certificate":
      return a.id;
    case "ca":
      return `CA ${a.subject}`;
    case "service":
      return a.service;
    case "connection":
      return `${a.from} -> ${a.to} @ ${a.address}`;
  }
}
