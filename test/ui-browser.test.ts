/**
 * The dashboard in a real browser (issue 17): Debian's chromium driven by playwright-core
 * (test/helpers/browser.ts) against the real `mtlskit ui` (test/helpers/ui.ts: a 50-service PKI
 * applied by the CLI, in-process on 127.0.0.1) serving the page as built from this run's sources
 * (scripts/build-web.ts into a private folder). Each page loads and shows the counts /api/snapshot
 * gives; the broken fixture's failing connection is drawn in the error colour and a click on it
 * (or its row, by keyboard) shows check's fix; a renewal by apply appears without a reload;
 * axe-core finds no serious or critical violation; no page breaks the Content-Security-Policy (a
 * console error) or overflows a 375-px screen. Screenshots go to test-artifacts/ui/ (gitignored).
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { buildWeb } from "../scripts/build-web.ts";
import { loadManifest } from "../src/manifest/index.ts";
import { startServer } from "../src/server/index.ts";
import { serveMount } from "../src/ui/server.ts";
import type { Snapshot } from "../src/ui/snapshot.ts";
import { axe, type Browser, launchBrowser, type Page } from "./helpers/browser.ts";
import { tempDir } from "./helpers/cli.ts";
import { startUiFixture, type UiFixture } from "./helpers/ui.ts";

const REPO = path.resolve(import.meta.dirname, "..");
const ARTIFACTS = path.join(REPO, "test-artifacts", "ui");
const WAIT = 15_000;
const PAGES = ["inventory", "timeline", "graph", "rotation", "online"] as const;

/** snapshotOf reads /api/snapshot as the page does. */
async function snapshotOf(url: string): Promise<Snapshot> {
  const res = await fetch(new URL("/api/snapshot", url));
  assert.equal(res.status, 200);
  return (await res.json()) as Snapshot;
}

/** open goes to a page and waits (bounded) until it has rendered its data. */
async function open(page: Page, url: string, name: string): Promise<void> {
  await page.goto(`${url}#/${name}`, { waitUntil: "load" });
  await page.waitForFunction((n) => performance.getEntriesByName(`mtlskit:rendered:${n}`).length > 0, name, {
    timeout: WAIT,
  });
}

const text = async (page: Page, selector: string) =>
  ((await page.locator(selector).first().textContent({ timeout: WAIT })) ?? "").trim();
const attr = async (page: Page, selector: string, name: string) =>
  (await page.locator(selector).first().getAttribute(name, { timeout: WAIT })) ?? "";

