// PII scrubbing for training corpora: mainland-China mobile numbers, 18-digit resident ID numbers (GB 11643
// checksum and a plausible birth date, so order numbers are not eaten), e-mail addresses and optionally landlines.
// Each match becomes a placeholder token, so the model learns the shape of the sentence but not the value.

export interface PiiOptions {
  /** Also replace landline numbers such as 010-12345678 / (0755) 1234 5678 (more false positives). */
  landline?: boolean;
}

export const PII_TOKENS = { phone: "<PHONE>", id: "<ID_NUMBER>", email: "<EMAIL>", landline: "<TEL>" } as const;
export type PiiKind = keyof typeof PII_TOKENS;

const ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK = "10X98765432";

/** GB 11643-1999: 17 digits, a checksum character, and a real birth date at positions 7–14. */
export function isResidentId(s: string): boolean {
  if (!/^\d{17}[\dXx]$/.test(s)) return false;
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += (s.charCodeAt(i) - 48) * ID_WEIGHTS[i];
  if (ID_CHECK[sum % 11] !== s[17].toUpperCase()) return false;
  const y = Number(s.slice(6, 10));
  const m = Number(s.slice(10, 12));
  const d = Number(s.slice(12, 14));
  if (y < 1900 || y > 2100 || m < 1 || m > 12 || d < 1) return false;
  return d <= new Date(Date.UTC(y, m, 0)).getUTCDate();
}

// Digit runs are delimited by non-digits (lookarounds), so a 13-digit order number never yields a "phone".
const ID_RE = /(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])/g;
const MOBILE_RE = /(?<![\d+])(?:(?:\+|00)86[\s-]?)?1[3-9]\d(?:[\s-]?\d{4}){2}(?!\d)/g;
const EMAIL_RE =
  /(?<![\w.+-])[\w.+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}(?![\w-])/g;
const LANDLINE_RE = /(?<![\d+])(?:\(0\d{2,3}\)\s?|0\d{2,3}[\s-])\d{3,4}[\s-]?\d{4}(?:-\d{1,5})?(?!\d)/g;

export interface PiiResult {
  text: string;
  counts: Record<PiiKind, number>;
}

/** Replace PII with placeholder tokens; counts say how many of each were found. */
export function scrubPii(text: string, o: PiiOptions = {}): PiiResult {
  const counts: Record<PiiKind, number> = { phone: 0, id: 0, email: 0, landline: 0 };
  let t = text.replace(EMAIL_RE, () => (counts.email++, PII_TOKENS.email));
  t = t.replace(ID_RE, (m) => (isResidentId(m) ? (counts.id++, PII_TOKENS.id) : m));
  t = t.replace(MOBILE_RE, () => (counts.phone++, PII_TOKENS.phone));
  if (o.landline) t = t.replace(LANDLINE_RE, () => (counts.landline++, PII_TOKENS.landline));
  return { text: t, counts };
}
