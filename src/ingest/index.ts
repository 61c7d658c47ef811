// Public API of the ingest stage: bytes → ParsedDocument (blocks) → chunks.
export type { Block, Chunk, ChunkOptions, DocFormat, ParsedDocument, TableData } from "./types.js";
export { detectFormat, SUPPORTED_HINT } from "./detect.js";
export { parseDocument, type ParseOptions } from "./parse.js";
export { parseDocumentIsolated, type IsolatedParseOptions } from "./isolate.js";
export { chunkDocument, documentText, BLOCK_SEP } from "./chunk.js";
export { foldForSearch, normalizeDisplay, estimateTokens } from "./text-utils.js";
export { decodeText } from "./encoding.js";
export { sentenceRanges } from "./sentences.js";
export { renderTable } from "./table.js";
