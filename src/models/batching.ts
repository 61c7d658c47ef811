// Decode-step batching for a context with several parallel sequences (one per request slot), so that N requests
// cost one llama_decode per step, as when node-llama-cpp is called with all N at once.
// 1. Whole steps. node-llama-cpp keeps decoding while anything is queued: when a batch is done it decodes at once
//    what has been queued meanwhile. The sequences of that batch re-queue from promise continuations as their
//    samples come back, so the one sampled last usually misses the next batch and the split repeats every step
//    (measured with 4 requests: 84 batches of 3 for 63 steps instead of 63 of 4; every batch reads all weights).
//    The prioritisation strategy below returns an empty batch while fewer items are queued than sequences are
//    generating; node-llama-cpp then loops again after a few microtasks, in which the late continuations queue
//    their item. Bounded by a count of empty rounds, not a clock, so load on the machine cannot change the outcome:
//    a sequence that stopped never re-queues and costs one short run of microtasks.
// 2. Prompts of a burst together. Requests sent at once reach the model a fraction of a millisecond apart (HTTP
//    parsing, auth, counting); the first prompt would be decoded alone and the others would wait for it. When the
//    context is idle, a request waits for a short quiet gap in arrivals (capped) so the burst's prompts share batches.
//    When sequences are already generating nobody waits: a newcomer joins the next step.
// 3. Readers off the critical path. Token consumers (SSE writers) are woken right after the next batch is handed
//    to llama.cpp, so their writes overlap the decode instead of delaying it.
import type { BatchItem, CustomBatchingPrioritizationStrategy, PrioritizedBatchItem } from "node-llama-cpp";

/** Empty rounds allowed while waiting for the rest of a step; each is a handful of microtasks (~µs). */
const MAX_EMPTY_ROUNDS = 64;
/** Arrival window on an idle context: closes after this quiet gap... */
const ARRIVAL_GAP_MS = 2;
/** ...or this long after it opened, whichever comes first. */
const ARRIVAL_MAX_MS = 10;

export interface BatchStats {
  /** Decode batches cut (each is one llama_decode call over all its items). */
  batches: number;
  /** Items (sequence evaluations) over all batches: items / batches is the mean parallelism. */
  items: number;
  /** Rounds that waited for a late sequence instead of cutting a batch. */
  waits: number;
}

interface ArrivalWindow {
  release: (() => void)[];
  opened: number;
  timer: NodeJS.Timeout;
}

export class StepBatcher {
  readonly stats: BatchStats = { batches: 0, items: 0, waits: 0 };
  private emptyRounds = 0;
  /** Sequences generating now: each queues one item per step. */
  private running = 0;
  private window?: ArrivalWindow;
  private afterCut: (() => void)[] = [];
  private readonly flushAfterCut = () => {
    const fns = this.afterCut;
    this.afterCut = [];
    for (const f of fns) f();
  };

  constructor(
    private readonly maxEmptyRounds = MAX_EMPTY_ROUNDS,
    private readonly arrivalGapMs = ARRIVAL_GAP_MS,
    private readonly arrivalMaxMs = ARRIVAL_MAX_MS,
  ) {}

  /**
   * Call before a request starts generating. On an idle context, when other requests could still take a free slot,
   * resolves once arrivals pause (≤ arrivalMaxMs); otherwise resolves at once.
   */
  admit(othersCanJoin: boolean): Promise<void> {
    if (this.running > 0 || (!othersCanJoin && !this.window)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const now = performance.now();
      const w = (this.window ??= { release: [], opened: now, timer: undefined as unknown as NodeJS.Timeout });
      w.release.push(resolve);
      clearTimeout(w.timer);
      const wait = othersCanJoin ? Math.min(this.arrivalGapMs, w.opened + this.arrivalMaxMs - now) : 0;
      w.timer = setTimeout(() => this.closeWindow(w), Math.max(0, wait));
    });
  }

  private closeWindow(w: ArrivalWindow): void {
    if (this.window === w) this.window = undefined;
    // Released in one turn: their prompts are queued before node-llama-cpp dispatches the next batch.
    for (const r of w.release) r();
  }

  /** A sequence starts generating (call before its first evaluation is queued). */
  begin(): void {
    this.running++;
  }

  /** A sequence has stopped generating (it queues no more items). */
  end(): void {
    // Nothing generating: no batch will come to wake the readers still waiting for one.
    if (--this.running === 0 && this.afterCut.length) setImmediate(this.flushAfterCut);
  }

  /** Run `fn` once the next batch has been handed to llama.cpp (it then decodes on its own thread). */
  afterNextCut(fn: () => void): void {
    this.afterCut.push(fn);
  }

  readonly strategy: CustomBatchingPrioritizationStrategy = ({ items, size }) => {
    if (items.length < this.running && this.emptyRounds < this.maxEmptyRounds) {
      this.emptyRounds++;
      this.stats.waits++;
      return [];
    }
    this.emptyRounds = 0;
    const out = shareBatch(items, size);
    this.stats.batches++;
    this.stats.items += out.length;
    // The strategy runs just before node-llama-cpp starts the decode; by the check phase it is running.
    if (this.afterCut.length) setImmediate(this.flushAfterCut);
    return out;
  };
}

/** Split `size` batch slots fairly: every item an equal share, what a short item leaves goes to the others; higher
 * evaluation priority first. A one-token generation step always gets its token. */
export function shareBatch(items: readonly BatchItem[], size: number): PrioritizedBatchItem[] {
  const out = [...items]
    .sort((a, b) => b.evaluationPriority - a.evaluationPriority)
    .map((item) => ({ item, processAmount: 0 }));
  let left = size;
  let open = out.filter((p) => p.item.tokens.length > 0);
  while (left > 0 && open.length) {
    const each = Math.max(1, Math.floor(left / open.length));
    for (const p of open) {
      const add = Math.min(each, p.item.tokens.length - p.processAmount, left);
      p.processAmount += add;
      left -= add;
      if (left === 0) break;
    }
    open = open.filter((p) => p.processAmount < p.item.tokens.length);
  }
  return out.filter((p) => p.processAmount > 0);
}
