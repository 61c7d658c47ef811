// Plain text and Markdown → blocks.
import { isListLine, joinLines } from "./clean.js";
import { makeTable, renderTable } from "./table.js";
import type { Block } from "./types.js";

function paragraphs(text: string): string[][] {
  const out: string[][] = [];
  let cur: string[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") {
      if (cur.length) out.push(cur);
      cur = [];
    } else cur.push(line);
  }
  if (cur.length) out.push(cur);
  return out;
}

/** Blank lines separate paragraphs; wrapped lines are re-joined; bullet/numbered lines become list items. */
export function textBlocks(text: string): Block[] {
  const blocks: Block[] = [];
  for (const para of paragraphs(text)) {
    let buf: string[] = [];
    const flush = () => {
      if (buf.length) blocks.push({ kind: "paragraph", text: joinLines(buf) });
      buf = [];
    };
    for (const line of para) {
      if (isListLine(line)) {
        flush();
        blocks.push({ kind: "list_item", text: line.trim() });
      } else if (
        blocks.length &&
        blocks[blocks.length - 1].kind === "list_item" &&
        buf.length === 0 &&
        /^\s{2,}/.test(line)
      ) {
        // Continuation of a wrapped list item (indented).
        const last = blocks[blocks.length - 1];
        last.text = joinLines([last.text, line]);
      } else buf.push(line);
    }
    flush();
  }
  return blocks;
}

/** Inline Markdown to plain text: links → their text, images → alt text, emphasis markers dropped. */
function inline(s: string): string {
  return s
    .replace(/!\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/\[([^\]]+)\]\([^)]*\)/g, "$1")
    .replace(/(\*\*|__)(?=\S)(.+?)(?<=\S)\1/g, "$2")
    .replace(/`([^`]+)`/g, "$1")
    .replace(/<\/?[a-zA-Z][^>]*>/g, "")
    .trim();
}

function splitRow(line: string): string[] {
  let s = line.trim();
  if (s.startsWith("|")) s = s.slice(1);
  if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
  return s.split(/(?<!\\)\|/).map((c) => inline(c.replace(/\\\|/g, "|")));
}

const TABLE_SEP = /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/;

/** CommonMark-ish block structure: ATX/setext headings, lists, fenced code, pipe tables, paragraphs. */
export function markdownBlocks(md: string): { blocks: Block[]; title?: string } {
  const lines = md.replace(/\r\n?/g, "\n").split("\n");
  const blocks: Block[] = [];
  let para: string[] = [];
  let title: string | undefined;
  const flushPara = () => {
    if (para.length) {
      const t = inline(joinLines(para));
      if (t) blocks.push({ kind: "paragraph", text: t });
    }
    para = [];
  };
  // YAML front matter is metadata, not content.
  let i = 0;
  if (lines[0]?.trim() === "---") {
    const end = lines.indexOf("---", 1);
    if (end > 0 && end < 200) {
      const m = lines.slice(1, end).find((l) => /^title:\s*/.test(l));
      if (m) title = m.replace(/^title:\s*/, "").replace(/^["']|["']$/g, "");
      i = end + 1;
    }
  }
  for (; i < lines.length; i++) {
    const line = lines[i];
    const fence = line.match(/^\s*(`{3,}|~{3,})/);
    if (fence) {
      flushPara();
      const body: string[] = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(fence[1]); i++) body.push(lines[i]);
      const t = body.join("\n").replace(/\s+$/, "");
      if (t.trim()) blocks.push({ kind: "code", text: t });
      continue;
    }
    const h = line.match(/^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/);
    if (h) {
      flushPara();
      const t = inline(h[2]);
      if (t) blocks.push({ kind: "heading", level: h[1].length, text: t });
      continue;
    }
    if (para.length === 1 && /^\s{0,3}(=+|-+)\s*$/.test(line) && !isListLine(para[0])) {
      const t = inline(para[0]);
      para = [];
      if (t) blocks.push({ kind: "heading", level: line.trim()[0] === "=" ? 1 : 2, text: t });
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      flushPara();
      const header = splitRow(line);
      const rows: string[][] = [];
      for (i += 2; i < lines.length && lines[i].includes("|") && lines[i].trim() !== ""; i++)
        rows.push(splitRow(lines[i]));
      i--;
      const table = makeTable(header, rows);
      blocks.push({ kind: "table", text: renderTable(table), table });
      continue;
    }
    if (line.trim() === "") {
      flushPara();
      continue;
    }
    if (/^\s{0,3}([-*_])(\s*\1){2,}\s*$/.test(line)) {
      flushPara(); // thematic break
      continue;
    }
    if (isListLine(line) && !/^\s*\(?[a-zA-Z][.)]/.test(line)) {
      flushPara();
      let item = line.replace(/^\s*(?:[-*+]\s+(?:\[[ xX]\]\s+)?)/, "").trim();
      // Lazy continuation lines (indented, not a new item).
      while (i + 1 < lines.length && /^\s{2,}\S/.test(lines[i + 1]) && !isListLine(lines[i + 1]))
        item = joinLines([item, lines[++i]]);
      const t = inline(item);
      if (t) blocks.push({ kind: "list_item", text: t });
      continue;
    }
    para.push(line.replace(/^\s{0,3}>\s?/, ""));
  }
  flushPara();
  if (!title) title = blocks.find((b) => b.kind === "heading" && b.level === 1)?.text;
  return { blocks, ...(title ? { title } : {}) };
}
