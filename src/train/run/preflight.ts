// Pre-flight for a training run: memory and time before any work starts, and a clear refusal when it cannot fit.
// Memory terms follow the trainer's allocations: its persistent arena (weights, gradients per graph replica, two
// AdamW moments, inputs — the trainer's own formula) plus the ggml-alloc buffers of the training graphs'
// activations, fitted against the trainer's `computeBytes` over shapes varying every dimension (run.test.ts keeps it
// within 15 %).
// Time is a FLOP model (6 × non-embedding parameters + attention, per token) at a nominal CPU rate; the run replaces
// it by the measured step time after its first steps.

import { existsSync, readFileSync } from "node:fs";
import { freemem } from "node:os";
import { DajianError } from "../../core/errors.js";
import { loadBlas } from "../../engine/blas.js";
import { RUNTIME_OVERHEAD, formatBytes } from "../../models/memory.js";
import type { LlamaConfig } from "../llama-gguf.js";
import { trainerArenaBytes, trainerReplicas } from "../trainer.js";
import { countParams } from "./presets.js";

export interface TrainingEstimate {
  params: number;
  /** Weights, gradients, AdamW moments, inputs. */
  persistentBytes: number;
  /** The training graph's activation buffer. */
  activationBytes: number;
  runtimeBytes: number;
  totalBytes: number;
  flopsPerStep: number;
  tokensPerStep: number;
  /** FLOP-model guess (replaced by measurement once steps run). */
  secondsPerStep: number;
}

/** Nominal sustained GFLOP/s per CPU thread of the trainer (AVX2 desktop/server core). */
export const NOMINAL_GFLOPS_PER_THREAD = 10;

export function estimateTraining(
  c: LlamaConfig,
  run: { seq: number; batch: number; accum: number; threads: number; blas?: boolean },
): TrainingEstimate {
  const { seq: T, batch: B } = run;
  const N = T * B;
  const params = countParams(c);
  const persistentBytes = trainerArenaBytes(c, T, B, trainerReplicas(run.threads, B));
  const L = c.layers;
  // Floats per token: logits and their softmax/gradient(/transpose), per-layer activations kept for the backward.
  // With OpenBLAS (the default engine's, unless `blas` says otherwise) the backward reads transposed operands in
  // place, so the transposed copies of activations, gradients and the logits' gradient are not in the buffer.
  const blas = run.blas ?? loadBlas() !== null;
  const perToken = blas
    ? 1.52 * c.vocabSize + 12.5 * L * c.dim + 3.06 * L * c.ffn + 0.74 * L * c.heads * T
    : 2.75 * c.vocabSize + 14.8 * L * c.dim + 2.7 * L * c.ffn + 0.62 * L * c.heads * T;
  const activationBytes = Math.ceil(4 * N * perToken);
  // Node + ggml/llama libraries, tokenizer training, data buffers: measured RSS minus the arena and activations of the
  // tiny and small presets (`dajian train`: tiny 248 MiB, small 601–634 MiB against estimates of 245 and 656 MiB).
  const runtimeBytes = RUNTIME_OVERHEAD + (80 << 20);
  const tokensPerStep = N * run.accum;
  const flopsPerToken = 6 * (params - c.vocabSize * c.dim) + 12 * L * T * c.dim;
  const flopsPerStep = flopsPerToken * tokensPerStep;
  return {
    params,
    persistentBytes,
    activationBytes,
    runtimeBytes,
    totalBytes: persistentBytes + activationBytes + runtimeBytes,
    flopsPerStep,
    tokensPerStep,
    secondsPerStep: flopsPerStep / (NOMINAL_GFLOPS_PER_THREAD * 1e9 * Math.max(1, run.threads)),
  };
}

/** Memory this process may still use: MemAvailable, capped by a cgroup v2 limit when one is set. */
export function availableMemory(): number {
  let avail = freemem();
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync("/proc/meminfo", "utf8"));
    if (m) avail = Number(m[1]) * 1024;
  } catch {
    // not Linux: os.freemem() stands
  }
  const max = "/sys/fs/cgroup/memory.max";
  if (existsSync(max)) {
    const lim = readFileSync(max, "utf8").trim();
    const cur = Number(readFileSync("/sys/fs/cgroup/memory.current", "utf8").trim());
    if (lim !== "max" && Number.isFinite(cur)) avail = Math.min(avail, Number(lim) - cur);
  }
  return avail;
}

/** Parse "8GiB", "512MiB", "2G", "1e9" into bytes. */
export function parseBytes(s: string): number {
  const m = /^\s*([\d.]+(?:e\d+)?)\s*([kmgt]?)(i?b)?\s*$/i.exec(s);
  if (!m || !(Number(m[1]) > 0))
    throw new DajianError("invalid_input", `cannot read "${s}" as a size`, "write it like 8GiB, 512MiB or 2G");
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase() as "" | "k"];
  return Math.floor(Number(m[1]) * mult);
}

/** Refuse a run whose estimate exceeds `limit`, naming what to shrink. */
export function assertFits(est: TrainingEstimate, limit: number, what: string): void {
  if (est.totalBytes <= limit) return;
  throw new DajianError(
    "too_large",
    `${what} needs about ${formatBytes(est.totalBytes)} for training (${formatBytes(est.persistentBytes)} weights + ` +
      `optimizer, ${formatBytes(est.activationBytes)} activations) but only ${formatBytes(limit)} is available`,
    "use a smaller --preset, or lower --batch / --seq (raise --accum to keep the tokens per step)",
  );
}

export function describeEstimate(est: TrainingEstimate): string {
  return (
    `${(est.params / 1e6).toFixed(2)}M parameters · memory ≈ ${formatBytes(est.totalBytes)} ` +
    `(weights+optimizer ${formatBytes(est.persistentBytes)}, activations ${formatBytes(est.activationBytes)}, ` +
    `runtime ${formatBytes(est.runtimeBytes)}) · ${(est.flopsPerStep / 1e9).toFixed(1)} GFLOP/step ` +
    `(≈ ${est.secondsPerStep.toFixed(2)} s/step at a nominal ${NOMINAL_GFLOPS_PER_THREAD} GFLOP/s per thread)`
  );
}
