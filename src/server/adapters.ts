// Binds the server's narrow service interfaces (services.ts) to the library: KnowledgeBases (src/index),
// ModelRegistry + local/remote models (src/models) and the answerer (src/answer). One SQLite handle is shared.
import type { DajianConfig } from "../core/config.js";
import { DajianError } from "../core/errors.js";
import { ensureHome } from "../core/home.js";
import { KnowledgeBases } from "../index/kb.js";
import { LocalChatModel } from "../models/local.js";
import { ModelManager } from "../models/manager.js";
import { openSqlite, type SqliteDb } from "../store/sqlite.js";
import { answerBackend } from "./answer-adapter.js";
import type { KbBackend, ModelBackend, ModelEntry, ServerServices } from "./services.js";

export function kbBackend(kbs: KnowledgeBases): KbBackend {
  return {
    async list() {
      return (await kbs.list()).map((k) => ({
        name: k.name,
        documents: k.documentCount,
        chunks: k.chunkCount,
        createdAt: k.createdAt,
      }));
    },
    async create(name) {
      const k = await kbs.create(name);
      return { name: k.name, documents: k.documentCount, chunks: k.chunkCount, createdAt: k.createdAt };
    },
    delete: (name) => kbs.delete(name),
    async documents(kb) {
      return (await kbs.documents(kb)).map((d) => ({
        id: String(d.id),
        name: d.name,
        bytes: d.bytes,
        pages: d.pages,
        chunks: d.chunkCount,
        format: d.format,
        createdAt: d.createdAt,
      }));
    },
    async ingestFile(kb, file, onProgress, signal) {
      const s = await kbs.ingestItems(kb, [{ name: file.name, path: file.path }], { onProgress, signal });
      const f = s.files[0];
      if (!f) return { document: file.name, ok: false, error: s.aborted ? "ingest was cancelled" : "nothing ingested" };
      return {
        document: file.name,
        ok: f.status !== "failed",
        chunks: f.chunks,
        ...(f.status === "failed" ? { error: f.reason ?? "ingest failed" } : f.reason ? { warnings: [f.reason] } : {}),
      };
    },
    async removeDocument(kb, doc) {
      await kbs.removeDocument(kb, doc);
    },
    async originalFile(kb, doc) {
      const d = await kbs.document(kb, doc);
      return { path: kbs.originalPath(d), name: d.name, bytes: d.bytes };
    },
    search: (kb, query, opts) => kbs.search(kb, query, opts),
  };
}

/** Models by name through ModelManager (one live instance per name, so slots and queues are shared). */
export function modelBackend(manager: ModelManager): ModelBackend {
  return {
    async list(): Promise<ModelEntry[]> {
      return manager.registry.list().map((e) => ({
        id: e.name,
        kind: "chat",
        contextSize: e.contextSize,
        ownedBy: e.kind === "local" ? "dajian-local" : (e.provider ?? "remote"),
        created: e.createdAt ? Math.floor(e.createdAt / 1000) : undefined,
      }));
    },
    async chat(id) {
      const m = await manager.chat(id);
      if (!m) throw new DajianError("not_found", `no model named "${id}"`, "see `dajian models list`");
      return m;
    },
    embedding: (id) => manager.embedder(id),
    async load(id) {
      const m = await manager.raw(id);
      return m instanceof LocalChatModel ? m.load : undefined;
    },
    defaultChat: () => manager.chat(),
    stats: () => manager.localStats(),
    close: () => manager.unload(),
  };
}

/** The services of a home dir (what `dajian serve` uses). */
export async function openServices(home: string, config: DajianConfig): Promise<ServerServices> {
  const paths = ensureHome(home);
  const db: SqliteDb = openSqlite(paths.db);
  const kbs = new KnowledgeBases(home, { db, config });
  const manager = new ModelManager({ db, home });
  const models = modelBackend(manager);
  const answers = answerBackend({ db, kbs });
  return {
    kbs: kbBackend(kbs),
    models,
    answers,
    async close() {
      await models.close();
      await kbs.close();
      db.close();
    },
  };
}
