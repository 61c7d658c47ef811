// Data preparation: cleaning filters, PII, exact + near dedup quality on a synthetic corpus with known duplicates,
// deterministic split, stats, knowledge-base input, atomic outputs and bad-input handling.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KnowledgeBases } from "../index/kb.js";
import { writeDocumentAs } from "../ingest/fixtures.js";
import { cleanText, normalizeText, profileText } from "./clean.js";
import { Deduper, foldForDedup, minhashSignature } from "./minhash.js";
import { isResidentId, scrubPii } from "./pii.js";
import { cleanCorpus, dedupCorpus, splitCorpus } from "./pipeline.js";
import { readFileRecords, readKbRecords } from "./records.js";
import { corpusStats, statsHtml } from "./stats.js";
import { loadGgufTokenizer } from "./sft.js";
import { GgufWriter } from "../gguf/index.js";
import { trainBpe, writeVocabMetadata } from "../tokenizer/index.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "dajian-data-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A valid 18-digit resident ID for a birth date, with the GB 11643 checksum computed independently. */
function makeId(body17: string): string {
  const w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = [...body17].reduce((a, d, i) => a + Number(d) * w[i], 0);
  return body17 + "10X98765432"[sum % 11];
}

describe("cleaning", () => {
  it("normalises Unicode (NFC by default, NFKC on request) and whitespace", () => {
    const s = "Ｃａｆe\u0301\u200b  \r\nline\t \n\n\n\nend\u0007";
    expect(normalizeText(s)).toBe("Ｃａｆé\nline\n\nend");
    expect(normalizeText(s, "nfkc")).toBe("Café\nline\n\nend");
    expect(normalizeText(s, "none")).toBe("Ｃａｆe\u0301\nline\n\nend");
  });

  it("detects zh, en, mixed and other", () => {
    expect(profileText("员工每年享有十五天带薪年假，入职满一年后开始计算。").lang).toBe("zh");
    expect(profileText("Employees get fifteen days of paid leave in the first year of service.").lang).toBe("en");
    expect(
      profileText("Die Mitarbeiter erhalten fünfzehn Tage bezahlten Urlaub im ersten Jahr nach Eintritt.").lang,
    ).toBe("other");
    expect(profileText("Привет, как дела у тебя сегодня вечером?").lang).toBe("other");
    expect(profileText("请参考手册 the employee handbook about annual leave 规定").lang).toBe("mixed");
  });

  it("drops by length, language, symbols, digits and repeated lines, and says why", () => {
    const zh = "员工每年享有十五天带薪年假，入职满一年后开始计算。";
    expect(cleanText("ab", { minChars: 5 })).toMatchObject({ keep: false, reason: "too_short" });
    expect(cleanText(zh, { maxChars: 10 })).toMatchObject({ keep: false, reason: "too_long" });
    expect(cleanText(zh, { langs: ["en"] })).toMatchObject({ keep: false, reason: "language" });
    expect(cleanText(zh, { langs: ["zh"] }).keep).toBe(true);
    expect(cleanText("$$$ ### %%% &&& ok", {})).toMatchObject({ keep: false, reason: "symbols" });
    expect(cleanText("tel 12345 67890 11111 22222", {})).toMatchObject({ keep: false, reason: "digits" });
    const spam = ["buy now", "buy now", "buy now", "real content here"].join("\n");
    expect(cleanText(spam, {})).toMatchObject({ keep: false, reason: "repeated_lines" });
    expect(cleanText(spam, { maxRepeatedLines: 0.6 }).keep).toBe(true);
  });

  it("validates resident ID checksums and birth dates", () => {
    const id = makeId("11010519491231002");
    expect(isResidentId(id)).toBe(true);
    const wrong = id.slice(0, 17) + (id[17] === "1" ? "2" : "1");
    expect(isResidentId(wrong)).toBe(false);
    expect(isResidentId(makeId("11010519491331002"))).toBe(false); // month 13
    expect(isResidentId(makeId("11010520230229002"))).toBe(false); // 2023-02-29
  });

  it("scrubs mobiles, IDs, e-mails (and landlines on request) but not order numbers", () => {
    const id = makeId("44030419900101123");
    const badId = id.slice(0, 17) + (id[17] === "3" ? "4" : "3");
    const text =
      `联系张三：手机 138 1234 5678 或 +86 13912345678，身份证 ${id}，邮箱 zhang.san+hr@corp.example.cn；` +
      `订单号 ${badId}，流水 202401011234567，座机 010-62345678。`;
    const r = scrubPii(text);
    expect(r.counts).toEqual({ phone: 2, id: 1, email: 1, landline: 0 });
    expect(r.text).toContain("<PHONE> 或 <PHONE>");
    expect(r.text).toContain("身份证 <ID_NUMBER>");
    expect(r.text).toContain("邮箱 <EMAIL>");
    expect(r.text).toContain(badId);
    expect(r.text).toContain("202401011234567");
    expect(r.text).toContain("010-62345678");
    const l = scrubPii(text, { landline: true });
    expect(l.counts.landline).toBe(1);
    expect(l.text).toContain("座机 <TEL>");
  });
});

