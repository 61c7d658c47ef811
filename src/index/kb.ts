// KnowledgeBases: the library API behind `dajian kb|ingest|docs|search` and the HTTP server.
// Ingest is file by file: read → sha256 → (unchanged? skip) → parse → chunk → analyse → embed → ONE store
// transaction replacing the document. A crash (kill -9) can only lose the file in flight; the same command
// run again skips what is done (content hash) and finishes the rest.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { open as openFile } from "node:fs/promises";
import { join } from "node:path";
import { loadConfig, type DajianConfig } from "../core/config.js";
import { DajianError, errorLine } from "../core/errors.js";
import { ensureHome } from "../core/home.js";
import { noProgress, type ProgressFn } from "../core/progress.js";
import { chunkDocument, parseDocument, parseDocumentIsolated } from "../ingest/index.js";
import { openSqlite, type SqliteDb } from "../store/sqlite.js";
import { analyze, analyzerId, parseAnalyzerId, type AnalyzerOptions, DEFAULT_ANALYZER } from "./analyzer.js";
import { embedderFromConfig, type Embedder } from "./embed.js";
import { search, type Reranker, type SearchTuning } from "./search.js";
import { SqliteKbStore, type DocumentRecord, type KbRecord, type KbStore, type NewChunk } from "./store.js";
import type { SearchOptions, SearchResponse } from "./types.js";
import { badNameReason, walkPaths } from "./walk.js";

export interface FileSummary {
  file: string;
  status: "added" | "updated" | "unchanged" | "failed";
  chunks: number;
  pages?: number;
  reason?: string;
}

export interface IngestSummary {
  kb: string;
  files: FileSummary[];
  added: number;
  updated: number;
  unchanged: number;
  failed: number;
  chunks: number;
  pages: number;
  bytes: number;
  seconds: number;
  /** True when the signal stopped the batch early (files not reached are not listed). */
  aborted: boolean;
}

export interface IngestOptions {
  tags?: string[];
  onProgress?: ProgressFn;
  signal?: AbortSignal;
  /**
   * Parse each file in a worker thread with a heap cap and a hard deadline (parseDocumentIsolated), so a
   * hostile upload cannot hang or exhaust the process. Default: true for ingestItems (uploads), false for
   * ingest (local paths the user chose; `dajian ingest --isolate` turns it on).
   */
  isolate?: boolean;
  /** Heap cap for an isolated parse in MiB (default 1024). */
  parseHeapMb?: number;
}

/** One file to ingest: from disk (path) or in memory (uploads). */
export type IngestItem = { name: string; path: string; bytes?: number } | { name: string; data: Buffer };

export interface KnowledgeBasesOptions {
  /** Reuse an open DB (server); otherwise <home>/dajian.db is opened and closed by close(). */
  db?: SqliteDb;
  store?: KbStore;
  config?: DajianConfig;
  /** Override the embedder from config; null = no vectors even if configured. */
  embedder?: Embedder | null;
  reranker?: Reranker;
  tuning?: Partial<SearchTuning>;
}

const KB_NAME = /^[\p{L}\p{N}][\p{L}\p{N}_.-]{0,63}$/u;

function checkKbName(name: string): void {
  if (!KB_NAME.test(name)) {
    throw new DajianError(
      "invalid_input",
      `invalid knowledge-base name '${name}'`,
      "use 1–64 letters, digits, '_', '-' or '.', starting with a letter or digit",
    );
  }
}

function checkTags(tags: string[] | undefined): string[] {
  const out = [...new Set((tags ?? []).map((t) => t.trim()))];
  for (const t of out) {
    if (t === "" || t.length > 64 || /[\u0000-\u001f,]/.test(t)) {
      throw new DajianError("invalid_input", `invalid tag '${t}'`, "tags are 1–64 characters without commas");
    }
  }
  return out.sort();
}

export class KnowledgeBases {
  readonly store: KbStore;
  readonly config: DajianConfig;
  private readonly ownDb?: SqliteDb;
  private embedderValue?: Embedder | null;
  private readonly reranker?: Reranker;
  private readonly tuning?: Partial<SearchTuning>;

