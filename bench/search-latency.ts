// Search latency at scale: builds a knowledge base of N chunks from ../shared/data passages (CMRC, DRCD, SQuAD,
// XQuAD; passages sliced into ~300-character chunks and repeated until N is reached), then times the public
// questions through KnowledgeBases.search (keyword mode — the default without an embedding model).
// `npm run bench:search -- 10000 100000` prints p50/p95; bench/rag.ts imports measureSearchLatency.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { analyze, DEFAULT_ANALYZER } from "../src/index/analyzer.js";
import { KnowledgeBases } from "../src/index/kb.js";
import type { NewChunk } from "../src/index/store.js";
import type { SearchOptions } from "../src/index/types.js";

const DATA = new URL("../../shared/data/", import.meta.url).pathname;
const SETS = ["cmrc2018", "drcd", "squad-v1.1-dev", "xquad-zh"];

export interface LatencyResult {
  chunks: number;
  queries: number;
  buildSeconds: number;
  p50: number;
  p95: number;
  mean: number;
  max: number;
  /** CPU milliseconds per query (user+sys of this process): robust when other processes share the cores. */
  cpuMean: number;
}

function readJsonl<T>(file: string): T[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as T);
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Time `questions` against an existing KB (ms per query, after a short warm-up). */
export async function timeQueries(
  kbs: KnowledgeBases,
  name: string,
  questions: string[],
  opts: SearchOptions = { topK: 10 },
): Promise<{ p50: number; p95: number; mean: number; max: number; cpuMean: number }> {
  for (const q of questions.slice(0, 20)) await kbs.search(name, q, opts);
  const times: number[] = [];
  const cpu0 = process.cpuUsage();
  for (const q of questions) {
    const t = process.hrtime.bigint();
    await kbs.search(name, q, opts);
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  const cpu = process.cpuUsage(cpu0);
  times.sort((a, b) => a - b);
  return {
    cpuMean: (cpu.user + cpu.system) / 1000 / questions.length,
    p50: percentile(times, 50),
    p95: percentile(times, 95),
    mean: times.reduce((a, b) => a + b, 0) / times.length,
    max: times[times.length - 1],
  };
}

/** Build a synthetic KB of `chunks` chunks in a temp home and time `queries` questions on it. */
export async function measureSearchLatency(o: { chunks: number; queries?: number }): Promise<LatencyResult> {
  const pieces: string[] = [];
  for (const s of SETS) {
    for (const p of readJsonl<{ text: string }>(join(DATA, s, "corpus.jsonl"))) {
      for (let i = 0; i < p.text.length; i += 300) pieces.push(p.text.slice(i, i + 300));
    }
  }
  const questions: string[] = [];
  for (const s of SETS) {
    const qs = readJsonl<{ question: string }>(join(DATA, s, "queries.jsonl"));
    const step = Math.max(1, Math.floor(qs.length / Math.ceil((o.queries ?? 400) / SETS.length)));
    for (let i = 0; i < qs.length; i += step) questions.push(qs[i].question);
  }

  const home = mkdtempSync(join(tmpdir(), "dj-lat-"));
  const kbs = new KnowledgeBases(home, { embedder: null });
  try {
    const started = Date.now();
    await kbs.create("lat");
    const kb = await kbs.get("lat");
    const terms = new Map<number, string[]>(); // analyse each distinct piece once; repeats reuse its terms
    const perDoc = 50;
    for (let d = 0; d * perDoc < o.chunks; d++) {
      const rows: NewChunk[] = [];
      for (let j = 0; j < perDoc && d * perDoc + j < o.chunks; j++) {
        const k = (d * perDoc + j) % pieces.length;
        let t = terms.get(k);
        if (!t) terms.set(k, (t = analyze(pieces[k], DEFAULT_ANALYZER)));
        rows.push({
          ordinal: j,
          text: pieces[k],
          headingPath: [],
          charStart: j * 300,
          charEnd: j * 300 + pieces[k].length,
          tokens: 200,
          kind: "text",
          terms: t,
          headTerms: [],
        });
      }
      await kbs.store.replaceDocument(
        kb.id,
        {
          name: `doc-${d}.txt`,
          sha256: String(d),
          bytes: 0,
          format: "text",
          tags: [],
          status: "ready",
          needsOcrPages: [],
          warnings: [],
        },
        rows,
      );
    }
    const buildSeconds = (Date.now() - started) / 1000;
    const t = await timeQueries(kbs, "lat", questions);
    return { chunks: o.chunks, queries: questions.length, buildSeconds, ...t };
  } finally {
    await kbs.close();
    rmSync(home, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const sizes = process.argv.slice(2).map(Number);
  const rows: LatencyResult[] = [];
  for (const n of sizes.length ? sizes : [10_000, 100_000]) rows.push(await measureSearchLatency({ chunks: n }));
  console.log("chunks    queries  build_s  p50_ms   p95_ms   mean_ms  max_ms   cpu_ms/q");
  for (const r of rows) {
    console.log(
      [
        r.chunks,
        r.queries,
        r.buildSeconds.toFixed(1),
        r.p50.toFixed(2),
        r.p95.toFixed(2),
        r.mean.toFixed(2),
        r.max.toFixed(1),
        r.cpuMean.toFixed(2),
      ]
        .map((v, i) => String(v).padEnd(i === 0 ? 10 : 9))
        .join(""),
    );
  }
}
