/** Identity URIs: templates, parsing and validation. Depends on nothing else in mtlskit. */
export {
  PLACEHOLDERS,
  parseIdentity,
  compileTemplate,
  renderTemplate,
  templatePlaceholders,
  type Identity,
  type Placeholder,
} from "./id.ts";
