// The local provider on real llama.cpp (node-llama-cpp) with a tiny llama GGUF that dajian writes itself:
// template from the GGUF, streaming, limits, stop sequences, JSON schema, the slot queue (429 when full), aborts
// freeing slots, embeddings and a LoRA adapter attached to the model entry.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isDajianError } from "../core/errors.js";
import { GgmlType, GgufWriter } from "../gguf/index.js";
import { Rng } from "../train/rng.js";
import { writeLlamaGguf } from "../train/llama-gguf.js";
import { tinyWeights, writeTinyLlamaGguf } from "../train/tiny-model.js";
import { LocalChatModel } from "./local.js";
import type { ChatChunk, ChatMessage } from "./types.js";

let dir: string;
let path: string;
let m: LocalChatModel;
const hi: ChatMessage[] = [{ role: "user", content: "hello there" }];

/** A LoRA adapter for the tiny model's attention Q/V, in llama.cpp's adapter GGUF layout. */
function writeAdapter(file: string, dim: number, layers: number, rank = 4): void {
  const w = new GgufWriter();
  w.str("general.architecture", "llama")
    .str("general.type", "adapter")
    .str("adapter.type", "lora")
    .f32("adapter.lora.alpha", rank);
  const rng = new Rng(9);
  const rand = (n: number, s: number) => Float32Array.from({ length: n }, () => rng.normal() * s);
  for (let l = 0; l < layers; l++)
    for (const t of ["attn_q", "attn_output"]) {
      w.addTensor(`blk.${l}.${t}.weight.lora_a`, [dim, rank], rand(dim * rank, 0.5), GgmlType.F32);
      w.addTensor(`blk.${l}.${t}.weight.lora_b`, [rank, dim], rand(rank * dim, 0.5), GgmlType.F32);
    }
  w.write(file);
}

async function collect(it: AsyncIterable<ChatChunk>) {
  const deltas: string[] = [];
  let result: any;
  for await (const c of it)
    if (c.type === "delta") deltas.push(c.text);
    else result = c.result;
  return { deltas, result };
}

