// `data from-kb` templates over a real knowledge base built by real ingest of real files (Markdown, XLSX, DOCX):
// heading, table and definition pairs keep their sources, the review reports list them, and the output is valid
// SFT data for the fine-tuning reader.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KnowledgeBases } from "../index/kb.js";
import { EN, ZH_HANS } from "../index/fixtures.test-helper.js";
import { makeDocx, makeXlsx } from "../ingest/fixtures.js";
import { qaFromKb, type QaPair } from "./from-kb.js";
import { readSftExamples } from "./sft-read.js";
import { RemoteChatModel } from "../models/remote.js";

let dir: string;
let kbs: KnowledgeBases;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dajian-fromkb-"));
  const docs = join(dir, "docs");
  mkdirSync(docs);
  writeFileSync(join(docs, "员工手册.md"), ZH_HANS);
  writeFileSync(join(docs, "handbook.md"), EN);
  writeFileSync(
    join(docs, "contacts.xlsx"),
    await makeXlsx([
      {
        name: "部门",
        rows: [
          ["部门", "负责人", "电话分机"],
          ["财务部", "李娜", "8021"],
          ["人力资源部", "王强", "8035"],
        ],
      },
    ]),
  );
  writeFileSync(
    join(docs, "glossary.docx"),
    await makeDocx({
      title: "术语表",
      body: [
        { heading: "术语", level: 1 },
        { paragraph: "年假是指员工每年享有的带薪休假。这是一个不应被当作定义的句子。" },
        { paragraph: "Core hours means the period from 10am to 4pm when every employee must be reachable." },
        { paragraph: "It is a sentence that must not become a definition." },
      ],
    }),
  );
  kbs = new KnowledgeBases(join(dir, "home"), { embedder: null });
  await kbs.create("acme");
  const s = await kbs.ingest("acme", [docs]);
  expect(s.failed).toBe(0);
});

