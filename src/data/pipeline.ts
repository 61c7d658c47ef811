// The streaming drivers behind `dajian data clean|dedup|split`: records in, records out, one at a time, with
// counts, progress and atomic outputs (all written files appear together, or none).
import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { DajianError } from "../core/errors.js";
import { noProgress, type ProgressFn } from "../core/progress.js";
import type { KnowledgeBases } from "../index/kb.js";
import { checkCleanOptions, cleanText, type CleanOptions, type DropReason } from "./clean.js";
import { Deduper, type DedupCounts, type DedupOptions } from "./minhash.js";
import type { PiiKind } from "./pii.js";
import {
  formatOf,
  readAllRecords,
  readKbRecords,
  RecordWriter,
  withWriters,
  type DataRecord,
  type ReadOptions,
  type RecordFormat,
} from "./records.js";

export interface SourceSpec {
  files?: string[];
  /** A knowledge base as input (instead of files). */
  kb?: { kbs: KnowledgeBases; name: string };
  read?: ReadOptions;
}

export interface BadLine {
  where: string;
  reason: string;
}

export interface Source {
  records: AsyncIterable<DataRecord>;
  /** The input's own format (outputs default to it). */
  format: RecordFormat;
  /** Malformed lines skipped so far (first 20 kept). */
  bad: { count: number; first: BadLine[] };
}

/** Open files or a knowledge base as one record stream; progress counts bytes (files) or documents (KB). */
export function openSource(spec: SourceSpec, onProgress: ProgressFn = noProgress): Source {
  const bad = { count: 0, first: [] as BadLine[] };
  const onBadLine = (where: string, reason: string) => {
    bad.count++;
    if (bad.first.length < 20) bad.first.push({ where, reason });
    spec.read?.onBadLine?.(where, reason);
  };
  if (spec.kb) {
    if (spec.files?.length)
      throw new DajianError("invalid_input", "give input files or --kb, not both", "run once per input kind");
    const kb = spec.kb;
    async function* docs(): AsyncGenerator<DataRecord> {
      let n = 0;
      const total = (await kb.kbs.get(kb.name)).documentCount;
      for await (const r of readKbRecords(kb.kbs, kb.name)) {
        onProgress({ phase: "documents", done: ++n, total, item: r.id });
        yield r;
      }
    }
    return { records: docs(), format: "paragraphs", bad };
  }
  const files = spec.files ?? [];
  if (files.length === 0) throw new DajianError("invalid_input", "no input given", "pass input files or --kb NAME");
  let total = 0;
  for (const f of files) {
    try {
      total += statSync(f).size;
    } catch {
      throw new DajianError("not_found", `input file not found: ${f}`, "check the path");
    }
  }
  let before = 0;
  let last = 0;
  const onBytes = (b: number) => {
    last = b;
    onProgress({ phase: "bytes", done: before + b, total });
  };
  async function* all(): AsyncGenerator<DataRecord> {
    for (const f of files) {
      yield* readAllRecords([f], { ...spec.read, onBadLine, onBytes });
      before += last;
      last = 0;
    }
    if (before < total) onProgress({ phase: "bytes", done: total, total });
  }
  return { records: all(), format: formatOf(files[0], spec.read?.format), bad };
}

/** Output format: .jsonl/.ndjson → JSONL, else the input's text format (JSONL input → paragraphs). */
export function outputFormat(out: string, input: RecordFormat, explicit?: RecordFormat): RecordFormat {
  if (explicit) return explicit;
  if (/\.(jsonl|ndjson)$/i.test(out)) return "jsonl";
  return input === "jsonl" ? "paragraphs" : input;
}

export interface CleanReport {
  read: number;
  kept: number;
  dropped: Record<DropReason, number>;
  pii: Record<PiiKind, number>;
  charsIn: number;
  charsOut: number;
  badLines: number;
  badLineSamples: BadLine[];
  out: string;
}

