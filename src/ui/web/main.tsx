/**
 * The dashboard's entry (`mtlskit ui`, issue 17): the header with the counts, hash routing
 * between the pages, and the live snapshot. Every page renders the Snapshot (../snapshot.ts) only.
 */
import type { Snapshot } from "../snapshot.ts";
import { plural } from "./format.ts";
import { GraphPage } from "./graph.tsx";
import { InventoryPage } from "./inventory.tsx";
import { type LiveState, startLive } from "./live.ts";
import { OnlinePage } from "./online.tsx";
import { RotationPage } from "./rotation.tsx";
import { TimelinePage } from "./timeline.tsx";
import { h, render, useEffect, useState } from "./view.ts";

/** PAGES: the routes (`#/inventory`), their titles and views. */
const PAGES = [
  { id: "inventory", title: "Inventory", view: InventoryPage },
  { id: "timeline", title: "Expiry timeline", view: TimelinePage },
  { id: "graph", title: "Connections", view: GraphPage },
  { id: "rotation", title: "CA rotation", view: RotationPage },
  { id: "online", title: "Online CA", view: OnlinePage },
] as const;
type PageId = (typeof PAGES)[number]["id"];

function routeOf(hash: string): PageId {
  const id = hash.replace(/^#\/?/, "").split("?")[0];
  return PAGES.find((p) => p.id === id)?.id ?? "inventory";
}

function Counts({ snap }: { snap: Snapshot }) {
  const c = snap.counts;
  const items: [string, string, number, string][] = [
    ["services", "Services", c.services, ""],
    ["certificates", "Certificates", c.certificates, ""],
    ["errors", "Errors", c.errors, c.errors > 0 ? "bad" : ""],
    ["warnings", "Warnings", c.warnings, c.warnings > 0 ? "warn" : ""],
    ["renewalDue", "Renewal due", c.renewalDue, c.renewalDue > 0 ? "warn" : ""],
    ["connections", "Connections", c.connections, ""],
    ["failingConnections", "Failing connections", c.failingConnections, c.failingConnections > 0 ? "bad" : ""],
  ];
  return (
    <dl class="counts" aria-label="Counts">
      {items.map(([key, label, n, tone]) => (
        <div class={`count ${tone}`} key={key}>
          <dt>{label}</dt>
          <dd data-count={key}>{n.toLocaleString("en-US")}</dd>
        </div>
      ))}
    </dl>
  );
}

const LIVE_WORDS: Record<LiveState, string> = {
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
};

function App() {
  const [snap, setSnap] = useState<Snapshot | undefined>(undefined);
  const [live, setLive] = useState<LiveState>("connecting");
  const [page, setPage] = useState<PageId>(routeOf(location.hash));

  useEffect(() => startLive(setSnap, setLive), []);
  useEffect(() => {
    const onHash = () => setPage(routeOf(location.hash));
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);
  const current = PAGES.find((p) => p.id === page)!;
  useEffect(() => {
    document.title = snap ? `${current.title} · ${snap.cluster} · mtlskit` : "mtlskit dashboard";
  }, [current, snap?.cluster]);

  const View = current.view;
  return (
    <div class="app">
      <button type="button" class="skip" onClick={skipToMain}>
        Skip to content
      </button>
      <header class="top">
        <div class="brand">
          <p class="title">
            mtlskit <span class="cluster">{snap?.cluster ?? ""}</span>
          </p>
          <p class="status" data-version={snap?.version ?? ""}>
            <span class={`dot ${live}`} aria-hidden="true" />
            {LIVE_WORDS[live]}
            {snap ? ` · version ${snap.version} · read ${snap.generatedAt.slice(11, 19)} UTC` : ""}
          </p>
        </div>
        {snap ? <Counts snap={snap} /> : null}
        <nav aria-label="Pages">
          <ul>
            {PAGES.map((p) => (
              <li key={p.id}>
                <a href={`#/${p.id}`} aria-current={p.id === page ? "page" : undefined}>
                  {p.title}
                </a>
              </li>
            ))}
          </ul>
        </nav>
      </header>
      <main id="main" tabIndex={-1}>
        <h1>{current.title}</h1>
        {snap ? (
          <View snap={snap} />
        ) : (
          <p class="loading" role="status">
            Loading the snapshot…
          </p>
        )}
      </main>
      <footer class="foot">
        {snap ? (
          <p>
            {plural(snap.services.length, "service")} from <code>{snap.manifest}</code>, PKI <code>{snap.pki}</code>.
            Read-only.
          </p>
        ) : null}
      </footer>
      <p class="sr-only" aria-live="polite">
        {snap ? `Snapshot version ${snap.version}` : ""}
      </p>
    </div>
  );
}

/** skipToMain moves focus to the main region (a button: the hash is the route). */
function skipToMain() {
  document.getElementById("main")?.focus();
}

const root = document.getElementById("app")!;
root.textContent = "";
render(<App />, root);
