// npm run bench:lora — LoRA fine-tuning throughput and peak memory, side by side in one run:
//   dajian LoRA r=8 and r=64 (all of q,k,v,o,gate,up,down) over a frozen F32 base, dajian full fine-tuning of the same
//   model, and a hand-written PyTorch LoRA (bench/lora_torch.py) on the same weights, rows and loss masks (CPU);
// plus LoRA over a Q8_0 base against the F32 base: validation loss on held-out company questions after the same steps.
// Every side runs in its own process, so peak RSS (VmHWM) is its own; "training MiB" subtracts the peak RSS the
// process had before its trainer existed (Node/tsx or Python/torch runtime, the rows), which is not the method's.
// lora8 / lora64 are the trainer's defaults: large f32 products on OpenBLAS when installed (src/engine/blas.ts), the
// FFN gate/up recomputed in the backward. :keep keeps them (LoraOptions.recomputeFfn false: faster, more memory);
// :ggml turns OpenBLAS off (DAJIAN_BLAS=off: ggml's own GEMM, what a machine without OpenBLAS gets).
// MODES=lora8:f16,lora8:f32 adds a stored transposed base copy (LoraOptions.baseTranspose), useful without OpenBLAS.
// CPU ms/step is the process's CPU time (all threads) per step — steadier than wall time on a shared machine.
// Env: STEPS (8, timed after 2 warm-up steps), THREADS (2), DIM (768), LAYERS (4), FFN (2048), HEADS (DIM/64),
// KV_HEADS (HEADS/3), SEQ (128), BATCH (4), MODES (extra dajian sides),
// Q8_STEPS (100; 0 skips the Q8_0 comparison), Q8_LR (3e-3), Q8_SEEDS (3 data orders), SKIP_TORCH=1, PYTHON (interpreter with torch + numpy).
// Targets (issue 6): LoRA memory ≤ 40 % of full fine-tuning; throughput ≥ 1.0× PyTorch LoRA; Q8_0 within 5 % of F32.

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChatFormatter, encodeExamples } from "../src/data/sft.js";
import { Engine } from "../src/engine/index.js";
import { GgufReader } from "../src/gguf/index.js";
import { llamaTensorShapes, writeLlamaGguf } from "../src/train/llama-gguf.js";
import { readLlamaConfig } from "../src/train/llama-model.js";
import { companyQa, trainCompanyBase } from "../src/train/lora/company.js";
import { LoraTrainer, parseTargets, type BaseTranspose, type SftRow } from "../src/train/lora/trainer.js";
import { Rng } from "../src/train/rng.js";
import { writeTinyLlamaGguf } from "../src/train/tiny-model.js";
import { LlamaTrainer } from "../src/train/trainer.js";

const env = (k: string, d: number): number => (process.env[k] ? Number(process.env[k]) : d);
const WARM = 2;
const ALL = parseTargets("q,k,v,o,gate,up,down");

interface Cfg {
  threads: number;
  seq: number;
  batch: number;
  steps: number;
  lr: number;
  alpha: number;
  vocab: number;
  layers: number;
  dim: number;
  heads: number;
  kvHeads: number;
  normEps: number;
  ropeTheta: number;
  tensors: Array<[string, number[]]>;
}

interface Side {
  stepSeconds: number[];
  /** Process CPU time (user + system, all threads) per step: steadier than wall time on a shared machine. */
  cpuSeconds: number[];
  losses: number[];
  peakRss: number;
  /** Peak RSS before the trainer existed (runtime, imports, rows): subtracted to get the training's own memory. */
  baseRss: number;
  version?: string;
}

function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : process.resourceUsage().maxRSS * 1024;
}

