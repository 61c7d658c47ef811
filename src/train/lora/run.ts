// A LoRA fine-tuning run: validation split, seeded epoch order, pre-flight memory/time, the step loop with metrics
// (metrics.jsonl + loss-curve.html), atomic checkpoints of A/B + AdamW moments, the adapter export and a summary.
// The batch of step s is a pure function of (seed, s), so `--resume` after a kill -9 continues exactly where the
// last checkpoint left off — only the steps after it are lost.

import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { DajianError } from "../../core/errors.js";
import { noProgress, type ProgressFn } from "../../core/progress.js";
import type { Engine } from "../../engine/index.js";
import { loadCheckpoint, readCheckpointState, saveCheckpoint } from "../run/checkpoint.js";
import { writeAtomic } from "../run/data.js";
import { MetricsLog, writeLossCurve } from "../run/metrics.js";
import { availableMemory, NOMINAL_GFLOPS_PER_THREAD } from "../run/preflight.js";
import { Rng } from "../rng.js";
import type { TrainHyper } from "../trainer.js";
import { checkFits, estimateLoraMemory, type LoraEstimate } from "./estimate.js";
import { LoraTrainer, checkLora, type LoraOptions, type SftRow } from "./trainer.js";

export interface FinetuneSettings {
  base: string;
  /** Adapter GGUF written at the end. */
  out: string;
  lora: LoraOptions;
  lr: number;
  batch: number;
  accum: number;
  /** Longest row in tokens (longer samples are truncated). */
  maxLen: number;
  /** Either epochs or steps decides the length. */
  epochs?: number;
  steps?: number;
  valSplit: number;
  seed: number;
  warmupSteps?: number;
  clip: number;
  weightDecay: number;
  /** Checkpoint (and validate) every this many steps. */
  checkpointEvery?: number;
}

export interface FinetuneSummary {
  steps: number;
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
  trainLossBefore: number;
  trainLossAfter: number;
  valLossBefore: number | null;
  valLossAfter: number | null;
  adapter: string;
  runDir: string;
  params: number;
  baseType: string;
  resumedFromStep: number;
}

export interface FinetuneHooks {
  progress?: ProgressFn;
  /** Stop (after a checkpoint) when aborted — e.g. on SIGINT. */
  signal?: AbortSignal;
  /** Printed once before training: the pre-flight line. */
  onPlan?: (plan: FinetunePlan) => void;
}

export interface FinetunePlan {
  estimate: LoraEstimate;
  /** The FFN's gate/up activations are recomputed in the backward (the default; --no-recompute-ffn keeps them). */
  recomputeFfn: boolean;
  trainRows: number;
  valRows: number;
  seq: number;
  totalSteps: number;
  secondsEstimate: number;
  availableBytes: number;
}

interface RunFile {
  settings: FinetuneSettings;
  dataHash: string;
  before?: { train: number; val: number | null };
}

interface CkState {
  step: number;
  tokens: number;
  seconds: number;
}

export const LORA_RUN_FILE = "run.json";
const CHECKPOINT = "checkpoint.bin";

export const DEFAULT_SETTINGS: Omit<FinetuneSettings, "base" | "out" | "lora"> = {
  lr: 2e-4,
  batch: 4,
  accum: 1,
  maxLen: 512,
  valSplit: 0.1,
  seed: 1,
  clip: 1,
  weightDecay: 0,
};

function fnv(rows: SftRow[]): string {
  let h = 0x811c9dc5;
  const mix = (x: number) => {
    h = Math.imul(h ^ (x & 0xffff), 16777619) >>> 0;
    h = Math.imul(h ^ (x >>> 16), 16777619) >>> 0;
  };
  for (const r of rows) {
    mix(r.ids.length);
    r.ids.forEach((id, i) => mix(id * 2 + (r.mask[i] ? 1 : 0)));
  }
  return h.toString(16);
}

