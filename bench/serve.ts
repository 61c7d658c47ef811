// npm run bench:serve — what does `dajian serve` cost on top of llama.cpp?
// Same run, same GGUF (a 3.4M-parameter llama model dajian writes itself: so small that any per-token overhead
// shows), same threads, context, sequences, prompt, max_tokens and greedy sampling on both sides:
//   direct: node-llama-cpp called in-process (LlamaChat on a context with N sequences);
//   served: `dajian serve` as its own process, streamed /v1/chat/completions over HTTP (SSE).
// At 1, 4 and 16 concurrent requests: rounds run both back to back in ABBA order; tok/s ratio = median of per-round
// ratios, added TTFT = median of paired differences, tokens counted alike (every sampled token), warm-up excluded.
// CPU ms per token of the working process is printed too: on a machine other processes load, it is the steadier
// comparison. Then /v1/models latency idle and while 16 generations run.
// Targets (issue 3): ≤ 5 % throughput loss, ≤ 10 ms added TTFT.
// The served model decodes parallel requests in one batch per step (src/models/batching.ts); plain node-llama-cpp
// splits such steps, so by default the baseline is node-llama-cpp as its users call it. --direct-batcher gives the
// direct side dajian's batcher too, which isolates what HTTP, SSE and the server cost on their own.
// Options: --dim N (256) --layers N (4) --ffn N (768) --std X (0.1, weight init) --max-tokens N (128) --rounds N (4) --threads N (default: cores-1, min 1) --levels 1,4,16 --keep
//          --prof DIR (CPU profile of the server process) --skip-models-latency --samples (every request's TTFT) --direct-batcher
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, LlamaChat, LlamaLogLevel, resolveChatWrapper, type ChatHistoryItem } from "node-llama-cpp";
import { StepBatcher } from "../src/models/batching.js";
import { ModelRegistry } from "../src/models/registry.js";
import { spawnServe } from "../src/server/testutil.js";
import { openHomeDb } from "../src/store/sqlite.js";
import { writeTinyLlamaGguf } from "../src/train/tiny-model.js";

const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : def;
};
const MAX_TOKENS = Number(opt("max-tokens", "128"));
const ROUNDS = Number(opt("rounds", "4"));
const THREADS = Number(opt("threads", String(Math.max(1, availableParallelism() - 1))));
const LEVELS = opt("levels", "1,4,16").split(",").map(Number);
const SEQUENCES = Math.max(...LEVELS);
const PROF = opt("prof", ""); // write a CPU profile of the server process into this folder
const DIRECT_BATCHER = args.includes("--direct-batcher");
const CTX = 1024;
// Model size: the default is tiny (≈3M parameters, ~2 ms of CPU per token), which makes any fixed per-token HTTP cost
// look large; `--dim 768 --layers 8 --ffn 2048` is closer to the models people serve.
const DIM = Number(opt("dim", "256"));
const LAYERS = Number(opt("layers", "4"));
const FFN = Number(opt("ffn", "768"));
const STD = Number(opt("std", "0.1"));
const PROMPT = "Write a short note about annual leave, office hours and travel rules for new employees.";

interface Sample {
  ttftMs: number;
  tokens: number;
}
interface Level {
  concurrency: number;
  tokPerS: number;
  ttftMs: number;
  /** Median over rounds of this contender's tok/s ÷ the first contender's (direct) in the same round. */
  ratioToFirst: number;
  ttftDeltaToFirst: number;
  /** Every request's TTFT in run order (printed with --samples). */
  ttfts: number[];
  /** CPU time (all threads, llama.cpp's included) the contender's process(es) spent per generated token. */
  cpuMsPerToken: number;
}

interface Contender {
  one: () => Promise<Sample>;
  /** CPU time used so far by the process(es) doing this contender's work. */
  cpuMs: () => number;
}