function readRows(dir: string, c: Cfg): SftRow[][] {
  const ib = readFileSync(join(dir, "rows.i32"));
  const ids = new Int32Array(ib.buffer.slice(ib.byteOffset, ib.byteOffset + ib.byteLength));
  const mask = readFileSync(join(dir, "masks.u8"));
  const per = c.seq + 1;
  return Array.from({ length: c.steps }, (_, s) =>
    Array.from({ length: c.batch }, (_, b) => {
      const at = (s * c.batch + b) * per;
      return { ids: Array.from(ids.subarray(at, at + per)), mask: Array.from(mask.subarray(at, at + per)) };
    }),
  );
}

/** One dajian side in its own process: "lora8", "lora64", "full". */
async function worker(mode: string, dir: string): Promise<void> {
  const c = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Cfg;
  const rows = readRows(dir, c);
  const engine = new Engine({ threads: c.threads });
  const base = join(dir, "base.gguf");
  const hyper = { seq: c.seq, batch: c.batch, lr: c.lr, totalSteps: c.steps, warmupSteps: 0 };
  const out: Side = { stepSeconds: [], cpuSeconds: [], losses: [], peakRss: 0, baseRss: peakRss() };
  const timed = async (f: () => Promise<number>): Promise<void> => {
    const [t0, c0] = [performance.now(), process.cpuUsage()];
    out.losses.push(await f());
    const c = process.cpuUsage(c0);
    out.stepSeconds.push((performance.now() - t0) / 1000);
    out.cpuSeconds.push((c.user + c.system) / 1e6);
  };
  if (mode === "full") {
    using r = GgufReader.open(base);
    const config = readLlamaConfig(r);
    using tr = new LlamaTrainer(engine, config, { ...hyper, weightDecay: 0 }, (n) => r.tensorF32(n));
    for (const step of rows) await timed(async () => (await tr.trainStep([step.map((x) => x.ids)])).loss);
  } else {
    const [rank, opt] = [Number(mode.slice(4).split(":")[0]), mode.split(":")[1]];
    const lora = {
      ...{ rank, alpha: c.alpha, dropout: 0, targets: ALL },
      ...(opt === "keep"
        ? { recomputeFfn: false }
        : opt === "ggml"
          ? {}
          : { baseTranspose: opt as BaseTranspose | undefined }),
    };
    using tr = new LoraTrainer(engine, base, lora, hyper);
    for (const step of rows) await timed(async () => (await tr.trainStep([step])).loss);
  }
  out.peakRss = peakRss();
  process.stdout.write(JSON.stringify(out) + "\n");
}

