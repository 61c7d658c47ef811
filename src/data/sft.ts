// SFT samples for the LoRA trainer: chat messages rendered with the base model's OWN chat template (GGUF
// `tokenizer.chat_template`, run by @huggingface/jinja), tokenized with dajian's BPE tokenizer, with a mask that is 1
// only on assistant tokens — including the end-of-turn / EOS token, so a fine-tuned model learns to stop.
//
// Assistant spans are found by rendering prefixes, not by regexes on one template: for assistant turn i,
//   prompt_i = render(messages[0..i), add_generation_prompt=true)   — what the model sees before answering
//   turn_i   = render(messages[0..i], add_generation_prompt=false)  — the same plus the answer and its end marker
// and the span is turn_i minus prompt_i. Each prompt/answer segment is tokenized separately, which is exactly how
// inference sees it (llama.cpp tokenizes the prompt, then generates the answer's tokens), so no token straddles the
// boundary. When the template renders no end-of-generation token inside the answer span, EOS is appended to it.
import { Template } from "@huggingface/jinja";
import { DajianError, errorLine } from "../core/errors.js";
import { readGgufHeader } from "../gguf/index.js";
import type { ChatMessage } from "../models/types.js";
import { BpeTokenizer, CHATML_TEMPLATE, readVocab, TokenType, type BpeVocab } from "../tokenizer/index.js";
import { readSftExamples, type SftExample } from "./sft-read.js";

/** Control tokens llama.cpp treats as end of generation (llama-vocab.cpp's EOG list, the common ones). */
const EOG_TEXTS = [
  "<|im_end|>",
  "<|eot_id|>",
  "<|end|>",
  "<|endoftext|>",
  "</s>",
  "<end_of_turn>",
  "<|EOT|>",
  "<|end_of_text|>",
  "<｜end▁of▁sentence｜>",
  "<|return|>",
  "<|eom_id|>",
];

export interface GgufTokenizer {
  vocab: BpeVocab;
  tokenizer: BpeTokenizer;
}

/** The vocabulary and tokenizer stored in a GGUF model file (header only; weights are not read). */
export function loadGgufTokenizer(path: string): GgufTokenizer {
  let vocab: BpeVocab;
  try {
    vocab = readVocab(readGgufHeader(path));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT")
      throw new DajianError("not_found", `model file not found: ${path}`, "give the path of a .gguf model");
    throw err;
  }
  return { vocab, tokenizer: new BpeTokenizer(vocab) };
}

export interface RenderedChat {
  text: string;
  /** Character spans [start, end) of trained (assistant) text in `text`. */
  spans: Array<[number, number]>;
}

export interface EncodeOptions {
  /** Train on prompt tokens too (mask all 1). Default false: assistant tokens only. */
  includePrompt?: boolean;
}

export interface SftSample {
  ids: number[];
  /** 1 = the loss counts this position's token (predicted from the tokens before it), 0 = context only. */
  mask: number[];
  source: string;
}

export class ChatFormatter {
  readonly template: string;
  readonly tokenizer: BpeTokenizer;
  private readonly compiled: Template;
  private readonly eog = new Set<number>();
  private readonly specials: Record<string, string>;
  private readonly controlTexts: string[];

