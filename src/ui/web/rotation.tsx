/** CA rotation: the phase (prepare, activate, retire), since when, the next step, and the CAs. */
import type { Snapshot } from "../snapshot.ts";
import { dateTime, daysText } from "./format.ts";
import { DataTable, useRenderedMark } from "./parts.tsx";
import { h } from "./view.ts";

/** STEPS: the rotation's phases in order (src/ca/rotation.ts PHASES), each with what it means. */
const STEPS: [string, string][] = [
  ["none", "one CA; no rotation under way"],
  ["prepared", "the next CA exists and is trusted beside the current one (mtlskit ca rotate prepare)"],
  ["active", "services are re-issued by the next CA, batch by batch (mtlskit ca rotate activate)"],
  ["retiring", "the next CA is becoming the CA; the old one leaves the bundles (mtlskit ca rotate retire)"],
  ["retired", "the old CA is retired; the next CA is the only one"],
];

export function RotationPage({ snap }: { snap: Snapshot }) {
  useRenderedMark("rotation");
  const phase = snap.rotation?.phase ?? "none";
  const known = STEPS.some(([p]) => p === phase);
  return (
    <section>
      <p class="summary" data-phase={phase}>
        Phase: <strong>{phase}</strong>
        {snap.rotation?.since ? ` since ${dateTime(snap.rotation.since)}` : ""}.
        {snap.rotation?.next ? (
          <span>
            {" "}
            Next: <code>{snap.rotation.next}</code>
          </span>
        ) : (
          " Nothing to do."
        )}
      </p>
      <ol class="steps">
        {(known ? STEPS : [...STEPS, [phase, "recorded phase"] as [string, string]]).map(([p, says]) => (
          <li key={p} class={p === phase ? "current" : ""} aria-current={p === phase ? "step" : undefined}>
            <strong>{p}</strong>
            {p === phase ? " (current)" : ""}: {says}
          </li>
        ))}
      </ol>
      <DataTable
        id="cas"
        caption="Certificate authorities"
        heads={["Role", "Subject", "Valid until", "Days left", "SHA-256"]}
        rows={snap.cas.map((c) => [
          c.role,
          <span class="mono wrap">{c.subject}</span>,
          dateTime(c.notAfter),
          daysText(c.daysLeft),
          <span class="mono wrap">{c.sha256}</span>,
        ])}
        empty="No CA certificate found."
      />
    </section>
  );
}
