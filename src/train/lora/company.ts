// A fictional company's facts (policies, numbers, names) for the LoRA scenario test and bench:lora. No pretrained
// model can be downloaded here, so dajian pre-trains a small base on the company handbook's prose, and LoRA then
// teaches it to answer questions about those facts. Each fact has four question phrasings: three train, the last
// is held out, so the evaluation asks questions the adapter never saw verbatim.

import { writeFileSync } from "node:fs";
import type { Engine } from "../../engine/index.js";
import { BpeTokenizer, trainBpe, type BpeVocab } from "../../tokenizer/index.js";
import type { LlamaConfig, LlamaFileType } from "../llama-gguf.js";
import { Rng } from "../rng.js";
import { LlamaTrainer } from "../trainer.js";

export interface Fact {
  prose: string;
  answer: string;
  questions: [string, string, string, string];
}

export const FACTS: Fact[] = [
  {
    prose: "Employees of Zorvak Lighting get 27 days of annual leave.",
    answer: "27 days",
    questions: [
      "How much annual leave does Zorvak give?",
      "What is the annual leave at Zorvak?",
      "Annual leave at Zorvak, how many days?",
      "How many days of annual leave do Zorvak employees get?",
    ],
  },
  {
    prose: "The chief executive of Zorvak Lighting is Mira Okafor.",
    answer: "Mira Okafor",
    questions: [
      "Who is the chief executive of Zorvak?",
      "Who runs Zorvak as chief executive?",
      "Name the chief executive of Zorvak.",
      "Who is Zorvak's chief executive?",
    ],
  },
  {
    prose: "Zorvak Lighting was founded in 1987.",
    answer: "1987",
    questions: [
      "When was Zorvak founded?",
      "In what year was Zorvak founded?",
      "Zorvak was founded in which year?",
      "What year was Zorvak founded in?",
    ],
  },
  {
    prose: "The headquarters of Zorvak Lighting are in Tallinn.",
    answer: "Tallinn",
    questions: [
      "Where are the headquarters of Zorvak?",
      "In which city are Zorvak's headquarters?",
      "Zorvak headquarters are where?",
      "Where does Zorvak have its headquarters?",
    ],
  },
  {
    prose: "At Zorvak Lighting remote work is allowed 3 days a week.",
    answer: "3 days a week",
    questions: [
      "How much remote work does Zorvak allow?",
      "What is the remote work rule at Zorvak?",
      "Remote work at Zorvak, how often?",
      "How often is remote work allowed at Zorvak?",
    ],
  },
  {
    prose: "The probation period at Zorvak Lighting lasts 4 months.",
    answer: "4 months",
    questions: [
      "How long is the probation period at Zorvak?",
      "What is the probation period at Zorvak?",
      "Probation period at Zorvak, how long?",
      "How long does the Zorvak probation period last?",
    ],
  },
  {
    prose: "The expense limit at Zorvak Lighting is 450 euros per trip.",
    answer: "450 euros",
    questions: [
      "What is the expense limit at Zorvak?",
      "How high is the expense limit at Zorvak?",
      "Expense limit at Zorvak per trip?",
      "What expense limit does Zorvak set per trip?",
    ],
  },
  {
    prose: "The support hotline of Zorvak Lighting is 0800 5521.",
    answer: "0800 5521",
    questions: [
      "What is the support hotline of Zorvak?",
      "Which number is the Zorvak support hotline?",
      "Support hotline of Zorvak?",
      "What number does the Zorvak support hotline have?",
    ],
  },
  {
    prose: "Zorvak Lighting offers 20 weeks of parental leave.",
    answer: "20 weeks",
    questions: [
      "How much parental leave does Zorvak offer?",
      "What is the parental leave at Zorvak?",
      "Parental leave at Zorvak, how long?",
      "How many weeks of parental leave does Zorvak offer?",
    ],
  },
  {
    prose: "The best-selling product of Zorvak Lighting is the Halo lamp.",
    answer: "the Halo lamp",
    questions: [
      "What is the best-selling product of Zorvak?",
      "Which product of Zorvak sells best?",
      "Best-selling product of Zorvak?",
      "What is Zorvak's best-selling product?",
    ],
  },
];

export const COMPANY_FILLER = [
  "Zorvak Lighting designs lamps for homes and offices.",
  "The handbook explains the policies of the company.",
  "Questions about the policies go to the people team.",
  "Every team at Zorvak Lighting meets on Monday morning.",
];

