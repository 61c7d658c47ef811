// Typed TypeScript API over ggml: contexts own memory and are freed by dispose() (or `using`), tensors know their
// shape, graphs compute forward and backward passes, and AdamW runs as ggml's own in-graph optimizer step.
// Every op checks shapes and remaining context memory first, because a failed GGML_ASSERT aborts the process.

import { existsSync, readdirSync } from "node:fs";
import { dirname } from "node:path";
import { DajianError } from "../core/errors.js";
import { GgmlType } from "../gguf/types.js";
import { blasNote, loadBlas, type Blas } from "./blas.js";
import { loadGgml, nativeView, pointerAddress, type Cplan, type GgmlLib, type Ptr } from "./ffi.js";
import { planSteps, type Step } from "./hybrid.js";

export type Shape = readonly number[];

const TYPE_BYTES: Partial<Record<GgmlType, number>> = {
  [GgmlType.F32]: 4,
  [GgmlType.F16]: 2,
  [GgmlType.I32]: 4,
};

function shapeError(op: string, msg: string): DajianError {
  return new DajianError("invalid_input", `${op}: ${msg}`, "fix the tensor shapes passed to this op");
}

const pad4 = (s: Shape): [number, number, number, number] => [s[0] ?? 1, s[1] ?? 1, s[2] ?? 1, s[3] ?? 1];
const numel = (s: Shape): number => s.reduce((a, b) => a * b, 1);
const canRepeat = (small: Shape, big: Shape): boolean => {
  const a = pad4(small);
  const b = pad4(big);
  return a.every((n, i) => n > 0 && b[i] % n === 0);
};

/** Backend description, reported at start. */
export interface BackendInfo {
  name: "cpu";
  /** ggml CPU variant in use, e.g. "haswell". */
  variant: string;
  threads: number;
  libDir: string;
  /** GPU packages present but not used by the engine yet. */
  unusedGpuPackages: string[];
  /** OpenBLAS in use for large f32 products (its version line), or null. */
  blas: string | null;
}

export class Tensor {
  /** ggml order: shape[0] is contiguous. Trailing 1s are dropped except the first. */
  readonly shape: number[];
  readonly type: GgmlType;
  constructor(
    readonly ctx: Context,
    readonly ptr: Ptr,
  ) {
    const v = new DataView(nativeView(ptr, 48));
    this.type = v.getInt32(0, true) as GgmlType;
    const ne = [0, 1, 2, 3].map((i) => Number(v.getBigInt64(16 + 8 * i, true)));
    let n = 4;
    while (n > 1 && ne[n - 1] === 1) n--;
    this.shape = ne.slice(0, n);
  }
  get numel(): number {
    return numel(this.shape);
  }
  /** Byte strides nb[0..3] (ggml_tensor.nb). */
  get strides(): [number, number, number, number] {
    const v = new DataView(nativeView(this.ptr, 80));
    return [0, 1, 2, 3].map((i) => Number(v.getBigUint64(48 + 8 * i, true))) as [number, number, number, number];
  }
  get nbytes(): number {
    return Number(this.ctx.lib.base.ggml_nbytes(this.ptr));
  }
  get contiguous(): boolean {
    return Boolean(this.ctx.lib.base.ggml_is_contiguous(this.ptr));
  }
  /** Whether the tensor has memory (always in an allocating context; after Graph.allocate() in a noAlloc one). */
  get allocated(): boolean {
    this.ctx.assertLive();
    return Boolean(this.ctx.lib.base.ggml_get_data(this.ptr));
  }
  private dataView(): ArrayBuffer {
    this.ctx.assertLive();
    if (!this.contiguous) throw new DajianError("invalid_input", "tensor is not contiguous", "read it after cont()");
    const data = this.ctx.lib.base.ggml_get_data(this.ptr);
    if (!data) throw new DajianError("invalid_input", "tensor has no memory yet", "call graph.allocate() first");
    return nativeView(data, this.nbytes);
  }
  /** Copy values in (f32 or i32 tensors). */
  set(values: ArrayLike<number>): this {
    if (values.length !== this.numel) {
      throw new DajianError(
        "invalid_input",
        `tensor of ${this.numel} values given ${values.length}`,
        "match the shape",
      );
    }
    if (this.type === GgmlType.F32) new Float32Array(this.dataView()).set(values);
    else if (this.type === GgmlType.I32) new Int32Array(this.dataView()).set(values);
    else throw new DajianError("unsupported", `set() on ${GgmlType[this.type]}`, "use f32 or i32 tensors");
    return this;
  }
  /** Copy of the values (f32). */
  get(): Float32Array {
    if (this.type !== GgmlType.F32) throw new DajianError("unsupported", `get() on ${GgmlType[this.type]}`, "use f32");
    return new Float32Array(this.dataView()).slice();
  }
  /** Zero-copy view, valid until the context is disposed. */
  view(): Float32Array {
    if (this.type !== GgmlType.F32) throw new DajianError("unsupported", `view() on ${GgmlType[this.type]}`, "use f32");
    return new Float32Array(this.dataView());
  }
  zero(): this {
    if (!this.allocated)
      throw new DajianError("invalid_input", "tensor has no memory yet", "call graph.allocate() first");
    this.ctx.lib.base.ggml_set_zero(this.ptr);
    return this;
  }
  name(n: string): this {
    this.ctx.lib.base.ggml_set_name(this.ptr, n.slice(0, 63));
    return this;
  }
}

export interface RopeOptions {
  /** 0 = llama's adjacent pairs (default), 2 = NeoX halves. */
  mode?: number;
  freqBase?: number;
  nCtxOrig?: number;
  /** Linear RoPE scaling: positions × freqScale (1 = none). */
  freqScale?: number;
  /** Per-frequency divisors, f32 [nDims/2] (llama3 RoPE scaling's rope_freqs tensor); none by default. */
  freqFactors?: Tensor;
}

export interface ContextOptions {
  /** Bytes for tensors, graphs and their metadata. */
  memBytes: number;
  /**
   * Tensors made here get no memory: Graph.allocate() plans one buffer for a whole graph with ggml-alloc, so
   * activations whose last reader has run share memory (memBytes then only covers metadata).
   */
  noAlloc?: boolean;
  /** Other contexts whose tensors (weights, optimizer state, inputs) ops in this one may read and write. */
  uses?: Context[];
  /**
   * Run this context's large 2-D f32 products on OpenBLAS when the machine has it (default true; see blas.ts and
   * hybrid.ts). false keeps every node on ggml.
   */
  blas?: boolean;
}

