// LoRA on a frozen GGUF base: the base weights stay in their stored type in one ggml context (with A/B, their
// gradients, AdamW moments and the inputs); forward + hand-written backward (lora-graph.ts) live in a noAlloc context
// whose activations share one ggml-alloc buffer; forward-only graphs serve evaluation and (replica 0) logits.
// Loss, accumulation, clipping, AdamW and the schedule follow the full trainer (trainer.ts); the loss is masked so
// only the tokens an example marks as trained (assistant replies + EOS) count.

import { DajianError } from "../../core/errors.js";
import type { Context, Engine, Graph, Tensor } from "../../engine/index.js";
import { GgmlType, ggmlTypeName } from "../../gguf/index.js";
import { writeLoraAdapterGguf, type LoraTensorPair } from "../../gguf/adapter.js";
import { Rng } from "../rng.js";
import { adamwValues, learningRate, type StepResult, type TrainHyper } from "../trainer.js";
import { loadFrozenBase, type FrozenBase } from "./base.js";
import { estimateLoraMemory } from "./estimate.js";
import {
  BASE_T_BLOCKS,
  baseTChunks,
  buildLoraTrainGraph,
  dropoutKind,
  type LoraInputs,
  type LoraPair,
} from "./lora-graph.js";
import type { CheckpointTensors } from "../run/checkpoint.js";

export const LORA_TARGETS = {
  q: "attn_q",
  k: "attn_k",
  v: "attn_v",
  o: "attn_output",
  gate: "ffn_gate",
  up: "ffn_up",
  down: "ffn_down",
} as const;
export type LoraTarget = keyof typeof LORA_TARGETS;

export function parseTargets(s: string): LoraTarget[] {
  const out = s
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
  const bad = out.find((t) => !(t in LORA_TARGETS));
  if (bad || out.length === 0) {
    throw new DajianError(
      "invalid_input",
      `unknown LoRA target "${bad ?? s}"`,
      `use a comma list of ${Object.keys(LORA_TARGETS).join(",")}`,
    );
  }
  return [...new Set(out)] as LoraTarget[];
}

/**
 * How the backward pass gets Wᵀ for dx = Wᵀ dy: "graph" (default) transposes — and for quantized bases dequantizes —
 * each base matrix inside the training graph, where ggml-alloc frees it after its one use; "f16"/"f32" keep a
 * transposed copy for the whole run (2/4 extra bytes per base weight, no per-step copy).
 */
export type BaseTranspose = "graph" | "f16" | "f32";

export interface LoraOptions {
  rank: number;
  alpha: number;
  /** Dropout on the adapter's input (PEFT's lora_dropout). */
  dropout: number;
  targets: LoraTarget[];
  baseTranspose?: BaseTranspose;
  /**
   * Recompute the gate/up projections in the backward rather than keep them (lora-graph.ts): about a sixth less
   * memory at rank 64 for ≈ +20 % step time. Default true — memory first, as gradient checkpointing is on by default
   * in LLaMA-Factory and Unsloth (out-of-memory is their users' first complaint); false keeps them (faster).
   */
  recomputeFfn?: boolean;
}

/** One training sequence (src/data/sft.ts's SftSample): ≤ T+1 token ids; mask 1 = predicting that id is trained. */
export interface SftRow {
  ids: number[];
  mask: number[];
}

export interface LoraStepResult extends StepResult {
  /** Tokens whose prediction counted in the loss. */
  tokens: number;
}

/** One copy of the graphs over a slice of each micro-batch, with its own inputs and gradient accumulators. */
interface Replica {
  io: LoraInputs;
  /** This replica's A/B view (same A and B tensors). */
  pairs: Map<string, LoraPair>;
  /**
   * Gradients in parameter order: replica 0's persistent accumulators (what AdamW reads); the other replicas'
   * per-micro-batch graph outputs, added into replica 0's after each compute (buildLoraTrainGraph's gradOutputs).
   */
  grads: Tensor[];
  ctxs: Context[];
  gTrain: Graph;
  /** Forward + loss graph; its buffer is planned on first use (see LoraTrainer.computeBytes). */
  gEval: Graph;
  /** Forward graph that keeps the logits (replica 0 only, for forwardLogits); planned on first use too. */
  gLogits?: Graph;
  rawLoss: Tensor;
  evalLoss: Tensor;
  logits?: Tensor;
}

