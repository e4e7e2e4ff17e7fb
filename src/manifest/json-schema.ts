/** The manifest's JSON Schema, derived from ManifestSchema so the validator and editors agree. */
import { toJsonSchema } from "@valibot/to-json-schema";
import { ManifestSchema } from "./schema.ts";

/** manifestJsonSchema returns the JSON Schema (draft-07) of manifest v1. */
export function manifestJsonSchema(): Record<string, unknown> {
  // `transform` (numbers written as addresses become strings) has no JSON Schema form: describe the input.
  const schema = toJsonSchema(ManifestSchema, { errorMode: "ignore", typeMode: "input" }) as Record<string, unknown>;
  return { ...schema, $id: "https://github.com/mtlskit/mtlskit/schema/mtlskit.schema.json", title: "mtlskit manifest" };
}
