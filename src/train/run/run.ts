// A from-scratch training run: settings in run.json, data and tokenizer prepared once, pre-flight memory/time,
// the step loop (seeded batch sampling, validation, metrics, loss curve, atomic checkpoints) and the GGUF export.
// Everything a later step depends on — weights, AdamW moments, step, sampler RNG, schedule — is in the checkpoint,
// so `resume` after a kill continues with exactly the losses an uninterrupted run produces.

import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { DajianError } from "../../core/errors.js";
import { noProgress, type ProgressFn } from "../../core/progress.js";
import { Engine } from "../../engine/index.js";
import { CHATML_TEMPLATE, type BpeVocab } from "../../tokenizer/index.js";
import type { LlamaFileType } from "../llama-gguf.js";
import { Rng } from "../rng.js";
import { LlamaTrainer, type TrainHyper } from "../trainer.js";
import { loadCheckpoint, readCheckpointState, saveCheckpoint } from "./checkpoint.js";
import { prepareData, writeAtomic, type TokenFile } from "./data.js";
import { MetricsLog, writeLossCurve, type StepMetrics } from "./metrics.js";
import { assertFits, availableMemory, describeEstimate, estimateTraining } from "./preflight.js";
import { PRESET_LR, llamaConfig, resolveShape, type ModelShape } from "./presets.js";

export interface StopRule {
  steps?: number;
  tokens?: number;
  minutes?: number;
}

export interface TrainRunOptions {
  data: string[];
  out: string;
  runDir: string;
  preset?: string;
  shape?: Partial<ModelShape>;
  seed?: number;
  stop?: StopRule;
  lr?: number;
  minLr?: number;
  warmup?: number;
  accum?: number;
  clip?: number;
  weightDecay?: number;
  threads?: number;
  /** Validate every N steps (default: about ten times per run). */
  valEvery?: number;
  /** Micro-batches of validation windows per evaluation. Default 4. */
  valBatches?: number;
  /** Checkpoint every N steps (default: at each validation). */
  checkpointEvery?: number;
  type?: LlamaFileType;
  /** Reuse this GGUF's tokenizer instead of learning one. */
  tokenizer?: string;
  valFraction?: number;
  tokenizerSampleBytes?: number;
  /** Memory ceiling for the pre-flight check (default: what the OS reports available). */
  maxMemory?: number;
  name?: string;
}

/** run.json: the resolved settings a resume reuses. */
export interface RunSettings {
  version: 1;
  createdAt: string;
  data: string[];
  out: string;
  preset: string;
  shape: ModelShape;
  seed: number;
  stop: StopRule;
  lr: number;
  minLr: number;
  warmup?: number;
  accum: number;
  clip: number;
  weightDecay: number;
  threads: number;
  valEvery?: number;
  valBatches: number;
  checkpointEvery?: number;
  type: LlamaFileType;
  tokenizer?: string;
  valFraction: number;
  tokenizerSampleBytes: number;
  name: string;
}

/** What a checkpoint holds besides tensors. */
interface RunState {
  step: number;
  tokens: number;
  seconds: number;
  rng: ReturnType<Rng["state"]>;
  totalSteps: number | null;
  warmup: number;
  valEvery: number;
  checkpointEvery: number;
}

export interface TrainSummary {
  steps: number;
  tokens: number;
  tokensPerSecond: number;
  trainLoss: number;
  valLoss: number;
  valPerplexity: number;
  out: string;
  outBytes: number;
  type: LlamaFileType;
  runDir: string;
  params: number;
  vocabSize: number;
  seconds: number;
  /** Step the run resumed from (0 for a fresh run). */
  resumedFrom: number;
  preset: string;
}

export interface RunHooks {
  /** Human-readable lines (pre-flight, measured speed, export). */
  log?: (line: string) => void;
  onProgress?: ProgressFn;
  onStep?: (m: StepMetrics) => void;
  /** Stop like Ctrl-C: after the running step, with a checkpoint, rejecting with an "interrupted" error. */
  signal?: AbortSignal;
}

