// The catalog matched against this machine: for each model, the best quantization and context size that fit in
// RAM (or VRAM), the estimated memory and an expected generation speed, plus one chat and one embedding pick.
import { DajianError } from "../core/errors.js";
import {
  CATALOG,
  CATALOG_VERSION,
  type CatalogEntry,
  type CatalogFile,
  type CatalogLang,
  type CatalogQuant,
  type CatalogTask,
} from "./catalog-data.js";
import type { HardwareInfo } from "./hardware.js";
import { type MemoryEstimate, type ModelShape, estimateMemory, weightBytesFromParams } from "./memory.js";

export { CATALOG, CATALOG_VERSION };
export type { CatalogEntry, CatalogFile, CatalogLang, CatalogQuant, CatalogTask };

/** Best quality first: the first quantization that fits is the one recommended. */
const QUANT_ORDER: CatalogQuant[] = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "F16"];
const CONTEXTS = [32768, 16384, 8192, 4096, 2048, 1024, 512];
/** Below this a chat model is not worth recommending even if it technically fits. */
const MIN_CHAT_CONTEXT = 2048;

export type SpeedClass = "fast" | "usable" | "slow" | "very slow";

export interface CatalogFit {
  name: string;
  tasks: CatalogTask[];
  languages: CatalogLang[];
  params: number;
  licence: string;
  /** Chosen quantization (undefined when nothing fits). */
  quant?: CatalogQuant;
  /** Working context the memory figure is for: min(largest that fits, 8192). */
  contextSize?: number;
  /** Largest context (tokens) that fits with this quantization. */
  maxContextSize?: number;
  device?: "cpu" | "gpu";
  memory?: MemoryEstimate;
  /** Expected generation tokens/s (rough: memory bandwidth / bytes read per token). */
  tokensPerSecond?: number;
  speed?: SpeedClass;
  fits: boolean;
  /** Why it does not fit, when it does not. */
  reason?: string;
  ref: string;
}

export interface CatalogReport {
  catalogVersion: string;
  hardware: HardwareInfo;
  /** RAM the estimate may use: available memory minus a safety margin for the OS and other processes. */
  budgetRam: number;
  models: CatalogFit[];
  recommended: { chat?: string; embedding?: string; rerank?: string };
}

export function shapeOf(e: CatalogEntry): ModelShape {
  return { ...e.arch };
}

export function findCatalogEntry(name: string): CatalogEntry | undefined {
  const n = name.toLowerCase();
  return CATALOG.find((e) => e.name === n);
}

function speedClass(tps: number): SpeedClass {
  if (tps >= 15) return "fast";
  if (tps >= 5) return "usable";
  if (tps >= 1) return "slow";
  return "very slow";
}

/**
 * Rough CPU decoding speed: each token reads every weight once (bandwidth bound: measured memcpy rate) and costs
 * 2 FLOPs per parameter (compute bound: ~8 GFLOP/s per core for llama.cpp's quantized mat-vec on AVX2).
 * Take the lower of the two.
 */
export function cpuTokensPerSecond(hw: HardwareInfo, params: number, weightBytes: number): number {
  const bandwidth = hw.memBandwidth / weightBytes;
  const compute = (hw.cpuCores * 8e9) / (2 * params);
  return Math.min(bandwidth, compute);
}

/** Safety margin: keep 10 % of RAM (at least 512 MiB) for the OS and everything else. */
export function ramBudget(hw: HardwareInfo): number {
  return Math.max(0, hw.ramAvailable - Math.max(512 * 1024 ** 2, 0.1 * hw.ramTotal));
}

/**
 * Fit one entry. Per quantization (best quality first) find the largest context that fits on the GPU (when one
 * is reported) or in RAM; report memory at a working context of min(that, 8192). Chat models take the best
 * quality that still generates at a usable speed (else the fastest fit); embedders take the best quality.
 */
