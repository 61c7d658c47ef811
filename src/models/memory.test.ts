// The estimate against reality: peak RSS of a child process that loads a dajian-written model through
// node-llama-cpp, evaluates a full prompt batch and generates. Two sizes here (fast); the full table is
// `npm run bench:memory`.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readGgufHeader } from "../gguf/index.js";
import { writeTinyLlamaGguf } from "../train/tiny-model.js";
import { measurePeakRss } from "./memory-measure.js";
import {
  estimateGgufFile,
  estimateMemory,
  shapeFromGguf,
  weightBytesFromGguf,
  weightBytesFromParams,
} from "./memory.js";

const dir = mkdtempSync(join(tmpdir(), "dajian-mem-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("memory estimate", () => {
  it("reads the shape and exact weight bytes from a GGUF", () => {
    const f = join(dir, "shape.gguf");
    const r = writeTinyLlamaGguf(f, {
      dim: 128,
      layers: 3,
      heads: 4,
      kvHeads: 2,
      ffn: 256,
      type: "Q8_0",
      contextLength: 1024,
    });
    const h = readGgufHeader(f);
    const s = shapeFromGguf(h);
    expect(s).toMatchObject({
      arch: "llama",
      layers: 3,
      heads: 4,
      kvHeads: 2,
      headDim: 32,
      embedding: 128,
      ffn: 256,
      contextLength: 1024,
    });
    expect(s.vocab).toBe(r.config.vocabSize);
    expect(weightBytesFromGguf(h)).toBe(h.tensors.reduce((a, t) => a + t.size, 0));
  });

  it("scales the KV cache with context, layers and kv heads (F16 K+V)", () => {
    const shape = {
      arch: "llama",
      layers: 32,
      heads: 32,
      kvHeads: 8,
      headDim: 128,
      embedding: 4096,
      ffn: 14336,
      vocab: 128256,
      contextLength: 131072,
    };
    const a = estimateMemory(shape, 4.9e9, { contextSize: 4096 });
    expect(a.kvCache).toBe(32 * 4096 * 8 * 128 * 2 * 2); // 512 MiB, as llama.cpp reports for Llama-3-8B at 4k
    const b = estimateMemory(shape, 4.9e9, { contextSize: 8192 });
    expect(b.kvCache).toBe(2 * a.kvCache);
    expect(estimateMemory(shape, 4.9e9, { contextSize: 4096, kvType: "Q8_0" }).kvCache).toBeLessThan(a.kvCache);
    expect(estimateMemory({ ...shape, encoder: true }, 1e9, { contextSize: 512, embeddingOnly: true }).kvCache).toBe(0);
    // Half the layers on the GPU moves about half of weights + KV there.
    const g = estimateMemory(shape, 4.9e9, { contextSize: 4096, gpuLayers: 16 });
    expect(g.vram / (g.weights + g.kvCache + g.compute)).toBeCloseTo(0.5, 5);
    expect(weightBytesFromParams(8.03e9, "Q4_K_M") / 1e9).toBeCloseTo(4.9, 1); // bartowski's file is 4.92 GB
  });

  it("is within 15 % of the measured peak RSS for two model sizes", async () => {
    const cases = [
      {
        tag: "small-f32",
        opts: { dim: 256, layers: 4, heads: 4, kvHeads: 2, ffn: 768, type: "F32" as const },
        ctx: 512,
      },
      {
        tag: "mid-q8",
        opts: { dim: 512, layers: 8, heads: 8, kvHeads: 4, ffn: 1536, type: "Q8_0" as const },
        ctx: 1024,
      },
    ];
    for (const c of cases) {
      const f = join(dir, `${c.tag}.gguf`);
      writeTinyLlamaGguf(f, { ...c.opts, contextLength: 2048, vocabSize: 1024 });
      const est = estimateGgufFile(f, { contextSize: c.ctx });
      const m = await measurePeakRss(f, { contextSize: c.ctx, threads: 2 });
      const err = est.total / m.peakRss - 1;
      expect(Math.abs(err), `${c.tag}: estimated ${est.total}, measured ${m.peakRss}`).toBeLessThan(0.15);
      // the model's own part too, not only the runtime baseline
      const modelPart = m.peakRss - m.baselineRss;
      expect(modelPart).toBeGreaterThan(est.weights * 0.8);
    }
  }, 180_000);
});
