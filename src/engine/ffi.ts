// Raw ggml bindings through koffi, on the prebuilt libraries node-llama-cpp already ships. Nothing here checks
// arguments: ggml aborts the whole process on a failed assertion, so the typed layer (tensor.ts, graph.ts) validates
// shapes and memory before it calls in.

import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import koffi, { type LibraryHandle } from "koffi";
import { DajianError } from "../core/errors.js";

export type Ptr = unknown; // koffi external pointer

const ctxT = koffi.opaque("ggml_context");
const tensorT = koffi.opaque("ggml_tensor");
const graphT = koffi.opaque("ggml_cgraph");
void ctxT;
void tensorT;
void graphT;
const InitParams = koffi.struct("ggml_init_params", { mem_size: "size_t", mem_buffer: "void *", no_alloc: "bool" });
void InitParams;
const Cplan = koffi.struct("ggml_cplan", {
  work_size: "size_t",
  work_data: "void *",
  n_threads: "int",
  threadpool: "void *",
  abort_callback: "void *",
  abort_callback_data: "void *",
  use_ref: "bool",
});
void Cplan;

/** ggml_cplan as koffi hands it over. */
export interface Cplan {
  work_size: number | bigint;
  work_data: unknown;
  n_threads: number;
  threadpool: unknown;
  abort_callback: unknown;
  abort_callback_data: unknown;
  use_ref: boolean;
}

