// Test helpers for conversion: llama.cpp's next-token distributions, an independent reference forward pass with
// Hugging Face semantics (rotate-half RoPE, optional q/k/v biases), and an HF checkpoint writer for fixtures.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ControlledEvaluateInputItem, Llama } from "node-llama-cpp";
import type { LlamaConfig } from "../train/llama-gguf.js";
import { Rng } from "../train/rng.js";
import { hfConfigJson, tensorMappings, type HfArchitecture } from "./hf-model.js";
import { hfTokenizerConfig, hfTokenizerJson, type HfVocab } from "./hf-tokenizer.js";
import { encodeSafe, writeSafetensors, type SafeDtype } from "./safetensors.js";

/** llama.cpp's token ids and full next-token distributions (F32 KV cache, no flash attention). */
export async function llamaCppProbs(
  llama: Llama,
  path: string,
  text: string,
  adapters: string[] = [],
): Promise<{ ids: number[]; probs: Float64Array[] }> {
  const model = await llama.loadModel({ modelPath: path });
  try {
    const ids = Array.from(model.tokenize(text));
    const ctx = await model.createContext({
      contextSize: 128,
      threads: 1,
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
      lora: adapters.length ? { adapters: adapters.map((filePath) => ({ filePath, scale: 1 })) } : undefined,
    });
    try {
      const input: ControlledEvaluateInputItem[] = ids.map((id) => [id, { generateNext: { probabilities: true } }]);
      const res = await ctx.getSequence().controlledEvaluate(input);
      const vocab = res[0]?.next.probabilities?.size ?? 0;
      const probs = res.map((r) => {
        const p = new Float64Array(vocab);
        for (const [t, pr] of r?.next.probabilities ?? []) p[t] = pr;
        return p;
      });
      return { ids, probs };
    } finally {
      await ctx.dispose();
    }
  } finally {
    await model.dispose();
  }
}

export function maxAbsDiff(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  let m = 0;
  if (a.length !== b.length) return Infinity;
  a.forEach((row, i) => {
    if (row.length !== b[i].length) m = Infinity;
    for (let j = 0; j < row.length; j++) m = Math.max(m, Math.abs(row[j] - b[i][j]));
  });
  return m;
}

export function softmax(l: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < l.length; i++) m = Math.max(m, l[i]);
  const e = Float64Array.from(l as ArrayLike<number>, (x) => Math.exp(x - m));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
}

/** Next-token distributions of a Hugging Face llama/qwen2/mistral model (weights by HF name, row-major). */
export function referenceProbs(
  c: LlamaConfig,
  w: Map<string, Float32Array>,
  ids: number[],
  qkvBias: boolean,
  scaling: { freqFactors?: Float32Array; linear?: number } = {},
): Float64Array[] {
  const hd = c.dim / c.heads;
  const group = c.heads / c.kvHeads;
  const get = (n: string) => {
    const v = w.get(n);
    if (!v) throw new Error(`reference: no ${n}`);
    return v;
  };
  const matvec = (W: Float32Array, x: Float64Array, rows: number, bias?: Float32Array) => {
    const cols = x.length;
    const out = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      let s = bias ? bias[r] : 0;
      for (let k = 0; k < cols; k++) s += W[r * cols + k] * x[k];
      out[r] = s;
    }
    return out;
  };
  const rms = (x: Float64Array, g: Float32Array) => {
    const ms = x.reduce((a, v) => a + v * v, 0) / x.length;
    const s = 1 / Math.sqrt(ms + c.normEps);
    return x.map((v, i) => v * s * g[i]);
  };
  const rope = (v: Float64Array, nHeads: number, pos: number) => {
    const half = hd / 2;
    for (let h = 0; h < nHeads; h++)
      for (let i = 0; i < half; i++) {
        const ang =
          ((pos / (scaling.linear ?? 1)) * Math.pow(c.ropeTheta, (-2 * i) / hd)) / (scaling.freqFactors?.[i] ?? 1);
        const a = v[h * hd + i];
        const b = v[h * hd + i + half];
        v[h * hd + i] = a * Math.cos(ang) - b * Math.sin(ang);
        v[h * hd + i + half] = b * Math.cos(ang) + a * Math.sin(ang);
      }
  };
  const embed = get("model.embed_tokens.weight");
  const head = c.tiedEmbeddings ? embed : get("lm_head.weight");
  const K: Float64Array[][] = Array.from({ length: c.layers }, () => []);
  const V: Float64Array[][] = Array.from({ length: c.layers }, () => []);
  return ids.map((id, pos) => {
    let x = Float64Array.from(embed.subarray(id * c.dim, (id + 1) * c.dim));
    for (let l = 0; l < c.layers; l++) {
      const p = `model.layers.${l}.`;
      const hN = rms(x, get(`${p}input_layernorm.weight`));
      const bias = (n: string) => (qkvBias ? get(`${p}self_attn.${n}_proj.bias`) : undefined);
      const q = matvec(get(`${p}self_attn.q_proj.weight`), hN, c.heads * hd, bias("q"));
      const k = matvec(get(`${p}self_attn.k_proj.weight`), hN, c.kvHeads * hd, bias("k"));
      const v = matvec(get(`${p}self_attn.v_proj.weight`), hN, c.kvHeads * hd, bias("v"));
      rope(q, c.heads, pos);
      rope(k, c.kvHeads, pos);
      K[l].push(k);
      V[l].push(v);
      const att = new Float64Array(c.heads * hd);
      for (let h = 0; h < c.heads; h++) {
        const kh = Math.floor(h / group);
        const scores = K[l].map((kk) => {
          let s = 0;
          for (let i = 0; i < hd; i++) s += q[h * hd + i] * kk[kh * hd + i];
          return s / Math.sqrt(hd);
        });
        const pr = softmax(scores);
        V[l].forEach((vv, t) => {
          for (let i = 0; i < hd; i++) att[h * hd + i] += pr[t] * vv[kh * hd + i];
        });
      }
      const o = matvec(get(`${p}self_attn.o_proj.weight`), att, c.dim);
      x = x.map((xv, i) => xv + o[i]);
      const h2 = rms(x, get(`${p}post_attention_layernorm.weight`));
      const g = matvec(get(`${p}mlp.gate_proj.weight`), h2, c.ffn);
      const u = matvec(get(`${p}mlp.up_proj.weight`), h2, c.ffn);
      const act = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]);
      const d = matvec(get(`${p}mlp.down_proj.weight`), act, c.dim);
      x = x.map((xv, i) => xv + d[i]);
    }
    return softmax(matvec(head, rms(x, get("model.norm.weight")), c.vocabSize));
  });
}

