// OpenBLAS, when the machine has it, for the large f32 matrix products of training graphs. ggml's own f32 GEMM
// (llamafile tinyBLAS in node-llama-cpp's CPU builds) runs at ~45 GFLOP/s on two AVX2 cores here; OpenBLAS's sgemm
// at ~130 on the same products (`npm run bench:engine`). node-llama-cpp ships no BLAS-backed ggml, so the engine runs
// those graph nodes itself (Graph: ggml computes the nodes between them) — see docs/arch/engine.md.
// Optional: without the library everything runs on ggml alone, and describe() says so and how to get the speed-up.

import { existsSync } from "node:fs";
import koffi from "koffi";
import { DajianError } from "../core/errors.js";
import type { NativeFn } from "./ffi.js";

export interface Blas {
  /** e.g. "OpenBLAS 0.3.21 … Zen" */
  name: string;
  path: string;
  /** cblas_sgemm with pointers passed as addresses (uintptr_t). */
  sgemm: NativeFn;
  /** OpenBLAS's own thread count (process-wide, ≥ 1); set before each product when it differs. */
  setThreads(n: number): void;
}

/** CBLAS enum values (cblas.h). */
export const ROW_MAJOR = 101;
export const NO_TRANS = 111;
export const TRANS = 112;

let cached: { blas: Blas | null; note: string } | null = null;

/** Where OpenBLAS usually is (Debian/Ubuntu libopenblas0, Fedora openblas, Homebrew). */
function candidates(): string[] {
  if (process.platform === "darwin")
    return [
      "libopenblas.dylib",
      "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
      "/usr/local/opt/openblas/lib/libopenblas.dylib",
    ];
  if (process.platform === "win32") return ["libopenblas.dll", "openblas.dll"];
  return ["libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0", "/usr/lib64/libopenblas.so.0"];
}

function open(path: string): Blas {
  const lib = koffi.load(path);
  const sgemm = lib.func(
    "void cblas_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, uintptr_t A, int lda, uintptr_t B, int ldb, float beta, uintptr_t C, int ldc)",
  ) as NativeFn;
  const set = lib.func("void openblas_set_num_threads(int n)") as NativeFn;
  const config = lib.func("const char * openblas_get_config()") as NativeFn;
  let current = -1;
  return {
    name: String(config()).replace(/\s+/g, " ").trim(),
    path,
    sgemm,
    setThreads(threads: number) {
      const n = Math.max(1, Math.floor(threads));
      if (n !== current) set((current = n));
    },
  };
}

/**
 * OpenBLAS for this process, or null. DAJIAN_BLAS=off turns it off; DAJIAN_BLAS=/path/to/libopenblas.so picks a
 * file (and fails loudly if it does not load — a path someone typed is not silently ignored).
 */
export function loadBlas(): Blas | null {
  cached ??= findBlas(process.env.DAJIAN_BLAS);
  return cached.blas;
}

/** The lookup behind loadBlas(), uncached: `spec` is DAJIAN_BLAS's value. */
export function findBlas(spec: string | undefined): { blas: Blas | null; note: string } {
  // OpenBLAS's worker threads spin for 2^28 cycles (~0.1 s) after each product by default: they would take the cores
  // from ggml's threads between products. 2^4 cycles: they sleep at once. Read by OpenBLAS when it loads.
  process.env.OPENBLAS_THREAD_TIMEOUT ??= "4";
  if (spec === "off" || spec === "0") return { blas: null, note: "off (DAJIAN_BLAS=off)" };
  if (spec) {
    try {
      const blas = open(spec);
      return { blas, note: blas.name };
    } catch (err) {
      throw new DajianError(
        "unsupported",
        `DAJIAN_BLAS=${spec} does not load as OpenBLAS (${(err as Error).message.split("\n")[0]})`,
        "point DAJIAN_BLAS at a libopenblas shared library, or unset it",
        { cause: err },
      );
    }
  }
  for (const path of candidates()) {
    if (path.startsWith("/") && !existsSync(path)) continue;
    try {
      const blas = open(path);
      return { blas, note: blas.name };
    } catch {
      // not on this machine under that name: try the next one
    }
  }
  return {
    blas: null,
    note: "not found, so f32 products run on ggml's own GEMM (apt-get install libopenblas0-pthread, or your OS's OpenBLAS package, for ~2× faster training)",
  };
}

/** One line for describe(): which library the engine's large f32 products use. */
export function blasNote(): string {
  loadBlas();
  return cached?.note ?? "";
}
