/**
 * AcmeStore: the ACME server's state (src/acme/), kept by the ledger beside certificates and
 * tokens: EAB keys' HMAC keys, accounts, orders, authorizations (their challenges inside) and
 * nonces. A ledger exposes it as `Ledger.acme`; a ledger without it (a door that does not keep
 * ACME state yet) serves no ACME directory. Both doors implement it on the same three tables
 * (schema 3: acme_eab, acme_objects, acme_nonces): sqlite.ts through its group commit, postgres.ts
 * with conditional statements that hold across replicas (a nonce is a DELETE ... RETURNING, a
 * binding the token's conditional UPDATE, a replacement UPDATE ... WHERE version = n-1).
 *
 * Objects are JSON documents with a version: a write names the version it replaces, so two
 * concurrent finalizations of one order cannot both win (compare and swap, in one transaction
 * for every row of a write).
 */
import type { TokenRecord } from "./ledger.ts";

/** AcmeKind: the ACME objects kept (RFC 8555 §7.1): accounts, orders, authorizations (with their challenges). */
export type AcmeKind = "account" | "order" | "authz";

/** AcmeRow is one stored object. */
export interface AcmeRow {
  kind: AcmeKind;
  /** id: the object's URL path segment (random base64url). */
  id: string;
  /** version: 1 when created; each write names the next version (the stored one plus one). */
  version: number;
  /** lookup: a second unique key of its kind (an account: its key's JWK thumbprint, RFC 7638); undefined: none. */
  lookup: string | undefined;
  /** doc: the object as JSON text (src/acme/protocol.ts's types). */
  doc: string;
}

/** EabVerdict: an EAB key id's HMAC key while it may still bind an account, or why not. */
export type EabVerdict =
  | { ok: true; token: TokenRecord; hmacKey: Buffer }
  | { ok: false; reason: "unknown" | "expired" | "used" | "revoked" | "wrong-kind" };

/** AcmeWriteOutcome: every row written, or nothing (a version moved on, a lookup taken, the EAB key no longer usable). */
export type AcmeWriteOutcome =
  | { ok: true }
  | {
      ok: false;
      reason: "conflict" | "lookup-taken" | "token-used" | "token-expired" | "token-revoked" | "token-unknown";
    };

/** AcmeStore is what the ACME server reads and writes; every method may reject with LedgerUnavailableError. */
export interface AcmeStore {
  /**
   * eabKey reads the HMAC key of an `acme` token (`mtlskit token create SERVICE --acme`) that has
   * not bound an account yet, is not revoked and has not expired at `now`.
   */
  eabKey(id: string, now: Date): Promise<EabVerdict>;
  /** get reads one object by kind and id. */
  get(kind: AcmeKind, id: string): Promise<AcmeRow | undefined>;
  /** find reads the object of `kind` whose lookup key is `lookup` (an account by its key's thumbprint). */
  find(kind: AcmeKind, lookup: string): Promise<AcmeRow | undefined>;
  /**
   * write stores every row in one transaction: a row of version 1 is created (its id and lookup
   * must be new), a row of version n replaces version n-1. `bind` consumes an EAB token in the
   * same transaction (its usedBy becomes `acme:ACCOUNT`), so one EAB key binds one account.
   * Resolves once durable; nothing is written when the outcome is not ok.
   */
  write(rows: AcmeRow[], bind?: { tokenId: string; account: string; now: Date }): Promise<AcmeWriteOutcome>;
  /** addNonce records a fresh nonce, usable once until `expiresAt`. Not durable: a restart forgets nonces, and clients retry on badNonce. */
  addNonce(nonce: string, expiresAt: Date): Promise<void>;
  /** useNonce consumes a nonce: true exactly once for a nonce added and not expired at `now`. */
  useNonce(nonce: string, now: Date): Promise<boolean>;
}
