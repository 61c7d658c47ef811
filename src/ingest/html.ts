// HTML → main content blocks. Boilerplate (nav, header, footer, aside, scripts, cookie banners …) is cut
// first; the content root is <main>/<article> when the page marks one, else Readability's pick (skipped
// on pathologically deep pages), else the cleaned <body>. The DOM walk is iterative: deep nesting cannot
// overflow the stack.
import * as cheerio from "cheerio";
import { decodeText } from "./encoding.js";
import type { LoaderContext } from "./parse.js";
import { detectHeader, makeTable, renderTable } from "./table.js";
import { isCjk } from "./text-utils.js";
import type { Block, ParsedDocument } from "./types.js";

interface N {
  type: string;
  name?: string;
  data?: string;
  children?: N[];
  attribs?: Record<string, string>;
}

const DROP =
  "script,style,noscript,template,iframe,svg,canvas,form,button,select,nav,footer,aside,[role=navigation],[role=banner],[role=contentinfo],[role=complementary],[aria-hidden=true]";
const BOILER_CLASS =
  /(^|[-_\s])(nav|navbar|menu|breadcrumbs?|footer|sidebar|cookie|banner|advert|ads|share|social|related|comments?|pagination)([-_\s]|$)/i;
const HEADINGS = new Set(["h1", "h2", "h3", "h4", "h5", "h6"]);
const BLOCKS = new Set([
  "p",
  "li",
  "pre",
  "blockquote",
  "table",
  "dt",
  "dd",
  "figcaption",
  "caption",
  "address",
  ...HEADINGS,
]);
const BREAKS = new Set([
  "div",
  "section",
  "article",
  "main",
  "ul",
  "ol",
  "dl",
  "body",
  "header",
  "br",
  "hr",
  "tr",
  "td",
  "th",
]);

/** Collapse whitespace; a source line break between two CJK characters disappears instead of becoming a space. */
export function tidy(s: string): string {
  return s
    .replace(/[ \t\r]*\n\s*/g, (m: string, off: number, all: string) =>
      isCjk(all[off - 1] ?? "") && isCjk(all[off + m.length] ?? "") ? "" : " ",
    )
    .replace(/\s+/g, " ")
    .trim();
}

function textOf(root: N): string {
  let out = "";
  const stack: N[] = [root];
  while (stack.length) {
    const n = stack.pop()!;
    if (n.type === "text") out += n.data ?? "";
    else if (n.name === "br") out += "\n";
    else if (n.children && n.type !== "comment" && n.type !== "script" && n.type !== "style") {
      for (let i = n.children.length - 1; i >= 0; i--) stack.push(n.children[i]);
    }
  }
  return out;
}

function tableOf(t: N): Block | undefined {
  const rows: Array<{ cells: string[]; th: boolean }> = [];
  const stack: N[] = [t];
  while (stack.length) {
    const n = stack.pop()!;
    if (n.name === "table" && n !== t) continue; // nested tables: flattened into their cell's text
    if (n.name === "tr") {
      const cells = (n.children ?? []).filter((c) => c.name === "td" || c.name === "th");
      rows.push({
        cells: cells.map((c) => tidy(textOf(c))),
        th: cells.length > 0 && cells.every((c) => c.name === "th"),
      });
      continue;
    }
    for (let i = (n.children?.length ?? 0) - 1; i >= 0; i--) stack.push(n.children![i]);
  }
  if (rows.length === 0) return undefined;
  let header: string[] = [];
  let body = rows.map((r) => r.cells);
  if (rows[0].th) {
    header = rows[0].cells;
    body = body.slice(1);
  } else ({ header, body } = detectHeader(body));
  const table = makeTable(header, body);
  return { kind: "table", text: renderTable(table), table };
}

/** Walk content in document order, emitting one block per block-level element. */
export function htmlBlocks(root: N): Block[] {
  const blocks: Block[] = [];
  let inline = "";
  const flushInline = () => {
    const t = tidy(inline);
    if (t) blocks.push({ kind: "paragraph", text: t });
    inline = "";
  };
  const stack: N[] = [root];
  while (stack.length) {
    const n = stack.pop()!;
    if (n.type === "text") {
      inline += n.data ?? "";
      continue;
    }
    if (n.type !== "tag" && n.type !== "root") continue;
    const name = n.name ?? "";
    if (BLOCKS.has(name)) {
      flushInline();
      if (HEADINGS.has(name)) {
        const t = tidy(textOf(n));
        if (t) blocks.push({ kind: "heading", level: Number(name[1]), text: t });
      } else if (name === "table") {
        const b = tableOf(n);
        if (b) blocks.push(b);
      } else if (name === "pre") {
        const t = textOf(n).replace(/\s+$/, "");
        if (t.trim()) blocks.push({ kind: "code", text: t });
      } else if (name === "li" || name === "dt" || name === "dd") {
        // Own text only; nested lists become their own items.
        const own: N[] = [];
        const nested: N[] = [];
        for (const c of n.children ?? []) (c.name === "ul" || c.name === "ol" ? nested : own).push(c);
        const t = tidy(own.map(textOf).join(""));
        if (t) blocks.push({ kind: "list_item", text: t });
        for (let i = nested.length - 1; i >= 0; i--) stack.push(nested[i]);
      } else {
        // p, blockquote, …: paragraphs, but a blockquote may hold several paragraphs.
        const inner = (n.children ?? []).some((c) => c.name !== undefined && BLOCKS.has(c.name));
        if (inner) {
          for (let i = (n.children?.length ?? 0) - 1; i >= 0; i--) stack.push(n.children![i]);
          continue;
        }
        const t = tidy(textOf(n));
        if (t) blocks.push({ kind: "paragraph", text: t });
      }
      continue;
    }
    if (BREAKS.has(name)) {
      flushInline();
      if (name === "br" || name === "hr") continue;
      // A marker pops after the children (pushed in reverse, so they pop in order) and ends their inline text.
      stack.push({ type: "tag", name: "br" });
    }
    for (let i = (n.children?.length ?? 0) - 1; i >= 0; i--) stack.push(n.children![i]);
  }
  flushInline();
  return blocks;
}

