import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { getLlama, type ControlledEvaluateInputItem } from "node-llama-cpp";
import { Engine } from "../engine/index.js";
import { BpeTokenizer, trainBpe } from "../tokenizer/index.js";
import type { LlamaConfig } from "./llama-gguf.js";
import { llamaLogits } from "./llama-model.js";
import { Rng } from "./rng.js";
import { TINY_CORPUS } from "./tiny-model.js";
import { LlamaTrainer, initLlamaWeights, learningRate } from "./trainer.js";

const engine = new Engine({ threads: 1 });
const dir = mkdtempSync(join(tmpdir(), "dajian-train-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const vocab = trainBpe(TINY_CORPUS, { vocabSize: 320, minFrequency: 1 });
const tok = new BpeTokenizer(vocab);
const config: LlamaConfig = {
  vocabSize: vocab.tokens.length,
  layers: 2,
  dim: 32,
  heads: 4,
  kvHeads: 2,
  ffn: 64,
  contextLength: 64,
  ropeTheta: 10000,
  normEps: 1e-5,
  tiedEmbeddings: false,
};
const stream = tok.encode(TINY_CORPUS.join("\n"));

// A highly regular text the model can learn within a few dozen steps.
const regular = tok.encode("The quick brown fox jumps over the lazy dog. 我们去公园散步吧。".repeat(40));

function batches(rng: Rng, T: number, B: number, src = stream): number[][] {
  return Array.from({ length: B }, () => {
    const s = rng.int(src.length - T - 1);
    return src.slice(s, s + T + 1);
  });
}

describe("llama trainer on ggml", () => {
  it("schedules warm-up then cosine decay", () => {
    const h = { seq: 4, batch: 1, lr: 1e-3, minLr: 1e-4, warmupSteps: 10, totalSteps: 110 };
    expect(learningRate(h, 0)).toBeCloseTo(1e-4, 8);
    expect(learningRate(h, 9)).toBeCloseTo(1e-3, 8);
    expect(learningRate(h, 60)).toBeCloseTo(5.5e-4, 6);
    expect(learningRate(h, 110)).toBeCloseTo(1e-4, 8);
  });

  it("whole-model gradients match finite differences", async () => {
    // Larger weights than a real init, so gradients stand well above f32 rounding of the loss.
    const rng0 = new Rng(3);
    const base = initLlamaWeights(config, 9);
    const init = (n: string): Float32Array =>
      base(n).map((x) => (n.includes("norm") ? 1 + rng0.normal() * 0.1 : x * 10));
    using tr = new LlamaTrainer(engine, config, { seq: 6, batch: 2, lr: 0, totalSteps: 1 }, init);
    const batch = batches(new Rng(1), 6, 2);
    const base0 = await tr.evaluate(batch);
    expect(base0).toBeGreaterThan(0);
    const names = [
      "token_embd.weight",
      "blk.0.attn_q.weight",
      "blk.0.attn_k.weight",
      "blk.1.attn_v.weight",
      "blk.1.attn_output.weight",
      "blk.0.ffn_gate.weight",
      "blk.1.ffn_down.weight",
      "blk.0.attn_norm.weight",
      "output_norm.weight",
      "output.weight",
    ];
    for (const name of names) {
      await tr.evaluate(batch);
      const g = tr.gradient(name);
      const w = tr.weight(name);
      // the three coordinates with the largest gradients
      const idx = [...g.keys()].sort((a, b) => Math.abs(g[b]) - Math.abs(g[a])).slice(0, 3);
      for (const k of idx) {
        const h = 5e-3;
        const wp = w.slice();
        wp[k] += h;
        tr.setWeight(name, wp);
        const lp = await tr.evaluate(batch);
        wp[k] -= 2 * h;
        tr.setWeight(name, wp);
        const lm = await tr.evaluate(batch);
        tr.setWeight(name, w);
        const numeric = (lp - lm) / (2 * h);
        const err = Math.abs(numeric - g[k]) / Math.max(Math.abs(g[k]), 1e-3);
        expect(err, `${name}[${k}]: analytic ${g[k]} numeric ${numeric}`).toBeLessThan(0.05);
      }
    }
  });

  it("lowers the loss on a small corpus, deterministically for a seed", async () => {
    const h = { seq: 16, batch: 4, lr: 1e-2, warmupSteps: 5, totalSteps: 40, seed: 7 };
    const run = async (): Promise<number[]> => {
      using tr = new LlamaTrainer(engine, config, h);
      const rng = new Rng(11);
      const losses: number[] = [];
      for (let s = 0; s < h.totalSteps; s++)
        losses.push((await tr.trainStep([batches(rng, h.seq, h.batch, regular)])).loss);
      return losses;
    };
    const a = await run();
    expect(a[0]).toBeGreaterThan(Math.log(config.vocabSize) - 0.5);
    const last = a.slice(-5).reduce((x, y) => x + y, 0) / 5;
    expect(last).toBeLessThan(a[0] * 0.4);
    const b = await run();
    expect(b.slice(0, 5)).toEqual(a.slice(0, 5));
  });

  it("exports a GGUF that llama.cpp runs with the same next-token distribution as dajian's forward pass", async () => {
    const h = { seq: 16, batch: 2, lr: 3e-3, totalSteps: 10, seed: 3 };
    using tr = new LlamaTrainer(engine, config, h);
    const rng = new Rng(5);
    for (let s = 0; s < 10; s++) await tr.trainStep([batches(rng, 16, 2)]);
    const path = join(dir, "trained.gguf");
    tr.exportGguf(path, vocab, { name: "dajian-test" });
    const llama = await getLlama({ gpu: false });
    const model = await llama.loadModel({ modelPath: path });
    try {
      const ids = Array.from(model.tokenize("The fox jumps over 知识库"));
      expect(ids).toEqual(tok.encode("The fox jumps over 知识库"));
      const ctx = await model.createContext({
        contextSize: 64,
        threads: 1,
        flashAttention: false,
        experimentalKvCacheKeyType: "F32",
        experimentalKvCacheValueType: "F32",
      });
      const input: ControlledEvaluateInputItem[] = ids.map((id) => [id, { generateNext: { probabilities: true } }]);
      const res = await ctx.getSequence().controlledEvaluate(input);
      const ours = llamaLogits(engine, path, ids);
      let maxErr = 0;
      ours.forEach((l, p) => {
        const m = Math.max(...l);
        const z = l.reduce((a, x) => a + Math.exp(x - m), 0);
        for (const [t, pr] of res[p]?.next.probabilities ?? [])
          maxErr = Math.max(maxErr, Math.abs(Math.exp(l[t] - m) / z - pr));
      });
      expect(maxErr).toBeLessThan(1e-4);
      await ctx.dispose();
    } finally {
      await model.dispose();
      await llama.dispose();
    }
  });
});
