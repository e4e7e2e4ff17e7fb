/** `mtlskit sign CSR --service NAME`: a request made on a service's host, judged against the manifest and signed by the CA. */
import { existsSync } from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { DecodeError, InvalidInputError, MtlskitError, UsageError } from "../../errors.ts";
import { loadManifest, problemAt, type LoadedManifest, type Service } from "../../manifest/index.ts";
import { readCertFields } from "../../pki/cert.ts";
import { decodeCsr, type CsrFields } from "../../pki/csr.ts";
import { parsePem } from "../../pki/pem.ts";
import { signRequest } from "../../plan/sign.ts";
import { readFileBounded } from "../../read-file.ts";
import { loadCaKeyFile } from "../../state/read.ts";
import { writeFileAtomic } from "../../state/fs.ts";
import { COMMON_FLAGS, flags } from "../args.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import type { Io } from "../output.ts";
import { PKI_FLAGS, renderWarnings } from "./shared.ts";

export const SIGN_HELP = `mtlskit sign: sign a service's certificate request (CSR) with the CA, as the manifest declares it.

USAGE
  mtlskit sign CSR --service NAME [-f FILE] [--pki DIR] [-o FILE]

For a service declared \`csr: true\`, whose key is made on its own host by \`mtlskit csr\` and never
leaves it. The CSR's self-signature must verify and its key must be the manifest's key type (RSA:
2048..4096 bits). The certificate's SANs, identity URI, usage and validity come from the manifest,
never from the CSR: a CSR asking for anything else (other SANs or subject, CA:TRUE, keyCertSign,
another usage or extension) is refused, naming the CSR's field, and nothing is written.

The certificate (leaf, then the CA chain) and the trust bundle are written under the PKI
directory's lock as DIR/services/NAME/cert.pem and ca.pem, where plan, check, status and metrics
see them; no key is written. -o FILE also writes the chain to FILE (- for standard output) to
carry back to the host.

FLAGS
      --service NAME   the service the CSR is for (required)
  -f, --file FILE      manifest (default mtlskit.yaml)
      --pki DIR        PKI directory holding the CA (default ./pki)
  -o, --output FILE    also write the certificate chain to FILE (- for standard output)
      --ca-key FILE    the CA key, when it is kept offline (\`mtlskit ca offline\`) and no
                       ca.intermediate signs services: checked against the CA, never copied

EXAMPLES
  mtlskit sign web.csr --service web -f mtlskit.yaml --pki ./pki -o web.pem
  scp web.pem pki/services/web/ca.pem web-host:/etc/web/tls/

${EXIT_CODES_TEXT}
`;

/** loadCsr reads a CSR file (PEM or DER) and decodes it; anything else is a problem of that file (exit 2). */
export function loadCsr(file: string): CsrFields {
  const bad = (message: string, fix: string): never => {
    throw new InvalidInputError([{ file, path: "", message, fix }]);
  };
  const remake = "give the request made by `mtlskit csr` (NAME.csr, PEM -----BEGIN CERTIFICATE REQUEST-----)";
  let bytes: Buffer;
  try {
    bytes = readFileBounded(file, { limit: 1 << 20 });
  } catch (e) {
    if (e instanceof MtlskitError && "reason" in e) return bad(`cannot be read: it ${String(e.reason)}`, remake);
    throw e;
  }
  if (bytes.length === 0) return bad("is empty", remake);
  const text = bytes.toString("latin1");
  let der: Buffer;
  if (text.includes("-----BEGIN ")) {
    let blocks: ReturnType<typeof parsePem>;
    try {
      blocks = parsePem(text);
    } catch (e) {
      return bad((e as Error).message.replace(/^pem: /, ""), remake);
    }
    const reqs = blocks.filter((b) => b.label === "CERTIFICATE REQUEST" || b.label === "NEW CERTIFICATE REQUEST");
    if (reqs.length === 0)
      return bad(
        blocks.some((b) => b.label === "CERTIFICATE")
          ? "holds a CERTIFICATE, not a certificate request: sign takes the CSR the service's host made, and makes the certificate itself"
          : `holds ${blocks.map((b) => b.label).join(", ") || "a truncated PEM block"}, not a CERTIFICATE REQUEST`,
        remake,
      );
    if (reqs.length > 1)
      return bad(`holds ${reqs.length} certificate requests; sign takes one`, "sign each request on its own");
    der = reqs[0]!.der;
  } else if (bytes[0] === 0x30) der = bytes;
  else return bad("is neither PEM nor DER: it holds no -----BEGIN line and does not start as DER", remake);
  try {
    return decodeCsr(der);
  } catch (e) {
    if (!(e instanceof DecodeError) && !(e instanceof Error)) throw e;
    let isCert = false;
    try {
      readCertFields(der);
      isCert = true;
    } catch {
      // not a certificate either
    }
    return bad(
      isCert
        ? "holds a certificate (DER), not a certificate request: sign takes the CSR the service's host made"
        : `is not a valid certificate request: ${(e as Error).message}`,
      remake,
    );
  }
}

