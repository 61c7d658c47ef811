// Local GGUF models through node-llama-cpp (llama.cpp itself): the model's own chat template, streaming, stop
// sequences, sampling, JSON-schema grammars, embeddings and LoRA adapters. One context holds N sequences (slots);
// requests beyond them wait in a bounded queue and beyond that get a 429-mapped error with Retry-After.
// Each request starts from an empty sequence, so one caller's prompt never leaks into another's KV cache.
import { availableParallelism } from "node:os";
import {
  getLlama,
  LlamaChat,
  LlamaLogLevel,
  resolveChatWrapper,
  type ChatHistoryItem,
  type ChatWrapper,
  type GbnfJsonSchema,
  type Llama,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaEmbeddingContext,
  type LlamaGrammar,
  type LlamaModel,
} from "node-llama-cpp";
import { DajianError, isDajianError } from "../core/errors.js";
import { readGgufHeader, metaString } from "../gguf/reader.js";
import { StepBatcher, type BatchStats } from "./batching.js";
import { SlotQueue } from "./queue.js";
import type { LocalModelSpec } from "./registry.js";
import type { ChatChunk, ChatMessage, ChatModel, ChatResult, EmbeddingModel, GenerateOptions } from "./types.js";

let llamaPromise: Promise<Llama> | undefined;

/** One llama.cpp runtime per process, GPU backend chosen automatically (CUDA, Vulkan, Metal, else CPU). */
export function sharedLlama(): Promise<Llama> {
  // build: "never" — a missing prebuilt binary must be a clear error, not a silent hour-long compile from source.
  llamaPromise ??= getLlama({ gpu: "auto", build: "never", logLevel: LlamaLogLevel.error }).catch((err) => {
    llamaPromise = undefined;
    throw new DajianError(
      "internal",
      `cannot start llama.cpp: ${(err as Error).message}`,
      "reinstall node-llama-cpp (npm i) for this platform",
      { cause: err },
    );
  });
  return llamaPromise;
}

/**
 * Threads for a local model's context when its entry sets none: one core is left to the JS thread (it drives every
 * decode step, HTTP and SSE), and never more than the cores that do math. node-llama-cpp's own default on CPU is
 * max(4, math cores), which on a 2-core machine runs 4 spinning threads on 2 cores; see docs/readme/server.md for
 * the measurements (npm run bench:threads).
 */
export function defaultLocalThreads(mathCores = availableParallelism()): number {
  return Math.max(1, Math.min(mathCores, availableParallelism() - 1));
}

/** "cuda" | "vulkan" | "metal" | "cpu". */
export async function llamaBackend(): Promise<string> {
  const l = await sharedLlama();
  return l.gpu || "cpu";
}

/**
 * A push-to-pull bridge from node-llama-cpp's token callbacks to an async iterator, kept off the decode path.
 * node-llama-cpp drives every decode step from the JS thread: after a step it samples, calls our callbacks and
 * queues the next step. Whatever the consumer does with a token (JSON, an SSE write, a syscall) would delay that
 * step if it ran in the callback's microtasks. So the consumer is woken through `gate`: the model's batcher wakes
 * it once the next step has been handed to llama.cpp (the default, two event-loop turns, suits a lone channel).
 * The consumer then takes everything that piled up at once (deltas merged, so a slow reader does fewer writes).
 * The end of the stream wakes the consumer at once: no further step may come.
 */
export class Channel<T extends { type: string; text?: string }> {
  private items: T[] = [];
  private wake?: () => void;
  private gated = false;
  private soon = false;
  private closed = false;
  private error: unknown;
  constructor(private readonly gate: (fire: () => void) => void = (f) => setImmediate(() => setImmediate(f))) {}
  private fire() {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
  private readonly fireGated = () => {
    this.gated = false;
    this.fire();
  };
  private readonly fireSoon = () => {
    this.soon = false;
    this.fire();
  };
  private schedule() {
    if (!this.wake) return;
    if (this.closed) {
      if (!this.soon) {
        this.soon = true;
        setImmediate(this.fireSoon);
      }
    } else if (!this.gated) {
      this.gated = true;
      this.gate(this.fireGated);
    }
  }
  push(v: T) {
    const last = this.items[this.items.length - 1];
    // Consecutive text deltas are merged: same text, fewer frames.
    if (v.type === "delta" && last?.type === "delta") (last as { text?: string }).text! += v.text ?? "";
    else this.items.push(v);
    this.schedule();
  }
  end(err?: unknown) {
    this.closed = true;
    this.error = err;
    this.schedule();
  }
  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    while (true) {
      if (this.items.length) {
        yield this.items.shift()!;
        continue;
      }
      if (this.closed) {
        if (this.error !== undefined) throw this.error;
        return;
      }
      await new Promise<void>((r) => {
        this.wake = r;
        if (this.items.length || this.closed) this.schedule();
      });
    }
  }
}

