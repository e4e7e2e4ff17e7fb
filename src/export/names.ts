/**
 * FLAT_NAMES: the file names of the flat layout the runbooks deploy (ServiceRadar's
 * /etc/serviceradar/certs: root.pem, core.pem, core-key.pem), shared by `export --format flat`
 * and the config snippets that point at those files. `{name}` is the service's name.
 */
export const FLAT_NAMES = {
  ca: "root.pem",
  cert: "{name}.pem",
  key: "{name}-key.pem",
  clientCert: "{name}-client.pem",
  clientKey: "{name}-client-key.pem",
} as const;

/** FlatNames are the configurable file names of the flat layout. */
export type FlatNames = { [K in keyof typeof FLAT_NAMES]: string };

/** flatName renders one name template for a service. */
export function flatName(template: string, service: string): string {
  return template.replaceAll("{name}", service);
}
