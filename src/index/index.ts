// Knowledge-base area (keyword + vector index, hybrid search, KB service): the public surface.
export type { SearchOptions, SearchResponse, SearchResult, SearchSource } from "./types.js";
export {
  KnowledgeBases,
  type FileSummary,
  type IngestItem,
  type IngestOptions,
  type IngestSummary,
  type KnowledgeBasesOptions,
} from "./kb.js";
export {
  analyze,
  analyzeQuery,
  analyzerId,
  parseAnalyzerId,
  DEFAULT_ANALYZER,
  type AnalyzerOptions,
} from "./analyzer.js";
export {
  embedderFromConfig,
  LocalEmbedder,
  OpenAIEmbedder,
  normalize as normalizeVector,
  type Embedder,
} from "./embed.js";
export {
  search as searchKnowledgeBase,
  selectQueryTerms,
  DEFAULT_TUNING,
  noRerank,
  type Reranker,
  type SearchTuning,
} from "./search.js";
export {
  SqliteKbStore,
  type KbStore,
  type KbRecord,
  type DocumentRecord,
  type ChunkRecord,
  type NewChunk,
  type NewDocument,
} from "./store.js";
export { evalRetrieval, type EvalQuery, type EvalOptions, type EvalReport } from "./eval.js";
export { badNameReason, walkPaths } from "./walk.js";
