// Hugging Face tokenizer files ↔ dajian's byte-level BPE vocabulary (the GGUF tokenizer.ggml.* keys), or an SPM
// vocabulary (spm.ts) when the BPE model has byte_fallback (Llama 2, Mistral).
// tokenizer.json holds vocab, merges, added tokens and the pre-tokenizer regex; the regex is matched against the
// patterns of the llama.cpp pre-tokenizers dajian implements (GPT-2, Llama-3 "llama-bpe", Qwen2), because llama.cpp
// selects its split by name, not by regex. tokenizer_config.json holds the chat template and bos/eos; PAD tokens fill
// the gap to config.json's vocab_size as llama.cpp's converter does.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DajianError } from "../core/errors.js";
import { metaString, type GgufFile, type GgufWriter } from "../gguf/index.js";
import { canonicalPre, readVocab, TokenType, writeVocabMetadata, type BpeVocab } from "../tokenizer/index.js";
import { isSpm, readSpmVocab, spmFromTokenizerJson, spmTokenizerJson, writeSpmMetadata, type SpmVocab } from "./spm.js";

/** A checkpoint's vocabulary: byte-level BPE ("gpt2") or SentencePiece-style ("llama"). */
export type HfVocab = BpeVocab | SpmVocab;

/** A GGUF's vocabulary, by tokenizer.ggml.model ("llama" → SPM, otherwise byte-level BPE). */
export function readGgufVocab(file: Pick<GgufFile, "metadata">): HfVocab {
  return metaString(file, "tokenizer.ggml.model") === "llama" ? readSpmVocab(file) : readVocab(file);
}

export function writeHfVocabMetadata(w: GgufWriter, v: HfVocab): void {
  if (isSpm(v)) writeSpmMetadata(w, v);
  else writeVocabMetadata(w, v);
}

const CONTRACTIONS = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
/** The regexes HF tokenizers store for each pre-tokenizer (as written in tokenizer.json). */
const HF_REGEX: Record<string, string> = {
  "gpt-2": "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
  "llama-bpe": `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`,
  qwen2: `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`,
};

function unsupportedTokenizer(what: string): DajianError {
  return new DajianError(
    "unsupported",
    `tokenizer.json: ${what}`,
    "dajian converts byte-level BPE tokenizers (GPT-2, Llama-3, Qwen2) and SentencePiece-style BPE with byte_fallback (Llama 2, Mistral)",
  );
}

function readJson(path: string, what: string): any {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new DajianError("corrupt", `${what} is not valid JSON`, `fix or re-save ${what}`, { cause: err });
  }
}

/** Which llama.cpp pre-tokenizer a tokenizer.json pre_tokenizer corresponds to. */
export function detectPreTokenizer(pre: any): string {
  const parts: any[] = pre?.type === "Sequence" ? (pre.pretokenizers ?? []) : pre ? [pre] : [];
  const split = parts.find((p) => p?.type === "Split");
  const byteLevel = parts.find((p) => p?.type === "ByteLevel");
  if (!byteLevel) throw unsupportedTokenizer(`pre_tokenizer ${JSON.stringify(pre?.type ?? null)} is not byte-level`);
  if (byteLevel.add_prefix_space) throw unsupportedTokenizer("ByteLevel add_prefix_space is not supported");
  if (!split) {
    if (byteLevel.use_regex === false) throw unsupportedTokenizer("ByteLevel without a split regex");
    return "gpt-2";
  }
  const regex = split.pattern?.Regex;
  for (const [name, re] of Object.entries(HF_REGEX)) if (regex === re) return name;
  throw unsupportedTokenizer(
    `pre-tokenizer regex ${JSON.stringify(String(regex)).slice(0, 80)}… is not one dajian knows`,
  );
}

const tokenText = (t: unknown): string | undefined =>
  typeof t === "string" ? t : t && typeof (t as any).content === "string" ? (t as any).content : undefined;

export interface ReadHfTokenizerOptions {
  /** config.json's vocab_size: ids beyond the tokenizer are filled with [PAD<i>] (UNUSED). */
  vocabSize?: number;
}

