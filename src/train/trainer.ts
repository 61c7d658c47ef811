// Training core for llama models on ggml: one graph for forward + hand-written backward (llama-backward.ts; gradients
// accumulate over micro-batches) whose activations share one buffer planned by ggml-alloc, a second graph with
// ggml's in-graph AdamW step per parameter (its moments persist across steps), warm-up + cosine learning rate, and
// global gradient-norm clipping. Combining the replicas' gradients, their norm and the clip scale run in ggml graphs
// on all threads too, so the only work left to JavaScript between graphs is reading a few scalars.

import { DajianError } from "../core/errors.js";

import type { Context, Engine, Graph, Tensor } from "../engine/index.js";
import {
  llamaTensorShapes,
  validateLlamaConfig,
  writeLlamaGguf,
  type LlamaConfig,
  type WriteLlamaOptions,
} from "./llama-gguf.js";
import { buildLlamaTrainGraph, causalBlocks, createTrainInputs, type TrainInputs } from "./llama-backward.js";
import { createLlamaWeights, type LlamaWeights } from "./llama-model.js";
import { Rng } from "./rng.js";
import type { BpeVocab } from "../tokenizer/index.js";

export interface TrainHyper {
  /** Sequence length per example. */
  seq: number;
  /** Sequences per micro-batch. */
  batch: number;
  lr: number;
  minLr?: number;
  warmupSteps?: number;
  totalSteps: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this (0 = off). Default 1. */
  clip?: number;
  /** Micro-batches per optimizer step. Default 1. */
  accum?: number;
  seed?: number;
}

/** Initial weights: N(0, 0.02); residual output projections scaled by 1/sqrt(2·layers) (GPT-2); norms = 1. */
export function initLlamaWeights(config: LlamaConfig, seed: number): (name: string) => Float32Array {
  const rng = new Rng(seed);
  const shapes = new Map(llamaTensorShapes(config).map((s) => [s.name, s]));
  const resid = 0.02 / Math.sqrt(2 * config.layers);
  return (name) => {
    const s = shapes.get(name);
    if (!s) throw new DajianError("internal", `unknown weight ${name}`, "report this bug");
    const n = s.dims.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    if (s.isNorm) return a.fill(1);
    const std = /attn_output|ffn_down/.test(name) ? resid : 0.02;
    for (let i = 0; i < n; i++) a[i] = rng.normal() * std;
    return a;
  };
}

/** Learning rate at `step` (0-based): linear warm-up, then cosine decay to minLr. */
export function learningRate(h: TrainHyper, step: number): number {
  const warm = h.warmupSteps ?? 0;
  const minLr = h.minLr ?? h.lr * 0.1;
  if (step < warm) return (h.lr * (step + 1)) / warm;
  const p = Math.min(1, (step - warm) / Math.max(1, h.totalSteps - warm));
  return minLr + 0.5 * (h.lr - minLr) * (1 + Math.cos(Math.PI * p));
}

/**
 * The 7 values ggml's in-graph AdamW step reads (lr, β1, β2, ε, weight decay and the two bias corrections) for 0-based
 * optimizer step `step`. `defaults` differ by caller: pre-training decays weights, LoRA conventionally does not.
 */
export function adamwValues(
  h: TrainHyper,
  step: number,
  lr: number,
  defaults: { beta2: number; weightDecay: number },
): number[] {
  const t = step + 1;
  const b1 = h.beta1 ?? 0.9;
  const b2 = h.beta2 ?? defaults.beta2;
  return [lr, b1, b2, h.eps ?? 1e-8, h.weightDecay ?? defaults.weightDecay, 1 / (1 - b1 ** t), 1 / (1 - b2 ** t)];
}

/** Graph replicas the trainer runs for `threads` and micro-batch `batch` (see LlamaTrainer.replicas). */
export function trainerReplicas(threads: number, batch: number): number {
  return threads > 1 && batch % threads === 0 ? threads : 1;
}

