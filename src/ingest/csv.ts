// CSV/TSV (RFC 4180): quoted fields may hold delimiters, doubled quotes and line breaks.
import { decodeText } from "./encoding.js";
import type { LoaderContext } from "./parse.js";
import { detectHeader, makeTable, renderTable } from "./table.js";
import type { ParsedDocument } from "./types.js";

function guessDelimiter(text: string): string {
  const firstLines = text.slice(0, 8192).split("\n").slice(0, 5);
  let best = ",";
  let bestScore = -1;
  for (const d of [",", "\t", ";", "|"]) {
    const counts = firstLines.map((l) => l.split(d).length - 1);
    const min = Math.min(...counts);
    const score = min > 0 ? min * 10 + (counts.every((c) => c === counts[0]) ? 5 : 0) : counts[0] > 0 ? 1 : 0;
    if (score > bestScore) {
      bestScore = score;
      best = d;
    }
  }
  return best;
}

export function parseCsv(text: string, delimiter = guessDelimiter(text)): { rows: string[][]; unterminated: boolean } {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let inQuotes = false;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const ch = text[i];
    if (inQuotes) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        inQuotes = false;
        i++;
        continue;
      }
      // Copy a run of ordinary characters at once (keeps giant quoted fields linear-time).
      const next = text.indexOf('"', i);
      const end = next < 0 ? n : next;
      field += text.slice(i, end);
      i = end;
      continue;
    }
    if (ch === '"' && field === "") {
      inQuotes = true;
      i++;
    } else if (ch === delimiter) {
      row.push(field);
      field = "";
      i++;
    } else if (ch === "\n" || ch === "\r") {
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
      i += ch === "\r" && text[i + 1] === "\n" ? 2 : 1;
    } else {
      field += ch;
      i++;
    }
  }
  if (field !== "" || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return { rows: rows.filter((r) => r.some((c) => c.trim() !== "")), unterminated: inQuotes };
}

export async function loadCsv(bytes: Buffer, ctx: LoaderContext): Promise<Omit<ParsedDocument, "format">> {
  const { text, encoding } = decodeText(bytes);
  const delimiter = ctx.fileName.toLowerCase().endsWith(".tsv") ? "\t" : undefined;
  const { rows, unterminated } = parseCsv(text, delimiter);
  const warnings = unterminated ? ["a quoted field is never closed; the rest of the file was read as one field"] : [];
  const { header, body } = detectHeader(rows);
  const table = makeTable(header, body);
  return { blocks: [{ kind: "table", text: renderTable(table), table }], needsOcrPages: [], warnings, encoding };
}