export class LoraTrainer {
  /** Base weights, adapter, gradients, AdamW moments and inputs (persistent memory). */
  readonly ctx: Context;
  readonly base: FrozenBase;
  readonly hyper: TrainHyper;
  readonly lora: LoraOptions;
  /**
   * Bytes of the graphs' ggml-alloc buffers, all replicas: the training graphs', plus the evaluation graphs' once
   * evaluate()/forwardLogits() has run — those are planned on first use, so a run that never validates does not
   * hold them.
   */
  get computeBytes(): number {
    return this.reps.reduce(
      (a, r) => a + r.gTrain.bufferBytes + r.gEval.bufferBytes + (r.gLogits?.bufferBytes ?? 0),
      0,
    );
  }
  /**
   * Graph copies that run side by side, one thread each, on equal slices of each micro-batch (as the full trainer
   * does, trainer.ts: ggml's per-node thread barrier stalls whenever a peer thread is descheduled — measured here
   * 668 ms/step with 1 thread vs 4858 ms with 2 on a loaded 2-core machine). `engine.threads` when it divides the
   * batch, else one graph using all threads.
   */
  readonly replicas: number;
  step = 0;
  private readonly pairs: LoraPair[] = [];
  private readonly params: Tensor[] = [];
  /** Replica 0's accumulators: where the combined gradient ends up and what AdamW reads. */
  private readonly grads: Tensor[];
  private readonly moments: Array<[Tensor, Tensor]>;
  private readonly reps: Replica[] = [];
  /** Graphs whose buffers are planned (the forward-only ones are, on first use). */
  private readonly planned = new Set<Graph>();
  private readonly gOpt: Graph;
  private readonly adamHyper: Tensor;
  private readonly V: number;

