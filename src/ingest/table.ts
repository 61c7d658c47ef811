// One rendering of a table as text, shared by every loader and the chunker: the chunker relies on
// "line 0 = header, one line per row" to split between rows and to repeat the header.
import type { TableData } from "./types.js";

export const CELL_SEP = " | ";

/** Cells become single-line text so a row is always exactly one line. */
export function cleanCell(v: unknown): string {
  if (v === null || v === undefined) return "";
  return String(v).normalize("NFC").replace(/\s+/g, " ").trim();
}

export function makeTable(header: unknown[], rows: unknown[][], name?: string): TableData {
  const h = header.map(cleanCell);
  const width = Math.max(h.length, ...rows.map((r) => r.length), 0);
  const pad = (r: string[]) => (r.length < width ? [...r, ...Array(width - r.length).fill("")] : r);
  const cleanRows = rows.map((r) => pad(r.map(cleanCell))).filter((r) => r.some((c) => c !== ""));
  return { header: h.length > 0 ? pad(h) : [], rows: cleanRows, ...(name ? { name } : {}) };
}

export function renderRow(cells: string[]): string {
  return cells.join(CELL_SEP);
}

/** Header line (when present) then one line per row. */
export function renderTable(t: TableData): string {
  const lines = t.header.length > 0 ? [renderRow(t.header)] : [];
  for (const r of t.rows) lines.push(renderRow(r));
  return lines.join("\n");
}

/**
 * Pick a header row: the first row when it is all non-empty, non-numeric, distinct short labels and
 * later rows are not all like it. Otherwise the table gets no header (rows stand alone).
 */
export function detectHeader(rows: string[][]): { header: string[]; body: string[][] } {
  if (rows.length < 2) return { header: [], body: rows };
  const first = rows[0];
  const filled = first.filter((c) => c.trim() !== "");
  const looksLabel = (c: string) => c.length <= 60 && !/^[-+]?[\d.,%\s¥$€]+$/.test(c.trim());
  const distinct = new Set(filled.map((c) => c.trim())).size === filled.length;
  if (filled.length >= Math.max(1, Math.ceil(first.length / 2)) && filled.every(looksLabel) && distinct) {
    return { header: first, body: rows.slice(1) };
  }
  return { header: [], body: rows };
}
