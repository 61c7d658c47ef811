// `dajian bench model`: prompt-processing (pp) and token-generation (tg) speed and memory of a GGUF, measured
// the way llama-bench does (pp: one batch of N prompt tokens from an empty context; tg: N tokens generated one
// at a time), repeated and reported as mean ± standard deviation — through node-llama-cpp, i.e. the same
// engine `dajian serve` uses.
import { readFileSync, statSync } from "node:fs";
import { DajianError } from "../core/errors.js";
import { readGgufHeader } from "../gguf/index.js";
import { estimateMemory, shapeFromGguf, weightBytesFromGguf } from "./memory.js";

export interface BenchModelOptions {
  /** Prompt tokens for the pp test (llama-bench default 512). */
  promptTokens?: number;
  /** Generated tokens for the tg test (llama-bench default 128). */
  genTokens?: number;
  /** Context size (default promptTokens + genTokens). */
  contextSize?: number;
  threads?: number;
  repetitions?: number;
  gpu?: boolean;
}

export interface Rate {
  mean: number;
  sd: number;
}

export interface BenchModelResult {
  model: string;
  fileBytes: number;
  params: number;
  arch: string;
  threads: number;
  contextSize: number;
  backend: string;
  loadSeconds: number;
  /** `pp<N>` tokens/s */
  pp: Rate & { tokens: number };
  /** `tg<N>` tokens/s */
  tg: Rate & { tokens: number };
  peakRssBytes: number;
  estimatedBytes: number;
}

function stats(xs: number[]): Rate {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, sd };
}

export function peakRss(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {
    /* not Linux */
  }
  return process.resourceUsage().maxRSS * 1024;
}

const SAMPLE =
  "The quick brown fox jumps over the lazy dog. 敏捷的棕色狐狸跳过了懒狗。Knowledge bases answer questions from documents; " +
  "模型在本地运行，数据不出公司。Numbers 0123456789 and symbols (+-*/) appear too. ";

export async function benchModel(modelPath: string, opts: BenchModelOptions = {}): Promise<BenchModelResult> {
  const header = readGgufHeader(modelPath);
  const shape = shapeFromGguf(header);
  const nPrompt = opts.promptTokens ?? 512;
  const nGen = opts.genTokens ?? 128;
  const reps = Math.max(1, opts.repetitions ?? 3);
  if (nPrompt < 1 || nGen < 1)
    throw new DajianError("invalid_input", "token counts must be positive", "use e.g. --prompt 512 --gen 128");
  const ctxSize = opts.contextSize ?? nPrompt + nGen;
  if (ctxSize < nPrompt + nGen)
    throw new DajianError(
      "invalid_input",
      `context ${ctxSize} is smaller than prompt + generation (${nPrompt + nGen})`,
      "raise --ctx or lower --prompt/--gen",
    );
  const { getLlama } = await import("node-llama-cpp");
  const llama = await getLlama({ gpu: opts.gpu ? "auto" : false, build: "never" });
  const t0 = Date.now();
  const model = await llama.loadModel({ modelPath, gpuLayers: opts.gpu ? "auto" : 0 });
  const loadSeconds = (Date.now() - t0) / 1000;
  try {
    const context = await model.createContext({ contextSize: ctxSize, batchSize: nPrompt, threads: opts.threads });
    try {
      const seq = context.getSequence();
      let prompt = model.tokenize(SAMPLE);
      while (prompt.length < nPrompt) prompt = prompt.concat(prompt);
      prompt = prompt.slice(0, nPrompt);
      const first = prompt[0];
      const pp: number[] = [];
      const tg: number[] = [];
      // One untimed warm-up of each, as llama-bench does.
      for (let r = -1; r < reps; r++) {
        await seq.clearHistory();
        let t = performance.now();
        await seq.evaluateWithoutGeneratingNewTokens(prompt);
        const ppSec = (performance.now() - t) / 1000;
        await seq.clearHistory();
        t = performance.now();
        let n = 0;
        // Greedy generation from a one-token context; the loop stops after nGen tokens.
        for await (const _tok of seq.evaluate([first], { temperature: 0 })) {
          if (++n >= nGen) break;
        }
        const tgSec = (performance.now() - t) / 1000;
        if (r >= 0) {
          pp.push(nPrompt / ppSec);
          tg.push(n / tgSec);
        }
      }
      const weights = weightBytesFromGguf(header);
      const est = estimateMemory(shape, weights, { contextSize: ctxSize, batchSize: nPrompt });
      return {
        model: modelPath,
        fileBytes: statSync(modelPath).size,
        params: header.tensors.reduce((s, t) => s + t.dims.reduce((a, b) => a * b, 1), 0),
        arch: shape.arch,
        threads: context.currentThreads,
        contextSize: context.contextSize,
        backend: llama.gpu ? String(llama.gpu) : "cpu",
        loadSeconds,
        pp: { ...stats(pp), tokens: nPrompt },
        tg: { ...stats(tg), tokens: nGen },
        peakRssBytes: peakRss(),
        estimatedBytes: est.total,
      };
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}
