/**
 * How items relate: the certificates of one file as a chain (is each signed by the next, and if
 * not, why: wrong order, a missing link, an issuer with the right name but another key), and
 * which certificate each key or CSR belongs to (equal SubjectPublicKeyInfo), across every input.
 */
import type { Cert, Material } from "../check/index.ts";
import type { CertificateItem, Inspection, Item } from "./item.ts";

/** linkChain sets `signedByNext` on each certificate of one file and returns notes on the chain's order. */
export function linkChain(material: Material, certs: readonly { item: CertificateItem; cert: Cert }[]): string[] {
  const n = certs.length;
  if (n < 2) return [];
  // Only a certificate whose subject is the child's issuer name is tried, so that a bundle of
  // hundreds of roots costs no signature checks.
  const signs = (child: number, issuer: number) => certs[issuer]!.cert.fields.subject.equals(certs[child]!.cert.fields.issuer) && material.signedBy(certs[child]!.cert, certs[issuer]!.cert);
  const by = certs.map((_, i) => certs.findIndex((__, j) => j !== i && signs(i, j)));
  certs.forEach((c, i) => void (c.item.signedByNext = i < n - 1 ? by[i] === i + 1 || signs(i, i + 1) : undefined));
  if (by.every((j) => j < 0) && certs.every((c) => c.item.ca)) return [`no certificate in this file signed another: ${n} separate certificates (a trust bundle?), not a chain`];
  const notes: string[] = [];
  const at = (i: number) => `[${certs[i]!.item.index}]`;
  certs.forEach((c, i) => {
    const j = by[i]!;
    if (j >= 0 && j !== i + 1) notes.push(`the order is wrong: ${at(i)} is signed by ${at(j)}, which should come right after it; list the leaf first, then each issuer after what it signed`);
    else if (j < 0 && i < n - 1 && !c.item.selfSigned) {
      const next = certs[i + 1]!;
      if (next.cert.fields.subject.equals(c.cert.fields.issuer)) notes.push(`${at(i)} names ${at(i + 1)} (${next.item.subject}) as its issuer, but ${at(i + 1)}'s key did not sign it (a CA re-created under the same name?)`);
      else notes.push(`a link is missing: nothing in this file signed ${at(i)} (its issuer is ${c.item.issuer || "(empty)"}); that certificate belongs between ${at(i)} and ${at(i + 1)}`);
    }
  });
  return notes;
}

const hasKey = (i: Item): i is Extract<Item, { matches: string[] | undefined }> => i.kind === "private-key" || i.kind === "public-key" || i.kind === "csr";

/** matchKeys fills `matches` of every key and CSR with the certificates, in any input, that carry the same public key. */
export function matchKeys(inspections: readonly Inspection[]): Inspection[] {
  const certs = inspections.flatMap((f) => f.items.filter((i): i is CertificateItem => i.kind === "certificate").map((c) => ({ c, name: `${f.name} [${c.index}] ${c.subject || "(empty subject)"}` })));
  if (certs.length === 0) return inspections.slice();
  return inspections.map((f) => ({
    ...f,
    items: f.items.map((i) => (hasKey(i) && i.key ? { ...i, matches: certs.filter(({ c }) => c.key.spkiSha256 === i.key!.spkiSha256).map(({ name }) => name) } : i)),
  }));
}
