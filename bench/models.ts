// npm run bench:models — what does dajian's local provider (LocalChatModel: template, slot queue, per-request
// sequence reset, streaming bridge) cost on top of node-llama-cpp called directly? Same GGUF (a small llama model
// dajian writes), same context/sequences/threads, same run; 1 and 4 concurrent requests; tokens/s and median TTFT.
// Options: --max-tokens N (96) --rounds N (2) --threads N (default cores-1, min 1) --levels 1,4
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, LlamaChat, LlamaLogLevel, resolveChatWrapper, type ChatHistoryItem } from "node-llama-cpp";
import { LocalChatModel } from "../src/models/local.js";
import { writeTinyLlamaGguf } from "../src/train/tiny-model.js";

const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : def;
};
const MAX_TOKENS = Number(opt("max-tokens", "96"));
const ROUNDS = Number(opt("rounds", "2"));
const THREADS = Number(opt("threads", String(Math.max(1, availableParallelism() - 1))));
const LEVELS = opt("levels", "1,4").split(",").map(Number);
const SEQ = Math.max(...LEVELS);
const CTX = 1024;
const PROMPT = "Write a short note about annual leave, office hours and travel rules for new employees.";

type Sample = { ttftMs: number; tokens: number };
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function level(n: number, one: () => Promise<Sample>) {
  const samples: Sample[] = [];
  let wall = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = performance.now();
    samples.push(...(await Promise.all(Array.from({ length: n }, one))));
    wall += performance.now() - t0;
  }
  const tokens = samples.reduce((a, s) => a + s.tokens, 0);
  return { tokPerS: tokens / (wall / 1000), ttftMs: median(samples.map((s) => s.ttftMs)) };
}

const dir = mkdtempSync(join(tmpdir(), "dajian-bench-models-"));
try {
  const path = join(dir, "bench.gguf");
  writeTinyLlamaGguf(path, { seed: 7, dim: 256, layers: 4, heads: 8, kvHeads: 4, ffn: 768, contextLength: CTX });
  console.log(`model: ${path} (dim 256, 4 layers) · threads ${THREADS} · max tokens ${MAX_TOKENS} · rounds ${ROUNDS}`);

  // Direct node-llama-cpp: one context with SEQ sequences, a fresh LlamaChat per request.
  const llama = await getLlama({ gpu: "auto", logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: path });
  const ctx = await model.createContext({ contextSize: CTX, sequences: SEQ, threads: THREADS });
  const wrapper = resolveChatWrapper(model);
  const free = Array.from({ length: SEQ }, () => ctx.getSequence());
  const direct = async (): Promise<Sample> => {
    const seq = free.pop()!;
    const t0 = performance.now();
    let ttft = 0;
    let tokens = 0;
    const chat = new LlamaChat({ contextSequence: seq, chatWrapper: wrapper });
    const history: ChatHistoryItem[] = [
      { type: "user", text: PROMPT },
      { type: "model", response: [] },
    ];
    await chat.generateResponse(history, {
      maxTokens: MAX_TOKENS,
      // TTFT at the first text chunk on both paths (the dajian stream yields text, not tokens).
      onTextChunk: () => {
        if (!ttft) ttft = performance.now() - t0;
      },
      onToken: (t) => {
        tokens += t.length;
      },
    });
    chat.dispose({ disposeSequence: false });
    await seq.clearHistory();
    free.push(seq);
    return { ttftMs: ttft, tokens };
  };

  const dajian = await LocalChatModel.load("bench", {
    kind: "local",
    path,
    contextSize: CTX,
    sequences: SEQ,
    threads: THREADS,
  });
  const viaDajian = async (): Promise<Sample> => {
    const t0 = performance.now();
    let ttft = 0;
    let tokens = 0;
    for await (const c of dajian.stream([{ role: "user", content: PROMPT }], { maxTokens: MAX_TOKENS })) {
      if (c.type === "delta" && !ttft) ttft = performance.now() - t0;
      if (c.type === "done") tokens = c.result.usage.completionTokens;
    }
    return { ttftMs: ttft, tokens };
  };

  await direct(); // warm-up both paths
  await viaDajian();
  console.log(`backend: ${dajian.backend}\n`);
  console.log("concurrency | direct tok/s | dajian tok/s | ratio | direct TTFT ms | dajian TTFT ms | added TTFT ms");
  console.log("----------- | ------------ | ------------ | ----- | -------------- | -------------- | -------------");
  for (const n of LEVELS) {
    const d = await level(n, direct);
    const j = await level(n, viaDajian);
    console.log(
      `${String(n).padStart(11)} | ${d.tokPerS.toFixed(1).padStart(12)} | ${j.tokPerS.toFixed(1).padStart(12)} | ${(j.tokPerS / d.tokPerS).toFixed(3)} | ${d.ttftMs.toFixed(1).padStart(14)} | ${j.ttftMs.toFixed(1).padStart(14)} | ${(j.ttftMs - d.ttftMs).toFixed(1).padStart(13)}`,
    );
  }
  await dajian.dispose();
  await ctx.dispose();
  await model.dispose();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
