import { describe, expect, it } from "vitest";
import { DajianError } from "../core/errors.js";
import { GgufWriter, parseGguf } from "../gguf/index.js";
import { byteChar, textToVocabString, vocabStringToBytes } from "./bytes.js";
import { preTokenize as pre } from "./pretokenize.js";
import { BpeTokenizer } from "./bpe.js";
import { preTokenize } from "./pretokenize.js";
import { trainBpe } from "./train.js";
import { TokenType, readVocab, writeVocabMetadata } from "./vocab.js";

describe("byte-level mapping", () => {
  it("maps all 256 bytes to distinct printable characters and back", () => {
    const chars = new Set(Array.from({ length: 256 }, (_, b) => byteChar(b)));
    expect(chars.size).toBe(256);
    expect(byteChar(0x20)).toBe("Ġ");
    expect(byteChar(0x0a)).toBe("Ċ");
    expect(byteChar(0x41)).toBe("A");
    const s = textToVocabString("a 中\n😀");
    expect(Buffer.from(vocabStringToBytes(s) as Uint8Array).toString("utf8")).toBe("a 中\n😀");
    expect(vocabStringToBytes("\u4e2d")).toBeNull();
  });
});

describe("pre-tokenizers", () => {
  it("split like the llama.cpp regexes", () => {
    expect(preTokenize("Hello world 12345 don't", "qwen2")).toEqual([
      "Hello",
      " world",
      " ",
      "1",
      "2",
      "3",
      "4",
      "5",
      " don",
      "'t",
    ]);
    expect(preTokenize("12345", "llama-bpe")).toEqual(["123", "45"]);
    expect(preTokenize("12345 x", "gpt-2")).toEqual(["12345", " x"]);
    expect(preTokenize("我们的公司，hello", "qwen2")).toEqual(["我们的公司", "，hello"]);
    expect(preTokenize("a   b\n\n c", "llama-bpe")).toEqual(["a", "  ", " b", "\n\n", " c"]);
  });

  it("rejects unknown pre-tokenizers with a hint", () => {
    expect(() => preTokenize("x", "mystery")).toThrow(DajianError);
    expect(() => preTokenize("x", "mystery")).toThrow(/mystery/);
  });
});

describe("BPE training and encoding", () => {
  const corpus = ["low lower lowest", "new newer newest", "低价 低价 低价", "wide wider widest"];

  it("is deterministic and reaches the requested size with specials at the end", () => {
    const a = trainBpe(corpus, { vocabSize: 280, minFrequency: 1 });
    const b = trainBpe(corpus, { vocabSize: 280, minFrequency: 1 });
    expect(a).toEqual(b);
    expect(a.tokens.length).toBeLessThanOrEqual(280);
    expect(a.tokens.slice(-3)).toEqual(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]);
    expect(a.tokenTypes.slice(-3)).toEqual([TokenType.CONTROL, TokenType.CONTROL, TokenType.CONTROL]);
    expect(a.chatTemplate).toContain("<|im_start|>");
    expect(a.merges[0].split(" ")).toHaveLength(2);
  });

  it("encodes words it learned as single tokens and round-trips arbitrary bytes", () => {
    const v = trainBpe(corpus, { vocabSize: 300, minFrequency: 1 });
    const tok = new BpeTokenizer(v);
    expect(tok.encode(" lowest")).toHaveLength(1);
    const weird = "zq🦙\u0000\t\r\n  ÿ";
    expect(tok.decode(tok.encode(weird))).toBe(weird);
    expect(tok.encode("<|im_end|>", { parseSpecial: true })).toEqual([v.tokens.indexOf("<|im_end|>")]);
    expect(tok.encode("<|im_end|>").length).toBeGreaterThan(1);
    expect(tok.decode([v.tokens.indexOf("<|im_end|>")])).toBe("");
    expect(tok.decode([v.tokens.indexOf("<|im_end|>")], { special: true })).toBe("<|im_end|>");
  });

  it("stores and reads the vocabulary through GGUF metadata", () => {
    const v = trainBpe(corpus, { vocabSize: 270, minFrequency: 1 });
    const w = new GgufWriter();
    writeVocabMetadata(w, v);
    const back = readVocab(parseGguf(w.toBuffer()));
    expect(back.tokens).toEqual(v.tokens);
    expect(back.merges).toEqual(v.merges);
    expect(back.tokenTypes).toEqual(v.tokenTypes);
    expect(back.eotId).toBe(v.eotId);
    expect(back.chatTemplate).toBe(v.chatTemplate);
  });

  it("merges exactly what a brute-force trainer merges (the most frequent pair each time)", () => {
    // Random words over a small alphabet: many overlapping pairs whose counts rise and fall as merges happen.
    let seed = 5;
    const r = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const word = (): string =>
      Array.from({ length: 2 + Math.floor(r() * 7) }, () => "abcde"[Math.floor(r() * 5)]).join("");
    const texts = [
      ...Array.from({ length: 40 }, () => Array.from({ length: 10 }, word).join(" ")),
      "数据数据数据库 数据",
    ];
    const got = trainBpe(texts, { vocabSize: 256 + 3 + 80, minFrequency: 2 });
    // reference: recount every pair after every merge; ties → smallest (left id, right id)
    const ids = new Map<string, number>();
    const strs: string[] = [];
    for (let b = 0; b < 256; b++) {
      ids.set(byteChar(b), b);
      strs.push(byteChar(b));
    }
    const words = new Map<string, number>();
    for (const t of texts)
      for (const w of pre(t, "qwen2")) words.set(textToVocabString(w), (words.get(textToVocabString(w)) ?? 0) + 1);
    let seqs = [...words].map(([w, c]) => ({ s: Array.from(w, (ch) => ids.get(ch) as number), c }));
    const want: string[] = [];
    for (let m = 0; m < 80; m++) {
      const counts = new Map<string, number>();
      for (const { s, c } of seqs)
        for (let i = 0; i < s.length - 1; i++)
          counts.set(`${s[i]},${s[i + 1]}`, (counts.get(`${s[i]},${s[i + 1]}`) ?? 0) + c);
      let best: [number, number, number] | null = null;
      for (const [k, c] of counts) {
        const [a, b] = k.split(",").map(Number);
        if (!best || c > best[0] || (c === best[0] && (a < best[1] || (a === best[1] && b < best[2]))))
          best = [c, a, b];
      }
      if (!best || best[0] < 2) break;
      const [, a, b] = best;
      const merged = strs[a] + strs[b];
      let id = ids.get(merged);
      if (id === undefined) {
        id = strs.length;
        strs.push(merged);
        ids.set(merged, id);
      }
      want.push(`${strs[a]} ${strs[b]}`);
      seqs = seqs.map(({ s, c }) => {
        const n: number[] = [];
        for (let i = 0; i < s.length; i++) {
          if (i < s.length - 1 && s[i] === a && s[i + 1] === b) {
            n.push(id as number);
            i++;
          } else n.push(s[i]);
        }
        return { s: n, c };
      });
    }
    expect(got.merges).toEqual(want);
  });

  it("refuses impossible sizes and vocabularies without byte tokens", () => {
    expect(() => trainBpe(corpus, { vocabSize: 100 })).toThrow(/too small/);
    const v = trainBpe(corpus, { vocabSize: 270, minFrequency: 1 });
    expect(() => new BpeTokenizer({ ...v, tokens: v.tokens.slice(1) })).toThrow(/byte/);
  });
});
