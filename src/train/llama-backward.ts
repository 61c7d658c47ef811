// The llama training graph with a hand-written backward pass. ggml's autograd differentiates mul_mat with two
// OUT_PROD ops, which on the CPU run as row-by-row multiply-adds at a fraction of mul_mat's speed (bench:engine:
// 2.3× vs 6.6× the forward time for one weight gradient). Here every weight gradient is a mul_mat on transposed
// copies and every input gradient a mul_mat with the transposed weight, so the whole step runs on ggml's fastest
// kernel. The non-matmul parts reuse ggml's own backward kernels (rms_norm_back, rope_back, soft_max_back,
// silu_back, get_rows_back, cross_entropy_loss_back), the same ones its autograd would emit.
// The graph lives in a noAlloc context: Graph.allocate() lets activations share memory once their readers are done.

import { DajianError } from "../core/errors.js";
import { GgmlType } from "../gguf/index.js";
import type { Context, Tensor } from "../engine/index.js";
import type { LlamaWeights } from "./llama-model.js";

/** Inputs the caller owns (in an allocated context) and refills before each compute. */
export interface TrainInputs {
  /** i32 [T·B]: sequence b at [b·T, (b+1)·T). */
  tokens: Tensor;
  /** i32 [T·B]: where each next token sits in the flattened logits, n·vocab + id (no one-hot matrix). */
  targetIdx: Tensor;
  /** i32 [T]: 0..T-1. */
  pos: Tensor;
  /** f32 [T, T]: 0 on and below the diagonal, -inf above (causal mask). */
  mask: Tensor;
  /** f32 [1] = 1. */
  one: Tensor;
  /** Causal masks of the query blocks (see causalBlocks): block j is [(j+1)·T/n keys, T/n queries]. */
  blockMasks?: Tensor[];
}

/**
 * Query blocks for causal attention on one thread: block j of T/n queries only sees the first (j+1)·T/n keys, so
 * scores, softmax and the four attention products skip the masked upper triangle — (n+1)/2n of the full work
 * (2 blocks: 3/4 of the work). Odd lengths are not split.
 */
export function causalBlocks(T: number): number {
  return T >= 4 && T % 2 === 0 ? 2 : 1;
}

/** Causal mask for queries [q0, q0 + nq) over keys [0, nk): -inf where the key comes after the query. */
function causalMask(nk: number, q0: number, nq: number): Float32Array {
  const m = new Float32Array(nk * nq);
  for (let i = 0; i < nq; i++) for (let k = q0 + i + 1; k < nk; k++) m[i * nk + k] = -Infinity;
  return m;
}

/** Allocate the inputs of buildLlamaTrainGraph in an allocating context (`blocks`: causalBlocks, for one thread). */
export function createTrainInputs(ctx: Context, vocab: number, T: number, B: number, blocks = 1): TrainInputs {
  if (vocab * T * B >= 2 ** 31)
    throw new DajianError("too_large", "vocab × seq × batch ≥ 2³¹ logits", "use a smaller batch or sequence");
  const mask = causalMask(T, 0, T);
  const Tb = T / blocks;
  const blockMasks =
    blocks > 1
      ? Array.from({ length: blocks }, (_, j) =>
          ctx
            .tensor([(j + 1) * Tb, Tb])
            .name(`kq_mask_${j}`)
            .set(causalMask((j + 1) * Tb, j * Tb, Tb)),
        )
      : undefined;
  return {
    blockMasks,
    tokens: ctx.tensor([T * B], GgmlType.I32).name("tokens"),
    targetIdx: ctx.tensor([T * B], GgmlType.I32).name("target_idx"),
    pos: ctx
      .tensor([T], GgmlType.I32)
      .name("pos")
      .set(Array.from({ length: T }, (_, i) => i)),
    mask: ctx.tensor([T, T]).name("kq_mask").set(mask),
    one: ctx.tensor([1]).name("dloss").set([1]),
  };
}

