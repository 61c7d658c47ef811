// Streaming corpus I/O for `dajian data`: a record is one document. Inputs are read a line at a time and outputs
// written as they come, so memory stays bounded by the largest single document, never by the corpus.
// Text files: "paragraphs" mode (default) = documents separated by one or more blank lines; "lines" mode = one
// document per line. JSONL: one object per line with a text field (other fields pass through unchanged).
// Knowledge bases: one record per document, its text rebuilt from the stored chunks.
import { createReadStream, createWriteStream, renameSync, rmSync, type WriteStream } from "node:fs";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { basename } from "node:path";
import { DajianError } from "../core/errors.js";
import type { KnowledgeBases } from "../index/kb.js";
import type { ChunkRecord } from "../index/store.js";

export type RecordFormat = "paragraphs" | "lines" | "jsonl";

export interface DataRecord {
  text: string;
  /** Stable identity: "file:line" or "kb:document"; used for split hashing when present. */
  id: string;
  /** The original JSON object (JSONL input), written back with `text` replaced. */
  json?: Record<string, unknown>;
}

export interface ReadOptions {
  format?: RecordFormat | "auto";
  /** JSONL field holding the text (default "text"). */
  field?: string;
  /** Refuse documents longer than this many characters (bounded memory). Default 10 M. */
  maxDocChars?: number;
  /** Malformed lines are counted here and skipped (the batch continues). */
  onBadLine?: (where: string, reason: string) => void;
  /** Bytes read so far (for progress). */
  onBytes?: (bytes: number) => void;
}

export const DEFAULT_MAX_DOC_CHARS = 10_000_000;

/** Pick the format from the file name: .jsonl/.ndjson → jsonl, anything else → paragraphs. */
export function formatOf(file: string, format: RecordFormat | "auto" = "auto"): RecordFormat {
  if (format !== "auto") return format;
  return /\.(jsonl|ndjson)$/i.test(file) ? "jsonl" : "paragraphs";
}

export function parseFormat(v: string): RecordFormat | "auto" {
  if (v === "auto" || v === "paragraphs" || v === "lines" || v === "jsonl") return v;
  throw new DajianError("invalid_input", `unknown --format '${v}'`, "use auto, paragraphs, lines or jsonl");
}

function tooLong(where: string, max: number): DajianError {
  return new DajianError(
    "too_large",
    `document at ${where} exceeds ${max} characters`,
    "split it (one document per line or paragraph) or raise --max-doc-chars",
  );
}

