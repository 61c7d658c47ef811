// Quantize a dajian-written F16 model with llama.cpp's own quantizer, load the results in llama.cpp
// (node-llama-cpp) and compare perplexity; also the speed report and the failure paths.
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isDajianError } from "../core/errors.js";
import { GgmlType, readGgufHeader } from "../gguf/index.js";
import { TINY_CORPUS, writeTinyLlamaGguf } from "../train/tiny-model.js";
import { benchModel } from "./bench-model.js";
import { perplexity } from "./perplexity.js";
import { findLlamaLibrary, parseQuantType, quantizeModel } from "./quantize.js";

const dir = mkdtempSync(join(tmpdir(), "dajian-quant-"));
const f16 = join(dir, "tiny-f16.gguf");
const text = TINY_CORPUS.join("\n");
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(() => {
  writeTinyLlamaGguf(f16, { type: "F16", dim: 256, layers: 2, heads: 4, kvHeads: 2, ffn: 512, contextLength: 256 });
});

describe("quantize", () => {
  it("finds node-llama-cpp's libllama", () => {
    expect(findLlamaLibrary()).toMatch(/llama[^/]*\.(so|dylib|dll)$/);
  });

  it("Q8_0 and Q4_K_M outputs are smaller, typed as asked, load in llama.cpp, and keep perplexity close", async () => {
    const events: number[] = [];
    const q8 = await quantizeModel(f16, join(dir, "q8.gguf"), {
      type: "Q8_0",
      threads: 2,
      onProgress: (e) => events.push(e.done),
    });
    const q4 = await quantizeModel(f16, join(dir, "q4km.gguf"), { type: "Q4_K_M", threads: 2 });
    expect(q8.sizeAfter).toBeLessThan(q8.sizeBefore * 0.6);
    expect(q4.sizeAfter).toBeLessThan(q8.sizeAfter);
    expect(Math.max(...events)).toBe(q8.tensors); // per-tensor progress reached the end
    const types = (p: string) =>
      new Set(
        readGgufHeader(p)
          .tensors.filter((t) => t.dims.length === 2)
          .map((t) => t.type),
      );
    expect(types(q8.output).has(GgmlType.Q8_0)).toBe(true);
    expect(types(q4.output).has(GgmlType.Q4_K)).toBe(true);
    expect(readdirSync(dir).some((n) => n.includes(".tmp-"))).toBe(false);

    const base = await perplexity(f16, text, { contextSize: 128, threads: 2, maxTokens: 300 });
    const p8 = await perplexity(q8.output, text, { contextSize: 128, threads: 2, maxTokens: 300 });
    const p4 = await perplexity(q4.output, text, { contextSize: 128, threads: 2, maxTokens: 300 });
    expect(base.tokensScored).toBeGreaterThan(100);
    expect(p8.tokensScored).toBe(base.tokensScored);
    // A random model predicts close to uniformly: perplexity near the vocabulary size, not 1 and not infinite.
    expect(base.perplexity).toBeGreaterThan(50);
    expect(base.perplexity).toBeLessThan(5000);
    expect(Math.abs(p8.perplexity / base.perplexity - 1)).toBeLessThan(0.01);
    expect(Math.abs(p4.perplexity / base.perplexity - 1)).toBeLessThan(0.05);
  }, 240_000);

  it("reports speed and memory like llama-bench", async () => {
    const r = await benchModel(f16, { promptTokens: 32, genTokens: 8, repetitions: 1, threads: 2 });
    expect(r.pp.tokens).toBe(32);
    expect(r.tg.tokens).toBe(8);
    expect(r.pp.mean).toBeGreaterThan(0);
    expect(r.tg.mean).toBeGreaterThan(0);
    expect(r.peakRssBytes).toBeGreaterThan(r.fileBytes);
    expect(r.arch).toBe("llama");
  }, 120_000);

  it("fails cleanly: unknown type, same path, missing input, existing output, non-model file", async () => {
    expect(() => parseQuantType("Q9_9")).toThrow(/unknown quantization/);
    const errs: unknown[] = [];
    for (const [i, o] of [
      [f16, f16],
      [join(dir, "missing.gguf"), join(dir, "x.gguf")],
      [f16, f16 + ".exists"],
    ]) {
      if (o.endsWith(".exists")) writeFileSync(o, "x");
      await quantizeModel(i, o, { type: "Q8_0" }).catch((e) => errs.push(e));
    }
    const junk = join(dir, "junk.gguf");
    writeFileSync(junk, Buffer.from("GGUF not really a model file at all"));
    await quantizeModel(junk, join(dir, "junk-q8.gguf"), { type: "Q8_0" }).catch((e) => errs.push(e));
    expect(errs).toHaveLength(4);
    for (const e of errs) expect(isDajianError(e)).toBe(true);
    expect(existsSync(join(dir, "junk-q8.gguf"))).toBe(false);
  });
});
