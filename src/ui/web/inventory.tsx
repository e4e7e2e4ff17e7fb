/**
 * Inventory: every service and its certificates (usage, SANs, identity, days left, verdict,
 * findings), sorted, filtered and searched; paged so that 10,000 services stay usable.
 */
import type { Snapshot, UiCertificate, UiService, Verdict } from "../snapshot.ts";
import { dateTime, daysText, plural, VERDICT_ORDER } from "./format.ts";
import { Badge, Choice, Findings, PAGE_SIZE, Pager, useRenderedMark, VERDICT_CHOICES } from "./parts.tsx";
import { Fragment, h, useMemo, useState } from "./view.ts";

/** Row is a service with what the table sorts and searches by, computed once per snapshot. */
interface Row {
  service: UiService;
  certs: UiCertificate[];
  sans: string[];
  daysLeft: number | undefined;
  search: string;
}

const USAGE_CHOICES = ["all", "server", "client", "dual"] as const;

type SortKey = "name" | "usage" | "daysLeft" | "verdict" | "findings";
const COLUMNS: { key: SortKey | undefined; label: string }[] = [
  { key: "name", label: "Service" },
  { key: "usage", label: "Usage" },
  { key: undefined, label: "Identity" },
  { key: undefined, label: "SANs" },
  { key: "daysLeft", label: "Days left" },
  { key: "verdict", label: "Verdict" },
  { key: "findings", label: "Findings" },
];

function rowsOf(snap: Snapshot): Row[] {
  const byId = new Map(snap.certificates.map((c) => [c.id, c]));
  return snap.services.map((service) => {
    const certs = service.certificates.map((id) => byId.get(id)).filter((c): c is UiCertificate => c !== undefined);
    const sans = [...new Set(certs.length > 0 ? certs.flatMap((c) => c.sans.map((s) => s.value)) : service.addresses)];
    let daysLeft: number | undefined;
    for (const c of certs)
      if (c.daysLeft !== undefined && (daysLeft === undefined || c.daysLeft < daysLeft)) daysLeft = c.daysLeft;
    const search = [service.name, service.role ?? "", service.identity ?? "", ...sans].join("\n").toLowerCase();
    return { service, certs, sans, daysLeft, search };
  });
}

const COMPARE: Record<SortKey, (a: Row, b: Row) => number> = {
  name: (a, b) => (a.service.name < b.service.name ? -1 : a.service.name > b.service.name ? 1 : 0),
  usage: (a, b) => a.service.usage.localeCompare(b.service.usage),
  daysLeft: (a, b) => (a.daysLeft ?? Number.POSITIVE_INFINITY) - (b.daysLeft ?? Number.POSITIVE_INFINITY),
  verdict: (a, b) => VERDICT_ORDER[a.service.verdict] - VERDICT_ORDER[b.service.verdict],
  findings: (a, b) => a.service.findings.length - b.service.findings.length,
};

