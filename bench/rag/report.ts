// Console tables and the HTML report for bench:rag. Pure formatting: every number comes from the run's JSON.
import type { Summary } from "./metrics.js";

export interface IngestFigures {
  files: number;
  bytes: number;
  pages: number;
  chunks: number;
  seconds: number;
  cpuSeconds: number;
  pdf: { files: number; pages: number; seconds: number; cpuSeconds: number };
  failed: string[];
  peakRssMb: number;
}

export interface SetResult {
  set: string;
  lang: "zh" | "en";
  budget: number;
  queries: number;
  skipped: number;
  totalQueries: number;
  docs: number;
  formats: Record<string, number>;
  ingest: IngestFigures;
  dajian: Summary;
  baselines: Record<string, Summary & { chunks: number; cached: boolean }>;
  peakRssMb: number;
}

export interface LatencyResult {
  chunks: number;
  queries: number;
  p50ms: number;
  p95ms: number;
  cpuP50ms: number;
  cpuP95ms: number;
  loadavg: number;
  buildSeconds: number;
  cached: boolean;
  peakRssMb: number;
}

export interface RagReport {
  date: string;
  command: string;
  machine: { cpus: number; node: string; platform: string; loadavg: number[][] };
  config: Record<string, unknown>;
  sets: SetResult[];
  latency: LatencyResult[];
  wallSeconds: number;
}

const pct = (x: number) => (x * 100).toFixed(1);
const fix = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "–");

function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  ")).join("\n");
}

/** The strongest baseline variant (highest answer-recall): dajian is compared with it as well as the default. */
export function strongestBaseline(r: SetResult): [string, Summary] | undefined {
  const entries = Object.entries(r.baselines);
  if (entries.length === 0) return undefined;
  return entries.reduce((a, b) => (b[1].answerRecall > a[1].answerRecall ? b : a));
}

export function setTable(r: SetResult): string {
  const head = `${r.set} (${r.lang}, ${r.docs} documents, ${r.queries} questions${
    r.queries < r.totalQueries ? ` of ${r.totalQueries}` : ""
  }, budget ${r.budget} chars; skipped ${r.skipped} with non-span answers)`;
  const rows: string[][] = [["metric", "dajian", ...Object.keys(r.baselines).map((k) => k)]];
  const bl = Object.values(r.baselines);
  rows.push([`answer-recall@${r.budget}`, pct(r.dajian.answerRecall), ...bl.map((b) => pct(b.answerRecall))]);
  for (const k of Object.keys(r.dajian.recallAt)) {
    rows.push([`doc recall${k}`, pct(r.dajian.recallAt[k]), ...bl.map((b) => pct(b.recallAt[k]))]);
  }
  rows.push(["doc MRR", fix(r.dajian.mrr, 3), ...bl.map((b) => fix(b.mrr, 3))]);
  rows.push(["search p50 ms", fix(r.dajian.p50ms, 2), ...bl.map((b) => fix(b.p50ms, 2))]);
  rows.push(["search p95 ms", fix(r.dajian.p95ms, 2), ...bl.map((b) => fix(b.p95ms, 2))]);
  rows.push(["search CPU p50 ms", fix(r.dajian.cpuP50ms ?? NaN, 2), ...bl.map((b) => fix(b.cpuP50ms ?? NaN, 2))]);
  rows.push(["search CPU p95 ms", fix(r.dajian.cpuP95ms ?? NaN, 2), ...bl.map((b) => fix(b.cpuP95ms ?? NaN, 2))]);
  rows.push(["chunks", String(r.ingest.chunks), ...Object.values(r.baselines).map((b) => String(b.chunks))]);
  const diffs = Object.entries(r.baselines).map(
    ([k, b]) =>
      `${k}: ${r.dajian.answerRecall >= b.answerRecall ? "+" : ""}${pct(r.dajian.answerRecall - b.answerRecall)} points` +
      ` (×${fix(b.answerRecall > 0 ? r.dajian.answerRecall / b.answerRecall : Infinity, 2)}` +
      `, misses ×${fix(1 - b.answerRecall > 0 ? (1 - r.dajian.answerRecall) / (1 - b.answerRecall) : NaN, 2)})` +
      `${b.cached ? " [baseline cached]" : ""}`,
  );
  const ing = r.ingest;
  const ingLine =
    `ingest: ${ing.files} files, ${(ing.bytes / 1e6).toFixed(2)} MB, ${ing.pages} pages, ${ing.chunks} chunks in ` +
    `${fix(ing.seconds, 1)} s → ${fix(ing.pages / ing.seconds, 1)} pages/s, ${fix(ing.bytes / 1e6 / ing.seconds, 2)} MB/s ` +
    `(CPU ${fix(ing.cpuSeconds, 1)} s → ${fix(ing.bytes / 1e6 / ing.cpuSeconds, 2)} MB per CPU-s)\n` +
    `text-PDF: ${ing.pdf.files} files / ${ing.pdf.pages} pages in ${fix(ing.pdf.seconds, 1)} s → ` +
    `${fix(ing.pdf.pages / ing.pdf.seconds, 1)} pages/s (CPU ${fix(ing.pdf.cpuSeconds, 1)} s → ` +
    `${fix(ing.pdf.pages / ing.pdf.cpuSeconds, 1)} pages per CPU-s); peak RSS ${fix(r.peakRssMb, 0)} MB` +
    (ing.failed.length ? `; FAILED ${ing.failed.length}: ${ing.failed.slice(0, 3).join("; ")}` : "");
  return [head, table(rows), ...(diffs.length ? ["dajian vs " + diffs.join(" · ")] : []), ingLine].join("\n");
}

