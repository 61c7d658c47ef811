// Contract between the loaders (one per format), the cleaner and the chunker.
// Loaders turn bytes into structured blocks; the chunker turns blocks into retrievable chunks.

export type DocFormat = "pdf" | "docx" | "xlsx" | "csv" | "pptx" | "html" | "markdown" | "text";

export interface TableData {
  /** Column headers; every row chunk repeats them so a row never loses its meaning. */
  header: string[];
  rows: string[][];
  /** Sheet or caption name. */
  name?: string;
}

export interface Block {
  kind: "heading" | "paragraph" | "list_item" | "table" | "code";
  /** Plain text of the block (for tables: a readable rendering of header + rows). */
  text: string;
  /** Heading level 1..6 (headings only). */
  level?: number;
  /** 1-based page (PDF), slide (PPTX) or sheet index (XLSX); undefined for formats without pages. */
  page?: number;
  table?: TableData;
}

export interface ParsedDocument {
  format: DocFormat;
  title?: string;
  /** Number of pages/slides/sheets, when the format has them. */
  pages?: number;
  blocks: Block[];
  /** Pages that have no text layer: reported as "needs OCR", never silently indexed empty. */
  needsOcrPages: number[];
  /** Non-fatal notes for the per-file summary (e.g. detected encoding, skipped parts). */
  warnings: string[];
  /** Detected text encoding, for text-like formats. */
  encoding?: string;
}

export interface Chunk {
  /** 0-based position in the document. */
  ordinal: number;
  /** Text as shown to users and models (NFC-normalised, cleaned). */
  text: string;
  /** First and last page the chunk spans (1-based), when the format has pages. */
  page?: number;
  pageEnd?: number;
  /** Heading path, outermost first, e.g. ["员工手册", "第三章 假期", "年假"]. */
  headingPath: string[];
  /** Character offsets into the document's cleaned full text (blocks joined by "\n\n"). */
  charStart: number;
  charEnd: number;
  /** Size in tokens as counted by the chunker's tokenizer estimate. */
  tokens: number;
  kind: "text" | "table";
}

export interface ChunkOptions {
  /** Target chunk size in tokens. */
  targetTokens: number;
  /** Overlap between consecutive text chunks, in tokens. */
  overlapTokens: number;
}
