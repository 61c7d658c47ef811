// The scenario end to end: dajian pre-trains a small base on a fictional company's handbook, fine-tunes a
// LoRA adapter on Q&A pairs about the company (alpaca JSONL → the base's chat template → assistant-only loss),
// and llama.cpp shows the adapter lowers the loss on held-out phrasings and raises answer accuracy.

import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ChatFormatter, loadSftDataset } from "../../data/sft.js";
import { readSftExamples, type SftExample } from "../../data/sft-read.js";
import { Engine } from "../../engine/index.js";
import { companyQa, trainCompanyBase, writeQaJsonl } from "./company.js";
import { scoreQa } from "./eval-qa.js";
import { llamaCppProbabilities, openLlamaCpp } from "./llamacpp.js";
import { mergeAdapter } from "./merge.js";
import { finetune, DEFAULT_SETTINGS } from "./run.js";
import { parseTargets } from "./trainer.js";

const engine = new Engine({ threads: 1 });
const dir = mkdtempSync(join(tmpdir(), "dajian-lora-scenario-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function examples(file: string): Promise<SftExample[]> {
  const out: SftExample[] = [];
  for await (const e of readSftExamples(file)) if (!("error" in e)) out.push(e);
  return out;
}

describe("LoRA fine-tuning on a fictional company's facts", { timeout: 240_000 }, () => {
  it("lowers held-out loss and raises answer accuracy through llama.cpp", async () => {
    const base = await trainCompanyBase(engine, join(dir, "base.gguf"), { steps: 120 });
    const trainFile = join(dir, "train.jsonl");
    const heldFile = join(dir, "heldout.jsonl");
    writeQaJsonl(trainFile, companyQa("train"));
    writeQaJsonl(heldFile, companyQa("heldout"));
    const f = ChatFormatter.fromGguf(base.path);
    const data = await loadSftDataset([trainFile], f);
    expect(data.report.kept).toBe(30);
    const out = join(dir, "adapter.gguf");
    const runDir = join(dir, "run");
    const summary = await finetune(engine, runDir, data.samples, {
      ...DEFAULT_SETTINGS,
      base: base.path,
      out,
      lora: { rank: 8, alpha: 16, dropout: 0, targets: parseTargets("q,k,v,o,gate,up,down") },
      lr: 1e-2,
      batch: 6,
      steps: 100,
      valSplit: 0.1,
    });
    expect(summary.steps).toBe(100);
    expect(summary.trainLossAfter).toBeLessThan(summary.trainLossBefore * 0.3);
    expect(existsSync(join(runDir, "loss-curve.html"))).toBe(true);
    expect(readFileSync(join(runDir, "metrics.jsonl"), "utf8").trim().split("\n")).toHaveLength(100);

    const held = await examples(heldFile);
    const before = await scoreQa(base.path, undefined, held, f, { maxTokens: 12 });
    const after = await scoreQa(base.path, out, held, f, { maxTokens: 12 });
    expect(after.n).toBe(10);
    expect(after.loss).toBeLessThan(before.loss * 0.5);
    expect(after.contains).toBeGreaterThan(before.contains);
    expect(after.contains).toBeGreaterThanOrEqual(0.5);

    // The merged model is base + adapter in one file: llama.cpp gives both the same next-token distributions.
    const merged = join(dir, "merged.gguf");
    mergeAdapter(engine, base.path, out, merged);
    const ids = f.encode(held[0].messages).ids;
    const a = await openLlamaCpp(base.path, out, { contextSize: 128 });
    const m = await openLlamaCpp(merged, undefined, { contextSize: 128 });
    try {
      const pa = await llamaCppProbabilities(a, ids);
      const pm = await llamaCppProbabilities(m, ids);
      let maxErr = 0;
      pa.forEach((dist, i) => dist.forEach((p, t) => (maxErr = Math.max(maxErr, Math.abs(p - (pm[i].get(t) ?? 0))))));
      expect(pa.length).toBe(ids.length);
      expect(maxErr).toBeLessThan(1e-3);
    } finally {
      await a.dispose();
      await m.dispose();
    }
  });
});
