// Stored conversations: each belongs to a principal (the security layer filters listings by owner), names the
// knowledge base and model it used, and keeps every turn with the citations shown at the time.
import { randomUUID } from "node:crypto";
import { DajianError } from "../core/errors.js";
import type { ChatMessage } from "../models/types.js";
import type { SqliteDb } from "../store/sqlite.js";
import type { Answer, Citation } from "./types.js";

export interface Conversation {
  id: string;
  principalId: string;
  kb?: string;
  model?: string;
  title: string;
  createdAt: number;
  updatedAt: number;
}

export interface StoredMessage {
  id: number;
  role: "user" | "assistant";
  content: string;
  citations?: Citation[];
  searchQuery?: string;
  mode?: Answer["mode"];
  createdAt: number;
}

interface ConvRow {
  id: string;
  principal_id: string;
  kb: string | null;
  model: string | null;
  title: string;
  created_at: number;
  updated_at: number;
}

const toConv = (r: ConvRow): Conversation => ({
  id: r.id,
  principalId: r.principal_id,
  ...(r.kb !== null ? { kb: r.kb } : {}),
  ...(r.model !== null ? { model: r.model } : {}),
  title: r.title,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export class ConversationStore {
  constructor(private readonly db: SqliteDb) {}

  create(o: { principalId: string; kb?: string; model?: string; title: string }): Conversation {
    const now = Date.now();
    const id = randomUUID();
    const title = o.title.replace(/\s+/g, " ").trim().slice(0, 80) || "(untitled)";
    this.db
      .prepare(
        "INSERT INTO conversations (id, principal_id, kb, model, title, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
      )
      .run(id, o.principalId, o.kb ?? null, o.model ?? null, title, now, now);
    return this.get(id)!;
  }

  get(id: string): Conversation | undefined {
    const r = this.db.prepare("SELECT * FROM conversations WHERE id = ?").get(id) as ConvRow | undefined;
    return r && toConv(r);
  }

  /** Fetch a conversation, refusing another principal's (unless `anyOwner`, for admins). */
  require(id: string, principalId?: string): Conversation {
    const c = this.get(id);
    // Someone else's conversation answers exactly like a missing one: existence is not leaked.
    if (!c || (principalId !== undefined && c.principalId !== principalId))
      throw new DajianError("not_found", `no conversation ${id}`, "list yours with `GET /api/conversations`");
    return c;
  }

  list(o: { principalId?: string; kb?: string; limit?: number; offset?: number } = {}): Conversation[] {
    const rows = this.db
      .prepare(
        `SELECT * FROM conversations WHERE (? IS NULL OR principal_id = ?) AND (? IS NULL OR kb = ?)
         ORDER BY updated_at DESC, id LIMIT ? OFFSET ?`,
      )
      .all(
        o.principalId ?? null,
        o.principalId ?? null,
        o.kb ?? null,
        o.kb ?? null,
        Math.min(o.limit ?? 50, 500),
        o.offset ?? 0,
      ) as ConvRow[];
    return rows.map(toConv);
  }

  messages(id: string): StoredMessage[] {
    const rows = this.db.prepare("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id").all(id) as {
      id: number;
      role: "user" | "assistant";
      content: string;
      citations: string | null;
      search_query: string | null;
      mode: string | null;
      created_at: number;
    }[];
    return rows.map((r) => ({
      id: r.id,
      role: r.role,
      content: r.content,
      ...(r.citations ? { citations: JSON.parse(r.citations) as Citation[] } : {}),
      ...(r.search_query ? { searchQuery: r.search_query } : {}),
      ...(r.mode ? { mode: r.mode as Answer["mode"] } : {}),
      createdAt: r.created_at,
    }));
  }

  /** The last `turns` user/assistant pairs as chat messages (for follow-ups). */
  history(id: string, turns = 3): ChatMessage[] {
    const msgs = this.messages(id).slice(-turns * 2);
    return msgs.map((m) => ({ role: m.role, content: m.content }));
  }

  /** Append a question and its answer in one transaction. */
  addTurn(id: string, question: string, answer: Answer): void {
    const now = Date.now();
    const ins = this.db.prepare(
      "INSERT INTO messages (conversation_id, role, content, citations, search_query, mode, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    this.db.transaction(() => {
      ins.run(id, "user", question, null, null, null, now);
      ins.run(
        id,
        "assistant",
        answer.answer,
        JSON.stringify(answer.citations),
        answer.searchQuery ?? null,
        answer.mode,
        now,
      );
      this.db.prepare("UPDATE conversations SET updated_at = ? WHERE id = ?").run(now, id);
    })();
  }

  delete(id: string, principalId?: string): void {
    this.require(id, principalId);
    this.db.prepare("DELETE FROM conversations WHERE id = ?").run(id);
  }
}
