/**
 * What check keeps in memory while it judges a deployment (issue 12: `mtlskit check` at 10,000
 * services within 300 MB). Asserted as counts and identities, never as sizes: a key that matches
 * its certificate keeps no bytes of its own, identical bundles are one list whatever their text,
 * the PEM text cache stays bounded, certificates' bytes are packed together, what a CA's leaves
 * have in common is held once, and the --json text is never one string.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { before, describe, it } from "node:test";
import {
  checkInventory,
  isProblem,
  JSON_CHUNK_CHARS,
  Material,
  readInventory,
  reportJson,
  reportJsonText,
  type CertFile,
} from "../src/check/index.ts";
import { ARENA_BYTES, TEXT_CACHE } from "../src/check/material.ts";
import { loadManifest } from "../src/manifest/index.ts";
import { runCli, tempDir, writeManifest } from "./helpers/cli.ts";

/** N services: more than the text cache holds, so a cache that kept every text would show. */
const N = TEXT_CACHE + 36;
const names = Array.from({ length: N }, (_, i) => `s${i}`);
const MANIFEST = `version: 1
cluster: mem
services:
${names.map((n, i) => `  ${n}: { usage: ${i === 0 ? "server" : "dual"}, addresses: [10.0.${i >> 8}.${i & 255}]${i === 1 ? ", split: true" : ""} }`).join("\n")}
connections:
${names
  .slice(1)
  .map((n) => `  - { from: ${n}, to: s0 }`)
  .join("\n")}
`;

