// XLSX → (zip pre-scan) → exceljs → one heading (sheet name) + one table per sheet; page = sheet index.
import ExcelJS from "exceljs";
import type { LoaderContext } from "./parse.js";
import { detectHeader, makeTable, renderTable } from "./table.js";
import type { Block, ParsedDocument } from "./types.js";
import { scanZip } from "./zip.js";

function cellText(cell: ExcelJS.Cell): string {
  try {
    return cell.text ?? "";
  } catch {
    const v = cell.value as unknown;
    return v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
  }
}

export async function loadXlsx(bytes: Buffer, ctx: LoaderContext): Promise<Omit<ParsedDocument, "format">> {
  await scanZip(bytes, ctx.fileName, { maxUncompressed: ctx.maxZipUncompressed });
  ctx.checkDeadline();
  const wb = new ExcelJS.Workbook();
  await wb.xlsx.load(bytes as unknown as ArrayBuffer);
  const blocks: Block[] = [];
  const warnings: string[] = [];
  let index = 0;
  for (const ws of wb.worksheets) {
    index++;
    ctx.checkDeadline();
    const rows: string[][] = [];
    const width = ws.columnCount;
    ws.eachRow({ includeEmpty: false }, (row) => {
      const cells: string[] = [];
      for (let c = 1; c <= width; c++) cells.push(cellText(row.getCell(c)));
      rows.push(cells);
    });
    // Drop columns empty in every row (formatting-only columns widen tables for nothing).
    const used = Array.from({ length: width }, (_, c) => rows.some((r) => (r[c] ?? "").trim() !== ""));
    const trimmed = rows.map((r) => r.filter((_, c) => used[c]));
    if (trimmed.length === 0) {
      warnings.push(`sheet "${ws.name}" is empty`);
      continue;
    }
    const { header, body } = detectHeader(trimmed);
    const table = makeTable(header, body, ws.name);
    blocks.push({ kind: "heading", level: 1, text: ws.name, page: index });
    blocks.push({ kind: "table", text: renderTable(table), table, page: index });
  }
  return { blocks, pages: wb.worksheets.length, needsOcrPages: [], warnings };
}
