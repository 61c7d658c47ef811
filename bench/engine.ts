// npm run bench:engine — the ENGINE-NOTES probe: a 1024×1024 f32 matmul through koffi → ggml, forward and
// forward+backward of sum(A·B) w.r.t. A, with ggml's default backward (OUT_PROD) and with the weight gradient
// written as a mul_mat on transposed copies — each on ggml alone and with the products on OpenBLAS (src/engine/blas.ts,
// when installed). PyTorch (CPU, 2 threads) runs side by side when it is installed.

import { execFileSync } from "node:child_process";
import { Engine, type Context, type Tensor } from "../src/engine/index.js";

const N = 1024;
const THREADS = Number(process.env.THREADS ?? 2);
const REPS = Number(process.env.REPS ?? 7);
const FLOP = 2 * N ** 3;

const engine = new Engine({ threads: THREADS, blas: false });
const blasEngine = new Engine({ threads: THREADS });
console.log(`engine: ${blasEngine.describe()}`);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function timeGraph(build: (ctx: Context, a: Tensor, b: Tensor) => { run: () => void }, eng = engine): number {
  const ctx = eng.context({ memBytes: 256 << 20 });
  try {
    const a = ctx.tensor([N, N]);
    const b = ctx.tensor([N, N]);
    const av = a.view();
    const bv = b.view();
    for (let i = 0; i < av.length; i++) {
      av[i] = Math.sin(i) * 0.5;
      bv[i] = Math.cos(i) * 0.5;
    }
    const { run } = build(ctx, a, b);
    run(); // warm-up
    const times: number[] = [];
    for (let r = 0; r < REPS; r++) {
      const t0 = performance.now();
      run();
      times.push(performance.now() - t0);
    }
    return median(times);
  } finally {
    ctx.dispose();
  }
}

type Build = (ctx: Context, a: Tensor, b: Tensor) => { run: () => void };
const forward: Build = (ctx, a, b) => {
  const g = ctx.graph().expand(ctx.mulMat(a, b));
  return { run: () => g.computeSync(THREADS) };
};
const autogradBackward: Build = (ctx, a, b) => {
  ctx.param(a);
  const loss = ctx.loss(ctx.sum(ctx.mulMat(a, b)));
  const g = ctx.graph({ grads: true, size: 256 }).expand(loss).backward();
  return {
    run: () => {
      g.reset();
      g.computeSync(THREADS);
    },
  };
};
// Hand-written backward: dA = Σ B·Gᵀ with G = dL/dC (ones here, but computed as a tensor), as Context.outerSum: on
// ggml alone mul_mat(cont(Bᵀ), cont(Gᵀ)); on OpenBLAS an OUT_PROD that reads the transposes in place.
const handBackward: Build = (ctx, a, b) => {
  const c = ctx.mulMat(a, b);
  const gC = ctx.tensor([N, N]);
  gC.view().fill(1);
  const g = ctx.graph().expand(c).expand(ctx.outerSum(b, gC));
  return { run: () => g.computeSync(THREADS) };
};

const fwd = timeGraph(forward);
const bwdDefault = timeGraph(autogradBackward);
const bwdMulMat = timeGraph(handBackward);
// The same three on OpenBLAS (null when it is not installed).
const withBlas = blasEngine.blas !== null;
const fwdBlas = withBlas ? timeGraph(forward, blasEngine) : null;
const bwdDefaultBlas = withBlas ? timeGraph(autogradBackward, blasEngine) : null;
const bwdOuterBlas = withBlas ? timeGraph(handBackward, blasEngine) : null;

let torch: { fwd: number; bwd: number } | null = null;
try {
  const out = execFileSync(
    "python3",
    [
      "-c",
      `
import torch, time
torch.set_num_threads(${THREADS})
a = torch.randn(${N}, ${N}, requires_grad=True); b = torch.randn(${N}, ${N})
def med(f, n=${REPS}):
    f(); ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    ts.sort(); return ts[len(ts)//2] * 1000
def fb():
    a.grad = None; (a @ b).sum().backward()
print(med(lambda: a @ b), med(fb))
`,
    ],
    {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      env: { ...process.env, OPENBLAS_CORETYPE: "", OPENBLAS_L2_SIZE: "" },
    },
  );
  const [f, b] = out.trim().split(/\s+/).map(Number);
  torch = { fwd: f, bwd: b };
} catch {
  console.log(
    "PyTorch not found: install Debian's python3-torch and libopenblas0-pthread for the side-by-side column.",
  );
}

// FFI cost: what building a graph node costs in koffi calls.
const callCtx = engine.context({ memBytes: 1 << 20 });
const probe = callCtx.tensor([4]);
const CALLS = 200_000;
const t0 = performance.now();
for (let i = 0; i < CALLS; i++) engine.lib.base.ggml_nbytes(probe.ptr);
const callUs = ((performance.now() - t0) * 1000) / CALLS;
callCtx.dispose();

const gf = (ms: number, flop: number): string => (flop / (ms / 1000) / 1e9).toFixed(1);
const rows: Array<[string, number | null, number, number | null]> = [
  ["matmul forward, ggml", fwd, FLOP, torch?.fwd ?? null],
  ["matmul forward, OpenBLAS", fwdBlas, FLOP, torch?.fwd ?? null],
  ["fwd+bwd, ggml default backward (OUT_PROD), ggml", bwdDefault, 2 * FLOP, torch?.bwd ?? null],
  ["fwd+bwd, ggml default backward (OUT_PROD), OpenBLAS", bwdDefaultBlas, 2 * FLOP, torch?.bwd ?? null],
  ["fwd+bwd, weight grad as mul_mat on transposes, ggml", bwdMulMat, 2 * FLOP, torch?.bwd ?? null],
  ["fwd+bwd, weight grad as outerSum, OpenBLAS", bwdOuterBlas, 2 * FLOP, torch?.bwd ?? null],
];
console.log(`\n${N}×${N} f32, ${THREADS} threads, median of ${REPS}`);
console.log("| case | dajian ms | GFLOP/s | PyTorch ms | dajian speed vs PyTorch |");
console.log("|---|---|---|---|---|");
for (const [name, ms, flop, t] of rows) {
  if (ms === null) {
    console.log(`| ${name} | n/a: OpenBLAS not installed (apt-get install libopenblas0-pthread) | | | |`);
    continue;
  }
  const ratio = t === null ? "n/a" : `${(t / ms).toFixed(2)}×`;
  console.log(`| ${name} | ${ms.toFixed(1)} | ${gf(ms, flop)} | ${t === null ? "n/a" : t.toFixed(1)} | ${ratio} |`);
}
console.log(`\nkoffi → ggml call overhead: ${callUs.toFixed(2)} µs per call (${CALLS} calls)`);