describe("check's memory: each thing held once", { timeout: 120_000 }, () => {
  let file = "";
  let pki = "";
  before(async () => {
    const dir = tempDir("mtlskit-check-mem-");
    file = writeManifest(dir, MANIFEST);
    pki = path.join(dir, "pki");
    const r = await runCli(["apply", "-f", file, "--pki", pki]);
    assert.equal(r.code, 0, r.err);
  });

  it("ok/a key that matches its certificate keeps the certificate's public-key bytes, none of its own; a mismatched key keeps its own", () => {
    // One real mismatch: s3's key is s4's.
    const s3 = path.join(pki, "services/s3/key.pem");
    const saved = readFileSync(s3);
    writeFileSync(s3, readFileSync(path.join(pki, "services/s4/key.pem")));
    try {
      const manifest = loadManifest(file).manifest;
      const material = new Material();
      const inv = readInventory(material, manifest, pki);
      const slots = inv.services.flatMap((s) => s.slots);
      assert.equal(slots.length, N + 1); // s1 holds a split pair
      for (const s of slots) {
        assert.ok(!isProblem(s.cert) && !isProblem(s.key), s.slot.id);
        const leaf = s.cert.certs[0]!;
        if (s.slot.id === "s3") {
          assert.notEqual(s.key.spki, leaf.fields.spki);
          assert.ok(!s.key.spki!.equals(leaf.fields.spki));
        } else assert.equal(s.key.spki, leaf.fields.spki, `${s.slot.id}: the key file's own public-key bytes are kept`);
      }
      const report = checkInventory(material, manifest, inv);
      assert.deepEqual(
        report.findings.map(
          (f) =>
            `${f.code} ${f.about.kind === "certificate" ? f.about.id : f.about.kind === "connection" ? `${f.about.from}->${f.about.to}` : ""}`,
        ),
        ["key-mismatch s3", "conn-missing s3->s0"],
      );
    } finally {
      writeFileSync(s3, saved);
    }
  });

  it("ok/identical bundles are one list for every service, whatever their text (CRLF line ends, text around the block); the PEM text cache stays bounded", () => {
    // A third of the bundles rewritten the way hosts rewrite them: same certificate, other bytes.
    const bundles = names.map((n) => path.join(pki, "services", n, "ca.pem"));
    const saved = bundles.map((b) => readFileSync(b, "utf8"));
    bundles.forEach((b, i) => {
      if (i % 3 === 1) writeFileSync(b, saved[i]!.replace(/\n/g, "\r\n"));
      if (i % 3 === 2) writeFileSync(b, `# our CA\n${saved[i]}\n`);
    });
    try {
      const manifest = loadManifest(file).manifest;
      const material = new Material();
      const inv = readInventory(material, manifest, pki);
      const lists = new Set(inv.services.map((s) => (s.bundle as CertFile).certs));
      assert.equal(lists.size, 1, "services with the same CA hold different bundle lists");
      // The PKI's own ca/ca.pem is the same certificate too.
      assert.equal((inv.ca as CertFile).certs, [...lists][0]);
      const held = material.held();
      assert.ok(held.texts <= TEXT_CACHE, `${held.texts} PEM texts kept`);
      // N + 1 leaves (s1's split pair) and one CA.
      assert.equal(held.certs, N + 2);
      assert.equal(held.lists, N + 2);
      const report = checkInventory(material, manifest, inv);
      assert.deepEqual(
        report.findings.map((f) => f.code),
        [],
      );
    } finally {
      bundles.forEach((b, i) => writeFileSync(b, saved[i]!));
    }
  });

  it("ok/certificates are copied back to back into a few buffers, not left in the 8 KB slabs they were decoded into (amid file bytes and private keys)", () => {
    const manifest = loadManifest(file).manifest;
    const material = new Material();
    const inv = readInventory(material, manifest, pki);
    const certs = inv.services.flatMap((s) => s.slots.flatMap((x) => (x.cert as CertFile).certs));
    const bytes = certs.reduce((n, c) => n + c.der.length, 0);
    const buffers = new Set(certs.map((c) => c.der.buffer));
    assert.ok(
      buffers.size <= Math.ceil(bytes / ARENA_BYTES) + 1,
      `${certs.length} certificates (${bytes} bytes) in ${buffers.size} buffers`,
    );
    // What a certificate's fields and IP SANs point at is the same copy.
    for (const c of certs) {
      assert.equal(c.fields.spki.buffer, c.der.buffer);
      for (const san of c.info.sans) if (san.type === "ip") assert.ok(buffers.has(san.bytes.buffer));
    }
  });

  it("ok/the --json text is written in pieces that join to exactly JSON.stringify's text, with findings and without (an empty list as [])", () => {
    const manifest = loadManifest(file).manifest;
    const judge = (now = new Date(Date.now() + 3_600_000)) => {
      const material = new Material();
      return checkInventory(material, manifest, readInventory(material, manifest, pki), { now });
    };
    const clean = judge();
    // A year early: every certificate not yet valid, every connection failing, a text of several pieces.
    const early = judge(new Date(Date.now() - 365 * 86_400_000));
    const s3 = path.join(pki, "services/s3/key.pem");
    const saved = readFileSync(s3);
    writeFileSync(s3, readFileSync(path.join(pki, "services/s4/key.pem")));
    let broken: ReturnType<typeof judge>;
    try {
      broken = judge();
    } finally {
      writeFileSync(s3, saved);
    }
    assert.deepEqual([...new Set(clean.findings.map((f) => `${f.code}: ${f.message}`))].slice(0, 3), []);
    assert.ok(broken.findings.length > 0 && broken.cas.length > 0);
    assert.ok(early.findings.length > N);
    for (const r of [clean, broken, early]) {
      const whole = `${JSON.stringify(reportJson(r), null, 2)}\n`;
      const pieces = [...reportJsonText(r)];
      assert.equal(pieces.join(""), whole);
      // No piece is much over the size asked for.
      for (const p of pieces) assert.ok(p.length < JSON_CHUNK_CHARS + 2048, `a piece of ${p.length} chars`);
    }
    const pieces = [...reportJsonText(early)];
    assert.ok(pieces.length > 2, `${pieces.length} pieces`);
  });

  it("ok/what one CA's leaves have in common (issuer, authority key id, signature algorithm, key kind, extensions, usages) is one value", () => {
    const manifest = loadManifest(file).manifest;
    const material = new Material();
    const inv = readInventory(material, manifest, pki);
    // Every dual leaf: s2 and up (s0 is a server, s1 a split pair).
    const leaves = inv.services.slice(2).map((s) => (s.slots[0]!.cert as CertFile).certs[0]!.info);
    for (const k of [
      "issuer",
      "authorityKeyId",
      "signatureAlgorithm",
      "publicKey",
      "extensions",
      "keyUsage",
      "extKeyUsage",
    ] as const)
      assert.equal(new Set(leaves.map((i) => i[k])).size, 1, k);
    // Not shared: what differs between leaves.
    assert.equal(new Set(leaves.map((i) => i.subject)).size, leaves.length);
    assert.equal(new Set(leaves.map((i) => i.sans)).size, leaves.length);
    // A server's usages differ from a dual's, so s0's are another value.
    const s0 = (inv.services[0]!.slots[0]!.cert as CertFile).certs[0]!.info;
    assert.notEqual(s0.extKeyUsage, leaves[0]!.extKeyUsage);
    assert.deepEqual(s0.extKeyUsage, ["serverAuth"]);
  });
});