export const RUN_FILE = "run.json";
export const CHECKPOINT_FILE = "checkpoint.bin";

function posInt(v: number | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < 1)
    throw new DajianError("invalid_input", `${flag} must be a positive integer, got ${v}`, `pass e.g. ${flag} 100`);
  return v;
}

function posNum(v: number | undefined, flag: string, min = 0): number | undefined {
  if (v === undefined) return undefined;
  if (!(v > min) || !Number.isFinite(v))
    throw new DajianError("invalid_input", `${flag} must be a number above ${min}, got ${v}`, "fix the value");
  return v;
}

/** Validate options and fill defaults into the settings a run keeps. */
export function resolveSettings(o: TrainRunOptions): RunSettings {
  if (!o.data.length) throw new DajianError("invalid_input", "no training data", "pass --data FILE (text or JSONL)");
  if (!o.out) throw new DajianError("invalid_input", "no output model path", "pass --out MODEL.gguf");
  const preset = o.preset ?? "tiny";
  const shape = resolveShape(preset, o.shape);
  const stop: StopRule = {
    steps: posInt(o.stop?.steps, "--steps"),
    tokens: posInt(o.stop?.tokens, "--tokens"),
    minutes: posNum(o.stop?.minutes, "--minutes"),
  };
  const given = Object.values(stop).filter((v) => v !== undefined).length;
  if (given > 1)
    throw new DajianError("invalid_input", "more than one of --steps, --tokens, --minutes", "give only one");
  if (given === 0) stop.steps = 1000;
  const lr = posNum(o.lr, "--lr") ?? PRESET_LR[preset as keyof typeof PRESET_LR];
  const type = o.type ?? "F32";
  if (!["F32", "F16", "Q8_0", "Q4_0"].includes(type))
    throw new DajianError("invalid_input", `unknown --type ${type}`, "use F32, F16, Q8_0 or Q4_0");
  if (o.warmup !== undefined && !(Number.isInteger(o.warmup) && o.warmup >= 0))
    throw new DajianError("invalid_input", `--warmup must be a whole number ≥ 0`, "pass e.g. --warmup 20");
  if (o.weightDecay !== undefined && !(o.weightDecay >= 0))
    throw new DajianError("invalid_input", "--weight-decay must be ≥ 0", "pass e.g. --weight-decay 0.1");
  if (o.clip !== undefined && !(o.clip >= 0))
    throw new DajianError("invalid_input", "--clip must be ≥ 0 (0 = off)", "pass e.g. --clip 1");
  return {
    version: 1,
    createdAt: new Date().toISOString(),
    data: o.data.map((f) => resolve(f)),
    out: resolve(o.out),
    preset,
    shape,
    seed: o.seed ?? 1,
    stop,
    lr,
    minLr: posNum(o.minLr, "--min-lr") ?? lr * 0.1,
    warmup: o.warmup,
    accum: posInt(o.accum, "--accum") ?? 1,
    clip: o.clip ?? 1,
    weightDecay: o.weightDecay ?? 0.1,
    threads: posInt(o.threads, "--threads") ?? 2,
    valEvery: posInt(o.valEvery, "--val-every"),
    valBatches: posInt(o.valBatches, "--val-batches") ?? 4,
    checkpointEvery: posInt(o.checkpointEvery, "--checkpoint-every"),
    type: type as LlamaFileType,
    tokenizer: o.tokenizer ? resolve(o.tokenizer) : undefined,
    valFraction: o.valFraction ?? 0.05,
    tokenizerSampleBytes: o.tokenizerSampleBytes ?? 4e6,
    name: o.name ?? "dajian-llama",
  };
}

