// `eval qa`: held-out question/answer pairs scored through llama.cpp — masked loss on the answers (rendered with
// the model's own chat template) and greedy answers checked by exact match and "answer contained" — for the base
// alone and base + adapter, in one report (text and a self-contained HTML page with the run's loss curve).

import { existsSync, readFileSync } from "node:fs";
import { noProgress, type ProgressFn } from "../../core/progress.js";
import { writeAtomic } from "../run/data.js";
import type { ChatFormatter } from "../../data/sft.js";
import type { SftExample } from "../../data/sft-read.js";
import { llamaCppGreedy, llamaCppLoss, openLlamaCpp } from "./llamacpp.js";

export interface QaItem {
  question: string;
  gold: string;
  answer: string;
  exact: boolean;
  contains: boolean;
}

export interface QaScore {
  model: string;
  adapter?: string;
  n: number;
  /** Mean loss per answer token (nats). */
  loss: number;
  tokens: number;
  exactMatch: number;
  contains: number;
  items: QaItem[];
}

/** Lower case, unified spaces, no surrounding punctuation or quotes. */
export function normalizeAnswer(s: string): string {
  return s
    .toLowerCase()
    .replace(/\s+/g, " ")
    .trim()
    .replace(/^[\s"'“”‘’.,;:!?。，！？]+|[\s"'“”‘’.,;:!?。，！？]+$/g, "");
}

export async function scoreQa(
  modelPath: string,
  adapterPath: string | undefined,
  examples: SftExample[],
  f: ChatFormatter,
  o: { maxTokens?: number; progress?: ProgressFn; threads?: number } = {},
): Promise<QaScore> {
  const progress = o.progress ?? noProgress;
  const rows = examples.map((ex) => f.encode(ex.messages));
  const longest = Math.max(...rows.map((r) => r.ids.length));
  const s = await openLlamaCpp(modelPath, adapterPath, {
    contextSize: longest + (o.maxTokens ?? 48) + 8,
    threads: o.threads,
  });
  try {
    const loss = await llamaCppLoss(s, rows);
    const items: QaItem[] = [];
    for (const ex of examples) {
      const last = ex.messages.map((m) => m.role).lastIndexOf("assistant");
      const gold = ex.messages[last].content;
      const prompt = f.tokenizer.encode(f.renderText(ex.messages.slice(0, last), true), { parseSpecial: true });
      const answer = await llamaCppGreedy(s, prompt, o.maxTokens ?? 48);
      const a = normalizeAnswer(answer);
      const g = normalizeAnswer(gold);
      items.push({
        question: ex.messages.slice(0, last).findLast((m) => m.role === "user")?.content ?? "",
        gold,
        answer,
        exact: a === g,
        contains: g.length > 0 && a.includes(g),
      });
      progress({ phase: "questions", done: items.length, total: examples.length });
    }
    const n = items.length;
    return {
      model: modelPath,
      adapter: adapterPath,
      n,
      loss: loss.tokens ? loss.lossSum / loss.tokens : NaN,
      tokens: loss.tokens,
      exactMatch: n ? items.filter((i) => i.exact).length / n : 0,
      contains: n ? items.filter((i) => i.contains).length / n : 0,
      items,
    };
  } finally {
    await s.dispose();
  }
}

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;

/** Before/after table as text lines. */
export function qaReportLines(before: QaScore, after?: QaScore): string[] {
  const rows: Array<[string, string, string]> = [
    ["questions", String(before.n), after ? String(after.n) : ""],
    ["answer loss (nats/token)", before.loss.toFixed(4), after ? after.loss.toFixed(4) : ""],
    ["exact match", pct(before.exactMatch), after ? pct(after.exactMatch) : ""],
    ["answer contained", pct(before.contains), after ? pct(after.contains) : ""],
  ];
  const head: [string, string, string] = ["metric", "base", after ? "base + adapter" : ""];
  const w = [0, 1, 2].map((i) => Math.max(...[head, ...rows].map((r) => r[i].length)));
  return [head, ...rows].map((r) =>
    r
      .map((c, i) => c.padEnd(w[i]))
      .join("  ")
      .trimEnd(),
  );
}

const esc = (s: string): string => s.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** A standalone HTML report: the table, per-question answers, and the run's loss curve when one is given. */
export function writeQaReport(path: string, before: QaScore, after?: QaScore, lossCurveHtml?: string): void {
  let curve = "";
  if (lossCurveHtml && existsSync(lossCurveHtml)) {
    const m = /<svg[\s\S]*<\/svg>/.exec(readFileSync(lossCurveHtml, "utf8"));
    if (m) curve = `<h3>Training and validation loss</h3>${m[0]}`;
  }
  const table = qaReportLines(before, after)
    .map((l) => esc(l))
    .join("\n");
  const qs = (after ?? before).items
    .map((it, i) => {
      const b = before.items[i];
      return `<tr><td>${esc(it.question)}</td><td>${esc(it.gold)}</td><td>${esc(b?.answer ?? "")}</td><td>${after ? esc(it.answer) : ""}</td></tr>`;
    })
    .join("");
  writeAtomic(
    path,
    `<!doctype html><html><head><meta charset="utf-8"><title>eval qa</title></head><body style="font-family:sans-serif">` +
      `<h2>Q&amp;A evaluation</h2><pre>${table}</pre>${curve}` +
      `<h3>Answers</h3><table border="1" cellpadding="4" style="border-collapse:collapse"><tr><th>question</th><th>gold</th><th>base</th><th>base + adapter</th></tr>${qs}</table>` +
      `</body></html>\n`,
  );
}