  constructor(
    readonly engine: Engine,
    basePath: string,
    lora: LoraOptions,
    hyper: TrainHyper,
  ) {
    checkLora(lora);
    this.lora = lora;
    this.hyper = hyper;
    const { seq: T, batch: B } = hyper;
    const R = engine.threads > 1 && B % engine.threads === 0 ? engine.threads : 1;
    this.replicas = R;
    const per = B / R;
    const N = T * per;
    const est = estimateLoraMemory(basePath, lora, T, B, R, engine.blas !== null);
    // The loss gathers targets by i32 index into a replica's flattened [vocab, T·B/R] logits.
    if (est.config.vocabSize * N >= 2 ** 31) {
      throw new DajianError("too_large", "vocab × seq × batch ≥ 2³¹ logits", "lower --max-len or --batch");
    }
    this.ctx = engine.context({ memBytes: est.arenaBytes });
    try {
      this.base = loadFrozenBase(this.ctx, basePath);
    } catch (err) {
      this.ctx.dispose();
      throw err;
    }
    const c = this.base.config;
    this.V = c.vocabSize;
    const rng = new Rng(hyper.seed ?? 1);
    for (let l = 0; l < c.layers; l++) {
      for (const t of lora.targets) {
        const name = `blk.${l}.${LORA_TARGETS[t]}.weight`;
        const w = this.base.weights.tensors.get(name) as Tensor;
        const [inDim, outDim] = w.shape;
        // PEFT's init: A ~ U(±1/sqrt(in)) (kaiming-uniform, a=√5), B = 0 — the adapter starts as the identity.
        const bound = 1 / Math.sqrt(inDim);
        const a = this.ctx.tensor([inDim, lora.rank]).name(`${name}.lora_a`);
        // Written in place: a Float32Array.from over {length} builds a JS array of doubles first — garbage that
        // measured ~15 MiB of peak RSS at rank 64 (d_model 768, 4 layers) before the GC returned it.
        const av = a.view();
        for (let i = 0; i < av.length; i++) av[i] = (rng.next() * 2 - 1) * bound;
        const b = this.ctx.tensor([lora.rank, outDim]).name(`${name}.lora_b`).zero();
        this.pairs.push({ name, a, b, gA: a, gB: b, inDim, outDim });
        this.params.push(this.ctx.param(a), this.ctx.param(b));
      }
    }
    // Row ids for reading blocks of non-F32 base matrices inside the graph (get_rows dequantizes), one per block.
    const rowIds = new Map<string, Tensor>();
    for (const w of this.base.weights.tensors.values()) {
      if (w.shape.length !== 2 || w.type === GgmlType.F32) continue;
      for (const [start, count] of baseTChunks(w.shape[1], w.shape[0])) {
        const key = `${start}:${count}`;
        if (rowIds.has(key)) continue;
        rowIds.set(key, this.ctx.tensor([count], GgmlType.I32).set(Array.from({ length: count }, (_, i) => start + i)));
      }
    }
    const storedT =
      lora.baseTranspose && lora.baseTranspose !== "graph" ? this.storeTransposed(lora.baseTranspose) : undefined;
    const causal = new Float32Array(T * T);
    for (let t = 0; t < T; t++) for (let s = t + 1; s < T; s++) causal[t * T + s] = -Infinity;
    const pos = this.ctx.tensor([T], GgmlType.I32).set(Array.from({ length: T }, (_, i) => i));
    const mask = this.ctx.tensor([T, T]).set(causal);
    const scale = lora.alpha / lora.rank;
    const one = this.ctx.tensor([1]).name("one").set([1]);
    // Nodes: ~360 per layer, plus 6 per extra block of a transposed base matrix (baseTChunks).
    const graphSize = 1024 + c.layers * (512 + 7 * 6 * BASE_T_BLOCKS);
    for (let r = 0; r < R; r++) {
      const pairs = new Map<string, LoraPair>();
      let grads: Tensor[] = [];
      const dropout = new Map<string, Tensor>();
      for (const p of this.pairs) {
        if (r === 0) {
          const q = { ...p, gA: this.ctx.tensor(p.a.shape).zero(), gB: this.ctx.tensor(p.b.shape).zero() };
          pairs.set(p.name, q);
          grads.push(q.gA, q.gB);
        } else pairs.set(p.name, p);
        const kind = dropoutKind(p.name);
        if (lora.dropout > 0 && !dropout.has(kind)) dropout.set(kind, this.ctx.tensor([p.inDim, N]));
      }
      const io: LoraInputs = {
        tokens: this.ctx.tensor([N], GgmlType.I32).name("tokens"),
        targetIdx: this.ctx.tensor([N], GgmlType.I32).name("target_idx"),
        rowMask: this.ctx.tensor([1, N]).name("row_mask"),
        one,
        pos,
        mask,
        lossScale: this.ctx.tensor([1]).name("loss_scale"),
        rowIds,
        dropout,
        baseT: storedT,
      };
      const ctxs: Context[] = [];
      const build = (backward: boolean, allocate: boolean, keepLogits = false) => {
        const ctx = engine.context({ memBytes: 32 << 20, noAlloc: true, uses: [this.ctx] });
        ctxs.push(ctx);
        const built = buildLoraTrainGraph(ctx, this.base.weights, pairs, io, T, per, {
          scale,
          backward,
          dropout: backward && lora.dropout > 0,
          threads: R > 1 ? 1 : engine.threads,
          ropeMode: this.base.ropeMode,
          ropeFreqScale: this.base.ropeFreqScale,
          recomputeFfn: lora.recomputeFfn ?? true,
          gradOutputs: backward && r > 0,
          keepLogits,
        });
        const graph = ctx.graph({ size: graphSize });
        for (const n of built.nodes) graph.expand(n);
        if (allocate) {
          graph.allocate();
          this.planned.add(graph);
        }
        return { graph, loss: built.loss, logits: built.logits, gradOut: built.gradOut };
      };
      const tr = build(true, true);
      const ev = build(false, false);
      const lg = r === 0 ? build(false, false, true) : undefined;
      if (r > 0) grads = this.pairs.flatMap((p) => [tr.gradOut.get(p.name)?.a, tr.gradOut.get(p.name)?.b] as Tensor[]);
      this.reps.push({
        io,
        pairs,
        grads,
        ctxs,
        gTrain: tr.graph,
        gEval: ev.graph,
        gLogits: lg?.graph,
        rawLoss: tr.loss,
        evalLoss: ev.loss,
        logits: lg?.logits,
      });
    }
    this.grads = this.reps[0].grads;
    this.adamHyper = this.ctx.tensor([7]).name("adamw");
    this.moments = this.params.map((p) => [this.ctx.tensor(p.shape).zero(), this.ctx.tensor(p.shape).zero()]);
    this.gOpt = this.ctx.graph({ size: this.params.length * 4 + 1024 });
    this.params.forEach((p, i) => {
      this.gOpt.expand(this.ctx.adamwStep(p, this.grads[i], this.moments[i][0], this.moments[i][1], this.adamHyper));
    });
  }

