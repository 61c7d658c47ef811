// Persistence of knowledge bases behind one interface (KbStore), so the KB service never writes SQL itself.
// SqliteKbStore is the embedded default: metadata, chunks, an inverted keyword index over pre-analysed terms
// and float32 vectors all live in the home dir's SQLite file, and every document replacement is ONE
// transaction (old chunks, postings, term stats and vectors out, new ones in), so a crash leaves either the old
// or the new document, never a mix.
//
// Keyword index layout: kb_postings has one row per (KB, term, document) whose blob packs, for each chunk of
// that document containing the term, three uint32: chunk id, tf (body | head << 16), chunk length in terms.
// A query reads one row per document containing each query term and scores BM25 in TypeScript, so k1/b are
// tunable and the cost is bounded by the (IDF-pruned) posting lists, not by a full scan.
//
// PostgreSQL plan (a PgKbStore implementing the same interface): the same tables (BYTEA blobs, BIGSERIAL ids),
// the same TypeScript scoring; vectors in pgvector `vector(d)` with HNSW; replaceDocument in one transaction.
// Methods are async for that reason.
import type { Statement } from "better-sqlite3";
import type { SqliteDb } from "../store/sqlite.js";
import { DajianError } from "../core/errors.js";
import type { Chunk } from "../ingest/types.js";

export interface KbRecord {
  id: number;
  name: string;
  analyzer: string;
  embedModel?: string;
  embedDims?: number;
  chunkCount: number;
  documentCount: number;
  createdAt: number;
}

export type DocumentStatus = "ready" | "partial";

export interface DocumentRecord {
  id: number;
  kbId: number;
  name: string;
  sourcePath?: string;
  sha256: string;
  bytes: number;
  format: string;
  title?: string;
  pages?: number;
  tags: string[];
  /** ready = fully indexed; partial = indexed, but some pages need OCR. */
  status: DocumentStatus;
  needsOcrPages: number[];
  warnings: string[];
  chunkCount: number;
  /** Embedding model whose vectors this document carries (undefined = keyword only). */
  embedModel?: string;
  createdAt: number;
  updatedAt: number;
}

export type NewDocument = Omit<DocumentRecord, "id" | "kbId" | "chunkCount" | "createdAt" | "updatedAt">;

/** A chunk as the chunker made it, plus what the index needs. */
export interface NewChunk extends Chunk {
  /** Analysed terms of the text and of the heading path (space-joined into the keyword index). */
  terms: string[];
  headTerms: string[];
  /** Unit-length embedding, when the KB has an embedding model. */
  vector?: Float32Array;
}

export interface ChunkRecord {
  id: number;
  docId: number;
  documentName: string;
  ordinal: number;
  text: string;
  page?: number;
  pageEnd?: number;
  headingPath: string[];
  charStart: number;
  charEnd: number;
  kind: string;
}

export interface Hit {
  chunkId: number;
  docId: number;
  score: number;
}

export interface Bm25Params {
  k1: number;
  b: number;
  /** A heading-path occurrence counts this many body occurrences (BM25F-style field weight). */
  headWeight: number;
}

export const DEFAULT_BM25: Bm25Params = { k1: 1.2, b: 0.75, headWeight: 0.5 };

/** Accept a candidate's document (filters + permissions), evaluated inside retrieval. */
export type DocFilter = (docId: number) => boolean;

export interface KbStore {
  createKb(name: string, analyzer: string): Promise<KbRecord>;
  listKbs(): Promise<KbRecord[]>;
  getKb(name: string): Promise<KbRecord | undefined>;
  deleteKb(id: number): Promise<void>;
  setKbEmbedding(id: number, model: string, dims: number): Promise<void>;

  listDocuments(kbId: number): Promise<DocumentRecord[]>;
  getDocumentByName(kbId: number, name: string): Promise<DocumentRecord | undefined>;
  getDocument(kbId: number, id: number): Promise<DocumentRecord | undefined>;
  /** Atomically insert or replace the document `doc.name` with exactly these chunks (+ index rows, vectors). */
  replaceDocument(kbId: number, doc: NewDocument, chunks: NewChunk[]): Promise<DocumentRecord>;
  updateDocumentTags(docId: number, tags: string[]): Promise<void>;
  /** Remove a document with its chunks, index rows and vectors; returns the chunks removed. */
  removeDocument(kbId: number, docId: number): Promise<number>;
  /** Ids of documents matching names/ids and carrying all tags; undefined when there is no filter. */
  resolveDocumentFilter(kbId: number, documents?: string[], tags?: string[]): Promise<Set<number> | undefined>;

