/**
 * explain: what a pasted TLS error means, why it happens, and the fix in mtlskit's terms.
 *
 * @example
 * import { explain } from "./explain/index.ts";
 * const { matches } = explain("x509: certificate is valid for 10.0.0.4, not 10.0.0.5");
 * console.log(matches[0]?.entry.id, matches[0]?.details.host); // name-mismatch 10.0.0.5
 */
export {
  CATALOGUE,
  CONTEXTS,
  DETAILS,
  STACKS,
  type Context,
  type Detail,
  type Entry,
  type Level,
  type Side,
  type Stack,
} from "./catalogue.ts";
export { explain, type Explanation, type Match, type Near } from "./match.ts";
