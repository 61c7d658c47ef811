// Byte-level BPE training. Words come from the same pre-tokenizer llama.cpp will use at inference, so merges never
// cross a boundary llama.cpp would split on; pair counts are updated incrementally and the best pair is kept in a
// lazy max-heap, so training cost grows with the words a merge touches, not with the whole corpus.

import { DajianError } from "../core/errors.js";
import { byteChar, textToVocabString } from "./bytes.js";
import { canonicalPre, preTokenize } from "./pretokenize.js";
import { CHATML_TEMPLATE, TokenType, type BpeVocab } from "./vocab.js";

export const DEFAULT_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

export interface TrainBpeOptions {
  /** Total tokens including the 256 byte tokens and the special tokens. */
  vocabSize: number;
  /** Pre-tokenizer (a name llama.cpp knows). Default "qwen2": digits split, CJK runs kept together. */
  pre?: string;
  /** Control tokens appended after the learned ones. Default <|endoftext|>, <|im_start|>, <|im_end|>. */
  specialTokens?: string[];
  /** Stop early when the best pair occurs fewer times than this. Default 2. */
  minFrequency?: number;
  /** Skip pre-tokens longer than this many bytes (runs of symbols, base64 …). Default 64. */
  maxWordBytes?: number;
  chatTemplate?: string;
  onProgress?: (merges: number, target: number) => void;
}

