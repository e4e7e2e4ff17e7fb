/** CA rotation: the phase (prepare, activate, retire), since when, the next step, and the CAs. */
import type { Snapshot } from "../snapshot.ts";
import { dateTime, daysText } from "./format.ts";
import { useRenderedMark } from "./parts.tsx";
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
      <h2>Certificate authorities</h2>
      <div class="table-wrap">
        <table class="plain">
          <thead>
            <tr>
              <th scope="col">Role</th>
              <th scope="col">Subject</th>
              <th scope="col">Valid until</th>
              <th scope="col">Days left</th>
              <th scope="col">SHA-256</th>
            </tr>
          </thead>
          <tbody data-rows={snap.cas.length}>
            {snap.cas.map((c) => (
              <tr key={c.sha256 + c.role}>
                <td data-label="Role">{c.role}</td>
                <td data-label="Subject" class="mono wrap">
                  {c.subject}
                </td>
                <td data-label="Valid until">{dateTime(c.notAfter)}</td>
                <td data-label="Days left">{daysText(c.daysLeft)}</td>
                <td data-label="SHA-256" class="mono wrap">
                  {c.sha256}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
