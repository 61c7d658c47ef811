// Corpus statistics in one streaming pass: documents, characters, tokens (with a GGUF model's tokenizer), language
// mix, a length histogram and the duplicate rate (the same exact + MinHash detector as `data dedup`).
// Also renders a self-contained HTML report (inline SVG bars, no scripts, no network).
import { writeFileSync } from "node:fs";
import type { ProgressFn } from "../core/progress.js";
import type { BpeTokenizer } from "../tokenizer/bpe.js";
import { profileText, type Lang } from "./clean.js";
import { Deduper, type DedupOptions } from "./minhash.js";
import { openSource, type SourceSpec } from "./pipeline.js";

export interface HistogramBin {
  /** Inclusive lower and exclusive upper bound in characters (upper undefined = no bound). */
  from: number;
  to?: number;
  count: number;
}

export interface CorpusStats {
  documents: number;
  characters: number;
  /** Undefined without a tokenizer. */
  tokens?: number;
  tokenizer?: string;
  languages: Record<Lang, number>;
  /** Characters per language (a mixed corpus can be few zh documents but most of the text). */
  languageChars: Record<Lang, number>;
  minChars: number;
  maxChars: number;
  meanChars: number;
  histogram: HistogramBin[];
  /** Share of non-space characters that are digits / symbols, over the whole corpus. */
  digitRatio: number;
  symbolRatio: number;
  exactDuplicates: number;
  nearDuplicates: number;
  duplicateRate: number;
  badLines: number;
}

// Bins of doubling width: <16, 16–32, …, ≥ 2^20 characters.
const EDGES = Array.from({ length: 17 }, (_, i) => 16 * 2 ** i);

function binOf(chars: number): number {
  let i = 0;
  while (i < EDGES.length && chars >= EDGES[i]) i++;
  return i;
}

export async function corpusStats(
  spec: SourceSpec,
  o: { tokenizer?: BpeTokenizer; tokenizerName?: string; dedup?: DedupOptions | false; onProgress?: ProgressFn } = {},
): Promise<CorpusStats> {
  const src = openSource(spec, o.onProgress);
  const dd = o.dedup === false ? undefined : new Deduper(o.dedup);
  const langs = (): Record<Lang, number> => ({ zh: 0, en: 0, mixed: 0, other: 0 });
  const s: CorpusStats = {
    documents: 0,
    characters: 0,
    ...(o.tokenizer ? { tokens: 0, tokenizer: o.tokenizerName } : {}),
    languages: langs(),
    languageChars: langs(),
    minChars: 0,
    maxChars: 0,
    meanChars: 0,
    histogram: [],
    digitRatio: 0,
    symbolRatio: 0,
    exactDuplicates: 0,
    nearDuplicates: 0,
    duplicateRate: 0,
    badLines: 0,
  };
  const bins = new Array<number>(EDGES.length + 1).fill(0);
  let visible = 0;
  let digits = 0;
  let symbols = 0;
  let min = Infinity;
  for await (const r of src.records) {
    const p = profileText(r.text);
    s.documents++;
    s.characters += p.chars;
    s.languages[p.lang]++;
    s.languageChars[p.lang] += p.chars;
    min = Math.min(min, p.chars);
    s.maxChars = Math.max(s.maxChars, p.chars);
    bins[binOf(p.chars)]++;
    visible += p.chars - p.spaces;
    digits += p.digits;
    symbols += p.symbols;
    if (o.tokenizer) s.tokens! += o.tokenizer.encode(r.text).length;
    dd?.check(r.text);
  }
  s.minChars = s.documents ? min : 0;
  s.meanChars = s.documents ? s.characters / s.documents : 0;
  s.digitRatio = visible ? digits / visible : 0;
  s.symbolRatio = visible ? symbols / visible : 0;
  s.histogram = bins
    .map((count, i) => ({ from: i === 0 ? 0 : EDGES[i - 1], ...(i < EDGES.length ? { to: EDGES[i] } : {}), count }))
    .filter((b, i, all) => b.count > 0 || (all.slice(0, i).some((x) => x.count) && all.slice(i).some((x) => x.count)));
  if (dd) {
    s.exactDuplicates = dd.counts.exact;
    s.nearDuplicates = dd.counts.near;
    s.duplicateRate = dd.duplicateRate;
  }
  s.badLines = src.bad.count;
  return s;
}

const esc = (v: unknown) =>
  String(v).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

const fmtNum = (n: number) => n.toLocaleString("en-US");
const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

function bars(rows: Array<{ label: string; value: number }>): string {
  const max = Math.max(1, ...rows.map((r) => r.value));
  const h = 22;
  const w = 420;
  const body = rows
    .map((r, i) => {
      const bw = Math.round((r.value / max) * w);
      const y = i * h;
      return (
        `<text x="0" y="${y + 15}" font-size="12">${esc(r.label)}</text>` +
        `<rect x="130" y="${y + 3}" width="${bw}" height="${h - 6}" fill="#4a7bd0"/>` +
        `<text x="${136 + bw}" y="${y + 15}" font-size="12">${fmtNum(r.value)}</text>`
      );
    })
    .join("");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w + 220}" height="${rows.length * h}">${body}</svg>`;
}

/** A readable, self-contained HTML page for a stats result. */
export function statsHtml(s: CorpusStats, title: string): string {
  const row = (k: string, v: string) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`;
  const rangeLabel = (b: HistogramBin) =>
    b.to === undefined ? `≥ ${fmtNum(b.from)}` : `${fmtNum(b.from)}–${fmtNum(b.to)}`;
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:60em}table{border-collapse:collapse}
th,td{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}h2{margin-top:1.5em}</style></head><body>
<h1>Corpus statistics: ${esc(title)}</h1>
<table>
${row("documents", fmtNum(s.documents))}
${row("characters", fmtNum(s.characters))}
${s.tokens !== undefined ? row(`tokens (${s.tokenizer ?? "tokenizer"})`, fmtNum(s.tokens)) : ""}
${row("characters per document (min / mean / max)", `${fmtNum(s.minChars)} / ${fmtNum(Math.round(s.meanChars))} / ${fmtNum(s.maxChars)}`)}
${row("digit share / symbol share", `${pct(s.digitRatio)} / ${pct(s.symbolRatio)}`)}
${row("duplicates (exact + near)", `${fmtNum(s.exactDuplicates)} + ${fmtNum(s.nearDuplicates)} = ${pct(s.duplicateRate)}`)}
${s.badLines ? row("malformed lines skipped", fmtNum(s.badLines)) : ""}
</table>
<h2>Language mix (documents)</h2>
${bars((Object.keys(s.languages) as Lang[]).map((l) => ({ label: l, value: s.languages[l] })))}
<h2>Document length (characters)</h2>
${bars(s.histogram.map((b) => ({ label: rangeLabel(b), value: b.count })))}
</body></html>
`;
}

export function writeStatsHtml(file: string, s: CorpusStats, title: string): void {
  writeFileSync(file, statsHtml(s, title));
}