  /** Number of chunks whose keyword index contains each term. */
  termDocFreq(kbId: number, terms: string[]): Promise<Map<string, number>>;
  keywordSearch(
    kbId: number,
    terms: string[],
    limit: number,
    accept?: DocFilter,
    p?: Partial<Bm25Params>,
  ): Promise<Hit[]>;
  vectorSearch(kbId: number, query: Float32Array, limit: number, accept?: DocFilter): Promise<Hit[]>;
  getChunks(ids: number[]): Promise<Map<number, ChunkRecord>>;
  /** Chunks of a document, in order (eval, downloads). */
  documentChunks(docId: number): Promise<ChunkRecord[]>;
  /** Invariant check (tests, `dajian kb check` later): returns human-readable problems, [] when consistent. */
  checkConsistency(kbId: number): Promise<string[]>;
}

interface KbRow {
  id: number;
  name: string;
  analyzer: string;
  embed_model: string | null;
  embed_dims: number | null;
  chunk_count: number;
  total_len: number;
  created_at: number;
  docs?: number;
}

interface DocRow {
  id: number;
  kb_id: number;
  name: string;
  source_path: string | null;
  sha256: string;
  bytes: number;
  format: string;
  title: string | null;
  pages: number | null;
  tags: string;
  status: string;
  needs_ocr: string;
  warnings: string;
  chunk_count: number;
  embed_model: string | null;
  created_at: number;
  updated_at: number;
}

interface ChunkRow {
  id: number;
  doc_id: number;
  doc_name: string;
  ordinal: number;
  text: string;
  page: number | null;
  page_end: number | null;
  heading: string;
  char_start: number;
  char_end: number;
  kind: string;
}

const opt = <T>(v: T | null): T | undefined => (v === null ? undefined : v);

function kbFromRow(r: KbRow): KbRecord {
  return {
    id: r.id,
    name: r.name,
    analyzer: r.analyzer,
    embedModel: opt(r.embed_model),
    embedDims: opt(r.embed_dims),
    chunkCount: r.chunk_count,
    documentCount: r.docs ?? 0,
    createdAt: r.created_at,
  };
}

