// Byte-level BPE encoder/decoder over a GGUF vocabulary, following llama.cpp's algorithm: split out special tokens,
// pre-tokenize, map bytes to vocabulary characters, merge the lowest-ranked adjacent pair (leftmost first) until none
// applies, then fall back to single-byte tokens for any piece missing from the vocabulary.

import { DajianError } from "../core/errors.js";
import { byteChar, textToVocabString, vocabStringToBytes } from "./bytes.js";
import { canonicalPre, preTokenize } from "./pretokenize.js";
import { TokenType, type BpeVocab } from "./vocab.js";

export interface EncodeOptions {
  /** Add BOS/EOS as the vocabulary asks (tokenizer.ggml.add_bos_token …). Default false. */
  addSpecial?: boolean;
  /** Recognise control tokens such as <|im_start|> in the text. Default false (user-defined tokens always are). */
  parseSpecial?: boolean;
}

export class BpeTokenizer {
  readonly vocab: BpeVocab;
  readonly pre: string;
  private readonly ids = new Map<string, number>();
  private readonly ranks = new Map<string, number>();
  private readonly byteIds: number[] = new Array(256);
  private readonly specials: Array<{ text: string; id: number; control: boolean }>;
  private readonly cache = new Map<string, number[]>();
  private readonly ignoreMerges: boolean;

  constructor(vocab: BpeVocab) {
    this.vocab = vocab;
    this.pre = canonicalPre(vocab.pre);
    this.ignoreMerges = this.pre === "llama-bpe"; // llama.cpp sets ignore_merges for llama3 only
    vocab.tokens.forEach((t, i) => this.ids.set(t, i));
    vocab.merges.forEach((m, i) => {
      if (!this.ranks.has(m)) this.ranks.set(m, i);
    });
    for (let b = 0; b < 256; b++) {
      const id = this.ids.get(byteChar(b));
      if (id === undefined) {
        throw new DajianError(
          "unsupported",
          `vocabulary has no token for byte 0x${b.toString(16)}`,
          "byte-level BPE vocabularies must contain all 256 byte tokens",
        );
      }
      this.byteIds[b] = id;
    }
    this.specials = vocab.tokens
      .map((text, id) => ({ text, id, type: vocab.tokenTypes[id] }))
      .filter((t) => t.type === TokenType.CONTROL || t.type === TokenType.USER_DEFINED)
      .map((t) => ({ text: t.text, id: t.id, control: t.type === TokenType.CONTROL }))
      .filter((t) => t.text.length > 0)
      .sort((a, b) => b.text.length - a.text.length);
  }

  get size(): number {
    return this.vocab.tokens.length;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const out: number[] = [];
    if (opts.addSpecial && this.vocab.addBos && this.vocab.bosId !== undefined) out.push(this.vocab.bosId);
    for (const frag of this.splitSpecial(text, opts.parseSpecial ?? false)) {
      if (typeof frag === "number") out.push(frag);
      else for (const word of preTokenize(frag, this.pre)) this.encodeWord(word, out);
    }
    if (opts.addSpecial && this.vocab.addEos && this.vocab.eosId !== undefined) out.push(this.vocab.eosId);
    return out;
  }

  /** Split text around special tokens, longest first (as llama.cpp's tokenizer_st_partition). */
  private splitSpecial(text: string, parseSpecial: boolean): Array<string | number> {
    let frags: Array<string | number> = [text];
    for (const sp of this.specials) {
      if (sp.control && !parseSpecial) continue;
      const next: Array<string | number> = [];
      for (const f of frags) {
        if (typeof f === "number" || !f.includes(sp.text)) {
          next.push(f);
          continue;
        }
        const parts = f.split(sp.text);
        parts.forEach((p, i) => {
          if (i > 0) next.push(sp.id);
          if (p) next.push(p);
        });
      }
      frags = next;
    }
    return frags;
  }

  private encodeWord(word: string, out: number[]): void {
    const cached = this.cache.get(word);
    if (cached) {
      for (const id of cached) out.push(id);
      return;
    }
    const ids: number[] = [];
    const mapped = textToVocabString(word);
    const whole = this.ignoreMerges ? this.ids.get(mapped) : undefined;
    if (whole !== undefined) {
      ids.push(whole);
    } else {
      for (const sym of this.merge(mapped)) {
        const id = this.ids.get(sym);
        if (id !== undefined) ids.push(id);
        else for (const b of vocabStringToBytes(sym) ?? []) ids.push(this.byteIds[b]);
      }
    }
    if (this.cache.size > 50_000) this.cache.clear();
    this.cache.set(word, ids);
    for (const id of ids) out.push(id);
  }

  /** Apply merges to one pre-token (in vocabulary characters). */
  private merge(mapped: string): string[] {
    const syms = Array.from(mapped);
    if (syms.length < 2) return syms;
    // Rank of each adjacent pair; recomputed locally after each merge.
    const rank = (i: number): number => this.ranks.get(`${syms[i]} ${syms[i + 1]}`) ?? Infinity;
    const pr: number[] = [];
    for (let i = 0; i < syms.length - 1; i++) pr.push(rank(i));
    for (;;) {
      let best = Infinity;
      let at = -1;
      for (let i = 0; i < pr.length; i++) {
        if (pr[i] < best) {
          best = pr[i];
          at = i;
        }
      }
      if (at < 0) break;
      syms.splice(at, 2, syms[at] + syms[at + 1]);
      pr.splice(at, 1);
      if (at < pr.length) pr[at] = rank(at);
      if (at > 0) pr[at - 1] = rank(at - 1);
    }
    return syms;
  }

  /** Bytes of one token (special tokens give their text). */
  tokenBytes(id: number): Uint8Array {
    const t = this.vocab.tokens[id];
    if (t === undefined)
      throw new DajianError("invalid_input", `token id ${id} is out of range`, "use ids below the vocabulary size");
    const type = this.vocab.tokenTypes[id];
    if (type === TokenType.CONTROL || type === TokenType.USER_DEFINED) return Buffer.from(t, "utf8");
    return vocabStringToBytes(t) ?? Buffer.from(t, "utf8");
  }

  /** Decode ids to text; control tokens are dropped unless `special` is set. */
  decode(ids: readonly number[], opts: { special?: boolean } = {}): string {
    const parts: Uint8Array[] = [];
    for (const id of ids) {
      if (!opts.special && this.vocab.tokenTypes[id] === TokenType.CONTROL) continue;
      parts.push(this.tokenBytes(id));
    }
    return Buffer.concat(parts).toString("utf8");
  }
}