const VOID = new Set([
  "area",
  "base",
  "br",
  "col",
  "embed",
  "hr",
  "img",
  "input",
  "link",
  "meta",
  "source",
  "track",
  "wbr",
  "param",
]);

/** Tag nesting depth by a linear scan of the source (DOM parsers slow down badly on extreme nesting). */
export function nestingDepth(html: string): number {
  let depth = 0;
  let max = 0;
  const re = /<(\/?)([a-zA-Z][a-zA-Z0-9-]*)[^>]*?(\/?)>/g;
  for (let m = re.exec(html); m !== null; m = re.exec(html)) {
    const tag = m[2].toLowerCase();
    if (VOID.has(tag) || m[3] === "/") continue;
    if (m[1] === "/") depth = Math.max(0, depth - 1);
    else if (++depth > max) max = depth;
  }
  return max;
}

/** Pathological pages: strip markup with linear-time regexes and read the rest as plain text. */
function flatBlocks(html: string): Block[] {
  const text = html
    .replace(/<(script|style|noscript|template|nav|footer|aside)\b[\s\S]*?<\/\1\s*>/gi, " ")
    .replace(/<!--[\s\S]*?-->/g, " ")
    .replace(/<\/?(p|div|li|h[1-6]|br|tr|table|ul|ol|section|article|blockquote|pre)\b[^>]*>/gi, "\n\n")
    .replace(/<[^>]*>/g, " ");
  const decoded = cheerio.load(`<pre>${text.replace(/</g, "&lt;")}</pre>`, { xml: { xmlMode: false } }).text();
  return decoded
    .split(/\n\s*\n/)
    .map((p) => tidy(p))
    .filter((p) => p !== "")
    .map((p) => ({ kind: "paragraph" as const, text: p }));
}

const MAX_DEPTH = 500;

async function readabilityRoot(html: string): Promise<N | undefined> {
  const [{ Readability }, { parseHTML }] = await Promise.all([import("@mozilla/readability"), import("linkedom")]);
  const { document } = parseHTML(html);
  const article = new Readability(document as unknown as Document, { charThreshold: 200 }).parse();
  if (!article?.content) return undefined;
  return cheerio.load(article.content, { xml: { xmlMode: false } }).root()[0] as unknown as N;
}

export async function loadHtml(bytes: Buffer, ctx: LoaderContext): Promise<Omit<ParsedDocument, "format">> {
  const { text: raw, encoding } = decodeText(bytes);
  const warnings: string[] = [];
  const depth = nestingDepth(raw);
  if (depth > MAX_DEPTH) {
    warnings.push(`deeply nested HTML (depth ${depth}): read as plain text without structure`);
    const title = tidy(raw.match(/<title[^>]*>([\s\S]{0,500}?)<\/title>/i)?.[1] ?? "") || undefined;
    return { blocks: flatBlocks(raw), ...(title ? { title } : {}), needsOcrPages: [], warnings, encoding };
  }
  // htmlparser2 (not parse5): linear on ordinary pages and no per-tag scope scans.
  const $ = cheerio.load(raw, { xml: { xmlMode: false } });
  const title = tidy($("title").first().text()) || tidy($("h1").first().text()) || undefined;
  $(DROP).remove();
  $("header")
    .filter((_, el) => $(el).closest("article,main").length === 0)
    .remove();
  $("[class],[id]")
    .filter((_, el) => {
      const tag = (el as unknown as N).name;
      if (tag === "body" || tag === "main" || tag === "article" || tag === "html") return false;
      if ($(el).find("main, article, h1").length > 0) return false; // a wrapper of the content, not boilerplate
      return BOILER_CLASS.test(`${$(el).attr("class") ?? ""} ${$(el).attr("id") ?? ""}`);
    })
    .remove();
  ctx.checkDeadline();
  const marked = $("main, article, [role=main]").first();
  let root: N | undefined = marked.length ? (marked[0] as unknown as N) : undefined;
  if (!root && bytes.length < 5 * 1024 * 1024) root = await readabilityRoot($.html());
  root ??= ($("body")[0] ?? $.root()[0]) as unknown as N;
  const blocks = htmlBlocks(root);
  return { blocks, ...(title ? { title } : {}), needsOcrPages: [], warnings, encoding };
}