const BASE_SIGNATURES = {
  ggml_init: "ggml_context * ggml_init(ggml_init_params params)",
  ggml_free: "void ggml_free(ggml_context * ctx)",
  ggml_used_mem: "size_t ggml_used_mem(ggml_context * ctx)",
  ggml_get_mem_size: "size_t ggml_get_mem_size(ggml_context * ctx)",
  ggml_tensor_overhead: "size_t ggml_tensor_overhead()",
  ggml_new_buffer: "void * ggml_new_buffer(ggml_context * ctx, size_t nbytes)",
  ggml_graph_overhead_custom: "size_t ggml_graph_overhead_custom(size_t size, bool grads)",
  ggml_new_tensor_1d: "ggml_tensor * ggml_new_tensor_1d(ggml_context * ctx, int type, int64_t ne0)",
  ggml_new_tensor_2d: "ggml_tensor * ggml_new_tensor_2d(ggml_context * ctx, int type, int64_t ne0, int64_t ne1)",
  ggml_new_tensor_3d:
    "ggml_tensor * ggml_new_tensor_3d(ggml_context * ctx, int type, int64_t ne0, int64_t ne1, int64_t ne2)",
  ggml_new_tensor_4d:
    "ggml_tensor * ggml_new_tensor_4d(ggml_context * ctx, int type, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3)",
  ggml_get_data: "void * ggml_get_data(ggml_tensor * t)",
  ggml_nbytes: "size_t ggml_nbytes(ggml_tensor * t)",
  ggml_set_name: "ggml_tensor * ggml_set_name(ggml_tensor * t, const char * name)",
  ggml_set_param: "void ggml_set_param(ggml_tensor * t)",
  ggml_set_loss: "void ggml_set_loss(ggml_tensor * t)",
  ggml_set_zero: "ggml_tensor * ggml_set_zero(ggml_tensor * t)",
  ggml_is_contiguous: "bool ggml_is_contiguous(ggml_tensor * t)",
  // element-wise and reductions
  ggml_add: "ggml_tensor * ggml_add(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b)",
  ggml_add_inplace: "ggml_tensor * ggml_add_inplace(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b)",
  ggml_mul_inplace: "ggml_tensor * ggml_mul_inplace(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b)",
  ggml_sub: "ggml_tensor * ggml_sub(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b)",
  ggml_mul: "ggml_tensor * ggml_mul(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b)",
  ggml_div: "ggml_tensor * ggml_div(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b)",
  ggml_scale: "ggml_tensor * ggml_scale(ggml_context * ctx, ggml_tensor * a, float s)",
  ggml_sqr: "ggml_tensor * ggml_sqr(ggml_context * ctx, ggml_tensor * a)",
  ggml_sqrt: "ggml_tensor * ggml_sqrt(ggml_context * ctx, ggml_tensor * a)",
  ggml_log: "ggml_tensor * ggml_log(ggml_context * ctx, ggml_tensor * a)",
  ggml_exp: "ggml_tensor * ggml_exp(ggml_context * ctx, ggml_tensor * a)",
  ggml_neg: "ggml_tensor * ggml_neg(ggml_context * ctx, ggml_tensor * a)",
  ggml_silu: "ggml_tensor * ggml_silu(ggml_context * ctx, ggml_tensor * a)",
  ggml_relu: "ggml_tensor * ggml_relu(ggml_context * ctx, ggml_tensor * a)",
  ggml_swiglu_split: "ggml_tensor * ggml_swiglu_split(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b)",
  ggml_sum: "ggml_tensor * ggml_sum(ggml_context * ctx, ggml_tensor * a)",
  ggml_sum_rows: "ggml_tensor * ggml_sum_rows(ggml_context * ctx, ggml_tensor * a)",
  ggml_mean: "ggml_tensor * ggml_mean(ggml_context * ctx, ggml_tensor * a)",
  ggml_repeat: "ggml_tensor * ggml_repeat(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b)",
  ggml_repeat_4d:
    "ggml_tensor * ggml_repeat_4d(ggml_context * ctx, ggml_tensor * a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3)",
  ggml_rms_norm: "ggml_tensor * ggml_rms_norm(ggml_context * ctx, ggml_tensor * a, float eps)",
  ggml_mul_mat: "ggml_tensor * ggml_mul_mat(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b)",
  ggml_out_prod: "ggml_tensor * ggml_out_prod(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b)",
  ggml_soft_max: "ggml_tensor * ggml_soft_max(ggml_context * ctx, ggml_tensor * a)",
  ggml_soft_max_ext:
    "ggml_tensor * ggml_soft_max_ext(ggml_context * ctx, ggml_tensor * a, ggml_tensor * mask, float scale, float max_bias)",
  ggml_diag_mask_inf: "ggml_tensor * ggml_diag_mask_inf(ggml_context * ctx, ggml_tensor * a, int n_past)",
  ggml_rope_ext:
    "ggml_tensor * ggml_rope_ext(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b, ggml_tensor * c, int n_dims, int mode, int n_ctx_orig, float freq_base, float freq_scale, float ext_factor, float attn_factor, float beta_fast, float beta_slow)",
  ggml_get_rows: "ggml_tensor * ggml_get_rows(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b)",
  ggml_set_rows: "ggml_tensor * ggml_set_rows(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b, ggml_tensor * c)",
  ggml_cross_entropy_loss:
    "ggml_tensor * ggml_cross_entropy_loss(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b)",
  // shape
  ggml_reshape_1d: "ggml_tensor * ggml_reshape_1d(ggml_context * ctx, ggml_tensor * a, int64_t ne0)",
  ggml_reshape_2d: "ggml_tensor * ggml_reshape_2d(ggml_context * ctx, ggml_tensor * a, int64_t ne0, int64_t ne1)",
  ggml_reshape_3d:
    "ggml_tensor * ggml_reshape_3d(ggml_context * ctx, ggml_tensor * a, int64_t ne0, int64_t ne1, int64_t ne2)",
  ggml_reshape_4d:
    "ggml_tensor * ggml_reshape_4d(ggml_context * ctx, ggml_tensor * a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3)",
  ggml_permute: "ggml_tensor * ggml_permute(ggml_context * ctx, ggml_tensor * a, int ax0, int ax1, int ax2, int ax3)",
  ggml_transpose: "ggml_tensor * ggml_transpose(ggml_context * ctx, ggml_tensor * a)",
  ggml_cont: "ggml_tensor * ggml_cont(ggml_context * ctx, ggml_tensor * a)",
  ggml_view_4d:
    "ggml_tensor * ggml_view_4d(ggml_context * ctx, ggml_tensor * a, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3, size_t nb1, size_t nb2, size_t nb3, size_t offset)",
  ggml_acc:
    "ggml_tensor * ggml_acc(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b, size_t nb1, size_t nb2, size_t nb3, size_t offset)",
  ggml_cpy: "ggml_tensor * ggml_cpy(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b)",
  ggml_concat: "ggml_tensor * ggml_concat(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b, int dim)",
  // graphs and autograd
  ggml_new_graph_custom: "ggml_cgraph * ggml_new_graph_custom(ggml_context * ctx, size_t size, bool grads)",
  ggml_build_forward_expand: "void ggml_build_forward_expand(ggml_cgraph * g, ggml_tensor * t)",
  ggml_build_backward_expand:
    "void ggml_build_backward_expand(ggml_context * ctx, ggml_cgraph * g, ggml_tensor ** grad_accs)",
  ggml_graph_node: "ggml_tensor * ggml_graph_node(ggml_cgraph * g, int i)",
  ggml_graph_get_grad_acc: "ggml_tensor * ggml_graph_get_grad_acc(ggml_cgraph * g, ggml_tensor * t)",
  ggml_graph_reset: "void ggml_graph_reset(ggml_cgraph * g)",
  ggml_graph_get_grad: "ggml_tensor * ggml_graph_get_grad(ggml_cgraph * g, ggml_tensor * t)",
  ggml_graph_n_nodes: "int ggml_graph_n_nodes(ggml_cgraph * g)",
  ggml_graph_size: "int ggml_graph_size(ggml_cgraph * g)",
  ggml_opt_step_adamw:
    "ggml_tensor * ggml_opt_step_adamw(ggml_context * ctx, ggml_tensor * a, ggml_tensor * grad, ggml_tensor * m, ggml_tensor * v, ggml_tensor * params)",
  // hand-written backward passes (the trainer's manual backward graph) and graph memory planning (ggml-alloc)
  ggml_rms_norm_back:
    "ggml_tensor * ggml_rms_norm_back(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b, float eps)",
  ggml_rope_ext_back:
    "ggml_tensor * ggml_rope_ext_back(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b, ggml_tensor * c, int n_dims, int mode, int n_ctx_orig, float freq_base, float freq_scale, float ext_factor, float attn_factor, float beta_fast, float beta_slow)",
  ggml_soft_max_ext_back:
    "ggml_tensor * ggml_soft_max_ext_back(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b, float scale, float max_bias)",
  ggml_silu_back: "ggml_tensor * ggml_silu_back(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b)",
  ggml_get_rows_back:
    "ggml_tensor * ggml_get_rows_back(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b, ggml_tensor * c)",
  ggml_cross_entropy_loss_back:
    "ggml_tensor * ggml_cross_entropy_loss_back(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b, ggml_tensor * c)",
  ggml_repeat_back: "ggml_tensor * ggml_repeat_back(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b)",
  ggml_op_desc: "const char * ggml_op_desc(ggml_tensor * t)",
  ggml_set_input: "void ggml_set_input(ggml_tensor * t)",
  ggml_set_output: "void ggml_set_output(ggml_tensor * t)",
  ggml_backend_cpu_buffer_type: "void * ggml_backend_cpu_buffer_type()",
  ggml_gallocr_new: "void * ggml_gallocr_new(void * buft)",
  ggml_gallocr_free: "void ggml_gallocr_free(void * galloc)",
  ggml_gallocr_alloc_graph: "bool ggml_gallocr_alloc_graph(void * galloc, ggml_cgraph * g)",
  ggml_gallocr_get_buffer_size: "size_t ggml_gallocr_get_buffer_size(void * galloc, int buffer_id)",
  // quantization (for checking dajian's TypeScript quantizers against ggml's)
  ggml_quantize_chunk:
    "size_t ggml_quantize_chunk(int type, const float * src, _Out_ uint8_t * dst, int64_t start, int64_t nrows, int64_t n_per_row, const float * imatrix)",
  ggml_quantize_init: "void ggml_quantize_init(int type)",
} as const;

