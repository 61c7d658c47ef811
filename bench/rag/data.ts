// Evaluation sets for bench:rag: passages grouped into documents (one per article title, paragraphs in
// order), a rotating file format per document, and the public queries whose answers are verbatim spans.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";

export type BenchFormat = "pdf" | "docx" | "html" | "markdown" | "text";
/** Rotation order: every set gets all five formats in turn. */
export const FORMATS: BenchFormat[] = ["pdf", "docx", "html", "markdown", "text"];
export const EXT: Record<BenchFormat, string> = { pdf: "pdf", docx: "docx", html: "html", markdown: "md", text: "txt" };

export interface Passage {
  id: string;
  title: string;
  text: string;
}

export interface Query {
  id: string;
  question: string;
  /** Gold answers that are verbatim spans of the positive passage (others are dropped). */
  answers: string[];
  positiveIds: string[];
}

export interface DocSpec {
  /** File name, also the document name dajian reports in search results. */
  name: string;
  title: string;
  format: BenchFormat;
  paragraphs: string[];
  passageIds: string[];
}

export interface BenchSet {
  name: string;
  lang: "zh" | "en";
  /** Context budget in characters for answer-recall. */
  budget: number;
  docs: DocSpec[];
  /** passage id → document name */
  passageDoc: Map<string, string>;
  passages: Map<string, Passage>;
  queries: Query[];
  /** Questions dropped because no gold answer is a substring of its passage. */
  skipped: number;
  /** Public questions before --limit sampling. */
  totalQueries: number;
}

export const KNOWN_SETS = ["cmrc2018", "drcd", "squad-v1.1-dev", "xquad-zh"];

function readJsonl<T>(file: string): T[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as T);
}

/** Matching form for answers and context: NFKC, lower case, no whitespace (PDF line wraps must not hide a span). */
export function normForMatch(s: string): string {
  return s.normalize("NFKC").toLowerCase().replace(/\s+/gu, "");
}

function safeName(title: string): string {
  const s = title
    .normalize("NFKC")
    .replace(/[^\p{L}\p{N}_-]+/gu, "_")
    .replace(/^_+|_+$/g, "");
  return (s || "untitled").slice(0, 40);
}

/** The article a passage belongs to: its title, or for untitled sets (XQuAD) the `<Article>_p<n>` id prefix. */
export function articleOf(p: Passage): string {
  if (p.title.trim() !== "") return p.title;
  const m = /^(.*)_p\d+$/.exec(p.id);
  return m ? m[1].replace(/_/g, " ") : p.id;
}

/** Deterministic sample: order by hash of the id, so --limit N picks the same queries every run. */
function sampleQueries(qs: Query[], limit: number | undefined): Query[] {
  if (limit === undefined || limit >= qs.length) return qs;
  const key = (q: Query) => createHash("sha1").update(q.id).digest("hex");
  return [...qs].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0)).slice(0, limit);
}

export function loadSet(dataDir: string, name: string, limit?: number): BenchSet {
  const dir = join(dataDir, name);
  const passages = readJsonl<Passage>(join(dir, "corpus.jsonl"));
  const rawQueries = readJsonl<{ id: string; question: string; answers: string[]; positive_ids: string[] }>(
    join(dir, "queries.jsonl"),
  );
  const lang: "zh" | "en" = /squad/.test(name) && !/zh/.test(name) ? "en" : "zh";

  const byArticle = new Map<string, Passage[]>();
  for (const p of passages) {
    const a = articleOf(p);
    let list = byArticle.get(a);
    if (!list) byArticle.set(a, (list = []));
    list.push(p);
  }
  const docs: DocSpec[] = [];
  const passageDoc = new Map<string, string>();
  let i = 0;
  for (const [title, ps] of byArticle) {
    const format = FORMATS[i % FORMATS.length];
    const name = `${String(i).padStart(4, "0")}-${safeName(title)}.${EXT[format]}`;
    docs.push({ name, title, format, paragraphs: ps.map((p) => p.text), passageIds: ps.map((p) => p.id) });
    for (const p of ps) passageDoc.set(p.id, name);
    i++;
  }

  const byId = new Map(passages.map((p) => [p.id, p]));
  const queries: Query[] = [];
  let skipped = 0;
  for (const q of rawQueries) {
    const gold = q.positive_ids.map((id) => byId.get(id)?.text ?? "").map(normForMatch);
    const answers = q.answers.filter((a) => normForMatch(a) !== "" && gold.some((g) => g.includes(normForMatch(a))));
    if (answers.length === 0) {
      skipped++;
      continue;
    }
    queries.push({ id: q.id, question: q.question, answers, positiveIds: q.positive_ids });
  }
  return {
    name,
    lang,
    budget: lang === "zh" ? 2000 : 4000,
    docs,
    passageDoc,
    passages: byId,
    queries: sampleQueries(queries, limit),
    skipped,
    totalQueries: queries.length,
  };
}
