import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isDajianError } from "../core/errors.js";
import { readLoraAdapterGguf, writeLoraAdapterGguf, type LoraTensorPair } from "./adapter.js";
import { GgufReader, metaNumber, metaString } from "./reader.js";
import { GgmlType } from "./types.js";
import { GgufWriter } from "./writer.js";

const dir = mkdtempSync(join(tmpdir(), "dajian-adapter-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function pair(name: string, rank: number, inDim: number, outDim: number, seed: number): LoraTensorPair {
  const v = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 7 + i * k) * 0.5);
  return { name, rank, inDim, outDim, a: v(rank * inDim, 0.37), b: v(outDim * rank, 0.91) };
}

describe("LoRA adapter GGUF", () => {
  it("writes llama.cpp's layout (A [in, r], B [r, out], alpha, types) and reads it back exactly", () => {
    const tensors = [pair("blk.0.attn_q.weight", 4, 64, 64, 1), pair("blk.1.ffn_down.weight", 4, 128, 64, 2)];
    const path = join(dir, "a.gguf");
    writeLoraAdapterGguf(path, { architecture: "qwen2", alpha: 8, tensors, name: "t" });
    const r = GgufReader.open(path);
    try {
      expect(metaString(r, "general.type")).toBe("adapter");
      expect(metaString(r, "adapter.type")).toBe("lora");
      expect(metaString(r, "general.architecture")).toBe("qwen2");
      expect(metaNumber(r, "adapter.lora.alpha")).toBe(8);
      expect(r.tensor("blk.1.ffn_down.weight.lora_a").dims).toEqual([128, 4]);
      expect(r.tensor("blk.1.ffn_down.weight.lora_b").dims).toEqual([4, 64]);
    } finally {
      r.close();
    }
    const back = readLoraAdapterGguf(path);
    expect(back.alpha).toBe(8);
    expect(back.name).toBe("t");
    expect(back.tensors.map((t) => [t.name, t.rank, t.inDim, t.outDim])).toEqual(
      tensors.map((t) => [t.name, t.rank, t.inDim, t.outDim]),
    );
    expect([...back.tensors[1].a]).toEqual([...tensors[1].a]);
    expect([...back.tensors[1].b]).toEqual([...tensors[1].b]);
  });

  it("stores F16 on request (half the bytes, values within half precision)", () => {
    const t = pair("blk.0.attn_v.weight", 8, 64, 32, 3);
    const p32 = join(dir, "f32.gguf");
    const p16 = join(dir, "f16.gguf");
    writeLoraAdapterGguf(p32, { architecture: "llama", alpha: 16, tensors: [t] });
    writeLoraAdapterGguf(p16, { architecture: "llama", alpha: 16, tensors: [t] }, { type: GgmlType.F16 });
    const r = GgufReader.open(p16);
    expect(r.tensor("blk.0.attn_v.weight.lora_a").type).toBe(GgmlType.F16);
    r.close();
    const back = readLoraAdapterGguf(p16).tensors[0];
    back.a.forEach((x, i) => expect(Math.abs(x - t.a[i])).toBeLessThan(1e-3));
  });

  it("rejects wrong shapes, token embeddings and empty adapters with one-line errors", () => {
    const t = pair("blk.0.attn_q.weight", 4, 64, 64, 1);
    const cases = [
      { architecture: "llama", alpha: 4, tensors: [{ ...t, rank: 5 }] },
      { architecture: "llama", alpha: 4, tensors: [{ ...t, name: "token_embd.weight" }] },
      { architecture: "llama", alpha: 4, tensors: [] },
      { architecture: "", alpha: 4, tensors: [t] },
      { architecture: "llama", alpha: -1, tensors: [t] },
    ];
    for (const c of cases) {
      const err = (() => {
        try {
          writeLoraAdapterGguf(join(dir, "bad.gguf"), c);
        } catch (e) {
          return e;
        }
      })();
      expect(isDajianError(err, "invalid_input"), String(err)).toBe(true);
      expect((err as Error).message).not.toContain("\n");
    }
  });

  it("refuses files that are not complete LoRA adapters", () => {
    const base = new GgufWriter().str("general.architecture", "llama").str("general.type", "model");
    base.addTensor("x.weight", [4], new Float32Array(4));
    base.write(join(dir, "model.gguf"));
    const half = new GgufWriter()
      .str("general.architecture", "llama")
      .str("general.type", "adapter")
      .str("adapter.type", "lora");
    half.addTensor("blk.0.attn_q.weight.lora_a", [64, 4], new Float32Array(256));
    half.write(join(dir, "half.gguf"));
    const skew = new GgufWriter()
      .str("general.architecture", "llama")
      .str("general.type", "adapter")
      .str("adapter.type", "lora");
    skew.addTensor("blk.0.attn_q.weight.lora_a", [64, 4], new Float32Array(256));
    skew.addTensor("blk.0.attn_q.weight.lora_b", [2, 64], new Float32Array(128));
    skew.write(join(dir, "skew.gguf"));
    writeFileSync(join(dir, "junk.gguf"), "not a gguf at all, definitely");
    for (const [f, re] of [
      ["model.gguf", /general.type/],
      ["half.gguf", /lacks its lora_b/],
      ["skew.gguf", /rank of A \(4\) differs from B \(2\)/],
      ["junk.gguf", /not a valid GGUF/],
    ] as const) {
      const err = (() => {
        try {
          readLoraAdapterGguf(join(dir, f));
        } catch (e) {
          return e as Error;
        }
      })();
      expect(isDajianError(err, "corrupt"), `${f}: ${String(err)}`).toBe(true);
      expect(err!.message).toMatch(re);
    }
  });
});
