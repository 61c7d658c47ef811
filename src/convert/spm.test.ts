// SentencePiece-style (Llama 2 / Mistral) tokenizers with llama.cpp as the judge: llama.cpp's own SPM test vocabulary
// is written out as a byte_fallback tokenizer.json, a tiny llama checkpoint using it is converted, and llama.cpp must
// tokenize its test inputs exactly as its reference outputs say; then the export → tokenizer.json round trip, a
// Mistral-style (Metaspace) checkpoint against an HF-semantics forward pass, and clean errors for unsupported variants.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isDajianError, type ErrorCode } from "../core/errors.js";
import { metaBool, metaString, readGgufHeader } from "../gguf/index.js";
import { llamaCppSourceDir } from "../tokenizer/llama-src.js";
import { TokenType } from "../tokenizer/index.js";
import { convertHfCheckpoint } from "./convert-hf.js";
import { exportHfCheckpoint } from "./export-hf.js";
import {
  llamaCppProbs,
  maxAbsDiff,
  randomHfWeights,
  referenceProbs,
  writeHfCheckpoint,
} from "./fixtures.test-helper.js";
import { hfTokenizerJson, readHfTokenizer } from "./hf-tokenizer.js";
import { isSpm, readSpmVocab, spmSpacePrefix, type SpmVocab } from "./spm.js";

