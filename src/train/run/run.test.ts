// The training-run library: presets, the pre-flight estimate against the trainer's real allocations, data
// preparation (deterministic split, tail fallback, clean errors), checkpoints, and resume determinism in-process.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isDajianError } from "../../core/errors.js";
import { Engine } from "../../engine/index.js";
import { LlamaTrainer, learningRate } from "../trainer.js";
import { TINY_CORPUS } from "../tiny-model.js";
import { loadCheckpoint, readCheckpointState, saveCheckpoint } from "./checkpoint.js";
import { prepareData } from "./data.js";
import { assertFits, estimateTraining, parseBytes } from "./preflight.js";
import { countParams, llamaConfig, resolveShape } from "./presets.js";
import { resumeRun, startRun, type TrainRunOptions } from "./run.js";

const dir = mkdtempSync(join(tmpdir(), "dajian-run-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const engine = new Engine({ threads: 1 });

function corpusFile(name: string, docs: number): string {
  const f = join(dir, name);
  const lines = Array.from({ length: docs }, (_, i) =>
    JSON.stringify({ text: `${TINY_CORPUS[i % TINY_CORPUS.length]} #${i % 17}` }),
  );
  writeFileSync(f, lines.join("\n") + "\n");
  return f;
}

describe("presets", () => {
  it("name models by size and let free dimensions override them", () => {
    const sizes = (["tiny", "small", "base"] as const).map((p) => {
      const s = resolveShape(p);
      return countParams(llamaConfig(s, s.vocab));
    });
    expect(sizes[0]).toBeGreaterThan(0.7e6);
    expect(sizes[0]).toBeLessThan(1.3e6);
    expect(sizes[1]).toBeGreaterThan(8e6);
    expect(sizes[1]).toBeLessThan(12e6);
    expect(sizes[2]).toBeGreaterThan(80e6);
    expect(sizes[2]).toBeLessThan(120e6);
    expect(resolveShape("small", { layers: 2, seq: 64 })).toMatchObject({ layers: 2, seq: 64, dim: 256 });
    expect(resolveShape("tiny", { heads: 1 }).kvHeads).toBe(1); // preset kv-heads no longer divide → MHA
    expect(() => resolveShape("tiny", { dim: 100, heads: 3 })).toThrow(/divisible/);
    expect(() => resolveShape("giant")).toThrow(/unknown preset/);
  });
});

describe("pre-flight", () => {
  it("estimates the trainer's real allocations within 15 % (and errs on the safe side), with and without OpenBLAS", () => {
    for (const [V, L, D, H, KV, F, T, B, blas] of [
      [512, 2, 64, 4, 2, 128, 32, 4, 1],
      [1024, 3, 96, 4, 4, 256, 64, 2, 1],
      [2048, 2, 128, 4, 2, 384, 128, 4, 1],
      [512, 2, 64, 4, 2, 128, 32, 4, 0],
      [2048, 2, 128, 4, 2, 384, 128, 4, 0],
    ]) {
      const c = llamaConfig({ vocab: V, layers: L, dim: D, heads: H, kvHeads: KV, ffn: F, seq: T, batch: B }, V);
      const eng = new Engine({ threads: 1, blas: blas === 1 });
      const est = estimateTraining(c, { seq: T, batch: B, accum: 1, threads: 1, blas: eng.blas !== null });
      using tr = new LlamaTrainer(eng, c, { seq: T, batch: B, lr: 1e-3, totalSteps: 1 });
      const real = tr.ctx.memBytes + tr.computeBytes;
      const ours = est.persistentBytes + est.activationBytes;
      expect(ours / real, `shape ${[V, L, D, H, KV, F, T, B]}`).toBeGreaterThan(0.98);
      expect(ours / real).toBeLessThan(1.15);
      expect(est.params).toBe(tr.paramCount);
    }
  });

  it("refuses a run that does not fit, naming what to shrink", () => {
    const s = resolveShape("base");
    const est = estimateTraining(llamaConfig(s, s.vocab), { seq: s.seq, batch: s.batch, accum: 1, threads: 2 });
    expect(est.totalBytes).toBeGreaterThan(1.5 * 2 ** 30);
    try {
      assertFits(est, parseBytes("1GiB"), "base");
      expect.unreachable();
    } catch (err) {
      expect(isDajianError(err, "too_large")).toBe(true);
      expect((err as Error & { hint: string }).hint).toMatch(/smaller --preset.*--batch/);
    }
    expect(parseBytes("512MiB")).toBe(512 * 2 ** 20);
    expect(() => parseBytes("lots")).toThrow(/as a size/);
  });
});

describe("data preparation", () => {
  it("splits documents deterministically and writes token streams plus the validation text", async () => {
    const f = corpusFile("docs.jsonl", 300);
    const opts = { files: [f], vocabSize: 400, seed: 5, minTokens: 33 };
    const a = await prepareData({ ...opts, dir: join(dir, "d1") });
    const b = await prepareData({ ...opts, dir: join(dir, "d2") });
    expect(a.manifest.valFromTail).toBe(false);
    expect(a.manifest.documents.validation).toBeGreaterThan(3);
    expect(a.manifest.documents).toEqual(b.manifest.documents);
    expect(a.train.read(0, 50)).toEqual(b.train.read(0, 50));
    expect(a.manifest.tokens.train).toBe(a.train.length);
    const val = readFileSync(join(dir, "d1", "val.txt"), "utf8");
    expect(val.length).toBeGreaterThan(50);
    // Reopening the folder reuses the prepared data; other files are refused.
    const again = await prepareData({ ...opts, dir: join(dir, "d1") });
    expect(again.manifest.seconds).toBe(a.manifest.seconds);
    await expect(prepareData({ ...opts, files: [corpusFile("other.jsonl", 5)], dir: join(dir, "d1") })).rejects.toThrow(
      /different data files/,
    );
    for (const d of [a, b, again]) {
      d.train.close();
      d.val.close();
    }
  });

  it("holds out the stream's tail when a single text file has too few documents", async () => {
    const f = join(dir, "one.txt");
    writeFileSync(f, TINY_CORPUS.join(" ").repeat(4));
    const d = await prepareData({ files: [f], dir: join(dir, "d3"), vocabSize: 300, seed: 1, minTokens: 65 });
    expect(d.manifest.valFromTail).toBe(true);
    expect(d.val.length).toBeGreaterThanOrEqual(65);
    expect(d.train.length + d.val.length).toBe(d.manifest.tokens.train + d.manifest.tokens.validation);
    d.train.close();
    d.val.close();
    await expect(
      prepareData({ files: [f], dir: join(dir, "d4"), vocabSize: 300, seed: 1, minTokens: 100_000 }),
    ).rejects.toThrow(/need at least 200001/);
  });
});

describe("checkpoints", () => {
  it("round-trip weights and moments exactly and reject a different shape", async () => {
    const c = llamaConfig({ vocab: 300, layers: 1, dim: 32, heads: 2, kvHeads: 1, ffn: 64, seq: 8, batch: 2 }, 300);
    const h = { seq: 8, batch: 2, lr: 1e-2, totalSteps: 10, seed: 2 };
    using a = new LlamaTrainer(engine, c, h);
    const batch = [Array.from({ length: 9 }, (_, i) => i * 7), Array.from({ length: 9 }, (_, i) => 100 + i)];
    await a.trainStep([batch]);
    const p = join(dir, "ck.bin");
    saveCheckpoint(p, a.stateTensors(), { step: a.step, note: "x" });
    expect(readCheckpointState<{ note: string }>(p)?.note).toBe("x");
    using b = new LlamaTrainer(engine, c, { ...h, seed: 99 });
    const st = loadCheckpoint<{ step: number }>(p, b.stateTensors());
    b.step = st.step;
    const [ra, rb] = [await a.trainStep([batch]), await b.trainStep([batch])];
    expect(rb.loss).toBe(ra.loss);
    expect(b.weight("blk.0.ffn_up.weight")).toEqual(a.weight("blk.0.ffn_up.weight"));
    using other = new LlamaTrainer(engine, { ...c, ffn: 32 }, h);
    expect(() => loadCheckpoint(p, other.stateTensors())).toThrow(/different model shape/);
    writeFileSync(p, "garbage");
    expect(() => loadCheckpoint(p, b.stateTensors())).toThrow(/not a dajian checkpoint/);
  });
});

describe("runs", () => {
  const base = (name: string, steps: number): TrainRunOptions => ({
    data: [corpusFile("run.jsonl", 200)],
    out: join(dir, `${name}.gguf`),
    runDir: join(dir, name),
    shape: { vocab: 300, layers: 1, dim: 32, heads: 2, kvHeads: 1, ffn: 64, seq: 16, batch: 2 },
    stop: { steps },
    threads: 1,
    valBatches: 1,
    checkpointEvery: 5,
    seed: 4,
  });

  it("finishes a run; resuming the finished run re-exports it with the same figures", async () => {
    const full = await startRun(base("full", 20));
    expect(full.steps).toBe(20);
    expect(existsSync(full.out)).toBe(true);
    // Resuming a finished run re-exports it with the same figures.
    const again = await resumeRun(join(dir, "full"));
    expect(again.resumedFrom).toBe(20);
    expect(again.valLoss).toBe(full.valLoss);
    await expect(startRun(base("full", 20))).rejects.toThrow(/already holds a training run/);
  });

  it("stops on a signal after the running step with a checkpoint, and resumes to the uninterrupted result", async () => {
    const full = await startRun(base("whole", 12));
    const stop = new AbortController();
    const seen: number[] = [];
    const hooks = {
      signal: stop.signal,
      onStep: (m: { step: number }) => {
        seen.push(m.step);
        if (m.step === 7) stop.abort();
      },
    };
    const err = await startRun(base("halted", 12), hooks).catch((e: unknown) => e);
    expect(isDajianError(err, "interrupted")).toBe(true);
    expect((err as Error & { hint: string }).hint).toBe(`continue with: dajian train --resume ${join(dir, "halted")}`);
    expect(seen.at(-1)).toBe(7);
    expect(readCheckpointState<{ step: number }>(join(dir, "halted", "checkpoint.bin"))?.step).toBe(7);
    expect(existsSync(join(dir, "halted.gguf"))).toBe(false);
    const resumed = await resumeRun(join(dir, "halted"));
    expect(resumed.resumedFrom).toBe(7);
    expect(resumed.steps).toBe(12);
    expect(resumed.trainLoss).toBe(full.trainLoss);
    expect(resumed.valLoss).toBe(full.valLoss);
  });

  it("extends a finished run with resume --steps: same warm-up, cosine re-stretched to the new total", async () => {
    await startRun(base("short", 6));
    await expect(resumeRun(join(dir, "short"), { steps: 4 })).rejects.toThrow(/already at step 6/);
    const longer = await resumeRun(join(dir, "short"), { steps: 10 });
    expect(longer).toMatchObject({ resumedFrom: 6, steps: 10 });
    const lr = readFileSync(join(dir, "short", "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { step: number; lr: number });
    const warmup = 2; // 5 % of 6 steps, at least 2 (kept from the first session)
    const { lr: peak, minLr } = JSON.parse(readFileSync(join(dir, "short", "run.json"), "utf8")) as Record<
      string,
      number
    >;
    const h = { seq: 16, batch: 2, lr: peak, minLr, warmupSteps: warmup };
    expect(lr.find((r) => r.step === 6)?.lr).toBeCloseTo(learningRate({ ...h, totalSteps: 6 }, 5), 12);
    expect(lr.find((r) => r.step === 7)?.lr).toBeCloseTo(learningRate({ ...h, totalSteps: 10 }, 6), 12);
    expect(lr.at(-1)?.step).toBe(10);
  });

  it("refuses an empty corpus and leaves no run folder behind", async () => {
    const f = join(dir, "blank.jsonl");
    writeFileSync(f, '{"text": ""}\n\n');
    await expect(startRun({ ...base("blank", 5), data: [f] })).rejects.toThrow(/no text found/);
    expect(existsSync(join(dir, "blank"))).toBe(false);
  });
});
