/**
 * COMPONENTS: the closed table of programs `mtlskit config` writes a snippet for. The CLI, its
 * help and the README read it; an unknown name is refused with this list.
 */
import { UsageError } from "../errors.ts";
import { renderEtcd } from "./etcd.ts";
import { servesOrRefuse, type ConfigInput, type Snippet } from "./input.ts";
import { renderNats } from "./nats.ts";
import { renderNginx } from "./nginx.ts";
import { renderPostgres } from "./postgres.ts";
import { renderServiceRadar } from "./serviceradar.ts";

/** Component is one program a snippet configures. */
export interface Component {
  /** summary says what the snippet is, for help text. */
  summary: string;
  /** serverOnly: the snippet configures a server, so a client-only service is refused. */
  serverOnly: boolean;
  /** render turns the input into the snippet; pure, and throws UsageError when the service does not fit. Call it through renderConfig, which refuses client-only services first. */
  render(input: ConfigInput): Snippet;
}

/** COMPONENTS maps each component name to its renderer. */
export const COMPONENTS = {
  nats: {
    summary: "nats-server.conf: tls {} with verify_and_map, and authorization users for the service's clients",
    serverOnly: true,
    render: renderNats,
  },
  postgres: {
    summary: "postgresql.conf ssl settings, a pg_hba.conf hostssl cert line, pg_ident.conf CN-to-role lines",
    serverOnly: true,
    render: renderPostgres,
  },
  nginx: {
    summary: "server {} directives: certificate, ssl_verify_client on, protocols",
    serverOnly: true,
    render: renderNginx,
  },
  etcd: {
    summary: "a member's flags: client and peer TLS with client certificates required",
    serverOnly: true,
    render: renderEtcd,
  },
  serviceradar: {
    summary:
      'a component\'s JSON "security" block (mode mtls, cert_dir, server_name, role, tls); datasvc\'s "rbac" too',
    serverOnly: false,
    render: renderServiceRadar,
  },
} as const satisfies Record<string, Component>;

/** ComponentName is one of COMPONENTS. */
export type ComponentName = keyof typeof COMPONENTS;

/** COMPONENT_NAMES lists the components in table order. */
export const COMPONENT_NAMES = Object.keys(COMPONENTS) as ComponentName[];

/** componentOf looks a component up by name, refusing unknown names with the list. */
export function componentOf(name: string): Component {
  if (!Object.hasOwn(COMPONENTS, name)) {
    throw new UsageError(
      `mtlskit config: unknown component ${JSON.stringify(name)}; components are: ${COMPONENT_NAMES.join(", ")}. Run \`mtlskit config --help\`.`,
    );
  }
  return COMPONENTS[name as ComponentName];
}

/** renderConfig renders component `name`'s snippet for `input`, refusing a server component for a client-only service. */
export function renderConfig(name: string, input: ConfigInput): Snippet {
  const component = componentOf(name);
  if (component.serverOnly) servesOrRefuse(name, input);
  // With ca.intermediate the CRL apply writes is the intermediate's; servers that check every level
  // of the chain (nginx, PostgreSQL, etcd: OpenSSL's CRL_CHECK_ALL) would also need the root's,
  // which mtlskit does not write yet, and would refuse every client: no CRL line for any component.
  if (input.manifest.ca.intermediate !== undefined && input.paths.crl !== undefined)
    return component.render({ ...input, paths: { ...input.paths, crl: undefined } });
  return component.render(input);
}