/** Random "words" so documents share little by chance; near copies change a few words. */
function corpus(n: number, seed: number): { docs: string[]; dupOf: number[] } {
  let st = seed >>> 0; // mulberry32
  const rng = {
    next(): number {
      st = (st + 0x6d2b79f5) >>> 0;
      let t = Math.imul(st ^ (st >>> 15), 1 | st);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    },
  };
  const word = () =>
    Array.from({ length: 3 + Math.floor(rng.next() * 6) }, () =>
      String.fromCharCode(97 + Math.floor(rng.next() * 26)),
    ).join("");
  const han = () => String.fromCharCode(0x4e00 + Math.floor(rng.next() * 2000));
  const docs: string[] = [];
  const dupOf: number[] = [];
  for (let i = 0; i < n; i++) {
    const words = Array.from({ length: 120 }, () => (rng.next() < 0.3 ? han() + han() : word()));
    docs.push(words.join(" "));
    dupOf.push(-1);
  }
  // Near duplicates: 2 of 120 words replaced (character-5-gram Jaccard ≈ 0.9) and exact copies with new spacing.
  for (let i = 0; i < n / 2; i++) {
    const words = docs[i].split(" ");
    for (let k = 0; k < 2; k++) words[Math.floor(rng.next() * words.length)] = word();
    docs.push(words.join(" "));
    dupOf.push(i);
  }
  for (let i = n / 2; i < n / 2 + 20; i++) {
    docs.push("  " + docs[i].toUpperCase().replace(/ /g, "\n") + " ");
    dupOf.push(i);
  }
  return { docs, dupOf };
}

function trueJaccard(a: string, b: string, n = 5): number {
  const sh = (s: string) => {
    const cps = [...foldForDedup(s)];
    const set = new Set<string>();
    for (let i = 0; i + n <= cps.length; i++) set.add(cps.slice(i, i + n).join(""));
    return set;
  };
  const A = sh(a);
  const B = sh(b);
  let inter = 0;
  for (const x of A) if (B.has(x)) inter++;
  return inter / (A.size + B.size - inter);
}

