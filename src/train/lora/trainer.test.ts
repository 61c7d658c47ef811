import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isDajianError } from "../../core/errors.js";
import { Engine } from "../../engine/index.js";
import { nativeView } from "../../engine/ffi.js";
import { GgmlType, GgufReader, GgufWriter } from "../../gguf/index.js";
import { readLoraAdapterGguf } from "../../gguf/adapter.js";
import { writeTinyLlamaGguf, type TinyLlamaResult } from "../tiny-model.js";
import { TRAINABLE_TYPE_NAMES, dequantizeWithGgml, rawTensor } from "./base.js";
import { checkFits, estimateLoraMemory } from "./estimate.js";
import {
  compareWithLlamaCpp,
  gradientAndFiniteDifference,
  loraRow,
  maskedLossFromLogits,
  randomizeB,
  relErr,
} from "./testing.test-helper.js";
import { LoraTrainer, parseTargets, type LoraOptions, type SftRow } from "./trainer.js";

// Every product of these small graphs goes to OpenBLAS when it is installed (CI installs it), so the tests below
// check the BLAS path; `plain` keeps everything on ggml, for the users without it.
process.env.DAJIAN_BLAS_MIN_MACS = "0";
const engine = new Engine({ threads: 1 });
const plain = new Engine({ threads: 1, blas: false });
const dir = mkdtempSync(join(tmpdir(), "dajian-lora-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const models = new Map<string, TinyLlamaResult>();
function base(type: "F32" | "F16" | "Q8_0" | "Q4_0"): TinyLlamaResult {
  let m = models.get(type);
  if (!m) {
    // std 0.1: peaky enough that a wrong adapter orientation or scale shows in the probabilities.
    m = writeTinyLlamaGguf(join(dir, `tiny-${type}.gguf`), { type, dim: 64, ffn: 128, layers: 2, std: 0.1 });
    models.set(type, m);
  }
  return m;
}

const GRAD_NAMES = [
  "blk.0.attn_q.weight.lora_a",
  "blk.0.attn_k.weight.lora_b",
  "blk.1.attn_v.weight.lora_b",
  "blk.0.attn_output.weight.lora_a",
  "blk.1.ffn_gate.weight.lora_b",
  "blk.0.ffn_up.weight.lora_a",
  "blk.1.ffn_down.weight.lora_b",
];

const ALL: LoraOptions = { rank: 4, alpha: 8, dropout: 0, targets: parseTargets("q,k,v,o,gate,up,down") };

function row(m: TinyLlamaResult, text: string, fromFraction = 0.5): SftRow {
  return loraRow(m.vocab, text, fromFraction);
}

describe("LoRA trainer on a frozen GGUF base", () => {
  it("masked loss equals the mean next-token loss over trained positions", async () => {
    const m = base("F32");
    const r = row(m, "The quick brown fox jumps over the lazy dog. Hello world!");
    using tr = new LoraTrainer(engine, m.path, ALL, { seq: r.ids.length, batch: 2, lr: 0, totalSteps: 1 });
    randomizeB(tr, 1, 0.05);
    const direct = maskedLossFromLogits(await tr.forwardLogits(r.ids), r);
    const ev = await tr.evaluate([r]);
    expect(ev.tokens).toBe(direct.tokens);
    expect(ev.lossSum / ev.tokens).toBeCloseTo(direct.loss, 3);
    // a second, fully masked row in the micro-batch changes nothing
    const ev2 = await tr.evaluate([r, { ids: r.ids, mask: r.ids.map(() => 0) }]);
    expect(ev2.lossSum / ev2.tokens).toBeCloseTo(direct.loss, 3);
  });

  it("adapter gradients match finite differences (F32 base)", async () => {
    const m = base("F32");
    const r = row(m, "Knowledge bases answer questions with citations.", 0.3);
    using tr = new LoraTrainer(engine, m.path, ALL, { seq: r.ids.length - 1, batch: 1, lr: 0, totalSteps: 1 });
    randomizeB(tr, 2, 0.3);
    for (const name of GRAD_NAMES) {
      const { grad, fd } = await gradientAndFiniteDifference(tr, r, name);
      expect(Math.abs(grad)).toBeGreaterThan(1e-4);
      expect(Math.abs(fd - grad)).toBeLessThan(0.03 * Math.abs(grad) + 2e-4);
    }
  });

  it("gradients through a Q8_0 base equal those through its dequantized F32 copy", async () => {
    // Finite differences are meaningless on a quantized base (its mul_mat quantizes activations, so the loss is
    // piecewise constant at small scales); the same weights in F32 give the reference gradient instead.
    const m = base("Q8_0");
    const r0 = GgufReader.open(m.path);
    const w = new GgufWriter();
    for (const [k, v] of r0.metadata) w.set(k, v);
    for (const t of r0.tensors) w.addTensor(t.name, t.dims, r0.tensorF32(t.name), GgmlType.F32);
    r0.close();
    const f32Path = join(dir, "q8-dequantized.gguf");
    w.write(f32Path);
    const r = row(m, "Knowledge bases answer questions with citations.", 0.3);
    const h = { seq: r.ids.length - 1, batch: 1, lr: 0, totalSteps: 1 };
    using q = new LoraTrainer(engine, m.path, ALL, h);
    using f = new LoraTrainer(engine, f32Path, ALL, h);
    randomizeB(q, 2, 0.3);
    randomizeB(f, 2, 0.3);
    const lq = await q.lossAndGrad([r]);
    const lf = await f.lossAndGrad([r]);
    expect(Math.abs(lq - lf)).toBeLessThan(0.02 * lf);
    for (const name of GRAD_NAMES) {
      expect(relErr(q.gradient(name), f.gradient(name)), name).toBeLessThan(0.05);
    }
  });

  it("replicas, stored transposed bases and OpenBLAS give the same gradients as one ggml graph", async () => {
    const two = new Engine({ threads: 2 });
    const twoPlain = new Engine({ threads: 2, blas: false });
    for (const type of ["F32", "F16", "Q4_0"] as const) {
      const m = base(type);
      const rows = [
        row(m, "Knowledge bases answer questions with citations.", 0.3),
        row(m, "The handbook says leave is twenty days.", 0.5),
      ];
      const seq = Math.max(...rows.map((x) => x.ids.length)) - 1;
      const grads = new Map<string, Float32Array[]>();
      // Reference: one graph on one thread, on ggml alone; then the same with OpenBLAS products, two one-thread
      // replicas (one row each) with each Wᵀ strategy, with and without BLAS, the FFN gate/up recomputed instead of
      // kept, and a two-micro-batch step (the same rows twice: the same mean gradient, with the second replica's
      // graph-output gradients added in after each micro-batch).
      const runs: Array<[Engine, Partial<LoraOptions>, boolean]> = [
        [plain, {}, false],
        [engine, {}, false],
        [twoPlain, {}, false],
        [two, {}, false],
        [two, { baseTranspose: "f16" }, false],
        [two, { baseTranspose: "f32" }, false],
        [engine, { recomputeFfn: false }, false],
        [two, {}, true],
      ];
      for (const [eng, opts, accum] of runs) {
        const hyper = { seq, batch: 2, lr: 0, totalSteps: 1, clip: 0 };
        using tr = new LoraTrainer(eng, m.path, { ...ALL, ...opts }, hyper);
        expect(tr.replicas).toBe(eng.threads);
        randomizeB(tr, 2, 0.3);
        if (accum) await tr.trainStep([rows, rows]);
        else await tr.lossAndGrad(rows);
        for (const name of GRAD_NAMES) grads.set(name, [...(grads.get(name) ?? []), tr.gradient(name)]);
      }
      for (const [name, [ref, ...others]] of grads) {
        for (const g of others) expect(relErr(g, ref), `${type} ${name}`).toBeLessThan(0.02);
      }
    }
  });

  it("trains only the adapter: loss falls over a Q4_0 base whose bytes stay as stored", async () => {
    const m = base("Q4_0");
    const before = GgufReader.open(m.path);
    const q = before.tensorBytes("blk.0.attn_q.weight");
    expect(before.tensor("blk.0.attn_q.weight").type).toBe(GgmlType.Q4_0);
    before.close();
    const r1 = row(m, "Hello world! How are you today? I am fine, thank you.");
    const r2 = row(m, "北京是中国的首都，上海是最大的城市。");
    using tr = new LoraTrainer(
      engine,
      m.path,
      { ...ALL, dropout: 0.1 },
      {
        seq: Math.max(r1.ids.length, r2.ids.length),
        batch: 2,
        lr: 2e-2,
        totalSteps: 40,
        warmupSteps: 2,
      },
    );
    expect(tr.baseType).toBe("Q4_0");
    const e0 = await tr.evaluate([r1, r2]);
    let last = 0;
    for (let s = 0; s < 40; s++) last = (await tr.trainStep([[r1], [r2]])).loss;
    const e1 = await tr.evaluate([r1, r2]);
    expect(e1.lossSum / e1.tokens).toBeLessThan((e0.lossSum / e0.tokens) * 0.5);
    expect(last).toBeLessThan(e0.lossSum / e0.tokens);
    const w = tr.base.weights.tensors.get("blk.0.attn_q.weight");
    expect(w?.type).toBe(GgmlType.Q4_0);
    const stored = new Uint8Array(nativeView(tr.ctx.lib.base.ggml_get_data(w?.ptr), w?.nbytes ?? 0));
    expect(Buffer.compare(Buffer.from(q), Buffer.from(stored))).toBe(0); // frozen, still the file's Q4_0 bytes
    expect(tr.step).toBe(40);
    const ck = tr.checkpointTensors().find((t) => t.name === "blk.1.ffn_down.weight.lora_b");
    expect(ck?.v.get().some((x) => x > 0)).toBe(true); // AdamW moments live beside the adapter for checkpoints
  });

  for (const type of ["F32", "Q8_0"] as const) {
    it(`llama.cpp with the exported adapter matches dajian's forward pass (${type} base)`, async () => {
      const m = base(type);
      const text = "The fox jumps over 知识库 and the lazy dog.";
      const r = row(m, text);
      using tr = new LoraTrainer(engine, m.path, ALL, { seq: r.ids.length, batch: 1, lr: 0, totalSteps: 1 });
      randomizeB(tr, 3, 0.3);
      const adapter = join(dir, `adapter-${type}.gguf`);
      tr.exportAdapter(adapter);
      const back = readLoraAdapterGguf(adapter);
      expect(back.tensors).toHaveLength(14);
      expect(back.alpha).toBe(8);
      const { maxErr, adapterEffect } = await compareWithLlamaCpp(tr, m.path, adapter, r.ids);
      expect(adapterEffect).toBeGreaterThan(0.01); // the adapter matters …
      expect(maxErr).toBeLessThan(type === "F32" ? 1e-4 : 2e-3); // … and both engines apply it the same way
    });
  }

  it("refuses a base type ggml cannot backpropagate through, naming the supported ones", () => {
    const m = base("F32");
    const r = GgufReader.open(m.path);
    const w = new GgufWriter();
    for (const [k, v] of r.metadata) w.set(k, v);
    for (const t of r.tensors) {
      const data = r.tensorF32(t.name);
      const bf16 = t.name === "blk.0.attn_q.weight";
      w.addTensor(
        t.name,
        t.dims,
        bf16 ? new Uint8Array(data.length * 2) : new Uint8Array(data.buffer),
        bf16 ? GgmlType.BF16 : GgmlType.F32,
      );
    }
    r.close();
    const path = join(dir, "bf16.gguf");
    w.write(path);
    let err: unknown;
    try {
      new LoraTrainer(engine, path, ALL, { seq: 8, batch: 1, lr: 0, totalSteps: 1 }).dispose();
    } catch (e) {
      err = e;
    }
    expect(isDajianError(err, "unsupported")).toBe(true);
    expect(String((err as Error).message)).toContain("BF16");
    expect(String((err as { hint: string }).hint)).toContain(TRAINABLE_TYPE_NAMES);
    expect(() => parseTargets("q,x")).toThrow(/unknown LoRA target/);
  });

  it("dequantizes through ggml exactly as the GGUF decoder does, and refuses runs that will not fit", () => {
    const m = base("Q4_0");
    using r = GgufReader.open(m.path);
    const info = r.tensor("blk.1.ffn_down.weight");
    using ctx = engine.context({ memBytes: 8 << 20 });
    const viaGgml = dequantizeWithGgml(ctx, rawTensor(ctx, info, r.tensorBytes(info)));
    expect(Array.from(viaGgml)).toEqual(Array.from(r.tensorF32(info.name)));
    const est = estimateLoraMemory(m.path, ALL, 64, 2);
    // per layer, rank 4: q,o 4·(64+64) · k,v 4·(64+32) · gate,up,down 4·(64+128); two layers
    expect(est.loraParams).toBe(2 * (2 * 512 + 2 * 384 + 3 * 768));
    let err: unknown;
    try {
      checkFits(est, est.residentBytes - 1);
    } catch (e) {
      err = e;
    }
    expect(isDajianError(err, "too_large")).toBe(true);
    expect(String((err as { hint: string }).hint)).toMatch(/--max-len|--batch/);
    expect(() => checkFits(est, est.residentBytes)).not.toThrow();
  });
});
