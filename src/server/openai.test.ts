// /v1 through the official `openai` SDK and LangChain's ChatOpenAI against a running server, with a llama GGUF
// dajian writes itself, loaded by llama.cpp (node-llama-cpp): chat (stream + non-stream), usage, stop, models,
// embeddings, error shapes, context overflow, queue-full 429 + Retry-After, client disconnect frees the slot,
// and `kb:NAME` grounded answers with structured citations.
import { join } from "node:path";
import { ChatOpenAI } from "@langchain/openai";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelRegistry } from "../models/registry.js";
import { openHomeDb } from "../store/sqlite.js";
import { writeTinyLlamaGguf } from "../train/tiny-model.js";
import { jsonPost, startTestServer, type RunningServer } from "./testutil.js";

const CTX = 1024;
let s: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  const { mkdtempSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const home = mkdtempSync(join(tmpdir(), "dj-v1-"));
  const chatPath = join(home, "tiny.gguf");
  const embPath = join(home, "tiny-embed.gguf");
  writeTinyLlamaGguf(chatPath, { contextLength: CTX, seed: 7 });
  writeTinyLlamaGguf(embPath, { contextLength: 256, seed: 8, embedding: true });
  const db = openHomeDb(home);
  const reg = new ModelRegistry(db, home);
  // one slot + one waiting request: the third concurrent request must get 429. threads: 1 keeps CI's 2 cores usable.
  reg.add("tiny", { kind: "local", path: chatPath, contextSize: CTX, sequences: 1, maxQueue: 1, threads: 1 });
  reg.add("tiny-embed", { kind: "local", path: embPath, contextSize: 256, threads: 1 });
  db.close();
  s = await startTestServer({ home });
  client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "unused-locally", maxRetries: 0 });
  // a knowledge base for kb: models (answered by the default model, "tiny")
  await jsonPost(`${s.url}/api/kbs`, { name: "handbook" });
  const fd = new FormData();
  fd.append(
    "file",
    new Blob([
      "# Leave\n\nEmployees get fifteen days of annual leave per year.\n\n# Office\n\nThe office opens at nine.\n",
    ]),
    "handbook.md",
  );
  await fetch(`${s.url}/api/kbs/handbook/documents`, { method: "POST", body: fd });
  await s.server.context.jobs.idle();
});

afterAll(async () => {
  await s?.stop();
});

async function load(): Promise<{ running: number; queued: number }> {
  const l = await s.server.context.services.models.load("tiny");
  if (!l) throw new Error("tiny is not a local model");
  return l;
}

async function waitFor(cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 1000 && !(await cond()); i++) await new Promise((r) => setTimeout(r, 10));
}

const ask = [{ role: "user" as const, content: "Say something about the office." }];

