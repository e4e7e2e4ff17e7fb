/**
 * The one door to playwright-core and axe-core (test-only): Debian's chromium (/usr/bin/chromium,
 * installed by .ci/run) headless with a fresh user-data dir, and axe-core evaluated inside a page.
 * Flags as /work's machine notes say: no background networking, no component updates, no sync, so
 * the browser opens no connection of its own.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";

export type { Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Browser is a running chromium (one persistent context on a fresh profile) and what its pages reported. */
export interface Browser {
  context: BrowserContext;
  /** problems: console errors, page errors and CSP violations seen on any page. */
  problems: string[];
  newPage(viewport?: { width: number; height: number }): Promise<Page>;
  close(): Promise<void>;
}

/** ClientCertificate: a certificate and key (PEM files) the browser presents to `origin`. */
export interface ClientCertificate {
  origin: string;
  certPath: string;
  keyPath: string;
}

/**
 * launchBrowser starts chromium; every wait of its pages is bounded by `timeoutMs`. With
 * `clientCertificates`, the browser presents them in TLS handshakes (and accepts the servers'
 * certificates from the test's private CA).
 */
export async function launchBrowser(timeoutMs = 20_000, clientCertificates?: ClientCertificate[]): Promise<Browser> {
  const profile = mkdtempSync(path.join(tmpdir(), "mtlskit-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    timeout: 60_000,
    viewport: { width: 1280, height: 900 },
    ...(clientCertificates ? { clientCertificates, ignoreHTTPSErrors: true } : {}),
  });
  context.setDefaultTimeout(timeoutMs);
  const problems: string[] = [];
  const watch = (page: Page) => {
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  };
  context.on("page", watch);
  for (const p of context.pages()) watch(p);
  return {
    context,
    problems,
    async newPage(viewport) {
      const page = await context.newPage();
      if (viewport) await page.setViewportSize(viewport);
      return page;
    },
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/** AxeViolation is one rule axe-core found broken, with its impact and how many nodes. */
export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: string[];
}

/**
 * axe runs axe-core (WCAG 2 A and AA rules, and best practices) on the page as it is now. It is
 * evaluated through the DevTools protocol, which the page's Content-Security-Policy does not
 * govern, so the page keeps its real CSP while it is judged.
 */
export async function axe(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(`${AXE_SOURCE};void 0`);
  return page.evaluate(async () => {
    const w = globalThis as unknown as {
      document: unknown;
      axe: {
        run(
          ctx: unknown,
          opts: object,
        ): Promise<{
          violations: { id: string; impact: string | null; help: string; nodes: { target: string[] }[] }[];
        }>;
      };
    };
    const r = await w.axe.run(w.document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] },
      resultTypes: ["violations"],
    });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
    }));
  });
}
