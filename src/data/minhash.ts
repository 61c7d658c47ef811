// Exact + near-duplicate detection over a stream of documents.
// - Exact: SHA-1 of the folded text (NFKC, lower case, whitespace collapsed).
// - Near: MinHash over character 5-gram shingles (UTF-16 units) of the folded text, computed as one-permutation hashing (each
//   shingle hashed once and sent to one of K bins, the minimum kept per bin; empty bins filled by rotation
//   densification — Shrivastava & Li 2014), which estimates Jaccard similarity like K independent permutations at
//   1/K of the cost. LSH with B bands of R rows (B·R = K) proposes candidates; a candidate counts as a duplicate only
//   when the signatures agree on ≥ threshold of the bins (estimated Jaccard ≥ threshold, default 0.8).
//   With B=16, R=8 a pair at Jaccard 0.8 becomes a candidate with probability 1-(1-0.8^8)^16 ≈ 0.95, at 0.9 ≈ 0.9999.
// Memory per kept document: K·2 bytes of signature (low 16 bits of each bin — b-bit MinHash, Li & König 2010;
// accidental agreement 1/65536) + B chain links + B hash-table slots, all in typed arrays; no text is held.
import { createHash } from "node:crypto";
import { DajianError } from "../core/errors.js";

export interface DedupOptions {
  /** Estimated Jaccard similarity at or above which a document is a near duplicate (default 0.8). */
  threshold?: number;
  bands?: number;
  rows?: number;
  /** Character n-gram size (default 5). */
  shingle?: number;
  seed?: number;
  /** Exact duplicates only (no MinHash). */
  exactOnly?: boolean;
  /** Candidates examined per band before giving up (bounds time on pathological corpora; default 64). */
  maxCandidatesPerBand?: number;
}

export const DEDUP_DEFAULTS = { threshold: 0.8, bands: 16, rows: 8, shingle: 5, seed: 1, maxCandidatesPerBand: 64 };

export type DedupVerdict =
  { duplicate: false } | { duplicate: true; kind: "exact" | "near"; of: number; similarity: number };

/** Text as compared for duplicates: compatibility-folded, lower case, whitespace collapsed. */
export function foldForDedup(text: string): string {
  return text.normalize("NFKC").toLowerCase().replace(/\s+/g, " ").trim();
}

/** murmur3 finaliser: a cheap bijective mixer on 32-bit values. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** MinHash signature (K uint32) of a folded text by one-permutation hashing with rotation densification. */
export function minhashSignature(folded: string, k: number, n: number, seed: number): Uint32Array {
  const sig = new Uint32Array(k).fill(0xffffffff);
  const filled = new Uint8Array(k);
  // Shingles over UTF-16 units (a surrogate pair is just two units of a shingle; no array of code points).
  const len = folded.length;
  const count = Math.max(1, len - n + 1);
  const s0 = fmix32(seed ^ 0x9e3779b9);
  for (let i = 0; i < count; i++) {
    let h = 0x811c9dc5 ^ s0; // FNV-1a over the shingle, then mixed
    const end = Math.min(i + n, len);
    for (let j = i; j < end; j++) h = Math.imul(h ^ folded.charCodeAt(j), 0x01000193);
    h = fmix32(h);
    const bin = h % k;
    const v = fmix32(h ^ s0);
    if (v <= sig[bin]) sig[bin] = v;
    filled[bin] = 1;
  }
  // Rotation densification: an empty bin takes the value of the next non-empty bin to its right (circularly),
  // offset by the distance, so two documents' empty bins agree exactly when their donors agree.
  if (len > 0) {
    for (let b = 0; b < k; b++) {
      if (filled[b]) continue;
      let d = 1;
      while (!filled[(b + d) % k]) d++;
      sig[b] = fmix32(sig[(b + d) % k] + Math.imul(d, 0x27d4eb2d));
    }
  }
  return sig;
}

/** Fraction of bins on which two 16-bit signatures agree (the MinHash Jaccard estimate). */
export function signatureSimilarity(a: Uint16Array, ai: number, b: Uint16Array, bi: number, k: number): number {
  let eq = 0;
  for (let i = 0; i < k; i++) if (a[ai + i] === b[bi + i]) eq++;
  return eq / k;
}

/** A typed array that doubles when needed (amortised O(1) appends, off the JS heap). */
class Grow<T extends Uint16Array | Int32Array> {
  constructor(
    public a: T,
    private readonly make: (n: number) => T,
  ) {}
  ensure(n: number): void {
    if (n <= this.a.length) return;
    const b = this.make(Math.max(n, this.a.length * 2));
    b.set(this.a);
    this.a = b;
  }
}
const growU16 = () => new Grow(new Uint16Array(1 << 12), (n) => new Uint16Array(n));
const growI32 = () => new Grow(new Int32Array(1 << 10), (n) => new Int32Array(n));