  constructor(
    readonly home: string,
    o: KnowledgeBasesOptions = {},
  ) {
    const paths = ensureHome(home);
    this.config = o.config ?? loadConfig(home);
    if (o.store) this.store = o.store;
    else {
      const db = o.db ?? openSqlite(paths.db);
      if (!o.db) this.ownDb = db;
      this.store = new SqliteKbStore(db);
    }
    this.embedderValue = o.embedder;
    this.reranker = o.reranker;
    this.tuning = o.tuning;
  }

  /** The configured embedder, created on first use (so keyword-only runs never touch it). */
  get embedder(): Embedder | undefined {
    if (this.embedderValue === undefined) this.embedderValue = embedderFromConfig(this.config.embedding) ?? null;
    return this.embedderValue ?? undefined;
  }

  async close(): Promise<void> {
    if (this.embedderValue) await this.embedderValue.close?.();
    this.ownDb?.close();
  }

  async create(name: string, o: { analyzer?: AnalyzerOptions } = {}): Promise<KbRecord> {
    checkKbName(name);
    return this.store.createKb(name, analyzerId(o.analyzer ?? DEFAULT_ANALYZER));
  }

  list(): Promise<KbRecord[]> {
    return this.store.listKbs();
  }

  async get(name: string): Promise<KbRecord> {
    const kb = await this.store.getKb(name);
    if (!kb) {
      throw new DajianError(
        "not_found",
        `knowledge base '${name}' not found`,
        `create it with \`dajian kb create ${name}\` (see \`dajian kb list\`)`,
      );
    }
    return kb;
  }

  async delete(name: string): Promise<void> {
    const kb = await this.get(name);
    await this.store.deleteKb(kb.id);
  }

  async documents(name: string): Promise<DocumentRecord[]> {
    return this.store.listDocuments((await this.get(name)).id);
  }

  /** Find a document by name (or numeric id). */
  async document(name: string, doc: string): Promise<DocumentRecord> {
    const kb = await this.get(name);
    const d =
      (await this.store.getDocumentByName(kb.id, doc)) ??
      (/^\d+$/.test(doc) ? await this.store.getDocument(kb.id, Number(doc)) : undefined);
    if (!d) {
      throw new DajianError(
        "not_found",
        `document '${doc}' not found in knowledge base '${name}'`,
        `list documents with \`dajian docs ${name}\``,
      );
    }
    return d;
  }

  async removeDocument(name: string, doc: string): Promise<{ document: string; chunks: number }> {
    const d = await this.document(name, doc);
    const chunks = await this.store.removeDocument(d.kbId, d.id);
    return { document: d.name, chunks };
  }

  async search(name: string, query: string, opts: SearchOptions = {}): Promise<SearchResponse> {
    const kb = await this.get(name);
    return search(
      { store: this.store, embedder: this.embedder, reranker: this.reranker, tuning: this.tuning },
      kb,
      query,
      opts,
    );
  }

  /** Many queries, answers in input order (used by batch search and evaluation). */
  async searchBatch(
    name: string,
    queries: { id?: string; question: string }[],
    opts: SearchOptions = {},
  ): Promise<{ id?: string; results: SearchResponse["results"] }[]> {
    const kb = await this.get(name);
    const deps = { store: this.store, embedder: this.embedder, reranker: this.reranker, tuning: this.tuning };
    const out: { id?: string; results: SearchResponse["results"] }[] = [];
    for (const q of queries) out.push({ id: q.id, results: (await search(deps, kb, q.question, opts)).results });
    return out;
  }

  /** Ingest files and folders from disk. */
  async ingest(name: string, paths: string[], opts: IngestOptions = {}): Promise<IngestSummary> {
    const { items, failures } = walkPaths(paths);
    return this.ingestItems(name, items, { isolate: false, ...opts }, failures);
  }

