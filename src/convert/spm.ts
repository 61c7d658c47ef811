// SentencePiece-style vocabularies (Llama 2, TinyLlama, Mistral 7B): a tokenizer.json BPE with byte_fallback and the
// "▁" metaspace ↔ llama.cpp's SPM vocabulary (tokenizer.ggml.model = "llama"). llama.cpp's SPM tokenizer merges the
// adjacent pair whose concatenation is the highest-scoring token, so scores stand in for merge ranks: a token made by
// the merge of rank r gets score -r. The reverse derives merges from scores, as transformers' slow→fast conversion
// does (every split of a piece into two known pieces, ordered by the merged piece's score).

import { DajianError } from "../core/errors.js";
import {
  GgufValueType,
  metaBool,
  metaNumber,
  metaNumbers,
  metaString,
  metaStrings,
  type GgufFile,
  type GgufWriter,
} from "../gguf/index.js";
import { TokenType, type BpeVocab } from "../tokenizer/index.js";

export const SPACE = "\u2581";
const BYTE_TOKEN = /^<0x[0-9A-Fa-f]{2}>$/;
/** The score llama.cpp's converter gives added and padding tokens (never merged: matched before tokenization). */
const ADDED_SCORE = -1000;

export interface SpmVocab {
  kind: "spm";
  /** Always "default": llama.cpp's SPM tokenizer has no pre-tokenizer split. */
  pre: string;
  tokens: string[];
  scores: number[];
  tokenTypes: TokenType[];
  bosId?: number;
  eosId?: number;
  eotId?: number;
  padId?: number;
  unkId?: number;
  addBos: boolean;
  addEos: boolean;
  /** SentencePiece's add_dummy_prefix: "▁" before the text (and after special tokens). */
  addSpacePrefix: boolean;
  chatTemplate?: string;
}

export function isSpm(v: BpeVocab | SpmVocab): v is SpmVocab {
  return "kind" in v && v.kind === "spm";
}

function unsupported(what: string): DajianError {
  return new DajianError(
    "unsupported",
    `tokenizer.json: ${what}`,
    "dajian converts byte-level BPE (GPT-2, Llama-3, Qwen2) and SentencePiece-style BPE with byte_fallback (Llama 2, Mistral); other tokenizers are not supported",
  );
}

const list = (x: any): any[] =>
  x?.type === "Sequence" ? (x.normalizers ?? x.pretokenizers ?? x.decoders ?? []) : x ? [x] : [];

/** add_dummy_prefix from the normalizer (legacy Llama: Prepend + Replace) or the Metaspace pre-tokenizer. */
export function spmSpacePrefix(normalizer: any, preTokenizer: any): boolean {
  let replace = false;
  let prepend = false;
  for (const n of list(normalizer)) {
    if (n?.type === "Prepend" && n.prepend === SPACE) prepend = true;
    else if (n?.type === "Replace" && n.pattern?.String === " " && n.content === SPACE) replace = true;
    else throw unsupported(`normalizer ${JSON.stringify(n?.type ?? null)} is not supported with byte_fallback BPE`);
  }
  const pres = list(preTokenizer);
  if (pres.length > 1 || (pres.length === 1 && pres[0]?.type !== "Metaspace"))
    throw unsupported(`pre_tokenizer ${JSON.stringify(preTokenizer?.type)} is not supported with byte_fallback BPE`);
  const meta = pres[0];
  if (meta) {
    if (meta.replacement !== SPACE) throw unsupported(`Metaspace replacement ${JSON.stringify(meta.replacement)}`);
    if (meta.split !== false)
      throw unsupported("Metaspace with split: true splits words apart, which llama.cpp's SPM tokenizer cannot do");
    if (replace || prepend) throw unsupported("both a ▁ normalizer and a Metaspace pre-tokenizer");
    return meta.prepend_scheme !== undefined ? meta.prepend_scheme !== "never" : meta.add_prefix_space !== false;
  }
  if (!replace) throw unsupported("byte_fallback BPE without the ▁ (U+2581) space replacement");
  return prepend;
}

