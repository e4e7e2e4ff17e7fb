/**
 * Test helpers: a PKI directory as data (every entry with its mode and content hash) and checks of
 * pairs and chains made with node:crypto alone, independently of mtlskit's own DER code.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, createPrivateKey, createPublicKey, X509Certificate } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";

/** Entry is one file or directory of a PKI directory. */
export interface Entry {
  type: "file" | "dir" | "other";
  /** mode is the permission bits (mode & 0o777). */
  mode: number;
  /** sha256 of the content, files only. */
  sha256: string | undefined;
  mtimeMs: number;
  /** ino changes when a file is replaced (rename), even with the same bytes. */
  ino: number;
}

/**
 * inspectPki walks `dir` (without following symlinks) and maps every path relative to it ("" for
 * `dir` itself, "/" separators) to its Entry. Keys are sorted.
 */
export function inspectPki(dir: string): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const walk = (rel: string) => {
    const abs = path.join(dir, rel);
    const st = lstatSync(abs);
    const type = st.isDirectory() ? "dir" : st.isFile() ? "file" : "other";
    out.set(rel, {
      type,
      mode: st.mode & 0o777,
      sha256: type === "file" ? createHash("sha256").update(readFileSync(abs)).digest("hex") : undefined,
      mtimeMs: st.mtimeMs,
      ino: st.ino,
    });
    if (type === "dir") for (const e of readdirSync(abs).sort()) walk(rel === "" ? e : `${rel}/${e}`);
  };
  walk("");
  return out;
}

/**
 * assertUntouched checks that no file of `before` was rewritten in `after` (same bytes, inode and
 * mtime) except the paths in `changed`, which must all differ, and that no path appeared or vanished.
 * The apply record (last-apply.json) is exempt from the content check: every apply rewrites it.
 */
export function assertUntouched(
  before: Map<string, Entry>,
  after: Map<string, Entry>,
  changed: readonly string[] = [],
): void {
  assert.deepEqual([...after.keys()], [...before.keys()], "the set of paths changed");
  for (const [p, b] of before) {
    if (b.type !== "file" || p === LAST_APPLY) continue; // rewritten by every apply, by design
    const a = after.get(p)!;
    if (changed.includes(p)) assert.notEqual(a.sha256, b.sha256, `${p} should have been rewritten`);
    else
      assert.deepEqual(
        { sha256: a.sha256, ino: a.ino, mtimeMs: a.mtimeMs, mode: a.mode },
        { sha256: b.sha256, ino: b.ino, mtimeMs: b.mtimeMs, mode: b.mode },
        `${p} was rewritten`,
      );
  }
}

/** LAST_APPLY is the apply record (spelled here, not imported): it says when apply last ran, so every run rewrites it. */
export const LAST_APPLY = "last-apply.json";

/** TEMP_MARK is in the name of every temporary file apply writes (spelled here, not imported, on purpose). */
export const TEMP_MARK = ".mtlskit-tmp-";

/** tempFiles lists leftovers of interrupted writes anywhere under `dir`. */
export const tempFiles = (dir: string): string[] => [...inspectPki(dir).keys()].filter((p) => p.includes(TEMP_MARK));

/** expectedMode is the documented mode of a path of a PKI directory, or undefined for a path that must not exist. */
export function expectedMode(rel: string): number | undefined {
  if (rel === "" || rel === "services") return 0o755;
  if (rel === "ca") return 0o700;
  if (rel === "ca/ca.pem" || rel === "ca/chain.pem" || rel === LAST_APPLY) return 0o644;
  if (rel === "ca/crl.pem" || rel === "ca/crl-number" || rel === "ca/revoked.json") return 0o644;
  if (rel === "ca/ca-key.pem") return 0o600;
  const m = /^services\/[a-z][a-z0-9-]*(?:\/(.+))?$/.exec(rel);
  if (!m) return undefined;
  if (m[1] === undefined) return 0o700;
  return { "cert.pem": 0o644, "ca.pem": 0o644, "client.pem": 0o644, "key.pem": 0o600, "client-key.pem": 0o600 }[m[1]];
}

