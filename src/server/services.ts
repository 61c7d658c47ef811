// What the server needs from the library, as narrow interfaces. adapters.ts binds them to src/index (knowledge bases),
// src/models (registry) and src/answer (grounded/extractive answering); tests and embedders may pass their own.
import type { Answer } from "../answer/types.js";
import type { ProgressFn } from "../core/progress.js";
import type { SearchOptions, SearchResponse } from "../index/types.js";
import type { ChatMessage, ChatModel, EmbeddingModel, GenerateOptions } from "../models/types.js";

export interface KbSummary {
  name: string;
  description?: string;
  documents?: number;
  chunks?: number;
  createdAt?: string | number;
}

export interface DocSummary {
  id: string;
  name: string;
  bytes?: number;
  pages?: number;
  chunks?: number;
  format?: string;
  createdAt?: string | number;
}

export interface IngestOutcome {
  document: string;
  ok: boolean;
  chunks?: number;
  error?: string;
  warnings?: string[];
}

export interface KbBackend {
  list(): Promise<KbSummary[]>;
  create(name: string, description?: string): Promise<KbSummary>;
  delete(name: string): Promise<void>;
  /** Throws DajianError not_found when the knowledge base does not exist. */
  documents(kb: string): Promise<DocSummary[]>;
  /** Ingest one file already on disk under its display name; reports progress; never leaves half a document. */
  ingestFile(
    kb: string,
    file: { path: string; name: string },
    onProgress: ProgressFn,
    signal?: AbortSignal,
  ): Promise<IngestOutcome>;
  removeDocument(kb: string, doc: string): Promise<void>;
  /** Where the original bytes of a document are (for download). */
  originalFile(kb: string, doc: string): Promise<{ path: string; name: string; bytes?: number }>;
  search(kb: string, query: string, opts: SearchOptions): Promise<SearchResponse>;
}

export interface ModelEntry {
  id: string;
  kind: "chat" | "embedding";
  contextSize?: number;
  ownedBy: string;
  created?: number;
}

export interface ModelBackend {
  list(): Promise<ModelEntry[]>;
  /** Throws DajianError not_found for an unknown name. */
  chat(id: string): Promise<ChatModel>;
  embedding(id: string): Promise<EmbeddingModel>;
  /** Slots in use and requests waiting for a local model, loading it if needed (undefined for remote ones). */
  load(id: string): Promise<{ running: number; queued: number; slots: number; maxQueue: number } | undefined>;
  /** The model `kb:` answers use; undefined = extractive mode. */
  defaultChat(): Promise<ChatModel | undefined>;
  /** Counters and gauges for /metrics (names ending in _total are counters). */
  stats?(): Record<string, number>;
  close(): Promise<void>;
}

export interface AskRequest {
  kb: string;
  question: string;
  /** Earlier turns (OpenAI messages before the last user message), used to rewrite follow-ups. */
  history?: ChatMessage[];
  conversationId?: string;
  /** Store the turn as a conversation (a new one when conversationId is absent). */
  store?: boolean;
  owner: string;
  model?: ChatModel;
  topK?: number;
  allowDocument?: (documentId: string) => boolean;
  gen?: GenerateOptions;
  onDelta?: (text: string) => void;
  signal?: AbortSignal;
}

export interface ConversationSummary {
  id: string;
  kb?: string;
  title?: string;
  owner?: string;
  updatedAt?: string | number;
  messageCount?: number;
}

export interface ConversationDetail extends ConversationSummary {
  messages: { role: string; content: string; citations?: unknown[]; createdAt?: string | number }[];
}

export interface AnswerBackend {
  ask(req: AskRequest): Promise<Answer>;
  listConversations(owner: string, kb?: string): Promise<ConversationSummary[]>;
  /** Throws not_found (also for another owner's conversation when `owner` is given). */
  getConversation(id: string, owner?: string): Promise<ConversationDetail>;
  deleteConversation(id: string, owner?: string): Promise<void>;
}

export interface ServerServices {
  kbs: KbBackend;
  models: ModelBackend;
  answers: AnswerBackend;
  close(): Promise<void>;
}
