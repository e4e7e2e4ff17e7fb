/** Small pieces the pages share: the verdict badge, findings with their fixes, the pager, the rendered mark. */
import type { Snapshot, UiFinding, Verdict } from "../snapshot.ts";
import { VERDICT_MARK, VERDICT_WORD } from "./format.ts";
import { type ComponentChildren, h, useEffect } from "./view.ts";

/** Badge is a verdict as colour, symbol and word. */
export function Badge({ verdict }: { verdict: Verdict }) {
  return (
    <span class={`badge ${verdict}`} data-verdict={verdict}>
      <span aria-hidden="true">{VERDICT_MARK[verdict]}</span> {VERDICT_WORD[verdict]}
    </span>
  );
}

const SEVERITY: Record<UiFinding["severity"], Verdict> = { error: "error", warning: "warning", info: "ok" };

/** Findings lists findings by index: code, what it is about, the message and the fix (check's words). */
export function Findings({ snap, indexes }: { snap: Snapshot; indexes: number[] }) {
  if (indexes.length === 0) return <p class="muted">No findings.</p>;
  return (
    <ul class="findings">
      {indexes.map((i) => {
        const f = snap.findings[i];
        if (!f) return null;
        return (
          <li key={i} class={`finding ${SEVERITY[f.severity]}`}>
            <p>
              <span class={`badge ${SEVERITY[f.severity]}`}>
                <span aria-hidden="true">{VERDICT_MARK[SEVERITY[f.severity]]}</span> {f.severity}
              </span>{" "}
              <code>{f.code}</code> <span class="about">{f.about}</span>
            </p>
            <p class="message">{f.message}</p>
            <p class="fix">
              <strong>Fix:</strong> <span data-fix="">{f.fix}</span>
            </p>
          </li>
        );
      })}
    </ul>
  );
}

/** DataTable is a titled table of rows of cells (a card per row on narrow screens); `empty` when there is none. */
export function DataTable(props: {
  caption: string;
  heads: string[];
  rows: ComponentChildren[][];
  empty: string;
  id: string;
}) {
  return (
    <section aria-labelledby={`${props.id}-title`}>
      <h2 id={`${props.id}-title`}>{props.caption}</h2>
      {props.rows.length === 0 ? (
        <p class="muted">{props.empty}</p>
      ) : (
        <div class="table-wrap">
          <table class="plain" data-table={props.id}>
            <thead>
              <tr>
                {props.heads.map((head) => (
                  <th key={head} scope="col">
                    {head}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody data-rows={props.rows.length}>
              {props.rows.map((r, i) => (
                <tr key={i}>
                  {r.map((cell, j) => (
                    <td key={props.heads[j]} data-label={props.heads[j]}>
                      {cell}
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** Choice is a labelled select among `options` (the first is usually "all"). */
export function Choice<T extends string>(props: {
  label: string;
  value: T;
  options: readonly T[];
  onChange: (v: T) => void;
  inline?: boolean;
}) {
  return (
    <label class={props.inline ? "inline" : undefined}>
      {props.label}{" "}
      <select value={props.value} onChange={(e) => props.onChange((e.target as HTMLSelectElement).value as T)}>
        {props.options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    </label>
  );
}

/** VERDICT_CHOICES: a verdict filter's options. */
export const VERDICT_CHOICES = ["all", "error", "warning", "ok"] as const;

/** PAGE_SIZE is how many rows a table shows at once: 10,000 rows stay usable by paging. */
export const PAGE_SIZE = 50;

/** Pager moves through `total` rows PAGE_SIZE at a time. */
export function Pager(props: { label: string; page: number; total: number; onPage: (p: number) => void }) {
  const pages = Math.max(1, Math.ceil(props.total / PAGE_SIZE));
  const page = Math.min(props.page, pages - 1);
  const first = props.total === 0 ? 0 : page * PAGE_SIZE + 1;
  const last = Math.min(props.total, (page + 1) * PAGE_SIZE);
  return (
    <nav class="pager" aria-label={`${props.label} pages`}>
      <button type="button" disabled={page === 0} onClick={() => props.onPage(0)}>
        First
      </button>
      <button type="button" disabled={page === 0} onClick={() => props.onPage(page - 1)}>
        Previous
      </button>
      <span class="pos" aria-live="polite">
        {first.toLocaleString("en-US")}–{last.toLocaleString("en-US")} of {props.total.toLocaleString("en-US")}
      </span>
      <button type="button" disabled={page >= pages - 1} onClick={() => props.onPage(page + 1)}>
        Next
      </button>
      <button type="button" disabled={page >= pages - 1} onClick={() => props.onPage(pages - 1)}>
        Last
      </button>
    </nav>
  );
}

/**
 * markRendered records `mtlskit:rendered:PAGE` (a performance mark, once per page load) when a
 * page first shows its data on screen: `npm run bench:ui` reads it (time from navigation to rendered).
 */
export function markRendered(page: string): void {
  const name = `mtlskit:rendered:${page}`;
  // Two animation frames on: the frame holding the change has been produced (painted, canvas rasterized).
  requestAnimationFrame(() =>
    requestAnimationFrame(() => {
      if (performance.getEntriesByName(name).length === 0) performance.mark(name);
    }),
  );
}

/** useRenderedMark marks the page rendered after its first commit to the DOM. */
export function useRenderedMark(page: string): void {
  useEffect(() => markRendered(page), [page]);
}
