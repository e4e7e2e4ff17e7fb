/** `mtlskit init`: write a commented starter manifest, or one of the bundled examples. */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { UsageError } from "../../errors.ts";
import { parseArgs } from "node:util";
import { COMMON_FLAGS, flags } from "../args.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import type { Io } from "../output.ts";

/** EXAMPLES_DIR is the package's examples/ folder (the same depth from src/ and dist/). */
export const EXAMPLES_DIR = fileURLToPath(new URL("../../../examples/", import.meta.url));

/** INSTALLED_SCHEMA is where `npm install mtlskit` puts the schema, relative to the project. */
export const INSTALLED_SCHEMA = "node_modules/mtlskit/schema/mtlskit.schema.json";

/** MODELINE is the examples' first line: the schema as seen from examples/ in the package. */
const MODELINE = /^# yaml-language-server: \$schema=\S*\n/;

/**
 * schemaReference is the installed package's schema as a path relative to `file`'s directory,
 * found from that directory up as Node finds packages, or undefined when the project has none.
 * yaml-language-server resolves a relative `$schema=` path against the YAML file (since
 * redhat-developer/yaml-language-server#499), and one into node_modules/mtlskit stays right
 * across upgrades; a path to wherever this mtlskit runs from (a checkout, an npx cache, a global
 * install) would not (issue 11: init wrote one pointing into the repository).
 */
export function schemaReference(file: string): string | undefined {
  const from = path.dirname(path.resolve(file));
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, ...INSTALLED_SCHEMA.split("/"));
    if (existsSync(candidate)) return path.relative(from, candidate).split(path.sep).join("/");
    if (path.dirname(dir) === dir) return undefined;
  }
}

/** renderExample is an example as a starter file at `file`: its modeline pointing at the installed schema (or how to get one), its commands naming `file`. */
export function renderExample(text: string, example: string, file: string): string {
  const ref = schemaReference(file);
  const modeline =
    ref !== undefined
      ? `# yaml-language-server: $schema=${ref}\n`
      : // Not itself a modeline: yaml-language-server reads only comments matching /^#\s+(yaml-language-server\s*:|\$schema:)/.
        "# Editor completion and inline errors: once mtlskit is installed here (npm install --save-dev\n" +
        `# mtlskit), replace this comment with the line "# yaml-language-server: $schema=${INSTALLED_SCHEMA}";\n` +
        '# or save the schema (mtlskit schema > mtlskit.schema.json) and use "$schema=mtlskit.schema.json".\n';
  return text.replace(MODELINE, modeline).replaceAll(`examples/${example}.yaml`, file);
}

const exampleNames = () =>
  readdirSync(EXAMPLES_DIR)
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => f.slice(0, -5))
    .sort();

export const INIT_HELP = `mtlskit init: write a commented starter manifest to start from.

USAGE
  mtlskit init [--example NAME] [-f FILE] [--force]

When the project has mtlskit in node_modules (npm install --save-dev mtlskit), FILE starts with
a yaml-language-server modeline for completion and inline errors, pointing at
${INSTALLED_SCHEMA} relative to FILE; otherwise a comment says how to add one.
The commands in the example's comments name FILE.

FLAGS
      --example NAME   write a bundled example instead of the quick start: ${"<names>"}
  -f, --file FILE      where to write (default mtlskit.yaml)
      --force          overwrite FILE if it exists

EXAMPLES
  mtlskit init && mtlskit apply
  mtlskit init --example serviceradar -f serviceradar.yaml

${EXIT_CODES_TEXT}
`;

/** initCommand runs `mtlskit init`. */
export async function initCommand(args: string[], io: Io): Promise<number> {
  const { values } = flags("init", () =>
    parseArgs({
      args,
      options: {
        ...COMMON_FLAGS,
        example: { type: "string", default: "quickstart" },
        file: { type: "string", short: "f", default: "mtlskit.yaml" },
        force: { type: "boolean" },
      },
      allowPositionals: false,
      strict: true,
    }),
  );
  if (values.help) return (io.out(INIT_HELP.replace("<names>", exampleNames().join(", "))), 0);
  const names = exampleNames();
  if (!names.includes(values.example))
    throw new UsageError(
      `mtlskit init: unknown example ${JSON.stringify(values.example)}; examples are: ${names.join(", ")}`,
    );
  const text = renderExample(
    readFileSync(`${EXAMPLES_DIR}${values.example}.yaml`, "utf8"),
    values.example,
    values.file,
  );
  try {
    writeFileSync(values.file, text, { flag: values.force ? "w" : "wx" });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST")
      throw new UsageError(
        `mtlskit init: ${values.file} already exists; pass --force to overwrite it, or -f to write elsewhere`,
      );
    throw e;
  }
  io.out(
    `Wrote ${values.file} (from the ${values.example} example). Edit it, then run \`mtlskit plan -f ${values.file}\` and \`mtlskit apply -f ${values.file}\`.\n`,
  );
  return 0;
}
