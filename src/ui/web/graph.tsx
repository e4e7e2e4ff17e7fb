/**
 * The connection graph: services as nodes, declared connections as edges coloured by check's
 * verdict, drawn on a canvas (layout.ts places them; one path per style, so 10,000 services draw in
 * a frame). Not colour alone: an error edge is thick with a ✕ at its middle, a warning edge is
 * dashed, an ok edge thin and solid. A click on an edge, or its row in the list below (the keyboard
 * way), shows its findings and their fixes.
 */
import type { Snapshot, UiConnection, Verdict } from "../snapshot.ts";
import { plural, VERDICT_ORDER } from "./format.ts";
import { type Layout, layoutGraph, segmentDistance } from "./layout.ts";
import { Badge, Choice, Findings, markRendered, PAGE_SIZE, Pager, VERDICT_CHOICES } from "./parts.tsx";
import { h, useEffect, useMemo, useRef, useState } from "./view.ts";

/**
 * EDGE_STYLE: each verdict's colour (against white: 5:1 and more, over the 3:1 graphics need), width
 * (CSS px) and dashes. ok edges are 1 px: the rasterizer draws a line of one device pixel as a
 * hairline, which at 10,000 services made the first render twice as fast as 1.25 px (measured,
 * ARCHITECTURE.md "The dashboard's front end").
 */
export const EDGE_STYLE: Record<Verdict, { color: string; width: number; dash: number[] }> = {
  ok: { color: "#15803d", width: 1, dash: [] },
  warning: { color: "#b45309", width: 2.5, dash: [7, 4] },
  error: { color: "#b91c1c", width: 3.5, dash: [] },
};
const NODE_COLOR = "#1e293b";
const NODE_RADIUS = 5;
/** CHUNK: segments or nodes per path before it is stroked or filled. */
const CHUNK = 500;
/** SETTLE_MS: how long the view stays still before the full draw replaces the scaled bitmap. */
const SETTLE_MS = 150;

interface View {
  s: number;
  tx: number;
  ty: number;
}

declare global {
  interface Window {
    /** mtlskitGraph: where an edge is drawn now (CSS pixels in the viewport), for tests and tooling. */
    mtlskitGraph?: { edgePoint: (index: number, t: number) => { x: number; y: number } | undefined };
  }
}

function fit(layout: Layout, w: number, height: number): View {
  const pad = 40;
  const s = Math.min(2, (w - 2 * pad) / Math.max(1, layout.width), (height - 2 * pad) / Math.max(1, layout.height));
  return { s, tx: (w - layout.width * s) / 2, ty: (height - layout.height * s) / 2 };
}

