/**
 * The service library: mutual TLS for Node services from mtlskit's certificates. Credential
 * sources, server and client options for tls, https and http2, peers read from DER, and
 * authorizers. Its own entry point is `mtlskit/service`: it loads only the decoding side of pki/
 * (never certificate building, YAML, valibot or the explain catalogue), so services start fast
 * and small; `mtlskit` re-exports it with the rest of the tool.
 *
 * @example
 * import https from "node:https";
 * import { loadStaticSource, createMtlsServer, authorizeId } from "mtlskit/service";
 * const source = loadStaticSource({ certFile: "pki/services/api/cert.pem", keyFile: "pki/services/api/key.pem", caFile: "pki/services/api/ca.pem" });
 * createMtlsServer(https.createServer, source, { authorize: authorizeId("spiffe://example.org/web") }, (req, res) => res.end("ok")).listen(8443);
 */
export { describePeer, peerFromDer, peerFromSocket, type NoIdentity, type Peer } from "./peer.ts";
export {
  AuthorizationError,
  allOf,
  anyOf,
  authorizeAny,
  authorizeId,
  authorizeMemberOf,
  authorizeOneOf,
  authorizeRole,
  type Authorizer,
} from "./authorize.ts";
export { authorizeSubject, normalizeDn, parseDn, type DnAttribute } from "./dn.ts";
export { authorizeRbac, rbacRoles, type RbacTable } from "./rbac.ts";
export { pinCertificate, pinSpki } from "./pins.ts";
export {
  loadStaticSource,
  parseCredentials,
  staticSource,
  type CredentialNames,
  type CredentialSource,
  type Credentials,
  type PemInput,
  type StaticFiles,
  type StaticSourceInput,
} from "./source.ts";
export {
  fileSource,
  type FileCredentialSource,
  type FileSourceDir,
  type FileSourceOptions,
  type Reload,
} from "./file-source.ts";
export {
  CIPHERS,
  HANDSHAKE_TIMEOUT_MS,
  authorizeServer,
  clientOptions,
  createMtlsServer,
  serverOptions,
  type ClientOptions,
  type MaxVersion,
  type MinVersion,
  type MtlsServerOptions,
  type ServerFactory,
  type ServerOptions,
} from "./options.ts";
export {
  SelfCheckError,
  assertReady,
  selfCheck,
  type IdentityTemplate,
  type SelfCheckOptions,
  type SelfCheckProblem,
} from "./self-check.ts";
// grpc.ts is its own entry point, `mtlskit/grpc`: importing the library must not load @grpc/grpc-js.
