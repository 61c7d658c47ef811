// Round trips through Hugging Face format with llama.cpp as the judge: dajian GGUF → export hf → convert → same
// token ids and next-token distributions; Qwen2 (biases) and Mistral checkpoints against an independent reference
// forward pass with Hugging Face semantics; sharded and BF16 checkpoints.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, type Llama } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isDajianError } from "../core/errors.js";
import { GgmlType, GgufReader, metaString } from "../gguf/index.js";
import { BpeTokenizer } from "../tokenizer/index.js";
import { writeTinyLlamaGguf, type TinyLlamaResult } from "../train/tiny-model.js";
import { convertHfCheckpoint } from "./convert-hf.js";
import { exportHfCheckpoint } from "./export-hf.js";
import {
  LLAMA3_ROPE_SCALING,
  llamaCppProbs,
  maxAbsDiff,
  randomHfWeights,
  referenceProbs,
  writeHfCheckpoint,
} from "./fixtures.test-helper.js";
import { llama3RopeFactors } from "./hf-model.js";
import { SafetensorsSet } from "./safetensors.js";

const TEXTS = ["The quick brown fox 你好，世界 123 def f(x):", "知识库助手 answers with citations: 北京 2024!"];
let dir: string;
let llama: Llama;
let tiny: TinyLlamaResult;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dajian-convert-"));
  llama = await getLlama({ gpu: false });
  tiny = writeTinyLlamaGguf(join(dir, "tiny.gguf"), { seed: 21, std: 0.3, contextLength: 128 });
});
afterAll(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** Map of HF tensor name → values, read back from an exported folder. */
function readHf(folder: string): Map<string, Float32Array> {
  const st = SafetensorsSet.openDir(folder);
  try {
    return new Map(st.names().map((n) => [n, st.f32(n)] as const));
  } finally {
    st.close();
  }
}

describe("dajian GGUF → Hugging Face → GGUF", () => {
  it("exports an HF folder whose weights, read with HF semantics, give llama.cpp's distributions", async () => {
    const hf = join(dir, "hf");
    const r = exportHfCheckpoint(tiny.path, hf);
    expect(r.hfArchitecture).toBe("LlamaForCausalLM");
    expect(r.dtype).toBe("F32");
    for (const f of [
      "config.json",
      "model.safetensors",
      "tokenizer.json",
      "tokenizer_config.json",
      "generation_config.json",
    ])
      expect(existsSync(join(hf, f)), f).toBe(true);
    const cfg = JSON.parse(readFileSync(join(hf, "config.json"), "utf8"));
    expect(cfg).toMatchObject({ architectures: ["LlamaForCausalLM"], num_key_value_heads: 2, hidden_size: 64 });
    const tc = JSON.parse(readFileSync(join(hf, "tokenizer_config.json"), "utf8"));
    expect(tc.chat_template).toContain("<|im_start|>");

    const w = readHf(hf);
    // q_proj is stored un-permuted: not byte-equal to the GGUF's attn_q (which llama.cpp permutes for its RoPE).
    const g = GgufReader.open(tiny.path);
    const ggufQ = g.tensorF32("blk.0.attn_q.weight");
    g.close();
    expect([...w.get("model.layers.0.self_attn.q_proj.weight")!]).not.toEqual([...ggufQ]);
    for (const text of TEXTS) {
      const ref = await llamaCppProbs(llama, tiny.path, text);
      const ours = referenceProbs(tiny.config, w, ref.ids, false);
      expect(maxAbsDiff(ours, ref.probs)).toBeLessThan(1e-4);
    }
  });

  it("converts the folder back to a GGUF with identical tensors, token ids and distributions", async () => {
    const hf = join(dir, "hf");
    const out = join(dir, "back.gguf");
    const r = convertHfCheckpoint(hf, out, { type: "F32", name: "back" });
    expect(r).toMatchObject({
      architecture: "llama",
      hfArchitecture: "LlamaForCausalLM",
      pre: "qwen2",
      hasChatTemplate: true,
    });
    const a = GgufReader.open(tiny.path);
    const b = GgufReader.open(out);
    try {
      expect(b.tensors.map((t) => t.name).sort()).toEqual(a.tensors.map((t) => t.name).sort());
      for (const t of a.tensors) expect(Buffer.compare(b.tensorBytes(t.name), a.tensorBytes(t)), t.name).toBe(0);
      expect(metaString(b, "tokenizer.chat_template")).toBe(metaString(a, "tokenizer.chat_template"));
    } finally {
      a.close();
      b.close();
    }
    const tok = new BpeTokenizer(tiny.vocab);
    for (const text of TEXTS) {
      const x = await llamaCppProbs(llama, tiny.path, text);
      const y = await llamaCppProbs(llama, out, text);
      expect(y.ids).toEqual(x.ids);
      expect(y.ids).toEqual(tok.encode(text));
      expect(maxAbsDiff(y.probs, x.probs)).toBeLessThan(1e-6);
    }
  });

  it("reads sharded and BF16 checkpoints; F16 and Q8_0 outputs stay close", async () => {
    const sharded = join(dir, "hf-sharded");
    const e = exportHfCheckpoint(tiny.path, sharded, { maxShardBytes: 120_000, dtype: "BF16" });
    const shards = e.files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    expect(shards.length).toBeGreaterThan(2);
    expect(e.files).toContain("model.safetensors.index.json");
    // BF16 → F16 is exact for these magnitudes, so llama.cpp on the F16 file must match the reference on the BF16
    // weights themselves; Q8_0 adds its own rounding.
    const bf16 = readHf(sharded);
    const ids = new BpeTokenizer(tiny.vocab).encode(TEXTS[0]);
    const ref = referenceProbs(tiny.config, bf16, ids, false);
    // Q8_0 (weights and, in llama.cpp, activations quantized) on this deliberately peaky random model: mostly the same top token.
    for (const [type, tol] of [
      ["F16", 5e-3],
      ["Q8_0", 0.2],
    ] as const) {
      const out = join(dir, `bf16-${type}.gguf`);
      convertHfCheckpoint(sharded, out, { type });
      const r = GgufReader.open(out);
      expect(r.tensor("blk.0.ffn_up.weight").type).toBe(type === "F16" ? GgmlType.F16 : GgmlType.Q8_0);
      expect(r.tensor("blk.0.attn_norm.weight").type).toBe(GgmlType.F32);
      r.close();
      const got = await llamaCppProbs(llama, out, TEXTS[0]);
      expect(got.ids).toEqual(ids);
      const d = maxAbsDiff(got.probs, ref);
      console.log(`BF16 checkpoint → ${type}: max |Δp| ${d.toExponential(2)} vs HF-semantics reference`);
      expect(d).toBeLessThan(tol);
      const top = (p: ArrayLike<number>) => Array.prototype.indexOf.call(p, Math.max(...Array.from(p)));
      const agree = got.probs.filter((p, i) => top(p) === top(ref[i])).length / ids.length;
      expect(agree).toBeGreaterThanOrEqual(type === "F16" ? 1 : 0.75); // a broken layout agrees ~never
    }
  });

  it("refuses mismatched or incomplete checkpoints with one-line errors and writes nothing", () => {
    const hf = join(dir, "hf");
    const cases: Array<[string, (d: string) => void, RegExp, string]> = [
      ["arch", (d) => patchConfig(d, { architectures: ["GPTNeoXForCausalLM"] }), /not supported/, "unsupported"],
      [
        "shape",
        (d) => patchConfig(d, { intermediate_size: 96 }),
        /has shape \[128, 64\], config.json implies \[96, 64\]/,
        "corrupt",
      ],
      ["rope", (d) => patchConfig(d, { rope_scaling: { type: "yarn", factor: 4 } }), /rope_scaling/, "unsupported"],
      ["vocab", (d) => patchConfig(d, { vocab_size: 10 }), /tokenizer has \d+ tokens/, "invalid_input"],
      ["no-config", (d) => rmSync(join(d, "config.json")), /no config.json/, "not_found"],
      ["no-weights", (d) => rmSync(join(d, "model.safetensors")), /no model.safetensors/, "not_found"],
      [
        "spm",
        (d) => (rmSync(join(d, "tokenizer.json")), writeFileSync(join(d, "tokenizer.model"), "x")),
        /SentencePiece/,
        "unsupported",
      ],
    ];
    for (const [name, mutate, re, code] of cases) {
      const d = join(dir, `bad-${name}`);
      exportHfCheckpoint(tiny.path, d);
      mutate(d);
      const out = join(dir, `bad-${name}.gguf`);
      let err: unknown;
      try {
        convertHfCheckpoint(d, out);
      } catch (e) {
        err = e;
      }
      expect(isDajianError(err, code as never), `${name}: ${String(err)}`).toBe(true);
      expect((err as Error).message, name).toMatch(re);
      expect((err as Error).message).not.toContain("\n");
      expect(existsSync(out), name).toBe(false);
      expect(readdirSync(dir).some((f) => f.startsWith(`bad-${name}.gguf.tmp`))).toBe(false);
    }
    expect(() => exportHfCheckpoint(tiny.path, hf)).toThrow(/not empty/);
    expect(() => convertHfCheckpoint(hf, tiny.path)).toThrow(/already exists/);
  });
});

function patchConfig(d: string, patch: Record<string, unknown>): void {
  const p = join(d, "config.json");
  writeFileSync(p, JSON.stringify({ ...JSON.parse(readFileSync(p, "utf8")), ...patch }));
}

describe("checkpoints written in Hugging Face layout", () => {
  it("Qwen2 with q/k/v biases converts to llama.cpp's qwen2 and matches the HF-semantics reference", async () => {
    const config = { ...tiny.config, tiedEmbeddings: true, ropeTheta: 1_000_000, normEps: 1e-6 };
    const w = randomHfWeights(config, true, 5);
    const hf = join(dir, "qwen2");
    writeHfCheckpoint(hf, "Qwen2ForCausalLM", config, w, tiny.vocab);
    const out = join(dir, "qwen2.gguf");
    convertHfCheckpoint(hf, out, { type: "F32" });
    const r = GgufReader.open(out);
    expect(metaString(r, "general.architecture")).toBe("qwen2");
    expect(r.tensor("blk.1.attn_k.bias").dims).toEqual([config.kvHeads * 16]);
    expect(r.tensors.some((t) => t.name === "output.weight")).toBe(false);
    r.close();
    for (const text of TEXTS) {
      const got = await llamaCppProbs(llama, out, text);
      expect(got.ids).toEqual(new BpeTokenizer(tiny.vocab).encode(text));
      expect(maxAbsDiff(referenceProbs(config, w, got.ids, true), got.probs)).toBeLessThan(1e-4);
    }
    // …and back: the exported Qwen2 folder holds the same weights, biases included.
    const again = readHf((exportHfCheckpoint(out, join(dir, "qwen2-again")), join(dir, "qwen2-again")));
    for (const [n, v] of w) expect(Buffer.compare(Buffer.from(again.get(n)!.buffer), Buffer.from(v.buffer)), n).toBe(0);
  });

  it("RoPE scaling: llama3 (rope_freqs tensor) and linear (GGUF keys) match the reference; without it they differ", async () => {
    const w = randomHfWeights(tiny.config, false, 8);
    const text = TEXTS[0] + " " + TEXTS[1];
    const llama3 = LLAMA3_ROPE_SCALING;
    for (const [tag, rs] of [
      ["llama3", llama3],
      ["linear", { type: "linear", factor: 4 }],
    ] as const) {
      const hf = join(dir, `rope-${tag}`);
      writeHfCheckpoint(hf, "LlamaForCausalLM", tiny.config, w, tiny.vocab, { extraConfig: { rope_scaling: rs } });
      const out = join(dir, `rope-${tag}.gguf`);
      convertHfCheckpoint(hf, out, { type: "F32" });
      const got = await llamaCppProbs(llama, out, text);
      const rope = tag === "llama3" ? { freqFactors: llama3RopeFactors(16, 10000, llama3) } : { linear: 4 };
      expect(rope.freqFactors ? new Set(rope.freqFactors).size : 2).toBeGreaterThan(1);
      expect(maxAbsDiff(referenceProbs(tiny.config, w, got.ids, false, rope), got.probs), tag).toBeLessThan(1e-4);
      expect(maxAbsDiff(referenceProbs(tiny.config, w, got.ids, false), got.probs), tag).toBeGreaterThan(1e-3);
      expect(() => exportHfCheckpoint(out, join(dir, `rope-${tag}-hf`))).toThrow(/RoPE scaling/);
    }
  });

  it("Mistral (GQA, sliding_window in config) converts to llama with permuted q/k", async () => {
    const config = { ...tiny.config, heads: 8, kvHeads: 2, ffn: 96 };
    const w = randomHfWeights(config, false, 6);
    const hf = join(dir, "mistral");
    writeHfCheckpoint(hf, "MistralForCausalLM", config, w, tiny.vocab, { extraConfig: { sliding_window: 4096 } });
    const out = join(dir, "mistral.gguf");
    const res = convertHfCheckpoint(hf, out, { type: "F32" });
    expect(res.architecture).toBe("llama");
    const got = await llamaCppProbs(llama, out, TEXTS[1]);
    expect(maxAbsDiff(referenceProbs(config, w, got.ids, false), got.probs)).toBeLessThan(1e-4);
  });
});
