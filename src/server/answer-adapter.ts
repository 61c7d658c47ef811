// Binds AnswerBackend to src/answer: grounded (or extractive, without a model) answering over one knowledge base,
// deltas forwarded as they come, conversations stored per owner.
import { answerStream } from "../answer/answer.js";
import { ConversationStore } from "../answer/conversations.js";
import type { Answer } from "../answer/types.js";
import { DajianError } from "../core/errors.js";
import type { KnowledgeBases } from "../index/kb.js";
import type { SqliteDb } from "../store/sqlite.js";
import type { AnswerBackend } from "./services.js";

export interface AnswerDeps {
  db: SqliteDb;
  kbs: KnowledgeBases;
}

export function answerBackend(d: AnswerDeps): AnswerBackend {
  const store = new ConversationStore(d.db);
  return {
    async ask(req) {
      const deps = { search: (q: string, o: object) => d.kbs.search(req.kb, q, o), model: req.model, store };
      let answer: Answer | undefined;
      for await (const e of answerStream(deps, {
        question: req.question,
        kb: req.kb,
        conversationId: req.conversationId,
        newConversation: req.store !== false,
        history: req.history?.length ? req.history : undefined,
        principalId: req.owner,
        topK: req.topK,
        maxTokens: req.gen?.maxTokens,
        temperature: req.gen?.temperature,
        seed: req.gen?.seed,
        allowDocument: req.allowDocument,
        signal: req.signal,
      })) {
        if (e.type === "delta") req.onDelta?.(e.text);
        else if (e.type === "done") answer = e.answer;
      }
      if (!answer) throw new DajianError("internal", "answering ended without a result", "see the server log");
      return answer;
    },
    async listConversations(owner, kb) {
      return store.list({ principalId: owner, kb }).map((c) => ({
        id: c.id,
        kb: c.kb,
        title: c.title,
        owner: c.principalId,
        updatedAt: c.updatedAt,
      }));
    },
    async getConversation(id, owner) {
      const c = store.require(id, owner);
      const messages = store.messages(id).map((m) => ({
        role: m.role,
        content: m.content,
        ...(m.citations ? { citations: m.citations } : {}),
        createdAt: m.createdAt,
      }));
      return { id: c.id, kb: c.kb, title: c.title, owner: c.principalId, updatedAt: c.updatedAt, messages };
    },
    async deleteConversation(id, owner) {
      store.delete(id, owner);
    },
  };
}