export function fitEntry(e: CatalogEntry, hw: HardwareInfo, budget = ramBudget(hw)): CatalogFit {
  const base = {
    name: e.name,
    tasks: e.tasks,
    languages: e.languages,
    params: e.params,
    licence: e.licence,
    ref: e.name,
  };
  const shape = shapeOf(e);
  const embeddingOnly = !e.tasks.includes("chat");
  const minCtx = embeddingOnly ? Math.min(512, e.arch.contextLength) : Math.min(MIN_CHAT_CONTEXT, e.arch.contextLength);
  const ctxs = [...new Set([e.arch.contextLength, ...CONTEXTS])]
    .filter((c) => c <= e.arch.contextLength && c >= minCtx)
    .sort((a, b) => b - a);
  const gpuFree = hw.gpu ? hw.gpu.vramFree * 0.9 : 0;
  const quants = QUANT_ORDER.filter((q) => e.files.some((f) => f.quant === q));
  const candidates: CatalogFit[] = [];
  let smallest: MemoryEstimate | undefined;
  for (const q of quants) {
    const file = e.files.find((f) => f.quant === q)!;
    const weights = file.sizeBytes ?? weightBytesFromParams(e.params, q);
    const onGpu = (ctx: number) =>
      estimateMemory(shape, weights, { contextSize: ctx, embeddingOnly, gpuLayers: shape.layers });
    const onCpu = (ctx: number) => estimateMemory(shape, weights, { contextSize: ctx, embeddingOnly });
    const gpuFits = (ctx: number) => gpuFree > 0 && onGpu(ctx).vram <= gpuFree && onGpu(ctx).ram <= budget;
    const cpuFits = (ctx: number) => onCpu(ctx).ram <= budget;
    const minEst = onCpu(ctxs[ctxs.length - 1] ?? minCtx);
    if (!smallest || minEst.total < smallest.total) smallest = minEst;
    const device: "gpu" | "cpu" | undefined = ctxs.some(gpuFits) ? "gpu" : ctxs.some(cpuFits) ? "cpu" : undefined;
    if (!device) continue;
    const maxCtx = ctxs.find(device === "gpu" ? gpuFits : cpuFits)!;
    const ctx = Math.min(maxCtx, 8192);
    const memory = device === "gpu" ? onGpu(ctx) : onCpu(ctx);
    const tps = device === "gpu" ? (300e9 * 0.6) / weights : cpuTokensPerSecond(hw, e.params, weights);
    candidates.push({
      ...base,
      quant: q,
      contextSize: ctx,
      maxContextSize: maxCtx,
      device,
      memory,
      tokensPerSecond: tps,
      speed: speedClass(tps),
      fits: true,
      ref: `${e.name}:${q}`,
    });
  }
  if (candidates.length) {
    if (embeddingOnly) return candidates[0];
    // Best quality that is still usable; otherwise Q4_K_M (barely bigger than Q4_0, clearly better), else the smallest.
    return (
      candidates.find((c) => c.speed === "fast" || c.speed === "usable") ??
      candidates.find((c) => c.quant === "Q4_K_M") ??
      candidates.reduce((a, b) => ((b.tokensPerSecond ?? 0) > (a.tokensPerSecond ?? 0) ? b : a))
    );
  }
  const need = smallest ? `${(smallest.total / 1024 ** 3).toFixed(1)} GiB` : "unknown";
  return {
    ...base,
    fits: false,
    memory: smallest,
    reason: `needs at least ${need}, ${(budget / 1024 ** 3).toFixed(1)} GiB usable`,
  };
}

export interface CatalogQuery {
  task?: CatalogTask;
  lang?: CatalogLang;
  /** Only models that fit. */
  fits?: boolean;
}

function pick(fits: CatalogFit[], task: CatalogTask, lang?: CatalogLang): string | undefined {
  const rank = (f: CatalogFit) => findCatalogEntry(f.name)!.rank;
  const ok = fits.filter((f) => f.fits && f.tasks.includes(task) && (!lang || f.languages.includes(lang)));
  // Prefer the best model that still generates at a usable speed; else the fastest that fits.
  const usable = ok.filter((f) => task !== "chat" || f.speed === "fast" || f.speed === "usable");
  const pool = usable.length ? usable : ok;
  if (!pool.length) return undefined;
  pool.sort((a, b) => (usable.length ? rank(b) - rank(a) : (b.tokensPerSecond ?? 0) - (a.tokensPerSecond ?? 0)));
  return pool[0].ref;
}

export function catalogReport(hw: HardwareInfo, q: CatalogQuery = {}): CatalogReport {
  const budget = ramBudget(hw);
  const all = CATALOG.map((e) => fitEntry(e, hw, budget));
  const models = all.filter(
    (f) => (!q.task || f.tasks.includes(q.task)) && (!q.lang || f.languages.includes(q.lang)) && (!q.fits || f.fits),
  );
  return {
    catalogVersion: CATALOG_VERSION,
    hardware: hw,
    budgetRam: budget,
    models,
    recommended: {
      chat: pick(all, "chat", q.lang),
      embedding: pick(all, "embedding", q.lang),
      rerank: pick(all, "rerank", q.lang),
    },
  };
}

export interface ResolvedCatalogRef {
  name: string;
  quant: CatalogQuant;
  /** node-llama-cpp style URI: `hf:<repo>/<file>`. */
  url: string;
  repo: string;
  file: string;
  sha256?: string;
  sizeBytes?: number;
}

/**
 * Resolve `NAME` or `NAME:QUANT` (e.g. `qwen2.5-1.5b-instruct:Q8_0`) to a download. Undefined when the name is not
 * in the catalog (so `pull` can try other reference forms); a known name with an unknown quantization throws.
 * Without a quantization, Q4_K_M is chosen when offered (the usual size/quality balance), else the first listed.
 */
export function resolveCatalogRef(ref: string): ResolvedCatalogRef | undefined {
  const m = /^([^:/\s]+)(?::([A-Za-z0-9_]+))?$/.exec(ref.trim());
  if (!m) return undefined;
  const e = findCatalogEntry(m[1]);
  if (!e) return undefined;
  let file: CatalogFile | undefined;
  if (m[2]) {
    file = e.files.find((f) => f.quant === m[2].toUpperCase());
    if (!file)
      throw new DajianError(
        "not_found",
        `${e.name} has no ${m[2]} file in the catalog`,
        `use one of ${e.files.map((f) => `${e.name}:${f.quant}`).join(", ")}`,
      );
  } else {
    file = e.files.find((f) => f.quant === "Q4_K_M") ?? e.files[0];
  }
  return {
    name: e.name,
    quant: file.quant,
    url: `hf:${file.repo}/${file.file}`,
    repo: file.repo,
    file: file.file,
    sha256: file.sha256,
    sizeBytes: file.sizeBytes,
  };
}