/** Start a new run in `o.runDir` (which must not hold one yet). */
export async function startRun(o: TrainRunOptions, hooks: RunHooks = {}): Promise<TrainSummary> {
  const settings = resolveSettings(o);
  const dir = resolve(o.runDir);
  if (existsSync(join(dir, RUN_FILE)))
    throw new DajianError(
      "already_exists",
      `${dir} already holds a training run`,
      `continue it with --resume ${dir}, or choose another --run-dir`,
    );
  for (const f of settings.data) {
    if (!existsSync(f))
      throw new DajianError("not_found", `training data ${f} not found`, "give text or JSONL files with --data");
  }
  if (settings.tokenizer && !existsSync(settings.tokenizer))
    throw new DajianError("not_found", `tokenizer model ${settings.tokenizer} not found`, "give a GGUF file");
  // Refuse an impossible shape before spending minutes on the tokenizer (the vocabulary can only shrink).
  preflight(settings, settings.shape.vocab, hooks, o.maxMemory);
  const created = !existsSync(dir);
  mkdirSync(dir, { recursive: true });
  writeAtomic(join(dir, RUN_FILE), JSON.stringify(settings, null, 2));
  try {
    return await execute(dir, settings, hooks, o.maxMemory, true);
  } catch (err) {
    // Nothing worth resuming yet (bad data, refused shape): leave no half-made run folder behind.
    if (created && !existsSync(join(dir, CHECKPOINT_FILE))) rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Continue the run in `dir` from its latest checkpoint (or from the start when it has none yet). `steps` extends
 * (or sets) the run's length: the warm-up stays, and the cosine decay is re-stretched to end at the new total, so
 * from the resumed step on the rate is what a run planned for `steps` from the start would use there (it rises
 * again when the run was already decaying). Later resumes keep the new total.
 */
export async function resumeRun(
  dir: string,
  over: { threads?: number; out?: string; maxMemory?: number; steps?: number } = {},
  hooks: RunHooks = {},
): Promise<TrainSummary> {
  const runFile = join(resolve(dir), RUN_FILE);
  if (!existsSync(runFile))
    throw new DajianError(
      "not_found",
      `no training run in ${dir}`,
      "give the run folder a previous `dajian train` printed",
    );
  const settings = JSON.parse(readFileSync(runFile, "utf8")) as RunSettings;
  if (over.threads) settings.threads = over.threads;
  if (over.out) settings.out = resolve(over.out);
  if (over.steps !== undefined) settings.stop = { steps: posInt(over.steps, "--steps") };
  return execute(resolve(dir), settings, hooks, over.maxMemory, false, over.steps);
}

function preflight(s: RunSettings, vocab: number, hooks: RunHooks, maxMemory?: number): void {
  const est = estimateTraining(llamaConfig(s.shape, vocab), {
    seq: s.shape.seq,
    batch: s.shape.batch,
    accum: s.accum,
    threads: s.threads,
  });
  hooks.log?.(`pre-flight: ${describeEstimate(est)}`);
  assertFits(
    est,
    maxMemory ?? availableMemory(),
    `the ${s.preset} preset at batch ${s.shape.batch} × seq ${s.shape.seq}`,
  );
}

async function execute(
  dir: string,
  s: RunSettings,
  hooks: RunHooks,
  maxMemory: number | undefined,
  announced: boolean,
  extendTo?: number,
): Promise<TrainSummary> {
  const log = hooks.log ?? (() => {});
  const progress = hooks.onProgress ?? noProgress;
  const { seq: T, batch: B } = s.shape;
  const dataDir = join(dir, "data");
  mkdirSync(dataDir, { recursive: true });
  const data = await prepareData({
    files: s.data,
    dir: dataDir,
    vocabSize: s.shape.vocab,
    tokenizerGguf: s.tokenizer,
    valFraction: s.valFraction,
    seed: s.seed,
    tokenizerSampleBytes: s.tokenizerSampleBytes,
    minTokens: B * T + 1,
    onProgress: progress,
  });
  const m = data.manifest;
  log(
    `data: ${m.documents.train} training / ${m.documents.validation} validation documents, ` +
      `${m.tokens.train} / ${m.tokens.validation} tokens${m.valFromTail ? " (validation = the stream's tail)" : ""}, ` +
      `vocabulary ${m.vocabSize}${m.documents.badLines ? `, ${m.documents.badLines} malformed lines skipped` : ""}`,
  );
  const vocab = withChatTemplate(data.vocab);
  const config = llamaConfig(s.shape, vocab.tokens.length);
  const limit = maxMemory ?? availableMemory();
  // Again with the real vocabulary (a small corpus runs out of merges); printed unless startRun just printed the same.
  preflight(s, vocab.tokens.length, announced && vocab.tokens.length === s.shape.vocab ? {} : hooks, limit);

  const ckptPath = join(dir, CHECKPOINT_FILE);
  const saved = readCheckpointState<RunState>(ckptPath);
  const hyper: TrainHyper = {
    seq: T,
    batch: B,
    lr: s.lr,
    minLr: s.minLr,
    warmupSteps: saved?.warmup ?? s.warmup ?? 100,
    totalSteps: saved?.totalSteps ?? fixedSteps(s) ?? Number.MAX_SAFE_INTEGER,
    clip: s.clip,
    accum: s.accum,
    weightDecay: s.weightDecay,
    seed: s.seed,
  };
  const engine = new Engine({ threads: s.threads });
  const tr = new LlamaTrainer(engine, config, hyper);
  let detachSignals = (): void => {};
  try {
    // The trainer knows its exact allocations now; its activation buffer is reserved but not yet touched.
    const est = estimateTraining(config, {
      seq: T,
      batch: B,
      accum: s.accum,
      threads: s.threads,
      blas: engine.blas !== null,
    });
    const exact = { ...est, persistentBytes: tr.ctx.memBytes, activationBytes: tr.computeBytes };
    exact.totalBytes = exact.persistentBytes + exact.activationBytes + exact.runtimeBytes;
    log(`engine: ${engine.describe()}; allocated training memory ${(exact.totalBytes / 2 ** 20).toFixed(0)} MiB`);
    assertFits(exact, limit, "this model");
    let state: RunState = saved
      ? loadCheckpoint<RunState>(ckptPath, tr.stateTensors())
      : {
          step: 0,
          tokens: 0,
          seconds: 0,
          rng: new Rng(s.seed ^ 0x5eed).state(),
          totalSteps: fixedSteps(s),
          warmup: hyper.warmupSteps ?? 0,
          valEvery: 0,
          checkpointEvery: 0,
        };
    if (extendTo !== undefined && extendTo !== state.totalSteps) {
      if (extendTo < state.step)
        throw new DajianError(
          "invalid_input",
          `the run is already at step ${state.step}`,
          `give --steps above ${state.step}, or resume without --steps`,
        );
      if (saved) log(`schedule now ${extendTo} steps (was ${state.totalSteps ?? "time-based"}): cosine re-stretched`);
      const next = withSchedule(state, s, extendTo);
      state = { ...next, warmup: saved ? state.warmup : next.warmup }; // a started run keeps its warm-up
    } else if (state.totalSteps !== null) state = withSchedule(state, s, state.totalSteps);
    tr.step = state.step;
    tr.hyper.totalSteps = state.totalSteps ?? Number.MAX_SAFE_INTEGER;
    tr.hyper.warmupSteps = state.warmup;
    const resumedFrom = state.step;
    if (resumedFrom > 0) log(`resumed from step ${resumedFrom} (${state.tokens} tokens seen)`);
    const rng = Rng.fromState(state.rng);
    const metrics = new MetricsLog(join(dir, "metrics.jsonl"), state.step);
    const curve = join(dir, "loss-curve.html");
    const title = `${s.name} — ${s.preset} preset, ${(tr.paramCount / 1e6).toFixed(2)}M parameters`;
    const valBatches = validationBatches(data.val, T, B, s.valBatches);
    const validate = async (): Promise<number> => {
      let sum = 0;
      for (const b of valBatches) sum += await tr.evaluate(b);
      return sum / valBatches.length;
    };
    const tokensPerStep = B * T * s.accum;
    const budget = s.stop.minutes !== undefined ? s.stop.minutes * 60 : Infinity;
    const sessionStart = state.seconds;
    const sessionTokens = state.tokens;
    let lastVal: number | undefined;
    let lastLoss = NaN;
    const done = (): boolean =>
      (state.totalSteps !== null && state.step >= state.totalSteps) || state.seconds >= budget;

    // Ctrl-C / SIGTERM (or hooks.signal): finish the running step, write a checkpoint, then stop with an error that
    // names the resume command. A second signal ends the process at once; the last checkpoint is still whole
    // (checkpoints are written atomically).
    let stopBy: string | null = null;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopBy) {
        detachSignals();
        process.kill(process.pid, sig);
        return;
      }
      stopBy = sig;
      log(`${sig}: stopping after step ${state.step + 1} and writing a checkpoint (again to quit at once)`);
    };
    detachSignals = () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);

    let sized = "";
    while (!done()) {
      const t0 = performance.now();
      const mbs = Array.from({ length: s.accum }, () => sampleBatch(data.train, rng, T, B));
      const r = await tr.trainStep(mbs);
      const dt = (performance.now() - t0) / 1000;
      state.step = r.step;
      state.tokens += tokensPerStep;
      state.seconds += dt;
      state.rng = rng.state();
      lastLoss = r.loss;
      if (!Number.isFinite(r.loss))
        throw new DajianError(
          "internal",
          `training diverged at step ${r.step} (loss ${r.loss})`,
          `lower --lr (now ${s.lr}) or raise --warmup; resume is possible from the last checkpoint`,
        );
      // --minutes: the schedule's length comes from the measured speed of the first steps.
      if (state.totalSteps === null && state.step >= 2) {
        const per = state.seconds / state.step;
        const total = Math.max(state.step + 1, Math.floor(budget / per));
        state = withSchedule(state, s, total);
        sized = ` (${total} steps fit in ${s.stop.minutes} min)`;
      }
      tr.hyper.totalSteps = state.totalSteps ?? Number.MAX_SAFE_INTEGER;
      tr.hyper.warmupSteps = state.warmup;
      const last = done();
      const rec: StepMetrics = {
        step: r.step,
        loss: r.loss,
        lr: r.lr,
        gradNorm: r.gradNorm,
        tokens: state.tokens,
        tokensPerSecond: tokensPerStep / dt,
        seconds: state.seconds,
        rssBytes: process.memoryUsage.rss(),
      };
      if (last || (state.valEvery > 0 && r.step % state.valEvery === 0)) {
        lastVal = await validate();
        rec.valLoss = lastVal;
        rec.valPerplexity = Math.exp(lastVal);
      }
      metrics.append(rec);
      hooks.onStep?.(rec);
      if (rec.valLoss !== undefined) writeLossCurve(curve, metrics.records, title);
      if (!last && !stopBy && hooks.signal?.aborted) stopBy = "abort";
      if (last || stopBy || (state.checkpointEvery > 0 && r.step % state.checkpointEvery === 0))
        saveCheckpoint(ckptPath, tr.stateTensors(), state);
      if (stopBy && !last)
        throw new DajianError(
          "interrupted",
          `training stopped (${stopBy}) at step ${state.step}; checkpoint saved in ${dir}`,
          `continue with: dajian train --resume ${dir}`,
        );
      if (r.step === resumedFrom + 2 && state.totalSteps !== null) {
        const per = (state.seconds - sessionStart) / 2;
        log(
          `measured ${per.toFixed(2)} s/step (${(tokensPerStep / per).toFixed(0)} tokens/s) → ` +
            `ETA ${fmtMinutes((state.totalSteps - r.step) * per)} for ${state.totalSteps - r.step} more steps${sized}`,
        );
      }
      progress({
        phase: "steps",
        done: r.step - resumedFrom,
        total: state.totalSteps !== null ? state.totalSteps - resumedFrom : undefined,
        item: `step ${r.step}`,
        counters: {
          loss: round(r.loss, 4),
          ...(lastVal !== undefined ? { val: round(lastVal, 4) } : {}),
          "tok/s": Math.round(rec.tokensPerSecond),
          "RSS MiB": Math.round(rec.rssBytes / 2 ** 20),
        },
      });
    }
    if (lastVal === undefined) lastVal = await validate(); // resumed a finished run: report its state again
    if (Number.isNaN(lastLoss)) lastLoss = metrics.records.at(-1)?.loss ?? NaN;
    writeLossCurve(curve, metrics.records, title);

    mkdirSync(resolve(s.out, ".."), { recursive: true });
    const outBytes = tr.exportGguf(s.out, vocab, {
      name: s.name,
      type: s.type,
      extra: { "general.description": `trained from scratch by dajian (${s.preset} preset, ${state.step} steps)` },
    });
    log(`exported ${s.out} (${s.type}, ${(outBytes / 2 ** 20).toFixed(1)} MiB)`);
    const sessionSeconds = state.seconds - sessionStart;
    const summary: TrainSummary = {
      steps: state.step,
      tokens: state.tokens,
      tokensPerSecond:
        sessionSeconds > 0 ? (state.tokens - sessionTokens) / sessionSeconds : state.tokens / state.seconds || 0,
      trainLoss: lastLoss,
      valLoss: lastVal,
      valPerplexity: Math.exp(lastVal),
      out: s.out,
      outBytes: statSync(s.out).size,
      type: s.type,
      runDir: dir,
      params: tr.paramCount,
      vocabSize: vocab.tokens.length,
      seconds: state.seconds,
      resumedFrom,
      preset: s.preset,
    };
    writeAtomic(join(dir, "summary.json"), JSON.stringify(summary, null, 2));
    return summary;
  } finally {
    detachSignals();
    data.train.close();
    data.val.close();
    tr.dispose();
  }
}

