/** `mtlskit schema`: print the manifest's JSON Schema, for editors and CI validation. */
import { manifestJsonSchema } from "../../manifest/index.ts";
import { parseArgs } from "node:util";
import { COMMON_FLAGS, flags } from "../args.ts";
import { EXIT_CODES_TEXT } from "../help.ts";
import type { Io } from "../output.ts";

export const SCHEMA_HELP = `mtlskit schema: print the JSON Schema of mtlskit.yaml (draft-07).

USAGE
  mtlskit schema > mtlskit.schema.json

The same schema ships in the package as mtlskit/schema.json. With the YAML language server, put
  # yaml-language-server: $schema=./node_modules/mtlskit/schema/mtlskit.schema.json
at the top of mtlskit.yaml for completion and inline errors.

EXAMPLES
  mtlskit schema | jq '.properties.services'

${EXIT_CODES_TEXT}
`;

/** schemaCommand runs `mtlskit schema`. */
export async function schemaCommand(args: string[], io: Io): Promise<number> {
  const { values } = flags("schema", () =>
    parseArgs({ args, options: COMMON_FLAGS, allowPositionals: false, strict: true }),
  );
  if (values.help) return (io.out(SCHEMA_HELP), 0);
  io.out(JSON.stringify(manifestJsonSchema(), null, 2) + "\n");
  return 0;
}
