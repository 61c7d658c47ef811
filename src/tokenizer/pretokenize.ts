// Pre-tokenizers: split text into words before BPE, exactly as llama.cpp does for the `tokenizer.ggml.pre` names
// dajian supports. BPE merges never cross these boundaries, so they must match llama.cpp's split for identical ids.

import { DajianError } from "../core/errors.js";

const CONTRACTIONS_CI = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";

/** The pattern llama.cpp uses for each pre-tokenizer name (see llama-vocab.cpp). */
const PATTERNS: Record<string, string> = {
  "gpt-2": "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
  "llama-bpe": `${CONTRACTIONS_CI}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`,
  qwen2: `${CONTRACTIONS_CI}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`,
};
const ALIASES: Record<string, string> = { llama3: "llama-bpe", "llama-v3": "llama-bpe", "deepseek-r1-qwen": "qwen2" };

export const SUPPORTED_PRE = Object.keys(PATTERNS);

export function canonicalPre(name: string): string {
  const n = ALIASES[name] ?? name;
  if (!PATTERNS[n]) {
    throw new DajianError(
      "unsupported",
      `pre-tokenizer "${name}" is not supported by dajian`,
      `use a vocabulary with tokenizer.ggml.pre one of: ${SUPPORTED_PRE.join(", ")}`,
    );
  }
  return n;
}

const cache = new Map<string, RegExp>();

/** Split `text` into pre-tokens; pieces the pattern does not match are kept as pieces of their own (as llama.cpp). */
export function preTokenize(text: string, pre: string): string[] {
  const name = canonicalPre(pre);
  let re = cache.get(name);
  if (!re) {
    re = new RegExp(PATTERNS[name], "gu");
    cache.set(name, re);
  }
  const out: string[] = [];
  let last = 0;
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(m[0]);
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}
