// The inference side of LoRA checks, through llama.cpp itself (node-llama-cpp): masked loss of samples and greedy
// answers, for a base model with or without an adapter — what users will actually run after fine-tuning.

import {
  getLlama,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { DajianError, errorLine } from "../../core/errors.js";
import { noProgress, type ProgressFn } from "../../core/progress.js";
import type { SftRow } from "./trainer.js";

export interface LlamaCppSession {
  model: LlamaModel;
  context: LlamaContext;
  /** The one sequence; every evaluation starts by clearing it. */
  sequence: LlamaContextSequence;
  dispose(): Promise<void>;
}

let llamaP: Promise<Llama> | null = null;
/** One CPU llama.cpp per process: evaluation must be reproducible and comparable with dajian's CPU trainer. */
function cpuLlama(): Promise<Llama> {
  llamaP ??= getLlama({ gpu: false, logLevel: "error" as never });
  return llamaP;
}

/** Load a model (and optionally a LoRA adapter) with F32 KV cache and no flash attention, as the trainer computes. */
export async function openLlamaCpp(
  modelPath: string,
  adapterPath?: string,
  o: { contextSize?: number; threads?: number } = {},
): Promise<LlamaCppSession> {
  const llama = await cpuLlama();
  let model: LlamaModel;
  try {
    model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  } catch (err) {
    throw new DajianError("invalid_input", `llama.cpp cannot load ${modelPath}: ${errorLine(err)}`, "check the GGUF");
  }
  try {
    const context = await model.createContext({
      contextSize: o.contextSize ?? 512,
      threads: o.threads ?? 1,
      flashAttention: false,
      experimentalKvCacheKeyType: "F32",
      experimentalKvCacheValueType: "F32",
      lora: adapterPath ? { adapters: [{ filePath: adapterPath, scale: 1 }] } : undefined,
    });
    return {
      model,
      context,
      sequence: context.getSequence(),
      async dispose() {
        await context.dispose();
        await model.dispose();
      },
    };
  } catch (err) {
    await model.dispose();
    throw new DajianError(
      "invalid_input",
      `llama.cpp cannot apply ${adapterPath ?? "the context"}: ${errorLine(err)}`,
      "use an adapter exported for this base model (same architecture and shapes)",
    );
  }
}

/** Next-token probability distributions llama.cpp computes at each position of `ids`. */
export async function llamaCppProbabilities(s: LlamaCppSession, ids: number[]): Promise<Array<Map<Token, number>>> {
  const seq = s.sequence;
  await seq.clearHistory();
  const res = await seq.controlledEvaluate(ids.map((id) => [id as Token, { generateNext: { probabilities: true } }]));
  return res.map((r) => r?.next?.probabilities ?? new Map());
}

/** Loss summed over masked-in tokens of each sample, as llama.cpp predicts them. */
export async function llamaCppLoss(
  s: LlamaCppSession,
  rows: SftRow[],
  progress: ProgressFn = noProgress,
): Promise<{ lossSum: number; tokens: number }> {
  let lossSum = 0;
  let tokens = 0;
  for (let i = 0; i < rows.length; i++) {
    const { ids, mask } = rows[i];
    const seq = s.sequence;
    await seq.clearHistory();
    {
      const input = ids.map((id, t) =>
        t + 1 < ids.length && mask[t + 1]
          ? ([id as Token, { generateNext: { confidence: false, probabilities: true } }] as const)
          : (id as Token),
      );
      const res = await seq.controlledEvaluate(input as never);
      for (let t = 1; t < ids.length; t++) {
        if (!mask[t]) continue;
        const p = res[t - 1]?.next?.probabilities?.get(ids[t] as Token) ?? 0;
        lossSum += -Math.log(Math.max(p, 1e-30));
        tokens++;
      }
    }
    progress({ phase: "loss", done: i + 1, total: rows.length });
  }
  return { lossSum, tokens };
}

/** Greedy completion of a prompt (token ids) until end-of-generation or `maxTokens`. */
export async function llamaCppGreedy(s: LlamaCppSession, prompt: number[], maxTokens: number): Promise<string> {
  const seq = s.sequence;
  await seq.clearHistory();
  const out: Token[] = [];
  for await (const t of seq.evaluate(prompt as Token[], { temperature: 0 })) {
    out.push(t);
    if (out.length >= maxTokens) break;
  }
  return s.model.detokenize(out);
}
