// tokenizer.json / tokenizer_config.json ↔ GGUF vocabulary: exact round trips for the three pre-tokenizer styles, and
// llama.cpp tokenizing converted models exactly as dajian's BPE does (which its own tests check against llama.cpp).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isDajianError } from "../core/errors.js";
import { metaBool, metaString, readGgufHeader } from "../gguf/index.js";
import { BpeTokenizer, TokenType, trainBpe, type BpeVocab } from "../tokenizer/index.js";
import { TINY_CORPUS } from "../train/tiny-model.js";
import { convertHfCheckpoint } from "./convert-hf.js";
import { randomHfWeights, writeHfCheckpoint } from "./fixtures.test-helper.js";
import { detectPreTokenizer, hfTokenizerConfig, hfTokenizerJson, readHfTokenizer } from "./hf-tokenizer.js";

let dir: string;
let llama: Llama;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dajian-hftok-"));
  llama = await getLlama({ gpu: false });
});
afterAll(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const TEXTS = [
  "Hello world! I've 12345 apples; you'll see 3.14 — 北京是中国的首都。",
  "def f(x):\n    return x  # tabs\tand   spaces\n\n",
  "<|im_start|>user\n知识库<|im_end|> 😀🚀",
];

function writeTokenizer(d: string, v: BpeVocab): void {
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, "tokenizer.json"), JSON.stringify(hfTokenizerJson(v)));
  writeFileSync(join(d, "tokenizer_config.json"), JSON.stringify(hfTokenizerConfig(v)));
}

describe("Hugging Face tokenizer files", () => {
  for (const pre of ["qwen2", "llama-bpe", "gpt-2"]) {
    it(`${pre}: tokenizer.json round-trips the vocabulary and llama.cpp tokenizes the converted model identically`, async () => {
      const v = trainBpe(TINY_CORPUS, { vocabSize: 420, pre, minFrequency: 1 });
      if (pre === "llama-bpe") v.addBos = true; // Llama-3 adds BOS through the post-processor
      const d = join(dir, pre);
      writeTokenizer(d, v);
      const back = readHfTokenizer(d) as BpeVocab;
      expect(back.pre).toBe(pre);
      expect(back.tokens).toEqual(v.tokens);
      expect(back.tokenTypes).toEqual(v.tokenTypes);
      expect(back.merges).toEqual(v.merges);
      expect([back.bosId, back.eosId, back.padId, back.addBos]).toEqual([v.bosId, v.eosId, v.padId, v.addBos]);
      expect(back.chatTemplate).toBe(v.chatTemplate);
      const tj = hfTokenizerJson(v) as any;
      expect(tj.model.ignore_merges).toBe(pre === "llama-bpe");

      const config = {
        vocabSize: v.tokens.length,
        layers: 1,
        dim: 32,
        heads: 2,
        kvHeads: 1,
        ffn: 64,
        contextLength: 64,
        ropeTheta: 1e4,
        normEps: 1e-5,
        tiedEmbeddings: true,
      };
      const hf = join(dir, `${pre}-model`);
      writeHfCheckpoint(hf, "LlamaForCausalLM", config, randomHfWeights(config, false, 1), v);
      const gguf = join(dir, `${pre}.gguf`);
      convertHfCheckpoint(hf, gguf, { type: "F32" });
      const model = await llama.loadModel({ modelPath: gguf });
      try {
        const tok = new BpeTokenizer(v);
        for (const text of TEXTS) {
          expect(Array.from(model.tokenize(text, true)), text).toEqual(tok.encode(text, { parseSpecial: true }));
        }
        const g = readGgufHeader(gguf);
        expect(metaBool(g, "tokenizer.ggml.add_bos_token")).toBe(v.addBos);
        expect(metaString(g, "tokenizer.ggml.pre")).toBe(pre);
      } finally {
        await model.dispose();
      }
    });
  }

  it("pads to config vocab_size with UNUSED tokens, reads [a, b] merges and generation_config EOS lists", () => {
    const v = trainBpe(TINY_CORPUS, { vocabSize: 300, pre: "qwen2", minFrequency: 1 });
    const d = join(dir, "pad");
    writeTokenizer(d, v);
    const tj = hfTokenizerJson(v) as any;
    tj.model.merges = v.merges.map((m) => m.split(" "));
    writeFileSync(join(d, "tokenizer.json"), JSON.stringify(tj));
    writeFileSync(join(d, "generation_config.json"), JSON.stringify({ eos_token_id: [v.eosId, v.eotId] }));
    const back = readHfTokenizer(d, { vocabSize: v.tokens.length + 5 }) as BpeVocab;
    expect(back.tokens.length).toBe(v.tokens.length + 5);
    expect(back.tokens.at(-1)).toBe(`[PAD${v.tokens.length + 4}]`);
    expect(back.tokenTypes.at(-1)).toBe(TokenType.UNUSED);
    expect(back.merges).toEqual(v.merges);
    expect(back.eotId).toBe(v.eotId);
  });

  it("refuses SentencePiece-style and unknown pre-tokenizers with a clear reason", () => {
    const spm = { type: "Metaspace", replacement: "▁" };
    const weird = {
      type: "Sequence",
      pretokenizers: [{ type: "Split", pattern: { Regex: "\\w+" } }, { type: "ByteLevel" }],
    };
    for (const [pre, re] of [
      [spm, /not byte-level/],
      [weird, /not one dajian knows/],
      [{ type: "ByteLevel", add_prefix_space: true }, /add_prefix_space/],
    ] as const) {
      let err: unknown;
      try {
        detectPreTokenizer(pre);
      } catch (e) {
        err = e;
      }
      expect(isDajianError(err, "unsupported")).toBe(true);
      expect((err as Error).message).toMatch(re);
    }
    const d = join(dir, "fallback");
    const v = trainBpe(TINY_CORPUS, { vocabSize: 300, pre: "qwen2", minFrequency: 1 });
    writeTokenizer(d, v);
    const tj = hfTokenizerJson(v) as any;
    tj.model.byte_fallback = true;
    writeFileSync(join(d, "tokenizer.json"), JSON.stringify(tj));
    expect(() => readHfTokenizer(d)).toThrow(/pre_tokenizer "Sequence" is not supported with byte_fallback BPE/);
  });
});
