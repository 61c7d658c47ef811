// npm run bench:rag — retrieval quality and speed of dajian's knowledge bases against a LangChain.js baseline.
//
// For each evaluation set in ../shared/data: the corpus becomes real documents (one file per article, formats
// rotating over PDF, DOCX, HTML, Markdown and text), ingested into a fresh dajian home through the library API
// (timed: pages/s, MB/s, text-PDF pages/s, peak RSS); the public questions then run through dajian search and
// through the LangChain.js baseline on the same extracted text, scored by the same code (answer-recall within a
// context budget, recall@k of gold documents, MRR). Finally search latency at 10k and 100k chunks.
// Results: a table per set on stdout, bench/results/rag-<date>.json and .html.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_CONFIG, loadConfig } from "../src/core/config.js";
import { terminalProgress } from "../src/core/progress.js";
import { KnowledgeBases, type IngestSummary } from "../src/index/kb.js";
import { documentText, parseDocument } from "../src/ingest/index.js";
import { runBaseline } from "./rag/baseline-run.js";
import { KNOWN_SETS, loadSet, type BenchSet } from "./rag/data.js";
import { writeDocs } from "./rag/docs.js";
import { dajianTuning, describeTuning } from "./rag/tuning.js";
import { answeredWithin, cpuMs, goldRank, summarize, type QueryOutcome } from "./rag/metrics.js";
import {
  htmlReport,
  latencyTable,
  setTable,
  summaryTable,
  type LatencyResult,
  type RagReport,
  type SetResult,
} from "./rag/report.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

interface Args {
  sets: string[];
  limit?: number;
  data: string;
  out: string;
  topK: number;
  baseline: boolean;
  latency: number[];
  latencyQueries: number;
  chunkTokens?: number;
  chunkOverlap?: number;
  keepHome: boolean;
  rewriteDocs: boolean;
}

const USAGE = `usage: npm run bench:rag -- [options]
  --sets a,b,...        evaluation sets (default: ${KNOWN_SETS.join(",")})
  --limit N             at most N questions per set (deterministic sample)
  --quick               --limit 300 and latency at 10k chunks only
  --data DIR            evaluation data (default: ../shared/data beside the repository)
  --out DIR             results folder (default: bench/results)
  --top-k N             dajian results per question before the context budget cut (default 20)
  --latency 10000,100000  knowledge-base sizes (chunks) for the latency run; "none" to skip
  --latency-queries N   questions timed per size (default 500)
  --chunk-tokens N      dajian chunk size (default: config, ${DEFAULT_CONFIG.ingest.chunkTokens})
  --chunk-overlap N     dajian chunk overlap (default: config, ${DEFAULT_CONFIG.ingest.chunkOverlap})
  --no-baseline         skip the LangChain.js baseline
  --rewrite-docs        regenerate the cached document files
  --keep-home           keep the temporary dajian homes (printed)`;

