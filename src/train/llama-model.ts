// The llama forward pass (RMSNorm, RoPE, grouped-query attention, SwiGLU) as a ggml graph, on weights read from a
// dajian/llama.cpp GGUF. Attention is written out (mul_mat + causal mask + softmax) rather than fused, because ggml
// has no backward for flash attention — the same graph serves training.

import { statSync } from "node:fs";
import { DajianError } from "../core/errors.js";
import { GgmlType, GgufReader, metaNumber, metaString } from "../gguf/index.js";
import type { Context, Engine, Tensor } from "../engine/index.js";
import { BpeTokenizer, readVocab, type BpeVocab } from "../tokenizer/index.js";
import { llamaTensorShapes, type LlamaConfig } from "./llama-gguf.js";

/** Hyper-parameters from a llama GGUF. */
export function readLlamaConfig(r: GgufReader, archs: readonly string[] = ["llama"]): LlamaConfig {
  // `archs`: GGUF architectures with llama's hyper-parameter keys under their own prefix (LoRA also reads "qwen2").
  const arch = metaString(r, "general.architecture") ?? "";
  if (!archs.includes(arch)) {
    throw new DajianError(
      "unsupported",
      `architecture "${arch}" is not ${archs.join(" or ")}`,
      `dajian's forward pass supports ${archs.join(" and ")} models`,
    );
  }
  const need = (k: string): number => {
    const v = metaNumber(r, `${arch}.${k}`);
    if (v === undefined) throw new DajianError("corrupt", `GGUF lacks ${arch}.${k}`, "re-export the model");
    return v;
  };
  const heads = need("attention.head_count");
  const dim = need("embedding_length");
  const embd = r.tensor("token_embd.weight");
  return {
    vocabSize: embd.dims[1],
    layers: need("block_count"),
    dim,
    heads,
    kvHeads: metaNumber(r, `${arch}.attention.head_count_kv`) ?? heads,
    ffn: need("feed_forward_length"),
    contextLength: need("context_length"),
    ropeTheta: metaNumber(r, `${arch}.rope.freq_base`) ?? 10000,
    normEps: metaNumber(r, `${arch}.attention.layer_norm_rms_epsilon`) ?? 1e-5,
    tiedEmbeddings: !r.tensors.some((t) => t.name === "output.weight"),
  };
}

export interface LlamaWeights {
  config: LlamaConfig;
  tensors: Map<string, Tensor>;
}

/** Create f32 weight tensors in `ctx`, filled by `init(name)`. */
export function createLlamaWeights(
  ctx: Context,
  config: LlamaConfig,
  init: (name: string) => ArrayLike<number>,
): LlamaWeights {
  const tensors = new Map<string, Tensor>();
  for (const s of llamaTensorShapes(config)) {
    const t = ctx.tensor(s.dims, GgmlType.F32).name(s.name);
    t.set(init(s.name));
    tensors.set(s.name, t);
  }
  return { config, tensors };
}

/** Create f32 weight tensors in `ctx` and fill them from the GGUF (F32/F16/Q8_0/Q4_0 are decoded). */
export function loadLlamaWeights(ctx: Context, path: string): LlamaWeights {
  const r = GgufReader.open(path);
  try {
    return createLlamaWeights(ctx, readLlamaConfig(r), (name) => r.tensorF32(name));
  } finally {
    r.close();
  }
}

export interface ForwardOptions {
  /** Replaces `mul_mat(weight, x)` for the per-layer projections (q, k, v, o, gate, up, down); `name` is the GGUF name. */
  linear?: (name: string, weight: Tensor, x: Tensor) => Tensor;
}

/**
 * Build logits [vocab, T, B] for token ids [T, B] (B sequences, positions 0..T-1 each). Returns the logits and the
 * token input tensor, so a caller can refill it and recompute.
 */
