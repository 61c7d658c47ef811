// Knowledge-base service on real files and a real SQLite file: keyword quality in simplified Chinese,
// traditional Chinese and English, incremental re-ingest, removal, filters, permissions, bad input.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Document, HeadingLevel, Packer, Paragraph } from "docx";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorLine } from "../core/errors.js";
import { EN, smallChunkConfig, writePolicies, ZH_HANS } from "./fixtures.test-helper.js";
import { KnowledgeBases } from "./kb.js";

let dir: string;
let home: string;
let kbs: KnowledgeBases;

/** The one-line error (message — hint) a rejected promise carries. */
async function failure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return errorLine(err);
  }
  throw new Error("expected a rejection");
}

async function top(query: string, opts = {}) {
  const r = await kbs.search("hr", query, { topK: 3, ...opts });
  return r.results;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dj-kb-"));
  home = join(dir, "home");
  mkdirSync(home);
  smallChunkConfig(home);
  kbs = new KnowledgeBases(home, { embedder: null });
  await kbs.create("hr");
  const folder = writePolicies(dir);
  // A real DOCX made by the docx library, tagged separately below.
  const doc = new Document({
    sections: [
      {
        children: [
          new Paragraph({ text: "Security Policy", heading: HeadingLevel.HEADING_1 }),
          new Paragraph({ text: "Laptops must use full-disk encryption and lock after five minutes of inactivity." }),
        ],
      },
    ],
  });
  writeFileSync(join(dir, "security.docx"), await Packer.toBuffer(doc));
  const s1 = await kbs.ingest("hr", [folder], { tags: ["policy"] });
  expect(s1.added).toBe(3);
  const s2 = await kbs.ingest("hr", [join(dir, "security.docx")], { tags: ["it"] });
  expect(s2.added).toBe(1);
});

