// Search latency at a given knowledge-base size (run by bench/rag.ts as a child process, so its peak RSS is its
// own). The knowledge base is synthetic but built from real text: every sentence of the evaluation corpora is
// analysed once, and chunks are windows of consecutive sentences starting at random points (~140 terms each,
// like real chunks), written through the KB store in documents of 50 chunks. Term statistics are therefore those
// of real Chinese and English text, repeated — longer posting lists than a diverse corpus, so latency is, if
// anything, pessimistic. Queries are real public questions from all sets, timed end to end (analysis, term
// pruning, BM25 over FTS5, chunk fetch). The built home is cached, keyed by size and inputs.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { analyze, DEFAULT_ANALYZER, analyzerId } from "../../src/index/analyzer.js";
import { KnowledgeBases } from "../../src/index/kb.js";
import type { NewChunk } from "../../src/index/store.js";
import { estimateTokens, sentenceRanges } from "../../src/ingest/index.js";
import { KNOWN_SETS } from "./data.js";
import { cpuMs, percentile } from "./metrics.js";

const CHUNKS_PER_DOC = 50;
const TERMS_PER_CHUNK = 140;

function arg(name: string, def?: string): string {
  const i = process.argv.indexOf(name);
  if (i >= 0 && process.argv[i + 1] !== undefined) return process.argv[i + 1];
  if (def === undefined) throw new Error(`missing ${name}`);
  return def;
}

/** Small deterministic PRNG (mulberry32): the same KB every build. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function readLines<T>(file: string): T[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as T);
}

async function build(home: string, chunks: number, dataDir: string): Promise<void> {
  const sentences: { text: string; terms: string[] }[] = [];
  for (const s of KNOWN_SETS) {
    for (const p of readLines<{ text: string }>(join(dataDir, s, "corpus.jsonl"))) {
      for (const [a, b] of sentenceRanges(p.text)) {
        const text = p.text.slice(a, b);
        sentences.push({ text, terms: analyze(text) });
      }
    }
  }
  process.stderr.write(`  ${sentences.length} sentences analysed; writing ${chunks} chunks\n`);
  const kbs = new KnowledgeBases(home, { embedder: null });
  const kb = await kbs.create("latency");
  const rand = rng(chunks);
  let written = 0;
  for (let d = 0; written < chunks; d++) {
    const rows: NewChunk[] = [];
    let full = "";
    for (let o = 0; o < CHUNKS_PER_DOC && written < chunks; o++, written++) {
      let i = Math.floor(rand() * sentences.length);
      const parts: string[] = [];
      const terms: string[] = [];
      while (terms.length < TERMS_PER_CHUNK && parts.length < 12) {
        const s = sentences[i++ % sentences.length];
        parts.push(s.text);
        terms.push(...s.terms);
      }
      const text = parts.join(" ");
      const start = full.length === 0 ? 0 : full.length + 2;
      full += (full.length === 0 ? "" : "\n\n") + text;
      rows.push({
        ordinal: o,
        text,
        headingPath: [],
        charStart: start,
        charEnd: start + text.length,
        tokens: estimateTokens(text),
        kind: "text",
        terms,
        headTerms: [],
      });
    }
    await kbs.store.replaceDocument(
      kb.id,
      {
        name: `synthetic-${String(d).padStart(6, "0")}.txt`,
        sha256: createHash("sha256").update(full).digest("hex"),
        bytes: Buffer.byteLength(full),
        format: "text",
        tags: [],
        status: "ready",
        needsOcrPages: [],
        warnings: [],
      },
      rows,
    );
    if (d % 200 === 0) process.stderr.write(`  ${written}/${chunks} chunks\r`);
  }
  process.stderr.write("\n");
  await kbs.close();
}

async function main(): Promise<void> {
  const chunks = Number(arg("--chunks"));
  const nQueries = Number(arg("--queries", "500"));
  const dataDir = arg("--data");
  const cacheDir = arg("--cache");
  const h = createHash("sha1").update(JSON.stringify({ chunks, v: 1, analyzer: analyzerId(DEFAULT_ANALYZER) }));
  for (const s of KNOWN_SETS) h.update(readFileSync(join(dataDir, s, "corpus.jsonl")));
  const home = join(cacheDir, `latency-${chunks}-${h.digest("hex").slice(0, 10)}`);
  const t0 = performance.now();
  let cached = existsSync(join(home, ".complete"));
  if (!cached) {
    const tmp = `${home}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    await build(tmp, chunks, dataDir);
    writeFileSync(join(tmp, ".complete"), new Date().toISOString() + "\n");
    rmSync(home, { recursive: true, force: true });
    renameSync(tmp, home);
    cached = false;
  }
  const buildSeconds = (performance.now() - t0) / 1000;

  // Real questions from every set, a deterministic mix.
  const questions: string[] = [];
  for (const s of KNOWN_SETS) {
    for (const q of readLines<{ question: string }>(join(dataDir, s, "queries.jsonl"))) questions.push(q.question);
  }
  const rand = rng(7);
  const picked = Array.from({ length: nQueries }, () => questions[Math.floor(rand() * questions.length)]);

  const kbs = new KnowledgeBases(home, { embedder: null });
  for (const q of picked.slice(0, 20)) await kbs.search("latency", q, { topK: 20, mode: "keyword" }); // warm-up
  const ms: number[] = [];
  const cpu: number[] = [];
  for (const q of picked) {
    const t = performance.now();
    const c = cpuMs();
    await kbs.search("latency", q, { topK: 20, mode: "keyword" });
    ms.push(performance.now() - t);
    cpu.push(cpuMs() - c);
  }
  const stored = (await kbs.get("latency")).chunkCount;
  await kbs.close();
  const out = {
    chunks: stored,
    queries: ms.length,
    p50ms: percentile(ms, 50),
    p95ms: percentile(ms, 95),
    cpuP50ms: percentile(cpu, 50),
    cpuP95ms: percentile(cpu, 95),
    loadavg: loadavg()[0],
    buildSeconds,
    cached,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  };
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((err: unknown) => {
  process.stderr.write((err instanceof Error ? (err.stack ?? err.message) : String(err)) + "\n");
  process.exit(1);
});