/** CPU time of this process (ms). */
const selfCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** CPU time of another process from /proc (ms; Linux). NaN where /proc is missing. */
function procCpuMs(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / CLK_TCK; // utime + stime, in clock ticks
  } catch {
    return NaN;
  }
}
const CLK_TCK = 100;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN;
};

/** Run `concurrency` requests at once, ROUNDS times per contender. Each round runs both contenders back to back in
 * ABBA order (so load drifting on a shared machine hits both alike); the ratio is the median of the per-round
 * ratios, which a single noisy round cannot move much. */
async function measureAlternating(concurrency: number, contenders: Contender[]): Promise<Level[]> {
  const acc = contenders.map(() => ({ samples: [] as Sample[], tokens: 0, wall: 0, rates: [] as number[], cpu: 0 }));
  for (let r = 0; r < ROUNDS; r++) {
    const order = [...contenders.keys()];
    if (r % 2) order.reverse();
    for (const k of order) {
      const c0 = contenders[k].cpuMs();
      const t0 = performance.now();
      const batch = await Promise.all(Array.from({ length: concurrency }, contenders[k].one));
      const wall = performance.now() - t0;
      acc[k].cpu += contenders[k].cpuMs() - c0;
      const tokens = batch.reduce((n, s) => n + s.tokens, 0);
      acc[k].wall += wall;
      acc[k].tokens += tokens;
      acc[k].rates.push(tokens / (wall / 1000));
      acc[k].samples.push(...batch);
    }
  }
  return acc.map((a) => ({
    concurrency,
    tokPerS: a.tokens / (a.wall / 1000),
    ttftMs: median(a.samples.map((s) => s.ttftMs)),
    ratioToFirst: median(a.rates.map((x, i) => x / acc[0].rates[i])),
    cpuMsPerToken: a.cpu / a.tokens,
    ttftDeltaToFirst: median(a.samples.map((s, i) => s.ttftMs - acc[0].samples[i].ttftMs)),
    ttfts: a.samples.map((s) => s.ttftMs),
  }));
}

async function direct(modelPath: string): Promise<{ one: () => Promise<Sample>; dispose(): Promise<void> }> {
  const llama = await getLlama({ gpu: "auto", logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath });
  const batcher = DIRECT_BATCHER ? new StepBatcher() : undefined;
  const context = await model.createContext({
    contextSize: CTX,
    sequences: SEQUENCES,
    threads: THREADS,
    ...(batcher ? { batching: { itemPrioritizationStrategy: batcher.strategy } } : {}),
  });
  const free = Array.from({ length: SEQUENCES }, () => context.getSequence());
  const chatWrapper = resolveChatWrapper(model); // resolved once, as the server's LocalChatModel does
  const history: ChatHistoryItem[] = [{ type: "user", text: PROMPT }];
  const one = async (): Promise<Sample> => {
    const t0 = performance.now();
    const seq = free.pop()!;
    const chat = new LlamaChat({ contextSequence: seq, chatWrapper });
    let ttft = NaN;
    let tokens = 0;
    const meter = seq.tokenMeter.getState();
    batcher?.begin();
    try {
      await chat.generateResponse(history, {
        maxTokens: MAX_TOKENS,
        temperature: 0,
        // First visible text, as on the served side (node-llama-cpp may report an empty chunk while it holds
        // back text that could start a stop trigger; a client sees nothing then).
        onTextChunk: (t) => {
          if (t && Number.isNaN(ttft)) ttft = performance.now() - t0;
        },
        onToken: (t) => (tokens += t.length),
      });
      // Counted as the server counts completion_tokens (every sampled token, held-back ones included).
      tokens = Math.max(tokens, seq.tokenMeter.diff(meter).usedOutputTokens);
    } finally {
      batcher?.end();
      chat.dispose({ disposeSequence: false });
      await seq.clearHistory();
      free.push(seq);
    }
    return { ttftMs: ttft, tokens };
  };
  await one(); // warm-up
  return {
    one,
    async dispose() {
      await context.dispose();
      await model.dispose();
    },
  };
}