describe("dedup", () => {
  it("MinHash estimates Jaccard similarity within a few points", () => {
    const { docs } = corpus(40, 7);
    const k = 256;
    let maxErr = 0;
    for (let i = 0; i < 10; i++) {
      for (const j of [40 + i, i + 1]) {
        const a = minhashSignature(foldForDedup(docs[i]), k, 5, 3);
        const b = minhashSignature(foldForDedup(docs[j]), k, 5, 3);
        let eq = 0;
        for (let x = 0; x < k; x++) if (a[x] === b[x]) eq++;
        maxErr = Math.max(maxErr, Math.abs(eq / k - trueJaccard(docs[i], docs[j])));
      }
    }
    expect(maxErr).toBeLessThan(0.1);
  });

  it("finds planted exact and near duplicates with no false positives", () => {
    const { docs, dupOf } = corpus(400, 11);
    const d = new Deduper({ seed: 5 });
    let tp = 0;
    let fp = 0;
    for (let i = 0; i < docs.length; i++) {
      const v = d.check(docs[i]);
      if (v.duplicate) {
        if (dupOf[i] >= 0) tp++;
        else fp++;
        if (dupOf[i] >= 0 && v.kind === "near") expect(v.of).toBe(dupOf[i]);
      }
    }
    const planted = dupOf.filter((x) => x >= 0).length;
    expect(fp).toBe(0);
    expect(tp / planted).toBeGreaterThanOrEqual(0.97);
    expect(d.counts.exact).toBe(20);
    expect(d.counts.kept).toBe(docs.length - d.counts.exact - d.counts.near);
    // Dissimilar documents pass even at a low threshold; a document differing in half its words is kept at 0.8.
    const half = docs[0]
      .split(" ")
      .map((w, i) => (i % 2 ? w + "x" : w))
      .join(" ");
    const strict = new Deduper();
    strict.check(docs[0]);
    expect(strict.check(half).duplicate).toBe(false);
  });

  it("dedupCorpus streams a JSONL file, keeps first occurrences and logs what it removed", async () => {
    const { docs } = corpus(100, 3);
    const inp = join(dir, "dd.jsonl");
    writeFileSync(
      inp,
      docs.map((t, i) => JSON.stringify({ id: `d${i}`, text: t, extra: i })).join("\n") + "\nnot json\n",
    );
    const out = join(dir, "dd-out.jsonl");
    const removed = join(dir, "dd-removed.jsonl");
    const r = await dedupCorpus({ files: [inp] }, out, { removedOut: removed });
    expect(r.seen).toBe(docs.length);
    expect(r.badLines).toBe(1);
    const kept = readFileSync(out, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { id: string; extra: number });
    expect(kept.length).toBe(r.kept);
    expect(kept[0]).toMatchObject({ id: "d0", extra: 0 });
    expect(kept.every((k) => k.extra < 100)).toBe(true); // every original kept, copies removed
    const rem = readFileSync(removed, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { kind: string });
    expect(rem.length).toBe(r.exact + r.near);
    expect(readdirSync(dir).some((f) => f.includes(".tmp-"))).toBe(false);
  });
});

