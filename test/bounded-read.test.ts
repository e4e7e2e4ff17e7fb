/**
 * Bounded reads (issue 11, "Unbounded reads hang or exhaust memory"): a FIFO or /dev/zero named
 * where a file belongs, or piped into standard input, is refused by name, promptly. Each case is a
 * real process with a time limit: before the fix a FIFO blocked the open forever and /dev/zero
 * grew to gigabytes, which would block an in-process test runner too.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import { readFileBounded, readStreamBounded, readTextBounded, type ReadFileError } from "../src/read-file.ts";
import { REPO, runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { CuedCli } from "./helpers/pki.ts";

const dir = tempDir("mtlskit-bounded-");
const fifo = path.join(dir, "pipe.pem");
execFileSync("mkfifo", [fifo]);
const DEVICES = { fifo, "/dev/zero": "/dev/zero" } as const;

const MANIFEST = `version: 1
cluster: demo
services:
  api: { usage: server, addresses: [127.0.0.1] }
`;

/** Runs the CLI in a child process with a time limit (20 s: a hang fails the test instead of blocking it). */
async function cli(argv: string[], stdin?: string) {
  const fd = stdin === undefined ? undefined : openSync(stdin, "r");
  const child = new CuedCli(fd === undefined ? {} : { stdin: fd });
  try {
    return await child.run(argv, { timeoutMs: 20_000 });
  } finally {
    if (fd !== undefined) closeSync(fd);
    child.kill();
  }
}

describe("bounded reads: readFileBounded", () => {
  it("ok/a regular file is read whole", () => {
    const f = path.join(dir, "small.txt");
    writeFileSync(f, "hello");
    assert.equal(readTextBounded(f), "hello");
  });
  it("ok/readTextBounded reads through one reused buffer: texts read one after another keep their own bytes, over the buffer's 64 KB too, and a /proc file of size 0", () => {
    const big = path.join(dir, "big-text.txt");
    const small = path.join(dir, "small-text.txt");
    const bigText = "é".repeat(50_000) + "end"; // 100,003 bytes: more than the buffer, UTF-8 pairs throughout
    writeFileSync(big, bigText);
    writeFileSync(small, "second");
    const a = readTextBounded(small);
    const b = readTextBounded(big);
    const c = readTextBounded(small);
    writeFileSync(small, "third!");
    const d = readTextBounded(small);
    assert.deepEqual([a, b === bigText, c, d], ["second", true, "second", "third!"]);
    // A /proc file reports size 0 and is read in chunks, the first into the reused buffer.
    const maps = readTextBounded("/proc/self/maps");
    assert.ok(maps.length > 8192 && maps.endsWith("\n"), maps.slice(-200));
    // Whole and in order: every line a mapping, start addresses increasing (a chunk overwritten or repeated breaks this).
    const starts = maps
      .trimEnd()
      .split("\n")
      .map((l) => /^([0-9a-f]+)-[0-9a-f]+ [-rwxps]{4} /.exec(l)?.[1]);
    assert.ok(starts.every((a, i) => a !== undefined && (i === 0 || BigInt(`0x${a}`) > BigInt(`0x${starts[i - 1]}`))));
    assert.match(readTextBounded("/proc/self/status"), new RegExp(`^Name:.*\\n[^]*^Pid:\\t${process.pid}$`, "m"));
  });
  it("fail/over the limit while reading (a /proc file reports size 0)", () => {
    const f = path.join(dir, "big.txt");
    writeFileSync(f, "x".repeat(100));
    assert.throws(
      () => readFileBounded(f, { limit: 99 }),
      (e: ReadFileError) => e.code === "EFBIG" && /over the 99 bytes/.test(e.message),
    );
    assert.equal(readFileBounded("/proc/self/status", { limit: 1 << 20 }).length > 0, true);
  });
  for (const [name, file] of Object.entries(DEVICES)) {
    it(`fail/${name} is refused by name, at once`, () => {
      assert.throws(
        () => readFileBounded(file),
        (e: ReadFileError) => e.code === "ENOTREG" && e.message.includes(file) && /not a regular file/.test(e.message),
      );
    });
  }
  it("fail/a directory is EISDIR; a symlink with noFollow is refused", () => {
    assert.throws(
      () => readFileBounded(dir),
      (e: ReadFileError) => e.code === "EISDIR",
    );
    const link = path.join(dir, "link.pem");
    execFileSync("ln", ["-sf", "small.txt", link]);
    assert.throws(
      () => readFileBounded(link, { noFollow: true }),
      (e: ReadFileError) => e.code === "ELOOP",
    );
  });
  it("fail/a stream over the limit stops as it arrives", async () => {
    async function* endless() {
      for (;;) yield Buffer.alloc(1024);
    }
    await assert.rejects(
      readStreamBounded(endless(), "standard input", 10_000),
      (e: ReadFileError) => e.code === "EFBIG" && /standard input: it holds more than/.test(e.message),
    );
  });
});

