/**
 * `mtlskit token create|list|revoke`: single-use bootstrap tokens for `POST /v1/enroll`, bound
 * to one `csr: true` service. The token is printed once; the ledger keeps its id and the SHA-256
 * of its secret (src/ledger/tokens.ts).
 */
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { EXIT, InvalidInputError, UsageError } from "../../errors.ts";
import { isTokenId, openLedger, parseToken, redactUrl, type TokenRecord } from "../../ledger/index.ts";
import { formatDuration, loadManifest, parseTtl, problemAt } from "../../manifest/index.ts";
import { COMMON_FLAGS, flags } from "../args.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import { paintErr, type Io } from "../output.ts";
import { ledgerFile, table, withLedger } from "./ledger.ts";
import { LEDGER_FLAG, LEDGER_FLAG_HELP, PKI_FLAGS } from "./shared.ts";

/** TOKEN_TTL: a token's lifetime unless --ttl says otherwise; TOKEN_MAX_TTL bounds --ttl (a bootstrap token is for the next deployment, not a standing credential). */
export const TOKEN_TTL = "15m";
export const TOKEN_MAX_TTL_MS = 7 * 86_400_000;
/** ACME_TOKEN_TTL: an EAB key's lifetime unless --ttl says otherwise (configuring an ACME client, cert-manager's Secret, takes longer than starting an agent). */
export const ACME_TOKEN_TTL = "1d";

const PKI_ONLY = { pki: PKI_FLAGS.pki, ...LEDGER_FLAG, json: { type: "boolean" } } as const;

export const TOKEN_CREATE_HELP = `mtlskit token create: a single-use bootstrap token for one service's agent.

USAGE
  mtlskit token create SERVICE [-f FILE] [--pki DIR] [--ledger SPEC] [--ttl 15m] [--json]
  mtlskit token create SERVICE --acme [-f FILE] [--pki DIR] [--ledger SPEC] [--ttl 1d] [--json]

Prints mtk_ID_SECRET once: the agent on SERVICE's host presents it to \`mtlskit serve\`
(POST /v1/enroll) with its CSR, and the certificate it gets pays for it: the token is consumed
in the same transaction that records the certificate, so it works exactly once. The ledger
(DIR/ca/ledger.db, created 0600 if missing) keeps only the id and the SHA-256 of the secret.
SERVICE must be in the manifest with csr: true (its key is made on its host and never sent).

With --acme it makes an ACME External Account Binding key instead (RFC 8555 §7.3.4): a key id
(KID) and an HMAC key (base64url, 32 bytes), as certbot (--eab-kid, --eab-hmac-key), lego (--kid,
--hmac) and cert-manager (externalAccountBinding) take them. The ACME client registers one
account with it at https://HOST:PORT/acme/directory; the key then is used, and the account may
order certificates for SERVICE's declared names only. The ledger keeps the HMAC key itself (it
must verify the binding) in its 0600 file beside the CA key.

FLAGS
  -f, --file FILE      manifest (default mtlskit.yaml)
      --pki DIR        PKI directory (default ./pki); it must exist (unless --ledger names a database)
${LEDGER_FLAG_HELP}
      --ttl D          how long the token may be used: 90s, 15m, 1h, 7d at most (default ${TOKEN_TTL})
      --acme           an ACME EAB key (KID and HMAC key) instead of an agent token (default --ttl 1d)
      --json           print {"token","id","service","expiresAt"}; with --acme {"kid","hmacKey","service","expiresAt","directory"}

EXAMPLES
  mtlskit token create web > /run/web.token && chmod 600 /run/web.token
  mtlskit token create web --ttl 1h --json | jq -r .token
  mtlskit token create web --acme --json

${EXIT_CODES_TEXT}
`;