/** A ggml context: an arena that owns every tensor and graph made in it. */
export class Context {
  private ctx: Ptr | null;
  readonly memBytes: number;
  /** Data bytes of op results so far (to size backward passes). */
  opBytes = 0;
  opCount = 0;
  /** Trainable tensors by native address. */
  readonly params = new Map<bigint, Tensor>();
  readonly noAlloc: boolean;
  /** OpenBLAS for this context's large f32 products, or null (ggml computes everything). */
  readonly blas: Blas | null;
  private readonly uses: Context[];
  /** Native memory owned besides the arena (graph allocators, work-buffer contexts), freed with it. */
  private readonly owned: Array<{ free: () => void }> = [];

  constructor(
    readonly lib: GgmlLib,
    opts: ContextOptions,
  ) {
    if (!(opts.memBytes > 0) || !Number.isSafeInteger(opts.memBytes)) {
      throw new DajianError("invalid_input", `context size ${opts.memBytes}`, "give memBytes as a positive integer");
    }
    this.memBytes = opts.memBytes;
    this.noAlloc = opts.noAlloc ?? false;
    this.uses = opts.uses ?? [];
    this.blas = opts.blas === false ? null : loadBlas();
    this.ctx = lib.base.ggml_init({ mem_size: opts.memBytes, mem_buffer: null, no_alloc: this.noAlloc });
    if (!this.ctx) {
      throw new DajianError(
        "too_large",
        `cannot allocate ${opts.memBytes} bytes for ggml`,
        "use a smaller model or batch",
      );
    }
  }

  get handle(): Ptr {
    return this.assertLive();
  }
  assertLive(): Ptr {
    if (this.ctx === null) throw new DajianError("invalid_input", "ggml context already disposed", "create a new one");
    return this.ctx;
  }
  get usedBytes(): number {
    return Number(this.lib.base.ggml_used_mem(this.assertLive()));
  }
  get freeBytes(): number {
    return this.memBytes - this.usedBytes;
  }

  /** Ensure room for a tensor object (+ data) before calling into ggml. */
  reserve(op: string, dataBytes: number, objects = 1): void {
    const data = this.noAlloc && op !== "graph" ? 0 : dataBytes;
    const need = objects * (Number(this.lib.base.ggml_tensor_overhead()) + 16) + data + 16;
    if (need > this.freeBytes) {
      throw new DajianError(
        "too_large",
        `${op}: ggml context out of memory (needs ${need} bytes, ${this.freeBytes} free of ${this.memBytes})`,
        "create the context with a larger memBytes",
      );
    }
  }

  private wrap(ptr: Ptr, trackOp = true): Tensor {
    const t = new Tensor(this, ptr);
    if (trackOp) {
      this.opCount++;
      this.opBytes += t.nbytes;
    }
    return t;
  }

  private own(...ts: Tensor[]): void {
    for (const t of ts) {
      if (t.ctx !== this && !this.uses.includes(t.ctx))
        throw new DajianError("invalid_input", "tensor belongs to another context", "build ops in one context");
    }
    this.assertLive();
  }

  tensor(shape: Shape, type: GgmlType = GgmlType.F32): Tensor {
    if (shape.length < 1 || shape.length > 4 || shape.some((d) => !Number.isInteger(d) || d < 1)) {
      throw shapeError("tensor", `bad shape [${shape.join(", ")}]`);
    }
    const bytes = TYPE_BYTES[type];
    if (bytes === undefined)
      throw new DajianError("unsupported", `new tensor of ${GgmlType[type]}`, "use F32, F16 or I32");
    this.reserve("tensor", numel(shape) * bytes);
    const b = this.lib.base;
    const c = this.assertLive();
    const [n0, n1, n2, n3] = pad4(shape);
    const p = b.ggml_new_tensor_4d(c, type, n0, n1, n2, n3);
    return this.wrap(p, false);
  }

  fromArray(shape: Shape, values: ArrayLike<number>, type: GgmlType = GgmlType.F32): Tensor {
    return this.tensor(shape, type).set(values);
  }

  /** Mark as trainable parameter. */
  param(t: Tensor): Tensor {
    this.own(t);
    if (t.type !== GgmlType.F32)
      throw new DajianError("unsupported", "only f32 tensors can be trained", "keep trainable weights in f32");
    this.lib.base.ggml_set_param(t.ptr);
    this.params.set(pointerAddress(t.ptr), t);
    return t;
  }
  /** Mark as the (scalar) loss. */
  loss(t: Tensor): Tensor {
    this.own(t);
    if (t.numel !== 1 || t.type !== GgmlType.F32) throw shapeError("loss", "the loss must be a scalar f32");
    this.lib.base.ggml_set_loss(t.ptr);
    return t;
  }