export function latencyTable(ls: LatencyResult[]): string {
  const rows = [
    ["chunks", "queries", "p50 ms", "p95 ms", "CPU p50 ms", "CPU p95 ms", "load avg", "build s", "peak RSS MB"],
  ];
  for (const l of ls) {
    rows.push([
      String(l.chunks),
      String(l.queries),
      fix(l.p50ms, 2),
      fix(l.p95ms, 2),
      fix(l.cpuP50ms, 2),
      fix(l.cpuP95ms, 2),
      fix(l.loadavg, 1),
      l.cached ? "cached" : fix(l.buildSeconds, 1),
      fix(l.peakRssMb, 0),
    ]);
  }
  return table(rows);
}

export function summaryTable(sets: SetResult[]): string {
  const rows = [["set", "dajian", "langchain", "Δ pts", "langchain+jieba", "Δ pts", "PDF p/s", "p/CPU-s", "MB/s"]];
  for (const r of sets) {
    const a = r.dajian.answerRecall;
    const b = r.baselines["langchain"];
    const j = r.baselines["langchain+jieba"];
    rows.push([
      r.set,
      pct(a),
      b ? pct(b.answerRecall) : "–",
      b ? pct(a - b.answerRecall) : "–",
      j ? pct(j.answerRecall) : "–",
      j ? pct(a - j.answerRecall) : "–",
      fix(r.ingest.pdf.pages / r.ingest.pdf.seconds, 1),
      fix(r.ingest.pdf.pages / r.ingest.pdf.cpuSeconds, 1),
      fix(r.ingest.bytes / 1e6 / r.ingest.seconds, 2),
    ]);
  }
  return table(rows);
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

export function htmlReport(rep: RagReport): string {
  const sections = rep.sets.map((r) => `<h2>${esc(r.set)}</h2><pre>${esc(setTable(r))}</pre>`).join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dajian bench:rag ${esc(rep.date)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em}
pre{background:#f6f8fa;padding:1em;overflow-x:auto;font-size:13px}</style></head><body>
<h1>dajian bench:rag — ${esc(rep.date)}</h1>
<p>Command: <code>${esc(rep.command)}</code> · ${rep.machine.cpus} CPUs · Node ${esc(rep.machine.node)} ·
load average at start/end ${esc(rep.machine.loadavg.map((l) => l[0].toFixed(1)).join(" / "))} ·
wall ${rep.wallSeconds.toFixed(0)} s</p>
<h2>Summary (answer-recall within the context budget, %)</h2><pre>${esc(summaryTable(rep.sets))}</pre>
${sections}
<h2>Search latency (synthetic knowledge base)</h2><pre>${esc(latencyTable(rep.latency))}</pre>
<h2>Configuration</h2><pre>${esc(JSON.stringify(rep.config, null, 2))}</pre>
</body></html>
`;
}
