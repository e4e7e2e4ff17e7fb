/**
 * inspectText: everything in one input (PEM or DER) as items, pure; loadInspection reads a file
 * first and turns an unreadable path into a precise message instead of an exception.
 */
import { Material, type Cert } from "../check/index.ts";
import { MAX_FILE_BYTES, type ReadFileError, readFileBounded } from "../read-file.ts";
import { describeCertificate } from "./certificate.ts";
import { isPkcs12, LABELS, OTHER_LABELS, PKCS12, SHAPES, shapeOf, type Shape } from "./classify.ts";
import { describeCsr } from "./csr.ts";
import type { CertificateItem, Inspection, Item, Where } from "./item.ts";
import { describePrivateKey, describePublicKey } from "./key.ts";
import { linkChain } from "./links.ts";
import { legacyEncrypted } from "../pki/pem.ts";
import { scanInput, type Block } from "./scan.ts";

/** MAX_FILE_BYTES: larger files are refused (certificates and keys are kilobytes); the bound of every read (read-file.ts). */
export { MAX_FILE_BYTES };

const article = (label: string) => (/^(?:[AEIOU]|RSA |X509 )/.test(label) ? "an" : "a");
const clean = (e: unknown) => String((e as Error).message ?? e).replace(/^(?:x509: )?(?:der: )?/, "");

/** decodeRaw turns one framed block into an item; every failure becomes a problem item naming its place. */
function decodeRaw(
  raw: Block,
  where: Where,
  material: Material,
  now: Date,
  certs: { item: CertificateItem; cert: Cert }[],
): Item {
  const place = raw.line !== undefined ? `line ${raw.line}` : `byte ${raw.offset}`;
  const problem = (message: string): Item => ({ kind: "problem", ...where, message: `${place}: ${message}` });
  const label = raw.label;
  const encrypted = legacyEncrypted(raw.headers);
  const shape = encrypted ? undefined : shapeOf(raw.der);
  if (label !== undefined && !(label in LABELS)) {
    if (label in OTHER_LABELS) return { kind: "other", ...where, description: OTHER_LABELS[label]! };
    const known = Object.keys(LABELS).filter((l) => LABELS[l] === shape)[0];
    return problem(
      `unknown PEM label ${JSON.stringify(label)}${shape ? `; the block holds ${SHAPES[shape]} (label it ${known})` : "; expected a certificate, key or certificate request"}`,
    );
  }
  const promised: Shape | undefined = label === undefined ? undefined : LABELS[label];
  if (!encrypted && raw.der[0] !== 0x30)
    return problem(
      `the ${label} block does not hold DER (it starts with byte 0x${raw.der[0]!.toString(16).padStart(2, "0")}, not a SEQUENCE)`,
    );
  if (promised !== undefined && shape !== undefined && shape !== promised)
    return problem(
      `${article(label!)} ${label} block holds ${SHAPES[shape]}, not ${SHAPES[promised]}; the label is wrong, or the wrong file was pasted`,
    );
  if (encrypted && promised !== "pkcs1-private" && promised !== "sec1" && promised !== "pkcs8")
    return problem(`the ${label} block is marked encrypted (Proc-Type: 4,ENCRYPTED), which only private keys are`);
  const kind = encrypted ? promised! : (shape ?? promised);
  const what = label === undefined ? "the DER" : `the ${label} block`;
  if (kind === undefined && isPkcs12(raw.der)) return { kind: "other", ...where, description: PKCS12 };
  if (kind === undefined)
    return problem(`${what} is not a certificate, key or certificate request (its outline matches none of them)`);
  try {
    switch (kind) {
      case "certificate": {
        const cert = material.cert(raw.der);
        const item = describeCertificate(material, cert, where, now);
        certs.push({ item, cert });
        return item;
      }
      case "csr":
        return describeCsr(raw.der, where);
      case "spki":
      case "pkcs1-public":
        return describePublicKey(raw.der, kind, where);
      default:
        return describePrivateKey(raw.der, kind, where, raw.headers);
    }
  } catch (e) {
    return problem(`${what} does not decode as ${SHAPES[kind]}: ${clean(e)}`);
  }
}

/**
 * inspectText finds every certificate, key and CSR in `input` (PEM with any labels and text
 * around the blocks, or raw DER) and describes each, judging validity at `now`. It never throws
 * on bad input: damage is a `problem` item, and the other items are still described.
 */
export function inspectText(input: Buffer | string, name: string, now: Date = new Date()): Inspection {
  const material = new Material();
  const certs: { item: CertificateItem; cert: Cert }[] = [];
  const items = scanInput(input).map((raw, k): Item => {
    const where: Where = { index: k + 1, line: raw.line, offset: raw.offset, label: raw.label };
    return "problem" in raw
      ? { kind: "problem", ...where, message: raw.problem }
      : decodeRaw(raw, where, material, now, certs);
  });
  return { name, error: undefined, items, notes: linkChain(material, certs) };
}

/** readError words why a path cannot be read. */
function readError(e: NodeJS.ErrnoException): string {
  switch (e.code) {
    case "ENOENT":
      return "no such file";
    case "EISDIR":
      return "is a directory; name the files in it (e.g. DIR/*.pem)";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    default:
      return e.message;
  }
}

/** loadInspection reads the file at `path` and inspects it; an unreadable path is an Inspection with `error`. */
export function loadInspection(path: string, now: Date = new Date()): Inspection {
  const failed = (error: string): Inspection => ({ name: path, error, items: [], notes: [] });
  let bytes: Buffer;
  try {
    bytes = readFileBounded(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EFBIG") return failed(`${(e as ReadFileError).reason} (certificates and keys are a few kB)`);
    if (code === "ENOTREG")
      return failed(
        `${(e as ReadFileError).reason}; name a certificate or key file, or pipe it into \`mtlskit inspect -\``,
      );
    return failed(readError(e as NodeJS.ErrnoException));
  }
  return inspectText(bytes, path, now);
}

/** Tally counts what inspections found; the CLI turns it into an exit code. */
export interface Tally {
  /** unreadable: inputs that could not be read, or in which nothing could be decoded. */
  unreadable: number;
  /** problems: blocks that could not be decoded in inputs where something else could. */
  problems: number;
  /** errors and warnings: lints of certificates and keys by severity. */
  errors: number;
  warnings: number;
}

/** decoded tells whether anything in an inspection could be read. */
export const decoded = (f: Inspection): boolean => f.error === undefined && f.items.some((i) => i.kind !== "problem");

/** tally counts unreadable inputs, problems and lints. */
export function tally(inspections: readonly Inspection[]): Tally {
  const t: Tally = { unreadable: 0, problems: 0, errors: 0, warnings: 0 };
  for (const f of inspections) {
    if (!decoded(f)) t.unreadable++;
    for (const i of f.items) {
      if (i.kind === "problem" && decoded(f)) t.problems++;
      if (i.kind === "certificate" || i.kind === "private-key" || i.kind === "public-key")
        for (const l of i.lints) t[l.severity === "error" ? "errors" : "warnings"]++;
    }
  }
  return t;
}
