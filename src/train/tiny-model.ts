// A small llama model with a real byte-level BPE vocabulary and a ChatML template, written from a seed. Tests across
// dajian use it wherever they need "a GGUF that llama.cpp loads" without downloading anything.

import { Rng } from "./rng.js";
import { trainBpe, type BpeVocab } from "../tokenizer/index.js";
import { llamaTensorShapes, writeLlamaGguf, type LlamaConfig, type LlamaFileType } from "./llama-gguf.js";

export interface TinyLlamaOptions {
  seed?: number;
  /** Total vocabulary (256 bytes + learned merges + 3 ChatML control tokens). Default 512. */
  vocabSize?: number;
  layers?: number;
  dim?: number;
  heads?: number;
  kvHeads?: number;
  ffn?: number;
  contextLength?: number;
  type?: LlamaFileType;
  /** Texts the BPE vocabulary is learned from. Default: a built-in mixed English/Chinese/code sample. */
  corpus?: string[];
  /** Standard deviation of the random weights (default 0.02; larger gives peakier logits for comparisons). */
  std?: number;
  /** Use this vocabulary instead of learning one from `corpus`. */
  vocab?: BpeVocab;
  /** Mark the model for mean-pooled embeddings (llama.pooling_type = 1). */
  embedding?: boolean;
  tiedEmbeddings?: boolean;
  name?: string;
}

export interface TinyLlamaResult {
  path: string;
  bytes: number;
  config: LlamaConfig;
  vocab: BpeVocab;
}

/** Built-in sample so the vocabulary has useful merges for English, Chinese, digits and code. */
export const TINY_CORPUS: string[] = [
  "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs into the forest.",
  "Knowledge bases answer questions with citations. Every answer cites the document, the page and a quote.",
  "Hello world! How are you today? I am fine, thank you. What is the weather like in Beijing and Shanghai?",
  "我们的公司政策规定，员工每年有十五天带薪年假。请假需要提前三天向经理申请。",
  "知识库助手根据检索到的段落回答问题，并给出编号引用。数据留在公司自己的服务器上。",
  "北京是中国的首都，上海是最大的城市。今天天气很好，我们去公园散步吧。",
  "function add(a, b) {\n  return a + b;\n}\nconst total = add(40, 2); // 42\nconsole.log(`total = ${total}`);",
  "def train(model, data, steps=1000):\n    for step in range(steps):\n        loss = model(data)\n        loss.backward()\n",
  "SELECT id, title FROM documents WHERE kb = 'support' ORDER BY created_at DESC LIMIT 10;",
  "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14159 -42 1e-5 65536",
  '<html><body><h1>Title</h1><p>Paragraph with <a href="https://example.com">a link</a>.</p></body></html>',
  "Emoji and symbols: 😀 🚀 ✅ → ≤ ≥ © ™ — “quotes” ‘single’ …",
  "    indented line\n\ttabbed line\n\n\nthree newlines above; trailing spaces   ",
];

const DEFAULTS = { vocabSize: 512, layers: 2, dim: 64, heads: 4, kvHeads: 2, ffn: 128, contextLength: 256 };

/** Deterministic weights: N(0, std) for matrices (default 0.02), N(1, std) for norm weights. */
export function tinyWeights(config: LlamaConfig, seed: number, std = 0.02): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const out = new Map<string, Float32Array>();
  for (const t of llamaTensorShapes(config)) {
    const n = t.dims.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (t.isNorm ? 1 : 0) + rng.normal() * std;
    out.set(t.name, a);
  }
  return out;
}

/** Write the tiny model to `path` and return its configuration and vocabulary. */
export function writeTinyLlamaGguf(path: string, opts: TinyLlamaOptions = {}): TinyLlamaResult {
  const o = { ...DEFAULTS, ...opts };
  const vocab =
    opts.vocab ?? trainBpe(opts.corpus ?? TINY_CORPUS, { vocabSize: o.vocabSize, pre: "qwen2", minFrequency: 1 });
  const config: LlamaConfig = {
    vocabSize: vocab.tokens.length, // a small corpus may run out of merges before vocabSize
    layers: o.layers,
    dim: o.dim,
    heads: o.heads,
    kvHeads: o.kvHeads,
    ffn: o.ffn,
    contextLength: o.contextLength,
    ropeTheta: 10000,
    normEps: 1e-5,
    tiedEmbeddings: opts.tiedEmbeddings ?? false,
  };
  const weights = tinyWeights(config, opts.seed ?? 42, opts.std);
  const bytes = writeLlamaGguf(path, config, vocab, (n) => weights.get(n) as Float32Array, {
    name: opts.name ?? "dajian-tiny",
    type: opts.type ?? "F32",
    pooling: opts.embedding ? "mean" : undefined,
  });
  return { path, bytes, config, vocab };
}