function shuffled(n: number, seed: number): number[] {
  const rng = new Rng(seed);
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Validation split (seeded), truncation to maxLen and the sequence length of the graph. */
export function splitRows(
  rows: SftRow[],
  s: Pick<FinetuneSettings, "valSplit" | "seed" | "maxLen">,
): { train: SftRow[]; val: SftRow[]; seq: number } {
  const usable = rows
    .map((r) => ({ ids: r.ids.slice(0, s.maxLen), mask: r.mask.slice(0, s.maxLen) }))
    .filter((r) => r.mask.slice(1).some((m) => m));
  if (usable.length === 0) {
    throw new DajianError("invalid_input", "no example has a trained token", "check the data (assistant answers)");
  }
  const order = shuffled(usable.length, s.seed);
  const nVal = s.valSplit > 0 && usable.length >= 2 ? Math.max(1, Math.round(usable.length * s.valSplit)) : 0;
  const val = order.slice(0, nVal).map((i) => usable[i]);
  const train = order.slice(nVal).map((i) => usable[i]);
  const seq = Math.max(2, Math.max(...usable.map((r) => r.ids.length))) - 1;
  return { train, val, seq };
}

function stepsPerEpoch(n: number, s: FinetuneSettings): number {
  return Math.max(1, Math.ceil(n / (s.batch * s.accum)));
}

/** Micro-batches of step `step`: epoch order reshuffled per epoch from the seed. */
function batchFor(train: SftRow[], s: FinetuneSettings, step: number): SftRow[][] {
  const spe = stepsPerEpoch(train.length, s);
  const perm = shuffled(train.length, s.seed * 7919 + Math.floor(step / spe) + 1);
  const per = s.batch * s.accum;
  const pick = perm.slice((step % spe) * per, (step % spe) * per + per).map((i) => train[i]);
  const out: SftRow[][] = [];
  for (let i = 0; i < pick.length; i += s.batch) out.push(pick.slice(i, i + s.batch));
  return out;
}

async function meanLoss(tr: LoraTrainer, rows: SftRow[]): Promise<number> {
  let sum = 0;
  let n = 0;
  for (let i = 0; i < rows.length; i += tr.hyper.batch) {
    const e = await tr.evaluate(rows.slice(i, i + tr.hyper.batch));
    sum += e.lossSum;
    n += e.tokens;
  }
  return n ? sum / n : NaN;
}

function validate(s: FinetuneSettings): void {
  checkLora(s.lora);
  const bad = (m: string, hint: string): never => {
    throw new DajianError("invalid_input", m, hint);
  };
  if (!(s.lr > 0)) bad(`learning rate ${s.lr}`, "use a positive --lr such as 2e-4");
  for (const k of ["batch", "accum", "maxLen"] as const)
    if (!Number.isInteger(s[k]) || s[k] < 1) bad(`${k} ${s[k]}`, `use a positive integer --${k}`);
  if (s.steps !== undefined && (!Number.isInteger(s.steps) || s.steps < 1)) bad(`steps ${s.steps}`, "use --steps ≥ 1");
  if (s.epochs !== undefined && !(s.epochs > 0)) bad(`epochs ${s.epochs}`, "use --epochs > 0");
  if (!(s.valSplit >= 0 && s.valSplit < 1)) bad(`val split ${s.valSplit}`, "use --val-split in [0, 1)");
}

/**
 * Run (or resume) LoRA fine-tuning in `runDir`. With `resume`, settings come from the run folder and the data must
 * be the same; otherwise the folder must not hold a checkpoint yet.
 */
export async function finetune(
  engine: Engine,
  runDir: string,
  rows: SftRow[],
  given: FinetuneSettings | null,
  hooks: FinetuneHooks = {},
): Promise<FinetuneSummary> {
  const progress = hooks.progress ?? noProgress;
  mkdirSync(runDir, { recursive: true });
  const runFile = join(runDir, LORA_RUN_FILE);
  const ckPath = join(runDir, CHECKPOINT);
  const dataHash = fnv(rows);
  let run: RunFile;
  if (given === null) {
    if (!existsSync(runFile)) {
      throw new DajianError("not_found", `${runDir} is not a fine-tuning run folder`, "pass the folder given as --run");
    }
    run = JSON.parse(readFileSync(runFile, "utf8")) as RunFile;
    if (run.dataHash !== dataHash) {
      throw new DajianError("invalid_input", "the data differs from the run's", "resume with the same --data files");
    }
  } else {
    validate(given);
    if (existsSync(ckPath)) {
      throw new DajianError(
        "already_exists",
        `${runDir} already holds a run with a checkpoint`,
        "continue it with --resume DIR, or choose another --run folder",
      );
    }
    run = { settings: { ...given, base: resolve(given.base), out: resolve(given.out) }, dataHash };
  }
  const s = run.settings;
  const { train, val, seq } = splitRows(rows, s);
  const total = s.steps ?? Math.max(1, Math.round((s.epochs ?? 3) * stepsPerEpoch(train.length, s)));
  const hyper: TrainHyper = {
    seq,
    batch: s.batch,
    lr: s.lr,
    totalSteps: total,
    warmupSteps: s.warmupSteps ?? Math.min(100, Math.ceil(total * 0.05)),
    accum: s.accum,
    clip: s.clip,
    weightDecay: s.weightDecay,
    seed: s.seed,
  };
  const lora = s.lora;
  const estimate = estimateLoraMemory(s.base, lora, seq, s.batch, 1, engine.blas !== null);
  const availableBytes = availableMemory();
  const plan: FinetunePlan = {
    estimate,
    recomputeFfn: lora.recomputeFfn !== false,
    trainRows: train.length,
    valRows: val.length,
    seq,
    totalSteps: total,
    secondsEstimate:
      (estimate.flopsPerMicroBatch * s.accum * total) / (NOMINAL_GFLOPS_PER_THREAD * 1e9 * engine.threads),
    availableBytes,
  };
  hooks.onPlan?.(plan);
  checkFits(estimate, availableBytes);
  using tr = new LoraTrainer(engine, s.base, lora, hyper);
  let state: CkState = { step: 0, tokens: 0, seconds: 0 };
  if (given === null && readCheckpointState<CkState>(ckPath)) {
    state = loadCheckpoint<CkState>(ckPath, tr.checkpointTensors());
    tr.step = state.step;
  }
  const resumedFromStep = state.step;
  const trainEval = train.slice(0, 64);
  const valEval = val.slice(0, 256);
  if (!run.before) {
    progress({ phase: "evaluating", done: 0, item: "loss before training" });
    run.before = { train: await meanLoss(tr, trainEval), val: valEval.length ? await meanLoss(tr, valEval) : null };
  }
  writeAtomic(runFile, JSON.stringify(run, null, 2) + "\n");
  const metrics = new MetricsLog(join(runDir, "metrics.jsonl"), state.step);
  const curve = join(runDir, "loss-curve.html");
  const every = s.checkpointEvery ?? Math.max(1, Math.min(200, Math.ceil(total / 10)));
  const save = () => saveCheckpoint(ckPath, tr.checkpointTensors(), state);
  let t0 = performance.now();
  while (state.step < total && !hooks.signal?.aborted) {
    const r = await tr.trainStep(batchFor(train, s, state.step));
    const now = performance.now();
    state = { step: r.step, tokens: state.tokens + r.tokens, seconds: state.seconds + (now - t0) / 1000 };
    t0 = now;
    const validateNow = state.step % every === 0 || state.step === total;
    const valLoss = validateNow && valEval.length ? await meanLoss(tr, valEval) : undefined;
    t0 = performance.now(); // validation time is not training time
    metrics.append({
      step: state.step,
      loss: r.loss,
      lr: r.lr,
      gradNorm: r.gradNorm,
      tokens: state.tokens,
      tokensPerSecond: state.tokens / Math.max(1e-9, state.seconds),
      seconds: state.seconds,
      rssBytes: process.memoryUsage.rss(),
      ...(valLoss !== undefined ? { valLoss, valPerplexity: Math.exp(valLoss) } : {}),
    });
    if (validateNow) {
      save();
      writeLossCurve(curve, metrics.records, `LoRA r=${s.lora.rank} on ${s.base}`);
    }
    progress({
      phase: "steps",
      done: state.step,
      total,
      counters: {
        loss: Number(r.loss.toFixed(4)),
        ...(valLoss !== undefined ? { "val loss": Number(valLoss.toFixed(4)) } : {}),
        "tok/s": Math.round(state.tokens / Math.max(1e-9, state.seconds)),
      },
    });
  }
  save();
  writeLossCurve(curve, metrics.records, `LoRA r=${s.lora.rank} on ${s.base}`);
  if (hooks.signal?.aborted) {
    throw new DajianError(
      "busy",
      `stopped at step ${state.step}/${total}; checkpoint saved`,
      `continue with dajian finetune --resume ${runDir} --data …`,
    );
  }
  tr.exportAdapter(s.out);
  progress({ phase: "evaluating", done: 0, item: "loss after training" });
  const summary: FinetuneSummary = {
    steps: state.step,
    tokens: state.tokens,
    seconds: state.seconds,
    tokensPerSecond: state.tokens / Math.max(1e-9, state.seconds),
    trainLossBefore: run.before.train,
    trainLossAfter: await meanLoss(tr, trainEval),
    valLossBefore: run.before.val,
    valLossAfter: valEval.length ? await meanLoss(tr, valEval) : null,
    adapter: s.out,
    runDir,
    params: tr.paramCount,
    baseType: tr.baseType,
    resumedFromStep,
  };
  writeAtomic(join(runDir, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
  return summary;
}
