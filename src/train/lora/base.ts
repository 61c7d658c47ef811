// The frozen base model for LoRA: a llama GGUF loaded into a ggml context with every weight kept in its stored
// type (F32, F16, Q8_0, Q4_0, K-quants …). LoRA needs gradients w.r.t. activations only, never w.r.t. the base:
// lora-graph.ts gets dx = Wᵀ dy from a transposed (for block types first get_rows-dequantized) copy of W.

import { closeSync, openSync, readSync } from "node:fs";
import { DajianError } from "../../core/errors.js";
import { nativeView } from "../../engine/ffi.js";
import { Context, Tensor } from "../../engine/index.js";
import { GgmlType, GgufReader, ggmlTypeName, metaString, type GgufTensorInfo } from "../../gguf/index.js";
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

export interface FrozenBase {
  path: string;
  config: LlamaConfig;
  vocab: BpeVocab;
  architecture: string;
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
  tensors: GgufTensorInfo[];
  bytes: number;
}

/** Read and check a base GGUF's header: llama family, no biases, trainable weight types. */
export function inspectBase(r: GgufReader): BaseInfo {
  const architecture = metaString(r, "general.architecture") ?? "";
  if (metaString(r, "general.type") === "adapter") {
    throw new DajianError("invalid_input", "the base is a LoRA adapter, not a model", "pass the base model GGUF");
  }
  if (architecture === "qwen2" || architecture === "qwen3" || architecture === "mistral3") {
    throw new DajianError(
      "unsupported",
      `architecture "${architecture}" needs NeoX RoPE and q/k/v biases, which dajian's training forward pass lacks`,
      "fine-tune a llama-architecture GGUF (Llama, Mistral, TinyLlama …)",
    );
  }
  const config = readLlamaConfig(r);
  const biases = r.tensors.filter((t) => t.name.endsWith(".bias"));
  if (biases.length) {
    throw new DajianError(
      "unsupported",
      `the base has bias tensors (${biases[0].name} …) that dajian's llama forward pass does not apply`,
      "fine-tune a llama model without biases",
    );
  }
  const tensors = llamaTensorShapes(config).map((s) => {
    const t = r.tensor(s.name);
    if (t.dims.join() !== s.dims.join()) {
      throw new DajianError("corrupt", `${s.name} has shape [${t.dims}] not [${s.dims}]`, "re-export the base model");
    }
    if (!TRAINABLE_BASE_TYPES.includes(t.type)) {
      throw new DajianError(
        "unsupported",
        `${s.name} is ${ggmlTypeName(t.type)}, and ggml's CPU backend has no backward pass through that type`,
        `requantize the base to one of ${TRAINABLE_TYPE_NAMES} (dajian quantize), or convert it to F16`,
      );
    }
    return t;
  });
  return { config, architecture, tensors, bytes: tensors.reduce((a, t) => a + t.size, 0) };
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
