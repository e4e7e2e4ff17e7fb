/**
 * mtlskit metrics: the exposition text (renewal and last-apply gauges on top of check's) from a
 * real PKI, the HTTP endpoint in-process (routes, content type, scrapes sharing one collection,
 * failures as 500), and the CLI's print-once and --listen parsing. promtool judges the format and
 * the shipped alert rules in test/interop/metrics.interop.ts.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync, realpathSync, rmSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { spawn } from "node:child_process";
import { get } from "node:http";
import { parseListen } from "../src/cli/args.ts";
import { loadManifest } from "../src/manifest/index.ts";
import { apply } from "../src/plan/apply.ts";
import {
  CONTENT_TYPE,
  MAX_AGE_MS,
  metricsOfPki,
  serveMetrics,
  statusOfPki,
  type MetricsServer,
} from "../src/status/index.ts";
import { REPO, runCli, tempDir, writeManifest } from "./helpers/cli.ts";

const MANIFEST = `version: 1
cluster: mx
defaults: { validity: 90d, renewBefore: 30d }
services:
  web: { usage: server, addresses: [127.0.0.1] }
  job: { usage: client }
connections:
  - { from: job, to: web, address: 127.0.0.1 }
`;

/** sample reads one sample's value from exposition text by metric name and a label substring. */
function sample(text: string, name: string, labelPart = ""): number | undefined {
  const line = text
    .split("\n")
    .find((l) => l.startsWith(name) && (l[name.length] === "{" || l[name.length] === " ") && l.includes(labelPart));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

let dir: string;
let file: string;
let pki: string;

describe("metrics: the exposition text", { timeout: 60_000 }, () => {
  before(async () => {
    dir = tempDir("mtlskit-metrics-");
    file = writeManifest(dir, MANIFEST);
    pki = path.join(dir, "pki");
    await apply(loadManifest(file), pki);
  });

  it("ok/renewal due = notAfter - renewBefore, its distance from now, and the last apply's time and success", () => {
    const now = new Date();
    const text = metricsOfPki(loadManifest(file).manifest, pki, now);
    const web = new X509Certificate(readFileSync(path.join(pki, "services", "web", "cert.pem")));
    const notAfter = Math.floor(new Date(web.validTo).getTime() / 1000);
    assert.equal(sample(text, "mtlskit_certificate_not_after_timestamp_seconds", 'service="web"'), notAfter);
    const due = notAfter - 30 * 86400;
    assert.equal(sample(text, "mtlskit_certificate_renewal_due_timestamp_seconds", 'service="web"'), due);
    assert.equal(
      sample(text, "mtlskit_certificate_renewal_due_in_seconds", 'service="web"'),
      due - Math.floor(now.getTime() / 1000),
    );
    const record = JSON.parse(readFileSync(path.join(pki, "last-apply.json"), "utf8")) as { time: string };
    assert.equal(
      sample(text, "mtlskit_last_apply_timestamp_seconds"),
      Math.floor(new Date(record.time).getTime() / 1000),
    );
    assert.equal(sample(text, "mtlskit_last_apply_success"), 1);
    assert.equal(sample(text, "mtlskit_last_apply_issued_certificates"), 2);
    assert.equal(sample(text, "mtlskit_connection_ok", 'from="job"'), 1);
    assert.match(text, /^# TYPE mtlskit_certificate_renewal_due_in_seconds gauge$/m);
  });

  it("fail/after an apply that failed, mtlskit_last_apply_success is 0 and the check errors show", async () => {
    const broken = tempDir("mtlskit-metrics-broken-");
    const p = path.join(broken, "pki");
    await apply(loadManifest(file), p);
    rmSync(path.join(p, "ca", "ca.pem"));
    await assert.rejects(apply(loadManifest(file), p));
    const text = metricsOfPki(loadManifest(file).manifest, p);
    assert.equal(sample(text, "mtlskit_last_apply_success"), 0);
    assert.equal(sample(text, "mtlskit_last_apply_issued_certificates"), 0);
  });

  it("ok/external files only: no apply metrics at all (absent, not 0, so failure alerts stay quiet)", () => {
    const ext = writeManifest(
      dir,
      `version: 1\ncluster: mx\nservices:\n  web: { usage: server, addresses: [127.0.0.1], files: { cert: pki/services/web/cert.pem, key: pki/services/web/key.pem, ca: pki/services/web/ca.pem } }\n`,
      "external.yaml",
    );
    const text = metricsOfPki(loadManifest(ext).manifest, undefined);
    assert.ok(sample(text, "mtlskit_certificate_not_after_timestamp_seconds", 'service="web"')! > 0);
    assert.doesNotMatch(text, /mtlskit_last_apply/);
  });
});

describe("metrics: the HTTP endpoint", { timeout: 30_000 }, () => {
  let served: MetricsServer;
  let collections = 0;
  let fail = false;
  let gate: { promise: Promise<void> } | undefined;
  before(async () => {
    served = await serveMetrics({
      host: "127.0.0.1",
      port: 0,
      collect: async () => {
        collections++;
        if (fail) throw new Error("the manifest became invalid");
        // Held open until the test has seen every concurrent scrape arrive (no timing involved).
        await (gate?.promise ?? new Promise((r) => setTimeout(r, 50)));
        return "# TYPE x gauge\nx 1\n";
      },
      maxAgeMs: 0,
    });
  });
  after(() => served.close());

  it("ok/GET /metrics answers the text with the exposition content type", async () => {
    const r = await fetch(served.url);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-type"), CONTENT_TYPE);
    assert.equal(await r.text(), "# TYPE x gauge\nx 1\n");
    assert.equal(served.url, `http://127.0.0.1:${served.port}/metrics`);
  });
  it("ok/concurrent scrapes share one collection; the next scrape collects afresh", async () => {
    const before = collections;
    // The collection stays open until the server has taken all four scrapes (its request handler
    // runs before this listener), so they overlap however slowly a loaded machine delivers them.
    let release = () => {};
    gate = { promise: new Promise<void>((r) => (release = r)) };
    let arrived = 0;
    const seen = () => {
      if (++arrived === 4) release();
    };
    served.server.on("request", seen);
    try {
      const texts = await Promise.all([1, 2, 3, 4].map(() => fetch(served.url).then((r) => r.text())));
      assert.ok(texts.every((t) => t === "# TYPE x gauge\nx 1\n"));
      assert.equal(collections - before, 1);
    } finally {
      served.server.off("request", seen);
      gate = undefined;
    }
    await fetch(served.url).then((r) => r.text());
    assert.equal(collections - before, 2);
  });
  it("fail/a collection that throws answers 500 with the reason", async () => {
    fail = true;
    try {
      const r = await fetch(served.url);
      assert.equal(r.status, 500);
      assert.match(await r.text(), /collection failed: the manifest became invalid/);
    } finally {
      fail = false;
    }
  });
  it("ok/a result younger than maxAgeMs is served as is, without collecting", async () => {
    let n = 0;
    const cached = await serveMetrics({ host: "127.0.0.1", port: 0, maxAgeMs: 60_000, collect: () => `x ${++n}\n` });
    try {
      assert.equal(await (await fetch(cached.url)).text(), "x 1\n");
      assert.equal(await (await fetch(cached.url)).text(), "x 1\n");
      assert.equal(n, 1);
    } finally {
      await cached.close();
    }
  });
  it("fail/other paths 404, other methods 405", async () => {
    assert.equal((await fetch(`http://127.0.0.1:${served.port}/metricz`)).status, 404);
    const post = await fetch(served.url, { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
  });
});

/** scrapeOnce GETs url on a connection of its own (no pooling: every scrape is its own client), resolving status and body. */
function scrapeOnce(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: false, timeout: 60_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("scrape timed out")));
    req.on("error", reject);
  });
}

