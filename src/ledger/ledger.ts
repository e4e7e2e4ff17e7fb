/**
 * The online CA's ledger: one interface, two doors (sqlite.ts: better-sqlite3, the default at
 * DIR/ca/ledger.db; postgres.ts: pg, for several replicas). Nothing above this file knows which.
 *
 * The guarantee the server builds on: `record` resolves only once the certificate's row (and the
 * token it consumed) is durable; a certificate is never returned to a client before that. Serials
 * are unique by constraint; a token is consumed by the same transaction that records the
 * certificate, so of any number of concurrent uses exactly one succeeds.
 */
import { createHash } from "node:crypto";
import { FailedError } from "../errors.ts";
import type { AcmeRow, AcmeStore } from "./acme.ts";

/** TokenKind: `enroll` tokens are bootstrap tokens for `POST /v1/enroll` (`mtlskit token create`); `acme` are EAB keys (issue 16). */
export type TokenKind = "enroll" | "acme";

/** TokenRecord is a bootstrap token as stored: never its secret, only the secret's SHA-256. */
export interface TokenRecord {
  /** id: 16 lower-case hex digits, the public half of the token (`mtk_ID_SECRET`). */
  id: string;
  kind: TokenKind;
  /** service the token is bound to (a manifest service name). */
  service: string;
  createdAt: Date;
  expiresAt: Date;
  /** usedAt and usedBy (the serial it paid for), once consumed. */
  usedAt: Date | undefined;
  usedBy: string | undefined;
  /** revokedAt: set by `mtlskit token revoke`. */
  revokedAt: Date | undefined;
}

/** IssuedRecord is one certificate the online CA issued: the ledger's row, written before the certificate leaves the server. */
export interface IssuedRecord {
  /** serial: lower-case hex without leading zero octets (pki/crl.ts serialHex). Unique. */
  serial: string;
  service: string;
  /** sans: sanWords form (`DNS:web`, `IP:10.0.0.7`, `URI:spiffe://...`), in certificate order. */
  sans: string[];
  notBefore: Date;
  notAfter: Date;
  /** sha256: lower-case hex of the certificate's DER. */
  sha256: string;
  /** der: the certificate. */
  der: Buffer;
  /** how: enroll (a token), renew (the previous certificate), acme. */
  how: "enroll" | "renew" | "acme";
  /** tokenId: the token an enrollment consumed. */
  tokenId: string | undefined;
  /** renewedFrom: the serial of the certificate a renewal authenticated with. */
  renewedFrom: string | undefined;
  /** requester: the client's address as the server saw it (`127.0.0.1:53122`). */
  requester: string;
  issuedAt: Date;
  /** revokedAt and revokedReason (an RFC 5280 reason name), once revoked. */
  revokedAt: Date | undefined;
  revokedReason: string | undefined;
}

/**
 * TokenVerdict: why a presented token is not good (the server's 401/403 reason), or the token.
 * A used token presented with its right secret also says which serial it paid for (`usedBy`): an
 * enrollment retried after an ambiguous commit is answered that certificate again (docs/online-ca.md).
 */
export type TokenVerdict =
  | { ok: true; token: TokenRecord }
  | { ok: false; reason: "used"; usedBy: string | undefined }
  | { ok: false; reason: "unknown" | "malformed" | "expired" | "revoked" | "wrong-service" | "wrong-kind" };

/** RecordOutcome: the row is durable, or why it was not written (nothing was). */
export type RecordOutcome =
  | { ok: true }
  | { ok: false; reason: "duplicate-serial" | "token-used" | "token-expired" | "token-revoked" | "token-unknown" };

/** ListFilter narrows `list`. */
export interface ListFilter {
  service?: string;
  /** validAt: only certificates whose validity covers this time and that are not revoked. */
  validAt?: Date;
  /** limit: at most this many, newest first. Default: all. */
  limit?: number;
}

/** LedgerStats for /metrics and status. */
export interface LedgerStats {
  certificates: number;
  revoked: number;
  tokensOutstanding: number;
}

/** Revoked is one revoked certificate as the ledger holds it: what a CRL entry needs. */
export interface Revoked {
  serial: string;
  service: string;
  /** reason: an RFC 5280 reason name. */
  reason: string;
  revokedAt: Date;
  notAfter: Date;
}

/** StoredToken is a token row whole (with its secret's SHA-256): what `ledger migrate` copies. */
export interface StoredToken extends TokenRecord {
  secretSha256: Buffer;
}

/** EabRow: an EAB key's HMAC key (acme_eab), beside its `acme` token's row. */
export interface EabRow {
  tokenId: string;
  hmacKey: Buffer;
}

/**
 * LedgerRow is one row of a copied table, as `readRows` pages them and `writeRows` copies them:
 * tokens, certificates, and the ACME state (EAB keys' HMAC keys, accounts/orders/authorizations).
 * Nonces are not copied: each lives an hour at most, and a client answered badNonce retries.
 */
export type LedgerRow =
  | { table: "tokens"; row: StoredToken }
  | { table: "certificates"; row: IssuedRecord }
  | { table: "acme_eab"; row: EabRow }
  | { table: "acme_objects"; row: AcmeRow };

