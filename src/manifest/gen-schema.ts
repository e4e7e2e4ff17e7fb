/** gen-schema writes the manifest's JSON Schema, generated from ManifestSchema (run by `npm run build`). */
import { writeFileSync } from "node:fs";
import { manifestJsonSchema } from "./json-schema.ts";

const out = process.argv[2];
if (!out) throw new Error("usage: gen-schema OUT.json");
writeFileSync(out, JSON.stringify(manifestJsonSchema(), null, 2) + "\n");
