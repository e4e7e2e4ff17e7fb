/**
 * What the online CA's ledger (DIR/ca/ledger.db, `mtlskit serve`) says of the csr services, as
 * plain data: check/online.ts reads it for the read-only commands, and plan, check and status
 * judge it. A csr service the ledger has rows for is issued online: its certificate is held by its
 * agent on its own host, so DIR/services/NAME/cert.pem is not where it lives.
 */

/** OnlineCert is one certificate the online CA issued, as its ledger row records it. */
export interface OnlineCert {
  /** serial: lower-case hex (pki/crl.ts serialHex form). */
  serial: string;
  der: Buffer;
  notBefore: Date;
  notAfter: Date;
  issuedAt: Date;
}

/** OnlineService is what the ledger holds for one csr service. */
export interface OnlineService {
  /** newest: its newest unrevoked certificate (expired or not); undefined when every one is revoked. */
  newest: OnlineCert | undefined;
}

/** OnlineFacts is the ledger as the read-only commands see it. */
export interface OnlineFacts {
  /** ledger: the file read (DIR/ca/ledger.db), or the database (postgres://HOST:PORT/DB, redacted). */
  ledger: string;
  /** services: the csr services with at least one row, by name. */
  services: ReadonlyMap<string, OnlineService>;
  /** stats: every row of the ledger (any service, also ones the manifest no longer declares). */
  stats: { certificates: number; revoked: number; tokensOutstanding: number };
}