export const TOKEN_LIST_HELP = `mtlskit token list: the bootstrap tokens in the ledger (ids, never secrets), newest first.

USAGE
  mtlskit token list [--pki DIR] [--ledger SPEC] [--service S] [--json]

STATE is outstanding, used (by SERIAL), revoked or expired. Without a ledger it says so and exits 0.

FLAGS
      --pki DIR        PKI directory (default ./pki)
${LEDGER_FLAG_HELP}
      --service S      only the tokens of service S
      --json           print the tokens as JSON

EXAMPLES
  mtlskit token list --service web

${EXIT_CODES_TEXT}
`;

export const TOKEN_REVOKE_HELP = `mtlskit token revoke: make a token unusable before it expires.

USAGE
  mtlskit token revoke ID [--pki DIR] [--ledger SPEC] [--json]

ID is the 16 hex digits after mtk_ (\`mtlskit token list\` shows them). An enrollment that presents
it afterwards is refused (401 token-revoked). Revoking again keeps the first time.

FLAGS
      --pki DIR        PKI directory (default ./pki)
${LEDGER_FLAG_HELP}
      --json           print the token as JSON

EXAMPLES
  mtlskit token revoke 1d3e4a3fa62972f8

${EXIT_CODES_TEXT}
  2  also: no token with that id
`;

/** tokenState is a token's state at `now`, as list prints it. */
function tokenState(t: TokenRecord, now: Date): string {
  if (t.revokedAt) return "revoked";
  if (t.usedAt) return `used (by ${t.usedBy})`;
  return now >= t.expiresAt ? "expired" : "outstanding";
}

function tokenJson(t: TokenRecord, now: Date) {
  return {
    id: t.id,
    service: t.service,
    kind: t.kind,
    state: tokenState(t, now).replace(/ .*/, ""),
    createdAt: t.createdAt.toISOString(),
    expiresAt: t.expiresAt.toISOString(),
    ...(t.usedAt === undefined ? {} : { usedAt: t.usedAt.toISOString(), usedBy: t.usedBy }),
    ...(t.revokedAt === undefined ? {} : { revokedAt: t.revokedAt.toISOString() }),
  };
}

