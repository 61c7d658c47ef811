// Structure-aware chunking. Invariants (tested):
// - fullText = blocks' text joined by "\n\n"; every chunk's [charStart, charEnd) lies in it;
// - text chunks: chunk.text === fullText.slice(charStart, charEnd);
// - table chunks: chunk.text ends with fullText.slice(charStart, charEnd), after a repeated header line
//   (except pieces of one over-sized row, which list "header: cell" lines of that row's span);
// - a chunk never crosses a heading or a table boundary, never splits a table row across chunks,
//   and overlaps its predecessor by whole sentences only.
import { DajianError } from "../core/errors.js";
import { sentenceRanges } from "./sentences.js";
import { CELL_SEP, renderRow, renderTable } from "./table.js";
import { estimateTokens } from "./text-utils.js";
import type { Block, Chunk, ChunkOptions, ParsedDocument } from "./types.js";

export const BLOCK_SEP = "\n\n";

/** The cleaned full text that chunk offsets point into. */
export function documentText(doc: ParsedDocument): string {
  return doc.blocks.map((b) => b.text).join(BLOCK_SEP);
}

interface Unit {
  start: number;
  end: number;
  tokens: number;
  page?: number;
  heading: boolean;
}

/** Cut [start,end) of text into pieces of at most maxTokens, preferring whitespace; linear time. */
function hardSplit(full: string, start: number, end: number, maxTokens: number, page?: number): Unit[] {
  const out: Unit[] = [];
  let s = start;
  let charsPerToken = 3; // adapted from each piece, so the window guess is usually right first time
  while (s < end) {
    let w = Math.min(end - s, Math.max(1, Math.floor(maxTokens * charsPerToken)));
    let tok = estimateTokens(full.slice(s, s + w));
    while (tok > maxTokens && w > 1) {
      w = Math.max(1, Math.min(w - 1, Math.floor((w * maxTokens) / tok)));
      tok = estimateTokens(full.slice(s, s + w));
    }
    let e = s + w;
    if (e < end) {
      // Prefer to cut after the last whitespace in the final 40% of the window.
      const from = s + Math.floor(w * 0.6);
      const tail = full.slice(from, e);
      const ws = Math.max(tail.lastIndexOf(" "), tail.lastIndexOf("\n"));
      if (ws >= 0) e = from + ws + 1;
      // Never cut a surrogate pair.
      const c = full.charCodeAt(e - 1);
      if (c >= 0xd800 && c <= 0xdbff && e - 1 > s) e--;
    }
    const piece = full.slice(s, e);
    const t = estimateTokens(piece);
    if (t > 0) charsPerToken = Math.max(0.5, piece.length / t);
    const lead = piece.length - piece.trimStart().length;
    const trail = piece.length - piece.trimEnd().length;
    if (e - trail > s + lead) out.push({ start: s + lead, end: e - trail, tokens: t, page, heading: false });
    s = e;
  }
  return out;
}

/** A text block as units: whole if it fits, else its sentences (over-long sentences cut hard). */
function blockUnits(full: string, b: Block, start: number, target: number): Unit[] {
  const end = start + b.text.length;
  const tokens = estimateTokens(b.text);
  const heading = b.kind === "heading";
  if (tokens <= target) return [{ start, end, tokens, page: b.page, heading }];
  const ranges = b.kind === "code" ? lineRanges(b.text, start) : sentenceRanges(b.text, start);
  const out: Unit[] = [];
  for (const [s, e] of ranges) {
    const t = estimateTokens(full.slice(s, e));
    if (t <= target) out.push({ start: s, end: e, tokens: t, page: b.page, heading });
    else out.push(...hardSplit(full, s, e, target, b.page));
  }
  return out;
}

function lineRanges(text: string, base: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let s = 0;
  for (const line of text.split("\n")) {
    if (line.trim() !== "") out.push([base + s, base + s + line.length]);
    s += line.length + 1;
  }
  return out;
}

/** Split a unit into sentence sub-units so overlap can take whole sentences off its end. */
function trailingSentences(full: string, units: Unit[], overlapTokens: number, firstStart: number): Unit | undefined {
  if (overlapTokens <= 0 || units.length === 0) return undefined;
  let ovStart = -1;
  let ovTokens = 0;
  outer: for (let i = units.length - 1; i >= 0; i--) {
    const u = units[i];
    if (u.heading) break;
    const sents = sentenceRanges(full.slice(u.start, u.end), u.start);
    for (let j = sents.length - 1; j >= 0; j--) {
      const t = estimateTokens(full.slice(sents[j][0], sents[j][1]));
      if (ovTokens + t > overlapTokens) break outer;
      ovTokens += t;
      ovStart = sents[j][0];
    }
  }
  if (ovStart < 0 || ovStart <= firstStart) return undefined; // overlap must not repeat the whole chunk
  return {
    start: ovStart,
    end: units[units.length - 1].end,
    tokens: ovTokens,
    page: pageAt(units, ovStart),
    heading: false,
  };
}