export async function cleanCorpus(
  spec: SourceSpec,
  out: string,
  o: CleanOptions & { outFormat?: RecordFormat; onProgress?: ProgressFn } = {},
): Promise<CleanReport> {
  checkCleanOptions(o);
  const src = openSource(spec, o.onProgress);
  const w = new RecordWriter(out, outputFormat(out, src.format, o.outFormat), spec.read?.field);
  const r: CleanReport = {
    read: 0,
    kept: 0,
    dropped: { too_short: 0, too_long: 0, language: 0, symbols: 0, digits: 0, repeated_lines: 0 },
    pii: { phone: 0, id: 0, email: 0, landline: 0 },
    charsIn: 0,
    charsOut: 0,
    badLines: 0,
    badLineSamples: [],
    out,
  };
  await withWriters([w], async () => {
    for await (const rec of src.records) {
      r.read++;
      r.charsIn += rec.text.length;
      const c = cleanText(rec.text, o);
      if (!c.keep) {
        r.dropped[c.reason]++;
        continue;
      }
      for (const k of Object.keys(c.pii) as PiiKind[]) r.pii[k] += c.pii[k];
      r.kept++;
      r.charsOut += c.text.length;
      await w.write({ ...rec, text: c.text });
    }
  });
  r.badLines = src.bad.count;
  r.badLineSamples = src.bad.first;
  return r;
}

export interface DedupReport extends DedupCounts {
  duplicateRate: number;
  /** Jaccard threshold used to confirm a near duplicate, and where the LSH S-curve crosses 1/2. */
  threshold: number;
  lshThreshold: number;
  bands: number;
  rows: number;
  shingle: number;
  badLines: number;
  out: string;
  removedOut?: string;
}

export async function dedupCorpus(
  spec: SourceSpec,
  out: string,
  o: DedupOptions & { removedOut?: string; outFormat?: RecordFormat; onProgress?: ProgressFn } = {},
): Promise<DedupReport> {
  const d = new Deduper(o);
  const src = openSource(spec, o.onProgress);
  const w = new RecordWriter(out, outputFormat(out, src.format, o.outFormat), spec.read?.field);
  const removed = o.removedOut ? new RecordWriter(o.removedOut, "jsonl") : undefined;
  await withWriters(removed ? [w, removed] : [w], async () => {
    let i = 0;
    for await (const rec of src.records) {
      const v = d.check(rec.text);
      if (!v.duplicate) await w.write(rec);
      else if (removed)
        await removed.write({
          id: rec.id,
          text: rec.text,
          json: { id: rec.id, kind: v.kind, duplicateOf: v.of, similarity: v.similarity, index: i, text: rec.text },
        });
      i++;
    }
  });
  return {
    ...d.counts,
    duplicateRate: d.duplicateRate,
    threshold: d.o.threshold,
    lshThreshold: d.lshThreshold,
    bands: d.o.bands,
    rows: d.o.rows,
    shingle: d.o.shingle,
    badLines: src.bad.count,
    out,
    ...(o.removedOut ? { removedOut: o.removedOut } : {}),
  };
}

/** A record's position in [0, 1): hash of seed and identity (text when the record has no stable id). */
export function splitPoint(rec: DataRecord, seed: number, byText = false): number {
  const h = createHash("sha1")
    .update(`${seed}\u0000${byText ? rec.text : rec.id}`)
    .digest();
  return h.readUInt32BE(0) / 2 ** 32;
}

export interface SplitReport {
  read: number;
  train: number;
  validation: number;
  ratio: number;
  seed: number;
  trainOut: string;
  validationOut: string;
}

/**
 * Deterministic split: a record goes to validation when its hash point < ratio. Hashing the text (default) keeps
 * identical documents on the same side, so exact copies never leak from train into validation.
 */
export async function splitCorpus(
  spec: SourceSpec,
  trainOut: string,
  validationOut: string,
  o: { ratio?: number; seed?: number; byId?: boolean; outFormat?: RecordFormat; onProgress?: ProgressFn } = {},
): Promise<SplitReport> {
  const ratio = o.ratio ?? 0.05;
  const seed = o.seed ?? 1;
  if (!(ratio > 0 && ratio < 1))
    throw new DajianError(
      "invalid_input",
      `--val-ratio must be between 0 and 1, got ${ratio}`,
      "pass e.g. --val-ratio 0.05",
    );
  if (trainOut === validationOut)
    throw new DajianError(
      "invalid_input",
      "train and validation outputs are the same file",
      "give two different paths",
    );
  const src = openSource(spec, o.onProgress);
  const tw = new RecordWriter(trainOut, outputFormat(trainOut, src.format, o.outFormat), spec.read?.field);
  const vw = new RecordWriter(validationOut, outputFormat(validationOut, src.format, o.outFormat), spec.read?.field);
  const r: SplitReport = { read: 0, train: 0, validation: 0, ratio, seed, trainOut, validationOut };
  await withWriters([tw, vw], async () => {
    for await (const rec of src.records) {
      r.read++;
      if (splitPoint(rec, seed, !o.byId) < ratio) {
        r.validation++;
        await vw.write(rec);
      } else {
        r.train++;
        await tw.write(rec);
      }
    }
  });
  return r;
}
