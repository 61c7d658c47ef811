// GPT-2's byte ↔ printable-character mapping: byte-level BPE vocabularies store every token as a string of these
// characters, so that all 256 byte values are visible, non-whitespace code points.

const BYTE_TO_CHAR: string[] = new Array(256);
const CHAR_TO_BYTE = new Map<string, number>();

(() => {
  const printable = (b: number): boolean =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const cp = printable(b) ? b : 256 + n++;
    BYTE_TO_CHAR[b] = String.fromCodePoint(cp);
    CHAR_TO_BYTE.set(BYTE_TO_CHAR[b], b);
  }
})();

/** The vocabulary character standing for byte `b`. */
export function byteChar(b: number): string {
  return BYTE_TO_CHAR[b];
}

/** UTF-8 bytes of `text`, each mapped to its vocabulary character. */
export function bytesToVocabString(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += BYTE_TO_CHAR[b];
  return s;
}

export function textToVocabString(text: string): string {
  return bytesToVocabString(Buffer.from(text, "utf8"));
}

/** Inverse mapping; returns null if a character is not one of the 256 byte characters. */
export function vocabStringToBytes(s: string): Uint8Array | null {
  const out: number[] = [];
  for (const ch of s) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b === undefined) return null;
    out.push(b);
  }
  return Uint8Array.from(out);
}
