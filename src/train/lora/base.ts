// The frozen base model for LoRA: a llama GGUF loaded into a ggml context with every weight kept in its stored
// type (F32, F16, Q8_0, Q4_0, K-quants …). LoRA needs gradients w.r.t. activations only, never w.r.t. the base:
// lora-graph.ts gets dx = Wᵀ dy from a transposed (for block types first get_rows-dequantized) copy of W.

import { closeSync, openSync, readSync } from "node:fs";
import { DajianError } from "../../core/errors.js";
import { nativeView } from "../../engine/ffi.js";
import { Context, Tensor } from "../../engine/index.js";
import { GgmlType, GgufReader, ggmlTypeName, metaNumber, metaString, type GgufTensorInfo } from "../../gguf/index.js";
import { readVocab, type BpeVocab } from "../../tokenizer/index.js";
import { llamaTensorShapes, type LlamaConfig } from "../llama-gguf.js";
import { readLlamaConfig, type LlamaWeights } from "../llama-model.js";

/**
 * Weight types the CPU trainer runs on: F32, F16 (transposed directly) and the block-quantized types ggml's get_rows
 * decodes and mul_mat multiplies (tested: F32, F16, Q8_0, Q4_0). BF16 is refused: it is not a type dajian writes or
 * tests. dajian's trainer runs on the CPU.
 */
export const TRAINABLE_BASE_TYPES: readonly GgmlType[] = [
  GgmlType.F32,
  GgmlType.F16,
  GgmlType.Q4_0,
  GgmlType.Q4_1,
  GgmlType.Q5_0,
  GgmlType.Q5_1,
  GgmlType.Q8_0,
  GgmlType.Q2_K,
  GgmlType.Q3_K,
  GgmlType.Q4_K,
  GgmlType.Q5_K,
  GgmlType.Q6_K,
];

export const TRAINABLE_TYPE_NAMES = TRAINABLE_BASE_TYPES.map(ggmlTypeName).join(", ");

/**
 * GGUF architectures the LoRA forward/backward implements: llama (also what Mistral and TinyLlama checkpoints convert
 * to — llama.cpp runs them as llama, without Mistral's sliding window) and qwen2 (NeoX RoPE, frozen q/k/v biases).
 */
export const LORA_ARCHITECTURES: Readonly<Record<string, { ropeMode: number; qkvBias: boolean }>> = {
  llama: { ropeMode: 0, qkvBias: false },
  qwen2: { ropeMode: 2, qkvBias: true },
};
export const LORA_ARCHITECTURE_NAMES = "llama (Llama, Mistral, TinyLlama …) and qwen2 (Qwen2, Qwen2.5)";

export interface FrozenBase {
  path: string;
  config: LlamaConfig;
  vocab: BpeVocab;
  architecture: string;
  /** ggml RoPE mode: 0 = llama's adjacent pairs, 2 = NeoX halves (qwen2). */
  ropeMode: number;
  /** Linear RoPE scaling (1 / `rope.scaling.factor`; 1 = none). */
  ropeFreqScale: number;
  /** Weights (q/k/v biases "blk.N.attn_q.bias", llama3's "rope_freqs.weight" too) by GGUF name. */
  weights: LlamaWeights;
  /** Stored type of each matrix, by GGUF name. */
  types: Map<string, GgmlType>;
  /** Bytes of the frozen weights inside the context. */
  bytes: number;
}

/** What a LoRA run needs to know about a base before allocating anything. */
export interface BaseInfo {
  config: LlamaConfig;
  architecture: string;
  ropeMode: number;
  ropeFreqScale: number;
  tensors: GgufTensorInfo[];
  bytes: number;
}

const unsupported = (what: string, hint: string): never => {
  throw new DajianError("unsupported", what, hint);
};

/** The tensors a base of this architecture has: llama's, q/k/v biases for qwen2, llama3's RoPE frequency factors. */
function expectedShapes(c: LlamaConfig, qkvBias: boolean, ropeFreqs: boolean): Array<{ name: string; dims: number[] }> {
  const out: Array<{ name: string; dims: number[] }> = llamaTensorShapes(c);
  const hd = c.dim / c.heads;
  if (ropeFreqs) out.push({ name: "rope_freqs.weight", dims: [hd / 2] });
  for (let l = 0; qkvBias && l < c.layers; l++) {
    out.push(
      { name: `blk.${l}.attn_q.bias`, dims: [c.heads * hd] },
      { name: `blk.${l}.attn_k.bias`, dims: [c.kvHeads * hd] },
      { name: `blk.${l}.attn_v.bias`, dims: [c.kvHeads * hd] },
    );
  }
  return out;
}

