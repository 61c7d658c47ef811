// Parallel requests on one local model share decode batches: N concurrent generations cost one llama_decode per
// step (counted by the model's batcher, so no timing is involved), as when node-llama-cpp is given all N at once.
// Plain node-llama-cpp splits such steps (the last-sampled sequence misses the batch): 4 requests of 16 tokens
// then take ~20 batches instead of 16.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeTinyLlamaGguf } from "../train/tiny-model.js";
import { LocalChatModel } from "./local.js";
import type { ChatMessage } from "./types.js";

let dir: string;
let m: LocalChatModel;
const N = 4;
const MAX = 16;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dajian-batching-"));
  const path = join(dir, "tiny.gguf");
  writeTinyLlamaGguf(path, { seed: 11, contextLength: 512 });
  m = await LocalChatModel.load("tiny", { kind: "local", path, sequences: N, threads: 1, contextSize: 512 });
});
afterAll(async () => {
  await m?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function run(messages: ChatMessage[]) {
  let deltas = 0;
  let text = "";
  for await (const c of m.stream(messages, { maxTokens: MAX, temperature: 0 }))
    if (c.type === "delta") deltas++;
    else text = c.result.text + `|${c.result.usage.completionTokens}`;
  return { deltas, text };
}

describe("local model batching", () => {
  it("decodes concurrent requests in one batch per step, with the same output as one at a time", async () => {
    const msgs = (i: number): ChatMessage[] => [{ role: "user", content: `note number ${i} about office hours` }];
    const alone = [];
    for (let i = 0; i < N; i++) alone.push(await run(msgs(i)));
    const before = m.batching;
    const together = await Promise.all(Array.from({ length: N }, (_, i) => run(msgs(i))));
    const after = m.batching;
    expect(together.map((r) => r.text)).toEqual(alone.map((r) => r.text));
    const tokens = together.map((r) => Number(r.text.split("|").pop()));
    const batches = after.batches - before.batches;
    const items = after.items - before.items;
    // One batch for the prompts, then one per generated token of the longest request.
    expect(batches).toBeLessThanOrEqual(Math.max(...tokens));
    // Every sequence evaluation went somewhere: N prompts + one step per further token.
    expect(items).toBe(N + tokens.reduce((s, t) => s + t - 1, 0));
    expect(items / batches).toBeGreaterThan(N - 1);
  });

  it("keeps the slot count honest after the burst (every generation ended)", async () => {
    expect(m.load.running).toBe(0);
    const r = await run([{ role: "user", content: "hello" }]);
    expect(r.deltas).toBeGreaterThan(0);
  });
});
