// Vector and hybrid search against a real OpenAI-compatible /v1/embeddings endpoint started by the test: a tiny
// HTTP server computing deterministic embeddings (hashed character bigrams), queried through real fetch.
import { createServer, type Server } from "node:http";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../core/config.js";
import { errorLine } from "../core/errors.js";
import { OpenAIEmbedder } from "./embed.js";
import { smallChunkConfig, writePolicies } from "./fixtures.test-helper.js";
import { KnowledgeBases } from "./kb.js";

const DIMS = 256;

/** Deterministic embedding: counts of hashed character bigrams (and single characters), L2-normalised. */
function hashEmbed(text: string): number[] {
  const v = new Array<number>(DIMS).fill(0);
  const chars = [...text.normalize("NFKC").toLowerCase()].filter((c) => /[\p{L}\p{N}]/u.test(c));
  const bump = (s: string, w: number) => {
    let h = 2166136261;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
    v[(h >>> 0) % DIMS] += w;
  };
  chars.forEach((c, i) => {
    bump(c, 0.3);
    if (i + 1 < chars.length) bump(c + chars[i + 1], 1);
  });
  const n = Math.hypot(...v) || 1;
  return v.map((x) => x / n);
}

let server: Server;
let baseURL: string;
let requests = 0;
let failNext = 0;
let dir: string;
let home: string;
let kbs: KnowledgeBases;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      requests++;
      if (failNext > 0) {
        failNext--;
        res.writeHead(503).end("busy");
        return;
      }
      if (req.url !== "/v1/embeddings" || req.method !== "POST") {
        res.writeHead(404).end();
        return;
      }
      const { input, model } = JSON.parse(body) as { input: string[]; model: string };
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          object: "list",
          model,
          data: input.map((t, index) => ({ object: "embedding", index, embedding: hashEmbed(t) })),
        }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;

  dir = mkdtempSync(join(tmpdir(), "dj-vec-"));
  home = join(dir, "home");
  mkdirSync(home);
  smallChunkConfig(home, { embedding: { provider: "openai", model: "hash-bigram", baseURL } });
  kbs = new KnowledgeBases(home);
  await kbs.create("hr");
  const s = await kbs.ingest("hr", [writePolicies(dir)]);
  expect(s.added).toBe(3);
});

afterAll(async () => {
  await kbs.close();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

describe("vector index through an OpenAI-compatible endpoint", () => {
  it("stores one unit vector per chunk, in the same transaction as the chunks", async () => {
    const kb = await kbs.get("hr");
    expect(kb.embedModel).toBe(`openai:hash-bigram@${baseURL}`);
    expect(kb.embedDims).toBe(DIMS);
    expect(await kbs.store.checkConsistency(kb.id)).toEqual([]);
    const db = (kbs.store as unknown as { db: import("better-sqlite3").Database }).db;
    const n = db.prepare("SELECT count(*) FROM kb_vectors WHERE kb_id = ?").pluck().get(kb.id);
    expect(n).toBe(kb.chunkCount);
  });

  it("vector mode finds a passage by character overlap where keyword terms differ", async () => {
    // "婚假三天" as one unsegmented run still shares bigrams with the marriage-leave passage.
    const r = await kbs.search("hr", "结婚假期有几天", { mode: "vector", topK: 1 });
    expect(r.results[0].text).toContain("婚假三天");
    expect(r.results[0].score).toBeGreaterThan(0);
    expect(r.results[0].score).toBeLessThanOrEqual(1.0001); // cosine
  });

  it("hybrid is the default with a model and fuses by reciprocal rank", async () => {
    const r = await kbs.search("hr", "parental leave for primary caregivers", { topK: 3 });
    expect(r.results[0].text).toContain("sixteen weeks");
    expect(r.results[0].score).toBeLessThan(2 / 60); // RRF: Σ 1/(60+rank) over two lists
    const kw = await kbs.search("hr", "parental leave for primary caregivers", { topK: 3, mode: "keyword" });
    expect(kw.results[0].score).toBeGreaterThan(1); // BM25 scale, not RRF
  });

  it("filters and permissions apply to the vector list too", async () => {
    const r = await kbs.search("hr", "员工 leave 加班", {
      mode: "vector",
      topK: 5,
      documents: ["policies/handbook.md"],
    });
    expect(r.results.length).toBeGreaterThan(0);
    expect(r.results.every((x) => x.source.document === "policies/handbook.md")).toBe(true);
    const docs = await kbs.documents("hr");
    const allowed = docs.find((d) => d.name === "policies/員工守則.txt")!;
    const p = await kbs.search("hr", "员工 leave 加班", {
      mode: "hybrid",
      topK: 5,
      allowDocument: (id) => id === String(allowed.id),
    });
    expect(p.results.length).toBeGreaterThan(0);
    expect(p.results.every((x) => x.documentId === String(allowed.id))).toBe(true);
  });

  it("retries a busy endpoint, then gives a one-line error naming the fix", async () => {
    const e = new OpenAIEmbedder({ baseURL, model: "hash-bigram", retries: 2 });
    failNext = 2;
    const before = requests;
    const [v] = await e.embed(["年假"]);
    expect(requests - before).toBe(3);
    expect(v.length).toBe(DIMS);
    failNext = 10;
    let msg = "";
    try {
      await e.embed(["年假"]);
    } catch (err) {
      msg = errorLine(err);
    }
    failNext = 0;
    expect(msg).toMatch(/failed after 3 attempts .* — check that the embedding server is running/);
  });

  it("refuses to mix vectors of another model into the KB", async () => {
    const other = new KnowledgeBases(home, {
      config: { ...loadConfig(home), embedding: { provider: "openai", model: "other-model", baseURL } },
    });
    try {
      let msg = "";
      try {
        await other.ingest("hr", [join(dir, "policies")]);
      } catch (err) {
        msg = errorLine(err);
      }
      expect(msg).toMatch(/holds vectors from openai:hash-bigram.* — restore the previous `embedding` config/);
      expect(errorLine(await other.search("hr", "年假").catch((e) => e))).toMatch(/not from openai:other-model/);
    } finally {
      await other.close();
    }
  });

  it("a KB ingested without vectors gets them when re-ingested with a model", async () => {
    const plain = new KnowledgeBases(home, { embedder: null });
    await plain.create("plain");
    await plain.ingest("plain", [join(dir, "policies")]);
    expect((await plain.get("plain")).embedModel).toBeUndefined();
    await plain.close();
    const s = await kbs.ingest("plain", [join(dir, "policies")]);
    expect(s.updated).toBe(3); // same bytes, but no vectors yet → re-indexed with vectors
    const kb = await kbs.get("plain");
    expect(kb.embedDims).toBe(DIMS);
    expect(await kbs.store.checkConsistency(kb.id)).toEqual([]);
    expect((await kbs.ingest("plain", [join(dir, "policies")])).unchanged).toBe(3);
    // Without a model, a KB that has vectors refuses new documents instead of silently leaving them vector-less.
    const none = new KnowledgeBases(home, { embedder: null });
    try {
      expect(errorLine(await none.ingest("plain", [join(dir, "policies")]).catch((e) => e))).toMatch(
        /no embedding model is configured — restore the `embedding` section/,
      );
    } finally {
      await none.close();
    }
  });
});
