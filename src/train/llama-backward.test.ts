import { describe, expect, it } from "vitest";
import { Engine } from "../engine/index.js";
import { trainBpe, BpeTokenizer } from "../tokenizer/index.js";
import type { LlamaConfig } from "./llama-gguf.js";
import { buildLlamaForward, createLlamaWeights } from "./llama-model.js";
import { Rng } from "./rng.js";
import { TINY_CORPUS } from "./tiny-model.js";
import { LlamaTrainer, initLlamaWeights } from "./trainer.js";

// Every product of these small graphs goes to OpenBLAS when it is installed (CI installs it): the trainer's BLAS
// path is checked against ggml's own autograd computed on ggml alone (`plain`), and one case runs the trainer there.
process.env.DAJIAN_BLAS_MIN_MACS = "0";
const engine = new Engine({ threads: 1 });
const plain = new Engine({ threads: 1, blas: false });
const vocab = trainBpe(TINY_CORPUS, { vocabSize: 300, minFrequency: 1 });
const stream = new BpeTokenizer(vocab).encode(TINY_CORPUS.join("\n"));

function cfg(over: Partial<LlamaConfig>): LlamaConfig {
  return {
    vocabSize: vocab.tokens.length,
    layers: 2,
    dim: 32,
    heads: 4,
    kvHeads: 2,
    ffn: 48,
    contextLength: 32,
    ropeTheta: 10000,
    normEps: 1e-5,
    tiedEmbeddings: false,
    ...over,
  };
}

/** initLlamaWeights draws from one stream as names are asked for: fix each tensor's values at its first draw. */
function memo(f: (n: string) => Float32Array): (n: string) => Float32Array {
  const seen = new Map<string, Float32Array>();
  return (n) => {
    const v = seen.get(n) ?? f(n);
    seen.set(n, v);
    return v;
  };
}

/** Every weight's gradient from ggml's own autograd over buildLlamaForward (the reference), and the loss. */
function autogradGradients(
  config: LlamaConfig,
  init: (n: string) => Float32Array,
  batch: number[][],
): { loss: number; grads: Map<string, Float32Array> } {
  const T = batch[0].length - 1;
  const B = batch.length;
  using ctx = plain.context({ memBytes: 512 << 20 });
  const w = createLlamaWeights(ctx, config, init);
  for (const t of w.tensors.values()) ctx.param(t);
  const { tokens, logits } = buildLlamaForward(ctx, w, T, B);
  tokens.set(batch.flatMap((r) => r.slice(0, T)));
  const V = config.vocabSize;
  const onehot = new Float32Array(V * T * B);
  batch.forEach((r, b) => r.slice(1).forEach((y, t) => (onehot[(b * T + t) * V + y] = 1)));
  const targets = ctx.fromArray([V, T * B], onehot);
  const loss = ctx.loss(ctx.crossEntropyLoss(ctx.reshape(logits, [V, T * B]), targets));
  const g = ctx.graph({ grads: true, size: 16384 }).expand(loss).backward();
  g.reset();
  g.computeSync(1);
  const grads = new Map<string, Float32Array>();
  for (const [name, t] of w.tensors) grads.set(name, g.grad(t)?.get() ?? new Float32Array());
  return { loss: loss.get()[0], grads };
}

