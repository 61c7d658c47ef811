// Retrieval evaluation (`dajian eval retrieval`): does the ranked context a model would see contain the answer?
// - answer-recall@budget: a question counts when one of its gold answer strings appears in the top results'
//   texts concatenated in rank order and cut to `budget` characters (default 2,000 for a question with Chinese
//   characters, 4,000 otherwise — the budgets of PRODUCT.md);
// - recall@k and MRR of gold documents, for questions whose positive_ids map to documents of the KB.
// Questions whose answers appear in no chunk of their gold documents (or, without a mapping, of the KB) are
// skipped and counted, so chunking that drops text is visible as a skip count, not hidden in the recall.
import { DajianError } from "../core/errors.js";
import { noProgress, type ProgressFn } from "../core/progress.js";
import type { KnowledgeBases } from "./kb.js";
import type { SearchOptions } from "./types.js";

export interface EvalQuery {
  id?: string;
  question: string;
  answers?: string[];
  positive_ids?: string[];
}

export interface EvalOptions {
  topK?: number;
  /** Character budget of ranked context; undefined = 2,000 for Chinese questions, 4,000 otherwise. */
  budget?: number;
  /** Map a positive id to a document name; default: the document whose name without extension is the id. */
  docFor?: (positiveId: string) => string | undefined;
  search?: Omit<SearchOptions, "topK">;
  onProgress?: ProgressFn;
}

export interface EvalQueryResult {
  id?: string;
  skipped: boolean;
  answered: boolean;
  /** 1-based rank of the first result from a gold document (0 = none in top-k; undefined = no gold doc known). */
  goldRank?: number;
}

export interface EvalReport {
  kb: string;
  topK: number;
  budget: number | "auto";
  queries: number;
  evaluated: number;
  skipped: number;
  answerRecall: number;
  /** Questions with at least one gold document found in the KB. */
  withGold: number;
  recallAtK: number;
  mrr: number;
  seconds: number;
  perQuery: EvalQueryResult[];
}

const HAN = /[\u3400-\u9fff]/;

export async function evalRetrieval(kbs: KnowledgeBases, name: string, queries: EvalQuery[], o: EvalOptions = {}) {
  const started = Date.now();
  const topK = o.topK ?? 10;
  if (o.budget !== undefined && (!Number.isInteger(o.budget) || o.budget < 1)) {
    throw new DajianError(
      "invalid_input",
      `budget must be a positive integer, got ${o.budget}`,
      "pass e.g. --budget 2000",
    );
  }
  const onProgress = o.onProgress ?? noProgress;
  const kb = await kbs.get(name);
  const docs = await kbs.store.listDocuments(kb.id);
  const byName = new Map(docs.map((d) => [d.name, d]));
  const byStem = new Map<string, number>();
  for (const d of docs) byStem.set(d.name.replace(/^.*\//, "").replace(/\.[^.]+$/, ""), d.id);
  const goldDocs = (q: EvalQuery): Set<number> => {
    const out = new Set<number>();
    for (const pid of q.positive_ids ?? []) {
      const mapped = o.docFor ? o.docFor(pid) : undefined;
      const id = mapped !== undefined ? byName.get(mapped)?.id : byStem.get(pid);
      if (id !== undefined) out.add(id);
    }
    return out;
  };

  // Texts to decide "answerable": per document, its chunks joined (loaded lazily, once).
  const docText = new Map<number, string>();
  const textOf = async (docId: number) => {
    let t = docText.get(docId);
    if (t === undefined) {
      t = (await kbs.store.documentChunks(docId)).map((c) => c.text).join("\n");
      docText.set(docId, t);
    }
    return t;
  };

  const perQuery: EvalQueryResult[] = [];
  let answered = 0;
  let skipped = 0;
  let withGold = 0;
  let hitsAtK = 0;
  let rr = 0;
  for (let i = 0; i < queries.length; i++) {
    const q = queries[i];
    onProgress({ phase: "queries", done: i, total: queries.length });
    const answers = (q.answers ?? []).filter((a) => a.trim() !== "");
    const gold = goldDocs(q);
    let answerable = answers.length > 0;
    if (answerable) {
      const scope = gold.size > 0 ? [...gold] : docs.map((d) => d.id);
      let found = false;
      for (const id of scope) {
        const t = await textOf(id);
        if (answers.some((a) => t.includes(a))) {
          found = true;
          break;
        }
      }
      answerable = found;
    }
    const { results } = await kbs.search(name, q.question, { ...o.search, topK });
    const r: EvalQueryResult = { id: q.id, skipped: !answerable, answered: false };
    if (gold.size > 0) {
      withGold++;
      const idx = results.findIndex((x) => gold.has(Number(x.documentId)));
      r.goldRank = idx + 1;
      if (idx >= 0) {
        hitsAtK++;
        rr += 1 / (idx + 1);
      }
    }
    if (answerable) {
      const budget = o.budget ?? (HAN.test(q.question) ? 2000 : 4000);
      let context = "";
      for (const x of results) {
        if (context.length >= budget) break;
        context += (context ? "\n" : "") + x.text;
      }
      context = context.slice(0, budget);
      r.answered = answers.some((a) => context.includes(a));
      if (r.answered) answered++;
    } else skipped++;
    perQuery.push(r);
  }
  onProgress({ phase: "queries", done: queries.length, total: queries.length });
  const evaluated = queries.length - skipped;
  const report: EvalReport = {
    kb: name,
    topK,
    budget: o.budget ?? "auto",
    queries: queries.length,
    evaluated,
    skipped,
    answerRecall: evaluated ? answered / evaluated : 0,
    withGold,
    recallAtK: withGold ? hitsAtK / withGold : 0,
    mrr: withGold ? rr / withGold : 0,
    seconds: (Date.now() - started) / 1000,
    perQuery,
  };
  return report;
}
