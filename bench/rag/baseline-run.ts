// Runs the LangChain.js baseline over a set's questions and scores it with the shared metrics. LangChain's
// BM25Retriever rescans every chunk for every query (slow on large sets), and its outcome depends only on the
// extracted text, the questions and the library, so per-question outcomes are cached under a key of all three.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { BASELINE_CHUNK, buildBaseline, type BaselineVariant } from "./baseline.js";
import type { BenchSet } from "./data.js";
import { answeredWithin, cpuMs, goldRank, summarize, type QueryOutcome, type Summary } from "./metrics.js";

/** Results per question fill the budget several times over, as for dajian. */
const BASELINE_K = 10;

function libVersions(): string {
  const req = createRequire(import.meta.url);
  const v = (p: string) => (req(`${p}/package.json`) as { version: string }).version;
  try {
    return ["@langchain/community", "@langchain/textsplitters", "@node-rs/jieba"].map((p) => `${p}@${v(p)}`).join(",");
  } catch {
    return "unknown";
  }
}

export async function runBaseline(
  set: BenchSet,
  docs: { name: string; text: string }[],
  variant: BaselineVariant,
  opts: { cacheDir: string; log: (s: string) => void },
): Promise<Summary & { chunks: number; cached: boolean }> {
  const h = createHash("sha1");
  h.update(JSON.stringify({ variant, k: BASELINE_K, chunk: BASELINE_CHUNK, budget: set.budget, libs: libVersions() }));
  for (const d of docs) h.update(d.name + "\u0000" + d.text + "\u0000");
  const key = h.digest("hex").slice(0, 16);
  const dir = join(opts.cacheDir, "baseline");
  const file = join(dir, `${set.name}-${variant.replace(/\W/g, "_")}-${key}.json`);
  const cache: { chunks: number; outcomes: Record<string, QueryOutcome> } = existsSync(file)
    ? (JSON.parse(readFileSync(file, "utf8")) as { chunks: number; outcomes: Record<string, QueryOutcome> })
    : { chunks: 0, outcomes: {} };

  const todo = set.queries.filter((q) => !cache.outcomes[q.id]);
  if (todo.length > 0) {
    opts.log(`  baseline ${variant}: ${todo.length} questions to run (${set.queries.length - todo.length} cached)`);
    const bl = await buildBaseline(docs, variant, BASELINE_K);
    cache.chunks = bl.chunks;
    const t0 = performance.now();
    let n = 0;
    for (const q of todo) {
      const t = performance.now();
      const c = cpuMs();
      const hits = await bl.search(q.question);
      const ms = performance.now() - t;
      const cpu = cpuMs() - c;
      const gold = new Set(q.positiveIds.map((p) => set.passageDoc.get(p)!));
      cache.outcomes[q.id] = {
        answered: answeredWithin(hits, q.answers, set.budget),
        rank: goldRank(hits, gold),
        ms,
        cpuMs: cpu,
      };
      if (++n % 500 === 0) {
        const rate = n / ((performance.now() - t0) / 1000);
        opts.log(`    ${n}/${todo.length} (${rate.toFixed(1)} q/s)`);
      }
    }
    mkdirSync(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(cache));
    renameSync(tmp, file);
  }
  const outcomes = set.queries.map((q) => cache.outcomes[q.id]);
  return { ...summarize(outcomes), chunks: cache.chunks, cached: todo.length === 0 };
}
