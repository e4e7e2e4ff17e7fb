/** Config snippets: ready-to-paste server configuration generated from the manifest (re-exports only). */
export {
  COMPONENTS,
  COMPONENT_NAMES,
  componentOf,
  renderConfig,
  type Component,
  type ComponentName,
} from "./components.ts";
export { clientsOf, type Client, type ConfigInput, type Snippet } from "./input.ts";
export { manifestFlatFiles, tlsPaths, type TlsPaths, type Where } from "./paths.ts";
export { goDn, natsUser } from "./nats.ts";
export { pgSection, PG_MAP } from "./postgres.ts";
export { etcdFlags } from "./etcd.ts";
export { securityBlock, type SecurityBlock } from "./serviceradar.ts";
