// Any OpenAI-compatible chat endpoint (OpenAI, DeepSeek, GLM, DashScope, Moonshot, Ollama, vLLM, llama.cpp server)
// behind the ChatModel interface. Every request goes through the hardened outbound client; 429/5xx and network
// failures are retried with exponential backoff + jitter (Retry-After honoured), but only before the first byte
// of an answer has been passed on — a half-streamed answer is never silently restarted.
import { DajianError, isDajianError } from "../core/errors.js";
import { safeFetch, type SafeFetchInit } from "../core/outbound.js";
import type { RemoteModelSpec } from "./registry.js";
import { sseEvents } from "./sse.js";
import type { ChatChunk, ChatMessage, ChatModel, ChatResult, GenerateOptions, Usage } from "./types.js";

export type FetchLike = (url: string, init: SafeFetchInit) => Promise<Awaited<ReturnType<typeof safeFetch>>>;

export interface RemoteModelOptions {
  fetch?: FetchLike;
  env?: NodeJS.ProcessEnv;
  /** Longest Retry-After we are willing to wait inside one call (longer → error with retryAfter). */
  maxRetryDelayMs?: number;
  /** Base of the exponential backoff. */
  backoffBaseMs?: number;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_ERROR_BODY = 64 * 1024;
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

/** Rough token estimate for providers whose tokenizer we do not have: CJK ≈ 1 token/char, other text ≈ 4 chars. */
export function estimateTokens(text: string): number {
  let cjk = 0;
  for (const ch of text) if (/[\u3000-\u9fff\uac00-\ud7af\uf900-\ufaff]/.test(ch)) cjk++;
  const other = [...text].length - cjk;
  return cjk + Math.ceil(other / 4);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Retry-After as seconds or an HTTP date → ms (undefined when absent or unparsable). */
export function parseRetryAfter(v: string | null, now = Date.now()): number | undefined {
  if (!v) return undefined;
  if (/^\d+(\.\d+)?$/.test(v.trim())) return Math.round(Number(v) * 1000);
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

async function readBounded(res: { body: any }, limit: number): Promise<string> {
  if (!res.body) return "";
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of res.body as AsyncIterable<Uint8Array>) {
    n += c.byteLength;
    if (n > limit) {
      throw new DajianError(
        "upstream",
        `provider response larger than ${limit} bytes`,
        "check the provider's base URL",
      );
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function providerMessage(text: string): string {
  try {
    const j = JSON.parse(text);
    const m = j?.error?.message ?? j?.message ?? j?.error;
    if (typeof m === "string") return m.slice(0, 300);
  } catch {
    // not JSON: fall through to the raw text
  }
  return text.replace(/\s+/g, " ").slice(0, 200);
}

/** Marks an error that must not be retried. */
class Fatal {
  constructor(readonly error: unknown) {}
}

export class RemoteChatModel implements ChatModel {
  readonly contextSize: number;
  private readonly fetchFn: FetchLike;
  private readonly env: NodeJS.ProcessEnv;
  private readonly maxRetryDelayMs: number;
  private readonly backoffBaseMs: number;

  constructor(
    readonly name: string,
    readonly spec: RemoteModelSpec,
    opts: RemoteModelOptions = {},
  ) {
    this.contextSize = spec.contextSize ?? 8192;
    this.fetchFn = opts.fetch ?? safeFetch;
    this.env = opts.env ?? process.env;
    this.maxRetryDelayMs = opts.maxRetryDelayMs ?? 30_000;
    this.backoffBaseMs = opts.backoffBaseMs ?? 500;
  }

  async countTokens(text: string): Promise<number> {
    return estimateTokens(text);
  }

  async countChatTokens(messages: ChatMessage[]): Promise<number> {
    return messages.reduce((n, m) => n + 4 + estimateTokens(m.content), 3);
  }

  private headers(): Record<string, string> {
    const h: Record<string, string> = { "content-type": "application/json", accept: "application/json" };
    const env = this.spec.apiKeyEnv;
    if (env) {
      const key = this.env[env];
      if (!key)
        throw new DajianError(
          "unauthorized",
          `model "${this.name}" needs an API key in $${env}, which is not set`,
          `export ${env}=<your key> before starting dajian`,
        );
      h.authorization = `Bearer ${key}`;
    }
    return h;
  }

  private body(messages: ChatMessage[], opts: GenerateOptions, stream: boolean): string {
    const b: Record<string, unknown> = {
      model: this.spec.model,
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      stream,
    };
    if (stream) b.stream_options = { include_usage: true };
    if (opts.maxTokens !== undefined) b.max_tokens = opts.maxTokens;
    if (opts.temperature !== undefined) b.temperature = opts.temperature;
    if (opts.topP !== undefined) b.top_p = opts.topP;
    if (opts.seed !== undefined) b.seed = opts.seed;
    if (opts.stop?.length) b.stop = opts.stop;
    if (opts.jsonSchema)
      b.response_format = {
        type: "json_schema",
        json_schema: { name: "output", schema: opts.jsonSchema, strict: true },
      };
    return JSON.stringify(b);
  }

  /**
   * POST with retries. Returns an OK response whose body is still unread, plus the controller that times it out;
   * the caller owns clearing `timer`.
   */
  private async post(
    body: string,
    signal: AbortSignal | undefined,
  ): Promise<{ res: Awaited<ReturnType<FetchLike>>; ctl: AbortController; arm: () => void; disarm: () => void }> {
    const url = `${this.spec.baseURL}/chat/completions`;
    const timeoutMs = this.spec.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const maxRetries = this.spec.maxRetries ?? 3;
    const headers = this.headers();
    let lastErr: unknown;
    for (let attempt = 0; attempt <= maxRetries; attempt++) {
      const ctl = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      const disarm = () => clearTimeout(timer);
      // Idle deadline: re-armed on every chunk while streaming, so a slow but live stream is not cut.
      const arm = () => {
        disarm();
        timer = setTimeout(
          () =>
            ctl.abort(
              new DajianError(
                "upstream",
                `model "${this.name}" timed out after ${timeoutMs} ms`,
                "the provider is slow or hanging; retry later or raise timeoutMs",
              ),
            ),
          timeoutMs,
        );
      };
      const onUserAbort = () => ctl.abort(signal!.reason);
      signal?.addEventListener("abort", onUserAbort, { once: true });
      arm();
      let retryDelay: number | undefined;
      let ok = false;
      try {
        const res = await this.fetchFn(url, {
          method: "POST",
          headers,
          body,
          signal: ctl.signal,
          // Our own idle timer governs; the client's whole-exchange deadline must not cut long streams.
          timeoutMs: 24 * 3600_000,
          maxRedirects: 0,
          allowPrivate: this.spec.allowPrivateNetwork ?? false,
        });
        if (res.ok) {
          ok = true;
          return { res, ctl, arm, disarm };
        }
        const text = await readBounded(res, MAX_ERROR_BODY).catch(() => "");
        const msg = providerMessage(text);
        const detail = `${res.status}${msg ? `: ${msg}` : ""}`;
        if (res.status !== 429 && res.status < 500) throw new Fatal(this.clientError(res.status, detail, url));
        const ra = parseRetryAfter(res.headers.get("retry-after"));
        lastErr = new DajianError(
          res.status === 429 ? "rate_limited" : "upstream",
          `model "${this.name}": provider returned ${detail}`,
          res.status === 429
            ? "the provider is rate-limiting this key; retry later"
            : "the provider failed; retry later",
          { retryAfter: ra !== undefined ? Math.ceil(ra / 1000) : undefined },
        );
        if (ra !== undefined && ra > this.maxRetryDelayMs) throw new Fatal(lastErr);
        retryDelay = ra;
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (err instanceof Fatal) throw err.error;
        if (isDajianError(err, "forbidden") || isDajianError(err, "invalid_input")) throw err;
        if (ctl.signal.aborted && isDajianError(ctl.signal.reason)) lastErr = ctl.signal.reason;
        else if (isDajianError(err)) lastErr = err;
        else
          lastErr = new DajianError(
            "upstream",
            `model "${this.name}": ${(err as Error).message}`,
            "check that the provider is reachable",
          );
      } finally {
        signal?.removeEventListener("abort", onUserAbort);
        if (!ok) disarm();
      }
      if (attempt === maxRetries) break;
      const backoff = Math.min(8000, this.backoffBaseMs * 2 ** attempt);
      const delay = retryDelay ?? backoff / 2 + Math.random() * (backoff / 2);
      await sleep(delay, signal);
    }
    throw lastErr;
  }

  private clientError(status: number, detail: string, url: string): DajianError {
    if (status === 401 || status === 403)
      return new DajianError(
        "unauthorized",
        `model "${this.name}": provider rejected the API key (${detail})`,
        `check $${this.spec.apiKeyEnv ?? "the API key env var"}`,
      );
    if (status === 404)
      return new DajianError(
        "not_found",
        `model "${this.name}": ${url} answered ${detail}`,
        `check the base URL and that the provider has model "${this.spec.model}"`,
      );
    return new DajianError(
      "invalid_input",
      `model "${this.name}": provider refused the request (${detail})`,
      "check the request parameters",
    );
  }

  async chat(messages: ChatMessage[], opts: GenerateOptions = {}): Promise<ChatResult> {
    let text = "";
    for await (const c of this.stream(messages, opts))
      if (c.type === "done") return c.result;
      else text += c.text;
    throw new DajianError(
      "internal",
      `model "${this.name}": stream ended without a result (${text.length} chars)`,
      "report this bug",
    );
  }

  async *stream(messages: ChatMessage[], opts: GenerateOptions = {}): AsyncIterable<ChatChunk> {
    const signal = opts.signal;
    const aborted = (text: string): ChatChunk => ({
      type: "done",
      result: { text, finishReason: "abort", usage: { promptTokens: 0, completionTokens: estimateTokens(text) } },
    });
    let post;
    try {
      post = await this.post(this.body(messages, opts, true), signal);
    } catch (err) {
      if (signal?.aborted) {
        yield aborted("");
        return;
      }
      throw err;
    }
    const { res, ctl, arm, disarm } = post;
    // The caller's abort must also cut the body stream (post() only watched it until the headers came).
    const onAbort = () => ctl.abort(signal!.reason);
    if (signal?.aborted) onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    let text = "";
    let finish: ChatResult["finishReason"] = "stop";
    let usage: Usage | undefined;
    const ctype = res.headers.get("content-type") ?? "";
    try {
      if (!ctype.includes("text/event-stream")) {
        // Some gateways ignore stream:true and answer with one JSON body; accept that too.
        const r = this.parseCompletion(await readBounded(res, MAX_RESPONSE_BYTES));
        if (r.text) yield { type: "delta", text: r.text };
        yield { type: "done", result: r };
        return;
      }
      let ended = false; // [DONE] or a finish_reason: without either the stream was cut, not finished
      for await (const data of sseEvents(res.body as unknown as ReadableStream<Uint8Array>)) {
        arm();
        if (data.trim() === "[DONE]") {
          ended = true;
          break;
        }
        let j: any;
        try {
          j = JSON.parse(data);
        } catch {
          throw new DajianError(
            "upstream",
            `model "${this.name}": provider sent a stream event that is not JSON`,
            "check the base URL points at an OpenAI-compatible /v1",
          );
        }
        if (j?.error)
          throw new DajianError(
            "upstream",
            `model "${this.name}": provider error: ${providerMessage(JSON.stringify(j))}`,
            "retry later",
          );
        if (j?.usage && typeof j.usage.prompt_tokens === "number")
          usage = { promptTokens: j.usage.prompt_tokens, completionTokens: j.usage.completion_tokens ?? 0 };
        const choice = j?.choices?.[0];
        const delta = choice?.delta?.content;
        if (typeof delta === "string" && delta) {
          text += delta;
          yield { type: "delta", text: delta };
        }
        if (choice?.finish_reason) ended = true;
        if (choice?.finish_reason === "length") finish = "length";
      }
      if (!ended && !signal?.aborted)
        throw new DajianError(
          "upstream",
          `model "${this.name}": the provider's stream stopped before the answer finished (${text.length} chars, no finish_reason or [DONE])`,
          "the connection to the provider was cut; retry",
        );
    } catch (err) {
      if (signal?.aborted) {
        yield aborted(text);
        return;
      }
      if (ctl.signal.aborted && isDajianError(ctl.signal.reason)) throw ctl.signal.reason;
      if (isDajianError(err)) throw err;
      // e.g. undici's "terminated" when the provider resets the connection mid-answer
      throw new DajianError(
        "upstream",
        `model "${this.name}": connection to the provider failed mid-answer: ${(err as Error).message}`,
        "retry; if it persists, check the provider's status",
        { cause: err },
      );
    } finally {
      disarm();
      signal?.removeEventListener("abort", onAbort);
      ctl.abort(); // closes the connection if the consumer stopped early
    }
    if (signal?.aborted) {
      yield aborted(text);
      return;
    }
    usage ??= { promptTokens: await this.countChatTokens(messages), completionTokens: estimateTokens(text) };
    yield { type: "done", result: { text, finishReason: finish, usage } };
  }

  private parseCompletion(raw: string): ChatResult {
    let j: any;
    try {
      j = JSON.parse(raw);
    } catch {
      throw new DajianError(
        "upstream",
        `model "${this.name}": provider answered with something that is not JSON`,
        "check the base URL points at an OpenAI-compatible /v1",
      );
    }
    const content = j?.choices?.[0]?.message?.content;
    if (typeof content !== "string")
      throw new DajianError(
        "upstream",
        `model "${this.name}": provider answer has no choices[0].message.content`,
        "check the base URL points at an OpenAI-compatible /v1",
      );
    const u = j.usage;
    return {
      text: content,
      finishReason: j.choices[0].finish_reason === "length" ? "length" : "stop",
      usage: {
        promptTokens: typeof u?.prompt_tokens === "number" ? u.prompt_tokens : 0,
        completionTokens: typeof u?.completion_tokens === "number" ? u.completion_tokens : estimateTokens(content),
      },
    };
  }
}
