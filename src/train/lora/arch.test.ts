// LoRA over the other llama-family architectures, built the way users get them: Hugging Face checkpoints (Qwen2 with
// q/k/v biases and NeoX RoPE; Mistral with GQA) converted by `dajian convert`. dajian's forward pass must match an
// independent HF-semantics reference, its adapter gradients finite differences, and llama.cpp with the exported
// adapter (and the merged model) dajian's own logits.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isDajianError } from "../../core/errors.js";
import { Engine } from "../../engine/index.js";
import { GgufReader, GgufWriter } from "../../gguf/index.js";
import { convertHfCheckpoint, type ConvertType } from "../../convert/convert-hf.js";
import {
  LLAMA3_ROPE_SCALING,
  maxAbsDiff,
  randomHfWeights,
  referenceProbs,
  smallConfig,
  writeHfCheckpoint,
} from "../../convert/fixtures.test-helper.js";
import { llama3RopeFactors, type HfArchitecture } from "../../convert/hf-model.js";
import type { LlamaConfig } from "../llama-gguf.js";
import { writeTinyLlamaGguf } from "../tiny-model.js";
import { ChatFormatter, loadSftDataset } from "../../data/sft.js";
import { LORA_ARCHITECTURE_NAMES } from "./base.js";
import { companyQa, writeQaJsonl } from "./company.js";
import { scoreQa } from "./eval-qa.js";
import { mergeAdapter } from "./merge.js";
import { DEFAULT_SETTINGS, finetune } from "./run.js";
import {
  compareWithLlamaCpp,
  gradientAndFiniteDifference,
  loraRow,
  randomizeB,
  softmaxOf,
} from "./testing.test-helper.js";
import { LoraTrainer, parseTargets, type LoraOptions } from "./trainer.js";