/** Read tokenizer.json (+ tokenizer_config.json, generation_config.json when present) from a checkpoint folder. */
export function readHfTokenizer(dir: string, opts: ReadHfTokenizerOptions = {}): HfVocab {
  const file = join(dir, "tokenizer.json");
  if (!existsSync(file)) {
    const spm = existsSync(join(dir, "tokenizer.model"));
    throw new DajianError(
      spm ? "unsupported" : "not_found",
      spm ? `${dir} has only a SentencePiece tokenizer.model` : `no tokenizer.json in ${dir}`,
      spm
        ? "save it as tokenizer.json first (in Python: AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)), or copy tokenizer.json from the model's repository"
        : "copy the model's tokenizer.json into the folder",
    );
  }
  const tj = readJson(file, "tokenizer.json");
  const model = tj.model ?? {};
  if (model.type !== "BPE")
    throw unsupportedTokenizer(
      model.type === "Unigram"
        ? "SentencePiece Unigram models (T5, XLM-R style) are not supported"
        : `model type ${JSON.stringify(model.type ?? null)} is not BPE`,
    );
  const vocabObj = model.vocab;
  if (!vocabObj || typeof vocabObj !== "object") throw unsupportedTokenizer("model.vocab is missing");
  const cfgPath = join(dir, "tokenizer_config.json");
  const cfg = existsSync(cfgPath) ? readJson(cfgPath, "tokenizer_config.json") : {};
  const genPath = join(dir, "generation_config.json");
  const gen = existsSync(genPath) ? readJson(genPath, "generation_config.json") : {};
  if (model.byte_fallback) {
    const spm = spmFromTokenizerJson(tj, opts.vocabSize);
    // llama.cpp's converter lets tokenizer_config's add_prefix_space override the tokenizer's own.
    if (typeof cfg.add_prefix_space === "boolean") spm.addSpacePrefix = cfg.add_prefix_space;
    const unk = typeof model.unk_token === "string" ? model.unk_token : undefined;
    const { idOf, ...s } = specials(spm.tokens, tj, cfg, gen);
    return { kind: "spm", pre: "default", ...spm, ...s, unkId: s.unkId ?? idOf(unk) };
  }
  const pre = detectPreTokenizer(tj.pre_tokenizer);
  const byId = new Map<number, { text: string; type: TokenType }>();
  const put = (id: unknown, text: string, type: TokenType): void => {
    if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) > 10_000_000)
      throw new DajianError("corrupt", `tokenizer.json: token ${text} has id ${String(id)}`, "fix tokenizer.json");
    byId.set(id as number, { text, type });
  };
  for (const [text, id] of Object.entries(vocabObj)) put(id, text, TokenType.NORMAL);
  for (const a of tj.added_tokens ?? []) {
    if (typeof a?.content !== "string") continue;
    put(a.id, a.content, a.special ? TokenType.CONTROL : TokenType.USER_DEFINED);
  }
  const maxId = Math.max(-1, ...byId.keys());
  const n = Math.max(maxId + 1, opts.vocabSize ?? 0);
  const tokens: string[] = new Array(n);
  const tokenTypes: TokenType[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const t = byId.get(i);
    tokens[i] = t ? t.text : `[PAD${i}]`;
    tokenTypes[i] = t ? t.type : TokenType.UNUSED;
  }
  const merges: string[] = (model.merges ?? []).map((m: unknown) => {
    if (typeof m === "string") return m;
    if (Array.isArray(m) && m.length === 2) return `${m[0]} ${m[1]}`;
    throw new DajianError("corrupt", "tokenizer.json: a merge is neither 'a b' nor ['a', 'b']", "fix tokenizer.json");
  });

  const { idOf, ...s } = specials(tokens, tj, cfg, gen);
  return { pre: canonicalPre(pre), tokens, tokenTypes, merges, ...s, unkId: s.unkId ?? idOf(model.unk_token) };
}