/**
 * Layout helpers for batched attention products, shared by the full and the LoRA training graphs.
 * ggml's mul_mat hands a contiguous right operand to llamafile's sgemm one (head, sequence) slice at a time with a
 * thread barrier per slice — on a busy machine a descheduled thread stalls every barrier (bench: 0.2 vs 5.5 GFLOP/s
 * with 2 threads). A non-contiguous right operand takes ggml's own tiled kernel, which splits all slices among threads
 * at once. So heads and sequences are kept in two physical orders: "HB" ([…, heads, batch], what the shapes say) and
 * "BH" ([…, batch, heads]); each product reads one operand through a permuted view of the other order.
 * With one thread there are no barriers, and llamafile's sgemm is the faster kernel for the k = head-size products
 * (scores and their gradient): their right operands stay contiguous then.
 */
export function attentionLayout(
  ctx: Context,
  o: { hd: number; T: number; B: number; rep: number; KV: number; threads?: number; reduce?: boolean },
): {
  headsMajor: (t: Tensor) => Tensor;
  mmBH: (a: Tensor, b: Tensor) => Tensor;
  fromBH: (t: Tensor) => Tensor;
  headReduce: (g: Tensor) => Tensor;
} {
  const { hd, T, B, rep, KV } = o;
  const oneThread = (o.threads ?? 1) === 1;
  const swapHB = (t: Tensor): Tensor => ctx.permute(t, [0, 1, 3, 2]);
  // Sum the gradients of the query heads that share one kv head: [hd, T, B, H] → [hd, T, B, KV] (BH order).
  const kvLike = rep === 1 || o.reduce === false ? null : ctx.tensor([hd * T, B, 1, KV]);
  return {
    /** [hd, heads, T, B] → [hd, T, heads, B]: contiguous, or a view of BH storage when threads must not meet. */
    headsMajor: (t) =>
      oneThread ? ctx.cont(ctx.permute(t, [0, 2, 1, 3])) : swapHB(ctx.cont(ctx.permute(t, [0, 3, 1, 2]))),
    /** mul_mat of two HB operands computed in BH order: the result is stored [r0, r1, B, H]. */
    mmBH: (a, b) => ctx.mulMat(swapHB(a), swapHB(b)),
    /** [d, T, B, heads] (BH) → [d, heads, T, B] contiguous, the projections' layout. */
    fromBH: (t) => ctx.cont(ctx.permute(t, [0, 2, 3, 1])),
    headReduce: (g) =>
      kvLike ? ctx.reshape(ctx.repeatBack(ctx.reshape(g, [hd * T, B, rep, KV]), kvLike), [hd, T, B, KV]) : g,
  };
}

/**
 * Build forward + backward for one micro-batch in `ctx` (noAlloc, using the contexts of `w`, `grads` and `io`).
 * Each weight's gradient is added into `grads.get(name)` (same shape), so several computes accumulate.
 * Returns the loss (marked as output) and the nodes to expand into a graph, loss first.
 */
