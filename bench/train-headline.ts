// npm run train:headline — the README's headline: a ~10M-parameter llama (`small` preset) trained from scratch on the
// text of ../shared/data corpora (CMRC 2018, DRCD, SQuAD, XQuAD-zh passages) for 10 minutes of training on this
// machine, then scored and sampled through llama.cpp (node-llama-cpp).
// Options: --minutes N (default 10), --threads N (default 2), --preset NAME (default small), --dir DIR (run folder,
// default bench/results/headline-<time>). Tokenizer learning and tokenization come before the timed training.

import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, LlamaCompletion } from "node-llama-cpp";
import { terminalProgress, type ProgressEvent } from "../src/core/progress.js";
import { perplexity } from "../src/models/perplexity.js";
import { startRun } from "../src/train/run/run.js";

const { values: a } = parseArgs({
  options: {
    minutes: { type: "string", default: "10" },
    threads: { type: "string", default: "2" },
    preset: { type: "string", default: "small" },
    dir: { type: "string" },
  },
});
const dataDir = join(import.meta.dirname, "..", "..", "shared", "data");
const files = existsSync(dataDir)
  ? readdirSync(dataDir)
      .map((d) => join(dataDir, d, "corpus.jsonl"))
      .filter((f) => existsSync(f))
  : [];
if (files.length === 0) {
  console.error(`no corpora under ${dataDir} (expected <name>/corpus.jsonl with a "text" field per line)`);
  process.exit(1);
}
const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
const runDir = a.dir ?? join(import.meta.dirname, "results", `headline-${stamp}`);
const out = join(runDir, "model.gguf");

let phase = "";
let bar = terminalProgress();
const t0 = Date.now();
const s = await startRun(
  {
    data: files,
    out,
    runDir,
    preset: a.preset,
    stop: { minutes: Number(a.minutes) },
    threads: Number(a.threads),
    name: `dajian-${a.preset}-headline`,
  },
  {
    log: (l) => (bar.end(), console.error(l)),
    onProgress: (e: ProgressEvent) => {
      if (e.phase !== phase) [phase, bar] = [e.phase, (bar.end(), terminalProgress())];
      bar(e);
    },
  },
);
bar.end();
const wall = (Date.now() - t0) / 1000;

const val = join(runDir, "data", "val.txt");
const ppl = await perplexity(out, (await import("node:fs")).readFileSync(val, "utf8"), {
  threads: Number(a.threads),
  maxTokens: 4000, // llama.cpp returns a full-vocabulary distribution per token: bounded time
});

const prompts = ["The city of", "In 1066,", "北京是中国的", "台灣的", "The university"];
const samples: Array<[string, string]> = [];
const llama = await getLlama({ gpu: false, build: "never" });
try {
  const model = await llama.loadModel({ modelPath: out });
  const ctx = await model.createContext({ contextSize: model.trainContextSize, threads: Number(a.threads) });
  for (const p of prompts) {
    const seq = ctx.getSequence();
    const completion = new LlamaCompletion({ contextSequence: seq });
    const text = await completion.generateCompletion(p, { maxTokens: 48, temperature: 0.8, topK: 40, seed: 1 });
    samples.push([p, text.replace(/\s+/g, " ").trim()]);
    completion.dispose({ disposeSequence: true });
  }
  await ctx.dispose();
  await model.dispose();
} finally {
  await llama.dispose();
}

const row = (k: string, v: string): string => `| ${k} | ${v} |`;
console.log(
  [
    `\n## dajian train — headline (${a.preset} preset, ${a.minutes} min of training, ${a.threads} threads)\n`,
    "| | |",
    "|---|---|",
    row("parameters", `${(s.params / 1e6).toFixed(2)} M (vocabulary ${s.vocabSize})`),
    row("training", `${s.steps} steps · ${s.tokens.toLocaleString("en")} tokens · ${(s.seconds / 60).toFixed(1)} min`),
    row("throughput", `${s.tokensPerSecond.toFixed(0)} tokens/s`),
    row("final training loss", s.trainLoss.toFixed(3)),
    row("validation loss / perplexity (dajian)", `${s.valLoss.toFixed(3)} / ${s.valPerplexity.toFixed(1)}`),
    row(
      "validation perplexity (llama.cpp)",
      `${ppl.perplexity.toFixed(1)} over ${ppl.tokensScored} tokens (windows of ${ppl.contextSize})`,
    ),
    row("model", `${out} (${(s.outBytes / 2 ** 20).toFixed(1)} MiB ${s.type})`),
    row("wall time incl. tokenizer + data", `${(wall / 60).toFixed(1)} min`),
    "",
    "Samples (llama.cpp, temperature 0.8, top-k 40):",
    "",
    ...samples.map(([p, t]) => `- **${p}**${t}`),
  ].join("\n"),
);
