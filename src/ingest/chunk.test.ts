import { describe, expect, it } from "vitest";
import { chunkDocument, documentText, estimateTokens, foldForSearch, sentenceRanges } from "./index.js";
import { markdownBlocks } from "./text.js";
import { makeTable, renderTable } from "./table.js";
import type { Block, Chunk, ParsedDocument } from "./types.js";

const doc = (blocks: Block[]): ParsedDocument => ({ format: "markdown", blocks, needsOcrPages: [], warnings: [] });

/** The offset invariant every chunk must satisfy (see chunk.ts header). */
function checkOffsets(d: ParsedDocument, chunks: Chunk[]) {
  const full = documentText(d);
  for (const c of chunks) {
    expect(c.charStart).toBeGreaterThanOrEqual(0);
    expect(c.charEnd).toBeLessThanOrEqual(full.length);
    expect(c.charEnd).toBeGreaterThan(c.charStart);
    const slice = full.slice(c.charStart, c.charEnd);
    if (c.kind === "text") expect(c.text).toBe(slice);
    else if (c.text !== slice) {
      // Table pieces: header line + the rows of the slice, or "header: cell" lines of one huge row.
      const lines = c.text.split("\n");
      const rest = lines.slice(1).join("\n");
      const ok = rest === slice || lines.every((l) => slice.includes(l.replace(/^[^:]*: /, "")));
      expect(ok, `table chunk ${c.ordinal} does not match its slice`).toBe(true);
    }
  }
}

describe("foldForSearch / estimateTokens", () => {
  it("folds full-width forms and case", () => {
    expect(foldForSearch("ＡＢＣ１２３！ＲＡＧ")).toBe("abc123!rag");
    expect(foldForSearch("Ｗｉｎｄｏｗｓ　１０")).toBe("windows 10");
    expect(foldForSearch("ｶﾀｶﾅ")).toBe("カタカナ");
    expect(foldForSearch("年假")).toBe("年假");
  });
  it("counts CJK per character and English near words × 1.3", () => {
    expect(estimateTokens("员工每年享有带薪年假")).toBe(10);
    const en = "The quick brown fox jumps over the lazy dog while the committee deliberates its recommendations.";
    const words = en.split(" ").length;
    const t = estimateTokens(en);
    expect(t).toBeGreaterThanOrEqual(words);
    expect(t).toBeLessThanOrEqual(Math.ceil(words * 1.6));
    expect(estimateTokens("")).toBe(0);
  });
});

describe("sentenceRanges", () => {
  const split = (s: string) => sentenceRanges(s).map(([a, b]) => s.slice(a, b));
  it("splits Chinese on 。！？；… and keeps closing quotes", () => {
    expect(split("他说：“好的。”然后走了！真的吗？是的；当然……结束")).toEqual([
      "他说：“好的。”",
      "然后走了！",
      "真的吗？",
      "是的；",
      "当然……",
      "结束",
    ]);
  });
  it("splits English with abbreviation care", () => {
    expect(split("Dr. Smith met Mr. J. Brown at 3.30 p.m. today. It went well! Did it? Yes, e.g. the budget.")).toEqual(
      ["Dr. Smith met Mr. J. Brown at 3.30 p.m. today.", "It went well!", "Did it?", "Yes, e.g. the budget."],
    );
  });
});

