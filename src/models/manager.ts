// Turns registry entries into live models, once per process: a local GGUF is loaded on first use and shared by
// every caller (its slots and queue are the concurrency limit); remote entries are cheap clients.
// Every model handed out records token usage when a DB is given.
import { existsSync } from "node:fs";
import { basename, resolve } from "node:path";
import { DajianError } from "../core/errors.js";
import type { SqliteDb } from "../store/sqlite.js";
import { LocalChatModel, type LocalLoadOptions } from "./local.js";
import { ModelRegistry, type LocalModelSpec, type ModelEntry } from "./registry.js";
import { RemoteChatModel, type RemoteModelOptions } from "./remote.js";
import type { ChatModel, EmbeddingModel } from "./types.js";
import { withUsageLog } from "./usage.js";

export type LoadedModel = LocalChatModel | RemoteChatModel;

export interface ModelManagerOptions {
  db: SqliteDb;
  home?: string;
  env?: NodeJS.ProcessEnv;
  remote?: RemoteModelOptions;
  /** Record usage rows (default true). */
  recordUsage?: boolean;
}

export class ModelManager {
  readonly registry: ModelRegistry;
  private readonly loaded = new Map<string, Promise<LoadedModel>>();
  /** The local models whose load finished, for synchronous counters (localStats). */
  private readonly ready = new Map<string, LocalChatModel>();

  constructor(private readonly o: ModelManagerOptions) {
    this.registry = new ModelRegistry(o.db, o.home, o.env);
  }

  /** The raw model (no usage log): for embeddings, stats and tests. */
  async raw(name: string, load: LocalLoadOptions = {}): Promise<LoadedModel> {
    let p = this.loaded.get(name);
    if (!p) {
      const entry = this.registry.require(name);
      p = openEntry(entry, this.o.remote, load);
      p.then(
        (m) => m instanceof LocalChatModel && this.loaded.get(name) === p && this.ready.set(name, m),
        () => this.loaded.delete(name),
      );
      this.loaded.set(name, p);
    }
    return p;
  }

  /** A chat model by name (usage recorded), or the default one when name is omitted; undefined = none configured. */
  async chat(name?: string, load: LocalLoadOptions = {}): Promise<ChatModel | undefined> {
    const n = name ?? this.registry.getDefault()?.name;
    if (!n) return undefined;
    const m = await this.raw(n, load);
    return this.o.recordUsage === false ? m : withUsageLog(m, this.o.db);
  }

  async embedder(name: string): Promise<EmbeddingModel> {
    const m = await this.raw(name);
    if (!(m instanceof LocalChatModel))
      throw new DajianError(
        "unsupported",
        `model "${name}" is remote; embeddings go through config "embedding"`,
        "use a local GGUF model for embeddings",
      );
    return m;
  }

  /**
   * Counters of the loaded local models, summed (for /metrics): how many are loaded, the llama.cpp decode batches
   * their step batcher dispatched, the sequence-steps those batches carried (÷ batches = mean sequences per batch: how
   * well parallel requests share a pass over the weights), and the batches that waited for a late sequence.
   */
  localStats(): Record<string, number> {
    const out = {
      dajian_local_models_loaded: this.ready.size,
      dajian_llama_decode_batches_total: 0,
      dajian_llama_batch_sequence_steps_total: 0,
      dajian_llama_batch_waits_total: 0,
    };
    for (const m of this.ready.values()) {
      const b = m.batching;
      out.dajian_llama_decode_batches_total += b.batches;
      out.dajian_llama_batch_sequence_steps_total += b.items;
      out.dajian_llama_batch_waits_total += b.waits;
    }
    return out;
  }

  /** Unload one model (after `models rm`) or all (shutdown). */
  async unload(name?: string): Promise<void> {
    const names = name ? [name] : [...this.loaded.keys()];
    for (const n of names) {
      const p = this.loaded.get(n);
      this.loaded.delete(n);
      this.ready.delete(n);
      const m = await p?.catch(() => undefined);
      if (m instanceof LocalChatModel) await m.dispose();
    }
  }
}

export async function openEntry(
  entry: ModelEntry,
  remote?: RemoteModelOptions,
  load: LocalLoadOptions = {},
): Promise<LoadedModel> {
  if (entry.kind === "remote") return new RemoteChatModel(entry.name, entry, remote);
  return LocalChatModel.load(entry.name, entry, load);
}

/**
 * `generate MODEL …`: MODEL is a registered name, or a path to a .gguf file used directly (not registered).
 */
export async function openByNameOrPath(
  manager: ModelManager,
  ref: string,
  spec: Partial<LocalModelSpec> = {},
  load: LocalLoadOptions = {},
): Promise<LoadedModel> {
  if (manager.registry.get(ref)) return manager.raw(ref, load);
  if (ref.toLowerCase().endsWith(".gguf") || existsSync(ref)) {
    const path = resolve(ref);
    if (!existsSync(path)) throw new DajianError("not_found", `GGUF file not found: ${path}`, "check the path");
    return LocalChatModel.load(basename(path), { ...spec, kind: "local", path }, load);
  }
  throw new DajianError("not_found", `no model named "${ref}"`, "see `dajian models list`, or pass a .gguf path");
}
