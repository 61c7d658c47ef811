// Training core for llama models on ggml: one graph for forward + backward (gradients accumulate over micro-batches),
// a second graph with ggml's in-graph AdamW step per parameter (its moments persist across steps), warm-up + cosine
// learning rate, and global gradient-norm clipping.

import { DajianError } from "../core/errors.js";

import type { Context, Engine, Graph, Tensor } from "../engine/index.js";
import {
  llamaTensorShapes,
  validateLlamaConfig,
  writeLlamaGguf,
  type LlamaConfig,
  type WriteLlamaOptions,
} from "./llama-gguf.js";
import { buildLlamaForward, createLlamaWeights, type LlamaWeights } from "./llama-model.js";
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

export interface StepResult {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
}

export class LlamaTrainer {
  readonly ctx: Context;
  readonly weights: LlamaWeights;
  readonly hyper: TrainHyper;
  step = 0;
  private readonly tokens: Tensor;
  private readonly targets: Tensor;
  private readonly loss: Tensor;
  private readonly gTrain: Graph;
  private readonly gOpt: Graph;
  private readonly params: Tensor[];
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
    const nParams = llamaTensorShapes(config).reduce((a, s) => a + s.dims.reduce((x, y) => x * y, 1), 0);
    // Arena: params + grads + 2 moments, one-hot targets, forward activations (per token and layer: projections,
    // norms, FFN, T×heads attention scores in several stages; logits/softmax per token) and 3× that for backward —
    // the budget Graph.backward() checks. Over-reserving is cheap: untouched pages never become resident.
    const perTok = config.layers * (16 * config.dim + 6 * config.ffn + 6 * config.heads * T) + 6 * this.V;
    const actBytes = T * B * perTok * 4;
    const memBytes = Math.ceil(nParams * 16 + this.V * T * B * 4 + actBytes * 4 * 1.2) + (64 << 20);
    this.ctx = engine.context({ memBytes });
    this.weights = createLlamaWeights(this.ctx, config, init ?? initLlamaWeights(config, hyper.seed ?? 1));
    this.params = [...this.weights.tensors.values()];
    for (const p of this.params) this.ctx.param(p);
    const fwd = buildLlamaForward(this.ctx, this.weights, T, B);
    this.tokens = fwd.tokens;
    this.targets = this.ctx.tensor([this.V, T * B]).name("targets");
    this.loss = this.ctx.loss(this.ctx.crossEntropyLoss(this.ctx.reshape(fwd.logits, [this.V, T * B]), this.targets));
    this.gTrain = this.ctx.graph({ grads: true, size: 16384 }).expand(this.loss).backward();
    this.grads = this.params.map((p) => this.gTrain.grad(p) as Tensor);
    this.adamHyper = this.ctx.tensor([7]).name("adamw");
    this.moments = this.params.map((p) => [this.ctx.tensor(p.shape).zero(), this.ctx.tensor(p.shape).zero()]);
    this.gOpt = this.ctx.graph({ size: 16384 });
    this.params.forEach((p, i) => {
      this.gOpt.expand(this.ctx.adamwStep(p, this.grads[i], this.moments[i][0], this.moments[i][1], this.adamHyper));
    });
  }

  get paramCount(): number {
    return this.params.reduce((a, p) => a + p.numel, 0);
  }

  /** Fill inputs: `batch` is B rows of T+1 token ids (inputs and the next-token targets). */
  private load(batch: number[][]): void {
    const { seq: T, batch: B } = this.hyper;
    if (batch.length !== B || batch.some((r) => r.length !== T + 1)) {
      throw new DajianError("invalid_input", `micro-batch must be ${B} rows of ${T + 1} tokens`, "fix the data loader");
    }
    const ids = new Int32Array(T * B);
    const tv = this.targets.view();
    tv.fill(0);
    batch.forEach((row, b) => {
      for (let t = 0; t < T; t++) {
        ids[b * T + t] = row[t];
        const y = row[t + 1];
        if (y < 0 || y >= this.V)
          throw new DajianError("invalid_input", `token id ${y} out of range`, "retokenize the data");
        tv[(b * T + t) * this.V + y] = 1;
      }
    });
    this.tokens.set(ids);
  }

  /** Mean loss of one micro-batch without touching the weights. */
  async evaluate(batch: number[][]): Promise<number> {
    this.load(batch);
    this.gTrain.reset();
    await this.gTrain.compute(this.engine.threads);
    return this.loss.get()[0];
  }

  /** One optimizer step over `accum` micro-batches. */
  async trainStep(microBatches: number[][][]): Promise<StepResult> {
    const K = microBatches.length;
    if (K < 1) throw new DajianError("invalid_input", "no micro-batches", "give at least one");
    this.gTrain.reset();
    let lossSum = 0;
    for (const mb of microBatches) {
      this.load(mb);
      await this.gTrain.compute(this.engine.threads);
      lossSum += this.loss.get()[0];
    }
    // Average over micro-batches and clip by the global norm, in place on the gradient accumulators.
    let sq = 0;
    const views = this.grads.map((g) => g.view());
    for (const v of views) for (let i = 0; i < v.length; i++) sq += v[i] * v[i];
    const norm = Math.sqrt(sq) / K;
    const clip = this.hyper.clip ?? 1;
    const scale = (1 / K) * (clip > 0 && norm > clip ? clip / norm : 1);
    if (scale !== 1) for (const v of views) for (let i = 0; i < v.length; i++) v[i] *= scale;
    const h = this.hyper;
    const lr = learningRate(h, this.step);
    const t = this.step + 1;
    const b1 = h.beta1 ?? 0.9;
    const b2 = h.beta2 ?? 0.95;
    this.adamHyper.set([lr, b1, b2, h.eps ?? 1e-8, h.weightDecay ?? 0.1, 1 / (1 - b1 ** t), 1 / (1 - b2 ** t)]);
    await this.gOpt.compute(this.engine.threads);
    this.step++;
    return { step: this.step, loss: lossSum / K, lr, gradNorm: norm };
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

  dispose(): void {
    this.ctx.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
