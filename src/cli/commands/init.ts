/** `mtlskit init`: write a commented starter manifest, or one of the bundled examples. */
import { constants, copyFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { UsageError } from "../../errors.ts";
import { parseArgs } from "node:util";
import { COMMON_FLAGS, flags } from "../args.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import type { Io } from "../output.ts";

/** EXAMPLES_DIR is the package's examples/ folder (the same depth from src/ and dist/). */
export const EXAMPLES_DIR = fileURLToPath(new URL("../../../examples/", import.meta.url));

const exampleNames = () => readdirSync(EXAMPLES_DIR).filter((f) => f.endsWith(".yaml")).map((f) => f.slice(0, -5)).sort();

export const INIT_HELP = `mtlskit init: write a commented starter manifest to start from.

USAGE
  mtlskit init [--example NAME] [-f FILE] [--force]

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
  const { values } = flags("init", () => parseArgs({ args, options: { ...COMMON_FLAGS, example: { type: "string", default: "quickstart" }, file: { type: "string", short: "f", default: "mtlskit.yaml" }, force: { type: "boolean" } }, allowPositionals: false, strict: true }));
  if (values.help) return io.out(INIT_HELP.replace("<names>", exampleNames().join(", "))), 0;
  const names = exampleNames();
  if (!names.includes(values.example)) throw new UsageError(`mtlskit init: unknown example ${JSON.stringify(values.example)}; examples are: ${names.join(", ")}`);
  try {
    copyFileSync(`${EXAMPLES_DIR}${values.example}.yaml`, values.file, values.force ? 0 : constants.COPYFILE_EXCL);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new UsageError(`mtlskit init: ${values.file} already exists; pass --force to overwrite it, or -f to write elsewhere`);
    throw e;
  }
  io.out(`Wrote ${values.file} (from the ${values.example} example). Edit it, then run \`mtlskit plan -f ${values.file}\` and \`mtlskit apply -f ${values.file}\`.\n`);
  return 0;
}
