import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { SearchResult } from "../index/types.js";
import { buildCitations, CitationRewriter, pickQuote, rewriteCitations } from "./citations.js";
import { extractiveAnswer } from "./extractive.js";
import { notFoundText, salientTerms, splitSentences } from "./text.js";

const res = (text: string, document: string, page?: number): SearchResult => ({
  text,
  score: 1,
  source: { document, ...(page !== undefined ? { page } : {}) },
  chunkId: `c-${document}`,
  documentId: `d-${document}`,
});

describe("citation markers", () => {
  it("renumbers used sources by first use, drops markers that point nowhere", () => {
    const r = rewriteCitations("Leave is 15 days [3]. Apply early [1][9]. Again [3] and [0].", 4);
    expect(r.text).toBe("Leave is 15 days [1]. Apply early [2]. Again [1] and .");
    expect(r.order).toEqual([3, 1]);
  });

  it("handles grouped and full-width markers and leaves ordinary brackets alone", () => {
    expect(rewriteCitations("A [2, 1]. B 【2】. C [note] and [] and [x1].", 2).text).toBe(
      "A [1][2]. B [1]. C [note] and [] and [x1].",
    );
    expect(rewriteCitations("array[0] = 1 [1]", 1).text).toBe("array = 1 [1]");
  });

  it("gives the same text however the stream is split (property)", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.constantFrom("[1]", "[2]", "[5]", "[1, 2]", "【3】", "[", "]", " ", "a", "文", ","),
            fc.string({ maxLength: 4 }),
          ),
          { maxLength: 30 },
        ),
        fc.array(fc.nat(), { maxLength: 10 }),
        (parts, cuts) => {
          const text = parts.join("");
          const whole = rewriteCitations(text, 3);
          const r = new CitationRewriter(3);
          let out = "";
          let pos = 0;
          for (const c of [...cuts.map((x) => x % (text.length + 1))].sort((a, b) => a - b)) {
            out += r.push(text.slice(pos, c));
            pos = Math.max(pos, c);
          }
          out += r.push(text.slice(pos)) + r.end();
          expect(out).toBe(whole.text);
          expect(r.order).toEqual(whole.order);
          for (const m of out.matchAll(/\[(\d+)\]/g))
            if (/^\[\d+\]$/.test(m[0])) expect(Number(m[1])).toBeGreaterThanOrEqual(1);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("builds citations with document, page and the supporting sentence as quote", () => {
    const sources = [
      res("Offices open at 9. Employees get 15 days of paid annual leave. Parking is free.", "hr.pdf", 3),
      res("Expenses are reimbursed within 30 days.", "finance.md"),
    ];
    const answer = "You get 15 days of paid leave [1].";
    const c = buildCitations(sources, [1], answer);
    expect(c).toEqual([
      {
        index: 1,
        document: "hr.pdf",
        page: 3,
        quote: "Employees get 15 days of paid annual leave.",
        chunkId: "c-hr.pdf",
        documentId: "d-hr.pdf",
      },
    ]);
    expect(pickQuote("No overlap here at all.", "Something [1].", 1)).toBe("No overlap here at all.");
  });
});

describe("text helpers", () => {
  it("extracts salient terms for English and Chinese", () => {
    expect(salientTerms("What is the annual leave policy?")).toEqual(["annual", "leave", "policy"]);
    const zh = salientTerms("员工有多少天年假？");
    expect(zh).toContain("员工");
    expect(zh).toContain("年假");
    expect(zh).not.toContain("多少");
  });

  it("splits Chinese and English sentences", () => {
    expect(splitSentences("第一句。第二句！Third one. Fourth? pi is 3.14 ok")).toEqual([
      "第一句。",
      "第二句！",
      "Third one.",
      "Fourth?",
      "pi is 3.14 ok",
    ]);
    expect(notFoundText("年假多少天？")).toBe("文档中未找到相关内容。");
    expect(notFoundText("How long?")).toBe("I could not find this in the documents.");
  });

  it("extractive answers quote the best sentences with contiguous citations", () => {
    const sources = [
      res("The cafeteria opens at noon. Parking is free for staff.", "misc.md"),
      res("公司规定：员工每年有十五天带薪年假。请假需要提前三天申请。", "年假制度.md", 2),
      res("Annual leave: employees receive 15 days of paid annual leave each year.", "hr.md"),
    ];
    const en = extractiveAnswer("How many days of annual leave do employees get?", sources);
    expect(en.text).toContain("“Annual leave: employees receive 15 days of paid annual leave each year.” [1]");
    expect(en.order[0]).toBe(3);
    expect(en.text).not.toContain("cafeteria");
    const zh = extractiveAnswer("员工每年有几天年假？", sources);
    expect(zh.order).toEqual([2]);
    expect(zh.quotes[0][0]).toContain("十五天带薪年假");
    expect(extractiveAnswer("quantum chromodynamics", sources)).toEqual({ text: "", order: [], quotes: [] });
  });
});
