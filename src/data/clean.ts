// Per-document cleaning: Unicode normalisation, quality filters (length, language, symbol / digit ratios, repeated
// lines) and optional PII scrubbing. Pure functions over one document, so the streaming driver stays trivial.
import { DajianError } from "../core/errors.js";
import { scrubPii, type PiiKind, type PiiOptions } from "./pii.js";

export type Normalization = "nfc" | "nfkc" | "none";
export type Lang = "zh" | "en" | "other" | "mixed";

export interface CleanOptions {
  normalize?: Normalization;
  minChars?: number;
  maxChars?: number;
  /** Keep only documents detected as one of these languages. */
  langs?: Lang[];
  /** Drop when symbols (not letters, digits or spaces) exceed this share of non-space characters. */
  maxSymbolRatio?: number;
  maxDigitRatio?: number;
  /** Drop when this share of (non-empty) lines repeat an earlier line of the same document. */
  maxRepeatedLines?: number;
  pii?: boolean | PiiOptions;
}

export const CLEAN_DEFAULTS = {
  normalize: "nfc" as Normalization,
  minChars: 1,
  maxChars: Infinity,
  maxSymbolRatio: 0.3,
  maxDigitRatio: 0.3,
  maxRepeatedLines: 0.3,
};

export type DropReason = "too_short" | "too_long" | "language" | "symbols" | "digits" | "repeated_lines";

export interface TextProfile {
  /** Code points (not UTF-16 units). */
  chars: number;
  han: number;
  latin: number;
  digits: number;
  symbols: number;
  spaces: number;
  lines: number;
  repeatedLines: number;
  lang: Lang;
}

const HAN = /\p{Script=Han}/u;
const LETTER = /\p{L}/u;
const NUMBER = /\p{N}/u;
const EN_WORDS = new Set(
  "the of and to a in is it that for on with as was are be this by at or from an not have".split(" "),
);

/** One pass over the text: character classes, lines, repeated lines and a script-based language guess. */
export function profileText(text: string): TextProfile {
  let chars = 0;
  let han = 0;
  let latin = 0;
  let digits = 0;
  let symbols = 0;
  let spaces = 0;
  let otherLetters = 0;
  for (const ch of text) {
    chars++;
    const c = ch.codePointAt(0)!;
    if (c < 128) {
      if ((c | 32) >= 97 && (c | 32) <= 122) latin++;
      else if (c >= 48 && c <= 57) digits++;
      else if (c === 32 || (c >= 9 && c <= 13)) spaces++;
      else symbols++;
    } else if (c >= 0x4e00 && c <= 0x9fff) han++;
    else if (/\s/.test(ch)) spaces++;
    else if (LETTER.test(ch)) {
      if (HAN.test(ch)) han++;
      else if (c <= 0x24f) latin++;
      else otherLetters++;
    } else if (NUMBER.test(ch)) digits++;
    else symbols++;
  }
  let lines = 0;
  let repeatedLines = 0;
  const seen = new Set<string>();
  for (const l of text.split("\n")) {
    const k = l.trim();
    if (!k) continue;
    lines++;
    if (seen.has(k)) repeatedLines++;
    else seen.add(k);
  }
  return {
    chars,
    han,
    latin,
    digits,
    symbols,
    spaces,
    lines,
    repeatedLines,
    lang: guessLang(text, han, latin, otherLetters),
  };
}

/**
 * zh when Han characters dominate, en when Latin letters dominate and English function words appear, "mixed" when
 * neither script reaches 60 % (a Latin word counts as much as ~4 letters vs one Han character), else "other".
 */
function guessLang(text: string, han: number, latin: number, other: number): Lang {
  const units = han + latin / 4 + other / 2;
  if (units === 0) return "other";
  if (han / units >= 0.6) return "zh";
  if (latin / 4 / units >= 0.6) {
    const words = text.toLowerCase().match(/[a-z]+/g) ?? [];
    let hits = 0;
    for (const w of words) if (EN_WORDS.has(w)) hits++;
    // Short texts rarely contain function words: accept them unless they are one long run of letters.
    if (words.length < 8) return hits > 0 || words.every((w) => w.length <= 15) ? "en" : "other";
    return hits / words.length >= 0.05 ? "en" : "other";
  }
  if (other / 2 / units >= 0.6) return "other";
  return "mixed";
}

const ZERO_WIDTH = /[\u200b-\u200d\u2060\ufeff]/g;
// C0/C1 controls except tab and newline.
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/g;

/** Normalise Unicode and whitespace: line endings, control and zero-width characters, trailing spaces, blank runs. */
export function normalizeText(text: string, form: Normalization = "nfc"): string {
  let t = text.replace(/\r\n?/g, "\n").replace(ZERO_WIDTH, "").replace(CONTROL, "");
  if (form !== "none") t = t.normalize(form === "nfkc" ? "NFKC" : "NFC");
  return t
    .replace(/[ \t\u3000]+$/gm, "")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}

export type CleanResult =
  | { keep: true; text: string; profile: TextProfile; pii: Record<PiiKind, number> }
  | { keep: false; reason: DropReason; profile: TextProfile };

export function checkCleanOptions(o: CleanOptions): void {
  const ratio = (name: string, v: number | undefined) => {
    if (v !== undefined && !(v >= 0 && v <= 1))
      throw new DajianError("invalid_input", `${name} must be between 0 and 1, got ${v}`, `pass e.g. ${name} 0.3`);
  };
  ratio("--max-symbol-ratio", o.maxSymbolRatio);
  ratio("--max-digit-ratio", o.maxDigitRatio);
  ratio("--max-repeated-lines", o.maxRepeatedLines);
  if (o.minChars !== undefined && o.maxChars !== undefined && o.minChars > o.maxChars)
    throw new DajianError("invalid_input", "--min-chars is larger than --max-chars", "swap or fix the limits");
}

/** Clean one document: normalise, filter, then scrub PII from what is kept. */
export function cleanText(text: string, o: CleanOptions = {}): CleanResult {
  const c = { ...CLEAN_DEFAULTS, ...o };
  const t = normalizeText(text, c.normalize);
  const p = profileText(t);
  const visible = p.chars - p.spaces;
  const drop = (reason: DropReason): CleanResult => ({ keep: false, reason, profile: p });
  if (p.chars < c.minChars || visible === 0) return drop("too_short");
  if (p.chars > c.maxChars) return drop("too_long");
  if (c.langs && c.langs.length && !c.langs.includes(p.lang)) return drop("language");
  if (p.symbols / visible > c.maxSymbolRatio) return drop("symbols");
  if (p.digits / visible > c.maxDigitRatio) return drop("digits");
  if (p.lines > 1 && p.repeatedLines / p.lines > c.maxRepeatedLines) return drop("repeated_lines");
  if (!c.pii) return { keep: true, text: t, profile: p, pii: { phone: 0, id: 0, email: 0, landline: 0 } };
  const r = scrubPii(t, c.pii === true ? {} : c.pii);
  return { keep: true, text: r.text, profile: p, pii: r.counts };
}