  /** Transposed copies [out, in] of every base matrix the backward multiplies by, made once through ggml. */
  private storeTransposed(kind: "f16" | "f32"): Map<Tensor, Tensor> {
    const type = kind === "f16" ? GgmlType.F16 : GgmlType.F32;
    const out = new Map<Tensor, Tensor>();
    for (const [name, w] of this.base.weights.tensors) {
      if (w.shape.length !== 2 || (name === "token_embd.weight" && !this.base.config.tiedEmbeddings)) continue;
      const [inDim, outDim] = w.shape;
      const t = this.ctx.tensor([outDim, inDim], type).name(`${name}.T`);
      using tmp = this.engine.context({ memBytes: inDim * outDim * 4 + outDim * 4 + (1 << 20), uses: [this.ctx] });
      const f =
        w.type === GgmlType.F32 || w.type === GgmlType.F16
          ? w
          : tmp.getRows(w, tmp.tensor([outDim], GgmlType.I32).set(Array.from({ length: outDim }, (_, i) => i)));
      tmp
        .graph({ size: 16 })
        .expand(tmp.cpy(tmp.transpose(f), t))
        .computeSync(this.engine.threads);
      out.set(w, t);
    }
    return out;
  }

  get config() {
    return this.base.config;
  }
  get paramCount(): number {
    return this.params.reduce((a, p) => a + p.numel, 0);
  }
  /** Stored type of the base's matrices (the first adapted one), for reports. */
  get baseType(): string {
    return ggmlTypeName(this.base.types.get(this.pairs[0].name) ?? GgmlType.F32);
  }

  /**
   * Fill the replicas' inputs from ≤ batch rows (replica r takes rows [r·per, (r+1)·per)); returns how many predictions
   * each replica trains. `dropSeed` null = no dropout (evaluation).
   */
  private load(rows: SftRow[], dropSeed: number | null): number[] {
    const { seq: T, batch: B } = this.hyper;
    if (rows.length > B || rows.length === 0) {
      throw new DajianError("invalid_input", `micro-batch must have 1..${B} rows`, "fix the data loader");
    }
    const per = B / this.replicas;
    const keep = 1 - this.lora.dropout;
    let seed = dropSeed;
    return this.reps.map((rep, r) => {
      const ids = new Int32Array(T * per);
      // Untrained rows point at token 0 of their own logits: gathered, then weighted 0 (lora-graph.ts).
      const at = Int32Array.from({ length: T * per }, (_, i) => i * this.V);
      const mv = rep.io.rowMask.view();
      mv.fill(0);
      let n = 0;
      rows.slice(r * per, (r + 1) * per).forEach((row, b) => {
        if (row.ids.length !== row.mask.length || row.ids.length > T + 1) {
          throw new DajianError("invalid_input", `row of ${row.ids.length} tokens exceeds ${T + 1}`, "truncate rows");
        }
        for (let t = 0; t < row.ids.length; t++) {
          const id = row.ids[t];
          if (!(id >= 0 && id < this.V)) {
            throw new DajianError(
              "invalid_input",
              `token id ${id} out of range`,
              "tokenize with the base's vocabulary",
            );
          }
          if (t < T) ids[b * T + t] = id;
          if (t > 0 && row.mask[t]) {
            const i = b * T + t - 1;
            at[i] += id;
            mv[i] = 1;
            n++;
          }
        }
      });
      rep.io.tokens.set(ids);
      rep.io.targetIdx.set(at);
      for (const m of rep.io.dropout.values()) {
        const v = m.view();
        if (seed === null) v.fill(1);
        else {
          const rng = new Rng(seed);
          for (let i = 0; i < v.length; i++) v[i] = rng.next() < keep ? 1 / keep : 0;
          seed++;
        }
      }
      return n;
    });
  }

  /** Loss summed over the trained tokens of one replica (its graph's raw loss; 0 when it had none and did not run). */
  private tokenLossSum(n: number, raw: Tensor): number {
    return n ? raw.get()[0] : 0;
  }

