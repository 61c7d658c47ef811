// npm run bench:train — dajian's from-scratch trainer side by side with the same model in PyTorch (CPU), in one run,
// on the issue's fixed configuration: vocab 8192, 8 layers, d_model 256, 8 heads / 4 KV heads, FFN 688 (SwiGLU),
// seq 256, batch 16, f32, AdamW (β 0.9/0.95, weight decay 0.1), warm-up + cosine, clip 1.
// Both sides read the same token batches and the same initial weights from files this script writes, run as separate
// processes (so each one's peak RSS is its own: VmHWM), train for the same steps and report the validation loss on
// the same held-out batches.
// Env: STEPS (default 6), VAL_BATCHES (2), THREADS (2), BATCH, SEQ, LAYERS, DIM, FFN, VOCAB, CORPUS_MB (4),
// LR (1e-3), SKIP_TORCH=1, PYTHON (interpreter with torch; default /usr/bin/python3 then python3).
// PyTorch: Debian's python3-torch + libopenblas0-pthread (apt-get install python3-torch libopenblas0-pthread).

import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Engine } from "../src/engine/index.js";
import { BpeTokenizer, trainBpe } from "../src/tokenizer/index.js";
import { llamaTensorShapes, type LlamaConfig } from "../src/train/llama-gguf.js";
import { Rng } from "../src/train/rng.js";
import { LlamaTrainer, initLlamaWeights, learningRate, type TrainHyper } from "../src/train/trainer.js";

const env = (k: string, d: number): number => (process.env[k] ? Number(process.env[k]) : d);

interface Prepared {
  config: LlamaConfig;
  hyper: TrainHyper;
  threads: number;
}

interface SideResult {
  losses: number[];
  stepSeconds: number[];
  /** Process CPU time (all threads) per step: steadier than wall time on a shared machine. */
  stepCpuSeconds?: number[];
  valLoss: number;
  peakRss: number;
  version?: string;
  threads?: number;
  computeBytes?: number;
}

function readBatches(file: string, B: number, T: number): number[][][] {
  const buf = readFileSync(file); // small files sit in Node's shared pool: copy out exactly this file's bytes
  const all = new Int32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  const per = B * (T + 1);
  return Array.from({ length: all.length / per }, (_, s) =>
    Array.from({ length: B }, (_, b) => Array.from(all.subarray(s * per + b * (T + 1), s * per + (b + 1) * (T + 1)))),
  );
}

function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
}

/** The dajian side, in its own process. */
async function worker(dir: string): Promise<void> {
  const p = JSON.parse(readFileSync(join(dir, "prepared.json"), "utf8")) as Prepared;
  const { seq: T, batch: B } = p.hyper;
  const train = readBatches(join(dir, "train.i32"), B, T);
  const val = readBatches(join(dir, "val.i32"), B, T);
  const ib = readFileSync(join(dir, "init.f32"));
  const init = new Float32Array(ib.buffer.slice(ib.byteOffset, ib.byteOffset + ib.byteLength));
  const offsets = new Map<string, [number, number]>();
  let off = 0;
  for (const s of llamaTensorShapes(p.config)) {
    const n = s.dims.reduce((a, b) => a * b, 1);
    offsets.set(s.name, [off, off + n]);
    off += n;
  }
  const engine = new Engine({ threads: p.threads });
  process.stderr.write(`dajian engine: ${engine.describe()}\n`);
  const tb = performance.now();
  using tr = new LlamaTrainer(engine, p.config, p.hyper, (n) => init.subarray(...(offsets.get(n) ?? [0, 0])));
  const buildMs = performance.now() - tb;
  process.stderr.write(
    `dajian graph: ${tr.computeCtx.opCount} ops built through koffi in ${buildMs.toFixed(0)} ms (with weight init)\n`,
  );
  const losses: number[] = [];
  const stepSeconds: number[] = [];
  const stepCpuSeconds: number[] = [];
  for (const [s, batch] of train.entries()) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const r = await tr.trainStep([batch]);
    stepSeconds.push((performance.now() - t0) / 1000);
    const c = process.cpuUsage(c0);
    stepCpuSeconds.push((c.user + c.system) / 1e6);
    losses.push(r.loss);
    process.stderr.write(
      `dajian step ${s + 1}/${train.length} loss ${r.loss.toFixed(3)} ${stepSeconds.at(-1)?.toFixed(2)}s\n`,
    );
  }
  if (process.env.PROFILE === "1") {
    const prof = tr.profile(train[0], process.env.PROFILE_SHAPES === "1");
    const total = prof.reduce((a, e) => a + e.ms, 0);
    process.stderr.write(`\nprofile of one replica's forward+backward graph (${total.toFixed(0)} ms node by node):\n`);
    for (const e of prof.slice(0, 24))
      process.stderr.write(
        `  ${e.op.padEnd(40)} ${e.ms.toFixed(0).padStart(7)} ms ${((100 * e.ms) / total).toFixed(1).padStart(5)} %  cpu ${e.cpuMs.toFixed(0).padStart(6)} ms  ×${e.count}\n`,
      );
  }
  let v = 0;
  for (const b of val) v += await tr.evaluate(b);
  const res: SideResult = {
    losses,
    stepSeconds,
    stepCpuSeconds,
    valLoss: v / val.length,
    peakRss: peakRss(),
    computeBytes: tr.computeBytes,
  };
  console.log(JSON.stringify(res));
}

