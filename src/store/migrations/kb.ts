// Knowledge-base schema (area "kb"). The keyword index is our own inverted index over pre-analysed terms:
// kb_postings holds, per (KB, term, document), a packed list of (chunk id, term frequencies, chunk length), and
// kb_terms the document frequency per term — so a query reads one small row per document containing a term and
// scores BM25 in TypeScript (measured: FTS5's bm25() was ~3x over the latency target at 100k chunks).
// PostgreSQL plan: the same tables in Postgres dialect (BIGSERIAL ids, BYTEA blobs; vectors in pgvector
// `vector(d)` with HNSW); the analyser runs in TypeScript, so Postgres never needs a Chinese parser.
import type { Migration } from "./index.js";

export const KB_MIGRATIONS: Migration[] = [
  {
    id: "kb-001",
    sqlite: `
      CREATE TABLE kbs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        analyzer TEXT NOT NULL,
        embed_model TEXT,
        embed_dims INTEGER,
        chunk_count INTEGER NOT NULL DEFAULT 0,
        total_len INTEGER NOT NULL DEFAULT 0,
        version INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE kb_documents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kb_id INTEGER NOT NULL REFERENCES kbs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        source_path TEXT,
        sha256 TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        format TEXT NOT NULL,
        title TEXT,
        pages INTEGER,
        tags TEXT NOT NULL DEFAULT '[]',
        status TEXT NOT NULL,
        needs_ocr TEXT NOT NULL DEFAULT '[]',
        warnings TEXT NOT NULL DEFAULT '[]',
        chunk_count INTEGER NOT NULL,
        embed_model TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (kb_id, name)
      );
      CREATE TABLE kb_document_tags (
        doc_id INTEGER NOT NULL REFERENCES kb_documents(id) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        PRIMARY KEY (doc_id, tag)
      ) WITHOUT ROWID;
      CREATE INDEX kb_document_tags_tag ON kb_document_tags(tag);
      CREATE TABLE kb_chunks (
        id INTEGER PRIMARY KEY,
        kb_id INTEGER NOT NULL,
        doc_id INTEGER NOT NULL REFERENCES kb_documents(id) ON DELETE CASCADE,
        ordinal INTEGER NOT NULL,
        text TEXT NOT NULL,
        page INTEGER,
        page_end INTEGER,
        heading TEXT NOT NULL DEFAULT '[]',
        char_start INTEGER NOT NULL,
        char_end INTEGER NOT NULL,
        tokens INTEGER NOT NULL,
        kind TEXT NOT NULL,
        len INTEGER NOT NULL,
        uniq INTEGER NOT NULL
      );
      CREATE INDEX kb_chunks_doc ON kb_chunks(doc_id, ordinal);
      CREATE INDEX kb_chunks_kb ON kb_chunks(kb_id);
      CREATE TABLE kb_postings (
        kb_id INTEGER NOT NULL,
        term TEXT NOT NULL,
        doc_id INTEGER NOT NULL REFERENCES kb_documents(id) ON DELETE CASCADE,
        data BLOB NOT NULL,
        PRIMARY KEY (kb_id, term, doc_id)
      ) WITHOUT ROWID;
      CREATE INDEX kb_postings_doc ON kb_postings(doc_id);
      CREATE TABLE kb_terms (
        kb_id INTEGER NOT NULL,
        term TEXT NOT NULL,
        df INTEGER NOT NULL,
        PRIMARY KEY (kb_id, term)
      ) WITHOUT ROWID;
      CREATE TABLE kb_vectors (
        chunk_id INTEGER PRIMARY KEY REFERENCES kb_chunks(id) ON DELETE CASCADE,
        kb_id INTEGER NOT NULL,
        vec BLOB NOT NULL
      );
      CREATE INDEX kb_vectors_kb ON kb_vectors(kb_id);
    `,
  },
];