function fixedSteps(s: RunSettings): number | null {
  if (s.stop.steps !== undefined) return s.stop.steps;
  if (s.stop.tokens !== undefined) return Math.ceil(s.stop.tokens / (s.shape.batch * s.shape.seq * s.accum));
  return null;
}

/** Fill the parts of the schedule that depend on the run's length (once it is known). */
function withSchedule(st: RunState, s: RunSettings, total: number): RunState {
  // About ten validations per run, but at least 5 × val-batches steps apart (validation costs ≤ ~20 % of training).
  const auto = Math.min(1000, Math.max(5 * s.valBatches, Math.round(total / 10)));
  return {
    ...st,
    totalSteps: total,
    warmup: s.warmup ?? Math.min(100, Math.max(2, Math.round(total * 0.05))),
    valEvery: s.valEvery ?? auto,
    checkpointEvery: s.checkpointEvery ?? s.valEvery ?? auto,
  };
}

/** B random windows of T+1 tokens from the training stream. */
function sampleBatch(train: TokenFile, rng: Rng, T: number, B: number): number[][] {
  return Array.from({ length: B }, () => train.read(rng.int(train.length - T - 1), T + 1));
}

/** Fixed validation micro-batches: consecutive windows from the start of the validation stream. */
function validationBatches(val: TokenFile, T: number, B: number, maxBatches: number): number[][][] {
  const windows = Math.max(1, Math.floor((val.length - 1) / T));
  const n = Math.max(1, Math.min(maxBatches, Math.floor(windows / B)));
  return Array.from({ length: n }, (_, i) =>
    Array.from({ length: B }, (_, b) => val.read(((i * B + b) % windows) * T, T + 1)),
  );
}

function withChatTemplate(v: BpeVocab): BpeVocab {
  if (v.chatTemplate) return v;
  const has = (t: string): boolean => v.tokens.includes(t);
  return has("<|im_start|>") && has("<|im_end|>") ? { ...v, chatTemplate: CHATML_TEMPLATE } : v;
}

const round = (x: number, d: number): number => Number(x.toFixed(d));

function fmtMinutes(s: number): string {
  return s < 90 ? `${Math.round(s)} s` : `${(s / 60).toFixed(1)} min`;
}
