/** The manifest's JSON Schema, derived from ManifestSchema so the validator and editors agree. */
import { toJsonSchema } from "@valibot/to-json-schema";
import { ManifestSchema } from "./schema.ts";

/** manifestJsonSchema returns the JSON Schema (draft-07) of manifest v1. */
export function manifestJsonSchema(): Record<string, unknown> {
  const schema = toJsonSchema(ManifestSchema, { errorMode: "ignore" }) as Record<string, unknown>;
  return { ...schema, $id: "https://github.com/mtlskit/mtlskit/schema/mtlskit.schema.json", title: "mtlskit manifest" };
}
