// Text helpers shared by loaders, cleaner and chunker: normalisation, search folding, token estimates.

/** Display form: NFC, so the same character always has one code-point sequence (é, 한, etc.). */
export function normalizeDisplay(text: string): string {
  return text.normalize("NFC");
}

/**
 * Search form used by the keyword index at BOTH index and query time: NFKC folds full-width ASCII
 * (ＡＢＣ１２３！) to half-width, half-width katakana to full-width, the ideographic space to a space and
 * compatibility ligatures (ﬁ, ㎏) to their plain letters; then lowercase. Length may change, so callers
 * must never map offsets from folded text back onto display text.
 */
export function foldForSearch(text: string): string {
  return text.normalize("NFKC").toLowerCase();
}

/** Han, kana, hangul, CJK punctuation and full-width forms: each is about one BPE token. */
const CJK_RE =
  /[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31a0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]|[\ud840-\ud87f][\udc00-\udfff]/;
export const CJK_CHAR = CJK_RE;

export function isCjk(ch: string): boolean {
  return CJK_RE.test(ch);
}

/**
 * Cheap token estimate, deliberately a little pessimistic so chunks fit a model's window:
 * - CJK characters and CJK punctuation: 1 token each (Qwen2.5 / Llama-3 BPEs average 0.6–1.0 per Han character);
 * - digits: 1 each (Qwen and Llama-3 split numbers into single digits / groups of three);
 * - a Latin word: 1 token up to 6 letters, +1 per further 6 (common English words are single BPE tokens,
 *   long or rare words split into 2–3 pieces; English prose comes out near words × 1.3);
 * - any other non-space symbol: 1 token.
 */
export function estimateTokens(text: string): number {
  // charCodeAt loop without regexes: this runs over every chunk candidate, so it must be cheap.
  let tokens = 0;
  let word = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if ((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0xc0 && c <= 0x24f && c !== 0xd7 && c !== 0xf7)) {
      word++;
      continue;
    }
    if (word > 0) {
      tokens += 1 + Math.floor((word - 1) / 6);
      word = 0;
    }
    if (c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d || c === 0xa0 || c === 0x3000) continue;
    if (c >= 0xdc00 && c <= 0xdfff) continue; // low surrogate: its pair was counted at the high half
    tokens++; // digits, punctuation, CJK, other scripts: one each
  }
  if (word > 0) tokens += 1 + Math.floor((word - 1) / 6);
  return tokens;
}
