/** `mtlskit csr --service NAME --out DIR`: on a service's host, its key and a request for exactly what the manifest declares. */
import { createPrivateKey } from "node:crypto";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { requestFor, sanWords } from "../../ca/policy.ts";
import { InvalidInputError, UsageError } from "../../errors.ts";
import { loadManifest } from "../../manifest/index.ts";
import { encodeCsr } from "../../pki/csr.ts";
import { generateKey, KEY_TYPES, keyTypeOf, parsePrivateKey, spkiOfPrivateKey } from "../../pki/keys.ts";
import { encodePem } from "../../pki/pem.ts";
import { formatSubject } from "../../pki/name.ts";
import { readTextBounded } from "../../read-file.ts";
import { ensureDir, syncDir, writeFileAtomic } from "../../state/fs.ts";
import { MODES } from "../../state/layout.ts";
import { COMMON_FLAGS, flags } from "../args.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import type { Io } from "../output.ts";
import { renderWarnings } from "./shared.ts";
import { serviceFor } from "./sign.ts";

export const CSR_HELP = `mtlskit csr: make a service's key on its own host, and a request (CSR) for its certificate.

USAGE
  mtlskit csr --service NAME [-f FILE] --out DIR [--new-key]

For a service declared \`csr: true\`: the key never leaves this host. Writes DIR/NAME-key.pem (the
key, PKCS#8, mode 0600, written atomically; DIR is created 0700) and DIR/NAME.csr (PEM), which asks
for exactly what the manifest declares for NAME: its subject, DNS and IP SANs, identity URI, and a
key of its key type. An existing DIR/NAME-key.pem of the right type is kept, so a renewal asks for
the same key; --new-key replaces it with a new one (the running service keeps its old key until
the new certificate is installed beside the new key).

Then carry DIR/NAME.csr to the CA's host and run \`mtlskit sign\`.

FLAGS
      --service NAME   the service (required; must be csr: true)
  -f, --file FILE      manifest (default mtlskit.yaml)
      --out DIR        where the key and the CSR are written (required)
      --new-key        make a new key even when DIR/NAME-key.pem exists

EXAMPLES
  mtlskit csr --service web -f mtlskit.yaml --out /etc/web/tls
  mtlskit sign /etc/web/tls/web.csr --service web -f mtlskit.yaml --pki ./pki -o web.pem   # on the CA's host

${EXIT_CODES_TEXT}
`;

/** csrCommand runs `mtlskit csr`. */
export async function csrCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("csr", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        file: { type: "string", short: "f", default: "mtlskit.yaml" },
        service: { type: "string" },
        out: { type: "string" },
        "new-key": { type: "boolean" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(CSR_HELP), 0);
  if (positionals.length > 0)
    throw new UsageError(
      `mtlskit csr: unexpected argument ${JSON.stringify(positionals[0])}; name the service with --service NAME`,
    );
  if (values.out === undefined)
    throw new UsageError("mtlskit csr: --out DIR is required: where the key and the CSR are written");
  const loaded = loadManifest(values.file);
  renderWarnings(io, loaded.warnings);
  const service = serviceFor(loaded, "csr", values.service);
  const dir = values.out;
  const keyFile = path.join(dir, `${service.name}-key.pem`);
  const csrFile = path.join(dir, `${service.name}.csr`);
  const type = KEY_TYPES[service.keyType];

  // An existing key is kept (a renewal asks for the same key) unless --new-key; one of another type is refused.
  let existing: string | undefined;
  if (!values["new-key"]) {
    try {
      existing = readTextBounded(keyFile, { noFollow: true });
    } catch (e) {
      if ((e as { code?: string }).code !== "ENOENT") throw e;
    }
  }
  let pkcs8: Buffer;
  let spki: Buffer;
  let fresh: boolean;
  if (existing !== undefined) {
    let key;
    try {
      key = parsePrivateKey(existing);
    } catch (e) {
      throw new InvalidInputError([
        {
          file: keyFile,
          path: "",
          message: `is not a usable private key (${(e as Error).message})`,
          fix: "move it away, or pass --new-key to replace it with a new key",
        },
      ]);
    }
    const have = keyTypeOf(key);
    if (have !== service.keyType)
      throw new InvalidInputError([
        {
          file: keyFile,
          path: "",
          message: `is ${have ? KEY_TYPES[have].describe : "a key mtlskit does not sign"}, but services.${service.name}.key declares ${type.describe}`,
          fix: "pass --new-key to replace it with a key of the declared type",
        },
      ]);
    pkcs8 = key.export({ type: "pkcs8", format: "der" });
    spki = spkiOfPrivateKey(key);
    fresh = false;
  } else {
    const k = generateKey(service.keyType);
    pkcs8 = k.pkcs8;
    spki = k.spki;
    fresh = true;
  }
  const req = requestFor(service);
  const der = encodeCsr(req, service.keyType, spki, createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" }));
  ensureDir(dir, MODES.privateDir, { parents: true });
  // The key before the request: a crash between the two leaves a key and no request, which a re-run reuses.
  if (fresh) writeFileAtomic(keyFile, encodePem("PRIVATE KEY", pkcs8), MODES.key);
  writeFileAtomic(csrFile, encodePem("CERTIFICATE REQUEST", der), MODES.public);
  syncDir(dir);
  const sans = sanWords(req);
  io.out(
    `mtlskit csr: ${fresh ? "wrote a new" : "kept the existing"} ${type.describe} key ${keyFile} (0600; it never leaves this host) and wrote ${csrFile} for ${formatSubject(req.subject)}${sans.length ? `, ${sans.join(", ")}` : ""}.\nNext: carry ${csrFile} to the CA's host and run \`mtlskit sign ${path.basename(csrFile)} --service ${service.name} -f ${values.file} --pki PKI -o ${service.name}.pem\`; install ${service.name}.pem and the CA bundle beside the key.\n`,
  );
  return 0;
}