export function buildLlamaTrainGraph(
  ctx: Context,
  w: LlamaWeights,
  grads: Map<string, Tensor>,
  io: TrainInputs,
  T: number,
  B: number,
  opts: { threads?: number } = {},
): { loss: Tensor; nodes: Tensor[] } {
  const c = w.config;
  const N = T * B;
  const hd = c.dim / c.heads;
  const H = c.heads;
  const KV = c.kvHeads;
  const rep = H / KV;
  const scale = 1 / Math.sqrt(hd);
  const rope = { freqBase: c.ropeTheta, nCtxOrig: c.contextLength };
  const W = (n: string): Tensor => {
    const t = w.tensors.get(n);
    if (!t) throw new DajianError("internal", `weight ${n} missing`, "report this bug");
    return t;
  };
  const contrib = new Map<string, Tensor[]>();
  const addGrad = (name: string, g: Tensor): void => {
    const list = contrib.get(name) ?? [];
    list.push(g);
    contrib.set(name, list);
  };
  // Transposed copies, made once per tensor: q/k/v share their input, and so do gate/up.
  const oneThread = (opts.threads ?? 1) === 1;
  const transposed = new Map<Tensor, Tensor>();
  const T2 = (t: Tensor): Tensor => {
    let r = transposed.get(t);
    if (!r) transposed.set(t, (r = oneThread ? ctx.transposeCopy(t) : ctx.cont(ctx.transpose(t))));
    return r;
  };
  /**
   * y = W x and, later, its backward: dx = Wᵀ dy, dW = x dyᵀ — as mul_mat on transposed copies, or with OpenBLAS
   * (ctx.blas) as products that read the transposed operands in place (Context.mulMatT / outerSum).
   */
  const linear = (name: string, x: Tensor): Tensor => ctx.mulMat(W(name), x);
  const linearBack = (name: string, x: Tensor, dy: Tensor): Tensor => {
    if (ctx.blas) {
      addGrad(name, ctx.outerSum(x, dy));
      return ctx.mulMatT(W(name), dy);
    }
    addGrad(name, ctx.mulMat(T2(x), T2(dy)));
    return ctx.mulMat(T2(W(name)), dy);
  };
  const norm = (x: Tensor, name: string): { n: Tensor; y: Tensor } => {
    const n = ctx.rmsNorm(x, c.normEps);
    return { n, y: ctx.mul(n, W(name)) };
  };
  /** Gradient w.r.t. x of y = rmsNorm(x)·g, adding g's gradient. */
  const normBack = (x: Tensor, n: Tensor, name: string, dy: Tensor): Tensor => {
    addGrad(name, ctx.repeatBack(ctx.mul(dy, n), W(name)));
    return ctx.rmsNormBack(ctx.mul(dy, W(name)), x, c.normEps);
  };
  const { headsMajor, mmBH, fromBH, headReduce } = attentionLayout(ctx, { hd, T, B, rep, KV, threads: opts.threads });
  /** Gradients of an attention block w.r.t. q [hd, H, T, B], k and v [hd, KV, T, B] (rope not yet undone). */
  interface AttnBack {
    dQ: Tensor;
    dK: Tensor;
    dV: Tensor;
  }
  /** Attention over all T keys, one product per (head, sequence), in the thread-safe layout of attentionLayout. */
  const fullAttention = (q: Tensor, k: Tensor, v: Tensor): { M: Tensor; back: (dM: Tensor) => AttnBack } => {
    const Q = headsMajor(q); // [hd, T, H, B]
    const K = ctx.cont(ctx.permute(k, [0, 2, 1, 3])); // [hd, T, KV, B]; mul_mat maps query head h to kv h/rep
    const Vh = ctx.cont(ctx.permute(v, [0, 2, 1, 3])); // [hd, T, KV, B]
    const P = ctx.softMaxExt(ctx.mulMat(K, Q), io.mask, scale); // [T_key, T_query, H, B]
    const M = ctx.reshape(fromBH(mmBH(T2(Vh), P)), [c.dim, N]);
    const back = (dM: Tensor): AttnBack => {
      const dA = headsMajor(ctx.reshape(dM, [hd, H, T, B])); // [hd, T, H, B]
      const dP = ctx.mulMat(Vh, dA); // [T_key, T_query, H, B]
      const dV = headReduce(mmBH(T2(dA), T2(P))); // [hd, T, B, KV]
      const dS = ctx.softMaxBack(dP, P, scale);
      const dQ = mmBH(T2(K), dS); // [hd, T, B, H]
      const dK = headReduce(mmBH(T2(Q), T2(dS))); // [hd, T, B, KV]
      return { dQ: fromBH(dQ), dK: fromBH(dK), dV: fromBH(dV) };
    };
    return { M, back };
  };
  // Sum the gradients of the query heads that share one kv head (h = kv·rep + r): [hd, n, H, B] → [hd, n, KV, B].
  const kvReduce = (g: Tensor): Tensor => {
    const n = g.shape[1];
    return rep === 1
      ? g
      : ctx.reshape(ctx.repeatBack(ctx.reshape(g, [hd * n, rep, KV, B]), ctx.tensor([hd * n, 1, KV, B])), [
          hd,
          n,
          KV,
          B,
        ]);
  };
  const nBlocks = io.blockMasks?.length ?? 1;
  const Tb = T / nBlocks;
  /** Causal attention by query blocks (causalBlocks), contiguous operands for llamafile's sgemm: one thread only. */
  const blockedAttention = (q: Tensor, k: Tensor, v: Tensor): { M: Tensor; back: (dM: Tensor) => AttnBack } => {
    const masks = io.blockMasks ?? [];
    const K = ctx.copy(ctx.permute(k, [0, 2, 1, 3])); // [hd, T, KV, B]
    const Vh = ctx.copy(ctx.permute(v, [0, 2, 1, 3]));
    const VT = T2(Vh); // [T, hd, KV, B]
    /** Keys [0, n) of a [*, T, KV, B] (dim 1) or [T, *, KV, B] (dim 0) tensor. */
    const keys = (t: Tensor, n: number, dim: 0 | 1): Tensor =>
      n === T ? t : ctx.view(t, dim === 1 ? [hd, n, KV, B] : [n, hd, KV, B]);
    /** Query block j of a contiguous [hd, H, T, B] tensor as contiguous [hd, Tb, H, B]. */
    const block = (t: Tensor, j: number): Tensor => {
      const view = ctx.view(t, [hd, H, Tb, B], j * Tb * t.strides[2]);
      return ctx.copy(ctx.permute(view, [0, 2, 1, 3]));
    };
    /** Per-block [hd, Tb, H, B] results → one [hd, H, T, B]. */
    const join = (parts: Tensor[]): Tensor =>
      parts.map((t) => ctx.permute(t, [0, 2, 1, 3])).reduce((a, b) => ctx.concat(a, b, 2));
    const Qs: Tensor[] = [];
    const Ps: Tensor[] = [];
    const outs: Tensor[] = [];
    for (let j = 0; j < nBlocks; j++) {
      const kb = (j + 1) * Tb;
      Qs.push(block(q, j));
      Ps.push(ctx.softMaxExt(ctx.mulMat(keys(K, kb, 1), Qs[j]), masks[j], scale)); // [kb, Tb, H, B]
      outs.push(ctx.mulMat(keys(VT, kb, 0), Ps[j])); // [hd, Tb, H, B]
    }
    const M = ctx.reshape(join(outs), [c.dim, N]);
    const back = (dM: Tensor): AttnBack => {
      const d4 = ctx.reshape(dM, [hd, H, T, B]);
      const KT = T2(K); // [T, hd, KV, B]
      const dQs: Tensor[] = [];
      let dK: Tensor | null = null;
      let dV: Tensor | null = null;
      for (let j = nBlocks - 1; j >= 0; j--) {
        const kb = (j + 1) * Tb;
        const dA = block(d4, j); // [hd, Tb, H, B]
        const dP = ctx.mulMat(keys(Vh, kb, 1), dA); // [kb, Tb, H, B]
        const dVj = kvReduce(ctx.mulMat(T2(dA), T2(Ps[j]))); // [hd, kb, KV, B]
        const dS = ctx.softMaxBack(dP, Ps[j], scale);
        dQs[j] = ctx.mulMat(keys(KT, kb, 0), dS); // [hd, Tb, H, B]
        const dKj = kvReduce(ctx.mulMat(T2(Qs[j]), T2(dS)));
        dK = dK ? ctx.accLeading(dK, dKj) : dKj; // the last block sees all keys: earlier ones add into its front
        dV = dV ? ctx.accLeading(dV, dVj) : dVj;
      }
      const rows = (t: Tensor | null): Tensor => ctx.copy(ctx.permute(t ?? dQs[0], [0, 2, 1, 3])); // → [hd, KV, T, B]
      return { dQ: join(dQs), dK: rows(dK), dV: rows(dV) };
    };
    return { M, back };
  };
  const attention = opts.threads === 1 && nBlocks > 1 ? blockedAttention : fullAttention;

  // ---- forward, keeping what the backward reads --------------------------------------------------------------
  interface Saved {
    x: Tensor;
    n1: Tensor;
    h: Tensor;
    attnBack: (dM: Tensor) => AttnBack;
    M: Tensor;
    x1: Tensor;
    n2: Tensor;
    h2: Tensor;
    a: Tensor;
    b: Tensor;
    f: Tensor;
  }
  const saved: Saved[] = [];
  let x = ctx.getRows(W("token_embd.weight"), io.tokens); // [dim, N]
  for (let l = 0; l < c.layers; l++) {
    const p = `blk.${l}.`;
    const { n: n1, y: h } = norm(x, `${p}attn_norm.weight`);
    const q = ctx.rope(ctx.reshape(linear(`${p}attn_q.weight`, h), [hd, H, T, B]), io.pos, hd, rope);
    const k = ctx.rope(ctx.reshape(linear(`${p}attn_k.weight`, h), [hd, KV, T, B]), io.pos, hd, rope);
    const v = ctx.reshape(linear(`${p}attn_v.weight`, h), [hd, KV, T, B]);
    const { M, back: attnBack } = attention(q, k, v);
    const x1 = ctx.add(x, linear(`${p}attn_output.weight`, M));
    const { n: n2, y: h2 } = norm(x1, `${p}ffn_norm.weight`);
    const a = linear(`${p}ffn_gate.weight`, h2);
    const b = linear(`${p}ffn_up.weight`, h2);
    const f = ctx.swiglu(a, b);
    saved.push({ x, n1, h, attnBack, M, x1, n2, h2, a, b, f });
    x = ctx.add(x1, linear(`${p}ffn_down.weight`, f));
  }
  const { n: nf, y: hf } = norm(x, "output_norm.weight");
  const outName = c.tiedEmbeddings ? "token_embd.weight" : "output.weight";
  const logits = linear(outName, hf); // [vocab, N]
  // Cross-entropy from the softmax and the target positions: loss = −mean log p[y], d loss/d logits = (p − onehot)/N.
  // ggml's CROSS_ENTROPY_LOSS(+_BACK) read a one-hot [vocab, N] matrix twice and write a third; this reads the
  // logits once, and the gradient overwrites the softmax in place (its 1/N is applied to the two small products).
  const probs = ctx.reshape(ctx.softMax(logits), [1, c.vocabSize * N]);
  const pY = ctx.getRows(probs, io.targetIdx); // [1, N]
  const loss = ctx.output(ctx.loss(ctx.scale(ctx.sum(ctx.log(pY)), -1 / N)));
  const dLogits = ctx.reshape(ctx.setRows(probs, ctx.sub(pY, io.one), io.targetIdx), [c.vocabSize, N]);

  // ---- backward ------------------------------------------------------------------------------------------------
  const outW = W(outName);
  addGrad(outName, ctx.scale(ctx.blas ? ctx.outerSum(hf, dLogits) : ctx.mulMat(T2(hf), T2(dLogits)), 1 / N));
  const dOut = ctx.blas ? ctx.mulMatT(outW, dLogits) : ctx.mulMat(T2(outW), dLogits);
  let dx = normBack(x, nf, "output_norm.weight", ctx.scale(dOut, 1 / N));
  for (let l = c.layers - 1; l >= 0; l--) {
    const p = `blk.${l}.`;
    const s = saved[l];
    // x2 = x1 + W_down · swiglu(W_gate h2, W_up h2)
    const df = linearBack(`${p}ffn_down.weight`, s.f, dx);
    const da = ctx.siluBack(ctx.mul(df, s.b), s.a);
    const db = ctx.mul(df, ctx.silu(s.a));
    const dh2 = ctx.add(linearBack(`${p}ffn_gate.weight`, s.h2, da), linearBack(`${p}ffn_up.weight`, s.h2, db));
    const dx1 = ctx.add(dx, normBack(s.x1, s.n2, `${p}ffn_norm.weight`, dh2));
    // x1 = x + W_o · attention
    const dM = linearBack(`${p}attn_output.weight`, s.M, dx1);
    const { dQ, dK, dV } = s.attnBack(dM);
    const back = (g: Tensor, heads: number): Tensor => ctx.reshape(ctx.ropeBack(g, io.pos, hd, rope), [hd * heads, N]);
    const dq = back(dQ, H);
    const dk = back(dK, KV);
    const dv = ctx.reshape(dV, [hd * KV, N]);
    const dh = ctx.add(
      ctx.add(linearBack(`${p}attn_q.weight`, s.h, dq), linearBack(`${p}attn_k.weight`, s.h, dk)),
      linearBack(`${p}attn_v.weight`, s.h, dv),
    );
    dx = ctx.add(dx1, normBack(s.x, s.n1, `${p}attn_norm.weight`, dh));
  }
  addGrad("token_embd.weight", ctx.getRowsBack(dx, io.tokens, W("token_embd.weight")));

  const nodes: Tensor[] = [loss];
  for (const [name, list] of contrib) {
    const acc = grads.get(name);
    if (!acc) throw new DajianError("internal", `no gradient accumulator for ${name}`, "report this bug");
    nodes.push(
      ctx.addInPlace(
        acc,
        list.reduce((s, g) => ctx.add(s, g)),
      ),
    );
  }
  return { loss, nodes };
}
