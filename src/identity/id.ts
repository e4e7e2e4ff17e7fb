/**
 * Identities: one URI per service (SPIFFE `spiffe://domain/path` or a custom scheme such as
 * `netsy://{cluster}/{role}/{name}`), rendered from the manifest's template and validated with
 * rules strict enough that no parser can read two identities into one SAN (Node CVE-2021-44532).
 */

/** PLACEHOLDERS are the only names a template may use, each filled from the service. */
export const PLACEHOLDERS = ["cluster", "role", "name"] as const;

/** Placeholder is one template placeholder name. */
export type Placeholder = (typeof PLACEHOLDERS)[number];

/** templatePlaceholders lists the `{...}` names used in a template, in order, with repeats. */
export function templatePlaceholders(template: string): string[] {
  return [...template.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1]!);
}

/**
 * compileTemplate splits a template at its placeholders once and returns what fills them: the
 * manifest renders one identity per service, and a regular-expression replace for each of
 * 10,000 services cost more than the rest of their normalization (issue 12). Unknown
 * placeholders are left as written.
 */
export function compileTemplate(template: string): (values: Readonly<Record<Placeholder, string>>) => string {
  // Literal text at even indexes, placeholder names at odd ones.
  const parts = template.split(/\{(cluster|role|name)\}/);
  return (values) => {
    let out = parts[0]!;
    for (let i = 1; i < parts.length; i += 2) out += values[parts[i] as Placeholder] + parts[i + 1]!;
    return out;
  };
}

/** renderTemplate fills every placeholder; unknown placeholders are left as written. */
export function renderTemplate(template: string, values: Readonly<Record<Placeholder, string>>): string {
  return compileTemplate(template)(values);
}

/** Identity is a parsed identity URI. */
export interface Identity {
  /** uri is the identity as written in the certificate. */
  uri: string;
  scheme: string;
  /** authority is the SPIFFE trust domain, or the custom scheme's first part. */
  authority: string;
  /** segments are the path segments, without slashes. */
  segments: string[];
}

const SCHEME = /^[a-z][a-z0-9+.-]*$/;
const AUTHORITY = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
const MAX_URI_BYTES = 2048;

/**
 * parseIdentity parses an identity URI, or returns the rule it breaks as a sentence.
 * Rules (SPIFFE ID spec 2.1-2.3, applied to every scheme): `scheme://authority/seg/seg`, lowercase
 * scheme and authority of letters, digits, `.`, `-`, `_`; path segments of letters, digits, `.`,
 * `-`, `_`, none empty, `.` or `..`; no port, user info, query, fragment or trailing slash;
 * at most 2048 bytes.
 */
export function parseIdentity(uri: string): Identity | { error: string } {
  if (Buffer.byteLength(uri) > MAX_URI_BYTES) return { error: `is longer than ${MAX_URI_BYTES} bytes` };
  const m = /^([^:/?#]+):\/\/([^/?#]*)(\/[^?#]*)?$/.exec(uri);
  if (!m) return { error: "must look like scheme://authority/path, with no query or fragment" };
  const [, scheme, authority, path = ""] = m as unknown as [string, string, string, string | undefined];
  if (!SCHEME.test(scheme))
    return { error: `scheme "${scheme}" must be lowercase letters, digits, +, . or -, starting with a letter` };
  if (authority === "") return { error: "has no authority (trust domain) after ://" };
  if (!AUTHORITY.test(authority)) {
    return {
      error: `authority "${authority}" may hold only lowercase letters, digits, ".", "-" and "_" (no port, user info or upper case)`,
    };
  }
  const segments = path === "" ? [] : path.slice(1).split("/");
  for (const s of segments) {
    if (s === "") return { error: "has an empty path segment (a double or trailing slash)" };
    if (s === "." || s === "..") return { error: `has a "${s}" path segment` };
    if (!SEGMENT.test(s)) return { error: `path segment "${s}" may hold only letters, digits, ".", "-" and "_"` };
  }
  if (scheme === "spiffe" && segments.length === 0)
    return { error: "is a bare SPIFFE trust domain; a workload identity needs a path" };
  return { uri, scheme, authority, segments };
}