/** Open-addressing hash map uint32 → int32 in typed arrays (off the JS heap; 1M entries ≈ 16 MB). */
class U32Map {
  private keys = new Uint32Array(1 << 12);
  private vals = new Int32Array(1 << 12).fill(-1);
  private size = 0;
  get(key: number): number | undefined {
    const mask = this.keys.length - 1;
    for (let i = fmix32(key) & mask; ; i = (i + 1) & mask) {
      if (this.vals[i] === -1) return undefined;
      if (this.keys[i] === key) return this.vals[i];
    }
  }
  set(key: number, val: number): void {
    if ((this.size + 1) * 2 > this.keys.length) this.grow();
    const mask = this.keys.length - 1;
    for (let i = fmix32(key) & mask; ; i = (i + 1) & mask) {
      if (this.vals[i] === -1) {
        this.keys[i] = key;
        this.vals[i] = val;
        this.size++;
        return;
      }
      if (this.keys[i] === key) {
        this.vals[i] = val;
        return;
      }
    }
  }
  private grow(): void {
    const { keys, vals } = this;
    this.keys = new Uint32Array(keys.length * 2);
    this.vals = new Int32Array(keys.length * 2).fill(-1);
    this.size = 0;
    for (let i = 0; i < keys.length; i++) if (vals[i] !== -1) this.set(keys[i], vals[i]);
  }
}

export interface DedupCounts {
  seen: number;
  kept: number;
  exact: number;
  near: number;
}

/** Streaming deduplicator: call check() on each document in order; the first of each duplicate group is kept. */
export class Deduper {
  readonly o: Required<DedupOptions>;
  readonly k: number;
  private readonly exact = new Map<string, number>();
  private readonly sigs = growU16();
  private readonly next = growI32();
  private readonly heads: U32Map[];
  readonly counts: DedupCounts = { seen: 0, kept: 0, exact: 0, near: 0 };
  /** Index (in check order, 0-based) of each kept document, for "duplicate of" reports. */
  private readonly keptAt = growI32();

  constructor(o: DedupOptions = {}) {
    this.o = { ...DEDUP_DEFAULTS, exactOnly: false, ...o };
    const { bands, rows, threshold, shingle } = this.o;
    for (const [name, v] of [
      ["--bands", bands],
      ["--rows", rows],
      ["--shingle", shingle],
    ] as const) {
      if (!Number.isInteger(v) || v < 1 || v > 1024)
        throw new DajianError("invalid_input", `${name} must be an integer 1–1024, got ${v}`, `pass e.g. ${name} 8`);
    }
    if (!(threshold > 0 && threshold <= 1))
      throw new DajianError(
        "invalid_input",
        `--threshold must be in (0, 1], got ${threshold}`,
        "pass e.g. --threshold 0.8",
      );
    this.k = bands * rows;
    this.heads = Array.from({ length: bands }, () => new U32Map());
  }

  /** The Jaccard similarity at which a pair becomes an LSH candidate with probability 1/2: (1/B)^(1/R). */
  get lshThreshold(): number {
    return Math.pow(1 / this.o.bands, 1 / this.o.rows);
  }

  check(text: string): DedupVerdict {
    const index = this.counts.seen++;
    const folded = foldForDedup(text);
    const key = createHash("sha1").update(folded).digest("base64").slice(0, 16); // 96 bits
    const first = this.exact.get(key);
    if (first !== undefined) {
      this.counts.exact++;
      return { duplicate: true, kind: "exact", of: first, similarity: 1 };
    }
    this.exact.set(key, index);
    if (this.o.exactOnly) return this.keep(index);
    const { bands, rows, threshold, shingle, seed, maxCandidatesPerBand } = this.o;
    const k = this.k;
    const sig = minhashSignature(folded, k, shingle, seed);
    const s16 = new Uint16Array(k);
    for (let i = 0; i < k; i++) s16[i] = sig[i] & 0xffff;
    const bandKeys = new Array<number>(bands);
    for (let b = 0; b < bands; b++) {
      let h = 0x811c9dc5 ^ b;
      for (let r = 0; r < rows; r++) h = fmix32(h ^ sig[b * rows + r]);
      bandKeys[b] = h;
    }
    const tried = new Set<number>();
    for (let b = 0; b < bands; b++) {
      let cand = this.heads[b].get(bandKeys[b]);
      for (let n = 0; cand !== undefined && cand >= 0 && n < maxCandidatesPerBand; n++) {
        if (!tried.has(cand)) {
          tried.add(cand);
          const sim = signatureSimilarity(s16, 0, this.sigs.a, cand * k, k);
          if (sim >= threshold) {
            this.counts.near++;
            return { duplicate: true, kind: "near", of: this.keptAt.a[cand], similarity: sim };
          }
        }
        cand = this.next.a[cand * bands + b];
      }
    }
    const id = this.counts.kept;
    this.sigs.ensure((id + 1) * k);
    this.sigs.a.set(s16, id * k);
    this.next.ensure((id + 1) * bands);
    for (let b = 0; b < bands; b++) {
      const prev = this.heads[b].get(bandKeys[b]);
      this.next.a[id * bands + b] = prev ?? -1;
      this.heads[b].set(bandKeys[b], id);
    }
    return this.keep(index);
  }

  private keep(index: number): DedupVerdict {
    this.keptAt.ensure(this.counts.kept + 1);
    this.keptAt.a[this.counts.kept] = index;
    this.counts.kept++;
    return { duplicate: false };
  }

  /** Share of documents removed as exact or near duplicates. */
  get duplicateRate(): number {
    return this.counts.seen ? (this.counts.exact + this.counts.near) / this.counts.seen : 0;
  }
}
