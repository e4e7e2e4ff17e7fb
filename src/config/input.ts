/**
 * What every config renderer reads, and what it returns: the manifest, the one service the
 * snippet is for, where that service's files are, and who the manifest says connects to it.
 */
import { UsageError } from "../errors.ts";
import type { Manifest, Service } from "../manifest/index.ts";
import type { TlsPaths } from "./paths.ts";

/** ConfigInput is one snippet's input. */
export interface ConfigInput {
  manifest: Manifest;
  /** service is the service the snippet configures (the server for nats, postgres, nginx, etcd). */
  service: Service;
  /** paths are that service's files, in the PKI layout or the flat layout of a host (paths.ts). */
  paths: TlsPaths;
  /** pgRoles maps client service names to PostgreSQL roles; a client not in it logs in as its service name. */
  pgRoles: Readonly<Record<string, string>>;
}

/** Snippet is a rendered snippet: `text` goes to stdout; `notes` (for formats without comments, JSON) go to stderr. */
export interface Snippet {
  text: string;
  notes: string[];
}

/** Client is a service the manifest says connects to the snippet's service, and which of its certificates it presents. */
export interface Client {
  service: Service;
  /** presents: `client.pem` for a split pair's client half, `cert.pem` otherwise. */
  presents: "cert.pem" | "client.pem";
}

/** clientsOf lists the services that `connections` say dial `service`, in manifest order, each once. */
export function clientsOf(manifest: Manifest, service: Service): Client[] {
  const names = [...new Set(manifest.connections.filter((c) => c.to === service.name).map((c) => c.from))];
  return names.map((n) => {
    const s = manifest.services.find((x) => x.name === n)!;
    return { service: s, presents: s.split ? "client.pem" : "cert.pem" };
  });
}

/**
 * requireClients refuses a server snippet that would admit nobody: mapping users (nats) and roles
 * (postgres) come from `connections`, so a server no connection names has no user to map.
 */
export function requireClients(component: string, input: ConfigInput): Client[] {
  const clients = clientsOf(input.manifest, input.service);
  if (clients.length === 0) {
    const name = input.service.name;
    throw new UsageError(
      `mtlskit config ${component}: no connection in ${input.manifest.file} has \`to: ${name}\`, so the ${component} snippet would admit no client; ` +
        `declare each client under connections, e.g. \`- { from: CLIENT, to: ${name}, address: ${input.service.dns[0] ?? input.service.cn} }\``,
    );
  }
  return clients;
}

/** servesOrRefuse refuses a server snippet for a service whose certificate cannot serve (usage: client). */
export function servesOrRefuse(component: string, input: ConfigInput): void {
  const s = input.service;
  if (s.usage === "client") {
    throw new UsageError(
      `mtlskit config ${component}: service ${s.name} has usage: client, so its certificate has no serverAuth and ${component} cannot serve with it; ` +
        `give --service a service with usage server or dual (the one ${component} runs as), or change services.${s.name}.usage in ${input.manifest.file}`,
    );
  }
}
