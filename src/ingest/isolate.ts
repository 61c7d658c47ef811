// parseDocumentIsolated: the same parse in a worker thread with a heap cap, terminated at the deadline.
// In-process parsing can only stop at await points; a worker bounds CPU time and memory even when a
// third-party parser spins synchronously or balloons on a hostile file.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { DajianError } from "../core/errors.js";
import type { ParseOptions } from "./parse.js";
import type { ParsedDocument } from "./types.js";

export interface IsolatedParseOptions extends ParseOptions {
  /** Old-generation heap cap for the worker (default 1024 MiB). */
  maxHeapMb?: number;
}

export function parseDocumentIsolated(
  bytes: Buffer,
  fileName: string,
  opts: IsolatedParseOptions = {},
): Promise<ParsedDocument> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const workerData = { bytes: new Uint8Array(bytes), fileName, opts: { ...opts, maxHeapMb: undefined } };
  const common = {
    workerData,
    resourceLimits: { maxOldGenerationSizeMb: opts.maxHeapMb ?? 1024 },
    stdout: true,
    stderr: true,
  };
  // From TypeScript sources (tests, tsx) the worker first registers tsx's loader, then imports worker.ts.
  const fromTs = import.meta.url.endsWith(".ts");
  let worker: Worker;
  if (fromTs) {
    // require.resolve gives the CommonJS build; the ESM build sits beside it as index.mjs.
    const tsxApi = pathToFileURL(
      createRequire(import.meta.url)
        .resolve("tsx/esm/api")
        .replace(/\.cjs$/, ".mjs"),
    ).href;
    const entry = new URL("./worker.ts", import.meta.url).href;
    const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
    worker = new Worker(boot, { ...common, eval: true });
  } else {
    worker = new Worker(new URL("./worker.js", import.meta.url), common);
  }
  return new Promise<ParsedDocument>((resolve, reject) => {
    let done = false;
    const finish = (fn: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      void worker.terminate();
      fn();
    };
    // The worker has its own (async-point) deadline; this one is the hard stop, with a little grace.
    const timer = setTimeout(
      () =>
        finish(() =>
          reject(
            new DajianError(
              "too_large",
              `${fileName}: parsing took longer than ${Math.round(timeoutMs / 1000)} s and was stopped`,
              "split the file into smaller documents or raise the parse timeout",
            ),
          ),
        ),
      timeoutMs + 1000,
    );
    worker.on(
      "message",
      (
        m: { ok: true; doc: ParsedDocument } | { ok: false; code: DajianError["code"]; message: string; hint: string },
      ) => finish(() => (m.ok ? resolve(m.doc) : reject(new DajianError(m.code, m.message, m.hint)))),
    );
    worker.on("error", (err: Error & { code?: string }) =>
      finish(() =>
        reject(
          err.code === "ERR_WORKER_OUT_OF_MEMORY"
            ? new DajianError(
                "too_large",
                `${fileName}: parsing needed more than ${opts.maxHeapMb ?? 1024} MiB of memory`,
                "split the file or raise the parser memory limit",
                { cause: err },
              )
            : new DajianError(
                "corrupt",
                `${fileName}: parser failed (${err.message.split("\n")[0]})`,
                "re-export or repair the file",
                { cause: err },
              ),
        ),
      ),
    );
    worker.on("exit", (code) =>
      finish(() =>
        reject(
          new DajianError(
            "internal",
            `${fileName}: parser worker exited (code ${code})`,
            "retry; report the file if it keeps failing",
          ),
        ),
      ),
    );
  });
}
