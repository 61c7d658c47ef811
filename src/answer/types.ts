// Contract of a grounded answer: text with inline [n] markers, and the citations those markers point to.

export interface Citation {
  /** The n in the answer's [n] marker (1-based, contiguous after renumbering). */
  index: number;
  document: string;
  page?: number;
  heading?: string;
  /** The passage (or the part of it) the answer relies on. */
  quote: string;
  chunkId: string;
  documentId: string;
}

export interface Answer {
  answer: string;
  citations: Citation[];
  /** "generative" when a model wrote it, "extractive" when no model is configured (best sentences quoted). */
  mode: "generative" | "extractive";
  /** True when retrieval found nothing relevant and the answer says so instead of inventing. */
  noAnswer: boolean;
  conversationId?: string;
  usage?: { promptTokens: number; completionTokens: number };
  /** What to do next, e.g. how to add a generative model when the answer is extractive. */
  hint?: string;
  /** The question actually used for retrieval (a follow-up rewritten with the conversation). */
  searchQuery?: string;
}
