/**
 * serve's signer threads (src/server/signer.ts): issueOnline through the threads answers what it
 * answers in-process (certificates and every refusal, word for word), a rotation's next CA reaches
 * the threads, and a thread that dies holding a batch refuses that batch (503 busy, nothing
 * recorded) while the pool starts another and keeps serving. Real keys, real requests; the
 * certificates are judged by openssl.
 */
import assert from "node:assert/strict";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { writeFileSync } from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { requestFor } from "../src/ca/policy.ts";
import type { IssuedRecord, Ledger } from "../src/ledger/ledger.ts";
import { loadManifest, type LoadedManifest, type Service } from "../src/manifest/index.ts";
import { readCertFields } from "../src/pki/cert.ts";
import { decodeCsr, encodeCsr } from "../src/pki/csr.ts";
import { generateKey, type KeyTypeName } from "../src/pki/keys.ts";
import { encodePem } from "../src/pki/pem.ts";
import { type Authority, loadAuthority } from "../src/server/authority.ts";
import { type CsrInput, type IssueContext, issueOnline } from "../src/server/issue.ts";
import { ServeProblem } from "../src/server/problem.ts";
import { SignerPool } from "../src/server/signer.ts";
import { runCli, tempDir, writeManifest } from "./helpers/cli.ts";
import { opensslVerify } from "./helpers/openssl.ts";

const MANIFEST = `version: 1
cluster: demo
identity:
  uri: spiffe://{cluster}/{role}/{name}
services:
  web:
    usage: dual
    csr: true
    addresses: [127.0.0.1, web.local]
  api:
    usage: server
    csr: true
    addresses: [api.local]
  ops:
    usage: client
`;

/** recordingLedger keeps the rows issueOnline records (the only Ledger method it calls without a token). */
function recordingLedger(): Ledger & { rows: IssuedRecord[] } {
  const rows: IssuedRecord[] = [];
  return {
    rows,
    record: async (row: IssuedRecord) => {
      rows.push(row);
      return { ok: true };
    },
  } as unknown as Ledger & { rows: IssuedRecord[] };
}

/** csrOf makes a request for `service` with a new key of `keyType` (its manifest names unless `names` says otherwise), as PEM. */
function csrOf(service: Service, keyType: KeyTypeName = service.keyType, names?: { dns?: string[] }): string {
  const pair = generateKey(keyType);
  const key = createPrivateKey({ key: pair.pkcs8, format: "der", type: "pkcs8" });
  return encodePem("CERTIFICATE REQUEST", encodeCsr({ ...requestFor(service), ...names }, keyType, pair.spki, key));
}