function pageAt(units: Unit[], pos: number): number | undefined {
  for (const u of units) if (pos >= u.start && pos < u.end) return u.page;
  return units[units.length - 1]?.page;
}

export function chunkDocument(doc: ParsedDocument, opts: ChunkOptions): Chunk[] {
  const target = Math.floor(opts.targetTokens);
  const overlap = Math.max(0, Math.floor(opts.overlapTokens));
  if (!(target >= 16)) {
    throw new DajianError(
      "invalid_input",
      `chunk size ${opts.targetTokens} tokens is too small`,
      "use at least 16 tokens (default 400)",
    );
  }
  if (overlap >= target / 2) {
    throw new DajianError(
      "invalid_input",
      `overlap ${overlap} must be less than half the chunk size ${target}`,
      "lower the overlap (default 60)",
    );
  }
  const full = documentText(doc);
  const chunks: Omit<Chunk, "ordinal">[] = [];
  const path: Array<{ level: number; text: string }> = [];
  const headingPath = () => path.map((p) => p.text);

  let cur: Unit[] = [];
  let curTokens = 0;
  let curPath: string[] = [];

  const emitText = (units: Unit[]) => {
    if (units.length === 0) return;
    const start = units[0].start;
    const end = units[units.length - 1].end;
    const pages = units.map((u) => u.page).filter((p): p is number => p !== undefined);
    chunks.push({
      text: full.slice(start, end),
      ...(pages.length ? { page: Math.min(...pages), pageEnd: Math.max(...pages) } : {}),
      headingPath: curPath,
      charStart: start,
      charEnd: end,
      tokens: units.reduce((a, u) => a + u.tokens, 0),
      kind: "text",
    });
  };
  const flush = () => {
    emitText(cur);
    cur = [];
    curTokens = 0;
  };
  const onlyHeadings = () => cur.length > 0 && cur.every((u) => u.heading);

  let pos = 0;
  for (const b of doc.blocks) {
    const start = pos;
    pos += b.text.length + BLOCK_SEP.length;
    if (b.text.trim() === "") continue;
    if (b.kind === "heading") {
      const level = b.level ?? 1;
      // Consecutive headings (chapter then section) travel with the section's first chunk.
      const lastHeadingLevel = onlyHeadings() ? (path[path.length - 1]?.level ?? 0) : Infinity;
      if (!(onlyHeadings() && level > lastHeadingLevel)) flush();
      while (path.length > 0 && path[path.length - 1].level >= level) path.pop();
      path.push({ level, text: b.text.replace(/\s+/g, " ").trim() });
      curPath = headingPath();
      for (const u of blockUnits(full, b, start, target)) addUnit(u);
      continue;
    }
    if (b.kind === "table" && b.table && renderTable(b.table) === b.text) {
      const lead = onlyHeadings() ? cur : [];
      if (!onlyHeadings()) flush();
      cur = [];
      curTokens = 0;
      chunks.push(...tableChunks(full, b, start, target, lead, headingPath()));
      continue;
    }
    curPath = headingPath();
    for (const u of blockUnits(full, b, start, target)) addUnit(u);
  }
  flush();

  function addUnit(u: Unit) {
    if (cur.length > 0 && curTokens + u.tokens > target) {
      const prev = cur;
      flush();
      const ov = trailingSentences(full, prev, overlap, prev[0].start);
      if (ov && ov.tokens + u.tokens <= target) {
        cur = [ov];
        curTokens = ov.tokens;
      }
    }
    cur.push(u);
    curTokens += u.tokens;
  }

  // Exact duplicates (same text, e.g. a boilerplate paragraph repeated on every page) are dropped.
  const seen = new Set<string>();
  const out: Chunk[] = [];
  for (const c of chunks) {
    const key = c.text.replace(/\s+/g, " ").trim();
    if (key === "" || seen.has(key)) continue;
    seen.add(key);
    out.push({ ordinal: out.length, ...c });
  }
  return out;
}