afterAll(async () => {
  await kbs?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("data from-kb (templates)", () => {
  it("builds heading, table and definition pairs with sources, and review reports", async () => {
    const out = join(dir, "qa.jsonl");
    const r = await qaFromKb(kbs, "acme", out);
    expect(r.documents).toBe(4);
    expect(r.byMethod.heading).toBeGreaterThanOrEqual(6);
    expect(r.byMethod.table).toBe(4);
    expect(r.byMethod.definition).toBeGreaterThanOrEqual(2);
    const pairs = readFileSync(out, "utf8")
      .trim()
      .split("\n")
      .map(
        (l) =>
          JSON.parse(l) as {
            id: string;
            instruction: string;
            output: string;
            source: QaPair["source"];
            method: string;
          },
      );
    expect(pairs.length).toBe(r.pairs);

    const table = pairs.find((p) => p.instruction === "财务部的负责人是什么？");
    expect(table).toMatchObject({
      output: "财务部的负责人是李娜。",
      method: "table",
      source: { document: "docs/contacts.xlsx" },
    });
    expect(pairs.find((p) => p.instruction === "人力资源部的电话分机是什么？")?.output).toBe(
      "人力资源部的电话分机是8035。",
    );

    const annual = pairs.find((p) => p.method === "heading" && p.source.heading?.endsWith("年假"));
    expect(annual?.instruction).toBe("《员工手册》中关于“年假”有哪些规定？");
    expect(annual?.output).toContain("带薪年假五天");
    expect(annual?.source).toMatchObject({ document: "docs/员工手册.md", heading: "员工手册 > 第二章 假期 > 年假" });
    const remote = pairs.find((p) => p.method === "heading" && p.source.heading?.endsWith("Remote Work"));
    expect(remote?.instruction).toBe('What does "Employee Handbook" say about Remote Work?');
    expect(remote?.output).toContain("two days per week");

    const defs = pairs.filter((p) => p.method === "definition");
    expect(defs.map((d) => d.instruction)).toEqual(
      expect.arrayContaining(["什么是年假？", "What does Core hours mean?"]),
    );
    expect(defs.every((d) => !/这是|^It /.test(d.output))).toBe(true);
    expect(defs.find((d) => d.instruction === "什么是年假？")?.source.document).toBe("docs/glossary.docx");

    const md = readFileSync(r.reviewMarkdown, "utf8");
    const html = readFileSync(r.reviewHtml, "utf8");
    for (const p of pairs) {
      expect(md).toContain(p.id);
      expect(html).toContain(p.id);
    }
    expect(html).toContain("财务部的负责人是李娜。");

    // The output is SFT data the fine-tuning reader accepts as-is.
    const examples = [];
    for await (const e of readSftExamples(out)) examples.push(e);
    expect(examples.every((e) => "messages" in e)).toBe(true);
    expect(examples.length).toBe(pairs.length);
  });

  it("caps the number of pairs evenly and refuses an empty knowledge base", async () => {
    const out = join(dir, "qa-max.jsonl");
    const r = await qaFromKb(kbs, "acme", out, { max: 5 });
    expect(r.pairs).toBe(5);
    expect(readFileSync(out, "utf8").trim().split("\n")).toHaveLength(5);
    await kbs.create("empty");
    await expect(qaFromKb(kbs, "empty", join(dir, "e.jsonl"))).rejects.toThrow(/has no documents/);
  });
});

describe("data from-kb (generative model)", () => {
  let server: Server;
  let calls = 0;
  beforeAll(async () => {
    // A real OpenAI-compatible endpoint (SSE), scripted: it answers with the passage's first sentence, except that
    // the second request gets non-JSON output (a model misbehaving), which must be counted and skipped.
    server = createServer((req, res) => {
      let raw = "";
      req.on("data", (c) => (raw += c));
      req.on("end", () => {
        const body = JSON.parse(raw) as { messages: Array<{ role: string; content: string }> };
        const user = body.messages.find((m) => m.role === "user")!.content;
        const passage = user.slice(user.indexOf("\n", user.indexOf("\n") + 1) + 1, user.lastIndexOf("\n\n"));
        const first = passage.split(/(?<=[。.!?！？])/)[0].trim();
        calls++;
        const text =
          calls === 2
            ? "Sorry, I cannot do that."
            : JSON.stringify({ pairs: [{ question: `Q${calls}: what does the passage say?`, answer: first }] });
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(
          `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: text }, finish_reason: null }] })}\n\n`,
        );
        res.write(
          `data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }], usage: { prompt_tokens: 10, completion_tokens: 5 } })}\n\n`,
        );
        res.end("data: [DONE]\n\n");
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it("asks the model per passage, keeps sources, and counts a passage whose output is not JSON", async () => {
    const model = new RemoteChatModel(
      "gen",
      {
        kind: "remote",
        baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
        model: "m",
        allowPrivateNetwork: true,
        timeoutMs: 5000,
      },
      { env: {}, backoffBaseMs: 10 },
    );
    const out = join(dir, "qa-model.jsonl");
    const r = await qaFromKb(kbs, "acme", out, { model, max: 6 });
    expect(r.failures).toBe(1);
    expect(r.failureSamples[0]).toMatch(/not JSON/);
    expect(r.byMethod.model).toBe(r.pairs);
    expect(r.pairs).toBe(6);
    const pairs = readFileSync(out, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { instruction: string; output: string; source: QaPair["source"] });
    // Each answer is the first sentence of the passage the model was shown, and the pair points at that passage.
    const chunkTexts = new Map<string, string>();
    for (const d of await kbs.documents("acme"))
      for (const c of await kbs.store.documentChunks(d.id))
        chunkTexts.set(`${d.name}\u0000${c.headingPath.join(" > ")}`, c.text);
    for (const p of pairs) {
      const text = chunkTexts.get(`${p.source.document}\u0000${p.source.heading ?? ""}`);
      expect(text, JSON.stringify(p.source)).toBeDefined();
      expect(text).toContain(p.output);
    }
  });
});
