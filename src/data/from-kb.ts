// Question/answer pairs from a knowledge base's documents, for vertical fine-tuning (`dajian data from-kb`).
// With a chat model: each passage is given to the model, which returns JSON pairs (schema-constrained) answered
// only from the passage. Without one: deterministic templates —
//   headings    → "What does the document say about <heading>?" / "关于<heading>有哪些规定？" (answer: the section)
//   tables      → "What is the <column> of <row key>?" / "<row key>的<column>是多少？" (answer: the cell, as a sentence)
//   definitions → "X means Y" / "X 是指 Y" sentences → "What is X?" / "什么是X？" (answer: the sentence)
// Every pair keeps its source (document, page, heading) and method, and a review report (Markdown + HTML) is
// written next to the output so a person reads the pairs before any training.
import { writeFileSync } from "node:fs";
import { DajianError, errorLine } from "../core/errors.js";
import { noProgress, type ProgressFn } from "../core/progress.js";
import type { KnowledgeBases } from "../index/kb.js";
import type { ChunkRecord } from "../index/store.js";
import type { SearchSource } from "../index/types.js";
import { sentenceRanges } from "../ingest/index.js";
import type { ChatModel } from "../models/types.js";
import { profileText } from "./clean.js";
import { RecordWriter, withWriters } from "./records.js";

export type QaMethod = "heading" | "table" | "definition" | "model";

export interface QaPair {
  id: string;
  question: string;
  answer: string;
  source: SearchSource;
  method: QaMethod;
}

export interface FromKbOptions {
  /** Generate with this model; templates otherwise. */
  model?: ChatModel;
  /** Stop after this many pairs. */
  max?: number;
  /** Pairs the model is asked for per passage (default 3). */
  perPassage?: number;
  /** Longest answer kept from a section (characters; default 600). */
  maxAnswerChars?: number;
  onProgress?: ProgressFn;
  signal?: AbortSignal;
}

export interface FromKbReport {
  kb: string;
  documents: number;
  pairs: number;
  byMethod: Record<QaMethod, number>;
  /** Passages the model failed on (the rest continue); first 10 reasons listed. */
  failures: number;
  failureSamples: string[];
  out: string;
  reviewMarkdown: string;
  reviewHtml: string;
}

type Lang = "zh" | "en";
const langOf = (s: string): Lang => (profileText(s).han > 0 && profileText(s).lang !== "en" ? "zh" : "en");

const clip = (s: string, max: number): string => {
  if (s.length <= max) return s;
  // Cut at the last sentence end inside the limit, else hard.
  let end = 0;
  for (const [, e] of sentenceRanges(s)) if (e <= max) end = e;
  return (end > max / 3 ? s.slice(0, end) : s.slice(0, max) + "…").trim();
};