/** Read and check a base GGUF's header: a supported architecture, exactly its tensors, trainable weight types. */
export function inspectBase(r: GgufReader): BaseInfo {
  const architecture = metaString(r, "general.architecture") ?? "";
  if (metaString(r, "general.type") === "adapter") {
    throw new DajianError("invalid_input", "the base is a LoRA adapter, not a model", "pass the base model GGUF");
  }
  const arch = LORA_ARCHITECTURES[architecture];
  if (!arch) {
    unsupported(
      `architecture "${architecture}" cannot be fine-tuned by dajian`,
      `use a GGUF of a supported architecture: ${LORA_ARCHITECTURE_NAMES}`,
    );
  }
  const config = readLlamaConfig(r, Object.keys(LORA_ARCHITECTURES));
  const rot = metaNumber(r, `${architecture}.rope.dimension_count`);
  // RoPE scaling: llama3's (a rope_freqs tensor of per-frequency divisors) and linear are applied as llama.cpp does.
  const scaling = metaString(r, `${architecture}.rope.scaling.type`) ?? "none";
  const factor = metaNumber(r, `${architecture}.rope.scaling.factor`) ?? 1;
  if ((scaling !== "none" && scaling !== "linear") || !(factor > 0)) {
    unsupported(
      `RoPE scaling "${scaling}" (factor ${factor}) is not in dajian's training forward pass`,
      "fine-tune a base without RoPE scaling or with linear or llama3 scaling",
    );
  }
  const ropeFreqs = r.tensors.some((t) => t.name === "rope_freqs.weight");
  if (rot !== undefined && rot !== config.dim / config.heads) {
    unsupported(`partial RoPE (${rot} of ${config.dim / config.heads} dims)`, "fine-tune a base with full-head RoPE");
  }
  const shapes = expectedShapes(config, arch.qkvBias, ropeFreqs);
  const known = new Set(shapes.map((s) => s.name));
  const extra = r.tensors.find((t) => !known.has(t.name));
  if (extra) {
    unsupported(
      `the base has a tensor dajian's ${architecture} forward pass does not apply (${extra.name})`,
      `fine-tune a plain ${LORA_ARCHITECTURE_NAMES} model`,
    );
  }
  const tensors = shapes.map((s) => {
    const t = r.tensor(s.name);
    if (t.dims.join() !== s.dims.join()) {
      throw new DajianError("corrupt", `${s.name} has shape [${t.dims}] not [${s.dims}]`, "re-export the base model");
    }
    if (!TRAINABLE_BASE_TYPES.includes(t.type) || (t.dims.length === 1 && t.type !== GgmlType.F32)) {
      throw new DajianError(
        "unsupported",
        `${s.name} is ${ggmlTypeName(t.type)}, and ggml's CPU backend has no backward pass through that type`,
        `requantize the base to one of ${TRAINABLE_TYPE_NAMES} (dajian quantize), or convert it to F16`,
      );
    }
    return t;
  });
  return {
    config,
    architecture,
    ropeMode: arch.ropeMode,
    ropeFreqScale: scaling === "linear" ? 1 / factor : 1,
    tensors,
    bytes: tensors.reduce((a, t) => a + t.size, 0),
  };
}

/** A ggml tensor of any stored type, filled with the GGUF's raw bytes (the typed engine only creates F32/F16/I32). */
export function rawTensor(ctx: Context, info: GgufTensorInfo, bytes: Uint8Array): Tensor {
  ctx.reserve(`frozen ${info.name}`, bytes.length);
  const [n0, n1 = 1, n2 = 1, n3 = 1] = info.dims;
  const t = new Tensor(ctx, ctx.lib.base.ggml_new_tensor_4d(ctx.handle, info.type, n0, n1, n2, n3));
  if (t.nbytes !== bytes.length) {
    throw new DajianError("corrupt", `${info.name}: ${bytes.length} bytes for ${t.nbytes}`, "re-export the model");
  }
  new Uint8Array(nativeView(ctx.lib.base.ggml_get_data(t.ptr), bytes.length)).set(bytes);
  return t.name(info.name);
}

/**
 * Read a tensor's stored bytes from the file straight into a new ggml tensor (no JS buffer in between, so loading
 * the base adds nothing to the garbage-collected heap — it would otherwise count once more in peak RSS).
 */
function readRawTensor(ctx: Context, info: GgufTensorInfo, fd: number, at: number): Tensor {
  ctx.reserve(`frozen ${info.name}`, info.size);
  const [n0, n1 = 1, n2 = 1, n3 = 1] = info.dims;
  const t = new Tensor(ctx, ctx.lib.base.ggml_new_tensor_4d(ctx.handle, info.type, n0, n1, n2, n3));
  if (t.nbytes !== info.size) {
    throw new DajianError("corrupt", `${info.name}: ${info.size} bytes for ${t.nbytes}`, "re-export the model");
  }
  const dst = new Uint8Array(nativeView(ctx.lib.base.ggml_get_data(t.ptr), info.size));
  for (let got = 0; got < info.size;) {
    const n = readSync(fd, dst, got, info.size - got, at + got);
    if (n === 0) throw new DajianError("corrupt", `${info.name} is cut short`, "re-export the model");
    got += n;
  }
  return t.name(info.name);
}

/** Load the base into `ctx`, every tensor as its stored bytes. */
export function loadFrozenBase(ctx: Context, path: string): FrozenBase {
  const r = GgufReader.open(path);
  const fd = openSync(path, "r");
  try {
    const info = inspectBase(r);
    const tensors = new Map<string, Tensor>();
    const types = new Map<string, GgmlType>();
    let bytes = 0;
    for (const t of info.tensors) {
      types.set(t.name, t.type);
      const x = readRawTensor(ctx, t, fd, r.dataOffset + t.offset);
      bytes += x.nbytes;
      tensors.set(t.name, x);
    }
    return {
      path,
      config: info.config,
      vocab: readVocab(r),
      architecture: info.architecture,
      ropeMode: info.ropeMode,
      ropeFreqScale: info.ropeFreqScale,
      weights: { config: info.config, tensors },
      types,
      bytes,
    };
  } finally {
    closeSync(fd);
    r.close();
  }
}

/** Decode any ggml type to f32 through ggml itself (get_rows dequantizes every type it can multiply with). */
export function dequantizeWithGgml(ctx: Context, t: Tensor): Float32Array {
  if (t.type === GgmlType.F32) return t.get();
  const rows = t.numel / t.shape[0];
  const ids = ctx.tensor([rows], GgmlType.I32).set(Array.from({ length: rows }, (_, i) => i));
  const flat = t.shape.length > 2 ? ctx.reshape(t, [t.shape[0], rows]) : t;
  const out = ctx.getRows(flat, ids);
  ctx.graph({ size: 16 }).expand(out).computeSync(1);
  return out.get();
}