/** Tokens, types and scores of a byte_fallback tokenizer.json (ids beyond it padded to vocabSize). */
export function spmFromTokenizerJson(
  tj: any,
  vocabSize = 0,
): Pick<SpmVocab, "tokens" | "scores" | "tokenTypes" | "addSpacePrefix"> {
  const model = tj.model;
  const addSpacePrefix = spmSpacePrefix(tj.normalizer, tj.pre_tokenizer);
  const byId = new Map<number, { text: string; type: TokenType }>();
  const put = (id: unknown, text: string, type: TokenType): void => {
    if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) > 10_000_000)
      throw new DajianError("corrupt", `tokenizer.json: token ${text} has id ${String(id)}`, "fix tokenizer.json");
    byId.set(id as number, { text, type });
  };
  for (const [text, id] of Object.entries(model.vocab ?? {}))
    put(
      id,
      text,
      text === model.unk_token ? TokenType.UNKNOWN : BYTE_TOKEN.test(text) ? TokenType.BYTE : TokenType.NORMAL,
    );
  for (const a of tj.added_tokens ?? []) {
    if (typeof a?.content !== "string") continue;
    const known = byId.get(a.id);
    if (known?.type === TokenType.UNKNOWN && known.text === a.content) continue;
    // llama.cpp's converter pre-normalizes "▁" in user-defined tokens back to spaces.
    if (a.special) put(a.id, a.content, TokenType.CONTROL);
    else put(a.id, a.content.replaceAll(SPACE, " "), TokenType.USER_DEFINED);
  }
  const rankOf = new Map<string, number>();
  (model.merges ?? []).forEach((m: unknown, rank: number) => {
    const pair = typeof m === "string" ? m.split(" ") : m;
    if (!Array.isArray(pair) || pair.length !== 2)
      throw new DajianError("corrupt", "tokenizer.json: a merge is neither 'a b' nor ['a', 'b']", "fix tokenizer.json");
    const merged = `${pair[0]}${pair[1]}`;
    if (!rankOf.has(merged)) rankOf.set(merged, rank);
  });
  const nMerges = rankOf.size ? (model.merges as unknown[]).length : 0;
  let n = vocabSize;
  for (const id of byId.keys()) n = Math.max(n, id + 1);
  const tokens: string[] = new Array(n);
  const scores: number[] = new Array(n);
  const tokenTypes: TokenType[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const t = byId.get(i);
    tokens[i] = t ? t.text : `[PAD${i}]`;
    tokenTypes[i] = t ? t.type : TokenType.UNUSED;
    scores[i] = scoreOf(t, rankOf, nMerges + i);
  }
  return { tokens, scores, tokenTypes, addSpacePrefix };
}

/** A merged piece scores -rank of its first merge; control, unknown and byte tokens 0 (as in SentencePiece). */
function scoreOf(t: { text: string; type: TokenType } | undefined, rankOf: Map<string, number>, below: number): number {
  if (!t || t.type === TokenType.USER_DEFINED) return ADDED_SCORE;
  if (t.type !== TokenType.NORMAL) return 0;
  const rank = rankOf.get(t.text);
  // Pieces no merge makes (single characters) are never merge candidates; keep them below every merge.
  return rank === undefined ? -below : 0 - rank;
}

/** Write the SPM vocabulary's tokenizer.* keys, as llama.cpp's converter does for "llama" vocabularies. */
export function writeSpmMetadata(w: GgufWriter, v: SpmVocab): void {
  w.str("tokenizer.ggml.model", "llama");
  w.str("tokenizer.ggml.pre", "default");
  w.array("tokenizer.ggml.tokens", GgufValueType.STRING, v.tokens);
  w.array("tokenizer.ggml.scores", GgufValueType.FLOAT32, v.scores);
  w.array("tokenizer.ggml.token_type", GgufValueType.INT32, v.tokenTypes);
  const ids = { bos: v.bosId, eos: v.eosId, eot: v.eotId, unknown: v.unkId, padding: v.padId };
  for (const [k, id] of Object.entries(ids)) if (id !== undefined) w.u32(`tokenizer.ggml.${k}_token_id`, id);
  const flags = { add_bos_token: v.addBos, add_eos_token: v.addEos, add_space_prefix: v.addSpacePrefix };
  for (const [k, on] of Object.entries(flags)) w.bool(`tokenizer.ggml.${k}`, on);
  if (v.chatTemplate) w.str("tokenizer.chat_template", v.chatTemplate);
}

