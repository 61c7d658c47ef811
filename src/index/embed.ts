// Embedders turn texts into unit-length vectors for the vector index. Two backends, chosen by config `embedding`:
// - "openai": any OpenAI-compatible POST {baseURL}/embeddings (OpenAI, vLLM, Ollama, DashScope, a gateway …),
//   with a timeout per request and retries with backoff on 429/5xx/network errors;
// - "local": a GGUF embedding model loaded through node-llama-cpp (loaded lazily: most runs never need it).
// The shape matches models' EmbeddingModel (name + embed) so a model from the registry can be passed in directly.
import type { EmbeddingConfig } from "../core/config.js";
import { DajianError } from "../core/errors.js";

export interface Embedder {
  /** Model identity stored with the vectors: vectors of different models are never compared. */
  readonly name: string;
  embed(texts: string[], signal?: AbortSignal): Promise<Float32Array[]>;
  close?(): Promise<void>;
}

/** Scale to unit length in place (cosine similarity becomes a dot product). */
export function normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  const n = Math.sqrt(s);
  if (n > 0) for (let i = 0; i < v.length; i++) v[i] /= n;
  return v;
}

export interface OpenAIEmbedderOptions {
  baseURL: string;
  model: string;
  apiKey?: string;
  /** Texts per request. */
  batchSize?: number;
  timeoutMs?: number;
  retries?: number;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        reject(signal.reason);
      },
      { once: true },
    );
  });

export class OpenAIEmbedder implements Embedder {
  readonly name: string;
  private readonly url: string;
  constructor(private readonly o: OpenAIEmbedderOptions) {
    this.name = `openai:${o.model}@${o.baseURL.replace(/\/+$/, "")}`;
    this.url = o.baseURL.replace(/\/+$/, "") + "/embeddings";
  }

  async embed(texts: string[], signal?: AbortSignal): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    const bs = this.o.batchSize ?? 64;
    for (let i = 0; i < texts.length; i += bs) out.push(...(await this.request(texts.slice(i, i + bs), signal)));
    return out;
  }

  private async request(input: string[], signal?: AbortSignal): Promise<Float32Array[]> {
    const retries = this.o.retries ?? 3;
    let lastErr: unknown;
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) await sleep(250 * 2 ** (attempt - 1), signal);
      const timeout = AbortSignal.timeout(this.o.timeoutMs ?? 60_000);
      let res: Response;
      try {
        res = await fetch(this.url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(this.o.apiKey ? { authorization: `Bearer ${this.o.apiKey}` } : {}),
          },
          body: JSON.stringify({ model: this.o.model, input }),
          signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
        });
      } catch (err) {
        if (signal?.aborted) throw err;
        lastErr = err;
        continue; // network error or timeout: retry
      }
      if (res.status === 429 || res.status >= 500) {
        lastErr = new Error(`HTTP ${res.status}`);
        await res.body?.cancel();
        continue;
      }
      if (!res.ok) {
        const body = (await res.text()).slice(0, 200);
        throw new DajianError(
          "upstream",
          `embedding endpoint ${this.url} answered HTTP ${res.status}: ${body}`,
          "check embedding.baseURL, embedding.model and the API key (embedding.apiKeyEnv) in config.json",
        );
      }
      const json = (await res.json()) as { data?: { index?: number; embedding: number[] }[] };
      if (!Array.isArray(json.data) || json.data.length !== input.length) {
        throw new DajianError(
          "upstream",
          `embedding endpoint ${this.url} returned ${json.data?.length ?? "no"} embeddings for ${input.length} inputs`,
          "point embedding.baseURL at an OpenAI-compatible /v1 endpoint",
        );
      }
      const sorted = [...json.data].sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
      return sorted.map((d) => normalize(Float32Array.from(d.embedding)));
    }
    throw new DajianError(
      "upstream",
      `embedding endpoint ${this.url} failed after ${retries + 1} attempts (${lastErr instanceof Error ? lastErr.message : String(lastErr)})`,
      "check that the embedding server is running and reachable, then rerun (unchanged files are skipped)",
    );
  }
}

/** GGUF embedding model through node-llama-cpp; loaded on first use, one context reused. */
export class LocalEmbedder implements Embedder {
  readonly name: string;
  private ctx?: Promise<{
    getEmbeddingFor(text: string): Promise<{ vector: readonly number[] }>;
    dispose(): Promise<void>;
  }>;
  private model?: { dispose(): Promise<void> };

  /** `threads`: llama.cpp threads (default: node-llama-cpp's choice); 1 keeps it usable on a busy machine. */
  constructor(
    private readonly modelPath: string,
    private readonly opts: { threads?: number } = {},
  ) {
    this.name = `local:${modelPath}`;
  }

  private context() {
    this.ctx ??= (async () => {
      const { getLlama } = await import("node-llama-cpp");
      // build: "never" — a missing prebuilt binary is an error to report, never a silent multi-minute compile.
      const llama = await getLlama({ build: "never" }).catch((err: unknown) => {
        throw new DajianError(
          "unsupported",
          `no prebuilt llama.cpp binary for this platform (${String(err).split("\n")[0]})`,
          'use an OpenAI-compatible embedding endpoint (embedding.provider "openai") on this machine',
          { cause: err },
        );
      });
      const model = await llama.loadModel({ modelPath: this.modelPath });
      this.model = model;
      return model.createEmbeddingContext({ threads: this.opts.threads });
    })();
    return this.ctx;
  }

  async embed(texts: string[], signal?: AbortSignal): Promise<Float32Array[]> {
    const ctx = await this.context();
    const out: Float32Array[] = [];
    for (const t of texts) {
      signal?.throwIfAborted();
      out.push(normalize(Float32Array.from((await ctx.getEmbeddingFor(t)).vector)));
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.ctx) await (await this.ctx).dispose();
    await this.model?.dispose();
  }
}

/** The embedder named by config, or undefined when none is configured (keyword search only). */
export function embedderFromConfig(cfg: EmbeddingConfig | undefined, env = process.env): Embedder | undefined {
  if (!cfg) return undefined;
  if (cfg.provider === "local") return new LocalEmbedder(cfg.model);
  if (cfg.provider === "openai") {
    if (!cfg.baseURL) {
      throw new DajianError(
        "invalid_input",
        "embedding.provider is 'openai' but embedding.baseURL is missing",
        'set embedding.baseURL in config.json, e.g. "http://127.0.0.1:11434/v1"',
      );
    }
    const apiKey = cfg.apiKeyEnv ? env[cfg.apiKeyEnv] : undefined;
    if (cfg.apiKeyEnv && !apiKey) {
      throw new DajianError(
        "invalid_input",
        `embedding.apiKeyEnv names ${cfg.apiKeyEnv}, which is not set`,
        `export ${cfg.apiKeyEnv}=<key> or remove embedding.apiKeyEnv`,
      );
    }
    return new OpenAIEmbedder({ baseURL: cfg.baseURL, model: cfg.model, apiKey });
  }
  throw new DajianError(
    "invalid_input",
    `unknown embedding.provider '${String((cfg as { provider: unknown }).provider)}'`,
    'use "local" (GGUF path) or "openai" (OpenAI-compatible endpoint)',
  );
}