  /** Ingest named items (paths or in-memory uploads); `preFailed` are listed in the summary as failed. */
  async ingestItems(
    name: string,
    items: IngestItem[],
    opts: IngestOptions = {},
    preFailed: { file: string; reason: string }[] = [],
  ): Promise<IngestSummary> {
    const started = Date.now();
    let kb = await this.get(name);
    const tags = checkTags(opts.tags);
    const onProgress = opts.onProgress ?? noProgress;
    const embedder = this.embedder;
    if (!embedder && kb.embedModel) {
      throw new DajianError(
        "invalid_input",
        `knowledge base '${name}' holds vectors from ${kb.embedModel}, but no embedding model is configured`,
        "restore the `embedding` section of config.json, so new documents get vectors too",
      );
    }
    if (embedder && kb.embedModel && kb.embedModel !== embedder.name) {
      throw new DajianError(
        "invalid_input",
        `knowledge base '${name}' holds vectors from ${kb.embedModel}, but the configured embedding model is ${embedder.name}`,
        "restore the previous `embedding` config, or create a new knowledge base for the new model",
      );
    }
    const summary: IngestSummary = {
      kb: name,
      files: preFailed.map((f) => ({ file: f.file, status: "failed", chunks: 0, reason: f.reason })),
      added: 0,
      updated: 0,
      unchanged: 0,
      failed: preFailed.length,
      chunks: 0,
      pages: 0,
      bytes: 0,
      seconds: 0,
      aborted: false,
    };
    const total = items.length;
    const report = (done: number, item?: string) =>
      onProgress({
        phase: "files",
        done,
        total,
        item,
        counters: { pages: summary.pages, chunks: summary.chunks, failed: summary.failed },
      });
    report(0);
    for (let i = 0; i < items.length; i++) {
      if (opts.signal?.aborted) {
        summary.aborted = true;
        break;
      }
      const item = items[i];
      report(i, item.name);
      let r: FileSummary;
      try {
        r = await this.ingestOne(kb, item, tags, embedder, opts);
        if (r.status !== "failed" && embedder && !kb.embedModel) kb = await this.get(name); // picked up dims
      } catch (err) {
        if (opts.signal?.aborted) {
          summary.aborted = true;
          break;
        }
        r = { file: item.name, status: "failed", chunks: 0, reason: errorLine(err) };
      }
      summary.files.push(r);
      summary[r.status]++;
      if (r.status === "added" || r.status === "updated") {
        summary.chunks += r.chunks;
        summary.pages += r.pages ?? 0;
      }
      summary.bytes += "data" in item ? item.data.length : (item.bytes ?? 0);
      report(i + 1, item.name);
    }
    summary.seconds = (Date.now() - started) / 1000;
    return summary;
  }

  private async readItem(item: IngestItem): Promise<Buffer> {
    if ("data" in item) return item.data;
    const max = this.config.ingest.maxFileBytes;
    // Check the size on the open handle before reading, so an over-limit file is never loaded into memory.
    const fh = await openFile(item.path, "r");
    try {
      const st = await fh.stat();
      if (st.size > max) {
        throw new DajianError(
          "too_large",
          `file is ${(st.size / 1048576).toFixed(1)} MiB, over the ${(max / 1048576).toFixed(1)} MiB limit`,
          "split the file or raise ingest.maxFileBytes (DAJIAN_MAX_FILE_BYTES)",
        );
      }
      return await fh.readFile();
    } finally {
      await fh.close();
    }
  }

