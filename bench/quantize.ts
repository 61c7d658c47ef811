// npm run bench:quantize — size and perplexity of llama.cpp quantizations against the F16 original, on a model
// dajian trains itself (a small llama on SQuAD passages with dajian's ggml trainer), scored on held-out passages
// through llama.cpp (node-llama-cpp). Targets (issue 7): Q8_0 within 1 % of F16, Q4_K_M within 5 %.
// Env: STEPS (default 300), THREADS (2), TOKENS scored (4000), SPEED=0 skips the pp/tg columns.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Engine } from "../src/engine/index.js";
import { benchModel } from "../src/models/bench-model.js";
import { perplexity } from "../src/models/perplexity.js";
import { type QuantType, quantizeModel } from "../src/models/quantize.js";
import { BpeTokenizer, trainBpe } from "../src/tokenizer/index.js";
import { TINY_CORPUS, writeTinyLlamaGguf } from "../src/train/tiny-model.js";
import { LlamaTrainer } from "../src/train/trainer.js";
import { Rng } from "../src/train/rng.js";

const STEPS = Number(process.env.STEPS ?? 300);
const THREADS = Number(process.env.THREADS ?? 2);
const TOKENS = Number(process.env.TOKENS ?? 4000);
const SPEED = process.env.SPEED !== "0";
const TYPES: QuantType[] = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"];

const corpusFile = "../shared/data/squad-v1.1-dev/corpus.jsonl";
let texts: string[];
if (existsSync(corpusFile)) {
  texts = readFileSync(corpusFile, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { text: string }).text);
  console.log(`text: ${texts.length} SQuAD v1.1 dev passages (${corpusFile})`);
} else {
  texts = TINY_CORPUS;
  console.log(`text: ${corpusFile} not found — using dajian's built-in tiny corpus (results are far less meaningful)`);
}
const heldOut = texts.filter((_, i) => i % 10 === 0).join("\n\n");
const train = texts.filter((_, i) => i % 10 !== 0);

/** pp/tg tokens/s (llama-bench style) unless SPEED=0; the file size either way. */
async function speedOf(path: string): Promise<{ fileBytes: number; pp: { mean: number }; tg: { mean: number } }> {
  if (SPEED) return benchModel(path, { promptTokens: 128, genTokens: 32, repetitions: 2, threads: THREADS });
  return { fileBytes: statSync(path).size, pp: { mean: NaN }, tg: { mean: NaN } };
}

const dir = mkdtempSync(join(tmpdir(), "dajian-bench-quant-"));
try {
  const vocab = trainBpe(train.slice(0, 400), { vocabSize: 1024, pre: "qwen2" });
  const tok = new BpeTokenizer(vocab);
  const ids = tok.encode(train.join("\n\n"));
  console.log(`vocabulary ${vocab.tokens.length}, training tokens ${ids.length}, steps ${STEPS}, threads ${THREADS}`);
  const config = {
    vocabSize: vocab.tokens.length,
    layers: 4,
    dim: 256,
    heads: 4,
    kvHeads: 2,
    ffn: 768,
    contextLength: 256,
    ropeTheta: 10000,
    normEps: 1e-5,
    tiedEmbeddings: false,
  };
  const f16 = join(dir, "trained-f16.gguf");
  let trained = false;
  try {
    await trainModel(f16);
    trained = true;
  } catch (err) {
    // Visible, not silent: the table header says which model was measured.
    console.log(`training failed (${(err as Error).message}); measuring an UNTRAINED random-weight model instead`);
    writeTinyLlamaGguf(f16, {
      type: "F16",
      dim: config.dim,
      layers: config.layers,
      heads: config.heads,
      kvHeads: config.kvHeads,
      ffn: config.ffn,
      contextLength: 256,
      corpus: train.slice(0, 400),
      vocabSize: 1024,
    });
  }
  console.log(`model: ${trained ? `trained ${STEPS} steps` : "random weights"}`);

  async function trainModel(out: string): Promise<void> {
    const engine = new Engine({ threads: THREADS });
    const T = 128;
    const ACCUM = 4; // micro-batches of one sequence each, accumulated per optimizer step
    const trainer = new LlamaTrainer(engine, config, {
      seq: T,
      batch: 1,
      accum: ACCUM,
      lr: 2e-3,
      minLr: 2e-4,
      warmupSteps: 20,
      totalSteps: STEPS,
      seed: 1,
    });
    const rng = new Rng(7);
    const t0 = Date.now();
    for (let s = 0; s < STEPS; s++) {
      const micro = Array.from({ length: ACCUM }, () => {
        const at = Math.floor(rng.next() * (ids.length - T - 1));
        return [ids.slice(at, at + T + 1)];
      });
      const r = await trainer.trainStep(micro);
      if (r.step % 50 === 0 || r.step === 1)
        console.log(`step ${r.step} loss ${r.loss.toFixed(3)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    }
    trainer.exportGguf(out, vocab, { type: "F16", name: "dajian-bench-trained" });
    trainer.dispose();
  }

  const base = await perplexity(f16, heldOut, { contextSize: 256, threads: THREADS, maxTokens: TOKENS });
  const baseSpeed = await speedOf(f16);
  const rows: Record<string, string | number>[] = [
    {
      type: "F16 (baseline)",
      "size MiB": (baseSpeed.fileBytes / 1048576).toFixed(2),
      size: "100 %",
      ppl: base.perplexity.toFixed(3),
      "ppl change": "—",
      "pp t/s": baseSpeed.pp.mean.toFixed(0),
      "tg t/s": baseSpeed.tg.mean.toFixed(0),
      target: "",
    },
  ];
  const results: Record<string, number> = {};
  for (const t of TYPES) {
    const q = await quantizeModel(f16, join(dir, `trained-${t}.gguf`), { type: t, threads: THREADS });
    const p = await perplexity(q.output, heldOut, { contextSize: 256, threads: THREADS, maxTokens: TOKENS });
    const sp = await speedOf(q.output);
    const change = (p.perplexity / base.perplexity - 1) * 100;
    results[t] = change;
    const target =
      t === "Q8_0"
        ? Math.abs(change) <= 1
          ? "≤1 % ✓"
          : "≤1 % ✗"
        : t === "Q4_K_M"
          ? Math.abs(change) <= 5
            ? "≤5 % ✓"
            : "≤5 % ✗"
          : "";
    rows.push({
      type: t,
      "size MiB": (q.sizeAfter / 1048576).toFixed(2),
      size: `${((q.sizeAfter / q.sizeBefore) * 100).toFixed(0)} %`,
      ppl: p.perplexity.toFixed(3),
      "ppl change": `${change >= 0 ? "+" : ""}${change.toFixed(2)} %`,
      "pp t/s": sp.pp.mean.toFixed(0),
      "tg t/s": sp.tg.mean.toFixed(0),
      target,
    });
  }
  console.log(
    `\n${trained ? "trained" : "UNTRAINED"} model; perplexity on ${base.tokensScored} held-out tokens (windows of ${base.contextSize}); F16 is the baseline`,
  );
  console.table(rows);
  mkdirSync("bench/results", { recursive: true });
  writeFileSync(
    "bench/results/prepare-quantize.json",
    JSON.stringify(
      {
        date: new Date().toISOString(),
        trained,
        steps: STEPS,
        threads: THREADS,
        basePerplexity: base.perplexity,
        changePct: results,
        rows,
      },
      null,
      2,
    ),
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
