// Pre-flight sizing of a LoRA run from the base's header alone: the ggml arena to reserve, the memory that will
// actually be resident, and a rough time per step — so a run that cannot fit is refused before anything loads.

import { freemem, totalmem } from "node:os";
import { DajianError } from "../../core/errors.js";
import { GgmlType, GgufReader } from "../../gguf/index.js";
import type { LlamaConfig } from "../llama-gguf.js";
import { inspectBase } from "./base.js";
import { BASE_T_BLOCKS } from "./lora-graph.js";
import type { LoraOptions } from "./trainer.js";

export interface LoraEstimate {
  config: LlamaConfig;
  /** Frozen weight bytes as stored. */
  baseBytes: number;
  /** Trainable values (A and B of every targeted matrix). */
  loraParams: number;
  /** ggml arena for the persistent tensors (the graphs' activations get ggml-alloc buffers of their own). */
  arenaBytes: number;
  /** Expected peak resident bytes of the run. */
  residentBytes: number;
  /** Forward + backward FLOPs per optimizer micro-batch. */
  flopsPerMicroBatch: number;
}

const DIMS: Record<string, (c: LlamaConfig) => [number, number]> = {
  q: (c) => [c.dim, c.dim],
  k: (c) => [c.dim, (c.dim / c.heads) * c.kvHeads],
  v: (c) => [c.dim, (c.dim / c.heads) * c.kvHeads],
  o: (c) => [c.dim, c.dim],
  gate: (c) => [c.dim, c.ffn],
  up: (c) => [c.dim, c.ffn],
  down: (c) => [c.ffn, c.dim],
};

/**
 * `replicas`: graph copies the trainer runs side by side (each with its own gradient accumulators and inputs);
 * `blas`: the engine runs products on OpenBLAS (Engine.blas), which reads F32 base matrices transposed in place.
 */
export function estimateLoraMemory(
  basePath: string,
  lora: LoraOptions,
  T: number,
  B: number,
  replicas = 1,
  blas = false,
): LoraEstimate {
  let info;
  {
    using r = GgufReader.open(basePath);
    info = inspectBase(r);
  }
  const c = info.config;
  const baseBytes = info.bytes;
  let loraParams = 0;
  let loraPerTok = 0;
  for (const t of lora.targets) {
    const [i, o] = DIMS[t](c);
    loraParams += c.layers * lora.rank * (i + o);
    loraPerTok += c.layers * 3 * lora.rank;
  }
  const N = T * B;
  const dropBytes = lora.dropout > 0 ? N * (3 * c.dim + c.ffn) * 4 : 0;
  // Persistent: base, A/B + one gradient set + 2 AdamW moments, target indices and row mask, dropout masks, metadata.
  // (The other replicas' gradients live in their graph buffers: counted with the activations below.)
  const fixed = loraParams * 16 + 2 * N * 4 + dropBytes + (16 << 20);
  const matrices = info.tensors.filter((t) => t.dims.length === 2);
  const matParams = matrices.reduce((a, t) => a + t.dims[0] * t.dims[1], 0);
  const storedT = lora.baseTranspose === "f32" ? 4 : lora.baseTranspose === "f16" ? 2 : 0;
  const arenaBytes = Math.ceil(baseBytes + fixed + matParams * storedT);
  // The training graphs' ggml-alloc buffers: what the backward reads from each layer (residual streams x and x1, K
  // and V, A·x; the SwiGLU inputs too unless recomputed), at the widest point one layer's attention probabilities and
  // their gradient and a few FFN-wide transients, the logits (whose softmax and gradient overwrite them in place) and
  // the evaluation graph's, one block of a dequantized base matrix and its transposed copy (baseTChunks; none for an
  // F32 base on OpenBLAS, which reads it transposed in place), and the extra replicas' gradient outputs. Measured:
  // d_model 768, 4 layers, FFN 2048, rank 64, 2 × 256 tokens → 21.3 + 26.9 MiB with recomputeFfn (this gives 66 MiB
  // on OpenBLAS, 70 without), 33.3 + 36.4 MiB without (98 / 102 MiB); vocabulary 32k, d_model 256, 2 layers, rank 8,
  // 4 × 128 tokens → 131 MiB with evaluation's (this gives 136 MiB; large-vocab.test.ts checks the bound).
  const kvDim = (c.dim / c.heads) * c.kvHeads;
  const kept = 2 * c.dim + 2 * kvDim + (lora.recomputeFfn === false ? 2 * c.ffn : 0);
  const perTok = c.layers * kept + 2 * c.heads * T + 3 * c.ffn + loraPerTok + 2 * c.vocabSize;
  const widest = Math.max(...matrices.map((t) => t.dims[0] * t.dims[1]));
  const blocks = blas && matrices.every((t) => t.type === GgmlType.F32) ? 0 : 2;
  const block = Math.max(1 << 18, widest / BASE_T_BLOCKS);
  const actBytes = (N * perTok + blocks * block * replicas + loraParams * (replicas - 1)) * 4;
  const residentBytes = Math.ceil(arenaBytes + actBytes * 1.25);
  const attn = c.layers * c.heads * T * T * (c.dim / c.heads) * 4 * B;
  const flopsPerMicroBatch = 4 * matParams * N + 3 * attn + 6 * loraParams * N;
  return { config: c, baseBytes, loraParams, arenaBytes, residentBytes, flopsPerMicroBatch };
}

/** Refuse a run whose resident memory would not fit in what the machine has free. */
export function checkFits(
  est: LoraEstimate,
  limitBytes = Math.min(totalmem() * 0.85, freemem() + 256 * 2 ** 20),
): void {
  if (est.residentBytes > limitBytes) {
    const gib = (b: number): string => (b / 2 ** 30).toFixed(2);
    throw new DajianError(
      "too_large",
      `this run needs about ${gib(est.residentBytes)} GiB but only ${gib(limitBytes)} GiB are free`,
      "lower --max-len or --batch (use --accum to keep the effective batch), lower --rank, or use a quantized base",
    );
  }
}