/** Binary max-heap of (count, a, b); stale entries are skipped on pop. */
class PairHeap {
  private c: number[] = [];
  private a: number[] = [];
  private b: number[] = [];
  get size(): number {
    return this.c.length;
  }
  private better(i: number, j: number): boolean {
    if (this.c[i] !== this.c[j]) return this.c[i] > this.c[j];
    if (this.a[i] !== this.a[j]) return this.a[i] < this.a[j];
    return this.b[i] < this.b[j];
  }
  private swap(i: number, j: number): void {
    [this.c[i], this.c[j]] = [this.c[j], this.c[i]];
    [this.a[i], this.a[j]] = [this.a[j], this.a[i]];
    [this.b[i], this.b[j]] = [this.b[j], this.b[i]];
  }
  push(c: number, a: number, b: number): void {
    this.c.push(c);
    this.a.push(a);
    this.b.push(b);
    let i = this.c.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.better(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): [number, number, number] {
    const top: [number, number, number] = [this.c[0], this.a[0], this.b[0]];
    const last = this.c.length - 1;
    this.swap(0, last);
    this.c.pop();
    this.a.pop();
    this.b.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.c.length && this.better(l, m)) m = l;
      if (r < this.c.length && this.better(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
    return top;
  }
}

const KEY = 1 << 21; // symbol ids stay below 2^21, so a*KEY+b is an exact integer key
const key = (a: number, b: number): number => a * KEY + b;

/** Learn a byte-level BPE vocabulary from texts. */
export function trainBpe(texts: Iterable<string>, opts: TrainBpeOptions): BpeVocab {
  const pre = canonicalPre(opts.pre ?? "qwen2");
  const specials = opts.specialTokens ?? DEFAULT_SPECIAL_TOKENS;
  const minFreq = opts.minFrequency ?? 2;
  const maxWord = opts.maxWordBytes ?? 64;
  const target = opts.vocabSize - 256 - specials.length;
  if (!Number.isInteger(opts.vocabSize) || target < 0 || opts.vocabSize >= KEY) {
    throw new DajianError(
      "invalid_input",
      `vocabulary size ${opts.vocabSize} is too small or too large`,
      `use at least ${256 + specials.length} (256 bytes + special tokens) and below ${KEY}`,
    );
  }

  // 1. Count words.
  const wordCounts = new Map<string, number>();
  for (const text of texts) {
    for (const w of preTokenize(text, pre)) {
      const m = textToVocabString(w);
      if (m.length > maxWord) continue;
      wordCounts.set(m, (wordCounts.get(m) ?? 0) + 1);
    }
  }

  // 2. Symbols and words as id arrays.
  const symText: string[] = [];
  const symId = new Map<string, number>();
  for (let b = 0; b < 256; b++) {
    symText.push(byteChar(b));
    symId.set(byteChar(b), b);
  }
  const words: number[][] = [];
  const counts: number[] = [];
  for (const [w, c] of wordCounts) {
    words.push(Array.from(w, (ch) => symId.get(ch) as number));
    counts.push(c);
  }

  // 3. Pair statistics.
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  /** Add sign·count of every adjacent pair of word wi into `into`; with sign > 0 also index the word. */
  const addWord = (wi: number, sign: number, into: Map<number, number>): void => {
    const w = words[wi];
    for (let i = 0; i < w.length - 1; i++) {
      const k = key(w[i], w[i + 1]);
      into.set(k, (into.get(k) ?? 0) + sign * counts[wi]);
      if (sign > 0) {
        let s = pairWords.get(k);
        if (!s) pairWords.set(k, (s = new Set()));
        s.add(wi);
      }
    }
  };
  for (let wi = 0; wi < words.length; wi++) addWord(wi, 1, pairCount);
  const heap = new PairHeap();
  for (const [k, c] of pairCount) heap.push(c, Math.floor(k / KEY), k % KEY);

  // 4. Merge loop. Each merge rewrites only the words that contain the pair; the pair counts change by the
  // difference between a word's old and new pairs, and only pairs whose count changed go back on the heap.
  const merges: string[] = [];
  while (symText.length - 256 < target && heap.size > 0) {
    const [c, a, b] = heap.pop();
    const k = key(a, b);
    if (pairCount.get(k) !== c) continue; // stale
    if (c < minFreq) break;
    const merged = symText[a] + symText[b];
    let id = symId.get(merged);
    if (id === undefined) {
      id = symText.length;
      symText.push(merged);
      symId.set(merged, id);
    }
    merges.push(`${symText[a]} ${symText[b]}`);
    const delta = new Map<number, number>();
    const holders = pairWords.get(k) ?? new Set<number>();
    for (const wi of holders) {
      const w = words[wi];
      let has = false;
      for (let i = 0; i < w.length - 1; i++) {
        if (w[i] === a && w[i + 1] === b) {
          has = true;
          break;
        }
      }
      if (!has) {
        holders.delete(wi); // stale index entry
        continue;
      }
      addWord(wi, -1, delta);
      const nw: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i < w.length - 1 && w[i] === a && w[i + 1] === b) {
          nw.push(id);
          i++;
        } else nw.push(w[i]);
      }
      words[wi] = nw;
      addWord(wi, 1, delta);
    }
    for (const [t, d] of delta) {
      if (d === 0) continue;
      const tc = (pairCount.get(t) ?? 0) + d;
      if (tc > 0) {
        pairCount.set(t, tc);
        heap.push(tc, Math.floor(t / KEY), t % KEY);
      } else {
        pairCount.delete(t);
        pairWords.delete(t);
      }
    }
    pairCount.delete(k);
    pairWords.delete(k);
    if (opts.onProgress && merges.length % 256 === 0) opts.onProgress(merges.length, target);
  }

  const tokens = [...symText, ...specials];
  const tokenTypes = tokens.map((_, i) => (i < symText.length ? TokenType.NORMAL : TokenType.CONTROL));
  const sid = (t: string): number | undefined => {
    const i = specials.indexOf(t);
    return i < 0 ? undefined : symText.length + i;
  };
  const eot = sid("<|im_end|>");
  const eos = sid("<|endoftext|>") ?? eot;
  return {
    pre,
    tokens,
    tokenTypes,
    merges,
    bosId: sid("<|endoftext|>"),
    eosId: eos,
    eotId: eot,
    padId: sid("<|endoftext|>"),
    addBos: false,
    addEos: false,
    chatTemplate:
      opts.chatTemplate ?? (eot !== undefined && sid("<|im_start|>") !== undefined ? CHATML_TEMPLATE : undefined),
  };
}