const CPU_SIGNATURES = {
  ggml_graph_plan: "ggml_cplan ggml_graph_plan(ggml_cgraph * g, int n_threads, void * threadpool)",
  ggml_graph_compute: "int ggml_graph_compute(ggml_cgraph * g, ggml_cplan * plan)",
  ggml_backend_score: "int ggml_backend_score()",
  ggml_cpu_init: "void ggml_cpu_init()",
} as const;

export type NativeFn = ((...args: unknown[]) => unknown) & { async: (...args: unknown[]) => void };
type Fns<T> = Record<keyof T, NativeFn>;

export interface GgmlLib {
  base: Fns<typeof BASE_SIGNATURES>;
  cpu: Fns<typeof CPU_SIGNATURES>;
  dir: string;
  /** CPU variant picked, e.g. "haswell". */
  variant: string;
  /** Score ggml gave the variant on this CPU (higher is better). */
  score: number;
}

let loaded: GgmlLib | null = null;

/** Folder of the prebuilt ggml libraries inside node-llama-cpp's platform package. */
export function ggmlLibDir(): string {
  const override = process.env.DAJIAN_GGML_DIR;
  if (override) return override;
  const req = createRequire(import.meta.url);
  const plat = `${process.platform}-${process.arch}`;
  try {
    // The platform package exports only its entry (dist/index.js); bins/ sits beside dist/.
    let entry: string;
    try {
      entry = req.resolve(`@node-llama-cpp/${plat}`);
    } catch {
      entry = createRequire(req.resolve("node-llama-cpp")).resolve(`@node-llama-cpp/${plat}`);
    }
    return join(dirname(dirname(entry)), "bins", plat);
  } catch (err) {
    throw new DajianError(
      "unsupported",
      `no prebuilt ggml for ${plat}`,
      `install node-llama-cpp's platform package (@node-llama-cpp/${plat}) or set DAJIAN_GGML_DIR`,
      { cause: err },
    );
  }
}

