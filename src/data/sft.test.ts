// SFT data: every input format → messages; rendering with ChatML, Llama-3 and Mistral templates from real GGUF
// files; masks cover exactly the assistant answers plus their end-of-turn token; truncation counts.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ExcelJS from "exceljs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GgufWriter } from "../gguf/index.js";
import type { ChatMessage } from "../models/types.js";
import { llamaCppSourceDir } from "../tokenizer/llama-src.js";
import { TokenType, trainBpe, writeVocabMetadata, type BpeVocab } from "../tokenizer/index.js";
import { ChatFormatter, loadSftDataset } from "./sft.js";
import { readSftExamples, toMessages } from "./sft-read.js";

const LLAMA3 =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
const MISTRAL =
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";
// An old-style instruction template that never renders an end token: EOS must be appended by dajian.
const PLAIN =
  "{% for m in messages %}{% if m['role'] == 'user' %}### Instruction:\n{{ m['content'] }}\n\n### Response:\n{% elif m['role'] == 'assistant' %}{{ m['content'] }}\n\n{% endif %}{% endfor %}";

const CORPUS = [
  "The annual leave policy gives fifteen days. How many days of leave do I get?",
  "员工每年享有十五天带薪年假。年假有多少天？入职满一年后开始计算。",
  "Reimbursement requests must be filed within 30 days. Who approves expenses? The finance team approves.",
];

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "dajian-sft-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A real GGUF file carrying a BPE vocabulary with the given control tokens and chat template. */
function vocabGguf(
  name: string,
  specials: string[],
  ids: Partial<Record<"bos" | "eos" | "eot", string>>,
  template: string,
  addBos: boolean,
): string {
  const v: BpeVocab = trainBpe(CORPUS, {
    vocabSize: 600,
    specialTokens: specials,
    minFrequency: 1,
    chatTemplate: template,
  });
  const id = (t?: string) => (t === undefined ? undefined : v.tokens.indexOf(t));
  const vocab: BpeVocab = {
    ...v,
    bosId: id(ids.bos),
    eosId: id(ids.eos),
    eotId: id(ids.eot),
    padId: undefined,
    addBos,
  };
  const w = new GgufWriter();
  w.str("general.architecture", "llama");
  writeVocabMetadata(w, vocab);
  const path = join(dir, `${name}.gguf`);
  w.write(path);
  return path;
}

const CONVO: ChatMessage[] = [
  { role: "system", content: "You are the HR assistant of Acme." },
  { role: "user", content: "How many days of annual leave?" },
  { role: "assistant", content: "Fifteen days per year." },
  { role: "user", content: "年假有多少天？" },
  { role: "assistant", content: "每年十五天。" },
];

/** Decode the trained (mask = 1) runs of a sample, one string per run. */
function trainedRuns(f: ChatFormatter, ids: number[], mask: number[]): string[] {
  const runs: string[] = [];
  let cur: number[] = [];
  for (let i = 0; i <= ids.length; i++) {
    if (i < ids.length && mask[i] === 1) cur.push(ids[i]);
    else if (cur.length) {
      runs.push(f.tokenizer.decode(cur, { special: true }));
      cur = [];
    }
  }
  return runs;
}

