/**
 * gen-docs writes docs/checks.md, the reference of every finding code, from CODES (run by
 * `npm run build`; a test keeps the committed file equal to `checksMarkdown()`).
 */
import { writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { CODES } from "./codes.ts";

/** checksMarkdown renders CODES as one Markdown table: code, severity, scope, title, why. */
export function checksMarkdown(): string {
  const cell = (s: string) => s.replace(/\|/g, "\\|");
  return [
    "# `mtlskit check` finding codes",
    "",
    "<!-- Generated from src/check/codes.ts by src/check/gen-docs.ts (`npm run build`); do not edit. -->",
    "",
    "Every finding of `mtlskit check` carries one of these codes. Codes are stable: a code is never",
    "renamed or reused. An `error` means a handshake will fail or a key is exposed, and makes `check`",
    "exit 1; a `warning` means something will break later or a strict peer may refuse what a lenient",
    "one accepts. The scope says what a finding is about: one certificate, a CA in a trust bundle or",
    "chain, a service's files as deployed, or one declared connection. `mtlskit check --codes` prints",
    "the same list.",
    "",
    "| code | severity | scope | title | why |",
    "|---|---|---|---|---|",
    ...Object.entries(CODES).map(
      ([code, i]) => `| \`${code}\` | ${i.severity} | ${i.scope} | ${cell(i.title)} | ${cell(i.why)} |`,
    ),
    "",
  ].join("\n");
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const out = process.argv[2];
  if (!out) throw new Error("usage: gen-docs OUT.md");
  writeFileSync(out, checksMarkdown());
}
