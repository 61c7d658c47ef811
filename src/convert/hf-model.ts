// Hugging Face config.json and tensor names ↔ llama.cpp's GGUF architectures. LlamaForCausalLM and
// MistralForCausalLM become llama.cpp's "llama" (whose RoPE rotates adjacent pairs, so llama.cpp's converter permutes
// the rows of q_proj/k_proj within each head); Qwen2ForCausalLM becomes "qwen2" (NEOX RoPE, no permutation, with
// q/k/v biases).

import { DajianError } from "../core/errors.js";
import type { LlamaConfig } from "../train/llama-gguf.js";

export type HfArchitecture = "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM";
export const HF_ARCHITECTURES: HfArchitecture[] = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];

export interface HfModelSpec {
  hfArch: HfArchitecture;
  /** general.architecture in GGUF. */
  arch: "llama" | "qwen2";
  config: LlamaConfig;
  /** q/k/v projections carry biases (Qwen2). */
  qkvBias: boolean;
  /** q/k rows are permuted between HF and GGUF (llama arch). */
  permuteQK: boolean;
  /** torch_dtype from config.json, informational. */
  torchDtype?: string;
  /** RoPE scaling: "linear" → GGUF rope.scaling keys; "llama3" → a rope_freqs.weight tensor of per-pair divisors. */
  ropeScaling?: { type: "linear"; factor: number } | { type: "llama3"; freqFactors: Float32Array };
}

