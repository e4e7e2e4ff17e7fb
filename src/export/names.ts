/**
 * FLAT_NAMES: the file names of the flat layout (root.pem, NAME.pem, NAME-key.pem), shared by
 * `export --format flat`, env files and the config snippets. Defined with the manifest's outputs
 * (manifest/outputs.ts), which validate the names before anything is written; re-exported here for
 * export's and config's readers.
 */
export { FLAT_NAMES, flatName, flatNamesOf, type FlatNames } from "../manifest/outputs.ts";