  /** Run the replicas that have work side by side (one thread each when there are several). */
  private async run(which: "gTrain" | "gEval" | "gLogits", active: boolean[]): Promise<void> {
    const threads = this.replicas > 1 ? 1 : this.engine.threads;
    const graphs = this.reps.filter((_, r) => active[r]).map((rep) => rep[which] as Graph);
    for (const g of graphs.filter((x) => !this.planned.has(x))) {
      g.allocate();
      this.planned.add(g);
    }
    await Promise.all(graphs.map((g) => g.compute(threads)));
  }

  /** Loss summed over trained tokens of up to `batch` rows, without touching the adapter. */
  async evaluate(rows: SftRow[]): Promise<{ lossSum: number; tokens: number }> {
    const ns = this.load(rows, null);
    await this.run(
      "gEval",
      ns.map((n) => n > 0),
    );
    const tokens = ns.reduce((a, b) => a + b, 0);
    const lossSum = this.reps.reduce((a, rep, r) => a + this.tokenLossSum(ns[r], rep.evalLoss), 0);
    return { lossSum, tokens };
  }

  /** Forward + backward of one micro-batch on every replica; returns the summed loss of its trained tokens. */
  private async backward(rows: SftRow[], dropSeed: number | null, total: number | null): Promise<[number, number]> {
    const ns = this.load(rows, dropSeed);
    const n = ns.reduce((a, b) => a + b, 0);
    // d(loss)/d(rawLoss) = 1/total: each trained token weighs 1/total across the whole step.
    for (const rep of this.reps) rep.io.lossScale.set([1 / (total ?? n)]);
    await this.run(
      "gTrain",
      ns.map((x) => x > 0),
    );
    this.grads.forEach((g, i) => {
      const v = g.view();
      for (const o of this.reps
        .slice(1)
        .filter((_, r) => ns[r + 1] > 0)
        .map((rep) => rep.grads[i].view())) {
        for (let j = 0; j < v.length; j++) v[j] += o[j];
      }
    });
    return [this.reps.reduce((a, rep, r) => a + this.tokenLossSum(ns[r], rep.rawLoss), 0), n];
  }

  /** Squared norm of the step's gradient (replica 0's accumulators, which hold every replica's share). */
  private combineGrads(): number {
    let sq = 0;
    for (const g of this.grads) for (const x of g.view()) sq += x * x;
    return sq;
  }

  /** Loss over trained tokens and the adapter's gradients for one micro-batch (gradient checks); no update. */
  async lossAndGrad(rows: SftRow[]): Promise<number> {
    this.zeroGrads();
    const [sum, n] = await this.backward(rows, null, null);
    this.combineGrads();
    return n ? sum / n : NaN;
  }

  private zeroGrads(): void {
    for (const g of this.grads) g.view().fill(0);
  }

  /** Gradient accumulator of one adapter tensor ("blk.0.attn_q.weight.lora_b"), a copy. */
  gradient(name: string): Float32Array {
    return this.grads[this.paramIndex(name)].get();
  }

  /** Logits [position][vocab] of dajian's own forward pass (base + current adapter) for ≤ seq tokens. */
  async forwardLogits(ids: number[]): Promise<Float32Array[]> {
    this.load([{ ids, mask: ids.map(() => 0) }], null);
    await this.run(
      "gLogits",
      this.reps.map((_, r) => r === 0),
    );
    const all = (this.reps[0].logits as Tensor).get();
    return ids.slice(0, this.hyper.seq).map((_, t) => all.slice(t * this.V, (t + 1) * this.V));
  }

