/** ExportFile: one file an export writes, as data. Builders return lists of them; only write.ts touches the disk. */

/** ExportFile is a file to write: its path relative to the output directory (`/`-separated), its exact bytes and mode. */
export interface ExportFile {
  path: string;
  bytes: Buffer;
  mode: number;
}

/** EXPORT_MODES: public material 0644, anything holding a private key 0600. */
export const EXPORT_MODES = { public: 0o644, secret: 0o600 } as const;

/** isSecret says whether a mode keeps the file from other users (keys, Secrets, .p12). */
export const isSecret = (mode: number): boolean => (mode & 0o077) === 0;