function toHistory(messages: ChatMessage[]): ChatHistoryItem[] {
  const h: ChatHistoryItem[] = messages.map((m) =>
    m.role === "assistant" ? { type: "model", response: [m.content] } : { type: m.role, text: m.content },
  );
  return h;
}

function checkGguf(path: string, what: string): ReturnType<typeof readGgufHeader> {
  try {
    return readGgufHeader(path);
  } catch (err) {
    if (isDajianError(err))
      throw new DajianError(err.code, `${what} ${path}: ${err.message}`, err.hint, { cause: err });
    throw new DajianError("not_found", `cannot read ${what} ${path}`, "check the path and permissions", { cause: err });
  }
}

export interface LocalLoadOptions {
  /** Called with 0..1 while weights load. */
  onProgress?: (fraction: number) => void;
}

export class LocalChatModel implements ChatModel, EmbeddingModel {
  readonly contextSize: number;
  readonly chatTemplate: string;
  private readonly queue: SlotQueue;
  private readonly grammars = new Map<string, Promise<LlamaGrammar>>();
  private readonly promptCounts = new WeakMap<ChatMessage[], number>();
  private embedCtx?: Promise<LlamaEmbeddingContext>;
  private embedLock: Promise<unknown> = Promise.resolve();
  private get embedContextSize(): number {
    return Math.min(this.model.trainContextSize || 2048, 2048);
  }
  private disposed = false;

  private constructor(
    readonly name: string,
    readonly spec: LocalModelSpec,
    readonly backend: string,
    private readonly llama: Llama,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly sequences: LlamaContextSequence[],
    private readonly chatWrapper: ChatWrapper,
    private readonly batcher: StepBatcher,
  ) {
    this.contextSize = context.contextSize;
    this.chatTemplate = chatWrapper.wrapperName;
    this.queue = new SlotQueue(sequences.length, spec.maxQueue ?? sequences.length * 4, `model "${name}"`);
  }

  static async load(name: string, spec: LocalModelSpec, opts: LocalLoadOptions = {}): Promise<LocalChatModel> {
    // The bounded reader sees every header first: crafted GGUF headers are a known llama.cpp attack surface.
    checkGguf(spec.path, "model");
    for (const a of spec.adapters ?? []) {
      const h = checkGguf(a.path, "LoRA adapter");
      if (metaString(h, "general.type") !== "adapter")
        throw new DajianError(
          "invalid_input",
          `${a.path} is not a LoRA adapter (general.type is not "adapter")`,
          "pass an adapter GGUF exported by `dajian finetune` or convert_lora_to_gguf.py",
        );
    }
    const llama = await sharedLlama();
    let model: LlamaModel;
    try {
      model = await llama.loadModel({
        modelPath: spec.path,
        gpuLayers: spec.gpuLayers ?? "auto",
        onLoadProgress: opts.onProgress,
      });
    } catch (err) {
      throw new DajianError(
        "corrupt",
        `llama.cpp cannot load ${spec.path}: ${(err as Error).message}`,
        "check the file is a complete GGUF model (re-download with `dajian pull`)",
        { cause: err },
      );
    }
    const nSeq = spec.sequences ?? 1;
    const batcher = new StepBatcher();
    let context: LlamaContext;
    try {
      context = await model.createContext({
        contextSize: spec.contextSize ?? Math.min(model.trainContextSize || 4096, 4096),
        sequences: nSeq,
        // On a GPU the CPU threads matter little; llama.cpp's choice stands there.
        threads: spec.threads ?? (llama.gpu ? undefined : defaultLocalThreads(llama.cpuMathCores)),
        lora: spec.adapters?.length
          ? { adapters: spec.adapters.map((a) => ({ filePath: a.path, scale: a.scale })) }
          : undefined,
        // Parallel requests share one decode batch per step (see batching.ts).
        batching: { itemPrioritizationStrategy: batcher.strategy },
      });
    } catch (err) {
      await model.dispose();
      throw new DajianError(
        "too_large",
        `cannot create a ${spec.contextSize ?? "default"}-token context × ${nSeq} sequences for "${name}": ${(err as Error).message}`,
        "lower contextSize or sequences, or use a smaller quantization",
        { cause: err },
      );
    }
    const seqs = Array.from({ length: nSeq }, () => context.getSequence());
    const wrapper = resolveChatWrapper(model);
    return new LocalChatModel(name, spec, llama.gpu || "cpu", llama, model, context, seqs, wrapper, batcher);
  }

