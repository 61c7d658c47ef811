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

interface Aux {
  pos?: number[];
  mask?: number[];
  ids?: number[];
  targets?: number[];
}
type AuxT = { pos: Tensor; mask: Tensor; ids: Tensor; targets: Tensor };

/**
 * Check a backward op against central differences of its forward op: with loss(x) = sum(f(x) ⊙ R), back(R, x, f(x))
 * must equal d loss / dx at every coordinate.
 */
function backCheck(
  name: string,
  shape: number[],
  fwd: (c: Context, x: Tensor, aux: AuxT) => Tensor,
  back: (c: Context, dy: Tensor, x: Tensor, y: Tensor, aux: AuxT) => Tensor,
  aux: Aux = {},
  tol = 2e-2,
): void {
  using ctx = engine.context({ memBytes: 8 << 20 });
  const x = ctx.fromArray(shape, randArr(numel(shape)));
  const mk = (v: number[] | undefined, s: number[], type = GgmlType.F32): Tensor =>
    ctx.fromArray(v ? s : [1], v ?? [0], type);
  const t: AuxT = {
    pos: mk(aux.pos, [aux.pos?.length ?? 1], GgmlType.I32),
    mask: mk(aux.mask, [shape[0], shape[1] ?? 1]),
    ids: mk(aux.ids, [aux.ids?.length ?? 1], GgmlType.I32),
    targets: mk(aux.targets, shape),
  };
  const y = fwd(ctx, x, t);
  const r = ctx.fromArray(y.shape, randArr(y.numel));
  const loss = ctx.sum(ctx.mul(y, r));
  const dx = back(ctx, r, x, y, t);
  expect(dx.shape, `${name}: gradient shape`).toEqual(x.shape);
  const g = ctx.graph({ size: 256 }).expand(loss).expand(dx);
  g.computeSync(1);
  const analytic = dx.get();
  const data = x.view();
  const lossAt = (): number => {
    g.computeSync(1);
    return loss.get()[0];
  };
  for (let k = 0; k < data.length; k++) {
    const orig = data[k];
    const h = 1e-2;
    data[k] = orig + h;
    const lp = lossAt();
    data[k] = orig - h;
    const lm = lossAt();
    data[k] = orig;
    const numeric = (lp - lm) / (2 * h);
    const err = Math.abs(numeric - analytic[k]) / Math.max(1, Math.abs(numeric));
    expect(err, `${name}: d/dx[${k}] analytic ${analytic[k]} numeric ${numeric}`).toBeLessThan(tol);
  }
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
    const a = ctx.fromArray([512, 512], randArr(512 * 512));
    let c = ctx.mulMat(a, a);
    const g = ctx.graph().expand(c);
    for (let i = 0; i < 5; i++) g.expand((c = ctx.mulMat(a, c)));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    await g.compute(1);
    clearInterval(timer);
    expect(c.get().every(Number.isFinite)).toBe(true);
    expect(ticks).toBeGreaterThan(0); // timers fired while six 512² matmuls ran on the worker thread
  });

  it("hand-written backward ops match finite differences of their forward ops", () => {
    const pos = [0, 1, 2];
    backCheck(
      "rmsNormBack",
      [8, 3],
      (c, x) => c.rmsNorm(x, 1e-5),
      (c, dy, x) => c.rmsNormBack(dy, x, 1e-5),
    );
    backCheck(
      "siluBack",
      [7, 2],
      (c, x) => c.silu(x),
      (c, dy, x) => c.siluBack(dy, x),
    );
    backCheck(
      "ropeBack",
      [8, 2, 3],
      (c, x, aux) => c.rope(x, aux.pos, 8, { freqBase: 100 }),
      (c, dy, _x, _y, aux) => c.ropeBack(dy, aux.pos, 8, { freqBase: 100 }),
      { pos },
    );
    const mask = [0, -Infinity, -Infinity, 0, 0, -Infinity, 0, 0, 0];
    backCheck(
      "softMaxBack (causal mask, scale)",
      [3, 3, 2],
      (c, x, aux) => c.softMaxExt(x, aux.mask, 0.7),
      (c, dy, _x, y) => c.softMaxBack(dy, y, 0.7),
      { mask },
    );
    backCheck(
      "getRowsBack",
      [4, 6],
      (c, x, aux) => c.getRows(x, aux.ids),
      (c, dy, x, _y, aux) => c.getRowsBack(dy, aux.ids, x),
      { ids: [5, 0, 5] },
    );
    backCheck(
      "repeatBack",
      [4, 2],
      (c, x) => c.repeatTo(x, [4, 6]),
      (c, dy, x) => c.repeatBack(dy, x),
    );
    backCheck(
      "crossEntropyLossBack",
      [3, 2],
      (c, x, aux) => c.crossEntropyLoss(x, aux.targets),
      (c, dy, x, _y, aux) => c.crossEntropyLossBack(dy, x, aux.targets),
      { targets: [0.1, 0.7, 0.2, 0, 0, 1] },
    );
  });

  it("ggml-alloc plans one buffer for a graph: same results as an arena, less memory, freed with the context", () => {
    const N = 64;
    const run = (noAlloc: boolean): { out: Float32Array; bytes: number } => {
      using stat = engine.context({ memBytes: 4 << 20 });
      const w = stat.fromArray(
        [N, N],
        Array.from({ length: N * N }, (_, i) => Math.sin(i) * 0.1),
      );
      using ctx = noAlloc ? engine.context({ memBytes: 1 << 20, noAlloc: true, uses: [stat] }) : stat;
      let x = ctx.rmsNorm(w, 1e-5);
      for (let i = 0; i < 12; i++) x = ctx.add(x, ctx.silu(ctx.mulMat(w, x)));
      const out = ctx.output(ctx.softMax(x));
      const g = ctx.graph().expand(out);
      if (noAlloc) expect(() => g.computeSync(1)).toThrow(/allocate/);
      const bytes = noAlloc ? g.allocate() : 0;
      if (noAlloc) expect(() => g.allocate()).toThrow(DajianError);
      g.computeSync(1);
      return { out: out.get(), bytes };
    };
    const arena = run(false);
    const planned = run(true);
    expect(Array.from(planned.out)).toEqual(Array.from(arena.out));
    // 37 op results of N² floats each in an arena; the plan keeps only a few alive at once
    expect(planned.bytes).toBeGreaterThan(0);
    expect(planned.bytes).toBeLessThan(8 * N * N * 4);
  });

  it("frees native memory deterministically on dispose (RSS stays flat over many large contexts)", () => {
    const rss = (): number => process.memoryUsage().rss;
    const MB = 1 << 20;
    const cycle = (): void => {
      using ctx = engine.context({ memBytes: 64 * MB });
      ctx
        .tensor([15 * MB])
        .view()
        .fill(1); // touch 60 MB
      using cc = engine.context({ memBytes: 1 * MB, noAlloc: true, uses: [ctx] });
      const a = cc.tensor([2 * MB]);
      const g = cc.graph().expand(cc.output(cc.scale(a, 2)));
      g.allocate(); // a 16 MB ggml-alloc buffer, owned by cc
      a.view().fill(1);
      g.computeSync(1);
    };
    cycle();
    const before = rss();
    for (let i = 0; i < 8; i++) cycle();
    // 8 cycles × ~76 MB touched: without frees RSS would grow by ~600 MB
    expect(rss() - before).toBeLessThan(64 * MB);
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
