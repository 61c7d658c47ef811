// Retrieval metrics shared by the dajian and baseline runs, so both are scored by exactly the same code.
import { normForMatch } from "./data.js";

export interface Hit {
  text: string;
  document: string;
}

/**
 * The context a reader model would get: results concatenated in rank order, cut to `budget` characters
 * (counted on the raw text, separators included).
 */
export function contextWithin(hits: Hit[], budget: number): string {
  let out = "";
  for (const h of hits) {
    if (out.length >= budget) break;
    out += (out === "" ? "" : "\n\n") + h.text;
  }
  return out.slice(0, budget);
}

export function answeredWithin(hits: Hit[], answers: string[], budget: number): boolean {
  const ctx = normForMatch(contextWithin(hits, budget));
  return answers.some((a) => ctx.includes(normForMatch(a)));
}

/** Documents in rank order of their first hit. */
export function docRanking(hits: Hit[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const h of hits) {
    if (!seen.has(h.document)) {
      seen.add(h.document);
      out.push(h.document);
    }
  }
  return out;
}

/** 1-based rank of the first gold document, or 0 when none was retrieved. */
export function goldRank(hits: Hit[], goldDocs: Set<string>): number {
  const ranking = docRanking(hits);
  const i = ranking.findIndex((d) => goldDocs.has(d));
  return i < 0 ? 0 : i + 1;
}

export interface QueryOutcome {
  answered: boolean;
  rank: number;
  ms: number;
  /** CPU time of this process during the query (robust to a busy machine, unlike wall time). */
  cpuMs?: number;
}

export interface Summary {
  n: number;
  answerRecall: number;
  recallAt: Record<string, number>;
  mrr: number;
  p50ms: number;
  p95ms: number;
  cpuP50ms?: number;
  cpuP95ms?: number;
}

export const RECALL_KS = [1, 3, 5, 10];

/** Milliseconds of CPU time (user + system) this process has used. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[i];
}

export function summarize(outcomes: QueryOutcome[]): Summary {
  const n = outcomes.length;
  const recallAt: Record<string, number> = {};
  for (const k of RECALL_KS) recallAt[`@${k}`] = n ? outcomes.filter((o) => o.rank > 0 && o.rank <= k).length / n : 0;
  return {
    n,
    answerRecall: n ? outcomes.filter((o) => o.answered).length / n : 0,
    recallAt,
    mrr: n ? outcomes.reduce((s, o) => s + (o.rank > 0 ? 1 / o.rank : 0), 0) / n : 0,
    p50ms: percentile(
      outcomes.map((o) => o.ms),
      50,
    ),
    p95ms: percentile(
      outcomes.map((o) => o.ms),
      95,
    ),
    ...(outcomes.every((o) => o.cpuMs !== undefined)
      ? {
          cpuP50ms: percentile(
            outcomes.map((o) => o.cpuMs!),
            50,
          ),
          cpuP95ms: percentile(
            outcomes.map((o) => o.cpuMs!),
            95,
          ),
        }
      : {}),
  };
}