  /** One optimizer step over micro-batches; the loss is the mean over all their trained tokens. */
  async trainStep(microBatches: SftRow[][]): Promise<LoraStepResult> {
    if (microBatches.length < 1) throw new DajianError("invalid_input", "no micro-batches", "give at least one");
    const counts = microBatches.map((mb) =>
      mb.reduce((a, r) => a + r.mask.slice(1).reduce((x, y) => x + (y ? 1 : 0), 0), 0),
    );
    const total = counts.reduce((a, b) => a + b, 0);
    if (total === 0)
      throw new DajianError("invalid_input", "no trained tokens in this step", "check the loss mask of the data");
    this.zeroGrads();
    let lossSum = 0;
    for (let i = 0; i < microBatches.length; i++) {
      if (!counts[i]) continue;
      const seed = this.lora.dropout > 0 ? hashSeed(this.hyper.seed ?? 1, this.step) + i * 7919 : null;
      lossSum += (await this.backward(microBatches[i], seed, total))[0];
    }
    const norm = Math.sqrt(this.combineGrads());
    const views = this.grads.map((g) => g.view());
    const clip = this.hyper.clip ?? 1;
    if (clip > 0 && norm > clip) for (const v of views) for (let i = 0; i < v.length; i++) v[i] *= clip / norm;
    const lr = learningRate(this.hyper, this.step);
    this.adamHyper.set(adamwValues(this.hyper, this.step, lr, { beta2: 0.999, weightDecay: 0 }));
    await this.gOpt.compute(this.engine.threads);
    this.step++;
    return { step: this.step, loss: lossSum / total, lr, gradNorm: norm, tokens: total };
  }

  /** The adapter as llama.cpp's GGUF pairs (A: rank×in row-major = ggml [in, r]; B: out×rank = ggml [r, out]). */
  adapterTensors(): LoraTensorPair[] {
    return this.pairs.map((p) => ({
      name: p.name,
      rank: this.lora.rank,
      inDim: p.inDim,
      outDim: p.outDim,
      a: p.a.get(),
      b: p.b.get(),
    }));
  }

  exportAdapter(path: string, name = "dajian-lora"): number {
    return writeLoraAdapterGguf(path, {
      architecture: this.base.architecture,
      alpha: this.lora.alpha,
      tensors: this.adapterTensors(),
      name,
    });
  }

  /** Adapter tensors with their AdamW moments, for src/train/run/checkpoint.ts. */
  checkpointTensors(): CheckpointTensors[] {
    return this.params.map((weight, i) => ({
      name: this.paramName(i),
      weight,
      m: this.moments[i][0],
      v: this.moments[i][1],
    }));
  }

  /** Load A/B from an adapter (continue training, or evaluate an adapter with dajian's own forward pass). */
  setAdapter(pairs: LoraTensorPair[]): void {
    for (const p of this.pairs) {
      const src = pairs.find((x) => x.name === p.name);
      if (!src || src.rank !== this.lora.rank) {
        throw new DajianError(
          "invalid_input",
          `adapter lacks ${p.name} at rank ${this.lora.rank}`,
          "match targets and rank",
        );
      }
      p.a.set(src.a);
      p.b.set(src.b);
    }
  }

  private paramIndex(name: string): number {
    const i = this.params.findIndex((_, j) => this.paramName(j) === name);
    if (i < 0) throw new DajianError("not_found", `no adapter tensor ${name}`, "use <base tensor>.lora_a|lora_b");
    return i;
  }
  /** Current values of one adapter tensor (copy). */
  param(name: string): Float32Array {
    return this.params[this.paramIndex(name)].get();
  }
  setParam(name: string, values: ArrayLike<number>): void {
    this.params[this.paramIndex(name)].set(values);
  }

  private paramName(i: number): string {
    const p = this.pairs[i >> 1];
    return `${p.name}.lora_${i & 1 ? "b" : "a"}`;
  }

  dispose(): void {
    for (const r of this.reps) for (const c of r.ctxs) c.dispose();
    this.ctx.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

export function checkLora(o: LoraOptions): void {
  const bad = (m: string, hint: string): never => {
    throw new DajianError("invalid_input", m, hint);
  };
  if (!Number.isInteger(o.rank) || o.rank < 1 || o.rank > 1024) bad(`rank ${o.rank}`, "use --rank between 1 and 1024");
  if (!(o.alpha > 0)) bad(`alpha ${o.alpha}`, "use a positive --alpha (e.g. 2× rank)");
  if (!(o.dropout >= 0 && o.dropout < 1)) bad(`dropout ${o.dropout}`, "use --dropout in [0, 1)");
  if (!o.targets.length) bad("no LoRA targets", "pass --targets q,v (or more)");
}

/** Per-step seed, so a resumed run draws the same dropout masks as an uninterrupted one. */
function hashSeed(seed: number, step: number): number {
  let h = (seed * 2654435761) ^ (step * 40503);
  h = Math.imul(h ^ (h >>> 16), 2246822507);
  return (h ^ (h >>> 13)) >>> 0;
}