const startServe = (home: string) => spawnServe(home, PROF ? ["--cpu-prof", "--cpu-prof-dir", PROF] : []);

/** A /v1/chat/completions request as every served contender sends it. */
const chatRequest = (url: string, stream: boolean) =>
  fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "bench",
      messages: [{ role: "user", content: PROMPT }],
      max_tokens: MAX_TOKENS,
      temperature: 0,
      ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
    }),
  });

async function served(url: string): Promise<() => Promise<Sample>> {
  const one = async (): Promise<Sample> => {
    const t0 = performance.now();
    const res = await chatRequest(url, true);
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
    let ttft = NaN;
    let tokens = 0;
    let buf = "";
    const dec = new TextDecoder();
    for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += dec.decode(part, { stream: true });
      let i: number;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const c = JSON.parse(line.slice(6));
        if (Number.isNaN(ttft) && c.choices?.[0]?.delta?.content) ttft = performance.now() - t0;
        if (c.usage) tokens = c.usage.completion_tokens;
      }
    }
    return { ttftMs: ttft, tokens };
  };
  await one(); // warm-up (loads the model)
  return one;
}

async function modelsLatency(url: string, during?: () => Promise<unknown>): Promise<{ p50: number; p99: number }> {
  const lat: number[] = [];
  let running = true;
  const load = during?.().finally(() => (running = false));
  const deadline = performance.now() + 3000;
  while ((during ? running : true) && performance.now() < deadline) {
    const t0 = performance.now();
    const r = await fetch(`${url}/v1/models`);
    await r.arrayBuffer();
    lat.push(performance.now() - t0);
  }
  await load;
  return { p50: pct(lat, 0.5), p99: pct(lat, 0.99) };
}