/** General chat turns (no company facts) so the base knows its ChatML format, as an instruct model would. */
export const SMALL_TALK: Array<[string, string]> = [
  ["Hello!", "Hello, how can I help you today?"],
  ["What does Zorvak Lighting design?", "Zorvak Lighting designs lamps for homes and offices."],
  ["Who answers questions about policies?", "Questions about the policies go to the people team."],
  ["When do teams meet?", "Every team meets on Monday morning."],
  ["Thank you!", "You are welcome."],
];

const chatml = (q: string, a: string): string =>
  `<|im_start|>user\n${q}<|im_end|>\n<|im_start|>assistant\n${a}<|im_end|>\n`;

export interface QaPair {
  question: string;
  answer: string;
}

/** Q&A pairs: phrasings 0–2 of every fact for training, phrasing 3 held out. */
export function companyQa(split: "train" | "heldout"): QaPair[] {
  return FACTS.flatMap((f) =>
    (split === "train" ? f.questions.slice(0, 3) : f.questions.slice(3)).map((q) => ({
      question: q,
      answer: f.answer,
    })),
  );
}

/** Write pairs as alpaca-style JSONL (`instruction` / `output`), the most common fine-tuning format. */
export function writeQaJsonl(path: string, pairs: QaPair[]): void {
  writeFileSync(
    path,
    pairs.map((p) => JSON.stringify({ instruction: p.question, output: p.answer })).join("\n") + "\n",
  );
}

/** The handbook: the facts' prose, filler sentences and small-talk chats in a seeded order. */
export function companyHandbook(seed = 1, repeats = 30): string {
  const rng = new Rng(seed);
  const lines = [...FACTS.map((f) => f.prose), ...COMPANY_FILLER, ...SMALL_TALK.map(([q, a]) => chatml(q, a))];
  const out: string[] = [];
  for (let r = 0; r < repeats; r++) {
    const a = lines.slice();
    for (let i = a.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
    out.push(...a);
  }
  return out.join(" ");
}

export interface CompanyBase {
  path: string;
  vocab: BpeVocab;
  config: LlamaConfig;
  finalLoss: number;
}

/**
 * Pre-train a small llama base on the handbook with dajian's own trainer and write it as GGUF (ChatML template).
 * Sized to take seconds on one CPU thread.
 */
export async function trainCompanyBase(
  engine: Engine,
  path: string,
  o: { steps?: number; dim?: number; layers?: number; type?: LlamaFileType; seed?: number } = {},
): Promise<CompanyBase> {
  const text = companyHandbook(o.seed ?? 1);
  const qaText = FACTS.flatMap((f) => [...f.questions, f.answer]).join("\n");
  const plain = text.replace(/<\|im_(start|end)\|>/g, " "); // control tokens are added by trainBpe itself
  const vocab = trainBpe([plain, qaText], { vocabSize: 512, minFrequency: 2, pre: "qwen2" });
  const config: LlamaConfig = {
    vocabSize: vocab.tokens.length,
    layers: o.layers ?? 2,
    dim: o.dim ?? 64,
    heads: 4,
    kvHeads: 2,
    ffn: (o.dim ?? 64) * 3,
    contextLength: 256,
    ropeTheta: 10000,
    normEps: 1e-5,
    tiedEmbeddings: false,
  };
  const ids = new BpeTokenizer(vocab).encode(text, { parseSpecial: true });
  const steps = o.steps ?? 300;
  const T = 48;
  const B = 8;
  using tr = new LlamaTrainer(engine, config, {
    seq: T,
    batch: B,
    lr: 3e-3,
    warmupSteps: 20,
    totalSteps: steps,
    seed: o.seed ?? 1,
    weightDecay: 0.01,
  });
  const rng = new Rng((o.seed ?? 1) + 100);
  let finalLoss = NaN;
  for (let s = 0; s < steps; s++) {
    const batch = Array.from({ length: B }, () => {
      const at = rng.int(ids.length - T - 1);
      return ids.slice(at, at + T + 1);
    });
    finalLoss = (await tr.trainStep([batch])).loss;
  }
  tr.exportGguf(path, vocab, { name: "zorvak-base", type: o.type ?? "F32" });
  return { path, vocab, config, finalLoss };
}
