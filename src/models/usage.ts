// Token usage log: every generation through a registered model adds one row (model, principal, tokens, time),
// which the security layer sums for quotas and budgets.
import type { SqliteDb } from "../store/sqlite.js";
import type { ChatChunk, ChatMessage, ChatModel, ChatResult, GenerateOptions } from "./types.js";

export interface UsageRecord {
  model: string;
  principalId: string;
  promptTokens: number;
  completionTokens: number;
  durationMs: number;
}

export function recordUsage(db: SqliteDb, u: UsageRecord, at = Date.now()): void {
  db.prepare(
    `INSERT INTO model_usage (model, principal_id, prompt_tokens, completion_tokens, duration_ms, created_at)
     VALUES (?, ?, ?, ?, ?, ?)`,
  ).run(u.model, u.principalId, u.promptTokens, u.completionTokens, Math.round(u.durationMs), at);
}

export interface UsageSummary {
  model: string;
  principalId: string;
  requests: number;
  promptTokens: number;
  completionTokens: number;
}

export function usageSummary(db: SqliteDb, opts: { sinceMs?: number; principalId?: string } = {}): UsageSummary[] {
  return db
    .prepare(
      `SELECT model, principal_id AS principalId, COUNT(*) AS requests,
              SUM(prompt_tokens) AS promptTokens, SUM(completion_tokens) AS completionTokens
       FROM model_usage WHERE created_at >= ? AND (? IS NULL OR principal_id = ?)
       GROUP BY model, principal_id ORDER BY model, principal_id`,
    )
    .all(opts.sinceMs ?? 0, opts.principalId ?? null, opts.principalId ?? null) as UsageSummary[];
}

/** Wrap a model so each finished (or aborted) generation is written to the usage table. */
export function withUsageLog(model: ChatModel, db: SqliteDb): ChatModel {
  const log = (r: ChatResult, opts: GenerateOptions | undefined, t0: number) =>
    recordUsage(db, {
      model: model.name,
      principalId: opts?.principalId ?? "local",
      promptTokens: r.usage.promptTokens,
      completionTokens: r.usage.completionTokens,
      durationMs: Date.now() - t0,
    });
  return {
    get name() {
      return model.name;
    },
    get contextSize() {
      return model.contextSize;
    },
    countChatTokens: (m: ChatMessage[]) => model.countChatTokens(m),
    countTokens: (t: string) => model.countTokens(t),
    async *stream(messages: ChatMessage[], opts?: GenerateOptions): AsyncIterable<ChatChunk> {
      const t0 = Date.now();
      for await (const c of model.stream(messages, opts)) {
        if (c.type === "done") log(c.result, opts, t0);
        yield c;
      }
    },
    async chat(messages: ChatMessage[], opts?: GenerateOptions): Promise<ChatResult> {
      const t0 = Date.now();
      const r = await model.chat(messages, opts);
      log(r, opts, t0);
      return r;
    },
  };
}
