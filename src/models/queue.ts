// A fixed number of slots (parallel sequences) plus a bounded wait queue. When both are full a request is
// refused at once with a 429-mapped error carrying Retry-After, instead of piling up unbounded work.
import { DajianError } from "../core/errors.js";

interface Waiter {
  resolve: (slot: number) => void;
  reject: (err: unknown) => void;
  cleanup: () => void;
}

export class SlotQueue {
  private readonly free: number[];
  private readonly waiters: Waiter[] = [];
  /** Moving average of how long a slot is held, for a useful Retry-After. */
  private avgHoldMs = 2000;

  constructor(
    readonly slots: number,
    readonly maxQueue: number,
    private readonly label: string,
  ) {
    this.free = Array.from({ length: slots }, (_, i) => i);
  }

  get running(): number {
    return this.slots - this.free.length;
  }

  get queued(): number {
    return this.waiters.length;
  }

  retryAfterSeconds(): number {
    const rounds = Math.ceil((this.waiters.length + 1) / this.slots);
    return Math.max(1, Math.ceil((rounds * this.avgHoldMs) / 1000));
  }

  /** Wait for a slot; abort while waiting leaves the queue without taking one. */
  acquire(signal?: AbortSignal): Promise<number> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const slot = this.free.pop();
    if (slot !== undefined) return Promise.resolve(slot);
    if (this.waiters.length >= this.maxQueue) {
      const retryAfter = this.retryAfterSeconds();
      return Promise.reject(
        new DajianError(
          "rate_limited",
          `${this.label} is busy: ${this.slots} running, ${this.waiters.length} queued`,
          `retry after ${retryAfter}s, or raise the model's sequences/maxQueue`,
          { retryAfter },
        ),
      );
    }
    return new Promise<number>((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(abortError(signal!));
      };
      const w: Waiter = { resolve, reject, cleanup: () => signal?.removeEventListener("abort", onAbort) };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(w);
    });
  }

  release(slot: number, heldMs?: number): void {
    if (heldMs !== undefined) this.avgHoldMs = this.avgHoldMs * 0.8 + heldMs * 0.2;
    const w = this.waiters.shift();
    if (w) {
      w.cleanup();
      w.resolve(slot);
    } else this.free.push(slot);
  }

  /** Fail everyone waiting (model unloading). */
  rejectAll(err: unknown): void {
    for (const w of this.waiters.splice(0)) {
      w.cleanup();
      w.reject(err);
    }
  }
}

export function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("aborted", "AbortError");
}