/** Run one side as a child process; its last stdout line is the JSON result, stderr streams through. */
function runSide(cmd: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<SideResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...extraEnv } });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const last = out.trim().split("\n").at(-1) ?? "";
      if (code !== 0 || !last.startsWith("{")) reject(new Error(`${cmd} exited with ${code}: ${out.slice(-500)}`));
      else resolve(JSON.parse(last) as SideResult);
    });
  });
}

/**
 * Token ids of the ../shared/data corpora under a BPE vocabulary trained on them. Tokenizer training takes minutes
 * on a busy 2-core machine, so the ids are cached in the temp folder (NO_CACHE=1 retrains).
 */
function corpusTokens(vocabTarget: number, corpusMb: number): { vocabSize: number; ids: Int32Array } {
  const cache = join(tmpdir(), `dajian-bench-train-v${vocabTarget}-c${corpusMb}.i32`);
  if (process.env.NO_CACHE !== "1" && existsSync(cache)) {
    const buf = readFileSync(cache);
    const all = new Int32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    console.log(`corpus: ${all.length - 1} tokens, vocabulary ${all[0]} (cached in ${cache})`);
    return { vocabSize: all[0], ids: all.subarray(1) };
  }
  const dataDir = join(import.meta.dirname, "..", "..", "shared", "data");
  const texts: string[] = [];
  if (existsSync(dataDir)) {
    let bytes = 0;
    for (const d of readdirSync(dataDir).sort()) {
      const f = join(dataDir, d, "corpus.jsonl");
      if (!existsSync(f)) continue;
      for (const line of readFileSync(f, "utf8").split("\n")) {
        if (!line.trim() || bytes > corpusMb * 1e6) continue;
        const t = (JSON.parse(line) as { text?: string }).text ?? "";
        texts.push(t);
        bytes += Buffer.byteLength(t);
      }
    }
  }
  if (texts.length === 0) throw new Error(`no corpus under ${dataDir}`);
  const t0 = performance.now();
  // the vocabulary is learned from the first ~1.5 MB (enough text for 8192 tokens; the merge search dominates)
  let n = 0;
  for (let b = 0; n < texts.length && b < 1.5e6; n++) b += Buffer.byteLength(texts[n]);
  const vocab = trainBpe(texts.slice(0, n), { vocabSize: vocabTarget });
  const tok = new BpeTokenizer(vocab);
  const ids: number[] = [vocab.tokens.length];
  for (const t of texts) for (const id of tok.encode(t + "\n")) ids.push(id);
  const all = Int32Array.from(ids);
  writeFileSync(cache, all);
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(`corpus: ${all.length - 1} tokens, vocabulary ${vocab.tokens.length} trained in ${secs} s`);
  return { vocabSize: all[0], ids: all.subarray(1) };
}

function findTorch(): string | null {
  if (process.env.SKIP_TORCH === "1") return null;
  const candidates = [process.env.PYTHON, "/usr/bin/python3", "python3"].filter((x): x is string => Boolean(x));
  for (const py of candidates) {
    try {
      execFileSync(py, ["-c", "import torch, numpy"], { stdio: "ignore" });
      return py;
    } catch {
      // try the next interpreter
    }
  }
  return null;
}

