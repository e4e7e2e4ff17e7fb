/**
 * Certificate signing requests (PKCS#10, RFC 2986) shown readably: subject, key, the extensions
 * requested in the extensionRequest attribute, and whether the request's self-signature
 * verifies. The decoding is pki/csr.ts's, shared with ca/policy.ts.
 */
import { csrSignature, decodeCsr } from "../pki/csr.ts";
import { keyInfo, requestedOf } from "./describe.ts";
import type { CsrItem, Where } from "./item.ts";

/** describeCsr decodes a PKCS#10 request; it throws naming the part that is malformed. */
export function describeCsr(der: Buffer, where: Where): CsrItem {
  const csr = decodeCsr(der);
  const info = csr.decoded;
  return {
    kind: "csr",
    ...where,
    subject: info.subject,
    key: keyInfo(info.publicKey, csr.spki),
    signatureAlgorithm: info.signatureAlgorithm.name,
    signature: csrSignature(csr),
    ...requestedOf(info),
    attributes: csr.attributes,
    matches: undefined,
  };
}
