// One interface for every model dajian talks to: local GGUF through node-llama-cpp, or a remote
// OpenAI-compatible provider. The answerer, the server and the CLI depend only on these types.

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface GenerateOptions {
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  stop?: string[];
  /** Constrain output to this JSON schema (local: grammar; remote: response_format when supported). */
  jsonSchema?: Record<string, unknown>;
  /** Aborting stops generation and frees the slot (client disconnects). */
  signal?: AbortSignal;
  /** Who asked (recorded in the usage table; the security layer bills and limits by it). */
  principalId?: string;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

export interface ChatResult {
  text: string;
  finishReason: "stop" | "length" | "abort";
  usage: Usage;
}

export type ChatChunk = { type: "delta"; text: string } | { type: "done"; result: ChatResult };

export interface ChatModel {
  readonly name: string;
  /** Context window in tokens (prompt + completion). */
  readonly contextSize: number;
  /** Tokens a message list occupies once rendered with the model's chat template. */
  countChatTokens(messages: ChatMessage[]): Promise<number>;
  countTokens(text: string): Promise<number>;
  /** Streams deltas, then exactly one "done" chunk. */
  stream(messages: ChatMessage[], opts?: GenerateOptions): AsyncIterable<ChatChunk>;
  chat(messages: ChatMessage[], opts?: GenerateOptions): Promise<ChatResult>;
}

export interface EmbeddingModel {
  readonly name: string;
  embed(texts: string[], signal?: AbortSignal): Promise<Float32Array[]>;
}
