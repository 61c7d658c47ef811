// Config: <home>/config.json, then environment variables override (DAJIAN_* names below).
// Unknown keys are kept so newer versions can add settings without breaking older files.
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { DajianError } from "./errors.js";
import { homePaths } from "./home.js";

export interface EmbeddingConfig {
  /** "local" = GGUF through node-llama-cpp; "openai" = any OpenAI-compatible /v1/embeddings. */
  provider: "local" | "openai";
  /** GGUF path (local) or model name (openai). */
  model: string;
  baseURL?: string;
  apiKeyEnv?: string;
}

export interface DajianConfig {
  server: { host: string; port: number; auth: boolean; maxBodyBytes: number };
  ingest: { maxFileBytes: number; chunkTokens: number; chunkOverlap: number };
  embedding?: EmbeddingConfig;
  redisUrl?: string;
  postgresUrl?: string;
  [key: string]: unknown;
}

export const DEFAULT_CONFIG: DajianConfig = {
  server: { host: "127.0.0.1", port: 8080, auth: false, maxBodyBytes: 1024 * 1024 },
  ingest: { maxFileBytes: 200 * 1024 * 1024, chunkTokens: 400, chunkOverlap: 60 },
};

function deepMerge<T>(base: T, over: unknown): T {
  if (typeof over !== "object" || over === null || Array.isArray(over)) return (over ?? base) as T;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = typeof b === "object" && b !== null && !Array.isArray(b) ? deepMerge(b, v) : v;
  }
  return out as T;
}

function envOverrides(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const o: Record<string, any> = {};
  const num = (v: string | undefined) => (v === undefined || v === "" ? undefined : Number(v));
  if (env.DAJIAN_HOST) (o.server ??= {}).host = env.DAJIAN_HOST;
  if (env.DAJIAN_PORT) (o.server ??= {}).port = num(env.DAJIAN_PORT);
  if (env.DAJIAN_AUTH) (o.server ??= {}).auth = env.DAJIAN_AUTH === "1" || env.DAJIAN_AUTH === "true";
  if (env.DAJIAN_MAX_FILE_BYTES) (o.ingest ??= {}).maxFileBytes = num(env.DAJIAN_MAX_FILE_BYTES);
  if (env.DAJIAN_REDIS_URL) o.redisUrl = env.DAJIAN_REDIS_URL;
  if (env.DAJIAN_POSTGRES_URL) o.postgresUrl = env.DAJIAN_POSTGRES_URL;
  return o;
}

export function loadConfig(home: string, env: NodeJS.ProcessEnv = process.env): DajianConfig {
  const file = homePaths(home).config;
  let fromFile: unknown = {};
  if (existsSync(file)) {
    try {
      fromFile = JSON.parse(readFileSync(file, "utf8"));
    } catch (err) {
      throw new DajianError("corrupt", `config file ${file} is not valid JSON`, "fix or delete it; defaults apply", {
        cause: err,
      });
    }
  }
  return deepMerge(deepMerge(DEFAULT_CONFIG, fromFile), envOverrides(env));
}

/** Write the config atomically (temp file + rename), so a crash never leaves half a file. */
export function saveConfig(home: string, cfg: Partial<DajianConfig>): void {
  const file = homePaths(home).config;
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(cfg, null, 2) + "\n", { mode: 0o600 });
  renameSync(tmp, file);
}

/** Read the raw file (without defaults/env) so edits preserve what the user wrote. */
export function readRawConfig(home: string): Record<string, unknown> {
  const file = homePaths(home).config;
  if (!existsSync(file)) return {};
  return JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
}