describe("OpenAI SDK: chat completions", () => {
  it("non-stream: text, finish_reason, usage; identical to the stream at temperature 0", async () => {
    const r = await client.chat.completions.create({ model: "tiny", messages: ask, max_tokens: 24, temperature: 0 });
    expect(r.object).toBe("chat.completion");
    expect(r.model).toBe("tiny");
    expect(r.choices).toHaveLength(1);
    const text = r.choices[0].message.content!;
    expect(r.choices[0].message.role).toBe("assistant");
    expect(["stop", "length"]).toContain(r.choices[0].finish_reason);
    expect(r.usage!.prompt_tokens).toBeGreaterThan(5);
    expect(r.usage!.completion_tokens).toBeGreaterThan(0);
    expect(r.usage!.completion_tokens).toBeLessThanOrEqual(24);
    expect(r.usage!.total_tokens).toBe(r.usage!.prompt_tokens + r.usage!.completion_tokens);

    const stream = await client.chat.completions.create({
      model: "tiny",
      messages: ask,
      max_tokens: 24,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let streamed = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    let chunks = 0;
    for await (const c of stream) {
      chunks++;
      expect(c.object).toBe("chat.completion.chunk");
      if (c.choices[0]?.delta?.content) streamed += c.choices[0].delta.content;
      if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
      if (c.usage) usage = c.usage;
    }
    expect(chunks).toBeGreaterThan(2);
    expect(streamed).toBe(text);
    expect(finish).toBe(r.choices[0].finish_reason);
    expect(usage).toEqual(r.usage);
  });

  it("passes stop sequences and max_tokens through", async () => {
    const base = await client.chat.completions.create({ model: "tiny", messages: ask, max_tokens: 40, temperature: 0 });
    const text = base.choices[0].message.content!;
    // pick a printable character from the middle of the greedy output as the stop sequence
    const i = [...text].findIndex((ch, k) => k >= 3 && /[a-z]/i.test(ch));
    expect(i).toBeGreaterThan(0);
    const stopCh = [...text][i];
    const cut = text.slice(0, text.indexOf(stopCh, [...text].slice(0, 3).join("").length));
    const r = await client.chat.completions.create({
      model: "tiny",
      messages: ask,
      max_tokens: 40,
      temperature: 0,
      stop: [stopCh],
    });
    // A byte-level model can emit half a UTF-8 character just before the stop; an incomplete trailing fragment
    // (U+FFFD) is not part of the contract either way.
    const noFragment = (t: string) => t.replace(/\ufffd+$/, "");
    expect(noFragment(r.choices[0].message.content!)).toBe(noFragment(cut));
    expect(r.choices[0].finish_reason).toBe("stop");
    const short = await client.chat.completions.create({ model: "tiny", messages: ask, max_tokens: 3, temperature: 0 });
    expect(short.usage!.completion_tokens).toBeLessThanOrEqual(3);
    expect(short.choices[0].finish_reason).toBe("length");
  });

  it("response_format json_schema constrains the output to valid JSON", async () => {
    const r = await client.chat.completions.create({
      model: "tiny",
      messages: ask,
      max_tokens: 60,
      temperature: 0,
      response_format: {
        type: "json_schema",
        json_schema: {
          name: "x",
          schema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] },
        },
      },
    });
    const parsed = JSON.parse(r.choices[0].message.content!);
    expect(typeof parsed.ok).toBe("boolean");
  });

  it("lists models: registered ones with context length, and kb:NAME", async () => {
    const list = await client.models.list();
    const ids = list.data.map((m) => m.id);
    expect(ids).toEqual(expect.arrayContaining(["tiny", "tiny-embed", "kb:handbook"]));
    const one = await client.models.retrieve("kb:handbook");
    expect(one.owned_by).toBe("dajian-kb");
  });

  it("embeddings: float and base64 (the SDK's default) agree", async () => {
    const e = await client.embeddings.create({ model: "tiny-embed", input: ["annual leave", "年假"] });
    expect(e.data).toHaveLength(2);
    expect(e.data[0].embedding.length).toBe(64);
    const f = await client.embeddings.create({ model: "tiny-embed", input: "annual leave", encoding_format: "float" });
    expect(f.data[0].embedding).toHaveLength(64);
    f.data[0].embedding.forEach((v, k) => expect(v).toBeCloseTo(e.data[0].embedding[k], 5));
    expect(e.data[0].embedding).not.toEqual(e.data[1].embedding);
  });
});

describe("OpenAI SDK: errors", () => {
  it("unknown model → NotFoundError with OpenAI's shape", async () => {
    const err = await client.chat.completions.create({ model: "nope", messages: ask }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    const e = err as InstanceType<typeof OpenAI.NotFoundError>;
    expect(e.status).toBe(404);
    expect(e.code).toBe("model_not_found");
    expect(e.param).toBe("model");
    expect(e.type).toBe("invalid_request_error");
  });

  it("wrong types → 400 BadRequestError", async () => {
    const err = await client.chat.completions
      .create({ model: "tiny", messages: ask, temperature: "hot" as unknown as number })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as { param: string }).param).toBe("temperature");
  });

  it("a prompt longer than the context → 400 context_length_exceeded (never truncated)", async () => {
    const long = "annual leave policy office ".repeat(400);
    const err = await client.chat.completions
      .create({ model: "tiny", messages: [{ role: "user", content: long }] })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as { code: string }).code).toBe("context_length_exceeded");
    expect((err as Error).message).toMatch(new RegExp(`${CTX} tokens`));
    // prompt that fits, but not with the requested max_tokens
    const err2 = await client.chat.completions.create({ model: "tiny", messages: ask, max_tokens: CTX }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err2 as { code: string }).code).toBe("context_length_exceeded");
  });
});

