// The search analyser: one function turns text into index terms, used identically when indexing a chunk and
// when parsing a query (so a query term can only ever meet a term produced the same way).
//
//   foldForSearch (NFKC + lowercase: full-width → half-width)
//   → traditional → simplified Chinese (OpenCC character + phrase tables), so 員工 and 员工 are one term
//   → jieba segmentation in search mode (long words also emit their dictionary sub-words)
//   → split on anything that is not a letter or digit
//   → English: stopwords dropped, Porter stem; Chinese: a short function-word stoplist
//
// Every knob is in AnalyzerOptions so the benchmark can tune it; `analyzerId` fingerprints the options and is
// stored per knowledge base: changing the analyser of an existing KB would silently break matching, so the KB
// service refuses it and asks for a re-index instead.
import { Jieba } from "@node-rs/jieba";
import { dict } from "@node-rs/jieba/dict.js";
import * as OpenCC from "opencc-js/t2cn";
import { foldForSearch } from "../ingest/index.js";
import { porterStem } from "./stem.js";

export interface AnalyzerOptions {
  /** Convert traditional Chinese to simplified before segmentation. */
  toSimplified: boolean;
  /** jieba search mode (cutForSearch): long words also emit their sub-words, so 合同法 matches 合同. */
  searchMode: boolean;
  /** jieba HMM for out-of-vocabulary words (names, new terms). */
  hmm: boolean;
  /** Porter-stem English words. */
  stem: boolean;
  /** Drop the built-in stopwords (English articles/pronouns, Chinese function words). */
  stopwords: boolean;
  /** Also emit every Han character of multi-character words (recall over precision; off by default). */
  cjkUnigrams: boolean;
}

export const DEFAULT_ANALYZER: AnalyzerOptions = {
  toSimplified: true,
  searchMode: true,
  hmm: true,
  stem: true,
  stopwords: true,
  cjkUnigrams: false,
};

/** Stable fingerprint of the options (stored per KB). Bump the version when the pipeline itself changes. */
export function analyzerId(o: AnalyzerOptions = DEFAULT_ANALYZER): string {
  const flags = [o.toSimplified, o.searchMode, o.hmm, o.stem, o.stopwords, o.cjkUnigrams]
    .map((b) => (b ? "1" : "0"))
    .join("");
  return `v1:${flags}`;
}

export function parseAnalyzerId(id: string): AnalyzerOptions {
  const m = /^v1:([01]{6})$/.exec(id);
  if (!m) return DEFAULT_ANALYZER;
  const f = [...m[1]].map((c) => c === "1");
  return { toSimplified: f[0], searchMode: f[1], hmm: f[2], stem: f[3], stopwords: f[4], cjkUnigrams: f[5] };
}

// Light lists: IDF already discounts common words; these only remove words that carry no topic at all.
const EN_STOP = new Set(
  (
    "a an the of to in on at for by with from and or but not no is are was were be been being am do does did " +
    "it its this that these those as if than then so such there here i me my we our you your he him his she her " +
    "they them their what which who whom whose when where why how can could would should will shall may might must"
  ).split(" "),
);
const ZH_STOP = new Set(
  (
    "的 了 着 过 是 在 和 与 及 或 也 都 就 而 被 把 这 那 这个 那个 这些 那些 吗 呢 吧 啊 呀 哦 之 其 " +
    "什么 哪 哪个 哪些 哪里 哪儿 多少 几 如何 怎么 怎样 怎么样 为什么 为何 谁 是否 请问 有没有 是不是"
  ).split(" "),
);

let jieba: Jieba | undefined;
function getJieba(): Jieba {
  jieba ??= Jieba.withDict(dict);
  return jieba;
}

let t2s: ((s: string) => string) | undefined;
function toSimplified(s: string): string {
  const conv = (t2s ??= OpenCC.Converter({ from: "t", to: "cn" }));
  return conv(s);
}

const HAN = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/;
const LATIN_WORD = /^[a-z]+$/;
const SPLIT = /[^\p{L}\p{N}]+/u;

/** Analyse text into index terms (order kept, duplicates kept: term frequency matters for BM25). */
export function analyze(text: string, o: AnalyzerOptions = DEFAULT_ANALYZER): string[] {
  let s = foldForSearch(text);
  const hasHan = HAN.test(s);
  if (hasHan && o.toSimplified) s = toSimplified(s);
  const pieces = hasHan
    ? o.searchMode
      ? getJieba().cutForSearch(s, o.hmm)
      : getJieba().cut(s, o.hmm)
    : s.split(/\s+/);
  const out: string[] = [];
  for (const piece of pieces) {
    for (const w of piece.split(SPLIT)) {
      if (w === "") continue;
      if (LATIN_WORD.test(w)) {
        if (o.stopwords && EN_STOP.has(w)) continue;
        out.push(o.stem ? porterStem(w) : w);
        continue;
      }
      if (o.stopwords && ZH_STOP.has(w)) continue;
      out.push(w);
      if (o.cjkUnigrams && w.length > 1 && HAN.test(w)) {
        for (const ch of w) if (HAN.test(ch)) out.push(ch);
      }
    }
  }
  return out;
}

/** Query terms: the same analysis, deduplicated (order of first appearance). */
export function analyzeQuery(text: string, o: AnalyzerOptions = DEFAULT_ANALYZER): string[] {
  return [...new Set(analyze(text, o))];
}