function draw(canvas: HTMLCanvasElement, snap: Snapshot, layout: Layout, view: View, selected: number | undefined) {
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.width / dpr;
  const hgt = canvas.height / dpr;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, w, hgt);
  ctx.setTransform(dpr * view.s, 0, 0, dpr * view.s, dpr * view.tx, dpr * view.ty);
  const { x, y, from, to } = layout;
  // What is on screen, in world units (with a margin for labels).
  const x0 = -view.tx / view.s - 100;
  const x1 = (w - view.tx) / view.s + 100;
  const y0 = -view.ty / view.s - 20;
  const y1 = (hgt - view.ty) / view.s + 20;
  const conns = snap.connections;
  const order: Verdict[] = ["ok", "warning", "error"];
  for (const verdict of order) {
    const st = EDGE_STYLE[verdict];
    ctx.strokeStyle = st.color;
    ctx.lineWidth = st.width / view.s;
    ctx.setLineDash(st.dash.map((d) => d / view.s));
    // Stroked in chunks: one huge path costs the software rasterizer far more than several small ones.
    let inPath = 0;
    ctx.beginPath();
    for (let k = 0; k < conns.length; k++) {
      if (conns[k]!.verdict !== verdict) continue;
      const a = from[k]!;
      const b = to[k]!;
      if (a < 0 || b < 0) continue;
      const ax = x[a]!;
      const ay = y[a]!;
      const bx = x[b]!;
      const by = y[b]!;
      if ((ax < x0 && bx < x0) || (ax > x1 && bx > x1) || (ay < y0 && by < y0) || (ay > y1 && by > y1)) continue;
      ctx.moveTo(ax, ay);
      ctx.lineTo(bx, by);
      if (++inPath === CHUNK) {
        ctx.stroke();
        ctx.beginPath();
        inPath = 0;
      }
    }
    ctx.stroke();
  }
  ctx.setLineDash([]);
  // Arrowheads (direction: caller -> callee) and error marks, when zoomed in enough to read them.
  if (view.s >= 0.35) {
    for (let k = 0; k < conns.length; k++) {
      const a = from[k]!;
      const b = to[k]!;
      if (a < 0 || b < 0) continue;
      const bx = x[b]!;
      const by = y[b]!;
      if (bx < x0 || bx > x1 || by < y0 || by > y1) continue;
      const ang = Math.atan2(by - y[a]!, bx - x[a]!);
      const tipx = bx - Math.cos(ang) * (NODE_RADIUS + 1);
      const tipy = by - Math.sin(ang) * (NODE_RADIUS + 1);
      const size = 7 / Math.max(view.s, 0.7);
      ctx.fillStyle = EDGE_STYLE[conns[k]!.verdict].color;
      ctx.beginPath();
      ctx.moveTo(tipx, tipy);
      ctx.lineTo(tipx - size * Math.cos(ang - 0.4), tipy - size * Math.sin(ang - 0.4));
      ctx.lineTo(tipx - size * Math.cos(ang + 0.4), tipy - size * Math.sin(ang + 0.4));
      ctx.fill();
    }
  }
  if (selected !== undefined && from[selected]! >= 0 && to[selected]! >= 0) {
    const a = from[selected]!;
    const b = to[selected]!;
    const st = EDGE_STYLE[conns[selected]!.verdict];
    ctx.strokeStyle = "#000000";
    ctx.lineWidth = (st.width + 5) / view.s;
    ctx.beginPath();
    ctx.moveTo(x[a]!, y[a]!);
    ctx.lineTo(x[b]!, y[b]!);
    ctx.stroke();
    ctx.strokeStyle = st.color;
    ctx.lineWidth = (st.width + 1) / view.s;
    ctx.setLineDash(st.dash.map((d) => d / view.s));
    ctx.stroke();
    ctx.setLineDash([]);
  }
  // Nodes: one path; labels only when readable.
  ctx.fillStyle = NODE_COLOR;
  const r = Math.max(NODE_RADIUS, 1.5 / view.s);
  const dots = r * view.s < 3;
  let inPath = 0;
  ctx.beginPath();
  for (let i = 0; i < x.length; i++) {
    const nx = x[i]!;
    const ny = y[i]!;
    if (nx < x0 || nx > x1 || ny < y0 || ny > y1) continue;
    if (dots) {
      // A node a few pixels wide: a square reads the same and costs a fraction of an arc.
      ctx.fillRect(nx - r, ny - r, 2 * r, 2 * r);
      continue;
    }
    ctx.moveTo(nx + r, ny);
    ctx.arc(nx, ny, r, 0, 2 * Math.PI);
    if (++inPath === CHUNK) {
      ctx.fill();
      ctx.beginPath();
      inPath = 0;
    }
  }
  ctx.fill();
  if (view.s >= 0.6) {
    ctx.font = `${12 / view.s}px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif`;
    ctx.textBaseline = "middle";
    ctx.fillStyle = "#0f172a";
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = 3 / view.s;
    ctx.lineJoin = "round";
    for (let i = 0; i < x.length; i++) {
      const nx = x[i]!;
      const ny = y[i]!;
      if (nx < x0 || nx > x1 || ny < y0 || ny > y1) continue;
      const name = snap.services[i]!.name;
      ctx.strokeText(name, nx + NODE_RADIUS + 3 / view.s, ny - 9 / view.s);
      ctx.fillText(name, nx + NODE_RADIUS + 3 / view.s, ny - 9 / view.s);
    }
  }
  // Error marks last, over nodes and labels: the ✕ must never be hidden.
  if (view.s >= 0.35) {
    for (let k = 0; k < conns.length; k++) {
      if (conns[k]!.verdict !== "error" || from[k]! < 0 || to[k]! < 0) continue;
      const mx = (x[from[k]!]! + x[to[k]!]!) / 2;
      const my = (y[from[k]!]! + y[to[k]!]!) / 2;
      if (mx < x0 || mx > x1 || my < y0 || my > y1) continue;
      const r = 7 / view.s;
      ctx.fillStyle = "#ffffff";
      ctx.strokeStyle = EDGE_STYLE.error.color;
      ctx.lineWidth = 2 / view.s;
      ctx.beginPath();
      ctx.arc(mx, my, r, 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
      ctx.beginPath();
      const d = r * 0.45;
      ctx.moveTo(mx - d, my - d);
      ctx.lineTo(mx + d, my + d);
      ctx.moveTo(mx + d, my - d);
      ctx.lineTo(mx - d, my + d);
      ctx.stroke();
    }
  }
}