/** assertLayout checks that every entry of `dir` is a documented one with exactly its documented mode (no lock, no temp file). */
export function assertLayout(dir: string): void {
  for (const [p, e] of inspectPki(dir)) {
    const want = expectedMode(p);
    assert.notEqual(want, undefined, `unexpected entry ${JSON.stringify(p)} in ${dir}`);
    assert.equal(
      e.type,
      p === "" || p === "ca" || p === "services" || /^services\/[^/]+$/.test(p) ? "dir" : "file",
      `${p} has the wrong type`,
    );
    assert.equal(
      e.mode.toString(8),
      want!.toString(8),
      `${p || "."} has mode 0${e.mode.toString(8)}, want 0${want!.toString(8)}`,
    );
  }
}

const spkiOfKey = (pem: Buffer) => createPublicKey(createPrivateKey(pem)).export({ type: "spki", format: "der" });
const spkiOfCert = (c: X509Certificate) => c.publicKey.export({ type: "spki", format: "der" });

/** readCa returns ca/ca.pem parsed, or undefined when it is missing or does not parse. */
export function readCa(dir: string): X509Certificate | undefined {
  try {
    return new X509Certificate(readFileSync(path.join(dir, "ca", "ca.pem")));
  } catch {
    return undefined;
  }
}

/** PAIR_FILES: the certificate and key file names of a slot kind. */
export const PAIR_FILES = { main: ["cert.pem", "key.pem"], client: ["client.pem", "client-key.pem"] } as const;

/**
 * checkPair judges one slot with node:crypto: "absent" (neither file), "ok" (both exist, the key
 * has mode 0600 and matches the certificate, which ca/ca.pem issued and signed), or what is wrong.
 */
export function checkPair(
  dir: string,
  service: string,
  kind: "main" | "client",
  ca: X509Certificate | undefined = readCa(dir),
): string {
  const [certName, keyName] = PAIR_FILES[kind];
  const certFile = path.join(dir, "services", service, certName);
  const keyFile = path.join(dir, "services", service, keyName);
  const hasCert = existsSync(certFile);
  const hasKey = existsSync(keyFile);
  if (!hasCert && !hasKey) return "absent";
  if (!hasCert) return `${keyName} without ${certName}`;
  if (!hasKey) return `${certName} without ${keyName}`;
  let cert: X509Certificate;
  let keySpki: Buffer;
  try {
    cert = new X509Certificate(readFileSync(certFile));
  } catch (e) {
    return `${certName} does not parse (${(e as Error).message})`;
  }
  try {
    keySpki = spkiOfKey(readFileSync(keyFile));
  } catch (e) {
    return `${keyName} does not parse (${(e as Error).message})`;
  }
  if (!keySpki.equals(spkiOfCert(cert))) return `${keyName} does not match ${certName}`;
  const mode = lstatSync(keyFile).mode & 0o777;
  if (mode !== 0o600) return `${keyName} has mode 0${mode.toString(8)}`;
  if (!ca) return "no readable ca/ca.pem to verify against";
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return `${certName} is not issued and signed by ca/ca.pem`;
  if (cert.ca) return `${certName} is a CA certificate`;
  return "ok";
}

/**
 * assertPairsMatch checks, with node:crypto only: ca/ca-key.pem matches ca/ca.pem, a self-signed
 * CA; every services/NAME holds cert.pem and key.pem, and client.pem and client-key.pem both or
 * neither; every key matches its certificate, which ca/ca.pem issued and signed.
 * Returns the number of leaf pairs checked.
 */
export function assertPairsMatch(dir: string): number {
  const ca = readCa(dir);
  assert.ok(ca, `${dir}/ca/ca.pem is missing or does not parse`);
  assert.ok(existsSync(path.join(dir, "ca", "ca-key.pem")), "ca/ca-key.pem is missing");
  assert.ok(
    spkiOfKey(readFileSync(path.join(dir, "ca", "ca-key.pem"))).equals(spkiOfCert(ca)),
    "ca/ca-key.pem does not match ca/ca.pem",
  );
  assert.ok(ca.ca && ca.checkIssued(ca) && ca.verify(ca.publicKey), "ca/ca.pem is not a self-signed CA certificate");
  let n = 0;
  for (const s of readdirSync(path.join(dir, "services")).sort()) {
    if (s.includes(TEMP_MARK)) continue;
    for (const kind of ["main", "client"] as const) {
      const verdict = checkPair(dir, s, kind, ca);
      if (kind === "client" && verdict === "absent") continue;
      assert.equal(verdict, "ok", `services/${s} ${PAIR_FILES[kind].join("+")}: ${verdict}`);
      n++;
    }
  }
  return n;
}