describe("metrics: many scrapes at once (issue 11)", { timeout: 120_000 }, () => {
  // A collection reads every file synchronously; 200 scrapes arriving together used to run 200
  // collections one after another (p50 9 s, past Prometheus' 10 s scrape timeout).
  it("ok/200 concurrent scrapes of a real deployment all succeed, and the collection ran a bounded number of times", async () => {
    let collections = 0;
    const served = await serveMetrics({
      host: "127.0.0.1",
      port: 0,
      collect: () => {
        collections++;
        return metricsOfPki(loadManifest(file).manifest, pki);
      },
    });
    try {
      const started = performance.now();
      const results = await Promise.all(Array.from({ length: 200 }, () => scrapeOnce(served.url)));
      const elapsed = performance.now() - started;
      assert.deepEqual([...new Set(results.map((r) => r.status))], [200]);
      assert.ok(results.every((r) => /^mtlskit_last_apply_success 1$/m.test(r.body)));
      // A result younger than MAX_AGE_MS answers every later scrape, so however slow this machine
      // is, a collection runs at most once per MAX_AGE_MS (plus the first); without sharing, 200.
      assert.ok(
        collections <= 1 + Math.ceil(elapsed / MAX_AGE_MS),
        `${collections} collections for 200 scrapes in ${Math.round(elapsed)} ms`,
      );
    } finally {
      await served.close();
    }
  });
});

describe("metrics: a PKI directory shared by two manifests (issue 11)", { timeout: 60_000 }, () => {
  it("fail/another manifest's last apply is not this one's: no apply gauges, no failed apply in status; the record names its manifest", async () => {
    const d = tempDir("mtlskit-metrics-shared-");
    const a = writeManifest(d, MANIFEST, "a.yaml");
    const b = writeManifest(
      d,
      MANIFEST.replace("job: { usage: client }", "job: { usage: client }\n  extra: { usage: client }"),
      "b.yaml",
    );
    const p = path.join(d, "pki");
    await apply(loadManifest(b), p);
    // a's apply fails (its CA certificate is gone): the record is a's failure.
    rmSync(path.join(p, "ca", "ca.pem"));
    await assert.rejects(apply(loadManifest(a), p));
    const record = JSON.parse(readFileSync(path.join(p, "last-apply.json"), "utf8")) as {
      manifest: string;
      ok: boolean;
    };
    assert.equal(record.manifest, realpathSync(a));
    assert.equal(record.ok, false);
    assert.equal(sample(metricsOfPki(loadManifest(a).manifest, p), "mtlskit_last_apply_success"), 0);
    const other = metricsOfPki(loadManifest(b).manifest, p);
    assert.doesNotMatch(other, /mtlskit_last_apply/);
    const st = statusOfPki(loadManifest(b).manifest, p, new Date()).status;
    assert.equal(st.failedApply, undefined);
    assert.equal(st.otherApply, realpathSync(a));
    const human = await runCli(["status", "-f", b, "--pki", p]);
    assert.match(
      human.out,
      /note: the PKI directory's last-apply\.json is the record of another manifest \(\S+a\.yaml\); not judged here/,
    );
    assert.doesNotMatch(human.out, /last apply .* failed/);
  });
});