/** Llama 3 RoPE scaling as config.json writes it, with an original context short enough to matter in tests. */
export const LLAMA3_ROPE_SCALING = {
  rope_type: "llama3",
  factor: 32,
  low_freq_factor: 1,
  high_freq_factor: 4,
  original_max_position_embeddings: 16,
};

/** The small GQA model the LoRA and PyTorch tests use (2 layers, 4 heads / 2 KV heads, FFN 96). */
export function smallConfig(vocabSize: number, over: Partial<LlamaConfig> = {}): LlamaConfig {
  return {
    vocabSize,
    layers: 2,
    dim: 64,
    heads: 4,
    kvHeads: 2,
    ffn: 96,
    contextLength: 128,
    ropeTheta: 10000,
    normEps: 1e-5,
    tiedEmbeddings: false,
    ...over,
  };
}

/** Random HF-layout weights for a config (norms around 1). */
export function randomHfWeights(c: LlamaConfig, qkvBias: boolean, seed: number, std = 0.3): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const out = new Map<string, Float32Array>();
  for (const m of tensorMappings({ config: c, qkvBias, permuteQK: false })) {
    const n = m.shape.reduce((a, b) => a * b, 1);
    const norm = m.hf.endsWith("norm.weight");
    out.set(
      m.hf,
      Float32Array.from({ length: n }, () => (norm ? 1 : 0) + rng.normal() * (norm ? 0.1 : std)),
    );
  }
  return out;
}

/** Write an HF checkpoint folder (config, safetensors, tokenizer files) from HF-named weights. */
export function writeHfCheckpoint(
  dir: string,
  hfArch: HfArchitecture,
  c: LlamaConfig,
  weights: Map<string, Float32Array>,
  vocab: HfVocab,
  opts: { dtype?: SafeDtype; extraConfig?: Record<string, unknown> } = {},
): void {
  mkdirSync(dir, { recursive: true });
  const qkvBias = hfArch === "Qwen2ForCausalLM";
  const tensors = tensorMappings({ config: c, qkvBias, permuteQK: false }).map((m) => ({
    name: m.hf,
    dtype: opts.dtype ?? ("F32" as SafeDtype),
    shape: m.shape,
    data: () => encodeSafe(weights.get(m.hf)!, opts.dtype ?? "F32"),
  }));
  writeSafetensors(join(dir, "model.safetensors"), tensors, { format: "pt" });
  const cfg = {
    ...hfConfigJson({ hfArch, config: c }, { bosId: vocab.bosId, eosId: vocab.eosId }),
    ...opts.extraConfig,
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(hfTokenizerJson(vocab)));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(hfTokenizerConfig(vocab)));
}