describe("bounded reads: every entry point refuses a FIFO and /dev/zero", () => {
  writeManifest(dir, MANIFEST); // writes dir/mtlskit.yaml, as this block always has
  for (const [name, file] of Object.entries(DEVICES)) {
    const what = name === "fifo" ? /FIFO/ : /character device/;
    it(`fail/-f ${name}: exit 2, named`, async () => {
      const r = await cli(["check", "-f", file, "--pki", path.join(dir, "pki")]);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, what);
      assert.ok(r.err.includes(file));
    });
    it(`fail/ca.import.cert ${name}: exit 2 naming the field`, async () => {
      const m = writeManifest(
        dir,
        MANIFEST.replace("services:", `ca:\n  import: { cert: '${file}', key: '${file}' }\nservices:`),
        `import-${name.replace(/\W/g, "")}.yaml`,
      );
      const r = await cli(["apply", "-f", m, "--pki", path.join(dir, `pki-import-${name.replace(/\W/g, "")}`)]);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, /ca\.import\.cert/);
      assert.match(r.err, what);
    });
    it(`fail/a files: entry ${name}: check reports the file, exit 1`, async () => {
      const m = writeManifest(
        dir,
        `version: 1\ncluster: demo\nservices:\n  ext: { usage: server, addresses: [127.0.0.1], files: { cert: '${file}', key: '${file}', ca: '${file}' } }\n`,
        `files-${name.replace(/\W/g, "")}.yaml`,
      );
      const r = await cli(["check", "-f", m]);
      assert.equal(r.code, 1, r.err);
      assert.match(r.out + r.err, what);
    });
    it(`fail/inspect ${name}: exit 3, named`, async () => {
      const r = await cli(["inspect", file]);
      assert.equal(r.code, 3, r.err);
      assert.match(r.err, what);
    });
    it(`fail/explain --log ${name}: exit 2, named`, async () => {
      const r = await cli(["explain", "--log", file]);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, what);
    });
    it(`fail/status ${name}: refused by name, not a hang`, async () => {
      const r = await cli(["status", file]);
      assert.notEqual(r.code, 0, r.err);
      assert.match(r.out + r.err, what);
    });
    it(`fail/trust install --ca ${name}: exit 2, named`, async () => {
      const r = await cli(["trust", "install", "--ca", file, "--name", "x", "--dry-run"]);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, what);
    });
  }
  it("fail/inspect - < /dev/zero: stops at the bound, exit 3", async () => {
    const r = await cli(["inspect", "-"], "/dev/zero");
    assert.equal(r.code, 3, r.err);
    assert.match(r.err, /standard input: it holds more than the 64 MB/);
  });
  it("fail/explain - < /dev/zero: stops at the bound, exit 3", async () => {
    const r = await cli(["explain", "-"], "/dev/zero");
    assert.equal(r.code, 3, r.err);
    assert.match(r.err, /standard input: it holds more than the 64 MB/);
  });
  for (const [name, file] of Object.entries(DEVICES)) {
    it(`fail/the service library's loadStaticSource with ${name} as the certificate: refused by name`, async () => {
      const src = `import { loadStaticSource } from "./src/service/index.ts"; try { loadStaticSource({ certFile: ${JSON.stringify(file)}, keyFile: ${JSON.stringify(file)}, caFile: ${JSON.stringify(file)} }); } catch (e) { process.stderr.write(e.message); process.exit(3); }`;
      const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", src], {
        cwd: REPO,
        encoding: "utf8",
        timeout: 30_000,
      });
      assert.equal(r.status, 3, `${r.signal ?? ""} ${r.stderr}`);
      assert.match(
        r.stderr,
        new RegExp(`cannot read certificate ${file}: it is ${name === "fifo" ? "a FIFO" : "a character device"}`),
      );
    });
  }
  it("ok/in-process: a directory as -f is a usage error", async () => {
    mkdirSync(path.join(dir, "adir"), { recursive: true });
    const r = await runCli(["check", "-f", path.join(dir, "adir")]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /is a directory/);
  });
});
