// Training data for a run: documents streamed from text/JSONL files (src/data's reader), a held-out validation split
// chosen by hashing each document's text (deterministic, and identical copies never straddle the split), a BPE
// tokenizer learned from a bounded sample of the training side, and the token streams written to disk as u32 files.
// Batches are then read from those files at random offsets, so memory stays bounded whatever the corpus size.

import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { DajianError } from "../../core/errors.js";
import { noProgress, type ProgressFn } from "../../core/progress.js";
import { splitPoint } from "../../data/pipeline.js";
import { formatOf, readFileRecords, type DataRecord } from "../../data/records.js";
import { readGgufHeader } from "../../gguf/index.js";
import { BpeTokenizer, readVocab, trainBpe, type BpeVocab } from "../../tokenizer/index.js";

/** val.txt holds at most this many validation tokens (bounded memory on big corpora). */
const VAL_TEXT_TOKENS = 1 << 20;

export interface PrepareDataOptions {
  files: string[];
  /** Folder for tokenizer.json, train.u32, val.u32, val.txt and data.json. */
  dir: string;
  vocabSize: number;
  /** Reuse this GGUF's vocabulary instead of learning one. */
  tokenizerGguf?: string;
  /** Share of documents held out for validation. Default 0.05. */
  valFraction?: number;
  seed: number;
  /** UTF-8 bytes of training text the tokenizer learns from. Default 4 MB. */
  tokenizerSampleBytes?: number;
  /** Minimum tokens each split needs (a model sequence plus its target). */
  minTokens: number;
  onProgress?: ProgressFn;
}

export interface DataManifest {
  files: Array<{ path: string; bytes: number; mtimeMs: number }>;
  documents: { train: number; validation: number; badLines: number };
  tokens: { train: number; validation: number };
  /** Validation carved from the end of the training stream (too few held-out documents). */
  valFromTail: boolean;
  vocabSize: number;
  tokenizer: "learned" | string;
  seconds: number;
}

export interface PreparedData {
  manifest: DataManifest;
  vocab: BpeVocab;
  train: TokenFile;
  val: TokenFile;
}

