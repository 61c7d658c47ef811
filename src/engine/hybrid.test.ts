// OpenBLAS products inside ggml graphs (blas.ts, hybrid.ts) against ggml computing the same graphs alone. CI installs
// OpenBLAS and sets DAJIAN_REQUIRE_BLAS=1, so there these tests cannot skip; elsewhere they skip with a reason.

import { afterAll, describe, expect, it } from "vitest";
import { DajianError } from "../core/errors.js";
import { findBlas, loadBlas } from "./blas.js";
import { Engine, type Context, type Tensor } from "./ggml.js";
import { gemmArgs } from "./hybrid.js";

const have = loadBlas() !== null;
if (!have && process.env.DAJIAN_REQUIRE_BLAS === "1") {
  throw new Error("DAJIAN_REQUIRE_BLAS=1 but OpenBLAS did not load: apt-get install libopenblas0-pthread");
}
const blasEngine = new Engine({ threads: 2 });
const plainEngine = new Engine({ threads: 2, blas: false });
const contexts: Context[] = [];
afterAll(() => contexts.forEach((c) => c.dispose()));

let seed = 7;
const rand = (n: number): number[] =>
  Array.from({ length: n }, () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 2 ** 32 - 0.5;
  });

/** The same inputs and graph on both engines; returns [BLAS result, ggml result, BLAS products in the graph]. */
function both(
  shapes: number[][],
  build: (ctx: Context, xs: Tensor[]) => Tensor,
  run: "sync" | "async" = "sync",
): Promise<[Float32Array, Float32Array, number]> {
  const values = shapes.map((s) => rand(s.reduce((a, b) => a * b, 1)));
  const once = async (engine: Engine): Promise<[Float32Array, number]> => {
    const ctx = engine.context({ memBytes: 64 << 20 });
    contexts.push(ctx);
    const xs = shapes.map((s, i) => ctx.tensor(s).set(values[i]));
    const out = build(ctx, xs);
    const g = ctx.graph().expand(out);
    if (run === "sync") g.computeSync(2);
    else await g.compute(2);
    return [out.get(), g.blasProducts];
  };
  return Promise.all([once(blasEngine), once(plainEngine)]).then(([[a, n], [b]]) => [a, b, n]);
}

function expectClose(a: Float32Array, b: Float32Array): void {
  expect(a.length).toBe(b.length);
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  expect(scale).toBeGreaterThan(0.1);
  expect(worst / scale).toBeLessThan(1e-5);
}

