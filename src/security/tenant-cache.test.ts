// Checklist item 8 of serve-anchors.md §3 (tenant-isolated KV / prefix cache; vLLM CVE-2025-25183): one caller's
// cached prompt state must never be served to another. On real llama.cpp (node-llama-cpp) with a tiny GGUF that
// dajian writes itself, one sequence slot shared by two callers: after a request the slot holds no tokens, the next
// caller's prompt — even one sharing the first caller's long prefix, which is exactly what a prefix cache would reuse
// — is evaluated in full, and its greedy answer is the same as on a freshly loaded model.
// (Conversation state is covered in src/server/authz.test.ts: another principal's conversation cannot be continued.)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LlamaContextSequence } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalChatModel } from "../models/local.js";
import type { ChatMessage } from "../models/types.js";
import { writeTinyLlamaGguf } from "../train/tiny-model.js";

let dir: string;
let path: string;
let model: LocalChatModel;

const load = () =>
  LocalChatModel.load("tiny", { kind: "local", path, sequences: 1, maxQueue: 4, threads: 1, contextSize: 512 });
const slot = (m: LocalChatModel) => (m as unknown as { sequences: LlamaContextSequence[] }).sequences[0];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dj-tenant-cache-"));
  path = join(dir, "tiny.gguf");
  writeTinyLlamaGguf(path, { seed: 23, contextLength: 512 });
  model = await load();
}, 60_000);

afterAll(async () => {
  await model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const PREFIX = "Internal memo for alice only. The merger code word is OSPREY-7731. " + "Context line. ".repeat(20);
const alice: ChatMessage[] = [{ role: "user", content: `${PREFIX} What is the code word?` }];
const bob: ChatMessage[] = [{ role: "user", content: `${PREFIX} Say hello.` }];

describe("tenant-isolated KV cache (checklist 8)", () => {
  it("a slot keeps no tokens after a request; the next caller's shared prefix is evaluated again, not reused", async () => {
    const seq = slot(model);
    await model.chat(alice, { maxTokens: 8, temperature: 0 });
    expect(seq.contextTokens.length, "alice's tokens are still in the slot's KV cache").toBe(0);

    const before = seq.tokenMeter.getState();
    const r = await model.chat(bob, { maxTokens: 8, temperature: 0 });
    const evaluated = seq.tokenMeter.diff(before).usedInputTokens;
    // every one of bob's prompt tokens went through the model: none came from alice's cached prefix
    expect(r.usage.promptTokens).toBe(await model.countChatTokens(bob));
    // (node-llama-cpp meters the last prompt token with the first sampling step; a reused ~240-token prefix would
    // leave only the ~10-token question here)
    expect(evaluated).toBeGreaterThanOrEqual(r.usage.promptTokens - 1);
    expect(seq.contextTokens.length).toBe(0);
  });

  it("the next caller's greedy answer equals the answer of a freshly loaded model (no state carried over)", async () => {
    await model.chat(alice, { maxTokens: 8, temperature: 0 });
    const m0 = slot(model).tokenMeter.getState();
    const after = await model.chat(bob, { maxTokens: 12, temperature: 0 });
    const evaluatedAfter = slot(model).tokenMeter.diff(m0).usedInputTokens;
    const fresh = await load();
    try {
      const f0 = slot(fresh).tokenMeter.getState();
      const clean = await fresh.chat(bob, { maxTokens: 12, temperature: 0 });
      expect(after.text).toBe(clean.text);
      expect(after.usage).toEqual(clean.usage);
      expect(evaluatedAfter).toBe(slot(fresh).tokenMeter.diff(f0).usedInputTokens);
    } finally {
      await fresh.dispose();
    }
  });
});
