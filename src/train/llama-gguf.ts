// Llama-architecture GGUF export: hyper-parameters, tensor names and shapes exactly as llama.cpp's loader expects
// (llama-arch.cpp / llama-model.cpp), plus the BPE vocabulary. Used by the tiny test model and the trainer's export.

import { DajianError } from "../core/errors.js";
import { GgmlType, GgufWriter, encodeTensorData as encode } from "../gguf/index.js";
import { writeVocabMetadata, type BpeVocab } from "../tokenizer/index.js";

export interface LlamaConfig {
  vocabSize: number;
  layers: number;
  dim: number;
  heads: number;
  kvHeads: number;
  ffn: number;
  contextLength: number;
  ropeTheta: number;
  normEps: number;
  /** Share token_embd with the output projection (no output.weight tensor). */
  tiedEmbeddings: boolean;
}

export type LlamaFileType = "F32" | "F16" | "Q8_0" | "Q4_0";

const FILE_TYPE: Record<LlamaFileType, { ggml: GgmlType; llamaFtype: number }> = {
  F32: { ggml: GgmlType.F32, llamaFtype: 0 },
  F16: { ggml: GgmlType.F16, llamaFtype: 1 },
  Q4_0: { ggml: GgmlType.Q4_0, llamaFtype: 2 },
  Q8_0: { ggml: GgmlType.Q8_0, llamaFtype: 7 },
};

export function headDim(c: LlamaConfig): number {
  return c.dim / c.heads;
}

/** Every tensor of the model with its ggml shape (dims[0] = input features / contiguous). */
export function llamaTensorShapes(c: LlamaConfig): Array<{ name: string; dims: number[]; isNorm: boolean }> {
  const hd = headDim(c);
  const out: Array<{ name: string; dims: number[]; isNorm: boolean }> = [
    { name: "token_embd.weight", dims: [c.dim, c.vocabSize], isNorm: false },
  ];
  for (let l = 0; l < c.layers; l++) {
    const p = `blk.${l}.`;
    out.push(
      { name: `${p}attn_norm.weight`, dims: [c.dim], isNorm: true },
      { name: `${p}attn_q.weight`, dims: [c.dim, c.heads * hd], isNorm: false },
      { name: `${p}attn_k.weight`, dims: [c.dim, c.kvHeads * hd], isNorm: false },
      { name: `${p}attn_v.weight`, dims: [c.dim, c.kvHeads * hd], isNorm: false },
      { name: `${p}attn_output.weight`, dims: [c.heads * hd, c.dim], isNorm: false },
      { name: `${p}ffn_norm.weight`, dims: [c.dim], isNorm: true },
      { name: `${p}ffn_gate.weight`, dims: [c.dim, c.ffn], isNorm: false },
      { name: `${p}ffn_up.weight`, dims: [c.dim, c.ffn], isNorm: false },
      { name: `${p}ffn_down.weight`, dims: [c.ffn, c.dim], isNorm: false },
    );
  }
  out.push({ name: "output_norm.weight", dims: [c.dim], isNorm: true });
  if (!c.tiedEmbeddings) out.push({ name: "output.weight", dims: [c.dim, c.vocabSize], isNorm: false });
  return out;
}

export function validateLlamaConfig(c: LlamaConfig): void {
  const bad = (msg: string, hint: string): never => {
    throw new DajianError("invalid_input", `model shape: ${msg}`, hint);
  };
  for (const [k, v] of Object.entries(c)) {
    if (typeof v === "number" && !(v > 0)) bad(`${k} must be positive`, `set --${k} to a positive number`);
  }
  if (c.dim % c.heads !== 0) bad(`dim ${c.dim} is not divisible by heads ${c.heads}`, "pick heads dividing dim");
  if (c.heads % c.kvHeads !== 0)
    bad(`heads ${c.heads} not divisible by kv-heads ${c.kvHeads}`, "pick kv-heads dividing heads");
  if (headDim(c) % 2 !== 0) bad(`head size ${headDim(c)} is odd`, "RoPE needs an even head size");
}

export interface WriteLlamaOptions {
  name?: string;
  type?: LlamaFileType;
  /** Mean pooling for embedding use (llama.pooling_type = 1). */
  pooling?: "none" | "mean" | "last";
  /** Extra metadata strings (general.description …). */
  extra?: Record<string, string>;
}

/**
 * Write a llama model. `weight(name)` returns f32 values in ggml order for each tensor from llamaTensorShapes.
 * Norm weights always stay F32; a matrix whose row length does not fit the quantized block falls back to F16.
 */
export function writeLlamaGguf(
  path: string,
  c: LlamaConfig,
  vocab: BpeVocab,
  weight: (name: string) => Float32Array,
  opts: WriteLlamaOptions = {},
): number {
  validateLlamaConfig(c);
  if (vocab.tokens.length !== c.vocabSize) {
    throw new DajianError(
      "invalid_input",
      `vocabulary has ${vocab.tokens.length} tokens but the model expects ${c.vocabSize}`,
      "set the model's vocab size from the tokenizer",
    );
  }
  const ft = FILE_TYPE[opts.type ?? "F32"];
  const w = new GgufWriter();
  w.str("general.architecture", "llama");
  w.str("general.type", "model");
  w.str("general.name", opts.name ?? "dajian-llama");
  w.u32("general.file_type", ft.llamaFtype);
  w.u32("general.quantization_version", 2);
  for (const [k, v] of Object.entries(opts.extra ?? {})) w.str(k, v);
  w.u32("llama.vocab_size", c.vocabSize);
  w.u32("llama.context_length", c.contextLength);
  w.u32("llama.embedding_length", c.dim);
  w.u32("llama.block_count", c.layers);
  w.u32("llama.feed_forward_length", c.ffn);
  w.u32("llama.attention.head_count", c.heads);
  w.u32("llama.attention.head_count_kv", c.kvHeads);
  w.u32("llama.rope.dimension_count", headDim(c));
  w.f32("llama.rope.freq_base", c.ropeTheta);
  w.f32("llama.attention.layer_norm_rms_epsilon", c.normEps);
  if (opts.pooling && opts.pooling !== "none") w.u32("llama.pooling_type", opts.pooling === "mean" ? 1 : 3);
  writeVocabMetadata(w, vocab);
  for (const t of llamaTensorShapes(c)) {
    let type = t.isNorm ? GgmlType.F32 : ft.ggml;
    if (type !== GgmlType.F32 && type !== GgmlType.F16 && t.dims[0] % 32 !== 0) type = GgmlType.F16;
    w.addTensor(
      t.name,
      t.dims,
      () => {
        const data = weight(t.name);
        const n = t.dims.reduce((a, b) => a * b, 1);
        if (data.length !== n) {
          throw new DajianError(
            "internal",
            `weight ${t.name} has ${data.length} values, expected ${n}`,
            "report this bug",
          );
        }
        return type === GgmlType.F32
          ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
          : encode(data, type);
      },
      type,
    );
  }
  return w.write(path);
}
