// Conversations and their messages ("answer-NNN" ids). principal_id records the owner so the security layer can
// filter listings; messages keep the citations they showed, so history re-renders exactly.
import type { Migration } from "./index.js";

export const ANSWER_MIGRATIONS: Migration[] = [
  {
    id: "answer-001",
    sqlite: `
      CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        principal_id TEXT NOT NULL,
        kb TEXT,
        model TEXT,
        title TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );
      CREATE INDEX conversations_owner ON conversations (principal_id, updated_at);
      CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content TEXT NOT NULL,
        citations TEXT,                -- JSON Citation[] for assistant turns
        search_query TEXT,
        mode TEXT,
        created_at INTEGER NOT NULL
      );
      CREATE INDEX messages_conversation ON messages (conversation_id, id);
    `,
    postgres: `
      CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        principal_id TEXT NOT NULL,
        kb TEXT,
        model TEXT,
        title TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      );
      CREATE INDEX conversations_owner ON conversations (principal_id, updated_at);
      CREATE TABLE messages (
        id BIGSERIAL PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content TEXT NOT NULL,
        citations TEXT,
        search_query TEXT,
        mode TEXT,
        created_at BIGINT NOT NULL
      );
      CREATE INDEX messages_conversation ON messages (conversation_id, id);
    `,
  },
];
