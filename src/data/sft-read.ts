// Supervised fine-tuning examples from the formats people already have: alpaca JSONL (instruction / input / output
// / system / history), OpenAI chat `messages`, ShareGPT `conversations` (from / value), plain question/answer JSONL,
// JSON arrays of any of these, and Q&A tables in CSV or XLSX (columns question/answer or 问题/答案).
// Every example becomes a list of chat messages; a bad line is reported and skipped, never fatal.
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import ExcelJS from "exceljs";
import { DajianError, errorLine } from "../core/errors.js";
import { decodeText } from "../ingest/encoding.js";
import { parseCsv } from "../ingest/csv.js";
import type { ChatMessage } from "../models/types.js";
import { readFileRecords } from "./records.js";

export interface SftExample {
  messages: ChatMessage[];
  /** Where it came from, e.g. "train.jsonl:12" or "faq.xlsx:Sheet1!7". */
  source: string;
}

export type SftRead = SftExample | { source: string; error: string };

const ROLE: Record<string, ChatMessage["role"]> = {
  system: "system",
  user: "user",
  human: "user",
  assistant: "assistant",
  gpt: "assistant",
  model: "assistant",
  chatgpt: "assistant",
  bot: "assistant",
};

function invalid(msg: string, hint: string): DajianError {
  return new DajianError("invalid_input", msg, hint);
}

function contentText(c: unknown): string {
  if (typeof c === "string") return c;
  if (Array.isArray(c)) {
    // OpenAI content parts: keep the text parts, refuse anything else (images cannot be trained here).
    return c
      .map((p) => {
        const part = p as { type?: string; text?: unknown };
        if (part?.type === "text" && typeof part.text === "string") return part.text;
        throw invalid(`unsupported content part type "${part?.type}"`, "only text content can be trained");
      })
      .join("");
  }
  throw invalid("message content is not text", 'give "content" as a string');
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : typeof v === "number" ? String(v) : undefined;
}

/** One object in any supported shape → chat messages (throws a DajianError naming the problem). */
export function toMessages(obj: unknown): ChatMessage[] {
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) throw invalid("not a JSON object", "one object per line");
  const o = obj as Record<string, unknown>;
  const out: ChatMessage[] = [];
  const system = str(o.system);
  if (Array.isArray(o.messages) || Array.isArray(o.conversations)) {
    const openai = Array.isArray(o.messages);
    const list = (openai ? o.messages : o.conversations) as unknown[];
    if (system && !list.some((m) => (m as Record<string, unknown>)?.[openai ? "role" : "from"] === "system"))
      out.push({ role: "system", content: system });
    for (const m of list) {
      const r = m as Record<string, unknown>;
      const rawRole = String((openai ? r?.role : r?.from) ?? "").toLowerCase();
      const role = ROLE[rawRole];
      if (!role)
        throw invalid(
          `unsupported role "${rawRole}"`,
          "use system, user/human or assistant/gpt (tool calls cannot be trained yet)",
        );
      out.push({ role, content: contentText(openai ? r.content : r.value) });
    }
  } else if (str(o.instruction) !== undefined && str(o.output) !== undefined) {
    if (system) out.push({ role: "system", content: system });
    if (Array.isArray(o.history)) {
      for (const h of o.history as unknown[]) {
        if (!Array.isArray(h) || h.length !== 2 || typeof h[0] !== "string" || typeof h[1] !== "string")
          throw invalid('"history" must be a list of [question, answer] pairs', "fix the history field");
        out.push({ role: "user", content: h[0] }, { role: "assistant", content: h[1] });
      }
    }
    const input = str(o.input);
    out.push(
      { role: "user", content: input ? `${str(o.instruction)}\n\n${input}` : str(o.instruction)! },
      { role: "assistant", content: str(o.output)! },
    );
  } else {
    const q = str(o.question) ?? str(o["问题"]) ?? str(o.prompt);
    const a = str(o.answer) ?? str(o["答案"]) ?? str(o.response) ?? str(o.completion);
    if (q === undefined || a === undefined)
      throw invalid(
        "no recognised fields",
        'use {"instruction","input","output"}, {"messages":[…]}, {"conversations":[…]} or {"question","answer"}',
      );
    if (system) out.push({ role: "system", content: system });
    out.push({ role: "user", content: q }, { role: "assistant", content: a });
  }
  // Trailing user turns train nothing; an example must teach at least one non-empty answer.
  while (out.length && out[out.length - 1].role !== "assistant") out.pop();
  if (!out.some((m) => m.role === "assistant" && m.content.trim() !== ""))
    throw invalid("no assistant answer", "every example needs an assistant/gpt/output text to learn");
  return out;
}

