/**
 * inspect: certificates, chains, keys and CSRs shown readably, whatever tool made them, with the
 * lints that apply to a lone certificate; damaged input is described precisely, never thrown.
 *
 * @example
 * const files = matchKeys([loadInspection("cert.pem"), loadInspection("key.pem")]);
 * for (const i of files[0]!.items) if (i.kind === "certificate") console.log(i.subject, i.validity.text);
 */
export { validityAt } from "./certificate.ts";
export { LABELS, SHAPES, shapeOf, type Shape } from "./classify.ts";
export { colonHex, sanText, usageOf } from "./describe.ts";
export { decoded, inspectText, loadInspection, MAX_FILE_BYTES, tally, type Tally } from "./inspect.ts";
export type {
  CaFacts,
  CertificateItem,
  CsrItem,
  ExtensionItem,
  Identity,
  Inspection,
  Item,
  ItemLint,
  KeyInfo,
  OtherItem,
  PrivateKeyItem,
  ProblemItem,
  PublicKeyItem,
  Requested,
  SanItem,
  Validity,
  Where,
} from "./item.ts";
export { matchKeys } from "./links.ts";
