// Text encoding detection: BOMs first, then strict UTF-8, then candidate decodings scored for
// plausibility. Detectors (chardet) guess badly on short CJK strings, so their guess is only one
// candidate among several and every candidate is judged by what it decodes to.
import chardet from "chardet";
import iconv from "iconv-lite";
import { DajianError } from "../core/errors.js";
import { COMMON_HAN } from "./common-han.js";

const COMMON = new Set(COMMON_HAN);

export interface Decoded {
  text: string;
  encoding: string;
}

function charScore(c: number, ch: string): number {
  if (c === 0xfffd) return -10;
  if (c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0c) return 1;
  if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return -5;
  if (c < 0x7f) return 1;
  if (c >= 0x4e00 && c <= 0x9fff) return COMMON.has(ch) ? 2 : -0.5;
  if ((c >= 0x3000 && c <= 0x303f) || (c >= 0xff01 && c <= 0xff5e)) return 1.5; // CJK and full-width punctuation
  if (c >= 0x3040 && c <= 0x30ff) return 0.7; // kana
  if (c >= 0xac00 && c <= 0xd7af) return 0.3; // hangul
  if (c >= 0xa0 && c <= 0x24f) return 0.3; // Latin-1 / Latin Extended letters
  if (c >= 0x2000 && c <= 0x206f) return 0.5; // general punctuation (“ ” — …)
  if (c >= 0xe000 && c <= 0xf8ff) return -5; // private use: a sure sign of a wrong guess
  return -1;
}

export function plausibility(text: string): number {
  let s = 0;
  for (const ch of text) s += charScore(ch.codePointAt(0)!, ch);
  return s;
}

function strictUtf8(bytes: Buffer): string | undefined {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

/** BOM-less UTF-16 shows as zero bytes in every other position for mostly-ASCII text. */
function utf16ByZeros(bytes: Buffer): "utf-16le" | "utf-16be" | undefined {
  const n = Math.min(bytes.length, 4096) & ~1;
  if (n < 4) return undefined;
  let even = 0;
  let odd = 0;
  for (let i = 0; i < n; i += 2) {
    if (bytes[i] === 0) even++;
    if (bytes[i + 1] === 0) odd++;
  }
  const pairs = n / 2;
  if (odd > pairs * 0.3 && even < pairs * 0.05) return "utf-16le";
  if (even > pairs * 0.3 && odd < pairs * 0.05) return "utf-16be";
  return undefined;
}

export function detectBom(bytes: Buffer): { encoding: string; skip: number } | undefined {
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf)
    return { encoding: "utf-8", skip: 3 };
  if (bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0xfe) return { encoding: "utf-16le", skip: 2 };
  if (bytes.length >= 2 && bytes[0] === 0xfe && bytes[1] === 0xff) return { encoding: "utf-16be", skip: 2 };
  return undefined;
}

const CANDIDATES = ["gb18030", "big5", "utf-16le", "utf-16be", "shift_jis", "euc-kr", "windows-1252"];

/** Decode bytes of unknown text encoding. Throws "unsupported" for data that reads as binary in every candidate. */
export function decodeText(bytes: Buffer): Decoded {
  const bom = detectBom(bytes);
  if (bom) return { text: iconv.decode(bytes.subarray(bom.skip), bom.encoding), encoding: `${bom.encoding} (BOM)` };
  const z = utf16ByZeros(bytes);
  if (z) {
    const text = iconv.decode(bytes, z);
    if (plausibility(text) > 0) return { text, encoding: z };
  }
  const utf8 = strictUtf8(bytes);
  if (utf8 !== undefined && !/[\x00-\x08\x0e-\x1f]/.test(utf8)) return { text: utf8, encoding: "utf-8" };

  // Score a sample (the head) for speed; decode the whole input only with the winner.
  const sample = bytes.subarray(0, 64 * 1024);
  const guessed = chardet.detect(sample);
  const names = [...CANDIDATES];
  if (guessed && iconv.encodingExists(guessed) && !names.includes(guessed.toLowerCase()))
    names.push(guessed.toLowerCase());
  let best: { name: string; score: number } | undefined;
  for (const name of names) {
    if (name.startsWith("utf-16") && sample.length % 2 === 1) continue;
    // Don't judge a multi-byte codec on a sample cut mid-character: drop the last 3 bytes when sampling.
    const s = sample.length < bytes.length ? sample.subarray(0, sample.length - 3) : sample;
    const score = plausibility(iconv.decode(s, name)) - (name === "windows-1252" ? s.length * 0.05 : 0);
    if (!best || score > best.score) best = { name, score };
  }
  if (!best || best.score <= 0) {
    throw new DajianError(
      "unsupported",
      "file looks like binary data, not text in any known encoding",
      "convert it to UTF-8 text, PDF, DOCX, XLSX, PPTX, HTML, Markdown or CSV",
    );
  }
  return { text: iconv.decode(bytes, best.name), encoding: best.name };
}
