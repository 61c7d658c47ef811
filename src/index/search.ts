// Retrieval: keyword (BM25 over analysed terms) and vector candidates, fused by reciprocal-rank fusion, filtered
// by document/tag/permission *inside* retrieval, then an optional rerank step. All knobs live in SearchTuning so
// the benchmark can tune them without touching code.
import { DajianError } from "../core/errors.js";
import { analyzeQuery, parseAnalyzerId } from "./analyzer.js";
import type { Embedder } from "./embed.js";
import type { DocFilter, Hit, KbRecord, KbStore } from "./store.js";
import type { SearchOptions, SearchResponse, SearchResult } from "./types.js";

export interface SearchTuning {
  /** Keep at most this many query terms (the rarest ones): bounds work for long questions. */
  maxQueryTerms: number;
  /**
   * Drop query terms found in more than this fraction of chunks (they are near-stopwords: tiny IDF, huge posting
   * lists). The rarest term is always kept.
   */
  maxDfRatio: number;
  /** BM25 term-frequency saturation and length normalisation. */
  k1: number;
  b: number;
  /** A heading-path occurrence counts this many body occurrences. */
  headWeight: number;
  /** Reciprocal-rank fusion constant: score = Σ weight / (rrfK + rank). */
  rrfK: number;
  /** Candidates taken from each retriever before fusion/rerank (at least topK). */
  candidates: number;
  keywordWeight: number;
  vectorWeight: number;
}

export const DEFAULT_TUNING: SearchTuning = {
  maxQueryTerms: 24,
  maxDfRatio: 0.3,
  k1: 1.2,
  b: 0.75,
  headWeight: 0.5,
  rrfK: 60,
  candidates: 50,
  keywordWeight: 1,
  vectorWeight: 1,
};

/** Pluggable second stage (e.g. a cross-encoder); must return a subset/permutation of its input. */
export interface Reranker {
  readonly name: string;
  rerank(query: string, results: SearchResult[], signal?: AbortSignal): Promise<SearchResult[]>;
}

export const noRerank: Reranker = { name: "none", rerank: async (_q, r) => r };

export interface SearchDeps {
  store: KbStore;
  embedder?: Embedder;
  reranker?: Reranker;
  tuning?: Partial<SearchTuning>;
}

/** Query terms after IDF pruning: rare terms first, near-stopwords out, capped. */
export async function selectQueryTerms(
  store: KbStore,
  kb: KbRecord,
  query: string,
  t: SearchTuning,
): Promise<string[]> {
  const terms = analyzeQuery(query, parseAnalyzerId(kb.analyzer));
  if (terms.length === 0) return [];
  const df = await store.termDocFreq(kb.id, terms);
  const present = terms.filter((x) => (df.get(x) ?? 0) > 0).sort((a, b) => df.get(a)! - df.get(b)!);
  if (present.length === 0) return [];
  const limit = Math.max(1, kb.chunkCount * t.maxDfRatio);
  const kept = present.filter((x, i) => i === 0 || df.get(x)! <= limit);
  return kept.slice(0, t.maxQueryTerms);
}

export async function search(
  deps: SearchDeps,
  kb: KbRecord,
  query: string,
  opts: SearchOptions = {},
): Promise<SearchResponse> {
  const t = { ...DEFAULT_TUNING, ...deps.tuning };
  const topK = opts.topK ?? 5;
  if (!Number.isInteger(topK) || topK < 1 || topK > 1000) {
    throw new DajianError(
      "invalid_input",
      `topK must be an integer from 1 to 1000, got ${topK}`,
      "pass e.g. --top-k 5",
    );
  }
  const { store, embedder } = deps;
  const reranker = deps.reranker ?? noRerank;
  const vectorsUsable = embedder !== undefined && kb.embedModel === embedder.name;
  // Default: hybrid when the KB has vectors and a model is configured (a different model is an error below,
  // never a silent downgrade); keyword when the KB has no vectors.
  const mode = opts.mode ?? (embedder !== undefined && kb.embedModel !== undefined ? "hybrid" : "keyword");
  if (mode !== "keyword" && !vectorsUsable) {
    throw new DajianError(
      "invalid_input",
      embedder
        ? `knowledge base '${kb.name}' has ${kb.embedModel ? `vectors from ${kb.embedModel}` : "no vectors"}, not from ${embedder.name}`
        : `${mode} search needs an embedding model, and none is configured`,
      embedder
        ? `re-ingest the documents with the configured model, or use mode "keyword"`
        : "set `embedding` in config.json (see docs), re-ingest, or use keyword search",
    );
  }

  const only = await store.resolveDocumentFilter(kb.id, opts.documents, opts.tags);
  if (only && only.size === 0) return { results: [] };
  const allow = opts.allowDocument;
  const accept: DocFilter | undefined =
    only || allow ? (d) => (!only || only.has(d)) && (!allow || allow(String(d))) : undefined;

  const fused = mode === "keyword" && reranker === noRerank;
  const n = fused ? topK : Math.max(topK, t.candidates);
  const lists: { hits: Hit[]; weight: number }[] = [];
  if (mode !== "vector") {
    const terms = await selectQueryTerms(store, kb, query, t);
    const bm25 = { k1: t.k1, b: t.b, headWeight: t.headWeight };
    lists.push({ hits: await store.keywordSearch(kb.id, terms, n, accept, bm25), weight: t.keywordWeight });
  }
  if (mode !== "keyword") {
    const [qv] = await embedder!.embed([query]);
    lists.push({ hits: await store.vectorSearch(kb.id, qv, n, accept), weight: t.vectorWeight });
  }

  // One list: keep its own scores (BM25 or cosine). Several: reciprocal-rank fusion.
  let ranked: { chunkId: number; docId: number; score: number }[];
  if (lists.length === 1) ranked = lists[0].hits;
  else {
    const acc = new Map<number, { chunkId: number; docId: number; score: number }>();
    for (const { hits, weight } of lists) {
      hits.forEach((h, rank) => {
        const e = acc.get(h.chunkId) ?? { chunkId: h.chunkId, docId: h.docId, score: 0 };
        e.score += weight / (t.rrfK + rank + 1);
        acc.set(h.chunkId, e);
      });
    }
    ranked = [...acc.values()].sort((a, b) => b.score - a.score);
  }
  if (reranker === noRerank) ranked = ranked.slice(0, topK);

  const chunks = await store.getChunks(ranked.map((r) => r.chunkId));
  let results: SearchResult[] = [];
  for (const r of ranked) {
    const c = chunks.get(r.chunkId);
    if (!c) continue; // removed between the two reads (concurrent delete): drop rather than show stale text
    const source: SearchResult["source"] = { document: c.documentName };
    if (c.page !== undefined) source.page = c.page;
    if (c.headingPath.length > 0) source.heading = c.headingPath.join(" > ");
    results.push({
      text: c.text,
      score: r.score,
      source,
      chunkId: String(c.id),
      documentId: String(c.docId),
      charStart: c.charStart,
      charEnd: c.charEnd,
    });
  }
  if (reranker !== noRerank) results = (await reranker.rerank(query, results)).slice(0, topK);
  return { results };
}