/**
 * The trainer's persistent ggml arena, exactly: weights + 2 AdamW moments + one gradient set per replica, the inputs
 * (tokens, target positions, positions, masks), tensor and graph metadata. Activations live in the graphs'
 * ggml-alloc buffers. The pre-flight estimate uses the same formula.
 */
export function trainerArenaBytes(config: LlamaConfig, T: number, B: number, replicas: number): number {
  const shapes = llamaTensorShapes(config);
  const nParams = shapes.reduce((a, s) => a + s.dims.reduce((x, y) => x * y, 1), 0);
  const R = replicas;
  return (
    nParams * (12 + 4 * R) +
    (2 * T * B + R * (2 * T * T + T + 8)) * 4 +
    (shapes.length * (10 + 2 * R) + 16 * R) * 512 +
    (4 << 20)
  );
}

export interface StepResult {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
}

/** One copy of the training graph over a slice of the batch, with its own inputs and gradient accumulators. */
interface Replica {
  ctx: Context;
  io: TrainInputs;
  loss: Tensor;
  graph: Graph;
  grads: Tensor[];
}

export class LlamaTrainer {
  /** Weights, gradients, AdamW moments and inputs (persistent memory). */
  readonly ctx: Context;
  /** The (first replica's) training graph: metadata only, its memory is one ggml-alloc buffer. */
  readonly computeCtx: Context;
  /** Bytes of the training graphs' ggml-alloc buffers, all replicas together. */
  readonly computeBytes: number;
  /**
   * Copies of the training graph that run side by side, one thread each, on equal slices of every micro-batch:
   * ggml synchronises its threads with a spinning barrier after every graph node, which on a busy machine costs a
   * scheduler slice whenever a peer thread is descheduled (bench:train: 1 thread beat 2 under load), while
   * independent single-thread graphs never wait on each other. `engine.threads` replicas when they divide the
   * batch; otherwise one graph using all threads.
   */
  readonly replicas: number;
  readonly weights: LlamaWeights;
  readonly hyper: TrainHyper;
  step = 0;
  private readonly reps: Replica[];
  /** Adds the other replicas' gradients into the first's and takes each one's squared norm (sumSq). */
  private readonly gComb: Graph;
  private readonly sumSq: Tensor[];
  /** Multiplies the combined gradients by gradFactor (mean over replicas and micro-batches, times the clip scale). */
  private readonly gScale: Graph;
  private readonly gradFactor: Tensor;
  /** gScale's products, then AdamW on them. */
  private readonly gOpt: Graph;
  private readonly params: Tensor[];
  /** The first replica's accumulators: where the combined gradient ends up and what AdamW reads. */
  private readonly grads: Tensor[];
  private readonly moments: Array<[Tensor, Tensor]>;
  private readonly adamHyper: Tensor;
  private readonly V: number;