describe("clean, split and stats over files", () => {
  it("cleans a paragraph text file into JSONL with counts per reason", async () => {
    const inp = join(dir, "corpus.txt");
    writeFileSync(
      inp,
      "\uFEFFFirst document line one.\nline two of the first document.\n\n\n" +
        "短\n\n" +
        "第二篇文档：请致电 13812345678 咨询年假政策，或写信到 hr@example.com。\n\n" +
        "1234 5678 9012 3456 7890\n",
    );
    const out = join(dir, "clean.jsonl");
    const r = await cleanCorpus({ files: [inp] }, out, { minChars: 5, pii: true });
    expect(r).toMatchObject({ read: 4, kept: 2, dropped: { too_short: 1, digits: 1 }, pii: { phone: 1, email: 1 } });
    const lines = readFileSync(out, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { text: string });
    expect(lines[0].text).toBe("First document line one.\nline two of the first document.");
    expect(lines[1].text).toContain("<PHONE>");
  });

  it("refuses a document over --max-doc-chars and leaves no output behind", async () => {
    const inp = join(dir, "huge.txt");
    writeFileSync(inp, "x".repeat(5000));
    const out = join(dir, "huge-out.txt");
    await expect(cleanCorpus({ files: [inp], read: { maxDocChars: 1000 } }, out)).rejects.toThrow(
      /exceeds 1000 characters/,
    );
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).some((f) => f.startsWith("huge-out.txt.tmp"))).toBe(false);
    await expect(cleanCorpus({ files: [join(dir, "missing.txt")] }, out)).rejects.toThrow(/not found/);
  });

  it("splits deterministically by hash, identical texts on the same side", async () => {
    const inp = join(dir, "split.txt");
    const docs = Array.from({ length: 2000 }, (_, i) => `document number ${i % 1500}`);
    writeFileSync(inp, docs.join("\n"));
    const run = async (seed: number, tag: string) => {
      const tr = join(dir, `tr-${tag}.txt`);
      const va = join(dir, `va-${tag}.txt`);
      const r = await splitCorpus({ files: [inp], read: { format: "lines" } }, tr, va, { ratio: 0.1, seed });
      return { r, train: readFileSync(tr, "utf8"), val: readFileSync(va, "utf8") };
    };
    const a = await run(1, "a");
    const b = await run(1, "b");
    const c = await run(2, "c");
    expect(a.r.train + a.r.validation).toBe(2000);
    expect(a.r.validation / 2000).toBeGreaterThan(0.07);
    expect(a.r.validation / 2000).toBeLessThan(0.13);
    expect(b.val).toBe(a.val);
    expect(c.val).not.toBe(a.val);
    const trainSet = new Set(a.train.trim().split("\n"));
    for (const v of a.val.trim().split("\n")) expect(trainSet.has(v)).toBe(false);
  });

  it("reports documents, characters, languages, histogram and duplicates; renders HTML", async () => {
    const inp = join(dir, "stats.jsonl");
    const rows = [
      "员工每年享有十五天带薪年假，入职满一年后开始计算。",
      "Employees get fifteen days of paid leave in the first year of service.",
      "Employees get fifteen days of paid leave in the first year of service.",
      "x".repeat(300),
    ];
    writeFileSync(inp, rows.map((t) => JSON.stringify({ text: t })).join("\n"));
    const s = await corpusStats({ files: [inp] });
    expect(s.documents).toBe(4);
    expect(s.characters).toBe(rows.reduce((a, t) => a + [...t].length, 0));
    expect(s.languages).toMatchObject({ zh: 1, en: 2 });
    expect(s.exactDuplicates).toBe(1);
    expect(s.duplicateRate).toBeCloseTo(0.25);
    expect(s.histogram.reduce((a, b) => a + b.count, 0)).toBe(4);
    expect(s.maxChars).toBe(300);
    // Token counts come from the GGUF model's own tokenizer.
    const w = new GgufWriter();
    w.str("general.architecture", "llama");
    writeVocabMetadata(w, trainBpe(rows, { vocabSize: 300, minFrequency: 1 }));
    w.write(join(dir, "tok.gguf"));
    const tok = loadGgufTokenizer(join(dir, "tok.gguf")).tokenizer;
    const st = await corpusStats({ files: [inp] }, { tokenizer: tok, tokenizerName: "tok.gguf" });
    expect(st.tokens).toBe(rows.reduce((a, t) => a + tok.encode(t).length, 0));
    expect(st.tokens).toBeGreaterThan(0);
    expect(st.tokens).toBeLessThan(st.characters);
    const html = statsHtml(st, "stats.jsonl");
    expect(html).toContain("tokens (tok.gguf)");
    expect(html).toContain("<svg");
    expect(html).toContain("25.0 %");
  });
});