const Q_COLS = ["question", "问题", "问", "q", "instruction", "prompt", "query"];
const A_COLS = ["answer", "答案", "答", "a", "output", "response", "reply"];
const S_COLS = ["system", "系统"];

/** Q&A rows of a table (first row = header) → examples. */
function* tableExamples(rows: string[][], where: string): Generator<SftRead> {
  if (rows.length === 0) return;
  const head = rows[0].map((h) => h.trim().toLowerCase());
  const find = (names: string[]) => head.findIndex((h) => names.includes(h));
  const qi = find(Q_COLS);
  const ai = find(A_COLS);
  if (qi < 0 || ai < 0)
    throw invalid(
      `${where}: no question/answer columns in header [${rows[0].join(", ")}]`,
      "name the columns question and answer (or 问题 and 答案)",
    );
  const si = find(S_COLS);
  for (let r = 1; r < rows.length; r++) {
    const q = rows[r][qi]?.trim() ?? "";
    const a = rows[r][ai]?.trim() ?? "";
    const source = `${where}!${r + 1}`;
    if (!q && !a) continue;
    if (!q || !a) {
      yield { source, error: `row ${r + 1} has an empty ${q ? "answer" : "question"}` };
      continue;
    }
    const sys = si >= 0 ? rows[r][si]?.trim() : "";
    yield {
      source,
      messages: [
        ...(sys ? [{ role: "system" as const, content: sys }] : []),
        { role: "user", content: q },
        { role: "assistant", content: a },
      ],
    };
  }
}

function cellText(v: ExcelJS.CellValue): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") {
    const o = v as unknown as Record<string, unknown>;
    if (Array.isArray(o.richText)) return (o.richText as Array<{ text: string }>).map((t) => t.text).join("");
    if ("result" in o) return String(o.result ?? "");
    if ("text" in o) return String(o.text);
    if (v instanceof Date) return v.toISOString().slice(0, 10);
  }
  return String(v);
}

async function* xlsxExamples(file: string, name: string): AsyncGenerator<SftRead> {
  const wb = new ExcelJS.Workbook();
  try {
    await wb.xlsx.readFile(file);
  } catch (err) {
    throw invalid(`cannot read ${file} as XLSX: ${errorLine(err)}`, "save it as .xlsx from Excel or WPS");
  }
  for (const ws of wb.worksheets) {
    const rows: string[][] = [];
    ws.eachRow({ includeEmpty: true }, (row) => {
      const cells: string[] = [];
      for (let c = 1; c <= ws.columnCount; c++) cells.push(cellText(row.getCell(c).value));
      rows.push(cells);
    });
    if (rows.length) yield* tableExamples(rows, `${name}:${ws.name}`);
  }
}

/** Read every example of one file; bad lines/rows come back as { error } and the rest continue. */
export async function* readSftExamples(file: string): AsyncGenerator<SftRead> {
  const name = file.split(/[\\/]/).pop() ?? file;
  const ext = extname(file).toLowerCase();
  if (ext === ".xlsx") return yield* xlsxExamples(file, name);
  if (ext === ".csv" || ext === ".tsv") {
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch {
      throw new DajianError("not_found", `data file not found: ${file}`, "check the path");
    }
    return yield* tableExamples(parseCsv(decodeText(bytes).text, ext === ".tsv" ? "\t" : undefined).rows, name);
  }
  if (ext === ".json") {
    let arr: unknown;
    try {
      arr = JSON.parse(readFileSync(file, "utf8"));
    } catch (err) {
      throw invalid(`cannot read ${file} as JSON: ${errorLine(err)}`, "give a JSON array of examples, or JSONL");
    }
    if (!Array.isArray(arr)) throw invalid(`${file} is not a JSON array`, "give a JSON array of examples, or JSONL");
    for (let i = 0; i < arr.length; i++) yield one(arr[i], `${name}[${i}]`);
    return;
  }
  if (ext !== ".jsonl" && ext !== ".ndjson")
    throw new DajianError(
      "unsupported",
      `unknown data file type ${ext || "(none)"}: ${file}`,
      "use .jsonl, .json, .csv or .xlsx",
    );
  for await (const rec of readFileRecords(file, { format: "lines" })) {
    let v: unknown;
    try {
      v = JSON.parse(rec.text);
    } catch {
      yield { source: rec.id, error: "not valid JSON" };
      continue;
    }
    yield one(v, rec.id);
  }
}

function one(v: unknown, source: string): SftRead {
  try {
    return { source, messages: toMessages(v) };
  } catch (err) {
    return { source, error: errorLine(err) };
  }
}
