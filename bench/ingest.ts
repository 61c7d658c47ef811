// npm run bench:ingest — parse + chunk throughput of the ingest stage on real generated files.
// Target (issue 2): text-PDF ingestion ≥ 50 pages/s without embeddings. Baseline: LangChain.js's usual PDF path
// (pdf.js text per page → RecursiveCharacterTextSplitter 750/150), on the same bytes in the same run.
import { getDocumentProxy } from "unpdf";
import { RecursiveCharacterTextSplitter } from "@langchain/textsplitters";
import { documentBytes, makePdf } from "../src/ingest/fixtures.js";
import { chunkDocument, parseDocument } from "../src/ingest/index.js";

const PAGES = Number(process.env.BENCH_PDF_PAGES ?? 200);

function para(i: number, zh: boolean): string {
  return zh
    ? `第${i}条 员工应当遵守公司的各项规章制度，认真履行岗位职责。年假须提前两周申请，经主管批准后方可休假；未休完的年假可以顺延至下一年度。`
    : `Clause ${i}. Employees shall follow company policy and perform their duties with care. Annual leave must be requested two weeks in advance and approved by a manager; unused days carry over to the next year.`;
}

async function timeIt<T>(fn: () => Promise<T>, reps = 3): Promise<{ ms: number; value: T }> {
  let best = Infinity;
  let value!: T;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    value = await fn();
    best = Math.min(best, performance.now() - t0);
  }
  return { ms: best, value };
}

async function langchainPdf(bytes: Buffer): Promise<number> {
  const pdf = await getDocumentProxy(new Uint8Array(bytes), { verbosity: 0 });
  const texts: string[] = [];
  for (let p = 1; p <= pdf.numPages; p++) {
    const c = await (await pdf.getPage(p)).getTextContent();
    texts.push(c.items.map((it) => ("str" in it ? it.str : "")).join(" "));
  }
  await pdf.destroy();
  const splitter = new RecursiveCharacterTextSplitter({ chunkSize: 750, chunkOverlap: 150 });
  return (await splitter.createDocuments(texts)).length;
}

async function main() {
  const rows: string[][] = [];
  for (const zh of [false, true]) {
    const pages = Array.from({ length: PAGES }, (_, p) => ({
      heading: p % 10 === 0 ? (zh ? `第${p / 10 + 1}章` : `Chapter ${p / 10 + 1}`) : undefined,
      paragraphs: Array.from({ length: 4 }, (_, k) => para(p * 4 + k, zh)),
    }));
    const bytes = await makePdf(pages, {
      header: () => (zh ? "示例公司员工手册" : "ACME Handbook"),
      footer: (n, t) => (zh ? `第 ${n} 页 共 ${t} 页` : `Page ${n} of ${t}`),
    });
    const ours = await timeIt(async () => {
      const doc = await parseDocument(bytes, "bench.pdf");
      return { doc, chunks: chunkDocument(doc, { targetTokens: 400, overlapTokens: 60 }) };
    });
    const lc = await timeIt(() => langchainPdf(bytes));
    const pps = (PAGES / ours.ms) * 1000;
    const lcPps = (PAGES / lc.ms) * 1000;
    rows.push([
      `${zh ? "zh" : "en"} PDF, ${PAGES} pages`,
      `${pps.toFixed(0)} pages/s (${ours.value.chunks.length} chunks)`,
      `${lcPps.toFixed(0)} pages/s (${lc.value} chunks)`,
      (pps / lcPps).toFixed(2),
      `${((bytes.length / 1048576 / ours.ms) * 1000).toFixed(2)} MB/s`,
    ]);
  }
  // Other formats: MB/s for a 200-paragraph document.
  const doc = { title: "Bench", paragraphs: Array.from({ length: 200 }, (_, i) => para(i, i % 2 === 0)) };
  for (const f of ["docx", "xlsx", "pptx", "html", "markdown", "text"] as const) {
    const bytes = await documentBytes(f, doc);
    const r = await timeIt(async () =>
      chunkDocument(await parseDocument(bytes, `b.${f === "markdown" ? "md" : f === "text" ? "txt" : f}`), {
        targetTokens: 400,
        overlapTokens: 60,
      }),
    );
    rows.push([
      `${f}, 200 paragraphs`,
      `${r.ms.toFixed(0)} ms (${r.value.length} chunks)`,
      "",
      "",
      `${((bytes.length / 1048576 / r.ms) * 1000).toFixed(2)} MB/s`,
    ]);
  }
  const head = ["input", "dajian parse+chunk", "LangChain.js pdf.js+splitter", "ratio", "dajian MB/s"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join(" | ");
  console.log(line(head));
  console.log(widths.map((w) => "-".repeat(w)).join("-|-"));
  for (const r of rows) console.log(line(r));
  console.log(`\ntarget: text-PDF ≥ 50 pages/s (best of 3 runs; Node ${process.version})`);
}

await main();
