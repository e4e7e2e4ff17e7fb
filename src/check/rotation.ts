/**
 * check during a CA rotation: every declared connection must handshake with either end one phase
 * behind (a service that has not reloaded since the last `mtlskit ca rotate` step), and the next
 * step must not break one. The phases come from src/ca/rotation.ts (PHASES); which CA issued a
 * certificate and which CAs a bundle holds come from the files, by signature and by content.
 * readRotationFacts is the I/O edge; judgeRotation is pure apart from signature checks.
 */
import * as path from "node:path";
import type { Manifest } from "../manifest/index.ts";
import { issuerOf, PHASES, type Generation, type Phase } from "../ca/rotation.ts";
import { abs, LAYOUT } from "../state/layout.ts";
import { readRotation, type RotationRecord } from "../state/rotation.ts";
import { finding, type Finding } from "./finding.ts";
import { isProblem, readCertFile, type Inventory, type ServiceFiles } from "./inventory.ts";
import type { Cert, Material } from "./material.ts";

/** RotationFacts: the rotation record and the two CAs' certificates, as found in the PKI directory. */
export interface RotationFacts {
  record: RotationRecord;
  /** certs: the old and the new CA's certificates, where they could be read. */
  certs: Partial<Record<Generation, Cert>>;
}

/** readRotationFacts reads DIR/ca/rotation.json and the certificates of both CAs; undefined without a rotation record (or a damaged one: apply and plan say why). */
export function readRotationFacts(material: Material, dir: string): RotationFacts | undefined {
  const read = readRotation(dir);
  if (read.status !== "ok") return undefined;
  const record = read.record;
  const first = (rel: string): Cert | undefined => {
    const f = readCertFile(material, path.isAbsolute(rel) ? rel : abs(dir, rel));
    return isProblem(f) ? undefined : f.certs[0];
  };
  if (record.imported) {
    // Imported CAs: their certificates where the organisation keeps them.
    const certs: Partial<Record<Generation, Cert>> = {};
    const old = first(record.imported.old.cert);
    const next = first(record.imported.next.cert);
    if (old?.sha256 === record.oldCa) certs.old = old;
    if (next?.sha256 === record.newCa) certs.new = next;
    return { record, certs };
  }
  const retired = LAYOUT.retiredCa(record.oldCa.slice(0, 16)).cert.rel;
  const swapped = record.phase === "retiring" || record.phase === "retired";
  const certs: Partial<Record<Generation, Cert>> = {};
  const old = first(swapped ? retired : LAYOUT.caCert.rel);
  const next = first(LAYOUT.nextCa.cert.rel) ?? (swapped ? first(LAYOUT.caCert.rel) : undefined);
  if (old?.sha256 === record.oldCa) certs.old = old;
  if (next?.sha256 === record.newCa) certs.new = next;
  return { record, certs };
}

const GEN_WORDS: Record<Generation, string> = { old: "old CA", new: "next CA" };
const gensText = (gens: readonly Generation[]) => gens.map((g) => GEN_WORDS[g]).join(" and ") || "neither CA";

/**
 * judgeRotation: for each declared connection and each direction (a presenter's certificate, a
 * verifier's bundle), with either end one phase behind, the presenter's issuer must be in the
 * verifier's bundle (rotation-lag, an error on the connection); and the step that comes next
 * must keep that true (rotation-unsafe-step, a warning naming the step and what it would break).
 * Once retired, only services whose reload is still owed count as behind.
 */