  private async ingestOne(
    kb: KbRecord,
    item: IngestItem,
    tags: string[],
    embedder: Embedder | undefined,
    opts: IngestOptions,
  ): Promise<FileSummary> {
    const signal = opts.signal;
    const bad = badNameReason(item.name);
    if (bad) return { file: item.name, status: "failed", chunks: 0, reason: bad };
    const bytes = await this.readItem(item);
    if (bytes.length === 0) {
      return { file: item.name, status: "failed", chunks: 0, reason: "empty file (0 bytes) — nothing to index" };
    }
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const existing = await this.store.getDocumentByName(kb.id, item.name);
    if (existing && existing.sha256 === sha256 && existing.embedModel === embedder?.name) {
      if (tags.length > 0 && JSON.stringify(existing.tags) !== JSON.stringify(tags)) {
        await this.store.updateDocumentTags(existing.id, tags);
      }
      return { file: item.name, status: "unchanged", chunks: existing.chunkCount, pages: existing.pages };
    }

    const parseOpts = { maxBytes: this.config.ingest.maxFileBytes };
    const parsed =
      (opts.isolate ?? true)
        ? await parseDocumentIsolated(bytes, item.name, { ...parseOpts, maxHeapMb: opts.parseHeapMb })
        : await parseDocument(bytes, item.name, parseOpts);
    const chunks = chunkDocument(parsed, {
      targetTokens: this.config.ingest.chunkTokens,
      overlapTokens: this.config.ingest.chunkOverlap,
    });
    if (chunks.length === 0) {
      const reason =
        parsed.needsOcrPages.length > 0
          ? `no text layer (${parsed.needsOcrPages.length} page(s) need OCR) — OCR is not supported yet; export the file with text`
          : "no text found in the file — check that it is not empty or image-only";
      return { file: item.name, status: "failed", chunks: 0, pages: parsed.pages, reason };
    }

    const ao: AnalyzerOptions = parseAnalyzerId(kb.analyzer);
    const title = parsed.title ? [parsed.title] : [];
    const rows: NewChunk[] = chunks.map((c) => ({
      ...c,
      terms: analyze(c.text, ao),
      headTerms: analyze([...title, ...c.headingPath].join(" "), ao),
    }));
    if (embedder) {
      const vecs = await embedder.embed(
        chunks.map((c) => (c.headingPath.length ? c.headingPath.join(" > ") + "\n" : "") + c.text),
        signal,
      );
      const dims = vecs[0].length;
      if (kb.embedDims !== undefined && dims !== kb.embedDims) {
        throw new DajianError(
          "upstream",
          `embedding model returned ${dims} dimensions; this knowledge base stores ${kb.embedDims}`,
          "use the same embedding model the knowledge base was built with",
        );
      }
      if (kb.embedModel === undefined) await this.store.setKbEmbedding(kb.id, embedder.name, dims);
      rows.forEach((r, i) => (r.vector = vecs[i]));
    }

    this.keepOriginal(sha256, bytes);
    const warnings = [...parsed.warnings];
    if (parsed.needsOcrPages.length > 0) warnings.push(`pages needing OCR: ${parsed.needsOcrPages.join(", ")}`);
    const doc = await this.store.replaceDocument(
      kb.id,
      {
        name: item.name,
        sourcePath: "path" in item ? item.path : undefined,
        sha256,
        bytes: bytes.length,
        format: parsed.format,
        title: parsed.title,
        pages: parsed.pages,
        tags: tags.length > 0 ? tags : (existing?.tags ?? []),
        status: parsed.needsOcrPages.length > 0 ? "partial" : "ready",
        needsOcrPages: parsed.needsOcrPages,
        warnings,
        embedModel: embedder?.name,
      },
      rows,
    );
    return {
      file: item.name,
      status: existing ? "updated" : "added",
      chunks: doc.chunkCount,
      pages: parsed.pages,
      ...(warnings.length ? { reason: warnings.join("; ") } : {}),
    };
  }

  /** Original bytes by content hash (for downloads and re-indexing); written before the index commit. */
  private keepOriginal(sha256: string, bytes: Buffer): void {
    const dir = join(this.home, "files", sha256.slice(0, 2));
    const file = join(dir, sha256);
    if (existsSync(file)) return;
    mkdirSync(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, bytes);
    renameSync(tmp, file);
  }

  /** Path of a document's original bytes under the home dir. */
  originalPath(doc: DocumentRecord): string {
    return join(this.home, "files", doc.sha256.slice(0, 2), doc.sha256);
  }
}