/** A read-only stream of u32 token ids on disk, read by range. */
export class TokenFile {
  private fd: number | null;
  readonly length: number;
  constructor(
    readonly path: string,
    /** First and one-past-last token used (a split may be a range of a file). */
    readonly start = 0,
    end?: number,
  ) {
    this.fd = openSync(path, "r");
    const n = statSync(path).size / 4;
    this.length = (end ?? n) - start;
  }
  /** Tokens [from, from + n) of this stream. */
  read(from: number, n: number): number[] {
    if (this.fd === null) throw new DajianError("internal", "token file closed", "report this bug");
    if (from < 0 || from + n > this.length)
      throw new DajianError("internal", `token range ${from}+${n} outside ${this.length}`, "report this bug");
    const buf = Buffer.allocUnsafe(n * 4);
    readSync(this.fd, buf, 0, n * 4, (this.start + from) * 4);
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = buf.readUInt32LE(i * 4);
    return out;
  }
  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/** Appends u32 ids to FILE.tmp in 64k-token chunks; commit() renames it into place. */
class TokenWriter {
  private readonly fd: number;
  private buf = Buffer.allocUnsafe(1 << 18);
  private used = 0;
  count = 0;
  constructor(readonly path: string) {
    this.fd = openSync(`${path}.tmp`, "w");
  }
  push(ids: number[]): void {
    for (const id of ids) {
      if (this.used === this.buf.length) this.flush();
      this.buf.writeUInt32LE(id, this.used);
      this.used += 4;
    }
    this.count += ids.length;
  }
  private flush(): void {
    writeSync(this.fd, this.buf, 0, this.used);
    this.used = 0;
  }
  commit(): void {
    this.flush();
    closeSync(this.fd);
    renameSync(`${this.path}.tmp`, this.path);
  }
}

function fileInfo(files: string[]): DataManifest["files"] {
  return files.map((f) => {
    if (!existsSync(f))
      throw new DajianError("not_found", `training data ${f} not found`, "give text or JSONL files with --data");
    const st = statSync(f);
    if (!st.isFile()) throw new DajianError("invalid_input", `${f} is not a file`, "give text or JSONL files");
    return { path: f, bytes: st.size, mtimeMs: st.mtimeMs };
  });
}

/** Load a vocabulary: from a GGUF model, or a tokenizer.json a previous run wrote. */
export function loadVocab(path: string): BpeVocab {
  if (path.endsWith(".json")) return JSON.parse(readFileSync(path, "utf8")) as BpeVocab;
  const file = readGgufHeader(path);
  return readVocab(file);
}

/** Tokenize the corpus into `dir` (or reuse what a previous call wrote there for the same files). */
export async function prepareData(o: PrepareDataOptions): Promise<PreparedData> {
  const files = fileInfo(o.files);
  mkdirSync(o.dir, { recursive: true });
  const manifestPath = join(o.dir, "data.json");
  if (existsSync(manifestPath)) {
    const m = JSON.parse(readFileSync(manifestPath, "utf8")) as DataManifest;
    const same =
      m.files.length === files.length &&
      m.files.every((f, i) => f.path === files[i].path && f.bytes === files[i].bytes);
    if (!same)
      throw new DajianError(
        "invalid_input",
        "the run folder was prepared from different data files",
        "resume with the same --data files, or start a new run folder",
      );
    return open(o.dir, m, loadVocab(join(o.dir, "tokenizer.json")));
  }
  const t0 = Date.now();
  const progress = o.onProgress ?? noProgress;
  const fraction = o.valFraction ?? 0.05;
  if (!(fraction > 0 && fraction < 0.5))
    throw new DajianError("invalid_input", `--val-fraction ${fraction} out of range`, "use e.g. 0.05");
  const totalBytes = files.reduce((a, f) => a + f.bytes, 0);
  const paths = files.map((f) => f.path);
  let badLines = 0;
  /** Every non-empty document with whether it is a whole JSONL record; `onBytes` gets bytes read over all files. */
  async function* records(onBytes?: (b: number) => void): AsyncGenerator<DataRecord & { jsonl: boolean }> {
    let before = 0;
    for (const f of files) {
      const jsonl = formatOf(f.path) === "jsonl";
      const opts = { onBadLine: () => badLines++, onBytes: (b: number) => onBytes?.(before + b) };
      for await (const r of readFileRecords(f.path, opts)) if (r.text.trim()) yield { ...r, jsonl };
      before += f.bytes;
    }
  }
  const isVal = (r: DataRecord): boolean => splitPoint(r, o.seed, true) < fraction;

  // 1. Tokenizer: learned from the first `sample` bytes of training-side documents (never from validation).
  let vocab: BpeVocab;
  if (o.tokenizerGguf) vocab = loadVocab(o.tokenizerGguf);
  else {
    const limit = o.tokenizerSampleBytes ?? 4e6;
    const sample: string[] = [];
    let bytes = 0;
    for await (const r of records()) {
      if (isVal(r)) continue;
      sample.push(r.text);
      bytes += Buffer.byteLength(r.text);
      progress({ phase: "tokenizer sample bytes", done: Math.min(bytes, limit), total: limit });
      if (bytes >= limit) break;
    }
    if (sample.length === 0) throw emptyCorpus(paths);
    vocab = trainBpe(sample, {
      vocabSize: o.vocabSize,
      onProgress: (done, target) => progress({ phase: "tokenizer merges", done, total: target }),
    });
  }
  const tok = new BpeTokenizer(vocab);
  const eos = vocab.eosId;

  // 2. Token streams. JSONL records are whole documents (ended by <|endoftext|>); paragraphs of a text file
  // continue each other (joined by a blank line).
  const train = new TokenWriter(join(o.dir, "train.u32"));
  const val = new TokenWriter(join(o.dir, "val.u32"));
  const docs = { train: 0, validation: 0 };
  badLines = 0;
  let read = 0;
  let shown = -1;
  for await (const r of records((b) => (read = b))) {
    const ids = tok.encode(r.jsonl ? r.text : `${r.text}\n\n`);
    if (r.jsonl && eos !== undefined) ids.push(eos);
    const side = isVal(r) ? "validation" : "train";
    (side === "train" ? train : val).push(ids);
    docs[side]++;
    // The reader runs ahead of tokenization, so "all bytes read" is not "done": that is reported after the loop.
    if (read !== shown) {
      shown = read;
      const counters = { tokens: train.count + val.count };
      progress({ phase: "tokenize bytes", done: Math.min(read, totalBytes - 1), total: totalBytes, counters });
    }
  }
  progress({
    phase: "tokenize bytes",
    done: totalBytes,
    total: totalBytes,
    counters: { tokens: train.count + val.count },
  });
  train.commit();
  val.commit();
  if (train.count + val.count === 0) throw emptyCorpus(paths);
  // Few documents (one text file, a handful of records): hold out the stream's tail instead.
  const valFromTail = val.count < o.minTokens;
  const tokens = valFromTail
    ? { train: train.count + val.count, validation: 0 }
    : { train: train.count, validation: val.count };
  if (valFromTail) {
    mergeInto(join(o.dir, "train.u32"), join(o.dir, "val.u32"));
    const all = tokens.train;
    const tail = Math.max(o.minTokens, Math.floor(all * fraction));
    tokens.train = all - tail;
    tokens.validation = tail;
  }
  if (tokens.train < o.minTokens + 1 || tokens.validation < o.minTokens) {
    throw new DajianError(
      "invalid_input",
      `the corpus has only ${train.count + val.count} tokens; training and validation need at least ${2 * o.minTokens + 1}`,
      "add more text, or lower --seq / --batch",
    );
  }
  const manifest: DataManifest = {
    files,
    documents: { ...docs, badLines },
    tokens,
    valFromTail,
    vocabSize: vocab.tokens.length,
    tokenizer: o.tokenizerGguf ?? "learned",
    seconds: (Date.now() - t0) / 1000,
  };
  writeAtomic(join(o.dir, "tokenizer.json"), JSON.stringify(vocab));
  const prepared = open(o.dir, manifest, vocab);
  // The validation text decoded from its tokens, for `dajian eval perplexity` (documents separated by a blank line
  // where the token stream has <|endoftext|>, which plain-text tokenization would not parse as a control token).
  const ids = prepared.val.read(0, Math.min(prepared.val.length, VAL_TEXT_TOKENS));
  const parts: string[] = [];
  for (let i = 0, j = 0; i <= ids.length; i++) {
    if (i === ids.length || ids[i] === eos) {
      if (i > j) parts.push(tok.decode(ids.slice(j, i)));
      j = i + 1;
    }
  }
  writeAtomic(join(o.dir, "val.txt"), parts.join("\n\n"));
  writeAtomic(manifestPath, JSON.stringify(manifest, null, 2));
  return prepared;
}

function emptyCorpus(paths: string[]): DajianError {
  return new DajianError(
    "invalid_input",
    `no text found in ${paths.join(", ")}`,
    "give text files or JSONL with a string 'text' field per line",
  );
}

/** Append B's tokens to A (validation documents become the tail of one stream). */
function mergeInto(a: string, b: string): void {
  const fd = openSync(a, "a");
  try {
    writeSync(fd, readFileSync(b));
  } finally {
    closeSync(fd);
  }
}

function open(dir: string, m: DataManifest, vocab: BpeVocab): PreparedData {
  const trainPath = join(dir, "train.u32");
  if (m.valFromTail) {
    return {
      manifest: m,
      vocab,
      train: new TokenFile(trainPath, 0, m.tokens.train),
      val: new TokenFile(trainPath, m.tokens.train, m.tokens.train + m.tokens.validation),
    };
  }
  return { manifest: m, vocab, train: new TokenFile(trainPath), val: new TokenFile(join(dir, "val.u32")) };
}

export function writeAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w");
  try {
    const b = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    for (let off = 0; off < b.length;) off += writeSync(fd, b, off, b.length - off);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