  constructor(
    readonly engine: Engine,
    readonly config: LlamaConfig,
    hyper: TrainHyper,
    init?: (name: string) => ArrayLike<number>,
  ) {
    validateLlamaConfig(config);
    this.hyper = hyper;
    const { seq: T, batch: B } = hyper;
    this.V = config.vocabSize;
    const R = trainerReplicas(engine.threads, B);
    this.replicas = R;
    const shapes = llamaTensorShapes(config);
    const graphSize = 512 + config.layers * 512; // ~150 nodes per layer, checked against ops + nodes
    const memBytes = trainerArenaBytes(config, T, B, R);
    this.ctx = engine.context({ memBytes });
    this.weights = createLlamaWeights(this.ctx, config, init ?? initLlamaWeights(config, hyper.seed ?? 1));
    this.params = [...this.weights.tensors.values()];
    for (const p of this.params) this.ctx.param(p); // ggml_opt_step_adamw requires the flag
    this.reps = [];
    for (let r = 0; r < R; r++) {
      const gradMap = new Map<string, Tensor>();
      for (const [name, p] of this.weights.tensors)
        gradMap.set(name, this.ctx.tensor(p.shape).name(`grad${r}.${name}`).zero());
      const oneThread = R > 1 || engine.threads === 1;
      const blocks = oneThread ? causalBlocks(T) : 1;
      const io = createTrainInputs(this.ctx, this.V, T, B / R, blocks);
      const ctx = engine.context({ memBytes: 48 << 20, noAlloc: true, uses: [this.ctx] });
      const built = buildLlamaTrainGraph(ctx, this.weights, gradMap, io, T, B / R, {
        threads: R > 1 ? 1 : engine.threads,
      });
      const graph = ctx.graph({ size: graphSize });
      for (const n of built.nodes) graph.expand(n);
      graph.allocate();
      this.reps.push({ ctx, io, loss: built.loss, graph, grads: [...gradMap.values()] });
    }
    this.computeCtx = this.reps[0].ctx;
    this.computeBytes = this.reps.reduce((a, r) => a + r.graph.bufferBytes, 0);
    this.grads = this.reps[0].grads; // same order as params
    this.adamHyper = this.ctx.tensor([7]).name("adamw");
    this.moments = this.params.map((p) => [this.ctx.tensor(p.shape).zero(), this.ctx.tensor(p.shape).zero()]);
    this.gradFactor = this.ctx.tensor([1]).name("grad_factor");
    const size = shapes.length * (8 + 2 * R) + 64; // Graph.expand bounds nodes by all ops of this context
    this.gComb = this.ctx.graph({ size });
    this.gScale = this.ctx.graph({ size });
    this.gOpt = this.ctx.graph({ size });
    this.sumSq = this.grads.map((g, i) => {
      let sum = g;
      for (const r of this.reps.slice(1)) sum = this.ctx.addInPlace(sum, r.grads[i]);
      const flat = this.ctx.reshape(sum, [g.numel, 1]);
      const sq = this.ctx.mulMat(flat, flat); // Σ g² as one dot product: no temporary the size of g
      this.gComb.expand(sq);
      return sq;
    });
    this.params.forEach((p, i) => {
      const g = this.ctx.mulInPlace(this.grads[i], this.gradFactor);
      this.gScale.expand(g);
      this.gOpt.expand(this.ctx.adamwStep(p, g, this.moments[i][0], this.moments[i][1], this.adamHyper));
    });
  }

  get paramCount(): number {
    return this.params.reduce((a, p) => a + p.numel, 0);
  }

  /** Fill inputs: `batch` is B rows of T+1 token ids (inputs and the next-token targets), split among replicas. */
  private load(batch: number[][]): void {
    const { seq: T, batch: B } = this.hyper;
    if (batch.length !== B || batch.some((r) => r.length !== T + 1)) {
      throw new DajianError("invalid_input", `micro-batch must be ${B} rows of ${T + 1} tokens`, "fix the data loader");
    }
    for (const row of batch) {
      for (const y of row) {
        if (!(Number.isInteger(y) && y >= 0 && y < this.V))
          throw new DajianError("invalid_input", `token id ${y} out of range`, "retokenize the data");
      }
    }
    const per = B / this.reps.length;
    this.reps.forEach((rep, r) => {
      const ids = new Int32Array(T * per);
      const at = new Int32Array(T * per);
      batch.slice(r * per, (r + 1) * per).forEach((row, b) => {
        for (let t = 0; t < T; t++) {
          ids[b * T + t] = row[t];
          at[b * T + t] = (b * T + t) * this.V + row[t + 1];
        }
      });
      rep.io.tokens.set(ids);
      rep.io.targetIdx.set(at);
    });
  }

  private zeroGrads(): void {
    for (const rep of this.reps) for (const g of rep.grads) g.view().fill(0);
  }

  /** Forward + backward of one micro-batch on every replica at once; returns the mean loss. */
  private async computeAll(batch: number[][]): Promise<number> {
    this.load(batch);
    const threads = this.reps.length > 1 ? 1 : this.engine.threads;
    await Promise.all(this.reps.map((r) => r.graph.compute(threads)));
    return this.reps.reduce((a, r) => a + r.loss.get()[0], 0) / this.reps.length;
  }