export function judgeRotation(material: Material, manifest: Manifest, inv: Inventory, facts: RotationFacts): Finding[] {
  const { record, certs } = facts;
  const phase: Phase = record.phase;
  const previous = PHASES[phase].previous;
  const byName = new Map(inv.services.map((s) => [s.service.name, s]));
  const out: Finding[] = [];
  const genOf = (leaf: Cert | undefined): Generation | undefined =>
    leaf === undefined
      ? undefined
      : (["old", "new"] as const).find((g) => certs[g] !== undefined && material.signedBy(leaf, certs[g]!));
  const bundleGens = (sf: ServiceFiles): Generation[] | undefined =>
    isProblem(sf.bundle)
      ? undefined
      : (["old", "new"] as const).filter((g) => {
          const c = certs[g];
          return c !== undefined && !isProblem(sf.bundle) && sf.bundle.certs.some((b) => b.sha256 === c.sha256);
        });
  // Once retired, the rotation is over: a service is still one phase behind only while its reload is owed.
  const mayLag = (service: string) => phase !== "retired" || record.reloadPending.includes(service);
  const leafOf = (sf: ServiceFiles, role: "client" | "server"): Cert | undefined => {
    const slot = sf.slots.find((s) => s.slot.kind === (role === "client" ? "client" : "main")) ?? sf.slots[0];
    return slot && !isProblem(slot.cert) ? slot.cert.certs[0] : undefined;
  };
  // Connections, each end one phase behind in turn.
  for (const c of manifest.connections) {
    const client = byName.get(c.from);
    const server = byName.get(c.to);
    if (!client || !server || client.external || server.external) continue;
    const about = { kind: "connection" as const, index: c.index, from: c.from, to: c.to, address: c.address.text };
    for (const [p, v, role] of [
      [client, server, "client"],
      [server, client, "server"],
    ] as const) {
      const name = p.service.name;
      const vName = v.service.name;
      const have = genOf(leafOf(p, role));
      const vBundle = bundleGens(v);
      if (have === undefined || vBundle === undefined) continue; // the ordinary checks name an unknown issuer or a missing bundle
      const behindBundle = PHASES[previous].bundle;
      if (!behindBundle.includes(have) && mayLag(vName))
        out.push(
          finding(
            "rotation-lag",
            about,
            `during the CA rotation (${phase}), ${vName} one phase behind (${previous}: a bundle with the ${gensText(behindBundle)}) would refuse ${name}'s certificate from the ${GEN_WORDS[have]}`,
            `let ${vName} reload its ca.pem (with both CAs) before ${name} presents a certificate from the ${GEN_WORDS[have]}: run the rotation's steps in order (mtlskit ca rotate --help)`,
          ),
        );
      const before = issuerOf(previous, record, name);
      if (!vBundle.includes(before) && mayLag(name))
        out.push(
          finding(
            "rotation-lag",
            about,
            `during the CA rotation (${phase}), ${name} one phase behind still presents its certificate from the ${GEN_WORDS[before]}, which ${vName}'s bundle ${isProblem(v.bundle) ? "" : v.bundle.path} no longer holds (it holds the ${gensText(vBundle)})`,
            record.forced?.includes(name) || record.forced?.some((f) => f.startsWith(`${name}/`))
              ? `retire --force retired the old CA before ${name} was activated: make sure ${name} has reloaded its new certificate (its reload hook, or a restart)`
              : `reload ${name} with its certificate from the next CA before the old CA leaves ${vName}'s bundle`,
          ),
        );
    }
  }
  // The step that comes next, against what is on disk now.
  const next = PHASES[phase].next;
  const unsafe = (service: string, message: string, fix: string) =>
    out.push(finding("rotation-unsafe-step", { kind: "service", service }, message, fix));
  const managed = inv.services.filter((s) => !s.external);
  if (record.done && record.reloadPending.length > 0) {
    const last = phase === "prepared" ? "prepare" : phase === "active" ? "activate" : "retire";
    for (const s of record.reloadPending)
      unsafe(
        s,
        `${s}'s reload hook has not succeeded since \`mtlskit ca rotate ${last}\`: it may still hold the files from before it, so ${next ? `\`mtlskit ca rotate ${next}\` now could break its connections` : "its connections may break"}`,
        `fix ${s}'s reload hook, then run \`mtlskit ca rotate ${last}\` again (it retries the hook)`,
      );
  }
  if (next === "activate" || (phase === "active" && !record.activatedAll)) {
    for (const s of managed) {
      const gens = bundleGens(s);
      if (gens && !gens.includes("new"))
        unsafe(
          s.service.name,
          `\`mtlskit ca rotate activate\` now would break ${s.service.name}'s connections: its bundle ${isProblem(s.bundle) ? "" : s.bundle.path} lacks the next CA, so it would refuse every certificate the next CA issues`,
          "run `mtlskit ca rotate prepare` again (it rewrites every bundle with both CAs and runs the reload hooks), then activate",
        );
    }
  }
  if (phase === "active" && record.activatedAll) {
    for (const s of managed) {
      const old = s.slots.filter((x) => !isProblem(x.cert) && genOf(x.cert.certs[0]) === "old").map((x) => x.slot.id);
      if (old.length > 0)
        unsafe(
          s.service.name,
          `\`mtlskit ca rotate retire\` now would break ${s.service.name}'s connections: ${old.join(", ")} still chain${old.length === 1 ? "s" : ""} to the old CA, which retire removes from every bundle`,
          "run `mtlskit ca rotate activate` again (it re-issues them from the next CA), let the service reload, then retire",
        );
    }
  }
  return out;
}