describe("chunkDocument", () => {
  const md = `# 员工手册

前言：本手册适用于全体员工。

## 第三章 假期

### 年假

员工每年享有带薪年假十五天。年假须提前两周申请。

- 病假需要医院证明
- 事假不带薪

## Chapter 4 Overtime

Overtime is paid at 1.5 times the hourly rate. Weekend work is paid double.

| 类型 | 倍数 |
|---|---|
| 工作日加班 | 1.5 |
| 休息日加班 | 2 |
| 法定节假日 | 3 |
`;
  it("keeps heading paths, whole list items and small tables", () => {
    const d = doc(markdownBlocks(md).blocks);
    const chunks = chunkDocument(d, { targetTokens: 400, overlapTokens: 60 });
    checkOffsets(d, chunks);
    const leave = chunks.find((c) => c.text.includes("十五天"))!;
    expect(leave.headingPath).toEqual(["员工手册", "第三章 假期", "年假"]);
    expect(leave.text).toContain("病假需要医院证明");
    const overtime = chunks.find((c) => c.text.includes("Overtime is paid"))!;
    expect(overtime.headingPath).toEqual(["员工手册", "Chapter 4 Overtime"]);
    const table = chunks.find((c) => c.kind === "table")!;
    expect(table.text).toContain("类型 | 倍数");
    expect(table.text).toContain("法定节假日 | 3");
    expect(chunks.map((c) => c.ordinal)).toEqual(chunks.map((_, i) => i));
  });

  it("splits big tables by rows, repeating the header, never mid-row", () => {
    const rows = Array.from({ length: 120 }, (_, i) => [`员工${i}`, `部门${i % 7}`, `${1000 + i}`]);
    const table = makeTable(["姓名", "部门", "工号"], rows);
    const d = doc([
      { kind: "heading", level: 1, text: "名单" },
      { kind: "table", text: renderTable(table), table },
    ]);
    const chunks = chunkDocument(d, { targetTokens: 80, overlapTokens: 10 });
    checkOffsets(d, chunks);
    expect(chunks.length).toBeGreaterThan(5);
    const seen: string[] = [];
    for (const c of chunks) {
      expect(c.kind).toBe("table");
      expect(c.headingPath).toEqual(["名单"]);
      const lines = c.text.split("\n");
      const headerAt = lines.indexOf("姓名 | 部门 | 工号");
      expect(headerAt).toBeGreaterThanOrEqual(0);
      for (const l of lines.slice(headerAt + 1)) {
        expect(l.split(" | ")).toHaveLength(3); // whole rows only
        seen.push(l);
      }
      expect(c.tokens).toBeLessThanOrEqual(80);
    }
    expect(seen).toEqual(rows.map((r) => r.join(" | "))); // every row exactly once, in order
  });

  it("splits a single huge row by cells and keeps the header names", () => {
    const big = "这是一段很长的说明。".repeat(60);
    const table = makeTable(
      ["项目", "说明", "备注"],
      [
        ["A", big, "无"],
        ["B", "短", "有"],
      ],
    );
    const d = doc([{ kind: "table", text: renderTable(table), table }]);
    const chunks = chunkDocument(d, { targetTokens: 100, overlapTokens: 0 });
    checkOffsets(d, chunks);
    const pieces = chunks.filter((c) => c.text.includes("说明: "));
    expect(pieces.length).toBeGreaterThan(3);
    for (const c of chunks) expect(c.tokens).toBeLessThanOrEqual(100);
    const joined = pieces
      .map((c) =>
        c.text
          .split("\n")
          .filter((l) => l.startsWith("说明: "))
          .map((l) => l.slice(4))
          .join(""),
      )
      .join("");
    expect(joined.replace(/\s/g, "")).toBe(big);
  });

  it("splits long paragraphs at sentences with whole-sentence overlap", () => {
    const sents = Array.from(
      { length: 40 },
      (_, i) => `第${i}条规定员工应当遵守公司的各项规章制度并认真履行岗位职责。`,
    );
    const d = doc([
      { kind: "heading", level: 1, text: "制度" },
      { kind: "paragraph", text: sents.join("") },
    ]);
    const chunks = chunkDocument(d, { targetTokens: 120, overlapTokens: 40 });
    checkOffsets(d, chunks);
    expect(chunks.length).toBeGreaterThan(5);
    for (const c of chunks) {
      expect(c.tokens).toBeLessThanOrEqual(120);
      expect(c.headingPath).toEqual(["制度"]);
    }
    for (let i = 1; i < chunks.length; i++) {
      const prev = chunks[i - 1];
      const cur = chunks[i];
      expect(cur.charStart).toBeLessThan(prev.charEnd); // overlaps
      expect(cur.charStart).toBeGreaterThan(prev.charStart); // but always advances
      // The overlap starts on a sentence boundary.
      expect(cur.text.startsWith("第")).toBe(true);
      expect(documentText(d)[cur.charStart - 1]).toBe("。");
    }
    // Every sentence is in some chunk.
    for (const s of sents) expect(chunks.some((c) => c.text.includes(s))).toBe(true);
  });

  it("cuts a giant single line without sentence breaks, linear time, nothing lost", () => {
    // Varied content (identical pieces would be dropped as exact duplicates, by design).
    const latin = Array.from({ length: 6000 }, (_, i) => `w${i}`).join("");
    let x = 12345; // LCG: no period short enough for two pieces to repeat
    const han = Array.from({ length: 30_000 }, () => {
      x = (x * 1103515245 + 12345) % 2147483648;
      return String.fromCharCode(0x4e00 + (x % 20000));
    }).join("");
    const line = latin + " " + han;
    const d = doc([{ kind: "paragraph", text: line }]);
    const chunks = chunkDocument(d, { targetTokens: 400, overlapTokens: 60 });
    checkOffsets(d, chunks);
    // Chunks cover the line end to end (gaps only where whitespace was cut), each within the budget.
    expect(chunks[0].charStart).toBe(0);
    expect(chunks[chunks.length - 1].charEnd).toBe(line.length);
    for (let i = 1; i < chunks.length; i++) {
      const gap = line.slice(chunks[i - 1].charEnd, Math.max(chunks[i - 1].charEnd, chunks[i].charStart));
      expect(gap.trim()).toBe("");
    }
    for (const c of chunks) expect(c.tokens).toBeLessThanOrEqual(400);
  });

  it("keeps pages and page ranges, and drops exact duplicate chunks", () => {
    const d: ParsedDocument = {
      format: "pdf",
      blocks: [
        { kind: "paragraph", text: "Alpha paragraph on page one.", page: 1 },
        { kind: "paragraph", text: "Beta continues on page two.", page: 2 },
        { kind: "heading", level: 1, text: "Notice", page: 3 },
        { kind: "paragraph", text: "Confidential — do not distribute.", page: 3 },
        { kind: "heading", level: 1, text: "Notice", page: 4 },
        { kind: "paragraph", text: "Confidential — do not distribute.", page: 4 },
      ],
      needsOcrPages: [],
      warnings: [],
    };
    const chunks = chunkDocument(d, { targetTokens: 400, overlapTokens: 60 });
    checkOffsets(d, chunks);
    expect(chunks[0]).toMatchObject({ page: 1, pageEnd: 2 });
    expect(chunks.filter((c) => c.text.includes("Confidential"))).toHaveLength(1);
    expect(chunks[1]).toMatchObject({ page: 3, pageEnd: 3, headingPath: ["Notice"] });
  });

  it("rejects nonsense sizes with a hint", () => {
    expect(() => chunkDocument(doc([]), { targetTokens: 4, overlapTokens: 0 })).toThrow(/too small/);
    expect(() => chunkDocument(doc([]), { targetTokens: 100, overlapTokens: 60 })).toThrow(/overlap/);
  });
});
