// How much memory a model needs before it is loaded: weights + KV cache + compute buffers + runtime overhead.
// One function for the catalog, for `serve` before loading, and for the trainers' pre-flight checks.
// The terms follow what llama.cpp allocates (llama-context.cpp / llama-kv-cache.cpp of the bundled build):
// - weights: exact tensor bytes (block sizes incl. scales) when a GGUF is given, else params × bits-per-weight;
// - KV cache: layers × n_ctx (padded to 256) × kv_heads × head_dim × 2 (K and V) × bytes per element;
// - output buffer: logits (vocab × f32) for the rows a batch requests — one per sequence when generating;
// - compute buffer: the worst-case graph for one micro-batch (largest live activations: logits, FFN, attention);
// - runtime: the process itself (Node, node-llama-cpp and the llama.cpp libraries).
// Calibrated against peak RSS of real runs: see memory.test.ts and bench/memory.ts.
import { GGML_BLOCK, GgmlType, type GgufFile, metaNumber, metaString, readGgufHeader } from "../gguf/index.js";
import { DajianError } from "../core/errors.js";

export interface ModelShape {
  arch: string;
  layers: number;
  heads: number;
  kvHeads: number;
  /** Per-head dimension of K (and V). */
  headDim: number;
  /** Per-head dimension of V when it differs from K. */
  headDimV?: number;
  embedding: number;
  ffn: number;
  vocab: number;
  contextLength: number;
  /** Bidirectional encoders keep no KV cache. */
  encoder?: boolean;
}

export interface MemoryOptions {
  contextSize: number;
  /** Logical batch (node-llama-cpp default: min(contextSize, 512)). */
  batchSize?: number;
  /** Parallel sequences sharing the context. */
  sequences?: number;
  /** KV cache element type (llama.cpp default F16). */
  kvType?: "F32" | "F16" | "Q8_0" | "Q4_0";
  /** node-llama-cpp's default "auto" turns flash attention on where the backend supports it (CPU does). */
  flashAttention?: boolean;
  /** Embedding/rerank context: no logits in the compute graph, pooled embeddings instead. */
  embeddingOnly?: boolean;
  /** Logits for every token of a batch (perplexity, scoring) instead of the last one per sequence (chat, serve). */
  allLogits?: boolean;
  /** Layers offloaded to the GPU (0 = CPU only; >= layers = all). */
  gpuLayers?: number;
  /** Count the process baseline (Node + libraries); off when adding a model to a running server. */
  includeRuntime?: boolean;
}

export interface MemoryEstimate {
  weights: number;
  kvCache: number;
  output: number;
  compute: number;
  runtime: number;
  /** Host RAM needed (bytes). */
  ram: number;
  /** GPU memory needed (bytes; 0 on CPU). */
  vram: number;
  total: number;
  contextSize: number;
}

/** Process baseline measured on Linux x64: Node 20 + node-llama-cpp + llama.cpp libs after getLlama() ≈ 90 MiB. */
export const RUNTIME_OVERHEAD = 96 * 1024 * 1024;

/** Average bits per weight of llama.cpp's quantization mixes over a whole model (from llama-quantize's table). */
export const QUANT_BPW: Record<string, number> = {
  F32: 32,
  F16: 16,
  BF16: 16,
  Q8_0: 8.5,
  Q6_K: 6.56,
  Q5_K_M: 5.69,
  Q5_K_S: 5.54,
  Q5_0: 5.5,
  Q4_K_M: 4.89,
  Q4_K_S: 4.58,
  Q4_0: 4.55,
  Q3_K_M: 3.91,
  Q2_K: 3.0,
};

const KV_BYTES: Record<NonNullable<MemoryOptions["kvType"]>, number> = { F32: 4, F16: 2, Q8_0: 34 / 32, Q4_0: 18 / 32 };

const pad = (n: number, to: number) => Math.ceil(n / to) * to;

export function weightBytesFromParams(params: number, quant: string): number {
  const bpw = QUANT_BPW[quant.toUpperCase()];
  if (bpw === undefined)
    throw new DajianError(
      "invalid_input",
      `unknown quantization ${quant}`,
      `use one of ${Object.keys(QUANT_BPW).join(", ")}`,
    );
  return Math.ceil((params * bpw) / 8);
}

/** Exact weight bytes from a GGUF's tensor infos (block sizes include their scales). */
export function weightBytesFromGguf(file: Pick<GgufFile, "tensors">): number {
  let sum = 0;
  for (const t of file.tensors) {
    const [blk, size] = GGML_BLOCK[t.type as GgmlType];
    const n = t.dims.reduce((a, b) => a * b, 1);
    sum += (n / blk) * size;
  }
  return sum;
}