  /** Slots busy and requests waiting (for /metrics and tests). */
  get load(): { running: number; queued: number; slots: number; maxQueue: number } {
    return {
      running: this.queue.running,
      queued: this.queue.queued,
      slots: this.queue.slots,
      maxQueue: this.queue.maxQueue,
    };
  }

  /** Decode batches and items so far (tests, diagnostics: items / batches is the mean parallelism per step). */
  get batching(): Readonly<BatchStats> {
    return { ...this.batcher.stats };
  }

  async countTokens(text: string): Promise<number> {
    return this.model.tokenize(text, false).length;
  }

  async countChatTokens(messages: ChatMessage[]): Promise<number> {
    // A request is counted by the server (context check, rate limits) and again before generating: render the
    // template and tokenize once per message list (keyed by identity; callers do not mutate a list once sent).
    let n = this.promptCounts.get(messages);
    if (n === undefined) {
      const history = [...toHistory(messages), { type: "model", response: [] } as ChatHistoryItem];
      const { contextText } = this.chatWrapper.generateContextState({ chatHistory: history });
      n = contextText.tokenize(this.model.tokenizer).length;
      this.promptCounts.set(messages, n);
    }
    return n;
  }

  /** The prompt exactly as the template renders it (for tests and `generate --show-prompt`). */
  renderPrompt(messages: ChatMessage[]): string {
    const history = [...toHistory(messages), { type: "model", response: [] } as ChatHistoryItem];
    return this.chatWrapper.generateContextState({ chatHistory: history }).contextText.toString();
  }

  private grammar(schema: Record<string, unknown>): Promise<LlamaGrammar> {
    const key = JSON.stringify(schema);
    let g = this.grammars.get(key);
    if (!g) {
      g = this.llama.createGrammarForJsonSchema(schema as GbnfJsonSchema as any).catch((err) => {
        this.grammars.delete(key);
        throw new DajianError(
          "invalid_input",
          `unsupported JSON schema: ${(err as Error).message}`,
          "use a simpler schema (objects, arrays, strings, numbers, enums)",
          { cause: err },
        );
      });
      if (this.grammars.size > 64) this.grammars.clear(); // bounded cache
      this.grammars.set(key, g);
    }
    return g;
  }

  async chat(messages: ChatMessage[], opts: GenerateOptions = {}): Promise<ChatResult> {
    for await (const c of this.stream(messages, opts)) if (c.type === "done") return c.result;
    throw new DajianError("internal", "generation ended without a result", "report this bug");
  }

