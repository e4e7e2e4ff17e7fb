/**
 * FLAT_NAMES: the file names of the flat layout (root.pem, NAME.pem, NAME-key.pem), shared by
 * `export --format flat`, env files and the config snippets. Defined with the manifest's outputs
 * (manifest/outputs.ts), which validate the names before anything is written; re-exported here for
 * export's and config's readers.
 */
export { FLAT_NAMES, flatName, flatNamesOf, type FlatNames } from "../manifest/outputs.ts";

/**
 * FLAT_CRL: the CA's CRL (PEM) in the flat layout, beside the CA file. Not a `.pem` name, so no
 * service's `{name}.pem` can take it; the Kubernetes ConfigMap uses the same key.
 */
export const FLAT_CRL = "ca.crl";