export function InventoryPage({ snap }: { snap: Snapshot }) {
  const rows = useMemo(() => rowsOf(snap), [snap]);
  const [query, setQuery] = useState("");
  const [verdict, setVerdict] = useState<Verdict | "all">("all");
  const [usage, setUsage] = useState<UiService["usage"] | "all">("all");
  const [sort, setSort] = useState<{ key: SortKey; desc: boolean }>({ key: "verdict", desc: false });
  const [page, setPage] = useState(0);
  const [open, setOpen] = useState<Set<string>>(new Set());

  const shown = useMemo(() => {
    const q = query.trim().toLowerCase();
    const out = rows.filter(
      (r) =>
        (verdict === "all" || r.service.verdict === verdict) &&
        (usage === "all" || r.service.usage === usage) &&
        (q === "" || r.search.includes(q)),
    );
    const cmp = COMPARE[sort.key];
    out.sort((a, b) => (sort.desc ? -cmp(a, b) : cmp(a, b)) || COMPARE.name(a, b));
    return out;
  }, [rows, query, verdict, usage, sort]);
  useRenderedMark("inventory");

  const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
  const at = Math.min(page, pages - 1);
  const visible = shown.slice(at * PAGE_SIZE, (at + 1) * PAGE_SIZE);
  const reset =
    <T,>(set: (v: T) => void) =>
    (v: T) => {
      set(v);
      setPage(0);
    };
  const toggle = (name: string) => {
    const next = new Set(open);
    if (next.has(name)) next.delete(name);
    else next.add(name);
    setOpen(next);
  };

  return (
    <section aria-labelledby="inventory-summary">
      <p
        id="inventory-summary"
        class="summary"
        data-services={snap.services.length}
        data-certificates={snap.certificates.length}
      >
        {plural(snap.services.length, "service")}, {plural(snap.certificates.length, "certificate")}
        {shown.length !== rows.length ? `; ${shown.length.toLocaleString("en-US")} match` : ""}.
      </p>
      <search>
        <form class="filters" onSubmit={(e) => e.preventDefault()}>
          <label>
            Search
            <input
              type="search"
              value={query}
              placeholder="name, identity, SAN"
              onInput={(e) => reset(setQuery)((e.target as HTMLInputElement).value)}
            />
          </label>
          <Choice label="Verdict" value={verdict} options={VERDICT_CHOICES} onChange={reset(setVerdict)} />
          <Choice label="Usage" value={usage} options={USAGE_CHOICES} onChange={reset(setUsage)} />
        </form>
      </search>
      <div class="table-wrap">
        <table class="inventory">
          <caption class="sr-only">Services and their certificates; column headers sort</caption>
          <thead>
            <tr>
              {COLUMNS.map((c) => (
                <th
                  key={c.label}
                  scope="col"
                  aria-sort={c.key && sort.key === c.key ? (sort.desc ? "descending" : "ascending") : undefined}
                >
                  {c.key ? (
                    <button
                      type="button"
                      class="sort"
                      onClick={() => {
                        setSort({ key: c.key!, desc: sort.key === c.key ? !sort.desc : false });
                        setPage(0);
                      }}
                    >
                      {c.label}
                      <span aria-hidden="true">{sort.key === c.key ? (sort.desc ? " ▼" : " ▲") : ""}</span>
                    </button>
                  ) : (
                    c.label
                  )}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {visible.map((r) => (
              <ServiceRow key={r.service.name} snap={snap} row={r} open={open.has(r.service.name)} onToggle={toggle} />
            ))}
          </tbody>
        </table>
      </div>
      {visible.length === 0 ? <p class="muted">No service matches.</p> : null}
      <Pager label="Inventory" page={at} total={shown.length} onPage={setPage} />
    </section>
  );
}

function ServiceRow(props: { snap: Snapshot; row: Row; open: boolean; onToggle: (name: string) => void }) {
  const { service, certs, sans, daysLeft } = props.row;
  const detailId = `svc-${service.name}`;
  // The certificates' cards show their own findings; the rest (connections, files) are listed after them.
  const onCerts = new Set(certs.flatMap((c) => c.findings));
  const other = service.findings.filter((i) => !onCerts.has(i));
  return (
    <Fragment>
      <tr class={`row ${service.verdict}`} data-service={service.name}>
        <th scope="row" data-label="Service">
          <button
            type="button"
            class="disclose"
            aria-expanded={props.open}
            aria-controls={props.open ? detailId : undefined}
            onClick={() => props.onToggle(service.name)}
          >
            <span aria-hidden="true">{props.open ? "▾ " : "▸ "}</span>
            {service.name}
          </button>
          {service.role ? <span class="muted"> {service.role}</span> : null}
        </th>
        <td data-label="Usage">{service.usage}</td>
        <td data-label="Identity" class="mono wrap">
          {service.identity ?? "—"}
        </td>
        <td data-label="SANs" class="mono wrap">
          {sans.slice(0, 3).join(", ")}
          {sans.length > 3 ? ` +${sans.length - 3} more` : ""}
        </td>
        <td
          data-label="Days left"
          data-days={daysLeft ?? ""}
          class={daysLeft !== undefined && daysLeft < 0 ? "bad-text" : ""}
        >
          {daysText(daysLeft)}
        </td>
        <td data-label="Verdict">
          <Badge verdict={service.verdict} />
        </td>
        <td data-label="Findings">{service.findings.length}</td>
      </tr>
      {props.open ? (
        <tr class="detail" id={detailId}>
          <td colSpan={7}>
            <div class="certs">
              {certs.length === 0 ? <p class="muted">No certificate yet ({service.issuance}).</p> : null}
              {certs.map((c) => (
                <CertCard key={c.id} snap={props.snap} cert={c} />
              ))}
            </div>
            {other.length > 0 || certs.length === 0 ? (
              <Fragment>
                <h3>{certs.length > 0 ? `Other findings about ${service.name}` : `Findings about ${service.name}`}</h3>
                <Findings snap={props.snap} indexes={other} />
              </Fragment>
            ) : null}
          </td>
        </tr>
      ) : null}
    </Fragment>
  );
}

function CertCard({ snap, cert }: { snap: Snapshot; cert: UiCertificate }) {
  return (
    <section class="cert" aria-label={`Certificate ${cert.id}`}>
      <h3>
        {cert.id} <Badge verdict={cert.verdict} />
        {cert.revoked ? <span class="badge error">revoked</span> : null}
      </h3>
      <dl class="facts">
        <dt>Usages</dt>
        <dd>{cert.usages.join(", ") || "—"}</dd>
        <dt>SANs</dt>
        <dd class="mono wrap">{cert.sans.map((s) => `${s.type}:${s.value}`).join(", ") || "—"}</dd>
        <dt>Identity</dt>
        <dd class="mono wrap">{cert.identity ?? "—"}</dd>
        <dt>Subject</dt>
        <dd class="mono wrap">{cert.subject ?? "—"}</dd>
        <dt>Issuer</dt>
        <dd class="mono wrap">{cert.issuer ?? "—"}</dd>
        <dt>Valid</dt>
        <dd>
          {dateTime(cert.notBefore)} → <span data-not-after={cert.notAfter ?? ""}>{dateTime(cert.notAfter)}</span> (
          {daysText(cert.daysLeft)})
        </dd>
        <dt>Renews from</dt>
        <dd>{dateTime(cert.renewAt)}</dd>
        <dt>Serial</dt>
        <dd class="mono wrap">{cert.serial ?? "—"}</dd>
        <dt>SHA-256</dt>
        <dd class="mono wrap">{cert.sha256 ?? "—"}</dd>
        <dt>Source</dt>
        <dd>
          {cert.source}
          {cert.file ? ` (${cert.file})` : ""}
        </dd>
      </dl>
      {cert.findings.length > 0 ? <Findings snap={snap} indexes={cert.findings} /> : null}
    </section>
  );
}
