/**
 * ServiceRadar: the `security` block of a component's JSON config, in the shape the ServiceRadar
 * "TLS Security" runbook (seed 000) writes per component: mode mtls, cert_dir, server_name (the
 * server the component dials, checked against that server's certificate), role, and tls with
 * file names relative to cert_dir. A component that serves also gets client_ca_file, the bundle
 * it verifies its clients with.
 *
 * The data service (a service named datasvc, or kv as before its rename) also gets the runbook's
 * `rbac` block, one entry per client the manifest's connections say dials it. datasvc names a
 * client by its spiffe:// URI SAN when it has one, else by its subject: before 2026-01 only as
 * Go's `Subject.String()` (the whole DN, most specific first), since then also as `CN=..,O=..`
 * alone (carverauto/serviceradar go/pkg/datasvc/rbac.go). The block writes the whole DN, which
 * every version matches; the runbook's short `CN=agent.serviceradar,O=ServiceRadar` needs the
 * newer one. The library's authorizeRbac admits both forms.
 *
 * JSON has no comments, so what a reader must know goes to `notes` (stderr). The output is a
 * whole JSON object, `{"security": {...}}`, so it merges into an existing config with
 * `jq -s '.[0] * .[1]' core.json snippet.json`.
 */
import * as path from "node:path";
import { UsageError } from "../errors.ts";
import type { Service } from "../manifest/index.ts";
import { clientsOf, type ConfigInput, type Snippet } from "./input.ts";
import { goDn } from "./nats.ts";

/** SecurityBlock is the JSON `security` object ServiceRadar components read. */
export interface SecurityBlock {
  mode: "mtls";
  cert_dir: string;
  server_name?: string;
  role: string;
  tls: { cert_file: string; key_file: string; ca_file: string; client_ca_file?: string };
}

/** RbacBlock is datasvc's top-level `rbac` object: who holds which role. */
export interface RbacBlock {
  roles: { identity: string; role: "reader" | "writer" }[];
}

/** isDataService tells whether a service is ServiceRadar's data service (datasvc; kv before the rename), the one component with an rbac block. */
const isDataService = (name: string) => /^(serviceradar-)?(datasvc|kv)$/.test(name);

/** rbacBlock lists the data service's clients as readers, each by the identity datasvc reads from its certificate. */
function rbacBlock(input: ConfigInput): { rbac?: RbacBlock; notes: string[] } {
  const { service, manifest } = input;
  const clients = clientsOf(manifest, service);
  if (clients.length === 0) {
    return {
      notes: [
        `no connection in ${manifest.file} has \`to: ${service.name}\`, so no rbac block is written and datasvc would refuse every client; declare each client under connections.`,
      ],
    };
  }
  const roles = clients.map(({ service: c }) => ({
    identity: c.identity?.startsWith("spiffe://") ? c.identity : goDn(c.subject),
    role: "reader" as const,
  }));
  const notes = [
    `every client of ${service.name} is a reader (Get, Watch); make a client that writes (Put, Delete: ServiceRadar's sync or core) a writer.`,
  ];
  return { rbac: { roles }, notes };
}

/** targetsOf lists the services `service` dials, in the order of the manifest's connections, each once. */
function targetsOf(input: ConfigInput): Service[] {
  const names = [...new Set(input.manifest.connections.filter((c) => c.from === input.service.name).map((c) => c.to))];
  return names.map((n) => input.manifest.services.find((s) => s.name === n)!);
}

/** securityBlock builds the block for `input.service`, and the notes a reader needs. */
export function securityBlock(input: ConfigInput): { block: SecurityBlock; notes: string[] } {
  const { service, paths, manifest } = input;
  if (service.split) {
    throw new UsageError(
      `mtlskit config serviceradar: service ${service.name} is split (a server-only cert.pem and a client-only client.pem), but a ServiceRadar component takes one certificate ` +
        `(tls.cert_file) for serving and dialing; remove split: true from services.${service.name} in ${manifest.file} (usage: dual gives one certificate with both usages)`,
    );
  }
  const notes: string[] = [];
  const files = [paths.cert, paths.key, paths.ca];
  const dir = path.dirname(paths.cert);
  const together = files.every((f) => path.dirname(f) === dir);
  const name = (f: string) => (together ? path.basename(f) : f);
  if (!together)
    notes.push(
      `${service.name}'s files are not in one directory, so tls names them by absolute path; cert_dir is the certificate's directory.`,
    );
  const targets = targetsOf(input);
  const serves = service.usage !== "client";
  const block: SecurityBlock = {
    mode: "mtls",
    cert_dir: dir,
    ...(targets[0] ? { server_name: targets[0].cn } : {}),
    role: service.role,
    tls: {
      cert_file: name(paths.cert),
      key_file: name(paths.key),
      ca_file: name(paths.ca),
      ...(serves ? { client_ca_file: name(paths.ca) } : {}),
    },
  };
  if (targets.length > 1) {
    const others = targets
      .slice(1)
      .map((t) => `${t.name} (server_name ${t.cn})`)
      .join(", ");
    notes.push(
      `${service.name} dials ${targets.length} services; server_name is the first, ${targets[0]!.name} (${targets[0]!.cn}). Where its config names the others, set their server_name: ${others}.`,
    );
  }
  return { block, notes };
}

/**
 * renderServiceRadar renders `{"security": {...}}` for `input.service` (and `"rbac"` for the data
 * service), pretty-printed with two spaces as the runbook's files are.
 */
export function renderServiceRadar(input: ConfigInput): Snippet {
  const { block, notes } = securityBlock(input);
  if (!isDataService(input.service.name)) return { text: `${JSON.stringify({ security: block }, null, 2)}\n`, notes };
  const { rbac, notes: rbacNotes } = rbacBlock(input);
  return {
    text: `${JSON.stringify({ security: block, ...(rbac ? { rbac } : {}) }, null, 2)}\n`,
    notes: [...notes, ...rbacNotes],
  };
}
