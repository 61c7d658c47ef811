// npm run bench:threads — which llama.cpp thread count should a local model get by default when the CPU is shared?
// Runs P processes at once (each its own context with S parallel sequences, like several `dajian serve`s or a
// server next to a training run) for each thread setting, and prints the aggregate tokens/s. "lib default" is
// node-llama-cpp's own choice (max(4, math cores) on CPU); "dajian default" is LocalChatModel's.
// Options: --threads 1,2,4,lib --procs 1,2 --sequences 4 --max-tokens 64 --rounds 2
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { getLlama, LlamaChat, LlamaLogLevel, resolveChatWrapper } from "node-llama-cpp";
import { defaultLocalThreads } from "../src/models/local.js";
import { writeTinyLlamaGguf } from "../src/train/tiny-model.js";

const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : def;
};
const PROMPT = "Write a short note about annual leave, office hours and travel rules for new employees.";

/** Child: one context, S sequences generating at once, ROUNDS times; prints tokens and seconds as JSON. */
async function child(gguf: string, threads: string, seqs: number, maxTokens: number, rounds: number) {
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: gguf });
  const context = await model.createContext({
    contextSize: 1024,
    sequences: seqs,
    threads: threads === "lib" ? undefined : Number(threads),
  });
  const wrapper = resolveChatWrapper(model);
  const seqList = Array.from({ length: seqs }, () => context.getSequence());
  const gen = async (i: number) => {
    const chat = new LlamaChat({ contextSequence: seqList[i], chatWrapper: wrapper });
    let n = 0;
    await chat.generateResponse([{ type: "user", text: PROMPT }], {
      maxTokens,
      temperature: 0,
      onToken: (t) => (n += t.length),
    });
    chat.dispose({ disposeSequence: false });
    await seqList[i].clearHistory();
    return n;
  };
  await gen(0); // warm-up
  process.stdout.write("ready\n");
  // Start together with the sibling processes: wait for the parent's go.
  await new Promise<void>((r) => process.stdin.once("data", () => r()));
  const t0 = performance.now();
  let tokens = 0;
  for (let r = 0; r < rounds; r++)
    tokens += (await Promise.all(seqList.map((_, i) => gen(i)))).reduce((a, b) => a + b, 0);
  process.stdout.write(
    JSON.stringify({ tokens, seconds: (performance.now() - t0) / 1000, used: context.currentThreads }) + "\n",
  );
  await context.dispose();
  await model.dispose();
}

async function runProcs(gguf: string, threads: string, procs: number, seqs: number, maxTokens: number, rounds: number) {
  const self = fileURLToPath(import.meta.url);
  const kids = Array.from({ length: procs }, () =>
    spawn(
      process.execPath,
      ["--import", "tsx", self, "--child", gguf, threads, String(seqs), String(maxTokens), String(rounds)],
      { stdio: ["pipe", "pipe", "inherit"] },
    ),
  );
  const lines = kids.map((k) => {
    let buf = "";
    const waiters: ((l: string) => void)[] = [];
    k.stdout!.on("data", (b: Buffer) => {
      buf += b.toString();
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        waiters.shift()?.(l);
      }
    });
    return () => new Promise<string>((r) => waiters.push(r));
  });
  const readies = lines.map((next) => next());
  await Promise.all(readies);
  const results = lines.map((next) => next());
  for (const k of kids) k.stdin!.write("go\n");
  const rs = (await Promise.all(results)).map((l) => JSON.parse(l) as { tokens: number; seconds: number });
  // Aggregate throughput: all tokens over the longest process's time.
  return rs.reduce((a, r) => a + r.tokens, 0) / Math.max(...rs.map((r) => r.seconds));
}

async function main() {
  const THREADS = opt("threads", "1,2,4,lib").split(",");
  const PROCS = opt("procs", "1,2").split(",").map(Number);
  const SEQS = Number(opt("sequences", "4"));
  const MAX = Number(opt("max-tokens", "64"));
  const ROUNDS = Number(opt("rounds", "2"));
  const dir = mkdtempSync(join(tmpdir(), "dj-bench-threads-"));
  const gguf = join(dir, "m.gguf");
  writeTinyLlamaGguf(gguf, { dim: 256, layers: 4, heads: 8, kvHeads: 4, ffn: 768, contextLength: 1024, seed: 3 });
  console.log(
    `bench:threads — ${availableParallelism()} CPU(s), load ${loadavg()[0].toFixed(1)}, ${SEQS} sequences/process, ` +
      `max_tokens ${MAX}, ${ROUNDS} rounds; dajian default here: ${defaultLocalThreads()} thread(s)`,
  );
  console.log("\nthreads  | " + PROCS.map((p) => `${p} process(es) tok/s`.padStart(22)).join(" | "));
  try {
    for (const t of THREADS) {
      const row: string[] = [];
      for (const p of PROCS) row.push((await runProcs(gguf, t, p, SEQS, MAX, ROUNDS)).toFixed(1).padStart(22));
      console.log(`${(t === "lib" ? "lib dflt" : t).padEnd(8)} | ${row.join(" | ")}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (args[0] === "--child") await child(args[1], args[2], Number(args[3]), Number(args[4]), Number(args[5]));
else await main();