/** The model shape from GGUF metadata (`<arch>.block_count`, `.attention.head_count` …). */
export function shapeFromGguf(file: Pick<GgufFile, "metadata" | "tensors">): ModelShape {
  const arch = metaString(file, "general.architecture");
  if (!arch)
    throw new DajianError("corrupt", "GGUF has no general.architecture", "the file is not a model; re-export it");
  const num = (k: string) => metaNumber(file, `${arch}.${k}`);
  const layers = num("block_count");
  const embedding = num("embedding_length");
  const heads = num("attention.head_count");
  if (!layers || !embedding || !heads)
    throw new DajianError(
      "corrupt",
      `GGUF lacks ${arch}.block_count/embedding_length/attention.head_count`,
      "re-export the model",
    );
  const kvHeads = num("attention.head_count_kv") ?? heads;
  const headDim = num("attention.key_length") ?? embedding / heads;
  const headDimV = num("attention.value_length");
  const tokens = file.metadata.get("tokenizer.ggml.tokens");
  const embd = file.tensors.find((t) => t.name === "token_embd.weight");
  const vocab = num("vocab_size") ?? (tokens && tokens.type === 9 ? tokens.value.length : (embd?.dims[1] ?? 0));
  const encoder =
    ["bert", "nomic-bert", "jina-bert-v2", "xlm-roberta", "modern-bert"].includes(arch) || metaBoolCausal(file, arch);
  return {
    arch,
    layers,
    heads,
    kvHeads,
    headDim,
    headDimV: headDimV && headDimV !== headDim ? headDimV : undefined,
    embedding,
    ffn: num("feed_forward_length") ?? 4 * embedding,
    vocab,
    contextLength: num("context_length") ?? 2048,
    encoder,
  };
}

function metaBoolCausal(file: Pick<GgufFile, "metadata">, arch: string): boolean {
  const v = file.metadata.get(`${arch}.attention.causal`);
  return v !== undefined && v.value === false;
}

/**
 * Estimate the memory to load `shape` with `weights` bytes of tensors and run it at `opts.contextSize`.
 * With gpuLayers, offloaded layers' weights, KV and compute move to `vram`; RAM keeps the rest.
 */
export function estimateMemory(shape: ModelShape, weights: number, opts: MemoryOptions): MemoryEstimate {
  if (!(opts.contextSize > 0))
    throw new DajianError("invalid_input", "context size must be positive", "pass e.g. --ctx 4096");
  const seqs = opts.sequences ?? 1;
  const nCtx = pad(opts.contextSize * seqs, 256); // llama.cpp pads n_ctx to 256
  const batch = Math.min(opts.batchSize ?? Math.min(opts.contextSize * seqs, 512), nCtx);
  const ubatch = Math.min(batch, 512);
  const fa = opts.flashAttention ?? true;
  const kvElt = KV_BYTES[opts.kvType ?? "F16"];
  const dimV = shape.headDimV ?? shape.headDim;

  const kvCache = shape.encoder ? 0 : shape.layers * nCtx * shape.kvHeads * (shape.headDim + dimV) * kvElt;

  // Output buffer (llama_context::output_reserve): logits for n_batch outputs, or pooled embeddings.
  const output = opts.embeddingOnly
    ? 4 * shape.embedding * Math.max(batch, seqs)
    : 4 * shape.vocab * Math.max(batch, seqs);

  // Compute buffer: ggml-alloc reuses memory, so the peak is the largest set of simultaneously live f32
  // activations of one micro-batch — the logits (plus the residual stream feeding them), the FFN (gate + up +
  // product) or, without flash attention, the n_kv × n_tokens × n_head score matrix.
  const f32 = 4 * ubatch;
  const stream = 3 * shape.embedding;
  const logits = opts.embeddingOnly ? 0 : shape.vocab;
  const ffn = 3 * shape.ffn;
  const attn = fa || shape.encoder ? 2 * shape.heads * shape.headDim : shape.heads * (shape.encoder ? ubatch : nCtx);
  const compute = f32 * (stream + Math.max(logits, ffn, attn));

  const runtime = opts.includeRuntime === false ? 0 : RUNTIME_OVERHEAD;
  const gpuLayers = Math.max(0, Math.min(opts.gpuLayers ?? 0, shape.layers));
  const frac = gpuLayers / shape.layers;
  const vram = frac > 0 ? (weights + kvCache + compute) * frac : 0;
  const ram = weights + kvCache + compute + output + runtime - vram;
  return { weights, kvCache, output, compute, runtime, ram, vram, total: ram + vram, contextSize: nCtx };
}

/** Estimate straight from a GGUF file (header only is read). */
export function estimateGgufFile(
  path: string,
  opts: Partial<MemoryOptions> = {},
): MemoryEstimate & { shape: ModelShape } {
  const file = readGgufHeader(path);
  const shape = shapeFromGguf(file);
  const est = estimateMemory(shape, weightBytesFromGguf(file), {
    ...opts,
    contextSize: opts.contextSize ?? Math.min(shape.contextLength, 4096),
  });
  return { ...est, shape };
}

export function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(n >= 10 * 1024 ** 3 ? 0 : 1)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(0)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(0)} KiB`;
  return `${n} B`;
}
