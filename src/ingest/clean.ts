// Cleaning shared by loaders: line re-joining (PDF/plain-text wrapping), hyphenation, page furniture.
import { isCjk } from "./text-utils.js";

const LIST_RE =
  /^\s*(?:[-*+•·●○▪■◦‣⁃]|\(?\d{1,3}[.)、]|\(?[a-zA-Z][.)]|[（(][一二三四五六七八九十\d]+[）)]|[一二三四五六七八九十]+、)\s*/;

export function isListLine(line: string): boolean {
  return LIST_RE.test(line) && line.replace(LIST_RE, "").trim().length > 0;
}

/**
 * Join wrapped lines into one paragraph: "infor-\nmation" → "information"; CJK|CJK boundaries join
 * without a space; everything else with one space.
 */
export function joinLines(lines: string[]): string {
  // Built as parts + join: indexing the tail of a growing `+=` string flattens V8's rope on every line,
  // which made a 200k-line paragraph quadratic (minutes). `tail` is the last part, edited in place.
  const parts: string[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (line === "") continue;
    if (parts.length === 0) {
      parts.push(line);
      continue;
    }
    const tail = parts[parts.length - 1];
    const prev = tail[tail.length - 1];
    const next = line[0];
    if (prev === "-" && /[A-Za-z]/.test(tail[tail.length - 2] ?? "") && /[a-z]/.test(next)) {
      parts[parts.length - 1] = tail.slice(0, -1); // hyphenated line break
      parts.push(line);
    } else if (prev === "\u00ad") {
      parts[parts.length - 1] = tail.slice(0, -1); // soft hyphen
      if (parts[parts.length - 1] === "") parts.pop();
      parts.push(line);
    } else if (isCjk(prev) || isCjk(next)) {
      // No space between CJK and CJK or CJK punctuation; keep one between CJK and Latin words.
      parts.push(
        (isCjk(prev) && isCjk(next)) || /[，。！？；：、）》」』”]/.test(next) || /[（《「『“]/.test(prev)
          ? line
          : " " + line,
      );
    } else {
      parts.push(" " + line);
    }
  }
  return parts.join("");
}

/** "3", "- 3 -", "Page 3", "Page 3 of 10", "3 / 10", "第 3 页", "第3页 共10页", "iv". */
export const PAGE_NUMBER_RE =
  /^\s*(?:[-–—]\s*)?(?:(?:page|p\.|pg\.?)\s*)?(?:\d{1,5}|[ivxlcdm]{1,6})(?:\s*(?:of|\/|／)\s*\d{1,5})?(?:\s*[-–—])?\s*$|^\s*第\s*\d{1,5}\s*页(?:\s*[，,/／]?\s*共\s*\d{1,5}\s*页)?\s*$|^\s*共\s*\d{1,5}\s*页\s*第\s*\d{1,5}\s*页\s*$/i;

export function isPageNumberLine(line: string): boolean {
  return PAGE_NUMBER_RE.test(line);
}

/** Header/footer identity: digits vary page to page ("Report 2024 — page 3"), so they are masked. */
export function furnitureKey(line: string): string {
  return line.replace(/\s+/g, " ").trim().replace(/\d+/g, "#").toLowerCase();
}

/**
 * Lines that sit among the first/last `depth` lines of most pages are running headers/footers.
 * Returns the set of keys to drop. Needs at least 3 pages (2 pages: both must match).
 */
export function findRepeatedFurniture(pages: string[][], depth = 2): Set<string> {
  const out = new Set<string>();
  const n = pages.length;
  if (n < 2) return out;
  const counts = new Map<string, number>();
  for (const lines of pages) {
    const seen = new Set<string>();
    const edge = [...lines.slice(0, depth), ...lines.slice(Math.max(depth, lines.length - depth))];
    for (const l of edge) {
      const k = furnitureKey(l);
      if (k === "" || seen.has(k)) continue;
      seen.add(k);
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
  }
  const need = n <= 2 ? n : Math.max(3, Math.ceil(n * 0.5));
  for (const [k, c] of counts) if (c >= need) out.add(k);
  return out;
}