/** Stream the records of one file. */
export async function* readFileRecords(file: string, o: ReadOptions = {}): AsyncGenerator<DataRecord> {
  const format = formatOf(file, o.format);
  const field = o.field ?? "text";
  const max = o.maxDocChars ?? DEFAULT_MAX_DOC_CHARS;
  const stream = createReadStream(file, { encoding: "utf8", highWaterMark: 1 << 16 });
  stream.on("error", () => {}); // surfaced through the readline iterator below
  let bytes = 0;
  if (o.onBytes) stream.on("data", (c) => o.onBytes!((bytes += Buffer.byteLength(c as string))));
  const rl = createInterface({ input: stream, crlfDelay: Infinity });
  const name = basename(file);
  let lineNo = 0;
  let buf: string[] = [];
  let bufChars = 0;
  let start = 0;
  try {
    for await (const raw of rl) {
      lineNo++;
      const line = lineNo === 1 ? raw.replace(/^\uFEFF/, "") : raw;
      if (format === "lines") {
        if (line.trim() === "") continue;
        if (line.length > max) throw tooLong(`${name}:${lineNo}`, max);
        yield { text: line, id: `${name}:${lineNo}` };
      } else if (format === "jsonl") {
        if (line.trim() === "") continue;
        if (line.length > max) throw tooLong(`${name}:${lineNo}`, max);
        let v: unknown;
        try {
          v = JSON.parse(line);
        } catch {
          o.onBadLine?.(`${name}:${lineNo}`, "not valid JSON");
          continue;
        }
        const obj = v as Record<string, unknown>;
        if (!obj || typeof obj !== "object" || Array.isArray(obj) || typeof obj[field] !== "string") {
          o.onBadLine?.(`${name}:${lineNo}`, `no string "${field}" field`);
          continue;
        }
        const id = typeof obj.id === "string" || typeof obj.id === "number" ? String(obj.id) : `${name}:${lineNo}`;
        yield { text: obj[field] as string, id, json: obj };
      } else if (line.trim() === "") {
        if (buf.length) yield { text: buf.join("\n"), id: `${name}:${start}` };
        buf = [];
        bufChars = 0;
      } else {
        if (buf.length === 0) start = lineNo;
        bufChars += line.length + 1;
        if (bufChars > max) throw tooLong(`${name}:${start}`, max);
        buf.push(line);
      }
    }
  } catch (err) {
    if (err instanceof DajianError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ENOENT") throw new DajianError("not_found", `input file not found: ${file}`, "check the path");
    if (e.code === "EISDIR") throw new DajianError("invalid_input", `${file} is a folder`, "give a text or JSONL file");
    throw new DajianError("invalid_input", `cannot read ${file}: ${e.message}`, "check the file and its permissions");
  } finally {
    rl.close();
    stream.destroy();
  }
  if (buf.length) yield { text: buf.join("\n"), id: `${name}:${start}` };
}

/**
 * A document's cleaned text rebuilt from its chunks: text chunks are exact slices of the full text, table chunks
 * end with their slice (after a repeated header line), and overlapping parts are taken once.
 */
export function textFromChunks(chunks: ChunkRecord[]): string {
  const parts: string[] = [];
  let pos = 0;
  for (const c of [...chunks].sort((a, b) => a.charStart - b.charStart)) {
    const len = c.charEnd - c.charStart;
    const slice = c.text.length >= len ? c.text.slice(c.text.length - len) : c.text;
    if (c.charEnd <= pos) continue;
    if (c.charStart > pos && parts.length) parts.push("\n\n");
    parts.push(c.charStart >= pos ? slice : slice.slice(pos - c.charStart));
    pos = c.charEnd;
  }
  return parts.join("");
}

/** One record per document of a knowledge base (documents are loaded one at a time). */
export async function* readKbRecords(kbs: KnowledgeBases, kb: string): AsyncGenerator<DataRecord> {
  for (const d of await kbs.documents(kb)) {
    const text = textFromChunks(await kbs.store.documentChunks(d.id));
    if (text.trim()) yield { text, id: `${kb}:${d.name}` };
  }
}

/** Records of several files in order. */
export async function* readAllRecords(files: string[], o: ReadOptions = {}): AsyncGenerator<DataRecord> {
  for (const f of files) yield* readFileRecords(f, o);
}

/**
 * Writes records to FILE atomically: into FILE.tmp-PID, renamed over FILE by close(), removed by abort(), so an
 * interrupted run never leaves a half-written output. Backpressure is honoured (bounded memory).
 */
export class RecordWriter {
  private readonly tmp: string;
  private readonly out: WriteStream;
  private failure?: Error;
  readonly format: RecordFormat;
  count = 0;

  constructor(
    readonly file: string,
    format: RecordFormat,
    private readonly field = "text",
  ) {
    this.format = format;
    this.tmp = `${file}.tmp-${process.pid}`;
    this.out = createWriteStream(this.tmp, { encoding: "utf8" });
    this.out.on("error", (e) => (this.failure = e));
  }

  async write(r: DataRecord): Promise<void> {
    if (this.failure) throw this.writeError();
    let s: string;
    if (this.format === "jsonl") s = JSON.stringify(r.json ? { ...r.json, [this.field]: r.text } : { text: r.text });
    else if (this.format === "lines") s = r.text.replace(/\r?\n/g, " ");
    else s = (this.count > 0 ? "\n" : "") + r.text.replace(/\n\s*\n/g, "\n");
    await this.writeLine(s);
  }

  /** Write one raw line (e.g. a JSON object of another shape). */
  async writeLine(s: string): Promise<void> {
    if (this.failure) throw this.writeError();
    this.count++;
    if (!this.out.write(s + "\n")) await once(this.out, "drain");
  }

  private writeError(): DajianError {
    return new DajianError(
      "invalid_input",
      `cannot write ${this.file}: ${this.failure?.message}`,
      "check the folder exists and is writable",
    );
  }

  async close(): Promise<void> {
    this.out.end();
    if (!this.out.closed) await once(this.out, "close").catch(() => {});
    if (this.failure) {
      rmSync(this.tmp, { force: true });
      throw this.writeError();
    }
    renameSync(this.tmp, this.file);
  }

  abort(): void {
    this.out.destroy();
    rmSync(this.tmp, { force: true });
  }
}

/** Run fn with writers that are committed together on success and all removed on failure. */
export async function withWriters<T>(writers: RecordWriter[], fn: () => Promise<T>): Promise<T> {
  try {
    const r = await fn();
    for (const w of writers) await w.close();
    return r;
  } catch (err) {
    for (const w of writers) w.abort();
    throw err;
  }
}