describe("chat templates → ids and assistant-only masks", () => {
  it("ChatML (dajian's own template): answers and <|im_end|> trained, prompts not", () => {
    const f = ChatFormatter.fromGguf(
      vocabGguf(
        "chatml",
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        { eos: "<|im_end|>", eot: "<|im_end|>" },
        "chatml",
        false,
      ),
    );
    const { ids, mask } = f.encode(CONVO);
    expect(f.tokenizer.decode(ids, { special: true })).toBe(f.renderText(CONVO, false));
    expect(trainedRuns(f, ids, mask)).toEqual(["Fifteen days per year.<|im_end|>\n", "每年十五天。<|im_end|>\n"]);
    const imEnd = f.vocab.tokens.indexOf("<|im_end|>");
    // Every <|im_end|> that closes an assistant turn is trained; the ones closing system/user turns are not.
    const trainedEnds = ids.filter((id, i) => id === imEnd && mask[i] === 1).length;
    expect(trainedEnds).toBe(2);
    expect(ids.filter((id) => id === imEnd).length).toBe(5);
    expect(() =>
      f.encode([
        { role: "user", content: "hi<|im_end|>" },
        { role: "assistant", content: "x" },
      ]),
    ).toThrow(/contains the control token <\|im_end\|>/);
    const all = f.encode(CONVO, { includePrompt: true });
    expect(all.mask.every((m) => m === 1)).toBe(true);
    expect(all.ids).toEqual(ids);
  });

  it("Llama-3 style: header tokens are prompt, answer + <|eot_id|> trained, BOS once", () => {
    const f = ChatFormatter.fromGguf(
      vocabGguf(
        "llama3",
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        { bos: "<|begin_of_text|>", eos: "<|eot_id|>", eot: "<|eot_id|>" },
        LLAMA3,
        true,
      ),
    );
    const { ids, mask } = f.encode(CONVO);
    expect(trainedRuns(f, ids, mask)).toEqual(["Fifteen days per year.<|eot_id|>", "每年十五天。<|eot_id|>"]);
    const bos = f.vocab.tokens.indexOf("<|begin_of_text|>");
    expect(ids[0]).toBe(bos);
    expect(ids.filter((x) => x === bos).length).toBe(1);
    expect(
      f.tokenizer.decode(
        ids.filter((_, i) => mask[i] === 0),
        { special: true },
      ),
    ).toContain("<|start_header_id|>assistant<|end_header_id|>\n\n");
  });

  it("Mistral [INST] style: answer + </s> trained; a system message is refused by the template and counted", async () => {
    const path = vocabGguf("mistral", ["<s>", "</s>", "[INST]", "[/INST]"], { bos: "<s>", eos: "</s>" }, MISTRAL, true);
    const f = ChatFormatter.fromGguf(path);
    const convo = CONVO.slice(1);
    const { ids, mask } = f.encode(convo);
    expect(trainedRuns(f, ids, mask)).toEqual(["Fifteen days per year.</s>", "每年十五天。</s>"]);
    expect(f.tokenizer.decode(ids, { special: true })).toBe(
      "<s>[INST] How many days of annual leave? [/INST]Fifteen days per year.</s>[INST] 年假有多少天？ [/INST]每年十五天。</s>",
    );
    const file = join(dir, "mixed.jsonl");
    writeFileSync(file, [JSON.stringify({ messages: CONVO }), JSON.stringify({ messages: convo })].join("\n"));
    const { samples, report } = await loadSftDataset([file], f);
    expect(report).toMatchObject({ read: 2, kept: 1, invalid: 1 });
    expect(report.errors[0].error).toMatch(/Conversation roles must alternate|Only user and assistant/);
    expect(samples[0].ids).toEqual(ids);
  });

  it("appends EOS to answers when the template renders no end-of-turn token", () => {
    const f = ChatFormatter.fromGguf(vocabGguf("plain", ["<|endoftext|>"], { eos: "<|endoftext|>" }, PLAIN, false));
    const { ids, mask } = f.encode(CONVO.slice(1, 3));
    const eos = f.vocab.eosId!;
    expect(ids[ids.length - 1]).toBe(eos);
    expect(mask[mask.length - 1]).toBe(1);
    expect(trainedRuns(f, ids, mask)).toEqual(["Fifteen days per year.\n\n<|endoftext|>"]);
  });

  it("renders the real Llama-3.1, Mistral-Nemo and Qwen2.5 templates shipped with llama.cpp", () => {
    const src = llamaCppSourceDir();
    const tpl = (n: string) => readFileSync(join(src, "models/templates", n), "utf8");
    const cases: Array<[string, string[], Partial<Record<"bos" | "eos" | "eot", string>>, string[]]> = [
      [
        "meta-llama-Llama-3.1-8B-Instruct.jinja",
        ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>"],
        { bos: "<|begin_of_text|>", eos: "<|eot_id|>" },
        ["<|eot_id|>"],
      ],
      [
        "mistralai-Mistral-Nemo-Instruct-2407.jinja",
        ["<s>", "</s>", "[INST]", "[/INST]"],
        { bos: "<s>", eos: "</s>" },
        ["</s>"],
      ],
      [
        "Qwen-Qwen2.5-7B-Instruct.jinja",
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        { eos: "<|im_end|>" },
        ["<|im_end|>"],
      ],
    ];
    for (const [file, specials, ids, ends] of cases) {
      const path = join(src, "models/templates", file);
      if (!existsSync(path)) throw new Error(`missing ${path}`);
      const f = ChatFormatter.fromGguf(vocabGguf(file, specials, ids, tpl(file), false));
      const enc = f.encode(CONVO);
      const runs = trainedRuns(f, enc.ids, enc.mask);
      expect(runs.length, file).toBe(2);
      expect(runs[0], file).toContain("Fifteen days per year.");
      expect(runs[1], file).toContain("每年十五天。");
      for (const r of runs)
        expect(
          ends.some((e) => r.includes(e)),
          `${file}: ${r}`,
        ).toBe(true);
      // No user or system text is ever trained.
      expect(runs.join("")).not.toContain("annual leave?");
      expect(runs.join("")).not.toContain("HR assistant");
    }
  });
});

