/**
 * Expiry timeline: the CAs and every certificate on one time axis, soonest expiry first; the
 * renewal window (renewAt to notAfter) hatched, today a line. Each row also says it in words.
 */
import type { Snapshot } from "../snapshot.ts";
import { day, daysText, plural } from "./format.ts";
import { Badge, PAGE_SIZE, Pager, useRenderedMark } from "./parts.tsx";
import { h, useMemo, useState } from "./view.ts";

const DAY = 86_400_000;

interface Bar {
  key: string;
  label: string;
  kind: string;
  from: number;
  to: number;
  renewAt: number | undefined;
  daysLeft: number | undefined;
  verdict: "ok" | "warning" | "error";
}

export function TimelinePage({ snap }: { snap: Snapshot }) {
  const now = Date.parse(snap.generatedAt);
  const [wide, setWide] = useState(false);
  const [dueOnly, setDueOnly] = useState(false);
  const [page, setPage] = useState(0);
  const { cas, certs } = useMemo(() => {
    const cas: Bar[] = snap.cas.map((c) => ({
      key: `ca:${c.sha256}`,
      label: `${c.role} CA: ${c.subject}`,
      kind: c.role,
      from: Date.parse(c.notBefore),
      to: Date.parse(c.notAfter),
      renewAt: undefined,
      daysLeft: c.daysLeft,
      verdict: c.daysLeft < 0 ? "error" : c.daysLeft < 30 ? "warning" : "ok",
    }));
    const certs: Bar[] = snap.certificates
      .filter((c) => c.notBefore && c.notAfter)
      .map((c) => ({
        key: c.id,
        label: c.id,
        kind: "certificate",
        from: Date.parse(c.notBefore!),
        to: Date.parse(c.notAfter!),
        renewAt: c.renewAt ? Date.parse(c.renewAt) : undefined,
        daysLeft: c.daysLeft,
        verdict: c.verdict,
      }))
      .sort((a, b) => a.to - b.to || (a.key < b.key ? -1 : 1));
    return { cas, certs };
  }, [snap]);
  useRenderedMark("timeline");
  const missing = snap.certificates.length - certs.length;

  const due = dueOnly ? certs.filter((c) => c.renewAt !== undefined && c.renewAt <= now) : certs;
  const pages = Math.max(1, Math.ceil(due.length / PAGE_SIZE));
  const at = Math.min(page, pages - 1);
  const rows = due.slice(at * PAGE_SIZE, (at + 1) * PAGE_SIZE);
  // The axis: a month before now to the latest certificate's end (or the CAs' when asked).
  let start = now - 30 * DAY;
  let end = now + 90 * DAY;
  for (const c of certs) end = Math.max(end, c.to);
  if (wide) for (const c of cas) (start = Math.min(start, c.from)), (end = Math.max(end, c.to));
  end += (end - start) * 0.02;
  const pct = (t: number) => Math.max(0, Math.min(100, ((t - start) / (end - start)) * 100));
  const ticks: number[] = [];
  const span = end - start;
  const stepDays = span > 3 * 365 * DAY ? 365 : span > 400 * DAY ? 90 : span > 120 * DAY ? 30 : 7;
  for (let t = Math.ceil(start / (stepDays * DAY)) * stepDays * DAY; t < end && ticks.length < 40; t += stepDays * DAY)
    ticks.push(t);

  return (
    <section>
      <p class="summary" data-certificates={snap.certificates.length} data-cas={snap.cas.length}>
        {plural(snap.cas.length, "CA")}, {plural(snap.certificates.length, "certificate")}
        {missing > 0 ? ` (${missing} without a certificate yet)` : ""}; {plural(snap.counts.renewalDue, "certificate")}{" "}
        in the renewal window. Soonest expiry first.
      </p>
      <ul class="legend" aria-label="Legend">
        <li>
          <span class="swatch valid" aria-hidden="true" /> valid
        </li>
        <li>
          <span class="swatch window" aria-hidden="true" /> renewal window (hatched)
        </li>
        <li>
          <span class="swatch now" aria-hidden="true" /> today ({day(snap.generatedAt)})
        </li>
      </ul>
      <div class="filters">
        <label class="inline">
          <input type="checkbox" checked={wide} onChange={(e) => setWide((e.target as HTMLInputElement).checked)} />{" "}
          Show the CAs' whole lifetimes
        </label>
        <label class="inline">
          <input
            type="checkbox"
            checked={dueOnly}
            onChange={(e) => {
              setDueOnly((e.target as HTMLInputElement).checked);
              setPage(0);
            }}
          />{" "}
          Only certificates due for renewal
        </label>
      </div>
      <div class="timeline">
        <div class="axis" aria-hidden="true">
          {ticks.map((t) => (
            <span key={t} class="tick" style={{ left: `${pct(t)}%` }}>
              {new Date(t).toISOString().slice(0, stepDays >= 365 ? 4 : 7)}
            </span>
          ))}
        </div>
        <h2 class="small">Certificate authorities</h2>
        <ul class="bars">
          {cas.map((b) => (
            <BarRow key={b.key} bar={b} pct={pct} now={now} />
          ))}
        </ul>
        <h2 class="small">Certificates</h2>
        <ul class="bars" data-rows={rows.length}>
          {rows.map((b) => (
            <BarRow key={b.key} bar={b} pct={pct} now={now} />
          ))}
        </ul>
      </div>
      <Pager label="Timeline" page={at} total={due.length} onPage={setPage} />
    </section>
  );
}

function BarRow({ bar, pct, now }: { bar: Bar; pct: (t: number) => number; now: number }) {
  const left = pct(bar.from);
  const right = pct(bar.to);
  const renew = bar.renewAt !== undefined ? pct(bar.renewAt) : undefined;
  const words =
    `valid ${day(new Date(bar.from).toISOString())} to ${day(new Date(bar.to).toISOString())}, ${daysText(bar.daysLeft)} left` +
    (bar.renewAt !== undefined
      ? bar.renewAt <= now
        ? ", in its renewal window"
        : `, renewal from ${day(new Date(bar.renewAt).toISOString())}`
      : "");
  return (
    <li class="bar-row" data-id={bar.key}>
      <span class="bar-label">
        <span class="mono">{bar.label}</span> <Badge verdict={bar.verdict} />
        <span class="sr-only">: {words}</span>
      </span>
      <span class="track" aria-hidden="true" title={words}>
        <span class={`bar ${bar.verdict}`} style={{ left: `${left}%`, width: `${Math.max(0.4, right - left)}%` }} />
        {renew !== undefined && renew < right ? (
          <span class="window" style={{ left: `${renew}%`, width: `${Math.max(0.4, right - renew)}%` }} />
        ) : null}
        <span class="now" style={{ left: `${pct(now)}%` }} />
      </span>
    </li>
  );
}
