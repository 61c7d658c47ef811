// Porter (1980) stemmer for English index terms: "policies" and "policy" must meet in one term.
// Plain algorithm from M. F. Porter, "An algorithm for suffix stripping"; input is a lowercase ASCII word.

const VOWEL = /[aeiou]/;

function isCons(w: string, i: number): boolean {
  const c = w[i];
  if (VOWEL.test(c)) return false;
  if (c === "y") return i === 0 ? true : !isCons(w, i - 1);
  return true;
}

/** m = number of VC sequences in the stem. */
function measure(s: string): number {
  let m = 0;
  let i = 0;
  const n = s.length;
  while (i < n && isCons(s, i)) i++;
  while (i < n) {
    while (i < n && !isCons(s, i)) i++;
    if (i >= n) break;
    while (i < n && isCons(s, i)) i++;
    m++;
  }
  return m;
}

function hasVowel(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (!isCons(s, i)) return true;
  return false;
}

function endsDoubleCons(s: string): boolean {
  const n = s.length;
  return n >= 2 && s[n - 1] === s[n - 2] && isCons(s, n - 1);
}

/** cvc where the last c is not w, x or y. */
function cvc(s: string): boolean {
  const n = s.length;
  if (n < 3) return false;
  if (!isCons(s, n - 1) || isCons(s, n - 2) || !isCons(s, n - 3)) return false;
  const c = s[n - 1];
  return c !== "w" && c !== "x" && c !== "y";
}

function replaceIf(w: string, rules: [string, string][], minM: number): string {
  for (const [suf, rep] of rules) {
    if (w.endsWith(suf)) {
      const stem = w.slice(0, -suf.length);
      return measure(stem) > minM ? stem + rep : w;
    }
  }
  return w;
}

const STEP2: [string, string][] = [
  ["ational", "ate"],
  ["tional", "tion"],
  ["enci", "ence"],
  ["anci", "ance"],
  ["izer", "ize"],
  ["bli", "ble"],
  ["alli", "al"],
  ["entli", "ent"],
  ["eli", "e"],
  ["ousli", "ous"],
  ["ization", "ize"],
  ["ation", "ate"],
  ["ator", "ate"],
  ["alism", "al"],
  ["iveness", "ive"],
  ["fulness", "ful"],
  ["ousness", "ous"],
  ["aliti", "al"],
  ["iviti", "ive"],
  ["biliti", "ble"],
  ["logi", "log"],
];
const STEP3: [string, string][] = [
  ["icate", "ic"],
  ["ative", ""],
  ["alize", "al"],
  ["iciti", "ic"],
  ["ical", "ic"],
  ["ful", ""],
  ["ness", ""],
];
const STEP4 = [
  "al",
  "ance",
  "ence",
  "er",
  "ic",
  "able",
  "ible",
  "ant",
  "ement",
  "ment",
  "ent",
  "ion",
  "ou",
  "ism",
  "ate",
  "iti",
  "ous",
  "ive",
  "ize",
];

export function porterStem(word: string): string {
  let w = word;
  if (w.length <= 2 || !/^[a-z]+$/.test(w)) return w;

  // Step 1a
  if (w.endsWith("sses")) w = w.slice(0, -2);
  else if (w.endsWith("ies")) w = w.slice(0, -2);
  else if (w.endsWith("ss")) {
    /* keep */
  } else if (w.endsWith("s")) w = w.slice(0, -1);

  // Step 1b
  let extra = false;
  if (w.endsWith("eed")) {
    if (measure(w.slice(0, -3)) > 0) w = w.slice(0, -1);
  } else if (w.endsWith("ed") && hasVowel(w.slice(0, -2))) {
    w = w.slice(0, -2);
    extra = true;
  } else if (w.endsWith("ing") && hasVowel(w.slice(0, -3))) {
    w = w.slice(0, -3);
    extra = true;
  }
  if (extra) {
    if (w.endsWith("at") || w.endsWith("bl") || w.endsWith("iz")) w += "e";
    else if (endsDoubleCons(w) && !/[lsz]$/.test(w)) w = w.slice(0, -1);
    else if (measure(w) === 1 && cvc(w)) w += "e";
  }

  // Step 1c
  if (w.endsWith("y") && hasVowel(w.slice(0, -1))) w = w.slice(0, -1) + "i";

  // Steps 2–3
  w = replaceIf(w, STEP2, 0);
  w = replaceIf(w, STEP3, 0);

  // Step 4
  for (const suf of STEP4) {
    if (!w.endsWith(suf)) continue;
    const stem = w.slice(0, -suf.length);
    if (measure(stem) > 1) {
      if (suf === "ion") {
        if (/[st]$/.test(stem)) w = stem;
      } else w = stem;
    }
    break;
  }

  // Step 5a
  if (w.endsWith("e")) {
    const stem = w.slice(0, -1);
    const m = measure(stem);
    if (m > 1 || (m === 1 && !cvc(stem))) w = stem;
  }
  // Step 5b
  if (measure(w) > 1 && endsDoubleCons(w) && w.endsWith("l")) w = w.slice(0, -1);
  return w;
}
