// The token channel between node-llama-cpp's callbacks and a consumer: order kept, consecutive deltas merged, the
// consumer woken only after the event loop has turned twice (so the next decode step is dispatched first) or through
// the model's gate (after the next batch is cut; at once at the end), errors
// delivered after what came before them. And the thread default never oversubscribes the machine.
import { availableParallelism } from "node:os";
import { describe, expect, it } from "vitest";
import { Channel, defaultLocalThreads } from "./local.js";

type Item = { type: "delta"; text: string } | { type: "done"; n: number };

async function drain(ch: Channel<Item>): Promise<Item[]> {
  const out: Item[] = [];
  for await (const x of ch) out.push(x);
  return out;
}

describe("Channel", () => {
  it("merges deltas that pile up, keeps order, and ends", async () => {
    const ch = new Channel<Item>();
    const got = drain(ch);
    ch.push({ type: "delta", text: "He" });
    ch.push({ type: "delta", text: "llo" });
    ch.push({ type: "done", n: 2 });
    ch.push({ type: "delta", text: "!" });
    ch.end();
    expect(await got).toEqual([
      { type: "delta", text: "Hello" },
      { type: "done", n: 2 },
      { type: "delta", text: "!" },
    ]);
  });

  it("wakes the consumer only after two event-loop turns, not in the pusher's microtasks", async () => {
    const ch = new Channel<Item>();
    const seen: string[] = [];
    const it = ch[Symbol.asyncIterator]();
    const first = it.next().then(() => seen.push("consumer"));
    await new Promise((r) => setImmediate(r)); // the consumer is now waiting
    ch.push({ type: "delta", text: "a" });
    setImmediate(() => seen.push("dispatch")); // what node-llama-cpp queues right after our callback
    await Promise.resolve();
    await Promise.resolve();
    expect(seen).toEqual([]);
    await first;
    expect(seen).toEqual(["dispatch", "consumer"]);
  });

  it("wakes through its gate (the batcher: after the next batch is cut), but at its end without it", async () => {
    const gated: (() => void)[] = [];
    const ch = new Channel<Item>((fire) => gated.push(fire));
    const got: Item[] = [];
    const done = (async () => {
      for await (const x of ch) got.push(x);
    })();
    await new Promise((r) => setImmediate(r));
    ch.push({ type: "delta", text: "a" });
    ch.push({ type: "delta", text: "b" });
    await new Promise((r) => setImmediate(r));
    expect(got).toEqual([]); // no batch cut yet: the reader sleeps
    expect(gated).toHaveLength(1); // one wake-up requested, not one per token
    gated.shift()!();
    await new Promise((r) => setImmediate(r));
    expect(got).toEqual([{ type: "delta", text: "ab" }]);
    ch.push({ type: "delta", text: "c" });
    ch.end(); // the last token: no further batch will come, so the end must not wait for the gate
    await done;
    expect(got).toEqual([
      { type: "delta", text: "ab" },
      { type: "delta", text: "c" },
    ]);
  });

  it("delivers an error after the items pushed before it", async () => {
    const ch = new Channel<Item>();
    ch.push({ type: "delta", text: "partial" });
    ch.end(new Error("boom"));
    const out: Item[] = [];
    await expect(
      (async () => {
        for await (const x of ch) out.push(x);
      })(),
    ).rejects.toThrow("boom");
    expect(out).toEqual([{ type: "delta", text: "partial" }]);
  });
});

describe("defaultLocalThreads", () => {
  it("leaves a core to the JS thread, is at least 1, and never exceeds the math cores", () => {
    const cores = availableParallelism();
    expect(defaultLocalThreads()).toBe(Math.max(1, cores - 1));
    expect(defaultLocalThreads(1)).toBe(1);
    expect(defaultLocalThreads(cores + 8)).toBe(Math.max(1, cores - 1));
  });
});