  constructor(
    readonly vocab: BpeVocab,
    o: { template?: string; tokenizer?: BpeTokenizer } = {},
  ) {
    this.tokenizer = o.tokenizer ?? new BpeTokenizer(vocab);
    const t = o.template ?? vocab.chatTemplate;
    if (!t)
      throw new DajianError(
        "invalid_input",
        "the base model has no chat template (tokenizer.chat_template)",
        "pass a template explicitly (e.g. --template chatml) or use a model that carries one",
      );
    this.template = t === "chatml" ? CHATML_TEMPLATE : t;
    try {
      this.compiled = new Template(this.template);
    } catch (err) {
      throw new DajianError(
        "invalid_input",
        `cannot parse the chat template: ${errorLine(err)}`,
        "fix or replace the template",
      );
    }
    for (const id of [vocab.eosId, vocab.eotId]) if (id !== undefined) this.eog.add(id);
    vocab.tokens.forEach((tok, id) => {
      const special = vocab.tokenTypes[id] === TokenType.CONTROL || vocab.tokenTypes[id] === TokenType.USER_DEFINED;
      if (special && EOG_TEXTS.includes(tok)) this.eog.add(id);
    });
    this.controlTexts = vocab.tokens.filter(
      (t, id) => vocab.tokenTypes[id] === TokenType.CONTROL && t.length > 1 && /^[<[]/.test(t),
    );
    const tokenText = (id?: number) => (id === undefined ? "" : vocab.tokens[id]);
    this.specials = {
      bos_token: tokenText(vocab.bosId),
      eos_token: tokenText(vocab.eosId),
      pad_token: tokenText(vocab.padId),
      unk_token: tokenText(vocab.unkId),
    };
  }

  /** A formatter for a GGUF model: its vocabulary, tokenizer and chat template (or `template` to override it). */
  static fromGguf(path: string, template?: string): ChatFormatter {
    const { vocab, tokenizer } = loadGgufTokenizer(path);
    return new ChatFormatter(vocab, { template, tokenizer });
  }

  /** Render with the template (same variables transformers and llama.cpp provide). */
  renderText(messages: ChatMessage[], addGenerationPrompt: boolean): string {
    try {
      return this.compiled.render({
        messages,
        add_generation_prompt: addGenerationPrompt,
        ...this.specials,
        date_string: "01 Jan 2026", // Llama 3.1 prints "Today Date"; fixed so renders are reproducible
      });
    } catch (err) {
      throw new DajianError(
        "invalid_input",
        `chat template failed: ${errorLine(err)}`,
        "check the roles and order of the messages",
      );
    }
  }

  /** The full conversation text and the character spans of every assistant turn (content + end marker). */
  render(messages: ChatMessage[]): RenderedChat {
    const text = this.renderText(messages, false);
    const spans: Array<[number, number]> = [];
    let cursor = 0;
    for (let i = 0; i < messages.length; i++) {
      if (messages[i].role !== "assistant") continue;
      const prompt = this.renderText(messages.slice(0, i), true);
      const turn = this.renderText(messages.slice(0, i + 1), false);
      let start: number;
      if (turn.startsWith(prompt)) start = prompt.length;
      else {
        // The generation prompt differs from how a finished turn is rendered (e.g. an empty <think> block):
        // start at the answer's own text after the longest common prefix.
        let lcp = 0;
        while (lcp < prompt.length && prompt[lcp] === turn[lcp]) lcp++;
        const at = turn.indexOf(messages[i].content, lcp);
        if (at < 0) throw this.spanError(i);
        start = at;
      }
      const piece = turn.slice(start);
      let at: number;
      if (text.startsWith(turn)) at = start;
      else {
        at = text.indexOf(piece, cursor); // history rendered differently from the last turn: find this answer
        if (at < 0) throw this.spanError(i);
      }
      if (at < cursor) throw this.spanError(i);
      spans.push([at, at + piece.length]);
      cursor = at + piece.length;
    }
    if (spans.length === 0)
      throw new DajianError("invalid_input", "no assistant turn to train", "add an assistant answer");
    return { text, spans };
  }

  private spanError(i: number): DajianError {
    return new DajianError(
      "unsupported",
      `cannot locate assistant turn ${i} in the rendered chat template`,
      "the template renders conversations inconsistently; pass a simpler template (e.g. --template chatml)",
    );
  }

  /**
   * Rendered text is tokenized with control tokens recognised (the template's markers must become single tokens),
   * so a control token typed inside a message would turn into a real turn boundary: refuse such examples.
   */
  private checkContent(messages: ChatMessage[]): void {
    for (const m of messages)
      for (const t of this.controlTexts)
        if (m.content.includes(t))
          throw new DajianError(
            "invalid_input",
            `a ${m.role} message contains the control token ${t}`,
            "remove chat-template markers from the data",
          );
  }

  /** Token ids and loss mask for one conversation. */
  encode(messages: ChatMessage[], o: EncodeOptions = {}): { ids: number[]; mask: number[] } {
    this.checkContent(messages);
    const { text, spans } = this.render(messages);
    const ids: number[] = [];
    const mask: number[] = [];
    const push = (piece: string, trained: boolean) => {
      if (!piece) return;
      const t = this.tokenizer.encode(piece, { parseSpecial: true });
      for (const id of t) {
        ids.push(id);
        mask.push(trained || o.includePrompt ? 1 : 0);
      }
      return t;
    };
    const { vocab } = this;
    if (vocab.addBos && vocab.bosId !== undefined && !text.startsWith(this.specials.bos_token || "\u0000")) {
      ids.push(vocab.bosId);
      mask.push(o.includePrompt ? 1 : 0);
    }
    let pos = 0;
    for (const [s, e] of spans) {
      push(text.slice(pos, s), false);
      const t = push(text.slice(s, e), true) ?? [];
      if (!t.some((id) => this.eog.has(id))) {
        if (vocab.eosId === undefined)
          throw new DajianError(
            "unsupported",
            "the template ends turns without an end token and the vocabulary has no EOS",
            "use a model with an EOS token",
          );
        ids.push(vocab.eosId);
        mask.push(1);
      }
      pos = e;
    }
    push(text.slice(pos), false);
    return { ids, mask };
  }
}

export interface SftLoadOptions extends EncodeOptions {
  /** Longest sample in tokens; longer ones are dropped (default) or truncated. */
  maxLen?: number;
  overflow?: "drop" | "truncate";
  /** Stop after this many samples. */
  limit?: number;
}

export interface SftLoadReport {
  read: number;
  kept: number;
  /** Examples rejected (bad JSON, unknown fields, template failures) — first 20 listed in `errors`. */
  invalid: number;
  droppedTooLong: number;
  /** Truncated (overflow "truncate") and kept. */
  truncated: number;
  /** Truncation left no trained token: dropped. */
  droppedNoTarget: number;
  tokens: number;
  trainedTokens: number;
  errors: Array<{ source: string; error: string }>;
}

export interface SftDataset {
  samples: SftSample[];
  report: SftLoadReport;
}

/** Read, render, tokenize and mask every example of the files (the LoRA trainer's data entry point). */
export async function loadSftDataset(files: string[], f: ChatFormatter, o: SftLoadOptions = {}): Promise<SftDataset> {
  const report: SftLoadReport = {
    read: 0,
    kept: 0,
    invalid: 0,
    droppedTooLong: 0,
    truncated: 0,
    droppedNoTarget: 0,
    tokens: 0,
    trainedTokens: 0,
    errors: [],
  };
  const samples: SftSample[] = [];
  const fail = (source: string, error: string) => {
    report.invalid++;
    if (report.errors.length < 20) report.errors.push({ source, error });
  };
  outer: for (const file of files) {
    for await (const ex of readSftExamples(file)) {
      report.read++;
      if ("error" in ex) {
        fail(ex.source, ex.error);
        continue;
      }
      let s: SftSample;
      try {
        s = { ...f.encode(ex.messages, o), source: ex.source };
      } catch (err) {
        fail(ex.source, errorLine(err));
        continue;
      }
      if (o.maxLen !== undefined && s.ids.length > o.maxLen) {
        if ((o.overflow ?? "drop") === "drop") {
          report.droppedTooLong++;
          continue;
        }
        s.ids.length = o.maxLen;
        s.mask.length = o.maxLen;
        // Position 0 predicts nothing, so a sample needs a trained token after the first position.
        if (!s.mask.slice(1).some((m) => m === 1)) {
          report.droppedNoTarget++;
          continue;
        }
        report.truncated++;
      }
      samples.push(s);
      report.kept++;
      report.tokens += s.ids.length;
      report.trainedTokens += s.mask.reduce((a, m) => a + m, 0);
      if (o.limit !== undefined && samples.length >= o.limit) break outer;
    }
  }
  return { samples, report };
}

/** Encode examples already in memory (e.g. from `data from-kb`) with the same rules. */
export function encodeExamples(examples: SftExample[], f: ChatFormatter, o: EncodeOptions = {}): SftSample[] {
  return examples.map((ex) => ({ ...f.encode(ex.messages, o), source: ex.source }));
}
