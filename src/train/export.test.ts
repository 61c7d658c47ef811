import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { getLlama, LlamaCompletion } from "node-llama-cpp";
import { Engine } from "../engine/index.js";
import { GgmlType, GgufReader, metaNumber, metaString } from "../gguf/index.js";
import { perplexity } from "../models/perplexity.js";
import { BpeTokenizer, trainBpe } from "../tokenizer/index.js";
import type { LlamaConfig, LlamaFileType } from "./llama-gguf.js";
import { llamaPerplexity } from "./llama-model.js";
import { Rng } from "./rng.js";
import { TINY_CORPUS } from "./tiny-model.js";
import { LlamaTrainer } from "./trainer.js";

const engine = new Engine({ threads: 1 });
const dir = mkdtempSync(join(tmpdir(), "dajian-export-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const vocab = trainBpe(TINY_CORPUS, { vocabSize: 384, minFrequency: 1 });
const tok = new BpeTokenizer(vocab);
// Row lengths (dim, ffn) are multiples of 32 so that every matrix really is stored in the quantized type.
const config: LlamaConfig = {
  vocabSize: vocab.tokens.length,
  layers: 2,
  dim: 64,
  heads: 4,
  kvHeads: 2,
  ffn: 96,
  contextLength: 64,
  ropeTheta: 10000,
  normEps: 1e-5,
  tiedEmbeddings: false,
};
const text = TINY_CORPUS.join("\n");
const stream = tok.encode(text);

describe("trained model export (F32, F16, Q8_0, Q4_0) read by llama.cpp", () => {
  const files = new Map<LlamaFileType, string>();

  it("writes complete metadata: architecture, hyper-parameters, tokenizer and a ChatML template", async () => {
    const h = { seq: 32, batch: 4, lr: 1e-2, warmupSteps: 3, totalSteps: 40, seed: 2 };
    using tr = new LlamaTrainer(engine, config, h);
    const rng = new Rng(8);
    let first = 0;
    let last = 0;
    for (let s = 0; s < h.totalSteps; s++) {
      const batch = Array.from({ length: h.batch }, () => {
        const at = rng.int(stream.length - h.seq - 1);
        return stream.slice(at, at + h.seq + 1);
      });
      last = (await tr.trainStep([batch])).loss;
      if (s === 0) first = last;
    }
    expect(last).toBeLessThan(first * 0.8); // trained, so perplexities below are far from uniform
    for (const type of ["F32", "F16", "Q8_0", "Q4_0"] as const) {
      const path = join(dir, `m-${type}.gguf`);
      tr.exportGguf(path, vocab, { name: `dajian-export-${type}`, type });
      files.set(type, path);
    }
    using r = GgufReader.open(files.get("Q4_0") as string);
    expect(metaString(r, "general.architecture")).toBe("llama");
    expect(metaNumber(r, "general.file_type")).toBe(2);
    expect(metaNumber(r, "llama.block_count")).toBe(2);
    expect(metaNumber(r, "llama.embedding_length")).toBe(64);
    expect(metaNumber(r, "llama.feed_forward_length")).toBe(96);
    expect(metaNumber(r, "llama.attention.head_count")).toBe(4);
    expect(metaNumber(r, "llama.attention.head_count_kv")).toBe(2);
    expect(metaNumber(r, "llama.context_length")).toBe(64);
    expect(metaString(r, "tokenizer.ggml.model")).toBe("gpt2");
    expect(metaString(r, "tokenizer.chat_template")).toContain("<|im_start|>");
    expect(r.tensor("blk.0.ffn_down.weight").type).toBe(GgmlType.Q4_0);
    expect(r.tensor("blk.0.attn_norm.weight").type).toBe(GgmlType.F32);
  });

  it("llama.cpp's perplexity agrees with dajian's own within 1 % (F32), and loads and generates from every type", async () => {
    const got: Array<[LlamaFileType, number, number]> = [];
    for (const [type, path] of files) {
      const ours = llamaPerplexity(engine, path, text, { contextSize: 64 });
      const theirs = await perplexity(path, text, { contextSize: 64, threads: 1 });
      expect(theirs.tokensScored).toBe(ours.tokensScored);
      got.push([type, ours.perplexity, theirs.perplexity]);
    }
    console.log(
      "perplexity dajian vs llama.cpp: " +
        got
          .map(([t, a, b]) => `${t} ${a.toFixed(3)} / ${b.toFixed(3)} (${((100 * (b - a)) / a).toFixed(2)} %)`)
          .join(", "),
    );
    const [, f32Ours, f32Theirs] = got[0];
    expect(f32Ours).toBeLessThan(vocab.tokens.length / 4);
    expect(Math.abs(f32Theirs - f32Ours) / f32Ours).toBeLessThan(0.01);
    for (const [type, a, b] of got.slice(1))
      expect(Math.abs(b - a) / a, type).toBeLessThan(type === "Q4_0" ? 0.1 : 0.03);

    const llama = await getLlama({ gpu: false });
    try {
      for (const [type, path] of files) {
        const model = await llama.loadModel({ modelPath: path });
        const ctx = await model.createContext({ contextSize: 64, threads: 1 });
        const completion = new LlamaCompletion({ contextSequence: ctx.getSequence() });
        const out = await completion.generateCompletion("The quick brown", { maxTokens: 8, temperature: 0 });
        expect(out.length, `${type} generates`).toBeGreaterThan(0);
        await ctx.dispose();
        await model.dispose();
      }
    } finally {
      await llama.dispose();
    }
  });
});
