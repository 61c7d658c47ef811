// The LoRA training graph with a hand-written backward pass, in a noAlloc context planned by Graph.allocate() so
// activations share memory once their readers are done. The layout (attention in "HB"/"BH" orders, ggml's backward
// kernels for norms, RoPE, softmax and SwiGLU) is copied from src/train/llama-backward.ts (buildLlamaTrainGraph,
// helper A2), which offers no hook for adapters; what differs:
//   • the base stays frozen in its stored type: no weight or norm gradients, and no gradient below the first layer;
//   • each adapted projection is y = W x + s·B(A x̃) (x̃ = dropout(x)) with dx = Wᵀ dy + s·mask⊙Aᵀ(Bᵀ dy),
//     dB = s·dy (A x̃)ᵀ, dA = s·(Bᵀ dy) x̃ᵀ — every product a mul_mat;
//   • Wᵀ dy: with OpenBLAS (ctx.blas) an F32 base is read transposed in place (Context.mulMatT), and blocks of
//     dequantized rows of other types likewise. Without it ggml needs W with the output dimension innermost and
//     cannot copy a transposed view of a block-quantized tensor, so F16 and quantized bases are first dequantized
//     (get_rows, which decodes every type) and transposed, F32 ones viewed directly — inside the graph and one block
//     of rows at a time (baseTChunks), so only a block's copy is alive and ggml-alloc reuses its memory (a stored
//     transposed copy would cost 2–4 bytes per base weight for good: LoraOptions.baseTranspose);
//   • architectures: RoPE in the base's mode (NeoX for qwen2) and scaling (linear, llama3 frequency factors), in the
//     forward and the backward; frozen q/k/v biases added;
//   • the loss is masked and one-hot free (as llama-backward.ts): the target probabilities are gathered by index from
//     the softmax, untrained rows count log 1 = 0, and the gradient p − onehot is written in place in the softmax
//     and its untrained columns zeroed — no [vocab, tokens] tensor besides the logits and their softmax.

import { DajianError } from "../../core/errors.js";
import { GgmlType } from "../../gguf/index.js";
import type { Context, Tensor } from "../../engine/index.js";
import type { LlamaWeights } from "../llama-model.js";
import { attentionLayout } from "../llama-backward.js";

/** One adapted projection: A [in, r], B [r, out] and their gradient accumulators (persistent, f32). */
export interface LoraPair {
  name: string;
  a: Tensor;
  b: Tensor;
  gA: Tensor;
  gB: Tensor;
  inDim: number;
  outDim: number;
}

/** Inputs the trainer owns (allocated context) and refills before each compute. */
export interface LoraInputs {
  /** i32 [T·B]. */
  tokens: Tensor;
  /** i32 [T·B]: where each row's next token sits in the flattened logits, n·vocab + id (any id on untrained rows). */
  targetIdx: Tensor;
  /** f32 [1, T·B]: 1 on trained rows, 0 elsewhere. */
  rowMask: Tensor;
  /** f32 [1] = 1. */
  one: Tensor;
  /** i32 [T]: 0..T-1. */
  pos: Tensor;
  /** f32 [T, T] causal mask. */
  mask: Tensor;
  /** f32 [1]: d(loss)/d(raw loss) = 1 / the step's trained tokens, the raw loss being this graph's sum over its own. */
  lossScale: Tensor;
  /** i32 [count] = start..start+count-1 by `${start}:${count}` (baseTChunks), for get_rows of a block of base rows. */
  rowIds: Map<string, Tensor>;
  /** Dropout masks by projection-input kind ("attn" = q/k/v input, "o", "ffn" = gate/up input, "down"). */
  dropout: Map<string, Tensor>;
  /** Stored transposed copies of base matrices ([out, in], F16 or F32), when the trainer keeps them. */
  baseT?: Map<Tensor, Tensor>;
}