function runSide(cmd: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Side> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...extraEnv } });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.on("error", rej);
    child.on("close", (code) => {
      if (code !== 0) return rej(new Error(`${cmd} ${args.join(" ")} exited with ${code}`));
      try {
        res(JSON.parse(out.trim().split("\n").pop() ?? "") as Side);
      } catch (e) {
        rej(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
}

function findPython(): string | null {
  for (const py of [process.env.PYTHON, "/usr/bin/python3", "python3"].filter((x): x is string => Boolean(x))) {
    try {
      execFileSync(py, ["-c", "import torch, numpy"], { stdio: "ignore" });
      return py;
    } catch {
      /* next */
    }
  }
  return null;
}

const median = (a: number[]): number => {
  const s = a.slice().sort((x, y) => x - y);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};

interface Q8Result {
  steps: number;
  lr: number;
  /** Per data order: validation loss after training on the F32 base, on the Q8_0 base, and of the F32-trained
   * adapter evaluated over the Q8_0 base (the same function on both bases, without a second training trajectory). */
  runs: Array<{ seed: number; f32: number; q8: number; f32OnQ8: number }>;
}

/**
 * Q8_0 vs F32 base: the same LoRA run (same data order, same init) on both; validation loss on the held-out company
 * questions, over several data orders — a single run is not a measurement: at lr 1e-2 the F32 base alone spread
 * 0.33–0.46 across three data orders, and Q8_0 came out ahead or behind by up to 17 % depending on the order.
 */
async function q8VsF32(dir: string, threads: number): Promise<Q8Result> {
  const engine = new Engine({ threads });
  const b = await trainCompanyBase(engine, join(dir, "company-f32.gguf"), { steps: 200 });
  const q8 = join(dir, "company-q8.gguf");
  {
    using r = GgufReader.open(b.path);
    writeLlamaGguf(q8, b.config, b.vocab, (n) => r.tensorF32(n), { type: "Q8_0" });
  }
  const f = ChatFormatter.fromGguf(b.path);
  const toExamples = (split: "train" | "heldout") =>
    companyQa(split).map((p, i) => ({
      source: `${split}:${i}`,
      messages: [
        { role: "user" as const, content: p.question },
        { role: "assistant" as const, content: p.answer },
      ],
    }));
  const train = encodeExamples(toExamples("train"), f);
  const held = encodeExamples(toExamples("heldout"), f);
  const steps = env("Q8_STEPS", 100);
  const lr = env("Q8_LR", 3e-3);
  const seq = Math.max(...[...train, ...held].map((r) => r.ids.length)) - 1;
  const lora = { rank: 8, alpha: 16, dropout: 0, targets: ALL };
  const hyper = { seq, batch: 6, lr, totalSteps: steps, warmupSteps: 5, seed: 1 };
  const validate = async (tr: LoraTrainer): Promise<number> => {
    let sum = 0;
    let n = 0;
    for (let i = 0; i < held.length; i += 6) {
      const e = await tr.evaluate(held.slice(i, i + 6));
      sum += e.lossSum;
      n += e.tokens;
    }
    return sum / n;
  };
  const run = async (path: string, seed: number): Promise<{ loss: number; onQ8: number }> => {
    using tr = new LoraTrainer(engine, path, lora, hyper);
    const rng = new Rng(seed);
    for (let s = 0; s < steps; s++) await tr.trainStep([Array.from({ length: 6 }, () => train[rng.int(train.length)])]);
    using other = new LoraTrainer(engine, q8, lora, { ...hyper, lr: 0 });
    other.setAdapter(tr.adapterTensors());
    return { loss: await validate(tr), onQ8: await validate(other) };
  };
  const runs: Q8Result["runs"] = [];
  for (let i = 0; i < env("Q8_SEEDS", 3); i++) {
    const seed = 7 + i;
    const f32 = await run(b.path, seed);
    runs.push({ seed, f32: f32.loss, q8: (await run(q8, seed)).loss, f32OnQ8: f32.onQ8 });
  }
  return { steps, lr, runs };
}

function printQ8(q: Q8Result): void {
  const mean = (k: "f32" | "q8" | "f32OnQ8") => q.runs.reduce((a, r) => a + r[k], 0) / q.runs.length;
  console.log(
    `\nLoRA r=8 over the company base (F32 vs Q8_0), ${q.steps} steps at lr ${q.lr}, validation loss on held-out ` +
      `questions, per data order:`,
  );
  console.log("order   F32 base   Q8_0 base   Q8_0/F32   F32-trained adapter on Q8_0");
  for (const r of q.runs) {
    console.log(
      `${String(r.seed).padEnd(6)}  ${r.f32.toFixed(4).padStart(8)}  ${r.q8.toFixed(4).padStart(10)}  ` +
        `${(r.q8 / r.f32).toFixed(3).padStart(9)}  ${r.f32OnQ8.toFixed(4).padStart(12)}`,
    );
  }
  const ratio = mean("q8") / mean("f32");
  const f32s = q.runs.map((r) => r.f32);
  console.log(
    `mean    ${mean("f32").toFixed(4).padStart(8)}  ${mean("q8").toFixed(4).padStart(10)}  ${ratio.toFixed(3).padStart(9)}  ` +
      `${mean("f32OnQ8").toFixed(4).padStart(12)}   (${Math.abs(ratio - 1) <= 0.05 ? "within" : "NOT within"} 5 %; ` +
      `F32 spread across orders ${Math.min(...f32s).toFixed(3)}–${Math.max(...f32s).toFixed(3)})`,
  );
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "dajian-bench-lora-"));
  try {
    const threads = env("THREADS", 2);
    // Default base: d_model 768, 4 layers, GQA 12/4 heads, FFN 2048 (26 M parameters) — rank 64 is 1/12 of d_model,
    // as it is 1/16–1/64 in the 1–8 B models people fine-tune, not the 1/4 of a 256-wide toy (where A/B, their
    // gradients and AdamW moments outweigh the frozen base itself).
    const dim = env("DIM", 768);
    const heads = env("HEADS", dim / 64);
    const m = writeTinyLlamaGguf(join(dir, "base.gguf"), {
      dim,
      layers: env("LAYERS", 4),
      heads,
      kvHeads: env("KV_HEADS", heads % 3 === 0 ? heads / 3 : heads / 2),
      ffn: env("FFN", 2048),
      contextLength: 512,
      std: 0.02,
    });
    const c: Cfg = {
      threads,
      seq: env("SEQ", 128),
      batch: env("BATCH", 4),
      steps: env("STEPS", 8) + WARM,
      lr: 1e-3,
      alpha: 16,
      vocab: m.config.vocabSize,
      layers: m.config.layers,
      dim: m.config.dim,
      heads: m.config.heads,
      kvHeads: m.config.kvHeads,
      normEps: m.config.normEps,
      ropeTheta: m.config.ropeTheta,
      tensors: llamaTensorShapes(m.config).map((s) => [s.name, s.dims]),
    };
    writeFileSync(join(dir, "config.json"), JSON.stringify(c));
    // Rows: random tokens; the second half of each row is the trained "answer".
    const rng = new Rng(3);
    const n = c.steps * c.batch * (c.seq + 1);
    const ids = new Int32Array(n).map(() => rng.int(c.vocab));
    const masks = new Uint8Array(n).map((_, i) => (i % (c.seq + 1) > c.seq / 2 ? 1 : 0));
    writeFileSync(join(dir, "rows.i32"), ids);
    writeFileSync(join(dir, "masks.u8"), masks);
    {
      using r = GgufReader.open(m.path);
      const parts = c.tensors.map(([name]) => Buffer.from(r.tensorF32(name).buffer));
      writeFileSync(join(dir, "weights.f32"), Buffer.concat(parts));
    }
    const self = [...process.execArgv, process.argv[1], "--worker"];
    const sides: Array<[string, Side | null, string]> = [];
    // :keep keeps the FFN activations (no recompute); :ggml runs every product on ggml's own GEMM (no OpenBLAS);
    // MODES adds others, e.g. lora8:f16 (a stored F16 transposed base for dx = Wᵀ dy).
    const modes = ["full", "lora8", "lora64", "lora8:keep", "lora64:keep", "lora8:ggml", "lora64:ggml"];
    for (const mode of [...modes, ...(process.env.MODES ?? "").split(",").filter(Boolean)]) {
      const env = mode.endsWith(":ggml") ? { DAJIAN_BLAS: "off" } : {};
      sides.push([mode, await runSide(process.execPath, [...self, mode, dir], env), "dajian"]);
    }
    const py = process.env.SKIP_TORCH ? null : findPython();
    // PyTorch with its own OpenBLAS settings (not the thread timeout dajian sets for itself).
    const torchEnv = { OPENBLAS_CORETYPE: undefined, OPENBLAS_L2_SIZE: undefined, OPENBLAS_THREAD_TIMEOUT: undefined };
    for (const r of [8, 64]) {
      if (!py) sides.push([`torch-lora${r}`, null, "PyTorch"]);
      else
        sides.push([`torch-lora${r}`, await runSide(py, ["bench/lora_torch.py", dir, String(r)], torchEnv), "PyTorch"]);
    }
    const tokens = c.seq * c.batch;
    const stat = (s: Side | null) =>
      s
        ? {
            ms: median(s.stepSeconds.slice(WARM)) * 1000,
            cpuMs: median((s.cpuSeconds ?? []).slice(WARM)) * 1000,
            mib: s.peakRss / 2 ** 20,
            own: (s.peakRss - (s.baseRss ?? 0)) / 2 ** 20,
          }
        : null;
    const full = stat(sides[0][1]);
    const torch = (r: number) => stat(sides.find((x) => x[0] === `torch-lora${r}`)?.[1] ?? null);
    const params = c.tensors.reduce((a, [, d]) => a + d.reduce((x, y) => x * y, 1), 0);
    console.log(
      `\nbench:lora — llama ${(params / 1e6).toFixed(1)} M parameters (${((params * 4) / 2 ** 20).toFixed(0)} MiB F32): ` +
        `dim ${c.dim}, ${c.layers} layers, ${c.heads}/${c.kvHeads} heads, ffn ${m.config.ffn}, vocab ${c.vocab}; ` +
        `seq ${c.seq} × batch ${c.batch}, ${threads} threads, ${c.steps - WARM} timed steps (median), ` +
        `LoRA on q,k,v,o,gate,up,down\n`,
    );
    console.log(
      "side              ms/step   CPU ms/step   tokens/s   peak RSS MiB   training MiB   memory vs full   vs PyTorch LoRA (wall · CPU)",
    );
    for (const [name, s] of sides) {
      const st = stat(s);
      if (!st) {
        console.log(
          `${name.padEnd(16)}  skipped: ${process.env.SKIP_TORCH ? "SKIP_TORCH is set" : "python3 with torch + numpy not found (apt-get install python3-torch)"}`,
        );
        continue;
      }
      const r = name.startsWith("lora") ? parseInt(name.slice(4), 10) : null;
      const t = r ? torch(r) : null;
      console.log(
        `${name.padEnd(16)}  ${st.ms.toFixed(1).padStart(7)}  ${st.cpuMs.toFixed(0).padStart(12)}  ` +
          `${(tokens / (st.ms / 1000)).toFixed(0).padStart(9)}  ` +
          `${st.mib.toFixed(0).padStart(13)}  ${st.own.toFixed(0).padStart(13)}  ` +
          `${full ? `${((100 * st.own) / full.own).toFixed(0)} %`.padStart(15) : ""}` +
          `  ${t ? `${(t.ms / st.ms).toFixed(2)}× · ${(t.cpuMs / st.cpuMs).toFixed(2)}×`.padStart(16) : ""}`,
      );
    }
    if (env("Q8_STEPS", 100) > 0) printQ8(await q8VsF32(dir, threads));
    const l8 = stat(sides[1][1]);
    const l64 = stat(sides[2][1]);
    if (full && l8 && l64) {
      console.log(
        `targets: training memory (peak RSS above the runtime's) r=8 ${((100 * l8.own) / full.own).toFixed(0)} %, ` +
          `r=64 ${((100 * l64.own) / full.own).toFixed(0)} % of full (≤ 40 %); whole-process peak RSS ` +
          `${((100 * l8.mib) / full.mib).toFixed(0)} % / ${((100 * l64.mib) / full.mib).toFixed(0)} %` +
          (torch(8) && torch(64)
            ? ` · throughput ${((torch(8)?.ms ?? 0) / l8.ms).toFixed(2)}× / ${((torch(64)?.ms ?? 0) / l64.ms).toFixed(2)}× ` +
              `PyTorch LoRA by wall time, ${((torch(8)?.cpuMs ?? 0) / l8.cpuMs).toFixed(2)}× / ` +
              `${((torch(64)?.cpuMs ?? 0) / l64.cpuMs).toFixed(2)}× by CPU time (≥ 1.0×)`
            : ""),
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--worker") await worker(process.argv[3], process.argv[4]);
else await main();