async function main(): Promise<void> {
  const STEPS = env("STEPS", 6);
  const VAL = env("VAL_BATCHES", 2);
  const B = env("BATCH", 16);
  const T = env("SEQ", 256);
  const threads = env("THREADS", 2);
  const { vocabSize, ids } = corpusTokens(env("VOCAB", 8192), env("CORPUS_MB", 4));
  const split = Math.floor(ids.length * 0.95);

  const config: LlamaConfig = {
    vocabSize,
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
  const hyper: TrainHyper = {
    seq: T,
    batch: B,
    lr: env("LR", 1e-3),
    warmupSteps: 2,
    totalSteps: STEPS,
    clip: 1,
    seed: 1,
  };
  const dir = mkdtempSync(join(tmpdir(), "dajian-bench-train-"));
  try {
    // Same data and init for both sides: token batches and initial weights as flat binary files.
    const rng = new Rng(1);
    const sample = (lo: number, hi: number, n: number): Int32Array => {
      const out = new Int32Array(n * B * (T + 1));
      for (let i = 0; i < n * B; i++) {
        const s = lo + rng.int(hi - lo - T - 1);
        out.set(ids.subarray(s, s + T + 1), i * (T + 1));
      }
      return out;
    };
    writeFileSync(join(dir, "train.i32"), sample(0, split, STEPS));
    writeFileSync(join(dir, "val.i32"), sample(split, ids.length, VAL));
    const shapes = llamaTensorShapes(config);
    const init = initLlamaWeights(config, 1);
    const parts = shapes.map((s) => init(s.name));
    writeFileSync(
      join(dir, "init.f32"),
      Buffer.concat(parts.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))),
    );
    writeFileSync(join(dir, "prepared.json"), JSON.stringify({ config, hyper, threads } satisfies Prepared));
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({
        vocab: config.vocabSize,
        layers: config.layers,
        dim: config.dim,
        heads: config.heads,
        kvHeads: config.kvHeads,
        ffn: config.ffn,
        seq: T,
        batch: B,
        normEps: config.normEps,
        ropeTheta: config.ropeTheta,
        threads,
        clip: hyper.clip,
        lrs: Array.from({ length: STEPS }, (_, s) => learningRate(hyper, s)),
        tensors: shapes.map((s) => [s.name, s.dims]),
      }),
    );
    const params = parts.reduce((a, p) => a + p.length, 0);
    console.log(
      `model: ${(params / 1e6).toFixed(2)}M parameters — vocab ${config.vocabSize}, ${config.layers} layers, d ${config.dim}, ` +
        `heads ${config.heads}/${config.kvHeads}, ffn ${config.ffn}, seq ${T}, batch ${B}, ${STEPS} steps, ${threads} threads`,
    );
    console.log(`engine: ${new Engine({ threads }).describe()}`);

    // The sides run one after the other; on a shared machine the load drifts, so TORCH_FIRST=1 swaps the order.
    const runDajian = (): Promise<SideResult> =>
      runSide(process.execPath, [...process.execArgv, process.argv[1], "--worker", dir]);
    const py = findTorch();
    let torch: SideResult | null = null;
    let dajian: SideResult | null = process.env.TORCH_FIRST === "1" && py ? null : await runDajian();
    if (py) {
      const torchEnv: NodeJS.ProcessEnv = { OMP_NUM_THREADS: String(threads) };
      delete process.env.OPENBLAS_CORETYPE;
      delete process.env.OPENBLAS_L2_SIZE;
      torch = await runSide(py, [join(import.meta.dirname, "train_torch.py"), dir], torchEnv);
    } else {
      console.log(
        (process.env.SKIP_TORCH === "1"
          ? "\nPyTorch skipped (SKIP_TORCH=1)."
          : "\nPyTorch not found — the PyTorch column is skipped.") +
          " Install it with: apt-get install python3-torch libopenblas0-pthread" +
          " (or point PYTHON at an interpreter that has torch and numpy).",
      );
    }

    dajian ??= await runDajian();
    // Throughput over steps 2…n: the first step of each side includes one-off allocation and warm-up.
    const tps = (r: SideResult): number => {
      const s = r.stepSeconds.length > 1 ? r.stepSeconds.slice(1) : r.stepSeconds;
      return (s.length * B * T) / s.reduce((a, b) => a + b, 0);
    };
    const cpuPerStep = (r: SideResult): number => {
      const all = r.stepCpuSeconds ?? [];
      const s = all.length > 1 ? all.slice(1) : all;
      return s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN;
    };
    const mib = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`;
    const row = (name: string, d: string, t: string, ratio: string): void =>
      console.log(`| ${name} | ${d} | ${t} | ${ratio} |`);
    const r = (x: number): string => `${x.toFixed(2)}×`;
    console.log(`\n| metric | dajian | PyTorch${torch ? ` ${torch.version}` : ""} | dajian / PyTorch |`);
    console.log("|---|---|---|---|");
    row(
      "tokens/s (training)",
      tps(dajian).toFixed(0),
      torch ? tps(torch).toFixed(0) : "n/a",
      torch ? r(tps(dajian) / tps(torch)) : "n/a",
    );
    row(
      "CPU seconds per step (all threads; lower is better)",
      cpuPerStep(dajian).toFixed(2),
      torch ? cpuPerStep(torch).toFixed(2) : "n/a",
      torch ? r(cpuPerStep(dajian) / cpuPerStep(torch)) : "n/a",
    );
    row(
      "peak RSS",
      mib(dajian.peakRss),
      torch ? mib(torch.peakRss) : "n/a",
      torch ? r(dajian.peakRss / torch.peakRss) : "n/a",
    );
    row(
      "first-step loss",
      dajian.losses[0].toFixed(4),
      torch ? torch.losses[0].toFixed(4) : "n/a",
      torch ? r(dajian.losses[0] / torch.losses[0]) : "n/a",
    );
    row(
      "last-step loss",
      (dajian.losses.at(-1) ?? 0).toFixed(4),
      torch ? (torch.losses.at(-1) ?? 0).toFixed(4) : "n/a",
      "",
    );
    row(
      `validation loss after ${STEPS * B * T} tokens`,
      dajian.valLoss.toFixed(4),
      torch ? torch.valLoss.toFixed(4) : "n/a",
      torch ? r(dajian.valLoss / torch.valLoss) : "n/a",
    );
    console.log(`\ndajian training-graph buffer (ggml-alloc): ${mib(dajian.computeBytes ?? 0)}`);
    console.log(`targets: tokens/s ≥ 1.0× (goal 1.5×), peak RSS ≤ 1.0×, validation loss within 2 %`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--worker") await worker(process.argv[3]);
else await main();
