// Grounded answering: (rewrite a follow-up) → retrieve → decide whether anything relevant was found → generate
// from numbered, quoted sources (or quote sentences when no model is configured) → citations that point only at
// sources the answer uses, renumbered 1…n → store the turn.
import { DajianError } from "../core/errors.js";
import type { SearchOptions, SearchResponse, SearchResult } from "../index/types.js";
import type { ChatMessage, ChatModel } from "../models/types.js";
import { buildCitations, CitationRewriter } from "./citations.js";
import type { ConversationStore } from "./conversations.js";
import { EXTRACTIVE_HINT, extractiveAnswer } from "./extractive.js";
import { buildGroundedPrompt } from "./prompt.js";
import { hasCjk, notFoundText, salientTerms, termOverlap } from "./text.js";
import type { Answer, Citation } from "./types.js";

export type SearchFn = (query: string, opts: SearchOptions) => Promise<SearchResponse>;

export interface AnswerDeps {
  search: SearchFn;
  /** Undefined → extractive mode. */
  model?: ChatModel;
  /** Where conversations are stored; undefined → nothing stored. */
  store?: ConversationStore;
}

export interface AskRequest {
  question: string;
  /** Knowledge base name (recorded on the conversation). */
  kb?: string;
  /** Continue a stored conversation (its history is loaded; the new turn is appended). */
  conversationId?: string;
  /** Start a stored conversation for this turn (default: true when a store is given and no conversationId). */
  newConversation?: boolean;
  /** Explicit history (e.g. the messages of a /v1 request); used instead of stored history. */
  history?: ChatMessage[];
  principalId?: string;
  topK?: number;
  /** Drop results scoring below this (scale of the search in use). */
  minScore?: number;
  /**
   * Fraction of the query's salient terms that the best passage must contain, else "not found". 0 disables
   * (e.g. cross-lingual corpora searched by vectors). Default 0.2.
   */
  minOverlap?: number;
  /** Tokens reserved for the answer. */
  maxTokens?: number;
  temperature?: number;
  seed?: number;
  allowDocument?: (documentId: string) => boolean;
  signal?: AbortSignal;
}

export type AnswerEvent =
  | { type: "start"; searchQuery: string; sources: number; mode: Answer["mode"]; conversationId?: string }
  | { type: "delta"; text: string }
  | { type: "done"; answer: Answer };

const MAX_QUESTION_CHARS = 8000;