/** tampered is `pem`'s request with one octet of its signature changed. */
function tampered(pem: string): string {
  const der = decodeCsr(Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64")).der;
  const copy = Buffer.from(der);
  copy[copy.length - 3]! ^= 0x01;
  return encodePem("CERTIFICATE REQUEST", copy);
}

type Outcome =
  | { ok: true; serial: string; tbs: string; sans: string[]; notBefore: string; notAfter: string; der: Buffer }
  | { ok: false; code: string; message: string; fix: string; refusals: unknown };

/** outcome runs issueOnline and reads its answer as data (the certificate's TBS without its serial: serials are random). */
async function outcome(p: Promise<Awaited<ReturnType<typeof issueOnline>>>, rows: IssuedRecord[]): Promise<Outcome> {
  try {
    const issued = await p;
    const row = rows.find((r) => r.serial === issued.serial)!;
    assert.ok(row, "no ledger row for an issued certificate");
    assert.equal(encodePem("CERTIFICATE", row.der), issued.certificate);
    const fields = readCertFields(row.der);
    const tbs = Buffer.from(fields.tbs);
    tbs.fill(0, tbs.indexOf(fields.serial), tbs.indexOf(fields.serial) + fields.serial.length);
    return {
      ok: true,
      serial: issued.serial,
      tbs: tbs.toString("hex"),
      sans: row.sans,
      notBefore: issued.notBefore,
      notAfter: issued.notAfter,
      der: row.der,
    };
  } catch (e) {
    assert.ok(e instanceof ServeProblem, String(e));
    return { ok: false, code: e.code, message: e.message, fix: e.fix, refusals: e.refusals };
  }
}

describe("serve's signer threads", () => {
  let dir: string;
  let file: string;
  let pki: string;
  let loaded: LoadedManifest;
  let authority: Authority;
  const pools: SignerPool[] = [];
  const svc = (name: string) => loaded.manifest.services.find((s) => s.name === name)!;
  const now = new Date(Math.floor(Date.now() / 1000) * 1000);
  const ctxOf = (ledger: Ledger, signer?: SignerPool, a = authority): IssueContext => ({
    manifest: loaded.manifest,
    authority: a,
    ledger,
    now,
    ...(signer ? { signer } : {}),
  });
  const pool = (opts: { threads?: number; exitAt?: number } = {}) => {
    const p = new SignerPool({ manifest: loaded.manifest, ...opts });
    pools.push(p);
    return p;
  };
  const verifies = (certPem: string, caFile: string) => {
    const f = path.join(dir, `c-${Math.random().toString(16).slice(2)}.pem`);
    writeFileSync(f, certPem);
    return opensslVerify({ caFile: path.join(pki, caFile), certFile: f, purpose: "sslserver" }).ok;
  };

  before(async () => {
    dir = tempDir("mtlskit-signer-");
    file = writeManifest(dir, MANIFEST);
    pki = path.join(dir, "pki");
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
    loaded = loadManifest(file);
    authority = loadAuthority(loaded, pki);
  });
  after(async () => {
    for (const p of pools) await p.close();
  });

  it("ok/a batch of good and refused requests: the same answers as in-process, each good one recorded, no refused one", async () => {
    const web = svc("web");
    const api = svc("api");
    const good = csrOf(web);
    const inputs: [string, Service, CsrInput][] = [
      ["web", web, { pem: good }],
      ["api", api, { pem: csrOf(api) }],
      ["web, decoded (ACME's form)", web, decodeCsr(Buffer.from(good.replace(/-----[^-]+-----|\s/g, ""), "base64"))],
      ["a P-384 key for a P-256 service", web, { pem: csrOf(web, "ecdsa-p384") }],
      ["a name not declared", web, { pem: csrOf(web, web.keyType, { dns: ["web", "evil.example"] }) }],
      ["a signature that does not verify", web, { pem: tampered(csrOf(web)) }],
      ["not PEM", web, { pem: "hello" }],
      ["a certificate", web, { pem: authority.anchorPem }],
      ["damaged DER", web, { pem: encodePem("CERTIFICATE REQUEST", Buffer.from([0x30, 0x03, 0x02, 0x01])) }],
      ["api's request for web", web, { pem: csrOf(api) }],
    ];
    const threads = pool({ threads: 2 });
    const here = recordingLedger();
    const there = recordingLedger();
    // Started in one turn: the threads get them as one batch each.
    const a = inputs.map(([, service, csr]) =>
      issueOnline(ctxOf(here), { service, csr, how: "enroll", requester: "test" }),
    );
    const b = inputs.map(([, service, csr]) =>
      issueOnline(ctxOf(there, threads), { service, csr, how: "enroll", requester: "test" }),
    );
    const inProcess = await Promise.all(a.map((p) => outcome(p, here.rows)));
    const threaded = await Promise.all(b.map((p) => outcome(p, there.rows)));
    for (let i = 0; i < inputs.length; i++) {
      const [what] = inputs[i]!;
      const x = inProcess[i]!;
      const y = threaded[i]!;
      assert.equal(y.ok, x.ok, `${what}: ${JSON.stringify(y)}`);
      if (x.ok && y.ok) {
        assert.equal(y.tbs, x.tbs, `${what}: the TBSCertificates differ beyond the serial`);
        assert.deepEqual([y.sans, y.notBefore, y.notAfter], [x.sans, x.notBefore, x.notAfter], what);
        assert.ok(verifies(encodePem("CERTIFICATE", y.der) + authority.current.chainPem, "ca/ca.pem"), what);
      } else assert.deepEqual(y, x, what);
    }
    assert.deepEqual(
      threaded.map((o) => (o.ok ? "ok" : o.code)),
      [
        "ok",
        "ok",
        "ok",
        "policy",
        "policy",
        "csr-signature",
        "csr-malformed",
        "csr-malformed",
        "csr-malformed",
        "policy",
      ],
    );
    assert.equal(there.rows.length, 3);
    assert.equal(new Set(there.rows.map((r) => r.serial)).size, 3);
  });

  it("ok/a rotation's next CA reaches the threads once the authority is read again; the old one still signs what was asked of it", async () => {
    const threads = pool({ threads: 1 });
    const ledger = recordingLedger();
    const web = svc("web");
    const before = await issueOnline(ctxOf(ledger, threads), {
      service: web,
      csr: { pem: csrOf(web) },
      how: "enroll",
      requester: "test",
    });
    assert.ok(verifies(before.chain, "ca/ca.pem"));
    assert.equal((await runCli(["ca", "rotate", "prepare", "-f", file, "--pki", pki])).code, 0);
    assert.equal((await runCli(["ca", "rotate", "activate", "-f", file, "--pki", pki])).code, 0);
    const rotated = loadAuthority(loaded, pki);
    const next = rotated.issuerFor("web");
    assert.notEqual(next.cert.der.toString("hex"), authority.current.cert.der.toString("hex"));
    // One turn: a request read under the old authority and one under the new.
    const [old, fresh] = await Promise.all([
      issueOnline(ctxOf(ledger, threads), { service: web, csr: { pem: csrOf(web) }, how: "renew", requester: "t" }),
      issueOnline(ctxOf(ledger, threads, rotated), {
        service: web,
        csr: { pem: csrOf(web) },
        how: "renew",
        requester: "t",
      }),
    ]);
    assert.ok(new X509Certificate(old.certificate).verify(authority.current.publicKey));
    assert.ok(new X509Certificate(fresh.certificate).verify(next.publicKey), "not signed by the next CA");
    assert.ok(!new X509Certificate(fresh.certificate).verify(authority.current.publicKey));
    assert.ok(verifies(fresh.chain, "ca/next/ca.pem"));
    authority = rotated;
  });

  it("fail/a thread dying with a batch: each of its requests is refused busy (503), nothing recorded; a new thread serves", async () => {
    const threads = pool({ threads: 1, exitAt: 3 });
    const ledger = recordingLedger();
    const web = svc("web");
    const ask = () =>
      outcome(
        issueOnline(ctxOf(ledger, threads), { service: web, csr: { pem: csrOf(web) }, how: "enroll", requester: "t" }),
        ledger.rows,
      );
    const csrs = Array.from({ length: 5 }, () => ({ pem: csrOf(web) }));
    const died = await Promise.all(
      csrs.map((csr) =>
        outcome(issueOnline(ctxOf(ledger, threads), { service: web, csr, how: "enroll", requester: "t" }), ledger.rows),
      ),
    );
    for (const o of died) {
      assert.equal(o.ok, false);
      if (!o.ok) {
        assert.equal(o.code, "busy");
        assert.match(o.message, /signer thread .*stopped; nothing was issued|no signer thread is running/);
      }
    }
    assert.equal(new ServeProblem("busy", "", "").status, 503);
    assert.equal(ledger.rows.length, 0);
    // The thread is started again (a second later: it died young); until then requests are refused, never held.
    let served: Outcome | undefined;
    for (let i = 0; i < 100 && !served?.ok; i++) {
      served = await ask();
      if (!served.ok) {
        assert.equal(served.code, "busy");
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.ok(served?.ok, `no certificate within 10 s of the thread's death: ${JSON.stringify(served)}`);
    assert.equal(ledger.rows.length, 1);
    assert.equal(threads.threadIds().length, 1);
  });

  it("ok/close refuses what is queued (busy), and a closed pool leaves issuance to the event loop", async () => {
    const threads = pool({ threads: 1 });
    const ledger = recordingLedger();
    const web = svc("web");
    const queued = issueOnline(ctxOf(ledger, threads), {
      service: web,
      csr: { pem: csrOf(web) },
      how: "enroll",
      requester: "t",
    });
    const refused = outcome(queued, ledger.rows);
    await threads.close();
    const o = await refused;
    assert.equal(o.ok ? "ok" : o.code, "busy");
    const after = await issueOnline(ctxOf(ledger, threads), {
      service: web,
      csr: { pem: csrOf(web) },
      how: "enroll",
      requester: "t",
    });
    assert.ok(verifies(after.chain, "ca/next/ca.pem"));
  });
});