async function until(cond: () => boolean, ms = 20_000) {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, 10));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dajian-local-"));
  path = join(dir, "tiny.gguf");
  writeTinyLlamaGguf(path, { seed: 11, contextLength: 512 });
  m = await LocalChatModel.load("tiny", {
    kind: "local",
    path,
    sequences: 2,
    maxQueue: 1,
    threads: 1,
    contextSize: 512,
  });
});
afterAll(async () => {
  await m?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe("local GGUF model (node-llama-cpp)", () => {
  it("loads with the GGUF's own chat template and reports its backend", async () => {
    expect(["cpu", "cuda", "vulkan", "metal"]).toContain(m.backend);
    expect(m.contextSize).toBeGreaterThanOrEqual(512);
    const p = m.renderPrompt([{ role: "system", content: "S" }, ...hi]);
    expect(p).toContain("<|im_start|>system\nS<|im_end|>");
    expect(p).toContain("<|im_start|>user\nhello there<|im_end|>");
    expect(p.endsWith("<|im_start|>assistant\n")).toBe(true);
    const n = await m.countChatTokens(hi);
    expect(n).toBeGreaterThan(await m.countTokens("hello there"));
  });

  it("renders a custom Jinja chat template from the GGUF (no built-in wrapper matches it)", async () => {
    const { config, vocab } = writeTinyLlamaGguf(join(dir, "base.gguf"), { seed: 4 });
    const template =
      "{% for m in messages %}### {{ m['role'] | upper }}:\n{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}### ASSISTANT:\n{% endif %}";
    const custom = join(dir, "custom-template.gguf");
    const w = tinyWeights(config, 4);
    writeLlamaGguf(custom, config, { ...vocab, chatTemplate: template }, (n) => w.get(n)!);
    const cm = await LocalChatModel.load("custom", { kind: "local", path: custom, threads: 1 });
    try {
      expect(cm.chatTemplate).toMatch(/jinja/i);
      const p = cm.renderPrompt([{ role: "system", content: "Be brief." }, ...hi]);
      expect(p).toContain("### SYSTEM:\nBe brief.\n### USER:\nhello there\n");
      expect(p.endsWith("### ASSISTANT:\n")).toBe(true);
      const r = await cm.chat(hi, { maxTokens: 4 });
      expect(r.usage.promptTokens).toBe(await cm.countChatTokens(hi));
    } finally {
      await cm.dispose();
    }
  });

  it("streams deltas whose concatenation is the result; maxTokens limits with finishReason length", async () => {
    const { deltas, result } = await collect(m.stream(hi, { maxTokens: 12 }));
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join("")).toBe(result.text);
    expect(result.finishReason).toBe("length");
    expect(result.usage.completionTokens).toBe(12);
    expect(result.usage.promptTokens).toBe(await m.countChatTokens(hi));
  });

  it("is reproducible with a seed and stops at a stop sequence", async () => {
    const a = await m.chat(hi, { maxTokens: 24, temperature: 0.9, seed: 42 });
    const b = await m.chat(hi, { maxTokens: 24, temperature: 0.9, seed: 42 });
    expect(a.text).toBe(b.text);
    const greedy = await m.chat(hi, { maxTokens: 40 });
    const match = /[A-Za-z]{2}/.exec(greedy.text.slice(3));
    expect(match, `no ASCII pair in ${JSON.stringify(greedy.text)}`).not.toBeNull();
    const stop = match![0];
    const stopped = await m.chat(hi, { maxTokens: 40, stop: [stop] });
    expect(stopped.finishReason).toBe("stop");
    expect(stopped.text).toBe(greedy.text.slice(0, greedy.text.indexOf(stop)));
  });

  it("constrains output to a JSON schema", async () => {
    const schema = {
      type: "object",
      properties: { answer: { enum: ["yes", "no"] }, n: { type: "integer" } },
      required: ["answer", "n"],
    };
    const r = await m.chat(hi, { jsonSchema: schema, maxTokens: 60, temperature: 0.8, seed: 1 });
    const parsed = JSON.parse(r.text);
    expect(["yes", "no"]).toContain(parsed.answer);
    expect(Number.isInteger(parsed.n)).toBe(true);
  });

  it("rejects a prompt longer than the context instead of truncating it", async () => {
    const long = Array.from({ length: 400 }, (_, i) => `word${i}`).join(" ");
    const err = await m.chat([{ role: "user", content: long }]).catch((e) => e);
    expect(isDajianError(err, "invalid_input")).toBe(true);
    expect(err.message).toMatch(/tokens but model "tiny" has a \d+-token context/);
  });

  it("queues beyond its slots, answers 429 with Retry-After when the queue is full, and aborts free slots", async () => {
    const acs = [new AbortController(), new AbortController(), new AbortController()];
    const its = acs.map((ac) => m.stream(hi, { maxTokens: 400, signal: ac.signal })[Symbol.asyncIterator]());
    const firsts = its.map((it) => it.next());
    await until(() => m.load.running === 2 && m.load.queued === 1);
    const err = await m.chat(hi, { maxTokens: 4 }).catch((e) => e);
    expect(isDajianError(err, "rate_limited")).toBe(true);
    expect(err.status).toBe(429);
    expect(err.retryAfter).toBeGreaterThanOrEqual(1);

    // Abort the queued request: it leaves the queue without ever taking a slot.
    acs[2].abort();
    const q = await firsts[2];
    expect(q.value).toMatchObject({ type: "done", result: { finishReason: "abort", usage: { completionTokens: 0 } } });
    expect(m.load.queued).toBe(0);

    // Abort a running one: its stream ends with "abort" and the slot is free for the next caller.
    await firsts[0];
    acs[0].abort();
    let last: any;
    for (let r = await its[0].next(); !r.done; r = await its[0].next()) last = r.value;
    expect(last.type).toBe("done");
    expect(last.result.finishReason).toBe("abort");
    expect(last.result.usage.completionTokens).toBeLessThan(400);
    expect(m.load.running).toBe(1);
    const quick = await m.chat(hi, { maxTokens: 3 });
    expect(quick.usage.completionTokens).toBe(3);

    // A consumer that stops reading early also frees its slot.
    await firsts[1];
    await its[1].return?.(undefined);
    await until(() => m.load.running === 0);
    expect(m.load).toMatchObject({ running: 0, queued: 0 });
  });

  it("starts every request from an empty sequence (no state carried between callers)", async () => {
    const a = await m.chat(hi, { maxTokens: 10 });
    await m.chat([{ role: "user", content: "something else entirely" }], { maxTokens: 10 });
    const b = await m.chat(hi, { maxTokens: 10 });
    expect(b.text).toBe(a.text);
  });

  it("makes embeddings", async () => {
    const [a, b, a2] = await m.embed(["the quick brown fox", "北京是中国的首都", "the quick brown fox"]);
    expect(a.length).toBe(64);
    expect(a.every(Number.isFinite)).toBe(true);
    expect(a.some((x) => x !== 0)).toBe(true);
    expect([...a2]).toEqual([...a]);
    expect([...b]).not.toEqual([...a]);
  });

  it("applies a LoRA adapter attached to the model entry", async () => {
    const adapter = join(dir, "adapter.gguf");
    writeAdapter(adapter, 64, 2);
    const tuned = await LocalChatModel.load("tiny+lora", {
      kind: "local",
      path,
      threads: 1,
      contextSize: 512,
      adapters: [{ path: adapter, scale: 1 }],
    });
    try {
      const base = await m.chat(hi, { maxTokens: 16 });
      const withLora = await tuned.chat(hi, { maxTokens: 16 });
      expect(withLora.text).not.toBe(base.text);
    } finally {
      await tuned.dispose();
    }
    const notAdapter = await LocalChatModel.load("x", { kind: "local", path, adapters: [{ path, scale: 1 }] }).catch(
      (e) => e,
    );
    expect(isDajianError(notAdapter, "invalid_input")).toBe(true);
  });
});
