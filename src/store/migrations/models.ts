// Schema of the model registry and token-usage log ("models-NNN" ids; appended to the global list).
import type { Migration } from "./index.js";

export const MODELS_MIGRATIONS: Migration[] = [
  {
    id: "models-001",
    sqlite: `
      CREATE TABLE model_registry (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('local', 'remote')),
        spec TEXT NOT NULL,            -- JSON of the entry (never an API key, only the env var's name)
        is_default INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE model_usage (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        model TEXT NOT NULL,
        principal_id TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        created_at INTEGER NOT NULL
      );
      CREATE INDEX model_usage_principal ON model_usage (principal_id, created_at);
      CREATE INDEX model_usage_model ON model_usage (model, created_at);
    `,
    postgres: `
      CREATE TABLE model_registry (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('local', 'remote')),
        spec TEXT NOT NULL,
        is_default INTEGER NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL
      );
      CREATE TABLE model_usage (
        id BIGSERIAL PRIMARY KEY,
        model TEXT NOT NULL,
        principal_id TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        created_at BIGINT NOT NULL
      );
      CREATE INDEX model_usage_principal ON model_usage (principal_id, created_at);
      CREATE INDEX model_usage_model ON model_usage (model, created_at);
    `,
  },
];