  // ---- ops ---------------------------------------------------------------------------------------------------
  private result(op: string, outShape: Shape, call: () => Ptr, view = false): Tensor {
    this.reserve(op, view ? 0 : numel(outShape) * 4);
    return this.wrap(call());
  }
  private binary(op: "ggml_add" | "ggml_sub" | "ggml_mul" | "ggml_div", a: Tensor, b: Tensor): Tensor {
    this.own(a, b);
    if (!canRepeat(b.shape, a.shape)) throw shapeError(op, `[${b.shape}] does not broadcast to [${a.shape}]`);
    return this.result(op, a.shape, () => this.lib.base[op](this.handle, a.ptr, b.ptr));
  }
  add(a: Tensor, b: Tensor): Tensor {
    return this.binary("ggml_add", a, b);
  }
  /** a += b in a's memory (same shapes); returns the view of a that carries the sum. */
  addInPlace(a: Tensor, b: Tensor): Tensor {
    this.own(a, b);
    if (a.shape.join() !== b.shape.join()) throw shapeError("addInPlace", `[${a.shape}] vs [${b.shape}]`);
    return this.result("addInPlace", a.shape, () => this.lib.base.ggml_add_inplace(this.handle, a.ptr, b.ptr), true);
  }
  /** a *= b in a's memory (b broadcasts, e.g. a [1] scale factor); returns the view of a that carries the product. */
  mulInPlace(a: Tensor, b: Tensor): Tensor {
    this.own(a, b);
    if (!canRepeat(b.shape, a.shape)) throw shapeError("mulInPlace", `[${b.shape}] does not broadcast to [${a.shape}]`);
    return this.result("mulInPlace", a.shape, () => this.lib.base.ggml_mul_inplace(this.handle, a.ptr, b.ptr), true);
  }
  sub(a: Tensor, b: Tensor): Tensor {
    return this.binary("ggml_sub", a, b);
  }
  mul(a: Tensor, b: Tensor): Tensor {
    return this.binary("ggml_mul", a, b);
  }
  div(a: Tensor, b: Tensor): Tensor {
    return this.binary("ggml_div", a, b);
  }
  private unary(
    op: "ggml_sqr" | "ggml_sqrt" | "ggml_log" | "ggml_exp" | "ggml_neg" | "ggml_silu" | "ggml_relu" | "ggml_cont",
    a: Tensor,
  ): Tensor {
    this.own(a);
    return this.result(op, a.shape, () => this.lib.base[op](this.handle, a.ptr));
  }
  sqr(a: Tensor): Tensor {
    return this.unary("ggml_sqr", a);
  }
  sqrt(a: Tensor): Tensor {
    return this.unary("ggml_sqrt", a);
  }
  log(a: Tensor): Tensor {
    return this.unary("ggml_log", a);
  }
  exp(a: Tensor): Tensor {
    return this.unary("ggml_exp", a);
  }
  neg(a: Tensor): Tensor {
    return this.unary("ggml_neg", a);
  }
  silu(a: Tensor): Tensor {
    return this.unary("ggml_silu", a);
  }
  relu(a: Tensor): Tensor {
    return this.unary("ggml_relu", a);
  }
  cont(a: Tensor): Tensor {
    return this.unary("ggml_cont", a);
  }
  scale(a: Tensor, s: number): Tensor {
    this.own(a);
    return this.result("scale", a.shape, () => this.lib.base.ggml_scale(this.handle, a.ptr, s));
  }
  sum(a: Tensor): Tensor {
    this.own(a);
    return this.result("sum", [1], () => this.lib.base.ggml_sum(this.handle, a.ptr));
  }
  sumRows(a: Tensor): Tensor {
    this.own(a);
    return this.result("sumRows", [1, ...a.shape.slice(1)], () => this.lib.base.ggml_sum_rows(this.handle, a.ptr));
  }
  /** Row means. Built as sumRows·(1/n): ggml's own MEAN backward asserts when its input has a gradient accumulator. */
  mean(a: Tensor): Tensor {
    return this.scale(this.sumRows(a), 1 / a.shape[0]);
  }
  /** Broadcast `a` to the shape of `like`. */
  repeat(a: Tensor, like: Tensor): Tensor {
    this.own(a, like);
    if (!canRepeat(a.shape, like.shape)) throw shapeError("repeat", `[${a.shape}] does not tile [${like.shape}]`);
    return this.result("repeat", like.shape, () => this.lib.base.ggml_repeat(this.handle, a.ptr, like.ptr));
  }
  /** Tile `a` to `shape` (each dim a multiple of a's). */
  repeatTo(a: Tensor, shape: Shape): Tensor {
    this.own(a);
    if (!canRepeat(a.shape, shape)) throw shapeError("repeatTo", `[${a.shape}] does not tile [${shape}]`);
    const [n0, n1, n2, n3] = pad4(shape);
    return this.result("repeatTo", shape, () => this.lib.base.ggml_repeat_4d(this.handle, a.ptr, n0, n1, n2, n3));
  }
  rmsNorm(a: Tensor, eps: number): Tensor {
    this.own(a);
    return this.result("rmsNorm", a.shape, () => this.lib.base.ggml_rms_norm(this.handle, a.ptr, eps));
  }
  /** ggml's matmul: a [k, m], b [k, n] → [m, n] (i.e. b · aᵀ), broadcasting over dims 2–3. */
  mulMat(a: Tensor, b: Tensor): Tensor {
    this.own(a, b);
    const [ak, am, a2, a3] = pad4(a.shape);
    const [bk, bn, b2, b3] = pad4(b.shape);
    if (ak !== bk) throw shapeError("mulMat", `inner sizes differ: [${a.shape}] × [${b.shape}]`);
    if (b2 % a2 !== 0 || b3 % a3 !== 0)
      throw shapeError("mulMat", `batch dims do not broadcast: [${a.shape}] × [${b.shape}]`);
    return this.result("mulMat", [am, bn, b2, b3], () => this.lib.base.ggml_mul_mat(this.handle, a.ptr, b.ptr));
  }
  /**
   * x [M, K] · y [K, N] → [M, N] (out[i, j] = Σₖ x[i, k]·y[k, j]): mulMat with x transposed. With BLAS an OUT_PROD
   * that sgemm reads in place; on ggml alone a contiguous transposed copy of x and its fast mul_mat.
   */
  mulMatT(x: Tensor, y: Tensor): Tensor {
    return this.blas ? this.outProd(x, this.transpose(y)) : this.mulMat(this.cont(this.transpose(x)), y);
  }
  /**
   * a [M, K], b [N, K] → [M, N] (out[i, j] = Σₖ a[i, k]·b[j, k]), e.g. a weight gradient dy·xᵀ: OUT_PROD on BLAS,
   * mul_mat of two transposed copies on ggml alone (ggml's own OUT_PROD kernel is several times slower).
   */
  outerSum(a: Tensor, b: Tensor): Tensor {
    return this.blas ? this.outProd(a, b) : this.mulMat(this.cont(this.transpose(a)), this.cont(this.transpose(b)));
  }
  /** Outer product summed over dim 1: a [m, k], b [n, k] → [m, n]. */
  outProd(a: Tensor, b: Tensor): Tensor {
    this.own(a, b);
    const [am, ak, a2, a3] = pad4(a.shape);
    const [bn, bk, b2, b3] = pad4(b.shape);
    if (ak !== bk) throw shapeError("outProd", `dim 1 differs: [${a.shape}] vs [${b.shape}]`);
    if (b2 % a2 !== 0 || b3 % a3 !== 0) throw shapeError("outProd", "batch dims do not broadcast");
    const [s0, s1] = a.strides;
    if (am > 1 && ak > 1 && s0 > s1) throw shapeError("outProd", "first operand is a transposed view (use cont())");
    return this.result("outProd", [am, bn, b2, b3], () => this.lib.base.ggml_out_prod(this.handle, a.ptr, b.ptr));
  }
  softMax(a: Tensor): Tensor {
    this.own(a);
    return this.result("softMax", a.shape, () => this.lib.base.ggml_soft_max(this.handle, a.ptr));
  }
  /** softmax(a·scale + mask); mask [ne0, ≥ne1] f32 or null. */
  softMaxExt(a: Tensor, mask: Tensor | null, scale: number): Tensor {
    this.own(a);
    if (mask) {
      this.own(mask);
      if (mask.shape[0] !== a.shape[0] || (mask.shape[1] ?? 1) < (a.shape[1] ?? 1)) {
        throw shapeError("softMaxExt", `mask [${mask.shape}] does not cover [${a.shape}]`);
      }
    }
    return this.result("softMaxExt", a.shape, () =>
      this.lib.base.ggml_soft_max_ext(this.handle, a.ptr, mask ? mask.ptr : null, scale, 0),
    );
  }
  /** Set elements above the diagonal (column > row + nPast) to -inf. */
  diagMaskInf(a: Tensor, nPast: number): Tensor {
    this.own(a);
    return this.result("diagMaskInf", a.shape, () => this.lib.base.ggml_diag_mask_inf(this.handle, a.ptr, nPast));
  }
  /**
   * RoPE over a [headDim, heads, tokens, batch] with positions (i32 [tokens]). mode 0 = llama's adjacent pairs
   * (as GGUF stores llama weights), 2 = NeoX halves.
   */
  rope(a: Tensor, pos: Tensor, nDims: number, opts: RopeOptions = {}): Tensor {
    return this.ropeOp("rope", a, pos, nDims, opts);
  }
  /** Rows of `a` picked by i32 indices `ids` [n] → [a.ne0, n]. */
  getRows(a: Tensor, ids: Tensor): Tensor {
    this.own(a, ids);
    if (ids.type !== GgmlType.I32) throw shapeError("getRows", "indices must be i32");
    if (ids.shape.length > 1 && (ids.shape[1] !== (a.shape[2] ?? 1) || ids.shape.length > 2)) {
      throw shapeError("getRows", `indices [${ids.shape}] do not match [${a.shape}]`);
    }
    return this.result("getRows", [a.shape[0], ...ids.shape], () =>
      this.lib.base.ggml_get_rows(this.handle, a.ptr, ids.ptr),
    );
  }
  /** Rows `ids` (i32, one per row of `rows`) of `a` overwritten with `rows` in a's memory; returns that view of a. */
  setRows(a: Tensor, rows: Tensor, ids: Tensor): Tensor {
    this.own(a, rows, ids);
    const [a0, , a2, a3] = pad4(a.shape);
    const [r0, r1, r2, r3] = pad4(rows.shape);
    if (ids.type !== GgmlType.I32 || ids.numel !== r1 || a0 !== r0 || a2 !== r2 || a3 !== r3 || r2 * r3 !== 1)
      throw shapeError("setRows", `[${rows.shape}] at ids [${ids.shape}] into [${a.shape}]`);
    return this.result(
      "setRows",
      a.shape,
      () => this.lib.base.ggml_set_rows(this.handle, a.ptr, rows.ptr, ids.ptr),
      true,
    );
  }
  /** Mean cross-entropy between logits and target probabilities (same shape), a scalar. */
  crossEntropyLoss(logits: Tensor, targets: Tensor): Tensor {
    this.own(logits, targets);
    if (logits.shape.join() !== targets.shape.join())
      throw shapeError("crossEntropyLoss", "logits and targets differ in shape");
    return this.result("crossEntropyLoss", [1], () =>
      this.lib.base.ggml_cross_entropy_loss(this.handle, logits.ptr, targets.ptr),
    );
  }
  /** silu(a) * b — the SwiGLU gate. */
  swiglu(a: Tensor, b: Tensor): Tensor {
    this.own(a, b);
    if (a.shape.join() !== b.shape.join()) throw shapeError("swiglu", `[${a.shape}] vs [${b.shape}]`);
    return this.result("swiglu", a.shape, () => this.lib.base.ggml_swiglu_split(this.handle, a.ptr, b.ptr));
  }
  reshape(a: Tensor, shape: Shape): Tensor {
    this.own(a);
    if (numel(shape) !== a.numel || shape.length < 1 || shape.length > 4) {
      throw shapeError("reshape", `[${a.shape}] → [${shape}] changes the element count`);
    }
    if (!a.contiguous) throw shapeError("reshape", "input must be contiguous (use cont())");
    const b = this.lib.base;
    const c = this.handle;
    const s = shape;
    return this.result(
      "reshape",
      shape,
      () =>
        s.length === 1
          ? b.ggml_reshape_1d(c, a.ptr, s[0])
          : s.length === 2
            ? b.ggml_reshape_2d(c, a.ptr, s[0], s[1])
            : s.length === 3
              ? b.ggml_reshape_3d(c, a.ptr, s[0], s[1], s[2])
              : b.ggml_reshape_4d(c, a.ptr, s[0], s[1], s[2], s[3]),
      true,
    );
  }
  /** Axis i of `a` goes to position axes[i] (ggml_permute semantics). */
  permute(a: Tensor, axes: [number, number, number, number]): Tensor {
    this.own(a);
    if ([...axes].sort().join() !== "0,1,2,3")
      throw shapeError("permute", `axes ${axes} are not a permutation of 0..3`);
    const s = pad4(a.shape);
    const out = [0, 0, 0, 0];
    axes.forEach((to, i) => (out[to] = s[i]));
    return this.result("permute", out, () => this.lib.base.ggml_permute(this.handle, a.ptr, ...axes), true);
  }
  transpose(a: Tensor): Tensor {
    this.own(a);
    const [n0, n1, ...rest] = pad4(a.shape);
    return this.result("transpose", [n1, n0, ...rest], () => this.lib.base.ggml_transpose(this.handle, a.ptr), true);
  }
  /**
   * Contiguous copy of a with dims 0 and 1 swapped — what cont(transpose(a)) gives, faster for f32 on one thread:
   * ggml copies a same-type strided view one element per memcpy call (dup_bytes), while CONCAT with an empty second
   * operand runs a typed element loop (bench: 1.0 vs 2.9 ms for [256, 2048], 3.3 vs 6.0 ms for [688, 2048]).
   * CONCAT splits work over dim 2 only, so with several threads and dim 2 of 1 the plain copy is the better one.
   */
  transposeCopy(a: Tensor): Tensor {
    return this.copy(this.transpose(a));
  }
  /** Contiguous copy of any f32 view (see transposeCopy: faster than cont() for strided views on one thread). */
  copy(a: Tensor): Tensor {
    this.own(a);
    if (a.type !== GgmlType.F32) throw shapeError("copy", "only f32 tensors");
    const [n0, n1, n2, n3] = pad4(a.shape);
    const b = this.lib.base;
    this.reserve("copy", 0, 1);
    const empty = b.ggml_new_tensor_4d(this.handle, GgmlType.F32, n0, n1, n2, 0);
    return this.result("copy", [n0, n1, n2, n3], () => b.ggml_concat(this.handle, a.ptr, empty, 3));
  }
  /** a and b joined along `dim` (other dims equal; either may be a strided view); the result is contiguous. */
  concat(a: Tensor, b: Tensor, dim: number): Tensor {
    this.own(a, b);
    const sa = pad4(a.shape);
    const sb = pad4(b.shape);
    if (a.type !== b.type || sa.some((d, i) => i !== dim && d !== sb[i]))
      throw shapeError("concat", `[${a.shape}] and [${b.shape}] differ outside dim ${dim}`);
    const out = sa.map((d, i) => (i === dim ? d + sb[i] : d));
    return this.result("concat", out, () => this.lib.base.ggml_concat(this.handle, a.ptr, b.ptr, dim));
  }
  /**
   * A view of `a`'s memory with `shape`, byte strides of dims 1..3 `nb` (a's own by default) and a byte offset —
   * e.g. a block of rows or of positions. Bounds are checked against a's bytes.
   */
  view(
    a: Tensor,
    shape: Shape,
    offset = 0,
    nb: [number, number, number] = a.strides.slice(1) as [number, number, number],
  ): Tensor {
    this.own(a);
    const [n0, n1, n2, n3] = pad4(shape);
    const last = offset + (n0 - 1) * 4 + (n1 - 1) * nb[0] + (n2 - 1) * nb[1] + (n3 - 1) * nb[2] + 4;
    if (a.type !== GgmlType.F32 || offset < 0 || last > a.nbytes)
      throw shapeError("view", `[${shape}] at ${offset} does not fit in [${a.shape}]`);
    return this.result(
      "view",
      shape,
      () => this.lib.base.ggml_view_4d(this.handle, a.ptr, n0, n1, n2, n3, nb[0], nb[1], nb[2], offset),
      true,
    );
  }
  /** A copy of `a` with `b` added into the leading block of each dim (b's shape ≤ a's, both f32). */
  accLeading(a: Tensor, b: Tensor): Tensor {
    this.own(a, b);
    const sa = pad4(a.shape);
    if (a.type !== GgmlType.F32 || !a.contiguous || pad4(b.shape).some((d, i) => d > sa[i]))
      throw shapeError("accLeading", `[${b.shape}] does not fit in [${a.shape}]`);
    const [, nb1, nb2, nb3] = a.strides;
    return this.result("accLeading", a.shape, () =>
      this.lib.base.ggml_acc(this.handle, a.ptr, b.ptr, nb1, nb2, nb3, 0),
    );
  }
  /** Copy a into b's memory (element counts must match); returns the view of b that carries the copy. */
  cpy(a: Tensor, b: Tensor): Tensor {
    this.own(a, b);
    if (a.numel !== b.numel) throw shapeError("cpy", "element counts differ");
    return this.result("cpy", b.shape, () => this.lib.base.ggml_cpy(this.handle, a.ptr, b.ptr), true);
  }
  /** In-graph AdamW step on parameter `w` (ggml_opt_step_adamw); `hyper` is a 7-value f32 tensor. */
  adamwStep(w: Tensor, grad: Tensor, m: Tensor, v: Tensor, hyper: Tensor): Tensor {
    this.own(w, grad, m, v, hyper);
    for (const t of [grad, m, v])
      if (t.shape.join() !== w.shape.join()) throw shapeError("adamw", "state shape differs");
    if (hyper.numel !== 7) throw shapeError("adamw", "hyper-parameters must be 7 f32 values");
    return this.result(
      "adamw",
      w.shape,
      () => this.lib.base.ggml_opt_step_adamw(this.handle, w.ptr, grad.ptr, m.ptr, v.ptr, hyper.ptr),
      true,
    );
  }

