// Sentence boundaries for Chinese and English text, as [start, end) ranges into the input.

const ABBREV = new Set(
  (
    "mr mrs ms dr prof sr jr st vs etc e.g i.e inc ltd co corp no nos fig figs vol eq al approx dept est " +
    "jan feb mar apr jun jul aug sep sept oct nov dec mt gen col lt sgt capt rev u.s u.k a.m p.m"
  ).split(" "),
);

// CJK terminators (with trailing closing quotes/brackets), English terminators followed by whitespace, or newlines.
const BOUNDARY = /[。！？；…]+[”’」』）》】"')]*|[.!?]+[”’"')\]]*(?=\s|$)|\n+/g;

function isAbbreviation(text: string, dotIndex: number): boolean {
  // The word right before the dot, e.g. "Dr" in "Dr. Smith" or "e.g" in "e.g. this".
  let i = dotIndex;
  while (i > 0 && /[A-Za-z.]/.test(text[i - 1])) i--;
  const word = text.slice(i, dotIndex).toLowerCase();
  if (word.length === 0) return false;
  if (ABBREV.has(word)) return true;
  // Single initials ("J. Smith") — but not a lone "I." at a sentence end, which is rare enough to ignore.
  return /^[a-z]$/.test(word) && /[A-Z]/.test(text[dotIndex - 1]);
}

/** Ranges of sentences (whitespace between sentences belongs to none). Always covers every non-space char. */
export function sentenceRanges(text: string, base = 0): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let cursor = 0;
  const push = (s: number, e: number) => {
    while (s < e && /\s/.test(text[s])) s++;
    while (e > s && /\s/.test(text[e - 1])) e--;
    if (e > s) out.push([base + s, base + e]);
  };
  BOUNDARY.lastIndex = 0;
  for (let m = BOUNDARY.exec(text); m !== null; m = BOUNDARY.exec(text)) {
    const end = m.index + m[0].length;
    if (m[0][0] === "." && isAbbreviation(text, m.index)) continue;
    // English terminator must be followed by something that starts a sentence, not "3.5" or "e.g.,".
    if (/^[.!?]/.test(m[0])) {
      const next = text.slice(end).match(/^\s+(\S)/);
      if (next && /[a-z,;:]/.test(next[1]) && m[0][0] === ".") continue;
    }
    push(cursor, end);
    cursor = end;
  }
  push(cursor, text.length);
  return out;
}
