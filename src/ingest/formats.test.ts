// Real files made by real libraries (pdfkit, docx, exceljs, pptxgenjs, iconv-lite) → parseDocument → chunks.
import iconv from "iconv-lite";
import { describe, expect, it } from "vitest";
import { cjkFont, makeCsv, makeDocx, makeHtml, makePdf, makePptx, makeXlsx } from "./fixtures.js";
import { chunkDocument, detectFormat, documentText, parseDocument } from "./index.js";

const opts = { targetTokens: 400, overlapTokens: 60 };

describe("PDF", () => {
  it("keeps page numbers, drops running headers/footers and page numbers, joins hyphenation", async () => {
    const pages = Array.from({ length: 5 }, (_, i) => ({
      heading: i === 0 ? "Employee Handbook" : undefined,
      paragraphs: [
        `Section ${i + 1} explains policy number ${i + 1} in some detail so that the reader understands the rules of leave and travel.`,
        i === 2 ? "Questions go to the infor-\nmation desk on the ground floor." : `Closing remark for page ${i + 1}.`,
      ],
    }));
    const bytes = await makePdf(pages, {
      header: () => "ACME Corp — Internal Use Only",
      footer: (n, total) => `Page ${n} of ${total}`,
    });
    const doc = await parseDocument(bytes, "handbook.pdf");
    expect(doc.format).toBe("pdf");
    expect(doc.pages).toBe(5);
    expect(doc.needsOcrPages).toEqual([]);
    const full = documentText(doc);
    expect(full).not.toMatch(/ACME Corp/);
    expect(full).not.toMatch(/Page \d of 5/);
    expect(full).toContain("information desk on the ground floor");
    expect(doc.blocks[0]).toMatchObject({ kind: "heading", text: "Employee Handbook", page: 1 });
    const p3 = doc.blocks.find((b) => b.text.startsWith("Section 3 explains"))!;
    expect(p3.page).toBe(3);
    // Wrapped lines are re-joined into one paragraph with single spaces.
    expect(p3.text).toBe(pages[2].paragraphs[0]);
    const chunks = chunkDocument(doc, opts);
    expect(chunks[0].headingPath).toEqual(["Employee Handbook"]);
    expect(chunks[0].page).toBe(1);
    expect(chunks[chunks.length - 1].pageEnd).toBe(5);
    for (const c of chunks) expect(c.text).toBe(full.slice(c.charStart, c.charEnd));
  });

  it.skipIf(!cjkFont())(
    "re-joins wrapped Chinese lines without spaces; 第 N 页 footers go; blank pages need OCR",
    async () => {
      const para =
        "员工每年享有带薪年假十五天，年假应当提前两周向直属主管提出书面申请，经批准后方可休假。未休完的年假可以顺延至下一年度第一季度。";
      const pages = [
        { heading: "第三章 假期管理", paragraphs: [para] },
        { paragraphs: ["病假需提供二级以上医院出具的诊断证明。"] },
        { paragraphs: [] },
        { paragraphs: ["加班费按照国家规定支付；法定节假日加班支付三倍工资。"] },
      ];
      const bytes = await makePdf(pages, {
        width: 200,
        blankPages: [3],
        header: () => "示例公司员工手册",
        footer: (n, t) => `第 ${n} 页 共 ${t} 页`,
      });
      const doc = await parseDocument(bytes, "手册.pdf");
      expect(doc.needsOcrPages).toEqual([3]);
      expect(doc.warnings).toContain("page 3 has no text layer — needs OCR");
      expect(doc.blocks.find((b) => b.kind === "paragraph" && b.page === 1)!.text).toBe(para);
      expect(doc.blocks[0]).toMatchObject({ kind: "heading", text: "第三章 假期管理" });
      const full = documentText(doc);
      expect(full).not.toContain("示例公司员工手册");
      expect(full).not.toMatch(/第 \d 页/);
      expect(doc.blocks.find((b) => b.text.startsWith("加班费"))!.page).toBe(4);
    },
  );
});

describe("PDF page breaks", () => {
  it("re-joins a paragraph that a page break cut in two, cited at its first page", async () => {
    const long = Array.from({ length: 700 }, (_, i) => `word${i}`).join(" ") + ".";
    const bytes = await makePdf([{ paragraphs: ["Opening paragraph.", long] }, { paragraphs: ["Last page text."] }]);
    const doc = await parseDocument(bytes, "long.pdf");
    expect(doc.pages).toBeGreaterThanOrEqual(3); // the long paragraph overflowed onto a second page
    const para = doc.blocks.find((b) => b.text.startsWith("word0 "))!;
    expect(para.text).toBe(long);
    expect(para.page).toBe(1);
    expect(doc.blocks.find((b) => b.text === "Last page text.")!.page).toBe(doc.pages);
  });
});

