// Model registry: named entries for local GGUF files and remote OpenAI-compatible endpoints.
// Entries come from three places, later ones winning on a name clash: the DB (`dajian models add`, `pull`),
// the config file (`"models": {NAME: {...}}`) and the env (`DAJIAN_MODELS` = the same JSON object).
// API keys never enter any of them: a remote entry names the env var that holds its key.
import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { DajianError } from "../core/errors.js";
import { loadConfig } from "../core/config.js";
import type { SqliteDb } from "../store/sqlite.js";
import { PROVIDER_PRESETS } from "./presets.js";

export interface AdapterSpec {
  path: string;
  /** LoRA scale (1 = as trained). */
  scale: number;
}

export interface LocalModelSpec {
  kind: "local";
  path: string;
  adapters?: AdapterSpec[];
  /** Tokens per sequence; default: the model's training context, capped at 4096. */
  contextSize?: number;
  threads?: number;
  /** Parallel sequences (slots) in one context. */
  sequences?: number;
  /** Requests allowed to wait for a slot before new ones get 429. */
  maxQueue?: number;
  /** "auto" (default) or a layer count to offload to the GPU. */
  gpuLayers?: number | "auto";
  /** Where it came from (`pull` records the ref) and its verified hash. */
  source?: string;
  sha256?: string;
}

export interface RemoteModelSpec {
  kind: "remote";
  provider?: string;
  baseURL: string;
  /** Name of the env var holding the API key (the key itself is never stored). */
  apiKeyEnv?: string;
  /** Model name at the provider. */
  model: string;
  contextSize?: number;
  timeoutMs?: number;
  maxRetries?: number;
  /** Serve the entry's own LAN/loopback server (ollama, vllm …) through the outbound guard. */
  allowPrivateNetwork?: boolean;
}

export type ModelSpec = LocalModelSpec | RemoteModelSpec;

export type ModelEntry = ModelSpec & {
  name: string;
  origin: "db" | "config" | "env";
  isDefault: boolean;
  createdAt?: number;
};

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

export function checkModelName(name: string): void {
  if (!NAME_RE.test(name) || name.startsWith("kb:")) {
    throw new DajianError(
      "invalid_input",
      `invalid model name "${name}"`,
      "use 1–64 letters, digits, '.', '_', ':' or '-' (not starting with kb:)",
    );
  }
}

function bad(msg: string, hint: string): never {
  throw new DajianError("invalid_input", msg, hint);
}