async function createCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("token create", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        ...PKI_FLAGS,
        ...LEDGER_FLAG,
        ttl: { type: "string" },
        acme: { type: "boolean" },
        json: { type: "boolean" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(TOKEN_CREATE_HELP), EXIT.ok);
  if (positionals.length !== 1)
    throw new UsageError(
      `mtlskit token create: name exactly one service; got ${positionals.length === 0 ? "none" : positionals.join(" ")}. Run \`mtlskit token create --help\` for usage.`,
    );
  const ttl = values.ttl ?? (values.acme ? ACME_TOKEN_TTL : TOKEN_TTL);
  const ttlMs = parseTtl(ttl);
  if (ttlMs === undefined || ttlMs > TOKEN_MAX_TTL_MS)
    throw new UsageError(
      `mtlskit token create: --ttl must be a duration such as 90s, 15m, 1h or 2d, at most 7d; got ${JSON.stringify(ttl)} (nothing was written)`,
    );
  const loaded = loadManifest(values.file);
  const m = loaded.manifest;
  const name = positionals[0]!;
  const service = m.services.find((s) => s.name === name);
  if (!service)
    throw new InvalidInputError([
      {
        file: m.file,
        path: "services",
        message: `has no service ${JSON.stringify(name)}; services are: ${m.services.map((s) => s.name).join(", ")}`,
        fix: "use a service name from the manifest",
      },
    ]);
  if (!service.csr)
    throw new InvalidInputError([
      problemAt(
        loaded,
        ["services", name],
        `${name} is not declared csr: true: only csr services are issued online (their key never leaves their host), so no token can enroll it`,
        `add csr: true to services.${name} (its host then runs \`mtlskit agent\`), or let \`mtlskit apply\` issue it`,
      ),
    ]);
  if (values.ledger === undefined && !existsSync(values.pki))
    throw new UsageError(
      `mtlskit token create: the PKI directory ${values.pki} does not exist; run \`mtlskit apply -f ${values.file} --pki ${values.pki}\` first, or pass the right --pki (nothing was written)`,
    );
  const now = new Date();
  const ledger = await openLedger(values.pki, values.ledger);
  let made: Awaited<ReturnType<typeof ledger.createToken>>;
  try {
    made = await ledger.createToken(name, values.acme ? "acme" : "enroll", ttlMs, now);
  } finally {
    await ledger.close();
  }
  const expiresAt = made.record.expiresAt.toISOString();
  if (values.acme) {
    const hmacKey = parseToken(made.token)!.secret;
    const directory = "https://HOST:PORT/acme/directory";
    if (values.json) {
      io.out(`${JSON.stringify({ kid: made.record.id, hmacKey, service: name, expiresAt, directory }, null, 2)}\n`);
      return EXIT.ok;
    }
    io.out(`kid: ${made.record.id}\nhmac: ${hmacKey}\n`);
    io.err(
      `${paintErr(io, "bold", `ACME EAB key ${made.record.id} for ${name}`)}: binds one account, valid until ${expiresAt} (${formatDuration(ttlMs)}). The HMAC key is shown only this once.\n` +
        `Register with it: certbot register --server ${directory} --eab-kid ${made.record.id} --eab-hmac-key HMAC, or lego --server ${directory} --eab --kid ${made.record.id} --hmac HMAC. Revoke it with \`mtlskit token revoke ${made.record.id} ${values.ledger === undefined ? `--pki ${values.pki}` : `--ledger ${redactUrl(values.ledger)}`}\`.\n`,
    );
    return EXIT.ok;
  }
  if (values.json) {
    io.out(`${JSON.stringify({ token: made.token, id: made.record.id, service: name, expiresAt }, null, 2)}\n`);
    return EXIT.ok;
  }
  // The token alone on stdout (TOKEN=$(mtlskit token create web)); what it is on stderr.
  io.out(`${made.token}\n`);
  io.err(
    `${paintErr(io, "bold", `Token ${made.record.id} for ${name}`)}: single use, valid until ${expiresAt} (${formatDuration(ttlMs)}). It is shown only this once; the ledger keeps its hash.\n` +
      `Give it to ${name}'s host: mtlskit agent --server URL --service ${name} --token-file FILE --out DIR (FILE mode 0600). Revoke it with \`mtlskit token revoke ${made.record.id} ${values.ledger === undefined ? `--pki ${values.pki}` : `--ledger ${redactUrl(values.ledger)}`}\`.\n`,
  );
  return EXIT.ok;
}