/** Body of a chunk without its leading heading lines. */
function bodyOf(c: ChunkRecord): string {
  const heads = new Set(c.headingPath.map((h) => h.trim()));
  const lines = c.text.split("\n");
  let i = 0;
  while (i < lines.length && (lines[i].trim() === "" || heads.has(lines[i].replace(/^#+\s*/, "").trim()))) i++;
  return lines.slice(i).join("\n").trim();
}

function sourceOf(doc: string, c: ChunkRecord): SearchSource {
  return {
    document: doc,
    ...(c.page !== undefined ? { page: c.page } : {}),
    ...(c.headingPath.length ? { heading: c.headingPath.join(" > ") } : {}),
  };
}

type Draft = Omit<QaPair, "id">;

function headingPairs(doc: string, chunks: ChunkRecord[], maxChars: number): Draft[] {
  const out: Draft[] = [];
  const seen = new Set<string>();
  for (const c of chunks) {
    if (c.kind !== "text" || c.headingPath.length === 0) continue;
    const key = c.headingPath.join("\u0000");
    if (seen.has(key)) continue;
    const body = bodyOf(c);
    if (body.length < 15) continue;
    seen.add(key);
    const h = c.headingPath[c.headingPath.length - 1]
      .replace(/^第[一二三四五六七八九十百\d]+[章节条部分]\s*/, "")
      .trim();
    const title = c.headingPath.length > 1 ? c.headingPath[0] : doc.replace(/\.[^.]+$/, "");
    const question =
      langOf(h + body) === "zh" ? `《${title}》中关于“${h}”有哪些规定？` : `What does "${title}" say about ${h}?`;
    out.push({ question, answer: clip(body, maxChars), source: sourceOf(doc, c), method: "heading" });
  }
  return out;
}

const SEP = " | ";
const NUMERIC = /^[-+]?[\d.,%\s¥$€]+$/;

function tablePairs(doc: string, chunks: ChunkRecord[]): Draft[] {
  const out: Draft[] = [];
  for (const c of chunks) {
    if (c.kind !== "table") continue;
    const lines = c.text.split("\n").filter((l) => l.includes(SEP));
    if (lines.length < 2) continue;
    const header = lines[0].split(SEP).map((s) => s.trim());
    if (header.length < 2 || header.some((h) => h === "" || NUMERIC.test(h))) continue; // no usable header
    for (const line of lines.slice(1)) {
      const cells = line.split(SEP).map((s) => s.trim());
      if (cells.length !== header.length || !cells[0] || NUMERIC.test(cells[0])) continue;
      for (let j = 1; j < header.length; j++) {
        if (!cells[j]) continue;
        const zh = langOf(header.join("") + cells.join("")) === "zh";
        out.push({
          question: zh ? `${cells[0]}的${header[j]}是什么？` : `What is the ${header[j]} of ${cells[0]}?`,
          answer: zh ? `${cells[0]}的${header[j]}是${cells[j]}。` : `The ${header[j]} of ${cells[0]} is ${cells[j]}.`,
          source: sourceOf(doc, c),
          method: "table",
        });
      }
    }
  }
  return out;
}

const ZH_DEF = /^\s*([^，,。；：:\s“”"]{2,16}?)(?:是指|指的是|定义为|即是|是)([^。！？]{4,}[。！？]?)$/;
const ZH_PRONOUN = /^(这|那|它|他|她|我|你|其|此|该|本|每|各|如|若|但|而|因|所|也|都|就|还|只|又)/;
const EN_DEF =
  /^\s*(?:An?\s+|The\s+)?([A-Z][\w\s()'-]{1,48}?)\s+(means|refers to|is defined as|is an?|is the)\s+(.{4,})$/;
const EN_PRONOUN = /^(It|This|That|These|Those|There|He|She|They|We|You|I|Here|What|Which|Who)\b/;

function definitionPairs(doc: string, chunks: ChunkRecord[]): Draft[] {
  const out: Draft[] = [];
  for (const c of chunks) {
    if (c.kind !== "text") continue;
    const text = bodyOf(c);
    for (const [s, e] of sentenceRanges(text)) {
      const sent = text.slice(s, e).trim();
      if (sent.length > 300) continue;
      const zh = ZH_DEF.exec(sent);
      if (zh && !ZH_PRONOUN.test(zh[1])) {
        out.push({ question: `什么是${zh[1]}？`, answer: sent, source: sourceOf(doc, c), method: "definition" });
        continue;
      }
      const en = EN_DEF.exec(sent);
      if (en && !EN_PRONOUN.test(en[1]) && en[1].split(/\s+/).length <= 6) {
        const q = en[2] === "means" || en[2] === "refers to" ? `What does ${en[1]} mean?` : `What is ${en[1]}?`;
        out.push({ question: q, answer: sent, source: sourceOf(doc, c), method: "definition" });
      }
    }
  }
  return out;
}

const PAIR_SCHEMA = {
  type: "object",
  properties: {
    pairs: {
      type: "array",
      items: {
        type: "object",
        properties: { question: { type: "string" }, answer: { type: "string" } },
        required: ["question", "answer"],
      },
    },
  },
  required: ["pairs"],
};

async function modelPairs(
  model: ChatModel,
  doc: string,
  c: ChunkRecord,
  n: number,
  signal?: AbortSignal,
): Promise<Draft[]> {
  const zh = langOf(c.text) === "zh";
  const system = zh
    ? "你根据给定的文档片段编写问答对，用于训练企业助手。问题要具体、可独立理解；答案只能来自片段原文，不得编造。只输出 JSON。"
    : "You write question-answer pairs from a document passage to train a company assistant. Questions must be specific and self-contained; answers must come only from the passage. Output JSON only.";
  const user = zh
    ? `文档：${doc}${c.headingPath.length ? `（${c.headingPath.join(" > ")}）` : ""}\n片段：\n${c.text}\n\n请写出最多 ${n} 个问答对，格式 {"pairs":[{"question":"…","answer":"…"}]}。`
    : `Document: ${doc}${c.headingPath.length ? ` (${c.headingPath.join(" > ")})` : ""}\nPassage:\n${c.text}\n\nWrite at most ${n} pairs as {"pairs":[{"question":"…","answer":"…"}]}.`;
  const r = await model.chat(
    [
      { role: "system", content: system },
      { role: "user", content: user },
    ],
    { temperature: 0.2, maxTokens: 200 * n, jsonSchema: PAIR_SCHEMA, signal },
  );
  let parsed: { pairs?: Array<{ question?: unknown; answer?: unknown }> };
  try {
    parsed = JSON.parse(r.text) as typeof parsed;
  } catch {
    throw new Error(`model output is not JSON: ${r.text.slice(0, 80)}`);
  }
  return (parsed.pairs ?? [])
    .filter((p) => typeof p.question === "string" && typeof p.answer === "string")
    .map((p) => ({ question: String(p.question).trim(), answer: String(p.answer).trim() }))
    .filter((p) => p.question.length >= 4 && p.answer.length >= 1)
    .slice(0, n)
    .map((p) => ({ ...p, source: sourceOf(doc, c), method: "model" as const }));
}

/** Spread a cap over the list deterministically (every k-th), so every document and method stays represented. */
function spread<T>(xs: T[], max: number): T[] {
  if (xs.length <= max) return xs;
  const out: T[] = [];
  for (let i = 0; i < max; i++) out.push(xs[Math.floor((i * xs.length) / max)]);
  return out;
}

/** Build Q&A pairs from every document of `kb`, write them as JSONL (alpaca fields + source) and the reviews. */
export async function qaFromKb(
  kbs: KnowledgeBases,
  kb: string,
  out: string,
  o: FromKbOptions = {},
): Promise<FromKbReport> {
  const onProgress = o.onProgress ?? noProgress;
  if (o.max !== undefined && (!Number.isInteger(o.max) || o.max < 1))
    throw new DajianError("invalid_input", `--max must be a positive integer, got ${o.max}`, "pass e.g. --max 500");
  const docs = await kbs.documents(kb);
  if (docs.length === 0)
    throw new DajianError(
      "invalid_input",
      `knowledge base '${kb}' has no documents`,
      `add some with \`dajian ingest ${kb} PATH\``,
    );
  const drafts: Draft[] = [];
  let failures = 0;
  const failureSamples: string[] = [];
  const max = o.max ?? Infinity;
  let done = 0;
  for (const d of docs) {
    const chunks = await kbs.store.documentChunks(d.id);
    if (o.model) {
      for (const c of chunks) {
        if (drafts.length >= max) break;
        if (c.text.trim().length < 40) continue;
        try {
          drafts.push(...(await modelPairs(o.model, d.name, c, o.perPassage ?? 3, o.signal)));
        } catch (err) {
          if (o.signal?.aborted) throw err;
          failures++;
          if (failureSamples.length < 10) failureSamples.push(`${d.name}#${c.ordinal}: ${errorLine(err)}`);
        }
      }
    } else {
      drafts.push(...headingPairs(d.name, chunks, o.maxAnswerChars ?? 600));
      drafts.push(...tablePairs(d.name, chunks));
      drafts.push(...definitionPairs(d.name, chunks));
    }
    onProgress({
      phase: "documents",
      done: ++done,
      total: docs.length,
      item: d.name,
      counters: { pairs: drafts.length },
    });
  }
  // One pair per question (the first source wins), then the cap.
  const seen = new Set<string>();
  const unique = drafts.filter((p) => {
    const k = p.question.normalize("NFKC").toLowerCase().replace(/\s+/g, "");
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  const pairs: QaPair[] = spread(unique, max).map((p, i) => ({ id: `q${String(i + 1).padStart(5, "0")}`, ...p }));
  const w = new RecordWriter(out, "jsonl");
  await withWriters([w], async () => {
    for (const p of pairs)
      await w.writeLine(
        JSON.stringify({
          id: p.id,
          instruction: p.question,
          input: "",
          output: p.answer,
          source: p.source,
          method: p.method,
        }),
      );
  });
  const byMethod: Record<QaMethod, number> = { heading: 0, table: 0, definition: 0, model: 0 };
  for (const p of pairs) byMethod[p.method]++;
  const base = out.replace(/\.(jsonl|ndjson|json)$/i, "");
  const report: FromKbReport = {
    kb,
    documents: docs.length,
    pairs: pairs.length,
    byMethod,
    failures,
    failureSamples,
    out,
    reviewMarkdown: `${base}.review.md`,
    reviewHtml: `${base}.review.html`,
  };
  writeFileSync(report.reviewMarkdown, reviewMarkdown(report, pairs));
  writeFileSync(report.reviewHtml, reviewHtml(report, pairs));
  return report;
}

const srcText = (s: SearchSource) =>
  [s.document, s.page !== undefined ? `p. ${s.page}` : "", s.heading ?? ""].filter(Boolean).join(" · ");

function summaryLines(r: FromKbReport): string[] {
  return [
    `Knowledge base: ${r.kb} · documents: ${r.documents} · pairs: ${r.pairs}`,
    `By method: ${Object.entries(r.byMethod)
      .filter(([, n]) => n)
      .map(([k, n]) => `${k} ${n}`)
      .join(", ")}${r.failures ? ` · passages the model failed on: ${r.failures}` : ""}`,
    `Data file: ${r.out} — delete the lines of pairs you reject (by id) before training.`,
  ];
}

export function reviewMarkdown(r: FromKbReport, pairs: QaPair[]): string {
  const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n+/g, "<br>");
  return [
    `# Q&A review: ${r.kb}`,
    "",
    ...summaryLines(r).map((l) => `- ${l}`),
    "",
    "| id | question | answer | source | method |",
    "|---|---|---|---|---|",
    ...pairs.map(
      (p) => `| ${p.id} | ${cell(p.question)} | ${cell(p.answer)} | ${cell(srcText(p.source))} | ${p.method} |`,
    ),
    "",
  ].join("\n");
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

export function reviewHtml(r: FromKbReport, pairs: QaPair[]): string {
  const rows = pairs
    .map(
      (p) =>
        `<tr><td>${p.id}</td><td>${esc(p.question)}</td><td>${esc(p.answer).replace(/\n/g, "<br>")}</td>` +
        `<td>${esc(srcText(p.source))}</td><td>${p.method}</td></tr>`,
    )
    .join("\n");
  return `<!doctype html><html><head><meta charset="utf-8"><title>Q&amp;A review: ${esc(r.kb)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse;width:100%}
th,td{border:1px solid #ddd;padding:.35em .6em;vertical-align:top;text-align:left}th{background:#f4f4f4}
td:nth-child(3){max-width:40em}</style></head><body>
<h1>Q&amp;A review: ${esc(r.kb)}</h1>
<ul>${summaryLines(r)
    .map((l) => `<li>${esc(l)}</li>`)
    .join("")}</ul>
<table><thead><tr><th>id</th><th>question</th><th>answer</th><th>source</th><th>method</th></tr></thead>
<tbody>
${rows}
</tbody></table></body></html>
`;
}
