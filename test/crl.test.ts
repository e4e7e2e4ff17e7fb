/**
 * pki/crl.ts: CRLs encoded by mtlskit and judged by tools that share no code with it
 * (`openssl crl -verify`, GnuTLS `certtool --crl-info`, `openssl verify -crl_check`), and decoded
 * back by decodeCrl.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { writeFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";
import {
  crlSignedBy,
  decodeCrl,
  encodeCrlTbs,
  normalizeSerial,
  serialHex,
  signCrl,
  type CrlSpec,
  type RevokedEntry,
} from "../src/pki/crl.ts";
import { encodeTbs, keyIdOf, newSerial, signTbs, type CertSpec, type Issuer } from "../src/pki/issue.ts";
import { generateKey, type KeyTypeName } from "../src/pki/keys.ts";
import { encodeName } from "../src/pki/name.ts";
import { encodePem } from "../src/pki/pem.ts";
import { tempDir } from "./helpers/cli.ts";

const DIR = tempDir("mtlskit-crl-");
const NOW = new Date(Math.floor(Date.now() / 1000) * 1000);
const HOUR = 3_600_000;
const write = (name: string, data: string | Buffer) => {
  const f = path.join(DIR, name);
  writeFileSync(f, data);
  return f;
};
const run = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 60_000 });
  if (r.error) throw r.error;
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
};

interface Ca {
  issuer: Issuer;
  file: string;
}

function newCa(keyType: KeyTypeName, name: string): Ca {
  const key = generateKey(keyType);
  const subject = { O: "mtlskit test", CN: name };
  const issuer: Issuer = {
    subject: encodeName(subject),
    keyId: keyIdOf(key.spki),
    keyType,
    privateKey: createPrivateKey({ key: key.pkcs8, format: "der", type: "pkcs8" }),
  };
  const spec: CertSpec = {
    profile: "ca",
    subject,
    dns: [],
    ips: [],
    uris: [],
    keyType,
    notBefore: new Date(NOW.getTime() - HOUR),
    notAfter: new Date(NOW.getTime() + 1000 * HOUR),
  };
  const der = signTbs(encodeTbs(spec, issuer, key.spki, newSerial()), issuer);
  return { issuer, file: write(`${name}.pem`, encodePem("CERTIFICATE", der)) };
}

function newLeaf(ca: Ca, name: string): { serial: string; file: string } {
  const key = generateKey("ecdsa-p256");
  const serial = newSerial();
  const spec: CertSpec = {
    profile: "client",
    subject: { CN: name },
    dns: [name],
    ips: [],
    uris: [],
    keyType: "ecdsa-p256",
    notBefore: new Date(NOW.getTime() - HOUR),
    notAfter: new Date(NOW.getTime() + 100 * HOUR),
  };
  const der = signTbs(encodeTbs(spec, ca.issuer, key.spki, serial), ca.issuer);
  return { serial: serialHex(serial), file: write(`${name}.pem`, encodePem("CERTIFICATE", der)) };
}

const spec = (entries: RevokedEntry[], number = 7n): CrlSpec => ({
  thisUpdate: new Date(NOW.getTime() - 300_000),
  nextUpdate: new Date(NOW.getTime() + 168 * HOUR),
  number,
  entries,
});

describe("crl: encoding judged by openssl and GnuTLS", () => {
  for (const keyType of ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519"] as const) {
    it(`ok/${keyType}: openssl crl -verify and certtool --crl-info accept it; fields read back`, () => {
      const ca = newCa(keyType, `CA ${keyType}`);
      const entries: RevokedEntry[] = [
        { serial: "4a0b11", revocationDate: new Date(NOW.getTime() - HOUR), reason: "keyCompromise" },
        { serial: "00ff", revocationDate: new Date(NOW.getTime() - 2 * HOUR), reason: "unspecified" },
        { serial: "7f", revocationDate: new Date(NOW.getTime() - 3 * HOUR), reason: "cessationOfOperation" },
      ].map((e) => ({ ...e, serial: normalizeSerial(e.serial)! }) as RevokedEntry);
      const der = signCrl(spec(entries, 300n), ca.issuer);
      const file = write(`crl-${keyType}.pem`, encodePem("X509 CRL", der));
      const o = run("openssl", ["crl", "-in", file, "-noout", "-verify", "-CAfile", ca.file, "-text"]);
      assert.ok(o.ok && /verify OK/.test(o.out), o.out);
      assert.match(o.out, /Version 2/);
      assert.match(o.out, /X509v3 CRL Number:\s*\n\s*300/);
      assert.match(o.out, /X509v3 Authority Key Identifier/);
      assert.match(o.out, /Serial Number: 4A0B11[\s\S]*?Key Compromise/);
      assert.match(o.out, /Serial Number: 7F[\s\S]*?Cessation Of Operation/);
      const g = run("certtool", ["--verify-crl", "--infile", file, "--load-ca-certificate", ca.file]);
      assert.ok(g.ok && /Verification output: Verified\./.test(g.out), g.out);
      const info = run("certtool", ["--crl-info", "--infile", file]);
      assert.match(info.out, /Revoked certificates \(3\)/);
      assert.match(info.out, /CRL Number \(not critical\): 012c/);
      const back = decodeCrl(der);
      assert.deepEqual(
        back.entries.map((e) => [e.serial, e.reason, e.revocationDate.getTime()]),
        entries.map((e) => [e.serial, e.reason, e.revocationDate.getTime()]),
      );
      assert.equal(back.number, 300n);
      assert.ok(back.issuer.equals(ca.issuer.subject));
      assert.ok(back.authorityKeyId?.equals(ca.issuer.keyId));
      assert.equal(back.nextUpdate?.getTime(), NOW.getTime() + 168 * HOUR);
      assert.ok(crlSignedBy(back, createPublicKey(ca.issuer.privateKey)));
    });
  }

  it("ok/empty: no revokedCertificates field at all; openssl and certtool accept it", () => {
    const ca = newCa("ecdsa-p256", "CA empty");
    const der = signCrl(spec([], 1n), ca.issuer);
    const file = write("crl-empty.pem", encodePem("X509 CRL", der));
    const o = run("openssl", ["crl", "-in", file, "-noout", "-verify", "-CAfile", ca.file, "-text"]);
    assert.ok(o.ok && /verify OK/.test(o.out) && /No Revoked Certificates/.test(o.out), o.out);
    assert.ok(run("certtool", ["--verify-crl", "--infile", file, "--load-ca-certificate", ca.file]).ok);
    assert.deepEqual(decodeCrl(der).entries, []);
  });

  it("fail/other-ca: openssl, certtool and crlSignedBy refuse a CRL checked against another CA", () => {
    const ca = newCa("ecdsa-p256", "CA one");
    const other = newCa("ecdsa-p256", "CA two");
    const der = signCrl(spec([]), ca.issuer);
    const file = write("crl-one.pem", encodePem("X509 CRL", der));
    assert.equal(run("openssl", ["crl", "-in", file, "-noout", "-verify", "-CAfile", other.file]).ok, false);
    const g = run("certtool", ["--verify-crl", "--infile", file, "--load-ca-certificate", other.file]);
    assert.ok(!g.ok && !/Verification output: Verified\./.test(g.out), g.out);
    assert.equal(crlSignedBy(decodeCrl(der), createPublicKey(other.issuer.privateKey)), false);
  });

  it("ok/crl_check: openssl verify -crl_check refuses the revoked leaf and accepts the other", () => {
    const ca = newCa("ecdsa-p256", "CA verify");
    const bad = newLeaf(ca, "revoked-client");
    const good = newLeaf(ca, "good-client");
    const crl = write(
      "crl-verify.pem",
      encodePem(
        "X509 CRL",
        signCrl(spec([{ serial: bad.serial, revocationDate: NOW, reason: "keyCompromise" }]), ca.issuer),
      ),
    );
    const verify = (f: string) => run("openssl", ["verify", "-crl_check", "-CAfile", ca.file, "-CRLfile", crl, f]);
    const r = verify(bad.file);
    assert.equal(r.ok, false);
    assert.match(r.out, /certificate revoked/);
    assert.ok(verify(good.file).ok, verify(good.file).out);
  });

  it("ok/tbs: re-encoding a decoded CRL's fields reproduces its TBS byte for byte", () => {
    const ca = newCa("ecdsa-p256", "CA tbs");
    const s = spec([{ serial: "0080", revocationDate: NOW, reason: "superseded" }], 2n ** 70n);
    const der = signCrl(s, ca.issuer);
    const back = decodeCrl(der);
    const again = encodeCrlTbs(
      { thisUpdate: back.thisUpdate, nextUpdate: back.nextUpdate!, number: back.number!, entries: back.entries },
      ca.issuer,
    );
    assert.ok(again.equals(back.tbs));
    assert.equal(back.entries[0]?.serial, "80");
  });

  it("ok/serials: normalizeSerial reads openssl's and users' spellings; refuses what is not a serial", () => {
    assert.equal(normalizeSerial("4A:0B:11"), "4a0b11");
    assert.equal(normalizeSerial("0x00ABC"), "0abc");
    assert.equal(normalizeSerial("80"), "80");
    for (const bad of ["", "xyz", "12 34", "a".repeat(41)]) assert.equal(normalizeSerial(bad), undefined, bad);
  });

  it("fail/garbage: decodeCrl refuses a certificate and truncated bytes with a DecodeError", () => {
    const ca = newCa("ecdsa-p256", "CA garbage");
    const der = signCrl(spec([]), ca.issuer);
    assert.throws(() => decodeCrl(der.subarray(0, der.length - 3)), { name: "DecodeError" });
    assert.throws(() => decodeCrl(Buffer.from("not a crl")), { name: "DecodeError" });
  });
});
