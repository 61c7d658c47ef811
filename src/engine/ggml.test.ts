import { afterAll, describe, expect, it } from "vitest";
import { DajianError } from "../core/errors.js";
import { GgmlType } from "../gguf/types.js";
import { quantizeQ4_0, quantizeQ8_0 } from "../gguf/quant.js";
import { Engine, type Context, type Tensor } from "./ggml.js";

const engine = new Engine({ threads: 1 });
const contexts: Context[] = [];
afterAll(() => contexts.forEach((c) => c.dispose()));

let seed = 99;
function rand(): number {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 2 ** 32;
}
const randArr = (n: number, lo = -1, hi = 1): number[] => Array.from({ length: n }, () => lo + (hi - lo) * rand());
const numel = (s: number[]): number => s.reduce((a, b) => a * b, 1);

interface Input {
  shape: number[];
  lo?: number;
  hi?: number;
  /** not differentiated (indices, masks, targets) */
  fixed?: ArrayLike<number>;
  type?: GgmlType;
}

/**
 * Gradient check: loss = sum(f(x…) ⊙ R) for a fixed random R; ggml's backward against central differences
 * (in f64 arithmetic on the f32 forward), on a few coordinates of every trainable input.
 */
function gradCheck(name: string, inputs: Input[], f: (ctx: Context, xs: Tensor[]) => Tensor, tol = 2e-2): void {
  const ctx = engine.context({ memBytes: 16 << 20 });
  contexts.push(ctx);
  const xs = inputs.map((inp) => {
    const t = ctx.tensor(inp.shape, inp.type ?? GgmlType.F32);
    t.set(inp.fixed ?? randArr(numel(inp.shape), inp.lo, inp.hi));
    if (!inp.fixed) ctx.param(t);
    return t;
  });
  const out = f(ctx, xs);
  const r = ctx.fromArray(out.shape, randArr(out.numel));
  const loss = ctx.loss(ctx.sum(ctx.mul(out, r)));
  const g = ctx.graph({ grads: true, size: 2048 });
  g.expand(loss).backward();
  const run = (): number => {
    g.reset();
    g.computeSync(1);
    return loss.get()[0];
  };
  run();
  inputs.forEach((inp, i) => {
    if (inp.fixed) return;
    const grad = g.grad(xs[i]);
    expect(grad, `${name}: input ${i} has a gradient`).not.toBeNull();
    const analytic = (grad as Tensor).get();
    const data = xs[i].view();
    const n = data.length;
    const picks = n <= 8 ? [...Array(n).keys()] : Array.from({ length: 8 }, () => Math.floor(rand() * n));
    for (const k of picks) {
      const orig = data[k];
      const h = 1e-2 * Math.max(1, Math.abs(orig));
      data[k] = orig + h;
      const lp = run();
      data[k] = orig - h;
      const lm = run();
      data[k] = orig;
      const numeric = (lp - lm) / (2 * h);
      const err = Math.abs(numeric - analytic[k]) / Math.max(1, Math.abs(numeric), Math.abs(analytic[k]));
      expect(err, `${name}: d/dx${i}[${k}] analytic ${analytic[k]} numeric ${numeric}`).toBeLessThan(tol);
    }
  });
}

