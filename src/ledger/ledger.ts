/**
 * The online CA's ledger: one interface, two doors (sqlite.ts: better-sqlite3, the default at
 * DIR/ca/ledger.db; postgres.ts: pg, for several replicas). Nothing above this file knows which.
 *
 * The guarantee the server builds on: `record` resolves only once the certificate's row (and the
 * token it consumed) is durable; a certificate is never returned to a client before that. Serials
 * are unique by constraint; a token is consumed by the same transaction that records the
 * certificate, so of any number of concurrent uses exactly one succeeds.
 */
import { FailedError } from "../errors.ts";
import type { AcmeStore } from "./acme.ts";

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

/** TokenVerdict: why a presented token is not good (the server's 401/403 reason), or the token. */
export type TokenVerdict =
  | { ok: true; token: TokenRecord }
  | { ok: false; reason: "unknown" | "malformed" | "expired" | "used" | "revoked" | "wrong-service" | "wrong-kind" };

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

/** Ledger is the online CA's record. Every method may reject with LedgerUnavailableError (the server answers 503). */
export interface Ledger {
  /** kind names the door, for logs and status: `sqlite:PATH` or `postgres://HOST/DB` (no password). */
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
  /** backup writes a consistent copy to `file` while the ledger stays in use (SQLite's online backup). */
  backup(file: string): Promise<void>;
  /** acme: the ACME server's state (src/ledger/acme.ts); undefined when this door keeps none (serve then has no ACME directory). */
  readonly acme?: AcmeStore;
  close(): Promise<void>;
}

/**
 * LedgerUnavailableError: the ledger cannot be read or written now (locked, disk full, database
 * down, a schema newer than this code); the server answers 503 and issues nothing, the CLI exits 3.
 */
export class LedgerUnavailableError extends FailedError {
  override name = "LedgerUnavailableError";
}