  /** Mark a tensor the caller reads after compute, so Graph.allocate() never reuses its memory. */
  output(t: Tensor): Tensor {
    this.own(t);
    this.lib.base.ggml_set_output(t.ptr);
    return t;
  }

  // ---- backward ops, for hand-written backward graphs (ggml's autograd uses the same kernels) ---------------------
  /** Gradient of rmsNorm(x) given its output gradient `dy`. */
  rmsNormBack(dy: Tensor, x: Tensor, eps: number): Tensor {
    this.own(dy, x);
    if (dy.shape.join() !== x.shape.join()) throw shapeError("rmsNormBack", `[${dy.shape}] vs [${x.shape}]`);
    return this.result("rmsNormBack", x.shape, () => this.lib.base.ggml_rms_norm_back(this.handle, dy.ptr, x.ptr, eps));
  }
  /** Gradient of rope() given its output gradient (same arguments as rope). */
  ropeBack(dy: Tensor, pos: Tensor, nDims: number, opts: RopeOptions = {}): Tensor {
    return this.ropeOp("ropeBack", dy, pos, nDims, opts);
  }
  private ropeOp(op: "rope" | "ropeBack", a: Tensor, pos: Tensor, nDims: number, opts: RopeOptions): Tensor {
    this.own(a, pos);
    const ff = opts.freqFactors;
    if (ff) this.own(ff);
    if (ff && (ff.type !== GgmlType.F32 || ff.numel < nDims / 2))
      throw shapeError(op, `freqFactors must be f32 [${nDims / 2}]`);
    if (pos.type !== GgmlType.I32 || pos.shape.length !== 1 || pos.shape[0] !== (a.shape[2] ?? 1)) {
      throw shapeError(op, `positions must be i32 [${a.shape[2] ?? 1}]`);
    }
    if (nDims % 2 !== 0 || nDims > a.shape[0]) throw shapeError(op, `nDims ${nDims} must be even and ≤ ${a.shape[0]}`);
    const fn = op === "rope" ? this.lib.base.ggml_rope_ext : this.lib.base.ggml_rope_ext_back;
    return this.result(op, a.shape, () =>
      fn(
        this.handle,
        a.ptr,
        pos.ptr,
        opts.freqFactors?.ptr ?? null,
        nDims,
        opts.mode ?? 0,
        opts.nCtxOrig ?? 0,
        opts.freqBase ?? 10000,
        opts.freqScale ?? 1,
        0,
        1,
        0,
        0,
      ),
    );
  }
  /** Gradient of the input of softMaxExt(·, mask, scale) given the output `y` and its gradient `dy`. */
  softMaxBack(dy: Tensor, y: Tensor, scale: number): Tensor {
    this.own(dy, y);
    if (dy.shape.join() !== y.shape.join()) throw shapeError("softMaxBack", `[${dy.shape}] vs [${y.shape}]`);
    return this.result("softMaxBack", y.shape, () =>
      this.lib.base.ggml_soft_max_ext_back(this.handle, dy.ptr, y.ptr, scale, 0),
    );
  }
  /** dy · silu'(x). */
  siluBack(dy: Tensor, x: Tensor): Tensor {
    this.own(dy, x);
    if (dy.shape.join() !== x.shape.join()) throw shapeError("siluBack", `[${dy.shape}] vs [${x.shape}]`);
    return this.result("siluBack", x.shape, () => this.lib.base.ggml_silu_back(this.handle, dy.ptr, x.ptr));
  }
  /** Gradient of getRows(table, ids): rows of `dy` summed into a tensor shaped like `table`. */
  getRowsBack(dy: Tensor, ids: Tensor, table: Tensor): Tensor {
    this.own(dy, ids, table);
    if (ids.type !== GgmlType.I32 || dy.shape[0] !== table.shape[0] || (dy.shape[1] ?? 1) !== ids.numel) {
      throw shapeError("getRowsBack", `[${dy.shape}] rows for ids [${ids.shape}] into [${table.shape}]`);
    }
    return this.result("getRowsBack", table.shape.slice(0, 2), () =>
      this.lib.base.ggml_get_rows_back(this.handle, dy.ptr, ids.ptr, table.ptr),
    );
  }
  /** Gradient of crossEntropyLoss(logits, targets) w.r.t. the logits, given the loss gradient `dLoss` ([1]). */
  crossEntropyLossBack(dLoss: Tensor, logits: Tensor, targets: Tensor): Tensor {
    this.own(dLoss, logits, targets);
    if (dLoss.numel !== 1 || logits.shape.join() !== targets.shape.join()) {
      throw shapeError(
        "crossEntropyLossBack",
        "logits and targets differ in shape, or the loss gradient is not a scalar",
      );
    }
    return this.result("crossEntropyLossBack", logits.shape, () =>
      this.lib.base.ggml_cross_entropy_loss_back(this.handle, dLoss.ptr, logits.ptr, targets.ptr),
    );
  }
  /** Sum `a` down to the shape of `like` (the gradient of repeat()). */
  repeatBack(a: Tensor, like: Tensor): Tensor {
    this.own(a, like);
    if (!canRepeat(like.shape, a.shape)) throw shapeError("repeatBack", `[${like.shape}] does not tile [${a.shape}]`);
    return this.result("repeatBack", like.shape, () => this.lib.base.ggml_repeat_back(this.handle, a.ptr, like.ptr));
  }

