// npm run bench:serve — what does `dajian serve` cost on top of llama.cpp?
// Same run, same GGUF (a few-M-parameter llama model dajian writes itself, so generation time dominates):
//   direct: node-llama-cpp called in-process (LlamaChat on a context with N sequences);
//   served: `dajian serve` as its own process, streamed /v1/chat/completions over HTTP (SSE).
// At 1, 4 and 16 concurrent requests (rounds alternate direct/served): tokens/s and median time-to-first-token, with ratios; then /v1/models latency
// idle and while 16 generations run. Targets (issue 3): ≤ 5 % throughput loss, ≤ 10 ms added TTFT.
// Options: --max-tokens N (128) --rounds N (2) --threads N (default: cores-1, min 1) --levels 1,4,16 --keep
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { getLlama, LlamaChat, LlamaLogLevel, resolveChatWrapper, type ChatHistoryItem } from "node-llama-cpp";
import { ModelRegistry } from "../src/models/registry.js";
import { openHomeDb } from "../src/store/sqlite.js";
import { writeTinyLlamaGguf } from "../src/train/tiny-model.js";

const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : def;
};
const MAX_TOKENS = Number(opt("max-tokens", "128"));
const ROUNDS = Number(opt("rounds", "2"));
const THREADS = Number(opt("threads", String(Math.max(1, availableParallelism() - 1))));
const LEVELS = opt("levels", "1,4,16").split(",").map(Number);
const SEQUENCES = Math.max(...LEVELS);
const CTX = 1024;
const PROMPT = "Write a short note about annual leave, office hours and travel rules for new employees.";

interface Sample {
  ttftMs: number;
  tokens: number;
}
interface Level {
  concurrency: number;
  tokPerS: number;
  ttftMs: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN;
};

/** Run `concurrency` requests at once, ROUNDS times, alternating the contenders round by round (so load drifts on
 * a shared machine hit both alike). */
async function measureAlternating(concurrency: number, contenders: (() => Promise<Sample>)[]): Promise<Level[]> {
  const acc = contenders.map(() => ({ samples: [] as Sample[], tokens: 0, wall: 0 }));
  for (let r = 0; r < ROUNDS; r++) {
    for (const [k, one] of contenders.entries()) {
      const t0 = performance.now();
      const batch = await Promise.all(Array.from({ length: concurrency }, one));
      acc[k].wall += performance.now() - t0;
      for (const s of batch) acc[k].tokens += s.tokens;
      acc[k].samples.push(...batch);
    }
  }
  return acc.map((a) => ({
    concurrency,
    tokPerS: a.tokens / (a.wall / 1000),
    ttftMs: median(a.samples.map((s) => s.ttftMs)),
  }));
}

async function direct(modelPath: string): Promise<{ one: () => Promise<Sample>; dispose(): Promise<void> }> {
  const llama = await getLlama({ gpu: "auto", logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath });
  const context = await model.createContext({ contextSize: CTX, sequences: SEQUENCES, threads: THREADS });
  const free = Array.from({ length: SEQUENCES }, () => context.getSequence());
  const chatWrapper = resolveChatWrapper(model); // resolved once, as the server's LocalChatModel does
  const history: ChatHistoryItem[] = [{ type: "user", text: PROMPT }];
  const one = async (): Promise<Sample> => {
    const seq = free.pop()!;
    const chat = new LlamaChat({ contextSequence: seq, chatWrapper });
    const t0 = performance.now();
    let ttft = NaN;
    let tokens = 0;
    try {
      await chat.generateResponse(history, {
        maxTokens: MAX_TOKENS,
        temperature: 0,
        onTextChunk: () => {
          if (Number.isNaN(ttft)) ttft = performance.now() - t0;
        },
        onToken: (t) => (tokens += t.length),
      });
    } finally {
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

async function startServe(home: string): Promise<{ url: string; child: ChildProcess }> {
  const root = fileURLToPath(new URL("..", import.meta.url));
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(root, "src/cli/main.ts"), "serve", "--home", home, "--port", "0"],
    { cwd: root, stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, DAJIAN_LOG: "warn" } },
  );
  let err = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on("data", (b: Buffer) => {
      err += b.toString();
      const m = /serving on (http:\/\/\S+)/.exec(err);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`dajian serve exited (${code}): ${err}`)));
  });
  return { url, child };
}

async function served(url: string): Promise<() => Promise<Sample>> {
  const one = async (): Promise<Sample> => {
    const t0 = performance.now();
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "bench",
        messages: [{ role: "user", content: PROMPT }],
        max_tokens: MAX_TOKENS,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
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
    dim: 256,
    layers: 4,
    heads: 8,
    kvHeads: 4,
    ffn: 768,
    contextLength: CTX,
    seed: 3,
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
      `max_tokens ${MAX_TOKENS}, ${ROUNDS} rounds/level, ${THREADS} thread(s), ${cpus().length} CPU(s), greedy`,
  );

  const dm = await direct(gguf);
  const { url, child } = await startServe(home);
  try {
    const sm = await served(url);
    const d: Level[] = [];
    const s: Level[] = [];
    for (const c of LEVELS) {
      const [a, b] = await measureAlternating(c, [dm.one, sm]);
      d.push(a);
      s.push(b);
    }
    await dm.dispose();
    const idle = await modelsLatency(url);
    const busy = await modelsLatency(url, () =>
      Promise.all(
        Array.from({ length: SEQUENCES }, () =>
          fetch(`${url}/v1/chat/completions`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              model: "bench",
              messages: [{ role: "user", content: PROMPT }],
              max_tokens: MAX_TOKENS,
              temperature: 0,
            }),
          }).then((r) => r.arrayBuffer()),
        ),
      ),
    );

    const rows = LEVELS.map((c, i) => ({
      c,
      dTok: d[i].tokPerS,
      sTok: s[i].tokPerS,
      dT: d[i].ttftMs,
      sT: s[i].ttftMs,
    }));
    const f = (n: number, w = 9, p = 1) => n.toFixed(p).padStart(w);
    console.log(
      "\nconcurrency | direct tok/s | served tok/s | served/direct | direct TTFT ms | served TTFT ms | added TTFT ms",
    );
    console.log(
      "----------- | ------------ | ------------ | ------------- | -------------- | -------------- | -------------",
    );
    for (const r of rows)
      console.log(
        `${String(r.c).padStart(11)} | ${f(r.dTok, 12)} | ${f(r.sTok, 12)} | ${f(r.sTok / r.dTok, 13, 3)} | ${f(r.dT, 14)} | ${f(r.sT, 14)} | ${f(r.sT - r.dT, 13)}`,
      );
    console.log(
      `\n/v1/models latency: idle p50 ${idle.p50.toFixed(2)} ms, p99 ${idle.p99.toFixed(2)} ms; ` +
        `during ${SEQUENCES} generations p50 ${busy.p50.toFixed(2)} ms, p99 ${busy.p99.toFixed(2)} ms`,
    );
    const worstLoss = Math.max(...rows.map((r) => 1 - r.sTok / r.dTok));
    const worstTtft = Math.max(...rows.map((r) => r.sT - r.dT));
    console.log(
      `targets: throughput loss ≤ 5 % → worst ${(worstLoss * 100).toFixed(1)} % ${worstLoss <= 0.05 ? "✓" : "✗"}; ` +
        `added TTFT ≤ 10 ms → worst ${worstTtft.toFixed(1)} ms ${worstTtft <= 10 ? "✓" : "✗"}`,
    );
  } finally {
    child.kill("SIGTERM");
    if (!args.includes("--keep")) rmSync(home, { recursive: true, force: true });
  }
}

await main();