describe("reading SFT formats", () => {
  it("alpaca (with input, system, history), OpenAI messages, ShareGPT and Q&A JSONL", () => {
    expect(
      toMessages({
        instruction: "Summarise",
        input: "Text here",
        output: "Summary",
        system: "Be brief",
        history: [["Hi", "Hello"]],
      }),
    ).toEqual([
      { role: "system", content: "Be brief" },
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello" },
      { role: "user", content: "Summarise\n\nText here" },
      { role: "assistant", content: "Summary" },
    ]);
    expect(
      toMessages({
        messages: [
          { role: "user", content: [{ type: "text", text: "Q" }] },
          { role: "assistant", content: "A" },
        ],
      }),
    ).toEqual([
      { role: "user", content: "Q" },
      { role: "assistant", content: "A" },
    ]);
    expect(
      toMessages({
        system: "S",
        conversations: [
          { from: "human", value: "Q1" },
          { from: "gpt", value: "A1" },
          { from: "human", value: "dangling" },
        ],
      }),
    ).toEqual([
      { role: "system", content: "S" },
      { role: "user", content: "Q1" },
      { role: "assistant", content: "A1" },
    ]);
    expect(toMessages({ 问题: "年假几天？", 答案: "十五天" })).toEqual([
      { role: "user", content: "年假几天？" },
      { role: "assistant", content: "十五天" },
    ]);
    expect(() => toMessages({ messages: [{ role: "tool", content: "x" }] })).toThrow(/unsupported role "tool"/);
    expect(() => toMessages({ messages: [{ role: "user", content: "only a question" }] })).toThrow(
      /no assistant answer/,
    );
    expect(() => toMessages({ foo: 1 })).toThrow(/no recognised fields/);
  });

  it("Q&A tables in CSV (GBK-safe decoding) and XLSX; bad rows reported, the rest kept", async () => {
    const csv = join(dir, "faq.csv");
    writeFileSync(csv, '问题,答案\n年假有几天？,十五天\n"报销期限, 多久？","30 天内"\n,缺问题\n');
    const got = [];
    for await (const r of readSftExamples(csv)) got.push(r);
    expect(got).toHaveLength(3);
    expect(got[1]).toMatchObject({
      messages: [
        { role: "user", content: "报销期限, 多久？" },
        { role: "assistant", content: "30 天内" },
      ],
    });
    expect(got[2]).toMatchObject({ error: expect.stringContaining("empty question") });

    const wb = new ExcelJS.Workbook();
    const ws = wb.addWorksheet("FAQ");
    ws.addRow(["Question", "Answer", "System"]);
    ws.addRow(["Who approves expenses?", "The finance team.", "You are Acme's assistant."]);
    ws.addRow(["Where is the office?", "Shanghai.", ""]);
    const xlsx = join(dir, "faq.xlsx");
    await wb.xlsx.writeFile(xlsx);
    const x = [];
    for await (const r of readSftExamples(xlsx)) x.push(r);
    expect(x).toEqual([
      {
        source: "faq.xlsx:FAQ!2",
        messages: [
          { role: "system", content: "You are Acme's assistant." },
          { role: "user", content: "Who approves expenses?" },
          { role: "assistant", content: "The finance team." },
        ],
      },
      {
        source: "faq.xlsx:FAQ!3",
        messages: [
          { role: "user", content: "Where is the office?" },
          { role: "assistant", content: "Shanghai." },
        ],
      },
    ]);
    const bad = join(dir, "bad.csv");
    writeFileSync(bad, "foo,bar\n1,2\n");
    await expect(async () => {
      for await (const _ of readSftExamples(bad)) void _;
    }).rejects.toThrow(/no question\/answer columns/);
  });

  it("drops or truncates over-long samples with counts", async () => {
    const f = ChatFormatter.fromGguf(
      vocabGguf("chatml2", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], { eos: "<|im_end|>" }, "chatml", false),
    );
    const file = join(dir, "len.jsonl");
    const long = "fifteen days ".repeat(60);
    writeFileSync(
      file,
      [
        JSON.stringify({ instruction: "short?", output: "yes" }),
        JSON.stringify({ instruction: "long?", output: long }),
        JSON.stringify({ instruction: long, output: "no" }),
        "{broken",
      ].join("\n"),
    );
    const short = f.encode([
      { role: "user", content: "short?" },
      { role: "assistant", content: "yes" },
    ]).ids.length;
    const maxLen = short + 10;
    const drop = await loadSftDataset([file], f, { maxLen });
    expect(drop.report).toMatchObject({ read: 4, kept: 1, droppedTooLong: 2, invalid: 1, truncated: 0 });
    const cut = await loadSftDataset([file], f, { maxLen, overflow: "truncate" });
    expect(cut.report).toMatchObject({ kept: 2, truncated: 1, droppedNoTarget: 1 });
    expect(cut.samples.every((s) => s.ids.length <= maxLen && s.mask.length === s.ids.length)).toBe(true);
    expect(cut.report.trainedTokens).toBe(cut.samples.reduce((a, s) => a + s.mask.filter((m) => m === 1).length, 0));
  });

  it("refuses a model without a chat template with a hint", () => {
    const v = trainBpe(CORPUS, { vocabSize: 400, specialTokens: ["<|endoftext|>"], minFrequency: 1 });
    expect(v.tokenTypes.includes(TokenType.CONTROL)).toBe(true);
    expect(() => new ChatFormatter({ ...v, chatTemplate: undefined })).toThrow(/no chat template/);
  });
});
