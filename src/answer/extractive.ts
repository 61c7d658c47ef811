// Extractive answers for installs without a generative model: the sentences of the top passages that best match
// the question, quoted verbatim with the same [n] citation structure as a generated answer.
import type { SearchResult } from "../index/types.js";
import { salientTerms, splitSentences } from "./text.js";

export interface ExtractiveOptions {
  maxSentences?: number;
  maxChars?: number;
  /** How many top passages to draw sentences from. */
  passages?: number;
}

export interface ExtractiveResult {
  text: string;
  /** 1-based indexes into `results`, in citation order. */
  order: number[];
  /** The quoted sentences per cited source (aligned with order). */
  quotes: string[][];
}

export const EXTRACTIVE_HINT =
  "No generative model is configured, so this answer quotes the best-matching sentences. Add one with " +
  "`dajian pull hf:ORG/REPO/FILE.gguf` (local) or `dajian models add NAME --provider deepseek --api-key-env DEEPSEEK_API_KEY`.";

export function extractiveAnswer(
  question: string,
  results: SearchResult[],
  o: ExtractiveOptions = {},
): ExtractiveResult {
  const maxSentences = o.maxSentences ?? 3;
  const maxChars = o.maxChars ?? 600;
  const terms = salientTerms(question);
  if (terms.length === 0) return { text: "", order: [], quotes: [] };
  // Rarer terms weigh more (idf over the candidate sentences), so a sentence matching the topic beats one that
  // only repeats a common word.
  const cands: { s: string; src: number; pos: number; hits: Set<string> }[] = [];
  results.slice(0, o.passages ?? 5).forEach((r, i) => {
    splitSentences(r.text).forEach((s, pos) => {
      const low = s.toLowerCase();
      const hits = new Set(terms.filter((t) => low.includes(t)));
      if (hits.size) cands.push({ s, src: i + 1, pos, hits });
    });
  });
  if (cands.length === 0) return { text: "", order: [], quotes: [] };
  const df = new Map<string, number>();
  for (const c of cands) for (const t of c.hits) df.set(t, (df.get(t) ?? 0) + 1);
  const idf = (t: string) => Math.log(1 + cands.length / (df.get(t) ?? 1));
  const scored = cands.map((c) => {
    let score = 0;
    for (const t of c.hits) score += idf(t);
    // Mild preference for higher-ranked passages and for sentences that are not fragments or walls of text.
    score *= 1 / (1 + 0.1 * (c.src - 1));
    if (c.s.length < 12) score *= 0.5;
    if (c.s.length > 400) score *= 0.7;
    return { ...c, score };
  });
  scored.sort((a, b) => b.score - a.score || a.src - b.src || a.pos - b.pos);
  const chosen: typeof scored = [];
  let len = 0;
  for (const c of scored) {
    if (chosen.length >= maxSentences) break;
    if (chosen.length && (len + c.s.length > maxChars || c.score < scored[0].score * 0.34)) continue;
    if (chosen.some((x) => x.s === c.s)) continue;
    chosen.push(c);
    len += c.s.length;
  }
  const order: number[] = [];
  const quotes: string[][] = [];
  const lines = chosen.map((c) => {
    let k = order.indexOf(c.src);
    if (k < 0) {
      k = order.push(c.src) - 1;
      quotes.push([]);
    }
    quotes[k].push(c.s);
    const s = c.s.length > maxChars ? c.s.slice(0, maxChars - 1) + "…" : c.s;
    return `“${s}” [${k + 1}]`;
  });
  return { text: lines.join("\n"), order, quotes };
}