describe("knowledge base input", () => {
  it("reads each ingested document's full text back from its chunks", async () => {
    const home = join(dir, "home");
    const docs = join(dir, "docs");
    const paras = Array.from(
      { length: 30 },
      (_, i) => `第${i + 1}条：员工手册的规定内容，编号 ${i + 1}，适用于全体员工。`,
    );
    await writeDocumentAs("docx", { title: "员工手册", paragraphs: paras }, join(docs, "handbook.docx"));
    await writeDocumentAs(
      "markdown",
      { title: "Notes", paragraphs: ["Alpha paragraph.", "Beta paragraph."] },
      join(docs, "notes.md"),
    );
    const kbs = new KnowledgeBases(home, { embedder: null });
    try {
      await kbs.create("hb");
      const s = await kbs.ingest("hb", [docs]);
      expect(s.failed).toBe(0);
      const recs = [];
      for await (const r of readKbRecords(kbs, "hb")) recs.push(r);
      expect(recs.length).toBe(2);
      const hb = recs.find((r) => r.id.includes("handbook"))!;
      for (const p of paras) expect(hb.text.split(p).length - 1).toBe(1); // every paragraph exactly once
      const out = join(dir, "kb-clean.txt");
      const r = await cleanCorpus({ kb: { kbs, name: "hb" } }, out, {});
      expect(r.kept).toBe(2);
      const back = [];
      for await (const x of readFileRecords(out)) back.push(x);
      expect(back.length).toBe(2);
    } finally {
      await kbs.close();
    }
  });
});

describe("bounded memory", () => {
  it("cleans and dedups a corpus larger than the process's whole JavaScript heap", async () => {
    // 14 MB of text through a child process whose heap is capped at 12 MB: holding the corpus would crash it.
    const inp = join(dir, "large.txt");
    const w = createWriteStream(inp);
    let st = 99;
    const rnd = () => ((st = (Math.imul(st, 1103515245) + 12345) >>> 0), st / 4294967296);
    let bytes = 0;
    let copies = 0;
    let prev = "";
    for (let d = 0; bytes < 14_000_000; d++) {
      const words = Array.from({ length: 700 }, () =>
        (rnd() * 1e8)
          .toString(36)
          .slice(0, 5)
          .replace(/\d/g, (c) => "klmnopqrst"[Number(c)]),
      );
      const doc = d % 50 === 49 ? prev : words.join(" ") + "\n\n"; // every 50th document repeats the one before
      if (d % 50 === 49) copies++;
      prev = doc;
      bytes += doc.length;
      if (!w.write(doc)) await new Promise<void>((r) => w.once("drain", () => r()));
    }
    await new Promise<void>((r) => w.end(() => r()));
    const here = fileURLToPath(new URL(".", import.meta.url));
    const script = join(dir, "mem.mts");
    writeFileSync(
      script,
      `import { cleanCorpus, dedupCorpus } from ${JSON.stringify(join(here, "pipeline.ts"))};
const [inp, out] = process.argv.slice(2);
const c = await cleanCorpus({ files: [inp] }, out + ".clean.txt", { pii: true });
const d = await dedupCorpus({ files: [out + ".clean.txt"] }, out + ".dedup.txt", {});
(globalThis as { gc?: () => void }).gc?.(); // what is still held after a collection, not garbage awaiting one
console.log(JSON.stringify({ read: c.read, kept: c.kept, dedupKept: d.kept, heap: process.memoryUsage().heapUsed }));`,
    );
    const r = spawnSync(
      process.execPath,
      ["--max-old-space-size=12", "--expose-gc", "--import", "tsx", script, inp, join(dir, "large")],
      {
        encoding: "utf8",
        timeout: 120_000,
      },
    );
    expect(r.status, r.stderr.slice(-500)).toBe(0);
    const res = JSON.parse(r.stdout.trim().split("\n").pop()!) as {
      read: number;
      kept: number;
      dedupKept: number;
      heap: number;
    };
    expect(res.read).toBeGreaterThan(3000);
    expect(res.kept).toBe(res.read);
    expect(res.dedupKept).toBe(res.read - copies);
    expect(res.heap).toBeLessThan(12_000_000);
    expect(readFileSync(join(dir, "large.dedup.txt")).length).toBeGreaterThan(12_500_000);
  }, 150_000);
});