const models = join(llamaCppSourceDir(), "models");
let dir: string;
let llama: Llama;
let spm: SpmVocab;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dajian-spm-"));
  llama = await getLlama({ gpu: false });
  spm = readSpmVocab(readGgufHeader(join(models, "ggml-vocab-llama-spm.gguf")));
});
afterAll(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

function cases(): Array<{ text: string; ids: number[] }> {
  const inp = readFileSync(join(models, "ggml-vocab-llama-spm.gguf.inp"), "utf8").split("\n__ggml_vocab_test__\n");
  const out = readFileSync(join(models, "ggml-vocab-llama-spm.gguf.out"), "utf8").split("\n");
  return inp.slice(0, out.length - 1).map((text, i) => ({
    text,
    ids: out[i].trim() === "" ? [] : out[i].trim().split(/\s+/).map(Number),
  }));
}

const tinyConfig = (vocabSize: number) => ({
  vocabSize,
  layers: 1,
  dim: 32,
  heads: 4,
  kvHeads: 2,
  ffn: 64,
  contextLength: 128,
  ropeTheta: 1e4,
  normEps: 1e-5,
  tiedEmbeddings: true,
});

function expectError(fn: () => unknown, code: ErrorCode, re: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(isDajianError(err, code), String(err)).toBe(true);
  expect((err as Error).message).toMatch(re);
}

describe("SentencePiece-style tokenizers (byte_fallback BPE)", () => {
  it("llama.cpp tokenizes its SPM test vectors exactly on a model converted from tokenizer.json", async () => {
    const config = tinyConfig(spm.tokens.length);
    const hf = join(dir, "llama2");
    writeHfCheckpoint(hf, "LlamaForCausalLM", config, randomHfWeights(config, false, 3), spm);
    const tj = JSON.parse(readFileSync(join(hf, "tokenizer.json"), "utf8"));
    expect(tj.model.byte_fallback).toBe(true);
    expect(tj.model.merges.length).toBeGreaterThan(30000);

    const back = readHfTokenizer(hf);
    if (!isSpm(back)) throw new Error("expected an SPM vocabulary");
    expect(back.tokens).toEqual(spm.tokens);
    expect(back.tokenTypes).toEqual(spm.tokenTypes);
    expect([back.bosId, back.eosId, back.unkId, back.addBos, back.addEos, back.addSpacePrefix]).toEqual([
      1,
      2,
      0,
      true,
      false,
      true,
    ]);

    const gguf = join(dir, "llama2.gguf");
    const res = convertHfCheckpoint(hf, gguf, { type: "F32" });
    expect(res.pre).toBe("default");
    const g = readGgufHeader(gguf);
    expect(metaString(g, "tokenizer.ggml.model")).toBe("llama");
    expect(metaBool(g, "tokenizer.ggml.add_space_prefix")).toBe(true);
    const model = await llama.loadModel({ modelPath: gguf });
    try {
      const cs = cases();
      expect(cs.length).toBeGreaterThan(30);
      const failures = cs
        .map((c) => ({ ...c, got: Array.from(model.tokenize(c.text)) }))
        .filter((c) => c.got.join(" ") !== c.ids.join(" "))
        .map((c) => `${JSON.stringify(c.text)}: got ${c.got.join(" ")} want ${c.ids.join(" ")}`);
      expect(failures).toEqual([]);
      // BOS is added and special tokens are parsed when asked
      expect(Array.from(model.tokenize("<s>Hi", true))[0]).toBe(1);
    } finally {
      await model.dispose();
    }

    // GGUF → HF gives back the same tokenizer.json (vocabulary, merges in order, normalizer, decoder)
    const out = join(dir, "llama2-export");
    exportHfCheckpoint(gguf, out);
    const tj2 = JSON.parse(readFileSync(join(out, "tokenizer.json"), "utf8"));
    expect(tj2.model.merges).toEqual(tj.model.merges);
    expect(tj2.model.vocab).toEqual(tj.model.vocab);
    expect([tj2.normalizer, tj2.decoder, tj2.added_tokens]).toEqual([tj.normalizer, tj.decoder, tj.added_tokens]);
  });

  it("a Mistral-style checkpoint (Metaspace pre-tokenizer, GQA) converts, tokenizes and matches HF semantics", async () => {
    const config = tinyConfig(spm.tokens.length);
    const w = randomHfWeights(config, false, 5);
    const hf = join(dir, "mistral");
    writeHfCheckpoint(hf, "MistralForCausalLM", config, w, spm, { extraConfig: { sliding_window: 4096 } });
    // the layout newer transformers versions write: no normalizer, a non-splitting Metaspace
    const tj = JSON.parse(readFileSync(join(hf, "tokenizer.json"), "utf8"));
    tj.normalizer = null;
    tj.pre_tokenizer = { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false };
    writeFileSync(join(hf, "tokenizer.json"), JSON.stringify(tj));
    const cfg = JSON.parse(readFileSync(join(hf, "tokenizer_config.json"), "utf8"));
    cfg.chat_template = "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}";
    writeFileSync(join(hf, "tokenizer_config.json"), JSON.stringify(cfg));
    const gguf = join(dir, "mistral.gguf");
    expect(convertHfCheckpoint(hf, gguf, { type: "F32" }).hasChatTemplate).toBe(true);
    expect(metaString(readGgufHeader(gguf), "tokenizer.chat_template")).toBe(cfg.chat_template);

    const text = "Hello world, 北京!";
    const { ids, probs } = await llamaCppProbs(llama, gguf, text);
    expect(ids.slice(0, 2)).toEqual([spm.tokens.indexOf("▁Hello"), spm.tokens.indexOf("▁world")]);
    expect(maxAbsDiff(probs, referenceProbs(config, w, ids, false))).toBeLessThan(1e-4);

    // add_prefix_space: false in tokenizer_config.json turns SentencePiece's dummy prefix off, as in llama.cpp
    cfg.add_prefix_space = false;
    writeFileSync(join(hf, "tokenizer_config.json"), JSON.stringify(cfg));
    const noPrefix = join(dir, "mistral-noprefix.gguf");
    convertHfCheckpoint(hf, noPrefix, { type: "F32" });
    expect(metaBool(readGgufHeader(noPrefix), "tokenizer.ggml.add_space_prefix")).toBe(false);
    const model = await llama.loadModel({ modelPath: noPrefix });
    try {
      expect(Array.from(model.tokenize("Hello"))).toEqual([spm.tokens.indexOf("Hello")]);
    } finally {
      await model.dispose();
    }
  });

  it("reads add_dummy_prefix from the normalizer or Metaspace and refuses what llama.cpp cannot reproduce", () => {
    const replace = { type: "Replace", pattern: { String: " " }, content: "▁" };
    const prepend = { type: "Prepend", prepend: "▁" };
    expect(spmSpacePrefix({ type: "Sequence", normalizers: [prepend, replace] }, null)).toBe(true);
    expect(spmSpacePrefix({ type: "Sequence", normalizers: [replace] }, null)).toBe(false);
    const meta = { type: "Metaspace", replacement: "▁", split: false };
    expect(spmSpacePrefix(null, { ...meta, prepend_scheme: "always" })).toBe(true);
    expect(spmSpacePrefix(null, { ...meta, prepend_scheme: "never" })).toBe(false);
    expect(spmSpacePrefix(null, { ...meta, add_prefix_space: true })).toBe(true);

    const base = hfTokenizerJson(spm) as any;
    const variants: Array<[string, (tj: any) => void, RegExp]> = [
      ["unigram", (tj) => (tj.model = { type: "Unigram", vocab: [["<unk>", 0]] }), /Unigram/],
      ["wordpiece", (tj) => (tj.model = { type: "WordPiece", vocab: {} }), /is not BPE/],
      ["split", (tj) => ((tj.normalizer = null), (tj.pre_tokenizer = { ...meta, split: true })), /split: true/],
      ["nfkc", (tj) => (tj.normalizer = { type: "NFKC" }), /normalizer "NFKC"/],
      ["bytelevel", (tj) => (tj.pre_tokenizer = { type: "ByteLevel" }), /pre_tokenizer "ByteLevel"/],
      ["nospace", (tj) => (tj.normalizer = null), /without the ▁/],
    ];
    for (const [name, edit, re] of variants) {
      const d = join(dir, `bad-${name}`);
      mkdirSync(d, { recursive: true });
      const tj = structuredClone(base);
      edit(tj);
      writeFileSync(join(d, "tokenizer.json"), JSON.stringify(tj));
      expectError(() => readHfTokenizer(d), "unsupported", re);
    }
    const only = join(dir, "spm-model-only");
    mkdirSync(only, { recursive: true });
    writeFileSync(join(only, "tokenizer.model"), Buffer.from([0x0a, 0x00]));
    expectError(() => readHfTokenizer(only), "unsupported", /only a SentencePiece tokenizer\.model/);
  });

  it("types byte, unknown, control and user-defined tokens as llama.cpp's converter does, and pads to vocab_size", () => {
    const d = join(dir, "types");
    mkdirSync(d, { recursive: true });
    const tj = hfTokenizerJson(spm) as any;
    tj.added_tokens.push({ id: spm.tokens.length, content: "▁<tool>", special: false });
    writeFileSync(join(d, "tokenizer.json"), JSON.stringify(tj));
    const v = readHfTokenizer(d, { vocabSize: spm.tokens.length + 3 }) as SpmVocab;
    expect(v.tokenTypes.slice(0, 4)).toEqual([TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL, TokenType.BYTE]);
    expect(v.tokens[spm.tokens.length]).toBe(" <tool>");
    expect(v.tokenTypes[spm.tokens.length]).toBe(TokenType.USER_DEFINED);
    expect(v.tokens.at(-1)).toBe(`[PAD${spm.tokens.length + 2}]`);
    expect(v.tokenTypes.at(-1)).toBe(TokenType.UNUSED);
    // merged pieces score by merge rank: the first merge's piece outranks every later one
    const first = (tj.model.merges[0] as string).replace(" ", "");
    expect(v.scores[spm.tokens.indexOf(first)]).toBe(0);
    expect(Math.max(...v.scores.filter((_, i) => v.tokenTypes[i] === TokenType.NORMAL))).toBe(0);
  });
});
