// PDF text layer (pdf.js via unpdf) → lines → page furniture removed → paragraphs and headings per page.
import { getDocumentProxy } from "unpdf";
import { DajianError } from "../core/errors.js";
import { findRepeatedFurniture, furnitureKey, isListLine, isPageNumberLine, joinLines } from "./clean.js";
import type { LoaderContext } from "./parse.js";
import type { Block, ParsedDocument } from "./types.js";

interface Line {
  text: string;
  y: number;
  x: number;
  h: number;
}

interface TextItemLike {
  str?: string;
  transform?: number[];
  width?: number;
  height?: number;
  hasEOL?: boolean;
}

/** Group text items into visual lines (pdf.js splits lines into items at font or position changes). */
function toLines(items: TextItemLike[]): Line[] {
  const lines: Line[] = [];
  let cur: (Line & { xEnd: number }) | undefined;
  const end = () => {
    if (cur && cur.text.trim() !== "")
      lines.push({ text: cur.text.replace(/\s+/g, " ").trim(), y: cur.y, x: cur.x, h: cur.h });
    cur = undefined;
  };
  for (const it of items) {
    if (typeof it.str !== "string" || !it.transform) continue;
    const [, , , d, x, y] = it.transform;
    const h = Math.abs(it.height || d || 10);
    if (it.str !== "") {
      if (cur && Math.abs(y - cur.y) > Math.max(2, h * 0.5)) end();
      if (!cur) cur = { text: it.str, y, x, h, xEnd: x + (it.width ?? 0) };
      else {
        const gap = x - cur.xEnd;
        const needSpace = gap > h * 0.2 && !/\s$/.test(cur.text) && !/^\s/.test(it.str);
        cur.text += (needSpace ? " " : "") + it.str;
        cur.xEnd = x + (it.width ?? 0);
        cur.h = Math.max(cur.h, h);
      }
    }
    if (it.hasEOL) end();
  }
  end();
  return lines;
}

/**
 * Running-header/footer candidates: up to `depth` lines at the very top or bottom of the page that are set
 * apart from the body by a gap wider than normal line spacing (so a body paragraph's first line never is).
 */
function edgeIndices(lines: Line[], depth: number): Set<number> {
  const order = lines.map((l, i) => ({ y: l.y, h: l.h, i })).sort((a, b) => b.y - a.y);
  const out = new Set<number>();
  const take = (seq: typeof order) => {
    for (let k = 0; k < Math.min(depth, seq.length); k++) {
      const next = seq[k + 1];
      if (!next) {
        out.add(seq[k].i); // the page's only line(s)
        continue;
      }
      if (Math.abs(seq[k].y - next.y) > 1.8 * Math.max(seq[k].h, next.h)) {
        for (let j = 0; j <= k; j++) out.add(seq[j].i);
        return;
      }
    }
  };
  take(order);
  take([...order].reverse());
  return out;
}

function pdfError(err: unknown, fileName: string): DajianError {
  const name = (err as { name?: string })?.name ?? "";
  if (name === "PasswordException") {
    return new DajianError(
      "unsupported",
      `${fileName} is an encrypted (password-protected) PDF`,
      "remove the password (e.g. print to PDF, or qpdf --decrypt) and ingest it again",
      { cause: err },
    );
  }
  const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
  return new DajianError(
    "corrupt",
    `${fileName} is not a readable PDF (${msg.slice(0, 160)})`,
    "re-export the PDF from its source application or repair it (e.g. qpdf)",
    { cause: err },
  );
}

export async function loadPdf(bytes: Buffer, ctx: LoaderContext): Promise<Omit<ParsedDocument, "format">> {
  let pdf;
  try {
    pdf = await getDocumentProxy(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength).slice(), {
      verbosity: 0,
      isEvalSupported: false,
      disableFontFace: true,
      useSystemFonts: false,
      stopAtErrors: false,
    });
  } catch (err) {
    throw pdfError(err, ctx.fileName);
  }
  try {
    const pages: Line[][] = [];
    for (let p = 1; p <= pdf.numPages; p++) {
      ctx.checkDeadline();
      const page = await pdf.getPage(p);
      const content = await page.getTextContent();
      pages.push(toLines(content.items as TextItemLike[]));
      page.cleanup();
    }
    let title: string | undefined;
    try {
      const meta = await pdf.getMetadata();
      const t = (meta.info as { Title?: unknown } | undefined)?.Title;
      if (typeof t === "string" && t.trim()) title = t.trim();
    } catch {
      /* metadata is optional */
    }
    return { ...pagesToBlocks(pages), ...(title ? { title } : {}), pages: pdf.numPages };
  } catch (err) {
    if (err instanceof DajianError) throw err;
    throw pdfError(err, ctx.fileName);
  } finally {
    void pdf.destroy();
  }
}