/** Standalone query for retrieval from a follow-up: ask the model, else add the last turn's salient terms. */
export async function rewriteFollowUp(
  question: string,
  history: ChatMessage[],
  model?: ChatModel,
  signal?: AbortSignal,
  principalId?: string,
): Promise<string> {
  const lastUser = [...history].reverse().find((m) => m.role === "user");
  if (!lastUser) return question;
  const heuristic = () => {
    const have = new Set(salientTerms(question));
    const extra = salientTerms(lastUser.content)
      .filter((t) => !have.has(t))
      .slice(0, 12);
    return extra.length ? `${question} ${extra.join(" ")}` : question;
  };
  if (!model) return heuristic();
  const convo = history
    .slice(-4)
    .map((m) => `${m.role === "user" ? "User" : "Assistant"}: ${m.content.slice(0, 600)}`)
    .join("\n");
  try {
    const r = await model.chat(
      [
        {
          role: "system",
          content:
            "Rewrite the follow-up question as one standalone question that can be understood without the conversation. Keep its language. Output only the question.",
        },
        { role: "user", content: `Conversation:\n${convo}\n\nFollow-up question: ${question}` },
      ],
      { maxTokens: 64, temperature: 0, signal, principalId },
    );
    const out = r.text
      .split("\n")[0]
      .replace(/^["'“”「]+|["'“”」]+$/g, "")
      .trim();
    // Guard against a weak model: the rewrite must keep most of the question's own terms.
    const qTerms = salientTerms(question);
    if (out && out.length <= question.length * 4 + 200 && (qTerms.length === 0 || termOverlap(qTerms, out) >= 0.5))
      return out;
  } catch (err) {
    if (signal?.aborted) throw err;
  }
  return heuristic();
}

function isRelevant(query: string, results: SearchResult[], minOverlap: number): boolean {
  if (results.length === 0) return false;
  if (minOverlap <= 0) return true;
  const terms = salientTerms(query);
  if (terms.length === 0) return true;
  return results.some(
    (r) => termOverlap(terms, `${r.text} ${r.source.document} ${r.source.heading ?? ""}`) >= minOverlap,
  );
}

/** Answer a question, streaming the text as it is produced; the last event carries the full Answer. */
export async function* answerStream(deps: AnswerDeps, req: AskRequest): AsyncGenerator<AnswerEvent> {
  const question = req.question?.trim();
  if (!question)
    throw new DajianError(
      "invalid_input",
      "the question is empty",
      'ask something, e.g. dajian ask KB "What is the leave policy?"',
    );
  if (question.length > MAX_QUESTION_CHARS)
    throw new DajianError(
      "too_large",
      `the question is ${question.length} characters`,
      `keep it under ${MAX_QUESTION_CHARS}`,
    );

  let conversationId = req.conversationId;
  let history = req.history ?? [];
  if (conversationId) {
    if (!deps.store) throw new DajianError("unsupported", "conversations need a store", "pass a ConversationStore");
    deps.store.require(conversationId, req.principalId);
    if (!req.history) history = deps.store.history(conversationId);
  }

  const searchQuery = history.length
    ? await rewriteFollowUp(question, history, deps.model, req.signal, req.principalId)
    : question;
  const found = await deps.search(searchQuery, { topK: req.topK ?? 8, allowDocument: req.allowDocument });
  const results = found.results.filter((r) => req.minScore === undefined || r.score >= req.minScore);
  const relevant = isRelevant(`${searchQuery}`, results, req.minOverlap ?? 0.2);
  const mode: Answer["mode"] = deps.model ? "generative" : "extractive";

  if (deps.store && !conversationId && req.newConversation !== false) {
    conversationId = deps.store.create({
      principalId: req.principalId ?? "local",
      kb: req.kb,
      model: deps.model?.name,
      title: question,
    }).id;
  }

  let answer: Answer;
  if (!relevant) {
    const text = notFoundText(question);
    yield { type: "start", searchQuery, sources: 0, mode, conversationId };
    yield { type: "delta", text };
    answer = { answer: text, citations: [], mode, noAnswer: true };
    if (!deps.model) answer.hint = EXTRACTIVE_HINT;
  } else if (!deps.model) {
    const ex = extractiveAnswer(searchQuery, results);
    yield { type: "start", searchQuery, sources: ex.order.length, mode, conversationId };
    if (!ex.text) {
      const text = notFoundText(question);
      yield { type: "delta", text };
      answer = { answer: text, citations: [], mode, noAnswer: true, hint: EXTRACTIVE_HINT };
    } else {
      yield { type: "delta", text: ex.text };
      const citations: Citation[] = buildCitations(results, ex.order, ex.text).map((c, i) => ({
        ...c,
        quote: ex.quotes[i].join(" "),
      }));
      answer = { answer: ex.text, citations, mode, noAnswer: false, hint: EXTRACTIVE_HINT };
    }
  } else {
    const model = deps.model;
    const answerTokens = Math.min(req.maxTokens ?? 512, Math.floor(model.contextSize / 2));
    // Old answers' [n] markers refer to old source lists; strip them so they cannot be confused with the new ones.
    const plainHistory = history.map((m) => ({ ...m, content: m.content.replace(/\[\d+\]/g, "") }));
    const prompt = await buildGroundedPrompt(model, question, results, { answerTokens, history: plainHistory });
    yield { type: "start", searchQuery, sources: prompt.sources.length, mode, conversationId };
    const rw = new CitationRewriter(prompt.sources.length);
    let text = "";
    let usage = { promptTokens: prompt.promptTokens, completionTokens: 0 };
    for await (const c of model.stream(prompt.messages, {
      maxTokens: answerTokens,
      temperature: req.temperature ?? 0.2,
      seed: req.seed,
      signal: req.signal,
      principalId: req.principalId,
    })) {
      if (c.type === "delta") {
        const out = rw.push(c.text);
        if (out) {
          text += out;
          yield { type: "delta", text: out };
        }
      } else usage = c.result.usage;
    }
    const tail = rw.end();
    if (tail) {
      text += tail;
      yield { type: "delta", text: tail };
    }
    const nf = notFoundText(question);
    const saysNotFound =
      rw.order.length === 0 && (text.includes(nf) || text.includes(notFoundText(hasCjk(nf) ? "x" : "中")));
    answer = {
      answer: text.trim(),
      citations: saysNotFound ? [] : buildCitations(prompt.sources, rw.order, text),
      mode,
      noAnswer: saysNotFound,
      usage,
    };
  }
  answer.searchQuery = searchQuery;
  if (conversationId) {
    answer.conversationId = conversationId;
    // An aborted answer (client gone) is not stored as if it were complete.
    if (!req.signal?.aborted) deps.store?.addTurn(conversationId, question, answer);
  }
  yield { type: "done", answer };
}

export async function answerQuestion(deps: AnswerDeps, req: AskRequest): Promise<Answer> {
  for await (const e of answerStream(deps, req)) if (e.type === "done") return e.answer;
  throw new DajianError("internal", "answering ended without a result", "report this bug");
}
