// PEFT LoRA → GGUF adapter, judged by llama.cpp: base + adapter must give the distributions of the model whose
// weights were merged in Hugging Face layout (W + alpha/r · B·A), for llama (permuted q/k) and qwen2 (rsLoRA).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isDajianError } from "../core/errors.js";
import { readLoraAdapterGguf } from "../gguf/adapter.js";
import { trainBpe } from "../tokenizer/index.js";
import { TINY_CORPUS } from "../train/tiny-model.js";
import { Rng } from "../train/rng.js";
import { convertHfCheckpoint } from "./convert-hf.js";
import { type HfArchitecture } from "./hf-model.js";
import { llamaCppProbs, maxAbsDiff, randomHfWeights, smallConfig, writeHfCheckpoint } from "./fixtures.test-helper.js";
import { convertPeftLora } from "./lora.js";
import { writeSafetensors } from "./safetensors.js";

let dir: string;
let llama: Llama;
const vocab = trainBpe(TINY_CORPUS, { vocabSize: 400, pre: "qwen2", minFrequency: 1 });
const config = smallConfig(vocab.tokens.length);
const TEXT = "The fox 知识库 answers 42 times.";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dajian-lora-"));
  llama = await getLlama({ gpu: false });
});
afterAll(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const MODULES: Array<[string, string, number, number]> = [
  // [module, leaf, in, out]
  ["self_attn", "q_proj", 64, 64],
  ["self_attn", "k_proj", 64, 32],
  ["self_attn", "v_proj", 64, 32],
  ["self_attn", "o_proj", 64, 64],
  ["mlp", "down_proj", 96, 64],
];

/** A PEFT adapter folder with random A/B, and the same adapter merged into the HF weights. */
function peftAdapter(
  out: string,
  base: Map<string, Float32Array>,
  opts: { r: number; alpha: number; rslora?: boolean; seed: number; extraConfig?: object },
): Map<string, Float32Array> {
  mkdirSync(out, { recursive: true });
  const rng = new Rng(opts.seed);
  const merged = new Map(base);
  const scale = opts.rslora ? opts.alpha / Math.sqrt(opts.r) : opts.alpha / opts.r;
  const tensors = [];
  for (let l = 0; l < config.layers; l++)
    for (const [group, leaf, inD, outD] of MODULES) {
      const a = Float32Array.from({ length: opts.r * inD }, () => rng.normal() * 0.3);
      const b = Float32Array.from({ length: outD * opts.r }, () => rng.normal() * 0.3);
      const key = `model.layers.${l}.${group}.${leaf}`;
      const w = Float32Array.from(base.get(`${key}.weight`)!);
      for (let o = 0; o < outD; o++)
        for (let i = 0; i < inD; i++) {
          let s = 0;
          for (let k = 0; k < opts.r; k++) s += b[o * opts.r + k] * a[k * inD + i];
          w[o * inD + i] += scale * s;
        }
      merged.set(`${key}.weight`, w);
      const bytes = (v: Float32Array) => () => new Uint8Array(v.buffer);
      tensors.push(
        { name: `base_model.model.${key}.lora_A.weight`, dtype: "F32" as const, shape: [opts.r, inD], data: bytes(a) },
        { name: `base_model.model.${key}.lora_B.weight`, dtype: "F32" as const, shape: [outD, opts.r], data: bytes(b) },
      );
    }
  writeSafetensors(join(out, "adapter_model.safetensors"), tensors);
  writeFileSync(
    join(out, "adapter_config.json"),
    JSON.stringify({
      peft_type: "LORA",
      r: opts.r,
      lora_alpha: opts.alpha,
      use_rslora: opts.rslora ?? false,
      target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
      ...opts.extraConfig,
    }),
  );
  return merged;
}

describe("PEFT LoRA → GGUF adapter", () => {
  for (const [arch, rslora] of [
    ["LlamaForCausalLM", false],
    ["Qwen2ForCausalLM", true],
  ] as Array<[HfArchitecture, boolean]>) {
    it(`${arch}${rslora ? " (rsLoRA)" : ""}: base + adapter in llama.cpp equals the merged model`, async () => {
      const w = randomHfWeights(config, arch === "Qwen2ForCausalLM", 31, 0.15);
      const hfBase = join(dir, `${arch}-base`);
      writeHfCheckpoint(hfBase, arch, config, w, vocab);
      const baseGguf = join(dir, `${arch}-base.gguf`);
      convertHfCheckpoint(hfBase, baseGguf, { type: "F32" });
      const peft = join(dir, `${arch}-peft`);
      const merged = peftAdapter(peft, w, { r: 4, alpha: 8, rslora, seed: 7 });
      const hfMerged = join(dir, `${arch}-merged`);
      writeHfCheckpoint(hfMerged, arch, config, merged, vocab);
      const mergedGguf = join(dir, `${arch}-merged.gguf`);
      convertHfCheckpoint(hfMerged, mergedGguf, { type: "F32" });

      const adapter = join(dir, `${arch}-adapter.gguf`);
      const r = convertPeftLora(peft, adapter, { base: baseGguf });
      expect(r).toMatchObject({ rank: 4, tensors: config.layers * MODULES.length * 2 });
      expect(r.alpha).toBeCloseTo(rslora ? 8 * 2 : 8, 5);
      const back = readLoraAdapterGguf(adapter);
      expect(back.architecture).toBe(arch === "Qwen2ForCausalLM" ? "qwen2" : "llama");
      expect(back.tensors.find((t) => t.name === "blk.1.attn_k.weight")).toMatchObject({
        rank: 4,
        inDim: 64,
        outDim: 32,
      });

      const base = await llamaCppProbs(llama, baseGguf, TEXT);
      const tuned = await llamaCppProbs(llama, baseGguf, TEXT, [adapter]);
      const want = await llamaCppProbs(llama, mergedGguf, TEXT);
      expect(tuned.ids).toEqual(base.ids);
      expect(maxAbsDiff(base.probs, want.probs)).toBeGreaterThan(0.05); // the adapter matters…
      expect(maxAbsDiff(tuned.probs, want.probs)).toBeLessThan(1e-4); // …and is applied exactly as merged

      // The HF base folder works as --base too and gives the same adapter.
      const viaHf = join(dir, `${arch}-adapter-hf.gguf`);
      convertPeftLora(peft, viaHf, { base: hfBase });
      expect(readLoraAdapterGguf(viaHf).tensors.map((t) => [...t.b.subarray(0, 8)])).toEqual(
        back.tensors.map((t) => [...t.b.subarray(0, 8)]),
      );
    });
  }

  it("refuses adapters that do not fit or cannot be represented, with one-line errors", () => {
    const w = randomHfWeights(config, false, 3);
    const hfBase = join(dir, "err-base");
    writeHfCheckpoint(hfBase, "LlamaForCausalLM", config, w, vocab);
    const small = join(dir, "err-small-base");
    writeHfCheckpoint(
      small,
      "LlamaForCausalLM",
      { ...config, ffn: 64 },
      randomHfWeights({ ...config, ffn: 64 }, false, 3),
      vocab,
    );
    const cases: Array<[string, () => void, string, RegExp]> = [];
    const mk = (name: string, extra: object) => {
      const p = join(dir, `err-${name}`);
      peftAdapter(p, w, { r: 2, alpha: 4, seed: 1, extraConfig: extra });
      return p;
    };
    const ok = mk("ok", {});
    cases.push([
      "wrong base",
      () => convertPeftLora(ok, join(dir, "e1.gguf"), { base: small }),
      "invalid_input",
      /do not fit the base/,
    ]);
    cases.push([
      "no base",
      () => convertPeftLora(ok, join(dir, "e2.gguf"), { base: join(dir, "nope") }),
      "not_found",
      /not found/,
    ]);
    const dora = mk("dora", { use_dora: true });
    cases.push(["dora", () => convertPeftLora(dora, join(dir, "e3.gguf"), { base: hfBase }), "unsupported", /DoRA/]);
    const emb = mk("emb", {});
    writeSafetensors(join(emb, "adapter_model.safetensors"), [
      {
        name: "base_model.model.model.embed_tokens.lora_A.weight",
        dtype: "F32",
        shape: [2, 4],
        data: () => new Uint8Array(32),
      },
      {
        name: "base_model.model.model.embed_tokens.lora_B.weight",
        dtype: "F32",
        shape: [4, 2],
        data: () => new Uint8Array(32),
      },
    ]);
    cases.push([
      "embeddings",
      () => convertPeftLora(emb, join(dir, "e4.gguf"), { base: hfBase }),
      "unsupported",
      /embed_tokens/,
    ]);
    const bin = join(dir, "err-bin");
    mkdirSync(bin);
    writeFileSync(join(bin, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: 2, lora_alpha: 4 }));
    writeFileSync(join(bin, "adapter_model.bin"), "pickle");
    cases.push([
      "bin",
      () => convertPeftLora(bin, join(dir, "e5.gguf"), { base: hfBase }),
      "unsupported",
      /adapter_model.bin \(pickle\)/,
    ]);
    cases.push([
      "model as adapter",
      () => convertHfCheckpoint(ok, join(dir, "e6.gguf")),
      "invalid_input",
      /LoRA adapter/,
    ]);
    for (const [name, fn, code, re] of cases) {
      let err: unknown;
      try {
        fn();
      } catch (e) {
        err = e;
      }
      expect(isDajianError(err, code as never), `${name}: ${String(err)}`).toBe(true);
      expect((err as Error).message, name).toMatch(re);
    }
  });
});
