/**
 * How items relate: the certificates of one file as a chain (is each signed by the next, and if
 * not, why: wrong order, a missing link, an issuer with the right name but another key), and
 * which certificate each key or CSR belongs to (equal SubjectPublicKeyInfo), across every input.
 */
import { CODES, type Cert, type Material } from "../check/index.ts";
import type { CertificateItem, Inspection, Item } from "./item.ts";

type Linked = { item: CertificateItem; cert: Cert };

/**
 * linkChain sets `signedByNext` on each certificate of one file and returns notes on the chain's
 * order. A file that starts with a CA while its leaf comes later is an error, not a note: OpenSSL
 * (SSL_CTX_use_certificate_chain_file), Go (tls.X509KeyPair takes Certificate[0]) and Node serve
 * the first certificate as the leaf, so such a file serves the CA; the error is a lint of that
 * first certificate, so it counts towards the exit code.
 */
export function linkChain(material: Material, certs: readonly Linked[]): string[] {
  const n = certs.length;
  if (n < 2) return [];
  // Only a certificate whose subject is the child's issuer name is tried, so that a bundle of
  // hundreds of roots costs no signature checks.
  const signs = (child: number, issuer: number) =>
    certs[issuer]!.cert.fields.subject.equals(certs[child]!.cert.fields.issuer) &&
    material.signedBy(certs[child]!.cert, certs[issuer]!.cert);
  const by = certs.map((_, i) => certs.findIndex((__, j) => j !== i && signs(i, j)));
  certs.forEach((c, i) => void (c.item.signedByNext = i < n - 1 ? by[i] === i + 1 || signs(i, i + 1) : undefined));
  if (by.every((j) => j < 0) && certs.every((c) => c.item.ca))
    return [`no certificate in this file signed another: ${n} separate certificates (a trust bundle?), not a chain`];
  const at = (i: number) => `[${certs[i]!.item.index}]`;
  const leaf = servedCa(certs, by);
  const notes: string[] = [];
  if (leaf !== undefined) flagServedCa(certs, by, leaf, at);
  else notes.push(...orderNotes(certs, by, at));
  // A root sent in the chain is harmless (RFC 8446 4.4.2 lets the sender omit it), so it is a note.
  const hasLeaf = certs.some((c) => !c.item.ca);
  certs.forEach((c, i) => {
    if (hasLeaf && c.item.ca && c.item.selfSigned && by.includes(i))
      notes.push(
        `${at(i)} (${c.item.subject}) is the self-signed root: allowed in a chain file but unnecessary, since every peer verifies against the root in its own trust bundle (ca.pem), never one the chain sends`,
      );
  });
  return notes;
}

/** servedCa is the index of the leaf when the file starts with a CA and a leaf signed by a certificate of the file comes later. */
function servedCa(certs: readonly Linked[], by: readonly number[]): number | undefined {
  if (!certs[0]!.item.ca) return undefined;
  const k = certs.findIndex((c, i) => i > 0 && !c.item.ca && by[i]! >= 0);
  return k > 0 ? k : undefined;
}

/** flagServedCa adds the error to the first certificate: the leaf, block by block, and the order that serves it. */
function flagServedCa(certs: readonly Linked[], by: readonly number[], leaf: number, at: (i: number) => string): void {
  const path: number[] = [];
  for (let i = leaf; i >= 0 && !path.includes(i); i = by[i]!) path.push(i);
  const first = certs[0]!.item;
  first.lints.push({
    code: "chain-order",
    severity: CODES["chain-order"].severity,
    message: `the first certificate is a CA (${first.subject || "(empty subject)"}); the leaf ${certs[leaf]!.item.subject || "(empty subject)"} is block ${at(leaf)}. OpenSSL, Go and Node serve the first certificate of a chain file as the leaf, so this file serves the CA, and the leaf's key does not match it (\`key values mismatch\`, \`private key does not match public key\`)`,
    change: `put the leaf first, then each issuer after what it signed: blocks ${path.map(at).join(", ")} in that order (cat leaf.pem intermediate.pem > FILE)`,
  });
}

/** orderNotes says where an issuer is not right after what it signed, and where a link is missing. */
function orderNotes(certs: readonly Linked[], by: readonly number[], at: (i: number) => string): string[] {
  const notes: string[] = [];
  const n = certs.length;
  certs.forEach((c, i) => {
    const j = by[i]!;
    if (j >= 0 && j !== i + 1)
      notes.push(
        `the order is wrong: ${at(i)} is signed by ${at(j)}, which should come right after it; list the leaf first, then each issuer after what it signed`,
      );
    else if (j < 0 && i < n - 1 && !c.item.selfSigned) {
      const next = certs[i + 1]!;
      if (next.cert.fields.subject.equals(c.cert.fields.issuer))
        notes.push(
          `${at(i)} names ${at(i + 1)} (${next.item.subject}) as its issuer, but ${at(i + 1)}'s key did not sign it (a CA re-created under the same name?)`,
        );
      // A certificate that signed one after it is above those, not below: that is an order
      // problem (noted above for what it signed), not a gap before the next certificate.
      else if (!by.some((k, m) => m > i && k === i))
        notes.push(
          `a link is missing: nothing in this file signed ${at(i)} (its issuer is ${c.item.issuer || "(empty)"}); that certificate belongs between ${at(i)} and ${at(i + 1)}`,
        );
    }
  });
  return notes;
}

const hasKey = (i: Item): i is Extract<Item, { matches: string[] | undefined }> =>
  i.kind === "private-key" || i.kind === "public-key" || i.kind === "csr";

/** matchKeys fills `matches` of every key and CSR with the certificates, in any input, that carry the same public key. */
export function matchKeys(inspections: readonly Inspection[]): Inspection[] {
  const certs = inspections.flatMap((f) =>
    f.items
      .filter((i): i is CertificateItem => i.kind === "certificate")
      .map((c) => ({ c, name: `${f.name} [${c.index}] ${c.subject || "(empty subject)"}` })),
  );
  if (certs.length === 0) return inspections.slice();
  return inspections.map((f) => ({
    ...f,
    items: f.items.map((i) =>
      hasKey(i) && i.key
        ? { ...i, matches: certs.filter(({ c }) => c.key.spkiSha256 === i.key!.spkiSha256).map(({ name }) => name) }
        : i,
    ),
  }));
}