/** Llama-3.1's frequency-dependent RoPE divisors, computed as llama.cpp's converter does. */
export function llama3RopeFactors(headDim: number, theta: number, p: Record<string, unknown>): Float32Array {
  const factor = Number(p.factor ?? 8);
  const low = Number(p.low_freq_factor ?? 1);
  const high = Number(p.high_freq_factor ?? 4);
  const old = Number(p.original_max_position_embeddings ?? 8192);
  if (![factor, low, high, old].every((x) => x > 0) || high <= low)
    throw new DajianError("invalid_input", "config.json: bad llama3 rope_scaling parameters", "fix rope_scaling");
  const out = new Float32Array(headDim / 2);
  for (let i = 0; i < out.length; i++) {
    const freq = 1 / Math.pow(theta, (2 * i) / headDim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < old / high) out[i] = 1;
    else if (wavelen > old / low) out[i] = factor;
    else {
      const smooth = (old / wavelen - low) / (high - low);
      out[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return out;
}

function bad(msg: string, hint = "fix config.json"): DajianError {
  return new DajianError("invalid_input", `config.json: ${msg}`, hint);
}

/** Validate a parsed config.json and describe the model. */
export function parseHfConfig(json: any): HfModelSpec {
  const archs: unknown = json?.architectures;
  const hfArch = Array.isArray(archs) ? (archs.find((a) => HF_ARCHITECTURES.includes(a)) as HfArchitecture) : undefined;
  if (!hfArch)
    throw new DajianError(
      "unsupported",
      `architecture ${JSON.stringify(archs ?? json?.model_type ?? null)} is not supported`,
      `dajian converts ${HF_ARCHITECTURES.join(", ")}`,
    );
  const int = (k: string, def?: number): number => {
    const v = json[k] ?? def;
    if (!Number.isSafeInteger(v) || v <= 0) throw bad(`${k} must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const num = (k: string, def: number): number => {
    const v = json[k] ?? def;
    if (typeof v !== "number" || !(v > 0)) throw bad(`${k} must be a positive number`);
    return v;
  };
  const dim = int("hidden_size");
  const heads = int("num_attention_heads");
  const config: LlamaConfig = {
    vocabSize: int("vocab_size"),
    layers: int("num_hidden_layers"),
    dim,
    heads,
    kvHeads: int("num_key_value_heads", heads),
    ffn: int("intermediate_size"),
    contextLength: int("max_position_embeddings", 4096),
    ropeTheta: num("rope_theta", 10000),
    normEps: num("rms_norm_eps", 1e-6),
    tiedEmbeddings: json.tie_word_embeddings === true,
  };
  if (dim % heads) throw bad(`hidden_size ${dim} is not divisible by num_attention_heads ${heads}`);
  if (heads % config.kvHeads) throw bad(`num_attention_heads ${heads} is not divisible by num_key_value_heads`);
  if (json.head_dim !== undefined && json.head_dim !== null && json.head_dim !== dim / heads)
    throw new DajianError(
      "unsupported",
      `config.json: head_dim ${json.head_dim} differs from hidden_size / num_attention_heads`,
      "dajian converts models whose head size is hidden_size / num_attention_heads",
    );
  const rs = json.rope_scaling;
  let ropeScaling: HfModelSpec["ropeScaling"];
  const rsType = rs ? String(rs.rope_type ?? rs.type ?? "") : "";
  if (rsType === "linear" && rs.factor > 0) ropeScaling = { type: "linear", factor: rs.factor };
  else if (rsType === "llama3" && hfArch !== "Qwen2ForCausalLM")
    ropeScaling = { type: "llama3", freqFactors: llama3RopeFactors(dim / heads, config.ropeTheta, rs) };
  else if (rs)
    throw new DajianError(
      "unsupported",
      `config.json: rope_scaling ${JSON.stringify(rs).slice(0, 60)} is not supported yet`,
      "dajian converts linear and llama3 RoPE scaling; use llama.cpp's converter for others",
    );
  if (json.hidden_act && json.hidden_act !== "silu")
    throw new DajianError("unsupported", `config.json: hidden_act ${json.hidden_act}`, "only SiLU (SwiGLU) models");
  const isQwen = hfArch === "Qwen2ForCausalLM";
  if (!isQwen && (json.attention_bias || json.mlp_bias))
    throw new DajianError(
      "unsupported",
      "config.json: attention_bias/mlp_bias on a Llama model",
      "use bias-free Llama",
    );
  return {
    hfArch,
    arch: isQwen ? "qwen2" : "llama",
    config,
    qkvBias: isQwen,
    permuteQK: !isQwen,
    torchDtype: typeof json.torch_dtype === "string" ? json.torch_dtype : undefined,
    ropeScaling,
  };
}

/** config.json for a model (the inverse of parseHfConfig). */
export function hfConfigJson(
  spec: Pick<HfModelSpec, "hfArch" | "config">,
  extra: { bosId?: number; eosId?: number; torchDtype?: string } = {},
): Record<string, unknown> {
  const c = spec.config;
  const qwen = spec.hfArch === "Qwen2ForCausalLM";
  return {
    architectures: [spec.hfArch],
    model_type: qwen ? "qwen2" : spec.hfArch === "MistralForCausalLM" ? "mistral" : "llama",
    vocab_size: c.vocabSize,
    hidden_size: c.dim,
    intermediate_size: c.ffn,
    num_hidden_layers: c.layers,
    num_attention_heads: c.heads,
    num_key_value_heads: c.kvHeads,
    head_dim: c.dim / c.heads,
    max_position_embeddings: c.contextLength,
    rope_theta: c.ropeTheta,
    rms_norm_eps: c.normEps,
    hidden_act: "silu",
    tie_word_embeddings: c.tiedEmbeddings,
    attention_dropout: 0,
    initializer_range: 0.02,
    use_cache: true,
    rope_scaling: null,
    ...(qwen ? { use_sliding_window: false, sliding_window: null, max_window_layers: c.layers } : {}),
    ...(!qwen ? { attention_bias: false, mlp_bias: false, pretraining_tp: 1 } : {}),
    ...(extra.bosId !== undefined ? { bos_token_id: extra.bosId } : {}),
    ...(extra.eosId !== undefined ? { eos_token_id: extra.eosId } : {}),
    torch_dtype: extra.torchDtype ?? "float32",
    transformers_version: "4.44.0",
  };
}

export interface TensorMapping {
  hf: string;
  gguf: string;
  /** PyTorch shape [out, in] or [n]. */
  shape: number[];
  /** Heads whose rows are permuted (q: heads, k: kvHeads); undefined when rows stay as they are. */
  permuteHeads?: number;
}

/** Every tensor of the model with its HF and GGUF names. */
export function tensorMappings(spec: Pick<HfModelSpec, "config" | "qkvBias" | "permuteQK">): TensorMapping[] {
  const c = spec.config;
  const hd = c.dim / c.heads;
  const q = c.heads * hd;
  const kv = c.kvHeads * hd;
  const out: TensorMapping[] = [
    { hf: "model.embed_tokens.weight", gguf: "token_embd.weight", shape: [c.vocabSize, c.dim] },
  ];
  for (let l = 0; l < c.layers; l++) {
    const h = `model.layers.${l}.`;
    const g = `blk.${l}.`;
    const pq = spec.permuteQK ? c.heads : undefined;
    const pk = spec.permuteQK ? c.kvHeads : undefined;
    out.push(
      { hf: `${h}input_layernorm.weight`, gguf: `${g}attn_norm.weight`, shape: [c.dim] },
      { hf: `${h}self_attn.q_proj.weight`, gguf: `${g}attn_q.weight`, shape: [q, c.dim], permuteHeads: pq },
      { hf: `${h}self_attn.k_proj.weight`, gguf: `${g}attn_k.weight`, shape: [kv, c.dim], permuteHeads: pk },
      { hf: `${h}self_attn.v_proj.weight`, gguf: `${g}attn_v.weight`, shape: [kv, c.dim] },
    );
    if (spec.qkvBias)
      out.push(
        { hf: `${h}self_attn.q_proj.bias`, gguf: `${g}attn_q.bias`, shape: [q], permuteHeads: pq },
        { hf: `${h}self_attn.k_proj.bias`, gguf: `${g}attn_k.bias`, shape: [kv], permuteHeads: pk },
        { hf: `${h}self_attn.v_proj.bias`, gguf: `${g}attn_v.bias`, shape: [kv] },
      );
    out.push(
      { hf: `${h}self_attn.o_proj.weight`, gguf: `${g}attn_output.weight`, shape: [c.dim, q] },
      { hf: `${h}post_attention_layernorm.weight`, gguf: `${g}ffn_norm.weight`, shape: [c.dim] },
      { hf: `${h}mlp.gate_proj.weight`, gguf: `${g}ffn_gate.weight`, shape: [c.ffn, c.dim] },
      { hf: `${h}mlp.up_proj.weight`, gguf: `${g}ffn_up.weight`, shape: [c.ffn, c.dim] },
      { hf: `${h}mlp.down_proj.weight`, gguf: `${g}ffn_down.weight`, shape: [c.dim, c.ffn] },
    );
  }
  out.push({ hf: "model.norm.weight", gguf: "output_norm.weight", shape: [c.dim] });
  if (!c.tiedEmbeddings) out.push({ hf: "lm_head.weight", gguf: "output.weight", shape: [c.vocabSize, c.dim] });
  return out;
}

/** GGUF base-tensor name for an HF module path such as model.layers.3.self_attn.q_proj (LoRA targets). */
export function ggufNameForHfModule(module: string): string | undefined {
  const m = /^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)$/.exec(module);
  if (!m) return undefined;
  const part: Record<string, string> = {
    q_proj: "attn_q",
    k_proj: "attn_k",
    v_proj: "attn_v",
    o_proj: "attn_output",
    gate_proj: "ffn_gate",
    up_proj: "ffn_up",
    down_proj: "ffn_down",
  };
  const p = part[m[3]];
  return p ? `blk.${m[1]}.${p}.weight` : undefined;
}

/**
 * Reorder the rows of a [rows, cols] matrix (or a bias, cols = 1) between HF's rotate-half RoPE layout and llama.cpp's
 * adjacent-pair layout. Within each head, HF row k·(hd/2)+j ↔ GGUF row 2j+k (k ∈ {0,1}).
 */
export function permuteRows(data: Float32Array, heads: number, cols: number, toGguf: boolean): Float32Array {
  const rows = data.length / cols;
  const hd = rows / heads;
  if (!Number.isInteger(hd) || hd % 2)
    throw new DajianError("invalid_input", `cannot split ${rows} rows into ${heads} heads`, "check the config");
  const half = hd / 2;
  const out = new Float32Array(data.length);
  for (let h = 0; h < heads; h++)
    for (let j = 0; j < half; j++)
      for (let k = 0; k < 2; k++) {
        const hfRow = h * hd + k * half + j;
        const ggRow = h * hd + 2 * j + k;
        const [from, to] = toGguf ? [hfRow, ggRow] : [ggRow, hfRow];
        out.set(data.subarray(from * cols, from * cols + cols), to * cols);
      }
  return out;
}
