/** Online CA: what the ledger says: recent issuances, refusals by reason, outstanding tokens, revocations. */
import type { Snapshot } from "../snapshot.ts";
import { dateTime, plural } from "./format.ts";
import { DataTable, useRenderedMark } from "./parts.tsx";
import { h } from "./view.ts";

export function OnlinePage({ snap }: { snap: Snapshot }) {
  useRenderedMark("online");
  const o = snap.online;
  if (!o)
    return (
      <p class="summary" data-online="none">
        No online CA: this PKI has no ledger (<code>mtlskit serve</code> creates one).
      </p>
    );
  const mono = (s: string) => <span class="mono wrap">{s}</span>;
  return (
    <section>
      <p class="summary" data-online={o.ledger} data-issued={o.issued} data-revoked={o.revoked}>
        Ledger <code>{o.ledger}</code>: {plural(o.issued, "certificate")} issued, {o.revoked} revoked,{" "}
        {plural(o.tokens.length, "outstanding token")}.
      </p>
      <DataTable
        id="recent"
        caption="Recent issuances"
        heads={["Serial", "Service", "Issued", "Valid until", "Requester", "How"]}
        rows={o.recent.map((r) => [
          mono(r.serial),
          r.service,
          dateTime(r.issuedAt),
          dateTime(r.notAfter),
          r.requester ?? "—",
          r.how,
        ])}
        empty="Nothing issued yet."
      />
      {o.refusals ? (
        <DataTable
          id="refusals"
          caption="Refusals by reason"
          heads={["Reason", "Count"]}
          rows={o.refusals.map((r) => [r.reason, r.count.toLocaleString("en-US")])}
          empty="No refusals."
        />
      ) : (
        <p class="muted">
          Refusals are counted by a dashboard mounted inside <code>mtlskit serve</code>; the ledger does not record
          them.
        </p>
      )}
      <DataTable
        id="tokens"
        caption="Outstanding bootstrap tokens"
        heads={["Token id", "Service", "Expires", "ACME"]}
        rows={o.tokens.map((t) => [mono(t.id), t.service, dateTime(t.expiresAt), t.acme ? "yes" : "no"])}
        empty="No outstanding token."
      />
      <DataTable
        id="revocations"
        caption="Revocations"
        heads={["Serial", "Service", "Reason", "When"]}
        rows={o.revocations.map((r) => [mono(r.serial), r.service ?? "—", r.reason ?? "—", dateTime(r.at)])}
        empty="Nothing revoked."
      />
    </section>
  );
}