function docFromRow(r: DocRow): DocumentRecord {
  return {
    id: r.id,
    kbId: r.kb_id,
    name: r.name,
    sourcePath: opt(r.source_path),
    sha256: r.sha256,
    bytes: r.bytes,
    format: r.format,
    title: opt(r.title),
    pages: opt(r.pages),
    tags: JSON.parse(r.tags) as string[],
    status: r.status as DocumentStatus,
    needsOcrPages: JSON.parse(r.needs_ocr) as number[],
    warnings: JSON.parse(r.warnings) as string[],
    chunkCount: r.chunk_count,
    embedModel: opt(r.embed_model),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function chunkFromRow(r: ChunkRow): ChunkRecord {
  return {
    id: r.id,
    docId: r.doc_id,
    documentName: r.doc_name,
    ordinal: r.ordinal,
    text: r.text,
    page: opt(r.page),
    pageEnd: opt(r.page_end),
    headingPath: JSON.parse(r.heading) as string[],
    charStart: r.char_start,
    charEnd: r.char_end,
    kind: r.kind,
  };
}

/** Term → packed postings of one document's chunks (see the layout above). */
function documentPostings(chunkIds: number[], chunks: NewChunk[]): Map<string, number[]> {
  const post = new Map<string, number[]>();
  chunks.forEach((c, i) => {
    const tf = new Map<string, number>();
    for (const t of c.terms) tf.set(t, (tf.get(t) ?? 0) + 1);
    for (const t of c.headTerms) tf.set(t, (tf.get(t) ?? 0) + 0x10000);
    for (const [t, v] of tf) {
      const body = Math.min(v & 0xffff, 0xffff);
      const head = Math.min(Math.floor(v / 0x10000), 0xffff);
      let arr = post.get(t);
      if (!arr) post.set(t, (arr = []));
      arr.push(chunkIds[i], ((head << 16) | body) >>> 0, Math.min(c.terms.length, 0xffffffff));
    }
  });
  return post;
}

function uniqueTerms(c: NewChunk): number {
  return new Set([...c.terms, ...c.headTerms]).size;
}

function toBlob(v: Float32Array): Buffer {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

interface DecodedPostings {
  /** Document of each posting. */
  docIds: Int32Array;
  /** Triples (chunk id, tf body | head << 16, chunk length). */
  data: Uint32Array;
}

/** Decoded posting lists of recently used terms, valid while the KB's version is unchanged (LRU-bounded). */
interface PostingCache {
  version: number;
  terms: Map<string, DecodedPostings>;
  size: number;
}

/** At most this many cached postings per KB (~16 bytes each: 64 MiB). */
const POSTING_CACHE_MAX = 4_000_000;

interface VectorCache {
  version: number;
  dims: number;
  chunkIds: Int32Array;
  docIds: Int32Array;
  matrix: Float32Array;
}

export class SqliteKbStore implements KbStore {
  private vectorCache = new Map<number, VectorCache>();
  private postingCache = new Map<number, PostingCache>();

  private statements = new Map<string, Statement>();

  constructor(readonly db: SqliteDb) {}

  /** Prepared statements are cached: preparing costs more than running the small hot queries. */
  private stmt(sql: string): Statement {
    let st = this.statements.get(sql);
    if (!st) this.statements.set(sql, (st = this.db.prepare(sql)));
    return st;
  }

  async createKb(name: string, analyzer: string): Promise<KbRecord> {
    const db = this.db;
    const id = db
      .transaction(() => {
        const exists = db.prepare("SELECT 1 FROM kbs WHERE name = ?").get(name);
        if (exists) {
          throw new DajianError(
            "already_exists",
            `knowledge base '${name}' already exists`,
            `ingest into it with \`dajian ingest ${name} PATH\`, or pick another name`,
          );
        }
        const r = db
          .prepare("INSERT INTO kbs (name, analyzer, created_at) VALUES (?, ?, ?)")
          .run(name, analyzer, Date.now());
        return Number(r.lastInsertRowid);
      })
      .immediate();
    return (await this.getKbById(id))!;
  }

  private async getKbById(id: number): Promise<KbRecord | undefined> {
    const r = this.db
      .prepare("SELECT k.*, (SELECT count(*) FROM kb_documents d WHERE d.kb_id = k.id) AS docs FROM kbs k WHERE id = ?")
      .get(id) as KbRow | undefined;
    return r && kbFromRow(r);
  }

  async listKbs(): Promise<KbRecord[]> {
    const rows = this.db
      .prepare(
        "SELECT k.*, (SELECT count(*) FROM kb_documents d WHERE d.kb_id = k.id) AS docs FROM kbs k ORDER BY name",
      )
      .all() as KbRow[];
    return rows.map(kbFromRow);
  }

  async getKb(name: string): Promise<KbRecord | undefined> {
    const r = this.db
      .prepare(
        "SELECT k.*, (SELECT count(*) FROM kb_documents d WHERE d.kb_id = k.id) AS docs FROM kbs k WHERE name = ?",
      )
      .get(name) as KbRow | undefined;
    return r && kbFromRow(r);
  }

  async deleteKb(id: number): Promise<void> {
    const db = this.db;
    db.transaction(() => {
      db.prepare("DELETE FROM kb_postings WHERE kb_id = ?").run(id);
      db.prepare("DELETE FROM kb_terms WHERE kb_id = ?").run(id);
      db.prepare("DELETE FROM kb_vectors WHERE kb_id = ?").run(id);
      db.prepare("DELETE FROM kb_chunks WHERE kb_id = ?").run(id);
      db.prepare("DELETE FROM kb_documents WHERE kb_id = ?").run(id);
      db.prepare("DELETE FROM kbs WHERE id = ?").run(id);
    }).immediate();
    this.vectorCache.delete(id);
    this.postingCache.delete(id);
  }

  async setKbEmbedding(id: number, model: string, dims: number): Promise<void> {
    this.db
      .prepare("UPDATE kbs SET embed_model = ?, embed_dims = ?, version = version + 1 WHERE id = ?")
      .run(model, dims, id);
  }

  async listDocuments(kbId: number): Promise<DocumentRecord[]> {
    const rows = this.db.prepare("SELECT * FROM kb_documents WHERE kb_id = ? ORDER BY name").all(kbId) as DocRow[];
    return rows.map(docFromRow);
  }

  async getDocumentByName(kbId: number, name: string): Promise<DocumentRecord | undefined> {
    const r = this.db.prepare("SELECT * FROM kb_documents WHERE kb_id = ? AND name = ?").get(kbId, name) as
      DocRow | undefined;
    return r && docFromRow(r);
  }

  async getDocument(kbId: number, id: number): Promise<DocumentRecord | undefined> {
    const r = this.db.prepare("SELECT * FROM kb_documents WHERE kb_id = ? AND id = ?").get(kbId, id) as
      DocRow | undefined;
    return r && docFromRow(r);
  }

  /**
   * Delete a document's postings (and their share of the term stats), vectors and chunks, inside the caller's
   * transaction. Returns the chunks and term occurrences removed (for the KB's BM25 statistics).
   */
  private deleteDocumentRows(kbId: number, docId: number): { chunks: number; len: number } {
    const db = this.db;
    const dec = db.prepare("UPDATE kb_terms SET df = df - ? WHERE kb_id = ? AND term = ?");
    const rows = db.prepare("SELECT term, length(data) / 12 FROM kb_postings WHERE doc_id = ?").raw().all(docId) as [
      string,
      number,
    ][];
    for (const [term, n] of rows) dec.run(n, kbId, term);
    if (rows.length) db.prepare("DELETE FROM kb_terms WHERE kb_id = ? AND df <= 0").run(kbId);
    db.prepare("DELETE FROM kb_postings WHERE doc_id = ?").run(docId);
    db.prepare("DELETE FROM kb_vectors WHERE chunk_id IN (SELECT id FROM kb_chunks WHERE doc_id = ?)").run(docId);
    const len = db.prepare("SELECT coalesce(sum(len), 0) FROM kb_chunks WHERE doc_id = ?").pluck().get(docId) as number;
    const chunks = db.prepare("DELETE FROM kb_chunks WHERE doc_id = ?").run(docId).changes;
    return { chunks, len };
  }

  async replaceDocument(kbId: number, doc: NewDocument, chunks: NewChunk[]): Promise<DocumentRecord> {
    const db = this.db;
    const now = Date.now();
    const insChunk = db.prepare(
      `INSERT INTO kb_chunks (kb_id, doc_id, ordinal, text, page, page_end, heading, char_start, char_end, tokens,
       kind, len, uniq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const insPost = db.prepare("INSERT INTO kb_postings (kb_id, term, doc_id, data) VALUES (?, ?, ?, ?)");
    const incDf = db.prepare(
      "INSERT INTO kb_terms (kb_id, term, df) VALUES (?, ?, ?) ON CONFLICT (kb_id, term) DO UPDATE SET df = df + excluded.df",
    );
    const insVec = db.prepare("INSERT INTO kb_vectors (chunk_id, kb_id, vec) VALUES (?, ?, ?)");
    const docId = db
      .transaction(() => {
        const old = db.prepare("SELECT id FROM kb_documents WHERE kb_id = ? AND name = ?").get(kbId, doc.name) as
          { id: number } | undefined;
        let id: number;
        let removed = { chunks: 0, len: 0 };
        const fields = [
          doc.sourcePath ?? null,
          doc.sha256,
          doc.bytes,
          doc.format,
          doc.title ?? null,
          doc.pages ?? null,
          JSON.stringify(doc.tags),
          doc.status,
          JSON.stringify(doc.needsOcrPages),
          JSON.stringify(doc.warnings),
          chunks.length,
          doc.embedModel ?? null,
        ];
        if (old) {
          id = old.id;
          removed = this.deleteDocumentRows(kbId, id);
          db.prepare(
            `UPDATE kb_documents SET source_path = ?, sha256 = ?, bytes = ?, format = ?, title = ?, pages = ?, tags = ?,
             status = ?, needs_ocr = ?, warnings = ?, chunk_count = ?, embed_model = ?, updated_at = ? WHERE id = ?`,
          ).run(...fields, now, id);
        } else {
          const r = db
            .prepare(
              `INSERT INTO kb_documents (kb_id, name, source_path, sha256, bytes, format, title, pages, tags, status,
               needs_ocr, warnings, chunk_count, embed_model, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
            )
            .run(kbId, doc.name, ...fields, now, now);
          id = Number(r.lastInsertRowid);
        }
        this.writeTags(id, doc.tags);
        const chunkIds: number[] = [];
        let len = 0;
        for (const c of chunks) {
          const r = insChunk.run(
            kbId,
            id,
            c.ordinal,
            c.text,
            c.page ?? null,
            c.pageEnd ?? null,
            JSON.stringify(c.headingPath),
            c.charStart,
            c.charEnd,
            c.tokens,
            c.kind,
            c.terms.length,
            uniqueTerms(c),
          );
          const chunkId = Number(r.lastInsertRowid);
          chunkIds.push(chunkId);
          len += c.terms.length;
          if (c.vector) insVec.run(chunkId, kbId, toBlob(c.vector));
        }
        for (const [term, arr] of documentPostings(chunkIds, chunks)) {
          insPost.run(kbId, term, id, Buffer.from(Uint32Array.from(arr).buffer));
          incDf.run(kbId, term, arr.length / 3);
        }
        db.prepare(
          "UPDATE kbs SET chunk_count = chunk_count + ?, total_len = total_len + ?, version = version + 1 WHERE id = ?",
        ).run(chunks.length - removed.chunks, len - removed.len, kbId);
        return id;
      })
      .immediate();
    return (await this.getDocument(kbId, docId))!;
  }

  private writeTags(docId: number, tags: string[]): void {
    this.db.prepare("DELETE FROM kb_document_tags WHERE doc_id = ?").run(docId);
    const ins = this.db.prepare("INSERT OR IGNORE INTO kb_document_tags (doc_id, tag) VALUES (?, ?)");
    for (const t of tags) ins.run(docId, t);
  }

  async updateDocumentTags(docId: number, tags: string[]): Promise<void> {
    this.db.transaction(() => {
      this.db
        .prepare("UPDATE kb_documents SET tags = ?, updated_at = ? WHERE id = ?")
        .run(JSON.stringify(tags), Date.now(), docId);
      this.writeTags(docId, tags);
    })();
  }

  async removeDocument(kbId: number, docId: number): Promise<number> {
    const db = this.db;
    return db
      .transaction(() => {
        const removed = this.deleteDocumentRows(kbId, docId);
        db.prepare("DELETE FROM kb_documents WHERE id = ? AND kb_id = ?").run(docId, kbId);
        db.prepare(
          "UPDATE kbs SET chunk_count = chunk_count - ?, total_len = total_len - ?, version = version + 1 WHERE id = ?",
        ).run(removed.chunks, removed.len, kbId);
        return removed.chunks;
      })
      .immediate();
  }

  async resolveDocumentFilter(kbId: number, documents?: string[], tags?: string[]): Promise<Set<number> | undefined> {
    const hasDocs = documents !== undefined && documents.length > 0;
    const hasTags = tags !== undefined && tags.length > 0;
    if (!hasDocs && !hasTags) return undefined;
    let ids: Set<number> | undefined;
    if (hasDocs) {
      ids = new Set<number>();
      const byName = this.db.prepare("SELECT id FROM kb_documents WHERE kb_id = ? AND name = ?").pluck();
      const byId = this.db.prepare("SELECT id FROM kb_documents WHERE kb_id = ? AND id = ?").pluck();
      for (const d of documents!) {
        const v = (byName.get(kbId, d) ?? (/^\d+$/.test(d) ? byId.get(kbId, Number(d)) : undefined)) as
          number | undefined;
        if (v !== undefined) ids.add(v);
      }
    }
    if (hasTags) {
      const uniq = [...new Set(tags)];
      const rows = this.db
        .prepare(
          `SELECT t.doc_id FROM kb_document_tags t JOIN kb_documents d ON d.id = t.doc_id
           WHERE d.kb_id = ? AND t.tag IN (${uniq.map(() => "?").join(",")})
           GROUP BY t.doc_id HAVING count(*) = ?`,
        )
        .pluck()
        .all(kbId, ...uniq, uniq.length) as number[];
      const tagged = new Set(rows);
      ids = ids ? new Set([...ids].filter((i) => tagged.has(i))) : tagged;
    }
    return ids;
  }

  async termDocFreq(kbId: number, terms: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const q = this.stmt("SELECT df FROM kb_terms WHERE kb_id = ? AND term = ?").pluck();
    for (const t of terms) out.set(t, (q.get(kbId, t) as number | undefined) ?? 0);
    return out;
  }

  private scratchArrays = { score: new Float64Array(0), doc: new Int32Array(0) };

  private scratch(size: number) {
    if (this.scratchArrays.score.length < size) {
      const cap = Math.max(size, this.scratchArrays.score.length * 2, 1024);
      this.scratchArrays = { score: new Float64Array(cap), doc: new Int32Array(cap) };
    }
    return this.scratchArrays;
  }

  /** Postings of one term, decoded (cached per KB version; see PostingCache). */
  private postings(kbId: number, version: number, term: string): DecodedPostings {
    let cache = this.postingCache.get(kbId);
    if (!cache || cache.version !== version) {
      cache = { version, terms: new Map(), size: 0 };
      this.postingCache.set(kbId, cache);
    }
    const hit = cache.terms.get(term);
    if (hit) {
      cache.terms.delete(term); // LRU: re-insert as most recent
      cache.terms.set(term, hit);
      return hit;
    }
    const rows = this.stmt("SELECT doc_id, data FROM kb_postings WHERE kb_id = ? AND term = ?")
      .raw()
      .all(kbId, term) as [number, Buffer][];
    let n = 0;
    for (const [, data] of rows) n += data.byteLength / 12;
    const p: DecodedPostings = { docIds: new Int32Array(n), data: new Uint32Array(n * 3) };
    let off = 0;
    for (const [docId, data] of rows) {
      const k = data.byteLength / 12;
      // Copy through a byte view: SQLite's buffer may not be 4-byte aligned for a Uint32Array view.
      new Uint8Array(p.data.buffer, off * 12, data.byteLength).set(data);
      p.docIds.fill(docId, off, off + k);
      off += k;
    }
    cache.terms.set(term, p);
    cache.size += n;
    for (const [t, old] of cache.terms) {
      if (cache.size <= POSTING_CACHE_MAX || t === term) break;
      cache.terms.delete(t);
      cache.size -= old.docIds.length;
    }
    return p;
  }

  async keywordSearch(
    kbId: number,
    terms: string[],
    limit: number,
    accept?: DocFilter,
    p: Partial<Bm25Params> = {},
  ): Promise<Hit[]> {
    if (terms.length === 0 || limit <= 0) return [];
    const { k1, b, headWeight } = { ...DEFAULT_BM25, ...p };
    const stats = this.stmt("SELECT chunk_count, total_len, version FROM kbs WHERE id = ?").get(kbId) as
      { chunk_count: number; total_len: number; version: number } | undefined;
    if (!stats || stats.chunk_count === 0) return [];
    const n = stats.chunk_count;
    const avgdl = Math.max(1, stats.total_len / n);
    // Scores accumulate in scratch arrays indexed by chunk id (reused across queries; only touched slots reset).
    const lists = terms.map((t) => this.postings(kbId, stats.version, t));
    let maxId = 0;
    for (const l of lists) for (let j = 0; j < l.docIds.length; j++) maxId = Math.max(maxId, l.data[j * 3]);
    const sc = this.scratch(maxId + 1);
    const touched: number[] = [];
    const accepted = new Map<number, boolean>();
    for (const { docIds, data } of lists) {
      const df = docIds.length;
      if (df === 0) continue;
      const idf = Math.log(1 + (n - df + 0.5) / (df + 0.5));
      const norm0 = k1 * (1 - b);
      const norm1 = (k1 * b) / avgdl;
      for (let j = 0; j < df; j++) {
        const docId = docIds[j];
        if (accept) {
          let ok = accepted.get(docId);
          if (ok === undefined) accepted.set(docId, (ok = accept(docId)));
          if (!ok) continue; // filtered documents never take a top-k slot
        }
        const i = j * 3;
        const chunkId = data[i];
        const tf = (data[i + 1] & 0xffff) + headWeight * (data[i + 1] >>> 16);
        if (tf <= 0) continue;
        if (sc.score[chunkId] === 0) {
          touched.push(chunkId);
          sc.doc[chunkId] = docId;
        }
        sc.score[chunkId] += (idf * tf * (k1 + 1)) / (tf + norm0 + norm1 * data[i + 2]);
      }
    }
    // Bounded min-heap selection: only `limit` result objects are ever created, however many chunks matched.
    const hs = new Float64Array(limit);
    const hi = new Int32Array(limit);
    let size = 0;
    // a ranks below b: lower score, or equal score and larger chunk id (ties broken by id → deterministic).
    const below = (sa: number, ia: number, sb: number, ib: number) => sa < sb || (sa === sb && ia > ib);
    for (const chunkId of touched) {
      const s = sc.score[chunkId];
      sc.score[chunkId] = 0;
      if (size === limit && !below(hs[0], hi[0], s, chunkId)) continue;
      let k: number;
      if (size < limit) {
        k = size++;
        while (k > 0) {
          const parent = (k - 1) >> 1;
          if (!below(s, chunkId, hs[parent], hi[parent])) break;
          hs[k] = hs[parent];
          hi[k] = hi[parent];
          k = parent;
        }
      } else {
        k = 0;
        while (true) {
          const l = 2 * k + 1;
          if (l >= size) break;
          const r = l + 1;
          const c = r < size && below(hs[r], hi[r], hs[l], hi[l]) ? r : l;
          if (!below(hs[c], hi[c], s, chunkId)) break;
          hs[k] = hs[c];
          hi[k] = hi[c];
          k = c;
        }
      }
      hs[k] = s;
      hi[k] = chunkId;
    }
    const hits: Hit[] = [];
    for (let k = 0; k < size; k++) hits.push({ chunkId: hi[k], docId: sc.doc[hi[k]], score: hs[k] });
    return hits.sort((a, b2) => b2.score - a.score || a.chunkId - b2.chunkId);
  }

  private loadVectors(kbId: number): VectorCache | undefined {
    const meta = this.stmt("SELECT version, embed_dims FROM kbs WHERE id = ?").get(kbId) as
      { version: number; embed_dims: number | null } | undefined;
    if (!meta || !meta.embed_dims) return undefined;
    const cached = this.vectorCache.get(kbId);
    if (cached && cached.version === meta.version) return cached;
    const dims = meta.embed_dims;
    const n = this.db.prepare("SELECT count(*) FROM kb_vectors WHERE kb_id = ?").pluck().get(kbId) as number;
    const cache: VectorCache = {
      version: meta.version,
      dims,
      chunkIds: new Int32Array(n),
      docIds: new Int32Array(n),
      matrix: new Float32Array(n * dims),
    };
    let i = 0;
    const rows = this.db
      .prepare(
        "SELECT v.chunk_id, c.doc_id, v.vec FROM kb_vectors v JOIN kb_chunks c ON c.id = v.chunk_id WHERE v.kb_id = ?",
      )
      .raw()
      .iterate(kbId) as IterableIterator<[number, number, Buffer]>;
    for (const [chunkId, docId, vec] of rows) {
      if (i >= n || vec.byteLength !== dims * 4) continue; // a vector of another size cannot be compared: skip
      cache.chunkIds[i] = chunkId;
      cache.docIds[i] = docId;
      cache.matrix.set(new Float32Array(vec.buffer, vec.byteOffset, dims), i * dims);
      i++;
    }
    if (i < n) {
      cache.chunkIds = cache.chunkIds.subarray(0, i);
      cache.docIds = cache.docIds.subarray(0, i);
    }
    this.vectorCache.set(kbId, cache);
    return cache;
  }

  async vectorSearch(kbId: number, query: Float32Array, limit: number, accept?: DocFilter): Promise<Hit[]> {
    const c = this.loadVectors(kbId);
    if (!c || limit <= 0) return [];
    if (query.length !== c.dims) {
      throw new DajianError(
        "invalid_input",
        `query embedding has ${query.length} dimensions but this knowledge base stores ${c.dims}`,
        "use the embedding model the knowledge base was built with, or re-ingest it with the new one",
      );
    }
    // Exact search: one dot product per stored vector (vectors are unit length, so dot = cosine).
    const n = c.chunkIds.length;
    const d = c.dims;
    const m = c.matrix;
    const accepted = new Map<number, boolean>();
    const ok = (docId: number) => {
      if (!accept) return true;
      let v = accepted.get(docId);
      if (v === undefined) accepted.set(docId, (v = accept(docId)));
      return v;
    };
    // Bounded min-heap of the best `limit` (score, index) pairs.
    const hs = new Float64Array(limit);
    const hi = new Int32Array(limit);
    let size = 0;
    for (let i = 0; i < n; i++) {
      let s = 0;
      const off = i * d;
      for (let j = 0; j < d; j++) s += m[off + j] * query[j];
      if (size === limit && s <= hs[0]) continue;
      if (!ok(c.docIds[i])) continue;
      if (size < limit) {
        let k = size++;
        while (k > 0) {
          const p = (k - 1) >> 1;
          if (hs[p] <= s) break;
          hs[k] = hs[p];
          hi[k] = hi[p];
          k = p;
        }
        hs[k] = s;
        hi[k] = i;
      } else {
        let k = 0;
        while (true) {
          const l = 2 * k + 1;
          if (l >= size) break;
          const r = l + 1;
          const ch = r < size && hs[r] < hs[l] ? r : l;
          if (hs[ch] >= s) break;
          hs[k] = hs[ch];
          hi[k] = hi[ch];
          k = ch;
        }
        hs[k] = s;
        hi[k] = i;
      }
    }
    const out: Hit[] = [];
    for (let k = 0; k < size; k++) out.push({ chunkId: c.chunkIds[hi[k]], docId: c.docIds[hi[k]], score: hs[k] });
    return out.sort((a, b) => b.score - a.score);
  }

  async getChunks(ids: number[]): Promise<Map<number, ChunkRecord>> {
    const out = new Map<number, ChunkRecord>();
    if (ids.length === 0) return out;
    const rows = this.db
      .prepare(
        `SELECT c.*, d.name AS doc_name FROM kb_chunks c JOIN kb_documents d ON d.id = c.doc_id
         WHERE c.id IN (${ids.map(() => "?").join(",")})`,
      )
      .all(...ids) as ChunkRow[];
    for (const r of rows) out.set(r.id, chunkFromRow(r));
    return out;
  }

  async documentChunks(docId: number): Promise<ChunkRecord[]> {
    const rows = this.db
      .prepare(
        `SELECT c.*, d.name AS doc_name FROM kb_chunks c JOIN kb_documents d ON d.id = c.doc_id
         WHERE c.doc_id = ? ORDER BY c.ordinal`,
      )
      .all(docId) as ChunkRow[];
    return rows.map(chunkFromRow);
  }

  async checkConsistency(kbId: number): Promise<string[]> {
    const db = this.db;
    const problems: string[] = [];
    const one = (sql: string, ...p: unknown[]) =>
      db
        .prepare(sql)
        .pluck()
        .get(...p) as number;
    const mismatched = db
      .prepare(
        `SELECT d.name, d.chunk_count, (SELECT count(*) FROM kb_chunks c WHERE c.doc_id = d.id) AS n
         FROM kb_documents d WHERE d.kb_id = ? AND d.chunk_count != n`,
      )
      .all(kbId) as { name: string; chunk_count: number; n: number }[];
    for (const m of mismatched) problems.push(`document ${m.name}: ${m.n} chunks stored, ${m.chunk_count} expected`);
    const orphanChunks = one(
      "SELECT count(*) FROM kb_chunks c WHERE c.kb_id = ? AND NOT EXISTS (SELECT 1 FROM kb_documents d WHERE d.id = c.doc_id)",
      kbId,
    );
    if (orphanChunks) problems.push(`${orphanChunks} chunks without a document`);
    const chunks = one("SELECT count(*) FROM kb_chunks WHERE kb_id = ?", kbId);
    // Every chunk's distinct terms must be in the postings exactly once, per document.
    const postingRows = db
      .prepare(
        `SELECT d.name, (SELECT coalesce(sum(uniq), 0) FROM kb_chunks c WHERE c.doc_id = d.id) AS want,
         (SELECT coalesce(sum(length(p.data) / 12), 0) FROM kb_postings p WHERE p.doc_id = d.id) AS have
         FROM kb_documents d WHERE d.kb_id = ? AND want != have`,
      )
      .all(kbId) as { name: string; want: number; have: number }[];
    for (const r of postingRows) problems.push(`document ${r.name}: ${r.have} postings for ${r.want} chunk terms`);
    const orphanPostings = one(
      "SELECT count(*) FROM kb_postings p WHERE p.kb_id = ? AND NOT EXISTS (SELECT 1 FROM kb_documents d WHERE d.id = p.doc_id)",
      kbId,
    );
    if (orphanPostings) problems.push(`${orphanPostings} postings without a document`);
    const badDf = one(
      `SELECT count(*) FROM kb_terms t WHERE t.kb_id = ? AND t.df !=
       (SELECT coalesce(sum(length(p.data) / 12), 0) FROM kb_postings p WHERE p.kb_id = t.kb_id AND p.term = t.term)`,
      kbId,
    );
    if (badDf) problems.push(`${badDf} terms with a wrong document frequency`);
    const totalLen = one("SELECT coalesce(sum(len), 0) FROM kb_chunks WHERE kb_id = ?", kbId);
    if (totalLen !== one("SELECT total_len FROM kbs WHERE id = ?", kbId)) problems.push("kb total_len out of step");
    const counted = one("SELECT chunk_count FROM kbs WHERE id = ?", kbId);
    if (counted !== chunks) problems.push(`kb chunk_count ${counted} but ${chunks} chunks stored`);
    const orphanVecs = one(
      "SELECT count(*) FROM kb_vectors v WHERE v.kb_id = ? AND NOT EXISTS (SELECT 1 FROM kb_chunks c WHERE c.id = v.chunk_id)",
      kbId,
    );
    if (orphanVecs) problems.push(`${orphanVecs} vectors without a chunk`);
    const missingVecs = db
      .prepare(
        `SELECT d.name FROM kb_documents d WHERE d.kb_id = ? AND d.embed_model IS NOT NULL AND d.chunk_count !=
         (SELECT count(*) FROM kb_vectors v JOIN kb_chunks c ON c.id = v.chunk_id WHERE c.doc_id = d.id)`,
      )
      .pluck()
      .all(kbId) as string[];
    for (const n of missingVecs) problems.push(`document ${n}: vectors missing for some chunks`);
    return problems;
  }
}
