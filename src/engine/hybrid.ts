// Which nodes of a ggml graph OpenBLAS computes (blas.ts): 2-D f32 MUL_MAT and OUT_PROD nodes big enough that a
// faster GEMM outweighs splitting ggml's run there. The graph is then computed as alternating steps — a window of
// nodes for ggml_graph_compute, one product for cblas_sgemm — in node order, so ggml-alloc's memory plan (a buffer
// reused once its last reader has run) holds unchanged. OUT_PROD(a, transpose(b)) is how graph builders write a
// product with a transposed operand for BLAS (Context.mulMatT): sgemm reads the transpose in place, where ggml's
// mul_mat needs a contiguous copy first.

import { GgmlType } from "../gguf/types.js";
import { NO_TRANS, ROW_MAJOR, TRANS } from "./blas.js";
import { nativeView, pointerAt, type GgmlLib, type Ptr } from "./ffi.js";

export type Step =
  | { kind: "ggml"; from: number; count: number }
  | { kind: "gemm"; node: number; op: string; args: Array<number | bigint> };

/**
 * MUL_MATs below this many multiply-adds stay in ggml: a window split costs a thread start (~50 µs). OUT_PRODs go
 * to BLAS from 1/64 of it: ggml's OUT_PROD kernel is several times slower than its mul_mat (a rank-8 LoRA step spent
 * 7 % of its time in ~1 Mi-MAC OUT_PRODs on ggml). Batched (3-D/4-D) products stay in ggml: one BLAS call per slice
 * from the trainers' async replicas cost more in hand-offs than it saved (attention: 24 slices of 1 Mi MACs).
 * DAJIAN_BLAS_MIN_MACS overrides the threshold (tests set 0: every eligible product).
 */
export function minGemmMacs(): number {
  const env = Number(process.env.DAJIAN_BLAS_MIN_MACS);
  return process.env.DAJIAN_BLAS_MIN_MACS && Number.isFinite(env) ? env : 1 << 21;
}

interface Info {
  type: number;
  ne: number[];
  nb: number[];
  data: bigint;
}

// ggml_tensor layout at this ggml version (ggml.h): type @0, ne[4] @16, nb[4] @48, src[10] @152, data @248.
const SRC0 = 152;
const DATA = 248;

function info(ptr: Ptr): Info {
  const v = new DataView(nativeView(ptr, 256));
  return {
    type: v.getInt32(0, true),
    ne: [0, 1, 2, 3].map((i) => Number(v.getBigInt64(16 + 8 * i, true))),
    nb: [0, 1, 2, 3].map((i) => Number(v.getBigUint64(48 + 8 * i, true))),
    data: v.getBigUint64(DATA, true),
  };
}

const F = 4; // bytes per f32
const is2d = (t: Info): boolean => t.ne[2] === 1 && t.ne[3] === 1;
const usable = (t: Info): boolean => t.type === GgmlType.F32 && is2d(t) && t.data !== 0n;

/**
 * cblas_sgemm arguments for one node, or null when ggml should compute it. In row-major terms a ggml tensor
 * [ne0, ne1] with nb0 = 4 is an ne1 × ne0 matrix with row stride nb1/4.
 *   MUL_MAT(a [K,M], b [K,N]) → d [M,N]:  D(N×M) = B(N×K) · A(M×K)ᵀ
 *   OUT_PROD(a [M,K], b [N,K]) → d [M,N]: D(N×M) = B'(N×K) · A(K×M), B' = b read as N×K (b transposed view: nb1 = 4)
 *                                        or as the transpose of its K×N rows (plain b: nb0 = 4)
 */
export function gemmArgs(
  op: string,
  a: Info,
  b: Info,
  d: Info,
  minMacs = minGemmMacs(),
): Array<number | bigint> | null {
  if (!usable(a) || !usable(b) || !usable(d) || d.nb[0] !== F || d.nb[1] !== F * d.ne[0]) return null;
  const [M, N] = [d.ne[0], d.ne[1]];
  if (op === "MUL_MAT") {
    const K = a.ne[0];
    if (a.nb[0] !== F || b.nb[0] !== F || a.ne[1] !== M || b.ne[1] !== N || b.ne[0] !== K) return null;
    if (M * N * K < minMacs) return null;
    const lda = Math.max(a.nb[1] / F, K);
    const ldb = Math.max(b.nb[1] / F, K);
    return [ROW_MAJOR, NO_TRANS, TRANS, N, M, K, 1, b.data, ldb, a.data, lda, 0, d.data, M];
  }
  if (op === "OUT_PROD") {
    const K = a.ne[1];
    if (a.nb[0] !== F || a.ne[0] !== M || b.ne[0] !== N || b.ne[1] !== K) return null;
    if (M * N * K < minMacs / 64) return null;
    const lda = Math.max(a.nb[1] / F, M);
    if (b.nb[1] === F)
      return [ROW_MAJOR, NO_TRANS, NO_TRANS, N, M, K, 1, b.data, Math.max(b.nb[0] / F, K), a.data, lda, 0, d.data, M];
    if (b.nb[0] === F)
      return [ROW_MAJOR, TRANS, NO_TRANS, N, M, K, 1, b.data, Math.max(b.nb[1] / F, N), a.data, lda, 0, d.data, M];
  }
  return null;
}

/** Split the graph's nodes into ggml windows and BLAS products (null when no node goes to BLAS). */
export function planSteps(lib: GgmlLib, graph: Ptr, nodes: number): Step[] | null {
  const steps: Step[] = [];
  const minMacs = minGemmMacs();
  let from = 0;
  for (let i = 0; i < nodes; i++) {
    const node = lib.base.ggml_graph_node(graph, i);
    const op = String(lib.base.ggml_op_desc(node));
    if (op !== "MUL_MAT" && op !== "OUT_PROD") continue;
    const a = pointerAt(node, SRC0);
    const b = pointerAt(node, SRC0 + 8);
    if (!a || !b) continue;
    const args = gemmArgs(op, info(a), info(b), info(node), minMacs);
    if (!args) continue;
    if (i > from) steps.push({ kind: "ggml", from, count: i - from });
    steps.push({ kind: "gemm", node: i, op, args });
    from = i + 1;
  }
  if (!steps.length) return null;
  if (nodes > from) steps.push({ kind: "ggml", from, count: nodes - from });
  return steps;
}