/** LEDGER_TABLES: the tables `ledger migrate` copies, in copy order (a certificate names a token; an EAB key is a token's). */
export const LEDGER_TABLES: readonly LedgerRow["table"][] = ["tokens", "certificates", "acme_eab", "acme_objects"];

/**
 * rowId is a row's key within its table, in the order readRows pages it: a token's id, a
 * certificate's serial, an EAB key's token id, an ACME object's `KIND/ID` (kinds are fixed words,
 * none a prefix of another, and ids base64url: the string order is the (kind, id) order).
 */
export const rowId = (r: LedgerRow): string =>
  r.table === "tokens"
    ? r.row.id
    : r.table === "certificates"
      ? r.row.serial
      : r.table === "acme_eab"
        ? r.row.tokenId
        : `${r.row.kind}/${r.row.id}`;

/** WriteRowsResult: how many rows were added, how many were there already with the same content, and the keys there with other content (then nothing was written). */
export interface WriteRowsResult {
  added: number;
  same: number;
  conflicts: string[];
}

/** SchemaState: the schema version the ledger is at, and the one it was found at when opened (undefined: created now; equal: nothing applied). */
export interface SchemaState {
  version: number;
  foundVersion: number | undefined;
}

/** Ledger is the online CA's record. Every method may reject with LedgerUnavailableError (the server answers 503). */
export interface Ledger {
  /** kind names the door, for logs and status: `sqlite:PATH` or `postgres://HOST:PORT/DB` (never a user or password). */
  readonly kind: string;
  /**
   * createToken stores a new token for `service` and returns its one printable form
   * (`mtk_ID_SECRET`); only the secret's hash is kept. An `acme` token is an EAB key (RFC 8555
   * §7.3.4): its id is the key id and its secret's 32 bytes the HMAC key, which the server must
   * read back to verify a binding, so the ledger also keeps those bytes (AcmeStore.eabKey).
   */
  createToken(
    service: string,
    kind: TokenKind,
    ttlMs: number,
    now: Date,
  ): Promise<{ token: string; record: TokenRecord }>;
  /** checkToken judges a presented token for `service` at `now` in constant time, without consuming it. */
  checkToken(token: string, service: string, kind: TokenKind, now: Date): Promise<TokenVerdict>;
  /** revokeToken marks a token unusable; false when there is no such id. */
  revokeToken(id: string, now: Date): Promise<boolean>;
  /** tokens lists the stored tokens (never secrets), newest first. */
  tokens(filter?: { service?: string }): Promise<TokenRecord[]>;
  /**
   * record writes the certificate's row, consuming `consume` (a token id) in the same transaction
   * when given; resolves once durable (group commit: concurrent calls share one commit). Nothing is
   * written when the outcome is not ok.
   */
  record(row: IssuedRecord, consume?: { tokenId: string; now: Date }): Promise<RecordOutcome>;
  /** get reads one certificate's row by serial (serialHex form). */
  get(serial: string): Promise<IssuedRecord | undefined>;
  /** list reads rows, newest first. */
  list(filter?: ListFilter): Promise<IssuedRecord[]>;
  /** revoke marks a row revoked; false when there is no such serial; an earlier revocation is kept. */
  revoke(serial: string, reason: string, at: Date): Promise<boolean>;
  /** stats counts rows for /metrics and status. */
  stats(now: Date): Promise<LedgerStats>;
  /**
   * revoked lists the revoked certificates not expired at `now`, oldest revocation first: the
   * CRL's entries every replica shares. Cheap (a partial index over revoked rows only), so the
   * server asks it on each /v1/crl.
   */
  revoked(now: Date): Promise<Revoked[]>;
  /**
   * nextCrlNumber takes the next number of the shared cRLNumber counter atomically (no two callers,
   * on any replica, get the same one): max(last + 1, atLeast), so a number already used by a
   * CRL on disk (ca/crl-number) is never reused.
   */
  nextCrlNumber(atLeast: bigint): Promise<bigint>;
  /** readRows pages one table in rowId order (byte order): at most `limit` rows whose rowId is after `after`. */
  readRows(table: LedgerRow["table"], after: string | undefined, limit: number): Promise<LedgerRow[]>;
  /**
   * writeRows copies rows from another ledger in one transaction: a row whose key is absent is
   * added, one present with the same content (rowSha256) counted as same; when any key is present
   * with other content nothing is written and those keys are returned.
   */
  writeRows(rows: LedgerRow[]): Promise<WriteRowsResult>;
  /** schema: the schema version (after the migrations applied on open). */
  readonly schema: SchemaState;
  /**
   * backup writes a consistent copy to `file` while the ledger stays in use (SQLite's online
   * backup). PostgreSQL refuses with a UsageError naming the pg_dump command (a database's
   * backup is its own tool's job; `mtlskit ledger migrate --to sqlite:FILE` makes a SQLite copy).
   */
  backup(file: string): Promise<void>;
  /** acme: the ACME server's state (src/ledger/acme.ts); undefined when this door keeps none (serve then has no ACME directory). */
  readonly acme?: AcmeStore;
  close(): Promise<void>;
}