export interface LoraGraphOptions {
  scale: number;
  /** Build the backward pass (false: forward + loss only, for evaluation and logits). */
  backward: boolean;
  /**
   * Forward only: keep the logits as a graph output (for LoraTrainer.forwardLogits). Otherwise the loss's softmax may
   * overwrite them in place, so a graph holds one [vocab, tokens] tensor, not two.
   */
  keepLogits?: boolean;
  /** Apply the dropout masks in `io.dropout`. */
  dropout: boolean;
  threads?: number;
  /** ggml RoPE mode of the base (0 llama, 2 NeoX for qwen2), in the forward and in the RoPE backward. */
  ropeMode?: number;
  /** Linear RoPE scaling of the base (1 = none); llama3 frequency factors come from `rope_freqs.weight`. */
  ropeFreqScale?: number;
  /**
   * Recompute the SwiGLU inputs (gate and up projections) in the backward instead of keeping them from the forward
   * (default false): two FFN-wide tensors per layer fewer in the graph's buffer, for two more dim×ffn products per
   * layer (≈ +20 % of a step's FLOPs; bench:lora measures both).
   */
  recomputeFfn?: boolean;
  /**
   * Leave each micro-batch's dA/dB as graph outputs (returned in `gradOut`) instead of adding them into the pairs'
   * gA/gB: for the trainer's extra replicas, whose gradients it adds into the first replica's after each compute.
   * They take graph memory only from the layer where they are made, when most saved activations are freed, rather
   * than a persistent set per replica.
   */
  gradOutputs?: boolean;
}

/** Most blocks one base matrix's Wᵀ dy is split into (each block adds a handful of graph nodes). */
export const BASE_T_BLOCKS = 8;

/**
 * Row blocks [start, count] of a base matrix with `rows` rows of `inDim` values: Wᵀ dy is summed over them, so only
 * one block's transposed copy is alive at a time — blocks of ~256 Ki values (1 MiB as f32) or more, ≤ BASE_T_BLOCKS.
 */
export function baseTChunks(rows: number, inDim: number): Array<[number, number]> {
  const n = Math.min(BASE_T_BLOCKS, Math.ceil((rows * inDim) / (1 << 18)));
  // Whole multiples of 64 rows: the block's rows are the product's inner dimension, and ggml's fast F32 path (sgemm)
  // needs it divisible by the SIMD width — 341-row blocks measured 1.5× the time of one unsplit product, 384-row ~1.1×.
  const size = Math.ceil(rows / n / 64) * 64;
  const out: Array<[number, number]> = [];
  for (let start = 0; start < rows; start += size) out.push([start, Math.min(size, rows - start)]);
  return out;
}

/** Which dropout mask a projection's input uses (q/k/v share theirs, and so do gate/up). */
export function dropoutKind(name: string): string {
  if (/attn_[qkv]\./.test(name)) return "attn";
  if (name.includes("attn_output")) return "o";
  if (/ffn_(gate|up)\./.test(name)) return "ffn";
  return "down";
}

/**
 * Build forward (+ backward) in `ctx` (noAlloc). Returns the raw loss (summed over the trained rows), the logits and
 * the nodes to expand.
 */
