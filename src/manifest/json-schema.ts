/** The manifest's JSON Schema, derived from ManifestSchema so the validator and editors agree. */
import { toJsonSchema } from "@valibot/to-json-schema";
import { EXTENSION_KEY, ManifestSchema } from "./schema.ts";

/** manifestJsonSchema returns the JSON Schema (draft-07) of manifest v1. */
export function manifestJsonSchema(): Record<string, unknown> {
  const schema = toJsonSchema(ManifestSchema, { errorMode: "ignore" }) as Record<string, unknown>;
  // Top-level x- keys hold YAML anchors and are ignored by the validator (see EXTENSION_KEY).
  const extensions = {
    [EXTENSION_KEY.source]: {
      description: "Ignored by mtlskit: a place for YAML anchors that services merge with `<<: *name`.",
    },
  };
  return {
    ...schema,
    patternProperties: extensions,
    $id: "https://github.com/mtlskit/mtlskit/schema/mtlskit.schema.json",
    title: "mtlskit manifest",
  };
}