describe("DOCX", () => {
  it("keeps headings, list items and tables", async () => {
    const bytes = await makeDocx({
      body: [
        { heading: "Travel Policy", level: 1 },
        { paragraph: "This policy covers business travel." },
        { heading: "Allowances", level: 2 },
        { bullet: "Hotel up to 800 CNY per night" },
        { bullet: "Meals up to 200 CNY per day" },
        {
          table: [
            ["城市", "住宿标准"],
            ["北京", "800"],
            ["上海", "750"],
          ],
        },
      ],
    });
    const doc = await parseDocument(bytes, "travel.docx");
    expect(doc.format).toBe("docx");
    const kinds = doc.blocks.map((b) => [b.kind, b.text.split("\n")[0]]);
    expect(kinds).toEqual([
      ["heading", "Travel Policy"],
      ["paragraph", "This policy covers business travel."],
      ["heading", "Allowances"],
      ["list_item", "Hotel up to 800 CNY per night"],
      ["list_item", "Meals up to 200 CNY per day"],
      ["table", "城市 | 住宿标准"],
    ]);
    expect(doc.blocks[2].level).toBe(2);
    expect(doc.blocks[5].table).toMatchObject({
      header: ["城市", "住宿标准"],
      rows: [
        ["北京", "800"],
        ["上海", "750"],
      ],
    });
    const chunks = chunkDocument(doc, opts);
    const table = chunks.find((c) => c.kind === "table")!;
    expect(table.headingPath).toEqual(["Travel Policy", "Allowances"]);
    expect(table.text).toContain("上海 | 750");
  });
});

describe("XLSX", () => {
  it("reads every sheet as a table with its header; rows carry the header when split", async () => {
    const staff = [
      ["姓名", "部门", "入职日期"],
      ...Array.from({ length: 60 }, (_, i) => [
        `员工${i}`,
        i % 2 ? "研发部" : "市场部",
        `2020-01-${String((i % 28) + 1).padStart(2, "0")}`,
      ]),
    ];
    const bytes = await makeXlsx([
      { name: "员工", rows: staff },
      {
        name: "Budget",
        rows: [
          ["Item", "Amount"],
          ["Servers", 12000],
          ["Licences", 3400.5],
        ],
      },
    ]);
    const doc = await parseDocument(bytes, "hr.xlsx");
    expect(doc.format).toBe("xlsx");
    expect(doc.pages).toBe(2);
    const tables = doc.blocks.filter((b) => b.kind === "table");
    expect(tables).toHaveLength(2);
    expect(tables[0].table!.header).toEqual(["姓名", "部门", "入职日期"]);
    expect(tables[0].table!.rows).toHaveLength(60);
    expect(tables[0].page).toBe(1);
    expect(tables[1]).toMatchObject({
      page: 2,
      table: {
        header: ["Item", "Amount"],
        rows: [
          ["Servers", "12000"],
          ["Licences", "3400.5"],
        ],
      },
    });
    const chunks = chunkDocument(doc, { targetTokens: 120, overlapTokens: 20 });
    const sheet1 = chunks.filter((c) => c.page === 1);
    expect(sheet1.length).toBeGreaterThan(2);
    for (const c of sheet1) {
      expect(c.text).toContain("姓名 | 部门 | 入职日期");
      expect(c.headingPath).toEqual(["员工"]);
    }
    expect(chunks.find((c) => c.page === 2)!.headingPath).toEqual(["Budget"]);
  });
});

describe("PPTX", () => {
  it("maps slides to pages, titles to headings, bullets to list items, tables to tables", async () => {
    const bytes = await makePptx([
      { title: "Quarterly Review", bullets: ["Revenue grew 12%", "Churn fell to 3%"] },
      {
        title: "Regional Results",
        table: [
          ["Region", "Sales"],
          ["North", "1.2M"],
          ["South", "0.9M"],
        ],
      },
      {
        title: "下一步计划",
        bullets: ["扩大华东市场", "招聘十名工程师"],
        notes: "Speaker notes: mention hiring freeze ended.",
      },
    ]);
    const doc = await parseDocument(bytes, "review.pptx");
    expect(doc.format).toBe("pptx");
    expect(doc.pages).toBe(3);
    const simple = doc.blocks.map((b) => [b.kind, b.page, b.text.split("\n")[0]]);
    expect(simple).toEqual([
      ["heading", 1, "Quarterly Review"],
      ["list_item", 1, "Revenue grew 12%"],
      ["list_item", 1, "Churn fell to 3%"],
      ["heading", 2, "Regional Results"],
      ["table", 2, "Region | Sales"],
      ["heading", 3, "下一步计划"],
      ["list_item", 3, "扩大华东市场"],
      ["list_item", 3, "招聘十名工程师"],
      ["paragraph", 3, "Speaker notes: mention hiring freeze ended."],
    ]);
    const chunks = chunkDocument(doc, opts);
    expect(chunks.map((c) => [c.page, c.headingPath[0]])).toEqual([
      [1, "Quarterly Review"],
      [2, "Regional Results"],
      [3, "下一步计划"],
    ]);
  });
});

