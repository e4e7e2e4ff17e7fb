/**
 * The native P-256 verifier (native/p256.cc through src/pki/native.ts): every answer it gives is
 * node:crypto's answer for the same key, message and signature: valid signatures, tampered ones,
 * signatures that are not DER (OpenSSL's EVP path refuses what does not encode back to the same
 * bytes), the high-S twin of a valid signature, zero and out-of-range integers, points off the
 * curve or out of the field. Then csrSignature, the online CA's caller, gives the same verdicts
 * with the addon as without it (MTLSKIT_NATIVE=0, in a child process) on real requests.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify } from "node:crypto";
import { writeFileSync } from "node:fs";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, it } from "node:test";
import { csrSignature, decodeCsr, encodeCsr } from "../src/pki/csr.ts";
import { seq, TAG, tlv, uint } from "../src/pki/der.ts";
import { generateKey } from "../src/pki/keys.ts";
import { nativeP256, type P256Verify } from "../src/pki/native.ts";
import { REPO, tempDir } from "./helpers/cli.ts";

/** N and P: P-256's group order and field prime. */
const N = BigInt("0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
const P = BigInt("0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff");

/** native is the addon's check; `npm ci` builds it on every machine the tests run on (.ci/run requires it). */
function native(): P256Verify {
  const verifyNative = nativeP256();
  assert.ok(verifyNative, "the native verifier is not built: run `npm rebuild` (python3, make and g++ needed)");
  return verifyNative;
}

/** viaNode is the same check through node:crypto, as csrSignature makes it without the addon (a key that does not import: false). */
function viaNode(point: Buffer, message: Buffer, signature: Buffer): boolean {
  try {
    const key = createPublicKey({
      key: {
        kty: "EC",
        crv: "P-256",
        x: point.subarray(1, 33).toString("base64url"),
        y: point.subarray(33).toString("base64url"),
      },
      format: "jwk",
    });
    return verify("sha256", message, key, signature);
  } catch {
    return false;
  }
}

/** magnitude is n's big-endian octets, at least one. */
function magnitude(n: bigint): Buffer {
  const hex = n.toString(16);
  return Buffer.from(hex.length % 2 ? `0${hex}` : hex, "hex");
}
/** sigOf encodes r and s as an ECDSA-Sig-Value (DER, through pki/der.ts). */
const sigOf = (r: bigint, s: bigint) => seq(uint(magnitude(r)), uint(magnitude(s)));
/** rsOf decodes a DER ECDSA-Sig-Value made by OpenSSL (short lengths). */
function rsOf(sig: Buffer): { r: bigint; s: bigint } {
  const rLen = sig[3]!;
  const r = BigInt(`0x${sig.subarray(4, 4 + rLen).toString("hex")}`);
  const s = BigInt(`0x${sig.subarray(6 + rLen, 6 + rLen + sig[5 + rLen]!).toString("hex")}`);
  return { r, s };
}

interface Case {
  name: string;
  point: Buffer;
  message: Buffer;
  signature: Buffer;
  /** expected: the verdict both must give. */
  expected: boolean;
}

function cases(): Case[] {
  const out: Case[] = [];
  const pair = () => {
    const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const spki = publicKey.export({ format: "der", type: "spki" });
    return { point: spki.subarray(spki.length - 65), privateKey };
  };
  for (let i = 0; i < 40; i++) {
    const { point, privateKey } = pair();
    const message = randomBytes(1 + i * 13);
    const signature = sign("sha256", message, privateKey);
    out.push({ name: `valid ${i}`, point, message, signature, expected: true });
  }
  const { point, privateKey } = pair();
  const other = pair().point;
  const message = Buffer.from("CertificationRequestInfo stand-in");
  const signature = sign("sha256", message, privateKey);
  const { r, s } = rsOf(signature);
  const flip = (b: Buffer, at: number) => {
    const c = Buffer.from(b);
    c[at]! ^= 0x01;
    return c;
  };
  out.push(
    { name: "valid", point, message, signature, expected: true },
    { name: "the same signature re-encoded", point, message, signature: sigOf(r, s), expected: true },
    { name: "high-S twin (n - s)", point, message, signature: sigOf(r, N - s), expected: true },
    { name: "r tampered", point, message, signature: sigOf(r ^ 1n, s), expected: false },
    { name: "s tampered", point, message, signature: sigOf(r, s ^ 1n), expected: false },
    { name: "last octet flipped", point, message, signature: flip(signature, signature.length - 1), expected: false },
    { name: "another message", point, message: flip(message, 0), signature, expected: false },
    { name: "another key", point: other, message, signature, expected: false },
    {
      name: "r with superfluous leading zeros (BER, not DER)",
      point,
      message,
      signature: seq(tlv(TAG.integer, Buffer.from([0, 0]), magnitude(r)), uint(magnitude(s))),
      expected: false,
    },
    {
      name: "long-form length (BER, not DER)",
      point,
      message,
      signature: Buffer.concat([Buffer.from([0x30, 0x81, signature[1]!]), signature.subarray(2)]),
      expected: false,
    },
    {
      name: "a trailing octet",
      point,
      message,
      signature: Buffer.concat([signature, Buffer.from([0])]),
      expected: false,
    },
    { name: "truncated", point, message, signature: signature.subarray(0, signature.length - 1), expected: false },
    { name: "empty", point, message, signature: Buffer.alloc(0), expected: false },
    { name: "r = 0", point, message, signature: sigOf(0n, s), expected: false },
    { name: "s = 0", point, message, signature: sigOf(r, 0n), expected: false },
    { name: "r = n", point, message, signature: sigOf(N, s), expected: false },
    { name: "s = n + s", point, message, signature: sigOf(r, N + s), expected: false },
    { name: "a point off the curve (y changed)", point: flip(point, 64), message, signature, expected: false },
    {
      name: "x not below the field prime",
      point: Buffer.concat([
        Buffer.from([4]),
        Buffer.from(P.toString(16).padStart(64, "0"), "hex"),
        point.subarray(33),
      ]),
      message,
      signature,
      expected: false,
    },
    {
      name: "the zero point",
      point: Buffer.concat([Buffer.from([4]), Buffer.alloc(64)]),
      message,
      signature,
      expected: false,
    },
  );
  return out;
}

describe("native P-256 verifier", () => {
  it("answers as node:crypto does, case by case", () => {
    const verifyNative = native();
    for (const c of cases()) {
      assert.equal(viaNode(c.point, c.message, c.signature), c.expected, `node:crypto on ${c.name}`);
      assert.equal(verifyNative(c.point, c.message, c.signature), c.expected, `native on ${c.name}`);
    }
  });

  it("leaves no OpenSSL error behind for node:crypto's next call on the thread", () => {
    const verifyNative = native();
    const offCurve = Buffer.concat([Buffer.from([4]), Buffer.alloc(64, 1)]);
    assert.equal(verifyNative(offCurve, Buffer.from("m"), Buffer.from([0x30, 0x00])), false);
    const pair = generateKey("ecdsa-p256");
    assert.equal(
      verifyNative(pair.spki.subarray(pair.spki.length - 65), Buffer.from("m"), Buffer.from([0x30, 0x81])),
      false,
    );
    // With an error left queued, OpenSSL 3 fails this import with the stale error (seen: ERR_OSSL_EC_BAD_SIGNATURE).
    assert.doesNotThrow(() => createPrivateKey({ key: pair.pkcs8, format: "der", type: "pkcs8" }));
  });

  it("refuses arguments that are not three Uint8Arrays with a TypeError", () => {
    const verifyNative = native() as unknown as (...a: unknown[]) => boolean;
    const b = Buffer.alloc(65);
    assert.throws(() => verifyNative(b, b), TypeError);
    assert.throws(() => verifyNative("04", b, b), TypeError);
    assert.throws(() => verifyNative(b, b, new Uint16Array(4)), TypeError);
  });

  it("csrSignature gives the same verdicts with the addon and without it (MTLSKIT_NATIVE=0)", () => {
    native();
    const dir = tempDir("native-csr-");
    const requests: string[] = [];
    for (const keyType of ["ecdsa-p256", "ecdsa-p256", "ecdsa-p384", "ed25519"] as const) {
      const pair = generateKey(keyType);
      const key = createPrivateKey({ key: pair.pkcs8, format: "der", type: "pkcs8" });
      const der = encodeCsr({ subject: { CN: "web" }, dns: ["web.local"], ips: [], uris: [] }, keyType, pair.spki, key);
      requests.push(der.toString("hex"));
      const bad = Buffer.from(der);
      bad[bad.length - 3]! ^= 0x01; // inside the signature
      requests.push(bad.toString("hex"));
    }
    const here = requests.map((hex) => csrSignature(decodeCsr(Buffer.from(hex, "hex"))));
    assert.deepEqual(here, ["valid", "invalid", "valid", "invalid", "valid", "invalid", "valid", "invalid"]);
    const script = path.join(dir, "verdicts.ts");
    writeFileSync(
      script,
      [
        `import { csrSignature, decodeCsr } from ${JSON.stringify(pathToFileURL(path.join(REPO, "src/pki/csr.ts")).href)};`,
        `import { nativeP256 } from ${JSON.stringify(pathToFileURL(path.join(REPO, "src/pki/native.ts")).href)};`,
        `const requests: string[] = ${JSON.stringify(requests)};`,
        "console.log(JSON.stringify({ native: nativeP256() !== undefined, verdicts: requests.map((h) => csrSignature(decodeCsr(Buffer.from(h, 'hex')))) }));",
      ].join("\n"),
    );
    const run = spawnSync(process.execPath, ["--import", "tsx", script], {
      cwd: REPO,
      env: { ...process.env, MTLSKIT_NATIVE: "0" },
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(JSON.parse(run.stdout), { native: false, verdicts: here });
  });
});
