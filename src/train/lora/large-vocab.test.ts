// The LoRA loss on a real-sized vocabulary: targets are gathered by index from the softmax (no one-hot [vocab, tokens]
// matrix), so the training graph holds about one [vocab, tokens] f32 tensor — and the masked loss and its gradients
// stay exact there.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Engine } from "../../engine/index.js";
import { TokenType, trainBpe } from "../../tokenizer/index.js";
import { Rng } from "../rng.js";
import { TINY_CORPUS, writeTinyLlamaGguf, type TinyLlamaResult } from "../tiny-model.js";
import { estimateLoraMemory } from "./estimate.js";
import { gradientAndFiniteDifference, maskedLossFromLogits, randomizeB } from "./testing.test-helper.js";
import { LoraTrainer, parseTargets, type LoraOptions, type SftRow } from "./trainer.js";

process.env.DAJIAN_BLAS_MIN_MACS = "0";
const VOCAB = 32_000;
const dir = mkdtempSync(join(tmpdir(), "dajian-lora-vocab-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A tiny model whose BPE vocabulary is padded with unused tokens to VOCAB, as real bases' vocabularies are large. */
function largeVocabBase(): TinyLlamaResult {
  const v = trainBpe(TINY_CORPUS, { vocabSize: 512, pre: "qwen2", minFrequency: 1 });
  const extra = VOCAB - v.tokens.length;
  const vocab = {
    ...v,
    tokens: [...v.tokens, ...Array.from({ length: extra }, (_, i) => `<|unused_${i}|>`)],
    tokenTypes: [...v.tokenTypes, ...Array.from({ length: extra }, () => TokenType.UNUSED)],
  };
  return writeTinyLlamaGguf(join(dir, "v32k.gguf"), { vocab, dim: 32, ffn: 64, layers: 2, std: 0.1 });
}

/** Random ids over the whole vocabulary; the predictions of positions ≥ `from` are trained. */
function randomRow(rng: Rng, len: number, from: number): SftRow {
  const ids = Array.from({ length: len }, () => Math.floor(rng.next() * VOCAB));
  return { ids, mask: ids.map((_, i) => (i >= from ? 1 : 0)) };
}

const ALL: LoraOptions = { rank: 4, alpha: 8, dropout: 0, targets: parseTargets("q,k,v,o,gate,up,down") };

describe("LoRA loss on a 32k vocabulary", () => {
  const m = largeVocabBase();

  it("holds about one [vocab, tokens] tensor in the training graph, on OpenBLAS and on ggml alone", async () => {
    expect(m.config.vocabSize).toBe(VOCAB);
    const rng = new Rng(5);
    const T = 64;
    const B = 2;
    const rows = [randomRow(rng, T + 1, 20), randomRow(rng, T + 1, 40)];
    const logitBytes = VOCAB * T * B * 4;
    for (const blas of [true, false]) {
      const engine = new Engine({ threads: 1, blas });
      using tr = new LoraTrainer(engine, m.path, ALL, { seq: T, batch: B, lr: 1e-3, totalSteps: 2 });
      const step = await tr.trainStep([rows]);
      expect(Number.isFinite(step.loss)).toBe(true);
      expect(step.tokens).toBe(T - 20 + 1 + (T - 40 + 1));
      // The one-hot version kept a [vocab, tokens] one-hot in the arena and, in the graph, the logits, logits·mask
      // and ggml's cross-entropy gradient: more than 2 × logitBytes (measured 2.09× at vocab 32k, 512 tokens).
      const train = tr.computeBytes;
      expect(train).toBeGreaterThanOrEqual(logitBytes);
      expect(train).toBeLessThan(1.5 * logitBytes);
      // Evaluation's forward graph adds one more (its softmax overwrites its logits in place).
      await tr.evaluate(rows);
      expect(tr.computeBytes - train).toBeLessThan(1.5 * logitBytes);
      // The pre-flight estimate covers what was measured: arena + graph buffers, without a one-hot term.
      const est = estimateLoraMemory(m.path, ALL, T, B, tr.replicas, blas);
      expect(est.arenaBytes).toBe(tr.ctx.memBytes);
      // (16 MiB: the arena's allowance for tensor metadata)
      expect(est.arenaBytes).toBeLessThan(m.bytes + (16 << 20) + logitBytes / 4);
      expect(est.residentBytes).toBeGreaterThan(tr.ctx.memBytes + tr.computeBytes);
      expect(est.residentBytes).toBeLessThan(1.5 * (tr.ctx.memBytes + tr.computeBytes));
    }
  });

  it("masked loss and adapter gradients stay exact (direct softmax, finite differences)", async () => {
    const engine = new Engine({ threads: 1 });
    const rng = new Rng(9);
    const r = randomRow(rng, 24, 10);
    r.mask[15] = 0; // a hole in the trained span
    using tr = new LoraTrainer(engine, m.path, ALL, { seq: r.ids.length - 1, batch: 1, lr: 0, totalSteps: 1 });
    randomizeB(tr, 2, 0.3);
    const direct = maskedLossFromLogits(await tr.forwardLogits(r.ids), r);
    const ev = await tr.evaluate([r]);
    expect(ev.tokens).toBe(r.mask.slice(1).filter(Boolean).length);
    expect(ev.tokens).toBe(direct.tokens);
    expect(ev.lossSum / ev.tokens).toBeCloseTo(direct.loss, 4);
    expect(await tr.lossAndGrad([r])).toBeCloseTo(direct.loss, 4);
    for (const name of ["blk.1.ffn_down.weight.lora_b", "blk.0.attn_q.weight.lora_a", "blk.1.attn_v.weight.lora_b"]) {
      const { grad, fd } = await gradientAndFiniteDifference(tr, r, name);
      expect(Math.abs(grad), name).toBeGreaterThan(1e-4);
      expect(Math.abs(fd - grad), name).toBeLessThan(0.03 * Math.abs(grad) + 2e-4);
    }
  });
});