/** hitEdge is the connection drawn nearest a world point, within `tolerance` world units. */
function hitEdge(layout: Layout, conns: UiConnection[], wx: number, wy: number, tolerance: number): number | undefined {
  let best: number | undefined;
  let bestD = tolerance;
  let bestRank = 3;
  for (let k = 0; k < conns.length; k++) {
    const a = layout.from[k]!;
    const b = layout.to[k]!;
    if (a < 0 || b < 0) continue;
    const d = segmentDistance(wx, wy, layout.x[a]!, layout.y[a]!, layout.x[b]!, layout.y[b]!);
    const rank = VERDICT_ORDER[conns[k]!.verdict];
    // Errors are drawn on top: at equal reach, the worst edge wins.
    if (d < bestD - 0.5 || (d <= bestD && rank < bestRank)) {
      best = k;
      bestD = d;
      bestRank = rank;
    }
  }
  return best;
}

export function GraphPage({ snap }: { snap: Snapshot }) {
  const layout = useMemo(() => layoutGraph(snap.services, snap.connections), [snap]);
  const canvasRef = useRef<HTMLCanvasElement>(null);
  const boxRef = useRef<HTMLDivElement>(null);
  const viewRef = useRef<View | undefined>(undefined);
  const [selected, setSelected] = useState<number | undefined>(undefined);
  const [size, setSize] = useState({ w: 0, h: 0 });
  const [tick, setTick] = useState(0);
  const [filter, setFilter] = useState<Verdict | "all">("all");
  const [page, setPage] = useState(0);
  const selectedRef = useRef(selected);
  selectedRef.current = selected;

  // The canvas follows its box's size.
  useEffect(() => {
    const box = boxRef.current!;
    const measure = () => setSize({ w: box.clientWidth, h: box.clientHeight });
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(box);
    return () => ro.disconnect();
  }, []);
  // A new layout (another snapshot's services) is fitted anew; the same one keeps the view.
  const lastLayout = useRef<{ layout: Layout; n: number } | undefined>(undefined);
  useEffect(() => {
    const prev = lastLayout.current;
    if (!prev || prev.n !== snap.services.length || !viewRef.current) {
      if (size.w > 0) viewRef.current = fit(layout, size.w, size.h);
    }
    lastLayout.current = { layout, n: snap.services.length };
  }, [layout, size.w, size.h]);

  // A full draw is kept as a bitmap: while the view moves (wheel, drag, keys) that bitmap is drawn
  // scaled and shifted, one drawImage, and the full draw follows once the view has been still for
  // SETTLE_MS. Rasterizing 10,000 nodes and their edges in software takes hundreds of milliseconds.
  // The bitmap is copied from the canvas when the view first moves after a full draw (copied: false),
  // so a full draw that is never moved costs no copy.
  const cacheRef = useRef<{ bitmap: HTMLCanvasElement; view: View; copied: boolean } | undefined>(undefined);
  const settleRef = useRef<number | undefined>(undefined);
  const redraw = () => {
    const canvas = canvasRef.current;
    const v = viewRef.current;
    if (!canvas || size.w === 0 || !v) return;
    window.clearTimeout(settleRef.current);
    draw(canvas, snap, layout, v, selectedRef.current);
    cacheRef.current = { bitmap: cacheRef.current?.bitmap ?? document.createElement("canvas"), view: v, copied: false };
  };
  const moved = () => {
    const canvas = canvasRef.current;
    const v = viewRef.current;
    const cache = cacheRef.current;
    const ctx = canvas?.getContext("2d");
    if (!canvas || !v || !ctx || !cache) return redraw();
    if (!cache.copied) {
      cache.bitmap.width = canvas.width;
      cache.bitmap.height = canvas.height;
      cache.bitmap.getContext("2d")?.drawImage(canvas, 0, 0);
      cache.copied = true;
    }
    if (cache.bitmap.width !== canvas.width || cache.bitmap.height !== canvas.height) return redraw();
    const dpr = window.devicePixelRatio || 1;
    const k = v.s / cache.view.s;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.setTransform(k, 0, 0, k, dpr * (v.tx - cache.view.tx * k), dpr * (v.ty - cache.view.ty * k));
    ctx.drawImage(cache.bitmap, 0, 0);
    window.clearTimeout(settleRef.current);
    settleRef.current = window.setTimeout(redraw, SETTLE_MS);
  };
  useEffect(() => () => window.clearTimeout(settleRef.current), []);
  useEffect(() => {
    const canvas = canvasRef.current;
    if (!canvas || size.w === 0) return;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(size.w * dpr);
    canvas.height = Math.round(size.h * dpr);
    viewRef.current ??= fit(layout, size.w, size.h);
    redraw();
    markRendered("graph");
  }, [size.w, size.h, layout, snap, selected, tick]);

  useEffect(() => {
    window.mtlskitGraph = {
      edgePoint: (index, t) => {
        const v = viewRef.current;
        const canvas = canvasRef.current;
        const a = layout.from[index];
        const b = layout.to[index];
        if (!v || !canvas || a === undefined || b === undefined || a < 0 || b < 0) return undefined;
        const rect = canvas.getBoundingClientRect();
        const wx = layout.x[a]! + (layout.x[b]! - layout.x[a]!) * t;
        const wy = layout.y[a]! + (layout.y[b]! - layout.y[a]!) * t;
        return { x: rect.left + v.tx + wx * v.s, y: rect.top + v.ty + wy * v.s };
      },
    };
    return () => {
      window.mtlskitGraph = undefined;
    };
  }, [layout]);

  const zoom = (factor: number, cx = size.w / 2, cy = size.h / 2) => {
    const v = viewRef.current;
    if (!v) return;
    const s = Math.min(8, Math.max(0.005, v.s * factor));
    viewRef.current = { s, tx: cx - ((cx - v.tx) * s) / v.s, ty: cy - ((cy - v.ty) * s) / v.s };
    moved();
  };
  const pan = (dx: number, dy: number) => {
    const v = viewRef.current;
    if (!v) return;
    viewRef.current = { ...v, tx: v.tx + dx, ty: v.ty + dy };
    moved();
  };
  const refit = () => {
    viewRef.current = fit(layout, size.w, size.h);
    redraw();
  };
  const select = (k: number | undefined, centre: boolean) => {
    setSelected(k);
    const v = viewRef.current;
    if (centre && k !== undefined && v && layout.from[k]! >= 0 && layout.to[k]! >= 0) {
      const mx = (layout.x[layout.from[k]!]! + layout.x[layout.to[k]!]!) / 2;
      const my = (layout.y[layout.from[k]!]! + layout.y[layout.to[k]!]!) / 2;
      viewRef.current = { ...v, tx: size.w / 2 - mx * v.s, ty: size.h / 2 - my * v.s };
    }
    setTick((t) => t + 1);
  };

  // Pointer: drag pans, a click (moved under 5 px) picks the nearest edge, the wheel zooms.
  const drag = useRef<{ x: number; y: number; moved: boolean } | undefined>(undefined);
  const onPointerDown = (e: PointerEvent) => {
    drag.current = { x: e.clientX, y: e.clientY, moved: false };
    (e.currentTarget as HTMLCanvasElement).setPointerCapture(e.pointerId);
  };
  const onPointerMove = (e: PointerEvent) => {
    const d = drag.current;
    if (!d) return;
    const dx = e.clientX - d.x;
    const dy = e.clientY - d.y;
    if (!d.moved && Math.hypot(dx, dy) < 5) return;
    d.moved = true;
    d.x = e.clientX;
    d.y = e.clientY;
    pan(dx, dy);
  };
  const onPointerUp = (e: PointerEvent) => {
    const d = drag.current;
    drag.current = undefined;
    const v = viewRef.current;
    if (!d || d.moved || !v) return;
    const rect = (e.currentTarget as HTMLCanvasElement).getBoundingClientRect();
    const wx = (e.clientX - rect.left - v.tx) / v.s;
    const wy = (e.clientY - rect.top - v.ty) / v.s;
    select(hitEdge(layout, snap.connections, wx, wy, 8 / v.s), false);
  };
  useEffect(() => {
    const canvas = canvasRef.current!;
    const onWheel = (e: WheelEvent) => {
      e.preventDefault();
      const rect = canvas.getBoundingClientRect();
      zoom(Math.exp(-e.deltaY * 0.0015), e.clientX - rect.left, e.clientY - rect.top);
    };
    canvas.addEventListener("wheel", onWheel, { passive: false });
    return () => canvas.removeEventListener("wheel", onWheel);
  });
  const onKeyDown = (e: KeyboardEvent) => {
    const step = 60;
    const keys: Record<string, () => void> = {
      ArrowLeft: () => pan(step, 0),
      ArrowRight: () => pan(-step, 0),
      ArrowUp: () => pan(0, step),
      ArrowDown: () => pan(0, -step),
      "+": () => zoom(1.25),
      "=": () => zoom(1.25),
      "-": () => zoom(0.8),
      "0": () => refit(),
      Escape: () => select(undefined, false),
    };
    const act = keys[e.key];
    if (act) {
      e.preventDefault();
      act();
    }
  };

  // The list: every connection, worst first, filtered and paged; the keyboard's way to an edge.
  const listed = useMemo(() => {
    const ks: number[] = [];
    snap.connections.forEach((c, k) => {
      if (filter === "all" || c.verdict === filter) ks.push(k);
    });
    const cs = snap.connections;
    ks.sort(
      (a, b) =>
        VERDICT_ORDER[cs[a]!.verdict] - VERDICT_ORDER[cs[b]!.verdict] ||
        (cs[a]!.from < cs[b]!.from ? -1 : cs[a]!.from > cs[b]!.from ? 1 : a - b),
    );
    return ks;
  }, [snap, filter]);
  const pages = Math.max(1, Math.ceil(listed.length / PAGE_SIZE));
  const at = Math.min(page, pages - 1);
  const conn = selected !== undefined ? snap.connections[selected] : undefined;
  const failing = snap.connections.filter((c) => c.verdict === "error").length;
  const warned = snap.connections.filter((c) => c.verdict === "warning").length;

  return (
    <section class="graph-page">
      <p class="summary" data-nodes={snap.services.length} data-edges={snap.connections.length}>
        {plural(snap.services.length, "service")}, {plural(snap.connections.length, "connection")}: {failing} failing,{" "}
        {warned} with warnings. Callers on the left, what they dial to the right.
      </p>
      <ul class="legend" aria-label="Legend">
        <li>
          <span class="swatch ok" aria-hidden="true" /> ok: thin solid line
        </li>
        <li>
          <span class="swatch warning" aria-hidden="true" /> warning: dashed line
        </li>
        <li>
          <span class="swatch error" aria-hidden="true" /> error: thick line with ✕
        </li>
      </ul>
      <div class="graph-tools">
        <button type="button" onClick={() => zoom(1.25)}>
          Zoom in
        </button>
        <button type="button" onClick={() => zoom(0.8)}>
          Zoom out
        </button>
        <button type="button" onClick={refit}>
          Fit
        </button>
      </div>
      <div class="graph-box" ref={boxRef}>
        <canvas
          ref={canvasRef}
          tabIndex={0}
          role="img"
          aria-label={`Connection graph of ${snap.services.length} services and ${snap.connections.length} connections; ${failing} failing. Arrow keys pan, + and - zoom, 0 fits. The list below holds every connection.`}
          onPointerDown={onPointerDown}
          onPointerMove={onPointerMove}
          onPointerUp={onPointerUp}
          onKeyDown={onKeyDown}
        />
      </div>
      <section class="edge-detail" aria-live="polite" aria-labelledby="edge-detail-title">
        {conn ? (
          <div data-selected-edge={selected}>
            <h2 id="edge-detail-title">
              {conn.from} → {conn.to} <Badge verdict={conn.verdict} />
            </h2>
            <p>
              Dials <code>{conn.address}</code> (connection {conn.index + 1} of the manifest).
            </p>
            <Findings snap={snap} indexes={conn.findings} />
            <button type="button" onClick={() => select(undefined, false)}>
              Clear selection
            </button>
          </div>
        ) : (
          <h2 id="edge-detail-title" class="muted small">
            Select a connection (click an edge, or a row below) to see its findings and fix.
          </h2>
        )}
      </section>
      <section aria-labelledby="edge-list-title">
        <h2 id="edge-list-title">Connections</h2>
        <Choice
          label="Verdict"
          inline
          value={filter}
          options={VERDICT_CHOICES}
          onChange={(v) => {
            setFilter(v);
            setPage(0);
          }}
        />
        <ul class="edges">
          {listed.slice(at * PAGE_SIZE, (at + 1) * PAGE_SIZE).map((k) => {
            const c = snap.connections[k]!;
            return (
              <li key={k}>
                <button
                  type="button"
                  class="edge"
                  data-edge={k}
                  aria-pressed={selected === k}
                  onClick={() => select(k, true)}
                >
                  <Badge verdict={c.verdict} /> {c.from} → {c.to} <span class="mono">@ {c.address}</span>
                </button>
              </li>
            );
          })}
        </ul>
        <Pager label="Connections" page={at} total={listed.length} onPage={setPage} />
      </section>
    </section>
  );
}
