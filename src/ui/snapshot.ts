/**
 * The dashboard's read model (`mtlskit ui`, issue 17): everything the page shows, as plain JSON.
 * The server builds one Snapshot from what check, status, the rotation record and the ledger
 * already know (src/ui/model.ts); the front end (src/ui/web/) only renders it. This file is the
 * contract between the two: types only, no imports, no I/O, so the browser bundle can import it.
 *
 * HTTP (all GET, read-only; docs in README "Dashboard"):
 * - `/`                  the page (HTML; assets under `/assets/`), with a strict Content-Security-Policy
 * - `/api/snapshot`      the current Snapshot (`application/json`)
 * - `/api/events`        server-sent events: `event: snapshot` with `data: {"version": N}` whenever
 *                        the snapshot's version changes (and once on connect), a comment every 15 s
 *
 * `mtlskit serve --ui` mounts the same paths under `/ui/` (`/ui/`, `/ui/assets/*`, ...): the page
 * must name its assets and the API by relative URLs (`assets/app.js`, `api/snapshot`), never `/...`.
 *
 * Never in a Snapshot: a private key, a token's secret, a ledger password. Dates are ISO 8601
 * strings (UTC); SHA-256s are lower-case hex of the DER.
 */

/** Verdict is the worst severity of what a row concerns: the colour it is drawn in. */
export type Verdict = "ok" | "warning" | "error";

/** Snapshot is one read of the whole identity system. */
export interface Snapshot {
  /** version increases whenever anything below changes (a new read that differs); the page refetches on a new one. */
  version: number;
  /** generatedAt: when the read was made. */
  generatedAt: string;
  cluster: string;
  /** manifest: the manifest file as given on the command line; pki: the PKI directory. */
  manifest: string;
  pki: string;
  counts: SnapshotCounts;
  services: UiService[];
  certificates: UiCertificate[];
  cas: UiCa[];
  connections: UiConnection[];
  /** findings: every check finding; rows refer to them by index. */
  findings: UiFinding[];
  /** rotation: the CA rotation's phase, when one is under way or recorded. */
  rotation?: UiRotation;
  /** online: the online CA's ledger, when there is one (absent: no ledger, nothing online). */
  online?: UiOnline;
}

export interface SnapshotCounts {
  services: number;
  certificates: number;
  /** errors and warnings: check's findings by severity. */
  errors: number;
  warnings: number;
  /** renewalDue: certificates inside their renewal window (or expired). */
  renewalDue: number;
  connections: number;
  /** failingConnections: declared connections check says will not handshake. */
  failingConnections: number;
}

/** UiService is one service of the manifest. */
export interface UiService {
  name: string;
  usage: "server" | "client" | "dual";
  role: string | undefined;
  /** identity: the rendered identity URI (SPIFFE or custom), when the manifest declares one. */
  identity: string | undefined;
  /** addresses: the declared DNS names and IP addresses. */
  addresses: string[];
  /** certificates: ids of UiCertificate rows (a split service has two). */
  certificates: string[];
  /** issuance: "apply" (files written by apply), "online" (an agent via serve: a csr service) or "files" (the service's own files). */
  issuance: "apply" | "online" | "files";
  verdict: Verdict;
  /** findings: indexes into Snapshot.findings about this service or its certificates. */
  findings: number[];
}

/** UiCertificate is one certificate a service holds (its slot: `core`, `core/client`). */
export interface UiCertificate {
  /** id: check's slot id (`core`, `core/client`), unique in a snapshot. */
  id: string;
  service: string;
  file: string | undefined;
  serial: string | undefined;
  subject: string | undefined;
  /** sans: the subjectAltName entries, parsed structurally, in certificate order. */
  sans: { type: "dns" | "ip" | "uri" | "email"; value: string }[];
  /** usages: the extended key usages (`serverAuth`, `clientAuth`, or an OID). */
  usages: string[];
  identity: string | undefined;
  notBefore: string | undefined;
  notAfter: string | undefined;
  /** renewAt: when the renewal window opens (notAfter - renewBefore). */
  renewAt: string | undefined;
  /** daysLeft: whole days until notAfter, negative once expired; undefined when there is no certificate. */
  daysLeft: number | undefined;
  /** issuer: the issuing CA's subject, when the certificate chains to the bundle. */
  issuer: string | undefined;
  sha256: string | undefined;
  source: "apply" | "online" | "files";
  revoked: boolean;
  verdict: Verdict;
  findings: number[];
}

/** UiCa is one CA certificate: the root, an intermediate, or a rotation's next or retired CA. */
export interface UiCa {
  subject: string;
  role: "root" | "intermediate" | "next" | "retired" | "other";
  notBefore: string;
  notAfter: string;
  daysLeft: number;
  sha256: string;
}

/** UiConnection is one declared connection, as check judges it (an edge of the graph). */
export interface UiConnection {
  index: number;
  from: string;
  to: string;
  address: string;
  verdict: Verdict;
  /** findings: indexes into Snapshot.findings: the cause and its fix, shown on a click. */
  findings: number[];
}

/** UiFinding is one check finding. */
export interface UiFinding {
  code: string;
  severity: "error" | "warning" | "info";
  /** about: what it concerns in words (`core/client`, `gateway -> core @ 10.0.0.1`). */
  about: string;
  message: string;
  fix: string;
}

/** UiRotation is where a CA rotation stands (ca/rotation.json). */
export interface UiRotation {
  phase: string;
  /** since: when the current phase started. */
  since: string | undefined;
  /** next: the next step in words (the command to run), or undefined when done. */
  next: string | undefined;
}

/** UiOnline is what the online CA's ledger says. */
export interface UiOnline {
  /** ledger: where it is, redacted (`sqlite:DIR/ca/ledger.db`, `postgres://HOST:PORT/DB`). */
  ledger: string;
  issued: number;
  revoked: number;
  /** recent: the newest issuances, newest first (at most 100). */
  recent: {
    serial: string;
    service: string;
    issuedAt: string;
    notAfter: string;
    requester: string | undefined;
    how: string;
  }[];
  /** refusals: serve's refusals by reason, when the dashboard is mounted inside serve (absent standalone: the ledger does not record them). */
  refusals?: { reason: string; count: number }[];
  /** tokens: outstanding bootstrap tokens (never their secrets). */
  tokens: { id: string; service: string; expiresAt: string; acme: boolean }[];
  revocations: { serial: string; service: string | undefined; reason: string | undefined; at: string }[];
}
