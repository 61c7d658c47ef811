import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getLlama, type Llama, type ControlledEvaluateInputItem } from "node-llama-cpp";
import { Engine } from "../engine/index.js";
import { llamaLogits } from "./llama-model.js";
import { writeTinyLlamaGguf } from "./tiny-model.js";

let dir: string;
let llama: Llama;
const engine = new Engine({ threads: 1 });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dajian-fwd-"));
  llama = await getLlama({ gpu: false });
});
afterAll(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** llama.cpp's next-token distribution at every position (F32 KV cache, no flash attention: exact arithmetic). */
async function llamaCppProbs(
  path: string,
  text: string,
): Promise<{ ids: number[]; probs: Array<Map<number, number>> }> {
  const model = await llama.loadModel({ modelPath: path });
  try {
    const ids = Array.from(model.tokenize(text));
    const ctx = await model.createContext({
      contextSize: 64,
      threads: 1,
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
    });
    try {
      const input: ControlledEvaluateInputItem[] = ids.map((id) => [id, { generateNext: { probabilities: true } }]);
      const res = await ctx.getSequence().controlledEvaluate(input);
      return { ids, probs: res.map((r) => r?.next.probabilities ?? new Map<number, number>()) };
    } finally {
      await ctx.dispose();
    }
  } finally {
    await model.dispose();
  }
}

function softmax(l: Float32Array): number[] {
  const m = Math.max(...l);
  const e = Array.from(l, (x) => Math.exp(x - m));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
}

function compare(ours: Float32Array[], theirs: Array<Map<number, number>>): { maxErr: number; argmaxAgree: number } {
  let maxErr = 0;
  let agree = 0;
  ours.forEach((logits, p) => {
    const q = softmax(logits);
    const ref = theirs[p];
    expect(ref.size).toBe(q.length);
    for (const [tok, pr] of ref) maxErr = Math.max(maxErr, Math.abs(q[tok] - pr));
    const top = [...ref.entries()][0][0];
    if (q.indexOf(Math.max(...q)) === top) agree++;
  });
  return { maxErr, argmaxAgree: agree / ours.length };
}

describe("llama forward pass on ggml vs llama.cpp", () => {
  const text = "The quick brown fox 你好，世界 123 def f(x):";

  it("gives the same next-token distribution as llama.cpp on an F32 model (GQA, RoPE, SwiGLU)", async () => {
    const t = writeTinyLlamaGguf(join(dir, "f32.gguf"), { seed: 11, std: 0.3 });
    const ref = await llamaCppProbs(t.path, text);
    expect(ref.ids.length).toBeGreaterThan(8);
    const { maxErr, argmaxAgree } = compare(llamaLogits(engine, t.path, ref.ids), ref.probs);
    expect(maxErr).toBeLessThan(1e-4);
    expect(argmaxAgree).toBe(1);
  });

  it("agrees closely on a tied-embedding Q8_0 model (llama.cpp quantizes activations, so looser)", async () => {
    const t = writeTinyLlamaGguf(join(dir, "q8.gguf"), { seed: 12, std: 0.1, type: "Q8_0", tiedEmbeddings: true });
    const ref = await llamaCppProbs(t.path, text);
    const { maxErr, argmaxAgree } = compare(llamaLogits(engine, t.path, ref.ids), ref.probs);
    expect(maxErr).toBeLessThan(5e-3);
    expect(argmaxAgree).toBeGreaterThanOrEqual(0.9);
  });
});
