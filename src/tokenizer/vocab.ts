// A byte-level BPE vocabulary as llama.cpp stores it in GGUF (tokenizer.ggml.model = "gpt2").

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

/** llama.cpp's token types (llama_token_type). */
export enum TokenType {
  UNDEFINED = 0,
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

export interface BpeVocab {
  /** Pre-tokenizer name as llama.cpp knows it (tokenizer.ggml.pre). */
  pre: string;
  /** Token strings in GPT-2 byte-character form (special tokens in plain text). */
  tokens: string[];
  tokenTypes: TokenType[];
  /** Merges "left right", rank = index. */
  merges: string[];
  bosId?: number;
  eosId?: number;
  eotId?: number;
  padId?: number;
  unkId?: number;
  addBos: boolean;
  addEos: boolean;
  chatTemplate?: string;
}

/** Write the vocabulary's tokenizer.* keys. */
export function writeVocabMetadata(w: GgufWriter, v: BpeVocab): void {
  w.str("tokenizer.ggml.model", "gpt2");
  w.str("tokenizer.ggml.pre", v.pre);
  w.array("tokenizer.ggml.tokens", GgufValueType.STRING, v.tokens);
  w.array("tokenizer.ggml.token_type", GgufValueType.INT32, v.tokenTypes);
  w.array("tokenizer.ggml.merges", GgufValueType.STRING, v.merges);
  if (v.bosId !== undefined) w.u32("tokenizer.ggml.bos_token_id", v.bosId);
  if (v.eosId !== undefined) w.u32("tokenizer.ggml.eos_token_id", v.eosId);
  if (v.eotId !== undefined) w.u32("tokenizer.ggml.eot_token_id", v.eotId);
  if (v.padId !== undefined) w.u32("tokenizer.ggml.padding_token_id", v.padId);
  if (v.unkId !== undefined) w.u32("tokenizer.ggml.unknown_token_id", v.unkId);
  w.bool("tokenizer.ggml.add_bos_token", v.addBos);
  w.bool("tokenizer.ggml.add_eos_token", v.addEos);
  if (v.chatTemplate) w.str("tokenizer.chat_template", v.chatTemplate);
}

/** Read a byte-level BPE vocabulary from GGUF metadata. */
export function readVocab(file: Pick<GgufFile, "metadata">): BpeVocab {
  const model = metaString(file, "tokenizer.ggml.model");
  if (model !== "gpt2") {
    throw new DajianError(
      "unsupported",
      `tokenizer model "${model ?? "(none)"}" is not byte-level BPE`,
      'dajian reads GGUF vocabularies with tokenizer.ggml.model = "gpt2"',
    );
  }
  const tokens = metaStrings(file, "tokenizer.ggml.tokens");
  const merges = metaStrings(file, "tokenizer.ggml.merges");
  if (!tokens || !merges) {
    throw new DajianError(
      "corrupt",
      "GGUF vocabulary lacks tokens or merges",
      "re-export the model with its tokenizer",
    );
  }
  const types = metaNumbers(file, "tokenizer.ggml.token_type") ?? tokens.map(() => TokenType.NORMAL);
  if (types.length < tokens.length) {
    throw new DajianError("corrupt", "fewer token types than tokens", "re-export the model with its tokenizer");
  }
  const id = (k: string): number | undefined => {
    const n = metaNumber(file, `tokenizer.ggml.${k}`);
    return n !== undefined && n >= 0 && n < tokens.length ? n : undefined;
  };
  return {
    pre: metaString(file, "tokenizer.ggml.pre") ?? "default",
    tokens,
    tokenTypes: types.slice(0, tokens.length),
    merges,
    bosId: id("bos_token_id"),
    eosId: id("eos_token_id"),
    eotId: id("eot_token_id"),
    padId: id("padding_token_id"),
    unkId: id("unknown_token_id"),
    addBos: metaBool(file, "tokenizer.ggml.add_bos_token") ?? false,
    addEos: metaBool(file, "tokenizer.ggml.add_eos_token") ?? false,
    chatTemplate: metaString(file, "tokenizer.chat_template"),
  };
}

/** ChatML, the template dajian gives its own models (understood by node-llama-cpp and llama.cpp). */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