describe.skipIf(!have)("OpenBLAS products in ggml graphs", () => {
  it("mul_mat, a transposed operand (mulMatT) and a summed outer product (outerSum) match ggml alone", async () => {
    // [K, M] × [K, N]; x [M, K] · y [K, N]; a [M, K], b [N, K]: each ≥ 2 Mi multiply-adds, so BLAS takes it.
    const cases: Array<[number[][], (ctx: Context, xs: Tensor[]) => Tensor]> = [
      [
        [
          [160, 144],
          [160, 130],
        ],
        (ctx, [a, b]) => ctx.mulMat(a, b),
      ],
      [
        [
          [144, 160],
          [160, 130],
        ],
        (ctx, [x, y]) => ctx.mulMatT(x, y),
      ],
      [
        [
          [144, 160],
          [130, 160],
        ],
        (ctx, [a, b]) => ctx.outerSum(a, b),
      ],
    ];
    for (const [shapes, build] of cases) {
      const [got, ref, n] = await both(shapes, build);
      expect(n).toBe(1);
      expectClose(got, ref);
    }
  });

  it("reads strided views in place and keeps ggml's nodes between products in order (async too)", async () => {
    const graph = (ctx: Context, [w, x, z]: Tensor[]): Tensor => {
      const block = ctx.view(w, [160, 96], 32 * 160 * 4); // rows 32..127 of w, at an offset
      const h = ctx.silu(ctx.mulMat(block, x)); // [96, 140], then ggml work on it
      const hRows = ctx.view(h, [64, 140], 8 * 4); // rows 8..71 of each column: row stride 96
      const p1 = ctx.mulMatT(hRows, z); // strided first operand, transposed second: [64, 50]
      const p2 = ctx.outerSum(hRows, ctx.view(x, [30, 140], 5 * 4)); // strided both: [64, 30]
      return ctx.concat(ctx.scale(p1, 0.5), p2, 1);
    };
    const saved = process.env.DAJIAN_BLAS_MIN_MACS;
    process.env.DAJIAN_BLAS_MIN_MACS = "0"; // all three products on BLAS, small ones included
    try {
      for (const run of ["sync", "async"] as const) {
        const [got, ref, n] = await both(
          [
            [160, 160],
            [160, 140],
            [140, 50],
          ],
          graph,
          run,
        );
        expect(n).toBe(3);
        expectClose(got, ref);
      }
    } finally {
      if (saved === undefined) delete process.env.DAJIAN_BLAS_MIN_MACS;
      else process.env.DAJIAN_BLAS_MIN_MACS = saved;
    }
  });

  it("two graphs computing at once (the trainers' one-thread replicas) both get their own right answer", async () => {
    const make = (engine: Engine, values: number[][]): { g: ReturnType<Context["graph"]>; out: Tensor } => {
      const ctx = engine.context({ memBytes: 64 << 20 });
      contexts.push(ctx);
      const [a, b] = [ctx.tensor([256, 192]).set(values[0]), ctx.tensor([256, 200]).set(values[1])];
      const out = ctx.mulMat(a, b);
      return { g: ctx.graph().expand(out), out };
    };
    const v1 = [rand(256 * 192), rand(256 * 200)];
    const v2 = [rand(256 * 192), rand(256 * 200)];
    const [x1, x2, r1, r2] = [make(blasEngine, v1), make(blasEngine, v2), make(plainEngine, v1), make(plainEngine, v2)];
    await Promise.all([x1.g.compute(1), x2.g.compute(1)]);
    r1.g.computeSync(2);
    r2.g.computeSync(2);
    expectClose(x1.out.get(), r1.out.get());
    expectClose(x2.out.get(), r2.out.get());
  });
});

describe("BLAS selection", () => {
  it("a DAJIAN_BLAS path that does not load is an error that names the fix, not a silent fallback", () => {
    let err: unknown;
    try {
      findBlas("/nonexistent/libopenblas.so.0");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DajianError);
    expect((err as DajianError).message).toContain("DAJIAN_BLAS=/nonexistent/libopenblas.so.0");
    expect((err as DajianError).hint).toMatch(/libopenblas|unset/);
    expect(findBlas("off").blas).toBeNull();
  });

  it("leaves small, batched and non-f32 products to ggml", () => {
    const t = (ne: number[], type = 0, nb?: number[]) => ({
      type,
      ne,
      nb: nb ?? [4, 4 * ne[0], 4 * ne[0] * ne[1], 4 * ne[0] * ne[1] * ne[2]],
      data: 4096n,
    });
    expect(gemmArgs("MUL_MAT", t([160, 144, 1, 1]), t([160, 130, 1, 1]), t([144, 130, 1, 1]))).not.toBeNull();
    expect(gemmArgs("MUL_MAT", t([16, 16, 1, 1]), t([16, 16, 1, 1]), t([16, 16, 1, 1]))).toBeNull();
    expect(gemmArgs("MUL_MAT", t([160, 144, 4, 1]), t([160, 130, 4, 1]), t([144, 130, 4, 1]))).toBeNull();
    expect(gemmArgs("MUL_MAT", t([160, 144, 1, 1], 1), t([160, 130, 1, 1]), t([144, 130, 1, 1]))).toBeNull();
  });

  it("the engine says which library its products use", () => {
    expect(plainEngine.describe()).toMatch(/f32 products on ggml/);
    if (have) expect(blasEngine.describe()).toMatch(/large f32 products on OpenBLAS/);
  });
});