describe("dashboard in chromium", { timeout: 240_000 }, () => {
  let browser: Browser;
  let assets: string;
  let ui: UiFixture;
  let broken: UiFixture;
  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    assets = tempDir("mtlskit-web-");
    await buildWeb(assets);
    ui = await startUiFixture({ services: 50, online: true, assetsDir: assets });
    broken = await startUiFixture({ services: 50, broken: true, assetsDir: assets });
    browser = await launchBrowser(WAIT);
  });
  after(async () => {
    await browser?.close();
    await ui?.stop();
    await broken?.stop();
  });

  for (const width of [1280, 375]) {
    it(`ok/each page loads at ${width} px with the counts of /api/snapshot, no serious axe violation, no overflow`, async () => {
      const snap = await snapshotOf(ui.url);
      const page = await browser.newPage({ width, height: 900 });
      try {
        for (const name of PAGES) {
          await open(page, ui.url, name);
          for (const [key, n] of Object.entries(snap.counts))
            assert.equal(
              await text(page, `[data-count="${key}"]`),
              n.toLocaleString("en-US"),
              `${name}: header ${key}`,
            );
          if (name === "inventory") {
            assert.equal(await attr(page, "[data-services]", "data-services"), String(snap.services.length));
            assert.match(await text(page, ".pager .pos"), new RegExp(`of ${snap.services.length}$`));
            assert.equal(await page.locator("tr.row").count(), Math.min(50, snap.services.length));
          } else if (name === "timeline") {
            assert.equal(
              await attr(page, "[data-certificates]", "data-certificates"),
              String(snap.certificates.length),
            );
            assert.equal(await attr(page, "[data-cas]", "data-cas"), String(snap.cas.length));
            assert.equal(
              await page.locator(".bar-row").count(),
              snap.cas.length + Math.min(50, snap.certificates.length),
            );
          } else if (name === "graph") {
            assert.equal(await attr(page, "[data-nodes]", "data-nodes"), String(snap.services.length));
            assert.equal(await attr(page, "[data-edges]", "data-edges"), String(snap.connections.length));
            assert.match(await text(page, ".pager .pos"), new RegExp(`of ${snap.connections.length}$`));
          } else if (name === "rotation") {
            assert.equal(await attr(page, "[data-phase]", "data-phase"), snap.rotation?.phase ?? "none");
            assert.equal(await page.locator("tbody tr").count(), snap.cas.length);
          } else {
            assert.ok(snap.online, "the fixture has an online CA");
            assert.equal(await attr(page, "[data-issued]", "data-issued"), String(snap.online.issued));
            assert.equal(await attr(page, "[data-revoked]", "data-revoked"), String(snap.online.revoked));
            assert.equal(await page.locator('[data-table="recent"] tbody tr').count(), snap.online.recent.length);
            assert.equal(await page.locator('[data-table="tokens"] tbody tr').count(), snap.online.tokens.length);
          }
          await page.screenshot({ path: path.join(ARTIFACTS, `${name}-${width}.png`), fullPage: width > 400 });
          const serious = (await axe(page)).filter((v) => v.impact === "serious" || v.impact === "critical");
          assert.deepEqual(serious, [], `${name} at ${width} px: axe`);
          const overflow = await page.evaluate(() => {
            const d = (
              globalThis as unknown as { document: { documentElement: { scrollWidth: number; clientWidth: number } } }
            ).document.documentElement;
            return d.scrollWidth - d.clientWidth;
          });
          assert.ok(overflow <= 1, `${name} at ${width} px is ${overflow} px wider than the screen`);
        }
      } finally {
        await page.close();
      }
      assert.deepEqual(browser.problems, [], "console errors, page errors or CSP violations");
    });
  }

  it("ok/the broken fixture's failing connection is drawn in the error colour; a click on it, or its row by keyboard, shows check's fix", async () => {
    const snap = await snapshotOf(broken.url);
    const k = snap.connections.findIndex((c) => c.verdict === "error");
    assert.ok(k >= 0, "the broken fixture has a failing connection");
    const fixes = snap.connections[k]!.findings.map((i) => snap.findings[i]!.fix);
    assert.ok(fixes.length > 0);
    const page = await browser.newPage({ width: 1280, height: 900 });
    try {
      await open(page, broken.url, "graph");
      const point = await page.evaluate(
        (edge) =>
          (
            globalThis as unknown as { mtlskitGraph: { edgePoint(k: number, t: number): { x: number; y: number } } }
          ).mtlskitGraph.edgePoint(edge, 0.3),
        k,
      );
      assert.ok(point, "the failing connection is on the canvas");
      const rgb = await page.evaluate(({ x, y }) => {
        const g = globalThis as unknown as {
          devicePixelRatio: number;
          document: {
            querySelector(s: string): {
              getBoundingClientRect(): { left: number; top: number };
              getContext(c: string): { getImageData(x: number, y: number, w: number, h: number): { data: number[] } };
            };
          };
        };
        const canvas = g.document.querySelector(".graph-box canvas");
        const r = canvas.getBoundingClientRect();
        const d = g.devicePixelRatio;
        return [
          ...canvas.getContext("2d").getImageData(Math.round((x - r.left) * d), Math.round((y - r.top) * d), 1, 1).data,
        ].slice(0, 3);
      }, point);
      // The error colour, #b91c1c (185, 28, 28), within anti-aliasing.
      assert.ok(rgb[0]! > 150 && rgb[1]! < 90 && rgb[2]! < 90, `pixel on the failing edge is rgb(${rgb.join(", ")})`);
      await page.mouse.click(point.x, point.y);
      await page.locator(`[data-selected-edge="${k}"]`).waitFor({ timeout: WAIT });
      const detail = await text(page, ".edge-detail");
      for (const fix of fixes)
        assert.ok(detail.includes(fix), `the detail shows the fix ${JSON.stringify(fix)}: ${detail}`);
      await page.screenshot({ path: path.join(ARTIFACTS, "graph-broken-selected.png") });
      // README's pictures (docs/ui-*.png are copies of these): the graph with the failing edge chosen,
      // and the inventory with the failing service opened on its finding and fix.
      await page.locator(".edge-detail").scrollIntoViewIfNeeded();
      await page.screenshot({ path: path.join(ARTIFACTS, "readme-graph.png") });

      // The keyboard's way: Escape clears, then Tab to the connection's row and Enter.
      await page.locator(".graph-box canvas").focus();
      await page.keyboard.press("Escape");
      await page.locator("[data-selected-edge]").waitFor({ state: "detached", timeout: WAIT });
      const row = page.locator(`button.edge[data-edge="${k}"]`);
      for (let i = 0; i < 40 && !(await row.evaluate((el) => el === (el.ownerDocument.activeElement as unknown))); i++)
        await page.keyboard.press("Tab");
      await page.keyboard.press("Enter");
      await page.locator(`[data-selected-edge="${k}"]`).waitFor({ timeout: WAIT });
      assert.ok((await text(page, ".edge-detail")).includes(fixes[0]!));

      await open(page, broken.url, "inventory");
      const conn = snap.connections[k]!;
      const failing =
        snap.services.find((sv) => sv.findings.some((i) => conn.findings.includes(i))) ??
        snap.services.find((sv) => sv.verdict === "error" && sv.findings.length > 0);
      assert.ok(failing, "a service carries the broken connection's finding");
      await page.locator(`tr[data-service="${failing.name}"] button.disclose`).click();
      await page.locator(`#svc-${failing.name} [data-fix]`).first().waitFor({ timeout: WAIT });
      await page.evaluate(() => (globalThis as unknown as { scrollTo(x: number, y: number): void }).scrollTo(0, 0));
      await page.screenshot({ path: path.join(ARTIFACTS, "readme-inventory.png") });
    } finally {
      await page.close();
    }
    assert.deepEqual(browser.problems, []);
  });

  it("ok/a renewal by apply appears without a reload", async () => {
    const page = await browser.newPage({ width: 1280, height: 900 });
    try {
      await open(page, ui.url, "inventory");
      const before = await snapshotOf(ui.url);
      const name = before.services.find((s) => s.issuance === "apply" && s.usage === "server")!.name;
      await page.evaluate(() => {
        (globalThis as unknown as { notReloaded: boolean }).notReloaded = true;
      });
      await page.locator(`tr[data-service="${name}"] button.disclose`).click();
      const oldAfter = await attr(page, `#svc-${name} [data-not-after]`, "data-not-after");
      assert.equal(oldAfter, before.certificates.find((c) => c.service === name)!.notAfter);
      // A renewal: apply --reissue writes a new certificate; the dashboard's poll sees it, the page follows.
      await ui.renew(name);
      await page.waitForFunction(
        ([sel, old]) =>
          (
            globalThis as unknown as {
              document: { querySelector(s: string): { getAttribute(a: string): string } | null };
            }
          ).document
            .querySelector(sel!)
            ?.getAttribute("data-not-after") !== old,
        [`#svc-${name} [data-not-after]`, oldAfter],
        { timeout: WAIT },
      );
      const after = await snapshotOf(ui.url);
      const cert = after.certificates.find((c) => c.service === name)!;
      assert.notEqual(cert.serial, before.certificates.find((c) => c.service === name)!.serial, "a new certificate");
      assert.equal(await attr(page, `#svc-${name} [data-not-after]`, "data-not-after"), cert.notAfter);
      assert.equal(await attr(page, "[data-version]", "data-version"), String(after.version));
      assert.ok(after.version > before.version);
      assert.equal(await page.evaluate(() => (globalThis as unknown as { notReloaded?: boolean }).notReloaded), true);
    } finally {
      await page.close();
    }
    assert.deepEqual(browser.problems, []);
  });
});

