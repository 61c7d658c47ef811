// npm run bench:train — the from-scratch trainer on the fixed configuration (vocab 8192, 8 layers,
// d_model 256, 8 heads / 4 KV heads, FFN 688, seq 256, batch 16, f32, AdamW), on the text of ../shared/data.
// Env overrides for quick runs: STEPS, BATCH, SEQ, LAYERS, DIM, VOCAB, THREADS, CORPUS_MB.
// PyTorch's column needs Debian's python3-torch + libopenblas0-pthread; without them the script says so.

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Engine } from "../src/engine/index.js";
import { BpeTokenizer, trainBpe } from "../src/tokenizer/index.js";
import { LlamaTrainer } from "../src/train/trainer.js";
import { Rng } from "../src/train/rng.js";
import type { LlamaConfig } from "../src/train/llama-gguf.js";

const env = (k: string, d: number): number => (process.env[k] ? Number(process.env[k]) : d);
const STEPS = env("STEPS", 20);
const B = env("BATCH", 16);
const T = env("SEQ", 256);
const THREADS = env("THREADS", 2);

const dataDir = join(import.meta.dirname, "..", "..", "shared", "data");
const texts: string[] = [];
if (existsSync(dataDir)) {
  let bytes = 0;
  const limit = env("CORPUS_MB", 4) * 1e6;
  for (const d of readdirSync(dataDir)) {
    const f = join(dataDir, d, "corpus.jsonl");
    if (!existsSync(f)) continue;
    for (const line of readFileSync(f, "utf8").split("\n")) {
      if (!line.trim() || bytes > limit) continue;
      const t = (JSON.parse(line) as { text?: string }).text ?? "";
      texts.push(t);
      bytes += Buffer.byteLength(t);
    }
  }
}
if (texts.length === 0) throw new Error(`no corpus under ${dataDir}`);

const t0 = performance.now();
const vocab = trainBpe(texts.slice(0, 4000), { vocabSize: env("VOCAB", 8192) });
const tok = new BpeTokenizer(vocab);
const ids: number[] = [];
for (const t of texts) for (const id of tok.encode(t + "\n")) ids.push(id);
const split = Math.floor(ids.length * 0.95);
console.log(
  `tokenizer: ${vocab.tokens.length} tokens, ${ids.length} corpus tokens (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
);

const config: LlamaConfig = {
  vocabSize: vocab.tokens.length,
  layers: env("LAYERS", 8),
  dim: env("DIM", 256),
  heads: 8,
  kvHeads: 4,
  ffn: env("FFN", 688),
  contextLength: T,
  ropeTheta: 10000,
  normEps: 1e-5,
  tiedEmbeddings: false,
};
const engine = new Engine({ threads: THREADS });
console.log(`engine: ${engine.describe()}`);
const tr = new LlamaTrainer(engine, config, { seq: T, batch: B, lr: 1e-3, warmupSteps: 2, totalSteps: STEPS, seed: 1 });
console.log(
  `model: ${(tr.paramCount / 1e6).toFixed(2)}M parameters; ggml context ${(tr.ctx.memBytes / 2 ** 30).toFixed(2)} GiB reserved`,
);

const rng = new Rng(1);
const sample = (lo: number, hi: number): number[][] =>
  Array.from({ length: B }, () => {
    const s = lo + rng.int(hi - lo - T - 1);
    return ids.slice(s, s + T + 1);
  });
let peakRss = 0;
const start = performance.now();
let last = 0;
for (let s = 0; s < STEPS; s++) {
  const r = await tr.trainStep([sample(0, split)]);
  last = r.loss;
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  process.stdout.write(`\rstep ${r.step}/${STEPS} loss ${r.loss.toFixed(3)} lr ${r.lr.toExponential(2)}   `);
}
const secs = (performance.now() - start) / 1000;
const val = await tr.evaluate(sample(split, ids.length));
const tps = (STEPS * B * T) / secs;
console.log(`\n\n| metric | dajian | PyTorch |`);
console.log(`|---|---|---|`);
let torchNote = "n/a";
try {
  execFileSync("python3", ["-c", "import torch"], { stdio: "ignore" });
  torchNote = "installed — side-by-side run not wired yet";
} catch {
  torchNote = "not installed (apt-get install python3-torch libopenblas0-pthread)";
}
console.log(`| tokens/s | ${tps.toFixed(0)} | ${torchNote} |`);
console.log(`| peak RSS | ${(peakRss / 2 ** 20).toFixed(0)} MiB | |`);
console.log(`| train loss (last step) | ${last.toFixed(3)} | |`);
console.log(`| validation loss | ${val.toFixed(3)} | |`);
console.log(
  `config: vocab ${config.vocabSize}, layers ${config.layers}, dim ${config.dim}, seq ${T}, batch ${B}, ${STEPS} steps`,
);
tr.dispose();