/** Special-token ids, BOS/EOS behaviour and the chat template (tokenizer_config.json, generation_config.json). */
function specials(tokens: string[], tj: any, cfg: any, gen: any) {
  const n = tokens.length;
  const index = new Map(tokens.map((t, i) => [t, i] as const));
  const idOf = (t: unknown): number | undefined => {
    const s = tokenText(t);
    return s === undefined ? undefined : index.get(s);
  };
  const eosId = idOf(cfg.eos_token) ?? (typeof gen.eos_token_id === "number" ? gen.eos_token_id : undefined);
  const genEos: number[] = Array.isArray(gen.eos_token_id) ? gen.eos_token_id : [];
  const eotId = genEos.find((id) => id !== eosId && Number.isInteger(id) && id >= 0 && id < n);
  const bosId = idOf(cfg.bos_token) ?? (typeof gen.bos_token_id === "number" ? gen.bos_token_id : undefined);
  // Llama-3 style checkpoints add BOS through a TemplateProcessing post-processor instead of add_bos_token.
  const single = tj.post_processor?.single ?? tj.post_processor?.processors?.find((p: any) => p.single)?.single;
  const templBos = Array.isArray(single) && single[0]?.SpecialToken !== undefined;
  let chatTemplate: string | undefined = cfg.chat_template;
  if (Array.isArray(chatTemplate))
    chatTemplate = (chatTemplate as Array<{ name: string; template: string }>).find(
      (t) => t.name === "default",
    )?.template;
  return {
    idOf,
    bosId,
    eosId,
    eotId,
    padId: idOf(cfg.pad_token),
    unkId: idOf(cfg.unk_token),
    addBos: typeof cfg.add_bos_token === "boolean" ? cfg.add_bos_token : templBos,
    addEos: cfg.add_eos_token === true,
    chatTemplate: typeof chatTemplate === "string" ? chatTemplate : undefined,
  };
}

/** The tokenizer.json document for a vocabulary (HF `tokenizers` format, loadable by transformers). */
export function hfTokenizerJson(v: HfVocab): Record<string, unknown> {
  if (isSpm(v)) return spmTokenizerJson(v);
  const pre = canonicalPre(v.pre);
  const vocab: Record<string, number> = {};
  const added: unknown[] = [];
  v.tokens.forEach((t, id) => {
    const type = v.tokenTypes[id];
    if (type === TokenType.CONTROL || type === TokenType.USER_DEFINED)
      added.push({
        id,
        content: t,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: type === TokenType.CONTROL,
      });
    else if (type !== TokenType.UNUSED) vocab[t] = id;
  });
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: pre === "gpt-2" };
  const bos = v.addBos && v.bosId !== undefined ? v.tokens[v.bosId] : undefined;
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer:
      pre === "gpt-2"
        ? byteLevel
        : {
            type: "Sequence",
            pretokenizers: [
              { type: "Split", pattern: { Regex: HF_REGEX[pre] }, behavior: "Isolated", invert: false },
              byteLevel,
            ],
          },
    post_processor: bos
      ? {
          type: "TemplateProcessing",
          single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
          pair: [
            { SpecialToken: { id: bos, type_id: 0 } },
            { Sequence: { id: "A", type_id: 0 } },
            { SpecialToken: { id: bos, type_id: 1 } },
            { Sequence: { id: "B", type_id: 1 } },
          ],
          special_tokens: { [bos]: { id: bos, ids: [v.bosId], tokens: [bos] } },
        }
      : { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: pre === "llama-bpe",
      vocab,
      merges: v.merges,
    },
  };
}

/** tokenizer_config.json: special tokens, BOS/EOS behaviour and the chat template. */
export function hfTokenizerConfig(v: HfVocab): Record<string, unknown> {
  const tok = (id?: number) => (id === undefined ? null : v.tokens[id]);
  const decoder: Record<string, unknown> = {};
  v.tokens.forEach((t, id) => {
    const type = v.tokenTypes[id];
    if (type === TokenType.CONTROL || type === TokenType.USER_DEFINED || type === TokenType.UNKNOWN)
      decoder[String(id)] = {
        content: t,
        lstrip: false,
        normalized: false,
        rstrip: false,
        single_word: false,
        special: type !== TokenType.USER_DEFINED,
      };
  });
  return {
    add_bos_token: v.addBos,
    add_eos_token: v.addEos,
    added_tokens_decoder: decoder,
    bos_token: tok(v.bosId),
    eos_token: tok(v.eosId),
    pad_token: tok(v.padId),
    unk_token: tok(v.unkId),
    clean_up_tokenization_spaces: false,
    model_max_length: 131072,
    tokenizer_class: "PreTrainedTokenizerFast",
    ...(v.chatTemplate ? { chat_template: v.chatTemplate } : {}),
  };
}
