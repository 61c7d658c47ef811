// LoRA adapters in llama.cpp's GGUF layout (llama-adapter.cpp): general.type = "adapter", adapter.type = "lora",
// adapter.lora.alpha, and for every adapted base tensor W (ggml dims [in, out]) a pair
//   `<W>.lora_a` with ggml dims [in, r]   (PyTorch/PEFT lora_A.weight, row-major [r][in])
//   `<W>.lora_b` with ggml dims [r, out]  (PyTorch/PEFT lora_B.weight, row-major [out][r])
// llama.cpp adds scale·(alpha/r)·B·A·x to W·x. Token-embedding adapters use a flipped layout and are not supported.

import { DajianError } from "../core/errors.js";
import { metaNumber, metaString, GgufReader } from "./reader.js";
import { GgmlType } from "./types.js";
import { GgufWriter } from "./writer.js";

export interface LoraTensorPair {
  /** Base tensor name, e.g. "blk.0.attn_q.weight". */
  name: string;
  rank: number;
  inDim: number;
  outDim: number;
  /** A: rank × inDim, row-major (row r holds inDim values). */
  a: Float32Array;
  /** B: outDim × rank, row-major. */
  b: Float32Array;
}

export interface LoraAdapter {
  /** Must equal the base model's general.architecture ("llama", "qwen2" …) or llama.cpp refuses it. */
  architecture: string;
  /** LoRA alpha; llama.cpp scales by alpha / rank (0 means scale 1). */
  alpha: number;
  tensors: LoraTensorPair[];
  name?: string;
}

export interface WriteLoraOptions {
  /** Storage type of A and B (F32 default; F16 halves the file). */
  type?: GgmlType.F32 | GgmlType.F16;
}

function bad(message: string, hint: string): DajianError {
  return new DajianError("invalid_input", `LoRA adapter: ${message}`, hint);
}

function checkPair(t: LoraTensorPair): void {
  const dimsOk = [t.rank, t.inDim, t.outDim].every((d) => Number.isInteger(d) && d > 0);
  if (!dimsOk) throw bad(`${t.name}: rank/inDim/outDim must be positive integers`, "fix the adapter shapes");
  if (t.name.startsWith("token_embd"))
    throw bad(`${t.name}: token-embedding adapters are not supported`, "adapt attention/FFN matrices only");
  if (t.a.length !== t.rank * t.inDim)
    throw bad(`${t.name}.lora_a has ${t.a.length} values, expected ${t.rank}×${t.inDim}`, "fix the adapter shapes");
  if (t.b.length !== t.outDim * t.rank)
    throw bad(`${t.name}.lora_b has ${t.b.length} values, expected ${t.outDim}×${t.rank}`, "fix the adapter shapes");
}

/** Build the adapter GGUF in a writer (callers may add keys before writing). */
export function loraAdapterWriter(adapter: LoraAdapter, opts: WriteLoraOptions = {}): GgufWriter {
  if (!adapter.architecture) throw bad("architecture is empty", "use the base model's general.architecture");
  if (!Number.isFinite(adapter.alpha) || adapter.alpha < 0) throw bad(`alpha ${adapter.alpha}`, "use alpha ≥ 0");
  if (adapter.tensors.length === 0) throw bad("no tensors", "adapt at least one matrix");
  const type = opts.type ?? GgmlType.F32;
  const w = new GgufWriter();
  w.str("general.architecture", adapter.architecture).str("general.type", "adapter");
  if (adapter.name) w.str("general.name", adapter.name);
  w.str("adapter.type", "lora").f32("adapter.lora.alpha", adapter.alpha);
  for (const t of adapter.tensors) {
    checkPair(t);
    w.addTensor(`${t.name}.lora_a`, [t.inDim, t.rank], t.a, type);
    w.addTensor(`${t.name}.lora_b`, [t.rank, t.outDim], t.b, type);
  }
  return w;
}

/** Write a LoRA adapter GGUF atomically; returns its byte size. */
export function writeLoraAdapterGguf(path: string, adapter: LoraAdapter, opts: WriteLoraOptions = {}): number {
  return loraAdapterWriter(adapter, opts).write(path);
}

/** Read and validate a LoRA adapter GGUF (pairs complete, ranks agree); values decoded to f32. */
export function readLoraAdapterGguf(path: string): LoraAdapter {
  const r = GgufReader.open(path);
  try {
    const corrupt = (what: string): DajianError =>
      new DajianError("corrupt", `not a LoRA adapter GGUF: ${what}`, "convert or export the adapter again");
    if (metaString(r, "general.type") !== "adapter") throw corrupt("general.type is not 'adapter'");
    if (metaString(r, "adapter.type") !== "lora") throw corrupt("adapter.type is not 'lora'");
    const architecture = metaString(r, "general.architecture");
    if (!architecture) throw corrupt("general.architecture is missing");
    const pairs = new Map<string, { a?: string; b?: string }>();
    for (const t of r.tensors) {
      const m = /^(.*)\.lora_([ab])$/.exec(t.name);
      if (!m) {
        if (t.name.endsWith("_norm.weight")) continue; // llama.cpp ignores these too
        throw corrupt(`tensor ${t.name} has no .lora_a/.lora_b suffix`);
      }
      const p = pairs.get(m[1]) ?? {};
      p[m[2] as "a" | "b"] = t.name;
      pairs.set(m[1], p);
    }
    const tensors: LoraTensorPair[] = [];
    for (const [name, p] of pairs) {
      if (!p.a || !p.b) throw corrupt(`${name} lacks its lora_${p.a ? "b" : "a"} tensor`);
      const ta = r.tensor(p.a);
      const tb = r.tensor(p.b);
      if (ta.dims.length !== 2 || tb.dims.length !== 2) throw corrupt(`${name}: A and B must be matrices`);
      const [inDim, rank] = ta.dims;
      const [rankB, outDim] = tb.dims;
      if (rank !== rankB) throw corrupt(`${name}: rank of A (${rank}) differs from B (${rankB})`);
      tensors.push({ name, rank, inDim, outDim, a: r.tensorF32(p.a), b: r.tensorF32(p.b) });
    }
    return {
      architecture,
      alpha: metaNumber(r, "adapter.lora.alpha") ?? 0,
      tensors,
      name: metaString(r, "general.name"),
    };
  } finally {
    r.close();
  }
}