function tableChunks(
  full: string,
  b: Block,
  start: number,
  target: number,
  lead: Unit[],
  hp: string[],
): Omit<Chunk, "ordinal">[] {
  const t = b.table!;
  const out: Omit<Chunk, "ordinal">[] = [];
  const headerLine = t.header.length > 0 ? renderRow(t.header) : "";
  const headerTokens = estimateTokens(headerLine);
  const leadTokens = lead.reduce((a, u) => a + u.tokens, 0);
  const page = b.page;
  const pageFields = page !== undefined ? { page: lead[0]?.page ?? page, pageEnd: page } : {};
  const blockEnd = start + b.text.length;
  const whole = estimateTokens(b.text);
  if (whole + leadTokens <= target) {
    const s = lead.length ? lead[0].start : start;
    out.push({
      text: full.slice(s, blockEnd),
      ...pageFields,
      headingPath: hp,
      charStart: s,
      charEnd: blockEnd,
      tokens: whole + leadTokens,
      kind: "table",
    });
    return out;
  }
  // Row offsets: line 0 is the header when there is one.
  let p = start + (headerLine ? headerLine.length + 1 : 0);
  const rows = t.rows.map((r) => {
    const line = renderRow(r);
    const span = { start: p, end: p + line.length, tokens: estimateTokens(line), cells: r };
    p += line.length + 1;
    return span;
  });
  let group: typeof rows = [];
  let groupTokens = 0;
  let first = true;
  const emit = () => {
    if (group.length === 0) return;
    const s = group[0].start;
    const e = group[group.length - 1].end;
    if (first && headerLine) {
      // The first piece is a plain slice: it already starts with the header (and any heading before it).
      const ss = lead.length ? lead[0].start : start;
      out.push({
        text: full.slice(ss, e),
        ...pageFields,
        headingPath: hp,
        charStart: ss,
        charEnd: e,
        tokens: groupTokens + headerTokens + leadTokens,
        kind: "table",
      });
    } else {
      const text = headerLine ? `${headerLine}\n${full.slice(s, e)}` : full.slice(s, e);
      out.push({
        text,
        ...(page !== undefined ? { page, pageEnd: page } : {}),
        headingPath: hp,
        charStart: s,
        charEnd: e,
        tokens: groupTokens + headerTokens,
        kind: "table",
      });
    }
    first = false;
    group = [];
    groupTokens = 0;
  };
  const budget = Math.max(1, target - headerTokens);
  for (const r of rows) {
    if (r.tokens > budget) {
      emit();
      out.push(...hugeRow(full, t.header, r, target, page, hp));
      first = false;
      continue;
    }
    const limit = first ? budget - leadTokens : budget;
    if (group.length > 0 && groupTokens + r.tokens > limit) emit();
    group.push(r);
    groupTokens += r.tokens;
  }
  emit();
  return out;
}

/** A row too big for one chunk: split by cells, each line "header: cell", cells cut hard if still too big. */
function hugeRow(
  full: string,
  header: string[],
  row: { start: number; cells: string[] },
  target: number,
  page: number | undefined,
  hp: string[],
): Omit<Chunk, "ordinal">[] {
  const out: Omit<Chunk, "ordinal">[] = [];
  let lines: string[] = [];
  let tokens = 0;
  let s = -1;
  let e = -1;
  const pageFields = page !== undefined ? { page, pageEnd: page } : {};
  const emit = () => {
    if (lines.length === 0) return;
    out.push({
      text: lines.join("\n"),
      ...pageFields,
      headingPath: hp,
      charStart: s,
      charEnd: e,
      tokens,
      kind: "table",
    });
    lines = [];
    tokens = 0;
    s = -1;
  };
  let p = row.start;
  row.cells.forEach((cell, i) => {
    const cs = p;
    const ce = p + cell.length;
    p = ce + CELL_SEP.length;
    if (cell === "") return;
    const label = header[i] ? `${header[i]}: ` : "";
    const labelTokens = estimateTokens(label);
    const pieces =
      estimateTokens(cell) + labelTokens <= target
        ? [{ start: cs, end: ce, tokens: estimateTokens(cell) }]
        : hardSplit(full, cs, ce, Math.max(1, target - labelTokens));
    for (const piece of pieces) {
      const t = piece.tokens + labelTokens;
      if (lines.length > 0 && tokens + t > target) emit();
      if (s < 0) s = piece.start;
      e = piece.end;
      lines.push(label + full.slice(piece.start, piece.end));
      tokens += t;
    }
  });
  emit();
  return out;
}