async function main() {
  const home = mkdtempSync(join(tmpdir(), "dj-bench-serve-"));
  const gguf = join(home, "bench.gguf");
  const w = writeTinyLlamaGguf(gguf, {
    dim: DIM,
    layers: LAYERS,
    heads: 8,
    kvHeads: 4,
    ffn: FFN,
    contextLength: CTX,
    seed: 3,
    // Wider than a training init (0.02) so the greedy choice is well separated: with near-uniform logits, float
    // differences between batch compositions flip tokens, and the position of the first visible text (what TTFT
    // measures) would then differ between otherwise identical requests.
    std: STD,
  });
  const c = w.config;
  const kvDim = c.kvHeads * (c.dim / c.heads);
  const params = c.vocabSize * c.dim * 2 + c.layers * (2 * c.dim * c.dim + 2 * c.dim * kvDim + 3 * c.dim * c.ffn);
  const db = openHomeDb(home);
  new ModelRegistry(db, home).add("bench", {
    kind: "local",
    path: gguf,
    contextSize: CTX,
    sequences: SEQUENCES,
    maxQueue: 64,
    threads: THREADS,
  });
  db.close();
  console.log(
    `bench:serve — ${(params / 1e6).toFixed(1)}M-param llama GGUF (${(w.bytes / 1048576).toFixed(1)} MiB F32), ` +
      `max_tokens ${MAX_TOKENS}, ${ROUNDS} rounds/level, ${THREADS} thread(s), ${cpus().length} CPU(s), greedy` +
      (DIRECT_BATCHER ? ", direct side with dajian's step batcher" : ", direct side plain node-llama-cpp"),
  );

  const dm = await direct(gguf);
  const { url, child } = await startServe(home);
  try {
    const sm = await served(url);
    const d: Level[] = [];
    const s: Level[] = [];
    for (const c of LEVELS) {
      const [a, b] = await measureAlternating(c, [
        { one: dm.one, cpuMs: selfCpuMs },
        // The server's CPU only: the benchmark's own HTTP client is not part of what `dajian serve` costs.
        { one: sm, cpuMs: () => procCpuMs(child.pid!) },
      ]);
      d.push(a);
      s.push(b);
      if (args.includes("--samples"))
        for (const [name, l] of [
          ["direct", a],
          ["served", b],
        ] as const)
          console.log(`c=${c} ${name} TTFT ms: ${l.ttfts.map((t) => t.toFixed(0)).join(" ")}`);
    }
    await dm.dispose();
    const skip = args.includes("--skip-models-latency"); // e.g. with --prof, to profile generation alone
    const idle = skip ? { p50: NaN, p99: NaN } : await modelsLatency(url);
    const busy = skip
      ? idle
      : await modelsLatency(url, () =>
          Promise.all(Array.from({ length: SEQUENCES }, () => chatRequest(url, false).then((r) => r.arrayBuffer()))),
        );

    const rows = LEVELS.map((c, i) => ({
      c,
      dTok: d[i].tokPerS,
      sTok: s[i].tokPerS,
      ratio: s[i].ratioToFirst,
      dT: d[i].ttftMs,
      sT: s[i].ttftMs,
      added: s[i].ttftDeltaToFirst,
      dCpu: d[i].cpuMsPerToken,
      sCpu: s[i].cpuMsPerToken,
    }));
    const f = (n: number, w = 9, p = 1) => n.toFixed(p).padStart(w);
    console.log(
      "\nconcurrency | direct tok/s | served tok/s | served/direct | direct TTFT ms | served TTFT ms | added TTFT ms | CPU ms/token direct | served | direct/served",
    );
    console.log(
      "----------- | ------------ | ------------ | ------------- | -------------- | -------------- | ------------- | ------------------- | ------ | -------------",
    );
    for (const r of rows)
      console.log(
        `${String(r.c).padStart(11)} | ${f(r.dTok, 12)} | ${f(r.sTok, 12)} | ${f(r.ratio, 13, 3)} | ${f(r.dT, 14)} | ${f(r.sT, 14)} | ${f(r.added, 13)} | ${f(r.dCpu, 19, 3)} | ${f(r.sCpu, 6, 3)} | ${f(r.dCpu / r.sCpu, 13, 3)}`,
      );
    console.log(
      "(served/direct: median over rounds of the paired tok/s ratio; added TTFT: median of paired differences; " +
        "CPU ms/token: all threads of the process doing the work — bench process for direct, server process for served)",
    );
    console.log(
      `\n/v1/models latency: idle p50 ${idle.p50.toFixed(2)} ms, p99 ${idle.p99.toFixed(2)} ms; ` +
        `during ${SEQUENCES} generations p50 ${busy.p50.toFixed(2)} ms, p99 ${busy.p99.toFixed(2)} ms`,
    );
    const worstLoss = Math.max(...rows.map((r) => 1 - r.ratio));
    const worstTtft = Math.max(...rows.map((r) => r.added));
    const worstCpu = Math.max(...rows.map((r) => r.sCpu / r.dCpu - 1));
    const load = loadavg()[0];
    console.log(
      `targets: throughput loss ≤ 5 % → worst ${(worstLoss * 100).toFixed(1)} % ${worstLoss <= 0.05 ? "✓" : "✗"}; ` +
        `added TTFT ≤ 10 ms → worst ${worstTtft.toFixed(1)} ms ${worstTtft <= 10 ? "✓" : "✗"}; ` +
        `CPU per token +${(worstCpu * 100).toFixed(1)} % worst`,
    );
    if (load > cpus().length)
      console.log(
        `note: load average ${load.toFixed(1)} on ${cpus().length} CPU(s) — wall-clock figures are dominated by other ` +
          "processes; the CPU-per-token columns are the steadier comparison",
      );
  } finally {
    child.kill("SIGTERM");
    if (!args.includes("--keep")) rmSync(home, { recursive: true, force: true });
  }
}

await main();