describe("slots: queue full and disconnects", () => {
  const longReq = { model: "tiny", messages: ask, max_tokens: 900, temperature: 0, stream: true } as const;

  it("queue full → 429 with Retry-After; the slot is free again afterwards", async () => {
    const a = await client.chat.completions.create(longReq); // holds the only slot
    const itA = a[Symbol.asyncIterator]();
    await itA.next();
    const b = jsonPost(`${s.url}/v1/chat/completions`, { ...longReq, max_tokens: 5 }); // waits in the queue
    // wait until b is queued, then c must be refused
    await waitFor(async () => (await load()).queued >= 1);
    expect((await load()).queued).toBe(1);
    const c = await jsonPost(`${s.url}/v1/chat/completions`, { ...longReq, stream: false, max_tokens: 5 });
    expect(c.status).toBe(429);
    expect(Number(c.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    const body = await c.json();
    expect(body.error.type).toBe("rate_limit_error");
    a.controller.abort();
    expect((await b).status).toBe(200);
    await waitFor(async () => (await load()).running === 0 && (await load()).queued === 0);
    expect(await load()).toMatchObject({ running: 0, queued: 0 });
  });

  it("client disconnect mid-stream stops generation and frees the slot", async () => {
    // baseline: left alone, this request generates (nearly) all 900 tokens
    const full = await client.chat.completions.create({ ...longReq, stream: false });
    expect(full.choices[0].finish_reason).toBe("length");
    expect(full.usage!.completion_tokens).toBeGreaterThan(800);
    const db = openHomeDb(s.home);
    const before = db.prepare("SELECT COUNT(*) AS n FROM model_usage").get() as { n: number };
    const ac = new AbortController();
    const res = await jsonPost(`${s.url}/v1/chat/completions`, longReq, { signal: ac.signal });
    const reader = res.body!.getReader();
    await reader.read(); // first bytes arrived: generation is running
    expect((await load()).running).toBe(1);
    ac.abort();
    await waitFor(async () => (await load()).running === 0);
    expect((await load()).running).toBe(0);
    // the generation was cut short: its usage row has far fewer than the 900 tokens asked for
    const count = () => (db.prepare("SELECT COUNT(*) AS n FROM model_usage").get() as { n: number }).n;
    await waitFor(async () => count() > before.n);
    expect(count()).toBe(before.n + 1);
    const rows = db.prepare("SELECT completion_tokens AS c FROM model_usage ORDER BY id DESC LIMIT ?").all(1) as {
      c: number;
    }[];
    expect(rows[0].c).toBeLessThan(full.usage!.completion_tokens);
    db.close();
    // and the slot serves the next request
    const r = await client.chat.completions.create({ model: "tiny", messages: ask, max_tokens: 4 });
    expect(r.choices[0].message.content).toBeTypeOf("string");
  });
});

describe("slots: a client that leaves while queued", () => {
  it("disconnecting while waiting for a slot leaves the queue; the slot holder is unaffected", async () => {
    const holder = await client.chat.completions.create({
      model: "tiny",
      messages: ask,
      max_tokens: 900,
      temperature: 0,
      stream: true,
    });
    const itA = holder[Symbol.asyncIterator]();
    await itA.next(); // holds the only slot
    const ac = new AbortController();
    const waiting = jsonPost(
      `${s.url}/v1/chat/completions`,
      { model: "tiny", messages: ask, max_tokens: 5, stream: true },
      { signal: ac.signal },
    ).catch((e: unknown) => e);
    await waitFor(async () => (await load()).queued === 1);
    expect(await load()).toMatchObject({ running: 1, queued: 1 });
    ac.abort();
    expect(await waiting).toBeInstanceOf(Error);
    await waitFor(async () => (await load()).queued === 0);
    expect(await load()).toMatchObject({ running: 1, queued: 0 });
    expect((await itA.next()).done).toBe(false); // still streaming
    holder.controller.abort();
    await waitFor(async () => (await load()).running === 0);
    expect(await load()).toMatchObject({ running: 0, queued: 0 });
  });
});

describe("LangChain ChatOpenAI", () => {
  it("invoke and stream against the server", async () => {
    const chat = new ChatOpenAI({
      model: "tiny",
      apiKey: "unused-locally",
      configuration: { baseURL: `${s.url}/v1` },
      temperature: 0,
      maxTokens: 16,
      maxRetries: 0,
    });
    const r = await chat.invoke("Say something about the office.");
    expect(typeof r.content).toBe("string");
    expect(r.usage_metadata?.input_tokens).toBeGreaterThan(0);
    let streamed = "";
    for await (const c of await chat.stream("Say something about the office.")) streamed += c.content as string;
    expect(streamed).toBe(r.content);
  });
});

describe("kb:NAME models", () => {
  it("with a generative default model, kb: answers are generated by it (mode, usage, final citations chunk)", async () => {
    const q = [{ role: "user" as const, content: "How many days of annual leave do employees get?" }];
    const r = (await client.chat.completions.create({ model: "kb:handbook", messages: q, max_tokens: 16 })) as any;
    expect(r.dajian.mode).toBe("generative");
    expect(r.usage.prompt_tokens).toBeGreaterThan(20); // the retrieved passages went into the prompt
    expect(Array.isArray(r.citations)).toBe(true);
    const st = await client.chat.completions.create({
      model: "kb:handbook",
      messages: q,
      max_tokens: 16,
      stream: true,
    });
    let final: any;
    for await (const c of st as AsyncIterable<any>) if (c.choices[0]?.finish_reason) final = c;
    expect(final.dajian.mode).toBe("generative");
    expect(Array.isArray(final.citations)).toBe(true);
  });

  it("unknown knowledge base → 404", async () => {
    const err = await client.chat.completions.create({ model: "kb:nope", messages: ask }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
  });
});

describe("metrics of the local models", () => {
  it("/metrics on the ops port counts the llama.cpp decode batches the generations used", async () => {
    const ops = (await s.server.listenOps({ port: 0 })).url;
    const read = async (): Promise<Record<string, number>> => {
      const text = await (await fetch(`${ops}/metrics`)).text();
      return Object.fromEntries(
        [...text.matchAll(/^(dajian_(?:local|llama)_\w+) (\d+)$/gm)].map((m) => [m[1], Number(m[2])]),
      );
    };
    const before = await read();
    const r = await client.chat.completions.create({ model: "tiny", messages: ask, max_tokens: 8, temperature: 0 });
    expect(r.usage?.completion_tokens).toBeGreaterThan(0);
    const after = await read();
    expect(after.dajian_local_models_loaded).toBeGreaterThanOrEqual(1);
    // one batch per generated token at least (the prompt's batch besides), each carrying this one sequence
    const batches = after.dajian_llama_decode_batches_total - (before.dajian_llama_decode_batches_total ?? 0);
    expect(batches).toBeGreaterThanOrEqual(r.usage?.completion_tokens ?? 1);
    const steps = after.dajian_llama_batch_sequence_steps_total - (before.dajian_llama_batch_sequence_steps_total ?? 0);
    expect(steps).toBeGreaterThanOrEqual(batches);
    expect(await (await fetch(`${ops}/metrics`)).text()).toMatch(/# TYPE dajian_llama_decode_batches_total counter/);
  });
});
