// The local embedder (a GGUF through node-llama-cpp) end to end: a tiny random embedding model written by dajian,
// configured as `embedding: {provider: "local"}`, vectors stored per chunk, vector and hybrid search working.
// The weights are random, so this checks mechanics and determinism, not relevance.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig } from "../src/core/config.js";
import { embedderFromConfig, LocalEmbedder } from "../src/index/embed.js";
import { smallChunkConfig } from "../src/index/fixtures.test-helper.js";
import { KnowledgeBases } from "../src/index/kb.js";
import { writeTinyLlamaGguf } from "../src/train/tiny-model.js";

let dir: string;
let kbs: KnowledgeBases;
let modelPath: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dj-embed-local-"));
  const home = join(dir, "home");
  mkdirSync(home);
  modelPath = join(dir, "embed.gguf");
  writeTinyLlamaGguf(modelPath, { embedding: true, layers: 1, contextLength: 512, seed: 7 });
  smallChunkConfig(home, { embedding: { provider: "local", model: modelPath } });
  const fromConfig = embedderFromConfig(loadConfig(home).embedding);
  expect(fromConfig).toBeInstanceOf(LocalEmbedder);
  // Same model and name as the configured one, pinned to one thread (llama.cpp is slow under CPU contention).
  const embedder = new LocalEmbedder(modelPath, { threads: 1 });
  expect(embedder.name).toBe(fromConfig?.name);
  kbs = new KnowledgeBases(home, { embedder });
  await kbs.create("docs");
  const src = join(dir, "src");
  mkdirSync(src);
  writeFileSync(join(src, "travel.md"), "# Travel\n\nBook economy class for flights under six hours.\n");
  writeFileSync(join(src, "leave.md"), "# Leave\n\nEmployees get fifteen days of annual leave.\n");
  writeFileSync(join(src, "security.txt"), "Laptops must use full-disk encryption.\n");
  const s = await kbs.ingest("docs", [src]);
  expect(s.added).toBe(3);
}, 120_000);

afterAll(async () => {
  await kbs?.close();
  rmSync(dir, { recursive: true, force: true });
});

it("stores one unit vector per chunk from the local GGUF model", async () => {
  const kb = await kbs.get("docs");
  expect(kb.embedModel).toBe(`local:${modelPath}`);
  expect(kb.embedDims).toBe(64);
  const db = (kbs.store as unknown as { db: import("better-sqlite3").Database }).db;
  const n = db.prepare("SELECT count(*) FROM kb_vectors WHERE kb_id = ?").pluck().get(kb.id);
  expect(n).toBe(kb.chunkCount);
  expect(await kbs.store.checkConsistency(kb.id)).toEqual([]);
});

it("vector and hybrid search return well-formed, deterministic results", async () => {
  const v1 = await kbs.search("docs", "annual leave days", { mode: "vector", topK: 3 });
  expect(v1.results).toHaveLength(3);
  for (const r of v1.results) {
    expect(typeof r.text).toBe("string");
    expect(r.source.document).toMatch(/^src\/(travel\.md|leave\.md|security\.txt)$/);
    expect(r.score).toBeGreaterThanOrEqual(-1.0001);
    expect(r.score).toBeLessThanOrEqual(1.0001); // cosine of unit vectors
  }
  const scores = v1.results.map((r) => r.score);
  expect([...scores].sort((a, b) => b - a)).toEqual(scores);
  const v2 = await kbs.search("docs", "annual leave days", { mode: "vector", topK: 3 });
  expect(v2.results.map((r) => [r.chunkId, r.score])).toEqual(v1.results.map((r) => [r.chunkId, r.score]));

  const h = await kbs.search("docs", "annual leave days", { topK: 3 });
  expect(h.results.length).toBeGreaterThan(0);
  // The keyword side always finds the leave passage; fusion must keep it.
  expect(h.results.map((r) => r.source.document)).toContain("src/leave.md");
  expect(h.results[0].score).toBeLessThan(2 / 60); // reciprocal-rank fusion
});