function bind<T extends Record<string, string>>(lib: LibraryHandle, sigs: T): Fns<T> {
  const out: Record<string, unknown> = {};
  for (const [name, sig] of Object.entries(sigs)) out[name] = lib.func(sig) as unknown;
  return out as Fns<T>;
}

/**
 * Load ggml once per process. The CPU variant is the one ggml itself scores best on this CPU (as
 * ggml_backend_load_best does); DAJIAN_GGML_CPU=haswell|x64|… forces one.
 */
export function loadGgml(): GgmlLib {
  if (loaded) return loaded;
  const dir = ggmlLibDir();
  const ext = process.platform === "darwin" ? ".dylib" : process.platform === "win32" ? ".dll" : ".so";
  const prefix = process.platform === "win32" ? "ggml-base" : "libggml-base";
  const basePath = join(dir, prefix + ext);
  if (!existsSync(basePath)) {
    throw new DajianError("unsupported", `ggml library missing: ${basePath}`, "reinstall node-llama-cpp");
  }
  const baseLib = koffi.load(basePath);
  const base = bind(baseLib, BASE_SIGNATURES);
  const forced = process.env.DAJIAN_GGML_CPU;
  const cpuPrefix = process.platform === "win32" ? "ggml-cpu-" : "libggml-cpu-";
  const candidates = readdirSync(dir)
    .filter((f) => f.startsWith(cpuPrefix) && f.endsWith(ext))
    .map((f) => f.slice(cpuPrefix.length, -ext.length))
    .filter((v) => !forced || v === forced);
  let best: { variant: string; score: number; lib: LibraryHandle } | null = null;
  for (const variant of candidates) {
    const lib = koffi.load(join(dir, cpuPrefix + variant + ext));
    const score = Number(lib.func(CPU_SIGNATURES.ggml_backend_score)());
    if (score > 0 && (!best || score > best.score)) {
      best?.lib.unload();
      best = { variant, score, lib };
    } else {
      lib.unload();
    }
  }
  if (!best) {
    throw new DajianError(
      "unsupported",
      forced
        ? `ggml CPU variant "${forced}" is missing or unsupported on this CPU`
        : "no ggml CPU variant runs on this CPU",
      forced ? "unset DAJIAN_GGML_CPU to pick automatically" : "reinstall node-llama-cpp for this platform",
    );
  }
  const cpu = bind(best.lib, CPU_SIGNATURES);
  cpu.ggml_cpu_init();
  loaded = { base, cpu, dir, variant: best.variant, score: best.score };
  return loaded;
}

/** Zero-copy view of native memory. */
export function nativeView(ptr: Ptr, bytes: number): ArrayBuffer {
  return koffi.view(ptr, bytes);
}

/** The pointer stored at byte `offset` of a native struct (e.g. ggml_tensor.src[0]), or null. */
export function pointerAt(ptr: Ptr, offset: number): Ptr | null {
  return (koffi.decode(ptr, offset, "void *") as Ptr | null) ?? null;
}

export function pointerAddress(ptr: Ptr): bigint {
  return koffi.address(ptr);
}
