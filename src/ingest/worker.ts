// Worker-thread entry for parseDocumentIsolated: parse one file, post the result or the error back.
import { parentPort, workerData } from "node:worker_threads";
import { DajianError } from "../core/errors.js";
import { parseDocument, type ParseOptions } from "./parse.js";

const { bytes, fileName, opts } = workerData as { bytes: Uint8Array; fileName: string; opts: ParseOptions };
parseDocument(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), fileName, opts).then(
  (doc) => parentPort!.postMessage({ ok: true, doc }),
  (err: unknown) => {
    const d =
      err instanceof DajianError
        ? err
        : new DajianError("internal", String(err).split("\n")[0], "report this file as a bug");
    parentPort!.postMessage({ ok: false, code: d.code, message: d.message, hint: d.hint });
  },
);
