// Contract of knowledge-base search, shared by the CLI (`dajian search --json`), the HTTP API
// (`POST /api/kbs/NAME/search`), grounded answering and the permission layer.

export interface SearchSource {
  document: string; // document name as ingested (relative path or upload name)
  page?: number;
  heading?: string; // heading path joined with " > "
}

export interface SearchResult {
  text: string;
  score: number;
  source: SearchSource;
  /** Internal ids, used for citations and permission checks (not part of the minimal CLI contract). */
  chunkId: string;
  documentId: string;
  charStart?: number;
  charEnd?: number;
}

export interface SearchOptions {
  topK?: number;
  /** Restrict to these document names or ids. */
  documents?: string[];
  /** Restrict to documents carrying all of these tags. */
  tags?: string[];
  /**
   * Permission filter applied *inside* retrieval (before ranking is cut to topK), so results the caller may not
   * read never surface and never displace allowed ones. Undefined = no restriction (local CLI on own home dir).
   */
  allowDocument?: (documentId: string) => boolean;
  /** "hybrid" (default when an embedder is configured), "keyword" or "vector". */
  mode?: "hybrid" | "keyword" | "vector";
}

export interface SearchResponse {
  results: SearchResult[];
}
