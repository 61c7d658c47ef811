// Small language helpers for answering: salient query terms (Latin words + CJK bigrams), sentence splitting for
// Chinese and English, and the "not found" sentence in the asker's language. No dictionary needed: CJK character
// bigrams are a robust overlap signal for both Simplified and Traditional Chinese.

const CJK = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/;
const CJK_RUN = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+/g;
const WORD = /[\p{L}\p{N}][\p{L}\p{N}'’_-]*/gu;

const EN_STOP = new Set(
  (
    "a an the and or but if of to in on at by for with from as is are was were be been being do does did have has " +
    "had what which who whom whose when where why how that this these those it its i you he she they we me my your " +
    "our their his her them us not no yes can could should would will shall may might must about into than then " +
    "there here so such any some all each also only just very more most other tell please give show explain list " +
    "describe according document documents say says said"
  ).split(" "),
);

// Function characters of Chinese questions: a bigram made only of these carries no topic.
const ZH_STOP_CHARS = new Set([
  ..."的了是在有和与及或吗呢吧啊么什哪谁何怎样为多少几个这那些请问一下中说明告诉我们你他她它该其之把被给对从到",
]);

export function hasCjk(text: string): boolean {
  return CJK.test(text);
}

/** Salient terms of a text: lower-cased Latin/number words (no stop words) and CJK bigrams (single chars if alone). */
export function salientTerms(text: string): string[] {
  const out = new Set<string>();
  const latin = text.replace(CJK_RUN, " ");
  for (const m of latin.toLowerCase().matchAll(WORD)) {
    const w = m[0].replace(/['’]s$/, "");
    if (w.length >= 2 && !EN_STOP.has(w)) out.add(w);
    else if (/^\d$/.test(w)) out.add(w);
  }
  for (const m of text.matchAll(CJK_RUN)) {
    const run = m[0];
    if (run.length === 1) {
      if (!ZH_STOP_CHARS.has(run)) out.add(run);
      continue;
    }
    for (let i = 0; i + 1 < run.length; i++) {
      const bg = run.slice(i, i + 2);
      if (!(ZH_STOP_CHARS.has(bg[0]) && ZH_STOP_CHARS.has(bg[1]))) out.add(bg);
    }
  }
  return [...out];
}

/** Fraction of `terms` that occur in `text` (case-insensitive). */
export function termOverlap(terms: string[], text: string): number {
  if (terms.length === 0) return 0;
  const t = text.toLowerCase();
  let hit = 0;
  for (const term of terms) if (t.includes(term)) hit++;
  return hit / terms.length;
}

/** Split into sentences, keeping the terminator; handles 。！？；, ". ", newlines and blank lines. */
export function splitSentences(text: string): string[] {
  const out: string[] = [];
  const re = /[^。！？!?；;\n]+?(?:[。！？!?；;]+|\.(?=\s|$)|(?=\n)|$)/gu;
  for (const m of text.matchAll(re)) {
    const s = m[0].replace(/\s+/g, " ").trim();
    if (s.length >= 2) out.push(s);
  }
  return out;
}

export function notFoundText(question: string): string {
  return hasCjk(question) ? "文档中未找到相关内容。" : "I could not find this in the documents.";
}
