// OpenAI-compatible /v1: chat completions (stream + non-stream, usage, kb:NAME grounded answers with citations),
// models and embeddings. Works unchanged with the official `openai` SDK and LangChain's ChatOpenAI.
import { randomBytes } from "node:crypto";
import type { Answer } from "../answer/types.js";
import { DajianError } from "../core/errors.js";
import type { ChatChunk, ChatMessage, ChatModel, ChatResult, GenerateOptions } from "../models/types.js";
import type { Handler, HandlerTable, RequestContext, ServerContext } from "./context.js";
import { ApiError, mapError, modelNotFound } from "./errors.js";
import { openSse, requestSignal, type SseStream } from "./sse.js";

interface ChatBody {
  model: string;
  messages: { role: string; content?: string | { type: string; text?: string }[] | null }[];
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  response_format?: { type: string; json_schema?: { name: string; schema?: Record<string, unknown> } } | null;
  conversation_id?: string;
}

const KB_PREFIX = "kb:";

export function completionId(): string {
  return `chatcmpl-${randomBytes(12).toString("hex")}`;
}

/** OpenAI message list → dajian's: text parts joined, "developer" treated as system; other modalities refused. */
export function toChatMessages(messages: ChatBody["messages"]): ChatMessage[] {
  return messages.map((m, i) => {
    if (m.role === "tool")
      throw new ApiError("unsupported", "tool messages are not supported", "send system/user/assistant messages", {
        param: `messages.${i}.role`,
        apiCode: "unsupported_value",
      });
    let content = "";
    if (typeof m.content === "string") content = m.content;
    else if (Array.isArray(m.content)) {
      for (const [j, p] of m.content.entries()) {
        if (p.type !== "text" || typeof p.text !== "string")
          throw new ApiError("invalid_input", `content part type '${p.type}' is not supported`, "send text parts", {
            param: `messages.${i}.content.${j}`,
          });
        content += p.text;
      }
    }
    const role = m.role === "developer" ? "system" : (m.role as ChatMessage["role"]);
    return { role, content };
  });
}

export function generateOptions(b: ChatBody): GenerateOptions {
  const o: GenerateOptions = {};
  const maxTokens = b.max_completion_tokens ?? b.max_tokens;
  if (maxTokens != null) o.maxTokens = maxTokens;
  if (b.temperature != null) o.temperature = b.temperature;
  if (b.top_p != null) o.topP = b.top_p;
  if (b.seed != null) o.seed = b.seed;
  if (b.stop != null) o.stop = typeof b.stop === "string" ? [b.stop] : b.stop.filter((s) => s.length > 0);
  const rf = b.response_format;
  if (rf?.type === "json_object") o.jsonSchema = { type: "object" };
  if (rf?.type === "json_schema") {
    if (!rf.json_schema?.schema)
      throw new ApiError("invalid_input", "response_format.json_schema.schema is missing", "add the JSON schema", {
        param: "response_format.json_schema.schema",
      });
    o.jsonSchema = rf.json_schema.schema;
  }
  return o;
}

/** Reject (400) a prompt that does not fit the model's context, never truncate it. Returns the prompt size. */
export async function checkContext(model: ChatModel, messages: ChatMessage[], maxTokens?: number): Promise<number> {
  const promptTokens = await model.countChatTokens(messages);
  const ctx = model.contextSize;
  if (promptTokens >= ctx || (maxTokens !== undefined && promptTokens + maxTokens > ctx))
    throw new ApiError(
      "invalid_input",
      `This model's maximum context length is ${ctx} tokens, but the request needs ${promptTokens} prompt tokens` +
        (maxTokens !== undefined ? ` + ${maxTokens} completion tokens` : ""),
      "shorten the messages or lower max_tokens",
      { param: "messages", apiCode: "context_length_exceeded" },
    );
  return promptTokens;
}

function usageOf(u: { promptTokens: number; completionTokens: number } | undefined) {
  const p = u?.promptTokens ?? 0;
  const c = u?.completionTokens ?? 0;
  return { prompt_tokens: p, completion_tokens: c, total_tokens: p + c };
}

function finishReason(r: ChatResult["finishReason"]): "stop" | "length" {
  return r === "length" ? "length" : "stop";
}

function chunkFrame(id: string, model: string, created: number, extra: Record<string, unknown>) {
  return { id, object: "chat.completion.chunk", created, model, system_fingerprint: null, ...extra };
}

/** Start a stream, but pull its first chunk before answering so early errors (429 queue full, 400) keep their status. */
async function primeStream(it: AsyncIterator<ChatChunk>): Promise<IteratorResult<ChatChunk>> {
  return it.next();
}

