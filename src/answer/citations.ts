// Citation markers: the model writes [n] (or [1, 2], 【n】) pointing at numbered sources. While the answer streams,
// markers are rewritten on the fly: numbers that point nowhere are dropped, and the sources actually used are
// renumbered 1, 2, 3 … in order of first use — so the streamed text and the stored answer are identical.
import type { SearchResult } from "../index/types.js";
import type { Citation } from "./types.js";
import { salientTerms, splitSentences, termOverlap } from "./text.js";

const OPEN = new Set(["[", "【"]);
const CLOSE = new Set(["]", "】"]);
const INNER = /[0-9,，、\s]/;
const MAX_PENDING = 24;

export class CitationRewriter {
  /** Original source numbers (1-based) in order of first use; position + 1 is the new number. */
  readonly order: number[] = [];
  private pending = "";

  constructor(private readonly sourceCount: number) {}

  private marker(inner: string): string | undefined {
    const nums = inner.match(/\d+/g);
    if (!nums) return undefined;
    let out = "";
    const seen = new Set<number>();
    for (const s of nums) {
      const n = Number(s);
      if (n < 1 || n > this.sourceCount || seen.has(n)) continue;
      seen.add(n);
      let k = this.order.indexOf(n);
      if (k < 0) k = this.order.push(n) - 1;
      out += `[${k + 1}]`;
    }
    return out;
  }

  /** Feed streamed text; returns what can be emitted now (a possible marker is held back until it closes). */
  push(text: string): string {
    let out = "";
    for (const ch of text) {
      if (this.pending) {
        if (CLOSE.has(ch)) {
          const m = this.marker(this.pending.slice(1));
          out += m === undefined ? this.pending + ch : m;
          this.pending = "";
          continue;
        }
        if (INNER.test(ch) && this.pending.length < MAX_PENDING) {
          this.pending += ch;
          continue;
        }
        out += this.pending;
        this.pending = "";
      }
      if (OPEN.has(ch)) this.pending = ch;
      else out += ch;
    }
    return out;
  }

  end(): string {
    const p = this.pending;
    this.pending = "";
    return p;
  }
}

/** Rewrite a whole text at once (non-streaming callers). */
export function rewriteCitations(text: string, sourceCount: number): { text: string; order: number[] } {
  const r = new CitationRewriter(sourceCount);
  const out = r.push(text) + r.end();
  return { text: out, order: r.order };
}

/**
 * The part of a passage that supports the answer: the passage sentences that best overlap the answer sentences
 * carrying marker [k]; the passage opening when nothing overlaps.
 */
export function pickQuote(passage: string, answer: string, k: number, maxChars = 320): string {
  const marker = `[${k}]`;
  const claims = splitSentences(answer).filter((s) => s.includes(marker));
  const terms = salientTerms(claims.join(" ").replace(/\[\d+\]/g, " "));
  const sentences = splitSentences(passage);
  if (sentences.length === 0) return passage.slice(0, maxChars);
  const scored = sentences.map((s, i) => ({ s, i, score: termOverlap(terms, s) }));
  const best = [...scored].sort((a, b) => b.score - a.score || a.i - b.i);
  if (best[0].score === 0) return clip(passage, maxChars);
  const chosen: typeof scored = [];
  let len = 0;
  for (const b of best) {
    if (b.score === 0 || (chosen.length > 0 && len + b.s.length > maxChars)) break;
    chosen.push(b);
    len += b.s.length;
  }
  return clip(
    chosen
      .sort((a, b) => a.i - b.i)
      .map((c) => c.s)
      .join(" "),
    maxChars,
  );
}

function clip(s: string, n: number): string {
  const t = s.replace(/\s+/g, " ").trim();
  return t.length <= n ? t : t.slice(0, n - 1) + "…";
}

export function buildCitations(sources: SearchResult[], order: number[], answer: string): Citation[] {
  return order.map((orig, i) => {
    const r = sources[orig - 1];
    const c: Citation = {
      index: i + 1,
      document: r.source.document,
      quote: pickQuote(r.text, answer, i + 1),
      chunkId: r.chunkId,
      documentId: r.documentId,
    };
    if (r.source.page !== undefined) c.page = r.source.page;
    if (r.source.heading !== undefined) c.heading = r.source.heading;
    return c;
  });
}