describe("engine", () => {
  it("picks a CPU variant ggml scores as supported and reports it", () => {
    expect(engine.lib.score).toBeGreaterThan(0);
    expect(engine.describe()).toMatch(/^ggml cpu-\w+ \(score \d+\), 1 threads/);
    expect(engine.backend.variant).toBe(engine.lib.variant);
  });

  it("multiplies matrices like a reference implementation", () => {
    using ctx = engine.context({ memBytes: 4 << 20 });
    const [k, m, n] = [5, 3, 4];
    const av = randArr(k * m);
    const bv = randArr(k * n);
    const c = ctx.mulMat(ctx.fromArray([k, m], av), ctx.fromArray([k, n], bv));
    expect(c.shape).toEqual([m, n]);
    ctx.graph().expand(c).computeSync(1);
    const got = c.get();
    for (let j = 0; j < n; j++) {
      for (let i = 0; i < m; i++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += av[i * k + p] * bv[j * k + p];
        expect(got[j * m + i]).toBeCloseTo(s, 5);
      }
    }
  });

  it("refuses bad shapes and exhausted memory with DajianError instead of aborting", () => {
    using ctx = engine.context({ memBytes: 1 << 20 });
    const a = ctx.tensor([4, 3]);
    const b = ctx.tensor([5, 3]);
    expect(() => ctx.mulMat(a, b)).toThrow(DajianError);
    expect(() => ctx.add(a, b)).toThrow(/broadcast/);
    expect(() => ctx.reshape(a, [5])).toThrow(/element count/);
    expect(() => ctx.tensor([1024, 1024])).toThrow(/out of memory/);
    expect(() => ctx.loss(a)).toThrow(/scalar/);
    ctx.dispose();
    expect(() => ctx.tensor([2])).toThrow(/disposed/);
  });

  it("gradients of element-wise ops match finite differences", () => {
    gradCheck("add+broadcast", [{ shape: [4, 3] }, { shape: [4, 1] }], (c, [a, b]) => c.add(a, b));
    gradCheck("sub", [{ shape: [6] }, { shape: [6] }], (c, [a, b]) => c.sub(a, b));
    gradCheck("mul+broadcast", [{ shape: [4, 3] }, { shape: [4, 1] }], (c, [a, b]) => c.mul(a, b));
    gradCheck("div", [{ shape: [5] }, { shape: [5], lo: 0.5, hi: 2 }], (c, [a, b]) => c.div(a, b));
    gradCheck("scale", [{ shape: [5] }], (c, [a]) => c.scale(a, 0.37));
    gradCheck("sqr", [{ shape: [5] }], (c, [a]) => c.sqr(a));
    gradCheck("sqrt", [{ shape: [5], lo: 0.5, hi: 2 }], (c, [a]) => c.sqrt(a));
    gradCheck("log", [{ shape: [5], lo: 0.5, hi: 2 }], (c, [a]) => c.log(a));
    gradCheck("silu", [{ shape: [7] }], (c, [a]) => c.silu(a));
    gradCheck("swiglu", [{ shape: [6, 2] }, { shape: [6, 2] }], (c, [a, b]) => c.swiglu(a, b));
  });

  it("gradients of reductions, norms and shape ops match finite differences", () => {
    gradCheck("sum", [{ shape: [4, 3] }], (c, [a]) => c.sum(a));
    gradCheck("sumRows", [{ shape: [4, 3] }], (c, [a]) => c.sumRows(a));
    gradCheck("mean", [{ shape: [4, 3] }], (c, [a]) => c.mean(a));
    gradCheck("repeat", [{ shape: [4, 1] }, { shape: [4, 3], fixed: new Float32Array(12) }], (c, [a, like]) =>
      c.repeat(a, like),
    );
    gradCheck("rmsNorm", [{ shape: [8, 3] }], (c, [a]) => c.rmsNorm(a, 1e-5));
    gradCheck("reshape+permute+cont", [{ shape: [4, 6] }], (c, [a]) =>
      c.cont(c.permute(c.reshape(a, [2, 2, 6]), [1, 0, 2, 3])),
    );
    gradCheck("transpose", [{ shape: [4, 3] }], (c, [a]) => c.cont(c.transpose(a)));
  });

  it("gradients of matmul, softmax, masking, RoPE, embeddings and cross-entropy match finite differences", () => {
    gradCheck("mulMat", [{ shape: [8, 5] }, { shape: [8, 3] }], (c, [a, b]) => c.mulMat(a, b));
    gradCheck("mulMat batched", [{ shape: [4, 3, 2] }, { shape: [4, 5, 2] }], (c, [a, b]) => c.mulMat(a, b));
    gradCheck("softMax", [{ shape: [6, 3] }], (c, [a]) => c.softMax(a));
    gradCheck("diagMaskInf+softMax", [{ shape: [4, 4] }], (c, [a]) => c.softMax(c.diagMaskInf(a, 0)));
    gradCheck("softMaxExt scale", [{ shape: [5, 3] }], (c, [a]) => c.softMaxExt(a, null, 0.5));
    const pos = [0, 1, 2];
    gradCheck("rope", [{ shape: [8, 2, 3] }, { shape: [3], fixed: pos, type: GgmlType.I32 }], (c, [a, p]) =>
      c.rope(a, p, 8, { freqBase: 10000 }),
    );
    gradCheck("getRows", [{ shape: [4, 6] }, { shape: [3], fixed: [5, 0, 5], type: GgmlType.I32 }], (c, [a, ids]) =>
      c.getRows(a, ids),
    );
    const targets = [0.1, 0.7, 0.2, 0, 0, 1];
    gradCheck("crossEntropy", [{ shape: [3, 2] }, { shape: [3, 2], fixed: targets }], (c, [a, t]) =>
      c.crossEntropyLoss(a, t),
    );
  });

  it("accumulates gradients over computes until reset (micro-batches)", () => {
    using ctx = engine.context({ memBytes: 1 << 20 });
    const w = ctx.param(ctx.fromArray([3], [1, 2, 3]));
    const x = ctx.fromArray([3], [1, 1, 1]);
    const loss = ctx.loss(ctx.sum(ctx.mul(ctx.sqr(w), x)));
    const g = ctx.graph({ grads: true, size: 256 }).expand(loss).backward();
    const grad = g.grad(w) as Tensor;
    g.reset();
    g.computeSync(1);
    expect(Array.from(grad.get())).toEqual([2, 4, 6]);
    x.set([0.5, 0.5, 0.5]);
    g.computeSync(1);
    expect(Array.from(grad.get())).toEqual([3, 6, 9]);
    g.reset();
    g.computeSync(1);
    expect(Array.from(grad.get())).toEqual([1, 2, 3]);
  });

  it("runs AdamW in-graph like the reference update", () => {
    using ctx = engine.context({ memBytes: 4 << 20 });
    const w0 = [0.5, -1, 2, 0.1];
    const w = ctx.param(ctx.fromArray([4], w0));
    const loss = ctx.loss(ctx.sum(ctx.sqr(w)));
    const g = ctx.graph({ grads: true, size: 256 });
    g.expand(loss).backward();
    const grad = g.grad(w) as Tensor;
    const m = ctx.tensor([4]).zero();
    const v = ctx.tensor([4]).zero();
    const [lr, b1, b2, eps, wd] = [0.1, 0.9, 0.999, 1e-8, 0.01];
    const hyper = ctx.tensor([7]);
    g.expand(ctx.adamwStep(w, grad, m, v, hyper));
    const ref = { w: [...w0], m: [0, 0, 0, 0], v: [0, 0, 0, 0] };
    for (let t = 1; t <= 3; t++) {
      hyper.set([lr, b1, b2, eps, wd, 1 / (1 - b1 ** t), 1 / (1 - b2 ** t)]);
      g.reset();
      m.set(ref.m);
      v.set(ref.v);
      g.computeSync(1);
      for (let i = 0; i < 4; i++) {
        const gi = 2 * ref.w[i];
        ref.m[i] = b1 * ref.m[i] + (1 - b1) * gi;
        ref.v[i] = b2 * ref.v[i] + (1 - b2) * gi * gi;
        const mh = ref.m[i] / (1 - b1 ** t);
        const vh = ref.v[i] / (1 - b2 ** t);
        ref.w[i] = ref.w[i] * (1 - lr * wd) - (lr * mh) / (Math.sqrt(vh) + eps);
      }
      const got = w.get();
      for (let i = 0; i < 4; i++) expect(got[i]).toBeCloseTo(ref.w[i], 4);
    }
  });

  it("reuses one work buffer: repeated computes do not grow the context", () => {
    using ctx = engine.context({ memBytes: 8 << 20 });
    const a = ctx.fromArray([64, 64], randArr(64 * 64));
    const g = ctx.graph().expand(ctx.softMax(ctx.mulMat(a, a)));
    g.computeSync(1);
    const used = ctx.usedBytes;
    for (let i = 0; i < 20; i++) g.computeSync(1);
    expect(ctx.usedBytes).toBe(used);
  });

  it("computes asynchronously without blocking the event loop", async () => {
    using ctx = engine.context({ memBytes: 8 << 20 });
    const a = ctx.fromArray([256, 256], randArr(256 * 256));
    const c = ctx.mulMat(a, a);
    const g = ctx.graph().expand(c);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    await g.compute(1);
    clearInterval(timer);
    expect(c.get().every(Number.isFinite)).toBe(true);
    expect(ticks).toBeGreaterThanOrEqual(0);
  });

  it("dajian's TypeScript Q8_0/Q4_0 quantizers are bit-exact with ggml's", () => {
    const q = engine.lib.base;
    const n = 32 * 64;
    const src = new Float32Array(randArr(n, -3, 3));
    src[5] = 0;
    src.fill(0, 64, 96); // an all-zero block
    for (const [type, ours, bytes] of [
      [GgmlType.Q8_0, quantizeQ8_0, 34],
      [GgmlType.Q4_0, quantizeQ4_0, 18],
    ] as const) {
      const dst = new Uint8Array((n / 32) * bytes);
      q.ggml_quantize_init(type);
      q.ggml_quantize_chunk(type, src, dst, 0, 64, 32, null);
      expect(Buffer.from(ours(src)).equals(Buffer.from(dst))).toBe(true);
    }
  });
});