const engine = new Engine({ threads: 1 });
const dir = mkdtempSync(join(tmpdir(), "dajian-lora-arch-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const tiny = writeTinyLlamaGguf(join(dir, "tiny.gguf"), { dim: 64, ffn: 96, layers: 2 });
const ALL: LoraOptions = { rank: 4, alpha: 8, dropout: 0, targets: parseTargets("q,k,v,o,gate,up,down") };
const TEXT = "The fox jumps over 知识库 and the lazy dog.";

/** An HF checkpoint of `hfArch` with random weights, converted to GGUF by dajian convert. */
function converted(
  hfArch: HfArchitecture,
  config: LlamaConfig,
  type: ConvertType,
  seed: number,
  extraConfig?: Record<string, unknown>,
) {
  const w = randomHfWeights(config, hfArch === "Qwen2ForCausalLM", seed, 0.15);
  const hf = join(dir, `${hfArch}-${seed}`);
  writeHfCheckpoint(hf, hfArch, config, w, tiny.vocab, { extraConfig });
  const path = join(dir, `${hfArch}-${seed}-${type}.gguf`);
  convertHfCheckpoint(hf, path, { type });
  return { path, w, config };
}

const qwenConfig = smallConfig(tiny.config.vocabSize, { tiedEmbeddings: true, ropeTheta: 1_000_000, normEps: 1e-6 });

describe("LoRA on Qwen2 and Mistral bases", () => {
  it("Qwen2 (NeoX RoPE, q/k/v biases): forward matches the HF reference, gradients match finite differences", async () => {
    const q = converted("Qwen2ForCausalLM", qwenConfig, "F32", 11);
    const r = loraRow(tiny.vocab, "Knowledge bases answer questions with citations.", 0.3);
    using tr = new LoraTrainer(engine, q.path, ALL, { seq: r.ids.length - 1, batch: 1, lr: 0, totalSteps: 1 });
    // B = 0: the adapter is the identity, so dajian's forward must be the base model's, biases and NeoX RoPE included.
    const ours = (await tr.forwardLogits(r.ids.slice(0, -1))).map(softmaxOf);
    expect(maxAbsDiff(ours, referenceProbs(q.config, q.w, r.ids.slice(0, -1), true))).toBeLessThan(1e-4);
    randomizeB(tr, 2, 0.3);
    for (const name of ["blk.0.attn_q.weight.lora_a", "blk.0.attn_k.weight.lora_b", "blk.1.attn_q.weight.lora_b"]) {
      const { grad, fd } = await gradientAndFiniteDifference(tr, r, name);
      expect(Math.abs(grad), name).toBeGreaterThan(1e-4);
      expect(Math.abs(fd - grad), name).toBeLessThan(0.03 * Math.abs(grad) + 2e-4);
    }
  });

  for (const type of ["F32", "Q8_0"] as const) {
    it(`Qwen2 ${type} base: training lowers the loss; llama.cpp with the adapter and the merged model match dajian`, async () => {
      const q = converted("Qwen2ForCausalLM", qwenConfig, type, 12);
      const rows = [loraRow(tiny.vocab, TEXT), loraRow(tiny.vocab, "北京是中国的首都，上海是最大的城市。")];
      const seq = Math.max(...rows.map((x) => x.ids.length));
      using tr = new LoraTrainer(engine, q.path, ALL, { seq, batch: 2, lr: 2e-2, totalSteps: 15, warmupSteps: 1 });
      const e0 = await tr.evaluate(rows);
      for (let s = 0; s < 15; s++) await tr.trainStep([rows]);
      const e1 = await tr.evaluate(rows);
      expect(e1.lossSum / e1.tokens).toBeLessThan((e0.lossSum / e0.tokens) * 0.8);
      const adapter = join(dir, `qwen2-${type}.lora.gguf`);
      tr.exportAdapter(adapter);
      const viaAdapter = await compareWithLlamaCpp(tr, q.path, adapter, rows[0].ids);
      expect(viaAdapter.adapterEffect).toBeGreaterThan(0.01);
      expect(viaAdapter.maxErr).toBeLessThan(type === "F32" ? 1e-4 : 2e-3);
      const merged = join(dir, `qwen2-${type}-merged.gguf`);
      mergeAdapter(engine, q.path, adapter, merged);
      const viaMerged = await compareWithLlamaCpp(tr, q.path, undefined, rows[0].ids, merged);
      // Merged matrices are F32 (W + s·BA): llama.cpp no longer quantizes their inputs as a Q8_0 mul_mat does.
      expect(viaMerged.maxErr).toBeLessThan(type === "F32" ? 1e-4 : 1e-2);
    });
  }

  it("`finetune` on a Qwen2 Q8_0 base: its chat template, assistant-only loss, an adapter llama.cpp scores lower", async () => {
    const q = converted("Qwen2ForCausalLM", qwenConfig, "Q8_0", 16);
    const file = join(dir, "qa.jsonl");
    writeQaJsonl(file, companyQa("train").slice(0, 12));
    const f = ChatFormatter.fromGguf(q.path);
    const data = await loadSftDataset([file], f);
    expect(data.report.kept).toBe(12);
    const out = join(dir, "qwen2-run.lora.gguf");
    const summary = await finetune(engine, join(dir, "qwen2-run"), data.samples, {
      ...DEFAULT_SETTINGS,
      base: q.path,
      out,
      lora: { rank: 8, alpha: 16, dropout: 0, targets: parseTargets("q,v,gate,down") },
      lr: 2e-2,
      batch: 4,
      steps: 12,
      valSplit: 0,
    });
    expect(summary.trainLossAfter).toBeLessThan(summary.trainLossBefore * 0.8);
    const examples = companyQa("train")
      .slice(0, 4)
      .map((p, i) => ({
        source: `train:${i}`,
        messages: [
          { role: "user" as const, content: p.question },
          { role: "assistant" as const, content: p.answer },
        ],
      }));
    const before = await scoreQa(q.path, undefined, examples, f, { maxTokens: 4 });
    const after = await scoreQa(q.path, out, examples, f, { maxTokens: 4 });
    expect(after.loss).toBeLessThan(before.loss);
  });

  it("Mistral (GQA 8/2, converted to llama): reference forward, llama.cpp with the adapter", async () => {
    const m = converted("MistralForCausalLM", smallConfig(tiny.config.vocabSize, { heads: 8, kvHeads: 2 }), "F32", 13);
    const r = loraRow(tiny.vocab, TEXT);
    using tr = new LoraTrainer(engine, m.path, ALL, { seq: r.ids.length, batch: 1, lr: 0, totalSteps: 1 });
    const plain = (await tr.forwardLogits(r.ids)).map(softmaxOf);
    expect(maxAbsDiff(plain, referenceProbs(m.config, m.w, r.ids, false))).toBeLessThan(1e-4);
    randomizeB(tr, 3, 0.3);
    const adapter = join(dir, "mistral.lora.gguf");
    tr.exportAdapter(adapter);
    const c = await compareWithLlamaCpp(tr, m.path, adapter, r.ids);
    expect(c.adapterEffect).toBeGreaterThan(0.01);
    expect(c.maxErr).toBeLessThan(1e-4);
    // GQA: k/v adapters are [dim → kvHeads·headDim]
    expect(tr.adapterTensors().find((p) => p.name === "blk.0.attn_k.weight")?.outDim).toBe(2 * 8);
  });

  it("Llama 3 RoPE scaling (rope_freqs) and linear scaling: reference forward, gradients, llama.cpp with the adapter", async () => {
    const llama3 = LLAMA3_ROPE_SCALING;
    const config = smallConfig(tiny.config.vocabSize);
    for (const [tag, rs, seed] of [
      ["llama3", llama3, 14],
      ["linear", { type: "linear", factor: 4 }, 15],
    ] as const) {
      const m = converted("LlamaForCausalLM", config, "F32", seed, { rope_scaling: rs });
      const r = loraRow(tiny.vocab, TEXT + " " + TEXT, 0.3);
      using tr = new LoraTrainer(engine, m.path, ALL, { seq: r.ids.length - 1, batch: 1, lr: 0, totalSteps: 1 });
      const ids = r.ids.slice(0, -1);
      const rope = tag === "llama3" ? { freqFactors: llama3RopeFactors(16, 10000, llama3) } : { linear: 4 };
      const plain = (await tr.forwardLogits(ids)).map(softmaxOf);
      expect(maxAbsDiff(plain, referenceProbs(config, m.w, ids, false, rope)), tag).toBeLessThan(1e-4);
      expect(maxAbsDiff(plain, referenceProbs(config, m.w, ids, false)), tag).toBeGreaterThan(1e-3);
      randomizeB(tr, 4, 0.3);
      const { grad, fd } = await gradientAndFiniteDifference(tr, r, "blk.0.attn_k.weight.lora_b");
      expect(Math.abs(fd - grad), tag).toBeLessThan(0.03 * Math.abs(grad) + 2e-4);
      const adapter = join(dir, `rope-${tag}.lora.gguf`);
      tr.exportAdapter(adapter);
      const c = await compareWithLlamaCpp(tr, m.path, adapter, ids);
      expect(c.adapterEffect, tag).toBeGreaterThan(0.01);
      expect(c.maxErr, tag).toBeLessThan(1e-4);
    }
  });

  it("refuses other architectures and YaRN RoPE scaling with one line naming what is supported", () => {
    const refuse = (patch: (w: GgufWriter, r: GgufReader) => void, name: string): unknown => {
      using r = GgufReader.open(tiny.path);
      const w = new GgufWriter();
      for (const [k, v] of r.metadata) w.set(k, v);
      for (const t of r.tensors) w.addTensor(t.name, t.dims, r.tensorBytes(t), t.type);
      patch(w, r);
      const path = join(dir, name);
      w.write(path);
      try {
        new LoraTrainer(engine, path, ALL, { seq: 8, batch: 1, lr: 0, totalSteps: 1 }).dispose();
      } catch (e) {
        return e;
      }
      return null;
    };
    const gemma = refuse((w) => w.str("general.architecture", "gemma"), "gemma.gguf");
    expect(isDajianError(gemma, "unsupported")).toBe(true);
    expect(String((gemma as Error).message)).toContain('"gemma"');
    expect(String((gemma as { hint: string }).hint)).toContain(LORA_ARCHITECTURE_NAMES);
    const yarn = refuse((w) => w.str("llama.rope.scaling.type", "yarn").f32("llama.rope.scaling.factor", 4), "y.gguf");
    expect(isDajianError(yarn, "unsupported")).toBe(true);
    expect(String((yarn as Error).message)).toMatch(/RoPE scaling "yarn"/);
  });
});