async function listCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("token list", () =>
    parseArgs({
      args,
      options: { ...COMMON_FLAGS, ...PKI_ONLY, service: { type: "string" } },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(TOKEN_LIST_HELP), EXIT.ok);
  if (positionals.length > 0)
    throw new UsageError(`mtlskit token list: unexpected argument ${JSON.stringify(positionals[0])}; use --service S`);
  const now = new Date();
  const tokens = await withLedger(values.pki, values.ledger, (l) =>
    l.tokens(values.service === undefined ? {} : { service: values.service }),
  );
  if (values.json)
    return (
      io.out(
        `${JSON.stringify(
          (tokens ?? []).map((t) => tokenJson(t, now)),
          null,
          2,
        )}\n`,
      ),
      EXIT.ok
    );
  if (tokens === undefined)
    return (
      io.out(
        `No ledger at ${ledgerFile(values.pki, values.ledger)}: no tokens. \`mtlskit token create SERVICE\` makes one (and the ledger).\n`,
      ),
      EXIT.ok
    );
  if (tokens.length === 0)
    return (
      io.out(
        `No tokens${values.service === undefined ? "" : ` for ${values.service}`} in ${ledgerFile(values.pki, values.ledger)}.\n`,
      ),
      EXIT.ok
    );
  io.out(
    table(
      ["ID", "SERVICE", "STATE", "EXPIRES", "CREATED"],
      tokens.map((t) => [t.id, t.service, tokenState(t, now), t.expiresAt.toISOString(), t.createdAt.toISOString()]),
    ),
  );
  return EXIT.ok;
}

async function revokeCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("token revoke", () =>
    parseArgs({ args, options: { ...COMMON_FLAGS, ...PKI_ONLY }, allowPositionals: true, strict: true }),
  );
  if (values.help) return (io.out(TOKEN_REVOKE_HELP), EXIT.ok);
  if (positionals.length !== 1)
    throw new UsageError(
      `mtlskit token revoke: name exactly one token id; got ${positionals.length === 0 ? "none" : positionals.join(" ")}. \`mtlskit token list\` shows them.`,
    );
  // A whole token is accepted too: its id is the public half.
  const id = /^mtk_([0-9a-f]{16})_/.exec(positionals[0]!)?.[1] ?? positionals[0]!;
  if (!isTokenId(id))
    throw new UsageError(
      `mtlskit token revoke: ${JSON.stringify(positionals[0])} is not a token id: 16 lower-case hex digits (the part after mtk_); \`mtlskit token list\` shows them`,
    );
  const now = new Date();
  const done = await withLedger(values.pki, values.ledger, async (l) => {
    const before = (await l.tokens()).find((t) => t.id === id);
    if (!before) return undefined;
    await l.revokeToken(id, now);
    return { before, after: (await l.tokens()).find((t) => t.id === id)! };
  });
  if (done === undefined)
    throw new InvalidInputError([
      {
        file: ledgerFile(values.pki, values.ledger),
        path: "",
        message: `has no token ${id}`,
        fix: "run `mtlskit token list` to see the ids, or pass the right --pki",
      },
    ]);
  if (values.json) return (io.out(`${JSON.stringify(tokenJson(done.after, now), null, 2)}\n`), EXIT.ok);
  io.out(
    done.before.revokedAt
      ? `Token ${id} (${done.after.service}) was already revoked at ${done.before.revokedAt.toISOString()}; nothing changed.\n`
      : `Revoked token ${id} (${done.after.service})${done.before.usedAt ? `; it had already been used by ${done.before.usedBy}, whose certificate stays valid (\`mtlskit revoke\` it if needed)` : ""}.\n`,
  );
  return EXIT.ok;
}

/** TOKEN_SUBCOMMANDS is the table of `mtlskit token` subcommands. */
export const TOKEN_SUBCOMMANDS: Record<
  string,
  { summary: string; example: string; run: (a: string[], io: Io) => Promise<number> }
> = {
  create: {
    summary: "a single-use enrollment token for SERVICE (printed once)",
    example: "mtlskit token create web --ttl 15m",
    run: createCommand,
  },
  list: {
    summary: "the tokens (ids and states, never secrets)",
    example: "mtlskit token list --service web",
    run: listCommand,
  },
  revoke: { summary: "make token ID unusable", example: "mtlskit token revoke 1d3e4a3fa62972f8", run: revokeCommand },
};

const tokenHelp = () => `mtlskit token: single-use bootstrap tokens for \`mtlskit agent\` enrollment.

USAGE
${Object.entries(TOKEN_SUBCOMMANDS)
  .map(([name, s]) => `  mtlskit token ${name.padEnd(7)} ${s.summary}`)
  .join("\n")}

Run \`mtlskit token SUBCOMMAND --help\` for details.

EXAMPLES
${Object.values(TOKEN_SUBCOMMANDS)
  .map((s) => `  ${s.example}`)
  .join("\n")}

${EXIT_CODES_TEXT}
`;

/** tokenCommand runs `mtlskit token SUBCOMMAND`. */
export async function tokenCommand(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") return (io.out(tokenHelp()), EXIT.ok);
  const command = TOKEN_SUBCOMMANDS[sub];
  if (!command)
    throw new UsageError(
      `mtlskit token: unknown subcommand ${JSON.stringify(sub)}; subcommands are: ${Object.keys(TOKEN_SUBCOMMANDS).join(", ")}. Run \`mtlskit token --help\`.`,
    );
  return command.run(rest, io);
}