export function buildLlamaForward(
  ctx: Context,
  w: LlamaWeights,
  T: number,
  B = 1,
  opts: ForwardOptions = {},
): { tokens: Tensor; logits: Tensor } {
  const c = w.config;
  // Every projection goes through `linear`, so LoRA (or any adapter) can add its low-rank path without a second
  // copy of the architecture.
  const mm = (name: string, x: Tensor): Tensor =>
    opts.linear ? opts.linear(name, W(name), x) : ctx.mulMat(W(name), x);
  const hd = c.dim / c.heads;
  const W = (n: string): Tensor => {
    const t = w.tensors.get(n);
    if (!t) throw new DajianError("internal", `weight ${n} missing`, "report this bug");
    return t;
  };
  const tokens = ctx.tensor([T * B], GgmlType.I32).name("tokens"); // sequence b at [b·T, (b+1)·T)
  const pos = ctx.tensor([T], GgmlType.I32).name("pos");
  pos.set(Array.from({ length: T }, (_, i) => i));
  const norm = (x: Tensor, weight: Tensor): Tensor => ctx.mul(ctx.rmsNorm(x, c.normEps), weight);

  let x = ctx.getRows(W("token_embd.weight"), tokens); // [dim, T·B]
  if (B > 1) x = ctx.reshape(x, [c.dim, T, B]);
  for (let l = 0; l < c.layers; l++) {
    const p = `blk.${l}.`;
    const h = norm(x, W(`${p}attn_norm.weight`));
    let q = ctx.reshape(mm(`${p}attn_q.weight`, h), [hd, c.heads, T, B]);
    let k = ctx.reshape(mm(`${p}attn_k.weight`, h), [hd, c.kvHeads, T, B]);
    const v = ctx.reshape(mm(`${p}attn_v.weight`, h), [hd, c.kvHeads, T, B]);
    q = ctx.rope(q, pos, hd, { freqBase: c.ropeTheta, nCtxOrig: c.contextLength });
    k = ctx.rope(k, pos, hd, { freqBase: c.ropeTheta, nCtxOrig: c.contextLength });
    const qh = ctx.permute(q, [0, 2, 1, 3]); // [hd, T, H, B]
    let kh = ctx.cont(ctx.permute(k, [0, 2, 1, 3])); // [hd, T, KV, B]
    // Query head h reads kv head floor(h / rep). mul_mat broadcasts that way by itself, but its backward only
    // handles the broadcast when dim 3 is 1 — so with B > 1 the kv heads are repeated explicitly.
    const rep = c.heads / c.kvHeads;
    const expand = (t: Tensor, rows: number): Tensor =>
      rep === 1 || B === 1
        ? t
        : ctx.reshape(ctx.repeatTo(ctx.reshape(t, [rows, 1, c.kvHeads, B]), [rows, rep, c.kvHeads, B]), [
            t.shape[0],
            t.shape[1],
            c.heads,
            B,
          ]);
    kh = expand(kh, hd * T);
    const scores = ctx.mulMat(kh, qh); // [T, T, H, B]
    const probs = ctx.softMax(ctx.diagMaskInf(ctx.scale(scores, 1 / Math.sqrt(hd)), 0));
    const vt = expand(ctx.cont(ctx.permute(v, [1, 2, 0, 3])), T * hd); // [T, hd, KV|H, B]
    const att = ctx.mulMat(vt, probs); // [hd, T, H, B]
    const merged = ctx.reshape(ctx.cont(ctx.permute(att, [0, 2, 1, 3])), [hd * c.heads, T, B]);
    x = ctx.add(x, mm(`${p}attn_output.weight`, merged));
    const h2 = norm(x, W(`${p}ffn_norm.weight`));
    const ff = ctx.swiglu(mm(`${p}ffn_gate.weight`, h2), mm(`${p}ffn_up.weight`, h2));
    x = ctx.add(x, mm(`${p}ffn_down.weight`, ff));
  }
  x = norm(x, W("output_norm.weight"));
  const logits = ctx.mulMat(W(c.tiedEmbeddings ? "token_embd.weight" : "output.weight"), x);
  return { tokens, logits };
}

/** Convenience: logits [T][vocab] for a token sequence. */
export function llamaLogits(engine: Engine, path: string, ids: number[]): Float32Array[] {
  using ctx = engine.context({ memBytes: 256 << 20 });
  const w = loadLlamaWeights(ctx, path);
  const { tokens, logits } = buildLlamaForward(ctx, w, ids.length);
  tokens.set(ids);
  ctx.graph({ size: 4096 }).expand(logits).computeSync(engine.threads);
  const all = logits.get();
  const V = w.config.vocabSize;
  return ids.map((_, t) => all.slice(t * V, (t + 1) * V));
}

export interface DajianPerplexity {
  perplexity: number;
  /** Mean negative log-likelihood, nats per token. */
  nll: number;
  tokensScored: number;
  windows: number;
}

/**
 * Perplexity of a llama GGUF on `text` by dajian's own forward pass, windowed exactly as src/models/perplexity.ts
 * scores it through llama.cpp (BOS first when the vocabulary has one, windows overlapping by one token), so the
 * two can be compared number for number.
 */
export function llamaPerplexity(
  engine: Engine,
  path: string,
  text: string,
  opts: { contextSize?: number } = {},
): DajianPerplexity {
  const r = GgufReader.open(path);
  let vocab: BpeVocab;
  try {
    vocab = readVocab(r);
  } finally {
    r.close();
  }
  const ids = new BpeTokenizer(vocab).encode(text);
  if (ids.length < 2)
    throw new DajianError("invalid_input", "the text is shorter than two tokens", "score a longer text");
  using wctx = engine.context({ memBytes: statSync(path).size * 8 + (16 << 20) });
  const w = loadLlamaWeights(wctx, path);
  const c = w.config;
  const ctxSize = Math.max(8, Math.min(opts.contextSize ?? 512, c.contextLength));
  const bos = vocab.bosId ?? null;
  const room = bos !== null ? ctxSize - 1 : ctxSize;
  let nllSum = 0;
  let scored = 0;
  let windows = 0;
  for (let i = 0; i < ids.length - 1; i += room - 1) {
    const win = ids.slice(i, i + room);
    if (win.length < 2) break;
    const input = bos !== null ? [bos, ...win] : win;
    const T = input.length;
    const perTok = c.layers * (16 * c.dim + 6 * c.ffn + 6 * c.heads * T) + 4 * c.vocabSize;
    using ctx = engine.context({ memBytes: T * perTok * 4 + (16 << 20), uses: [wctx] });
    const { tokens, logits } = buildLlamaForward(ctx, w, T);
    tokens.set(input);
    ctx.graph({ size: 4096 }).expand(logits).computeSync(engine.threads);
    const all = logits.view();
    const V = c.vocabSize;
    for (let p = bos !== null ? 1 : 0; p < T - 1; p++) {
      const row = all.subarray(p * V, (p + 1) * V);
      let m = -Infinity;
      for (const x of row) m = Math.max(m, x);
      let z = 0;
      for (const x of row) z += Math.exp(x - m);
      nllSum += m + Math.log(z) - row[input[p + 1]];
      scored++;
    }
    windows++;
  }
  const nll = nllSum / scored;
  return { perplexity: Math.exp(nll), nll, tokensScored: scored, windows };
}