/** Validate and normalise a spec from any source (CLI flags, config JSON, env JSON). */
export function normaliseSpec(name: string, raw: unknown): ModelSpec {
  if (typeof raw !== "object" || raw === null)
    bad(`model "${name}": entry must be an object`, "see `dajian models add --help`");
  const r = raw as Record<string, any>;
  const posInt = (k: string) => {
    const v = r[k];
    if (v === undefined) return undefined;
    if (!Number.isInteger(v) || v <= 0) bad(`model "${name}": ${k} must be a positive integer`, `fix ${k}`);
    return v as number;
  };
  const kind = r.kind ?? (r.path ? "local" : "remote");
  if (kind === "local") {
    if (typeof r.path !== "string" || !r.path) bad(`model "${name}": path is required`, "give --gguf PATH");
    const adapters: AdapterSpec[] = [];
    for (const a of r.adapters ?? []) {
      const path = typeof a === "string" ? a : a?.path;
      const scale = typeof a === "string" ? 1 : (a?.scale ?? 1);
      if (typeof path !== "string" || !Number.isFinite(scale))
        bad(`model "${name}": adapters must be {path, scale}`, "use --adapter FILE.gguf[:SCALE]");
      adapters.push({ path: resolve(path), scale });
    }
    const gpuLayers = r.gpuLayers;
    if (gpuLayers !== undefined && gpuLayers !== "auto" && !(Number.isInteger(gpuLayers) && gpuLayers >= 0))
      bad(`model "${name}": gpuLayers must be "auto" or a layer count`, "fix gpuLayers");
    const spec: LocalModelSpec = { kind: "local", path: resolve(r.path) };
    if (adapters.length) spec.adapters = adapters;
    for (const k of ["contextSize", "threads", "sequences", "maxQueue"] as const) {
      const v = posInt(k);
      if (v !== undefined) spec[k] = v;
    }
    if (gpuLayers !== undefined) spec.gpuLayers = gpuLayers;
    if (typeof r.source === "string") spec.source = r.source;
    if (typeof r.sha256 === "string") spec.sha256 = r.sha256;
    return spec;
  }
  if (kind !== "remote") bad(`model "${name}": kind must be "local" or "remote"`, "fix kind");
  const preset = r.provider !== undefined ? PROVIDER_PRESETS[r.provider] : undefined;
  if (r.provider !== undefined && !preset)
    bad(
      `model "${name}": unknown provider "${r.provider}"`,
      `use one of ${Object.keys(PROVIDER_PRESETS).join(", ")} or --base-url`,
    );
  const baseURL = (r.baseURL ?? preset?.baseURL) as string | undefined;
  if (typeof baseURL !== "string")
    bad(`model "${name}": a base URL is required`, "give --provider PRESET or --base-url URL");
  let u: URL;
  try {
    u = new URL(baseURL);
  } catch {
    bad(`model "${name}": base URL "${baseURL}" is not a URL`, "use e.g. https://api.deepseek.com/v1");
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    bad(`model "${name}": base URL must be http(s)`, "fix --base-url");
  if (u.username || u.password)
    bad(
      `model "${name}": credentials in the URL are not allowed`,
      "put the key in an env var and pass --api-key-env VAR",
    );
  const apiKeyEnv = (r.apiKeyEnv ?? preset?.apiKeyEnv) as string | undefined;
  if (apiKeyEnv !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(apiKeyEnv))
    bad(
      `model "${name}": --api-key-env takes the NAME of an env var, not the key`,
      "e.g. --api-key-env DEEPSEEK_API_KEY",
    );
  const model = (r.model ?? preset?.defaultModel) as string | undefined;
  if (typeof model !== "string" || !model)
    bad(`model "${name}": the provider's model name is required`, "give --model NAME");
  const spec: RemoteModelSpec = { kind: "remote", baseURL: baseURL.replace(/\/+$/, ""), model };
  if (r.provider !== undefined) spec.provider = r.provider;
  if (apiKeyEnv) spec.apiKeyEnv = apiKeyEnv;
  const ctx = posInt("contextSize") ?? preset?.contextSize;
  if (ctx) spec.contextSize = ctx;
  const t = posInt("timeoutMs");
  if (t) spec.timeoutMs = t;
  if (r.maxRetries !== undefined) {
    if (!Number.isInteger(r.maxRetries) || r.maxRetries < 0)
      bad(`model "${name}": maxRetries must be ≥ 0`, "fix maxRetries");
    spec.maxRetries = r.maxRetries;
  }
  const allow = r.allowPrivateNetwork ?? preset?.local;
  if (allow) spec.allowPrivateNetwork = true;
  return spec;
}

interface Row {
  name: string;
  kind: string;
  spec: string;
  is_default: number;
  created_at: number;
}

export class ModelRegistry {
  constructor(
    private readonly db: SqliteDb,
    private readonly home?: string,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  /** Add (or with replace, overwrite) a DB entry. The first chat model added becomes the default. */
  add(name: string, rawSpec: unknown, opts: { replace?: boolean; makeDefault?: boolean } = {}): ModelEntry {
    checkModelName(name);
    const spec = normaliseSpec(name, rawSpec);
    if (spec.kind === "local") {
      if (!existsSync(spec.path) || !statSync(spec.path).isFile())
        throw new DajianError(
          "not_found",
          `GGUF file not found: ${spec.path}`,
          "check the path, or fetch one with `dajian pull`",
        );
      for (const a of spec.adapters ?? [])
        if (!existsSync(a.path))
          throw new DajianError("not_found", `LoRA adapter not found: ${a.path}`, "check the --adapter path");
    }
    const tx = this.db.transaction(() => {
      const exists = this.db.prepare("SELECT 1 FROM model_registry WHERE name = ?").get(name);
      if (exists && !opts.replace)
        throw new DajianError(
          "already_exists",
          `model "${name}" already exists`,
          `remove it first with \`dajian models rm ${name}\` or pick another name`,
        );
      const anyDefault = this.db.prepare("SELECT 1 FROM model_registry WHERE is_default = 1 AND name <> ?").get(name);
      const makeDefault = opts.makeDefault || !anyDefault;
      if (makeDefault) this.db.prepare("UPDATE model_registry SET is_default = 0").run();
      this.db
        .prepare(
          `INSERT INTO model_registry (name, kind, spec, is_default, created_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, spec = excluded.spec, is_default = excluded.is_default`,
        )
        .run(name, spec.kind, JSON.stringify(spec), makeDefault ? 1 : 0, Date.now());
    });
    tx.immediate();
    return this.get(name)!;
  }

  remove(name: string): void {
    const info = this.db.prepare("DELETE FROM model_registry WHERE name = ?").run(name);
    if (info.changes === 0) {
      const other = this.list().find((e) => e.name === name);
      if (other)
        throw new DajianError(
          "invalid_input",
          `model "${name}" comes from the ${other.origin}`,
          other.origin === "env" ? "unset it in DAJIAN_MODELS" : 'remove it from config.json "models"',
        );
      throw new DajianError("not_found", `no model named "${name}"`, "see `dajian models list`");
    }
  }

  setDefault(name: string): void {
    if (!this.get(name)) throw new DajianError("not_found", `no model named "${name}"`, "see `dajian models list`");
    this.db.transaction(() => {
      this.db.prepare("UPDATE model_registry SET is_default = 0").run();
      this.db.prepare("UPDATE model_registry SET is_default = 1 WHERE name = ?").run(name);
    })();
  }

  private external(): ModelEntry[] {
    const out: ModelEntry[] = [];
    const push = (src: unknown, origin: "config" | "env") => {
      if (typeof src !== "object" || src === null) return;
      for (const [name, raw] of Object.entries(src)) {
        checkModelName(name);
        out.push({ ...normaliseSpec(name, raw), name, origin, isDefault: false });
      }
    };
    if (this.home) push(loadConfig(this.home, {}).models, "config");
    const envJson = this.env.DAJIAN_MODELS;
    if (envJson) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(envJson);
      } catch {
        throw new DajianError(
          "invalid_input",
          "DAJIAN_MODELS is not valid JSON",
          'set it to e.g. {"ds":{"provider":"deepseek"}}',
        );
      }
      push(parsed, "env");
    }
    return out;
  }

  /** All entries, env over config over DB on a name clash; exactly one (or none) marked default. */
  list(): ModelEntry[] {
    const rows = this.db.prepare("SELECT * FROM model_registry ORDER BY created_at, name").all() as Row[];
    const byName = new Map<string, ModelEntry>();
    for (const r of rows)
      byName.set(r.name, {
        ...(JSON.parse(r.spec) as ModelSpec),
        name: r.name,
        origin: "db",
        isDefault: r.is_default === 1,
        createdAt: r.created_at,
      });
    for (const e of this.external()) byName.set(e.name, e);
    const entries = [...byName.values()];
    const want =
      this.env.DAJIAN_DEFAULT_MODEL ??
      (this.home ? (loadConfig(this.home, {}).defaultModel as string | undefined) : undefined);
    if (want && byName.has(want)) for (const e of entries) e.isDefault = e.name === want;
    else if (!entries.some((e) => e.isDefault) && entries.length) entries[0].isDefault = true;
    return entries;
  }

  get(name: string): ModelEntry | undefined {
    return this.list().find((e) => e.name === name);
  }

  /** The chat model used when none is named; undefined = none configured (answers become extractive). */
  getDefault(): ModelEntry | undefined {
    return this.list().find((e) => e.isDefault);
  }

  require(name: string): ModelEntry {
    const e = this.get(name);
    if (!e)
      throw new DajianError(
        "not_found",
        `no model named "${name}"`,
        "see `dajian models list`, or add one with `dajian models add`",
      );
    return e;
  }
}

/** Parse `--adapter FILE.gguf[:SCALE]`. */
export function parseAdapterArg(arg: string): AdapterSpec {
  const m = /^(.*?)(?::(-?\d+(?:\.\d+)?))?$/.exec(arg)!;
  const path = m[1];
  const scale = m[2] === undefined ? 1 : Number(m[2]);
  if (!path)
    throw new DajianError("invalid_input", `bad --adapter "${arg}"`, "use --adapter FILE.gguf or FILE.gguf:0.8");
  return { path, scale };
}