describe("HTML", () => {
  it("keeps the article and drops nav, aside, footer and scripts", async () => {
    const html = makeHtml({ title: "年假制度", paragraphs: ["员工每年享有带薪年假十五天。", "年假须提前两周申请。"] });
    const doc = await parseDocument(Buffer.from(html), "leave.html");
    expect(doc.format).toBe("html");
    expect(doc.title).toBe("年假制度");
    expect(doc.blocks.map((b) => b.text)).toEqual(["年假制度", "员工每年享有带薪年假十五天。", "年假须提前两周申请。"]);
    expect(doc.blocks[0]).toMatchObject({ kind: "heading", level: 1 });
  });

  it("without <main>, keeps headings, lists and tables of the content", async () => {
    const html = `<html><head><title>FAQ</title><style>.x{}</style></head><body>
      <div class="navbar"><a href="/">Home</a><a href="/faq">FAQ</a></div>
      <div id="content"><h2>How to apply</h2><p>Fill in the form
      and send it to HR.</p><ul><li>Step one</li><li>Step two<ul><li>Nested step</li></ul></li></ul>
      <table><tr><th>Type</th><th>Days</th></tr><tr><td>Annual</td><td>15</td></tr></table></div>
      <footer>Copyright</footer><script>var x = 1;</script></body></html>`;
    const doc = await parseDocument(Buffer.from(html), "faq.html");
    expect(doc.blocks.map((b) => [b.kind, b.text])).toEqual([
      ["heading", "How to apply"],
      ["paragraph", "Fill in the form and send it to HR."],
      ["list_item", "Step one"],
      ["list_item", "Step two"],
      ["list_item", "Nested step"],
      ["table", "Type | Days\nAnnual | 15"],
    ]);
  });
});

describe("Markdown and text", () => {
  it("parses headings, lists, tables and code fences", async () => {
    const md =
      "# Guide\n\nIntro **bold** and [a link](http://x).\n\n## Setup\n\n1. Install\n2. Run\n\n```sh\nnpm i\nnpm test\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";
    const doc = await parseDocument(Buffer.from(md), "guide.md");
    expect(doc.blocks.map((b) => [b.kind, b.text])).toEqual([
      ["heading", "Guide"],
      ["paragraph", "Intro bold and a link."],
      ["heading", "Setup"],
      ["list_item", "1. Install"],
      ["list_item", "2. Run"],
      ["code", "npm i\nnpm test"],
      ["table", "a | b\n1 | 2"],
    ]);
    expect(doc.title).toBe("Guide");
  });

  const zh = "员工每年享有带薪年假十五天。年假须提前两周申请，经主管批准后方可休假。";
  const tw = "員工每年享有帶薪年假十五天。年假須提前兩週申請，經主管批准後方可休假。";
  it.each([
    ["gbk", zh, "gb18030"],
    ["gb18030", zh, "gb18030"],
    ["big5", tw, "big5"],
  ])("detects %s text", async (enc, text, expected) => {
    const doc = await parseDocument(iconv.encode(text, enc), "policy.txt");
    expect(doc.encoding).toBe(expected);
    expect(doc.blocks[0].text).toBe(text);
  });

  it.each([
    ["中文", "big5"],
    ["你好", "gbk"],
    ["資料", "big5"],
    ["年假", "gbk"],
    ["請假規定", "big5"],
    ["请假规定", "gbk"],
  ])("decodes the short string %s in %s where detectors fail", async (text, enc) => {
    const doc = await parseDocument(iconv.encode(text, enc), "short.txt");
    expect(doc.blocks[0].text).toBe(text);
  });

  it.each([
    [
      "utf-16le with BOM",
      Buffer.concat([Buffer.from([0xff, 0xfe]), iconv.encode("Hello 世界，年假十五天。", "utf-16le")]),
    ],
    [
      "utf-16be with BOM",
      Buffer.concat([Buffer.from([0xfe, 0xff]), iconv.encode("Hello 世界，年假十五天。", "utf-16be")]),
    ],
    ["utf-16le without BOM", iconv.encode("Hello 世界，年假十五天。", "utf-16le")],
    ["utf-16be without BOM", iconv.encode("Hello 世界，年假十五天。", "utf-16be")],
    ["utf-16le without BOM, no ASCII", iconv.encode("员工每年享有带薪年假十五天。", "utf-16le")],
    ["utf-8 with BOM", Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from("Hello 世界，年假十五天。")])],
  ])("decodes %s", async (_name, bytes) => {
    const doc = await parseDocument(bytes, "notes.txt");
    expect(doc.blocks[0].text).toMatch(/^(Hello 世界，)?(员工每年享有带薪)?年假十五天。$/);
  });

  it("reads CSV with quoted commas, quotes and newlines, in GBK", async () => {
    const rows = [
      ["问题", "答案"],
      ["年假几天？", "十五天, 需提前申请"],
      ["报销流程", '填写"报销单"\n交财务部'],
    ];
    const bytes = iconv.encode(makeCsv(rows), "gbk");
    expect(detectFormat(bytes, "faq.csv")).toBe("csv");
    const doc = await parseDocument(bytes, "faq.csv");
    expect(doc.encoding).toBe("gb18030");
    expect(doc.blocks[0].table).toEqual({
      header: ["问题", "答案"],
      rows: [
        ["年假几天？", "十五天, 需提前申请"],
        ["报销流程", '填写"报销单" 交财务部'],
      ],
    });
  });
});