  /** Sum the replicas' gradients into the first one's; returns the squared norm of the sum. */
  private async combineGrads(): Promise<number> {
    await this.gComb.compute(this.engine.threads);
    return this.sumSq.reduce((a, t) => a + t.get()[0], 0);
  }

  /** Mean loss of one micro-batch without touching the weights (its gradients are then available). */
  async evaluate(batch: number[][]): Promise<number> {
    this.zeroGrads();
    const loss = await this.computeAll(batch);
    if (this.reps.length > 1) {
      await this.combineGrads();
      this.gradFactor.set([1 / this.reps.length]);
      await this.gScale.compute(this.engine.threads);
    }
    return loss;
  }

  /** One optimizer step over `accum` micro-batches. */
  async trainStep(microBatches: number[][][]): Promise<StepResult> {
    const K = microBatches.length;
    if (K < 1) throw new DajianError("invalid_input", "no micro-batches", "give at least one");
    this.zeroGrads();
    let lossSum = 0;
    for (const mb of microBatches) lossSum += await this.computeAll(mb);
    // Mean over replicas and micro-batches, clipped by the global norm: one factor, applied in the AdamW graph.
    const mean = 1 / (K * this.reps.length);
    const norm = mean * Math.sqrt(await this.combineGrads());
    const clip = this.hyper.clip ?? 1;
    this.gradFactor.set([clip > 0 && norm > clip ? (mean * clip) / norm : mean]);
    const lr = learningRate(this.hyper, this.step);
    this.adamHyper.set(adamwValues(this.hyper, this.step, lr, { beta2: 0.95, weightDecay: 0.1 }));
    await this.gOpt.compute(this.engine.threads);
    this.step++;
    return { step: this.step, loss: lossSum / K, lr, gradNorm: norm };
  }

  /** Time the first replica's forward + backward over `batch` node by node, summed per ggml op (slower than a step). */
  profile(batch: number[][], shapes = false): Array<{ op: string; ms: number; cpuMs: number; count: number }> {
    this.load(batch);
    this.zeroGrads();
    return this.reps[0].graph.profile(this.reps.length > 1 ? 1 : this.engine.threads, { shapes });
  }

  /** Gradient accumulator of one weight after evaluate()/trainStep() (copy). */
  gradient(name: string): Float32Array {
    const i = this.params.findIndex((p) => p === this.weights.tensors.get(name));
    if (i < 0) throw new DajianError("not_found", `no weight ${name}`, "use a llama tensor name");
    return this.grads[i].get();
  }

  /** Overwrite one weight (finite-difference checks, loading checkpoints). */
  setWeight(name: string, values: ArrayLike<number>): void {
    const t = this.weights.tensors.get(name);
    if (!t) throw new DajianError("not_found", `no weight ${name}`, "use a llama tensor name");
    t.set(values);
  }

  /** Current weights of one tensor (copy). */
  weight(name: string): Float32Array {
    const t = this.weights.tensors.get(name);
    if (!t) throw new DajianError("not_found", `no weight ${name}`, "use a llama tensor name");
    return t.get();
  }

  /** Export the current weights as a llama GGUF that llama.cpp loads. */
  exportGguf(path: string, vocab: BpeVocab, opts: WriteLlamaOptions = {}): number {
    return writeLlamaGguf(path, this.config, vocab, (n) => this.weight(n), opts);
  }

  /** Live weight and AdamW moment tensors by name, in a fixed order (checkpoints read and restore them; with `step`). */
  stateTensors(): Array<{ name: string; weight: Tensor; m: Tensor; v: Tensor }> {
    const names = [...this.weights.tensors.keys()];
    return this.params.map((p, i) => ({ name: names[i], weight: p, m: this.moments[i][0], v: this.moments[i][1] }));
  }

  dispose(): void {
    for (const r of this.reps) r.ctx.dispose();
    this.ctx.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