async function rawCompletion(
  body: ChatBody,
  model: ChatModel,
  reply: Parameters<Handler>[1],
  rc: RequestContext,
  sc: ServerContext,
) {
  const messages = toChatMessages(body.messages);
  const gen = { ...generateOptions(body), principalId: rc.principal.id };
  const promptTokens = await checkContext(model, messages, gen.maxTokens);
  const lease = await sc.security.admit(rc.principal, rc.route, {
    model: body.model,
    promptTokens,
    maxTokens: gen.maxTokens ?? model.contextSize - promptTokens,
  });
  const { signal, dispose } = requestSignal(reply, sc.generationTimeoutMs);
  const id = completionId();
  const created = Math.floor(Date.now() / 1000);
  let usage = { promptTokens: 0, completionTokens: 0 };
  try {
    if (!body.stream) {
      const r = await model.chat(messages, { ...gen, signal });
      usage = r.usage;
      return {
        id,
        object: "chat.completion",
        created,
        model: body.model,
        system_fingerprint: null,
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: r.text, refusal: null },
            logprobs: null,
            finish_reason: finishReason(r.finishReason),
          },
        ],
        usage: usageOf(r.usage),
      };
    }
    const it = model.stream(messages, { ...gen, signal })[Symbol.asyncIterator]();
    let next = await primeStream(it);
    const sse = openSse(reply);
    try {
      const frame = (extra: Record<string, unknown>) => chunkFrame(id, body.model, created, extra);
      await sse.send(
        frame({ choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] }),
      );
      // The per-token frame is the one hot spot here: a prebuilt JSON prefix + the escaped text, no object per token.
      const head = JSON.stringify(frame({ choices: [] })).slice(0, -"[]}".length) + '[{"index":0,"delta":{"content":';
      for (; !next.done; next = await it.next()) {
        // After a disconnect the signal has stopped generation; keep draining to the final "done" chunk so the
        // real (partial) usage is recorded and settled.
        const c = next.value;
        if (c.type === "delta") {
          if (c.text) await sse.send(`${head}${JSON.stringify(c.text)}},"finish_reason":null}]}`);
        } else {
          usage = c.result.usage;
          await sse.send(
            frame({ choices: [{ index: 0, delta: {}, finish_reason: finishReason(c.result.finishReason) }] }),
          );
          if (body.stream_options?.include_usage) await sse.send(frame({ choices: [], usage: usageOf(usage) }));
        }
      }
      await sse.send("[DONE]");
    } catch (err) {
      await streamError(sse, err);
    } finally {
      await it.return?.();
      sse.end();
    }
    return reply;
  } finally {
    dispose();
    lease.settle(usage);
  }
}

async function streamError(sse: SseStream, err: unknown) {
  if (sse.closed) return;
  await sse.send(mapError(err).body);
}

function citationsOut(a: Answer) {
  return a.citations.map((c) => ({
    index: c.index,
    document: c.document,
    page: c.page ?? null,
    heading: c.heading ?? null,
    quote: c.quote,
    chunk_id: c.chunkId,
    document_id: c.documentId,
  }));
}

/** `model: "kb:NAME"`: grounded answer (or extractive without a model); citations travel with the response. */
async function kbCompletion(
  body: ChatBody,
  kb: string,
  reply: Parameters<Handler>[1],
  rc: RequestContext,
  sc: ServerContext,
) {
  const messages = toChatMessages(body.messages);
  let lastUser = -1;
  for (let i = messages.length - 1; i >= 0; i--)
    if (messages[i].role === "user") {
      lastUser = i;
      break;
    }
  if (lastUser < 0 || !messages[lastUser].content.trim())
    throw new ApiError("invalid_input", "no user message to answer", "end the messages with a user question", {
      param: "messages",
    });
  const question = messages[lastUser].content;
  const history = messages.slice(0, lastUser);
  const gen = { ...generateOptions(body), principalId: rc.principal.id };
  const model = await sc.services.models.defaultChat();
  if (model) await checkContext(model, messages, gen.maxTokens);
  const lease = await sc.security.admit(rc.principal, rc.route, {
    model: body.model,
    promptTokens: model ? await model.countChatTokens(messages) : 0,
    maxTokens: gen.maxTokens ?? (model ? Math.floor(model.contextSize / 4) : 0),
  });
  const { signal, dispose } = requestSignal(reply, sc.generationTimeoutMs);
  const id = completionId();
  const created = Math.floor(Date.now() / 1000);
  const allowDocument = sc.security.documentFilter(rc.principal, kb);
  let answer: Answer | undefined;
  try {
    const ask = (onDelta?: (t: string) => void) =>
      sc.services.answers.ask({
        kb,
        question,
        history,
        conversationId: body.conversation_id,
        // /v1 is stateless like OpenAI's: a turn is stored only when it continues a conversation.
        store: body.conversation_id !== undefined,
        owner: rc.principal.id,
        model,
        allowDocument,
        gen,
        onDelta,
        signal,
      });
    if (!body.stream) {
      answer = await ask();
      const citations = citationsOut(answer);
      return {
        id,
        object: "chat.completion",
        created,
        model: body.model,
        system_fingerprint: null,
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: answer.answer, refusal: null, citations },
            logprobs: null,
            finish_reason: "stop",
          },
        ],
        usage: usageOf(answer.usage),
        citations,
        dajian: { mode: answer.mode, no_answer: answer.noAnswer, conversation_id: answer.conversationId ?? null },
      };
    }
    const sse = openSse(reply);
    const frame = (extra: Record<string, unknown>) => chunkFrame(id, body.model, created, extra);
    try {
      await sse.send(
        frame({ choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] }),
      );
      // Deltas are queued and flushed in order; the answerer calls onDelta synchronously.
      let chain = Promise.resolve();
      let streamed = "";
      answer = await ask((text) => {
        if (!text) return;
        streamed += text;
        chain = chain.then(() =>
          sse.send(frame({ choices: [{ index: 0, delta: { content: text }, finish_reason: null }] })),
        );
      });
      await chain;
      // Extractive answers (and any text not streamed) arrive whole: send what the client has not seen yet.
      if (!streamed && answer.answer)
        await sse.send(frame({ choices: [{ index: 0, delta: { content: answer.answer }, finish_reason: null }] }));
      const a = answer;
      await sse.send(
        frame({
          choices: [{ index: 0, delta: {}, finish_reason: "stop" }],
          citations: citationsOut(a),
          dajian: { mode: a.mode, no_answer: a.noAnswer, conversation_id: a.conversationId ?? null, answer: a.answer },
        }),
      );
      if (body.stream_options?.include_usage) await sse.send(frame({ choices: [], usage: usageOf(a.usage) }));
      await sse.send("[DONE]");
    } catch (err) {
      await streamError(sse, err);
    } finally {
      sse.end();
    }
    return reply;
  } finally {
    dispose();
    lease.settle(answer?.usage ?? { promptTokens: 0, completionTokens: 0 });
  }
}

