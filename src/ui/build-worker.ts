/**
 * The dashboard's snapshot builder as a worker thread (started by builder.ts workerBuilder):
 * check of a large PKI takes seconds of CPU (about 0.75 ms per service measured at 10,000), and a
 * poll stats two files per service; on the main thread both would stall every request of
 * `mtlskit ui` and, mounted by `serve --ui`, every issuance of the online CA. The main thread reads
 * the ledger (its connection lives there) and sends its part; this thread reads the PKI
 * directory, judges it and serializes the snapshot; only the JSON text goes back.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { Manifest } from "../manifest/index.ts";
import type { LedgerPart } from "./model.ts";
import { stampFiles } from "./model.ts";
import { buildText, fileStamp, revive, type WorkerAnswer } from "./builder.ts";

const { manifest, pkiDir } = revive(workerData) as { manifest: Manifest; pkiDir: string };
const files = stampFiles(manifest, pkiDir);

parentPort!.on(
  "message",
  (m: { id: number } & ({ kind: "build"; now: Date; ledger: LedgerPart | undefined } | { kind: "stamp" })) => {
    let answer: WorkerAnswer;
    try {
      answer =
        m.kind === "stamp"
          ? { id: m.id, stamp: fileStamp(files) }
          : { id: m.id, built: buildText(manifest, pkiDir, m.now, revive(m.ledger) as LedgerPart | undefined) };
    } catch (e) {
      answer = { id: m.id, error: e instanceof Error ? e.message : String(e) };
    }
    parentPort!.postMessage(answer);
  },
);