afterAll(async () => {
  await kbs.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("keyword search quality", () => {
  it("simplified Chinese: the annual-leave passage ranks first", async () => {
    const r = await top("年假怎么申请？");
    expect(r[0].text).toContain("年假须提前一周通过OA系统申请");
    expect(r[0].source.document).toBe("policies/员工手册.md");
    expect(r[0].source.heading).toContain("年假");
  });

  it("a simplified query finds a traditional document", async () => {
    const r = await top("加班费怎么计算");
    expect(r[0].text).toContain("加班費");
    expect(r[0].source.document).toBe("policies/員工守則.txt");
    const r2 = await top("育婴留职停薪最长多久");
    expect(r2[0].text).toContain("育嬰留職停薪");
  });

  it("a traditional query finds a simplified document", async () => {
    const r = await top("請病假需要什麼證明");
    expect(r[0].text).toContain("病假证明");
  });

  it("full-width characters fold to half-width", async () => {
    const r = await top("ＯＡ系统");
    expect(r[0].text).toContain("OA系统");
  });

  it("English: stemming and stopwords", async () => {
    expect((await top("How many weeks of parental leave do caregivers get?"))[0].text).toContain("sixteen weeks");
    expect((await top("reimbursement of meals while travelling"))[0].text).toContain("$50 per day");
    expect((await top("working remotely"))[0].text).toContain("two days per week");
  });

  it("DOCX content is searchable with its heading", async () => {
    const r = await top("disk encryption for laptops");
    expect(r[0].source.document).toBe("security.docx");
    expect(r[0].text).toContain("full-disk encryption");
  });

  it("top-k selection is a prefix of the full ranking, deterministic", async () => {
    const all = (await kbs.search("hr", "员工 leave 假 加班 employees", { topK: 50 })).results;
    expect(all.length).toBeGreaterThan(4);
    for (let i = 1; i < all.length; i++) expect(all[i - 1].score).toBeGreaterThanOrEqual(all[i].score);
    for (const k of [1, 2, 4]) {
      const r = (await kbs.search("hr", "员工 leave 假 加班 employees", { topK: k })).results;
      expect(r.map((x) => x.chunkId)).toEqual(all.slice(0, k).map((x) => x.chunkId));
    }
  });

  it("a query with no known term returns nothing rather than noise", async () => {
    expect(await top("量子色动力学")).toEqual([]);
    expect(await top("   ")).toEqual([]);
  });
});

describe("filters and permissions", () => {
  it("filters by document name and by tag", async () => {
    const onlyEn = await top("年假 leave", { documents: ["policies/handbook.md"] });
    expect(onlyEn.length).toBeGreaterThan(0);
    expect(onlyEn.every((r) => r.source.document === "policies/handbook.md")).toBe(true);
    const it = await top("encryption leave", { tags: ["it"] });
    expect(it.map((r) => r.source.document)).toEqual(["security.docx"]);
    expect(await top("encryption", { tags: ["policy"] })).toEqual([]);
    expect(await top("年假", { documents: ["nope.md"] })).toEqual([]);
  });

  it("allowDocument is applied inside retrieval: denied documents never take a slot", async () => {
    const all = await top("leave 年假 病假 婚假 加班", { topK: 2 });
    const denied = all[0].documentId;
    const r = await top("leave 年假 病假 婚假 加班", { topK: 2, allowDocument: (id: string) => id !== denied });
    expect(r).toHaveLength(2);
    expect(r.every((x) => x.documentId !== denied)).toBe(true);
  });
});

describe("incremental ingest, removal, consistency", () => {
  it("unchanged files are skipped; a changed file replaces its chunks", async () => {
    const folder = join(dir, "policies");
    const again = await kbs.ingest("hr", [folder]);
    expect(again.unchanged).toBe(3);
    expect(again.added + again.updated).toBe(0);

    writeFileSync(join(folder, "handbook.md"), EN.replace("sixteen weeks", "twenty weeks"));
    const changed = await kbs.ingest("hr", [folder]);
    expect(changed.updated).toBe(1);
    expect(changed.unchanged).toBe(2);
    const r = await top("parental leave weeks primary caregivers");
    expect(r[0].text).toContain("twenty weeks");
    const hits = await kbs.search("hr", "sixteen", { topK: 10 });
    expect(hits.results).toEqual([]); // the old text is gone from the index
    const kb = await kbs.get("hr");
    expect(await kbs.store.checkConsistency(kb.id)).toEqual([]);
  });

  it("tags given on re-ingest are kept on unchanged documents", async () => {
    const docs = await kbs.documents("hr");
    expect(docs.find((d) => d.name === "security.docx")?.tags).toEqual(["it"]);
    expect(docs.find((d) => d.name === "policies/员工手册.md")?.tags).toEqual(["policy"]);
  });

  it("removing a document removes its chunks and index rows", async () => {
    const before = await kbs.get("hr");
    const r = await kbs.removeDocument("hr", "security.docx");
    expect(r.chunks).toBeGreaterThan(0);
    const after = await kbs.get("hr");
    expect(after.chunkCount).toBe(before.chunkCount - r.chunks);
    expect(await top("disk encryption")).toEqual([]);
    expect(await kbs.store.checkConsistency(after.id)).toEqual([]);
    expect(await failure(kbs.removeDocument("hr", "security.docx"))).toMatch(/not found.*dajian docs hr/);
  });

  it("originals are kept by content hash", async () => {
    const d = (await kbs.documents("hr")).find((x) => x.name === "policies/员工手册.md")!;
    const { readFileSync } = await import("node:fs");
    expect(readFileSync(kbs.originalPath(d), "utf8")).toBe(ZH_HANS);
  });
});

describe("bad input", () => {
  it("each bad file gets a one-line reason and the batch continues", async () => {
    const bad = join(dir, "bad");
    mkdirSync(bad);
    writeFileSync(join(bad, "good.md"), "# 报销\n\n交通费凭发票实报实销。");
    writeFileSync(join(bad, "empty.txt"), "");
    writeFileSync(join(bad, "big.txt"), "大".repeat(40_000)); // 120 KB > 64 KiB limit
    writeFileSync(join(bad, "fake.docx"), Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04]), Buffer.alloc(64, 7)]));
    writeFileSync(join(bad, "blob.bin"), Buffer.from([0, 1, 2, 3, 255, 254, 0, 0, 7, 8, 9]));
    writeFileSync(join(bad, "ctl\u0001name.txt"), "控制字符");
    symlinkSync(bad, join(bad, "loop")); // a folder linking to itself
    const s = await kbs.ingest("hr", [bad, join(dir, "missing.pdf")]);
    const by = new Map(s.files.map((f) => [f.file, f]));
    expect(by.get("bad/good.md")?.status).toBe("added");
    const failed = s.files.filter((f) => f.status === "failed");
    for (const f of failed) {
      expect(f.reason).toBeTruthy();
      expect(f.reason).not.toContain("\n");
    }
    expect(by.get("bad/empty.txt")?.reason).toMatch(/empty/);
    expect(by.get("bad/big.txt")?.reason).toMatch(/limit/);
    expect(by.get("bad/fake.docx")?.status).toBe("failed");
    expect(by.get("bad/blob.bin")?.status).toBe("failed");
    expect(by.get("bad/loop")?.reason).toMatch(/loop/);
    expect(failed.some((f) => /control characters/.test(f.reason!))).toBe(true);
    expect(by.get(join(dir, "missing.pdf"))?.reason).toMatch(/no such file/);
    expect(s.added).toBe(1);
    expect(s.failed).toBe(failed.length);
    const kb = await kbs.get("hr");
    expect(await kbs.store.checkConsistency(kb.id)).toEqual([]);
    // Nothing half-indexed: failed files have no document rows.
    const names = (await kbs.documents("hr")).map((d) => d.name);
    expect(names.filter((n) => n.startsWith("bad/"))).toEqual(["bad/good.md"]);
  });

  it("rejects bad names, unknown KBs and bad options with a hint", async () => {
    expect(await failure(kbs.create("bad name"))).toMatch(/invalid knowledge-base name .* — use 1–64 letters/);
    expect(await failure(kbs.create("hr"))).toMatch(/already exists — ingest into it/);
    expect(await failure(kbs.search("nope", "x"))).toMatch(/not found — create it with `dajian kb create nope`/);
    expect(await failure(kbs.search("hr", "x", { topK: 0 }))).toMatch(/topK .* — pass e.g./);
    expect(await failure(kbs.search("hr", "x", { mode: "vector" }))).toMatch(
      /needs an embedding model.* — set `embedding`/,
    );
    const up = await kbs.ingestItems("hr", [{ name: "../etc/passwd", data: Buffer.from("x") }]);
    expect(up.files[0].status).toBe("failed");
    expect(up.files[0].reason).toMatch(/\.\.\//);
  });

  it("searchBatch answers in input order; delete removes the KB", async () => {
    const out = await kbs.searchBatch("hr", [
      { id: "a", question: "婚假几天" },
      { id: "b", question: "密碼多久更換" },
    ]);
    expect(out.map((o) => o.id)).toEqual(["a", "b"]);
    expect(out[0].results[0].text).toContain("婚假三天");
    expect(out[1].results[0].text).toContain("九十天");
    await kbs.create("tmp");
    await kbs.delete("tmp");
    expect((await kbs.list()).map((k) => k.name)).toEqual(["hr"]);
  });
});
