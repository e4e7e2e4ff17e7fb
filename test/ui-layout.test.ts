/**
 * The connection graph's layout (src/ui/web/layout.ts), pure: callers left of what they dial, no
 * two services on one spot, the same picture for the same snapshot, cycles and unknown ends
 * placed without a loop, and 10,000 services with their connections placed (a count, no clock).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { UiConnection, UiService } from "../src/ui/snapshot.ts";
import { layoutGraph, segmentDistance } from "../src/ui/web/layout.ts";

const service = (name: string, role = "r"): UiService => ({
  name,
  usage: "dual",
  role,
  identity: undefined,
  addresses: [],
  certificates: [],
  issuance: "apply",
  verdict: "ok",
  findings: [],
});
const conn = (index: number, from: string, to: string): UiConnection => ({
  index,
  from,
  to,
  address: `${to}.local`,
  verdict: "ok",
  findings: [],
});

describe("graph layout", () => {
  it("ok/a chain a -> b -> c runs left to right, a skipped column between a and c", () => {
    const l = layoutGraph([service("c"), service("a"), service("b")], [conn(0, "a", "b"), conn(1, "b", "c")]);
    assert.ok(l.x[1]! < l.x[2]! && l.x[2]! < l.x[0]!, `x: ${[...l.x]}`);
    assert.deepEqual([...l.from], [1, 2]);
    assert.deepEqual([...l.to], [2, 0]);
  });

  it("ok/every edge of a DAG points right; no two services share a spot; the same input, the same layout", () => {
    const n = 300;
    const services = Array.from({ length: n }, (_, i) => service(`s${String(i).padStart(3, "0")}`, `role${i % 3}`));
    const conns: UiConnection[] = [];
    // Each service dials up to three later ones, chosen by a fixed LCG: shortcuts across layers included.
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
    for (let i = 0; i < n - 1; i++)
      for (let d = 0; d < 3; d++)
        conns.push(conn(conns.length, services[i]!.name, services[i + 1 + (next() % Math.min(40, n - 1 - i))]!.name));
    const a = layoutGraph(services, conns);
    const b = layoutGraph(services, conns);
    assert.deepEqual([...a.x], [...b.x]);
    assert.deepEqual([...a.y], [...b.y]);
    for (let k = 0; k < conns.length; k++) assert.ok(a.x[a.from[k]!]! < a.x[a.to[k]!]!, `edge ${k} points left`);
    const spots = new Set(services.map((_, i) => `${a.x[i]},${a.y[i]}`));
    assert.equal(spots.size, n);
  });

  it("ok/a cycle and a connection to a service the snapshot does not list are placed, without a loop", () => {
    const l = layoutGraph(
      [service("a"), service("b")],
      [conn(0, "a", "b"), conn(1, "b", "a"), conn(2, "a", "ghost"), conn(3, "a", "a")],
    );
    assert.equal(l.x.length, 2);
    assert.notEqual(`${l.x[0]},${l.y[0]}`, `${l.x[1]},${l.y[1]}`);
    assert.equal(l.to[2], -1);
  });

  it("ok/10,000 services and 8,000 connections are all placed on distinct spots", () => {
    const n = 10_000;
    const services = Array.from({ length: n }, (_, i) => service(`s${i}`, `role${i % 4}`));
    const conns = Array.from({ length: 8000 }, (_, k) => conn(k, `s${k}`, `s${(k * 7 + 2001) % n}`));
    const l = layoutGraph(services, conns);
    assert.equal(new Set(services.map((_, i) => `${l.x[i]},${l.y[i]}`)).size, n);
    assert.ok(l.width > 0 && l.height > 0);
  });

  it("ok/segmentDistance: to the segment, not the line", () => {
    assert.equal(segmentDistance(5, 3, 0, 0, 10, 0), 3);
    assert.equal(segmentDistance(13, 4, 0, 0, 10, 0), 5);
    assert.equal(segmentDistance(1, 1, 2, 2, 2, 2), Math.SQRT2);
  });
});