export function buildLoraTrainGraph(
  ctx: Context,
  w: LlamaWeights,
  pairs: ReadonlyMap<string, LoraPair>,
  io: LoraInputs,
  T: number,
  B: number,
  opts: LoraGraphOptions,
): { loss: Tensor; logits: Tensor; nodes: Tensor[]; gradOut: Map<string, { a: Tensor; b: Tensor }> } {
  const c = w.config;
  const N = T * B;
  const hd = c.dim / c.heads;
  const H = c.heads;
  const KV = c.kvHeads;
  const rep = H / KV;
  const attnScale = 1 / Math.sqrt(hd);
  const rope = {
    mode: opts.ropeMode ?? 0,
    freqBase: c.ropeTheta,
    nCtxOrig: c.contextLength,
    freqScale: opts.ropeFreqScale ?? 1,
    freqFactors: w.tensors.get("rope_freqs.weight"),
  };
  const W = (n: string): Tensor => {
    const t = w.tensors.get(n);
    if (!t) throw new DajianError("internal", `weight ${n} missing`, "report this bug");
    return t;
  };
  const transposed = new Map<Tensor, Tensor>();
  const T2 = (t: Tensor): Tensor => {
    let r = transposed.get(t);
    if (!r) transposed.set(t, (r = ctx.cont(ctx.transpose(t))));
    return r;
  };
  /**
   * Wᵀ dy for a frozen base matrix W [in, out] and dy [out, N]: a stored transposed copy when the trainer keeps one,
   * else made in the graph (see the header) one block of rows at a time (baseTChunks) and summed, so the transient
   * copy is a block (≤ 1 MiB), not the whole matrix.
   */
  const baseTMul = (wt: Tensor, dy: Tensor): Tensor => {
    const stored = io.baseT?.get(wt);
    if (stored) return ctx.mulMat(stored, dy);
    // With OpenBLAS (ctx.blas) an F32 base is read transposed in place: no copy at all.
    if (ctx.blas && wt.type === GgmlType.F32) return ctx.mulMatT(wt, dy);
    const [inDim, rows] = wt.shape;
    let sum: Tensor | null = null;
    for (const [start, count] of baseTChunks(rows, inDim)) {
      let block: Tensor;
      if (wt.type === GgmlType.F32) block = ctx.view(wt, [inDim, count], start * inDim * 4);
      else {
        const ids = io.rowIds.get(`${start}:${count}`);
        if (!ids) throw new DajianError("internal", `no row ids for rows ${start}+${count}`, "report this bug");
        block = ctx.getRows(wt, ids); // dequantized (F16 and block types alike) to f32 [in, count]
      }
      let part: Tensor;
      if (ctx.blas) part = ctx.mulMatT(block, ctx.view(dy, [count, dy.shape[1]], start * 4));
      else {
        // dy's block of rows copied contiguous (small: count × N): mul_mat's fast (sgemm) path needs that.
        const dyBlock = count === rows ? dy : ctx.cont(ctx.view(dy, [count, dy.shape[1]], start * 4));
        part = ctx.mulMat(ctx.cont(ctx.transpose(block)), dyBlock);
      }
      sum = sum ? ctx.add(sum, part) : part;
    }
    return sum as Tensor;
  };
  const drop = (name: string, x: Tensor): Tensor => {
    if (!opts.dropout) return x;
    const m = io.dropout.get(dropoutKind(name));
    return m ? ctx.mul(x, m) : x;
  };
  const grads: Tensor[] = [];
  const gradOut = new Map<string, { a: Tensor; b: Tensor }>();

  /** u = A x̃ of each adapted projection, kept for the backward. */
  const lowRank = new Map<string, Tensor>();
  /**
   * W x (+ b) of the frozen base, plus s·B u when the projection is adapted and u is known. A frozen bias (qwen2's
   * q/k/v) needs nothing in the backward: dy passes through the add unchanged.
   */
  const project = (name: string, x: Tensor): Tensor => {
    const bias = w.tensors.get(name.replace(/\.weight$/, ".bias"));
    const y = bias ? ctx.add(ctx.mulMat(W(name), x), bias) : ctx.mulMat(W(name), x);
    const p = pairs.get(name);
    const u = lowRank.get(name);
    return p && u ? ctx.add(y, ctx.scale(ctx.mulMat(p.b, u), opts.scale)) : y;
  };
  /** y = W x (+ b) (+ s·B(A x̃) when adapted). */
  const linear = (name: string, x: Tensor): Tensor => {
    const p = pairs.get(name);
    if (p) lowRank.set(name, ctx.mulMat(p.a, drop(name, x))); // [r, N]
    return project(name, x);
  };
  /** linear() again in the backward, from the forward's u (so the same dropout mask applies). */
  const relinear = project;
  /**
   * dx = Wᵀ dy + s·mask⊙Aᵀ(Bᵀ dy) (null when no dx is needed), adding dA, dB. `x` gives the projection's input,
   * recomputed in the backward where that is cheap (norm outputs, SwiGLU), so the forward's copy is freed early.
   */
  const linearBack = (name: string, x: () => Tensor, dy: Tensor, needDx = true): Tensor | null => {
    let dx = needDx ? baseTMul(W(name), dy) : null;
    const p = pairs.get(name);
    const u = lowRank.get(name);
    if (!p || !u) return dx;
    const du = ctx.scale(ctx.mulMatT(p.b, dy), opts.scale); // [r, N]
    // s folded into the rank-wide factors, so no scaled copy of dy (up to FFN-wide) is made.
    const gB = ctx.scale(ctx.outerSum(u, dy), opts.scale);
    const gA = ctx.outerSum(drop(name, x()), du);
    if (opts.gradOutputs) {
      gradOut.set(p.name, { a: ctx.output(gA), b: ctx.output(gB) });
      grads.push(gA, gB);
    } else grads.push(ctx.addInPlace(p.gB, gB), ctx.addInPlace(p.gA, gA));
    if (dx) {
      let dxin = ctx.mulMatT(p.a, du); // [in, N]
      if (opts.dropout) {
        const m = io.dropout.get(dropoutKind(name));
        if (m) dxin = ctx.mul(dxin, m);
      }
      dx = ctx.add(dx, dxin);
    }
    return dx;
  };
  const norm = (x: Tensor, name: string): Tensor => ctx.mul(ctx.rmsNorm(x, c.normEps), W(name));
  const normBack = (x: Tensor, name: string, dy: Tensor): Tensor => ctx.rmsNormBack(ctx.mul(dy, W(name)), x, c.normEps);

  const { headsMajor, mmBH, fromBH, headReduce } = attentionLayout(ctx, {
    hd,
    T,
    B,
    rep,
    KV,
    threads: opts.threads,
    reduce: Boolean(opts.backward),
  });

  // ---- forward ---------------------------------------------------------------------------------------------------
  // Saved for the backward: residual streams, attention inputs and SwiGLU inputs. Norm outputs, the SwiGLU output,
  // the attention probabilities and the attention output are recomputed there (elementwise, or one T×T product per
  // head): that frees the largest per-layer activations early at a few % of the step's FLOPs.
  interface Saved {
    x: Tensor;
    K: Tensor;
    Vh: Tensor;
    x1: Tensor;
    /** Gate and up outputs, when not recomputed. */
    a?: Tensor;
    b?: Tensor;
  }
  const recomputeFfn = opts.recomputeFfn ?? false;
  const saved: Saved[] = [];
  let x = ctx.getRows(W("token_embd.weight"), io.tokens); // [dim, N]
  for (let l = 0; l < c.layers; l++) {
    const p = `blk.${l}.`;
    const h = norm(x, `${p}attn_norm.weight`);
    const q = ctx.rope(ctx.reshape(linear(`${p}attn_q.weight`, h), [hd, H, T, B]), io.pos, hd, rope);
    const k = ctx.rope(ctx.reshape(linear(`${p}attn_k.weight`, h), [hd, KV, T, B]), io.pos, hd, rope);
    const v = ctx.reshape(linear(`${p}attn_v.weight`, h), [hd, KV, T, B]);
    const Q = headsMajor(q);
    const K = ctx.cont(ctx.permute(k, [0, 2, 1, 3]));
    const Vh = ctx.cont(ctx.permute(v, [0, 2, 1, 3]));
    const P = ctx.softMaxExt(ctx.mulMat(K, Q), io.mask, attnScale);
    const M = ctx.reshape(fromBH(mmBH(T2(Vh), P)), [c.dim, N]);
    const x1 = ctx.add(x, linear(`${p}attn_output.weight`, M));
    const h2 = norm(x1, `${p}ffn_norm.weight`);
    const a = linear(`${p}ffn_gate.weight`, h2);
    const b = linear(`${p}ffn_up.weight`, h2);
    saved.push(recomputeFfn ? { x, K, Vh, x1 } : { x, K, Vh, x1, a, b });
    x = ctx.add(x1, linear(`${p}ffn_down.weight`, ctx.swiglu(a, b)));
  }
  const xf = x;
  const outName = c.tiedEmbeddings ? "token_embd.weight" : "output.weight";
  const logits = ctx.mulMat(W(outName), norm(xf, "output_norm.weight")); // [vocab, N]
  // loss = Σ_trained −log p[y]: log(p[y]·m + (1 − m)) is log p[y] on trained rows and log 1 = 0 on the others,
  // whatever their (unmasked, finite or underflowed) p[y].
  const V = c.vocabSize;
  const probs = ctx.reshape(ctx.softMax(logits), [1, V * N]);
  const pY = ctx.getRows(probs, io.targetIdx); // [1, N]
  const notTrained = ctx.scale(ctx.sub(io.rowMask, io.one), -1);
  const loss = ctx.output(ctx.scale(ctx.sum(ctx.log(ctx.add(ctx.mul(pY, io.rowMask), notTrained))), -1));
  if (!opts.backward) {
    return opts.keepLogits
      ? { loss, logits: ctx.output(logits), nodes: [loss, logits], gradOut }
      : { loss, logits, nodes: [loss], gradOut };
  }

  // ---- backward (activations only; gradients reach A and B) -------------------------------------------------------
  // d loss/d logits = (p − onehot)·m·lossScale, written over the softmax in place: p[y] − 1 set at the targets, then
  // each column scaled by its row weight (0 for untrained rows).
  const onehotOff = ctx.reshape(ctx.setRows(probs, ctx.sub(pY, io.one), io.targetIdx), [V, N]);
  const dLogits = ctx.mulInPlace(onehotOff, ctx.mul(io.rowMask, io.lossScale));
  let dx = normBack(xf, "output_norm.weight", linearBack(outName, () => xf, dLogits) as Tensor);
  for (let l = c.layers - 1; l >= 0; l--) {
    const p = `blk.${l}.`;
    const s = saved[l];
    const once = <R>(f: () => R): (() => R) => {
      let r: R | undefined;
      return () => (r ??= f());
    };
    const h2 = once(() => norm(s.x1, `${p}ffn_norm.weight`));
    const h = once(() => norm(s.x, `${p}attn_norm.weight`));
    // Gate and up again from h2 and the forward's u (see recomputeFfn), or the forward's copies.
    const a = s.a ?? relinear(`${p}ffn_gate.weight`, h2());
    const b = s.b ?? relinear(`${p}ffn_up.weight`, h2());
    const df = linearBack(`${p}ffn_down.weight`, () => ctx.swiglu(a, b), dx) as Tensor;
    const da = ctx.siluBack(ctx.mul(df, b), a);
    const db = ctx.mul(df, ctx.silu(a));
    const dh2 = ctx.add(
      linearBack(`${p}ffn_gate.weight`, h2, da) as Tensor,
      linearBack(`${p}ffn_up.weight`, h2, db) as Tensor,
    );
    const dx1 = ctx.add(dx, normBack(s.x1, `${p}ffn_norm.weight`, dh2));
    // Q again from h (W h + b + s·B u with the forward's u = A x̃): one dim×dim product per layer, a few % of a step,
    // instead of keeping Q from the forward.
    const qName = `${p}attn_q.weight`;
    const Q = headsMajor(ctx.rope(ctx.reshape(relinear(qName, h()), [hd, H, T, B]), io.pos, hd, rope));
    const P = ctx.softMaxExt(ctx.mulMat(s.K, Q), io.mask, attnScale);
    // o's input M = V·P again from the recomputed P (only when o is adapted), rather than keeping the forward's M.
    // A fresh transpose of V: T2's cached forward copy would stay alive until here.
    const M = (): Tensor => ctx.reshape(fromBH(mmBH(ctx.cont(ctx.transpose(s.Vh)), P)), [c.dim, N]);
    const dM = linearBack(`${p}attn_output.weight`, M, dx1) as Tensor;
    const dA = headsMajor(ctx.reshape(dM, [hd, H, T, B]));
    const dP = ctx.mulMat(s.Vh, dA);
    const dV = headReduce(mmBH(T2(dA), T2(P)));
    const dS = ctx.softMaxBack(dP, P, attnScale);
    const dQ = mmBH(T2(s.K), dS);
    const dK = headReduce(mmBH(T2(Q), T2(dS)));
    const back = (g: Tensor, heads: number): Tensor =>
      ctx.reshape(ctx.ropeBack(fromBH(g), io.pos, hd, rope), [hd * heads, N]);
    // Below the first layer only the (frozen) embeddings would read dx: skip the base's Wᵀ dy there.
    const needDx = l > 0;
    const dq = linearBack(`${p}attn_q.weight`, h, back(dQ, H), needDx);
    const dk = linearBack(`${p}attn_k.weight`, h, back(dK, KV), needDx);
    const dv = linearBack(`${p}attn_v.weight`, h, ctx.reshape(fromBH(dV), [hd * KV, N]), needDx);
    if (!needDx) break;
    const dh = ctx.add(ctx.add(dq as Tensor, dk as Tensor), dv as Tensor);
    dx = ctx.add(dx1, normBack(s.x, `${p}attn_norm.weight`, dh));
  }
  return { loss, logits, nodes: [loss, ...grads], gradOut };
}
