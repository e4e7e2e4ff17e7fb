/**
 * `kubernetes`: a `kubernetes.io/tls` Secret per service (tls.crt, tls.key, ca.crt, as
 * cert-manager writes them, so Ingress controllers, service meshes and cert-manager's consumers
 * read them unchanged) and one ConfigMap holding the trust bundle under `ca.crt` (the key of
 * Kubernetes' own kube-root-ca.crt). One file per object, named after it, so `kubectl apply -f
 * DIR` applies them all and a Git diff shows which Secret changed. Pure; no timestamps, so
 * unchanged material gives byte-identical YAML.
 *
 * The YAML is written by hand: the shape is fixed, and every scalar goes through `quote`, a
 * double-quoted YAML string with everything outside printable ASCII escaped, except the
 * ConfigMap's PEM, a literal block scalar (`|`) so it reads as the PEM it is (issue 11: it was
 * one line of \u000a escapes). (parse.ts is the door for *reading* YAML; tests read these files
 * back with the `yaml` package.)
 *
 * Two kubernetes outputs sharing a dir (one per namespace) name their files NAMESPACE.OBJECT.yaml
 * (manifest/outputs.ts k8sNames), or both would write OBJECT.yaml and every apply would rewrite it.
 */
import type { Output } from "../manifest/index.ts";
import { k8sNames } from "../manifest/outputs.ts";
import { EXPORT_MODES, type ExportFile } from "./file.ts";
import { FLAT_CRL } from "./names.ts";
import type { PairMaterial, PkiMaterial } from "./material.ts";

export { K8S_DEFAULTS } from "../manifest/outputs.ts";

/** K8S_KEYS: the label and annotation keys mtlskit writes. */
export const K8S_KEYS = {
  managedBy: "app.kubernetes.io/managed-by",
  service: "mtlskit.dev/service",
  notAfter: "mtlskit.dev/not-after",
  fingerprint: "mtlskit.dev/spec-fingerprint",
} as const;

/** quote is a YAML double-quoted scalar: printable ASCII as is, `"` and `\` escaped, anything else as \uXXXX. */
export function quote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (c >= 0x20 && c < 0x7f) out += ch;
    else if (c <= 0xffff) out += `\\u${c.toString(16).padStart(4, "0")}`;
    else out += `\\U${c.toString(16).padStart(8, "0")}`;
  }
  return `${out}"`;
}

/**
 * literal is `text` as a YAML literal block scalar under a key at `indent`, when it can be one
 * exactly: printable ASCII lines without leading or trailing spaces (empty ones only inside),
 * ending in exactly one newline (`|` clips to one). Anything else is `quote`d, always exact.
 */
export function literal(indent: string, text: string): string {
  const lines = text.slice(0, -1).split("\n");
  const line = (l: string, i: number) => (l === "" ? i > 0 : /^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/.test(l));
  const exact = text.endsWith("\n") && !text.endsWith("\n\n") && lines.every(line);
  return exact ? `|\n${lines.map((l) => (l === "" ? "\n" : `${indent}  ${l}\n`)).join("")}` : `${quote(text)}\n`;
}

const mapping = (indent: string, entries: [string, string][]): string =>
  entries.map(([k, v]) => `${indent}${quote(k)}: ${quote(v)}\n`).join("");

const b64 = (text: string | Buffer) => Buffer.from(text).toString("base64");

function metadata(
  name: string,
  namespace: string,
  labels: [string, string][],
  annotations: [string, string][],
): string {
  return (
    `metadata:\n  name: ${quote(name)}\n  namespace: ${quote(namespace)}\n  labels:\n${mapping("    ", labels)}` +
    (annotations.length ? `  annotations:\n${mapping("    ", annotations)}` : "")
  );
}

function secret(
  name: string,
  namespace: string,
  service: string,
  pair: PairMaterial,
  bundlePem: string,
  what: string,
): string {
  return (
    `# ${what}: written by mtlskit export; edits are overwritten when it runs again.\n` +
    `apiVersion: v1\nkind: Secret\n` +
    metadata(
      name,
      namespace,
      [
        [K8S_KEYS.managedBy, "mtlskit"],
        [K8S_KEYS.service, service],
      ],
      [
        [K8S_KEYS.notAfter, pair.notAfter.toISOString()],
        [K8S_KEYS.fingerprint, `sha256:${pair.sha256}`],
      ],
    ) +
    `type: kubernetes.io/tls\ndata:\n${mapping("  ", [
      ["ca.crt", b64(bundlePem)],
      ["tls.crt", b64(pair.certPem)],
      ["tls.key", b64(pair.keyPem)],
    ])}`
  );
}

/** buildKubernetes writes NAME.yaml per Secret (a split service adds its client Secret) and BUNDLE.yaml for the ConfigMap. */
export function buildKubernetes(pki: PkiMaterial, out: Output): ExportFile[] {
  const k = k8sNames(out, pki.cluster);
  const namespace = k.namespace;
  const files: ExportFile[] = [];
  for (const s of pki.services) {
    const n = s.service.name;
    const name = k.secret(n);
    files.push({
      path: k.file(name),
      bytes: Buffer.from(
        secret(name, namespace, n, s.main, s.bundlePem, `service ${n}${s.client ? " (server certificate)" : ""}`),
      ),
      mode: EXPORT_MODES.secret,
    });
    if (s.client) {
      const clientName = k.secret(`${n}-client`);
      files.push({
        path: k.file(clientName),
        bytes: Buffer.from(
          secret(clientName, namespace, n, s.client, s.bundlePem, `service ${n} (client certificate)`),
        ),
        mode: EXPORT_MODES.secret,
      });
    }
  }
  const bundles = [...new Set(pki.services.map((s) => s.bundlePem))];
  const bundleName = k.bundle;
  const caCrt = bundles.join("");
  files.push({
    path: k.file(bundleName),
    bytes: Buffer.from(
      `# The trust bundle of cluster ${pki.cluster}: written by mtlskit export; edits are overwritten when it runs again.\n` +
        `apiVersion: v1\nkind: ConfigMap\n` +
        metadata(bundleName, namespace, [[K8S_KEYS.managedBy, "mtlskit"]], []) +
        `data:\n  ${quote("ca.crt")}: ${literal("  ", caCrt)}` +
        // The CA's CRL beside the bundle (mount both; nginx ssl_crl, PostgreSQL ssl_crl_file read it).
        (pki.crlPem === undefined ? "" : `  ${quote(FLAT_CRL)}: ${literal("  ", pki.crlPem)}`),
    ),
    mode: EXPORT_MODES.public,
  });
  return files;
}