function parseArgs(argv: string[]): Args {
  const a: Args = {
    sets: KNOWN_SETS,
    data: resolve(ROOT, "../shared/data"),
    out: join(ROOT, "bench/results"),
    topK: 20,
    baseline: true,
    latency: [10_000, 100_000],
    latencyQueries: 500,
    keepHome: false,
    rewriteDocs: false,
  };
  const num = (v: string | undefined, flag: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag} needs a positive number, got '${v}'\n${USAGE}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i];
    const v = () => argv[++i];
    switch (f) {
      case "--sets":
        a.sets = v().split(",").filter(Boolean);
        break;
      case "--limit":
        a.limit = num(v(), f);
        break;
      case "--quick":
        a.limit ??= 300;
        a.latency = [10_000];
        break;
      case "--data":
        a.data = resolve(v());
        break;
      case "--out":
        a.out = resolve(v());
        break;
      case "--top-k":
        a.topK = num(v(), f);
        break;
      case "--latency": {
        const s = v();
        a.latency = s === "none" ? [] : s.split(",").map((x) => num(x, f));
        break;
      }
      case "--latency-queries":
        a.latencyQueries = num(v(), f);
        break;
      case "--chunk-tokens":
        a.chunkTokens = num(v(), f);
        break;
      case "--chunk-overlap":
        a.chunkOverlap = Number(v());
        break;
      case "--no-baseline":
        a.baseline = false;
        break;
      case "--rewrite-docs":
        a.rewriteDocs = true;
        break;
      case "--keep-home":
        a.keepHome = true;
        break;
      case "-h":
      case "--help":
        console.log(USAGE);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${f}\n${USAGE}`);
    }
  }
  for (const s of a.sets) {
    if (!existsSync(join(a.data, s, "corpus.jsonl"))) {
      throw new Error(`no evaluation set '${s}' in ${a.data} (expected ${s}/corpus.jsonl); pass --data DIR or --sets`);
    }
  }
  return a;
}

const log = (s: string) => process.stderr.write(s + "\n");
const rssMb = () => process.resourceUsage().maxRSS / 1024;
const cpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

async function runSet(args: Args, set: BenchSet): Promise<SetResult> {
  const cacheDir = join(args.out, "cache");
  log(`\n== ${set.name}: ${set.docs.length} documents, ${set.queries.length} questions`);
  const written = await writeDocs(set, { root: ROOT, dataDir: args.data, cacheDir, rewrite: args.rewriteDocs, log });
  log(
    `  documents ${written.cached ? "cached" : "written"} in ${written.dir} (${(written.writeMs / 1000).toFixed(1)} s)`,
  );

  // --- dajian: ingest into a fresh home through the library API -------------------------------------------
  const home = mkdtempSync(join(tmpdir(), `dajian-bench-${set.name}-`));
  const base = loadConfig(home, {});
  const config = {
    ...base,
    ingest: {
      ...base.ingest,
      ...(args.chunkTokens ? { chunkTokens: args.chunkTokens } : {}),
      ...(args.chunkOverlap !== undefined ? { chunkOverlap: args.chunkOverlap } : {}),
    },
  };
  const kbs = new KnowledgeBases(home, { config, embedder: null, ...dajianTuning() });
  const kbName = "bench";
  await kbs.create(kbName);
  const items = written.files.map((f) => ({ name: f.spec.name, path: f.path, bytes: f.bytes }));
  const pdfItems = items.filter((_, i) => written.files[i].spec.format === "pdf");
  const otherItems = items.filter((_, i) => written.files[i].spec.format !== "pdf");
  const progress = terminalProgress();
  // Wall time is what a user waits; CPU time (user + system of this process) is also kept because this machine
  // is shared and wall time alone would mostly measure the neighbours.
  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  // Trusted local files: parse in-process like `dajian ingest` (uploads default to a worker per file).
  const sPdf: IngestSummary = await kbs.ingestItems(kbName, pdfItems, { onProgress: progress, isolate: false });
  const tPdf = (performance.now() - t0) / 1000;
  const cpuPdf = cpuSeconds() - cpu0;
  const sOther: IngestSummary = await kbs.ingestItems(kbName, otherItems, { onProgress: progress, isolate: false });
  const tAll = (performance.now() - t0) / 1000;
  const cpuAll = cpuSeconds() - cpu0;
  progress.end();
  const failed = [...sPdf.files, ...sOther.files].filter((f) => f.status === "failed");
  const ingest = {
    files: items.length,
    bytes: items.reduce((s, i) => s + i.bytes, 0),
    pages: sPdf.pages + sOther.pages,
    chunks: sPdf.chunks + sOther.chunks,
    seconds: tAll,
    cpuSeconds: cpuAll,
    pdf: { files: pdfItems.length, pages: sPdf.pages, seconds: tPdf, cpuSeconds: cpuPdf },
    failed: failed.map((f) => `${f.file}: ${f.reason}`),
    peakRssMb: rssMb(),
  };
  log(`  ingested ${ingest.files} files, ${ingest.chunks} chunks in ${tAll.toFixed(1)} s (${failed.length} failed)`);

  // --- dajian: questions -------------------------------------------------------------------------------------
  const outcomes: QueryOutcome[] = [];
  for (const q of set.queries) {
    const t = performance.now();
    const c = cpuMs();
    const { results } = await kbs.search(kbName, q.question, { topK: args.topK, mode: "keyword" });
    const ms = performance.now() - t;
    const cpu = cpuMs() - c;
    const hits = results.map((r) => ({ text: r.text, document: r.source.document }));
    const gold = new Set(q.positiveIds.map((p) => set.passageDoc.get(p)!));
    outcomes.push({
      answered: answeredWithin(hits, q.answers, set.budget),
      rank: goldRank(hits, gold),
      ms,
      cpuMs: cpu,
    });
  }
  const dajian = summarize(outcomes);
  await kbs.close();
  if (args.keepHome) log(`  dajian home kept: ${home}`);
  else rmSync(home, { recursive: true, force: true });

  // --- baseline on the same extracted text -------------------------------------------------------------------
  const baselines: SetResult["baselines"] = {};
  if (args.baseline) {
    const docs = [];
    for (const f of written.files) {
      if (failed.some((x) => x.file === f.spec.name)) continue; // neither side gets a document dajian could not read
      const parsed = await parseDocument(readFileSync(f.path), f.spec.name);
      docs.push({ name: f.spec.name, text: documentText(parsed) });
    }
    const variants = set.lang === "zh" ? (["langchain", "langchain+jieba"] as const) : (["langchain"] as const);
    for (const v of variants) {
      baselines[v] = await runBaseline(set, docs, v, { cacheDir, log });
    }
  }

  const formats: Record<string, number> = {};
  for (const d of set.docs) formats[d.format] = (formats[d.format] ?? 0) + 1;
  return {
    set: set.name,
    lang: set.lang,
    budget: set.budget,
    queries: set.queries.length,
    skipped: set.skipped,
    totalQueries: set.totalQueries,
    docs: set.docs.length,
    formats,
    ingest,
    dajian,
    baselines,
    peakRssMb: rssMb(),
  };
}

function runLatency(args: Args): LatencyResult[] {
  const out: LatencyResult[] = [];
  for (const n of args.latency) {
    log(`\n== search latency at ${n} chunks`);
    const r = spawnSync(
      process.execPath,
      [
        "--import",
        "tsx",
        join(ROOT, "bench/rag/latency.ts"),
        "--chunks",
        String(n),
        "--queries",
        String(args.latencyQueries),
        "--data",
        args.data,
        "--cache",
        join(args.out, "cache"),
      ],
      { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"], encoding: "utf8", maxBuffer: 1 << 24 },
    );
    if (r.status !== 0) throw new Error(`latency run at ${n} chunks failed (exit ${r.status})`);
    out.push(JSON.parse(r.stdout.trim().split("\n").pop()!) as LatencyResult);
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const loadStart = loadavg();
  const sets: SetResult[] = [];
  for (const name of args.sets) {
    const set = loadSet(args.data, name, args.limit);
    const r = await runSet(args, set);
    sets.push(r);
    console.log("\n" + setTable(r));
  }
  const latency = runLatency(args);
  if (latency.length) console.log("\nsearch latency (keyword, synthetic knowledge base)\n" + latencyTable(latency));
  if (sets.length) console.log("\nanswer-recall within the context budget (%)\n" + summaryTable(sets));

  const date = new Date().toISOString().replace(/[:]/g, "-").replace(/\..*/, "");
  const report: RagReport = {
    date,
    command: `npm run bench:rag -- ${process.argv.slice(2).join(" ")}`.trim(),
    machine: {
      cpus: cpus().length,
      node: process.version,
      platform: process.platform,
      loadavg: [loadStart, loadavg()],
    },
    config: {
      topK: args.topK,
      chunkTokens: args.chunkTokens ?? DEFAULT_CONFIG.ingest.chunkTokens,
      chunkOverlap: args.chunkOverlap ?? DEFAULT_CONFIG.ingest.chunkOverlap,
      limit: args.limit ?? null,
      dajian: describeTuning(),
    },
    sets,
    latency,
    wallSeconds: (performance.now() - started) / 1000,
  };
  mkdirSync(args.out, { recursive: true });
  const jsonFile = join(args.out, `rag-${date}.json`);
  writeFileSync(jsonFile, JSON.stringify(report, null, 2) + "\n");
  writeFileSync(join(args.out, `rag-${date}.html`), htmlReport(report));
  const la = report.machine.loadavg.map((l) => l[0].toFixed(1)).join(" → ");
  console.log(
    `\nwall ${report.wallSeconds.toFixed(0)} s · ${cpus().length} CPUs, load average ${la} · results: ${jsonFile} (+ .html)`,
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
