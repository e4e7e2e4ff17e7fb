/**
 * Test helper: a hand-written ACME client (RFC 8555) on `jose`, for what real clients never send:
 * replayed nonces, JWS signed by the wrong key, a url that is not the request's, a bad EAB, a CSR
 * naming other names, another account's order. Each call is one HTTPS request, bounded; the
 * server's answer comes back as it is (status, headers, JSON or text), never thrown.
 */
import { request } from "node:https";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, FlattenedSign, generateKeyPair, calculateJwkThumbprint, type JWK, type CryptoKey } from "jose";

/** AcmeAnswer is one HTTP answer. */
export interface AcmeAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** json: the parsed body when it is JSON (problem documents included). */
  json: Record<string, unknown> & { type?: string; detail?: string; status?: string | number };
  text: string;
}

/** Alg: the account key algorithms the server accepts. */
export type Alg = "ES256" | "RS256" | "EdDSA";

/** AccountKey is a key pair with its public JWK. */
export interface AccountKey {
  alg: Alg;
  privateKey: CryptoKey;
  jwk: JWK;
}

/** newAccountKey makes a key for `alg` (RS256: RSA 2048, EdDSA: Ed25519). */
export async function newAccountKey(alg: Alg = "ES256"): Promise<AccountKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, {
    extractable: true,
    ...(alg === "EdDSA" ? { crv: "Ed25519" } : {}),
  });
  return { alg, privateKey, jwk: await exportJWK(publicKey) };
}

/** https sends one request to the CA, trusting only `ca`, bounded by 15 s. */
export function https(
  url: string,
  opts: { method?: string; body?: string; type?: string; ca: string },
): Promise<AcmeAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: opts.method ?? "GET",
        ca: opts.ca,
        headers: opts.body === undefined ? {} : { "content-type": opts.type ?? "application/jose+json" },
        timeout: 15_000,
        agent: false,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          text += c;
        });
        res.on("end", () => {
          let json = {};
          try {
            json = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode ?? 0, headers: res.headers, json, text });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${url}: no answer within 15 s`)));
    req.on("error", reject);
    req.end(opts.body);
  });
}

/** b64 is base64url of a string or bytes. */
export const b64 = (x: string | Uint8Array) => Buffer.from(x).toString("base64url");

/** SignOptions let a test break one rule of RFC 8555 §6.2 at a time. */
export interface SignOptions {
  /** nonce to send instead of a fresh one (a replay). */
  nonce?: string;
  /** url to sign instead of the request's. */
  url?: string;
  /** key signs instead of the client's (the header still names the client's kid or jwk). */
  key?: AccountKey;
  /** jwk: send the key as jwk even though the client has a kid. */
  useJwk?: boolean;
  /** alg written in the header instead of the key's. */
  alg?: string;
  /** extraHeader members. */
  extra?: Record<string, unknown>;
}

/** AcmeClient speaks ACME to one directory with one account key. */
export class AcmeClient {
  dir: Record<string, string> = {};
  kid: string | undefined;
  lastNonce: string | undefined;
  constructor(
    readonly directoryUrl: string,
    readonly ca: string,
    public key: AccountKey,
  ) {}

  static async create(directoryUrl: string, ca: string, alg: Alg = "ES256"): Promise<AcmeClient> {
    const c = new AcmeClient(directoryUrl, ca, await newAccountKey(alg));
    c.dir = (await https(directoryUrl, { ca })).json as Record<string, string>;
    return c;
  }

  async thumbprint(): Promise<string> {
    return calculateJwkThumbprint(this.key.jwk, "sha256");
  }

  async nonce(): Promise<string> {
    const r = await https(this.dir.newNonce!, { method: "HEAD", ca: this.ca });
    return r.headers["replay-nonce"] as string;
  }

  /** jws signs `payload` (an object, or "" for POST-as-GET) for `url`. */
  async jws(url: string, payload: unknown, o: SignOptions = {}): Promise<string> {
    const key = o.key ?? this.key;
    const header: Record<string, unknown> = {
      alg: o.alg ?? key.alg,
      nonce: o.nonce ?? (await this.nonce()),
      url: o.url ?? url,
      ...(this.kid && !o.useJwk ? { kid: this.kid } : { jwk: this.key.jwk }),
      ...o.extra,
    };
    const bytes = payload === "" ? new Uint8Array() : new TextEncoder().encode(JSON.stringify(payload));
    const signed = await new FlattenedSign(bytes).setProtectedHeader(header as { alg: string }).sign(key.privateKey);
    return JSON.stringify(signed);
  }

  /** post sends a signed request; the answer's Replay-Nonce is kept. */
  async post(url: string, payload: unknown, o: SignOptions = {}): Promise<AcmeAnswer> {
    const r = await https(url, { method: "POST", body: await this.jws(url, payload, o), ca: this.ca });
    this.lastNonce = r.headers["replay-nonce"] as string | undefined;
    return r;
  }

  /** eab is an External Account Binding for this client's key (RFC 8555 §7.3.4). */
  async eab(kid: string, hmac: string, o: { url?: string; alg?: string; boundKey?: JWK } = {}): Promise<unknown> {
    return new FlattenedSign(new TextEncoder().encode(JSON.stringify(o.boundKey ?? this.key.jwk)))
      .setProtectedHeader({ alg: o.alg ?? "HS256", kid, url: o.url ?? this.dir.newAccount! })
      .sign(Buffer.from(hmac, "base64url"));
  }

  /** register creates the account with EAB; the kid is kept when it succeeds. */
  async register(
    eab: { kid: string; hmac: string } | undefined,
    extra: Record<string, unknown> = {},
  ): Promise<AcmeAnswer> {
    const payload = {
      termsOfServiceAgreed: true,
      contact: ["mailto:ops@example.test"],
      ...(eab ? { externalAccountBinding: await this.eab(eab.kid, eab.hmac) } : {}),
      ...extra,
    };
    const r = await this.post(this.dir.newAccount!, payload, { useJwk: true });
    if (r.status === 201 || r.status === 200) this.kid = r.headers.location as string;
    return r;
  }

  /** order asks for identifiers (`dns:NAME` or `ip:ADDR`). */
  async order(...names: string[]): Promise<AcmeAnswer> {
    const identifiers = names.map((n) => ({ type: n.slice(0, n.indexOf(":")), value: n.slice(n.indexOf(":") + 1) }));
    return this.post(this.dir.newOrder!, { identifiers });
  }

  /** keyAuth is a challenge token's key authorization for this client's key. */
  async keyAuth(token: string): Promise<string> {
    return `${token}.${await this.thumbprint()}`;
  }
}

/** Http01Responder serves key authorizations on 127.0.0.1 (port 0) as http-01 wants; `answers` maps token to body. */
export async function startHttp01(): Promise<{ port: number; answers: Map<string, string>; close(): Promise<void> }> {
  const answers = new Map<string, string>();
  const server: Server = createServer((req, res) => {
    const token = (req.url ?? "").replace(/^\/\.well-known\/acme-challenge\//, "");
    const body = answers.get(token);
    if (body === undefined) {
      res.writeHead(404).end("no such token");
      return;
    }
    res.writeHead(200, { "content-type": "text/plain" }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    answers,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
