/**
 * Live data: the Snapshot from api/snapshot, fetched again whenever api/events announces a newer
 * version (server-sent events; EventSource reconnects by itself). No reload: the page re-renders.
 * Paths are relative to the page, so the dashboard works mounted under a prefix (serve --ui: /ui/).
 */
import type { Snapshot } from "../snapshot.ts";

export type LiveState = "connecting" | "live" | "reconnecting";

/** startLive fetches the first snapshot at once and each newer one announced; returns a stop function. */
export function startLive(onSnapshot: (s: Snapshot) => void, onState: (state: LiveState) => void): () => void {
  let current = -1;
  let wanted = 0;
  let loading = false;
  let stopped = false;

  async function load(): Promise<void> {
    if (loading) return;
    loading = true;
    try {
      // Each fetch returns the newest snapshot; a version announced meanwhile is fetched next.
      for (let tries = 0; wanted > current && tries < 5 && !stopped; tries++) {
        const res = await fetch("api/snapshot", { cache: "no-store", headers: { accept: "application/json" } });
        if (!res.ok) throw new Error(`api/snapshot answered ${res.status}`);
        const snap = (await res.json()) as Snapshot;
        // The first snapshot's arrival, for `npm run bench:ui`'s breakdown.
        if (current < 0) performance.mark("mtlskit:snapshot");
        if (snap.version <= current) break;
        current = snap.version;
        if (!stopped) onSnapshot(snap);
      }
    } catch (e) {
      console.warn("mtlskit: could not load the snapshot:", e);
    } finally {
      loading = false;
    }
  }

  const events = new EventSource("api/events");
  events.addEventListener("open", () => onState("live"));
  events.addEventListener("error", () =>
    onState(events.readyState === EventSource.CLOSED ? "reconnecting" : "connecting"),
  );
  events.addEventListener("snapshot", (e) => {
    let version: unknown;
    try {
      version = (JSON.parse((e as MessageEvent<string>).data) as { version?: unknown }).version;
    } catch {
      return;
    }
    if (typeof version === "number" && version > current) {
      wanted = Math.max(wanted, version);
      void load();
    }
  });
  void load();
  return () => {
    stopped = true;
    events.close();
  };
}