describe("hand-written llama backward (trainer) vs ggml autograd", () => {
  // [label, config, T, B, threads]: 2 threads on an odd batch = one graph whose threads share every node;
  // threads 0 = one thread on ggml alone (no OpenBLAS)
  const cases: Array<[string, Partial<LlamaConfig>, number, number, number]> = [
    ["GQA, batch 2, separate output", {}, 7, 2, 1],
    ["GQA, batch 2, separate output, ggml alone", {}, 7, 2, 0],
    ["tied embeddings, MHA, batch 3", { tiedEmbeddings: true, kvHeads: 4 }, 5, 3, 1],
    ["4 query heads per kv head, batch 1", { kvHeads: 1, layers: 1 }, 9, 1, 1],
    ["GQA, batch 3 on one graph with 2 threads (head/batch-swapped attention layout)", {}, 6, 3, 2],
  ];
  for (const [label, over, T, B, threads] of cases) {
    it(`matches every weight's gradient: ${label}`, async () => {
      const config = cfg(over);
      const rng = new Rng(4);
      const base = initLlamaWeights(config, 5);
      // larger than a real init so that attention and norms are far from their linear regime
      const init = memo((n) => base(n).map((x) => (n.includes("norm") ? 1 + rng.normal() * 0.2 : x * 8)));
      const batch = Array.from({ length: B }, (_, b) => stream.slice(b * 13, b * 13 + T + 1));
      const ref = autogradGradients(config, init, batch);
      const eng = threads === 0 ? plain : threads === 1 ? engine : new Engine({ threads });
      using tr = new LlamaTrainer(eng, config, { seq: T, batch: B, lr: 0, totalSteps: 1 }, init);
      expect(tr.replicas).toBe(1);
      const loss = await tr.evaluate(batch);
      expect(loss).toBeCloseTo(ref.loss, 4);
      expect(ref.grads.size).toBe(tr.weights.tensors.size);
      for (const [name, want] of ref.grads) {
        const got = tr.gradient(name);
        expect(got.length, name).toBe(want.length);
        let scale = 0;
        let err = 0;
        for (let i = 0; i < want.length; i++) {
          scale = Math.max(scale, Math.abs(want[i]));
          err = Math.max(err, Math.abs(got[i] - want[i]));
        }
        expect(scale, `${name} has a non-zero gradient`).toBeGreaterThan(0);
        expect(err / scale, `${name}: max error ${err} vs max gradient ${scale}`).toBeLessThan(1e-3);
      }
    });
  }

  it("accumulates over micro-batches: two computes give the sum of both gradients", async () => {
    const config = cfg({});
    const init = memo(initLlamaWeights(config, 2));
    const T = 6;
    const a = [stream.slice(0, T + 1)];
    const b = [stream.slice(40, 40 + T + 1)];
    using tr = new LlamaTrainer(engine, config, { seq: T, batch: 1, lr: 0, totalSteps: 1, clip: 0 }, init);
    await tr.evaluate(a);
    const ga = tr.gradient("blk.1.attn_k.weight");
    await tr.evaluate(b);
    const gb = tr.gradient("blk.1.attn_k.weight");
    // lr 0: the step leaves weights alone, and the reported norm is of the mean gradient
    const r = await tr.trainStep([a, b]);
    let sq = 0;
    for (const name of tr.weights.tensors.keys()) {
      await tr.evaluate(a);
      const x = tr.gradient(name);
      await tr.evaluate(b);
      const y = tr.gradient(name);
      for (let i = 0; i < x.length; i++) sq += ((x[i] + y[i]) / 2) ** 2;
    }
    expect(r.gradNorm).toBeCloseTo(Math.sqrt(sq), 4);
    expect(ga.some((v, i) => Math.abs(v - gb[i]) > 1e-6)).toBe(true);
    expect(tr.weight("blk.1.attn_k.weight")).toEqual(init("blk.1.attn_k.weight"));
  });

  it("two single-thread replicas on halves of the batch give the same loss, gradients and step as one graph", async () => {
    const config = cfg({});
    const init = memo(initLlamaWeights(config, 6));
    const T = 8;
    const batch = [0, 1, 2, 3].map((b) => stream.slice(b * 9, b * 9 + T + 1));
    const h = { seq: T, batch: 4, lr: 1e-2, totalSteps: 2 };
    using one = new LlamaTrainer(engine, config, h, init);
    using two = new LlamaTrainer(new Engine({ threads: 2 }), config, h, init);
    expect([one.replicas, two.replicas]).toEqual([1, 2]);
    expect(await two.evaluate(batch)).toBeCloseTo(await one.evaluate(batch), 5);
    for (const name of ["blk.0.attn_q.weight", "blk.1.ffn_down.weight", "token_embd.weight", "output_norm.weight"]) {
      const a = one.gradient(name);
      const b = two.gradient(name);
      const scale = a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
      expect(scale).toBeGreaterThan(0);
      expect(b.reduce((m, x, i) => Math.max(m, Math.abs(x - a[i])), 0) / scale, name).toBeLessThan(1e-4);
    }
    const ra = await one.trainStep([batch]);
    const rb = await two.trainStep([batch]);
    expect(rb.gradNorm).toBeCloseTo(ra.gradNorm, 4);
    const wa = one.weight("blk.1.attn_v.weight");
    const wb = two.weight("blk.1.attn_v.weight");
    expect(wb.reduce((m, x, i) => Math.max(m, Math.abs(x - wa[i])), 0)).toBeLessThan(1e-5);
  });

  it("keeps activations in one ggml-alloc buffer far smaller than the sum of the graph's tensors", () => {
    const config = cfg({ layers: 3 });
    using tr = new LlamaTrainer(engine, config, { seq: 16, batch: 4, lr: 0, totalSteps: 1 });
    expect(tr.computeBytes).toBeGreaterThan(0);
    expect(tr.computeCtx.noAlloc).toBe(true);
    // opBytes: the bytes of every op result in the graph, i.e. what an arena giving each its own memory would use
    expect(tr.computeBytes).toBeLessThan(tr.computeCtx.opBytes * 0.5);
  });
});
