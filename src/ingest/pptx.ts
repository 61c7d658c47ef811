// PPTX → (zip pre-scan, slide XML kept) → per slide in presentation order: title placeholder → heading,
// bulleted paragraphs → list items, other text → paragraphs, tables → tables, speaker notes → paragraphs.
import * as cheerio from "cheerio";
import { posix } from "node:path";
import type { LoaderContext } from "./parse.js";
import { detectHeader, makeTable, renderTable } from "./table.js";
import { tidy } from "./html.js";
import type { Block, ParsedDocument } from "./types.js";
import { scanZip } from "./zip.js";

type $T = cheerio.CheerioAPI;

function slideOrder(files: Map<string, Buffer>): string[] {
  const pres = files.get("ppt/presentation.xml");
  const rels = files.get("ppt/_rels/presentation.xml.rels");
  const byNumber = [...files.keys()]
    .filter((n) => /^ppt\/slides\/slide\d+\.xml$/.test(n))
    .sort((a, b) => Number(a.match(/(\d+)\.xml$/)![1]) - Number(b.match(/(\d+)\.xml$/)![1]));
  if (!pres || !rels) return byNumber;
  const $r = cheerio.load(rels.toString("utf8"), { xml: true });
  const target = new Map<string, string>();
  $r("Relationship").each((_, el) => {
    const id = $r(el).attr("Id");
    const t = $r(el).attr("Target");
    if (id && t)
      target.set(id, posix.normalize(posix.join("ppt", t.replace(/^\//, ""))).replace(/^ppt\/ppt\//, "ppt/"));
  });
  const $p = cheerio.load(pres.toString("utf8"), { xml: true });
  const order: string[] = [];
  $p("p\\:sldId").each((_, el) => {
    const t = target.get($p(el).attr("r:id") ?? "");
    if (t && files.has(t)) order.push(t);
  });
  return order.length ? order : byNumber;
}

function paragraphText($: $T, p: cheerio.Cheerio<any>): string {
  let s = "";
  p.find("a\\:t, a\\:br").each((_, el) => {
    s += (el as { name?: string }).name === "a:br" ? " " : $(el).text();
  });
  return tidy(s);
}

function slideBlocks(xml: string, page: number): Block[] {
  const $ = cheerio.load(xml, { xml: true });
  const title: Block[] = [];
  const body: Block[] = [];
  $("p\\:sp, p\\:graphicFrame").each((_, el) => {
    const shape = $(el);
    if ((el as { name?: string }).name === "p:graphicFrame") {
      shape.find("a\\:tbl").each((_, tbl) => {
        const rows = $(tbl)
          .find("a\\:tr")
          .toArray()
          .map((tr) =>
            $(tr)
              .find("a\\:tc")
              .toArray()
              .map((tc) =>
                $(tc)
                  .find("a\\:p")
                  .toArray()
                  .map((p) => paragraphText($, $(p)))
                  .join(" "),
              ),
          );
        const { header, body: rest } = detectHeader(rows);
        const table = makeTable(header, rest);
        body.push({ kind: "table", text: renderTable(table), table, page });
      });
      return;
    }
    const ph = shape.find("p\\:nvSpPr p\\:nvPr p\\:ph").first();
    const phType = ph.attr("type");
    const isTitle = phType === "title" || phType === "ctrTitle";
    const isBodyPh = ph.length > 0 && (phType === undefined || phType === "body" || phType === "obj");
    const paras = shape.find("p\\:txBody a\\:p").toArray();
    if (isTitle) {
      const t = tidy(paras.map((p) => paragraphText($, $(p))).join(" "));
      if (t) title.push({ kind: "heading", level: 1, text: t, page });
      return;
    }
    for (const p of paras) {
      const t = paragraphText($, $(p));
      if (!t) continue;
      const pPr = $(p).children("a\\:pPr");
      const bulleted =
        pPr.find("a\\:buChar, a\\:buAutoNum").length > 0 || (isBodyPh && pPr.find("a\\:buNone").length === 0);
      body.push({ kind: bulleted ? "list_item" : "paragraph", text: t, page });
    }
  });
  return [...title, ...body];
}

function notesBlocks(xml: string, page: number): Block[] {
  const $ = cheerio.load(xml, { xml: true });
  const out: Block[] = [];
  $("p\\:sp").each((_, el) => {
    const ph = $(el).find("p\\:nvSpPr p\\:nvPr p\\:ph").first();
    if (ph.attr("type") !== "body") return; // skip slide image / number placeholders
    const t = tidy(
      $(el)
        .find("a\\:p")
        .toArray()
        .map((p) => paragraphText($, $(p)))
        .join(" "),
    );
    if (t) out.push({ kind: "paragraph", text: t, page });
  });
  return out;
}

export async function loadPptx(bytes: Buffer, ctx: LoaderContext): Promise<Omit<ParsedDocument, "format">> {
  const files = await scanZip(bytes, ctx.fileName, { maxUncompressed: ctx.maxZipUncompressed }, (n) =>
    /^ppt\/(presentation\.xml|_rels\/presentation\.xml\.rels|slides\/slide\d+\.xml|slides\/_rels\/slide\d+\.xml\.rels|notesSlides\/notesSlide\d+\.xml)$/.test(
      n,
    ),
  );
  const order = slideOrder(files);
  const blocks: Block[] = [];
  const warnings: string[] = [];
  order.forEach((name, i) => {
    ctx.checkDeadline();
    const page = i + 1;
    const sb = slideBlocks(files.get(name)!.toString("utf8"), page);
    // Speaker notes: the slide's rels name its notes part.
    const rels = files.get(name.replace(/slides\/(slide\d+\.xml)$/, "slides/_rels/$1.rels"));
    const notesTarget = rels?.toString("utf8").match(/Target="([^"]*notesSlide\d+\.xml)"/)?.[1];
    const notesName = notesTarget ? posix.normalize(posix.join(posix.dirname(name), notesTarget)) : undefined;
    const nb = notesName && files.has(notesName) ? notesBlocks(files.get(notesName)!.toString("utf8"), page) : [];
    if (sb.length === 0 && nb.length === 0) warnings.push(`slide ${page} has no text`);
    blocks.push(...sb, ...nb);
  });
  const title = blocks.find((b) => b.kind === "heading")?.text;
  return { blocks, ...(title ? { title } : {}), pages: order.length, needsOcrPages: [], warnings };
}
