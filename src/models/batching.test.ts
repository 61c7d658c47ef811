// The step batcher on its own: the prioritisation strategy waits (boundedly) for every generating sequence, shares
// batch slots fairly, releases a burst of arrivals together, and wakes readers after a batch is cut.
import type { BatchItem } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import { shareBatch, StepBatcher } from "./batching.js";

const item = (n: number, evaluationPriority = 5): BatchItem => ({
  tokens: Array.from({ length: n }, (_, i) => i) as unknown as BatchItem["tokens"],
  logits: [],
  evaluationPriority: evaluationPriority as BatchItem["evaluationPriority"],
});
const turn = () => new Promise<void>((r) => setImmediate(r));

describe("StepBatcher strategy", () => {
  it("cuts no batch while a generating sequence has not queued its step, up to a bound", () => {
    const b = new StepBatcher(3);
    b.begin();
    b.begin();
    const one = [item(1)];
    expect(b.strategy({ items: one, size: 512 })).toEqual([]);
    expect(b.strategy({ items: one, size: 512 })).toEqual([]);
    expect(b.strategy({ items: one, size: 512 })).toEqual([]);
    // Bound reached: the step goes ahead without the late sequence.
    expect(b.strategy({ items: one, size: 512 })).toHaveLength(1);
    // Both queued: cut at once.
    expect(b.strategy({ items: [item(1), item(1)], size: 512 })).toHaveLength(2);
    expect(b.stats).toEqual({ batches: 2, items: 3, waits: 3 });
    b.end();
    expect(b.strategy({ items: one, size: 512 })).toHaveLength(1);
  });

  it("shares the batch fairly, higher priority first, and never drops a one-token step", () => {
    const a = item(300);
    const c = item(1);
    const d = item(300, 9);
    const out = shareBatch([a, c, d], 100);
    const amount = new Map(out.map((p) => [p.item, p.processAmount]));
    expect(out[0].item).toBe(d);
    expect(amount.get(c)).toBe(1);
    expect(amount.get(a)! + amount.get(d)!).toBe(99);
    expect(Math.abs(amount.get(a)! - amount.get(d)!)).toBeLessThanOrEqual(1);
    const small = shareBatch([item(3), item(4)], 512);
    expect(small.map((p) => p.processAmount)).toEqual([3, 4]);
  });
});

describe("StepBatcher arrivals and readers", () => {
  it("releases requests that arrive together on an idle context in one turn", async () => {
    const b = new StepBatcher(64, 2, 50);
    const released: number[] = [];
    const all = [0, 1, 2].map((i) => b.admit(true).then(() => released.push(i)));
    await all[0];
    // Released by one timer callback: the others resolve in the same turn's microtasks, before any new turn.
    await Promise.resolve();
    expect(released.sort()).toEqual([0, 1, 2]);
    await Promise.all(all);
  });

  it("does not wait when sequences are generating or no other request could join", async () => {
    const b = new StepBatcher();
    let done = false;
    void b.admit(false).then(() => (done = true));
    await Promise.resolve();
    expect(done).toBe(true);
    b.begin();
    done = false;
    void b.admit(true).then(() => (done = true));
    await Promise.resolve();
    expect(done).toBe(true);
  });

  it("wakes readers after the next batch is cut, or when nothing is generating any more", async () => {
    const b = new StepBatcher();
    b.begin();
    let woken = 0;
    b.afterNextCut(() => woken++);
    await turn();
    expect(woken).toBe(0); // no batch cut yet
    b.strategy({ items: [item(1)], size: 512 });
    expect(woken).toBe(0); // not inside node-llama-cpp's dispatch
    await turn();
    expect(woken).toBe(1);
    b.afterNextCut(() => woken++);
    b.end();
    await turn();
    expect(woken).toBe(2);
  });
});