describe("dashboard under serve --ui in chromium, as an admin over mTLS", { timeout: 180_000 }, () => {
  let browser: Browser;
  let fixture: UiFixture;
  let server: Awaited<ReturnType<typeof startServer>>;
  let cert: { ca: Buffer; cert: Buffer; key: Buffer };
  before(async () => {
    const assets = tempDir("mtlskit-web-");
    await buildWeb(assets);
    fixture = await startUiFixture({ services: 12, online: true, assetsDir: assets });
    await fixture.stop();
    server = await startServer({
      manifest: loadManifest(fixture.manifestFile),
      pkiDir: fixture.pkiDir,
      listen: { host: "127.0.0.1", port: 0 },
      mount: serveMount({ assetsDir: assets, pollMs: 100 }),
    });
    // s000 is the fixture's serve.admins.
    const dir = path.join(fixture.pkiDir, "services", "s000");
    cert = {
      ca: readFileSync(path.join(fixture.pkiDir, "ca", "ca.pem")),
      cert: readFileSync(path.join(dir, "cert.pem")),
      key: readFileSync(path.join(dir, "key.pem")),
    };
    browser = await launchBrowser(WAIT, [
      { origin: new URL(server.url).origin, certPath: path.join(dir, "cert.pem"), keyPath: path.join(dir, "key.pem") },
    ]);
  });
  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it("ok/the page at /ui/ loads its assets and data by relative paths, shows the counts, and passes axe", async () => {
    const snap = await new Promise<Snapshot>((resolve, reject) => {
      https
        .get(new URL("/ui/api/snapshot", server.url), { ...cert, timeout: WAIT }, (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (d: string) => (body += d));
          res.on("end", () =>
            res.statusCode === 200 ? resolve(JSON.parse(body) as Snapshot) : reject(new Error(`${res.statusCode}`)),
          );
        })
        .on("error", reject);
    });
    const page = await browser.newPage({ width: 1280, height: 900 });
    try {
      await open(page, new URL("/ui/", server.url).href, "inventory");
      for (const [key, n] of Object.entries(snap.counts))
        assert.equal(await text(page, `[data-count="${key}"]`), n.toLocaleString("en-US"), `header ${key}`);
      assert.equal(await page.locator("tr.row").count(), snap.services.length);
      await open(page, new URL("/ui/", server.url).href, "online");
      assert.equal(await attr(page, "[data-issued]", "data-issued"), String(snap.online?.issued));
      const serious = (await axe(page)).filter((v) => v.impact === "serious" || v.impact === "critical");
      assert.deepEqual(serious, []);
      await page.screenshot({ path: path.join(ARTIFACTS, "serve-ui-online.png") });
    } finally {
      await page.close();
    }
    assert.deepEqual(browser.problems, []);
  });
});
