// A vocabulary trained by dajian, stored in GGUF, must tokenize exactly as llama.cpp does (through node-llama-cpp).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getLlama, type Llama, type LlamaModel } from "node-llama-cpp";
import { writeTinyLlamaGguf } from "../train/tiny-model.js";
import { Rng } from "../train/rng.js";
import { BpeTokenizer } from "./bpe.js";
import { trainBpe } from "./train.js";
import type { BpeVocab } from "./vocab.js";

const ZH =
  "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理论研究算法训练模型".split(
    "",
  );
const EN = [
  "the",
  "model",
  "training",
  "The",
  "token",
  "LLaMA",
  "don't",
  "I'll",
  "we're",
  "THEY'VE",
  "it's",
  "you'd",
  "hello",
  "World",
  "GGUF",
  "über",
  "café",
  "naïve",
  "Ångström",
  "résumé",
  "x",
  "a",
  "I",
];
const CODE = [
  "function f(x) { return x * 2; }",
  "if (a && b) {\n\tc();\n}",
  "const s = `${a}`;",
  "def g():\n    pass",
  '<div class="x">',
  "a->b",
  "i++;",
  "x == y != z",
  "#include <stdio.h>",
  "SELECT * FROM t;",
  '{"k": [1, 2.5, null]}',
  "$HOME/.config",
  "0x1F3",
  "//",
  "/* c */",
  "::",
];
const EMOJI = ["😀", "🦙", "👍🏽", "👨‍👩‍👧", "🇨🇳", "❤️", "✅", "🚀", "🎉🎉", "☕"];
const SPACE = [
  " ",
  "  ",
  "   ",
  "\t",
  "\n",
  "\n\n",
  "\r\n",
  " \n ",
  "\u3000",
  "\u00a0",
  "\t\t",
  "    \n",
  "\n\n\n",
  " \t ",
];
const MISC = [
  "123",
  "3.14159",
  "2024-01-01",
  "1,000,000",
  "99%",
  "¥100",
  "€5",
  "，",
  "。",
  "「引用」",
  "！？",
  "……",
  "—",
  "(",
  ")",
  "!",
  "?",
  "...",
  "'",
  '"',
  "日本語のテキスト",
  "한국어 텍스트",
  "Привет мир",
  "مرحبا",
  "ñ",
  "e\u0301",
  "ﬁ",
  "Ⅻ",
  "①",
  "x²",
  "½",
];

function sample(rng: Rng): string {
  const parts: string[] = [];
  const n = 1 + rng.int(12);
  for (let i = 0; i < n; i++) {
    const k = rng.int(6);
    const pool = [ZH, EN, CODE, EMOJI, SPACE, MISC][k];
    let piece = pool[rng.int(pool.length)];
    if (k === 0) for (let j = rng.int(8); j > 0; j--) piece += ZH[rng.int(ZH.length)];
    parts.push(piece);
    if (rng.next() < 0.5) parts.push(" ");
  }
  return parts.join("");
}

let dir: string;
let llama: Llama;
let model: LlamaModel;
let vocab: BpeVocab;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dajian-bpe-"));
  const rng = new Rng(2024);
  const corpus = Array.from({ length: 3000 }, () => sample(rng));
  vocab = trainBpe(corpus, { vocabSize: 1200, pre: "qwen2" });
  const t = writeTinyLlamaGguf(join(dir, "bpe.gguf"), { vocab, seed: 5 });
  llama = await getLlama({ gpu: false });
  model = await llama.loadModel({ modelPath: t.path });
});
afterAll(async () => {
  await model?.dispose();
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe("trained BPE vocabulary in llama.cpp", () => {
  it("learns the requested number of tokens with merges that compress text", () => {
    expect(vocab.tokens).toHaveLength(1200);
    expect(vocab.merges.length).toBeGreaterThan(900);
    const tok = new BpeTokenizer(vocab);
    const text = "训练模型的时候，the model's tokens don't split every byte.";
    expect(tok.encode(text).length).toBeLessThan(Buffer.byteLength(text) / 2);
  });

  it("gives identical ids to node-llama-cpp on 3000 mixed zh/en/code/emoji/whitespace strings", () => {
    const tok = new BpeTokenizer(vocab);
    const rng = new Rng(777); // different strings than the training corpus
    const mismatches: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const s = sample(rng);
      const ours = tok.encode(s);
      const theirs = Array.from(model.tokenize(s));
      if (ours.join(",") !== theirs.join(",")) mismatches.push(`${JSON.stringify(s)}: ${ours} vs ${theirs}`);
      if (tok.decode(ours) !== s) mismatches.push(`${JSON.stringify(s)}: round trip`);
    }
    expect(mismatches.slice(0, 5)).toEqual([]);
  });

  it("treats ChatML control tokens as llama.cpp does with and without special parsing", () => {
    const tok = new BpeTokenizer(vocab);
    const s = "<|im_start|>user\n你好<|im_end|>\n";
    expect(tok.encode(s, { parseSpecial: true })).toEqual(Array.from(model.tokenize(s, true)));
    expect(tok.encode(s)).toEqual(Array.from(model.tokenize(s, false)));
  });
});
