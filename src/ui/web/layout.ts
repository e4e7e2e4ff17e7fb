/**
 * The connection graph's layout: layered, deterministic and linear in services + connections, so
 * 10,000 services are placed in milliseconds (a force-directed layout is quadratic per iteration
 * and different on every run). A service's layer is its longest path from the services nothing
 * dials (the callers on the left, what they dial to the right; cycles broken breadth-first); within a layer services are
 * ordered by the mean row of their callers (one barycentre sweep), then by role and name; a layer
 * taller than COLUMN_ROWS wraps into several columns. Pure: the same snapshot, the same picture.
 */
import type { UiConnection, UiService } from "../snapshot.ts";

/** Layout is where each service sits (world units) and each connection's end points. */
export interface Layout {
  /** x, y: node i's centre (services in snapshot order). */
  x: Float64Array;
  y: Float64Array;
  /** from, to: connection k's node indexes (-1: a service the snapshot does not list). */
  from: Int32Array;
  to: Int32Array;
  width: number;
  height: number;
}

export const COLUMN_GAP = 200;
export const ROW_GAP = 26;

export function layoutGraph(services: UiService[], connections: UiConnection[]): Layout {
  const n = services.length;
  const index = new Map<string, number>();
  services.forEach((s, i) => index.set(s.name, i));
  const m = connections.length;
  const from = new Int32Array(m);
  const to = new Int32Array(m);
  const outs: number[][] = Array.from({ length: n }, () => []);
  const ins: number[][] = Array.from({ length: n }, () => []);
  const indegree = new Int32Array(n);
  for (let k = 0; k < m; k++) {
    const c = connections[k]!;
    const a = index.get(c.from) ?? -1;
    const b = index.get(c.to) ?? -1;
    from[k] = a;
    to[k] = b;
    if (a >= 0 && b >= 0 && a !== b) {
      outs[a]!.push(b);
      ins[b]!.push(a);
      indegree[b] = indegree[b]! + 1;
    }
  }

  // Layers: the longest path from the services nothing dials (Kahn's order), so every connection of
  // an acyclic part points right; what a cycle holds up is placed breadth-first after its callers.
  const layer = new Int32Array(n).fill(-1);
  const depth = new Int32Array(n);
  const waiting = Int32Array.from(indegree);
  const queue = new Int32Array(n);
  let head = 0;
  let tail = 0;
  for (let i = 0; i < n; i++) if (waiting[i] === 0) queue[tail++] = i;
  while (head < tail) {
    const v = queue[head++]!;
    layer[v] = depth[v]!;
    for (const w of outs[v]!) {
      depth[w] = Math.max(depth[w]!, depth[v]! + 1);
      waiting[w] = waiting[w]! - 1;
      if (waiting[w] === 0) queue[tail++] = w;
    }
  }
  for (let i = 0; i < n; i++) {
    if (layer[i] !== -1) continue;
    layer[i] = depth[i]!;
    head = tail = 0;
    queue[tail++] = i;
    while (head < tail) {
      const v = queue[head++]!;
      for (const w of outs[v]!) {
        if (layer[w] === -1) {
          layer[w] = Math.max(depth[w]!, layer[v]! + 1);
          queue[tail++] = w;
        }
      }
    }
  }

  let layers = 0;
  for (let i = 0; i < n; i++) layers = Math.max(layers, layer[i]! + 1);
  const members: number[][] = Array.from({ length: layers }, () => []);
  for (let i = 0; i < n; i++) members[layer[i]!]!.push(i);

  const COLUMN_ROWS = Math.max(12, Math.ceil(Math.sqrt(n) * 1.5));
  const rowOf = new Float64Array(n);
  const x = new Float64Array(n);
  const y = new Float64Array(n);
  const byName = (a: number, b: number) => {
    const sa = services[a]!;
    const sb = services[b]!;
    const ra = sa.role ?? "";
    const rb = sb.role ?? "";
    if (ra !== rb) return ra < rb ? -1 : 1;
    return sa.name < sb.name ? -1 : sa.name > sb.name ? 1 : 0;
  };
  let column = 0;
  let maxRows = 0;
  const key = new Float64Array(n);
  for (let l = 0; l < layers; l++) {
    const list = members[l]!;
    if (l === 0) list.sort(byName);
    else {
      for (const v of list) {
        let sum = 0;
        let count = 0;
        for (const u of ins[v]!) {
          if (layer[u]! < l) {
            sum += rowOf[u]!;
            count++;
          }
        }
        key[v] = count > 0 ? sum / count : Number.POSITIVE_INFINITY;
      }
      list.sort((a, b) => key[a]! - key[b]! || byName(a, b));
    }
    const cols = Math.max(1, Math.ceil(list.length / COLUMN_ROWS));
    const rows = Math.ceil(list.length / cols);
    maxRows = Math.max(maxRows, rows);
    list.forEach((v, i) => {
      const c = Math.floor(i / rows);
      const r = i % rows;
      rowOf[v] = list.length <= 1 ? 0 : (i / (list.length - 1)) * 1000;
      x[v] = (column + c) * COLUMN_GAP;
      // Odd columns sit half a row lower: an edge that skips a column passes between its nodes, not through one.
      y[v] = r * ROW_GAP + ((column + c) % 2) * (ROW_GAP / 2);
    });
    column += cols;
  }
  // Centre each column vertically on the tallest one.
  const height = Math.max(0, (maxRows - 1) * ROW_GAP + ROW_GAP / 2);
  const colHeight = new Map<number, number>();
  for (let i = 0; i < n; i++) colHeight.set(x[i]!, Math.max(colHeight.get(x[i]!) ?? 0, y[i]!));
  for (let i = 0; i < n; i++) y[i] = y[i]! + (height - colHeight.get(x[i]!)!) / 2;
  return { x, y, from, to, width: Math.max(0, (column - 1) * COLUMN_GAP), height };
}

/** segmentDistance is the distance from (px, py) to the segment (ax, ay)-(bx, by). */
export function segmentDistance(px: number, py: number, ax: number, ay: number, bx: number, by: number): number {
  const dx = bx - ax;
  const dy = by - ay;
  const len = dx * dx + dy * dy;
  const t = len === 0 ? 0 : Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / len));
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}