/** assertBundles checks that every services/NAME/ca.pem is byte-identical to ca/ca.pem. */
export function assertBundles(dir: string): void {
  const ca = readFileSync(path.join(dir, "ca", "ca.pem"));
  for (const s of readdirSync(path.join(dir, "services")))
    assert.ok(
      readFileSync(path.join(dir, "services", s, "ca.pem")).equals(ca),
      `services/${s}/ca.pem differs from ca/ca.pem`,
    );
}

// ---------------------------------------------------------------------------------------------
// The CLI in real child processes (the lock and bounded-read tests need separate processes).

/** CUE_SCRIPT runs the CLI on cue in a child process (see cli-on-cue.ts). */
export const CUE_SCRIPT = path.join(import.meta.dirname, "cli-on-cue.ts");
const REPO = path.resolve(import.meta.dirname, "../..");

/** CuedRun is how a cued CLI run ended. */
export interface CuedRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** ms from the cue to the exit. */
  ms: number;
  out: string;
  err: string;
}

/**
 * CuedCli is a child process that has loaded the CLI and waits for its argv (spawned at once, so a
 * test can overlap Node's start-up with other work). Every wait is bounded.
 */
export class CuedCli {
  readonly child: ChildProcess;
  /** ready resolves once the CLI is loaded (rejects after 30 s, or if the child dies first). */
  readonly ready: Promise<void>;
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private out = "";
  private err = "";

  /**
   * `stdin`: a file descriptor for the CLI's standard input (default: none). `withoutDacOverride`:
   * run as root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (util-linux's setpriv), so file
   * modes bind root as they bind any user. Unlike switching to another uid, the child can still
   * load the repository wherever CI cloned it, however its parent folders' modes are.
   */
  constructor(opts: { stdin?: number; withoutDacOverride?: boolean } = {}) {
    const argv = [process.execPath, "--import", "tsx", CUE_SCRIPT];
    if (opts.withoutDacOverride) argv.unshift("setpriv", "--bounding-set=-dac_override,-dac_read_search");
    this.child = spawn(argv[0]!, argv.slice(1), { cwd: REPO, stdio: [opts.stdin ?? "ignore", "pipe", "pipe", "ipc"] });
    this.child.stdout!.on("data", (d: Buffer) => void (this.out += d.toString()));
    this.child.stderr!.on("data", (d: Buffer) => void (this.err = (this.err + d.toString()).slice(-20_000)));
    this.exited = new Promise((resolve) => this.child.once("exit", (code, signal) => resolve({ code, signal })));
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.kill();
        reject(new Error("the CLI child was not ready within 30 s"));
      }, 30_000);
      this.child.once("message", () => {
        clearTimeout(timer);
        resolve();
      });
      void this.exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`the CLI child exited before it was ready: ${this.err}`));
      });
    });
    this.ready.catch(() => {}); // a spare child killed unused must not become an unhandled rejection
  }

  /** run cues the CLI with `argv` and waits for it to exit (fails after `timeoutMs`). */
  async run(argv: string[], opts: { timeoutMs?: number } = {}): Promise<CuedRun> {
    await this.ready;
    const t0 = performance.now();
    this.child.send(argv);
    let timedOut = false;
    const guard = setTimeout(() => {
      timedOut = true;
      this.kill();
    }, opts.timeoutMs ?? 60_000);
    const { code, signal } = await this.exited;
    const ms = performance.now() - t0;
    clearTimeout(guard);
    if (timedOut)
      throw new Error(
        `mtlskit ${argv.join(" ")} did not finish within ${opts.timeoutMs ?? 60_000} ms; stderr: ${this.err}`,
      );
    return { code, signal, ms, out: this.out, err: this.err };
  }

  /** kill ends the child with SIGKILL if it still runs. */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }
}
