/**
 * Certificate signing requests (PKCS#10, RFC 2986): subject, key, the extensions requested in
 * the extensionRequest attribute (decoded by the certificate decoder, so they read as they
 * would in the certificate), and whether the request's self-signature verifies.
 */
import { createPublicKey, verify } from "node:crypto";
import { bytesOf, children, contentsOf, readTlv, TAG } from "../pki/der.ts";
import { decodeOid } from "../pki/x509.ts";
import { decodeParts, keyInfo, requestedOf } from "./describe.ts";
import type { CsrItem, Where } from "./item.ts";

/** EXTENSION_REQUEST is the PKCS#9 attribute carrying requested extensions (RFC 2985 5.4.2). */
const EXTENSION_REQUEST = "1.2.840.113549.1.9.14";

const ATTRIBUTES: Record<string, string> = {
  "1.2.840.113549.1.9.7": "challengePassword",
  "1.2.840.113549.1.9.2": "unstructuredName",
};

function expect(t: { tag: number } | undefined, tag: number, what: string): asserts t {
  if (!t || t.tag !== tag) throw new Error(`${what} is missing or has the wrong type`);
}

/** describeCsr decodes a PKCS#10 request; it throws naming the part that is malformed. */
export function describeCsr(der: Buffer, where: Where): CsrItem {
  const [criT, algT, sigT] = children(der, readTlv(der, 0));
  expect(criT, TAG.sequence, "CertificationRequestInfo");
  expect(algT, TAG.sequence, "signatureAlgorithm");
  expect(sigT, TAG.bitString, "signature");
  const [, subjectT, spkiT, attrsT] = children(der, criT);
  expect(subjectT, TAG.sequence, "subject");
  expect(spkiT, TAG.sequence, "subjectPKInfo");
  let extensions: Buffer | undefined;
  const attributes: string[] = [];
  for (const a of attrsT?.tag === 0xa0 ? children(der, attrsT) : []) {
    const [typeT, valuesT] = children(der, a);
    expect(typeT, TAG.oid, "attribute type");
    const type = decodeOid(contentsOf(der, typeT));
    if (type === EXTENSION_REQUEST && valuesT) {
      const first = children(der, valuesT)[0];
      if (first) extensions = bytesOf(der, first);
    } else attributes.push(ATTRIBUTES[type] ?? type);
  }
  const spki = bytesOf(der, spkiT);
  const info = decodeParts({
    spki,
    subject: bytesOf(der, subjectT),
    signatureAlgorithm: bytesOf(der, algT),
    ...(extensions ? { extensions } : {}),
  });
  const hash = info.signatureAlgorithm.hash;
  let signature: string;
  if (hash === undefined) signature = `not checked (${info.signatureAlgorithm.name})`;
  else {
    try {
      signature = verify(
        hash,
        bytesOf(der, criT),
        createPublicKey({ key: spki, format: "der", type: "spki" }),
        contentsOf(der, sigT).subarray(1),
      )
        ? "valid"
        : "invalid";
    } catch {
      signature = "invalid";
    }
  }
  return {
    kind: "csr",
    ...where,
    subject: info.subject,
    key: keyInfo(info.publicKey, spki),
    signatureAlgorithm: info.signatureAlgorithm.name,
    signature,
    ...requestedOf(info),
    attributes,
    matches: undefined,
  };
}