/** SCHEMA_VERSION is the ledger schema this code reads and writes, the same number for SQLite and PostgreSQL (1: tokens and certificates; 2: the shared counters and the revoked-rows index; 3: the ACME tables acme_eab, acme_objects, acme_nonces). A newer one is refused, never downgraded. */
export const SCHEMA_VERSION = 3;

/**
 * tokenRefusal names why a token could not be consumed, from its row as read after the conditional
 * update lost (undefined: no such token). Shared by both doors so their outcomes are the same.
 */
export function tokenRefusal(
  tok: { revoked_at: unknown; used_at: unknown } | undefined,
): "token-unknown" | "token-revoked" | "token-used" | "token-expired" {
  if (!tok) return "token-unknown";
  if (tok.revoked_at !== null) return "token-revoked";
  if (tok.used_at !== null) return "token-used";
  return "token-expired";
}

/**
 * checkRow refuses a row whose serial or SHA-256 is not in the one spelling the contract fixes
 * (lower-case hex; the serial as pki/crl.ts serialHex writes it: whole octets, no leading zero
 * octet), or whose dates are not dates: uniqueness by constraint holds only if one serial has one
 * spelling. A TypeError: a bug in the caller, failing that row alone.
 */
export function checkRow(r: IssuedRecord): void {
  if (!/^(?:[0-9a-f]{2}){1,20}$/.test(r.serial) || (r.serial.startsWith("00") && r.serial.length > 2))
    throw new TypeError(
      `ledger: serial ${JSON.stringify(r.serial)} is not serialHex's form (lower-case hex octets, no leading zero octet)`,
    );
  if (!/^[0-9a-f]{64}$/.test(r.sha256))
    throw new TypeError(`ledger: sha256 ${JSON.stringify(r.sha256)} is not 64 lower-case hex digits`);
  for (const [name, d] of [
    ["notBefore", r.notBefore],
    ["notAfter", r.notAfter],
    ["issuedAt", r.issuedAt],
    ["revokedAt", r.revokedAt],
  ] as const)
    if (d !== undefined && !(d instanceof Date && Number.isFinite(d.getTime())))
      throw new TypeError(`ledger: ${name} of serial ${r.serial} is not a valid date`);
}

/**
 * redactUrl names a postgres:// URL without user, password or parameters (postgres://HOST:PORT/DB),
 * as every message and log line must; other text is returned as it is.
 */
export function redactUrl(spec: string): string {
  if (!/^postgres(ql)?:\/\//.test(spec)) return spec;
  let u: URL;
  try {
    u = new URL(spec);
  } catch {
    return "postgres://(unreadable URL)";
  }
  const host = u.hostname || u.searchParams.get("host") || "localhost";
  const port = u.port || u.searchParams.get("port") || "5432";
  const db = decodeURIComponent(u.pathname.replace(/^\//, "")) || decodeURIComponent(u.username) || "postgres";
  return `postgres://${host}:${port}/${db}`;
}

/** rowKey is a row's key with its table: `tokens/ID`, `certificates/SERIAL`, `acme_eab/ID`, `acme_objects/KIND/ID`, as messages name it. */
export const rowKey = (r: LedgerRow): string => `${r.table}/${rowId(r)}`;

/**
 * rowSha256 is a row's content as a SHA-256 (lower-case hex) over a canonical JSON of every
 * field (dates as milliseconds, bytes as hex), the same on both doors: `ledger migrate` compares
 * source and copy with it.
 */
export function rowSha256(r: LedgerRow): string {
  const ms = (d: Date | undefined) => (d === undefined ? null : d.getTime());
  const v =
    r.table === "acme_eab"
      ? [r.row.tokenId, r.row.hmacKey.toString("hex")]
      : r.table === "acme_objects"
        ? [r.row.kind, r.row.id, r.row.version, r.row.lookup ?? null, r.row.doc]
        : r.table === "tokens"
          ? [
              r.row.id,
              r.row.kind,
              r.row.service,
              r.row.secretSha256.toString("hex"),
              ms(r.row.createdAt),
              ms(r.row.expiresAt),
              ms(r.row.usedAt),
              r.row.usedBy ?? null,
              ms(r.row.revokedAt),
            ]
          : [
              r.row.serial,
              r.row.service,
              r.row.sans,
              ms(r.row.notBefore),
              ms(r.row.notAfter),
              r.row.sha256,
              r.row.der.toString("hex"),
              r.row.how,
              r.row.tokenId ?? null,
              r.row.renewedFrom ?? null,
              r.row.requester,
              ms(r.row.issuedAt),
              ms(r.row.revokedAt),
              r.row.revokedReason ?? null,
            ];
  return createHash("sha256")
    .update(JSON.stringify([r.table, ...v]))
    .digest("hex");
}

/**
 * LedgerUnavailableError: the ledger cannot be read or written now (locked, disk full, database
 * down, a schema newer than this code); the server answers 503 and issues nothing, the CLI exits 3.
 */
export class LedgerUnavailableError extends FailedError {
  override name = "LedgerUnavailableError";
}