/** Lines per page → blocks. Exported for tests of the cleaning rules on hand-made line sets. */
export function pagesToBlocks(pages: Line[][]): { blocks: Block[]; needsOcrPages: number[]; warnings: string[] } {
  const warnings: string[] = [];
  const needsOcrPages: number[] = [];
  const furniture = findRepeatedFurniture(
    pages.map((lines) => {
      const edges = edgeIndices(lines, 2);
      return lines.filter((_, i) => edges.has(i)).map((l) => l.text);
    }),
    4,
  );
  const cleaned = pages.map((lines) => {
    const edges = edgeIndices(lines, 2);
    return lines.filter((l, i) => !(edges.has(i) && (furniture.has(furnitureKey(l.text)) || isPageNumberLine(l.text))));
  });
  // Body font size: the height carrying the most characters (a median would pick the heading on short pages).
  const byHeight = new Map<number, number>();
  for (const l of cleaned.flat())
    byHeight.set(Math.round(l.h * 2) / 2, (byHeight.get(Math.round(l.h * 2) / 2) ?? 0) + l.text.length);
  const bodyH = [...byHeight.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] || 10;
  // Heading sizes, largest first → level 1, 2, 3.
  const headingSizes = [
    ...new Set(
      cleaned
        .flat()
        .filter((l) => l.h >= bodyH * 1.25)
        .map((l) => Math.round(l.h)),
    ),
  ].sort((a, b) => b - a);
  const blocks: Block[] = [];
  pages.forEach((raw, idx) => {
    const page = idx + 1;
    if (raw.length === 0) {
      needsOcrPages.push(page);
      warnings.push(`page ${page} has no text layer — needs OCR`);
      return;
    }
    const lines = cleaned[idx];
    const gaps: number[] = [];
    for (let i = 1; i < lines.length; i++) {
      const g = lines[i - 1].y - lines[i].y;
      if (g > 0 && Math.abs(lines[i].h - bodyH) < bodyH * 0.2) gaps.push(g);
    }
    // Line pitch: the lower quartile of gaps (paragraph gaps are the larger ones), and never more than
    // 1.35 × the font size, so a page of one-line paragraphs still splits.
    const sortedGaps = [...gaps].sort((a, b) => a - b);
    const lineGap = Math.min(sortedGaps[Math.floor(sortedGaps.length / 4)] ?? Infinity, bodyH * 1.35);
    let para: Line[] = [];
    let paraKind: "paragraph" | "heading" | "list_item" = "paragraph";
    let paraLevel = 0;
    const flush = () => {
      if (para.length) {
        const text = joinLines(para.map((l) => l.text));
        if (text) blocks.push({ kind: paraKind, text, page, ...(paraKind === "heading" ? { level: paraLevel } : {}) });
      }
      para = [];
    };
    for (const l of lines) {
      const isHeading = l.h >= bodyH * 1.25 && l.text.length <= 200;
      const kind = isHeading ? "heading" : isListLine(l.text) ? "list_item" : "paragraph";
      const prev = para[para.length - 1];
      const gap = prev ? prev.y - l.y : 0;
      const newPara =
        !prev ||
        kind !== paraKind ||
        kind === "list_item" ||
        (isHeading && Math.round(l.h) !== Math.round(prev.h)) ||
        gap > Math.max(lineGap * 1.45, prev.h * 1.3) ||
        gap < -prev.h; // jumped up: new column or a separate text box
      if (
        newPara &&
        !(kind === "paragraph" && paraKind === "list_item" && prev && gap <= lineGap * 1.2 && l.x > prev.x)
      ) {
        flush();
        paraKind = kind;
        paraLevel = isHeading ? Math.min(6, headingSizes.indexOf(Math.round(l.h)) + 1 || 1) : 0;
      }
      para.push(l);
    }
    flush();
  });
  return { blocks: joinAcrossPages(blocks), needsOcrPages, warnings };
}

/**
 * A paragraph cut by a page break (no sentence end on page N, paragraph text opening page N+1) is one
 * paragraph again, cited at the page where it starts; otherwise an answer spanning the break is lost.
 */
function joinAcrossPages(blocks: Block[]): Block[] {
  const out: Block[] = [];
  for (let i = 0; i < blocks.length; i++) {
    const b = blocks[i];
    const prev = out[out.length - 1];
    const lastOfPage = prev && prev.page !== b.page && prev.page !== undefined && b.page === prev.page + 1;
    if (
      lastOfPage &&
      prev.kind === "paragraph" &&
      b.kind === "paragraph" &&
      !/[。！？.!?:：;；"”’」』)）]$/.test(prev.text)
    ) {
      out[out.length - 1] = { ...prev, text: joinLines([prev.text, b.text]) };
      continue;
    }
    out.push(b);
  }
  return out;
}