  async *stream(messages: ChatMessage[], opts: GenerateOptions = {}): AsyncIterable<ChatChunk> {
    if (this.disposed) throw new DajianError("busy", `model "${this.name}" is unloading`, "retry in a moment");
    const promptTokens = await this.countChatTokens(messages);
    if (promptTokens >= this.contextSize)
      throw new DajianError(
        "invalid_input",
        `prompt is ${promptTokens} tokens but model "${this.name}" has a ${this.contextSize}-token context`,
        "shorten the prompt or raise the model's contextSize",
      );
    const room = this.contextSize - promptTokens;
    if (opts.maxTokens !== undefined && (!Number.isInteger(opts.maxTokens) || opts.maxTokens < 1))
      throw new DajianError("invalid_input", "maxTokens must be a positive integer", "pass e.g. max_tokens: 256");
    const maxTokens = Math.min(opts.maxTokens ?? room, room);
    const grammar = opts.jsonSchema ? await this.grammar(opts.jsonSchema) : undefined;
    const abortDone = (text: string, completionTokens: number): ChatChunk => ({
      type: "done",
      result: { text, finishReason: "abort", usage: { promptTokens, completionTokens } },
    });

    let slot: number;
    try {
      slot = await this.queue.acquire(opts.signal);
    } catch (err) {
      if (opts.signal?.aborted) {
        yield abortDone("", 0);
        return;
      }
      throw err;
    }
    // On an idle context, a burst's prompts are decoded together (see batching.ts); a short, capped wait.
    await this.batcher.admit(this.queue.running < this.queue.slots);
    const t0 = Date.now();
    // Internal controller: aborted by the caller's signal or by the consumer leaving the loop early.
    const ctl = new AbortController();
    const onAbort = () => ctl.abort(opts.signal?.reason);
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const chan = new Channel<ChatChunk>((wake) => this.batcher.afterNextCut(wake));
    const seq = this.sequences[slot];
    let text = "";
    let completionTokens = 0;
    // The sequence's token meter counts every sampled token, including ones held back while a stop trigger
    // might still match (onToken does not see those).
    const meterBefore = seq.tokenMeter.getState();
    const sampled = () => Math.max(completionTokens, seq.tokenMeter.diff(meterBefore).usedOutputTokens);
    const run = (async () => {
      const chat = new LlamaChat({ contextSequence: seq, chatWrapper: this.chatWrapper });
      this.batcher.begin();
      try {
        const res = await chat.generateResponse(toHistory(messages), {
          onTextChunk: (t) => {
            text += t;
            chan.push({ type: "delta", text: t });
          },
          onToken: (tokens) => {
            completionTokens += tokens.length;
          },
          maxTokens,
          temperature: opts.temperature,
          topP: opts.topP,
          seed: opts.seed,
          customStopTriggers: opts.stop?.length ? opts.stop : undefined,
          grammar,
          signal: ctl.signal,
          stopOnAbortSignal: true,
        });
        const why = res.metadata.stopReason;
        const finishReason: ChatResult["finishReason"] =
          ctl.signal.aborted || why === "abort" ? "abort" : why === "maxTokens" ? "length" : "stop";
        chan.push({
          type: "done",
          result: { text: res.response, finishReason, usage: { promptTokens, completionTokens: sampled() } },
        });
        chan.end();
      } catch (err) {
        if (ctl.signal.aborted) {
          chan.push(abortDone(text, sampled()));
          chan.end();
        } else
          chan.end(
            new DajianError("internal", `generation failed: ${(err as Error).message}`, "see the server log", {
              cause: err,
            }),
          );
      } finally {
        this.batcher.end();
        chat.dispose({ disposeSequence: false });
        await seq.clearHistory().catch(() => {});
        opts.signal?.removeEventListener("abort", onAbort);
        this.queue.release(slot, Date.now() - t0);
      }
    })();
    let finished = false;
    try {
      for await (const c of chan) {
        if (c.type === "done") finished = true;
        yield c;
      }
    } finally {
      if (!finished) ctl.abort(new DajianError("internal", "consumer stopped reading", ""));
      await run; // the slot is released before the caller moves on
    }
  }

  private embeddingContext(): Promise<LlamaEmbeddingContext> {
    this.embedCtx ??= this.model
      .createEmbeddingContext({ contextSize: this.embedContextSize, threads: this.context.idealThreads })
      .catch((err) => {
        this.embedCtx = undefined;
        throw new DajianError(
          "unsupported",
          `model "${this.name}" cannot make embeddings: ${(err as Error).message}`,
          "use an embedding model (e.g. a bge/e5 GGUF)",
          { cause: err },
        );
      });
    return this.embedCtx;
  }

  async embed(texts: string[], signal?: AbortSignal): Promise<Float32Array[]> {
    const ctx = await this.embeddingContext();
    const run = async () => {
      const out: Float32Array[] = [];
      for (const t of texts) {
        if (signal?.aborted) throw signal.reason;
        const n = this.model.tokenize(t, false).length;
        if (n > this.embedContextSize)
          throw new DajianError(
            "invalid_input",
            `text of ${n} tokens exceeds the embedding context (${this.embedContextSize})`,
            "split the text into smaller chunks",
          );
        out.push(Float32Array.from((await ctx.getEmbeddingFor(t)).vector));
      }
      return out;
    };
    // One embedding context: serialise callers rather than interleave their batches.
    const p = this.embedLock.then(run, run);
    this.embedLock = p.catch(() => {});
    return p;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.queue.rejectAll(new DajianError("busy", `model "${this.name}" was unloaded`, "retry"));
    if (this.embedCtx) await (await this.embedCtx.catch(() => undefined))?.dispose();
    await this.context.dispose();
    await this.model.dispose();
  }
}