/** serviceFor finds NAME in the manifest, or refuses it (exit 2) listing the services; used by csr and sign. */
export function serviceFor(loaded: LoadedManifest, command: string, name: string | undefined): Service {
  const m = loaded.manifest;
  if (name === undefined)
    throw new UsageError(
      `mtlskit ${command}: --service NAME is required; services are: ${m.services.map((s) => s.name).join(", ")}`,
    );
  const s = m.services.find((x) => x.name === name);
  if (!s)
    throw new InvalidInputError([
      {
        file: m.file,
        path: "services",
        message: `has no service ${JSON.stringify(name)}; services are: ${m.services.map((x) => x.name).join(", ")}`,
        fix: "use a service name from the manifest",
      },
    ]);
  if (!s.csr)
    throw new InvalidInputError([
      {
        ...problemAt(
          loaded,
          ["services", s.name],
          `${s.name} is not declared csr: true, so apply makes its key and \`mtlskit ${command}\` does not ${command === "sign" ? "sign requests" : "make keys"} for it`,
          `add csr: true to services.${s.name} (its key then lives only on its host), or let \`mtlskit apply\` issue it`,
        ),
        path: `services.${s.name}.csr`,
      },
    ]);
  return s;
}

/** signCommand runs `mtlskit sign`. */
export async function signCommand(args: string[], io: Io): Promise<number> {
  const { values, positionals } = flags("sign", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        ...PKI_FLAGS,
        service: { type: "string" },
        output: { type: "string", short: "o" },
        "ca-key": { type: "string" },
      },
      allowPositionals: true,
      strict: true,
    }),
  );
  if (values.help) return (io.out(SIGN_HELP), 0);
  if (positionals.length !== 1)
    throw new UsageError(
      positionals.length === 0
        ? "mtlskit sign: name the CSR file: mtlskit sign NAME.csr --service NAME"
        : `mtlskit sign: one CSR at a time; got ${positionals.length} (${positionals.join(", ")})`,
    );
  const file = positionals[0]!;
  // -o's folder is checked first: a signature written into the PKI but not to -o would be half a job.
  if (values.output !== undefined && values.output !== "-" && !existsSync(path.dirname(path.resolve(values.output))))
    throw new UsageError(
      `mtlskit sign: -o ${values.output}: the directory ${path.dirname(values.output)} does not exist; create it or choose another file`,
    );
  const loaded = loadManifest(values.file);
  renderWarnings(io, loaded.warnings);
  const service = serviceFor(loaded, "sign", values.service);
  const csr = loadCsr(file);
  const caKeyFile = values["ca-key"];
  const caKey = caKeyFile === undefined ? undefined : { key: loadCaKeyFile(caKeyFile), file: caKeyFile };
  const r = signRequest(loaded, values.pki, service, csr, file, caKey ? { caKey } : {});
  const say = values.output === "-" ? io.err : io.out;
  for (const n of r.notes) say(`note: ${n}\n`);
  if (values.output === "-") io.out(r.chainPem);
  else if (values.output !== undefined) writeFileAtomic(values.output, r.chainPem, 0o644);
  say(
    `mtlskit sign: signed ${service.name}'s request ${file}, valid until ${r.notAfter.toISOString().slice(0, 10)}; wrote ${r.certFile} and ${r.bundleFile}${values.output !== undefined && values.output !== "-" ? ` and ${values.output}` : ""} (no key: it stays on ${service.name}'s host).\nInstall the certificate and ${r.bundleFile} beside ${service.name}'s key on its host, then reload ${service.name}.\n`,
  );
  return 0;
}