/** Read a "llama" (SPM) vocabulary from GGUF metadata, with llama.cpp's defaults for absent keys. */
export function readSpmVocab(file: Pick<GgufFile, "metadata">): SpmVocab {
  const tokens = metaStrings(file, "tokenizer.ggml.tokens");
  if (!tokens)
    throw new DajianError("corrupt", "GGUF vocabulary lacks tokens", "re-export the model with its tokenizer");
  const scores = metaNumbers(file, "tokenizer.ggml.scores") ?? tokens.map(() => 0);
  const types = metaNumbers(file, "tokenizer.ggml.token_type") ?? tokens.map(() => TokenType.NORMAL);
  if (scores.length < tokens.length || types.length < tokens.length)
    throw new DajianError(
      "corrupt",
      "fewer scores or token types than tokens",
      "re-export the model with its tokenizer",
    );
  const id = (k: string, dflt?: number): number | undefined => {
    const n = metaNumber(file, `tokenizer.ggml.${k}`) ?? dflt;
    return n !== undefined && n >= 0 && n < tokens.length ? n : undefined;
  };
  return {
    kind: "spm",
    pre: "default",
    tokens,
    scores: scores.slice(0, tokens.length),
    tokenTypes: types.slice(0, tokens.length),
    bosId: id("bos_token_id", 1),
    eosId: id("eos_token_id", 2),
    eotId: id("eot_token_id"),
    padId: id("padding_token_id"),
    unkId: id("unknown_token_id", 0),
    addBos: metaBool(file, "tokenizer.ggml.add_bos_token") ?? true,
    addEos: metaBool(file, "tokenizer.ggml.add_eos_token") ?? false,
    addSpacePrefix: metaBool(file, "tokenizer.ggml.add_space_prefix") ?? true,
    chatTemplate: metaString(file, "tokenizer.chat_template"),
  };
}

/** Merges implied by an SPM vocabulary: every split of a normal piece into two pieces, by the piece's score. */
export function spmMerges(v: Pick<SpmVocab, "tokens" | "scores" | "tokenTypes">): string[] {
  const ids = new Map<string, number>();
  v.tokens.forEach((t, i) => {
    if (v.tokenTypes[i] === TokenType.NORMAL && !ids.has(t)) ids.set(t, i);
  });
  const found: Array<{ merge: string; score: number; id: number; left: number }> = [];
  for (const [t, id] of ids) {
    const cps = Array.from(t);
    for (let k = 1; k < cps.length; k++) {
      const l = cps.slice(0, k).join("");
      const r = cps.slice(k).join("");
      const li = ids.get(l);
      // "a b" merges cannot hold a piece with a literal space; such pieces stay unmerged.
      if (li !== undefined && ids.has(r) && !t.includes(" "))
        found.push({ merge: `${l} ${r}`, score: v.scores[id], id, left: li });
    }
  }
  found.sort((a, b) => b.score - a.score || a.id - b.id || a.left - b.left);
  return found.map((f) => f.merge);
}

/** The tokenizer.json of an SPM vocabulary, in the layout transformers writes for Llama 2 / Mistral (legacy). */
export function spmTokenizerJson(v: SpmVocab): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  const added: unknown[] = [];
  v.tokens.forEach((t, id) => {
    const type = v.tokenTypes[id];
    if (type === TokenType.UNUSED) return;
    const special = type === TokenType.CONTROL || type === TokenType.UNKNOWN;
    if (special || type === TokenType.USER_DEFINED)
      added.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
    if (type !== TokenType.USER_DEFINED) vocab[t] = id;
  });
  const bos = v.addBos && v.bosId !== undefined ? v.tokens[v.bosId] : undefined;
  const eos = v.addEos && v.eosId !== undefined ? v.tokens[v.eosId] : undefined;
  const special = (tok: string | undefined, typeId: number) =>
    tok ? [{ SpecialToken: { id: tok, type_id: typeId } }] : [];
  const seq = (id: string, typeId: number) => ({ Sequence: { id, type_id: typeId } });
  const specialTokens: Record<string, unknown> = {};
  for (const [tok, id] of [
    [bos, v.bosId],
    [eos, v.eosId],
  ] as const)
    if (tok) specialTokens[tok] = { id: tok, ids: [id], tokens: [tok] };
  const replace = { type: "Replace", pattern: { String: " " }, content: SPACE };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: v.addSpacePrefix
      ? { type: "Sequence", normalizers: [{ type: "Prepend", prepend: SPACE }, replace] }
      : { type: "Sequence", normalizers: [replace] },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [...special(bos, 0), seq("A", 0), ...special(eos, 0)],
      pair: [...special(bos, 0), seq("A", 0), ...special(eos, 0), ...special(bos, 1), seq("B", 1), ...special(eos, 1)],
      special_tokens: specialTokens,
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: SPACE }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        ...(v.addSpacePrefix ? [{ type: "Strip", content: " ", start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: v.unkId !== undefined ? v.tokens[v.unkId] : null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: spmMerges(v),
    },
  };
}