  graph(opts: { size?: number; grads?: boolean } = {}): Graph {
    const size = opts.size ?? 8192;
    const grads = opts.grads ?? false;
    this.reserve("graph", Number(this.lib.base.ggml_graph_overhead_custom(size, grads)), 1);
    return new Graph(this, this.lib.base.ggml_new_graph_custom(this.handle, size, grads), size, grads);
  }

  /** Register native memory to free with this context (used by Graph for allocators and work buffers). */
  adopt(free: () => void): void {
    this.assertLive();
    this.owned.push({ free });
  }

  dispose(): void {
    for (const o of this.owned.splice(0).reverse()) o.free();
    if (this.ctx !== null) this.lib.base.ggml_free(this.ctx);
    this.ctx = null;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

export class Graph {
  private backwardBuilt = false;
  /** Work buffer inside the context, reused by every compute (ggml_graph_compute_with_ctx would leak one per call). */
  private work: { ptr: Ptr; size: number } | null = null;
  private allocator: Ptr | null = null;
  /** Bytes of the buffer allocate() planned (0 before). */
  bufferBytes = 0;
  /** ggml windows and BLAS products (hybrid.ts), planned at the first compute for this many nodes. */
  private steps: { nodes: number; list: Step[] | null } | null = null;
  constructor(
    readonly ctx: Context,
    readonly ptr: Ptr,
    readonly size: number,
    readonly grads: boolean,
  ) {}

  get nodes(): number {
    return Number(this.ctx.lib.base.ggml_graph_n_nodes(this.ptr));
  }

  /** Add `t` and everything it depends on. */
  expand(t: Tensor): this {
    this.ctx.assertLive();
    if (this.ctx.opCount + this.nodes >= this.size) {
      throw new DajianError("too_large", `graph may exceed ${this.size} nodes`, "create the graph with a larger size");
    }
    this.ctx.lib.base.ggml_build_forward_expand(this.ptr, t.ptr);
    return this;
  }

  /**
   * Add the backward pass for the loss set with ctx.loss(). Every parameter gets its own contiguous gradient
   * accumulator: compute() adds into it, reset() zeroes it — so several computes between resets accumulate
   * gradients over micro-batches.
   */
  backward(): this {
    if (!this.grads)
      throw new DajianError("invalid_input", "graph built without grads", "use ctx.graph({ grads: true })");
    if (this.backwardBuilt) throw new DajianError("invalid_input", "backward already built", "build it once");
    if (this.nodes * 4 + 16 > this.size) {
      throw new DajianError(
        "too_large",
        `graph of ${this.nodes} nodes too small for backward`,
        "use a graph size ≥ 4× the forward nodes",
      );
    }
    // Gradients are allocated in the context: budget up to 3× the forward activations.
    this.ctx.reserve("backward", this.ctx.opBytes * 3, this.nodes * 3);
    const b = this.ctx.lib.base;
    const n = this.nodes;
    const accs: Array<Ptr | null> = new Array(n).fill(null);
    let any = false;
    for (let i = 0; i < n; i++) {
      const node = b.ggml_graph_node(this.ptr, i);
      const p = this.ctx.params.get(pointerAddress(node));
      if (p) {
        const [n0, n1, n2, n3] = pad4(p.shape);
        accs[i] = b.ggml_new_tensor_4d(this.ctx.handle, GgmlType.F32, n0, n1, n2, n3);
        any = true;
      }
    }
    if (!any)
      throw new DajianError("invalid_input", "no trainable parameter in the graph", "mark weights with ctx.param()");
    b.ggml_build_backward_expand(this.ctx.handle, this.ptr, accs);
    this.backwardBuilt = true;
    return this;
  }

  /** Zero gradients (and AdamW moments), seed d(loss)=1. */
  reset(): this {
    if (!this.backwardBuilt)
      throw new DajianError("invalid_input", "reset() needs backward()", "call backward() first");
    this.ctx.lib.base.ggml_graph_reset(this.ptr);
    return this;
  }

  /** Gradient of a parameter (its accumulator), or of any other node (may be a view); null if none. */
  grad(t: Tensor): Tensor | null {
    const b = this.ctx.lib.base;
    const p = b.ggml_graph_get_grad_acc(this.ptr, t.ptr) || b.ggml_graph_get_grad(this.ptr, t.ptr);
    return p ? new Tensor(this.ctx, p) : null;
  }

  /**
   * Give every tensor of a noAlloc context in this graph its memory, planned by ggml-alloc (gallocr): a tensor's
   * memory is reused once its last reader has run, so the graph needs about its widest live set, not the sum of all
   * its tensors. Tensors marked with ctx.output() keep theirs. Returns the buffer size in bytes.
   */
  allocate(): number {
    const b = this.ctx.lib.base;
    if (!this.ctx.noAlloc)
      throw new DajianError("invalid_input", "allocate() needs a noAlloc context", "create it with { noAlloc: true }");
    if (this.allocator) throw new DajianError("invalid_input", "graph already allocated", "allocate it once");
    const galloc = b.ggml_gallocr_new(b.ggml_backend_cpu_buffer_type());
    if (!galloc) throw new DajianError("too_large", "cannot create a graph allocator", "free memory and retry");
    this.ctx.adopt(() => b.ggml_gallocr_free(galloc));
    if (!b.ggml_gallocr_alloc_graph(galloc, this.ptr)) {
      throw new DajianError(
        "too_large",
        "cannot allocate the graph's buffer",
        "use a smaller model, batch or sequence",
      );
    }
    this.allocator = galloc;
    this.bufferBytes = Number(b.ggml_gallocr_get_buffer_size(galloc, 0));
    return this.bufferBytes;
  }

  private plan(threads: number): Cplan {
    const n = Math.max(1, Math.floor(threads));
    if (this.ctx.noAlloc && !this.allocator) {
      throw new DajianError(
        "invalid_input",
        "graph of a noAlloc context computed before allocate()",
        "call allocate()",
      );
    }
    const plan = this.ctx.lib.cpu.ggml_graph_plan(this.ptr, n, null) as Cplan;
    const size = Number(plan.work_size);
    if (size > 0) {
      if (!this.work || this.work.size < size) this.work = { ptr: this.workBuffer(size), size };
      plan.work_data = this.work.ptr;
    }
    return plan;
  }

  /** Work memory: from the arena, or (noAlloc contexts have no data memory) from a small context of its own. */
  private workBuffer(size: number): Ptr {
    const b = this.ctx.lib.base;
    if (!this.ctx.noAlloc) {
      this.ctx.reserve("compute work buffer", size, 1);
      return b.ggml_new_buffer(this.ctx.handle, size);
    }
    const mem = size + Number(b.ggml_tensor_overhead()) + 1024;
    const wctx = b.ggml_init({ mem_size: mem, mem_buffer: null, no_alloc: false });
    if (!wctx) throw new DajianError("too_large", `cannot allocate ${size} bytes of work memory`, "free memory");
    this.ctx.adopt(() => b.ggml_free(wctx));
    return b.ggml_new_buffer(wctx, size);
  }

  /** Run the graph on the CPU backend (blocks the thread). */
  computeSync(threads: number): void {
    this.ctx.assertLive();
    const run = this.startSteps(threads);
    if (!run) return this.computeWindow(threads);
    try {
      for (const s of run.steps) {
        if (s.kind === "gemm") run.blas.sgemm(...s.args);
        else {
          run.window.set(s.from, s.count);
          this.computeWindow(threads);
        }
      }
    } finally {
      run.window.restore();
    }
  }

  /**
   * The BLAS schedule ready to run (null without one): the work buffer planned for the whole graph, so no window's
   * plan grows it, OpenBLAS's threads set, and the node window to point at each ggml stretch.
   */
  private startSteps(threads: number): { steps: Step[]; blas: Blas; window: ReturnType<Graph["window"]> } | null {
    const steps = this.schedule();
    if (!steps) return null;
    const blas = this.ctx.blas as Blas;
    this.plan(threads);
    blas.setThreads(threads);
    return { steps, blas, window: this.window() };
  }

  private computeWindow(threads: number): void {
    const st = Number(this.ctx.lib.cpu.ggml_graph_compute(this.ptr, this.plan(threads)));
    if (st !== 0) throw new DajianError("internal", `ggml compute failed with status ${st}`, "check memory and shapes");
  }

  /** How many of the graph's products run on OpenBLAS (0 without it); known once the graph can compute. */
  get blasProducts(): number {
    return (this.schedule() ?? []).filter((s) => s.kind === "gemm").length;
  }

  /** The BLAS schedule once the graph's tensors have memory (null: no BLAS, or no product worth it). */
  private schedule(): Step[] | null {
    if (!this.ctx.blas || (this.ctx.noAlloc && !this.allocator)) return null;
    const n = this.nodes;
    if (this.steps?.nodes !== n) this.steps = { nodes: n, list: planSteps(this.ctx.lib, this.ptr, n) };
    return this.steps.list;
  }

  /**
   * Point the graph's node window (ggml_cgraph.n_nodes / .nodes, the layout of ggml-impl.h at this ggml version:
   * int size, int n_nodes, int n_leafs, pad, nodes**) at nodes [from, from+count); restore() puts the whole back.
   */
  private window(): { set: (from: number, count: number) => void; restore: () => void } {
    const head = new DataView(nativeView(this.ptr, 24));
    const n = head.getInt32(4, true);
    const nodes0 = head.getBigUint64(16, true);
    return {
      set: (from, count) => {
        head.setInt32(4, count, true);
        head.setBigUint64(16, nodes0 + BigInt(8 * from), true);
      },
      restore: () => {
        head.setInt32(4, n, true);
        head.setBigUint64(16, nodes0, true);
      },
    };
  }

  /**
   * Compute node by node and sum the wall time and the process CPU time per op (MUL_MAT, SOFT_MAX_BACK, …; with
   * `shapes`, per op and result shape) — where a step's time goes; CPU time is steadier on a shared machine.
   * Works by pointing the graph's node window (ggml_cgraph.n_nodes / .nodes, the layout of ggml-impl.h at this
   * ggml version) at one node at a time, so it also pays a thread start per node; use it for profiling only.
   */
  profile(
    threads: number,
    opts: { shapes?: boolean } = {},
  ): Array<{ op: string; ms: number; cpuMs: number; count: number }> {
    this.ctx.assertLive();
    const b = this.ctx.lib.base;
    const n = this.nodes;
    const ops = Array.from({ length: n }, (_, i) => {
      const node = b.ggml_graph_node(this.ptr, i);
      const op = String(b.ggml_op_desc(node));
      return opts.shapes ? `${op} [${new Tensor(this.ctx, node).shape.join(",")}]` : op;
    });
    const run = this.startSteps(threads);
    const gemm = new Map((run?.steps ?? []).flatMap((s) => (s.kind === "gemm" ? [[s.node, s.args]] : [])));
    const w = run?.window ?? this.window();
    const totals = new Map<string, { ms: number; cpuMs: number; count: number }>();
    try {
      for (let i = 0; i < n; i++) {
        const args = gemm.get(i);
        const op = args ? `${ops[i]} (BLAS)` : ops[i];
        w.set(i, 1);
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        if (args && run) run.blas.sgemm(...args);
        else this.computeWindow(threads);
        const c = process.cpuUsage(c0);
        const e = totals.get(op) ?? { ms: 0, cpuMs: 0, count: 0 };
        e.ms += performance.now() - t0;
        e.cpuMs += (c.user + c.system) / 1000;
        e.count++;
        totals.set(op, e);
      }
    } finally {
      w.restore();
    }
    return [...totals].map(([op, e]) => ({ op, ...e })).sort((x, y) => y.ms - x.ms);
  }

  /** Run the graph on koffi worker threads so the event loop (progress, HTTP) keeps going. */
  async compute(threads: number): Promise<void> {
    this.ctx.assertLive();
    const run = this.startSteps(threads);
    if (!run) return this.computeWindowAsync(threads);
    try {
      for (const s of run.steps) {
        if (s.kind === "gemm") {
          await new Promise<void>((resolve, reject) =>
            run.blas.sgemm.async(...s.args, (err: unknown) => (err ? reject(err) : resolve())),
          );
        } else {
          run.window.set(s.from, s.count);
          await this.computeWindowAsync(threads);
        }
      }
    } finally {
      run.window.restore();
    }
  }

  private computeWindowAsync(threads: number): Promise<void> {
    const plan = this.plan(threads);
    const fn = this.ctx.lib.cpu.ggml_graph_compute;
    return new Promise((resolve, reject) => {
      fn.async(this.ptr, plan, (err: unknown, st: unknown) => {
        if (err) reject(err);
        else if (Number(st) !== 0)
          reject(new DajianError("internal", `ggml compute failed with status ${st}`, "check memory and shapes"));
        else resolve();
      });
    });
  }
}

/** The engine: loaded libraries plus a default thread count. */
export class Engine {
  readonly lib: GgmlLib;
  readonly threads: number;
  /** OpenBLAS for the large f32 products of this engine's contexts (blas.ts), or null. */
  readonly blas: Blas | null;
  /** `blas: false` keeps every product on ggml (DAJIAN_BLAS=off does the same process-wide). */
  constructor(opts: { threads?: number; blas?: boolean } = {}) {
    this.lib = loadGgml();
    this.threads = opts.threads ?? 2;
    this.blas = opts.blas === false ? null : loadBlas();
  }
  context(opts: ContextOptions): Context {
    return new Context(this.lib, { ...opts, blas: this.blas !== null && opts.blas !== false });
  }
  get backend(): BackendInfo {
    return {
      name: "cpu",
      variant: this.lib.variant,
      threads: this.threads,
      libDir: this.lib.dir,
      unusedGpuPackages: gpuPackagesBeside(this.lib.dir),
      blas: this.blas?.name ?? null,
    };
  }
  /** One line for logs and progress output. */
  describe(): string {
    const gpu = this.backend.unusedGpuPackages;
    const note = gpu.length ? `; GPU builds present but not used by the trainer yet: ${gpu.join(", ")}` : "";
    const products = this.blas
      ? `large f32 products on ${this.blas.name.split(" ").slice(0, 2).join(" ")}`
      : loadBlas()
        ? "f32 products on ggml (OpenBLAS turned off)"
        : `f32 products on ggml: OpenBLAS ${blasNote()}`;
    return `ggml cpu-${this.lib.variant} (score ${this.lib.score}), ${this.threads} threads, ${products}${note}`;
  }
}

/** node-llama-cpp GPU platform packages installed next to the CPU one (e.g. linux-x64-cuda, linux-x64-vulkan). */
function gpuPackagesBeside(libDir: string): string[] {
  const scope = dirname(dirname(dirname(libDir))); // …/@node-llama-cpp/<plat>/bins/<plat> → …/@node-llama-cpp
  const plat = `${process.platform}-${process.arch}`;
  if (!existsSync(scope)) return [];
  return readdirSync(scope)
    .filter((d) => d.startsWith(`${plat}-`) && existsSync(`${scope}/${d}/bins`))
    .map((d) => d.slice(plat.length + 1));
}
