/**
 * The online CA's error vocabulary (docs/online-ca.md, "Error codes"): one table from code to
 * HTTP status, and the error every route throws. http.ts renders it as the problem document
 * `{error, message, fix}`; nothing else ever reaches a client.
 */

/** PROBLEMS maps each error code to its HTTP status: the closed list the contract documents. */
export const PROBLEMS = {
  "bad-request": 400,
  "csr-malformed": 400,
  "csr-signature": 400,
  policy: 422,
  "unknown-service": 404,
  "not-found": 404,
  "token-malformed": 401,
  "token-unknown": 401,
  "token-expired": 401,
  "token-used": 401,
  "token-revoked": 401,
  "token-wrong-service": 403,
  "cert-required": 401,
  "cert-untrusted": 401,
  "cert-expired": 401,
  "cert-revoked": 403,
  "not-admin": 403,
  "not-online": 403,
  "no-crl": 404,
  "request-timeout": 408,
  "too-large": 413,
  "unsupported-media": 415,
  "headers-too-large": 431,
  internal: 500,
  "ledger-unavailable": 503,
  busy: 503,
  "ca-offline": 503,
} as const;

/** ProblemCode is one of PROBLEMS' codes. */
export type ProblemCode = keyof typeof PROBLEMS;

/** RefusalDoc is one policy refusal as the problem document lists it. */
export interface RefusalDoc {
  field: string;
  message: string;
  fix: string;
}

/** ProblemDoc is the body of every error response. */
export interface ProblemDoc {
  error: ProblemCode;
  message: string;
  fix: string;
  refusals?: RefusalDoc[];
}

/** ServeProblem is a refusal a route throws: the code decides the status; message and fix are for the client. */
export class ServeProblem extends Error {
  readonly code: ProblemCode;
  readonly fix: string;
  readonly refusals: RefusalDoc[] | undefined;
  constructor(code: ProblemCode, message: string, fix: string, refusals?: RefusalDoc[]) {
    super(message);
    this.name = "ServeProblem";
    this.code = code;
    this.fix = fix;
    this.refusals = refusals;
  }
  get status(): number {
    return PROBLEMS[this.code];
  }
  /** doc is the problem document. */
  doc(): ProblemDoc {
    return {
      error: this.code,
      message: this.message,
      fix: this.fix,
      ...(this.refusals ? { refusals: this.refusals } : {}),
    };
  }
}
