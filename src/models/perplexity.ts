// Perplexity of a GGUF model on a text, through llama.cpp (node-llama-cpp): the text is tokenized, cut into
// windows of the context size, and every token after the first of a window is scored by the probability the
// model gave it (full softmax: temperature 1, no top-k/top-p/min-p truncation). PPL = exp(mean NLL).
// Used by `dajian quantize --report` and `dajian eval perplexity`.
import type { Token } from "node-llama-cpp";
import { DajianError } from "../core/errors.js";
import { type ProgressFn, noProgress } from "../core/progress.js";

export interface PerplexityOptions {
  /** Window size in tokens (default min(512, model's training context)). */
  contextSize?: number;
  threads?: number;
  /** Score at most this many tokens (bounded time on big files). */
  maxTokens?: number;
  onProgress?: ProgressFn;
  gpu?: boolean;
}

export interface PerplexityResult {
  model: string;
  perplexity: number;
  /** Mean negative log-likelihood (nats per token). */
  nll: number;
  tokensScored: number;
  windows: number;
  contextSize: number;
  seconds: number;
}

export async function perplexity(
  modelPath: string,
  text: string,
  opts: PerplexityOptions = {},
): Promise<PerplexityResult> {
  if (!text.trim())
    throw new DajianError("invalid_input", "the text to score is empty", "give a text file with some content");
  const { getLlama } = await import("node-llama-cpp");
  const progress = opts.onProgress ?? noProgress;
  const t0 = Date.now();
  const llama = await getLlama({ gpu: opts.gpu ? "auto" : false, build: "never" });
  const model = await llama.loadModel({ modelPath });
  try {
    const train = model.trainContextSize || 512;
    const ctxSize = Math.max(8, Math.min(opts.contextSize ?? 512, train));
    const context = await model.createContext({ contextSize: ctxSize, batchSize: ctxSize, threads: opts.threads });
    try {
      const seq = context.getSequence();
      let tokens = model.tokenize(text);
      if (opts.maxTokens && tokens.length > opts.maxTokens + 1) tokens = tokens.slice(0, opts.maxTokens + 1);
      if (tokens.length < 2)
        throw new DajianError("invalid_input", "the text is shorter than two tokens", "score a longer text");
      const bos = model.tokens.bos;
      // Each window starts with BOS (when the model has one) so every window sees the same kind of start.
      const room = bos !== null ? ctxSize - 1 : ctxSize;
      const windows: number[][] = [];
      for (let i = 0; i < tokens.length - 1; i += room - 1) {
        const w = tokens.slice(i, i + room);
        if (w.length < 2) break;
        windows.push(w);
      }
      const total = windows.reduce((s, w) => s + w.length - 1, 0);
      let nllSum = 0;
      let scored = 0;
      for (const w of windows) {
        await seq.clearHistory();
        const input = bos !== null ? [bos, ...w] : w;
        const first = bos !== null ? 1 : 0; // index in `input` of w[0]
        const items = input.map((tok, i) =>
          i >= first && i < input.length - 1
            ? ([
                tok,
                { generateNext: { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } } },
              ] as const)
            : tok,
        );
        const out = await seq.controlledEvaluate(items as never);
        for (let i = first; i < input.length - 1; i++) {
          const p = out[i]?.next.probabilities?.get(input[i + 1] as Token);
          if (p === undefined || !(p > 0))
            throw new DajianError(
              "internal",
              `no probability for token ${input[i + 1]} at position ${i}`,
              "report this with the model file",
            );
          nllSum -= Math.log(p);
          scored++;
        }
        progress({ phase: "tokens", done: scored, total });
      }
      const nll = nllSum / scored;
      return {
        model: modelPath,
        perplexity: Math.exp(nll),
        nll,
        tokensScored: scored,
        windows: windows.length,
        contextSize: ctxSize,
        seconds: (Date.now() - t0) / 1000,
      };
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}
