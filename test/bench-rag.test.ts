// bench:rag's scoring and data plumbing: the numbers the benchmark prints are only as good as these.
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildBaseline } from "../bench/rag/baseline.js";
import { loadSet, normForMatch } from "../bench/rag/data.js";
import { answeredWithin, contextWithin, goldRank, percentile, summarize } from "../bench/rag/metrics.js";

describe("metrics", () => {
  const hits = [
    { text: "a".repeat(30), document: "d1" },
    { text: "ANSWER here", document: "d2" },
    { text: "second d1 chunk", document: "d1" },
  ];

  it("cuts the ranked context at the budget, separators included", () => {
    expect(contextWithin(hits, 10)).toBe("a".repeat(10));
    expect(contextWithin(hits, 36)).toBe("a".repeat(30) + "\n\nANSW");
  });

  it("counts an answer only when it lies inside the budget", () => {
    expect(answeredWithin(hits, ["answer"], 36)).toBe(false); // "ANSW" only
    expect(answeredWithin(hits, ["answer"], 38)).toBe(true); // case-folded match
    expect(answeredWithin(hits, ["nothing", "second d1"], 1000)).toBe(true);
  });

  it("ignores whitespace differences such as PDF line wraps", () => {
    expect(answeredWithin([{ text: "光荣和\nω-force", document: "x" }], ["光荣和ω-force"], 100)).toBe(true);
  });

  it("ranks gold documents by first appearance", () => {
    expect(goldRank(hits, new Set(["d2"]))).toBe(2);
    expect(goldRank(hits, new Set(["d1"]))).toBe(1);
    expect(goldRank(hits, new Set(["d9"]))).toBe(0);
  });

  it("summarises recall@k, MRR and percentiles", () => {
    const s = summarize([
      { answered: true, rank: 1, ms: 1 },
      { answered: false, rank: 3, ms: 2 },
      { answered: true, rank: 0, ms: 10 },
      { answered: false, rank: 2, ms: 3 },
    ]);
    expect(s.answerRecall).toBe(0.5);
    expect(s.recallAt["@1"]).toBe(0.25);
    expect(s.recallAt["@3"]).toBe(0.75);
    expect(s.mrr).toBeCloseTo((1 + 1 / 3 + 0 + 1 / 2) / 4);
    expect(percentile([5, 1, 3, 2, 4], 50)).toBe(3);
    expect(percentile([1, 2, 3, 4, 100], 95)).toBe(100);
  });
});

describe("evaluation sets", () => {
  const dir = mkdtempSync(join(tmpdir(), "bench-rag-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (set: string, corpus: object[], queries: object[]) => {
    mkdirSync(join(dir, set), { recursive: true });
    writeFileSync(join(dir, set, "corpus.jsonl"), corpus.map((c) => JSON.stringify(c)).join("\n") + "\n");
    writeFileSync(join(dir, set, "queries.jsonl"), queries.map((c) => JSON.stringify(c)).join("\n") + "\n");
  };

  it("groups passages into one document per article, in order, rotating formats", () => {
    write(
      "xquad-zh",
      [
        { id: "Tesla_p0", title: "", text: "特斯拉出生于斯米连。" },
        { id: "Warsaw_p0", title: "", text: "华沙是波兰首都。" },
        { id: "Tesla_p1", title: "", text: "他在1884年移居美国。" },
      ],
      [
        { id: "q1", question: "华沙是哪国首都？", answers: ["波兰"], positive_ids: ["Warsaw_p0"] },
        { id: "q2", question: "他何时移居？", answers: ["1884 年", "1884年"], positive_ids: ["Tesla_p1"] },
        { id: "q3", question: "自由回答？", answers: ["不在原文里"], positive_ids: ["Tesla_p0"] },
      ],
    );
    const set = loadSet(dir, "xquad-zh");
    expect(set.lang).toBe("zh");
    expect(set.budget).toBe(2000);
    expect(set.docs.map((d) => [d.title, d.format, d.paragraphs.length])).toEqual([
      ["Tesla", "pdf", 2],
      ["Warsaw", "docx", 1],
    ]);
    expect(set.docs[0].paragraphs[1]).toContain("1884");
    expect(set.passageDoc.get("Tesla_p1")).toBe(set.docs[0].name);
    // q3's answer is not a span of its passage: skipped; q2 keeps both spellings (whitespace-insensitive match).
    expect(set.skipped).toBe(1);
    expect(set.queries.map((q) => q.id).sort()).toEqual(["q1", "q2"]);
    expect(set.queries.find((q) => q.id === "q2")!.answers).toEqual(["1884 年", "1884年"]);
  });

  it("samples --limit deterministically", () => {
    const a = loadSet(dir, "xquad-zh", 1).queries.map((q) => q.id);
    const b = loadSet(dir, "xquad-zh", 1).queries.map((q) => q.id);
    expect(a).toHaveLength(1);
    expect(a).toEqual(b);
  });

  it("normalises for matching without whitespace or case", () => {
    expect(normForMatch("Ａ B\nc")).toBe("abc");
  });
});

describe("LangChain.js baseline", () => {
  const docs = [
    { name: "a.md", text: "The Normans were the people who gave their name to Normandy." },
    { name: "b.md", text: "华沙是波兰的首都和最大城市。" },
  ];

  it("splits and ranks with LangChain's BM25Retriever", async () => {
    const bl = await buildBaseline(docs, "langchain", 1);
    expect(bl.chunks).toBe(2);
    expect((await bl.search("who gave their name to normandy"))[0].document).toBe("a.md");
  });

  it("needs jieba query tokens to find Chinese text (whitespace splitting cannot)", async () => {
    const plain = await buildBaseline(docs, "langchain", 1);
    const jieba = await buildBaseline(docs, "langchain+jieba", 1);
    expect((await jieba.search("波兰的首都是哪里？"))[0].document).toBe("b.md");
    // Whitespace splitting leaves one "word" found nowhere: all scores are 0 and the first chunk wins, wrongly.
    expect((await plain.search("波兰的首都是哪里"))[0].document).toBe("a.md");
  });
});
