import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getLlama, LlamaChatSession, type Llama } from "node-llama-cpp";
// threads: 1 everywhere: the model is tiny, and on a shared 2-core machine llama.cpp's spinning worker threads
// turn a 50 ms generation into seconds.
import { GgufReader, metaNumber, metaString } from "../gguf/index.js";
import { BpeTokenizer, readVocab } from "../tokenizer/index.js";
import { writeTinyLlamaGguf } from "./tiny-model.js";

let dir: string;
let llama: Llama;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dajian-tiny-"));
  llama = await getLlama({ gpu: false });
});
afterAll(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe("writeTinyLlamaGguf", () => {
  it("is deterministic for a seed and different across seeds", () => {
    const a = writeTinyLlamaGguf(join(dir, "a.gguf"), { seed: 7 });
    const b = writeTinyLlamaGguf(join(dir, "b.gguf"), { seed: 7 });
    const c = writeTinyLlamaGguf(join(dir, "c.gguf"), { seed: 8 });
    const ra = GgufReader.open(a.path);
    const rb = GgufReader.open(b.path);
    const rc = GgufReader.open(c.path);
    try {
      const wa = ra.tensorF32("blk.0.attn_q.weight");
      expect(Array.from(rb.tensorF32("blk.0.attn_q.weight"))).toEqual(Array.from(wa));
      expect(Array.from(rc.tensorF32("blk.0.attn_q.weight"))).not.toEqual(Array.from(wa));
      expect(metaString(ra, "general.architecture")).toBe("llama");
      expect(metaNumber(ra, "llama.attention.head_count_kv")).toBe(2);
      expect(ra.tensor("blk.0.attn_k.weight").dims).toEqual([64, 32]);
    } finally {
      ra.close();
      rb.close();
      rc.close();
    }
  });

  it("loads in llama.cpp, tokenizes like dajian, chats with ChatML and generates", async () => {
    const t = writeTinyLlamaGguf(join(dir, "chat.gguf"), { seed: 1 });
    const model = await llama.loadModel({ modelPath: t.path });
    try {
      expect(model.fileInfo.metadata.general.architecture).toBe("llama");
      const ours = new BpeTokenizer(t.vocab);
      for (const text of ["Hello 世界 123", "the quick brown fox", "def f(x):\n    return x\n", "知识库 😀!"]) {
        expect(Array.from(model.tokenize(text))).toEqual(ours.encode(text));
        expect(model.detokenize(model.tokenize(text))).toBe(text);
      }
      // ChatML control tokens are single tokens for llama.cpp.
      const imStart = model.tokenize("<|im_start|>", true);
      expect(imStart).toHaveLength(1);
      expect(imStart[0]).toBe(t.vocab.tokens.indexOf("<|im_start|>"));
      const ctx = await model.createContext({ contextSize: 256, threads: 1 });
      try {
        const session = new LlamaChatSession({ contextSequence: ctx.getSequence() });
        expect(session.chatWrapper.wrapperName).toBe("ChatML");
        let generated = 0;
        await session.prompt("Hi there", {
          maxTokens: 6,
          onToken: (toks) => {
            generated += toks.length;
          },
        });
        expect(generated).toBeGreaterThan(0);
      } finally {
        await ctx.dispose();
      }
    } finally {
      await model.dispose();
    }
  });

  it("gives embeddings from the pooled variant, and Q8_0/Q4_0/F16 files load", async () => {
    const t = writeTinyLlamaGguf(join(dir, "emb.gguf"), { seed: 3, embedding: true });
    const model = await llama.loadModel({ modelPath: t.path });
    try {
      const ec = await model.createEmbeddingContext({ contextSize: 128, threads: 1 });
      const a = await ec.getEmbeddingFor("hello world");
      const b = await ec.getEmbeddingFor("你好，世界");
      expect(a.vector).toHaveLength(t.config.dim);
      expect(a.vector.every((x) => Number.isFinite(x))).toBe(true);
      expect(Array.from(a.vector)).not.toEqual(Array.from(b.vector));
      await ec.dispose();
    } finally {
      await model.dispose();
    }
    for (const type of ["F16", "Q8_0", "Q4_0"] as const) {
      const q = writeTinyLlamaGguf(join(dir, `q-${type}.gguf`), { seed: 3, type });
      expect(q.bytes).toBeLessThan(t.bytes);
      const m = await llama.loadModel({ modelPath: q.path });
      try {
        const r = GgufReader.open(q.path);
        const vocab = readVocab(r);
        r.close();
        expect(m.tokenize("hello")).toEqual(new BpeTokenizer(vocab).encode("hello"));
        const ctx = await m.createContext({ contextSize: 64, threads: 1 });
        const seq = ctx.getSequence();
        const out: number[] = [];
        for await (const tok of seq.evaluate(m.tokenize("hello world"), { temperature: 0 })) {
          out.push(tok);
          if (out.length >= 3) break;
        }
        expect(out).toHaveLength(3);
        await ctx.dispose();
      } finally {
        await m.dispose();
      }
    }
  });
});