async function kbExists(sc: ServerContext, kb: string): Promise<boolean> {
  return (await sc.services.kbs.list()).some((k) => k.name === kb);
}

const chatCompletions: Handler = async (req, reply, rc, sc) => {
  const body = req.body as ChatBody;
  if (body.model.startsWith(KB_PREFIX)) {
    const kb = body.model.slice(KB_PREFIX.length);
    if (!(await kbExists(sc, kb))) throw modelNotFound(body.model);
    return kbCompletion(body, kb, reply, rc, sc);
  }
  const model = await lookup(() => sc.services.models.chat(body.model), body.model);
  return rawCompletion(body, model, reply, rc, sc);
};

async function lookup<T>(fn: () => Promise<T>, name: string): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof DajianError && err.code === "not_found") throw modelNotFound(name);
    throw err;
  }
}

async function modelList(rc: RequestContext, sc: ServerContext) {
  const models = await sc.services.models.list();
  const kbs = sc.security.visibleKbs(
    rc.principal,
    (await sc.services.kbs.list()).map((k) => k.name),
  );
  const now = Math.floor(Date.now() / 1000);
  return [
    ...models.map((m) => ({
      id: m.id,
      object: "model",
      created: m.created ?? now,
      owned_by: m.ownedBy,
      ...(m.contextSize ? { context_length: m.contextSize } : {}),
      ...(m.kind === "embedding" ? { dajian_kind: "embedding" } : {}),
    })),
    ...kbs.map((name) => ({ id: KB_PREFIX + name, object: "model", created: now, owned_by: "dajian-kb" })),
  ];
}

const listModels: Handler = async (_req, _reply, rc, sc) => ({ object: "list", data: await modelList(rc, sc) });

const getModel: Handler = async (req, _reply, rc, sc) => {
  const { model } = req.params as { model: string };
  const m = (await modelList(rc, sc)).find((x) => x.id === model);
  if (!m) throw modelNotFound(model);
  return m;
};

const embeddings: Handler = async (req, reply, rc, sc) => {
  const body = req.body as { model: string; input: string | string[]; encoding_format?: "float" | "base64" };
  const model = await lookup(() => sc.services.models.embedding(body.model), body.model);
  const inputs = typeof body.input === "string" ? [body.input] : body.input;
  const counter = (model as { countTokens?: (t: string) => Promise<number> }).countTokens;
  let promptTokens = 0;
  if (counter) for (const t of inputs) promptTokens += await counter.call(model, t);
  const lease = await sc.security.admit(rc.principal, rc.route, { model: body.model, promptTokens, maxTokens: 0 });
  const { signal, dispose } = requestSignal(reply, sc.generationTimeoutMs);
  try {
    const vecs = await model.embed(inputs, signal);
    const b64 = body.encoding_format === "base64";
    return {
      object: "list",
      model: body.model,
      data: vecs.map((v, index) => ({
        object: "embedding",
        index,
        embedding: b64 ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") : Array.from(v),
      })),
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    };
  } finally {
    dispose();
    lease.settle({ promptTokens, completionTokens: 0 });
  }
};

export const v1Handlers: HandlerTable = {
  "v1.chat.completions": chatCompletions,
  "v1.models.list": listModels,
  "v1.models.get": getModel,
  "v1.embeddings": embeddings,
};