describe("metrics: the command", { timeout: 60_000 }, () => {
  it("ok/without --listen it prints once; -o writes the file for the textfile collector", async () => {
    const r = await runCli(["metrics", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^mtlskit_last_apply_success 1$/m);
    const out = path.join(dir, "mtlskit.prom");
    assert.equal((await runCli(["metrics", "-f", file, "--pki", pki, "-o", out])).code, 0);
    assert.match(readFileSync(out, "utf8"), /^mtlskit_certificate_renewal_due_in_seconds\{service="web"/m);
  });
  it("ok/--listen accepts HOST:PORT, [v6]:PORT and a bare PORT (127.0.0.1), the same for metrics and probe", () => {
    for (const command of ["metrics", "probe"]) {
      assert.deepEqual(parseListen(command, "127.0.0.1:9469"), { host: "127.0.0.1", port: 9469 });
      assert.deepEqual(parseListen(command, "[::1]:0"), { host: "::1", port: 0 });
      assert.deepEqual(parseListen(command, "localhost:9469"), { host: "localhost", port: 9469 });
      assert.deepEqual(parseListen(command, "9469"), { host: "127.0.0.1", port: 9469 });
      assert.deepEqual(parseListen(command, "0.0.0.0:9469"), { host: "0.0.0.0", port: 9469 });
    }
  });
  it("ok/metrics --listen PORT serves on 127.0.0.1:PORT, as probe --listen PORT does (issue 11: it was refused)", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "test/helpers/cli-on-cue.ts"], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    try {
      let err = "";
      child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      await new Promise<void>((resolve, reject) => {
        child.once("message", () => resolve());
        child.once("exit", () => reject(new Error(`exited before it was ready: ${err}`)));
      });
      child.send(["metrics", "--listen", "0", "-f", file, "--pki", pki]);
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "serving" line within 30 s: ${err}`)), 30_000);
        const look = () => {
          const m = /serving (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(err);
          if (m) clearTimeout(timer), resolve(m[1]!);
        };
        child.stderr!.on("data", look);
        void exited.then(() => (clearTimeout(timer), reject(new Error(`exited: ${err}`))));
      });
      const r = await scrapeOnce(url);
      assert.equal(r.status, 200);
      assert.match(r.body, /^mtlskit_last_apply_success 1$/m);
      child.kill("SIGTERM");
      assert.equal(await exited, 0, err);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  });
  const bad: [string, string[], RegExp, number][] = [
    [
      ":9469 (no host)",
      ["--listen", ":9469"],
      /name the interface: 127\.0\.0\.1:9469 for this host only, 0\.0\.0\.0:9469 for every interface/,
      2,
    ],
    [
      "a port above 65535",
      ["--listen", "127.0.0.1:70000"],
      /--listen must be \[HOST:\]PORT such as 9469 \(127\.0\.0\.1:9469\)/,
      2,
    ],
    ["a bare port above 65535", ["--listen", "70000"], /--listen must be \[HOST:\]PORT/, 2],
    ["--listen with -o", ["--listen", "127.0.0.1:0", "-o", "x.prom"], /--listen is incompatible with -o/, 2],
    [
      "-o into a missing directory",
      ["-o", "/nonexistent/dir/m.prom"],
      /cannot write \/nonexistent\/dir\/m\.prom: the directory \/nonexistent\/dir does not exist/,
      3,
    ],
  ];
  for (const [name, argv, message, code] of bad) {
    it(`fail/${name} exits ${code}`, async () => {
      const r = await runCli(["metrics", "-f", file, "--pki", pki, ...argv]);
      assert.equal(r.code, code, r.err);
      assert.match(r.err, message);
    });
  }
  it("fail/--listen on a port in use exits 3 naming it", async () => {
    const busy = await serveMetrics({ host: "127.0.0.1", port: 0, collect: () => "" });
    try {
      const r = await runCli(["metrics", "-f", file, "--pki", pki, "--listen", `127.0.0.1:${busy.port}`]);
      assert.equal(r.code, 3);
      assert.match(r.err, /cannot listen on 127\.0\.0\.1:\d+: the port is in use; choose another/);
    } finally {
      await busy.close();
    }
  });
});
