// Real sample documents made by real libraries (pdfkit, docx, exceljs, pptxgenjs, iconv-lite), for tests,
// benchmarks and demos. Dev-only: pdfkit, docx and pptxgenjs are devDependencies.
import { existsSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { DajianError } from "../core/errors.js";
import { CJK_CHAR } from "./text-utils.js";

export type FixtureFormat = "pdf" | "docx" | "xlsx" | "pptx" | "html" | "markdown" | "text" | "csv";

export interface SimpleDoc {
  title: string;
  paragraphs: string[];
}

const CJK_FONTS: Array<[string, string | undefined]> = [
  ["/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "WenQuanYiMicroHei"],
  ["/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "WenQuanYiZenHei"],
  ["/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular"],
  ["/usr/share/fonts/truetype/arphic/uming.ttc", "AR-PL-UMing-CN"],
];

/** A CJK-capable font on this machine (Debian: fonts-wqy-microhei), or undefined. */
export function cjkFont(): { path: string; family?: string } | undefined {
  for (const [path, family] of CJK_FONTS) if (existsSync(path)) return { path, family };
  return undefined;
}

let fontCache: { buf: Buffer; family?: string } | undefined;
function cjkFontBytes(): { buf: Buffer; family?: string } {
  if (fontCache) return fontCache;
  const f = cjkFont();
  if (!f) {
    throw new DajianError(
      "not_found",
      "no CJK font found for writing Chinese PDFs",
      "install a CJK font: apt-get install fonts-wqy-microhei",
    );
  }
  fontCache = { buf: readFileSync(f.path), family: f.family };
  return fontCache;
}

const hasCjk = (s: string) => CJK_CHAR.test(s);

export interface PdfPage {
  heading?: string;
  paragraphs: string[];
}

export interface PdfOptions {
  /** Running header on every page (page number available). */
  header?: (page: number, total: number) => string;
  footer?: (page: number, total: number) => string;
  /** Pages with nothing written (simulating scanned pages without a text layer). */
  blankPages?: number[];
  userPassword?: string;
  fontSize?: number;
  /** Width of the text column in points (narrow columns force more line wrapping). */
  width?: number;
}

/** A PDF with one entry of `pages` per page (content that overflows continues on extra pages). */
export async function makePdf(pages: PdfPage[], opts: PdfOptions = {}): Promise<Buffer> {
  const { default: PDFDocument } = await import("pdfkit");
  const cjk =
    pages.some((p) => hasCjk((p.heading ?? "") + p.paragraphs.join(""))) ||
    hasCjk((opts.header?.(1, 1) ?? "") + (opts.footer?.(1, 1) ?? ""));
  const doc = new PDFDocument({
    bufferPages: true,
    autoFirstPage: false,
    margins: { top: 72, bottom: 72, left: 72, right: 72 },
    ...(opts.userPassword ? { userPassword: opts.userPassword, ownerPassword: opts.userPassword + "-owner" } : {}),
    info: { Title: pages[0]?.heading ?? "document" },
  });
  if (cjk) {
    const f = cjkFontBytes();
    doc.registerFont("body", f.buf, f.family);
  } else doc.registerFont("body", "Helvetica");
  const chunks: Buffer[] = [];
  doc.on("data", (c: Buffer) => chunks.push(c));
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on("end", () => resolve(Buffer.concat(chunks)));
    doc.on("error", reject);
  });
  const size = opts.fontSize ?? 11;
  const width = opts.width;
  pages.forEach((p, i) => {
    doc.addPage();
    if (opts.blankPages?.includes(i + 1)) return;
    doc.font("body");
    if (p.heading)
      doc
        .fontSize(size * 1.6)
        .text(p.heading, { width })
        .moveDown(0.5);
    doc.fontSize(size);
    // "\n" inside a paragraph is a plain line break (same pitch); paragraphs are separated by a gap.
    for (const para of p.paragraphs) doc.text(para, { width, lineGap: 1 }).moveDown(0.8);
  });
  const range = doc.bufferedPageRange();
  for (let i = range.start; i < range.start + range.count; i++) {
    if (opts.blankPages?.includes(i + 1)) continue;
    doc.switchToPage(i);
    const bottom = doc.page.margins.bottom;
    doc.page.margins.bottom = 0; // writing in the margin must not trigger a new page
    doc.font("body").fontSize(9);
    if (opts.header) doc.text(opts.header(i + 1, range.count), 72, 36, { lineBreak: false });
    if (opts.footer) doc.text(opts.footer(i + 1, range.count), 72, doc.page.height - 48, { lineBreak: false });
    doc.page.margins.bottom = bottom;
  }
  doc.end();
  return done;
}

export interface DocxSpec {
  title?: string;
  /** Items in order: headings, paragraphs, bullet items, tables. */
  body: Array<
    { heading: string; level?: 1 | 2 | 3 } | { paragraph: string } | { bullet: string } | { table: string[][] } // first row is the header
  >;
}

export async function makeDocx(spec: DocxSpec): Promise<Buffer> {
  const d = await import("docx");
  const levels = [d.HeadingLevel.HEADING_1, d.HeadingLevel.HEADING_2, d.HeadingLevel.HEADING_3];
  const children: Array<InstanceType<typeof d.Paragraph> | InstanceType<typeof d.Table>> = [];
  if (spec.title) children.push(new d.Paragraph({ text: spec.title, heading: d.HeadingLevel.TITLE }));
  for (const item of spec.body) {
    if ("heading" in item)
      children.push(new d.Paragraph({ text: item.heading, heading: levels[(item.level ?? 1) - 1] }));
    else if ("paragraph" in item) children.push(new d.Paragraph({ children: [new d.TextRun(item.paragraph)] }));
    else if ("bullet" in item) children.push(new d.Paragraph({ text: item.bullet, bullet: { level: 0 } }));
    else {
      children.push(
        new d.Table({
          rows: item.table.map(
            (r, ri) =>
              new d.TableRow({
                tableHeader: ri === 0,
                children: r.map(
                  (c) =>
                    new d.TableCell({
                      children: [new d.Paragraph({ children: [new d.TextRun({ text: c, bold: ri === 0 })] })],
                    }),
                ),
              }),
          ),
        }),
      );
    }
  }
  const doc = new d.Document({ sections: [{ children }] });
  return Buffer.from(await d.Packer.toBuffer(doc));
}

export async function makeXlsx(sheets: Array<{ name: string; rows: unknown[][] }>): Promise<Buffer> {
  const { default: ExcelJS } = await import("exceljs");
  const wb = new ExcelJS.Workbook();
  for (const s of sheets) {
    const ws = wb.addWorksheet(s.name);
    for (const r of s.rows) ws.addRow(r);
  }
  return Buffer.from(await wb.xlsx.writeBuffer());
}

export interface SlideSpec {
  title?: string;
  bullets?: string[];
  /** First row is the header. */
  table?: string[][];
  notes?: string;
}

export async function makePptx(slides: SlideSpec[]): Promise<Buffer> {
  // pptxgenjs is CommonJS; under NodeNext its typings make `default` the namespace, at run time it is the class.
  const mod = (await import("pptxgenjs")) as unknown as { default: new () => import("pptxgenjs").default };
  const pres = new mod.default();
  pres.defineSlideMaster({
    title: "DAJIAN",
    objects: [{ placeholder: { options: { name: "title", type: "title", x: 0.5, y: 0.3, w: 9, h: 0.8 }, text: "" } }],
  });
  for (const s of slides) {
    const slide = pres.addSlide({ masterName: "DAJIAN" });
    if (s.title) slide.addText(s.title, { placeholder: "title" });
    if (s.bullets?.length) {
      slide.addText(
        s.bullets.map((b) => ({ text: b, options: { bullet: true, breakLine: true } })),
        { x: 0.5, y: 1.3, w: 9, h: s.table ? 1.5 : 3.5, fontSize: 18 },
      );
    }
    if (s.table)
      slide.addTable(
        s.table.map((r) => r.map((c) => ({ text: c }))),
        { x: 0.5, y: s.bullets?.length ? 3 : 1.3, w: 9 },
      );
    if (s.notes) slide.addNotes(s.notes);
  }
  return (await pres.write({ outputType: "nodebuffer" })) as Buffer;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** An article page wrapped in typical site boilerplate (nav, sidebar, footer, scripts). */
export function makeHtml(doc: SimpleDoc, opts: { lang?: string } = {}): string {
  const zh = hasCjk(doc.title + doc.paragraphs.join(""));
  const nav = zh ? ["首页", "产品", "关于我们", "联系我们"] : ["Home", "Products", "About us", "Contact"];
  return `<!DOCTYPE html>
<html lang="${opts.lang ?? (zh ? "zh" : "en")}"><head><meta charset="utf-8"><title>${esc(doc.title)}</title>
<style>body{font-family:sans-serif} nav a{margin:4px}</style>
<script>window.analytics = { track: function(){} };</script></head>
<body>
<header><nav>${nav.map((n) => `<a href="/${encodeURIComponent(n)}">${esc(n)}</a>`).join(" | ")}</nav></header>
<main><article>
<h1>${esc(doc.title)}</h1>
${doc.paragraphs.map((p) => `<p>${esc(p)}</p>`).join("\n")}
</article></main>
<aside><h3>${zh ? "相关链接" : "Related links"}</h3><ul><li><a href="/x">${zh ? "更多文章" : "More articles"}</a></li></ul></aside>
<footer><p>${zh ? "© 2024 示例公司 版权所有" : "© 2024 Example Corp. All rights reserved."}</p></footer>
<script>console.log("tracking");</script>
</body></html>`;
}

export function makeMarkdown(doc: SimpleDoc): string {
  return `# ${doc.title}\n\n${doc.paragraphs.join("\n\n")}\n`;
}

export function makeText(doc: SimpleDoc, encoding = "utf-8"): Buffer {
  const text = `${doc.title}\n\n${doc.paragraphs.join("\n\n")}\n`;
  if (encoding === "utf-8") return Buffer.from(text, "utf8");
  return iconvEncode(text, encoding);
}

let iconvMod: typeof import("iconv-lite") | undefined;
function iconvEncode(text: string, encoding: string): Buffer {
  if (!iconvMod) throw new Error("call loadIconv() first");
  return iconvMod.encode(text, encoding);
}
async function loadIconv() {
  iconvMod ??= (await import("iconv-lite")).default;
}

/** CSV per RFC 4180: fields with commas, quotes or newlines are quoted, quotes doubled. */
export function makeCsv(rows: string[][]): string {
  const q = (c: string) => (/[",\r\n]/.test(c) ? `"${c.replace(/"/g, '""')}"` : c);
  return rows.map((r) => r.map(q).join(",")).join("\r\n") + "\r\n";
}

/** Bytes of `doc` in `format`. Paragraphs stay whole and in order in every format. */
export async function documentBytes(
  format: FixtureFormat,
  doc: SimpleDoc,
  opts: { encoding?: string } = {},
): Promise<Buffer> {
  switch (format) {
    case "pdf": {
      const zh = hasCjk(doc.title + doc.paragraphs.join(""));
      return makePdf([{ heading: doc.title, paragraphs: doc.paragraphs }], {
        footer: (n, total) => (zh ? `第 ${n} 页 共 ${total} 页` : `Page ${n} of ${total}`),
      });
    }
    case "docx":
      return makeDocx({ body: [{ heading: doc.title, level: 1 }, ...doc.paragraphs.map((p) => ({ paragraph: p }))] });
    case "xlsx":
      return makeXlsx([
        {
          name: doc.title.slice(0, 31).replace(/[\\/?*[\]:]/g, " ") || "Sheet1",
          rows: [["#", "text"], ...doc.paragraphs.map((p, i) => [i + 1, p])],
        },
      ]);
    case "pptx":
      return makePptx([
        { title: doc.title },
        ...doc.paragraphs.map((p, i) => ({ title: `${doc.title} (${i + 1})`, bullets: [p] })),
      ]);
    case "html":
      return Buffer.from(makeHtml(doc), "utf8");
    case "markdown":
      return Buffer.from(makeMarkdown(doc), "utf8");
    case "csv":
      return Buffer.from(makeCsv([["#", "text"], ...doc.paragraphs.map((p, i) => [String(i + 1), p])]), "utf8");
    case "text":
      await loadIconv();
      return makeText(doc, opts.encoding ?? "utf-8");
  }
}

/** Write `doc` as a real `format` file at outPath (parent folders created). */
export async function writeDocumentAs(
  format: FixtureFormat,
  doc: SimpleDoc,
  outPath: string,
  opts: { encoding?: string } = {},
): Promise<void> {
  const bytes = await documentBytes(format, doc, opts);
  await mkdir(dirname(outPath), { recursive: true });
  await writeFile(outPath, bytes);
}
