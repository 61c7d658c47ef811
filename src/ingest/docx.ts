// DOCX → (zip pre-scan) → mammoth HTML → blocks (headings, paragraphs, list items, tables).
import * as cheerio from "cheerio";
import mammoth from "mammoth";
import { htmlBlocks } from "./html.js";
import type { LoaderContext } from "./parse.js";
import type { ParsedDocument } from "./types.js";
import { scanZip } from "./zip.js";

export async function loadDocx(bytes: Buffer, ctx: LoaderContext): Promise<Omit<ParsedDocument, "format">> {
  await scanZip(bytes, ctx.fileName, { maxUncompressed: ctx.maxZipUncompressed });
  ctx.checkDeadline();
  const result = await mammoth.convertToHtml(
    { buffer: bytes },
    {
      // Images carry no text; don't base64 them into the HTML.
      convertImage: mammoth.images.imgElement(async () => ({ src: "" })),
      styleMap: ["p[style-name='Title'] => h1:fresh", "p[style-name='Subtitle'] => h2:fresh"],
    },
  );
  ctx.checkDeadline();
  const $ = cheerio.load(`<body>${result.value}</body>`, { xml: { xmlMode: false } });
  const blocks = htmlBlocks($("body")[0] as never);
  const errors = result.messages.filter((m) => m.type === "error");
  const warnings = errors.length
    ? [`${errors.length} part(s) of the document could not be converted: ${errors[0].message.slice(0, 120)}`]
    : [];
  const title = blocks.find((b) => b.kind === "heading")?.text;
  return { blocks, ...(title ? { title } : {}), needsOcrPages: [], warnings };
}
